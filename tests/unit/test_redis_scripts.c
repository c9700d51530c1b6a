/*
 * test_redis_scripts.c — the redis engine's Lua scripts (src/engine/scripts/<name>.lua,
 * embedded in build/generated/redis_scripts.h) against a real redis-server: loaded with
 * SCRIPT LOAD and called with EVALSHA, as the engine calls them, through hiredis' synchronous
 * API.
 *
 * The test starts its own redis-server in a temporary directory, listening on a unix socket
 * only (no TCP port to collide on), with no persistence; every case starts from FLUSHALL. A
 * second connection subscribes to channels to check what the scripts PUBLISH, byte for byte.
 * Times are the test's own (ARGV), so ages and expiries are exact. A missing redis-server is
 * a failure with a message, not a skip (scripts/setup.sh test installs it).
 *
 * The keys are built here as the engine must build them (docs/ARCHITECTURE.md, "Redis engine",
 * "Key layout and scripts"); the cases that look at keys the scripts build themselves (a closed
 * session's group streams, a node's session set) check that both sides escape names alike.
 */
#include <errno.h>
#include <fcntl.h>
#include <setjmp.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <hiredis/hiredis.h>

#include "redis_scripts.h"

/* ---- the scripts ---------------------------------------------------------------------- */

#define X(name) S_##name,
enum { SB_LUA_SCRIPTS(X) NSCRIPTS };
#undef X
#define X(name) {#name, sb_lua_##name, sizeof sb_lua_##name - 1},
static const struct {
  const char *name, *text;
  size_t len;
} scripts[] = {SB_LUA_SCRIPTS(X)};
#undef X
static char sha[NSCRIPTS][41];

/* ---- the server ----------------------------------------------------------------------- */

static char dir[] = "/tmp/sb-redis-test-XXXXXX";
static char sock_path[64], log_path[64];
static pid_t server_pid;
static redisContext *rc; /* commands */

static void sleep_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static void print_log(void) {
  FILE *f = fopen(log_path, "r");
  if (!f) return;
  char line[512];
  while (fgets(line, sizeof(line), f)) fprintf(stderr, "  redis-server: %s", line);
  fclose(f);
}

static redisContext *connect_unix(void) {
  struct timeval tv = {5, 0};
  redisContext *c = redisConnectUnixWithTimeout(sock_path, tv);
  if (!c) return NULL;
  if (c->err) {
    redisFree(c);
    return NULL;
  }
  redisSetTimeout(c, tv); /* a missing reply or message fails the case instead of hanging */
  return c;
}

static int stop_server(void **state);

/* On any failure after mkdtemp, stop_server cleans up: cmocka runs no group teardown after
 * a failed group setup. */
static int start_server(void **state) {
  (void)state;
  const char *bin = getenv("SB_REDIS_SERVER");
  if (!bin || !*bin) bin = "/usr/bin/redis-server";
  if (access(bin, X_OK) != 0) {
    fprintf(stderr,
            "test_redis_scripts: %s is missing (%s). This test needs a real redis-server:\n"
            "  scripts/setup.sh test   (Debian: apt-get install redis-server)\n",
            bin, strerror(errno));
    return -1;
  }
  if (!mkdtemp(dir)) {
    fprintf(stderr, "test_redis_scripts: mkdtemp: %s\n", strerror(errno));
    return -1;
  }
  snprintf(sock_path, sizeof(sock_path), "%s/redis.sock", dir);
  snprintf(log_path, sizeof(log_path), "%s/redis.log", dir);
  server_pid = fork();
  if (server_pid < 0) {
    stop_server(state);
    return -1;
  }
  if (server_pid == 0) {
    /* The server dies with the test, however the test ends (a crash under ASan included). */
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    int fd = open(log_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    if (fd >= 0) {
      dup2(fd, 1);
      dup2(fd, 2);
      close(fd);
    }
    execl(bin, bin, "--port", "0", "--unixsocket", sock_path, "--unixsocketperm", "700", "--save",
          "", "--appendonly", "no", "--dir", dir, (char *)NULL);
    _exit(127);
  }
  for (int i = 0; i < 1000 && !rc; i++) { /* up to 10 s */
    int st;
    if (waitpid(server_pid, &st, WNOHANG) == server_pid) {
      fprintf(stderr, "test_redis_scripts: redis-server exited at start (%s %d):\n",
              WIFEXITED(st) ? "exit status" : "signal",
              WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
      print_log();
      server_pid = 0;
      stop_server(state);
      return -1;
    }
    struct stat sb;
    if (stat(sock_path, &sb) == 0) rc = connect_unix();
    if (!rc) sleep_ms(10);
  }
  if (!rc) {
    fprintf(stderr, "test_redis_scripts: redis-server did not open %s within 10 s\n", sock_path);
    print_log();
    stop_server(state);
    return -1;
  }
  for (int i = 0; i < NSCRIPTS; i++) {
    const char *argv[] = {"SCRIPT", "LOAD", scripts[i].text};
    size_t lens[] = {6, 4, scripts[i].len};
    redisReply *r = redisCommandArgv(rc, 3, argv, lens);
    if (!r || r->type != REDIS_REPLY_STRING || r->len != 40) {
      fprintf(stderr, "test_redis_scripts: SCRIPT LOAD %s: %s\n", scripts[i].name,
              r && r->str ? r->str : rc->errstr);
      if (r) freeReplyObject(r);
      stop_server(state);
      return -1;
    }
    memcpy(sha[i], r->str, 41);
    freeReplyObject(r);
  }
  return 0;
}

static int stop_server(void **state) {
  (void)state;
  if (rc) {
    redisReply *r = redisCommand(rc, "SHUTDOWN NOSAVE");
    if (r) freeReplyObject(r); /* normally none: the server closes the connection */
    redisFree(rc);
    rc = NULL;
  }
  if (server_pid > 0) {
    int st, i;
    for (i = 0; i < 500 && waitpid(server_pid, &st, WNOHANG) == 0; i++) sleep_ms(10);
    if (i == 500) {
      kill(server_pid, SIGKILL);
      waitpid(server_pid, &st, 0);
    }
    server_pid = 0;
  }
  unlink(sock_path);
  unlink(log_path);
  rmdir(dir);
  return 0;
}

/* ---- calls ---------------------------------------------------------------------------- */

static redisReply *cmd(const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  redisReply *r = redisvCommand(rc, fmt, ap);
  va_end(ap);
  if (!r) fail_msg("redis: %s", rc->errstr);
  return r;
}

/* EVALSHA of one script with `nkeys` keys, then the arguments: argv/lens hold keys and
 * arguments (any bytes). */
static redisReply *evalsha_on(redisContext *c, int script, int nkeys, int argc, const char **argv,
                              const size_t *lens) {
  const char *all[32];
  size_t alens[32];
  char nk[8];
  assert_true(argc + 3 <= 32);
  snprintf(nk, sizeof(nk), "%d", nkeys);
  all[0] = "EVALSHA";
  alens[0] = sizeof "EVALSHA" - 1;
  all[1] = sha[script];
  alens[1] = 40;
  all[2] = nk;
  alens[2] = strlen(nk);
  for (int i = 0; i < argc; i++) {
    all[3 + i] = argv[i];
    alens[3 + i] = lens ? lens[i] : strlen(argv[i]);
  }
  redisReply *r = redisCommandArgv(c, argc + 3, all, alens);
  if (!r) fail_msg("redis: %s", c->errstr);
  return r;
}

/* The same with NUL-terminated strings, NULL-terminated. */
static redisReply *ev(int script, int nkeys, ...) {
  const char *argv[29];
  int argc = 0;
  va_list ap;
  va_start(ap, nkeys);
  for (const char *s; (s = va_arg(ap, const char *)) != NULL;) {
    assert_true(argc < 29);
    argv[argc++] = s;
  }
  va_end(ap);
  return evalsha_on(rc, script, nkeys, argc, argv, NULL);
}

static void no_error(const redisReply *r) {
  if (r->type == REDIS_REPLY_ERROR) fail_msg("unexpected error reply: %s", r->str);
}

static void expect_int(redisReply *r, long long want) {
  no_error(r);
  assert_int_equal(r->type, REDIS_REPLY_INTEGER);
  assert_int_equal(r->integer, want);
  freeReplyObject(r);
}

static void expect_nil(redisReply *r) {
  no_error(r);
  assert_int_equal(r->type, REDIS_REPLY_NIL);
  freeReplyObject(r);
}

static void expect_error(redisReply *r, const char *part) {
  assert_int_equal(r->type, REDIS_REPLY_ERROR);
  if (!strstr(r->str, part)) fail_msg("error '%s' does not mention '%s'", r->str, part);
  freeReplyObject(r);
}

static void expect_str(const redisReply *r, const char *want) {
  no_error(r);
  assert_int_equal(r->type, REDIS_REPLY_STRING);
  assert_string_equal(r->str, want);
}

static long long int_of(redisReply *r) {
  no_error(r);
  assert_int_equal(r->type, REDIS_REPLY_INTEGER);
  long long v = r->integer;
  freeReplyObject(r);
  return v;
}

static long long pttl(const char *key) { return int_of(cmd("PTTL %s", key)); }

/* ZSCORE key member: the score's text, or NULL (want) when the member is absent. */
static void expect_zscore(const char *key, const char *member, const char *want) {
  redisReply *r = cmd("ZSCORE %s %s", key, member);
  if (want)
    expect_str(r, want);
  else
    assert_int_equal(r->type, REDIS_REPLY_NIL);
  freeReplyObject(r);
}
static long long exists(const char *key) { return int_of(cmd("EXISTS %s", key)); }

/* HGET as a string ("" when missing), into a rotating buffer. */
static const char *hget(const char *key, const char *field) {
  static char bufs[8][128];
  static int next;
  char *b = bufs[next++ % 8];
  redisReply *r = cmd("HGET %s %s", key, field);
  no_error(r);
  snprintf(b, 128, "%s", r->type == REDIS_REPLY_STRING ? r->str : "");
  freeReplyObject(r);
  return b;
}

/* ---- keys, as the engine builds them --------------------------------------------------- */

#define P "sb:"

/* P "{" E(tagged) "}" suffix, with '%', '{', '}' escaped; in a rotating buffer. */
static const char *key(const char *tagged, const char *suffix) {
  static char bufs[16][256];
  static int next;
  char *b = bufs[next++ % 16];
  size_t n = 0;
  memcpy(b, P "{", sizeof P "{" - 1);
  n = sizeof P "{" - 1;
  for (const char *p = tagged; *p; p++) {
    const char *e = *p == '%' ? "%25" : *p == '{' ? "%7B" : *p == '}' ? "%7D" : NULL;
    assert_true(n + 4 < 200);
    if (e) {
      memcpy(b + n, e, 3);
      n += 3;
    } else {
      b[n++] = *p;
    }
  }
  assert_true(n + strlen(suffix) + 2 < 256);
  b[n++] = '}';
  strcpy(b + n, suffix);
  return b;
}

static const char *tagged(const char *kind, const char *name) {
  static char bufs[16][128];
  static int next;
  char *b = bufs[next++ % 16];
  snprintf(b, 128, "%s%s", kind, name);
  return b;
}

#define SKEY(id) key(tagged("s:", id), "")
#define GKEY(id) key(tagged("s:", id), ":g")
#define TKEY(tok) key(tagged("t:", tok), "")
#define NODE_CH(n) key(tagged("node:", n), "")
#define NODE_SET(n) key(tagged("node:", n), ":s")
#define NODE_INFO(n) key(tagged("node:", n), ":i")
#define CLOSED P "closed"
#define NODES P "nodes"

/* ---- the operations, with the settings of the case ------------------------------------- */

static struct {
  const char *run_id, *hmax, *age, *sttl; /* stream settings */
  const char *session_ttl, *max_closed;
} cfg;

static int setup(void **state) {
  (void)state;
  redisReply *r = cmd("FLUSHALL");
  no_error(r);
  freeReplyObject(r);
  cfg.run_id = "run-1";
  cfg.hmax = "100";
  cfg.age = "0";
  cfg.sttl = "600000";
  cfg.session_ttl = "60000";
  cfg.max_closed = "0";
  return 0;
}

static redisReply *publish_b(const char *S, const char *session, const void *data, size_t len,
                             const char *now, const char *cand) {
  const char *argv[12] = {key(S, ":m"), key(S, ":x")};
  size_t lens[12];
  int argc = 2, nkeys = 2;
  if (session) argv[argc++] = SKEY(session), nkeys = 3;
  argv[argc++] = P;
  argv[argc++] = S;
  int payload = argc;
  argv[argc++] = data;
  argv[argc++] = now;
  argv[argc++] = cand;
  argv[argc++] = cfg.run_id;
  argv[argc++] = cfg.hmax;
  argv[argc++] = cfg.age;
  argv[argc++] = cfg.sttl;
  for (int i = 0; i < argc; i++) lens[i] = i == payload ? len : strlen(argv[i]);
  return evalsha_on(rc, S_publish, nkeys, argc, argv, lens);
}

typedef struct pos {
  char epoch[32];
  long long offset;
} pos;

/* A publish that must succeed: its (epoch, offset). */
static pos publish(const char *S, const char *session, const char *payload, const char *now,
                   const char *cand) {
  redisReply *r = publish_b(S, session, payload, strlen(payload), now, cand);
  no_error(r);
  assert_int_equal(r->type, REDIS_REPLY_ARRAY);
  assert_int_equal(r->elements, 2);
  pos p;
  expect_str(r->element[0], r->element[0]->str);
  snprintf(p.epoch, sizeof(p.epoch), "%s", r->element[0]->str);
  assert_int_equal(r->element[1]->type, REDIS_REPLY_INTEGER);
  p.offset = r->element[1]->integer;
  freeReplyObject(r);
  return p;
}

typedef struct rd {
  char epoch[32];
  long long first, head;
  size_t n;
  long long offsets[300], times[300];
  char data[300][32];
} rd;

static rd read_stream(const char *S, const char *from, const char *max, const char *now,
                      const char *cand) {
  redisReply *r = ev(S_read, 2, key(S, ":m"), key(S, ":x"), P, S, from, max, now, cand, cfg.run_id,
                     cfg.hmax, cfg.age, cfg.sttl, NULL);
  no_error(r);
  assert_int_equal(r->type, REDIS_REPLY_ARRAY);
  assert_int_equal(r->elements, 4);
  rd out;
  memset(&out, 0, sizeof(out));
  expect_str(r->element[0], r->element[0]->str);
  snprintf(out.epoch, sizeof(out.epoch), "%s", r->element[0]->str);
  out.first = r->element[1]->integer;
  out.head = r->element[2]->integer;
  redisReply *recs = r->element[3];
  assert_int_equal(recs->type, REDIS_REPLY_ARRAY);
  assert_int_equal(recs->elements % 3, 0);
  out.n = recs->elements / 3;
  assert_true(out.n <= 300);
  for (size_t i = 0; i < out.n; i++) {
    assert_int_equal(recs->element[3 * i]->type, REDIS_REPLY_INTEGER);
    assert_int_equal(recs->element[3 * i + 1]->type, REDIS_REPLY_INTEGER);
    assert_int_equal(recs->element[3 * i + 2]->type, REDIS_REPLY_STRING);
    out.offsets[i] = recs->element[3 * i]->integer;
    out.times[i] = recs->element[3 * i + 1]->integer;
    snprintf(out.data[i], sizeof(out.data[i]), "%s", recs->element[3 * i + 2]->str);
  }
  freeReplyObject(r);
  return out;
}

static pos position(const char *S, const char *cand) {
  redisReply *r =
      ev(S_position, 2, key(S, ":m"), key(S, ":x"), P, S, cand, cfg.run_id, cfg.sttl, NULL);
  no_error(r);
  assert_int_equal(r->type, REDIS_REPLY_ARRAY);
  pos p;
  snprintf(p.epoch, sizeof(p.epoch), "%s", r->element[0]->str);
  p.offset = r->element[1]->integer;
  freeReplyObject(r);
  return p;
}

static redisReply *session_open(const char *id, const char *identity, const char *node,
                                const char *expected) {
  return ev(S_session_open, 3, SKEY(id), GKEY(id), CLOSED, P, id, identity, node, expected, NULL);
}

static long long open_ok(const char *id, const char *identity, const char *node) {
  return int_of(session_open(id, identity, node, ""));
}

static redisReply *session_group(const char *id, const char *group, const char *joined,
                                 const char *offset, const char *epoch, const char *cand) {
  const char *S = tagged("g:", group);
  return ev(S_session_group, 4, SKEY(id), GKEY(id), key(S, ":m"), key(S, ":x"), P, group, joined,
            offset, epoch, cand, cfg.run_id, cfg.sttl, NULL);
}

static redisReply *session_closed(const char *id, const char *node, const char *gen,
                                  const char *now) {
  return ev(S_session_closed, 3, SKEY(id), GKEY(id), CLOSED, P, id, node, gen, now, cfg.session_ttl,
            cfg.max_closed, NULL);
}

static redisReply *session_token(const char *id, const char *token, const char *node,
                                 const char *gen) {
  return ev(S_session_token, 2, SKEY(id), TKEY(token), P, id, token, node, gen, NULL);
}

static redisReply *take_on(redisContext *c, const char *token, const char *identity,
                           const char *node, const char *now) {
  const char *argv[] = {TKEY(token), CLOSED, P, token, identity, node, now, cfg.session_ttl};
  return evalsha_on(c, S_session_take, 2, 8, argv, NULL);
}

static redisReply *take(const char *token, const char *identity, const char *node,
                        const char *now) {
  return take_on(rc, token, identity, node, now);
}

/* The status word of a take ("ok", "notfound", "identity"). */
static void expect_take(const redisReply *r, const char *status) {
  no_error(r);
  assert_int_equal(r->type, REDIS_REPLY_ARRAY);
  assert_true(r->elements >= 1);
  expect_str(r->element[0], status);
  assert_int_equal(r->elements, strcmp(status, "ok") == 0 ? 7 : 1); /* "pending" too: 1 */
}

static redisReply *heartbeat(const char *node, const char *url, const char *now, const char *ttl) {
  return ev(S_node_heartbeat, 2, NODES, NODE_INFO(node), node, url, "1", now, ttl, NULL);
}

static redisReply *node_expire(const char *now, const char *limit) {
  return ev(S_node_expire, 2, NODES, CLOSED, P, now, cfg.session_ttl, cfg.max_closed, limit, NULL);
}

/* ---- pub/sub ---------------------------------------------------------------------------- */

static redisContext *subscriber(const char *channel) {
  redisContext *c = connect_unix();
  assert_non_null(c);
  redisReply *r = redisCommand(c, "SUBSCRIBE %s", channel);
  assert_non_null(r);
  assert_int_equal(r->type, REDIS_REPLY_ARRAY);
  freeReplyObject(r);
  return c;
}

static void also_subscribe(redisContext *c, const char *channel) {
  redisReply *r = redisCommand(c, "SUBSCRIBE %s", channel);
  assert_non_null(r);
  freeReplyObject(r);
}

/* The next message on a subscribed connection: its channel and payload must be these. */
static void expect_message(redisContext *c, const char *channel, const void *want, size_t len) {
  redisReply *r = NULL;
  if (redisGetReply(c, (void **)&r) != REDIS_OK || !r)
    fail_msg("no message on %s: %s", channel, c->errstr);
  assert_int_equal(r->type, REDIS_REPLY_ARRAY);
  assert_int_equal(r->elements, 3);
  assert_string_equal(r->element[0]->str, "message");
  assert_string_equal(r->element[1]->str, channel);
  if (r->element[2]->len != len || memcmp(r->element[2]->str, want, len) != 0)
    fail_msg("message on %s: got %zu bytes '%.*s', want %zu bytes '%.*s'", channel,
             r->element[2]->len, (int)r->element[2]->len, r->element[2]->str, len, (int)len,
             (const char *)want);
  freeReplyObject(r);
}

/* Nothing was published to the channels of c before this point: a marker published now on
 * `channel` (one of them) is the next message. */
static void expect_quiet(redisContext *c, const char *channel) {
  redisReply *r = cmd("PUBLISH %s marker", channel);
  assert_int_equal(int_of(r), 1);
  expect_message(c, channel, "marker", 6);
}

/* ---- cases: the header ---------------------------------------------------------------- */

static char *slurp(const char *path, size_t *len) {
  FILE *f = fopen(path, "rb");
  if (!f) fail_msg("cannot open %s: %s", path, strerror(errno));
  char *buf = NULL;
  size_t n = 0, cap = 0;
  for (;;) {
    if (n == cap) {
      cap = cap ? cap * 2 : 65536;
      buf = realloc(buf, cap);
      assert_non_null(buf);
    }
    size_t got = fread(buf + n, 1, cap - n, f);
    if (got == 0) break;
    n += got;
  }
  fclose(f);
  *len = n;
  return buf;
}

/* The embedded text is _common.lua followed by the script, byte for byte (the escaping of the
 * generator loses nothing), and Redis knows it under the SHA the engine will name. */
static void test_header_matches_sources(void **state) {
  (void)state;
  size_t clen;
  char *common = slurp(SB_SOURCE_DIR "/src/engine/scripts/_common.lua", &clen);
  for (int i = 0; i < NSCRIPTS; i++) {
    char path[512];
    snprintf(path, sizeof(path), SB_SOURCE_DIR "/src/engine/scripts/%s.lua", scripts[i].name);
    size_t slen;
    char *src = slurp(path, &slen);
    assert_int_equal(scripts[i].len, clen + slen);
    assert_memory_equal(scripts[i].text, common, clen);
    assert_memory_equal(scripts[i].text + clen, src, slen);
    free(src);
    redisReply *r = cmd("SCRIPT EXISTS %s", sha[i]);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    assert_int_equal(r->element[0]->integer, 1);
    freeReplyObject(r);
  }
  free(common);
  assert_true(NSCRIPTS >= 11);
}

/* ---- cases: streams --------------------------------------------------------------------- */

/* Offsets 1, 2, 3 under one epoch, each stored as "<offset>-0" with its time and payload,
 * and each published to the group's channel framed as "<epoch>:<offset>:<time>:<payload>"
 * (payload bytes as they are: NUL, CR LF, colons). */
static void test_publish_numbers_stores_and_publishes(void **state) {
  (void)state;
  const char *S = "g:room";
  redisContext *sub = subscriber(key(S, ""));
  static const char payloads[3][6] = {"a\0b", "x:y\r\n", "zz"};
  static const size_t plens[3] = {3, 5, 2};
  const char *epoch = "18446744073709551615"; /* 2^64 - 1: kept exactly (text, not double) */
  for (int i = 0; i < 3; i++) {
    char now[16];
    snprintf(now, sizeof(now), "%d", 1000 + i);
    redisReply *r = publish_b(S, NULL, payloads[i], plens[i], now,
                              i == 0 ? epoch : "777"); /* later candidates unused */
    no_error(r);
    assert_int_equal(r->type, REDIS_REPLY_ARRAY);
    expect_str(r->element[0], epoch);
    assert_int_equal(r->element[1]->integer, i + 1);
    freeReplyObject(r);
  }
  /* stored */
  redisReply *r = cmd("XRANGE %s - +", key(S, ":x"));
  assert_int_equal(r->type, REDIS_REPLY_ARRAY);
  assert_int_equal(r->elements, 3);
  for (size_t i = 0; i < 3; i++) {
    redisReply *e = r->element[i];
    char id[16], now[16];
    snprintf(id, sizeof(id), "%zu-0", i + 1);
    snprintf(now, sizeof(now), "%zu", 1000 + i);
    assert_string_equal(e->element[0]->str, id);
    assert_int_equal(e->element[1]->elements, 4);
    assert_string_equal(e->element[1]->element[0]->str, "t");
    assert_string_equal(e->element[1]->element[1]->str, now);
    assert_string_equal(e->element[1]->element[2]->str, "d");
    assert_int_equal(e->element[1]->element[3]->len, plens[i]);
    assert_memory_equal(e->element[1]->element[3]->str, payloads[i], plens[i]);
  }
  freeReplyObject(r);
  assert_string_equal(hget(key(S, ":m"), "e"), epoch);
  assert_string_equal(hget(key(S, ":m"), "h"), "3");
  assert_string_equal(hget(key(S, ":m"), "r"), "run-1");
  /* published, exactly framed */
  for (int i = 0; i < 3; i++) {
    char want[64];
    int n = snprintf(want, sizeof(want), "%s:%d:%d:", epoch, i + 1, 1000 + i);
    memcpy(want + n, payloads[i], plens[i]);
    expect_message(sub, key(S, ""), want, (size_t)n + plens[i]);
  }
  redisFree(sub);
}

/* history_max: Redis keeps whole nodes (MAXLEN ~), so fewer than history_max + 100 entries
 * stay, and a read shows exactly the last history_max. */
static void test_history_capped_by_count(void **state) {
  (void)state;
  cfg.hmax = "10";
  char body[16];
  for (int i = 1; i <= 250; i++) {
    snprintf(body, sizeof(body), "m%d", i);
    pos p = publish("g:big", NULL, body, "5000", "42");
    assert_int_equal(p.offset, i);
  }
  long long len = int_of(cmd("XLEN %s", key("g:big", ":x")));
  assert_in_range(len, 10, 110);
  rd r = read_stream("g:big", "1", "1000", "5000", "43");
  assert_string_equal(r.epoch, "42");
  assert_int_equal(r.head, 250);
  assert_int_equal(r.first, 241);
  assert_int_equal(r.n, 10);
  for (size_t i = 0; i < 10; i++) {
    assert_int_equal(r.offsets[i], 241 + i);
    snprintf(body, sizeof(body), "m%zu", 241 + i);
    assert_string_equal(r.data[i], body);
  }
}

/* history_age_ms: a publish deletes the entries older than the age from the front; a read
 * shows none of them either (the times are the callers'). */
static void test_history_capped_by_age(void **state) {
  (void)state;
  cfg.age = "500";
  publish("g:a", NULL, "old1", "1000", "5");
  publish("g:a", NULL, "old2", "1100", "5");
  publish("g:a", NULL, "new", "1700", "5"); /* old1 is 700 ms old, old2 600: both go */
  assert_int_equal(int_of(cmd("XLEN %s", key("g:a", ":x"))), 1);
  rd r = read_stream("g:a", "1", "100", "1800", "6");
  assert_int_equal(r.first, 3);
  assert_int_equal(r.head, 3);
  assert_int_equal(r.n, 1);
  assert_string_equal(r.data[0], "new");
  assert_int_equal(r.times[0], 1700);
  /* 2201: "new" is 501 ms old */
  r = read_stream("g:a", "1", "100", "2201", "6");
  assert_int_equal(r.n, 0);
  assert_int_equal(r.first, 4); /* empty: head + 1 */
  assert_int_equal(r.head, 3);
  assert_string_equal(r.epoch, "5");
  assert_int_equal(int_of(cmd("XLEN %s", key("g:a", ":x"))), 0);
  /* exactly 500 ms old is kept, as in the memory engine */
  publish("g:a", NULL, "edge", "3000", "5");
  r = read_stream("g:a", "1", "100", "3500", "6");
  assert_int_equal(r.n, 1);
  assert_int_equal(r.offsets[0], 4);
}

/* Missing metadata: a new epoch from the candidate, offsets from 1, the old entries gone;
 * a candidate is not used while the epoch stands. */
static void test_missing_metadata_new_epoch(void **state) {
  (void)state;
  pos p = publish("g:m", NULL, "one", "1000", "9007199254740993"); /* 2^53 + 1: exact */
  assert_string_equal(p.epoch, "9007199254740993");
  p = publish("g:m", NULL, "two", "1000", "11");
  assert_string_equal(p.epoch, "9007199254740993");
  assert_int_equal(p.offset, 2);
  expect_int(cmd("DEL %s", key("g:m", ":m")), 1);
  p = publish("g:m", NULL, "three", "1000", "12");
  assert_string_equal(p.epoch, "12");
  assert_int_equal(p.offset, 1);
  rd r = read_stream("g:m", "1", "10", "1000", "13");
  assert_string_equal(r.epoch, "12");
  assert_int_equal(r.first, 1);
  assert_int_equal(r.head, 1);
  assert_int_equal(r.n, 1);
  assert_string_equal(r.data[0], "three"); /* not "one" of the old epoch */
  /* position and read make the epoch of a stream nobody published to yet; the next publish
   * continues it */
  pos q = position("g:fresh", "21");
  assert_string_equal(q.epoch, "21");
  assert_int_equal(q.offset, 0);
  q = publish("g:fresh", NULL, "x", "1000", "22");
  assert_string_equal(q.epoch, "21");
  assert_int_equal(q.offset, 1);
  /* bad candidates are refused before anything is written */
  expect_error(publish_b("g:z", NULL, "x", 1, "1000", "0"), "epoch candidate");
  expect_error(publish_b("g:z", NULL, "x", 1, "1000", "18446744073709551616"), "epoch");
  expect_error(publish_b("g:z", NULL, "x", 1, "10e3", "5"), "now");
  assert_int_equal(exists(key("g:z", ":m")), 0);
  assert_int_equal(exists(key("g:z", ":x")), 0);
}

/* Another run_id: a new epoch, and no (epoch, offset) is ever handed out twice; a head at
 * 2^53 - 1 also moves to a new epoch. */
static void test_run_id_change_new_epoch(void **state) {
  (void)state;
  pos seen[16];
  int n = 0;
  for (int i = 0; i < 3; i++) seen[n++] = publish("g:r", NULL, "a", "1000", "100");
  cfg.run_id = "run-2"; /* Redis restarted without its data, or failed over */
  expect_error(publish_b("g:r", NULL, "b", 1, "1000", "100"), "candidate equals");
  assert_string_equal(hget(key("g:r", ":m"), "e"), "100"); /* untouched by the refusal */
  for (int i = 0; i < 3; i++) seen[n++] = publish("g:r", NULL, "b", "1000", i ? "999" : "200");
  for (int i = 0; i < n; i++) {
    assert_string_equal(seen[i].epoch, i < 3 ? "100" : "200");
    assert_int_equal(seen[i].offset, i % 3 + 1);
    for (int j = 0; j < i; j++)
      assert_false(strcmp(seen[i].epoch, seen[j].epoch) == 0 && seen[i].offset == seen[j].offset);
  }
  assert_string_equal(hget(key("g:r", ":m"), "r"), "run-2");
  rd r = read_stream("g:r", "1", "10", "1000", "300");
  assert_string_equal(r.epoch, "200");
  assert_int_equal(r.n, 3);
  for (size_t i = 0; i < 3; i++) assert_string_equal(r.data[i], "b");
  /* a read made under yet another run_id is a new epoch too (it must not show "200") */
  cfg.run_id = "run-3";
  r = read_stream("g:r", "1", "10", "1000", "300");
  assert_string_equal(r.epoch, "300");
  assert_int_equal(r.head, 0);
  assert_int_equal(r.n, 0);
  /* the last offset below 2^53, then a new epoch */
  expect_int(cmd("HSET %s h 9007199254740990", key("g:r", ":m")), 0);
  pos p = publish("g:r", NULL, "c", "1000", "400");
  assert_string_equal(p.epoch, "300");
  assert_int_equal(p.offset, 9007199254740991LL);
  p = publish("g:r", NULL, "d", "1000", "400");
  assert_string_equal(p.epoch, "400");
  assert_int_equal(p.offset, 1);
}

/* read from an offset: first, head and the records at or after it, at most max. */
static void test_read_from_offset(void **state) {
  (void)state;
  char body[8];
  for (int i = 1; i <= 6; i++) {
    snprintf(body, sizeof(body), "m%d", i);
    publish("c:x", NULL, body, "1000", "7");
  }
  rd r = read_stream("c:x", "3", "2", "1000", "8");
  assert_string_equal(r.epoch, "7");
  assert_int_equal(r.first, 1);
  assert_int_equal(r.head, 6);
  assert_int_equal(r.n, 2);
  assert_int_equal(r.offsets[0], 3);
  assert_int_equal(r.offsets[1], 4);
  assert_string_equal(r.data[1], "m4");
  r = read_stream("c:x", "0", "100", "1000", "8");
  assert_int_equal(r.n, 6);
  assert_int_equal(r.offsets[0], 1);
  r = read_stream("c:x", "7", "100", "1000", "8");
  assert_int_equal(r.n, 0);
  assert_int_equal(r.head, 6);
  r = read_stream("c:x", "18446744073709551615", "100", "1000", "8");
  assert_int_equal(r.n, 0);
  /* trim: through 4 of this epoch; another epoch's trim does nothing */
  expect_int(ev(S_trim, 2, key("c:x", ":m"), key("c:x", ":x"), "5", "8", NULL), 0);
  expect_int(ev(S_trim, 2, key("c:x", ":m"), key("c:x", ":x"), "4", "7", NULL), 4);
  r = read_stream("c:x", "1", "100", "1000", "8");
  assert_int_equal(r.first, 5);
  assert_int_equal(r.n, 2);
  assert_int_equal(r.offsets[0], 5);
  /* past the head: up to the head */
  expect_int(ev(S_trim, 2, key("c:x", ":m"), key("c:x", ":x"), "99", "", NULL), 2);
  r = read_stream("c:x", "1", "100", "1000", "8");
  assert_int_equal(r.first, 7);
  assert_int_equal(r.head, 6);
  pos p = publish("c:x", NULL, "m7", "1000", "9");
  assert_int_equal(p.offset, 7);
}

/* A direct message to a session that does not exist: nil, and nothing written. */
static void test_direct_unknown_session(void **state) {
  (void)state;
  expect_nil(publish_b("c:nobody", "nobody", "hi", 2, "1000", "5"));
  assert_int_equal(exists(key("c:nobody", ":m")), 0);
  assert_int_equal(exists(key("c:nobody", ":x")), 0);
  /* a session that exists makes the same call succeed */
  assert_int_equal(open_ok("nobody", "", "A"), 1);
  pos p = publish("c:nobody", "nobody", "hi", "1000", "5");
  assert_int_equal(p.offset, 1);
}

/* A direct message goes to the holding node's channel with the d framing, only while the
 * session is open; a closed one's waits in the history. */
static void test_direct_to_holding_node(void **state) {
  (void)state;
  assert_int_equal(open_ok("c1", "alice", "nodeA"), 1);
  redisContext *sub = subscriber(NODE_CH("nodeA"));
  also_subscribe(sub, key("c:c1", "")); /* a direct stream has no channel of its own */
  static const char payload[] = "p\0q:";
  redisReply *r = publish_b("c:c1", "c1", payload, 4, "1234", "77");
  no_error(r);
  assert_int_equal(r->element[1]->integer, 1);
  freeReplyObject(r);
  static const char want[] = "d4:c:c177:1:1234:p\0q:";
  expect_message(sub, NODE_CH("nodeA"), want, sizeof want - 1);
  expect_quiet(sub, key("c:c1", ""));
  /* closed: stored, not published */
  expect_int(session_closed("c1", "nodeA", "1", "2000"), 1);
  pos p = publish("c:c1", "c1", "later", "2001", "78");
  assert_string_equal(p.epoch, "77");
  assert_int_equal(p.offset, 2);
  expect_quiet(sub, NODE_CH("nodeA"));
  rd rr = read_stream("c:c1", "2", "10", "2002", "79");
  assert_int_equal(rr.n, 1);
  assert_string_equal(rr.data[0], "later");
  redisFree(sub);
}

/* ---- cases: sessions -------------------------------------------------------------------- */

/* open, groups (join positions: the first kept, epoch 0 filled from the stream), token, a
 * take by another identity (refused, token intact), the take, a second take. */
static void test_session_lifecycle(void **state) {
  (void)state;
  expect_int(session_open("c1", "alice", "A", ""), 1);
  assert_string_equal(hget(SKEY("c1"), "i"), "alice");
  assert_string_equal(hget(SKEY("c1"), "n"), "A");
  assert_string_equal(hget(SKEY("c1"), "c"), "0");
  redisReply *r = session_group("c1", "room", "1", "5", "18446744073709551557", "1");
  no_error(r);
  assert_int_equal(r->elements, 2);
  expect_str(r->element[0], "5");
  expect_str(r->element[1], "18446744073709551557");
  freeReplyObject(r);
  r = session_group("c1", "room", "1", "9", "3", "1"); /* again: the first position stays */
  expect_str(r->element[0], "5");
  expect_str(r->element[1], "18446744073709551557");
  freeReplyObject(r);
  publish("g:lobby", NULL, "x", "1000", "31");
  publish("g:lobby", NULL, "y", "1000", "31");
  r = session_group("c1", "lobby", "1", "0", "0", "32"); /* unknown: the stream's own */
  expect_str(r->element[0], "2");
  expect_str(r->element[1], "31");
  freeReplyObject(r);
  r = session_group("c1", "quiet", "1", "0", "0", "41"); /* a stream nobody used: made */
  expect_str(r->element[0], "0");
  expect_str(r->element[1], "41");
  freeReplyObject(r);
  assert_string_equal(hget(key("g:quiet", ":m"), "e"), "41");
  expect_int(session_group("c1", "quiet", "0", "0", "0", "1"), 1);
  expect_int(session_group("c1", "quiet", "0", "0", "0", "1"), 0);
  expect_nil(session_group("nobody", "room", "1", "1", "1", "1"));
  assert_int_equal(exists(GKEY("nobody")), 0);

  expect_int(session_token("c1", "tok1", "A", "1"), 1);
  expect_int(session_token("c1", "tok1", "A", "7"), 0); /* not the holder's generation */
  expect_nil(session_token("nobody", "tok9", "A", "1"));
  assert_int_equal(exists(TKEY("tok9")), 0);

  r = take("tok1", "mallory", "B", "1500");
  expect_take(r, "identity");
  freeReplyObject(r);
  assert_string_equal(hget(SKEY("c1"), "t"), "tok1"); /* left as it was */
  r = cmd("GET %s", TKEY("tok1"));
  expect_str(r, "c1");
  freeReplyObject(r);
  assert_string_equal(hget(SKEY("c1"), "n"), "A");

  r = take("tok1", "alice", "B", "1500");
  expect_take(r, "ok");
  expect_str(r->element[1], "c1");
  expect_str(r->element[2], "alice");
  expect_str(r->element[3], "A");
  assert_int_equal(r->element[4]->integer, 1);
  assert_int_equal(r->element[5]->integer, 2);
  redisReply *g = r->element[6];
  assert_int_equal(g->elements, 6); /* room and lobby */
  for (size_t i = 0; i < 6; i += 3) {
    if (strcmp(g->element[i]->str, "room") == 0) {
      expect_str(g->element[i + 1], "5");
      expect_str(g->element[i + 2], "18446744073709551557");
    } else {
      expect_str(g->element[i], "lobby");
      expect_str(g->element[i + 1], "2");
      expect_str(g->element[i + 2], "31");
    }
  }
  freeReplyObject(r);
  /* pending until B confirms: the token waits (a retry may take it again, see below) */
  assert_int_equal(exists(TKEY("tok1")), 1);
  assert_string_equal(hget(SKEY("c1"), "p"), "tok1");
  assert_string_equal(hget(SKEY("c1"), "t"), "");
  assert_string_equal(hget(SKEY("c1"), "n"), "B");
  r = take("tok1", "alice", "C", "1500"); /* too soon after the take (and no retry_after) */
  expect_take(r, "notfound");
  freeReplyObject(r);
  expect_int(session_open("c1", "alice", "B", "2"), 2); /* confirmed: spent for good */
  assert_int_equal(exists(TKEY("tok1")), 0);
  assert_string_equal(hget(SKEY("c1"), "p"), "");
  r = take("tok1", "alice", "C", "1500"); /* spent */
  expect_take(r, "notfound");
  freeReplyObject(r);
  r = take("never", "alice", "C", "1500");
  expect_take(r, "notfound");
  freeReplyObject(r);

  /* a new token replaces the old one: one live token per session */
  expect_int(session_token("c1", "tok2", "B", "2"), 1);
  expect_int(session_token("c1", "tok3", "B", "2"), 1);
  assert_int_equal(exists(TKEY("tok2")), 0);
  r = take("tok2", "alice", "C", "1500");
  expect_take(r, "notfound");
  freeReplyObject(r);
  /* anonymous sessions: "" must match "" */
  expect_int(session_open("anon", "", "A", ""), 1);
  expect_int(session_token("anon", "tokA", "A", "1"), 1);
  r = take("tokA", "bob", "B", "1500");
  expect_take(r, "identity");
  freeReplyObject(r);
  r = take("tokA", "", "B", "1500");
  expect_take(r, "ok");
  freeReplyObject(r);
}

/* Two takes of one token on two connections, sent back to back: exactly one wins, and the
 * session moved once. */
static void test_two_takes_one_wins(void **state) {
  (void)state;
  for (int round = 0; round < 20; round++) {
    char id[16], tok[16], gen[8];
    snprintf(id, sizeof(id), "r%d", round);
    snprintf(tok, sizeof(tok), "tok-%d", round);
    expect_int(session_open(id, "u", "A", ""), 1);
    expect_int(session_token(id, tok, "A", "1"), 1);
    expect_int(session_closed(id, "A", "1", "1000"), 1);
    redisContext *c2 = connect_unix();
    assert_non_null(c2);
    /* both requests are queued before either reply is read */
    const char *a1[] = {TKEY(tok), CLOSED, P, tok, "u", "B", "1001", cfg.session_ttl};
    const char *a2[] = {TKEY(tok), CLOSED, P, tok, "u", "C", "1001", cfg.session_ttl};
    const char *pre[] = {"EVALSHA", sha[S_session_take], "2"};
    const char *all1[11], *all2[11];
    for (int i = 0; i < 3; i++) all1[i] = all2[i] = pre[i];
    for (int i = 0; i < 8; i++) all1[3 + i] = a1[i], all2[3 + i] = a2[i];
    assert_int_equal(redisAppendCommandArgv(rc, 11, all1, NULL), REDIS_OK);
    assert_int_equal(redisAppendCommandArgv(c2, 11, all2, NULL), REDIS_OK);
    /* flush both before reading either */
    int done = 0;
    while (!done) assert_int_equal(redisBufferWrite(rc, &done), REDIS_OK);
    done = 0;
    while (!done) assert_int_equal(redisBufferWrite(c2, &done), REDIS_OK);
    redisReply *r1 = NULL, *r2 = NULL;
    assert_int_equal(redisGetReply(rc, (void **)&r1), REDIS_OK);
    assert_int_equal(redisGetReply(c2, (void **)&r2), REDIS_OK);
    no_error(r1);
    no_error(r2);
    int ok1 = strcmp(r1->element[0]->str, "ok") == 0, ok2 = strcmp(r2->element[0]->str, "ok") == 0;
    assert_int_equal(ok1 + ok2, 1);
    expect_str((ok1 ? r2 : r1)->element[0], "notfound");
    assert_string_equal(hget(SKEY(id), "n"), ok1 ? "B" : "C");
    snprintf(gen, sizeof(gen), "%d", 2);
    assert_string_equal(hget(SKEY(id), "g"), gen);
    freeReplyObject(r1);
    freeReplyObject(r2);
    redisFree(c2);
  }
}

/* A take of a session that is open elsewhere moves it (new node, new generation) and tells
 * the old node to close its connection; a take of a closed one tells nobody. */
static void test_take_moves_and_kills(void **state) {
  (void)state;
  redisContext *sub = subscriber(NODE_CH("A"));
  also_subscribe(sub, NODE_CH("B"));
  expect_int(session_open("c1", "alice", "A", ""), 1);
  expect_int(session_token("c1", "t1", "A", "1"), 1);
  assert_int_equal(int_of(cmd("SISMEMBER %s c1", NODE_SET("A"))), 1);
  redisReply *r = take("t1", "alice", "B", "2000");
  expect_take(r, "ok");
  assert_int_equal(r->element[5]->integer, 2);
  freeReplyObject(r);
  expect_message(sub, NODE_CH("A"), "kc1:2", 5);
  assert_string_equal(hget(SKEY("c1"), "n"), "B");
  assert_string_equal(hget(SKEY("c1"), "g"), "2");
  assert_int_equal(int_of(cmd("SISMEMBER %s c1", NODE_SET("A"))), 0);
  assert_int_equal(int_of(cmd("SISMEMBER %s c1", NODE_SET("B"))), 1);
  /* closed on B, then taken by A: nothing to kill */
  expect_int(session_token("c1", "t2", "B", "2"), 1);
  expect_int(session_closed("c1", "B", "2", "3000"), 1);
  r = take("t2", "alice", "A", "3001");
  expect_take(r, "ok");
  assert_int_equal(r->element[5]->integer, 3);
  freeReplyObject(r);
  expect_quiet(sub, NODE_CH("B"));
  /* a plain open of a session held open elsewhere fences it the same way */
  expect_int(session_open("c1", "alice", "B", ""), 4);
  expect_message(sub, NODE_CH("A"), "kc1:4", 5);
  /* a take by the node that holds it open sends nothing: its hub closes the holder itself */
  expect_int(session_token("c1", "t3", "B", "4"), 1);
  r = take("t3", "alice", "B", "4000");
  expect_take(r, "ok");
  assert_int_equal(r->element[5]->integer, 5);
  freeReplyObject(r);
  expect_quiet(sub, NODE_CH("B"));
  redisFree(sub);
}

/* A close from a node or generation that no longer holds the session is ignored. */
/* A take its node never confirmed (its answer was lost: the client was told to retry) can be
 * made again with the same token once retry_after_ms passed, by the same identity only;
 * sooner it is refused (two racing RESUMEs: one wins). Unconfirmed, the session expires like
 * a closed one instead of staying open on a node that does not know it. */
static void test_pending_take_retried(void **state) {
  (void)state;
  expect_int(session_open("c1", "alice", "A", ""), 1);
  expect_int(session_token("c1", "tk", "A", "1"), 1);
  expect_int(session_closed("c1", "A", "1", "1000"), 1);
  const char *a1[] = {TKEY("tk"), CLOSED, P, "tk", "alice", "B", "2000", cfg.session_ttl, "500"};
  redisReply *r = evalsha_on(rc, S_session_take, 2, 9, a1, NULL);
  expect_take(r, "ok"); /* its answer is lost: B never confirms */
  assert_int_equal(r->element[5]->integer, 2);
  freeReplyObject(r);
  assert_in_range(pttl(SKEY("c1")), 1, 60000);
  assert_in_range(pttl(TKEY("tk")), 1, 60000);
  const char *a2[] = {TKEY("tk"), CLOSED, P, "tk", "alice", "C", "2100", cfg.session_ttl, "500"};
  r = evalsha_on(rc, S_session_take, 2, 9, a2, NULL);
  expect_take(r, "pending"); /* 100 ms after: a racing RESUME, or a retry too soon: "retry" */
  freeReplyObject(r);
  const char *a3[] = {TKEY("tk"), CLOSED, P, "tk", "mallory", "C", "2600", cfg.session_ttl, "500"};
  r = evalsha_on(rc, S_session_take, 2, 9, a3, NULL);
  expect_take(r, "identity");
  freeReplyObject(r);
  const char *a4[] = {TKEY("tk"), CLOSED, P, "tk", "alice", "C", "2600", cfg.session_ttl, "500"};
  r = evalsha_on(rc, S_session_take, 2, 9, a4, NULL);
  expect_take(r, "ok"); /* the client's retry */
  assert_int_equal(r->element[5]->integer, 3);
  freeReplyObject(r);
  assert_string_equal(hget(SKEY("c1"), "n"), "C");
  expect_nil(session_open("c1", "alice", "B", "2")); /* B's late confirmation: not its own */
  expect_int(session_open("c1", "alice", "C", "3"), 3);
  assert_int_equal(pttl(SKEY("c1")), -1);
  assert_int_equal(exists(TKEY("tk")), 0);
  const char *a5[] = {TKEY("tk"), CLOSED, P, "tk", "alice", "D", "9000", cfg.session_ttl, "500"};
  r = evalsha_on(rc, S_session_take, 2, 9, a5, NULL);
  expect_take(r, "notfound"); /* confirmed: spent */
  freeReplyObject(r);
}

static void test_closed_is_fenced(void **state) {
  (void)state;
  expect_int(session_open("c1", "", "A", ""), 1);
  expect_int(session_token("c1", "t1", "A", "1"), 1);
  redisReply *r = take("t1", "", "B", "1000");
  expect_take(r, "ok");
  freeReplyObject(r);
  expect_int(session_open("c1", "", "B", "2"), 2); /* B confirms its take */
  expect_int(session_closed("c1", "A", "1", "2000"), 0); /* the old holder, late */
  expect_int(session_closed("c1", "B", "1", "2000"), 0); /* the right node, an old generation */
  assert_string_equal(hget(SKEY("c1"), "c"), "0");
  assert_int_equal(pttl(SKEY("c1")), -1);
  assert_int_equal(int_of(cmd("ZCARD %s", CLOSED)), 0);
  expect_int(session_closed("c1", "B", "2", "2000"), 1);
  assert_string_equal(hget(SKEY("c1"), "c"), "2000");
  expect_zscore(CLOSED, "c1", "2000");
  expect_nil(session_closed("nobody", "A", "1", "2000"));
}

/* Past max_closed the oldest closed session goes, with all its keys; the one just closed
 * stays. Closed sessions past their age go too (the callers' clock). */
static void test_closed_cap_evicts_oldest(void **state) {
  (void)state;
  cfg.max_closed = "2";
  const char *ids[] = {"s1", "s2", "s3"};
  for (int i = 0; i < 3; i++) {
    char tok[8], now[8];
    snprintf(tok, sizeof(tok), "t%d", i);
    snprintf(now, sizeof(now), "%d", 1000 + i);
    expect_int(session_open(ids[i], "", "A", ""), 1);
    expect_int(session_token(ids[i], tok, "A", "1"), 1);
    publish(tagged("c:", ids[i]), ids[i], "m", now, "5");
    expect_int(session_closed(ids[i], "A", "1", now), 1);
  }
  assert_int_equal(exists(SKEY("s1")), 0);
  assert_int_equal(exists(TKEY("t0")), 0);
  assert_int_equal(exists(key("c:s1", ":m")), 0);
  assert_int_equal(exists(key("c:s1", ":x")), 0);
  assert_int_equal(exists(SKEY("s2")), 1);
  assert_int_equal(exists(SKEY("s3")), 1);
  assert_int_equal(exists(TKEY("t2")), 1);
  assert_int_equal(int_of(cmd("ZCARD %s", CLOSED)), 2);
  redisReply *r = take("t0", "", "B", "1003");
  expect_take(r, "notfound");
  freeReplyObject(r);
  /* an open session is never evicted: s2 taken (open), two more closed */
  r = take("t1", "", "B", "1003");
  expect_take(r, "ok");
  freeReplyObject(r);
  for (int i = 0; i < 2; i++) {
    char id[8];
    snprintf(id, sizeof(id), "n%d", i);
    expect_int(session_open(id, "", "A", ""), 1);
    expect_int(session_closed(id, "A", "1", "1004"), 1);
  }
  assert_int_equal(exists(SKEY("s2")), 1);
  assert_int_equal(exists(SKEY("s3")), 0);
  assert_int_equal(int_of(cmd("ZCARD %s", CLOSED)), 2);
  /* even if the closed set names it (a stale entry), an open session is not dropped */
  expect_int(cmd("ZADD %s 1 s2", CLOSED), 1);
  expect_int(session_open("n2", "", "A", ""), 1);
  expect_int(session_closed("n2", "A", "1", "1004"), 1);
  assert_int_equal(exists(SKEY("s2")), 1);
  assert_string_equal(hget(SKEY("s2"), "c"), "0");
  expect_zscore(CLOSED, "s2", NULL);
  expect_zscore(CLOSED, "n0", NULL);
  assert_int_equal(int_of(cmd("ZCARD %s", CLOSED)), 2);
  /* age: 60 s after, by the callers' clock */
  cfg.max_closed = "0";
  expect_int(session_open("late", "", "A", ""), 1);
  expect_int(session_closed("late", "A", "1", "61005"), 1);
  assert_int_equal(exists(SKEY("n1")), 0);
  assert_int_equal(exists(SKEY("n2")), 0);
  assert_int_equal(exists(SKEY("late")), 1);
  /* and a take of a session past its age finds nothing */
  expect_int(session_token("s2", "t9", "B", "2"), 1);
  expect_int(session_closed("s2", "B", "2", "70000"), 1);
  r = take("t9", "", "C", "130001");
  expect_take(r, "notfound");
  freeReplyObject(r);
  assert_int_equal(exists(SKEY("s2")), 0);
}

/* No TTL on a session's keys while it is open; session_ttl on all of them once closed; the
 * streams of its groups are kept at least as long (keys the script builds, checked against
 * the names built here, with bytes that need escaping). */
static void test_ttls(void **state) {
  (void)state;
  cfg.sttl = "1000";
  const char *group = "r{1}%";
  const char *gs = tagged("g:", group);
  publish(gs, NULL, "m", "1000", "3");
  expect_int(session_open("c1", "alice", "A", ""), 1);
  redisReply *r = session_group("c1", group, "1", "0", "0", "4");
  expect_str(r->element[0], "1");
  expect_str(r->element[1], "3");
  freeReplyObject(r);
  expect_int(session_token("c1", "tok", "A", "1"), 1);
  publish("c:c1", "c1", "direct", "1000", "5");
  const char *mine[] = {SKEY("c1"), GKEY("c1"), TKEY("tok"), key("c:c1", ":m"), key("c:c1", ":x")};
  for (int i = 0; i < 5; i++) {
    assert_int_equal(exists(mine[i]), 1);
    assert_int_equal(pttl(mine[i]), -1);
  }
  assert_in_range(pttl(key(gs, ":m")), 1, 1000);
  assert_in_range(pttl(key(gs, ":x")), 1, 1000);
  expect_int(session_closed("c1", "A", "1", "2000"), 1);
  for (int i = 0; i < 5; i++) assert_in_range(pttl(mine[i]), 1, 60000);
  assert_in_range(pttl(key(gs, ":m")), 1001, 60000); /* pushed out to the session's TTL */
  assert_in_range(pttl(key(gs, ":x")), 1001, 60000);
  /* a publish to the group does not pull it back in; to the closed session's stream it
   * keeps the session's */
  publish(gs, NULL, "m2", "2001", "3");
  assert_in_range(pttl(key(gs, ":m")), 1001, 60000);
  publish("c:c1", "c1", "d2", "2001", "5");
  assert_in_range(pttl(key("c:c1", ":x")), 1, 60000);
  /* resumed: TTLs until the taker confirms (a pending take), then none */
  r = take("tok", "alice", "B", "2500");
  expect_take(r, "ok");
  freeReplyObject(r);
  for (int i = 0; i < 5; i++) assert_in_range(pttl(mine[i]), 1, 60000);
  expect_int(session_open("c1", "alice", "B", "2"), 2);
  for (int i = 0; i < 5; i++) {
    if (i == 2) continue; /* the token is spent */
    assert_int_equal(pttl(mine[i]), -1);
  }
  assert_int_equal(exists(TKEY("tok")), 0);
}

/* ---- cases: nodes ----------------------------------------------------------------------- */

static void test_nodes_heartbeat_and_expire(void **state) {
  (void)state;
  expect_int(heartbeat("A", "wss://a.example/ws", "1000", "5000"), 1); /* first */
  expect_int(heartbeat("A", "wss://a.example/ws", "2000", "5000"), 0);
  expect_int(heartbeat("B", "wss://b.example/ws", "2000", "100000"), 1);
  redisReply *r = cmd("ZSCORE %s A", NODES);
  expect_str(r, "7000");
  freeReplyObject(r);
  assert_string_equal(hget(NODE_INFO("A"), "url"), "wss://a.example/ws");
  assert_in_range(pttl(NODE_INFO("A")), 1, 5000);
  /* A holds s1, s2 open; s3 it closed itself; s4 was taken by B */
  for (int i = 1; i <= 4; i++) {
    char id[4];
    snprintf(id, sizeof(id), "s%d", i);
    expect_int(session_open(id, "", "A", ""), 1);
  }
  expect_int(session_closed("s3", "A", "1", "3000"), 1);
  expect_int(session_token("s4", "t4", "A", "1"), 1);
  r = take("t4", "", "B", "3000");
  expect_take(r, "ok");
  freeReplyObject(r);
  expect_int(session_open("s4", "", "B", "2"), 2); /* B confirms its take */
  assert_int_equal(int_of(cmd("SCARD %s", NODE_SET("A"))), 2);

  /* not yet: deadline 7000 */
  r = node_expire("7000", "100");
  no_error(r);
  assert_int_equal(r->element[0]->elements, 0);
  assert_int_equal(r->element[1]->integer, 0);
  assert_int_equal(r->element[2]->integer, 0);
  freeReplyObject(r);
  /* past it, one session per call */
  r = node_expire("7001", "1");
  no_error(r);
  assert_int_equal(r->element[0]->elements, 0);
  assert_int_equal(r->element[1]->integer, 1);
  assert_int_equal(r->element[2]->integer, 1);
  freeReplyObject(r);
  r = node_expire("7001", "1");
  no_error(r);
  assert_int_equal(r->element[0]->elements, 1);
  expect_str(r->element[0]->element[0], "A");
  assert_int_equal(r->element[1]->integer, 1);
  assert_int_equal(r->element[2]->integer, 0);
  freeReplyObject(r);
  for (int i = 1; i <= 2; i++) {
    char id[4];
    snprintf(id, sizeof(id), "s%d", i);
    assert_string_equal(hget(SKEY(id), "c"), "7000"); /* closed as of the deadline */
    assert_in_range(pttl(SKEY(id)), 1, 60000 - 1);
    expect_zscore(CLOSED, id, "7000");
  }
  assert_string_equal(hget(SKEY("s3"), "c"), "3000"); /* untouched */
  assert_string_equal(hget(SKEY("s4"), "c"), "0");
  assert_string_equal(hget(SKEY("s4"), "n"), "B");
  assert_int_equal(pttl(SKEY("s4")), -1);
  assert_int_equal(exists(NODE_SET("A")), 0);
  assert_int_equal(exists(NODE_INFO("A")), 0);
  r = cmd("ZRANGE %s 0 -1", NODES);
  assert_int_equal(r->elements, 1);
  expect_str(r->element[0], "B");
  freeReplyObject(r);

  /* A was only late: it beats again (1: re-register), takes back what is still its own,
   * and learns which of its sessions moved on */
  expect_int(heartbeat("A", "wss://a.example/ws", "8000", "5000"), 1);
  expect_int(session_open("s1", "", "A", "1"), 1);
  assert_string_equal(hget(SKEY("s1"), "c"), "0");
  assert_int_equal(pttl(SKEY("s1")), -1);
  expect_zscore(CLOSED, "s1", NULL);
  expect_nil(session_open("s4", "", "A", "1"));
  assert_string_equal(hget(SKEY("s4"), "n"), "B");
  /* and a session Redis lost is made again */
  r = session_open("gone", "zed", "A", "5");
  assert_int_equal(r->type, REDIS_REPLY_ARRAY);
  assert_int_equal(r->elements, 2);
  assert_int_equal(r->element[0]->integer, 1);
  expect_str(r->element[1], "new");
  freeReplyObject(r);
  assert_string_equal(hget(SKEY("gone"), "i"), "zed");
  /* a node dead for longer than the session TTL: its sessions go at once */
  r = node_expire("200000", "100");
  no_error(r);
  assert_int_equal(r->element[0]->elements, 2); /* A again (deadline 13000), B (102000) */
  assert_int_equal(r->element[1]->integer, 3);  /* s1, gone; s4 */
  assert_int_equal(r->element[2]->integer, 0);
  freeReplyObject(r);
  assert_int_equal(exists(SKEY("s1")), 0);
  assert_int_equal(exists(SKEY("gone")), 0);
  assert_int_equal(exists(SKEY("s4")), 0);
  assert_int_equal(int_of(cmd("ZCARD %s", NODES)), 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup(test_header_matches_sources, setup),
      cmocka_unit_test_setup(test_publish_numbers_stores_and_publishes, setup),
      cmocka_unit_test_setup(test_history_capped_by_count, setup),
      cmocka_unit_test_setup(test_history_capped_by_age, setup),
      cmocka_unit_test_setup(test_missing_metadata_new_epoch, setup),
      cmocka_unit_test_setup(test_pending_take_retried, setup),
      cmocka_unit_test_setup(test_run_id_change_new_epoch, setup),
      cmocka_unit_test_setup(test_read_from_offset, setup),
      cmocka_unit_test_setup(test_direct_unknown_session, setup),
      cmocka_unit_test_setup(test_direct_to_holding_node, setup),
      cmocka_unit_test_setup(test_session_lifecycle, setup),
      cmocka_unit_test_setup(test_two_takes_one_wins, setup),
      cmocka_unit_test_setup(test_take_moves_and_kills, setup),
      cmocka_unit_test_setup(test_closed_is_fenced, setup),
      cmocka_unit_test_setup(test_closed_cap_evicts_oldest, setup),
      cmocka_unit_test_setup(test_ttls, setup),
      cmocka_unit_test_setup(test_nodes_heartbeat_and_expire, setup),
  };
  return cmocka_run_group_tests(tests, start_server, stop_server);
}
