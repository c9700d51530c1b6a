// examples/rooms, the REST example a reader copies: routes, middleware (the write guard),
// JWT auth of the upgrade, pushes to a room's group and to a user, history with its position;
// and what makes it safe to copy: answers built without overflow from the longest, most-escaped
// inputs (ids, identities and texts of control characters), room quotas, reads that create
// nothing, and a request log that a client cannot forge lines in.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import path from 'node:path';
import { HubClient, startServer } from './hub.mjs';
import { KIND, METHOD } from './proto.mjs';

const BIN = process.env.SB_ROOMS || path.resolve(import.meta.dirname, '../../build/examples/rooms');
const SECRET = 'the-rooms-example-secret-0123456789';

function token(sub) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const data = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc({ sub, exp: Math.floor(Date.now() / 1000) + 600 })}`;
  return `${data}.${crypto.createHmac('sha256', SECRET).update(data).digest('base64url')}`;
}

async function call(c, method, url, body = '') {
  const r = await c.request(url, body, { method });
  return { status: r.status, body: r.body.length ? JSON.parse(r.body.toString()) : null };
}

/** A plain HTTP GET, anonymous; the body parsed as JSON (which fails on a cut or unescaped one). */
async function httpGet(port, url) {
  const r = await fetch(`http://127.0.0.1:${port}${url}`);
  const text = await r.text();
  return { status: r.status, type: r.headers.get('content-type'), text, body: JSON.parse(text) };
}

/** n control characters (U+0001..U+001F, each escaped to six bytes in JSON), from `seed` on. */
const controls = (n, seed = 0) => Array.from({ length: n }, (_, i) => String.fromCharCode(1 + ((seed + i) % 31))).join('');
/** The k-th room id of 31 control characters (the longest id), distinct for k < 961. */
const controlId = (k) => String.fromCharCode(1 + (k % 31), 1 + Math.floor(k / 31)) + controls(29, k);
const roomUrl = (id, rest = 'messages') => `/rooms/${encodeURIComponent(id)}/${rest}`;

describe('examples/rooms', () => {
  let open;
  let auth;
  const clients = [];
  before(async () => {
    open = await startServer(BIN, ['--port', '0'], { name: 'rooms' });
    auth = await startServer(BIN, ['--port', '0', '--jwt-secret', SECRET], { name: 'rooms-jwt' });
  });
  after(async () => {
    for (const c of clients) c.destroy();
    for (const s of [open, auth]) {
      if (!s) continue;
      const r = await s.stop();
      assert.equal(r.killed, false);
      assert.equal(s.sanitizerReport(), null);
    }
  });
  const connect = async (port, sub) => {
    const c = await HubClient.connect(port, sub ? { protocols: `sb.v1, bearer.${token(sub)}` } : {});
    clients.push(c);
    return c;
  };

  test('anonymous clients may read but not write', async () => {
    const c = await connect(open.port);
    assert.deepEqual(await call(c, METHOD.GET, '/me'), { status: 200, body: { identity: '' } });
    assert.deepEqual(await call(c, METHOD.GET, '/rooms'), { status: 200, body: [] });
    assert.deepEqual(await call(c, METHOD.POST, '/rooms/lobby/messages', 'hi'),
      { status: 401, body: { error: 'Unauthorized' } });
    assert.deepEqual(await call(c, METHOD.GET, '/rooms/lobby/messages'), { status: 404, body: { error: 'Not Found' } });
  });

  test('with --jwt-secret an upgrade without a token is refused', async () => {
    await assert.rejects(HubClient.connect(auth.port), /handshake: HTTP\/1.1 401/);
  });

  test('join, post, the push to members, the history with its position, leave', async () => {
    const alice = await connect(auth.port, 'alice');
    const bob = await connect(auth.port, 'bob');
    assert.deepEqual(await call(alice, METHOD.GET, '/me'), { status: 200, body: { identity: 'alice' } });
    assert.equal((await call(alice, METHOD.PUT, '/rooms/lobby/members/me')).status, 204);
    assert.equal((await call(bob, METHOD.PUT, '/rooms/lobby/members/me')).status, 204);
    assert.deepEqual(await call(alice, METHOD.POST, '/rooms/lobby/messages', 'hello "bob"'),
      { status: 201, body: { seq: 1 } });
    for (const c of [alice, bob]) {
      const p = await c.take((m) => m.kind === KIND.PUSH, 5000, 'the room push');
      assert.equal(p.stream, 'g:room:lobby');
      assert.equal(p.url, '/rooms/lobby/messages');
      assert.equal(p.method, METHOD.POST);
      assert.deepEqual(JSON.parse(p.body), { from: 'alice', text: 'hello "bob"' });
    }
    const h = await call(bob, METHOD.GET, '/rooms/lobby/messages');
    assert.equal(h.status, 200);
    assert.equal(h.body.offset, 1);
    assert.deepEqual(h.body.messages, [{ from: 'alice', text: 'hello "bob"' }]);
    assert.deepEqual(await call(bob, METHOD.GET, '/rooms'), { status: 200, body: [{ id: 'lobby', members: 2 }] });
    assert.equal((await call(bob, METHOD.DELETE, '/rooms/lobby/members/me')).status, 204);
    assert.deepEqual(await call(bob, METHOD.GET, '/rooms'), { status: 200, body: [{ id: 'lobby', members: 1 }] });
    assert.equal((await call(alice, METHOD.POST, '/rooms/lobby/messages', '')).status, 422);
  });

  test('reading never creates a room', async () => {
    const c = await connect(open.port);
    const reader = await connect(auth.port, 'reader');
    for (let i = 0; i < 40; i++) {
      assert.equal((await call(c, METHOD.GET, `/rooms/ghost${i}/messages`)).status, 404);
      assert.equal((await call(reader, METHOD.GET, `/rooms/ghost${i}/messages`)).status, 404);
      assert.equal((await httpGet(open.port, `/rooms/ghost${i}/messages`)).status, 404);
    }
    assert.deepEqual((await httpGet(open.port, '/rooms')).body, []);
    const ids = (await httpGet(auth.port, '/rooms')).body.map((r) => r.id);
    assert.ok(!ids.some((id) => id.startsWith('ghost')), JSON.stringify(ids));
  });

  test('a user creates at most 8 rooms; posting to and joining rooms of others goes on', async () => {
    const q = await connect(auth.port, 'quota');
    const other = await connect(auth.port, 'other');
    for (let i = 0; i < 8; i++) {
      const r = i % 2 ? await call(q, METHOD.PUT, `/rooms/q${i}/members/me`) : await call(q, METHOD.POST, `/rooms/q${i}/messages`, 'hi');
      assert.equal(r.status, i % 2 ? 204 : 201, `room ${i}: ${JSON.stringify(r)}`);
    }
    const refused = { status: 403, body: { error: 'Forbidden', message: 'a user may create at most 8 rooms' } };
    assert.deepEqual(await call(q, METHOD.POST, '/rooms/q8/messages', 'one too many'), refused);
    assert.deepEqual(await call(q, METHOD.PUT, '/rooms/q8/members/me'), refused);
    assert.equal((await call(other, METHOD.PUT, '/rooms/o1/members/me')).status, 204);
    assert.equal((await call(q, METHOD.POST, '/rooms/o1/messages', 'in a room of another')).status, 201);
    assert.equal((await call(q, METHOD.PUT, '/rooms/o1/members/me')).status, 204);
    assert.deepEqual(await call(q, METHOD.POST, `/rooms/${'x'.repeat(32)}/messages`, 'hi'),
      { status: 422, body: { error: 'Unprocessable Entity', message: 'a room id is 1 to 31 bytes of UTF-8' } });
    assert.equal((await call(q, METHOD.POST, '/rooms/%FF/messages', 'hi')).status, 422, 'an id that is not UTF-8');
    const ids = (await httpGet(auth.port, '/rooms')).body.map((r) => r.id);
    assert.deepEqual(ids.filter((id) => /^q\d$/.test(id)).sort(), ['q0', 'q1', 'q2', 'q3', 'q4', 'q5', 'q6', 'q7']);
  });

  test('64 rooms (the most) with ids of 31 control characters: GET /rooms lists them all as valid JSON', async () => {
    // 8 users × 8 rooms each; the list is about 64 × 215 bytes, past the 8 KiB the example
    // once wrote it into (an anonymous GET then crashed it).
    const s = await startServer(BIN, ['--jwt-secret', SECRET], { name: 'rooms-full' });
    try {
      const ids = [];
      const users = [];
      for (let u = 0; u < 8; u++) {
        const c = await connect(s.port, `user${u}`);
        users.push(c);
        for (let k = 0; k < 8; k++) {
          const id = controlId(u * 8 + k);
          ids.push(id);
          const r = k % 2 ? await call(c, METHOD.PUT, roomUrl(id, 'members/me')) : await call(c, METHOD.POST, roomUrl(id), 'x');
          assert.equal(r.status, k % 2 ? 204 : 201, `room ${u * 8 + k}: ${JSON.stringify(r)}`);
        }
      }
      const byId = (a, b) => (a.id < b.id ? -1 : 1);
      const want = ids.map((id, i) => ({ id, members: i % 2 })).sort(byId);
      const h = await httpGet(s.port, '/rooms');
      assert.equal(h.status, 200);
      assert.match(h.type, /^application\/json/);
      assert.deepEqual(h.body.sort(byId), want);
      assert.equal((await call(users[0], METHOD.POST, roomUrl(controlId(100)), 'x')).status, 403);
      const late = await connect(s.port, 'latecomer');
      assert.deepEqual(await call(late, METHOD.PUT, roomUrl(controlId(101), 'members/me')),
        { status: 507, body: { error: 'Insufficient Storage', message: 'all 64 rooms are taken' } });
      assert.equal((await call(late, METHOD.POST, roomUrl(ids[63]), 'an existing room')).status, 201);
      assert.deepEqual((await call(late, METHOD.GET, '/rooms')).body.sort(byId), want);
      assert.ok(s.alive(), 'the server died');
    } finally {
      const r = await s.stop();
      assert.equal(s.sanitizerReport(), null);
      assert.equal(r.killed, false);
    }
  });

  test('the longest, most-escaped history: 50 texts of 500 control characters from an identity of 63', async () => {
    const who = controls(63);
    const poster = await connect(auth.port, who);
    const texts = Array.from({ length: 50 }, (_, i) => controls(500, i));
    for (const t of texts) assert.equal((await call(poster, METHOD.POST, roomUrl('history'), t)).status, 201);
    const want = texts.map((text) => ({ from: who, text }));
    const h = await httpGet(auth.port, roomUrl('history'));
    assert.equal(h.status, 200);
    assert.equal(h.body.offset, 50);
    assert.deepEqual(h.body.messages, want);
    const w = await call(poster, METHOD.GET, roomUrl('history'));
    assert.deepEqual(w.body.messages, want);
    assert.ok(auth.alive(), 'the server died');
  });

  test('an identity of 190 bytes (the most) of control characters is kept whole', async () => {
    const who = controls(190, 7);
    const c = await connect(auth.port, who);
    assert.deepEqual(await call(c, METHOD.GET, '/me'), { status: 200, body: { identity: who } });
    assert.equal((await call(c, METHOD.PUT, roomUrl('long-names', 'members/me'))).status, 204);
    assert.equal((await call(c, METHOD.POST, roomUrl('long-names'), controls(500))).status, 201);
    const p = await c.take((m) => m.kind === KIND.PUSH, 5000, 'the room push');
    assert.deepEqual(JSON.parse(p.body), { from: who, text: controls(500) });
    assert.deepEqual((await httpGet(auth.port, roomUrl('long-names'))).body.messages, [{ from: who, text: controls(500) }]);
    assert.equal((await call(c, METHOD.POST, `/users/${encodeURIComponent(who)}/pokes`)).status, 202);
    const poke = await c.take((m) => m.kind === KIND.PUSH && m.url === '/pokes', 5000, 'the poke');
    assert.deepEqual(JSON.parse(poke.body), { from: who });
  });

  test('a room id with "/" and control characters is percent-encoded in the push url', async () => {
    const c = await connect(auth.port, 'slash');
    const id = 'a/b?c\n';
    assert.equal((await call(c, METHOD.PUT, roomUrl(id, 'members/me'))).status, 204);
    assert.equal((await call(c, METHOD.POST, roomUrl(id), 'hi')).status, 201);
    const p = await c.take((m) => m.kind === KIND.PUSH, 5000, 'the room push');
    assert.equal(p.url, '/rooms/a%2Fb%3Fc%0A/messages');
  });

  test('the request log escapes what clients sent: a newline forges no line', async () => {
    const s = await startServer(BIN, ['--jwt-secret', SECRET], { name: 'rooms-log' });
    try {
      const mallory = await connect(s.port, 'mallory');
      const eve = await connect(s.port, 'eve\nGET /forged (admin)');
      assert.equal((await call(mallory, METHOD.GET, '/rooms\nGET /forged (admin)')).status, 404);
      // ESC (a terminal's escape sequences) and U+0085 (a C1 control, a newline to some
      // readers). Bytes that are not UTF-8 cannot come this way (the library refuses them in an
      // envelope's url and an HTTP request target); tests/unit/test_strbuf.c escapes them.
      assert.equal((await call(mallory, METHOD.GET, '/rooms/\x1b[2J\u0085é')).status, 404);
      assert.equal((await call(eve, METHOD.GET, '/me')).status, 200);
      assert.equal((await fetch(`http://127.0.0.1:${s.port}/rooms%0AGET%20/forged`)).status, 404);
      const want = [
        'GET /rooms\\x0aGET /forged (admin) (mallory)',
        'GET /rooms/\\x1b[2J\\xc2\\x85é (mallory)',
        'GET /me (eve\\x0aGET /forged (admin))',
        'GET /rooms%0AGET%20/forged (anonymous)',
      ];
      const lines = () => s.stderr().split('\n').filter(Boolean);
      for (let t = 0; t < 100 && !want.every((w) => lines().includes(w)); t++) await new Promise((r) => setTimeout(r, 50));
      assert.deepEqual(lines().filter((l) => !l.startsWith('GET /me (mallory)')), want);
      assert.ok(!/[\x00-\x08\x0b-\x1f\x7f]/.test(s.stderr()), 'a control character reached the log');
    } finally {
      const r = await s.stop();
      assert.equal(s.sanitizerReport(), null);
      assert.equal(r.killed, false);
    }
  });

  test('a poke reaches every tab of the user', async () => {
    const carol1 = await connect(auth.port, 'carol');
    const carol2 = await connect(auth.port, 'carol');
    const dan = await connect(auth.port, 'dan');
    assert.equal((await call(dan, METHOD.POST, '/users/carol/pokes')).status, 202);
    for (const c of [carol1, carol2]) {
      const p = await c.take((m) => m.kind === KIND.PUSH, 5000, 'the poke');
      assert.equal(p.stream, 'g:user:carol');
      assert.deepEqual(JSON.parse(p.body), { from: 'dan' });
    }
  });
});
