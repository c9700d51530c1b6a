/*
 * test_codec.c — the schema codec (src/codec/codec.c).
 *
 * Most cases come from spec/vectors/codec.json, which the JavaScript client passes too; its
 * "$comment" key documents the format, and its expected bytes were computed independently of
 * this code. For every vector:
 *   valid               encode gives exactly the bytes (and encoded_size their length); decode
 *                       gives the values, pointing into the input; both round-trip; every
 *                       strict prefix of the bytes fails with SB_EPROTO naming the field it cuts
 *                       (or, once a REST field is reached, decodes to the same values with a
 *                       shorter rest); a byte appended is "trailing" (or joins the rest); the
 *                       schema survives serialize -> deserialize.
 *   invalid_encode      encode and encoded_size fail with SB_EINVAL naming the field.
 *   invalid_decode      decode fails with SB_EPROTO naming the field (or "trailing").
 *   invalid_schema      sb_schema_new fails with SB_EINVAL naming the field (and its index); the
 *                       same schema put on the wire by this file's own writer is refused by
 *                       sb_schema_deserialize with SB_EPROTO.
 *   schema_wire         serialize gives exactly the bytes, deserialize gives the fields back,
 *                       and every prefix, and the bytes plus one, are refused.
 *   invalid_schema_wire deserialize fails with SB_EPROTO.
 * Every input is decoded from its own exact-size heap buffer, so AddressSanitizer sees any read
 * past its end (the picohttpparser guard-page idea). Beyond the vectors: varints against a
 * model of the rules, exact error texts, the err/errlen contract, NULL arguments, and a
 * failing allocator on a countdown (the SQLite/hiredis way).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <errno.h>
#include <inttypes.h>

#include "switchboard.h"
#include "codec/varint.h"
#include "common/strbuf.h"
#include "json.h"

#ifdef SB_SOURCE_DIR
#define VECTORS_PATH SB_SOURCE_DIR "/spec/vectors/codec.json"
#else
#define VECTORS_PATH "../spec/vectors/codec.json"
#endif

#define MAX_JSON_FIELDS 80 /* vectors go up to 65 fields */
#define NAME_CAP 80        /* vectors go up to 64-character names */
#define ERRLEN 256

static json *vectors;

/* ---------------------------------------------------------------------------------------- */
/* Helpers: bytes, hex, vectors                                                               */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
  uint8_t *p; /* malloc'd, never NULL */
  size_t n;
} bytes;

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* The vectors' hex notation: whitespace-separated tokens, each an even run of hex digits or
 * "HH*N" (byte HH, N times). */
static bytes unhex(const char *s) {
  bytes b = {NULL, 0};
  size_t cap = 64;
  b.p = malloc(cap);
  assert_non_null(b.p);
  while (*s) {
    if (*s == ' ' || *s == '\t' || *s == '\n') {
      s++;
      continue;
    }
    const char *t = s;
    while (*s && *s != ' ' && *s != '\t' && *s != '\n')
      s++;
    size_t tl = (size_t)(s - t), reps = 1;
    const char *star = memchr(t, '*', tl);
    size_t digits = star ? (size_t)(star - t) : tl;
    if (star) {
      char *endp;
      if (digits != 2) fail_msg("bad hex token '%.*s'", (int)tl, t);
      reps = strtoul(star + 1, &endp, 10);
      if (endp != s) fail_msg("bad hex token '%.*s'", (int)tl, t);
    }
    if (digits == 0 || digits % 2) fail_msg("bad hex token '%.*s'", (int)tl, t);
    size_t add = digits / 2 * reps;
    while (b.n + add > cap)
      cap *= 2;
    b.p = realloc(b.p, cap);
    assert_non_null(b.p);
    for (size_t r = 0; r < reps; r++) {
      for (size_t i = 0; i < digits; i += 2) {
        int hi = hexval(t[i]), lo = hexval(t[i + 1]);
        if (hi < 0 || lo < 0) fail_msg("bad hex token '%.*s'", (int)tl, t);
        b.p[b.n++] = (uint8_t)(hi << 4 | lo);
      }
    }
  }
  return b;
}

/* An exact-size heap copy (1 byte allocated for an empty input, which is never read). */
static uint8_t *heap_copy(const uint8_t *p, size_t n) {
  uint8_t *q = malloc(n ? n : 1);
  assert_non_null(q);
  if (n) memcpy(q, p, n);
  return q;
}

/* The bytes in hex; as many as fit, then "..." (cap > 4). */
static void hexdump(const uint8_t *s, size_t n, char *out, size_t cap) {
  sb_strbuf sb;
  sb_strbuf_init(&sb, out, cap - (sizeof "..." - 1)); /* room kept for "..." */
  for (size_t i = 0; i < n && sb_strbuf_appendf(&sb, "%02x", s[i]) == 0; i++) {}
  if (sb_strbuf_overflowed(&sb)) memcpy(out + sb.len, "...", sizeof "...");
}

static void expect_bytes(const char *what, const uint8_t *want, size_t wn, const uint8_t *got,
                         size_t gn) {
  if (wn == gn && (wn == 0 || memcmp(want, got, wn) == 0)) return;
  char a[200], b[200];
  hexdump(want, wn, a, sizeof a);
  hexdump(got, gn, b, sizeof b);
  fail_msg("%s:\n  expected %zu bytes %s\n  actual   %zu bytes %s", what, wn, a, gn, b);
}

/* A test's own varint writer, from the rules (not the codec's). */
static size_t ref_varint(uint8_t *out, uint64_t v) {
  size_t n = 0;
  do {
    uint8_t b = v & 0x7f;
    v >>= 7;
    out[n++] = (uint8_t)(b | (v ? 0x80 : 0));
  } while (v);
  return n;
}

static const json *section(const char *name) {
  const json *s = json_get(vectors, name);
  if (!s || s->type != JSON_ARRAY || s->count == 0)
    fail_msg("spec/vectors/codec.json: section \"%s\" missing or empty", name);
  return s;
}

static const char *vname(const json *v) {
  const char *n = json_get_str(v, "name");
  return n ? n : "(unnamed vector)";
}

/* A schema written in JSON, as sb_field entries. */
typedef struct {
  sb_field f[MAX_JSON_FIELDS];
  char names[MAX_JSON_FIELDS][NAME_CAP];
  size_t count;
  int has_rest;
} jschema;

static const struct {
  const char *name;
  sb_field_type type;
} type_names[] = {
    {"u8", SB_FIELD_U8},     {"u16", SB_FIELD_U16},     {"u32", SB_FIELD_U32},
    {"u64", SB_FIELD_U64},   {"fixed", SB_FIELD_FIXED}, {"bytes", SB_FIELD_BYTES},
    {"text", SB_FIELD_TEXT}, {"rest", SB_FIELD_REST},
};

/* Reads a vector's schema. Returns 0, or -1 when it cannot even be written as sb_field (a
 * shorthand size other than 1, 2, 4 or 8); *bad then names the field. */
static int schema_from_json(const json *arr, jschema *js, const char *vn, const char **bad) {
  memset(js, 0, sizeof *js);
  if (!arr || arr->type != JSON_ARRAY) fail_msg("%s: no schema array", vn);
  if (arr->count > MAX_JSON_FIELDS) fail_msg("%s: too many fields for this test", vn);
  for (size_t i = 0; i < arr->count; i++) {
    const json *f = arr->items[i];
    const json *name = json_get(f, "name"), *type = json_get(f, "type");
    const json *size = json_get(f, "size");
    if (!name || name->type != JSON_STRING || name->len >= NAME_CAP ||
        strlen(name->text) != name->len)
      fail_msg("%s: field %zu: bad name in the vector", vn, i);
    memcpy(js->names[i], name->text, name->len + 1);
    js->f[i].name = js->names[i];
    if (size && (size->type != JSON_NUMBER || size->number < 0 || size->number > 1e9))
      fail_msg("%s: field %zu: bad size in the vector", vn, i);
    uint32_t sz = size ? (uint32_t)size->number : 0;
    if (type) {
      if (type->type == JSON_NUMBER) {
        js->f[i].type = (sb_field_type)(int)type->number;
      } else {
        size_t k;
        for (k = 0; k < sizeof type_names / sizeof type_names[0]; k++)
          if (type->type == JSON_STRING && strcmp(type->text, type_names[k].name) == 0) break;
        if (k == sizeof type_names / sizeof type_names[0])
          fail_msg("%s: field %zu: unknown type in the vector", vn, i);
        js->f[i].type = type_names[k].type;
      }
      js->f[i].size = sz;
    } else if (!size) {
      js->f[i].type = SB_FIELD_REST;
    } else {
      switch (sz) {
        case 1: js->f[i].type = SB_FIELD_U8; break;
        case 2: js->f[i].type = SB_FIELD_U16; break;
        case 4: js->f[i].type = SB_FIELD_U32; break;
        case 8: js->f[i].type = SB_FIELD_U64; break;
        default: *bad = js->names[i]; return -1;
      }
    }
    if (js->f[i].type == SB_FIELD_REST) js->has_rest = 1;
  }
  js->count = arr->count;
  return 0;
}

static int is_int(sb_field_type t) { return t >= SB_FIELD_U8 && t <= SB_FIELD_U64; }

typedef struct {
  sb_value v[MAX_JSON_FIELDS];
  uint8_t *owned[MAX_JSON_FIELDS];
} jvalues;

static void values_free(jvalues *jv) {
  for (size_t i = 0; i < MAX_JSON_FIELDS; i++)
    free(jv->owned[i]);
  memset(jv, 0, sizeof *jv);
}

/* Reads an integer given as a JSON number or a decimal string. Returns 0 if it is not a
 * uint64_t (negative, or 2^64 and up). */
static int json_u64(const json *j, uint64_t *out, const char *vn, const char *field) {
  const char *s = j->text;
  if (j->type != JSON_NUMBER && j->type != JSON_STRING)
    fail_msg("%s: field '%s': an integer must be a number or a string", vn, field);
  if (s[0] == '-') return 0;
  for (const char *c = s; *c; c++)
    if (*c < '0' || *c > '9') fail_msg("%s: field '%s': bad integer '%s'", vn, field, s);
  if (!*s) fail_msg("%s: field '%s': empty integer", vn, field);
  errno = 0;
  unsigned long long v = strtoull(s, NULL, 10);
  if (errno == ERANGE) return 0;
  *out = v;
  return 1;
}

/* Reads a vector's values. Returns 0, or -1 when one cannot be an sb_value (*bad names it). */
static int values_from_json(const json *obj, const jschema *js, jvalues *jv, const char *vn,
                            const char **bad) {
  memset(jv, 0, sizeof *jv);
  if (!obj || obj->type != JSON_OBJECT) fail_msg("%s: no values object", vn);
  for (size_t i = 0; i < js->count; i++) {
    const sb_field *f = &js->f[i];
    const json *v = json_get(obj, f->name);
    if (!v) fail_msg("%s: no value for field '%s'", vn, f->name);
    if (is_int(f->type)) {
      if (!json_u64(v, &jv->v[i].u, vn, f->name)) {
        *bad = f->name;
        return -1;
      }
    } else if (v->type == JSON_STRING) {
      jv->owned[i] = heap_copy((const uint8_t *)v->text, v->len);
      jv->v[i].data = jv->owned[i];
      jv->v[i].len = v->len;
    } else {
      const char *hex = json_get_str(v, "hex");
      if (!hex) fail_msg("%s: field '%s': expected {\"hex\": ...}", vn, f->name);
      bytes b = unhex(hex);
      jv->owned[i] = b.p;
      jv->v[i].data = b.p;
      jv->v[i].len = b.n;
    }
  }
  return 0;
}

static void expect_values(const char *vn, const jschema *js, const sb_value *want,
                          const sb_value *got) {
  char what[200];
  for (size_t i = 0; i < js->count; i++) {
    const sb_field *f = &js->f[i];
    if (is_int(f->type)) {
      if (want[i].u != got[i].u)
        fail_msg("%s: field '%s': expected %" PRIu64 ", actual %" PRIu64, vn, f->name, want[i].u,
                 got[i].u);
    } else {
      snprintf(what, sizeof what, "%s: field '%s'", vn, f->name);
      expect_bytes(what, want[i].data, want[i].len, got[i].data, got[i].len);
    }
  }
}

static void expect_err_names(const char *vn, const char *err, const char *field) {
  char quoted[NAME_CAP + 4];
  snprintf(quoted, sizeof quoted, "'%s'", field);
  if (!strstr(err, quoted))
    fail_msg("%s: the error should name %s, it says: \"%s\"", vn, quoted, err);
}

static void expect_rc(const char *vn, const char *call, int want, int got, const char *err) {
  if (want != got)
    fail_msg("%s: %s: expected %d (%s), actual %d (%s); message \"%s\"", vn, call, want,
             sb_strerror(want), got, sb_strerror(got), err);
}

static sb_schema *new_schema(const jschema *js, const char *vn) {
  sb_schema *s = NULL;
  char err[ERRLEN] = "";
  int rc = sb_schema_new(&s, js->f, js->count, NULL, err, sizeof err);
  expect_rc(vn, "sb_schema_new", 0, rc, err);
  assert_non_null(s);
  return s;
}

/* This file's own writer of the schema wire form (version, count, then type, varint size,
 * name length, name), used to put schemas on the wire that sb_schema_new refuses. Returns 0 if
 * the schema cannot be written at all (a count or a name length over 255). */
static int ref_schema_wire(const jschema *js, bytes *out) {
  size_t cap = 2 + js->count * (1 + 10 + 1 + NAME_CAP);
  out->p = malloc(cap);
  assert_non_null(out->p);
  out->n = 0;
  if (js->count > 255) return 0;
  out->p[out->n++] = 1;
  out->p[out->n++] = (uint8_t)js->count;
  for (size_t i = 0; i < js->count; i++) {
    size_t nl = strlen(js->f[i].name);
    if ((int)js->f[i].type < 0 || (int)js->f[i].type > 255 || nl > 255) return 0;
    out->p[out->n++] = (uint8_t)js->f[i].type;
    out->n += ref_varint(out->p + out->n, js->f[i].size);
    out->p[out->n++] = (uint8_t)nl;
    memcpy(out->p + out->n, js->f[i].name, nl);
    out->n += nl;
  }
  return 1;
}

static void expect_same_fields(const char *vn, const jschema *js, const sb_schema *s) {
  if (sb_schema_count(s) != js->count)
    fail_msg("%s: expected %zu fields, actual %zu", vn, js->count, sb_schema_count(s));
  for (size_t i = 0; i < js->count; i++) {
    const sb_field *f = sb_schema_field(s, i);
    assert_non_null(f);
    if (strcmp(f->name, js->f[i].name) != 0 || f->type != js->f[i].type ||
        f->size != js->f[i].size)
      fail_msg("%s: field %zu: expected '%s' type %d size %" PRIu32
               ", actual '%s' type %d size %" PRIu32,
               vn, i, js->f[i].name, (int)js->f[i].type, js->f[i].size, f->name, (int)f->type,
               f->size);
    if (sb_schema_index(s, js->f[i].name) != (int)i)
      fail_msg("%s: sb_schema_index('%s'): expected %zu, actual %d", vn, js->f[i].name, i,
               sb_schema_index(s, js->f[i].name));
  }
  assert_null(sb_schema_field(s, js->count));
}

/* ---------------------------------------------------------------------------------------- */
/* The test JSON reader itself                                                                */
/* ---------------------------------------------------------------------------------------- */

static void test_json_reader(void **state) {
  (void)state;
  char err[128];
  const char *doc =
      " {\"s\": \"a\\u00e9\\ud83d\\ude00\\n\\\"\\\\\\/\\t\\u0000z\", \"n\": [0, -12, 1.5e3, "
      "18446744073709551616], \"t\": true, \"f\": false, \"z\": null, \"o\": {}, \"a\": []} ";
  json *v = json_parse(doc, strlen(doc), err, sizeof err);
  if (!v) fail_msg("json_parse: %s", err);
  const json *s = json_get(v, "s");
  static const uint8_t want[] = {'a',  0xc3, 0xa9, 0xf0, 0x9f, 0x98, 0x80, '\n',
                                 '"',  '\\', '/',  '\t', 0x00, 'z'};
  assert_non_null(s);
  expect_bytes("json string escapes", want, sizeof want, (const uint8_t *)s->text, s->len);
  const json *n = json_get(v, "n");
  assert_int_equal(n->count, 4);
  assert_true(n->items[1]->number == -12.0);
  assert_true(n->items[2]->number == 1500.0);
  assert_string_equal(n->items[3]->text, "18446744073709551616");
  assert_int_equal(json_get(v, "t")->boolean, 1);
  assert_int_equal(json_get(v, "f")->type, JSON_BOOL);
  assert_int_equal(json_get(v, "z")->type, JSON_NULL);
  assert_int_equal(json_get(v, "o")->count, 0);
  assert_int_equal(json_get(v, "a")->type, JSON_ARRAY);
  assert_null(json_get(v, "missing"));
  json_free(v);

  static const char *bad[] = {
      "",           "{",        "[1,]",           "{\"a\" 1}",     "\"\\ud800\"",
      "\"\\udc00\"", "\"\\ud800\\u0041\"", "\"abc",  "\"\\x\"",        "01x",
      "1.",         "-",        "tru",            "[1] 2",         "\"a\nb\"",
      "{\"a\":1,}", "[\"\\u12\"]",
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    json *b = json_parse(bad[i], strlen(bad[i]), err, sizeof err);
    if (b) fail_msg("json_parse accepted bad input '%s'", bad[i]);
    assert_true(err[0] != '\0');
  }
  char deep[200];
  memset(deep, '[', sizeof deep);
  assert_null(json_parse(deep, sizeof deep, err, sizeof err));
}

/* ---------------------------------------------------------------------------------------- */
/* Vectors                                                                                    */
/* ---------------------------------------------------------------------------------------- */

static void test_vectors_present(void **state) {
  (void)state;
  static const char *names[] = {"valid",          "invalid_encode", "invalid_decode",
                                "invalid_schema", "schema_wire",    "invalid_schema_wire"};
  for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
    section(names[i]);
  assert_non_null(json_get(vectors, "$comment"));
}

static void test_valid_encode(void **state) {
  (void)state;
  const json *sec = section("valid");
  for (size_t k = 0; k < sec->count; k++) {
    const json *v = sec->items[k];
    const char *vn = vname(v), *bad = NULL;
    jschema js;
    jvalues jv;
    char err[ERRLEN] = "";
    if (schema_from_json(json_get(v, "schema"), &js, vn, &bad) ||
        values_from_json(json_get(v, "values"), &js, &jv, vn, &bad))
      fail_msg("%s: cannot read the vector (field '%s')", vn, bad);
    bytes want = unhex(json_get_str(v, "hex"));
    sb_schema *s = new_schema(&js, vn);

    size_t size = (size_t)-1;
    int rc = sb_schema_encoded_size(s, jv.v, &size, err, sizeof err);
    expect_rc(vn, "sb_schema_encoded_size", 0, rc, err);
    if (size != want.n) fail_msg("%s: encoded size: expected %zu, actual %zu", vn, want.n, size);

    /* Exact-size buffer, then one byte short, then room to spare (the rest untouched). */
    uint8_t *out = malloc(want.n ? want.n : 1);
    size_t written = (size_t)-1;
    rc = sb_schema_encode(s, jv.v, out, want.n, &written, err, sizeof err);
    expect_rc(vn, "sb_schema_encode", 0, rc, err);
    expect_bytes(vn, want.p, want.n, out, written);
    if (want.n) {
      rc = sb_schema_encode(s, jv.v, out, want.n - 1, &written, err, sizeof err);
      expect_rc(vn, "sb_schema_encode with cap one short", SB_ENOMEM, rc, err);
      assert_int_equal(written, want.n);
    }
    free(out);
    out = malloc(want.n + 16);
    memset(out, 0xEE, want.n + 16);
    rc = sb_schema_encode(s, jv.v, out, want.n + 16, &written, err, sizeof err);
    expect_rc(vn, "sb_schema_encode with room to spare", 0, rc, err);
    expect_bytes(vn, want.p, want.n, out, written);
    for (size_t i = want.n; i < want.n + 16; i++)
      if (out[i] != 0xEE) fail_msg("%s: encode wrote past the message (byte %zu)", vn, i);
    free(out);

    sb_schema_free(s);
    values_free(&jv);
    free(want.p);
  }
}

/* Byte offset where each field's encoding ends, from a successful decode of buf. */
static void field_ends(const jschema *js, const sb_value *vals, const uint8_t *buf,
                       size_t *ends) {
  size_t pos = 0;
  for (size_t i = 0; i < js->count; i++) {
    switch (js->f[i].type) {
      case SB_FIELD_U8: pos += 1; break;
      case SB_FIELD_U16: pos += 2; break;
      case SB_FIELD_U32: pos += 4; break;
      case SB_FIELD_U64: pos += 8; break;
      default:
        pos = vals[i].len ? (size_t)((const uint8_t *)vals[i].data - buf) + vals[i].len
                          : pos + (js->f[i].type == SB_FIELD_REST ? 0 : 1);
        break;
    }
    ends[i] = pos;
  }
}

static void test_valid_decode(void **state) {
  (void)state;
  const json *sec = section("valid");
  for (size_t k = 0; k < sec->count; k++) {
    const json *v = sec->items[k];
    const char *vn = vname(v), *bad = NULL;
    jschema js;
    jvalues jv;
    char err[ERRLEN] = "";
    if (schema_from_json(json_get(v, "schema"), &js, vn, &bad) ||
        values_from_json(json_get(v, "values"), &js, &jv, vn, &bad))
      fail_msg("%s: cannot read the vector (field '%s')", vn, bad);
    bytes want = unhex(json_get_str(v, "hex"));
    sb_schema *s = new_schema(&js, vn);
    uint8_t *in = heap_copy(want.p, want.n);
    sb_value got[MAX_JSON_FIELDS];

    int rc = sb_schema_decode(s, in, want.n, got, err, sizeof err);
    expect_rc(vn, "sb_schema_decode", 0, rc, err);
    expect_values(vn, &js, jv.v, got);
    for (size_t i = 0; i < js.count; i++)
      if (!is_int(js.f[i].type) && got[i].len &&
          ((const uint8_t *)got[i].data < in ||
           (const uint8_t *)got[i].data + got[i].len > in + want.n))
        fail_msg("%s: field '%s' does not point into the input", vn, js.f[i].name);

    /* Round trip: the decoded values encode to the same bytes. */
    uint8_t *again = malloc(want.n ? want.n : 1);
    size_t written = 0;
    rc = sb_schema_encode(s, got, again, want.n, &written, err, sizeof err);
    expect_rc(vn, "re-encode", 0, rc, err);
    expect_bytes(vn, want.p, want.n, again, written);
    free(again);

    /* The schema survives its wire form. */
    size_t wn = 0;
    assert_int_equal(sb_schema_serialize(s, NULL, 0, &wn), 0);
    uint8_t *wire = malloc(wn);
    assert_int_equal(sb_schema_serialize(s, wire, wn, &wn), 0);
    sb_schema *s2 = NULL;
    rc = sb_schema_deserialize(&s2, wire, wn, NULL, err, sizeof err);
    expect_rc(vn, "sb_schema_deserialize(sb_schema_serialize())", 0, rc, err);
    expect_same_fields(vn, &js, s2);
    sb_schema_free(s2);
    free(wire);

    free(in);
    sb_schema_free(s);
    values_free(&jv);
    free(want.p);
  }
}

static void test_valid_truncated_and_extended(void **state) {
  (void)state;
  const json *sec = section("valid");
  for (size_t k = 0; k < sec->count; k++) {
    const json *v = sec->items[k];
    const char *vn = vname(v), *bad = NULL;
    jschema js;
    char err[ERRLEN] = "";
    if (schema_from_json(json_get(v, "schema"), &js, vn, &bad))
      fail_msg("%s: cannot read the vector", vn);
    bytes msg = unhex(json_get_str(v, "hex"));
    sb_schema *s = new_schema(&js, vn);
    sb_value full[MAX_JSON_FIELDS], got[MAX_JSON_FIELDS];
    size_t ends[MAX_JSON_FIELDS];
    uint8_t *in = heap_copy(msg.p, msg.n);
    assert_int_equal(sb_schema_decode(s, in, msg.n, full, err, sizeof err), 0);
    field_ends(&js, full, in, ends);
    assert_int_equal(ends[js.count - 1], msg.n);
    size_t rest_at = js.has_rest ? (js.count > 1 ? ends[js.count - 2] : 0) : SIZE_MAX;

    /* Every strict prefix, each one ending exactly at the end of its heap buffer. */
    uint8_t *buf = malloc(msg.n ? msg.n : 1);
    for (size_t n = msg.n; n-- > 0;) {
      uint8_t *p = buf + (msg.n - n);
      if (n) memcpy(p, msg.p, n);
      err[0] = '\0';
      int rc = sb_schema_decode(s, n ? p : NULL, n, got, err, sizeof err);
      if (n >= rest_at) {
        char what[300];
        snprintf(what, sizeof what, "%s, prefix of %zu bytes", vn, n);
        expect_rc(what, "sb_schema_decode", 0, rc, err);
        for (size_t i = 0; i + 1 < js.count; i++) {
          if (is_int(js.f[i].type) ? got[i].u != full[i].u
                                   : got[i].len != full[i].len ||
                                         (got[i].len && memcmp(got[i].data, full[i].data,
                                                               got[i].len) != 0))
            fail_msg("%s: field '%s' decodes differently", what, js.f[i].name);
        }
        expect_bytes(what, msg.p + rest_at, n - rest_at, got[js.count - 1].data,
                     got[js.count - 1].len);
      } else {
        size_t j = 0;
        while (ends[j] <= n)
          j++;
        char what[300];
        snprintf(what, sizeof what, "%s, prefix of %zu bytes", vn, n);
        expect_rc(what, "sb_schema_decode", SB_EPROTO, rc, err);
        expect_err_names(what, err, js.f[j].name);
      }
    }
    free(buf);

    /* One byte more: trailing, or part of the rest. */
    uint8_t *longer = malloc(msg.n + 1);
    if (msg.n) memcpy(longer, msg.p, msg.n);
    longer[msg.n] = 0x5a;
    int rc = sb_schema_decode(s, longer, msg.n + 1, got, err, sizeof err);
    if (js.has_rest) {
      expect_rc(vn, "decode with a byte appended", 0, rc, err);
      assert_int_equal(got[js.count - 1].len, full[js.count - 1].len + 1);
    } else {
      expect_rc(vn, "decode with a byte appended", SB_EPROTO, rc, err);
      assert_string_equal(err, "1 trailing byte after the last field");
    }
    free(longer);
    free(in);
    sb_schema_free(s);
    free(msg.p);
  }
}

/* sb_schema_decode_prefix: a valid message followed by anything decodes the same and reports
 * its own length (all of the input with a rest field); a strict prefix fails as in decode. */
static void test_decode_prefix(void **state) {
  (void)state;
  const json *sec = section("valid");
  for (size_t k = 0; k < sec->count; k++) {
    const json *v = sec->items[k];
    const char *vn = vname(v), *bad = NULL;
    jschema js;
    jvalues jv;
    char err[ERRLEN] = "";
    if (schema_from_json(json_get(v, "schema"), &js, vn, &bad) ||
        values_from_json(json_get(v, "values"), &js, &jv, vn, &bad))
      fail_msg("%s: cannot read the vector (field '%s')", vn, bad);
    bytes msg = unhex(json_get_str(v, "hex"));
    sb_schema *s = new_schema(&js, vn);
    sb_value got[MAX_JSON_FIELDS];
    size_t used = 12345;

    /* The message twice, back to back. */
    uint8_t *two = malloc(2 * msg.n + 1);
    if (msg.n) {
      memcpy(two, msg.p, msg.n);
      memcpy(two + msg.n, msg.p, msg.n);
    }
    int rc = sb_schema_decode_prefix(s, two, 2 * msg.n, got, &used, err, sizeof err);
    expect_rc(vn, "sb_schema_decode_prefix", 0, rc, err);
    if (js.has_rest) {
      assert_int_equal(used, 2 * msg.n);
    } else {
      assert_int_equal(used, msg.n);
      expect_values(vn, &js, jv.v, got);
      rc = sb_schema_decode_prefix(s, two + used, 2 * msg.n - used, got, &used, err, sizeof err);
      expect_rc(vn, "sb_schema_decode_prefix, second record", 0, rc, err);
      assert_int_equal(used, msg.n);
      expect_values(vn, &js, jv.v, got);
    }
    free(two);

    /* Exactly the message. */
    uint8_t *in = heap_copy(msg.p, msg.n);
    rc = sb_schema_decode_prefix(s, in, msg.n, got, &used, err, sizeof err);
    expect_rc(vn, "sb_schema_decode_prefix of the message alone", 0, rc, err);
    assert_int_equal(used, msg.n);
    expect_values(vn, &js, jv.v, got);
    free(in);

    /* A strict prefix fails exactly when decode fails (short vectors only: decode's own test
     * covers every length). */
    for (size_t n = 0; n < msg.n && n < 300; n++) {
      char err2[ERRLEN] = "";
      in = heap_copy(msg.p, n);
      int a = sb_schema_decode(s, n ? in : NULL, n, got, err, sizeof err);
      int b = sb_schema_decode_prefix(s, n ? in : NULL, n, got, &used, err2, sizeof err2);
      if (a != b || (a && strcmp(err, err2) != 0))
        fail_msg("%s, prefix of %zu: decode %d \"%s\", decode_prefix %d \"%s\"", vn, n, a, err, b,
                 err2);
      if (b == 0) assert_int_equal(used, n);
      free(in);
    }
    assert_int_equal(sb_schema_decode_prefix(s, msg.p, msg.n, got, NULL, err, sizeof err),
                     SB_EINVAL);
    sb_schema_free(s);
    values_free(&jv);
    free(msg.p);
  }
}

static void test_invalid_encode(void **state) {
  (void)state;
  const json *sec = section("invalid_encode");
  for (size_t k = 0; k < sec->count; k++) {
    const json *v = sec->items[k];
    const char *vn = vname(v), *bad = NULL, *field = json_get_str(v, "error_field");
    jschema js;
    jvalues jv;
    char err[ERRLEN] = "";
    if (!field) fail_msg("%s: no error_field", vn);
    if (schema_from_json(json_get(v, "schema"), &js, vn, &bad))
      fail_msg("%s: cannot read the schema", vn);
    if (values_from_json(json_get(v, "values"), &js, &jv, vn, &bad)) {
      /* Not representable as a uint64_t: the C API cannot even be asked. */
      if (strcmp(bad, field) != 0)
        fail_msg("%s: field '%s' is not representable, but the vector blames '%s'", vn, bad,
                 field);
      values_free(&jv);
      continue;
    }
    sb_schema *s = new_schema(&js, vn);
    size_t size = 12345;
    int rc = sb_schema_encoded_size(s, jv.v, &size, err, sizeof err);
    expect_rc(vn, "sb_schema_encoded_size", SB_EINVAL, rc, err);
    expect_err_names(vn, err, field);
    uint8_t out[256];
    size_t written = 0;
    err[0] = '\0';
    rc = sb_schema_encode(s, jv.v, out, sizeof out, &written, err, sizeof err);
    expect_rc(vn, "sb_schema_encode", SB_EINVAL, rc, err);
    expect_err_names(vn, err, field);
    /* A bad value is reported even when the buffer is also too small. */
    rc = sb_schema_encode(s, jv.v, NULL, 0, &written, err, sizeof err);
    expect_rc(vn, "sb_schema_encode into nothing", SB_EINVAL, rc, err);
    sb_schema_free(s);
    values_free(&jv);
  }
}

static void test_invalid_decode(void **state) {
  (void)state;
  const json *sec = section("invalid_decode");
  for (size_t k = 0; k < sec->count; k++) {
    const json *v = sec->items[k];
    const char *vn = vname(v), *bad = NULL, *field = json_get_str(v, "error_field");
    const char *e = json_get_str(v, "error");
    jschema js;
    char err[ERRLEN] = "";
    if (!field && !(e && strcmp(e, "trailing") == 0))
      fail_msg("%s: needs error_field or \"error\": \"trailing\"", vn);
    if (schema_from_json(json_get(v, "schema"), &js, vn, &bad))
      fail_msg("%s: cannot read the schema", vn);
    bytes b = unhex(json_get_str(v, "hex"));
    uint8_t *in = heap_copy(b.p, b.n);
    sb_schema *s = new_schema(&js, vn);
    sb_value got[MAX_JSON_FIELDS];
    int rc = sb_schema_decode(s, in, b.n, got, err, sizeof err);
    expect_rc(vn, "sb_schema_decode", SB_EPROTO, rc, err);
    if (field) expect_err_names(vn, err, field);
    else if (!strstr(err, "trailing"))
      fail_msg("%s: expected a trailing-bytes error, got \"%s\"", vn, err);
    sb_schema_free(s);
    free(in);
    free(b.p);
  }
}

static void test_invalid_schema(void **state) {
  (void)state;
  const json *sec = section("invalid_schema");
  for (size_t k = 0; k < sec->count; k++) {
    const json *v = sec->items[k];
    const char *vn = vname(v), *bad = NULL, *field = json_get_str(v, "error_field");
    const json *index = json_get(v, "error_index");
    jschema js;
    char err[ERRLEN] = "", want_index[32] = "";
    if (index) snprintf(want_index, sizeof want_index, "index %d", (int)index->number);
    if (schema_from_json(json_get(v, "schema"), &js, vn, &bad)) {
      /* Only a bad shorthand size cannot be written as sb_field at all. */
      if (!field || strcmp(bad, field) != 0)
        fail_msg("%s: the JSON reader refused field '%s', the vector blames '%s'", vn, bad,
                 field ? field : "(none)");
      continue;
    }
    sb_schema *s = (sb_schema *)&js; /* must be overwritten with NULL */
    int rc = sb_schema_new(&s, js.f, js.count, NULL, err, sizeof err);
    expect_rc(vn, "sb_schema_new", SB_EINVAL, rc, err);
    assert_null(s);
    if (field) expect_err_names(vn, err, field);
    if (index && !strstr(err, want_index))
      fail_msg("%s: the error should say \"%s\", it says \"%s\"", vn, want_index, err);

    bytes wire;
    if (ref_schema_wire(&js, &wire)) {
      uint8_t *in = heap_copy(wire.p, wire.n);
      s = (sb_schema *)&js;
      err[0] = '\0';
      rc = sb_schema_deserialize(&s, in, wire.n, NULL, err, sizeof err);
      expect_rc(vn, "sb_schema_deserialize of its wire form", SB_EPROTO, rc, err);
      assert_null(s);
      if (field) expect_err_names(vn, err, field);
      if (index && !strstr(err, want_index))
        fail_msg("%s (wire): the error should say \"%s\", it says \"%s\"", vn, want_index, err);
      free(in);
    }
    free(wire.p);
  }
}

static void test_schema_wire(void **state) {
  (void)state;
  const json *sec = section("schema_wire");
  for (size_t k = 0; k < sec->count; k++) {
    const json *v = sec->items[k];
    const char *vn = vname(v), *bad = NULL;
    jschema js;
    char err[ERRLEN] = "";
    if (schema_from_json(json_get(v, "schema"), &js, vn, &bad))
      fail_msg("%s: cannot read the schema", vn);
    bytes want = unhex(json_get_str(v, "hex"));
    sb_schema *s = new_schema(&js, vn);

    size_t n = 0;
    assert_int_equal(sb_schema_serialize(s, NULL, 0, &n), 0);
    if (n != want.n) fail_msg("%s: serialized size: expected %zu, actual %zu", vn, want.n, n);
    uint8_t *out = malloc(n);
    size_t got = 0;
    assert_int_equal(sb_schema_serialize(s, out, n - 1, &got), SB_ENOMEM);
    assert_int_equal(sb_schema_serialize(s, out, n, &got), 0);
    expect_bytes(vn, want.p, want.n, out, got);
    free(out);

    uint8_t *in = heap_copy(want.p, want.n);
    sb_schema *d = NULL;
    int rc = sb_schema_deserialize(&d, in, want.n, NULL, err, sizeof err);
    expect_rc(vn, "sb_schema_deserialize", 0, rc, err);
    expect_same_fields(vn, &js, d);
    sb_schema_free(d);
    free(in);

    /* No prefix is a schema, and neither is the form with a byte appended. */
    for (size_t p = 0; p < want.n; p++) {
      in = heap_copy(want.p, p);
      d = (sb_schema *)&js;
      rc = sb_schema_deserialize(&d, p ? in : NULL, p, NULL, err, sizeof err);
      if (rc != SB_EPROTO || d)
        fail_msg("%s: prefix of %zu bytes: expected SB_EPROTO, actual %d (%s)", vn, p, rc, err);
      free(in);
    }
    in = malloc(want.n + 1);
    memcpy(in, want.p, want.n);
    in[want.n] = 0;
    rc = sb_schema_deserialize(&d, in, want.n + 1, NULL, err, sizeof err);
    expect_rc(vn, "deserialize with a byte appended", SB_EPROTO, rc, err);
    assert_non_null(strstr(err, "trailing"));
    free(in);

    sb_schema_free(s);
    free(want.p);
  }
}

static void test_invalid_schema_wire(void **state) {
  (void)state;
  const json *sec = section("invalid_schema_wire");
  for (size_t k = 0; k < sec->count; k++) {
    const json *v = sec->items[k];
    const char *vn = vname(v);
    char err[ERRLEN] = "";
    bytes b = unhex(json_get_str(v, "hex"));
    uint8_t *in = heap_copy(b.p, b.n);
    sb_schema *s = (sb_schema *)&b;
    int rc = sb_schema_deserialize(&s, in, b.n, NULL, err, sizeof err);
    expect_rc(vn, "sb_schema_deserialize", SB_EPROTO, rc, err);
    assert_null(s);
    if (!err[0]) fail_msg("%s: no error message", vn);
    free(in);
    free(b.p);
  }
}

/* ---------------------------------------------------------------------------------------- */
/* Beyond the vectors                                                                         */
/* ---------------------------------------------------------------------------------------- */

/* The error texts the documentation quotes. */
static void test_error_messages(void **state) {
  (void)state;
  char err[ERRLEN];
  sb_schema *s;
  sb_value v[3] = {{300, NULL, 0}, {1, NULL, 0}, {0, NULL, 0}};
  const sb_field user[] = {
      {"status", SB_FIELD_U8, 0}, {"method", SB_FIELD_U8, 0}, {"body", SB_FIELD_REST, 0}};
  assert_int_equal(sb_schema_new(&s, user, 3, NULL, err, sizeof err), 0);
  size_t n;
  assert_int_equal(sb_schema_encoded_size(s, v, &n, err, sizeof err), SB_EINVAL);
  assert_string_equal(err, "field 'status': value 300 does not fit in 1 byte");
  sb_schema_free(s);

  const sb_field body[] = {{"body", SB_FIELD_BYTES, 0}};
  static const uint8_t trunc[] = {0x05, 'h', 'i'};
  assert_int_equal(sb_schema_new(&s, body, 1, NULL, err, sizeof err), 0);
  assert_int_equal(sb_schema_decode(s, trunc, sizeof trunc, v, err, sizeof err), SB_EPROTO);
  assert_string_equal(err, "field 'body': truncated: needs 5 bytes, 2 left");
  sb_schema_free(s);

  const sb_field name[] = {{"name", SB_FIELD_TEXT, 0}};
  static const uint8_t overlong[] = {0x02, 0xc0, 0x80};
  assert_int_equal(sb_schema_new(&s, name, 1, NULL, err, sizeof err), 0);
  assert_int_equal(sb_schema_decode(s, overlong, sizeof overlong, v, err, sizeof err), SB_EPROTO);
  assert_string_equal(err, "field 'name': text is not valid UTF-8");
  v[0].data = overlong + 1;
  v[0].len = 2;
  assert_int_equal(sb_schema_encoded_size(s, v, &n, err, sizeof err), SB_EINVAL);
  assert_string_equal(err, "field 'name': text is not valid UTF-8");
  sb_schema_free(s);

  const sb_field one[] = {{"x", SB_FIELD_U8, 0}};
  static const uint8_t trailing[] = {1, 2, 3, 4};
  assert_int_equal(sb_schema_new(&s, one, 1, NULL, err, sizeof err), 0);
  assert_int_equal(sb_schema_decode(s, trailing, sizeof trailing, v, err, sizeof err), SB_EPROTO);
  assert_string_equal(err, "3 trailing bytes after the last field");
  sb_schema_free(s);
}

/* err is written only when err != NULL and errlen > 0, always NUL-terminated, never past
 * errlen. */
static void test_err_buffer_contract(void **state) {
  (void)state;
  const sb_field body[] = {{"body", SB_FIELD_BYTES, 0}};
  static const uint8_t trunc[] = {0x05, 'h', 'i'};
  const char *full = "field 'body': truncated: needs 5 bytes, 2 left";
  sb_schema *s;
  sb_value v[1];
  char err[64];
  assert_int_equal(sb_schema_new(&s, body, 1, NULL, NULL, 0), 0);
  assert_int_equal(sb_schema_decode(s, trunc, sizeof trunc, v, NULL, 0), SB_EPROTO);
  assert_int_equal(sb_schema_decode(s, trunc, sizeof trunc, v, NULL, 50), SB_EPROTO);
  memset(err, 'X', sizeof err);
  assert_int_equal(sb_schema_decode(s, trunc, sizeof trunc, v, err, 0), SB_EPROTO);
  assert_int_equal(err[0], 'X');
  for (size_t len = 1; len < sizeof err; len++) {
    memset(err, 'X', sizeof err);
    assert_int_equal(sb_schema_decode(s, trunc, sizeof trunc, v, err, len), SB_EPROTO);
    size_t want = strlen(full) < len - 1 ? strlen(full) : len - 1;
    if (strlen(err) != want || strncmp(err, full, want) != 0)
      fail_msg("errlen %zu: expected \"%.*s\", actual \"%s\"", len, (int)want, full, err);
    for (size_t i = len; i < sizeof err; i++)
      if (err[i] != 'X') fail_msg("errlen %zu: byte %zu written", len, i);
  }
  /* Success leaves err alone. */
  static const uint8_t ok[] = {0x00};
  memset(err, 'X', sizeof err);
  assert_int_equal(sb_schema_decode(s, ok, 1, v, err, sizeof err), 0);
  assert_int_equal(err[0], 'X');
  sb_schema_free(s);
}

static void test_null_and_edge_arguments(void **state) {
  (void)state;
  char err[ERRLEN];
  sb_schema *s = NULL;
  const sb_field f[] = {{"a", SB_FIELD_BYTES, 0}, {"r", SB_FIELD_REST, 0}};
  sb_value v[2] = {{0, NULL, 0}, {0, NULL, 0}};
  size_t n;

  assert_int_equal(sb_schema_new(NULL, f, 2, NULL, err, sizeof err), SB_EINVAL);
  assert_int_equal(sb_schema_new(&s, NULL, 2, NULL, err, sizeof err), SB_EINVAL);
  assert_null(s);
  assert_int_equal(sb_schema_new(&s, NULL, 0, NULL, err, sizeof err), SB_EINVAL);
  /* A huge count is refused before fields[] is read (it holds one entry here). */
  assert_int_equal(sb_schema_new(&s, f, SIZE_MAX, NULL, err, sizeof err), SB_EINVAL);
  assert_int_equal(sb_schema_new(&s, f, 65, NULL, err, sizeof err), SB_EINVAL);
  assert_non_null(strstr(err, "64"));
  const sb_field nul[] = {{NULL, SB_FIELD_U8, 0}};
  assert_int_equal(sb_schema_new(&s, nul, 1, NULL, err, sizeof err), SB_EINVAL);
  assert_non_null(strstr(err, "index 0"));
  const sb_field bad_enum[] = {{"x", (sb_field_type)-1, 0}};
  assert_int_equal(sb_schema_new(&s, bad_enum, 1, NULL, err, sizeof err), SB_EINVAL);
  assert_null(s);

  sb_schema_free(NULL);
  assert_int_equal(sb_schema_count(NULL), 0);
  assert_null(sb_schema_field(NULL, 0));
  assert_int_equal(sb_schema_index(NULL, "a"), -1);

  assert_int_equal(sb_schema_new(&s, f, 2, NULL, err, sizeof err), 0);
  assert_int_equal(sb_schema_index(s, NULL), -1);
  assert_int_equal(sb_schema_index(s, "b"), -1);
  assert_int_equal(sb_schema_index(s, "A"), -1);
  assert_int_equal(sb_schema_index(s, ""), -1);
  assert_int_equal(sb_schema_index(s, "r"), 1);
  assert_null(sb_schema_field(s, 2));
  assert_null(sb_schema_field(s, SIZE_MAX));

  assert_int_equal(sb_schema_encoded_size(NULL, v, &n, err, sizeof err), SB_EINVAL);
  assert_int_equal(sb_schema_encoded_size(s, NULL, &n, err, sizeof err), SB_EINVAL);
  assert_int_equal(sb_schema_encoded_size(s, v, NULL, err, sizeof err), SB_EINVAL);
  uint8_t out[8];
  assert_int_equal(sb_schema_encode(NULL, v, out, 8, &n, err, sizeof err), SB_EINVAL);
  assert_int_equal(sb_schema_encode(s, v, NULL, 8, &n, err, sizeof err), SB_EINVAL);
  assert_int_equal(sb_schema_encode(s, v, NULL, 0, &n, err, sizeof err), SB_ENOMEM);
  assert_int_equal(n, 1);
  assert_int_equal(sb_schema_encode(s, v, out, 8, NULL, err, sizeof err), 0);
  assert_int_equal(out[0], 0x00);
  v[1].len = 3; /* data NULL with a length */
  assert_int_equal(sb_schema_encode(s, v, out, 8, &n, err, sizeof err), SB_EINVAL);
  expect_err_names("NULL data", err, "r");
  v[1].len = 0;

  assert_int_equal(sb_schema_decode(NULL, out, 1, v, err, sizeof err), SB_EINVAL);
  assert_int_equal(sb_schema_decode(s, out, 1, NULL, err, sizeof err), SB_EINVAL);
  assert_int_equal(sb_schema_decode(s, NULL, 1, v, err, sizeof err), SB_EINVAL);
  assert_int_equal(sb_schema_decode(s, NULL, 0, v, err, sizeof err), SB_EPROTO);
  expect_err_names("empty input", err, "a");

  assert_int_equal(sb_schema_serialize(NULL, out, 8, &n), SB_EINVAL);
  assert_int_equal(sb_schema_serialize(s, out, 8, NULL), SB_EINVAL);
  assert_int_equal(sb_schema_deserialize(NULL, out, 8, NULL, err, sizeof err), SB_EINVAL);
  sb_schema *d = s;
  assert_int_equal(sb_schema_deserialize(&d, NULL, 8, NULL, err, sizeof err), SB_EINVAL);
  assert_int_equal(sb_schema_deserialize(&d, NULL, 0, NULL, err, sizeof err), SB_EPROTO);
  assert_null(d);
  sb_schema_free(s);

  /* A REST-only schema decodes an empty (even NULL) input. */
  const sb_field r[] = {{"r", SB_FIELD_REST, 0}};
  assert_int_equal(sb_schema_new(&s, r, 1, NULL, err, sizeof err), 0);
  v[0].data = out;
  v[0].len = 99;
  assert_int_equal(sb_schema_decode(s, NULL, 0, v, err, sizeof err), 0);
  assert_int_equal(v[0].len, 0);
  assert_int_equal(sb_schema_encode(s, v, NULL, 0, &n, err, sizeof err), 0);
  assert_int_equal(n, 0);
  sb_schema_free(s);
}

/* The names (and the fields array) are copied: the caller's may go away. Names are read no
 * further than one character past the limit. */
static void test_names_copied_and_bounded(void **state) {
  (void)state;
  char err[ERRLEN];
  char buf[2][8] = {"alpha", "beta"};
  sb_field f[2] = {{buf[0], SB_FIELD_U8, 0}, {buf[1], SB_FIELD_FIXED, 3}};
  sb_schema *s;
  assert_int_equal(sb_schema_new(&s, f, 2, NULL, err, sizeof err), 0);
  memset(buf, 'z', sizeof buf);
  f[1].size = 9;
  assert_string_equal(sb_schema_field(s, 0)->name, "alpha");
  assert_string_equal(sb_schema_field(s, 1)->name, "beta");
  assert_int_equal(sb_schema_field(s, 1)->size, 3);
  assert_int_equal(sb_schema_index(s, "beta"), 1);
  sb_schema_free(s);

  /* 64 characters with no NUL after them, at the very end of a heap block. */
  char *unterminated = malloc(SB_FIELD_MAX_NAME + 1);
  memset(unterminated, 'n', SB_FIELD_MAX_NAME + 1);
  sb_field lf[1] = {{unterminated, SB_FIELD_U8, 0}};
  assert_int_equal(sb_schema_new(&s, lf, 1, NULL, err, sizeof err), SB_EINVAL);
  assert_non_null(strstr(err, "longer than 63"));
  assert_non_null(strstr(err, "..."));
  free(unterminated);

  /* Unprintable bytes in a refused name are escaped in the message. */
  const sb_field odd[] = {{"a\x01'\\\xff", SB_FIELD_U8, 0}};
  assert_int_equal(sb_schema_new(&s, odd, 1, NULL, err, sizeof err), SB_EINVAL);
  assert_non_null(strstr(err, "'a\\x01\\x27\\x5c\\xff'"));
}

/* Lengths around every varint size boundary, through the public API and straight through
 * varint.h, against this file's own writer. */
static void test_varint_boundaries(void **state) {
  (void)state;
  char err[ERRLEN];
  const sb_field f[] = {{"b", SB_FIELD_BYTES, 0}};
  sb_schema *s;
  assert_int_equal(sb_schema_new(&s, f, 1, NULL, err, sizeof err), 0);
  static uint8_t payload[(1u << 21) + 2];
  for (int k = 0; k <= 3; k++) {
    size_t edge = (size_t)1 << (7 * k);
    for (size_t len = edge > 2 ? edge - 2 : 0; len <= edge + 2; len++) {
      sb_value v = {0, payload, len}, got;
      uint8_t want_hdr[10];
      size_t hl = ref_varint(want_hdr, len), n = 0;
      uint8_t *out = malloc(hl + len);
      assert_int_equal(sb_schema_encode(s, &v, out, hl + len, &n, err, sizeof err), 0);
      assert_int_equal(n, hl + len);
      expect_bytes("varint header", want_hdr, hl, out, hl);
      assert_int_equal(sb_schema_decode(s, out, n, &got, err, sizeof err), 0);
      assert_int_equal(got.len, len);
      assert_ptr_equal(got.data, out + hl);
      free(out);
    }
  }
  sb_schema_free(s);

  for (int bits = 0; bits <= 64; bits++) {
    uint64_t vals[3] = {bits ? (uint64_t)1 << (bits - 1) : 0,
                        bits == 64 ? UINT64_MAX : ((uint64_t)1 << bits) - 1,
                        bits >= 1 && bits < 64 ? ((uint64_t)1 << bits) : 1};
    for (int i = 0; i < 3; i++) {
      uint8_t buf[10], *heap;
      size_t n = ref_varint(buf, vals[i]), used = 0;
      uint64_t got = 0;
      assert_int_equal(sb_varint_size(vals[i]), n);
      uint8_t mine[10];
      assert_int_equal(sb_varint_write(mine, vals[i]), n);
      expect_bytes("sb_varint_write", buf, n, mine, n);
      heap = heap_copy(buf, n);
      assert_int_equal(sb_varint_read(heap, n, &got, &used), SB_VARINT_OK);
      assert_true(got == vals[i]);
      assert_int_equal(used, n);
      for (size_t p = 0; p < n; p++)
        assert_int_equal(sb_varint_read(heap, p, &got, &used), SB_VARINT_TRUNCATED);
      free(heap);
      /* The same value padded with a redundant group is refused. */
      if (n < 10) {
        buf[n - 1] |= 0x80;
        buf[n] = 0x00;
        heap = heap_copy(buf, n + 1);
        assert_int_equal(sb_varint_read(heap, n + 1, &got, &used), SB_VARINT_NOT_MINIMAL);
        free(heap);
      }
    }
  }
  static const uint8_t eleven[11] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x80,
                                     0x80, 0x80, 0x80, 0x80, 0x01};
  static const uint8_t over[10] = {0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x02};
  uint64_t got;
  size_t used;
  assert_int_equal(sb_varint_read(eleven, 11, &got, &used), SB_VARINT_TOO_LONG);
  assert_int_equal(sb_varint_read(eleven, 10, &got, &used), SB_VARINT_TOO_LONG);
  assert_int_equal(sb_varint_read(over, 10, &got, &used), SB_VARINT_OVERFLOW);
}

/* Every two-byte start of a BYTES length, followed by 200 bytes of 'x' and a rest field,
 * against a model of the rules written here. */
static void test_varint_two_byte_model(void **state) {
  (void)state;
  char err[ERRLEN];
  const sb_field f[] = {{"b", SB_FIELD_BYTES, 0}, {"r", SB_FIELD_REST, 0}};
  sb_schema *s;
  assert_int_equal(sb_schema_new(&s, f, 2, NULL, err, sizeof err), 0);
  uint8_t *in = malloc(202);
  memset(in, 'x', 202);
  for (unsigned b0 = 0; b0 < 256; b0++) {
    for (unsigned b1 = 0; b1 < 256; b1++) {
      in[0] = (uint8_t)b0;
      in[1] = (uint8_t)b1;
      /* The model: a length of L then L bytes; the rest is what follows. */
      int ok;
      size_t hdr = 0, len = 0;
      if (b0 < 0x80) {
        ok = 1, hdr = 1, len = b0;
      } else if (b1 == 0) {
        ok = 0; /* not minimal */
      } else if (b1 >= 0x80) {
        ok = 0; /* third byte 'x': a length of at least 0x78 << 14, past the end */
      } else {
        hdr = 2, len = (b0 & 0x7f) | (size_t)b1 << 7;
        ok = len <= 200;
      }
      sb_value v[2];
      int rc = sb_schema_decode(s, in, 202, v, err, sizeof err);
      if (ok != (rc == 0))
        fail_msg("%02x %02x: the model says %s, decode returned %d (%s)", b0, b1,
                 ok ? "valid" : "invalid", rc, err);
      if (ok) {
        assert_int_equal(v[0].len, len);
        assert_ptr_equal(v[0].data, in + hdr);
        assert_int_equal(v[1].len, 202 - hdr - len);
      } else {
        assert_int_equal(rc, SB_EPROTO);
        expect_err_names("two-byte model", err, "b");
      }
    }
  }
  free(in);
  sb_schema_free(s);
}

/* Integer fields: every width, values at and just past the limit, big-endian. */
static void test_integer_widths(void **state) {
  (void)state;
  char err[ERRLEN];
  const sb_field f[] = {{"a", SB_FIELD_U8, 0},
                        {"b", SB_FIELD_U16, 0},
                        {"c", SB_FIELD_U32, 0},
                        {"d", SB_FIELD_U64, 0}};
  sb_schema *s;
  assert_int_equal(sb_schema_new(&s, f, 4, NULL, err, sizeof err), 0);
  sb_value v[4] = {{0xff, NULL, 0}, {0xffff, NULL, 0}, {0xffffffffu, NULL, 0}, {UINT64_MAX, NULL, 0}};
  uint8_t out[15];
  size_t n;
  assert_int_equal(sb_schema_encode(s, v, out, sizeof out, &n, err, sizeof err), 0);
  for (size_t i = 0; i < 15; i++)
    assert_int_equal(out[i], 0xff);
  static const char *names[] = {"a", "b", "c"};
  static const uint64_t over[] = {0x100, 0x10000, 0x100000000ull};
  for (int i = 0; i < 3; i++) {
    sb_value w[4] = {{0, NULL, 0}, {0, NULL, 0}, {0, NULL, 0}, {0, NULL, 0}};
    w[i].u = over[i];
    assert_int_equal(sb_schema_encode(s, w, out, sizeof out, &n, err, sizeof err), SB_EINVAL);
    expect_err_names("oversize", err, names[i]);
    w[i].u = UINT64_MAX;
    assert_int_equal(sb_schema_encode(s, w, out, sizeof out, &n, err, sizeof err), SB_EINVAL);
    assert_non_null(strstr(err, "18446744073709551615"));
  }
  sb_value w[4] = {{1, NULL, 0}, {0x0203, NULL, 0}, {0x04050607, NULL, 0},
                   {0x08090a0b0c0d0e0full, NULL, 0}};
  static const uint8_t want[15] = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
  assert_int_equal(sb_schema_encode(s, w, out, sizeof out, &n, err, sizeof err), 0);
  expect_bytes("big-endian", want, 15, out, n);
  sb_schema_free(s);
}

/* ---------------------------------------------------------------------------------------- */
/* Failing allocator                                                                          */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
  long countdown; /* allocations left before they start failing */
  long live;
  long calls;
} fail_alloc;

static void *fa_malloc(size_t n, void *ctx) {
  fail_alloc *a = ctx;
  a->calls++;
  if (a->countdown-- <= 0) return NULL;
  void *p = malloc(n);
  if (p) a->live++;
  return p;
}

static void *fa_realloc(void *p, size_t n, void *ctx) {
  fail_alloc *a = ctx;
  if (!p) return fa_malloc(n, ctx);
  a->calls++;
  if (a->countdown-- <= 0) return NULL;
  return realloc(p, n);
}

static void fa_free(void *p, void *ctx) {
  fail_alloc *a = ctx;
  if (p) {
    a->live--;
    free(p);
  }
}

static void test_failing_allocator(void **state) {
  (void)state;
  char err[ERRLEN];
  const sb_field f[] = {{"status", SB_FIELD_U8, 0},
                        {"id", SB_FIELD_FIXED, 16},
                        {"name", SB_FIELD_TEXT, 0},
                        {"body", SB_FIELD_REST, 0}};
  uint8_t wire[256];
  size_t wn;
  sb_schema *tmp;
  assert_int_equal(sb_schema_new(&tmp, f, 4, NULL, err, sizeof err), 0);
  assert_int_equal(sb_schema_serialize(tmp, wire, sizeof wire, &wn), 0);
  sb_schema_free(tmp);

  for (int which = 0; which < 2; which++) {
    long failures = 0;
    for (long budget = 0;; budget++) {
      if (budget > 100) fail_msg("%s never succeeded", which ? "deserialize" : "new");
      fail_alloc fa = {budget, 0, 0};
      sb_allocator a = {fa_malloc, fa_realloc, fa_free, &fa};
      sb_schema *s = (sb_schema *)&fa;
      err[0] = '\0';
      int rc = which ? sb_schema_deserialize(&s, wire, wn, &a, err, sizeof err)
                     : sb_schema_new(&s, f, 4, &a, err, sizeof err);
      if (rc == 0) {
        assert_non_null(s);
        assert_true(fa.calls > 0); /* the schema came from our allocator */
        assert_int_equal(sb_schema_count(s), 4);
        assert_string_equal(sb_schema_field(s, 2)->name, "name");
        /* The allocator struct was copied: it may go away before the schema. */
        memset(&a, 0, sizeof a);
        sb_schema_free(s);
        if (fa.live != 0) fail_msg("budget %ld: %ld allocations leaked", budget, fa.live);
        break;
      }
      failures++;
      if (rc != SB_ENOMEM) fail_msg("budget %ld: expected SB_ENOMEM, actual %d", budget, rc);
      assert_null(s);
      assert_true(err[0] != '\0');
      if (fa.live != 0) fail_msg("budget %ld: %ld allocations leaked", budget, fa.live);
    }
    assert_true(failures > 0);
  }
}

/* ---------------------------------------------------------------------------------------- */

static int load_vectors(void **state) {
  (void)state;
  char err[256];
  vectors = json_read_file(VECTORS_PATH, err, sizeof err);
  if (!vectors) {
    fprintf(stderr, "test_codec: cannot read %s: %s\n", VECTORS_PATH, err);
    return -1;
  }
  return 0;
}

static int free_vectors(void **state) {
  (void)state;
  json_free(vectors);
  vectors = NULL;
  return 0;
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_json_reader),
      cmocka_unit_test(test_vectors_present),
      cmocka_unit_test(test_valid_encode),
      cmocka_unit_test(test_valid_decode),
      cmocka_unit_test(test_valid_truncated_and_extended),
      cmocka_unit_test(test_decode_prefix),
      cmocka_unit_test(test_invalid_encode),
      cmocka_unit_test(test_invalid_decode),
      cmocka_unit_test(test_invalid_schema),
      cmocka_unit_test(test_schema_wire),
      cmocka_unit_test(test_invalid_schema_wire),
      cmocka_unit_test(test_error_messages),
      cmocka_unit_test(test_err_buffer_contract),
      cmocka_unit_test(test_null_and_edge_arguments),
      cmocka_unit_test(test_names_copied_and_bounded),
      cmocka_unit_test(test_varint_boundaries),
      cmocka_unit_test(test_varint_two_byte_model),
      cmocka_unit_test(test_integer_widths),
      cmocka_unit_test(test_failing_allocator),
  };
  return cmocka_run_group_tests(tests, load_vectors, free_vectors);
}
