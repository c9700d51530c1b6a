/*
 * app.c — the REST layer over a hub: REQUEST/SEND envelopes → middleware → route → response.
 *
 * A request is one allocation: the struct, then copies of the path, the query string and the
 * body (the envelope is borrowed for the duration of the hub's callback only, and a handler
 * may answer much later), then the router's scratch space for decoded parameters. It is on
 * the app's list of pending requests until answered; when its connection closes it stays
 * there with conn == NULL, so that a late sb_respond() is safe and frees it.
 *
 * The chain: sb_next() walks the middleware list from where the request stands, skipping
 * entries whose prefix does not cover the path, and then runs the route (or fails with the
 * router's 404/405). Routing is done once, when the request arrives, so that the error of a
 * path without a route is known before any middleware runs, as in Express the middleware
 * still runs first.
 */
#include <stdio.h>
#include <string.h>

#include "hub/hub.h"
#include "net/net.h"
#include "rest/router.h"

#define SB_APP_MAX_MW 32
#define SB_REQ_MAX_VALUES 8

typedef struct mw {
  char prefix[128]; /* "" for every path */
  size_t prefix_len;
  sb_handler_cb cb;
  void *user;
} mw;

typedef struct route_target {
  sb_handler_cb cb;
  void *user;
} route_target;

struct sb_app {
  sb_hub *hub;
  const sb_allocator *a;
  sb_router *router;
  mw mws[SB_APP_MAX_MW];
  size_t nmw;
  sb_error_cb on_error;
  void *error_user;
  sb_req *pending; /* unanswered requests */
  size_t npending;
  route_target *targets; /* one per route added (the router's handler points at it) */
  size_t ntargets;
  sb_routes *routes;     /* routers made for mounting, freed with the app */
};

/* A router to mount under a prefix (Express's express.Router()): its own trie, but its
 * handlers are the app's targets, so matching through a mount is the same as matching a
 * route of the app. */
struct sb_routes {
  sb_app *app;
  sb_router *router;
  sb_routes *next;
};

typedef struct kv {
  char key[32];
  void *value;
} kv;

struct sb_req {
  sb_app *app;
  sb_conn *conn;
  sb_req *prev, *next;
  uint32_t id;
  uint8_t method, kind;
  size_t mw_next;
  char *path, *query;
  const char *identity; /* copied: it outlives the connection */
  const uint8_t *body;
  size_t body_len;
  sb_route_match match;
  kv values[SB_REQ_MAX_VALUES];
  size_t nvalues;
  sb_query_pair *qpairs; /* the decoded query */
  size_t nq;
  char data[]; /* [query pairs] path, query, body, route scratch, query scratch */
};

#define SB_REQ_MAX_QUERY 32

/* ---- routes and middleware ------------------------------------------------------------ */

static unsigned method_bits(const char *m) {
  if (!m) return 0;
  if (!strcmp(m, "*")) return SB_ROUTE_ANY;
  if (!strcmp(m, "GET")) return SB_ROUTE_GET;
  if (!strcmp(m, "POST")) return SB_ROUTE_POST;
  if (!strcmp(m, "PUT")) return SB_ROUTE_PUT;
  if (!strcmp(m, "PATCH")) return SB_ROUTE_PATCH;
  if (!strcmp(m, "DELETE")) return SB_ROUTE_DELETE;
  return 0;
}

static int add_route(sb_app *app, sb_router *router, const char *method, const char *pattern,
                     sb_handler_cb cb, void *user) {
  unsigned bits = method_bits(method);
  if (!app || !pattern || !cb || !bits) return SB_EINVAL;
  /* Targets live in one array that only grows; the router keeps an index into it. */
  route_target *t = sb_realloc(app->a, app->targets, (app->ntargets + 1) * sizeof(*t));
  if (!t) return SB_ENOMEM;
  app->targets = t;
  app->targets[app->ntargets] = (route_target){cb, user};
  int r = sb_router_add(router, bits, pattern, (void *)(uintptr_t)(app->ntargets + 1), NULL);
  if (r == 0) app->ntargets++;
  return r;
}

int sb_app_route(sb_app *app, const char *method, const char *pattern, sb_handler_cb cb,
                 void *user) {
  return app ? add_route(app, app->router, method, pattern, cb, user) : SB_EINVAL;
}

int sb_routes_new(sb_routes **out, sb_app *app) {
  *out = NULL;
  if (!app) return SB_EINVAL;
  sb_routes *rs = sb_malloc(app->a, sizeof(*rs));
  if (!rs) return SB_ENOMEM;
  int r = sb_router_new(&rs->router, app->a);
  if (r) {
    sb_free(app->a, rs);
    return r;
  }
  rs->app = app;
  rs->next = app->routes;
  app->routes = rs;
  *out = rs;
  return 0;
}

int sb_routes_route(sb_routes *rs, const char *method, const char *pattern, sb_handler_cb cb,
                    void *user) {
  return rs ? add_route(rs->app, rs->router, method, pattern, cb, user) : SB_EINVAL;
}

int sb_routes_get(sb_routes *rs, const char *p, sb_handler_cb cb, void *u) {
  return sb_routes_route(rs, "GET", p, cb, u);
}
int sb_routes_post(sb_routes *rs, const char *p, sb_handler_cb cb, void *u) {
  return sb_routes_route(rs, "POST", p, cb, u);
}
int sb_routes_put(sb_routes *rs, const char *p, sb_handler_cb cb, void *u) {
  return sb_routes_route(rs, "PUT", p, cb, u);
}
int sb_routes_patch(sb_routes *rs, const char *p, sb_handler_cb cb, void *u) {
  return sb_routes_route(rs, "PATCH", p, cb, u);
}
int sb_routes_delete(sb_routes *rs, const char *p, sb_handler_cb cb, void *u) {
  return sb_routes_route(rs, "DELETE", p, cb, u);
}

/* A prefix is literal segments only: parameters belong to the routes. */
static int literal_prefix(const char *prefix) {
  if (!prefix || prefix[0] != '/') return 0;
  for (const char *p = prefix; *p; p++) {
    if ((p[0] == '/' && (p[1] == ':' || p[1] == '*')) || *p == '%') return 0;
  }
  return 1;
}

int sb_app_mount(sb_app *app, const char *prefix, sb_routes *rs) {
  if (!app || !rs || rs->app != app || !literal_prefix(prefix)) return SB_EINVAL;
  return sb_router_mount(app->router, prefix, rs->router);
}

int sb_routes_mount(sb_routes *parent, const char *prefix, sb_routes *child) {
  if (!parent || !child || parent == child || parent->app != child->app ||
      !literal_prefix(prefix))
    return SB_EINVAL;
  return sb_router_mount(parent->router, prefix, child->router);
}

int sb_app_get(sb_app *a, const char *p, sb_handler_cb cb, void *u) {
  return sb_app_route(a, "GET", p, cb, u);
}
int sb_app_post(sb_app *a, const char *p, sb_handler_cb cb, void *u) {
  return sb_app_route(a, "POST", p, cb, u);
}
int sb_app_put(sb_app *a, const char *p, sb_handler_cb cb, void *u) {
  return sb_app_route(a, "PUT", p, cb, u);
}
int sb_app_patch(sb_app *a, const char *p, sb_handler_cb cb, void *u) {
  return sb_app_route(a, "PATCH", p, cb, u);
}
int sb_app_delete(sb_app *a, const char *p, sb_handler_cb cb, void *u) {
  return sb_app_route(a, "DELETE", p, cb, u);
}

int sb_app_use(sb_app *app, const char *prefix, sb_handler_cb cb, void *user) {
  if (!app || !cb) return SB_EINVAL;
  if (app->nmw == SB_APP_MAX_MW) return SB_ENOMEM;
  mw *m = &app->mws[app->nmw];
  size_t n = prefix ? strlen(prefix) : 0;
  while (n > 0 && prefix[n - 1] == '/') n--; /* "/" and "/admin/" mean "" and "/admin" */
  if (n >= sizeof(m->prefix) || (n > 0 && prefix[0] != '/')) return SB_EINVAL;
  memcpy(m->prefix, prefix ? prefix : "", n);
  m->prefix[n] = '\0';
  m->prefix_len = n;
  m->cb = cb;
  m->user = user;
  app->nmw++;
  return 0;
}

void sb_app_on_error(sb_app *app, sb_error_cb cb, void *user) {
  app->on_error = cb;
  app->error_user = user;
}

static int covers(const mw *m, const char *path) {
  if (m->prefix_len == 0) return 1;
  return strncmp(path, m->prefix, m->prefix_len) == 0 &&
         (path[m->prefix_len] == '\0' || path[m->prefix_len] == '/');
}

/* ---- answering ------------------------------------------------------------------------ */

static void req_free(sb_req *req) {
  sb_app *app = req->app;
  if (req->prev) req->prev->next = req->next;
  else app->pending = req->next;
  if (req->next) req->next->prev = req->prev;
  app->npending--;
  sb_free(app->a, req);
}

int sb_respond(sb_req *req, uint16_t status, const void *body, size_t len) {
  if (!req) return SB_EINVAL;
  int r = 0;
  if (!req->conn) r = SB_ECLOSED;
  else if (req->kind == SB_KIND_REQUEST) {
    r = sb_hub_respond(req->conn, req->id, status, body, len);
    if (r > 0) r = r == SB_SEND_DROPPED ? SB_ECLOSED : 0;
  }
  req_free(req);
  return r;
}

static const char *reason(int status) {
  switch (status) {
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 409: return "Conflict";
    case 413: return "Payload Too Large";
    case 422: return "Unprocessable Entity";
    case 429: return "Too Many Requests";
    case 503: return "Service Unavailable";
    default: return status >= 500 ? "Internal Server Error" : "Error";
  }
}

/* The default error handler shows the status's reason phrase, never the message (which may
 * hold internal detail), and for 405 the methods the path has. */
static void default_error(sb_req *req, int status, const char *message, void *user) {
  (void)message;
  (void)user;
  char body[256];
  int n = snprintf(body, sizeof(body), "{\"error\":\"%s\"", reason(status));
  if (status == 405) {
    static const char *names[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    n += snprintf(body + n, sizeof(body) - (size_t)n, ",\"allow\":[");
    int first = 1;
    for (int k = 0; k < 5; k++) {
      if (req->match.allowed & (1u << k)) {
        n += snprintf(body + n, sizeof(body) - (size_t)n, "%s\"%s\"", first ? "" : ",", names[k]);
        first = 0;
      }
    }
    n += snprintf(body + n, sizeof(body) - (size_t)n, "]");
  }
  n += snprintf(body + n, sizeof(body) - (size_t)n, "}");
  sb_respond(req, (uint16_t)status, body, (size_t)n);
}

void sb_fail(sb_req *req, uint16_t status, const char *message) {
  if (!req) return;
  if (status < 400 || status > 599) status = 500;
  sb_app *app = req->app;
  if (app->on_error) app->on_error(req, status, message ? message : "", app->error_user);
  else default_error(req, status, message ? message : "", NULL);
}

/* ---- the chain ------------------------------------------------------------------------ */

void sb_next(sb_req *req) {
  if (!req) return;
  sb_app *app = req->app;
  while (req->mw_next < app->nmw) {
    mw *m = &app->mws[req->mw_next++];
    if (covers(m, req->path)) {
      m->cb(req, m->user);
      return;
    }
  }
  if (req->match.status != 0) {
    sb_fail(req, (uint16_t)req->match.status,
            req->match.status == 404 ? "no route for this path" : "method not allowed");
    return;
  }
  route_target *t = &app->targets[(uintptr_t)req->match.handler - 1];
  t->cb(req, t->user);
}

static void on_envelope(void *ctx, sb_conn *c, const sb_envelope *env) {
  sb_app *app = ctx;
  const char *q = memchr(env->url, '?', env->url_len);
  size_t plen = q ? (size_t)(q - env->url) : env->url_len;
  size_t qlen = q ? env->url_len - plen - 1 : 0;
  size_t pairs = qlen ? SB_REQ_MAX_QUERY * sizeof(sb_query_pair) : 0;
  size_t rscratch = 2 * plen + 2, qscratch = qlen ? 2 * qlen + 2 : 0;
  const char *identity = sb_conn_identity(c);
  size_t ilen = strlen(identity);
  sb_req *req = sb_malloc(app->a, sizeof(*req) + pairs + plen + 1 + qlen + 1 + ilen + 1 +
                                      env->body_len + rscratch + qscratch);
  if (!req) {
    if (env->kind == SB_KIND_REQUEST) sb_hub_respond(c, env->id, 503, "", 0);
    return;
  }
  memset(req, 0, sizeof(*req));
  req->app = app;
  req->conn = c;
  req->id = env->id;
  req->method = env->method;
  req->kind = env->kind;
  char *p = req->data;
  req->qpairs = (sb_query_pair *)(void *)p; /* data[] is 8-aligned: sizeof(sb_req) is */
  p += pairs;
  req->path = p;
  memcpy(p, env->url, plen);
  p[plen] = '\0';
  p += plen + 1;
  req->query = p;
  if (qlen) memcpy(p, q + 1, qlen);
  p[qlen] = '\0';
  p += qlen + 1;
  memcpy(p, identity, ilen + 1);
  req->identity = p;
  p += ilen + 1;
  req->body = (const uint8_t *)p;
  req->body_len = env->body_len;
  if (env->body_len) memcpy(p, env->body, env->body_len);
  p += env->body_len;
  char *route_scratch = p;
  p += rscratch;
  /* pending from here on: whatever happens, it is answered exactly once */
  req->next = app->pending;
  if (app->pending) app->pending->prev = req;
  app->pending = req;
  app->npending++;
  if (env->method < SB_METHOD_GET || env->method > SB_METHOD_DELETE || plen == 0 ||
      req->path[0] != '/' || memchr(env->url, '\0', env->url_len)) {
    req->match.status = 400;
    sb_fail(req, 400, "a request needs a method and a path starting with '/'");
    return;
  }
  long nq = qlen ? sb_query_parse(req->query, qlen, req->qpairs, SB_REQ_MAX_QUERY, p, qscratch)
                 : 0;
  if (nq < 0) {
    req->match.status = 400;
    sb_fail(req, 400, "malformed query string");
    return;
  }
  req->nq = (size_t)nq;
  sb_router_match(app->router, env->method, req->path, plen, route_scratch, rscratch,
                  &req->match);
  if (req->match.status == 400) {
    sb_fail(req, 400, "malformed path");
    return;
  }
  sb_next(req);
}

static void on_conn_close(void *ctx, sb_conn *c) {
  sb_app *app = ctx;
  for (sb_req *r = app->pending; r; r = r->next) {
    if (r->conn == c) r->conn = NULL; /* answered later: SB_ECLOSED, safely */
  }
}

/* ---- the request ---------------------------------------------------------------------- */

sb_method sb_req_method(const sb_req *r) { return (sb_method)r->method; }
const char *sb_req_path(const sb_req *r) { return r->path; }
sb_conn *sb_req_conn(const sb_req *r) { return r->conn; }
int sb_req_one_way(const sb_req *r) { return r->kind == SB_KIND_SEND; }
const char *sb_req_identity(const sb_req *r) { return r->identity ? r->identity : ""; }
const char *sb_req_claims(const sb_req *r) { return r->conn ? sb_conn_claims(r->conn) : NULL; }

const void *sb_req_body(const sb_req *r, size_t *len) {
  if (len) *len = r->body_len;
  return r->body;
}

const char *sb_req_param(const sb_req *r, const char *name) {
  for (size_t i = 0; i < r->match.nparams; i++) {
    if (strcmp(r->match.params[i].name, name) == 0) return r->match.params[i].value;
  }
  return NULL;
}

const char *sb_req_query(const sb_req *r, const char *name) {
  for (size_t i = 0; i < r->nq; i++) {
    if (strcmp(r->qpairs[i].key, name) == 0) return r->qpairs[i].value;
  }
  return NULL;
}

int sb_req_set(sb_req *r, const char *key, void *value) {
  if (!r || !key || strlen(key) >= sizeof(r->values[0].key)) return SB_EINVAL;
  for (size_t i = 0; i < r->nvalues; i++) {
    if (strcmp(r->values[i].key, key) == 0) {
      r->values[i].value = value;
      return 0;
    }
  }
  if (r->nvalues == SB_REQ_MAX_VALUES) return SB_ENOMEM;
  snprintf(r->values[r->nvalues].key, sizeof(r->values[0].key), "%s", key);
  r->values[r->nvalues++].value = value;
  return 0;
}

void *sb_req_get(const sb_req *r, const char *key) {
  for (size_t i = 0; i < r->nvalues; i++) {
    if (strcmp(r->values[i].key, key) == 0) return r->values[i].value;
  }
  return NULL;
}

/* ---- lifecycle ------------------------------------------------------------------------ */

int sb_app_new(sb_app **out, sb_hub *hub) {
  *out = NULL;
  if (!hub) return SB_EINVAL;
  const sb_allocator *a = sb_hub_allocator(hub);
  sb_app *app = sb_malloc(a, sizeof(*app));
  if (!app) return SB_ENOMEM;
  memset(app, 0, sizeof(*app));
  app->hub = hub;
  app->a = a;
  int r = sb_router_new(&app->router, a);
  if (r) {
    sb_free(a, app);
    return r;
  }
  sb_hub_set_app(hub, app, on_envelope, on_conn_close);
  *out = app;
  return 0;
}

int sb_app_free(sb_app *app) {
  if (!app) return 0;
  if (app->npending) return SB_EBUSY;
  sb_hub_set_app(app->hub, NULL, NULL, NULL);
  sb_router_free(app->router);
  while (app->routes) {
    sb_routes *n = app->routes->next;
    sb_router_free(app->routes->router);
    sb_free(app->a, app->routes);
    app->routes = n;
  }
  sb_free(app->a, app->targets);
  sb_free(app->a, app);
  return 0;
}
