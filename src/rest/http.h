/*
 * http.h — plain HTTP/1.1 requests for the rest layer (the same routes over curl as over a
 * WebSocket). No I/O: bytes in, one complete request out, any split of the stream.
 *
 * http-parser does the parsing; this file copies the request target and headers (bounded by
 * max_header_bytes, 431 past it), collects the body whether it comes with Content-Length or
 * chunked (bounded by max_body_bytes: 413, refused from the Content-Length before any body
 * byte when it is announced), and stops at the end of each message, so that pipelined
 * requests on a keep-alive connection are parsed one at a time: after a request is handled,
 * sb_http_next() starts the next one with the bytes that followed.
 */
#ifndef SB_REST_HTTP_H
#define SB_REST_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include <http_parser.h>

typedef enum {
  SB_HTTP_NEED_MORE = 0,
  SB_HTTP_DONE = 1, /* a whole request is ready; *consumed ends right after it */
  SB_HTTP_ERROR = 2 /* answer with status (400, 413, 431, 501) and close */
} sb_http_result;

#define SB_HTTP_MAX_HEADERS 100

typedef struct sb_http_request {
  http_parser parser;
  size_t max_head, max_body;
  size_t head_seen;      /* bytes of the request line and headers so far */
  char *buf;             /* url and headers, NUL-terminated pieces */
  size_t buf_len, buf_cap;
  uint32_t headers[SB_HTTP_MAX_HEADERS][2]; /* name, value offsets in buf */
  unsigned nheaders;
  int last;              /* 0 url, 1 field, 2 value */
  uint8_t *body;
  size_t body_len, body_cap;
  int done, head_done;
  int status;            /* on SB_HTTP_ERROR */
  const char *error;
  void *(*realloc_fn)(void *, size_t, void *);
  void *alloc_ctx;
} sb_http_request;

void sb_http_init(sb_http_request *r, size_t max_head, size_t max_body,
                  void *(*realloc_fn)(void *, size_t, void *), void *ctx);
/* Ready for the next request on the same connection (buffers are kept). */
void sb_http_next(sb_http_request *r);
void sb_http_free(sb_http_request *r);

/* Feeds data[0..len); *consumed is how much of it belongs to this request. */
sb_http_result sb_http_feed(sb_http_request *r, const uint8_t *data, size_t len,
                            size_t *consumed);

const char *sb_http_method(const sb_http_request *r); /* "GET", ... */
const char *sb_http_url(const sb_http_request *r);
const char *sb_http_header(const sb_http_request *r, const char *name); /* first, or NULL */
/* Whether the connection stays open after the response (HTTP/1.1 default, Connection). */
int sb_http_keep_alive(const sb_http_request *r);

#endif
