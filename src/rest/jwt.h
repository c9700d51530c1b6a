/*
 * jwt.h — verification of JSON Web Tokens for the upgrade auth (libjwt underneath).
 *
 * One verifier accepts exactly one algorithm, HS256 (a shared secret) or RS256 (a PEM public
 * key): the token's own "alg" header is compared with it *before* the signature is checked,
 * so "alg": "none" and the HS256-signed-with-the-public-key confusion are refused whatever the
 * library would do with them. Then: the signature, "exp" (required), "nbf" (when present),
 * "aud" (string or array) and "iss" when the verifier names them, and "sub" (required: it
 * becomes the connection's identity). exp, nbf and iat, when present, must be JSON numbers
 * within int64_t (RFC 7519 §2 NumericDate; a fraction is rounded to the stricter side, exp
 * down and nbf up); a string, boolean, null, object or array there refuses the token.
 * Every refusal comes with a short reason.
 */
#ifndef SB_REST_JWT_H
#define SB_REST_JWT_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

typedef enum { SB_JWT_HS256 = 1, SB_JWT_RS256 = 2 } sb_jwt_alg;

typedef struct sb_jwt_verifier {
  sb_jwt_alg alg;
  const unsigned char *key; /* HS256: the secret; RS256: a PEM public key */
  size_t key_len;
  const char *audience;     /* NULL: not checked */
  const char *issuer;       /* NULL: not checked */
  unsigned leeway_s;        /* clock skew allowed on exp and nbf */
} sb_jwt_verifier;

#define SB_JWT_MAX_TOKEN 8192
#define SB_JWT_MAX_SUB 256

typedef struct sb_jwt_claims {
  char sub[SB_JWT_MAX_SUB + 1];
  int64_t exp; /* seconds since the epoch */
  char *json;  /* every claim as JSON, malloc'd (free it with sb_jwt_claims_free) */
} sb_jwt_claims;

/* Verifies token[0..len) at time `now` (seconds since the epoch). 0 and *out filled (exp > 0),
 * or SB_EPROTO (SB_ENOMEM when out of memory) with a reason in err (NUL-terminated). */
int sb_jwt_verify(const sb_jwt_verifier *v, const char *token, size_t len, int64_t now,
                  sb_jwt_claims *out, char *err, size_t errlen);

void sb_jwt_claims_free(sb_jwt_claims *c);

/* a + b held at the ends of int64_t instead of overflowing: a validly signed exp may be
 * INT64_MAX, and a leeway is added to it. */
static inline int64_t sb_jwt_time_add(int64_t a, int64_t b) {
  if (b > 0 && a > INT64_MAX - b) return INT64_MAX;
  if (b < 0 && a < INT64_MIN - b) return INT64_MIN;
  return a + b;
}

#endif
