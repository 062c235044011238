// SPDX-License-Identifier: MIT
// The official OpenAI Node.js SDK (npm package "openai", pinned in
// package.json) against Tuna's serving routes, unchanged, with baseURL
// http://127.0.0.1:<port>/v1: models.list and models.retrieve,
// chat.completions.create (non-streaming with logprobs, and streaming with
// stream_options.include_usage), completions.create (non-streaming with n
// and logprobs, and streaming), and OpenAI-shaped errors the SDK turns
// into its error classes. Run by run_sdk_test.py serving.test.mjs, which
// starts tunad and passes its URL in TUNA_URL.
import assert from 'node:assert/strict';
import OpenAI from 'openai';

const url = process.env.TUNA_URL;
const client = new OpenAI({ apiKey: 'sk-tuna-test', baseURL: url + '/v1',
                            maxRetries: 0, timeout: 60000 });
const MODEL = 'stories260K';
const GREEDY = ', there was a little girl named Lily.';
let passed = 0;

async function step(name, fn) {
  const t0 = Date.now();
  await fn();
  passed++;
  console.log(`ok   ${name} (${((Date.now() - t0) / 1000).toFixed(1)}s)`);
}

await step('models.list and models.retrieve', async () => {
  const ids = [];
  for await (const m of client.models.list()) {
    assert.equal(m.object, 'model');
    assert.equal(typeof m.created, 'number');
    assert.equal(typeof m.owned_by, 'string');
    ids.push(m.id);
  }
  assert.ok(ids.includes(MODEL), ids.join(','));
  const m = await client.models.retrieve(MODEL);
  assert.equal(m.id, MODEL);
});

await step('chat.completions.create', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, max_tokens: 12, temperature: 0, logprobs: true,
    top_logprobs: 2,
    messages: [{ role: 'system', content: 'Be brief.' },
               { role: 'user', content: 'Tell me a story.' }],
  });
  assert.match(r.id, /^chatcmpl-/);
  assert.equal(r.object, 'chat.completion');
  assert.equal(r.model, MODEL);
  assert.equal(r.choices.length, 1);
  const c = r.choices[0];
  assert.equal(c.message.role, 'assistant');
  assert.equal(typeof c.message.content, 'string');
  assert.ok(['stop', 'length'].includes(c.finish_reason));
  assert.equal(c.logprobs.content.length, r.usage.completion_tokens);
  for (const t of c.logprobs.content) {
    assert.equal(t.top_logprobs.length, 2);
    assert.equal(t.top_logprobs[0].token, t.token);
    assert.ok(t.top_logprobs[0].logprob >= t.top_logprobs[1].logprob);
  }
  assert.equal(r.usage.total_tokens,
               r.usage.prompt_tokens + r.usage.completion_tokens);
});

await step('chat.completions.create stream', async () => {
  const body = { model: MODEL, max_tokens: 16, temperature: 0,
                 messages: [{ role: 'user', content: 'Once upon a time' }] };
  const ref = await client.chat.completions.create(body);
  const stream = await client.chat.completions.create({
    ...body, stream: true, stream_options: { include_usage: true } });
  let text = '', finish = null, usage = null, chunks = 0, role = null;
  for await (const chunk of stream) {
    chunks++;
    assert.equal(chunk.object, 'chat.completion.chunk');
    if (chunk.usage) usage = chunk.usage;
    for (const ch of chunk.choices) {
      if (ch.delta.role) role = ch.delta.role;
      text += ch.delta.content ?? '';
      if (ch.finish_reason) finish = ch.finish_reason;
    }
  }
  assert.ok(chunks > 3, `${chunks} chunks`);
  assert.equal(role, 'assistant');
  assert.equal(text, ref.choices[0].message.content);
  assert.equal(finish, ref.choices[0].finish_reason);
  assert.deepEqual(usage, ref.usage);
});

await step('completions.create', async () => {
  const r = await client.completions.create({
    model: MODEL, prompt: 'Once upon a time', max_tokens: 9,
    temperature: 0, n: 2, logprobs: 1 });
  assert.match(r.id, /^cmpl-/);
  assert.equal(r.object, 'text_completion');
  assert.equal(r.choices.length, 2);
  for (const c of r.choices) {
    assert.ok(GREEDY.startsWith(c.text), c.text);
    assert.equal(c.finish_reason, 'length');
    assert.equal(c.logprobs.tokens.join(''), c.text);
    assert.equal(c.logprobs.token_logprobs.length, 9);
  }
  assert.equal(r.usage.completion_tokens, 18);
});

await step('completions.create stream', async () => {
  const stream = await client.completions.create({
    model: MODEL, prompt: 'Once upon a time', max_tokens: 9,
    temperature: 0, stream: true });
  let text = '', finish = null;
  for await (const chunk of stream) {
    assert.equal(chunk.object, 'text_completion');
    text += chunk.choices[0].text;
    if (chunk.choices[0].finish_reason) finish = chunk.choices[0].finish_reason;
  }
  assert.ok(GREEDY.startsWith(text) && text.length > 10, text);
  assert.equal(finish, 'length');
});

await step('response_format json_object gives parseable JSON', async () => {
  const r = await client.chat.completions.create({
    model: MODEL, response_format: { type: 'json_object' }, max_tokens: 200,
    seed: 3, messages: [{ role: 'user', content: 'Tell me about a cat.' }] });
  const c = r.choices[0];
  assert.equal(c.finish_reason, 'stop', c.message.content);
  const v = JSON.parse(c.message.content);
  assert.equal(typeof v, 'object');
  assert.ok(v !== null && !Array.isArray(v));
});

await step('errors become the SDK error classes', async () => {
  await assert.rejects(
    client.chat.completions.create({
      model: 'no-such-model', messages: [{ role: 'user', content: 'x' }] }),
    (e) => e instanceof OpenAI.NotFoundError && e.code === 'model_not_found');
  await assert.rejects(
    client.chat.completions.create({
      model: MODEL, messages: [{ role: 'user', content: 'x' }],
      response_format: { type: 'json_schema', json_schema: { name: 'x',
        schema: { $ref: '#/definitions/nope' } } } }),
    (e) => e instanceof OpenAI.BadRequestError && e.param === 'response_format');
  await assert.rejects(
    client.completions.create({ model: MODEL, prompt: 'x', temperature: 5 }),
    (e) => e instanceof OpenAI.BadRequestError);
});

console.log(`serving sdk: ${passed} passed`);
