/*
 * http.h — HTTP/1.1 requests: the one request parser of the server. No I/O: bytes in, one
 * request out, whatever the split of the stream.
 *
 * It is a leaf like the codec: the ws layer reads the upgrade request with it (handshake.c
 * validates the RFC 6455 headers of an upgrade on top of it), and a connection whose request
 * is not an upgrade goes on reading that request's body, and the requests after it, with the
 * same parser state (plain HTTP for the rest layer).
 *
 * http-parser does the parsing; this file
 *   - runs its own strict check over every byte before http-parser sees it (see http.c): the
 *     system's http-parser is built lenient, and on malformed input its result can depend on
 *     how the stream was split. The check accepts only: a request line of a method token, one
 *     space, a target of visible ASCII, one space and exactly HTTP/1.0 or HTTP/1.1; header
 *     names that are tokens and values without control characters other than HTAB; line ends
 *     CRLF (or a bare LF, RFC 7230 §3.5, in the head); chunk-size lines of hex digits and an
 *     optional ";extension" of printable characters, ended by CRLF; CRLF after chunk data.
 *     The first byte that fails it decides the error, so the verdict does not depend on the
 *     split;
 *   - copies the request target and the headers (bounded by max_head: 431 past it);
 *   - collects the body from Content-Length or chunked framing (bounded by max_body: 413,
 *     refused from the Content-Length before any body byte when it is announced);
 *   - stops after the head (SB_HTTP_HEAD, so that the caller can look at the headers before
 *     the body comes: an upgrade, Expect: 100-continue) and at the end of each message
 *     (SB_HTTP_DONE), so that pipelined requests are parsed one at a time: after a request is
 *     handled, sb_http_next() starts the next one with the bytes that followed.
 */
#ifndef SB_HTTP_HTTP_H
#define SB_HTTP_HTTP_H

#include <stddef.h>
#include <stdint.h>
#include <time.h>

#include <http_parser.h>

typedef enum {
  SB_HTTP_NEED_MORE = 0,
  SB_HTTP_DONE = 1,  /* a whole request is ready; *consumed ends right after it */
  SB_HTTP_ERROR = 2, /* answer with `status` (400, 413, 431, 501, 505; 500: out of memory)
                        and close */
  SB_HTTP_HEAD = 3   /* the request line and headers are complete; *consumed ends right after
                        the blank line. Returned once per request, before any body byte is
                        parsed. `done` is already set when there is no body (or for an
                        upgrade, whose body is never read). */
} sb_http_result;

#define SB_HTTP_MAX_HEADERS 128

/* The strict byte check's state (http.c). */
typedef struct sb_http_strict {
  uint8_t state;
  uint8_t pos;    /* in the version, or digits of a chunk size */
  uint64_t left;  /* body or chunk bytes still to skip */
  uint64_t total; /* chunk sizes announced so far */
  size_t count;   /* bytes of the current chunk-size line, or of the trailer section */
} sb_http_strict;

typedef struct sb_http_request {
  http_parser parser;
  sb_http_strict strict;
  size_t max_head, max_body;
  size_t head_seen;      /* bytes of the request line and headers so far */
  char *buf;             /* url and headers, NUL-terminated pieces */
  size_t buf_len, buf_cap;
  uint32_t headers[SB_HTTP_MAX_HEADERS][2]; /* name, value offsets in buf */
  unsigned nheaders;
  int last;              /* 0 url, 1 field, 2 value */
  uint8_t *body;
  size_t body_len, body_cap;
  uint8_t head_done, done;
  uint8_t upgrade;       /* the request asks for a WebSocket upgrade (Upgrade: websocket) */
  int status;            /* on SB_HTTP_ERROR */
  const char *error;
  void *(*realloc_fn)(void *, size_t, void *);
  void *alloc_ctx;
} sb_http_request;

/* Prepares `r`. realloc_fn(NULL, n, ctx) allocates; realloc_fn(p, 0, ctx) frees. */
void sb_http_init(sb_http_request *r, size_t max_head, size_t max_body,
                  void *(*realloc_fn)(void *, size_t, void *), void *ctx);
/* Ready for the next request on the same connection (buffers and limits are kept). */
void sb_http_next(sb_http_request *r);
/* Releases the buffers (the request can be fed again after sb_http_next). */
void sb_http_free(sb_http_request *r);

/* Feeds data[0..len); *consumed is how much of it belongs to this request (so far). Once the
 * result is SB_HTTP_DONE or SB_HTTP_ERROR, feeding again returns it again and consumes
 * nothing. */
sb_http_result sb_http_feed(sb_http_request *r, const uint8_t *data, size_t len,
                            size_t *consumed);

const char *sb_http_method(const sb_http_request *r); /* "GET", ... */
const char *sb_http_url(const sb_http_request *r);
const char *sb_http_header(const sb_http_request *r, const char *name); /* first, or NULL */
/* `t` as an HTTP date (RFC 9110 §5.6.7, "Sun, 06 Nov 1994 08:49:37 GMT"); 30 bytes suffice. */
void sb_http_date(time_t t, char *out, size_t cap);

/* Response header fields an application adds (sb_respond_header, sb_upgrade_reject): 1 if
 * name[0..name_len) is a token and the NUL-terminated value has no control character but
 * HTAB (so no CR or LF: no response splitting). */
int sb_http_field_ok(const char *name, size_t name_len, const char *value);
/* 1 for the fields whose framing the library writes itself (Content-Length, Transfer-Encoding,
 * Connection, Keep-Alive, Upgrade, Date, Trailer; any case): an application may not set them. */
int sb_http_field_reserved(const char *name, size_t name_len);

/* 1 once a byte of the next request line arrived (empty lines before it do not count). */
int sb_http_started(const sb_http_request *r);
/* Whether the connection stays open after the response (HTTP/1.1 default, Connection). */
int sb_http_keep_alive(const sb_http_request *r);

/* The next element of a comma-separated list (RFC 9110 §5.6.1) from *p on, without the blanks
 * around it: its start (and *len), or NULL at the end; *p moves past it. Empty elements are
 * skipped. */
const char *sb_list_next(const char **p, size_t *len);
/* 1 if the comma-separated token list `list` contains `token` (case-insensitive). */
int sb_token_list_has(const char *list, const char *token);
/* 1 if any header `name` is a token list holding `token` (Connection may come in several
 * lines). */
int sb_http_header_has(const sb_http_request *r, const char *name, const char *token);

/* The reason phrase of a status code (RFC 9110 §15), or NULL for one it does not know. */
const char *sb_http_reason(int status);

#endif
