/*
 * test_utf8.c — the incremental UTF-8 validator (src/ws/utf8.h).
 *
 * The vectors are Markus Kuhn's "UTF-8 decoder capability and stress test" categories and the
 * Autobahn TestSuite's case 6.x payloads. Every expected verdict was written from the Unicode
 * rules (Unicode 15, table 3-7 "Well-Formed UTF-8 Byte Sequences"; RFC 3629 §4), never taken
 * from what the code under test returns:
 *
 *   code points        first   second  third   fourth
 *   U+0000..U+007F     00..7F
 *   U+0080..U+07FF     C2..DF  80..BF
 *   U+0800..U+0FFF     E0      A0..BF  80..BF
 *   U+1000..U+CFFF     E1..EC  80..BF  80..BF
 *   U+D000..U+D7FF     ED      80..9F  80..BF
 *   U+E000..U+FFFF     EE..EF  80..BF  80..BF
 *   U+10000..U+3FFFF   F0      90..BF  80..BF  80..BF
 *   U+40000..U+FFFFF   F1..F3  80..BF  80..BF  80..BF
 *   U+100000..U+10FFFF F4      80..8F  80..BF  80..BF
 *
 * Fail-fast means: the state becomes SB_UTF8_REJECT at the first byte that is not allowed by
 * this table in its position, which is the earliest byte at which no continuation of the
 * prefix could be valid. Each vector carries that index (or "valid", or "incomplete": valid so
 * far but ending inside a sequence), and is checked whole, byte by byte, at every prefix, split
 * at every position into two feeds and (for short ones) into three, and inside ASCII context.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "common/strbuf.h"
#include "ws/utf8.h"

#define V (-1L)   /* complete and valid */
#define INC (-2L) /* valid so far, but ends inside a sequence */

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                    */
/* ---------------------------------------------------------------------------------------- */

static const char *verdict_name(long v) {
  static char buf[4][48];
  static int next;
  char *b = buf[next++ & 3];
  if (v == V)
    return "valid (ACCEPT)";
  if (v == INC)
    return "incomplete (inside a sequence)";
  snprintf(b, 48, "REJECT at byte %ld", v);
  return b;
}

/* Parses "ce ba e1" into bytes. Returns the count. */
static size_t unhex(const char *hex, uint8_t *out, size_t cap) {
  size_t n = 0;
  while (*hex) {
    if (*hex == ' ') {
      hex++;
      continue;
    }
    unsigned v;
    if (sscanf(hex, "%2x", &v) != 1 || n == cap)
      fail_msg("bad hex in test vector: %s", hex);
    out[n++] = (uint8_t)v;
    hex += 2;
  }
  return n;
}

/* The bytes in hex, space-separated; as many as fit, then "..." (cap > 4). */
static void hexdump(const uint8_t *s, size_t n, char *out, size_t cap) {
  sb_strbuf sb;
  sb_strbuf_init(&sb, out, cap - (sizeof "..." - 1)); /* room kept for "..." */
  for (size_t i = 0; i < n && sb_strbuf_appendf(&sb, "%s%02x", i ? " " : "", s[i]) == 0; i++) {}
  if (sb_strbuf_overflowed(&sb)) memcpy(out + sb.len, "...", sizeof "...");
}

/* Exact-size heap copy, so that AddressSanitizer catches any read past the end. */
static uint8_t *dup_exact(const uint8_t *s, size_t n) {
  uint8_t *p = malloc(n ? n : 1);
  assert_non_null(p);
  if (n)
    memcpy(p, s, n);
  return p;
}

static sb_utf8_state feed(sb_utf8_state st, const uint8_t *s, size_t n) {
  uint8_t *c = dup_exact(s, n);
  sb_utf8_state r = sb_utf8_feed(st, c, n);
  free(c);
  return r;
}

/* The verdict class of a final state: V, INC, or 0 for REJECT (index unknown here). */
static long state_class(sb_utf8_state st) {
  if (st == SB_UTF8_ACCEPT)
    return V;
  if (st == SB_UTF8_REJECT)
    return 0;
  return INC;
}

static long class_of(long verdict) { return verdict >= 0 ? 0 : verdict; }

static const char *class_name(long c) { return c == 0 ? "REJECT" : verdict_name(c); }

/*
 * The reference: table 3-7 applied byte by byte. Returns V, INC, or the index of the first byte
 * that the table does not allow in its position.
 */
static long ref_verdict(const uint8_t *s, size_t n) {
  size_t i = 0;
  while (i < n) {
    uint8_t b = s[i];
    int need;
    uint8_t lo = 0x80, hi = 0xBF;
    if (b <= 0x7F) {
      i++;
      continue;
    } else if (b >= 0xC2 && b <= 0xDF) {
      need = 1;
    } else if (b == 0xE0) {
      need = 2;
      lo = 0xA0;
    } else if (b >= 0xE1 && b <= 0xEC) {
      need = 2;
    } else if (b == 0xED) {
      need = 2;
      hi = 0x9F;
    } else if (b == 0xEE || b == 0xEF) {
      need = 2;
    } else if (b == 0xF0) {
      need = 3;
      lo = 0x90;
    } else if (b >= 0xF1 && b <= 0xF3) {
      need = 3;
    } else if (b == 0xF4) {
      need = 3;
      hi = 0x8F;
    } else {
      return (long)i; /* 80..BF (lone continuation), C0, C1, F5..FF */
    }
    i++;
    for (int k = 0; k < need; k++, i++) {
      if (i == n)
        return INC;
      if (s[i] < lo || s[i] > hi)
        return (long)i;
      lo = 0x80;
      hi = 0xBF;
    }
  }
  return V;
}

/* Encodes a code point (any value below 2^21, surrogates included) the way RFC 2279 would. */
static size_t encode(uint32_t cp, uint8_t *out) {
  if (cp < 0x80) {
    out[0] = (uint8_t)cp;
    return 1;
  }
  if (cp < 0x800) {
    out[0] = (uint8_t)(0xC0 | (cp >> 6));
    out[1] = (uint8_t)(0x80 | (cp & 0x3F));
    return 2;
  }
  if (cp < 0x10000) {
    out[0] = (uint8_t)(0xE0 | (cp >> 12));
    out[1] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
    out[2] = (uint8_t)(0x80 | (cp & 0x3F));
    return 3;
  }
  out[0] = (uint8_t)(0xF0 | (cp >> 18));
  out[1] = (uint8_t)(0x80 | ((cp >> 12) & 0x3F));
  out[2] = (uint8_t)(0x80 | ((cp >> 6) & 0x3F));
  out[3] = (uint8_t)(0x80 | (cp & 0x3F));
  return 4;
}

/* Encodes cp in exactly `len` bytes (an overlong form when len is more than needed). */
static void encode_len(uint32_t cp, size_t len, uint8_t *out) {
  static const uint8_t lead[5] = {0, 0, 0xC0, 0xE0, 0xF0};
  for (size_t i = len - 1; i > 0; i--) {
    out[i] = (uint8_t)(0x80 | (cp & 0x3F));
    cp >>= 6;
  }
  out[0] = (uint8_t)(lead[len] | cp);
}

/*
 * The full check of one input against its expected verdict. `expect` is V, INC or the index of
 * the byte at which the state must become SB_UTF8_REJECT.
 */
static void check_bytes(const char *name, const uint8_t *s, size_t n, long expect) {
  char hx[200];
  hexdump(s, n, hx, sizeof hx);

  /* Guard the expectations themselves: they must agree with table 3-7. */
  long ref = ref_verdict(s, n);
  if (ref != expect)
    fail_msg("%s [%s]: the test vector's expectation (%s) disagrees with table 3-7 (%s)", name,
             hx, verdict_name(expect), verdict_name(ref));

  /* sb_utf8_valid. */
  uint8_t *c = dup_exact(s, n);
  int valid = sb_utf8_valid(c, n);
  free(c);
  if (valid != (expect == V))
    fail_msg("%s [%s]: sb_utf8_valid: expected %d, actual %d", name, hx, expect == V, valid);

  /* One feed. */
  long whole = state_class(feed(SB_UTF8_ACCEPT, s, n));
  if (whole != class_of(expect))
    fail_msg("%s [%s]: sb_utf8_feed whole: expected %s, actual %s", name, hx,
             class_name(class_of(expect)), class_name(whole));

  /* Byte by byte: REJECT exactly at `expect`, and it stays REJECT. */
  sb_utf8_state st = SB_UTF8_ACCEPT;
  long first_reject = -1;
  for (size_t i = 0; i < n; i++) {
    sb_utf8_state prev = st;
    st = feed(st, s + i, 1);
    if (st == SB_UTF8_REJECT && first_reject < 0)
      first_reject = (long)i;
    if (prev == SB_UTF8_REJECT && st != SB_UTF8_REJECT)
      fail_msg("%s [%s]: byte by byte: state left REJECT at byte %zu (state 0x%x)", name, hx,
               i, (unsigned)st);
  }
  long bytewise = first_reject >= 0 ? first_reject : state_class(st);
  if (bytewise != expect)
    fail_msg("%s [%s]: byte by byte: expected %s, actual %s", name, hx, verdict_name(expect),
             verdict_name(bytewise));

  /* Every prefix fed in one piece: REJECT iff it includes the offending byte. */
  for (size_t k = 0; k <= n; k++) {
    long want = ref_verdict(s, k);
    long got = state_class(feed(SB_UTF8_ACCEPT, s, k));
    if (got != class_of(want))
      fail_msg("%s [%s]: prefix of %zu bytes in one feed: expected %s, actual %s", name, hx, k,
               class_name(class_of(want)), class_name(got));
  }

  /* Split at every position into two feeds. */
  for (size_t i = 0; i <= n; i++) {
    sb_utf8_state a = feed(SB_UTF8_ACCEPT, s, i);
    long got = state_class(feed(a, s + i, n - i));
    if (got != class_of(expect))
      fail_msg("%s [%s]: split at %zu: expected %s, actual %s", name, hx, i,
               class_name(class_of(expect)), class_name(got));
  }

  /* Split at every pair of positions into three feeds. */
  if (n <= 40) {
    for (size_t i = 0; i <= n; i++) {
      for (size_t j = i; j <= n; j++) {
        sb_utf8_state a = feed(SB_UTF8_ACCEPT, s, i);
        a = feed(a, s + i, j - i);
        long got = state_class(feed(a, s + j, n - j));
        if (got != class_of(expect))
          fail_msg("%s [%s]: split at %zu and %zu: expected %s, actual %s", name, hx, i, j,
                   class_name(class_of(expect)), class_name(got));
      }
    }
  }

  /* Zero-length feeds change nothing. */
  sb_utf8_state a = feed(SB_UTF8_ACCEPT, s, n);
  sb_utf8_state z = sb_utf8_feed(a, NULL, 0);
  if (z != a)
    fail_msg("%s [%s]: a zero-length feed changed the state: expected 0x%x, actual 0x%x", name,
             hx, (unsigned)a, (unsigned)z);
}

static void check_hex(const char *name, const char *hex, long expect) {
  uint8_t buf[512];
  size_t n = unhex(hex, buf, sizeof buf);
  check_bytes(name, buf, n, expect);
}

/* ---------------------------------------------------------------------------------------- */
/* The vectors                                                                                */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
  const char *name;
  const char *hex;
  long expect;
} vector;

#define KOSME "ce ba e1 bd b9 cf 83 ce bc ce b5" /* κόσμε */

static const vector vectors[] = {
    /* Kuhn 1 / Autobahn 6.5: correct text. */
    {"kuhn 1 kosme", KOSME, V},
    {"autobahn 6.1 empty", "", V},
    {"autobahn 6.2 Hello-µ@ßöäüàá-UTF-8!!",
     "48 65 6c 6c 6f 2d c2 b5 40 c3 9f c3 b6 c3 a4 c3 bc c3 a0 c3 a1 2d 55 54 46 2d 38 21 21", V},
    {"ascii", "48 65 6c 6c 6f 2c 20 77 6f 72 6c 64 21 0a 7e 7f 00", V},
    {"2-byte U+00E9", "c3 a9", V},
    {"3-byte U+20AC", "e2 82 ac", V},
    {"4-byte U+1F600", "f0 9f 98 80", V},
    {"mixed 1/2/3/4", "41 c3 a9 e2 82 ac f0 9f 98 80 5a", V},

    /* Autobahn 6.3: an encoded surrogate after valid text. */
    {"autobahn 6.3.1 kosme + U+D800 + edited",
     KOSME " ed a0 80 65 64 69 74 65 64", 12},
    {"kosme(short) + U+D800 + edited (brief)",
     "ce ba e1 bd b9 ce bc ce b5 ed a0 80 65 64 69 74 65 64", 10},

    /* Autobahn 6.4: fail fast on a code point past U+10FFFF in the middle of a message. */
    {"autobahn 6.4.1 kosme + F4 90 80 80 + edited", KOSME " f4 90 80 80 65 64 69 74 65 64", 12},
    {"autobahn 6.4.2 F4 90 alone", "f4 90", 1},
    {"autobahn 6.4.3 kosme + F4 90 80 80 + kosme", KOSME " f4 90 80 80 " KOSME, 12},

    /* Autobahn 6.6: every prefix of κόσμε. */
    {"autobahn 6.6.1", "ce", INC},
    {"autobahn 6.6.2", "ce ba", V},
    {"autobahn 6.6.3", "ce ba e1", INC},
    {"autobahn 6.6.4", "ce ba e1 bd", INC},
    {"autobahn 6.6.5", "ce ba e1 bd b9", V},
    {"autobahn 6.6.6", "ce ba e1 bd b9 cf", INC},
    {"autobahn 6.6.7", "ce ba e1 bd b9 cf 83", V},
    {"autobahn 6.6.8", "ce ba e1 bd b9 cf 83 ce", INC},
    {"autobahn 6.6.9", "ce ba e1 bd b9 cf 83 ce bc", V},
    {"autobahn 6.6.10", "ce ba e1 bd b9 cf 83 ce bc ce", INC},
    {"autobahn 6.6.11", KOSME, V},

    /* Kuhn 2.1 / Autobahn 6.7-6.8: first possible sequence of each length. */
    {"first 1-byte U+0000", "00", V},
    {"first 2-byte U+0080", "c2 80", V},
    {"first 3-byte U+0800", "e0 a0 80", V},
    {"first 4-byte U+10000", "f0 90 80 80", V},
    {"first 5-byte U+200000", "f8 88 80 80 80", 0},
    {"first 6-byte U+4000000", "fc 84 80 80 80 80", 0},

    /* Kuhn 2.2 / Autobahn 6.9-6.10: last possible sequence of each length. */
    {"last 1-byte U+007F", "7f", V},
    {"last 2-byte U+07FF", "df bf", V},
    {"last 3-byte U+FFFF", "ef bf bf", V},
    {"last 4-byte U+1FFFFF", "f7 bf bf bf", 0},
    {"last 5-byte U+3FFFFFF", "fb bf bf bf bf", 0},
    {"last 6-byte U+7FFFFFFF", "fd bf bf bf bf bf", 0},

    /* Kuhn 2.3 / Autobahn 6.11: other boundaries. */
    {"U+D7FF", "ed 9f bf", V},
    {"U+E000", "ee 80 80", V},
    {"U+FFFD", "ef bf bd", V},
    {"U+10FFFF", "f4 8f bf bf", V},
    {"U+110000", "f4 90 80 80", 1},
    {"U+13FFFF", "f4 bf bf bf", 1},
    {"U+140000 (F5)", "f5 80 80 80", 0},

    /* Kuhn 3.1 / Autobahn 6.12: unexpected continuation bytes. */
    {"continuation 80", "80", 0},
    {"continuation bf", "bf", 0},
    {"continuation 80 bf", "80 bf", 0},
    {"continuation 80 bf 80", "80 bf 80", 0},
    {"continuation 80 bf 80 bf", "80 bf 80 bf", 0},
    {"continuation 80 bf 80 bf 80", "80 bf 80 bf 80", 0},
    {"continuation 80 bf 80 bf 80 bf", "80 bf 80 bf 80 bf", 0},
    {"continuation 80 bf 80 bf 80 bf 80", "80 bf 80 bf 80 bf 80", 0},
    {"continuation after ASCII", "41 80", 1},
    {"continuation after 2-byte", "c3 a9 80", 2},
    {"continuation after 3-byte", "e2 82 ac bf", 3},
    {"continuation after 4-byte", "f0 9f 98 80 80", 4},
    {"5th byte of a 4-byte lead", "f1 80 80 80 80", 4},

    /* Kuhn 3.3 / Autobahn 6.14: sequences with the last continuation byte missing. */
    {"missing last: C0 (U+0000, 2 bytes)", "c0", 0},
    {"missing last: E0 80 (U+0000, 3 bytes)", "e0 80", 1},
    {"missing last: F0 80 80 (U+0000, 4 bytes)", "f0 80 80", 1},
    {"missing last: F8 80 80 80", "f8 80 80 80", 0},
    {"missing last: FC 80 80 80 80", "fc 80 80 80 80", 0},
    {"missing last: DF (U+07FF)", "df", INC},
    {"missing last: EF BF (U+FFFF)", "ef bf", INC},
    {"missing last: F7 BF BF (U+1FFFFF)", "f7 bf bf", 0},
    {"missing last: FB BF BF BF", "fb bf bf bf", 0},
    {"missing last: FD BF BF BF BF", "fd bf bf bf bf", 0},
    {"truncated at end: C2", "c2", INC},
    {"truncated at end: E0 A0", "e0 a0", INC},
    {"truncated at end: E1", "e1", INC},
    {"truncated at end: ED 9F", "ed 9f", INC},
    {"truncated at end: F0 90 80", "f0 90 80", INC},
    {"truncated at end: F1", "f1", INC},
    {"truncated at end: F3 BF BF", "f3 bf bf", INC},
    {"truncated at end: F4 8F BF", "f4 8f bf", INC},
    {"truncated at end after text", "41 42 e2 82", INC},
    {"truncated then ASCII (2-byte)", "c2 41", 1},
    {"truncated then ASCII (3-byte)", "e2 82 41", 2},
    {"truncated then ASCII (4-byte)", "f0 9f 98 41", 3},
    {"truncated then new lead", "e2 82 e2 82 ac", 2},

    /* Kuhn 3.4 / Autobahn 6.15: concatenation of the incomplete sequences. */
    {"concatenated incomplete sequences",
     "c0 e0 80 f0 80 80 f8 80 80 80 fc 80 80 80 80 df ef bf f7 bf bf fb bf bf bf fd bf bf bf bf",
     0},
    {"concatenated incomplete valid leads", "df ef bf f4 8f bf", 1},

    /* Kuhn 3.5 / Autobahn 6.16: impossible bytes. */
    {"impossible FE", "fe", 0},
    {"impossible FF", "ff", 0},
    {"impossible FE FE FF FF", "fe fe ff ff", 0},
    {"impossible FF after text", "61 62 63 ff", 3},

    /* Kuhn 4.1 / Autobahn 6.17: overlong '/'. */
    {"overlong '/' 2 bytes", "c0 af", 0},
    {"overlong '/' 3 bytes", "e0 80 af", 1},
    {"overlong '/' 4 bytes", "f0 80 80 af", 1},
    {"overlong '/' 5 bytes", "f8 80 80 80 af", 0},
    {"overlong '/' 6 bytes", "fc 80 80 80 80 af", 0},

    /* Kuhn 4.2 / Autobahn 6.18: the largest overlong forms. */
    {"max overlong 2 bytes (U+007F)", "c1 bf", 0},
    {"max overlong 3 bytes (U+07FF)", "e0 9f bf", 1},
    {"max overlong 4 bytes (U+FFFF)", "f0 8f bf bf", 1},
    {"max overlong 5 bytes (U+1FFFFF)", "f8 87 bf bf bf", 0},
    {"max overlong 6 bytes (U+3FFFFFF)", "fc 83 bf bf bf bf", 0},

    /* Kuhn 4.3 / Autobahn 6.19: overlong NUL. */
    {"overlong NUL 2 bytes", "c0 80", 0},
    {"overlong NUL 3 bytes", "e0 80 80", 1},
    {"overlong NUL 4 bytes", "f0 80 80 80", 1},
    {"overlong NUL 5 bytes", "f8 80 80 80 80", 0},
    {"overlong NUL 6 bytes", "fc 80 80 80 80 80", 0},

    /* Kuhn 5.1 / Autobahn 6.20: single UTF-16 surrogates. */
    {"surrogate U+D800", "ed a0 80", 1},
    {"surrogate U+DB7F", "ed ad bf", 1},
    {"surrogate U+DB80", "ed ae 80", 1},
    {"surrogate U+DBFF", "ed af bf", 1},
    {"surrogate U+DC00", "ed b0 80", 1},
    {"surrogate U+DF80", "ed be 80", 1},
    {"surrogate U+DFFF", "ed bf bf", 1},
    {"surrogate after text", "61 ed a0 80", 2},

    /* Kuhn 5.2 / Autobahn 6.21: paired UTF-16 surrogates. */
    {"pair U+D800 U+DC00", "ed a0 80 ed b0 80", 1},
    {"pair U+D800 U+DFFF", "ed a0 80 ed bf bf", 1},
    {"pair U+DB7F U+DC00", "ed ad bf ed b0 80", 1},
    {"pair U+DB7F U+DFFF", "ed ad bf ed bf bf", 1},
    {"pair U+DB80 U+DC00", "ed ae 80 ed b0 80", 1},
    {"pair U+DB80 U+DFFF", "ed ae 80 ed bf bf", 1},
    {"pair U+DBFF U+DC00", "ed af bf ed b0 80", 1},
    {"pair U+DBFF U+DFFF", "ed af bf ed bf bf", 1},

    /* Kuhn 5.3 / Autobahn 6.22: noncharacters are valid UTF-8. */
    {"U+FFFE", "ef bf be", V},
    {"U+FFFF", "ef bf bf", V},
    {"U+FDD0", "ef b7 90", V},
    {"U+FDEF", "ef b7 af", V},
    {"U+1FFFE", "f0 9f bf be", V},
    {"U+10FFFE", "f4 8f bf be", V},

    /* Autobahn 6.23: U+FFFD and NUL inside text. */
    {"U+FFFD", "ef bf bd", V},
    {"NUL inside text", "61 00 62", V},

    /* C0/C1: the lead bytes C0 and C1 never occur; the C1 control characters are valid. */
    {"lead C0 alone", "c0", 0},
    {"lead C1 alone", "c1", 0},
    {"lead C0 after text", "61 62 c0 80", 2},
    {"C1 control U+0080", "c2 80", V},
    {"C1 control U+009F", "c2 9f", V},
    {"C0 controls", "00 01 09 0a 0d 1b 1f", V},
};

static void test_kuhn_autobahn_vectors(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof vectors / sizeof vectors[0]; i++)
    check_hex(vectors[i].name, vectors[i].hex, vectors[i].expect);
}

/* Every byte on its own (Kuhn 3.1, 3.3, 3.5). */
static void test_every_single_byte(void **state) {
  (void)state;
  for (unsigned b = 0; b < 256; b++) {
    long expect;
    if (b <= 0x7F)
      expect = V;
    else if (b <= 0xC1) /* 80..BF lone continuation, C0/C1 overlong leads */
      expect = 0;
    else if (b <= 0xF4) /* a valid lead byte waiting for its continuation */
      expect = INC;
    else /* F5..FF */
      expect = 0;
    char name[64];
    snprintf(name, sizeof name, "single byte %02x", b);
    uint8_t s = (uint8_t)b;
    check_bytes(name, &s, 1, expect);
  }
}

/* All 64 continuation bytes in a row (Kuhn 3.1.9). */
static void test_all_continuation_bytes(void **state) {
  (void)state;
  uint8_t s[64];
  for (int i = 0; i < 64; i++)
    s[i] = (uint8_t)(0x80 + i);
  check_bytes("all 64 continuation bytes", s, 64, 0);
}

/* Kuhn 3.2 / Autobahn 6.13: every lead byte followed by a space. */
static void test_lonely_start_bytes(void **state) {
  (void)state;
  for (unsigned b = 0; b < 256; b++) {
    long expect;
    if (b <= 0x7F)
      expect = V;
    else if (b <= 0xC1)
      expect = 0;
    else if (b <= 0xF4)
      expect = 1; /* the space is not a continuation byte */
    else
      expect = 0;
    char name[64];
    snprintf(name, sizeof name, "lead %02x followed by a space", b);
    uint8_t s[2] = {(uint8_t)b, 0x20};
    check_bytes(name, s, 2, expect);
  }
  /* Kuhn 3.2.1: all 32 two-byte leads, each followed by a space, in one string. */
  uint8_t s[64];
  for (int i = 0; i < 32; i++) {
    s[2 * i] = (uint8_t)(0xC0 + i);
    s[2 * i + 1] = 0x20;
  }
  check_bytes("kuhn 3.2.1 C0..DF each followed by a space", s, 64, 0);
  check_bytes("kuhn 3.2.1 from C2", s + 4, 60, 1);
}

/* Every Unicode scalar value, encoded by the table, is valid — with its neighbours too. */
static void test_every_scalar_value(void **state) {
  (void)state;
  uint8_t buf[16];
  for (uint32_t cp = 0; cp <= 0x10FFFF; cp++) {
    if (cp >= 0xD800 && cp <= 0xDFFF)
      continue;
    size_t n = encode(cp, buf);
    uint8_t *c = dup_exact(buf, n);
    int ok = sb_utf8_valid(c, n);
    sb_utf8_state st = SB_UTF8_ACCEPT;
    for (size_t i = 0; i < n; i++)
      st = sb_utf8_feed(st, c + i, 1);
    free(c);
    if (!ok || st != SB_UTF8_ACCEPT)
      fail_msg("U+%04X (%zu bytes): expected valid, sb_utf8_valid=%d, byte-by-byte state 0x%x",
               (unsigned)cp, n, ok, (unsigned)st);
  }
  /* The boundaries, fully checked. */
  static const uint32_t edges[] = {0x0,    0x7F,   0x80,    0x7FF,   0x800,   0xFFF,
                                   0x1000, 0xCFFF, 0xD000,  0xD7FF,  0xE000,  0xFFFD,
                                   0xFFFE, 0xFFFF, 0x10000, 0x3FFFF, 0x40000, 0xFFFFF,
                                   0x100000, 0x10FFFE, 0x10FFFF};
  for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
    char name[64];
    snprintf(name, sizeof name, "U+%04X", (unsigned)edges[i]);
    size_t n = encode(edges[i], buf);
    check_bytes(name, buf, n, V);
  }
  /* Noncharacters U+nFFFE and U+nFFFF on every plane (Autobahn 6.22). */
  for (uint32_t plane = 0; plane <= 16; plane++) {
    for (uint32_t low = 0xFFFE; low <= 0xFFFF; low++) {
      char name[64];
      uint32_t cp = (plane << 16) | low;
      snprintf(name, sizeof name, "noncharacter U+%04X", (unsigned)cp);
      check_bytes(name, buf, encode(cp, buf), V);
    }
  }
  for (uint32_t cp = 0xFDD0; cp <= 0xFDEF; cp++) {
    char name[64];
    snprintf(name, sizeof name, "noncharacter U+%04X", (unsigned)cp);
    check_bytes(name, buf, encode(cp, buf), V);
  }
}

/* Every surrogate, alone and as a pair: rejected at the second byte (ED A0..BF). */
static void test_every_surrogate(void **state) {
  (void)state;
  uint8_t buf[8];
  for (uint32_t cp = 0xD800; cp <= 0xDFFF; cp++) {
    char name[64];
    snprintf(name, sizeof name, "surrogate U+%04X", (unsigned)cp);
    check_bytes(name, buf, encode(cp, buf), 1);
  }
  for (uint32_t hi = 0xD800; hi <= 0xDBFF; hi += 0x3F) {
    for (uint32_t lo = 0xDC00; lo <= 0xDFFF; lo += 0x3F) {
      char name[64];
      snprintf(name, sizeof name, "surrogate pair U+%04X U+%04X", (unsigned)hi, (unsigned)lo);
      size_t n = encode(hi, buf);
      n += encode(lo, buf + n);
      check_bytes(name, buf, n, 1);
    }
  }
}

/* Code points past U+10FFFF in four bytes: F4 90..BF fails at byte 1, F5..F7 at byte 0. */
static void test_beyond_max(void **state) {
  (void)state;
  uint8_t buf[8];
  for (uint32_t cp = 0x110000; cp <= 0x1FFFFF; cp += 0x3FF) {
    char name[64];
    snprintf(name, sizeof name, "beyond max U+%X", (unsigned)cp);
    size_t n = encode(cp, buf);
    check_bytes(name, buf, n, cp < 0x140000 ? 1 : 0);
  }
}

/* Every overlong form of every code point that has one, in 2, 3 and 4 bytes. */
static void test_every_overlong(void **state) {
  (void)state;
  uint8_t buf[8];
  char name[64];
  for (uint32_t cp = 0; cp < 0x80; cp++) {
    snprintf(name, sizeof name, "overlong U+%04X in 2 bytes", (unsigned)cp);
    encode_len(cp, 2, buf);
    check_bytes(name, buf, 2, 0); /* C0 or C1 */
  }
  for (uint32_t cp = 0; cp < 0x800; cp++) {
    snprintf(name, sizeof name, "overlong U+%04X in 3 bytes", (unsigned)cp);
    encode_len(cp, 3, buf);
    check_bytes(name, buf, 3, 1); /* E0 80..9F */
  }
  for (uint32_t cp = 0; cp < 0x10000; cp += 7) {
    snprintf(name, sizeof name, "overlong U+%04X in 4 bytes", (unsigned)cp);
    encode_len(cp, 4, buf);
    check_bytes(name, buf, 4, 1); /* F0 80..8F */
  }
}

/*
 * Every sequence of one, two and three bytes, and every four-byte sequence with a lead of
 * E0..F7 and interesting trailing bytes, against table 3-7: the verdict of one feed, and the
 * index of the first REJECT when fed byte by byte.
 */
static void check_against_table(const uint8_t *s, size_t n) {
  long want = ref_verdict(s, n);
  long got = state_class(sb_utf8_feed(SB_UTF8_ACCEPT, s, n));
  sb_utf8_state st = SB_UTF8_ACCEPT;
  long first = -1;
  for (size_t i = 0; i < n && first < 0; i++) {
    st = sb_utf8_feed(st, s + i, 1);
    if (st == SB_UTF8_REJECT)
      first = (long)i;
  }
  long bytewise = first >= 0 ? first : state_class(st);
  int valid = sb_utf8_valid(s, n);
  if (got != class_of(want) || bytewise != want || valid != (want == V)) {
    char hx[64];
    hexdump(s, n, hx, sizeof hx);
    fail_msg("[%s]: expected %s; actual: one feed %s, byte by byte %s, sb_utf8_valid %d", hx,
             verdict_name(want), class_name(got), verdict_name(bytewise), valid);
  }
}

static void test_exhaustive_short_sequences(void **state) {
  (void)state;
  uint8_t s[4];
  for (unsigned a = 0; a < 256; a++) {
    s[0] = (uint8_t)a;
    check_against_table(s, 1);
    for (unsigned b = 0; b < 256; b++) {
      s[1] = (uint8_t)b;
      check_against_table(s, 2);
      for (unsigned c = 0; c < 256; c++) {
        s[2] = (uint8_t)c;
        check_against_table(s, 3);
      }
    }
  }
  static const uint8_t tails[] = {0x00, 0x41, 0x7F, 0x80, 0x8F, 0x90, 0x9F,
                                  0xA0, 0xBF, 0xC0, 0xC2, 0xE0, 0xF4, 0xFF};
  for (unsigned a = 0xE0; a <= 0xF7; a++) {
    s[0] = (uint8_t)a;
    for (unsigned b = 0; b < 256; b++) {
      s[1] = (uint8_t)b;
      for (size_t c = 0; c < sizeof tails; c++) {
        s[2] = tails[c];
        for (size_t d = 0; d < sizeof tails; d++) {
          s[3] = tails[d];
          check_against_table(s, 4);
        }
      }
    }
  }
}

/*
 * The same vectors with 0..19 ASCII bytes in front and 16 behind, so that any word-at-a-time
 * fast path meets them at every alignment. An incomplete vector becomes invalid at the first
 * ASCII byte after it.
 */
#define TAIL "abcdefghijklmnop"

static void test_vectors_in_context(void **state) {
  (void)state;
  for (size_t v = 0; v < sizeof vectors / sizeof vectors[0]; v++) {
    uint8_t raw[256];
    size_t n = unhex(vectors[v].hex, raw, sizeof raw);
    for (size_t k = 0; k < 20; k++) {
      uint8_t buf[300];
      memset(buf, 'x', k);
      memcpy(buf + k, raw, n);
      memcpy(buf + k + n, TAIL, sizeof TAIL - 1);
      long e = vectors[v].expect;
      long expect = e >= 0 ? (long)k + e : e == INC ? (long)(k + n) : V;
      char name[160];
      snprintf(name, sizeof name, "%s, after %zu ASCII bytes, before 16 more", vectors[v].name,
               k);
      check_bytes(name, buf, k + n + sizeof TAIL - 1, expect);
    }
  }
}

/*
 * 64 bytes of ASCII with one byte replaced at every position: by each non-ASCII byte value
 * (rejected there unless it is a valid lead, in which case the next ASCII byte is), and by a
 * whole 2-, 3- and 4-byte character (valid).
 */
static void test_ascii_runs(void **state) {
  (void)state;
  uint8_t text[64];
  for (size_t i = 0; i < sizeof text; i++)
    text[i] = (uint8_t)('A' + i % 26);
  check_bytes("64 ASCII bytes", text, sizeof text, V);
  for (size_t pos = 0; pos < sizeof text; pos++) {
    for (unsigned b = 0x80; b <= 0xFF; b++) {
      uint8_t t[64];
      memcpy(t, text, sizeof t);
      t[pos] = (uint8_t)b;
      long expect;
      if (b >= 0xC2 && b <= 0xF4)
        expect = pos + 1 < sizeof t ? (long)pos + 1 : INC;
      else
        expect = (long)pos;
      char name[96];
      snprintf(name, sizeof name, "64 ASCII bytes with %02x at %zu", b, pos);
      check_against_table(t, sizeof t);
      long got;
      sb_utf8_state st = SB_UTF8_ACCEPT;
      long first = -1;
      uint8_t *c = dup_exact(t, sizeof t);
      for (size_t i = 0; i < sizeof t && first < 0; i++) {
        st = sb_utf8_feed(st, c + i, 1);
        if (st == SB_UTF8_REJECT)
          first = (long)i;
      }
      got = first >= 0 ? first : state_class(st);
      long whole = state_class(sb_utf8_feed(SB_UTF8_ACCEPT, c, sizeof t));
      int valid = sb_utf8_valid(c, sizeof t);
      free(c);
      if (got != expect || whole != class_of(expect) || valid != (expect == V))
        fail_msg("%s: expected %s; actual: byte by byte %s, one feed %s, sb_utf8_valid %d", name,
                 verdict_name(expect), verdict_name(got), class_name(whole), valid);
    }
    static const uint32_t cps[] = {0xE9, 0x20AC, 0x1F600, 0x10FFFF};
    for (size_t k = 0; k < 4; k++) {
      uint8_t t[72], enc[4];
      size_t m = encode(cps[k], enc);
      memcpy(t, text, pos);
      memcpy(t + pos, enc, m);
      memcpy(t + pos + m, text + pos, sizeof text - pos);
      char name[96];
      snprintf(name, sizeof name, "64 ASCII bytes with U+%04X inserted at %zu", (unsigned)cps[k],
               pos);
      uint8_t *c = dup_exact(t, sizeof text + m);
      int valid = sb_utf8_valid(c, sizeof text + m);
      free(c);
      if (!valid)
        fail_msg("%s: sb_utf8_valid: expected 1, actual 0", name);
    }
  }
}

/*
 * A long valid text of mixed widths: valid as a whole; every truncation is valid exactly at a
 * character boundary; an FF byte written over any position is rejected exactly there.
 */
static void test_long_text(void **state) {
  (void)state;
  static const uint32_t cps[] = {'a', 0xE9, 0x20AC, 0x1F600, 'Z', 0x7FF, 0x800, 0xFFFD,
                                 0x10FFFF, 0x10000, 0xD7FF, 0xE000, '\n', 0x3B1, 0x4E2D};
  uint8_t text[1200];
  uint8_t boundary[1201] = {0};
  size_t n = 0;
  boundary[0] = 1;
  for (size_t i = 0; n + 4 <= 1100; i++) {
    n += encode(cps[i % (sizeof cps / sizeof cps[0])], text + n);
    boundary[n] = 1;
  }
  check_bytes("long mixed text", text, n, V);
  for (size_t k = 0; k <= n; k++) {
    long want = boundary[k] ? V : INC;
    uint8_t *c = dup_exact(text, k);
    long got = state_class(sb_utf8_feed(SB_UTF8_ACCEPT, c, k));
    int valid = sb_utf8_valid(c, k);
    free(c);
    if (got != want || valid != (want == V))
      fail_msg("long text truncated to %zu bytes: expected %s, actual %s (sb_utf8_valid %d)", k,
               verdict_name(want), class_name(got), valid);
  }
  for (size_t i = 0; i < n; i++) {
    uint8_t saved = text[i];
    text[i] = 0xFF;
    uint8_t *c = dup_exact(text, n);
    sb_utf8_state st = sb_utf8_feed(SB_UTF8_ACCEPT, c, i);
    sb_utf8_state st1 = sb_utf8_feed(st, c + i, 1);
    int valid = sb_utf8_valid(c, n);
    long whole = state_class(sb_utf8_feed(SB_UTF8_ACCEPT, c, n));
    free(c);
    if (st == SB_UTF8_REJECT || st1 != SB_UTF8_REJECT || valid || whole != 0)
      fail_msg("long text with FF at %zu: expected REJECT exactly at %zu; actual: state before "
               "0x%x, after 0x%x, sb_utf8_valid %d, whole %s",
               i, i, (unsigned)st, (unsigned)st1, valid, class_name(whole));
    text[i] = saved;
  }
}

/* REJECT is sticky, whatever follows. */
static void test_reject_is_sticky(void **state) {
  (void)state;
  static const char *const tails[] = {"", "61", "00", "c3 a9", "e2 82 ac", "f0 9f 98 80", "80"};
  for (size_t i = 0; i < sizeof tails / sizeof tails[0]; i++) {
    uint8_t b[8];
    size_t n = unhex(tails[i], b, sizeof b);
    sb_utf8_state st = sb_utf8_feed(SB_UTF8_REJECT, b, n);
    if (st != SB_UTF8_REJECT)
      fail_msg("feeding [%s] to a REJECT state: expected REJECT (0x%x), actual 0x%x", tails[i],
               (unsigned)SB_UTF8_REJECT, (unsigned)st);
  }
  assert_int_equal(sb_utf8_feed(SB_UTF8_ACCEPT, NULL, 0), SB_UTF8_ACCEPT);
  assert_int_equal(sb_utf8_valid(NULL, 0), 1);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_kuhn_autobahn_vectors),
      cmocka_unit_test(test_every_single_byte),
      cmocka_unit_test(test_all_continuation_bytes),
      cmocka_unit_test(test_lonely_start_bytes),
      cmocka_unit_test(test_every_scalar_value),
      cmocka_unit_test(test_every_surrogate),
      cmocka_unit_test(test_beyond_max),
      cmocka_unit_test(test_every_overlong),
      cmocka_unit_test(test_exhaustive_short_sequences),
      cmocka_unit_test(test_vectors_in_context),
      cmocka_unit_test(test_ascii_runs),
      cmocka_unit_test(test_long_text),
      cmocka_unit_test(test_reject_is_sticky),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
