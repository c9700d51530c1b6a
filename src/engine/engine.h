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
 * returned 0, and never if it returned an error. (The public API is stricter: the hub never
 * runs an application's callback inside the call that caused it; it defers what an engine
 * answers at once.)
 *
 * Errors. SB_ENOTFOUND and SB_ENGINE_EIDENTITY mean what each call says. Any other negative
 * status (returned, or given to a callback) is an engine failure: the engine could not answer
 * now (Redis unreachable, a command timed out, out of memory); SB_EIO is the usual code. The
 * hub turns it into ERROR 503 for a resume ("retry"), never into 401.
 *
 * Synchronous and asynchronous engines. Everything the hub needs at once has a "now" form that
 * an asynchronous engine may refuse (position_now: SB_ENOTFOUND); the hub then passes what it
 * could not learn as unknown, and the engine fills it in (see session_group).
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
/* The session `conn_id`, which a connection of this node holds, was taken by a resume on
 * another node: the hub closes that connection with 4000 (SB_CLOSE_REPLACED) and never reports
 * its close to the engine (no session_closed: the session is no longer this node's). The
 * engine calls it only when the take is newer than what this node holds (it compares the
 * generation of the take with the one it recorded when this node opened or took the
 * session), and never for a take this node made itself: then the hub closes a local holder on
 * its own. Borrowed string; the call may come from any engine callback, never re-entrantly
 * from inside a call the hub is making into the engine. */
typedef void (*sb_engine_taken_cb)(void *hub, const char *conn_id);
/* History: records with offsets >= from (up to max), in order. `head` is the stream's last
 * offset, `first` the oldest offset still kept (head + 1 when empty). status < 0: failure. */
typedef void (*sb_engine_read_cb)(void *ctx, int status, uint64_t epoch, uint64_t first,
                                  uint64_t head, const sb_record *recs, size_t n);
/* A stream's position; for publish, the position the message was given. */
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
 * so that its owner can still use it. Any other status: an engine failure (the client is told
 * to retry; it will present the same token). s is NULL unless status is 0. */
typedef void (*sb_engine_session_cb)(void *ctx, int status, const sb_session_info *s);

/* A status of the engine interface only (never returned by a public function): a resume token
 * presented by another identity than its session's. */
#define SB_ENGINE_EIDENTITY (-100)

/* Presence changed: `identity` ("" for anonymous connections) got its first connection in the
 * group stream `stream` ("g:<group>") anywhere in the cluster (joined 1), or lost its last one
 * (joined 0). Borrowed strings. The memory engine calls it inside the presence call; redis
 * when the event comes back through the group's channel, so only on nodes subscribed to the
 * group (with local members) — a notification that the state changed, not the state itself
 * (presence_get is the state). */
typedef void (*sb_engine_presence_event_cb)(void *hub, const char *stream, size_t slen,
                                            const char *identity, size_t ilen, int joined);

/* What the hub gives an engine when it attaches: where to deliver, its clock, the take-over
 * hook, and the hub's limits. The engine copies what it keeps (the struct and `limits` are
 * borrowed for the call). */
typedef struct sb_engine_host {
  void *hub;                    /* passed back to every hook */
  sb_engine_deliver_cb deliver; /* published messages of subscribed streams */
  uint64_t (*now)(void *hub);   /* ms, the loop's clock */
  sb_engine_taken_cb taken;     /* a session held here was resumed elsewhere (may be NULL) */
  /* The hub's options, which the engine applies (history per stream, session TTL, the cap on
   * closed sessions). An engine the application created (redis) learns them only here; the
   * memory engine the hub creates gets the same at creation. NULL: keep what it has. */
  const sb_engine_limits *limits;
  sb_engine_presence_event_cb presence; /* presence changed (may be NULL) */
  /* The groups of session `conn_id`, which a connection of this node holds, did not reach
   * the engine's store or were lost there (Redis was unreachable when the connection opened
   * or joined, or restarted without the session, which the engine then made again with the
   * identity and token it kept): the hub records its groups again (session_group, epoch 0;
   * joining again keeps a position already recorded). A group left while Redis was
   * unreachable stays in the stored session. May be NULL. */
  void (*session_lost)(void *hub, const char *conn_id);
} sb_engine_host;

/* What an engine says of its links (health): see sb_hub_health. */
typedef struct sb_engine_health {
  int up;              /* everything the engine needs works */
  int commands, pubsub; /* redis: 1 up, 0 down; -1 when the engine has no such link */
  const char *error;   /* what failed last, or ""; borrowed until the next engine call */
} sb_engine_health;

/* Who is in a group: an identity ("" anonymous) and its connections there, on every node. */
typedef struct sb_engine_presence {
  const char *identity;
  size_t ilen;
  uint64_t connections;
} sb_engine_presence;
/* status 0 and the list (borrowed for the call, in no particular order), or a failure. */
typedef void (*sb_engine_presence_cb)(void *ctx, int status, const sb_engine_presence *who,
                                      size_t n);

/* A live node of the cluster: its id and the url it advertises (borrowed for the callback). */
typedef struct sb_engine_node {
  const char *id, *url;
} sb_engine_node;
typedef void (*sb_engine_nodes_cb)(void *ctx, int status, const sb_engine_node *nodes, size_t n);

typedef struct sb_engine_ops {
  const char *name;
  /* The hub registers itself (see sb_engine_host), once, before any other call; host NULL
   * detaches it (the hub is being freed: no hook may be called from then on). */
  void (*attach)(sb_engine *e, const sb_engine_host *host);
  /* Publishes a message: the next offset, stored, delivered. With `session` set (a
   * connection's direct stream), publishing fails with SB_ENOTFOUND unless that session exists
   * (open, or closed and still resumable). `done` (may be NULL) gets the outcome: status 0
   * with the message's position, SB_ENOTFOUND, or an engine failure. An engine that knows at
   * once may return the failure instead (the memory engine returns SB_ENOTFOUND; `done` then
   * does not fire); an asynchronous one returns 0 (accepted) and reports it through `done`.
   * On success `done` fires after the message was delivered to this node's subscribers. */
  int (*publish)(sb_engine *e, const char *stream, size_t slen, const char *session,
                 const uint8_t *data, size_t len, sb_engine_position_cb done, void *ctx);
  int (*subscribe)(sb_engine *e, const char *stream, size_t slen);
  int (*unsubscribe)(sb_engine *e, const char *stream, size_t slen);
  int (*read)(sb_engine *e, const char *stream, size_t slen, uint64_t from, size_t max,
              sb_engine_read_cb cb, void *ctx);
  int (*trim)(sb_engine *e, const char *stream, size_t slen, uint64_t through);
  int (*position)(sb_engine *e, const char *stream, size_t slen, sb_engine_position_cb cb,
                  void *ctx);
  /* The position, answered at once, or SB_ENOTFOUND when the engine cannot (redis). The hub
   * uses it for the join position of session_group and for sb_hub_position. */
  int (*position_now)(sb_engine *e, const char *stream, size_t slen, uint64_t *offset,
                      uint64_t *epoch);
  /* Sessions: create or refresh (a connection opened, or resumed it), record a group change,
   * start the expiry clock (the connection that held it closed), bind a new single-use token,
   * take a token. */
  int (*session_open)(sb_engine *e, const char *conn_id, const char *identity);
  /* joined 1: the session is in `group` from now on, with the join position (offset, epoch)
   * of the group's stream; joining again keeps the first position. epoch 0 means the hub could
   * not tell (position_now refused): the engine then records the stream's position itself, in
   * the same step as the join (redis: the script reads the stream's metadata atomically with
   * recording the join), so that a resume replays from there. joined 0: it left the group. */
  int (*session_group)(sb_engine *e, const char *conn_id, const char *group, int joined,
                       uint64_t offset, uint64_t epoch);
  /* The connection holding the session closed. Never called for a session that was taken
   * from the connection (by a resume on this node, or elsewhere: `taken`); a shared engine
   * still fences it (ignored unless this node holds the session). */
  int (*session_closed)(sb_engine *e, const char *conn_id);
  int (*session_token)(sb_engine *e, const char *conn_id, const char *token);
  /* Takes a token for `identity` ("" when anonymous): the identity is checked against the
   * session's before the token is spent, in one step (a refused attempt must not burn the
   * owner's token, and no other taker may slip in between the check and the take). A
   * connection elsewhere still holding the session is told through that node's `taken` hook.
   * Right after a successful take the hub calls session_open for the taken session (the
   * connection holds it now: the memory engine stops its expiry clock there); an engine whose
   * take already moved the session to this node treats that as a refresh. If the connection
   * went away before the answer came, the hub calls session_closed for it instead. */
  int (*session_take)(sb_engine *e, const char *token, const char *identity,
                      sb_engine_session_cb cb, void *ctx);
  /* A barrier: `cb` fires once every subscribe issued before this call is live (deliveries of
   * messages published from then on will reach the hub). The hub waits for it before it reads
   * history for a resume, so that nothing published between the read and the subscription
   * can fall between the two. status < 0: an engine failure (the resume answers 503). */
  int (*sync)(sb_engine *e, void (*cb)(void *ctx, int status), void *ctx);
  /* Presence. `member` names one membership of this node (a connection in the group) and is
   * unique among this node's live memberships; joined 1 adds it with `identity`, joined 0
   * removes it (identity as it was added). The hub calls it for every membership it makes
   * and undoes, balanced. The engine counts connections per identity across the cluster and
   * reports an identity's first and last connection through the host's presence hook. A
   * shared engine keeps this node's entries itself and registers them again after it lost
   * Redis; a dead node's entries go with it (redis: node_expire). */
  int (*presence)(sb_engine *e, const char *stream, size_t slen, uint64_t member,
                  const char *identity, int joined);
  /* Who is in the group stream now, across the cluster. The callback may fire inside the call
   * (memory) or later (redis). */
  int (*presence_get)(sb_engine *e, const char *stream, size_t slen, sb_engine_presence_cb cb,
                      void *ctx);
  /* The live nodes (NULL: a single node, this one). The callback always comes later. */
  int (*nodes)(sb_engine *e, sb_engine_nodes_cb cb, void *ctx);
  /* The state of the engine's links, at once (NULL: always up, nothing to report). */
  void (*health)(sb_engine *e, sb_engine_health *out);
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
