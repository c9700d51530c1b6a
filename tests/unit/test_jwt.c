/*
 * test_jwt.c — JWT verification (src/rest/jwt.c): HS256 and RS256 tokens signed here with
 * libjwt (an RSA key pair is generated for the run with OpenSSL), checked good, expired, not
 * yet valid, wrong signature, wrong audience (string and array), wrong issuer, missing exp or
 * sub, "alg": "none", the HS256-with-the-public-key confusion, and malformed input. Tokens
 * with claims libjwt would not write (strings, fractions and extremes in exp, nbf and iat)
 * are signed here by hand (sign()); those at the ends of int64_t run under UBSan in the
 * sanitizer build, which aborts on signed overflow.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <jwt.h>
#include <openssl/evp.h>
#include <openssl/hmac.h>
#include <openssl/pem.h>
#include <openssl/rsa.h>

#include "rest/jwt.h"

#define NOW 1800000000L
static const char SECRET[] = "a shared secret of at least thirty-two bytes!!";
static char *priv_pem, *pub_pem;
static char err[128];

static char *bio_string(BIO *b) {
  char *data;
  long n = BIO_get_mem_data(b, &data);
  char *s = malloc((size_t)n + 1);
  memcpy(s, data, (size_t)n);
  s[n] = '\0';
  return s;
}

static int setup(void **state) {
  (void)state;
  EVP_PKEY *k = EVP_RSA_gen(2048);
  if (!k) return -1;
  BIO *b1 = BIO_new(BIO_s_mem()), *b2 = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b1, k, NULL, NULL, 0, NULL, NULL);
  PEM_write_bio_PUBKEY(b2, k);
  priv_pem = bio_string(b1);
  pub_pem = bio_string(b2);
  BIO_free(b1);
  BIO_free(b2);
  EVP_PKEY_free(k);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  free(priv_pem);
  free(pub_pem);
  return 0;
}

typedef struct claims {
  const char *sub, *aud, *iss;
  long exp, nbf;
  int aud_array;
} claims;

static char *make(jwt_alg_t alg, const char *key, const claims *c) {
  jwt_t *j;
  assert_int_equal(jwt_new(&j), 0);
  if (c->sub) jwt_add_grant(j, "sub", c->sub);
  if (c->iss) jwt_add_grant(j, "iss", c->iss);
  if (c->aud && !c->aud_array) jwt_add_grant(j, "aud", c->aud);
  if (c->aud && c->aud_array) {
    char json[256];
    snprintf(json, sizeof(json), "{\"aud\":[\"other\",\"%s\"]}", c->aud);
    assert_int_equal(jwt_add_grants_json(j, json), 0);
  }
  if (c->exp) jwt_add_grant_int(j, "exp", c->exp);
  if (c->nbf) jwt_add_grant_int(j, "nbf", c->nbf);
  assert_int_equal(jwt_set_alg(j, alg, (const unsigned char *)key, key ? (int)strlen(key) : 0), 0);
  char *t = jwt_encode_str(j);
  jwt_free(j);
  assert_non_null(t);
  return t;
}

/* An HS256 token over the payload JSON as written, signed with SECRET: the claims are not
 * parsed on the way, so any value can be tried. */
static char *b64url(const void *data, size_t n) {
  static const char a[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  const unsigned char *p = data;
  char *out = malloc(n / 3 * 4 + 5), *o = out;
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
  *o = '\0';
  return out;
}

static char *sign(const char *payload) {
  static const char header[] = "{\"alg\":\"HS256\",\"typ\":\"JWT\"}";
  char *h = b64url(header, sizeof header - 1), *p = b64url(payload, strlen(payload));
  size_t n = strlen(h) + 1 + strlen(p);
  char *t = malloc(n + 1 + 44);
  snprintf(t, n + 1, "%s.%s", h, p);
  unsigned char mac[EVP_MAX_MD_SIZE];
  unsigned int mlen = 0;
  assert_non_null(HMAC(EVP_sha256(), SECRET, (int)(sizeof(SECRET) - 1), (unsigned char *)t, n,
                       mac, &mlen));
  char *s = b64url(mac, mlen);
  snprintf(t + n, 1 + 44, ".%s", s);
  free(h);
  free(p);
  free(s);
  return t;
}

static int verify(const sb_jwt_verifier *v, const char *token, sb_jwt_claims *out) {
  return sb_jwt_verify(v, token, strlen(token), NOW, out, err, sizeof(err));
}

static sb_jwt_verifier hs(void) {
  sb_jwt_verifier v = {SB_JWT_HS256, (const unsigned char *)SECRET, sizeof(SECRET) - 1,
                       "switchboard", "https://auth.example", 0};
  return v;
}

static sb_jwt_verifier rs(void) {
  sb_jwt_verifier v = {SB_JWT_RS256, (const unsigned char *)pub_pem, strlen(pub_pem),
                       "switchboard", NULL, 0};
  return v;
}

static const claims GOOD = {"alice", "switchboard", "https://auth.example", NOW + 60, 0, 0};

static void expect_refused(const sb_jwt_verifier *v, const char *token, const char *why) {
  sb_jwt_claims c;
  assert_int_equal(verify(v, token, &c), SB_EPROTO);
  if (!strstr(err, why)) fail_msg("reason '%s' does not mention '%s'", err, why);
  assert_null(c.json);
}

static void test_hs256_good(void **state) {
  (void)state;
  sb_jwt_verifier v = hs();
  char *t = make(JWT_ALG_HS256, SECRET, &GOOD);
  sb_jwt_claims c;
  assert_int_equal(verify(&v, t, &c), 0);
  assert_string_equal(c.sub, "alice");
  assert_int_equal(c.exp, NOW + 60);
  assert_non_null(strstr(c.json, "\"sub\":\"alice\""));
  sb_jwt_claims_free(&c);
  free(t);
}

static void test_rs256_good_and_audience_array(void **state) {
  (void)state;
  sb_jwt_verifier v = rs();
  claims cl = GOOD;
  cl.aud_array = 1;
  char *t = make(JWT_ALG_RS256, priv_pem, &cl);
  sb_jwt_claims c;
  assert_int_equal(verify(&v, t, &c), 0);
  assert_string_equal(c.sub, "alice");
  sb_jwt_claims_free(&c);
  free(t);
}

static void test_time(void **state) {
  (void)state;
  sb_jwt_verifier v = hs();
  claims cl = GOOD;
  cl.exp = NOW;
  char *t = make(JWT_ALG_HS256, SECRET, &cl);
  expect_refused(&v, t, "expired");
  v.leeway_s = 5; /* within the leeway it passes */
  sb_jwt_claims c;
  assert_int_equal(verify(&v, t, &c), 0);
  sb_jwt_claims_free(&c);
  free(t);
  v.leeway_s = 0;
  cl = GOOD;
  cl.nbf = NOW + 30;
  t = make(JWT_ALG_HS256, SECRET, &cl);
  expect_refused(&v, t, "not yet valid");
  free(t);
  cl = GOOD;
  cl.exp = 0;
  t = make(JWT_ALG_HS256, SECRET, &cl);
  expect_refused(&v, t, "no exp");
  free(t);
}

/* Time claims as the payload's JSON text: `{"sub":"alice",<extra>}` signed with SECRET. */
static int verify_at(const sb_jwt_verifier *v, const char *extra, int64_t now, sb_jwt_claims *c) {
  char payload[512];
  snprintf(payload, sizeof(payload), "{\"sub\":\"alice\",%s}", extra);
  char *t = sign(payload);
  int r = sb_jwt_verify(v, t, strlen(t), now, c, err, sizeof(err));
  free(t);
  return r;
}

static void accepted_at(const sb_jwt_verifier *v, const char *extra, int64_t now, int64_t exp) {
  sb_jwt_claims c;
  int r = verify_at(v, extra, now, &c);
  if (r != 0) fail_msg("%s at %lld: refused (%s)", extra, (long long)now, err);
  if (c.exp != exp)
    fail_msg("%s: exp %lld, expected %lld", extra, (long long)c.exp, (long long)exp);
  sb_jwt_claims_free(&c);
}

static void refused_at(const sb_jwt_verifier *v, const char *extra, int64_t now, const char *why) {
  sb_jwt_claims c;
  int r = verify_at(v, extra, now, &c);
  if (r != SB_EPROTO) fail_msg("%s at %lld: %d, expected a refusal", extra, (long long)now, r);
  if (!strstr(err, why)) fail_msg("%s: reason '%s' does not mention '%s'", extra, err, why);
  assert_null(c.json);
}

static sb_jwt_verifier plain(unsigned leeway) {
  sb_jwt_verifier v = {SB_JWT_HS256, (const unsigned char *)SECRET, sizeof(SECRET) - 1, NULL,
                       NULL, leeway};
  return v;
}

/* exp = INT64_MAX on a verifier with a leeway overflowed a signed addition (UBSan aborts the
 * sanitizer build); so did `now + leeway` near the end of the range. Both saturate now. */
static void test_time_at_the_ends_of_int64(void **state) {
  (void)state;
  sb_jwt_verifier v = plain(5);
  accepted_at(&v, "\"exp\":9223372036854775807", NOW, INT64_MAX);
  v.leeway_s = UINT32_MAX;
  accepted_at(&v, "\"exp\":9223372036854775807", NOW, INT64_MAX);
  accepted_at(&v, "\"exp\":9223372036854775807,\"nbf\":-9223372036854775808", NOW, INT64_MAX);
  accepted_at(&v, "\"exp\":9223372036854775807,\"nbf\":9223372036854775807", INT64_MAX - 1,
              INT64_MAX);
  accepted_at(&v, "\"exp\":9223372036854775807,\"iat\":-9223372036854775808", NOW, INT64_MAX);
  refused_at(&v, "\"exp\":9223372036854775807", INT64_MAX, "expired");
  refused_at(&v, "\"exp\":-9223372036854775808", NOW, "expired");
  refused_at(&v, "\"exp\":-9223372036854775808", INT64_MIN, "expired"); /* exp <= 0 */
  v.leeway_s = 0;
  refused_at(&v, "\"exp\":0", INT64_MIN, "expired");
  accepted_at(&v, "\"exp\":1,\"nbf\":-9223372036854775808", INT64_MIN, 1);
  /* a number past int64_t: a fraction or exponent out of range, or an integer the JSON parser
   * (jansson, under libjwt) refuses as a whole */
  refused_at(&v, "\"exp\":1e19", NOW, "exp claim out of range");
  refused_at(&v, "\"exp\":1800000060,\"nbf\":-1e300", NOW, "nbf claim out of range");
  refused_at(&v, "\"exp\":1800000060,\"iat\":9.3e18", NOW, "iat claim out of range");
  refused_at(&v, "\"exp\":9223372036854775808", NOW, "malformed");
  refused_at(&v, "\"exp\":1800000060,\"nbf\":-9223372036854775809", NOW, "malformed");
}

/* A time claim that is there must be a number: a string nbf used to be ignored (the token
 * accepted whatever date it named) while a string exp was refused. */
static void test_time_claims_must_be_numbers(void **state) {
  (void)state;
  sb_jwt_verifier v = plain(0);
  static const char *const not_numbers[] = {"\"99999999999\"", "\"1800000060\"", "true",
                                            "false", "null", "{}", "[1800000060]", "\"\""};
  for (size_t i = 0; i < sizeof(not_numbers) / sizeof(not_numbers[0]); i++) {
    char extra[128];
    snprintf(extra, sizeof(extra), "\"exp\":1800000060,\"nbf\":%s", not_numbers[i]);
    refused_at(&v, extra, NOW, "nbf claim is not a number");
    snprintf(extra, sizeof(extra), "\"exp\":1800000060,\"iat\":%s", not_numbers[i]);
    refused_at(&v, extra, NOW, "iat claim is not a number");
    snprintf(extra, sizeof(extra), "\"exp\":%s", not_numbers[i]);
    refused_at(&v, extra, NOW, "exp claim is not a number");
  }
  /* the far-future string nbf of the report, with a good exp */
  refused_at(&v, "\"exp\":1800000060,\"nbf\":\"4102444800\"", NOW, "nbf claim is not a number");
  refused_at(&v, "\"nbf\":1", NOW, "no exp claim");
  /* an "exp" inside another claim is not the token's exp */
  refused_at(&v, "\"x\":{\"exp\":1800000060}", NOW, "no exp claim");
  accepted_at(&v, "\"x\":{\"nbf\":\"later\"},\"exp\":1800000060", NOW, NOW + 60);
}

/* RFC 7519 §2 allows a fraction (and JSON an exponent): rounded to the stricter side, exp down
 * and nbf up. */
static void test_time_fractions(void **state) {
  (void)state;
  sb_jwt_verifier v = plain(0);
  accepted_at(&v, "\"exp\":1800000060.9", NOW, NOW + 60);
  accepted_at(&v, "\"exp\":1.80000006e9", NOW, NOW + 60);
  accepted_at(&v, "\"exp\":18000000605E-1", NOW, NOW + 60);
  refused_at(&v, "\"exp\":1800000000.5", NOW, "expired"); /* down to NOW */
  accepted_at(&v, "\"exp\":1800000060,\"nbf\":1799999999.5", NOW, NOW + 60); /* up to NOW */
  refused_at(&v, "\"exp\":1800000060,\"nbf\":1800000000.25", NOW, "not yet valid");
  accepted_at(&v, "\"exp\":1800000060,\"nbf\":-0.5", NOW, NOW + 60);
  accepted_at(&v, "\"exp\":1800000060,\"iat\":1799999999.75", NOW, NOW + 60);
  refused_at(&v, "\"exp\":0.5", NOW, "expired");
}

static void test_claims(void **state) {
  (void)state;
  sb_jwt_verifier v = hs();
  claims cl = GOOD;
  cl.aud = "someone-else";
  char *t = make(JWT_ALG_HS256, SECRET, &cl);
  expect_refused(&v, t, "audience");
  free(t);
  cl = GOOD;
  cl.aud = NULL;
  t = make(JWT_ALG_HS256, SECRET, &cl);
  expect_refused(&v, t, "audience");
  free(t);
  cl = GOOD;
  cl.iss = "https://evil.example";
  t = make(JWT_ALG_HS256, SECRET, &cl);
  expect_refused(&v, t, "issuer");
  free(t);
  cl = GOOD;
  cl.sub = NULL;
  t = make(JWT_ALG_HS256, SECRET, &cl);
  expect_refused(&v, t, "sub");
  free(t);
}

static void test_signatures(void **state) {
  (void)state;
  sb_jwt_verifier v = hs();
  char *t = make(JWT_ALG_HS256, "another secret, also thirty-two bytes long", &GOOD);
  expect_refused(&v, t, "signature");
  free(t);
  /* a byte of the signature changed */
  t = make(JWT_ALG_HS256, SECRET, &GOOD);
  size_t n = strlen(t);
  t[n - 2] = t[n - 2] == 'A' ? 'B' : 'A';
  expect_refused(&v, t, "signature");
  free(t);
  /* RS256 signed by another key */
  EVP_PKEY *k = EVP_RSA_gen(2048);
  BIO *b = BIO_new(BIO_s_mem());
  PEM_write_bio_PrivateKey(b, k, NULL, NULL, 0, NULL, NULL);
  char *other = bio_string(b);
  BIO_free(b);
  EVP_PKEY_free(k);
  sb_jwt_verifier r = rs();
  t = make(JWT_ALG_RS256, other, &GOOD);
  expect_refused(&r, t, "signature");
  free(t);
  free(other);
}

static void test_alg_none_and_confusion(void **state) {
  (void)state;
  sb_jwt_verifier v = hs(), r = rs();
  /* {"alg":"none","typ":"JWT"} . {"sub":"alice","aud":"switchboard","exp":1800000060,...} . */
  char *t = make(JWT_ALG_NONE, NULL, &GOOD);
  expect_refused(&v, t, "alg");
  expect_refused(&r, t, "alg");
  free(t);
  /* HS256 with the RS256 public key as the secret: the classic confusion */
  t = make(JWT_ALG_HS256, pub_pem, &GOOD);
  expect_refused(&r, t, "algorithm");
  free(t);
  /* and an RS256 token offered to an HS256 verifier */
  t = make(JWT_ALG_RS256, priv_pem, &GOOD);
  expect_refused(&v, t, "algorithm");
  free(t);
}

static void test_malformed(void **state) {
  (void)state;
  sb_jwt_verifier v = hs();
  const char *bad[] = {"", "abc", "a.b", "a.b.c", "....", "eyJhbGciOiJIUzI1NiJ9..", "\x01\x02."};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    sb_jwt_claims c;
    assert_int_equal(sb_jwt_verify(&v, bad[i], strlen(bad[i]), NOW, &c, err, sizeof(err)),
                     SB_EPROTO);
  }
  char big[SB_JWT_MAX_TOKEN + 2];
  memset(big, 'a', sizeof(big) - 1);
  big[sizeof(big) - 1] = '\0';
  expect_refused(&v, big, "size");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_hs256_good),  cmocka_unit_test(test_rs256_good_and_audience_array),
      cmocka_unit_test(test_time),        cmocka_unit_test(test_time_at_the_ends_of_int64),
      cmocka_unit_test(test_time_claims_must_be_numbers),
      cmocka_unit_test(test_time_fractions), cmocka_unit_test(test_claims),
      cmocka_unit_test(test_signatures),  cmocka_unit_test(test_alg_none_and_confusion),
      cmocka_unit_test(test_malformed),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
