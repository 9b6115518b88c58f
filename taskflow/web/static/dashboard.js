// The dashboard's entry point: wires the view, the live stream and the controls.

import { $, el, fill, formatDuration, load, save } from "./dom.js";
import { api, checkSession, config, loadSession, logout, session } from "./api.js";
import { csvFilename, download, tasksCsv } from "./csv.js";
import { startLive, reconnect } from "./live.js";
import { closePanel, initPanel, isOpen, openPanel, updatePanel } from "./panel.js";
import { resetPaging, saveFilters, sortedTasks, state, viewParams } from "./state.js";
import { initTable, renderTable } from "./table.js";
import { initTabs, refreshTab, switchTab } from "./tabs.js";
import { confirmDialog, installGlobalKeys, onEscape, registerPopover, toast, toastError } from "./ui.js";

// -- applying what the stream sends ------------------------------------------------

function applySnapshot(data) {
  if (state.paused && !state.loading) {
    // The stream reconnected by itself: paused means paused.
    state.buffer = [{ snapshot: data }];
    for (const task of data.tasks) if (!state.tasks.has(task.task_id)) state.bufferedNew.add(task.task_id);
    renderBuffered();
    return;
  }
  state.loading = false;
  state.buffer = [];
  state.bufferedNew.clear();
  state.tasks = new Map(data.tasks.map((t) => [t.task_id, t]));
  state.order = data.tasks.map((t) => t.task_id);
  state.nextCursor = data.next_cursor;
  renderTable();
  applyMetrics(data.metrics);
  if (data.detail) updatePanel(data.detail);
  renderBuffered();
}

function onTasks(data) {
  if (state.paused) {
    state.buffer.push(data);
    for (const task of data.upserts) if (!state.tasks.has(task.task_id)) state.bufferedNew.add(task.task_id);
    renderBuffered();
    return;
  }
  applyTasks(data);
  renderTable();
}

function applyTasks(data) {
  for (const id of data.removed) state.tasks.delete(id);
  for (const task of data.upserts) {
    state.tasks.set(task.task_id, task);
    state.changed.add(task.task_id);
  }
  state.order = data.order;
  state.nextCursor = data.next_cursor;
  for (const id of [...state.tasks.keys()]) if (!data.order.includes(id)) state.tasks.delete(id);
}

function onMetrics(data) {
  if (state.paused) state.buffer.push({ metrics: data });
  else applyMetrics(data);
}

const METRIC_TEXT = {
  success_rate: (v) => (v === null || v === undefined ? "—" : `${(v * 100).toFixed(1)}%`),
  avg_duration_seconds: (v) => formatDuration(v),
};

function applyMetrics(metrics) {
  const failedBefore = state.metrics ? state.metrics.failed : null;
  state.metrics = metrics;
  for (const card of document.querySelectorAll("[data-metric]")) {
    const key = card.dataset.metric;
    const format = METRIC_TEXT[key] || ((v) => (v ?? 0).toLocaleString());
    fill(card.querySelector(".value"), format(metrics[key]));
  }
  fill($("count-view"), metrics.total.toLocaleString());
  fill($("count-dead"), metrics.failed ? metrics.failed.toLocaleString() : "");
  if (state.tab === "dead" && failedBefore !== null && failedBefore !== metrics.failed) refreshTab();
}

function onDetail(task) {
  updatePanel(task);
}

// -- pause / resume -------------------------------------------------------------------

function setPaused(paused) {
  state.paused = paused;
  save("tf-paused", paused ? "1" : null);
  const button = $("pause");
  fill(button, paused ? "Resume" : "Pause");
  button.setAttribute("aria-pressed", String(paused));
  if (!paused) flushBuffer();
  renderBuffered();
}

function flushBuffer() {
  const buffered = state.buffer;
  state.buffer = [];
  state.bufferedNew.clear();
  for (const item of buffered) {
    if (item.snapshot) applySnapshot(item.snapshot);
    else if (item.metrics) applyMetrics(item.metrics);
    else applyTasks(item);
  }
  renderTable();
}

function renderBuffered() {
  const badge = $("buffered");
  const count = state.bufferedNew.size;
  badge.hidden = !state.paused || count === 0;
  fill(badge, `+${count}`);
  badge.setAttribute("title", `${count} new task${count === 1 ? "" : "s"} while paused`);
}

// -- filters and paging -------------------------------------------------------------

function viewChanged({ keepPage = false } = {}) {
  if (!keepPage) resetPaging();
  state.loading = true; // until the new view's snapshot: no paging from the old one
  renderTable();
  state.selected.clear();
  saveFilters();
  renderTimeButton();
  reconnect();
}

function initFilters() {
  const f = state.filters;
  $("f-status").value = f.status;
  $("f-search").value = f.search;
  $("time-val").value = f.timeVal || "1";
  $("time-unit").value = f.timeUnit || "hour";
  renderFunctionFilter();
  $("f-status").addEventListener("change", (e) => {
    f.status = e.target.value;
    viewChanged();
  });
  $("f-func").addEventListener("change", (e) => {
    f.func = e.target.value;
    viewChanged();
  });
  let typing = null;
  $("f-search").addEventListener("input", (e) => {
    window.clearTimeout(typing);
    typing = window.setTimeout(() => {
      f.search = e.target.value;
      viewChanged();
    }, 300);
  });
  registerPopover($("f-time"), $("time-pop"));
  $("time-apply").addEventListener("click", applyTimeWindow);
  $("time-clear").addEventListener("click", () => {
    f.timeVal = "";
    $("time-pop").hidden = true;
    viewChanged();
  });
  renderTimeButton();
}

function applyTimeWindow() {
  const amount = Number.parseInt($("time-val").value, 10);
  if (!amount || amount < 1) return toast("Enter a whole number of at least 1", "error");
  state.filters.timeVal = String(amount);
  state.filters.timeUnit = $("time-unit").value;
  $("time-pop").hidden = true;
  viewChanged();
}

const UNIT_LABEL = { min: "min", hour: "h", day: "d" };

function renderTimeButton() {
  const f = state.filters;
  fill($("f-time"), f.timeVal ? `Last ${f.timeVal} ${UNIT_LABEL[f.timeUnit] || f.timeUnit}` : "All time");
  $("f-time").classList.toggle("active", Boolean(f.timeVal));
}

function renderFunctionFilter() {
  const names = (config.functions || []).map((fn) => fn.name);
  if (state.filters.func && !names.includes(state.filters.func)) names.push(state.filters.func);
  fill($("f-func"), el("option", { value: "" }, "All functions"), names.sort().map((n) => el("option", { value: n }, n)));
  $("f-func").value = state.filters.func;
}

function initPaging() {
  $("next").addEventListener("click", () => {
    if (!state.nextCursor) return;
    state.cursors[state.pageIndex + 1] = state.nextCursor;
    state.pageIndex += 1;
    viewChanged({ keepPage: true });
  });
  $("prev").addEventListener("click", () => {
    if (state.pageIndex === 0) return;
    state.pageIndex -= 1;
    viewChanged({ keepPage: true });
  });
}

// -- actions --------------------------------------------------------------------------------

async function bulkRetry() {
  const ids = [...state.selected];
  try {
    const { data } = await api("POST", "/bulk-retry", { task_ids: ids });
    toast(`Retried ${data.dispatched} task${data.dispatched === 1 ? "" : "s"}${data.skipped ? `, skipped ${data.skipped}` : ""}`, "success");
    state.selected.clear();
    renderTable();
  } catch (error) {
    toastError(error);
  }
}

async function clearHistory() {
  const amount = el("input", { type: "number", min: "1", step: "1", value: "7", "aria-label": "Amount" });
  const unit = el("select", { "aria-label": "Unit" }, el("option", { value: "min" }, "minutes"), el("option", { value: "hour" }, "hours"), el("option", { value: "day" }, "days"));
  unit.value = "day";
  const body = [
    el("p", {}, "Delete finished tasks (success, failed, interrupted, cancelled) older than:"),
    el("div", { class: "row" }, amount, unit),
    el("p", { class: "muted small" }, "Pending and running tasks are never deleted."),
  ];
  if (!(await confirmDialog("Clear history", body, { okLabel: "Delete", danger: true }))) return;
  const value = Number.parseInt(amount.value, 10);
  if (!value || value < 1) return toast("Enter a whole number of at least 1", "error");
  try {
    const { data } = await api("DELETE", "/history", undefined, { value, unit: unit.value });
    toast(`Deleted ${data.deleted} task${data.deleted === 1 ? "" : "s"}`, "success");
  } catch (error) {
    toastError(error);
  }
}

function exportCsv() {
  download(csvFilename(), tasksCsv(sortedTasks()));
  toast(`Exported ${state.order.length} tasks`);
}

// -- theme and session ----------------------------------------------------------------------

function currentTheme() {
  return document.documentElement.getAttribute("data-theme") === "dark" ? "dark" : "light";
}

function setTheme(theme) {
  document.documentElement.setAttribute("data-theme", theme);
  save("tf-theme", theme);
  $("theme").setAttribute("aria-label", theme === "dark" ? "Switch to light theme" : "Switch to dark theme");
}

function renderSession() {
  document.body.classList.toggle("role-viewer", session.role === "viewer");
  const named = session.mode !== "open";
  $("user").hidden = !named;
  if (named) fill($("user"), `${session.username || ""} · ${session.role}`);
  $("logout").hidden = !session.auth;
}

// -- start ---------------------------------------------------------------------------------------

async function main() {
  fill($("title"), config.title);
  installGlobalKeys();
  setTheme(currentTheme());
  $("theme").addEventListener("click", () => setTheme(currentTheme() === "dark" ? "light" : "dark"));
  $("pause").addEventListener("click", () => setPaused(!state.paused));
  $("logout").addEventListener("click", () => logout());
  $("export").addEventListener("click", exportCsv);
  $("clear-history").addEventListener("click", clearHistory);
  $("bulk-retry").addEventListener("click", bulkRetry);
  initFilters();
  initPaging();
  initTable({ onOpen: openPanel, onSort: renderTable });
  initTabs({ onOpen: openPanel });
  initPanel({
    onChange: (id) => {
      state.detailId = id;
      renderTable();
      reconnect(true);
    },
  });
  onEscape(closePanel);
  setPaused(state.paused);
  await loadSession();
  renderSession();
  startLive(() => ({ ...viewParams(), task: isOpen() ? state.detailId : null }), {
    snapshot: applySnapshot,
    tasks: onTasks,
    metrics: onMetrics,
    detail: onDetail,
    error: checkSession,
  });
  switchTab("view");
  document.body.classList.remove("booting");
}

main().catch(toastError);

