// SPDX-License-Identifier: MIT
// Server-sent events read with fetch() (EventSource cannot send the
// Authorization header nor POST a body): a line parser per the HTML spec
// (id, event, data, retry; ":" comments), and a follower for a job's event
// stream that reconnects with Last-Event-ID until the job has ended.

import { authHeaders, responseError } from './api.js';

// Reads an SSE response body; calls onMessage({id, event, data}) per
// message. Resolves when the stream ends; returns {lastId, retry}.
export async function readSSE(res, onMessage, state = {}) {
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let data = [];
  let event = '';
  let id = null;
  const dispatch = () => {
    if (data.length) {
      if (id !== null) state.lastId = id;
      onMessage({ id, event: event || 'message', data: data.join('\n') });
    }
    data = []; event = ''; id = null;
  };
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buf += value;
    let nl;
    while ((nl = buf.search(/\r\n|\r|\n/)) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + (buf[nl] === '\r' && buf[nl + 1] === '\n' ? 2 : 1));
      if (line === '') { dispatch(); continue; }
      if (line[0] === ':') continue;
      const c = line.indexOf(':');
      const name = c < 0 ? line : line.slice(0, c);
      let val = c < 0 ? '' : line.slice(c + 1);
      if (val[0] === ' ') val = val.slice(1);
      if (name === 'data') data.push(val);
      else if (name === 'event') event = val;
      else if (name === 'id') id = val;
      else if (name === 'retry' && /^\d+$/.test(val)) state.retry = Number(val);
    }
  }
  dispatch();
  return state;
}

// POSTs a JSON body and reads the SSE answer (the /generate stream).
// onData gets each parsed JSON data object; resolves at [DONE] or the end.
export async function postStream(path, body, onData, signal) {
  const res = await fetch(path, {
    method: 'POST',
    headers: authHeaders({ 'Content-Type': 'application/json', Accept: 'text/event-stream' }),
    body: JSON.stringify(body),
    signal,
  });
  if (!res.ok) throw await responseError(res);
  const ct = res.headers.get('Content-Type') || '';
  if (!ct.startsWith('text/event-stream')) {
    onData(await res.json()); // a daemon without streaming: one answer
    return;
  }
  await readSSE(res, (m) => {
    if (m.data === '[DONE]') return;
    let obj;
    try { obj = JSON.parse(m.data); } catch { return; }
    onData(obj);
  });
}

// Follows GET /jobs/{id}/events?stream=true. onEvent(event object) for
// each event once, in order, across reconnects. Returns {stop()}.
export function followJob(jobId, onEvent, opts = {}) {
  const ctl = new AbortController();
  const state = { lastId: null, retry: 2000 };
  let stopped = false;
  let ended = false;
  const run = async () => {
    while (!stopped && !ended) {
      try {
        const headers = authHeaders({ Accept: 'text/event-stream' });
        if (state.lastId !== null) headers['Last-Event-ID'] = state.lastId;
        const res = await fetch(`/jobs/${encodeURIComponent(jobId)}/events?stream=true`,
          { headers, signal: ctl.signal, cache: 'no-store' });
        if (!res.ok) {
          const err = await responseError(res);
          if (opts.onError) opts.onError(err);
          if (res.status < 500 && res.status !== 429) return; // will not get better
        } else {
          if (opts.onOpen) opts.onOpen();
          await readSSE(res, (m) => {
            let ev;
            try { ev = JSON.parse(m.data); } catch { return; }
            onEvent(ev);
            if (ev.type === 'status' && ev.data &&
                ['succeeded', 'failed', 'cancelled'].includes(ev.data.status)) {
              ended = true;
            }
          }, state);
          // The server closes the stream after a job's final status.
          if (ended || opts.isEnded?.()) break;
        }
      } catch (e) {
        if (stopped || e.name === 'AbortError') return;
        if (opts.onError) opts.onError(e);
      }
      if (opts.onReconnect) opts.onReconnect();
      await new Promise((r) => setTimeout(r, state.retry || 2000));
    }
    if (opts.onEnd && !stopped) opts.onEnd();
  };
  run();
  return { stop() { stopped = true; ctl.abort(); } };
}
