/*
 * test_map.c — the string-keyed map (src/common/map.c) and its hash (src/common/siphash.c):
 * SipHash against the paper's test vector and against OpenSSL's SipHash for every tail
 * length; the map against a model under random inserts, replacements and deletions, and its
 * shrinking back when emptied; and keys crafted to collide under the 32-bit FNV-1a the map
 * used before, which must not pile up in one probe run now that the hash is keyed.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/core_names.h>
#include <openssl/evp.h>
#include <openssl/params.h>

#include "common/map.h"
#include "common/siphash.h"

static const uint8_t KEY[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};

/* The paper's test vector (Aumasson and Bernstein, 2012, appendix A): SipHash-2-4 of the 15
 * bytes 00..0e under the key 00..0f. */
static void test_siphash24_paper_vector(void **state) {
  (void)state;
  uint8_t msg[15];
  for (int i = 0; i < 15; i++) msg[i] = (uint8_t)i;
  assert_true(sb_siphash24(KEY, msg, sizeof(msg)) == 0xa129ca6149be45e5ull);
}

/* OpenSSL's SipHash (EVP_MAC "SIPHASH", 8-byte output, little-endian) with c and d rounds. */
static uint64_t openssl_siphash(unsigned c, unsigned d, const uint8_t *msg, size_t n) {
  EVP_MAC *mac = EVP_MAC_fetch(NULL, "SIPHASH", NULL);
  assert_non_null(mac);
  EVP_MAC_CTX *ctx = EVP_MAC_CTX_new(mac);
  assert_non_null(ctx);
  size_t size = 8;
  OSSL_PARAM params[] = {OSSL_PARAM_construct_size_t(OSSL_MAC_PARAM_SIZE, &size),
                         OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_C_ROUNDS, &c),
                         OSSL_PARAM_construct_uint(OSSL_MAC_PARAM_D_ROUNDS, &d),
                         OSSL_PARAM_construct_end()};
  assert_int_equal(EVP_MAC_init(ctx, KEY, sizeof(KEY), params), 1);
  assert_int_equal(EVP_MAC_update(ctx, msg, n), 1);
  uint8_t out[8];
  size_t outl = 0;
  assert_int_equal(EVP_MAC_final(ctx, out, &outl, sizeof(out)), 1);
  assert_int_equal(outl, 8);
  EVP_MAC_CTX_free(ctx);
  EVP_MAC_free(mac);
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v |= (uint64_t)out[i] << (8 * i);
  return v;
}

/* Every length from 0 to 72 (every tail of 0..7 bytes, several blocks), both variants. */
static void test_siphash_against_openssl(void **state) {
  (void)state;
  uint8_t msg[72];
  for (int i = 0; i < 72; i++) msg[i] = (uint8_t)(i * 7 + 3);
  for (size_t n = 0; n <= sizeof(msg); n++) {
    uint64_t want24 = openssl_siphash(2, 4, msg, n), want13 = openssl_siphash(1, 3, msg, n);
    uint64_t got24 = sb_siphash24(KEY, msg, n), got13 = sb_siphash13(KEY, msg, n);
    if (got24 != want24 || got13 != want13) {
      fail_msg("length %zu: 2-4 %016llx (expected %016llx), 1-3 %016llx (expected %016llx)", n,
               (unsigned long long)got24, (unsigned long long)want24,
               (unsigned long long)got13, (unsigned long long)want13);
    }
  }
  /* And the hash depends on the key. */
  uint8_t other[16];
  memcpy(other, KEY, 16);
  other[15] ^= 1;
  assert_true(sb_siphash13(other, msg, 20) != sb_siphash13(KEY, msg, 20));
}

/* ---- the map against a model ------------------------------------------------------------ */

#define NKEYS 3000

static void key_of(char *out, size_t cap, unsigned i) { snprintf(out, cap, "key-%u", i * 2654435761u); }

static void test_model(void **state) {
  (void)state;
  sb_map m;
  sb_map_init(&m, &sb_default_allocator);
  static int present[NKEYS];
  static uintptr_t value[NKEYS];
  memset(present, 0, sizeof(present));
  srand(12345);
  char k[32];
  size_t live = 0;
  for (int step = 0; step < 200000; step++) {
    unsigned i = (unsigned)rand() % NKEYS;
    key_of(k, sizeof(k), i);
    int op = rand() % 3;
    if (op == 0) { /* put (insert or replace) */
      uintptr_t v = (uintptr_t)step * 2 + 1;
      assert_int_equal(sb_map_put(&m, k, strlen(k), (void *)v), 0);
      if (!present[i]) live++;
      present[i] = 1;
      value[i] = v;
    } else if (op == 1) {
      void *v = sb_map_del(&m, k, strlen(k));
      if (present[i]) {
        assert_ptr_equal(v, (void *)value[i]);
        live--;
      } else {
        assert_null(v);
      }
      present[i] = 0;
    } else {
      void *v = sb_map_get(&m, k, strlen(k));
      if (present[i]) assert_ptr_equal(v, (void *)value[i]);
      else assert_null(v);
    }
    assert_int_equal(m.len, live);
    if (step % 20000 == 0) { /* everything is found, and the stored key is a copy */
      for (unsigned j = 0; j < NKEYS; j++) {
        key_of(k, sizeof(k), j);
        const char *stored = sb_map_key(&m, k, strlen(k));
        if (present[j]) {
          assert_non_null(stored);
          assert_ptr_not_equal(stored, k);
          assert_string_equal(stored, k);
        } else {
          assert_null(stored);
        }
      }
    }
  }
  /* Emptied, the table gives its memory back. */
  for (unsigned j = 0; j < NKEYS; j++) {
    key_of(k, sizeof(k), j);
    sb_map_del(&m, k, strlen(k));
  }
  assert_int_equal(m.len, 0);
  assert_int_equal(m.cap, 0);
  assert_null(m.slots);
  sb_map_free(&m);
}

/* A table that grew for 100,000 keys shrinks as they go, and still finds the rest. */
static void test_shrinks(void **state) {
  (void)state;
  sb_map m;
  sb_map_init(&m, &sb_default_allocator);
  char k[32];
  for (unsigned i = 0; i < 100000; i++) {
    key_of(k, sizeof(k), i);
    assert_int_equal(sb_map_put(&m, k, strlen(k), (void *)(uintptr_t)(i + 1)), 0);
  }
  assert_true(m.cap >= 131072);
  for (unsigned i = 0; i < 99990; i++) {
    key_of(k, sizeof(k), i);
    assert_ptr_equal(sb_map_del(&m, k, strlen(k)), (void *)(uintptr_t)(i + 1));
  }
  assert_int_equal(m.len, 10);
  assert_true(m.cap <= 64);
  for (unsigned i = 99990; i < 100000; i++) {
    key_of(k, sizeof(k), i);
    assert_ptr_equal(sb_map_get(&m, k, strlen(k)), (void *)(uintptr_t)(i + 1));
  }
  sb_map_free(&m);
}

/* ---- flooding: keys that collide under FNV-1a ------------------------------------------ */

static uint32_t fnv1a(const uint8_t *p, size_t n) {
  uint32_t h = 2166136261u;
  for (size_t i = 0; i < n; i++) {
    h ^= p[i];
    h *= 16777619u;
  }
  return h;
}

/* Keys "flood-<i>-" + 2 bytes whose FNV-1a has the low 16 bits `target`. The low k bits of
 * FNV-1a's state depend only on the low k bits before each step, and multiplying by the odd
 * prime is invertible mod 2^16: so the last byte must be (state ^ target * P^-1) & 0xff, which
 * works when the bits 8..15 of the state after the first extra byte already match — one try
 * in 256 on average. That is how cheap such a flood is to build against an unkeyed hash. */
static size_t craft(uint8_t (*keys)[32], size_t *lens, size_t want, uint16_t target) {
  uint32_t inv = 16777619u; /* Newton's iteration for the inverse mod 2^32 */
  for (int i = 0; i < 5; i++) inv *= 2u - 16777619u * inv;
  uint16_t u = (uint16_t)(target * inv);
  size_t n = 0;
  for (unsigned i = 0; n < want; i++) {
    int len = snprintf((char *)keys[n], 32, "flood-%u-", i);
    uint32_t h0 = fnv1a(keys[n], (size_t)len);
    for (unsigned b1 = 0; b1 < 256; b1++) {
      uint16_t h1 = (uint16_t)((h0 ^ b1) * 16777619u);
      if (((h1 ^ u) & 0xff00) != 0) continue;
      keys[n][len] = (uint8_t)b1;
      keys[n][len + 1] = (uint8_t)((h1 ^ u) & 0xff);
      lens[n] = (size_t)len + 2;
      n++;
      break;
    }
  }
  return n;
}

static void test_fnv_collisions_do_not_pile_up(void **state) {
  (void)state;
  enum { N = 20000 };
  static uint8_t keys[N][32];
  static size_t lens[N];
  assert_int_equal(craft(keys, lens, N, 0x5b5b), N);
  /* The crafting works: under the old hash they all share their low 16 bits, so in any table
   * of up to 65,536 slots they would all have one home slot (a probe run of N). */
  for (size_t i = 0; i < N; i++) assert_int_equal(fnv1a(keys[i], lens[i]) & 0xffff, 0x5b5b);
  sb_map m;
  sb_map_init(&m, &sb_default_allocator);
  for (size_t i = 0; i < N; i++)
    assert_int_equal(sb_map_put(&m, (const char *)keys[i], lens[i], (void *)(uintptr_t)(i + 1)), 0);
  assert_int_equal(m.len, N);
  assert_true(m.cap <= 65536);
  size_t worst = sb_map_max_probe(&m);
  /* Random hashes at this load (N keys, 32,768 slots) give a longest run of a few dozen. */
  if (worst > 100) fail_msg("longest probe sequence %zu for %d crafted keys (expected <= 100)", worst, N);
  for (size_t i = 0; i < N; i++)
    assert_ptr_equal(sb_map_get(&m, (const char *)keys[i], lens[i]), (void *)(uintptr_t)(i + 1));
  printf("# %d keys colliding under FNV-1a: longest probe sequence %zu in %zu slots\n", N, worst,
         m.cap);
  sb_map_free(&m);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_siphash24_paper_vector),
      cmocka_unit_test(test_siphash_against_openssl),
      cmocka_unit_test(test_model),
      cmocka_unit_test(test_shrinks),
      cmocka_unit_test(test_fnv_collisions_do_not_pile_up),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
