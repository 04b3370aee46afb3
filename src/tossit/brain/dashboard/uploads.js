// Uploads: each file is one XMLHttpRequest PUT of the raw bytes (the progress
// bar, MB/s and time left come from its upload progress events), at most a
// few at once, each cancellable and retryable.

import { CSRF_HEADER, get, uploadPath } from "./api.js";
import { h, icon, replace } from "./dom.js";
import { bytes, duration, num, rate } from "./format.js";
import { emit } from "./store.js";
import { openDialog, progressBar } from "./ui.js";

const PARALLEL = 3;
const items = []; // every upload of this page's life (finished ones until dismissed)
let seq = 0;
let panel = null; // the list element while the files page is shown
let onUnauthorized = () => {};

export function setUploadUnauthorized(fn) {
  onUnauthorized = fn;
}

export function uploadsBusy() {
  return items.some((u) => u.status === "queued" || u.status === "sending" || u.status === "storing");
}

/** Queue files: [{file, name}] (name may have folders: a/b/c.txt). A name that
 * is taken asks first: Replace, Keep both (the brain picks "name (2).ext") or
 * Skip. The others go up with on_conflict=fail, so a file someone else uploads
 * under that name meanwhile is never replaced silently (the row says so). */
export async function enqueue(entries) {
  const taken = await takenNames(entries.map((e) => e.name));
  let forAll = null;
  let left = entries.filter((e) => taken.has(e.name)).length;
  for (const { file, name } of entries) {
    let onConflict = "fail";
    if (taken.has(name)) {
      left -= 1;
      const choice = forAll || await askConflict(name, left);
      if (choice.all) forAll = choice;
      if (choice.mode === "skip") continue;
      onConflict = choice.mode;
    }
    const u = { id: ++seq, file, name, onConflict, status: "queued", loaded: 0, total: file.size, samples: [], xhr: null, error: null, result: null, el: null };
    items.push(u);
    if (panel) panel.prepend(rowFor(u));
  }
  pump();
  renderPanelState();
}

/** Which of these names are files already (one indexed lookup each, 8 at a time). */
async function takenNames(names) {
  const out = new Set();
  const queue = [...new Set(names)];
  async function worker() {
    while (queue.length) {
      const name = queue.shift();
      try {
        const found = await get(`/api/files?prefix=${encodeURIComponent(name)}&sort=name&order=asc&limit=1`);
        if (found.length && found[0].name === name) out.add(name);
      } catch {
        // Unknown: the upload's on_conflict=fail will tell.
      }
    }
  }
  await Promise.all(Array.from({ length: Math.min(8, queue.length) }, worker));
  return out;
}

async function askConflict(name, more) {
  const all = h("input", { type: "checkbox", id: "conflict-all" });
  const body = [h("p", "A file named ", h("strong", name), " is already stored. Replace it, keep both (this one is stored as a numbered copy), or skip this file?")];
  if (more > 0) body.push(h("label", { class: "check-line" }, all, ` Do the same for the other ${num(more)} ${more === 1 ? "file" : "files"} whose name is taken`));
  const mode = await openDialog({
    title: "This name is taken", body, label: `Conflict for ${name}`,
    actions: [
      { label: "Skip", value: "skip", kind: "ghost" },
      { label: "Keep both", value: "rename" },
      { label: "Replace", value: "replace", kind: "primary", title: "The stored file is replaced by this one (it gets a new id)" },
    ],
  });
  return { mode: mode || "skip", all: all.checked };
}

function pump() {
  const active = items.filter((u) => u.status === "sending" || u.status === "storing").length;
  const waiting = items.filter((u) => u.status === "queued");
  for (const u of waiting.slice(0, Math.max(0, PARALLEL - active))) start(u);
}

function start(u) {
  const xhr = new XMLHttpRequest();
  u.xhr = xhr;
  u.status = "sending";
  u.loaded = 0;
  u.error = null;
  u.started = performance.now();
  u.samples = [{ t: u.started, b: 0 }];
  xhr.open("PUT", `${uploadPath(u.name)}?on_conflict=${u.onConflict || "fail"}`);
  xhr.setRequestHeader(CSRF_HEADER, "1");
  xhr.setRequestHeader("Content-Type", u.file.type || "application/octet-stream");
  xhr.setRequestHeader("Accept", "application/json");
  xhr.upload.addEventListener("progress", (ev) => {
    if (u.xhr !== xhr) return;
    u.loaded = ev.loaded;
    if (ev.lengthComputable) u.total = ev.total;
    const now = performance.now();
    u.samples.push({ t: now, b: ev.loaded });
    while (u.samples.length > 2 && now - u.samples[0].t > 3000) u.samples.shift();
    if (ev.loaded >= u.total) u.status = "storing";
    update(u);
  });
  xhr.upload.addEventListener("load", () => {
    if (u.xhr !== xhr) return;
    u.loaded = u.total;
    u.status = "storing";
    update(u);
  });
  xhr.addEventListener("load", () => {
    if (u.xhr !== xhr) return;
    let body = null;
    try {
      body = JSON.parse(xhr.responseText);
    } catch {
      body = null;
    }
    if (xhr.status === 201 || xhr.status === 200) {
      u.status = "done";
      u.loaded = u.total;
      u.result = body;
      u.elapsed = (performance.now() - u.started) / 1000;
      emit("files-changed", body);
    } else {
      u.status = "failed";
      u.errorCode = body && body.error;
      u.error = (body && body.message) || `${xhr.status} ${xhr.statusText || "error"}`;
      if (body && body.error) u.error = `${u.error} (${body.error})`;
      if (xhr.status === 401) onUnauthorized(body && body.message ? body.message : "unauthorized");
    }
    finish(u);
  });
  xhr.addEventListener("error", () => {
    if (u.xhr !== xhr) return;
    u.status = "failed";
    u.error = "The connection to the brain was lost during the upload; nothing was stored.";
    finish(u);
  });
  xhr.addEventListener("abort", () => {
    if (u.xhr !== xhr) return;
    u.status = "cancelled";
    finish(u);
  });
  xhr.send(u.file);
  update(u);
}

function finish(u) {
  u.xhr = null;
  update(u);
  pump();
  renderPanelState();
}

function cancel(u) {
  if (u.xhr) u.xhr.abort();
  else if (u.status === "queued") {
    u.status = "cancelled";
    update(u);
    renderPanelState();
  }
}

function retry(u, onConflict) {
  if (onConflict) u.onConflict = onConflict;
  u.errorCode = null;
  u.status = "queued";
  u.loaded = 0;
  u.error = null;
  update(u);
  pump();
  renderPanelState();
}

function dismiss(u) {
  const i = items.indexOf(u);
  if (i >= 0) items.splice(i, 1);
  if (u.el) u.el.remove();
  renderPanelState();
}

/** Signing out: stop every upload and forget the list. */
export function abortAll() {
  const all = items.splice(0); // first, so that no queued one starts meanwhile
  for (const u of all) {
    u.status = "cancelled";
    if (u.xhr) u.xhr.abort();
  }
  if (panel) replace(panel);
  renderPanelState();
}

export function clearFinished() {
  for (const u of [...items]) if (u.status === "done" || u.status === "cancelled") dismiss(u);
}

// -- the list -------------------------------------------------------------------

function speed(u) {
  const a = u.samples[0];
  const b = u.samples[u.samples.length - 1];
  if (!a || !b || b.t - a.t < 200) return null;
  return ((b.b - a.b) / (b.t - a.t)) * 1000;
}

function rowFor(u) {
  const bar = progressBar(`Upload of ${u.name}`, "upload-bar");
  const status = h("p", { class: "upload-status small", "aria-live": "off" });
  const actions = h("div", { class: "upload-actions" });
  const name = h("span", { class: "upload-name", title: u.name }, u.name);
  u.el = h("li", { class: "upload", dataset: { name: u.name } },
    h("div", { class: "upload-top" }, name, h("span", { class: "muted small upload-size" }, bytes(u.total)), actions),
    bar, status);
  u.parts = { bar, status, actions, name };
  update(u);
  return u.el;
}

function button(label, iconName, onClick, cls = "ghost") {
  const b = h("button", { class: `btn small ${cls}`, type: "button" }, icon(iconName), h("span", label));
  b.addEventListener("click", onClick);
  return b;
}

function update(u) {
  if (!u.el || !u.parts) return;
  const { bar, status, actions } = u.parts;
  u.el.dataset.status = u.status;
  bar.update(u.status === "done" ? 1 : u.loaded, u.status === "done" ? 1 : u.total || 1);
  bar.classList.toggle("ok", u.status === "done");
  bar.classList.toggle("bad", u.status === "failed");
  bar.classList.toggle("idle", u.status === "cancelled" || u.status === "queued");
  let text = "";
  if (u.status === "queued") text = "Waiting for a free slot…";
  else if (u.status === "sending") {
    const bps = speed(u);
    const left = bps ? (u.total - u.loaded) / bps : null;
    text = `${bytes(u.loaded)} of ${bytes(u.total)} · ${bps === null ? "measuring…" : rate(bps)}${left === null ? "" : ` · ${duration(left)} left`}`;
  } else if (u.status === "storing") text = "Sent; waiting for the nodes to store every copy…";
  else if (u.status === "done") {
    const avg = u.elapsed ? u.total / u.elapsed : null;
    text = `Uploaded · ${bytes(u.total)} in ${duration(u.elapsed)}${avg ? ` (${rate(avg)})` : ""}`;
    if (u.result && u.result.name && u.result.name !== u.name) text += ` · stored as ${u.result.name}`;
    if (u.result && u.result.replication && u.result.replication.state !== "healthy") {
      text += ` · ${u.result.replication.min_copies} of ${u.result.replication.target} copies so far`;
    }
  } else if (u.status === "failed") text = `Failed: ${u.error}`;
  else if (u.status === "cancelled") text = "Cancelled; nothing was stored.";
  if (status.textContent !== text) status.textContent = text;
  status.classList.toggle("crit-text", u.status === "failed");
  const want = u.status;
  if (actions.dataset.for === want) return;
  actions.dataset.for = want;
  const kids = [];
  if (want === "queued" || want === "sending" || want === "storing") kids.push(button("Cancel", "x", () => cancel(u)));
  if (want === "failed" && u.errorCode === "name_taken") {
    // Someone stored a file of that name meanwhile: the same choice as before.
    kids.push(button("Replace", "upload", () => retry(u, "replace"), ""), button("Keep both", "upload", () => retry(u, "rename")));
  } else if (want === "failed" || want === "cancelled") kids.push(button("Retry", "retry", () => retry(u), ""));
  if (want === "failed" || want === "cancelled") kids.push(button("Dismiss", "x", () => dismiss(u)));
  if (want === "done") {
    if (u.result && u.result.id) kids.push(h("a", { class: "btn small ghost", href: `#/files/${u.result.id}` }, "Details"));
    kids.push(button("Dismiss", "x", () => dismiss(u)));
  }
  replace(actions, kids);
}

function renderPanelState() {
  const active = items.filter((u) => u.status === "sending" || u.status === "storing" || u.status === "queued").length;
  emit("uploads", active);
  if (!panel) return;
  const box = panel.closest(".uploads");
  if (!box) return;
  box.hidden = items.length === 0;
  const running = items.filter((u) => u.status === "sending" || u.status === "storing" || u.status === "queued").length;
  const done = items.filter((u) => u.status === "done").length;
  const failed = items.filter((u) => u.status === "failed").length;
  const title = box.querySelector(".uploads-title");
  if (title) {
    title.textContent = running
      ? `Uploading ${num(running)} ${running === 1 ? "file" : "files"}`
      : `Uploads: ${num(done)} done${failed ? `, ${num(failed)} failed` : ""}`;
  }
}

/** The uploads box for the files page (uploads go on when the page changes). */
export function uploadsPanel() {
  panel = h("ul", { class: "upload-list", id: "upload-list" });
  for (const u of [...items].reverse()) panel.append(rowFor(u));
  const clear = h("button", { class: "btn small ghost", type: "button" }, "Clear finished");
  clear.addEventListener("click", clearFinished);
  const box = h("section", { class: "card uploads", "aria-label": "Uploads", hidden: true },
    h("div", { class: "uploads-head" }, h("h2", { class: "card-title uploads-title" }, "Uploads"), clear), panel);
  queueMicrotask(renderPanelState);
  return box;
}

export function detachPanel() {
  panel = null;
  for (const u of items) {
    u.el = null;
    u.parts = null;
  }
}
