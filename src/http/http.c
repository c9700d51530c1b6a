/*
 * http.c — HTTP/1.1 requests: http-parser behind a strict byte check of our own.
 *
 * Why the check. Debian builds http-parser with HTTP_PARSER_STRICT off, and then it accepts,
 * among other things, a CR followed by any byte as a line end, any characters in place of
 * "TTP" in the version, and any bytes after a chunk's data where CRLF belongs. On such input
 * it can take a different path depending on where a read ended: the same bytes split in two
 * places gave two different requests (found by fuzz_http). The check below is a small state
 * machine over the message framing that accepts only well-formed requests (the rules are in
 * http.h). It runs over the bytes before http-parser does, and http-parser is only given the
 * bytes the check accepted, so:
 *   - on input the check accepts, http-parser works on well-formed HTTP, where its result
 *     does not depend on the split (fuzz_http checks this for any bytes);
 *   - the first bad byte decides the verdict: either http-parser failed on an earlier byte, or
 *     the check fails on this one. Both are positions in the stream, not in a read.
 * The check also knows where the head and the message end, and http-parser must agree
 * (a disagreement is a 400, never a different request).
 *
 * The check follows the body framing that http-parser settled from the headers (chunked, or a
 * Content-Length, or none), so that it can check chunk-size lines and skip data in bulk.
 */
#include <limits.h>
#include <stdio.h>
#include <time.h>
#include <string.h>
#include <strings.h>

#include "common/common.h"
#include "http/http.h"

/* ---- the strict check --------------------------------------------------------------------- */

enum {
  S_LINE0 = 0,     /* before the request line (empty lines are skipped, RFC 7230 §3.5) */
  S_LINE0_CR,
  S_METHOD,
  S_TARGET0,
  S_TARGET,
  S_VERSION,       /* pos: index in "HTTP/1.x" */
  S_RL_CR,
  S_FIELD0,        /* start of a header (or trailer) line, or the blank line */
  S_FIELD,
  S_VALUE,
  S_VALUE_CR,
  S_END_CR,
  S_HEAD_DONE,     /* the head is complete; the body framing is not set yet */
  S_BODY,          /* Content-Length: `left` bytes */
  S_CHUNK0,
  S_CHUNK,
  S_CHUNK_EXT,
  S_CHUNK_CR,
  S_CHUNK_DATA,
  S_CHUNK_DATA_CR,
  S_CHUNK_DATA_LF,
  S_TRAILER_FLAG = 0x40, /* or'ed into the header-line states while reading trailers */
  S_DONE = 0x3f
};

enum { SCAN_MORE, SCAN_HEAD, SCAN_END, SCAN_ERROR };

#define SB_HTTP_MAX_CHUNK_LINE 1024

/* tchar (RFC 9110 §5.6.2): the characters of a method or a header name. */
static int is_tchar(uint8_t c) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9')) return 1;
  return c != 0 && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static int hex_value(uint8_t c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/*
 * Checks d[0..n) from state s. Returns SCAN_MORE when all n bytes are good, SCAN_HEAD or
 * SCAN_END when the head or the message ends after *ok bytes (the check stops there), or
 * SCAN_ERROR when d[*ok] is the first bad byte (*status and *why say why).
 */
static int scan(sb_http_strict *s, const uint8_t *d, size_t n, size_t max_trailer,
                size_t max_body, size_t *ok, int *status, const char **why) {
  size_t i = 0;
  *status = 400;
#define BAD(text)        \
  do {                   \
    *why = text;         \
    *ok = i;             \
    return SCAN_ERROR;   \
  } while (0)
  while (i < n) {
    uint8_t c = d[i];
    unsigned trailer = s->state & S_TRAILER_FLAG;
    if (trailer && ++s->count > max_trailer) {
      *status = 431;
      BAD("trailer section too large");
    }
    switch (s->state & ~S_TRAILER_FLAG) {
      case S_LINE0:
        if (c == '\r') s->state = S_LINE0_CR;
        else if (is_tchar(c)) s->state = S_METHOD;
        else if (c != '\n') BAD("malformed request line");
        break;
      case S_LINE0_CR:
        if (c != '\n') BAD("CR without LF");
        s->state = S_LINE0;
        break;
      case S_METHOD:
        if (c == ' ') s->state = S_TARGET0;
        else if (!is_tchar(c)) BAD("malformed method");
        break;
      case S_TARGET0:
        if (c < 0x21 || c > 0x7e) BAD("malformed request target");
        s->state = S_TARGET;
        break;
      case S_TARGET:
        if (c == ' ') {
          s->state = S_VERSION;
          s->pos = 0;
        } else if (c == '\r' || c == '\n') {
          *status = 505; /* no version: HTTP/0.9 */
          BAD("HTTP/1.0 or HTTP/1.1 required");
        } else if (c < 0x21 || c > 0x7e) {
          BAD("malformed request target");
        }
        break;
      case S_VERSION: {
        static const char v[] = "HTTP/1.";
        if (s->pos < 7) {
          if (c != (uint8_t)v[s->pos]) {
            if (s->pos == 5 && c >= '0' && c <= '9') *status = 505;
            BAD(*status == 505 ? "HTTP/1.0 or HTTP/1.1 required" : "malformed HTTP version");
          }
          s->pos++;
        } else if (s->pos == 7) {
          if (c != '0' && c != '1') {
            if (c >= '2' && c <= '9') *status = 505;
            BAD(*status == 505 ? "HTTP/1.0 or HTTP/1.1 required" : "malformed HTTP version");
          }
          s->pos++;
        } else if (c == '\r') {
          s->state = S_RL_CR;
        } else if (c == '\n') {
          s->state = S_FIELD0;
        } else {
          BAD("malformed HTTP version");
        }
        break;
      }
      case S_RL_CR:
        if (c != '\n') BAD("CR without LF");
        s->state = S_FIELD0;
        break;
      case S_FIELD0:
        if (c == '\r') s->state = (uint8_t)(S_END_CR | trailer);
        else if (c == '\n') goto section_end;
        else if (is_tchar(c)) s->state = (uint8_t)(S_FIELD | trailer);
        else if (c == ' ' || c == '\t') BAD("obsolete line folding");
        else BAD("malformed header name");
        break;
      case S_FIELD:
        if (c == ':') s->state = (uint8_t)(S_VALUE | trailer);
        else if (!is_tchar(c)) BAD("malformed header name");
        break;
      case S_VALUE:
        if (c == '\r') s->state = (uint8_t)(S_VALUE_CR | trailer);
        else if (c == '\n') s->state = (uint8_t)(S_FIELD0 | trailer);
        else if ((c < 0x20 && c != '\t') || c == 0x7f) BAD("control character in a header value");
        break;
      case S_VALUE_CR:
        if (c != '\n') BAD("CR without LF");
        s->state = (uint8_t)(S_FIELD0 | trailer);
        break;
      case S_END_CR:
        if (c != '\n') BAD("CR without LF");
      section_end:
        i++;
        *ok = i;
        if (trailer) {
          s->state = S_DONE;
          return SCAN_END;
        }
        s->state = S_HEAD_DONE;
        return SCAN_HEAD;
      case S_BODY: {
        size_t take = n - i < s->left ? n - i : (size_t)s->left;
        s->left -= take;
        i += take;
        if (s->left == 0) {
          s->state = S_DONE;
          *ok = i;
          return SCAN_END;
        }
        continue;
      }
      case S_CHUNK0:
        if (hex_value(c) < 0) BAD("malformed chunk size");
        s->left = (uint64_t)hex_value(c);
        s->pos = 1;
        s->count = 1;
        s->state = S_CHUNK;
        break;
      case S_CHUNK:
        if (++s->count > SB_HTTP_MAX_CHUNK_LINE) BAD("chunk-size line too long");
        if (hex_value(c) >= 0) {
          if (s->pos == 16) BAD("chunk size too large");
          s->left = s->left * 16 + (uint64_t)hex_value(c);
          s->pos++;
        } else if (c == ';') {
          s->state = S_CHUNK_EXT;
        } else if (c == '\r') {
          s->state = S_CHUNK_CR;
        } else {
          BAD("malformed chunk size");
        }
        break;
      case S_CHUNK_EXT:
        if (++s->count > SB_HTTP_MAX_CHUNK_LINE) BAD("chunk-size line too long");
        if (c == '\r') s->state = S_CHUNK_CR;
        else if (c < 0x20 || c > 0x7e) BAD("malformed chunk extension");
        break;
      case S_CHUNK_CR:
        if (c != '\n') BAD("CR without LF");
        /* A chunk that cannot fit is refused from its size line, before its data. */
        if (s->left > max_body || s->total + s->left > max_body) {
          *status = 413;
          BAD("request body too large");
        }
        s->total += s->left;
        if (s->left == 0) {
          s->state = S_FIELD0 | S_TRAILER_FLAG; /* the last chunk: trailers, then the end */
          s->count = 0;
        } else {
          s->state = S_CHUNK_DATA;
        }
        break;
      case S_CHUNK_DATA: {
        size_t take = n - i < s->left ? n - i : (size_t)s->left;
        s->left -= take;
        i += take;
        if (s->left == 0) s->state = S_CHUNK_DATA_CR;
        continue;
      }
      case S_CHUNK_DATA_CR:
        if (c != '\r') BAD("chunk data not followed by CRLF");
        s->state = S_CHUNK_DATA_LF;
        break;
      case S_CHUNK_DATA_LF:
        if (c != '\n') BAD("chunk data not followed by CRLF");
        s->state = S_CHUNK0;
        break;
      default: /* S_HEAD_DONE, S_DONE: the caller stops before feeding these */
        BAD("internal: unexpected state");
    }
    i++;
  }
#undef BAD
  *ok = n;
  return SCAN_MORE;
}

/* ---- http-parser glue ----------------------------------------------------------------- */

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
  sb_http_request *r = p->data;
  return put(r, at, n, 0) ? fail(r, 500, "out of memory") : 0;
}

static int on_field(http_parser *p, const char *at, size_t n) {
  sb_http_request *r = p->data;
  if (r->head_done) return 0; /* a trailer field: checked, not kept */
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
  if (r->head_done) return 0;
  if (r->last != 2) {
    if (put(r, "", 0, 1)) return fail(r, 500, "out of memory");
    r->headers[r->nheaders - 1][1] = (uint32_t)r->buf_len;
    r->last = 2;
  }
  return put(r, at, n, 0) ? fail(r, 500, "out of memory") : 0;
}

static unsigned count_headers(const sb_http_request *r, const char *name) {
  unsigned k = 0;
  for (unsigned i = 0; i < r->nheaders; i++) k += strcasecmp(r->buf + r->headers[i][0], name) == 0;
  return k;
}

static int on_headers_complete(http_parser *p) {
  sb_http_request *r = p->data;
  if (put(r, "", 0, 1)) return fail(r, 500, "out of memory");
  for (unsigned i = 0; i < r->nheaders; i++) {
    if (r->headers[i][1] == 0) r->headers[i][1] = (uint32_t)(r->buf_len - 1); /* empty value */
    char *v = r->buf + r->headers[i][1];
    size_t n = strlen(v);
    while (n && (v[n - 1] == ' ' || v[n - 1] == '\t')) v[--n] = '\0';
  }
  r->head_done = 1;
  /* The strict check already holds the version to 1.0 or 1.1; this is the second line. */
  if (p->http_major != 1 || p->http_minor > 1) return fail(r, 505, "HTTP/1.0 or HTTP/1.1 required");
  /* CONNECT switches to a tunnel (http-parser stops after its head whatever the framing). */
  if (p->method == HTTP_CONNECT) return fail(r, 501, "CONNECT is not supported");
  /* RFC 7230 §5.4: an HTTP/1.1 request has exactly one Host. */
  unsigned hosts = count_headers(r, "Host");
  if (hosts > 1 || (hosts == 0 && p->http_minor == 1)) return fail(r, 400, "one Host header required");
  /* Both framings at once is how requests are smuggled past proxies (RFC 7230 §3.3.3). */
  unsigned te = count_headers(r, "Transfer-Encoding");
  if (te && (p->flags & F_CONTENTLENGTH))
    return fail(r, 400, "both Content-Length and Transfer-Encoding");
  if (te > 1) return fail(r, 400, "more than one Transfer-Encoding header");
  /* RFC 9112 §6.1: an HTTP/1.0 hop may frame such a message differently. */
  if (te && p->http_minor == 0) return fail(r, 400, "Transfer-Encoding in an HTTP/1.0 request");
  if (te && strcasecmp(sb_http_header(r, "Transfer-Encoding"), "chunked") != 0)
    return fail(r, 501, "unsupported transfer encoding");
  r->upgrade = (uint8_t)sb_http_header_has(r, "Upgrade", "websocket");
  /* An announced body that is too big is refused before a byte of it is read. */
  if (!r->upgrade && (p->flags & F_CONTENTLENGTH) && p->content_length > r->max_body)
    return fail(r, 413, "request body too large");
  /* Stop here, so that the caller sees the head before the body. For an upgrade, 2 tells
   * http-parser that no body follows: what comes next is the other protocol. */
  http_parser_pause(p, 1);
  return r->upgrade ? 2 : 0;
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

static sb_http_result error_from_parser(sb_http_request *r) {
  if (r->status) return SB_HTTP_ERROR;
  enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
  if (e == HPE_HEADER_OVERFLOW) fail(r, 431, "request headers too large");
  else fail(r, 400, http_errno_description(e));
  return SB_HTTP_ERROR;
}

static int parser_failed(const sb_http_request *r) {
  enum http_errno e = HTTP_PARSER_ERRNO(&r->parser);
  return r->status || (e != HPE_OK && e != HPE_PAUSED);
}

sb_http_result sb_http_feed(sb_http_request *r, const uint8_t *data, size_t len,
                            size_t *consumed) {
  *consumed = 0;
  if (r->status) return SB_HTTP_ERROR;
  if (r->done) return SB_HTTP_DONE;
  size_t n = len;
  /* Bound the head: do not look at more head bytes than allowed. */
  if (!r->head_done) {
    size_t room = r->max_head > r->head_seen ? r->max_head - r->head_seen : 0;
    if (n > room) n = room;
  }
  if (n == 0) {
    if (len && !r->head_done) {
      fail(r, 431, "request headers too large");
      return SB_HTTP_ERROR;
    }
    return SB_HTTP_NEED_MORE;
  }
  size_t ok = 0;
  int status = 0;
  const char *why = NULL;
  int ev = scan(&r->strict, data, n, r->max_head, r->max_body, &ok, &status, &why);
  /* http-parser sees only what the check accepted (and never zero bytes: it takes that as
   * the end of the stream). */
  size_t parsed = ok ? http_parser_execute(&r->parser, &settings, (const char *)data, ok) : 0;
  *consumed = parsed;
  if (parser_failed(r)) return error_from_parser(r);
  switch (ev) {
    case SCAN_HEAD: {
      /* http-parser paused in on_headers_complete, just before the blank line's LF; that
       * byte takes it past the head (and, without a body, through the end of the message). */
      if (!r->head_done || parsed + 1 != ok) break;
      http_parser_pause(&r->parser, 0);
      parsed += http_parser_execute(&r->parser, &settings, (const char *)data + parsed, 1);
      *consumed = parsed;
      if (parser_failed(r)) return error_from_parser(r);
      if (parsed != ok) break;
      r->head_seen += ok;
      if (r->done) {
        r->strict.state = S_DONE;
      } else if (r->parser.flags & F_CHUNKED) {
        r->strict.state = S_CHUNK0;
      } else {
        r->strict.state = S_BODY; /* a body without a length is not a request's (§3.3.3) */
        r->strict.left = r->parser.content_length;
        if (r->strict.left == 0 || r->strict.left == ULLONG_MAX) break;
      }
      return SB_HTTP_HEAD;
    }
    case SCAN_END:
      if (!r->done || parsed != ok) break;
      return SB_HTTP_DONE;
    case SCAN_MORE:
      if (r->done || parsed != ok) break;
      if (!r->head_done) {
        r->head_seen += parsed;
        if (r->head_seen >= r->max_head) {
          fail(r, 431, "request headers too large");
          return SB_HTTP_ERROR;
        }
      }
      return SB_HTTP_NEED_MORE;
    default: /* SCAN_ERROR: the byte after what http-parser took is bad */
      if (r->done || parsed != ok) break;
      fail(r, status, why);
      return SB_HTTP_ERROR;
  }
  /* The check and http-parser disagree about where the head or the message ends. Neither
   * view is trusted then. */
  fail(r, 400, "malformed message framing");
  return SB_HTTP_ERROR;
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

static int is_ows(char c) { return c == ' ' || c == '\t'; }

const char *sb_list_next(const char **p, size_t *len) {
  const char *s = *p;
  for (;;) {
    while (*s == ',' || is_ows(*s)) s++;
    if (!*s) {
      *p = s;
      return NULL;
    }
    const char *start = s;
    while (*s && *s != ',') s++;
    const char *end = s;
    while (end > start && is_ows(end[-1])) end--;
    if (end > start) {
      *p = s;
      *len = (size_t)(end - start);
      return start;
    }
  }
}

int sb_token_list_has(const char *list, const char *token) {
  size_t tlen = strlen(token), n;
  for (const char *e; (e = sb_list_next(&list, &n)) != NULL;) {
    if (n == tlen && strncasecmp(e, token, tlen) == 0) return 1;
  }
  return 0;
}

int sb_http_header_has(const sb_http_request *r, const char *name, const char *token) {
  for (unsigned i = 0; i < r->nheaders; i++) {
    if (strcasecmp(r->buf + r->headers[i][0], name) == 0 &&
        sb_token_list_has(r->buf + r->headers[i][1], token))
      return 1;
  }
  return 0;
}

const char *sb_http_reason(int status) {
  switch (status) {
    case 100: return "Continue";
    case 101: return "Switching Protocols";
    case 200: return "OK";
    case 201: return "Created";
    case 202: return "Accepted";
    case 203: return "Non-Authoritative Information";
    case 204: return "No Content";
    case 205: return "Reset Content";
    case 206: return "Partial Content";
    case 300: return "Multiple Choices";
    case 301: return "Moved Permanently";
    case 302: return "Found";
    case 303: return "See Other";
    case 304: return "Not Modified";
    case 307: return "Temporary Redirect";
    case 308: return "Permanent Redirect";
    case 400: return "Bad Request";
    case 401: return "Unauthorized";
    case 402: return "Payment Required";
    case 403: return "Forbidden";
    case 404: return "Not Found";
    case 405: return "Method Not Allowed";
    case 406: return "Not Acceptable";
    case 407: return "Proxy Authentication Required";
    case 408: return "Request Timeout";
    case 409: return "Conflict";
    case 410: return "Gone";
    case 411: return "Length Required";
    case 412: return "Precondition Failed";
    case 413: return "Payload Too Large";
    case 414: return "URI Too Long";
    case 415: return "Unsupported Media Type";
    case 416: return "Range Not Satisfiable";
    case 417: return "Expectation Failed";
    case 421: return "Misdirected Request";
    case 422: return "Unprocessable Entity";
    case 423: return "Locked";
    case 424: return "Failed Dependency";
    case 425: return "Too Early";
    case 426: return "Upgrade Required";
    case 428: return "Precondition Required";
    case 429: return "Too Many Requests";
    case 431: return "Request Header Fields Too Large";
    case 451: return "Unavailable For Legal Reasons";
    case 500: return "Internal Server Error";
    case 501: return "Not Implemented";
    case 502: return "Bad Gateway";
    case 503: return "Service Unavailable";
    case 504: return "Gateway Timeout";
    case 505: return "HTTP Version Not Supported";
    case 507: return "Insufficient Storage";
    case 511: return "Network Authentication Required";
    default: return NULL;
  }
}

int sb_http_started(const sb_http_request *r) {
  return r->head_done || (r->strict.state != S_LINE0 && r->strict.state != S_LINE0_CR);
}

void sb_http_date(time_t t, char *out, size_t cap) {
  static const char days[7][4] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
  static const char months[12][4] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                     "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};
  struct tm tm;
  gmtime_r(&t, &tm);
  snprintf(out, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", days[tm.tm_wday % 7], tm.tm_mday,
           months[tm.tm_mon % 12], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

int sb_http_field_ok(const char *name, size_t name_len, const char *value) {
  if (name_len == 0) return 0;
  for (size_t i = 0; i < name_len; i++) {
    if (!is_tchar((uint8_t)name[i])) return 0;
  }
  for (const unsigned char *p = (const unsigned char *)value; *p; p++) {
    if ((*p < 0x20 && *p != '\t') || *p == 0x7f) return 0; /* no CR, LF: no injection */
  }
  return 1;
}

int sb_http_field_reserved(const char *name, size_t name_len) {
  static const char *const ours[] = {"Content-Length", "Transfer-Encoding", "Connection",
                                     "Keep-Alive",     "Upgrade",           "Date",
                                     "Trailer"};
  for (size_t i = 0; i < sizeof(ours) / sizeof(ours[0]); i++) {
    if (strlen(ours[i]) == name_len && strncasecmp(name, ours[i], name_len) == 0) return 1;
  }
  return 0;
}
