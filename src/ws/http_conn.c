/*
 * http_conn.c — plain HTTP/1.1 connections: what a connection becomes when its first request
 * is not a WebSocket upgrade and the server has an HTTP handler (the rest layer installs one).
 *
 * The request was read by the handshake's parser (src/http/, the server's one HTTP parser):
 * conn.c hands over when the head is complete, and the same parser state goes on with the
 * body (Content-Length or chunked, bounded by max_body_bytes) and then with the requests after
 * it on the same connection (keep-alive by the HTTP/1.1 rules and Connection).
 *
 * One request at a time. A complete request goes to the handler (on_http) and is "in flight"
 * until the rest layer answers it (sb_ws_http_respond), at once or later. Only then is the next
 * request parsed, so responses leave in request order without any reordering queue. Bytes
 * that arrive meanwhile (pipelined requests) wait in the busy-state block (io->in); past 64 KiB
 * of them reading pauses. Reading otherwise goes on while a request is in flight, so that a
 * client that hangs up is noticed: the connection closes and the rest layer is told
 * (on_http_close), so that the late answer is refused with SB_ECLOSED.
 *
 * An answer given inside the handler (synchronously) lets the parse loop go on with the next
 * request in the same buffer: a loop, not a recursion, however many requests are pipelined.
 * An answer given later marks the connection, and the waiting bytes are parsed in this loop
 * turn's check, before the flush (so a callback never fires inside sb_respond, and the answer
 * and those to the requests behind it leave in one write).
 *
 * Idle between requests, a connection holds no parser (it goes back to the server's pool) and,
 * after a sweep, no busy-state block: only its struct, as an idle WebSocket. The sweep closes
 * it after keepalive_timeout_ms; a request that does not arrive whole within
 * handshake_timeout_ms of its first byte gets 408.
 *
 * An upgrade request on a keep-alive connection goes to conn.c as a first request would (the
 * handshake replays its decision), so the Origin check and the upgrade auth apply to it too.
 */
#include <string.h>
#include <strings.h>

#include "net/net.h"

#define SB_HTTP_STASH_MAX (64 * 1024)
/* No further request is parsed while more than this waits to be written: a client that
 * pipelines requests and never reads the answers must not make the server buffer them all. */
#define SB_HTTP_OUT_HIGH (1024 * 1024)

static int out_full(const sb_conn *c) { return sb_net_queued(c) > SB_HTTP_OUT_HIGH; }

static const sb_allocator *A(const sb_conn *c) { return &c->srv->alloc; }

static size_t stash_len(const sb_conn *c) { return c->io ? c->io->in_len - c->io->in_off : 0; }

/* Keeps bytes that arrived while a request is in flight. */
static void keep_rest(sb_conn *c, const uint8_t *data, size_t len) {
  if (!len || c->state != SB_CONN_HTTP) return;
  if (c->hflags & SB_H_CLOSE) return; /* nothing is read after a request that closes */
  if (sb_net_stash(c, data, len)) {
    sb_net_close(c);
    return;
  }
  if (stash_len(c) > SB_HTTP_STASH_MAX && !(c->hflags & SB_H_READ_STOPPED)) {
    c->hflags |= SB_H_READ_STOPPED;
    sb_net_read_stop(c);
  }
}

/* Reading paused while too much waited; whatever comes next (the next requests, a drain that
 * waits for the peer's FIN, WebSocket frames) needs it again. */
static void read_again(sb_conn *c) {
  if (!(c->hflags & SB_H_READ_STOPPED) || c->state == SB_CONN_CLOSED) return;
  c->hflags &= (uint8_t)~SB_H_READ_STOPPED;
  if (sb_net_read_start(c) != 0) sb_net_close(c);
}

/* Between requests: the parser goes back to the pool until the next byte. */
static void go_idle(sb_conn *c) {
  c->hflags |= SB_H_IDLE;
  c->t0 = sb_net_now(c->srv);
  sb_ws_drop_handshake(c);
}

/* Nothing more comes: write what is queued, then close (conn.c: a drain after the peer's
 * FIN closes once flushed). */
static void finish(sb_conn *c) {
  sb_ws_drop_handshake(c);
  sb_ws_drain(c);
}

/* The client half-closed while answers were queued or requests waited (conn.c checked). */
void sb_ws_http_peer_eof(sb_conn *c) {
  if (c->state != SB_CONN_HTTP) return; /* draining: conn.c closes once flushed */
  if (stash_len(c)) {
    if (!out_full(c)) {
      c->hflags |= SB_H_RESUME; /* the waiting requests are answered first */
      sb_net_mark_dirty(c);
    }
    return;
  }
  finish(c);
}

/* The head of a plain request is complete. Returns 0 to go on with its body. */
static int on_head(sb_conn *c) {
  const sb_http_request *r = &c->hs->req;
  const char *expect = sb_http_header(r, "Expect");
  if (expect) {
    if (strcasecmp(expect, "100-continue") != 0) {
      sb_ws_http_reject(c, 417, "unsupported expectation");
      return -1;
    }
    /* RFC 9110 §10.1.1: the client waits (curl: 1 s) for this before it sends the body. A
     * body over the limit was refused with 413 already, from its Content-Length. */
    if (!r->done && r->parser.http_minor == 1) {
      static const char go_on[] = "HTTP/1.1 100 Continue\r\n\r\n";
      if (sb_net_send_frame(c, (const uint8_t *)go_on, sizeof(go_on) - 1, NULL, 0)) {
        sb_net_close(c);
        return -1;
      }
    }
  }
  return 0;
}

static void dispatch(sb_conn *c) {
  sb_server *s = c->srv;
  const sb_http_request *r = &c->hs->req;
  if (!s->on_http) { /* the handler went away (sb_app_free) while the connection stayed */
    sb_ws_http_reject(c, 404, "Not Found");
    return;
  }
  c->hflags &= (uint8_t) ~(SB_H_CLOSE | SB_H_KEEP10);
  c->hflags |= SB_H_INFLIGHT;
  if (!sb_http_keep_alive(r) || s->shutting_down) c->hflags |= SB_H_CLOSE;
  else if (r->parser.http_minor == 0) c->hflags |= SB_H_KEEP10;
  c->t0 = sb_net_now(s);
  s->on_http(s->http_ctx, c, r);
}

/*
 * Reads requests from data[0..len) for as long as none is with the application. Returns the
 * bytes used: all of them, unless a request is in flight (the caller keeps the rest) or the
 * connection is closing (the rest does not matter).
 */
static size_t run(sb_conn *c, uint8_t *data, size_t len) {
  size_t off = 0;
  c->hflags |= SB_H_RUNNING;
  while (c->state == SB_CONN_HTTP && !(c->hflags & SB_H_INFLIGHT) && !out_full(c)) {
    if (!c->hs) {
      if (off == len) break;
      if (!(c->hs = sb_ws_take_handshake(c))) {
        sb_net_close(c);
        break;
      }
    }
    sb_handshake *h = c->hs;
    size_t used = 0;
    if (!h->req.head_done) {
      if (off == len) break;
      if (c->hflags & SB_H_IDLE) { /* the first byte of a request: its clock starts */
        c->hflags &= (uint8_t)~SB_H_IDLE;
        c->t0 = sb_net_now(c->srv);
      }
      sb_hs_result r = sb_handshake_feed(h, data + off, len - off, &used);
      off += used;
      if (r == SB_HS_NEED_MORE) break;
      if (r == SB_HS_REJECT) {
        sb_ws_http_reject(c, h->status, h->error);
        break;
      }
      if (r == SB_HS_UPGRADE) {
        /* conn.c accepts (or refuses) it as a first request; what follows is frames. */
        read_again(c);
        c->state = SB_CONN_HANDSHAKE;
        c->hflags = 0;
        sb_ws_on_data(c, data + off, len - off);
        return len;
      }
      if (on_head(c)) break;
      continue;
    }
    sb_http_result r = sb_http_feed(&h->req, data + off, len - off, &used);
    off += used;
    if (r == SB_HTTP_NEED_MORE) break;
    if (r == SB_HTTP_ERROR) {
      sb_ws_http_reject(c, h->req.status, h->req.error);
      break;
    }
    dispatch(c);
  }
  c->hflags &= (uint8_t)~SB_H_RUNNING;
  if (c->state == SB_CONN_HTTP && !(c->hflags & SB_H_INFLIGHT) && off == len) {
    if (c->flags & SB_F_PEER_EOF) finish(c); /* every request the client sent is answered */
    else if (c->hs && !sb_http_started(&c->hs->req)) go_idle(c);
  }
  return off;
}

void sb_ws_http_start(sb_conn *c, uint8_t *data, size_t len) {
  if (!c->srv->on_http) {
    sb_ws_http_reject(c, 404, "Not Found");
    return;
  }
  c->state = SB_CONN_HTTP;
  c->hflags = 0; /* t0 stays: the request's clock started at the accept */
  if (on_head(c)) return;
  size_t used = run(c, data, len);
  keep_rest(c, data + used, len - used);
}

void sb_ws_http_data(sb_conn *c, uint8_t *data, size_t len) {
  if (c->hflags & SB_H_CLOSE) return;
  if ((c->hflags & SB_H_INFLIGHT) || stash_len(c) || out_full(c)) {
    keep_rest(c, data, len); /* behind what already waits; parsed after the answer */
    return;
  }
  size_t used = run(c, data, len);
  keep_rest(c, data + used, len - used);
}

void sb_ws_http_resume(sb_conn *c) {
  c->hflags &= (uint8_t)~SB_H_RESUME;
  if (c->state != SB_CONN_HTTP || (c->hflags & SB_H_INFLIGHT) || out_full(c)) return;
  sb_conn_io *io = c->io;
  if (!io || io->in_off == io->in_len) {
    if (!(c->hflags & SB_H_IDLE) && c->hs && !sb_http_started(&c->hs->req)) go_idle(c);
    return;
  }
  /* Take the waiting bytes out of the block while they are parsed: an upgrade among them
   * makes the rest frames, parsed in place, and nothing may move them meanwhile. */
  uint8_t *buf = io->in;
  size_t off = io->in_off, n = io->in_len, cap = io->in_cap;
  io->in = NULL;
  io->in_off = io->in_len = io->in_cap = 0;
  off += run(c, buf + off, n - off);
  if (off < n && c->state == SB_CONN_HTTP && !(c->hflags & SB_H_CLOSE) && sb_net_io(c) == 0 &&
      !c->io->in) {
    c->io->in = buf; /* still in flight: the rest waits where it was, without a copy */
    c->io->in_off = off;
    c->io->in_len = n;
    c->io->in_cap = cap;
  } else {
    sb_free(A(c), buf);
  }
  if (c->state != SB_CONN_HTTP || stash_len(c) <= SB_HTTP_STASH_MAX) read_again(c);
}

const char *sb_ws_http_connection_header(const sb_conn *c) {
  if ((c->hflags & SB_H_CLOSE) || c->srv->shutting_down) return "Connection: close\r\n";
  if (c->hflags & SB_H_KEEP10) return "Connection: keep-alive\r\n";
  return "";
}

int sb_ws_http_respond(sb_conn *c, const void *head, size_t hlen, const void *body,
                       size_t blen) {
  if (c->state != SB_CONN_HTTP || !(c->hflags & SB_H_INFLIGHT)) return SB_ECLOSED;
  c->hflags &= (uint8_t)~SB_H_INFLIGHT;
  if (c->srv->shutting_down) c->hflags |= SB_H_CLOSE;
  if (sb_net_send_frame(c, head, hlen, body, blen)) {
    sb_net_close(c);
    return SB_ENOMEM;
  }
  if (c->hflags & SB_H_CLOSE) {
    finish(c);
    if (!(c->flags & SB_F_PEER_EOF)) read_again(c); /* the drain ends at the peer's FIN */
    return 0;
  }
  sb_handshake_next(c->hs);
  c->t0 = sb_net_now(c->srv);
  if (!(c->hflags & SB_H_RUNNING)) {
    /* Answered later: what waits is parsed in this turn's check (never inside the caller). */
    if (stash_len(c)) {
      c->hflags |= SB_H_RESUME;
      sb_net_mark_dirty(c);
    } else if (c->flags & SB_F_PEER_EOF) {
      finish(c);
    } else {
      go_idle(c);
    }
  }
  return 0;
}

int sb_ws_http_sweep(sb_conn *c, uint32_t now) {
  const sb_server_options *o = &c->srv->opts;
  uint32_t age = now - c->t0;
  if (c->hflags & SB_H_INFLIGHT) {
    /* The application's own time; only a shutdown bounds it. */
    if (c->srv->shutting_down && age >= o->close_timeout_ms) {
      sb_net_close(c);
      return 1;
    }
    return 0;
  }
  if (c->hflags & SB_H_IDLE) {
    if (age < o->keepalive_timeout_ms) return 0;
    finish(c); /* FIN; the client sees the keep-alive connection end */
    return 1;
  }
  if (age < o->handshake_timeout_ms) return 0;
  sb_ws_http_reject(c, 408, "request timeout");
  return 1;
}

void sb_ws_http_shutdown(sb_conn *c) {
  if (c->hflags & SB_H_INFLIGHT) {
    c->hflags |= SB_H_CLOSE; /* its answer says Connection: close, then the connection ends */
    c->t0 = sb_net_now(c->srv);
    return;
  }
  finish(c);
  read_again(c);
}

/* The queue was written out: requests that waited for room are parsed in this turn's check. */
void sb_ws_http_flushed(sb_conn *c) {
  if (c->state == SB_CONN_HTTP && !(c->hflags & SB_H_INFLIGHT) && stash_len(c)) {
    c->hflags |= SB_H_RESUME;
    sb_net_mark_dirty(c);
  }
}

void sb_ws_http_free(sb_conn *c) {
  sb_server *s = c->srv;
  if ((c->hflags & SB_H_INFLIGHT) && s->on_http_close) s->on_http_close(s->http_ctx, c);
  c->hflags = 0;
}
