#include <pthread.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include <openssl/rand.h>

#include "common/map.h"
#include "common/siphash.h"

/* The hash key, one per process, drawn on first use. Keys are short (ids, group names);
 * SipHash-1-3 over them costs a few tens of nanoseconds. The table stays at most 3/4 full;
 * linear probing with backward-shift deletion keeps lookups short without tombstones, as long
 * as the hashes are spread, which the secret key ensures whatever names the clients pick. */
static uint8_t hash_secret[16];
static pthread_once_t hash_once = PTHREAD_ONCE_INIT;

static void make_secret(void) {
  if (RAND_bytes(hash_secret, sizeof(hash_secret)) == 1) return;
  /* The CSPRNG failed (it does not in practice). The maps must work all the same: fall back
   * to what differs between processes and runs. Weaker, but never a fixed, published key. */
  struct timespec ts[2];
  clock_gettime(CLOCK_REALTIME, &ts[0]);
  clock_gettime(CLOCK_MONOTONIC, &ts[1]);
  uint64_t mix[4] = {(uint64_t)ts[0].tv_sec ^ (uint64_t)ts[0].tv_nsec,
                     (uint64_t)ts[1].tv_sec ^ (uint64_t)ts[1].tv_nsec, (uint64_t)getpid(),
                     (uint64_t)(uintptr_t)&mix};
  uint64_t a = sb_siphash24(hash_secret, mix, sizeof(mix));
  uint64_t b = sb_siphash24(hash_secret, &a, sizeof(a)) ^ (uint64_t)(uintptr_t)&hash_once;
  memcpy(hash_secret, &a, 8);
  memcpy(hash_secret + 8, &b, 8);
}

static uint32_t hash_key(const char *k, size_t n) {
  return (uint32_t)sb_siphash13(hash_secret, k, n);
}

void sb_map_init(sb_map *m, const sb_allocator *a) {
  pthread_once(&hash_once, make_secret);
  memset(m, 0, sizeof(*m));
  m->alloc = a;
}

void sb_map_init_borrowed(sb_map *m, const sb_allocator *a) {
  sb_map_init(m, a);
  m->borrow_keys = 1;
}

void sb_map_free(sb_map *m) {
  for (size_t i = 0; i < m->cap && !m->borrow_keys; i++) sb_free(m->alloc, m->slots[i].key);
  sb_free(m->alloc, m->slots);
  m->slots = NULL;
  m->cap = m->len = 0;
}

static sb_map_entry *find(const sb_map *m, const char *key, size_t klen, uint32_t h) {
  if (m->cap == 0) return NULL;
  size_t mask = m->cap - 1;
  for (size_t i = h & mask;; i = (i + 1) & mask) {
    sb_map_entry *e = &m->slots[i];
    if (!e->key) return NULL;
    if (e->hash == h && e->klen == klen && memcmp(e->key, key, klen) == 0) return e;
  }
}

void *sb_map_get(const sb_map *m, const char *key, size_t klen) {
  if (m->len == 0) return NULL;
  sb_map_entry *e = find(m, key, klen, hash_key(key, klen));
  return e ? e->val : NULL;
}

const char *sb_map_key(const sb_map *m, const char *key, size_t klen) {
  if (m->len == 0) return NULL;
  sb_map_entry *e = find(m, key, klen, hash_key(key, klen));
  return e ? e->key : NULL;
}

static void place(sb_map_entry *slots, size_t cap, sb_map_entry e) {
  size_t mask = cap - 1;
  size_t i = e.hash & mask;
  while (slots[i].key) i = (i + 1) & mask;
  slots[i] = e;
}

/* Moves every entry into a table of `cap` slots (a power of two that holds them). */
static int resize(sb_map *m, size_t cap) {
  sb_map_entry *slots = sb_malloc(m->alloc, cap * sizeof(*slots));
  if (!slots) return SB_ENOMEM;
  memset(slots, 0, cap * sizeof(*slots));
  for (size_t i = 0; i < m->cap; i++) {
    if (m->slots[i].key) place(slots, cap, m->slots[i]);
  }
  sb_free(m->alloc, m->slots);
  m->slots = slots;
  m->cap = cap;
  return 0;
}

int sb_map_put(sb_map *m, const char *key, size_t klen, void *val) {
  if (klen > UINT32_MAX) return SB_EINVAL;
  uint32_t h = hash_key(key, klen);
  sb_map_entry *e = find(m, key, klen, h);
  if (e) {
    e->val = val;
    if (m->borrow_keys) e->key = (char *)key;
    return 0;
  }
  if ((m->len + 1) * 4 > m->cap * 3 && resize(m, m->cap ? m->cap * 2 : 16)) return SB_ENOMEM;
  char *k = (char *)key;
  if (!m->borrow_keys) {
    k = sb_malloc(m->alloc, klen + 1);
    if (!k) return SB_ENOMEM;
    memcpy(k, key, klen);
    k[klen] = '\0';
  }
  place(m->slots, m->cap, (sb_map_entry){k, val, h, (uint32_t)klen});
  m->len++;
  return 0;
}

void *sb_map_del(sb_map *m, const char *key, size_t klen) {
  if (m->len == 0) return NULL;
  sb_map_entry *e = find(m, key, klen, hash_key(key, klen));
  if (!e) return NULL;
  void *val = e->val;
  if (!m->borrow_keys) sb_free(m->alloc, e->key);
  size_t mask = m->cap - 1, i = (size_t)(e - m->slots);
  /* Backward-shift: move later entries of the probe run into the hole so that lookups never
   * need tombstones. */
  for (size_t j = (i + 1) & mask; m->slots[j].key; j = (j + 1) & mask) {
    size_t home = m->slots[j].hash & mask;
    if (((j - home) & mask) >= ((j - i) & mask)) {
      m->slots[i] = m->slots[j];
      i = j;
    }
  }
  m->slots[i].key = NULL;
  m->len--;
  /* A table that once held many keys gives its memory back when they are gone (streams and
   * sessions come and go by the hundred thousand). Below 1/8 full it shrinks to at least 1/4
   * full, well away from the 3/4 at which it grows, so that it does not flap; an empty map
   * holds no table at all. */
  if (m->len == 0) {
    sb_free(m->alloc, m->slots);
    m->slots = NULL;
    m->cap = 0;
  } else if (m->cap > 16 && m->len * 8 < m->cap) {
    size_t cap = m->cap;
    while (cap > 16 && m->len * 4 < cap) cap /= 2;
    (void)resize(m, cap); /* out of memory: it stays as it is, which is correct too */
  }
  return val;
}

size_t sb_map_max_probe(const sb_map *m) {
  size_t worst = 0, mask = m->cap ? m->cap - 1 : 0;
  for (size_t i = 0; i < m->cap; i++) {
    if (!m->slots[i].key) continue;
    size_t d = ((i - (m->slots[i].hash & mask)) & mask) + 1;
    if (d > worst) worst = d;
  }
  return worst;
}
