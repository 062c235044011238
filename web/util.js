// SPDX-License-Identifier: MIT
// Small helpers shared by the pages: a DOM builder (no innerHTML, so
// server text is never parsed as markup), formatters and notices.

export function h(tag, attrs, ...children) {
  const el = tag.startsWith('svg:')
    ? document.createElementNS('http://www.w3.org/2000/svg', tag.slice(4))
    : document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on') && typeof v === 'function') {
      el.addEventListener(k.slice(2), v);
    } else if (k === 'class') {
      el.setAttribute('class', v);
    } else if (k === 'dataset') {
      Object.assign(el.dataset, v);
    } else if (k === 'value' && 'value' in el) {
      el.value = v;
    } else if (k === 'checked' || k === 'selected' || k === 'disabled') {
      el[k] = !!v;
      if (v) el.setAttribute(k, '');
    } else {
      el.setAttribute(k, v === true ? '' : String(v));
    }
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const c of children) {
    if (c === undefined || c === null || c === false) continue;
    if (Array.isArray(c)) append(el, c);
    else el.append(c instanceof Node ? c : String(c));
  }
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

let uid = 0;
export function newId(prefix) {
  uid += 1;
  return `${prefix || 'id'}-${uid}`;
}

// A labelled form field: returns {wrap, input}.
export function field(label, input, hint) {
  if (!input.id) input.id = newId('f');
  const hintEl = hint ? h('small', { class: 'hint', id: input.id + '-hint' }, hint) : null;
  if (hintEl) input.setAttribute('aria-describedby', hintEl.id);
  const wrap = h('div', { class: 'field' },
    h('label', { for: input.id }, label), input, hintEl);
  return { wrap, input };
}

export function fmtNum(x, digits = 4) {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  if (typeof x !== 'number') return String(x);
  if (Number.isInteger(x)) return x.toLocaleString('en-US');
  return Number(x.toPrecision(digits)).toString();
}

export function fmtLoss(x) {
  if (x === null || x === undefined || Number.isNaN(x)) return '—';
  return x.toFixed(4);
}

export function fmtDuration(s) {
  if (s === null || s === undefined || !Number.isFinite(s) || s < 0) return '—';
  if (s < 1) return '<1 s';
  if (s < 60) return `${Math.round(s)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${Math.round(s - m * 60)} s`;
  const hh = Math.floor(m / 60);
  return `${hh} h ${m - hh * 60} min`;
}

export function fmtBytes(b) {
  if (b === null || b === undefined || !Number.isFinite(b)) return '—';
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (b >= 1024 && i < u.length - 1) { b /= 1024; i += 1; }
  return `${i ? b.toFixed(1) : b} ${u[i]}`;
}

export function fmtTime(t) {
  if (!t) return '—';
  const d = new Date(t * 1000);
  return d.toLocaleString(undefined, { dateStyle: 'medium', timeStyle: 'short' });
}

export function fmtAgo(t) {
  if (!t) return '—';
  const s = Date.now() / 1000 - t;
  if (s < 60) return 'just now';
  if (s < 3600) return `${Math.floor(s / 60)} min ago`;
  if (s < 86400) return `${Math.floor(s / 3600)} h ago`;
  return fmtTime(t);
}

export function fmtParams(n) {
  if (!n) return '—';
  if (n >= 1e9) return `${(n / 1e9).toFixed(1)}B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(1)}M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(0)}K`;
  return String(n);
}

export const TERMINAL = new Set(['succeeded', 'failed', 'cancelled']);

export function statusBadge(status) {
  return h('span', { class: `badge status-${status}` }, status);
}

// Notices in a polite live region; errors stay until dismissed.
export function notify(message, kind = 'info') {
  const box = document.getElementById('notices');
  if (!box) return;
  const close = h('button', { type: 'button', class: 'link', 'aria-label': 'Dismiss' }, '×');
  const n = h('div', { class: `notice notice-${kind}` }, h('span', {}, message), close);
  close.addEventListener('click', () => n.remove());
  box.append(n);
  if (kind !== 'error') setTimeout(() => n.remove(), 5000);
}

export function errorText(e) {
  if (!e) return 'unknown error';
  if (e.status !== undefined) {
    let s = e.message || e.code || `HTTP ${e.status}`;
    if (e.field && !s.includes(e.field)) s += ` (${e.field})`;
    return s;
  }
  return e.message || String(e);
}

export function debounce(fn, ms) {
  let t = null;
  return (...a) => { clearTimeout(t); t = setTimeout(() => fn(...a), ms); };
}

export function parseHashQuery(q) {
  const out = {};
  for (const [k, v] of new URLSearchParams(q || '')) out[k] = v;
  return out;
}
