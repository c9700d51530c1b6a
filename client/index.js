// @switchboard/client — the JavaScript client of Switchboard (docs/PROTOCOL.md): requests and
// responses, listeners for server pushes, reconnection with backoff, and redelivery of what was
// missed (resume). An ES module with no dependencies and no build step; it runs in browsers and
// in Node (with the global WebSocket, or one passed in such as npm `ws`). client/README.md
// documents every option and event.
//
// How a connection goes:
//
//   connecting ──HELLO──► (a session to resume?) ──no──► open
//        ▲                        │yes
//        │                        ▼
//        │                   resuming ──RESUMED, or ERROR: session lost──► open
//        │                                                                  │
//   waiting (backoff) ◄──────────── the socket closes, or looks dead ◄──────┘
//
// Redelivery. The client keeps a position (offset, epoch) per stream. On a live connection a
// push must carry the next offset of its stream: at or below the position it is a duplicate
// (dropped), above position + 1 it reveals a gap, and the client reconnects at once and
// resumes rather than trust silence. While a RESUME is unanswered only the next offset is
// accepted, since the replay brings the rest in order (§6); pushes of a stream without a
// position are held until RESUMED (its replay starts at the join point, maybe above 1). RESUMED then says, per stream,
// whether everything missed was replayed; the application hears of it in the `resumed` event.
import { CodecError, Schema, asBytes, decodeUtf8, encodeUtf8 } from './codec.js';
import { reconnectOptions, backoffDelay } from './backoff.js';
import { compilePattern } from './patterns.js';
import {
  CLOSE, ENVELOPE_FIELDS, KIND, METHOD, METHOD_NAME, decodeHello, decodeResumedBody, encodePositions,
  encodeResumeBody,
} from './protocol.js';

export { CodecError, Schema } from './codec.js';
export { CLOSE, KIND, METHOD } from './protocol.js';
export { compilePattern } from './patterns.js';
export { backoffCap, backoffDelay, RECONNECT_DEFAULTS } from './backoff.js';

/** Every error the client produces: `code` says what happened (README, "Errors"). */
export class SwitchboardError extends Error {
  constructor(code, message, extra = {}) {
    super(message, extra.cause ? { cause: extra.cause } : undefined);
    this.name = 'SwitchboardError';
    this.code = code;
    for (const [k, v] of Object.entries(extra)) if (k !== 'cause') this[k] = v;
  }
}

const EVENTS = new Set(['open', 'close', 'reconnecting', 'resumed', 'error', 'auth']);
const RESPONSE_TYPES = new Set(['auto', 'json', 'text', 'bytes']);
const EMPTY = new Uint8Array(0);
const utf8 = new TextEncoder();
const MAX_POSITIONS = 1024; // a RESUME carries at most this many (§6)

const DEFAULTS = {
  url: undefined,
  discoveryUrl: undefined,
  WebSocket: undefined,
  protocols: [],
  token: undefined,
  authorizationHeader: false,
  webSocketOptions: undefined,
  timeout: 10000,
  connectTimeout: 10000,
  whileDisconnected: 'wait',
  maxQueued: 1000,
  responseType: 'auto',
  reconnect: {},
  heartbeatInterval: 0,
  heartbeatTimeout: 10000,
  ackInterval: 5000,
  persist: false,
  storageKey: undefined,
  autoConnect: true,
  fetch: undefined,
  window: undefined,
  document: undefined,
  random: Math.random,
};

const hex64 = (v) => v.toString(16).padStart(16, '0');

/**
 * Decodes a body by `type`: 'bytes' gives the bytes; 'text' a string (UTF-8); 'json' a value
 * (empty: null); 'auto' null when empty, else the JSON value if it parses, else the string if
 * it is UTF-8, else the bytes. Throws SwitchboardError BAD_BODY when the type cannot hold it.
 */
export function decodeBody(raw, type = 'auto') {
  if (type === 'bytes') return raw;
  if (raw.length === 0) return type === 'text' ? '' : null;
  let text;
  try {
    text = decodeUtf8(raw);
  } catch {
    if (type === 'auto') return raw;
    throw new SwitchboardError('BAD_BODY', `the body is not UTF-8 text (responseType '${type}')`, { raw });
  }
  if (type === 'text') return text;
  try {
    return JSON.parse(text);
  } catch (e) {
    if (type === 'auto') return text;
    throw new SwitchboardError('BAD_BODY', `the body is not JSON: ${e.message}`, { raw });
  }
}

/**
 * Encodes a request body: undefined is empty; a Uint8Array, ArrayBuffer or view goes as it is;
 * a string as UTF-8; anything else as JSON (UTF-8). docs/PROTOCOL.md §3.1.
 */
export function encodeBody(body) {
  if (body === undefined) return EMPTY;
  const bytes = asBytes(body);
  if (bytes) return bytes;
  for (const [name, C] of [['Blob', globalThis.Blob], ['FormData', globalThis.FormData], ['ReadableStream', globalThis.ReadableStream]]) {
    if (typeof C === 'function' && body instanceof C) {
      throw new SwitchboardError('INVALID', `a ${body.constructor?.name ?? name} body cannot be sent as it is: read it first (for a Blob or File, await blob.arrayBuffer())`);
    }
  }
  if (typeof body === 'string') {
    const b = encodeUtf8(body);
    if (!b) throw new SwitchboardError('INVALID', 'the body is a string with a lone surrogate: it has no UTF-8 form');
    return b;
  }
  let json;
  try {
    json = JSON.stringify(body);
  } catch (e) {
    throw new SwitchboardError('INVALID', `the body cannot be written as JSON: ${e.message}`, { cause: e });
  }
  if (json === undefined) throw new SwitchboardError('INVALID', `a ${typeof body} body cannot be written as JSON`);
  return utf8.encode(json);
}

function methodNumber(m) {
  const n = typeof m === 'number' ? m : METHOD[String(m).toUpperCase()];
  if (n === undefined || METHOD_NAME[n] === undefined || n === METHOD.NONE) {
    throw new SwitchboardError('INVALID', `unknown method ${JSON.stringify(m)}`);
  }
  return n;
}

/**
 * A listener made by client.addServerResponseListenerFor.<method>(pattern, fn?). With `fn`
 * every matching push is handed to it; without, pushes are buffered (at most `bufferLimit`,
 * the oldest dropped first and counted in `dropped`) for next() and `for await`.
 */
export class Listener {
  constructor(client, method, pattern, fn, opts = {}) {
    if (fn !== undefined && typeof fn !== 'function') throw new TypeError('a listener callback must be a function');
    const type = opts.responseType ?? client._opts.responseType;
    if (!RESPONSE_TYPES.has(type)) throw new TypeError(`unknown responseType ${JSON.stringify(type)}`);
    this.pattern = pattern;
    this.method = method === null ? null : METHOD_NAME[method];
    this.dropped = 0;
    this._client = client;
    this._methodNumber = method;
    this._match = compilePattern(pattern);
    this._fn = fn;
    this._responseType = type;
    this._limit = opts.bufferLimit ?? 1000;
    this._buffer = [];
    this._waiters = [];
    this._active = true;
  }

  /** False once stopListening() was called. */
  get active() { return this._active; }

  /** Stops the listener: no push reaches it afterwards. Returns false if it had stopped already. */
  stopListening() {
    if (!this._active) return false;
    this._active = false;
    this._client._listeners = this._client._listeners.filter((l) => l !== this);
    for (const w of this._waiters.splice(0)) w({ done: true, value: undefined });
    return true;
  }

  /**
   * The next push (buffered or future); rejects with CLOSED once the listener stopped, or
   * while the client is closed (a for await loop ends then).
   */
  async next() {
    const r = await this._take();
    if (r.done) {
      throw new SwitchboardError('CLOSED', this._active ? 'the client is closed' : `the listener for ${this.pattern} stopped listening`);
    }
    return r.value;
  }

  [Symbol.asyncIterator]() {
    return { next: () => this._take(), return: async () => { this.stopListening(); return { done: true, value: undefined }; } };
  }

  _take() {
    if (this._fn) return Promise.reject(new TypeError('a listener with a callback has nothing to take'));
    if (this._buffer.length) return Promise.resolve({ done: false, value: this._buffer.shift() });
    if (!this._active || this._client._state === 'closed') return Promise.resolve({ done: true, value: undefined });
    return new Promise((resolve) => this._waiters.push(resolve));
  }

  _deliver(push) {
    if (this._fn) return this._fn(push);
    if (this._waiters.length) return this._waiters.shift()({ done: false, value: push });
    this._buffer.push(push);
    if (this._buffer.length > this._limit) {
      this._buffer.shift();
      this.dropped++;
    }
    return undefined;
  }
}

export class SwitchboardClient {
  /**
   * new SwitchboardClient(url | urls | options). Options: README.md, "Options". Connects at
   * once unless `autoConnect: false`.
   */
  constructor(options = {}) {
    if (typeof options === 'string' || Array.isArray(options)) options = { url: options };
    const o = { ...DEFAULTS, ...options };
    o.urls = o.url === undefined ? [] : [].concat(o.url);
    if (!o.urls.length && !o.discoveryUrl) throw new TypeError('give a server url (url) or a discovery url (discoveryUrl)');
    o.WebSocket ??= globalThis.WebSocket;
    if (typeof o.WebSocket !== 'function') {
      throw new TypeError('no WebSocket: pass one as the WebSocket option (in Node < 22, e.g. the "ws" package)');
    }
    if (!RESPONSE_TYPES.has(o.responseType)) throw new TypeError(`unknown responseType ${JSON.stringify(o.responseType)}`);
    if (o.whileDisconnected !== 'wait' && o.whileDisconnected !== 'fail') {
      throw new TypeError(`whileDisconnected is 'wait' or 'fail', not ${JSON.stringify(o.whileDisconnected)}`);
    }
    for (const k of ['connectTimeout', 'heartbeatTimeout', 'ackInterval']) {
      if (typeof o[k] !== 'number' || !(o[k] > 0) || !Number.isFinite(o[k])) throw new TypeError(`${k} must be a positive number of ms, not ${o[k]}`);
    }
    if (typeof o.heartbeatInterval !== 'number' || !(o.heartbeatInterval >= 0) || !Number.isFinite(o.heartbeatInterval)) {
      throw new TypeError(`heartbeatInterval must be a number of ms (0: from the server's heartbeat_ms), not ${o.heartbeatInterval}`);
    }
    o.reconnect = o.reconnect === false ? false : reconnectOptions(o.reconnect);
    if (o.window === undefined) o.window = typeof window !== 'undefined' ? window : null;
    if (o.document === undefined) o.document = typeof document !== 'undefined' ? document : null;
    o.fetch ??= globalThis.fetch?.bind(globalThis);
    this._opts = o;

    this._events = new Map();
    this._listeners = [];
    this._state = 'idle';
    this._gen = 0; // bumped whenever the current socket is given up: stale callbacks check it
    this._ws = null;
    this._timers = {};
    this._attempt = 0;
    this._urlIndex = 0;
    this._urlList = o.urls.slice();
    this._openedAt = 0;
    this._hello = null;
    this._envelope = null;
    this._session = null; // { connId, token }: the session a reconnect resumes
    this._fresh = null; // the new connection's own session, while a RESUME is unanswered
    this._positions = new Map(); // stream → { offset: bigint, epoch: bigint }
    this._held = new Map(); // stream → pushes, while resuming, for streams without a position
    this._draining = false; // a gap was seen: waiting for the requests in flight before resuming
    this._gapDrainMs = 2000; // at most this long
    this._pending = new Map(); // request id → request, sent and unanswered
    this._queue = []; // requests and sends waiting for an open connection
    this._nextId = 1;
    this._pingId = 1;
    this._lastAcked = -1n;
    // With persist in a page, the single-use resume token is in storage only while the page is
    // hidden or going away: a tab duplicated while visible copies no token to resume (and so
    // cannot take the session from this tab, which would close it with 4000).
    this._pageLifecycle = !!(o.window || o.document);
    this._hidden = o.document?.visibilityState === 'hidden';
    this._storage = this._openStorage();
    this._load();

    const forMethod = (m) => (pattern, fn, opts) => this._listen(m, pattern, fn, opts);
    /** client.addServerResponseListenerFor.get("/resource") → a Listener (stopListening()). */
    this.addServerResponseListenerFor = Object.freeze({
      get: forMethod(METHOD.GET), post: forMethod(METHOD.POST), put: forMethod(METHOD.PUT),
      patch: forMethod(METHOD.PATCH), delete: forMethod(METHOD.DELETE), any: forMethod(null),
    });

    this._onOnline = () => this._wake();
    this._onOffline = () => this._networkDown();
    this._onVisibility = () => {
      this._hidden = this._opts.document?.visibilityState === 'hidden';
      this._save();
      if (!this._hidden) this._wake();
    };
    this._onPageHide = () => { this._hidden = true; this._save(); };
    this._onPageShow = () => { this._hidden = this._opts.document?.visibilityState === 'hidden'; this._save(); };
    if (o.autoConnect) this.connect();
  }

  // ---- public state --------------------------------------------------------------------

  /** 'idle', 'connecting', 'resuming', 'open', 'waiting', 'offline' or 'closed'. */
  get state() { return this._state; }

  /** The connection (session) id from the server's HELLO, or null before the first one. */
  get connectionId() { return this._session?.connId ?? null; }

  /** What the server announced in its last HELLO, or null. */
  get hello() {
    const h = this._hello;
    return h && { connectionId: h.connId, heartbeatMs: h.heartbeatMs, maxMessage: h.maxMessage, maxReplay: h.maxReplay, historyMax: h.historyMax };
  }

  /** The envelope schema the server announced (a Schema), or null. */
  get envelope() { return this._envelope; }

  /** The application schemas the server announced: a Map from name to Schema. */
  get schemas() { return this._hello?.schemas ?? new Map(); }

  /** Where the client stands in each stream: { [stream]: { offset, epoch } } (epoch in hex). */
  positions() {
    const out = {};
    for (const [s, p] of this._positions) out[s] = { offset: Number(p.offset), epoch: hex64(p.epoch) };
    return out;
  }

  /**
   * Drops the client's position in `stream` (e.g. 'g:room:lobby' after leaving that group), so
   * that its next push is taken as a fresh start rather than as a gap. Returns whether there
   * was a position.
   */
  forget(stream) {
    this._held.delete(stream);
    return this._positions.delete(stream);
  }

  /** Resolves when the client is open (at once if it is); rejects if it is closed for good. */
  ready() {
    if (this._state === 'open') return Promise.resolve();
    if (this._state === 'closed') return Promise.reject(new SwitchboardError('CLOSED', 'the client is closed'));
    return new Promise((resolve, reject) => {
      const offs = [
        this.on('open', () => { offs.forEach((f) => f()); resolve(); }),
        this.on('close', (e) => {
          if (!e.willReconnect) { offs.forEach((f) => f()); reject(new SwitchboardError('CLOSED', 'the client is closed')); }
        }),
      ];
    });
  }

  // ---- events and listeners ------------------------------------------------------------

  /**
   * on(event, fn) for 'open', 'close', 'reconnecting', 'resumed', 'error', 'auth'; or
   * on(pattern, fn, { responseType }) for pushes whose url matches `pattern` (any method).
   * Returns a function that removes the handler.
   */
  on(what, fn, opts) {
    if (typeof fn !== 'function') throw new TypeError('on(what, fn): fn must be a function');
    if (typeof what === 'string' && what.startsWith('/')) {
      const l = this._listen(null, what, fn, opts);
      return () => { l.stopListening(); };
    }
    if (!EVENTS.has(what)) throw new TypeError(`unknown event ${JSON.stringify(what)}: events are ${[...EVENTS].join(', ')}; url patterns start with "/"`);
    if (!this._events.has(what)) this._events.set(what, new Set());
    const entry = (arg) => fn(arg); // a wrapper, so that the same fn may be added twice
    this._events.get(what).add(entry);
    return () => { this._events.get(what)?.delete(entry); };
  }

  _listen(method, pattern, fn, opts) {
    const l = new Listener(this, method, pattern, fn, opts);
    this._listeners = [...this._listeners, l];
    return l;
  }

  _emit(name, arg) {
    const set = this._events.get(name);
    if (!set) return;
    for (const fn of [...set]) {
      try {
        fn(arg);
      } catch (e) {
        if (name === 'error') rethrow(e);
        else this._report(e);
      }
    }
  }

  // An exception from application code (a listener, an event handler): to the 'error'
  // handlers, or, without any, thrown where the environment reports it (like EventTarget).
  _report(e) {
    if (this._events.get('error')?.size) this._emit('error', new SwitchboardError('LISTENER', `a handler threw: ${e?.message ?? e}`, { cause: e }));
    else rethrow(e);
  }

  // ---- requests --------------------------------------------------------------------------

  get(url, opts) { return this.request('GET', url, undefined, opts); }
  post(url, body, opts) { return this.request('POST', url, body, opts); }
  put(url, body, opts) { return this.request('PUT', url, body, opts); }
  patch(url, body, opts) { return this.request('PATCH', url, body, opts); }
  delete(url, body, opts) { return this.request('DELETE', url, body, opts); }

  /**
   * Sends a request and resolves with the response { status, ok, body, raw, ...fields } for
   * any status; rejects with a SwitchboardError (TIMEOUT, DISCONNECTED, QUEUE_FULL, CLOSED,
   * ABORTED, TOO_BIG, INVALID, BAD_BODY). Options: timeout, responseType, fields, signal.
   */
  request(method, url, body, opts = {}) {
    return this._submit(false, method, url, body, opts);
  }

  /** One-way SEND (no response): resolves once it is handed to the socket. Option: method (POST). */
  send(url, body, opts = {}) {
    return this._submit(true, opts.method ?? 'POST', url, body, opts);
  }

  _submit(oneWay, method, url, body, opts) {
    return new Promise((resolve, reject) => {
      const req = { oneWay, resolve, reject, id: 0, timer: null, onAbort: null, signal: opts.signal };
      try {
        if (typeof url !== 'string') throw new SwitchboardError('INVALID', 'the url must be a string');
        req.method = methodNumber(method);
        req.url = url;
        req.body = encodeBody(body);
        req.fields = opts.fields ?? {};
        req.responseType = opts.responseType ?? this._opts.responseType;
        if (!RESPONSE_TYPES.has(req.responseType)) throw new SwitchboardError('INVALID', `unknown responseType ${JSON.stringify(req.responseType)}`);
      } catch (e) {
        reject(e);
        return;
      }
      const what = `${oneWay ? 'send' : 'request'} ${METHOD_NAME[req.method]} ${url}`;
      if (req.signal?.aborted) { reject(new SwitchboardError('ABORTED', `${what}: aborted`)); return; }
      if (this._state === 'closed') { reject(new SwitchboardError('CLOSED', `${what}: the client is closed`)); return; }
      const timeout = opts.timeout ?? this._opts.timeout;
      if (timeout > 0 && timeout < Infinity) {
        req.timer = setTimeout(() => this._settle(req, new SwitchboardError('TIMEOUT', `${what}: no response within ${timeout} ms`)), timeout);
      }
      if (req.signal) {
        req.onAbort = () => this._settle(req, new SwitchboardError('ABORTED', `${what}: aborted`));
        req.signal.addEventListener('abort', req.onAbort, { once: true });
      }
      if (this._state === 'open' && !this._draining) {
        this._transmit(req);
      } else if (this._draining) {
        this._queue.push(req); // it goes out after the resume, in a moment
      } else if (this._opts.whileDisconnected === 'fail') {
        this._settle(req, new SwitchboardError('DISCONNECTED', `${what}: not connected (state ${this._state})`));
      } else if (this._queue.length >= this._opts.maxQueued) {
        this._settle(req, new SwitchboardError('QUEUE_FULL', `${what}: ${this._queue.length} requests already wait for a connection`));
      } else {
        this._queue.push(req);
      }
    });
  }

  // Resolves or rejects a request once, and forgets it wherever it is.
  _settle(req, error, response) {
    if (req.done) return;
    req.done = true;
    clearTimeout(req.timer);
    if (req.onAbort) req.signal.removeEventListener('abort', req.onAbort);
    if (req.id && this._pending.delete(req.id) && this._draining && !this._pending.size) {
      const gen = this._gen;
      queueMicrotask(() => { if (gen === this._gen) this._endDrain(); });
    }
    const i = this._queue.indexOf(req);
    if (i >= 0) this._queue.splice(i, 1);
    if (error) req.reject(error);
    else req.resolve(response);
  }

  _transmit(req) {
    let bytes;
    if (!req.oneWay) {
      do { req.id = this._nextId; this._nextId = this._nextId >= 0xffffffff ? 1 : this._nextId + 1; } while (this._pending.has(req.id));
    }
    try {
      bytes = this._envelope.encode({
        ...req.fields, kind: req.oneWay ? KIND.SEND : KIND.REQUEST, method: req.method, id: req.id, url: req.url, body: req.body,
      });
    } catch (e) {
      req.id = 0;
      this._settle(req, new SwitchboardError('INVALID', e.message, { cause: e }));
      return;
    }
    const max = this._hello?.maxMessage;
    if (max && bytes.length > max) {
      req.id = 0;
      this._settle(req, new SwitchboardError('TOO_BIG', `${bytes.length} bytes: the server accepts at most ${max}`));
      return;
    }
    if (req.oneWay) {
      this._ws.send(bytes);
      this._settle(req, null, undefined);
    } else {
      this._pending.set(req.id, req);
      this._ws.send(bytes);
    }
  }

  // ---- connecting ------------------------------------------------------------------------

  /** Starts connecting (done by the constructor unless autoConnect: false; again after close()). */
  connect() {
    if (this._state !== 'idle' && this._state !== 'closed') return;
    this._attempt = 0;
    const w = this._opts.window;
    w?.addEventListener?.('online', this._onOnline);
    w?.addEventListener?.('offline', this._onOffline);
    w?.addEventListener?.('pagehide', this._onPageHide);
    w?.addEventListener?.('pageshow', this._onPageShow);
    this._opts.document?.addEventListener?.('visibilitychange', this._onVisibility);
    this._attemptConnect();
    this._save();
  }

  /**
   * Closes for good: no reconnect; requests waiting or in flight reject with CLOSED; a
   * 'close' event with willReconnect: false. The session is kept in storage (persist) so that
   * a later client may resume it; connect() starts again.
   */
  close(code = 1000, reason = '') {
    if (this._state === 'closed' || this._state === 'idle') return;
    this._shutdown({ code, reason });
  }

  // The client stops for good: by close(), by a fatal close code, or by giving up. `error`
  // (if any) is reported first; 'close' always ends it.
  _shutdown({ code, reason, error }) {
    this._dropSocket({ code, reason });
    this._state = 'closed';
    this._save();
    const w = this._opts.window;
    w?.removeEventListener?.('online', this._onOnline);
    w?.removeEventListener?.('offline', this._onOffline);
    w?.removeEventListener?.('pagehide', this._onPageHide);
    w?.removeEventListener?.('pageshow', this._onPageShow);
    this._opts.document?.removeEventListener?.('visibilitychange', this._onVisibility);
    const why = error ? error.message : 'the client was closed';
    for (const req of [...this._pending.values(), ...this._queue]) this._settle(req, new SwitchboardError('CLOSED', why, error ? { cause: error } : {}));
    // Waiting next() calls reject with CLOSED and for await loops end; the listeners stay, for
    // a later connect().
    for (const l of this._listeners) for (const w of l._waiters.splice(0)) w({ done: true, value: undefined });
    if (error) this._emit('error', error);
    this._emit('close', { code, reason, willReconnect: false });
  }

  // Gives up the current socket (if any) without waiting for its close handshake: its
  // callbacks are detached and the generation moves on, so nothing from it is heard again.
  // `hard` (a dead connection) terminates it where the WebSocket can (npm ws); otherwise it
  // is closed with `code`, which a browser only allows to be 1000 or 3000-4999.
  _dropSocket({ code = 1000, reason = '', hard = false } = {}) {
    this._gen++;
    this._held = new Map(); // a later resume replays them again
    this._draining = false;
    for (const k of Object.keys(this._timers)) { clearTimeout(this._timers[k]); delete this._timers[k]; }
    const ws = this._ws;
    this._ws = null;
    if (!ws) return;
    ws.onopen = ws.onmessage = ws.onclose = null;
    // npm ws reports closing a socket that is still connecting as an 'error' event, and an
    // EventEmitter throws an error nobody listens to: keep a listener that ignores it.
    ws.onerror = () => {};
    if (hard && typeof ws.terminate === 'function') {
      try { ws.terminate(); } catch { /* already closed */ }
      return;
    }
    // A close reason is at most 123 UTF-8 bytes: longer, browsers and ws throw and the socket
    // would stay open. If close still throws, without a reason, else terminated.
    const c = code === 1000 || (code >= 3000 && code <= 4999) ? code : 1000;
    try {
      ws.close(c, utf8Prefix(String(reason ?? ''), 123));
    } catch {
      try {
        ws.close(c);
      } catch {
        try { ws.terminate?.(); } catch { /* already closed */ }
      }
    }
  }

  async _attemptConnect() {
    this._state = 'connecting';
    const gen = ++this._gen;
    let url;
    let token;
    try {
      url = await this._nextUrl();
      if (this._opts.token !== undefined) token = await this._getToken('connect');
    } catch (e) {
      if (gen === this._gen) this._attemptFailed(e.code ? e : new SwitchboardError('CONNECT', e.message, { cause: e }));
      return;
    }
    if (gen !== this._gen) return; // closed meanwhile
    // A token travels as a "bearer.<token>" subprotocol entry (the one credential a browser
    // can attach to a WebSocket), next to a real subprotocol, which the server chooses (§9).
    const protocols = [...this._opts.protocols];
    if (token) {
      if (!protocols.length) protocols.push('sb.v1');
      protocols.push(`bearer.${token}`);
    }
    let ws;
    try {
      const extra = this._opts.webSocketOptions || (this._opts.authorizationHeader && token) ? { ...this._opts.webSocketOptions } : null;
      if (extra && this._opts.authorizationHeader && token) extra.headers = { ...extra.headers, Authorization: `Bearer ${token}` };
      ws = extra ? new this._opts.WebSocket(url, protocols, extra) : new this._opts.WebSocket(url, protocols);
    } catch (e) {
      this._attemptFailed(new SwitchboardError('CONNECT', `${url}: ${e.message}`, { cause: e, url }));
      return;
    }
    ws.binaryType = 'arraybuffer';
    this._ws = ws;
    this._url = url;
    let socketError = null;
    ws.onerror = (ev) => { socketError = ev?.error ?? ev?.message ?? null; };
    ws.onmessage = (ev) => { if (gen === this._gen) this._onMessage(ev.data); };
    ws.onclose = (ev) => {
      if (gen !== this._gen) return;
      const why = socketError ? `: ${socketError.message ?? socketError}` : '';
      this._lost(ev.code, ev.reason || '', { error: new SwitchboardError('CONNECT', `${url}: closed (${ev.code}) before the session opened${why}`, { url, closeCode: ev.code }) });
    };
    this._armConnectTimer();
  }

  // connectTimeout: until the HELLO; then, while resuming, of silence — each message (a
  // replay in progress) starts it again, so that only a resume that stalls is given up.
  _armConnectTimer() {
    clearTimeout(this._timers.connect);
    const url = this._url;
    const ms = this._opts.connectTimeout;
    this._timers.connect = setTimeout(() => {
      const what = this._state === 'resuming' ? `the resume stalled: nothing for ${ms} ms` : `no session within ${ms} ms`;
      this._lost(1006, 'connect timeout', { hard: true, error: new SwitchboardError('CONNECT', `${url}: ${what}`, { url }) });
    }, ms);
  }

  _attemptFailed(error) {
    this._state = 'waiting';
    this._emit('error', error);
    this._scheduleReconnect(false);
  }

  // The connection is gone (closed by the server, dead, or never opened), or the client gives
  // it up (`hard` when it looks dead). `error` is what to report if it never opened.
  _lost(code, reason, { error, immediate = false, hard = false } = {}) {
    if (this._state === 'closed') return;
    const wasOpen = this._state === 'open';
    const stable = this._openedAt && Date.now() - this._openedAt >= (this._opts.reconnect?.stableAfter ?? 0);
    this._openedAt = 0;
    this._dropSocket({ code: 1000, reason, hard });
    for (const req of [...this._pending.values()]) {
      this._settle(req, new SwitchboardError('DISCONNECTED', `${METHOD_NAME[req.method]} ${req.url}: the connection closed before the response (it may or may not have been processed)`));
    }
    if (code === CLOSE.REPLACED || code === CLOSE.IDENTITY) {
      const what = code === CLOSE.REPLACED ? ['REPLACED', 'the session was resumed by another connection'] : ['IDENTITY', 'a refreshed token named another identity'];
      this._shutdown({ code, reason, error: new SwitchboardError(what[0], `${what[1]} (close ${code})`, { closeCode: code }) });
      return;
    }
    if (this._opts.reconnect === false) {
      if (!wasOpen && error) this._emit('error', error);
      this._shutdown({ code, reason, error: wasOpen ? null : new SwitchboardError('GAVE_UP', 'the connection failed and reconnect is off') });
      return;
    }
    this._state = 'waiting';
    if (wasOpen) this._emit('close', { code, reason, willReconnect: true });
    else if (error) this._emit('error', error);
    if (this._state !== 'waiting') return; // a handler closed the client, or reconnected it
    if (stable) this._attempt = 0;
    // Going away (another node takes over), expired credentials (a new token fixes it) and a
    // gap are reasons to come back at once; everything else backs off.
    this._scheduleReconnect(immediate || code === CLOSE.GOING_AWAY || code === CLOSE.EXPIRED);
  }

  _scheduleReconnect(immediate) {
    const r = this._opts.reconnect;
    if (r === false) {
      this._shutdown({ code: 1006, reason: '', error: new SwitchboardError('GAVE_UP', 'the connection failed and reconnect is off') });
      return;
    }
    if (this._isOffline()) {
      this._state = 'offline';
      return;
    }
    this._attempt++;
    if (this._attempt > r.maxAttempts) {
      this._shutdown({ code: 1006, reason: '', error: new SwitchboardError('GAVE_UP', `no connection after ${r.maxAttempts} attempts`) });
      return;
    }
    const delay = immediate && this._attempt === 1 ? 0 : backoffDelay(this._attempt, r, this._opts.random);
    this._state = 'waiting';
    this._emit('reconnecting', { attempt: this._attempt, delay });
    if (this._state !== 'waiting') return;
    this._timers.reconnect = setTimeout(() => { delete this._timers.reconnect; this._attemptConnect(); }, delay);
  }

  _isOffline() {
    const w = this._opts.window;
    return !!w && (w.navigator ?? globalThis.navigator)?.onLine === false;
  }

  // online, or the page became visible: a client waiting to reconnect tries now; an open one
  // checks that its connection still answers.
  _wake() {
    if (this._state === 'waiting' || this._state === 'offline') {
      if (this._isOffline()) return;
      clearTimeout(this._timers.reconnect);
      delete this._timers.reconnect;
      this._attempt = 0;
      this._attemptConnect();
    } else if (this._state === 'open' || this._state === 'resuming') {
      this._probe();
    }
  }

  // offline: an open connection is probably dead, which the heartbeat settles quickly; a
  // client waiting to reconnect stops trying until the browser is online again.
  _networkDown() {
    if (this._state === 'waiting') {
      clearTimeout(this._timers.reconnect);
      delete this._timers.reconnect;
      this._state = 'offline';
    } else if (this._state === 'open' || this._state === 'resuming') {
      this._probe();
    }
  }

  async _nextUrl() {
    const o = this._opts;
    if (o.discoveryUrl && this._urlIndex % Math.max(1, this._urlList.length) === 0) {
      try {
        const found = await this._discover();
        this._urlList = [...found, ...o.urls.filter((u) => !found.includes(u))];
        this._urlIndex = 0;
      } catch (e) {
        this._emit('error', new SwitchboardError('DISCOVERY', `${o.discoveryUrl}: ${e.message}`, { cause: e }));
      }
    }
    if (!this._urlList.length) throw new SwitchboardError('DISCOVERY', 'no server url: the discovery url listed none and no url option was given');
    return this._urlList[this._urlIndex++ % this._urlList.length];
  }

  // The discovery url answers JSON: an array of WebSocket urls, or { "nodes": [...] } whose
  // entries are urls or { "url": ... }.
  async _discover() {
    const o = this._opts;
    if (typeof o.fetch !== 'function') throw new Error('no fetch to read the discovery url with');
    const ac = typeof AbortController === 'function' ? new AbortController() : null;
    const t = setTimeout(() => ac?.abort(), o.connectTimeout);
    try {
      // Bounded even if fetch ignores the signal, or the body never ends.
      const doc = await within((async () => {
        const res = await o.fetch(o.discoveryUrl, { signal: ac?.signal, cache: 'no-store' });
        if (!res.ok) throw new Error(`HTTP ${res.status}`);
        return res.json();
      })(), o.connectTimeout, () => new Error(`no answer within ${o.connectTimeout} ms`));
      const list = (Array.isArray(doc) ? doc : doc?.nodes ?? []).map((n) => (typeof n === 'string' ? n : n?.url)).filter((u) => typeof u === 'string');
      if (!list.length) throw new Error('the discovery document lists no node');
      return list;
    } finally {
      clearTimeout(t);
    }
  }

  async _getToken(reason) {
    const t = this._opts.token;
    let v;
    const ms = this._opts.connectTimeout;
    const late = new SwitchboardError('TOKEN', `the token function gave no token within ${ms} ms (connectTimeout)`);
    try {
      // A token function that never settles must not leave the client connecting forever.
      v = typeof t === 'function' ? await within((async () => t({ reason }))(), ms, () => late) : t;
    } catch (e) {
      if (e === late) throw e;
      throw new SwitchboardError('TOKEN', `the token function failed: ${e?.message ?? e}`, { cause: e });
    }
    if (v !== undefined && v !== null && typeof v !== 'string') throw new SwitchboardError('TOKEN', `the token function gave a ${typeof v}, not a string`);
    return v || undefined;
  }

  // ---- messages from the server ----------------------------------------------------------

  _onMessage(data) {
    const bytes = data instanceof ArrayBuffer ? new Uint8Array(data) : asBytes(data);
    if (!bytes) return this._protocolError(new Error('the server sent a text message (the protocol is binary)'));
    this._lastRx = Date.now();
    this._pingSentAt = 0;
    if (this._state === 'resuming') this._armConnectTimer();
    if (bytes[0] === KIND.HELLO) return this._onHello(bytes);
    if (!this._envelope) return this._protocolError(new Error('a message before the HELLO'));
    let env;
    try {
      env = this._envelope.decode(bytes);
    } catch (e) {
      return this._protocolError(e);
    }
    switch (env.kind) {
      case KIND.RESPONSE: return this._onResponse(env);
      case KIND.ERROR: return env.id ? this._onResponse(env) : this._onError(env);
      case KIND.PUSH: return this._onPush(env);
      case KIND.RESUMED: return this._onResumed(env);
      case KIND.AUTH: return this._onAuth(env);
      case KIND.PING: return undefined; // a heartbeat answer: receiving it was the point
      default: return this._protocolError(new Error(`unexpected envelope kind ${env.kind} from the server`));
    }
  }

  // Something undecodable: the connection can no longer be trusted to have delivered
  // everything, so it is dropped and resumed.
  _protocolError(e) {
    this._emit('error', new SwitchboardError('PROTOCOL', `the server sent something this client cannot read: ${e.message}`, { cause: e }));
    this._lost(CLOSE.PROTOCOL_ERROR, 'undecodable message');
  }

  _onHello(bytes) {
    let h;
    try {
      h = decodeHello(bytes);
    } catch (e) {
      if (/version/.test(e.message)) {
        this._shutdown({ code: 1000, reason: '', error: new SwitchboardError('VERSION', e.message, { cause: e }) });
        return;
      }
      this._protocolError(e);
      return;
    }
    this._hello = h;
    this._envelope = h.envelope;
    if (this._state === 'connecting') {
      this._startHeartbeat();
      if (this._session?.token) {
        this._fresh = { connId: h.connId, token: h.token };
        this._state = 'resuming';
        this._held = new Map();
        this._armConnectTimer();
        // At most MAX_POSITIONS: the direct stream, then the streams heard from most recently.
        const direct = `c:${this._session.connId}`;
        const all = [...this._positions].filter(([s]) => s !== direct);
        if (this._positions.has(direct)) all.push([direct, this._positions.get(direct)]);
        const positions = all.slice(-MAX_POSITIONS).map(([stream, p]) => ({ stream, offset: p.offset, epoch: p.epoch }));
        this._ws.send(this._envelope.encode({ kind: KIND.RESUME, body: encodeResumeBody(this._session.token, positions) }));
      } else {
        this._session = { connId: h.connId, token: h.token };
        this._positions.clear();
        this._opened(false);
      }
    } else {
      // The resumed session's HELLO (§6 step 2), or a later one: its id and token count now.
      this._session = { connId: h.connId, token: h.token };
    }
    this._save();
  }

  _opened(resumed) {
    clearTimeout(this._timers.connect);
    delete this._timers.connect;
    this._state = 'open';
    this._openedAt = Date.now();
    this._lastAcked = this._positions.get(`c:${this._session.connId}`)?.offset ?? 0n;
    this._timers.ack = setTimeout(() => this._ackTick(), this._opts.ackInterval);
    // What waited goes out first: a request made by an 'open' handler comes after it.
    for (const req of this._queue.splice(0)) this._transmit(req);
    this._emit('open', { connectionId: this._session.connId, url: this._url, resumed });
  }

  _onResumed(env) {
    if (this._state !== 'resuming') return;
    let records;
    try {
      records = decodeResumedBody(env.body);
    } catch (e) {
      this._protocolError(e);
      return;
    }
    const streams = {};
    const had = this._positions;
    this._positions = new Map();
    const held = this._held;
    this._held = new Map();
    const deliveries = [];
    for (const r of records) {
      // A stream the client had no position for is reported not recovered where the server
      // cannot tell what the client saw; if it holds no message at all (offset 0) nothing was
      // missed.
      if (!r.recovered && r.offset === 0n && !had.has(r.stream)) r.recovered = true;
      const h = held.get(r.stream);
      if (h) {
        held.delete(r.stream);
        const { envs, last, contiguous } = inOrder(h, r.epoch);
        deliveries.push(...envs);
        if (last !== null && last > r.offset) r.offset = last;
        // The replay of a stream without a position runs from the join point up to
        // RESUMED's offset: a hole in it, or a short one, lost something.
        if (!contiguous || (envs.length && last < r.offset)) r.recovered = false;
      }
      this._positions.set(r.stream, { offset: r.offset, epoch: r.epoch });
      streams[r.stream] = { recovered: r.recovered, offset: Number(r.offset), epoch: hex64(r.epoch) };
    }
    deliveries.push(...this._takeHeld(held)); // streams RESUMED does not name: a fresh start
    this._fresh = null;
    this._save();
    const gen = this._gen;
    for (const env of deliveries) {
      this._deliver(env);
      if (gen !== this._gen) return; // a listener closed the client
    }
    this._emit('resumed', { recovered: records.every((r) => r.recovered), sessionLost: false, streams });
    if (gen === this._gen && this._state === 'resuming') this._opened(true);
  }

  // ERROR with id 0: while a RESUME is unanswered it answers the RESUME (§6 step 1).
  _onError(env) {
    const text = safeText(env.body);
    if (this._state !== 'resuming') {
      this._emit('error', new SwitchboardError('SERVER', `the server reports ${env.status}: ${text}`, { status: env.status }));
      return;
    }
    if (env.status !== 400 && env.status !== 401 && env.status !== 403) {
      // The server could not resume now (503: engine unavailable, ...): try again later.
      this._emit('error', new SwitchboardError('SERVER', `resume failed (${env.status}: ${text}); trying again`, { status: env.status }));
      this._lost(1006, 'resume failed');
      return;
    }
    // The session is gone (expired, the server restarted, another identity): this connection
    // carries on as the fresh session its HELLO described, and nothing could be recovered.
    const streams = {};
    for (const [s, p] of this._positions) streams[s] = { recovered: false, offset: Number(p.offset), epoch: hex64(p.epoch) };
    this._session = this._fresh;
    this._fresh = null;
    this._positions = new Map();
    const deliveries = this._takeHeld(this._held);
    this._held = new Map();
    this._save();
    const gen = this._gen;
    for (const env of deliveries) {
      this._deliver(env);
      if (gen !== this._gen) return;
    }
    this._emit('resumed', { recovered: false, sessionLost: true, status: env.status, reason: text, streams });
    if (gen === this._gen && this._state === 'resuming') this._opened(false);
  }

  // Pushes held while resuming for streams that RESUMED does not settle: each stream's in
  // offset order, once each, from its first (a fresh start); the positions are taken.
  _takeHeld(held) {
    const out = [];
    for (const [stream, h] of held) {
      const { envs, last } = inOrder(h, h[h.length - 1].epoch);
      if (last === null) continue;
      this._positions.set(stream, { offset: last, epoch: envs[0].epoch });
      out.push(...envs);
    }
    return out;
  }

  _onResponse(env) {
    const req = this._pending.get(env.id);
    if (!req) return; // answered after its timeout, or not ours
    const raw = env.body;
    let body;
    try {
      body = decodeBody(raw, req.responseType);
    } catch (e) {
      this._settle(req, e);
      return;
    }
    const res = { status: env.status, ok: env.status >= 200 && env.status < 300, body, raw };
    if (env.kind === KIND.ERROR) res.error = true;
    this._settle(req, null, Object.assign(extraFields(env), res));
  }

  _onPush(env) {
    if (env.stream) {
      const pos = this._positions.get(env.stream);
      const resuming = this._state === 'resuming';
      const strict = resuming || this._draining; // only the next offset: a resume follows
      const last = pos && pos.epoch === env.epoch ? pos.offset : null;
      if (last === null && pos) {
        // Another epoch on a live connection: the stream's history was lost. A resume makes
        // the server say so (recovered: false) for this stream.
        if (!strict) this._resumeNow(`stream ${env.stream}: epoch ${hex64(env.epoch)} after ${hex64(pos.epoch)}`);
        return;
      }
      if (resuming && !pos) {
        // No position: the server replays such a stream from where the session joined it,
        // which may be above offset 1, and live pushes may come before the replay (§6). Held
        // until RESUMED, then delivered in offset order, once each.
        let held = this._held.get(env.stream);
        if (!held) this._held.set(env.stream, (held = []));
        held.push(env);
        return;
      }
      const expected = last === null ? env.offset : last + 1n;
      if (env.offset < expected) return; // a duplicate
      if (env.offset > expected) {
        if (!strict) this._resumeNow(`stream ${env.stream}: offset ${env.offset} after ${last}`);
        return; // while resuming, the replay brings it in order
      }
      this._positions.delete(env.stream); // re-inserted last: the Map's order is recency
      this._positions.set(env.stream, { offset: env.offset, epoch: env.epoch });
    }
    this._deliver(env);
  }

  // A gap on a live connection: reconnect at once and resume (§4). Requests in flight can
  // still be answered on this connection, so the client first waits for them (at most
  // _gapDrainMs): meanwhile new requests wait in the queue and pushes are taken only at the
  // next offset of their stream (the resume replays the rest).
  _resumeNow(why) {
    this._emit('error', new SwitchboardError('GAP', `${why}: resuming`));
    if (this._state !== 'open' || this._draining) return;
    if (!this._pending.size) {
      this._lost(1000, 'gap', { immediate: true });
      return;
    }
    this._draining = true;
    this._timers.drain = setTimeout(() => this._endDrain(), this._gapDrainMs);
  }

  _endDrain() {
    if (this._draining && this._state === 'open') this._lost(1000, 'gap', { immediate: true });
  }

  _deliver(env) {
    const raw = env.body;
    const base = {
      ...extraFields(env), method: METHOD_NAME[env.method] ?? env.method, url: env.url, stream: env.stream,
      offset: Number(env.offset), epoch: hex64(env.epoch), raw,
    };
    const bodies = {};
    for (const l of this._listeners) {
      if (!l._active || (l._methodNumber !== null && l._methodNumber !== env.method)) continue;
      const m = l._match(env.url);
      if (!m) continue;
      const type = l._responseType;
      if (!(type in bodies)) {
        try {
          bodies[type] = decodeBody(raw, type);
        } catch (e) {
          this._emit('error', new SwitchboardError('BAD_BODY', `push ${base.method} ${env.url}: ${e.message}`, { push: base }));
          bodies[type] = e;
        }
      }
      if (bodies[type] instanceof SwitchboardError) continue;
      try {
        l._deliver({ ...base, params: m.params, query: m.query, body: bodies[type] });
      } catch (e) {
        this._report(e);
      }
    }
  }

  async _onAuth(env) {
    let info = {};
    try { info = JSON.parse(safeText(env.body)) ?? {}; } catch { /* keep {} */ }
    if (env.status === 200) {
      this._emit('auth', { status: 200, expires: info.expires });
      return;
    }
    if (env.status !== 401 || info.expires === undefined) {
      this._emit('error', new SwitchboardError('TOKEN', `the server refused the new token (${env.status}: ${info.error ?? safeText(env.body)})`, { status: env.status }));
      this._emit('auth', { status: env.status, error: info.error });
      return;
    }
    // The server asks for a new token before `expires` (§9).
    this._emit('auth', { status: 401, expires: info.expires });
    if (typeof this._opts.token !== 'function') {
      this._emit('error', new SwitchboardError('TOKEN', 'the server asks for a new token, but the token option is a string, not a function'));
      return;
    }
    const gen = this._gen;
    let token;
    try {
      token = await this._getToken('refresh');
    } catch (e) {
      this._emit('error', e);
      return;
    }
    if (gen !== this._gen || !this._ws || !token) return;
    this._ws.send(this._envelope.encode({ kind: KIND.AUTH, body: utf8.encode(token) }));
  }

  // ---- heartbeats and acknowledgements ---------------------------------------------------

  // A browser cannot see WebSocket pings, so the client checks the connection itself: after
  // heartbeatInterval without a message it sends PING (§10); without any message for
  // heartbeatTimeout after that, the connection is dead and is dropped.
  _startHeartbeat() {
    const hb = this._hello.heartbeatMs;
    this._hbInterval = this._opts.heartbeatInterval || Math.max(1000, Math.min(25000, Math.floor(hb / 2) || 25000));
    this._hbTimeout = this._opts.heartbeatTimeout;
    this._lastRx = Date.now();
    this._pingSentAt = 0;
    this._heartbeatTick();
  }

  _heartbeatTick() {
    const now = Date.now();
    if (this._pingSentAt && now - this._pingSentAt >= this._hbTimeout) {
      const error = new SwitchboardError('HEARTBEAT', `no answer from the server within ${this._hbTimeout} ms: the connection is dead`);
      if (this._state === 'open') this._emit('error', error);
      this._lost(1006, 'heartbeat timeout', { hard: true, error });
      return;
    }
    if (!this._pingSentAt && now - this._lastRx >= this._hbInterval) this._probe();
    const step = Math.max(20, Math.min(this._hbInterval, this._hbTimeout) / 4);
    this._timers.heartbeat = setTimeout(() => this._heartbeatTick(), step);
  }

  _probe() {
    if (!this._ws || !this._envelope || this._pingSentAt) return;
    this._pingSentAt = Date.now();
    this._ws.send(this._envelope.encode({ kind: KIND.PING, id: this._pingId }));
    this._pingId = this._pingId >= 0xffffffff ? 1 : this._pingId + 1;
  }

  // From time to time the position in the direct stream is acknowledged (§7), so that the
  // server can trim what was delivered.
  _ackTick() {
    const stream = `c:${this._session.connId}`;
    const pos = this._positions.get(stream);
    if (pos && pos.offset !== this._lastAcked && this._state === 'open') {
      this._ws.send(this._envelope.encode({ kind: KIND.ACK, body: encodePositions([{ stream, offset: pos.offset, epoch: pos.epoch }]) }));
      this._lastAcked = pos.offset;
    }
    this._save();
    this._timers.ack = setTimeout(() => this._ackTick(), this._opts.ackInterval);
  }

  // ---- keeping the session across a page reload (persist) --------------------------------

  _openStorage() {
    const p = this._opts.persist;
    if (!p) return null;
    if (p === true) {
      try {
        return this._opts.window?.sessionStorage ?? globalThis.sessionStorage ?? null;
      } catch {
        return null; // storage denied (a sandboxed frame, ...)
      }
    }
    return p;
  }

  get _storageKey() {
    return this._opts.storageKey ?? `switchboard:${this._opts.urls[0] ?? this._opts.discoveryUrl}`;
  }

  _load() {
    if (!this._storage) return;
    try {
      const s = JSON.parse(this._storage.getItem(this._storageKey));
      if (!s || s.v !== 1 || typeof s.token !== 'string') return;
      this._session = { connId: s.connId, token: s.token };
      this._positions = new Map(s.positions.map(([stream, o, e]) => [stream, { offset: BigInt(o), epoch: BigInt(e) }]));
    } catch { return; /* nothing usable stored */ }
    this._save(); // the token leaves storage at once (unless the page is hidden)
  }

  // Saved: the session id, the positions, and the resume token when no other page can pick
  // it up and use it while this client does: outside a page, while the page is hidden or
  // going away (pagehide), or once the client is closed.
  _save() {
    if (!this._storage || !this._session) return;
    const withToken = !this._pageLifecycle || this._hidden || this._state === 'closed';
    const s = {
      v: 1, connId: this._session.connId, ...(withToken ? { token: this._session.token } : {}),
      positions: [...this._positions].map(([stream, p]) => [stream, String(p.offset), String(p.epoch)]),
    };
    try {
      this._storage.setItem(this._storageKey, JSON.stringify(s));
    } catch { /* full or denied: the session simply is not kept */ }
  }
}

/** createClient(options) is new SwitchboardClient(options). */
export function createClient(options) {
  return new SwitchboardClient(options);
}

// The envelope's application fields (those beyond the protocol's own).
function extraFields(env) {
  const out = {};
  for (const k of Object.keys(env)) if (!ENVELOPE_FIELDS.includes(k)) out[k] = env[k];
  return out;
}

// Pushes of one stream in offset order, without duplicates and other epochs: { envs, last
// (the last offset, or null), contiguous }.
function inOrder(list, epoch) {
  const sorted = list.filter((e) => e.epoch === epoch).sort((a, b) => (a.offset < b.offset ? -1 : a.offset > b.offset ? 1 : 0));
  const envs = [];
  let last = null;
  let contiguous = true;
  for (const e of sorted) {
    if (last !== null && e.offset <= last) continue;
    if (last !== null && e.offset !== last + 1n) contiguous = false;
    envs.push(e);
    last = e.offset;
  }
  return { envs, last, contiguous };
}

// The longest prefix of `s` of at most `max` UTF-8 bytes, never cutting a character (a lone
// surrogate counts as the 3 bytes of U+FFFD).
function utf8Prefix(s, max) {
  let n = 0;
  let i = 0;
  for (const ch of s) {
    const cp = ch.codePointAt(0);
    n += cp < 0x80 ? 1 : cp < 0x800 ? 2 : cp < 0x10000 ? 3 : 4;
    if (n > max) break;
    i += ch.length;
  }
  return s.slice(0, i);
}

// `promise`, or a rejection with error() after `ms` (none when ms is not a finite positive).
function within(promise, ms, error) {
  if (!(ms > 0 && ms < Infinity)) return promise;
  let t;
  const timeout = new Promise((_, reject) => { t = setTimeout(() => reject(error()), ms); });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(t));
}

function safeText(bytes) {
  try {
    return decodeUtf8(bytes);
  } catch {
    return `<${bytes.length} bytes>`;
  }
}

function rethrow(e) {
  setTimeout(() => { throw e; }, 0);
}

export default SwitchboardClient;
