// The examples as nodes of a cluster (--redis, issue 10 item 9): two examples/broadcast nodes
// on one real redis-server, where /to/<connection id> reaches that connection alone wherever it
// is, an unknown id is "not found", and every other message still reaches everyone on both
// nodes; and two examples/demo nodes, where a post to a room on one node is pushed to the
// room's members on the other (what stays per node is pinned too, as demo.c documents it).
// Each node is started with --public-url, and the node lists (broadcast's GET /nodes over the
// WebSocket, the demo's GET /api/nodes) give every node's url as it was given.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import net from 'node:net';
import path from 'node:path';

import { BROADCAST_BIN, HubClient, startServer } from './hub.mjs';
import { KIND, METHOD } from './proto.mjs';
import { sleep } from './lib.mjs';
import { startRedis } from './redis.mjs';

const BUILD = process.env.SB_BUILD_DIR || path.resolve(import.meta.dirname, '../../build');
const DEMO_BIN = process.env.SB_DEMO || path.join(BUILD, 'examples/demo');

let redis;
const servers = [];
before(async () => { redis = await startRedis(); });
after(async () => {
  const problems = [];
  for (const s of servers) {
    const r = await s.stop();
    if (r.killed) problems.push(`${s.name} needed SIGKILL`);
    else if (r.code !== 0) problems.push(`${s.name} exited with ${JSON.stringify(r)}: ${s.stderr().slice(-2000)}`);
    const report = s.sanitizerReport();
    if (report) problems.push(report);
  }
  await redis?.stop();
  if (problems.length) throw new Error(problems.join('\n---\n'));
});

// The url each node advertises (--public-url): a made-up host, so that a list showing it can
// only have taken it from the flag.
const publicUrl = (name) => `ws://${name}.nodes.test:8443/ws?node=${name}`;

async function node(bin, name, extra = []) {
  const s = await startServer(bin, ['--redis', redis.url, '--node-id', name, '--public-url', publicUrl(name), ...extra], { name });
  servers.push(s);
  return s;
}

const text = (m) => m.body.toString('utf8');
const pushes = (c) => c.log.filter((m) => m.kind === KIND.PUSH);
const pushesOf = (c, stream) => pushes(c).filter((m) => m.stream === stream);

async function waitPushes(c, stream, count, ms = 5000) {
  await c.waitFor(() => (pushesOf(c, stream).length >= count ? true : undefined), ms,
    `${count} pushes on ${stream} at ${c.label}`);
  return pushesOf(c, stream);
}

describe('examples/broadcast: two nodes, one Redis', () => {
  let A, B, a1, a2, b1, b2, everyone;
  before(async () => {
    A = await node(BROADCAST_BIN, 'bc-a');
    B = await node(BROADCAST_BIN, 'bc-b');
    a1 = await HubClient.connect(A.port, { label: 'a1' });
    a2 = await HubClient.connect(A.port, { label: 'a2' });
    b1 = await HubClient.connect(B.port, { label: 'b1' });
    b2 = await HubClient.connect(B.port, { label: 'b2' });
    everyone = [a1, a2, b1, b2];
    await sleep(200); // every node's subscription to "all" is confirmed
  });
  after(() => { for (const c of everyone ?? []) c.destroy(); });

  test('/to/<id> from node A reaches exactly that connection on node B, on its direct stream', async () => {
    const r = await a1.request(`/to/${b1.id}`, 'for b1 only', { method: METHOD.POST });
    assert.equal(r.kind, KIND.RESPONSE);
    assert.equal(r.status, 202, text(r));
    assert.equal(text(r), 'sent');
    const [m] = await waitPushes(b1, `c:${b1.id}`, 1);
    assert.equal(text(m), 'for b1 only');
    assert.equal(m.url, `/from/${a1.id}`, 'the url names the sender, so that it can answer');
    assert.equal(m.method, METHOD.POST);
    assert.equal(Number(m.offset), 1);
    // The answer, by SEND (no response), back across the nodes to the url's sender.
    b1.sendEnv({ kind: KIND.SEND, method: METHOD.PUT, url: `/to/${a1.id}`, body: 'back to a1' });
    const [back] = await waitPushes(a1, `c:${a1.id}`, 1);
    assert.equal(text(back), 'back to a1');
    assert.equal(back.url, `/from/${b1.id}`);
    // And to a connection on the same node.
    assert.equal((await b2.request(`/to/${b1.id}`, 'same node')).status, 202);
    await waitPushes(b1, `c:${b1.id}`, 2);
    await sleep(300); // time for anything misrouted to arrive
    assert.deepEqual(pushes(b1).map(text), ['for b1 only', 'same node']);
    assert.deepEqual(pushes(a1).map(text), ['back to a1']);
    assert.deepEqual(pushes(a2), [], 'a bystander on A got nothing');
    assert.deepEqual(pushes(b2), [], 'a bystander on B got nothing');
  });

  test('/to/ an unknown connection answers 404 "not found" and reaches nobody', async () => {
    const before = everyone.map((c) => pushes(c).length);
    for (const id of ['x'.repeat(22), 'nobody', '', `${b1.id}x`]) {
      const r = await a2.request(`/to/${id}`, 'lost');
      assert.equal(r.kind, KIND.RESPONSE, `/to/${id}`);
      assert.equal(r.status, 404, `/to/${id}: ${text(r)}`);
      assert.equal(text(r), 'not found');
    }
    // A SEND to nobody has no one to answer; the node stays up and serves the next one.
    a2.sendEnv({ kind: KIND.SEND, method: METHOD.POST, url: `/to/${'y'.repeat(22)}`, body: 'lost' });
    assert.equal((await a2.request(`/to/${'z'.repeat(22)}`)).status, 404);
    await sleep(300);
    assert.deepEqual(everyone.map((c) => pushes(c).length), before, 'nobody got a push');
    assert.ok(A.alive() && B.alive());
  });

  test('every other url still goes to everyone on both nodes: once each, contiguous, one epoch', async () => {
    a1.sendEnv({ kind: KIND.SEND, method: METHOD.POST, url: '/anything', body: 'from a1' });
    const r = await b2.request('/x', 'from b2', { method: METHOD.PUT });
    assert.equal(r.status, 202);
    assert.equal(text(r), 'published');
    const seen = [];
    for (const c of everyone) {
      await waitPushes(c, 'g:all', 2);
      seen.push(c);
    }
    await sleep(300);
    for (const c of seen) {
      const got = pushesOf(c, 'g:all');
      assert.equal(got.length, 2, `${c.label}: ${got.map(text)}`);
      assert.deepEqual(got.map((m) => Number(m.offset)), [1, 2], c.label);
      assert.equal(new Set(got.map((m) => m.epoch)).size, 1);
      assert.deepEqual(got.map(text).sort(), ['from a1', 'from b2']);
    }
    assert.equal(new Set(seen.map((c) => pushesOf(c, 'g:all')[0].epoch)).size, 1, 'one epoch everywhere');
  });

  test('GET /nodes (a request over the WebSocket) lists both nodes with their --public-url', async () => {
    const want = [{ id: 'bc-a', url: publicUrl('bc-a') }, { id: 'bc-b', url: publicUrl('bc-b') }];
    const counts = everyone.map((c) => pushes(c).length);
    for (const c of [a1, b2]) {
      const r = await c.request('/nodes', '', { method: METHOD.GET });
      assert.equal(r.kind, KIND.RESPONSE);
      assert.equal(r.status, 200, text(r));
      const list = JSON.parse(text(r)).sort((x, y) => x.id.localeCompare(y.id));
      assert.deepEqual(list, want, c.label);
    }
    // Answered, not published: nobody got a push of it.
    await sleep(300);
    assert.deepEqual(everyone.map((c) => pushes(c).length), counts, 'a GET /nodes was pushed');
    // Another method on /nodes is an ordinary message (published to everyone, answered 202).
    const before = pushesOf(b1, 'g:all').length;
    const p = await a1.request('/nodes', 'posted to /nodes', { method: METHOD.POST });
    assert.equal(p.status, 202);
    assert.equal(text(p), 'published');
    const got = await waitPushes(b1, 'g:all', before + 1);
    assert.equal(text(got.at(-1)), 'posted to /nodes');
  });

  test('figures: /to/ from A to B, request to push, 200 in a row', async (t) => {
    const N = 200, lat = [];
    for (let i = 0; i < N; i++) {
      const t0 = process.hrtime.bigint();
      const want = pushesOf(b2, `c:${b2.id}`).length + 1;
      const r = await a1.request(`/to/${b2.id}`, `n${i}`);
      assert.equal(r.status, 202);
      await waitPushes(b2, `c:${b2.id}`, want);
      lat.push(Number(process.hrtime.bigint() - t0) / 1e6);
    }
    const got = pushesOf(b2, `c:${b2.id}`);
    assert.deepEqual(got.map(text), Array.from({ length: N }, (_, i) => `n${i}`));
    assert.deepEqual(got.map((m) => Number(m.offset)), Array.from({ length: N }, (_, i) => i + 1));
    lat.sort((x, y) => x - y);
    t.diagnostic(`cross-node /to/: p50 ${lat[N >> 1].toFixed(2)} ms, p99 ${lat[Math.floor(N * 0.99)].toFixed(2)} ms, max ${lat[N - 1].toFixed(2)} ms`);
  });
});

describe('examples/demo: two nodes, one Redis', () => {
  let A, B;
  const clients = [];
  before(async () => {
    A = await node(DEMO_BIN, 'demo-a', ['--host', '127.0.0.1']);
    B = await node(DEMO_BIN, 'demo-b', ['--host', '127.0.0.1']);
  });
  after(() => { for (const c of clients) c.destroy(); });

  async function person(n, name) {
    const c = await HubClient.connect(n.port, { label: `${name}@${n.name}`, path: `/ws?name=${name}` });
    clients.push(c);
    return c;
  }
  async function call(c, method, url, body = '') {
    const r = await c.request(url, body, { method });
    return { status: r.status, body: r.body.length ? JSON.parse(r.body.toString()) : null };
  }
  const roomPushes = (c, room) => pushesOf(c, `g:room:${room}`).map((m) => ({ url: m.url, ...JSON.parse(text(m)) }));

  test('a post to a room on node A is pushed to its member on node B, and back', async () => {
    const alice = await person(A, 'alice'), bob = await person(B, 'bob'), carol = await person(B, 'carol');
    assert.equal((await call(alice, METHOD.PUT, '/api/rooms/lobby/members/me')).status, 204);
    assert.equal((await call(bob, METHOD.PUT, '/api/rooms/lobby/members/me')).status, 204);
    assert.equal((await call(carol, METHOD.PUT, '/api/rooms/elsewhere/members/me')).status, 204);
    await sleep(200); // both nodes' subscriptions are confirmed
    const posted = await call(alice, METHOD.POST, '/api/rooms/lobby/messages', 'hello from A');
    assert.equal(posted.status, 201, JSON.stringify(posted.body));
    await waitPushes(bob, 'g:room:lobby', 1);
    assert.equal((await call(bob, METHOD.POST, '/api/rooms/lobby/messages', 'hi from B')).status, 201);
    for (const c of [alice, bob]) {
      const got = await waitPushes(c, 'g:room:lobby', 2);
      assert.deepEqual(got.map((m) => Number(m.offset)), [1, 2], c.label);
      assert.equal(new Set(got.map((m) => m.epoch)).size, 1);
      assert.deepEqual(roomPushes(c, 'lobby').map(({ url, from, text: t }) => [url, from, t]), [
        ['/api/rooms/lobby/messages', 'alice', 'hello from A'],
        ['/api/rooms/lobby/messages', 'bob', 'hi from B'],
      ], c.label);
    }
    await sleep(300);
    assert.equal(pushesOf(alice, 'g:room:lobby').length, 2, 'each message once');
    assert.equal(pushesOf(bob, 'g:room:lobby').length, 2, 'each message once');
    assert.deepEqual(pushesOf(carol, 'g:room:lobby'), [], 'not a member: nothing');
  });

  test('GET /api/health and GET /api/nodes: both links up, both nodes listed, over WebSocket and HTTP', async () => {
    const frank = await person(A, 'frank');
    const h = await call(frank, METHOD.GET, '/api/health');
    assert.equal(h.status, 200);
    assert.deepEqual(h.body, { engine: 'redis', up: true, redis: { commands: true, pubsub: true }, error: '' });
    // Every node of this Redis: the two demo nodes, and the broadcast nodes of the test above.
    // Each with the url it was given (--public-url).
    const live = ['bc-a', 'bc-b', 'demo-a', 'demo-b'].map((id) => ({ id, url: publicUrl(id) }));
    const byId = (list) => [...list].sort((x, y) => x.id.localeCompare(y.id));
    const n = await call(frank, METHOD.GET, '/api/nodes');
    assert.equal(n.status, 200);
    assert.deepEqual(byId(n.body), live);
    const res = await fetch(`http://127.0.0.1:${B.port}/api/nodes`);
    assert.equal(res.status, 200);
    assert.deepEqual(byId(await res.json()), live);
  });

  test('who is online is shared: the same list on both nodes, pushed when someone comes or goes', async () => {
    const gina = await person(A, 'gina'), hank = await person(B, 'hank');
    const expect = async (want) => {
      for (const c of [gina, hank]) {
        let got;
        for (let i = 0; i < 50; i++) {
          got = await call(c, METHOD.GET, '/api/online');
          if (got.status === 200 && JSON.stringify(got.body) === JSON.stringify(want)) break;
          await sleep(100);
        }
        assert.deepEqual(got.body, want, c.label);
      }
    };
    const others = clients.filter((c) => !c.ended && !c.closeFrame).map((c) => /^[a-z]+/.exec(c.label)[0]);
    await expect([...new Set(others)].sort());
    // ivan comes on A: hank on B gets the list pushed, with ivan in it; ivan goes: pushed again.
    const ivan = await person(A, 'ivan');
    const online = (m) => m.url === '/api/online' && JSON.parse(text(m)).includes('ivan');
    await hank.take(online, 5000, 'the push with ivan');
    await expect([...new Set([...others, 'ivan'])].sort());
    ivan.destroy();
    await hank.take((m) => m.url === '/api/online' && !JSON.parse(text(m)).includes('ivan'), 5000, 'the push without ivan');
    await expect([...new Set(others)].sort());
  });

  test('what stays per node (demo.c\'s header): the room table; the history is the stream\'s', async () => {
    const dave = await person(A, 'dave'), erin = await person(B, 'erin');
    // History: the room's stream, the same on both nodes (the first test posted one message
    // on each), with its exact position.
    const onA = await call(dave, METHOD.GET, '/api/rooms/lobby/messages');
    const onB = await call(erin, METHOD.GET, '/api/rooms/lobby/messages');
    assert.equal(onA.status, 200);
    assert.deepEqual(onA.body, onB.body);
    assert.deepEqual(onA.body.messages.map((m) => [m.from, m.text]), [['alice', 'hello from A'], ['bob', 'hi from B']]);
    assert.equal(onA.body.stream, 'g:room:lobby');
    assert.equal(onA.body.offset, 2);
    assert.match(onA.body.epoch, /^[0-9a-f]{16}$/);
    assert.notEqual(onA.body.epoch, '0000000000000000');
    // Rooms: "elsewhere" was made on B only, so A does not know it.
    assert.equal((await call(dave, METHOD.GET, '/api/rooms/elsewhere/messages')).status, 404);
    assert.equal((await call(erin, METHOD.GET, '/api/rooms/elsewhere/messages')).status, 200);
    assert.equal((await call(erin, METHOD.GET, '/api/rooms/nowhere/messages')).status, 404);
    const listA = (await call(dave, METHOD.GET, '/api/rooms')).body.map((r) => r.id).sort();
    const listB = (await call(erin, METHOD.GET, '/api/rooms')).body.map((r) => r.id).sort();
    assert.deepEqual(listA, ['lobby']);
    assert.deepEqual(listB, ['elsewhere', 'lobby']);
  });
});

describe('--redis where no Redis answers', () => {
  /** Runs `bin` to its exit; resolves with { code, signal, stdout, stderr, ms }. */
  function run(bin, args) {
    return new Promise((resolve, reject) => {
      const t0 = Date.now();
      const p = spawn(bin, args, { stdio: ['ignore', 'pipe', 'pipe'] });
      let stdout = '', stderr = '';
      p.stdout.on('data', (d) => { stdout += d; });
      p.stderr.on('data', (d) => { stderr += d; });
      const kill = setTimeout(() => p.kill('SIGKILL'), 20000);
      p.once('error', reject);
      p.once('exit', (code, signal) => { clearTimeout(kill); resolve({ code, signal, stdout, stderr, ms: Date.now() - t0 }); });
    });
  }
  // A loopback port with nothing behind it: bound and closed again.
  const deadPort = () => new Promise((resolve) => {
    const s = net.createServer().listen(0, '127.0.0.1', () => { const { port } = s.address(); s.close(() => resolve(port)); });
  });

  test('broadcast and demo give up after about 5 s with a message, and never listen', async () => {
    const url = `redis://127.0.0.1:${await deadPort()}`;
    const [b, d] = await Promise.all([run(BROADCAST_BIN, ['--port', '0', '--redis', url]),
      run(DEMO_BIN, ['--port', '0', '--redis', url])]);
    for (const [name, r] of [['broadcast', b], ['demo', d]]) {
      assert.equal(r.code, 1, `${name}: ${JSON.stringify(r)}`);
      assert.equal(r.stdout, '', `${name} must not listen`);
      assert.match(r.stderr, new RegExp(`^${name}: --redis ${url}: Redis did not answer within 5 s`), name);
      assert.ok(r.ms >= 4500 && r.ms < 15000, `${name} gave up after ${r.ms} ms`);
      assert.doesNotMatch(r.stderr, /Sanitizer|runtime error/);
    }
  });

  test('--public-url: without --redis, and past 255 bytes, refused at once with the reason', async () => {
    for (const [name, bin] of [['broadcast', BROADCAST_BIN], ['demo', DEMO_BIN]]) {
      const alone = await run(bin, ['--port', '0', '--public-url', 'ws://x.test/']);
      assert.equal(alone.code, 2, `${name}: ${JSON.stringify(alone)}`);
      assert.equal(alone.stdout, '');
      assert.match(alone.stderr, new RegExp(`^${name}: --node-id and --public-url are for a cluster: give --redis URL too`));
      const long = await run(bin, ['--port', '0', '--redis', 'redis://127.0.0.1:1', '--public-url', `ws://${'x'.repeat(300)}.test/`]);
      assert.equal(long.code, 1, `${name}: ${JSON.stringify(long)}`);
      assert.equal(long.stdout, '');
      assert.match(long.stderr, new RegExp(`^${name}: --public-url: longer than 255 bytes`));
      assert.ok(long.ms < 3000, `${name}: ${long.ms} ms`);
    }
  });

  test('a url that is not one is refused at once', async () => {
    const r = await run(DEMO_BIN, ['--port', '0', '--redis', 'http://127.0.0.1:6379']);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /^demo: --redis http:\/\/127\.0\.0\.1:6379: invalid argument: /);
    assert.ok(r.ms < 3000, `${r.ms} ms`);
  });
});
