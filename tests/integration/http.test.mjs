// Plain HTTP/1.1 to the same app (src/ws/http_conn.c, src/rest/app.c, src/rest/static.c)
// through tests/fixtures/resttest.c, with real curl and raw sockets:
//   - the same routes through a WebSocket (envelopes) and through curl, compared field by
//     field (status and body), errors and the error handler included;
//   - request and response headers, HEAD, 405's Allow, 501 for other methods;
//   - keep-alive (curl reusing its connection, raw sockets), HTTP/1.0, Connection: close,
//     pipelining (answers in order, also when the first ones answer later), the idle
//     keep-alive timeout, an upgrade after plain requests on the same connection;
//   - chunked bodies (extensions, trailers, split across writes), malformed framing;
//   - 413: announced by Content-Length (before the body is sent), chunked, the 1 MiB default;
//   - static files: content types, index.html, the redirect to the trailing '/', ETag/304,
//     and traversal attempts (/../, encoded, encoded '/', absolute, backslash, NUL, symbolic
//     links out of the folder, hidden files) refused without any of the secret leaking;
//   - an asynchronous handler whose client disconnected: sb_respond returns SB_ECLOSED.
import { test, describe, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { execFile, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { HubClient, startServer } from './hub.mjs';
import { upgradeRequest } from './lib.mjs';
import { METHOD } from './proto.mjs';

const BIN = process.env.SB_RESTTEST || path.resolve(import.meta.dirname, '../../build/tests/resttest');
const FIXTURE = path.resolve(import.meta.dirname, '../fixtures/static');
const MAX_BODY = 65536;
const KEEPALIVE_MS = 400;

try {
  execFileSync('curl', ['--version'], { stdio: 'ignore' });
} catch {
  throw new Error('curl is required by the plain-HTTP tests (scripts/setup.sh installs it)');
}

// ---------------------------------------------------------------------------------------------
// Fixtures: a copy of tests/fixtures/static with links out of it, a secret beside it
// ---------------------------------------------------------------------------------------------

const SECRET = 'the secret beside the folder';
let tmp;
let pub;
function makeFolder() {
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'sb-http-'));
  pub = path.join(tmp, 'public');
  fs.cpSync(FIXTURE, pub, { recursive: true });
  fs.writeFileSync(path.join(tmp, 'secret.txt'), SECRET);
  fs.symlinkSync('../secret.txt', path.join(pub, 'escape.txt')); // a file link out
  fs.symlinkSync('..', path.join(pub, 'up'));                      // a directory link out
  fs.symlinkSync('app.js', path.join(pub, 'inside.js'));           // a link inside: refused too
}

let srv;
let ws;
let base;
before(async () => {
  makeFolder();
  srv = await startServer(BIN, ['--static', pub, '--max-body', MAX_BODY, '--keepalive-ms', KEEPALIVE_MS],
    { name: 'resttest' });
  base = `http://127.0.0.1:${srv.port}`;
  ws = await HubClient.connect(srv.port);
});
after(async () => {
  if (ws) ws.destroy();
  if (srv) {
    const r = await srv.stop();
    assert.equal(r.killed, false, 'resttest needed SIGKILL');
    assert.equal(srv.sanitizerReport(), null);
  }
  if (tmp) fs.rmSync(tmp, { recursive: true, force: true });
});

// ---------------------------------------------------------------------------------------------
// Clients
// ---------------------------------------------------------------------------------------------

/** Parses back-to-back HTTP responses from `buf` (1xx heads skipped). `bodiless[i]`: the i-th
 *  final response has no body whatever its Content-Length says (HEAD). */
function parseResponses(buf, bodiless = []) {
  const out = [];
  let at = 0;
  while (at < buf.length) {
    const end = buf.indexOf('\r\n\r\n', at);
    if (end < 0) throw new Error(`incomplete head: ${JSON.stringify(buf.subarray(at).toString('latin1').slice(0, 200))}`);
    const lines = buf.subarray(at, end).toString('latin1').split('\r\n');
    const m = /^HTTP\/1\.1 (\d{3}) ?(.*)$/.exec(lines[0]);
    if (!m) throw new Error(`bad status line ${JSON.stringify(lines[0])}`);
    const headers = {};
    for (const l of lines.slice(1)) {
      const i = l.indexOf(':');
      const k = l.slice(0, i).toLowerCase();
      (headers[k] ??= []).push(l.slice(i + 1).trim());
    }
    at = end + 4;
    const status = Number(m[1]);
    if (status < 200) continue;
    const len = bodiless[out.length] || status === 204 || status === 304 ? 0 : Number(headers['content-length']?.[0] ?? 0);
    if (at + len > buf.length) throw new Error(`body cut short: want ${len}, have ${buf.length - at}`);
    out.push({ status, reason: m[2], headers, header: (k) => headers[k.toLowerCase()]?.[0], body: buf.subarray(at, at + len) });
    at += len;
  }
  return out;
}

/** Runs curl; resolves with { responses, stderr }. */
function curlRaw(args, { input } = {}) {
  return new Promise((resolve, reject) => {
    const p = execFile('curl', ['-sS', '--include', ...args], { encoding: 'buffer', maxBuffer: 64 << 20 },
      (err, stdout, stderr) => {
        if (err && err.code !== 0 && !stdout.length) return reject(new Error(`curl ${args.join(' ')}: ${err.message} ${stderr}`));
        try {
          resolve({ responses: parseResponses(stdout, args.includes('-I') ? [true, true, true] : []), stderr: stderr.toString() });
        } catch (e) { reject(new Error(`curl ${args.join(' ')}: ${e.message}`)); }
      });
    if (input !== undefined) p.stdin.end(input);
    else p.stdin.end();
  });
}

async function curl(method, url, { body, headers = [], extra = [] } = {}) {
  const args = ['--path-as-is', '-X', method];
  for (const h of headers) args.push('-H', h);
  if (body !== undefined) args.push('--data-binary', '@-');
  args.push(...extra, base + url);
  const { responses } = await curlRaw(args, { input: body });
  assert.equal(responses.length, 1, `curl ${method} ${url}: one response`);
  return responses[0];
}

/** A raw keep-alive connection: write bytes, read responses one at a time. */
class Conn {
  static connect(port = srv.port) {
    return new Promise((resolve, reject) => {
      const c = new Conn();
      c.sock = net.connect(port, '127.0.0.1', () => resolve(c));
      c.sock.once('error', reject);
      c.buf = Buffer.alloc(0);
      c.ended = false;
      c.waiters = [];
      c.sock.on('data', (d) => { c.buf = Buffer.concat([c.buf, d]); c.wake(); });
      c.sock.on('end', () => { c.ended = true; c.endedAt = Date.now(); c.wake(); });
      c.sock.on('close', () => { c.ended = true; c.endedAt ??= Date.now(); c.wake(); });
      c.sock.on('error', () => {});
    });
  }
  wake() { const w = this.waiters; this.waiters = []; for (const f of w) f(); }
  write(b) { return new Promise((r) => this.sock.write(b, r)); }
  /** The next whole response (HEAD: `bodiless`). */
  async response({ bodiless = false, timeoutMs = 5000 } = {}) {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      let r = null;
      try {
        const all = parseResponsesPrefix(this.buf, bodiless);
        if (all) { r = all.res; this.buf = this.buf.subarray(all.used); }
      } catch (e) { throw new Error(`${e.message}; have ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`); }
      if (r) return r;
      if (this.ended) throw new Error(`connection ended before a response; have ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`);
      if (Date.now() > deadline) throw new Error(`no response within ${timeoutMs} ms; have ${JSON.stringify(this.buf.toString('latin1').slice(0, 300))}`);
      await new Promise((res) => { this.waiters.push(res); setTimeout(res, 50); });
    }
  }
  async waitEnd(timeoutMs = 3000) {
    const deadline = Date.now() + timeoutMs;
    while (!this.ended && Date.now() < deadline) await new Promise((res) => { this.waiters.push(res); setTimeout(res, 50); });
    return this.ended;
  }
  destroy() { this.sock.destroy(); }
}

/** Resident memory of a process, KiB. */
function rssKiB(pid) {
  const m = /VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m[1]);
}

/** A raw connection that only counts what arrives (status lines and bytes), for answers too
 *  large to keep: every body byte of big.bin is 'a', so a status line cannot hide in one. */
function countingConn() {
  return new Promise((resolve, reject) => {
    const state = { bytes: 0, responses: 0, ended: false };
    const waiters = new Set();
    let tail = '';
    const sock = net.connect(srv.port, '127.0.0.1', () => resolve({
      sock,
      state,
      until(pred, timeoutMs) {
        return new Promise((res, rej) => {
          const w = () => { if (pred(state)) { clearTimeout(t); waiters.delete(w); res(); } };
          const t = setTimeout(() => { waiters.delete(w); rej(new Error(`timeout: ${JSON.stringify(state)}`)); }, timeoutMs);
          waiters.add(w);
          w();
        });
      },
    }));
    sock.once('error', reject);
    const wake = () => { for (const w of [...waiters]) w(); };
    sock.on('data', (d) => {
      state.bytes += d.length;
      const text = tail + d.toString('latin1');
      state.responses += (text.match(/HTTP\/1\.1 200 OK\r\n/g) || []).length -
        (tail.match(/HTTP\/1\.1 200 OK\r\n/g) || []).length;
      tail = text.slice(-32);
      wake();
    });
    sock.on('close', () => { state.ended = true; wake(); });
    sock.on('error', () => {});
  });
}

/** The first final response in buf if it is complete: { res, used }, else null. */
function parseResponsesPrefix(buf, bodiless) {
  let at = 0;
  for (;;) {
    const end = buf.indexOf('\r\n\r\n', at);
    if (end < 0) return null;
    const head = buf.subarray(at, end).toString('latin1');
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(head)?.[1]);
    if (!status) throw new Error(`bad status line ${JSON.stringify(head.split('\r\n')[0])}`);
    if (status < 200) { at = end + 4; continue; }
    const cl = /\r\ncontent-length: *(\d+)/i.exec(head);
    const len = bodiless || status === 204 || status === 304 ? 0 : Number(cl?.[1] ?? 0);
    if (buf.length < end + 4 + len) return null;
    return { res: parseResponses(buf.subarray(at, end + 4 + len), [bodiless])[0], used: end + 4 + len };
  }
}

const get = (url, host = 'a') => `GET ${url} HTTP/1.1\r\nHost: ${host}\r\n\r\n`;

async function wsCall(url, { method = 'GET', body = '' } = {}) {
  const r = await ws.request(url, body, { method: METHOD[method] });
  return { status: r.status, body: Buffer.from(r.body) };
}

async function stats() {
  const r = await wsCall('/admin/stats?token=ok');
  const m = /requests=(\d+) sends=(\d+) closed=(\d+)/.exec(r.body.toString());
  return { requests: Number(m[1]), closed: Number(m[3]) };
}

// ---------------------------------------------------------------------------------------------
// The same routes over WebSocket and over curl
// ---------------------------------------------------------------------------------------------

describe('the same route through a WebSocket and through curl', () => {
  const binary = Buffer.from([0, 1, 2, 0xff, 0xfe, 10, 13, 0x80]);
  const cases = [
    { method: 'GET', url: '/rooms/42?x=a%20b&as=alice' },
    { method: 'GET', url: '/rooms/J%C3%BCrgen' },
    { method: 'GET', url: '/rooms/special' },
    { method: 'GET', url: '/files/css/app.css' },
    { method: 'POST', url: '/rooms/1/messages', body: 'hello from both' },
    { method: 'POST', url: '/rooms/3/messages', body: '' },
    { method: 'PUT', url: '/any' },
    { method: 'PATCH', url: '/any' },
    { method: 'DELETE', url: '/any' },
    { method: 'GET', url: '/json' },
    { method: 'POST', url: '/echo', body: binary },
    { method: 'PUT', url: '/echo', body: 'x'.repeat(5000) },
    { method: 'GET', url: '/empty' },
    { method: 'GET', url: '/async/30' },
    { method: 'GET', url: '/nowhere' },                 // 404 from the router
    { method: 'DELETE', url: '/rooms/3' },              // 405
    { method: 'GET', url: '/rooms/3/messages' },        // 405
    { method: 'GET', url: '/rooms/%zz' },               // 400: malformed escape
    { method: 'GET', url: '/rooms/1?x=%zz' },           // 400: malformed query
    { method: 'GET', url: '/admin/stats' },             // 401 from middleware
    { method: 'GET', url: '/administrator' },           // prefix covers whole segments
    { method: 'GET', url: '/boom' },                    // 500, no internal detail
    { method: 'GET', url: '/throw' },                   // 503, no internal detail
  ];
  for (const c of cases) {
    test(`${c.method} ${c.url}${c.body !== undefined ? ` (${c.body.length}-byte body)` : ''}`, async () => {
      const viaWs = await wsCall(c.url, { method: c.method, body: c.body ?? '' });
      const viaCurl = await curl(c.method, c.url, { body: c.body });
      assert.equal(viaCurl.status, viaWs.status, 'status');
      assert.deepEqual(viaCurl.body, viaWs.body, `body: curl ${JSON.stringify(viaCurl.body.toString('latin1'))}, ws ${JSON.stringify(viaWs.body.toString('latin1'))}`);
      assert.doesNotMatch(viaCurl.body.toString(), /hunter2|10\.0\.0\.7/);
      if (viaCurl.status !== 204) assert.equal(viaCurl.header('content-length'), String(viaCurl.body.length));
      else assert.equal(viaCurl.header('content-length'), undefined, '204 has no Content-Length');
      assert.match(viaCurl.header('date') ?? '', /^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$/);
    });
  }
  test('middleware runs once per request over HTTP too (the counter grows by one each)', async () => {
    const a = (await stats()).requests;
    await curl('GET', '/rooms/1');
    await curl('GET', '/nowhere');
    const b = (await stats()).requests;
    assert.equal(b - a, 3); // two over HTTP, the stats call itself over WebSocket
  });
});

describe('headers', () => {
  test('Content-Type: JSON-looking bodies, text, bytes', async () => {
    assert.equal((await curl('GET', '/json')).header('content-type'), 'application/json');
    assert.equal((await curl('GET', '/nowhere')).header('content-type'), 'application/json');
    assert.equal((await curl('GET', '/rooms/1')).header('content-type'), 'text/plain; charset=utf-8');
    assert.equal((await curl('POST', '/echo', { body: Buffer.from([0, 1, 2]) })).header('content-type'), 'application/octet-stream');
    assert.equal((await curl('GET', '/empty')).header('content-type'), undefined);
  });
  test('sb_req_header: the request headers over HTTP, NULL over WebSocket', async () => {
    const r = await curl('GET', '/headers', { headers: ['X-Test: value 1', 'User-Agent: switchboard-test/1'] });
    assert.deepEqual(JSON.parse(r.body), { http: 1, ua: 'switchboard-test/1', x: 'value 1' });
    assert.deepEqual(JSON.parse((await wsCall('/headers')).body), { http: 0, ua: null, x: null });
  });
  test('sb_respond_header: set, Content-Type overridden, no injection, framing headers refused', async () => {
    const r = await curl('GET', '/typed');
    assert.equal(r.status, 200, r.body.toString());
    assert.equal(r.header('content-type'), 'text/csv');
    assert.deepEqual(r.headers['content-type'], ['text/csv']);
    assert.equal(r.header('x-custom'), 'yes');
    assert.equal(r.header('injected'), undefined);
    assert.equal(r.body.toString(), 'a,b\n1,2\n');
    assert.equal((await wsCall('/typed')).status, 200, 'over WebSocket the call checks and returns 0');
  });
  test('405 carries Allow', async () => {
    const r = await curl('DELETE', '/rooms/3');
    assert.equal(r.status, 405);
    assert.equal(r.header('allow'), 'GET, HEAD');
  });
  test('a method the router does not route: 501 through the error handler', async () => {
    const r = await curl('OPTIONS', '/rooms/1');
    assert.equal(r.status, 501);
    assert.equal(r.body.toString(), '{"error":"Not Implemented"}');
  });
  test('HEAD: the GET route, its headers, no body', async () => {
    const c = await Conn.connect();
    await c.write('HEAD /rooms/7 HTTP/1.1\r\nHost: a\r\n\r\n' + get('/json'));
    const h = await c.response({ bodiless: true });
    assert.equal(h.status, 200);
    assert.equal(h.header('content-length'), String('room=7 user=anonymous q=-'.length));
    const g = await c.response(); // were a body sent after the HEAD response, this would break
    assert.equal(g.body.toString(), '{"ok":true,"n":1}');
    c.destroy();
    const viaCurl = await curlRaw(['-I', `${base}/rooms/7`]);
    assert.equal(viaCurl.responses[0].status, 200);
  });
  test('an absolute-form target is routed by its path', async () => {
    const c = await Conn.connect();
    await c.write(`GET http://example.com/rooms/5 HTTP/1.1\r\nHost: example.com\r\n\r\n`);
    assert.equal((await c.response()).body.toString(), 'room=5 user=anonymous q=-');
    c.destroy();
  });
});

// ---------------------------------------------------------------------------------------------
// The longest inputs of every formatting path in app.c (response head, Allow, error bodies)
// ---------------------------------------------------------------------------------------------

/** The response headers /many?fill=1 sets (tests/fixtures/resttest.c): 8192 bytes of lines. */
function fillHeaders() {
  const line = (name, len, ch) => [name, ch.repeat(len - name.length - ': \r\n'.length)];
  const out = [line('X-First', 300, 'f')];
  for (let i = 0; i < 39; i++) out.push(line(`X-Fill-${String(i).padStart(2, '0')}`, 200, String.fromCharCode(97 + (i % 26))));
  out.push(line('X-Last', 92, 'z'));
  return out;
}

/** Checks the raw head of one response: CRLF lines only, no NUL, no bare CR or LF; returns
 *  [name, value] pairs in order. */
function strictHead(raw) {
  const end = raw.indexOf('\r\n\r\n');
  assert.ok(end > 0, 'a complete head');
  const head = raw.subarray(0, end).toString('latin1');
  assert.equal(head.indexOf('\0'), -1, 'no NUL byte in the head');
  const lines = head.split('\r\n');
  for (const l of lines) assert.ok(!/[\r\n]/.test(l), `a bare CR or LF in ${JSON.stringify(l.slice(0, 80))}`);
  return {
    statusLine: lines[0],
    fields: lines.slice(1).map((l) => {
      const i = l.indexOf(': ');
      assert.ok(i > 0, `a field line: ${JSON.stringify(l.slice(0, 80))}`);
      return [l.slice(0, i), l.slice(i + 2)];
    }),
    bodyAt: end + 4,
  };
}

describe('the longest responses are whole and well-formed', () => {
  const filled = fillHeaders();
  assert.equal(filled.reduce((n, [k, v]) => n + k.length + v.length + 4, 0), 8192);

  for (const [label, version, extra, conn] of [
    ['HTTP/1.1 keep-alive', 'HTTP/1.1', '', undefined],
    ['HTTP/1.0 keep-alive', 'HTTP/1.0', 'Connection: keep-alive\r\n', 'keep-alive'],
    ['Connection: close', 'HTTP/1.1', 'Connection: close\r\n', 'close'],
  ]) {
    test(`a 405 with the longest Allow under 8 KiB of response headers (${label})`, async () => {
      const sock = net.connect(srv.port, '127.0.0.1');
      await new Promise((res, rej) => { sock.once('connect', res); sock.once('error', rej); });
      let raw = Buffer.alloc(0);
      sock.on('data', (d) => { raw = Buffer.concat([raw, d]); });
      const ended = new Promise((res) => sock.once('close', res));
      sock.write(`PUT /many?fill=1 ${version}\r\nHost: a\r\n${extra}Content-Length: 0\r\n\r\n`);
      const body = '{"error":"Method Not Allowed","allow":["GET","POST","PATCH","DELETE"]}';
      const deadline = Date.now() + 5000;
      while (!(raw.indexOf('\r\n\r\n') > 0 && raw.length >= raw.indexOf('\r\n\r\n') + 4 + body.length) &&
             Date.now() < deadline) await sleep(20);
      const h = strictHead(raw);
      assert.equal(h.statusLine, 'HTTP/1.1 405 Method Not Allowed');
      const want = [['Date', h.fields[0]?.[1]], ...filled, ['Content-Type', 'application/json'],
        ['Content-Length', String(body.length)], ['Allow', 'GET, HEAD, POST, PATCH, DELETE']];
      if (conn) want.push(['Connection', conn]);
      assert.match(h.fields[0][1], /^[A-Z][a-z]{2}, \d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d:\d\d GMT$/);
      assert.deepEqual(h.fields.map(([k]) => k), want.map(([k]) => k));
      assert.deepEqual(h.fields, want);
      assert.equal(raw.subarray(h.bodyAt, h.bodyAt + body.length).toString('latin1'), body);
      if (conn === 'close') {
        await Promise.race([ended, sleep(3000)]);
        assert.equal(raw.length, h.bodyAt + body.length, 'nothing after the body');
        sock.destroy();
        return;
      }
      // The framing held: the connection answers the next request, and nothing came between.
      const at = raw.length;
      assert.equal(at, h.bodyAt + body.length, 'nothing after the body');
      sock.write(`GET /json ${version}\r\nHost: a\r\n${extra}\r\n`);
      const until = Date.now() + 5000;
      while (raw.length < at + 20 || raw.indexOf('{"ok":true,"n":1}', at) < 0) {
        if (Date.now() > until) assert.fail(`no second answer: ${JSON.stringify(raw.subarray(at).toString('latin1'))}`);
        await sleep(20);
      }
      assert.match(raw.subarray(at).toString('latin1'), /^HTTP\/1\.1 200 OK\r\n/);
      sock.destroy();
    });
  }

  test('GET and HEAD with 8 KiB of response headers: every line, then the next request', async () => {
    const c = await Conn.connect();
    await c.write('GET /many?fill=1 HTTP/1.1\r\nHost: a\r\n\r\nHEAD /many?fill=1 HTTP/1.1\r\nHost: a\r\n\r\n' + get('/json'));
    const g = await c.response();
    const hd = await c.response({ bodiless: true });
    const j = await c.response();
    for (const r of [g, hd]) {
      assert.equal(r.status, 200);
      for (const [k, v] of filled) assert.deepEqual(r.headers[k.toLowerCase()], [v], k);
      assert.equal(r.header('content-type'), 'text/plain; charset=utf-8');
      assert.equal(r.header('content-length'), '4');
      assert.equal(r.header('x-over'), undefined);
    }
    assert.equal(g.body.toString(), 'many');
    assert.equal(j.body.toString(), '{"ok":true,"n":1}');
    c.destroy();
    // The same through curl, which rejects a malformed head.
    const viaCurl = await curl('GET', '/many?fill=1');
    assert.equal(viaCurl.status, 200);
    assert.equal(viaCurl.header('x-first'), filled[0][1]);
    assert.equal(viaCurl.header('x-last'), filled.at(-1)[1]);
  });

  test('a header line that ends exactly at the end of its buffer keeps its CRLF', async () => {
    // X-First is a 300-byte first line: the header buffer is allocated to exactly that size.
    const r = await curl('PATCH', '/many?fill=1');
    assert.equal(r.status, 200);
    assert.equal(r.header('x-first'), 'f'.repeat(289));
    assert.equal(r.header('x-fill-00'), 'a'.repeat(187));
  });

  test('sb_fail with a 4 KiB detail: the whole error body, the longest reason, no detail', async () => {
    for (const [status, reason] of [[511, 'Network Authentication Required'], [404, 'Not Found'],
      [599, 'Internal Server Error'], [405, 'Method Not Allowed'], [200, 'Internal Server Error']]) {
      const code = status === 200 ? 500 : status;
      const want = status === 405 ? '{"error":"Method Not Allowed","allow":[]}' : `{"error":"${reason}"}`;
      const r = await curl('GET', `/fail/${status}`);
      assert.equal(r.status, code, `/fail/${status}`);
      assert.equal(r.body.toString(), want, `/fail/${status}`);
      assert.equal(r.header('content-length'), String(want.length));
      const w = await wsCall(`/fail/${status}`);
      assert.equal(w.status, code);
      assert.equal(w.body.toString(), want);
    }
  });

  test('the 405 over WebSocket lists the same methods', async () => {
    const w = await wsCall('/many?fill=1', { method: 'PUT' });
    assert.equal(w.status, 405);
    assert.equal(w.body.toString(), '{"error":"Method Not Allowed","allow":["GET","POST","PATCH","DELETE"]}');
    assert.equal((await wsCall('/many?fill=1')).body.toString(), 'many');
  });
});

// ---------------------------------------------------------------------------------------------
// Connections
// ---------------------------------------------------------------------------------------------

describe('keep-alive and pipelining', () => {
  test('curl reuses its connection for several requests', async () => {
    const { responses, stderr } = await curlRaw(['-v', `${base}/json`, `${base}/rooms/1`, `${base}/rooms/2`]);
    assert.deepEqual(responses.map((r) => r.status), [200, 200, 200]);
    assert.equal(responses[2].body.toString(), 'room=2 user=anonymous q=-');
    assert.match(stderr, /Re-using existing connection/);
    assert.equal((stderr.match(/Connected to/g) ?? []).length, 1, 'one TCP connection');
  });
  test('several requests one after the other on one raw connection', async () => {
    const c = await Conn.connect();
    for (let i = 0; i < 5; i++) {
      await c.write(get(`/rooms/${i}`));
      const r = await c.response();
      assert.equal(r.body.toString(), `room=${i} user=anonymous q=-`);
      assert.equal(r.header('connection'), undefined);
    }
    assert.equal(c.ended, false);
    c.destroy();
  });
  test('pipelined requests are answered in order, also when the first answers later', async () => {
    const c = await Conn.connect();
    await c.write(get('/async/120') + get('/async/10') + get('/json') +
      'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 3\r\n\r\nabc' + get('/async/0'));
    const bodies = [];
    for (let i = 0; i < 5; i++) bodies.push((await c.response()).body.toString());
    assert.deepEqual(bodies, ['late', 'late', '{"ok":true,"n":1}', 'abc', 'late']);
    c.destroy();
  });
  test('500 pipelined requests in one write: all answered, in order', async () => {
    const c = await Conn.connect();
    let req = '';
    for (let i = 0; i < 500; i++) req += get(`/rooms/${i}`);
    await c.write(req);
    for (let i = 0; i < 500; i++) assert.equal((await c.response()).body.toString(), `room=${i} user=anonymous q=-`);
    c.destroy();
  });
  test('behind a late answer, 300 KiB of pipelined requests (reading pauses and resumes)', async () => {
    const c = await Conn.connect();
    let req = get('/async/150');
    const n = 10000; // ~30 bytes each
    for (let i = 0; i < n; i++) req += get(`/rooms/${i}`);
    assert.ok(req.length > 256 * 1024);
    const written = c.write(req);
    assert.equal((await c.response({ timeoutMs: 10000 })).body.toString(), 'late');
    for (let i = 0; i < n; i++) {
      const r = await c.response({ timeoutMs: 10000 });
      if (r.body.toString() !== `room=${i} user=anonymous q=-`) assert.fail(`answer ${i}: ${r.body}`);
    }
    await written;
    await c.write(get('/json'));
    assert.equal((await c.response()).status, 200, 'reading goes on afterwards');
    c.destroy();
  });
  test('a client that pipelines large requests and reads nothing: the server does not queue them all', async () => {
    const size = 1024 * 1024;
    const n = 40; // 40 MiB of answers if they were all queued
    fs.writeFileSync(path.join(pub, 'big.bin'), Buffer.alloc(size, 0x61));
    const counter = await countingConn();
    counter.sock.pause();
    const before = rssKiB(srv.pid);
    let req = '';
    for (let i = 0; i < n; i++) req += get('/static/big.bin');
    counter.sock.write(req);
    await sleep(1500);
    const grew = rssKiB(srv.pid) - before;
    assert.ok(grew < 16 * 1024, `the server grew by ${grew} KiB for ${n} unread answers of ${size} bytes`);
    counter.sock.resume();
    await counter.until((s) => s.responses === n && s.bytes >= n * size, 30000);
    counter.sock.destroy();
  });
  test('a client that half-closes after pipelined requests still gets every answer', async () => {
    const size = 1024 * 1024;
    fs.writeFileSync(path.join(pub, 'big.bin'), Buffer.alloc(size, 0x61));
    const counter = await countingConn();
    counter.sock.write(get('/static/big.bin') + get('/json') + get('/static/big.bin'));
    counter.sock.end(); // FIN: done sending, still reading
    await counter.until((s) => s.ended, 15000);
    assert.equal(counter.state.responses, 3);
    assert.ok(counter.state.bytes >= 2 * size + 17, `${counter.state.bytes} bytes`);
  });
  test('a stray CRLF after a request: the idle connection closes quietly, no 408', async () => {
    const c = await Conn.connect();
    await c.write(`${get('/json')}\r\n`);
    assert.equal((await c.response()).status, 200);
    assert.equal(await c.waitEnd(3000), true, 'closed at the keep-alive timeout');
    assert.equal(c.buf.length, 0, `nothing after the answer: ${JSON.stringify(c.buf.toString())}`);
  });
  test('requests split across writes at odd places', async () => {
    const c = await Conn.connect();
    const all = Buffer.from(get('/rooms/1') + 'POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello' + get('/json'));
    for (let i = 0; i < all.length; i += 7) { await c.write(all.subarray(i, i + 7)); await sleep(1); }
    assert.equal((await c.response()).status, 200);
    assert.equal((await c.response()).body.toString(), 'hello');
    assert.equal((await c.response()).body.toString(), '{"ok":true,"n":1}');
    c.destroy();
  });
  test('Connection: close: answered with Connection: close, then the server closes', async () => {
    const c = await Conn.connect();
    await c.write(`GET /json HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n${get('/rooms/1')}`);
    const r = await c.response();
    assert.equal(r.header('connection'), 'close');
    assert.equal(await c.waitEnd(), true, 'closed');
    assert.equal(c.buf.length, 0, 'nothing after a closing request is answered');
  });
  test('HTTP/1.0: closed after the answer, unless it asks for keep-alive', async () => {
    let c = await Conn.connect();
    await c.write('GET /json HTTP/1.0\r\n\r\n');
    assert.equal((await c.response()).status, 200);
    assert.equal(await c.waitEnd(), true);
    c = await Conn.connect();
    await c.write('GET /json HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    const r = await c.response();
    assert.equal(r.header('connection'), 'keep-alive');
    await c.write('GET /rooms/2 HTTP/1.0\r\nConnection: keep-alive\r\n\r\n');
    assert.equal((await c.response()).body.toString(), 'room=2 user=anonymous q=-');
    c.destroy();
  });
  test(`an idle keep-alive connection is closed after keepalive_timeout_ms (${KEEPALIVE_MS} ms)`, async () => {
    const c = await Conn.connect();
    await c.write(get('/json'));
    await c.response();
    const t0 = Date.now();
    assert.equal(await c.waitEnd(3000), true, 'closed by the server');
    const after = c.endedAt - t0;
    assert.ok(after >= KEEPALIVE_MS - 100 && after < KEEPALIVE_MS + 1500, `closed after ${after} ms`);
  });
  test('a WebSocket upgrade after plain requests on the same connection', async () => {
    const c = await Conn.connect();
    await c.write(get('/json'));
    assert.equal((await c.response()).status, 200);
    await c.write(upgradeRequest({ path: '/' }));
    const deadline = Date.now() + 3000;
    while (!c.buf.includes('\r\n\r\n') && Date.now() < deadline) await sleep(20);
    assert.match(c.buf.toString('latin1'), /^HTTP\/1\.1 101 Switching Protocols\r\n/);
    await sleep(50);
    const head = c.buf.indexOf('\r\n\r\n') + 4;
    assert.equal(c.buf[head], 0x82, 'a binary frame (the HELLO) follows');
    c.destroy();
  });
  test('HTTP/1.0 with Transfer-Encoding: 400 (RFC 9112 §6.1), and the connection closes', async () => {
    const c = await Conn.connect();
    await c.write('POST /echo HTTP/1.0\r\nTransfer-Encoding: chunked\r\nConnection: keep-alive\r\n\r\n2\r\nhi\r\n0\r\n\r\n' + get('/json'));
    assert.equal((await c.response()).status, 400);
    assert.equal(await c.waitEnd(3000), true);
    assert.equal(c.buf.length, 0, 'the pipelined request behind it is not answered');
  });
  test('malformed requests: 400/505 with Connection: close', async () => {
    for (const [req, status] of [
      ['GET / HT6P/1.1\r\nHost: a\r\n\r\n', 400],
      ['GET / HTTP/2.0\r\nHost: a\r\n\r\n', 505],
      ['GET / HTTP/1.1\r\n\r\n', 400], // no Host
      ['GET / HTTP/1.1\r\nHost: a\r\nX: a\x01b\r\n\r\n', 400],
      ['GET / HTTP/1.1\r\nHost: a\r\nExpect: something\r\n\r\n', 417],
      ['POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n', 501],
    ]) {
      const c = await Conn.connect();
      await c.write(req);
      const r = await c.response();
      assert.equal(r.status, status, JSON.stringify(req));
      assert.equal(r.header('connection'), 'close');
      assert.equal(await c.waitEnd(), true);
    }
  });
});

describe('chunked bodies', () => {
  test('curl sends a chunked body', async () => {
    const body = Buffer.alloc(20000, 'q');
    const r = await curl('POST', '/echo', { body, headers: ['Transfer-Encoding: chunked'] });
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, body);
  });
  test('extensions, trailers, split across writes', async () => {
    const c = await Conn.connect();
    const req = Buffer.from('POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n' +
      '5;name=value\r\nhello\r\n1\r\n \r\nA\r\n0123456789\r\n0\r\nX-Checksum: 1\r\n\r\n' + get('/json'));
    for (let i = 0; i < req.length; i += 3) await c.write(req.subarray(i, i + 3));
    assert.equal((await c.response()).body.toString(), 'hello 0123456789');
    assert.equal((await c.response()).status, 200);
    c.destroy();
  });
  test('malformed chunk framing: 400', async () => {
    for (const bad of ['1\r\xe6\r\na\r\n0\r\n\r\n', 'z\r\n', '1\r\naXY0\r\n\r\n', '1 \r\na\r\n0\r\n\r\n']) {
      const c = await Conn.connect();
      await c.write(Buffer.concat([Buffer.from('POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n'), Buffer.from(bad, 'latin1')]));
      assert.equal((await c.response()).status, 400, JSON.stringify(bad));
      c.destroy();
    }
  });
});

describe('413', () => {
  test('announced by Content-Length: refused before the body is sent', async () => {
    const c = await Conn.connect();
    await c.write(`POST /echo HTTP/1.1\r\nHost: a\r\nContent-Length: ${MAX_BODY + 1}\r\n\r\n`);
    const r = await c.response(); // no body byte was sent
    assert.equal(r.status, 413);
    assert.equal(r.header('connection'), 'close');
    c.destroy();
  });
  test('Expect: 100-continue: 100 when the body fits, 413 (and no 100) when it does not', async () => {
    const c = await Conn.connect();
    await c.write(`POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: ${MAX_BODY + 1}\r\n\r\n`);
    await sleep(100);
    assert.match(c.buf.toString('latin1'), /^HTTP\/1\.1 413 /);
    c.destroy();
    const d = await Conn.connect();
    await d.write('POST /echo HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n');
    await sleep(100);
    assert.equal(d.buf.toString('latin1'), 'HTTP/1.1 100 Continue\r\n\r\n');
    await d.write('abc');
    assert.equal((await d.response()).body.toString(), 'abc');
    d.destroy();
  });
  test('curl: over the limit 413, at the limit 200', async () => {
    assert.equal((await curl('POST', '/echo', { body: Buffer.alloc(MAX_BODY + 1, 'a') })).status, 413);
    const ok = await curl('POST', '/echo', { body: Buffer.alloc(MAX_BODY, 'a') });
    assert.equal(ok.status, 200);
    assert.equal(ok.body.length, MAX_BODY);
  });
  test('chunked: refused from the chunk-size line that passes the limit', async () => {
    const c = await Conn.connect();
    await c.write(`POST /echo HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n8000\r\n${'a'.repeat(0x8000)}\r\n8001\r\n`);
    assert.equal((await c.response()).status, 413);
    c.destroy();
    assert.equal((await curl('POST', '/echo', { body: Buffer.alloc(MAX_BODY + 1, 'b'), headers: ['Transfer-Encoding: chunked'] })).status, 413);
  });
  test('the default limit is 1 MiB', async () => {
    const other = await startServer(BIN, [], { name: 'resttest-default' });
    try {
      const url = `http://127.0.0.1:${other.port}/echo`;
      const over = await curlRaw(['-X', 'POST', '--data-binary', '@-', url], { input: Buffer.alloc((1 << 20) + 1, 'c') });
      assert.equal(over.responses[0].status, 413);
      const at = await curlRaw(['-X', 'POST', '--data-binary', '@-', url], { input: Buffer.alloc(1 << 20, 'c') });
      assert.equal(at.responses[0].status, 200);
      assert.equal(at.responses[0].body.length, 1 << 20);
    } finally {
      const r = await other.stop();
      assert.equal(r.killed, false);
      assert.equal(other.sanitizerReport(), null);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// Static files
// ---------------------------------------------------------------------------------------------

describe('static files', () => {
  const types = {
    'index.html': 'text/html; charset=utf-8',
    'app.js': 'text/javascript; charset=utf-8',
    'mod.mjs': 'text/javascript; charset=utf-8',
    'style.css': 'text/css; charset=utf-8',
    'data.json': 'application/json',
    'logo.svg': 'image/svg+xml',
    'pixel.png': 'image/png',
    'favicon.ico': 'image/x-icon',
    'notes.txt': 'text/plain; charset=utf-8',
    'code.wasm': 'application/wasm',
    'app.js.map': 'application/json',
    'blob.bin': 'application/octet-stream',
  };
  for (const [name, type] of Object.entries(types)) {
    test(`${name}: ${type}, the file's bytes`, async () => {
      const r = await curl('GET', `/static/${name}`);
      assert.equal(r.status, 200);
      assert.equal(r.header('content-type'), type);
      assert.equal(r.header('x-content-type-options'), 'nosniff');
      assert.deepEqual(r.body, fs.readFileSync(path.join(FIXTURE, name)));
    });
  }
  test('a directory serves its index.html; without the trailing / it redirects', async () => {
    const r = await curl('GET', '/static/');
    assert.equal(r.status, 200);
    assert.deepEqual(r.body, fs.readFileSync(path.join(FIXTURE, 'index.html')));
    const s = await curl('GET', '/static/sub/');
    assert.equal(s.body.toString(), '<p>sub</p>\n');
    const redirect = await curl('GET', '/static/sub?x=1');
    assert.equal(redirect.status, 301);
    assert.equal(redirect.header('location'), '/static/sub/?x=1');
    assert.equal((await curl('GET', '/static')).header('location'), '/static/');
  });
  test('HEAD: headers with the length, no body; ETag and 304', async () => {
    const c = await Conn.connect();
    await c.write('HEAD /static/app.js HTTP/1.1\r\nHost: a\r\n\r\n' + get('/static/notes.txt'));
    const h = await c.response({ bodiless: true });
    assert.equal(h.header('content-length'), String(fs.statSync(path.join(FIXTURE, 'app.js')).size));
    assert.equal(h.header('content-type'), 'text/javascript; charset=utf-8');
    assert.equal((await c.response()).body.toString(), 'plain notes\n');
    const etag = h.header('etag');
    assert.match(etag, /^W\/"[0-9a-f]+-[0-9a-f]+-[0-9a-f]+"$/);
    await c.write(`GET /static/app.js HTTP/1.1\r\nHost: a\r\nIf-None-Match: ${etag}\r\n\r\n`);
    const nm = await c.response();
    assert.equal(nm.status, 304);
    assert.equal(nm.body.length, 0);
    assert.equal(nm.header('etag'), etag);
    c.destroy();
  });
  test('missing files and hidden files: 404 (through the routes and the error handler)', async () => {
    for (const url of ['/static/nope.js', '/static/sub/nope', '/static/.hidden', '/static/notes.txt/']) {
      const r = await curl('GET', url);
      assert.equal(r.status, 404, url);
      assert.equal(r.body.toString(), '{"error":"Not Found"}');
    }
  });
  test('other methods go to the routes', async () => {
    assert.equal((await curl('POST', '/static/app.js', { body: 'x' })).status, 404);
  });
  test('over WebSocket the static folder is not served', async () => {
    assert.equal((await wsCall('/static/app.js')).status, 404);
  });

  const traversal = [
    ['/static/../secret.txt', 403],
    ['/static/sub/../../secret.txt', 403],
    ['/static/%2e%2e/secret.txt', 403],
    ['/static/%2E%2E/secret.txt', 403],
    ['/static/.%2e/secret.txt', 403],
    ['/static/./app.js', 403],
    ['/static/..%2fsecret.txt', 403],
    ['/static/%2e%2e%2fsecret.txt', 403],
    ['/static/%2fetc%2fpasswd', 403],
    ['/static//etc/passwd', 403],
    ['/static/%5c..%5csecret.txt', 403],
    ['/static/..\\secret.txt', 403],
    ['/static/%00', 400],
    ['/static/app.js%00.txt', 400],
    ['/static/%zz', 400],
    ['/static/escape.txt', 403],      // a link to a file out of the folder
    ['/static/up/secret.txt', 403],   // a link to the parent directory
    ['/static/up/', 403],
    ['/static/inside.js', 403],       // links are not followed at all
  ];
  for (const [url, status] of traversal) {
    test(`refused: ${url} -> ${status}`, async () => {
      const c = await Conn.connect();
      await c.write(get(url));
      const r = await c.response();
      assert.equal(r.status, status, `${url}: ${r.body}`);
      assert.doesNotMatch(r.body.toString(), /secret beside|root:/);
      assert.equal(r.body.toString(), status === 403 ? '{"error":"Forbidden"}' : '{"error":"Bad Request"}');
      c.destroy();
    });
  }
  test('curl with --path-as-is: the same refusals', async () => {
    for (const url of ['/static/../secret.txt', '/static/%2e%2e/secret.txt', '/static/escape.txt']) {
      const r = await curl('GET', url);
      assert.equal(r.status, 403, url);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// The client leaves while its request is with the application
// ---------------------------------------------------------------------------------------------

describe('a pending request whose client disconnected', () => {
  test('sb_respond returns SB_ECLOSED later; the server goes on', async () => {
    const before = (await stats()).closed;
    const c = await Conn.connect();
    await c.write(get('/late')); // answered 300 ms later
    await sleep(50);
    c.destroy();
    await sleep(500);
    assert.equal((await stats()).closed, before + 1);
    assert.equal(srv.alive(), true);
    // and with requests pipelined behind it
    const d = await Conn.connect();
    await d.write(get('/late') + get('/json') + get('/rooms/1'));
    await sleep(50);
    d.destroy();
    await sleep(500);
    assert.equal((await stats()).closed, before + 2);
    assert.equal((await curl('GET', '/json')).status, 200);
  });
});

describe('shutdown', () => {
  test('a request in flight is still answered (Connection: close), then the server exits', async () => {
    const other = await startServer(BIN, [], { name: 'resttest-shutdown' });
    const c = await Conn.connect(other.port);
    const idle = await Conn.connect(other.port);
    await idle.write(get('/json'));
    await idle.response();
    await c.write(get('/late')); // answered 300 ms later
    await sleep(50);
    const stopped = other.stop();
    const r = await c.response();
    assert.equal(r.body.toString(), 'late');
    assert.equal(r.header('connection'), 'close');
    assert.equal(await idle.waitEnd(), true, 'the idle keep-alive connection is closed');
    const x = await stopped;
    assert.equal(x.killed, false);
    assert.equal(x.code, 0);
    assert.equal(other.sanitizerReport(), null);
  });
});
