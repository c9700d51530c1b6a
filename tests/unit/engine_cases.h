/*
 * engine_cases.h — the engine's unit test cases that run against both engines, through the
 * engine interface (src/engine/engine.h) only. Included by test_engine.c (the memory engine,
 * with the test's clock) and test_engine_redis.c (the redis engine against a real
 * redis-server on a unix socket, on a real libuv loop); each of them says which cases it runs
 * and which of its own it adds, and why.
 *
 * A case body is the same for both engines. The memory engine answers inside the call; the
 * redis engine answers later, from its connections. So every helper that expects a callback
 * waits for it (wait_until: at once for memory, the loop run until it came, bounded, for
 * redis), and a case that checks what was delivered, or that something was not, first calls
 * settle(): every call made so far has been answered and every delivery it caused has come
 * in. Time passes through advance(): the memory engine's clock moves and it ticks; for redis
 * real time passes (the loop runs, the engine ticks), so the redis file gives cases that need
 * it short real times.
 *
 * The including file defines ENGINE_SESSION_TTL_MS (the session TTL of test_session_ttl)
 * before including this file, and the functions declared below after it.
 */
#ifndef SB_TEST_ENGINE_CASES_H
#define SB_TEST_ENGINE_CASES_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "engine/engine.h"

/* A new engine with these limits (history per stream, its age, the session TTL, the cap on
 * closed sessions), attached to this file's deliver hook; `got` is emptied. */
static sb_engine *make_with(size_t max, uint64_t age, uint64_t ttl, size_t max_closed);
static void destroy(sb_engine *e);
/* 1 once *flag >= want (redis: the loop runs until then, at most a few seconds). */
static int wait_until(const int *flag, int want);
/* Every call made to `e` so far is answered, and what it delivers has been delivered. */
static void settle(sb_engine *e);
/* `ms` pass (the memory engine: its clock, and a tick; redis: real time, with ticks). */
static void advance(sb_engine *e, uint64_t ms);
/* Attaches `e` again, with these limits (the attach hook of a hub that changed its options). */
static void reattach(sb_engine *e, const sb_engine_limits *lim);

static sb_engine *make(size_t max, uint64_t age, uint64_t ttl) {
  return make_with(max, age, ttl, 0);
}

/* ---- what the engine delivers -------------------------------------------------------------- */

typedef struct delivered {
  int node; /* the host's hub pointer, as a number: which engine (node) delivered it */
  char stream[64];
  uint64_t offset, epoch;
  char body[64];
} delivered;
static delivered got[64];
static int ngot;

static void on_deliver(void *hub, const char *stream, size_t slen, uint64_t epoch,
                       const sb_record *rec) {
  assert_true(ngot < 64);
  got[ngot].node = (int)(intptr_t)hub;
  snprintf(got[ngot].stream, sizeof(got[ngot].stream), "%.*s", (int)slen, stream);
  got[ngot].offset = rec->offset;
  got[ngot].epoch = epoch;
  snprintf(got[ngot].body, sizeof(got[ngot].body), "%.*s", (int)rec->len, (const char *)rec->data);
  ngot++;
}

/* ---- calls that wait for their answer ------------------------------------------------------- */

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

static read_result rd(sb_engine *e, const char *stream, uint64_t from, size_t max) {
  read_result r;
  memset(&r, 0, sizeof(r));
  assert_int_equal(e->ops->read(e, stream, strlen(stream), from, max, on_read, &r), 0);
  assert_true(wait_until(&r.calls, 1));
  assert_int_equal(r.calls, 1); /* exactly once */
  assert_int_equal(r.status, 0);
  return r;
}

typedef struct pub_result {
  int calls, status, delivered_before;
  int returned; /* the call itself refused it (status is its return value; no callback) */
  uint64_t offset, epoch;
} pub_result;

static void on_published(void *ctx, int status, uint64_t offset, uint64_t epoch) {
  pub_result *r = ctx;
  r->calls++;
  r->status = status;
  r->offset = offset;
  r->epoch = epoch;
  r->delivered_before = ngot;
}

/* Publishes and waits for the outcome, whether the engine returns it (then the completion
 * must never fire) or reports it through the completion (then exactly once). */
static pub_result pub_to(sb_engine *e, const char *stream, const char *session,
                         const char *body) {
  pub_result r;
  memset(&r, 0, sizeof(r));
  int rc = e->ops->publish(e, stream, strlen(stream), session, (const uint8_t *)body,
                           strlen(body), on_published, &r);
  if (rc != 0) {
    r.returned = 1;
    r.status = rc;
    assert_int_equal(r.calls, 0);
    return r;
  }
  assert_true(wait_until(&r.calls, 1));
  assert_int_equal(r.calls, 1);
  return r;
}

static pub_result pub(sb_engine *e, const char *stream, const char *body) {
  pub_result r = pub_to(e, stream, NULL, body);
  assert_int_equal(r.status, 0);
  return r;
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

/* A take alone. */
static sess_result take_only(sb_engine *e, const char *token, const char *identity) {
  sess_result r;
  memset(&r, 0, sizeof(r));
  assert_int_equal(e->ops->session_take(e, token, identity, on_session, &r), 0);
  assert_true(wait_until(&r.calls, 1));
  assert_int_equal(r.calls, 1);
  return r;
}

/* A take, and as the hub does right after a successful one, the open by the connection that
 * holds the session now (engine.h; with redis it confirms the take, spending the token for
 * good: until then a retry of the same token is "retry", not "not found"). */
static sess_result take_as(sb_engine *e, const char *token, const char *identity) {
  sess_result r = take_only(e, token, identity);
  if (r.status == 0) assert_int_equal(e->ops->session_open(e, r.conn_id, r.identity), 0);
  return r;
}

static sess_result take(sb_engine *e, const char *token) { return take_as(e, token, "alice"); }

/* The group's join position in a take's answer (fails the test if it is not there). */
static const uint64_t *joined_pos(const sess_result *r, const char *group) {
  for (size_t i = 0; i < r->ngroups && i < 8; i++)
    if (!strcmp(r->groups[i], group)) return r->joined[i];
  fail_msg("group %s not in the session", group);
  return NULL;
}

static const char ID[] = "AAAAAAAAAAAAAAAAAAAAAA";
static const char TOK[] = "tttttttttttttttttttttt";
static const char TOK2[] = "uuuuuuuuuuuuuuuuuuuuuu";

static void id_of(char out[23], int i) { snprintf(out, 23, "S%021d", i); }
static void token_of(char out[23], int i) { snprintf(out, 23, "T%021d", i); }

/* ---- the cases -------------------------------------------------------------------------------- */

/* Offsets 1, 2, 3, ... and a history of exactly history_max (redis trims its stream
 * approximately, and the read script shows exactly the bound). */
static void test_offsets_contiguous_and_ring_bounded(void **state) {
  (void)state;
  sb_engine *e = make(5, 0, 0);
  char body[16];
  for (int i = 1; i <= 12; i++) {
    snprintf(body, sizeof(body), "m%d", i);
    pub_result p = pub(e, "g:a", body);
    assert_int_equal(p.offset, i);
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
  destroy(e);
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
  assert_int_equal(r.head, 6);
  destroy(e);
}

/* Only subscribed streams are delivered, and only what was published while subscribed. (The
 * pause before the subscription: the redis engine's first subscription delivers what was
 * stored at or after the moment of the join, by the millisecond; see "The join race" in
 * redis.c.) */
static void test_deliver_only_subscribed(void **state) {
  (void)state;
  sb_engine *e = make(10, 0, 0);
  pub(e, "g:a", "before");
  advance(e, 20);
  settle(e);
  assert_int_equal(ngot, 0);
  assert_int_equal(e->ops->subscribe(e, "g:a", 3), 0);
  pub(e, "g:a", "during");
  pub(e, "g:b", "other");
  settle(e);
  assert_int_equal(ngot, 1);
  assert_string_equal(got[0].stream, "g:a");
  assert_int_equal(got[0].offset, 2);
  assert_string_equal(got[0].body, "during");
  assert_int_equal(e->ops->unsubscribe(e, "g:a", 3), 0);
  pub(e, "g:a", "after");
  settle(e);
  assert_int_equal(ngot, 1);
  destroy(e);
}

/* Groups with their join positions, single-use tokens, a new token replacing the old one,
 * direct messages that need a session. */
static void test_sessions(void **state) {
  (void)state;
  sb_engine *e = make(10, 0, 60000);
  assert_int_equal(e->ops->session_open(e, ID, "alice"), 0);
  assert_int_equal(e->ops->session_group(e, ID, "room1", 1, 7, 99), 0);
  assert_int_equal(e->ops->session_group(e, ID, "room2", 1, 1, 2), 0);
  /* twice: once, and the first join position stays */
  assert_int_equal(e->ops->session_group(e, ID, "room1", 1, 9, 100), 0);
  assert_int_equal(e->ops->session_group(e, ID, "room2", 0, 0, 0), 0);
  assert_int_equal(e->ops->session_group(e, ID, "room3", 1, 0xffffffffffffull, 5), 0);
  assert_int_equal(e->ops->session_group(e, ID, "room3", 0, 0, 0), 0);
  assert_int_equal(e->ops->session_token(e, ID, TOK), 0);
  settle(e);
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
  settle(e);
  assert_int_equal(take(e, TOK).status, SB_ENOTFOUND);
  r = take(e, TOK2);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.conn_id, ID);
  /* direct messages need a session */
  assert_int_equal(pub_to(e, "c:zzz", "zzz", "x").status, SB_ENOTFOUND);
  char direct[32];
  snprintf(direct, sizeof(direct), "c:%s", ID);
  pub_result p = pub_to(e, direct, ID, "x");
  assert_int_equal(p.status, 0);
  assert_int_equal(p.offset, 1);
  destroy(e);
}

/* A closed session is resumable within the session TTL and gone after it, its direct stream
 * with it. The hub's sequence: the take, then session_open for the resumed connection, which
 * holds the session until it closes in turn. */
static void test_session_ttl(void **state) {
  (void)state;
  const uint64_t ttl = ENGINE_SESSION_TTL_MS;
  sb_engine *e = make(10, 0, ttl);
  char direct[32];
  snprintf(direct, sizeof(direct), "c:%s", ID);
  assert_int_equal(e->ops->session_open(e, ID, "alice"), 0);
  assert_int_equal(e->ops->session_group(e, ID, "room1", 1, 7, 99), 0);
  assert_int_equal(e->ops->session_token(e, ID, TOK), 0);
  assert_int_equal(pub_to(e, direct, ID, "x").status, 0);
  assert_int_equal(e->ops->session_closed(e, ID), 0);
  settle(e);
  advance(e, ttl / 5);
  sess_result r = take(e, TOK);
  assert_int_equal(r.status, 0);
  assert_int_equal(r.ngroups, 1);
  assert_int_equal(e->ops->session_open(e, ID, "alice"), 0);
  assert_int_equal(e->ops->session_token(e, ID, TOK2), 0);
  /* Open again: the first close's clock no longer runs. */
  advance(e, ttl);
  assert_int_equal(pub_to(e, direct, ID, "y").status, 0);
  assert_int_equal(e->ops->session_closed(e, ID), 0);
  settle(e);
  advance(e, ttl + ttl / 2);
  assert_int_equal(take(e, TOK2).status, SB_ENOTFOUND);
  assert_int_equal(pub_to(e, direct, ID, "z").status, SB_ENOTFOUND);
  read_result rr = rd(e, direct, 1, 10);
  assert_int_equal(rr.head, 0); /* a new, empty stream */
  assert_int_equal(rr.n, 0);
  destroy(e);
}

/* Regression (issue 9): a RESUME with another identity's token was refused, but the token was
 * spent first, so its owner's own resume failed and the session was lost. */
static void test_take_by_another_identity_spends_nothing(void **state) {
  (void)state;
  sb_engine *e = make(10, 0, 60000);
  static const char ANON[] = "BBBBBBBBBBBBBBBBBBBBBB";
  assert_int_equal(e->ops->session_open(e, ID, "alice"), 0);
  assert_int_equal(e->ops->session_group(e, ID, "room1", 1, 3, 77), 0);
  assert_int_equal(e->ops->session_token(e, ID, TOK), 0);
  assert_int_equal(e->ops->session_closed(e, ID), 0);
  assert_int_equal(e->ops->session_open(e, ANON, ""), 0);
  assert_int_equal(e->ops->session_token(e, ANON, TOK2), 0);
  settle(e);
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
  assert_int_equal(r.joined[0][0], 3);
  assert_int_equal(r.joined[0][1], 77);
  assert_int_equal(take_as(e, TOK, "alice").status, SB_ENOTFOUND);
  assert_int_equal(take_as(e, TOK, "mallory").status, SB_ENOTFOUND); /* spent: no identity hint */
  r = take_as(e, TOK2, "");
  assert_int_equal(r.status, 0);
  assert_string_equal(r.conn_id, ANON);
  assert_string_equal(r.identity, "");
  destroy(e);
}

/* A token of a session that is still open (its connection on this node, or with redis on
 * another one) is taken like a closed one's: the hub closes the old holder. */
static void test_take_of_an_open_session(void **state) {
  (void)state;
  sb_engine *e = make(10, 0, 60000);
  assert_int_equal(e->ops->session_open(e, ID, "alice"), 0);
  assert_int_equal(e->ops->session_group(e, ID, "room1", 1, 4, 44), 0);
  assert_int_equal(e->ops->session_token(e, ID, TOK), 0);
  settle(e);
  sess_result r = take(e, TOK);
  assert_int_equal(r.status, 0);
  assert_string_equal(r.conn_id, ID);
  assert_int_equal(joined_pos(&r, "room1")[0], 4);
  assert_int_equal(take(e, TOK).status, SB_ENOTFOUND);
  destroy(e);
}

/* Closed sessions past max_closed_sessions: the oldest closed go, with their tokens and their
 * direct streams; the newest stay whole. */
static void test_closed_sessions_evict_oldest(void **state) {
  (void)state;
  sb_engine *e = make_with(10, 1000, 60000, 3);
  char id[23], tok[23], group[32], direct[32];
  for (int i = 0; i < 5; i++) {
    id_of(id, i);
    token_of(tok, i);
    assert_int_equal(e->ops->session_open(e, id, ""), 0);
    assert_int_equal(e->ops->session_token(e, id, tok), 0);
    assert_int_equal(e->ops->session_group(e, id, "room", 1, 0, 1), 0);
    snprintf(group, sizeof(group), "own-%d", i);
    assert_int_equal(e->ops->session_group(e, id, group, 1, 0, 1), 0);
  }
  settle(e);
  for (int i = 0; i < 5; i++) {
    id_of(id, i);
    assert_int_equal(e->ops->session_closed(e, id), 0);
    settle(e);
    advance(e, 10); /* closed in this order, at distinct times */
  }
  for (int i = 0; i < 2; i++) {
    id_of(id, i);
    token_of(tok, i);
    snprintf(direct, sizeof(direct), "c:%s", id);
    assert_int_equal(take_as(e, tok, "").status, SB_ENOTFOUND);
    assert_int_equal(pub_to(e, direct, id, "x").status, SB_ENOTFOUND);
  }
  for (int i = 2; i < 5; i++) {
    id_of(id, i);
    token_of(tok, i);
    sess_result r = take_as(e, tok, "");
    assert_int_equal(r.status, 0);
    assert_string_equal(r.conn_id, id);
    assert_int_equal(r.ngroups, 2);
  }
  destroy(e);
}

/* publish's completion: once, with the message's position, after the delivery to this
 * node's subscribers; a direct message to no session is not found (the memory engine says so
 * by the return value, and its completion never fires). The limits given in attach replace
 * those given at creation. */
static void test_publish_completion_and_attach_limits(void **state) {
  (void)state;
  sb_engine *e = make(10, 0, 1000);
  assert_int_equal(e->ops->subscribe(e, "g:a", 3), 0);
  pub(e, "g:a", "one");
  pub_result r = pub(e, "g:a", "two");
  assert_int_equal(r.offset, 2);
  assert_int_equal(r.delivered_before, 2);
  assert_true(r.epoch == got[0].epoch && r.epoch != 0);
  assert_true(got[1].epoch == r.epoch && got[1].offset == 2);
  pub_result nf = pub_to(e, "c:zzz", "zzz", "x");
  assert_int_equal(nf.status, SB_ENOTFOUND);
  sb_engine_limits lim = {2, 0, 1000, 0};
  reattach(e, &lim);
  for (int i = 0; i < 5; i++) pub(e, "g:b", "x");
  read_result rr = rd(e, "g:b", 1, 10);
  assert_int_equal(rr.head, 5);
  assert_int_equal(rr.n, 2); /* history_max 2 from attach, not 10 */
  settle(e);
  assert_int_equal(ngot, 2);
  destroy(e);
}

/* ---- presence ----------------------------------------------------------------------------- */

static char pev[32][48]; /* the presence events, "<1|0>|<stream>|<identity>" */
static int npev;

static void on_presence_ev(void *hub, const char *stream, size_t slen, const char *identity,
                           size_t ilen, int joined) {
  (void)hub;
  assert_true(npev < 32);
  snprintf(pev[npev++], sizeof(pev[0]), "%d|%.*s|%.*s", joined, (int)slen, stream, (int)ilen,
           identity);
}

static int events_equal(const char *want) {
  int n = 0;
  for (int i = 0; i < npev; i++) n += strcmp(pev[i], want) == 0;
  return n;
}

typedef struct pres_result {
  int status, calls;
  size_t n;
  char line[256]; /* "identity=count" sorted, ","-joined */
} pres_result;

static int cmp_str(const void *a, const void *b) { return strcmp(a, b); }

static void on_presence_list(void *ctx, int status, const sb_engine_presence *who, size_t n) {
  pres_result *r = ctx;
  char items[16][48];
  r->calls++;
  r->status = status;
  r->n = n;
  assert_true(n <= 16);
  for (size_t i = 0; i < n; i++)
    snprintf(items[i], sizeof(items[0]), "%.*s=%llu", (int)who[i].ilen, who[i].identity,
             (unsigned long long)who[i].connections);
  qsort(items, n, sizeof(items[0]), cmp_str);
  r->line[0] = '\0';
  for (size_t i = 0; i < n; i++) {
    size_t used = strlen(r->line);
    snprintf(r->line + used, sizeof(r->line) - used, "%s%s", i ? "," : "", items[i]);
  }
}

static pres_result presence_of(sb_engine *e, const char *stream) {
  pres_result r = {0};
  assert_int_equal(e->ops->presence_get(e, stream, strlen(stream), on_presence_list, &r), 0);
  assert_true(wait_until(&r.calls, 1));
  assert_int_equal(r.status, 0);
  return r;
}

static int presence(sb_engine *e, const char *stream, uint64_t member, const char *identity,
                    int joined) {
  return e->ops->presence(e, stream, strlen(stream), member, identity, joined);
}

/* Presence: connections counted per identity (anonymous as ""), an identity's first
 * connection and its last one are events (to a node subscribed to the group), a member
 * removed twice is not found, and nothing is left once everyone left. */
static void test_presence(void **state) {
  (void)state;
  sb_engine *e = make(10, 0, 1000);
  npev = 0;
  assert_int_equal(e->ops->subscribe(e, "g:p", 3), 0); /* events come to subscribed nodes */
  settle(e);
  assert_string_equal(presence_of(e, "g:p").line, "");
  assert_int_equal(presence(e, "g:p", 1, "alice", 1), 0);
  assert_int_equal(presence(e, "g:p", 2, "alice", 1), 0);
  assert_int_equal(presence(e, "g:p", 3, "bob", 1), 0);
  assert_int_equal(presence(e, "g:p", 4, "", 1), 0);
  assert_int_equal(presence(e, "g:q", 5, "carol", 1), 0);
  settle(e);
  assert_string_equal(presence_of(e, "g:p").line, "=1,alice=2,bob=1");
  assert_string_equal(presence_of(e, "g:q").line, "carol=1");
  assert_int_equal(events_equal("1|g:p|alice"), 1); /* once, with two connections */
  assert_int_equal(events_equal("1|g:p|bob"), 1);
  assert_int_equal(events_equal("1|g:p|"), 1);
  assert_int_equal(presence(e, "g:p", 1, "alice", 0), 0);
  settle(e);
  assert_string_equal(presence_of(e, "g:p").line, "=1,alice=1,bob=1");
  assert_int_equal(events_equal("0|g:p|alice"), 0); /* still one connection */
  assert_int_equal(presence(e, "g:p", 2, "alice", 0), 0);
  assert_int_equal(presence(e, "g:p", 2, "alice", 0), SB_ENOTFOUND);
  settle(e);
  assert_int_equal(events_equal("0|g:p|alice"), 1);
  assert_string_equal(presence_of(e, "g:p").line, "=1,bob=1");
  assert_int_equal(presence(e, "g:p", 3, "bob", 0), 0);
  assert_int_equal(presence(e, "g:p", 4, "", 0), 0);
  assert_int_equal(presence(e, "g:q", 5, "carol", 0), 0);
  settle(e);
  assert_string_equal(presence_of(e, "g:p").line, "");
  assert_string_equal(presence_of(e, "g:q").line, "");
  assert_int_equal(events_equal("0|g:p|bob"), 1);
  destroy(e);
}

#define ENGINE_SHARED_CASES                                                                   \
  cmocka_unit_test(test_offsets_contiguous_and_ring_bounded), cmocka_unit_test(test_trim),   \
      cmocka_unit_test(test_deliver_only_subscribed), cmocka_unit_test(test_sessions),       \
      cmocka_unit_test(test_session_ttl),                                                     \
      cmocka_unit_test(test_take_by_another_identity_spends_nothing),                        \
      cmocka_unit_test(test_take_of_an_open_session),                                         \
      cmocka_unit_test(test_closed_sessions_evict_oldest),                                    \
      cmocka_unit_test(test_publish_completion_and_attach_limits), cmocka_unit_test(test_presence)

#endif
