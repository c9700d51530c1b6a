// The echo example against a real client library (npm ws): payload sizes, ordering,
// concurrency, subprotocols, ping/pong, client close and graceful shutdown.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import {
  EchoFixture, RawClient, binaryPayload, startEcho, stopAll, textPayload, withTimeout, wsOpen,
} from './lib.mjs';

const servers = [];
const clients = new Set();
async function start(args) {
  const s = await startEcho(args);
  servers.push(s);
  return s;
}
async function open(port, opts) {
  const c = await wsOpen(port, opts);
  clients.add(c);
  return c;
}
after(async () => {
  for (const c of clients) c.terminate();
  await Promise.all([srv.stop(), proto.stop()]);
  await stopAll(servers);
});

function assertSameBytes(actual, expected, what) {
  assert.equal(actual.length, expected.length, `${what}: length`);
  if (!actual.equals(expected)) {
    let i = 0;
    while (actual[i] === expected[i]) i++;
    assert.fail(`${what}: first difference at byte ${i}: got ${actual[i]}, expected ${expected[i]}`);
  }
}

const srv = new EchoFixture([]); // the default server most tests share
const proto = new EchoFixture(['--subprotocols', 'chat,superchat']);
before(async () => { await Promise.all([srv.start(), proto.start()]); });
afterEach(async () => { await srv.check(); await proto.check(); });

describe('echo with npm ws', () => {

  test('text message is echoed as text with the same bytes', async () => {
    const c = await open(srv.port);
    const m = await c.roundTrip('Hello, Switchboard! ünïcödé ✓ 😀');
    assert.equal(m.isBinary, false);
    assert.equal(m.data.toString('utf8'), 'Hello, Switchboard! ünïcödé ✓ 😀');
    c.terminate();
  });

  test('binary message with every byte value is echoed as binary', async () => {
    const c = await open(srv.port);
    const data = Buffer.from(Array.from({ length: 256 }, (_, i) => i));
    const m = await c.roundTrip(data, { binary: true });
    assert.equal(m.isBinary, true);
    assertSameBytes(m.data, data, 'binary echo');
    c.terminate();
  });

  test('empty text and empty binary messages are echoed', async () => {
    const c = await open(srv.port);
    const t = await c.roundTrip('', { binary: false });
    assert.equal(t.isBinary, false);
    assert.equal(t.data.length, 0);
    const b = await c.roundTrip(Buffer.alloc(0), { binary: true });
    assert.equal(b.isBinary, true);
    assert.equal(b.data.length, 0);
    c.terminate();
  });

  for (const n of [125, 126, 127, 65535, 65536, 1024 * 1024]) {
    test(`text and binary of ${n} bytes are echoed exactly`, async () => {
      const c = await open(srv.port);
      const txt = textPayload(n, n);
      const t = await c.roundTrip(txt, { binary: false });
      assert.equal(t.isBinary, false);
      assertSameBytes(t.data, txt, `text ${n}`);
      const bin = binaryPayload(n, n);
      const b = await c.roundTrip(bin, { binary: true });
      assert.equal(b.isBinary, true);
      assertSameBytes(b.data, bin, `binary ${n}`);
      c.terminate();
    });
  }

  test('1000 pipelined messages come back complete and in order', async () => {
    const c = await open(srv.port);
    const sent = [];
    for (let i = 0; i < 1000; i++) {
      const binary = i % 3 === 0;
      const data = binary ? Buffer.concat([Buffer.from(`b${i}:`), binaryPayload(i % 97, i)]) : Buffer.from(`message #${i} ${'x'.repeat(i % 50)}`);
      sent.push({ data, binary });
      c.ws.send(data, { binary });
    }
    for (let i = 0; i < 1000; i++) {
      const m = await c.next(10000);
      assert.equal(m.isBinary, sent[i].binary, `message ${i}: opcode`);
      assertSameBytes(m.data, sent[i].data, `message ${i}`);
    }
    c.terminate();
  });

  test('200 concurrent clients each do 10 round trips', async () => {
    const conns = await Promise.all(Array.from({ length: 200 }, () => open(srv.port, { timeoutMs: 10000 })));
    await Promise.all(conns.map(async (c, id) => {
      for (let k = 0; k < 10; k++) {
        const binary = (id + k) % 2 === 1;
        const data = binary ? Buffer.concat([Buffer.from([id & 255, k]), binaryPayload(64 + k, id)]) : Buffer.from(`client ${id} trip ${k}`);
        const m = await c.roundTrip(data, { binary });
        assert.equal(m.isBinary, binary, `client ${id} trip ${k}: opcode`);
        assertSameBytes(m.data, data, `client ${id} trip ${k}`);
      }
    }));
    const closes = await Promise.all(conns.map((c) => c.close(1000, 'done')));
    for (const cl of closes) assert.equal(cl.code, 1000);
  });

  test('ping from the client is answered with a pong carrying the same payload', async () => {
    const c = await open(srv.port);
    for (const payload of [Buffer.alloc(0), Buffer.from('ping-payload'), binaryPayload(125, 7)]) {
      const pong = new Promise((resolve) => c.ws.once('pong', resolve));
      c.ws.ping(payload);
      const got = await withTimeout(pong, 3000, 'pong');
      assertSameBytes(got, payload, 'pong payload');
    }
    // the connection still echoes afterwards
    const m = await c.roundTrip('after pings');
    assert.equal(m.data.toString(), 'after pings');
    c.terminate();
  });

  test('an unsolicited pong is ignored', async () => {
    const c = await open(srv.port);
    c.ws.pong(Buffer.from('unsolicited'));
    const m = await c.roundTrip('still here');
    assert.equal(m.isBinary, false);
    assert.equal(m.data.toString(), 'still here');
    c.terminate();
  });

  for (const [code, reason] of [[1000, 'bye'], [1001, ''], [4000, 'app code'], [3999, '']]) {
    test(`client close ${code} is answered with close ${code}`, async () => {
      const c = await open(srv.port);
      const cl = await withTimeout(c.close(code, reason), 3000, 'close');
      assert.equal(cl.code, code);
    });
  }
});

describe('subprotocols', () => {

  test('the first protocol the client offers that the server knows is chosen', async () => {
    const c = await open(proto.port, { protocols: ['foo', 'superchat', 'chat'] });
    assert.equal(c.ws.protocol, 'superchat');
    const m = await c.roundTrip('with protocol');
    assert.equal(m.data.toString(), 'with protocol');
    c.terminate();
    const d = await open(proto.port, { protocols: ['chat'] });
    assert.equal(d.ws.protocol, 'chat');
    d.terminate();
  });

  test('a client offering no protocol gets none', async () => {
    const c = await open(proto.port);
    assert.equal(c.ws.protocol, '');
    const m = await c.roundTrip('no protocol');
    assert.equal(m.data.toString(), 'no protocol');
    c.terminate();
  });

  // npm ws refuses a 101 without a protocol when it offered some ("Server sent no
  // subprotocol"), although RFC 6455 4.2.2 allows it; so the no-match case uses a raw client.
  test('no match: 101 without Sec-WebSocket-Protocol, and the connection works', async () => {
    const c = await RawClient.open(proto.port, { protocols: 'foo, bar' });
    assert.equal(c.response.status, 101);
    assert.equal(c.response.header('sec-websocket-protocol'), undefined);
    await c.sendText('no match');
    const m = await c.readMessage();
    assert.equal(m.opcode, 1);
    assert.equal(m.payload.toString(), 'no match');
    c.destroy();
  });

  test('raw: the chosen protocol is echoed in the 101 response', async () => {
    const c = await RawClient.open(proto.port, { protocols: 'x-unknown, chat, superchat' });
    assert.deepEqual(c.response.headers['sec-websocket-protocol'], ['chat']);
    c.destroy();
  });

  test('server without --subprotocols answers without a protocol header', async () => {
    const c = await RawClient.open(srv.port, { protocols: 'chat' });
    assert.equal(c.response.header('sec-websocket-protocol'), undefined);
    c.destroy();
  });
});

describe('graceful shutdown', () => {
  for (const signal of ['SIGTERM', 'SIGINT']) {
    test(`${signal}: every client gets close 1001, then the process exits 0`, async () => {
      const srv = await start([]);
      const conns = await Promise.all(Array.from({ length: 10 }, () => open(srv.port)));
      // every client is really live before the signal
      for (const [i, c] of conns.entries()) {
        const m = await c.roundTrip(`before shutdown ${i}`);
        assert.equal(m.data.toString(), `before shutdown ${i}`);
      }
      const t0 = Date.now();
      const exit = srv.terminate(signal, 10000);
      const closes = await withTimeout(Promise.all(conns.map((c) => c.closed)), 5000, 'all clients to be closed');
      for (const [i, cl] of closes.entries()) assert.equal(cl.code, 1001, `client ${i} close code`);
      const ex = await exit;
      assert.deepEqual(ex, { code: 0, signal: null }, `exit status (stderr: ${srv.stderr()})`);
      assert.ok(Date.now() - t0 < 4000, `shutdown with answering clients took ${Date.now() - t0} ms`);
      assert.match(srv.stdout(), /^listening on 127\.0\.0\.1:\d+\n$/, 'stdout is exactly one line');
    });
  }

  test('SIGTERM with no clients exits 0 promptly', async () => {
    const srv = await start([]);
    const t0 = Date.now();
    const ex = await srv.terminate('SIGTERM', 5000);
    assert.deepEqual(ex, { code: 0, signal: null });
    assert.ok(Date.now() - t0 < 2000, `took ${Date.now() - t0} ms`);
  });
});
