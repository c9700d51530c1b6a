/*
 * strbuf.h — a bounded string builder for the examples (header only; copy it with them).
 *
 * Why: the usual way of building an answer in C, adding up what each snprintf returned and
 * giving the next call `sizeof(out) - n`, breaks on the first piece that does not fit. snprintf returns what it *would* have written,
 * so n runs past the end, `sizeof(out) - n` wraps around to a huge size, and the next call
 * writes past the buffer: a client who makes the answer long (many rooms, long names, text
 * that escapes to six bytes a character) crashes the server. A strbuf never writes past its
 * end: every append checks the room it has first. An append that does not fit changes nothing
 * and sets `overflow`; from then on every append is refused, so the text is always the appends
 * that fitted, in order. Check `overflow` once, at the end, and answer an error instead of a
 * cut (and so invalid) answer.
 *
 * Two kinds of storage:
 *   strbuf_fixed(&b, array, sizeof array)  the caller's array: full is full;
 *   strbuf_heap(&b, limit)                 malloc'd, doubling as needed up to `limit` bytes
 *                                          (the NUL included); strbuf_free() releases it.
 *
 *     char mem[256];
 *     strbuf b;
 *     strbuf_fixed(&b, mem, sizeof mem);
 *     STRBUF_LIT(&b, "{\"identity\":");
 *     strbuf_json(&b, identity);
 *     STRBUF_LIT(&b, "}");
 *     if (b.overflow) ...answer 500...; else ...send b.data, b.len...
 *
 * The escapers:
 *   strbuf_json     a JSON string, quotes included; '"', '\' and control characters escaped,
 *                   bytes that are not UTF-8 replaced by U+FFFD, so the result is always valid
 *                   JSON whatever the input. At most STRBUF_JSON_MAX(strlen(s)) bytes.
 *   strbuf_segment  one percent-encoded URL path segment (all but A-Z a-z 0-9 - . _ ~).
 *   strbuf_log      text for a log line: control characters (C0, DEL, C1), a backslash and
 *                   bytes that are not UTF-8 as \xNN, so that a client's newline cannot start
 *                   a line of its own and its escape sequences cannot reach a terminal. Unlike
 *                   the others it keeps what fits of a long string (a log line may be cut;
 *                   `overflow` says it was).
 *
 * Every function returns 0, or -1 when the text did not fit (and `overflow` is set).
 */
#ifndef EXAMPLES_STRBUF_H
#define EXAMPLES_STRBUF_H

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct strbuf {
  char *data;   /* the text, NUL-terminated (NULL for a strbuf_heap before its first append) */
  size_t len;   /* its length, without the NUL */
  size_t cap;   /* the bytes at data */
  size_t limit; /* strbuf_heap: the most cap may grow to; 0 for fixed storage */
  int overflow; /* 1 once an append did not fit: the text is incomplete */
} strbuf;

/* The most bytes strbuf_json() makes of n bytes: each may become "\u00XX" or "\ufffd". */
#define STRBUF_JSON_MAX(n) (6 * (size_t)(n) + 2)

/* Appends a string literal; the compiler counts its length. */
#define STRBUF_LIT(b, lit) strbuf_add((b), "" lit, sizeof(lit) - 1)

static inline void strbuf_fixed(strbuf *b, char *mem, size_t size) {
  b->data = mem;
  b->len = 0;
  b->cap = size;
  b->limit = 0;
  b->overflow = size == 0;
  if (size) mem[0] = '\0';
}

static inline void strbuf_heap(strbuf *b, size_t limit) {
  b->data = NULL;
  b->len = b->cap = 0;
  b->limit = limit;
  b->overflow = 0;
}

static inline void strbuf_free(strbuf *b) {
  if (b->limit) free(b->data);
  b->data = NULL;
  b->len = b->cap = 0;
}

/* Makes room for n more bytes and the NUL; -1 (and overflow) if there is none. */
static inline int strbuf_reserve(strbuf *b, size_t n) {
  if (b->overflow) return -1;
  if (b->cap > b->len && n < b->cap - b->len) return 0;
  size_t need = b->len + n + 1;
  if (need <= n || !b->limit || need > b->limit) { /* the sum wrapped, fixed, or past the limit */
    b->overflow = 1;
    return -1;
  }
  size_t cap = b->cap ? b->cap : 256;
  while (cap < need) cap = cap > b->limit / 2 ? b->limit : cap * 2;
  if (cap > b->limit) cap = b->limit;
  char *p = realloc(b->data, cap);
  if (!p) {
    b->overflow = 1;
    return -1;
  }
  b->data = p;
  b->cap = cap;
  return 0;
}

static inline int strbuf_add(strbuf *b, const char *s, size_t n) {
  if (strbuf_reserve(b, n) != 0) return -1;
  memcpy(b->data + b->len, s, n);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

/* printf-style. */
__attribute__((format(printf, 2, 3))) static inline int strbuf_addf(strbuf *b, const char *fmt,
                                                                    ...) {
  if (b->overflow) return -1;
  va_list ap;
  va_start(ap, fmt);
  int k = vsnprintf(NULL, 0, fmt, ap); /* measure first: nothing is written past the end */
  va_end(ap);
  if (k < 0 || strbuf_reserve(b, (size_t)k) != 0) {
    b->overflow = 1;
    return -1;
  }
  va_start(ap, fmt);
  vsnprintf(b->data + b->len, b->cap - b->len, fmt, ap);
  va_end(ap);
  b->len += (size_t)k;
  return 0;
}

/* The length of the well-formed UTF-8 sequence at s (1 to 4), or 0 if there is none there
 * (a stray continuation byte, an overlong form, a surrogate, past U+10FFFF, or cut short by
 * the terminating NUL, which is never read past). */
static inline size_t utf8_seq(const unsigned char *s) {
  unsigned c = s[0];
  if (c < 0x80) return 1;
  if (c < 0xC2 || c > 0xF4 || (s[1] & 0xC0) != 0x80) return 0;
  if (c < 0xE0) return 2;
  if ((s[2] & 0xC0) != 0x80) return 0;
  if ((c == 0xE0 && s[1] < 0xA0) || (c == 0xED && s[1] > 0x9F)) return 0;
  if (c < 0xF0) return 3;
  if ((s[3] & 0xC0) != 0x80) return 0;
  if ((c == 0xF0 && s[1] < 0x90) || (c == 0xF4 && s[1] > 0x8F)) return 0;
  return 4;
}

/* 1 if s is well-formed UTF-8. */
static inline int utf8_valid(const char *s) {
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    size_t k = utf8_seq(p);
    if (!k) return 0;
    p += k;
  }
  return 1;
}

/* Writes the JSON string of s to out when out is not NULL, and returns its length either
 * way: one function measures and writes, so the two cannot disagree. */
static inline size_t strbuf_json_encode(const char *s, char *out) {
  static const char hex[] = "0123456789abcdef";
  char esc[6] = {'\\', 'u', '0', '0', 0, 0};
  size_t n = 1;
  if (out) out[0] = '"';
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    size_t k = utf8_seq(p);
    const char *piece = (const char *)p;
    if (k == 0) { /* not UTF-8: a replacement character for the byte */
      piece = "\\ufffd";
      k = 6;
      p++;
    } else if (*p == '"' || *p == '\\') {
      esc[1] = (char)*p;
      piece = esc;
      k = 2;
      p++;
    } else if (*p < 0x20) {
      esc[1] = 'u';
      esc[4] = hex[*p >> 4];
      esc[5] = hex[*p & 15];
      piece = esc;
      k = 6;
      p++;
    } else {
      p += k;
    }
    if (out) memcpy(out + n, piece, k);
    n += k;
  }
  if (out) out[n] = '"';
  return n + 1;
}

static inline int strbuf_json(strbuf *b, const char *s) {
  size_t n = strbuf_json_encode(s, NULL);
  if (strbuf_reserve(b, n) != 0) return -1;
  strbuf_json_encode(s, b->data + b->len);
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

/* RFC 3986 §2.3: the unreserved characters, which a path segment carries as they are. */
static inline int strbuf_unreserved(unsigned char c) {
  return (c >= 'A' && c <= 'Z') || (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_' || c == '~';
}

static inline int strbuf_segment(strbuf *b, const char *s) {
  static const char hex[] = "0123456789ABCDEF";
  size_t n = 0;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++)
    n += strbuf_unreserved(*p) ? 1 : 3;
  if (strbuf_reserve(b, n) != 0) return -1;
  char *o = b->data + b->len;
  for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
    if (strbuf_unreserved(*p)) {
      *o++ = (char)*p;
    } else {
      *o++ = '%';
      *o++ = hex[*p >> 4];
      *o++ = hex[*p & 15];
    }
  }
  b->len += n;
  b->data[b->len] = '\0';
  return 0;
}

static inline int strbuf_log(strbuf *b, const char *s) {
  static const char hex[] = "0123456789abcdef";
  for (const unsigned char *p = (const unsigned char *)s; *p;) {
    size_t k = utf8_seq(p);
    /* Printable ASCII but '\', and UTF-8 from U+00A0 on, go as they are. */
    int plain = (k == 1 && *p >= 0x20 && *p < 0x7F && *p != '\\') ||
                (k == 2 && !(p[0] == 0xC2 && p[1] < 0xA0)) || k > 2;
    if (plain) {
      if (strbuf_add(b, (const char *)p, k) != 0) return -1;
      p += k;
    } else {
      const char esc[4] = {'\\', 'x', hex[*p >> 4], hex[*p & 15]};
      if (strbuf_add(b, esc, sizeof esc) != 0) return -1;
      p++;
    }
  }
  return 0;
}

#endif /* EXAMPLES_STRBUF_H */
