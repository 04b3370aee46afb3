// The health strip under the top bar (every page), the tab title and the
// badges in the navigation: all three show classify()'s answer. While the
// stream to the brain is lost the page's figures are greyed (the class `stale`
// on <html>) and the strip says how old they are.

import { $, h, replace } from "./dom.js";
import { ago } from "./format.js";
import { badges, classify, titleFor } from "./health.js";
import { on, state } from "./store.js";
import { retryNow } from "./stream.js";

let active = false;
let connected = null; // null until the stream has said anything
let page = "Overview";
let current = null;
let ticker = null;
let lastKey = "";

/** Start showing health (after sign-in). */
export function startHealth() {
  active = true;
  connected = null;
  lastKey = "";
  $("#health-strip").hidden = false;
  render();
  clearInterval(ticker);
  ticker = setInterval(tick, 1000);
}

/** Stop (signed out): no strip, no badges, no greying. */
export function stopHealth() {
  active = false;
  clearInterval(ticker);
  ticker = null;
  $("#health-strip").hidden = true;
  document.documentElement.classList.remove("stale");
  setBadges({});
}

/** The page's own title (the route's); the state goes in front of it. */
export function setPageTitle(title) {
  page = title;
  if (active) document.title = titleFor(current, page);
}

export function currentHealth() {
  return current;
}

function render() {
  if (!active) return;
  current = classify(state.status, state.nodes, connected);
  document.title = titleFor(current, page);
  document.documentElement.classList.toggle("stale", current.level === "unreachable");
  setBadges(badges(current));
  const strip = $("#health-strip");
  strip.dataset.level = current.level;
  // Rebuild only when the words change: keeps focus on the links and the live
  // region quiet between updates. The sentence shown counts too: "Healthy" has no
  // problem, and its sentence ("…, 5 nodes online") changes all the same.
  const key = JSON.stringify([current.level, current.next && current.next.text, current.problems.map((p) => p.text)]);
  if (key === lastKey) return tick();
  lastKey = key;
  const next = current.next;
  // The live region stays in place (one inserted anew is not announced); only
  // its words change, so a screen reader hears "Degraded" once, when it happens.
  let live = $("#health-state");
  if (!live) {
    live = h("span", { class: "hstrip-state", id: "health-state", role: "status" });
    replace(strip, live, h("span", { class: "hstrip-body", id: "health-body" }));
  }
  replace(live, h("span", { class: "hstrip-mark", "aria-hidden": "true" }, current.mark), h("strong", { id: "health-word" }, current.word));
  const parts = [];
  if (next) {
    parts.push(h("span", { class: "hstrip-next", id: "health-next" }, next.text,
      next.href ? [" ", h("a", { href: next.href, class: "hstrip-link" }, next.nav === "nodes" ? "Nodes page" : "Overview page")] : null));
  }
  const rest = current.problems.slice(1);
  if (rest.length) {
    parts.push(h("details", { class: "hstrip-more" },
      h("summary", `+${rest.length} more`),
      h("ul", rest.map((p) => h("li", { dataset: { level: p.level } }, p.text,
        p.href ? [" ", h("a", { href: p.href }, p.nav === "nodes" ? "Nodes page" : "Overview page")] : null)))));
  }
  if (current.level === "unreachable") {
    const retry = h("button", { class: "btn small", type: "button", id: "health-retry" }, "Retry now");
    retry.addEventListener("click", retryNow);
    parts.push(h("span", { class: "hstrip-age", id: "health-age" }), retry);
  }
  // Screen readers: the navigation badges are described here, not in the links'
  // names (those stay "Nodes", "Overview").
  parts.push(h("span", { id: "nav-alert-desc", hidden: true }, current.problems.map((p) => p.text).join(". ")));
  replace($("#health-body"), parts);
  tick();
}

function tick() {
  const age = $("#health-age");
  if (!age || !active) return;
  const text = state.updatedAt ? `Last updated ${ago((Date.now() - state.updatedAt) / 1000)}; the greyed figures may be out of date` : "No figures yet";
  if (age.textContent !== text) age.textContent = text;
}

function setBadges(byNav) {
  for (const a of document.querySelectorAll(".mainnav a[data-route]")) {
    let badge = a.querySelector(".nav-alert");
    const b = byNav[a.dataset.route];
    if (!b) {
      if (badge) badge.remove();
      if (a.getAttribute("aria-describedby") === "nav-alert-desc") a.removeAttribute("aria-describedby");
      continue;
    }
    if (!badge) {
      badge = h("span", { class: "nav-alert", "aria-hidden": "true" });
      a.append(badge);
    }
    badge.dataset.level = b.level;
    badge.textContent = String(b.count);
    badge.title = `${b.count} ${b.count === 1 ? "problem" : "problems"} here`;
    a.setAttribute("aria-describedby", "nav-alert-desc");
  }
}

on("status", render);
on("nodes", render);
on("connection", (ok) => {
  connected = ok;
  render();
});
