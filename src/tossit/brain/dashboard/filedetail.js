// File detail: size, hashes, dates, and the chunk map drawn as a grid of
// chunks × nodes, so a glance shows which node holds what, which copy is
// missing or corrupt, and where placement wants each chunk.

import { api, get, whyNot } from "./api.js";
import { h, icon, replace } from "./dom.js";
import { ago, bytes, dateTime, num, plural, sinceIso } from "./format.js";
import { on, role, state } from "./store.js";
import { deleteNote } from "./trash.js";
import { actionButton, confirmDialog, emptyState, toast } from "./ui.js";

const PAGE = 200;
const READABLE = new Set(["online", "suspect"]);

export function mount(root, { match }) {
  const id = Number(match[1]);
  const body = h("div", { class: "detail" }, emptyState("Loading…"));
  const back = h("a", { class: "back", href: "#/files" }, icon("back"), "Files");
  root.append(back, body);
  let shown = PAGE;
  let info = null;
  let timer = null;

  const load = async () => {
    try {
      info = await get(`/api/files/${id}/info`);
      render();
    } catch (exc) {
      if (exc.status === 401) return;
      replace(body, emptyState(exc.status === 404 ? "This file does not exist (any more)." : `Could not load the file: ${exc.message}`,
        exc.status === 404 ? "It may have been deleted or replaced by a newer upload with the same name." : null));
    }
  };

  let picked = null; // {chunk, node} of the cell last tapped or focused: kept across live re-renders

  const render = () => {
    const hadFocus = document.activeElement && document.activeElement.classList.contains("cm-cell");
    // A live re-render must not throw the reader back to the map's top-left corner.
    const oldWrap = body.querySelector(".chunkmap-wrap");
    const scrolled = oldWrap ? [oldWrap.scrollLeft, oldWrap.scrollTop] : null;
    const f = info;
    // Back to the folder the file is in ("photos/2024/a.jpg": photos/2024/).
    const folder = f.name.slice(0, f.name.lastIndexOf("/") + 1);
    if (folder) back.href = `#/files?dir=${encodeURIComponent(folder)}`;
    const writeNote = whyNot(role(), "readwrite");
    const del = actionButton("Delete", { kind: "danger", iconName: "trash", why: writeNote ? `${writeNote} to delete files` : null, small: false, attrs: { id: "detail-delete" } });
    if (!writeNote) del.addEventListener("click", async () => {
      const ok = await confirmDialog({
        title: "Delete this file?",
        body: [h("p", h("strong", { class: "break" }, f.name), ` (${bytes(f.size)})`),
          h("p", { class: "muted" }, deleteNote())],
        confirm: "Delete file",
        onConfirm: () => api(`/api/files/${f.id}`, { method: "DELETE" }),
      });
      if (ok) {
        toast(`Deleted ${f.name}.`, "ok");
        location.hash = "#/files";
      }
    });
    const rep = f.replication || {};
    const repCls = rep.state === "healthy" ? "ok" : rep.state === "degraded" ? "warn" : "crit";
    replace(body,
      h("div", { class: "page-head" },
        h("div", { class: "detail-title" }, h("h1", { class: "break", id: "file-name" }, f.name),
          h("p", { class: "muted" }, `File ${f.id} · ${f.content_type}`)),
        h("div", { class: "page-actions" },
          h("a", { class: "btn primary", href: `/api/files/${f.id}/download`, download: "", id: "detail-download" }, icon("download"), h("span", "Download")),
          del)),
      h("section", { class: "card facts", "aria-label": "About this file" },
        fact("Size", `${bytes(f.size)}`, `${num(f.size)} bytes`),
        fact("Uploaded", dateTime(f.created), ago(sinceIso(f.created))),
        fact("Chunks", num(f.chunks), `${bytes(f.chunk_size)} each (the last may be shorter)`),
        fact("Copies", h("span", { class: `pill ${repCls}` }, `${rep.min_copies}/${rep.target} ${rep.state}`),
          rep.under_replicated_chunks ? `${plural(rep.under_replicated_chunks, "chunk")} below ${rep.target} copies` : `every chunk has ${rep.target}`),
        h("div", { class: "fact wide" }, h("span", { class: "fact-k" }, "SHA-256"), h("code", { class: "hash", id: "file-sha" }, f.sha256),
          h("span", { class: "muted small" }, "Every download is checked against each chunk's SHA-256; compare with sha256sum."))),
      chunkMap(f));
    const wrap = body.querySelector(".chunkmap-wrap");
    if (wrap && scrolled) [wrap.scrollLeft, wrap.scrollTop] = scrolled;
    const table = body.querySelector("#chunk-map");
    if (table) wireMap(table, body.querySelector("#cm-detail"), hadFocus);
  };

  // The map is one tab stop (a roving tabindex): arrows move between cells,
  // and tapping, clicking or focusing a cell says what it holds below the map.
  const wireMap = (table, detail, refocus) => {
    const cells = [...table.querySelectorAll("td.cm-cell")];
    if (!cells.length) return;
    const find = (p) => p && cells.find((c) => c.dataset.node === p.node && c.closest("tr").dataset.chunk === p.chunk);
    const show = (td, focus) => {
      for (const c of cells) {
        c.tabIndex = c === td ? 0 : -1;
        c.classList.toggle("picked", c === td);
      }
      const tr = td.closest("tr");
      picked = { chunk: tr.dataset.chunk, node: td.dataset.node };
      const hash = tr.querySelector(".cm-hash");
      detail.textContent = `Chunk #${tr.dataset.chunk} (${hash ? hash.textContent : ""}…) on ${td.title}`;
      detail.hidden = false;
      if (focus) td.focus({ preventScroll: focus === "quiet" });
    };
    const start = find(picked);
    if (start) show(start, refocus ? "quiet" : false);
    else cells[0].tabIndex = 0;
    table.addEventListener("click", (ev) => {
      const td = ev.target.closest("td.cm-cell");
      if (td) show(td, true);
    });
    table.addEventListener("focusin", (ev) => {
      const td = ev.target.closest("td.cm-cell");
      if (td && !td.classList.contains("picked")) show(td, false);
    });
    table.addEventListener("keydown", (ev) => {
      const td = ev.target.closest("td.cm-cell");
      if (!td) return;
      const row = td.closest("tr");
      const col = [...row.querySelectorAll("td.cm-cell")].indexOf(td);
      let to = null;
      if (ev.key === "ArrowRight") to = td.nextElementSibling;
      else if (ev.key === "ArrowLeft") to = td.previousElementSibling;
      else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
        const other = ev.key === "ArrowDown" ? row.nextElementSibling : row.previousElementSibling;
        to = other ? other.querySelectorAll("td.cm-cell")[col] : null;
      } else if (ev.key === "Home") to = row.querySelector("td.cm-cell");
      else if (ev.key === "End") to = [...row.querySelectorAll("td.cm-cell")].pop();
      else return;
      ev.preventDefault();
      if (to && to.classList.contains("cm-cell")) show(to, true);
    });
  };

  const chunkMap = (f) => {
    const chunks = f.chunk_map || [];
    const byId = new Map((state.nodes || []).map((n) => [n.id, { id: n.id, name: n.name, state: n.state, admin: n.admin_state }]));
    for (const c of chunks) {
      for (const n of c.nodes) if (!byId.has(n.id)) byId.set(n.id, { id: n.id, name: n.name, state: n.node_state, admin: null });
    }
    const cols = [...byId.values()].sort((a, b) => a.name.localeCompare(b.name, "en", { numeric: true }));
    const target = (f.replication || {}).target || 0;
    const holds = new Map(cols.map((c) => [c.id, 0]));
    for (const c of chunks) for (const n of c.nodes) if (n.replica_state === "ok") holds.set(n.id, (holds.get(n.id) || 0) + 1);
    const table = h("table", { class: "chunkmap", id: "chunk-map" },
      h("caption", { class: "sr-only" }, "Which node holds each chunk"),
      h("thead", h("tr",
        h("th", { scope: "col", class: "cm-chunk" }, "Chunk"),
        h("th", { scope: "col", class: "cm-copies" }, "Copies"),
        cols.map((c) => h("th", { scope: "col", class: `cm-node node-${c.state}`, title: `${c.name}: ${c.state}${c.admin ? `, ${c.admin}` : ""}; holds ${num(holds.get(c.id))} of these chunks` },
          h("span", { class: "cm-node-name" }, c.name),
          h("span", { class: `cm-node-state state-${c.state}` }, h("span", { class: "dot", "aria-hidden": "true" }), c.admin || c.state))))),
      h("tbody", chunks.slice(0, shown).map((c) => {
        const at = new Map(c.nodes.map((n) => [n.id, n]));
        const want = new Set(c.desired_nodes || []);
        const good = c.nodes.filter((n) => n.replica_state === "ok" && READABLE.has(n.node_state)).length;
        const copiesCls = good === 0 ? "crit" : good < target ? "warn" : "ok";
        return h("tr", { dataset: { chunk: c.index } },
          h("th", { scope: "row", class: "cm-chunk" },
            h("span", { class: "cm-index" }, `#${c.index}`),
            h("code", { class: "cm-hash", title: c.id }, c.id.slice(0, 12)),
            h("span", { class: "muted small" }, bytes(c.size))),
          h("td", { class: `cm-copies ${copiesCls}` }, `${good}/${target}`),
          cols.map((col) => cell(at.get(col.id), want.has(col.id), col)));
      })));
    const more = chunks.length > shown
      ? (() => {
        const b = h("button", { class: "btn small", type: "button" }, `Show ${num(Math.min(PAGE, chunks.length - shown))} more of ${num(chunks.length - shown)} chunks`);
        b.addEventListener("click", () => {
          shown += PAGE;
          render();
        });
        return h("div", { class: "more" }, b);
      })()
      : null;
    return h("section", { class: "card", "aria-label": "Chunk map" },
      h("div", { class: "card-head" }, h("h2", { class: "card-title" }, "Chunk map"),
        h("p", { class: "muted small" }, `${plural(chunks.length, "chunk")} × ${plural(cols.length, "node")}`)),
      legend(),
      chunks.length ? h("div", { class: "chunkmap-wrap" }, table) : emptyState("This file is empty: it has no chunks."),
      chunks.length ? h("p", { class: "cm-detail", id: "cm-detail", role: "status" }, "Tap or click a cell (or use the arrow keys in the map) to see what it holds.") : null,
      more);
  };

  const offs = [
    on("event", () => soon()),
    on("nodes", (nodes) => {
      // Re-read the map when a node changes state (its copies count or not).
      const sig = nodes.map((n) => `${n.id}:${n.state}:${n.admin_state}`).join(",");
      if (sig !== lastSig && lastSig !== null) soon();
      lastSig = sig;
    }),
  ];
  let lastSig = null;
  const soon = () => {
    if (timer) return;
    timer = setTimeout(() => {
      timer = null;
      load();
    }, 1500);
  };
  load();
  return () => {
    offs.forEach((off) => off());
    clearTimeout(timer);
  };
}

function fact(label, value, sub) {
  return h("div", { class: "fact" }, h("span", { class: "fact-k" }, label), h("span", { class: "fact-v" }, value),
    sub ? h("span", { class: "muted small" }, sub) : null);
}

const CELLS = {
  ok: ["●", "Copy here, where placement wants it"],
  extra: ["●", "Copy here; placement now wants it elsewhere (a rebalance moves it)"],
  away: ["●", "Copy on a node that is not readable right now"],
  corrupt: ["✕", "Corrupt copy (failed its SHA-256 check); repaired from a good copy"],
  missing: ["!", "Copy recorded here but missing on the node's disk"],
  wanted: ["○", "No copy yet: placement wants one here (the repairer makes it)"],
  none: ["", ""],
};

function cell(replica, wanted, col) {
  let kind = "none";
  let label = "";
  if (replica) {
    if (replica.replica_state === "corrupt") kind = "corrupt";
    else if (replica.replica_state !== "ok") {
      kind = "missing";
      label = replica.replica_state;
    } else if (!READABLE.has(replica.node_state)) kind = "away";
    else kind = wanted ? "ok" : "extra";
  } else if (wanted) kind = "wanted";
  const [mark, help] = CELLS[kind];
  const title = kind === "none" ? `${col.name}: no copy` : `${col.name}: ${help}${label && label !== "missing" ? ` (${label})` : ""}`;
  return h("td", { class: `cm-cell c-${kind}`, title, dataset: { cell: kind, node: col.name } },
    mark ? h("span", { class: "cm-mark", "aria-hidden": "true" }, mark) : null,
    h("span", { class: "sr-only" }, kind === "none" ? "no copy" : kind));
}

function legend() {
  const item = (kind, text) => h("li", h("span", { class: `cm-cell c-${kind} legend-cell`, "aria-hidden": "true" }, h("span", { class: "cm-mark" }, CELLS[kind][0])), text);
  return h("ul", { class: "cm-legend small" },
    item("ok", "copy, where placement wants it"),
    item("extra", "copy, to be moved"),
    item("wanted", "wanted here, no copy yet"),
    item("away", "copy on an offline node"),
    item("corrupt", "corrupt copy"),
    item("missing", "missing copy"));
}
