// A fake WebSocket and an in-process server speaking docs/PROTOCOL.md, for the client's unit
// tests: every connection, message and close is under the test's control, with no network.
// The WebSocket has the browser's shape (readyState, binaryType, send, close, on* handlers,
// events delivered asynchronously).
import { setTimeout as sleep } from 'node:timers/promises';
import { DEFAULT_ENVELOPE, KIND, decodeResumeBody, encodeHello, encodeResumedBody } from '../protocol.js';

const te = new TextEncoder();
const td = new TextDecoder();
const later = (fn) => setImmediate(fn);

export class FakeServer {
  constructor({ heartbeatMs = 60000, answerPings = true, maxMessage = 16 * 1024 * 1024 } = {}) {
    this.heartbeatMs = heartbeatMs;
    this.answerPings = answerPings;
    this.maxMessage = maxMessage;
    this.conns = [];
    this.refused = new Set(); // urls whose connections fail
    this.sessions = new Map(); // token → session id
    this.n = 0;
    // Hooks a test may replace:
    this.onRequest = (env, conn) => this.respond(conn, env.id, 200, env.body); // echo
    this.onResume = (conn, resume) => this.resumeOk(conn, resume);
    const server = this;
    this.WebSocket = class FakeWebSocket {
      constructor(url, protocols, options) {
        this.url = url;
        this.protocols = [].concat(protocols ?? []);
        this.options = options;
        this.readyState = 0;
        this.binaryType = 'blob';
        this.onopen = this.onmessage = this.onerror = this.onclose = null;
        server._accept(this);
      }
      send(data) {
        if (this.readyState === 0) throw new Error('InvalidStateError: still connecting');
        if (this.readyState !== 1) return;
        const bytes = Uint8Array.from(data);
        later(() => server._receive(this.conn, bytes));
      }
      close(code = 1000, reason = '') {
        if (code !== 1000 && !(code >= 3000 && code <= 4999)) throw new Error(`InvalidAccessError: close code ${code}`);
        if (te.encode(reason).length > 123) throw new Error('SyntaxError: the close reason is longer than 123 bytes');
        if (this.readyState >= 2) return;
        this.readyState = 2;
        this.closedBy = { code, reason };
        later(() => { this.readyState = 3; this.conn.closed = true; this.onclose?.({ code, reason, wasClean: true }); });
      }
    };
  }

  _accept(ws) {
    const conn = { ws, n: ++this.n, received: [], closed: false, url: ws.url };
    ws.conn = conn;
    this.conns.push(conn);
    if (this.refused.has(ws.url)) {
      later(() => {
        ws.readyState = 3;
        conn.closed = true;
        ws.onerror?.({ message: 'connection refused' });
        ws.onclose?.({ code: 1006, reason: '', wasClean: false });
      });
      return;
    }
    later(() => {
      ws.readyState = 1;
      ws.onopen?.({});
      conn.id = `conn${String(conn.n).padStart(18, '0')}`;
      conn.token = `tok${String(this.n).padStart(19, '0')}`;
      this.sessions.set(conn.token, conn.id);
      this._send(conn, encodeHello({ connId: conn.id, token: conn.token, heartbeatMs: this.heartbeatMs, maxMessage: this.maxMessage }));
    });
  }

  _send(conn, bytes) {
    if (conn.closed || conn.ws.readyState !== 1) return;
    const copy = Uint8Array.from(bytes).buffer;
    conn.ws.onmessage?.({ data: conn.ws.binaryType === 'arraybuffer' ? copy : Buffer.from(copy) });
  }

  _receive(conn, bytes) {
    if (conn.closed) return;
    const env = DEFAULT_ENVELOPE.decode(bytes);
    conn.received.push(env);
    if (env.kind === KIND.REQUEST) this.onRequest(env, conn);
    else if (env.kind === KIND.PING && this.answerPings) this.send(conn, { kind: KIND.PING, status: 200, id: env.id });
    else if (env.kind === KIND.RESUME) this.onResume(conn, decodeResumeBody(env.body));
  }

  /**
   * The default answer to RESUME: the session's HELLO, then the `early` pushes (live ones that
   * overtake the replay), the `replay` (which for a stream the client names no position for
   * starts where the session joined it, maybe above offset 1), and RESUMED with every position
   * recovered: the client's, or the last replayed, or `extra` records ({ stream, offset,
   * epoch, recovered }).
   */
  resumeOk(conn, { token, positions }, { replay = [], early = [], extra = [] } = {}) {
    const id = this.sessions.get(token);
    if (!id) {
      this.send(conn, { kind: KIND.ERROR, status: 401, body: 'resume refused: unknown, used or expired token' });
      return;
    }
    this.sessions.delete(token);
    conn.id = id;
    conn.token = `tok${String(++this.n).padStart(19, '0')}`;
    this.sessions.set(conn.token, id);
    this._send(conn, encodeHello({ connId: id, token: conn.token, heartbeatMs: this.heartbeatMs, maxMessage: this.maxMessage }));
    for (const p of early) this.push(conn, p);
    for (const p of replay) this.push(conn, p);
    const end = new Map(positions.map((p) => [p.stream, { ...p, recovered: true }]));
    for (const p of replay) end.set(p.stream, { stream: p.stream, offset: BigInt(p.offset), epoch: BigInt(p.epoch), recovered: true });
    for (const r of extra) end.set(r.stream, { stream: r.stream, offset: BigInt(r.offset), epoch: BigInt(r.epoch), recovered: r.recovered ?? true });
    this.send(conn, { kind: KIND.RESUMED, body: encodeResumedBody([...end.values()]) });
  }

  send(conn, env) {
    this._send(conn, DEFAULT_ENVELOPE.encode({ ...env, body: typeof env.body === 'string' ? te.encode(env.body) : env.body }));
  }

  respond(conn, id, status, body = '') {
    this.send(conn, { kind: KIND.RESPONSE, id, status, body });
  }

  push(conn, { method = 2, url, stream = '', offset = 0, epoch = 0, body = '' }) {
    this.send(conn, { kind: KIND.PUSH, method, url, stream, offset: BigInt(offset), epoch: BigInt(epoch), body });
  }

  /** The server closes the connection (a close frame with `code`, or 1006 for a lost TCP). */
  close(conn, code = 1006, reason = '') {
    if (conn.closed) return;
    conn.closed = true;
    conn.ws.readyState = 3;
    later(() => conn.ws.onclose?.({ code, reason, wasClean: code !== 1006 }));
  }

  /** The connection goes silent: nothing arrives either way, and no close comes (a dead peer). */
  freeze(conn) {
    conn.closed = true;
  }

  get last() { return this.conns[this.conns.length - 1]; }

  /** Connections that got their HELLO and are not closed. */
  get open() { return this.conns.filter((c) => !c.closed && c.id); }
}

export const text = (bytes) => td.decode(bytes);

/** Resolves with pred()'s first truthy value, polling every few ms. */
export async function until(pred, timeoutMs = 2000, what = 'a condition') {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = pred();
    if (v) return v;
    if (Date.now() > end) throw new Error(`timeout after ${timeoutMs} ms waiting for ${what}`);
    await sleep(2);
  }
}

/** Records every event of a client: [{ name, arg }]. */
export function record(client, names = ['open', 'close', 'reconnecting', 'resumed', 'error', 'auth']) {
  const log = [];
  for (const n of names) client.on(n, (arg) => log.push({ name: n, arg }));
  return log;
}
