/*
 * router.h — method + path routing for the rest layer. No I/O: patterns in, a match out.
 *
 * Patterns are '/'-separated segments: a literal ("rooms"), a parameter (":roomId"), or, as
 * the last segment only, a wildcard tail ("*" or "*name", matching zero or more segments).
 * Matching is per segment on the percent-decoded path, and the most specific route wins:
 * at every segment a literal is tried before a parameter, and a parameter before a wildcard,
 * backtracking when the more specific branch does not lead to a route for the method. A path
 * that matches some route, but none for the method, is a 405 with the allowed methods; a path
 * that matches nothing is a 404. A router can be mounted under a literal prefix of another.
 */
#ifndef SB_REST_ROUTER_H
#define SB_REST_ROUTER_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"
#include "common/url.h"

typedef struct sb_router sb_router;

/* Method bits: bit (m - 1) for sb_method m (GET 1 ... DELETE 5). */
#define SB_ROUTE_GET (1u << 0)
#define SB_ROUTE_POST (1u << 1)
#define SB_ROUTE_PUT (1u << 2)
#define SB_ROUTE_PATCH (1u << 3)
#define SB_ROUTE_DELETE (1u << 4)
#define SB_ROUTE_ANY 0x1fu

#define SB_ROUTE_MAX_PARAMS 16
#define SB_ROUTE_MAX_SEGMENTS 64

typedef struct sb_route_param {
  const char *name; /* NUL-terminated, owned by the router */
  const char *value;/* NUL-terminated, in the caller's scratch buffer, percent-decoded */
  size_t value_len;
} sb_route_param;

typedef struct sb_route_match {
  int status;       /* 0: matched; 400 (bad path), 404, 405 */
  unsigned allowed; /* for 405: the methods some matching route has */
  void *handler;    /* what sb_router_add registered */
  void *user;
  const char *pattern; /* the matched route's full pattern (mount prefix included) */
  size_t nparams;
  sb_route_param params[SB_ROUTE_MAX_PARAMS];
} sb_route_match;

int sb_router_new(sb_router **out, const sb_allocator *a);
void sb_router_free(sb_router *r); /* not the routers mounted in it */

/* Registers `handler` for the methods in the mask on `pattern`. SB_EINVAL for a malformed
 * pattern (empty parameter name, wildcard not last, more than 16 parameters, a segment with a
 * '%') or when a route for one of the methods is already there. */
int sb_router_add(sb_router *r, unsigned methods, const char *pattern, void *handler,
                  void *user);

/* Mounts `child` under the literal prefix (e.g. "/api/v1"): its routes match below it. The
 * child is referenced, not copied; it must outlive `r`. */
int sb_router_mount(sb_router *r, const char *prefix, sb_router *child);

/* Matches method `m` (1..5) and `path` (without the query string, not yet decoded). Parameter
 * values are decoded into scratch[0..scratch_len) (path length + 1 bytes always suffice). */
void sb_router_match(const sb_router *r, unsigned m, const char *path, size_t len,
                     char *scratch, size_t scratch_len, sb_route_match *out);

#endif
