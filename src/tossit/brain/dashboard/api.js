// The REST API, with the session cookie. Every request that changes something
// carries X-Tossit-CSRF (the brain refuses a cookie-authenticated one without it).

export const CSRF_HEADER = "X-Tossit-CSRF";

export class ApiError extends Error {
  constructor(status, code, message, body) {
    super(message);
    this.status = status;
    this.code = code;
    this.body = body || {};
  }
}

let onUnauthorized = () => {};

/** Called with the server's message whenever a request answers 401. */
export function setUnauthorizedHandler(fn) {
  onUnauthorized = fn;
}

export async function errorFrom(resp) {
  let body = null;
  try {
    body = await resp.json();
  } catch {
    body = null;
  }
  const code = (body && body.error) || `http_${resp.status}`;
  const message = (body && body.message) || `${resp.status} ${resp.statusText || "error"}`;
  return new ApiError(resp.status, code, message, body);
}

/**
 * fetch() a path of the API. Returns {data, headers, status}. Throws ApiError
 * (a 401 also ends the session in the page, unless opts.quiet401).
 */
export async function api(path, opts = {}) {
  const method = (opts.method || "GET").toUpperCase();
  const headers = { Accept: "application/json", ...(opts.headers || {}) };
  let body = opts.body;
  if (body !== undefined && !(body instanceof Blob) && typeof body !== "string") {
    body = JSON.stringify(body);
    headers["Content-Type"] = "application/json";
  }
  if (method !== "GET" && method !== "HEAD") headers[CSRF_HEADER] = "1";
  let resp;
  try {
    resp = await fetch(path, { method, headers, body, credentials: "same-origin", cache: "no-store", signal: opts.signal });
  } catch (exc) {
    if (exc && exc.name === "AbortError") throw exc;
    throw new ApiError(0, "network", "The brain did not answer (network error). Check that it is running, then retry.");
  }
  if (!resp.ok) {
    const err = await errorFrom(resp);
    if (resp.status === 401 && !opts.quiet401) onUnauthorized(err.message);
    throw err;
  }
  let data = null;
  if (resp.status !== 204) {
    const type = resp.headers.get("content-type") || "";
    data = type.includes("json") ? await resp.json() : await resp.text();
  }
  return { data, headers: resp.headers, status: resp.status };
}

export const get = async (path, opts) => (await api(path, opts)).data;

// -- roles ------------------------------------------------------------------

const RANK = { readonly: 0, readwrite: 1, admin: 2 };

export function allows(role, needed) {
  return (RANK[role] ?? -1) >= RANK[needed];
}

/** Why a key of `role` cannot do something that needs `needed` (null if it can). */
export function whyNot(role, needed) {
  if (allows(role, needed)) return null;
  return needed === "admin" ? "Needs an admin key" : "Needs a readwrite key";
}

// -- paths ------------------------------------------------------------------

/** /api/files/a%20b/c.txt for "a b/c.txt": each segment encoded, slashes kept. */
export function uploadPath(name) {
  return "/api/files/" + name.split("/").map(encodeURIComponent).join("/");
}
