/*
 * test_engine.c — the memory engine (src/engine/memory.c) through the engine interface: the
 * per-stream ring buffers (count and age bounds, contiguous offsets, epochs), reads from a
 * position, trimming, delivery to subscribed streams only, and sessions (groups, single-use
 * tokens, expiry). The clock is the test's, so age and expiry are exact.
 *
 * Which cases run where. The cases of engine_cases.h run here and, unchanged, against the redis
 * engine in test_engine_redis.c: offsets and the history_max bound, trim, delivery to
 * subscribed streams only, sessions (join positions, single-use tokens, a new token replacing
 * the old), the session TTL (here with the test's clock), a take by another identity that
 * spends nothing, the take of an open session, the eviction of the oldest closed sessions past
 * the cap, publish's completion with the limits given in attach, and presence (counts per
 * identity, first and last connection as events).
 * These stay here, with the memory engine only:
 *   test_history_age, test_session_expiry_exact, test_quiet_streams_keep_their_epoch — they
 *     need the test's clock (exact ages and expiry to the millisecond, 60 s of engine time in
 *     no time); test_engine_redis.c has real-time equivalents of the first two
 *     (test_history_age_real_time, and the shared test_session_ttl);
 *   test_epochs — "a new engine is a new epoch" is the memory engine's (a node's) property;
 *     with redis two engines share one stream and epoch, and a new epoch comes from a Redis
 *     restart, which test_engine_redis.c checks instead;
 *   test_streams_expire_and_memory_comes_back, test_closed_sessions_capped,
 *     test_closed_session_cost — they count the engine's streams, sessions and bytes
 *     (sb_memory_engine_stats, a counting allocator), which only the memory engine has.
 */
#define ENGINE_SESSION_TTL_MS 1000
#include "engine_cases.h"

static uint64_t clock_ms;
static uint64_t fake_now(void *hub) {
  (void)hub;
  return clock_ms;
}

static sb_engine *make_mem(size_t max, uint64_t age, uint64_t ttl, size_t max_closed,
                           const sb_allocator *a) {
  sb_engine *e;
  sb_engine_limits lim = {max, age, ttl, max_closed};
  assert_int_equal(sb_memory_engine_new(&e, a, &lim), 0);
  sb_engine_host host = {NULL, on_deliver, fake_now, NULL, NULL, on_presence_ev, NULL};
  e->ops->attach(e, &host);
  ngot = 0;
  clock_ms = 1000;
  return e;
}

/* The hooks of engine_cases.h: everything here is answered inside the call. */
static sb_engine *make_with(size_t max, uint64_t age, uint64_t ttl, size_t max_closed) {
  return make_mem(max, age, ttl, max_closed, NULL);
}
static void destroy(sb_engine *e) { e->ops->free(e); }
static int wait_until(const int *flag, int want) { return *flag >= want; }
static void settle(sb_engine *e) { (void)e; }
static void advance(sb_engine *e, uint64_t ms) {
  clock_ms += ms;
  e->ops->tick(e);
}
static void reattach(sb_engine *e, const sb_engine_limits *lim) {
  sb_engine_host host = {NULL, on_deliver, fake_now, NULL, lim, on_presence_ev, NULL};
  e->ops->attach(e, &host);
}

static sb_memory_stats stats(sb_engine *e) {
  sb_memory_stats st;
  sb_memory_engine_stats(e, &st);
  return st;
}

/* An allocator that counts the bytes it has handed out and not got back. */
static size_t live_bytes, live_blocks;
static void *count_malloc(size_t n, void *ctx) {
  (void)ctx;
  size_t *p = malloc(n + 16);
  if (!p) return NULL;
  *p = n;
  live_bytes += n;
  live_blocks++;
  return (char *)p + 16;
}
static void count_free(void *q, void *ctx) {
  (void)ctx;
  if (!q) return;
  size_t *p = (size_t *)((char *)q - 16);
  live_bytes -= *p;
  live_blocks--;
  free(p);
}
static void *count_realloc(void *q, size_t n, void *ctx) {
  if (!q) return count_malloc(n, ctx);
  size_t *p = (size_t *)((char *)q - 16);
  size_t old = *p;
  size_t *np = realloc(p, n + 16);
  if (!np) return NULL;
  *np = n;
  live_bytes = live_bytes - old + n;
  return (char *)np + 16;
}
static const sb_allocator counting = {count_malloc, count_realloc, count_free, NULL};

static void test_history_age(void **state) {
  (void)state;
  sb_engine *e = make(100, 500, 0);
  assert_int_equal(e->ops->subscribe(e, "g:a", 3), 0); /* keeps the stream (see below) */
  pub(e, "g:a", "old1");
  pub(e, "g:a", "old2");
  clock_ms += 400;
  pub(e, "g:a", "new");
  clock_ms += 200; /* the first two are now 600 ms old, the third 200 ms */
  read_result r = rd(e, "g:a", 1, 100);
  assert_int_equal(r.first, 3);
  assert_int_equal(r.n, 1);
  assert_string_equal(r.bodies[0], "new");
  clock_ms += 1000;
  e->ops->tick(e);
  r = rd(e, "g:a", 1, 100);
  assert_int_equal(r.n, 0);
  assert_int_equal(r.first, 4); /* empty: first = head + 1 */
  assert_int_equal(r.head, 3);
  /* Unsubscribed, with no history and no session: forgotten by the next tick. */
  uint64_t epoch = r.epoch;
  assert_int_equal(e->ops->unsubscribe(e, "g:a", 3), 0);
  assert_int_equal(stats(e).streams, 1);
  e->ops->tick(e);
  assert_int_equal(stats(e).streams, 0);
  r = rd(e, "g:a", 1, 100);
  assert_int_equal(r.head, 0);
  assert_true(r.epoch != epoch);
  e->ops->free(e);
}

static void test_epochs(void **state) {
  (void)state;
  sb_engine *a = make(10, 0, 0), *b = make(10, 0, 0);
  pub(a, "g:x", "1");
  pub(b, "g:x", "1");
  read_result ra = rd(a, "g:x", 1, 10), rb = rd(b, "g:x", 1, 10);
  assert_true(ra.epoch != 0);
  assert_true(rb.epoch != 0);
  assert_true(ra.epoch != rb.epoch); /* a restarted engine is a new epoch */
  read_result ry = rd(a, "g:y", 1, 10);
  assert_true(ry.epoch != ra.epoch); /* per stream */
  a->ops->free(a);
  b->ops->free(b);
}

/* The session TTL to the millisecond: resumable 999 ms after the close, gone at 1001 ms, its
 * direct stream with it (the take alone does not stop the clock; the hub's session_open does). */
static void test_session_expiry_exact(void **state) {
  (void)state;
  sb_engine *e = make(10, 0, 1000);
  assert_int_equal(e->ops->session_open(e, ID, "alice"), 0);
  assert_int_equal(e->ops->session_group(e, ID, "room1", 1, 7, 99), 0);
  assert_int_equal(e->ops->session_token(e, ID, TOK), 0);
  char direct[32];
  snprintf(direct, sizeof(direct), "c:%s", ID);
  assert_int_equal(
      e->ops->publish(e, direct, strlen(direct), ID, (const uint8_t *)"x", 1, NULL, NULL), 0);
  /* closed: resumable within the TTL, gone after it, direct stream included */
  assert_int_equal(e->ops->session_closed(e, ID), 0);
  clock_ms += 999;
  e->ops->tick(e);
  assert_int_equal(take_only(e, TOK, "alice").status, 0); /* taken, held by no connection */
  assert_int_equal(e->ops->session_token(e, ID, TOK), 0);
  clock_ms += 2;
  e->ops->tick(e);
  assert_int_equal(take(e, TOK).status, SB_ENOTFOUND);
  assert_int_equal(
      e->ops->publish(e, direct, strlen(direct), ID, (const uint8_t *)"x", 1, NULL, NULL),
                   SB_ENOTFOUND);
  read_result rr = rd(e, direct, 1, 10);
  assert_int_equal(rr.head, 0); /* a new, empty stream */
  e->ops->free(e);
}

static uint64_t epoch_of(sb_engine *e, const char *stream) {
  uint64_t offset, epoch;
  assert_int_equal(e->ops->position_now(e, stream, strlen(stream), &offset, &epoch), 0);
  return epoch;
}

/* The hub's join: the stream's position now, recorded in the session. */
static void join(sb_engine *e, const char *id, const char *group) {
  char stream[64];
  snprintf(stream, sizeof(stream), "g:%s", group);
  uint64_t offset, epoch;
  assert_int_equal(e->ops->position_now(e, stream, strlen(stream), &offset, &epoch), 0);
  assert_int_equal(e->ops->session_group(e, id, group, 1, offset, epoch), 0);
}

static void tick_for(sb_engine *e, uint64_t ms) {
  for (uint64_t t = 0; t < ms; t += 1000) {
    clock_ms += 1000;
    e->ops->tick(e);
  }
}

/* Regression (issue 9): an empty stream nobody subscribed to was forgotten within a second and
 * came back with a new epoch, so a client away for a moment was told recovered:false for its
 * quiet group and its own direct stream, and the first message published meanwhile was lost
 * to it (its join position named the old epoch). */
static void test_quiet_streams_keep_their_epoch(void **state) {
  (void)state;
  sb_engine *e = make(10, 500, 60000);
  char direct[32];
  snprintf(direct, sizeof(direct), "c:%s", ID);
  assert_int_equal(e->ops->session_open(e, ID, "alice"), 0);
  assert_int_equal(e->ops->subscribe(e, direct, strlen(direct)), 0);
  join(e, ID, "quiet");
  join(e, ID, "left");
  uint64_t eq = epoch_of(e, "g:quiet"), ed = epoch_of(e, direct), el = epoch_of(e, "g:left");
  assert_int_equal(e->ops->subscribe(e, "g:quiet", 7), 0);
  assert_int_equal(e->ops->unsubscribe(e, "g:quiet", 7), 0);
  assert_int_equal(e->ops->session_group(e, ID, "left", 0, 0, 0), 0);
  assert_int_equal(e->ops->unsubscribe(e, direct, strlen(direct)), 0);
  assert_int_equal(e->ops->session_closed(e, ID), 0);
  tick_for(e, 30000); /* well past history_age, within session_ttl */
  /* The group the session left is forgotten; the others are the same streams. */
  assert_int_equal(stats(e).streams, 2);
  assert_true(epoch_of(e, "g:left") != el);
  assert_true(epoch_of(e, "g:quiet") == eq);
  assert_true(epoch_of(e, direct) == ed);
  pub(e, "g:quiet", "meanwhile");
  read_result r = rd(e, "g:quiet", 1, 10);
  assert_true(r.epoch == eq);
  assert_int_equal(r.n, 1);
  /* Its session expired and its history aged out: nothing can refer to it, it goes. */
  tick_for(e, 31000);
  sb_memory_stats st = stats(e);
  assert_int_equal(st.sessions, 0);
  assert_int_equal(st.streams, 0);
  assert_true(epoch_of(e, "g:quiet") != eq);
  e->ops->free(e);
}

/* Regression (issue 9): every stream that ever had a message stayed forever. Published once
 * each to 100,000 streams, the engine gives back every byte once the history has aged out. */
static void test_streams_expire_and_memory_comes_back(void **state) {
  (void)state;
  sb_engine *e = make_mem(100, 1000, 60000, 0, &counting);
  size_t base = live_bytes, base_blocks = live_blocks;
  char name[32];
  for (int i = 0; i < 100000; i++) {
    snprintf(name, sizeof(name), "g:user:%d", i);
    pub(e, name, "poke");
  }
  assert_int_equal(stats(e).streams, 100000);
  size_t grown = live_bytes - base;
  printf("# 100,000 streams of one 4-byte message: %zu bytes in %zu blocks (%zu bytes each)\n",
         grown, live_blocks - base_blocks, grown / 100000);
  clock_ms += 500;
  e->ops->tick(e);
  assert_int_equal(stats(e).streams, 100000); /* history still kept */
  clock_ms += 501;
  e->ops->tick(e);
  assert_int_equal(stats(e).streams, 0);
  assert_int_equal(live_bytes, base);
  assert_int_equal(live_blocks, base_blocks);
  e->ops->free(e);
  assert_int_equal(live_bytes, 0);
}

/* Closed sessions past max_closed_sessions: the oldest closed is evicted, with its direct
 * stream and its hold on its groups' streams; reopening takes one off the list. */
static void test_closed_sessions_capped(void **state) {
  (void)state;
  sb_engine *e = make_mem(10, 1000, 60000, 3, NULL);
  char id[23], tok[23], group[32], direct[32];
  for (int i = 0; i < 5; i++) {
    id_of(id, i);
    token_of(tok, i);
    assert_int_equal(e->ops->session_open(e, id, ""), 0);
    assert_int_equal(e->ops->session_token(e, id, tok), 0);
    join(e, id, "room");
    snprintf(group, sizeof(group), "own-%d", i);
    join(e, id, group);
  }
  assert_int_equal(stats(e).streams, 11); /* room, own-0..4, c:S..0..4 */
  for (int i = 0; i < 5; i++) {
    id_of(id, i);
    assert_int_equal(e->ops->session_closed(e, id), 0);
    clock_ms += 10;
  }
  sb_memory_stats st = stats(e);
  assert_int_equal(st.sessions, 3);
  assert_int_equal(st.closed_sessions, 3);
  e->ops->tick(e);
  assert_int_equal(stats(e).streams, 7); /* own-0, own-1 and two direct streams went */
  for (int i = 0; i < 2; i++) {
    id_of(id, i);
    token_of(tok, i);
    snprintf(direct, sizeof(direct), "c:%s", id);
    assert_int_equal(take_as(e, tok, "").status, SB_ENOTFOUND);
    assert_int_equal(
        e->ops->publish(e, direct, strlen(direct), id, (const uint8_t *)"x", 1, NULL, NULL),
                     SB_ENOTFOUND);
  }
  /* The newest three are whole. Resuming one reopens it: off the closed list. */
  token_of(tok, 3);
  sess_result r = take_as(e, tok, "");
  assert_int_equal(r.status, 0);
  id_of(id, 3);
  assert_string_equal(r.conn_id, id);
  assert_int_equal(r.ngroups, 2);
  assert_int_equal(e->ops->session_open(e, id, ""), 0);
  assert_int_equal(stats(e).closed_sessions, 2);
  /* Closing another (new) session now evicts nothing: 3 closed again. */
  id_of(id, 9);
  assert_int_equal(e->ops->session_open(e, id, ""), 0);
  assert_int_equal(e->ops->session_closed(e, id), 0);
  st = stats(e);
  assert_int_equal(st.closed_sessions, 3);
  assert_int_equal(st.sessions, 4);
  /* Closed twice (a connection closed after its session was taken over): listed once. */
  assert_int_equal(e->ops->session_closed(e, id), 0);
  assert_int_equal(stats(e).closed_sessions, 3);
  /* They expire in close order; the open one stays. */
  token_of(tok, 2);
  clock_ms += 60000 - 29; /* 60,001 ms after the first close */
  e->ops->tick(e);
  assert_int_equal(stats(e).closed_sessions, 2); /* 2 was closed first: gone */
  assert_int_equal(take_as(e, tok, "").status, SB_ENOTFOUND);
  clock_ms += 60000;
  e->ops->tick(e);
  st = stats(e);
  assert_int_equal(st.closed_sessions, 0);
  assert_int_equal(st.sessions, 1);
  id_of(id, 3);
  assert_int_equal(e->ops->session_closed(e, id), 0);
  clock_ms += 60001;
  e->ops->tick(e);
  st = stats(e);
  assert_int_equal(st.sessions, 0);
  assert_int_equal(st.streams, 0);
  e->ops->free(e);
}

/* What a closed session costs (for docs/API.md): anonymous, and authenticated with its
 * "user:<identity>" group; all of it given back at expiry. */
static void test_closed_session_cost(void **state) {
  (void)state;
  for (int auth = 0; auth < 2; auth++) {
    sb_engine *e = make_mem(10, 1000, 60000, 0, &counting);
    size_t base = live_bytes, base_blocks = live_blocks;
    char id[23], tok[23], who[32], group[40];
    for (int i = 0; i < 10000; i++) {
      id_of(id, i);
      token_of(tok, i);
      snprintf(who, sizeof(who), "user-%06d", i);
      assert_int_equal(e->ops->session_open(e, id, auth ? who : ""), 0);
      assert_int_equal(e->ops->session_token(e, id, tok), 0);
      if (auth) {
        snprintf(group, sizeof(group), "user:%s", who);
        join(e, id, group);
      }
      assert_int_equal(e->ops->session_closed(e, id), 0);
    }
    printf("# a closed %s session: %zu bytes in %zu blocks\n", auth ? "authenticated" : "anonymous",
           (live_bytes - base) / 10000, (live_blocks - base_blocks) / 10000);
    clock_ms += 60001;
    e->ops->tick(e);
    assert_int_equal(live_bytes, base);
    e->ops->free(e);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      ENGINE_SHARED_CASES,
      cmocka_unit_test(test_history_age),
      cmocka_unit_test(test_epochs),
      cmocka_unit_test(test_session_expiry_exact),
      cmocka_unit_test(test_quiet_streams_keep_their_epoch),
      cmocka_unit_test(test_streams_expire_and_memory_comes_back),
      cmocka_unit_test(test_closed_sessions_capped),
      cmocka_unit_test(test_closed_session_cost),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
