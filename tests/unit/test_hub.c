/*
 * test_hub.c — the hub against an engine that fails or answers late on demand: what the hub
 * does when its engine is asynchronous or unavailable (issue 10, item 10).
 *
 * Why here and not in the integration tests: the engine interface is internal (engine.h is not
 * in the public header), so a fixture such as hubtest cannot wrap it without a test-only hook
 * in the library's public API. A unit test links the static library and sees src/, so it
 * builds the wrapper itself: `tengine` forwards every call to a real memory engine, and fails
 * a take, a sync barrier or a history read, answers a publish on a later loop turn, or refuses
 * position_now when told to; it also records what the hub told it (closed sessions, join
 * positions, limits) and lets the test fire the take-over hook the redis engine fires when
 * its node channel says so. The hub runs on a real libuv loop and listens on 127.0.0.1:0; the
 * client is a small blocking WebSocket client below that runs the loop while it waits.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cmocka.h>
#include <uv.h>

#include "engine/engine.h"
#include "hub/envelope.h"

/* ---- the wrapping engine ---------------------------------------------------------------- */

enum { PASS = 0, FAIL_RETURN = 1, FAIL_CB_NOW = 2, FAIL_CB_LATER = 3 };

typedef struct later_op {
  sb_engine_session_cb take_cb; /* a take answered later (with `status`), or */
  sb_engine_position_cb pub_cb; /* a publish's completion */
  void *ctx;
  int status;
  uint64_t offset, epoch;
} later_op;

typedef struct tengine {
  sb_engine base;
  sb_engine *mem;
  sb_engine_host host;
  sb_engine_limits limits;
  int attached, got_limits;
  /* what to do */
  int take, sync, read;   /* PASS or FAIL_* */
  int async_publish;      /* publish answers 0 and reports the outcome on a later turn */
  int refuse_position_now;
  /* answers for a later turn */
  later_op later[64];
  size_t nlater;
  uv_timer_t timer;
  /* what the hub told it */
  char closed[32][23];
  size_t nclosed;
  char group[64];
  int group_joined;
  uint64_t group_offset, group_epoch;
} tengine;

static tengine te;
static uv_loop_t loop;

#define MEM (te.mem)

static void run_later(uv_timer_t *t) {
  (void)t;
  /* Answers queued by these callbacks wait for the next round. */
  later_op ops[64];
  size_t n = te.nlater;
  memcpy(ops, te.later, n * sizeof(*ops));
  te.nlater = 0;
  for (size_t i = 0; i < n; i++) {
    if (ops[i].take_cb) ops[i].take_cb(ops[i].ctx, ops[i].status, NULL);
    else ops[i].pub_cb(ops[i].ctx, ops[i].status, ops[i].offset, ops[i].epoch);
  }
}

static later_op *queue_later(void) {
  assert_true(te.nlater < 64);
  later_op *op = &te.later[te.nlater++];
  memset(op, 0, sizeof(*op));
  uv_timer_start(&te.timer, run_later, 1, 0);
  return op;
}

static void t_attach(sb_engine *e, const sb_engine_host *host) {
  (void)e;
  te.attached = host != NULL;
  if (host) {
    te.host = *host;
    if (host->limits) {
      te.limits = *host->limits;
      te.got_limits = 1;
    }
  }
  MEM->ops->attach(MEM, host);
}

/* A publish whose completion is captured here, to be reported on a later turn. */
static void capture_pub(void *ctx, int status, uint64_t offset, uint64_t epoch) {
  later_op *op = ctx;
  op->status = status;
  op->offset = offset;
  op->epoch = epoch;
}

static int t_publish(sb_engine *e, const char *s, size_t n, const char *session,
                     const uint8_t *data, size_t len, sb_engine_position_cb done, void *ctx) {
  (void)e;
  if (!te.async_publish) return MEM->ops->publish(MEM, s, n, session, data, len, done, ctx);
  later_op tmp = {0};
  int r = MEM->ops->publish(MEM, s, n, session, data, len, capture_pub, &tmp);
  if (r != 0) tmp.status = r; /* an asynchronous engine reports even this later */
  if (done) {
    later_op *op = queue_later();
    *op = tmp;
    op->pub_cb = done;
    op->ctx = ctx;
  }
  return 0;
}

static int t_subscribe(sb_engine *e, const char *s, size_t n) {
  (void)e;
  return MEM->ops->subscribe(MEM, s, n);
}

static int t_unsubscribe(sb_engine *e, const char *s, size_t n) {
  (void)e;
  return MEM->ops->unsubscribe(MEM, s, n);
}

static int t_read(sb_engine *e, const char *s, size_t n, uint64_t from, size_t max,
                  sb_engine_read_cb cb, void *ctx) {
  (void)e;
  if (te.read == FAIL_RETURN) return SB_EIO;
  if (te.read == FAIL_CB_NOW) {
    cb(ctx, SB_EIO, 0, 0, 0, NULL, 0);
    return 0;
  }
  return MEM->ops->read(MEM, s, n, from, max, cb, ctx);
}

static int t_trim(sb_engine *e, const char *s, size_t n, uint64_t through) {
  (void)e;
  return MEM->ops->trim(MEM, s, n, through);
}

static int t_position(sb_engine *e, const char *s, size_t n, sb_engine_position_cb cb,
                      void *ctx) {
  (void)e;
  return MEM->ops->position(MEM, s, n, cb, ctx);
}

static int t_position_now(sb_engine *e, const char *s, size_t n, uint64_t *offset,
                          uint64_t *epoch) {
  (void)e;
  if (te.refuse_position_now) return SB_ENOTFOUND;
  return MEM->ops->position_now(MEM, s, n, offset, epoch);
}

static int t_session_open(sb_engine *e, const char *id, const char *identity) {
  (void)e;
  return MEM->ops->session_open(MEM, id, identity);
}

static int t_session_group(sb_engine *e, const char *id, const char *group, int joined,
                           uint64_t offset, uint64_t epoch) {
  (void)e;
  snprintf(te.group, sizeof(te.group), "%s", group);
  te.group_joined = joined;
  te.group_offset = offset;
  te.group_epoch = epoch;
  return MEM->ops->session_group(MEM, id, group, joined, offset, epoch);
}

static int t_session_closed(sb_engine *e, const char *id) {
  (void)e;
  assert_true(te.nclosed < 32);
  snprintf(te.closed[te.nclosed++], 23, "%s", id);
  return MEM->ops->session_closed(MEM, id);
}

static int t_session_token(sb_engine *e, const char *id, const char *token) {
  (void)e;
  return MEM->ops->session_token(MEM, id, token);
}

static int t_session_take(sb_engine *e, const char *token, const char *identity,
                          sb_engine_session_cb cb, void *ctx) {
  (void)e;
  switch (te.take) {
    case FAIL_RETURN:
      return SB_EIO;
    case FAIL_CB_NOW:
      cb(ctx, SB_EIO, NULL);
      return 0;
    case FAIL_CB_LATER: {
      later_op *op = queue_later();
      op->take_cb = cb;
      op->ctx = ctx;
      op->status = SB_EIO;
      return 0;
    }
    default:
      return MEM->ops->session_take(MEM, token, identity, cb, ctx);
  }
}

static int t_sync(sb_engine *e, void (*cb)(void *ctx, int status), void *ctx) {
  (void)e;
  if (te.sync == FAIL_RETURN) return SB_EIO;
  if (te.sync == FAIL_CB_NOW) {
    cb(ctx, SB_EIO);
    return 0;
  }
  return MEM->ops->sync(MEM, cb, ctx);
}

static void t_tick(sb_engine *e) {
  (void)e;
  MEM->ops->tick(MEM);
}

static void t_free(sb_engine *e) { (void)e; }

static const sb_engine_ops tengine_ops = {
    .name = "test",
    .attach = t_attach,
    .publish = t_publish,
    .subscribe = t_subscribe,
    .unsubscribe = t_unsubscribe,
    .read = t_read,
    .trim = t_trim,
    .position = t_position,
    .position_now = t_position_now,
    .session_open = t_session_open,
    .session_group = t_session_group,
    .session_closed = t_session_closed,
    .session_token = t_session_token,
    .session_take = t_session_take,
    .sync = t_sync,
    .tick = t_tick,
    .free = t_free,
};

static size_t closed_count(const char *id) {
  size_t n = 0;
  for (size_t i = 0; i < te.nclosed; i++) n += strcmp(te.closed[i], id) == 0;
  return n;
}

static sb_memory_stats mem_stats(void) {
  sb_memory_stats st;
  sb_memory_engine_stats(MEM, &st);
  return st;
}

/* ---- the hub ------------------------------------------------------------------------------ */

static sb_hub *hub;
static sb_schemas sch;
static int port, join_on_open, server_closes;

static void on_open(sb_conn *c, void *user) {
  (void)user;
  if (join_on_open) assert_int_equal(sb_conn_join(c, "room"), 0);
}

static void on_close(sb_conn *c, int code, const char *reason, size_t rlen, void *user) {
  (void)c, (void)code, (void)reason, (void)rlen, (void)user;
  server_closes++;
}

static int setup(void **state) {
  (void)state;
  memset(&te, 0, sizeof(te));
  join_on_open = server_closes = 0;
  assert_int_equal(uv_loop_init(&loop), 0);
  uv_timer_init(&loop, &te.timer);
  sb_engine_limits lim = {1000, 60000, 60000, 1000};
  assert_int_equal(sb_memory_engine_new(&te.mem, NULL, &lim), 0);
  te.base.ops = &tengine_ops;
  sb_server_options so;
  sb_server_options_init(&so);
  sb_hub_options ho;
  sb_hub_options_init(&ho);
  ho.history_max = 7;
  ho.history_age_ms = 12345;
  ho.session_ttl_ms = 23456;
  ho.max_closed_sessions = 99;
  ho.engine = &te.base;
  ho.on_open = on_open;
  ho.on_close = on_close;
  assert_int_equal(sb_hub_new(&hub, &loop, &so, &ho), 0);
  assert_int_equal(sb_server_listen(sb_hub_server(hub), "127.0.0.1", 0), 0);
  port = sb_server_port(sb_hub_server(hub));
  assert_int_equal(sb_schemas_init(&sch, NULL), 0);
  return 0;
}

static void on_shutdown(sb_server *s, void *user) {
  (void)s;
  *(int *)user = 1;
}

static void timer_closed(uv_handle_t *h) { (void)h; }

/* Everything closes and the loop ends with no handle left. */
static int teardown(void **state) {
  (void)state;
  int done = 0;
  assert_int_equal(sb_server_shutdown(sb_hub_server(hub), on_shutdown, &done), 0);
  while (!done) uv_run(&loop, UV_RUN_ONCE);
  te.take = te.sync = te.read = PASS;
  while (te.nlater) uv_run(&loop, UV_RUN_ONCE); /* answers still owed to the hub */
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(sb_hub_free(hub), 0);
  assert_false(te.attached); /* detached: no hook may reach the freed hub */
  uv_close((uv_handle_t *)&te.timer, timer_closed);
  uv_run(&loop, UV_RUN_DEFAULT);
  assert_int_equal(uv_loop_close(&loop), 0);
  te.mem->ops->free(te.mem);
  sb_schemas_free(&sch);
  return 0;
}

/* ---- a small blocking WebSocket client that runs the loop while it waits ------------------ */

typedef struct client {
  int fd;
  uint8_t buf[1 << 16];
  size_t len;
  int eof;
} client;

typedef struct frame {
  int op;
  uint8_t data[1 << 15];
  size_t len;
} frame;

static void pump(int fd) {
  uv_run(&loop, UV_RUN_NOWAIT);
  struct pollfd p = {fd, POLLIN, 0};
  poll(&p, 1, fd >= 0 ? 2 : 0);
}

/* Runs the loop for about `ms` milliseconds. */
static void settle(int ms) {
  for (int i = 0; i < ms / 2; i++) {
    uv_run(&loop, UV_RUN_NOWAIT);
    usleep(2000);
  }
}

static void fill(client *c) {
  ssize_t n = recv(c->fd, c->buf + c->len, sizeof(c->buf) - c->len, 0);
  if (n > 0) c->len += (size_t)n;
  else if (n == 0) c->eof = 1;
  else if (errno != EAGAIN && errno != EWOULDBLOCK) c->eof = 1;
}

static void consume(client *c, size_t n) {
  memmove(c->buf, c->buf + n, c->len - n);
  c->len -= n;
}

static void client_open(client *c) {
  memset(c, 0, sizeof(*c));
  c->fd = socket(AF_INET, SOCK_STREAM, 0);
  assert_true(c->fd >= 0);
  struct sockaddr_in a = {0};
  a.sin_family = AF_INET;
  a.sin_port = htons((uint16_t)port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  assert_int_equal(connect(c->fd, (struct sockaddr *)&a, sizeof(a)), 0);
  fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
  static const char req[] =
      "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
      "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n";
  assert_int_equal(send(c->fd, req, sizeof req - 1, 0), (ssize_t)(sizeof req - 1));
  for (int i = 0; i < 2500; i++) {
    fill(c);
    const uint8_t *end = memmem(c->buf, c->len, "\r\n\r\n", 4);
    if (end) {
      assert_memory_equal(c->buf, "HTTP/1.1 101", 12);
      consume(c, (size_t)(end + 4 - c->buf));
      return;
    }
    assert_false(c->eof);
    pump(c->fd);
  }
  fail_msg("no 101 from the hub");
}

static void client_close(client *c) {
  close(c->fd);
  c->fd = -1;
}

/* The next whole frame from the server (unmasked; the hub sends whole messages). */
static void next_frame(client *c, frame *f) {
  for (int i = 0; i < 2500; i++) {
    if (c->len >= 2) {
      size_t hl = 2, n = c->buf[1] & 0x7f;
      if (n == 126) {
        hl = 4;
        n = c->len >= 4 ? (size_t)c->buf[2] << 8 | c->buf[3] : SIZE_MAX;
      }
      assert_true(n != 127);
      if (n != SIZE_MAX && c->len >= hl + n) {
        assert_true(n <= sizeof(f->data));
        f->op = c->buf[0] & 0x0f;
        memcpy(f->data, c->buf + hl, n);
        f->len = n;
        consume(c, hl + n);
        return;
      }
    }
    if (c->eof) fail_msg("the connection ended without the expected frame");
    fill(c);
    pump(c->fd);
  }
  fail_msg("no frame from the hub within 5 s");
}

static void send_binary(client *c, const uint8_t *p, size_t n) {
  uint8_t out[1 << 12];
  static const uint8_t key[4] = {0x11, 0x22, 0x33, 0x44};
  assert_true(n < 126 + 200 && n + 8 < sizeof(out));
  size_t hl = 2;
  out[0] = 0x82;
  if (n < 126) {
    out[1] = (uint8_t)(0x80 | n);
  } else {
    out[1] = 0x80 | 126;
    out[2] = (uint8_t)(n >> 8);
    out[3] = (uint8_t)n;
    hl = 4;
  }
  memcpy(out + hl, key, 4);
  for (size_t i = 0; i < n; i++) out[hl + 4 + i] = p[i] ^ key[i % 4];
  assert_int_equal(send(c->fd, out, hl + 4 + n, 0), (ssize_t)(hl + 4 + n));
}

static void send_env(client *c, const sb_envelope *env) {
  sb_value v[SB_ENV_NFIELDS];
  sb_envelope_values(env, v);
  uint8_t buf[1024];
  size_t n;
  assert_int_equal(sb_schema_encode(sch.envelope, v, buf, sizeof(buf), &n, NULL, 0), 0);
  send_binary(c, buf, n);
}

/* RESUME with a token and no positions. */
static void send_resume(client *c, const char *token) {
  sb_value v[2] = {{0, token, strlen(token)}, {0, "", 0}};
  uint8_t body[256];
  size_t n;
  assert_int_equal(sb_schema_encode(sch.resume, v, body, sizeof(body), &n, NULL, 0), 0);
  sb_envelope env = {0};
  env.kind = SB_KIND_RESUME;
  env.body = body;
  env.body_len = n;
  send_env(c, &env);
}

static void expect_hello(client *c, char id[23], char token[23]) {
  frame f;
  next_frame(c, &f);
  assert_int_equal(f.op, 2);
  assert_int_equal(f.data[0], SB_KIND_HELLO);
  sb_value v[10];
  assert_int_equal(sb_schema_decode(sch.hello, f.data, f.len, v, NULL, 0), 0);
  assert_int_equal(v[2].len, 22);
  assert_int_equal(v[3].len, 22);
  memcpy(id, v[2].data, 22);
  id[22] = '\0';
  memcpy(token, v[3].data, 22);
  token[22] = '\0';
}

/* The next envelope; its strings are copied into `f` and stay valid until f is reused. */
static void expect_env(client *c, frame *f, sb_envelope *env, int kind) {
  next_frame(c, f);
  assert_int_equal(f->op, 2);
  assert_int_equal(sb_envelope_decode(&sch, f->data, f->len, env, NULL, 0), 0);
  if (env->kind != kind)
    fail_msg("expected an envelope of kind %d, got %d (status %u)", kind, env->kind, env->status);
}

static void expect_error(client *c, int status, const char *text) {
  frame f;
  sb_envelope env;
  expect_env(c, &f, &env, SB_KIND_ERROR);
  assert_int_equal(env.status, status);
  if (text) {
    assert_int_equal(env.body_len, strlen(text));
    assert_memory_equal(env.body, text, env.body_len);
  }
}

/* The connection still carries messages both ways: PING is answered. */
static void expect_alive(client *c) {
  sb_envelope ping = {0};
  ping.kind = SB_KIND_PING;
  ping.id = 77;
  send_env(c, &ping);
  frame f;
  sb_envelope env;
  expect_env(c, &f, &env, SB_KIND_PING);
  assert_int_equal(env.status, 200);
  assert_int_equal(env.id, 77);
}

static int expect_close(client *c) {
  frame f;
  next_frame(c, &f);
  if (f.op != 8) fail_msg("expected a close frame, got opcode %d", f.op);
  assert_true(f.len >= 2);
  return f.data[0] << 8 | f.data[1];
}

/* A connection that came and went: its session is closed and resumable with `token`. */
static void session_left_behind(char id[23], char token[23]) {
  client a;
  client_open(&a);
  expect_hello(&a, id, token);
  int closes = server_closes;
  client_close(&a);
  for (int i = 0; i < 2500 && server_closes == closes; i++) pump(-1), usleep(2000);
  assert_int_equal(server_closes, closes + 1);
  assert_null(sb_hub_find(hub, id));
}

/* ---- the tests -------------------------------------------------------------------------- */

static const char RESUME_503[] = "resume failed: engine unavailable, retry";

/* Regression (issue 10): a take that failed in the engine was answered like an unknown token
 * (401) when the failure came through the callback, and the client gave its session up. Every
 * form of the failure is a 503 now; the connection stays open as its fresh session, and the
 * token, which the failure did not spend, resumes the session afterwards. */
static void test_take_failure_is_503_and_keeps_the_token(void **state) {
  (void)state;
  char ida[23], toka[23], idb[23], tokb[23];
  session_left_behind(ida, toka);
  client b;
  client_open(&b);
  expect_hello(&b, idb, tokb);
  const int modes[] = {FAIL_RETURN, FAIL_CB_NOW, FAIL_CB_LATER};
  for (size_t i = 0; i < 3; i++) {
    te.take = modes[i];
    send_resume(&b, toka);
    expect_error(&b, 503, RESUME_503);
    expect_alive(&b);
    assert_non_null(sb_hub_find(hub, idb)); /* still its fresh session */
    assert_null(sb_hub_find(hub, ida));
  }
  te.take = PASS;
  send_resume(&b, "nonexistentnonexistent"); /* 22 characters, no such token */
  expect_error(&b, 401, "resume refused: unknown, used or expired token");
  expect_alive(&b);
  send_resume(&b, toka);
  char id[23], tok[23];
  expect_hello(&b, id, tok);
  assert_string_equal(id, ida);
  frame f;
  sb_envelope env;
  expect_env(&b, &f, &env, SB_KIND_RESUMED);
  assert_non_null(sb_hub_find(hub, ida));
  assert_null(sb_hub_find(hub, idb));
  client_close(&b);
}

/* After the take: a sync barrier or a history read that fails is a 503 too, the connection
 * stays open as the resumed session (its new HELLO), and a RESUME with that HELLO's token on
 * the same connection then replays everything — without closing the session it holds (a
 * RESUME with the connection's own token used to close it). */
static void test_sync_and_read_failures_are_503(void **state) {
  (void)state;
  char ida[23], toka[23], idb[23], tokb[23];
  session_left_behind(ida, toka);
  assert_int_equal(sb_hub_send_to(hub, ida, SB_METHOD_POST, "/d", "m1", 2), 0);
  client b;
  client_open(&b);
  expect_hello(&b, idb, tokb);
  struct { int *knob, mode; } steps[] = {{&te.sync, FAIL_RETURN}, {&te.sync, FAIL_CB_NOW},
                                         {&te.read, FAIL_RETURN}, {&te.read, FAIL_CB_NOW}};
  char id[23], token[23];
  memcpy(token, toka, sizeof(token));
  for (size_t i = 0; i < 4; i++) {
    *steps[i].knob = steps[i].mode;
    send_resume(&b, token);
    expect_hello(&b, id, token); /* the resumed session, with a fresh token */
    assert_string_equal(id, ida);
    expect_error(&b, 503, RESUME_503);
    expect_alive(&b);
    assert_non_null(sb_hub_find(hub, ida));
    *steps[i].knob = PASS;
  }
  send_resume(&b, token);
  expect_hello(&b, id, token);
  frame f;
  sb_envelope env;
  expect_env(&b, &f, &env, SB_KIND_PUSH); /* what the failed attempts did not replay */
  assert_int_equal(env.offset, 1);
  assert_int_equal(env.body_len, 2);
  assert_memory_equal(env.body, "m1", 2);
  expect_env(&b, &f, &env, SB_KIND_RESUMED);
  /* ida was closed once (its first connection left), idb once (b adopted ida); the resumes
   * with b's own token closed nothing. */
  assert_int_equal(closed_count(ida), 1);
  assert_int_equal(closed_count(idb), 1);
  assert_int_equal(mem_stats().closed_sessions, 1);
  client_close(&b);
}

typedef struct outcome {
  int calls, status, inside;
  int chain; /* send once more from inside the callback */
  const char *to;
} outcome;

static int in_call;

static void on_done(int status, void *user) {
  outcome *o = user;
  o->calls++;
  o->status = status;
  o->inside |= in_call;
  if (o->chain) {
    o->chain = 0;
    in_call = 1;
    assert_int_equal(sb_hub_send_to_cb(hub, o->to, SB_METHOD_POST, "/d", "c", 1, on_done, o), 0);
    in_call = 0;
  }
}

static int send_cb(const char *to, const char *body, outcome *o) {
  in_call = 1;
  int r = sb_hub_send_to_cb(hub, to, SB_METHOD_POST, "/d", body, strlen(body), on_done, o);
  in_call = 0;
  assert_int_equal(o->calls, 0); /* never inside the call */
  return r;
}

static void wait_calls(outcome *o, int n) {
  for (int i = 0; i < 2500 && o->calls < n; i++) pump(-1), usleep(1000);
  settle(20); /* and no more than n */
  assert_int_equal(o->calls, n);
  assert_false(o->inside);
}

static void expect_push(client *c, uint64_t offset, const char *body) {
  frame f;
  sb_envelope env;
  expect_env(c, &f, &env, SB_KIND_PUSH);
  assert_int_equal(env.offset, offset);
  assert_int_equal(env.body_len, strlen(body));
  assert_memory_equal(env.body, body, env.body_len);
}

/* sb_hub_send_to_cb reports not-found (and success) exactly once, after the call returns,
 * whether the engine knows at once or answers later; sb_hub_send_to keeps its synchronous
 * not-found where the engine knows at once, and means "accepted" where it does not. */
static void test_send_to_cb_reports_later_with_any_engine(void **state) {
  (void)state;
  static const char NOBODY[] = "nobodynobodynobodynobo";
  client a;
  char ida[23], toka[23];
  client_open(&a);
  expect_hello(&a, ida, toka);
  for (int async = 0; async < 2; async++) {
    te.async_publish = async;
    outcome unknown = {0}, known = {0}, shortid = {0}, chained = {0};
    chained.chain = 1;
    chained.to = ida;
    assert_int_equal(send_cb(NOBODY, "x", &unknown), 0);
    assert_int_equal(send_cb(ida, "k", &known), 0);
    assert_int_equal(send_cb("short", "x", &shortid), 0);
    assert_int_equal(send_cb(NOBODY, "x", &chained), 0);
    assert_int_equal(sb_hub_send_to_cb(hub, ida, SB_METHOD_POST, "/d", "x", 1, NULL, NULL),
                     SB_EINVAL);
    assert_int_equal(sb_hub_send_to_cb(hub, ida, SB_METHOD_POST, "/d", NULL, 1, on_done, &known),
                     SB_EINVAL);
    wait_calls(&unknown, 1);
    wait_calls(&known, 1);
    wait_calls(&shortid, 1);
    wait_calls(&chained, 2); /* the one sent from the callback reported on a later turn */
    assert_int_equal(unknown.status, SB_ENOTFOUND);
    assert_int_equal(known.status, 0);
    assert_int_equal(shortid.status, SB_ENOTFOUND);
    assert_int_equal(chained.status, 0);
    expect_push(&a, 1 + 2 * (uint64_t)async, "k");
    expect_push(&a, 2 + 2 * (uint64_t)async, "c");
    /* The form without a callback: not-found at once only where the engine can tell. */
    assert_int_equal(sb_hub_send_to(hub, NOBODY, SB_METHOD_POST, "/d", "x", 1),
                     async ? 0 : SB_ENOTFOUND);
  }
  te.async_publish = 0;
  client_close(&a);
}

/* The engine's take-over hook (a resume on another node): the connection holding the session
 * here is closed with 4000, and its close does not close the session, which is held elsewhere
 * now. Other connections are untouched; an id nobody holds here changes nothing. */
static void test_taken_hook_closes_4000_and_keeps_the_session(void **state) {
  (void)state;
  client a, b;
  char ida[23], toka[23], idb[23], tokb[23];
  client_open(&a);
  expect_hello(&a, ida, toka);
  client_open(&b);
  expect_hello(&b, idb, tokb);
  te.host.taken(te.host.hub, "nobodynobodynobodynobo");
  expect_alive(&a);
  expect_alive(&b);
  te.host.taken(te.host.hub, ida);
  assert_null(sb_hub_find(hub, ida)); /* no longer this node's, at once */
  assert_int_equal(expect_close(&a), SB_CLOSE_REPLACED);
  client_close(&a); /* the hub's close callback follows */
  for (int i = 0; i < 2500 && server_closes == 0; i++) pump(-1), usleep(2000);
  assert_int_equal(server_closes, 1);
  assert_int_equal(closed_count(ida), 0);
  assert_int_equal(mem_stats().closed_sessions, 0);
  expect_alive(&b);
  client_close(&b);
}

/* The same on this node: a resume while the old connection is still open closes it with 4000
 * through the same path, and the old connection's close leaves the session alone. */
static void test_resume_here_closes_the_holder_4000(void **state) {
  (void)state;
  client a, b;
  char ida[23], toka[23], idb[23], tokb[23], id[23], tok[23];
  client_open(&a);
  expect_hello(&a, ida, toka);
  client_open(&b);
  expect_hello(&b, idb, tokb);
  send_resume(&b, toka);
  expect_hello(&b, id, tok);
  assert_string_equal(id, ida);
  frame f;
  sb_envelope env;
  expect_env(&b, &f, &env, SB_KIND_RESUMED);
  assert_int_equal(expect_close(&a), SB_CLOSE_REPLACED);
  client_close(&a); /* the hub's close callback follows */
  for (int i = 0; i < 2500 && server_closes == 0; i++) pump(-1), usleep(2000);
  assert_int_equal(server_closes, 1);
  assert_int_equal(closed_count(ida), 0);
  assert_int_equal(closed_count(idb), 1);
  assert_non_null(sb_hub_find(hub, ida));
  client_close(&b);
}

/* The hub's limits reach an engine it did not create; and where position_now cannot answer,
 * a join is recorded with epoch 0 for the engine to fill in. */
static void test_limits_and_unknown_join_positions(void **state) {
  (void)state;
  assert_true(te.got_limits);
  assert_int_equal(te.limits.history_max, 7);
  assert_int_equal(te.limits.history_age_ms, 12345);
  assert_int_equal(te.limits.session_ttl_ms, 23456);
  assert_int_equal(te.limits.max_closed_sessions, 99);
  join_on_open = 1;
  assert_int_equal(sb_hub_publish(hub, "room", SB_METHOD_POST, "/m", "1", 1), 0);
  client a, b;
  char id[23], tok[23];
  te.refuse_position_now = 1;
  client_open(&a);
  expect_hello(&a, id, tok);
  assert_string_equal(te.group, "room");
  assert_int_equal(te.group_joined, 1);
  assert_int_equal(te.group_offset, 0);
  assert_int_equal(te.group_epoch, 0);
  te.refuse_position_now = 0;
  client_open(&b);
  expect_hello(&b, id, tok);
  assert_int_equal(te.group_offset, 1);
  assert_true(te.group_epoch != 0);
  client_close(&a);
  client_close(&b);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(test_take_failure_is_503_and_keeps_the_token, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_sync_and_read_failures_are_503, setup, teardown),
      cmocka_unit_test_setup_teardown(test_send_to_cb_reports_later_with_any_engine, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_taken_hook_closes_4000_and_keeps_the_session, setup,
                                      teardown),
      cmocka_unit_test_setup_teardown(test_resume_here_closes_the_holder_4000, setup, teardown),
      cmocka_unit_test_setup_teardown(test_limits_and_unknown_join_positions, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
