/*
 * fuzz_frame.c — libFuzzer target for the frame parser (src/ws/frame.h).
 *
 * Input layout: byte 0 picks the split position, byte 1 the configuration (bit 0: server side,
 * i.e. frames must be masked; bits 1-2: max_message of 125, 1000, 65536 or unlimited); the rest
 * is the byte stream. The stream is parsed three ways — in one piece, in two pieces split at the
 * chosen position, and one byte at a time — each piece in its own exact-size heap buffer. Every
 * way must produce the same frames (opcode, FIN, length, unmasked payload) and the same error,
 * and every chunk must obey the contract of frame.h. Any difference aborts.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ws/frame.h"

#define CHECK(cond, ...)                                                                     \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      fprintf(stderr, "fuzz_frame: check failed: %s: ", #cond);                              \
      fprintf(stderr, __VA_ARGS__);                                                          \
      fprintf(stderr, "\n");                                                                 \
      abort();                                                                               \
    }                                                                                        \
  } while (0)

/* A growing byte log: the normalised record of what the parser produced. */
typedef struct {
  uint8_t *p;
  size_t n, cap;
} buf_t;

static void put(buf_t *b, const void *d, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 256;
    while (cap < b->n + n)
      cap *= 2;
    b->p = realloc(b->p, cap);
    CHECK(b->p != NULL, "out of memory");
    b->cap = cap;
  }
  if (n)
    memcpy(b->p + b->n, d, n);
  b->n += n;
}

typedef struct {
  buf_t log;       /* frames and errors, normalised so chunking does not show */
  buf_t payload;   /* payload of the frame in progress */
  int in_frame;
  uint8_t opcode, fin;
  uint64_t frame_len, got;
  uint64_t msg_bytes; /* data bytes of the current message, for the max_message check */
  uint64_t max_message;
  int failed;
  uint16_t code;
} run_t;

static void put_frame_header(run_t *r) {
  uint8_t rec[11];
  rec[0] = 'F';
  rec[1] = r->opcode;
  rec[2] = r->fin;
  for (int i = 0; i < 8; i++)
    rec[3 + i] = (uint8_t)(r->frame_len >> (8 * i));
  put(&r->log, rec, sizeof rec);
}

static void flush_payload(run_t *r, char tag) {
  uint8_t rec[9];
  rec[0] = (uint8_t)tag;
  for (int i = 0; i < 8; i++)
    rec[1 + i] = (uint8_t)((uint64_t)r->payload.n >> (8 * i));
  put(&r->log, rec, sizeof rec);
  put(&r->log, r->payload.p, r->payload.n);
  r->payload.n = 0;
}

static void on_chunk(run_t *r, const sb_frame_event *ev) {
  unsigned op = ev->opcode;
  CHECK(op <= 2 || (op >= 8 && op <= 10), "opcode %u", op);
  CHECK(ev->fin <= 1 && ev->first <= 1 && ev->last <= 1, "flags %u %u %u", ev->fin, ev->first,
        ev->last);
  if (op >= 8)
    CHECK(ev->fin == 1 && ev->frame_len <= SB_CONTROL_MAX_PAYLOAD,
          "control frame fin %u len %llu", ev->fin, (unsigned long long)ev->frame_len);
  if (ev->first) {
    CHECK(!r->in_frame, "first=1 inside a frame");
    r->in_frame = 1;
    r->opcode = ev->opcode;
    r->fin = ev->fin;
    r->frame_len = ev->frame_len;
    r->got = 0;
    put_frame_header(r);
    if (op < 8) {
      r->msg_bytes += ev->frame_len;
      CHECK(r->msg_bytes <= r->max_message, "message of %llu bytes over max_message %llu",
            (unsigned long long)r->msg_bytes, (unsigned long long)r->max_message);
    }
  } else {
    CHECK(r->in_frame, "first=0 outside a frame");
    CHECK(ev->opcode == r->opcode && ev->fin == r->fin && ev->frame_len == r->frame_len,
          "chunk disagrees with its frame");
  }
  CHECK(ev->len <= ev->frame_len, "chunk of %zu bytes in a %llu-byte frame", ev->len,
        (unsigned long long)ev->frame_len);
  CHECK(ev->len <= r->frame_len - r->got, "chunk of %zu bytes, %llu remain", ev->len,
        (unsigned long long)(r->frame_len - r->got));
  CHECK(ev->len > 0 || r->frame_len == 0, "empty chunk in a %llu-byte frame",
        (unsigned long long)r->frame_len);
  put(&r->payload, ev->data, ev->len);
  r->got += ev->len;
  if (ev->last) {
    CHECK(r->got == r->frame_len, "last=1 after %llu of %llu bytes",
          (unsigned long long)r->got, (unsigned long long)r->frame_len);
    flush_payload(r, 'D');
    r->in_frame = 0;
    if (op < 8 && r->fin)
      r->msg_bytes = 0;
  } else {
    CHECK(r->got < r->frame_len, "all bytes delivered but last=0");
  }
}

/* Feeds one piece. Returns -1 after an error. */
static int feed(run_t *r, sb_frame_parser *p, const uint8_t *src, size_t n) {
  uint8_t *b = malloc(n ? n : 1);
  CHECK(b != NULL, "out of memory");
  if (n)
    memcpy(b, src, n);
  size_t off = 0, calls = 0;
  int ret = 0;
  for (;;) {
    CHECK(++calls <= 2 * n + 8, "no progress");
    sb_frame_event ev;
    memset(&ev, 0, sizeof ev);
    sb_frame_status st = (sb_frame_status)-1;
    size_t used = sb_frame_parse(p, b + off, n - off, &ev, &st);
    CHECK(used <= n - off, "consumed %zu of %zu", used, n - off);
    if (st == SB_FRAME_ERROR) {
      CHECK(ev.close_code == 1002 || ev.close_code == 1009, "close_code %u", ev.close_code);
      CHECK(ev.error != NULL, "no error text");
      r->failed = 1;
      r->code = ev.close_code;
      /* Sticky. */
      uint8_t more[2] = {0x81, 0x00};
      sb_frame_event ev2;
      memset(&ev2, 0, sizeof ev2);
      sb_frame_status st2 = (sb_frame_status)-1;
      sb_frame_parse(p, more, sizeof more, &ev2, &st2);
      CHECK(st2 == SB_FRAME_ERROR && ev2.close_code == r->code, "error not sticky");
      ret = -1;
      break;
    }
    if (st == SB_FRAME_NEED_MORE) {
      CHECK(used == n - off, "NEED_MORE after %zu of %zu bytes", used, n - off);
      break;
    }
    CHECK(st == SB_FRAME_CHUNK, "status %d", (int)st);
    if (ev.len)
      CHECK(ev.data >= b + off && ev.data + ev.len <= b + off + used,
            "chunk outside the consumed bytes");
    on_chunk(r, &ev);
    off += used;
  }
  free(b);
  return ret;
}

static void finish(run_t *r) {
  if (r->in_frame)
    flush_payload(r, 'P'); /* the unfinished frame's bytes so far */
  if (r->failed) {
    uint8_t rec[3] = {'E', (uint8_t)r->code, (uint8_t)(r->code >> 8)};
    put(&r->log, rec, sizeof rec);
  }
}

static void run_init(run_t *r, uint64_t max_message) {
  memset(r, 0, sizeof *r);
  r->max_message = max_message;
}

static void run_free(run_t *r) {
  free(r->log.p);
  free(r->payload.p);
}

static void compare(const run_t *a, const run_t *b, const char *how) {
  CHECK(a->log.n == b->log.n && memcmp(a->log.p, b->log.p, a->log.n) == 0,
        "fed %s, the events differ from one piece (log %zu vs %zu bytes)", how, b->log.n,
        a->log.n);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 2)
    return 0;
  static const uint64_t maxes[4] = {125, 1000, 65536, UINT64_MAX};
  uint8_t split_byte = data[0];
  int masked = data[1] & 1;
  uint64_t max_message = maxes[(data[1] >> 1) & 3];
  const uint8_t *s = data + 2;
  size_t n = size - 2;
  size_t cut = (size_t)split_byte * n / 255;

  sb_frame_parser p;
  run_t whole, split, bytes;

  run_init(&whole, max_message);
  sb_frame_parser_init(&p, max_message, masked);
  if (feed(&whole, &p, s, n) == 0)
    feed(&whole, &p, s, 0);
  finish(&whole);

  run_init(&split, max_message);
  sb_frame_parser_init(&p, max_message, masked);
  if (feed(&split, &p, s, cut) == 0)
    feed(&split, &p, s + cut, n - cut);
  finish(&split);
  compare(&whole, &split, "in two pieces");

  run_init(&bytes, max_message);
  sb_frame_parser_init(&p, max_message, masked);
  for (size_t i = 0; i < n; i++)
    if (feed(&bytes, &p, s + i, 1) != 0)
      break;
  finish(&bytes);
  compare(&whole, &bytes, "byte by byte");

  run_free(&whole);
  run_free(&split);
  run_free(&bytes);
  return 0;
}
