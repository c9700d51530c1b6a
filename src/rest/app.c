/*
 * app.c — the REST layer over a hub: REQUEST/SEND envelopes, and plain HTTP requests, →
 * middleware → route → response.
 *
 * Plain HTTP: sb_app_new installs the app as its server's HTTP handler (net.h), so a request
 * that is not a WebSocket upgrade becomes an sb_req just as an envelope does — the same
 * middleware, router, error handler and per-request values — with its headers copied in too.
 * sb_respond then writes an HTTP response (status line, the headers set with
 * sb_respond_header, Content-Type, Content-Length, Connection) instead of a RESPONSE envelope;
 * a HEAD request runs the GET route and its response goes without the body. The connection
 * (http_conn.c) holds back the next request until this one is answered, so answers keep the
 * order of the requests.
 *
 * A request is one allocation (req_new): the struct, the decoded query pairs, copies of the
 * path, the query string, the sender's identity and the body (the envelope is borrowed for
 * the duration of the hub's callback only, and a handler may answer much later), the router's
 * and the query parser's scratch space, and for HTTP the request's headers. Response headers
 * set with sb_respond_header are an allocation of their own. A request is on the app's list
 * of pending requests until answered; when its connection closes it stays there with
 * conn == NULL, so that a late sb_respond() is safe and frees it.
 *
 * The chain: sb_next() walks the middleware list from where the request stands, skipping
 * entries whose prefix does not cover the path, and then runs the route (or fails with the
 * router's 404/405). Routing is done once, when the request arrives, so that the error of a
 * path without a route is known before any middleware runs, as in Express the middleware
 * still runs first.
 *
 * Response heads and error bodies are put together with an sb_strbuf (common/strbuf.h), in
 * buffers sized from what goes in (the compiler counts the literal parts). An append that does
 * not fit is therefore a bug of ours; it is still checked, and turns into a whole 500 answer
 * (never a head or a body cut short). A head that cannot be allocated gets a bare 503: a
 * connection that got no answer at all would keep every request pipelined behind it waiting.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/strbuf.h"
#include "hub/hub.h"
#include "net/net.h"
#include "rest/router.h"
#include "rest/static.h"
#include "ws/utf8.h"

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
  sb_static_mount **statics; /* sb_app_static folders, closed by sb_app_free */
  size_t nstatics;
  time_t date_at;        /* the Date header, formatted once a second */
  char date[40];
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
  uint8_t http;          /* a plain HTTP request (else an envelope) */
  uint8_t head;          /* HTTP HEAD: routed as GET, answered without the body */
  const char *hdrs;      /* HTTP: request headers, "name\0value\0" pairs, in data[] */
  unsigned nhdrs;
  char *rhdrs;           /* HTTP: response headers set so far, "Name: value\r\n" lines */
  size_t rhdrs_len, rhdrs_cap;
  char data[]; /* [query pairs] path, query, body, route scratch, query scratch, headers */
};

#define SB_REQ_MAX_QUERY 32
#define SB_REQ_MAX_RESPONSE_HEADERS 8192

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

int sb_app_static(sb_app *app, const char *prefix, const char *folder) {
  if (!app || !folder) return SB_EINVAL;
  sb_static_mount **list = sb_realloc(app->a, app->statics, (app->nstatics + 1) * sizeof(*list));
  if (!list) return SB_ENOMEM;
  app->statics = list;
  sb_static_mount *m;
  int r = sb_static_new(&m, prefix, folder, app->a);
  if (r) return r;
  r = sb_app_use(app, prefix, sb_static_handler, m);
  if (r) {
    sb_static_free(m, app->a);
    return r;
  }
  app->statics[app->nstatics++] = m;
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
  sb_free(app->a, req->rhdrs);
  sb_free(app->a, req);
}

static const char *reason(int status) {
  const char *r = sb_http_reason(status);
  if (r && status >= 400) return r;
  return status >= 500 ? "Internal Server Error" : "Error";
}

/* Whether a response header `name` was set (the lines start at 0 or after a CRLF). */
static int has_rheader(const sb_req *req, const char *name) {
  size_t n = strlen(name);
  for (size_t i = 0; i < req->rhdrs_len;) {
    if (i + n < req->rhdrs_len && req->rhdrs[i + n] == ':' &&
        strncasecmp(req->rhdrs + i, name, n) == 0)
      return 1;
    const char *eol = memchr(req->rhdrs + i, '\n', req->rhdrs_len - i);
    if (!eol) break;
    i = (size_t)(eol - req->rhdrs) + 1;
  }
  return 0;
}

/* The Content-Type of a body the handler did not type: JSON when it looks like JSON (an object
 * or an array), text when it is UTF-8 without control characters, bytes otherwise. */
static const char *default_type(const uint8_t *b, size_t n) {
  size_t i = 0, j = n;
  while (i < j && (b[i] == ' ' || b[i] == '\t' || b[i] == '\r' || b[i] == '\n')) i++;
  while (j > i && (b[j - 1] == ' ' || b[j - 1] == '\t' || b[j - 1] == '\r' || b[j - 1] == '\n')) j--;
  if (j - i >= 2 && ((b[i] == '{' && b[j - 1] == '}') || (b[i] == '[' && b[j - 1] == ']')))
    return "application/json";
  for (size_t k = 0; k < n; k++) {
    if ((b[k] < 0x20 && b[k] != '\t' && b[k] != '\r' && b[k] != '\n') || b[k] == 0x7f)
      return "application/octet-stream";
  }
  return sb_utf8_valid(b, n) ? "text/plain; charset=utf-8" : "application/octet-stream";
}

/* RFC 9110 §5.6.7 IMF-fixdate, without the locale (strftime's %a and %b follow it). */
static const char *http_date(sb_app *app) {
  time_t now = time(NULL);
  if (now != app->date_at) { /* formatted once a second */
    sb_http_date(now, app->date, sizeof(app->date));
    app->date_at = now;
  }
  return app->date;
}

/* A response without body or handler headers, for when the real one cannot be made (its head
 * out of memory or, a bug, out of its buffer): the connection must still get its answer. Our
 * Connection line is a short literal (sb_ws_http_connection_header); were it ever too long for
 * the buffer, the answer says "Connection: close" instead, which the client then honours. */
static int bare_answer(sb_conn *c, unsigned status) {
  static const char close_line[] = "Connection: close\r\n";
  const char *phrase = sb_http_reason((int)status);
  char head[256];
  sb_strbuf sb;
  sb_strbuf_init(&sb, head, sizeof(head));
  sb_strbuf_appendf(&sb, "HTTP/1.1 %u %s\r\nContent-Length: 0\r\n", status, phrase ? phrase : "");
  size_t at = sb.len;
  sb_strbuf_appends(&sb, sb_ws_http_connection_header(c));
  sb_strbuf_appends(&sb, "\r\n");
  if (sb_strbuf_overflowed(&sb)) {
    sb_strbuf_resume(&sb, head, sizeof(head), at); /* fits: the status line is from a table */
    sb_strbuf_appends(&sb, close_line);
    sb_strbuf_appends(&sb, "\r\n");
  }
  return sb_ws_http_respond(c, sb.buf, sb.len, NULL, 0);
}

/* The Allow line of a 405 (RFC 9110 §15.5.6: a 405 lists the methods), for each method bit
 * set in `allowed`, into `al` (empty when none is). */
#define SB_ALLOW_LONGEST "Allow: GET, HEAD, POST, PUT, PATCH, DELETE\r\n"
static void allow_line(sb_strbuf *al, unsigned allowed) {
  static const char *names[] = {"GET, HEAD", "POST", "PUT", "PATCH", "DELETE"};
  for (int k = 0; k < 5; k++) {
    if (allowed & (1u << k)) {
      sb_strbuf_appends(al, al->len ? ", " : "Allow: ");
      sb_strbuf_appends(al, names[k]);
    }
  }
  if (al->len) sb_strbuf_appends(al, "\r\n");
}

/* Writes the HTTP response: `len` bytes of body, announced as `content_length` (they differ
 * only for a HEAD answered without reading what it would send). */
static int http_respond(sb_req *req, unsigned status, const void *body, size_t len,
                        size_t content_length) {
  sb_app *app = req->app;
  if (status < 200 || status > 599) status = 500; /* 1xx are not final answers; 101 is ours */
  int bodiless = status == 204 || status == 304;
  const char *type = NULL;
  if (!bodiless && content_length && !has_rheader(req, "Content-Type"))
    type = body ? default_type(body, len) : "application/octet-stream";
  char allow[sizeof SB_ALLOW_LONGEST];
  sb_strbuf al;
  sb_strbuf_init(&al, allow, sizeof(allow));
  if (status == 405 && !has_rheader(req, "Allow")) allow_line(&al, req->match.allowed);
  const char *conn = sb_ws_http_connection_header(req->conn);
  const char *phrase = sb_http_reason((int)status);
  const char *date = http_date(app);
  /* Every part counted: the literals by the compiler, the rest by strlen. */
  size_t need = sizeof "HTTP/1.1 999 \r\nDate: \r\nContent-Type: \r\n"
                       "Content-Length: 18446744073709551615\r\n\r\n" +
                (phrase ? strlen(phrase) : 0) + strlen(date) + (type ? strlen(type) : 0) +
                req->rhdrs_len + al.len + strlen(conn);
  char stack[1024], *head = stack;
  if (need > sizeof(stack) && !(head = sb_malloc(app->a, need))) {
    bare_answer(req->conn, 503);
    return SB_ENOMEM;
  }
  sb_strbuf sb;
  sb_strbuf_init(&sb, head, head == stack ? sizeof(stack) : need);
  sb_strbuf_appendf(&sb, "HTTP/1.1 %u %s\r\nDate: %s\r\n", status, phrase ? phrase : "", date);
  sb_strbuf_append(&sb, req->rhdrs, req->rhdrs_len);
  if (type) sb_strbuf_appendf(&sb, "Content-Type: %s\r\n", type);
  if (!bodiless) sb_strbuf_appendf(&sb, "Content-Length: %zu\r\n", content_length);
  sb_strbuf_append(&sb, allow, al.len);
  sb_strbuf_appends(&sb, conn);
  sb_strbuf_appends(&sb, "\r\n");
  int r;
  if (sb_strbuf_overflowed(&sb) || sb_strbuf_overflowed(&al)) {
    bare_answer(req->conn, 500); /* a bug of ours: never a head cut short */
    r = SB_ENOMEM;
  } else {
    int send_body = !bodiless && !req->head && len;
    r = sb_ws_http_respond(req->conn, sb.buf, sb.len, send_body ? body : NULL,
                           send_body ? len : 0);
  }
  if (head != stack) sb_free(app->a, head);
  return r;
}

int sb_respond(sb_req *req, uint16_t status, const void *body, size_t len) {
  if (!req) return SB_EINVAL;
  int r = 0;
  if (!req->conn) r = SB_ECLOSED;
  else if (req->http) r = http_respond(req, status, body, len, len);
  else if (req->kind == SB_KIND_REQUEST) {
    r = sb_hub_respond(req->conn, req->id, status, body, len);
    if (r > 0) r = r == SB_SEND_DROPPED ? SB_ECLOSED : 0;
  }
  req_free(req);
  return r;
}

int sb_respond_sized(sb_req *req, uint16_t status, size_t content_length) {
  if (!req) return SB_EINVAL;
  int r = !req->conn ? SB_ECLOSED
                     : req->http ? http_respond(req, status, NULL, 0, content_length) : SB_EINVAL;
  req_free(req);
  return r;
}

int sb_respond_header(sb_req *req, const char *name, const char *value) {
  /* The framing and the connection are the library's. */
  if (!req || !name || !value || !sb_http_field_ok(name, strlen(name), value) ||
      sb_http_field_reserved(name, strlen(name)))
    return SB_EINVAL;
  if (!req->http) return 0; /* a RESPONSE envelope has no headers */
  size_t n = strlen(name) + (sizeof ": \r\n" - 1) + strlen(value); /* the line */
  if (req->rhdrs_len + n > SB_REQ_MAX_RESPONSE_HEADERS) return SB_ENOMEM;
  /* One byte more than the lines: the appender keeps a NUL after them. (Without it, a line
   * that ended exactly at the end of the buffer lost its LF to snprintf's NUL.) */
  if (req->rhdrs_len + n + 1 > req->rhdrs_cap) {
    size_t cap = SB_MAX(req->rhdrs_len + n + 1, SB_MAX((size_t)256, req->rhdrs_cap * 2));
    char *p = sb_realloc(req->app->a, req->rhdrs, cap);
    if (!p) return SB_ENOMEM;
    req->rhdrs = p;
    req->rhdrs_cap = cap;
  }
  sb_strbuf sb;
  sb_strbuf_resume(&sb, req->rhdrs, req->rhdrs_cap, req->rhdrs_len);
  if (sb_strbuf_appendf(&sb, "%s: %s\r\n", name, value) != 0) return SB_ENOMEM; /* unchanged */
  req->rhdrs_len = sb.len;
  return 0;
}

/* The default error handler shows the status's reason phrase, never the message (which may
 * hold internal detail), and for 405 the methods the path has. */
static void default_error(sb_req *req, int status, const char *message, void *user) {
  (void)message;
  (void)user;
  /* The longest body, counted by the compiler, with room for the longest reason phrase. */
#define SB_ERROR_BODY_LONGEST "{\"error\":\"\",\"allow\":[\"GET\",\"POST\",\"PUT\",\"PATCH\",\"DELETE\"]}"
  char body[sizeof SB_ERROR_BODY_LONGEST + 64];
  sb_strbuf sb;
  sb_strbuf_init(&sb, body, sizeof(body));
  sb_strbuf_appendf(&sb, "{\"error\":\"%s\"", reason(status));
  if (status == 405) {
    static const char *names[] = {"GET", "POST", "PUT", "PATCH", "DELETE"};
    sb_strbuf_appends(&sb, ",\"allow\":[");
    int first = 1;
    for (int k = 0; k < 5; k++) {
      if (req->match.allowed & (1u << k)) {
        sb_strbuf_appendf(&sb, "%s\"%s\"", first ? "" : ",", names[k]);
        first = 0;
      }
    }
    sb_strbuf_appends(&sb, "]");
  }
  sb_strbuf_appends(&sb, "}");
  if (sb_strbuf_overflowed(&sb)) { /* a bug of ours (a longer phrase): never a cut body */
    static const char internal[] = "{\"error\":\"Internal Server Error\"}";
    sb_respond(req, 500, internal, sizeof internal - 1);
    return;
  }
  sb_respond(req, (uint16_t)status, sb.buf, sb.len);
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

/* One allocation: the struct, the decoded-query pairs, copies of the path, the query and the
 * body, the router's and the query parser's scratch, and `extra` bytes at the end (an HTTP
 * request's headers). The request is pending from here on: it is answered exactly once. */
static sb_req *req_new(sb_app *app, sb_conn *c, const char *url, size_t url_len,
                       const void *body, size_t body_len, size_t extra, char **extra_out) {
  const char *q = memchr(url, '?', url_len);
  size_t plen = q ? (size_t)(q - url) : url_len;
  size_t qlen = q ? url_len - plen - 1 : 0;
  size_t pairs = qlen ? SB_REQ_MAX_QUERY * sizeof(sb_query_pair) : 0;
  size_t rscratch = 2 * plen + 2, qscratch = qlen ? 2 * qlen + 2 : 0;
  /* The identity is copied: the request may outlive its connection. A plain HTTP
   * connection has none (its middleware reads its own headers). */
  const char *identity = c ? sb_conn_identity(c) : "";
  size_t ilen = strlen(identity);
  sb_req *req = sb_malloc(app->a, sizeof(*req) + pairs + plen + 1 + qlen + 1 + ilen + 1 +
                                      body_len + rscratch + qscratch + extra);
  if (!req) return NULL;
  memset(req, 0, sizeof(*req));
  req->app = app;
  req->conn = c;
  char *p = req->data;
  req->qpairs = (sb_query_pair *)(void *)p; /* data[] is 8-aligned: sizeof(sb_req) is */
  p += pairs;
  req->path = p;
  memcpy(p, url, plen);
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
  req->body_len = body_len;
  if (body_len) memcpy(p, body, body_len);
  p += body_len;
  *extra_out = p + rscratch + qscratch;
  req->next = app->pending;
  if (app->pending) app->pending->prev = req;
  app->pending = req;
  app->npending++;
  return req;
}

/* Checks, parses the query, routes once, and starts the chain. */
static void req_start(sb_req *req, const char *url, size_t url_len) {
  sb_app *app = req->app;
  size_t plen = strlen(req->path), qlen = strlen(req->query);
  char *route_scratch = (char *)req->body + req->body_len;
  char *query_scratch = route_scratch + 2 * plen + 2;
  if (req->method < SB_METHOD_GET || req->method > SB_METHOD_DELETE) {
    /* Over HTTP a method we do not route is "not implemented" (RFC 9110 §15.6.2). */
    req->match.status = req->http ? 501 : 400;
    sb_fail(req, (uint16_t)req->match.status,
            req->http ? "method not implemented" : "a request needs a method (GET .. DELETE)");
    return;
  }
  if (plen == 0 || req->path[0] != '/' || memchr(url, '\0', url_len)) {
    req->match.status = 400;
    sb_fail(req, 400, "a request needs a method and a path starting with '/'");
    return;
  }
  long nq = qlen ? sb_query_parse(req->query, qlen, req->qpairs, SB_REQ_MAX_QUERY, query_scratch,
                                  2 * qlen + 2)
                 : 0;
  if (nq < 0) {
    req->match.status = 400;
    sb_fail(req, 400, "malformed query string");
    return;
  }
  req->nq = (size_t)nq;
  sb_router_match(app->router, req->method, req->path, plen, route_scratch, 2 * plen + 2,
                  &req->match);
  if (req->match.status == 400) {
    sb_fail(req, 400, "malformed path");
    return;
  }
  sb_next(req);
}

static void on_envelope(void *ctx, sb_conn *c, const sb_envelope *env) {
  sb_app *app = ctx;
  char *extra;
  sb_req *req = req_new(app, c, env->url, env->url_len, env->body, env->body_len, 0, &extra);
  if (!req) {
    if (env->kind == SB_KIND_REQUEST) sb_hub_respond(c, env->id, 503, "", 0);
    return;
  }
  req->id = env->id;
  req->method = env->method;
  req->kind = env->kind;
  req_start(req, env->url, env->url_len);
}

/* A plain HTTP request, whole (http_conn.c); `hr` is borrowed for this call. */
static void on_http(void *ctx, sb_conn *c, const sb_http_request *hr) {
  sb_app *app = ctx;
  uint8_t method = SB_METHOD_NONE, head = 0;
  switch (hr->parser.method) {
    case HTTP_HEAD: head = 1; method = SB_METHOD_GET; break; /* routed as GET */
    case HTTP_GET: method = SB_METHOD_GET; break;
    case HTTP_POST: method = SB_METHOD_POST; break;
    case HTTP_PUT: method = SB_METHOD_PUT; break;
    case HTTP_PATCH: method = SB_METHOD_PATCH; break;
    case HTTP_DELETE: method = SB_METHOD_DELETE; break;
    default: break;
  }
  const char *url = sb_http_url(hr);
  size_t url_len = strlen(url);
  /* The absolute form (RFC 9112 §3.2.2, what a proxy sends): routed by its path. */
  if (url_len > 7 && (strncasecmp(url, "http://", 7) == 0 || strncasecmp(url, "https://", 8) == 0)) {
    const char *p = strchr(strstr(url, "://") + 3, '/');
    const char *path = p ? p : "/";
    url_len = p ? url_len - (size_t)(p - url) : 1;
    url = path;
  }
  size_t hbytes = 0;
  for (unsigned i = 0; i < hr->nheaders; i++)
    hbytes += strlen(hr->buf + hr->headers[i][0]) + strlen(hr->buf + hr->headers[i][1]) + 2;
  char *h;
  sb_req *req = req_new(app, c, url, url_len, hr->body, hr->body_len, hbytes, &h);
  if (!req) {
    bare_answer(c, 503);
    return;
  }
  req->method = method;
  req->kind = SB_KIND_REQUEST;
  req->http = 1;
  req->head = head;
  req->hdrs = h;
  req->nhdrs = hr->nheaders;
  for (unsigned i = 0; i < hr->nheaders; i++) {
    for (int k = 0; k < 2; k++) {
      const char *s = hr->buf + hr->headers[i][k];
      size_t n = strlen(s) + 1;
      memcpy(h, s, n);
      h += n;
    }
  }
  req_start(req, url, url_len);
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
sb_conn *sb_req_conn(const sb_req *r) { return r->http ? NULL : r->conn; }
int sb_req_is_http(const sb_req *r) { return r->http; }
int sb_req_is_head(const sb_req *r) { return r->head; }
const char *sb_req_query_string(const sb_req *r) { return r->query; }

const char *sb_req_header(const sb_req *r, const char *name) {
  if (!r || !name) return NULL;
  const char *p = r->hdrs;
  for (unsigned i = 0; i < r->nhdrs; i++) {
    const char *value = p + strlen(p) + 1;
    if (strcasecmp(p, name) == 0) return value;
    p = value + strlen(value) + 1;
  }
  return NULL;
}
int sb_req_one_way(const sb_req *r) { return r->kind == SB_KIND_SEND; }
const char *sb_req_identity(const sb_req *r) { return r->identity ? r->identity : ""; }
const char *sb_req_claims(const sb_req *r) {
  return r->conn && !r->http ? sb_conn_claims(r->conn) : NULL;
}

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
  sb_net_set_http(sb_hub_server(hub), app, on_http, on_conn_close);
  *out = app;
  return 0;
}

int sb_app_free(sb_app *app) {
  if (!app) return 0;
  if (app->npending) return SB_EBUSY;
  sb_hub_set_app(app->hub, NULL, NULL, NULL);
  sb_net_set_http(sb_hub_server(app->hub), NULL, NULL, NULL);
  for (size_t i = 0; i < app->nstatics; i++) sb_static_free(app->statics[i], app->a);
  sb_free(app->a, app->statics);
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
