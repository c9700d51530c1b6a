// `make demo-cluster` in a real browser (issue 10, item 9): scripts/demo-cluster.sh itself runs
// redis-server, three demo nodes and nginx (round robin over the nodes) on free loopback ports;
// headless Chromium from Debian, driven by npm playwright-core, opens the chat through nginx.
//
// Twice, once per way a node goes: two pages on different nodes join a room of their own and
// chat; then the listener's node is killed (kill -9, and in the second round SIGTERM, which
// closes its clients with 1001 first) while the poster keeps posting. The listener's page
// reconnects by itself through nginx to another node and resumes: every message the poster
// posted is in its list exactly once, in order, with contiguous offsets, recovered (no history
// reload), and the page was never reloaded. The poster's page is untouched throughout. In the
// kill -9 round the listener's browser is also offline for a moment around the kill, so that
// 10 messages are certainly posted while it is away and must come from the resume's replay
// (a reconnect can be quicker than the poster: the SIGTERM round reports what it replayed).
//
// Which node a page is on: the server's own record of it. The page's connection id
// (window.demoClient.connectionId) names its session in Redis, whose field `n` is the node that
// holds it (docs/ARCHITECTURE.md, "Key layout"). A page that lands on the poster's node is
// closed and opened again (a new browser context: a new session) until nginx's round robin
// puts it elsewhere.
//
// The script's processes are found through DEMO_STATE_FILE (the JSON it writes once
// everything is up); it is stopped the way Ctrl-C stops it (SIGTERM to the script, which stops
// the rest by PID), and its temp dir is kept (DEMO_KEEP_TMP=1) so that the nodes' logs can be
// checked for sanitizer reports, then removed. Screenshots go to SB_ARTIFACTS/demo_cluster.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

import { redisCommand } from '../integration/redis.mjs';

const ROOT = path.resolve(import.meta.dirname, '../..');
const DEMO_BIN = process.env.SB_DEMO || path.join(ROOT, 'build/examples/demo');
const SCRIPT = process.env.SB_DEMO_CLUSTER || path.join(ROOT, 'scripts/demo-cluster.sh');
const NGINX = process.env.SB_NGINX || '/usr/sbin/nginx';
const REDIS_SERVER = process.env.SB_REDIS_SERVER || '/usr/bin/redis-server';
const CHROMIUM = process.env.SB_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = path.join(process.env.SB_ARTIFACTS || path.join(ROOT, 'build/artifacts/browser'), 'demo_cluster');
// Generous waits for conditions (they end as soon as the condition holds).
const WAIT_MS = 20000;
const SANITIZER_RE = /ERROR: (Address|Leak|Undefined|Thread)Sanitizer|runtime error:/;

// ---------------------------------------------------------------------------------------------
// The cluster, by scripts/demo-cluster.sh
// ---------------------------------------------------------------------------------------------

let script = null; // { proc, exited, out() }
process.on('exit', () => {
  // The test runner is going without after() (a crash): the script still stops everything.
  if (script && script.proc.exitCode === null && script.proc.signalCode === null) {
    try { process.kill(script.proc.pid, 'SIGTERM'); } catch { /* gone */ }
  }
});

/** `n` distinct free loopback ports (all bound at once, then released). */
async function freePorts(n) {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => resolve(s));
  })));
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}

const alive = (pid) => {
  try { process.kill(pid, 0); return true; } catch { return false; }
};

/**
 * Runs the script on free ports; resolves with its state file's contents once everything is
 * up. Rejects with the script's output if it exits first or is not up in time.
 */
async function startCluster() {
  const [port, n1, n2, n3, redisPort] = await freePorts(5);
  const stateFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'sb-demo-cluster-test-')), 'state.json');
  // The script runs BUILD/examples/demo: the binary ctest names must be that one.
  const build = path.dirname(path.dirname(DEMO_BIN));
  const env = {
    ...process.env,
    DEMO_PORT: String(port),
    DEMO_NODE_PORTS: `${n1} ${n2} ${n3}`,
    DEMO_REDIS_PORT: String(redisPort),
    DEMO_STATE_FILE: stateFile,
    DEMO_KEEP_TMP: '1',
    NGINX,
    REDIS_SERVER,
  };
  const proc = spawn('bash', [SCRIPT, build], { env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stdout.on('data', (d) => { out += d; });
  proc.stderr.on('data', (d) => { out += d; });
  const exited = new Promise((resolve) => proc.once('exit', (code, signal) => resolve({ code, signal })));
  script = { proc, exited, out: () => out, stateFile };
  let gone = null;
  exited.then((x) => { gone = x; });
  const end = Date.now() + 30000;
  while (!fs.existsSync(stateFile)) {
    if (gone) throw new Error(`scripts/demo-cluster.sh exited before it was up: ${JSON.stringify(gone)}; its output:\n${out}`);
    if (Date.now() > end) throw new Error(`scripts/demo-cluster.sh was not up within 30 s; its output:\n${out}`);
    await sleep(50);
  }
  return JSON.parse(fs.readFileSync(stateFile, 'utf8'));
}

/** Stops the script as Ctrl-C does; resolves with its exit. */
async function stopCluster(state) {
  if (!script) return null;
  try { process.kill(script.proc.pid, 'SIGTERM'); } catch { /* gone */ }
  let timer;
  const x = await Promise.race([script.exited, new Promise((r) => { timer = setTimeout(() => r(null), 30000); })]);
  clearTimeout(timer);
  if (!x) {
    // It did not stop everything in time: whatever it started goes by PID.
    for (const pid of [script.proc.pid, state?.nginx.pid, ...(state?.nodes.map((n) => n.pid) ?? []), state?.redis.pid]) {
      if (pid) { try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ } }
    }
  }
  return x;
}

// ---------------------------------------------------------------------------------------------
// Pages
// ---------------------------------------------------------------------------------------------

/** Resolves with pred()'s first truthy value, polling; the error names `what`. */
async function until(pred, what, timeoutMs = WAIT_MS) {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = await pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timeout after ${timeoutMs} ms waiting for ${what}`);
    await sleep(50);
  }
}

/** The page's state, for assertions and for failure messages. */
const state = (page) => page.evaluate(() => JSON.parse(JSON.stringify({
  ...window.demo,
  connectionId: window.demoClient?.connectionId,
  clientState: window.demoClient?.state,
  statusText: document.getElementById('status').textContent,
  dom: [...document.querySelectorAll('#messages li')].map((li) => ({ offset: Number(li.dataset.offset), from: li.querySelector('.from')?.textContent, text: li.childNodes[1]?.textContent })),
})));

/** Waits until fn(window.demo, arg) holds in the page; on timeout the error shows the page's state. */
async function waitPage(page, label, what, fn, arg, timeoutMs = WAIT_MS) {
  try {
    await page.waitForFunction(({ src, arg: a }) => (0, eval)(src)(window.demo, a), { src: `(${fn})`, arg }, { timeout: timeoutMs, polling: 50 });
  } catch (e) {
    let s;
    try { s = JSON.stringify(await state(page)); } catch (e2) { s = `(no state: ${e2.message})`; }
    throw new Error(`${label}: timeout after ${timeoutMs} ms waiting for ${what}; page state: ${s}`, { cause: e });
  }
}

/** Records, inside the page, the client's events; a marker that a reload would lose. */
async function instrument(page) {
  await page.evaluate(() => {
    window.__events = [];
    window.__pushes = []; // the room's pushes with the client's state: 'resuming' = a replay
    window.__marker = Math.random();
    window.demoClient.addServerResponseListenerFor.post('/api/rooms/:roomId/messages', (p) => {
      window.__pushes.push({ offset: Number(p.offset), state: window.demoClient.state });
    });
    for (const name of ['open', 'close', 'reconnecting', 'resumed']) {
      window.demoClient.on(name, (e) => window.__events.push({ name, at: Date.now(), ...JSON.parse(JSON.stringify(e ?? {})) }));
    }
  });
  return page.evaluate(() => window.__marker);
}

const shots = [];
async function shot(page, name) {
  const file = path.join(ARTIFACTS, `${name}.png`);
  await page.screenshot({ path: file, fullPage: true });
  shots.push(file);
}

/** Posts through the page's form, as a person would. */
async function postViaUi(page, text) {
  await page.fill('#text', text);
  await page.click('[data-testid=send]');
  await waitPage(page, 'poster', `the input to clear after sending ${JSON.stringify(text)}`, () => document.getElementById('text').value === '');
}

/** Posts over the page's client (its WebSocket); asserts 201. */
async function post(page, room, text) {
  const r = await page.evaluate(([rm, t]) => window.demoClient.post(`/api/rooms/${rm}/messages`, t).then((x) => x.status), [room, text]);
  assert.equal(r, 201, `posting ${JSON.stringify(text)}`);
}

/** Offsets contiguous, in order, none twice, the DOM showing the same list as window.demo. */
function assertListConsistent(s, label) {
  const offsets = s.messages.map((m) => m.offset);
  const expected = offsets.length ? Array.from({ length: offsets.length }, (_, i) => offsets[0] + i) : [];
  assert.deepEqual(offsets, expected, `${label}: offsets are not contiguous`);
  assert.deepEqual(s.dom, s.messages.map((m) => ({ offset: m.offset, from: m.from, text: m.text })), `${label}: the DOM list differs from window.demo.messages`);
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

describe('make demo-cluster in Chromium: a page whose node dies resumes on another through nginx', () => {
  let chromium;
  let browser;
  let cluster; // the script's state file
  let base;    // http://127.0.0.1:<nginx port>
  const contexts = new Set();
  const killed = new Set(); // node ids

  before(async () => {
    // Anything missing is a failure with a clear message, never a skip.
    const need = [
      [CHROMIUM, 'Chromium (Debian package "chromium"; or set SB_CHROMIUM)'],
      [NGINX, 'nginx (Debian package "nginx"; or set SB_NGINX)'],
      [REDIS_SERVER, 'redis-server (Debian package "redis-server"; or set SB_REDIS_SERVER)'],
      [DEMO_BIN, 'the demo binary (build it, or set SB_DEMO)'],
      [SCRIPT, 'scripts/demo-cluster.sh (or set SB_DEMO_CLUSTER)'],
    ];
    for (const [file, what] of need) {
      if (!fs.existsSync(file)) throw new Error(`${file} is missing: ${what}; scripts/setup.sh test installs the packages`);
    }
    try {
      ({ chromium } = await import('playwright-core'));
    } catch (e) {
      throw new Error(`npm playwright-core is missing: run "npm ci" at the repository root (${e.message})`);
    }
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    for (const f of fs.readdirSync(ARTIFACTS)) if (f.endsWith('.png')) fs.rmSync(path.join(ARTIFACTS, f));

    cluster = await startCluster();
    base = `http://127.0.0.1:${cluster.port}`;
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
  });

  after(async () => {
    for (const c of contexts) await c.close().catch(() => {});
    await browser?.close();
    const x = await stopCluster(cluster);
    if (shots.length) console.log(`# screenshots:\n${shots.map((f) => `#   ${f}`).join('\n')}`);
    // Everything the script started is gone, and it said why it stopped: asked to (0).
    const problems = [];
    if (!x) problems.push(`the script did not stop within 30 s of SIGTERM; its output:\n${script?.out()}`);
    else if (x.code !== 0) problems.push(`the script exited with ${JSON.stringify(x)}; its output:\n${script.out()}`);
    for (const pid of cluster ? [cluster.nginx.pid, cluster.redis.pid, ...cluster.nodes.map((n) => n.pid)] : []) {
      if (alive(pid)) problems.push(`pid ${pid} still runs after the script stopped`);
    }
    // The nodes' logs (kept by DEMO_KEEP_TMP=1): no sanitizer report, then the temp dir goes.
    if (cluster?.tmp && fs.existsSync(cluster.tmp)) {
      for (const n of cluster.nodes) {
        const log = fs.readFileSync(path.join(cluster.tmp, `${n.id}.log`), 'utf8');
        const i = log.search(SANITIZER_RE);
        if (i >= 0) problems.push(`${n.id}: ${log.slice(Math.max(0, i - 300), i + 4000)}`);
      }
      fs.rmSync(cluster.tmp, { recursive: true, force: true });
    }
    if (script?.stateFile) fs.rmSync(path.dirname(script.stateFile), { recursive: true, force: true });
    if (problems.length) throw new Error(problems.join('\n---\n'));
  });

  /** The node holding the page's session, from Redis (the server's own record). */
  async function nodeOf(page) {
    const id = await page.evaluate(() => window.demoClient.connectionId);
    assert.ok(id, 'the page has no connection id');
    const key = `sb:{s:${id.replace(/%/g, '%25').replace(/\{/g, '%7B').replace(/\}/g, '%7D')}}`;
    return until(() => redisCommand(cluster.redis.port, 'HGET', key, 'n'), `the session ${key} in Redis`);
  }

  /** The live nodes, asked through nginx (any node answers): { id: url }. */
  async function liveNodes() {
    const r = await fetch(`${base}/api/nodes`);
    assert.equal(r.status, 200);
    return Object.fromEntries((await r.json()).map((n) => [n.id, n.url]));
  }

  /** Opens the chat as `name` in `room` through nginx, in a browser context of its own. */
  async function open(name, room) {
    const ctx = await browser.newContext({ viewport: { width: 1000, height: 700 } });
    contexts.add(ctx);
    const page = await ctx.newPage();
    page.on('pageerror', (e) => console.log(`# ${name}: page error: ${e.message}`));
    page.on('console', (m) => { if (m.type() === 'error') console.log(`# ${name}: console: ${m.text()}`); });
    await page.goto(`${base}/?name=${name}&room=${room}`);
    await waitPage(page, name, `connected in #${room}`, (d, s) => d.status === 'connected' && d.reloads === 1 && d.stream === s, `g:room:${room}`);
    const marker = await instrument(page);
    return { name, ctx, page, marker, node: await nodeOf(page) };
  }

  /** Opens `name` until nginx puts it on another node than `avoid` (a fresh session each time). */
  async function openElsewhere(name, room, avoid) {
    for (let i = 1; i <= 12; i++) {
      const p = await open(name, room);
      if (p.node !== avoid) {
        console.log(`# ${name} is on ${p.node} (attempt ${i})`);
        return p;
      }
      await p.ctx.close();
      contexts.delete(p.ctx);
    }
    throw new Error(`${name}: 12 page loads through nginx all landed on ${avoid}`);
  }

  /**
   * One round: `poster` and `listener` on different nodes chat in `room`; the listener's node
   * is stopped with `signal` while the poster keeps posting; the listener resumes elsewhere.
   * `hold`: the listener's browser is offline from just before the stop until the poster has
   * posted 10 more, so that those are certainly missed and must come in the resume's replay
   * (without it, a quick reconnect may leave nothing to replay: then only the live path runs).
   */
  async function round(signal, posterName, listenerName, room, shotPrefix, { hold = false } = {}) {
    const poster = await open(posterName, room);
    assert.ok(!killed.has(poster.node));
    const listener = await openElsewhere(listenerName, room, poster.node);
    const victim = cluster.nodes.find((n) => n.id === listener.node);
    assert.ok(victim, `the listener's node ${listener.node} is not one the script started`);

    // They chat, through the pages' forms.
    await postViaUi(poster.page, `hello ${listenerName}, from ${posterName}`);
    await waitPage(listener.page, listenerName, 'the first message', (d) => d.messages.length === 1);
    await postViaUi(listener.page, `hi ${posterName} — ${listenerName} here`);
    for (const p of [poster, listener]) {
      await waitPage(p.page, p.name, 'both messages', (d) => d.messages.length === 2);
      const s = await state(p.page);
      assert.deepEqual(s.messages.map((m) => [m.offset, m.from, m.text]), [
        [1, posterName, `hello ${listenerName}, from ${posterName}`],
        [2, listenerName, `hi ${posterName} — ${listenerName} here`],
      ], p.name);
      assertListConsistent(s, p.name);
    }
    await shot(poster.page, `${shotPrefix}-1-${posterName}-on-${poster.node}`);
    await shot(listener.page, `${shotPrefix}-2-${listenerName}-on-${listener.node}`);
    const before = await state(listener.page);
    for (const p of [poster, listener]) await p.page.evaluate(() => { window.__events.length = 0; window.__pushes.length = 0; });

    // The poster posts; the listener's node goes in the middle of it; the poster goes on until
    // the listener is back (and a little after).
    const sent = [];
    const say = async (viaUi = false) => {
      const text = `${posterName} #${String(sent.length + 1).padStart(3, '0')}`;
      sent.push(text);
      if (viaUi) await postViaUi(poster.page, text);
      else await post(poster.page, room, text);
    };
    for (let i = 0; i < 5; i++) await say();
    await waitPage(listener.page, listenerName, 'the first 5 live', (d) => d.messages.length === 7);
    if (hold) {
      await listener.ctx.setOffline(true);
      await listener.page.waitForFunction(() => navigator.onLine === false, null, { timeout: WAIT_MS });
    }
    const t0 = Date.now();
    process.kill(victim.pid, signal);
    killed.add(victim.id);
    if (hold) await waitPage(listener.page, listenerName, 'the connection to go', (d) => d.status === 'offline');
    for (let i = 0; i < 10; i++) await say(i % 5 === 4);
    if (hold) await listener.ctx.setOffline(false);
    await until(async () => {
      const s = await state(listener.page);
      if (s.status === 'resumed') return true;
      if (sent.length < 300) await say();
      await sleep(100);
      return false;
    }, `${listenerName}'s page to resume`);
    const resumedAfter = Date.now() - t0;
    for (let i = 0; i < 5; i++) await say(i === 4);
    const total = 2 + sent.length;
    await waitPage(listener.page, listenerName, `all ${total} messages`, (d, n) => d.messages.length >= n, total);
    await waitPage(poster.page, posterName, `all ${total} messages`, (d, n) => d.messages.length >= n, total);
    await until(() => !alive(victim.pid), `${victim.id} (pid ${victim.pid}) to be gone`);
    await sleep(500); // time for anything pushed twice to arrive

    const s = await state(listener.page);
    const a = await state(poster.page);
    const pushed = await listener.page.evaluate(() => window.__pushes);
    const replayed = pushed.filter((p) => p.state === 'resuming').length;
    console.log(`# ${signal}: ${victim.id} stopped; ${listenerName} resumed ${resumedAfter} ms later on ${await nodeOf(listener.page)}; ` +
      `${sent.length} posted from 5 before to 5 after; ${replayed} of them came in the resume's replay, ${pushed.length - replayed} live`);
    // Each offset pushed once (the page would also drop a duplicate: this is the client's view).
    assert.deepEqual(pushed.map((p) => p.offset), Array.from({ length: sent.length }, (_, i) => i + 3));
    if (hold) assert.ok(replayed >= 10, `only ${replayed} pushes came in the replay, though 10 were posted while ${listenerName} was away`);
    // Every message exactly once, in order, contiguous: the same list as the poster's.
    assert.deepEqual(s.messages.map((m) => m.text), [...before.messages.map((m) => m.text), ...sent]);
    assert.deepEqual(s.messages.map((m) => m.offset), Array.from({ length: total }, (_, i) => i + 1));
    assert.deepEqual(s.messages, a.messages, 'the two pages show different lists');
    assertListConsistent(s, listenerName);
    assertListConsistent(a, posterName);
    // Resumed, not reloaded: same page, same session, history not fetched again.
    assert.equal(await listener.page.evaluate(() => window.__marker), listener.marker, `${listenerName}'s page was reloaded`);
    assert.equal(s.connectionId, before.connectionId, 'a new session instead of a resume');
    assert.equal(s.reloads, before.reloads, 'the history was reloaded although the resume lost nothing');
    assert.equal(s.status, 'resumed');
    assert.equal(s.statusText, 'resumed — nothing lost');
    assert.equal(s.lastResumed.recovered, true, JSON.stringify(s.lastResumed));
    assert.equal(s.lastResumed.sessionLost, false);
    assert.equal(s.lastResumed.streams[`g:room:${room}`]?.recovered, true, JSON.stringify(s.lastResumed));
    // Through nginx (the page's own url), onto a node that is alive and not the stopped one.
    const now = await nodeOf(listener.page);
    assert.notEqual(now, victim.id, `${listenerName}'s session is still on the stopped node`);
    assert.ok(!killed.has(now), `${listenerName} is on ${now}, which was stopped`);
    assert.ok(alive(cluster.nodes.find((n) => n.id === now).pid));
    const events = await listener.page.evaluate(() => window.__events);
    const names = events.map((e) => e.name);
    assert.equal(names[0], 'close', JSON.stringify(events));
    // SIGTERM: the node closed its clients with 1001 (going away) before it went; kill -9: the
    // connection just ended (nginx closes the page's side: 1006, or 1011 if it answered first).
    if (signal === 'SIGTERM') assert.equal(events[0].code, 1001, JSON.stringify(events[0]));
    else assert.notEqual(events[0].code, 1000, JSON.stringify(events[0]));
    assert.deepEqual(names.slice(-2), ['resumed', 'open'], JSON.stringify(events));
    const opened = events.at(-1);
    assert.equal(opened.resumed, true);
    assert.equal(opened.url, `ws://127.0.0.1:${cluster.port}/ws?name=${listenerName}`);
    // The poster's page never noticed: same node, no close.
    const posterEvents = await poster.page.evaluate(() => window.__events);
    assert.deepEqual(posterEvents.filter((e) => e.name !== 'open'), [], JSON.stringify(posterEvents));
    assert.equal(await nodeOf(poster.page), poster.node);
    assert.equal(a.status, 'connected');
    await shot(poster.page, `${shotPrefix}-3-${posterName}-after`);
    await shot(listener.page, `${shotPrefix}-4-${listenerName}-resumed-on-${now}`);

    // They talk again, in both directions, on the same stream.
    await postViaUi(listener.page, `${listenerName} is back`);
    for (const p of [poster, listener]) {
      await waitPage(p.page, p.name, 'the listener\'s new message', (d, n) => d.messages.length === n, total + 1);
      const x = await state(p.page);
      assert.deepEqual(x.messages.at(-1), { ...x.messages.at(-1), offset: total + 1, from: listenerName, text: `${listenerName} is back` });
    }
    return { victim, poster, listener, stoppedAt: t0 };
  }

  test('the script is up: nginx, Redis, three nodes, each listed with its --public-url', async () => {
    assert.equal(cluster.nodes.length, 3);
    for (const pid of [cluster.nginx.pid, cluster.redis.pid, ...cluster.nodes.map((n) => n.pid)]) assert.ok(alive(pid), `pid ${pid}`);
    assert.deepEqual(await liveNodes(), Object.fromEntries(cluster.nodes.map((n) => [n.id, `http://127.0.0.1:${n.port}`])));
    const h = await fetch(`${base}/api/health`);
    assert.equal(h.status, 200);
    assert.equal((await h.json()).up, true);
  });

  test('kill -9 of the listener\'s node: its page resumes on another node with nothing lost', async () => {
    const { victim, stoppedAt } = await round('SIGKILL', 'alice', 'bob', 'crash', '1', { hold: true });
    // The dead node leaves the registry (its heartbeat stops: at its deadline, node_ttl_ms).
    await until(async () => !(victim.id in await liveNodes()), `${victim.id} to leave GET /api/nodes`);
    console.log(`# ${victim.id} left /api/nodes by ${Date.now() - stoppedAt} ms after kill -9`);
    assert.deepEqual(Object.keys(await liveNodes()).sort(), cluster.nodes.map((n) => n.id).filter((id) => id !== victim.id).sort());
    assert.ok(script.proc.exitCode === null, 'the script ended when a node was killed');
  });

  test('SIGTERM of the listener\'s node: closed with 1001, its page resumes on another node with nothing lost', async () => {
    await round('SIGTERM', 'carol', 'dave', 'stop', '2');
    assert.ok(script.proc.exitCode === null, 'the script ended when a node was stopped');
    // The stopped node's log says it stopped, and why.
    const victim = cluster.nodes.find((n) => killed.has(n.id) && n.id !== [...killed][0]);
    const log = fs.readFileSync(path.join(cluster.tmp, `${victim.id}.log`), 'utf8');
    assert.match(log, /demo: stopping/);
  });
});
