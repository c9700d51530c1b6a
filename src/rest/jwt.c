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

/* A member of the JSON object in [p, end), at its top level: its raw value in [*vs, *ve) (a
 * string with its quotes; any other value up to the ',' or '}' after it, blanks cut). 0, or -1
 * when the member is absent or the text is not an object. Member names are compared as they
 * are written, escapes and all: in the header (our own base64 decoding) a name written with
 * escapes is not "alg" and the token is refused; the claims come compact from libjwt, which
 * writes plain names. */
static int json_member(const char *p, const char *end, const char *name, const char **vs,
                       const char **ve) {
  size_t nlen = strlen(name);
  p = skip_ws(p, end);
  if (p >= end || *p != '{') return -1;
  p = skip_ws(p + 1, end);
  while (p < end && *p != '}') {
    const char *ks, *ke;
    if (!(p = json_string(p, end, &ks, &ke))) return -1;
    p = skip_ws(p, end);
    if (p >= end || *p != ':') return -1;
    p = skip_ws(p + 1, end);
    const char *v = p;
    if (!(p = json_skip(p, end))) return -1;
    if ((size_t)(ke - ks) == nlen && memcmp(ks, name, nlen) == 0) {
      const char *e = p;
      while (e > v && (e[-1] == ' ' || e[-1] == '\t' || e[-1] == '\n' || e[-1] == '\r')) e--;
      *vs = v;
      *ve = e;
      return 0;
    }
    p = skip_ws(p, end);
    if (p < end && *p == ',') p = skip_ws(p + 1, end);
  }
  return -1;
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
  const char *vs, *ve, *s = NULL, *e = NULL;
  if (json_member(json, json + n, "alg", &vs, &ve) != 0) return -1;
  if (json_string(vs, ve, &s, &e) != ve || (size_t)(e - s) >= cap) return -1;
  memcpy(alg, s, (size_t)(e - s));
  alg[e - s] = '\0';
  return 0;
}

/* A NumericDate (RFC 7519 §2): seconds since the epoch as a JSON number, which may have a
 * fraction and an exponent ("1.8e9" is a valid date). [p, e) is the raw JSON value. Returns 0
 * with *out rounded down (or up, with `up`) to a whole second; -1 when the value is not a
 * JSON number (a string, true, null, an object); -2 when it lies outside int64_t. Parsed by
 * hand, digit by digit: strtod would follow the process's LC_NUMERIC, and a double cannot
 * hold every int64_t. */
static int numeric_date(const char *p, const char *e, int up, int64_t *out) {
  int neg = p < e && *p == '-';
  if (neg) p++;
  const char *int_s = p;
  while (p < e && *p >= '0' && *p <= '9') p++;
  const char *int_e = p, *frac_s = p, *frac_e = p;
  if (int_e == int_s || (*int_s == '0' && int_e - int_s > 1)) return -1; /* JSON grammar */
  if (p < e && *p == '.') {
    frac_s = ++p;
    while (p < e && *p >= '0' && *p <= '9') p++;
    frac_e = p;
    if (frac_e == frac_s) return -1;
  }
  long exp10 = 0;
  if (p < e && (*p == 'e' || *p == 'E')) {
    p++;
    int eneg = p < e && *p == '-';
    if (p < e && (*p == '-' || *p == '+')) p++;
    if (p >= e || *p < '0' || *p > '9') return -1;
    for (; p < e && *p >= '0' && *p <= '9'; p++) {
      if (exp10 < 100000) exp10 = exp10 * 10 + (*p - '0'); /* far past any int64_t */
    }
    if (eneg) exp10 = -exp10;
  }
  if (p != e) return -1;
  /* The digits, integer part then fraction, with the decimal point moved by the exponent:
   * the first `point` of them make the whole seconds, the rest the fraction. */
  size_t nint = (size_t)(int_e - int_s), nfrac = (size_t)(frac_e - frac_s);
  long point = (long)nint + exp10;
  const uint64_t limit = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
  uint64_t mag = 0;
  for (long i = 0; i < point; i++) {
    size_t k = (size_t)i;
    int d = k < nint ? int_s[k] - '0' : k < nint + nfrac ? frac_s[k - nint] - '0' : 0;
    if (mag > (limit - (uint64_t)d) / 10) return -2;
    mag = mag * 10 + (uint64_t)d;
  }
  int fraction = 0;
  for (size_t k = point > 0 ? (size_t)point : 0; k < nint + nfrac && !fraction; k++) {
    fraction = (k < nint ? int_s[k] : frac_s[k - nint]) != '0';
  }
  if (fraction && up != neg) { /* away from zero: up for a positive value, down for a negative */
    if (mag == limit) return -2;
    mag++;
  }
  *out = neg ? (mag == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)mag) : (int64_t)mag;
  return 0;
}

/* Claim `name` of the claims JSON as a NumericDate: 1 and *out, 0 when absent, or a refusal
 * (SB_EPROTO, the reason in err) when it is there but not a number or out of range. */
static int time_claim(const char *json, const char *name, int up, int64_t *out, char *err,
                      size_t errlen) {
  const char *vs, *ve;
  if (json_member(json, json + strlen(json), name, &vs, &ve) != 0) return 0;
  int r = numeric_date(vs, ve, up, out);
  if (r == -1) return refuse(err, errlen, "%s claim is not a number", name);
  if (r == -2) return refuse(err, errlen, "%s claim out of range", name);
  return 1;
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
  /* 3. Time. exp is required (long connections must not outlive their credentials); exp, nbf
   * and iat, when present, must be numbers (a string "nbf" is refused, not ignored). The
   * claims are read from their JSON text: libjwt's integer getter cannot tell a string or a
   * fraction from a missing claim in every version. A fraction is rounded to the stricter
   * side: exp down, nbf up. Sums with the leeway saturate. */
  char *json = jwt_get_grants_json(j, NULL);
  if (!json) {
    jwt_free(j);
    refuse(err, errlen, "out of memory");
    return SB_ENOMEM;
  }
  int64_t exp = 0, nbf = 0, iat = 0, leeway = (int64_t)v->leeway_s;
  int has_exp, has_nbf = 0, r = 0;
  if ((has_exp = time_claim(json, "exp", 0, &exp, err, errlen)) < 0 ||
      (has_nbf = time_claim(json, "nbf", 1, &nbf, err, errlen)) < 0 ||
      time_claim(json, "iat", 0, &iat, err, errlen) < 0)
    r = SB_EPROTO; /* the reason is in err */
  else if (!has_exp)
    r = refuse(err, errlen, "no exp claim");
  else if (exp <= 0 || now >= sb_jwt_time_add(exp, leeway)) /* exp 0 would read as "no expiry" */
    r = refuse(err, errlen, "token expired");
  else if (has_nbf && sb_jwt_time_add(now, leeway) < nbf)
    r = refuse(err, errlen, "token not yet valid");
  if (r != 0) {
    free(json);
    jwt_free(j);
    return r;
  }
  /* 4. Audience and issuer. */
  if (v->audience && !audience_ok(j, v->audience)) {
    free(json);
    jwt_free(j);
    return refuse(err, errlen, "wrong audience");
  }
  if (v->issuer) {
    const char *iss = jwt_get_grant(j, "iss");
    if (!iss || strcmp(iss, v->issuer) != 0) {
      free(json);
      jwt_free(j);
      return refuse(err, errlen, "wrong issuer");
    }
  }
  /* 5. The subject is the identity. */
  const char *sub = jwt_get_grant(j, "sub");
  if (!sub || !*sub || strlen(sub) > SB_JWT_MAX_SUB) {
    free(json);
    jwt_free(j);
    return refuse(err, errlen, "no usable sub claim");
  }
  memcpy(out->sub, sub, strlen(sub) + 1);
  out->exp = exp;
  out->json = json;
  jwt_free(j);
  return 0;
}

void sb_jwt_claims_free(sb_jwt_claims *c) {
  if (!c) return;
  free(c->json);
  c->json = NULL;
}
