// Graceful drain (sb_server_shutdown, SIGTERM in hubtest and the examples): listening stops,
// the open WebSocket connections are closed with 1001 a share at a time over
// shutdown_spread_ms instead of all at once, and with the redis engine their sessions are
// released in Redis at once, so a client resumes on another node however late its own close
// comes. Times are asserted only as generous bounds around the spread.
import { test, after } from 'node:test';
import assert from 'node:assert/strict';
import net from 'node:net';

import { HUBTEST_BIN, HubClient, servers } from './hub.mjs';
import { KIND } from './proto.mjs';
import { sleep } from './lib.mjs';
import { startRedis, redisCommand } from './redis.mjs';

const running = servers();
let redis;
after(() => running.stopAll(() => redis?.stop()));

async function start(name, args) {
  return running.start(HUBTEST_BIN, args, { name });
}

// Connects n clients; resolves with them, each recording when its close frame came.
async function clients(n, port, label) {
  const out = [];
  for (let i = 0; i < n; i++) {
    const c = await HubClient.connect(port, { label: `${label}${i}` });
    c.waitFor(() => (c.closeFrame ? true : undefined), 60000, 'close').then(() => { c.closedAt = Date.now(); }, () => {});
    out.push(c);
  }
  return out;
}

test('SIGTERM closes the clients with 1001 spread over the window, not all at once', async () => {
  const S = await start('drain', ['--shutdown-spread-ms', '1500']);
  const cs = await clients(40, S.port, 'c');
  const t0 = Date.now();
  process.kill(S.pid, 'SIGTERM');
  // Listening stops at once.
  await sleep(100);
  await assert.rejects(new Promise((resolve, reject) => {
    const s = net.connect({ port: S.port, host: '127.0.0.1' });
    s.once('connect', () => { s.destroy(); resolve(); });
    s.once('error', reject);
  }), /ECONNREFUSED/);
  const exit = await S.exited;
  assert.equal(exit.code, 0, JSON.stringify(exit));
  for (const c of cs) {
    assert.equal(c.closeFrame?.code, 1001, `${c.label}: ${JSON.stringify(c.closeFrame)}`);
  }
  const at = cs.map((c) => c.closedAt - t0).sort((a, b) => a - b);
  assert.ok(at[0] < 600, `the first close came after ${at[0]} ms`);
  assert.ok(at.at(-1) - at[0] >= 800, `spread over ${at.at(-1) - at[0]} ms (window 1500)`);
  assert.ok(at.at(-1) < 5000, `the last close came after ${at.at(-1)} ms`);
  // About evenly: by half the window, neither none nor all.
  const byHalf = at.filter((x) => x <= 750).length;
  assert.ok(byHalf > 5 && byHalf < 35, `${byHalf} of 40 closed in the first half`);
  for (const c of cs) c.destroy();
});

test('with the redis engine the sessions are released at once: a client resumes elsewhere before its own close', async () => {
  redis = await startRedis();
  const A = await start('drain-a', ['--redis', redis.url, '--node-id', 'drain-a', '--shutdown-spread-ms', '4000']);
  const B = await start('drain-b', ['--redis', redis.url, '--node-id', 'drain-b']);
  const g = `drain-${Date.now()}`, stream = `g:${g}`;
  const cs = await clients(10, A.port, 'a');
  for (const c of cs) await c.ok(`/join/${g}`);
  const p = await HubClient.connect(B.port, { label: 'p' });
  await p.ok(`/publish/${g}`, 'before');
  for (const c of cs) await c.take((m) => m.kind === KIND.PUSH && m.stream === stream, 5000, 'before');
  process.kill(A.pid, 'SIGTERM');
  await sleep(300);
  const open = cs.filter((c) => !c.closeFrame);
  assert.ok(open.length >= 5, `most are still open 300 ms into a 4 s window (${open.length})`);
  const states = await Promise.all(cs.map((c) => redisCommand(redis.port, 'HGET', `sb:{s:${c.id}}`, 'c')));
  assert.ok(states.every((x) => x !== '0' && x !== null), `every session closed in Redis: ${states}`);
  // One still connected to A resumes on B now; A then closes its old connection quietly.
  const x = open[0];
  const last = x.log.filter((m) => m.kind === KIND.PUSH && m.stream === stream).at(-1);
  await p.ok(`/publish/${g}`, 'during'); // A still delivers to x meanwhile; y must get it too
  const y = await HubClient.connect(B.port, { label: 'y' });
  y.resume(x.hello.token, [{ stream, offset: last.offset, epoch: last.epoch }]);
  const done = await y.take((m) => m.kind === KIND.RESUMED || m.kind === KIND.ERROR, 8000, 'RESUMED');
  assert.equal(done.kind, KIND.RESUMED, `${done.status} ${done.body}`);
  await y.take((m) => m.kind === KIND.PUSH && m.body.toString() === 'during', 5000, 'during on y');
  const exit = await A.exited;
  assert.equal(exit.code, 0);
  assert.deepEqual(await redisCommand(redis.port, 'HMGET', `sb:{s:${x.id}}`, 'n', 'c'), ['drain-b', '0'],
    'held by B, open: A\'s late close did not touch it');
  for (const c of [...cs, p, y]) c.destroy();
});
