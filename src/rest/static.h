/*
 * static.h — static files for sb_app_static(): the path sanitizer and the opener (no I/O in
 * the sanitizer; tested and fuzzed on their own), the content types, and the middleware.
 * Internal.
 */
#ifndef SB_REST_STATIC_H
#define SB_REST_STATIC_H

#include <stddef.h>
#include <sys/stat.h>

#include "switchboard.h"

/* sb_static_path refusals (negative, so that a length is never mistaken for one). */
enum {
  SB_STATIC_BAD = -1,       /* 400: a malformed escape, NUL, a control character, too long */
  SB_STATIC_FORBIDDEN = -2, /* 403: "." or ".." (plain or encoded), an encoded '/', a '\',
                               an empty segment ("//": an absolute path) */
  SB_STATIC_HIDDEN = -3     /* a segment starting with '.' (".git", ".env"): not served */
};

/*
 * Turns the rest of a request path after the mount prefix ("" or "/a/b%20c/") into a path
 * relative to the folder ("a/b c"), percent-decoded and checked segment by segment. *dir is
 * set when it ends with '/' (or is "/"). Returns the length written to out[0..cap) (NUL-
 * terminated; 0 for the folder itself) or an SB_STATIC_* refusal.
 */
long sb_static_path(const char *rest, size_t n, char *out, size_t cap, int *dir);

/*
 * Opens `rel` (from sb_static_path) below the directory `root`, one segment at a time with
 * openat and O_NOFOLLOW, so that no symbolic link is followed (one pointing out of the folder
 * cannot be used; links inside it are not served either). Returns the descriptor (*st filled)
 * or -1 with *status: 404 (missing), 403 (a symbolic link, no permission), 500.
 */
int sb_static_open(int root, const char *rel, struct stat *st, int *status);

/* The Content-Type for a file name, by its extension; application/octet-stream by default. */
const char *sb_static_type(const char *name);

/* A mounted folder, and the middleware that serves it (user = the mount). */
typedef struct sb_static_mount sb_static_mount;
int sb_static_new(sb_static_mount **out, const char *prefix, const char *folder,
                  const sb_allocator *a);
void sb_static_free(sb_static_mount *m, const sb_allocator *a);
void sb_static_handler(sb_req *req, void *mount);

/* app.c, for the handler. */
int sb_req_is_head(const sb_req *req);
const char *sb_req_query_string(const sb_req *req);
/* Answers a plain HTTP request with headers only, announcing `content_length` (a HEAD). */
int sb_respond_sized(sb_req *req, uint16_t status, size_t content_length);

#endif
