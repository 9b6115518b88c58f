// The slide-in detail panel: details, logs and error of one task, live.

import { $, badge, el, fill, formatDuration, formatTime, load, safeToken, save } from "./dom.js";
import { api, config, session } from "./api.js";
import { sourceBadge, priorityBadge } from "./table.js";
import { copyButton, toast, toastError } from "./ui.js";

const DEFAULT_WIDTH = 440;
const MIN_WIDTH = 320;
const panel = { task: null, tab: "details", analytics: null, recent: null, onChange: () => {} };

const maxWidth = () => Math.min(900, window.innerWidth * 0.82);
const clampWidth = (w) => Math.round(Math.max(MIN_WIDTH, Math.min(maxWidth(), w)));

/** onChange(taskId|null): the open task changed (the stream follows it). */
export function initPanel({ onChange }) {
  panel.onChange = onChange;
  $("panel-close").addEventListener("click", closePanel);
  for (const tab of document.querySelectorAll(".ptab")) {
    tab.addEventListener("click", () => showTab(tab.dataset.ptab));
  }
  initResizer();
}

export function isOpen() {
  return !$("panel").hidden;
}

export async function openPanel(taskId) {
  const aside = $("panel");
  aside.hidden = false;
  aside.style.width = `${clampWidth(Number(load("tf-panel-width", DEFAULT_WIDTH)))}px`;
  if (!panel.task || panel.task.task_id !== taskId) {
    panel.task = { task_id: taskId, loading: true };
    panel.analytics = panel.recent = null;
    render();
  }
  panel.onChange(taskId);
  try {
    const { data } = await api("GET", `/${encodeURIComponent(taskId)}`);
    if (panel.task && panel.task.task_id === taskId) updatePanel(data);
    loadFunctionStats(data.func_name, taskId);
  } catch (error) {
    toastError(error);
  }
}

export function closePanel() {
  if ($("panel").hidden) return;
  $("panel").hidden = true;
  panel.task = null;
  panel.onChange(null);
}

/** A newer version of the open task (from the stream or an action). */
export function updatePanel(task) {
  if (!panel.task || task.task_id !== panel.task.task_id) return;
  if (task.missing) {
    toast("This task no longer exists", "error");
    closePanel();
    return;
  }
  // The stream adds the arguments; a plain GET does not carry them.
  const args = task.args === undefined && panel.task.args !== undefined ? { args: panel.task.args, kwargs: panel.task.kwargs } : {};
  panel.task = { ...task, ...args };
  render();
}

async function loadFunctionStats(funcName, taskId) {
  try {
    const [metrics, recent] = await Promise.all([
      api("GET", "/metrics"),
      api("GET", "", undefined, { func_name: funcName, limit: 5 }),
    ]);
    if (!panel.task || panel.task.task_id !== taskId) return;
    const all = metrics.data.functions || metrics.data.by_function || [];
    panel.analytics = all.find((f) => f.func_name === funcName) || null;
    panel.recent = recent.data;
    render();
  } catch (error) {
    /* analytics are a bonus: the panel works without them */
  }
}

function showTab(name) {
  panel.tab = name;
  render();
}

function render() {
  const task = panel.task;
  if (!task) return;
  fill($("panel-title"), task.func_name || "…");
  for (const tab of document.querySelectorAll(".ptab")) {
    tab.setAttribute("aria-selected", String(tab.dataset.ptab === panel.tab));
  }
  fill($("log-count"), String((task.logs || []).length));
  const body = $("panel-body");
  if (task.loading) return fill(body, el("p", { class: "muted" }, "Loading…"));
  if (panel.tab === "logs") return fill(body, logsView(task.logs || []));
  if (panel.tab === "error") return fill(body, errorView(task));
  return fill(body, detailsView(task));
}

// -- details -----------------------------------------------------------------

function detailsView(task) {
  return [
    el("div", { class: "id-line mono" }, task.task_id, copyButton(task.task_id, "Copy ID")),
    el("div", { class: "badges" }, badge(task.status), executorBadge(task.executor), sourceBadge(task), task.priority === null || task.priority === undefined ? null : priorityBadge(task.priority)),
    actions(task),
    facts([
      ["Function", task.func_name],
      ["Status", task.status],
      ["Created", formatTime(task.created_at)],
      ["Started", formatTime(task.start_time)],
      ["Ended", formatTime(task.end_time)],
      ["Duration", formatDuration(task.duration)],
      ["Retries used", `${task.retries_used} of ${task.max_retries}`],
      ["Priority", task.priority === null || task.priority === undefined ? "—" : String(task.priority)],
      ["Executor", task.executor || "—"],
      ["Source", task.source],
      task.status === "pending" ? ["Runs at", formatTime(task.run_at)] : null,
      task.scheduled_for ? ["Scheduled for", formatTime(task.scheduled_for)] : null,
      task.retried_from ? ["Retry of", task.retried_from] : null,
    ]),
    tagsView(task.tags),
    argumentsView(task),
    task.result !== null && task.result !== undefined ? section("Result", el("pre", { class: "code" }, JSON.stringify(task.result, null, 2))) : null,
    analyticsView(),
    recentView(task),
  ];
}

function executorBadge(executor) {
  return executor ? el("span", { class: `pill executor-${safeToken(executor)}` }, executor) : null;
}

function facts(pairs) {
  const list = el("dl", { class: "facts" });
  for (const pair of pairs.filter(Boolean)) {
    list.append(el("div", {}, el("dt", {}, pair[0]), el("dd", {}, pair[1] === null || pair[1] === undefined ? "—" : pair[1])));
  }
  return list;
}

function section(title, ...content) {
  return el("section", { class: "panel-section" }, el("h3", {}, title), ...content);
}

function tagsView(tags) {
  const entries = Object.entries(tags || {});
  if (!entries.length) return null;
  return section("Tags", el("div", { class: "tags" }, entries.map(([k, v]) => el("span", { class: "pill tag" }, `${k}: ${v}`))));
}

function argumentsView(task) {
  if (!config.showArgs || task.args === undefined) return null;
  if (task.args === null) return section("Arguments", el("p", { class: "muted" }, "Not readable (encrypted or not JSON)."));
  const positional = task.args.map((a, i) => el("div", { class: "arg" }, el("span", { class: "arg-name" }, `#${i}`), el("code", {}, a)));
  const keyword = Object.entries(task.kwargs || {}).map(([k, v]) => el("div", { class: "arg" }, el("span", { class: "arg-name" }, k), el("code", {}, v)));
  const all = positional.concat(keyword);
  return section("Arguments", all.length ? all : el("p", { class: "muted" }, "No arguments."));
}

function actions(task) {
  if (session.role === "viewer") return null;
  const box = el("div", { class: "actions op" });
  if (task.status === "pending" || task.status === "running") {
    const cancel = el("button", { type: "button", class: "btn danger", "data-action": "cancel" }, "Cancel task");
    cancel.addEventListener("click", () => act(cancel, "cancel", task));
    box.append(cancel);
    if (task.status === "running" && task.executor !== "async") {
      box.append(el("p", { class: "note" }, "A thread or process cannot be stopped: the task is recorded cancelled, its work may still finish."));
    }
  }
  if (task.status === "failed" || task.status === "interrupted") {
    const retry = el("button", { type: "button", class: "btn primary", "data-action": "retry" }, "Retry task");
    retry.addEventListener("click", () => act(retry, "retry", task));
    box.append(retry);
    if (task.status === "interrupted") {
      box.append(el("p", { class: "note warn" }, "Interrupted tasks may have done part of their work: make sure running it again is safe."));
    }
  }
  return box.childElementCount ? box : null;
}

async function act(button, action, task) {
  button.disabled = true;
  try {
    const { data } = await api("POST", `/${encodeURIComponent(task.task_id)}/${action}`);
    if (action === "retry") {
      toast(`Retried as ${String(data.task_id).slice(0, 8)}`, "success");
    } else {
      toast("Task cancelled", "success");
      if (data.task) updatePanel(data.task);
    }
  } catch (error) {
    toastError(error);
  } finally {
    button.disabled = false;
  }
}

function analyticsView() {
  const stats = panel.analytics;
  if (!stats) return null;
  const rate = stats.success_rate === null || stats.success_rate === undefined ? "—" : `${(stats.success_rate * 100).toFixed(1)}%`;
  return section(
    "Function analytics",
    el(
      "div",
      { class: "mini-cards" },
      mini("Runs", stats.total),
      mini("Success", stats.success),
      mini("Failed", stats.failed),
      mini("Running", stats.running),
      mini("Success rate", rate),
      mini("Avg", formatDuration(stats.avg_duration)),
      mini("Min", formatDuration(stats.min_duration)),
      mini("Max", formatDuration(stats.max_duration)),
      mini("P95", formatDuration(stats.p95_duration)),
    ),
  );
}

function mini(label, value) {
  return el("div", { class: "mini" }, el("span", { class: "label" }, label), el("span", { class: "value" }, String(value ?? "—")));
}

function recentView(task) {
  if (!panel.recent) return null;
  const rows = panel.recent.map((run) => {
    const item = el(
      "li",
      { class: run.task_id === task.task_id ? "current" : "", tabindex: "0", "data-id": run.task_id },
      el("span", { class: "mono" }, run.task_id.slice(0, 8)),
      badge(run.status),
      el("span", { class: "muted" }, formatTime(run.created_at)),
      el("span", { class: "num" }, formatDuration(run.duration)),
    );
    item.addEventListener("click", () => openPanel(run.task_id));
    item.addEventListener("keydown", (event) => {
      if (event.key === "Enter") openPanel(run.task_id);
    });
    return item;
  });
  return section("Recent runs", el("ul", { class: "recent" }, rows));
}

// -- logs and error ---------------------------------------------------------------

// Stored lines are "2026-01-31T12:00:00 message", in UTC without an offset.
const LOG_LINE = /^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(?:\.\d+)?)(Z|[+-]\d\d:\d\d)? (.*)$/s;

function logsView(lines) {
  if (!lines.length) return el("p", { class: "muted" }, "No log lines.");
  return el("ol", { class: "logs" }, lines.map(logLine));
}

function logLine(line) {
  const match = LOG_LINE.exec(line);
  const message = match ? match[3] : line;
  if (message.startsWith("--- ")) {
    return el("li", { class: "log-separator" }, message.replace(/^-+\s*|\s*-+$/g, ""));
  }
  const stamp = match ? new Date(match[1] + (match[2] || "Z")) : null;
  const shown = stamp && !Number.isNaN(stamp.getTime()) ? formatTime(stamp.toISOString()) : "";
  return el(
    "li",
    {},
    el("time", { class: "log-time", title: match ? match[1] + (match[2] || " UTC") : "" }, shown),
    el("span", { class: "log-message" }, message),
  );
}

function errorView(task) {
  if (!task.error && !task.stacktrace) return el("p", { class: "muted" }, "No error.");
  return [
    el("p", { class: "error-message" }, task.error || ""),
    task.stacktrace ? el("pre", { class: "code stack" }, task.stacktrace) : null,
  ];
}

// -- resizing ----------------------------------------------------------------------

function initResizer() {
  const handle = $("panel-resizer");
  const aside = $("panel");
  handle.addEventListener("pointerdown", (event) => {
    event.preventDefault();
    handle.setPointerCapture(event.pointerId);
    aside.classList.add("resizing");
  });
  handle.addEventListener("pointermove", (event) => {
    if (!handle.hasPointerCapture(event.pointerId)) return;
    aside.style.width = `${clampWidth(window.innerWidth - event.clientX)}px`;
  });
  handle.addEventListener("pointerup", (event) => {
    handle.releasePointerCapture(event.pointerId);
    aside.classList.remove("resizing");
    save("tf-panel-width", parseInt(aside.style.width, 10));
  });
  handle.addEventListener("dblclick", () => {
    aside.style.width = `${clampWidth(DEFAULT_WIDTH)}px`;
    save("tf-panel-width", null);
  });
}
