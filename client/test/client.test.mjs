// The client against the in-process fake server (fake.mjs): requests and their timeouts, the
// wait/fail policy while disconnected, listener bookkeeping, gap and duplicate handling,
// resume, heartbeats, the reconnect schedule, browser events, persistence and AUTH.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { setTimeout as sleep } from 'node:timers/promises';
import { SwitchboardClient, SwitchboardError, decodeBody, encodeBody, METHOD, KIND } from '../index.js';
import { decodePositions, encodeResumedBody } from '../protocol.js';
import { FakeServer, record, text, until } from './fake.mjs';

const te = new TextEncoder();
const clients = [];
function connect(server, opts = {}) {
  const c = new SwitchboardClient({ url: 'ws://fake/', WebSocket: server.WebSocket, ...opts });
  clients.push(c);
  return c;
}
test.afterEach(() => { for (const c of clients.splice(0)) c.close(); });

const E = (code) => (e) => e instanceof SwitchboardError && e.code === code;

test('bodies: what goes out, and how what comes back is decoded', () => {
  assert.deepEqual(encodeBody(undefined), new Uint8Array(0));
  assert.deepEqual(encodeBody('héllo'), te.encode('héllo'));
  assert.deepEqual(encodeBody({ a: [1, 'x'] }), te.encode('{"a":[1,"x"]}'));
  assert.deepEqual(encodeBody(null), te.encode('null'));
  assert.deepEqual(encodeBody(42), te.encode('42'));
  const bytes = Uint8Array.from([0, 255]);
  assert.equal(encodeBody(bytes), bytes);
  assert.deepEqual(encodeBody(bytes.buffer), bytes);
  assert.throws(() => encodeBody('\ud800'), E('INVALID'));
  assert.throws(() => encodeBody(10n), E('INVALID'));
  assert.throws(() => encodeBody(() => 1), E('INVALID'));

  assert.equal(decodeBody(new Uint8Array(0)), null);
  assert.deepEqual(decodeBody(te.encode('{"ok":true}')), { ok: true });
  assert.equal(decodeBody(te.encode('hello')), 'hello');
  assert.equal(decodeBody(te.encode('123')), 123);
  assert.equal(decodeBody(bytes), bytes, 'not UTF-8: the bytes');
  assert.equal(decodeBody(te.encode('123'), 'text'), '123');
  assert.equal(decodeBody(new Uint8Array(0), 'text'), '');
  assert.equal(decodeBody(new Uint8Array(0), 'json'), null);
  assert.throws(() => decodeBody(te.encode('hello'), 'json'), E('BAD_BODY'));
  assert.throws(() => decodeBody(bytes, 'text'), E('BAD_BODY'));
  assert.equal(decodeBody(bytes, 'bytes'), bytes);
});

test('requests: methods, urls and bodies on the wire; responses with status, body and raw', async () => {
  const server = new FakeServer();
  server.onRequest = (env, conn) => {
    const echo = { method: env.method, url: env.url, body: text(env.body) };
    server.respond(conn, env.id, env.url === '/missing' ? 404 : 200, JSON.stringify(echo));
  };
  const c = connect(server);
  const r = await c.get('/rooms/1');
  assert.equal(r.status, 200);
  assert.equal(r.ok, true);
  assert.deepEqual(r.body, { method: METHOD.GET, url: '/rooms/1', body: '' });
  assert.ok(r.raw instanceof Uint8Array);
  assert.deepEqual((await c.post('/a', { x: 1 })).body.body, '{"x":1}');
  assert.deepEqual((await c.put('/a', 'text')).body, { method: METHOD.PUT, url: '/a', body: 'text' });
  assert.equal((await c.patch('/a', te.encode('raw'))).body.method, METHOD.PATCH);
  assert.equal((await c.delete('/a')).body.method, METHOD.DELETE);
  const missing = await c.get('/missing');
  assert.equal(missing.status, 404);
  assert.equal(missing.ok, false);
  assert.equal(typeof (await c.get('/x', { responseType: 'text' })).body, 'string');
  await assert.rejects(c.request('TRACE', '/x'), E('INVALID'));
  await assert.rejects(c.get(7), E('INVALID'));
  // ids are distinct and in flight together
  const ids = server.last.received.filter((e) => e.kind === KIND.REQUEST).map((e) => e.id);
  assert.equal(new Set(ids).size, ids.length);
});

test('an ERROR answering a request resolves like a response, marked error', async () => {
  const server = new FakeServer();
  server.onRequest = (env, conn) => server.send(conn, { kind: KIND.ERROR, id: env.id, status: 400, body: "field 'url': bad" });
  const c = connect(server);
  const r = await c.get('/x');
  assert.equal(r.status, 400);
  assert.equal(r.error, true);
  assert.equal(r.body, "field 'url': bad");
});

test('request timeouts: a request without an answer rejects with TIMEOUT; a late answer is ignored', async () => {
  const server = new FakeServer();
  const unanswered = [];
  server.onRequest = (env, conn) => {
    if (env.url === '/slow') unanswered.push(env.id);
    else server.respond(conn, env.id, 200, 'ok');
  };
  const c = connect(server, { timeout: 2000 });
  await c.ready();
  const t0 = Date.now();
  await assert.rejects(c.get('/slow', { timeout: 60 }), (e) => E('TIMEOUT')(e) && /GET \/slow: no response within 60 ms/.test(e.message));
  assert.ok(Date.now() - t0 >= 55);
  server.respond(server.last, unanswered[0], 200, 'too late'); // ignored
  assert.equal((await c.get('/fast')).body, 'ok');
  assert.equal(c._pending.size, 0, 'nothing left pending');
  // the client-wide default applies too
  const c2 = connect(server, { timeout: 50 });
  await assert.rejects(c2.get('/slow'), E('TIMEOUT'));
});

test('an AbortSignal cancels a request', async () => {
  const server = new FakeServer();
  server.onRequest = () => {};
  const c = connect(server);
  const ac = new AbortController();
  const p = c.get('/slow', { signal: ac.signal });
  setTimeout(() => ac.abort(), 20);
  await assert.rejects(p, E('ABORTED'));
  await assert.rejects(c.get('/x', { signal: AbortSignal.abort() }), E('ABORTED'));
});

test("requests while disconnected: 'wait' queues them (bounded, with their timeout); 'fail' rejects at once", async () => {
  const server = new FakeServer();
  server.refused.add('ws://down/');
  // wait: made before the connection opens, sent when it does
  const c = connect(server);
  const early = c.get('/early');
  assert.equal(c.state, 'connecting');
  assert.equal((await early).status, 200);

  // a client that cannot connect: queued requests time out, the queue is bounded
  const down = connect(server, { url: 'ws://down/', maxQueued: 2, timeout: 80, reconnect: { initialDelay: 10, maxDelay: 20 } });
  const q1 = down.get('/1');
  const q2 = down.send('/2', 'x');
  await assert.rejects(down.get('/3'), E('QUEUE_FULL'));
  await assert.rejects(q1, E('TIMEOUT'));
  await assert.rejects(q2, E('TIMEOUT'));
  assert.equal(down._queue.length, 0);

  const failing = connect(server, { url: 'ws://down/', whileDisconnected: 'fail', reconnect: { initialDelay: 10, maxDelay: 20 } });
  await assert.rejects(failing.get('/x'), (e) => E('DISCONNECTED')(e) && /not connected/.test(e.message));
  failing.close();
  await assert.rejects(failing.get('/x'), E('CLOSED'));
  down.close();
  await assert.rejects(down.get('/x'), E('CLOSED'));
});

test('a request in flight when the connection drops rejects with DISCONNECTED; close() rejects the rest with CLOSED', async () => {
  const server = new FakeServer();
  server.onRequest = () => {};
  const c = connect(server, { reconnect: { initialDelay: 1000 } });
  await c.ready();
  const inflight = c.get('/x');
  await until(() => server.last.received.length);
  server.close(server.last, 1011);
  await assert.rejects(inflight, E('DISCONNECTED'));
  const queued = c.get('/y');
  c.close();
  await assert.rejects(queued, E('CLOSED'));
  assert.equal(c.state, 'closed');
});

test('close(code, reason): the reason is cut to 123 UTF-8 bytes at a character boundary; a close that still throws goes without a reason', async () => {
  const server = new FakeServer();
  const c = connect(server);
  await c.ready();
  const reason = 'déconnexion demandée — à bientôt… 😀 '.repeat(6);
  c.close(4100, reason);
  const closedBy = server.last.ws.closedBy;
  assert.ok(closedBy, 'the socket was closed');
  assert.equal(closedBy.code, 4100);
  const bytes = te.encode(closedBy.reason).length;
  assert.ok(bytes <= 123 && bytes > 115, `${bytes} bytes`);
  assert.ok(reason.startsWith(closedBy.reason));

  const d = connect(server);
  await d.ready();
  const ws = d._ws;
  const orig = ws.close.bind(ws);
  ws.close = (code, why) => { if (why) throw new Error('SyntaxError'); orig(code); };
  d.close(1000, 'bye');
  assert.deepEqual(server.last.ws.closedBy, { code: 1000, reason: '' });
});

test('requests made in an open handler go out after those already queued; bad timing options and Blob bodies are refused', async () => {
  const server = new FakeServer();
  const c = connect(server, { autoConnect: false });
  const first = c.get('/queued');
  c.on('open', () => { c.get('/from-open'); });
  c.connect();
  await first;
  await until(() => server.last.received.filter((e) => e.kind === KIND.REQUEST).length === 2);
  assert.deepEqual(server.last.received.filter((e) => e.kind === KIND.REQUEST).map((e) => e.url), ['/queued', '/from-open']);
  for (const bad of [{ connectTimeout: 0 }, { heartbeatTimeout: -1 }, { ackInterval: NaN }, { connectTimeout: Infinity }, { heartbeatInterval: -5 }, { ackInterval: '5' }]) {
    assert.throws(() => new SwitchboardClient({ url: 'ws://fake/', WebSocket: server.WebSocket, autoConnect: false, ...bad }), TypeError, JSON.stringify(bad));
  }
  assert.throws(() => encodeBody(new Blob(['x'])), E('INVALID'));
  await assert.rejects(c.post('/file', new Blob(['x'])), (e) => e.code === 'INVALID' && /arrayBuffer/.test(e.message));
});

test('one-way send: SEND with the method, no response expected', async () => {
  const server = new FakeServer();
  const c = connect(server);
  await c.send('/log', { a: 1 });
  await c.send('/log', 'x', { method: 'PUT' });
  await until(() => server.last.received.length === 2);
  assert.deepEqual(server.last.received.map((e) => [e.kind, e.method, e.url, text(e.body)]),
    [[KIND.SEND, METHOD.POST, '/log', '{"a":1}'], [KIND.SEND, METHOD.PUT, '/log', 'x']]);
});

test('listeners: patterns with parameters, methods, stopListening and unsubscribe', async () => {
  const server = new FakeServer();
  const c = connect(server);
  await c.ready();
  const got = [];
  const offAny = c.on('/rooms/:id/messages', (p) => got.push(['any', p.method, p.params.id, p.body]));
  const lGet = c.addServerResponseListenerFor.get('/rooms/:id/messages', (p) => got.push(['get', p.params.id]));
  const lPost = c.addServerResponseListenerFor.post('/rooms/*rest', (p) => got.push(['post', p.params.rest]));
  const fn = (p) => got.push(['twice', p.url]);
  const offA = c.on('/twice', fn);
  c.on('/twice', fn);
  assert.equal(lGet.method, 'GET');
  assert.equal(lGet.pattern, '/rooms/:id/messages');

  const conn = server.last;
  server.push(conn, { method: METHOD.POST, url: '/rooms/lobby/messages', body: '{"text":"hi"}' });
  server.push(conn, { method: METHOD.GET, url: '/rooms/7/messages?since=3', body: 'plain' });
  server.push(conn, { method: METHOD.POST, url: '/other', body: '' });
  server.push(conn, { method: METHOD.POST, url: '/twice', body: '' });
  await until(() => got.length >= 6);
  await sleep(10);
  assert.deepEqual(got, [
    ['any', 'POST', 'lobby', { text: 'hi' }], ['post', 'lobby/messages'],
    ['any', 'GET', '7', 'plain'], ['get', '7'],
    ['twice', '/twice'], ['twice', '/twice'],
  ]);

  got.length = 0;
  assert.equal(lGet.stopListening(), true);
  assert.equal(lGet.stopListening(), false, 'stopping twice is harmless');
  assert.equal(lGet.active, false);
  offAny();
  offAny();
  offA();
  server.push(conn, { method: METHOD.GET, url: '/rooms/1/messages', body: '' });
  server.push(conn, { method: METHOD.POST, url: '/rooms/1/messages', body: '' });
  server.push(conn, { method: METHOD.POST, url: '/twice', body: '' });
  await until(() => got.length >= 2);
  await sleep(10);
  assert.deepEqual(got, [['post', '1/messages'], ['twice', '/twice']], 'only the remaining listeners, the second copy of fn once');
  lPost.stopListening();
  assert.equal(c._listeners.length, 1);
  assert.throws(() => c.on('message', () => {}), /unknown event "message"/);
  assert.throws(() => c.on('rooms', () => {}), /unknown event/);
  assert.throws(() => c.addServerResponseListenerFor.get('no-slash'), /starts with "\/"/);
});

test('listeners: one stopping itself or another during a push does not disturb the rest', async () => {
  const server = new FakeServer();
  const c = connect(server);
  await c.ready();
  const got = [];
  let b;
  const a = c.on('/x', () => { got.push('a'); a(); b.stopListening(); });
  b = c.addServerResponseListenerFor.any('/x', () => got.push('b'));
  c.on('/x', () => got.push('c'));
  server.push(server.last, { url: '/x' });
  server.push(server.last, { url: '/x' });
  await until(() => got.length >= 3);
  await sleep(10);
  assert.deepEqual(got, ['a', 'c', 'c']);
});

test('listeners without a callback buffer pushes for next() and for await; a throwing callback goes to error', async () => {
  const server = new FakeServer();
  const c = connect(server);
  await c.ready();
  const l = c.addServerResponseListenerFor.put('/jobs/:id', undefined, { bufferLimit: 2 });
  for (const id of [1, 2, 3]) server.push(server.last, { method: METHOD.PUT, url: `/jobs/${id}`, body: `{"id":${id}}` });
  await until(() => l._buffer.length === 2 && l.dropped === 1);
  assert.deepEqual((await l.next()).body, { id: 2 });
  const seen = [];
  const loop = (async () => { for await (const p of l) seen.push(p.params.id); })();
  server.push(server.last, { method: METHOD.PUT, url: '/jobs/4' });
  await until(() => seen.length === 2);
  l.stopListening();
  await loop;
  assert.deepEqual(seen, ['3', '4']);
  await assert.rejects(l.next(), E('CLOSED'));

  const errors = [];
  c.on('error', (e) => errors.push(e));
  c.on('/boom', () => { throw new Error('listener bug'); });
  const after = [];
  c.on('/boom', () => after.push(1));
  server.push(server.last, { url: '/boom' });
  await until(() => after.length);
  assert.equal(errors[0].code, 'LISTENER');
  assert.equal(errors[0].cause.message, 'listener bug');
});

// A client at offset 2 of g:room: the fake server's connection and its pushes.
async function atOffsetTwo(opts = {}) {
  const server = new FakeServer();
  const c = connect(server, { reconnect: { initialDelay: 5, maxDelay: 5 }, ...opts });
  const got = [];
  c.on('/m', (p) => got.push(`${p.stream}#${p.offset}`));
  await c.ready();
  const conn = server.last;
  for (const o of [1, 2]) server.push(conn, { url: '/m', stream: 'g:room', offset: o, epoch: 9, body: `${o}` });
  await until(() => got.length === 2);
  return { server, c, got, conn };
}

test('close() ends listeners\' waiting next() calls (CLOSED) and for await loops; connect() again delivers again', { timeout: 3000 }, async () => {
  const server = new FakeServer();
  const c = connect(server);
  const l = c.addServerResponseListenerFor.post('/x');
  const it = c.addServerResponseListenerFor.any('/y');
  await c.ready();
  const waiting = l.next();
  const loop = (async () => { const seen = []; for await (const p of it) seen.push(p.url); return seen; })();
  await sleep(5);
  c.close();
  await assert.rejects(waiting, E('CLOSED'));
  assert.deepEqual(await loop, []);
  await assert.rejects(l.next(), E('CLOSED'), 'also a next() made while closed');
  assert.equal(l.active, true);
  c.connect();
  await c.ready();
  const again = l.next();
  server.push(server.last, { method: 2, url: '/x' });
  assert.equal((await again).url, '/x');
});

test('duplicates are dropped; a gap on a live connection makes the client reconnect and resume', async () => {
  const { server, c, got, conn } = await atOffsetTwo();
  const log = record(c);
  server.push(conn, { url: '/m', stream: 'g:room', offset: 2, epoch: 9 }); // duplicate
  server.push(conn, { url: '/m', stream: 'g:room', offset: 1, epoch: 9 }); // older duplicate
  server.onResume = (cn, r) => {
    assert.equal(r.token, conn.token);
    assert.deepEqual(r.positions, [{ stream: 'g:room', offset: 2n, epoch: 9n }]);
    server.push(cn, { url: '/m', stream: 'g:room', offset: 4, epoch: 9 }); // live push before the replay: dropped
    server.resumeOk(cn, r, { replay: [3, 4, 5].map((o) => ({ url: '/m', stream: 'g:room', offset: o, epoch: 9 })) });
  };
  server.push(conn, { url: '/m', stream: 'g:room', offset: 4, epoch: 9 }); // gap: 3 is missing
  await until(() => got.length === 5, 2000, 'the replay');
  assert.deepEqual(got, ['g:room#1', 'g:room#2', 'g:room#3', 'g:room#4', 'g:room#5']);
  assert.ok(conn.closed && conn.ws.closedBy, 'the client closed the gapped connection itself');
  const gap = log.find((e) => e.name === 'error');
  assert.equal(gap.arg.code, 'GAP');
  assert.match(gap.arg.message, /offset 4 after 2/);
  const resumed = log.find((e) => e.name === 'resumed').arg;
  assert.deepEqual(resumed, { recovered: true, sessionLost: false, streams: { 'g:room': { recovered: true, offset: 5, epoch: '0000000000000009' } } });
  const rc = log.find((e) => e.name === 'reconnecting').arg;
  assert.deepEqual(rc, { attempt: 1, delay: 0 }, 'a gap reconnects at once');
  assert.deepEqual(c.positions(), { 'g:room': { offset: 5, epoch: '0000000000000009' } });
  assert.equal(c.connectionId, conn.id, 'the session id is kept');
});

test('a gap with requests in flight: they are answered on the old connection first, then the client resumes', async () => {
  const { server, c, got, conn } = await atOffsetTwo();
  const log = record(c);
  const held = [];
  server.onRequest = (env, cn) => held.push({ env, cn });
  const inflight = c.get('/slow');
  await until(() => held.length === 1);
  server.push(conn, { url: '/m', stream: 'g:room', offset: 4, epoch: 9 }); // gap: 3 is missing
  await until(() => log.some((e) => e.name === 'error'));
  assert.equal(log.find((e) => e.name === 'error').arg.code, 'GAP');
  const later = c.get('/later'); // made while waiting: queued, sent after the resume
  server.push(conn, { url: '/m', stream: 'g:room', offset: 5, epoch: 9 }); // still a gap: dropped, no second GAP
  await sleep(20);
  assert.ok(!conn.closed, 'the connection stays while a request is in flight');
  assert.equal(held.length, 1, 'the later request is not sent on the gapped connection');
  server.onResume = (cn, r) => server.resumeOk(cn, r, { replay: [3, 4, 5].map((o) => ({ url: '/m', stream: 'g:room', offset: o, epoch: 9 })) });
  server.onRequest = (env, cn) => server.respond(cn, env.id, 200, 'later');
  server.respond(conn, held[0].env.id, 200, 'slow');
  assert.equal((await inflight).body, 'slow', 'answered, not DISCONNECTED');
  assert.equal((await later).body, 'later');
  await until(() => got.length === 5);
  assert.deepEqual(got, ['g:room#1', 'g:room#2', 'g:room#3', 'g:room#4', 'g:room#5']);
  assert.ok(conn.closed);
  assert.equal(log.filter((e) => e.name === 'error').length, 1);
});

test('a gap with a request that is never answered: the wait is bounded, then DISCONNECTED and resume', async () => {
  const { server, c, conn } = await atOffsetTwo();
  c._gapDrainMs = 50;
  server.onRequest = () => {};
  const inflight = c.get('/never');
  await until(() => conn.received.some((e) => e.kind === KIND.REQUEST));
  server.push(conn, { url: '/m', stream: 'g:room', offset: 4, epoch: 9 });
  await assert.rejects(inflight, E('DISCONNECTED'));
  await until(() => c.state === 'open' && server.conns.length === 2);
});

test('forget(stream): the next push of a forgotten stream is a fresh start, not a gap', async () => {
  const { server, c, got, conn } = await atOffsetTwo();
  const log = record(c);
  assert.equal(c.forget('g:room'), true); // the app left the group ...
  assert.equal(c.forget('g:room'), false);
  assert.deepEqual(c.positions(), {});
  server.push(conn, { url: '/m', stream: 'g:room', offset: 5, epoch: 9 }); // ... and joined it again
  await until(() => got.length === 3);
  assert.equal(got[2], 'g:room#5');
  assert.equal(c.positions()['g:room'].offset, 5);
  assert.ok(!log.some((e) => e.name === 'error' || e.name === 'close'));
  assert.equal(server.conns.length, 1);
});

test('another epoch on a live connection resumes too, and the server says what was not recovered', async () => {
  const { server, c, got, conn } = await atOffsetTwo();
  const log = record(c);
  server.onResume = (cn, r) => {
    assert.deepEqual(r.positions, [{ stream: 'g:room', offset: 2n, epoch: 9n }]);
    const id = server.sessions.get(r.token);
    server.sessions.delete(r.token);
    cn.id = id;
    server.send(cn, { kind: KIND.RESUMED, body: encodeResumedBody([{ stream: 'g:room', recovered: false, offset: 1n, epoch: 10n }]) });
  };
  server.push(conn, { url: '/m', stream: 'g:room', offset: 1, epoch: 10 });
  await until(() => c.state === 'open' && log.some((e) => e.name === 'resumed'));
  assert.equal(got.length, 2, 'the push of the new epoch is not delivered');
  assert.match(log.find((e) => e.name === 'error').arg.message, /epoch 000000000000000a after 0000000000000009/);
  assert.deepEqual(log.find((e) => e.name === 'resumed').arg,
    { recovered: false, sessionLost: false, streams: { 'g:room': { recovered: false, offset: 1, epoch: '000000000000000a' } } });
  server.push(server.last, { url: '/m', stream: 'g:room', offset: 2, epoch: 10 });
  await until(() => got.length === 3);
  assert.equal(got[2], 'g:room#2');
});

test('resume refused (the session is gone): resumed reports sessionLost and the fresh session is used', async () => {
  const { server, c, conn } = await atOffsetTwo();
  const log = record(c);
  server.sessions.clear(); // the server restarted: no token is known
  server.close(conn, 1001);
  await until(() => log.some((e) => e.name === 'open'));
  const resumed = log.find((e) => e.name === 'resumed').arg;
  assert.equal(resumed.recovered, false);
  assert.equal(resumed.sessionLost, true);
  assert.equal(resumed.status, 401);
  assert.deepEqual(resumed.streams, { 'g:room': { recovered: false, offset: 2, epoch: '0000000000000009' } });
  assert.equal(c.connectionId, server.last.id, 'the new connection is the session now');
  assert.deepEqual(c.positions(), {});
  assert.deepEqual(log.find((e) => e.name === 'open').arg.resumed, false);
  assert.deepEqual(log.find((e) => e.name === 'reconnecting').arg, { attempt: 1, delay: 0 }, '1001: at once');
  // the next resume uses the fresh session's token
  const fresh = server.last;
  server.close(fresh, 1006);
  await until(() => server.conns.length === 3 && server.last.received.some((e) => e.kind === KIND.RESUME));
  assert.equal(server.conns.length, 3);
});

test('while a RESUME is unanswered only the next offset of a stream is accepted', async () => {
  const { server, c, got, conn } = await atOffsetTwo();
  server.onResume = (cn, r) => {
    server.push(cn, { url: '/m', stream: 'g:room', offset: 4, epoch: 9 }); // above position + 1: dropped
    server.push(cn, { url: '/m', stream: 'g:room', offset: 3, epoch: 9 }); // the next: taken
    server.push(cn, { url: '/m', stream: 'g:room', offset: 3, epoch: 9 }); // duplicate
    server.push(cn, { url: '/m', stream: 'g:new', offset: 5, epoch: 1 }); // no position: held until RESUMED
    server.resumeOk(cn, r, { replay: [4].map((o) => ({ url: '/m', stream: 'g:room', offset: o, epoch: 9 })) });
  };
  server.close(conn, 1006);
  await until(() => got.length === 5);
  await sleep(10);
  // g:new is not in RESUMED: taken as a fresh start once the resume is answered
  assert.deepEqual(got, ['g:room#1', 'g:room#2', 'g:room#3', 'g:room#4', 'g:new#5']);
  assert.equal(c.positions()['g:new'].offset, 5);
});

test('resume: a group without a position is replayed from where the session joined it (above offset 1), in order, once each', async () => {
  const { server, c, got, conn } = await atOffsetTwo();
  const log = record(c);
  // The session joined g:quiet at its offset 3 and got no push from it before the connection dropped.
  const q = (o) => ({ url: '/m', stream: 'g:quiet', offset: o, epoch: 7 });
  server.onResume = (cn, r) => {
    assert.deepEqual(r.positions.map((p) => p.stream), ['g:room'], 'the client cannot name g:quiet');
    server.resumeOk(cn, r, {
      early: [q(6), q(5)], // live pushes that overtake the replay
      replay: [{ url: '/m', stream: 'g:room', offset: 3, epoch: 9 }, q(4), q(5), q(6)],
    });
  };
  server.close(conn, 1006);
  await until(() => log.some((e) => e.name === 'resumed'));
  assert.deepEqual(got, ['g:room#1', 'g:room#2', 'g:room#3', 'g:quiet#4', 'g:quiet#5', 'g:quiet#6']);
  const resumed = log.find((e) => e.name === 'resumed').arg;
  assert.equal(resumed.recovered, true);
  assert.deepEqual(resumed.streams['g:quiet'], { recovered: true, offset: 6, epoch: '0000000000000007' });
  assert.equal(c.positions()['g:quiet'].offset, 6);
  server.push(server.last, q(6)); // a duplicate
  server.push(server.last, q(7));
  await until(() => got.length === 7);
  assert.equal(got[6], 'g:quiet#7');
});

test('resume: a hole in the replay of a stream without a position is reported not recovered', async () => {
  const { server, c, got, conn } = await atOffsetTwo();
  const log = record(c);
  const q = (o) => ({ url: '/m', stream: 'g:quiet', offset: o, epoch: 7 });
  server.onResume = (cn, r) => server.resumeOk(cn, r, { replay: [q(4), q(6)] });
  server.close(conn, 1006);
  await until(() => log.some((e) => e.name === 'resumed'));
  assert.deepEqual(got.slice(2), ['g:quiet#4', 'g:quiet#6']);
  assert.equal(log.find((e) => e.name === 'resumed').arg.streams['g:quiet'].recovered, false);
});

test('connectTimeout while resuming counts silence: a slow but progressing replay completes, a stalled one is given up', { timeout: 5000 }, async () => {
  const { server, c, got, conn } = await atOffsetTwo({ connectTimeout: 80 });
  const log = record(c);
  server.onResume = (cn, r) => {
    let o = 3;
    const t = setInterval(() => {
      if (cn.closed) { clearInterval(t); return; }
      if (o <= 10) server.push(cn, { url: '/m', stream: 'g:room', offset: o++, epoch: 9 });
      else { clearInterval(t); server.resumeOk(cn, r); }
    }, 30); // 8 pushes and RESUMED over ~270 ms, never 80 ms apart
  };
  server.close(conn, 1006);
  await until(() => log.some((e) => e.name === 'resumed'), 3000, 'resumed');
  assert.equal(server.conns.length, 2, 'one resume, not cut off');
  assert.equal(got.length, 10);
  assert.ok(!log.some((e) => e.name === 'error'));
  // A resume that stalls: given up after connectTimeout of silence, and tried again.
  let stall = true;
  server.onResume = (cn, r) => { if (stall) { stall = false; return; } server.resumeOk(cn, r); };
  server.close(server.last, 1006);
  await until(() => log.filter((e) => e.name === 'resumed').length === 2, 3000, 'the second resume');
  assert.match(log.find((e) => e.name === 'error').arg.message, /the resume stalled: nothing for 80 ms/);
  assert.equal(server.conns.length, 4);
});

test('heartbeats: PING after a quiet interval; no answer means a dead connection, dropped and resumed', async () => {
  const server = new FakeServer();
  const c = connect(server, { heartbeatInterval: 40, heartbeatTimeout: 60, reconnect: { initialDelay: 5, maxDelay: 5 } });
  const log = record(c);
  await c.ready();
  const first = server.last;
  await until(() => first.received.filter((e) => e.kind === KIND.PING).length >= 2, 1000, 'two PINGs');
  assert.equal(server.conns.length, 1, 'answered PINGs keep the connection');
  server.freeze(first); // nothing gets through any more, and no close comes
  await until(() => server.conns.length === 2, 1000, 'a reconnect');
  const err = log.find((e) => e.name === 'error').arg;
  assert.equal(err.code, 'HEARTBEAT');
  assert.deepEqual(log.find((e) => e.name === 'close').arg, { code: 1006, reason: 'heartbeat timeout', willReconnect: true });
  await until(() => server.last.received.some((e) => e.kind === KIND.RESUME), 1000, 'the RESUME');
});

test('the reconnect schedule: backoff with full jitter, reset after a stable connection, limited attempts', async () => {
  const server = new FakeServer();
  server.refused.add('ws://down/');
  let r = 0.5;
  const c = connect(server, {
    url: 'ws://down/', random: () => r, reconnect: { initialDelay: 8, factor: 2, maxDelay: 40, maxAttempts: 6 },
  });
  const log = record(c);
  await until(() => c.state === 'closed', 3000);
  const delays = log.filter((e) => e.name === 'reconnecting').map((e) => [e.arg.attempt, e.arg.delay]);
  assert.deepEqual(delays, [[1, 4], [2, 8], [3, 16], [4, 20], [5, 20], [6, 20]]);
  const last = log[log.length - 1];
  assert.equal(last.name, 'close');
  const gaveUp = log.find((e) => e.name === 'error' && e.arg.code === 'GAVE_UP');
  assert.match(gaveUp.arg.message, /6 attempts/);
  assert.equal(log.filter((e) => e.name === 'error' && e.arg.code === 'CONNECT').length, 7);

  // a stable connection resets the count; a short one does not
  r = 1;
  const ok = connect(server, { random: () => r, reconnect: { initialDelay: 8, factor: 2, maxDelay: 400, stableAfter: 80 } });
  const olog = record(ok);
  await ok.ready();
  for (let i = 0; i < 3; i++) {
    server.close(server.last, 1011);
    await until(() => olog.filter((e) => e.name === 'open').length === i + 2);
  }
  await sleep(100);
  server.close(server.last, 1011);
  await until(() => olog.filter((e) => e.name === 'open').length === 5);
  assert.deepEqual(olog.filter((e) => e.name === 'reconnecting').map((e) => e.arg), [
    { attempt: 1, delay: 8 }, { attempt: 2, delay: 16 }, { attempt: 3, delay: 32 }, { attempt: 1, delay: 8 },
  ]);
});

test('several urls are tried in turn', async () => {
  const server = new FakeServer();
  server.refused.add('ws://a/');
  const c = connect(server, { url: ['ws://a/', 'ws://b/'], reconnect: { initialDelay: 5 } });
  const log = record(c);
  await c.ready();
  assert.deepEqual(server.conns.map((x) => x.url), ['ws://a/', 'ws://b/']);
  assert.equal(log.find((e) => e.name === 'open').arg.url, 'ws://b/');
  server.close(server.last, 1001);
  await until(() => server.conns.length === 4 && c.state === 'open');
  assert.deepEqual(server.conns.map((x) => x.url), ['ws://a/', 'ws://b/', 'ws://a/', 'ws://b/']);
});

test('a discovery url lists the nodes to try', async () => {
  const server = new FakeServer();
  server.refused.add('ws://dead/');
  const fetched = [];
  const fetch = async (url) => { fetched.push(url); return { ok: true, json: async () => ({ nodes: ['ws://dead/', { url: 'ws://live/' }] }) }; };
  const c = connect(server, { url: undefined, discoveryUrl: 'http://disco/nodes', fetch, reconnect: { initialDelay: 5 } });
  await c.ready();
  assert.deepEqual(fetched, ['http://disco/nodes']);
  assert.deepEqual(server.conns.map((x) => x.url), ['ws://dead/', 'ws://live/']);
});

test('a token function or a discovery fetch that never settles fails the attempt after connectTimeout and backs off', { timeout: 3000 }, async () => {
  const server = new FakeServer();
  let calls = 0;
  const c = connect(server, {
    connectTimeout: 40, reconnect: { initialDelay: 5, maxDelay: 5 },
    token: () => (++calls === 1 ? new Promise(() => {}) : 'tok'),
  });
  const log = record(c);
  await c.ready();
  const err = log.find((e) => e.name === 'error').arg;
  assert.equal(err.code, 'TOKEN');
  assert.match(err.message, /within 40 ms/);
  assert.ok(log.some((e) => e.name === 'reconnecting'));
  assert.equal(calls, 2);
  assert.equal(server.conns.length, 1);

  let fetches = 0;
  const d = connect(server, {
    url: undefined, discoveryUrl: 'http://fake/nodes', connectTimeout: 40, reconnect: { initialDelay: 5, maxDelay: 5 },
    fetch: async () => (++fetches === 1 ? new Promise(() => {}) : { ok: true, json: async () => ['ws://fake/'] }),
  });
  const ld = record(d);
  await d.ready();
  assert.equal(ld.find((e) => e.name === 'error').arg.code, 'DISCOVERY');
  assert.ok(ld.some((e) => e.name === 'reconnecting'));
  assert.equal(fetches, 2);
});

test('browser events: offline pauses reconnecting, online and visibility retry at once and probe an open connection', async () => {
  const server = new FakeServer();
  const win = new EventTarget();
  win.navigator = { onLine: true };
  const doc = new EventTarget();
  doc.visibilityState = 'visible';
  const c = connect(server, { window: win, document: doc, heartbeatInterval: 100000, reconnect: { initialDelay: 100000, maxDelay: 100000 } });
  await c.ready();
  // an open connection is probed (PING) on online and on becoming visible
  win.dispatchEvent(new Event('online'));
  await until(() => server.last.received.some((e) => e.kind === KIND.PING));
  // offline while disconnected: no reconnect timer; online: at once
  win.navigator.onLine = false;
  server.close(server.last, 1011);
  await until(() => c.state === 'offline');
  win.navigator.onLine = true;
  win.dispatchEvent(new Event('online'));
  await until(() => c.state === 'open');
  assert.equal(server.conns.length, 2);
  // waiting for a long backoff: becoming visible retries at once
  server.close(server.last, 1011);
  await until(() => c.state === 'waiting');
  doc.dispatchEvent(new Event('visibilitychange'));
  await until(() => c.state === 'open');
  assert.equal(server.conns.length, 3);
  c.close();
  assert.equal(server.conns.length, 3);
});

test('persist: the session and positions survive a page reload (a new client on the same storage)', async () => {
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v), removeItem: (k) => store.delete(k) };
  const { server, c, conn } = await atOffsetTwo({ persist: storage, window: new EventTarget() });
  c._opts.window.dispatchEvent(new Event('pagehide'));
  const saved = JSON.parse(store.get('switchboard:ws://fake/'));
  assert.deepEqual(saved, { v: 1, connId: conn.id, token: conn.token, positions: [['g:room', '2', '9']] });
  c._dropSocket(); // the page goes away without a word
  const again = connect(server, { persist: storage });
  const log = record(again);
  await again.ready();
  const resume = server.last.received.find((e) => e.kind === KIND.RESUME);
  assert.ok(resume, 'the new client resumes the saved session');
  assert.equal(log.find((e) => e.name === 'resumed').arg.recovered, true);
  assert.equal(again.connectionId, conn.id);
  assert.notEqual(JSON.parse(store.get('switchboard:ws://fake/')).token, conn.token, 'the fresh token is saved');
});

test('persist in a page: the resume token is stored only while the page is hidden, so a duplicated tab cannot take the session', async () => {
  const server = new FakeServer();
  const store = new Map();
  const storage = { getItem: (k) => store.get(k) ?? null, setItem: (k, v) => store.set(k, v), removeItem: (k) => store.delete(k) };
  const page = () => {
    const win = new EventTarget();
    win.navigator = { onLine: true };
    const doc = new EventTarget();
    doc.visibilityState = 'visible';
    return { window: win, document: doc };
  };
  const saved = () => JSON.parse(store.get('switchboard:ws://fake/'));
  const p1 = page();
  const a = connect(server, { persist: storage, ...p1 });
  const la = record(a);
  await a.ready();
  server.push(server.last, { url: '/m', stream: 'g:room', offset: 1, epoch: 9 });
  await until(() => a.positions()['g:room']);
  a._save();
  assert.equal(saved().token, undefined, 'visible: no token in storage');
  assert.deepEqual(saved().positions, [['g:room', '1', '9']], 'positions are kept');
  // The tab is duplicated while visible: the copy finds no token and starts its own session.
  const copy = new Map(store);
  const b = connect(server, { persist: { getItem: (k) => copy.get(k) ?? null, setItem: (k, v) => copy.set(k, v) }, ...page() });
  const lb = record(b);
  await b.ready();
  assert.ok(!server.last.received.some((e) => e.kind === KIND.RESUME), 'the duplicate does not resume');
  assert.notEqual(b.connectionId, a.connectionId);
  await sleep(20);
  assert.equal(a.state, 'open', 'the original tab is not replaced');
  assert.ok(!la.some((e) => e.name === 'error'), 'no REPLACED');
  assert.ok(!lb.some((e) => e.name === 'resumed'));
  // Hidden: the token is stored; visible again: removed.
  p1.document.visibilityState = 'hidden';
  p1.document.dispatchEvent(new Event('visibilitychange'));
  assert.equal(saved().token, server.conns[0].token);
  p1.document.visibilityState = 'visible';
  p1.document.dispatchEvent(new Event('visibilitychange'));
  assert.equal(saved().token, undefined);
  // A reload: pagehide stores it, the new page reads it and removes it at once.
  p1.window.dispatchEvent(new Event('pagehide'));
  assert.equal(saved().token, server.conns[0].token);
  a._dropSocket();
  const again = connect(server, { persist: storage, ...page(), autoConnect: false });
  assert.equal(saved().token, undefined, 'taken out of storage by the reloaded page');
  const lr = record(again);
  again.connect();
  await again.ready();
  assert.ok(server.last.received.some((e) => e.kind === KIND.RESUME), 'the reloaded page resumes');
  assert.equal(lr.find((e) => e.name === 'resumed').arg.recovered, true);
  assert.equal(again.connectionId, server.conns[0].id);
  assert.equal(saved().token, undefined);
});

test('ACK: the direct stream position is acknowledged from time to time', async () => {
  const server = new FakeServer();
  const c = connect(server, { ackInterval: 30 });
  await c.ready();
  const conn = server.last;
  const direct = `c:${conn.id}`;
  for (const o of [1, 2, 3]) server.push(conn, { url: '/d', stream: direct, offset: o, epoch: 5 });
  await until(() => conn.received.some((e) => e.kind === KIND.ACK));
  const ack = conn.received.find((e) => e.kind === KIND.ACK);
  assert.deepEqual(decodePositions(ack.body), [{ stream: direct, offset: 3n, epoch: 5n }]);
  await sleep(80);
  assert.equal(conn.received.filter((e) => e.kind === KIND.ACK).length, 1, 'no ACK when nothing changed');
});

test('AUTH: the server asks for a new token, the token function gives it; 4003 and 4000 are fatal', async () => {
  const server = new FakeServer();
  const reasons = [];
  let n = 0;
  const c = connect(server, { token: async ({ reason }) => { reasons.push(reason); return `tok-${++n}`; } });
  const log = record(c);
  await c.ready();
  assert.deepEqual(server.last.ws.protocols, ['sb.v1', 'bearer.tok-1']);
  server.send(server.last, { kind: KIND.AUTH, status: 401, body: '{"expires":1800000000}' });
  await until(() => server.last.received.some((e) => e.kind === KIND.AUTH));
  assert.equal(text(server.last.received.find((e) => e.kind === KIND.AUTH).body), 'tok-2');
  assert.deepEqual(reasons, ['connect', 'refresh']);
  server.send(server.last, { kind: KIND.AUTH, status: 200, body: '{"expires":1800003600}' });
  server.send(server.last, { kind: KIND.AUTH, status: 403, body: '{"error":"bad signature"}' });
  await until(() => log.filter((e) => e.name === 'auth').length === 3);
  assert.deepEqual(log.filter((e) => e.name === 'auth').map((e) => e.arg),
    [{ status: 401, expires: 1800000000 }, { status: 200, expires: 1800003600 }, { status: 403, error: 'bad signature' }]);
  assert.equal(log.find((e) => e.name === 'error').arg.code, 'TOKEN');

  // 4001: a new token and a reconnect at once
  server.close(server.last, 4001);
  await until(() => server.conns.length === 2 && c.state === 'open');
  assert.deepEqual(server.last.ws.protocols, ['sb.v1', 'bearer.tok-3']);
  // 4003: fatal
  server.onRequest = () => {};
  const pending = assert.rejects(c.get('/never', { timeout: 5000 }), E('DISCONNECTED'));
  await until(() => server.last.received.some((e) => e.kind === KIND.REQUEST));
  server.close(server.last, 4003);
  await until(() => c.state === 'closed');
  assert.ok(log.some((e) => e.name === 'error' && e.arg.code === 'IDENTITY'));
  assert.deepEqual(log[log.length - 1], { name: 'close', arg: { code: 4003, reason: '', willReconnect: false } });
  await pending;

  const other = connect(server);
  const olog = record(other);
  await other.ready();
  server.close(server.last, 4000);
  await until(() => other.state === 'closed');
  assert.ok(olog.some((e) => e.name === 'error' && e.arg.code === 'REPLACED'));
});

test('TOO_BIG: a request over the server\'s max_message is refused before it is sent', async () => {
  const server = new FakeServer({ maxMessage: 100 });
  const c = connect(server);
  await assert.rejects(c.post('/x', 'a'.repeat(200)), E('TOO_BIG'));
  assert.equal((await c.post('/x', 'small')).body, 'small');
});

test('a RESUME carries at most 1024 positions: the direct stream and the most recently heard', async () => {
  const server = new FakeServer();
  const c = connect(server, { reconnect: { initialDelay: 5, maxDelay: 5 } });
  await c.ready();
  const conn = server.last;
  server.push(conn, { url: '/d', stream: `c:${conn.id}`, offset: 1, epoch: 1 });
  for (let i = 0; i < 1100; i++) server.push(conn, { url: '/g', stream: `g:${i}`, offset: 1, epoch: 1 });
  server.push(conn, { url: '/g', stream: 'g:0', offset: 2, epoch: 1 }); // heard again: recent
  await until(() => Object.keys(c.positions()).length === 1101 && c.positions()['g:0'].offset === 2);
  let resume;
  server.onResume = (cn, r) => { resume = r; server.resumeOk(cn, r); };
  server.close(conn, 1006);
  await until(() => resume);
  const streams = resume.positions.map((p) => p.stream);
  assert.equal(streams.length, 1024);
  assert.ok(streams.includes(`c:${conn.id}`));
  assert.ok(streams.includes('g:0'));
  assert.ok(streams.includes('g:1099'));
  assert.ok(!streams.includes('g:1'));
});

test('reconnect: false: a lost connection closes the client; a failed first attempt gives up', async () => {
  const server = new FakeServer();
  server.refused.add('ws://down/');
  const c = connect(server, { reconnect: false });
  const log = record(c);
  await c.ready();
  server.close(server.last, 1011, 'bye');
  await until(() => c.state === 'closed');
  assert.deepEqual(log.map((e) => e.name), ['open', 'close']);
  assert.deepEqual(log[1].arg, { code: 1011, reason: 'bye', willReconnect: false });
  const d = connect(server, { url: 'ws://down/', reconnect: false });
  const dlog = record(d);
  await assert.rejects(d.ready(), E('CLOSED'));
  assert.deepEqual(dlog.map((e) => e.name === 'error' ? e.arg.code : e.name), ['CONNECT', 'GAVE_UP', 'close']);
  assert.equal(server.conns.length, 2);
});
