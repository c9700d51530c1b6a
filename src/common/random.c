#include <string.h>

#include <openssl/rand.h>

#include "engine/engine.h"

int sb_random_bytes(void *out, size_t n) {
  return RAND_bytes(out, (int)n) == 1 ? 0 : SB_EIO;
}

uint64_t sb_random_epoch(void) {
  uint64_t e = 0;
  while (e == 0) {
    if (sb_random_bytes(&e, sizeof(e)) != 0) return 0x5b5b5b5b5b5b5b5bull; /* never reached
      in practice; an epoch needs to differ, not to be secret */
  }
  return e;
}

int sb_random_id(char out[23]) {
  static const char b64url[] =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  uint8_t b[16];
  if (sb_random_bytes(b, sizeof(b)) != 0) return SB_EIO;
  size_t o = 0;
  for (size_t i = 0; i < 15; i += 3) {
    uint32_t v = ((uint32_t)b[i] << 16) | ((uint32_t)b[i + 1] << 8) | b[i + 2];
    out[o++] = b64url[(v >> 18) & 63];
    out[o++] = b64url[(v >> 12) & 63];
    out[o++] = b64url[(v >> 6) & 63];
    out[o++] = b64url[v & 63];
  }
  out[o++] = b64url[b[15] >> 2];
  out[o++] = b64url[(b[15] & 3) << 4];
  out[o] = '\0';
  return 0;
}
