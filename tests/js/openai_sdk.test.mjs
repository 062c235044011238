// SPDX-License-Identifier: MIT
// The official OpenAI Node.js SDK (npm package "openai", pinned in
// package.json) drives Tuna's files and fine-tuning API unchanged, with
// baseURL http://127.0.0.1:<port>/v1: files (create, retrieve, list,
// content, delete), fine-tuning jobs (create with "auto" and explicit
// hyperparameters, Idempotency-Key, retrieve by either id, list with
// pagination), events (paged, newest first), checkpoints, pause, resume,
// cancel, and OpenAI-shaped errors. Run by run_sdk_test.py, which starts
// tunad and passes its URL in TUNA_URL and the example dataset's path in
// TUNA_DATASET.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import OpenAI, { toFile } from 'openai';

const url = process.env.TUNA_URL;
const client = new OpenAI({ apiKey: 'sk-tuna-test', baseURL: url + '/v1',
                            maxRetries: 0, timeout: 120000 });
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let passed = 0;

async function step(name, fn) {
  const t0 = Date.now();
  await fn();
  passed++;
  console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
}

async function waitFor(id, pred, what) {
  for (let i = 0; i < 1200; i++) {
    const job = await client.fineTuning.jobs.retrieve(id);
    if (pred(job)) return job;
    await sleep(100);
  }
  throw new Error(`job ${id} never ${what}`);
}

async function collect(page) {
  const all = [];
  for await (const item of page) all.push(item);
  return all;
}

let file, file2, job, job2;

await step('files.create (multipart, purpose fine-tune)', async () => {
  file = await client.files.create({
    file: fs.createReadStream(process.env.TUNA_DATASET),
    purpose: 'fine-tune',
  });
  assert.match(file.id, /^file-[0-9a-f]{24}$/);
  assert.equal(file.object, 'file');
  assert.equal(file.purpose, 'fine-tune');
  assert.equal(file.filename, 'zog.jsonl');
  assert.ok(file.bytes > 1000);
  file2 = await client.files.create({
    file: await toFile(Buffer.from('{"prompt":"a","completion":" b"}\n'),
                       'tiny.jsonl'),
    purpose: 'fine-tune',
  });
});

await step('files: a bad JSONL line is an OpenAI error object', async () => {
  const err = await client.files.create({
    file: await toFile(Buffer.from('{"prompt":"a","completion":" b"}\nnope\n'),
                       'bad.jsonl'),
    purpose: 'fine-tune',
  }).then(() => null, (e) => e);
  assert.ok(err instanceof OpenAI.BadRequestError, String(err));
  assert.equal(err.status, 400);
  assert.equal(err.type, 'invalid_request_error');
  assert.equal(err.code, 'invalid_dataset');
  assert.match(err.message, /line 2/);
});

await step('files.retrieve, list, content', async () => {
  const got = await client.files.retrieve(file.id);
  assert.deepEqual(got, file);
  const all = await collect(await client.files.list({ limit: 1 }));
  const ids = all.map((f) => f.id);
  assert.ok(ids.includes(file.id) && ids.includes(file2.id), ids);
  assert.equal(new Set(ids).size, ids.length);
  const content = await client.files.content(file.id);
  const text = await content.text();
  assert.equal(text.trim().split('\n').length, 240);
});

await step('fineTuning.jobs.create ("auto", method supervised)', async () => {
  job = await client.fineTuning.jobs.create({
    model: 'stories260K',
    training_file: file.id,
    suffix: 'zog',
    seed: 7,
    method: { type: 'supervised',
              supervised: { hyperparameters: { n_epochs: 'auto' } } },
  });
  assert.match(job.id, /^ftjob-[0-9a-f]{24}$/);
  assert.equal(job.object, 'fine_tuning.job');
  assert.equal(job.model, 'stories260K');
  assert.equal(job.training_file, file.id);
  assert.ok(['validating_files', 'queued', 'running'].includes(job.status));
  assert.equal(job.fine_tuned_model, null);
  assert.equal(job.seed, 7);
  assert.equal(job.hyperparameters.n_epochs, 3);   // auto: 240 rows
  assert.equal(typeof job.hyperparameters.batch_size, 'number');
  assert.equal(job.hyperparameters.learning_rate_multiplier, 1);
  assert.equal(job.method.type, 'supervised');
});

await step('Idempotency-Key: a retried create returns the same job',
           async () => {
  const body = { model: 'stories260K', training_file: file2.id,
                 hyperparameters: { n_epochs: 1, batch_size: 1,
                                    learning_rate_multiplier: 2 } };
  const opts = { headers: { 'Idempotency-Key': 'tuna-sdk-test-1' } };
  job2 = await client.fineTuning.jobs.create(body, opts);
  const again = await client.fineTuning.jobs.create(body, opts);
  assert.equal(again.id, job2.id);
  assert.equal(job2.hyperparameters.learning_rate_multiplier, 2);
  assert.equal(job2.hyperparameters.n_epochs, 1);
});

await step('jobs.create errors: unknown file, unknown model', async () => {
  let err = await client.fineTuning.jobs.create({
    model: 'stories260K', training_file: 'file-000000000000000000000000',
  }).then(() => null, (e) => e);
  assert.ok(err instanceof OpenAI.NotFoundError, String(err));
  assert.equal(err.param, 'training_file');
  err = await client.fineTuning.jobs.create({
    model: 'no-such-model', training_file: file.id,
  }).then(() => null, (e) => e);
  assert.ok(err instanceof OpenAI.NotFoundError, String(err));
  assert.equal(err.param, 'model');
  err = await client.fineTuning.jobs.retrieve('ftjob-000000000000000000000000')
    .then(() => null, (e) => e);
  assert.ok(err instanceof OpenAI.NotFoundError, String(err));
});

await step('jobs.retrieve by ftjob- and native id; list with pagination',
           async () => {
  const a = await client.fineTuning.jobs.retrieve(job.id);
  const b = await client.fineTuning.jobs.retrieve(job.tuna_job_id);
  assert.equal(a.id, job.id);
  assert.equal(b.id, job.id);
  const page = await client.fineTuning.jobs.list({ limit: 1 });
  assert.equal(page.data.length, 1);
  assert.equal(page.has_more, true);
  assert.ok(page.hasNextPage());
  const next = await page.getNextPage();
  assert.equal(next.data.length, 1);
  assert.notEqual(next.data[0].id, page.data[0].id);
  const all = await collect(await client.fineTuning.jobs.list({ limit: 1 }));
  const ids = all.map((j) => j.id);
  assert.ok(ids.includes(job.id) && ids.includes(job2.id), ids);
  assert.equal(ids[0], job2.id);                // newest first
});

await step('pause and resume a queued job', async () => {
  // job2 waits behind job (one worker), or has just started
  let j = await client.fineTuning.jobs.pause(job2.id);
  assert.ok(['paused', 'running'].includes(j.status), j.status);
  j = await waitFor(job2.id, (x) => x.status === 'paused' ||
                    ['succeeded', 'failed'].includes(x.status), 'paused');
  if (j.status === 'paused') {
    j = await client.fineTuning.jobs.resume(job2.id);
    assert.ok(['queued', 'running'].includes(j.status), j.status);
  }
});

await step('job succeeds; events paged newest first; checkpoints',
           async () => {
  const done = await waitFor(job.id, (x) =>
    ['succeeded', 'failed', 'cancelled'].includes(x.status), 'finished');
  assert.equal(done.status, 'succeeded', JSON.stringify(done.error));
  assert.equal(done.fine_tuned_model, `ft:stories260K:zog:${job.tuna_job_id}`);
  assert.ok(done.finished_at >= done.created_at);
  assert.ok(done.trained_tokens > 0);
  const first = await client.fineTuning.jobs.listEvents(job.id, { limit: 5 });
  assert.equal(first.data.length, 5);
  assert.equal(first.has_more, true);
  assert.equal(first.data[0].object, 'fine_tuning.job.event');
  assert.match(first.data[0].message, /succeeded/);
  const events = await collect(
    await client.fineTuning.jobs.listEvents(job.id, { limit: 7 }));
  const seqs = events.map((e) => Number(e.id.replace('ftevent-', '')));
  assert.deepEqual(seqs, [...seqs].sort((x, y) => y - x));
  assert.equal(new Set(seqs).size, seqs.length);
  const metrics = events.filter((e) => e.type === 'metrics');
  assert.ok(metrics.length >= 3, `${metrics.length} metrics events`);
  assert.equal(typeof metrics[0].data.train_loss, 'number');
  assert.match(events.at(-1).message, /queued/i);
  const ckpts = await collect(
    await client.fineTuning.jobs.checkpoints.list(job.id, { limit: 1 }));
  for (const c of ckpts) {
    assert.equal(c.object, 'fine_tuning.job.checkpoint');
    assert.equal(c.fine_tuning_job_id, job.id);
    assert.equal(typeof c.step_number, 'number');
    assert.equal(c.metrics.step, c.step_number);
  }
  const steps = ckpts.map((c) => c.step_number);
  assert.deepEqual(steps, [...steps].sort((x, y) => y - x));
  console.log(`     ${events.length} events, ${ckpts.length} checkpoints`);
});

await step('cancel; a finished job cannot be cancelled (409)', async () => {
  const j3 = await client.fineTuning.jobs.create({
    model: 'stories260K', training_file: file.id,
    hyperparameters: { n_epochs: 20 },
  });
  const c = await client.fineTuning.jobs.cancel(j3.id);
  assert.equal(c.id, j3.id);
  const ended = await waitFor(j3.id, (x) => x.status === 'cancelled',
                              'cancelled');
  assert.equal(ended.fine_tuned_model, null);
  const err = await client.fineTuning.jobs.cancel(job.id)
    .then(() => null, (e) => e);
  assert.ok(err instanceof OpenAI.ConflictError, String(err));
  assert.equal(err.status, 409);
});

await step('files.delete', async () => {
  await waitFor(job2.id, (x) =>
    ['succeeded', 'failed', 'cancelled'].includes(x.status), 'finished');
  const del = await client.files.delete(file2.id);
  assert.deepEqual(del, { id: file2.id, object: 'file', deleted: true });
  const err = await client.files.retrieve(file2.id).then(() => null,
                                                         (e) => e);
  assert.ok(err instanceof OpenAI.NotFoundError, String(err));
});

console.log(`openai sdk: all ${passed} passed`);
