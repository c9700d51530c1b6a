/*
 * test_strbuf_lib.c — the library's bounded appender (src/common/strbuf.h).
 *
 * What must hold, whatever is appended:
 *   - nothing is ever written past the end of the buffer: checked with guard bytes right after
 *     it (every build) and with the buffer ending at an inaccessible page (a write past the end
 *     is a crash, sanitizer or not);
 *   - an append goes whole or not at all: the text after an overflow is exactly the pieces
 *     that fitted before it, NUL-terminated;
 *   - the overflow is sticky and reported, by the return value and by sb_strbuf_overflowed;
 *   - an exact fit (cap - 1 bytes of text) is not an overflow.
 * The expected texts are built here independently (concatenating with memcpy into a large
 * array), never read back from the code under test.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>
#include <wchar.h>

#include <cmocka.h>

#include "common/strbuf.h"
#include "switchboard.h"

#define GUARD 32
#define GUARD_BYTE 0xA5

/* A buffer of `cap` bytes followed by GUARD bytes of GUARD_BYTE, inside one allocation. */
typedef struct guarded {
  char *mem;
  size_t cap;
} guarded;

static guarded guarded_new(size_t cap) {
  guarded g = {malloc(cap + GUARD), cap};
  assert_non_null(g.mem);
  memset(g.mem, 'Q', cap); /* stale content the appender must not rely on */
  memset(g.mem + cap, GUARD_BYTE, GUARD);
  return g;
}

static void guard_check(const guarded *g, const char *what) {
  for (size_t i = 0; i < GUARD; i++) {
    if ((uint8_t)g->mem[g->cap + i] != GUARD_BYTE)
      fail_msg("%s: the byte %zu past the end of a %zu-byte buffer was overwritten: expected "
               "0x%02x, actual 0x%02x",
               what, i, g->cap, GUARD_BYTE, (uint8_t)g->mem[g->cap + i]);
  }
}

/* The text must be exactly `want` (want_len bytes), NUL-terminated, with `overflow` as given. */
static void expect_text(const sb_strbuf *sb, const char *want, size_t want_len, int overflow,
                        const char *what) {
  if (sb->len != want_len)
    fail_msg("%s: length: expected %zu, actual %zu", what, want_len, sb->len);
  if (memcmp(sb->buf, want, want_len) != 0)
    fail_msg("%s: text: expected \"%.*s\", actual \"%.*s\"", what, (int)want_len, want,
             (int)sb->len, sb->buf);
  if (sb->buf[want_len] != '\0') fail_msg("%s: no NUL after the text", what);
  if (sb_strbuf_overflowed(sb) != overflow)
    fail_msg("%s: overflowed: expected %d, actual %d", what, overflow, sb_strbuf_overflowed(sb));
}

/* ---------------------------------------------------------------------------------------- */

static void test_exact_fit(void **state) {
  (void)state;
  guarded g = guarded_new(8);
  sb_strbuf sb;
  sb_strbuf_init(&sb, g.mem, g.cap);
  expect_text(&sb, "", 0, 0, "empty");
  assert_int_equal(sb_strbuf_appends(&sb, "abc"), 0);
  assert_int_equal(sb_strbuf_appendf(&sb, "%d%s", 12, "xy"), 0); /* 7 bytes: cap - 1 */
  expect_text(&sb, "abc12xy", 7, 0, "exact fit by appendf");
  guard_check(&g, "exact fit by appendf");
  assert_int_equal(sb_strbuf_append(&sb, "", 0), 0); /* nothing more still fits */
  assert_int_equal(sb_strbuf_append(&sb, "!", 1), SB_ENOMEM);
  expect_text(&sb, "abc12xy", 7, 1, "one byte past an exact fit");
  guard_check(&g, "one byte past an exact fit");

  sb_strbuf_init(&sb, g.mem, g.cap);
  assert_int_equal(sb_strbuf_append(&sb, "1234567", 7), 0);
  expect_text(&sb, "1234567", 7, 0, "exact fit by append");
  sb_strbuf_init(&sb, g.mem, g.cap);
  assert_int_equal(sb_strbuf_appendf(&sb, "%s", "12345678"), SB_ENOMEM); /* needs 9 with NUL */
  expect_text(&sb, "", 0, 1, "one byte too many by appendf");
  guard_check(&g, "one byte too many by appendf");
  free(g.mem);
}

static void test_overflow_is_sticky_and_whole(void **state) {
  (void)state;
  guarded g = guarded_new(16);
  sb_strbuf sb;
  sb_strbuf_init(&sb, g.mem, g.cap);
  assert_int_equal(sb_strbuf_appends(&sb, "Allow: GET"), 0);
  assert_int_equal(sb_strbuf_appendf(&sb, ", %s", "DELETE"), SB_ENOMEM); /* would be 18 */
  expect_text(&sb, "Allow: GET", 10, 1, "a piece that does not fit is not cut");
  /* Everything after the first overflow is refused, even what would fit on its own. */
  assert_int_equal(sb_strbuf_appends(&sb, "!"), SB_ENOMEM);
  assert_int_equal(sb_strbuf_appendf(&sb, "%s", ""), SB_ENOMEM);
  assert_int_equal(sb_strbuf_append(&sb, "", 0), SB_ENOMEM);
  expect_text(&sb, "Allow: GET", 10, 1, "sticky");
  guard_check(&g, "sticky");
  free(g.mem);
}

static void test_zero_capacity(void **state) {
  (void)state;
  sb_strbuf sb;
  sb_strbuf_init(&sb, NULL, 0);
  assert_int_equal(sb_strbuf_overflowed(&sb), 1);
  assert_int_equal(sb_strbuf_append(&sb, "", 0), SB_ENOMEM);
  assert_int_equal(sb_strbuf_appendf(&sb, "x"), SB_ENOMEM);
  assert_int_equal(sb.len, 0);
  guarded g = guarded_new(1); /* room for the NUL only */
  sb_strbuf_init(&sb, g.mem, g.cap);
  expect_text(&sb, "", 0, 0, "cap 1");
  assert_int_equal(sb_strbuf_append(&sb, "", 0), 0);
  assert_int_equal(sb_strbuf_appendf(&sb, "%s", ""), 0);
  assert_int_equal(sb_strbuf_appends(&sb, "x"), SB_ENOMEM);
  expect_text(&sb, "", 0, 1, "cap 1, one byte");
  guard_check(&g, "cap 1");
  free(g.mem);
}

static void test_resume_and_bytes(void **state) {
  (void)state;
  guarded g = guarded_new(12);
  memcpy(g.mem, "ab\0cd", 5); /* a text with a NUL inside, not terminated */
  sb_strbuf sb;
  sb_strbuf_resume(&sb, g.mem, g.cap, 5);
  expect_text(&sb, "ab\0cd", 5, 0, "resumed");
  assert_int_equal(sb_strbuf_append(&sb, "\0ef", 3), 0);
  assert_int_equal(sb_strbuf_appendf(&sb, "%c%c%c", 'g', 'h', 'i'), 0); /* 11 bytes */
  expect_text(&sb, "ab\0cd\0efghi", 11, 0, "bytes with NULs, to an exact fit");
  guard_check(&g, "resume");
  sb_strbuf_resume(&sb, g.mem, g.cap, 12); /* a length that does not fit */
  assert_int_equal(sb_strbuf_overflowed(&sb), 1);
  assert_int_equal(sb_strbuf_appends(&sb, ""), SB_ENOMEM);
  guard_check(&g, "resume past the end");
  free(g.mem);
}

static void test_formatting_error(void **state) {
  (void)state;
  /* In the C locale a wide character outside ASCII cannot be converted: vsnprintf fails
   * (glibc returns -1, EILSEQ). Established first, so that this checks the appender. */
  static const wchar_t euro[] = {0x20AC, 0};
  char probe[32];
  if (snprintf(probe, sizeof(probe), "%ls", euro) >= 0) {
    print_message("this C library formats U+20AC in the C locale; nothing to check\n");
    return;
  }
  guarded g = guarded_new(32);
  sb_strbuf sb;
  sb_strbuf_init(&sb, g.mem, g.cap);
  assert_int_equal(sb_strbuf_appends(&sb, "ok"), 0);
  assert_int_equal(sb_strbuf_appendf(&sb, "x%lsy", euro), SB_ENOMEM);
  expect_text(&sb, "ok", 2, 1, "a formatting error");
  guard_check(&g, "a formatting error");
  free(g.mem);
}

/* Every capacity from 0 to 80 against pieces of every length from 0 to 20, appended in turn by
 * the three calls; the text must be the longest run of whole pieces that fits. This is the
 * shape of the loops that summed snprintf's results got wrong. */
static void test_every_capacity(void **state) {
  (void)state;
  char piece[32];
  for (size_t cap = 0; cap <= 80; cap++) {
    for (size_t plen = 0; plen <= 20; plen++) {
      guarded g = guarded_new(cap);
      sb_strbuf sb;
      sb_strbuf_init(&sb, cap ? g.mem : NULL, cap);
      char want[1024];
      size_t want_len = 0;
      int over = cap == 0;
      for (int i = 0; i < 12; i++) {
        memset(piece, 'a' + i, plen);
        piece[plen] = '\0';
        int r = i % 3 == 0   ? sb_strbuf_append(&sb, piece, plen)
                : i % 3 == 1 ? sb_strbuf_appends(&sb, piece)
                             : sb_strbuf_appendf(&sb, "%.*s", (int)plen, piece);
        if (!over && want_len + plen + 1 <= cap) {
          memcpy(want + want_len, piece, plen);
          want_len += plen;
        } else {
          over = 1;
        }
        char what[96];
        snprintf(what, sizeof(what), "cap %zu, pieces of %zu, piece %d", cap, plen, i);
        if (r != (over ? SB_ENOMEM : 0))
          fail_msg("%s: returned %d, expected %d", what, r, over ? SB_ENOMEM : 0);
        guard_check(&g, what);
        if (cap) expect_text(&sb, want, want_len, over, what);
        else if (!sb_strbuf_overflowed(&sb) || sb.len) fail_msg("%s: cap 0 is always full", what);
      }
      free(g.mem);
    }
  }
}

/* The buffer ends where an inaccessible page starts: a single byte written past the end is a
 * crash in any build. Long formatted pieces (far longer than the buffer) are appended until
 * the overflow; the text must hold the pieces that fitted. */
static void test_guard_page(void **state) {
  (void)state;
  long page = sysconf(_SC_PAGESIZE);
  assert_true(page > 0);
  char *map = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
                   -1, 0);
  assert_true(map != MAP_FAILED);
  assert_int_equal(mprotect(map + page, (size_t)page, PROT_NONE), 0);
  static const size_t caps[] = {1, 2, 7, 64, 100, 1000};
  for (size_t k = 0; k < sizeof(caps) / sizeof(caps[0]); k++) {
    char *buf = map + page - caps[k];
    sb_strbuf sb;
    sb_strbuf_init(&sb, buf, caps[k]);
    size_t want = 0;
    for (int w = 1; w < 4000; w += 37) {
      int r = sb_strbuf_appendf(&sb, "%0*d", w, 7);
      if (r == 0) want += (size_t)w;
      else break;
    }
    assert_int_equal(sb_strbuf_overflowed(&sb), 1);
    assert_int_equal(sb.len, want);
    assert_int_equal(buf[sb.len], '\0');
    assert_int_equal(sb_strbuf_append(&sb, "x", 1), SB_ENOMEM); /* sticky here too */
    char big[5000];
    memset(big, 'b', sizeof(big));
    assert_int_equal(sb_strbuf_append(&sb, big, sizeof(big)), SB_ENOMEM);
  }
  munmap(map, 2 * (size_t)page);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_exact_fit),
      cmocka_unit_test(test_overflow_is_sticky_and_whole),
      cmocka_unit_test(test_zero_capacity),
      cmocka_unit_test(test_resume_and_bytes),
      cmocka_unit_test(test_formatting_error),
      cmocka_unit_test(test_every_capacity),
      cmocka_unit_test(test_guard_page),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
