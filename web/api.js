// SPDX-License-Identifier: MIT
// The dashboard's only way to the daemon: the public HTTP API (docs/api.md),
// same origin. The API key, when the daemon has keys, lives in the browser's
// localStorage and goes out as "Authorization: Bearer <key>"; a 401 asks
// the page for one (event "tuna:auth-required").

const KEY = 'tuna.apiKey';

export class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || null;
    this.line = e.line ?? null;
    this.field = e.field ?? e.param ?? null;
  }
}

export function getKey() {
  try { return localStorage.getItem(KEY) || ''; } catch { return ''; }
}

export function setKey(k) {
  try {
    if (k) localStorage.setItem(KEY, k); else localStorage.removeItem(KEY);
  } catch { /* private mode: the key lasts for this page only */ }
  memKey = k || '';
}

let memKey = '';

export function authHeaders(extra) {
  const hd = Object.assign({}, extra || {});
  const k = getKey() || memKey;
  if (k) hd.Authorization = `Bearer ${k}`;
  return hd;
}

// The ApiError of a response that is not ok (its JSON error body when it
// has one); a 401 also asks the page for a key.
export async function responseError(res) {
  let data = null;
  try { data = await res.json(); } catch { /* not JSON */ }
  const err = new ApiError(res.status, data);
  if (res.status === 401) {
    window.dispatchEvent(new CustomEvent('tuna:auth-required', { detail: err.message }));
  }
  return err;
}

// Sends a request and returns the parsed JSON answer; throws ApiError.
// opts: json (object sent as JSON), body (raw), contentType, headers,
// signal, raw (return the Response itself after the status check).
export async function api(method, path, opts = {}) {
  const headers = authHeaders(opts.headers);
  let body = opts.body;
  if (opts.json !== undefined) {
    body = JSON.stringify(opts.json);
    headers['Content-Type'] = 'application/json';
  } else if (opts.contentType) {
    headers['Content-Type'] = opts.contentType;
  }
  let res;
  try {
    res = await fetch(path, { method, headers, body, signal: opts.signal, cache: 'no-store' });
  } catch (e) {
    if (e.name === 'AbortError') throw e;
    const err = new ApiError(0, { error: { message: 'cannot reach tunad: ' + e.message } });
    err.network = true;
    throw err;
  }
  if (!res.ok) throw await responseError(res);
  if (opts.raw) return res;
  if (res.status === 204) return null;
  return res.json();
}

export const get = (p, o) => api('GET', p, o);
export const post = (p, json, o = {}) => api('POST', p, Object.assign({ json }, o));
export const del = (p, o) => api('DELETE', p, o);

// Whether a route exists on this daemon (an OPTIONS preflight answers 204
// for a known route, 404 for an unknown one): used for routes that newer
// versions add, such as /v1/load_lora_adapter.
const routeCache = new Map();
export function hasRoute(path) {
  if (!routeCache.has(path)) {
    routeCache.set(path, fetch(path, { method: 'OPTIONS' })
      .then((r) => r.status === 204).catch(() => false));
  }
  return routeCache.get(path);
}

export function qs(params) {
  const u = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) {
    if (v === undefined || v === null || v === '') continue;
    u.set(k, String(v));
  }
  const s = u.toString();
  return s ? `?${s}` : '';
}

// Downloads an authenticated URL as a file (a plain link cannot send the
// bearer key).
export async function download(path, fallbackName) {
  const res = await api('GET', path, { raw: true });
  const cd = res.headers.get('Content-Disposition') || '';
  const m = /filename="?([^";]+)"?/.exec(cd);
  const blob = await res.blob();
  const url = URL.createObjectURL(blob);
  const a = document.createElement('a');
  a.href = url;
  a.download = m ? m[1] : fallbackName;
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
  return a.download;
}
