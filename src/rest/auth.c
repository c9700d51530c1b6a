/*
 * auth.c — the public face of the JWT verifier (jwt.c) and the upgrade callback built on it:
 * the token is looked for where sb_upgrade_token() looks, verified, and its sub, claims and
 * exp become the connection's identity, claims and expiry. A refresh (a new token sent on an
 * open connection) goes through the same callback.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "rest/jwt.h"

static int refuse(char *err, size_t errlen, const char *why) {
  if (err && errlen) snprintf(err, errlen, "%s", why);
  return SB_EPROTO;
}

struct sb_jwt {
  sb_jwt_verifier v;
  char *aud, *iss;
  unsigned char key[];
};

static char *dup_or_null(const char *s) {
  if (!s) return NULL;
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

void sb_jwt_free(sb_jwt *j) {
  if (!j) return;
  free(j->aud);
  free(j->iss);
  free(j);
}

int sb_jwt_new(sb_jwt **out, const sb_jwt_options *o) {
  if (!out) return SB_EINVAL;
  *out = NULL;
  if (!o || !o->alg || !o->key || !o->key_len) return SB_EINVAL;
  sb_jwt_alg alg;
  if (strcmp(o->alg, "HS256") == 0) alg = SB_JWT_HS256;
  else if (strcmp(o->alg, "RS256") == 0) alg = SB_JWT_RS256;
  else return SB_EINVAL;
  /* RFC 7518 §3.2: an HS256 key must be at least as long as the hash. */
  if (alg == SB_JWT_HS256 && o->key_len < 32) return SB_EINVAL;
  sb_jwt *j = calloc(1, sizeof(*j) + o->key_len + 1);
  if (!j) return SB_ENOMEM;
  memcpy(j->key, o->key, o->key_len);
  j->aud = dup_or_null(o->audience);
  j->iss = dup_or_null(o->issuer);
  if ((o->audience && !j->aud) || (o->issuer && !j->iss)) {
    sb_jwt_free(j);
    return SB_ENOMEM;
  }
  j->v = (sb_jwt_verifier){alg, j->key, o->key_len, j->aud, j->iss, o->leeway_s};
  *out = j;
  return 0;
}

int sb_jwt_verify_token(const sb_jwt *j, const char *token, char *identity, size_t cap,
                        char **claims, int64_t *expires_at, char *err, size_t errlen) {
  if (claims) *claims = NULL;
  if (!j || !token || !identity || !cap) {
    return refuse(err, errlen, "no token");
  }
  sb_jwt_claims c;
  int r = sb_jwt_verify(&j->v, token, strlen(token), (int64_t)time(NULL), &c, err, errlen);
  if (r != 0) return r;
  if (strlen(c.sub) >= cap) {
    sb_jwt_claims_free(&c);
    return refuse(err, errlen, "sub claim too long");
  }
  memcpy(identity, c.sub, strlen(c.sub) + 1);
  if (expires_at) *expires_at = c.exp;
  if (claims) *claims = c.json;
  else sb_jwt_claims_free(&c);
  return 0;
}

void sb_jwt_upgrade_cb(sb_upgrade *up, void *user) {
  const sb_jwt *j = user;
  const char *token = sb_upgrade_token(up);
  if (!token) {
    static const char *const h[] = {"WWW-Authenticate: Bearer"};
    sb_upgrade_reject(up, 401, h, 1, "token required");
    return;
  }
  char id[191], err[96], hdr[192];
  char *claims = NULL;
  int64_t exp = 0;
  if (sb_jwt_verify_token(j, token, id, sizeof(id), &claims, &exp, err, sizeof(err)) != 0) {
    snprintf(hdr, sizeof(hdr), "WWW-Authenticate: Bearer error=\"invalid_token\", "
                               "error_description=\"%s\"", err);
    const char *const h[] = {hdr};
    sb_upgrade_reject(up, 401, h, 1, err);
    return;
  }
  /* The verifier honours the leeway on exp; so does the connection (saturating: exp may be
   * as large as a signed 64-bit number can be). */
  sb_upgrade_accept(up, id, claims, sb_jwt_time_add(exp, (int64_t)j->v.leeway_s));
  free(claims);
}
