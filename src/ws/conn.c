/*
 * conn.c — the WebSocket protocol on a connection: the upgrade, message assembly, control
 * frames, the close handshake, timeouts, and the public send/close API.
 *
 * Life of a connection:
 *   HANDSHAKE → (101) → OPEN → CLOSING (we sent close) → DRAINING → CLOSED
 *                          └──────── (peer's close, or a protocol error) ──┘
 * DRAINING means "nothing more to say": flush what is queued, half-close (FIN), and close once
 * the peer closes too or close_timeout_ms passes. Closing only after the peer's FIN (rather than
 * at once) keeps the kernel from answering the peer's late bytes with a reset that could
 * destroy our close frame in flight.
 *
 * Messages: a frame whose whole payload is in the read buffer and that is a complete message
 * is handed to the application where it lies (unmasked in place). Only fragmented messages, or
 * a frame split across reads, are copied into the connection's message buffer, which is sized
 * from the frame header at once (the parser has already checked the size limit).
 */
#include <stdio.h>
#include <string.h>

#include "net/net.h"

static void send_close_frame(sb_conn *c, uint16_t code, const char *reason, size_t len);
static void on_frames(sb_conn *c, uint8_t *data, size_t len);
static void track_message(sb_conn *c);

static const sb_allocator *A(const sb_conn *c) { return &c->srv->alloc; }

/* ---- closing -------------------------------------------------------------------------- */

static void report_close(sb_conn *c, int code, const char *reason, size_t len) {
  if (!(c->flags & SB_F_OPENED) || (c->flags & SB_F_CLOSE_REPORTED)) return;
  c->flags |= SB_F_CLOSE_REPORTED;
  c->srv->nopen--;
  if (c->srv->opts.on_close) c->srv->opts.on_close(c, code, reason, len, c->srv->opts.user);
}

static void start_drain(sb_conn *c) {
  if (c->state == SB_CONN_CLOSED) return;
  c->state = SB_CONN_DRAINING;
  c->t0 = sb_net_now(c->srv);
  sb_net_mark_dirty(c); /* the flush half-closes once the queue is empty */
}

/* _Fail the WebSocket Connection_ (§7.1.7): say why with a close frame, then drain. */
static void fail(sb_conn *c, uint16_t code, const char *why) {
  if (c->state == SB_CONN_OPEN) send_close_frame(c, code, why, strlen(why));
  report_close(c, code, why, strlen(why));
  start_drain(c);
}

static void abort_conn(sb_conn *c, const char *why) {
  report_close(c, SB_CLOSE_ABNORMAL, why, strlen(why));
  sb_net_close(c);
}

/* ---- sending -------------------------------------------------------------------------- */

/* Whether `extra` more bytes would take the connection's send queues past max_queued_bytes.
 * What counts is the memory the queues hold (sb_net_queued_cost: buffers as allocated, and
 * every referenced message with its overhead), not only the bytes waiting to be written. */
static int over_limit(const sb_conn *c, size_t extra) {
  size_t cost = sb_net_queued_cost(c), max = c->srv->opts.max_queued_bytes;
  return cost > max || extra > max - cost;
}

/* Queues one unfragmented frame. `limited` applies max_queued_bytes. */
static int queue_frame(sb_conn *c, unsigned op, const void *data, size_t len, int limited) {
  uint8_t hdr[10];
  size_t hl = sb_frame_header(hdr, op, 1, len, NULL);
  if (limited && over_limit(c, hl + len)) return SB_SEND_DROPPED;
  if (sb_net_send_frame(c, hdr, hl, data, len)) return SB_ENOMEM;
  return SB_SEND_OK;
}

static void send_close_frame(sb_conn *c, uint16_t code, const char *reason, size_t len) {
  uint8_t payload[SB_CONTROL_MAX_PAYLOAD];
  size_t n = 0;
  if (code != 0) {
    if (len > SB_CONTROL_MAX_PAYLOAD - 2) len = SB_CONTROL_MAX_PAYLOAD - 2;
    /* Never cut a reason inside a UTF-8 sequence. */
    while (len > 0 && !sb_utf8_valid((const uint8_t *)reason, len)) len--;
    payload[0] = (uint8_t)(code >> 8);
    payload[1] = (uint8_t)code;
    if (len) memcpy(payload + 2, reason, len);
    n = 2 + len;
  }
  if (queue_frame(c, SB_OP_CLOSE, payload, n, 0) < 0) {
    /* Out of memory even for the close frame: drop the connection, but still report it. */
    report_close(c, SB_CLOSE_ABNORMAL, "out of memory", 13);
    sb_net_close(c);
  }
}

static int send_result(sb_conn *c, int r) {
  if (r == SB_SEND_DROPPED) {
    c->flags |= SB_F_BACKPRESSURE;
  } else if (r == SB_SEND_OK && sb_net_writing(c)) {
    c->flags |= SB_F_BACKPRESSURE;
    r = SB_SEND_BACKPRESSURE;
  }
  return r;
}

int sb_conn_send(sb_conn *c, sb_opcode op, const void *data, size_t len) {
  if (!c || (op != SB_TEXT && op != SB_BINARY) || (!data && len)) return SB_EINVAL;
  if (c->state != SB_CONN_OPEN) return SB_SEND_DROPPED;
  return send_result(c, queue_frame(c, (unsigned)op, data, len, 1));
}

/* A prepared message up to this size is copied into the queue rather than referenced: the copy
 * joins the owned bytes before it (no queue item of its own), while a reference costs an item
 * and keeps the message's allocation alive, several times the bytes of a small answer. */
#define SB_MSG_COPY_MAX 256

int sb_conn_send_msg(sb_conn *c, sb_msg *m) {
  if (!c || !m) return SB_EINVAL;
  if (c->state != SB_CONN_OPEN) return SB_SEND_DROPPED;
  int copy = m->len <= SB_MSG_COPY_MAX;
  if (over_limit(c, copy ? m->len : SB_MSG_COST(m))) return send_result(c, SB_SEND_DROPPED);
  if (sb_net_io(c)) return SB_ENOMEM;
  if (copy ? sb_outq_push_bytes(&c->io->out, A(c), m->data, m->len)
           : sb_outq_push_msg(&c->io->out, A(c), m))
    return SB_ENOMEM;
  sb_net_mark_dirty(c);
  return send_result(c, SB_SEND_OK);
}

int sb_conn_close(sb_conn *c, int code, const char *reason, size_t len) {
  if (!c) return SB_EINVAL;
  if (c->state != SB_CONN_OPEN) return SB_ECLOSED;
  if (code < 0 || !sb_close_code_valid((unsigned)code) || len > SB_CONTROL_MAX_PAYLOAD - 2 ||
      (len && (!reason || !sb_utf8_valid((const uint8_t *)reason, len))))
    return SB_EINVAL;
  send_close_frame(c, (uint16_t)code, reason, len);
  if (c->state == SB_CONN_CLOSED) return SB_ENOMEM;
  c->state = SB_CONN_CLOSING;
  c->close_code = (uint16_t)code;
  c->t0 = sb_net_now(c->srv);
  return 0;
}

void sb_conn_set_user(sb_conn *c, void *user) { c->user = user; }
void *sb_conn_user(const sb_conn *c) { return c->user; }
sb_server *sb_conn_server(const sb_conn *c) { return c->srv; }
const char *sb_conn_subprotocol(const sb_conn *c) { return c->subprotocol; }
size_t sb_conn_queued_bytes(const sb_conn *c) { return sb_net_queued(c); }

int sb_msg_alloc(sb_msg **out, sb_server *s, sb_opcode op, size_t len) {
  *out = NULL;
  uint8_t hdr[10];
  size_t hl = sb_frame_header(hdr, (unsigned)op, 1, len, NULL);
  sb_msg *m = sb_malloc(&s->alloc, sizeof(*m) + hl + len);
  if (!m) return SB_ENOMEM;
  m->refs = 1;
  m->hdr_len = (uint32_t)hl;
  m->len = hl + len;
  m->alloc = &s->alloc;
  memcpy(m->data, hdr, hl);
  *out = m;
  return 0;
}

int sb_msg_new(sb_msg **out, sb_server *s, sb_opcode op, const void *data, size_t len) {
  *out = NULL;
  if (!s || (op != SB_TEXT && op != SB_BINARY) || (!data && len)) return SB_EINVAL;
  int r = sb_msg_alloc(out, s, op, len);
  if (r == 0 && len) memcpy((*out)->data + (*out)->hdr_len, data, len);
  return r;
}

sb_msg *sb_msg_ref(sb_msg *m) {
  if (m) m->refs++;
  return m;
}

void sb_msg_unref(sb_msg *m) {
  if (m && --m->refs == 0) sb_free(m->alloc, m);
}

const void *sb_msg_data(const sb_msg *m) { return m->data + m->hdr_len; }
size_t sb_msg_len(const sb_msg *m) { return m->len - m->hdr_len; }

/* ---- handshake ------------------------------------------------------------------------ */

/* Handshake states are big (the header table) and short-lived: a server keeps up to
 * SB_HS_POOL of them, with their header buffers, for the next connections, so that accepting
 * does not leave a hole in the heap for every connection (that would show as resident memory
 * per idle connection). */
#define SB_HS_POOL 256
#define SB_HS_KEEP_BUF 4096

static void drop_handshake(sb_conn *c) {
  sb_handshake *h = c->hs;
  if (!h) return;
  c->hs = NULL;
  sb_server *s = c->srv;
  if (h->upgrade) sb_ws_upgrade_orphan(h->upgrade); /* the application may still answer it */
  h->upgrade = NULL;
  if (s->hs_pooled >= SB_HS_POOL) {
    sb_handshake_free(h);
    sb_free(A(c), h);
    return;
  }
  if (h->req.buf_cap > SB_HS_KEEP_BUF || h->req.body_cap > SB_HS_KEEP_BUF) sb_handshake_free(h);
  h->pool_next = s->hs_pool;
  s->hs_pool = h;
  s->hs_pooled++;
}

static sb_handshake *take_handshake(sb_conn *c) {
  sb_server *s = c->srv;
  sb_handshake *h = s->hs_pool;
  if (h) {
    s->hs_pool = h->pool_next;
    s->hs_pooled--;
    sb_handshake_next(h); /* keeps the pooled buffers */
  } else {
    h = sb_malloc(A(c), sizeof(*h));
    if (!h) return NULL;
    sb_handshake_init(h, s->opts.max_header_bytes, sb_allocator_realloc_fn, (void *)A(c));
  }
  /* A plain request's body is read only when there is an HTTP handler to give it to. */
  h->req.max_body = s->on_http ? s->opts.max_body_bytes : SIZE_MAX;
  return h;
}

static const char *reason_phrase(int status) {
  const char *r = sb_http_reason(status);
  return r ? r : "Internal Server Error";
}

/* Answers with a plain HTTP status, extra header lines (each ending in CRLF, already
 * checked) and a text body, and closes after the answer is written. */
void sb_ws_reject_upgrade(sb_conn *c, int status, const char *headers, const char *why) {
  char buf[2048];
  int n = snprintf(buf, sizeof(buf),
                   "HTTP/1.1 %d %s\r\n"
                   "Content-Type: text/plain; charset=utf-8\r\n"
                   "Content-Length: %zu\r\n"
                   "%s%s"
                   "Connection: close\r\n\r\n%s\n",
                   status, reason_phrase(status), strlen(why) + 1,
                   status == 426 ? "Sec-WebSocket-Version: 13\r\n" : "", headers ? headers : "",
                   why);
  drop_handshake(c);
  /* An upgrade that waited for auth stopped reading: read again, so that the peer's FIN ends
   * the drain at once (bytes are discarded) instead of close_timeout_ms later. */
  if (c->state != SB_CONN_CLOSED && sb_net_read_start(c) != 0) return sb_net_close(c);
  if (n < 0 || (size_t)n >= sizeof(buf) || sb_net_io(c) ||
      sb_outq_push_bytes(&c->io->out, A(c), buf, (size_t)n)) {
    sb_net_close(c);
    return;
  }
  start_drain(c);
}

static void accept_upgrade(sb_conn *c) {
  sb_server *s = c->srv;
  /* The offered subprotocols go into one block sized from the request: an entry may be as
   * long as the header limit lets it be. A "bearer.<token>" entry carries a browser's
   * credential (sb_upgrade_token), not a protocol: it is never offered to the hook nor chosen.
   * Browsers fail a connection that offered subprotocols and got none back, so without a hook
   * the first real one is chosen when a token came that way. */
  size_t bytes, count = sb_handshake_subprotocols_size(c->hs, &bytes), n = 0;
  const char **offered = NULL, *chosen = NULL;
  int bearer = 0;
  if (count) {
    offered = sb_malloc(A(c), count * sizeof(*offered) + bytes);
    if (!offered) return sb_ws_reject_upgrade(c, 503, NULL, "out of memory");
    n = sb_handshake_subprotocols(c->hs, offered, count, (char *)(offered + count), bytes,
                                  &bearer);
  }
  if (s->opts.on_subprotocol && n > 0) {
    int i = s->opts.on_subprotocol(offered, n, s->hook_user);
    if (i >= 0 && (size_t)i < n) chosen = offered[i];
  } else if (bearer && n > 0) {
    chosen = offered[0];
  }
  /* The 101 (§4.2.2), sized from its parts; on the stack unless a long subprotocol is in it.
   * What cannot be built is answered 503, never closed without a word. */
  static const char head[] = "HTTP/1.1 101 Switching Protocols\r\n"
                             "Upgrade: websocket\r\n"
                             "Connection: Upgrade\r\n"
                             "Sec-WebSocket-Accept: ";
  static const char proto[] = "\r\nSec-WebSocket-Protocol: ", end[] = "\r\n\r\n";
  size_t alen = strlen(c->hs->accept), plen = chosen ? strlen(chosen) : 0;
  size_t len = sizeof head - 1 + alen + (chosen ? sizeof proto - 1 + plen : 0) + sizeof end - 1;
  char small[256];
  char *buf = len <= sizeof(small) ? small : sb_malloc(A(c), len);
  if (chosen && buf) c->subprotocol = sb_malloc(A(c), plen + 1);
  if (!buf || (chosen && !c->subprotocol)) {
    if (buf != small) sb_free(A(c), buf);
    sb_free(A(c), offered);
    return sb_ws_reject_upgrade(c, 503, NULL, "out of memory");
  }
  char *p = buf;
  memcpy(p, head, sizeof head - 1);
  p += sizeof head - 1;
  memcpy(p, c->hs->accept, alen);
  p += alen;
  if (chosen) {
    memcpy(c->subprotocol, chosen, plen + 1);
    memcpy(p, proto, sizeof proto - 1);
    p += sizeof proto - 1;
    memcpy(p, chosen, plen);
    p += plen;
  }
  memcpy(p, end, sizeof end - 1);
  sb_free(A(c), offered);
  drop_handshake(c);
  /* The 101 and whatever on_open sends (a HELLO) leave together in one write, at once rather
   * than at the end of the loop turn, and the busy-state block is given back right after: an
   * idle connection then holds nothing but its struct, and the block's memory is reused by the
   * next handshake instead of leaving a hole in the heap. */
  int r = sb_net_io(c) ? SB_ENOMEM : sb_outq_push_bytes(&c->io->out, A(c), buf, len);
  if (buf != small) sb_free(A(c), buf);
  if (r != 0) return sb_ws_reject_upgrade(c, 503, NULL, "out of memory");
  sb_frame_parser_init(&c->fp, s->opts.max_message_bytes, 1);
  c->state = SB_CONN_OPEN;
  c->t0 = sb_net_now(s);
  c->flags |= SB_F_OPENED;
  s->nopen++;
  if (s->opts.on_open) s->opts.on_open(c, s->opts.user);
  if (c->state != SB_CONN_CLOSED) sb_net_flush_now(c);
}

static int origin_allowed(const sb_conn *c) {
  const sb_server *s = c->srv;
  if (s->norigins == 0) return 1;
  const char *origin = sb_handshake_header(c->hs, "Origin");
  if (!origin) return 1; /* not a browser: the allow-list guards browsers' ambient credentials */
  for (size_t i = 0; i < s->norigins; i++) {
    if (strcmp(origin, s->origins[i]) == 0) return 1;
  }
  return 0;
}

/* Sends the 101 and opens; `early` holds bytes that came after the request (frames sent
 * before the answer, which this server tolerates). */
void sb_ws_accept_upgrade(sb_conn *c, const uint8_t *early, size_t early_len) {
  accept_upgrade(c);
  /* on_frames unmasks in place: early bytes are the read buffer or the upgrade's copy */
  if (early_len && c->state == SB_CONN_OPEN) on_frames(c, (uint8_t *)early, early_len);
}

void sb_ws_fail(sb_conn *c, uint16_t code, const char *why) { fail(c, code, why); }

void sb_ws_on_accept(sb_conn *c) {
  c->t0 = sb_net_now(c->srv);
  c->hs = take_handshake(c);
  if (!c->hs) sb_net_close(c);
}

/* ---- frames --------------------------------------------------------------------------- */

static void deliver(sb_conn *c, const uint8_t *data, size_t len) {
  sb_server *s = c->srv;
  if (s->opts.on_message) s->opts.on_message(c, (sb_opcode)c->msg_op, data, len, s->opts.user);
}

static void on_close_frame(sb_conn *c, const uint8_t *p, size_t n) {
  uint16_t code = SB_CLOSE_NO_STATUS;
  const char *reason = "";
  size_t rlen = 0;
  if (n == 1) return fail(c, SB_CLOSE_PROTOCOL_ERROR, "close frame with a 1-byte payload");
  if (n >= 2) {
    code = (uint16_t)((p[0] << 8) | p[1]);
    if (!sb_close_code_valid(code)) return fail(c, SB_CLOSE_PROTOCOL_ERROR, "invalid close code");
    reason = (const char *)p + 2;
    rlen = n - 2;
    if (!sb_utf8_valid(p + 2, rlen))
      return fail(c, SB_CLOSE_INVALID_DATA, "close reason is not UTF-8");
  }
  /* The peer started the handshake: answer with its code (§5.5.1), or with no code when it
   * sent none. When we started it, this frame is the answer and we are done. */
  if (c->state == SB_CONN_OPEN) send_close_frame(c, n >= 2 ? code : 0, NULL, 0);
  report_close(c, code, reason, rlen);
  if (c->state != SB_CONN_CLOSED) start_drain(c);
}

static int append_msg(sb_conn *c, const sb_frame_event *ev) {
  if (sb_net_io(c)) return SB_ENOMEM;
  sb_conn_io *io = c->io;
  /* Grow with what has arrived, not with what a header announces (a peer could announce 16 MiB
   * on many connections and trickle it), and geometrically, so that a message sent as many
   * small fragments costs linear, not quadratic, copying. */
  size_t need = io->msg_len + ev->len;
  if (need > io->msg_cap) {
    size_t cap = SB_MAX(need, SB_MAX((size_t)256, io->msg_cap * 2));
    cap = SB_MIN(cap, SB_MAX(need, (size_t)c->srv->opts.max_message_bytes));
    uint8_t *p = sb_realloc(A(c), io->msg, cap);
    if (!p) return SB_ENOMEM;
    io->msg = p;
    io->msg_cap = cap;
  }
  if (ev->len) memcpy(io->msg + io->msg_len, ev->data, ev->len);
  io->msg_len += ev->len;
  return 0;
}

static void on_data_chunk(sb_conn *c, const sb_frame_event *ev) {
  if (c->state != SB_CONN_OPEN) return; /* after our close frame, data is discarded (§5.5.1) */
  if (ev->first && ev->opcode != SB_OP_CONT) {
    c->msg_op = ev->opcode;
    c->utf8 = SB_UTF8_ACCEPT;
  }
  if (c->msg_op == SB_OP_TEXT) {
    /* Fail fast: the first byte that cannot be UTF-8 ends the connection, even in the middle
     * of a fragment. */
    c->utf8 = sb_utf8_feed(c->utf8, ev->data, ev->len);
    if (c->utf8 == SB_UTF8_REJECT)
      return fail(c, SB_CLOSE_INVALID_DATA, "text message is not valid UTF-8");
  }
  int complete = ev->last && ev->fin;
  if (complete && c->msg_op == SB_OP_TEXT && c->utf8 != SB_UTF8_ACCEPT)
    return fail(c, SB_CLOSE_INVALID_DATA, "text message ends inside a UTF-8 sequence");
  if (complete) c->flags &= (uint16_t)~SB_F_MSG_OPEN; /* the next one gets its own deadline */
  if (complete && ev->first && ev->opcode != SB_OP_CONT) {
    deliver(c, ev->data, ev->len); /* the common case: zero copy */
    return;
  }
  if (append_msg(c, ev) != 0) return abort_conn(c, "out of memory");
  if (complete) {
    sb_conn_io *io = c->io;
    size_t n = io->msg_len;
    io->msg_len = 0; /* before the callback: it may send, close, or receive nothing more */
    deliver(c, io->msg, n);
    if (c->io && io->msg_cap > 64 * 1024) { /* do not keep a large buffer for the next one */
      sb_free(A(c), io->msg);
      io->msg = NULL;
      io->msg_cap = 0;
    }
  }
}

static void on_control_chunk(sb_conn *c, const sb_frame_event *ev) {
  const uint8_t *p = ev->data;
  size_t n = ev->len;
  if (!(ev->first && ev->last)) { /* a control frame split across reads: collect it */
    if (sb_net_io(c)) return abort_conn(c, "out of memory");
    if (ev->first) c->io->ctl_len = 0;
    memcpy(c->io->ctl + c->io->ctl_len, ev->data, ev->len);
    c->io->ctl_len = (uint8_t)(c->io->ctl_len + ev->len);
    if (!ev->last) return;
    p = c->io->ctl;
    n = c->io->ctl_len;
  }
  switch (ev->opcode) {
    case SB_OP_PING: {
      /* Answered while open. Reading pauses long before the queue is full (on_frames), so a
       * pong past the limit means the queue was filled by other sends: the connection is a
       * slow consumer, closed as any other (an answer is never dropped silently). */
      if (c->state != SB_CONN_OPEN) break;
      int r = queue_frame(c, SB_OP_PONG, p, n, 1);
      if (r < 0) abort_conn(c, "out of memory");
      else if (r == SB_SEND_DROPPED) sb_ws_slow_consumer(c);
      break;
    }
    case SB_OP_PONG:
      break; /* any read already counts as liveness */
    case SB_OP_CLOSE:
      on_close_frame(c, p, n);
      break;
  }
}

/*
 * Backpressure on what a client sends. Every message a client sends may make the server send
 * (an answer, an error, a pong), so a client that sends and never reads would make its send
 * queue grow to the limit and then lose answers. Instead, once the queue holds more than half
 * of max_queued_bytes, reading stops: the bytes of this read that are not parsed yet wait in
 * the busy-state block (io->in, at most one read buffer), and the kernel's buffers and then the
 * client itself take the backpressure. Once the queue is written out (sb_ws_on_flushed), what
 * waited is parsed and reading starts again. An application that still fills the queue past
 * the limit (one huge answer) meets the slow-consumer rule: close 1013.
 */
static int should_pause(const sb_conn *c) {
  return c->state == SB_CONN_OPEN && sb_net_queued_cost(c) > c->srv->opts.max_queued_bytes / 2;
}

static void pause_reading(sb_conn *c, const uint8_t *rest, size_t n) {
  if (n && sb_net_stash(c, rest, n)) return abort_conn(c, "out of memory");
  c->flags |= SB_F_READ_PAUSED;
  sb_net_read_stop(c);
  sb_net_mark_dirty(c); /* the flush reports the queue written out: sb_ws_on_flushed */
}

static void on_frames(sb_conn *c, uint8_t *data, size_t len) {
  size_t off = 0;
  while (off < len && (c->state == SB_CONN_OPEN || c->state == SB_CONN_CLOSING)) {
    if (should_pause(c)) return pause_reading(c, data + off, len - off);
    sb_frame_event ev;
    sb_frame_status st;
    off += sb_frame_parse(&c->fp, data + off, len - off, &ev, &st);
    if (st == SB_FRAME_NEED_MORE) break;
    if (st == SB_FRAME_ERROR) return fail(c, ev.close_code, ev.error);
    if (ev.opcode & 0x8) on_control_chunk(c, &ev);
    else on_data_chunk(c, &ev);
  }
  if (off == len && should_pause(c)) pause_reading(c, NULL, 0);
}

/* The send queue was written out: parse what waited, then read again (unless that filled the
 * queue once more). */
static void resume_reading(sb_conn *c) {
  c->flags &= (uint16_t)~SB_F_READ_PAUSED;
  sb_conn_io *io = c->io;
  if (io && io->in_off < io->in_len) {
    /* Taken out of the block first: parsing may stash again (a fresh buffer). */
    uint8_t *buf = io->in;
    size_t off = io->in_off, n = io->in_len - io->in_off;
    io->in = NULL;
    io->in_off = io->in_len = io->in_cap = 0;
    on_frames(c, buf + off, n);
    sb_free(A(c), buf);
    track_message(c);
  }
  if (!(c->flags & SB_F_READ_PAUSED) && c->state != SB_CONN_CLOSED &&
      sb_net_read_start(c) != 0)
    abort_conn(c, "cannot read");
}

/* A message, or a frame, that is only partly read has a deadline (message_timeout_ms from its
 * first byte), as a request head has: every byte resets the idle timer, so without it a
 * client could hold a message of almost max_message_bytes forever by trickling the rest. */
static int mid_message(const sb_conn *c) {
  return c->fp.in_payload || c->fp.hdr_len || c->fp.fragmented;
}

static void track_message(sb_conn *c) {
  if (c->state != SB_CONN_OPEN) return;
  if (!mid_message(c)) {
    c->flags &= (uint16_t)~SB_F_MSG_OPEN;
  } else if (!(c->flags & SB_F_MSG_OPEN)) {
    if (sb_net_io(c)) return abort_conn(c, "out of memory");
    c->io->msg_t0 = sb_net_now(c->srv);
    c->flags |= SB_F_MSG_OPEN;
  }
}

void sb_ws_slow_consumer(sb_conn *c) {
  if (c->state == SB_CONN_OPEN)
    sb_conn_close(c, SB_CLOSE_TRY_AGAIN, "slow consumer: send queue full",
                  sizeof "slow consumer: send queue full" - 1);
}

void sb_ws_on_data(sb_conn *c, uint8_t *data, size_t len) {
  switch (c->state) {
    case SB_CONN_HANDSHAKE: {
      size_t used = 0;
      sb_hs_result r = sb_handshake_feed(c->hs, data, len, &used);
      if (r == SB_HS_NEED_MORE) return;
      if (r == SB_HS_REJECT) return sb_ws_reject_upgrade(c, c->hs->status, NULL, c->hs->error);
      if (r == SB_HS_HTTP) return sb_ws_http_start(c, data + used, len - used);
      if (!origin_allowed(c)) return sb_ws_reject_upgrade(c, 403, NULL, "origin not allowed");
      if (c->srv->opts.on_upgrade) return sb_ws_upgrade_start(c, data + used, len - used);
      return sb_ws_accept_upgrade(c, data + used, len - used);
    }
    case SB_CONN_OPEN:
      c->t0 = sb_net_now(c->srv);
      c->flags &= (uint16_t)~SB_F_PING_SENT;
      on_frames(c, data, len);
      track_message(c);
      return;
    case SB_CONN_CLOSING:
      on_frames(c, data, len);
      return;
    case SB_CONN_HTTP:
      sb_ws_http_data(c, data, len);
      return;
    default:
      return; /* draining: the conversation is over, bytes are discarded */
  }
}

void sb_ws_on_eof(sb_conn *c, int status) {
  /* A peer that half-closes is done sending, not reading: answers already queued (and, on a
   * plain HTTP connection, those to the requests that wait) are still written, then the
   * connection closes. A request with the application is another matter: its client is taken
   * as gone (the late answer gets SB_ECLOSED). */
  int http_answered = c->state == SB_CONN_HTTP && !(c->hflags & SB_H_INFLIGHT);
  if (status == UV_EOF && (http_answered || c->state == SB_CONN_DRAINING) &&
      (sb_net_queued(c) > 0 || (http_answered && c->io && c->io->in_off < c->io->in_len))) {
    c->flags |= SB_F_PEER_EOF;
    sb_net_read_stop(c);
    sb_ws_http_peer_eof(c);
    return;
  }
  abort_conn(c, "connection ended without a close frame");
}

void sb_ws_on_write_error(sb_conn *c, int status) { abort_conn(c, "write failed"); }

void sb_ws_on_flushed(sb_conn *c) {
  if (c->flags & SB_F_READ_PAUSED) {
    resume_reading(c);
    if (c->state == SB_CONN_CLOSED) return;
  }
  if (c->state == SB_CONN_DRAINING) {
    if (c->flags & SB_F_PEER_EOF) sb_net_close(c); /* its FIN came already */
    else sb_net_shutdown(c);
  } else if (c->state == SB_CONN_HTTP) {
    sb_ws_http_flushed(c);
  } else if ((c->flags & SB_F_BACKPRESSURE) && c->state == SB_CONN_OPEN) {
    c->flags &= (uint16_t)~SB_F_BACKPRESSURE;
    if (c->srv->opts.on_drain) c->srv->opts.on_drain(c, c->srv->opts.user);
  }
}

void sb_ws_sweep(sb_conn *c, uint32_t now) {
  const sb_server_options *o = &c->srv->opts;
  uint32_t age = now - c->t0;
  switch (c->state) {
    case SB_CONN_HANDSHAKE:
      if (age < o->handshake_timeout_ms) break;
      if (c->hs && c->hs->upgrade)
        return sb_ws_reject_upgrade(c, 503, NULL, "authentication timed out");
      return sb_ws_reject_upgrade(c, 408, NULL, "request timeout");
    case SB_CONN_OPEN:
      if (age >= 2 * o->idle_timeout_ms) return abort_conn(c, "idle timeout");
      if ((c->flags & (SB_F_MSG_OPEN | SB_F_READ_PAUSED)) == SB_F_MSG_OPEN && c->io &&
          now - c->io->msg_t0 >= o->message_timeout_ms)
        return fail(c, SB_CLOSE_POLICY, "message not completed in time");
      if (age >= o->idle_timeout_ms && !(c->flags & SB_F_PING_SENT)) {
        c->flags |= SB_F_PING_SENT;
        if (queue_frame(c, SB_OP_PING, NULL, 0, 1) < 0) return abort_conn(c, "out of memory");
      }
      if (c->auth && c->auth->expires) {
        sb_ws_auth_sweep(c);
        if (c->state != SB_CONN_OPEN) return;
      }
      break;
    case SB_CONN_CLOSING:
    case SB_CONN_DRAINING:
      /* A connection refused at accept gets a second to read its answer, not more. */
      if (age >= ((c->flags & SB_F_REJECTED) ? SB_MIN(o->close_timeout_ms, 1000u)
                                              : o->close_timeout_ms))
        return abort_conn(c, "close timeout");
      break;
    case SB_CONN_HTTP:
      if (sb_ws_http_sweep(c, now)) return;
      break;
  }
  /* Give back the busy-state block of a connection that has been quiet for a whole sweep. */
  if (!(c->flags & SB_F_IO_TOUCHED) && sb_net_io_idle(c)) sb_net_io_release(c);
  c->flags &= (uint16_t)~SB_F_IO_TOUCHED;
}

void sb_ws_shutdown(sb_conn *c) {
  if (c->state == SB_CONN_HTTP) {
    sb_ws_http_shutdown(c);
  } else if (c->state == SB_CONN_HANDSHAKE) {
    drop_handshake(c); /* a pending upgrade is orphaned: a verdict now returns SB_ECLOSED */
    sb_net_close(c);
  }
  else if (c->state == SB_CONN_OPEN) sb_conn_close(c, SB_CLOSE_GOING_AWAY, "server shutting down", 20);
}

void sb_ws_free(sb_conn *c) {
  sb_ws_http_free(c);
  drop_handshake(c);
  sb_ws_auth_free(c);
  if (c->io) {
    sb_net_note_freed(c->srv, sb_outq_cost(&c->io->out));
    sb_outq_free(&c->io->out, A(c)); /* drops message references still queued */
    sb_net_io_release(c);
  }
  sb_free(A(c), c->subprotocol);
  c->subprotocol = NULL;
}

/* ---- for http_conn.c ------------------------------------------------------------------ */

void sb_ws_http_reject(sb_conn *c, int status, const char *why) {
  sb_ws_reject_upgrade(c, status, NULL, why);
}
void sb_ws_drain(sb_conn *c) { start_drain(c); }
sb_handshake *sb_ws_take_handshake(sb_conn *c) { return take_handshake(c); }
void sb_ws_drop_handshake(sb_conn *c) { drop_handshake(c); }
