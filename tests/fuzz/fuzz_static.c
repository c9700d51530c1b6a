/*
 * fuzz_static.c — the static-file path sanitizer (src/rest/static_path.c) on arbitrary bytes.
 * Whatever it accepts must be a plain relative path: no '.' or '..' segment, no empty
 * segment, no leading '/', no '\', no NUL or control character, no segment starting with '.',
 * and at most the input's length. Re-encoding the accepted path (every byte percent-encoded)
 * must give the same path back: the decoding is exact, not approximate.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "common/strbuf.h"
#include "rest/static.h"

#define CHECK(cond, ...)                                                                     \
  do {                                                                                       \
    if (!(cond)) {                                                                           \
      fprintf(stderr, "fuzz_static: check failed: %s: ", #cond);                             \
      fprintf(stderr, __VA_ARGS__);                                                          \
      fprintf(stderr, "\n");                                                                 \
      abort();                                                                               \
    }                                                                                        \
  } while (0)

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size > 4096) return 0;
  char *in = malloc(size + 2);
  if (!in) return 0;
  in[0] = '/'; /* what follows a mount prefix starts with '/' */
  memcpy(in + 1, data, size);
  char out[1024];
  int dir = -1;
  long n = sb_static_path(in, size + 1, out, sizeof(out), &dir);
  CHECK(n >= SB_STATIC_HIDDEN, "result %ld", n);
  if (n >= 0) {
    CHECK((size_t)n == strlen(out), "length %ld for \"%s\"", n, out);
    CHECK((size_t)n <= size, "longer than the input");
    CHECK(dir == 0 || dir == 1, "dir %d", dir);
    CHECK(n == 0 || out[0] != '/', "absolute: %s", out);
    for (long i = 0; i < n; i++) {
      unsigned char c = (unsigned char)out[i];
      CHECK(c >= 0x20 && c != 0x7f && c != '\\', "byte %02x at %ld", c, i);
    }
    /* every segment is a plain name */
    const char *p = out;
    while (n > 0) {
      const char *slash = strchr(p, '/');
      size_t len = slash ? (size_t)(slash - p) : strlen(p);
      CHECK(len > 0, "an empty segment in \"%s\"", out);
      CHECK(p[0] != '.', "a segment starting with '.' in \"%s\"", out);
      if (!slash) break;
      p = slash + 1;
    }
    /* encode every byte and decode again: the same path */
    if (n > 0 && (size_t)n * 3 + 2 < 4000) {
      char enc[4096], again[1024];
      sb_strbuf sb;
      sb_strbuf_init(&sb, enc, sizeof(enc));
      sb_strbuf_appends(&sb, "/");
      for (long i = 0; i < n; i++) {
        if (out[i] == '/') sb_strbuf_appends(&sb, "/");
        else sb_strbuf_appendf(&sb, "%%%02X", (unsigned char)out[i]);
      }
      if (dir) sb_strbuf_appends(&sb, "/");
      CHECK(!sb_strbuf_overflowed(&sb), "the encoding of %ld bytes does not fit", n);
      int dir2 = -1;
      long m = sb_static_path(enc, sb.len, again, sizeof(again), &dir2);
      CHECK(m == n && strcmp(again, out) == 0 && dir2 == dir, "re-encoded \"%s\" gives %ld", out, m);
    }
  }
  free(in);
  return 0;
}
