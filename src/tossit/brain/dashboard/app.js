// TossIt dashboard: sign-in, hash routing and the live stream.

import { api, get, setUnauthorizedHandler } from "./api.js";
import { $, h, replace } from "./dom.js";
import { emit, on, state } from "./store.js";
import { startStream, stopStream } from "./stream.js";
import { setPageTitle, startHealth, stopHealth } from "./strip.js";
import { toast } from "./ui.js";
import * as overview from "./overview.js";
import * as nodes from "./nodes.js";
import * as files from "./files.js";
import * as fileDetail from "./filedetail.js";
import * as activity from "./activity.js";
import * as trash from "./trash.js";
import { abortAll, setUploadUnauthorized, uploadsBusy } from "./uploads.js";

const ROUTES = [
  { re: /^\/overview$/, view: overview, nav: "overview", title: "Overview" },
  { re: /^\/nodes$/, view: nodes, nav: "nodes", title: "Nodes" },
  { re: /^\/files$/, view: files, nav: "files", title: "Files" },
  { re: /^\/files\/(\d+)$/, view: fileDetail, nav: "files", title: "File" },
  { re: /^\/activity$/, view: activity, nav: "activity", title: "Activity" },
  { re: /^\/trash$/, view: trash, nav: "trash", title: "Trash" },
];

let current = null; // {route, unmount}
let signedIn = false;

// -- routing ----------------------------------------------------------------

export function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/overview";
  const [path, query = ""] = raw.split("?");
  return { path, params: new URLSearchParams(query) };
}

function route() {
  if (!signedIn) return;
  const { path, params } = parseHash();
  const found = ROUTES.map((r) => ({ r, m: r.re.exec(path) })).find((x) => x.m);
  if (!found) {
    location.replace("#/overview");
    return;
  }
  if (current && current.unmount) current.unmount();
  const main = $("#main");
  replace(main);
  main.className = `main page-${found.r.nav}`;
  for (const a of document.querySelectorAll(".mainnav a")) {
    const active = a.dataset.route === found.r.nav;
    a.classList.toggle("active", active);
    if (active) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  setPageTitle(found.r.title);
  const unmount = found.r.view.mount(main, { params, match: found.m });
  current = { route: found.r, unmount };
}

// -- signing in and out -----------------------------------------------------

function showSignIn(notice) {
  signedIn = false;
  stopStream();
  if (current && current.unmount) current.unmount();
  current = null;
  state.me = null;
  state.status = null;
  state.nodes = null;
  state.events = [];
  for (const d of document.querySelectorAll("dialog")) d.close();
  abortAll();
  stopHealth();
  $("#shell").hidden = true;
  $("#signin").hidden = false;
  const n = $("#signin-notice");
  n.textContent = notice || "";
  n.hidden = !notice;
  $("#signin-error").hidden = true;
  document.title = "Sign in · TossIt";
  $("#signin-key").value = "";
  $("#signin-key").focus();
}

async function enter(me) {
  signedIn = true;
  state.me = me;
  $("#signin").hidden = true;
  $("#shell").hidden = false;
  const who = $("#whoami");
  if (state.authDisabled) {
    replace(who, h("span", { class: "role role-admin", title: "This brain runs without keys: everyone is admin" }, "auth off"));
    $("#signout").hidden = true;
  } else {
    const expires = me.expires ? ` · expires ${new Date(me.expires).toLocaleDateString("en-US")}` : "";
    replace(who,
      h("span", { class: "who-name", title: `Key ${me.id}${expires}` }, me.name),
      h("span", { class: `role role-${me.role}`, title: roleHelp(me.role) }, me.role));
    $("#signout").hidden = false;
  }
  setLive(null);
  startHealth();
  // The backlog first, then the stream from the newest event in it: no gap.
  loadEvents().then(startStream);
  route();
}

function roleHelp(role) {
  return {
    readonly: "Readonly key: you can look and download; changes need a readwrite or admin key",
    readwrite: "Readwrite key: files can be uploaded and deleted; node actions need an admin key",
    admin: "Admin key: everything",
  }[role] || role;
}

async function loadEvents() {
  try {
    const events = await get("/api/events?limit=300");
    const have = new Set(state.events.map((e) => e.id));
    const merged = [...state.events, ...events.filter((e) => !have.has(e.id))];
    merged.sort((a, b) => b.id - a.id);
    state.events = activity.withoutReplaced(merged).slice(0, 1000);
    emit("events-loaded", state.events);
  } catch (exc) {
    if (exc.status !== 401) toast(`Could not load the activity: ${exc.message}`, "error");
  }
}

async function signIn(ev) {
  ev.preventDefault();
  const input = $("#signin-key");
  const err = $("#signin-error");
  const btn = $("#signin-submit");
  const key = input.value.trim();
  err.hidden = true;
  if (!key) {
    err.textContent = "Paste an API key first.";
    err.hidden = false;
    input.focus();
    return;
  }
  btn.disabled = true;
  btn.textContent = "Signing in…";
  try {
    const { data } = await api("/api/session", { method: "POST", body: { key }, quiet401: true });
    input.value = "";
    state.authDisabled = false;
    await enter(data);
  } catch (exc) {
    err.textContent = exc.status === 401
      ? `That key was refused: ${exc.message}.`
      : exc.status === 429 ? exc.message : `Could not sign in: ${exc.message}`;
    err.hidden = false;
    input.select();
  } finally {
    btn.disabled = false;
    btn.textContent = "Sign in";
  }
}

async function signOut() {
  if (uploadsBusy() && !window.confirm("Uploads are still running. Sign out and cancel them?")) return;
  try {
    await api("/api/session", { method: "DELETE", quiet401: true });
  } catch (exc) {
    if (exc.status !== 401) {
      toast(`Sign-out failed: ${exc.message}`, "error");
      return;
    }
  }
  emit("signed-out-by-user");
  showSignIn("You are signed out.");
}

// -- live indicator (the lost connection is said by the health strip, strip.js) ---

function setLive(ok) {
  const live = $("#live");
  live.classList.toggle("ok", ok === true);
  live.classList.toggle("bad", ok === false);
  $("#live-text").textContent = ok === true ? "Live" : ok === false ? "Offline" : "Connecting…";
}

// -- start ------------------------------------------------------------------

async function boot() {
  $("#signin-form").addEventListener("submit", signIn);
  $("#signout").addEventListener("click", signOut);
  window.addEventListener("hashchange", () => {
    route();
    // Keyboard and screen-reader users land on the new page, not on the old link.
    if (signedIn) $("#main").focus({ preventScroll: true });
  });
  let wasDown = false;
  on("connection", (ok) => {
    setLive(ok);
    if (ok && wasDown) loadEvents(); // catch up on what happened meanwhile
    wasDown = !ok;
  });
  on("signed-out", (message) => showSignIn(message));
  on("uploads", (count) => {
    // Uploads go on on other pages: the Files link says how many are running.
    const badge = $("#nav-uploads");
    badge.textContent = count ? String(count) : "";
    badge.hidden = !count;
    badge.title = count ? `${count} ${count === 1 ? "upload" : "uploads"} running` : "";
  });
  const ended = (message) => {
    if (signedIn) showSignIn(`Your session ended: ${message}. Sign in again.`);
  };
  setUnauthorizedHandler(ended);
  setUploadUnauthorized(ended);
  window.addEventListener("beforeunload", (ev) => {
    if (uploadsBusy()) ev.preventDefault();
  });
  // Files dropped anywhere but the Files page's drop zone (which handles its own
  // drops first) must not make the browser open them in place of the dashboard.
  for (const kind of ["dragover", "drop"]) {
    window.addEventListener(kind, (ev) => {
      if (ev.defaultPrevented || !ev.dataTransfer) return;
      if (![...(ev.dataTransfer.types || [])].includes("Files")) return;
      ev.preventDefault();
      ev.dataTransfer.dropEffect = "none";
    });
  }
  try {
    const me = await get("/api/keys/me", { quiet401: true });
    state.authDisabled = me.id === "-";
    await enter(me);
  } catch (exc) {
    if (exc.status === 401) showSignIn();
    else showSignIn(`The brain did not answer: ${exc.message}`);
  }
}

boot();
