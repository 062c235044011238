// SPDX-License-Identifier: MIT
// One job: live loss curves and events from GET /jobs/{id}/events?stream=true,
// progress and ETA from GET /jobs/{id}, checkpoints, hyperparameters, the
// prompting-vs-finetuning report, and the controls (pause/resume, stop and
// save, cancel, adapter download).

import { get, post, download } from './api.js';
import { followJob } from './sse.js';
import { LossChart } from './chart.js';
import {
  h, clear, fmtLoss, fmtDuration, fmtTime, fmtNum, statusBadge, notify, errorText, TERMINAL,
} from './util.js';

const MAX_STEP_EVENTS_SHOWN = 300; // lifecycle events are all kept

function dl(pairs) {
  return h('dl', { class: 'kv' }, pairs.filter(Boolean).flatMap(([k, v]) => [h('dt', {}, k), h('dd', {}, v)]));
}

function card(title, id, ...body) {
  return h('section', { class: 'card', 'aria-labelledby': id }, h('h2', { id }, title), ...body);
}

export async function render(main, [id]) {
  let j;
  try {
    j = await get(`/jobs/${encodeURIComponent(id)}`);
  } catch (e) {
    main.append(h('h1', {}, 'Job'), h('p', { class: 'error', role: 'alert' },
      e.status === 404 ? `No job ${id}.` : `Could not load job ${id}: ${errorText(e)}`),
      h('a', { href: '#/jobs' }, '← All jobs'));
    return null;
  }
  let alive = true;
  const chart = new LossChart(`Loss curves of ${id}`);

  // ---------------------------------------------------------------- header
  const badge = h('span', { id: 'job-status', role: 'status', 'aria-live': 'polite' });
  const title = h('h1', {}, 'Job ', h('span', { class: 'mono' }, id));
  const bar = h('progress', { id: 'job-progress', max: 1, value: 0, 'aria-label': 'Training progress' });
  const stats = {
    step: h('dd', { id: 'stat-step' }), loss: h('dd', { id: 'stat-loss' }), vloss: h('dd', { id: 'stat-vloss' }),
    tps: h('dd', {}), eta: h('dd', { id: 'stat-eta' }), epoch: h('dd', {}),
  };
  const statsEl = h('dl', { class: 'stats' },
    h('div', {}, h('dt', {}, 'Step'), stats.step), h('div', {}, h('dt', {}, 'Epoch'), stats.epoch),
    h('div', {}, h('dt', {}, 'Train loss'), stats.loss), h('div', {}, h('dt', {}, 'Val. loss'), stats.vloss),
    h('div', {}, h('dt', {}, 'Tokens/s'), stats.tps), h('div', {}, h('dt', {}, 'ETA'), stats.eta));
  const note = h('p', { class: 'note', hidden: true });
  const errBox = h('p', { class: 'error', role: 'alert', hidden: true });

  // ---------------------------------------------------------------- controls
  const btn = (label, cls, onclick, extra = {}) =>
    h('button', Object.assign({ type: 'button', class: cls, onclick }, extra), label);
  const control = async (action, label) => {
    try {
      j = await post(`/jobs/${id}/${action}`, undefined);
      notify(`${label}: job is ${j.requested ? `${j.status} (${j.requested} requested)` : j.status}.`);
      update();
    } catch (e) {
      notify(`${label} failed: ${errorText(e)}`, 'error');
    }
  };
  const bPause = btn('Pause', '', () => control('pause', 'Pause'), { id: 'btn-pause' });
  const bResume = btn('Resume', '', () => control('resume', 'Resume'), { id: 'btn-resume' });
  const bStop = btn('Stop and save', '', () => {
    if (confirm('Stop training now and keep the current weights as the model?')) control('stop', 'Stop and save');
  }, { id: 'btn-stop' });
  const bCancel = btn('Cancel job', 'btn-danger', () => {
    if (confirm('Cancel this job? Its checkpoints are discarded.')) control('cancel', 'Cancel');
  }, { id: 'btn-cancel' });
  const fmtSel = h('select', { id: 'adapter-format', 'aria-label': 'Adapter format' },
    h('option', { value: 'peft' }, 'PEFT (tar)'), h('option', { value: 'gguf' }, 'GGUF LoRA'),
    h('option', { value: 'merged' }, 'merged model (tar)'));
  const bDownload = btn('Download adapter', 'btn-primary', async () => {
    bDownload.disabled = true;
    try {
      const name = await download(`/jobs/${id}/adapter?format=${fmtSel.value}`, `${id}-${fmtSel.value}`);
      notify(`Downloaded ${name}.`);
    } catch (e) { notify(`Download failed: ${errorText(e)}`, 'error'); }
    bDownload.disabled = false;
  }, { id: 'btn-download' });
  const tryLink = h('a', { class: 'btn', id: 'btn-try' }, 'Try in playground');
  const controls = h('div', { class: 'row controls', role: 'group', 'aria-label': 'Job controls' },
    bPause, bResume, bStop, bCancel, h('span', { class: 'spacer' }), fmtSel, bDownload, tryLink);

  // ---------------------------------------------------------------- sections
  const info = h('div', {});
  const hp = h('div', {});
  const ckBody = h('div', {}, h('p', { class: 'muted' }, 'None yet.'));
  const reportBody = h('div', {}, h('p', { class: 'muted' }, 'Written when the job succeeds.'));
  const evList = h('ol', { class: 'events', id: 'events' });
  const showSteps = h('input', { type: 'checkbox', id: 'show-steps' });
  const evCount = h('span', { class: 'muted small' });
  const streamState = h('span', { class: 'muted small', id: 'stream-state' }, 'connecting…');

  main.append(
    h('p', { class: 'crumbs' }, h('a', { href: '#/jobs' }, '← All jobs')),
    h('div', { class: 'page-head' }, title, badge),
    note, errBox,
    h('div', { class: 'progress-line' }, bar, statsEl),
    controls,
    card('Loss', 'h-loss', h('p', { class: 'muted small' }, 'Live from the job’s event stream · ', streamState), chart.el),
    h('div', { class: 'grid2' },
      card('Details', 'h-details', info),
      card('Hyperparameters', 'h-hp', hp)),
    card('Checkpoints', 'h-ckpt', ckBody),
    card('Prompting vs finetuning', 'h-report', reportBody),
    card('Events', 'h-events',
      h('div', { class: 'row' }, h('label', { class: 'check' }, showSteps, ' show per-step events'), evCount),
      evList));

  // ---------------------------------------------------------------- render state
  function update() {
    const p = j.progress || {};
    clear(badge).append(statusBadge(j.status));
    if (j.requested) badge.append(' ', h('span', { class: 'badge' }, `${j.requested} requested`));
    const total = p.total_steps || 0;
    bar.max = total || 1;
    bar.value = p.step || (j.status === 'succeeded' ? bar.max : 0);
    stats.step.textContent = total ? `${p.step || 0} / ${total}` : '—';
    stats.epoch.textContent = p.epoch ?? '—';
    stats.loss.textContent = fmtLoss(p.train_loss);
    stats.vloss.textContent = fmtLoss(p.validation_loss);
    stats.tps.textContent = p.tokens_per_second ? fmtNum(Math.round(p.tokens_per_second)) : '—';
    stats.eta.textContent = j.status === 'running' ? fmtDuration(p.eta_seconds)
      : j.status === 'queued' && j.queue_position !== undefined ? `queued (#${j.queue_position + 1})` : '—';
    chart.setTotal(total);
    note.hidden = !j.note;
    note.textContent = j.note || '';
    errBox.hidden = !j.error;
    errBox.textContent = j.error ? `Failed: ${j.error.message} (${j.error.code})` : '';

    const s = j.status;
    bPause.hidden = !(s === 'queued' || s === 'running');
    bPause.disabled = j.requested === 'pause';
    bResume.hidden = s !== 'paused';
    bStop.hidden = !(s === 'running' || s === 'paused');
    bStop.disabled = j.requested === 'stop';
    bCancel.hidden = TERMINAL.has(s);
    const done = s === 'succeeded';
    fmtSel.hidden = !done; bDownload.hidden = !done; tryLink.hidden = !done;
    tryLink.href = `#/playground?models=${encodeURIComponent([j.base_model, j.model].join(','))}`;

    clear(info).append(dl([
      ['Model', h('span', { class: 'mono' }, j.model)],
      ['Base model', j.base_model],
      ['Dataset', h('span', { class: 'mono' }, j.dataset_id)],
      j.validation_dataset_id && ['Validation dataset', h('span', { class: 'mono' }, j.validation_dataset_id)],
      ['Created', fmtTime(j.created_at)],
      ['Started', fmtTime(j.started_at)],
      ['Finished', fmtTime(j.finished_at)],
      ['Priority', String(j.priority ?? 0)],
    ]));
    const hpo = j.hyperparameters || {};
    const auto = new Set(hpo.auto || []);
    clear(hp).append(dl(Object.entries(hpo).filter(([k]) => k !== 'auto').map(([k, v]) =>
      [k, `${Array.isArray(v) ? v.join(', ') : v}${auto.has(k) ? ' (auto)' : ''}`])));
  }

  async function loadCheckpoints() {
    try {
      const ck = await get(`/jobs/${id}/checkpoints`);
      clear(ckBody);
      if (!ck.data.length) { ckBody.append(h('p', { class: 'muted' }, 'None yet.')); return; }
      ckBody.append(h('div', { class: 'table-scroll' }, h('table', { class: 'table' },
        h('thead', {}, h('tr', {}, ['Step', 'Train loss', 'Val. loss', 'Val. accuracy', 'Model', ''].map((t) => h('th', { scope: 'col' }, t)))),
        h('tbody', {}, ck.data.map((c) => h('tr', {},
          h('td', { 'data-label': 'Step' }, String(c.step), c.best ? h('span', { class: 'badge status-succeeded' }, 'best') : null),
          h('td', { 'data-label': 'Train loss', class: 'num' }, fmtLoss(c.train_loss)),
          h('td', { 'data-label': 'Val. loss', class: 'num' }, fmtLoss(c.val_loss)),
          h('td', { 'data-label': 'Val. accuracy', class: 'num' }, c.val_accuracy == null ? '—' : c.val_accuracy.toFixed(3)),
          h('td', { 'data-label': 'Model', class: 'mono small' }, c.model),
          h('td', {}, h('a', { href: `#/playground?models=${encodeURIComponent([j.base_model, c.model].join(','))}` }, 'Try')))))))); 
    } catch (e) {
      clear(ckBody).append(h('p', { class: 'error' }, errorText(e)));
    }
  }

  async function loadReport() {
    if (j.status !== 'succeeded') return;
    try {
      const r = await get(`/jobs/${id}/report`);
      clear(reportBody);
      const names = { base: 'base, plain prompt', k_shot: `base, ${r.k_shot}-shot prompt`, tuned: 'tuned' };
      const v = r.variants || {};
      const metrics = [['loss', 'completion loss', (x) => x.toFixed(3)], ['token_accuracy', 'token accuracy', (x) => x.toFixed(3)],
        ['exact_match', 'exact match', (x) => x.toFixed(2)], ['contains_match', 'contains match', (x) => x.toFixed(2)],
        ['word_f1', 'word F1', (x) => x.toFixed(3)]];
      const best = {};
      for (const [k] of metrics) {
        const vals = Object.keys(names).map((n) => v[n]?.[k]).filter((x) => x !== undefined);
        best[k] = k === 'loss' ? Math.min(...vals) : Math.max(...vals);
      }
      reportBody.append(
        h('p', {}, `On ${r.examples_loss} ${r.source} examples (${r.examples_generated} generated). Best by loss: `,
          h('strong', {}, names[r.best_by_loss] || r.best_by_loss), '.'),
        r.note ? h('p', { class: 'note' }, r.note) : '',
        h('div', { class: 'table-scroll' }, h('table', { class: 'table', id: 'report-table' },
          h('thead', {}, h('tr', {}, h('th', { scope: 'col' }, ''), metrics.map(([, t]) => h('th', { scope: 'col', class: 'num' }, t)))),
          h('tbody', {}, Object.entries(names).filter(([n]) => v[n]).map(([n, label]) => h('tr', {},
            h('th', { scope: 'row' }, label),
            metrics.map(([k, , f]) => h('td', { class: 'num' + (v[n][k] === best[k] && k !== 'exact_match' && k !== 'contains_match' ? ' best' : '') }, f(v[n][k])))))))));
      for (const ex of (r.examples || []).slice(0, 3)) {
        const prompt = typeof ex.prompt === 'string' ? ex.prompt : JSON.stringify(ex.prompt);
        reportBody.append(h('div', { class: 'example' },
          h('p', {}, h('strong', {}, 'Prompt: '), h('span', { class: 'pre' }, prompt || '(empty)')),
          h('div', { class: 'cols' },
            [['expected', 'Expected'], ['base', names.base], ['k_shot', names.k_shot], ['tuned', 'Tuned']].map(([k, t]) =>
              h('div', { class: `col col-${k}` }, h('h3', {}, t), h('p', { class: 'pre' }, ex[k] || ''))))));
      }
    } catch (e) {
      if (e.status !== 409) clear(reportBody).append(h('p', { class: 'muted' }, errorText(e)));
    }
  }

  // ---------------------------------------------------------------- events
  let nEvents = 0;
  const stepLis = [];
  function addEvent(ev) {
    nEvents += 1;
    if (ev.type === 'step' && ev.data) {
      chart.addTrain(ev.data.step, ev.data.train_loss);
      if (ev.data.val_loss !== undefined) chart.addVal(ev.data.step, ev.data.val_loss);
      if (ev.data.total_steps) chart.setTotal(ev.data.total_steps);
      if (!TERMINAL.has(j.status)) {
        const p = j.progress || (j.progress = {});
        p.step = ev.data.step; p.total_steps = ev.data.total_steps; p.train_loss = ev.data.train_loss;
        if (ev.data.val_loss !== undefined) p.validation_loss = ev.data.val_loss;
        p.tokens_per_second = ev.data.tokens_per_second; p.epoch = ev.data.epoch;
        if (j.status === 'queued') j.status = 'running';
        scheduleUpdate();
      }
    }
    const li = h('li', { class: `ev ev-${ev.type} lvl-${ev.level}`, dataset: { type: ev.type } },
      h('time', { datetime: new Date(ev.created_at * 1000).toISOString() }, new Date(ev.created_at * 1000).toLocaleTimeString()),
      h('span', { class: 'ev-type' }, ev.type), h('span', { class: 'ev-msg' }, ev.message));
    li.hidden = ev.type === 'step' && !showSteps.checked;
    evList.append(li);
    if (ev.type === 'step') {
      stepLis.push(li);
      if (stepLis.length > MAX_STEP_EVENTS_SHOWN) stepLis.shift().remove();
    }
    evCount.textContent = `${nEvents} events`;
    if (ev.type === 'status' || ev.type === 'checkpoint' || ev.type === 'report') refreshSoon();
  }
  showSteps.addEventListener('change', () => {
    for (const li of evList.children) if (li.dataset.type === 'step') li.hidden = !showSteps.checked;
  });

  let upPending = false;
  function scheduleUpdate() {
    if (upPending) return;
    upPending = true;
    requestAnimationFrame(() => { upPending = false; if (alive) update(); });
  }

  let refreshTimer = null;
  function refreshSoon() {
    clearTimeout(refreshTimer);
    refreshTimer = setTimeout(() => refresh(true), 150);
  }
  async function refresh(withCheckpoints = true) {
    if (!alive) return;
    try {
      const was = j.status;
      j = await get(`/jobs/${id}`);
      update();
      if (withCheckpoints || j.status !== was) loadCheckpoints();
      if (j.status === 'succeeded' && was !== 'succeeded') loadReport();
    } catch (e) { /* keep the last state; the stream reports problems */ }
  }

  update();
  loadCheckpoints();
  loadReport();
  const follower = followJob(id, addEvent, {
    isEnded: () => TERMINAL.has(j.status),
    onOpen: () => { streamState.textContent = 'connected'; },
    onReconnect: () => { streamState.textContent = 'reconnecting…'; refresh(); },
    onError: (e) => { streamState.textContent = `stream error: ${errorText(e)}`; },
    onEnd: () => { streamState.textContent = 'job ended; stream closed'; refresh(); },
  });
  // ETA and queue position only come with the job object.
  const poll = setInterval(() => { if (!TERMINAL.has(j.status) && !document.hidden) refresh(false); }, 2000);
  return () => { alive = false; follower.stop(); clearInterval(poll); clearTimeout(refreshTimer); chart.destroy(); };
}
