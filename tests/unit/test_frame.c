/*
 * test_frame.c — the RFC 6455 frame parser and writer (src/ws/frame.h).
 *
 * Each test stream is built here byte by byte from RFC 6455 §5.2 (not with sb_frame_header),
 * together with the list of frames it must produce: opcode, FIN, length and the unmasked
 * payload. The parser is then fed the stream in one piece, split at every position into two
 * feeds, one byte at a time, and in pseudo-random pieces, each piece copied into its own
 * exact-size heap buffer so that AddressSanitizer sees any read past it (the picohttpparser
 * guard-page idea). For every way of feeding, the chunks must reassemble into exactly the
 * expected frames, with consistent opcode/fin/first/last/frame_len on every chunk and no chunk
 * longer than what remains of its frame.
 *
 * Error streams end with the offending frame's header only — no payload byte — so an error
 * must be reported from the header alone (for 1009 this is the "before any payload is
 * buffered" rule). After an error the parser must keep failing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "ws/frame.h"

/* ---------------------------------------------------------------------------------------- */
/* Byte buffers and streams                                                                   */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
  uint8_t *p;
  size_t n, cap;
} bytes;

static void b_put(bytes *b, const void *d, size_t n) {
  if (b->n + n > b->cap) {
    size_t cap = b->cap ? b->cap : 64;
    while (cap < b->n + n)
      cap *= 2;
    b->p = realloc(b->p, cap);
    assert_non_null(b->p);
    b->cap = cap;
  }
  if (n)
    memcpy(b->p + b->n, d, n);
  b->n += n;
}

static void b_byte(bytes *b, uint8_t v) { b_put(b, &v, 1); }

typedef struct {
  uint8_t opcode, fin;
  uint64_t len;
  uint8_t *payload; /* unmasked; owned */
} xframe;

#define MAX_XFRAMES 64

typedef struct {
  char name[96];
  bytes wire;
  xframe frames[MAX_XFRAMES];
  size_t nframes;
  int expect_masked;
  uint64_t max_message;
  uint16_t error; /* 0: the stream is valid; else the close code of the error at its end */
  unsigned seed;
} stream;

static void stream_init(stream *s, const char *name, int expect_masked, uint64_t max_message) {
  memset(s, 0, sizeof *s);
  snprintf(s->name, sizeof s->name, "%s", name);
  s->expect_masked = expect_masked;
  s->max_message = max_message;
  s->seed = 12345;
}

static void stream_free(stream *s) {
  free(s->wire.p);
  for (size_t i = 0; i < s->nframes; i++)
    free(s->frames[i].payload);
}

static const uint8_t keys[][4] = {
    {0x00, 0x00, 0x00, 0x00}, {0x01, 0x02, 0x03, 0x04}, {0xff, 0xff, 0xff, 0xff},
    {0x37, 0xfa, 0x21, 0x3d}, {0x80, 0x80, 0x80, 0x80}, {0xa1, 0xb2, 0xc3, 0xd4},
    {0x5a, 0x00, 0x00, 0x00}, {0x00, 0xff, 0x00, 0xff},
};
#define NKEYS (sizeof keys / sizeof keys[0])

enum { ENC_AUTO = 0, ENC_7 = 7, ENC_16 = 16, ENC_64 = 64 };

/*
 * Appends one frame to the wire: byte 0 is FIN | RSV | opcode, then the length in the encoding
 * `enc` (ENC_AUTO: the minimal one, §5.2), the key if `key` is not NULL, and the payload masked
 * with it (§5.3). `payload` NULL means pseudo-random bytes (printable for text). With
 * `header_only` no payload byte is written and the frame is not expected (an error frame).
 */
static void add_frame_ex(stream *s, unsigned fin, unsigned rsv, unsigned opcode,
                         const uint8_t *key, uint64_t len, const uint8_t *payload, int enc,
                         int header_only) {
  bytes *w = &s->wire;
  b_byte(w, (uint8_t)((fin ? 0x80 : 0) | (rsv << 4) | opcode));
  uint8_t mbit = key ? 0x80 : 0;
  if (enc == ENC_AUTO)
    enc = len <= 125 ? ENC_7 : len <= 0xFFFF ? ENC_16 : ENC_64;
  if (enc == ENC_7) {
    b_byte(w, (uint8_t)(mbit | len));
  } else if (enc == ENC_16) {
    b_byte(w, mbit | 126);
    b_byte(w, (uint8_t)(len >> 8));
    b_byte(w, (uint8_t)len);
  } else {
    b_byte(w, mbit | 127);
    for (int i = 7; i >= 0; i--)
      b_byte(w, (uint8_t)(len >> (8 * i)));
  }
  if (key)
    b_put(w, key, 4);
  if (header_only)
    return;

  uint8_t *pl = malloc(len ? (size_t)len : 1);
  assert_non_null(pl);
  for (uint64_t i = 0; i < len; i++) {
    if (payload) {
      pl[i] = payload[i];
    } else {
      s->seed = s->seed * 1103515245u + 12345u;
      uint8_t r = (uint8_t)(s->seed >> 16);
      pl[i] = opcode == 0x1 || (opcode == 0 && s->nframes &&
                                s->frames[s->nframes - 1].opcode == 0x1)
                  ? (uint8_t)(' ' + r % 95)
                  : r;
    }
  }
  size_t at = w->n;
  b_put(w, pl, (size_t)len);
  if (key)
    for (uint64_t i = 0; i < len; i++)
      w->p[at + i] ^= key[i % 4];

  assert_true(s->nframes < MAX_XFRAMES);
  xframe *x = &s->frames[s->nframes++];
  x->opcode = (uint8_t)opcode;
  x->fin = (uint8_t)(fin ? 1 : 0);
  x->len = len;
  x->payload = pl;
}

/* A valid frame, masked with the next key when the stream is a client-to-server one. */
static void add_frame(stream *s, unsigned fin, unsigned opcode, uint64_t len,
                      const void *payload) {
  const uint8_t *key = s->expect_masked ? keys[(s->nframes + s->wire.n) % NKEYS] : NULL;
  add_frame_ex(s, fin, 0, opcode, key, len, payload, ENC_AUTO, 0);
}

/* The header of an invalid frame that ends the stream, and the error it must produce. */
static void add_bad_header(stream *s, unsigned fin, unsigned rsv, unsigned opcode, int masked,
                           uint64_t len, int enc, uint16_t error) {
  add_frame_ex(s, fin, rsv, opcode, masked ? keys[3] : NULL, len, NULL, enc, 1);
  s->error = error;
}

/* ---------------------------------------------------------------------------------------- */
/* Feeding and checking                                                                       */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
  const stream *s;
  char mode[64];
  size_t frame;  /* index of the frame being received (or next) */
  uint64_t got;  /* payload bytes of it so far */
  int in_frame;
  int failed;
  uint16_t code;
  size_t chunks;
} checker;

#define CFAIL(c, ...)                                                                        \
  do {                                                                                       \
    char msg_[512];                                                                          \
    snprintf(msg_, sizeof msg_, __VA_ARGS__);                                                \
    fail_msg("stream \"%s\", fed %s: %s", (c)->s->name, (c)->mode, msg_);                    \
  } while (0)

static void on_chunk(checker *c, const sb_frame_event *ev) {
  const stream *s = c->s;
  c->chunks++;
  if (ev->first) {
    if (c->in_frame)
      CFAIL(c, "chunk with first=1 while frame %zu is unfinished (%llu of %llu bytes)", c->frame,
            (unsigned long long)c->got, (unsigned long long)s->frames[c->frame].len);
    if (c->frame >= s->nframes)
      CFAIL(c, "expected %zu frames, got an extra one (opcode %u, fin %u, frame_len %llu)",
            s->nframes, ev->opcode, ev->fin, (unsigned long long)ev->frame_len);
    c->in_frame = 1;
    c->got = 0;
  } else if (!c->in_frame) {
    CFAIL(c, "chunk with first=0 outside a frame (next expected frame %zu)", c->frame);
  }
  const xframe *x = &s->frames[c->frame];
  if (ev->opcode != x->opcode)
    CFAIL(c, "frame %zu: opcode: expected %u, actual %u", c->frame, x->opcode, ev->opcode);
  if (ev->fin != x->fin)
    CFAIL(c, "frame %zu: fin: expected %u, actual %u", c->frame, x->fin, ev->fin);
  if (ev->frame_len != x->len)
    CFAIL(c, "frame %zu: frame_len: expected %llu, actual %llu", c->frame,
          (unsigned long long)x->len, (unsigned long long)ev->frame_len);
  if (ev->len > x->len - c->got)
    CFAIL(c, "frame %zu: chunk of %zu bytes, but only %llu of the frame remain", c->frame,
          ev->len, (unsigned long long)(x->len - c->got));
  if (ev->len == 0 && x->len != 0)
    CFAIL(c, "frame %zu: an empty chunk in a %llu-byte frame (first=%u last=%u)", c->frame,
          (unsigned long long)x->len, ev->first, ev->last);
  if (ev->len && memcmp(ev->data, x->payload + c->got, ev->len) != 0) {
    size_t i = 0;
    while (ev->data[i] == x->payload[c->got + i])
      i++;
    CFAIL(c, "frame %zu: payload byte %llu: expected 0x%02x, actual 0x%02x", c->frame,
          (unsigned long long)(c->got + i), x->payload[c->got + i], ev->data[i]);
  }
  c->got += ev->len;
  if (ev->last) {
    if (c->got != x->len)
      CFAIL(c, "frame %zu: last=1 after %llu of %llu bytes", c->frame,
            (unsigned long long)c->got, (unsigned long long)x->len);
    c->in_frame = 0;
    c->frame++;
  } else if (c->got == x->len) {
    CFAIL(c, "frame %zu: all %llu bytes delivered but last=0", c->frame,
          (unsigned long long)x->len);
  }
}

/* Feeds one piece (copied into its own exact-size buffer). Returns 0, or -1 after an error. */
static int feed_piece(checker *c, sb_frame_parser *p, const uint8_t *src, size_t n) {
  uint8_t *buf = malloc(n ? n : 1);
  assert_non_null(buf);
  if (n)
    memcpy(buf, src, n);
  size_t off = 0;
  size_t calls = 0;
  for (;;) {
    if (++calls > 2 * n + 64)
      CFAIL(c, "no progress: more than %zu calls for a %zu-byte piece", calls - 1, n);
    sb_frame_event ev;
    memset(&ev, 0, sizeof ev);
    sb_frame_status st = (sb_frame_status)-1;
    size_t used = sb_frame_parse(p, buf + off, n - off, &ev, &st);
    if (st == SB_FRAME_ERROR) {
      if (c->s->error == 0)
        CFAIL(c, "expected no error, got SB_FRAME_ERROR close_code %u (%s) at stream offset "
                 "after frame %zu",
              ev.close_code, ev.error ? ev.error : "no text", c->frame);
      if (ev.error == NULL)
        CFAIL(c, "SB_FRAME_ERROR without error text (close_code %u)", ev.close_code);
      c->failed = 1;
      c->code = ev.close_code;
      free(buf);
      return -1;
    }
    if (used > n - off)
      CFAIL(c, "sb_frame_parse consumed %zu bytes of %zu", used, n - off);
    if (st == SB_FRAME_NEED_MORE) {
      if (used != n - off)
        CFAIL(c, "SB_FRAME_NEED_MORE after consuming %zu of %zu bytes", used, n - off);
      break;
    }
    if (st != SB_FRAME_CHUNK)
      CFAIL(c, "unknown status %d", (int)st);
    if (ev.len && (ev.data < buf + off || ev.data + ev.len > buf + off + used))
      CFAIL(c, "chunk data [%p, +%zu) is not inside the %zu bytes consumed at %p", (void *)ev.data,
            ev.len, used, (void *)(buf + off));
    on_chunk(c, &ev);
    off += used;
  }
  free(buf);
  return 0;
}

/* After an error, the parser must refuse a perfectly valid frame. */
static void check_sticky(checker *c, sb_frame_parser *p) {
  uint8_t ok[8] = {0x81, 0x02, 'o', 'k'};
  size_t n = 4;
  if (c->s->expect_masked) {
    uint8_t m[8] = {0x81, 0x82, 1, 2, 3, 4, 'o' ^ 1, 'k' ^ 2};
    memcpy(ok, m, 8);
    n = 8;
  }
  for (int round = 0; round < 2; round++) {
    sb_frame_event ev;
    memset(&ev, 0, sizeof ev);
    sb_frame_status st = (sb_frame_status)-1;
    sb_frame_parse(p, ok, n, &ev, &st);
    if (st != SB_FRAME_ERROR)
      CFAIL(c, "after an error (close_code %u), feeding a valid frame: expected "
               "SB_FRAME_ERROR (%d), actual status %d",
            c->code, SB_FRAME_ERROR, (int)st);
    if (ev.close_code != c->code)
      CFAIL(c, "after an error, the repeated error's close_code: expected %u, actual %u",
            c->code, ev.close_code);
  }
}

/*
 * Feeds the stream in pieces: cut at cuts[0..ncuts) if step is 0, else in pieces of `step`
 * bytes, or pseudo-random sizes when step is (size_t)-1.
 */
static void run_fed(const stream *s, const char *mode, const size_t *cuts, size_t ncuts,
                    size_t step, unsigned rnd) {
  checker c;
  memset(&c, 0, sizeof c);
  c.s = s;
  snprintf(c.mode, sizeof c.mode, "%s", mode);
  sb_frame_parser p;
  sb_frame_parser_init(&p, s->max_message, s->expect_masked);

  size_t n = s->wire.n, at = 0, k = 0;
  int err = 0;
  while (at < n && !err) {
    size_t end;
    if (step == (size_t)-1) {
      rnd = rnd * 1103515245u + 12345u;
      size_t r = (rnd >> 16) % 64;
      end = at + (r < 40 ? r % 5 + 1 : r < 60 ? r * 7 : r * 900);
      if (end > n)
        end = n;
    } else if (step) {
      end = at + step < n ? at + step : n;
    } else {
      end = k < ncuts ? cuts[k++] : n;
    }
    err = feed_piece(&c, &p, s->wire.p + at, end - at);
    at = end;
  }
  /* One empty feed at the end changes nothing. */
  if (!err)
    err = feed_piece(&c, &p, s->wire.p, 0);

  if (s->error) {
    if (!c.failed)
      CFAIL(&c, "expected SB_FRAME_ERROR with close_code %u once the offending header was fed; "
                "actual: no error (%zu of %zu frames before it delivered)",
            s->error, c.frame, s->nframes);
    if (c.code != s->error)
      CFAIL(&c, "close_code: expected %u, actual %u", s->error, c.code);
    if (c.frame != s->nframes || c.in_frame)
      CFAIL(&c, "the error came after %zu of the %zu frames before it", c.frame, s->nframes);
    check_sticky(&c, &p);
  } else {
    if (c.frame != s->nframes || c.in_frame)
      CFAIL(&c, "expected %zu complete frames, got %zu%s", s->nframes, c.frame,
            c.in_frame ? " and an unfinished one" : "");
  }
}

/* The whole battery: one piece, every split into two, byte by byte, random pieces. */
static void run_stream(const stream *s) {
  run_fed(s, "in one piece", NULL, 0, 0, 0);
  for (size_t i = 0; i <= s->wire.n; i++) {
    char mode[64];
    snprintf(mode, sizeof mode, "split at %zu of %zu", i, s->wire.n);
    run_fed(s, mode, &i, 1, 0, 0);
  }
  run_fed(s, "byte by byte", NULL, 0, 1, 0);
  run_fed(s, "in 3-byte pieces", NULL, 0, 3, 0);
  for (unsigned seed = 1; seed <= 8; seed++) {
    char mode[64];
    snprintf(mode, sizeof mode, "in random pieces (seed %u)", seed);
    run_fed(s, mode, NULL, 0, (size_t)-1, seed);
  }
}

/* ---------------------------------------------------------------------------------------- */
/* Valid streams                                                                              */
/* ---------------------------------------------------------------------------------------- */

#define MB (1u << 20)

static void sizes_stream(stream *s, int masked) {
  stream_init(s, masked ? "sizes, masked" : "sizes, unmasked", masked, MB);
  add_frame(s, 1, SB_OP_TEXT, 0, NULL);
  add_frame(s, 1, SB_OP_TEXT, 1, NULL);
  add_frame(s, 1, SB_OP_BINARY, 125, NULL);
  add_frame(s, 1, SB_OP_BINARY, 126, NULL);
  add_frame(s, 1, SB_OP_TEXT, 127, NULL);
  add_frame(s, 1, SB_OP_PING, 0, NULL);
  add_frame(s, 1, SB_OP_PING, 125, NULL);
  add_frame(s, 1, SB_OP_PONG, 1, NULL);
  add_frame(s, 1, SB_OP_BINARY, 0, NULL);
  add_frame(s, 1, SB_OP_TEXT, 300, NULL);
  add_frame(s, 1, SB_OP_CLOSE, 2, "\x03\xe8");
}

static void test_sizes_masked(void **state) {
  (void)state;
  stream s;
  sizes_stream(&s, 1);
  run_stream(&s);
  stream_free(&s);
}

static void test_sizes_unmasked_client_side(void **state) {
  (void)state;
  stream s;
  sizes_stream(&s, 0);
  run_stream(&s);
  stream_free(&s);
}

/* Each key on its own on a 13-byte frame, so that every key meets every mask offset. */
static void test_every_key(void **state) {
  (void)state;
  for (size_t k = 0; k < NKEYS; k++) {
    stream s;
    stream_init(&s, "", 1, MB);
    snprintf(s.name, sizeof s.name, "key %02x%02x%02x%02x", keys[k][0], keys[k][1], keys[k][2],
             keys[k][3]);
    add_frame_ex(&s, 1, 0, SB_OP_BINARY, keys[k], 13, NULL, ENC_AUTO, 0);
    add_frame_ex(&s, 1, 0, SB_OP_TEXT, keys[k], 6, NULL, ENC_AUTO, 0);
    run_stream(&s);
    stream_free(&s);
  }
}

static void big_stream(uint64_t len, unsigned opcode, int masked) {
  stream s;
  char name[64];
  snprintf(name, sizeof name, "%llu-byte %s frame, %s", (unsigned long long)len,
           opcode == SB_OP_TEXT ? "text" : "binary", masked ? "masked" : "unmasked");
  stream_init(&s, name, masked, MB);
  add_frame(&s, 1, opcode, len, NULL);
  add_frame(&s, 1, SB_OP_PING, 3, NULL);
  run_stream(&s);
  stream_free(&s);
}

static void test_len_65535_16bit(void **state) {
  (void)state;
  big_stream(65535, SB_OP_BINARY, 1);
}

static void test_len_65536_64bit(void **state) {
  (void)state;
  big_stream(65536, SB_OP_BINARY, 1);
}

static void test_len_70000_64bit(void **state) {
  (void)state;
  big_stream(70000, SB_OP_TEXT, 1);
}

static void test_len_70000_unmasked_client_side(void **state) {
  (void)state;
  big_stream(70000, SB_OP_BINARY, 0);
}

static void fragmented_stream(stream *s, int masked) {
  stream_init(s, masked ? "fragmented, masked" : "fragmented, unmasked", masked, MB);
  add_frame(s, 0, SB_OP_TEXT, 3, "Hel");
  add_frame(s, 1, SB_OP_PING, 2, "p1");
  add_frame(s, 0, SB_OP_CONT, 4, "lo, ");
  add_frame(s, 1, SB_OP_PONG, 0, NULL);
  add_frame(s, 1, SB_OP_PING, 125, NULL);
  add_frame(s, 1, SB_OP_CONT, 5, "world");
  /* A binary message of empty fragments with a 300-byte one in the middle. */
  add_frame(s, 0, SB_OP_BINARY, 0, NULL);
  add_frame(s, 0, SB_OP_CONT, 0, NULL);
  add_frame(s, 1, SB_OP_PING, 0, NULL);
  add_frame(s, 0, SB_OP_CONT, 300, NULL);
  add_frame(s, 1, SB_OP_CONT, 0, NULL);
  /* A new message may start once the fragmented one is finished. */
  add_frame(s, 1, SB_OP_TEXT, 5, "after");
  add_frame(s, 0, SB_OP_BINARY, 70, NULL);
  add_frame(s, 1, SB_OP_CONT, 1, NULL);
  add_frame(s, 1, SB_OP_CLOSE, 5, "\x03\xe8" "bye");
}

static void test_fragmented_with_control_frames(void **state) {
  (void)state;
  stream s;
  fragmented_stream(&s, 1);
  run_stream(&s);
  stream_free(&s);
}

static void test_fragmented_unmasked_client_side(void **state) {
  (void)state;
  stream s;
  fragmented_stream(&s, 0);
  run_stream(&s);
  stream_free(&s);
}

/* A fragmented message of 65536 + 4 bytes with a ping inside a 16-bit and a 64-bit fragment. */
static void test_fragmented_large(void **state) {
  (void)state;
  stream s;
  stream_init(&s, "fragmented large", 1, MB);
  add_frame(&s, 0, SB_OP_BINARY, 2, NULL);
  add_frame(&s, 0, SB_OP_CONT, 65536, NULL);
  add_frame(&s, 1, SB_OP_PING, 125, NULL);
  add_frame(&s, 1, SB_OP_CONT, 2, NULL);
  run_stream(&s);
  stream_free(&s);
}

/* RFC 6455 §5.7, byte for byte. */
static void test_rfc_5_7_examples(void **state) {
  (void)state;
  static const uint8_t unmasked[] = {
      0x81, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f,       /* "Hello" */
      0x01, 0x03, 0x48, 0x65, 0x6c,                   /* "Hel", FIN=0 */
      0x80, 0x02, 0x6c, 0x6f,                         /* "lo", continuation */
      0x89, 0x05, 0x48, 0x65, 0x6c, 0x6c, 0x6f,       /* ping "Hello" */
      0x82, 0x7E, 0x01, 0x00,                         /* 256 bytes binary (payload follows) */
  };
  stream s;
  stream_init(&s, "RFC 6455 5.7 unmasked", 0, MB);
  b_put(&s.wire, unmasked, sizeof unmasked);
  uint8_t *bin = calloc(1, 65536);
  assert_non_null(bin);
  for (int i = 0; i < 256; i++)
    bin[i] = (uint8_t)i;
  b_put(&s.wire, bin, 256);
  static const uint8_t big_hdr[] = {0x82, 0x7F, 0, 0, 0, 0, 0, 1, 0, 0}; /* 64 KiB */
  b_put(&s.wire, big_hdr, sizeof big_hdr);
  b_put(&s.wire, bin, 65536);
  struct {
    uint8_t op, fin;
    const char *pl;
    uint64_t len;
  } want[] = {{1, 1, "Hello", 5},
              {1, 0, "Hel", 3},
              {0, 1, "lo", 2},
              {9, 1, "Hello", 5},
              {2, 1, NULL, 256},
              {2, 1, NULL, 65536}};
  for (size_t i = 0; i < 6; i++) {
    xframe *x = &s.frames[s.nframes++];
    x->opcode = want[i].op;
    x->fin = want[i].fin;
    x->len = want[i].len;
    x->payload = malloc((size_t)want[i].len);
    memcpy(x->payload, want[i].pl ? (const void *)want[i].pl : bin, (size_t)want[i].len);
  }
  free(bin);
  run_stream(&s);
  stream_free(&s);

  static const uint8_t masked[] = {
      0x81, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58, /* "Hello" masked */
      0x8a, 0x85, 0x37, 0xfa, 0x21, 0x3d, 0x7f, 0x9f, 0x4d, 0x51, 0x58, /* pong "Hello" */
  };
  stream_init(&s, "RFC 6455 5.7 masked", 1, MB);
  b_put(&s.wire, masked, sizeof masked);
  for (size_t i = 0; i < 2; i++) {
    xframe *x = &s.frames[s.nframes++];
    x->opcode = i ? SB_OP_PONG : SB_OP_TEXT;
    x->fin = 1;
    x->len = 5;
    x->payload = malloc(5);
    memcpy(x->payload, "Hello", 5);
  }
  run_stream(&s);
  stream_free(&s);
}

/* Messages of exactly max_message bytes are allowed; control frames do not count. */
static void test_message_of_exactly_max(void **state) {
  (void)state;
  stream s;
  stream_init(&s, "messages of exactly max_message=100", 1, 100);
  add_frame(&s, 1, SB_OP_TEXT, 100, NULL);
  add_frame(&s, 1, SB_OP_BINARY, 100, NULL); /* the count starts again per message */
  add_frame(&s, 0, SB_OP_TEXT, 60, NULL);
  add_frame(&s, 1, SB_OP_PING, 20, NULL); /* not part of the message */
  add_frame(&s, 1, SB_OP_CONT, 40, NULL);
  add_frame(&s, 0, SB_OP_BINARY, 0, NULL);
  add_frame(&s, 0, SB_OP_CONT, 100, NULL);
  add_frame(&s, 1, SB_OP_CONT, 0, NULL);
  run_stream(&s);
  stream_free(&s);
}

/* ---------------------------------------------------------------------------------------- */
/* Error streams                                                                              */
/* ---------------------------------------------------------------------------------------- */

static void test_unmasked_client_frame(void **state) {
  (void)state;
  stream s;
  stream_init(&s, "unmasked frame to a server", 1, MB);
  add_frame(&s, 1, SB_OP_TEXT, 2, "hi");
  add_bad_header(&s, 1, 0, SB_OP_TEXT, 0, 2, ENC_AUTO, 1002);
  run_stream(&s);
  stream_free(&s);

  stream_init(&s, "unmasked empty ping to a server", 1, MB);
  add_bad_header(&s, 1, 0, SB_OP_PING, 0, 0, ENC_AUTO, 1002);
  run_stream(&s);
  stream_free(&s);
}

/* §5.1: "A client MUST close a connection if it detects a masked frame." */
static void test_masked_server_frame(void **state) {
  (void)state;
  stream s;
  stream_init(&s, "masked frame to a client", 0, MB);
  add_frame(&s, 1, SB_OP_TEXT, 2, "hi");
  add_bad_header(&s, 1, 0, SB_OP_TEXT, 1, 2, ENC_AUTO, 1002);
  run_stream(&s);
  stream_free(&s);
}

static void test_rsv_bits(void **state) {
  (void)state;
  for (unsigned rsv = 1; rsv <= 7; rsv++) {
    static const unsigned ops[] = {SB_OP_TEXT, SB_OP_BINARY, SB_OP_PING, SB_OP_CLOSE};
    for (size_t o = 0; o < 4; o++) {
      stream s;
      char name[64];
      snprintf(name, sizeof name, "RSV bits %u%u%u on opcode %u", rsv >> 2 & 1, rsv >> 1 & 1,
               rsv & 1, ops[o]);
      stream_init(&s, name, 1, MB);
      add_frame(&s, 1, SB_OP_BINARY, 3, NULL);
      add_bad_header(&s, 1, rsv, ops[o], 1, 1, ENC_AUTO, 1002);
      run_stream(&s);
      stream_free(&s);
    }
    /* On a continuation frame. */
    stream s;
    char name[64];
    snprintf(name, sizeof name, "RSV bits %u on a continuation", rsv);
    stream_init(&s, name, 1, MB);
    add_frame(&s, 0, SB_OP_TEXT, 3, NULL);
    add_bad_header(&s, 1, rsv, SB_OP_CONT, 1, 1, ENC_AUTO, 1002);
    run_stream(&s);
    stream_free(&s);
  }
}

static void test_reserved_opcodes(void **state) {
  (void)state;
  static const unsigned ops[] = {3, 4, 5, 6, 7, 0xB, 0xC, 0xD, 0xE, 0xF};
  for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
    for (unsigned fin = 0; fin <= 1; fin++) {
      stream s;
      char name[64];
      snprintf(name, sizeof name, "reserved opcode 0x%X, fin %u", ops[i], fin);
      stream_init(&s, name, 1, MB);
      add_frame(&s, 1, SB_OP_TEXT, 4, NULL);
      add_bad_header(&s, fin, 0, ops[i], 1, 0, ENC_AUTO, 1002);
      run_stream(&s);
      stream_free(&s);
    }
  }
}

static void test_fragmented_control_frame(void **state) {
  (void)state;
  static const unsigned ops[] = {SB_OP_CLOSE, SB_OP_PING, SB_OP_PONG};
  for (size_t i = 0; i < 3; i++) {
    stream s;
    char name[64];
    snprintf(name, sizeof name, "control opcode 0x%X with FIN=0", ops[i]);
    stream_init(&s, name, 1, MB);
    add_bad_header(&s, 0, 0, ops[i], 1, 2, ENC_AUTO, 1002);
    run_stream(&s);
    stream_free(&s);
  }
}

static void test_control_frame_too_long(void **state) {
  (void)state;
  static const struct {
    unsigned op;
    uint64_t len;
    int enc;
  } cases[] = {
      {SB_OP_PING, 126, ENC_16},   {SB_OP_CLOSE, 126, ENC_16}, {SB_OP_PONG, 126, ENC_16},
      {SB_OP_PING, 65535, ENC_16}, {SB_OP_PING, 200, ENC_64},  {SB_OP_CLOSE, 70000, ENC_64},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    stream s;
    char name[64];
    snprintf(name, sizeof name, "control opcode 0x%X with length %llu (%d-bit)", cases[i].op,
             (unsigned long long)cases[i].len, cases[i].enc);
    stream_init(&s, name, 1, MB);
    add_frame(&s, 1, SB_OP_PING, 125, NULL);
    add_bad_header(&s, 1, 0, cases[i].op, 1, cases[i].len, cases[i].enc, 1002);
    run_stream(&s);
    stream_free(&s);
  }
}

static void test_continuation_without_message(void **state) {
  (void)state;
  stream s;
  stream_init(&s, "continuation (FIN=1) as the first frame", 1, MB);
  add_bad_header(&s, 1, 0, SB_OP_CONT, 1, 3, ENC_AUTO, 1002);
  run_stream(&s);
  stream_free(&s);

  stream_init(&s, "continuation (FIN=0) as the first frame", 1, MB);
  add_bad_header(&s, 0, 0, SB_OP_CONT, 1, 3, ENC_AUTO, 1002);
  run_stream(&s);
  stream_free(&s);

  stream_init(&s, "continuation after a finished message", 1, MB);
  add_frame(&s, 0, SB_OP_TEXT, 3, NULL);
  add_frame(&s, 1, SB_OP_CONT, 3, NULL);
  add_frame(&s, 1, SB_OP_PING, 1, NULL);
  add_bad_header(&s, 1, 0, SB_OP_CONT, 1, 3, ENC_AUTO, 1002);
  run_stream(&s);
  stream_free(&s);

  stream_init(&s, "continuation after an unfragmented message", 1, MB);
  add_frame(&s, 1, SB_OP_BINARY, 3, NULL);
  add_bad_header(&s, 0, 0, SB_OP_CONT, 1, 0, ENC_AUTO, 1002);
  run_stream(&s);
  stream_free(&s);
}

static void test_data_frame_inside_fragmented_message(void **state) {
  (void)state;
  static const unsigned first[] = {SB_OP_TEXT, SB_OP_BINARY};
  static const unsigned second[] = {SB_OP_TEXT, SB_OP_BINARY};
  for (size_t a = 0; a < 2; a++) {
    for (size_t b = 0; b < 2; b++) {
      for (unsigned fin = 0; fin <= 1; fin++) {
        for (int ping = 0; ping <= 1; ping++) {
          stream s;
          char name[96];
          snprintf(name, sizeof name, "opcode %u (FIN=%u) inside a fragmented opcode %u%s",
                   second[b], fin, first[a], ping ? " after a ping" : "");
          stream_init(&s, name, 1, MB);
          add_frame(&s, 0, first[a], 4, NULL);
          add_frame(&s, 0, SB_OP_CONT, 4, NULL);
          if (ping)
            add_frame(&s, 1, SB_OP_PING, 4, NULL);
          add_bad_header(&s, fin, 0, second[b], 1, 4, ENC_AUTO, 1002);
          run_stream(&s);
          stream_free(&s);
        }
      }
    }
  }
}

static void test_64bit_length_top_bit(void **state) {
  (void)state;
  static const uint64_t lens[] = {0x8000000000000000ull, 0xFFFFFFFFFFFFFFFFull,
                                  0x8000000000000005ull};
  static const uint64_t maxes[] = {UINT64_MAX, MB};
  for (size_t l = 0; l < 3; l++) {
    for (size_t m = 0; m < 2; m++) {
      stream s;
      char name[96];
      snprintf(name, sizeof name, "64-bit length 0x%016llx, max_message %llu",
               (unsigned long long)lens[l], (unsigned long long)maxes[m]);
      stream_init(&s, name, 1, maxes[m]);
      add_frame(&s, 1, SB_OP_TEXT, 1, NULL);
      add_bad_header(&s, 1, 0, SB_OP_BINARY, 1, lens[l], ENC_64, 1002);
      run_stream(&s);
      stream_free(&s);
    }
  }
}

static void test_frame_over_max_message(void **state) {
  (void)state;
  static const struct {
    uint64_t max, len;
    int masked;
  } cases[] = {
      {1000, 1001, 1}, {1000, 1ull << 40, 1}, {65535, 65536, 1},
      {125, 126, 1},   {1000, 1001, 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    stream s;
    char name[96];
    snprintf(name, sizeof name, "%llu-byte frame, max_message %llu, %s",
             (unsigned long long)cases[i].len, (unsigned long long)cases[i].max,
             cases[i].masked ? "masked" : "unmasked");
    stream_init(&s, name, cases[i].masked, cases[i].max);
    if (cases[i].max)
      add_frame(&s, 1, SB_OP_BINARY, cases[i].max, NULL); /* exactly the limit: fine */
    add_bad_header(&s, 1, 0, SB_OP_BINARY, cases[i].masked, cases[i].len, ENC_AUTO, 1009);
    run_stream(&s);
    stream_free(&s);
  }
}

static void test_fragmented_message_over_max(void **state) {
  (void)state;
  for (unsigned fin = 0; fin <= 1; fin++) {
    stream s;
    char name[96];
    snprintf(name, sizeof name, "fragments 60 + 41 (FIN=%u) with a ping between, max 100", fin);
    stream_init(&s, name, 1, 100);
    add_frame(&s, 0, SB_OP_TEXT, 60, NULL);
    add_frame(&s, 1, SB_OP_PING, 20, NULL);
    add_bad_header(&s, fin, 0, SB_OP_CONT, 1, 41, ENC_AUTO, 1009);
    run_stream(&s);
    stream_free(&s);
  }
  stream s;
  stream_init(&s, "fragments 100 + 0 + 1, max 100", 1, 100);
  add_frame(&s, 0, SB_OP_BINARY, 100, NULL);
  add_frame(&s, 0, SB_OP_CONT, 0, NULL);
  add_bad_header(&s, 1, 0, SB_OP_CONT, 1, 1, ENC_AUTO, 1009);
  run_stream(&s);
  stream_free(&s);

  stream_init(&s, "fragments 70000 + 65536 (64-bit), max 135535", 1, 135535);
  add_frame(&s, 0, SB_OP_BINARY, 70000, NULL);
  add_bad_header(&s, 1, 0, SB_OP_CONT, 1, 65536, ENC_AUTO, 1009);
  run_fed(&s, "in one piece", NULL, 0, 0, 0);
  run_fed(&s, "byte by byte", NULL, 0, 1, 0);
  for (size_t i = 69990; i <= s.wire.n; i++) {
    char mode[64];
    snprintf(mode, sizeof mode, "split at %zu of %zu", i, s.wire.n);
    run_fed(&s, mode, &i, 1, 0, 0);
  }
  stream_free(&s);
}

/* ---------------------------------------------------------------------------------------- */
/* The writer                                                                                 */
/* ---------------------------------------------------------------------------------------- */

static void test_frame_header_bytes(void **state) {
  (void)state;
  static const uint64_t lens[] = {0,     1,     125,   126,         127,
                                  65535, 65536, 70000, 1ull << 32, (1ull << 63) - 1};
  static const unsigned ops[] = {SB_OP_TEXT, SB_OP_BINARY, SB_OP_CONT, SB_OP_PING, SB_OP_CLOSE};
  for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
    for (size_t o = 0; o < sizeof ops / sizeof ops[0]; o++) {
      for (int fin = 0; fin <= 1; fin++) {
        for (int masked = 0; masked <= 1; masked++) {
          uint64_t len = lens[l];
          const uint8_t *key = masked ? keys[(l + o) % NKEYS] : NULL;
          uint8_t want[14];
          size_t wn = 0;
          want[wn++] = (uint8_t)((fin ? 0x80 : 0) | ops[o]);
          uint8_t mbit = masked ? 0x80 : 0;
          if (len <= 125) {
            want[wn++] = (uint8_t)(mbit | len);
          } else if (len <= 0xFFFF) {
            want[wn++] = mbit | 126;
            want[wn++] = (uint8_t)(len >> 8);
            want[wn++] = (uint8_t)len;
          } else {
            want[wn++] = mbit | 127;
            for (int i = 7; i >= 0; i--)
              want[wn++] = (uint8_t)(len >> (8 * i));
          }
          if (masked) {
            memcpy(want + wn, key, 4);
            wn += 4;
          }
          size_t expect_len = (len <= 125 ? 2 : len <= 0xFFFF ? 4 : 10) + (masked ? 4 : 0);
          assert_int_equal(wn, expect_len);

          uint8_t out[32];
          memset(out, 0xEE, sizeof out);
          size_t n = sb_frame_header(out, ops[o], fin, len, key);
          if (n != wn)
            fail_msg("sb_frame_header(op %u, fin %d, len %llu, %s): length: expected %zu, "
                     "actual %zu",
                     ops[o], fin, (unsigned long long)len, masked ? "masked" : "unmasked", wn, n);
          for (size_t i = 0; i < wn; i++)
            if (out[i] != want[i])
              fail_msg("sb_frame_header(op %u, fin %d, len %llu, %s): byte %zu: expected "
                       "0x%02x, actual 0x%02x",
                       ops[o], fin, (unsigned long long)len, masked ? "masked" : "unmasked", i,
                       want[i], out[i]);
          for (size_t i = wn; i < sizeof out; i++)
            if (out[i] != 0xEE)
              fail_msg("sb_frame_header(len %llu) wrote byte %zu past its %zu-byte header",
                       (unsigned long long)len, i, wn);
        }
      }
    }
  }
}

/* sb_frame_header + sb_frame_mask produce frames the parser reads back. */
static void test_header_mask_round_trip(void **state) {
  (void)state;
  static const uint64_t lens[] = {0, 1, 2, 3, 4, 5, 125, 126, 127, 65535, 65536, 70000};
  for (size_t l = 0; l < sizeof lens / sizeof lens[0]; l++) {
    for (int masked = 0; masked <= 1; masked++) {
      for (size_t k = 0; k < (masked ? NKEYS : 1); k++) {
        size_t len = (size_t)lens[l];
        uint8_t *orig = malloc(len + 1);
        uint8_t *wire = malloc(len + 14);
        assert_non_null(orig);
        assert_non_null(wire);
        for (size_t i = 0; i < len; i++)
          orig[i] = (uint8_t)(i * 7 + 3);
        const uint8_t *key = masked ? keys[k] : NULL;
        size_t h = sb_frame_header(wire, SB_OP_BINARY, 1, len, key);
        memcpy(wire + h, orig, len);
        if (masked) {
          unsigned off = sb_frame_mask(wire + h, len, key, 0);
          assert_int_equal(off, len % 4);
          for (size_t i = 0; i < len; i++)
            if (wire[h + i] != (orig[i] ^ key[i % 4]))
              fail_msg("sb_frame_mask, %zu bytes: byte %zu: expected 0x%02x, actual 0x%02x", len,
                       i, orig[i] ^ key[i % 4], wire[h + i]);
        }
        sb_frame_parser p;
        sb_frame_parser_init(&p, MB, masked);
        sb_frame_event ev;
        sb_frame_status st;
        size_t used = sb_frame_parse(&p, wire, h + len, &ev, &st);
        if (st != SB_FRAME_CHUNK || used != h + len || ev.len != len || !ev.first || !ev.last ||
            ev.frame_len != len || ev.opcode != SB_OP_BINARY || ev.fin != 1)
          fail_msg("round trip of a %zu-byte %s frame: expected one whole chunk (status %d, "
                   "consumed %zu, len %zu, first 1, last 1, opcode 2, fin 1); actual status %d, "
                   "consumed %zu, len %zu, first %u, last %u, opcode %u, fin %u",
                   len, masked ? "masked" : "unmasked", SB_FRAME_CHUNK, h + len, len, (int)st,
                   used, ev.len, ev.first, ev.last, ev.opcode, ev.fin);
        if (len && memcmp(ev.data, orig, len) != 0)
          fail_msg("round trip of a %zu-byte %s frame: payload differs", len,
                   masked ? "masked" : "unmasked");
        free(orig);
        free(wire);
      }
    }
  }
}

static void test_mask_offsets(void **state) {
  (void)state;
  /* RFC 6455 §5.7: "Hello" masked with 37 fa 21 3d. */
  uint8_t hello[5] = {'H', 'e', 'l', 'l', 'o'};
  static const uint8_t want[5] = {0x7f, 0x9f, 0x4d, 0x51, 0x58};
  assert_int_equal(sb_frame_mask(hello, 5, keys[3], 0), 1);
  assert_memory_equal(hello, want, 5);

  /* Masking in two parts, carrying the offset, equals masking in one; twice is identity. */
  uint8_t orig[67], one[67], two[67];
  for (size_t i = 0; i < sizeof orig; i++)
    orig[i] = (uint8_t)(i * 31 + 1);
  for (size_t k = 0; k < NKEYS; k++) {
    for (unsigned start = 0; start < 4; start++) {
      memcpy(one, orig, sizeof orig);
      unsigned end = sb_frame_mask(one, sizeof one, keys[k], start);
      assert_int_equal(end, (start + sizeof one) % 4);
      for (size_t i = 0; i < sizeof one; i++)
        if (one[i] != (orig[i] ^ keys[k][(start + i) % 4]))
          fail_msg("sb_frame_mask from offset %u: byte %zu: expected 0x%02x, actual 0x%02x",
                   start, i, orig[i] ^ keys[k][(start + i) % 4], one[i]);
      for (size_t cut = 0; cut <= sizeof orig; cut++) {
        memcpy(two, orig, sizeof orig);
        unsigned mid = sb_frame_mask(two, cut, keys[k], start);
        assert_int_equal(mid, (start + cut) % 4);
        unsigned fin = sb_frame_mask(two + cut, sizeof two - cut, keys[k], mid);
        assert_int_equal(fin, end);
        assert_memory_equal(one, two, sizeof one);
      }
      sb_frame_mask(one, sizeof one, keys[k], start);
      assert_memory_equal(one, orig, sizeof orig);
    }
  }
  assert_int_equal(sb_frame_mask(NULL, 0, keys[1], 3), 3);
}

/* ---------------------------------------------------------------------------------------- */
/* Close codes (RFC 6455 §7.4, IANA "WebSocket Close Code Number Registry")                  */
/* ---------------------------------------------------------------------------------------- */

static void test_close_codes(void **state) {
  (void)state;
  for (unsigned code = 0; code < 70000; code++) {
    int want;
    if (code >= 1000 && code <= 1003)
      want = 1;
    else if (code >= 1004 && code <= 1006) /* reserved; 1005/1006 must not be sent */
      want = 0;
    else if (code >= 1007 && code <= 1014) /* 1012-1014 registered with IANA */
      want = 1;
    else if (code >= 1015 && code <= 2999) /* 1015 must not be sent; the rest unassigned */
      want = 0;
    else if (code >= 3000 && code <= 4999) /* registered libraries and private use */
      want = 1;
    else
      want = 0;
    int got = sb_close_code_valid(code);
    if (got != want)
      fail_msg("sb_close_code_valid(%u): expected %d, actual %d", code, want, got);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sizes_masked),
      cmocka_unit_test(test_sizes_unmasked_client_side),
      cmocka_unit_test(test_every_key),
      cmocka_unit_test(test_len_65535_16bit),
      cmocka_unit_test(test_len_65536_64bit),
      cmocka_unit_test(test_len_70000_64bit),
      cmocka_unit_test(test_len_70000_unmasked_client_side),
      cmocka_unit_test(test_fragmented_with_control_frames),
      cmocka_unit_test(test_fragmented_unmasked_client_side),
      cmocka_unit_test(test_fragmented_large),
      cmocka_unit_test(test_rfc_5_7_examples),
      cmocka_unit_test(test_message_of_exactly_max),
      cmocka_unit_test(test_unmasked_client_frame),
      cmocka_unit_test(test_masked_server_frame),
      cmocka_unit_test(test_rsv_bits),
      cmocka_unit_test(test_reserved_opcodes),
      cmocka_unit_test(test_fragmented_control_frame),
      cmocka_unit_test(test_control_frame_too_long),
      cmocka_unit_test(test_continuation_without_message),
      cmocka_unit_test(test_data_frame_inside_fragmented_message),
      cmocka_unit_test(test_64bit_length_top_bit),
      cmocka_unit_test(test_frame_over_max_message),
      cmocka_unit_test(test_fragmented_message_over_max),
      cmocka_unit_test(test_frame_header_bytes),
      cmocka_unit_test(test_header_mask_round_trip),
      cmocka_unit_test(test_mask_offsets),
      cmocka_unit_test(test_close_codes),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
