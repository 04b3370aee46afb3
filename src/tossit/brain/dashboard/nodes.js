// Nodes: state, zone, address, capacity, chunks, heartbeat, latency; drain,
// undrain and remove behind a dialog that spells out the consequence, and
// "what if it stops?".

import { api, get, whyNot } from "./api.js";
import { h, morph } from "./dom.js";
import { ago, bytes, num, pct, plural } from "./format.js";
import { emit, on, role, state } from "./store.js";
import { actionButton, emptyState, openDialog, pageHeader, progressBar, stateBadge, toast, whyNote } from "./ui.js";

const drainStart = loadDrainStart(); // node id -> chunk count when its drain was first seen

function loadDrainStart() {
  try {
    return JSON.parse(sessionStorage.getItem("tossit.drainStart") || "{}");
  } catch {
    return {};
  }
}

function noteDrains(nodes) {
  let changed = false;
  for (const n of nodes) {
    if (n.admin_state === "draining") {
      if (!(n.id in drainStart) || n.chunk_count > drainStart[n.id]) {
        drainStart[n.id] = n.chunk_count;
        changed = true;
      }
    } else if (n.admin_state === null && n.id in drainStart) {
      delete drainStart[n.id];
      changed = true;
    }
  }
  if (changed) sessionStorage.setItem("tossit.drainStart", JSON.stringify(drainStart));
}

export function mount(root) {
  const summary = h("p", { class: "muted" });
  const head = pageHeader("Nodes", null);
  head.firstChild.append(summary);
  const tbody = h("tbody");
  const table = h("table", { class: "table nodes-table responsive", id: "nodes-table" },
    h("thead", h("tr",
      h("th", { scope: "col" }, "Node"), h("th", { scope: "col" }, "State"), h("th", { scope: "col" }, "Zone"),
      h("th", { scope: "col" }, "Capacity"), h("th", { scope: "col", class: "num" }, "Chunks"),
      h("th", { scope: "col" }, "Heartbeat"), h("th", { scope: "col", class: "num" }, "Latency"),
      h("th", { scope: "col" }, h("span", { class: "sr-only" }, "Actions")))),
    tbody);
  const empty = h("div", { hidden: true }, emptyState("No node has joined this cluster yet.",
    "Start a node with: tossit node --brain URL --join-secret-file cluster.secret"));
  // One visible reason for every row's disabled buttons (they point at it).
  const noAdmin = whyNot(role(), "admin");
  const note = whyNote("nodes-why", noAdmin
    ? `Your ${role()} key can look and ask "What if it stops?"; Drain, Undrain and Remove need an admin key.` : null);
  root.append(head, h("section", { class: "card flush table-wrap" }, note, table, empty),
    h("p", { class: "muted small legend-note" },
      "Online: heartbeats arrive. Suspect: a few heartbeats missed. Offline: silent, so nothing is read from or written to it, but its copies still count for a grace period so that a reboot starts no repair. ",
      "Dead: silent long enough that its chunks are re-made elsewhere. Drain copies every chunk off a node before you remove it."));

  const render = () => {
    const nodes = state.nodes;
    if (!nodes) return;
    noteDrains(nodes);
    empty.hidden = nodes.length > 0;
    table.hidden = nodes.length === 0;
    const online = nodes.filter((n) => n.state === "online").length;
    summary.textContent = `${num(online)} of ${plural(nodes.length, "node")} online`;
    morph(tbody, nodes.map(row), 4);
  };

  tbody.addEventListener("click", (ev) => {
    const btn = ev.target.closest("button[data-action]");
    if (!btn || btn.disabled) return;
    const node = (state.nodes || []).find((n) => n.id === btn.dataset.node);
    if (!node) return;
    ({ whatif: whatIf, drain, undrain, remove })[btn.dataset.action](node);
  });

  const offs = [on("nodes", render)];
  if (state.nodes) render();
  else get("/api/nodes").then((n) => {
    if (!state.nodes) {
      state.nodes = n;
      render();
    }
  }).catch(() => {});
  return () => offs.forEach((off) => off());
}

function row(n) {
  const admin = role();
  const noAdmin = whyNot(admin, "admin");
  const adminNote = noAdmin ? `${noAdmin} to change nodes` : null;
  const cap = n.capacity || 0;
  const disk = n.disk_total || cap;
  const bar = h("div", { class: "capbar", "aria-hidden": "true" });
  const used = h("div", { class: "capbar-used" });
  used.style.width = `${pct(n.used, disk)}%`;
  const limit = h("div", { class: "capbar-limit", title: `Storage limit ${bytes(cap)}` });
  limit.style.left = `${pct(cap, disk)}%`;
  bar.append(used, limit);
  const stateBox = h("div", { class: "state-box" }, stateBadge(n.state, n.address_problem || undefined));
  if (n.address_problem) stateBox.append(h("span", { class: "small crit-text address-problem" }, n.address_problem));
  if (n.write_error) stateBox.append(h("span", { class: "small crit-text write-error" }, `Disk refuses writes: ${n.write_error}`));
  else if (n.full && n.state === "online" && !n.admin_state) stateBox.append(h("span", { class: "small warn-text node-full" }, `Full (${bytes(n.free)} free): takes no new copies`));
  const stateCell = h("td", { "data-label": "State", class: "state-cell" }, stateBox);
  if (n.admin_state === "draining") {
    const start = Math.max(drainStart[n.id] || n.chunk_count, n.chunk_count);
    const p = progressBar(`Drain of ${n.name}`, "thin drain");
    p.update(start - n.chunk_count, start || 1);
    stateBox.append(h("div", { class: "drain-info" }, stateBadge("draining"), p,
      h("span", { class: "small muted" }, `${num(n.chunk_count)} of ${num(start)} chunks left`)));
  } else if (n.admin_state === "drained") {
    stateBox.append(h("div", { class: "drain-info" }, stateBadge("drained", "Holds no chunks: it can be removed")));
  }
  const hb = ago(n.seconds_since_heartbeat);
  const actions = [
    actionButton("What if it stops?", { kind: "ghost", attrs: { dataset: { action: "whatif", node: n.id } }, title: "What stopping this node now would do to the data" }),
  ];
  if (n.admin_state) {
    actions.push(actionButton("Undrain", { why: adminNote, whyId: "nodes-why", attrs: { dataset: { action: "undrain", node: n.id } } }));
  } else {
    actions.push(actionButton("Drain", { why: adminNote, whyId: "nodes-why", attrs: { dataset: { action: "drain", node: n.id } } }));
  }
  actions.push(actionButton("Remove", { kind: "danger-ghost", why: adminNote, whyId: "nodes-why", attrs: { dataset: { action: "remove", node: n.id } } }));
  return h("tr", { dataset: { node: n.name, state: n.state, admin: n.admin_state || "" }, class: `row-${n.state}` },
    h("td", { "data-label": "Node", class: "node-cell" }, h("div", { class: "stack-cell" },
      h("span", { class: "node-name", title: `Node id ${n.id}` }, n.name),
      h("span", { class: "muted small mono node-addr" }, n.address),
      n.version ? h("span", { class: "muted small" }, `version ${n.version}`) : null)),
    stateCell,
    h("td", { "data-label": "Zone" }, n.zone),
    h("td", { "data-label": "Capacity", class: "cap-cell" }, h("div", { class: "cap-inner" }, bar,
      h("span", { class: "small" }, `${bytes(n.used)} of ${bytes(cap)} limit`),
      h("span", { class: "small muted" }, `disk ${bytes(disk)}, ${bytes(n.disk_free)} free`))),
    h("td", { "data-label": "Chunks", class: "num" }, num(n.chunk_count)),
    h("td", { "data-label": "Heartbeat", class: n.state === "online" ? "" : "warn-text" }, hb),
    h("td", { "data-label": "Latency", class: "num" }, n.latency_ms === null || n.latency_ms === undefined ? "—" : `${n.latency_ms.toFixed(1)} ms`),
    h("td", { "data-label": "Actions", class: "actions" }, h("div", { class: "btn-row" }, actions)));
}

// -- dialogs ---------------------------------------------------------------------

function loading() {
  return h("p", { class: "muted loading-text", id: "impact-summary" }, "Working out the consequences from the current placement…");
}

async function impactOf(node, box, okButtonReady) {
  try {
    const impact = await get(`/api/nodes/${encodeURIComponent(node.id)}/impact`);
    return impact;
  } catch (exc) {
    box.replaceChildren(h("p", { class: "dialog-error", id: "impact-summary" }, `Could not work out the consequences: ${exc.message}`));
    if (okButtonReady) okButtonReady(true);
    return null;
  }
}

function okButton(box) {
  const dlg = box.closest("dialog");
  return dlg ? dlg.querySelector("button[data-action=ok]") : null;
}

function ifStoppedBody(node, stop) {
  const after = stop.by_copies_after || {};
  const rows = Object.entries(after).sort((a, b) => Number(a[0]) - Number(b[0]));
  return [
    h("p", { class: "consequence", id: "impact-summary" }, stop.summary),
    h("div", { class: "kvs" },
      h("div", { class: "kv" }, h("span", { class: "kv-k" }, "Chunks it holds"), h("span", { class: "kv-v" }, num(stop.chunks))),
      h("div", { class: "kv" }, h("span", { class: "kv-k" }, "Would become unavailable"), h("span", { class: `kv-v ${stop.chunks_unavailable ? "crit-text" : ""}` }, `${plural(stop.chunks_unavailable, "chunk")} · ${plural(stop.files_unavailable, "file")}`)),
      h("div", { class: "kv" }, h("span", { class: "kv-k" }, "Bytes at risk after"), h("span", { class: "kv-v" }, bytes(stop.bytes_at_risk)))),
    rows.length ? h("table", { class: "table mini" },
      h("caption", `The chunks ${node.name} holds, by the readable copies they would keep`),
      h("thead", h("tr", h("th", { scope: "col" }, "Copies"), h("th", { scope: "col", class: "num" }, "Chunks"))),
      h("tbody", rows.map(([k, v]) => h("tr", { class: Number(k) === 0 ? "crit-text" : Number(k) === 1 ? "warn-text" : "" },
        h("td", k === "0" ? "0 (unavailable)" : k), h("td", { class: "num" }, num(v)))))) : null,
  ];
}

function whatIf(node) {
  const box = h("div", { class: "impact" }, loading());
  openDialog({
    title: `What if ${node.name} stops?`, body: box, wide: true,
    actions: [{ label: "Close", value: "cancel", kind: "primary" }],
  });
  impactOf(node, box).then((impact) => {
    if (impact) box.replaceChildren(...ifStoppedBody(node, impact.if_stopped),
      h("p", { class: "muted small" }, "Computed from where every chunk's copies are right now. A node that stops is first offline (its copies cannot be read), then, after the grace period, dead, and its chunks are re-made from the other copies."));
  });
}

function drain(node) {
  const box = h("div", { class: "impact" }, loading());
  openDialog({
    title: `Drain ${node.name}?`, body: box, wide: true,
    actions: [
      { label: "Cancel", value: "cancel", kind: "ghost" },
      { label: `Drain ${node.name}`, value: "ok", kind: "primary", disabled: true, describedBy: "impact-summary" },
    ],
    onAction: async () => {
      await api(`/api/nodes/${encodeURIComponent(node.id)}/drain`, { method: "POST" });
      toast(`Draining ${node.name}: its chunks are being copied to other nodes.`, "ok");
      refreshNodes();
    },
  });
  impactOf(node, box, () => enable(box)).then((impact) => {
    if (!impact) return;
    const d = impact.drain;
    if (d.allowed === false) {
      // The brain would answer 409: say why and offer nothing to click.
      box.replaceChildren(
        h("p", { class: "consequence crit-text", id: "impact-summary" }, `It cannot be drained now: ${d.reason || d.summary}`),
        h("p", { class: "muted small" }, "A drain never takes a chunk below its copies on online nodes, so it needs enough other online nodes to hold them."));
      return;
    }
    box.replaceChildren(
      h("p", { class: "consequence", id: "impact-summary" }, d.summary),
      h("div", { class: "kvs" },
        h("div", { class: "kv" }, h("span", { class: "kv-k" }, "Chunks to copy"), h("span", { class: "kv-v" }, num(d.chunks))),
        h("div", { class: "kv" }, h("span", { class: "kv-k" }, "Data to copy"), h("span", { class: "kv-v" }, bytes(d.bytes))),
        h("div", { class: "kv" }, h("span", { class: "kv-k" }, "To"), h("span", { class: "kv-v" }, d.targets && d.targets.length ? d.targets.join(", ") : "—"))),
      h("p", { class: "muted small" }, `${node.name} takes no new chunks from now on. Each of its chunks is copied to the node placement wants before it is dropped here, so no chunk goes below its copies. When it holds nothing it shows as drained and can be removed. Undrain stops this at any time.`));
    enable(box);
  });
}

function enable(box) {
  const ok = okButton(box);
  if (ok) ok.disabled = false;
}

function undrain(node) {
  const text = node.admin_state === "drained"
    ? `${node.name} is drained and holds no chunks. Undrain lets it take new chunks again; the rebalancer may move some chunks back to it.`
    : `${node.name} stops draining and takes new chunks again. The chunks it still holds stay there; those already copied away stay where they are.`;
  openDialog({
    title: `Undrain ${node.name}?`, body: h("p", { class: "consequence" }, text),
    actions: [
      { label: "Cancel", value: "cancel", kind: "ghost" },
      { label: `Undrain ${node.name}`, value: "ok", kind: "primary" },
    ],
    onAction: async () => {
      await api(`/api/nodes/${encodeURIComponent(node.id)}/undrain`, { method: "POST" });
      toast(`${node.name} takes new chunks again.`, "ok");
      refreshNodes();
    },
  });
}

function remove(node) {
  const box = h("div", { class: "impact" }, loading());
  openDialog({
    title: `Remove ${node.name}?`, body: box, wide: true,
    actions: [
      { label: "Cancel", value: "cancel", kind: "ghost" },
      { label: `Remove ${node.name}`, value: "ok", kind: "danger", disabled: true, describedBy: "impact-summary" },
    ],
    onAction: async () => {
      await api(`/api/nodes/${encodeURIComponent(node.id)}`, { method: "DELETE" });
      toast(`${node.name} was removed from the cluster.`, "ok");
      refreshNodes();
    },
  });
  impactOf(node, box, () => enable(box)).then((impact) => {
    if (!impact) return;
    const r = impact.remove || {};
    const parts = [];
    if (r.allowed) {
      parts.push(h("p", { class: "consequence", id: "impact-summary" },
        `${node.name} will be forgotten by the cluster. ${impact.if_stopped && impact.if_stopped.chunks
          ? `Its ${plural(impact.if_stopped.chunks, "chunk copy", "chunk copies")} no longer count and are re-made on other nodes.`
          : "It holds no chunk copies."} To join again it must start with an empty data dir.`));
      if (impact.if_stopped && impact.if_stopped.chunks) parts.push(h("p", { class: "muted" }, impact.if_stopped.summary));
      enable(box);
    } else {
      parts.push(h("p", { class: "consequence crit-text", id: "impact-summary" }, `It cannot be removed now: ${r.reason || "the brain refuses"}`),
        h("p", { class: "muted small" }, "Drain it first: once its chunks are copied elsewhere it shows as drained and can be removed."));
    }
    box.replaceChildren(...parts);
  });
}

async function refreshNodes() {
  // Show the result at once instead of waiting for the next streamed update.
  try {
    state.nodes = await get("/api/nodes");
    emit("nodes", state.nodes);
  } catch {
    /* the stream will bring it */
  }
}
