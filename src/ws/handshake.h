/*
 * handshake.h — the HTTP/1.1 upgrade request (RFC 6455 §4.2.1). No I/O: bytes in, a decision out.
 *
 * The request is read by the server's one HTTP parser (src/http/http.h): request line and
 * headers copied into one buffer bounded by `max_bytes` (431 past it), the strict checks of
 * http.h applied. Once the head is complete the request is validated and the answer is
 * computed: 101 with the Sec-WebSocket-Accept value, 400 (malformed), 426 (unsupported
 * version), 505 (not HTTP/1.x), 501 (an unsupported transfer coding), or "not an upgrade": a
 * plain HTTP request, whose body (if any) and the requests after it are read with
 * sb_http_feed(&h->req, ...) from where the handshake stopped.
 */
#ifndef SB_WS_HANDSHAKE_H
#define SB_WS_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include "http/http.h"

typedef enum {
  SB_HS_NEED_MORE = 0, /* headers not complete yet */
  SB_HS_UPGRADE = 1,   /* a valid WebSocket upgrade; accept[] is set */
  SB_HS_HTTP = 2,      /* a well-formed request that is not a WebSocket upgrade */
  SB_HS_REJECT = 3     /* answer with `status` (400, 426, 431, 501, 505; 500 out of memory)
                          and close */
} sb_hs_result;

#define SB_HS_MAX_HEADERS SB_HTTP_MAX_HEADERS

typedef struct sb_handshake {
  sb_http_request req;  /* the request, as the HTTP parser reads it */
  sb_hs_result result;  /* the decision, once taken */
  int status;           /* the HTTP status to answer with on SB_HS_REJECT */
  const char *error;    /* static text explaining a rejection */
  char accept[29];      /* Sec-WebSocket-Accept, NUL-terminated, on SB_HS_UPGRADE */
  void *upgrade;        /* the sb_upgrade waiting for the application's verdict, or NULL */
  struct sb_handshake *pool_next; /* the server's pool of free handshake states */
} sb_handshake;

/* Prepares `h`. realloc_fn(NULL, n, ctx) allocates; realloc_fn(p, 0, ctx) frees. */
void sb_handshake_init(sb_handshake *h, size_t max_bytes,
                       void *(*realloc_fn)(void *, size_t, void *), void *ctx);

/* Releases the buffers. */
void sb_handshake_free(sb_handshake *h);

/* Ready for the next request on the same connection (buffers and limits are kept). */
void sb_handshake_next(sb_handshake *h);

/*
 * Feeds data[0..len). *consumed is set to the bytes that belong to the request's head; bytes
 * past the end of the headers (frames a client sent early, or a plain request's body) are left
 * for the caller. Returns the result; once it is not SB_HS_NEED_MORE the decision is taken,
 * and feeding again returns it again and consumes nothing.
 */
sb_hs_result sb_handshake_feed(sb_handshake *h, const uint8_t *data, size_t len,
                               size_t *consumed);

/* The first value of header `name` (case-insensitive), or NULL. */
const char *sb_handshake_header(const sb_handshake *h, const char *name);

/* The request target, e.g. "/chat?room=1". */
const char *sb_handshake_url(const sb_handshake *h);

/* HTTP method as http-parser numbers it (HTTP_GET, ...). */
int sb_handshake_method(const sb_handshake *h);

/*
 * Collects the subprotocols offered in every Sec-WebSocket-Protocol header, in order, into
 * out[0..max). Each is copied NUL-terminated into `scratch` (size `scratch_len`). Entries
 * "bearer.<token>" carry a browser's credential, not a protocol: they are skipped, and
 * *bearer (may be NULL) says whether one came. Returns the count (0 if none, or if they do
 * not fit: sb_handshake_subprotocols_size says what fits all).
 */
size_t sb_handshake_subprotocols(const sb_handshake *h, const char **out, size_t max,
                                 char *scratch, size_t scratch_len, int *bearer);

/* What sb_handshake_subprotocols needs to collect every offered subprotocol: returns their
 * count (bearer entries excluded) and sets *bytes to the scratch they take, NULs included.
 * Nothing bounds either but the request's header limit. */
size_t sb_handshake_subprotocols_size(const sb_handshake *h, size_t *bytes);

/*
 * Whether an Origin header value and a Host header value name the same origin: Origin must be
 * "http://" or "https://" then host[:port] (RFC 6454 §7, as browsers send it), Host host[:port]
 * (RFC 9110 §7.2). The hosts are compared ASCII case-insensitively as written (an IPv6 literal
 * with its brackets), the ports as numbers, a missing port being the default of the Origin's
 * scheme (80 for http, 443 for https). 1 or 0; 0 for NULL, "null", other schemes, a path or
 * userinfo in the Origin, or anything malformed.
 */
int sb_handshake_same_origin(const char *origin, const char *host);

/* Computes the Sec-WebSocket-Accept value for a key into out[29]. Returns 0, or -1 if the key
 * does not decode to exactly 16 bytes. */
int sb_ws_accept_key(const char *key, char out[29]);

#endif
