/*
 * net.h — the server and connection structures, shared by the net layer (server.c: libuv,
 * accept, reads, the corked write path, the sweep timer) and the ws layer (conn.c: the
 * WebSocket protocol on top of it). Internal: nothing here is public.
 */
#ifndef SB_NET_NET_H
#define SB_NET_NET_H

#include <uv.h>

#include "common/common.h"
#include "common/map.h"
#include "net/outq.h"
#include "ws/frame.h"
#include "ws/handshake.h"
#include "ws/utf8.h"

/* Connection states. */
enum {
  SB_CONN_HANDSHAKE = 0, /* reading the upgrade request */
  SB_CONN_HTTP,          /* plain HTTP/1.1 requests (keep-alive), for the server's HTTP handler */
  SB_CONN_OPEN,          /* WebSocket open */
  SB_CONN_CLOSING,       /* we sent a close frame and wait for the peer's */
  SB_CONN_DRAINING,      /* done: flush what is queued, half-close, wait for EOF, close */
  SB_CONN_CLOSED         /* uv_close called; memory goes in the close callback */
};

/* Connection flags. */
enum {
  SB_F_DIRTY = 1 << 0,         /* on the server's dirty list: flush in this turn's check */
  SB_F_OPENED = 1 << 1,        /* on_open fired, so on_close must fire exactly once */
  SB_F_CLOSE_REPORTED = 1 << 2,
  SB_F_PING_SENT = 1 << 3,     /* idle ping outstanding */
  SB_F_BACKPRESSURE = 1 << 4,  /* a send returned BACKPRESSURE: fire on_drain when flushed */
  SB_F_SHUTDOWN_SENT = 1 << 5, /* uv_shutdown issued while draining */
  SB_F_IO_TOUCHED = 1 << 6,    /* the io block was used since the last sweep */
  SB_F_PEER_EOF = 1 << 7,      /* the peer half-closed while our answers were still queued */
  SB_F_READ_PAUSED = 1 << 8,   /* WebSocket: reading paused until the send queue is written
                                  (conn.c); unparsed bytes wait in io->in */
  SB_F_MSG_OPEN = 1 << 9,      /* a WebSocket message (or frame) is partly read; it began at
                                  io->msg_t0 and must end within message_timeout_ms */
  SB_F_REJECTED = 1 << 10      /* refused at accept (a connection cap): answered, draining */
};

/* State a connection needs only while it is busy: its write queue, the message being put
 * together from fragments, a control frame that arrived in pieces. Allocated on first use and
 * freed by the sweep when idle, so that an idle connection costs little memory. */
typedef struct sb_conn_io {
  sb_outq out;
  uint8_t *msg;          /* fragments (or a frame split across reads) of the current message */
  size_t msg_len, msg_cap;
  uint8_t ctl[SB_CONTROL_MAX_PAYLOAD];
  uint8_t ctl_len;
  uint8_t *in;           /* bytes read and not parsed yet: HTTP, while a request is with the
                            application; WebSocket, while reading is paused */
  size_t in_off, in_len, in_cap;
  uint32_t msg_t0;       /* ms: when the message being read began (SB_F_MSG_OPEN) */
  struct sb_wreq *wreq;  /* the write libuv holds, if any (server.c); the block is never
                            given back while there is one */
} sb_conn_io;

/* An identity is at most this long, so that its group "user:<identity>" is a valid name. */
#define SB_IDENTITY_MAX 190

typedef struct sb_addr_count sb_addr_count;

/* What the upgrade auth accepted. The identity is fixed for the connection's life (a refresh
 * must name the same one), so it sits in the block; the claims change with a refresh. */
typedef struct sb_conn_auth {
  int64_t expires;     /* seconds since the Unix epoch; 0: never */
  int64_t ask_at;      /* when to ask for a new token */
  void *refresh;       /* the sb_upgrade of a refresh in progress, or NULL */
  char *claims;        /* NULL, or its own allocation */
  int asked;
  char identity[];
} sb_conn_auth;

/* Bytes a client may send after its upgrade request while the auth decides. */
#define SB_EARLY_MAX (16 * 1024)

/* A write libuv holds because the kernel refused part of a flush: it owns the queue it
 * writes (moved out of the connection, so later sends cannot move its buffers). */
typedef struct sb_wreq {
  uv_write_t req;
  sb_outq out;
} sb_wreq;

struct sb_conn {
  uv_tcp_t tcp;          /* first: a uv_stream_t* is an sb_conn* */
  sb_server *srv;
  sb_conn *prev, *next;  /* all connections of the server */
  sb_conn *dirty_next;
  void *user;
  void *hub;             /* the hub's per-connection state, when a hub runs this server */
  sb_conn_io *io;
  sb_handshake *hs;      /* during the handshake only */
  char *subprotocol;
  sb_conn_auth *auth;    /* NULL: anonymous, no expiry */
  struct sb_addr_count *addr; /* the count of connections from its address (server.c) */
  sb_frame_parser fp;
  sb_utf8_state utf8;    /* of the text message being received */
  uint32_t t0;           /* ms: state start (handshake, closing, draining) or last read (open) */
  uint16_t close_code;   /* what we report if the TCP side ends first */
  uint8_t state;
  uint16_t flags;
  uint8_t msg_op;        /* opcode of the message being received */
  uint8_t hflags;        /* SB_H_*: the state of a plain HTTP connection (http_conn.c) */
};

/* Plain HTTP connection flags (c->hflags). */
enum {
  SB_H_INFLIGHT = 1 << 1,     /* a request is with the application, not answered yet */
  SB_H_CLOSE = 1 << 2,        /* close after the answer to the request in flight */
  SB_H_KEEP10 = 1 << 3,       /* HTTP/1.0 keep-alive: say so in the answer */
  SB_H_RESUME = 1 << 4,       /* answered later: parse what waited, in this turn's check */
  SB_H_IDLE = 1 << 5,         /* between requests: no byte of the next one yet */
  SB_H_READ_STOPPED = 1 << 6, /* too much waits unparsed: reading paused */
  SB_H_RUNNING = 1 << 7       /* inside the parse loop (an answer now is a synchronous one) */
};

struct sb_server {
  uv_loop_t *loop;
  uv_tcp_t listener;
  uv_check_t check;
  uv_timer_t sweep;
  sb_server_options opts;
  void *hook_user;       /* user of on_subprotocol and on_upgrade: opts.user, but a hub
                            keeps its application's there while opts.user is the hub */
  char **origins;        /* copy of opts.allowed_origins */
  size_t norigins;
  sb_allocator alloc;
  uint8_t *readbuf;
  size_t readbuf_len;
  sb_conn *conns;        /* every accepted connection not yet freed */
  sb_map addrs;          /* client address → struct sb_addr_count (admission, server.c) */
  size_t nrefusing;      /* connections refused at accept, still being answered */
  sb_conn *dirty;
  size_t nopen;          /* connections with SB_F_OPENED and no close reported */
  size_t nconns;
  int port;
  int listening;
  int shutting_down;
  int handles_open;      /* listener/check/timer handles not yet closed */
  int handles_started;
  void *hub;             /* the hub running on this server, or NULL */
  /* The plain-HTTP handler (the rest layer), or NULL: requests that are not upgrades are then
   * answered 404. on_http gets each whole request (borrowed for the call); the connection is
   * busy until sb_ws_http_respond(). on_http_close hears of a connection that goes away while
   * a request of it is unanswered. */
  void *http_ctx;
  void (*on_http)(void *ctx, sb_conn *c, const sb_http_request *req);
  void (*on_http_close)(void *ctx, sb_conn *c);
  void (*tick)(void *);  /* called from the sweep timer (the hub's housekeeping) */
  /* Token refresh news for the hub (which speaks the AUTH message): status 0 "expiring, ask
   * for a new token", 200 "refreshed", 4xx "refused" with a reason. */
  void (*auth_event)(void *hub, sb_conn *c, int status, const char *text);
  sb_conn_io *io_pool;   /* free busy-state blocks (linked through out.buf), reused */
  unsigned io_pooled;
  sb_handshake *hs_pool; /* free handshake states (linked through parser.data), reused */
  unsigned hs_pooled;
  size_t freed_since_trim; /* bytes of connection buffers freed since the last malloc_trim */
  unsigned sweep_ms;
  sb_shutdown_cb shutdown_cb;
  void *shutdown_user;
  void (*shutdown_hook)(void *hub); /* shutdown began (the hub releases its sessions) */
  uv_timer_t drain;      /* closes the open WebSocket connections over shutdown_spread_ms */
  uint64_t drain_t0;
  size_t drain_total, drain_done;
  char last_error[160];
};

/* net layer (server.c), used by conn.c */
uint32_t sb_net_now(const sb_server *s);
int sb_net_io(sb_conn *c);                  /* ensure c->io */
void sb_net_mark_dirty(sb_conn *c);
size_t sb_net_queued(const sb_conn *c);     /* unwritten bytes */
/* A write is with libuv (the kernel refused part of a flush). */
static inline int sb_net_writing(const sb_conn *c) { return c->io && c->io->wreq; }
size_t sb_net_queued_cost(const sb_conn *c); /* the memory the send queues hold (the limit) */
void sb_net_note_freed(sb_server *s, size_t bytes); /* large buffers given back: trim later */
void sb_net_close(sb_conn *c);              /* uv_close now; reads stop */
void sb_net_shutdown(sb_conn *c);           /* half-close (FIN) once the queue is written */
void sb_net_flush_now(sb_conn *c);          /* flush the queue now, freeing it when empty */
void sb_net_want_drain(sb_conn *c);         /* fire on_drain once the queue is written */
void sb_net_io_release(sb_conn *c);
int sb_net_stash(sb_conn *c, const uint8_t *data, size_t len); /* keep unparsed bytes: io->in */         /* give the busy-state block back (pooled) */
int sb_net_io_idle(const sb_conn *c);       /* it holds nothing that is still needed */
int sb_net_send_frame(sb_conn *c, const uint8_t *hdr, size_t hlen, const void *payload,
                      size_t plen);                             /* queue (or write) a frame */
void sb_net_conn_gone(sb_conn *c);          /* bookkeeping when a conn's memory is freed */
void sb_net_read_stop(sb_conn *c);          /* an upgrade waiting for auth, a full HTTP stash */
int sb_net_read_start(sb_conn *c);          /* read again (0 if it already reads) */
/* Installs the plain-HTTP handler (see struct sb_server); NULLs remove it. */
void sb_net_set_http(sb_server *s, void *ctx,
                     void (*on_http)(void *, sb_conn *, const sb_http_request *),
                     void (*on_http_close)(void *, sb_conn *));
void sb_net_peer(const sb_conn *c, char *out, size_t cap); /* "127.0.0.1", or "" */

/* A prepared message with room for `len` payload bytes, header written, payload not. */
int sb_msg_alloc(sb_msg **out, sb_server *s, sb_opcode op, size_t len);

/* ws layer (conn.c), called by server.c */
void sb_ws_on_accept(sb_conn *c);
void sb_ws_on_data(sb_conn *c, uint8_t *data, size_t len);
void sb_ws_on_eof(sb_conn *c, int status);
void sb_ws_on_flushed(sb_conn *c);          /* the queue became empty */
void sb_ws_on_write_error(sb_conn *c, int status);
void sb_ws_sweep(sb_conn *c, uint32_t now);
void sb_ws_shutdown(sb_conn *c);
void sb_ws_free(sb_conn *c);                /* release protocol state before the memory goes */

/* conn.c, for the upgrade auth (upgrade.c) */
void sb_ws_accept_upgrade(sb_conn *c, const uint8_t *early, size_t early_len);
void sb_ws_reject_upgrade(sb_conn *c, int status, const char *headers, const char *body);
void sb_ws_fail(sb_conn *c, uint16_t code, const char *why);
/* A send to `c` was DROPPED for its full queue: close it with 1013 (it resumes later). */
void sb_ws_slow_consumer(sb_conn *c);

/* upgrade.c */
void sb_ws_upgrade_start(sb_conn *c, const uint8_t *early, size_t early_len);
void sb_ws_upgrade_orphan(void *upgrade);   /* its connection is gone */
/* An open connection sent a new token (the hub's AUTH message): verify it with on_upgrade. */
int sb_ws_refresh(sb_conn *c, const char *token, size_t len);
void sb_ws_auth_sweep(sb_conn *c);          /* expiry and refresh requests, from the sweep */
void sb_ws_auth_free(sb_conn *c);
/* conn.c, for http_conn.c */
void sb_ws_http_reject(sb_conn *c, int status, const char *why); /* answer, close after it */
void sb_ws_drain(sb_conn *c);               /* flush, half-close, wait for EOF, close */
sb_handshake *sb_ws_take_handshake(sb_conn *c);
void sb_ws_drop_handshake(sb_conn *c);      /* c->hs back to the server's pool */

/* Plain HTTP connections (http_conn.c) */
void sb_ws_http_start(sb_conn *c, uint8_t *data, size_t len); /* a plain head is in c->hs */
void sb_ws_http_data(sb_conn *c, uint8_t *data, size_t len);
void sb_ws_http_resume(sb_conn *c);         /* from the check: parse what waited */
int sb_ws_http_sweep(sb_conn *c, uint32_t now); /* 1: it closed (or is closing) c */
void sb_ws_http_shutdown(sb_conn *c);
void sb_ws_http_free(sb_conn *c);
void sb_ws_http_flushed(sb_conn *c);        /* its write queue became empty */
void sb_ws_http_peer_eof(sb_conn *c);       /* the client half-closed (SB_F_PEER_EOF) */
/* For the rest layer: the Connection header line ("" when none is needed) that the answer
 * to the request in flight must carry, and the answer itself (head: status line and headers
 * with that line and the blank line; body: not for HEAD, 204, 304). SB_ECLOSED when the
 * connection is gone or closing. */
const char *sb_ws_http_connection_header(const sb_conn *c);
int sb_ws_http_respond(sb_conn *c, const void *head, size_t hlen, const void *body, size_t blen);

#endif
