/*
 * test_http.c — plain HTTP/1.1 requests (src/rest/http.c): pipelined requests with no body,
 * a Content-Length body and a chunked body, parsed from the stream split at every position
 * and byte by byte, must come out the same, each ending exactly where the next begins; plus
 * keep-alive rules and every limit (413 from Content-Length before the body, 413 while a
 * chunked body grows, 431, 400, 501).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "rest/http.h"

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
    "3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n"
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
      if (res != SB_HTTP_DONE) break;
      seen *x = &out[nseen++];
      snprintf(x->method, sizeof(x->method), "%s", sb_http_method(&r));
      snprintf(x->url, sizeof(x->url), "%s", sb_http_url(&r));
      snprintf(x->host, sizeof(x->host), "%s", sb_http_header(&r, "host"));
      snprintf(x->body, sizeof(x->body), "%.*s", (int)r.body_len, (const char *)r.body);
      x->keep_alive = sb_http_keep_alive(&r);
      sb_http_next(&r);
    }
  }
  assert_int_equal(plen, 0);
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

static sb_http_result one(const char *s, size_t max_head, size_t max_body, int *status) {
  sb_http_request r;
  sb_http_init(&r, max_head, max_body, re, NULL);
  size_t used;
  sb_http_result res = sb_http_feed(&r, (const uint8_t *)s, strlen(s), &used);
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
  /* malformed */
  assert_int_equal(one("GARBAGE\r\n\r\n", 1024, 1000, &status), SB_HTTP_ERROR);
  assert_int_equal(status, 400);
  assert_int_equal(one("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: x\r\n\r\n", 1024, 1000,
                       &status), SB_HTTP_ERROR);
  assert_int_equal(status, 400);
  /* an encoding we do not speak */
  assert_int_equal(one("POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", 1024,
                       1000, &status), SB_HTTP_ERROR);
  assert_int_equal(status, 501);
  /* no version: read as HTTP/0.9 by http-parser; refused */
  assert_int_equal(one("POST /b/z\nHost: a\r\n\r\n", 1024, 1000, &status), SB_HTTP_ERROR);
  assert_int_equal(status, 505);
  /* exactly at the body limit is fine */
  assert_int_equal(one("POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello", 1024, 5,
                       &status), SB_HTTP_DONE);
}

static void test_keep_alive_rules(void **state) {
  (void)state;
  sb_http_request r;
  const char *cases[] = {"GET / HTTP/1.0\r\n\r\n", "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
                         "GET / HTTP/1.1\r\n\r\n", "GET / HTTP/1.1\r\nConnection: close\r\n\r\n"};
  const int want[] = {0, 1, 1, 0};
  for (int i = 0; i < 4; i++) {
    sb_http_init(&r, 1024, 1024, re, NULL);
    size_t used;
    assert_int_equal(sb_http_feed(&r, (const uint8_t *)cases[i], strlen(cases[i]), &used),
                     SB_HTTP_DONE);
    assert_int_equal(used, strlen(cases[i]));
    assert_int_equal(sb_http_keep_alive(&r), want[i]);
    sb_http_free(&r);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_pipelined_every_split),
      cmocka_unit_test(test_limits_and_errors),
      cmocka_unit_test(test_keep_alive_rules),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
