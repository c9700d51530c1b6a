// Shared helpers of the integration tests: start/stop the echo example, a raw-socket WebSocket
// client that can send anything (masked or not, chopped, with any RSV bits or opcode) and that
// parses the server's frames incrementally and strictly, raw HTTP exchanges, and a small
// message queue around npm `ws` clients.
import { spawn } from 'node:child_process';
import crypto from 'node:crypto';
import net from 'node:net';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import WebSocket from 'ws';

export { sleep, WebSocket };

export const ECHO_BIN = process.env.SB_ECHO || path.resolve(import.meta.dirname, '../../build/examples/echo');
export const HOST = '127.0.0.1';
export const WS_GUID = '258EAFA5-E914-47DA-95CA-C5AB0DC85B11';

export const OP = { CONT: 0x0, TEXT: 0x1, BINARY: 0x2, CLOSE: 0x8, PING: 0x9, PONG: 0xa };
const OP_NAMES = { 0: 'CONT', 1: 'TEXT', 2: 'BINARY', 8: 'CLOSE', 9: 'PING', 10: 'PONG' };
export const opName = (op) => OP_NAMES[op] ?? `0x${op.toString(16)}`;

// ---------------------------------------------------------------------------------------------
// The echo server process
// ---------------------------------------------------------------------------------------------

const liveProcs = new Set();
// Last resort: never leave a server behind, even if a test file crashes before its after hook.
process.on('exit', () => {
  for (const p of liveProcs) {
    try { process.kill(p.pid, 'SIGKILL'); } catch { /* already gone */ }
  }
});

/** Stops every server in `servers` and fails if any of them printed a sanitizer report. */
export async function stopAll(servers) {
  await Promise.all(servers.map((s) => s?.stop()));
  const reports = servers.filter(Boolean).map((s) => s.sanitizerReport()).filter(Boolean);
  if (reports.length) throw new Error(`sanitizer report(s) from the echo server:\n${reports.join('\n----\n')}`);
}

/**
 * Starts the echo example with `args` (port 0 unless given) and resolves once it printed its
 * `listening on 127.0.0.1:PORT` line. Returns
 *   { port, proc, stdout(), stderr(), exited, alive(), stop(), terminate(signal, timeoutMs) }
 * stop() kills it by PID (SIGKILL) and is a no-op if it already exited.
 */
export async function startEcho(args = [], { readyTimeoutMs = 10000 } = {}) {
  const argv = args.map(String);
  if (!argv.includes('--port')) argv.push('--port', '0');
  const proc = spawn(ECHO_BIN, argv, { stdio: ['ignore', 'pipe', 'pipe'] });
  liveProcs.add(proc);
  let out = '';
  let err = '';
  proc.stdout.setEncoding('utf8');
  proc.stderr.setEncoding('utf8');
  proc.stderr.on('data', (d) => { err += d; });
  let exitInfo = null;
  const exited = new Promise((resolve) => {
    proc.once('exit', (code, signal) => {
      liveProcs.delete(proc);
      exitInfo = { code, signal };
      resolve(exitInfo);
    });
  });
  const port = await new Promise((resolve, reject) => {
    const fail = (msg) => {
      clearTimeout(timer);
      reject(new Error(`${msg}; binary=${ECHO_BIN} args=${JSON.stringify(argv)} ` +
        `stdout=${JSON.stringify(out)} stderr=${JSON.stringify(err.slice(-2000))}`));
    };
    const timer = setTimeout(() => {
      fail(`echo did not print "listening on 127.0.0.1:PORT" within ${readyTimeoutMs} ms ` +
        '(is stdout flushed when it is a pipe?)');
      try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
    }, readyTimeoutMs);
    proc.once('error', (e) => fail(`cannot spawn echo: ${e.message}`));
    exited.then(({ code, signal }) => fail(`echo exited (code ${code}, signal ${signal}) before listening`));
    proc.stdout.on('data', (d) => {
      out += d;
      const nl = out.indexOf('\n');
      if (nl < 0) return;
      const line = out.slice(0, nl);
      const m = /^listening on 127\.0\.0\.1:(\d+)$/.exec(line);
      if (!m) return fail(`first stdout line is not "listening on 127.0.0.1:PORT": ${JSON.stringify(line)}`);
      const p = Number(m[1]);
      if (!(p > 0 && p < 65536)) return fail(`bad port in ${JSON.stringify(line)}`);
      clearTimeout(timer);
      resolve(p);
    });
  });
  const alive = () => exitInfo === null;
  return {
    port,
    proc,
    exited,
    alive,
    stdout: () => out,
    stderr: () => err,
    /** The sanitizer (ASan/UBSan/LSan) report on stderr, or null if there is none. */
    sanitizerReport: () => {
      const i = err.search(/ERROR: (Address|Leak|Undefined)Sanitizer|runtime error:|AddressSanitizer/);
      return i < 0 ? null : err.slice(Math.max(0, i - 200), i + 3000);
    },
    async stop() {
      if (!alive()) return exitInfo;
      try { process.kill(proc.pid, 'SIGKILL'); } catch { /* gone */ }
      return exited;
    },
    async terminate(signal = 'SIGTERM', timeoutMs = 10000) {
      if (!alive()) return exitInfo;
      process.kill(proc.pid, signal);
      return withTimeout(exited, timeoutMs, `echo to exit after ${signal}`);
    },
  };
}

/**
 * A server shared by the tests of a file that survives a crash: if the process died (during a
 * test, or found dead when the next one starts), check() fails the current test with its exit
 * status and stderr, and a fresh server is started so that one crash does not fail every test
 * after it. stop() fails if any of its processes printed a sanitizer report.
 */
export class EchoFixture {
  constructor(args = []) { this.args = args; this.server = null; this.dead = []; }
  async start() { this.server = await startEcho(this.args); return this; }
  get port() { return this.server.port; }
  alive() { return this.server.alive(); }
  stderr() { return this.server.stderr(); }
  async _replace() {
    const s = this.server;
    this.dead.push(s);
    const ex = await s.exited;
    await this.start();
    return `the echo server (${JSON.stringify(this.args)}) died: exit ${JSON.stringify(ex)}; ` +
      `stderr: ${s.sanitizerReport() ?? s.stderr().slice(-3000)}`;
  }
  /** For afterEach: fails the test if the server died, after starting a new one. */
  async check() {
    if (this.server.alive()) await Promise.race([this.server.exited, sleep(10)]); // a crash just now
    if (!this.server.alive()) throw new Error(await this._replace());
  }
  /** Runs connect(port); if the server is dead or refuses, restarts it once and retries. */
  async connect(connect) {
    if (!this.server.alive()) await this._replace();
    let c;
    try {
      c = await connect(this.server.port);
    } catch (e) {
      if (e.code !== 'ECONNREFUSED') throw e;
      await Promise.race([this.server.exited, sleep(1000)]);
      if (this.server.alive()) throw e;
      await this._replace();
      c = await connect(this.server.port);
    }
    if (c instanceof RawClient) c.server = this.server;
    return c;
  }
  async stop() { await stopAll([...this.dead, this.server]); }
}

export function withTimeout(promise, ms, what) {
  let timer;
  return Promise.race([
    promise,
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timeout after ${ms} ms waiting for ${what}`)), ms);
    }),
  ]).finally(() => clearTimeout(timer));
}

// ---------------------------------------------------------------------------------------------
// Building client frames
// ---------------------------------------------------------------------------------------------

export const toBuf = (p) => (p === undefined ? Buffer.alloc(0)
  : Buffer.isBuffer(p) ? p : typeof p === 'string' ? Buffer.from(p, 'utf8') : Buffer.from(p));

export function maskBytes(data, key, offset = 0) {
  const out = Buffer.allocUnsafe(data.length);
  for (let i = 0; i < data.length; i++) out[i] = data[i] ^ key[(i + offset) & 3];
  return out;
}

/**
 * The header of a frame. `len` is the length written in the header (defaults to the payload
 * length, may lie); `lenForm` forces the 7/16/64-bit length encoding; `len` may be a BigInt.
 */
export function frameHeader({ fin = true, rsv = 0, opcode, len, mask = true, maskKey, lenForm } = {}) {
  const n = BigInt(len);
  const form = lenForm ?? (n <= 125n ? 7 : n <= 0xffffn ? 16 : 64);
  const parts = [(fin ? 0x80 : 0) | ((rsv & 7) << 4) | (opcode & 0x0f)];
  const m = mask ? 0x80 : 0;
  let ext;
  if (form === 7) {
    parts.push(m | Number(n));
    ext = Buffer.alloc(0);
  } else if (form === 16) {
    parts.push(m | 126);
    ext = Buffer.alloc(2);
    ext.writeUInt16BE(Number(n));
  } else {
    parts.push(m | 127);
    ext = Buffer.alloc(8);
    ext.writeBigUInt64BE(n);
  }
  return Buffer.concat([Buffer.from(parts), ext, mask ? Buffer.from(maskKey) : Buffer.alloc(0)]);
}

/** A whole client frame (masked with a random key unless mask:false). */
export function buildFrame({ fin = true, rsv = 0, opcode, payload, mask = true, maskKey, len, lenForm } = {}) {
  const data = toBuf(payload);
  const key = maskKey ? Buffer.from(maskKey) : crypto.randomBytes(4);
  const hdr = frameHeader({ fin, rsv, opcode, len: len ?? data.length, mask, maskKey: key, lenForm });
  return Buffer.concat([hdr, mask ? maskBytes(data, key) : data]);
}

export function closePayload(code, reason = '') {
  if (code === undefined || code === null) return Buffer.alloc(0);
  const r = toBuf(reason);
  const b = Buffer.alloc(2 + r.length);
  b.writeUInt16BE(code);
  r.copy(b, 2);
  return b;
}

/** Splits `buf` into fragments of `size` bytes (at least one fragment, possibly empty). */
export function splitBuf(buf, size) {
  const out = [];
  for (let i = 0; i < buf.length; i += size) out.push(buf.subarray(i, i + size));
  if (out.length === 0) out.push(Buffer.alloc(0));
  return out;
}

/** The frames of one message split into fragments of `size` bytes (or at the given `cuts`). */
export function fragmentFrames(opcode, payload, { size, cuts, rsv = 0 } = {}) {
  const data = toBuf(payload);
  let pieces;
  if (cuts) {
    pieces = [];
    let prev = 0;
    for (const c of cuts) { pieces.push(data.subarray(prev, c)); prev = c; }
    pieces.push(data.subarray(prev));
  } else {
    pieces = splitBuf(data, size);
  }
  return pieces.map((p, i) => buildFrame({
    fin: i === pieces.length - 1, rsv, opcode: i === 0 ? opcode : OP.CONT, payload: p,
  }));
}

// A payload of `n` bytes: ASCII text (valid UTF-8) or a binary pattern with every byte value.
export function textPayload(n, seed = 0) {
  const alphabet = Buffer.from('BAsd7&jh23*Hello-World:0123456789abcdefghijklmnopqrstuvwxyz');
  const b = Buffer.allocUnsafe(n);
  for (let i = 0; i < n; i++) b[i] = alphabet[(i * 7 + seed + (i >> 8)) % alphabet.length];
  return b;
}
export function binaryPayload(n, seed = 0) {
  const b = Buffer.allocUnsafe(n);
  let x = (seed * 2654435761 + 12345) >>> 0;
  for (let i = 0; i < n; i++) {
    x = (Math.imul(x, 1103515245) + 12345) >>> 0;
    b[i] = x >>> 24;
  }
  return b;
}

// ---------------------------------------------------------------------------------------------
// Incoming bytes
// ---------------------------------------------------------------------------------------------

class ByteQueue {
  constructor() { this.chunks = []; this.length = 0; }
  push(b) { if (b.length) { this.chunks.push(b); this.length += b.length; } }
  /** The first n bytes (n <= length), without consuming them. */
  peek(n) {
    if (n === 0) return Buffer.alloc(0);
    if (this.chunks[0].length >= n) return this.chunks[0].subarray(0, n);
    let have = 0;
    let k = 0;
    while (have < n) have += this.chunks[k++].length;
    const merged = Buffer.concat(this.chunks.slice(0, k));
    this.chunks.splice(0, k, merged);
    return merged.subarray(0, n);
  }
  take(n) {
    if (n === 0) return Buffer.alloc(0);
    const b = this.peek(n);
    const first = this.chunks[0];
    if (first.length === n) this.chunks.shift();
    else this.chunks[0] = first.subarray(n);
    this.length -= n;
    return b;
  }
  all() { return this.length ? this.peek(this.length) : Buffer.alloc(0); }
}

export function parseHttpHead(head) {
  const lines = head.toString('latin1').split('\r\n');
  const statusLine = lines[0];
  const m = /^HTTP\/(\d\.\d) (\d{3})(?: (.*))?$/.exec(statusLine);
  const headers = {};
  for (const line of lines.slice(1)) {
    if (!line) continue;
    const i = line.indexOf(':');
    const name = (i < 0 ? line : line.slice(0, i)).trim().toLowerCase();
    const value = i < 0 ? '' : line.slice(i + 1).trim();
    (headers[name] ??= []).push(value);
  }
  return {
    statusLine, httpVersion: m ? m[1] : null, status: m ? Number(m[2]) : null, reason: m ? m[3] ?? '' : null,
    headers, header: (name) => (headers[name.toLowerCase()] ?? [undefined])[0],
  };
}

export function acceptKey(key) {
  return crypto.createHash('sha1').update(key + WS_GUID).digest('base64');
}

export function upgradeRequest({
  path: target = '/', host = HOST, key = crypto.randomBytes(16).toString('base64'), version = '13',
  protocols, extra = [], method = 'GET', httpVersion = 'HTTP/1.1', omit = [],
} = {}) {
  const h = [
    ['Host', host], ['Upgrade', 'websocket'], ['Connection', 'Upgrade'],
    ['Sec-WebSocket-Key', key], ['Sec-WebSocket-Version', version],
  ].filter(([n]) => !omit.includes(n));
  if (protocols) h.push(['Sec-WebSocket-Protocol', protocols]);
  for (const e of extra) h.push(e);
  return Buffer.from(`${method} ${target} ${httpVersion}\r\n${h.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`, 'latin1');
}

// ---------------------------------------------------------------------------------------------
// The raw client
// ---------------------------------------------------------------------------------------------

const CLOSE_CODE_VALID = (c) => (c >= 1000 && c <= 1003) || (c >= 1007 && c <= 1014) || (c >= 3000 && c <= 4999);

export class RawClient {
  constructor(sock) {
    this.sock = sock;
    this.q = new ByteQueue();
    this.framing = false;
    this.frames = [];       // parsed, not yet consumed
    this.log = [];          // every frame received, for diagnostics
    this.ended = false;     // the server closed (FIN or RST) or the socket closed
    this.endedAt = null;
    this.error = null;
    this.protocolError = null; // the server sent something that is not a valid server frame
    this.waiters = new Set();
    this.t0 = Date.now();
    sock.setNoDelay(true);
    sock.on('data', (d) => { this.q.push(d); this._parse(); this._wake(); });
    const done = () => { if (!this.ended) { this.ended = true; this.endedAt = Date.now(); } this._wake(); };
    sock.on('end', done);
    sock.on('close', done);
    sock.on('error', (e) => { this.error ??= e; done(); });
  }

  /** A TCP connection only, no handshake. */
  static connect(port, host = HOST) {
    return new Promise((resolve, reject) => {
      const sock = net.connect({ port, host });
      const onErr = (e) => reject(e);
      sock.once('error', onErr);
      sock.once('connect', () => { sock.off('error', onErr); resolve(new RawClient(sock)); });
    });
  }

  /** Connects and completes a WebSocket handshake (asserting 101 and the accept key). */
  static async open(port, opts = {}) {
    const c = await RawClient.connect(port);
    await c.handshake(opts);
    return c;
  }

  async handshake(opts = {}) {
    const key = opts.key ?? crypto.randomBytes(16).toString('base64');
    const req = upgradeRequest({ ...opts, host: opts.host ?? `${HOST}:${this.sock.remotePort}`, key });
    this.write(opts.after ? Buffer.concat([req, opts.after]) : req);
    const res = await this.readHttpResponse(opts.timeoutMs ?? 3000);
    if (res.status !== 101) {
      throw new Error(`handshake: expected 101, got ${JSON.stringify(res.statusLine)}; headers=${JSON.stringify(res.headers)}`);
    }
    if (res.header('sec-websocket-accept') !== acceptKey(key)) {
      throw new Error(`handshake: bad Sec-WebSocket-Accept ${res.header('sec-websocket-accept')} for key ${key}`);
    }
    this.response = res;
    return res;
  }

  /** Waits for a complete HTTP response head; the bytes after it are then parsed as frames. */
  async readHttpResponse(timeoutMs = 3000) {
    const head = await this.waitFor(() => {
      const all = this.q.all();
      const i = all.indexOf('\r\n\r\n');
      if (i >= 0) return this.q.take(i + 4);
      if (this.ended) throw new Error(`connection ended before a full HTTP response; got ${JSON.stringify(all.toString('latin1'))}`);
      return undefined;
    }, timeoutMs, 'an HTTP response');
    const res = parseHttpHead(head.subarray(0, head.length - 4));
    this.framing = true;
    this._parse();
    return res;
  }

  write(buf) {
    if (this.sock.destroyed || this.sock.writableEnded) return Promise.resolve(false);
    return new Promise((resolve) => {
      this.sock.write(buf, (e) => resolve(!e));
    });
  }

  sendFrame(opts) { return this.write(buildFrame(opts)); }
  sendText(payload, opts = {}) { return this.sendFrame({ ...opts, opcode: OP.TEXT, payload }); }
  sendBinary(payload, opts = {}) { return this.sendFrame({ ...opts, opcode: OP.BINARY, payload }); }
  ping(payload, opts = {}) { return this.sendFrame({ ...opts, opcode: OP.PING, payload }); }
  pong(payload, opts = {}) { return this.sendFrame({ ...opts, opcode: OP.PONG, payload }); }
  sendClose(code, reason = '', opts = {}) { return this.sendFrame({ ...opts, opcode: OP.CLOSE, payload: closePayload(code, reason) }); }

  /** Writes `buf` in pieces of `chunk` bytes, each write flushed, with `delayMs` between them. */
  async sendChopped(buf, { chunk = 1, delayMs = 0 } = {}) {
    for (let i = 0; i < buf.length; i += chunk) {
      await this.write(buf.subarray(i, i + chunk));
      if (delayMs > 0) await sleep(delayMs);
      else await new Promise((r) => setImmediate(r));
    }
  }

  end() { this.sock.end(); }
  destroy() { this.sock.destroy(); }

  _wake() { for (const w of [...this.waiters]) w(); }

  _parse() {
    if (!this.framing || this.protocolError) return;
    const q = this.q;
    for (;;) {
      if (q.length < 2) return;
      const h2 = q.peek(2);
      const len7 = h2[1] & 0x7f;
      const masked = (h2[1] & 0x80) !== 0;
      const hdrLen = 2 + (len7 === 126 ? 2 : len7 === 127 ? 8 : 0) + (masked ? 4 : 0);
      if (q.length < hdrLen) return;
      const h = q.peek(hdrLen);
      let len = len7;
      let minimal = true;
      if (len7 === 126) { len = h.readUInt16BE(2); minimal = len > 125; }
      if (len7 === 127) {
        const big = h.readBigUInt64BE(2);
        if (big > BigInt(Number.MAX_SAFE_INTEGER)) {
          this.protocolError = `server frame with a 64-bit length ${big}`;
          return;
        }
        len = Number(big);
        minimal = len > 0xffff;
      }
      if (q.length < hdrLen + len) return;
      q.take(hdrLen);
      let payload = Buffer.from(q.take(len)); // own copy: the queue may reuse memory
      if (masked) payload = maskBytes(payload, h.subarray(hdrLen - 4, hdrLen));
      const f = {
        fin: (h[0] & 0x80) !== 0, rsv: (h[0] >> 4) & 7, opcode: h[0] & 0x0f, masked, minimal, payload,
        at: Date.now(),
      };
      const problem = f.masked ? 'server frame is masked (RFC 6455 5.1)'
        : f.rsv ? `server frame has RSV bits ${f.rsv}`
          : !f.minimal ? `server frame length ${len} not in its minimal encoding (RFC 6455 5.2)`
            : ![0, 1, 2, 8, 9, 10].includes(f.opcode) ? `server frame has reserved opcode ${f.opcode}`
              : f.opcode >= 8 && (!f.fin || len > 125) ? `server control frame ${opName(f.opcode)} fin=${f.fin} len=${len}`
                : null;
      if (problem) this.protocolError = problem;
      this.frames.push(f);
      this.log.push(f);
    }
  }

  describe() {
    const frames = this.log.slice(-8).map((f) => {
      let p = f.opcode === OP.CLOSE && f.payload.length >= 2
        ? `code=${f.payload.readUInt16BE(0)} reason=${JSON.stringify(f.payload.subarray(2).toString('utf8'))}`
        : `len=${f.payload.length}${f.payload.length <= 32 ? ` ${f.payload.toString('hex')}` : ''}`;
      return `${opName(f.opcode)}${f.fin ? '' : '(fin=0)'} ${p}`;
    });
    return `received frames (last 8 of ${this.log.length}): [${frames.join('; ')}]; ` +
      `connection ${this.ended ? `ended after ${this.endedAt - this.t0} ms${this.error ? ` (${this.error.code})` : ''}` : 'open'}` +
      `${this.protocolError ? `; INVALID SERVER FRAME: ${this.protocolError}` : ''}` +
      `${this.server && !this.server.alive() ? '; THE ECHO SERVER PROCESS HAS EXITED' : ''}`;
  }

  /** Resolves with pred()'s first non-undefined value, re-checked on every event. */
  waitFor(pred, timeoutMs, what) {
    return new Promise((resolve, reject) => {
      let timer = null;
      const cleanup = () => { clearTimeout(timer); this.waiters.delete(check); };
      const check = () => {
        let v;
        try { v = pred(); } catch (e) { cleanup(); reject(e); return; }
        if (v !== undefined) { cleanup(); resolve(v); }
      };
      timer = setTimeout(() => {
        cleanup();
        reject(new Error(`timeout after ${timeoutMs} ms waiting for ${what}; ${this.describe()}`));
      }, timeoutMs);
      this.waiters.add(check);
      check();
    });
  }

  _checkValid() {
    if (this.protocolError) throw new Error(`invalid frame from the server: ${this.protocolError}; ${this.describe()}`);
  }

  /** The next frame from the server. */
  nextFrame(timeoutMs = 3000) {
    return this.waitFor(() => {
      this._checkValid();
      if (this.frames.length) return this.frames.shift();
      if (this.ended) throw new Error(`connection ended while waiting for a frame; ${this.describe()}`);
      return undefined;
    }, timeoutMs, 'a frame');
  }

  /**
   * The next whole data message, fragments joined: { opcode, payload, frames }. Any control
   * frame on the way is an error unless `allowPings` and it is a ping (which is then skipped);
   * a close frame always rejects, with its code in the message.
   */
  async readMessage(timeoutMs = 5000, { allowPings = false } = {}) {
    const deadline = Date.now() + timeoutMs;
    const parts = [];
    let opcode = null;
    let nframes = 0;
    for (;;) {
      const f = await this.nextFrame(Math.max(1, deadline - Date.now()));
      if (f.opcode === OP.PING && allowPings) continue;
      if (f.opcode === OP.CLOSE) {
        throw new Error(`expected a data message, got a CLOSE ${describeClose(f.payload)}; ${this.describe()}`);
      }
      if (f.opcode >= 8) throw new Error(`expected a data message, got ${opName(f.opcode)} len=${f.payload.length}; ${this.describe()}`);
      if (opcode === null) {
        if (f.opcode === OP.CONT) throw new Error('server sent a continuation frame without a message to continue');
        opcode = f.opcode;
      } else if (f.opcode !== OP.CONT) {
        throw new Error(`server sent ${opName(f.opcode)} inside a fragmented message`);
      }
      parts.push(f.payload);
      nframes++;
      if (f.fin) return { opcode, payload: Buffer.concat(parts), frames: nframes };
    }
  }

  /** The next frame must be a close frame: { code (null if empty), reason (Buffer), payload }. */
  async readClose(timeoutMs = 3000) {
    const f = await this.nextFrame(timeoutMs);
    if (f.opcode !== OP.CLOSE) {
      throw new Error(`expected a CLOSE frame, got ${opName(f.opcode)} len=${f.payload.length}` +
        `${f.payload.length <= 64 ? ` ${JSON.stringify(f.payload.toString('latin1'))}` : ''}; ${this.describe()}`);
    }
    return parseClose(f.payload);
  }

  /** Resolves once the server closed the TCP connection; the time it happened. */
  waitEnd(timeoutMs = 2000) {
    return this.waitFor(() => (this.ended ? this.endedAt : undefined), timeoutMs, 'the server to close the TCP connection');
  }

  /**
   * Asserts that the server fails the connection: the next frame is a close frame with `code`
   * (or one of the codes in an array), and the TCP connection is then closed by the server
   * without the client answering, within `endTimeoutMs`. No further frames may follow.
   */
  async expectFail(code, { timeoutMs = 3000, endTimeoutMs = 1000 } = {}) {
    const c = await this.readClose(timeoutMs);
    const ok = Array.isArray(code) ? code.includes(c.code) : c.code === code;
    if (!ok) throw new Error(`expected close code ${code}, got ${describeClose(c.payload)}; ${this.describe()}`);
    await this.waitEnd(endTimeoutMs);
    if (this.frames.length) throw new Error(`frames after the close frame; ${this.describe()}`);
    return c;
  }

  /** Asserts that nothing arrives and the connection stays open for `ms`. */
  async expectSilence(ms) {
    await sleep(ms);
    this._checkValid();
    if (this.frames.length) throw new Error(`expected no frame for ${ms} ms; ${this.describe()}`);
    if (this.ended) throw new Error(`expected the connection to stay open for ${ms} ms; ${this.describe()}`);
  }
}

export function parseClose(payload) {
  if (payload.length === 0) return { code: null, reason: Buffer.alloc(0), payload };
  if (payload.length === 1) throw new Error(`server close frame has a 1-byte payload ${payload.toString('hex')}`);
  const code = payload.readUInt16BE(0);
  const reason = payload.subarray(2);
  if (!CLOSE_CODE_VALID(code)) throw new Error(`server sent an invalid close code ${code}`);
  try {
    new TextDecoder('utf-8', { fatal: true }).decode(reason);
  } catch {
    throw new Error(`server close reason is not UTF-8: ${reason.toString('hex')}`);
  }
  return { code, reason, payload };
}

export function describeClose(payload) {
  if (payload.length === 0) return 'with an empty payload';
  if (payload.length === 1) return `with a 1-byte payload ${payload.toString('hex')}`;
  return `code=${payload.readUInt16BE(0)} reason=${JSON.stringify(payload.subarray(2).toString('utf8'))}`;
}

// ---------------------------------------------------------------------------------------------
// Raw HTTP exchanges (handshake validation)
// ---------------------------------------------------------------------------------------------

/**
 * Connects, writes `request` (a Buffer, or an array of [Buffer, delayMs] pieces written with a
 * pause after each), and collects the answer until the server closes the connection (or
 * `timeoutMs`). Resolves with the parsed head plus { raw, body, closed, closedAfterMs,
 * firstByteAfterMs } where the times are measured from the end of the last write.
 */
export async function httpExchange(port, request, { timeoutMs = 3000, waitClose = true } = {}) {
  const c = await RawClient.connect(port);
  const pieces = Array.isArray(request) ? request : [[request, 0]];
  let firstByteAt = null;
  c.sock.on('data', () => { firstByteAt ??= Date.now(); });
  for (const [buf, delay] of pieces) {
    await c.write(buf);
    if (delay) await sleep(delay);
  }
  const t0 = Date.now();
  const complete = () => {
    const all = c.q.all();
    const i = all.indexOf('\r\n\r\n');
    if (i < 0) return false;
    const head = parseHttpHead(all.subarray(0, i));
    const cl = Number(head.header('content-length') ?? 0);
    return all.length >= i + 4 + cl;
  };
  try {
    await c.waitFor(() => (c.ended || (!waitClose && complete()) ? true : undefined), timeoutMs, 'the HTTP response');
  } catch { /* timed out: the result says closed=false */ }
  const raw = c.q.all();
  const i = raw.indexOf('\r\n\r\n');
  const res = parseHttpHead(i >= 0 ? raw.subarray(0, i) : raw);
  const result = {
    ...res, raw, body: i >= 0 ? raw.subarray(i + 4) : Buffer.alloc(0), complete: i >= 0,
    closed: c.ended, closedAfterMs: c.ended ? c.endedAt - t0 : null,
    firstByteAfterMs: firstByteAt ? firstByteAt - t0 : null, error: c.error,
  };
  c.destroy();
  return result;
}

// ---------------------------------------------------------------------------------------------
// npm ws clients
// ---------------------------------------------------------------------------------------------

/**
 * Opens a `ws` client and wraps it in a queue: next() resolves with the next message
 * ({ data: Buffer, isBinary }), closed resolves with { code, reason } when it closes.
 */
export function wsOpen(port, { protocols, timeoutMs = 5000, ...options } = {}) {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(`ws://${HOST}:${port}/`, protocols, { maxPayload: 64 * 1024 * 1024, ...options });
    const client = new WsClient(ws);
    const timer = setTimeout(() => { ws.terminate(); reject(new Error(`ws open timed out after ${timeoutMs} ms`)); }, timeoutMs);
    ws.once('open', () => { clearTimeout(timer); resolve(client); });
    ws.once('error', (e) => { clearTimeout(timer); reject(e); });
    ws.once('unexpected-response', (req, res) => {
      clearTimeout(timer);
      reject(new Error(`ws handshake: unexpected response ${res.statusCode}`));
      ws.terminate();
    });
  });
}

export class WsClient {
  constructor(ws) {
    this.ws = ws;
    this.messages = [];
    this.waiters = [];
    this.closeInfo = null;
    this.errors = [];
    ws.on('message', (data, isBinary) => {
      this.messages.push({ data: Buffer.isBuffer(data) ? data : Buffer.concat(data), isBinary });
      this._wake();
    });
    ws.on('error', (e) => { this.errors.push(e); });
    this.closed = new Promise((resolve) => {
      ws.once('close', (code, reason) => {
        this.closeInfo = { code, reason: reason.toString('utf8') };
        resolve(this.closeInfo);
        this._wake();
      });
    });
  }
  _wake() { const w = this.waiters; this.waiters = []; for (const f of w) f(); }
  next(timeoutMs = 5000) {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`ws: no message within ${timeoutMs} ms`)), timeoutMs);
      const check = () => {
        if (this.messages.length) { clearTimeout(timer); resolve(this.messages.shift()); return; }
        if (this.closeInfo) {
          clearTimeout(timer);
          reject(new Error(`ws: closed (${this.closeInfo.code} ${JSON.stringify(this.closeInfo.reason)}) while waiting for a message`));
          return;
        }
        this.waiters.push(check);
      };
      check();
    });
  }
  send(data, opts = {}) {
    return new Promise((resolve, reject) => this.ws.send(data, opts, (e) => (e ? reject(e) : resolve())));
  }
  async roundTrip(data, opts = {}) {
    await this.send(data, opts);
    return this.next();
  }
  close(code, reason) { this.ws.close(code, reason); return this.closed; }
  terminate() { this.ws.terminate(); }
}
