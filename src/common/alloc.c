#include <signal.h>
#include <stdlib.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif

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

/* glibc keeps what free() returns: small blocks scattered over the heap, and, once a large
 * block was freed, later large ones carved from the heap too (its mmap threshold adapts).
 * malloc_trim hands the free pages back. Only for the C library's allocator, whose heap this
 * is; an application's allocator manages its own memory. */
void sb_alloc_give_back(const sb_allocator *a) {
#ifdef __GLIBC__
  if (a->malloc == sb_default_allocator.malloc) malloc_trim(0);
#else
  (void)a;
#endif
}

void sb_ignore_sigpipe(void) {
  struct sigaction sa;
  if (sigaction(SIGPIPE, NULL, &sa) == 0 && sa.sa_handler == SIG_DFL) {
    sa.sa_handler = SIG_IGN;
    sigaction(SIGPIPE, &sa, NULL);
  }
}
