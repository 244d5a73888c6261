// The public API, as scripts use it, and the token. The token travels in the Authorization header, and to
// the results WebSocket (which cannot carry headers) as a subprotocol: never in a URL, so it never reaches a
// server log, a browser history or a proxy.

import { $, TOKEN_KEY, hideMessage, showMessage, st } from "./state.js";

export class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

function detailText(body, status) {
  const d = body && body.detail;
  if (typeof d === "string") return d;
  if (Array.isArray(d)) return d.map((e) => `${(e.loc || []).slice(1).join(".")}: ${e.msg}`).join("; ");
  return `HTTP ${status}`;
}

export async function api(path, opts = {}) {
  for (;;) {
    const headers = { ...(opts.headers || {}) };
    if (st.token) headers.Authorization = `Bearer ${st.token}`;
    if (opts.json !== undefined) headers["Content-Type"] = "application/json";
    let resp;
    try {
      resp = await fetch(path, { method: opts.method || "GET", headers,
        body: opts.json !== undefined ? JSON.stringify(opts.json) : undefined });
    } catch (err) {
      throw new ApiError(0, `the server cannot be reached (${err.message})`);
    }
    if (resp.status === 401) { await askToken(st.token ? "the server refused this token" : ""); continue; }
    if (!resp.ok) {
      let body = null;
      try { body = await resp.json(); } catch { /* not JSON */ }
      throw new ApiError(resp.status, detailText(body, resp.status));
    }
    return opts.raw ? resp : (resp.status === 204 ? null : resp.json());
  }
}

// the WebSocket subprotocols that carry the token: "sam2-edge" (the one the server selects) and
// "sam2-edge.bearer.<base64url of the token>"
export function wsProtocols() {
  if (!st.token) return ["sam2-edge"];
  const bytes = new TextEncoder().encode(st.token);
  const b64 = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  return ["sam2-edge", `sam2-edge.bearer.${b64}`];
}

export function askToken(why) {
  $("token-form").hidden = false;
  if (why) showMessage(why, "error");
  $("token").focus();
  return new Promise((resolve) => st.tokenWaiters.push(resolve));
}

export function onTokenSubmit(afterToken) {
  $("token-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    st.token = $("token").value.trim();
    sessionStorage.setItem(TOKEN_KEY, st.token);
    $("token-form").hidden = true;
    hideMessage();
    const waiters = st.tokenWaiters.splice(0);
    waiters.forEach((resolve) => resolve());
    afterToken();
  });
}
