/*
 * varint.h — unsigned LEB128 varints, the length prefix of the schema codec (codec.c gives the
 * rules): 7 bits per byte, least significant group first, the high bit set on every byte but
 * the last.
 *
 * The reader accepts only the one minimal encoding of each value, so that every value has
 * exactly one wire form and a decoded message re-encodes to the same bytes. It never reads
 * past `len`.
 */
#ifndef SB_CODEC_VARINT_H
#define SB_CODEC_VARINT_H

#include <stddef.h>
#include <stdint.h>

/* 2^64 - 1 needs ten 7-bit groups; the tenth holds only bit 63. */
#define SB_VARINT_MAX 10

enum {
  SB_VARINT_OK = 0,
  SB_VARINT_TRUNCATED = 1,   /* the input ends while the high bit says "more" */
  SB_VARINT_TOO_LONG = 2,    /* the tenth byte has the high bit set: 11 bytes or more */
  SB_VARINT_OVERFLOW = 3,    /* the tenth byte is above 0x01: the value is 2^64 or more */
  SB_VARINT_NOT_MINIMAL = 4  /* a multi-byte varint whose last byte is 0x00 */
};

/* Reads a varint from in[0..len). On SB_VARINT_OK sets *value and *used (1..10); otherwise
 * leaves them alone and returns why the bytes are not a varint. */
static inline int sb_varint_read(const uint8_t *in, size_t len, uint64_t *value, size_t *used) {
  uint64_t v = 0;
  for (size_t i = 0; i < SB_VARINT_MAX; i++) {
    if (i == len) return SB_VARINT_TRUNCATED;
    uint8_t b = in[i];
    if (i == SB_VARINT_MAX - 1 && b > 0x01)
      return (b & 0x80) ? SB_VARINT_TOO_LONG : SB_VARINT_OVERFLOW;
    v |= (uint64_t)(b & 0x7f) << (7 * i);
    if (!(b & 0x80)) {
      /* A last byte of 0 adds nothing: the same value had a shorter form. */
      if (b == 0 && i > 0) return SB_VARINT_NOT_MINIMAL;
      *value = v;
      *used = i + 1;
      return SB_VARINT_OK;
    }
  }
  return SB_VARINT_TOO_LONG; /* not reached: the tenth byte always returns above */
}

/* Bytes the minimal encoding of v takes (1..10). */
static inline size_t sb_varint_size(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}

/* Writes the minimal encoding of v to out (which must have sb_varint_size(v) bytes); returns
 * the number of bytes written. */
static inline size_t sb_varint_write(uint8_t *out, uint64_t v) {
  size_t n = 0;
  while (v >= 0x80) {
    out[n++] = (uint8_t)(v | 0x80);
    v >>= 7;
  }
  out[n++] = (uint8_t)v;
  return n;
}

#endif
