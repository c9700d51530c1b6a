/*
 * static.c — static files from a folder (sb_app_static): the demo page, the client script.
 *
 * Safety rests on two independent walls:
 *   1. The path. The part of the request path after the mount prefix is percent-decoded one
 *      segment at a time, and refused when a segment is "." or ".." (however encoded), holds
 *      an encoded '/' or a '\' (either could rebuild a path separator after decoding), a NUL
 *      or a control character, or is empty ("//": the start of an absolute path). Segments
 *      starting with '.' (".git", ".env") are not served. What is left is a relative path
 *      whose segments are plain names.
 *   2. The file system. The path is opened below the folder's directory descriptor one
 *      segment at a time with openat(O_NOFOLLOW), so a symbolic link — which could point
 *      anywhere, and which the first wall cannot see — is never followed. Only regular files
 *      are served (a FIFO would block: every open is O_NONBLOCK); a directory serves its
 *      index.html (the path must end with '/', or it is redirected there, so that relative
 *      links in the page resolve).
 *
 * Files are read whole, synchronously, up to 16 MiB: this is for a demo page and a script
 * (page-cache reads), not for large downloads. A weak ETag (size and modification time) lets
 * a browser revalidate (304) instead of downloading again.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>
#include <time.h>
#include <unistd.h>

#include "common/common.h"
#include "http/http.h"
#include "rest/static.h"

#define SB_STATIC_MAX_FILE (16 * 1024 * 1024)
#define SB_STATIC_MAX_PATH 1024

struct sb_static_mount {
  int dirfd;
  size_t prefix_len;
  const sb_allocator *a;
};

int sb_static_new(sb_static_mount **out, const char *prefix, const char *folder,
                  const sb_allocator *a) {
  *out = NULL;
  size_t n = prefix ? strlen(prefix) : 0;
  while (n > 0 && prefix[n - 1] == '/') n--; /* as sb_app_use reads it */
  int fd = open(folder, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) return errno == ENOMEM ? SB_ENOMEM : SB_EIO;
  sb_static_mount *m = sb_malloc(a, sizeof(*m));
  if (!m) {
    close(fd);
    return SB_ENOMEM;
  }
  m->dirfd = fd;
  m->prefix_len = n;
  m->a = a;
  *out = m;
  return 0;
}

void sb_static_free(sb_static_mount *m, const sb_allocator *a) {
  if (!m) return;
  close(m->dirfd);
  sb_free(a, m);
}


/* If-None-Match holds our tag (or "*"): a weak comparison, RFC 9110 §13.1.2. */
static int etag_matches(const char *header, const char *etag) {
  if (!header) return 0;
  if (strcmp(header, "*") == 0) return 1;
  const char *tag = etag + 2; /* compare without the W/ */
  size_t n = strlen(tag);
  for (const char *p = header; (p = strstr(p, tag)) != NULL; p += n) {
    char after = p[n];
    if (after == '\0' || after == ',' || after == ' ' || after == '\t') return 1;
  }
  return 0;
}

static void serve(sb_req *req, const sb_allocator *a, int fd, const struct stat *st,
                  const char *name) {
  if (st->st_size > SB_STATIC_MAX_FILE) {
    close(fd);
    sb_fail(req, 500, "static file larger than 16 MiB");
    return;
  }
  char etag[80], modified[40];
  snprintf(etag, sizeof(etag), "W/\"%llx-%llx-%lx\"", (unsigned long long)st->st_size,
           (unsigned long long)st->st_mtim.tv_sec, (unsigned long)st->st_mtim.tv_nsec);
  sb_http_date(st->st_mtim.tv_sec, modified, sizeof(modified));
  sb_respond_header(req, "ETag", etag);
  sb_respond_header(req, "Last-Modified", modified);
  sb_respond_header(req, "Cache-Control", "no-cache"); /* revalidate: cheap with the ETag */
  if (etag_matches(sb_req_header(req, "If-None-Match"), etag)) {
    close(fd);
    sb_respond(req, 304, NULL, 0);
    return;
  }
  sb_respond_header(req, "Content-Type", sb_static_type(name));
  sb_respond_header(req, "X-Content-Type-Options", "nosniff");
  size_t size = (size_t)st->st_size;
  if (sb_req_is_head(req)) {
    close(fd);
    sb_respond_sized(req, 200, size);
    return;
  }
  uint8_t *buf = size ? sb_malloc(a, size) : NULL;
  if (size && !buf) {
    close(fd);
    sb_fail(req, 503, "out of memory for a static file");
    return;
  }
  size_t got = 0;
  while (got < size) { /* a file that shrank meanwhile is served as it is now */
    ssize_t r = read(fd, buf + got, size - got);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += (size_t)r;
  }
  close(fd);
  sb_respond(req, 200, buf, got);
  sb_free(a, buf);
}

void sb_static_handler(sb_req *req, void *user) {
  sb_static_mount *m = user;
  if (!sb_req_is_http(req) || sb_req_method(req) != SB_METHOD_GET) {
    sb_next(req); /* over WebSocket, and for other methods, the routes answer */
    return;
  }
  const char *path = sb_req_path(req);
  const char *rest = path + m->prefix_len;
  char rel[SB_STATIC_MAX_PATH];
  int dir;
  long n = sb_static_path(rest, strlen(rest), rel, sizeof(rel), &dir);
  if (n == SB_STATIC_BAD) return sb_fail(req, 400, "malformed static file path");
  if (n == SB_STATIC_FORBIDDEN) return sb_fail(req, 403, "path traversal refused");
  if (n == SB_STATIC_HIDDEN) return sb_next(req);
  struct stat st;
  int status;
  int fd = sb_static_open(m->dirfd, rel, &st, &status);
  if (fd < 0) {
    if (status == 404) return sb_next(req); /* a route may still answer; else 404 */
    return sb_fail(req, (uint16_t)status, status == 403 ? "symbolic link or no permission"
                                                        : "cannot open a static file");
  }
  const char *name = rel;
  if (S_ISDIR(st.st_mode)) {
    if (!dir) { /* "/static/docs" → "/static/docs/", so that relative links resolve */
      close(fd);
      const char *q = sb_req_query_string(req);
      size_t plen = strlen(path), qlen = strlen(q), cap = plen + qlen + 3;
      char stack[512], *loc = cap <= sizeof(stack) ? stack : sb_malloc(m->a, cap);
      if (!loc) return sb_fail(req, 503, "out of memory");
      memcpy(loc, path, plen);
      loc[plen] = '/';
      size_t o = plen + 1;
      if (qlen) {
        loc[o++] = '?';
        memcpy(loc + o, q, qlen);
        o += qlen;
      }
      loc[o] = '\0';
      int r = sb_respond_header(req, "Location", loc);
      if (loc != stack) sb_free(m->a, loc);
      if (r) return sb_fail(req, 400, "bad redirect");
      sb_respond(req, 301, NULL, 0);
      return;
    }
    /* the same opener as for any file: no link followed, the same status mapping */
    int code = 0;
    int index = sb_static_open(fd, "index.html", &st, &code);
    close(fd);
    if (index < 0) {
      if (code == 404) return sb_next(req);
      return sb_fail(req, (uint16_t)code, "cannot open index.html");
    }
    fd = index;
    name = "index.html";
  } else if (dir) { /* "file.txt/" */
    close(fd);
    return sb_next(req);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return sb_fail(req, 403, "not a regular file");
  }
  serve(req, m->a, fd, &st, name);
}
