// The memory engine's lifetimes and bounds, end to end through tests/fixtures/hubtest.c
// (issue 9): a RESUME with another identity's token spends nothing; a position (0, 0) for a
// group replays from the session's join point only.
//
// Servers are started with --port 0 and stopped by PID in an after hook; a server that died,
// needed SIGKILL, exited non-zero or printed a sanitizer report fails the suite.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, afterEach, describe, test } from 'node:test';
import { HUBTEST_BIN, HubClient, show, startServer } from './hub.mjs';
import { sleep } from './lib.mjs';
import { KIND, decodeResumed } from './proto.mjs';

const servers = [];
const clients = new Set();

async function server(args = []) {
  const s = await startServer(HUBTEST_BIN, args);
  servers.push(s);
  return s;
}

async function stopServer(s) {
  if (!s || s.stopped) return;
  s.stopped = true;
  const diedEarly = !s.alive();
  const x = await s.stop();
  const what = `${s.name} ${s.args.join(' ')} (pid ${s.pid})`;
  const report = s.sanitizerReport();
  if (report) throw new Error(`sanitizer report from ${what}:\n${report}`);
  if (diedEarly) throw new Error(`${what} died during the tests: ${JSON.stringify(x)}; stderr: ${s.stderr().slice(-3000)}`);
  if (x.killed) throw new Error(`${what} did not exit within 10 s of SIGTERM`);
  if (x.code !== 0) throw new Error(`${what} exited with ${JSON.stringify(x)}; stderr: ${s.stderr().slice(-3000)}`);
}

async function connect(srv, opts = {}) {
  const c = await HubClient.connect(srv.port, opts);
  clients.add(c);
  return c;
}

afterEach(() => {
  for (const c of clients) c.destroy();
  clients.clear();
});

after(async () => {
  const errors = [];
  for (const s of servers) {
    try { await stopServer(s); } catch (e) { errors.push(e.message); }
  }
  if (errors.length) throw new Error(errors.join('\n----\n'));
});

let seq = 0;
const uniq = (p) => `${p}-${++seq}-${crypto.randomBytes(3).toString('hex')}`;
const big = (k, v) => (typeof v === 'bigint' ? `${v}n` : v);
const bearer = (t) => ({ extra: [['Authorization', `Bearer ${t}`]] });

async function waitCount(ctl, group, n, timeoutMs = 5000) {
  const t0 = Date.now();
  for (;;) {
    const got = Number(await ctl.ok(`/count/${group}`));
    if (got === n) return;
    if (Date.now() - t0 > timeoutMs) assert.fail(`/count/${group}: expected ${n}, still ${got}`);
    await sleep(20);
  }
}

/** Drops `x` without a close frame and waits until the server took it out of `group`. */
async function vanish(x, ctl, group, remaining = 0) {
  x.destroy();
  await waitCount(ctl, group, remaining);
}

/** The answer to a RESUME: the new HELLO, then pushes only, then RESUMED (by stream). */
async function readResume(c, timeoutMs = 10000) {
  const hello = await c.next(timeoutMs);
  assert.equal(hello.kind, KIND.HELLO, `the first answer to RESUME must be a HELLO, got ${show(hello)}`);
  const pushes = [];
  for (;;) {
    const m = await c.next(timeoutMs);
    if (m.kind === KIND.RESUMED) {
      const byStream = Object.fromEntries(decodeResumed(m.body).map((e) => [e.stream, e]));
      return { hello, pushes, byStream };
    }
    assert.equal(m.kind, KIND.PUSH, `only pushes between HELLO and RESUMED, got ${show(m)}`);
    pushes.push(m);
  }
}

function assertEntry(byStream, stream, recovered, offset, epoch) {
  const e = byStream[stream];
  const all = JSON.stringify(Object.values(byStream), big);
  assert.ok(e, `RESUMED has no entry for ${stream}: ${all}`);
  assert.equal(e.recovered, recovered, `RESUMED ${stream}.recovered: ${all}`);
  assert.equal(e.offset, BigInt(offset), `RESUMED ${stream}.offset: ${all}`);
  if (epoch !== undefined) assert.equal(e.epoch, epoch, `RESUMED ${stream}.epoch: ${all}`);
  else assert.notEqual(e.epoch, 0n, `RESUMED ${stream}.epoch: ${all}`);
}

const pushList = (pushes) => pushes.map((m) => `${m.stream}#${m.offset}:${m.body.toString()}`);

async function expectError(c, status, what) {
  const e = await c.take((m) => m.kind === KIND.ERROR, 5000, what);
  assert.equal(e.status, status, `${what}: ${show(e)}`);
  assert.equal(e.id, 0, `${what}: ERROR id (RESUME is not a request)`);
}

// ---------------------------------------------------------------------------------------------
describe('resume tokens and identities', () => {
  test('regression: a RESUME with another identity\'s token is refused 403 and spends nothing; the owner resumes after it', async () => {
    const srv = await server(['--auth', 'custom']);
    const g = uniq('own');
    const p = await connect(srv, bearer('ok-publisher'));
    const alice = await connect(srv, bearer('ok-alice'));
    await alice.ok(`/join/${g}`);
    assert.equal(await p.ok(`/publish/${g}`, 'm1'), '');
    const [first] = [await alice.take((m) => m.kind === KIND.PUSH, 5000, 'm1')];
    const epoch = first.epoch;
    await vanish(alice, p, g);
    // mallory presents alice's token twice: 403 both times (the token is still there), and
    // carries on as its own fresh session.
    const mallory = await connect(srv, bearer('ok-mallory'));
    mallory.resume(alice.hello.token, [{ stream: `g:${g}`, offset: 1n, epoch }]);
    await expectError(mallory, 403, 'another identity\'s token');
    mallory.resume(alice.hello.token, []);
    await expectError(mallory, 403, 'another identity\'s token, again');
    assert.equal(await mallory.ok('/whoami'), mallory.id);
    assert.equal(mallory.pushes(`g:${g}`).length, 0, 'mallory got nothing of alice\'s group');
    assert.equal(await p.ok(`/count/${g}`), '0', 'mallory was not put into alice\'s group');
    assert.equal(await p.ok(`/publish/${g}`, 'm2'), '');
    // alice, on a new connection, resumes with the very token mallory tried.
    const alice2 = await connect(srv, bearer('ok-alice'));
    alice2.resume(alice.hello.token, [{ stream: `g:${g}`, offset: 1n, epoch }]);
    const r = await readResume(alice2);
    assert.equal(r.hello.connId, alice.id, 'alice has her session back');
    assert.deepEqual(pushList(r.pushes), [`g:${g}#2:m2`]);
    assertEntry(r.byStream, `g:${g}`, true, 2, epoch);
    assertEntry(r.byStream, `c:${alice.id}`, true, 0);
    // And the token is spent now, for everyone.
    const alice3 = await connect(srv, bearer('ok-alice'));
    alice3.resume(alice.hello.token, []);
    await expectError(alice3, 401, 'the spent token');
    assert.equal(mallory.pushes(`g:${g}`).length, 0);
  });
});

// ---------------------------------------------------------------------------------------------
describe('positions', () => {
  test('a position (0, 0) for a group replays from where the session joined it, never what came before', async () => {
    const srv = await server();
    const g = uniq('late');
    const p = await connect(srv, { label: 'publisher' });
    assert.equal(await p.ok(`/publish/${g}`, 'before1'), '');
    assert.equal(await p.ok(`/publish/${g}`, 'before2'), '');
    const x = await connect(srv, { label: 'x' });
    await x.ok(`/join/${g}`); // joins at offset 2
    await vanish(x, p, g);
    assert.equal(await p.ok(`/publish/${g}`, 'after'), '');
    const y = await connect(srv, { label: 'y' });
    y.resume(x.hello.token, [{ stream: `g:${g}`, offset: 0n, epoch: 0n }, { stream: `c:${x.id}`, offset: 0n, epoch: 0n }]);
    const r = await readResume(y);
    assert.deepEqual(pushList(r.pushes), [`g:${g}#3:after`], 'only what came after the join');
    assertEntry(r.byStream, `g:${g}`, true, 3);
    assertEntry(r.byStream, `c:${x.id}`, true, 0);
  });
});

