/*
 * map.h — a string-keyed hash map (open addressing, linear probing, backward-shift deletion).
 * Keys are copied into the map (or borrowed, see sb_map_init_borrowed); values are borrowed
 * pointers. Used for connection ids, tokens, groups and streams: keys a client can choose, so
 * the hash is SipHash-1-3 under a key drawn from the CSPRNG once per process (an unkeyed hash
 * lets a client send names that all land in one probe run). Not ordered; iteration is over
 * slots, and a deletion may shrink the table: never delete while walking the slots.
 */
#ifndef SB_COMMON_MAP_H
#define SB_COMMON_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

/* 24 bytes a slot: the table is sized per entry (ids, sessions), so it matters for the
 * memory an idle connection costs. */
typedef struct sb_map_entry {
  char *key; /* NULL: empty slot */
  void *val;
  uint32_t hash; /* the low 32 bits of the key's SipHash */
  uint32_t klen;
} sb_map_entry;

typedef struct sb_map {
  sb_map_entry *slots;
  size_t cap; /* power of two, or 0 */
  size_t len;
  const sb_allocator *alloc;
  int borrow_keys; /* keys are not copied: the caller keeps them alive and unchanged */
} sb_map;

void sb_map_init(sb_map *m, const sb_allocator *a);
/* A map that stores the key pointers it is given instead of copies (keys that live inside
 * the value, such as a connection id). */
void sb_map_init_borrowed(sb_map *m, const sb_allocator *a);
void sb_map_free(sb_map *m); /* frees the keys, not the values */
void *sb_map_get(const sb_map *m, const char *key, size_t klen);
/* Inserts or replaces. Returns 0 or SB_ENOMEM. */
int sb_map_put(sb_map *m, const char *key, size_t klen, void *val);
/* Removes the key; returns its value or NULL. The table shrinks when it falls below 1/8 full
 * (if that allocation fails it just stays larger), and is freed when the map is empty. */
void *sb_map_del(sb_map *m, const char *key, size_t klen);
/* The stored copy of the key (stable until the key is deleted), or NULL. */
const char *sb_map_key(const sb_map *m, const char *key, size_t klen);

/* For tests and diagnostics: the longest probe sequence of any key now in the map (1: every
 * key sits in its home slot; 0: empty). */
size_t sb_map_max_probe(const sb_map *m);

#endif
