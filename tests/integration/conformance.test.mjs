// RFC 6455 conformance of the echo example over raw sockets, following the categories of the
// Autobahn Testsuite (1 framing, 2 ping/pong, 3 reserved bits, 4 opcodes, 5 fragmentation,
// 6 UTF-8, 7 close, 9 limits and performance, 10 auto-fragmentation). Case numbers in the test
// names refer to the Autobahn case the test mirrors; its strict grading is asserted.
import assert from 'node:assert/strict';
import { after, afterEach, before, describe, test } from 'node:test';
import {
  EchoFixture, OP, RawClient, binaryPayload, buildFrame, closePayload, fragmentFrames, frameHeader, opName,
  sleep, textPayload, toBuf,
} from './lib.mjs';

const main = new EchoFixture([]);                              // default limits
const small = new EchoFixture(['--max-message-bytes', '1000']);
const clients = new Set();

before(async () => {
  await Promise.all([main.start(), small.start()]);
});
afterEach(async () => {
  for (const c of clients) c.destroy();
  clients.clear();
  await main.check();
  await small.check();
});
after(async () => {
  for (const c of clients) c.destroy();
  await Promise.all([main.stop(), small.stop()]);
});

async function open(fixture = main) {
  const c = await fixture.connect((port) => RawClient.open(port));
  clients.add(c);
  return c;
}

function assertSameBytes(actual, expected, what) {
  if (actual.length !== expected.length || !actual.equals(expected)) {
    let i = 0;
    while (i < actual.length && actual[i] === expected[i]) i++;
    assert.fail(`${what}: got ${actual.length} bytes, expected ${expected.length}; first difference at byte ${i}` +
      `${expected.length <= 64 ? ` (got ${actual.toString('hex')}, expected ${expected.toString('hex')})` : ''}`);
  }
}

async function expectEcho(c, opcode, payload, timeoutMs = 5000) {
  const m = await c.readMessage(timeoutMs);
  assert.equal(opName(m.opcode), opName(opcode), 'echo opcode');
  assertSameBytes(m.payload, toBuf(payload), `echo of ${opName(opcode)}`);
  return m;
}

async function expectPong(c, payload, timeoutMs = 3000) {
  const f = await c.nextFrame(timeoutMs);
  assert.equal(opName(f.opcode), 'PONG', `expected a PONG; ${c.describe()}`);
  assertSameBytes(f.payload, toBuf(payload), 'pong payload');
}

/** The connection is still healthy: a clean close handshake with 1000 completes. */
async function closeCleanly(c) {
  await c.sendClose(1000);
  const cl = await c.readClose();
  assert.equal(cl.code, 1000, 'close code of the answer to a clean close');
  await c.waitEnd(2000);
}

const hex = (s) => Buffer.from(s.replace(/\s+/g, ''), 'hex');
const text = (payload, opts) => buildFrame({ opcode: OP.TEXT, payload, ...opts });
const binary = (payload, opts) => buildFrame({ opcode: OP.BINARY, payload, ...opts });
const cont = (payload, opts) => buildFrame({ opcode: OP.CONT, payload, ...opts });
const ping = (payload, opts) => buildFrame({ opcode: OP.PING, payload, ...opts });
const pong = (payload, opts) => buildFrame({ opcode: OP.PONG, payload, ...opts });
const close = (code, reason, opts) => buildFrame({ opcode: OP.CLOSE, payload: closePayload(code, reason), ...opts });

// Sends `bytes` in one write, frame by frame with pauses, or chopped into 1-byte writes.
async function sendAs(c, mode, frames) {
  if (mode === 'one write') await c.write(Buffer.concat(frames));
  else if (mode === 'frame by frame') for (const f of frames) { await c.write(f); await sleep(20); }
  else await c.sendChopped(Buffer.concat(frames), { chunk: 1, delayMs: 1 });
}
const MODES = ['one write', 'frame by frame', 'chopped'];

// ---------------------------------------------------------------------------------------------
describe('1 framing', () => {
  for (const [op, make] of [[OP.TEXT, textPayload], [OP.BINARY, binaryPayload]]) {
    for (const len of [0, 125, 126, 127, 128, 65535, 65536]) {
      const payload = make(len, len);
      test(`1 ${opName(op)} of ${len} bytes, whole`, async () => {
        const c = await open();
        await c.sendFrame({ opcode: op, payload });
        await expectEcho(c, op, payload);
        await closeCleanly(c);
      });
      test(`1 ${opName(op)} of ${len} bytes, chopped`, async () => {
        const c = await open();
        const frame = buildFrame({ opcode: op, payload });
        const hdrLen = frame.length - len;
        // header and small payloads one byte per write; big payloads in 997-byte writes
        await c.sendChopped(frame.subarray(0, hdrLen), { chunk: 1, delayMs: 2 });
        await c.sendChopped(frame.subarray(hdrLen), len <= 128 ? { chunk: 1, delayMs: 1 } : { chunk: 997 });
        await expectEcho(c, op, payload);
        await closeCleanly(c);
      });
    }
  }

  test('1 lengths in non-minimal encodings are accepted (16-bit for 5 bytes, 64-bit for 200 bytes)', async () => {
    const c = await open();
    await c.sendFrame({ opcode: OP.TEXT, payload: 'short', lenForm: 16 });
    await expectEcho(c, OP.TEXT, 'short');
    const p = textPayload(200);
    await c.sendFrame({ opcode: OP.BINARY, payload: p, lenForm: 64 });
    await expectEcho(c, OP.BINARY, p);
    await closeCleanly(c);
  });

  test('1 many frames in one write are all echoed in order', async () => {
    const c = await open();
    const msgs = Array.from({ length: 50 }, (_, i) => textPayload(i * 13, i));
    await c.write(Buffer.concat(msgs.map((m) => text(m))));
    for (const m of msgs) await expectEcho(c, OP.TEXT, m);
    await closeCleanly(c);
  });

  test('1 an unmasked client frame -> 1002', async () => {
    const c = await open();
    await c.sendText('unmasked', { mask: false });
    await c.expectFail(1002);
  });

  test('1 a 64-bit length with the most significant bit set -> 1002', async () => {
    const c = await open();
    await c.write(frameHeader({ opcode: OP.BINARY, len: 1n << 63n, maskKey: [1, 2, 3, 4] }));
    await c.expectFail(1002);
  });
});

// ---------------------------------------------------------------------------------------------
describe('2 ping/pong', () => {
  test('2.1-2.4 ping with payloads of every length 0..125 -> pong with the same payload', async () => {
    const c = await open();
    for (let n = 0; n <= 125; n++) {
      const p = binaryPayload(n, n);
      await c.ping(p);
      await expectPong(c, p);
    }
    await closeCleanly(c);
  });

  test('2.2 ping with a text payload', async () => {
    const c = await open();
    await c.ping('Hello, world!');
    await expectPong(c, 'Hello, world!');
    await closeCleanly(c);
  });

  test('2.3 ping with a binary payload', async () => {
    const c = await open();
    const p = hex('00 ff fe fd fc fb 00 ff');
    await c.ping(p);
    await expectPong(c, p);
    await closeCleanly(c);
  });

  test('2.5 ping with a 126-byte payload -> 1002', async () => {
    const c = await open();
    await c.ping(binaryPayload(126));
    await c.expectFail(1002);
  });

  test('2.5 ping with a 126-byte payload announced in a 16-bit length, header only -> 1002', async () => {
    const c = await open();
    await c.write(frameHeader({ opcode: OP.PING, len: 126, maskKey: [9, 9, 9, 9] }));
    await c.expectFail(1002);
  });

  test('2.6 ping with 125-byte payload chopped into 1-byte writes', async () => {
    const c = await open();
    const p = binaryPayload(125, 3);
    await c.sendChopped(ping(p), { chunk: 1, delayMs: 1 });
    await expectPong(c, p);
    await closeCleanly(c);
  });

  test('2.7 unsolicited empty pong is ignored', async () => {
    const c = await open();
    await c.pong();
    await c.sendText('after pong');
    await expectEcho(c, OP.TEXT, 'after pong');
    await closeCleanly(c);
  });

  test('2.8 unsolicited pong with payload is ignored', async () => {
    const c = await open();
    await c.pong('unsolicited pong payload');
    await c.expectSilence(200);
    await closeCleanly(c);
  });

  test('2.9 unsolicited pong then ping -> exactly one pong, with the ping payload', async () => {
    const c = await open();
    await c.write(Buffer.concat([pong('unsolicited pong payload'), ping('ping payload')]));
    await expectPong(c, 'ping payload');
    await c.expectSilence(200);
    await closeCleanly(c);
  });

  for (const mode of ['one write', 'chopped']) {
    test(`2.10/2.11 ten pings in a row (${mode}) -> ten pongs in order`, async () => {
      const c = await open();
      await sendAs(c, mode, Array.from({ length: 10 }, (_, i) => ping(`payload-${i}`)));
      for (let i = 0; i < 10; i++) await expectPong(c, `payload-${i}`);
      await closeCleanly(c);
    });
  }
});

// ---------------------------------------------------------------------------------------------
describe('3 reserved bits', () => {
  for (let rsv = 1; rsv <= 7; rsv++) {
    for (const [name, frame] of [
      ['TEXT', () => text('reserved', { rsv })],
      ['BINARY', () => binary(hex('00ff0102'), { rsv })],
      ['PING', () => ping('reserved', { rsv })],
      ['CLOSE', () => close(1000, '', { rsv })],
    ]) {
      test(`3 ${name} with RSV=${rsv} -> 1002`, async () => {
        const c = await open();
        await c.write(frame());
        await c.expectFail(1002);
      });
    }
  }

  for (const [i, mode] of MODES.entries()) {
    test(`3.${i + 2} text, then text with RSV=${i + 2}, then ping (${mode}) -> echo first, then 1002 and no pong`, async () => {
      const c = await open();
      await sendAs(c, mode, [text('Hello, world!'), text('Hello, world!', { rsv: i + 2 }), ping('no pong')]);
      await expectEcho(c, OP.TEXT, 'Hello, world!');
      await c.expectFail(1002);
    });
  }
});

// ---------------------------------------------------------------------------------------------
describe('4 opcodes', () => {
  for (const op of [3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf]) {
    test(`4 reserved opcode 0x${op.toString(16)} (empty) -> 1002`, async () => {
      const c = await open();
      await c.sendFrame({ opcode: op });
      await c.expectFail(1002);
    });
    test(`4 reserved opcode 0x${op.toString(16)} after an echo, then ping -> echo, then 1002 and no pong`, async () => {
      const c = await open();
      await c.write(Buffer.concat([text('Hello, world!'), buildFrame({ opcode: op, payload: 'reserved opcode' }), ping('no pong')]));
      await expectEcho(c, OP.TEXT, 'Hello, world!');
      await c.expectFail(1002);
    });
  }

  test('4.1.5 reserved opcode chopped in 1-byte writes after an echo -> echo, then 1002', async () => {
    const c = await open();
    await sendAs(c, 'chopped', [text('Hello, world!'), buildFrame({ opcode: 7, payload: 'x' }), ping('no pong')]);
    await expectEcho(c, OP.TEXT, 'Hello, world!');
    await c.expectFail(1002);
  });
});

// ---------------------------------------------------------------------------------------------
describe('5 fragmentation', () => {
  test('5.1 ping in 2 fragments -> 1002', async () => {
    const c = await open();
    await c.write(Buffer.concat([ping('fragment1', { fin: false }), cont('fragment2')]));
    await c.expectFail(1002);
  });

  test('5.2 pong in 2 fragments -> 1002', async () => {
    const c = await open();
    await c.write(Buffer.concat([pong('fragment1', { fin: false }), cont('fragment2')]));
    await c.expectFail(1002);
  });

  test('5.1 a ping with FIN=0 alone (header only is enough) -> 1002', async () => {
    const c = await open();
    await c.write(ping('', { fin: false }));
    await c.expectFail(1002);
  });

  for (const [i, mode] of MODES.entries()) {
    test(`5.${i + 3} text in 2 fragments (${mode}) -> one echo`, async () => {
      const c = await open();
      await sendAs(c, mode, [text('fragment1', { fin: false }), cont('fragment2')]);
      await expectEcho(c, OP.TEXT, 'fragment1fragment2');
      await closeCleanly(c);
    });
    test(`5.${i + 6} text in 2 fragments with a ping between (${mode}) -> pong, then echo`, async () => {
      const c = await open();
      await sendAs(c, mode, [text('fragment1', { fin: false }), ping('pongme!'), cont('fragment2')]);
      await expectPong(c, 'pongme!');
      await expectEcho(c, OP.TEXT, 'fragment1fragment2');
      await closeCleanly(c);
    });
    test(`5.${i + 9} continuation FIN=1 without a message (${mode}) -> 1002`, async () => {
      const c = await open();
      await sendAs(c, mode, [cont('non-continuation payload'), text('Hello, world!')]);
      await c.expectFail(1002);
    });
    test(`5.${i + 12} continuation FIN=0 without a message (${mode}) -> 1002`, async () => {
      const c = await open();
      await sendAs(c, mode, [cont('non-continuation payload', { fin: false }), text('Hello, world!')]);
      await c.expectFail(1002);
    });
  }

  test('5 binary in 2 fragments -> one binary echo', async () => {
    const c = await open();
    const p = binaryPayload(300, 5);
    await c.write(Buffer.concat(fragmentFrames(OP.BINARY, p, { cuts: [100] })));
    await expectEcho(c, OP.BINARY, p);
    await closeCleanly(c);
  });

  test('5 binary in 10 fragments, and empty fragments in the middle', async () => {
    const c = await open();
    const p = binaryPayload(1000, 6);
    await c.write(Buffer.concat(fragmentFrames(OP.BINARY, p, { size: 100 })));
    await expectEcho(c, OP.BINARY, p);
    await c.write(Buffer.concat(fragmentFrames(OP.BINARY, p, { cuts: [0, 0, 500, 500, 1000] })));
    await expectEcho(c, OP.BINARY, p);
    await closeCleanly(c);
  });

  test('5.15 two fragments, then a continuation with nothing to continue -> echo, then 1002', async () => {
    const c = await open();
    await c.write(Buffer.concat([text('fragment1', { fin: false }), cont('fragment2'), cont('fragment3', { fin: false }), cont('fragment4')]));
    await expectEcho(c, OP.TEXT, 'fragment1fragment2');
    await c.expectFail(1002);
  });

  for (const fin of [false, true]) {
    test(`5.${fin ? 17 : 16} continuation FIN=${fin ? 1 : 0} first, then a valid fragmented message -> 1002, no echo`, async () => {
      const c = await open();
      await c.write(Buffer.concat([cont('fragment1', { fin }), text('fragment2', { fin: false }), cont('fragment3')]));
      await c.expectFail(1002);
    });
  }

  test('5.18 text FIN=0, then a new text frame inside the fragmented message -> 1002', async () => {
    const c = await open();
    await c.write(Buffer.concat([text('fragment1', { fin: false }), text('fragment2')]));
    await c.expectFail(1002);
  });

  test('5 binary FIN=0, then a new binary frame (FIN=0) inside the fragmented message -> 1002', async () => {
    const c = await open();
    await c.write(Buffer.concat([binary('a', { fin: false }), binary('b', { fin: false })]));
    await c.expectFail(1002);
  });

  for (const mode of ['frame by frame', 'chopped']) {
    test(`5.19/5.20 text in 5 fragments with 2 pings between (${mode}) -> pongs in order, then one echo`, async () => {
      const c = await open();
      await sendAs(c, mode, [
        text('fragment1', { fin: false }), cont('fragment2', { fin: false }), ping('pongme 1!'),
        cont('fragment3', { fin: false }), ping('pongme 2!'), cont('fragment4', { fin: false }), cont('fragment5'),
      ]);
      await expectPong(c, 'pongme 1!');
      await expectPong(c, 'pongme 2!');
      await expectEcho(c, OP.TEXT, 'fragment1fragment2fragment3fragment4fragment5');
      await closeCleanly(c);
    });
  }

  test('5 a fragmented message sent one byte per write, with 1-byte fragments', async () => {
    const c = await open();
    const p = Buffer.from('fragmented, byte by byte');
    await c.sendChopped(Buffer.concat(fragmentFrames(OP.TEXT, p, { size: 1 })), { chunk: 1 });
    await expectEcho(c, OP.TEXT, p);
    await closeCleanly(c);
  });

  test('5 a data frame between two messages is not confused with a continuation', async () => {
    const c = await open();
    await c.write(Buffer.concat([text('a', { fin: false }), cont('b'), binary(hex('0102')), text('c', { fin: false }), cont('d')]));
    await expectEcho(c, OP.TEXT, 'ab');
    await expectEcho(c, OP.BINARY, hex('0102'));
    await expectEcho(c, OP.TEXT, 'cd');
    await closeCleanly(c);
  });
});

// ---------------------------------------------------------------------------------------------
describe('6 UTF-8', () => {
  const VALID = {
    '6.1.1 empty': '',
    '6.2 Hello-µ@ßöäüàá-UTF-8!!': hex('48656c6c6f2dc2b540c39fc3b6c3a4c3bcc3a0c3a12d5554462d382121'),
    '6.5 κόσμε': hex('cebae1bdb9cf83cebcceb5'),
    '6.7 first of each length: U+0000': hex('00'),
    '6.7 first of each length: U+0080': hex('c280'),
    '6.7 first of each length: U+0800': hex('e0a080'),
    '6.7 first of each length: U+10000': hex('f0908080'),
    '6.9 last of each length: U+007F': hex('7f'),
    '6.9 last of each length: U+07FF': hex('dfbf'),
    '6.9 last of each length: U+FFFF': hex('efbfbf'),
    '6.11 U+D7FF': hex('ed9fbf'),
    '6.11 U+E000': hex('ee8080'),
    '6.11 U+FFFD': hex('efbfbd'),
    '6.11 U+10FFFF': hex('f48fbfbf'),
    '6.22 noncharacters U+FFFE U+1FFFE U+10FFFE': hex('efbfbe f09fbfbe f48fbfbe'),
    '4-byte emoji and music symbol': Buffer.from('😀 𝄞 🇫🇷', 'utf8'),
  };
  const INVALID = {
    '6.3.1 κόσμε with a surrogate inside': hex('cebae1bdb9cf83cebcceb5eda080656469746564'),
    '6.8 5-byte sequence': hex('f888808080'),
    '6.8 6-byte sequence': hex('fc8480808080'),
    '6.10 U+1FFFFF (4 bytes, > U+10FFFF)': hex('f7bfbfbf'),
    '6.10 5-byte max': hex('fbbfbfbfbf'),
    '6.11.5 U+110000': hex('f4908080'),
    '6.12 lone continuation 0x80': hex('80'),
    '6.12 lone continuation 0xbf': hex('bf'),
    '6.12 continuations 80 bf 80': hex('80bf80'),
    '6.13 lonely start byte followed by space: c0 20': hex('c020'),
    '6.13 lonely start byte followed by space: e0 20': hex('e020'),
    '6.13 lonely start byte followed by space: f0 20': hex('f020'),
    '6.14 truncated 2-byte at the end': hex('41c2'),
    '6.14 truncated 3-byte at the end': hex('41e282'),
    '6.14 truncated 4-byte at the end': hex('41f09f98'),
    '6.15 concatenated truncated sequences': hex('c0e080f08080f8808080fc80808080dfefbff7bfbffbbfbfbffdbfbfbfbf'),
    '6.16 impossible byte 0xfe': hex('fe'),
    '6.16 impossible byte 0xff': hex('ff'),
    '6.16 impossible bytes fe fe ff ff': hex('fefeffff'),
    '6.17 overlong / (2 bytes)': hex('c0af'),
    '6.17 overlong / (3 bytes)': hex('e080af'),
    '6.17 overlong / (4 bytes)': hex('f08080af'),
    '6.18 maximum overlong (2 bytes)': hex('c1bf'),
    '6.18 maximum overlong (3 bytes)': hex('e09fbf'),
    '6.18 maximum overlong (4 bytes)': hex('f08fbfbf'),
    '6.19 overlong NUL (2 bytes)': hex('c080'),
    '6.19 overlong NUL (3 bytes)': hex('e08080'),
    '6.20 surrogate U+D800': hex('eda080'),
    '6.20 surrogate U+DB7F': hex('edadbf'),
    '6.20 surrogate U+DFFF': hex('edbfbf'),
    '6.21 surrogate pair U+D800 U+DC00': hex('eda080edb080'),
    '6.21 surrogate pair U+DBFF U+DFFF': hex('edafbfedbfbf'),
    'invalid start 0xf5': hex('f5808080'),
    'truncated sequence followed by ASCII': hex('e28241'),
  };

  for (const [name, p] of Object.entries(VALID)) {
    test(`6 valid ${name}: whole`, async () => {
      const c = await open();
      await c.sendText(p);
      await expectEcho(c, OP.TEXT, p);
      await closeCleanly(c);
    });
    if (p.length > 1) {
      test(`6 valid ${name}: 1-byte fragments and 1-byte writes`, async () => {
        const c = await open();
        await c.write(Buffer.concat(fragmentFrames(OP.TEXT, p, { size: 1 })));
        await expectEcho(c, OP.TEXT, p);
        await c.sendChopped(text(p), { chunk: 1 });
        await expectEcho(c, OP.TEXT, p);
        await closeCleanly(c);
      });
    }
  }

  test('6.1.2/6.1.3 empty fragments: 3 empty, and empty-nonempty-empty', async () => {
    const c = await open();
    await c.write(Buffer.concat([text('', { fin: false }), cont('', { fin: false }), cont('')]));
    await expectEcho(c, OP.TEXT, '');
    await c.write(Buffer.concat([text('', { fin: false }), cont('middle', { fin: false }), cont('')]));
    await expectEcho(c, OP.TEXT, 'middle');
    await closeCleanly(c);
  });

  test('6 valid: every split of κόσμε and of U+10FFFF U+10000 across 2 fragments', async () => {
    const c = await open();
    for (const p of [hex('cebae1bdb9cf83cebcceb5'), hex('f48fbfbff0908080')]) {
      for (let cut = 0; cut <= p.length; cut++) {
        await c.write(Buffer.concat(fragmentFrames(OP.TEXT, p, { cuts: [cut] })));
        await expectEcho(c, OP.TEXT, p);
      }
    }
    await closeCleanly(c);
  });

  for (const [name, p] of Object.entries(INVALID)) {
    test(`6 invalid ${name}: whole -> 1007`, async () => {
      const c = await open();
      await c.sendText(p);
      await c.expectFail(1007);
    });
    test(`6 invalid ${name}: in 1-byte fragments -> 1007`, async () => {
      const c = await open();
      await c.write(Buffer.concat(fragmentFrames(OP.TEXT, Buffer.concat([Buffer.from('ok '), p]), { size: 1 })));
      await c.expectFail(1007);
    });
  }

  test('6 a binary message may hold any bytes (no UTF-8 check)', async () => {
    const c = await open();
    const p = hex('eda080 c0af fe ff f4908080 80');
    await c.sendBinary(p);
    await expectEcho(c, OP.BINARY, p);
    await closeCleanly(c);
  });

  test('6 invalid across a fragment boundary: [e2 82] [41] -> 1007', async () => {
    const c = await open();
    await c.write(Buffer.concat([text(hex('e282'), { fin: false }), cont(hex('41'))]));
    await c.expectFail(1007);
  });

  test('6 valid across a fragment boundary: [f0 9f] [98 80] is echoed as 😀', async () => {
    const c = await open();
    await c.write(Buffer.concat([text(hex('f09f'), { fin: false }), cont(hex('9880'))]));
    await expectEcho(c, OP.TEXT, Buffer.from('😀'));
    await closeCleanly(c);
  });

  test('6 truncated sequence at the end of the last fragment -> 1007', async () => {
    const c = await open();
    await c.write(Buffer.concat([text('abc', { fin: false }), cont(hex('cebae1bdb9cf83cebcce'))]));
    await c.expectFail(1007);
  });

  // Fail fast: the invalid byte is in a fragment of a message whose end was never sent.
  test('6.4.1 fail-fast: 0x110000 in the 2nd of 3 fragments -> 1007 before the 3rd is sent', async () => {
    const c = await open();
    await c.write(text(hex('cebae1bdb9cf83cebcceb5'), { fin: false }));
    await c.expectSilence(300); // a valid first fragment is accepted silently
    await c.write(cont(hex('f4908080'), { fin: false }));
    await c.expectFail(1007, { timeoutMs: 1500 });
  });

  test('6.4.2 fail-fast: invalid sequence split across the 2nd fragment boundary -> 1007 before the 3rd', async () => {
    const c = await open();
    await c.write(text(hex('cebae1bdb9cf83cebcceb5f4'), { fin: false }));
    await c.expectSilence(300);
    await c.write(cont(hex('90'), { fin: false }));
    await c.expectFail(1007, { timeoutMs: 1500 });
  });

  test('6 fail-fast: invalid byte in the FIRST fragment of an unfinished message -> 1007', async () => {
    const c = await open();
    await c.write(text(Buffer.concat([Buffer.from('valid start '), hex('c0af'), Buffer.from(' more')]), { fin: false }));
    await c.expectFail(1007, { timeoutMs: 1500 });
  });

  test('6 fail-fast: surrogate in the first fragment (FIN=0) -> 1007', async () => {
    const c = await open();
    await c.write(text(hex('eda080'), { fin: false }));
    await c.expectFail(1007, { timeoutMs: 1500 });
  });

  // Autobahn 6.4.3/6.4.4: the same inside ONE frame whose payload is only partly sent.
  test('6.4.3 fail-fast within a frame: invalid bytes in the first part of an unfinished frame -> 1007', async () => {
    const c = await open();
    const payload = Buffer.concat([hex('cebae1bdb9cf83cebcceb5'), hex('f4908080'), Buffer.from('edited'.repeat(20))]);
    const frame = text(payload);
    const hdrLen = frame.length - payload.length;
    await c.write(frame.subarray(0, hdrLen + 11));
    await c.expectSilence(300);
    await c.write(frame.subarray(hdrLen + 11, hdrLen + 15)); // the invalid code point; the rest never comes
    await c.expectFail(1007, { timeoutMs: 1500 });
  });

  test('6.4.4 fail-fast within a frame: the first byte that makes it invalid -> 1007', async () => {
    const c = await open();
    const payload = Buffer.concat([hex('cebae1bdb9cf83cebcceb5'), hex('f4908080'), Buffer.from('edited'.repeat(20))]);
    const frame = text(payload);
    const hdrLen = frame.length - payload.length;
    await c.write(frame.subarray(0, hdrLen + 12)); // ... f4
    await c.expectSilence(300);
    await c.write(frame.subarray(hdrLen + 12, hdrLen + 13)); // 90: U+110000 is now certain
    await c.expectFail(1007, { timeoutMs: 1500 });
  });
});

// ---------------------------------------------------------------------------------------------
describe('7 close', () => {
  test('7.1.1 text, then close 1000 -> echo, then close 1000 and TCP closed', async () => {
    const c = await open();
    await c.write(Buffer.concat([text('Hello World!'), close(1000)]));
    await expectEcho(c, OP.TEXT, 'Hello World!');
    const cl = await c.readClose();
    assert.equal(cl.code, 1000);
    await c.waitEnd(2000);
  });

  test('7.1.2 close twice -> one close answer, TCP closed', async () => {
    const c = await open();
    await c.write(Buffer.concat([close(1000), close(1000)]));
    const cl = await c.readClose();
    assert.equal(cl.code, 1000);
    await c.waitEnd(2000);
    assert.equal(c.frames.length, 0, `nothing after the close; ${c.describe()}`);
  });

  test('7.1.3 close, then ping -> no pong', async () => {
    const c = await open();
    await c.write(Buffer.concat([close(1000), ping('Hello World!')]));
    const cl = await c.readClose();
    assert.equal(cl.code, 1000);
    await c.waitEnd(2000);
    assert.equal(c.frames.length, 0, `no pong after the close; ${c.describe()}`);
  });

  test('7.1.4 close, then text -> no echo', async () => {
    const c = await open();
    await c.write(Buffer.concat([close(1000), text('Hello World!')]));
    const cl = await c.readClose();
    assert.equal(cl.code, 1000);
    await c.waitEnd(2000);
    assert.equal(c.frames.length, 0, `no echo after the close; ${c.describe()}`);
  });

  test('7.1.4 close, then text in a later write -> ignored', async () => {
    const c = await open();
    await c.write(close(1000));
    await c.write(text('after close'));
    const cl = await c.readClose();
    assert.equal(cl.code, 1000);
    await c.waitEnd(2000);
    assert.equal(c.frames.length, 0, `no echo after the close; ${c.describe()}`);
  });

  test('7.1.5 fragment, close, continuation -> close answered, no echo', async () => {
    const c = await open();
    await c.write(Buffer.concat([text('fragment1', { fin: false }), close(1000), cont('fragment2')]));
    const cl = await c.readClose();
    assert.equal(cl.code, 1000);
    await c.waitEnd(2000);
    assert.equal(c.frames.length, 0, `no echo after the close; ${c.describe()}`);
  });

  test('7.1.6 256 KiB text, close, ping -> the echo (if any) is exact, close 1000, no pong', async () => {
    const c = await open();
    const p = textPayload(256 * 1024, 9);
    await c.write(Buffer.concat([text(p), close(1000), ping('Hello World!')]));
    let f = await c.nextFrame(5000);
    if (f.opcode === OP.TEXT) {
      assertSameBytes(f.payload, p, 'echo of the 256 KiB message');
      f = await c.nextFrame(5000);
    }
    assert.equal(opName(f.opcode), 'CLOSE', c.describe());
    assert.equal(f.payload.readUInt16BE(0), 1000);
    await c.waitEnd(2000);
    assert.equal(c.frames.length, 0, `no pong after the close; ${c.describe()}`);
  });

  test('7.3.1 close with an empty payload -> close with an empty payload or 1000', async () => {
    const c = await open();
    await c.sendClose();
    const cl = await c.readClose();
    assert.ok(cl.code === null || cl.code === 1000, `answer code ${cl.code}`);
    await c.waitEnd(2000);
  });

  test('7.3.2 close with a 1-byte payload -> 1002', async () => {
    const c = await open();
    await c.sendFrame({ opcode: OP.CLOSE, payload: hex('03') });
    await c.expectFail(1002);
  });

  test('7.3.3 close 1000 without reason -> 1000', async () => {
    const c = await open();
    await c.sendClose(1000);
    const cl = await c.readClose();
    assert.equal(cl.code, 1000);
    await c.waitEnd(2000);
  });

  test('7.3.4 close 1000 with a reason -> 1000', async () => {
    const c = await open();
    await c.sendClose(1000, 'Hello World!');
    const cl = await c.readClose();
    assert.equal(cl.code, 1000);
    await c.waitEnd(2000);
  });

  test('7.3.5 close 1000 with a 123-byte reason (125-byte payload) -> 1000', async () => {
    const c = await open();
    await c.sendClose(1000, '*'.repeat(123));
    const cl = await c.readClose();
    assert.equal(cl.code, 1000);
    await c.waitEnd(2000);
  });

  test('7.3.5 close 1000 with a 123-byte multi-byte UTF-8 reason -> 1000', async () => {
    const c = await open();
    const reason = Buffer.from('é'.repeat(60) + 'abc'); // 123 bytes
    assert.equal(reason.length, 123);
    await c.sendClose(1000, reason);
    const cl = await c.readClose();
    assert.equal(cl.code, 1000);
    await c.waitEnd(2000);
  });

  test('7.3.6 close 1000 with a 124-byte reason (126-byte payload) -> 1002', async () => {
    const c = await open();
    await c.sendClose(1000, '*'.repeat(124));
    await c.expectFail(1002);
  });

  test('7.5.1 close reason not UTF-8 -> 1007', async () => {
    const c = await open();
    await c.sendClose(1000, hex('cebae1bdb9cf83cebcceb5eda080656469746564'));
    await c.expectFail(1007);
  });

  test('7.5.1 close reason truncated UTF-8 -> 1007', async () => {
    const c = await open();
    await c.sendClose(1000, hex('4142e282'));
    await c.expectFail(1007);
  });

  for (const code of [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999]) {
    test(`7.7 valid close code ${code} is echoed`, async () => {
      const c = await open();
      await c.sendClose(code, 'bye');
      const cl = await c.readClose();
      assert.equal(cl.code, code);
      await c.waitEnd(2000);
      assert.equal(c.frames.length, 0);
    });
  }

  for (const code of [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]) {
    test(`7.9 invalid close code ${code} -> 1002`, async () => {
      const c = await open();
      await c.sendClose(code);
      await c.expectFail(1002);
    });
  }

  test('7 close chopped into 1-byte writes -> answered', async () => {
    const c = await open();
    await c.sendChopped(close(4321, 'chopped close'), { chunk: 1, delayMs: 1 });
    const cl = await c.readClose();
    assert.equal(cl.code, 4321);
    await c.waitEnd(2000);
  });
});

// ---------------------------------------------------------------------------------------------
describe('9 limits and large messages', () => {
  for (const n of [64 * 1024, 256 * 1024, 1024 * 1024, 4 * 1024 * 1024, 16 * 1024 * 1024]) {
    for (const [op, make] of [[OP.TEXT, textPayload], [OP.BINARY, binaryPayload]]) {
      test(`9 ${opName(op)} of ${n / 1024} KiB is echoed exactly`, async () => {
        const c = await open();
        const p = make(n, n);
        await c.sendFrame({ opcode: op, payload: p });
        await expectEcho(c, op, p, 30000);
        await closeCleanly(c);
      });
    }
  }

  for (const size of [64, 4096, 65536, 1024 * 1024]) {
    // A server of its own: if it chokes on 65536 fragments, the tests after it do not suffer.
    test(`9.3/9.4 4 MiB message in ${size}-byte fragments is echoed exactly`, async () => {
      const own = await new EchoFixture([]).start();
      try {
        const c = await open(own);
        const p = binaryPayload(4 * 1024 * 1024, size);
        const frames = fragmentFrames(OP.BINARY, p, { size });
        const t0 = Date.now();
        // write in batches so the client does not build one giant buffer of frames
        for (let i = 0; i < frames.length; i += 256) await c.write(Buffer.concat(frames.slice(i, i + 256)));
        await expectEcho(c, OP.BINARY, p, 20000);
        assert.ok(Date.now() - t0 < 20000, `took ${Date.now() - t0} ms`);
        await closeCleanly(c);
        await own.check();
      } finally {
        await own.stop();
      }
    });
  }

  test('9 default limit: 16 MiB + 1 announced in the header -> 1009 before any payload', async () => {
    const c = await open();
    await c.write(frameHeader({ opcode: OP.BINARY, len: 16 * 1024 * 1024 + 1, maskKey: [1, 2, 3, 4] }));
    await c.expectFail(1009);
  });

  test('9 default limit: fragments totalling 16 MiB + 1 -> 1009 at the header of the last fragment', async () => {
    const c = await open();
    const half = 8 * 1024 * 1024;
    await c.write(binary(binaryPayload(half), { fin: false }));
    await c.expectSilence(200);
    await c.write(frameHeader({ opcode: OP.CONT, len: half + 1, maskKey: [1, 2, 3, 4] }));
    await c.expectFail(1009, { timeoutMs: 5000 });
  });

  test('9 --max-message-bytes 1000: exactly 1000 bytes (text and binary) is echoed', async () => {
    const c = await open(small);
    const t = textPayload(1000);
    await c.sendText(t);
    await expectEcho(c, OP.TEXT, t);
    const b = binaryPayload(1000);
    await c.sendBinary(b);
    await expectEcho(c, OP.BINARY, b);
    await c.write(Buffer.concat(fragmentFrames(OP.BINARY, b, { cuts: [500] })));
    await expectEcho(c, OP.BINARY, b);
    await closeCleanly(c);
  });

  for (const op of [OP.TEXT, OP.BINARY]) {
    test(`9 --max-message-bytes 1000: a 1001-byte ${opName(op)} header -> 1009 without the payload`, async () => {
      const c = await open(small);
      await c.write(frameHeader({ opcode: op, len: 1001, maskKey: [5, 6, 7, 8] }));
      await c.expectFail(1009);
    });
  }

  test('9 --max-message-bytes 1000: a whole 1001-byte message -> 1009', async () => {
    const c = await open(small);
    await c.sendBinary(binaryPayload(1001));
    await c.expectFail(1009);
  });

  test('9 --max-message-bytes 1000: fragments 600 + 401 -> 1009 at the second header', async () => {
    const c = await open(small);
    await c.write(text(textPayload(600), { fin: false }));
    await c.expectSilence(200);
    await c.write(frameHeader({ opcode: OP.CONT, len: 401, maskKey: [5, 6, 7, 8] }));
    await c.expectFail(1009);
  });

  test('9 --max-message-bytes 1000: control frames do not count toward the message size', async () => {
    const c = await open(small);
    const p = textPayload(1000);
    await c.write(Buffer.concat([text(p.subarray(0, 900), { fin: false }), ping(binaryPayload(125)), cont(p.subarray(900))]));
    await expectPong(c, binaryPayload(125));
    await expectEcho(c, OP.TEXT, p);
    await closeCleanly(c);
  });

  for (const op of [OP.TEXT, OP.BINARY]) {
    test(`9.7/9.8 1000 small ${opName(op)} messages, each awaited, round trip`, async () => {
      const c = await open();
      for (let i = 0; i < 1000; i++) {
        const p = op === OP.TEXT ? Buffer.from(`message ${i}`) : binaryPayload(16, i);
        await c.sendFrame({ opcode: op, payload: p });
        await expectEcho(c, op, p);
      }
      await closeCleanly(c);
    });
  }
});

// ---------------------------------------------------------------------------------------------
describe('10 auto-fragmentation', () => {
  for (const [op, make] of [[OP.TEXT, textPayload], [OP.BINARY, binaryPayload]]) {
    test(`10.1.1 ${opName(op)} of 65536 bytes in 1300-byte fragments is echoed as one message`, async () => {
      const c = await open();
      const p = make(65536, 10);
      await c.write(Buffer.concat(fragmentFrames(op, p, { size: 1300 })));
      await expectEcho(c, op, p);
      await closeCleanly(c);
    });
  }

  test('10 a UTF-8 text of 65536 bytes in 1300-byte fragments, code points split across them', async () => {
    const c = await open();
    const p = Buffer.from('€😀ß'.repeat(65536 / 9 + 1)).subarray(0, 9 * Math.floor(65536 / 9));
    await c.write(Buffer.concat(fragmentFrames(OP.TEXT, p, { size: 1300 })));
    await expectEcho(c, OP.TEXT, p);
    await closeCleanly(c);
  });
});
