// A real redis-server for the integration tests: a free loopback port, a temporary directory,
// stopped by PID. A missing redis-server fails the test with a message (scripts/setup.sh test
// installs it). Plus a minimal RESP client for the tests' own checks (PUBSUB NUMSUB, KEYS...).
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

export const REDIS_BIN = process.env.SB_REDIS_SERVER || '/usr/bin/redis-server';

function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

/** One command over a fresh connection; resolves with the parsed reply. */
export function redisCommand(port, ...args) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1' });
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => { sock.destroy(); reject(new Error(`redis ${args[0]}: timeout`)); }, 3000);
    sock.on('error', (e) => { clearTimeout(timer); reject(e); });
    sock.on('connect', () => {
      const parts = [`*${args.length}\r\n`];
      for (const a of args) { const b = Buffer.from(String(a)); parts.push(`$${b.length}\r\n`, b, '\r\n'); }
      sock.write(Buffer.concat(parts.map((p) => (Buffer.isBuffer(p) ? p : Buffer.from(p)))));
    });
    sock.on('data', (d) => {
      buf = Buffer.concat([buf, d]);
      const r = parse(buf, 0);
      if (r) { clearTimeout(timer); sock.destroy(); resolve(r.value); }
    });
  });
}

function parse(b, p) {
  const nl = b.indexOf('\r\n', p);
  if (nl < 0) return null;
  const line = b.toString('utf8', p + 1, nl), t = String.fromCharCode(b[p]);
  if (t === '+') return { value: line, next: nl + 2 };
  if (t === '-') return { value: new Error(line), next: nl + 2 };
  if (t === ':') return { value: Number(line), next: nl + 2 };
  if (t === '$') {
    const n = Number(line);
    if (n < 0) return { value: null, next: nl + 2 };
    if (b.length < nl + 2 + n + 2) return null;
    return { value: b.toString('utf8', nl + 2, nl + 2 + n), next: nl + 2 + n + 2 };
  }
  if (t === '*') {
    const n = Number(line);
    if (n < 0) return { value: null, next: nl + 2 };
    const out = [];
    let q = nl + 2;
    for (let i = 0; i < n; i++) { const r = parse(b, q); if (!r) return null; out.push(r.value); q = r.next; }
    return { value: out, next: q };
  }
  throw new Error(`bad RESP type ${t}`);
}

/**
 * Starts redis-server; resolves with { port, url, dir, pid, stop(), kill(sig), restart(), save() }.
 * It never saves by itself (--save ""). With { rdb: true } an explicit save() writes
 * dir/dump.rdb, and restart() starts the new server from it (the data as of that SAVE: an RDB
 * behind the data); without it restart() removes any dump first, so that Redis comes back empty.
 */
export async function startRedis({ rdb = false } = {}) {
  if (!fs.existsSync(REDIS_BIN)) throw new Error(`redis-server is missing (${REDIS_BIN}): run scripts/setup.sh test`);
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-redis-'));
  const port = await freePort();
  let proc, exited, err;
  async function launch() {
    if (!rdb) fs.rmSync(path.join(dir, 'dump.rdb'), { force: true });
    proc = spawn(REDIS_BIN, ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no',
      '--dir', dir, '--dbfilename', 'dump.rdb'], { stdio: ['ignore', 'ignore', 'pipe'] });
    err = '';
    exited = false;
    proc.stderr.on('data', (d) => { err += d; });
    proc.once('exit', () => { exited = true; });
    for (let i = 0; i < 300; i++) {
      if (exited) throw new Error(`redis-server exited: ${err}`);
      try { if ((await redisCommand(port, 'PING')) === 'PONG') return; } catch { /* not yet */ }
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error('redis-server does not answer PING');
  }
  async function kill9() {
    if (exited) return;
    try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
    await new Promise((r) => (exited ? r() : proc.once('exit', r)));
  }
  await launch();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    dir,
    get pid() { return proc.pid; },
    kill(sig) { try { process.kill(proc.pid, sig); } catch { /* gone */ } },
    /** SIGKILL, then a new redis-server on the same port and directory: empty, or with { rdb: true }
     * loaded from the last save(). Either way a new run_id. */
    async restart(downMs = 0) {
      await kill9();
      if (downMs) await new Promise((r) => setTimeout(r, downMs));
      await launch();
    },
    /** SAVE: the data as of now goes to dir/dump.rdb (only with { rdb: true }). */
    async save() {
      if (!rdb) throw new Error('save() needs startRedis({ rdb: true })');
      const r = await redisCommand(port, 'SAVE');
      if (r !== 'OK') throw new Error(`SAVE: ${r}`);
      if (!fs.existsSync(path.join(dir, 'dump.rdb'))) throw new Error('SAVE wrote no dump.rdb');
    },
    async stop() {
      await kill9();
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}
