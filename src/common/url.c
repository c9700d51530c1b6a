/*
 * url.c — percent-decoding and query strings (see url.h).
 */
#include <string.h>

#include "common/url.h"

static int hexval(char ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

long sb_percent_decode(const char *src, size_t n, char *dst, int plus_is_space) {
  size_t o = 0;
  for (size_t i = 0; i < n; i++) {
    char ch = src[i];
    if (ch == '%') {
      if (i + 2 >= n) return -1; /* needs two more characters */
      int hi = hexval(src[i + 1]), lo = hexval(src[i + 2]);
      if (hi < 0 || lo < 0) return -1;
      ch = (char)(hi * 16 + lo);
      i += 2;
    } else if (plus_is_space && ch == '+') {
      ch = ' ';
    }
    if (ch == '\0') return -1;
    dst[o++] = ch;
  }
  dst[o] = '\0';
  return (long)o;
}

long sb_query_parse(const char *q, size_t len, sb_query_pair *pairs, size_t max, char *scratch,
                    size_t scratch_len) {
  size_t np = 0, off = 0, i = 0;
  if (scratch_len < 2 * len + 2) return -1;
  while (i < len) {
    size_t start = i;
    while (i < len && q[i] != '&') i++;
    size_t end = i++;
    if (end == start) continue; /* "a=1&&b=2" */
    if (np == max) return -1;
    const char *eq = memchr(q + start, '=', end - start);
    size_t klen = eq ? (size_t)(eq - (q + start)) : end - start;
    long k = sb_percent_decode(q + start, klen, scratch + off, 1);
    if (k < 0) return -1;
    pairs[np].key = scratch + off;
    pairs[np].key_len = (size_t)k;
    off += (size_t)k + 1;
    long v = eq ? sb_percent_decode(eq + 1, (size_t)(q + end - (eq + 1)), scratch + off, 1) : 0;
    if (v < 0) return -1;
    if (!eq) scratch[off] = '\0';
    pairs[np].value = scratch + off;
    pairs[np].value_len = (size_t)v;
    off += (size_t)v + 1;
    np++;
  }
  return (long)np;
}

long sb_query_find(const char *q, size_t len, const char *name, char *dst, size_t cap) {
  size_t nlen = strlen(name), i = 0;
  while (i < len) {
    size_t start = i;
    while (i < len && q[i] != '&') i++;
    size_t end = i++;
    const char *eq = memchr(q + start, '=', end - start);
    size_t klen = eq ? (size_t)(eq - (q + start)) : end - start;
    /* Names are compared raw: a parameter the server looks up has a plain name. */
    if (klen != nlen || memcmp(q + start, name, nlen) != 0) continue;
    size_t vlen = eq ? (size_t)(q + end - (eq + 1)) : 0;
    if (vlen + 1 > cap) return -1;
    return eq ? sb_percent_decode(eq + 1, vlen, dst, 1) : (dst[0] = '\0', 0);
  }
  return -1;
}
