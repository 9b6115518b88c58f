// The tabs besides View: dead letters, audit, schedules, registered functions, instances.

import { $, badge, el, fill, formatRelative, formatTime, shortId, truncate } from "./dom.js";
import { api, config, session } from "./api.js";
import { state } from "./state.js";
import { confirmDialog, copyButton, toast, toastError } from "./ui.js";

const LOADERS = {
  dead: loadDeadLetters,
  audit: loadAudit,
  schedules: loadSchedules,
  functions: loadFunctions,
  instances: loadInstances,
};
let openTask = () => {};
let instancesTimer = null;
const deadSelected = new Set();
// Dead letters come a page at a time, newest first; the cursor fetches older ones.
const DEAD_PAGE = 100;
let deadCursor = null;

export function initTabs({ onOpen }) {
  openTask = onOpen;
  for (const tab of document.querySelectorAll(".tab")) {
    tab.addEventListener("click", () => switchTab(tab.dataset.tab));
  }
  $("dead-replay").addEventListener("click", replaySelected);
  $("dead-replay-window").addEventListener("click", replayWindow);
  $("dead-select-all").addEventListener("change", (event) => selectAllDead(event.target.checked));
  $("dead-more").addEventListener("click", () => loadOlderDeadLetters().catch(toastError));
  renderFunctions(config.functions || []);
  // The counts on the tabs, before they are opened.
  loadSchedules().catch(() => {});
  loadInstances().catch(() => {});
}

export function switchTab(name) {
  state.tab = name;
  for (const tab of document.querySelectorAll(".tab")) {
    tab.setAttribute("aria-selected", String(tab.dataset.tab === name));
  }
  for (const body of document.querySelectorAll(".tab-body")) {
    body.hidden = body.id !== `tab-${name}`;
  }
  window.clearInterval(instancesTimer);
  if (name === "instances") instancesTimer = window.setInterval(loadInstances, 5000);
  refreshTab();
}

/** Reload the open tab (the View tab is live already). */
export function refreshTab() {
  const loader = LOADERS[state.tab];
  if (loader) loader().catch(toastError);
}

function emptyState(tbodyId, emptyId, rows) {
  fill($(tbodyId), rows);
  $(emptyId).hidden = rows.length > 0;
}

function idCell(taskId) {
  if (!taskId || taskId === "bulk") return el("td", { class: "mono" }, taskId || "—");
  const link = el("button", { type: "button", class: "link mono", title: taskId }, shortId(taskId));
  link.addEventListener("click", () => openTask(taskId));
  return el("td", {}, link, copyButton(taskId, "Copy ID"));
}

// -- dead letters -------------------------------------------------------------

async function loadDeadLetters() {
  const { data, headers } = await api("GET", "", undefined, { status: "failed", limit: DEAD_PAGE });
  deadCursor = headers.get("X-Next-Cursor");
  const ids = new Set(data.map((t) => t.task_id));
  for (const id of [...deadSelected]) if (!ids.has(id)) deadSelected.delete(id);
  emptyState("dead-rows", "dead-empty", data.map(deadRow));
  $("dead-more").hidden = !deadCursor;
  renderDeadSelection(data.length);
}

async function loadOlderDeadLetters() {
  if (!deadCursor) return;
  const params = { status: "failed", limit: DEAD_PAGE, cursor: deadCursor };
  const { data, headers } = await api("GET", "", undefined, params);
  deadCursor = headers.get("X-Next-Cursor");
  $("dead-rows").append(...data.map(deadRow));
  $("dead-more").hidden = !deadCursor;
  renderDeadSelection(document.querySelectorAll("#dead-rows tr").length);
}

function deadRow(task) {
  const box = el("input", { type: "checkbox", "aria-label": `Select ${shortId(task.task_id)}`, checked: deadSelected.has(task.task_id) });
  box.addEventListener("change", () => {
    if (box.checked) deadSelected.add(task.task_id);
    else deadSelected.delete(task.task_id);
    renderDeadSelection();
  });
  return el(
    "tr",
    { "data-id": task.task_id },
    el("td", { class: "check op" }, box),
    idCell(task.task_id),
    el("td", {}, task.func_name),
    el("td", { class: "num" }, String(task.retries_used)),
    el("td", { class: "time" }, formatTime(task.end_time || task.created_at)),
    el("td", { class: task.error ? "error-cell" : "error-cell empty", title: task.error || "" }, truncate(task.error, 80) || "—"),
  );
}

function selectAllDead(checked) {
  for (const box of document.querySelectorAll("#dead-rows input[type=checkbox]")) {
    box.checked = checked;
    const id = box.closest("tr").dataset.id;
    if (checked) deadSelected.add(id);
    else deadSelected.delete(id);
  }
  renderDeadSelection();
}

function renderDeadSelection(total) {
  const count = deadSelected.size;
  $("dead-replay").disabled = count === 0;
  fill($("dead-replay"), count ? `Replay selected (${count})` : "Replay selected");
  if (total !== undefined) $("dead-select-all").checked = total > 0 && count === total;
}

async function replaySelected() {
  const ids = [...deadSelected];
  if (!ids.length) return;
  await replay(() => api("POST", "/bulk-retry", { task_ids: ids }));
  deadSelected.clear();
  loadDeadLetters().catch(toastError);
}

async function replayWindow() {
  const since = $("dead-window").value;
  const label = $("dead-window").selectedOptions[0].textContent;
  const scope = state.filters.func ? ` of ${state.filters.func}` : "";
  const ok = await confirmDialog(
    "Replay failed tasks?",
    el("p", {}, `Every failed or interrupted task${scope} created in the last ${label} runs again as a new task.`),
    { okLabel: "Replay", danger: true },
  );
  if (!ok) return;
  await replay(() => api("POST", "/retry-failed", undefined, { since, func_name: state.filters.func || null }));
  loadDeadLetters().catch(toastError);
}

async function replay(call) {
  try {
    const { data } = await call();
    const more = data.capped ? "; more remain: replay again to continue" : "";
    toast(`Replayed ${data.dispatched} task${data.dispatched === 1 ? "" : "s"}${data.skipped ? `, skipped ${data.skipped}` : ""}${more}`, "success");
  } catch (error) {
    toastError(error);
  }
}

// -- audit --------------------------------------------------------------------

async function loadAudit() {
  const { data } = await api("GET", "/audit");
  emptyState("audit-rows", "audit-empty", data.map(auditRow));
}

function auditRow(entry) {
  return el(
    "tr",
    {},
    el("td", { class: "time" }, formatTime(entry.timestamp || entry.created_at)),
    el("td", {}, el("span", { class: "pill" }, entry.action)),
    idCell(entry.task_id),
    el("td", {}, entry.actor || "—"),
    el("td", { class: "detail-cell" }, detailText(entry.detail)),
  );
}

function detailText(detail) {
  if (detail === null || detail === undefined) return "—";
  if (typeof detail !== "object") return String(detail);
  const parts = Object.entries(detail).map(([key, value]) => `${key}: ${detailValue(value)}`);
  return parts.length ? parts.join(" · ") : "—";
}

function detailValue(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (Array.isArray(value)) return value.length ? truncate(value.map(shortValue).join(", "), 60) : "none";
  if (typeof value === "object") return truncate(JSON.stringify(value), 60);
  return truncate(shortValue(value), 60);
}

/** Task ids are long: their first 8 characters identify them here. */
function shortValue(value) {
  const text = String(value);
  return /^[0-9a-f]{8}-[0-9a-f-]{27}$/.test(text) ? text.slice(0, 8) : text;
}

// -- schedules ------------------------------------------------------------------

async function loadSchedules() {
  const { data } = await api("GET", "/schedules");
  fill($("count-schedules"), String(data.length));
  emptyState("schedule-rows", "schedules-empty", data.map(scheduleRow));
}

function scheduleRow(schedule) {
  const toggle = el("button", { type: "button", class: "btn small op" }, schedule.paused ? "Resume" : "Pause");
  toggle.addEventListener("click", () => toggleSchedule(toggle, schedule));
  return el(
    "tr",
    { "data-name": schedule.name },
    el("td", {}, schedule.name, schedule.paused ? el("span", { class: "pill paused" }, "paused") : null),
    el("td", {}, schedule.func_name),
    el("td", { class: "mono" }, schedule.trigger),
    el("td", { class: "time" }, schedule.paused ? "—" : formatTime(schedule.next_run)),
    el("td", { class: "time" }, formatTime(schedule.last_run)),
    el("td", {}, schedule.last_status ? badge(schedule.last_status) : "—"),
    el("td", { class: "end" }, session.role === "viewer" ? null : toggle),
  );
}

async function toggleSchedule(button, schedule) {
  button.disabled = true;
  const action = schedule.paused ? "resume" : "pause";
  try {
    await api("POST", `/schedules/${encodeURIComponent(schedule.name)}/${action}`);
    toast(`Schedule ${schedule.name} ${schedule.paused ? "resumed" : "paused"}`, "success");
    await loadSchedules();
  } catch (error) {
    toastError(error);
    button.disabled = false;
  }
}

// -- registered functions ----------------------------------------------------------

async function loadFunctions() {
  try {
    const { data } = await api("GET", "/functions");
    renderFunctions(data);
  } catch (error) {
    renderFunctions(config.functions || []); // older servers: the page's own list
  }
}

function renderFunctions(functions) {
  fill($("count-functions"), String(functions.length));
  fill($("function-cards"), functions.map(functionCard));
  $("functions-empty").hidden = functions.length > 0;
}

function functionCard(fn) {
  const pills = [
    ["executor", fn.executor],
    ["retries", fn.retries],
    ["delay", `${fn.delay}s`],
    ["backoff", `×${fn.backoff}`],
    ["max delay", fn.max_delay != null ? `${fn.max_delay}s` : null],
    ["jitter", fn.jitter],
    ["retry on", fn.retry_on ? shortNames(fn.retry_on) : null, fn.retry_on],
    ["don't retry on", fn.dont_retry_on && fn.dont_retry_on.length ? shortNames(fn.dont_retry_on) : null, fn.dont_retry_on],
    ["timeout", fn.timeout ? `${fn.timeout}s` : null],
    ["priority", fn.priority],
    ["persist", fn.persist ? "yes" : null],
    ["requeue", fn.requeue_on_interrupt ? "yes" : null],
    ["eager", fn.eager ? "yes" : null],
  ].filter(([, value]) => value !== null && value !== undefined);
  return el(
    "article",
    { class: "fn-card" },
    el("h3", { class: "mono" }, fn.name),
    el("div", { class: "tags" }, pills.map(([k, v, full]) => el("span", full ? { class: "pill", title: full.join(", ") } : { class: "pill" }, el("span", { class: "muted" }, `${k} `), String(v)))),
  );
}

// Exception classes by their own names on a card; the full import paths are the pill's title.
function shortNames(paths) {
  return paths.map((path) => path.slice(path.lastIndexOf(".") + 1)).join(", ");
}

// -- instances ------------------------------------------------------------------------

async function loadInstances() {
  const { data } = await api("GET", "/instances");
  fill($("count-instances"), String(data.length));
  emptyState("instance-rows", "instances-empty", data.map(instanceRow));
}

function instanceRow(instance) {
  const id = instance.id || instance.instance_id || "";
  return el(
    "tr",
    {},
    el("td", { class: "mono", title: id }, truncate(id, 32)),
    el("td", {}, instance.hostname),
    el("td", { class: "num" }, String(instance.pid)),
    el("td", {}, instance.version || "—"),
    el("td", { class: "time" }, formatTime(instance.started_at)),
    el("td", { class: "time", title: formatTime(instance.heartbeat_at) }, formatRelative(instance.heartbeat_at)),
    el("td", { class: "num" }, String(instance.running ?? "—")),
  );
}
