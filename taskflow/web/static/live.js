// The live connection: one EventSource for the current view, reopened when the view changes.

import { $, fill } from "./dom.js";
import { appendParams, config } from "./api.js";

const RECONNECT_MS = 3000;
let source = null;
let retryTimer = null;
let paramsOf = () => ({});
let handlers = {};

/** handlers: {snapshot, tasks, metrics, detail, error}; params: () => the view's query parameters. */
export function startLive(viewParams, eventHandlers) {
  paramsOf = viewParams;
  handlers = eventHandlers;
  reconnect();
}

/** Open the stream again with the current view (filters, page, open task). */
export function reconnect(quiet = false) {
  window.clearTimeout(retryTimer);
  if (source) source.close();
  const url = new URL(config.stream, window.location.origin);
  appendParams(url.searchParams, paramsOf());
  if (!quiet) setState("connecting");
  source = new EventSource(url, { withCredentials: true });
  source.addEventListener("open", () => setState("live"));
  for (const name of ["snapshot", "tasks", "metrics", "detail"]) {
    source.addEventListener(name, (event) => dispatch(name, event));
  }
  source.addEventListener("bye", () => reconnect(true));
  source.addEventListener("error", () => {
    if (handlers.error) handlers.error();
    setState("disconnected");
    source.close();
    retryTimer = window.setTimeout(reconnect, RECONNECT_MS);
  });
}

function dispatch(name, event) {
  setState("live");
  let data;
  try {
    data = JSON.parse(event.data);
  } catch (e) {
    return;
  }
  handlers[name](data);
}

const LABELS = { connecting: "Connecting", live: "Live", disconnected: "Disconnected" };

function setState(name) {
  const live = $("live");
  if (live.dataset.state === name) return;
  live.dataset.state = name;
  fill($("live-label"), LABELS[name]);
}
