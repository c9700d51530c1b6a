/*
 * frame.c — RFC 6455 §5 framing: the incremental parser and the header writer.
 *
 * The parser is a two-state machine. In the header state it copies bytes into p->hdr until the
 * header is complete; it checks the first two bytes as soon as they are there (so a reserved
 * opcode or an unmasked frame is refused without waiting for anything else) and the length as
 * soon as the extended length is there (so an oversized frame is refused before one payload
 * byte is buffered). In the payload state it unmasks whatever part of the payload is in the
 * caller's buffer, in place, and hands it out as one chunk. Nothing is ever copied except the
 * at most 14 header bytes, which is what makes it correct for any split of the stream.
 */
#include <string.h>

#include "ws/frame.h"

void sb_frame_parser_init(sb_frame_parser *p, uint64_t max_message, int expect_masked) {
  memset(p, 0, sizeof(*p));
  p->max_message = max_message;
  p->expect_masked = expect_masked ? 1 : 0;
  p->first = 1;
}

static size_t fail(sb_frame_parser *p, sb_frame_event *ev, sb_frame_status *st, uint16_t code,
                   const char *why, size_t consumed) {
  p->failed = 1;
  p->fail_code = code;
  p->fail_error = why;
  ev->close_code = code;
  ev->error = why;
  ev->data = NULL;
  ev->len = 0;
  *st = SB_FRAME_ERROR;
  return consumed;
}

/* Header length implied by the first two bytes: 2 + extended length + mask key. */
static unsigned header_size(const uint8_t *hdr) {
  unsigned len7 = hdr[1] & 0x7f;
  unsigned n = 2 + (len7 == 126 ? 2 : len7 == 127 ? 8 : 0);
  return n + ((hdr[1] & 0x80) ? 4 : 0);
}

/* Checks that need only the first two bytes (§5.2, §5.4, §5.5). Returns NULL or the error. */
static const char *check_start(sb_frame_parser *p) {
  uint8_t b0 = p->hdr[0], b1 = p->hdr[1];
  unsigned op = b0 & 0x0f;
  if (b0 & 0x70) return "reserved bits set without an extension";
  switch (op) {
    case SB_OP_CONT:
      if (!p->fragmented) return "continuation frame without a message to continue";
      break;
    case SB_OP_TEXT:
    case SB_OP_BINARY:
      if (p->fragmented) return "new data frame inside a fragmented message";
      break;
    case SB_OP_CLOSE:
    case SB_OP_PING:
    case SB_OP_PONG:
      if (!(b0 & 0x80)) return "fragmented control frame";
      if ((b1 & 0x7f) > SB_CONTROL_MAX_PAYLOAD) return "control frame payload over 125 bytes";
      break;
    default:
      return "reserved opcode";
  }
  if (((b1 & 0x80) != 0) != (p->expect_masked != 0))
    return p->expect_masked ? "client frame is not masked" : "server frame is masked";
  return NULL;
}

static void end_frame(sb_frame_parser *p) {
  if (!(p->opcode & 0x8)) { /* data or continuation: track the message */
    if (p->fin) {
      p->fragmented = 0;
      p->msg_len = 0;
    } else {
      p->fragmented = 1;
    }
  }
  p->hdr_len = 0;
  p->in_payload = 0;
  p->first = 1;
}

static void fill_event(sb_frame_parser *p, sb_frame_event *ev, uint8_t *data, size_t len) {
  ev->opcode = p->opcode;
  ev->fin = p->fin;
  ev->first = p->first;
  ev->frame_len = p->frame_len;
  ev->data = data;
  ev->len = len;
  ev->close_code = 0;
  ev->error = NULL;
  p->first = 0;
  ev->last = p->remaining == 0;
}

size_t sb_frame_parse(sb_frame_parser *p, uint8_t *buf, size_t len, sb_frame_event *ev,
                      sb_frame_status *st) {
  size_t i = 0;
  if (p->failed) return fail(p, ev, st, p->fail_code, p->fail_error, 0);

  if (!p->in_payload) {
    while (i < len) {
      unsigned need = p->hdr_len < 2 ? 2 : header_size(p->hdr);
      unsigned take = need - p->hdr_len;
      if (take > len - i) take = (unsigned)(len - i);
      memcpy(p->hdr + p->hdr_len, buf + i, take);
      p->hdr_len += take;
      i += take;
      if (p->hdr_len == 2) {
        const char *why = check_start(p);
        if (why) return fail(p, ev, st, 1002, why, i);
        need = header_size(p->hdr);
      }
      if (p->hdr_len == need) break;
    }
    if (p->hdr_len < 2 || p->hdr_len < header_size(p->hdr)) {
      *st = SB_FRAME_NEED_MORE;
      return i;
    }
    /* The header is complete. */
    unsigned len7 = p->hdr[1] & 0x7f, pos = 2;
    uint64_t flen = len7;
    if (len7 == 126) {
      flen = ((uint64_t)p->hdr[2] << 8) | p->hdr[3];
      pos = 4;
    } else if (len7 == 127) {
      if (p->hdr[2] & 0x80) return fail(p, ev, st, 1002, "64-bit length with the top bit set", i);
      flen = 0;
      for (int k = 0; k < 8; k++) flen = (flen << 8) | p->hdr[2 + k];
      pos = 10;
    }
    if (p->hdr[1] & 0x80) memcpy(p->mask, p->hdr + pos, 4);
    else memset(p->mask, 0, 4);
    p->opcode = p->hdr[0] & 0x0f;
    p->fin = p->hdr[0] >> 7;
    if (!(p->opcode & 0x8)) {
      /* Refuse before buffering: the whole message, fragments so far included, must fit. */
      if (flen > p->max_message || p->msg_len > p->max_message - flen)
        return fail(p, ev, st, 1009, "message too big", i);
      p->msg_len += flen;
    }
    p->frame_len = flen;
    p->remaining = flen;
    p->mask_off = 0;
    p->in_payload = 1;
    p->first = 1;
    if (flen == 0) {
      fill_event(p, ev, buf + i, 0);
      end_frame(p);
      *st = SB_FRAME_CHUNK;
      return i;
    }
  }

  size_t avail = len - i;
  if (avail == 0) {
    *st = SB_FRAME_NEED_MORE;
    return i;
  }
  size_t n = avail < p->remaining ? avail : (size_t)p->remaining;
  if (p->hdr[1] & 0x80) p->mask_off = (uint8_t)sb_frame_mask(buf + i, n, p->mask, p->mask_off);
  p->remaining -= n;
  fill_event(p, ev, buf + i, n);
  if (ev->last) end_frame(p);
  *st = SB_FRAME_CHUNK;
  return i + n;
}

/* 16 bytes at a time with GCC/clang vector types (SSE2 on x86-64, NEON on arm64: the
 * baseline, no -m flags needed), four of them per round; then 8 at a time; then bytes. memcpy
 * keeps every access legal for any alignment and compiles to plain unaligned loads. */
#if defined(__GNUC__)
typedef uint8_t sb_v16 __attribute__((vector_size(16)));
#endif

unsigned sb_frame_mask(uint8_t *buf, size_t len, const uint8_t mask[4], unsigned off) {
  uint8_t m[16];
  for (unsigned k = 0; k < 16; k++) m[k] = mask[(off + k) & 3];
  size_t i = 0;
#if defined(__GNUC__)
  if (len >= 16) {
    sb_v16 mv;
    memcpy(&mv, m, 16);
    for (; i + 64 <= len; i += 64) {
      sb_v16 a, b, c, d;
      memcpy(&a, buf + i, 16);
      memcpy(&b, buf + i + 16, 16);
      memcpy(&c, buf + i + 32, 16);
      memcpy(&d, buf + i + 48, 16);
      a ^= mv;
      b ^= mv;
      c ^= mv;
      d ^= mv;
      memcpy(buf + i, &a, 16);
      memcpy(buf + i + 16, &b, 16);
      memcpy(buf + i + 32, &c, 16);
      memcpy(buf + i + 48, &d, 16);
    }
    for (; i + 16 <= len; i += 16) {
      sb_v16 a;
      memcpy(&a, buf + i, 16);
      a ^= mv;
      memcpy(buf + i, &a, 16);
    }
  }
#endif
  if (len - i >= 8) {
    uint64_t m64, w;
    memcpy(&m64, m, 8); /* i is a multiple of 16 here (or 0): the key phase is m[0] */
    for (; i + 8 <= len; i += 8) {
      memcpy(&w, buf + i, 8);
      w ^= m64;
      memcpy(buf + i, &w, 8);
    }
  }
  for (; i < len; i++) buf[i] ^= m[i & 3];
  return (unsigned)((off + len) & 3);
}

size_t sb_frame_header(uint8_t *out, unsigned opcode, int fin, uint64_t len,
                       const uint8_t mask[4]) {
  size_t n;
  uint8_t mbit = mask ? 0x80 : 0;
  out[0] = (uint8_t)((fin ? 0x80 : 0) | (opcode & 0x0f));
  if (len < 126) {
    out[1] = (uint8_t)(mbit | len);
    n = 2;
  } else if (len <= 0xffff) {
    out[1] = mbit | 126;
    out[2] = (uint8_t)(len >> 8);
    out[3] = (uint8_t)len;
    n = 4;
  } else {
    out[1] = mbit | 127;
    for (int k = 0; k < 8; k++) out[2 + k] = (uint8_t)(len >> (56 - 8 * k));
    n = 10;
  }
  if (mask) {
    memcpy(out + n, mask, 4);
    n += 4;
  }
  return n;
}

int sb_close_code_valid(unsigned code) {
  /* §7.4.1 defines 1000-1003 and 1007-1011; IANA has since registered 1012-1014 (service
   * restart, try again later, bad gateway), which Switchboard itself uses. 1004-1006 and 1015
   * must never be sent. 3000-3999 are registered by libraries, 4000-4999 private use. */
  if (code >= 1000 && code <= 1003) return 1;
  if (code >= 1007 && code <= 1014) return 1;
  if (code >= 3000 && code <= 4999) return 1;
  return 0;
}
