/*
 * codec.c — the schema codec: messages of named binary fields, encoded and decoded with strict
 * bounds checks (include/switchboard.h, "Schema codec").
 *
 * THE RULES. docs/PROTOCOL.md copies them from here; spec/vectors/codec.json tests them, and
 * the C and the JavaScript codecs must both pass those vectors.
 *
 * Messages
 *   M1. A message is the encodings of its schema's fields in schema order, back to back: no
 *       tags, no padding, no header.
 *   M2. U8, U16, U32, U64: an unsigned integer in 1, 2, 4 or 8 bytes, big-endian (most
 *       significant byte first). Every byte pattern decodes. Encoding a value that does not fit
 *       the width (>= 2^8, 2^16, 2^32) is an error; a value is never truncated.
 *   M3. FIXED (size N, 1 <= N <= 65535): exactly N bytes, as they are. Encoding a value whose
 *       length is not N is an error.
 *   M4. BYTES and TEXT: the length L as a varint (M6), then L bytes. TEXT bytes must be
 *       well-formed UTF-8 (RFC 3629 and Unicode table 3-7: no overlong forms, no surrogates
 *       U+D800..U+DFFF, nothing above U+10FFFF, no truncated sequence); this is checked on
 *       encode and on decode. Empty text is valid; U+0000 is allowed.
 *   M5. REST: every byte left after the fields before it, possibly none. It may only be the
 *       last field. Decoding with a schema that has no REST field fails if any byte is left
 *       after the last field ("trailing bytes"). sb_schema_decode_prefix is the one exception:
 *       it decodes a message from the front of its input and reports the length it took, so
 *       that messages can be read back to back (with a REST field it takes everything).
 *   M6. Varint: unsigned LEB128. 7 bits per byte, least significant group first; the high bit
 *       (0x80) is set on every byte except the last. The encoder writes the minimal form
 *       (0 -> 00, 127 -> 7f, 128 -> 80 01, 16383 -> ff 7f, 16384 -> 80 80 01). The decoder
 *       rejects: input that ends while the high bit is set (truncated); a varint of more than
 *       10 bytes, i.e. a tenth byte with the high bit set; a tenth byte above 0x01 (the value
 *       would be 2^64 or more); a multi-byte varint whose last byte is 0x00 (not minimal:
 *       "80 00" for 0, "81 00" for 1). A length L larger than the bytes left after the varint
 *       is an error (truncated).
 *   M7. Because of M2-M6 every message has exactly one encoding: a decoded message re-encodes
 *       to the very bytes it was decoded from.
 *   M8. Encoding errors are SB_EINVAL; a too-small output buffer is SB_ENOMEM; every decoding
 *       error is SB_EPROTO. Every error message names the field ("field 'status': value 300
 *       does not fit in 1 byte", "field 'body': truncated: needs 5 bytes, 2 left"), except
 *       trailing bytes, which belong to no field ("3 trailing bytes after the last field").
 *
 * Schemas
 *   S1. A schema has 1..64 fields (SB_SCHEMA_MAX_FIELDS).
 *   S2. A name is 1..63 bytes (SB_FIELD_MAX_NAME), each one of A-Z a-z 0-9 _. Names are unique
 *       within a schema; the comparison is exact (byte for byte, so "Id" and "id" differ).
 *   S3. The type is one of 1..8 (the sb_field_type numbers: u8 1, u16 2, u32 3, u64 4,
 *       fixed 5, bytes 6, text 7, rest 8).
 *   S4. FIXED fields have a size of 1..65535; every other field has size 0.
 *   S5. A REST field may only be the last field (so there is at most one).
 *   sb_schema_new fails with SB_EINVAL when a rule is broken, naming the field by its index
 *   and, when it has one, its name (any byte other than printable ASCII, the quote and the
 *   backslash shown as \xNN), e.g. "field 'a' (index 2): duplicate name (index 0 has it too)".
 *
 * Schemas on the wire (sb_schema_serialize / sb_schema_deserialize)
 *   W1. u8 format version, which is 1; u8 field count; then per field: u8 type (S3), varint
 *       size (M6; 0 unless FIXED), u8 name length, the name bytes.
 *   W2. The reader rejects any other version, a truncated form, bytes after the last field,
 *       a non-minimal or over-long varint, and everything S1-S5 reject (a count of 0 or above
 *       64 is refused before any field is read). Every error is SB_EPROTO: the bytes come from
 *       a peer, which makes a bad schema malformed input rather than a bad argument.
 *   W3. The form is canonical: serializing a deserialized schema gives back the same bytes.
 *
 * Memory: a schema is one allocation (the struct, the field array, then the names, each
 * NUL-terminated), taken from the caller's allocator, which is copied into the schema so the
 * caller's struct need not outlive it. Encoding and decoding allocate nothing; decoded byte and
 * text values point into the caller's input.
 */
#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "codec/varint.h"
#include "common/common.h"
#include "ws/utf8.h"

#define SB_FIXED_MAX_SIZE 65535u
#define SB_SCHEMA_WIRE_VERSION 1u

struct sb_schema {
  sb_allocator alloc; /* a copy of the allocator the schema was made with */
  size_t count;
  sb_field fields[]; /* count entries; the names follow the array */
};

/* A field being checked: sb_schema_new and sb_schema_deserialize both describe their input
 * this way (a deserialized name is not NUL-terminated, and its size may not fit 32 bits). */
typedef struct {
  const char *name;
  size_t name_len; /* bytes of name; for sb_schema_new at most SB_FIELD_MAX_NAME + 1 */
  int name_cut;    /* the name is longer than name_len (only counted that far) */
  long type;
  uint64_t size;
} field_def;

/* ---------------------------------------------------------------------------------------- */
/* Error messages                                                                             */
/* ---------------------------------------------------------------------------------------- */

#if defined(__GNUC__)
__attribute__((format(printf, 3, 4)))
#endif
static void set_err(char *err, size_t errlen, const char *fmt, ...) {
  if (!err || errlen == 0) return;
  va_list ap;
  va_start(ap, fmt);
  int n = vsnprintf(err, errlen, fmt, ap);
  va_end(ap);
  if (n < 0) err[0] = '\0';
}

/* A name not yet known to be valid, made printable for a message: bytes other than printable
 * ASCII, the quote and the backslash become \xNN; a name cut short ends in "...". */
static void printable_name(char out[SB_FIELD_MAX_NAME * 4 + 8], const field_def *d) {
  size_t o = 0;
  for (size_t i = 0; i < d->name_len && i < SB_FIELD_MAX_NAME; i++) {
    unsigned char c = (unsigned char)d->name[i];
    if (c >= 0x20 && c < 0x7f && c != '\'' && c != '\\') {
      out[o++] = (char)c;
    } else {
      static const char hex[] = "0123456789abcdef";
      out[o++] = '\\';
      out[o++] = 'x';
      out[o++] = hex[c >> 4];
      out[o++] = hex[c & 15];
    }
  }
  if (d->name_cut || d->name_len > SB_FIELD_MAX_NAME) {
    memcpy(out + o, "...", 3);
    o += 3;
  }
  out[o] = '\0';
}

static const char *type_name(sb_field_type t) {
  switch (t) {
    case SB_FIELD_U8: return "u8";
    case SB_FIELD_U16: return "u16";
    case SB_FIELD_U32: return "u32";
    case SB_FIELD_U64: return "u64";
    case SB_FIELD_FIXED: return "fixed";
    case SB_FIELD_BYTES: return "bytes";
    case SB_FIELD_TEXT: return "text";
    case SB_FIELD_REST: return "rest";
  }
  return "?";
}

static const char *plural(uint64_t n) { return n == 1 ? "" : "s"; }

/* Width in bytes of an integer type, 0 for the others. */
static size_t int_width(sb_field_type t) {
  switch (t) {
    case SB_FIELD_U8: return 1;
    case SB_FIELD_U16: return 2;
    case SB_FIELD_U32: return 4;
    case SB_FIELD_U64: return 8;
    default: return 0;
  }
}

/* ---------------------------------------------------------------------------------------- */
/* Building and checking schemas                                                              */
/* ---------------------------------------------------------------------------------------- */

static int name_char_ok(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '_';
}

/* Checks S1-S5 on defs[0..count); on a violation writes the message and returns `code`. */
static int check_defs(const field_def *defs, size_t count, int code, char *err, size_t errlen) {
  if (count == 0) {
    set_err(err, errlen, "a schema needs at least one field");
    return code;
  }
  if (count > SB_SCHEMA_MAX_FIELDS) {
    set_err(err, errlen, "a schema has at most %d fields, not %zu", SB_SCHEMA_MAX_FIELDS, count);
    return code;
  }
  for (size_t i = 0; i < count; i++) {
    const field_def *d = &defs[i];
    char shown[SB_FIELD_MAX_NAME * 4 + 8];
    if (!d->name) {
      set_err(err, errlen, "field at index %zu: name is NULL", i);
      return code;
    }
    if (d->name_len == 0) {
      set_err(err, errlen, "field at index %zu: name is empty", i);
      return code;
    }
    printable_name(shown, d);
    if (d->name_cut || d->name_len > SB_FIELD_MAX_NAME) {
      set_err(err, errlen, "field '%s' (index %zu): name is longer than %d characters", shown, i,
              SB_FIELD_MAX_NAME);
      return code;
    }
    for (size_t k = 0; k < d->name_len; k++) {
      if (!name_char_ok((unsigned char)d->name[k])) {
        set_err(err, errlen,
                "field '%s' (index %zu): a name may only contain A-Z, a-z, 0-9 and _", shown, i);
        return code;
      }
    }
    for (size_t j = 0; j < i; j++) {
      if (defs[j].name_len == d->name_len && memcmp(defs[j].name, d->name, d->name_len) == 0) {
        set_err(err, errlen, "field '%s' (index %zu): duplicate name (index %zu has it too)",
                shown, i, j);
        return code;
      }
    }
    if (d->type < SB_FIELD_U8 || d->type > SB_FIELD_REST) {
      set_err(err, errlen, "field '%s' (index %zu): unknown type %ld", shown, i, d->type);
      return code;
    }
    sb_field_type t = (sb_field_type)d->type;
    if (t == SB_FIELD_FIXED) {
      if (d->size < 1 || d->size > SB_FIXED_MAX_SIZE) {
        set_err(err, errlen, "field '%s' (index %zu): fixed size %" PRIu64 " is not in 1..%u",
                shown, i, d->size, SB_FIXED_MAX_SIZE);
        return code;
      }
    } else if (d->size != 0) {
      set_err(err, errlen, "field '%s' (index %zu): size must be 0 for a %s field, not %" PRIu64,
              shown, i, type_name(t), d->size);
      return code;
    }
    if (t == SB_FIELD_REST && i + 1 != count) {
      set_err(err, errlen, "field '%s' (index %zu): a rest field must be the last field", shown,
              i);
      return code;
    }
  }
  return 0;
}

/* Makes the schema from checked defs: one allocation holding the fields and their names. */
static int build(sb_schema **out, const field_def *defs, size_t count, const sb_allocator *a,
                 char *err, size_t errlen) {
  size_t bytes = sizeof(sb_schema) + count * sizeof(sb_field);
  for (size_t i = 0; i < count; i++)
    bytes += defs[i].name_len + 1;
  sb_schema *s = sb_malloc(a, bytes);
  if (!s) {
    set_err(err, errlen, "out of memory (a schema of %zu fields needs %zu bytes)", count, bytes);
    return SB_ENOMEM;
  }
  s->alloc = *a;
  s->count = count;
  char *names = (char *)(s->fields + count);
  for (size_t i = 0; i < count; i++) {
    memcpy(names, defs[i].name, defs[i].name_len);
    names[defs[i].name_len] = '\0';
    s->fields[i].name = names;
    s->fields[i].type = (sb_field_type)defs[i].type;
    s->fields[i].size = (uint32_t)defs[i].size;
    names += defs[i].name_len + 1;
  }
  *out = s;
  return 0;
}

int sb_schema_new(sb_schema **out, const sb_field *fields, size_t count,
                  const sb_allocator *allocator, char *err, size_t errlen) {
  if (!out) {
    set_err(err, errlen, "out is NULL");
    return SB_EINVAL;
  }
  *out = NULL;
  if (!fields && count) {
    set_err(err, errlen, "fields is NULL");
    return SB_EINVAL;
  }
  if (count > SB_SCHEMA_MAX_FIELDS) /* before touching fields[]: defs[] holds only 64 */
    return check_defs(NULL, count, SB_EINVAL, err, errlen);
  field_def defs[SB_SCHEMA_MAX_FIELDS];
  for (size_t i = 0; i < count; i++) {
    const char *name = fields[i].name;
    size_t n = 0;
    /* Count at most one character past the limit: the name may be a short array. */
    if (name)
      while (n <= SB_FIELD_MAX_NAME && name[n])
        n++;
    defs[i].name = name;
    defs[i].name_len = n;
    defs[i].name_cut = name && n > SB_FIELD_MAX_NAME;
    defs[i].type = (long)fields[i].type;
    defs[i].size = fields[i].size;
  }
  int rc = check_defs(defs, count, SB_EINVAL, err, errlen);
  if (rc) return rc;
  return build(out, defs, count, allocator ? allocator : &sb_default_allocator, err, errlen);
}

void sb_schema_free(sb_schema *schema) {
  if (!schema) return;
  sb_allocator a = schema->alloc; /* the copy lives in the block being freed */
  sb_free(&a, schema);
}

size_t sb_schema_count(const sb_schema *schema) { return schema ? schema->count : 0; }

const sb_field *sb_schema_field(const sb_schema *schema, size_t index) {
  if (!schema || index >= schema->count) return NULL;
  return &schema->fields[index];
}

int sb_schema_index(const sb_schema *schema, const char *name) {
  if (!schema || !name) return -1;
  for (size_t i = 0; i < schema->count; i++)
    if (strcmp(schema->fields[i].name, name) == 0) return (int)i;
  return -1;
}

/* ---------------------------------------------------------------------------------------- */
/* Encoding                                                                                   */
/* ---------------------------------------------------------------------------------------- */

/* sum += n, unless that would wrap. */
static int add_size(size_t *sum, size_t n) {
  if (n > SIZE_MAX - *sum) return 0;
  *sum += n;
  return 1;
}

/* Checks every value against M2-M4 and adds up the encoded size. */
static int check_values(const sb_schema *s, const sb_value *values, size_t *total, char *err,
                        size_t errlen) {
  size_t sum = 0;
  for (size_t i = 0; i < s->count; i++) {
    const sb_field *f = &s->fields[i];
    const sb_value *v = &values[i];
    size_t w = int_width(f->type);
    int fits;
    if (w) {
      if (w < 8 && (v->u >> (8 * w)) != 0) {
        set_err(err, errlen, "field '%s': value %" PRIu64 " does not fit in %zu byte%s",
                f->name, v->u, w, plural(w));
        return SB_EINVAL;
      }
      fits = add_size(&sum, w);
    } else {
      if (!v->data && v->len) {
        set_err(err, errlen, "field '%s': data is NULL but len is %zu", f->name, v->len);
        return SB_EINVAL;
      }
      if (f->type == SB_FIELD_FIXED && v->len != f->size) {
        set_err(err, errlen, "field '%s': fixed field needs exactly %" PRIu32 " byte%s, got %zu",
                f->name, f->size, plural(f->size), v->len);
        return SB_EINVAL;
      }
      if (f->type == SB_FIELD_TEXT && !sb_utf8_valid(v->data, v->len)) {
        set_err(err, errlen, "field '%s': text is not valid UTF-8", f->name);
        return SB_EINVAL;
      }
      fits = 1;
      if (f->type == SB_FIELD_BYTES || f->type == SB_FIELD_TEXT)
        fits = add_size(&sum, sb_varint_size(v->len));
      fits = fits && add_size(&sum, v->len);
    }
    if (!fits) {
      set_err(err, errlen, "field '%s': the message would be larger than SIZE_MAX", f->name);
      return SB_EINVAL;
    }
  }
  *total = sum;
  return 0;
}

int sb_schema_encoded_size(const sb_schema *schema, const sb_value *values, size_t *size,
                           char *err, size_t errlen) {
  if (!schema || !values || !size) {
    set_err(err, errlen, "schema, values and size must not be NULL");
    return SB_EINVAL;
  }
  return check_values(schema, values, size, err, errlen);
}

/* On SB_ENOMEM *written is set to the size needed (not promised by the header, but free). */
int sb_schema_encode(const sb_schema *schema, const sb_value *values, uint8_t *out, size_t cap,
                     size_t *written, char *err, size_t errlen) {
  if (!schema || !values || (!out && cap)) {
    set_err(err, errlen, "schema and values must not be NULL, nor out when cap is not 0");
    return SB_EINVAL;
  }
  size_t total;
  int rc = check_values(schema, values, &total, err, errlen);
  if (rc) return rc;
  if (written) *written = total;
  if (total > cap) {
    set_err(err, errlen, "the message needs %zu byte%s, the buffer holds %zu", total,
            plural(total), cap);
    return SB_ENOMEM;
  }
  if (total == 0) return 0; /* out may be NULL */
  size_t pos = 0;
  for (size_t i = 0; i < schema->count; i++) {
    const sb_field *f = &schema->fields[i];
    const sb_value *v = &values[i];
    size_t w = int_width(f->type);
    if (w) {
      for (size_t k = 0; k < w; k++)
        out[pos + k] = (uint8_t)(v->u >> (8 * (w - 1 - k)));
      pos += w;
      continue;
    }
    if (f->type == SB_FIELD_BYTES || f->type == SB_FIELD_TEXT)
      pos += sb_varint_write(out + pos, v->len);
    if (v->len) memcpy(out + pos, v->data, v->len); /* data may be NULL when len is 0 */
    pos += v->len;
  }
  return 0;
}

/* ---------------------------------------------------------------------------------------- */
/* Decoding                                                                                   */
/* ---------------------------------------------------------------------------------------- */

static const char *varint_problem(int vr) {
  switch (vr) {
    case SB_VARINT_TRUNCATED: return "truncated: the input ends inside the varint";
    case SB_VARINT_TOO_LONG: return "the varint is longer than 10 bytes";
    case SB_VARINT_OVERFLOW: return "the varint's value is 2^64 or more";
    case SB_VARINT_NOT_MINIMAL: return "the varint is not minimal (its last byte is 0x00)";
  }
  return "bad varint";
}

static int truncated(const sb_field *f, uint64_t need, size_t left, char *err, size_t errlen) {
  set_err(err, errlen, "field '%s': truncated: needs %" PRIu64 " byte%s, %zu left", f->name, need,
          plural(need), left);
  return SB_EPROTO;
}

/* Decodes the fields from the front of in[0..len) and sets *consumed; whatever follows is the
 * caller's business (trailing bytes for sb_schema_decode, the next record for
 * sb_schema_decode_prefix). */
static int decode_fields(const sb_schema *schema, const uint8_t *in, size_t len,
                         sb_value *values, size_t *consumed, char *err, size_t errlen) {
  /* An empty input may come as NULL, and NULL + 0 is undefined in C: read through p, which
   * is never NULL, and hand out NULL for the data of empty values of an empty input. */
  static const uint8_t none[1] = {0};
  const uint8_t *p = in ? in : none;
  size_t pos = 0;
  for (size_t i = 0; i < schema->count; i++) {
    const sb_field *f = &schema->fields[i];
    sb_value *v = &values[i];
    size_t left = len - pos; /* invariant: pos <= len */
    size_t w = int_width(f->type);
    v->u = 0;
    v->data = NULL;
    v->len = 0;
    if (w) {
      if (left < w) return truncated(f, w, left, err, errlen);
      uint64_t x = 0;
      for (size_t k = 0; k < w; k++)
        x = (x << 8) | p[pos + k];
      v->u = x;
      pos += w;
      continue;
    }
    size_t n;
    if (f->type == SB_FIELD_FIXED) {
      n = f->size;
      if (left < n) return truncated(f, n, left, err, errlen);
    } else if (f->type == SB_FIELD_REST) {
      n = left;
    } else {
      uint64_t l;
      size_t used;
      int vr = sb_varint_read(p + pos, left, &l, &used);
      if (vr) {
        set_err(err, errlen, "field '%s': length: %s", f->name, varint_problem(vr));
        return SB_EPROTO;
      }
      pos += used;
      left -= used;
      if (l > left) return truncated(f, l, left, err, errlen);
      n = (size_t)l;
      if (f->type == SB_FIELD_TEXT && !sb_utf8_valid(p + pos, n)) {
        set_err(err, errlen, "field '%s': text is not valid UTF-8", f->name);
        return SB_EPROTO;
      }
    }
    v->data = in ? p + pos : NULL;
    v->len = n;
    pos += n;
  }
  *consumed = pos;
  return 0;
}

int sb_schema_decode(const sb_schema *schema, const uint8_t *in, size_t len, sb_value *values,
                     char *err, size_t errlen) {
  if (!schema || !values || (!in && len)) {
    set_err(err, errlen, "schema and values must not be NULL, nor in when len is not 0");
    return SB_EINVAL;
  }
  size_t used;
  int rc = decode_fields(schema, in, len, values, &used, err, errlen);
  if (rc) return rc;
  if (used < len) {
    size_t extra = len - used;
    set_err(err, errlen, "%zu trailing byte%s after the last field", extra, plural(extra));
    return SB_EPROTO;
  }
  return 0;
}

/* For records read back to back (the hub's positions): decode without the trailing-bytes
 * check. A schema with a rest field still consumes everything. */
int sb_schema_decode_prefix(const sb_schema *schema, const uint8_t *in, size_t len,
                            sb_value *values, size_t *consumed, char *err, size_t errlen) {
  if (!schema || !values || !consumed || (!in && len)) {
    set_err(err, errlen,
            "schema, values and consumed must not be NULL, nor in when len is not 0");
    return SB_EINVAL;
  }
  return decode_fields(schema, in, len, values, consumed, err, errlen);
}

/* ---------------------------------------------------------------------------------------- */
/* Schemas on the wire                                                                        */
/* ---------------------------------------------------------------------------------------- */

/* On SB_ENOMEM *written is set to the size needed, as it is with out == NULL. */
int sb_schema_serialize(const sb_schema *schema, uint8_t *out, size_t cap, size_t *written) {
  if (!schema || !written) return SB_EINVAL;
  size_t need = 2;
  for (size_t i = 0; i < schema->count; i++)
    need += 1 + sb_varint_size(schema->fields[i].size) + 1 + strlen(schema->fields[i].name);
  *written = need;
  if (!out) return 0;
  if (cap < need) return SB_ENOMEM;
  size_t pos = 0;
  out[pos++] = SB_SCHEMA_WIRE_VERSION;
  out[pos++] = (uint8_t)schema->count;
  for (size_t i = 0; i < schema->count; i++) {
    const sb_field *f = &schema->fields[i];
    size_t n = strlen(f->name);
    out[pos++] = (uint8_t)f->type;
    pos += sb_varint_write(out + pos, f->size);
    out[pos++] = (uint8_t)n;
    memcpy(out + pos, f->name, n);
    pos += n;
  }
  return 0;
}

int sb_schema_deserialize(sb_schema **out, const uint8_t *in, size_t len,
                          const sb_allocator *allocator, char *err, size_t errlen) {
  if (!out || (!in && len)) {
    set_err(err, errlen, "out must not be NULL, nor in when len is not 0");
    return SB_EINVAL;
  }
  *out = NULL;
  if (len < 2) {
    set_err(err, errlen, "schema: truncated: needs 2 bytes (version, field count), %zu left", len);
    return SB_EPROTO;
  }
  if (in[0] != SB_SCHEMA_WIRE_VERSION) {
    set_err(err, errlen, "schema: format version %u is not supported (only %u is)", in[0],
            SB_SCHEMA_WIRE_VERSION);
    return SB_EPROTO;
  }
  size_t count = in[1], pos = 2;
  if (count == 0 || count > SB_SCHEMA_MAX_FIELDS)
    return check_defs(NULL, count, SB_EPROTO, err, errlen);
  field_def defs[SB_SCHEMA_MAX_FIELDS];
  for (size_t i = 0; i < count; i++) {
    field_def *d = &defs[i];
    uint64_t size;
    size_t used;
    if (pos == len) {
      set_err(err, errlen, "field at index %zu: truncated: needs its type, 0 bytes left", i);
      return SB_EPROTO;
    }
    d->type = in[pos++];
    int vr = sb_varint_read(in + pos, len - pos, &size, &used);
    if (vr) {
      set_err(err, errlen, "field at index %zu: size: %s", i, varint_problem(vr));
      return SB_EPROTO;
    }
    pos += used;
    d->size = size;
    if (pos == len) {
      set_err(err, errlen, "field at index %zu: truncated: needs its name length, 0 bytes left",
              i);
      return SB_EPROTO;
    }
    d->name_len = in[pos++];
    if (d->name_len > len - pos) {
      set_err(err, errlen, "field at index %zu: truncated: its name needs %zu byte%s, %zu left",
              i, d->name_len, plural(d->name_len), len - pos);
      return SB_EPROTO;
    }
    d->name = (const char *)in + pos;
    d->name_cut = 0;
    pos += d->name_len;
  }
  if (pos < len) {
    size_t extra = len - pos;
    set_err(err, errlen, "schema: %zu trailing byte%s after the last field", extra,
            plural(extra));
    return SB_EPROTO;
  }
  int rc = check_defs(defs, count, SB_EPROTO, err, errlen);
  if (rc) return rc;
  return build(out, defs, count, allocator ? allocator : &sb_default_allocator, err, errlen);
}
