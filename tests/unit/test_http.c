/*
 * test_http.c — HTTP/1.1 requests (src/http/http.c): pipelined requests with no body, a
 * Content-Length body and a chunked body, parsed from the stream split at every position and
 * byte by byte, must come out the same, each ending exactly where the next begins; keep-alive
 * rules; every limit (413 from Content-Length before the body, 413 while a chunked body grows,
 * 431, 400, 501, 505); and the strict checks of http.h, each case at every split point (the
 * verdict, status included, must not depend on the split), with the reproducer of the lenient
 * http-parser's split-dependent parse as a regression test.
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
#include "http/http.h"

static void *re(void *p, size_t n, void *ctx) {
  (void)ctx;
  if (n == 0) {
    free(p);
    return NULL;
  }
  return realloc(p, n);
}

typedef struct seen {
  char method[8], url[64], host[32], body[64];
  int keep_alive;
} seen;

static const char STREAM[] =
    "GET /rooms/1?x=1 HTTP/1.1\r\nHost: a\r\n\r\n"
    "POST /rooms/1/messages HTTP/1.1\r\nHost: b\r\nContent-Length: 5\r\n\r\nhello"
    "POST /chunked HTTP/1.1\r\nHost: c\r\nTransfer-Encoding: chunked\r\n\r\n"
    "3\r\nabc\r\n2;name=value\r\nde\r\n0\r\nX-Trailer: t\r\n\r\n"
    "DELETE /rooms/1 HTTP/1.1\r\nHost: d\r\nConnection: close\r\n\r\n";

static const seen WANT[] = {
    {"GET", "/rooms/1?x=1", "a", "", 1},
    {"POST", "/rooms/1/messages", "b", "hello", 1},
    {"POST", "/chunked", "c", "abcde", 1},
    {"DELETE", "/rooms/1", "d", "", 0},
};

/* Parses `s` fed in the given pieces; returns the requests seen. */
static size_t run(const char *s, size_t len, const size_t *cuts, size_t ncuts, seen *out) {
  sb_http_request r;
  sb_http_init(&r, 1024, 1024, re, NULL);
  size_t nseen = 0, start = 0;
  uint8_t pending[512];
  size_t plen = 0;
  int heads = 0;
  for (size_t k = 0; k <= ncuts; k++) {
    size_t end = k < ncuts ? cuts[k] : len;
    memcpy(pending + plen, s + start, end - start);
    plen += end - start;
    start = end;
    for (;;) {
      size_t used;
      sb_http_result res = sb_http_feed(&r, pending, plen, &used);
      assert_int_not_equal(res, SB_HTTP_ERROR);
      memmove(pending, pending + used, plen - used);
      plen -= used;
      if (res == SB_HTTP_HEAD) {
        heads++;
        assert_non_null(sb_http_header(&r, "host")); /* the head is there before the body */
        continue;
      }
      if (res != SB_HTTP_DONE) break;
      seen *x = &out[nseen++];
      snprintf(x->method, sizeof(x->method), "%s", sb_http_method(&r));
      snprintf(x->url, sizeof(x->url), "%s", sb_http_url(&r));
      snprintf(x->host, sizeof(x->host), "%s", sb_http_header(&r, "host"));
      snprintf(x->body, sizeof(x->body), "%.*s", (int)r.body_len, (const char *)r.body);
      x->keep_alive = sb_http_keep_alive(&r);
      assert_null(sb_http_header(&r, "X-Trailer")); /* trailers are checked, not kept */
      sb_http_next(&r);
    }
  }
  assert_int_equal(plen, 0);
  assert_int_equal(heads, (int)nseen);
  sb_http_free(&r);
  return nseen;
}

static void check(const seen *got, size_t n) {
  assert_int_equal(n, 4);
  for (size_t i = 0; i < 4; i++) {
    assert_string_equal(got[i].method, WANT[i].method);
    assert_string_equal(got[i].url, WANT[i].url);
    assert_string_equal(got[i].host, WANT[i].host);
    assert_string_equal(got[i].body, WANT[i].body);
    assert_int_equal(got[i].keep_alive, WANT[i].keep_alive);
  }
}

static void test_pipelined_every_split(void **state) {
  (void)state;
  size_t len = sizeof(STREAM) - 1;
  seen got[8];
  check(got, run(STREAM, len, NULL, 0, got));
  for (size_t cut = 1; cut < len; cut++) {
    memset(got, 0, sizeof(got));
    check(got, run(STREAM, len, &cut, 1, got));
  }
  size_t cuts[512];
  for (size_t i = 0; i + 1 < len; i++) cuts[i] = i + 1;
  check(got, run(STREAM, len, cuts, len - 1, got));
}

/*
 * The verdict on s[0..len) fed in two pieces cut at `cut` (len: in one piece): the requests
 * (method, url, body length) and the final result, error status included, as text.
 */
static void verdict(const uint8_t *s, size_t len, size_t cut, size_t max_head, size_t max_body,
                    char *out, size_t cap) {
  sb_http_request r;
  sb_http_init(&r, max_head, max_body, re, NULL);
  uint8_t *pending = malloc(len + 1);
  assert_non_null(pending);
  size_t plen = 0, fed = 0;
  sb_strbuf sb; /* a verdict too long for `out` fails the test, never overflows it */
  sb_strbuf_init(&sb, out, cap);
  for (int piece = 0; piece < 2; piece++) {
    size_t end = piece == 0 ? cut : len;
    memcpy(pending + plen, s + fed, end - fed);
    plen += end - fed;
    fed = end;
    for (;;) {
      size_t used;
      sb_http_result res = sb_http_feed(&r, pending, plen, &used);
      assert_true(used <= plen);
      memmove(pending, pending + used, plen - used);
      plen -= used;
      if (res == SB_HTTP_ERROR) {
        if (sb_strbuf_appendf(&sb, "E%d", r.status) != 0)
          fail_msg("verdict longer than %zu bytes: \"%s\"...", cap, out);
        assert_non_null(r.error);
        goto done;
      }
      if (res == SB_HTTP_HEAD) continue;
      if (res != SB_HTTP_DONE) break;
      if (sb_strbuf_appendf(&sb, "%s %s %zu;", sb_http_method(&r), sb_http_url(&r),
                            r.body_len) != 0)
        fail_msg("verdict longer than %zu bytes: \"%s\"...", cap, out);
      sb_http_next(&r);
    }
  }
done:
  free(pending);
  sb_http_free(&r);
}

/* The verdict must be `want` (a prefix: "E400", or "GET / 0;" ...) at every split. */
static void expect(const char *name, const char *s, size_t len, const char *want) {
  if (!len) len = strlen(s);
  char whole[1024], split[1024];
  verdict((const uint8_t *)s, len, len, 1024, 64, whole, sizeof(whole));
  if (strncmp(whole, want, strlen(want)) != 0)
    fail_msg("%s: expected \"%s\", actual \"%s\"", name, want, whole);
  for (size_t cut = 0; cut < len; cut++) {
    verdict((const uint8_t *)s, len, cut, 1024, 64, split, sizeof(split));
    if (strcmp(whole, split) != 0)
      fail_msg("%s: split at %zu gives \"%s\", in one piece \"%s\"", name, cut, split, whole);
  }
}

#define H "Host: a\r\n"

static void test_strict_request_line(void **state) {
  (void)state;
  expect("a plain GET", "GET / HTTP/1.1\r\n" H "\r\n", 0, "GET / 0;");
  expect("HTTP/1.0 without Host", "GET / HTTP/1.0\r\n\r\n", 0, "GET / 0;");
  expect("bare LF line ends", "GET / HTTP/1.1\n" H "\n", 0, "GET / 0;");
  expect("empty lines before the request", "\r\n\nGET / HTTP/1.1\r\n" H "\r\n", 0, "GET / 0;");
  expect("HT6P", "GET / HT6P/1.1\r\n" H "\r\n", 0, "E400");
  expect("HTTP/2.0", "GET / HTTP/2.0\r\n" H "\r\n", 0, "E505");
  expect("HTTP/1.2", "GET / HTTP/1.2\r\n" H "\r\n", 0, "E505");
  expect("HTTP/1.10", "GET / HTTP/1.10\r\n" H "\r\n", 0, "E400");
  expect("http/1.1", "GET / http/1.1\r\n" H "\r\n", 0, "E400");
  expect("no version", "GET /\r\n" H "\r\n", 0, "E505");
  expect("two spaces", "GET  / HTTP/1.1\r\n" H "\r\n", 0, "E400");
  expect("a space in the target", "GET /a b HTTP/1.1\r\n" H "\r\n", 0, "E400");
  expect("a control byte in the target", "GET /\x01 HTTP/1.1\r\n" H "\r\n", 0, "E400");
  expect("a high byte in the target", "GET /\xe6 HTTP/1.1\r\n" H "\r\n", 0, "E400");
  expect("NUL in the target", "GET /a\0b HTTP/1.1\r\n" H "\r\n", 22, "E400");
  expect("DEL in the method", "GE\x7fT / HTTP/1.1\r\n" H "\r\n", 0, "E400");
  expect("CR without LF", "GET / HTTP/1.1\rX" H "\r\n", 0, "E400");
  expect("a tab after the version", "GET / HTTP/1.1\t\r\n" H "\r\n", 0, "E400");
  expect("CONNECT", "CONNECT a:443 HTTP/1.1\r\n" H "\r\n", 0, "E501");
}

static void test_strict_headers(void **state) {
  (void)state;
  expect("a tab and UTF-8 in a value", "GET / HTTP/1.1\r\n" H "X: a\tcaf\xc3\xa9\r\n\r\n", 0,
         "GET / 0;");
  expect("an empty value", "GET / HTTP/1.1\r\n" H "X:\r\n\r\n", 0, "GET / 0;");
  expect("a space before the colon", "GET / HTTP/1.1\r\nHost : a\r\n\r\n", 0, "E400");
  expect("a space in a name", "GET / HTTP/1.1\r\n" H "Ho st: a\r\n\r\n", 0, "E400");
  expect("an empty name", "GET / HTTP/1.1\r\n" H ": a\r\n\r\n", 0, "E400");
  expect("obsolete line folding", "GET / HTTP/1.1\r\n" H "X: a\r\n b\r\n\r\n", 0, "E400");
  expect("a control byte in a value", "GET / HTTP/1.1\r\n" H "X: a\x01 b\r\n\r\n", 0, "E400");
  expect("DEL in a value", "GET / HTTP/1.1\r\n" H "X: a\x7f\r\n\r\n", 0, "E400");
  expect("a bare CR in a value", "GET / HTTP/1.1\r\n" H "X: a\rb\r\n\r\n", 0, "E400");
  expect("a high byte in a name", "GET / HTTP/1.1\r\n" H "\xe6: a\r\n\r\n", 0, "E400");
  expect("the blank line ends in CR X", "GET / HTTP/1.1\r\n" H "\rX", 0, "E400");
  expect("HTTP/1.1 without Host", "GET / HTTP/1.1\r\n\r\n", 0, "E400");
  expect("two Host headers", "GET / HTTP/1.1\r\n" H H "\r\n", 0, "E400");
  expect("Content-Length and Transfer-Encoding",
         "POST / HTTP/1.1\r\n" H "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 0,
         "E400");
  expect("two Transfer-Encoding headers",
         "POST / HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n",
         0, "E400");
  expect("two Content-Length headers",
         "POST / HTTP/1.1\r\n" H "Content-Length: 1\r\nContent-Length: 1\r\n\r\na", 0, "E400");
}

#define CH "POST /c HTTP/1.1\r\n" H "Transfer-Encoding: chunked\r\n\r\n"

static void test_strict_chunks(void **state) {
  (void)state;
  expect("chunks with an extension and a trailer",
         CH "1;name=\"v a\"\r\na\r\nA\r\n0123456789\r\n0\r\nX-T: v\r\n\r\n", 0, "POST /c 11;");
  expect("upper- and lower-case hex", CH "a\r\n0123456789\r\nB\r\n0123456789a\r\n0\r\n\r\n", 0,
         "POST /c 21;");
  expect("a chunk past the 64-byte body limit", CH "41\r\n", 0, "E413");
  expect("leading zeros", CH "0001\r\na\r\n00\r\n\r\n", 0, "POST /c 1;");
  expect("a non-printable byte in a chunk-size line", CH "1\r\xe6\r\na\r\n0\r\n\r\n", 0, "E400");
  expect("a non-printable byte in an extension", CH "1;e\x01\r\na\r\n0\r\n\r\n", 0, "E400");
  expect("a space after the size", CH "1 \r\na\r\n0\r\n\r\n", 0, "E400");
  expect("not hex", CH "g\r\na\r\n0\r\n\r\n", 0, "E400");
  expect("a bare LF after the size", CH "1\na\r\n0\r\n\r\n", 0, "E400");
  expect("data not followed by CRLF", CH "1\r\naXY0\r\n\r\n", 0, "E400");
  expect("data followed by LF only", CH "1\r\na\n0\r\n\r\n", 0, "E400");
  expect("17 hex digits", CH "00000000000000001\r\na\r\n0\r\n\r\n", 0, "E400");
  expect("a bad trailer", CH "0\r\nX-T: \x01\r\n\r\n", 0, "E400");
  expect("a folded trailer", CH "0\r\nX-T: a\r\n b\r\n\r\n", 0, "E400");
}

/* The fuzzer's reproducer of the lenient http-parser (tests/fuzz/corpus/fuzz_http): a
 * version "HT6P/1.1" and 0xE6 bytes in chunk-size lines, which parsed differently depending
 * on the split. Byte 0 is the fuzzer's cut; the rest is checked at every split here. */
static void test_lenient_chunk_line_split_regression(void **state) {
  (void)state;
  FILE *f = fopen(SB_SOURCE_DIR "/tests/fuzz/corpus/fuzz_http/lenient-chunk-line-split", "rb");
  assert_non_null(f);
  char buf[4096];
  size_t n = fread(buf, 1, sizeof(buf), f);
  fclose(f);
  assert_true(n > 1);
  expect("the lenient-parser reproducer", buf + 1, n - 1, "E400");
}

static sb_http_result one(const char *s, size_t max_head, size_t max_body, int *status) {
  sb_http_request r;
  sb_http_init(&r, max_head, max_body, re, NULL);
  size_t used, off = 0, len = strlen(s);
  sb_http_result res;
  do {
    res = sb_http_feed(&r, (const uint8_t *)s + off, len - off, &used);
    off += used;
  } while (res == SB_HTTP_HEAD);
  *status = r.status;
  sb_http_free(&r);
  return res;
}

static void test_limits_and_errors(void **state) {
  (void)state;
  int status;
  /* announced too big: refused at the head, before the body */
  assert_int_equal(one("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2000\r\n\r\n", 1024, 1000,
                       &status), SB_HTTP_ERROR);
  assert_int_equal(status, 413);
  /* chunked growing past the limit */
  assert_int_equal(one("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n"
                       "a\r\n0123456789\r\na\r\n0123456789\r\n", 1024, 15, &status),
                   SB_HTTP_ERROR);
  assert_int_equal(status, 413);
  /* head too big */
  char big[3000];
  snprintf(big, sizeof(big), "GET / HTTP/1.1\r\nHost: a\r\nX-Big: %02000d\r\n\r\n", 0);
  assert_int_equal(one(big, 1024, 1000, &status), SB_HTTP_ERROR);
  assert_int_equal(status, 431);
  /* trailers too big (they count against the head limit) */
  snprintf(big, sizeof(big),
           "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: %02000d\r\n\r\n", 0);
  assert_int_equal(one(big, 1024, 1000, &status), SB_HTTP_ERROR);
  assert_int_equal(status, 431);
  /* malformed */
  assert_int_equal(one("GARBAGE\r\n\r\n", 1024, 1000, &status), SB_HTTP_ERROR);
  assert_int_equal(status, 400);
  assert_int_equal(one("HELLO WORLD\r\n\r\n", 1024, 1000, &status), SB_HTTP_ERROR);
  assert_int_equal(status, 400); /* http-parser refuses the method before the check sees the line end */
  assert_int_equal(one("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 1024, 1000,
                       &status), SB_HTTP_ERROR);
  assert_int_equal(status, 400);
  /* an encoding we do not speak */
  assert_int_equal(one("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 1024,
                       1000, &status), SB_HTTP_ERROR);
  assert_int_equal(status, 501);
  /* no version (HTTP/0.9): refused */
  assert_int_equal(one("POST /b/z\nHost: a\r\n\r\n", 1024, 1000, &status), SB_HTTP_ERROR);
  assert_int_equal(status, 505);
  /* exactly at the body limit is fine */
  assert_int_equal(one("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 1024, 5,
                       &status), SB_HTTP_DONE);
  /* an upgrade's body is not read, so its Content-Length is not held to the limit */
  assert_int_equal(one("GET / HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                       "Content-Length: 2000\r\n\r\n", 1024, 5, &status), SB_HTTP_DONE);
}

static void test_head_then_body(void **state) {
  (void)state;
  sb_http_request r;
  sb_http_init(&r, 1024, 1024, re, NULL);
  const char *s = "POST /x HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n";
  size_t used;
  assert_int_equal(sb_http_feed(&r, (const uint8_t *)s, strlen(s), &used), SB_HTTP_HEAD);
  assert_int_equal(used, strlen(s));
  assert_int_equal(r.done, 0);
  assert_string_equal(sb_http_header(&r, "expect"), "100-continue");
  assert_int_equal(sb_http_feed(&r, (const uint8_t *)"ab", 2, &used), SB_HTTP_NEED_MORE);
  assert_int_equal(used, 2);
  assert_int_equal(sb_http_feed(&r, (const uint8_t *)"cGET", 4, &used), SB_HTTP_DONE);
  assert_int_equal(used, 1);
  assert_memory_equal(r.body, "abc", 3);
  assert_int_equal(sb_http_feed(&r, (const uint8_t *)"GET", 3, &used), SB_HTTP_DONE);
  assert_int_equal(used, 0); /* done until sb_http_next */
  sb_http_next(&r);
  /* no body: done at the head */
  s = "GET / HTTP/1.1\r\nHost: a\r\n\r\nrest";
  assert_int_equal(sb_http_feed(&r, (const uint8_t *)s, strlen(s), &used), SB_HTTP_HEAD);
  assert_int_equal(used, strlen(s) - 4);
  assert_int_equal(r.done, 1);
  assert_int_equal(r.upgrade, 0);
  sb_http_next(&r);
  /* an upgrade: done at the head, whatever follows is the other protocol */
  s = "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: foo, WebSocket\r\nConnection: upgrade\r\n\r\n\x81\x80";
  assert_int_equal(sb_http_feed(&r, (const uint8_t *)s, strlen(s), &used), SB_HTTP_HEAD);
  assert_int_equal(used, strlen(s) - 2);
  assert_int_equal(r.done, 1);
  assert_int_equal(r.upgrade, 1);
  sb_http_free(&r);
}

static void test_keep_alive_rules(void **state) {
  (void)state;
  sb_http_request r;
  const char *cases[] = {"GET / HTTP/1.0\r\n\r\n", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                         "GET / HTTP/1.1\r\n" H "\r\n",
                         "GET / HTTP/1.1\r\n" H "Connection: close\r\n\r\n"};
  const int want[] = {0, 1, 1, 0};
  for (int i = 0; i < 4; i++) {
    sb_http_init(&r, 1024, 1024, re, NULL);
    size_t used;
    assert_int_equal(sb_http_feed(&r, (const uint8_t *)cases[i], strlen(cases[i]), &used),
                     SB_HTTP_HEAD);
    assert_int_equal(used, strlen(cases[i]));
    assert_int_equal(sb_http_feed(&r, (const uint8_t *)"", 0, &used), SB_HTTP_DONE);
    assert_int_equal(sb_http_keep_alive(&r), want[i]);
    sb_http_free(&r);
  }
}

static void test_reasons_and_tokens(void **state) {
  (void)state;
  assert_string_equal(sb_http_reason(200), "OK");
  assert_string_equal(sb_http_reason(413), "Payload Too Large");
  assert_string_equal(sb_http_reason(505), "HTTP Version Not Supported");
  assert_null(sb_http_reason(299));
  assert_true(sb_token_list_has("keep-alive, Upgrade", "upgrade"));
  assert_false(sb_token_list_has("upgrades", "upgrade"));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pipelined_every_split),
      cmocka_unit_test(test_strict_request_line),
      cmocka_unit_test(test_strict_headers),
      cmocka_unit_test(test_strict_chunks),
      cmocka_unit_test(test_lenient_chunk_line_split_regression),
      cmocka_unit_test(test_limits_and_errors),
      cmocka_unit_test(test_head_then_body),
      cmocka_unit_test(test_keep_alive_rules),
      cmocka_unit_test(test_reasons_and_tokens),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
