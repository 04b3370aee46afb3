// Overview: capacity, replication health, nodes, throughput, repair, recent events.

import { api, get, whyNot } from "./api.js";
import { trashLine } from "./trash.js";
import { h, morph, replace, s } from "./dom.js";
import { ago, bytes, duration, num, pct, plural, rate, sinceIso } from "./format.js";
import { emit, nodeName, on, role, state } from "./store.js";
import { actionButton, emptyState, pageHeader, progressBar, stateBadge, toast } from "./ui.js";
import { eventRow } from "./activity.js";
import { stuckReason } from "./health.js";

export function mount(root) {
  const body = h("div", { class: "overview" }, emptyState("Waiting for the first update from the brain…"));
  const subtitle = h("p", { class: "muted" });
  const head = pageHeader("Overview", null);
  head.firstChild.append(subtitle);
  root.append(head, body);

  const render = () => {
    if (!state.status) return;
    renderAll(body, subtitle);
  };
  const offs = [on("status", render), on("nodes", render), on("event", render), on("events-loaded", render)];
  if (state.status) render();
  else get("/api/status").then((st) => {
    if (!state.status) {
      state.status = st;
      render();
    }
  }).catch(() => {});
  if (!state.nodes) get("/api/nodes").then((n) => {
    if (!state.nodes) {
      state.nodes = n;
      render();
    }
  }).catch(() => {});
  return () => offs.forEach((off) => off());
}

function renderAll(body, subtitle) {
  const st = state.status;
  subtitle.textContent = `${st.replicas} ${st.replicas === 1 ? "copy" : "copies"} of every chunk · writes acknowledged by ${st.write_quorum} · chunk size ${bytes(st.chunk_size)}`;
  if (body.querySelector(".empty") && body.childNodes.length === 1) replace(body);
  morph(body, [
    sharedFate(st),
    h("div", { class: "cards" }, capacityCard(st), dataCard(st), nodesCard(st)),
    healthCard(st),
    safetyCard(st),
    h("div", { class: "cols" }, throughputCard(st), repairCard(st)),
    h("div", { class: "cols" }, nodesListCard(), recentCard())], 4);
}

function card(title, cls, ...children) {
  return h("section", { class: `card ${cls || ""}`, "aria-label": title },
    h("h2", { class: "card-title" }, title), children);
}

function kv(label, value, title) {
  return h("div", { class: "kv" }, h("span", { class: "kv-k" }, label), h("span", { class: "kv-v", title }, value));
}

function usableWhy(c, r) {
  const copies = `${r} ${r === 1 ? "copy" : "copies"}`;
  if (c.usable >= Math.floor(c.raw / r)) return `Raw ${bytes(c.raw)} ÷ ${copies}`;
  // The brain found less: a chunk's copies need distinct nodes (and zones).
  return `Less than raw ${bytes(c.raw)} ÷ ${copies}: each chunk needs its copies on distinct ` +
    "nodes (and zones), so the smaller ones fill first";
}

// Copies on one disk or one machine protect against less than their number says:
// said on top of the overview, always (an empty placeholder keeps the layout stable).
// "Needs recovery" (this brain's metadata may not be the cluster's) comes first.
function sharedFate(st) {
  const fates = st.shared_fate || [];
  const alarm = st.needs_recovery
    ? [h("p", { class: "notice crit", id: "needs-recovery" }, h("strong", "Needs recovery: "), st.needs_recovery)]
    : [];
  return h("div", { class: "shared-fate", id: "shared-fate", role: fates.length || alarm.length ? "alert" : null },
    alarm, fates.map((f) => h("p", { class: "notice warn" }, f.message)));
}

function capacityCard(st) {
  const c = st.capacity || {};
  const r = st.replicas;
  const bar = progressBar("Raw capacity used", "big");
  bar.update(c.used, c.raw);
  return card("Capacity", "cap",
    roomLines(st, c, r),
    h("p", { class: "muted small" }, `${bytes(c.usable)} of files in all. `, usableWhy(c, r)),
    bar,
    h("div", { class: "kvs" },
      kv("Used", `${bytes(c.used)} (${Math.round(pct(c.used, c.raw))}%)`, "Space the chunks take on the nodes, every copy counted"),
      kv("Free", bytes(c.free), "Raw free space on the nodes' storage limits"),
      kv("Raw", bytes(c.raw), "The nodes' storage limits added up (a shared disk counted once)")),
    trashLine(st));
}

// The room left at R copies. With fewer than R nodes that can take copies there
// is none, whatever the free space: new files get fewer copies meanwhile.
function roomLines(st, c, r) {
  const copies = (k) => `${k} ${k === 1 ? "copy" : "copies"}`;
  const takers = c.nodes_with_room;
  if (takers === null || takers === undefined || takers >= r) {
    return h("p", { class: "metric", id: "capacity-room" }, `Room for about ${bytes(c.room)}`,
      h("span", { class: "metric-sub" }, ` more at ${copies(r)}`));
  }
  const quorum = st.write_quorum || r;
  const away = (state.nodes || []).filter((n) => n.state !== "online" && !n.admin_state).map((n) => n.name);
  const who = takers === 0 ? "No node can take new copies" : `Only ${plural(takers, "node")} can take new copies`;
  const then = takers === 0 || takers < quorum
    ? `uploads are refused (each needs ${copies(quorum)} at once)`
    : `new files get only ${copies(takers)} (room for about ${bytes(c.room_fewer_copies || 0)} more that way)`;
  return [
    h("p", { class: "metric", id: "capacity-room" }, "No room",
      h("span", { class: "metric-sub" }, ` at ${copies(r)}`)),
    h("p", { class: "small warn-text", id: "capacity-short" },
      `${who}, ${r} needed: ${then}. Add a node${away.length ? `, or bring back ${away.join(", ")}` : ""}.`),
  ];
}

function dataCard(st) {
  return card("Stored data", "data",
    h("p", { class: "metric" }, num(st.objects), h("span", { class: "metric-sub" }, st.objects === 1 ? " file" : " files")),
    h("p", { class: "muted small" }, `${bytes(st.object_bytes)} as uploaded`),
    h("div", { class: "kvs" },
      kv("Chunks", num(st.chunks), "Distinct chunks (identical ones are stored once)"),
      kv("Chunk data", bytes(st.chunk_bytes), "One copy of every distinct chunk, the brain's metadata snapshots included"),
      st.system_bytes ? kv("Metadata snapshots", bytes(st.system_bytes), "Copies of the brain's database kept on the nodes") : null,
      kv("Dedup saved", bytes(Math.max(0, (st.object_bytes || 0) + (st.system_bytes || 0) - (st.chunk_bytes || 0))))));
}

function nodesCard(st) {
  const n = st.nodes || { total: 0, online: 0, by_state: {} };
  const states = Object.entries(n.by_state || {});
  const down = n.total - n.online;
  return card("Nodes", "nodes-card",
    h("p", { class: "metric" }, `${num(n.online)}`, h("span", { class: "metric-sub" }, ` of ${num(n.total)} online`)),
    h("p", { class: `small ${down ? "warn-text" : "muted"}` },
      !n.total ? "No node has joined yet" : down ? `${plural(down, "node")} not online` : "Every node is online"),
    h("div", { class: "state-list" }, states.map(([name, count]) => h("span", { class: "state-count" }, stateBadge(name), ` ${num(count)}`))),
    brainsLine(st.brains),
    h("a", { class: "card-link", href: "#/nodes" }, "Manage nodes →"));
}

function brainsLine(b) {
  // Several brains on PostgreSQL: which one this page talks to, and which leads.
  if (!b || !b.shared) return null;
  const live = (b.list || []).filter((x) => x.role !== "silent" && x.role !== "stopped");
  const leader = live.find((x) => x.role === "leader");
  const text = `${plural(live.length, "brain")} serving; this one ${b.role === "leader" ? "leads" : "follows"}` +
    (b.role !== "leader" && leader ? ` (leader: ${leader.url})` : "") + (leader ? "" : " — no leader right now");
  return h("p", { class: `small ${leader ? "muted" : "warn-text"}`, id: "brains-line", title: (b.list || []).map((x) => `${x.url}: ${x.role}`).join("\n") }, text);
}

// -- replication health -------------------------------------------------------

export function healthBuckets(st) {
  const r = st.replicas;
  const by = (st.replication && st.replication.by_copies) || {};
  const out = { atR: { chunks: 0, bytes: 0 }, below: { chunks: 0, bytes: 0 }, one: { chunks: 0, bytes: 0 }, lost: { chunks: 0, bytes: 0 } };
  for (const [k, v] of Object.entries(by)) {
    const copies = Number(k);
    const b = copies === 0 ? out.lost : copies >= r ? out.atR : copies === 1 ? out.one : out.below;
    b.chunks += v.chunks;
    b.bytes += v.bytes;
  }
  return out;
}

function healthCard(st) {
  const r = st.replicas;
  const b = healthBuckets(st);
  const total = b.atR.chunks + b.below.chunks + b.one.chunks + b.lost.chunks;
  const rep = st.replication || {};
  const segs = [
    { key: "atR", label: `At ${r} ${r === 1 ? "copy" : "copies"}`, cls: "seg-ok", v: b.atR },
    { key: "below", label: `Below ${r} copies`, cls: "seg-warn", v: b.below, hide: r <= 2 },
    { key: "one", label: "At 1 copy", cls: "seg-crit", v: b.one, hide: r <= 1 },
    { key: "lost", label: "Lost (no readable copy)", cls: "seg-lost", v: b.lost },
  ].filter((x) => !x.hide);
  const bar = h("div", { class: "stack", role: "img", "aria-label": segs.map((x) => `${x.label}: ${num(x.v.chunks)} chunks`).join(", ") });
  for (const seg of segs) {
    if (!seg.v.chunks) continue;
    const el = h("div", { class: `stack-seg ${seg.cls}`, title: `${seg.label}: ${num(seg.v.chunks)} chunks, ${bytes(seg.v.bytes)}` });
    el.style.width = `${pct(seg.v.chunks, total)}%`;
    bar.append(el);
  }
  if (!total) bar.append(h("div", { class: "stack-empty" }, "No chunks stored yet"));
  let verdict;
  let cls = "ok";
  if (!total) verdict = "Nothing stored yet: upload files to see their redundancy here.";
  else if (b.lost.chunks) {
    verdict = `${plural(b.lost.chunks, "chunk")} have no readable copy right now: the files using them cannot be read until a node that holds them comes back.`;
    cls = "crit";
  } else if (rep.chunks_below_target) {
    verdict = `${plural(rep.chunks_below_target, "chunk")} have fewer than ${r} copies. Every file is still readable.`;
    cls = "warn";
  } else verdict = `Every chunk has ${r} ${r === 1 ? "copy" : "copies"}.`;
  return card("Replication health", "health",
    h("p", { class: `verdict ${cls}`, dataset: { health: cls } }, verdict),
    bar,
    h("ul", { class: "legend" }, segs.map((seg) => h("li", { dataset: { bucket: seg.key } },
      h("span", { class: `swatch ${seg.cls}`, "aria-hidden": "true" }),
      h("span", { class: "legend-label" }, seg.label),
      h("span", { class: "legend-value" }, `${num(seg.v.chunks)} chunks`),
      h("span", { class: "legend-sub muted" }, bytes(seg.v.bytes))))),
    h("div", { class: "kvs inline" },
      kv("Bytes at risk", bytes(rep.bytes_at_risk || 0), `Data in chunks with fewer than ${r} copies`),
      kv("Below target", num(rep.chunks_below_target || 0)),
      kv("Unavailable", num(rep.chunks_unavailable || 0))));
}

// -- if the brain's disk died ---------------------------------------------------

let drillRunning = false;

async function runDrill() {
  drillRunning = true;
  emit("status", state.status);
  try {
    const { data } = await api("/api/admin/drill", { method: "POST" });
    if (state.status) state.status.drill = { last: data, age_s: 0 };
    toast(data.summary, data.ok ? "ok" : "error", 10000);
  } catch (err) {
    toast(`The fire drill did not finish: ${err.message}`, "error", 10000);
  } finally {
    drillRunning = false;
    emit("status", state.status);
  }
}

function safetyCard(st) {
  const m = st.manifests || {};
  const snap = st.snapshot || {};
  const drill = (st.drill || {}).last;
  const r = st.replicas;
  let verdict;
  let cls = "ok";
  if (m.deletions_frozen) {
    verdict = m.deletions_frozen;
    cls = "crit";
  } else if (m.waiting) {
    verdict = `${plural(m.waiting, "manifest")} not on the nodes yet: if the brain's disk died now, ` +
      `the changes in ${m.waiting === 1 ? "it" : "them"} would be lost. The brain keeps trying` +
      (m.last_error ? ` (${m.last_error}).` : ".");
    cls = "crit";
  } else if (drill && !drill.ok) {
    verdict = `The last fire drill found files a brain loss would lose: ${drill.summary}.`;
    cls = "crit";
  } else if (m.below_target) {
    const stuck = (st.replication || {}).repair_stuck;
    verdict = `${plural(m.below_target, "manifest pack")} have fewer than ${r} copies; ` +
      (stuck ? `the repair is stuck: ${stuckReason(stuck)}. ` : "the repairer is on it. ") +
      "Every file can still be rebuilt from the nodes.";
    cls = "warn";
  } else if (!m.packs) {
    verdict = "Nothing to protect yet.";
  } else {
    verdict = `Every file's manifest is on ${r} ${r === 1 ? "node" : "nodes"}: if the brain's disk died, ` +
      "tossit recover would rebuild every file from the nodes.";
  }
  const why = whyNot(role(), "admin");
  const button = drillRunning
    ? h("button", { class: "btn small loading", type: "button", disabled: true, "aria-busy": "true" }, "Fire drill running…")
    : actionButton("Run a fire drill", { why: why ? `${why} to run a fire drill` : null, onClick: runDrill,
      title: "Rebuild the metadata from the nodes into a scratch copy and compare it with the live one (changes nothing)",
      attrs: { dataset: { action: "drill" } } });
  return card("If the brain's disk died", "safety",
    h("p", { class: `verdict ${cls}`, dataset: { safety: cls } }, verdict),
    h("div", { class: "kvs" },
      kv("Manifests", m.packs ? `${plural(m.packs, "pack")} · ${bytes(m.bytes)}` : "—",
        "File manifests stored on the nodes (tossit recover rebuilds the metadata from them)"),
      kv("Last snapshot", snap.last ? `${ago(snap.age_s)} · ${bytes(snap.last.size)}` : "none yet",
        "A copy of the brain's database stored on the nodes (tossit recover --from-snapshot)"),
      kv("Last fire drill", drill ? `${ago((st.drill || {}).age_s)} · ${drill.ok ? "nothing would be lost" : "losses found"}` : "never",
        drill ? drill.summary : "Rehearses a brain loss on the live cluster")),
    drill ? h("p", { class: `small ${drill.ok ? "muted" : "crit-text"}`, id: "drill-summary" }, `At that drill: ${drill.summary}`) : null,
    h("div", { class: "card-actions" }, button));
}

// -- throughput -----------------------------------------------------------------

function throughputCard(st) {
  const tp = st.throughput;
  if (!tp) return card("Throughput", "tp", emptyState("No throughput figures from this brain."));
  return card("Throughput", "tp",
    h("div", { class: "tp-now" },
      h("div", { class: "tp-item in" }, h("span", { class: "tp-label" }, h("span", { class: "swatch line-in", "aria-hidden": "true" }), "In (uploads)"), h("span", { class: "tp-value", dataset: { tp: "in" } }, rate(tp.in_bytes_per_s))),
      h("div", { class: "tp-item out" }, h("span", { class: "tp-label" }, h("span", { class: "swatch line-out", "aria-hidden": "true" }), "Out (downloads)"), h("span", { class: "tp-value", dataset: { tp: "out" } }, rate(tp.out_bytes_per_s)))),
    chart(tp.history || []));
}

function chart(history) {
  const W = 600;
  const H = 140;
  const pts = history.map((p) => ({ t: Date.parse(p.t), i: p.in || 0, o: p.out || 0 })).filter((p) => !Number.isNaN(p.t));
  const wrap = h("div", { class: "chart" });
  if (pts.length < 2) {
    wrap.append(h("p", { class: "muted small chart-empty" }, "Collecting the last minutes…"));
    return wrap;
  }
  const t1 = pts[pts.length - 1].t;
  const t0 = Math.min(pts[0].t, t1 - 60000);
  const peak = Math.max(...pts.map((p) => Math.max(p.i, p.o)));
  const top = niceMax(peak);
  const x = (t) => ((t - t0) / (t1 - t0)) * W;
  const y = (v) => H - (v / top) * (H - 6) - 1;
  const line = (key) => pts.map((p) => `${x(p.t).toFixed(1)},${y(p[key]).toFixed(1)}`).join(" ");
  const area = (key) => `M${x(pts[0].t).toFixed(1)},${H} L${line(key).replaceAll(" ", " L")} L${x(t1).toFixed(1)},${H} Z`;
  const svg = s("svg", { class: "chart-svg", viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: "none", role: "img", "aria-label": `Throughput over the last ${duration((t1 - t0) / 1000)}: peak ${rate(peak)}` },
    [0.25, 0.5, 0.75].map((f) => s("line", { class: "grid", x1: 0, x2: W, y1: y(top * f), y2: y(top * f), "vector-effect": "non-scaling-stroke" })),
    s("path", { class: "area-in", d: area("i") }),
    s("path", { class: "area-out", d: area("o") }),
    s("polyline", { class: "line-in", points: line("i"), "vector-effect": "non-scaling-stroke" }),
    s("polyline", { class: "line-out", points: line("o"), "vector-effect": "non-scaling-stroke" }));
  wrap.append(
    h("div", { class: "chart-y" }, h("span", rate(top)), h("span", rate(top / 2)), h("span", "0")),
    h("div", { class: "chart-plot" }, svg),
    h("div", { class: "chart-x muted small" }, h("span", `${duration(Math.round((t1 - t0) / 10000) * 10)} ago`), h("span", "now")));
  return wrap;
}

function niceMax(v) {
  if (v <= 0) return 1e6; // an idle cluster: a 1 MB/s scale
  const exp = 10 ** Math.floor(Math.log10(v));
  for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * exp) return m * exp;
  return 10 * exp;
}

// -- repair -------------------------------------------------------------------

// "Repair is stuck: 298 chunks need a 3rd copy but only 2 nodes can take them
// (node-3 is dead). Add a node, or bring back node-3." The repairer's own words.
function stuckLine(stuck, id) {
  const cap = (t) => t.charAt(0).toUpperCase() + t.slice(1);
  return h("p", { class: "verdict warn", id, dataset: { stuck: "yes" } }, `${cap(stuck.message)}. ${cap(stuck.advice)}.`,
    stuck.since ? h("span", { class: "muted small" }, ` Stuck since ${ago(sinceIso(stuck.since))}.`) : null);
}

function repairCard(st) {
  const rp = st.repair || {};
  const rep = st.replication || {};
  const stuck = rep.repair_stuck;
  const items = [];
  if (rp.running) {
    const bar = progressBar("Repair progress", "big");
    const byBytes = rp.bytes_total > 0;
    bar.update(byBytes ? rp.bytes_done : rp.chunks_done, byBytes ? rp.bytes_total : rp.chunks_total);
    items.push(
      h("p", { class: "verdict busy" }, "Copying chunks between nodes (repair, drain or rebalance)"),
      bar,
      h("div", { class: "kvs" },
        kv("Copies", `${num(rp.chunks_done)} of ${num(rp.chunks_total)}`),
        kv("Data", `${bytes(rp.bytes_done)} of ${bytes(rp.bytes_total)}`),
        kv("Speed", rate(rp.rate_bytes_per_s)),
        kv("Time left", rp.eta_s === null || rp.eta_s === undefined ? "estimating…" : duration(rp.eta_s)),
        rp.failed ? kv("Failed copies", num(rp.failed), "Retried in the next pass") : null));
    if (stuck) items.push(stuckLine(stuck, "repair-stuck"));
  } else {
    const waiting = rep.chunks_below_target || 0;
    const grace = rep.waiting_for || [];
    let text = waiting ? `${plural(waiting, "chunk")} wait for a repair pass.` : "Nothing to repair or move right now.";
    if (waiting && grace.length) {
      // Silent (or unreachable) nodes within their grace period: the repairer waits on purpose.
      const who = grace.map((g) => `${g.name} (${g.state})`).join(", ");
      const soonest = Math.min(...grace.map((g) => g.dead_in_s));
      const one = grace.length === 1;
      const away = grace.every((g) => g.state === "unreachable") ? "unreachable" : "silent";
      text = `${plural(waiting, "chunk")} have fewer readable copies while ${who} ${one ? "is" : "are"} ${away}. `
        + `Copies there still count: they are re-made elsewhere only if ${one ? "it stays" : "one stays"} ${away} for another ${duration(soonest)}.`;
    }
    // Stuck: no pass will make the missing copies until a node can take them.
    items.push(stuck ? stuckLine(stuck, "repair-verdict")
      : h("p", { class: `verdict ${waiting ? "warn" : "ok"}`, id: "repair-verdict" }, text));
    if (rp.started) {
      items.push(h("div", { class: "kvs" },
        kv("Last pass", `${ago(sinceIso(rp.started))}`),
        kv("Copied", `${plural(rp.chunks_done, "copy", "copies")} · ${bytes(rp.bytes_done)}`),
        rp.failed ? kv("Failed copies", num(rp.failed)) : null));
    }
  }
  const draining = (state.nodes || []).filter((n) => n.admin_state === "draining");
  if (draining.length) {
    items.push(h("p", { class: "small" }, `Draining: ${draining.map((n) => `${n.name} (${num(n.chunk_count)} chunks left)`).join(", ")}`));
  }
  return card("Repair and rebalance", "repair", items);
}

// -- nodes at a glance, recent activity ------------------------------------------

function nodesListCard() {
  const list = state.nodes || [];
  return card("Nodes at a glance", "glance",
    list.length ? h("ul", { class: "glance-list" }, list.map((n) => {
      const bar = progressBar(`${n.name} used`, "thin");
      bar.update(n.used, n.capacity);
      return h("li", { dataset: { node: n.name } },
        h("span", { class: "glance-name" }, n.name),
        stateBadge(n.admin_state || n.state),
        bar,
        h("span", { class: "muted small glance-use" }, `${bytes(n.used)} of ${bytes(n.capacity)}`));
    })) : emptyState("No node has joined yet.", "Start one with: tossit node --brain URL --join-secret-file cluster.secret"),
    h("a", { class: "card-link", href: "#/nodes" }, "All nodes →"));
}

function recentCard() {
  const events = state.events.slice(0, 6);
  return card("Recent activity", "recent",
    events.length ? h("ul", { class: "events compact" }, events.map((e) => eventRow(e, nodeName))) : emptyState("Nothing has happened yet."),
    h("a", { class: "card-link", href: "#/activity" }, "All activity →"));
}
