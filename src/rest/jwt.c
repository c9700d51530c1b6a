#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jwt.h>

#include "rest/jwt.h"

static int refuse(char *err, size_t errlen, const char *fmt, ...) {
  if (err && errlen) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
  }
  return SB_EPROTO;
}

/* The "alg" member of the token's header, read by us rather than by the library: libjwt
 * reports JWT_ALG_NONE for any token it parsed without a key. base64url-decodes the header and
 * walks its top-level object (strings with escapes, nested values skipped), so that an "alg"
 * inside another member's value cannot be mistaken for the real one. */
static int b64url(int c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '-') return 62;
  if (c == '_') return 63;
  return -1;
}

static const char *skip_ws(const char *p, const char *end) {
  while (p < end && (*p == ' ' || *p == '\t' || *p == '\n' || *p == '\r')) p++;
  return p;
}

/* A JSON string at p (at its opening quote): returns the end (after the closing quote) and
 * the raw contents [*s, *e), or NULL. */
static const char *json_string(const char *p, const char *end, const char **s, const char **e) {
  if (p >= end || *p != '"') return NULL;
  *s = ++p;
  while (p < end && *p != '"') p += (*p == '\\') ? 2 : 1;
  if (p >= end) return NULL;
  *e = p;
  return p + 1;
}

static const char *json_skip(const char *p, const char *end) {
  const char *s, *e;
  if (p < end && *p == '"') return json_string(p, end, &s, &e);
  int depth = 0;
  while (p < end) {
    if (*p == '"') {
      if (!(p = json_string(p, end, &s, &e))) return NULL;
      continue;
    }
    if (*p == '{' || *p == '[') depth++;
    else if (*p == '}' || *p == ']') {
      if (depth == 0) return p;
      depth--;
    } else if (*p == ',' && depth == 0) {
      return p;
    }
    p++;
  }
  return NULL;
}

static int header_alg(const char *token, size_t len, char *alg, size_t cap) {
  const char *dot = memchr(token, '.', len);
  if (!dot || dot == token || (size_t)(dot - token) > 1024) return -1;
  char json[800];
  size_t n = 0;
  uint32_t acc = 0;
  int bits = 0;
  for (const char *p = token; p < dot; p++) {
    int v = b64url((unsigned char)*p);
    if (v < 0) return -1;
    acc = (acc << 6) | (uint32_t)v;
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      if (n == sizeof(json)) return -1;
      json[n++] = (char)((acc >> bits) & 0xff);
    }
  }
  const char *p = skip_ws(json, json + n), *end = json + n;
  if (p >= end || *p != '{') return -1;
  p = skip_ws(p + 1, end);
  while (p < end && *p != '}') {
    const char *ks, *ke;
    if (!(p = json_string(p, end, &ks, &ke))) return -1;
    p = skip_ws(p, end);
    if (p >= end || *p != ':') return -1;
    p = skip_ws(p + 1, end);
    if ((size_t)(ke - ks) == 3 && memcmp(ks, "alg", 3) == 0) {
      const char *vs, *ve;
      if (!json_string(p, end, &vs, &ve) || (size_t)(ve - vs) >= cap) return -1;
      memcpy(alg, vs, (size_t)(ve - vs));
      alg[ve - vs] = '\0';
      return 0;
    }
    if (!(p = json_skip(p, end))) return -1;
    p = skip_ws(p, end);
    if (p < end && *p == ',') p = skip_ws(p + 1, end);
  }
  return -1;
}

/* Is `want` one of the audiences? "aud" may be a string or an array of strings (RFC 7519
 * §4.1.3); libjwt gives an array as JSON text. Compared as whole JSON strings. */
static int audience_ok(jwt_t *j, const char *want) {
  const char *s = jwt_get_grant(j, "aud");
  if (s) return strcmp(s, want) == 0;
  char *json = jwt_get_grants_json(j, "aud");
  if (!json) return 0;
  size_t wl = strlen(want);
  int ok = 0;
  for (const char *p = json; (p = strchr(p, '"')) != NULL;) {
    const char *end = strchr(p + 1, '"');
    if (!end) break;
    if ((size_t)(end - p - 1) == wl && memcmp(p + 1, want, wl) == 0) ok = 1;
    p = end + 1;
  }
  free(json);
  return ok;
}

int sb_jwt_verify(const sb_jwt_verifier *v, const char *token, size_t len, int64_t now,
                  sb_jwt_claims *out, char *err, size_t errlen) {
  memset(out, 0, sizeof(*out));
  if (!v || !token || !v->key || !v->key_len) return refuse(err, errlen, "no verifier");
  if (len == 0 || len > SB_JWT_MAX_TOKEN) return refuse(err, errlen, "token size");
  char buf[SB_JWT_MAX_TOKEN + 1];
  memcpy(buf, token, len);
  buf[len] = '\0';
  if (memchr(buf, '\0', len)) return refuse(err, errlen, "malformed token");
  /* 1. The algorithm in the header must be the one configured ("none" never is). */
  char alg_name[16];
  if (header_alg(buf, len, alg_name, sizeof(alg_name)) != 0)
    return refuse(err, errlen, "malformed token header");
  if (strcmp(alg_name, "none") == 0 || strcmp(alg_name, "None") == 0 ||
      strcmp(alg_name, "NONE") == 0)
    return refuse(err, errlen, "unsigned token (alg none)");
  if (strcmp(alg_name, v->alg == SB_JWT_HS256 ? "HS256" : "RS256") != 0)
    return refuse(err, errlen, "algorithm not allowed");
  jwt_t *j = NULL;
  /* 2. The signature. */
  if (jwt_decode(&j, buf, v->key, (int)v->key_len) != 0 || !j)
    return refuse(err, errlen, "bad signature or malformed token");
  jwt_alg_t alg = jwt_get_alg(j);
  if (alg != (v->alg == SB_JWT_HS256 ? JWT_ALG_HS256 : JWT_ALG_RS256)) {
    jwt_free(j);
    return refuse(err, errlen, "algorithm not allowed");
  }
  /* 3. Time: exp is required (long connections must not outlive their credentials). */
  errno = 0;
  long exp = jwt_get_grant_int(j, "exp");
  if (errno == ENOENT || exp <= 0) {
    jwt_free(j);
    return refuse(err, errlen, "no exp claim");
  }
  if (now >= (int64_t)exp + v->leeway_s) {
    jwt_free(j);
    return refuse(err, errlen, "token expired");
  }
  errno = 0;
  long nbf = jwt_get_grant_int(j, "nbf");
  if (errno != ENOENT && now + (int64_t)v->leeway_s < (int64_t)nbf) {
    jwt_free(j);
    return refuse(err, errlen, "token not yet valid");
  }
  /* 4. Audience and issuer. */
  if (v->audience && !audience_ok(j, v->audience)) {
    jwt_free(j);
    return refuse(err, errlen, "wrong audience");
  }
  if (v->issuer) {
    const char *iss = jwt_get_grant(j, "iss");
    if (!iss || strcmp(iss, v->issuer) != 0) {
      jwt_free(j);
      return refuse(err, errlen, "wrong issuer");
    }
  }
  /* 5. The subject is the identity. */
  const char *sub = jwt_get_grant(j, "sub");
  if (!sub || !*sub || strlen(sub) > SB_JWT_MAX_SUB) {
    jwt_free(j);
    return refuse(err, errlen, "no usable sub claim");
  }
  memcpy(out->sub, sub, strlen(sub) + 1);
  out->exp = exp;
  out->json = jwt_get_grants_json(j, NULL);
  jwt_free(j);
  return 0;
}

void sb_jwt_claims_free(sb_jwt_claims *c) {
  if (!c) return;
  free(c->json);
  c->json = NULL;
}
