#include <stdlib.h>

#include "common/common.h"

static void *libc_malloc(size_t n, void *ctx) {
  (void)ctx;
  return malloc(n);
}

static void *libc_realloc(void *p, size_t n, void *ctx) {
  (void)ctx;
  return realloc(p, n);
}

static void libc_free(void *p, void *ctx) {
  (void)ctx;
  free(p);
}

const sb_allocator sb_default_allocator = {libc_malloc, libc_realloc, libc_free, NULL};

void *sb_allocator_realloc_fn(void *p, size_t n, void *allocator) {
  const sb_allocator *a = allocator;
  if (n == 0) {
    sb_free(a, p);
    return NULL;
  }
  return sb_realloc(a, p, n);
}
