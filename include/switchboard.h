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
  SB_EADDRINUSE = -7, /* listen: the address is taken */
  SB_EPROTO = -8,     /* malformed input (a message that does not fit its schema, ...) */
  SB_ENOTFOUND = -9   /* no such connection, group, stream, ... */
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

/* Close codes the library itself uses (RFC 6455 §7.4.1; docs/PROTOCOL.md §8). */
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
  SB_CLOSE_TRY_AGAIN = 1013,
  SB_CLOSE_REPLACED = 4000,       /* the session was resumed by another connection */
  SB_CLOSE_EXPIRED = 4001,        /* the connection's credentials expired, no new token came */
  SB_CLOSE_IDENTITY = 4003        /* a refreshed token named another identity */
};

/* The allocator. All of Switchboard's own memory comes from here (libuv, OpenSSL and libjwt
 * keep theirs; so do sb_jwt objects and the claims sb_jwt_verify_token hands out, which are
 * malloc'd). Leave it NULL in the options for malloc/realloc/free. realloc(NULL, n) must behave
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
 * strings are borrowed for this call only. "bearer.<token>" entries are credentials
 * (sb_upgrade_token), not protocols: they are never offered here. Without this hook no
 * subprotocol is chosen, except that when a bearer entry came the first real one is (browsers
 * fail a connection that offered protocols and got none back). */
typedef int (*sb_subprotocol_cb)(const char *const *offered, size_t count, void *user);

/* A pending WebSocket upgrade (or a token refresh on an open connection) waiting for the
 * application's verdict; see "Upgrade auth" below. */
typedef struct sb_upgrade sb_upgrade;

/* Decides on an upgrade request that passed the protocol checks and the Origin allow-list:
 * call sb_upgrade_accept() or sb_upgrade_reject() on `up`, during this call or later (after a
 * lookup). Until then the connection waits and reads nothing. The same callback verifies a
 * new token that an open connection sends before its credentials expire
 * (sb_upgrade_is_refresh() is then 1). */
typedef void (*sb_upgrade_cb)(sb_upgrade *up, void *user);

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
  size_t max_header_bytes;       /* request line + headers of an upgrade or a plain HTTP
                                    request; 431 past it. 16 KiB */
  size_t max_message_bytes;      /* one message, all fragments; close 1009 past it. 16 MiB */
  size_t max_queued_bytes;       /* the memory a connection's unsent data may hold (its
                                    buffers as allocated and the messages it references);
                                    sends past it are DROPPED, and reading the connection
                                    pauses while it holds more than half. 16 MiB + 64 KiB, so
                                    that one maximal message fits */
  unsigned handshake_timeout_ms; /* a request (upgrade or plain HTTP) must arrive whole in
                                    time (408), and an upgrade be decided by on_upgrade
                                    (503); counted from the accept, or for a later request
                                    on a keep-alive connection from its first byte. 10 s */
  unsigned idle_timeout_ms;      /* silence after which the server pings; the connection is
                                    dropped after twice this long without any data. 60 s */
  unsigned close_timeout_ms;     /* how long to wait for the peer's half of the close
                                    handshake. 5 s */
  unsigned shutdown_spread_ms;   /* graceful shutdown closes the open WebSocket connections
                                    (1001) a share at a time over this long, so that they
                                    reconnect to other nodes without a stampede; 1: all at
                                    once. 2 s */
  int backlog;                   /* listen(2) backlog. 1024 */
  size_t max_body_bytes;         /* a plain HTTP request's body (sb_app_new answers plain HTTP);
                                    413 past it, before any of it is read when Content-Length
                                    announces it. 1 MiB */
  unsigned keepalive_timeout_ms; /* a plain HTTP connection idle between requests is closed
                                    after this long. 5 s. (A request must arrive whole within
                                    handshake_timeout_ms of its first byte: 408.) */
  unsigned message_timeout_ms;   /* a WebSocket message must arrive whole (all its fragments,
                                    every byte of its frames) within this long of its first
                                    byte, else the connection is closed with 1008: a client
                                    cannot hold up to max_message_bytes of memory by trickling
                                    a message. Not counted while reading is paused for the
                                    client's own full send queue. 30 s */
  size_t max_connections;        /* connections at once (any state). Past it a new one is
                                    answered 503 with Retry-After and closed. Default: the
                                    process' descriptor limit (RLIMIT_NOFILE) less 64 */
  size_t max_connections_per_address; /* connections at once from one client address (IPv4,
                                    or the /64 of an IPv6 address); past it 429 with
                                    Retry-After. 256. Loopback peers (127.0.0.0/8, ::1) are
                                    not counted unless limit_loopback is set: behind a reverse
                                    proxy on the same host every client has its address */
  int limit_loopback;            /* 1: apply max_connections_per_address to loopback peers */

  sb_open_cb on_open;
  sb_message_cb on_message;
  sb_close_cb on_close;
  sb_drain_cb on_drain;
  sb_subprotocol_cb on_subprotocol;
  sb_upgrade_cb on_upgrade;      /* upgrade auth; NULL: every valid upgrade is accepted,
                                    anonymously */
  void *user;                    /* passed back untouched to every callback above */

  /* Origin allow-list for upgrades (against cross-site WebSocket hijacking from browsers):
   * when set, an upgrade whose Origin header is not one of these exact strings (e.g.
   * "https://app.example") is refused with 403. An upgrade without an Origin header (not a
   * browser) is let through to the auth that follows. NULL: any origin (but then the sb_token
   * cookie counts only from the server's own origin; see sb_upgrade_token). Copied. */
  const char *const *allowed_origins;
  size_t allowed_origins_count;

  /* Connections whose credentials expire (sb_upgrade_accept with expires_at) are asked for a
   * new token this long before they expire, but never earlier than halfway through their
   * lifetime: on a hub with an AUTH message (docs/PROTOCOL.md §9); a plain server has no such
   * message, so its connections are just closed at expiry. At expiry, without a new token,
   * a connection is closed with SB_CLOSE_EXPIRED. 30 s */
  unsigned refresh_before_ms;

  const sb_allocator *allocator; /* NULL: malloc. Copied; must outlive the server */
} sb_server_options;

/* Fills `opts` with the defaults (and NULL callbacks). */
SB_EXPORT void sb_server_options_init(sb_server_options *opts);

/* Creates a server on `loop`. The options are copied. On success *out holds the server and 0
 * is returned; on failure *out is NULL and a negative code is returned. Nothing happens on the
 * loop until sb_server_listen(). SIGPIPE, if the process left it at its default (which kills
 * the process when a peer that hung up is written to), is set to be ignored; a handler the
 * application installed is left alone. */
SB_EXPORT int sb_server_new(sb_server **out, struct uv_loop_s *loop,
                            const sb_server_options *opts);

/* Listens on `host` (an IPv4 or IPv6 literal, e.g. "127.0.0.1" or "::1") and `port` (0 picks a
 * free one; read it with sb_server_port()). May be called once per server. */
SB_EXPORT int sb_server_listen(sb_server *server, const char *host, int port);

/* The bound port after a successful listen, else 0. */
SB_EXPORT int sb_server_port(const sb_server *server);

/* Graceful shutdown: stops accepting, sends close 1001 to every client (the WebSocket ones
 * spread over shutdown_spread_ms; a hub releases their sessions at once, so that they can be
 * resumed elsewhere however late their connection here closes), waits for their close
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

/* The identity the upgrade auth accepted the connection as, or "" (anonymous). Borrowed;
 * valid while the connection is (a refresh keeps the identity). */
SB_EXPORT const char *sb_conn_identity(const sb_conn *conn);

/* The claims the upgrade auth attached (JSON text, as given to sb_upgrade_accept), or NULL.
 * Borrowed; valid until the connection closes or its token is refreshed. */
SB_EXPORT const char *sb_conn_claims(const sb_conn *conn);

/* When the connection's credentials expire, in seconds since the Unix epoch; 0 for never. */
SB_EXPORT int64_t sb_conn_expires(const sb_conn *conn);

/* ---------------------------------------------------------------------------------------- */
/* Upgrade auth                                                                               */
/* ---------------------------------------------------------------------------------------- */

/*
 * With on_upgrade set, every WebSocket upgrade that is valid (RFC 6455 §4.2.1) and from an
 * allowed Origin is handed to it before the 101 is sent. The callback reads the request and
 * answers, at once or later:
 *
 *     static void auth(sb_upgrade *up, void *user) {
 *       const char *token = sb_upgrade_token(up);
 *       if (!token) { sb_upgrade_reject(up, 401, NULL, "token required"); return; }
 *       ... look the token up, then (maybe from another callback):
 *       sb_upgrade_accept(up, "user-42", "{\"role\":\"admin\"}", expires_at);
 *     }
 *
 * Or use the built-in JWT verification: sb_jwt_new() and on_upgrade = sb_jwt_upgrade_cb with
 * user = the sb_jwt.
 *
 * The handle stays valid until accept or reject, even if the client went away (they then
 * return SB_ECLOSED, and free it all the same). The strings it hands out are NUL-terminated and
 * valid until then. An upgrade left unanswered for handshake_timeout_ms is answered 503.
 */

/* The request target's path, without the query string (not decoded). */
SB_EXPORT const char *sb_upgrade_path(sb_upgrade *up);
/* The first value of a request header (case-insensitive name), or NULL. */
SB_EXPORT const char *sb_upgrade_header(sb_upgrade *up, const char *name);
/* The value of a cookie from the Cookie header(s), or NULL. */
SB_EXPORT const char *sb_upgrade_cookie(sb_upgrade *up, const char *name);
/* The first value of a query parameter, percent-decoded, or NULL. */
SB_EXPORT const char *sb_upgrade_query(sb_upgrade *up, const char *name);
/* The peer's address, "127.0.0.1" or "::1" style, or "" if unknown. */
SB_EXPORT const char *sb_upgrade_remote_address(sb_upgrade *up);

/*
 * The credential the client presented, looked for in this order:
 *   1. `Authorization: Bearer <token>`           (Node, native apps)
 *   2. a Sec-WebSocket-Protocol entry `bearer.<token>`, offered next to a real subprotocol
 *      (browsers: `new WebSocket(url, ["sb.v1", "bearer." + token])`; the recommended way,
 *      as browsers cannot set headers on a WebSocket and a URL ends up in logs). That entry
 *      is never chosen as the subprotocol.
 *   3. the cookie `sb_token`                      (same-site apps with an HttpOnly cookie),
 *      only when the Origin is trusted: absent (not a browser page), in allowed_origins, or,
 *      when that list is not set, the server's own (the Origin's host and port equal to the
 *      Host header's; ports 80/443 by default for http/https, hosts compared without case).
 *      A browser sends cookies with a WebSocket that a page of any site opens, so from any
 *      other Origin the cookie is ignored, and the lookup goes on.
 *   4. the query parameter `access_token`         (last resort: URLs are logged)
 * For a refresh, the token the connection sent. NULL if none. (sb_upgrade_cookie is not
 * filtered that way.)
 */
SB_EXPORT const char *sb_upgrade_token(sb_upgrade *up);

/* 1 when `up` is a token refresh on an open connection rather than a new upgrade. A refresh has
 * no request: path, headers, cookies and query are "" or NULL; the token is the new one. */
SB_EXPORT int sb_upgrade_is_refresh(const sb_upgrade *up);
/* The connection (still waiting for its 101, or open for a refresh), or NULL if it is gone. */
SB_EXPORT sb_conn *sb_upgrade_conn(const sb_upgrade *up);

/*
 * Accepts: the connection opens (101) as `identity` (UTF-8, at most 190 bytes; NULL or "" for
 * anonymous), with `claims` (any text, usually JSON; may be NULL; copied) and credentials
 * valid until `expires_at` (seconds since the Unix epoch; 0: no expiry). The strings may be
 * the handle's own (sb_upgrade_token ...). Frees `up`. Returns 0; SB_ECLOSED when the client
 * is gone; SB_EINVAL for a bad identity (the client gets 500) or an expiry already past (401);
 * SB_ENOMEM (503); SB_EIO when reading cannot restart (the connection is closed). A refresh must name the same identity, else the connection is closed with
 * SB_CLOSE_IDENTITY (and 0 is returned); a refresh that fails leaves the old credentials.
 */
SB_EXPORT int sb_upgrade_accept(sb_upgrade *up, const char *identity, const char *claims,
                                int64_t expires_at);

/*
 * Rejects with an HTTP status (400-599, e.g. 401, 403, 429), extra response headers
 * `headers[0..nheaders)` given as "Name: value" strings (e.g. "WWW-Authenticate: Bearer",
 * "Retry-After: 30"; no CR or LF inside, at most 1 KiB in all; Content-Length, Content-Type,
 * Transfer-Encoding, Connection, Keep-Alive, Upgrade, Date, Trailer and Sec-WebSocket-* are
 * the library's and refused),
 * and a short text body (may be NULL; cut to 255 bytes, control characters made spaces). The
 * connection is closed after the answer. For a refresh, the connection stays open until its old
 * credentials expire (the client may try again) and gets an AUTH error. Frees `up`.
 * Returns 0, SB_ECLOSED, or SB_EINVAL (a bad status or header: answered 500 instead).
 */
SB_EXPORT int sb_upgrade_reject(sb_upgrade *up, int status, const char *const *headers,
                                size_t nheaders, const char *body);

/* Built-in JWT verification (libjwt): HS256 with a shared secret or RS256 with a PEM public
 * key, exactly one per verifier; the token's own "alg" must match it, so "none" and key
 * confusion are refused. exp is required, nbf checked when present, aud and iss when set
 * here; sub becomes the connection's identity and the whole payload its claims. exp, nbf and
 * iat, when present, must be JSON numbers within int64_t (else the token is refused); a
 * fraction is rounded to the stricter side (exp down, nbf up), and sums with the leeway
 * saturate (exp = INT64_MAX never expires). */
typedef struct sb_jwt sb_jwt;

typedef struct sb_jwt_options {
  const char *alg;      /* "HS256" or "RS256" */
  const void *key;      /* HS256: the secret (at least 32 bytes); RS256: PEM public key */
  size_t key_len;
  const char *audience; /* NULL: not checked */
  const char *issuer;   /* NULL: not checked */
  unsigned leeway_s;    /* clock skew allowed on exp and nbf */
} sb_jwt_options;

/* Creates a verifier; everything is copied. SB_EINVAL for an unknown alg or a short secret. */
SB_EXPORT int sb_jwt_new(sb_jwt **out, const sb_jwt_options *opts);
SB_EXPORT void sb_jwt_free(sb_jwt *jwt);

/* Verifies `token` now. On success fills identity[0..cap) (the sub), *claims (malloc'd JSON,
 * free() it; may be NULL to skip) and *expires_at (the exp, > 0, without the leeway), and
 * returns 0; otherwise SB_EPROTO (SB_ENOMEM when out of memory) with a reason in err. For
 * checking tokens elsewhere (plain HTTP middleware, say). */
SB_EXPORT int sb_jwt_verify_token(const sb_jwt *jwt, const char *token, char *identity,
                                  size_t cap, char **claims, int64_t *expires_at, char *err,
                                  size_t errlen);

/* An sb_upgrade_cb that verifies sb_upgrade_token() with the sb_jwt passed as `user`: accepts
 * with the token's sub, claims and exp (plus the verifier's leeway, saturating), or rejects
 * with 401 and `WWW-Authenticate: Bearer` (error="invalid_token" and the reason, when a token
 * was there). */
SB_EXPORT void sb_jwt_upgrade_cb(sb_upgrade *up, void *jwt);

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

/* ---------------------------------------------------------------------------------------- */
/* Schema codec: named binary fields, encoded and decoded with strict bounds checks           */
/* ---------------------------------------------------------------------------------------- */

/*
 * A schema is an ordered list of named fields. Encoded, a message is the fields back to back,
 * with no tags: integers big-endian (network order), fixed-length bytes as they are,
 * variable-length bytes and text as an unsigned LEB128 varint length followed by the bytes,
 * and an optional last "rest" field that takes every remaining byte. docs/PROTOCOL.md gives
 * the exact rules; spec/vectors/codec.json holds the test vectors that the C and the
 * JavaScript codecs both pass.
 *
 * A schema serializes itself (sb_schema_serialize), which is how a server tells its clients
 * the format of its messages.
 */
typedef struct sb_schema sb_schema;

typedef enum {
  SB_FIELD_U8 = 1,    /* unsigned integer, 1 byte */
  SB_FIELD_U16 = 2,   /* unsigned integer, 2 bytes, big-endian */
  SB_FIELD_U32 = 3,   /* unsigned integer, 4 bytes, big-endian */
  SB_FIELD_U64 = 4,   /* unsigned integer, 8 bytes, big-endian */
  SB_FIELD_FIXED = 5, /* exactly `size` bytes (1..65535) */
  SB_FIELD_BYTES = 6, /* varint length, then that many bytes */
  SB_FIELD_TEXT = 7,  /* varint length, then that many bytes of valid UTF-8 */
  SB_FIELD_REST = 8   /* every remaining byte; only as the last field */
} sb_field_type;

/* One field of a schema. `name`: 1..63 characters of [A-Za-z0-9_], unique in the schema.
 * `size`: the length of an SB_FIELD_FIXED field; it must be 0 for every other type. */
typedef struct sb_field {
  const char *name;
  sb_field_type type;
  uint32_t size;
} sb_field;

/* A field's value. Integer fields use `u`; byte and text fields use `data`/`len`. For
 * decoding, `data` points into the decoded buffer (no copy): it is valid as long as that
 * buffer is. */
typedef struct sb_value {
  uint64_t u;
  const void *data;
  size_t len;
} sb_value;

#define SB_SCHEMA_MAX_FIELDS 64
#define SB_FIELD_MAX_NAME 63

/*
 * Creates a schema from `count` field definitions (copied, names included). `allocator` may
 * be NULL (malloc). On failure returns SB_EINVAL (or SB_ENOMEM) and, when `err` is not NULL,
 * writes a NUL-terminated message naming the offending field into err[0..errlen).
 */
SB_EXPORT int sb_schema_new(sb_schema **out, const sb_field *fields, size_t count,
                            const sb_allocator *allocator, char *err, size_t errlen);

/* Frees a schema. sb_schema_free(NULL) does nothing. */
SB_EXPORT void sb_schema_free(sb_schema *schema);

/* Number of fields, a field by index (NULL past the end; borrowed), the index of a field by
 * name (-1 if there is none). */
SB_EXPORT size_t sb_schema_count(const sb_schema *schema);
SB_EXPORT const sb_field *sb_schema_field(const sb_schema *schema, size_t index);
SB_EXPORT int sb_schema_index(const sb_schema *schema, const char *name);

/* The encoded size of `values` (one per field, in schema order), or a negative code with a
 * message naming the field that cannot be encoded (an integer too large for its width, fixed
 * bytes of the wrong length, text that is not UTF-8). */
SB_EXPORT int sb_schema_encoded_size(const sb_schema *schema, const sb_value *values,
                                     size_t *size, char *err, size_t errlen);

/* Encodes `values` into out[0..cap). On success *written holds the length. Fails with
 * SB_EINVAL (bad value, with a message naming the field) or SB_ENOMEM if cap is too small (then
 * *written holds the size needed); nothing is guaranteed about out[] on failure. */
SB_EXPORT int sb_schema_encode(const sb_schema *schema, const sb_value *values, uint8_t *out,
                               size_t cap, size_t *written, char *err, size_t errlen);

/* Decodes in[0..len) into values[] (sb_schema_count(schema) of them). Byte and text values
 * point into `in`.
 * Fails with SB_EPROTO and a message naming the field: truncated input, a malformed or
 * non-minimal varint, a length past the end, text that is not UTF-8, or trailing bytes when
 * the schema has no rest field. */
SB_EXPORT int sb_schema_decode(const sb_schema *schema, const uint8_t *in, size_t len,
                               sb_value *values, char *err, size_t errlen);

/* Decodes one record from the front of in[0..len) and sets *consumed to its length, so that
 * records can be read back to back (a schema without a rest field). Otherwise as
 * sb_schema_decode; a rest field takes everything, as there. */
SB_EXPORT int sb_schema_decode_prefix(const sb_schema *schema, const uint8_t *in, size_t len,
                                      sb_value *values, size_t *consumed, char *err,
                                      size_t errlen);

/* The schema's own wire form (docs/PROTOCOL.md, "Schemas on the wire"). With out == NULL
 * only *written is set (the size needed). SB_ENOMEM if cap is too small. */
SB_EXPORT int sb_schema_serialize(const sb_schema *schema, uint8_t *out, size_t cap,
                                  size_t *written);

/* Reads a schema from its wire form; the same checks as sb_schema_new, but since the bytes
 * come from a peer every refusal is SB_EPROTO (with a message). */
SB_EXPORT int sb_schema_deserialize(sb_schema **out, const uint8_t *in, size_t len,
                                    const sb_allocator *allocator, char *err, size_t errlen);

/* ---------------------------------------------------------------------------------------- */
/* Hub: connections by id, groups, pushes to one or many, redelivery after a reconnect        */
/* ---------------------------------------------------------------------------------------- */

/*
 * A hub runs the messaging protocol of docs/PROTOCOL.md on top of a server it creates: every
 * WebSocket message is an envelope (binary, encoded with the envelope schema); on open each
 * connection gets a HELLO (its id, a resume token, limits, the schemas); pushes to a group or
 * to one connection are recorded in per-stream history, with contiguous offsets and an epoch,
 * so that a client that reconnects (to this node, or with the redis engine to any node) sends
 * RESUME and gets exactly what it missed. See docs/ARCHITECTURE.md, "Redelivery".
 */
typedef struct sb_hub sb_hub;

/* Where messages are published, stored and recovered. NULL in the hub options means the
 * memory engine (this node only), which the hub creates and frees itself. Other engines (redis,
 * for many nodes) are created by their own constructors and freed by their creator after the
 * hub. */
typedef struct sb_engine sb_engine;

/* Envelope kinds and methods (docs/PROTOCOL.md). */
typedef enum {
  SB_KIND_REQUEST = 1,  /* client → server: method, id, url, body */
  SB_KIND_RESPONSE = 2, /* server → client: id, status, body */
  SB_KIND_PUSH = 3,     /* server → client: stream, offset, epoch, method, url, body */
  SB_KIND_SEND = 4,     /* client → server, one-way: method, url, body */
  SB_KIND_HELLO = 5,    /* server → client, first message: fixed layout, not an envelope */
  SB_KIND_RESUME = 6,   /* client → server: token and positions */
  SB_KIND_RESUMED = 7,  /* server → client: per stream, recovered or not */
  SB_KIND_ACK = 8,      /* client → server: positions */
  SB_KIND_ERROR = 9,    /* server → client: status, id (when about a request), text */
  SB_KIND_AUTH = 10,    /* both ways: credentials about to expire / a new token / the verdict */
  SB_KIND_PING = 11     /* both ways: a client's heartbeat probe, and the hub's answer */
} sb_kind;

typedef enum {
  SB_METHOD_NONE = 0,
  SB_METHOD_GET = 1,
  SB_METHOD_POST = 2,
  SB_METHOD_PUT = 3,
  SB_METHOD_PATCH = 4,
  SB_METHOD_DELETE = 5
} sb_method;

/* A decoded envelope. Strings are not NUL-terminated; everything is borrowed from the message
 * and valid during the callback only. */
typedef struct sb_envelope {
  uint8_t kind;
  uint8_t method;
  uint16_t status;
  uint32_t id;
  const char *stream;
  size_t stream_len;
  uint64_t offset;
  uint64_t epoch;
  const char *url;
  size_t url_len;
  const void *body;
  size_t body_len;
} sb_envelope;

/* An application message (REQUEST or SEND) arrived on a hub connection. */
typedef void (*sb_hub_message_cb)(sb_conn *conn, const sb_envelope *env, void *user);
/* A connection resumed an earlier session: its id is now the earlier one, its groups are
 * restored and what it missed was replayed. */
typedef void (*sb_hub_resume_cb)(sb_conn *conn, void *user);
/* Presence changed in a group: `identity` ("" for anonymous connections) got its first
 * connection in `group` anywhere in the cluster (joined 1), or its last one there left
 * (joined 0). See sb_hub_presence. */
typedef void (*sb_hub_presence_event_cb)(sb_hub *hub, const char *group, const char *identity,
                                         int joined, void *user);

typedef struct sb_hub_options {
  size_t history_max;          /* messages kept per stream. 1000 */
  unsigned history_age_ms;     /* and for at most this long. 5 min */
  unsigned session_ttl_ms;     /* a closed connection can be resumed this long. 5 min */
  size_t max_replay;           /* a resume replays at most this many messages per stream;
                                  beyond it the stream is reported recovered:false. 10000 */
  size_t replay_batch;         /* history is read in batches of this many. 256 */
  size_t max_closed_sessions;  /* closed sessions kept for a resume (memory engine), at about
                                  320 bytes each (500 with a user:<identity> group) plus their
                                  other groups and undelivered direct messages; past it the
                                  oldest closed one is evicted (its resume gets 401, as an
                                  expired one's). 100000 */
  sb_open_cb on_open;          /* after the HELLO is queued */
  sb_hub_message_cb on_message;
  sb_close_cb on_close;        /* the connection left every group before this fires */
  sb_hub_resume_cb on_resume;
  sb_hub_presence_event_cb on_presence; /* presence events (see sb_hub_presence) */
  void *user;
  sb_engine *engine;           /* NULL: the memory engine */
} sb_hub_options;

SB_EXPORT void sb_hub_options_init(sb_hub_options *opts);

/* Creates a hub and the server it runs on. The server's own message, open, close and drain
 * callbacks in `server_opts` are ignored (the hub's take their place); on_upgrade,
 * on_subprotocol (with `user`), the Origin list, limits, timeouts and the allocator apply. Listen with sb_server_listen(sb_hub_server(hub), ...). */
SB_EXPORT int sb_hub_new(sb_hub **out, struct uv_loop_s *loop,
                         const sb_server_options *server_opts, const sb_hub_options *opts);

/* The hub's server (for listen, shutdown, counts). */
SB_EXPORT sb_server *sb_hub_server(sb_hub *hub);

/* Frees the hub and its server; the same rules as sb_server_free (SB_EBUSY while running). */
SB_EXPORT int sb_hub_free(sb_hub *hub);

/* The hub a connection belongs to (NULL for a plain server's connection). */
SB_EXPORT sb_hub *sb_conn_hub(const sb_conn *conn);

/* The connection's id: 22 characters of URL-safe base64 from 16 CSPRNG bytes, NUL-terminated.
 * After a resume it is the resumed session's id. Borrowed; valid while the connection is. */
SB_EXPORT const char *sb_conn_id(const sb_conn *conn);

/* The open connection with this id on this node, or NULL. */
SB_EXPORT sb_conn *sb_hub_find(sb_hub *hub, const char *conn_id);

/* Joins / leaves a group (1..200 bytes of UTF-8 name). Joining twice, or leaving a group the
 * connection is not in, does nothing and returns 0. Names starting with "user:" are reserved
 * (SB_EINVAL for both calls): those groups are joined by the upgrade auth, one per identity. Membership is part of the session: a
 * resumed connection is in the same groups. */
SB_EXPORT int sb_conn_join(sb_conn *conn, const char *group);
SB_EXPORT int sb_conn_leave(sb_conn *conn, const char *group);

/* The connection's groups: fills out[0..max) with borrowed names, returns the count. */
SB_EXPORT size_t sb_conn_groups(const sb_conn *conn, const char **out, size_t max);

/* Local members of a group on this node. */
SB_EXPORT size_t sb_hub_group_size(sb_hub *hub, const char *group);

/* Who is in a group, across every node of the cluster: each identity with at least one
 * connection in the group, and how many it has there. Anonymous connections (no identity)
 * are not counted (sb_hub_group_size counts this node's members). Every membership counts: sb_conn_join, a resume restoring the groups, and the
 * "user:<identity>" group the upgrade auth joins (so sb_hub_presence(hub, "user:bob", ...)
 * tells whether bob is connected anywhere). `cb` fires exactly once, later (never inside this
 * call), with status 0 and the list sorted by identity (borrowed for the call), or a negative
 * code (the engine failed: Redis did not answer). Returns 0, SB_EINVAL (bad group name, cb
 * NULL), SB_ENOMEM, or SB_EIO (the engine's link is down now; then `cb` does not fire).
 *
 * Events: sb_hub_options.on_presence fires when an identity's first connection joins a group
 * or its last one leaves (closing the connection leaves its groups), on a later loop turn.
 * With the memory engine it fires for every group; with the redis engine on every node that
 * has members of the group, for changes made on any node. Events say when to look again, not
 * what is there: an application that shows a group's members reads sb_hub_presence on an
 * event (events can be missed while a node's Redis link is down; the list cannot).
 * A node that dies takes its connections out of the cluster's presence within the node
 * timeout (sb_redis_options.node_ttl_ms, plus a second), and leave events fire for them. */
typedef struct sb_presence {
  const char *identity;
  size_t connections;
} sb_presence;
typedef void (*sb_hub_presence_cb)(int status, const sb_presence *who, size_t n, void *user);
SB_EXPORT int sb_hub_presence(sb_hub *hub, const char *group, sb_hub_presence_cb cb,
                              void *user);

/* Pushes a message to every member of a group: recorded in the group's stream (next offset),
 * framed once, and the same bytes queued on every member. `url` may be NULL. Members whose
 * queue is full are closed with 1013 (they resume later and lose nothing). Returns 0 or a
 * negative code. */
SB_EXPORT int sb_hub_publish(sb_hub *hub, const char *group, sb_method method, const char *url,
                             const void *body, size_t len);

/* Pushes a message to one connection by id (recorded in its direct stream, so that it is
 * replayed if the connection resumes). SB_ENOTFOUND when no session has this id — with an
 * engine that can tell at once (the memory engine). An asynchronous engine (redis) learns it
 * later: there 0 means only "accepted", and the outcome is reported to sb_hub_send_to_cb. */
SB_EXPORT int sb_hub_send_to(sb_hub *hub, const char *conn_id, sb_method method,
                             const char *url, const void *body, size_t len);

/* The outcome of an operation reported later: 0, or a negative SB_E* code. */
typedef void (*sb_hub_done_cb)(int status, void *user);

/* sb_hub_send_to, with its outcome reported to `cb` with every engine: 0 (recorded, and pushed
 * to the connection wherever it is connected), SB_ENOTFOUND (no session has this id), or
 * another negative code (the engine failed; nothing was recorded). Returns 0, and then `cb`
 * runs exactly once, never inside this call (on a later loop turn); or returns SB_EINVAL
 * (bad arguments, cb NULL) or SB_ENOMEM, and `cb` never runs. sb_hub_free answers SB_EBUSY
 * until every such `cb` has run. */
SB_EXPORT int sb_hub_send_to_cb(sb_hub *hub, const char *conn_id, sb_method method,
                                const char *url, const void *body, size_t len,
                                sb_hub_done_cb cb, void *user);

/* Pushes a message to every connection of an identity (the group "user:<identity>", which
 * every connection the upgrade auth accepted as that identity joins): all of a user's tabs
 * and devices, on every node. Recorded and replayed like any group message. */
SB_EXPORT int sb_hub_send_to_user(sb_hub *hub, const char *identity, sb_method method,
                                  const char *url, const void *body, size_t len);

/* Pushes to every open connection of this node, unrecorded (no stream, no redelivery). */
SB_EXPORT int sb_hub_broadcast(sb_hub *hub, sb_method method, const char *url, const void *body,
                               size_t len);

/* Answers a REQUEST envelope (`id` from the request). */
SB_EXPORT int sb_hub_respond(sb_conn *conn, uint32_t id, uint16_t status, const void *body,
                             size_t len);

/* Registers a named application schema (for bodies, say); it is announced to every client in
 * HELLO. The hub keeps a reference to `schema` until sb_hub_free; up to 16 schemas. */
SB_EXPORT int sb_hub_add_schema(sb_hub *hub, const char *name, const sb_schema *schema);

/* The current position of a group's stream: *offset is its last offset (0 before the first
 * message), *epoch its epoch. A handler that returns a group's state returns this with it, and
 * the client listens from exactly there. SB_ENOTFOUND if the engine cannot answer at once
 * (an asynchronous engine; use the stream's pushes instead). */
SB_EXPORT int sb_hub_position(sb_hub *hub, const char *group, uint64_t *offset,
                              uint64_t *epoch);

/* A stored message of a group's stream (sb_hub_history). */
typedef struct sb_history_entry {
  uint64_t offset;
  uint64_t time_ms; /* when it was stored: ms since 1970, by the publishing node's clock */
  sb_method method;
  const char *url;  /* as published (not NUL-terminated) */
  size_t url_len;
  const void *body;
  size_t body_len;
} sb_history_entry;

typedef struct sb_history {
  uint64_t epoch;  /* the stream's epoch */
  uint64_t offset; /* the position to listen from: the last entry's offset, or the head when
                      there is none; a push of this epoch above it is new */
  uint64_t first;  /* the oldest offset still kept (head + 1 when none is) */
  uint64_t head;   /* the stream's last offset (0: nothing published yet) */
  const sb_history_entry *entries; /* in offset order */
  size_t n;
} sb_history;

/* status 0 and the history (borrowed for the call: copy what you keep), or a negative code
 * (the engine failed: Redis unreachable); on failure `h` is all zeros. */
typedef void (*sb_hub_history_cb)(int status, const sb_history *h, void *user);

/* A group's stored messages with its stream's position, for a handler that returns a group's
 * state: its client shows them and listens from `offset` (a push of the same epoch at or below
 * it is already shown). from 0: the newest `max`; from >= 1: those with offsets >= from, at
 * most `max` (paging). max is capped at the hub's history_max. Works with every engine (where
 * sb_hub_position cannot answer at once). Reading a group nobody published to makes its stream
 * (empty, a new epoch): an application that must not let clients make streams by reading
 * checks the name first. `cb` fires exactly once, later (never inside this call). Returns 0,
 * SB_EINVAL (bad group, max 0, cb NULL), SB_ENOMEM, or SB_EIO (the engine's link is down now;
 * then `cb` does not fire). */
SB_EXPORT int sb_hub_history(sb_hub *hub, const char *group, uint64_t from, size_t max,
                             sb_hub_history_cb cb, void *user);

/* ---------------------------------------------------------------------------------------- */
/* The redis engine: many nodes as one (work in progress, issue 10)                            */
/* ---------------------------------------------------------------------------------------- */

/*
 * An engine shared by every node that uses the same Redis: give it to sb_hub_options.engine and
 * the hub's groups, direct messages and sessions span the cluster (docs/ARCHITECTURE.md, "Redis
 * engine"). It talks to Redis over two connections on `loop` (commands, and pub/sub), which
 * reconnect by themselves; while Redis is unreachable, calls that need it fail at once. Create
 * it before the hub, free it after the hub (sb_redis_engine_free), then let the loop run once
 * more so that its handles close. Its handles do not keep the loop alive.
 */
typedef struct sb_redis_options {
  const char *url;             /* "redis://host:port" (an IP address or localhost) or
                                  "unix:/path"; default redis://127.0.0.1:6379 */
  const char *prefix;          /* key and channel prefix; "sb:" */
  const char *node_id;         /* this node's id (at most 63 bytes); NULL: random */
  const char *public_url;      /* the url clients reach this node at (the node registry) */
  unsigned heartbeat_ms;       /* how often the node renews its registration; 1 s */
  unsigned node_ttl_ms;        /* a node that has not renewed it this long is dead; 5 s */
  unsigned command_timeout_ms; /* a Redis command not answered this long fails (the link is
                                  made again); 2 s */
  unsigned stream_ttl_ms;      /* an idle stream's keys expire this long after their last use
                                  (publish, read, position); 24 h */
} sb_redis_options;

SB_EXPORT void sb_redis_options_init(sb_redis_options *opts);

/* Creates the engine and starts connecting (it is usable once connected; until then calls
 * that need Redis fail). SB_EINVAL with a reason in err for a bad url or node id. Like
 * sb_server_new, it sets a default SIGPIPE to be ignored (a Redis that goes away must not
 * kill the process). */
SB_EXPORT int sb_redis_engine_new(sb_engine **out, struct uv_loop_s *loop,
                                  const sb_redis_options *opts, char *err, size_t errlen);
SB_EXPORT void sb_redis_engine_free(sb_engine *engine);
/* This node's id (borrowed). */
SB_EXPORT const char *sb_redis_engine_node_id(const sb_engine *engine);
/* 1 while both Redis links are up. */
SB_EXPORT int sb_redis_engine_up(const sb_engine *engine);

/* The state of a hub's engine: `engine` is "memory" or "redis"; `up` says that everything it
 * needs works (the memory engine always); for redis, `redis_commands` and `redis_pubsub` say
 * whether each link is up (-1 for the memory engine), and `error` what failed last ("" when
 * nothing). Strings are borrowed until the next call into the hub. For a health endpoint:
 * a node whose engine is down still serves what is local, and reports 503 here. */
typedef struct sb_health {
  const char *engine;
  int up;
  int redis_commands, redis_pubsub;
  const char *error;
} sb_health;
SB_EXPORT void sb_hub_health(sb_hub *hub, sb_health *out);

/* The live nodes of the cluster, for a client's discovery url (GET /nodes): each node's id and
 * the url it advertises (sb_redis_options.public_url). With the memory engine, this node alone
 * (id "local", url ""). `cb` fires exactly once, later (never inside this call), with status 0
 * and the list (borrowed for the call), or a negative code (Redis unreachable). Returns 0,
 * SB_EINVAL, SB_ENOMEM or SB_EIO (then `cb` does not fire). */
typedef struct sb_node {
  const char *id;
  const char *url;
} sb_node;
typedef void (*sb_hub_nodes_cb)(int status, const sb_node *nodes, size_t n, void *user);
SB_EXPORT int sb_hub_nodes(sb_hub *hub, sb_hub_nodes_cb cb, void *user);

/* ---------------------------------------------------------------------------------------- */
/* REST: routes with parameters, Express-style middleware, responses now or later             */
/* ---------------------------------------------------------------------------------------- */

/*
 * An app routes the REQUEST and SEND envelopes of a hub's connections by method and path, and
 * the plain HTTP/1.1 requests that reach its server (anything that is not a WebSocket upgrade:
 * curl, fetch, a form), through the same middleware and routes:
 *
 *     sb_app_get(app, "/rooms/:roomId", get_room, NULL);
 *     static void get_room(sb_req *req, void *user) {
 *       const char *id = sb_req_param(req, "roomId");
 *       sb_respond(req, 200, body, len);
 *     }
 *
 * Middleware runs first, in the order it was added, for the paths under its prefix; each one
 * calls sb_next(req) (at once or later) to go on, answers with sb_respond() to stop the chain,
 * or calls sb_fail() to hand the request to the error handler. Then the most specific route
 * for the path runs (a literal segment over a ":param" over a "*" tail); a path no route
 * matches fails with 404, a method no route of the path has with 405.
 *
 * A request is answered exactly once, with sb_respond() or sb_fail(); until then its handle
 * stays valid, also after its connection closed (then sb_respond() returns SB_ECLOSED and
 * frees it). A SEND (one-way) is handled the same way; its response is not sent.
 *
 * Over plain HTTP the same handler answers with the same status and body. A HEAD request runs
 * the GET route and its response goes without the body; a method other than GET, HEAD, POST,
 * PUT, PATCH and DELETE is answered 501 through the error handler. Keep-alive follows HTTP/1.1
 * (and Connection); pipelined requests are handled one after the other, so a handler never
 * sees the next request of a connection before it answered the last one. Body limit: the
 * server option max_body_bytes (413). A client that closes its connection (or only its
 * sending half) while a request is unanswered is gone: sb_respond() returns SB_ECLOSED.
 */
typedef struct sb_app sb_app;
typedef struct sb_req sb_req;

typedef void (*sb_handler_cb)(sb_req *req, void *user);
/* The error handler: answer `req` (sb_respond) with a status and a body that shows no
 * internal detail. `message` is what sb_fail was given (or the router's reason). */
typedef void (*sb_error_cb)(sb_req *req, int status, const char *message, void *user);

/* Creates an app on `hub`; from then on the hub's REQUEST and SEND envelopes go to the app
 * (the hub options' on_message no longer sees them). One app per hub. */
SB_EXPORT int sb_app_new(sb_app **out, sb_hub *hub);

/* Frees the app. SB_EBUSY while requests are unanswered. */
SB_EXPORT int sb_app_free(sb_app *app);

/* Adds a route. `method`: "GET", "POST", "PUT", "PATCH", "DELETE", or "*" for any. `pattern`:
 * '/'-separated segments: literals, ":name" parameters, and a last "*" or "*name" tail.
 * SB_EINVAL for a malformed pattern or a method/pattern pair that is already routed. */
SB_EXPORT int sb_app_route(sb_app *app, const char *method, const char *pattern,
                           sb_handler_cb cb, void *user);
SB_EXPORT int sb_app_get(sb_app *app, const char *pattern, sb_handler_cb cb, void *user);
SB_EXPORT int sb_app_post(sb_app *app, const char *pattern, sb_handler_cb cb, void *user);
SB_EXPORT int sb_app_put(sb_app *app, const char *pattern, sb_handler_cb cb, void *user);
SB_EXPORT int sb_app_patch(sb_app *app, const char *pattern, sb_handler_cb cb, void *user);
SB_EXPORT int sb_app_delete(sb_app *app, const char *pattern, sb_handler_cb cb, void *user);

/* Routers to mount under a prefix, like Express's express.Router(): build a group of routes
 * on its own, then mount it (once or under several prefixes):
 *
 *     sb_routes *v1;
 *     sb_routes_new(&v1, app);
 *     sb_routes_get(v1, "/rooms/:roomId", get_room, NULL);
 *     sb_app_mount(app, "/api/v1", v1);          // GET /api/v1/rooms/7
 *
 * A routes object belongs to its app and is freed with it. Its routes count for 404/405 and
 * specificity as if added to the app with the prefix in front. `prefix`: literal segments
 * ("/api/v1"), no parameters. Routes may be added before or after mounting. */
typedef struct sb_routes sb_routes;
SB_EXPORT int sb_routes_new(sb_routes **out, sb_app *app);
SB_EXPORT int sb_routes_route(sb_routes *routes, const char *method, const char *pattern,
                              sb_handler_cb cb, void *user);
SB_EXPORT int sb_routes_get(sb_routes *routes, const char *pattern, sb_handler_cb cb, void *user);
SB_EXPORT int sb_routes_post(sb_routes *routes, const char *pattern, sb_handler_cb cb, void *user);
SB_EXPORT int sb_routes_put(sb_routes *routes, const char *pattern, sb_handler_cb cb, void *user);
SB_EXPORT int sb_routes_patch(sb_routes *routes, const char *pattern, sb_handler_cb cb,
                              void *user);
SB_EXPORT int sb_routes_delete(sb_routes *routes, const char *pattern, sb_handler_cb cb,
                               void *user);
/* Mounts `routes` under `prefix` in the app, or in another routes object (nesting).
 * SB_EINVAL for a prefix with parameters, routes of another app, or a routes object mounted
 * into itself. */
SB_EXPORT int sb_app_mount(sb_app *app, const char *prefix, sb_routes *routes);
SB_EXPORT int sb_routes_mount(sb_routes *parent, const char *prefix, sb_routes *child);

/* Adds middleware for the paths under `prefix` (whole segments: "/admin" covers "/admin" and
 * "/admin/x", not "/administrator"); NULL or "/" covers every path. At most 32. */
SB_EXPORT int sb_app_use(sb_app *app, const char *prefix, sb_handler_cb cb, void *user);

/* Serves the files under `folder` (a directory, opened now) for GET and HEAD requests over
 * plain HTTP under `prefix` ("/static" serves folder/app.js as /static/app.js; NULL or "/"
 * serves from the root). It is middleware, in the order added: a missing file goes on to the
 * routes (and so to 404); a path with "." or ".." segments (also percent-encoded), an encoded
 * '/', a '\', an empty segment ("//"), or a symbolic link anywhere on the way is refused (403;
 * 400 for a malformed escape or a control character); files whose name starts with '.' are
 * not served. A directory serves its index.html (without the trailing '/', a 301 adds it).
 * Content-Type by extension (html, js, mjs, css, json, svg, png, ico, txt, wasm, map; else
 * application/octet-stream), a weak ETag with 304 for If-None-Match, Last-Modified,
 * Cache-Control: no-cache. Files are read whole, synchronously, up to 16 MiB (500 past it):
 * meant for a demo page and a client script. Over WebSocket it does nothing (the routes
 * answer). SB_EIO if the folder cannot be opened, SB_EINVAL for a bad prefix. */
SB_EXPORT int sb_app_static(sb_app *app, const char *prefix, const char *folder);

/* Replaces the default error handler (which answers the status with
 * {"error":"<reason phrase>"} and, for 405, the allowed methods). */
SB_EXPORT void sb_app_on_error(sb_app *app, sb_error_cb cb, void *user);

/* Goes on to the next middleware, or to the route. After it returns the request may already
 * be answered and freed: do not touch `req` after calling it. */
SB_EXPORT void sb_next(sb_req *req);

/* Answers the request and frees it. SB_ECLOSED (and freed all the same) if its connection
 * closed meanwhile; 0 otherwise (for a SEND nothing is sent). Over plain HTTP the response
 * carries the status with its reason phrase, Date, the headers set with sb_respond_header(),
 * Content-Type (unless set: application/json for a body that looks like a JSON object or
 * array, text/plain; charset=utf-8 for UTF-8 text, else application/octet-stream),
 * Content-Length (not for 204 and 304, which never carry a body), Allow for a 405, and
 * Connection when the connection closes after it. A status outside 200..599 is sent as 500
 * over HTTP. */
SB_EXPORT int sb_respond(sb_req *req, uint16_t status, const void *body, size_t len);

/* Adds a header to the response of a plain HTTP request (call before sb_respond; several
 * calls with one name send several lines, as Set-Cookie needs). The name must be a token and
 * the value free of control characters (no CR or LF), else SB_EINVAL; the library's own
 * framing headers (Content-Length, Transfer-Encoding, Connection, Keep-Alive, Upgrade, Date,
 * Trailer) are SB_EINVAL too. Both are copied; 8 KiB in all (SB_ENOMEM past it). Over
 * WebSocket a response has no headers: the call checks its arguments and returns 0. */
SB_EXPORT int sb_respond_header(sb_req *req, const char *name, const char *value);

/* Hands the request to the error handler with `status` (4xx/5xx) and a message for it. */
SB_EXPORT void sb_fail(sb_req *req, uint16_t status, const char *message);

/* The request. Strings are NUL-terminated and valid until the request is answered. */
SB_EXPORT sb_method sb_req_method(const sb_req *req);
SB_EXPORT const char *sb_req_path(const sb_req *req);  /* without the query string */
SB_EXPORT const char *sb_req_param(const sb_req *req, const char *name); /* NULL if none */
SB_EXPORT const char *sb_req_query(const sb_req *req, const char *name); /* decoded, or NULL */
SB_EXPORT const void *sb_req_body(const sb_req *req, size_t *len);
SB_EXPORT int sb_req_one_way(const sb_req *req); /* a SEND: no response goes out */
/* The WebSocket connection: NULL once it closed, and NULL for a plain HTTP request. */
SB_EXPORT sb_conn *sb_req_conn(const sb_req *req);
SB_EXPORT int sb_req_is_http(const sb_req *req); /* 1: a plain HTTP request, 0: an envelope */
/* A request header of a plain HTTP request (first of that name, case-insensitive, without
 * surrounding blanks), or NULL; always NULL for a request over WebSocket. */
SB_EXPORT const char *sb_req_header(const sb_req *req, const char *name);
/* Who sent it: the connection's identity from the upgrade auth ("" when anonymous, and for a
 * plain HTTP request, which middleware authenticates with its own headers), valid until the
 * request is answered; and its claims (JSON text or NULL), valid while the connection is open
 * and its credentials are not refreshed. */
SB_EXPORT const char *sb_req_identity(const sb_req *req);
SB_EXPORT const char *sb_req_claims(const sb_req *req);

/* Per-request values that middleware hands on to later middleware and the handler. The key
 * is copied (at most 31 bytes); the value is the caller's. At most 8 keys. */
SB_EXPORT int sb_req_set(sb_req *req, const char *key, void *value);
SB_EXPORT void *sb_req_get(const sb_req *req, const char *key);

#ifdef __cplusplus
}
#endif
#endif /* SWITCHBOARD_H */
