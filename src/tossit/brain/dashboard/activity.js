// Activity: the event log, newest first, filterable, live.

import { h, icon, replace } from "./dom.js";
import { ago, clock, dateTime, num, sinceIso } from "./format.js";
import { nodeName, on, state } from "./store.js";
import { emptyState, pageHeader } from "./ui.js";

const SEVERITIES = ["info", "warning", "error"];
const SHOWN = 300;

const KIND_WORDS = {
  node_joined: "Node joined", node_online: "Node online", node_offline: "Node offline",
  node_suspect: "Node suspect", node_dead: "Node dead", node_draining: "Drain started",
  node_drained: "Node drained", node_undrained: "Drain cancelled", node_removed: "Node removed",
  drain_waiting: "Drain waiting", node_changed: "Node changed", brain_started: "Brain started",
  replica_corrupt: "Corrupt copy", replica_missing: "Missing copy", repair: "Re-replicated",
  repair_failed: "Repair failed", repair_stuck: "Repair stuck", rebalance: "Rebalance", gc: "Garbage collection",
  key_created: "Key created", key_revoked: "Key revoked", signed_in: "Signed in",
  sign_in_failed: "Sign-in refused", key_refused: "Wrong key", chunks_unavailable: "Chunks unavailable",
  files_uploaded: "Uploaded", files_deleted: "Deleted",
  trash_moved: "Moved to trash", trash_restored: "Restored", trash_purged: "Deleted forever",
  trash_expired: "Trash expired", trash_emptied: "Trash emptied", brain_leader: "Brain took the lead",
  node_unreachable: "Node unreachable", node_disk_error: "Disk refuses writes", node_disk_ok: "Disk writes again", node_refused: "Node refused", repair_resumed: "Repair resumed",
  gc_capped: "Sweep capped", scrub: "Scrub", drill: "Fire drill", metadata_rebuilt: "Metadata rebuilt",
  metadata_behind: "Metadata behind", needs_recovery: "Needs recovery", manifests_resigned: "Manifests re-signed", manifests_rewritten: "Manifests rewritten",
  join_token_created: "Join token created", join_token_revoked: "Join token revoked",
  node_join_token: "Node joined with a token", join_refused: "Join refused",
  uploads_expired: "Uploads expired",
};

export function kindLabel(kind) {
  return KIND_WORDS[kind] || kind.replaceAll("_", " ").replace(/^./, (c) => c.toUpperCase());
}

/** One event as a list item (shared with the overview). */
export function eventRow(e, nameOf = nodeName) {
  const sev = SEVERITIES.includes(e.severity) ? e.severity : "info";
  return h("li", { class: `event sev-${sev}`, dataset: { id: e.id, kind: e.kind, severity: sev } },
    h("span", { class: "event-icon", title: sev }, icon(sev === "info" ? "info" : "warning")),
    h("div", { class: "event-main" },
      h("p", { class: "event-msg" }, e.message),
      h("p", { class: "event-meta muted small" },
        h("span", { class: "event-kind" }, kindLabel(e.kind)),
        e.node_id ? h("span", { class: "event-node" }, e.node_name || nameOf(e.node_id)) : null,
        e.count > 1 ? h("span", { class: "event-count", title: `happened ${num(e.count)} times since ${dateTime(e.first_time)}; last at ${dateTime(e.time)}` },
          `×${num(e.count)} since ${clock(e.first_time)}`) : null,
        h("time", { datetime: e.time, title: dateTime(e.time) }, `${clock(e.time)} · ${ago(sinceIso(e.time))}`))));
}

/** Is ``b`` an earlier occurrence of the repeating event ``a`` (which replaced it)? */
export function sameRepeat(a, b) {
  return a.repeat_key != null && a.id !== b.id && a.repeat_key === b.repeat_key
    && a.kind === b.kind && (a.node_id || null) === (b.node_id || null);
}

/** Newest first, each repeating event once (its newest occurrence). */
export function withoutReplaced(events) {
  const seen = new Set();
  return events.filter((e) => {
    if (e.repeat_key == null) return true;
    const key = JSON.stringify([e.kind, e.node_id || null, e.repeat_key]);
    if (seen.has(key)) return false;
    seen.add(key);
    return true;
  });
}

export function mount(root) {
  const kindSel = h("select", { id: "act-kind", "aria-label": "Kind" }, h("option", { value: "" }, "All kinds"));
  const sevSel = h("select", { id: "act-severity", "aria-label": "Severity" },
    h("option", { value: "" }, "All severities"),
    h("option", { value: "warning+" }, "Warnings and errors"),
    SEVERITIES.map((s) => h("option", { value: s }, s[0].toUpperCase() + s.slice(1))));
  const text = h("input", { id: "act-text", type: "search", placeholder: "Filter by text or node", "aria-label": "Filter by text", autocomplete: "off" });
  const counter = h("span", { class: "muted small", role: "status" });
  const list = h("ul", { class: "events", id: "event-list" });
  root.append(
    pageHeader("Activity", "What the cluster did and why, newest first. New events appear as they happen."),
    h("div", { class: "toolbar" },
      h("label", { class: "field" }, h("span", "Kind"), kindSel),
      h("label", { class: "field" }, h("span", "Severity"), sevSel),
      h("label", { class: "field grow" }, h("span", "Text"), text),
      counter),
    h("section", { class: "card flush" }, list));

  const knownKinds = new Set();
  const refreshKinds = () => {
    const kinds = new Set([...Object.keys(KIND_WORDS), ...state.events.map((e) => e.kind)]);
    const added = [...kinds].filter((k) => !knownKinds.has(k));
    if (!added.length) return;
    added.forEach((k) => knownKinds.add(k));
    const keep = kindSel.value;
    replace(kindSel, h("option", { value: "" }, "All kinds"),
      [...knownKinds].sort((a, b) => kindLabel(a).localeCompare(kindLabel(b))).map((k) => h("option", { value: k }, kindLabel(k))));
    kindSel.value = keep;
  };

  const matches = (e) => {
    if (kindSel.value && e.kind !== kindSel.value) return false;
    const sev = sevSel.value;
    if (sev === "warning+" && !(e.severity === "warning" || e.severity === "error")) return false;
    if (sev && sev !== "warning+" && e.severity !== sev) return false;
    const q = text.value.trim().toLowerCase();
    if (q) {
      const hay = `${e.message} ${e.kind} ${kindLabel(e.kind)} ${e.node_id ? e.node_name || nodeName(e.node_id) : ""}`.toLowerCase();
      if (!hay.includes(q)) return false;
    }
    return true;
  };

  const render = () => {
    refreshKinds();
    const shown = state.events.filter(matches);
    replace(list, shown.length ? shown.slice(0, SHOWN).map((e) => eventRow(e)) : h("li", emptyState(
      state.events.length ? "No event matches these filters." : "Nothing has happened yet.")));
    counter.textContent = shown.length > SHOWN
      ? `Showing the newest ${num(SHOWN)} of ${num(shown.length)} events`
      : `${num(shown.length)} ${shown.length === 1 ? "event" : "events"}`;
  };

  const onNew = (e) => {
    if (!matches(e)) return;
    for (const id of e.replaces || []) list.querySelector(`li[data-id="${id}"]`)?.remove();
    const row = eventRow(e);
    row.classList.add("fresh");
    const empty = list.querySelector(".empty");
    if (empty) replace(list);
    list.prepend(row);
    while (list.children.length > SHOWN) list.lastChild.remove();
    refreshKinds();
    const n = state.events.filter(matches).length;
    counter.textContent = n > SHOWN ? `Showing the newest ${num(SHOWN)} of ${num(n)} events` : `${num(n)} ${n === 1 ? "event" : "events"}`;
  };

  let debounce = null;
  text.addEventListener("input", () => {
    clearTimeout(debounce);
    debounce = setTimeout(render, 150);
  });
  kindSel.addEventListener("change", render);
  sevSel.addEventListener("change", render);
  const offs = [on("event", onNew), on("events-loaded", render), on("nodes", () => {})];
  render();
  // Keep the "x s ago" times honest without re-fetching anything.
  const tick = setInterval(() => {
    for (const t of list.querySelectorAll("time")) {
      t.textContent = `${clock(t.getAttribute("datetime"))} · ${ago(sinceIso(t.getAttribute("datetime")))}`;
    }
  }, 10000);
  return () => {
    offs.forEach((off) => off());
    clearInterval(tick);
  };
}
