// Several hubtest nodes joined through one real redis-server (the redis engine, issue 10):
// group fan-out across nodes, contiguous offsets with publishers on every node, direct
// messages across nodes, subscriptions that follow local membership (PUBSUB NUMSUB), resume on
// another node, and a resume that takes a session still open on another node (4000).
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { HUBTEST_BIN, HubClient, startServer } from './hub.mjs';
import { KIND, decodeResumed } from './proto.mjs';
import { sleep } from './lib.mjs';
import { startRedis, redisCommand } from './redis.mjs';

let redis;
const nodes = [];
before(async () => { redis = await startRedis(); });
after(async () => {
  const reports = [];
  for (const n of nodes) {
    await n.stop();
    const r = n.sanitizerReport();
    if (r) reports.push(r);
  }
  await redis?.stop();
  if (reports.length) throw new Error(`sanitizer report(s):\n${reports.join('\n---\n')}`);
});

async function node(name) {
  const n = await startServer(HUBTEST_BIN, ['--redis', redis.url, '--node-id', name], { name });
  nodes.push(n);
  return n;
}
const connect = (n, label) => HubClient.connect(n.port, { label });
const pushesOf = (c, stream) => c.log.filter((m) => m.kind === KIND.PUSH && m.stream === stream);

async function waitPushes(c, stream, count, ms = 5000) {
  await c.waitFor(() => (pushesOf(c, stream).length >= count ? true : undefined), ms,
    `${count} pushes on ${stream}`);
  return pushesOf(c, stream);
}

describe('two nodes, one Redis', () => {
  let A, B;
  before(async () => { A = await node('node-a'); B = await node('node-b'); });

  test('a group spans the nodes: every member gets every message once, offsets 1..n, publishers on both', async () => {
    const g = `room-${Date.now()}`;
    const a = await connect(A, 'a'), b = await connect(B, 'b');
    const pa = await connect(A, 'pa'), pb = await connect(B, 'pb');
    await a.ok(`/join/${g}`);
    await b.ok(`/join/${g}`);
    for (let i = 0; i < 10; i++) {
      await pa.ok(`/publish/${g}`, `a${i}`);
      await pb.ok(`/publish/${g}`, `b${i}`);
    }
    for (const c of [a, b]) {
      const got = await waitPushes(c, `g:${g}`, 20);
      await sleep(200);
      const all = pushesOf(c, `g:${g}`);
      assert.equal(all.length, 20, `${c.label}: ${all.length} pushes`);
      assert.deepEqual(all.map((m) => Number(m.offset)), Array.from({ length: 20 }, (_, i) => i + 1));
      assert.equal(new Set(all.map((m) => m.epoch)).size, 1);
      const bodies = got.map((m) => m.body.toString()).sort();
      assert.deepEqual(bodies, [...Array(10).keys()].flatMap((i) => [`a${i}`, `b${i}`]).sort());
    }
    for (const c of [a, b, pa, pb]) c.destroy();
  });

  test('a node subscribes to a group while it has a member, and unsubscribes after the last', async () => {
    const g = `sub-${Date.now()}`;
    const ch = `sb:{g:${g}}`;
    const numsub = async () => (await redisCommand(redis.port, 'PUBSUB', 'NUMSUB', ch))[1];
    assert.equal(await numsub(), 0);
    const a1 = await connect(A), a2 = await connect(A), b1 = await connect(B);
    await a1.ok(`/join/${g}`);
    await a2.ok(`/join/${g}`);
    await sleep(100);
    assert.equal(await numsub(), 1, 'node A once, however many members');
    await b1.ok(`/join/${g}`);
    await sleep(100);
    assert.equal(await numsub(), 2);
    await a1.ok(`/leave/${g}`);
    await sleep(100);
    assert.equal(await numsub(), 2, 'A still has a2');
    a2.destroy();
    await sleep(300);
    assert.equal(await numsub(), 1, 'A left after its last member');
    // A node's own publish right after its first join reaches its member.
    const a3 = await connect(A);
    a3.sendEnv({ kind: KIND.REQUEST, method: 2, id: 901, url: `/join/${g}` });
    a3.sendEnv({ kind: KIND.REQUEST, method: 2, id: 902, url: `/publish/${g}`, body: 'right after' });
    const m = await a3.take((x) => x.kind === KIND.PUSH && x.stream === `g:${g}`, 5000, 'its own publish');
    assert.equal(m.body.toString(), 'right after');
    for (const c of [a1, a3, b1]) c.destroy();
  });

  test('a first member gets what is published after its join, from any node, and nothing from before', async () => {
    for (let round = 0; round < 5; round++) {
      const g = `join-${round}-${Date.now()}`;
      const p = await connect(B, 'p');
      await p.ok(`/publish/${g}`, 'before');
      await sleep(5);
      const x = await connect(A, 'x');
      await x.ok(`/join/${g}`);
      await p.ok(`/publish/${g}`, 'after'); // at once: the race with A's own commands
      const got = await waitPushes(x, `g:${g}`, 1);
      await sleep(150);
      assert.deepEqual(pushesOf(x, `g:${g}`).map((m) => m.body.toString()), ['after'], `round ${round}`);
      assert.equal(Number(got[0].offset), 2);
      x.destroy();
      p.destroy();
    }
  });

  test('a direct message reaches a connection on the other node; an unknown one is 404', async () => {
    const a = await connect(A, 'a'), b = await connect(B, 'b');
    await sleep(100);
    assert.equal(await a.ok(`/send/${b.id}`, 'hello b'), '');
    const m = await b.take((x) => x.kind === KIND.PUSH && x.stream === `c:${b.id}`, 5000, 'the direct push');
    assert.equal(m.body.toString(), 'hello b');
    assert.equal(Number(m.offset), 1);
    const r = await a.request(`/sendcb/${'x'.repeat(22)}`, 'nobody');
    assert.equal(r.status, 404);
    a.destroy();
    b.destroy();
  });

  test('resume on the other node: exactly what was missed, recovered', async () => {
    const g = `away-${Date.now()}`;
    const x = await connect(A, 'x'), p = await connect(B, 'p');
    await x.ok(`/join/${g}`);
    await p.ok(`/publish/${g}`, 'one');
    const first = (await waitPushes(x, `g:${g}`, 1))[0];
    const token = x.hello.token, id = x.id;
    x.destroy();
    await sleep(200);
    await p.ok(`/publish/${g}`, 'two');
    await p.ok(`/publish/${g}`, 'three');
    await p.ok(`/send/${id}`, 'direct while away');
    const y = await connect(B, 'y');
    y.resume(token, [{ stream: `g:${g}`, offset: first.offset, epoch: first.epoch }]);
    const hello = await y.take((m) => m.kind === KIND.HELLO, 5000, 'the new HELLO');
    assert.equal(hello.connId, id, 'the session id is kept');
    const done = await y.take((m) => m.kind === KIND.RESUMED, 10000, 'RESUMED');
    const byStream = Object.fromEntries(decodeResumed(done.body).map((e) => [e.stream, e]));
    assert.equal(byStream[`g:${g}`].recovered, true, JSON.stringify(decodeResumed(done.body), (k, v) => (typeof v === 'bigint' ? String(v) : v)));
    assert.equal(byStream[`c:${id}`].recovered, true);
    assert.deepEqual(pushesOf(y, `g:${g}`).map((m) => m.body.toString()), ['two', 'three']);
    assert.deepEqual(pushesOf(y, `c:${id}`).map((m) => m.body.toString()), ['direct while away']);
    // Live again, on B now.
    await p.ok(`/publish/${g}`, 'four');
    await waitPushes(y, `g:${g}`, 3);
    assert.equal(pushesOf(y, `g:${g}`)[2].body.toString(), 'four');
    y.destroy();
    p.destroy();
  });

  test('resuming on B while the old connection is open on A closes it with 4000', async () => {
    const x = await connect(A, 'x');
    await sleep(100);
    const y = await connect(B, 'y');
    y.resume(x.hello.token, []);
    await y.take((m) => m.kind === KIND.RESUMED, 10000, 'RESUMED');
    const closed = await x.waitClosed(5000);
    assert.equal(closed.frame?.code, 4000, JSON.stringify(closed.frame));
    // A's close does not expire the session B holds: B's connection can be reached.
    await sleep(300);
    const p = await connect(A, 'p');
    const id = x.hello.connId; /* y holds x's session now */
    assert.equal(await p.ok(`/send/${id}`, 'still here'), '');
    const m = await y.take((z) => z.kind === KIND.PUSH && z.stream === `c:${id}`, 5000, 'the direct push');
    assert.equal(m.body.toString(), 'still here');
    y.destroy();
    p.destroy();
  });
});

describe('three nodes', () => {
  let N;
  before(async () => { N = [await node('tri-a'), await node('tri-b'), await node('tri-c')]; });

  test('publishers on every node: every member on every node gets 1..n once, in order', async () => {
    const g = `tri-${Date.now()}`;
    const members = [];
    for (const n of N) for (let k = 0; k < 3; k++) members.push(await connect(n, `m${members.length}`));
    for (const m of members) await m.ok(`/join/${g}`);
    const pubs = [];
    for (const n of N) pubs.push(await connect(n, 'pub'));
    const per = 20;
    await Promise.all(pubs.map(async (p, i) => { for (let k = 0; k < per; k++) await p.ok(`/publish/${g}`, `${i}:${k}`); }));
    const total = per * pubs.length;
    for (const m of members) {
      const got = await waitPushes(m, `g:${g}`, total, 10000);
      assert.equal(got.length, total);
      assert.deepEqual(got.map((x) => Number(x.offset)), Array.from({ length: total }, (_, i) => i + 1), m.label);
      // each publisher's own messages in its order
      for (let i = 0; i < pubs.length; i++) {
        const mine = got.map((x) => x.body.toString()).filter((b) => b.startsWith(`${i}:`));
        assert.deepEqual(mine, Array.from({ length: per }, (_, k) => `${i}:${k}`));
      }
    }
    await sleep(200);
    for (const m of members) assert.equal(pushesOf(m, `g:${g}`).length, total, 'no duplicate later');
    for (const c of [...members, ...pubs]) c.destroy();
  });

  test('two RESUMEs racing with one token on two nodes: exactly one wins', async () => {
    for (let round = 0; round < 5; round++) {
      const x = await connect(N[0], 'x');
      const token = x.hello.token;
      x.destroy();
      await sleep(50);
      const y = await connect(N[1], 'y'), z = await connect(N[2], 'z');
      y.resume(token, []);
      z.resume(token, []);
      // The loser is told 401, or 503 "retry" when it came while the winner's take was not
      // confirmed yet (a pending take); its retry then finds the token spent: 401.
      const outcome = async (c) => {
        let m = await c.take((v) => v.kind === KIND.RESUMED || v.kind === KIND.ERROR, 10000, 'RESUMED or ERROR');
        if (m.kind === KIND.ERROR && m.status === 503) {
          await sleep(300);
          c.resume(token, []);
          m = await c.take((v) => (v.kind === KIND.RESUMED || v.kind === KIND.ERROR) && v !== m, 10000, 'the retry');
        }
        return m.kind === KIND.RESUMED ? 'won' : `error ${m.status}`;
      };
      const results = (await Promise.all([outcome(y), outcome(z)])).sort();
      assert.deepEqual(results, ['error 401', 'won'], `round ${round}`);
      y.destroy();
      z.destroy();
    }
  });

  test('resume while another node publishes in a tight loop: contiguous, no duplicate', async () => {
    const g = `tight-${Date.now()}`;
    const x = await connect(N[0], 'x');
    await x.ok(`/join/${g}`);
    const p = await connect(N[2], 'p');
    let running = true, sent = 0;
    const loop = (async () => { while (running) { await p.ok(`/publish/${g}`, `n${++sent}`); } })();
    await waitPushes(x, `g:${g}`, 5);
    const last = pushesOf(x, `g:${g}`).at(-1);
    const token = x.hello.token;
    x.destroy();
    await sleep(100);
    const y = await connect(N[1], 'y');
    y.resume(token, [{ stream: `g:${g}`, offset: last.offset, epoch: last.epoch }]);
    await y.take((m) => m.kind === KIND.RESUMED, 10000, 'RESUMED');
    await sleep(300);
    running = false;
    await loop;
    await sleep(300);
    const after = pushesOf(y, `g:${g}`);
    assert.ok(after.length > 0);
    const offs = after.map((m) => Number(m.offset));
    assert.deepEqual(offs, Array.from({ length: offs.length }, (_, i) => Number(last.offset) + 1 + i), 'contiguous from the position, no duplicate');
    assert.equal(offs.at(-1), sent, 'up to the last one published');
    y.destroy();
    p.destroy();
  });
});

test('a quiet group keeps its epoch past the stream TTL while a node has members in it', async () => {
  const Q = await startServer(HUBTEST_BIN, ['--redis', redis.url, '--node-id', 'quiet', '--stream-ttl-ms', 1500],
    { name: 'quiet' });
  nodes.push(Q);
  const g = `quiet-${Date.now()}`;
  const x = await connect(Q, 'x');
  await x.ok(`/join/${g}`);
  await x.ok(`/publish/${g}`, 'one');
  const first = (await waitPushes(x, `g:${g}`, 1))[0];
  await sleep(4000); // more than twice the TTL, nothing published
  const ttl = await redisCommand(redis.port, 'PTTL', `sb:{g:${g}}:m`);
  assert.ok(ttl > 0, `the metadata is still there (PTTL ${ttl})`);
  await x.ok(`/publish/${g}`, 'two');
  const got = await waitPushes(x, `g:${g}`, 2);
  assert.equal(got[1].epoch, first.epoch, 'the same epoch');
  assert.equal(Number(got[1].offset), 2);
  x.destroy();
});

describe('failures', () => {
  let A, B;
  before(async () => { A = await node('fail-a'); B = await node('fail-b'); });

  test('CLIENT KILL TYPE pubsub: what was published meanwhile is filled in, no resume', async () => {
    const g = `kill-${Date.now()}`;
    const b = await connect(B, 'b'), p = await connect(A, 'p');
    await b.ok(`/join/${g}`);
    await p.ok(`/publish/${g}`, 'm1');
    await waitPushes(b, `g:${g}`, 1);
    const killed = await redisCommand(redis.port, 'CLIENT', 'KILL', 'TYPE', 'pubsub');
    assert.ok(killed >= 2, `killed ${killed} pub/sub links`);
    for (let i = 2; i <= 6; i++) await p.ok(`/publish/${g}`, `m${i}`);
    const got = await waitPushes(b, `g:${g}`, 6, 8000);
    assert.deepEqual(got.map((m) => m.body.toString()), ['m1', 'm2', 'm3', 'm4', 'm5', 'm6']);
    assert.deepEqual(got.map((m) => Number(m.offset)), [1, 2, 3, 4, 5, 6]);
    assert.equal(b.log.filter((m) => m.kind === KIND.HELLO).length, 1, 'no reconnect, no resume');
    assert.equal(b.closeFrame, null);
    b.destroy();
    p.destroy();
  });

  test('kill -9 of a node: its client resumes on the other with nothing lost; the node leaves the registry', async () => {
    const C = await node('fail-c');
    const g = `crash-${Date.now()}`;
    const x = await connect(C, 'x'), p = await connect(B, 'p');
    await x.ok(`/join/${g}`);
    await p.ok(`/publish/${g}`, 'before');
    const first = (await waitPushes(x, `g:${g}`, 1))[0];
    const members = await redisCommand(redis.port, 'ZRANGE', 'sb:nodes', '0', '-1');
    assert.ok(members.includes('fail-c'), JSON.stringify(members));
    const listed = (await p.ok('/nodes')).split('\n').map((l) => l.split('=')[0]).sort();
    assert.ok(listed.includes('fail-b') && listed.includes('fail-c'), listed.join(','));
    process.kill(C.pid, 'SIGKILL');
    await C.exited;
    await p.ok(`/publish/${g}`, 'after1');
    await p.ok(`/publish/${g}`, 'after2');
    const y = await connect(B, 'y');
    y.resume(x.hello.token, [{ stream: `g:${g}`, offset: first.offset, epoch: first.epoch }]);
    const done = await y.take((m) => m.kind === KIND.RESUMED, 10000, 'RESUMED');
    const e = decodeResumed(done.body).find((r) => r.stream === `g:${g}`);
    assert.equal(e.recovered, true);
    assert.deepEqual(pushesOf(y, `g:${g}`).map((m) => m.body.toString()), ['after1', 'after2']);
    // Dead within 10 s: out of the registry (node TTL 3 s here, swept every second).
    let gone = false;
    for (let i = 0; i < 40 && !gone; i++) {
      await sleep(250);
      gone = !(await redisCommand(redis.port, 'ZRANGE', 'sb:nodes', '0', '-1')).includes('fail-c');
    }
    assert.ok(gone, 'fail-c is still registered');
    assert.ok(!(await p.ok('/nodes')).includes('fail-c='), 'a dead node is not listed');
    y.destroy();
    p.destroy();
  });

  test('Redis killed and restarted empty: errors while down, service after, new epochs say recovered:false', async () => {
    const g = `restart-${Date.now()}`;
    const b = await connect(B, 'b'), p = await connect(A, 'p');
    await b.ok(`/join/${g}`);
    await p.ok(`/publish/${g}`, 'old');
    const old = (await waitPushes(b, `g:${g}`, 1))[0];
    const away = await connect(A, 'away');
    await away.ok(`/join/${g}`);
    const tokenAway = away.hello.token;
    away.destroy();
    await sleep(100);
    const t0 = Date.now();
    const restarting = redis.restart(700);
    await sleep(200);
    const r = await p.request(`/publish/${g}`, 'during');
    assert.equal(r.status, 503, `a publish while Redis is down fails at once: ${r.status}`);
    const health = await p.request('/health');
    assert.equal(health.status, 503, health.body.toString());
    assert.match(health.body.toString(), /^redis up=0 commands=0/);
    assert.ok(Date.now() - t0 < 2500);
    await restarting;
    // Both nodes reconnect (backoff up to 5 s); then publishing works, under a new epoch.
    let ok = false;
    for (let i = 0; i < 60 && !ok; i++) {
      await sleep(200);
      ok = (await p.request(`/publish/${g}`, 'new')).status === 200;
    }
    assert.ok(ok, 'publishing works again after the restart');
    assert.equal(await p.ok('/health'), 'redis up=1 commands=1 pubsub=1');
    const m = await b.take((x) => x.kind === KIND.PUSH && x.stream === `g:${g}` && x.body.toString() === 'new', 8000, 'the new push');
    assert.notEqual(m.epoch, old.epoch, 'a new epoch: the history was lost');
    // A session that was closed before the restart is gone with Redis' data: 401, a fresh start.
    const y = await connect(B, 'y');
    y.resume(tokenAway, []);
    const err = await y.take((x) => x.kind === KIND.ERROR, 5000, 'the refusal');
    assert.equal(err.status, 401);
    b.destroy();
    p.destroy();
    y.destroy();
  });
});

test('sb_hub_health and sb_hub_nodes with the memory engine: up, no Redis links, one node', async () => {
  const n = await startServer(HUBTEST_BIN, [], { name: 'memory' });
  nodes.push(n);
  const c = await connect(n, 'c');
  assert.equal(await c.ok('/health'), 'memory up=1 commands=-1 pubsub=-1');
  assert.equal(await c.ok('/nodes'), 'local=');
  c.destroy();
});
