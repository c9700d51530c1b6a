/*
 * engine.h — the engine interface: what the hub needs from the place where messages are
 * published, stored and recovered. Two engines implement it: memory (this node only, the
 * default) and redis (many nodes, a later issue). The hub only ever calls through sb_engine_ops,
 * so an engine plugs in without any change to the hub.
 *
 * Stream names are given as pointer and length and need not be NUL-terminated.
 *
 * Streams. Every stream ("g:<group>" for a group, "c:<connection id>" for a connection's direct
 * messages) has a position: the offset of its last message (1, 2, 3, ... contiguous; 0 before
 * the first) and an epoch, a random non-zero number that changes whenever the stream's history
 * is lost. Publishing assigns the next offset and appends the message to the stream's bounded
 * history, atomically, and then delivers it to the hub through the deliver callback, if the
 * stream is subscribed on this node.
 *
 * Sessions. What a connection needs to be resumed elsewhere (its id, the identity it was
 * authenticated as, its groups) is kept in the engine, not in the node, for session_ttl_ms
 * after the connection closes (at most max_closed_sessions of them, the oldest evicted first).
 * A resume token points at a session and can be taken once.
 *
 * Lifetimes. A stream's epoch must stay the same as long as anyone can hold a position in it:
 * while it is subscribed, while a session has its group (or it is the session's direct
 * stream), and while it keeps history. A stream with none of these may be forgotten (it loses
 * no message, and no session can name it in a resume); made again later, it has a new epoch.
 *
 * Callbacks may fire synchronously, inside the call (the memory engine), or later (redis); the
 * hub is written for both. Every call that takes a callback fires it exactly once if the call
 * returned 0, and never if it returned an error.
 */
#ifndef SB_ENGINE_ENGINE_H
#define SB_ENGINE_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

typedef struct sb_engine sb_engine;

typedef struct sb_record {
  uint64_t offset;
  uint64_t time_ms;
  const uint8_t *data; /* the hub's opaque payload; borrowed for the callback */
  size_t len;
} sb_record;

typedef struct sb_engine_limits {
  size_t history_max;      /* messages kept per stream */
  uint64_t history_age_ms; /* and for at most this long */
  uint64_t session_ttl_ms; /* sessions outlive their connection this long */
  size_t max_closed_sessions; /* and at most this many of them are kept, the oldest closed
                                 evicted first (0: no limit) */
} sb_engine_limits;

/* A published message reaches the hub (only for subscribed streams). */
typedef void (*sb_engine_deliver_cb)(void *hub, const char *stream, size_t slen, uint64_t epoch,
                                     const sb_record *rec);
/* History: records with offsets >= from (up to max), in order. `head` is the stream's last
 * offset, `first` the oldest offset still kept (head + 1 when empty). status < 0: failure. */
typedef void (*sb_engine_read_cb)(void *ctx, int status, uint64_t epoch, uint64_t first,
                                  uint64_t head, const sb_record *recs, size_t n);
typedef void (*sb_engine_position_cb)(void *ctx, int status, uint64_t offset, uint64_t epoch);

/* A group of a session, with the position its stream had when the session joined it: a
 * resume that names no position for the group replays from there. epoch 0: unknown. */
typedef struct sb_session_group {
  const char *name;
  uint64_t offset, epoch;
} sb_session_group;

typedef struct sb_session_info {
  const char *conn_id;
  const char *identity;          /* "" when anonymous */
  const sb_session_group *groups; /* borrowed */
  size_t ngroups;
} sb_session_info;
/* The answer to session_take. status 0: the token was taken (it is spent), and `s` is the
 * session, valid during the callback only, and only until the next call into the engine.
 * SB_ENOTFOUND: no such token (unknown, already used, or its session expired or was evicted).
 * SB_ENGINE_EIDENTITY: the session belongs to another identity; the token was left as it was,
 * so that its owner can still use it. s is NULL unless status is 0. */
typedef void (*sb_engine_session_cb)(void *ctx, int status, const sb_session_info *s);

/* A status of the engine interface only (never returned by a public function): a resume token
 * presented by another identity than its session's. */
#define SB_ENGINE_EIDENTITY (-100)

typedef struct sb_engine_ops {
  const char *name;
  /* The hub registers itself; `deliver` receives published messages of subscribed streams. */
  void (*attach)(sb_engine *e, void *hub, sb_engine_deliver_cb deliver, uint64_t (*now)(void *));
  /* With `session` set (a connection's direct stream), publishing fails with SB_ENOTFOUND
   * unless that session exists (open, or closed and still resumable). */
  int (*publish)(sb_engine *e, const char *stream, size_t slen, const char *session,
                 const uint8_t *data, size_t len);
  int (*subscribe)(sb_engine *e, const char *stream, size_t slen);
  int (*unsubscribe)(sb_engine *e, const char *stream, size_t slen);
  int (*read)(sb_engine *e, const char *stream, size_t slen, uint64_t from, size_t max,
              sb_engine_read_cb cb, void *ctx);
  int (*trim)(sb_engine *e, const char *stream, size_t slen, uint64_t through);
  int (*position)(sb_engine *e, const char *stream, size_t slen, sb_engine_position_cb cb,
                  void *ctx);
  /* The position, answered at once, or SB_ENOTFOUND when the engine cannot (redis). */
  int (*position_now)(sb_engine *e, const char *stream, size_t slen, uint64_t *offset,
                      uint64_t *epoch);
  /* Sessions: create or refresh (connection open, or resumed), record a group change, start
   * the expiry clock (connection closed), bind a new single-use token, take a token. */
  int (*session_open)(sb_engine *e, const char *conn_id, const char *identity);
  int (*session_group)(sb_engine *e, const char *conn_id, const char *group, int joined,
                       uint64_t offset, uint64_t epoch); /* the join position; joining again
                                                            keeps the first */
  int (*session_closed)(sb_engine *e, const char *conn_id);
  int (*session_token)(sb_engine *e, const char *conn_id, const char *token);
  /* Takes a token for `identity` ("" when anonymous): the identity is checked against the
   * session's before the token is spent, in one step (a refused attempt must not burn the
   * owner's token, and no other taker may slip in between the check and the take). */
  int (*session_take)(sb_engine *e, const char *token, const char *identity,
                      sb_engine_session_cb cb, void *ctx);
  /* A barrier: `cb` fires once every subscribe issued before this call is live (deliveries of
   * messages published from then on will reach the hub). The hub waits for it before it reads
   * history for a resume, so that nothing published between the read and the subscription
   * can fall between the two. */
  int (*sync)(sb_engine *e, void (*cb)(void *ctx, int status), void *ctx);
  /* Housekeeping (expiry of sessions and history), about once a second. */
  void (*tick)(sb_engine *e);
  void (*free)(sb_engine *e);
} sb_engine_ops;

struct sb_engine {
  const sb_engine_ops *ops;
};

/* The memory engine. */
int sb_memory_engine_new(sb_engine **out, const sb_allocator *a, const sb_engine_limits *lim);

/* What a memory engine holds now, for tests and diagnostics. */
typedef struct sb_memory_stats {
  size_t streams;
  size_t sessions;        /* open and closed */
  size_t closed_sessions; /* closed, resumable */
} sb_memory_stats;
void sb_memory_engine_stats(sb_engine *e, sb_memory_stats *out);

/* A new random epoch (never 0). */
uint64_t sb_random_epoch(void);
/* Fills out with `n` random bytes from the CSPRNG; 0 or SB_EIO. */
int sb_random_bytes(void *out, size_t n);
/* 16 random bytes as 22 characters of URL-safe base64 (no padding) + NUL. */
int sb_random_id(char out[23]);

#endif
