/*
 * fuzz_handshake.c — libFuzzer target for the upgrade-request parser (src/ws/handshake.h).
 *
 * Input layout: byte 0 picks the split position, byte 1 the header limit (64, 256, 1024 or
 * 8192 bytes); the rest is what a client sent. It is fed in one piece, in two pieces split at
 * the chosen position, and (when short) one byte at a time, each piece in its own exact-size
 * heap buffer. Every way must reach the same result, status, accept value and consumed count,
 * and each feed must obey the contract of handshake.h. Any difference aborts. The allocator
 * counts blocks so that a leak aborts too.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws/handshake.h"

#define CHECK(cond, ...)                                                                     \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      fprintf(stderr, "fuzz_handshake: check failed: %s: ", #cond);                          \
      fprintf(stderr, __VA_ARGS__);                                                          \
      fprintf(stderr, "\n");                                                                 \
      abort();                                                                               \
    }                                                                                        \
  } while (0)

static void *counting_realloc(void *p, size_t n, void *ctx) {
  long *live = ctx;
  if (n == 0) {
    if (p)
      (*live)--;
    free(p);
    return NULL;
  }
  void *q = realloc(p, n);
  if (q && !p)
    (*live)++;
  return q;
}

typedef struct {
  sb_hs_result result;
  int status;
  char accept[29];
  size_t consumed;
} outcome;

/* Feeds s[0..n) cut at `cut` (step 0) or in `step`-byte pieces. */
static outcome run(const uint8_t *s, size_t n, size_t max_bytes, size_t cut, size_t step) {
  outcome o;
  memset(&o, 0, sizeof o);
  long live = 0;
  sb_handshake h;
  sb_handshake_init(&h, max_bytes, counting_realloc, &live);
  size_t at = 0;
  o.result = SB_HS_NEED_MORE;
  while (at < n) {
    size_t end = step ? (at + step < n ? at + step : n) : (at < cut ? cut : n);
    size_t len = end - at;
    uint8_t *piece = malloc(len ? len : 1);
    CHECK(piece != NULL, "out of memory");
    memcpy(piece, s + at, len);
    size_t consumed = (size_t)-1;
    sb_hs_result r = sb_handshake_feed(&h, piece, len, &consumed);
    free(piece);
    CHECK(r == SB_HS_NEED_MORE || r == SB_HS_UPGRADE || r == SB_HS_HTTP || r == SB_HS_REJECT,
          "result %d", (int)r);
    CHECK(consumed <= len, "consumed %zu of %zu", consumed, len);
    o.consumed += consumed;
    if (r == SB_HS_NEED_MORE) {
      CHECK(consumed == len, "NEED_MORE after consuming %zu of %zu", consumed, len);
      at = end;
      continue;
    }
    o.result = r;
    if (r == SB_HS_REJECT) {
      o.status = h.status;
      CHECK(h.status == 400 || h.status == 426 || h.status == 431 || h.status == 500 ||
                h.status == 501 || h.status == 505,
            "status %d", h.status);
      CHECK(h.error != NULL, "no error text");
    } else {
      /* The head was read to its end, within the limit. */
      CHECK(o.consumed <= max_bytes, "consumed %zu over the %zu-byte limit", o.consumed,
            max_bytes);
      CHECK(o.consumed > 0 && s[o.consumed - 1] == '\n',
            "the head does not end with a line feed at %zu", o.consumed);
      const char *url = sb_handshake_url(&h);
      CHECK(url != NULL, "no url");
      const char *out[16];
      char scratch[256];
      size_t np = sb_handshake_subprotocols(&h, out, 16, scratch, sizeof scratch, NULL);
      for (size_t i = 0; i < np; i++)
        CHECK(out[i] >= scratch && out[i] < scratch + sizeof scratch && out[i][0] != 0,
              "subprotocol %zu", i);
    }
    if (r == SB_HS_UPGRADE) {
      memcpy(o.accept, h.accept, sizeof o.accept);
      CHECK(strlen(h.accept) == 28, "accept of %zu characters", strlen(h.accept));
      const char *key = sb_handshake_header(&h, "Sec-WebSocket-Key");
      CHECK(key != NULL, "upgrade without a key");
      char again[29];
      CHECK(sb_ws_accept_key(key, again) == 0 && strcmp(again, h.accept) == 0,
            "accept does not match the key");
      CHECK(sb_handshake_method(&h) == HTTP_GET, "upgrade with method %d",
            sb_handshake_method(&h));
      CHECK(sb_handshake_header(&h, "Host") != NULL, "upgrade without Host");
    }
    break;
  }
  sb_handshake_free(&h);
  CHECK(live == 0, "%ld block(s) leaked", live);
  return o;
}

static void compare(const outcome *a, const outcome *b, const char *how) {
  CHECK(a->result == b->result, "fed %s: result %d, in one piece %d", how, (int)b->result,
        (int)a->result);
  CHECK(a->status == b->status, "fed %s: status %d, in one piece %d", how, b->status, a->status);
  CHECK(memcmp(a->accept, b->accept, sizeof a->accept) == 0, "fed %s: accept differs", how);
  if (a->result == SB_HS_UPGRADE || a->result == SB_HS_HTTP || a->result == SB_HS_NEED_MORE)
    CHECK(a->consumed == b->consumed, "fed %s: consumed %zu, in one piece %zu", how, b->consumed,
          a->consumed);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  static const size_t limits[4] = {64, 256, 1024, 8192};
  size_t max_bytes = limits[data[1] & 3];
  const uint8_t *s = data + 2;
  size_t n = size - 2;
  size_t cut = (size_t)data[0] * n / 255;

  outcome whole = run(s, n, max_bytes, 0, n ? n : 1);
  outcome split = run(s, n, max_bytes, cut, 0);
  compare(&whole, &split, "in two pieces");
  if (n <= 2048) {
    outcome bytes = run(s, n, max_bytes, 0, 1);
    compare(&whole, &bytes, "byte by byte");
  }
  return 0;
}
