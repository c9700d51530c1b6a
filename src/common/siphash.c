/*
 * siphash.c — SipHash-c-d, written from the paper's description (§2): four 64-bit words of
 * state initialised from the key and four constants, each little-endian 8-byte block of the
 * message mixed in with c SipRounds, the last block carrying the message length in its top
 * byte, then d SipRounds after v2 ^= 0xff, and the four words xored together.
 */
#include "common/siphash.h"

static uint64_t rotl(uint64_t x, unsigned b) { return (x << b) | (x >> (64 - b)); }

static uint64_t load_le(const uint8_t *p, size_t n) {
  uint64_t v = 0;
  for (size_t i = 0; i < n; i++) v |= (uint64_t)p[i] << (8 * i);
  return v;
}

typedef struct sip {
  uint64_t v0, v1, v2, v3;
} sip;

static void rounds(sip *s, int n) {
  for (int i = 0; i < n; i++) {
    s->v0 += s->v1;
    s->v1 = rotl(s->v1, 13);
    s->v1 ^= s->v0;
    s->v0 = rotl(s->v0, 32);
    s->v2 += s->v3;
    s->v3 = rotl(s->v3, 16);
    s->v3 ^= s->v2;
    s->v0 += s->v3;
    s->v3 = rotl(s->v3, 21);
    s->v3 ^= s->v0;
    s->v2 += s->v1;
    s->v1 = rotl(s->v1, 17);
    s->v1 ^= s->v2;
    s->v2 = rotl(s->v2, 32);
  }
}

/* Inlined into the two wrappers, so that c and d are constants there. */
static inline uint64_t siphash(const uint8_t key[16], const uint8_t *in, size_t n, int c, int d) {
  uint64_t k0 = load_le(key, 8), k1 = load_le(key + 8, 8);
  sip s = {k0 ^ 0x736f6d6570736575ull, k1 ^ 0x646f72616e646f6dull, k0 ^ 0x6c7967656e657261ull,
           k1 ^ 0x7465646279746573ull};
  size_t full = n - n % 8;
  for (size_t i = 0; i < full; i += 8) {
    uint64_t m = load_le(in + i, 8); /* compilers turn this into one load on little-endian */
    s.v3 ^= m;
    rounds(&s, c);
    s.v0 ^= m;
  }
  uint64_t last = load_le(in + full, n % 8) | ((uint64_t)(n & 0xff) << 56);
  s.v3 ^= last;
  rounds(&s, c);
  s.v0 ^= last;
  s.v2 ^= 0xff;
  rounds(&s, d);
  return s.v0 ^ s.v1 ^ s.v2 ^ s.v3;
}

uint64_t sb_siphash13(const uint8_t key[16], const void *data, size_t n) {
  return siphash(key, data, n, 1, 3);
}

uint64_t sb_siphash24(const uint8_t key[16], const void *data, size_t n) {
  return siphash(key, data, n, 2, 4);
}
