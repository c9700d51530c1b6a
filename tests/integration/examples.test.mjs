// The demo (examples/demo) and the test fixtures, held to what examples/rooms is held to
// (rooms.test.mjs): reading never creates a room, rooms are created within quotas, and answers
// built from the longest inputs are whole and valid. The browser side of the demo is
// tests/browser/demo.test.mjs.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { HUBTEST_BIN, HubClient, startServer } from './hub.mjs';
import { HOST, acceptKey, upgradeRequest } from './lib.mjs';
import { METHOD } from './proto.mjs';

const BUILD = process.env.SB_BUILD_DIR || path.resolve(import.meta.dirname, '../../build');
const DEMO_BIN = process.env.SB_DEMO || path.join(BUILD, 'examples/demo');
const RESTTEST_BIN = process.env.SB_RESTTEST || path.join(BUILD, 'tests/resttest');

/**
 * A WebSocket client of the demo named `name`, connecting from `localAddress` (any of
 * 127.0.0.0/8 reaches the server on 127.0.0.1: several peer addresses on one machine).
 */
async function connectFrom(port, name, localAddress = HOST) {
  const sock = await new Promise((resolve, reject) => {
    const s = net.connect({ port, host: HOST, localAddress });
    s.once('error', reject);
    s.once('connect', () => { s.off('error', reject); resolve(s); });
  });
  const c = new HubClient(sock, `${name}@${localAddress}`);
  const key = crypto.randomBytes(16).toString('base64');
  sock.write(upgradeRequest({ key, host: `${HOST}:${port}`, path: `/ws?name=${name}` }));
  await c.waitFor(() => (c.head ? true : undefined), 10000, 'the 101 response');
  if (c.head.status !== 101) { sock.destroy(); throw new Error(`handshake: ${c.head.statusLine}`); }
  assert.equal(c.head.header('sec-websocket-accept'), acceptKey(key));
  c.hello = await c.next(10000);
  return c;
}

async function call(c, method, url, body = '') {
  const r = await c.request(url, body, { method });
  return { status: r.status, body: r.body.length ? JSON.parse(r.body.toString()) : null };
}

/** A plain HTTP request; the body parsed as JSON (which fails on a cut or unescaped one). */
async function http(port, url, { method = 'GET', body, headers } = {}) {
  const r = await fetch(`http://${HOST}:${port}${url}`, { method, body, headers });
  const text = await r.text();
  return { status: r.status, text, body: text ? JSON.parse(text) : null };
}

/** n control characters (each escaped to six bytes in JSON), from `seed` on. */
const controls = (n, seed = 0) => Array.from({ length: n }, (_, i) => String.fromCharCode(1 + ((seed + i) % 31))).join('');

async function stopChecked(s) {
  const r = await s.stop();
  assert.equal(s.sanitizerReport(), null);
  assert.equal(r.killed, false, `${s.name} needed SIGKILL`);
}

describe('examples/demo', () => {
  let demo;
  const clients = [];
  before(async () => { demo = await startServer(DEMO_BIN, ['--host', HOST], { name: 'demo' }); });
  after(async () => {
    for (const c of clients) c.destroy();
    if (demo) await stopChecked(demo);
  });
  const connect = async (name, from) => {
    const c = await connectFrom(demo.port, name, from);
    clients.push(c);
    return c;
  };

  test('without --redis: /api/health is the memory engine, /api/nodes this node alone', async () => {
    const h = await fetch(`http://${HOST}:${demo.port}/api/health`);
    assert.equal(h.status, 200);
    assert.deepEqual(await h.json(), { engine: 'memory', up: true, error: '' });
    const n = await fetch(`http://${HOST}:${demo.port}/api/nodes`);
    assert.equal(n.status, 200);
    assert.deepEqual(await n.json(), [{ id: 'local', url: '' }]);
  });

  test('reading never creates a room (40 GETs once filled all 32 for good)', async () => {
    const c = await connect('reader');
    for (let i = 0; i < 40; i++) {
      assert.deepEqual(await http(demo.port, `/api/rooms/ghost${i}/messages`), { status: 404, text: '{"error":"Not Found"}', body: { error: 'Not Found' } });
      assert.equal((await call(c, METHOD.GET, `/api/rooms/other${i}/messages`)).status, 404);
    }
    // Over plain HTTP a post goes only to a room that exists.
    const post = await http(demo.port, '/api/rooms/ghost/messages', { method: 'POST', body: 'hi', headers: { 'X-Name': 'curl' } });
    assert.equal(post.status, 404);
    assert.equal(post.body.message, 'no such room: a room is made by joining it');
    assert.deepEqual((await http(demo.port, '/api/rooms')).body, []);
    assert.ok(demo.alive());
  });

  test('one address creates at most 8 rooms, and there are at most 32', async () => {
    const alice = await connect('alice');
    const bob = await connect('bob'); // another name, the same address
    for (let i = 0; i < 8; i++) {
      const r = i % 2 ? await call(alice, METHOD.PUT, `/api/rooms/a${i}/members/me`) : await call(alice, METHOD.POST, `/api/rooms/a${i}/messages`, 'hi');
      assert.equal(r.status, i % 2 ? 204 : 201, `room ${i}: ${JSON.stringify(r)}`);
    }
    const perAddress = { status: 403, body: { error: 'Forbidden', message: 'one address may create at most 8 rooms: join one of them' } };
    assert.deepEqual(await call(alice, METHOD.PUT, '/api/rooms/a8/members/me'), perAddress);
    assert.deepEqual(await call(bob, METHOD.POST, '/api/rooms/b0/messages', 'hi'), perAddress);
    // Rooms that exist take anyone, over WebSocket and plain HTTP.
    assert.equal((await call(bob, METHOD.PUT, '/api/rooms/a1/members/me')).status, 204);
    assert.equal((await call(bob, METHOD.POST, '/api/rooms/a0/messages', 'from bob')).status, 201);
    const viaHttp = await http(demo.port, '/api/rooms/a0/messages', { method: 'POST', body: 'from curl', headers: { 'X-Name': 'curl' } });
    assert.deepEqual([viaHttp.status, viaHttp.body], [201, { seq: 3 }]);
    assert.deepEqual(await call(alice, METHOD.PUT, '/api/rooms/not%20a%20name/members/me'),
      { status: 422, body: { error: 'Unprocessable Entity', message: 'a room name is 1 to 32 of A-Z a-z 0-9 _ -' } });
    // Three more addresses fill the table; a fifth finds it full.
    for (const n of [2, 3, 4]) {
      const c = await connect(`user${n}`, `127.0.0.${n}`);
      for (let i = 0; i < 8; i++) assert.equal((await call(c, METHOD.PUT, `/api/rooms/r${n}_${i}/members/me`)).status, 204);
    }
    const late = await connect('late', '127.0.0.5');
    assert.deepEqual(await call(late, METHOD.PUT, '/api/rooms/late/members/me'),
      { status: 507, body: { error: 'Insufficient Storage', message: 'all 32 rooms are taken' } });
    assert.equal((await call(late, METHOD.PUT, '/api/rooms/a3/members/me')).status, 204);
    const list = (await http(demo.port, '/api/rooms')).body;
    assert.equal(list.length, 32);
    assert.deepEqual(list.find((r) => r.id === 'a1'), { id: 'a1', members: 2 });
    assert.deepEqual(list.find((r) => r.id === 'a3'), { id: 'a3', members: 2 });
  });

  test('the longest history: 100 texts of 1000 control characters, read back whole as JSON', async () => {
    // The demo's table is full from the test before: post into a room that exists.
    const c = await connect('writer');
    const texts = Array.from({ length: 100 }, (_, i) => controls(1000, i));
    for (const t of texts) assert.equal((await call(c, METHOD.POST, '/api/rooms/r2_0/messages', t)).status, 201);
    const h = await http(demo.port, '/api/rooms/r2_0/messages');
    assert.equal(h.status, 200);
    assert.equal(h.body.room, 'r2_0');
    assert.equal(h.body.stream, 'g:room:r2_0');
    assert.equal(h.body.offset, 100);
    assert.deepEqual(h.body.messages.map((m) => [m.from, m.text]), texts.map((t) => ['writer', t]));
    const bad = await call(c, METHOD.POST, '/api/rooms/r2_0/messages', Buffer.from([0x61, 0xff]));
    assert.equal(bad.status, 422, 'a text that is not UTF-8');
  });
});

describe('tests/fixtures', () => {
  test('hubtest lists 64 groups of 200 bytes whole (it once overflowed a 4 KiB buffer)', async () => {
    const hub = await startServer(HUBTEST_BIN, [], { name: 'hubtest' });
    try {
      const c = await HubClient.connect(hub.port);
      const names = Array.from({ length: 64 }, (_, i) => `${String(i).padStart(2, '0')}${'g'.repeat(198)}`);
      let last;
      for (const g of names) last = await c.ok(`/join/${g}`);
      assert.deepEqual(last.split('\n').sort(), names);
      c.destroy();
    } finally {
      await stopChecked(hub);
    }
  });

  test('resttest answers /headers as valid JSON whatever the headers hold', async () => {
    const rest = await startServer(RESTTEST_BIN, [], { name: 'resttest' });
    try {
      const x = `"quoted" \\ ${'"'.repeat(2000)}`;
      const r = await http(rest.port, '/headers', { headers: { 'X-Test': x, 'User-Agent': 'a "b"' } });
      assert.deepEqual([r.status, r.body], [200, { http: 1, ua: 'a "b"', x }]);
    } finally {
      await stopChecked(rest);
    }
  });
});
