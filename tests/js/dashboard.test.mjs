// SPDX-License-Identifier: MIT
// The dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; no browser is ever downloaded) against a real tunad:
// the page and every file it loads come from tunad (no other origin is
// contacted), a bad JSONL file shows its line-numbered error before
// anything is stored, the example dataset dropped on the page gets a
// preflight estimate of time and memory, a job is started and its loss
// chart gains points live from the event stream, the report and
// checkpoints appear, the playground streams base and tuned answers side
// by side, the models page lists the tuned model, keyboard navigation and
// labels work, a phone-sized layout renders, and with API keys on the page
// asks for a key on 401 and then works with it. Screenshots are written to
// $TUNA_SCREENSHOTS. Run by run_browser_test.py.
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import fs from 'node:fs';
import path from 'node:path';
import { chromium } from 'playwright-core';

const url = process.env.TUNA_URL;
const shots = process.env.TUNA_SCREENSHOTS;
const T = 120000;
let passed = 0;

async function step(name, fn) {
  const t0 = Date.now();
  await fn();
  passed++;
  console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
}

async function api(method, p, body, headers = {}) {
  const r = await fetch(url + p, { method, headers, body });
  return { status: r.status, json: await r.json().catch(() => null), headers: r.headers };
}

const browser = await chromium.launch({
  executablePath: process.env.TUNA_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  // Debian's Chromium as root in a container, on a closed network.
  args: ['--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage', '--disable-quic',
    '--no-first-run', '--disable-background-networking', '--disable-component-update',
    '--disable-sync', '--disable-default-apps', '--disable-extensions', '--mute-audio'],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'light' });
const page = await context.newPage();
page.setDefaultTimeout(T);
const problems = [];
const foreign = [];
page.on('pageerror', (e) => problems.push(`page error: ${e.message}`));
page.on('console', (m) => {
  // 4xx answers the page handles (the bad file's 400, 401s) are logged by
  // Chromium as "Failed to load resource"; anything else is a bug.
  if (m.type() === 'error' && !m.text().startsWith('Failed to load resource')) problems.push(`console: ${m.text()}`);
});
page.on('request', (r) => {
  const u = r.url();
  if (!u.startsWith(url) && !u.startsWith('data:') && !u.startsWith('blob:')) foreign.push(u);
});
const shot = (name, opts = {}) => page.screenshot(Object.assign({ path: path.join(shots, name) }, opts));
let jobId;

try {
  await step('the page is served by tunad at / with its files', async () => {
    const r = await api('GET', '/');
    assert.equal(r.status, 200);
    const res = await page.goto(url + '/');
    assert.equal(res.status(), 200);
    assert.match(res.headers()['content-type'], /^text\/html/);
    assert.ok(res.headers().etag);
    await page.getByRole('heading', { level: 1, name: 'Jobs' }).waitFor({ timeout: 30000 });
    await page.getByText('No jobs yet.').waitFor();
    const js = await page.request.get(url + '/ui/app.js');
    assert.equal(js.status(), 200);
    assert.match(js.headers()['content-type'], /^text\/javascript/);
    const again = await page.request.get(url + '/ui/app.js', { headers: { 'If-None-Match': js.headers().etag } });
    assert.equal(again.status(), 304);
    await shot('jobs-empty.png');
  });

  await step('keyboard: skip link first, then the navigation; Enter follows a link', async () => {
    await page.keyboard.press('Tab');
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'Skip to content');
    await page.keyboard.press('Tab'); // brand
    await page.keyboard.press('Tab'); // Jobs
    await page.keyboard.press('Tab'); // New job
    assert.equal(await page.evaluate(() => document.activeElement.textContent), 'New job');
    const outline = await page.evaluate(() => getComputedStyle(document.activeElement).outlineStyle);
    assert.notEqual(outline, 'none', 'focused links show a focus ring');
    await page.keyboard.press('Enter');
    await page.getByRole('heading', { level: 1, name: 'New finetuning job' }).waitFor();
  });

  await step('every form control has a label', async () => {
    await page.locator('#base-model option').first().waitFor({ state: 'attached' });
    const unlabelled = await page.evaluate(() => [...document.querySelectorAll('main input, main select, main textarea')]
      .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute('aria-label') && !el.closest('label'))
      .map((el) => el.outerHTML.slice(0, 80)));
    assert.deepEqual(unlabelled, []);
  });

  await step('a bad file shows its line-numbered error, and nothing is stored', async () => {
    await page.setInputFiles('#file', process.env.TUNA_BAD_DATASET);
    const err = page.locator('#dataset-error');
    await err.waitFor();
    const text = await err.innerText();
    assert.match(text, /Line 3:/, text);
    assert.match(text, /JSON/, text);
    // the excerpt marks line 3
    assert.equal(await page.locator('#dataset-error .excerpt li.bad').getAttribute('aria-current'), 'true');
    assert.match(await page.locator('#dataset-error .excerpt li.bad').innerText(), /"completion": \}/);
    assert.ok(await page.locator('#btn-start').isDisabled());
    await shot('newjob-bad-file.png', { fullPage: true });
    const ds = await api('GET', '/datasets');
    assert.equal(ds.json.data.length, 0, 'the dry run stored no dataset');
    const jobs = await api('GET', '/jobs');
    assert.equal(jobs.json.data.length, 0);
  });

  await step('the example dataset dropped on the page gets a preflight estimate', async () => {
    const content = fs.readFileSync(process.env.TUNA_DATASET, 'utf8');
    await page.fill('input[name=epochs]', '4');
    await page.fill('input[name=validation_split]', '0.1');
    await page.fill('#suffix', 'zog');
    // a real drop event with a DataTransfer holding the file
    const dt = await page.evaluateHandle((txt) => {
      const d = new DataTransfer();
      d.items.add(new File([txt], 'zog.jsonl', { type: 'application/jsonl' }));
      return d;
    }, content);
    await page.dispatchEvent('#drop', 'dragenter', { dataTransfer: dt });
    await page.dispatchEvent('#drop', 'drop', { dataTransfer: dt });
    await page.locator('#preflight-ok').waitFor();
    const ok = await page.locator('#preflight-ok').innerText();
    assert.match(ok, /240 completion examples/, ok);
    assert.match(ok, /216 for training, 24 for validation/, ok);
    assert.match(await page.locator('#est-time').innerText(), /s$/);
    assert.match(await page.locator('#est-ram').innerText(), /iB$/);
    assert.match(ok, /epochs 4/);
    assert.equal(await page.locator('#file-info').innerText(), `zog.jsonl · ${(content.length / 1024).toFixed(1)} KiB`);
    await page.locator('#btn-start:not([disabled])').waitFor();
    assert.equal((await api('GET', '/datasets')).json.data.length, 0, 'still nothing stored');
    await shot('newjob-preflight.png', { fullPage: true });
  });

  await step('start: the job page shows the loss chart gaining points live', async () => {
    await page.click('#btn-start');
    await page.waitForURL(/#\/jobs\/job_[0-9a-f]+$/);
    jobId = page.url().split('/').pop();
    const svg = page.locator('svg.chart');
    const points = async () => Number(await svg.getAttribute('data-train-points'));
    await page.waitForFunction(() => Number(document.querySelector('svg.chart')?.dataset.trainPoints) > 0);
    const first = await points();
    // more points arrive while it trains (unless a very slow page first
    // saw it finished; the stopped job below shows growth again)
    await page.waitForFunction((n) => Number(document.querySelector('svg.chart').dataset.trainPoints) > n ||
      document.getElementById('job-status').textContent.includes('succeeded'), first);
    const later = await points();
    const total = Number((await page.locator('#stat-step').innerText()).split('/')[1]);
    assert.ok(later > first || first === total, `${first} -> ${later} of ${total}`);
    console.log(`     chart: ${first} points, then ${later} (of ${total})`);
    await page.locator('#job-status', { hasText: 'succeeded' }).waitFor({ timeout: 300000 });
    const job = (await api('GET', `/jobs/${jobId}`)).json;
    assert.equal(job.status, 'succeeded');
    await page.waitForFunction((n) => Number(document.querySelector('svg.chart').dataset.trainPoints) === n,
      job.progress.total_steps);
    assert.ok(Number(await svg.getAttribute('data-val-points')) > 0, 'validation points');
    await page.locator('#report-table').waitFor();
    assert.match(await page.locator('#report-table').innerText(), /tuned/);
    await page.getByRole('cell', { name: /:step-\d+/ }).first().waitFor();
    assert.match(await page.locator('#events').innerText(), /succeeded|Job/i);
    assert.ok(await page.locator('#btn-download').isVisible());
    assert.ok(await page.locator('#btn-cancel').isHidden());
    assert.doesNotMatch(await page.locator('main').innerText(), /\bundefined\b|\bNaN\b|\bnull\b|\[object /);
    await page.evaluate(() => window.scrollTo(0, 0));
    await shot('dashboard.png');
    await shot('job.png', { fullPage: true });
  });

  await step('adapter download from the job page', async () => {
    const [dl] = await Promise.all([page.waitForEvent('download'), page.click('#btn-download')]);
    assert.match(dl.suggestedFilename(), /^job_[0-9a-f]+-peft\.tar$/);
    const p = path.join(process.env.TUNA_TMP, 'adapter.tar');
    await dl.saveAs(p);
    const tar = fs.readFileSync(p);
    assert.ok(tar.includes(Buffer.from('adapter_config.json')));
  });

  await step('the jobs list shows the job with its status and loss', async () => {
    await page.click('nav >> text=Jobs');
    const row = page.locator(`tr[data-job="${jobId}"]`);
    await row.waitFor();
    const t = await row.innerText();
    assert.match(t, /succeeded/);
    assert.match(t, /zog/);
    assert.match(t, /\d\.\d{4}/);
    await shot('jobs.png');
  });

  await step('playground: base and tuned models answer side by side, streamed', async () => {
    await page.goto(`${url}/#/jobs/${jobId}`);
    await page.click('#btn-try');
    await page.getByRole('heading', { level: 1, name: 'Playground' }).waitFor();
    const checked = await page.locator('input[name=model]:checked').evaluateAll((els) => els.map((e) => e.value));
    assert.equal(checked.length, 2, JSON.stringify(checked));
    assert.equal(checked[0], 'stories260K');
    assert.match(checked[1], /^ft:stories260K:zog:job_/);
    await page.fill('input[name=temperature]', '0');
    await page.fill('input[name=max_tokens]', '48');
    // count the pieces each stream brings
    await page.evaluate(() => {
      window.__pieces = {};
      new MutationObserver((muts) => {
        for (const m of muts) {
          const a = m.target.closest?.('.answer') || m.target.parentElement?.closest('.answer');
          if (a) window.__pieces[a.dataset.model] = (window.__pieces[a.dataset.model] || 0) + m.addedNodes.length;
        }
      }).observe(document.getElementById('answers'), { childList: true, subtree: true, characterData: true });
    });
    await page.click('#btn-generate');
    await page.waitForFunction(() => {
      const a = [...document.querySelectorAll('.answer')];
      return a.length === 2 && a.every((x) => x.dataset.done === 'true');
    });
    const answers = await page.locator('.answer').evaluateAll((els) => els.map((e) => ({
      model: e.dataset.model, text: e.querySelector('.answer-text').textContent, meta: e.querySelector('.answer-meta').textContent,
    })));
    const pieces = await page.evaluate(() => window.__pieces);
    for (const a of answers) {
      assert.ok(a.text.startsWith('Once upon a time') && a.text.length > 40, JSON.stringify(a));
      assert.match(a.meta, /tokens\/s/);
      assert.ok(pieces[a.model] > 3, `streamed in pieces: ${JSON.stringify(pieces)}`);
    }
    assert.notEqual(answers[0].text, answers[1].text);
    assert.match(answers[1].text, /Zog|dragon/, answers[1].text);
    console.log(`     base:  ${JSON.stringify(answers[0].text.slice(0, 90))}`);
    console.log(`     tuned: ${JSON.stringify(answers[1].text.slice(0, 90))}`);
    // the same comparison the daemon gives with /generate (greedy)
    const seedNote = await page.locator('.seed-note').innerText();
    assert.match(seedNote, /temperature 0/);
    await shot('playground.png', { fullPage: true });
  });

  await step('models page lists the base and the tuned model', async () => {
    await page.click('nav >> text=Models');
    await page.getByRole('heading', { level: 2, name: /Tuned models \(1\)/ }).waitFor();
    assert.match(await page.locator('main').innerText(), /stories260K/);
    assert.match(await page.locator('main').innerText(), new RegExp(jobId));
  });

  await step('models page: load a LoRA adapter folder by name, use it, unload it', async () => {
    const dir = path.join(process.env.TUNA_DATA_DIR, 'jobs', jobId, 'adapter');
    assert.ok(fs.existsSync(path.join(dir, 'adapter_config.json')), dir);
    await page.fill('#lora-name', 'zog-live');
    await page.fill('#lora-path', dir);
    await page.click('#btn-load-lora');
    const row = page.locator('#loras tr[data-lora="zog-live"]');
    await row.waitFor();
    assert.match(await row.innerText(), /stories260K/);
    const gen = await api('POST', '/generate', JSON.stringify({ model: 'zog-live', prompt: 'Once upon a time', max_tokens: 24, temperature: 0 }),
      { 'Content-Type': 'application/json' });
    assert.equal(gen.status, 200);
    assert.match(gen.json.text, /Zog|dragon/);
    await shot('models.png', { fullPage: true });
    await row.getByRole('button', { name: 'Unload zog-live' }).click();
    await row.waitFor({ state: 'detached' });
    assert.equal((await api('POST', '/generate', JSON.stringify({ model: 'zog-live', prompt: 'x' }),
      { 'Content-Type': 'application/json' })).status, 404);
  });

  await step('controls: cancel a queued job; pause, resume, stop and save a running one', async () => {
    page.on('dialog', (d) => d.accept()); // the confirm() of stop and cancel
    const body = fs.readFileSync(process.env.TUNA_DATASET);
    const mk = async (sfx) => {
      const r = await api('POST', `/jobs?epochs=60&suffix=${sfx}`, body, { 'Content-Type': 'application/x-ndjson' });
      assert.equal(r.status, 201, JSON.stringify(r.json));
      return r.json.id;
    };
    const long = await mk('long');
    const queued = await mk('queued');
    await page.goto(`${url}/#/jobs/${queued}`);
    await page.locator('#job-status', { hasText: 'queued' }).waitFor();
    assert.ok(await page.locator('#btn-stop').isHidden(), 'a queued job cannot be stopped');
    await page.click('#btn-cancel');
    await page.locator('#job-status', { hasText: 'cancelled' }).waitFor();
    assert.ok(await page.locator('#btn-cancel').isHidden());

    await page.goto(`${url}/#/jobs/${long}`);
    await page.locator('#job-status', { hasText: 'running' }).waitFor();
    await page.waitForFunction(() => Number(document.querySelector('svg.chart')?.dataset.trainPoints) > 2);
    assert.match(await page.locator('#stat-eta').innerText(), /s$|min$/);
    await shot('job-running.png');
    await page.click('#btn-pause');
    await page.locator('#job-status', { hasText: 'paused' }).waitFor();
    await page.locator('#btn-resume').waitFor();
    const atPause = Number(await page.locator('svg.chart').getAttribute('data-train-points'));
    await page.click('#btn-resume');
    await page.locator('#job-status', { hasText: 'running' }).waitFor();
    await page.waitForFunction((n) => Number(document.querySelector('svg.chart').dataset.trainPoints) > n + 2, atPause);
    await page.click('#btn-stop');
    await page.locator('#job-status', { hasText: 'succeeded' }).waitFor();
    await page.locator('.note', { hasText: 'stopped by request' }).waitFor();
    const j = (await api('GET', `/jobs/${long}`)).json;
    assert.equal(j.status, 'succeeded');
    assert.ok(j.progress.step < j.progress.total_steps);
    assert.match(await page.locator('#events').innerText(), /paused|pause/i);
  });

  await step('phone-sized layout', async () => {
    const phone = await browser.newContext({ viewport: { width: 390, height: 844 }, deviceScaleFactor: 1, isMobile: true, hasTouch: true });
    const p = await phone.newPage();
    p.on('pageerror', (e) => problems.push(`phone page error: ${e.message}`));
    await p.goto(`${url}/#/jobs/${jobId}`);
    await p.locator('#job-status', { hasText: 'succeeded' }).waitFor();
    await p.waitForFunction(() => Number(document.querySelector('svg.chart')?.dataset.trainPoints) > 0);
    const overflow = await p.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    assert.ok(overflow <= 1, `no horizontal scrolling on a phone (${overflow}px)`);
    await p.screenshot({ path: path.join(shots, 'job-phone.png') });
    await p.goto(`${url}/#/jobs`);
    await p.locator(`tr[data-job="${jobId}"]`).waitFor();
    await p.screenshot({ path: path.join(shots, 'jobs-phone.png') });
    await phone.close();
  });

  await step('dark colour scheme', async () => {
    const dark = await browser.newContext({ viewport: { width: 1280, height: 900 }, colorScheme: 'dark' });
    const p = await dark.newPage();
    await p.goto(`${url}/#/jobs/${jobId}`);
    await p.locator('#job-status', { hasText: 'succeeded' }).waitFor();
    await p.waitForFunction(() => Number(document.querySelector('svg.chart')?.dataset.trainPoints) > 0);
    const bg = await p.evaluate(() => getComputedStyle(document.body).backgroundColor);
    assert.equal(bg, 'rgb(17, 20, 24)');
    await p.screenshot({ path: path.join(shots, 'job-dark.png') });
    await dark.close();
  });

  await step('with API keys on, the page asks for a key on 401 and then uses it', async () => {
    const secret = execFileSync(process.env.TUNA_TUNAD, ['keys', 'create', '--name', 'browser', '--role', 'admin',
      '--data-dir', process.env.TUNA_DATA_DIR], { encoding: 'utf8' }).trim();
    assert.match(secret, /^tuna_/);
    assert.equal((await api('GET', '/jobs')).status, 401);
    assert.equal((await api('GET', '/')).status, 200, 'the page itself needs no key');
    await page.goto(`${url}/#/jobs`);
    await page.reload();
    const dialog = page.locator('#key-dialog');
    await dialog.waitFor({ state: 'visible' });
    assert.match(await dialog.innerText(), /requires an API key/);
    await shot('api-key.png');
    await page.fill('#key-input', secret);
    await page.click('#key-dialog button[value=save]');
    await page.locator(`tr[data-job="${jobId}"]`).waitFor();
    assert.equal(await page.locator('#key-button').innerText(), 'API key ✓');
    // the live stream works with the key too (fetch with Authorization)
    await page.goto(`${url}/#/jobs/${jobId}`);
    await page.waitForFunction(() => Number(document.querySelector('svg.chart')?.dataset.trainPoints) > 0);
  });

  await step('nothing was fetched from another origin, and no script errors', async () => {
    assert.deepEqual(foreign, []);
    assert.deepEqual(problems, []);
  });
} catch (e) {
  console.error(`FAIL: ${e.stack || e}`);
  if (problems.length) console.error(problems.join('\n'));
  await page.screenshot({ path: path.join(shots, 'failure.png'), fullPage: true }).catch(() => {});
  await browser.close();
  process.exit(1);
}
await browser.close();
console.log(`dashboard: ${passed} steps passed`);
