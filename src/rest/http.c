#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "rest/http.h"

static int grow(void **p, size_t *cap, size_t need, sb_http_request *r) {
  if (need <= *cap) return 0;
  size_t c = *cap ? *cap : 256;
  while (c < need) c *= 2;
  void *n = r->realloc_fn(*p, c, r->alloc_ctx);
  if (!n) return -1;
  *p = n;
  *cap = c;
  return 0;
}

static int put(sb_http_request *r, const char *at, size_t n, int terminate) {
  if (grow((void **)&r->buf, &r->buf_cap, r->buf_len + n + 1, r)) return -1;
  memcpy(r->buf + r->buf_len, at, n);
  r->buf_len += n;
  if (terminate) r->buf[r->buf_len++] = '\0';
  return 0;
}

static int fail(sb_http_request *r, int status, const char *why) {
  r->status = status;
  r->error = why;
  return -1;
}

static int on_url(http_parser *p, const char *at, size_t n) {
  return put(p->data, at, n, 0);
}

static int on_field(http_parser *p, const char *at, size_t n) {
  sb_http_request *r = p->data;
  if (r->last != 1) {
    if (r->nheaders == SB_HTTP_MAX_HEADERS) return fail(r, 431, "too many header fields");
    if (put(r, "", 0, 1)) return fail(r, 500, "out of memory");
    r->headers[r->nheaders][0] = (uint32_t)r->buf_len;
    r->headers[r->nheaders][1] = 0;
    r->nheaders++;
    r->last = 1;
  }
  return put(r, at, n, 0) ? fail(r, 500, "out of memory") : 0;
}

static int on_value(http_parser *p, const char *at, size_t n) {
  sb_http_request *r = p->data;
  if (r->last != 2) {
    if (put(r, "", 0, 1)) return fail(r, 500, "out of memory");
    r->headers[r->nheaders - 1][1] = (uint32_t)r->buf_len;
    r->last = 2;
  }
  return put(r, at, n, 0) ? fail(r, 500, "out of memory") : 0;
}

static int on_headers_complete(http_parser *p) {
  sb_http_request *r = p->data;
  if (put(r, "", 0, 1)) return fail(r, 500, "out of memory");
  for (unsigned i = 0; i < r->nheaders; i++) {
    if (r->headers[i][1] == 0) r->headers[i][1] = (uint32_t)(r->buf_len - 1);
    char *v = r->buf + r->headers[i][1];
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) v[--n] = '\0';
  }
  r->head_done = 1;
  /* HTTP/1.0 and 1.1 only: http-parser reads a request line without a version as HTTP/0.9
   * and ends the message at that line, which no client of ours sends and which makes what
   * follows parse differently depending on how the bytes were split. */
  if (p->http_major != 1) return fail(r, 505, "HTTP/1.x required");
  /* An announced body that is too big is refused before a byte of it is read. */
  if ((p->flags & F_CONTENTLENGTH) && p->content_length > r->max_body)
    return fail(r, 413, "request body too large");
  const char *te = sb_http_header(r, "Transfer-Encoding");
  if (te && strcasecmp(te, "chunked") != 0) return fail(r, 501, "unsupported transfer encoding");
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t n) {
  sb_http_request *r = p->data;
  if (r->body_len + n > r->max_body) return fail(r, 413, "request body too large");
  if (grow((void **)&r->body, &r->body_cap, r->body_len + n, r)) return fail(r, 500, "out of memory");
  memcpy(r->body + r->body_len, at, n);
  r->body_len += n;
  return 0;
}

static int on_message_complete(http_parser *p) {
  sb_http_request *r = p->data;
  r->done = 1;
  http_parser_pause(p, 1); /* one request at a time: pipelined bytes stay unparsed */
  return 0;
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_field,
    .on_header_value = on_value,
    .on_headers_complete = on_headers_complete,
    .on_body = on_body,
    .on_message_complete = on_message_complete,
};

void sb_http_init(sb_http_request *r, size_t max_head, size_t max_body,
                  void *(*realloc_fn)(void *, size_t, void *), void *ctx) {
  memset(r, 0, sizeof(*r));
  r->max_head = max_head;
  r->max_body = max_body;
  r->realloc_fn = realloc_fn;
  r->alloc_ctx = ctx;
  http_parser_init(&r->parser, HTTP_REQUEST);
  r->parser.data = r;
}

void sb_http_next(sb_http_request *r) {
  char *buf = r->buf;
  uint8_t *body = r->body;
  size_t bcap = r->buf_cap, ycap = r->body_cap;
  sb_http_init(r, r->max_head, r->max_body, r->realloc_fn, r->alloc_ctx);
  r->buf = buf;
  r->buf_cap = bcap;
  r->body = body;
  r->body_cap = ycap;
}

void sb_http_free(sb_http_request *r) {
  if (r->buf) r->realloc_fn(r->buf, 0, r->alloc_ctx);
  if (r->body) r->realloc_fn(r->body, 0, r->alloc_ctx);
  r->buf = NULL;
  r->body = NULL;
  r->buf_cap = r->body_cap = 0;
}

sb_http_result sb_http_feed(sb_http_request *r, const uint8_t *data, size_t len,
                            size_t *consumed) {
  *consumed = 0;
  if (r->done) return SB_HTTP_DONE;
  if (r->status) return SB_HTTP_ERROR;
  size_t n = len;
  /* Bound the head: do not give the parser more head bytes than allowed. */
  if (!r->head_done) {
    size_t room = r->max_head > r->head_seen ? r->max_head - r->head_seen : 0;
    if (n > room) n = room;
  }
  /* Never hand http-parser zero bytes: it takes that as end of stream. */
  if (n == 0) {
    if (!r->head_done && r->head_seen >= r->max_head) {
      fail(r, 431, "request headers too large");
      return SB_HTTP_ERROR;
    }
    return SB_HTTP_NEED_MORE;
  }
  size_t parsed = http_parser_execute(&r->parser, &settings, (const char *)data, n);
  enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
  if (r->done) {
    /* Paused in on_message_complete: the count includes the byte that completed the message
     * (checked at every split point by test_http), and what follows is the next request. */
    (void)e;
    *consumed = parsed;
    return SB_HTTP_DONE;
  }
  *consumed = parsed;
  if (!r->head_done) r->head_seen += parsed;
  if (r->status) return SB_HTTP_ERROR;
  if (e != HPE_OK) {
    if (e == HPE_HEADER_OVERFLOW) fail(r, 431, "request headers too large");
    else fail(r, 400, http_errno_description(e));
    return SB_HTTP_ERROR;
  }
  if (!r->head_done && r->head_seen >= r->max_head) {
    fail(r, 431, "request headers too large");
    return SB_HTTP_ERROR;
  }
  return SB_HTTP_NEED_MORE;
}

const char *sb_http_method(const sb_http_request *r) {
  return http_method_str((enum http_method)r->parser.method);
}

const char *sb_http_url(const sb_http_request *r) { return r->buf ? r->buf : ""; }

const char *sb_http_header(const sb_http_request *r, const char *name) {
  for (unsigned i = 0; i < r->nheaders; i++) {
    if (strcasecmp(r->buf + r->headers[i][0], name) == 0) return r->buf + r->headers[i][1];
  }
  return NULL;
}

int sb_http_keep_alive(const sb_http_request *r) {
  return http_should_keep_alive(&r->parser) != 0;
}
