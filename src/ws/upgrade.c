/*
 * upgrade.c — the upgrade auth: an upgrade request waiting for the application's verdict, the
 * identity and claims it leaves on the connection, and the renewal of expiring credentials.
 *
 * Waiting. A valid upgrade from an allowed Origin becomes an sb_upgrade handed to on_upgrade.
 * The connection stops reading while it waits (a client must wait for the 101 anyway), keeps
 * its parsed request (the handshake state points back at the handle), and stays under the
 * handshake deadline: left unanswered, it is answered 503 by the sweep. The handle belongs to
 * the application until it calls accept or reject, so it outlives its connection if need be:
 * when the connection goes first, the handle is orphaned (conn = NULL) and the late verdict
 * returns SB_ECLOSED. The handle copies the allocator for that reason: the server may be gone
 * too by then.
 *
 * Expiry. Credentials accepted with an expiry time are watched by the sweep (no timer per
 * connection). At ask_at the hub is told (it sends an AUTH message asking for a new token);
 * the token the client sends back goes through the same on_upgrade callback as a refresh
 * handle, which must name the same identity. At expiry, without a new token, the connection
 * is closed with 4001, so that no connection outlives its credentials.
 */
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "common/url.h"
#include "net/net.h"

typedef struct str {
  struct str *next;
  char s[];
} str;

struct sb_upgrade {
  sb_conn *conn;    /* NULL once the connection is gone */
  sb_allocator a;   /* a copy: the server may be freed before the application answers */
  int refresh;
  int token_done;
  const char *token;
  str *strs;        /* strings handed out, freed with the handle */
  uint8_t *early;   /* bytes that came after the request (the read buffer's, then a copy) */
  size_t early_len;
  int early_owned;
  int addr_done;
  char addr[64];    /* the peer's address, looked up when first asked for */
};

static void up_free(sb_upgrade *up) {
  while (up->strs) {
    str *n = up->strs->next;
    sb_free(&up->a, up->strs);
    up->strs = n;
  }
  if (up->early_owned) sb_free(&up->a, up->early);
  sb_free(&up->a, up);
}

static const char *keep(sb_upgrade *up, const char *s, size_t n) {
  str *k = sb_malloc(&up->a, sizeof(*k) + n + 1);
  if (!k) return NULL;
  memcpy(k->s, s, n);
  k->s[n] = '\0';
  k->next = up->strs;
  up->strs = k;
  return k->s;
}

static sb_handshake *HS(const sb_upgrade *up) {
  return up->conn && !up->refresh && up->conn->state == SB_CONN_HANDSHAKE ? up->conn->hs : NULL;
}

static void look_up_peer(sb_upgrade *up) {
  if (up->addr_done) return;
  up->addr_done = 1;
  if (up->conn && up->conn->state != SB_CONN_CLOSED) sb_net_peer(up->conn, up->addr, sizeof(up->addr));
}

void sb_ws_upgrade_orphan(void *upgrade) {
  sb_upgrade *up = upgrade;
  look_up_peer(up); /* the application may still ask, after the connection is gone */
  up->conn = NULL;
}

void sb_ws_upgrade_start(sb_conn *c, const uint8_t *early, size_t early_len) {
  sb_server *s = c->srv;
  /* A client must wait for the 101 before it sends frames; a little is tolerated. */
  if (early_len > SB_EARLY_MAX) return sb_ws_reject_upgrade(c, 400, NULL, "data before the 101");
  sb_upgrade *up = sb_malloc(&s->alloc, sizeof(*up));
  if (!up) return sb_ws_reject_upgrade(c, 503, NULL, "out of memory");
  memset(up, 0, sizeof(*up));
  up->conn = c;
  up->a = s->alloc;
  up->early = (uint8_t *)early; /* borrowed from the read buffer during the callback */
  up->early_len = early_len;
  c->hs->upgrade = up;
  s->opts.on_upgrade(up, s->hook_user);
  /* No verdict yet: the connection waits without reading (a client must wait for the 101),
   * and the read buffer is about to be reused, so the early bytes are copied. A verdict given
   * inside the callback (the usual JWT case) costs neither. The connection memory outlives
   * this call (it goes in libuv's close callback), and `up` is still pending only if the
   * handshake still points at it. */
  if (c->state != SB_CONN_HANDSHAKE || !c->hs || c->hs->upgrade != up) return;
  sb_net_read_stop(c);
  if (early_len) {
    uint8_t *copy = sb_malloc(&s->alloc, early_len);
    if (!copy) return sb_ws_reject_upgrade(c, 503, NULL, "out of memory");
    memcpy(copy, early, early_len);
    up->early = copy;
    up->early_owned = 1;
  }
}

/* ---- reading the request -------------------------------------------------------------- */

const char *sb_upgrade_path(sb_upgrade *up) {
  sb_handshake *h = HS(up);
  if (!h) return "";
  /* Copies: the handshake's buffer goes back to the pool when the connection is answered or
   * dropped, and the application may hold these strings until its verdict. */
  const char *url = sb_handshake_url(h);
  const char *q = strchr(url, '?');
  return keep(up, url, q ? (size_t)(q - url) : strlen(url));
}

const char *sb_upgrade_header(sb_upgrade *up, const char *name) {
  sb_handshake *h = HS(up);
  const char *v = h && name ? sb_handshake_header(h, name) : NULL;
  return v ? keep(up, v, strlen(v)) : NULL;
}

const char *sb_upgrade_remote_address(sb_upgrade *up) {
  look_up_peer(up);
  return up->addr;
}

const char *sb_upgrade_query(sb_upgrade *up, const char *name) {
  sb_handshake *h = HS(up);
  if (!h || !name) return NULL;
  const char *q = strchr(sb_handshake_url(h), '?');
  if (!q) return NULL;
  size_t len = strlen(q + 1);
  char *tmp = sb_malloc(&up->a, len + 1);
  if (!tmp) return NULL;
  long n = sb_query_find(q + 1, len, name, tmp, len + 1);
  const char *r = n < 0 ? NULL : keep(up, tmp, (size_t)n);
  sb_free(&up->a, tmp);
  return r;
}

/* Cookie: a=1; b=2 (RFC 6265 §5.4), in every Cookie header. Values may be quoted. */
const char *sb_upgrade_cookie(sb_upgrade *up, const char *name) {
  sb_handshake *h = HS(up);
  if (!h || !name) return NULL;
  size_t nlen = strlen(name);
  for (unsigned i = 0; i < h->req.nheaders; i++) {
    if (strcasecmp(h->req.buf + h->req.headers[i][0], "Cookie") != 0) continue;
    const char *p = h->req.buf + h->req.headers[i][1];
    while (*p) {
      while (*p == ' ' || *p == ';') p++;
      const char *end = strchr(p, ';');
      if (!end) end = p + strlen(p);
      const char *eq = memchr(p, '=', (size_t)(end - p));
      if (eq && (size_t)(eq - p) == nlen && memcmp(p, name, nlen) == 0) {
        const char *v = eq + 1;
        size_t vlen = (size_t)(end - v);
        while (vlen && v[vlen - 1] == ' ') vlen--;
        if (vlen >= 2 && v[0] == '"' && v[vlen - 1] == '"') v++, vlen -= 2;
        return keep(up, v, vlen);
      }
      p = end;
    }
  }
  return NULL;
}

/* May this upgrade's cookies stand for its visitor? A browser sends a site's cookies with a
 * WebSocket opened by any page, of any site (a WebSocket is not bound by the same-origin
 * policy), so a cookie proves nothing about the page unless the page's Origin is one we trust:
 * one of allowed_origins when the list is set (the others were refused with 403 before
 * on_upgrade), or the server's own origin, the same host and port as the Host header, when it
 * is not. A request without an Origin header does not come from a browser's page, and a
 * client that sets Cookie by hand could as well have sent Authorization. */
static int cookie_trusted(sb_upgrade *up) {
  sb_handshake *h = HS(up);
  const char *origin = sb_handshake_header(h, "Origin");
  if (!origin) return 1;
  const sb_server *s = up->conn->srv;
  if (s->norigins == 0) return sb_handshake_same_origin(origin, sb_handshake_header(h, "Host"));
  for (size_t i = 0; i < s->norigins; i++) {
    if (strcmp(origin, s->origins[i]) == 0) return 1;
  }
  return 0;
}

const char *sb_upgrade_token(sb_upgrade *up) {
  if (up->token_done || !HS(up)) return up->token;
  up->token_done = 1;
  const char *auth = sb_handshake_header(HS(up), "Authorization");
  if (auth && strncasecmp(auth, "Bearer ", 7) == 0) {
    const char *t = auth + 7;
    while (*t == ' ') t++;
    if (*t) return up->token = keep(up, t, strlen(t));
  }
  /* Sec-WebSocket-Protocol: a comma-separated list, in one header or several; the entry may
   * be a few KiB long (an RS256 JWT), so the headers are scanned where they lie. */
  sb_handshake *h = HS(up);
  for (unsigned i = 0; i < h->req.nheaders; i++) {
    if (strcasecmp(h->req.buf + h->req.headers[i][0], "Sec-WebSocket-Protocol") != 0) continue;
    const char *p = h->req.buf + h->req.headers[i][1], *e;
    size_t n;
    while ((e = sb_list_next(&p, &n)) != NULL) {
      if (n > 7 && strncmp(e, "bearer.", 7) == 0) return up->token = keep(up, e + 7, n - 7);
    }
  }
  const char *t = cookie_trusted(up) ? sb_upgrade_cookie(up, "sb_token") : NULL;
  if (!t || !*t) t = sb_upgrade_query(up, "access_token");
  return up->token = t && *t ? t : NULL;
}

int sb_upgrade_is_refresh(const sb_upgrade *up) { return up->refresh; }
sb_conn *sb_upgrade_conn(const sb_upgrade *up) { return up->conn; }

/* ---- the verdict ---------------------------------------------------------------------- */

/* Never before the epoch: with now >= 0 and 0 < expires <= INT64_MAX, the differences below
 * cannot overflow, whatever expiry a token or an application names. */
static int64_t wall_now(void) {
  time_t t = time(NULL);
  return t > 0 ? (int64_t)t : 0;
}

/* ask_at: refresh_before_ms ahead of expiry, but not in the first half of the lifetime (a
 * short-lived token would otherwise be asked for again at once). expires > 0 (0 is "never"
 * and negative ones are refused), so expires - now and expires minus at most UINT_MAX / 1000
 * stay in range. */
static int64_t ask_time(const sb_server *s, int64_t expires) {
  int64_t now = wall_now();
  int64_t early = expires - (int64_t)(s->opts.refresh_before_ms / 1000);
  int64_t half = now + (expires - now) / 2;
  return early > half ? early : half;
}

static char *claims_copy(const sb_server *s, const char *claims) {
  if (!claims) return NULL;
  size_t n = strlen(claims) + 1;
  char *c = sb_malloc(&s->alloc, n);
  if (c) memcpy(c, claims, n);
  return c;
}

/* New credentials: claims and expiry (the identity is the block's, set once). 0 or SB_ENOMEM
 * with nothing changed. */
static int auth_set(const sb_server *s, sb_conn_auth *au, const char *claims, int64_t expires) {
  char *c = claims_copy(s, claims);
  if (claims && !c) return SB_ENOMEM;
  sb_free(&s->alloc, au->claims);
  au->claims = c;
  au->expires = expires;
  au->ask_at = expires ? ask_time(s, expires) : 0;
  au->asked = 0;
  return 0;
}

static sb_conn_auth *auth_new(const sb_server *s, const char *identity, const char *claims,
                              int64_t expires) {
  size_t il = strlen(identity);
  sb_conn_auth *au = sb_malloc(&s->alloc, sizeof(*au) + il + 1);
  if (!au) return NULL;
  memset(au, 0, sizeof(*au));
  memcpy(au->identity, identity, il + 1);
  if (auth_set(s, au, claims, expires) != 0) {
    sb_free(&s->alloc, au);
    return NULL;
  }
  return au;
}

/* An identity names the group "user:<identity>": UTF-8, at most SB_IDENTITY_MAX bytes. */
static int identity_ok(const char *identity) {
  size_t n = strlen(identity);
  return n <= SB_IDENTITY_MAX && sb_utf8_valid((const uint8_t *)identity, n);
}

int sb_upgrade_accept(sb_upgrade *up, const char *identity, const char *claims,
                      int64_t expires_at) {
  if (!up) return SB_EINVAL;
  sb_conn *c = up->conn;
  if (!identity) identity = "";
  if (!c || c->state == SB_CONN_CLOSED) {
    up_free(up);
    return SB_ECLOSED;
  }
  sb_server *s = c->srv;
  /* Credentials that are already over (a token accepted within its leeway) are refused
   * rather than accepted and closed at the next sweep. */
  int stale = expires_at != 0 && expires_at <= wall_now();
  if (up->refresh) {
    /* identity and claims may be the handle's own strings: use them before freeing it */
    c->auth->refresh = NULL;
    int r = 0;
    if (c->state != SB_CONN_OPEN) r = SB_ECLOSED;
    else if (strcmp(identity, c->auth->identity) != 0)
      sb_ws_fail(c, SB_CLOSE_IDENTITY, "a refreshed token named another identity");
    else if (stale || expires_at < 0) {
      if (s->auth_event) s->auth_event(s->hub, c, 401, "credentials expired");
      r = SB_EINVAL;
    } else if ((r = auth_set(s, c->auth, claims, expires_at)) != 0) {
      /* out of memory: the old credentials stand until they expire */
    } else if (s->auth_event) {
      s->auth_event(s->hub, c, 200, "");
    }
    up_free(up);
    return r;
  }
  if (!identity_ok(identity) || expires_at < 0 || stale) {
    up_free(up);
    c->hs->upgrade = NULL;
    if (stale) sb_ws_reject_upgrade(c, 401, NULL, "credentials expired");
    else sb_ws_reject_upgrade(c, 500, NULL, "internal error");
    return SB_EINVAL;
  }
  if (*identity || claims || expires_at) {
    c->auth = auth_new(s, identity, claims, expires_at);
    if (!c->auth) {
      up_free(up);
      c->hs->upgrade = NULL;
      sb_ws_reject_upgrade(c, 503, NULL, "out of memory");
      return SB_ENOMEM;
    }
  }
  c->hs->upgrade = NULL;
  if (sb_net_read_start(c) != 0) {
    up_free(up);
    sb_net_close(c);
    return SB_EIO;
  }
  if (c->state == SB_CONN_HANDSHAKE) sb_ws_accept_upgrade(c, up->early, up->early_len);
  up_free(up);
  return 0;
}

/* Extra header lines must be "Name: value" with a token name and no CR or LF anywhere: they
 * are written into the response as they are. */
static int header_ok(const char *h) {
  const char *colon = strchr(h, ':');
  if (!colon) return 0;
  size_t n = (size_t)(colon - h);
  /* The framing of the answer is ours (a second Content-Length or a Connection header could
   * make a proxy read the stream differently), and so are its text body and the upgrade's. */
  return sb_http_field_ok(h, n, colon + 1) && !sb_http_field_reserved(h, n) &&
         !(n == 12 && strncasecmp(h, "Content-Type", 12) == 0) &&
         strncasecmp(h, "Sec-WebSocket-", 14) != 0;
}

int sb_upgrade_reject(sb_upgrade *up, int status, const char *const *headers, size_t nheaders,
                      const char *body) {
  if (!up) return SB_EINVAL;
  sb_conn *c = up->conn;
  int refresh = up->refresh;
  char lines[1024];
  size_t n = 0;
  int bad = status < 400 || status > 599 || (nheaders && !headers);
  for (size_t i = 0; i < nheaders && !bad; i++) {
    size_t l = headers[i] ? strlen(headers[i]) : 0;
    if (!headers[i] || !header_ok(headers[i]) || n + l + 3 > sizeof(lines)) bad = 1;
    else {
      memcpy(lines + n, headers[i], l);
      memcpy(lines + n + l, "\r\n", 2);
      n += l + 2;
    }
  }
  lines[n] = '\0';
  char text[256];
  snprintf(text, sizeof(text), "%s", body ? body : "");
  for (char *p = text; *p; p++) {
    if ((unsigned char)*p < ' ') *p = ' ';
  }
  up_free(up);
  if (!c || c->state == SB_CONN_CLOSED) return SB_ECLOSED;
  if (refresh) {
    c->auth->refresh = NULL;
    if (c->srv->auth_event) c->srv->auth_event(c->srv->hub, c, bad ? 500 : status, text);
    return bad ? SB_EINVAL : 0;
  }
  c->hs->upgrade = NULL;
  if (bad) {
    sb_ws_reject_upgrade(c, 500, NULL, "internal error");
    return SB_EINVAL;
  }
  sb_ws_reject_upgrade(c, status, lines, text);
  return 0;
}

/* ---- refresh and expiry --------------------------------------------------------------- */

int sb_ws_refresh(sb_conn *c, const char *token, size_t len) {
  sb_server *s = c->srv;
  if (!s->opts.on_upgrade || !c->auth || !c->auth->expires) return SB_ESTATE;
  if (c->auth->refresh) return SB_EBUSY;
  sb_upgrade *up = sb_malloc(&s->alloc, sizeof(*up));
  if (!up) return SB_ENOMEM;
  memset(up, 0, sizeof(*up));
  up->conn = c;
  up->a = s->alloc;
  up->refresh = 1;
  up->token_done = 1;
  up->token = len && !memchr(token, '\0', len) ? keep(up, token, len) : NULL;
  c->auth->refresh = up;
  s->opts.on_upgrade(up, s->hook_user);
  return 0;
}

void sb_ws_auth_sweep(sb_conn *c) {
  sb_conn_auth *au = c->auth;
  int64_t now = wall_now();
  if (now >= au->expires) {
    sb_ws_fail(c, SB_CLOSE_EXPIRED, "credentials expired");
  } else if (!au->asked && now >= au->ask_at) {
    au->asked = 1;
    if (c->srv->auth_event) c->srv->auth_event(c->srv->hub, c, 0, "");
  }
}

void sb_ws_auth_free(sb_conn *c) {
  if (!c->auth) return;
  if (c->auth->refresh) sb_ws_upgrade_orphan(c->auth->refresh);
  sb_free(&c->srv->alloc, c->auth->claims);
  sb_free(&c->srv->alloc, c->auth);
  c->auth = NULL;
}

/* ---- the connection's credentials ----------------------------------------------------- */

const char *sb_conn_identity(const sb_conn *c) { return c && c->auth ? c->auth->identity : ""; }
const char *sb_conn_claims(const sb_conn *c) { return c && c->auth ? c->auth->claims : NULL; }
int64_t sb_conn_expires(const sb_conn *c) { return c && c->auth ? c->auth->expires : 0; }
