// Presence (sb_hub_presence, sb_hub_options.on_presence): who is in a group, by identity with
// its connection count, and the join/leave events, with the memory engine on one node and with
// the redis engine across three hubtest nodes on one real redis-server: the list is the same
// from every node, events reach the nodes with members, a kill -9'd node's entries go within
// 10 s (with leave events), and a Redis restarted empty gets every live membership back.
//
// hubtest answers /presence/G with "identity=count" lines sorted by identity, and pushes each
// event to every connection of its node as url "/presence", body "<1|0>|<group>|<identity>".
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';

import { HUBTEST_BIN, HubClient, servers } from './hub.mjs';
import { KIND } from './proto.mjs';
import { sleep } from './lib.mjs';
import { startRedis, redisCommand } from './redis.mjs';

const running = servers();
let redis;
after(() => running.stopAll(() => redis?.stop()));

async function start(name, args = []) {
  return running.start(HUBTEST_BIN, ['--auth', 'custom', '--presence-events', '1', ...args], { name });
}
const as = (n, who, label = who) =>
  HubClient.connect(n.port, { label, extra: [['Authorization', `Bearer ok-${who}`]] });
const events = (c) => c.log.filter((m) => m.url === '/presence').map((m) => m.body.toString());

async function presenceOf(c, g) {
  const r = await c.request(`/presence/${g}`);
  assert.equal(r.status, 200, r.body.toString());
  return r.body.toString();
}

// Polls until the presence seen through `c` is `want` (nodes apply changes through Redis).
async function waitPresence(c, g, want, ms = 8000) {
  let got;
  for (const t0 = Date.now(); Date.now() - t0 < ms;) {
    const r = await c.request(`/presence/${g}`);
    got = `${r.status} ${r.body}`;
    if (r.status === 200 && r.body.toString() === want) return;
    assert.ok(r.status === 200 || r.status === 503, got); // 503: Redis is away
    await sleep(100);
  }
  assert.equal(got, `200 ${want}`, `presence of ${g} through ${c.label}`);
}

async function waitEvent(c, ev, ms = 8000) {
  await c.waitFor(() => (events(c).includes(ev) ? true : undefined), ms, `event ${ev} on ${c.label}`);
}

describe('memory engine, one node', () => {
  let S;
  before(async () => { S = await start('mem'); });

  test('identities with their connection counts; first join and last leave are events', async () => {
    const g = 'room1';
    const a1 = await as(S, 'alice', 'a1'), a2 = await as(S, 'alice', 'a2'), b = await as(S, 'bob');
    assert.equal(await presenceOf(a1, g), '', 'nobody yet');
    await a1.ok(`/join/${g}`);
    await a2.ok(`/join/${g}`);
    await b.ok(`/join/${g}`);
    assert.equal(await presenceOf(b, g), 'alice=2\nbob=1');
    await waitEvent(b, `1|${g}|alice`);
    await waitEvent(b, `1|${g}|bob`);
    assert.equal(events(b).filter((e) => e === `1|${g}|alice`).length, 1, 'alice joined once, with two tabs');
    // The user group counts every connection of the identity.
    assert.equal(await presenceOf(b, 'user:alice'), 'alice=2');
    await a1.ok(`/leave/${g}`);
    assert.equal(await presenceOf(b, g), 'alice=1\nbob=1');
    await sleep(100);
    assert.ok(!events(b).includes(`0|${g}|alice`), 'alice is still there');
    a2.destroy(); // closing leaves every group
    await waitEvent(b, `0|${g}|alice`);
    assert.equal(await presenceOf(b, g), 'bob=1');
    assert.equal(await presenceOf(b, 'user:alice'), 'alice=1');
    const bad = await b.request('/presence/');
    assert.equal(bad.status, 400, 'no group: SB_EINVAL');
    a1.destroy();
    b.destroy();
  });
});

describe('redis engine, three nodes', () => {
  let A, B, C;
  before(async () => {
    redis = await startRedis();
    const node = (id) => start(id, ['--redis', redis.url, '--node-id', id]);
    A = await node('pa');
    B = await node('pb');
    C = await node('pc');
  });

  test('the same list from every node; events reach the nodes with members', async () => {
    const g = `lobby-${Date.now()}`;
    const a = await as(A, 'alice', 'a'), b = await as(B, 'alice', 'b'), c = await as(C, 'bob', 'c');
    const watcher = await as(A, 'walt', 'watcher'); // on A, in the group: hears events from B and C
    await watcher.ok(`/join/${g}`);
    await a.ok(`/join/${g}`);
    await b.ok(`/join/${g}`);
    await c.ok(`/join/${g}`);
    for (const x of [a, b, c]) await waitPresence(x, g, 'alice=2\nbob=1\nwalt=1');
    await waitEvent(watcher, `1|${g}|bob`); // joined on C
    await waitEvent(watcher, `1|${g}|alice`);
    await sleep(300);
    assert.equal(events(watcher).filter((e) => e === `1|${g}|alice`).length, 1, 'alice once, with two connections');
    // C has a member now: it hears a join made on A (events before C had one went elsewhere).
    const z = await as(A, 'zed', 'z');
    await z.ok(`/join/${g}`);
    await waitEvent(c, `1|${g}|zed`);
    z.destroy();
    await waitEvent(c, `0|${g}|zed`);
    // In Redis: the counts, and one hash per node.
    const counts = await redisCommand(redis.port, 'HGETALL', `sb:{g:${g}}:pc`);
    assert.deepEqual(Object.fromEntries(counts.reduce((acc, v, i) => (i % 2 ? acc[acc.length - 1].push(v) : acc.push([v]), acc), [])),
      { alice: '2', bob: '1', walt: '1' });
    assert.equal(await redisCommand(redis.port, 'HLEN', `sb:{g:${g}}:p:pb`), 1);
    // alice leaves on A: still there through B; then B closes: gone, and the event comes.
    await a.ok(`/leave/${g}`);
    await waitPresence(c, g, 'alice=1\nbob=1\nwalt=1');
    b.destroy();
    await waitEvent(watcher, `0|${g}|alice`);
    await waitPresence(c, g, 'bob=1\nwalt=1');
    // Everyone leaves: nothing is left behind in Redis.
    await c.ok(`/leave/${g}`);
    await watcher.ok(`/leave/${g}`);
    await waitPresence(a, g, '');
    assert.equal(await redisCommand(redis.port, 'EXISTS', `sb:{g:${g}}:pc`, `sb:{g:${g}}:p:pa`,
      `sb:{g:${g}}:p:pb`, `sb:{g:${g}}:p:pc`), 0);
    assert.ok(!(await redisCommand(redis.port, 'SMEMBERS', 'sb:{node:pa}:p')).includes(`g:${g}`));
    for (const x of [a, c, watcher]) x.destroy();
  });

  test('kill -9 of a node: its connections leave the presence within 10 s, with leave events', async () => {
    const D = await start('pd', ['--redis', redis.url, '--node-id', 'pd']);
    const g = `crash-${Date.now()}`;
    const w = await as(A, 'walt', 'w'), d = await as(D, 'dora', 'd'), d2 = await as(B, 'dora', 'd2');
    const e = await as(D, 'erin', 'e');
    await w.ok(`/join/${g}`);
    await d.ok(`/join/${g}`);
    await d2.ok(`/join/${g}`);
    await e.ok(`/join/${g}`);
    await waitPresence(w, g, 'dora=2\nerin=1\nwalt=1');
    process.kill(D.pid, 'SIGKILL');
    await D.exited;
    const t0 = Date.now();
    await waitPresence(w, g, 'dora=1\nwalt=1', 10000);
    await waitEvent(w, `0|${g}|erin`, 2000);
    assert.ok(Date.now() - t0 < 10000);
    assert.ok(!events(w).includes(`0|${g}|dora`), 'dora is still connected through B');
    assert.equal(await redisCommand(redis.port, 'EXISTS', `sb:{g:${g}}:p:pd`, 'sb:{node:pd}:p'), 0);
    w.destroy();
    d2.destroy();
  });

  test('a node restarted with the same id lets go of what its previous run held', async () => {
    const g = `rerun-${Date.now()}`;
    let R = await start('pr', ['--redis', redis.url, '--node-id', 'pr']);
    const w = await as(A, 'walt', 'w'), x = await as(R, 'xena', 'x');
    await w.ok(`/join/${g}`);
    await x.ok(`/join/${g}`);
    await waitPresence(w, g, 'walt=1\nxena=1');
    const id = x.id;
    process.kill(R.pid, 'SIGKILL');
    await R.exited;
    // At once, within its TTL: the node never misses a beat, so no sweep would take it out.
    R = await start('pr', ['--redis', redis.url, '--node-id', 'pr']);
    await waitPresence(w, g, 'walt=1');
    await waitEvent(w, `0|${g}|xena`);
    const [n, c] = await redisCommand(redis.port, 'HMGET', `sb:{s:${id}}`, 'n', 'c');
    assert.equal(n, 'pr');
    assert.notEqual(c, '0', 'the previous run\'s session is closed (resumable, expiring)');
    assert.equal(await redisCommand(redis.port, 'SISMEMBER', 'sb:{node:pr}:s', id), 0);
    // The new run works as any node: a member there counts.
    const y = await as(R, 'yuri', 'y');
    await y.ok(`/join/${g}`);
    await waitPresence(w, g, 'walt=1\nyuri=1');
    for (const c2 of [w, x, y]) c2.destroy();
  });

  test('Redis restarted empty: every node registers its live memberships again', async () => {
    for (const n of [A, B, C]) assert.ok(n.alive(), `${n.name} is running: ${n.stderr().slice(-2000)}`);
    const g = `again-${Date.now()}`;
    const a = await as(A, 'alice', 'a'), b = await as(B, 'bob', 'b'), c = await as(C, 'carol', 'c');
    for (const x of [a, b, c]) await x.ok(`/join/${g}`);
    await waitPresence(a, g, 'alice=1\nbob=1\ncarol=1');
    await redis.restart(300);
    assert.equal(await redisCommand(redis.port, 'EXISTS', `sb:{g:${g}}:pc`), 0, 'Redis lost it');
    await waitPresence(b, g, 'alice=1\nbob=1\ncarol=1', 15000);
    // The connections stayed open and still count: one leaves, the others see it.
    a.destroy();
    await waitPresence(c, g, 'bob=1\ncarol=1');
    // The open sessions were made again whole (identity, token, groups): bob's connection
    // drops and resumes on another node with the token of its HELLO, before the restart.
    const token = b.hello.token, id = b.id;
    b.destroy();
    await waitPresence(c, g, 'carol=1');
    const y = await as(C, 'bob', 'y');
    y.resume(token, []);
    const done = await y.take((m) => m.kind === KIND.RESUMED || m.kind === KIND.ERROR, 8000, 'RESUMED');
    assert.equal(done.kind, KIND.RESUMED, `the remade session resumes: ${done.status} ${done.body}`);
    assert.equal(await y.ok('/whoami'), id);
    await waitPresence(c, g, 'bob=1\ncarol=1');
    y.destroy();
    c.destroy();
  });
});
