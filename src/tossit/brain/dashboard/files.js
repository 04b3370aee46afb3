// Files: search, sort and paging done by the server (fast with 100,000 files),
// browsing by folder ("/" in names; the folder is in the URL), upload of files
// and folders by button or drag-and-drop, download, delete, multi-select delete.
// With S3 buckets besides "default", a Bucket choice lists another bucket's files
// (kept in the URL like the folder); uploads go to "default" only (the REST upload
// API has no bucket), so they are refused, saying so, while another bucket is shown.

import { api, whyNot } from "./api.js";
import { h, icon, replace } from "./dom.js";
import { bytes, byNaturalName, dateTime, num, plural, ago, sinceIso } from "./format.js";
import { on, role, state } from "./store.js";
import { deleteNote } from "./trash.js";
import { actionButton, confirmDialog, emptyState, pageHeader, progressBar, toast, whyIdOf } from "./ui.js";
import { enqueue } from "./uploads.js";

const SIZES = [25, 50, 100, 200];
const COLS = [
  { key: "name", label: "Name" },
  { key: "size", label: "Size", num: true },
  { key: null, label: "Copies" },
  { key: "created", label: "Uploaded" },
];
const selected = new Map(); // id -> name, kept across pages
const DEFAULT_BUCKET = "default";

export function mount(root, { params }) {
  const q = {
    search: params.get("q") || "",
    sort: ["name", "size", "created", "id"].includes(params.get("sort")) ? params.get("sort") : "created",
    order: params.get("order") === "asc" ? "asc" : "desc",
    size: SIZES.includes(Number(params.get("size"))) ? Number(params.get("size")) : 50,
    page: Math.max(1, Number.parseInt(params.get("page") || "1", 10) || 1),
    dir: folderParam(params.get("dir")),
    bucket: params.get("bucket") || DEFAULT_BUCKET,
  };
  const canWrite = whyNot(role(), "readwrite");
  const writeNote = canWrite ? `${canWrite} to upload or delete files` : null;
  // Never upload into a bucket other than the one shown: another bucket's page
  // refuses uploads (deletes work there, by id) and says where they would go.
  const uploadNote = writeNote || (q.bucket !== DEFAULT_BUCKET ? "Uploads go to the default bucket: switch to it to upload" : null);

  // -- header, toolbar ---------------------------------------------------------
  const picker = h("input", { type: "file", multiple: true, id: "file-picker", class: "sr-only", tabindex: "-1", "aria-hidden": "true" });
  const uploadBtn = actionButton("Upload files", { kind: "primary", iconName: "upload", why: uploadNote, small: false, attrs: { id: "upload-button" } });
  if (!uploadNote) uploadBtn.addEventListener("click", () => picker.click());
  const whyId = whyIdOf(uploadBtn); // the Delete buttons point at the Upload button's reason (it covers both)
  picker.addEventListener("change", () => {
    enqueue([...picker.files].map((file) => ({ file, name: q.dir + file.name })));
    picker.value = "";
  });
  // A folder chosen: each file under its path in it ("photos/2024/a.jpg").
  const folderPicker = h("input", { type: "file", multiple: true, webkitdirectory: "", id: "folder-picker", class: "sr-only", tabindex: "-1", "aria-hidden": "true" });
  const folderBtn = actionButton("Upload a folder", { iconName: "upload", why: uploadNote, small: false, attrs: { id: "upload-folder-button" } });
  if (!uploadNote) folderBtn.addEventListener("click", () => folderPicker.click());
  folderPicker.addEventListener("change", () => {
    const entries = [...folderPicker.files].map((file) => ({ file, name: q.dir + (file.webkitRelativePath || file.name) }));
    folderPicker.value = "";
    if (entries.length) enqueue(entries);
    else toast("That folder has no files in it.", "info");
  });
  // Shown (filled by loadBuckets) only when a bucket besides "default" exists.
  const bucketSel = h("select", { id: "bucket-select" });
  bucketSel.addEventListener("change", () => {
    // Files ticked in one bucket are not deleted from a page showing another.
    selected.clear();
    location.hash = filesHref({ ...q, bucket: bucketSel.value, dir: "" }); // a new page: its own upload rules
  });
  // Labelled by `for`, not by wrapping: a wrapped select adds its option to its name.
  const bucketField = h("div", { class: "field bucket-field", hidden: true }, h("label", { for: "bucket-select" }, "Bucket"), bucketSel);
  const search = h("input", { id: "file-search", type: "search", placeholder: "Search by name", value: q.search, "aria-label": "Search files by name", autocomplete: "off" });
  const totalText = h("span", { class: "muted", id: "file-total", role: "status" });
  const bulkBtn = actionButton("Delete selected", { kind: "danger", iconName: "trash", why: writeNote, whyId, attrs: { id: "delete-selected" } });
  const clearSel = h("button", { class: "btn small ghost", type: "button" }, "Clear selection");
  const selText = h("span", { class: "small" });
  const selBar = h("div", { class: "selbar", hidden: true }, selText, bulkBtn, clearSel);

  const head = pageHeader("Files", null, uploadNote ? null : h("span", { class: "muted small drop-note" }, "or drop files and folders on this page"), folderBtn, uploadBtn, picker, folderPicker);
  head.firstChild.append(totalText);
  const tableBody = h("tbody");
  const headRow = h("tr");
  const table = h("table", { class: "table files-table responsive", id: "files-table" }, h("thead", headRow), tableBody);
  const pager = h("nav", { class: "pager", "aria-label": "Pages" });
  const listCard = h("section", { class: "card flush table-wrap" }, table);
  const dropHint = h("div", { class: "drop-hint" }, icon("upload"),
    h("span", uploadNote ? uploadNote : "Drop files or folders here to upload them (several at once is fine), or use the buttons above."));
  const overlay = h("div", { class: "drop-overlay", "aria-hidden": "true" },
    h("div", icon("upload"), h("p", uploadNote ? uploadNote : "Drop to upload")));
  const zone = h("div", { class: "dropzone", id: "dropzone" },
    h("div", { class: "toolbar" }, bucketField, h("label", { class: "field grow search-field" }, h("span", { class: "sr-only" }, "Search"), icon("files"), search), selBar),
    breadcrumb(q), dropHint, listCard, pager, overlay);
  root.append(head, zone);

  // -- drag and drop -------------------------------------------------------------
  let depth = 0;
  const hasFiles = (ev) => ev.dataTransfer && [...(ev.dataTransfer.types || [])].includes("Files");
  zone.addEventListener("dragenter", (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    depth++;
    zone.classList.add("dragging");
  });
  zone.addEventListener("dragover", (ev) => {
    if (!hasFiles(ev)) return;
    ev.preventDefault();
    ev.dataTransfer.dropEffect = uploadNote ? "none" : "copy";
  });
  zone.addEventListener("dragleave", () => {
    depth = Math.max(0, depth - 1);
    if (!depth) zone.classList.remove("dragging");
  });
  zone.addEventListener("drop", async (ev) => {
    ev.preventDefault();
    depth = 0;
    zone.classList.remove("dragging");
    if (uploadNote) {
      toast(`Cannot upload: ${uploadNote.toLowerCase()}.`, "error");
      return;
    }
    let entries;
    try {
      entries = (await droppedFiles(ev.dataTransfer)).map((e) => ({ ...e, name: q.dir + e.name }));
    } catch (exc) {
      toast(`Could not read what was dropped: ${exc.message || exc}`, "error");
      return;
    }
    if (!entries.length) {
      toast("Nothing to upload in what was dropped.", "info");
      return;
    }
    enqueue(entries);
  });

  // -- loading a page ------------------------------------------------------------
  let inflight = null;
  let total = 0;
  let folderCount = 0;
  let rows = []; // the files shown (folders are in `folders`)
  let folders = [];
  let lastObjects = state.status ? state.status.objects : null;

  const syncHash = () => {
    const hash = filesHref(q).replace(/^#\/files\??/, "");
    const p = new URLSearchParams(hash);
    if (q.page > 1) p.set("page", String(q.page));
    const full = `#/files${p.toString() ? `?${p}` : ""}`;
    if (location.hash !== full) history.replaceState(null, "", full);
  };

  const load = async () => {
    if (inflight) inflight.abort();
    const ctl = new AbortController();
    inflight = ctl;
    syncHash();
    listCard.classList.add("loading");
    const p = new URLSearchParams({ sort: q.sort, order: q.order, limit: String(q.size), offset: String((q.page - 1) * q.size) });
    if (q.search) p.set("search", q.search); // in this folder and below it, flat
    else p.set("delimiter", "/"); // this folder's level: its folders, then its files
    if (q.dir) p.set("prefix", q.dir);
    if (q.bucket !== DEFAULT_BUCKET) p.set("bucket", q.bucket);
    try {
      const resp = await api(`/api/files?${p}`, { signal: ctl.signal });
      if (inflight !== ctl) return;
      total = Number(resp.headers.get("X-Total-Count") || resp.data.length);
      folderCount = Number(resp.headers.get("X-Folder-Count") || 0);
      folders = resp.data.filter((f) => f.type === "folder");
      rows = resp.data.filter((f) => f.type !== "folder");
      if (q.sort === "name") { // natural order within the page (format.js byNaturalName)
        folders = byNaturalName(folders, q.order === "desc");
        rows = byNaturalName(rows, q.order === "desc");
      }
      const pages = Math.max(1, Math.ceil(total / q.size));
      if (q.page > pages && total > 0) {
        q.page = pages;
        load();
        return;
      }
      render();
    } catch (exc) {
      if (exc.name === "AbortError" || inflight !== ctl) return;
      replace(tableBody, h("tr", h("td", { colspan: "7" }, h("div", { class: "empty" },
        h("p", { class: "crit-text" }, `Could not load the files: ${exc.message}`),
        (() => {
          const b = h("button", { class: "btn small", type: "button" }, "Retry");
          b.addEventListener("click", load);
          return b;
        })()))));
    } finally {
      if (inflight === ctl) {
        inflight = null;
        listCard.classList.remove("loading");
      }
    }
  };

  // -- rendering -----------------------------------------------------------------
  const renderHead = () => {
    const all = h("input", { type: "checkbox", "aria-label": "Select every file on this page", id: "select-page" });
    all.checked = rows.length > 0 && rows.every((r) => selected.has(r.id)); // files only, not folders
    all.indeterminate = !all.checked && rows.some((r) => selected.has(r.id));
    all.addEventListener("change", () => {
      for (const r of rows) {
        if (all.checked) selected.set(r.id, r.name);
        else selected.delete(r.id);
      }
      render();
    });
    replace(headRow,
      h("th", { class: "check", scope: "col" }, all),
      COLS.map((c) => {
        if (!c.key) return h("th", { scope: "col" }, c.label);
        const active = q.sort === c.key;
        const btn = h("button", { class: "sort", type: "button", dataset: { sort: c.key } }, c.label,
          h("span", { class: "sort-mark", "aria-hidden": "true" }, active ? (q.order === "asc" ? "▲" : "▼") : "↕"));
        btn.addEventListener("click", () => {
          if (q.sort === c.key) q.order = q.order === "asc" ? "desc" : "asc";
          else {
            q.sort = c.key;
            q.order = c.key === "name" ? "asc" : "desc";
          }
          q.page = 1;
          load();
        });
        return h("th", { scope: "col", class: c.num ? "num" : "", "aria-sort": active ? (q.order === "asc" ? "ascending" : "descending") : "none" }, btn);
      }),
      h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")));
  };

  const render = () => {
    renderHead();
    const from = total ? (q.page - 1) * q.size + 1 : 0;
    totalText.textContent = q.search
      ? `${plural(total, "file")} match “${q.search}”${q.dir ? ` in ${q.dir}` : ""}`
      : folderCount ? `${plural(folderCount, "folder")}, ${plural(total - folderCount, "file")}` : `${plural(total, "file")}`;
    dropHint.hidden = total > 0 || Boolean(q.search) || Boolean(q.dir);
    if (!rows.length && !folders.length) {
      replace(tableBody, h("tr", h("td", { colspan: "7" }, q.search
        ? emptyState("No file name contains that text.", "Try a shorter search.")
        : q.dir ? emptyState("No files in this folder.", "A folder exists while a file's name starts with it: go back up with the path above.")
          : emptyState("No files yet.", uploadNote || "Upload files with the button above or drop them here."))));
    } else {
      replace(tableBody, folders.map((f) => folderRow(f)), rows.map((f) => fileRow(f)));
    }
    renderPager(from);
    renderSelection();
  };

  const folderRow = (f) => {
    const label = f.name.slice(q.dir.length, -1);
    return h("tr", { class: "folder-row", dataset: { folder: f.name } },
      h("td", { class: "check" }),
      h("td", { "data-label": "Name", class: "name-cell" }, h("div", { class: "stack-cell" },
        h("a", { href: filesHref({ ...q, dir: f.name, page: 1, search: "" }), class: "folder-link", title: f.name }, icon("folder"), h("span", label)),
        h("span", { class: "muted small" }, `Folder · ${plural(f.files, "file")}`))),
      h("td", { "data-label": "Size", class: "num", title: `${num(f.size)} bytes in ${plural(f.files, "file")}` }, bytes(f.size)),
      h("td", { "data-label": "Copies" }, h("span", { class: "muted" }, "—")),
      h("td", { "data-label": "Uploaded", title: `Newest file: ${dateTime(f.created)}` }, ago(sinceIso(f.created))),
      h("td", { "data-label": "Actions", class: "actions" }));
  };

  const fileRow = (f) => {
    const box = h("input", { type: "checkbox", "aria-label": `Select ${f.name}` });
    box.checked = selected.has(f.id);
    box.addEventListener("change", () => {
      if (box.checked) selected.set(f.id, f.name);
      else selected.delete(f.id);
      renderHead();
      renderSelection();
    });
    const rep = f.replication || {};
    const repCls = rep.state === "healthy" ? "ok" : rep.state === "degraded" ? "warn" : "crit";
    const del = actionButton("Delete", { kind: "danger-ghost", iconName: "trash", why: writeNote, whyId, attrs: { "aria-label": `Delete ${f.name}`, dataset: { action: "delete" } } });
    if (!writeNote) del.addEventListener("click", () => deleteOne(f));
    return h("tr", { dataset: { id: f.id, name: f.name } },
      h("td", { class: "check" }, box),
      h("td", { "data-label": "Name", class: "name-cell" }, h("div", { class: "stack-cell" },
        h("a", { href: `#/files/${f.id}`, class: "file-link", title: f.name }, !q.search && q.dir && f.name.startsWith(q.dir) ? f.name.slice(q.dir.length) : f.name),
        h("span", { class: "muted small" }, f.content_type))),
      h("td", { "data-label": "Size", class: "num", title: `${num(f.size)} bytes` }, bytes(f.size)),
      h("td", { "data-label": "Copies" }, h("span", { class: `pill ${repCls}`, title: `${rep.state}: the chunk with the fewest readable copies has ${rep.min_copies} of ${rep.target}` },
        h("span", `${rep.min_copies}/${rep.target}`), h("span", { class: "pill-word" }, rep.state))),
      h("td", { "data-label": "Uploaded", title: dateTime(f.created) }, ago(sinceIso(f.created))),
      h("td", { "data-label": "Actions", class: "actions" }, h("div", { class: "btn-row" },
        h("a", { class: "btn small ghost", href: `/api/files/${f.id}/download`, download: "", "aria-label": `Download ${f.name}`, dataset: { action: "download" } }, icon("download"), h("span", "Download")),
        del)));
  };

  const renderPager = (from) => {
    const pages = Math.max(1, Math.ceil(total / q.size));
    const to = Math.min(total, q.page * q.size);
    const prev = h("button", { class: "btn small", type: "button", disabled: q.page <= 1, id: "page-prev", "aria-describedby": "page-of" }, "‹ Previous");
    const next = h("button", { class: "btn small", type: "button", disabled: q.page >= pages, id: "page-next", "aria-describedby": "page-of" }, "Next ›");
    prev.addEventListener("click", () => { q.page--; load(); });
    next.addEventListener("click", () => { q.page++; load(); });
    const jump = h("input", { type: "number", min: "1", max: String(pages), value: String(q.page), class: "page-input", "aria-label": "Page number" });
    jump.addEventListener("change", () => {
      const n = Math.min(pages, Math.max(1, Number.parseInt(jump.value, 10) || 1));
      if (n !== q.page) {
        q.page = n;
        load();
      }
    });
    const sizeSel = h("select", { "aria-label": "Files per page" }, SIZES.map((n) => h("option", { value: String(n) }, `${n} per page`)));
    sizeSel.value = String(q.size);
    sizeSel.addEventListener("change", () => {
      q.size = Number(sizeSel.value);
      q.page = 1;
      load();
    });
    replace(pager,
      h("span", { class: "muted small" }, total ? `${num(from)}–${num(to)} of ${num(total)}` : ""),
      h("div", { class: "pager-controls" }, prev, h("label", { class: "small page-of", id: "page-of" }, "Page ", jump, ` of ${num(pages)}`), next, sizeSel));
  };

  const renderSelection = () => {
    selBar.hidden = selected.size === 0;
    selText.textContent = `${plural(selected.size, "file")} selected`;
  };
  clearSel.addEventListener("click", () => {
    selected.clear();
    render();
  });

  // -- deleting ------------------------------------------------------------------
  const deleteOne = async (f) => {
    const ok = await confirmDialog({
      title: "Delete this file?",
      body: [h("p", h("strong", { class: "break" }, f.name), ` (${bytes(f.size)})`),
        h("p", { class: "muted" }, deleteNote())],
      confirm: "Delete file",
      onConfirm: async () => {
        await api(`/api/files/${f.id}`, { method: "DELETE" });
      },
    });
    if (ok) {
      selected.delete(f.id);
      toast(`Deleted ${f.name}.`, "ok");
      load();
    }
  };

  bulkBtn.addEventListener("click", async () => {
    if (writeNote || !selected.size) return;
    const victims = [...selected.entries()];
    const list = h("ul", { class: "victims" }, victims.slice(0, 6).map(([, name]) => h("li", { class: "break" }, name)),
      victims.length > 6 ? h("li", { class: "muted" }, `and ${num(victims.length - 6)} more`) : null);
    const bar = progressBar("Deleting", "thin");
    bar.hidden = true;
    const failures = [];
    const ok = await confirmDialog({
      title: `Delete ${plural(victims.length, "file")}?`,
      body: [list, h("p", { class: "muted" }, deleteNote(victims.length)), bar],
      confirm: `Delete ${plural(victims.length, "file")}`,
      onConfirm: async () => {
        bar.hidden = false;
        let done = 0;
        for (const [id, name] of victims) {
          try {
            await api(`/api/files/${id}`, { method: "DELETE" });
            selected.delete(id);
          } catch (exc) {
            if (exc.status === 404) selected.delete(id); // already gone
            else failures.push(`${name}: ${exc.message}`);
            if (exc.status === 401) throw exc;
          }
          bar.update(++done, victims.length);
        }
        if (failures.length) throw new Error(`${plural(failures.length, "file")} could not be deleted: ${failures.slice(0, 3).join("; ")}`);
      },
    });
    if (ok) toast(`Deleted ${plural(victims.length, "file")}.`, "ok");
    load();
  });

  // -- search ------------------------------------------------------------------------
  let debounce = null;
  search.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(() => {
      if (search.value === q.search) return;
      q.search = search.value;
      q.page = 1;
      load();
    }, 250);
  });
  search.addEventListener("keydown", (ev) => {
    if (ev.key === "Enter") {
      clearTimeout(debounce);
      q.search = search.value;
      q.page = 1;
      load();
    }
  });

  // Live: reload the page shown when uploads finish or the file count changes
  // (at most once a second, whatever the rate of changes).
  let reloadTimer = null;
  const soon = () => {
    if (reloadTimer) return;
    reloadTimer = setTimeout(() => {
      reloadTimer = null;
      load();
    }, 700);
  };
  const offs = [
    on("files-changed", soon),
    on("status", (st) => {
      if (lastObjects !== null && st.objects !== lastObjects) soon();
      lastObjects = st.objects;
    }),
  ];
  // -- buckets ---------------------------------------------------------------------
  const bucketsCtl = new AbortController();
  const loadBuckets = async () => {
    let buckets;
    try {
      buckets = (await api("/api/buckets", { signal: bucketsCtl.signal })).data;
    } catch (exc) {
      if (exc.name !== "AbortError") console.warn("could not list the buckets", exc);
      return; // the page works as with "default" alone
    }
    if (!buckets.some((b) => b.name === q.bucket)) { // deleted since the link was made
      toast(`There is no bucket “${q.bucket}”: showing the default bucket.`, "info");
      location.replace(filesHref({ ...q, bucket: DEFAULT_BUCKET, dir: "" }));
      return;
    }
    if (buckets.length < 2) return; // only "default": the page as it always was
    replace(bucketSel, buckets.map((b) => h("option", { value: b.name }, `${b.name} (${plural(b.files, "file")}, ${bytes(b.bytes)})`)));
    bucketSel.value = q.bucket;
    bucketField.hidden = false;
  };

  load();
  loadBuckets();
  return () => {
    offs.forEach((off) => off());
    clearTimeout(reloadTimer);
    if (inflight) inflight.abort();
    bucketsCtl.abort();
  };
}

// -- folders ---------------------------------------------------------------------------

/** The folder in the URL: "" (the root) or "a/b/" (no empty, "." or ".." part). */
function folderParam(raw) {
  if (!raw) return "";
  const parts = raw.split("/").filter((p) => p !== "");
  if (parts.some((p) => p === "." || p === "..")) return "";
  return parts.length ? `${parts.join("/")}/` : "";
}

/** The hash of the files page for these settings (defaults left out). */
function filesHref(q) {
  const p = new URLSearchParams();
  if (q.dir) p.set("dir", q.dir);
  if (q.search) p.set("q", q.search);
  if (q.sort !== "created") p.set("sort", q.sort);
  if (q.order !== "desc") p.set("order", q.order);
  if (q.size !== 50) p.set("size", String(q.size));
  if (q.bucket && q.bucket !== DEFAULT_BUCKET) p.set("bucket", q.bucket);
  return `#/files${p.toString() ? `?${p}` : ""}`;
}

/** Root / photos / 2024: each part but the last goes up to that folder. */
function breadcrumb(q) {
  const parts = q.dir ? q.dir.slice(0, -1).split("/") : [];
  const crumbs = [{ label: "Root", dir: "" }, ...parts.map((p, i) => ({ label: p, dir: `${parts.slice(0, i + 1).join("/")}/` }))];
  const list = h("ol");
  crumbs.forEach((c, i) => {
    const last = i === crumbs.length - 1;
    list.append(h("li", last
      ? h("span", { "aria-current": "location", class: "crumb-here" }, c.label)
      : h("a", { href: filesHref({ ...q, dir: c.dir, search: "" }), dataset: { dir: c.dir } }, c.label)));
  });
  return h("nav", { class: "breadcrumb", id: "breadcrumb", "aria-label": "Folder" }, icon("folder"), list);
}

// -- what was dropped: files, and folders walked (their paths kept as names) ------------

async function droppedFiles(dt) {
  const entries = [];
  const items = dt.items ? [...dt.items] : [];
  const roots = items.map((it) => (it.kind === "file" && it.webkitGetAsEntry ? it.webkitGetAsEntry() : null));
  if (roots.length && roots.every(Boolean) && roots.some((r) => r.isDirectory)) {
    for (const r of roots) await walk(r, "", entries);
    return entries;
  }
  for (const file of dt.files || []) entries.push({ file, name: file.name });
  return entries;
}

async function walk(entry, prefix, out) {
  if (entry.isFile) {
    const file = await new Promise((res, rej) => entry.file(res, rej));
    out.push({ file, name: `${prefix}${file.name}` });
  } else if (entry.isDirectory) {
    const reader = entry.createReader();
    for (;;) {
      const batch = await new Promise((res, rej) => reader.readEntries(res, rej));
      if (!batch.length) break;
      for (const e of batch) await walk(e, `${prefix}${entry.name}/`, out);
    }
  }
}

