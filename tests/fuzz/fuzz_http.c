/*
 * fuzz_http.c — HTTP requests (src/http/http.h) on arbitrary bytes: parsed whole, split in two
 * at a position taken from the first byte, and (when short) byte by byte, the same requests
 * (method, url, Host, body) and the same verdict, error status included, must come out, for
 * any input: the strict checks of http.c make the result independent of the split. Every
 * feed must keep the contract of http.h (HEAD once per request before DONE, consumed within
 * the input, nothing consumed after DONE or ERROR), and nothing may leak.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "http/http.h"

#define CHECK(cond, ...)                                                                     \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      fprintf(stderr, "fuzz_http: check failed: %s: ", #cond);                               \
      fprintf(stderr, __VA_ARGS__);                                                          \
      fprintf(stderr, "\n");                                                                 \
      abort();                                                                               \
    }                                                                                        \
  } while (0)

static void *re(void *p, size_t n, void *ctx) {
  long *live = ctx;
  if (n == 0) {
    if (p) (*live)--;
    free(p);
    return NULL;
  }
  void *q = realloc(p, n);
  if (q && !p) (*live)++;
  return q;
}

/* Runs the parser over in[0..n) fed in pieces: cut at `cut`, or `step` bytes at a time (step
 * 0: the cut). Writes a digest of what it saw: whole pieces while they fit in `out`, then
 * nothing more (the same cut for the same events). Returns its length. */
static size_t run(const uint8_t *in, size_t n, size_t cut, size_t step, char *out, size_t cap) {
  long live = 0;
  sb_http_request r;
  sb_http_init(&r, 512, 256, re, &live);
  uint8_t *pend = malloc(n + 1);
  CHECK(pend != NULL, "out of memory");
  size_t plen = 0, fed = 0;
  int stop = 0, heads = 0, dones = 0;
  sb_strbuf sb;
  sb_strbuf_init(&sb, out, cap);
  while (fed < n && !stop) {
    size_t end = step ? (fed + step < n ? fed + step : n) : (fed < cut ? cut : n);
    memcpy(pend + plen, in + fed, end - fed);
    plen += end - fed;
    fed = end;
    for (;;) {
      size_t used = (size_t)-1, before = plen;
      sb_http_result res = sb_http_feed(&r, pend, plen, &used);
      CHECK(used <= plen, "consumed %zu of %zu", used, plen);
      memmove(pend, pend + used, plen - used);
      plen -= used;
      if (res == SB_HTTP_ERROR) {
        CHECK(r.status >= 400 && r.status <= 505 && r.error, "status %d", r.status);
        size_t again;
        CHECK(sb_http_feed(&r, pend, plen, &again) == SB_HTTP_ERROR && again == 0,
              "an error is final");
        sb_strbuf_appendf(&sb, "E%d;", r.status);
        stop = 1;
        break;
      }
      if (res == SB_HTTP_HEAD) {
        CHECK(heads == dones, "a second HEAD for one request");
        CHECK(r.head_done, "HEAD before the head is done");
        heads++;
        continue;
      }
      if (res != SB_HTTP_DONE) {
        CHECK(used == before, "NEED_MORE after %zu of %zu bytes", used, before);
        break;
      }
      CHECK(heads == dones + 1, "DONE without HEAD");
      dones++;
      size_t again;
      CHECK(sb_http_feed(&r, pend, plen, &again) == SB_HTTP_DONE && again == 0,
            "DONE until sb_http_next");
      const char *host = sb_http_header(&r, "Host");
      sb_strbuf_appendf(&sb, "%s %s %s %d %zu:", sb_http_method(&r), sb_http_url(&r),
                        host ? host : "-", r.upgrade, r.body_len);
      for (size_t i = 0; i < r.body_len && !sb_strbuf_overflowed(&sb); i++)
        sb_strbuf_appendf(&sb, "%02x", r.body[i]);
      sb_strbuf_appends(&sb, ";");
      sb_http_next(&r);
    }
  }
  free(pend);
  sb_http_free(&r);
  CHECK(live == 0, "%ld block(s) leaked", live);
  return sb.len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t cut = size > 1 ? data[0] % size : 0;
  const uint8_t *in = data + 1;
  size_t n = size - 1;
  if (cut > n) cut = n;
  static char a[8192], b[8192];
  size_t la = run(in, n, n, 0, a, sizeof(a));
  size_t lb = run(in, n, cut, 0, b, sizeof(b));
  CHECK(la == lb && memcmp(a, b, la) == 0, "split at %zu:\n  whole: %s\n  split: %s", cut, a, b);
  if (n <= 1024) {
    lb = run(in, n, 0, 1, b, sizeof(b));
    CHECK(la == lb && memcmp(a, b, la) == 0, "byte by byte:\n  whole: %s\n  bytes: %s", a, b);
  }
  return 0;
}
