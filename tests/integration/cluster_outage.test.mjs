// Redis outages seen by a two-node cluster of hubtest processes (the redis engine, issue 10):
//  - Redis stopped (SIGSTOP) past the command timeout: what needs Redis fails with 503 within a
//    bounded time, /health says down, connections stay open and local requests are answered,
//    a RESUME is 503 (not 401); after SIGCONT the nodes recover by themselves, a member that
//    joined before gets contiguous offsets, and the RESUME works with the same token.
//  - An RDB behind the data (SAVE, publish more, kill -9, restart from the RDB): Redis' run_id
//    changes, so the stream gets a new epoch; a resume is told recovered:false, and no offset
//    of the old epoch is ever delivered with other content.
// Contents are asserted (offsets, epochs, statuses); times only as generous bounds.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';

import { HUBTEST_BIN, HubClient, startServer } from './hub.mjs';
import { KIND, decodeResumed } from './proto.mjs';
import { sleep } from './lib.mjs';
import { startRedis } from './redis.mjs';

const COMMAND_TIMEOUT_MS = 500;
const servers = [];
const redises = [];
after(async () => {
  const reports = [];
  for (const n of servers) {
    await n.stop();
    const r = n.sanitizerReport();
    if (r) reports.push(`${n.name}: ${r}`);
  }
  for (const r of redises) { r.kill('SIGCONT'); await r.stop(); }
  if (reports.length) throw new Error(`sanitizer report(s):\n${reports.join('\n---\n')}`);
});

async function node(redis, name) {
  const n = await startServer(HUBTEST_BIN, ['--redis', redis.url, '--node-id', name,
    '--command-timeout-ms', COMMAND_TIMEOUT_MS], { name });
  servers.push(n);
  return n;
}
const connect = (n, label) => HubClient.connect(n.port, { label });
const pushesOf = (c, stream) => c.log.filter((m) => m.kind === KIND.PUSH && m.stream === stream);
const bodies = (ms) => ms.map((m) => m.body.toString());

async function waitPushes(c, stream, count, ms = 8000) {
  await c.waitFor(() => (pushesOf(c, stream).length >= count ? true : undefined), ms,
    `${count} pushes on ${stream}`);
  return pushesOf(c, stream);
}

/** Polls `fn` (async) until it returns true, at most `ms`. */
async function until(fn, ms, what) {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (await fn()) return;
    await sleep(50);
  }
  throw new Error(`not within ${ms} ms: ${what}`);
}

const healthOf = async (c) => {
  const r = await c.request('/health');
  return { status: r.status, body: r.body.toString() };
};

/** Every (epoch, offset) names one message: the same pair never comes with other content. */
function assertNoOffsetReused(...clients) {
  const seen = new Map();
  for (const c of clients) {
    for (const m of c.log) {
      if (m.kind !== KIND.PUSH) continue;
      const k = `${m.stream}#${m.epoch}:${m.offset}`;
      const b = m.body.toString();
      assert.equal(seen.get(k) ?? b, b, `${k} delivered as ${seen.get(k)} and as ${b}`);
      seen.set(k, b);
    }
  }
}

test('Redis stopped past the command timeout: 503s and health down, connections stay; recovery after SIGCONT', async () => {
  const redis = await startRedis();
  redises.push(redis);
  const A = await node(redis, 'stop-a'), B = await node(redis, 'stop-b');
  const g = `stop-${Date.now()}`, stream = `g:${g}`;
  const b = await connect(B, 'b'), p = await connect(A, 'p'), away = await connect(A, 'away');
  await b.ok(`/join/${g}`);
  await away.ok(`/join/${g}`);
  for (let i = 1; i <= 3; i++) await p.ok(`/publish/${g}`, `m${i}`);
  await waitPushes(b, stream, 3);
  const last = (await waitPushes(away, stream, 3))[2];
  assert.equal(Number(last.offset), 3);
  const token = away.hello.token, awayId = away.id;
  away.destroy();
  // A connection opened before the outage will present away's token during it (a connection
  // opened while Redis is unreachable has no session to start from).
  const y = await connect(B, 'y');
  await sleep(300); // away's close has reached Redis

  redis.kill('SIGSTOP');
  const t0 = Date.now();
  // Publishing is accepted until the first command times out, then fails at once with 503.
  const accepted = [];
  let failedAfter = null;
  for (let i = 0; Date.now() - t0 < 10000; i++) {
    const r = await p.request(`/publish/${g}`, `during${i}`);
    if (r.status === 503) { failedAfter = Date.now() - t0; break; }
    assert.equal(r.status, 200, r.body.toString());
    accepted.push(`during${i}`);
    await sleep(20);
  }
  assert.ok(failedAfter !== null && failedAfter < 5000,
    `a publish fails with 503 within a few command timeouts (${COMMAND_TIMEOUT_MS} ms): after ${failedAfter} ms`);
  // Both nodes say so on /health; their Redis commands fail at once from now on.
  for (const c of [p, b]) {
    await until(async () => (await healthOf(c)).status === 503, 5000, `${c.label}: /health 503`);
    assert.match((await healthOf(c)).body, /^redis up=0 commands=0 pubsub=[01]$/);
  }
  const t1 = Date.now();
  const r503 = await p.request(`/publish/${g}`, 'refused');
  assert.equal(r503.status, 503);
  assert.equal((await p.request(`/sendcb/${b.id}`, 'direct')).status, 503);
  assert.ok(Date.now() - t1 < 2000, 'refused at once, not after a timeout');
  // Local work goes on, and a new connection is taken: its session is made once Redis is back.
  assert.equal(await p.ok('/echo', 'local'), 'local');
  const z = await connect(A, 'z');
  assert.ok(z.hello.token, 'HELLO with a token while Redis is away');
  assert.match(await z.ok(`/join/${g}`), new RegExp(g));
  assert.equal(await b.ok('/whoami'), b.id);
  // A RESUME now is "retry" (503), not "unknown token" (401), and spends nothing.
  y.resume(token, [{ stream, offset: last.offset, epoch: last.epoch }]);
  const err = await y.take((m) => m.kind === KIND.ERROR || m.kind === KIND.RESUMED, 5000, 'the RESUME answer');
  assert.equal(err.kind, KIND.ERROR);
  assert.equal(err.status, 503, err.body.toString());
  await sleep(4 * COMMAND_TIMEOUT_MS);
  for (const c of [b, p, y, z]) {
    assert.equal(c.closeFrame, null, `${c.label} is still open`);
    assert.equal(c.ended, false, `${c.label} is still open`);
  }

  redis.kill('SIGCONT');
  // Each node finds Redis again by itself (reconnect backoff: at most 5 s).
  for (const c of [p, b]) {
    await until(async () => (await healthOf(c)).status === 200, 20000, `${c.label}: /health 200 again`);
    assert.equal((await healthOf(c)).body, 'redis up=1 commands=1 pubsub=1');
  }
  for (let i = 1; i <= 3; i++) await p.ok(`/publish/${g}`, `after${i}`);
  await b.waitFor(() => (bodies(pushesOf(b, stream)).includes('after3') ? true : undefined), 10000, 'after3 on b');
  await sleep(300);
  // b, a member since before the outage: offsets 1..n without a gap or a duplicate, one epoch.
  // Publishes accepted just before the timeout may have run when Redis woke (their commands
  // were in its socket): each at most once, in order, between m3 and after1.
  const got = pushesOf(b, stream);
  assert.deepEqual(got.map((m) => Number(m.offset)), got.map((_, i) => i + 1));
  assert.equal(new Set(got.map((m) => m.epoch)).size, 1);
  const seq = bodies(got);
  assert.deepEqual(seq.slice(0, 3), ['m1', 'm2', 'm3']);
  assert.deepEqual(seq.slice(-3), ['after1', 'after2', 'after3']);
  const middle = seq.slice(3, -3);
  assert.deepEqual(middle, accepted.filter((x) => middle.includes(x)), `in order, from what was accepted: ${middle}`);
  assert.equal(b.log.filter((m) => m.kind === KIND.HELLO).length, 1, 'b never reconnected');

  // The same token on the same connection now resumes: exactly what away missed.
  y.resume(token, [{ stream, offset: last.offset, epoch: last.epoch }]);
  const hello = await y.take((m) => m.kind === KIND.HELLO, 10000, 'the new HELLO');
  assert.equal(hello.connId, awayId);
  const done = await y.take((m) => m.kind === KIND.RESUMED || m.kind === KIND.ERROR, 10000, 'RESUMED');
  assert.equal(done.kind, KIND.RESUMED, done.body.toString());
  const entry = decodeResumed(done.body).find((e) => e.stream === stream);
  assert.equal(entry.recovered, true);
  await sleep(300);
  const replayed = pushesOf(y, stream);
  assert.deepEqual(replayed.map((m) => [Number(m.offset), m.body.toString()]),
    got.slice(3).map((m) => [Number(m.offset), m.body.toString()]));
  assertNoOffsetReused(b, y);
  // z, which opened and joined while Redis was away, is a member like any other...
  await z.waitFor(() => (bodies(pushesOf(z, stream)).includes('after3') ? true : undefined), 10000, 'after3 on z');
  // ...and its session reached Redis with its group and token: it resumes on the other node.
  const zToken = z.hello.token, zId = z.id;
  const zLast = pushesOf(z, stream).at(-1);
  z.destroy();
  await sleep(300);
  await p.ok(`/publish/${g}`, 'for z');
  const z2 = await connect(B, 'z2');
  z2.resume(zToken, [{ stream, offset: zLast.offset, epoch: zLast.epoch }]);
  const zDone = await z2.take((m) => m.kind === KIND.RESUMED || m.kind === KIND.ERROR, 10000, 'z resumed');
  assert.equal(zDone.kind, KIND.RESUMED, `${zDone.status} ${zDone.body}`);
  assert.equal(await z2.ok('/whoami'), zId);
  const zEntry = decodeResumed(zDone.body).find((e) => e.stream === stream);
  assert.ok(zEntry, 'the group joined during the outage is restored');
  await z2.waitFor(() => (bodies(pushesOf(z2, stream)).includes('for z') ? true : undefined), 10000, 'for z');
  assert.equal(zEntry.recovered, true);
  await sleep(200);
  assert.deepEqual(bodies(pushesOf(z2, stream)), ['for z'], 'exactly what z missed');
  z2.destroy();
  for (const c of [b, p, y]) c.destroy();
});

test('an RDB behind the data: after a restart from it, new epochs, recovered:false, no offset reused', async () => {
  const redis = await startRedis({ rdb: true });
  redises.push(redis);
  const A = await node(redis, 'rdb-a'), B = await node(redis, 'rdb-b');
  const g = `rdb-${Date.now()}`, stream = `g:${g}`;
  const b = await connect(B, 'b'), x = await connect(A, 'x'), p = await connect(A, 'p');
  await b.ok(`/join/${g}`);
  await x.ok(`/join/${g}`);
  for (let i = 1; i <= 3; i++) await p.ok(`/publish/${g}`, `r${i}`);
  await waitPushes(b, stream, 3);
  await sleep(100);
  await redis.save(); // the RDB has r1..r3 (and x's session with its token)
  for (let i = 4; i <= 6; i++) await p.ok(`/publish/${g}`, `r${i}`);
  const before = await waitPushes(x, stream, 6);
  await waitPushes(b, stream, 6);
  const old = before[5];
  assert.equal(Number(old.offset), 6);
  const token = x.hello.token;
  x.destroy();
  await sleep(200);

  await redis.restart(); // kill -9, then a new Redis from the RDB: the data of 3 messages ago
  for (const c of [p, b]) {
    await until(async () => (await healthOf(c)).status === 200, 20000, `${c.label}: /health 200 again`);
  }
  // New publishes: a new epoch, offsets from 1 again (the old epoch's 4..6 are never reused).
  await p.ok(`/publish/${g}`, 'n1');
  const n1 = await b.take((m) => m.kind === KIND.PUSH && m.stream === stream && m.body.toString() === 'n1', 10000, 'n1 on b');
  assert.notEqual(n1.epoch, old.epoch, 'a new epoch: Redis came back behind the data');
  assert.equal(Number(n1.offset), 1);
  const afterRestart = pushesOf(b, stream).slice(6);
  assert.ok(afterRestart.every((m) => m.epoch === n1.epoch), 'nothing of the old epoch after the restart');

  // x's session came back with the RDB: its token works, and the group says recovered:false.
  const y = await connect(B, 'y');
  y.resume(token, [{ stream, offset: old.offset, epoch: old.epoch }]);
  const done = await y.take((m) => m.kind === KIND.RESUMED || m.kind === KIND.ERROR, 10000, 'RESUMED');
  assert.equal(done.kind, KIND.RESUMED, `the session is in the RDB: ${done.body.toString()}`);
  const entry = decodeResumed(done.body).find((e) => e.stream === stream);
  assert.equal(entry.recovered, false);
  assert.equal(entry.epoch, n1.epoch, 'the stream as it is now');
  await p.ok(`/publish/${g}`, 'n2');
  const n2 = await y.take((m) => m.kind === KIND.PUSH && m.stream === stream && m.body.toString() === 'n2', 10000, 'n2 on y');
  assert.equal(n2.epoch, n1.epoch);
  assert.equal(Number(n2.offset), 2);
  await sleep(200);
  assert.ok(pushesOf(y, stream).every((m) => m.epoch !== old.epoch), 'y never sees the old epoch');
  assertNoOffsetReused(b, y);
  for (const c of [b, p, y]) c.destroy();
});

test('a RESUME whose take timed out in a Redis stall and ran later can be retried with its token', async () => {
  const redis = await startRedis();
  redises.push(redis);
  const A = await node(redis, 'take-a');
  const g = `take-${Date.now()}`, stream = `g:${g}`;
  const x = await connect(A, 'x'), p = await connect(A, 'p');
  await x.ok(`/join/${g}`);
  await p.ok(`/publish/${g}`, 'seen');
  const seen = (await waitPushes(x, stream, 1))[0];
  const token = x.hello.token, id = x.id;
  x.destroy();
  await sleep(300);
  await p.ok(`/publish/${g}`, 'missed');
  const y = await connect(A, 'y');
  // The take leaves while Redis is stopped: it sits in Redis' socket, the node gives up on it
  // after the command timeout (ERROR 503, "retry"), and Redis runs it when it wakes.
  redis.kill('SIGSTOP');
  await sleep(50);
  y.resume(token, [{ stream, offset: seen.offset, epoch: seen.epoch }]);
  const err = await y.take((m) => m.kind === KIND.ERROR || m.kind === KIND.RESUMED, 8000, 'the answer');
  assert.equal(err.kind, KIND.ERROR);
  assert.equal(err.status, 503, err.body.toString());
  redis.kill('SIGCONT');
  await until(async () => (await healthOf(y)).status === 200, 20000, '/health 200 again');
  // The retry with the same token takes the session (before: 401, the token was spent by the
  // take the node had given up on, and the session stayed open on no connection).
  y.resume(token, [{ stream, offset: seen.offset, epoch: seen.epoch }]);
  const done = await y.take((m) => m.kind === KIND.RESUMED || (m.kind === KIND.ERROR && m !== err), 10000, 'RESUMED');
  assert.equal(done.kind, KIND.RESUMED, `${done.status} ${done.body}`);
  assert.equal(await y.ok('/whoami'), id);
  await sleep(200);
  assert.deepEqual(bodies(pushesOf(y, stream)), ['missed']);
  y.destroy();
  p.destroy();
});

test('a message whose pub/sub copy never came is delivered by the tops check, though nothing follows it', async () => {
  const redis = await startRedis();
  redises.push(redis);
  const A = await node(redis, 'tops-a');
  const g = `tops-${Date.now()}`, stream = `g:${g}`;
  const m = await connect(A, 'm'), p = await connect(A, 'p');
  await m.ok(`/join/${g}`);
  await p.ok(`/publish/${g}`, 'one');
  await waitPushes(m, stream, 1);
  // Stored as the publish script stores it (offset 2, the same record bytes), published to
  // nobody: the pub/sub copy was lost between Redis and the node, and nothing follows it.
  const lost = `
    local e = redis.call('HGET', KEYS[1], 'e')
    local h = tonumber(redis.call('HGET', KEYS[1], 'h')) + 1
    local last = redis.call('XREVRANGE', KEYS[2], '+', '-', 'COUNT', 1)
    redis.call('XADD', KEYS[2], h .. '-0', 't', ARGV[1], 'd', last[1][2][4])
    redis.call('HSET', KEYS[1], 'h', h)
    return h`;
  const { redisCommand } = await import('./redis.mjs');
  assert.equal(await redisCommand(redis.port, 'EVAL', lost, '2', `sb:{${stream}}:m`, `sb:{${stream}}:x`,
    String(Date.now())), 2);
  const got = await waitPushes(m, stream, 2, 12000);
  assert.deepEqual(got.map((x) => [Number(x.offset), x.body.toString()]), [[1, 'one'], [2, 'one']]);
  assert.equal(new Set(got.map((x) => x.epoch)).size, 1);
  assert.equal(m.log.filter((x) => x.kind === KIND.HELLO).length, 1, 'no reconnect, no resume');
  m.destroy();
  p.destroy();
});

test('a node frozen past its TTL, its session resumed elsewhere: on waking it closes its stale connection with 4000 and leaves the session alone', async () => {
  const redis = await startRedis();
  redises.push(redis);
  const A = await node(redis, 'frozen-a'), B = await node(redis, 'frozen-b');
  const { redisCommand } = await import('./redis.mjs');
  const g = `frozen-${Date.now()}`, stream = `g:${g}`;
  const x = await connect(A, 'x'), p = await connect(B, 'p');
  await x.ok(`/join/${g}`);
  await p.ok(`/publish/${g}`, 'before');
  const first = (await waitPushes(x, stream, 1))[0];
  const id = x.id;
  process.kill(A.pid, 'SIGSTOP');
  try {
    // Past its TTL (3 s in hubtest) and a sweep: B finds it dead and closes its sessions.
    await until(async () => (await redisCommand(redis.port, 'HGET', `sb:{s:${id}}`, 'c')) !== '0', 10000,
      'the frozen node\'s session closed by the sweep');
    await p.ok(`/publish/${g}`, 'while frozen');
    const y = await connect(B, 'y');
    y.resume(x.hello.token, [{ stream, offset: first.offset, epoch: first.epoch }]);
    const done = await y.take((m) => m.kind === KIND.RESUMED || m.kind === KIND.ERROR, 8000, 'RESUMED');
    assert.equal(done.kind, KIND.RESUMED, `${done.status} ${done.body}`);
    assert.deepEqual(bodies(pushesOf(y, stream)), ['while frozen']);
    process.kill(A.pid, 'SIGCONT');
    // A wakes, finds it was late, registers its sessions again: this one is B's now.
    await x.waitClosed(10000);
    assert.equal(x.closeFrame?.code, 4000, `closed with ${JSON.stringify(x.closeFrame)}`);
    await sleep(1500); // A's late work, if any, would land now
    assert.deepEqual(await redisCommand(redis.port, 'HMGET', `sb:{s:${id}}`, 'n', 'c'), ['frozen-b', '0'],
      'the session stays open, held by B');
    await p.ok(`/publish/${g}`, 'after');
    await y.take((m) => m.kind === KIND.PUSH && m.body.toString() === 'after', 5000, 'after on y');
    y.destroy();
  } finally {
    process.kill(A.pid, 'SIGCONT');
  }
  p.destroy();
});
