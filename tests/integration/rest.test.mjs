// The rest layer over WebSocket (src/rest/app.c) through tests/fixtures/resttest.c: routing
// (parameters, literal over parameter, wildcard tails, 404, 405 with the allowed methods),
// middleware order, per-request values, short-circuit, asynchronous next, error handling
// without internal detail, asynchronous responses, a response after the connection closed,
// one-way sends, and bad requests.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import path from 'node:path';
import { HubClient, startServer } from './hub.mjs';
import { KIND, METHOD } from './proto.mjs';

const BIN = process.env.SB_RESTTEST || path.resolve(import.meta.dirname, '../../build/tests/resttest');

let srv;
let c;
before(async () => {
  srv = await startServer(BIN, [], { name: 'resttest' });
  c = await HubClient.connect(srv.port);
});
after(async () => {
  if (c) c.destroy();
  if (srv) {
    const r = await srv.stop();
    assert.equal(r.killed, false, 'resttest needed SIGKILL');
    assert.equal(srv.sanitizerReport(), null);
  }
});

async function call(url, { method = METHOD.GET, body = '' } = {}) {
  const r = await c.request(url, body, { method });
  return { kind: r.kind, status: r.status, body: r.body.toString('utf8') };
}

describe('mounted routers', () => {
  test('routes under a prefix, with the app\'s middleware and parameters', async () => {
    assert.deepEqual(await call('/api/v1/rooms/9?as=zoe'), { kind: KIND.RESPONSE, status: 200, body: 'v1 room=9 user=zoe' });
    assert.deepEqual(await call('/api/v1/rooms/9', { method: METHOD.DELETE }), { kind: KIND.RESPONSE, status: 204, body: '' });
  });
  test('a router nested in a mounted router', async () => {
    assert.deepEqual(await call('/api/v1/admin/health'), { kind: KIND.RESPONSE, status: 200, body: 'ok' });
  });
  test('404 and 405 through a mount', async () => {
    assert.equal((await call('/api/v2/rooms/9')).status, 404);
    assert.equal((await call('/api/v1/nothing')).status, 404);
    assert.deepEqual(await call('/api/v1/rooms/9', { method: METHOD.PUT }),
      { kind: KIND.RESPONSE, status: 405, body: '{"error":"Method Not Allowed","allow":["GET","DELETE"]}' });
  });
});

describe('routing', () => {
  test('a parameter, the query string decoded, and a value set by middleware', async () => {
    assert.deepEqual(await call('/rooms/42?x=a%20b&as=alice'),
      { kind: KIND.RESPONSE, status: 200, body: 'room=42 user=alice q=a b' });
    assert.deepEqual(await call('/rooms/7'),
      { kind: KIND.RESPONSE, status: 200, body: 'room=7 user=anonymous q=-' });
  });
  test('percent-decoded parameters', async () => {
    assert.equal((await call('/rooms/J%C3%BCrgen')).body, 'room=Jürgen user=anonymous q=-');
  });
  test('a literal beats a parameter', async () => {
    assert.deepEqual(await call('/rooms/special'), { kind: KIND.RESPONSE, status: 200, body: 'special' });
  });
  test('wildcard tail', async () => {
    assert.equal((await call('/files/css/app.css')).body, 'css/app.css');
  });
  test('POST with a body', async () => {
    assert.deepEqual(await call('/rooms/3/messages', { method: METHOD.POST, body: 'hi there' }),
      { kind: KIND.RESPONSE, status: 201, body: '3:hi there' });
  });
  test('any method', async () => {
    for (const m of [METHOD.GET, METHOD.POST, METHOD.PUT, METHOD.PATCH, METHOD.DELETE]) {
      assert.equal((await call('/any', { method: m })).body, String(m));
    }
  });
  test('404 for an unknown path', async () => {
    assert.deepEqual(await call('/nowhere'), { kind: KIND.RESPONSE, status: 404, body: '{"error":"Not Found"}' });
  });
  test('405 with the allowed methods', async () => {
    assert.deepEqual(await call('/rooms/3', { method: METHOD.DELETE }),
      { kind: KIND.RESPONSE, status: 405, body: '{"error":"Method Not Allowed","allow":["GET"]}' });
    assert.deepEqual(await call('/rooms/3/messages', { method: METHOD.GET }),
      { kind: KIND.RESPONSE, status: 405, body: '{"error":"Method Not Allowed","allow":["POST"]}' });
  });
  test('bad requests: no method, a path without "/", a malformed escape', async () => {
    assert.equal((await call('/rooms/1', { method: METHOD.NONE })).status, 400);
    assert.equal((await call('rooms/1')).status, 400);
    assert.equal((await call('/rooms/%zz')).status, 400);
    assert.equal((await call('/rooms/1?x=%zz')).status, 400);
  });
});

describe('middleware', () => {
  test('short-circuit: /admin without the token answers 401, the route never runs', async () => {
    assert.deepEqual(await call('/admin/stats'), { kind: KIND.RESPONSE, status: 401, body: '{"error":"Unauthorized"}' });
  });
  test('asynchronous next: /admin with the token goes on 20 ms later', async () => {
    const t0 = Date.now();
    const r = await call('/admin/stats?token=ok');
    assert.equal(r.status, 200);
    assert.match(r.body, /^requests=\d+ sends=\d+ closed=\d+$/);
    assert.ok(Date.now() - t0 >= 15, 'answered before the middleware went on');
  });
  test('the prefix covers whole segments only', async () => {
    // "/administrator" is not under "/admin": no 401, and no route either
    assert.equal((await call('/administrator')).status, 404);
  });
  test('a failing middleware: 500 without the internal detail', async () => {
    const r = await call('/boom');
    assert.deepEqual(r, { kind: KIND.RESPONSE, status: 500, body: '{"error":"Internal Server Error"}' });
    assert.doesNotMatch(r.body, /hunter2/);
  });
  test('a failing handler: its status, no detail', async () => {
    const r = await call('/throw');
    assert.deepEqual(r, { kind: KIND.RESPONSE, status: 503, body: '{"error":"Service Unavailable"}' });
  });
  test('middleware runs in order and for every request (the counter grows by one each)', async () => {
    const a = Number((await call('/admin/stats?token=ok')).body.match(/requests=(\d+)/)[1]);
    await call('/rooms/1');
    await call('/nowhere'); // middleware runs before the 404 too
    const b = Number((await call('/admin/stats?token=ok')).body.match(/requests=(\d+)/)[1]);
    assert.equal(b - a, 3);
  });
});

describe('responses', () => {
  test('asynchronous responses keep their ids apart', async () => {
    const ids = [];
    const waits = [80, 10, 40].map((ms) => {
      const p = c.request(`/async/${ms}`, '', { method: METHOD.GET });
      return p.then((r) => { ids.push(ms); return r; });
    });
    const rs = await Promise.all(waits);
    for (const r of rs) assert.equal(r.status, 200);
    assert.deepEqual(ids, [10, 40, 80], 'answers arrive as they complete, matched by id');
  });
  test('a response after the connection closed is refused safely', async () => {
    const other = await HubClient.connect(srv.port);
    other.sendEnv({ kind: KIND.REQUEST, method: METHOD.GET, id: 9, url: '/late' });
    await new Promise((r) => setTimeout(r, 50));
    other.destroy();
    await new Promise((r) => setTimeout(r, 500)); // the fixture answers 300 ms after the request
    const stats = (await call('/admin/stats?token=ok')).body;
    assert.match(stats, /closed=1$/);
    assert.equal(srv.alive(), true);
  });
  test('a one-way SEND reaches its handler and gets no response', async () => {
    const before = Number((await call('/admin/stats?token=ok')).body.match(/sends=(\d+)/)[1]);
    c.sendEnv({ kind: KIND.SEND, method: METHOD.POST, url: '/log', body: 'x' });
    c.sendEnv({ kind: KIND.SEND, method: METHOD.POST, url: '/log', body: 'y' });
    const after = Number((await call('/admin/stats?token=ok')).body.match(/sends=(\d+)/)[1]);
    assert.equal(after - before, 2);
    // nothing but RESPONSEs to our requests arrived
    assert.equal(c.log.filter((m) => m.kind === KIND.RESPONSE && m.id === 0).length, 0);
  });
});
