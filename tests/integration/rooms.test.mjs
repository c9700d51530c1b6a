// examples/rooms, the REST example a reader copies: routes, middleware (the write guard),
// JWT auth of the upgrade, pushes to a room's group and to a user, history with its position.
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
