// The protocol's tables and fixed messages (docs/PROTOCOL.md). The tables are spec/protocol.json
// written out as a module, so that a browser can load them without a build step or a JSON
// import; client/test/protocol.test.mjs checks that the two are equal, and
// tests/unit/test_protocol.c checks the C side against the same file.
import { CodecError, Schema, decodeUtf8, encodeUtf8 } from './codec.js';

export const SPEC = Object.freeze({
  version: 1,
  kinds: { REQUEST: 1, RESPONSE: 2, PUSH: 3, SEND: 4, HELLO: 5, RESUME: 6, RESUMED: 7, ACK: 8, ERROR: 9, AUTH: 10, PING: 11 },
  methods: { NONE: 0, GET: 1, POST: 2, PUT: 3, PATCH: 4, DELETE: 5 },
  closeCodes: {
    NORMAL: 1000, GOING_AWAY: 1001, PROTOCOL_ERROR: 1002, UNSUPPORTED: 1003, NO_STATUS: 1005, ABNORMAL: 1006,
    INVALID_DATA: 1007, POLICY: 1008, TOO_BIG: 1009, INTERNAL: 1011, TRY_AGAIN: 1013,
    REPLACED: 4000, EXPIRED: 4001, IDENTITY: 4003,
  },
  schemas: {
    envelope: [
      { name: 'kind', type: 'u8' }, { name: 'method', type: 'u8' }, { name: 'status', type: 'u16' },
      { name: 'id', type: 'u32' }, { name: 'stream', type: 'text' }, { name: 'offset', type: 'u64' },
      { name: 'epoch', type: 'u64' }, { name: 'url', type: 'text' }, { name: 'body', type: 'rest' },
    ],
    hello: [
      { name: 'kind', type: 'u8' }, { name: 'version', type: 'u8' }, { name: 'conn_id', type: 'text' },
      { name: 'token', type: 'text' }, { name: 'heartbeat_ms', type: 'u32' }, { name: 'max_message', type: 'u32' },
      { name: 'max_replay', type: 'u32' }, { name: 'history_max', type: 'u32' }, { name: 'envelope', type: 'bytes' },
      { name: 'schemas', type: 'rest' },
    ],
    resume: [{ name: 'token', type: 'text' }, { name: 'positions', type: 'rest' }],
    position: [{ name: 'stream', type: 'text' }, { name: 'offset', type: 'u64' }, { name: 'epoch', type: 'u64' }],
    resumed: [
      { name: 'stream', type: 'text' }, { name: 'recovered', type: 'u8' }, { name: 'offset', type: 'u64' },
      { name: 'epoch', type: 'u64' },
    ],
  },
});

export const KIND = Object.freeze({ ...SPEC.kinds });
export const METHOD = Object.freeze({ ...SPEC.methods });
export const CLOSE = Object.freeze({ ...SPEC.closeCodes });
/** Method numbers to names: METHOD_NAME[1] === 'GET'. */
export const METHOD_NAME = Object.freeze(Object.fromEntries(Object.entries(METHOD).map(([k, v]) => [v, k])));

const HELLO = Schema.from(SPEC.schemas.hello);
const RESUME = Schema.from(SPEC.schemas.resume);
const POSITION = Schema.from(SPEC.schemas.position);
const RESUMED = Schema.from(SPEC.schemas.resumed);
// HELLO's application schemas, back to back: name (text), schema (bytes).
const NAMED_SCHEMA = Schema.from([{ name: 'name', type: 'text' }, { name: 'schema', type: 'bytes' }]);
/** The default envelope schema; a client uses the one its server announces in HELLO. */
export const DEFAULT_ENVELOPE = Schema.from(SPEC.schemas.envelope);

/** The envelope fields this client reads and writes by name; a server's schema must have them. */
export const ENVELOPE_FIELDS = Object.freeze(SPEC.schemas.envelope.map((f) => f.name));

/**
 * Decodes a HELLO (§5): { version, connId, token, heartbeatMs, maxMessage, maxReplay,
 * historyMax, envelope: Schema, schemas: Map<name, Schema> }. Throws CodecError on a malformed
 * one, an unknown version, or an envelope schema without the fields a client needs.
 */
export function decodeHello(bytes) {
  if (bytes[0] !== KIND.HELLO) throw new CodecError(`not a HELLO: kind ${bytes[0]}`);
  if (bytes.length > 1 && bytes[1] !== SPEC.version) throw new CodecError(`protocol version ${bytes[1]} is not supported (only ${SPEC.version} is)`);
  const h = HELLO.decode(bytes);
  const envelope = Schema.deserialize(h.envelope);
  const missing = ENVELOPE_FIELDS.filter((n) => !envelope.names.includes(n));
  if (missing.length) throw new CodecError(`the envelope schema lacks ${missing.join(', ')}`);
  if (envelope.fields[0].name !== 'kind' || envelope.fields[0].type !== 'u8') {
    throw new CodecError('the envelope schema must start with kind (u8): it tells a HELLO from an envelope');
  }
  const schemas = new Map();
  for (const { name, schema } of readAll(NAMED_SCHEMA, h.schemas)) schemas.set(name, Schema.deserialize(schema));
  return {
    version: h.version, connId: h.conn_id, token: h.token, heartbeatMs: h.heartbeat_ms,
    maxMessage: h.max_message, maxReplay: h.max_replay, historyMax: h.history_max, envelope, schemas,
  };
}

/** Encodes a HELLO; the inverse of decodeHello (test servers use it). */
export function encodeHello({ connId, token, heartbeatMs = 60000, maxMessage = 16777216, maxReplay = 10000,
  historyMax = 1000, envelope = DEFAULT_ENVELOPE, schemas = new Map() }) {
  const parts = [...schemas].map(([name, s]) => NAMED_SCHEMA.encode({ name, schema: s.serialize() }));
  return HELLO.encode({
    kind: KIND.HELLO, version: SPEC.version, conn_id: connId, token, heartbeat_ms: heartbeatMs, max_message: maxMessage,
    max_replay: maxReplay, history_max: historyMax, envelope: envelope.serialize(), schemas: concat(parts),
  });
}

/** Positions back to back (RESUME, ACK): [{stream, offset: bigint, epoch: bigint}]. */
export function encodePositions(positions) {
  return concat(positions.map((p) => POSITION.encode(p)));
}

export function decodePositions(bytes) {
  return readAll(POSITION, bytes);
}

/** The body of RESUME (§6). */
export function encodeResumeBody(token, positions) {
  return RESUME.encode({ token, positions: encodePositions(positions) });
}

export function decodeResumeBody(bytes) {
  const v = RESUME.decode(bytes);
  return { token: v.token, positions: decodePositions(v.positions) };
}

/** The body of RESUMED (§6): [{stream, recovered: boolean, offset: bigint, epoch: bigint}]. */
export function decodeResumedBody(bytes) {
  return readAll(RESUMED, bytes).map((r) => ({ ...r, recovered: r.recovered === 1 }));
}

export function encodeResumedBody(records) {
  return concat(records.map((r) => RESUMED.encode({ ...r, recovered: r.recovered ? 1 : 0 })));
}

function readAll(schema, bytes) {
  const out = [];
  let rest = bytes;
  while (rest.length) {
    const { values, size } = schema.decodePrefix(rest);
    out.push(values);
    rest = rest.subarray(size);
  }
  return out;
}

export function concat(parts) {
  let n = 0;
  for (const p of parts) n += p.length;
  const out = new Uint8Array(n);
  let o = 0;
  for (const p of parts) { out.set(p, o); o += p.length; }
  return out;
}

export { decodeUtf8, encodeUtf8 };
