/*
 * fuzz_codec.c — libFuzzer target for the schema codec (src/codec/codec.c).
 *
 * Input layout: bytes 0-1 are a big-endian length L; the next L bytes (fewer if the input is
 * shorter) are offered to sb_schema_deserialize; the bytes after them are a message. If the
 * schema is accepted, it must serialize back to exactly those L bytes (the wire form is
 * canonical) and the message is decoded with it; otherwise the message is decoded with one of
 * two fixed schemas holding every type (L odd: ending in a rest field; even: without one).
 *
 * Every input sits in its own exact-size heap buffer, so AddressSanitizer sees any read past
 * it. Whatever the bytes, the codec must:
 *   - fail only with SB_EPROTO and a NUL-terminated, non-empty message;
 *   - on success, hand out values that lie inside the input, text that is valid UTF-8, and
 *     values that re-encode (encoded_size, then encode into an exact-size buffer) to exactly
 *     the input: one encoding per message (rule M7);
 *   - agree with sb_schema_decode_prefix: the same success, or the same error, except that
 *     where decode_prefix stops short of the end decode reports exactly "N trailing bytes
 *     after the last field"; the prefix's values re-encode to that prefix.
 * Any difference aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "switchboard.h"
#include "ws/utf8.h"

#define CHECK(cond, ...)                                                                     \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      fprintf(stderr, "fuzz_codec: check failed: %s: ", #cond);                              \
      fprintf(stderr, __VA_ARGS__);                                                          \
      fprintf(stderr, "\n");                                                                 \
      abort();                                                                               \
    }                                                                                        \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static const sb_field fixed_with_rest[] = {
    {"a", SB_FIELD_U8, 0},    {"b", SB_FIELD_U16, 0},   {"c", SB_FIELD_U32, 0},
    {"d", SB_FIELD_U64, 0},   {"e", SB_FIELD_FIXED, 3}, {"f", SB_FIELD_BYTES, 0},
    {"g", SB_FIELD_TEXT, 0},  {"h", SB_FIELD_REST, 0},
};
static const sb_field fixed_without_rest[] = {
    {"t", SB_FIELD_TEXT, 0},  {"b", SB_FIELD_BYTES, 0}, {"n", SB_FIELD_U16, 0},
    {"id", SB_FIELD_FIXED, 2}, {"t2", SB_FIELD_TEXT, 0},
};

/* An error must be SB_EPROTO with a message that fits err[]. */
static void check_error(int rc, const char *err, size_t errlen, const char *what) {
  CHECK(rc == SB_EPROTO, "%s returned %d (%s)", what, rc, err);
  CHECK(memchr(err, '\0', errlen) != NULL, "%s: message not terminated", what);
  CHECK(err[0] != '\0', "%s: empty message", what);
}

/* Decoded values must lie inside in[0..len), text must be UTF-8, and the values must encode
 * back to exactly in[0..len). */
static void check_values(const sb_schema *s, const sb_value *v, const uint8_t *in, size_t len) {
  char err[160];
  size_t n = sb_schema_count(s), size = 0, written = 0;
  for (size_t i = 0; i < n; i++) {
    const sb_field *f = sb_schema_field(s, i);
    if (f->type < SB_FIELD_FIXED) continue;
    const uint8_t *d = v[i].data;
    CHECK(v[i].len == 0 || (d >= in && v[i].len <= len && d - in <= (ptrdiff_t)(len - v[i].len)),
          "field '%s' points outside the input", f->name);
    if (f->type == SB_FIELD_FIXED) CHECK(v[i].len == f->size, "field '%s': bad length", f->name);
    if (f->type == SB_FIELD_TEXT)
      CHECK(sb_utf8_valid(d, v[i].len), "field '%s': invalid UTF-8 accepted", f->name);
  }
  int rc = sb_schema_encoded_size(s, v, &size, err, sizeof err);
  CHECK(rc == 0, "encoded_size of decoded values failed: %s", err);
  CHECK(size == len, "encoded_size %zu, input %zu", size, len);
  uint8_t *out = malloc(len ? len : 1);
  CHECK(out != NULL, "out of memory");
  rc = sb_schema_encode(s, v, out, len, &written, err, sizeof err);
  CHECK(rc == 0, "re-encoding decoded values failed: %s", err);
  CHECK(written == len && (len == 0 || memcmp(out, in, len) == 0),
        "re-encoding differs from the input (non-canonical form accepted)");
  free(out);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  char err[160], err2[160];
  if (size < 2) return 0;
  size_t l = (size_t)data[0] << 8 | data[1];
  if (l > size - 2) l = size - 2;
  const uint8_t *wire_src = data + 2, *msg_src = data + 2 + l;
  size_t len = size - 2 - l;

  uint8_t *wire = malloc(l ? l : 1);
  CHECK(wire != NULL, "out of memory");
  if (l) memcpy(wire, wire_src, l);
  sb_schema *s = NULL;
  memset(err, 0, sizeof err);
  int rc = sb_schema_deserialize(&s, l ? wire : NULL, l, NULL, err, sizeof err);
  if (rc == 0) {
    /* The wire form is canonical: it serializes back to the same bytes. */
    size_t n = 0;
    CHECK(sb_schema_serialize(s, NULL, 0, &n) == 0, "serialize size failed");
    CHECK(n == l, "serialized size %zu, deserialized from %zu", n, l);
    uint8_t *again = malloc(n);
    CHECK(again != NULL, "out of memory");
    CHECK(sb_schema_serialize(s, again, n, &n) == 0, "serialize failed");
    CHECK(memcmp(again, wire, l) == 0, "schema wire form is not canonical");
    free(again);
    for (size_t i = 0; i < sb_schema_count(s); i++)
      CHECK(sb_schema_index(s, sb_schema_field(s, i)->name) == (int)i, "index of field %zu", i);
  } else {
    CHECK(s == NULL, "failed deserialize left a schema");
    check_error(rc, err, sizeof err, "sb_schema_deserialize");
    const sb_field *f = (l & 1) ? fixed_with_rest : fixed_without_rest;
    size_t count = (l & 1) ? sizeof fixed_with_rest / sizeof fixed_with_rest[0]
                           : sizeof fixed_without_rest / sizeof fixed_without_rest[0];
    rc = sb_schema_new(&s, f, count, NULL, err, sizeof err);
    CHECK(rc == 0 && s != NULL, "fixed schema refused: %s", err);
  }
  free(wire);

  uint8_t *in = malloc(len ? len : 1);
  CHECK(in != NULL, "out of memory");
  if (len) memcpy(in, msg_src, len);
  const uint8_t *inp = len ? in : NULL;
  sb_value v[SB_SCHEMA_MAX_FIELDS], w[SB_SCHEMA_MAX_FIELDS];
  memset(err, 0, sizeof err);
  memset(err2, 0, sizeof err2);
  rc = sb_schema_decode(s, inp, len, v, err, sizeof err);
  size_t used = (size_t)-1;
  int rc2 = sb_schema_decode_prefix(s, inp, len, w, &used, err2, sizeof err2);
  if (rc2 == 0 && used == len) {
    CHECK(rc == 0, "decode failed where decode_prefix took everything: %s", err);
    check_values(s, v, in, len);
    check_values(s, w, in, len);
  } else if (rc2 == 0) {
    /* Every field decoded and bytes were left over: for decode, that is "trailing". */
    char want[80];
    CHECK(used < len, "decode_prefix used %zu of %zu", used, len);
    snprintf(want, sizeof want, "%zu trailing byte%s after the last field", len - used,
             len - used == 1 ? "" : "s");
    check_error(rc, err, sizeof err, "sb_schema_decode");
    CHECK(strcmp(err, want) == 0, "expected \"%s\", actual \"%s\"", want, err);
    check_values(s, w, in, used);
  } else {
    check_error(rc2, err2, sizeof err2, "sb_schema_decode_prefix");
    check_error(rc, err, sizeof err, "sb_schema_decode");
    CHECK(strcmp(err, err2) == 0, "different errors: \"%s\" / \"%s\"", err, err2);
  }
  free(in);
  sb_schema_free(s);
  return 0;
}
