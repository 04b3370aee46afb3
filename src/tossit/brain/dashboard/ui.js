// Shared widgets: toasts, dialogs, progress bars, state badges, buttons that
// explain why they are disabled.

import { $, h, icon, replace } from "./dom.js";
import { pct } from "./format.js";

// -- toasts -----------------------------------------------------------------

export function toast(message, kind = "info", ms = 5000) {
  const box = $("#toasts");
  const close = h("button", { class: "toast-close", type: "button", "aria-label": "Dismiss" }, icon("x"));
  const el = h("div", { class: `toast ${kind}`, role: kind === "error" ? "alert" : "status" },
    icon(kind === "error" ? "warning" : kind === "ok" ? "check" : "info"),
    h("span", { class: "toast-text" }, message), close);
  close.addEventListener("click", () => el.remove());
  box.append(el);
  if (kind !== "error" && ms) setTimeout(() => el.remove(), ms);
  return el;
}

// -- dialogs ----------------------------------------------------------------

/**
 * A modal dialog (native <dialog>: Escape closes it, focus stays inside).
 * body: nodes; actions: [{label, kind, value, disabled, title, describedBy}]; onAction(value,
 * dialog) may return a promise (the buttons are disabled meanwhile) and false
 * to keep it open. Resolves with the value of the action taken, or null.
 */
export function openDialog({ title, body, actions, onAction, wide = false, label }) {
  return new Promise((resolve) => {
    const errorBox = h("p", { class: "dialog-error", role: "alert", hidden: true });
    const buttons = actions.map((a) => h("button", {
      class: `btn ${a.kind || ""}`, type: "button", value: a.value, disabled: a.disabled,
      title: a.title, dataset: { action: a.value }, "aria-describedby": a.describedBy,
    }, a.label));
    const heading = h("h2", { class: "dialog-title", id: `dlg-${Date.now()}` }, title);
    const closeX = h("button", { class: "icon-btn dialog-x", type: "button", "aria-label": "Close" }, icon("x"));
    const dlg = h("dialog", { class: `dialog ${wide ? "wide" : ""}`, "aria-labelledby": heading.id, "aria-label": label },
      h("div", { class: "dialog-head" }, heading, closeX),
      h("div", { class: "dialog-body" }, body),
      errorBox,
      h("div", { class: "dialog-actions" }, buttons));
    let result = null;
    const finish = (value) => {
      result = value;
      dlg.close();
    };
    closeX.addEventListener("click", () => finish(null));
    dlg.addEventListener("close", () => {
      dlg.remove();
      resolve(result);
    });
    buttons.forEach((btn, i) => btn.addEventListener("click", async () => {
      const a = actions[i];
      if (!onAction || a.value === "cancel") return finish(a.value === "cancel" ? null : a.value);
      buttons.forEach((b) => (b.disabled = true));
      errorBox.hidden = true;
      btn.classList.add("busy");
      try {
        const keep = await onAction(a.value, dlg);
        if (keep === false) return;
        finish(a.value);
      } catch (exc) {
        errorBox.textContent = exc.message || String(exc);
        errorBox.hidden = false;
      } finally {
        btn.classList.remove("busy");
        buttons.forEach((b, j) => (b.disabled = Boolean(actions[j].disabled)));
      }
    }));
    document.body.append(dlg);
    dlg.showModal();
    const primary = buttons.find((b) => b.dataset.action === "cancel") || buttons[0];
    if (primary) primary.focus();
  });
}

export function confirmDialog({ title, body, confirm, danger = true, onConfirm }) {
  return openDialog({
    title, body,
    actions: [
      { label: "Cancel", value: "cancel", kind: "ghost" },
      { label: confirm, value: "ok", kind: danger ? "danger" : "primary" },
    ],
    onAction: onConfirm ? async (v) => (v === "ok" ? onConfirm() : undefined) : undefined,
  }).then((v) => v === "ok");
}

// -- bits -------------------------------------------------------------------

/** A progress bar; update(value, max) moves it. */
export function progressBar(label, cls = "") {
  const fill = h("div", { class: "bar-fill" });
  const el = h("div", {
    class: `bar ${cls}`, role: "progressbar", "aria-label": label,
    "aria-valuemin": "0", "aria-valuemax": "100", "aria-valuenow": "0",
  }, fill);
  el.update = (value, max) => {
    const p = pct(value, max);
    fill.style.width = `${p}%`;
    el.setAttribute("aria-valuenow", String(Math.floor(p)));
  };
  return el;
}

const STATE_WORDS = {
  online: "Online", suspect: "Suspect", offline: "Offline", dead: "Dead", unknown: "Unknown",
  unreachable: "Unreachable",
  draining: "Draining", drained: "Drained", removed: "Removed",
};

export function stateBadge(stateName, extraTitle) {
  const word = STATE_WORDS[stateName] || stateName;
  return h("span", { class: `state state-${stateName}`, title: extraTitle, dataset: { state: stateName } },
    h("span", { class: "dot", "aria-hidden": "true" }), word);
}

// The same button gets the same id for its reason on every live re-render (morph
// keeps the nodes, so the pointer and the words stay paired).
const slug = (text) => text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "").slice(0, 60);

/**
 * A button that is disabled when `why` is set, and then says why in words that
 * keyboard, touch and screen-reader users reach too (a tooltip alone needs a
 * mouse): next to it by default, or, with `whyId`, in a visible note the caller
 * shows once for many buttons (a table's rows). The button points at the words
 * with aria-describedby; the tooltip stays for mouse users.
 */
export function actionButton(label, { kind = "", why = null, whyId = null, onClick, iconName, title, small = true, attrs = {} }) {
  const own = why && !whyId ? `why-${attrs.id || slug(`${label} ${why}`)}` : null;
  const btn = h("button", {
    class: `btn ${kind} ${small ? "small" : ""}`.trim(), type: "button",
    disabled: Boolean(why), title: why || title, "aria-describedby": why ? whyId || own : null, ...attrs,
  }, iconName ? icon(iconName) : null, h("span", label));
  if (onClick && !why) btn.addEventListener("click", onClick);
  if (!why) return btn;
  // A disabled button gets no mouse events in some browsers: the wrapper
  // carries the same tooltip so that hovering always tells why.
  return h("span", { class: `tip${own ? " why" : ""}`, title: why }, btn,
    own ? h("span", { class: "why-text", id: own }, why) : null);
}

/** The id of the words that say why an actionButton is disabled (null if it is not). */
export function whyIdOf(el) {
  const words = el.querySelector(".why-text");
  return words ? words.id : null;
}

/** The visible note that buttons made with actionButton({whyId}) point at. */
export function whyNote(id, text) {
  return h("p", { class: "why-note", id, hidden: !text }, text || "");
}

export function emptyState(title, text) {
  return h("div", { class: "empty" }, h("p", { class: "empty-title" }, title), text ? h("p", { class: "muted" }, text) : null);
}

export function setBusy(el, busy) {
  el.classList.toggle("loading", busy);
  el.setAttribute("aria-busy", busy ? "true" : "false");
}

export function pageHeader(title, subtitle, ...right) {
  return h("div", { class: "page-head" },
    h("div", h("h1", title), subtitle ? h("p", { class: "muted" }, subtitle) : null),
    h("div", { class: "page-actions" }, right));
}

export function setText(el, text) {
  if (el.textContent !== text) el.textContent = text;
}

export { replace };
