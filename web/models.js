// SPDX-License-Identifier: MIT
// Models: base models (from --models-dir and the embedded one), imported
// adapters, tuned models and their checkpoints. Rescan, import a PEFT
// adapter, remove one; load/unload an adapter by path where the daemon
// has /v1/load_lora_adapter and /v1/unload_lora_adapter.

import { get, post, api, del, hasRoute, qs, download } from './api.js';
import { h, clear, field, fmtParams, fmtTime, notify, errorText } from './util.js';

function table(caption, cols, rows) {
  return h('div', { class: 'table-scroll' }, h('table', { class: 'table' },
    h('caption', { class: 'sr-only' }, caption),
    h('thead', {}, h('tr', {}, cols.map((c) => h('th', { scope: 'col' }, c)))),
    h('tbody', {}, rows)));
}

export async function render(main) {
  const body = h('div', {});
  const rescan = h('button', { type: 'button', id: 'btn-rescan' }, 'Rescan models folder');
  main.append(h('div', { class: 'page-head' }, h('h1', {}, 'Models'), rescan), body);
  const [canLoad, canUnload] = await Promise.all([hasRoute('/v1/load_lora_adapter'), hasRoute('/v1/unload_lora_adapter')]);

  async function load() {
    let ms;
    try {
      ms = (await get('/models')).data;
    } catch (e) {
      clear(body).append(h('p', { class: 'error', role: 'alert' }, `Could not list the models: ${errorText(e)}`));
      return;
    }
    clear(body);
    const bases = ms.filter((m) => m.type === 'base');
    const adapters = ms.filter((m) => m.type === 'adapter');
    const tuned = ms.filter((m) => m.type === 'finetuned');
    const ckpts = ms.filter((m) => m.type === 'checkpoint');
    const loras = ms.filter((m) => m.type === 'lora');
    const playLink = (ids) => h('a', { href: `#/playground?models=${encodeURIComponent(ids.join(','))}` }, 'Try');

    body.append(h('section', { class: 'card', 'aria-labelledby': 'h-base' }, h('h2', { id: 'h-base' }, `Base models (${bases.length})`),
      table('Base models', ['Name', 'Status', 'Architecture', 'Parameters', 'Context', 'Dtype', 'Format', 'Chat template', ''],
        bases.map((m) => h('tr', {},
          h('th', { scope: 'row', 'data-label': 'Name' }, m.id),
          h('td', { 'data-label': 'Status' }, h('span', { class: `badge model-${m.status}` }, m.status),
            m.error ? h('div', { class: 'small error' }, m.error) : null),
          h('td', { 'data-label': 'Architecture' }, m.architecture || '—'),
          h('td', { 'data-label': 'Parameters', class: 'num' }, fmtParams(m.parameters)),
          h('td', { 'data-label': 'Context', class: 'num' }, m.context_length ?? '—'),
          h('td', { 'data-label': 'Dtype' }, m.dtype || '—'),
          h('td', { 'data-label': 'Format' }, m.format || '—'),
          h('td', { 'data-label': 'Chat template' }, m.chat_template ? (m.chat_template_family || 'yes') : 'no'),
          h('td', {}, m.status !== 'error' ? playLink([m.id]) : null))))));

    const unload = async (name) => {
      try {
        await post('/v1/unload_lora_adapter', { lora_name: name });
        notify(`Unloaded ${name}.`);
        load();
      } catch (e) { notify(`Unload failed: ${errorText(e)}`, 'error'); }
    };
    const remove = async (name) => {
      if (!confirm(`Remove the imported adapter ${name}?`)) return;
      try {
        await del(`/adapters/${encodeURIComponent(name)}`);
        notify(`Removed ${name}.`);
        load();
      } catch (e) { notify(`Remove failed: ${errorText(e)}`, 'error'); }
    };
    body.append(h('section', { class: 'card', 'aria-labelledby': 'h-adapters' }, h('h2', { id: 'h-adapters' }, `Imported adapters (${adapters.length})`),
      adapters.length ? table('Adapters', ['Name', 'Base', 'Rank', 'Alpha', 'Added', ''],
        adapters.map((m) => h('tr', {},
          h('th', { scope: 'row', 'data-label': 'Name' }, m.id),
          h('td', { 'data-label': 'Base' }, m.base || '—'),
          h('td', { 'data-label': 'Rank', class: 'num' }, m.rank ?? '—'),
          h('td', { 'data-label': 'Alpha', class: 'num' }, m.alpha ?? '—'),
          h('td', { 'data-label': 'Added' }, fmtTime(m.created_at)),
          h('td', {}, h('div', { class: 'row' }, playLink([m.base, m.id].filter(Boolean)),
            h('button', { type: 'button', class: 'btn-danger', onclick: () => remove(m.id) }, 'Remove'))))))
        : h('p', { class: 'muted' }, 'No adapters imported. Import a PEFT adapter below.'),
      importForm(bases, load)));

    if (canLoad || loras.length) {
      body.append(h('section', { class: 'card', 'aria-labelledby': 'h-loras', id: 'loras' }, h('h2', { id: 'h-loras' }, `Loaded LoRA adapters (${loras.length})`),
        h('p', { class: 'muted small' }, 'Adapter folders on the server (under the data dir, the models dir or --lora-dirs) loaded by name into memory; admin keys only.'),
        loras.length ? table('Loaded LoRA adapters', ['Name', 'Base', 'Path', ''],
          loras.map((m) => h('tr', { dataset: { lora: m.id } },
            h('th', { scope: 'row', 'data-label': 'Name' }, m.id),
            h('td', { 'data-label': 'Base' }, m.base || '—'),
            h('td', { 'data-label': 'Path', class: 'mono small' }, m.path || '—'),
            h('td', {}, h('div', { class: 'row' }, playLink([m.base, m.id].filter(Boolean)),
              canUnload ? h('button', { type: 'button', onclick: () => unload(m.id) }, `Unload ${m.id}`) : null)))))
          : h('p', { class: 'muted' }, 'None loaded.'),
        canLoad ? loadForm(bases, load) : null));
    }

    body.append(h('section', { class: 'card', 'aria-labelledby': 'h-tuned' }, h('h2', { id: 'h-tuned' }, `Tuned models (${tuned.length})`),
      tuned.length ? table('Tuned models', ['Model', 'Base', 'Job', 'Created', ''],
        tuned.map((m) => h('tr', {},
          h('th', { scope: 'row', 'data-label': 'Model', class: 'mono small' }, m.id),
          h('td', { 'data-label': 'Base' }, m.base),
          h('td', { 'data-label': 'Job' }, m.job ? h('a', { href: `#/jobs/${m.job}`, class: 'mono small' }, m.job) : '—'),
          h('td', { 'data-label': 'Created' }, fmtTime(m.created_at)),
          h('td', {}, h('div', { class: 'row' }, playLink([m.base, m.id]),
            m.job ? h('button', { type: 'button', onclick: async () => {
              try { notify(`Downloaded ${await download(`/jobs/${m.job}/adapter?format=peft`, `${m.job}-peft.tar`)}.`); } catch (e) { notify(errorText(e), 'error'); }
            } }, 'Download') : null)))))
        : h('p', { class: 'muted' }, 'None yet: ', h('a', { href: '#/new' }, 'start a job'), '.')));

    if (ckpts.length) {
      body.append(h('section', { class: 'card', 'aria-labelledby': 'h-ck' }, h('h2', { id: 'h-ck' }, `Checkpoints (${ckpts.length})`),
        table('Checkpoints', ['Model', 'Base', 'Job', ''],
          ckpts.map((m) => h('tr', {},
            h('th', { scope: 'row', 'data-label': 'Model', class: 'mono small' }, m.id),
            h('td', { 'data-label': 'Base' }, m.base || '—'),
            h('td', { 'data-label': 'Job' }, m.job ? h('a', { href: `#/jobs/${m.job}`, class: 'mono small' }, m.job) : '—'),
            h('td', {}, playLink([m.base, m.id].filter(Boolean))))))));
    }
  }

  rescan.addEventListener('click', async () => {
    rescan.disabled = true;
    try {
      const r = await post('/models/rescan', undefined);
      notify(`Rescanned: ${r.added} added, ${r.removed} removed.`);
      await load();
    } catch (e) { notify(`Rescan failed: ${errorText(e)}`, 'error'); }
    rescan.disabled = false;
  });
  await load();
}

function baseSelect(bases, withAuto) {
  return h('select', {}, withAuto ? h('option', { value: '' }, 'from the adapter config') : null,
    bases.filter((m) => m.status !== 'error').map((m) => h('option', { value: m.id }, m.id)));
}

function importForm(bases, reload) {
  const name = h('input', { type: 'text', required: true, pattern: '[A-Za-z0-9_][A-Za-z0-9._-]{0,99}', autocomplete: 'off' });
  const base = baseSelect(bases, true);
  const file = h('input', { type: 'file', accept: '.tar,application/x-tar', required: true });
  const out = h('p', { 'aria-live': 'polite' });
  const form = h('form', { class: 'inline-form' },
    h('h3', {}, 'Import a PEFT adapter'),
    h('div', { class: 'fields' }, field('Name', name).wrap, field('Base model', base).wrap,
      field('Adapter (.tar with adapter_config.json and adapter_model.safetensors)', file).wrap),
    h('button', { type: 'submit' }, 'Import'), out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!file.files[0]) { out.textContent = 'Choose a .tar file.'; return; }
    out.textContent = 'Importing…';
    try {
      const r = await api('POST', `/adapters${qs({ name: name.value.trim(), base_model: base.value })}`,
        { body: file.files[0], contentType: 'application/x-tar' });
      notify(`Imported ${r.id} (rank ${r.rank}) on ${r.base}.`);
      reload();
    } catch (err) { out.textContent = errorText(err); out.className = 'error'; }
  });
  return form;
}

function loadForm(bases, reload) {
  const name = h('input', { type: 'text', required: true, autocomplete: 'off', id: 'lora-name' });
  const path = h('input', { type: 'text', required: true, placeholder: '/path/on/the/server/adapter', autocomplete: 'off', id: 'lora-path' });
  const base = baseSelect(bases, true);
  const out = h('p', { 'aria-live': 'polite' });
  const form = h('form', { class: 'inline-form' },
    h('h3', {}, 'Load an adapter folder'),
    h('div', { class: 'fields' }, field('Name', name).wrap, field('Folder on the server', path).wrap, field('Base model', base).wrap),
    h('button', { type: 'submit', id: 'btn-load-lora' }, 'Load'), out);
  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    out.textContent = 'Loading…';
    try {
      const req = { lora_name: name.value.trim(), lora_path: path.value.trim() };
      if (base.value) req.base_model = base.value;
      await post('/v1/load_lora_adapter', req);
      notify(`Loaded ${name.value.trim()}.`);
      reload();
    } catch (err) { out.textContent = errorText(err); out.className = 'error'; }
  });
  return form;
}
