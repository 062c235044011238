// SPDX-License-Identifier: MIT
// New job: a JSONL file (drag and drop or the file picker) or an uploaded
// dataset, a base model and settings. Every choice is checked by a dry run
// (POST /jobs?dry_run=true, which validates and measures without storing
// anything), so a bad line is shown with its number, and the time and memory
// estimate, before anything is queued. Start sends the same request for real.

import { get, api, qs } from './api.js';
import { h, clear, field, fmtBytes, fmtDuration, fmtNum, fmtParams, errorText, debounce } from './util.js';

// name, label, kind, placeholder (the default), hint
const BASIC = [
  ['epochs', 'Epochs', 'auto', '3', '1–100, or “auto”'],
  ['learning_rate', 'Learning rate', 'auto', '0.001', 'or “auto”'],
  ['batch_size', 'Batch size', 'auto', '4', '1–256, or “auto”'],
  ['lora_rank', 'LoRA rank', 'int', '8'],
  ['lora_alpha', 'LoRA alpha', 'num', '16'],
  ['max_seq_len', 'Max sequence length', 'int', '256'],
  ['validation_split', 'Validation split', 'num', '0', '0–0.5: share held out'],
];
const ADVANCED = [
  ['grad_accum', 'Gradient accumulation', 'int', '1'],
  ['warmup_steps', 'Warmup steps', 'int', '0'],
  ['lr_schedule', 'LR schedule', ['', 'cosine', 'linear', 'constant'], 'cosine'],
  ['min_lr_ratio', 'Min LR ratio', 'num', '0.1'],
  ['weight_decay', 'Weight decay', 'num', '0'],
  ['lora_dropout', 'LoRA dropout', 'num', '0'],
  ['max_grad_norm', 'Max grad norm', 'num', '1.0'],
  ['target_modules', 'Target modules', 'text', 'q,k,v,o', 'comma-separated, or “all”'],
  ['seed', 'Seed', 'int', '42'],
  ['eval_every', 'Evaluate every (steps)', 'int', '0', '0: about ten times a run'],
  ['checkpoint_every', 'Checkpoint every (steps)', 'int', '0', '0: at every evaluation'],
  ['keep_checkpoints', 'Keep checkpoints', 'int', '2'],
  ['early_stopping_patience', 'Early stopping patience', 'int', '0', '0: off'],
  ['packing', 'Pack examples', 'bool'],
];

function input(spec) {
  const [name, , kind, ph] = spec;
  if (Array.isArray(kind)) {
    return h('select', { name }, kind.map((o) => h('option', { value: o }, o || `default (${ph})`)));
  }
  if (kind === 'bool') return h('input', { type: 'checkbox', name });
  const attrs = { name, placeholder: ph, autocomplete: 'off' };
  if (kind === 'int' || kind === 'num') Object.assign(attrs, { type: 'number', step: kind === 'int' ? 1 : 'any', inputmode: 'decimal' });
  else attrs.type = 'text';
  return h('input', attrs);
}

export async function render(main) {
  let file = null;
  let lastOk = null; // the settings key of the last good preflight
  let seq = 0;
  let autoSuffix = ''; // the suffix the page chose from a file name

  // ---------------------------------------------------------------- dataset
  const fileInput = h('input', { type: 'file', id: 'file', accept: '.jsonl,.ndjson,.json,.txt,application/jsonl,application/x-ndjson' });
  const fileInfo = h('p', { class: 'muted', id: 'file-info', 'aria-live': 'polite' }, 'No file chosen.');
  const drop = h('div', { class: 'drop', id: 'drop' },
    h('p', {}, h('strong', {}, 'Drop a JSONL file here'), ' or ', h('label', { for: 'file', class: 'linklike' }, 'choose one'), ':'),
    fileInput,
    h('p', { class: 'muted small' }, 'One JSON object per line: {"prompt","completion"}, {"input","output"}, {"messages"} or {"text"}.'),
    fileInfo);
  const dsSelect = h('select', { id: 'dataset' }, h('option', { value: '' }, '— upload a file above —'));
  const { wrap: dsWrap } = field('Or an uploaded dataset', dsSelect);

  // ---------------------------------------------------------------- settings
  const baseSel = h('select', { id: 'base-model', name: 'base_model' });
  const suffix = h('input', { type: 'text', id: 'suffix', name: 'suffix', placeholder: 'e.g. zog', maxlength: 40, pattern: '[A-Za-z0-9._-]{1,40}' });
  const inputs = {};
  const mk = (spec) => {
    const el = input(spec);
    inputs[spec[0]] = { el, kind: spec[2] };
    if (spec[2] === 'bool') {
      return h('div', { class: 'field check' }, h('label', {}, el, ` ${spec[1]}`));
    }
    return field(spec[1], el, spec[4]).wrap;
  };
  const form = h('form', { class: 'settings', id: 'job-form', novalidate: true },
    h('div', { class: 'fields' },
      field('Base model', baseSel).wrap,
      field('Suffix', suffix, 'goes into the model name').wrap,
      BASIC.map(mk)),
    h('details', {}, h('summary', {}, 'More settings'), h('div', { class: 'fields' }, ADVANCED.map(mk))));

  // ---------------------------------------------------------------- results
  const result = h('div', { id: 'preflight', 'aria-live': 'polite' });
  const checkBtn = h('button', { type: 'button', id: 'btn-check' }, 'Check and estimate');
  const startBtn = h('button', { type: 'button', class: 'btn-primary', id: 'btn-start', disabled: true }, 'Start job');

  main.append(
    h('h1', {}, 'New finetuning job'),
    h('section', { class: 'card', 'aria-labelledby': 'h-data' }, h('h2', { id: 'h-data' }, '1. Training data'), drop, dsWrap),
    h('section', { class: 'card', 'aria-labelledby': 'h-set' }, h('h2', { id: 'h-set' }, '2. Base model and settings'),
      h('p', { class: 'muted small' }, 'Empty fields use the defaults shown.'), form),
    h('section', { class: 'card', 'aria-labelledby': 'h-pre' }, h('h2', { id: 'h-pre' }, '3. Check and start'),
      h('p', { class: 'muted small' }, 'The check validates every line and runs a few real training steps to estimate time and memory; nothing is stored or queued.'),
      result, h('div', { class: 'row' }, checkBtn, startBtn)));

  // models and datasets
  try {
    const ms = await get('/models');
    for (const m of ms.data.filter((x) => x.type === 'base')) {
      const desc = [m.parameters ? fmtParams(m.parameters) : null, m.status === 'error' ? 'error' : null].filter(Boolean).join(', ');
      baseSel.append(h('option', { value: m.id, disabled: m.status === 'error' }, desc ? `${m.id} (${desc})` : m.id));
    }
  } catch (e) {
    result.append(h('p', { class: 'error' }, `Could not list the models: ${errorText(e)}`));
  }
  get('/datasets?limit=100').then((ds) => {
    for (const d of ds.data) {
      dsSelect.append(h('option', { value: d.id }, `${d.name || d.id} — ${d.rows} rows, ${d.format}`));
    }
  }).catch(() => {});

  function settings() {
    const s = {};
    for (const [name, { el, kind }] of Object.entries(inputs)) {
      if (kind === 'bool') { if (el.checked) s[name] = true; continue; }
      const v = el.value.trim();
      if (v === '') continue;
      if (kind === 'auto') s[name] = v === 'auto' ? 'auto' : Number(v);
      else if (kind === 'int' || kind === 'num') s[name] = Number(v);
      else s[name] = v;
    }
    return s;
  }

  function request(dry) {
    const s = settings();
    const base = baseSel.value;
    if (file) {
      const q = Object.assign({ base_model: base, suffix: suffix.value.trim(), name: file.name }, s);
      if (dry) q.dry_run = 'true';
      return { path: `/jobs${qs(q)}`, opts: { body: file, contentType: 'application/x-ndjson' } };
    }
    const body = { base_model: base, dataset_id: dsSelect.value };
    if (suffix.value.trim()) body.suffix = suffix.value.trim();
    if (s.validation_split !== undefined) { body.validation_split = s.validation_split; delete s.validation_split; }
    body.hyperparameters = s;
    if (dry) body.dry_run = true;
    return { path: '/jobs', opts: { json: body } };
  }

  const key = () => JSON.stringify([file && [file.name, file.size, file.lastModified], dsSelect.value, baseSel.value, suffix.value, settings()]);
  const haveData = () => !!file || !!dsSelect.value;

  async function showError(e) {
    const box = h('div', { class: 'error-box', role: 'alert', id: 'dataset-error' });
    if (e.line) {
      box.append(h('p', {}, h('strong', {}, `Line ${e.line}: `), e.message.replace(/^line \d+: /, '')));
      if (file) {
        const lines = (await file.slice(0, 8 << 20).text()).split(/\r\n|\n|\r/);
        const from = Math.max(1, e.line - 2);
        const to = Math.min(lines.length, e.line + 1);
        const ol = h('ol', { class: 'excerpt', start: from });
        for (let n = from; n <= to; n += 1) {
          const t = lines[n - 1] ?? '';
          ol.append(h('li', { class: n === e.line ? 'bad' : '', 'aria-current': n === e.line ? 'true' : null },
            t.length > 300 ? t.slice(0, 300) + '…' : t || ' '));
        }
        box.append(h('p', { class: 'muted small' }, `${file.name}, around line ${e.line}:`), ol);
      }
    } else {
      box.append(h('p', {}, h('strong', {}, 'Not accepted: '), errorText(e)));
    }
    box.append(h('p', { class: 'muted small' }, 'Nothing was stored or queued.'));
    clear(result).append(box);
  }

  function showPreflight(p) {
    const t = p.estimate?.time || {};
    const ram = p.estimate?.ram || {};
    const hp = p.hyperparameters || {};
    const auto = new Set(hp.auto || []);
    const trunc = p.truncated_examples || 0;
    clear(result).append(h('div', { class: 'ok-box', id: 'preflight-ok' },
      h('p', {}, h('strong', {}, 'Looks good. '), `${fmtNum(p.examples.total)} ${p.format} examples`,
        ` (${fmtNum(p.examples.train)} for training, ${fmtNum(p.examples.validation)} for validation), `,
        `${fmtNum(p.tokens.total)} tokens.`),
      h('dl', { class: 'stats big' },
        h('div', {}, h('dt', {}, 'Estimated time'), h('dd', { id: 'est-time' }, fmtDuration(p.estimated_seconds))),
        h('div', {}, h('dt', {}, 'Estimated memory'), h('dd', { id: 'est-ram' }, fmtBytes(p.estimated_ram_bytes))),
        h('div', {}, h('dt', {}, 'Steps'), h('dd', {}, `${fmtNum(p.total_steps)} (${p.steps_per_epoch} × ${p.epochs} epochs)`)),
        h('div', {}, h('dt', {}, 'Tokens trained'), h('dd', {}, fmtNum(p.tokens.trained)))),
      h('p', { class: 'muted small' },
        `Time measured over ${t.measured_steps ?? '?'} real steps at ${fmtNum(Math.round(t.tokens_per_second || 0))} tokens/s on ${t.threads ?? '?'} thread(s). `,
        `Memory: model ${fmtBytes(ram.model_bytes)} (shared by jobs of this base) + trainer ${fmtBytes(ram.trainer_bytes)}.`),
      trunc ? h('p', { class: 'warn' }, `${trunc} examples are longer than max_seq_len ${p.max_seq_len} and will be cut.`) : null,
      h('p', { class: 'small' }, 'Settings: ', Object.entries(hp).filter(([k]) => k !== 'auto' && ['epochs', 'learning_rate', 'batch_size', 'lora_rank', 'lora_alpha', 'max_seq_len'].includes(k))
        .map(([k, v]) => `${k} ${v}${auto.has(k) ? ' (auto)' : ''}`).join(' · '))));
  }

  async function preflight() {
    if (!haveData()) { startBtn.disabled = true; return; }
    const my = ++seq;
    const k = key();
    clear(result).append(h('p', { class: 'muted', id: 'checking' }, h('span', { class: 'spinner', 'aria-hidden': 'true' }), ' Checking every line and measuring a few training steps…'));
    checkBtn.disabled = true;
    try {
      const { path, opts } = request(true);
      const p = await api('POST', path, opts);
      if (my !== seq) return;
      showPreflight(p);
      lastOk = k;
    } catch (e) {
      if (my !== seq) return;
      lastOk = null;
      await showError(e);
    } finally {
      if (my === seq) { checkBtn.disabled = false; startBtn.disabled = lastOk !== key(); }
    }
  }
  const preflightSoon = debounce(preflight, 700);

  function setFile(f) {
    file = f;
    if (f) {
      dsSelect.value = '';
      fileInfo.textContent = `${f.name} · ${fmtBytes(f.size)}`;
      if (!suffix.value || suffix.value === autoSuffix) {
        const s = f.name.replace(/\.[^.]*$/, '').replace(/[^A-Za-z0-9._-]/g, '-').slice(0, 40);
        autoSuffix = /^[A-Za-z0-9._-]{1,40}$/.test(s) ? s : '';
        suffix.value = autoSuffix;
      }
    } else {
      fileInfo.textContent = 'No file chosen.';
    }
    preflight();
  }

  fileInput.addEventListener('change', () => setFile(fileInput.files[0] || null));
  for (const ev of ['dragenter', 'dragover']) {
    drop.addEventListener(ev, (e) => { e.preventDefault(); drop.classList.add('over'); });
  }
  for (const ev of ['dragleave', 'drop']) {
    drop.addEventListener(ev, () => drop.classList.remove('over'));
  }
  drop.addEventListener('drop', (e) => {
    e.preventDefault();
    const f = e.dataTransfer.files[0];
    if (!f) return;
    try { fileInput.files = e.dataTransfer.files; } catch { fileInput.value = ''; }
    setFile(f);
  });
  dsSelect.addEventListener('change', () => {
    if (dsSelect.value) { file = null; fileInput.value = ''; fileInfo.textContent = 'Using an uploaded dataset.'; }
    preflight();
  });
  baseSel.addEventListener('change', preflight);
  form.addEventListener('input', () => { startBtn.disabled = true; if (haveData()) preflightSoon(); });
  form.addEventListener('submit', (e) => { e.preventDefault(); preflight(); });
  checkBtn.addEventListener('click', preflight);
  startBtn.addEventListener('click', async () => {
    startBtn.disabled = true;
    try {
      const { path, opts } = request(false);
      const j = await api('POST', path, opts);
      location.hash = `#/jobs/${j.id}`;
    } catch (e) {
      await showError(e);
      startBtn.disabled = false;
    }
  });
  return () => { seq = -1; };
}
