// Helpers for the messaging tests: start any server binary that prints
// `listening on 127.0.0.1:PORT` (the hubtest fixture, examples/broadcast), and a small raw-socket
// client of the messaging protocol (docs/PROTOCOL.md) built on proto.mjs: it does the WebSocket
// handshake itself, parses the server's frames strictly, decodes every binary message (HELLO or
// envelope), answers pings and close frames, and can stop reading (pause) or vanish without a
// close frame (destroy), which the resume and slow-consumer tests need.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import fs from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { HOST, OP, acceptKey, buildFrame, parseClose, parseHttpHead, upgradeRequest } from './lib.mjs';
import { KIND, METHOD, decodeEnvelope, decodeHello, encodeEnvelope, encodeResume } from './proto.mjs';

export const HUBTEST_BIN = process.env.SB_HUBTEST || path.resolve(import.meta.dirname, '../../build/tests/hubtest');
export const BROADCAST_BIN = process.env.SB_BROADCAST || path.resolve(import.meta.dirname, '../../build/examples/broadcast');

const SANITIZER_RE = /ERROR: (Address|Leak|Undefined|Memory|Thread)Sanitizer|runtime error:|AddressSanitizer|LeakSanitizer/;

// ---------------------------------------------------------------------------------------------
// Server processes
// ---------------------------------------------------------------------------------------------

const live = new Set();
process.on('exit', () => {
  for (const p of live) {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* gone */ }
  }
});

/**
 * Starts `bin` with `args` (plus `--port 0`) and resolves once it printed
 * `listening on 127.0.0.1:PORT`. Returns { name, port, pid, alive(), stderr(), exitInfo(),
 * sanitizerReport(), stop() }. stop() sends SIGTERM to the PID (a graceful shutdown, so that
 * LeakSanitizer runs), then SIGKILL after `graceMs`; it resolves with
 * { code, signal, killed } where killed says SIGKILL was needed.
 */
export async function startServer(bin, args = [], { name = path.basename(bin), readyTimeoutMs = 15000 } = {}) {
  const argv = [...args.map(String), '--port', '0'];
  if (!fs.existsSync(bin)) throw new Error(`${name}: binary ${bin} does not exist (build it, or set SB_HUBTEST / SB_BROADCAST)`);
  const proc = spawn(bin, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  live.add(proc);
  let out = '';
  let err = '';
  let exitInfo = null;
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => { err += d; });
  const exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => { live.delete(proc); exitInfo = { code, signal }; resolve(exitInfo); });
  });
  const port = await new Promise((resolve, reject) => {
    const fail = (why) => {
      clearTimeout(timer);
      try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
      reject(new Error(`${name}: ${why}; ${bin} ${argv.join(' ')}; stdout=${JSON.stringify(out)} stderr=${JSON.stringify(err.slice(-3000))}`));
    };
    const timer = setTimeout(() => fail(`no "listening on" line within ${readyTimeoutMs} ms`), readyTimeoutMs);
    proc.once('error', (e) => fail(`cannot spawn: ${e.message}`));
    exited.then((x) => fail(`exited before listening: ${JSON.stringify(x)}`));
    proc.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      const m = /^listening on 127\.0\.0\.1:(\d+)$/.exec(out.slice(0, nl));
      if (!m) return fail(`unexpected first line ${JSON.stringify(out.slice(0, nl))}`);
      clearTimeout(timer);
      resolve(Number(m[1]));
    });
  });
  const alive = () => exitInfo === null;
  return {
    name,
    port,
    pid: proc.pid,
    args: argv,
    alive,
    exited,
    stderr: () => err,
    exitInfo: () => exitInfo,
    sanitizerReport() {
      const i = err.search(SANITIZER_RE);
      return i < 0 ? null : err.slice(Math.max(0, i - 300), i + 4000);
    },
    async stop(graceMs = 10000) {
      if (!alive()) return { ...exitInfo, killed: false };
      try { process.kill(proc.pid, 'SIGTERM'); } catch { /* gone */ }
      let timer;
      const t = new Promise((r) => { timer = setTimeout(() => r(null), graceMs); });
      const x = await Promise.race([exited, t]);
      clearTimeout(timer);
      if (x) return { ...x, killed: false };
      try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
      return { ...(await exited), killed: true };
    },
  };
}

// ---------------------------------------------------------------------------------------------
// The client
// ---------------------------------------------------------------------------------------------

const CHECK = Symbol('check');

/** Human-readable summary of a decoded message. */
/**
 * The servers a test file starts, and the end of them: `stopAll()` (for its after hook) stops
 * each (SIGTERM), runs `more` (stopping Redis, say) and throws if any server printed a
 * sanitizer report.
 */
export function servers() {
  const list = [];
  return {
    async start(bin, args, opts) {
      const n = await startServer(bin, args, opts);
      list.push(n);
      return n;
    },
    async stopAll(more) {
      const reports = [];
      for (const n of list) {
        await n.stop();
        const r = n.sanitizerReport();
        if (r) reports.push(`${n.name}: ${r}`);
      }
      await more?.();
      if (reports.length) throw new Error(`sanitizer report(s):\n${reports.join('\n---\n')}`);
    },
  };
}

export function show(m) {
  if (!m) return String(m);
  if (m.kind === KIND.HELLO) return `HELLO(id=${m.connId})`;
  const name = Object.keys(KIND).find((k) => KIND[k] === m.kind) ?? `kind${m.kind}`;
  const body = m.body.length <= 48 ? JSON.stringify(m.body.toString('latin1')) : `<${m.body.length} bytes>`;
  if (m.kind === KIND.PUSH) return `PUSH(${m.stream}#${m.offset}/${m.epoch} ${m.url} ${body})`;
  if (m.kind === KIND.RESPONSE || m.kind === KIND.ERROR) return `${name}(id=${m.id} status=${m.status} ${body})`;
  return `${name}(${body})`;
}

export class HubClient {
  constructor(sock, label = '') {
    this.sock = sock;
    this.label = label;
    this.buf = null;
    this.upgraded = false;
    this.head = null;
    this.frag = null;        // { opcode, parts } while a fragmented message is assembled
    this.inbox = [];         // decoded messages not consumed yet
    this.log = [];           // every decoded message, in arrival order
    this.pushCount = 0;
    this.textMessages = 0;
    this.closeFrame = null;  // { code, reason } of the server's close frame
    this.closeSent = false;
    this.ended = false;
    this.error = null;       // socket error
    this.problem = null;     // the server sent something invalid
    this.waiters = new Set();
    this.nextId = 1;
    this.onPush = null;      // optional hook: called with each PUSH, which is then not kept
    sock.setNoDelay(true);
    sock.on('data', (d) => this._data(d));
    const done = () => { this.ended = true; this._wake(); };
    sock.on('end', done);
    sock.on('close', done);
    sock.on('error', (e) => { this.error ??= e; done(); });
  }

  /** Connects, upgrades, and (unless hello:false) reads the HELLO into this.hello. */
  static async connect(port, { hello = true, label = '', timeoutMs = 10000, path: target = '/', extra = [], protocols } = {}) {
    const sock = await new Promise((resolve, reject) => {
      const s = net.connect({ port, host: HOST });
      s.once('error', reject);
      s.once('connect', () => { s.off('error', reject); resolve(s); });
    });
    const c = new HubClient(sock, label);
    const key = crypto.randomBytes(16).toString('base64');
    sock.write(upgradeRequest({ key, host: `${HOST}:${port}`, path: target, extra, protocols }));
    await c.waitFor(() => (c.head ? true : undefined), timeoutMs, 'the 101 response');
    if (c.head.status !== 101) { sock.destroy(); throw new Error(`handshake: ${c.head.statusLine}`); }
    if (c.head.header('sec-websocket-accept') !== acceptKey(key)) throw new Error('handshake: bad accept key');
    if (hello) {
      const m = await c.next(timeoutMs);
      if (m.kind !== KIND.HELLO) throw new Error(`the first message is not a HELLO but ${show(m)}`);
      c.hello = m;
    }
    return c;
  }

  get id() { return this.hello?.connId; }

  _data(d) {
    this.buf = this.buf && this.buf.length ? Buffer.concat([this.buf, d]) : d;
    if (!this.upgraded) {
      const i = this.buf.indexOf('\r\n\r\n');
      if (i < 0) return;
      this.head = parseHttpHead(this.buf.subarray(0, i));
      this.buf = this.buf.subarray(i + 4);
      this.upgraded = true;
    }
    let p = 0;
    const b = this.buf;
    while (!this.problem) {
      if (b.length - p < 2) break;
      const fin = (b[p] & 0x80) !== 0;
      const rsv = (b[p] >> 4) & 7;
      const opcode = b[p] & 0x0f;
      const masked = (b[p + 1] & 0x80) !== 0;
      let len = b[p + 1] & 0x7f;
      let hl = 2;
      if (len === 126) { if (b.length - p < 4) break; len = b.readUInt16BE(p + 2); hl = 4; } else if (len === 127) {
        if (b.length - p < 10) break;
        len = Number(b.readBigUInt64BE(p + 2));
        hl = 10;
      }
      if (b.length - p < hl + len) break;
      const payload = b.subarray(p + hl, p + hl + len);
      p += hl + len;
      if (masked || rsv) { this.problem = `server frame masked=${masked} rsv=${rsv}`; break; }
      this._frame(fin, opcode, payload);
    }
    this.buf = p < b.length ? Buffer.from(b.subarray(p)) : null;
    this._wake();
  }

  _frame(fin, opcode, payload) {
    if (opcode === OP.PING) { this._write(buildFrame({ opcode: OP.PONG, payload })); return; }
    if (opcode === OP.PONG) return;
    if (opcode === OP.CLOSE) {
      try { this.closeFrame = parseClose(Buffer.from(payload)); } catch (e) { this.problem = e.message; return; }
      if (!this.closeSent) {
        this.closeSent = true;
        const echo = this.closeFrame.code ? Buffer.from(payload.subarray(0, 2)) : Buffer.alloc(0);
        this._write(buildFrame({ opcode: OP.CLOSE, payload: echo }));
      }
      this.sock.end();
      return;
    }
    if (opcode === OP.CONT) {
      if (!this.frag) { this.problem = 'continuation without a message'; return; }
      this.frag.parts.push(Buffer.from(payload));
      if (!fin) return;
      const { opcode: op, parts } = this.frag;
      this.frag = null;
      this._message(op, Buffer.concat(parts));
      return;
    }
    if (opcode !== OP.TEXT && opcode !== OP.BINARY) { this.problem = `reserved opcode ${opcode}`; return; }
    if (this.frag) { this.problem = 'new message inside a fragmented one'; return; }
    if (!fin) { this.frag = { opcode, parts: [Buffer.from(payload)] }; return; }
    this._message(opcode, Buffer.from(payload));
  }

  _message(opcode, data) {
    if (opcode === OP.TEXT) { this.textMessages++; this.problem = `the server sent a text message ${JSON.stringify(data.toString().slice(0, 80))}`; return; }
    let m;
    try {
      m = data[0] === KIND.HELLO ? decodeHello(data) : decodeEnvelope(data);
    } catch (e) {
      this.problem = `undecodable message ${data.subarray(0, 64).toString('hex')}: ${e.message}`;
      return;
    }
    if (m.kind === KIND.HELLO) m.raw = data;
    if (m.kind === KIND.PUSH) {
      this.pushCount++;
      // With a hook, pushes go to the hook only (not kept): the flood tests receive megabytes.
      if (this.onPush) { this.onPush(m); return; }
    }
    this.log.push(m);
    this.inbox.push(m);
  }

  _wake() { for (const w of [...this.waiters]) w[CHECK](); }

  describe() {
    const last = this.log.slice(-6).map(show).join('; ');
    return `[${this.label || this.id || 'client'}: ${this.log.length} messages, last: ${last}; inbox ${this.inbox.length}` +
      `${this.closeFrame ? `; close frame ${this.closeFrame.code}` : ''}${this.ended ? '; ended' : ''}` +
      `${this.problem ? `; PROBLEM: ${this.problem}` : ''}]`;
  }

  /** Resolves with pred()'s first non-undefined value, re-checked whenever something arrives. */
  waitFor(pred, timeoutMs, what) {
    return new Promise((resolve, reject) => {
      const w = {};
      const timer = setTimeout(() => {
        this.waiters.delete(w);
        reject(new Error(`timeout after ${timeoutMs} ms waiting for ${what}; ${this.describe()}`));
      }, timeoutMs);
      w[CHECK] = () => {
        let v;
        try {
          if (this.problem) throw new Error(`invalid data from the server: ${this.problem}; ${this.describe()}`);
          v = pred();
        } catch (e) { clearTimeout(timer); this.waiters.delete(w); reject(e); return; }
        if (v !== undefined) { clearTimeout(timer); this.waiters.delete(w); resolve(v); }
      };
      this.waiters.add(w);
      w[CHECK]();
    });
  }

  /** The next message not consumed yet. */
  next(timeoutMs = 5000) {
    return this.waitFor(() => {
      if (this.inbox.length) return this.inbox.shift();
      if (this.ended || this.closeFrame) throw new Error(`connection closed while waiting for a message; ${this.describe()}`);
      return undefined;
    }, timeoutMs, 'a message');
  }

  /** The first unconsumed message that satisfies pred (removed from the inbox). */
  take(pred, timeoutMs = 5000, what = 'a matching message') {
    return this.waitFor(() => {
      const i = this.inbox.findIndex(pred);
      if (i >= 0) return this.inbox.splice(i, 1)[0];
      if (this.ended || this.closeFrame) throw new Error(`connection closed while waiting for ${what}; ${this.describe()}`);
      return undefined;
    }, timeoutMs, what);
  }

  _write(buf) {
    if (this.sock.destroyed || this.sock.writableEnded) return Promise.resolve(false);
    return new Promise((resolve) => this.sock.write(buf, (e) => resolve(!e)));
  }

  /** Sends one binary message (no await needed for ordering). */
  sendBinary(payload) { return this._write(buildFrame({ opcode: OP.BINARY, payload })); }
  sendText(payload) { return this._write(buildFrame({ opcode: OP.TEXT, payload })); }
  sendEnv(env) { return this.sendBinary(encodeEnvelope(env)); }

  /** Sends a REQUEST and resolves with its RESPONSE (or an ERROR about it). */
  async request(url, body = '', { method = METHOD.POST, timeoutMs = 10000 } = {}) {
    const id = this.nextId++;
    this.sendEnv({ kind: KIND.REQUEST, method, id, url, body });
    return this.take((m) => (m.kind === KIND.RESPONSE || m.kind === KIND.ERROR) && m.id === id, timeoutMs,
      `the response to request ${id} ${url}`);
  }

  /** A REQUEST that must be answered 200; resolves with the body as a string. */
  async ok(url, body = '', opts) {
    const r = await this.request(url, body, opts);
    if (r.kind !== KIND.RESPONSE || r.status !== 200) {
      throw new Error(`${url}: expected RESPONSE 200, got ${show(r)}; ${this.describe()}`);
    }
    return r.body.toString('utf8');
  }

  resume(token, positions = []) { return this.sendBinary(encodeResume(token, positions)); }

  /** Every PUSH received so far (consumed or not) on `stream`. */
  pushes(stream) { return this.log.filter((m) => m.kind === KIND.PUSH && m.stream === stream); }

  /** Waits until the server's close frame arrived (or the TCP connection ended). */
  waitClosed(timeoutMs = 5000) {
    return this.waitFor(() => (this.closeFrame || this.ended ? { frame: this.closeFrame, ended: this.ended } : undefined),
      timeoutMs, 'the server to close the connection');
  }

  /** Waits until the TCP connection is gone. */
  waitEnded(timeoutMs = 5000) {
    return this.waitFor(() => (this.ended ? true : undefined), timeoutMs, 'the TCP connection to end');
  }

  /** Starts the close handshake with a close frame of `code`. */
  close(code = 1000) {
    this.closeSent = true;
    const p = Buffer.alloc(2);
    p.writeUInt16BE(code);
    return this._write(buildFrame({ opcode: OP.CLOSE, payload: p }));
  }

  pause() { this.sock.pause(); }
  resumeReading() { this.sock.resume(); }
  /** Vanishes: no close frame, the socket is just destroyed. */
  destroy() { this.sock.destroy(); }
}
