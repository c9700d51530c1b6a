/*
 * test_engine.c — the memory engine (src/engine/memory.c) through the engine interface: the
 * per-stream ring buffers (count and age bounds, contiguous offsets, epochs), reads from a
 * position, trimming, delivery to subscribed streams only, and sessions (groups, single-use
 * tokens, expiry). The clock is the test's, so age and expiry are exact.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/engine.h"

static uint64_t clock_ms;
static uint64_t fake_now(void *hub) {
  (void)hub;
  return clock_ms;
}

typedef struct delivered {
  char stream[64];
  uint64_t offset, epoch;
  char body[64];
} delivered;
static delivered got[64];
static size_t ngot;

static void on_deliver(void *hub, const char *stream, size_t slen, uint64_t epoch,
                       const sb_record *rec) {
  (void)hub;
  assert_true(ngot < 64);
  snprintf(got[ngot].stream, sizeof(got[ngot].stream), "%.*s", (int)slen, stream);
  got[ngot].offset = rec->offset;
  got[ngot].epoch = epoch;
  snprintf(got[ngot].body, sizeof(got[ngot].body), "%.*s", (int)rec->len, (const char *)rec->data);
  ngot++;
}

typedef struct read_result {
  int status, calls;
  uint64_t epoch, first, head;
  uint64_t offsets[256];
  char bodies[256][16];
  size_t n;
} read_result;

static void on_read(void *ctx, int status, uint64_t epoch, uint64_t first, uint64_t head,
                    const sb_record *recs, size_t n) {
  read_result *r = ctx;
  r->calls++;
  r->status = status;
  r->epoch = epoch;
  r->first = first;
  r->head = head;
  r->n = n;
  for (size_t i = 0; i < n && i < 256; i++) {
    r->offsets[i] = recs[i].offset;
    snprintf(r->bodies[i], 16, "%.*s", (int)recs[i].len, (const char *)recs[i].data);
  }
}

static sb_engine *make_with(size_t max, uint64_t age, uint64_t ttl, size_t max_closed,
                            const sb_allocator *a) {
  sb_engine *e;
  sb_engine_limits lim = {max, age, ttl, max_closed};
  assert_int_equal(sb_memory_engine_new(&e, a, &lim), 0);
  sb_engine_host host = {NULL, on_deliver, fake_now, NULL, NULL, NULL, NULL};
  e->ops->attach(e, &host);
  ngot = 0;
  clock_ms = 1000;
  return e;
}

static sb_engine *make(size_t max, uint64_t age, uint64_t ttl) {
  return make_with(max, age, ttl, 0, NULL);
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

static void pub(sb_engine *e, const char *stream, const char *body) {
  assert_int_equal(e->ops->publish(e, stream, strlen(stream), NULL, (const uint8_t *)body,
                                   strlen(body), NULL, NULL),
                   0);
}

static read_result rd(sb_engine *e, const char *stream, uint64_t from, size_t max) {
  read_result r;
  memset(&r, 0, sizeof(r));
  assert_int_equal(e->ops->read(e, stream, strlen(stream), from, max, on_read, &r), 0);
  assert_int_equal(r.calls, 1); /* exactly once */
  return r;
}

static void test_offsets_contiguous_and_ring_bounded(void **state) {
  (void)state;
  sb_engine *e = make(5, 0, 0);
  char body[16];
  for (int i = 1; i <= 12; i++) {
    snprintf(body, sizeof(body), "m%d", i);
    pub(e, "g:a", body);
  }
  read_result r = rd(e, "g:a", 1, 100);
  assert_int_equal(r.head, 12);
  assert_int_equal(r.first, 8); /* only the last 5 are kept */
  assert_int_equal(r.n, 5);
  for (size_t i = 0; i < 5; i++) {
    assert_int_equal(r.offsets[i], 8 + i);
    snprintf(body, sizeof(body), "m%zu", 8 + i);
    assert_string_equal(r.bodies[i], body);
  }
  /* from a position inside the kept range, with a batch limit */
  r = rd(e, "g:a", 10, 2);
  assert_int_equal(r.n, 2);
  assert_int_equal(r.offsets[0], 10);
  assert_int_equal(r.offsets[1], 11);
  /* past the head: nothing, head still reported */
  r = rd(e, "g:a", 13, 10);
  assert_int_equal(r.n, 0);
  assert_int_equal(r.head, 12);
  e->ops->free(e);
}

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

static void test_trim(void **state) {
  (void)state;
  sb_engine *e = make(10, 0, 0);
  for (int i = 0; i < 6; i++) pub(e, "c:x", "d");
  assert_int_equal(e->ops->trim(e, "c:x", 3, 4), 0);
  read_result r = rd(e, "c:x", 1, 10);
  assert_int_equal(r.first, 5);
  assert_int_equal(r.n, 2);
  assert_int_equal(r.offsets[0], 5);
  e->ops->free(e);
}

static void test_deliver_only_subscribed(void **state) {
  (void)state;
  sb_engine *e = make(10, 0, 0);
  pub(e, "g:a", "before");
  assert_int_equal(ngot, 0);
  assert_int_equal(e->ops->subscribe(e, "g:a", 3), 0);
  pub(e, "g:a", "during");
  pub(e, "g:b", "other");
  assert_int_equal(ngot, 1);
  assert_string_equal(got[0].stream, "g:a");
  assert_int_equal(got[0].offset, 2);
  assert_string_equal(got[0].body, "during");
  assert_int_equal(e->ops->unsubscribe(e, "g:a", 3), 0);
  pub(e, "g:a", "after");
  assert_int_equal(ngot, 1);
  e->ops->free(e);
}

typedef struct sess_result {
  int status, calls;
  char conn_id[32], identity[32];
  char groups[8][32];
  uint64_t joined[8][2];
  size_t ngroups;
} sess_result;

static void on_session(void *ctx, int status, const sb_session_info *s) {
  sess_result *r = ctx;
  r->calls++;
  r->status = status;
  if (status == 0) {
    snprintf(r->conn_id, sizeof(r->conn_id), "%s", s->conn_id);
    snprintf(r->identity, sizeof(r->identity), "%s", s->identity);
    r->ngroups = s->ngroups;
    for (size_t i = 0; i < s->ngroups && i < 8; i++) {
      snprintf(r->groups[i], 32, "%s", s->groups[i].name);
      r->joined[i][0] = s->groups[i].offset;
      r->joined[i][1] = s->groups[i].epoch;
    }
  }
}

static sess_result take_as(sb_engine *e, const char *token, const char *identity) {
  sess_result r;
  memset(&r, 0, sizeof(r));
  assert_int_equal(e->ops->session_take(e, token, identity, on_session, &r), 0);
  assert_int_equal(r.calls, 1);
  return r;
}

static sess_result take(sb_engine *e, const char *token) { return take_as(e, token, "alice"); }

static const char ID[] = "AAAAAAAAAAAAAAAAAAAAAA";
static const char TOK[] = "tttttttttttttttttttttt";
static const char TOK2[] = "uuuuuuuuuuuuuuuuuuuuuu";

static void test_sessions(void **state) {
  (void)state;
  sb_engine *e = make(10, 0, 1000);
  assert_int_equal(e->ops->session_open(e, ID, "alice"), 0);
  assert_int_equal(e->ops->session_group(e, ID, "room1", 1, 7, 99), 0);
  assert_int_equal(e->ops->session_group(e, ID, "room2", 1, 1, 2), 0);
  /* twice: once, and the first join position stays */
  assert_int_equal(e->ops->session_group(e, ID, "room1", 1, 9, 100), 0);
  assert_int_equal(e->ops->session_group(e, ID, "room2", 0, 0, 0), 0);
  assert_int_equal(e->ops->session_group(e, ID, "room3", 1, 0xffffffffffffull, 5), 0);
  assert_int_equal(e->ops->session_group(e, ID, "room3", 0, 0, 0), 0);
  assert_int_equal(e->ops->session_token(e, ID, TOK), 0);
  sess_result r = take(e, TOK);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.conn_id, ID);
  assert_string_equal(r.identity, "alice");
  assert_int_equal(r.ngroups, 1);
  assert_string_equal(r.groups[0], "room1");
  assert_int_equal(r.joined[0][0], 7);
  assert_int_equal(r.joined[0][1], 99);
  /* single use */
  assert_int_equal(take(e, TOK).status, SB_ENOTFOUND);
  /* a new token replaces the old one */
  assert_int_equal(e->ops->session_token(e, ID, TOK), 0);
  assert_int_equal(e->ops->session_token(e, ID, TOK2), 0);
  assert_int_equal(take(e, TOK).status, SB_ENOTFOUND);
  assert_int_equal(e->ops->session_token(e, ID, TOK), 0);
  /* direct messages need a session */
  assert_int_equal(e->ops->publish(e, "c:zzz", 5, "zzz", (const uint8_t *)"x", 1, NULL, NULL),
                   SB_ENOTFOUND);
  char direct[32];
  snprintf(direct, sizeof(direct), "c:%s", ID);
  assert_int_equal(
      e->ops->publish(e, direct, strlen(direct), ID, (const uint8_t *)"x", 1, NULL, NULL), 0);
  /* closed: resumable within the TTL, gone after it, direct stream included */
  assert_int_equal(e->ops->session_closed(e, ID), 0);
  clock_ms += 999;
  e->ops->tick(e);
  assert_int_equal(take(e, TOK).status, 0);
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

/* Regression (issue 9): a RESUME with another identity's token was refused, but the token was
 * spent first, so its owner's own resume failed and the session was lost. */
static void test_take_by_another_identity_spends_nothing(void **state) {
  (void)state;
  sb_engine *e = make(10, 0, 1000);
  static const char ANON[] = "BBBBBBBBBBBBBBBBBBBBBB";
  assert_int_equal(e->ops->session_open(e, ID, "alice"), 0);
  assert_int_equal(e->ops->session_group(e, ID, "room1", 1, 3, 77), 0);
  assert_int_equal(e->ops->session_token(e, ID, TOK), 0);
  assert_int_equal(e->ops->session_closed(e, ID), 0);
  assert_int_equal(e->ops->session_open(e, ANON, ""), 0);
  assert_int_equal(e->ops->session_token(e, ANON, TOK2), 0);
  /* Another identity, the anonymous one, and a prefix of the right one: refused, distinctly. */
  assert_int_equal(take_as(e, TOK, "mallory").status, SB_ENGINE_EIDENTITY);
  assert_int_equal(take_as(e, TOK, "").status, SB_ENGINE_EIDENTITY);
  assert_int_equal(take_as(e, TOK, "alic").status, SB_ENGINE_EIDENTITY);
  assert_int_equal(take_as(e, TOK2, "alice").status, SB_ENGINE_EIDENTITY);
  /* The owners' tokens still work, once. */
  sess_result r = take_as(e, TOK, "alice");
  assert_int_equal(r.status, 0);
  assert_string_equal(r.conn_id, ID);
  assert_int_equal(r.ngroups, 1);
  assert_string_equal(r.groups[0], "room1");
  assert_int_equal(take_as(e, TOK, "alice").status, SB_ENOTFOUND);
  assert_int_equal(take_as(e, TOK, "mallory").status, SB_ENOTFOUND); /* spent: no identity hint */
  r = take_as(e, TOK2, "");
  assert_int_equal(r.status, 0);
  assert_string_equal(r.conn_id, ANON);
  assert_string_equal(r.identity, "");
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
  sb_engine *e = make_with(100, 1000, 60000, 0, &counting);
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

static void id_of(char out[23], int i) { snprintf(out, 23, "S%021d", i); }
static void token_of(char out[23], int i) { snprintf(out, 23, "T%021d", i); }

/* Closed sessions past max_closed_sessions: the oldest closed is evicted, with its direct
 * stream and its hold on its groups' streams; reopening takes one off the list. */
static void test_closed_sessions_capped(void **state) {
  (void)state;
  sb_engine *e = make_with(10, 1000, 60000, 3, NULL);
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
    sb_engine *e = make_with(10, 1000, 60000, 0, &counting);
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

typedef struct pub_result {
  int calls, status, delivered_before;
  uint64_t offset, epoch;
} pub_result;

static void on_published(void *ctx, int status, uint64_t offset, uint64_t epoch) {
  pub_result *r = ctx;
  r->calls++;
  r->status = status;
  r->offset = offset;
  r->epoch = epoch;
  r->delivered_before = (int)ngot;
}

/* publish's completion: once, with the message's position, after the delivery; a direct
 * message to no session is refused by the return value and the completion never fires. The
 * limits given in attach replace those given at creation. */
static void test_publish_completion_and_attach_limits(void **state) {
  (void)state;
  sb_engine *e = make(10, 0, 1000);
  assert_int_equal(e->ops->subscribe(e, "g:a", 3), 0);
  pub_result r = {0};
  pub(e, "g:a", "one");
  assert_int_equal(e->ops->publish(e, "g:a", 3, NULL, (const uint8_t *)"two", 3, on_published,
                                   &r),
                   0);
  assert_int_equal(r.calls, 1);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.offset, 2);
  assert_true(r.epoch == got[0].epoch && r.epoch != 0);
  assert_int_equal(r.delivered_before, 2);
  pub_result nf = {0};
  assert_int_equal(e->ops->publish(e, "c:zzz", 5, "zzz", (const uint8_t *)"x", 1, on_published,
                                   &nf),
                   SB_ENOTFOUND);
  assert_int_equal(nf.calls, 0);
  sb_engine_limits lim = {2, 0, 1000, 0};
  sb_engine_host host = {NULL, on_deliver, fake_now, NULL, &lim, NULL, NULL};
  e->ops->attach(e, &host);
  for (int i = 0; i < 5; i++) pub(e, "g:b", "x");
  read_result rr = rd(e, "g:b", 1, 10);
  assert_int_equal(rr.head, 5);
  assert_int_equal(rr.n, 2); /* history_max 2 from attach, not 10 */
  e->ops->free(e);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_offsets_contiguous_and_ring_bounded),
      cmocka_unit_test(test_history_age),
      cmocka_unit_test(test_epochs),
      cmocka_unit_test(test_trim),
      cmocka_unit_test(test_deliver_only_subscribed),
      cmocka_unit_test(test_sessions),
      cmocka_unit_test(test_take_by_another_identity_spends_nothing),
      cmocka_unit_test(test_quiet_streams_keep_their_epoch),
      cmocka_unit_test(test_streams_expire_and_memory_comes_back),
      cmocka_unit_test(test_closed_sessions_capped),
      cmocka_unit_test(test_closed_session_cost),
      cmocka_unit_test(test_publish_completion_and_attach_limits),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
