// SPDX-License-Identifier: MIT
// Playground: one prompt, several models (base, tuned, checkpoints,
// adapters) answering side by side, each streamed from POST /generate with
// "stream": true, with the same sampling settings (and seed) for all.

import { get } from './api.js';
import { postStream } from './sse.js';
import { h, clear, field, errorText, fmtNum } from './util.js';

const GROUPS = [['base', 'Base models'], ['finetuned', 'Tuned models'], ['checkpoint', 'Checkpoints'], ['adapter', 'Imported adapters'], ['lora', 'Loaded LoRA adapters']];

export async function render(main, _params, query) {
  const prompt = h('textarea', { id: 'prompt', rows: 4, placeholder: 'Once upon a time' }, '');
  prompt.value = query.prompt || 'Once upon a time';
  const modelBox = h('fieldset', { class: 'models-pick', id: 'model-pick' }, h('legend', {}, 'Models'));
  const num = (name, value, attrs) => h('input', Object.assign({ type: 'number', name, value, step: 'any', inputmode: 'decimal' }, attrs));
  const maxTokens = num('max_tokens', 64, { min: 1, max: 2048, step: 1 });
  const temperature = num('temperature', 0.8, { min: 0, max: 2 });
  const topP = num('top_p', 0.95, { min: 0, max: 1 });
  const topK = num('top_k', 0, { min: 0, step: 1 });
  const seed = num('seed', '', { min: 0, step: 1, placeholder: 'random' });
  const stop = h('input', { type: 'text', name: 'stop', placeholder: 'e.g. \\n\\n', autocomplete: 'off' });
  const runBtn = h('button', { type: 'submit', class: 'btn-primary', id: 'btn-generate' }, 'Generate');
  const stopBtn = h('button', { type: 'button', id: 'btn-abort', disabled: true }, 'Stop');
  const outputs = h('div', { class: 'answers', id: 'answers' });
  const form = h('form', { class: 'play', id: 'play-form', novalidate: true },
    field('Prompt', prompt, 'Ctrl+Enter generates').wrap,
    modelBox,
    h('fieldset', { class: 'sampling' }, h('legend', {}, 'Sampling (same for every model)'),
      h('div', { class: 'fields' },
        field('Max tokens', maxTokens).wrap, field('Temperature', temperature, '0 = greedy').wrap,
        field('Top p', topP).wrap, field('Top k', topK, '0 = off').wrap,
        field('Seed', seed, 'same seed, same text').wrap, field('Stop at', stop, 'one string; \\n for newline').wrap)),
    h('div', { class: 'row' }, runBtn, stopBtn));
  main.append(h('h1', {}, 'Playground'), form, outputs);

  let models = [];
  try {
    models = (await get('/models')).data.filter((m) => m.status !== 'error');
  } catch (e) {
    modelBox.append(h('p', { class: 'error' }, `Could not list the models: ${errorText(e)}`));
  }
  const want = new Set((query.models || '').split(',').filter(Boolean));
  if (!want.size) {
    const b = models.find((m) => m.type === 'base');
    const t = models.find((m) => m.type === 'finetuned');
    if (b) want.add(b.id);
    if (t) want.add(t.id);
  }
  for (const [type, label] of GROUPS) {
    const ms = models.filter((m) => (m.type || 'base') === type);
    if (!ms.length) continue;
    modelBox.append(h('div', { class: 'pick-group' }, h('h3', {}, label),
      ms.map((m) => {
        // A job's model may be named by its job id too (query ?models=job_...).
        const on = want.has(m.id) || (m.job && want.has(m.job) && type === 'finetuned');
        return h('label', { class: 'check' },
          h('input', { type: 'checkbox', name: 'model', value: m.id, checked: on }),
          ' ', h('span', { class: type === 'base' ? '' : 'mono small' }, m.id));
      })));
  }
  // Models named in the link but not listed (e.g. a checkpoint just made).
  for (const id of want) {
    if (!models.some((m) => m.id === id || m.job === id)) {
      modelBox.append(h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'model', value: id, checked: true }), ' ', h('span', { class: 'mono small' }, id)));
    }
  }

  let ctl = null;

  async function runOne(model, body, col) {
    const text = col.querySelector('.answer-text');
    const meta = col.querySelector('.answer-meta');
    const t0 = performance.now();
    let tFirst = null;
    let n = 0;
    col.setAttribute('aria-busy', 'true');
    col.classList.add('streaming');
    try {
      await postStream('/generate', Object.assign({ model, stream: true }, body), (d) => {
        if (d.error) throw Object.assign(new Error(d.error.message || d.error.code), { code: d.error.code });
        if (d.text) {
          if (tFirst === null) tFirst = performance.now();
          text.append(d.text);
          n += 1;
        }
        if (d.finish_reason) {
          const s = (performance.now() - t0) / 1000;
          const toks = d.usage?.completion_tokens ?? n;
          meta.textContent = `${toks} tokens · ${s.toFixed(2)} s · ${fmtNum(Math.round(toks / Math.max(s, 1e-3)))} tokens/s · ${d.finish_reason}` +
            (tFirst !== null ? ` · first text after ${Math.round(tFirst - t0)} ms` : '');
          col.dataset.done = 'true';
        }
      }, ctl.signal);
      if (!col.dataset.done) { col.dataset.done = 'true'; meta.textContent = 'done'; }
    } catch (e) {
      meta.textContent = e.name === 'AbortError' ? 'stopped' : '';
      if (e.name !== 'AbortError') col.append(h('p', { class: 'error' }, errorText(e)));
      col.dataset.done = 'error';
    } finally {
      col.removeAttribute('aria-busy');
      col.classList.remove('streaming');
    }
  }

  async function generate() {
    const chosen = [...modelBox.querySelectorAll('input[name=model]:checked')].map((i) => i.value);
    clear(outputs);
    if (!chosen.length) { outputs.append(h('p', { class: 'error', role: 'alert' }, 'Choose at least one model.')); return; }
    const body = {
      prompt: prompt.value,
      max_tokens: Number(maxTokens.value) || 64,
      temperature: Number(temperature.value),
      top_p: Number(topP.value) || 1,
      top_k: Number(topK.value) || 0,
    };
    if (seed.value !== '') body.seed = Number(seed.value);
    else body.seed = Math.floor(Math.random() * 1e9); // one seed for all: a fair comparison
    if (stop.value) body.stop = stop.value.replace(/\\n/g, '\n').replace(/\\t/g, '\t');
    ctl = new AbortController();
    runBtn.disabled = true;
    stopBtn.disabled = false;
    const cols = chosen.map((m) => {
      const col = h('article', { class: 'answer card', dataset: { model: m } },
        h('h2', { class: 'answer-model' }, m),
        h('p', { class: 'answer-text pre' }, h('span', { class: 'prompt-echo' }, body.prompt)),
        h('p', { class: 'answer-meta muted small' }, 'waiting…'));
      outputs.append(col);
      return col;
    });
    outputs.append(h('p', { class: 'muted small seed-note' }, `seed ${body.seed}, temperature ${body.temperature}`));
    await Promise.all(chosen.map((m, i) => runOne(m, body, cols[i])));
    runBtn.disabled = false;
    stopBtn.disabled = true;
  }

  form.addEventListener('submit', (e) => { e.preventDefault(); generate(); });
  prompt.addEventListener('keydown', (e) => {
    if (e.key === 'Enter' && (e.ctrlKey || e.metaKey)) { e.preventDefault(); if (!runBtn.disabled) generate(); }
  });
  stopBtn.addEventListener('click', () => ctl && ctl.abort());
  return () => ctl && ctl.abort();
}
