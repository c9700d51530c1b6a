// Misbehaving peers: handshake validation over raw TCP (404, 400, 426, 431, 408), the idle and
// close timeouts, and a crowd of bad clients beside well-behaved ones, who must not notice.
import assert from 'node:assert/strict';
import crypto from 'node:crypto';
import { after, afterEach, before, describe, test } from 'node:test';
import {
  EchoFixture, HOST, OP, RawClient, acceptKey, binaryPayload, buildFrame, frameHeader, httpExchange, sleep,
  startEcho, stopAll, upgradeRequest, withTimeout, wsOpen,
} from './lib.mjs';

const servers = [];
const clients = new Set();
async function start(args) {
  const s = await startEcho(args);
  servers.push(s);
  return s;
}
const fixtures = [];
/** A server for the tests of one describe block, restarted (and the test failed) if it dies. */
function fixture(args) {
  const f = new EchoFixture(args);
  before(() => f.start());
  fixtures.push(f);
  return f;
}
function track(c) { clients.add(c); return c; }
afterEach(async () => {
  for (const c of clients) (c.terminate ?? c.destroy).call(c);
  clients.clear();
  for (const f of fixtures) if (f.server) await f.check();
});
after(async () => {
  for (const c of clients) (c.terminate ?? c.destroy).call(c);
  await Promise.all(fixtures.map((f) => f.stop()));
  await stopAll(servers);
});

const key = () => crypto.randomBytes(16).toString('base64');
const req = (opts) => upgradeRequest({ key: key(), ...opts });

/** Asserts an HTTP rejection: exactly `status` on an HTTP/1.1 status line, then the server closes. */
function assertRejected(res, status, what) {
  assert.ok(res.complete, `${what}: no complete HTTP response; got ${JSON.stringify(res.raw.toString('latin1'))}`);
  assert.match(res.statusLine, new RegExp(`^HTTP/1\\.1 ${status}( |$)`), `${what}: status line`);
  assert.equal(res.status, status, what);
  assert.ok(res.closed, `${what}: the server must close the connection after ${status}`);
  assert.equal(res.header('sec-websocket-accept'), undefined, `${what}: no accept key on a rejection`);
}

// ---------------------------------------------------------------------------------------------
describe('handshake validation', () => {
  const hs = fixture(['--handshake-timeout-ms', '500', '--max-header-bytes', '1024']); // handshake timeout 500 ms, header limit 1024 bytes

  test('a plain GET that is not an upgrade -> HTTP/1.1 404', async () => {
    const res = await httpExchange(hs.port, Buffer.from(`GET / HTTP/1.1\r\nHost: ${HOST}\r\n\r\n`), { waitClose: false });
    assert.ok(res.complete, `no complete response: ${JSON.stringify(res.raw.toString('latin1'))}`);
    assert.match(res.statusLine, /^HTTP\/1\.1 404( |$)/);
    assert.equal(res.header('upgrade'), undefined);
    const cl = res.header('content-length');
    if (cl !== undefined) assert.equal(res.body.length, Number(cl), 'body matches Content-Length');
  });

  test('a plain GET of another path with other headers -> HTTP/1.1 404', async () => {
    const res = await httpExchange(hs.port, Buffer.from(`GET /index.html?x=1 HTTP/1.1\r\nHost: example\r\nAccept: */*\r\nUser-Agent: t\r\n\r\n`), { waitClose: false });
    assert.match(res.statusLine, /^HTTP\/1\.1 404( |$)/);
  });

  const BAD = {
    'POST with upgrade headers': req({ method: 'POST' }),
    'HTTP/1.0 upgrade': req({ httpVersion: 'HTTP/1.0' }),
    'no Host header': req({ omit: ['Host'] }),
    'Connection: keep-alive only': req({ omit: ['Connection'], extra: [['Connection', 'keep-alive']] }),
    'no Sec-WebSocket-Key': req({ omit: ['Sec-WebSocket-Key'] }),
    'Sec-WebSocket-Key of 15 bytes': upgradeRequest({ key: Buffer.alloc(15, 7).toString('base64') }),
    'Sec-WebSocket-Key of 17 bytes': upgradeRequest({ key: Buffer.alloc(17, 7).toString('base64') }),
    'Sec-WebSocket-Key not base64': upgradeRequest({ key: 'this is not base64!!!!==' }),
    'empty Sec-WebSocket-Key': upgradeRequest({ key: '' }),
    'garbage bytes': Buffer.concat([Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03]), crypto.randomBytes(64), Buffer.from('\r\n\r\n')]),
    'garbage text line': Buffer.from('HELLO THERE\r\n\r\n'),
    'malformed header line': Buffer.from(`GET / HTTP/1.1\r\nHost: x\r\nthis line has no colon\r\n\r\n`),
  };
  for (const [name, bytes] of Object.entries(BAD)) {
    test(`${name} -> 400`, async () => {
      const res = await httpExchange(hs.port, bytes);
      assertRejected(res, 400, name);
    });
  }

  for (const version of ['8', '12', '14', 'thirteen']) {
    test(`Sec-WebSocket-Version: ${version} -> 426 with Sec-WebSocket-Version: 13`, async () => {
      const res = await httpExchange(hs.port, req({ version }));
      assertRejected(res, 426, `version ${version}`);
      const v = res.headers['sec-websocket-version'] ?? [];
      assert.ok(v.some((x) => x.split(',').map((s) => s.trim()).includes('13')),
        `426 must carry Sec-WebSocket-Version: 13, got headers ${JSON.stringify(res.headers)}`);
    });
  }

  test('no Sec-WebSocket-Version -> 400 or 426, and no upgrade', async () => {
    const res = await httpExchange(hs.port, req({ omit: ['Sec-WebSocket-Version'] }));
    assert.ok(res.status === 400 || res.status === 426, `status line ${res.statusLine}`);
    assert.ok(res.closed);
  });

  test('request headers over --max-header-bytes (1024) -> 431', async () => {
    const res = await httpExchange(hs.port, req({ extra: [['X-Filler', 'a'.repeat(1500)]] }));
    assertRejected(res, 431, 'big header');
  });

  test('many small headers over --max-header-bytes (1024) -> 431', async () => {
    const extra = Array.from({ length: 60 }, (_, i) => [`X-H${i}`, 'abcdefghij']);
    const res = await httpExchange(hs.port, req({ extra }));
    assertRejected(res, 431, 'many headers');
  });

  test('headers over the limit that never finish -> 431 without waiting for the end', async () => {
    const partial = Buffer.from(`GET / HTTP/1.1\r\nHost: x\r\nX-Filler: ${'b'.repeat(2000)}`);
    const res = await httpExchange(hs.port, partial, { timeoutMs: 400 });
    assertRejected(res, 431, 'unfinished big header');
  });

  test('a request below --max-header-bytes (about 900 bytes) is accepted', async () => {
    const base = req({ extra: [['X-Filler', '']] });
    const r = req({ extra: [['X-Filler', 'c'.repeat(900 - base.length)]] });
    assert.ok(r.length >= 890 && r.length <= 910, `request length ${r.length}`);
    const res = await httpExchange(hs.port, r, { waitClose: false });
    assert.match(res.statusLine, /^HTTP\/1\.1 101( |$)/);
  });

  test('half a request, then silence -> 408 after the handshake timeout (500 ms), then closed', async () => {
    const res = await httpExchange(hs.port, Buffer.from(`GET / HTTP/1.1\r\nHost: ${HOST}\r\nUpgrade: websocket\r\n`), { timeoutMs: 3000 });
    assertRejected(res, 408, 'stalled request');
    assert.ok(res.firstByteAfterMs >= 350 && res.firstByteAfterMs <= 2000, `408 came after ${res.firstByteAfterMs} ms`);
  });

  test('a connection that sends nothing -> 408 (or closed) after the handshake timeout', async () => {
    const res = await httpExchange(hs.port, Buffer.alloc(0), { timeoutMs: 3000 });
    assert.ok(res.closed, 'closed');
    assert.ok(res.closedAfterMs >= 350 && res.closedAfterMs <= 2000, `closed after ${res.closedAfterMs} ms`);
    if (res.raw.length) assert.match(res.statusLine, /^HTTP\/1\.1 408( |$)/);
  });

  test('slowloris: a valid request dribbled 1 byte per 40 ms -> 408 (the deadline covers the whole request)', async () => {
    const r = req();
    const pieces = [...r].map((b) => [Buffer.from([b]), 40]); // ~190 bytes * 40 ms > 7 s if allowed
    const c = track(await RawClient.connect(hs.port));
    const t0 = Date.now();
    const sender = (async () => {
      for (const [b, d] of pieces) {
        if (c.ended) return;
        await c.write(b);
        await sleep(d);
      }
    })();
    const res = await c.readHttpResponse(3000);
    assert.match(res.statusLine, /^HTTP\/1\.1 408( |$)/);
    const at = Date.now() - t0;
    assert.ok(at >= 350 && at <= 2000, `408 after ${at} ms`);
    await c.waitEnd(2000);
    await sender;
  });

  test('RFC 6455 sample key gets the sample accept value', async () => {
    const res = await httpExchange(hs.port, upgradeRequest({ key: 'dGhlIHNhbXBsZSBub25jZQ==' }), { waitClose: false });
    assert.match(res.statusLine, /^HTTP\/1\.1 101( |$)/);
    assert.equal(res.header('sec-websocket-accept'), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
    assert.equal(res.header('upgrade')?.toLowerCase(), 'websocket');
    assert.ok(/\bupgrade\b/i.test(res.header('connection') ?? ''), `Connection header ${res.header('connection')}`);
  });

  test('header names and tokens are case-insensitive; Connection may list several tokens', async () => {
    const k = key();
    const r = Buffer.from(`GET /chat HTTP/1.1\r\nhost: ${HOST}\r\nUPGRADE: WebSocket\r\nconnection: keep-alive, Upgrade\r\n` +
      `sec-websocket-key: ${k}\r\nSEC-WEBSOCKET-VERSION: 13\r\nOrigin: http://example.com\r\n\r\n`);
    const res = await httpExchange(hs.port, r, { waitClose: false });
    assert.match(res.statusLine, /^HTTP\/1\.1 101( |$)/);
    assert.equal(res.header('sec-websocket-accept'), acceptKey(k));
  });

  test('frames sent in the same write as the request are processed after the 101', async () => {
    const c = track(await RawClient.connect(hs.port));
    await c.handshake({ after: Buffer.concat([buildFrame({ opcode: OP.TEXT, payload: 'early bird' }), buildFrame({ opcode: OP.PING, payload: 'early ping' })]) });
    const m = await c.readMessage();
    assert.equal(m.opcode, OP.TEXT);
    assert.equal(m.payload.toString(), 'early bird');
    const f = await c.nextFrame();
    assert.equal(f.opcode, OP.PONG);
    assert.equal(f.payload.toString(), 'early ping');
  });

  test('the server is still alive after all of the above', async () => {
    assert.ok(hs.alive(), `server exited: ${hs.stderr()}`);
    const c = track(await wsOpen(hs.port));
    const m = await c.roundTrip('still alive');
    assert.equal(m.data.toString(), 'still alive');
  });
});

// ---------------------------------------------------------------------------------------------
describe('idle timeout (--idle-timeout-ms 300)', () => {
  const idle = fixture(['--idle-timeout-ms', '300']);

  test('a silent client gets a ping after ~300 ms and is dropped after ~600 ms if it never answers', async () => {
    const c = track(await RawClient.open(idle.port));
    const t0 = Date.now();
    const f = await c.nextFrame(2000);
    const pingAt = Date.now() - t0;
    assert.equal(f.opcode, OP.PING, `expected a PING, got opcode ${f.opcode}; ${c.describe()}`);
    assert.ok(pingAt >= 200 && pingAt <= 1000, `ping came ${pingAt} ms after the handshake`);
    // now the connection must go away; a close frame before the drop is allowed
    const endAt = await c.waitEnd(2500) - t0;
    assert.ok(endAt >= 450 && endAt <= 2000, `dropped ${endAt} ms after the handshake`);
    for (const g of c.frames) assert.equal(g.opcode, OP.CLOSE, `after the ping only a close frame may come; ${c.describe()}`);
  });

  test('a client that answers the pings stays connected', async () => {
    const c = track(await RawClient.open(idle.port));
    let pings = 0;
    const t0 = Date.now();
    while (Date.now() - t0 < 1500) {
      let f;
      try { f = await c.nextFrame(Math.max(1, 1500 - (Date.now() - t0))); } catch (e) {
        if (c.ended) throw e;
        break; // timeout: the loop ends
      }
      assert.equal(f.opcode, OP.PING, c.describe());
      pings++;
      await c.pong(f.payload);
    }
    assert.ok(pings >= 2, `expected at least 2 pings in 1.5 s, got ${pings}`);
    assert.ok(!c.ended, 'still connected');
    await c.sendText('still here');
    const m = await c.readMessage(2000, { allowPings: true });
    assert.equal(m.payload.toString(), 'still here');
  });

  test('a client that keeps sending data is not pinged', async () => {
    const c = track(await RawClient.open(idle.port));
    for (let i = 0; i < 12; i++) {
      await c.sendText(`tick ${i}`);
      const m = await c.readMessage(1000);
      assert.equal(m.payload.toString(), `tick ${i}`);
      await sleep(100);
    }
    assert.ok(!c.ended);
    assert.ok(c.log.every((f) => f.opcode === OP.TEXT), `only echoes expected; ${c.describe()}`);
  });

  test('an npm ws client (answers pings automatically) stays connected for 1.5 s', async () => {
    const c = track(await wsOpen(idle.port));
    let pings = 0;
    c.ws.on('ping', () => { pings++; });
    await sleep(1500);
    assert.equal(c.closeInfo, null, `closed: ${JSON.stringify(c.closeInfo)}`);
    assert.ok(pings >= 2, `pings seen: ${pings}`);
    const m = await c.roundTrip('alive');
    assert.equal(m.data.toString(), 'alive');
  });
});

// ---------------------------------------------------------------------------------------------
describe('close timeout on shutdown (--close-timeout-ms 500)', () => {
  test('SIGTERM: a client that never answers the close is dropped after ~500 ms; others close cleanly; exit 0', async () => {
    const s = await start(['--close-timeout-ms', '500']);
    const mute = track(await RawClient.open(s.port));
    const good = track(await wsOpen(s.port));
    assert.equal((await good.roundTrip('hi')).data.toString(), 'hi');
    await mute.sendText('hi');
    assert.equal((await mute.readMessage()).payload.toString(), 'hi');

    const t0 = Date.now();
    const exit = s.terminate('SIGTERM', 5000);
    const cl = await mute.readClose(2000);
    assert.equal(cl.code, 1001, 'close code sent on shutdown');
    const closeAt = Date.now() - t0;
    const goodClose = await withTimeout(good.closed, 2000, 'the ws client to be closed');
    assert.equal(goodClose.code, 1001);

    // while waiting for the mute client, the server no longer accepts upgrades
    const probe = await RawClient.connect(s.port).then(async (c) => {
      track(c);
      try { await c.handshake({ timeoutMs: 1000 }); return 'upgraded'; } catch { return 'refused'; }
    }, () => 'refused');
    assert.equal(probe, 'refused', 'no new WebSocket connection during shutdown');

    const endAt = await mute.waitEnd(3000) - t0;
    assert.ok(endAt - closeAt >= 350 && endAt <= 2500, `mute client dropped ${endAt} ms after SIGTERM (close sent at ${closeAt} ms)`);
    assert.deepEqual(await exit, { code: 0, signal: null }, `exit status; stderr: ${s.stderr()}`);
  });
});

// ---------------------------------------------------------------------------------------------
describe('bad clients beside good ones', () => {
  const chaos = fixture(['--handshake-timeout-ms', '1000', '--max-message-bytes', '65536', '--max-queued-bytes', '1048576']);

  test('20 ws clients keep all their echoes, in order, while others misbehave; the server survives', async () => {
    const port = chaos.port;
    const results = {}; // what each bad actor observed
    const note = (k, v) => { (results[k] ??= []).push(v); };
    let stop = false;

    const good = await Promise.all(Array.from({ length: 20 }, () => wsOpen(port).then(track)));
    const goodRuns = good.map(async (c, id) => {
      const sent = [];
      const got = [];
      const t0 = Date.now();
      for (let k = 0; Date.now() - t0 < 4000 || k < 50; k++) {
        const binary = k % 2 === 1;
        const data = binary ? Buffer.concat([Buffer.from([id, k & 255]), binaryPayload(k * 37 % 3000, id * 1000 + k)])
          : Buffer.from(`client ${id} message ${k} ${'z'.repeat(k % 200)}`);
        sent.push({ data, binary });
        await c.send(data, { binary });
        const m = await c.next(5000);
        got.push(m);
        await sleep(5);
      }
      return { id, sent, got };
    });

    const loop = async (name, fn) => {
      while (!stop) {
        try { note(name, await fn()); } catch (e) { note(name, `error: ${e.message}`); }
      }
    };

    const actors = [
      // random bytes instead of a request
      loop('garbage', async () => {
        const res = await httpExchange(port, crypto.randomBytes(2048), { timeoutMs: 3000 });
        return res.closed ? `closed ${res.status ?? 'without response'}` : 'not closed';
      }),
      // an unmasked frame after a valid handshake
      loop('unmasked', async () => {
        const c = track(await RawClient.open(port));
        await c.sendText('unmasked', { mask: false });
        const cl = await c.expectFail(1002);
        c.destroy();
        return `close ${cl.code}`;
      }),
      // 64-bit lengths: too big for the limit, and with the top bit set
      loop('oversized', async () => {
        const c = track(await RawClient.open(port));
        await c.write(frameHeader({ opcode: OP.BINARY, len: 1n << 62n, maskKey: [1, 2, 3, 4] }));
        const cl = await c.expectFail(1009);
        c.destroy();
        return `close ${cl.code}`;
      }),
      loop('top bit length', async () => {
        const c = track(await RawClient.open(port));
        await c.write(frameHeader({ opcode: OP.TEXT, len: (1n << 63n) + 5n, maskKey: [1, 2, 3, 4] }));
        const cl = await c.expectFail(1002);
        c.destroy();
        return `close ${cl.code}`;
      }),
      // half a frame, then gone (FIN or RST)
      loop('half frame', async () => {
        const c = track(await RawClient.open(port));
        const f = buildFrame({ opcode: OP.BINARY, payload: binaryPayload(5000) });
        await c.write(f.subarray(0, 1 + Math.floor(Math.random() * 2000)));
        await sleep(10);
        if (Math.random() < 0.5) c.destroy(); else c.sock.resetAndDestroy();
        return 'done';
      }),
      // half a request, then gone
      loop('half request', async () => {
        const c = track(await RawClient.connect(port));
        const r = upgradeRequest();
        await c.write(r.subarray(0, Math.floor(r.length / 2)));
        await sleep(5);
        c.sock.resetAndDestroy();
        return 'done';
      }),
      // slowloris: 10 at a time, dribbling a request; each must get 408 after ~1 s
      loop('slowloris', async () => {
        const outcomes = await Promise.all(Array.from({ length: 10 }, async () => {
          const c = track(await RawClient.connect(port));
          const r = upgradeRequest();
          const t0 = Date.now();
          for (let i = 0; i < r.length && !c.ended; i++) {
            await c.write(r.subarray(i, i + 1));
            await sleep(100);
            if (c.q.length) break;
          }
          const head = c.q.all().toString('latin1').split('\r\n')[0];
          await c.waitEnd(2000).catch(() => {});
          c.destroy();
          return `${head} after ${Math.round((Date.now() - t0) / 500) * 500} ms`;
        }));
        return outcomes;
      }),
      // a client that floods binary messages and never reads its echoes
      loop('non-reader', async () => {
        const c = track(await RawClient.open(port));
        c.sock.pause();
        const m = buildFrame({ opcode: OP.BINARY, payload: binaryPayload(60000) });
        for (let i = 0; i < 100 && !c.ended; i++) c.sock.write(m);
        await sleep(300);
        c.sock.resetAndDestroy();
        return 'done';
      }),
      // a fragmented message that never ends, with invalid UTF-8 in the next piece
      loop('bad utf8', async () => {
        const c = track(await RawClient.open(port));
        await c.write(buildFrame({ opcode: OP.TEXT, fin: false, payload: 'fine so far ' }));
        await c.write(buildFrame({ opcode: OP.CONT, fin: false, payload: Buffer.from([0xed, 0xa0, 0x80]) }));
        const cl = await c.expectFail(1007);
        c.destroy();
        return `close ${cl.code}`;
      }),
    ];

    const goodResults = await Promise.all(goodRuns);
    stop = true;
    await withTimeout(Promise.all(actors), 15000, 'the bad actors to finish');

    for (const { id, sent, got } of goodResults) {
      assert.equal(got.length, sent.length, `client ${id}: echo count`);
      for (let k = 0; k < sent.length; k++) {
        assert.equal(got[k].isBinary, sent[k].binary, `client ${id} message ${k}: opcode`);
        assert.ok(got[k].data.equals(sent[k].data), `client ${id} message ${k}: payload differs`);
      }
      assert.ok(sent.length >= 50, `client ${id} did ${sent.length} round trips`);
    }
    for (const c of good) assert.equal(c.closeInfo, null, 'good client still connected');

    // every bad actor ran and saw the expected reaction each time
    const expectAll = (name, pred, desc) => {
      const r = results[name] ?? [];
      assert.ok(r.length > 0, `${name} never ran`);
      const bad = r.filter((x) => !pred(x));
      assert.equal(bad.length, 0, `${name}: expected ${desc}, got ${JSON.stringify(bad.slice(0, 5))} (of ${r.length})`);
    };
    expectAll('garbage', (x) => x === 'closed 400', 'a 400 response, then closed');
    expectAll('unmasked', (x) => x === 'close 1002', 'close 1002');
    expectAll('oversized', (x) => x === 'close 1009', 'close 1009');
    expectAll('top bit length', (x) => x === 'close 1002', 'close 1002');
    expectAll('half frame', (x) => x === 'done', 'no error');
    expectAll('half request', (x) => x === 'done', 'no error');
    expectAll('non-reader', (x) => x === 'done', 'no error');
    expectAll('bad utf8', (x) => x === 'close 1007', 'close 1007');
    expectAll('slowloris', (x) => Array.isArray(x) && x.every((s) => /^HTTP\/1\.1 408\b.* after (1000|1500) ms$/.test(s)),
      'every slowloris socket answered 408 about 1 s after it connected');

    // the server is alive and accepting
    assert.ok(chaos.alive(), `server exited; stderr: ${chaos.stderr()}`);
    const late = track(await wsOpen(port));
    const m = await late.roundTrip('after the storm');
    assert.equal(m.data.toString(), 'after the storm');
    const raw = track(await RawClient.open(port));
    await raw.sendBinary(Buffer.from([1, 2, 3]));
    const e = await raw.readMessage();
    assert.deepEqual([...e.payload], [1, 2, 3]);
    for (const c of good) {
      const cl = await c.close(1000, 'bye');
      assert.equal(cl.code, 1000);
    }
  });
});
