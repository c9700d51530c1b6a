// The messaging layer (docs/PROTOCOL.md) end to end, against the hubtest fixture and the
// broadcast example: HELLO, groups and fan-out (up to 10,000 connections), direct messages,
// broadcast, redelivery after a reconnect (RESUME/RESUMED, also while pushes keep arriving),
// stale positions, tokens, ACK trimming, slow consumers (1013), malformed input.
//
// Every server is started with --port 0 and stopped by PID (SIGTERM, then SIGKILL) in an after
// hook; a server that died, needed SIGKILL, exited non-zero or printed a sanitizer report fails
// the suite. Clients are raw sockets (hub.mjs), except for the broadcast example (npm ws).
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import fs from 'node:fs';
import path from 'node:path';
import { after, afterEach, before, describe, test } from 'node:test';
import { BROADCAST_BIN, HUBTEST_BIN, HubClient, show, startServer } from './hub.mjs';
import { sleep, wsOpen } from './lib.mjs';
import { KIND, METHOD, decodeEnvelope, decodeHello, decodeResumed, encodeAck, encodeEnvelope } from './proto.mjs';

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

const servers = [];   // every server started, stopped at the latest in the final after hook
const clients = new Set();

async function server(args = [], bin = HUBTEST_BIN) {
  const s = await startServer(bin, args);
  servers.push(s);
  return s;
}

/** Stops a server by PID and fails if it crashed, needed SIGKILL, or reported anything. */
async function stopServer(s) {
  if (!s || s.stopped) return;
  s.stopped = true;
  const diedEarly = !s.alive();
  const x = await s.stop();
  const report = s.sanitizerReport();
  const what = `${s.name} ${s.args.join(' ')} (pid ${s.pid})`;
  if (report) throw new Error(`sanitizer report from ${what}:\n${report}`);
  if (diedEarly) throw new Error(`${what} died during the tests: ${JSON.stringify(x)}; stderr: ${s.stderr().slice(-3000)}`);
  if (x.killed) throw new Error(`${what} did not exit within 10 s of SIGTERM (killed); stderr: ${s.stderr().slice(-3000)}`);
  if (x.code !== 0) throw new Error(`${what} exited with ${JSON.stringify(x)} after SIGTERM; stderr: ${s.stderr().slice(-3000)}`);
}

async function connect(srv, opts = {}) {
  const c = await HubClient.connect(srv.port, opts);
  clients.add(c);
  return c;
}

const wsClients = new Set(); // npm ws clients (the broadcast example)

function dropClients() {
  for (const c of clients) c.destroy();
  clients.clear();
  for (const c of wsClients) c.terminate();
  wsClients.clear();
}

afterEach(() => {
  dropClients();
  for (const s of servers) {
    if (s.stopped) continue;
    const report = s.sanitizerReport();
    if (report) throw new Error(`sanitizer report from ${s.name} ${s.args.join(' ')}:\n${report}`);
    if (!s.alive()) {
      throw new Error(`${s.name} ${s.args.join(' ')} died: ${JSON.stringify(s.exitInfo())}; stderr: ${s.stderr().slice(-3000)}`);
    }
  }
});

after(async () => {
  dropClients();
  const errors = [];
  for (const s of servers) {
    try { await stopServer(s); } catch (e) { errors.push(e.message); }
  }
  if (errors.length) throw new Error(errors.join('\n----\n'));
});

// ---------------------------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------------------------

const DOC = fs.readFileSync(path.resolve(import.meta.dirname, '../../docs/PROTOCOL.md'), 'utf8');
function docHex(name) {
  const m = new RegExp('```hex ' + name + '\\n([\\s\\S]*?)```').exec(DOC);
  assert.ok(m, `docs/PROTOCOL.md has no \`\`\`hex ${name} block`);
  return Buffer.from(m[1].replace(/\s+/g, ''), 'hex');
}

const ID_RE = /^[A-Za-z0-9_-]{22}$/;
const randomId = () => crypto.randomBytes(16).toString('base64url');
let groupSeq = 0;
const uniq = (p) => `${p}-${++groupSeq}-${crypto.randomBytes(3).toString('hex')}`;
const sortedLines = (s) => (s === '' ? [] : s.split('\n').sort());

/** Polls /count/G on `ctl` until it reads `n`. */
async function waitCount(ctl, group, n, timeoutMs = 5000) {
  const t0 = Date.now();
  let last;
  for (;;) {
    last = Number(await ctl.ok(`/count/${group}`));
    if (last === n) return;
    if (Date.now() - t0 > timeoutMs) assert.fail(`/count/${group}: expected ${n} within ${timeoutMs} ms, still ${last}`);
    await sleep(20);
  }
}

/** A request round trip on `c`, after which nothing else may be waiting in its inbox. */
async function assertNothingElse(c, what) {
  const before = c.inbox.map(show);
  assert.deepEqual(before, [], `${what}: unexpected messages before the sync round trip`);
  await c.ok('/whoami');
  assert.deepEqual(c.inbox.map(show), [], `${what}: unexpected messages (received with or after the sync round trip)`);
}

/** Publishes bodies to a group through `p`, each answered 200 with an empty body. */
async function publish(p, group, bodies, method = METHOD.POST) {
  for (const b of bodies) {
    const r = await p.request(`/publish/${group}`, b, { method });
    assert.equal(r.kind, KIND.RESPONSE, `publish ${group}: ${show(r)}`);
    assert.equal(r.status, 200, `publish ${group}: ${show(r)}`);
    assert.equal(r.body.length, 0);
  }
}

/** Takes `n` pushes of `stream` from c's inbox, in order. */
async function takePushes(c, stream, n, timeoutMs = 5000) {
  const out = [];
  for (let i = 0; i < n; i++) out.push(await c.take((m) => m.kind === KIND.PUSH && m.stream === stream, timeoutMs, `push ${i + 1}/${n} of ${stream}`));
  return out;
}

function assertPushes(pushes, stream, firstOffset, bodies, { epoch, url = '/message', method = METHOD.POST } = {}) {
  assert.deepEqual(pushes.map((m) => `${m.stream}#${m.offset}:${m.body.toString()}`),
    bodies.map((b, i) => `${stream}#${BigInt(firstOffset + i)}:${b}`), `pushes of ${stream}`);
  for (const m of pushes) {
    assert.equal(m.kind, KIND.PUSH);
    assert.equal(m.url, url, `url of ${show(m)}`);
    assert.equal(m.method, method, `method of ${show(m)}`);
    assert.notEqual(m.epoch, 0n, `a recorded push has a non-zero epoch: ${show(m)}`);
    if (epoch !== undefined) assert.equal(m.epoch, epoch, `epoch of ${show(m)}`);
  }
}

/**
 * Reads a resume's answer in order: the new HELLO first, then only PUSH envelopes, then
 * RESUMED. Returns { hello, pushes, resumed (decoded entries), byStream }.
 */
async function readResume(c, timeoutMs = 10000) {
  const hello = await c.next(timeoutMs);
  assert.equal(hello.kind, KIND.HELLO, `the first message after RESUME must be the new HELLO, got ${show(hello)}`);
  const pushes = [];
  for (;;) {
    const m = await c.next(timeoutMs);
    if (m.kind === KIND.RESUMED) {
      const resumed = decodeResumed(m.body);
      const byStream = Object.fromEntries(resumed.map((e) => [e.stream, e]));
      assert.equal(Object.keys(byStream).length, resumed.length, `RESUMED lists a stream twice: ${JSON.stringify(resumed, big)}`);
      return { hello, pushes, resumed, byStream };
    }
    assert.equal(m.kind, KIND.PUSH, `between the new HELLO and RESUMED only pushes may come, got ${show(m)}`);
    pushes.push(m);
  }
}

const big = (k, v) => (typeof v === 'bigint' ? `${v}n` : v);
const entry = (e) => (e ? JSON.stringify(e, big) : 'none');

function assertEntry(byStream, stream, recovered, offset, epoch) {
  const e = byStream[stream];
  assert.ok(e, `RESUMED has no entry for ${stream}: ${JSON.stringify(Object.values(byStream), big)}`);
  assert.equal(e.recovered, recovered, `RESUMED ${stream}.recovered: ${entry(e)}`);
  assert.equal(e.offset, BigInt(offset), `RESUMED ${stream}.offset: ${entry(e)}`);
  if (epoch !== undefined) assert.equal(e.epoch, epoch, `RESUMED ${stream}.epoch: ${entry(e)}`);
  else assert.notEqual(e.epoch, 0n, `RESUMED ${stream}.epoch must be the stream's (non-zero) epoch: ${entry(e)}`);
}

/** Asserts a new HELLO after a resume: the session's id, a fresh token. */
function assertResumedHello(hello, oldId, usedTokens) {
  assert.equal(hello.version, 1);
  assert.equal(hello.connId, oldId, 'the new HELLO carries the resumed session\'s connection id');
  assert.match(hello.token, ID_RE);
  for (const t of usedTokens) assert.notEqual(hello.token, t, 'the new HELLO has a fresh token');
}

/** Connects a client that joins `group` (and a presence group to observe its disconnect). */
async function member(srv, group) {
  const c = await connect(srv);
  await c.ok(`/join/${group}`);
  return c;
}

/** Drops `x` without a close frame and waits until the server removed it from `group`. */
async function vanish(x, ctl, group, remaining = 0) {
  x.destroy();
  await waitCount(ctl, group, remaining);
}

// ---------------------------------------------------------------------------------------------
describe('1. HELLO', () => {
  let srv;
  before(async () => { srv = await server(); });
  after(() => stopServer(srv));

  test('the first message: version 1, 22-char URL-safe ids differing per connection, a 22-char token, the envelope schema of §2.1', async () => {
    const envelopeSchema = docHex('envelope-schema');
    assert.equal(envelopeSchema.length, 71, 'the §2.1 hex block parsed');
    const helloDoc = docHex('hello');
    const cs = [];
    for (let i = 0; i < 20; i++) cs.push(await connect(srv, { hello: false }));
    const hellos = [];
    for (const c of cs) {
      const m = await c.next();
      assert.equal(c.log[0], m, 'HELLO is the first message on the connection');
      assert.equal(m.kind, KIND.HELLO);
      assert.equal(m.raw[0], 5, 'kind byte 5');
      assert.equal(m.version, 1);
      assert.match(m.connId, ID_RE);
      assert.match(m.token, ID_RE);
      // 22 characters of URL-safe base64 of 16 bytes (the last character carries 2 bits).
      assert.equal(Buffer.from(m.connId, 'base64url').length, 16);
      assert.equal(Buffer.from(m.connId, 'base64url').toString('base64url'), m.connId);
      assert.equal(Buffer.from(m.token, 'base64url').toString('base64url'), m.token);
      assert.notEqual(m.token, m.connId);
      assert.deepEqual(m.envelopeSchema, envelopeSchema, 'envelope schema bytes equal docs/PROTOCOL.md §2.1');
      // Defaults: heartbeat 60000, 16 MiB, max_replay 10000, history_max 1000, no app schemas.
      assert.deepEqual([m.heartbeatMs, m.maxMessage, m.maxReplay, m.historyMax, m.schemas.length],
        [60000, 16 * 1024 * 1024, 10000, 1000, 0]);
      // Byte for byte the §5 example with this connection's id and token in place of A… and B….
      const expected = Buffer.from(helloDoc.toString('latin1')
        .replace('A'.repeat(22), m.connId).replace('B'.repeat(22), m.token), 'latin1');
      assert.deepEqual(m.raw, expected, 'HELLO bytes = the §5 hex example with this id and token');
      hellos.push(m);
    }
    assert.equal(new Set(hellos.map((h) => h.connId)).size, 20, 'connection ids differ');
    assert.equal(new Set(hellos.map((h) => h.token)).size, 20, 'tokens differ');
    for (let i = 0; i < cs.length; i++) assert.equal(await cs[i].ok('/whoami'), hellos[i].connId, '/whoami is the HELLO id');
  });
});

// ---------------------------------------------------------------------------------------------
describe('2. groups, direct messages, broadcast', () => {
  let srv;
  before(async () => { srv = await server(); });
  after(() => stopServer(srv));

  test('join / leave / count; a connection in several groups', async () => {
    const [g1, g2, g3] = [uniq('g1'), uniq('g2'), uniq('g3')];
    const a = await connect(srv);
    const b = await connect(srv);
    assert.deepEqual(sortedLines(await a.ok(`/join/${g1}`)), [g1]);
    assert.deepEqual(sortedLines(await a.ok(`/join/${g2}`)), [g1, g2].sort());
    assert.deepEqual(sortedLines(await a.ok(`/join/${g1}`)), [g1, g2].sort(), 'joining twice changes nothing');
    assert.deepEqual(sortedLines(await a.ok(`/join/${g3}`)), [g1, g2, g3].sort());
    assert.deepEqual(sortedLines(await b.ok(`/join/${g1}`)), [g1]);
    assert.equal(await a.ok(`/count/${g1}`), '2');
    assert.equal(await a.ok(`/count/${g2}`), '1');
    assert.equal(await a.ok(`/count/${g3}`), '1');
    assert.equal(await a.ok(`/count/${uniq('nobody')}`), '0');
    assert.deepEqual(sortedLines(await a.ok(`/leave/${g1}`)), [g2, g3].sort());
    assert.equal(await b.ok(`/count/${g1}`), '1');
    assert.deepEqual(sortedLines(await a.ok(`/leave/${g1}`)), [g2, g3].sort(), 'leaving a group one is not in changes nothing');
    assert.deepEqual(sortedLines(await a.ok(`/leave/${g2}`)), [g3]);
    assert.equal(await b.ok(`/count/${g2}`), '0');
    assert.deepEqual(sortedLines(await b.ok(`/leave/${g1}`)), []);
    assert.equal(await b.ok(`/count/${g1}`), '0');
    assert.deepEqual(sortedLines(await a.ok(`/join/${g1}`)), [g1, g3].sort());
    assert.equal(await b.ok(`/count/${g1}`), '1');
  });

  test('a publish reaches each member exactly once and no non-member', async () => {
    const [x, y] = [uniq('x'), uniq('y')];
    const a = await connect(srv, { label: 'a' });
    const b = await connect(srv, { label: 'b' });
    const c = await connect(srv, { label: 'c' });
    const p = await connect(srv, { label: 'p' });
    await a.ok(`/join/${x}`);
    await a.ok(`/join/${y}`);
    await b.ok(`/join/${x}`);
    await publish(p, x, ['x-one']);
    await publish(p, y, ['y-one']);
    await publish(p, x, ['x-two'], METHOD.PUT);
    const ax = await takePushes(a, `g:${x}`, 2);
    assertPushes(ax.slice(0, 1), `g:${x}`, 1, ['x-one']);
    assertPushes(ax.slice(1), `g:${x}`, 2, ['x-two'], { epoch: ax[0].epoch, method: METHOD.PUT });
    assertPushes(await takePushes(a, `g:${y}`, 1), `g:${y}`, 1, ['y-one']);
    const bx = await takePushes(b, `g:${x}`, 2);
    assert.deepEqual(bx.map(show), ax.map(show), 'members get the same pushes');
    assert.equal(bx[0].epoch, ax[0].epoch);
    for (const [cl, name] of [[a, 'a'], [b, 'b'], [c, 'c (no group)'], [p, 'p (publisher, no group)']]) {
      await assertNothingElse(cl, name);
    }
    assert.equal(a.pushCount, 3);
    assert.equal(b.pushCount, 2);
    assert.equal(c.pushCount, 0);
    assert.equal(p.pushCount, 0);
  });

  test('leaving on close is automatic (close frame and vanished socket)', async () => {
    const z = uniq('z');
    const a = await member(srv, z);
    const b = await member(srv, z);
    const d = await member(srv, z);
    const p = await connect(srv);
    await waitCount(p, z, 3);
    await b.close(1000);
    await b.waitEnded();
    await waitCount(p, z, 2);
    d.destroy();
    await waitCount(p, z, 1);
    await publish(p, z, ['after']);
    assertPushes(await takePushes(a, `g:${z}`, 1), `g:${z}`, 1, ['after']);
    await assertNothingElse(a, 'a');
    assert.equal(b.pushCount, 0);
    assert.equal(d.pushCount, 0);
  });

  test('/send/ID reaches only that connection; an unknown id is 404', async () => {
    const a = await connect(srv, { label: 'a' });
    const b = await connect(srv, { label: 'b' });
    const c = await connect(srv, { label: 'c' });
    const g = uniq('common');
    for (const k of [a, b, c]) await k.ok(`/join/${g}`);
    for (const id of [randomId(), 'short', `${b.id}x`, '']) {
      const r = await a.request(`/send/${id}`, 'nobody');
      assert.equal(r.kind, KIND.RESPONSE, show(r));
      assert.equal(r.status, 404, `/send/${id}: ${show(r)}`);
    }
    assert.equal(await a.ok(`/send/${b.id}`, 'for b, 1'), '');
    assert.equal(await c.ok(`/send/${b.id}`, 'for b, 2'), '');
    assert.equal(await b.ok(`/send/${b.id}`, 'b to itself'), '');
    const bp = await takePushes(b, `c:${b.id}`, 3, 2000);
    assertPushes(bp, `c:${b.id}`, 1, ['for b, 1', 'for b, 2', 'b to itself'], { url: '/direct', epoch: bp[0].epoch });
    for (const [k, name] of [[a, 'a'], [b, 'b'], [c, 'c']]) await assertNothingElse(k, name);
    assert.equal(a.pushCount + c.pushCount, 0, 'a and c got no direct message');
  });

  test('/broadcast reaches every connection, the sender too, unrecorded (empty stream, offset 0)', async () => {
    const g = uniq('w');
    const cs = [];
    for (let i = 0; i < 5; i++) cs.push(await member(srv, g));
    const loner = await connect(srv); // in no group
    cs.push(loner);
    await publish(cs[0], g, ['before']);
    assert.equal(await cs[0].ok('/broadcast', 'to all'), '');
    await publish(cs[0], g, ['after']);
    for (const [i, c] of cs.entries()) {
      const b = await c.take((m) => m.kind === KIND.PUSH && m.stream === '');
      assert.deepEqual([b.stream, b.offset, b.epoch, b.url, b.method, b.body.toString()],
        ['', 0n, 0n, '/broadcast', METHOD.POST, 'to all'], `client ${i}: ${show(b)}`);
      if (c !== loner) {
        const ps = await takePushes(c, `g:${g}`, 2);
        assertPushes(ps, `g:${g}`, 1, ['before', 'after'], { epoch: ps[0].epoch });
        const order = c.log.filter((m) => m.kind === KIND.PUSH).map((m) => m.body.toString());
        assert.deepEqual(order, ['before', 'to all', 'after'], 'pushes in the order they were made');
      }
      await assertNothingElse(c, `client ${i}`);
    }
  });
});

// ---------------------------------------------------------------------------------------------
function openFileLimit() {
  try {
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(fs.readFileSync('/proc/self/limits', 'utf8'));
    return m && m[1] !== 'unlimited' ? Number(m[1]) : Infinity;
  } catch { return 1024; }
}
const FD_LIMIT = openFileLimit();
// Each side (this process, the server) needs one descriptor per connection plus a few hundred.
const BIG_N = Math.max(5000, Math.min(10000, FD_LIMIT - 1000));
const BIG_NOTE = BIG_N < 10000 ? ` (only ${BIG_N}: ulimit -n is ${FD_LIMIT})` : '';
if (BIG_NOTE) console.log(`# messaging: the large group test uses ${BIG_N} connections${BIG_NOTE}`);

describe(`3. a group of ${BIG_N} local connections${BIG_NOTE}`, () => {
  let srv;
  const conns = [];
  before(async () => { srv = await server(); });
  after(async () => {
    for (const c of conns) c.destroy();
    await stopServer(srv);
  });

  test(`each of 5 messages reaches each of the ${BIG_N} members exactly once, offsets 1..5`, { timeout: 120000 }, async () => {
    const M = 5;
    const bodies = Array.from({ length: M }, (_, i) => `big message ${i + 1} ${'x'.repeat(100 * i)}`);
    const problems = [];
    const got = new Map();
    const epochs = new Set();
    let total = 0;
    let opened = 0;
    const t0 = Date.now();
    const worker = async () => {
      while (opened < BIG_N) {
        opened++;
        const c = await HubClient.connect(srv.port, { timeoutMs: 20000 });
        conns.push(c);
        const rec = [];
        got.set(c, rec);
        c.onPush = (m) => {
          total++;
          rec.push(m.offset);
          epochs.add(m.epoch);
          if (m.stream !== 'g:big' || m.body.toString() !== bodies[Number(m.offset) - 1]) {
            problems.push(`${c.id}: unexpected ${show(m)}`);
          }
        };
        await c.ok('/join/big', '', { timeoutMs: 20000 });
      }
    };
    await Promise.all(Array.from({ length: 200 }, worker));
    const tOpen = Date.now() - t0;
    assert.equal(conns.length, BIG_N);
    assert.equal(new Set(conns.map((c) => c.id)).size, BIG_N, 'every connection has its own id');
    const p = await connect(srv, { label: 'publisher' });
    assert.equal(await p.ok('/count/big'), String(BIG_N));
    const t1 = Date.now();
    await publish(p, 'big', bodies);
    const deadline = Date.now() + 60000;
    while (total < BIG_N * M && Date.now() < deadline && problems.length === 0) await sleep(20);
    const tDeliver = Date.now() - t1;
    await sleep(300); // let any duplicate arrive
    console.log(`# ${BIG_N} connections opened and joined in ${tOpen} ms; ${M} x ${BIG_N} deliveries in ${tDeliver} ms`);
    assert.deepEqual(problems.slice(0, 10), []);
    const expected = Array.from({ length: M }, (_, i) => BigInt(i + 1)).join(',');
    const bad = [];
    for (const [c, rec] of got) if (rec.join(',') !== expected) bad.push(`${c.id}: offsets [${rec.join(',')}]`);
    assert.deepEqual(bad.slice(0, 10), [], `${bad.length} of ${BIG_N} connections did not get offsets [${expected}] exactly once`);
    assert.equal(total, BIG_N * M);
    assert.equal(epochs.size, 1, 'one epoch for the stream');
    assert.notEqual([...epochs][0], 0n);
    assert.equal(p.pushCount, 0, 'the publisher is not a member');
    // Closing them all empties the group.
    for (const c of conns) c.destroy();
    await waitCount(p, 'big', 0, 30000);
  });
});

// ---------------------------------------------------------------------------------------------
describe('4. redelivery (RESUME)', () => {
  let srv;
  let race;
  before(async () => {
    srv = await server();
    race = await server(['--history-max', '200000', '--max-replay', '200000', '--replay-batch', '16']);
  });
  after(async () => { await stopServer(srv); await stopServer(race); });

  test('a dropped client resumes: new HELLO with its old id, exactly the missed pushes in order, RESUMED recovered', async () => {
    const g = uniq('r');
    const p = await connect(srv, { label: 'publisher' });
    const x = await member(srv, g);
    await publish(p, g, ['m1', 'm2', 'm3']);
    const seen = await takePushes(x, `g:${g}`, 3);
    assertPushes(seen, `g:${g}`, 1, ['m1', 'm2', 'm3'], { epoch: seen[0].epoch });
    const epoch = seen[0].epoch;
    await vanish(x, p, g);
    await publish(p, g, ['m4', 'm5', 'm6', 'm7', 'm8']);
    const y = await connect(srv, { label: 'y' });
    assert.notEqual(y.id, x.id);
    y.resume(x.hello.token, [{ stream: `g:${g}`, offset: 3n, epoch }]);
    const r = await readResume(y);
    assertResumedHello(r.hello, x.id, [x.hello.token, y.hello.token]);
    assertPushes(r.pushes, `g:${g}`, 4, ['m4', 'm5', 'm6', 'm7', 'm8'], { epoch });
    assertEntry(r.byStream, `g:${g}`, true, 8, epoch);
    assertEntry(r.byStream, `c:${x.id}`, true, 0); // the direct stream, nothing in it
    assert.deepEqual(Object.keys(r.byStream).sort(), [`g:${g}`, `c:${x.id}`].sort());
    // The session is whole again: its id, its group, live pushes continue at 9.
    assert.equal(await y.ok('/whoami'), x.id);
    assert.equal(await p.ok(`/count/${g}`), '1');
    await publish(p, g, ['m9']);
    assertPushes(await takePushes(y, `g:${g}`, 1), `g:${g}`, 9, ['m9'], { epoch });
    await assertNothingElse(y, 'y');
  });

  test('resuming while a publisher publishes in a tight loop: replayed + live offsets contiguous, no duplicates', { timeout: 60000 }, async () => {
    const g = uniq('live');
    const srvr = race;
    const p = await connect(srvr, { label: 'publisher' });
    const x = await member(srvr, g);
    await publish(p, g, ['m1', 'm2', 'm3', 'm4', 'm5']);
    const seen = await takePushes(x, `g:${g}`, 5);
    const epoch = seen[0].epoch;
    assertPushes(seen, `g:${g}`, 1, ['m1', 'm2', 'm3', 'm4', 'm5'], { epoch });
    await vanish(x, p, g);
    let n = 5;
    let stop = false;
    const loopDeadline = Date.now() + 20000; // never outlive the test, even when it fails
    const loop = (async () => {
      while (!stop && !p.sock.destroyed && Date.now() < loopDeadline) {
        let w;
        for (let j = 0; j < 10; j++) {
          w = p.sendEnv({ kind: KIND.SEND, method: METHOD.POST, url: `/publish/${g}`, body: `m${++n}` });
        }
        await w; // flushed to the kernel: keeps the loop from buffering without bound
        await new Promise((r) => setImmediate(r));
      }
    })();
    await sleep(100);
    const y = await connect(srvr, { label: 'y' });
    const atResume = n;
    y.resume(x.hello.token, [{ stream: `g:${g}`, offset: 5n, epoch }]);
    const r = await readResume(y, 20000);
    await sleep(150);
    stop = true;
    await loop;
    const [head, headEpoch] = (await p.ok(`/position/${g}`)).split(' ').map(BigInt);
    assert.equal(head, BigInt(n), 'every publish of the loop was recorded');
    assert.equal(headEpoch, epoch);
    assertResumedHello(r.hello, x.id, [x.hello.token, y.hello.token]);
    const e = r.byStream[`g:${g}`];
    assert.ok(e, `RESUMED has an entry for g:${g}: ${JSON.stringify(r.resumed, big)}`);
    assertEntry(r.byStream, `g:${g}`, true, e.offset, epoch);
    // Live pushes after RESUMED, up to the head.
    const after = [];
    await y.waitFor(() => {
      while (y.inbox.length) {
        const m = y.inbox.shift();
        assert.equal(m.kind, KIND.PUSH, `after RESUMED only pushes: ${show(m)}`);
        after.push(m);
      }
      return after.length && after.at(-1).offset >= head ? true : undefined;
    }, 20000, `pushes up to offset ${head}`);
    const all = [...r.pushes, ...after];
    const offs = all.map((m) => m.offset);
    const dup = offs.filter((o, i) => offs.indexOf(o) !== i);
    assert.deepEqual(dup.slice(0, 10), [], 'duplicated offsets');
    const gaps = [];
    for (let i = 0; i < offs.length; i++) if (offs[i] !== BigInt(6 + i)) { gaps.push(`index ${i}: ${offs[i]} (expected ${6 + i})`); if (gaps.length > 5) break; }
    assert.deepEqual(gaps, [], `offsets must run 6..${head} contiguously`);
    assert.equal(offs.length, Number(head) - 5);
    for (const m of all) {
      assert.equal(m.stream, `g:${g}`);
      assert.equal(m.epoch, epoch);
      assert.equal(m.body.toString(), `m${m.offset}`, `body of offset ${m.offset}`);
    }
    assert.equal(r.pushes.at(-1)?.offset ?? 5n, e.offset, 'RESUMED offset = the last push before it');
    console.log(`# race: ${atResume - 5} missed when resuming, ${r.pushes.length} pushes before RESUMED, ${after.length} after, head ${head}`);
    assert.ok(r.pushes.length >= atResume - 5, `at least the ${atResume - 5} missed before the RESUME were replayed`);
    assert.ok(after.length > 0, 'live pushes continued after RESUMED');
  });

  test('a group the client never got a push from is replayed from where the session joined it', async () => {
    const room = uniq('quiet');
    const p = await connect(srv, { label: 'publisher' });
    for (const b of ['before1', 'before2']) assert.equal(await p.ok(`/publish/${room}`, b), '');
    const x = await member(srv, room); // joins at offset 2, gets no push
    await vanish(x, p, room);
    for (const b of ['m1', 'm2', 'm3']) assert.equal(await p.ok(`/publish/${room}`, b), '');
    const y = await connect(srv, { label: 'y' });
    y.resume(x.hello.token, []); // no position for the group: the client saw nothing of it
    const r = await readResume(y);
    const epoch = r.pushes[0]?.epoch;
    assertPushes(r.pushes, `g:${room}`, 3, ['m1', 'm2', 'm3'], { epoch });
    assertEntry(r.byStream, `g:${room}`, true, 5, epoch);
    y.destroy();
    p.destroy();
  });

  test('direct messages sent while away are replayed (from offset 0 epoch 0, and from a position)', async () => {
    const presence = uniq('presence');
    const p = await connect(srv, { label: 'sender' });
    const x = await member(srv, presence);
    const cx = `c:${x.id}`;
    await vanish(x, p, presence);
    for (const d of ['d1', 'd2', 'd3']) assert.equal(await p.ok(`/send/${x.id}`, d), '', 'a session that is away still takes direct messages');
    // From "nothing seen" (0, 0): all three.
    const y = await connect(srv, { label: 'y' });
    y.resume(x.hello.token, [{ stream: cx, offset: 0n, epoch: 0n }]);
    const r = await readResume(y);
    assertResumedHello(r.hello, x.id, [x.hello.token, y.hello.token]);
    const epoch = r.pushes[0]?.epoch;
    assertPushes(r.pushes, cx, 1, ['d1', 'd2', 'd3'], { url: '/direct', epoch });
    assertEntry(r.byStream, cx, true, 3, epoch);
    // The session's group, for which the client gave no position: rejoined, and recovered from
    // where the session joined it (nothing was published since).
    assertEntry(r.byStream, `g:${presence}`, true, 0);
    assert.deepEqual(Object.keys(r.byStream).sort(), [cx, `g:${presence}`].sort());
    assert.equal(await p.ok(`/count/${presence}`), '1');
    // Away again; two more; resume from the position (3, epoch): just those.
    await vanish(y, p, presence);
    assert.equal(await p.ok(`/send/${x.id}`, 'd4'), '');
    assert.equal(await p.ok(`/send/${x.id}`, 'd5'), '');
    const z = await connect(srv, { label: 'z' });
    z.resume(r.hello.token, [{ stream: cx, offset: 3n, epoch }]);
    const r2 = await readResume(z);
    assertResumedHello(r2.hello, x.id, [x.hello.token, r.hello.token, z.hello.token]);
    assertPushes(r2.pushes, cx, 4, ['d4', 'd5'], { url: '/direct', epoch });
    assertEntry(r2.byStream, cx, true, 5, epoch);
    await assertNothingElse(z, 'z');
    // Live again: the next direct message reaches the resumed connection at offset 6.
    assert.equal(await p.ok(`/send/${x.id}`, 'd6'), '');
    assertPushes(await takePushes(z, cx, 1, 2000), cx, 6, ['d6'], { url: '/direct', epoch });
    await assertNothingElse(z, 'z');
  });
});

// ---------------------------------------------------------------------------------------------
describe('5. stale positions', () => {
  let hist5;
  let replay3;
  let srv;
  before(async () => {
    hist5 = await server(['--history-max', '5']);
    replay3 = await server(['--max-replay', '3']);
    srv = await server();
  });
  after(async () => { await stopServer(hist5); await stopServer(replay3); await stopServer(srv); });

  /** x joins a fresh group, sees offset 1..`seen`, vanishes; `missed` more are published; y resumes. */
  async function scenario(s, { seen = 1, missed, position }) {
    const g = uniq('s');
    const p = await connect(s, { label: 'publisher' });
    const x = await member(s, g);
    const bodies = Array.from({ length: seen + missed }, (_, i) => `v${i + 1}`);
    await publish(p, g, bodies.slice(0, seen));
    const got = await takePushes(x, `g:${g}`, seen);
    const epoch = got[0].epoch;
    await vanish(x, p, g);
    await publish(p, g, bodies.slice(seen));
    const y = await connect(s, { label: 'y' });
    y.resume(x.hello.token, [position ? position(g, epoch) : { stream: `g:${g}`, offset: BigInt(seen), epoch }]);
    const r = await readResume(y);
    assertResumedHello(r.hello, x.id, [x.hello.token, y.hello.token]);
    return { g, p, x, y, r, epoch, bodies, head: seen + missed };
  }

  test('--history-max 5: missing exactly 5 is recovered, missing 6 is recovered:false and not replayed', async () => {
    const h = await connect(hist5);
    assert.equal(h.hello.historyMax, 5, 'HELLO announces history_max');
    const ok = await scenario(hist5, { missed: 5 });
    assertPushes(ok.r.pushes, `g:${ok.g}`, 2, ok.bodies.slice(1), { epoch: ok.epoch });
    assertEntry(ok.r.byStream, `g:${ok.g}`, true, 6, ok.epoch);

    const s = await scenario(hist5, { missed: 6 });
    assert.deepEqual(s.r.pushes.map(show), [], 'nothing of a stream that cannot be recovered is replayed');
    assertEntry(s.r.byStream, `g:${s.g}`, false, 7, s.epoch);
    // Rejoined all the same: the next push is live, at 8.
    await publish(s.p, s.g, ['v8']);
    assertPushes(await takePushes(s.y, `g:${s.g}`, 1), `g:${s.g}`, 8, ['v8'], { epoch: s.epoch });
    await assertNothingElse(s.y, 'y');
  });

  test('a wrong epoch is recovered:false, not replayed, and RESUMED gives the real epoch', async () => {
    const s = await scenario(srv, { seen: 2, missed: 2, position: (g, epoch) => ({ stream: `g:${g}`, offset: 2n, epoch: epoch ^ 1n }) });
    assert.deepEqual(s.r.pushes.map(show), []);
    assertEntry(s.r.byStream, `g:${s.g}`, false, 4, s.epoch);
    // Offset 2 with epoch 0 is not "nothing seen" either.
    const t = await scenario(srv, { seen: 2, missed: 1, position: (g) => ({ stream: `g:${g}`, offset: 2n, epoch: 0n }) });
    assert.deepEqual(t.r.pushes.map(show), []);
    assertEntry(t.r.byStream, `g:${t.g}`, false, 3, t.epoch);
  });

  test('--max-replay 3: 3 missing are replayed, 4 missing are recovered:false', async () => {
    const h = await connect(replay3);
    assert.equal(h.hello.maxReplay, 3, 'HELLO announces max_replay');
    const ok = await scenario(replay3, { missed: 3 });
    assertPushes(ok.r.pushes, `g:${ok.g}`, 2, ok.bodies.slice(1), { epoch: ok.epoch });
    assertEntry(ok.r.byStream, `g:${ok.g}`, true, 4, ok.epoch);
    const s = await scenario(replay3, { missed: 4 });
    assert.deepEqual(s.r.pushes.map(show), []);
    assertEntry(s.r.byStream, `g:${s.g}`, false, 5, s.epoch);
  });
});

// ---------------------------------------------------------------------------------------------
describe('6. tokens', () => {
  let srv;
  let ttl;
  before(async () => {
    srv = await server();
    ttl = await server(['--session-ttl-ms', '300']);
  });
  after(async () => { await stopServer(srv); await stopServer(ttl); });

  async function expect401(c, what) {
    const e = await c.next();
    assert.equal(e.kind, KIND.ERROR, `${what}: expected ERROR 401, got ${show(e)}`);
    assert.equal(e.status, 401, `${what}: ${show(e)}`);
    assert.equal(e.id, 0, `${what}: ERROR id (RESUME is not a request)`);
    assert.ok(e.body.length > 0, `${what}: ERROR carries a text`);
    new TextDecoder('utf-8', { fatal: true }).decode(e.body);
  }

  test('a forged token -> ERROR 401, and the connection carries on as its own fresh session', async () => {
    const a = await connect(srv, { label: 'a' });
    const p = await connect(srv, { label: 'p' });
    a.resume(randomId(), []);
    await expect401(a, 'forged 22-char token');
    a.resume('short', []);
    await expect401(a, '5-char token');
    assert.equal(await a.ok('/whoami'), a.id, 'still the id of its own HELLO');
    const g = uniq('fresh');
    await a.ok(`/join/${g}`);
    await publish(p, g, ['still works']);
    assertPushes(await takePushes(a, `g:${g}`, 1), `g:${g}`, 1, ['still works']);
    await assertNothingElse(a, 'a');
    assert.equal(a.log.filter((m) => m.kind === KIND.HELLO).length, 1, 'no second HELLO');
    assert.equal(await p.ok(`/send/${a.id}`, 'direct'), '');
    assertPushes(await takePushes(a, `c:${a.id}`, 1, 2000), `c:${a.id}`, 1, ['direct'], { url: '/direct' });
  });

  test('a token is single use: a second RESUME with it -> 401 (on another connection and on the same one)', async () => {
    const g = uniq('once');
    const p = await connect(srv);
    const x = await member(srv, g);
    await vanish(x, p, g);
    const y = await connect(srv, { label: 'y' });
    y.resume(x.hello.token, []);
    const r = await readResume(y);
    assertResumedHello(r.hello, x.id, [x.hello.token, y.hello.token]);
    const z = await connect(srv, { label: 'z' });
    z.resume(x.hello.token, []);
    await expect401(z, 'reused token, another connection');
    assert.equal(await z.ok('/whoami'), z.id);
    y.resume(x.hello.token, []);
    await expect401(y, 'reused token, the same connection');
    assert.equal(await y.ok('/whoami'), x.id, 'y keeps the session it resumed');
    assert.equal(await p.ok(`/count/${g}`), '1');
  });

  test('the token of an expired session (--session-ttl-ms 300, 1.5 s later) -> 401; its direct stream is gone (404)', async () => {
    const g = uniq('ttl');
    const p = await connect(ttl);
    const x = await member(ttl, g);
    await vanish(x, p, g);
    await sleep(1500);
    const y = await connect(ttl, { label: 'y' });
    y.resume(x.hello.token, []);
    await expect401(y, 'expired session');
    assert.equal(await y.ok('/whoami'), y.id);
    const r = await p.request(`/send/${x.id}`, 'too late');
    assert.equal(r.status, 404, `/send to an expired session: ${show(r)}`);
    assert.equal(await p.ok(`/count/${g}`), '0');
  });

  test('resuming a session whose connection is still open closes the old one with 4000; the new one gets its id', async () => {
    const g = uniq('tk');
    const p = await connect(srv);
    const x = await member(srv, g);
    await publish(p, g, ['t1', 't2']);
    await takePushes(x, `g:${g}`, 2);
    const y = await connect(srv, { label: 'y' });
    y.resume(x.hello.token, []);
    const r = await readResume(y);
    assertResumedHello(r.hello, x.id, [x.hello.token, y.hello.token]);
    // No position for the session's group: replayed from where the session joined it.
    const epoch = r.pushes[0]?.epoch;
    assertPushes(r.pushes, `g:${g}`, 1, ['t1', 't2'], { epoch });
    assertEntry(r.byStream, `g:${g}`, true, 2, epoch);
    const { frame } = await x.waitClosed();
    assert.ok(frame, `the old connection gets a close frame; ${x.describe()}`);
    assert.equal(frame.code, 4000, `close code of the replaced connection; ${x.describe()}`);
    await x.waitEnded();
    assert.equal(await y.ok('/whoami'), x.id);
    await waitCount(p, g, 1);
    await publish(p, g, ['t3']);
    assertPushes(await takePushes(y, `g:${g}`, 1), `g:${g}`, 3, ['t3']);
    assert.equal(x.log.filter((m) => m.kind === KIND.PUSH).length, 2, 'the old connection got nothing after the takeover');
    assert.equal(await p.ok(`/send/${x.id}`, 'to the session'), '');
    assertPushes(await takePushes(y, `c:${x.id}`, 1, 2000), `c:${x.id}`, 1, ['to the session'], { url: '/direct' });
  });
});

// ---------------------------------------------------------------------------------------------
describe('7. ACK', () => {
  let srv;
  before(async () => { srv = await server(); });
  after(() => stopServer(srv));

  test('acked direct messages are trimmed: a resume from before the ack is recovered:false; from the ack it replays the rest', async () => {
    const presence = uniq('ack');
    const p = await connect(srv);
    const x = await member(srv, presence);
    const cx = `c:${x.id}`;
    // The client gets d1..d5 (through a resume, so that this test does not depend on live
    // direct delivery, which test 2 covers).
    await vanish(x, p, presence);
    for (let i = 1; i <= 5; i++) assert.equal(await p.ok(`/send/${x.id}`, `d${i}`), '');
    const w = await connect(srv, { label: 'w' });
    w.resume(x.hello.token, [{ stream: cx, offset: 0n, epoch: 0n }]);
    const r0 = await readResume(w);
    const epoch = r0.pushes[0]?.epoch;
    assertPushes(r0.pushes, cx, 1, ['d1', 'd2', 'd3', 'd4', 'd5'], { url: '/direct', epoch });
    assertEntry(r0.byStream, cx, true, 5, epoch);
    w.sendBinary(encodeAck([{ stream: cx, offset: 5n, epoch: epoch ^ 1n }])); // another epoch: ignored
    w.sendBinary(encodeAck([{ stream: cx, offset: 3n, epoch }]));
    assert.equal(await w.ok('/whoami'), x.id); // the ACKs were processed (an ACK has no answer)
    await assertNothingElse(w, 'w after ACK');
    await vanish(w, p, presence);
    // From offset 1: 2 and 3 were trimmed, so the history no longer reaches back.
    const y = await connect(srv, { label: 'y' });
    y.resume(r0.hello.token, [{ stream: cx, offset: 1n, epoch }]);
    const r = await readResume(y);
    assertResumedHello(r.hello, x.id, [x.hello.token, r0.hello.token, y.hello.token]);
    assert.deepEqual(r.pushes.map(show), [], 'nothing replayed');
    assert.deepEqual(r.byStream[cx], { stream: cx, recovered: false, offset: 5n, epoch },
      `RESUMED entry for ${cx}: expected {recovered:false, offset:5, epoch}, got ${entry(r.byStream[cx])}`);
    // From offset 3 (what was acked): 4 and 5 are still there (the ACK of the other epoch did nothing).
    await vanish(y, p, presence);
    const z = await connect(srv, { label: 'z' });
    z.resume(r.hello.token, [{ stream: cx, offset: 3n, epoch }]);
    const r2 = await readResume(z);
    assertPushes(r2.pushes, cx, 4, ['d4', 'd5'], { url: '/direct', epoch });
    assertEntry(r2.byStream, cx, true, 5, epoch);
  });
});

// ---------------------------------------------------------------------------------------------
function procNumbers(file) {
  try { return fs.readFileSync(file, 'utf8').trim().split(/\s+/).map(Number); } catch { return null; }
}

describe('8. slow consumer', () => {
  let srv;
  // Enough 4 KiB messages to overflow what the kernel can buffer for a reader that stopped
  // (its send buffer can grow to tcp_wmem[2], the reader's receive buffer starts at tcp_rmem[1])
  // plus the 64 KiB queue, three times over.
  const wmem = procNumbers('/proc/sys/net/ipv4/tcp_wmem') ?? [0, 0, 4194304];
  const rmem = procNumbers('/proc/sys/net/ipv4/tcp_rmem') ?? [0, 131072, 0];
  const N = Math.min(20000, Math.max(3000, Math.ceil((3 * (wmem[2] + rmem[1] + 256 * 1024)) / 4096)));
  before(async () => {
    srv = await server(['--max-queued-bytes', '65536', '--history-max', String(N + 100), '--max-replay', String(N + 100),
      '--close-timeout-ms', '60000']);
  });
  after(() => stopServer(srv));

  test(`a member that stops reading is closed with 1013, the 5 others get all ${N} 4 KiB messages in order, and it resumes losing nothing`, { timeout: 90000 }, async () => {
    const s = await member(srv, 'flood');
    s.pause();
    const normals = [];
    for (let i = 0; i < 5; i++) {
      const c = await member(srv, 'flood');
      c.got = 0;
      c.bad = [];
      c.onPush = (m) => {
        c.got++;
        if (m.stream !== 'g:flood' || m.offset !== BigInt(c.got) || m.body.length !== 4096 || m.body.readUInt32BE(0) !== c.got) {
          if (c.bad.length < 5) c.bad.push(`push #${c.got}: ${show(m)}`);
        }
      };
      normals.push(c);
    }
    const p = await connect(srv, { label: 'publisher' });
    assert.equal(await p.ok('/count/flood'), '6');
    // Keep at most W messages in flight to the normal members (W x 4 KiB < 64 KiB), so that only
    // the paused one can overflow its queue.
    const W = 8;
    const t0 = Date.now();
    for (let i = 1; i <= N; i++) {
      if (i > W) {
        await Promise.all(normals.map((c) => c.waitFor(() => (c.got >= i - W ? true : undefined), 10000, `push ${i - W}`)));
      }
      const body = Buffer.alloc(4096, i & 0xff);
      body.writeUInt32BE(i, 0);
      p.sendEnv({ kind: KIND.SEND, method: METHOD.POST, url: '/publish/flood', body });
    }
    await Promise.all(normals.map((c) => c.waitFor(() => (c.got >= N ? true : undefined), 20000, `push ${N}`)));
    console.log(`# slow consumer: ${N} x 4 KiB published in ${Date.now() - t0} ms`);
    for (const [i, c] of normals.entries()) {
      assert.deepEqual(c.bad, [], `normal client ${i}`);
      assert.equal(c.got, N, `normal client ${i} got every message`);
      assert.equal(c.closeFrame, null, `normal client ${i} was not closed`);
      assert.equal(c.ended, false);
    }
    // Now read: what the server had sent, then its close frame with 1013.
    s.resumeReading();
    await s.waitClosed(10000);
    await s.waitEnded(10000);
    assert.ok(s.closeFrame, `the slow client gets a close frame; ${s.describe()}`);
    assert.equal(s.closeFrame.code, 1013, `close code; ${s.describe()}`);
    const sp = s.pushes('g:flood');
    const j = sp.length;
    assert.ok(j < N, `the paused client must have been cut off (it got all ${N}: raise N)`);
    const offs = sp.map((m) => m.offset);
    assert.deepEqual(offs.filter((o, i) => o !== BigInt(i + 1)).slice(0, 5), [], 'what it got before the close is 1..j');
    for (const m of sp) assert.equal(m.body.readUInt32BE(0), Number(m.offset));
    const epoch = sp[0].epoch;
    await waitCount(p, 'flood', 5);
    // It resumes and gets j+1..N.
    const y = await connect(srv, { label: 'resumer' });
    y.resume(s.hello.token, [{ stream: 'g:flood', offset: BigInt(j), epoch }]);
    let r;
    try {
      r = await readResume(y, 30000);
    } catch (e) {
      const got = y.pushes('g:flood');
      const cf = y.closeFrame;
      assert.fail(`the resume did not complete: the resuming connection (reading all the time) ` +
        `${cf ? `was closed with ${cf.code} ${JSON.stringify(cf.reason.toString())}` : 'failed'} after ` +
        `${got.length} of the ${N - j} replayed pushes (offsets ${got[0]?.offset}..${got.at(-1)?.offset}); ` +
        `the replay must not overflow --max-queued-bytes 65536. ${e.message}`);
    }
    assertResumedHello(r.hello, s.id, [s.hello.token, y.hello.token]);
    assert.equal(r.pushes.length, N - j, `replayed ${r.pushes.length}, expected ${N - j}`);
    const bad = r.pushes.filter((m, i) => m.offset !== BigInt(j + 1 + i) || m.body.readUInt32BE(0) !== j + 1 + i || m.epoch !== epoch);
    assert.deepEqual(bad.slice(0, 5).map(show), [], 'replayed pushes j+1..N in order');
    assertEntry(r.byStream, 'g:flood', true, N, epoch);
    console.log(`# slow consumer: cut off after ${j} messages, ${N - j} replayed on resume`);
  });
});

// ---------------------------------------------------------------------------------------------
describe('9. bad input', () => {
  let srv;
  before(async () => { srv = await server(); });
  after(() => stopServer(srv));

  test('a text message -> close 1003', async () => {
    const c = await connect(srv);
    c.sendText('{"kind":1}');
    const { frame } = await c.waitClosed();
    assert.ok(frame, `a close frame; ${c.describe()}`);
    assert.equal(frame.code, 1003, c.describe());
    await c.waitEnded();
  });

  test('a malformed envelope -> ERROR 400 naming the field; the connection keeps working', async () => {
    const c = await connect(srv);
    const p = await connect(srv);
    const cases = [
      [Buffer.from([0x01, 0x00, 0x00]), /status/, '3 bytes: status cut short'],
      [Buffer.alloc(0), /kind/, 'empty message'],
      [Buffer.from('01020000000000010a2f6a6f', 'hex'), /stream/, 'stream length past the end'],
      [Buffer.concat([Buffer.from('0102000000000001', 'hex'), Buffer.from([0x02, 0xc3, 0x28]), Buffer.alloc(17)]), /stream/, 'stream not UTF-8'],
      [Buffer.concat([Buffer.from('010200000000000100', 'hex'), Buffer.alloc(16), Buffer.from([0x02, 0xff, 0xfe])]), /url/, 'url not UTF-8'],
      [Buffer.concat([Buffer.from('010200000000000100', 'hex'), Buffer.alloc(16), Buffer.from([0x80, 0x00])]), /url/, 'url length not minimal'],
    ];
    for (const [bytes, field, what] of cases) {
      c.sendBinary(bytes);
      const e = await c.next();
      assert.equal(e.kind, KIND.ERROR, `${what}: ${show(e)}`);
      assert.equal(e.status, 400, `${what}: ${show(e)}`);
      assert.match(e.body.toString('utf8'), field, `${what}: the error names the field; got ${JSON.stringify(e.body.toString())}`);
      assert.equal(await c.ok('/whoami'), c.id, `${what}: the connection keeps working`);
    }
    const g = uniq('bad');
    await c.ok(`/join/${g}`);
    await publish(p, g, ['fine']);
    assertPushes(await takePushes(c, `g:${g}`, 1), `g:${g}`, 1, ['fine']);
    await assertNothingElse(c, 'after the malformed envelopes');
    assert.equal(c.closeFrame, null);
  });

  test('RESUME with malformed positions -> ERROR 400; the connection keeps working', async () => {
    const c = await connect(srv);
    const x = await connect(srv);
    const tok = Buffer.concat([Buffer.from([22]), Buffer.from(x.hello.token)]);
    const resume = (body) => encodeEnvelope({ kind: KIND.RESUME, body });
    const cases = [
      [Buffer.concat([tok, Buffer.from([4]), Buffer.from('g:ab'), Buffer.alloc(3)]), 'offset cut short'],
      [Buffer.concat([tok, Buffer.from([4]), Buffer.from('g:ab'), Buffer.alloc(8), Buffer.alloc(7)]), 'epoch cut short'],
      [Buffer.concat([tok, Buffer.from([9]), Buffer.from('g:ab')]), 'stream length past the end'],
      [Buffer.concat([tok, Buffer.from([2, 0xc3, 0x28]), Buffer.alloc(16)]), 'stream not UTF-8'],
      [Buffer.concat([tok, Buffer.from([0x80, 0x00])]), 'stream length not minimal'],
      [Buffer.from([30, 0x41, 0x42]), 'token length past the end'],
    ];
    for (const [body, what] of cases) {
      c.sendBinary(resume(body));
      const e = await c.next();
      assert.equal(e.kind, KIND.ERROR, `${what}: ${show(e)}`);
      assert.equal(e.status, 400, `${what}: ${show(e)}`);
      assert.ok(e.body.length > 0);
      assert.equal(await c.ok('/whoami'), c.id, `${what}: still its own session`);
    }
    await assertNothingElse(c, 'after the malformed RESUMEs');
    assert.equal(c.log.filter((m) => m.kind === KIND.HELLO).length, 1, 'no resume happened');
  });
});

// ---------------------------------------------------------------------------------------------
describe('10. examples/broadcast', () => {
  let srv;
  before(async () => { srv = await server([], BROADCAST_BIN); });
  after(() => stopServer(srv));

  test('every SEND from any client is pushed to all (sender included) on g:all with contiguous offsets; a REQUEST gets 202', async () => {
    const ws = [];
    for (let i = 0; i < 4; i++) {
      const c = await wsOpen(srv.port);
      wsClients.add(c);
      const first = await c.next();
      assert.equal(first.isBinary, true);
      c.hello = decodeHello(first.data);
      assert.equal(c.hello.version, 1);
      ws.push(c);
    }
    const PER = 25;
    const sent = [];
    await Promise.all(ws.map(async (c, k) => {
      for (let i = 0; i < PER; i++) {
        const body = `client ${k} message ${i}`;
        sent.push(body);
        await c.send(encodeEnvelope({ kind: KIND.SEND, method: METHOD.POST, url: '/ignored', body }), { binary: true });
      }
    }));
    await ws[2].send(encodeEnvelope({ kind: KIND.REQUEST, method: METHOD.PUT, id: 4242, url: '/x', body: 'a request' }), { binary: true });
    const total = ws.length * PER + 1;
    const streams = [];
    for (const [k, c] of ws.entries()) {
      const pushes = [];
      let response = null;
      while (pushes.length < total || (k === 2 && !response)) {
        const m = await c.next(10000);
        assert.equal(m.isBinary, true);
        const e = decodeEnvelope(m.data);
        if (e.kind === KIND.RESPONSE) {
          assert.equal(k, 2, `only the requester gets a response: ${show(e)}`);
          response = e;
          continue;
        }
        assert.equal(e.kind, KIND.PUSH, `client ${k}: ${show(e)}`);
        pushes.push(e);
      }
      if (k === 2) {
        assert.equal(response.status, 202, show(response));
        assert.equal(response.id, 4242);
      }
      assert.deepEqual(pushes.map((e) => e.offset), Array.from({ length: total }, (_, i) => BigInt(i + 1)), `client ${k}: offsets 1..${total}`);
      for (const e of pushes) {
        assert.equal(e.stream, 'g:all');
        assert.equal(e.url, '');
        assert.equal(e.epoch, pushes[0].epoch);
        assert.notEqual(e.epoch, 0n);
      }
      const bodies = pushes.map((e) => e.body.toString());
      assert.deepEqual([...bodies].sort(), [...sent, 'a request'].sort(), `client ${k}: every message once`);
      for (let j = 0; j < ws.length; j++) {
        const mine = bodies.filter((b) => b.startsWith(`client ${j} `));
        assert.deepEqual(mine, Array.from({ length: PER }, (_, i) => `client ${j} message ${i}`), `client ${j}'s messages in its order`);
      }
      const req = pushes.find((e) => e.body.toString() === 'a request');
      assert.equal(req.method, METHOD.PUT);
      streams.push(bodies.join('\n'));
    }
    assert.equal(new Set(streams).size, 1, 'every client sees the same sequence');
  });

  test('resume while pushes keep coming (the new connection is in "all" from its open): with the §6 client rules, offsets contiguous and once each', { timeout: 30000 }, async () => {
    const p = await connect(srv, { label: 'sender' });
    const x = await connect(srv, { label: 'x' });
    for (let i = 1; i <= 5; i++) p.sendEnv({ kind: KIND.SEND, method: METHOD.POST, body: `b${i}` });
    const seen = await takePushes(x, 'g:all', 5);
    const k = seen[4].offset;
    const base = seen[0].offset - 1n; // the server is shared with the previous test
    const epoch = seen[0].epoch;
    assert.deepEqual(seen.map((m) => `${m.offset - base}:${m.body}`), ['1:b1', '2:b2', '3:b3', '4:b4', '5:b5']);
    x.destroy();
    let n = 5;
    let stop = false;
    const loopDeadline = Date.now() + 20000; // never outlive the test, even when it fails
    const loop = (async () => {
      while (!stop && !p.sock.destroyed && Date.now() < loopDeadline) {
        let w;
        for (let j = 0; j < 5; j++) w = p.sendEnv({ kind: KIND.SEND, method: METHOD.POST, body: `b${++n}` });
        await w;
        await sleep(1);
      }
    })();
    await sleep(50);
    const y = await connect(srv, { label: 'y' });
    await sleep(20); // live pushes reach y before its RESUME
    y.resume(x.hello.token, [{ stream: 'g:all', offset: k, epoch }]);
    // The client rules of §6: per stream, drop offset <= position; while RESUME is
    // unanswered, also drop offset > position + 1. Everything accepted must be position + 1.
    let pos = k;
    let pending = true;
    let dropped = 0;
    let hello2 = null;
    let resumed = null;
    const accepted = [];
    const problems = [];
    const drain = () => {
      while (y.inbox.length) {
        const m = y.inbox.shift();
        if (m.kind === KIND.HELLO) { hello2 = m; continue; }
        if (m.kind === KIND.RESUMED) {
          pending = false;
          resumed = decodeResumed(m.body);
          const e = resumed.find((r) => r.stream === 'g:all');
          if (!e || !e.recovered || e.offset !== pos || e.epoch !== epoch) {
            problems.push(`RESUMED ${JSON.stringify(resumed, big)} at client position ${pos}`);
          }
          continue;
        }
        if (m.kind !== KIND.PUSH || m.stream !== 'g:all') { problems.push(`unexpected ${show(m)}`); continue; }
        if (m.offset <= pos || (pending && m.offset > pos + 1n)) { dropped++; continue; }
        if (m.offset !== pos + 1n) problems.push(`gap: ${m.offset} after ${pos}`);
        if (m.body.toString() !== `b${m.offset - base}`) problems.push(`offset ${m.offset} carries ${m.body.toString()}`);
        pos = m.offset;
        accepted.push(m.offset);
      }
      if (problems.length) throw new Error(problems.slice(0, 5).join('; '));
    };
    await y.waitFor(() => { drain(); return pending ? undefined : true; }, 20000, 'RESUMED');
    await sleep(100);
    stop = true;
    await loop;
    // The sender is a member too: its own last push is the head.
    const last = await p.waitFor(() => {
      const ps = p.log.filter((m) => m.kind === KIND.PUSH);
      return ps.length && ps.at(-1).body.toString() === `b${n}` ? ps.at(-1).offset : undefined;
    }, 20000, `the sender's own b${n}`);
    assert.equal(last, base + BigInt(n));
    await y.waitFor(() => { drain(); return pos >= last ? true : undefined; }, 20000, `position ${last}`);
    assert.ok(hello2, 'a new HELLO');
    assert.equal(hello2.connId, x.id);
    assert.deepEqual(problems, []);
    assert.equal(accepted.length, Number(last - k), 'every offset after the position accepted once');
    console.log(`# broadcast resume: ${dropped} pushes dropped by the client rules, ${accepted.length} accepted`);
  });
});
