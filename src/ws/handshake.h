/*
 * handshake.h — the HTTP/1.1 upgrade request (RFC 6455 §4.2.1). No I/O: bytes in, a decision out.
 *
 * Bytes are fed to http-parser as they arrive; the request line and headers are copied into
 * one buffer bounded by `max_header_bytes` (431 past it). Once the headers are complete the
 * request is validated and the answer is computed: 101 with the Sec-WebSocket-Accept value,
 * 400 (malformed), 426 (unsupported version), or "not an upgrade" (a plain HTTP request that a
 * higher layer answers, 404 for now).
 */
#ifndef SB_WS_HANDSHAKE_H
#define SB_WS_HANDSHAKE_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

typedef enum {
  SB_HS_NEED_MORE = 0, /* headers not complete yet */
  SB_HS_UPGRADE = 1,   /* a valid WebSocket upgrade; accept[] is set */
  SB_HS_HTTP = 2,      /* a well-formed request that is not a WebSocket upgrade */
  SB_HS_REJECT = 3     /* answer with `status` (400, 426, 431) and close */
} sb_hs_result;

typedef struct sb_hs_header {
  uint32_t name;  /* offset of the NUL-terminated name in buf */
  uint32_t value; /* offset of the NUL-terminated value in buf */
} sb_hs_header;

#define SB_HS_MAX_HEADERS 128

typedef struct sb_handshake {
  http_parser parser;
  size_t max_bytes;     /* limit of request line + headers, raw bytes as received */
  size_t seen;          /* raw bytes consumed so far */
  char *buf;            /* url, then header names and values, NUL-terminated */
  size_t buf_len, buf_cap;
  uint32_t url;         /* offset of the URL (request target) */
  sb_hs_header headers[SB_HS_MAX_HEADERS];
  unsigned nheaders;
  int last_was_value;   /* http-parser callback bookkeeping */
  int done;
  int status;           /* the HTTP status to answer with on SB_HS_REJECT */
  const char *error;    /* static text explaining a rejection */
  char accept[29];      /* Sec-WebSocket-Accept, NUL-terminated, on SB_HS_UPGRADE */
  void *upgrade;        /* the sb_upgrade waiting for the application's verdict, or NULL */
  void *(*realloc_fn)(void *, size_t, void *);
  void *alloc_ctx;
} sb_handshake;

/* Prepares `h`. realloc_fn(NULL, n, ctx) allocates; realloc_fn(p, 0, ctx) frees. */
void sb_handshake_init(sb_handshake *h, size_t max_bytes,
                       void *(*realloc_fn)(void *, size_t, void *), void *ctx);

/* Releases the header buffer. */
void sb_handshake_free(sb_handshake *h);

/*
 * Feeds data[0..len). *consumed is set to the bytes that belong to the request; bytes past the
 * end of the headers (frames a client sent early) are left for the caller. Returns the result;
 * once it is not SB_HS_NEED_MORE the handshake is finished and must not be fed again.
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
 * out[0..max). Each is copied NUL-terminated into `scratch` (size `scratch_len`). Returns the
 * count (0 if none, or if they do not fit).
 */
size_t sb_handshake_subprotocols(const sb_handshake *h, const char **out, size_t max,
                                 char *scratch, size_t scratch_len);

/* 1 if the comma-separated token list `list` contains `token` (case-insensitive, §4.2.1). */
int sb_token_list_has(const char *list, const char *token);

/* Computes the Sec-WebSocket-Accept value for a key into out[29]. Returns 0, or -1 if the key
 * does not decode to exactly 16 bytes. */
int sb_ws_accept_key(const char *key, char out[29]);

#endif
