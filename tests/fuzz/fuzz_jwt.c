/*
 * fuzz_jwt.c — JWT verification on arbitrary input (our header parser, then libjwt).
 *
 * Byte 0 picks the mode. Even: the rest is a whole token, which must never verify (the fuzzer
 * cannot know the secret). Odd: the rest is a payload, signed here with the secret under an
 * HS256 header, so that the claim checks behind the signature (the time claims read from the
 * JSON text, saturating sums with a leeway taken from byte 0, aud, iss, sub) see any claims
 * the JSON parser lets through. A token that verifies must carry a usable sub and an exp > 0;
 * a refused one a reason.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include <openssl/evp.h>
#include <openssl/hmac.h>

#include "rest/jwt.h"

static const char secret[] = "fuzzing secret, thirty-two bytes or more";

static size_t b64url(const uint8_t *p, size_t n, char *out) {
  static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  char *o = out;
  size_t i = 0;
  for (; i + 2 < n; i += 3) {
    uint32_t v = (uint32_t)p[i] << 16 | (uint32_t)p[i + 1] << 8 | p[i + 2];
    *o++ = a[v >> 18], *o++ = a[(v >> 12) & 63], *o++ = a[(v >> 6) & 63], *o++ = a[v & 63];
  }
  if (n - i == 1) {
    *o++ = a[p[i] >> 2], *o++ = a[(p[i] & 3) << 4];
  } else if (n - i == 2) {
    uint32_t v = (uint32_t)p[i] << 8 | p[i + 1];
    *o++ = a[v >> 10], *o++ = a[(v >> 4) & 63], *o++ = a[(v & 15) << 2];
  }
  return (size_t)(o - out);
}

/* header.payload.signature for `payload`, or 0 when it would not fit SB_JWT_MAX_TOKEN. */
static size_t sign(const uint8_t *payload, size_t n, char *out) {
  static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
  if (n > (SB_JWT_MAX_TOKEN - 200) / 4 * 3) return 0;
  size_t len = b64url((const uint8_t *)header, sizeof header - 1, out);
  out[len++] = '.';
  len += b64url(payload, n, out + len);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mlen = 0;
  if (!HMAC(EVP_sha256(), secret, (int)(sizeof secret - 1), (unsigned char *)out, len, mac,
            &mlen))
    return 0;
  out[len++] = '.';
  len += b64url(mac, mlen, out + len);
  return len;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size == 0) return 0;
  int signed_here = data[0] & 1;
  sb_jwt_verifier v = {SB_JWT_HS256, (const unsigned char *)secret, sizeof(secret) - 1, NULL,
                       NULL, signed_here && (data[0] & 2) ? UINT32_MAX : data[0] >> 2};
  if (signed_here && (data[0] & 4)) v.audience = "a";
  if (signed_here && (data[0] & 8)) v.issuer = "i";
  sb_jwt_claims c;
  char err[128], token[SB_JWT_MAX_TOKEN + 1];
  const char *t = (const char *)data + 1;
  size_t n = size - 1;
  if (signed_here) {
    n = sign(data + 1, size - 1, token);
    if (n == 0) return 0;
    t = token;
  }
  int64_t now = data[0] & 16 ? INT64_MAX - 1 : 1800000000;
  err[0] = '\0';
  int r = sb_jwt_verify(&v, t, n, now, &c, err, sizeof(err));
  if (!signed_here) assert(r == SB_EPROTO);
  if (r == 0) {
    assert(c.exp > 0 && now < sb_jwt_time_add(c.exp, (int64_t)v.leeway_s));
    assert(c.sub[0] != '\0' && strlen(c.sub) <= SB_JWT_MAX_SUB);
    assert(c.json != NULL);
  } else {
    assert(r == SB_EPROTO || r == SB_ENOMEM);
    assert(err[0] != '\0' && strlen(err) < sizeof(err));
    assert(c.json == NULL);
  }
  sb_jwt_claims_free(&c);
  return 0;
}
