/*
 * static_path.c — the parts of static file serving that do not need the app: the path
 * sanitizer (no I/O), the segment-by-segment opener, the content types. See static.c for the
 * reasoning; tests/unit/test_static.c and tests/fuzz/fuzz_static.c hold them to it.
 */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <strings.h>
#include <unistd.h>

#include "rest/static.h"

#define SB_STATIC_MAX_SEGMENT 1024

static int hex(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

long sb_static_path(const char *rest, size_t n, char *out, size_t cap, int *dir) {
  *dir = 0;
  if (cap == 0) return SB_STATIC_BAD;
  out[0] = '\0';
  if (n == 0) return 0;                       /* the folder itself, without the '/' */
  if (rest[0] != '/') return SB_STATIC_BAD;
  size_t o = 0, i = 1;
  for (;;) {
    if (i == n) { /* the path ends with '/' */
      *dir = 1;
      break;
    }
    size_t j = i;
    while (j < n && rest[j] != '/') j++;
    if (j == i) return SB_STATIC_FORBIDDEN; /* "//" */
    if (o) {
      if (o + 1 >= cap) return SB_STATIC_BAD;
      out[o++] = '/';
    }
    size_t start = o;
    for (size_t k = i; k < j; k++) {
      unsigned char c = (unsigned char)rest[k];
      if (c == '%') {
        if (k + 2 >= j) return SB_STATIC_BAD; /* an escape cut short */
        int hi = hex(rest[k + 1]), lo = hex(rest[k + 2]);
        if (hi < 0 || lo < 0) return SB_STATIC_BAD;
        c = (unsigned char)(hi * 16 + lo);
        k += 2;
      }
      if (c == '/' || c == '\\') return SB_STATIC_FORBIDDEN;
      if (c < 0x20 || c == 0x7f) return SB_STATIC_BAD;
      if (o + 1 >= cap) return SB_STATIC_BAD;
      out[o++] = (char)c;
    }
    size_t len = o - start;
    const char *seg = out + start;
    if ((len == 1 && seg[0] == '.') || (len == 2 && seg[0] == '.' && seg[1] == '.'))
      return SB_STATIC_FORBIDDEN;
    if (seg[0] == '.') return SB_STATIC_HIDDEN;
    if (j == n) break;
    i = j + 1;
  }
  out[o] = '\0';
  return (long)o;
}

static int errno_status(int e) {
  if (e == ENOENT || e == ENOTDIR || e == ENAMETOOLONG) return 404;
  if (e == ELOOP || e == EACCES || e == EPERM) return 403;
  return 500;
}

int sb_static_open(int root, const char *rel, struct stat *st, int *status) {
  int fd = openat(root, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    *status = 500;
    return -1;
  }
  char seg[SB_STATIC_MAX_SEGMENT];
  const char *p = rel;
  while (*p) {
    const char *slash = strchr(p, '/');
    size_t len = slash ? (size_t)(slash - p) : strlen(p);
    if (len >= sizeof(seg)) {
      close(fd);
      *status = 404;
      return -1;
    }
    memcpy(seg, p, len);
    seg[len] = '\0';
    /* O_NOCTTY: a terminal device under the folder must not become ours by being opened. */
    int flags = O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY |
                (slash ? O_DIRECTORY : 0);
    int next = openat(fd, seg, flags);
    if (next < 0) {
      int e = errno;
      /* O_DIRECTORY|O_NOFOLLOW on a link fails with ENOTDIR: tell a link from a missing
       * directory, so that a link is refused as such. */
      struct stat lst;
      if (e == ENOTDIR && fstatat(fd, seg, &lst, AT_SYMLINK_NOFOLLOW) == 0 && S_ISLNK(lst.st_mode))
        e = ELOOP;
      close(fd);
      *status = errno_status(e);
      return -1;
    }
    close(fd);
    fd = next;
    p += len + (slash ? 1 : 0);
  }
  if (fstat(fd, st) != 0) {
    close(fd);
    *status = 500;
    return -1;
  }
  return fd;
}

const char *sb_static_type(const char *name) {
  static const struct {
    const char *ext, *type;
  } types[] = {
      {"html", "text/html; charset=utf-8"},  {"htm", "text/html; charset=utf-8"},
      {"js", "text/javascript; charset=utf-8"}, {"mjs", "text/javascript; charset=utf-8"},
      {"css", "text/css; charset=utf-8"},    {"json", "application/json"},
      {"svg", "image/svg+xml"},              {"png", "image/png"},
      {"ico", "image/x-icon"},               {"txt", "text/plain; charset=utf-8"},
      {"wasm", "application/wasm"},          {"map", "application/json"},
  };
  const char *base = strrchr(name, '/');
  base = base ? base + 1 : name;
  const char *dot = strrchr(base, '.');
  if (dot && dot != base) {
    for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
      if (strcasecmp(dot + 1, types[i].ext) == 0) return types[i].type;
    }
  }
  return "application/octet-stream";
}

