// The schema codec of docs/PROTOCOL.md §2: messages of named, typed fields laid out back to
// back, and schemas in their wire form (§2.1). It follows the same rules as the C codec
// (src/codec/codec.c, rules M1-M8, S1-S5, W1-W3) and passes the same vectors
// (spec/vectors/codec.json); this file was written from the document, not from the C code.
//
// Values in JavaScript:
//   u8, u16, u32      a number (encoding also takes a bigint or a decimal string)
//   u64               a bigint when decoded; encoding takes a bigint, a safe integer number or
//                     a decimal string
//   fixed, bytes,     a Uint8Array (encoding also takes an ArrayBuffer or any ArrayBuffer view);
//   rest              decoded values are views into the input, not copies
//   text              a string (encoding also takes UTF-8 bytes, which are checked)
// A value left undefined encodes as zero, empty, or (fixed) zero bytes: the protocol's "fields
// that do not apply are zero or empty".

export const TYPES = Object.freeze({ u8: 1, u16: 2, u32: 3, u64: 4, fixed: 5, bytes: 6, text: 7, rest: 8 });
const TYPE_NAMES = ['', 'u8', 'u16', 'u32', 'u64', 'fixed', 'bytes', 'text', 'rest'];
const INT_WIDTH = [0, 1, 2, 4, 8];
const SHORTHAND = { 1: 'u8', 2: 'u16', 4: 'u32', 8: 'u64' };
const MAX_FIELDS = 64;
const MAX_NAME = 63;
const MAX_FIXED = 65535;
const WIRE_VERSION = 1;
const NAME_RE = /^[A-Za-z0-9_]+$/;

const utf8 = new TextEncoder();
// fatal: malformed input throws (overlong forms, surrogates, > U+10FFFF, truncated sequences);
// ignoreBOM: a leading U+FEFF is data, not something to strip.
const strictDecoder = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });

/** An encoding, decoding or schema error. `field` names the field when there is one. */
export class CodecError extends Error {
  constructor(message, field, index) {
    super(message);
    this.name = 'CodecError';
    if (field !== undefined) this.field = field;
    if (index !== undefined) this.index = index;
  }
}

/** Bytes of UTF-8 as a string, or throws a TypeError when they are not UTF-8. */
export function decodeUtf8(bytes) {
  return strictDecoder.decode(bytes);
}

/** A string's UTF-8 bytes; null when the string holds a lone surrogate (it has no UTF-8 form). */
export function encodeUtf8(s) {
  return isWellFormed(s) ? utf8.encode(s) : null;
}

// String.prototype.isWellFormed where the engine has it (2023), else the same test by hand.
function isWellFormed(s) {
  if (typeof s.isWellFormed === 'function') return s.isWellFormed();
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0xd800 || c > 0xdfff) continue;
    const next = s.charCodeAt(i + 1);
    if (c > 0xdbff || !(next >= 0xdc00 && next <= 0xdfff)) return false;
    i++;
  }
  return true;
}

/** Any ArrayBuffer or view as a Uint8Array over the same memory; null for anything else. */
export function asBytes(v) {
  if (v instanceof Uint8Array) return v;
  if (v instanceof ArrayBuffer) return new Uint8Array(v);
  if (ArrayBuffer.isView(v)) return new Uint8Array(v.buffer, v.byteOffset, v.byteLength);
  return null;
}

// A printable form of a name that may be invalid: bytes outside printable ASCII, the quote and
// the backslash as \xNN (the C codec's convention).
function shown(name) {
  let out = '';
  for (const b of utf8.encode(String(name)).subarray(0, MAX_NAME)) {
    out += b >= 0x20 && b < 0x7f && b !== 0x27 && b !== 0x5c ? String.fromCharCode(b) : `\\x${b.toString(16).padStart(2, '0')}`;
  }
  return utf8.encode(String(name)).length > MAX_NAME ? `${out}...` : out;
}

// ---- varints (M6) ---------------------------------------------------------------------------

function varintSize(n) {
  let size = 1;
  while (n >= 128) { n = Math.floor(n / 128); size++; }
  return size;
}

function writeVarint(out, pos, n) {
  while (n >= 128) { out[pos++] = (n % 128) | 0x80; n = Math.floor(n / 128); }
  out[pos++] = n;
  return pos;
}

// Reads a varint at `pos`: { value, next } or { problem }. The value is a number; above 2^53 it
// is only approximate, which is harmless since such a length is past the end of any input.
function readVarint(buf, pos) {
  let value = 0;
  let scale = 1;
  for (let i = 0; i < 10; i++) {
    if (pos + i >= buf.length) return { problem: 'truncated varint' };
    const b = buf[pos + i];
    if (i === 9 && b > 1) return { problem: (b & 0x80) ? 'varint longer than 10 bytes' : 'varint overflow (2^64 or more)' };
    value += (b & 0x7f) * scale;
    scale *= 128;
    if (!(b & 0x80)) {
      if (i > 0 && b === 0) return { problem: 'non-minimal varint' };
      return { value, next: pos + i + 1 };
    }
  }
  return { problem: 'varint longer than 10 bytes' };
}

// ---- schemas (S1-S5) ------------------------------------------------------------------------

function fieldError(index, name, text) {
  return name === undefined || name === ''
    ? new CodecError(`field at index ${index}: ${text}`, undefined, index)
    : new CodecError(`field '${shown(name)}' (index ${index}): ${text}`, String(name), index);
}

// Checks the fields ({name, type: number, size}) against S1-S5; throws the first problem.
function check(fields) {
  if (fields.length < 1) throw new CodecError('a schema needs at least one field');
  if (fields.length > MAX_FIELDS) throw new CodecError(`a schema has at most ${MAX_FIELDS} fields, not ${fields.length}`);
  const seen = new Map();
  fields.forEach((f, i) => {
    const name = f.name;
    if (typeof name !== 'string' || name.length === 0) throw fieldError(i, undefined, 'a name has 1..63 characters');
    if (utf8.encode(name).length > MAX_NAME) throw fieldError(i, name, `name is longer than ${MAX_NAME} characters`);
    if (!NAME_RE.test(name)) throw fieldError(i, name, 'a name may only contain A-Z, a-z, 0-9 and _');
    if (seen.has(name)) throw fieldError(i, name, `duplicate name (index ${seen.get(name)} has it too)`);
    seen.set(name, i);
    if (!Number.isInteger(f.type) || f.type < 1 || f.type > 8) throw fieldError(i, name, `unknown type ${f.type}`);
    if (f.type === TYPES.fixed) {
      if (!(f.size >= 1 && f.size <= MAX_FIXED)) throw fieldError(i, name, `fixed size ${f.size} is not in 1..${MAX_FIXED}`);
    } else if (f.size !== 0) {
      throw fieldError(i, name, `size must be 0 for a ${TYPE_NAMES[f.type]} field, not ${f.size}`);
    }
    if (f.type === TYPES.rest && i !== fields.length - 1) throw fieldError(i, name, 'a rest field must be the last field');
  });
}

// One field of a schema written in JSON: {name, type, size}, type a name or a number, or the
// shorthand {name, size: 1|2|4|8} (an unsigned integer) and {name} (rest).
function fromJson(f, i) {
  if (f === null || typeof f !== 'object') throw fieldError(i, undefined, 'a field is an object {name, type, size}');
  const size = f.size === undefined ? 0 : f.size;
  if (f.type === undefined) {
    if (f.size === undefined) return { name: f.name, type: TYPES.rest, size: 0 };
    if (!SHORTHAND[size]) throw fieldError(i, f.name, `a shorthand size is 1, 2, 4 or 8, not ${size}`);
    return { name: f.name, type: TYPES[SHORTHAND[size]], size: 0 };
  }
  const type = typeof f.type === 'string' ? TYPES[f.type] ?? -1 : f.type;
  if (type === -1) throw fieldError(i, f.name, `unknown type ${JSON.stringify(f.type)}`);
  return { name: f.name, type, size: Number(size) };
}

/**
 * A schema: an ordered list of named, typed fields. Immutable once made.
 * `fields` is [{name, type: 'u8'|...|'rest', size}].
 */
export class Schema {
  /** Makes a schema from JSON fields (see fromJson); throws CodecError naming the bad field. */
  static from(fields) {
    if (!Array.isArray(fields)) throw new CodecError('a schema is an array of fields');
    return new Schema(fields.map(fromJson));
  }

  /** Reads a schema's wire form (§2.1, W1-W3); throws CodecError on any malformed input. */
  static deserialize(input) {
    const buf = asBytes(input);
    if (!buf) throw new CodecError('schema: expected bytes');
    if (buf.length < 2) throw new CodecError(`schema: truncated: needs 2 bytes (version, field count), ${buf.length} left`);
    if (buf[0] !== WIRE_VERSION) throw new CodecError(`schema: format version ${buf[0]} is not supported (only ${WIRE_VERSION} is)`);
    const count = buf[1];
    if (count < 1 || count > MAX_FIELDS) throw new CodecError(`a schema needs 1..${MAX_FIELDS} fields, not ${count}`);
    const fields = [];
    let p = 2;
    for (let i = 0; i < count; i++) {
      if (p >= buf.length) throw fieldError(i, undefined, 'truncated: needs its type, 0 bytes left');
      const type = buf[p++];
      const v = readVarint(buf, p);
      if (v.problem) throw fieldError(i, undefined, `size: ${v.problem}`);
      p = v.next;
      if (p >= buf.length) throw fieldError(i, undefined, 'truncated: needs its name length, 0 bytes left');
      const len = buf[p++];
      if (len < 1 || len > MAX_NAME) throw fieldError(i, undefined, 'a name has 1..63 characters');
      if (p + len > buf.length) throw fieldError(i, undefined, `truncated: its name needs ${len} bytes, ${buf.length - p} left`);
      const raw = buf.subarray(p, p + len);
      p += len;
      if (!raw.every((b) => (b >= 0x30 && b <= 0x39) || (b >= 0x41 && b <= 0x5a) || (b >= 0x61 && b <= 0x7a) || b === 0x5f)) {
        throw fieldError(i, String.fromCharCode(...raw), 'a name may only contain A-Z, a-z, 0-9 and _');
      }
      fields.push({ name: String.fromCharCode(...raw), type, size: v.value });
    }
    if (p !== buf.length) throw new CodecError(`schema: ${buf.length - p} trailing bytes after the last field`);
    return new Schema(fields);
  }

  constructor(fields) {
    check(fields);
    this.fields = Object.freeze(fields.map((f) => Object.freeze({ name: f.name, type: TYPE_NAMES[f.type], size: f.size })));
    this._types = fields.map((f) => f.type);
    this._hasRest = this._types[this._types.length - 1] === TYPES.rest;
  }

  /** The field names, in order. */
  get names() { return this.fields.map((f) => f.name); }

  /** The wire form (§2.1). */
  serialize() {
    const names = this.fields.map((f) => utf8.encode(f.name));
    let size = 2;
    this.fields.forEach((f, i) => { size += 1 + varintSize(f.size) + 1 + names[i].length; });
    const out = new Uint8Array(size);
    out[0] = WIRE_VERSION;
    out[1] = this.fields.length;
    let p = 2;
    this.fields.forEach((f, i) => {
      out[p++] = this._types[i];
      p = writeVarint(out, p, f.size);
      out[p++] = names[i].length;
      out.set(names[i], p);
      p += names[i].length;
    });
    return out;
  }

  /** Encodes `values` (an object keyed by field name) into a new Uint8Array. */
  encode(values = {}) {
    // First pass: check every value and measure; the second writes.
    const prepared = new Array(this.fields.length);
    let size = 0;
    this.fields.forEach((f, i) => {
      const t = this._types[i];
      const v = values[f.name];
      if (t <= TYPES.u64) {
        prepared[i] = toUint(v, INT_WIDTH[t], f.name);
        size += INT_WIDTH[t];
        return;
      }
      let bytes;
      if (v === undefined) {
        bytes = t === TYPES.fixed ? new Uint8Array(f.size) : new Uint8Array(0);
      } else if (t === TYPES.text && typeof v === 'string') {
        bytes = encodeUtf8(v);
        if (!bytes) throw new CodecError(`field '${f.name}': text is not valid UTF-8 (a lone surrogate)`, f.name);
      } else {
        bytes = asBytes(v);
        if (!bytes) throw new CodecError(`field '${f.name}': expected ${t === TYPES.text ? 'a string or ' : ''}bytes, got ${typeof v}`, f.name);
        if (t === TYPES.text) {
          try { decodeUtf8(bytes); } catch { throw new CodecError(`field '${f.name}': text is not valid UTF-8`, f.name); }
        }
      }
      if (t === TYPES.fixed && bytes.length !== f.size) {
        throw new CodecError(`field '${f.name}': fixed field needs exactly ${f.size} bytes, got ${bytes.length}`, f.name);
      }
      prepared[i] = bytes;
      size += (t === TYPES.bytes || t === TYPES.text ? varintSize(bytes.length) : 0) + bytes.length;
    });
    const out = new Uint8Array(size);
    let p = 0;
    prepared.forEach((v, i) => {
      const t = this._types[i];
      if (t <= TYPES.u64) {
        const w = INT_WIDTH[t];
        if (w === 8) {
          for (let k = 7; k >= 0; k--) { out[p + k] = Number(v & 0xffn); v >>= 8n; }
        } else {
          for (let k = w - 1; k >= 0; k--) { out[p + k] = v & 0xff; v = Math.floor(v / 256); }
        }
        p += w;
        return;
      }
      if (t === TYPES.bytes || t === TYPES.text) p = writeVarint(out, p, v.length);
      out.set(v, p);
      p += v.length;
    });
    return out;
  }

  /** Decodes a whole message; trailing bytes are an error unless the schema ends in rest. */
  decode(input) {
    const buf = asBytes(input);
    if (!buf) throw new CodecError('expected bytes');
    const { values, size } = this._read(buf);
    if (size !== buf.length) {
      const n = buf.length - size;
      throw new CodecError(`${n} trailing byte${n === 1 ? '' : 's'} after the last field`);
    }
    return values;
  }

  /**
   * Decodes one message from the front of `input`: { values, size } where size is the number
   * of bytes it took (with a rest field: all of them). For messages read back to back.
   */
  decodePrefix(input) {
    const buf = asBytes(input);
    if (!buf) throw new CodecError('expected bytes');
    return this._read(buf);
  }

  _read(buf) {
    const values = {};
    let p = 0;
    const truncated = (name, need) => new CodecError(`field '${name}': truncated: needs ${need} byte${need === 1 ? '' : 's'}, ${buf.length - p} left`, name);
    this.fields.forEach((f, i) => {
      const t = this._types[i];
      if (t <= TYPES.u64) {
        const w = INT_WIDTH[t];
        if (p + w > buf.length) throw truncated(f.name, w);
        if (w === 8) {
          let v = 0n;
          for (let k = 0; k < 8; k++) v = (v << 8n) | BigInt(buf[p + k]);
          values[f.name] = v;
        } else {
          let v = 0;
          for (let k = 0; k < w; k++) v = v * 256 + buf[p + k];
          values[f.name] = v;
        }
        p += w;
        return;
      }
      let len;
      if (t === TYPES.fixed) {
        len = f.size;
      } else if (t === TYPES.rest) {
        len = buf.length - p;
      } else {
        const v = readVarint(buf, p);
        if (v.problem) throw new CodecError(`field '${f.name}': length: ${v.problem}`, f.name);
        p = v.next;
        len = v.value;
      }
      if (p + len > buf.length) throw truncated(f.name, len);
      const bytes = buf.subarray(p, p + len);
      p += len;
      if (t === TYPES.text) {
        try { values[f.name] = decodeUtf8(bytes); } catch { throw new CodecError(`field '${f.name}': text is not valid UTF-8`, f.name); }
      } else {
        values[f.name] = bytes;
      }
    });
    return { values, size: p };
  }
}

// An unsigned integer of `width` bytes from a number, bigint or decimal string: a number for
// widths up to 4, a bigint for 8. Throws CodecError naming the field when it does not fit.
function toUint(v, width, name) {
  if (v === undefined) return width === 8 ? 0n : 0;
  let big;
  if (typeof v === 'bigint') big = v;
  else if (typeof v === 'number' && Number.isInteger(v)) {
    if (!Number.isSafeInteger(v)) throw new CodecError(`field '${name}': ${v} is not a safe integer (pass a bigint or a decimal string)`, name);
    big = BigInt(v);
  } else if (typeof v === 'string' && /^[0-9]+$/.test(v)) big = BigInt(v);
  else throw new CodecError(`field '${name}': expected an unsigned integer, got ${typeof v === 'string' ? JSON.stringify(v) : typeof v}`, name);
  if (big < 0n || big >= 1n << BigInt(8 * width)) {
    throw new CodecError(`field '${name}': value ${big} does not fit in ${width} byte${width === 1 ? '' : 's'}`, name);
  }
  return width === 8 ? big : Number(big);
}
