// The dashboard's only way to the server. Authentication is the HttpOnly session cookie made
// by POST /api/v1/session; the CSRF token from that answer is kept in memory only and sent
// on every unsafe request. The page never sees the session cookie or keeps the login token.

const UNSAFE = new Set(["POST", "PUT", "PATCH", "DELETE"]);
const TIMEOUT_MS = 15000;

export class ApiError extends Error {
  constructor(status, detail, path) {
    super(`${status}: ${detail}`);
    this.status = status;
    this.detail = detail;
    this.path = path;
  }

  /** A sentence for an operator. */
  get explanation() {
    switch (this.status) {
      case 0: return `Server unreachable (${this.detail})`;
      case 401: return "Not signed in or session expired";
      case 403: return `Refused (403): ${this.detail || "your role may not do this"}`;
      case 404: return `Not found (404): ${this.detail || this.path}`;
      case 413: return "Refused (413): request too large";
      case 422: return `Invalid (422): ${this.detail}`;
      case 503: return `Unavailable (503): ${this.detail}`;
      default: return `Error ${this.status}: ${this.detail}`;
    }
  }
}

let csrfToken = null;
const unauthorizedHandlers = [];

export function onUnauthorized(handler) {
  unauthorizedHandlers.push(handler);
}

function describe(body) {
  if (!body) return "";
  const detail = body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    // FastAPI validation errors: [{loc: [...], msg: "..."}]
    return detail.map((item) => {
      const where = Array.isArray(item.loc) ? item.loc.filter((p) => p !== "body").join(".") : "";
      return where ? `${where}: ${item.msg}` : String(item.msg ?? JSON.stringify(item));
    }).join("; ");
  }
  return detail === undefined ? "" : JSON.stringify(detail);
}

/** Query string from an object; arrays repeat the key, empty values are left out. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params || {})) {
    for (const item of [].concat(value)) {
      if (item === undefined || item === null || item === "") continue;
      search.append(key, String(item));
    }
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}

export async function request(method, path, { body, params, signal, quiet401 = false } = {}) {
  const headers = { Accept: "application/json" };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  if (UNSAFE.has(method) && csrfToken) headers["X-CSRF-Token"] = csrfToken;
  const timeout = AbortSignal.timeout(TIMEOUT_MS);
  let response;
  try {
    response = await fetch(path + query(params), {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "same-origin",
      cache: "no-store",
      signal: signal ? AbortSignal.any([signal, timeout]) : timeout,
    });
  } catch (error) {
    if (signal && signal.aborted) throw error;
    throw new ApiError(0, error.name === "TimeoutError" ? "timed out" : "network error", path);
  }
  const type = response.headers.get("Content-Type") || "";
  let data = null;
  if (type.includes("application/json")) {
    try { data = await response.json(); } catch { data = null; }
  }
  if (!response.ok) {
    const error = new ApiError(response.status, describe(data) || response.statusText, path);
    if (response.status === 401 && !quiet401) for (const handler of unauthorizedHandlers) handler(error);
    throw error;
  }
  return data;
}

export const api = {
  get: (path, params, options = {}) => request("GET", path, { ...options, params }),
  post: (path, body) => request("POST", path, { body }),
  patch: (path, body) => request("PATCH", path, { body }),
  delete: (path) => request("DELETE", path),
};

/** Sign in with a token; the server sets the session cookie. */
export async function signIn(tokenText) {
  const session = await request("POST", "/api/v1/session", { body: { token: tokenText }, quiet401: true });
  csrfToken = session.csrf_token || null;
  return session;
}

/** The current session, or null when not signed in. */
export async function currentSession() {
  try {
    const session = await request("GET", "/api/v1/session", { quiet401: true });
    csrfToken = session.csrf_token || csrfToken;
    return session;
  } catch (error) {
    if (error instanceof ApiError && error.status === 401) return null;
    throw error;
  }
}

export async function signOut() {
  try {
    await request("DELETE", "/api/v1/session", { quiet401: true });
  } finally {
    csrfToken = null;
  }
}

/** A same-origin URL with a cache-busting parameter. */
export function freshUrl(url) {
  const separator = url.includes("?") ? "&" : "?";
  return `${url}${separator}t=${Date.now()}`;
}
