// One EventSource for the whole page: /api/stream sends `status`, `nodes` and
// `event` messages (and `auth` when the key stops being valid). A lost stream
// shows in the health strip (strip.js) and is reconnected with a growing delay; nothing polls.

import { api } from "./api.js";
import { sameRepeat } from "./activity.js";
import { emit, state } from "./store.js";

const STALE_MS = 12000; // the brain sends status every ~2 s: silence this long means trouble
const MAX_EVENTS = 1000;

let source = null;
let retryTimer = null;
let watchdog = null;
let delay = 1000;
let stopped = true;
let lastSeen = 0;

function setConnected(ok) {
  if (state.connected === ok) return;
  state.connected = ok;
  emit("connection", ok);
}

function seen() {
  lastSeen = Date.now();
  state.updatedAt = lastSeen; // the health strip says how old the figures are
  delay = 1000;
  setConnected(true);
}

function parse(ev) {
  try {
    return JSON.parse(ev.data);
  } catch {
    return null;
  }
}

export function startStream() {
  stopped = false;
  connect();
  if (!watchdog) {
    watchdog = setInterval(() => {
      if (!stopped && source && state.connected && Date.now() - lastSeen > STALE_MS) {
        // Open but silent (a hung brain, a dead proxy): start over.
        setConnected(false);
        reconnectLater();
      }
    }, 3000);
  }
}

export function stopStream() {
  stopped = true;
  clearTimeout(retryTimer);
  clearInterval(watchdog);
  watchdog = null;
  if (source) source.close();
  source = null;
  state.connected = false;
}

function connect() {
  if (source) source.close();
  // Resume after the newest event the page has, so nothing is missed in between.
  const newest = state.events.reduce((m, e) => Math.max(m, e.id), -1);
  const es = new EventSource(newest >= 0 ? `/api/stream?after=${newest}` : "/api/stream");
  source = es;
  es.addEventListener("open", () => {
    if (source === es) seen();
  });
  es.addEventListener("status", (ev) => {
    const data = parse(ev);
    if (!data || source !== es) return;
    seen();
    state.status = data;
    emit("status", data);
  });
  es.addEventListener("nodes", (ev) => {
    const data = parse(ev);
    if (!Array.isArray(data) || source !== es) return;
    seen();
    state.nodes = data;
    emit("nodes", data);
  });
  es.addEventListener("event", (ev) => {
    const data = parse(ev);
    if (!data || source !== es) return;
    seen();
    if (!state.events.some((e) => e.id === data.id)) {
      // A repeat replaces its earlier occurrence (one entry, with a count).
      data.replaces = state.events.filter((e) => sameRepeat(data, e)).map((e) => e.id);
      if (data.replaces.length) state.events = state.events.filter((e) => !data.replaces.includes(e.id));
      state.events.unshift(data);
      if (state.events.length > MAX_EVENTS) state.events.length = MAX_EVENTS;
      emit("event", data);
    }
  });
  es.addEventListener("auth", (ev) => {
    if (source !== es) return;
    const data = parse(ev) || {};
    stopStream();
    emit("signed-out", data.message
      ? `You were signed out: ${data.message}. Sign in again, with another key if needed.`
      : "Your key is no longer valid (revoked or expired). Sign in again.");
  });
  es.addEventListener("error", () => {
    if (source !== es || stopped) return;
    setConnected(false);
    if (es.readyState === EventSource.CLOSED) reconnectLater();
    // CONNECTING: the browser retries by itself; the health strip says so meanwhile.
  });
}

function reconnectLater() {
  if (source) source.close();
  source = null;
  clearTimeout(retryTimer);
  retryTimer = setTimeout(async () => {
    if (stopped) return;
    // Was it the key? (the stream answers 401 before streaming, and an
    // EventSource cannot see the status). api() turns a 401 into sign-in.
    try {
      await api("/api/keys/me");
    } catch (exc) {
      if (exc.status === 401 || stopped) return;
    }
    if (!stopped) connect();
  }, delay);
  delay = Math.min(delay * 2, 10000);
}

/** Reconnect now (the health strip's "Retry now" button). */
export function retryNow() {
  delay = 1000;
  clearTimeout(retryTimer);
  if (!stopped) connect();
}
