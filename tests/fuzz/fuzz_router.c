/*
 * fuzz_router.c — path matching, percent-decoding and query parsing on arbitrary input. The
 * router has overlapping literal, parameter and wildcard routes and a mount. Checks: no crash
 * or overread (ASan), a matched route's parameter values are NUL-terminated at their length
 * and contain no NUL, and the query parser's pairs stay inside the scratch buffer.
 */
#include <assert.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "rest/router.h"

static sb_router *top, *api;
static char H[8];

static void setup(void) {
  sb_router_new(&top, NULL);
  sb_router_new(&api, NULL);
  sb_router_add(top, SB_ROUTE_GET, "/users/me", &H[0], NULL);
  sb_router_add(top, SB_ROUTE_GET | SB_ROUTE_POST, "/users/:id", &H[1], NULL);
  sb_router_add(top, SB_ROUTE_ANY, "/users/:id/*rest", &H[2], NULL);
  sb_router_add(top, SB_ROUTE_GET, "/a/:x/c", &H[3], NULL);
  sb_router_add(top, SB_ROUTE_GET, "/a/b/d", &H[4], NULL);
  sb_router_add(top, SB_ROUTE_GET, "/static/*", &H[5], NULL);
  sb_router_add(api, SB_ROUTE_DELETE, "/rooms/:id", &H[6], NULL);
  sb_router_mount(top, "/api", api);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (!top) setup();
  if (size == 0) return 0;
  unsigned method = (unsigned)(data[0] % 5) + 1;
  const char *in = (const char *)data + 1;
  size_t n = size - 1;
  char *path = malloc(n ? n : 1); /* exact size: ASan sees any overread */
  memcpy(path, in, n);
  size_t cap = 2 * n + 2;
  char *scratch = malloc(cap);
  sb_route_match m;
  sb_router_match(top, method, path, n, scratch, cap, &m);
  if (m.status == 0) {
    for (size_t i = 0; i < m.nparams; i++) {
      const char *v = m.params[i].value;
      assert(v >= scratch && v + m.params[i].value_len < scratch + cap);
      assert(v[m.params[i].value_len] == '\0');
      assert(memchr(v, '\0', m.params[i].value_len) == NULL);
    }
  } else {
    assert(m.status == 400 || m.status == 404 || m.status == 405);
    assert((m.status == 405) == (m.allowed != 0));
  }
  sb_query_pair pairs[32];
  long np = sb_query_parse(path, n, pairs, 32, scratch, cap);
  for (long i = 0; i < np; i++) {
    assert(pairs[i].key >= scratch && pairs[i].key + pairs[i].key_len < scratch + cap);
    assert(pairs[i].value >= scratch && pairs[i].value + pairs[i].value_len < scratch + cap);
  }
  free(scratch);
  free(path);
  return 0;
}
