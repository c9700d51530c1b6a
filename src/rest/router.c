/*
 * router.c — a segment trie. Each node has literal children (a small array, looked up by
 * exact match), at most one parameter child and at most one wildcard child, and per method a
 * route (handler, user data, the pattern, the parameter names in order). Parameter names live
 * on the route, not on the node, so "/a/:id" and "/a/:name/b" share the parameter child.
 *
 * Matching is a depth-first search in specificity order (literal, mounted routers, parameter,
 * wildcard) that stops at the first route for the method. While searching it collects the
 * methods of every route whose pattern matched the path, so that a miss can be told apart:
 * nothing matched (404) or something matched but not for this method (405 + Allow).
 */
#include <string.h>

#include "rest/router.h"

typedef struct route {
  void *handler, *user;
  char *pattern;
  char *names[SB_ROUTE_MAX_PARAMS];
  size_t nnames;
  struct route *next_all; /* every route of the router, for freeing */
} route;

typedef struct node node;
struct node {
  char *lit;
  node **kids;
  size_t nkids;
  node *param;
  node *wild;
  route *routes[5];
  sb_router **mounts;
  size_t nmounts;
};

struct sb_router {
  const sb_allocator *a;
  node root;
  route *all;
};

typedef struct seg {
  const char *s; /* decoded, NUL-terminated, in scratch */
  size_t n;
  size_t raw_off, raw_len; /* position in the raw path */
} seg;

int sb_router_new(sb_router **out, const sb_allocator *a) {
  *out = NULL;
  if (!a) a = &sb_default_allocator;
  sb_router *r = sb_malloc(a, sizeof(*r));
  if (!r) return SB_ENOMEM;
  memset(r, 0, sizeof(*r));
  r->a = a;
  *out = r;
  return 0;
}

static void free_node(const sb_allocator *a, node *n, int self) {
  if (!n) return;
  for (size_t i = 0; i < n->nkids; i++) free_node(a, n->kids[i], 1);
  sb_free(a, n->kids);
  free_node(a, n->param, 1);
  free_node(a, n->wild, 1);
  sb_free(a, n->mounts);
  sb_free(a, n->lit);
  if (self) sb_free(a, n);
}

void sb_router_free(sb_router *r) {
  if (!r) return;
  for (route *rt = r->all, *next; rt; rt = next) {
    next = rt->next_all;
    for (size_t i = 0; i < rt->nnames; i++) sb_free(r->a, rt->names[i]);
    sb_free(r->a, rt->pattern);
    sb_free(r->a, rt);
  }
  free_node(r->a, &r->root, 0);
  sb_free(r->a, r);
}

static char *dupn(const sb_allocator *a, const char *s, size_t n) {
  char *d = sb_malloc(a, n + 1);
  if (d) {
    memcpy(d, s, n);
    d[n] = '\0';
  }
  return d;
}

static node *new_node(const sb_allocator *a) {
  node *n = sb_malloc(a, sizeof(*n));
  if (n) memset(n, 0, sizeof(*n));
  return n;
}

static node *literal_kid(const node *n, const char *s, size_t len) {
  for (size_t i = 0; i < n->nkids; i++) {
    if (strlen(n->kids[i]->lit) == len && memcmp(n->kids[i]->lit, s, len) == 0) return n->kids[i];
  }
  return NULL;
}

static node *add_literal(const sb_allocator *a, node *n, const char *s, size_t len) {
  node *k = literal_kid(n, s, len);
  if (k) return k;
  node **kids = sb_realloc(a, n->kids, (n->nkids + 1) * sizeof(*kids));
  if (!kids) return NULL;
  n->kids = kids;
  k = new_node(a);
  if (!k) return NULL;
  k->lit = dupn(a, s, len);
  if (!k->lit) {
    sb_free(a, k);
    return NULL;
  }
  n->kids[n->nkids++] = k;
  return k;
}

/* Walks (creating) the pattern's nodes; collects parameter names. Returns the last node. */
static node *build_path(sb_router *r, const char *pattern, const char **names, size_t *lens,
                        size_t *nnames, int allow_special) {
  node *n = &r->root;
  const char *p = pattern;
  if (*p != '/') return NULL;
  *nnames = 0;
  while (*p) {
    while (*p == '/') p++;
    if (!*p) break;
    const char *s = p;
    while (*p && *p != '/') p++;
    size_t len = (size_t)(p - s);
    if (memchr(s, '%', len)) return NULL; /* patterns are written decoded */
    if (allow_special && s[0] == ':') {
      if (len == 1 || *nnames == SB_ROUTE_MAX_PARAMS) return NULL;
      names[*nnames] = s + 1;
      lens[(*nnames)++] = len - 1;
      if (!n->param && !(n->param = new_node(r->a))) return NULL;
      n = n->param;
    } else if (allow_special && s[0] == '*') {
      while (*p == '/') p++;
      if (*p || *nnames == SB_ROUTE_MAX_PARAMS) return NULL; /* a wildcard is the last segment */
      names[*nnames] = len > 1 ? s + 1 : "*";
      lens[(*nnames)++] = len > 1 ? len - 1 : 1;
      if (!n->wild && !(n->wild = new_node(r->a))) return NULL;
      n = n->wild;
    } else {
      if (!(n = add_literal(r->a, n, s, len))) return NULL;
    }
  }
  return n;
}

int sb_router_add(sb_router *r, unsigned methods, const char *pattern, void *handler,
                  void *user) {
  if (!r || !pattern || !(methods & SB_ROUTE_ANY) || (methods & ~SB_ROUTE_ANY)) return SB_EINVAL;
  const char *names[SB_ROUTE_MAX_PARAMS];
  size_t lens[SB_ROUTE_MAX_PARAMS], nnames;
  node *n = build_path(r, pattern, names, lens, &nnames, 1);
  if (!n) return SB_EINVAL;
  for (int m = 0; m < 5; m++) {
    if ((methods & (1u << m)) && n->routes[m]) return SB_EINVAL; /* already routed */
  }
  route *rt = sb_malloc(r->a, sizeof(*rt));
  if (!rt) return SB_ENOMEM;
  memset(rt, 0, sizeof(*rt));
  rt->handler = handler;
  rt->user = user;
  rt->pattern = dupn(r->a, pattern, strlen(pattern));
  rt->next_all = r->all;
  r->all = rt;
  if (!rt->pattern) return SB_ENOMEM;
  for (size_t i = 0; i < nnames; i++) {
    if (!(rt->names[i] = dupn(r->a, names[i], lens[i]))) return SB_ENOMEM;
    rt->nnames++;
  }
  for (int m = 0; m < 5; m++) {
    if (methods & (1u << m)) n->routes[m] = rt;
  }
  return 0;
}

int sb_router_mount(sb_router *r, const char *prefix, sb_router *child) {
  if (!r || !prefix || !child || child == r) return SB_EINVAL;
  const char *names[SB_ROUTE_MAX_PARAMS];
  size_t lens[SB_ROUTE_MAX_PARAMS], nnames;
  node *n = build_path(r, prefix, names, lens, &nnames, 0);
  if (!n) return SB_EINVAL;
  sb_router **m = sb_realloc(r->a, n->mounts, (n->nmounts + 1) * sizeof(*m));
  if (!m) return SB_ENOMEM;
  n->mounts = m;
  n->mounts[n->nmounts++] = child;
  return 0;
}

/* ---- matching ------------------------------------------------------------------------- */

typedef struct mctx {
  unsigned mbit;
  const seg *segs;
  size_t nsegs;
  const char *values[SB_ROUTE_MAX_PARAMS];
  size_t vlens[SB_ROUTE_MAX_PARAMS];
  size_t nvalues;
  char *wild_buf; /* room for a wildcard value */
  sb_route_match *out;
  unsigned depth;
} mctx;

static int terminal(const node *n, mctx *c) {
  int m = __builtin_ctz(c->mbit);
  route *rt = n->routes[m];
  if (!rt) {
    for (int k = 0; k < 5; k++) {
      if (n->routes[k]) c->out->allowed |= 1u << k;
    }
    return 0;
  }
  sb_route_match *o = c->out;
  o->status = 0;
  o->handler = rt->handler;
  o->user = rt->user;
  o->pattern = rt->pattern;
  o->nparams = rt->nnames < c->nvalues ? rt->nnames : c->nvalues;
  for (size_t i = 0; i < o->nparams; i++) {
    o->params[i].name = rt->names[i];
    o->params[i].value = c->values[i];
    o->params[i].value_len = c->vlens[i];
  }
  return 1;
}

static int walk(const node *n, size_t i, mctx *c);

static int wildcard(const node *w, size_t i, mctx *c) {
  if (c->nvalues == SB_ROUTE_MAX_PARAMS) return 0;
  /* The tail, decoded segments joined by '/'. */
  size_t off = 0;
  for (size_t k = i; k < c->nsegs; k++) {
    if (k > i) c->wild_buf[off++] = '/';
    memcpy(c->wild_buf + off, c->segs[k].s, c->segs[k].n);
    off += c->segs[k].n;
  }
  c->wild_buf[off] = '\0';
  c->values[c->nvalues] = c->wild_buf;
  c->vlens[c->nvalues++] = off;
  if (terminal(w, c)) return 1;
  c->nvalues--;
  return 0;
}

static int walk(const node *n, size_t i, mctx *c) {
  if (++c->depth > 4096) return 0; /* bound the backtracking */
  if (i == c->nsegs) {
    if (terminal(n, c)) return 1;
    for (size_t k = 0; k < n->nmounts; k++) {
      if (walk(&n->mounts[k]->root, i, c)) return 1;
    }
    return n->wild ? wildcard(n->wild, i, c) : 0;
  }
  const seg *s = &c->segs[i];
  node *k = literal_kid(n, s->s, s->n);
  if (k && walk(k, i + 1, c)) return 1;
  for (size_t m = 0; m < n->nmounts; m++) {
    if (walk(&n->mounts[m]->root, i, c)) return 1;
  }
  if (n->param && s->n > 0 && c->nvalues < SB_ROUTE_MAX_PARAMS) {
    c->values[c->nvalues] = s->s;
    c->vlens[c->nvalues++] = s->n;
    if (walk(n->param, i + 1, c)) return 1;
    c->nvalues--;
  }
  return n->wild ? wildcard(n->wild, i, c) : 0;
}

void sb_router_match(const sb_router *r, unsigned m, const char *path, size_t len,
                     char *scratch, size_t scratch_len, sb_route_match *out) {
  memset(out, 0, sizeof(*out));
  out->status = 404;
  if (!r || m < 1 || m > 5 || !path || len == 0 || path[0] != '/' || scratch_len < 2 * len + 2) {
    out->status = 400;
    return;
  }
  seg segs[SB_ROUTE_MAX_SEGMENTS];
  size_t nsegs = 0, off = 0, i = 1;
  while (i <= len) {
    size_t start = i;
    while (i < len && path[i] != '/') i++;
    if (i == len && start == len) break; /* a trailing '/' (or the root) adds no segment */
    if (nsegs == SB_ROUTE_MAX_SEGMENTS) return;  /* 404: no route is that deep */
    long d = sb_percent_decode(path + start, i - start, scratch + off, 0);
    if (d < 0) {
      out->status = 400;
      return;
    }
    segs[nsegs++] = (seg){scratch + off, (size_t)d, start, i - start};
    off += (size_t)d + 1;
    i++;
  }
  mctx c;
  memset(&c, 0, sizeof(c));
  c.mbit = 1u << (m - 1);
  c.segs = segs;
  c.nsegs = nsegs;
  c.wild_buf = scratch + off; /* the rest of scratch: at least len + 1 bytes */
  c.out = out;
  if (walk(&r->root, 0, &c)) return;
  out->status = out->allowed ? 405 : 404;
}
