// Uploads: each file is one XMLHttpRequest PUT of the raw bytes, at most a few
// at once, each cancellable and retryable. They live in a tray docked at the
// bottom of the window on every page (uploads go on while people browse): one
// overall bar (files, bytes, speed, time left) and, expanded, one compact line
// per file with the failed ones first.

import { CSRF_HEADER, get, uploadPath } from "./api.js";
import { h, icon, replace } from "./dom.js";
import { bytes, duration, num, rate } from "./format.js";
import { emit } from "./store.js";
import { openDialog, progressBar } from "./ui.js";

const PARALLEL = 3;
const SPEED_WINDOW_MS = 5000; // the speed is what moved in the last 5 s, not since the start
const COLLAPSED_KEY = "tossit-upload-tray-collapsed";
const ACTIVE = new Set(["queued", "sending", "storing"]);
// Rows are ordered by state: what needs a person first, what is finished last.
const RANK = { failed: 0, sending: 1, storing: 1, queued: 2, cancelled: 3, done: 4 };

const items = []; // every upload of this page's life (finished ones until cleared)
let seq = 0;
let onUnauthorized = () => {};
let tray = null; // the tray's elements, made on the first upload
let sent = 0; // bytes handed to the network since the page loaded (only grows)
let samples = []; // [{t, sent}] over the last SPEED_WINDOW_MS while something is sending
let ticker = null;
let frame = 0;

export function setUploadUnauthorized(fn) {
  onUnauthorized = fn;
}

export function uploadsBusy() {
  return items.some((u) => ACTIVE.has(u.status));
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
    const u = { id: ++seq, file, name, onConflict, status: "queued", loaded: 0, total: file.size, xhr: null, error: null, result: null, el: null };
    items.push(u);
    ensureTray();
    tray.list.append(rowFor(u));
  }
  pump();
  changed();
}

/** Which of these names are files already. A folder of many files is listed
 * (one request per 5,000 of its files); a few names are looked up one by one
 * (one indexed lookup each, 8 at a time). */
async function takenNames(names) {
  const out = new Set();
  const byFolder = new Map();
  for (const name of new Set(names)) {
    const folder = name.slice(0, name.lastIndexOf("/") + 1);
    if (!byFolder.has(folder)) byFolder.set(folder, []);
    byFolder.get(folder).push(name);
  }
  const queue = [];
  for (const [folder, list] of byFolder) {
    if (list.length >= 20) queue.push({ folder, list });
    else for (const name of list) queue.push({ name });
  }
  async function worker() {
    while (queue.length) {
      const job = queue.shift();
      try {
        if (job.name) {
          const found = await get(`/api/files?prefix=${encodeURIComponent(job.name)}&sort=name&order=asc&limit=1`);
          if (found.length && found[0].name === job.name) out.add(job.name);
        } else {
          const wanted = new Set(job.list);
          for (let offset = 0; ; offset += 5000) {
            const page = await get(`/api/files?prefix=${encodeURIComponent(job.folder)}&delimiter=/&sort=name&order=asc&limit=5000&offset=${offset}`);
            for (const f of page) if (f.type !== "folder" && wanted.has(f.name)) out.add(f.name);
            if (page.length < 5000) break;
          }
        }
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

function progressed(u, loaded) {
  const clamped = Math.min(loaded, u.total);
  if (clamped > u.loaded) sent += clamped - u.loaded;
  u.loaded = clamped;
}

function start(u) {
  const xhr = new XMLHttpRequest();
  u.xhr = xhr;
  u.status = "sending";
  u.loaded = 0;
  u.error = null;
  u.started = performance.now();
  xhr.open("PUT", `${uploadPath(u.name)}?on_conflict=${u.onConflict || "fail"}`);
  xhr.setRequestHeader(CSRF_HEADER, "1");
  xhr.setRequestHeader("Content-Type", u.file.type || "application/octet-stream");
  xhr.setRequestHeader("Accept", "application/json");
  xhr.upload.addEventListener("progress", (ev) => {
    if (u.xhr !== xhr) return;
    progressed(u, ev.loaded);
    if (u.loaded >= u.total && u.status === "sending") {
      u.status = "storing";
      changed();
    }
    update(u);
    later();
  });
  xhr.upload.addEventListener("load", () => {
    if (u.xhr !== xhr) return;
    progressed(u, u.total);
    u.status = "storing";
    update(u);
    changed();
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
      progressed(u, u.total);
      u.status = "done";
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
  if (u.status !== "done") u.loaded = 0; // its bytes were not stored
  update(u);
  pump();
  changed();
}

function cancel(u) {
  if (u.xhr) u.xhr.abort();
  else if (u.status === "queued") {
    u.status = "cancelled";
    update(u);
    changed();
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
  changed();
}

function dismiss(u) {
  const i = items.indexOf(u);
  if (i >= 0) items.splice(i, 1);
  if (u.el) u.el.remove();
  changed();
}

function cancelAll() {
  // The queued ones first, so that none starts when a running one stops.
  for (const u of items) if (u.status === "queued") u.status = "cancelled";
  for (const u of items) if (u.xhr) u.xhr.abort();
  for (const u of items) update(u);
  changed();
}

/** Signing out: stop every upload and forget the list. */
export function abortAll() {
  const all = items.splice(0); // first, so that no queued one starts meanwhile
  for (const u of all) {
    u.status = "cancelled";
    if (u.xhr) u.xhr.abort();
  }
  if (tray) replace(tray.list);
  changed();
}

/** Forget the finished uploads (done and cancelled); failed ones stay to be seen. */
export function clearFinished() {
  for (const u of [...items]) if (u.status === "done" || u.status === "cancelled") dismiss(u);
}

function closeTray() {
  for (const u of [...items]) if (!ACTIVE.has(u.status)) dismiss(u);
}

// -- the numbers --------------------------------------------------------------------

/** What the overall bar says: only the uploads that are going or went through
 * count (a failed or cancelled one's bytes will not be stored). */
export function totals(list = items) {
  const t = { files: 0, done: 0, failed: 0, cancelled: 0, active: 0, sending: 0, bytes: 0, doneBytes: 0 };
  for (const u of list) {
    if (u.status === "failed") t.failed++;
    else if (u.status === "cancelled") t.cancelled++;
    else {
      t.files++;
      t.bytes += u.total;
      t.doneBytes += u.status === "done" ? u.total : Math.min(u.loaded, u.total);
      if (u.status === "done") t.done++;
      else t.active++;
      if (u.status === "sending") t.sending++;
    }
  }
  return t;
}

/** Bytes per second over the last few seconds (null: not known yet). */
function speed() {
  if (samples.length < 2) return null;
  const a = samples[0];
  const b = samples[samples.length - 1];
  if (b.t - a.t < 1000) return null;
  return ((b.sent - a.sent) / (b.t - a.t)) * 1000;
}

/** Called every 500 ms while uploads are going on (`changed` forgets the samples
 * when they stop: a pause between batches must not drag the next one's average). */
function sample() {
  const now = performance.now();
  samples.push({ t: now, sent });
  while (samples.length > 2 && now - samples[1].t >= SPEED_WINDOW_MS) samples.shift();
}

/** "Uploading 12 of 40 files · 35 MB of 210 MB · 8.2 MB/s · 21 s left". */
export function summaryText(t, bps) {
  const extra = [];
  if (t.failed) extra.push(`${num(t.failed)} failed`);
  if (t.cancelled) extra.push(`${num(t.cancelled)} cancelled`);
  if (t.active) {
    const parts = [`Uploading ${num(t.done)} of ${num(t.files)} ${t.files === 1 ? "file" : "files"}`,
      `${bytes(t.doneBytes)} of ${bytes(t.bytes)}`];
    const rest = t.bytes - t.doneBytes;
    if (!t.sending && rest === 0) parts.push("the nodes are storing the last copies");
    else if (bps === null) parts.push("measuring speed…");
    else if (bps <= 0) parts.push("no progress in the last 5 s");
    else parts.push(rate(bps), `${duration(rest / bps)} left`);
    return [...parts, ...extra].join(" · ");
  }
  if (!t.files) return `Uploads: ${extra.join(", ") || "none"}`;
  return [`${num(t.done)} ${t.done === 1 ? "file" : "files"} uploaded (${bytes(t.bytes)})`, ...extra].join(" · ");
}

// -- the tray -------------------------------------------------------------------------

function button(label, iconName, onClick, attrs = {}, cls = "ghost") {
  const b = h("button", { class: `btn small ${cls}`, type: "button", ...attrs }, icon(iconName), h("span", label));
  b.addEventListener("click", onClick);
  return b;
}

function ensureTray() {
  if (tray) return;
  let collapsed = false;
  try {
    collapsed = sessionStorage.getItem(COLLAPSED_KEY) === "1";
  } catch {
    collapsed = false;
  }
  const summary = h("span", { class: "tray-summary", id: "tray-summary" });
  const toggle = h("button", { class: "tray-toggle", type: "button", id: "tray-toggle", "aria-controls": "upload-list", "aria-expanded": String(!collapsed), title: "Show or hide the list of files" },
    icon("back", "icon tray-chevron"), summary);
  const cancelAllBtn = button("Cancel all", "x", cancelAll, { id: "tray-cancel-all", "aria-label": "Cancel all uploads" });
  const clearBtn = button("Clear finished", "check", clearFinished, { id: "tray-clear", "aria-label": "Clear finished uploads" });
  const closeBtn = h("button", { class: "btn small ghost icon-only", type: "button", id: "tray-close", "aria-label": "Close the uploads tray", title: "Close (forgets the finished uploads)" }, icon("x"));
  closeBtn.addEventListener("click", closeTray);
  const bar = progressBar("All uploads", "thin tray-bar");
  bar.id = "tray-bar";
  const list = h("ul", { class: "upload-list", id: "upload-list", hidden: collapsed });
  const el = h("aside", { class: "upload-tray", id: "upload-tray", "aria-label": "Uploads", hidden: true },
    h("div", { class: "tray-head" }, toggle, h("div", { class: "tray-actions" }, cancelAllBtn, clearBtn, closeBtn)),
    bar, list);
  el.classList.toggle("collapsed", collapsed);
  toggle.addEventListener("click", () => setCollapsed(!list.hidden));
  (document.getElementById("shell") || document.body).append(el);
  // The page keeps room below its content for the tray, so nothing stays under it.
  if (window.ResizeObserver) {
    new ResizeObserver(() => {
      document.documentElement.style.setProperty("--tray-h", `${el.offsetHeight}px`);
    }).observe(el);
  }
  tray = { el, list, summary, bar, toggle, cancelAllBtn, clearBtn, closeBtn };
}

function setCollapsed(collapsed) {
  if (!tray) return;
  tray.list.hidden = collapsed;
  tray.el.classList.toggle("collapsed", collapsed);
  tray.toggle.setAttribute("aria-expanded", String(!collapsed));
  try {
    sessionStorage.setItem(COLLAPSED_KEY, collapsed ? "1" : "0");
  } catch {
    // private mode: the choice lasts until the page is reloaded
  }
}

/** A state changed (not just bytes): counts, order, buttons. */
function changed() {
  const active = items.filter((u) => ACTIVE.has(u.status)).length;
  emit("uploads", active);
  if (active && !ticker) {
    ticker = setInterval(() => {
      sample();
      renderSummary();
    }, 500);
  } else if (!active && ticker) {
    clearInterval(ticker);
    ticker = null;
    samples = [];
  }
  if (!tray) return;
  const failedNow = items.filter((u) => u.status === "failed").length;
  if (failedNow > (tray.failedShown || 0)) setCollapsed(false); // a failure must be seen
  tray.failedShown = failedNow;
  later(true);
}

/** Render on the next frame at most (progress events come by the hundred). */
function later(reorder = false) {
  if (reorder && tray) tray.reorder = true;
  if (frame) return;
  frame = requestAnimationFrame(() => {
    frame = 0;
    renderSummary();
  });
}

function renderSummary() {
  if (!tray) return;
  const { el, summary, bar, cancelAllBtn, clearBtn, closeBtn } = tray;
  const shown = items.length > 0;
  if (el.hidden === shown) {
    el.hidden = !shown;
    document.body.classList.toggle("has-upload-tray", shown);
  }
  if (!shown) return;
  if (tray.reorder) {
    tray.reorder = false;
    reorderRows();
  }
  const t = totals();
  const text = summaryText(t, t.active ? speed() : null);
  if (summary.textContent !== text) summary.textContent = text;
  bar.update(t.doneBytes, t.bytes || 1);
  if (!t.bytes && t.files) bar.update(t.done, t.files); // empty files only
  bar.classList.toggle("ok", !t.active && !t.failed && t.files > 0);
  bar.classList.toggle("bad", !t.active && t.failed > 0);
  Object.assign(el.dataset, {
    files: String(t.files), doneFiles: String(t.done), failed: String(t.failed),
    bytes: String(t.bytes), doneBytes: String(t.doneBytes), state: t.active ? "running" : t.failed ? "failed" : "done",
  });
  cancelAllBtn.hidden = !t.active;
  // Close forgets every finished upload; Clear keeps the failed ones (and works meanwhile).
  clearBtn.hidden = !items.some((u) => u.status === "done" || u.status === "cancelled") || (!t.active && !t.failed);
  closeBtn.hidden = t.active > 0;
}

function reorderRows() {
  const want = [...items].sort((a, b) => (RANK[a.status] - RANK[b.status]) || (a.id - b.id));
  const have = tray.list.children;
  for (let i = 0; i < want.length; i++) {
    const el = want[i].el;
    if (el && have[i] !== el) tray.list.insertBefore(el, have[i] || null);
  }
}

// -- one row per file -----------------------------------------------------------------

function rowFor(u) {
  const bar = progressBar(`Upload of ${u.name}`, "thin upload-bar");
  const status = h("span", { class: "upload-status small", "aria-live": "off" });
  const actions = h("span", { class: "upload-actions" });
  const name = h("span", { class: "upload-name", title: u.name }, u.name);
  u.el = h("li", { class: "upload", dataset: { name: u.name } },
    name, h("span", { class: "muted small upload-size" }, bytes(u.total)), bar, actions, status);
  u.parts = { bar, status, actions, name };
  update(u);
  return u.el;
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
  if (u.status === "queued") text = "Waiting";
  else if (u.status === "sending") text = `${Math.floor((u.loaded / (u.total || 1)) * 100)}%`;
  else if (u.status === "storing") text = "Storing copies…";
  else if (u.status === "done") {
    text = "Uploaded";
    if (u.result && u.result.name && u.result.name !== u.name) text += ` · stored as ${u.result.name}`;
    if (u.result && u.result.replication && u.result.replication.state !== "healthy") {
      text += ` · ${u.result.replication.min_copies} of ${u.result.replication.target} copies so far`;
    }
  } else if (u.status === "failed") text = `Failed: ${u.error}`;
  else if (u.status === "cancelled") text = "Cancelled; nothing was stored";
  if (status.textContent !== text) {
    status.textContent = text;
    status.title = text;
  }
  status.classList.toggle("crit-text", u.status === "failed");
  const want = u.status;
  if (actions.dataset.for === want) return;
  actions.dataset.for = want;
  const kids = [];
  // Short accessible names ("Cancel upload"): the row says which file, and a
  // name in a label would make "Dismiss retry.txt" answer to "Retry".
  const small = (label, iconName, onClick) => button(label, iconName, onClick, { "aria-label": label, title: `${label}: ${u.name}` }, "ghost icon-only");
  if (ACTIVE.has(want)) kids.push(small("Cancel upload", "x", () => cancel(u)));
  if (want === "failed" && u.errorCode === "name_taken") {
    // Someone stored a file of that name meanwhile: the same choice as before.
    kids.push(button("Replace", "upload", () => retry(u, "replace"), {}, ""), button("Keep both", "upload", () => retry(u, "rename")));
  } else if (want === "failed" || want === "cancelled") kids.push(button("Retry", "retry", () => retry(u), { title: `Retry: ${u.name}` }, ""));
  if (want === "done" && u.result && u.result.id) {
    kids.push(h("a", { class: "btn small ghost icon-only", href: `#/files/${u.result.id}`, "aria-label": "Details", title: `Details: ${u.name}` }, icon("info")));
  }
  if (!ACTIVE.has(want)) kids.push(small("Dismiss", "x", () => dismiss(u)));
  replace(actions, kids);
}
