/*
 * test_jwt.c — JWT verification (src/rest/jwt.c): HS256 and RS256 tokens signed here with
 * libjwt (an RSA key pair is generated for the run with OpenSSL), checked good, expired, not
 * yet valid, wrong signature, wrong audience (string and array), wrong issuer, missing exp or
 * sub, "alg": "none", the HS256-with-the-public-key confusion, and malformed input.
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
      cmocka_unit_test(test_time),        cmocka_unit_test(test_claims),
      cmocka_unit_test(test_signatures),  cmocka_unit_test(test_alg_none_and_confusion),
      cmocka_unit_test(test_malformed),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
