// The cluster's health in one word, and the next thing to do, from what the
// stream already brings (the /api/status body, the node list, the connection).
// classify() is pure: the health strip, the tab title and the nav badges all
// show its answer, so they can never disagree.

import { bytes, num, plural } from "./format.js";

export const LEVELS = {
  healthy: { word: "Healthy", mark: "✓", rank: 0 },
  degraded: { word: "Degraded", mark: "⚠", rank: 1 },
  "at-risk": { word: "At risk", mark: "‼", rank: 2 },
  unreachable: { word: "Brain unreachable", mark: "✕", rank: 3 },
};

// Capacity this full is "at risk": nodes stop taking writes at their high-water
// mark (95 % by default), so this leaves time to add a disk.
export const NEARLY_FULL = 0.9;
const DOWN = new Set(["offline", "dead", "unreachable"]);

const SUSPECT = "suspect";

const names = (list, max = 3) =>
  list.length <= max ? list.join(", ") : `${list.slice(0, max).join(", ")} and ${list.length - max} more`;

/**
 * Rules, most severe first:
 * - Brain unreachable: the page lost its stream to the brain (`connected` false).
 * - At risk: this brain needs recovery; a chunk has no live copy; fewer nodes take
 *   writes than the write quorum (uploads fail); manifests stuck off the nodes
 *   (a brain disk lost now would lose changes); the last fire drill found losses;
 *   raw capacity NEARLY_FULL or more.
 * - Degraded: chunks below R copies (and whether repair runs, waits or is stuck);
 *   a node offline, dead or unreachable; a node suspect (not answering
 *   heartbeats: every node is, for a moment, after the brain restarts); a node
 *   draining with chunks left; manifest packs below R copies.
 * - Healthy otherwise: never while a node is not online.
 *
 * Returns {level, word, mark, problems: [{level, text, href, nav, count}], next}
 * where `next` is the first problem (or a reassuring sentence) and `nav` the
 * navigation entry that helps ("nodes" or "overview").
 */
export function classify(status, nodes, connected) {
  if (connected === false) {
    const p = { level: "unreachable", text: "Lost connection to the brain — retrying…", href: null, nav: null, count: 1 };
    return result("unreachable", [p]);
  }
  // Both are needed: a node that is down shows only in the list, and a strip that
  // said "Healthy" before the list came would claim it with no node counted.
  if (!status || !nodes) return { level: "unknown", word: "Checking…", mark: "", problems: [], next: null };
  const problems = [];
  const add = (level, text, nav, count = 1) =>
    problems.push({ level, text, nav, href: nav ? `#/${nav}` : null, count });
  const r = status.replicas || 0;
  const rep = status.replication || {};
  const man = status.manifests || {};
  const cap = status.capacity || {};
  const ready = status.readiness || {};
  const list = nodes;
  const down = list.filter((n) => DOWN.has(n.state));
  const downNames = down.map((n) => n.name);

  if (status.needs_recovery) add("at-risk", `Needs recovery: ${status.needs_recovery}`, "overview");
  if (rep.chunks_unavailable) {
    add("at-risk", `${plural(rep.chunks_unavailable, "chunk")} ${rep.chunks_unavailable === 1 ? "has" : "have"} no live copy: `
      + (downNames.length ? `bring back ${names(downNames)}` : "bring back the nodes that hold them"), "nodes");
  }
  if (ready.status === "not_ready" && ready.reason) {
    add("at-risk", `Uploads are refused: ${ready.reason}`, "nodes");
  }
  if (man.deletions_frozen) add("at-risk", man.deletions_frozen, "overview");
  else if (man.waiting) {
    add("at-risk", `${plural(man.waiting, "manifest")} not on the nodes yet: a brain disk lost now would lose changes`, "overview");
  }
  const drill = (status.drill || {}).last;
  if (drill && drill.ok === false) add("at-risk", `The last fire drill found losses: ${drill.summary}`, "overview");
  if (cap.raw > 0 && cap.used / cap.raw >= NEARLY_FULL) {
    add("at-risk", `Storage ${Math.round((cap.used / cap.raw) * 100)}% full (${bytes(cap.free)} free): add a node or delete files`, "nodes");
  }

  if (down.length) {
    const words = [...new Set(down.map((n) => n.state))].join(" or ");
    add("degraded", `${plural(down.length, "node")} ${words}: check ${names(downNames)}`, "nodes", down.length);
  }
  // Suspect: no heartbeat for a while (or none yet since the brain started). Its
  // copies still count and are read, but it is not known to be there.
  const suspect = list.filter((n) => n.state === SUSPECT).map((n) => n.name);
  if (suspect.length === list.length && suspect.length > 1) {
    add("degraded", `No node has answered a heartbeat yet (${suspect.length} suspect: ${names(suspect)}): `
      + "usual for a few seconds after the brain starts; if it lasts, check them", "nodes", suspect.length);
  } else if (suspect.length) {
    add("degraded", suspect.length === 1 ? `${suspect[0]} is not answering heartbeats (suspect): check it`
      : `${suspect.length} nodes are not answering heartbeats (suspect): check ${names(suspect)}`, "nodes", suspect.length);
  }
  // Any other state a newer brain may send: not online is never "Healthy".
  const other = list.filter((n) => n.state !== "online" && n.state !== SUSPECT && !DOWN.has(n.state));
  if (other.length) {
    add("degraded", `${names(other.map((n) => `${n.name} is ${n.state}`))}: check ${other.length === 1 ? "it" : "them"}`, "nodes", other.length);
  }
  const stuck = rep.repair_stuck;
  if (rep.chunks_below_target && !rep.chunks_unavailable) {
    const waiting = (rep.waiting_for || []).map((g) => g.name);
    const repair = stuck ? `repair is stuck — ${stuckReason(stuck)}` : (status.repair || {}).running ? "repair is running" : waiting.length
      ? `re-made elsewhere if ${names(waiting)} ${waiting.length === 1 ? "stays" : "stay"} silent` : "repair is pending";
    // The overview's repair card says what the repairer does about them.
    add("degraded", `${plural(rep.chunks_below_target, "chunk")} below ${r} copies (${bytes(rep.bytes_at_risk || 0)}): ${repair}`, "overview");
  }
  const draining = list.filter((n) => n.admin_state === "draining" && n.chunk_count > 0);
  if (draining.length) {
    add("degraded", `${names(draining.map((n) => n.name))} draining: ${num(draining.reduce((s, n) => s + n.chunk_count, 0))} chunks left to copy; remove only once drained`, "nodes", draining.length);
  }
  if (man.below_target && !man.waiting) {
    add("degraded", `${plural(man.below_target, "manifest pack")} below ${r} copies: `
      + (stuck ? `repair is stuck — ${stuckReason(stuck)}` : "repair is on it"), "overview");
  }

  if (!problems.length) {
    // (Every node is online here: any other state is a problem above.)
    const online = list.filter((n) => n.state === "online").length;
    return { ...result("healthy", []), next: { level: "healthy", text: `Nothing to do: ${r} ${r === 1 ? "copy" : "copies"} of every chunk, ${plural(online, "node")} online`, href: null, nav: null } };
  }
  problems.sort((a, b) => LEVELS[b.level].rank - LEVELS[a.level].rank);
  return result(problems[0].level, problems);
}

/**
 * Why a repair is stuck and what to do, from the status's
 * `replication.repair_stuck`: "only 2 nodes can take copies, 3 needed (node-3 is
 * dead): add a node, or bring back node-3".
 */
export function stuckReason(stuck) {
  const can = stuck.nodes_can_take || 0;
  const need = stuck.replicas || 0;
  const who = can === 0 ? "no node can take copies"
    : can < need ? `only ${plural(can, "node")} can take copies, ${need} needed`
      : "the nodes that can take copies already hold them";
  const why = (stuck.why || []).length ? ` (${names(stuck.why)})` : "";
  return `${who}${why}: ${stuck.advice}`;
}

function result(level, problems) {
  const l = LEVELS[level];
  return { level, word: l.word, mark: l.mark, problems, next: problems[0] || null };
}

/** The tab title: the page's, with the state in front unless all is well. */
export function titleFor(health, page) {
  const base = `${page} · TossIt`;
  if (!health || health.level === "healthy" || health.level === "unknown") return base;
  return `${health.mark} ${health.word} · ${base}`;
}

/** nav entry -> {count, level} of the problems it helps with. */
export function badges(health) {
  const out = {};
  for (const p of (health && health.problems) || []) {
    if (!p.nav) continue;
    const b = out[p.nav] || { count: 0, level: p.level };
    b.count += p.count;
    if (LEVELS[p.level].rank > LEVELS[b.level].rank) b.level = p.level;
    out[p.nav] = b;
  }
  return out;
}
