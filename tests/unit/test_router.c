/*
 * test_router.c — every routing rule of src/rest/router.c: specificity (literal over parameter
 * over wildcard, with backtracking), parameters and their decoding, wildcard tails, 404 / 405
 * with the allowed methods, trailing slashes, mounting, pattern errors, and query strings.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>

#include "rest/router.h"

enum { GET = 1, POST, PUT, PATCH, DELETE };

static char H[16]; /* distinct handler addresses: &H[k] */
static char scratch[4096];

static sb_route_match m;

static void match(sb_router *r, int method, const char *path) {
  sb_router_match(r, (unsigned)method, path, strlen(path), scratch, sizeof(scratch), &m);
}

static const char *param(const char *name) {
  for (size_t i = 0; i < m.nparams; i++) {
    if (strcmp(m.params[i].name, name) == 0) return m.params[i].value;
  }
  return NULL;
}

static sb_router *router(void) {
  sb_router *r;
  assert_int_equal(sb_router_new(&r, NULL), 0);
  return r;
}

static void test_literal_over_param_over_wildcard(void **state) {
  (void)state;
  sb_router *r = router();
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET, "/users/me", &H[1], NULL), 0);
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET, "/users/:id", &H[2], NULL), 0);
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET, "/users/*rest", &H[3], NULL), 0);
  match(r, GET, "/users/me");
  assert_int_equal(m.status, 0);
  assert_ptr_equal(m.handler, &H[1]);
  assert_int_equal(m.nparams, 0);
  match(r, GET, "/users/42");
  assert_ptr_equal(m.handler, &H[2]);
  assert_string_equal(param("id"), "42");
  match(r, GET, "/users/42/posts/7");
  assert_ptr_equal(m.handler, &H[3]);
  assert_string_equal(param("rest"), "42/posts/7");
  assert_string_equal(m.pattern, "/users/*rest");
  sb_router_free(r);
}

static void test_backtracking(void **state) {
  (void)state;
  sb_router *r = router();
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET, "/a/b/d", &H[1], NULL), 0);
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET, "/a/:x/c", &H[2], NULL), 0);
  match(r, GET, "/a/b/c"); /* the literal b leads nowhere for c: the parameter takes it */
  assert_int_equal(m.status, 0);
  assert_ptr_equal(m.handler, &H[2]);
  assert_string_equal(param("x"), "b");
  match(r, GET, "/a/b/d");
  assert_ptr_equal(m.handler, &H[1]);
  /* a literal route without the method falls back to a parameter route with it */
  assert_int_equal(sb_router_add(r, SB_ROUTE_POST, "/a/:x/d", &H[3], NULL), 0);
  match(r, POST, "/a/b/d");
  assert_ptr_equal(m.handler, &H[3]);
  sb_router_free(r);
}

static void test_params_names_per_route(void **state) {
  (void)state;
  sb_router *r = router();
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET, "/rooms/:roomId", &H[1], NULL), 0);
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET, "/rooms/:name/messages/:messageId", &H[2], NULL), 0);
  match(r, GET, "/rooms/7");
  assert_string_equal(param("roomId"), "7");
  match(r, GET, "/rooms/lobby/messages/99");
  assert_ptr_equal(m.handler, &H[2]);
  assert_int_equal(m.nparams, 2);
  assert_string_equal(param("name"), "lobby");
  assert_string_equal(param("messageId"), "99");
  assert_null(param("roomId"));
  /* an empty segment is not a parameter value */
  match(r, GET, "/rooms//messages/1");
  assert_int_equal(m.status, 404);
  sb_router_free(r);
}

static void test_404_405(void **state) {
  (void)state;
  sb_router *r = router();
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET | SB_ROUTE_POST, "/rooms", &H[1], NULL), 0);
  assert_int_equal(sb_router_add(r, SB_ROUTE_DELETE, "/rooms/:id", &H[2], NULL), 0);
  match(r, DELETE, "/rooms");
  assert_int_equal(m.status, 405);
  assert_int_equal(m.allowed, SB_ROUTE_GET | SB_ROUTE_POST);
  match(r, GET, "/rooms/3");
  assert_int_equal(m.status, 405);
  assert_int_equal(m.allowed, SB_ROUTE_DELETE);
  match(r, GET, "/nothing");
  assert_int_equal(m.status, 404);
  assert_int_equal(m.allowed, 0);
  match(r, GET, "/rooms/3/deeper");
  assert_int_equal(m.status, 404);
  sb_router_free(r);
}

static void test_any_and_trailing_slash_and_root(void **state) {
  (void)state;
  sb_router *r = router();
  assert_int_equal(sb_router_add(r, SB_ROUTE_ANY, "/echo", &H[1], NULL), 0);
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET, "/", &H[2], NULL), 0);
  for (int method = GET; method <= DELETE; method++) {
    match(r, method, "/echo");
    assert_ptr_equal(m.handler, &H[1]);
  }
  match(r, GET, "/echo/");
  assert_ptr_equal(m.handler, &H[1]);
  match(r, GET, "/");
  assert_ptr_equal(m.handler, &H[2]);
  sb_router_free(r);
}

static void test_wildcard_tail(void **state) {
  (void)state;
  sb_router *r = router();
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET, "/static/*", &H[1], NULL), 0);
  match(r, GET, "/static");
  assert_int_equal(m.status, 0);
  assert_string_equal(param("*"), "");
  match(r, GET, "/static/css/app%20main.css");
  assert_string_equal(param("*"), "css/app main.css");
  sb_router_free(r);
}

static void test_decoding(void **state) {
  (void)state;
  sb_router *r = router();
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET, "/users/:name", &H[1], NULL), 0);
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET, "/caf\xc3\xa9", &H[2], NULL), 0);
  match(r, GET, "/users/J%C3%BCrgen");
  assert_string_equal(param("name"), "J\xc3\xbcrgen");
  match(r, GET, "/users/a%2Fb"); /* an encoded slash stays inside the segment */
  assert_string_equal(param("name"), "a/b");
  match(r, GET, "/caf%C3%A9"); /* literals match decoded */
  assert_ptr_equal(m.handler, &H[2]);
  match(r, GET, "/users/%zz");
  assert_int_equal(m.status, 400);
  match(r, GET, "/users/%4");
  assert_int_equal(m.status, 400);
  match(r, GET, "/users/a%00b");
  assert_int_equal(m.status, 400);
  match(r, GET, "no-slash");
  assert_int_equal(m.status, 400);
  sb_router_free(r);
}

static void test_mount(void **state) {
  (void)state;
  sb_router *api = router(), *top = router();
  assert_int_equal(sb_router_add(api, SB_ROUTE_GET, "/rooms/:id", &H[1], NULL), 0);
  assert_int_equal(sb_router_add(top, SB_ROUTE_GET, "/health", &H[2], NULL), 0);
  assert_int_equal(sb_router_mount(top, "/api/v1", api), 0);
  match(top, GET, "/api/v1/rooms/7");
  assert_int_equal(m.status, 0);
  assert_ptr_equal(m.handler, &H[1]);
  assert_string_equal(param("id"), "7");
  /* routes added to the child after mounting are seen too */
  assert_int_equal(sb_router_add(api, SB_ROUTE_POST, "/rooms", &H[3], NULL), 0);
  match(top, POST, "/api/v1/rooms");
  assert_ptr_equal(m.handler, &H[3]);
  match(top, GET, "/api/v1/rooms");
  assert_int_equal(m.status, 405);
  match(top, GET, "/rooms/7");
  assert_int_equal(m.status, 404);
  match(top, GET, "/health");
  assert_ptr_equal(m.handler, &H[2]);
  sb_router_free(top);
  sb_router_free(api);
}

static void test_pattern_errors(void **state) {
  (void)state;
  sb_router *r = router();
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET, "/a/:id", &H[1], NULL), 0);
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET, "/a/:other", &H[2], NULL), SB_EINVAL); /* taken */
  assert_int_equal(sb_router_add(r, SB_ROUTE_POST, "/a/:other", &H[2], NULL), 0);
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET, "/b/:", &H[1], NULL), SB_EINVAL);
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET, "/b/*/c", &H[1], NULL), SB_EINVAL);
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET, "b", &H[1], NULL), SB_EINVAL);
  assert_int_equal(sb_router_add(r, SB_ROUTE_GET, "/b%20c", &H[1], NULL), SB_EINVAL);
  assert_int_equal(sb_router_add(r, 0, "/c", &H[1], NULL), SB_EINVAL);
  assert_int_equal(sb_router_add(r, 1u << 7, "/c", &H[1], NULL), SB_EINVAL);
  sb_router_free(r);
}

static void test_query(void **state) {
  (void)state;
  sb_query_pair p[8];
  char buf[256];
  const char *q = "a=1&b=x%20y+z&flag&&empty=&c%3D=%26";
  long n = sb_query_parse(q, strlen(q), p, 8, buf, sizeof(buf));
  assert_int_equal(n, 5);
  assert_string_equal(p[0].key, "a");
  assert_string_equal(p[0].value, "1");
  assert_string_equal(p[1].key, "b");
  assert_string_equal(p[1].value, "x y z");
  assert_string_equal(p[2].key, "flag");
  assert_string_equal(p[2].value, "");
  assert_string_equal(p[3].key, "empty");
  assert_int_equal(p[3].value_len, 0);
  assert_string_equal(p[4].key, "c=");
  assert_string_equal(p[4].value, "&");
  assert_int_equal(sb_query_parse("a=%zz", 5, p, 8, buf, sizeof(buf)), -1);
  assert_int_equal(sb_query_parse("a&b&c", 5, p, 2, buf, sizeof(buf)), -1);
  assert_int_equal(sb_query_parse("", 0, p, 2, buf, sizeof(buf)), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_literal_over_param_over_wildcard),
      cmocka_unit_test(test_backtracking),
      cmocka_unit_test(test_params_names_per_route),
      cmocka_unit_test(test_404_405),
      cmocka_unit_test(test_any_and_trailing_slash_and_root),
      cmocka_unit_test(test_wildcard_tail),
      cmocka_unit_test(test_decoding),
      cmocka_unit_test(test_mount),
      cmocka_unit_test(test_pattern_errors),
      cmocka_unit_test(test_query),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
