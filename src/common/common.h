/*
 * common.h — small internal helpers shared by every layer: the configured allocator and
 * container_of. Nothing here touches libuv or OpenSSL.
 */
#ifndef SB_COMMON_H
#define SB_COMMON_H

#include <stddef.h>

#include "switchboard.h"

#define SB_CONTAINER_OF(ptr, type, field) ((type *)((char *)(ptr) - offsetof(type, field)))
#define SB_MIN(a, b) ((a) < (b) ? (a) : (b))
#define SB_MAX(a, b) ((a) > (b) ? (a) : (b))

/* The allocator used when the options leave it NULL: the C library's. */
extern const sb_allocator sb_default_allocator;

static inline void *sb_malloc(const sb_allocator *a, size_t n) { return a->malloc(n, a->ctx); }
static inline void *sb_realloc(const sb_allocator *a, void *p, size_t n) {
  return a->realloc(p, n, a->ctx);
}
static inline void sb_free(const sb_allocator *a, void *p) { a->free(p, a->ctx); }

/* Hands memory freed to the default allocator back to the system (glibc's malloc_trim);
 * nothing for another allocator. Costly on a large heap: call it after much was freed. */
void sb_alloc_give_back(const sb_allocator *a);

/* A write to a socket the peer has reset raises SIGPIPE, whose default action kills the
 * process; libuv (and hiredis) leave that to the application. A library must not die of a
 * peer hanging up, so an untouched SIGPIPE (still SIG_DFL) is set to be ignored; one the
 * application handles is left alone (documented in the public header). */
void sb_ignore_sigpipe(void);

/* realloc-shaped adapter for parsers that take one function: n == 0 frees. */
void *sb_allocator_realloc_fn(void *p, size_t n, void *allocator);

#endif
