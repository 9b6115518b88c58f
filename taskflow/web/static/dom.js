// DOM and formatting helpers. Every value reaches the page through textContent
// or setAttribute with a fixed attribute name: nothing here parses HTML.

const SAFE_ATTRIBUTES = new Set([
  "class", "id", "title", "type", "role", "value", "checked", "disabled", "hidden",
  "aria-label", "aria-selected", "aria-pressed", "data-id", "data-status", "data-tab",
  "data-action", "data-name", "tabindex", "min", "max", "step", "placeholder", "colspan",
]);

/** Build an element: el("td", {class: "x"}, "text", childNode, ...). */
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs)) {
    if (value === null || value === undefined || value === false) continue;
    if (!SAFE_ATTRIBUTES.has(name)) throw new Error(`attribute not allowed: ${name}`);
    node.setAttribute(name, value === true ? "" : String(value));
  }
  for (const child of children) append(node, child);
  return node;
}

function append(node, child) {
  if (child === null || child === undefined || child === false) return;
  if (Array.isArray(child)) {
    child.forEach((c) => append(node, c));
  } else if (child instanceof Node) {
    node.appendChild(child);
  } else {
    node.appendChild(document.createTextNode(String(child)));
  }
}

/** Replace every child of node. */
export function fill(node, ...children) {
  node.replaceChildren();
  for (const child of children) append(node, child);
  return node;
}

export const $ = (id) => document.getElementById(id);

// -- storage -------------------------------------------------------------------

export function load(key, fallback) {
  try {
    const value = window.localStorage.getItem(key);
    return value === null ? fallback : value;
  } catch (e) {
    return fallback;
  }
}

export function save(key, value) {
  try {
    if (value === null || value === undefined || value === "") window.localStorage.removeItem(key);
    else window.localStorage.setItem(key, String(value));
  } catch (e) {
    /* private mode: settings just do not persist */
  }
}

// -- formatting ----------------------------------------------------------------

const dateTime = new Intl.DateTimeFormat(undefined, {
  year: "numeric", month: "short", day: "2-digit",
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});
const timeOnly = new Intl.DateTimeFormat(undefined, {
  hour: "2-digit", minute: "2-digit", second: "2-digit",
});

/** An ISO timestamp with its offset, shown in the viewer's own time zone. */
export function formatTime(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : dateTime.format(date);
}

export function formatClock(date) {
  return timeOnly.format(date);
}

/** Seconds as "850 ms", "12.4 s", "3 min 5 s", "2 h 4 min". */
export function formatDuration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  if (seconds < 0.001) return "<1 ms";
  if (seconds < 1) return `${Math.round(seconds * 1000)} ms`;
  if (seconds < 60) return `${seconds.toFixed(seconds < 10 ? 2 : 1)} s`;
  const minutes = Math.floor(seconds / 60);
  if (minutes < 60) return `${minutes} min ${Math.round(seconds % 60)} s`;
  return `${Math.floor(minutes / 60)} h ${minutes % 60} min`;
}

export function formatRelative(iso) {
  if (!iso) return "—";
  const seconds = Math.round((Date.now() - new Date(iso).getTime()) / 1000);
  if (seconds < 60) return `${Math.max(seconds, 0)} s ago`;
  if (seconds < 3600) return `${Math.floor(seconds / 60)} min ago`;
  return formatTime(iso);
}

// Task ids are UUID v7: the first digits are a timestamp shared by every task
// of the same minute, so the short form is the random tail.
export function shortId(id) {
  return String(id || "").slice(-8);
}

export function truncate(text, length) {
  const value = String(text || "");
  return value.length > length ? `${value.slice(0, length - 1)}…` : value;
}

export function badge(status) {
  return el("span", { class: `badge status-${safeToken(status)}` }, status);
}

/** A token usable in a class name: anything unexpected becomes "other". */
export function safeToken(value) {
  return /^[a-z_]{1,20}$/.test(String(value)) ? String(value) : "other";
}
