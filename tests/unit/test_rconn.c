/*
 * test_rconn.c — the Redis connection of the redis engine (src/engine/rconn.c) against a real
 * redis-server on a real libuv loop: commands, scripts (EVALSHA, and EVAL after NOSCRIPT),
 * timeouts of a stopped Redis, fail-fast while down, reconnects, pub/sub across a restart, and
 * freeing with commands in flight. Every callback is counted; the loop must close cleanly.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <cmocka.h>
#include <openssl/sha.h>

#include "engine/rconn.h"
#include "redis_server.h"

static test_redis srv;
static uv_loop_t loop;
/* The connection's handles do not keep the loop alive (an application's server does): the test
 * keeps it alive with a timer of its own while it waits. */
static uv_timer_t keepalive;
static void on_keepalive(uv_timer_t *t) { (void)t; }

typedef struct seen {
  int ups, downs;
  int replies, failures;
  char last[256];
  size_t last_len;
  int last_type;
  int messages;
  char msg_channel[64];
  char msg[64];
  size_t msg_len;
} seen;

static void on_state(void *user, int up) {
  seen *s = user;
  if (up) s->ups++;
  else s->downs++;
}

static void on_message(void *user, const char *ch, size_t clen, const char *data, size_t len) {
  seen *s = user;
  s->messages++;
  snprintf(s->msg_channel, sizeof(s->msg_channel), "%.*s", (int)clen, ch);
  s->msg_len = len < sizeof(s->msg) ? len : sizeof(s->msg);
  memcpy(s->msg, data, s->msg_len);
}

static int barriers_ok, barriers_failed;
static void on_barrier(void *ctx, int status) {
  (void)ctx;
  if (status == 0) barriers_ok++;
  else barriers_failed++;
}

static void on_reply(void *ctx, int status, redisReply *r) {
  seen *s = ctx;
  if (status != 0) {
    assert_null(r);
    s->failures++;
    return;
  }
  s->replies++;
  s->last_type = r->type;
  s->last_len = r->type == REDIS_REPLY_INTEGER ? (size_t)snprintf(s->last, sizeof(s->last), "%lld", r->integer)
                                                : (size_t)snprintf(s->last, sizeof(s->last), "%.*s", (int)r->len, r->str ? r->str : "");
}

/* Runs the loop until *flag reaches want, or ms pass. */
static int run_until(const int *flag, int want, int ms) {
  uint64_t end = uv_now(&loop) + (uint64_t)ms;
  while (*flag < want && uv_now(&loop) < end) {
    uv_update_time(&loop);
    uv_run(&loop, UV_RUN_NOWAIT);
    test_redis_sleep_ms(2);
    uv_update_time(&loop);
  }
  return *flag >= want;
}

static void run_for(int ms) {
  int never = 0;
  run_until(&never, 1, ms);
}

static int cmd(sb_rconn *c, seen *s, int argc, const char **argv) {
  size_t lens[8];
  for (int i = 0; i < argc; i++) lens[i] = strlen(argv[i]);
  return sb_rconn_command(c, argc, argv, lens, on_reply, s);
}

static const char *const scripts[] = {
    "return 'one:' .. ARGV[1]",
    "redis.call('SET', KEYS[1], ARGV[1]) return redis.call('GET', KEYS[1])",
};

static sb_rconn *open_conn(seen *s, int pubsub, unsigned timeout_ms) {
  sb_rconn_options o = {0};
  o.url = srv.url;
  o.pubsub = pubsub;
  o.command_timeout_ms = timeout_ms;
  o.backoff_min_ms = 20;
  o.backoff_max_ms = 200;
  o.scripts = pubsub ? NULL : scripts;
  o.nscripts = pubsub ? 0 : 2;
  o.on_state = on_state;
  o.on_message = on_message;
  o.user = s;
  sb_rconn *c;
  char err[160];
  assert_int_equal(sb_rconn_new(&c, &loop, &o, err, sizeof(err)), 0);
  assert_true(run_until(&s->ups, 1, 3000));
  return c;
}

static void close_all(sb_rconn *a, sb_rconn *b) {
  sb_rconn_free(a);
  sb_rconn_free(b);
  run_for(50); /* the handles close */
}

static int setup(void **state) {
  (void)state;
  memset(&srv, 0, sizeof(srv));
  if (test_redis_start(&srv) != 0) {
    fprintf(stderr, "cannot start redis-server\n");
    return -1;
  }
  uv_loop_init(&loop);
  uv_timer_init(&loop, &keepalive);
  uv_timer_start(&keepalive, on_keepalive, 1000, 1000);
  return 0;
}

static int teardown(void **state) {
  (void)state;
  test_redis_stop(&srv);
  uv_close((uv_handle_t *)&keepalive, NULL);
  uv_run(&loop, UV_RUN_DEFAULT);
  int r = uv_loop_close(&loop);
  if (r != 0) fprintf(stderr, "uv_loop_close: %s\n", uv_strerror(r));
  return r == 0 ? 0 : -1;
}

static void test_bad_urls(void **state) {
  (void)state;
  const char *bad[] = {"", "http://x", "redis://", "redis://:1", "redis://h:0", "redis://h:70000",
                       "redis://h:12x", "unix:", "redis://[::1"};
  for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
    sb_rconn_options o = {0};
    o.url = bad[i];
    sb_rconn *c = (sb_rconn *)1;
    char err[160] = "";
    assert_int_equal(sb_rconn_new(&c, &loop, &o, err, sizeof(err)), SB_EINVAL);
    assert_null(c);
    assert_non_null(strstr(err, "redis url"));
  }
}

static void test_commands_and_run_id(void **state) {
  (void)state;
  seen s = {0};
  sb_rconn *c = open_conn(&s, 0, 2000);
  assert_int_equal(strlen(sb_rconn_run_id(c)), 40);
  const char *set[] = {"SET", "k", "v1"}, *get[] = {"GET", "k"};
  assert_int_equal(cmd(c, &s, 3, set), 0);
  assert_int_equal(cmd(c, &s, 2, get), 0);
  assert_int_equal(s.replies, 0); /* never inside the call */
  assert_true(run_until(&s.replies, 2, 2000));
  assert_string_equal(s.last, "v1");
  assert_int_equal(s.failures, 0);
  close_all(c, NULL);
}

static void test_scripts_and_noscript(void **state) {
  (void)state;
  seen s = {0};
  sb_rconn *c = open_conn(&s, 0, 2000);
  const char *argv[] = {"abc"};
  size_t lens[] = {3};
  assert_int_equal(sb_rconn_script(c, 0, 0, 1, argv, lens, on_reply, &s), 0);
  assert_true(run_until(&s.replies, 1, 2000));
  assert_string_equal(s.last, "one:abc");
  /* The cache is flushed behind the engine's back: the next calls are retried as EVAL. */
  const char *flush[] = {"SCRIPT", "FLUSH"};
  assert_int_equal(cmd(c, &s, 2, flush), 0);
  const char *kv[] = {"key1", "val1"};
  size_t kvl[] = {4, 4};
  assert_int_equal(sb_rconn_script(c, 1, 1, 2, kv, kvl, on_reply, &s), 0);
  assert_int_equal(sb_rconn_script(c, 0, 0, 1, argv, lens, on_reply, &s), 0);
  assert_true(run_until(&s.replies, 4, 2000));
  assert_int_equal(s.failures, 0);
  assert_string_equal(s.last, "one:abc");
  redisContext *sc = test_redis_connect(&srv);
  redisReply *r = redisCommand(sc, "GET key1");
  assert_string_equal(r->str, "val1");
  freeReplyObject(r);
  /* ...and loaded again, so that the calls after them need no retry. */
  unsigned char d[SHA_DIGEST_LENGTH];
  char sha[41];
  SHA1((const unsigned char *)scripts[1], strlen(scripts[1]), d);
  for (int k = 0; k < SHA_DIGEST_LENGTH; k++) snprintf(sha + 2 * k, 3, "%02x", d[k]);
  r = redisCommand(sc, "SCRIPT EXISTS %s", sha);
  assert_int_equal(r->type, REDIS_REPLY_ARRAY);
  assert_int_equal(r->element[0]->integer, 1);
  freeReplyObject(r);
  /* A call larger than the ring keeps (its buffer goes with the record) retried as EVAL: the
   * retry reads that buffer (ASan watches it). */
  static char big[20000];
  memset(big, 'x', sizeof big);
  const char *kv2[] = {"key2", big};
  size_t kvl2[] = {4, sizeof big};
  assert_int_equal(cmd(c, &s, 2, flush), 0);
  assert_int_equal(sb_rconn_script(c, 1, 1, 2, kv2, kvl2, on_reply, &s), 0);
  assert_true(run_until(&s.replies, 6, 2000));
  assert_int_equal(s.failures, 0);
  r = redisCommand(sc, "STRLEN key2");
  assert_int_equal(r->integer, (long long)sizeof big);
  freeReplyObject(r);
  redisFree(sc);
  close_all(c, NULL);
}

static void test_timeout_of_a_stopped_redis(void **state) {
  (void)state;
  seen s = {0};
  sb_rconn *c = open_conn(&s, 0, 300);
  test_redis_kill(&srv, SIGSTOP);
  const char *ping[] = {"PING"};
  assert_int_equal(cmd(c, &s, 1, ping), 0);
  uint64_t t0 = uv_now(&loop);
  assert_true(run_until(&s.failures, 1, 3000));
  uint64_t took = uv_now(&loop) - t0;
  assert_true(took >= 250 && took < 2000);
  assert_int_equal(s.downs, 1);
  assert_false(sb_rconn_up(c));
  assert_non_null(strstr(sb_rconn_error(c), "timed out"));
  /* Down: fail fast, nothing queued. */
  assert_int_equal(cmd(c, &s, 1, ping), SB_EIO);
  test_redis_kill(&srv, SIGCONT);
  assert_true(run_until(&s.ups, 2, 5000));
  assert_int_equal(cmd(c, &s, 1, ping), 0);
  assert_true(run_until(&s.replies, 1, 2000));
  assert_string_equal(s.last, "PONG");
  close_all(c, NULL);
}

static void test_pubsub_across_a_restart(void **state) {
  (void)state;
  seen s = {0}, p = {0};
  sb_rconn *sub = open_conn(&s, 1, 500);
  sb_rconn *pub = open_conn(&p, 0, 500);
  assert_int_equal(sb_rconn_subscribe(sub, "ch:1", 4), 0);
  assert_int_equal(sb_rconn_subscribe(sub, "ch:1", 4), 0); /* twice: once */
  assert_int_equal(sb_rconn_channels(sub), 1);
  /* The barrier: once it fires, the subscription is live (no sleeping for it). */
  assert_int_equal(sb_rconn_barrier(sub, on_barrier, NULL), 0);
  assert_int_equal(barriers_ok, 0);
  assert_true(run_until(&barriers_ok, 1, 2000));
  const char *argv[] = {"PUBLISH", "ch:1", "a\0b"};
  size_t lens[] = {7, 4, 3};
  assert_int_equal(sb_rconn_command(pub, 3, argv, lens, on_reply, &p), 0);
  assert_true(run_until(&s.messages, 1, 2000));
  assert_string_equal(s.msg_channel, "ch:1");
  assert_int_equal(s.msg_len, 3);
  assert_memory_equal(s.msg, "a\0b", 3);
  assert_true(run_until(&p.replies, 1, 2000));
  assert_string_equal(p.last, "1"); /* one subscriber */
  /* Redis dies and comes back: both reconnect, the channel is subscribed again. */
  char old_run[64];
  snprintf(old_run, sizeof(old_run), "%s", sb_rconn_run_id(pub));
  assert_int_equal(sb_rconn_barrier(sub, on_barrier, NULL), 0);
  test_redis_kill(&srv, SIGKILL);
  assert_true(run_until(&s.downs, 1, 3000));
  assert_true(barriers_ok == 2 || barriers_failed == 1); /* answered, or failed with the link */
  assert_int_equal(sb_rconn_barrier(sub, on_barrier, NULL), SB_EIO);
  assert_int_equal(test_redis_start(&srv), 0);
  assert_true(run_until(&s.ups, 2, 5000));
  assert_true(run_until(&p.ups, 2, 5000));
  assert_string_not_equal(sb_rconn_run_id(pub), old_run);
  run_for(100);
  int before = p.replies;
  assert_int_equal(sb_rconn_command(pub, 3, argv, lens, on_reply, &p), 0);
  assert_true(run_until(&s.messages, 2, 2000));
  assert_true(run_until(&p.replies, before + 1, 2000));
  assert_string_equal(p.last, "1");
  /* Unsubscribed: no more messages. */
  assert_int_equal(sb_rconn_unsubscribe(sub, "ch:1", 4), 0);
  assert_int_equal(sb_rconn_channels(sub), 0);
  run_for(100);
  before = p.replies;
  assert_int_equal(sb_rconn_command(pub, 3, argv, lens, on_reply, &p), 0);
  assert_true(run_until(&p.replies, before + 1, 2000));
  assert_string_equal(p.last, "0");
  run_for(100);
  assert_int_equal(s.messages, 2);
  close_all(sub, pub);
}

static void test_free_with_commands_in_flight(void **state) {
  (void)state;
  seen s = {0};
  sb_rconn *c = open_conn(&s, 0, 2000);
  const char *ping[] = {"PING"};
  for (int i = 0; i < 10; i++) assert_int_equal(cmd(c, &s, 1, ping), 0);
  sb_rconn_free(c);
  assert_int_equal(s.failures, 10); /* before free returned */
  run_for(50);
  assert_int_equal(s.replies, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_bad_urls),
      cmocka_unit_test(test_commands_and_run_id),
      cmocka_unit_test(test_scripts_and_noscript),
      cmocka_unit_test(test_timeout_of_a_stopped_redis),
      cmocka_unit_test(test_pubsub_across_a_restart),
      cmocka_unit_test(test_free_with_commands_in_flight),
  };
  return cmocka_run_group_tests(tests, setup, teardown);
}
