// client/protocol.js against spec/protocol.json (the tables shared with the C side, which
// tests/unit/test_protocol.c checks), and every hex example of docs/PROTOCOL.md encoded and
// decoded by the client's own code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { Schema } from '../codec.js';
import {
  DEFAULT_ENVELOPE, KIND, METHOD, SPEC, decodeHello, decodePositions, decodeResumeBody, decodeResumedBody,
  encodeHello, encodePositions, encodeResumeBody, encodeResumedBody,
} from '../protocol.js';

const root = path.resolve(import.meta.dirname, '../..');
const spec = JSON.parse(fs.readFileSync(path.join(root, 'spec/protocol.json'), 'utf8'));
const doc = fs.readFileSync(path.join(root, 'docs/PROTOCOL.md'), 'utf8');

const examples = new Map();
for (const m of doc.matchAll(/```hex ([a-z-]+)\n([\s\S]*?)```/g)) {
  examples.set(m[1], Uint8Array.from(m[2].trim().split(/\s+/).map((h) => parseInt(h, 16))));
}
const checked = new Set();
function example(name) {
  assert.ok(examples.has(name), `docs/PROTOCOL.md has no example ${name}`);
  checked.add(name);
  return examples.get(name);
}

const EPOCH = 0x0123456789abcdefn;
const ID = 'A'.repeat(22);
const TOKEN = 'B'.repeat(22);
const te = new TextEncoder();
const env = (v) => DEFAULT_ENVELOPE.encode(v);

test('client/protocol.js holds exactly the tables of spec/protocol.json', () => {
  const { $comment, ...tables } = spec;
  assert.ok($comment);
  assert.deepEqual(JSON.parse(JSON.stringify(SPEC)), tables);
});

test('the schema examples', () => {
  const user = Schema.from([{ name: 'status', size: 1 }, { name: 'method', size: 1 }, { name: 'body' }]);
  assert.deepEqual(user.encode({ status: 200, method: 1, body: te.encode('hi') }), example('user-schema'));
  assert.deepEqual(DEFAULT_ENVELOPE.serialize(), example('envelope-schema'));
});

test('the envelope examples, both ways', () => {
  const cases = {
    push: { kind: KIND.PUSH, method: METHOD.POST, stream: 'g:room1', offset: 7n, epoch: EPOCH, url: '/rooms/1/messages', body: 'hello' },
    request: { kind: KIND.REQUEST, method: METHOD.GET, id: 42, url: '/rooms/1', body: '' },
    response: { kind: KIND.RESPONSE, status: 200, id: 42, body: '{"ok":true}' },
    error: { kind: KIND.ERROR, status: 400, body: 'bad' },
    'auth-ask': { kind: KIND.AUTH, status: 401, body: '{"expires":1800000000}' },
    'auth-token': { kind: KIND.AUTH, body: 'eyJhbGciOiJIUzI1NiJ9.e30.c2ln' },
    'auth-ok': { kind: KIND.AUTH, status: 200, body: '{"expires":1800003600}' },
    ping: { kind: KIND.PING, id: 7, body: '' },
    pong: { kind: KIND.PING, status: 200, id: 7, body: '' },
  };
  for (const [name, v] of Object.entries(cases)) {
    const bytes = example(name);
    assert.deepEqual(env({ ...v, body: te.encode(v.body) }), bytes, name);
    const back = DEFAULT_ENVELOPE.decode(bytes);
    assert.deepEqual({ ...back, body: new TextDecoder().decode(back.body) },
      { kind: 0, method: 0, status: 0, id: 0, stream: '', offset: 0n, epoch: 0n, url: '', ...v }, name);
  }
});

test('HELLO', () => {
  const bytes = example('hello');
  const h = decodeHello(bytes);
  assert.equal(h.connId, ID);
  assert.equal(h.token, TOKEN);
  assert.equal(h.heartbeatMs, 60000);
  assert.equal(h.maxMessage, 16 * 1024 * 1024);
  assert.equal(h.maxReplay, 10000);
  assert.equal(h.historyMax, 1000);
  assert.deepEqual(h.envelope.fields, DEFAULT_ENVELOPE.fields);
  assert.equal(h.schemas.size, 0);
  assert.deepEqual(encodeHello({ connId: ID, token: TOKEN }), bytes);
  // application schemas ride along; an unknown version is refused
  const chat = Schema.from([{ name: 'from', type: 'text' }, { name: 'text', type: 'rest' }]);
  const withSchemas = decodeHello(encodeHello({ connId: ID, token: TOKEN, schemas: new Map([['chat', chat]]) }));
  assert.deepEqual(withSchemas.schemas.get('chat').fields, chat.fields);
  const v2 = Uint8Array.from(bytes);
  v2[1] = 2;
  assert.throws(() => decodeHello(v2), /version 2 is not supported/);
});

test('RESUME, RESUMED and ACK', () => {
  const positions = [{ stream: 'g:room1', offset: 7n, epoch: EPOCH }, { stream: `c:${ID}`, offset: 0n, epoch: 0n }];
  const resume = example('resume');
  assert.deepEqual(env({ kind: KIND.RESUME, body: encodeResumeBody(TOKEN, positions) }), resume);
  assert.deepEqual(decodeResumeBody(DEFAULT_ENVELOPE.decode(resume).body), { token: TOKEN, positions });

  const records = [{ stream: 'g:room1', recovered: true, offset: 9n, epoch: EPOCH }];
  const resumed = example('resumed');
  assert.deepEqual(env({ kind: KIND.RESUMED, body: encodeResumedBody(records) }), resumed);
  assert.deepEqual(decodeResumedBody(DEFAULT_ENVELOPE.decode(resumed).body), records);

  const ack = example('ack');
  const acked = [{ stream: `c:${ID}`, offset: 3n, epoch: EPOCH }];
  assert.deepEqual(env({ kind: KIND.ACK, body: encodePositions(acked) }), ack);
  assert.deepEqual(decodePositions(DEFAULT_ENVELOPE.decode(ack).body), acked);
});

test('every example of docs/PROTOCOL.md was checked', () => {
  assert.deepEqual([...examples.keys()].filter((k) => !checked.has(k)), []);
});
