// SPDX-License-Identifier: MIT
// Jobs: every job with its status, progress, losses and ETA, refreshed
// every two seconds while the tab is visible. Rows are updated in place
// (keyed by id), so keyboard focus and scroll survive a refresh.

import { get, qs } from './api.js';
import { h, clear, fmtLoss, fmtDuration, fmtAgo, fmtNum, statusBadge, errorText } from './util.js';

const STATUSES = ['', 'queued', 'running', 'paused', 'succeeded', 'failed', 'cancelled'];

export function render(main) {
  const filter = h('select', { id: 'jobs-status' },
    STATUSES.map((s) => h('option', { value: s }, s || 'all')));
  const live = h('span', { class: 'muted small', 'aria-live': 'off' }, '');
  const tbody = h('tbody', {});
  const table = h('table', { class: 'table jobs-table' },
    h('caption', { class: 'sr-only' }, 'Finetuning jobs, newest first'),
    h('thead', {}, h('tr', {},
      ['Job', 'Status', 'Progress', 'Train loss', 'Val. loss', 'Tokens/s', 'ETA', 'Created']
        .map((t) => h('th', { scope: 'col' }, t)))),
    tbody);
  const empty = h('div', { class: 'empty', hidden: true },
    h('p', {}, 'No jobs yet.'),
    h('a', { class: 'btn btn-primary', href: '#/new' }, 'Start a finetuning job'));
  const err = h('p', { class: 'error', role: 'alert', hidden: true });
  main.append(
    h('div', { class: 'page-head' },
      h('h1', {}, 'Jobs'),
      h('div', { class: 'row' },
        h('label', { for: 'jobs-status' }, 'Status'), filter,
        h('a', { class: 'btn btn-primary', href: '#/new' }, 'New job'))),
    err, h('div', { class: 'table-scroll' }, table), empty, live);

  const rows = new Map();
  let timer = null;
  let alive = true;

  function rowFor(j) {
    let r = rows.get(j.id);
    if (!r) {
      const link = h('a', { href: `#/jobs/${j.id}` }, j.id);
      const cells = {
        name: h('td', { 'data-label': 'Job' }, link, h('div', { class: 'muted small sub' })),
        status: h('td', { 'data-label': 'Status' }),
        progress: h('td', { 'data-label': 'Progress' },
          h('progress', { max: 1, value: 0, 'aria-label': `Progress of ${j.id}` }),
          h('span', { class: 'small steps' })),
        loss: h('td', { 'data-label': 'Train loss', class: 'num' }),
        vloss: h('td', { 'data-label': 'Val. loss', class: 'num' }),
        tps: h('td', { 'data-label': 'Tokens/s', class: 'num' }),
        eta: h('td', { 'data-label': 'ETA', class: 'num' }),
        created: h('td', { 'data-label': 'Created' }),
      };
      r = { tr: h('tr', { 'data-job': j.id }, Object.values(cells)), cells };
      rows.set(j.id, r);
    }
    const c = r.cells;
    const p = j.progress || {};
    c.name.querySelector('.sub').textContent = `${j.base_model}${j.suffix ? ' · ' + j.suffix : ''}`;
    if (c.status.dataset.s !== j.status) {
      clear(c.status).append(statusBadge(j.status));
      c.status.dataset.s = j.status;
    }
    const bar = c.progress.querySelector('progress');
    const total = p.total_steps || 0;
    bar.max = total || 1;
    bar.value = p.step || (j.status === 'succeeded' ? (total || 1) : 0);
    c.progress.querySelector('.steps').textContent = total ? ` ${p.step || 0}/${total}` :
      (j.status === 'queued' && j.queue_position !== undefined ? ` #${j.queue_position + 1} in queue` : '');
    c.loss.textContent = fmtLoss(p.train_loss);
    c.vloss.textContent = fmtLoss(p.validation_loss);
    c.tps.textContent = p.tokens_per_second ? fmtNum(Math.round(p.tokens_per_second)) : '—';
    c.eta.textContent = j.status === 'running' ? fmtDuration(p.eta_seconds) : '—';
    c.created.textContent = fmtAgo(j.created_at);
    c.created.title = new Date(j.created_at * 1000).toLocaleString();
    return r.tr;
  }

  async function refresh() {
    timer = null;
    if (!alive) return;
    try {
      const list = await get(`/jobs${qs({ status: filter.value, limit: 200 })}`);
      err.hidden = true;
      const seen = new Set();
      let prev = null;
      for (const j of list.data) {
        seen.add(j.id);
        const tr = rowFor(j);
        const want = prev ? prev.nextSibling : tbody.firstChild;
        if (want !== tr) tbody.insertBefore(tr, want);
        prev = tr;
      }
      for (const [id, r] of rows) if (!seen.has(id)) { r.tr.remove(); rows.delete(id); }
      empty.hidden = list.data.length > 0 || !!filter.value;
      table.hidden = list.data.length === 0 && !filter.value;
      live.textContent = `Updated ${new Date().toLocaleTimeString()}`;
    } catch (e) {
      err.textContent = `Could not list the jobs: ${errorText(e)}`;
      err.hidden = false;
    }
    if (alive) timer = setTimeout(refresh, document.hidden ? 10000 : 2000);
  }

  filter.addEventListener('change', () => { clearTimeout(timer); refresh(); });
  const onVis = () => { if (!document.hidden && alive) { clearTimeout(timer); refresh(); } };
  document.addEventListener('visibilitychange', onVis);
  refresh();
  return () => { alive = false; clearTimeout(timer); document.removeEventListener('visibilitychange', onVis); };
}
