/*
 * handshake.c — parsing and validating the WebSocket upgrade request (RFC 6455 §4.2.1).
 *
 * http-parser does the HTTP/1.1 parsing; this file keeps a copy of the request target and the
 * headers (http-parser hands out pointers into each read, which do not outlive it) and then
 * applies the RFC's checks. on_headers_complete returns 2 ("upgrade, no body") for every
 * request, which makes http-parser stop right after the blank line: whatever follows belongs to
 * the next protocol (WebSocket frames) or, for a plain request, to a higher layer.
 */
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "ws/handshake.h"

static int grow(sb_handshake *h, size_t extra) {
  if (h->buf_len + extra <= h->buf_cap) return 0;
  size_t cap = h->buf_cap ? h->buf_cap : 512;
  while (cap < h->buf_len + extra) cap *= 2;
  char *p = h->realloc_fn(h->buf, cap, h->alloc_ctx);
  if (!p) return -1;
  h->buf = p;
  h->buf_cap = cap;
  return 0;
}

static int append(sb_handshake *h, const char *at, size_t len) {
  if (grow(h, len + 1)) return -1;
  memcpy(h->buf + h->buf_len, at, len);
  h->buf_len += len;
  return 0;
}

static int terminate(sb_handshake *h) {
  if (grow(h, 1)) return -1;
  h->buf[h->buf_len++] = '\0';
  return 0;
}

/* Sections: 0 = url, 1 = header name, 2 = header value. */
static int on_url(http_parser *p, const char *at, size_t len) {
  sb_handshake *h = p->data;
  return append(h, at, len);
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  sb_handshake *h = p->data;
  if (h->last_was_value != 1) { /* a new header starts: close the url or the last value */
    if (h->nheaders == SB_HS_MAX_HEADERS) {
      h->status = 431;
      h->error = "too many header fields";
      return -1;
    }
    if (terminate(h)) return -1;
    h->headers[h->nheaders].name = (uint32_t)h->buf_len;
    h->headers[h->nheaders].value = 0;
    h->nheaders++;
    h->last_was_value = 1;
  }
  return append(h, at, len);
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  sb_handshake *h = p->data;
  if (h->last_was_value != 2) {
    if (terminate(h)) return -1;
    h->headers[h->nheaders - 1].value = (uint32_t)h->buf_len;
    h->last_was_value = 2;
  }
  return append(h, at, len);
}

static int on_headers_complete(http_parser *p) {
  sb_handshake *h = p->data;
  if (terminate(h)) return -1;
  /* A header may have had an empty value, in which case on_header_value never ran. */
  for (unsigned i = 0; i < h->nheaders; i++) {
    if (h->headers[i].value == 0) h->headers[i].value = (uint32_t)(h->buf_len - 1);
  }
  /* Trim trailing whitespace from values (http-parser already skipped the leading). */
  for (unsigned i = 0; i < h->nheaders; i++) {
    char *v = h->buf + h->headers[i].value;
    size_t n = strlen(v);
    while (n > 0 && (v[n - 1] == ' ' || v[n - 1] == '\t')) v[--n] = '\0';
  }
  h->done = 1;
  return 2; /* stop after the headers, whatever the request */
}

static const http_parser_settings settings = {
    .on_url = on_url,
    .on_header_field = on_header_field,
    .on_header_value = on_header_value,
    .on_headers_complete = on_headers_complete,
};

void sb_handshake_init(sb_handshake *h, size_t max_bytes,
                       void *(*realloc_fn)(void *, size_t, void *), void *ctx) {
  memset(h, 0, sizeof(*h));
  http_parser_init(&h->parser, HTTP_REQUEST);
  h->parser.data = h;
  h->max_bytes = max_bytes;
  h->realloc_fn = realloc_fn;
  h->alloc_ctx = ctx;
}

void sb_handshake_free(sb_handshake *h) {
  if (h->buf) h->realloc_fn(h->buf, 0, h->alloc_ctx);
  h->buf = NULL;
  h->buf_len = h->buf_cap = 0;
}

const char *sb_handshake_header(const sb_handshake *h, const char *name) {
  for (unsigned i = 0; i < h->nheaders; i++) {
    if (strcasecmp(h->buf + h->headers[i].name, name) == 0) return h->buf + h->headers[i].value;
  }
  return NULL;
}

const char *sb_handshake_url(const sb_handshake *h) { return h->buf ? h->buf + h->url : ""; }

int sb_handshake_method(const sb_handshake *h) { return (int)h->parser.method; }

static int is_ows(char c) { return c == ' ' || c == '\t'; }

int sb_token_list_has(const char *list, const char *token) {
  size_t tlen = strlen(token);
  const char *p = list;
  while (*p) {
    while (*p == ',' || is_ows(*p)) p++;
    const char *start = p;
    while (*p && *p != ',') p++;
    const char *end = p;
    while (end > start && is_ows(end[-1])) end--;
    if ((size_t)(end - start) == tlen && strncasecmp(start, token, tlen) == 0) return 1;
  }
  return 0;
}

/* Is any header `name` a token list holding `token`? (Connection may come in several lines.) */
static int any_header_has(const sb_handshake *h, const char *name, const char *token) {
  for (unsigned i = 0; i < h->nheaders; i++) {
    if (strcasecmp(h->buf + h->headers[i].name, name) == 0 &&
        sb_token_list_has(h->buf + h->headers[i].value, token))
      return 1;
  }
  return 0;
}

static int b64_value(char c) {
  if (c >= 'A' && c <= 'Z') return c - 'A';
  if (c >= 'a' && c <= 'z') return c - 'a' + 26;
  if (c >= '0' && c <= '9') return c - '0' + 52;
  if (c == '+') return 62;
  if (c == '/') return 63;
  return -1;
}

int sb_ws_accept_key(const char *key, char out[29]) {
  static const char guid[] = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
  /* §4.2.1 item 5: the key must base64-decode to exactly 16 bytes: 22 symbols and "==". */
  if (strlen(key) != 24 || key[22] != '=' || key[23] != '=') return -1;
  for (int i = 0; i < 22; i++) {
    if (b64_value(key[i]) < 0) return -1;
  }
  if (b64_value(key[21]) & 0x0f) return -1; /* non-zero padding bits: not a canonical encoding */
  unsigned char input[24 + sizeof(guid)];
  memcpy(input, key, 24);
  memcpy(input + 24, guid, sizeof(guid) - 1);
  unsigned char digest[EVP_MAX_MD_SIZE];
  unsigned int dlen = 0;
  if (!EVP_Digest(input, 24 + sizeof(guid) - 1, digest, &dlen, EVP_sha1(), NULL) || dlen != 20)
    return -1;
  EVP_EncodeBlock((unsigned char *)out, digest, 20); /* 28 characters and a NUL */
  return 0;
}

static sb_hs_result reject(sb_handshake *h, int status, const char *why) {
  h->status = status;
  h->error = why;
  return SB_HS_REJECT;
}

static sb_hs_result validate(sb_handshake *h) {
  const char *upgrade = sb_handshake_header(h, "Upgrade");
  if (!upgrade || !any_header_has(h, "Upgrade", "websocket")) return SB_HS_HTTP;
  if (h->parser.method != HTTP_GET) return reject(h, 400, "a WebSocket upgrade must use GET");
  if (h->parser.http_major != 1 || h->parser.http_minor < 1)
    return reject(h, 400, "a WebSocket upgrade needs HTTP/1.1");
  const char *host = sb_handshake_header(h, "Host");
  if (!host || !*host) return reject(h, 400, "missing Host header");
  if (!any_header_has(h, "Connection", "upgrade"))
    return reject(h, 400, "Connection header lacks the upgrade token");
  const char *version = sb_handshake_header(h, "Sec-WebSocket-Version");
  if (!version || strcmp(version, "13") != 0)
    return reject(h, 426, "unsupported Sec-WebSocket-Version");
  const char *key = sb_handshake_header(h, "Sec-WebSocket-Key");
  if (!key) return reject(h, 400, "missing Sec-WebSocket-Key");
  if (sb_ws_accept_key(key, h->accept) != 0)
    return reject(h, 400, "Sec-WebSocket-Key is not 16 bytes of base64");
  return SB_HS_UPGRADE;
}

sb_hs_result sb_handshake_feed(sb_handshake *h, const uint8_t *data, size_t len,
                               size_t *consumed) {
  *consumed = 0;
  if (h->done) return reject(h, 400, "handshake already finished");
  size_t room = h->max_bytes > h->seen ? h->max_bytes - h->seen : 0;
  size_t n = len < room ? len : room;
  /* Never hand http-parser zero bytes: it takes that as end of stream. */
  if (n == 0) return len ? reject(h, 431, "request headers too large") : SB_HS_NEED_MORE;
  size_t parsed = http_parser_execute(&h->parser, &settings, (const char *)data, n);
  *consumed = parsed;
  h->seen += parsed;
  enum http_errno err = HTTP_PARSER_ERRNO(&h->parser);
  if (h->done) {
    /* The system's http-parser may be built lenient, and then takes CR followed by any byte
     * as the end of the head (swallowing that byte). HTTP requires CRLF (a bare LF is
     * tolerated, RFC 7230 §3.5); the byte that completed the head is in this feed. */
    if (parsed == 0 || data[parsed - 1] != '\n')
      return reject(h, 400, "header section does not end with CRLF");
    return validate(h);
  }
  if (err != HPE_OK) {
    if (h->status == 431) return SB_HS_REJECT;
    if (err == HPE_HEADER_OVERFLOW) return reject(h, 431, "request headers too large");
    if (err == HPE_CB_url || err == HPE_CB_header_field || err == HPE_CB_header_value ||
        err == HPE_CB_headers_complete)
      return reject(h, 500, "out of memory");
    return reject(h, 400, http_errno_description(err));
  }
  if (n < len || h->seen >= h->max_bytes) return reject(h, 431, "request headers too large");
  return SB_HS_NEED_MORE;
}

size_t sb_handshake_subprotocols(const sb_handshake *h, const char **out, size_t max,
                                 char *scratch, size_t scratch_len) {
  size_t count = 0, used = 0;
  for (unsigned i = 0; i < h->nheaders; i++) {
    if (strcasecmp(h->buf + h->headers[i].name, "Sec-WebSocket-Protocol") != 0) continue;
    const char *p = h->buf + h->headers[i].value;
    while (*p) {
      while (*p == ',' || is_ows(*p)) p++;
      const char *start = p;
      while (*p && *p != ',') p++;
      const char *end = p;
      while (end > start && is_ows(end[-1])) end--;
      if (end == start) continue;
      size_t n = (size_t)(end - start);
      if (count == max || used + n + 1 > scratch_len) return 0;
      memcpy(scratch + used, start, n);
      scratch[used + n] = '\0';
      out[count++] = scratch + used;
      used += n + 1;
    }
  }
  return count;
}
