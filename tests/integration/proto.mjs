// A minimal, independent implementation of docs/PROTOCOL.md for the tests: envelope and
// control-message encoding and decoding. Written from the spec, not from the C code.
const te = new TextEncoder();
const td = new TextDecoder('utf-8', { fatal: true });

export const KIND = { REQUEST: 1, RESPONSE: 2, PUSH: 3, SEND: 4, HELLO: 5, RESUME: 6, RESUMED: 7, ACK: 8, ERROR: 9, AUTH: 10, PING: 11 };
export const METHOD = { NONE: 0, GET: 1, POST: 2, PUT: 3, PATCH: 4, DELETE: 5 };

function varint(n) {
  const out = [];
  n = BigInt(n);
  do { const b = Number(n & 0x7fn); n >>= 7n; out.push(n ? b | 0x80 : b); } while (n);
  return out;
}
function uint(n, w) {
  const out = [];
  n = BigInt(n);
  for (let i = w - 1; i >= 0; i--) out.push(Number((n >> BigInt(8 * i)) & 0xffn));
  return out;
}
const bytesOf = (b) => (typeof b === 'string' ? te.encode(b) : b instanceof Uint8Array ? b : Uint8Array.from(b));
const text = (s) => { const b = bytesOf(s); return [...varint(b.length), ...b]; };

export function encodeEnvelope({ kind, method = 0, status = 0, id = 0, stream = '', offset = 0n, epoch = 0n, url = '', body = new Uint8Array() }) {
  return Buffer.from([...uint(kind, 1), ...uint(method, 1), ...uint(status, 2), ...uint(id, 4), ...text(stream),
    ...uint(offset, 8), ...uint(epoch, 8), ...text(url), ...bytesOf(body)]);
}

class Reader {
  constructor(buf) { this.b = buf; this.p = 0; }
  need(n) { if (this.p + n > this.b.length) throw new Error(`truncated at ${this.p}: need ${n}`); }
  uint(w) { this.need(w); let v = 0n; for (let i = 0; i < w; i++) v = (v << 8n) | BigInt(this.b[this.p++]); return v; }
  varint() {
    let v = 0n, shift = 0n;
    for (let i = 0; i < 10; i++) {
      this.need(1); const byte = this.b[this.p++];
      v |= BigInt(byte & 0x7f) << shift; shift += 7n;
      if (!(byte & 0x80)) return v;
    }
    throw new Error('varint too long');
  }
  bytes() { const n = Number(this.varint()); this.need(n); const r = this.b.subarray(this.p, this.p + n); this.p += n; return r; }
  text() { return td.decode(this.bytes()); }
  rest() { const r = this.b.subarray(this.p); this.p = this.b.length; return r; }
  get done() { return this.p >= this.b.length; }
}

export function decodeEnvelope(buf) {
  const r = new Reader(buf);
  const env = { kind: Number(r.uint(1)), method: Number(r.uint(1)), status: Number(r.uint(2)), id: Number(r.uint(4)),
    stream: r.text(), offset: r.uint(8), epoch: r.uint(8), url: r.text() };
  env.body = Buffer.from(r.rest());
  return env;
}

export function decodeHello(buf) {
  const r = new Reader(buf);
  const kind = Number(r.uint(1));
  if (kind !== KIND.HELLO) throw new Error(`not a HELLO: kind ${kind}`);
  return { kind, version: Number(r.uint(1)), connId: r.text(), token: r.text(), heartbeatMs: Number(r.uint(4)),
    maxMessage: Number(r.uint(4)), maxReplay: Number(r.uint(4)), historyMax: Number(r.uint(4)),
    envelopeSchema: Buffer.from(r.bytes()), schemas: Buffer.from(r.rest()) };
}

export function encodePositions(positions) {
  const out = [];
  for (const p of positions) out.push(...text(p.stream), ...uint(p.offset, 8), ...uint(p.epoch, 8));
  return out;
}

export function encodeResume(token, positions) {
  return encodeEnvelope({ kind: KIND.RESUME, body: Uint8Array.from([...text(token), ...encodePositions(positions)]) });
}

export function encodeAck(positions) {
  return encodeEnvelope({ kind: KIND.ACK, body: Uint8Array.from(encodePositions(positions)) });
}

export function decodeResumed(body) {
  const r = new Reader(body);
  const out = [];
  while (!r.done) out.push({ stream: r.text(), recovered: Number(r.uint(1)) === 1, offset: r.uint(8), epoch: r.uint(8) });
  return out;
}
