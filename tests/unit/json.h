/*
 * json.h — a minimal JSON reader for tests (RFC 8259). Test-only: it exists so that the unit
 * tests can read the shared vectors in spec/vectors/, and it is not part of the library.
 *
 * It builds a tree of malloc'd nodes. Strings are decoded to UTF-8 bytes (escapes included:
 * \" \\ \/ \b \f \n \r \t and \uXXXX, with surrogate pairs joined; a lone surrogate is an
 * error, since it has no UTF-8 form) and may hold NUL bytes, so they carry a length. Numbers
 * keep their literal text as well as a double, so that integers above 2^53 are not rounded
 * for a test that wants them exact. Object members keep their order; duplicate keys are kept
 * and json_get returns the first. Nesting is limited to JSON_MAX_DEPTH.
 */
#ifndef SB_TEST_JSON_H
#define SB_TEST_JSON_H

#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define JSON_MAX_DEPTH 64

typedef enum { JSON_NULL, JSON_BOOL, JSON_NUMBER, JSON_STRING, JSON_ARRAY, JSON_OBJECT } json_type;

typedef struct json json;
struct json {
  json_type type;
  int boolean;    /* JSON_BOOL */
  double number;  /* JSON_NUMBER */
  char *text;     /* JSON_STRING: the bytes (NUL-terminated too); JSON_NUMBER: the literal */
  size_t len;     /* bytes of text */
  size_t count;   /* JSON_ARRAY, JSON_OBJECT: number of items */
  json **items;   /* JSON_ARRAY: elements; JSON_OBJECT: member values */
  char **keys;    /* JSON_OBJECT: member names, NUL-terminated */
  size_t *klens;  /* JSON_OBJECT: their lengths */
};

typedef struct {
  const char *p, *end;
  char *err;
  size_t errlen;
  int depth;
} json_parser;

static inline void json_free(json *v) {
  if (!v) return;
  for (size_t i = 0; i < v->count; i++) {
    json_free(v->items[i]);
    if (v->keys) free(v->keys[i]);
  }
  free(v->items);
  free(v->keys);
  free(v->klens);
  free(v->text);
  free(v);
}

#if defined(__GNUC__)
__attribute__((format(printf, 2, 3)))
#endif
static inline json *json_fail(json_parser *ps, const char *fmt, ...) {
  /* Only the first (innermost) error is kept. */
  if (ps->err && ps->errlen && !ps->err[0]) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(ps->err, ps->errlen, fmt, ap);
    va_end(ap);
  }
  return NULL;
}

static inline void json_ws(json_parser *ps) {
  while (ps->p < ps->end &&
         (*ps->p == ' ' || *ps->p == '\t' || *ps->p == '\n' || *ps->p == '\r'))
    ps->p++;
}

/* A growing byte string for string decoding. */
typedef struct {
  char *p;
  size_t n, cap;
} json_buf;

static inline int json_buf_put(json_buf *b, const void *d, size_t n) {
  if (b->n + n + 1 > b->cap) {
    size_t cap = b->cap ? b->cap * 2 : 32;
    while (cap < b->n + n + 1)
      cap *= 2;
    char *q = realloc(b->p, cap);
    if (!q) return 0;
    b->p = q;
    b->cap = cap;
  }
  memcpy(b->p + b->n, d, n);
  b->n += n;
  b->p[b->n] = '\0';
  return 1;
}

static inline int json_hex4(json_parser *ps, unsigned *out) {
  unsigned v = 0;
  if (ps->end - ps->p < 4) return 0;
  for (int i = 0; i < 4; i++) {
    char c = *ps->p++;
    v <<= 4;
    if (c >= '0' && c <= '9') v |= (unsigned)(c - '0');
    else if (c >= 'a' && c <= 'f') v |= (unsigned)(c - 'a' + 10);
    else if (c >= 'A' && c <= 'F') v |= (unsigned)(c - 'A' + 10);
    else return 0;
  }
  *out = v;
  return 1;
}

/* Parses a string starting at the opening quote into b. Returns 1 on success. */
static inline int json_string_into(json_parser *ps, json_buf *b) {
  ps->p++; /* the opening quote */
  for (;;) {
    if (ps->p == ps->end) return json_fail(ps, "unterminated string"), 0;
    unsigned char c = (unsigned char)*ps->p++;
    if (c == '"') break;
    if (c < 0x20) return json_fail(ps, "raw control character 0x%02x in a string", c), 0;
    if (c != '\\') {
      if (!json_buf_put(b, &c, 1)) return json_fail(ps, "out of memory"), 0;
      continue;
    }
    if (ps->p == ps->end) return json_fail(ps, "unterminated escape"), 0;
    char e = *ps->p++;
    char one;
    switch (e) {
      case '"': one = '"'; break;
      case '\\': one = '\\'; break;
      case '/': one = '/'; break;
      case 'b': one = '\b'; break;
      case 'f': one = '\f'; break;
      case 'n': one = '\n'; break;
      case 'r': one = '\r'; break;
      case 't': one = '\t'; break;
      case 'u': {
        unsigned cp, lo;
        if (!json_hex4(ps, &cp)) return json_fail(ps, "bad \\u escape"), 0;
        if (cp >= 0xDC00 && cp <= 0xDFFF) return json_fail(ps, "lone low surrogate"), 0;
        if (cp >= 0xD800 && cp <= 0xDBFF) {
          if (ps->end - ps->p < 2 || ps->p[0] != '\\' || ps->p[1] != 'u')
            return json_fail(ps, "high surrogate without a low one"), 0;
          ps->p += 2;
          if (!json_hex4(ps, &lo)) return json_fail(ps, "bad \\u escape"), 0;
          if (lo < 0xDC00 || lo > 0xDFFF)
            return json_fail(ps, "high surrogate without a low one"), 0;
          cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
        }
        unsigned char u[4];
        size_t n;
        if (cp < 0x80) {
          u[0] = (unsigned char)cp;
          n = 1;
        } else if (cp < 0x800) {
          u[0] = (unsigned char)(0xC0 | (cp >> 6));
          u[1] = (unsigned char)(0x80 | (cp & 0x3F));
          n = 2;
        } else if (cp < 0x10000) {
          u[0] = (unsigned char)(0xE0 | (cp >> 12));
          u[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
          u[2] = (unsigned char)(0x80 | (cp & 0x3F));
          n = 3;
        } else {
          u[0] = (unsigned char)(0xF0 | (cp >> 18));
          u[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
          u[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
          u[3] = (unsigned char)(0x80 | (cp & 0x3F));
          n = 4;
        }
        if (!json_buf_put(b, u, n)) return json_fail(ps, "out of memory"), 0;
        continue;
      }
      default: return json_fail(ps, "bad escape \\%c", e), 0;
    }
    if (!json_buf_put(b, &one, 1)) return json_fail(ps, "out of memory"), 0;
  }
  if (!b->p && !json_buf_put(b, "", 0)) return json_fail(ps, "out of memory"), 0;
  return 1;
}

static inline json *json_value(json_parser *ps);

static inline json *json_node(json_parser *ps, json_type t) {
  json *v = calloc(1, sizeof *v);
  if (!v) return json_fail(ps, "out of memory");
  v->type = t;
  return v;
}

static inline int json_digits(json_parser *ps) {
  const char *s = ps->p;
  while (ps->p < ps->end && *ps->p >= '0' && *ps->p <= '9')
    ps->p++;
  return ps->p > s;
}

static inline json *json_number(json_parser *ps) {
  const char *s = ps->p;
  if (*ps->p == '-') ps->p++;
  if (ps->p < ps->end && *ps->p == '0') ps->p++;
  else if (!json_digits(ps)) return json_fail(ps, "bad number");
  if (ps->p < ps->end && *ps->p == '.') {
    ps->p++;
    if (!json_digits(ps)) return json_fail(ps, "bad number: no digit after '.'");
  }
  if (ps->p < ps->end && (*ps->p == 'e' || *ps->p == 'E')) {
    ps->p++;
    if (ps->p < ps->end && (*ps->p == '+' || *ps->p == '-')) ps->p++;
    if (!json_digits(ps)) return json_fail(ps, "bad number: no digit in the exponent");
  }
  json *v = json_node(ps, JSON_NUMBER);
  if (!v) return NULL;
  v->len = (size_t)(ps->p - s);
  v->text = malloc(v->len + 1);
  if (!v->text) return json_free(v), json_fail(ps, "out of memory");
  memcpy(v->text, s, v->len);
  v->text[v->len] = '\0';
  v->number = strtod(v->text, NULL);
  return v;
}

/* Appends item (and key, for objects) to a container. */
static inline int json_push(json_parser *ps, json *c, json *item, json_buf *key) {
  json **items = realloc(c->items, (c->count + 1) * sizeof *items);
  if (!items) return json_fail(ps, "out of memory"), 0;
  c->items = items;
  if (key) {
    char **keys = realloc(c->keys, (c->count + 1) * sizeof *keys);
    if (!keys) return json_fail(ps, "out of memory"), 0;
    c->keys = keys;
    size_t *klens = realloc(c->klens, (c->count + 1) * sizeof *klens);
    if (!klens) return json_fail(ps, "out of memory"), 0;
    c->klens = klens;
    c->keys[c->count] = key->p;
    c->klens[c->count] = key->n;
    key->p = NULL;
  }
  c->items[c->count++] = item;
  return 1;
}

static inline json *json_container(json_parser *ps, int object) {
  json *c = json_node(ps, object ? JSON_OBJECT : JSON_ARRAY);
  if (!c) return NULL;
  char close = object ? '}' : ']';
  ps->p++; /* the opening bracket */
  json_ws(ps);
  if (ps->p < ps->end && *ps->p == close) {
    ps->p++;
    return c;
  }
  for (;;) {
    json_buf key = {0};
    json_ws(ps);
    if (object) {
      if (ps->p == ps->end || *ps->p != '"')
        return json_free(c), json_fail(ps, "expected a member name");
      if (!json_string_into(ps, &key)) return free(key.p), json_free(c), NULL;
      json_ws(ps);
      if (ps->p == ps->end || *ps->p != ':')
        return free(key.p), json_free(c), json_fail(ps, "expected ':'");
      ps->p++;
    }
    json *item = json_value(ps);
    if (!item) return free(key.p), json_free(c), NULL;
    if (!json_push(ps, c, item, object ? &key : NULL))
      return free(key.p), json_free(item), json_free(c), NULL;
    json_ws(ps);
    if (ps->p < ps->end && *ps->p == ',') {
      ps->p++;
      continue;
    }
    if (ps->p < ps->end && *ps->p == close) {
      ps->p++;
      return c;
    }
    return json_free(c), json_fail(ps, "expected ',' or '%c'", close);
  }
}

static inline json *json_literal(json_parser *ps, const char *word, json_type t, int b) {
  size_t n = strlen(word);
  if ((size_t)(ps->end - ps->p) < n || memcmp(ps->p, word, n) != 0)
    return json_fail(ps, "unexpected character '%c'", *ps->p);
  ps->p += n;
  json *v = json_node(ps, t);
  if (v) v->boolean = b;
  return v;
}

static inline json *json_value(json_parser *ps) {
  json_ws(ps);
  if (ps->p == ps->end) return json_fail(ps, "unexpected end of input");
  if (++ps->depth > JSON_MAX_DEPTH) return json_fail(ps, "nesting deeper than %d", JSON_MAX_DEPTH);
  json *v;
  char c = *ps->p;
  if (c == '{' || c == '[') {
    v = json_container(ps, c == '{');
  } else if (c == '"') {
    json_buf b = {0};
    v = NULL;
    if (json_string_into(ps, &b)) {
      v = json_node(ps, JSON_STRING);
      if (v) {
        v->text = b.p;
        v->len = b.n;
        b.p = NULL;
      }
    }
    free(b.p);
  } else if (c == '-' || (c >= '0' && c <= '9')) {
    v = json_number(ps);
  } else if (c == 't') {
    v = json_literal(ps, "true", JSON_BOOL, 1);
  } else if (c == 'f') {
    v = json_literal(ps, "false", JSON_BOOL, 0);
  } else {
    v = json_literal(ps, "null", JSON_NULL, 0);
  }
  ps->depth--;
  return v;
}

/* Parses s[0..n). On failure returns NULL and writes a message (with the byte offset). */
static inline json *json_parse(const char *s, size_t n, char *err, size_t errlen) {
  json_parser ps = {s, s + n, err, errlen, 0};
  if (err && errlen) err[0] = '\0';
  json *v = json_value(&ps);
  if (v) {
    json_ws(&ps);
    if (ps.p != ps.end) {
      json_free(v);
      v = json_fail(&ps, "trailing characters");
    }
  }
  if (!v && err && errlen) {
    size_t used = strlen(err);
    snprintf(err + used, errlen - used, " at byte %zu", (size_t)(ps.p - s));
  }
  return v;
}

/* Reads and parses a whole file. */
static inline json *json_read_file(const char *path, char *err, size_t errlen) {
  FILE *f = fopen(path, "rb");
  if (!f) {
    snprintf(err, errlen, "cannot open %s", path);
    return NULL;
  }
  size_t cap = 1 << 16, n = 0;
  char *s = malloc(cap);
  size_t got;
  while (s && (got = fread(s + n, 1, cap - n, f)) > 0) {
    n += got;
    if (n == cap) {
      char *t = realloc(s, cap * 2);
      if (!t) {
        free(s);
        s = NULL;
        break;
      }
      s = t;
      cap *= 2;
    }
  }
  fclose(f);
  if (!s) {
    snprintf(err, errlen, "out of memory reading %s", path);
    return NULL;
  }
  json *v = json_parse(s, n, err, errlen);
  free(s);
  return v;
}

/* The first member named key, or NULL (also when obj is not an object). */
static inline const json *json_get(const json *obj, const char *key) {
  if (!obj || obj->type != JSON_OBJECT) return NULL;
  size_t n = strlen(key);
  for (size_t i = 0; i < obj->count; i++)
    if (obj->klens[i] == n && memcmp(obj->keys[i], key, n) == 0) return obj->items[i];
  return NULL;
}

/* The string member key as a NUL-terminated string, or NULL. */
static inline const char *json_get_str(const json *obj, const char *key) {
  const json *v = json_get(obj, key);
  return v && v->type == JSON_STRING ? v->text : NULL;
}

#endif
