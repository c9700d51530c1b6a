/*
 * fuzz_jwt.c — JWT verification on arbitrary input (our header parser, then libjwt). A token
 * the fuzzer makes must never verify: it cannot know the secret.
 */
#include <assert.h>
#include <stdint.h>
#include <string.h>

#include "rest/jwt.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static const char secret[] = "fuzzing secret, thirty-two bytes or more";
  sb_jwt_verifier v = {SB_JWT_HS256, (const unsigned char *)secret, sizeof(secret) - 1, NULL,
                       NULL, 0};
  sb_jwt_claims c;
  char err[128];
  int r = sb_jwt_verify(&v, (const char *)data, size, 1800000000, &c, err, sizeof(err));
  assert(r == SB_EPROTO);
  assert(strlen(err) < sizeof(err));
  sb_jwt_claims_free(&c);
  return 0;
}
