// The dashboard's state: the view (filters, sort, page) and what the server sent.

import { load, save } from "./dom.js";

export const PAGE_SIZE = 30;
const UNIT_MS = { min: 60_000, hour: 3_600_000, day: 86_400_000 };

export const state = {
  filters: {
    status: load("tf-status", ""),
    func: load("tf-func", ""),
    search: load("tf-search", ""),
    timeVal: load("tf-time-val", ""),
    timeUnit: load("tf-time-unit", "hour"),
  },
  sort: { col: load("tf-sort-col", "created_at"), dir: load("tf-sort-dir", "desc") },
  cursors: [null], // cursors[i] opens page i
  pageIndex: 0,
  nextCursor: null,
  order: [], // ids of the page, as the server sent them
  tasks: new Map(), // id -> task
  changed: new Set(), // ids updated by the last event (highlighted once)
  metrics: null,
  paused: load("tf-paused", "") === "1",
  buffer: [],
  bufferedNew: new Set(),
  selected: new Set(),
  detailId: null,
  tab: "view",
  loading: true, // a view was asked for and its snapshot has not arrived
};

export function saveFilters() {
  const f = state.filters;
  save("tf-status", f.status);
  save("tf-func", f.func);
  save("tf-search", f.search);
  save("tf-time-val", f.timeVal);
  save("tf-time-unit", f.timeUnit);
}

export function saveSort() {
  save("tf-sort-col", state.sort.col);
  save("tf-sort-dir", state.sort.dir);
}

/** The created-since bound of the time window, as ISO (UTC), or null for all time. */
export function sinceIso() {
  const amount = Number.parseInt(state.filters.timeVal, 10);
  const unit = UNIT_MS[state.filters.timeUnit];
  if (!amount || amount <= 0 || !unit) return null;
  return new Date(Date.now() - amount * unit).toISOString();
}

/** The list query of the current view (also the stream's parameters). */
export function viewParams() {
  return {
    status: state.filters.status || null,
    func_name: state.filters.func || null,
    search: state.filters.search.trim() || null,
    since: sinceIso(),
    limit: PAGE_SIZE,
    cursor: state.cursors[state.pageIndex],
  };
}

export function resetPaging() {
  state.cursors = [null];
  state.pageIndex = 0;
  state.nextCursor = null;
}

/** The page's tasks in the order the user chose (sorting is within the page). */
export function sortedTasks() {
  const tasks = state.order.map((id) => state.tasks.get(id)).filter(Boolean);
  const { col, dir } = state.sort;
  const sign = dir === "asc" ? 1 : -1;
  return tasks.sort((a, b) => sign * compare(a[col], b[col]));
}

function compare(a, b) {
  if (a === b) return 0;
  if (a === null || a === undefined) return -1;
  if (b === null || b === undefined) return 1;
  if (typeof a === "number" && typeof b === "number") return a - b;
  return String(a).localeCompare(String(b));
}

export function isRetryable(task) {
  return task.status === "failed" || task.status === "interrupted";
}
