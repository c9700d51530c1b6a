/*
 * url.h — percent-decoding and query strings, shared by the upgrade (its query parameters, a
 * token among them) and the router (path segments, the request's query). No allocation.
 */
#ifndef SB_COMMON_URL_H
#define SB_COMMON_URL_H

#include <stddef.h>

/* Percent-decodes src[0..n) into dst (n + 1 bytes suffice), NUL-terminates, and returns the
 * length, or -1 for a malformed escape or a NUL byte. With plus_is_space, '+' becomes ' '
 * (query strings). */
long sb_percent_decode(const char *src, size_t n, char *dst, int plus_is_space);

typedef struct sb_query_pair {
  const char *key, *value; /* NUL-terminated, decoded, in the caller's scratch */
  size_t key_len, value_len;
} sb_query_pair;

/* Parses "a=1&b=x%20y&flag" into pairs (a key without '=' has the empty value). Returns the
 * number of pairs, or -1 when an escape is malformed or more than `max` pairs come. scratch
 * needs len + number of pairs * 2 bytes (2 * len + 2 always suffices). */
long sb_query_parse(const char *q, size_t len, sb_query_pair *pairs, size_t max, char *scratch,
                    size_t scratch_len);

/* Finds `name` in the query string q[0..len) and decodes its first value into
 * dst[0..cap). Returns the value's length, or -1 when the name is absent, an escape is
 * malformed, or the value does not fit. */
long sb_query_find(const char *q, size_t len, const char *name, char *dst, size_t cap);

#endif
