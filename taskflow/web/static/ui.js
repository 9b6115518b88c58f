// Toasts, the confirmation dialog, popovers and copy-to-clipboard.

import { $, el, fill } from "./dom.js";

export function toast(message, kind = "info") {
  const node = el("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" }, message);
  $("toasts").appendChild(node);
  window.setTimeout(() => node.classList.add("leaving"), 3600);
  window.setTimeout(() => node.remove(), 4000);
}

export function toastError(error) {
  toast(error && error.message ? error.message : String(error), "error");
}

let dialogResolve = null;

/**
 * Ask for confirmation. body: nodes to show; returns true when confirmed.
 * okLabel / danger style the confirm button.
 */
export function confirmDialog(title, body, { okLabel = "Confirm", danger = false } = {}) {
  fill($("dialog-title"), title);
  fill($("dialog-body"), ...[].concat(body));
  const ok = $("dialog-ok");
  ok.textContent = okLabel;
  ok.className = danger ? "btn danger solid" : "btn primary";
  $("dialog").hidden = false;
  $("backdrop").hidden = false;
  const first = $("dialog-body").querySelector("input, select") || ok;
  first.focus();
  return new Promise((resolve) => {
    dialogResolve = resolve;
  });
}

function closeDialog(result) {
  if (!dialogResolve) return;
  $("dialog").hidden = true;
  $("backdrop").hidden = true;
  const resolve = dialogResolve;
  dialogResolve = null;
  resolve(result);
}

const popovers = [];

/** A button that toggles a popover; clicks outside and Escape close it. */
export function registerPopover(button, popover) {
  popovers.push({ button, popover });
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    const open = popover.hidden;
    closePopovers();
    popover.hidden = !open;
    button.setAttribute("aria-expanded", String(open));
  });
  popover.addEventListener("click", (event) => event.stopPropagation());
}

export function closePopovers() {
  for (const { button, popover } of popovers) {
    popover.hidden = true;
    button.setAttribute("aria-expanded", "false");
  }
}

const escapeHandlers = [];

/** Escape closes the topmost thing: dialog, popover, then what handlers register. */
export function onEscape(handler) {
  escapeHandlers.push(handler);
}

export function installGlobalKeys() {
  $("dialog-ok").addEventListener("click", () => closeDialog(true));
  $("dialog-cancel").addEventListener("click", () => closeDialog(false));
  $("backdrop").addEventListener("click", () => closeDialog(false));
  document.addEventListener("click", closePopovers);
  document.addEventListener("keydown", (event) => {
    if (event.key === "Enter" && dialogResolve && event.target.tagName !== "BUTTON") {
      closeDialog(true);
      return;
    }
    if (event.key !== "Escape") return;
    if (dialogResolve) {
      closeDialog(false);
    } else if (popovers.some(({ popover }) => !popover.hidden)) {
      closePopovers();
    } else {
      escapeHandlers.forEach((handler) => handler());
    }
  });
}

export async function copyText(text) {
  try {
    await navigator.clipboard.writeText(text);
    toast("Copied to clipboard");
  } catch (e) {
    toast("Could not copy: the browser refused clipboard access", "error");
  }
}

/** A small button that copies `text`. */
export function copyButton(text, label = "Copy") {
  const button = el("button", { type: "button", class: "copy", title: `${label}: ${text}`, "aria-label": label });
  button.addEventListener("click", (event) => {
    event.stopPropagation();
    copyText(text);
  });
  return button;
}
