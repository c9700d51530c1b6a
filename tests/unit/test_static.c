/*
 * test_static.c — static files (src/rest/static_path.c): the path sanitizer on plain,
 * encoded, traversing, absolute and malformed paths; the opener on a real folder with
 * symbolic links out of it and inside it, a FIFO, a file used as a directory and missing
 * files; the content types.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "rest/static.h"

typedef struct {
  const char *rest;
  long result;      /* length, or SB_STATIC_* */
  const char *out;  /* when result >= 0 */
  int dir;
} path_case;

static const path_case cases[] = {
    {"", 0, "", 0},
    {"/", 0, "", 1},
    {"/app.js", 6, "app.js", 0},
    {"/a/b/c.txt", 9, "a/b/c.txt", 0},
    {"/sub/", 3, "sub", 1},
    {"/a%20b.txt", 7, "a b.txt", 0},
    {"/J%C3%BCrgen", 7, "J\xc3\xbcrgen", 0},
    {"/%41pp.js", 6, "App.js", 0},
    {"/a..b", 4, "a..b", 0},       /* dots inside a name are fine */
    {"/a.", 2, "a.", 0},
    {"/...", SB_STATIC_HIDDEN, NULL, 0},
    {"/..", SB_STATIC_FORBIDDEN, NULL, 0},
    {"/../etc/passwd", SB_STATIC_FORBIDDEN, NULL, 0},
    {"/a/../../b", SB_STATIC_FORBIDDEN, NULL, 0},
    {"/a/..", SB_STATIC_FORBIDDEN, NULL, 0},
    {"/.", SB_STATIC_FORBIDDEN, NULL, 0},
    {"/./a", SB_STATIC_FORBIDDEN, NULL, 0},
    {"/%2e%2e/secret", SB_STATIC_FORBIDDEN, NULL, 0},
    {"/%2E%2E/secret", SB_STATIC_FORBIDDEN, NULL, 0},
    {"/.%2e/secret", SB_STATIC_FORBIDDEN, NULL, 0},
    {"/%2e/secret", SB_STATIC_FORBIDDEN, NULL, 0},
    {"/..%2fsecret", SB_STATIC_FORBIDDEN, NULL, 0},
    {"/a%2fb", SB_STATIC_FORBIDDEN, NULL, 0},
    {"/a%2Fb", SB_STATIC_FORBIDDEN, NULL, 0},
    {"/%2fetc%2fpasswd", SB_STATIC_FORBIDDEN, NULL, 0},
    {"//etc/passwd", SB_STATIC_FORBIDDEN, NULL, 0},
    {"/a//b", SB_STATIC_FORBIDDEN, NULL, 0},
    {"/a\\..\\b", SB_STATIC_FORBIDDEN, NULL, 0},
    {"/a%5cb", SB_STATIC_FORBIDDEN, NULL, 0},
    {"/%00", SB_STATIC_BAD, NULL, 0},
    {"/a%00.txt", SB_STATIC_BAD, NULL, 0},
    {"/a%0a", SB_STATIC_BAD, NULL, 0},
    {"/a%7f", SB_STATIC_BAD, NULL, 0},
    {"/a\x01", SB_STATIC_BAD, NULL, 0},
    {"/%zz", SB_STATIC_BAD, NULL, 0},
    {"/%2", SB_STATIC_BAD, NULL, 0},
    {"/%", SB_STATIC_BAD, NULL, 0},
    {"/a%2/b", SB_STATIC_BAD, NULL, 0}, /* an escape may not take the '/' */
    {"/.git/config", SB_STATIC_HIDDEN, NULL, 0},
    {"/a/.env", SB_STATIC_HIDDEN, NULL, 0},
    {"/%2egit", SB_STATIC_HIDDEN, NULL, 0},
    {"relative", SB_STATIC_BAD, NULL, 0},
};

static void test_path(void **state) {
  (void)state;
  for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
    const path_case *c = &cases[i];
    char out[64];
    int dir = -1;
    long r = sb_static_path(c->rest, strlen(c->rest), out, sizeof(out), &dir);
    if (r != c->result) fail_msg("\"%s\": expected %ld, actual %ld", c->rest, c->result, r);
    if (r >= 0) {
      if (strcmp(out, c->out) != 0) fail_msg("\"%s\": expected \"%s\", actual \"%s\"", c->rest, c->out, out);
      if (dir != c->dir) fail_msg("\"%s\": dir expected %d, actual %d", c->rest, c->dir, dir);
    }
  }
  /* NUL inside the raw path (not an escape) */
  char out[16];
  int dir;
  assert_int_equal(sb_static_path("/a\0b", 4, out, sizeof(out), &dir), SB_STATIC_BAD);
  /* too long for the output */
  assert_int_equal(sb_static_path("/abcdefghij", 11, out, 8, &dir), SB_STATIC_BAD);
  assert_int_equal(sb_static_path("/abcdef", 7, out, 8, &dir), 6);
}

static char tmpdir[256];
static int root = -1;

static void make(const char *rel, const char *content) {
  char p[512];
  snprintf(p, sizeof(p), "%s/%s", tmpdir, rel);
  FILE *f = fopen(p, "w");
  assert_non_null(f);
  fputs(content, f);
  fclose(f);
}

static void link_to(const char *target, const char *rel) {
  char p[512];
  snprintf(p, sizeof(p), "%s/%s", tmpdir, rel);
  assert_int_equal(symlink(target, p), 0);
}

static int setup(void **state) {
  (void)state;
  snprintf(tmpdir, sizeof(tmpdir), "/tmp/sb-static-XXXXXX");
  assert_non_null(mkdtemp(tmpdir));
  char p[512];
  snprintf(p, sizeof(p), "%s/pub", tmpdir);
  assert_int_equal(mkdir(p, 0755), 0);
  snprintf(p, sizeof(p), "%s/pub/sub", tmpdir);
  assert_int_equal(mkdir(p, 0755), 0);
  make("secret.txt", "secret");
  make("pub/app.js", "js");
  make("pub/sub/index.html", "<p>");
  link_to("../secret.txt", "pub/escape.txt");
  link_to("..", "pub/up");
  link_to("app.js", "pub/inside.js");
  link_to("sub", "pub/sublink");
  snprintf(p, sizeof(p), "%s/pub/fifo", tmpdir);
  assert_int_equal(mkfifo(p, 0644), 0);
  snprintf(p, sizeof(p), "%s/pub", tmpdir);
  root = open(p, O_RDONLY | O_DIRECTORY);
  assert_true(root >= 0);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  close(root);
  char cmd[300];
  snprintf(cmd, sizeof(cmd), "rm -rf '%s'", tmpdir);
  return system(cmd) == 0 ? 0 : -1;
}

static void expect_open(const char *rel, int want_status, mode_t want_type) {
  struct stat st;
  int status = 0;
  int fd = sb_static_open(root, rel, &st, &status);
  if (want_status == 200) {
    if (fd < 0) fail_msg("\"%s\": expected to open, actual status %d", rel, status);
    if ((st.st_mode & S_IFMT) != want_type) fail_msg("\"%s\": unexpected file type", rel);
    close(fd);
  } else {
    if (fd >= 0) {
      close(fd);
      fail_msg("\"%s\": expected status %d, actual: opened", rel, want_status);
    }
    if (status != want_status) fail_msg("\"%s\": expected status %d, actual %d", rel, want_status, status);
  }
}

static void test_open(void **state) {
  (void)state;
  expect_open("", 200, S_IFDIR);
  expect_open("app.js", 200, S_IFREG);
  expect_open("sub", 200, S_IFDIR);
  expect_open("sub/index.html", 200, S_IFREG);
  expect_open("fifo", 200, S_IFIFO); /* opened without blocking; the handler refuses it */
  expect_open("missing", 404, 0);
  expect_open("sub/missing", 404, 0);
  expect_open("app.js/x", 404, 0);   /* a file used as a directory */
  expect_open("escape.txt", 403, 0); /* a link to a file out of the folder */
  expect_open("up", 403, 0);         /* a link to the parent */
  expect_open("up/secret.txt", 403, 0);
  expect_open("inside.js", 403, 0);  /* links are never followed, even inside */
  expect_open("sublink/index.html", 403, 0);
}

static void test_types(void **state) {
  (void)state;
  static const char *const t[][2] = {
      {"index.html", "text/html; charset=utf-8"}, {"a.HTM", "text/html; charset=utf-8"},
      {"app.js", "text/javascript; charset=utf-8"}, {"m.mjs", "text/javascript; charset=utf-8"},
      {"s.css", "text/css; charset=utf-8"}, {"d.json", "application/json"},
      {"l.svg", "image/svg+xml"}, {"p.png", "image/png"}, {"favicon.ico", "image/x-icon"},
      {"n.txt", "text/plain; charset=utf-8"}, {"c.wasm", "application/wasm"},
      {"app.js.map", "application/json"}, {"blob.bin", "application/octet-stream"},
      {"noext", "application/octet-stream"}, {"dir.js/file", "application/octet-stream"},
      {"sub/x.css", "text/css; charset=utf-8"},
  };
  for (size_t i = 0; i < sizeof(t) / sizeof(t[0]); i++) assert_string_equal(sb_static_type(t[i][0]), t[i][1]);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_path),
      cmocka_unit_test_setup_teardown(test_open, setup, teardown),
      cmocka_unit_test(test_types),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
