/*
 * switchboard.h — the one public header of Switchboard.
 *
 * Switchboard is a WebSocket messaging framework on libuv. This header is the whole public API:
 * every type is opaque and every function is prefixed `sb_`. The library keeps no global state;
 * everything hangs off an sb_server bound to one libuv loop, and every call must come from the
 * thread that runs that loop.
 *
 * Conventions (the libuv way):
 *   - Functions return 0 (or a non-negative result) on success and a negative SB_E* code on
 *     failure; sb_strerror() turns a code into text.
 *   - A callback never fires from inside the call that caused it.
 *   - Data handed to a callback is borrowed for that call only.
 *   - Whoever creates an object frees it: _new/_free, _ref/_unref; _free(NULL) does nothing.
 */
#ifndef SWITCHBOARD_H
#define SWITCHBOARD_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SB_BUILDING_LIBRARY) && defined(__GNUC__)
#define SB_EXPORT __attribute__((visibility("default")))
#else
#define SB_EXPORT
#endif

#define SB_VERSION_MAJOR 0
#define SB_VERSION_MINOR 1
#define SB_VERSION_PATCH 0

/* libuv's loop type, declared here so that this header does not pull in <uv.h>. */
struct uv_loop_s;

/* ---------------------------------------------------------------------------------------- */
/* Errors                                                                                     */
/* ---------------------------------------------------------------------------------------- */

enum {
  SB_OK = 0,
  SB_EINVAL = -1,   /* an argument is out of range or inconsistent */
  SB_ENOMEM = -2,   /* an allocation failed; nothing was changed */
  SB_ECLOSED = -3,  /* the connection is closing or closed */
  SB_EBUSY = -4,    /* the object is still in use (for example a server with live connections) */
  SB_ESTATE = -5,   /* the call is not valid in the object's current state */
  SB_EIO = -6,      /* an operating-system or libuv call failed; see sb_server_last_error() */
  SB_EADDRINUSE = -7 /* listen: the address is taken */
};

/* Text for an SB_E* code. Never NULL; the string is static. */
SB_EXPORT const char *sb_strerror(int code);

/* ---------------------------------------------------------------------------------------- */
/* Types                                                                                      */
/* ---------------------------------------------------------------------------------------- */

typedef struct sb_server sb_server; /* a WebSocket server on one loop */
typedef struct sb_conn sb_conn;     /* one accepted WebSocket connection */
typedef struct sb_msg sb_msg;       /* a prepared (framed once, sent to many) message */

/* Message types (they are the RFC 6455 opcodes). */
typedef enum { SB_TEXT = 1, SB_BINARY = 2 } sb_opcode;

/*
 * What a send did. A send never blocks and never fails silently:
 *   SB_SEND_OK            queued; it leaves in this loop turn's write.
 *   SB_SEND_BACKPRESSURE  queued, but the socket already holds bytes the kernel refused; the
 *                         drain callback fires once they are written. Slow down.
 *   SB_SEND_DROPPED       not queued: the per-connection queued-bytes limit would be exceeded,
 *                         or the connection is closing. Nothing of the message was sent.
 */
typedef enum { SB_SEND_OK = 0, SB_SEND_BACKPRESSURE = 1, SB_SEND_DROPPED = 2 } sb_send_result;

/* Close codes the library itself uses (RFC 6455 §7.4.1). */
enum {
  SB_CLOSE_NORMAL = 1000,
  SB_CLOSE_GOING_AWAY = 1001,     /* server shutdown */
  SB_CLOSE_PROTOCOL_ERROR = 1002, /* malformed frame */
  SB_CLOSE_UNSUPPORTED = 1003,
  SB_CLOSE_NO_STATUS = 1005,      /* reported only: the peer's close frame had no code */
  SB_CLOSE_ABNORMAL = 1006,       /* reported only: the TCP connection ended without a close */
  SB_CLOSE_INVALID_DATA = 1007,   /* a text message that is not UTF-8 */
  SB_CLOSE_POLICY = 1008,
  SB_CLOSE_TOO_BIG = 1009,        /* a message over max_message_bytes */
  SB_CLOSE_INTERNAL = 1011,
  SB_CLOSE_TRY_AGAIN = 1013
};

/* The allocator. All of Switchboard's own memory comes from here (libuv and OpenSSL keep
 * theirs). Leave it NULL in the options for malloc/realloc/free. realloc(NULL, n) must behave
 * as malloc(n); free(NULL) must do nothing. */
typedef struct sb_allocator {
  void *(*malloc)(size_t size, void *ctx);
  void *(*realloc)(void *ptr, size_t size, void *ctx);
  void (*free)(void *ptr, void *ctx);
  void *ctx;
} sb_allocator;

/* ---------------------------------------------------------------------------------------- */
/* Callbacks                                                                                  */
/* ---------------------------------------------------------------------------------------- */

/* The handshake completed; the connection may send from now on. */
typedef void (*sb_open_cb)(sb_conn *conn, void *user);

/* A whole message arrived (fragments already joined; text already checked to be UTF-8).
 * `data` is borrowed for this call only: copy what you keep. */
typedef void (*sb_message_cb)(sb_conn *conn, sb_opcode op, const void *data, size_t len,
                              void *user);

/* The connection is gone: after this callback the sb_conn pointer is invalid. `code` is the
 * close code the peer sent (or the one the server sent on a protocol error, or
 * SB_CLOSE_ABNORMAL when the TCP connection simply ended); `reason` is borrowed and not
 * NUL-terminated. Fires exactly once for every connection that fired open. */
typedef void (*sb_close_cb)(sb_conn *conn, int code, const char *reason, size_t reason_len,
                            void *user);

/* Bytes that the kernel refused earlier have now all been written (after a send returned
 * SB_SEND_BACKPRESSURE). */
typedef void (*sb_drain_cb)(sb_conn *conn, void *user);

/* Chooses a subprotocol among those the client offered in Sec-WebSocket-Protocol, in the
 * client's order. Return the index of the chosen one, or -1 to choose none (the handshake
 * then succeeds without a Sec-WebSocket-Protocol header, as RFC 6455 §4.2.2 allows). The
 * strings are borrowed for this call only. */
typedef int (*sb_subprotocol_cb)(const char *const *offered, size_t count, void *user);

/* Graceful shutdown has finished: every connection is closed and the server's handles are
 * closed, so uv_run() returns once nothing else is active. */
typedef void (*sb_shutdown_cb)(sb_server *server, void *user);

/* ---------------------------------------------------------------------------------------- */
/* Server                                                                                     */
/* ---------------------------------------------------------------------------------------- */

/*
 * Server options. Initialise with sb_server_options_init(), which sets the defaults given
 * below, then change what you need. A zero limit means "the default", not "unlimited".
 */
typedef struct sb_server_options {
  size_t max_header_bytes;       /* upgrade request line + headers; 431 past it. 16 KiB */
  size_t max_message_bytes;      /* one message, all fragments; close 1009 past it. 16 MiB */
  size_t max_queued_bytes;       /* unsent bytes per connection; sends past it are DROPPED.
                                    16 MiB + 64 KiB, so that one maximal message fits */
  unsigned handshake_timeout_ms; /* the whole upgrade request must arrive in time; 408. 10 s */
  unsigned idle_timeout_ms;      /* silence after which the server pings; the connection is
                                    dropped after twice this long without any data. 60 s */
  unsigned close_timeout_ms;     /* how long to wait for the peer's half of the close
                                    handshake. 5 s */
  int backlog;                   /* listen(2) backlog. 1024 */

  sb_open_cb on_open;
  sb_message_cb on_message;
  sb_close_cb on_close;
  sb_drain_cb on_drain;
  sb_subprotocol_cb on_subprotocol;
  void *user;                    /* passed back untouched to every callback above */

  const sb_allocator *allocator; /* NULL: malloc. Copied; must outlive the server */
} sb_server_options;

/* Fills `opts` with the defaults (and NULL callbacks). */
SB_EXPORT void sb_server_options_init(sb_server_options *opts);

/* Creates a server on `loop`. The options are copied. On success *out holds the server and 0
 * is returned; on failure *out is NULL and a negative code is returned. Nothing happens on the
 * loop until sb_server_listen(). */
SB_EXPORT int sb_server_new(sb_server **out, struct uv_loop_s *loop,
                            const sb_server_options *opts);

/* Listens on `host` (an IPv4 or IPv6 literal, e.g. "127.0.0.1" or "::1") and `port` (0 picks a
 * free one; read it with sb_server_port()). May be called once per server. */
SB_EXPORT int sb_server_listen(sb_server *server, const char *host, int port);

/* The bound port after a successful listen, else 0. */
SB_EXPORT int sb_server_port(const sb_server *server);

/* Graceful shutdown: stops accepting, sends close 1001 to every client, waits for their close
 * (up to close_timeout_ms each), then closes the server's own handles, so that uv_run() ends.
 * `cb` (may be NULL) fires once everything is closed; calling again has no effect beyond the
 * first call. */
SB_EXPORT int sb_server_shutdown(sb_server *server, sb_shutdown_cb cb, void *user);

/* Frees the server. Only valid before sb_server_listen() or after shutdown has completed
 * (the shutdown callback fired, or uv_run() returned after sb_server_shutdown); otherwise it
 * returns SB_EBUSY and frees nothing. sb_server_free(NULL) returns 0. */
SB_EXPORT int sb_server_free(sb_server *server);

/* Text of the last operating-system error the server met (for SB_EIO), or "". Borrowed. */
SB_EXPORT const char *sb_server_last_error(const sb_server *server);

/* Number of open connections (handshake completed, not yet closed). */
SB_EXPORT size_t sb_server_conn_count(const sb_server *server);

/* ---------------------------------------------------------------------------------------- */
/* Connections                                                                                */
/* ---------------------------------------------------------------------------------------- */

/*
 * Sends one message. The bytes are copied, so `data` may be freed on return. A text message
 * must be valid UTF-8 (the library does not check what the application sends). Returns an
 * sb_send_result (>= 0), or SB_EINVAL for a bad opcode.
 */
SB_EXPORT int sb_conn_send(sb_conn *conn, sb_opcode op, const void *data, size_t len);

/* Starts the close handshake with `code` (1000-1003, 1007-1014 or 3000-4999) and a reason of at
 * most 123 bytes of UTF-8 (may be NULL). The close callback fires later, once the peer answered
 * or close_timeout_ms passed. Calling it on a closing connection returns SB_ECLOSED. */
SB_EXPORT int sb_conn_close(sb_conn *conn, int code, const char *reason, size_t reason_len);

/* Per-connection user data, NULL until set. */
SB_EXPORT void sb_conn_set_user(sb_conn *conn, void *user);
SB_EXPORT void *sb_conn_user(const sb_conn *conn);

/* The server the connection belongs to. */
SB_EXPORT sb_server *sb_conn_server(const sb_conn *conn);

/* The subprotocol chosen at the handshake, or NULL. Borrowed; valid while the connection is. */
SB_EXPORT const char *sb_conn_subprotocol(const sb_conn *conn);

/* Bytes queued on the connection and not yet accepted by the kernel. */
SB_EXPORT size_t sb_conn_queued_bytes(const sb_conn *conn);

/* ---------------------------------------------------------------------------------------- */
/* Prepared messages: framed once, sent to any number of connections without copying          */
/* ---------------------------------------------------------------------------------------- */

/* Frames `data` once into a reference-counted buffer (the bytes are copied), using the
 * server's allocator. The caller holds one reference. */
SB_EXPORT int sb_msg_new(sb_msg **out, sb_server *server, sb_opcode op, const void *data,
                         size_t len);

/* Queues a reference to `msg` on `conn` (no copy). Returns an sb_send_result as sb_conn_send.
 * The caller keeps its own reference. */
SB_EXPORT int sb_conn_send_msg(sb_conn *conn, sb_msg *msg);

/* Reference counting. The message is freed when the last reference goes, including the
 * references that queued sends hold until their bytes are written. */
SB_EXPORT sb_msg *sb_msg_ref(sb_msg *msg);
SB_EXPORT void sb_msg_unref(sb_msg *msg);

/* The payload (without the frame header) and its length. */
SB_EXPORT const void *sb_msg_data(const sb_msg *msg);
SB_EXPORT size_t sb_msg_len(const sb_msg *msg);

#ifdef __cplusplus
}
#endif
#endif /* SWITCHBOARD_H */
