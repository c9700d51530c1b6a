// The JavaScript client (client/) against the real C servers: examples/rooms for requests and
// pushes, tests/fixtures/hubtest for resume, heartbeats, restarts and token refresh. In Node the
// client runs on npm `ws`. Where a test needs the network to fail, a TCP proxy on loopback sits
// between the client and the server and drops, refuses or freezes connections.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';
import { SwitchboardClient, SwitchboardError } from '../../client/index.js';
import { HUBTEST_BIN, HubClient, startServer } from './hub.mjs';
import { KIND } from './proto.mjs';

const ROOMS_BIN = process.env.SB_ROOMS || path.resolve(import.meta.dirname, '../../build/examples/rooms');
const SECRET = 'the-client-test-secret-0123456789abcdef';

function jwt(sub, expiresInS, secret = SECRET) {
  const enc = (o) => Buffer.from(JSON.stringify(o)).toString('base64url');
  const data = `${enc({ alg: 'HS256', typ: 'JWT' })}.${enc({ sub, exp: Math.floor(Date.now() / 1000) + expiresInS })}`;
  return `${data}.${crypto.createHmac('sha256', secret).update(data).digest('base64url')}`;
}

const clients = [];
function client(opts) {
  const c = new SwitchboardClient({ WebSocket, ...opts });
  clients.push(c);
  return c;
}

/** Resolves with pred()'s first truthy value, polling. */
async function until(pred, timeoutMs = 5000, what = 'a condition') {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timeout after ${timeoutMs} ms waiting for ${what}`);
    await sleep(5);
  }
}

/** Every event of a client, in order. */
function record(c) {
  const log = [];
  for (const n of ['open', 'close', 'reconnecting', 'resumed', 'error', 'auth']) c.on(n, (arg) => log.push({ name: n, arg }));
  return log;
}

/**
 * A TCP proxy on 127.0.0.1: forwards to `target`, and can drop every connection (the peers
 * see the TCP connection end), refuse new ones, or freeze the current ones (nothing passes,
 * nothing closes: a dead network path).
 */
class Proxy {
  constructor(target) {
    this.target = target;
    this.refusing = false;
    this.pairs = new Set();
    this.accepted = 0;
    this.server = net.createServer((a) => {
      if (this.refusing) { a.destroy(); return; }
      this.accepted++;
      const b = net.connect({ port: this.target, host: '127.0.0.1' });
      const pair = { a, b, frozen: false };
      this.pairs.add(pair);
      const end = () => { a.destroy(); b.destroy(); this.pairs.delete(pair); };
      a.on('data', (d) => { if (!pair.frozen) b.write(d); });
      b.on('data', (d) => { if (!pair.frozen) a.write(d); });
      for (const s of [a, b]) { s.on('error', end); s.on('close', () => { if (!pair.frozen) end(); }); }
    });
  }
  async listen() {
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = this.server.address().port;
    this.url = `ws://127.0.0.1:${this.port}/`;
    return this;
  }
  dropAll() { for (const p of [...this.pairs]) { p.frozen = false; p.a.destroy(); p.b.destroy(); this.pairs.delete(p); } }
  freezeAll() { for (const p of this.pairs) p.frozen = true; }
  close() {
    this.dropAll();
    return new Promise((r) => this.server.close(r));
  }
}

/** A port nothing listens on. */
async function deadPort() {
  const s = net.createServer();
  await new Promise((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address();
  await new Promise((r) => s.close(r));
  return port;
}

const servers = [];
async function start(bin, args, name) {
  const s = await startServer(bin, args, { name });
  servers.push(s);
  return s;
}
const wsUrl = (s) => `ws://127.0.0.1:${s.port}/`;

after(async () => {
  for (const c of clients) c.close();
  for (const s of servers) {
    if (!s.alive()) continue;
    const r = await s.stop();
    assert.equal(r.killed, false, `${s.name} needed SIGKILL`);
    assert.equal(s.sanitizerReport(), null);
  }
});

describe('requests and pushes against examples/rooms', () => {
  let open;
  let secured;
  before(async () => {
    open = await start(ROOMS_BIN, [], 'rooms');
    secured = await start(ROOMS_BIN, ['--jwt-secret', SECRET], 'rooms-jwt');
  });

  test('anonymous requests: status and JSON bodies, errors as statuses', async () => {
    const c = client({ url: wsUrl(open) });
    assert.deepEqual(await c.get('/me'), { status: 200, ok: true, body: { identity: '' }, raw: (await c.get('/me')).raw });
    assert.deepEqual((await c.get('/rooms')).body, []);
    const denied = await c.post('/rooms/lobby/messages', 'hi');
    assert.equal(denied.status, 401);
    assert.deepEqual(denied.body, { error: 'Unauthorized' });
    assert.equal((await c.get('/rooms/nowhere/messages')).status, 404);
    assert.equal((await c.get('/me', { responseType: 'text' })).body, '{"identity":""}');
  });

  test('with a token: join, post, the push reaches listeners by pattern; stopListening stops it', async () => {
    const alice = client({ url: wsUrl(secured), token: () => jwt('alice', 600) });
    const bob = client({ url: wsUrl(secured), token: jwt('bob', 600) });
    assert.deepEqual((await alice.get('/me')).body, { identity: 'alice' });
    assert.deepEqual((await bob.get('/me')).body, { identity: 'bob' });
    const notAllowed = await alice.patch('/rooms', { x: 1 });
    assert.equal(notAllowed.status, 405);
    assert.deepEqual(notAllowed.body, { error: 'Method Not Allowed', allow: ['GET'] });
    assert.equal((await alice.put('/rooms/lobby/members/me')).status, 204);
    assert.equal((await bob.put('/rooms/lobby/members/me')).status, 204);

    const seen = [];
    const off = bob.on('/rooms/:roomId/messages', (p) => seen.push({ via: 'on', room: p.params.roomId, ...p.body, method: p.method, stream: p.stream, offset: p.offset }));
    const l = bob.addServerResponseListenerFor.post('/rooms/:roomId/messages', (p) => seen.push({ via: 'post', text: p.body.text }));
    const getOnly = bob.addServerResponseListenerFor.get('/rooms/:roomId/messages', (p) => seen.push({ via: 'get' }));
    const posted = await alice.post('/rooms/lobby/messages', 'hello "bob"');
    assert.deepEqual([posted.status, posted.body], [201, { seq: 1 }]);
    await until(() => seen.length === 2, 5000, 'the push');
    assert.deepEqual(seen, [
      { via: 'on', room: 'lobby', from: 'alice', text: 'hello "bob"', method: 'POST', stream: 'g:room:lobby', offset: 1 },
      { via: 'post', text: 'hello "bob"' },
    ]);

    l.stopListening();
    getOnly.stopListening();
    await alice.send('/rooms/lobby/messages', 'one-way'); // SEND: the route runs, no response
    await until(() => seen.length === 3, 5000, 'the push of the one-way send');
    assert.deepEqual(seen[2].text, 'one-way');
    off();
    await alice.post('/rooms/lobby/messages', 'nobody listens');
    const history = await bob.get('/rooms/lobby/messages');
    assert.equal(history.body.offset, 3);
    await sleep(50);
    assert.equal(seen.length, 3);
    assert.deepEqual(bob.positions()['g:room:lobby'].offset, 3, 'positions advance with or without listeners');
  });

  test('a push to every tab of a user', async () => {
    const tabs = [client({ url: wsUrl(secured), token: jwt('carol', 600) }), client({ url: wsUrl(secured), token: jwt('carol', 600) })];
    const dan = client({ url: wsUrl(secured), token: jwt('dan', 600) });
    const got = tabs.map((t) => t.addServerResponseListenerFor.post('/pokes'));
    await Promise.all(tabs.map((t) => t.ready()));
    assert.equal((await dan.post('/users/carol/pokes')).status, 202);
    for (const l of got) {
      const p = await l.next();
      assert.deepEqual(p.body, { from: 'dan' });
      assert.equal(p.stream, 'g:user:carol');
    }
  });

  test('an upgrade refused for a missing token: the client reports it and keeps trying', async () => {
    const c = client({ url: wsUrl(secured), reconnect: { initialDelay: 20, maxDelay: 20, maxAttempts: 2 } });
    const log = record(c);
    await until(() => c.state === 'closed', 5000);
    const errors = log.filter((e) => e.name === 'error').map((e) => e.arg.code);
    assert.deepEqual(errors, ['CONNECT', 'CONNECT', 'CONNECT', 'GAVE_UP']);
    assert.match(log[0].arg.message, /401/);
  });
});

describe('resume against tests/fixtures/hubtest', () => {
  test('the hub answers PING at once, without the application', async () => {
    const hub = await start(HUBTEST_BIN, [], 'hubtest-ping');
    const raw = await HubClient.connect(hub.port);
    raw.sendEnv({ kind: KIND.PING, id: 77 });
    const pong = await raw.take((m) => m.kind === KIND.PING);
    assert.deepEqual([pong.id, pong.status], [77, 200]);
    raw.destroy();
  });

  test('connections dropped while another client publishes: resumed with no gap and no duplicate', async () => {
    const hub = await start(HUBTEST_BIN, [], 'hubtest');
    const proxy = await new Proxy(hub.port).listen();
    try {
      const sub = client({ url: proxy.url, reconnect: { initialDelay: 20, maxDelay: 100 }, ackInterval: 50 });
      const log = record(sub);
      const group = [];
      const direct = [];
      let replayed = 0; // pushes that arrived while a RESUME was unanswered: the replay
      sub.on('/message', (p) => { group.push(Number(p.body)); if (sub.state === 'resuming') replayed++; });
      sub.on('/direct', (p) => { direct.push(Number(p.body)); if (sub.state === 'resuming') replayed++; });
      assert.equal((await sub.post('/join/g1')).status, 200);
      const id = sub.connectionId;

      const pub = client({ url: wsUrl(hub) });
      const N = 300;
      for (let i = 1; i <= N; i++) {
        await pub.post('/publish/g1', String(i));
        if (i % 3 === 0) await pub.post(`/send/${id}`, String(i / 3));
        if (i === 60 || i === 150 || i === 240) {
          proxy.dropAll();
          await pub.post('/publish/g1', String(++i)); // at least one while the subscriber is away
        }
        if (i % 10 === 0) await sleep(2);
      }
      await until(() => group.length >= N && direct.length >= N / 3, 10000, `all pushes (group ${group.length}, direct ${direct.length})`);
      await sleep(100);
      assert.deepEqual(group, Array.from({ length: N }, (_, i) => i + 1));
      assert.deepEqual(direct, Array.from({ length: N / 3 }, (_, i) => i + 1));
      assert.equal(sub.connectionId, id, 'the session (and its id) survived');
      const resumed = log.filter((e) => e.name === 'resumed').map((e) => e.arg);
      assert.ok(resumed.length >= 3, `three resumes (${resumed.length})`);
      for (const r of resumed) assert.equal(r.recovered, true, JSON.stringify(r));
      assert.equal(log.filter((e) => e.name === 'close').length, resumed.length);
      assert.ok(proxy.accepted >= 4);
      assert.ok(replayed >= 3, `pushes missed while away were replayed (${replayed})`);
    } finally {
      await proxy.close();
    }
  });

  test('a dead connection (nothing passes, nothing closes) is found by the heartbeat and resumed', async () => {
    const hub = await start(HUBTEST_BIN, [], 'hubtest-heartbeat');
    const proxy = await new Proxy(hub.port).listen();
    try {
      const sub = client({ url: proxy.url, heartbeatInterval: 150, heartbeatTimeout: 250, reconnect: { initialDelay: 10, maxDelay: 50 } });
      const log = record(sub);
      const got = [];
      sub.on('/message', (p) => got.push(p.body));
      await sub.post('/join/hb');
      const pub = client({ url: wsUrl(hub) });
      await pub.post('/publish/hb', 'before');
      await until(() => got.length === 1);
      proxy.freezeAll();
      await pub.post('/publish/hb', 'during');
      await until(() => log.some((e) => e.name === 'resumed'), 5000, 'the resume');
      await pub.post('/publish/hb', 'after');
      await until(() => got.length === 3);
      assert.deepEqual(got, ['before', 'during', 'after']);
      assert.equal(log.find((e) => e.name === 'error').arg.code, 'HEARTBEAT');
      assert.equal(log.find((e) => e.name === 'resumed').arg.recovered, true);
    } finally {
      await proxy.close();
    }
  });

  test('after a server restart (a new epoch, no session) the client reports recovered: false', async () => {
    const first = await start(HUBTEST_BIN, [], 'hubtest-1');
    const proxy = await new Proxy(first.port).listen();
    try {
      const c = client({ url: proxy.url, reconnect: { initialDelay: 10, maxDelay: 50 } });
      const log = record(c);
      const got = [];
      c.on('/message', (p) => got.push(`${p.offset}:${p.body}`));
      await c.post('/join/room');
      const pub1 = client({ url: wsUrl(first), reconnect: false });
      for (const m of ['a', 'b']) await pub1.post('/publish/room', m);
      await until(() => got.length === 2);
      const before = c.positions()['g:room'];
      assert.equal(before.offset, 2);

      const second = await start(HUBTEST_BIN, [], 'hubtest-2');
      proxy.target = second.port;
      const stopped = await first.stop(); // close 1001 to every client
      assert.equal(stopped.killed, false);
      const resumed = await until(() => log.find((e) => e.name === 'resumed')?.arg, 5000, 'resumed');
      assert.deepEqual(resumed, {
        recovered: false, sessionLost: true, status: 401, reason: 'resume refused: unknown, used or expired token',
        streams: { 'g:room': { recovered: false, offset: 2, epoch: before.epoch } },
      });
      assert.deepEqual(log.find((e) => e.name === 'reconnecting').arg, { attempt: 1, delay: 0 }, '1001: at once');
      // the application reloads its state: joins again, and hears the new epoch
      await c.post('/join/room');
      const pub2 = client({ url: wsUrl(second) });
      await pub2.post('/publish/room', 'c');
      await until(() => got.length === 3);
      assert.equal(got[2], '1:c');
      assert.notEqual(c.positions()['g:room'].epoch, before.epoch);
    } finally {
      await proxy.close();
    }
  });

  test('requests while disconnected wait for the connection, or fail at once, by option', async () => {
    const hub = await start(HUBTEST_BIN, [], 'hubtest-offline');
    const proxy = await new Proxy(hub.port).listen();
    try {
      const reconnect = { initialDelay: 30, maxDelay: 60 };
      const waiting = client({ url: proxy.url, reconnect });
      const failing = client({ url: proxy.url, reconnect, whileDisconnected: 'fail' });
      await Promise.all([waiting.ready(), failing.ready()]);
      proxy.refusing = true;
      proxy.dropAll();
      await until(() => waiting.state !== 'open' && failing.state !== 'open');
      await assert.rejects(failing.get('/whoami'), (e) => e instanceof SwitchboardError && e.code === 'DISCONNECTED');
      const short = waiting.get('/whoami', { timeout: 100 });
      const later = waiting.get('/whoami', { timeout: 5000 });
      await assert.rejects(short, (e) => e.code === 'TIMEOUT');
      await sleep(200);
      proxy.refusing = false;
      const r = await later;
      assert.equal(r.status, 200);
      assert.equal(r.body, waiting.connectionId);
      await failing.ready();
      assert.equal((await failing.get('/whoami')).status, 200);
    } finally {
      await proxy.close();
    }
  });

  test('several urls: a dead one is skipped; a discovery url lists the live nodes', async () => {
    const hub = await start(HUBTEST_BIN, [], 'hubtest-urls');
    const dead = `ws://127.0.0.1:${await deadPort()}/`;
    const c = client({ url: [dead, wsUrl(hub)], reconnect: { initialDelay: 10 } });
    const log = record(c);
    await c.ready();
    assert.equal(log.find((e) => e.name === 'open').arg.url, wsUrl(hub));
    assert.deepEqual(log.filter((e) => e.name === 'reconnecting').map((e) => e.arg.attempt), [1]);

    const disco = http.createServer((req, res) => {
      res.setHeader('content-type', 'application/json');
      res.end(JSON.stringify({ nodes: [dead, { url: wsUrl(hub) }] }));
    });
    await new Promise((r) => disco.listen(0, '127.0.0.1', r));
    try {
      const d = client({ discoveryUrl: `http://127.0.0.1:${disco.address().port}/nodes`, reconnect: { initialDelay: 10 } });
      const dlog = record(d);
      await d.ready();
      assert.equal(dlog.find((e) => e.name === 'open').arg.url, wsUrl(hub));
      assert.equal((await d.get('/whoami')).body, d.connectionId);
    } finally {
      await new Promise((r) => disco.close(r));
    }
  });
});

describe('credentials that expire (hubtest --jwt-hs256)', () => {
  let hub;
  before(async () => {
    hub = await start(HUBTEST_BIN, ['--jwt-hs256', SECRET, '--refresh-before-ms', '3000'], 'hubtest-jwt');
  });

  test('AUTH 401: the token function gives a new token and the connection lives on', async () => {
    const calls = [];
    const c = client({
      url: wsUrl(hub),
      token: ({ reason }) => { calls.push(reason); return jwt('erin', reason === 'connect' ? 4 : 600); },
    });
    const log = record(c);
    const first = (await c.get('/identity')).body.split('|');
    assert.equal(first[0], 'erin');
    const ok = await until(() => log.find((e) => e.name === 'auth' && e.arg.status === 200)?.arg, 8000, 'AUTH 200');
    assert.ok(ok.expires > Number(first[2]) + 500);
    assert.deepEqual(calls, ['connect', 'refresh']);
    const now = (await c.get('/identity')).body.split('|');
    assert.equal(Number(now[2]), ok.expires);
    await sleep(1500); // past the first token's expiry: still open
    assert.equal(c.state, 'open');
    assert.equal(log.filter((e) => e.name === 'open').length, 1);
  });

  test('a refused refresh: closed with 4001 at expiry, a new token, reconnected and resumed', async () => {
    const calls = [];
    const c = client({
      url: wsUrl(hub),
      reconnect: { initialDelay: 10 },
      token: ({ reason }) => {
        calls.push(reason);
        if (reason === 'refresh') return jwt('fay', 600, 'not-the-secret');
        return jwt('fay', calls.length === 1 ? 3 : 600);
      },
    });
    const log = record(c);
    await c.post('/join/fay-room');
    const got = [];
    c.on('/message', (p) => got.push(p.body));
    const pub = client({ url: wsUrl(hub), token: jwt('pub', 600) });
    await pub.post('/publish/fay-room', 'first'); // a position in the group, to resume from
    await until(() => got.length === 1);
    await until(() => log.some((e) => e.name === 'close'), 8000, 'the close at expiry');
    assert.equal(log.find((e) => e.name === 'close').arg.code, 4001);
    assert.equal(log.find((e) => e.name === 'auth' && e.arg.status === 401).arg.status, 401);
    assert.ok(log.some((e) => e.name === 'error' && e.arg.code === 'TOKEN'), 'the refused token is reported');
    const resumed = await until(() => log.find((e) => e.name === 'resumed')?.arg, 5000, 'the resume');
    assert.equal(resumed.recovered, true);
    assert.deepEqual(calls, ['connect', 'refresh', 'connect']);
    await pub.post('/publish/fay-room', 'still a member');
    await until(() => got.length === 2);
    assert.deepEqual(got, ['first', 'still a member']);
    assert.equal((await c.get('/identity')).body.split('|')[0], 'fay');
  });

  test('a refreshed token for another identity: 4003 closes the client for good', async () => {
    const c = client({ url: wsUrl(hub), token: ({ reason }) => jwt(reason === 'refresh' ? 'mallory' : 'gus', reason === 'refresh' ? 600 : 3) });
    const log = record(c);
    await c.ready();
    await until(() => c.state === 'closed', 8000, 'the close');
    const err = log.find((e) => e.name === 'error' && e.arg.code === 'IDENTITY');
    assert.ok(err, JSON.stringify(log.map((e) => e.name)));
    assert.deepEqual(log[log.length - 1].arg, { code: 4003, reason: log[log.length - 1].arg.reason, willReconnect: false });
    await assert.rejects(c.get('/identity'), (e) => e.code === 'CLOSED');
  });
});
