// The View tab: the page of tasks, its sorting, selection and paging.

import { $, badge, el, fill, formatDuration, formatTime, shortId, truncate } from "./dom.js";
import { PAGE_SIZE, isRetryable, saveSort, sortedTasks, state } from "./state.js";
import { copyButton } from "./ui.js";

let openTask = () => {};

export function initTable({ onOpen, onSort }) {
  openTask = onOpen;
  for (const th of document.querySelectorAll("#task-table th[data-sort]")) {
    th.setAttribute("tabindex", "0");
    th.setAttribute("role", "button");
    const sortBy = () => {
      const col = th.dataset.sort;
      state.sort.dir = state.sort.col === col && state.sort.dir === "desc" ? "asc" : "desc";
      state.sort.col = col;
      saveSort();
      onSort();
    };
    th.addEventListener("click", sortBy);
    th.addEventListener("keydown", (event) => {
      if (event.key === "Enter" || event.key === " ") sortBy();
    });
  }
  $("select-page").addEventListener("change", (event) => selectPage(event.target.checked));
  $("bulk-clear").addEventListener("click", () => {
    state.selected.clear();
    renderTable();
  });
}

export function renderTable() {
  const tasks = sortedTasks();
  fill($("task-rows"), tasks.map(taskRow));
  $("task-empty").hidden = tasks.length > 0;
  state.changed.clear();
  renderSortHeaders();
  renderSelection(tasks);
  renderPager(tasks.length);
}

function taskRow(task) {
  const retryable = isRetryable(task);
  const box = el("input", {
    type: "checkbox",
    "aria-label": `Select task ${shortId(task.task_id)}`,
    checked: state.selected.has(task.task_id),
    disabled: !retryable,
  });
  box.addEventListener("click", (event) => event.stopPropagation());
  box.addEventListener("change", () => toggleSelected(task.task_id, box.checked));
  const row = el(
    "tr",
    { class: rowClass(task), "data-id": task.task_id, "data-status": task.status, tabindex: "0" },
    el("td", { class: "check" }, box),
    el("td", { class: "mono id" }, el("span", { title: task.task_id }, shortId(task.task_id)), copyButton(task.task_id, "Copy ID")),
    el("td", { class: "func" }, el("span", { class: "func-name" }, task.func_name), sourceBadge(task)),
    el("td", {}, badge(task.status), dueBadge(task)),
    el("td", { class: "num" }, formatDuration(task.duration)),
    el("td", { class: "num" }, retriesText(task)),
    el("td", { class: "time" }, formatTime(task.created_at)),
    el("td", {}, priorityBadge(task.priority)),
    el("td", { class: task.error ? "error-cell" : "error-cell empty", title: task.error || "" }, truncate(task.error, 48) || "—"),
  );
  row.addEventListener("click", () => openTask(task.task_id));
  row.addEventListener("keydown", (event) => {
    if (event.key === "Enter") openTask(task.task_id);
  });
  return row;
}

function rowClass(task) {
  const classes = ["task-row"];
  if (state.changed.has(task.task_id)) classes.push("flash");
  if (state.detailId === task.task_id) classes.push("current");
  return classes.join(" ");
}

export function sourceBadge(task) {
  if (task.source === "scheduled") return el("span", { class: "pill scheduled" }, "scheduled");
  if (task.source === "retry") return el("span", { class: "pill retry" }, "retry");
  return null;
}

// A pending task not yet due (run_at=, delay=, schedule_once, a retry's wait): when it runs.
export function dueBadge(task) {
  if (task.status !== "pending" || !task.run_at) return null;
  if (Date.parse(task.run_at) <= Date.now()) return null;
  return el("span", { class: "pill due", title: `Scheduled for ${formatTime(task.run_at)}` }, `at ${formatTime(task.run_at)}`);
}

export function priorityBadge(priority) {
  if (priority === null || priority === undefined) return el("span", { class: "muted" }, "—");
  return el("span", { class: "pill priority" }, `P${priority}`);
}

function retriesText(task) {
  return task.max_retries ? `${task.retries_used} / ${task.max_retries}` : String(task.retries_used);
}

function renderSortHeaders() {
  for (const th of document.querySelectorAll("#task-table th[data-sort]")) {
    const active = th.dataset.sort === state.sort.col;
    th.classList.toggle("sorted", active);
    th.setAttribute("aria-sort", active ? (state.sort.dir === "asc" ? "ascending" : "descending") : "none");
    th.dataset.dir = active ? state.sort.dir : "";
  }
}

function toggleSelected(id, checked) {
  if (checked) state.selected.add(id);
  else state.selected.delete(id);
  renderSelection(sortedTasks());
}

function selectPage(checked) {
  for (const task of sortedTasks()) {
    if (!isRetryable(task)) continue;
    if (checked) state.selected.add(task.task_id);
    else state.selected.delete(task.task_id);
  }
  renderTable();
}

function renderSelection(tasks) {
  const count = state.selected.size;
  $("bulk").hidden = count === 0;
  fill($("bulk-count"), `${count} task${count === 1 ? "" : "s"} selected`);
  const retryable = tasks.filter(isRetryable);
  const all = $("select-page");
  all.disabled = retryable.length === 0;
  all.checked = retryable.length > 0 && retryable.every((t) => state.selected.has(t.task_id));
}

function renderPager(rows) {
  $("prev").disabled = state.loading || state.pageIndex === 0;
  $("next").disabled = state.loading || !state.nextCursor;
  $("task-table").setAttribute("aria-busy", String(state.loading));
  const first = state.pageIndex * PAGE_SIZE + (rows ? 1 : 0);
  fill($("page-label"), rows ? `Page ${state.pageIndex + 1} · tasks ${first}–${first + rows - 1}` : `Page ${state.pageIndex + 1}`);
}
