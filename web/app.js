// SPDX-License-Identifier: MIT
// The dashboard's shell: a hash router over the pages (Jobs, a job, New
// job, Playground, Models), the API key dialog and the footer version.
// Each page module exports render(main, params, query) and may return a
// cleanup function, called when the page is left (streams, timers).

import { get, getKey, setKey } from './api.js';
import { h, clear, notify, parseHashQuery } from './util.js';
import * as jobs from './jobs.js';
import * as job from './job.js';
import * as newjob from './newjob.js';
import * as playground from './playground.js';
import * as models from './models.js';

const main = document.getElementById('main');
let cleanup = null;

const routes = [
  [/^\/?$/, jobs, 'jobs'],
  [/^\/jobs\/?$/, jobs, 'jobs'],
  [/^\/jobs\/([A-Za-z0-9_-]+)$/, job, 'jobs'],
  [/^\/new$/, newjob, 'new'],
  [/^\/playground$/, playground, 'playground'],
  [/^\/models$/, models, 'models'],
];

function parseHash() {
  const raw = location.hash.replace(/^#/, '') || '/jobs';
  const q = raw.indexOf('?');
  return { path: q < 0 ? raw : raw.slice(0, q), query: parseHashQuery(q < 0 ? '' : raw.slice(q + 1)) };
}

async function route() {
  const { path, query } = parseHash();
  if (cleanup) { try { cleanup(); } catch { /* */ } cleanup = null; }
  clear(main);
  let found = null;
  for (const [re, mod, nav] of routes) {
    const m = re.exec(path);
    if (m) { found = { mod, nav, params: m.slice(1) }; break; }
  }
  for (const a of document.querySelectorAll('[data-nav]')) {
    if (found && a.dataset.nav === found.nav) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
  if (!found) {
    main.append(h('h1', {}, 'Not found'), h('p', {}, 'No such page. ', h('a', { href: '#/jobs' }, 'Go to the jobs.')));
    return;
  }
  try {
    const r = await found.mod.render(main, found.params, query);
    if (typeof r === 'function') cleanup = r;
  } catch (e) {
    main.append(h('p', { class: 'error' }, String(e.message || e)));
  }
  const h1 = main.querySelector('h1');
  document.title = h1 ? `${h1.textContent} · Tuna` : 'Tuna';
}

// Moving between pages puts the keyboard focus on the new page's heading.
window.addEventListener('hashchange', async () => {
  await route();
  main.focus({ preventScroll: false });
});

document.getElementById('skip').addEventListener('click', (e) => {
  e.preventDefault();
  main.focus();
});

// ---------------------------------------------------------------- API key
const dialog = document.getElementById('key-dialog');
const keyInput = document.getElementById('key-input');
const keyButton = document.getElementById('key-button');
const keyWhy = document.getElementById('key-why');
let dialogOpen = false;

function showKeyState() {
  keyButton.textContent = getKey() ? 'API key ✓' : 'API key';
  keyButton.setAttribute('aria-label', getKey() ? 'API key (set)' : 'API key (not set)');
}

function openKeyDialog(reason) {
  if (dialogOpen) return;
  dialogOpen = true;
  keyWhy.textContent = reason
    ? `${reason}. Enter an API key (create one with “tunad keys create”); it is kept in this browser only and sent as a Bearer token.`
    : 'Only needed when the daemon has API keys (create one with “tunad keys create”). It is kept in this browser only and sent as a Bearer token.';
  keyInput.value = getKey();
  if (typeof dialog.showModal === 'function') dialog.showModal(); else dialog.setAttribute('open', '');
  keyInput.focus();
}

dialog.addEventListener('close', () => {
  dialogOpen = false;
  const v = dialog.returnValue;
  if (v === 'save') {
    setKey(keyInput.value.trim());
    notify(keyInput.value.trim() ? 'API key saved.' : 'API key cleared.');
  } else if (v === 'forget') {
    setKey('');
    notify('API key forgotten.');
  }
  showKeyState();
  if (v === 'save' || v === 'forget') route();
  keyButton.focus();
});

keyButton.addEventListener('click', () => openKeyDialog(''));
window.addEventListener('tuna:auth-required', (e) => {
  const why = getKey() ? 'The saved API key was refused' : 'This daemon requires an API key';
  openKeyDialog(e.detail && getKey() ? `${why}: ${e.detail}` : why);
});

get('/health').then((hl) => {
  document.getElementById('version').textContent = `tunad ${hl.version}`;
}).catch(() => { /* shown by the pages */ });

showKeyState();
route();
