// The demo (examples/demo) in a real browser: headless Chromium from Debian, driven by npm
// playwright-core. Two pages in two browser contexts (alice, bob) exchange messages; bob goes
// offline while alice keeps posting and, back online, shows exactly what he missed, in order,
// once each; the server is killed and restarted on the same port and both pages reconnect by
// themselves within the backoff bound, learn that the history was lost (a new session and
// epoch) and reload their state. Screenshots of each state go to SB_ARTIFACTS (build/...).
//
// Chromium's offline emulation (context.setOffline) does not reliably cut a WebSocket that is
// already open, so bob's page is loaded through a TCP proxy on loopback that forwards both its
// HTTP requests and its WebSocket to the demo: going offline is setOffline(true) (the page gets
// the 'offline' event) and the proxy destroying bob's sockets and refusing new ones.
//
// The page exposes its state as window.demo and its client as window.demoClient; the test
// reads those, the DOM, and the server's history over plain HTTP.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';

const ROOT = path.resolve(import.meta.dirname, '../..');
const DEMO_BIN = process.env.SB_DEMO || path.join(ROOT, 'build/examples/demo');
const CHROMIUM = process.env.SB_CHROMIUM || '/usr/bin/chromium';
const ARTIFACTS = process.env.SB_ARTIFACTS || path.join(ROOT, 'build/artifacts/browser');

// The page's reconnect options (examples/demo/public/app.js). The n-th consecutive failed
// attempt waits at most min(maxDelay, initialDelay × factor^(n-1)) ("full jitter").
const BACKOFF = { initialDelay: 500, factor: 2, maxDelay: 5000 };
const cap = (attempt) => Math.min(BACKOFF.maxDelay, BACKOFF.initialDelay * BACKOFF.factor ** (attempt - 1));
// What a slow shared machine may add to a reconnect on top of the backoff: the attempt itself
// (TCP, upgrade, HELLO, RESUME/RESUMED) and the page's reload requests.
const SLACK_MS = 3000;
// Generous waits for conditions (they end as soon as the condition holds).
const WAIT_MS = 20000;
const MISSED = 20;

// ---------------------------------------------------------------------------------------------
// The demo server
// ---------------------------------------------------------------------------------------------

const procs = new Set();
process.on('exit', () => {
  for (const p of procs) {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
  }
});

/**
 * Starts the demo on `port` (0: any) and resolves once it printed "listening on
 * 127.0.0.1:PORT". Rejects with its output if it exits first or says nothing in time.
 */
function startDemoOnce(port) {
  const argv = ['--host', '127.0.0.1', '--port', String(port)];
  const proc = spawn(DEMO_BIN, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  procs.add(proc);
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => { procs.delete(proc); resolve({ code, signal }); });
  });
  return new Promise((resolve, reject) => {
    const fail = (why) => {
      clearTimeout(timer);
      try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
      reject(new Error(`demo: ${why}; ${DEMO_BIN} ${argv.join(' ')}; stdout=${JSON.stringify(out)} stderr=${JSON.stringify(err)}`));
    };
    const timer = setTimeout(() => fail('no "listening on" line within 15 s'), 15000);
    proc.once('error', (e) => fail(`cannot spawn: ${e.message}`));
    exited.then((x) => fail(`exited before listening: ${JSON.stringify(x)}`));
    proc.stdout.on('data', (d) => {
      out += d;
      const m = /^listening on 127\.0\.0\.1:(\d+)$/m.exec(out);
      if (!m) return;
      clearTimeout(timer);
      resolve({ port: Number(m[1]), pid: proc.pid, exited, stderr: () => err, readyAt: Date.now() });
    });
  });
}

/** Starts the demo; on a fixed port, retries a few times (the port may still be held briefly). */
async function startDemo(port = 0) {
  for (let i = 1; ; i++) {
    try {
      return await startDemoOnce(port);
    } catch (e) {
      if (port === 0 || i === 10) throw e;
      await sleep(200 * i);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// A TCP proxy on loopback, in front of the demo for bob's page (HTTP and WebSocket)
// ---------------------------------------------------------------------------------------------

class Proxy {
  constructor(target) {
    this.target = target;
    this.refusing = false;
    this.pairs = new Set();
    this.accepted = 0;
    this.refused = 0;
    this.server = net.createServer((a) => {
      if (this.refusing) { this.refused++; a.destroy(); return; }
      this.accepted++;
      const b = net.connect({ port: this.target, host: '127.0.0.1' });
      const pair = { a, b };
      this.pairs.add(pair);
      const end = () => { a.destroy(); b.destroy(); this.pairs.delete(pair); };
      a.pipe(b);
      b.pipe(a);
      for (const s of [a, b]) { s.on('error', end); s.on('close', end); }
    });
  }
  async listen() {
    await new Promise((r) => this.server.listen(0, '127.0.0.1', r));
    this.port = this.server.address().port;
    return this;
  }
  /** Every connection ends at once (both peers see the TCP connection go). */
  dropAll() { for (const p of [...this.pairs]) { p.a.destroy(); p.b.destroy(); this.pairs.delete(p); } }
  close() {
    this.dropAll();
    return new Promise((r) => this.server.close(r));
  }
}

// ---------------------------------------------------------------------------------------------
// Helpers
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
  clientState: window.demoClient?.state,
  statusText: document.getElementById('status').textContent,
  note: document.getElementById('note').textContent,
  dom: [...document.querySelectorAll('#messages li')].map((li) => ({ offset: Number(li.dataset.offset), from: li.querySelector('.from')?.textContent, text: li.childNodes[1]?.textContent })),
  domOnline: [...document.querySelectorAll('#online li')].map((li) => li.textContent),
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

/**
 * Records, inside the page, every change of the status pill and the client's events, with
 * Date.now() (the same clock as the test's: one machine).
 */
async function instrument(page) {
  await page.evaluate(() => {
    window.__statusLog = [];
    window.__events = [];
    window.__marker = Math.random(); // gone if the page were reloaded
    const el = document.getElementById('status');
    let last = null;
    const note = () => {
      if (el.className === last) return;
      last = el.className;
      window.__statusLog.push({ status: el.className.replace('status ', ''), text: el.textContent, at: Date.now() });
    };
    note();
    new MutationObserver(note).observe(el, { attributes: true, childList: true, characterData: true, subtree: true });
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

/** The room's history as the server has it, over plain HTTP. */
async function history(port, room = 'lobby') {
  const r = await fetch(`http://127.0.0.1:${port}/api/rooms/${room}/messages`);
  assert.equal(r.status, 200);
  return r.json();
}

/** Offsets 1..n in order, the DOM showing the same list as window.demo.messages. */
function assertListConsistent(s, label) {
  const offsets = s.messages.map((m) => m.offset);
  const expected = offsets.length ? Array.from({ length: offsets.length }, (_, i) => offsets[0] + i) : [];
  assert.deepEqual(offsets, expected, `${label}: offsets are not contiguous`);
  assert.deepEqual(s.dom, s.messages.map((m) => ({ offset: m.offset, from: m.from, text: m.text })), `${label}: the DOM list differs from window.demo.messages`);
}

// ---------------------------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------------------------

describe('the demo in Chromium', () => {
  let chromium;
  let browser;
  let demo;
  let proxy;
  const ctx = {};
  const page = {};
  const marker = {};

  before(async () => {
    // A missing browser or driver is a failure with a clear message, never a skip.
    if (!fs.existsSync(CHROMIUM)) {
      throw new Error(`Chromium not found at ${CHROMIUM}: install the Debian package "chromium" (scripts/setup.sh does) or set SB_CHROMIUM`);
    }
    try {
      ({ chromium } = await import('playwright-core'));
    } catch (e) {
      throw new Error(`npm playwright-core is missing: run "npm ci" at the repository root (${e.message})`);
    }
    if (!fs.existsSync(DEMO_BIN)) throw new Error(`the demo binary ${DEMO_BIN} does not exist: build it, or set SB_DEMO`);
    fs.mkdirSync(ARTIFACTS, { recursive: true });
    for (const f of fs.readdirSync(ARTIFACTS)) if (f.endsWith('.png')) fs.rmSync(path.join(ARTIFACTS, f));

    demo = await startDemo(0);
    proxy = await new Proxy(demo.port).listen();
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'],
    });
    for (const name of ['alice', 'bob']) {
      ctx[name] = await browser.newContext({ viewport: { width: 1000, height: 700 } });
      page[name] = await ctx[name].newPage();
      page[name].on('pageerror', (e) => console.log(`# ${name}: page error: ${e.message}`));
      page[name].on('console', (m) => { if (m.type() === 'error') console.log(`# ${name}: console: ${m.text()}`); });
    }
  });

  after(async () => {
    await browser?.close();
    await proxy?.close();
    for (const p of [...procs]) { try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ } }
    if (shots.length) console.log(`# screenshots:\n${shots.map((f) => `#   ${f}`).join('\n')}`);
  });

  test('both pages connect: alice directly, bob through the proxy', async () => {
    await page.alice.goto(`http://127.0.0.1:${demo.port}/?name=alice`);
    await page.bob.goto(`http://127.0.0.1:${proxy.port}/?name=bob`);
    for (const name of ['alice', 'bob']) {
      await waitPage(page[name], name, 'status connected, in #lobby, both online',
        (d) => d.status === 'connected' && d.reloads === 1 && d.stream === 'g:room:lobby' &&
          JSON.stringify([...d.online].sort()) === '["alice","bob"]');
      marker[name] = await instrument(page[name]);
      const s = await state(page[name]);
      assert.equal(s.name, name);
      assert.equal(s.statusText, 'connected');
      assert.deepEqual(s.messages, []);
      assert.deepEqual([...s.domOnline].sort(), name === 'alice' ? ['alice (you)', 'bob'] : ['alice', 'bob (you)']);
    }
    assert.ok(proxy.accepted >= 1, 'bob\'s page did not go through the proxy');
  });

  test('alice and bob exchange messages through the page', async () => {
    await postViaUi(page.alice, 'hello bob, from alice');
    for (const name of ['alice', 'bob']) {
      await waitPage(page[name], name, 'alice\'s message', (d) => d.messages.length === 1);
    }
    await postViaUi(page.bob, 'hi alice — bob here');
    for (const name of ['alice', 'bob']) {
      await waitPage(page[name], name, 'bob\'s message', (d) => d.messages.length === 2);
      const s = await state(page[name]);
      assert.deepEqual(s.messages.map((m) => [m.offset, m.from, m.text]), [
        [1, 'alice', 'hello bob, from alice'],
        [2, 'bob', 'hi alice — bob here'],
      ]);
      assertListConsistent(s, name);
    }
    const h = await history(demo.port);
    assert.deepEqual(h.messages.map((m) => [m.from, m.text]), [['alice', 'hello bob, from alice'], ['bob', 'hi alice — bob here']]);
    assert.equal(h.offset, 2);
    await shot(page.alice, '01-alice-connected');
    await shot(page.bob, '02-bob-connected');
  });

  test(`bob goes offline, alice posts ${MISSED}, bob comes back with exactly those, in order`, async () => {
    const before = await state(page.bob);
    await page.bob.evaluate(() => { window.__statusLog.length = 0; window.__events.length = 0; });

    // Offline: the browser says so first (so the client knows not to retry), then the network
    // really goes: the proxy cuts bob's connections and refuses new ones.
    await ctx.bob.setOffline(true);
    await page.bob.waitForFunction(() => navigator.onLine === false, null, { timeout: WAIT_MS });
    proxy.refusing = true;
    proxy.dropAll();
    await waitPage(page.bob, 'bob', 'the page to see the connection go', (d) => d.status !== 'connected' && d.status !== 'resumed');
    await shot(page.bob, '03-bob-offline');

    const sent = [];
    for (let i = 1; i <= MISSED; i++) {
      const text = `while bob was away ${String(i).padStart(2, '0')}`;
      sent.push(text);
      if (i % 5 === 0) {
        await postViaUi(page.alice, text);
      } else {
        const r = await page.alice.evaluate((t) => window.demoClient.post('/api/rooms/lobby/messages', t).then((x) => x.status), text);
        assert.equal(r, 201);
      }
    }
    await waitPage(page.alice, 'alice', `her ${MISSED} messages`, (d, n) => d.messages.length === n, 2 + MISSED);
    const offline = await state(page.bob);
    assert.deepEqual(offline.messages, before.messages, 'bob\'s page changed while offline');
    assert.notEqual(offline.status, 'resumed');
    assert.equal(offline.clientState, 'offline', 'while the browser is offline the client waits for it (no reconnect attempts)');
    assert.equal(offline.status, 'offline');
    assert.equal(offline.statusText, 'offline — waiting for the network');
    await shot(page.alice, '04-alice-posted-while-bob-offline');
    await shot(page.bob, '05-bob-still-offline');

    // Online again: the network first, then the browser's 'online' event.
    const refusedWhileOffline = proxy.refused;
    proxy.refusing = false;
    await ctx.bob.setOffline(false);
    await waitPage(page.bob, 'bob', `status resumed with all ${2 + MISSED} messages`,
      (d, n) => d.status === 'resumed' && d.messages.length === n, 2 + MISSED);
    // Nothing more arrives (no duplicate pushed late).
    await sleep(500);
    const s = await state(page.bob);
    const a = await state(page.alice);
    assert.deepEqual(s.messages.map((m) => m.text), [...before.messages.map((m) => m.text), ...sent]);
    assert.deepEqual(s.messages.map((m) => m.offset), Array.from({ length: 2 + MISSED }, (_, i) => i + 1));
    assert.deepEqual(s.messages, a.messages, 'bob and alice see different lists');
    assertListConsistent(s, 'bob');
    assert.equal(new Set(s.messages.map((m) => m.offset)).size, s.messages.length, 'a message shown twice');
    assert.equal(s.reloads, before.reloads, 'the history was reloaded although the resume lost nothing');
    assert.equal(s.lastResumed.recovered, true);
    assert.equal(s.lastResumed.sessionLost, false);
    assert.equal(s.lastResumed.streams['g:room:lobby'].recovered, true);
    assert.equal(s.statusText, 'resumed — nothing lost');
    assert.deepEqual([...s.online].sort(), ['alice', 'bob']);
    const h = await history(demo.port);
    assert.deepEqual(h.messages.map((m) => m.text), s.messages.map((m) => m.text));

    // The page went: offline (connection lost) → resumed, and the client did not try to
    // connect while the browser was offline.
    const log = await page.bob.evaluate(() => ({ status: window.__statusLog, events: window.__events }));
    const seq = log.status.map((x) => x.status);
    assert.equal(seq.at(-1), 'resumed');
    assert.ok(seq.includes('offline'), `no offline state in ${JSON.stringify(seq)}`);
    assert.ok(seq.indexOf('offline') < seq.lastIndexOf('resumed'));
    assert.ok(!seq.includes('reconnecting'), `a reconnect countdown while the browser was offline: ${JSON.stringify(log.status)}`);
    assert.equal(refusedWhileOffline, 0, 'the page tried to connect while the browser was offline');
    const names = log.events.map((e) => e.name);
    assert.deepEqual(names, ['close', 'resumed', 'open'], JSON.stringify(log.events));
    assert.equal(log.events[2].resumed, true);
    assert.equal(await page.bob.evaluate(() => window.__marker), marker.bob, 'bob\'s page was reloaded');
    await shot(page.bob, '06-bob-resumed');
  });

  test('the server is killed and restarted: both pages reconnect by themselves, reload, and talk again', async () => {
    const before = { alice: await state(page.alice), bob: await state(page.bob) };
    for (const name of ['alice', 'bob']) {
      await page[name].evaluate(() => { window.__statusLog.length = 0; window.__events.length = 0; });
    }
    const port = demo.port;
    const oldEpoch = before.alice.position.epoch;
    process.kill(demo.pid, 'SIGKILL');
    const gone = await demo.exited;
    assert.equal(gone.signal, 'SIGKILL');
    for (const name of ['alice', 'bob']) {
      await waitPage(page[name], name, 'status reconnecting', (d) => d.status === 'reconnecting');
    }
    // Let a few attempts fail, so that the backoff has grown.
    await waitPage(page.alice, 'alice', 'a third reconnect attempt', () => window.__events.some((e) => e.name === 'reconnecting' && e.attempt >= 3));
    await shot(page.alice, '07-alice-server-down');
    await shot(page.bob, '08-bob-server-down');

    demo = await startDemo(port);
    assert.equal(demo.port, port);
    const ready = demo.readyAt;
    for (const name of ['alice', 'bob']) {
      await waitPage(page[name], name, 'a reload after the lost session, both online',
        (d, r) => d.status === 'resumed' && d.reloads > r && d.lastResumed?.sessionLost === true && d.stream &&
          JSON.stringify([...d.online].sort()) === '["alice","bob"]',
        before[name].reloads, BACKOFF.maxDelay + SLACK_MS + WAIT_MS);
    }
    for (const name of ['alice', 'bob']) {
      const s = await state(page[name]);
      const { events } = await page[name].evaluate(() => ({ events: window.__events }));
      // Reconnected by itself (same page), within the backoff bound.
      assert.equal(await page[name].evaluate(() => window.__marker), marker[name], `${name}'s page was reloaded`);
      const tries = events.filter((e) => e.name === 'reconnecting');
      for (const t of tries) assert.ok(t.delay <= cap(t.attempt), `${name}: attempt ${t.attempt} waited ${t.delay} ms, more than ${cap(t.attempt)}`);
      const pending = tries.filter((t) => t.at <= ready).at(-1);
      assert.ok(pending, `${name}: no reconnect attempt scheduled before the restart: ${JSON.stringify(events)}`);
      const open = events.find((e) => e.name === 'open' && e.at >= ready);
      assert.ok(open, `${name}: no open after the restart: ${JSON.stringify(events)}`);
      // The attempt pending at the restart fires by its delay; if it raced the listen and
      // failed, the next one waits at most cap(attempt + 1).
      const bound = Math.max(pending.at + pending.delay - ready, 0) + cap(pending.attempt + 1) + SLACK_MS;
      const took = open.at - ready;
      console.log(`# ${name}: ${tries.length} attempts scheduled (delays ${tries.map((t) => t.delay).join(', ')} ms); back ${took} ms after the restart (bound ${bound} ms)`);
      assert.ok(took <= bound, `${name}: reconnected ${took} ms after the restart, bound ${bound} ms`);
      assert.ok(took <= BACKOFF.maxDelay + SLACK_MS, `${name}: ${took} ms > maxDelay + slack`);
      // Told that the history was lost, and reloaded it: the new server's (empty) history.
      const resumed = events.find((e) => e.name === 'resumed');
      assert.equal(resumed.sessionLost, true);
      assert.equal(resumed.recovered, false);
      assert.equal(resumed.streams['g:room:lobby']?.recovered, false, `${name}: ${JSON.stringify(resumed.streams)}`);
      assert.equal(s.statusText, 'reconnected — history reloaded');
      assert.match(s.note, /the server lost this session/);
      assert.equal(s.reloads, before[name].reloads + 1, `${name}: the history was loaded more than once`);
      assert.deepEqual(s.messages, []);
      assert.deepEqual(s.dom, []);
      assert.equal(s.position.offset, 0);
      assert.notEqual(s.position.epoch, oldEpoch, `${name}: the new server's room stream has the old epoch`);
      assert.deepEqual([...s.online].sort(), ['alice', 'bob']);
      assert.deepEqual([...s.domOnline].sort(), name === 'alice' ? ['alice (you)', 'bob'] : ['alice', 'bob (you)']);
    }
    const h = await history(port);
    assert.deepEqual(h.messages, []);
    await shot(page.alice, '09-alice-reloaded-after-restart');
    await shot(page.bob, '10-bob-reloaded-after-restart');

    // They talk again, on the new epoch.
    await postViaUi(page.alice, 'anyone still here?');
    await postViaUi(page.bob, 'yes — the server came back');
    for (const name of ['alice', 'bob']) {
      await waitPage(page[name], name, 'both new messages', (d) => d.messages.length === 2);
      await sleep(300);
      const s = await state(page[name]);
      assert.deepEqual(s.messages.map((m) => [m.offset, m.from, m.text]), [
        [1, 'alice', 'anyone still here?'],
        [2, 'bob', 'yes — the server came back'],
      ]);
      assertListConsistent(s, name);
      assert.equal(s.status, 'resumed');
    }
    await shot(page.alice, '11-alice-talking-after-restart');
    await shot(page.bob, '12-bob-talking-after-restart');
  });

  test('the demo stops on SIGINT with exit code 0', async () => {
    process.kill(demo.pid, 'SIGINT');
    let timer;
    const x = await Promise.race([demo.exited, new Promise((r) => { timer = setTimeout(() => r(null), 15000); })]);
    clearTimeout(timer);
    assert.ok(x, `the demo did not exit within 15 s of SIGINT; stderr=${demo.stderr()}`);
    assert.deepEqual(x, { code: 0, signal: null }, `stderr=${demo.stderr()}`);
    for (const name of ['alice', 'bob']) {
      await waitPage(page[name], name, 'the page to notice', (d) => d.status === 'reconnecting' || d.status === 'offline');
    }
  });
});
