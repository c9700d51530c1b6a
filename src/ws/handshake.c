/*
 * handshake.c — validating the WebSocket upgrade request (RFC 6455 §4.2.1).
 *
 * The request is parsed by the server's one HTTP parser (src/http/http.c), which stops after
 * the head of every request: for an upgrade (a request naming "websocket" in Upgrade) it tells
 * http-parser that no body follows, so whatever comes after the blank line belongs to the next
 * protocol (WebSocket frames); for a plain request the caller goes on reading its body with
 * the same parser state. This file applies the RFC's checks to an upgrade and computes the
 * accept value.
 */
#include <stdint.h>
#include <string.h>
#include <strings.h>

#include <openssl/evp.h>

#include "ws/handshake.h"

void sb_handshake_init(sb_handshake *h, size_t max_bytes,
                       void *(*realloc_fn)(void *, size_t, void *), void *ctx) {
  memset(h, 0, sizeof(*h));
  /* No body limit here: a plain request's body is limited by whoever reads it (the server
   * sets req.max_body when it has a plain-HTTP handler). */
  sb_http_init(&h->req, max_bytes, SIZE_MAX, realloc_fn, ctx);
}

void sb_handshake_free(sb_handshake *h) { sb_http_free(&h->req); }

void sb_handshake_next(sb_handshake *h) {
  sb_http_next(&h->req);
  h->result = SB_HS_NEED_MORE;
  h->status = 0;
  h->error = NULL;
  h->accept[0] = '\0';
}

const char *sb_handshake_header(const sb_handshake *h, const char *name) {
  return sb_http_header(&h->req, name);
}

const char *sb_handshake_url(const sb_handshake *h) { return sb_http_url(&h->req); }

int sb_handshake_method(const sb_handshake *h) { return (int)h->req.parser.method; }

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

/* An upgrade (the request names "websocket" in Upgrade): the rest of §4.2.1. */
static sb_hs_result validate(sb_handshake *h) {
  const http_parser *p = &h->req.parser;
  if (p->method != HTTP_GET) return reject(h, 400, "a WebSocket upgrade must use GET");
  if (p->http_major != 1 || p->http_minor < 1)
    return reject(h, 400, "a WebSocket upgrade needs HTTP/1.1");
  const char *host = sb_handshake_header(h, "Host");
  if (!host || !*host) return reject(h, 400, "missing Host header");
  if (!sb_http_header_has(&h->req, "Connection", "upgrade"))
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
  if (h->result != SB_HS_NEED_MORE) return h->result;
  sb_http_result r = sb_http_feed(&h->req, data, len, consumed);
  if (r == SB_HTTP_NEED_MORE) return SB_HS_NEED_MORE;
  if (r == SB_HTTP_ERROR) h->result = reject(h, h->req.status, h->req.error);
  else if (r == SB_HTTP_HEAD) h->result = h->req.upgrade ? validate(h) : SB_HS_HTTP;
  else h->result = reject(h, 500, "internal: a request ended before its head"); /* not reached */
  return h->result;
}

/* The next entry of the Sec-WebSocket-Protocol list, across every header of that name:
 * (*i, *p) is the position (start with *i = 0, *p = NULL). */
static const char *next_entry(const sb_handshake *h, unsigned *i, const char **p, size_t *n) {
  const sb_http_request *r = &h->req;
  for (;;) {
    const char *e = *p ? sb_list_next(p, n) : NULL;
    if (e) return e;
    if (*p) ++*i; /* this header's list is done */
    while (*i < r->nheaders && strcasecmp(r->buf + r->headers[*i][0], "Sec-WebSocket-Protocol"))
      ++*i;
    if (*i >= r->nheaders) return NULL;
    *p = r->buf + r->headers[*i][1];
  }
}

static int is_bearer(const char *e, size_t n) { return n > 7 && memcmp(e, "bearer.", 7) == 0; }

size_t sb_handshake_subprotocols_size(const sb_handshake *h, size_t *bytes) {
  size_t count = 0, n;
  unsigned i = 0;
  const char *p = NULL, *e;
  *bytes = 0;
  while ((e = next_entry(h, &i, &p, &n)) != NULL) {
    if (is_bearer(e, n)) continue;
    count++;
    *bytes += n + 1;
  }
  return count;
}

size_t sb_handshake_subprotocols(const sb_handshake *h, const char **out, size_t max,
                                 char *scratch, size_t scratch_len, int *bearer) {
  size_t count = 0, used = 0, n;
  unsigned i = 0;
  const char *p = NULL, *e;
  if (bearer) *bearer = 0;
  while ((e = next_entry(h, &i, &p, &n)) != NULL) {
    if (is_bearer(e, n)) {
      if (bearer) *bearer = 1; /* a credential (sb_upgrade_token), never a protocol */
      continue;
    }
    if (count == max || used + n + 1 > scratch_len) return 0;
    memcpy(scratch + used, e, n);
    scratch[used + n] = '\0';
    out[count++] = scratch + used;
    used += n + 1;
  }
  return count;
}

/* host [":" port] in [s, end) (RFC 9110 §4.2 authority without userinfo): the host's span
 * (an IPv6 literal keeps its brackets) and the port, -1 when there is none. 0, or -1 when it
 * is not of that shape. */
static int split_authority(const char *s, const char *end, const char **host, size_t *hlen,
                           long *port) {
  const char *p = s;
  if (p < end && *p == '[') {
    const char *rb = memchr(p, ']', (size_t)(end - p));
    if (!rb) return -1;
    p = rb + 1;
  } else {
    for (; p < end && *p != ':'; p++) {
      if (*p == '/' || *p == '?' || *p == '#' || *p == '@' || (unsigned char)*p <= ' ')
        return -1; /* a path, query, fragment or userinfo is not part of an origin */
    }
  }
  *host = s;
  *hlen = (size_t)(p - s);
  *port = -1;
  if (*hlen == 0) return -1;
  if (p == end) return 0;
  if (*p != ':' || ++p == end || end - p > 5) return -1;
  long v = 0;
  for (; p < end; p++) {
    if (*p < '0' || *p > '9') return -1;
    v = v * 10 + (*p - '0');
  }
  if (v > 65535) return -1;
  *port = v;
  return 0;
}

int sb_handshake_same_origin(const char *origin, const char *host) {
  if (!origin || !host) return 0;
  static const char http[] = "http://", https[] = "https://";
  const char *o;
  long dflt;
  if (strncasecmp(origin, http, sizeof http - 1) == 0) {
    o = origin + sizeof http - 1;
    dflt = 80;
  } else if (strncasecmp(origin, https, sizeof https - 1) == 0) {
    o = origin + sizeof https - 1;
    dflt = 443;
  } else {
    return 0; /* "null", file:, an extension's origin: never the server's own */
  }
  const char *oh, *hh;
  size_t ohl, hhl;
  long op, hp;
  if (split_authority(o, o + strlen(o), &oh, &ohl, &op) != 0 ||
      split_authority(host, host + strlen(host), &hh, &hhl, &hp) != 0)
    return 0;
  /* A Host without a port names the default port of the scheme the client used, which for a
   * page's own server is the page's: ws with http, wss with https. */
  if (op < 0) op = dflt;
  if (hp < 0) hp = dflt;
  return op == hp && ohl == hhl && strncasecmp(oh, hh, ohl) == 0;
}
