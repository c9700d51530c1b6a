/*
 * test_strbuf.c — the bounded string builder the examples share (examples/common/strbuf.h).
 *
 * What it must hold: nothing is ever written past the storage (each fixed buffer here sits in
 * a larger array whose tail is a canary, checked after every step); an append that does not
 * fit changes nothing and makes every later append fail too; the JSON it makes is valid for
 * any input (checked by a small strict JSON-string parser written here from RFC 8259 §7), the
 * log text has no control character and no byte that is not UTF-8, and its UTF-8 check agrees
 * with the library's validator (src/ws/utf8.h) on every sequence of up to three bytes.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "../../examples/common/strbuf.h"
#include "ws/utf8.h"

#define CANARY 0x5A
#define GUARD 64

static char arena[512 + GUARD];

/* A fixed strbuf of `size` bytes at the start of arena; the rest of arena is the canary. */
static void fixed(strbuf *b, size_t size) {
  memset(arena, CANARY, sizeof arena);
  strbuf_fixed(b, arena, size);
}

static void assert_canary(size_t size) {
  for (size_t i = size; i < sizeof arena; i++) {
    if ((unsigned char)arena[i] != CANARY)
      fail_msg("byte %zu past a buffer of %zu was written", i, size);
  }
}

/* RFC 8259 §7: a string is '"', then unescaped characters (U+0020.. but '"' and '\'), or
 * escapes (\" \\ \/ \b \f \n \r \t \uXXXX), then '"'. Decodes into out (the \u escapes
 * below U+0080 and U+FFFD only, all this builder makes) and returns the bytes consumed, or 0
 * if `s` is not exactly one such string. */
static size_t parse_json_string(const char *s, char *out, size_t *outlen) {
  size_t i = 0, o = 0;
  if (s[i++] != '"') return 0;
  for (;;) {
    unsigned char c = (unsigned char)s[i];
    if (c == '\0' || c < 0x20) return 0;
    if (c == '"') break;
    if (c != '\\') {
      size_t k = utf8_seq((const unsigned char *)s + i);
      if (!k) return 0;
      memcpy(out + o, s + i, k);
      o += k;
      i += k;
      continue;
    }
    c = (unsigned char)s[i + 1];
    if (c == '"' || c == '\\' || c == '/') {
      out[o++] = (char)c;
      i += 2;
    } else if (c == 'u') {
      unsigned v = 0;
      for (int j = 2; j < 6; j++) {
        char h = s[i + (size_t)j];
        int d = h >= '0' && h <= '9' ? h - '0' : h >= 'a' && h <= 'f' ? h - 'a' + 10 : -1;
        if (d < 0) return 0;
        v = v * 16 + (unsigned)d;
      }
      if (v < 0x80) {
        out[o++] = (char)v;
      } else if (v == 0xFFFD) {
        memcpy(out + o, "\xEF\xBF\xBD", 3);
        o += 3;
      } else {
        return 0;
      }
      i += 6;
    } else {
      return 0;
    }
  }
  *outlen = o;
  return i + 1;
}

static void test_fixed_fits_exactly_then_refuses(void **state) {
  (void)state;
  strbuf b;
  fixed(&b, 8); /* seven bytes of text and the NUL */
  assert_int_equal(STRBUF_LIT(&b, "abc"), 0);
  assert_int_equal(strbuf_add(&b, "defg", 4), 0);
  assert_string_equal(b.data, "abcdefg");
  assert_int_equal(b.len, 7);
  assert_false(b.overflow);
  assert_int_equal(strbuf_add(&b, "h", 1), -1);
  assert_true(b.overflow);
  assert_string_equal(b.data, "abcdefg");
  assert_int_equal(strbuf_add(&b, "", 0), -1); /* sticky: even what would fit */
  assert_canary(8);

  fixed(&b, 8);
  STRBUF_LIT(&b, "abcde");
  assert_int_equal(STRBUF_LIT(&b, "xyz"), -1); /* does not fit whole: nothing of it goes in */
  assert_string_equal(b.data, "abcde");
  assert_int_equal(STRBUF_LIT(&b, "z"), -1);
  assert_string_equal(b.data, "abcde");
  assert_canary(8);
}

/* The old examples' bug: appending piece after piece past the end. */
static void test_many_appends_never_pass_the_end(void **state) {
  (void)state;
  for (size_t size = 1; size <= 300; size += 7) {
    strbuf b;
    fixed(&b, size);
    for (int i = 0; i < 200; i++) {
      strbuf_addf(&b, "%s{\"id\":", i ? "," : "");
      strbuf_json(&b, "\x01\x02\x03\"\\");
      strbuf_addf(&b, ",\"members\":%d}", i);
      strbuf_log(&b, "\n\x1b");
      strbuf_segment(&b, "a/b c");
    }
    assert_true(b.overflow);
    assert_true(b.len < size);
    assert_int_equal(strlen(b.data), b.len);
    assert_canary(size);
  }
}

static void test_addf_measures_first(void **state) {
  (void)state;
  strbuf b;
  fixed(&b, 16);
  assert_int_equal(strbuf_addf(&b, "%d-%s", 42, "abc"), 0);
  assert_string_equal(b.data, "42-abc");
  assert_int_equal(strbuf_addf(&b, "%s", "0123456789"), -1); /* 16 bytes with the NUL: no */
  assert_string_equal(b.data, "42-abc");
  assert_true(b.overflow);
  assert_canary(16);
}

static void test_heap_grows_to_its_limit(void **state) {
  (void)state;
  strbuf b;
  strbuf_heap(&b, 1000);
  assert_null(b.data);
  for (int i = 0; i < 99; i++) assert_int_equal(STRBUF_LIT(&b, "0123456789"), 0);
  assert_int_equal(b.len, 990);
  assert_int_equal(strbuf_addf(&b, "%s", "012345678"), 0); /* 999 and the NUL: the limit */
  assert_int_equal(b.len, 999);
  assert_int_equal(STRBUF_LIT(&b, "x"), -1);
  assert_true(b.overflow);
  assert_int_equal(strlen(b.data), 999);
  assert_true(b.cap <= 1000);
  strbuf_free(&b);
  assert_null(b.data);

  strbuf_heap(&b, 64);
  assert_int_equal(strbuf_add(&b, "x", SIZE_MAX), -1); /* a length that would wrap */
  strbuf_free(&b);
  strbuf_heap(&b, 1 << 20);
  for (int i = 0; i < 20000; i++) assert_int_equal(strbuf_json(&b, "\x01"), 0);
  assert_int_equal(b.len, 20000 * 8);
  strbuf_free(&b);
}

static void test_json_escapes(void **state) {
  (void)state;
  static const struct {
    const char *in, *out;
  } v[] = {
      {"", "\"\""},
      {"lobby", "\"lobby\""},
      {"say \"hi\"\\", "\"say \\\"hi\\\"\\\\\""},
      {"\x01\n\x1f", "\"\\u0001\\u000a\\u001f\""},
      {"\x7f", "\"\x7f\""},
      {"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80",
       "\"caf\xC3\xA9 \xE2\x82\xAC \xF0\x9F\x98\x80\""},
      {"\xFF", "\"\\ufffd\""},
      {"a\xC3", "\"a\\ufffd\""},                                /* cut short by the end */
      {"\xC0\xAF", "\"\\ufffd\\ufffd\""},                       /* overlong '/' */
      {"\xED\xA0\x80", "\"\\ufffd\\ufffd\\ufffd\""},            /* a surrogate */
      {"\xF4\x90\x80\x80", "\"\\ufffd\\ufffd\\ufffd\\ufffd\""}, /* past U+10FFFF */
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    char mem[128];
    strbuf b;
    strbuf_fixed(&b, mem, sizeof mem);
    assert_int_equal(strbuf_json(&b, v[i].in), 0);
    assert_string_equal(b.data, v[i].out);
    assert_true(b.len <= STRBUF_JSON_MAX(strlen(v[i].in)));
  }
}

/* Every string of one or two bytes, and many longer ones: valid JSON that decodes to the
 * input (bytes that are not UTF-8 to U+FFFD each), within STRBUF_JSON_MAX. */
static void test_json_is_always_valid(void **state) {
  (void)state;
  char in[8], mem[64], dec[64];
  uint32_t x = 12345;
  for (unsigned n = 0; n < 70000; n++) {
    size_t len;
    if (n < 256) {
      len = 1;
      in[0] = (char)n;
    } else if (n < 256 + 65536) {
      len = 2;
      in[0] = (char)((n - 256) >> 8);
      in[1] = (char)(n - 256);
    } else {
      len = 6;
      for (size_t j = 0; j < len; j++) {
        x = x * 1103515245u + 12345u;
        in[j] = (char)(x >> 16);
      }
    }
    in[len] = '\0';
    len = strlen(in); /* a NUL inside ends it */
    strbuf b;
    strbuf_fixed(&b, mem, sizeof mem);
    assert_int_equal(strbuf_json(&b, in), 0);
    assert_true(b.len <= STRBUF_JSON_MAX(len));
    size_t dlen = 0;
    if (parse_json_string(b.data, dec, &dlen) != b.len) fail_msg("not one JSON string: %s", b.data);
    if (utf8_valid(in)) {
      assert_int_equal(dlen, len);
      assert_memory_equal(dec, in, len);
    }
  }
}

static void test_segment(void **state) {
  (void)state;
  char mem[128];
  strbuf b;
  strbuf_fixed(&b, mem, sizeof mem);
  assert_int_equal(strbuf_segment(&b, "a-b.c_d~E9"), 0);
  assert_int_equal(strbuf_segment(&b, "/?#% \n\xC3\xA9"), 0);
  assert_string_equal(b.data, "a-b.c_d~E9%2F%3F%23%25%20%0A%C3%A9");
}

static void test_log_escapes(void **state) {
  (void)state;
  static const struct {
    const char *in, *out;
  } v[] = {
      {"/rooms/lobby (alice)", "/rooms/lobby (alice)"},
      {"a\nGET /forged", "a\\x0aGET /forged"},
      {"\r\t\x1b[2J\x7f", "\\x0d\\x09\\x1b[2J\\x7f"},
      {"back\\slash", "back\\x5cslash"},            /* so that \x0a in a log is ours */
      {"\xC2\x85\xC2\x9B", "\\xc2\\x85\\xc2\\x9b"}, /* C1 controls: NEL, CSI */
      {"\xC2\xA0"
       "caf\xC3\xA9 \xE2\x80\xA8",
       "\xC2\xA0"
       "caf\xC3\xA9 \xE2\x80\xA8"},
      {"\xFF\xC3(", "\\xff\\xc3("},
  };
  for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) {
    char mem[128];
    strbuf b;
    strbuf_fixed(&b, mem, sizeof mem);
    assert_int_equal(strbuf_log(&b, v[i].in), 0);
    assert_string_equal(b.data, v[i].out);
  }
  /* A long one keeps what fits, in whole escapes. */
  strbuf b;
  fixed(&b, 10);
  assert_int_equal(strbuf_log(&b, "ab\n\n\n\n"), -1);
  assert_string_equal(b.data, "ab\\x0a");
  assert_true(b.overflow);
  assert_canary(10);
}

/* Whatever the input, the log text has no control character and is UTF-8. */
static void test_log_is_always_clean(void **state) {
  (void)state;
  char in[3], mem[64];
  for (unsigned n = 0; n < 65536; n++) {
    in[0] = (char)(n >> 8);
    in[1] = (char)n;
    in[2] = '\0';
    strbuf b;
    strbuf_fixed(&b, mem, sizeof mem);
    assert_int_equal(strbuf_log(&b, in), 0);
    for (size_t j = 0; j < b.len; j++) {
      unsigned char c = (unsigned char)b.data[j];
      if (c < 0x20 || c == 0x7f) fail_msg("control byte %02x in the log text of %04x", c, n);
    }
    if (!utf8_valid(b.data)) fail_msg("the log text of %04x is not UTF-8", n);
    if (strstr(b.data, "\xC2\x80") || strstr(b.data, "\xC2\x9F"))
      fail_msg("a C1 control for %04x", n);
  }
}

/* utf8_seq against the library's validator, on every string of one to three bytes (without
 * NUL) and on four-byte strings around every boundary of the table. */
static void test_utf8_agrees_with_the_library(void **state) {
  (void)state;
  unsigned char s[5];
  for (uint32_t v = 1; v < (1u << 24); v++) {
    size_t n = v < 0x100 ? 1 : v < 0x10000 ? 2 : 3;
    for (size_t j = 0; j < n; j++) s[j] = (unsigned char)(v >> (8 * (n - 1 - j)));
    if (memchr(s, 0, n)) continue;
    s[n] = 0;
    if (utf8_valid((const char *)s) != sb_utf8_valid(s, n))
      fail_msg("disagree on %06x (%zu bytes)", v, n);
  }
  static const unsigned char firsts[] = {0xEF, 0xF0, 0xF1, 0xF3, 0xF4, 0xF5, 0xF8, 0xFF};
  static const unsigned char conts[] = {0x01, 0x7F, 0x80, 0x8F, 0x90, 0xBF, 0xC0, 0xFF};
  for (size_t a = 0; a < sizeof firsts; a++)
    for (size_t b = 0; b < sizeof conts; b++)
      for (size_t c = 0; c < sizeof conts; c++)
        for (size_t d = 0; d < sizeof conts; d++) {
          const unsigned char t[5] = {firsts[a], conts[b], conts[c], conts[d], 0};
          memcpy(s, t, sizeof t);
          if (utf8_valid((const char *)s) != sb_utf8_valid(s, 4))
            fail_msg("disagree on %02x %02x %02x %02x", s[0], s[1], s[2], s[3]);
        }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_fixed_fits_exactly_then_refuses),
      cmocka_unit_test(test_many_appends_never_pass_the_end),
      cmocka_unit_test(test_addf_measures_first),
      cmocka_unit_test(test_heap_grows_to_its_limit),
      cmocka_unit_test(test_json_escapes),
      cmocka_unit_test(test_json_is_always_valid),
      cmocka_unit_test(test_segment),
      cmocka_unit_test(test_log_escapes),
      cmocka_unit_test(test_log_is_always_clean),
      cmocka_unit_test(test_utf8_agrees_with_the_library),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
