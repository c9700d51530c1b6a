// The JavaScript codec against spec/vectors/codec.json, the vectors the C codec passes too
// (tests/unit/test_codec.c), plus what the vectors imply: round trips, every strict prefix of a
// valid message refused (or, past a rest field, decoded shorter), a byte appended refused.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { CodecError, Schema } from '../codec.js';

const VECTORS = JSON.parse(fs.readFileSync(path.resolve(import.meta.dirname, '../../spec/vectors/codec.json'), 'utf8'));

// "HEX" of the vectors: whitespace-separated tokens of hex digits or "HH*N".
function unhex(s) {
  const out = [];
  for (const tok of s.split(/\s+/).filter(Boolean)) {
    const m = /^([0-9a-f]{2})\*(\d+)$/.exec(tok);
    if (m) {
      for (let i = 0; i < Number(m[2]); i++) out.push(parseInt(m[1], 16));
    } else {
      assert.match(tok, /^([0-9a-f]{2})+$/, `bad hex token ${tok}`);
      for (let i = 0; i < tok.length; i += 2) out.push(parseInt(tok.slice(i, i + 2), 16));
    }
  }
  return Uint8Array.from(out);
}

const typeOf = (schema, name) => schema.fields.find((f) => f.name === name).type;

// A vector's values as codec values.
function values(schema, obj) {
  const out = {};
  for (const [k, v] of Object.entries(obj)) {
    const t = typeOf(schema, k);
    if (v !== null && typeof v === 'object') out[k] = unhex(v.hex);
    else if (t === 'u64') out[k] = BigInt(v);
    else if (['u8', 'u16', 'u32'].includes(t) && typeof v === 'string') out[k] = v; // the codec takes decimal strings
    else out[k] = v;
  }
  return out;
}

// Decoded values compared with a vector's: integers by value, text by its UTF-8 bytes.
function assertValues(schema, got, want, name) {
  assert.deepEqual(Object.keys(got).sort(), Object.keys(want).sort(), name);
  for (const [k, v] of Object.entries(want)) {
    const t = typeOf(schema, k);
    if (t === 'u64') assert.equal(got[k], BigInt(v), `${name}: ${k}`);
    else if (['u8', 'u16', 'u32'].includes(t)) assert.equal(got[k], Number(v), `${name}: ${k}`);
    else if (t === 'text') {
      assert.equal(typeof got[k], 'string', `${name}: ${k} is a string`);
      const bytes = typeof v === 'string' ? new TextEncoder().encode(v) : unhex(v.hex);
      assert.deepEqual(new TextEncoder().encode(got[k]), bytes, `${name}: ${k}`);
    } else assert.deepEqual(Uint8Array.from(got[k]), unhex(v.hex), `${name}: ${k}`);
  }
}

const names = (e, field) => e instanceof CodecError && e.message.includes(`'${field}'`);

test('valid vectors: encode gives the bytes, decode gives the values, both round-trip', () => {
  for (const v of VECTORS.valid) {
    const s = Schema.from(v.schema);
    const bytes = unhex(v.hex);
    assert.deepEqual(s.encode(values(s, v.values)), bytes, v.name);
    const got = s.decode(bytes);
    assertValues(s, got, v.values, v.name);
    assert.deepEqual(s.encode(got), bytes, `${v.name}: re-encoded`);
    // the schema survives its wire form
    assert.deepEqual(Schema.deserialize(s.serialize()).fields, s.fields, `${v.name}: schema wire form`);
  }
});

test('valid vectors: every strict prefix is refused naming a field (or decodes shorter past a rest)', () => {
  for (const v of VECTORS.valid) {
    const s = Schema.from(v.schema);
    const bytes = unhex(v.hex);
    if (bytes.length > 2000) continue; // the huge ones add time, not coverage
    const hasRest = s.fields[s.fields.length - 1].type === 'rest';
    for (let n = 0; n < bytes.length; n++) {
      let got;
      try {
        got = s.decode(bytes.subarray(0, n));
      } catch (e) {
        assert.ok(e instanceof CodecError && e.field !== undefined && e.message.includes(`'${e.field}'`), `${v.name}, ${n} bytes: ${e.message}`);
        continue;
      }
      assert.ok(hasRest, `${v.name}: a ${n}-byte prefix decoded`);
      assert.ok(got, v.name);
    }
    const plus = new Uint8Array(bytes.length + 1);
    plus.set(bytes);
    if (hasRest) assert.equal(s.decode(plus)[s.fields[s.fields.length - 1].name].length, s.decode(bytes)[s.fields[s.fields.length - 1].name].length + 1);
    else assert.throws(() => s.decode(plus), /1 trailing byte after the last field/, v.name);
  }
});

test('invalid_encode vectors: encoding fails naming the field', () => {
  for (const v of VECTORS.invalid_encode) {
    const s = Schema.from(v.schema);
    let vals;
    try {
      vals = values(s, v.values);
    } catch {
      continue; // not representable at all counts as refused
    }
    assert.throws(() => s.encode(vals), (e) => names(e, v.error_field), v.name);
  }
});

test('invalid_decode vectors: decoding fails naming the field, or for trailing bytes', () => {
  for (const v of VECTORS.invalid_decode) {
    const s = Schema.from(v.schema);
    const bytes = unhex(v.hex);
    if (v.error === 'trailing') assert.throws(() => s.decode(bytes), /trailing/, v.name);
    else assert.throws(() => s.decode(bytes), (e) => names(e, v.error_field), v.name);
  }
});

test('invalid_schema vectors: the schema is refused naming the field and its index; so is its wire form', () => {
  for (const v of VECTORS.invalid_schema) {
    const check = (e) => e instanceof CodecError
      && (v.error_field === undefined || e.message.includes(`'${v.error_field}'`))
      && (v.error_index === undefined || e.message.includes(`index ${v.error_index}`));
    assert.throws(() => Schema.from(v.schema), check, v.name);
    const wire = rawWire(v.schema);
    if (wire) assert.throws(() => Schema.deserialize(wire), check, `${v.name} (wire form)`);
  }
});

// A schema's wire form written without any check (so that invalid schemas can be put on the
// wire); null when it cannot be written at all (a shorthand size other than 1, 2, 4, 8).
function rawWire(fields) {
  const TYPES = { u8: 1, u16: 2, u32: 3, u64: 4, fixed: 5, bytes: 6, text: 7, rest: 8 };
  const out = [1, fields.length];
  for (const f of fields) {
    let type = typeof f.type === 'string' ? TYPES[f.type] : f.type;
    let size = f.size ?? 0;
    if (f.type === undefined) {
      if (f.size === undefined) type = 8;
      else if ({ 1: 1, 2: 2, 4: 3, 8: 4 }[f.size]) { type = { 1: 1, 2: 2, 4: 3, 8: 4 }[f.size]; size = 0; } else return null;
    }
    if (fields.length > 255) return null;
    out.push(type);
    do { out.push((size % 128) | (size >= 128 ? 0x80 : 0)); size = Math.floor(size / 128); } while (size);
    const name = new TextEncoder().encode(f.name);
    out.push(name.length, ...name);
  }
  return Uint8Array.from(out);
}

test('schema_wire vectors: serialize gives the bytes, deserialize the schema; prefixes and extra bytes are refused', () => {
  for (const v of VECTORS.schema_wire) {
    const s = Schema.from(v.schema);
    const bytes = unhex(v.hex);
    assert.deepEqual(s.serialize(), bytes, v.name);
    assert.deepEqual(Schema.deserialize(bytes).fields, s.fields, v.name);
    for (let n = 0; n < bytes.length; n++) assert.throws(() => Schema.deserialize(bytes.subarray(0, n)), CodecError, `${v.name}: ${n}-byte prefix`);
    const plus = new Uint8Array(bytes.length + 1);
    plus.set(bytes);
    assert.throws(() => Schema.deserialize(plus), /trailing/, `${v.name}: plus one byte`);
  }
});

test('invalid_schema_wire vectors: deserializing is refused', () => {
  for (const v of VECTORS.invalid_schema_wire) {
    assert.throws(() => Schema.deserialize(unhex(v.hex)), CodecError, v.name);
  }
});

test('JavaScript values: strings with lone surrogates, unsafe numbers and wrong types are refused', () => {
  const s = Schema.from([{ name: 't', type: 'text' }, { name: 'n', type: 'u64' }, { name: 'b', type: 'bytes' }]);
  assert.throws(() => s.encode({ t: 'a\ud800' }), /field 't'/);
  assert.throws(() => s.encode({ n: 2 ** 53 }), /field 'n'.*safe integer/);
  assert.throws(() => s.encode({ n: 1.5 }), /field 'n'/);
  assert.throws(() => s.encode({ b: 'not bytes' }), /field 'b'/);
  // a BOM is data, not something to strip
  assert.equal(s.decode(Uint8Array.from([3, 0xef, 0xbb, 0xbf, 0, 0, 0, 0, 0, 0, 0, 1, 0])).t, '\ufeff');
  // undefined values are zero and empty; other views are bytes
  assert.deepEqual(s.encode({}), new Uint8Array(10));
  assert.deepEqual(s.encode({ b: new Uint16Array([0x0102]) }).subarray(9), Uint8Array.from([2, 2, 1]));
});
