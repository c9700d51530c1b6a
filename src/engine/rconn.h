/*
 * rconn.h — one Redis connection on the server's libuv loop (hiredis' async API through its
 * libuv adapter): the adapter between the redis engine and hiredis.
 *
 * A connection is either for commands or for pub/sub (DESIGN.md: one of each per node, so that
 * commands apply in call order and subscriptions never wait behind a slow command). What it
 * adds to hiredis:
 *   - Reconnection with exponential backoff (with jitter), forever, until freed. The state
 *     callback says when the link is up (connected, Redis' run_id read, every script loaded) and
 *     when it went down; a pub/sub connection subscribes again to every channel it had.
 *   - Timeouts, which hiredis 0.14 lacks: a command not answered within command_timeout_ms
 *     means the link is stuck, so the connection is dropped (every pending command fails with
 *     SB_EIO) and made again.
 *   - Fail fast: a command issued while the link is down fails at once (SB_EIO), never queued.
 *   - Scripts: loaded at connect (SCRIPT LOAD) and called by EVALSHA; a NOSCRIPT answer (a
 *     flushed script cache, a failover to a replica that never loaded them) is retried once as
 *     EVAL with the script's text, and every script is loaded again.
 * Commands issued in one loop turn leave in one write: hiredis buffers them until the socket
 * polls writable, which libuv reports once per turn.
 *
 * Callbacks: a reply callback fires exactly once for every command that was accepted (status
 * 0 with the reply, borrowed for the call; or SB_EIO with reply NULL when the link failed, timed
 * out or the connection is freed), never inside the call that issued it.
 */
#ifndef SB_ENGINE_RCONN_H
#define SB_ENGINE_RCONN_H

#include <stddef.h>
#include <stdint.h>

#include <hiredis/hiredis.h>
#include <uv.h>

#include "common/common.h"

typedef struct sb_rconn sb_rconn;

/* A reply: status 0 and `reply` (never NULL; an error reply is REDIS_REPLY_ERROR), or status
 * SB_EIO and NULL. */
typedef void (*sb_rconn_reply_cb)(void *ctx, int status, redisReply *reply);

typedef struct sb_rconn_options {
  const char *url;              /* "redis://host:port" (an IP literal or localhost) or
                                   "unix:/path/to/socket" */
  int pubsub;                   /* 1: a pub/sub connection (subscribe, messages) */
  unsigned command_timeout_ms;  /* 0: 2000 */
  unsigned backoff_min_ms;      /* first reconnect delay; 0: 50 */
  unsigned backoff_max_ms;      /* the most it grows to; 0: 5000 */
  const char *const *scripts;   /* Lua sources (commands only), called by index */
  size_t nscripts;
  /* The link came up (1: connected, run_id read, scripts loaded; a pub/sub connection has
   * subscribed again to its channels) or went down (0). Not called from inside sb_rconn_new. */
  void (*on_state)(void *user, int up);
  /* pub/sub: a message on a subscribed channel. Borrowed for the call. */
  void (*on_message)(void *user, const char *channel, size_t clen, const char *data, size_t len);
  void *user;
} sb_rconn_options;

/* Creates the connection and starts connecting. SB_EINVAL (with a reason in err) for a bad url,
 * SB_ENOMEM. The options' strings and scripts must outlive the connection. */
int sb_rconn_new(sb_rconn **out, uv_loop_t *loop, const sb_rconn_options *opts, char *err,
                 size_t errlen);

/* Frees it: pending commands fail (SB_EIO) before this returns, and no callback fires after.
 * The libuv handles close on the following loop turns (the loop must run for them). */
void sb_rconn_free(sb_rconn *c);

/* 1 while the link is up (see on_state). */
int sb_rconn_up(const sb_rconn *c);
/* Commands sent and not answered yet. */
size_t sb_rconn_pending(const sb_rconn *c);

/* Redis' run_id as read at the last connect ("" before). */
const char *sb_rconn_run_id(const sb_rconn *c);

/* What the connection last failed with, for logs and health ("" when none). */
const char *sb_rconn_error(const sb_rconn *c);

/* A command (commands connection). 0: `cb` fires later; SB_EIO: the link is down (nothing sent,
 * no callback); SB_ENOMEM. */
int sb_rconn_command(sb_rconn *c, int argc, const char **argv, const size_t *lens,
                     sb_rconn_reply_cb cb, void *ctx);

/* Calls script `index` with `nkeys` keys followed by the other arguments (argv[0..argc)). */
int sb_rconn_script(sb_rconn *c, size_t index, int nkeys, int argc, const char **argv,
                    const size_t *lens, sb_rconn_reply_cb cb, void *ctx);

/* pub/sub: subscribes to (unsubscribes from) a channel, now if the link is up, and again after
 * every reconnect until unsubscribed. 0, or SB_ENOMEM. */
int sb_rconn_subscribe(sb_rconn *c, const char *channel, size_t len);
int sb_rconn_unsubscribe(sb_rconn *c, const char *channel, size_t len);
/* pub/sub: `cb` fires once every SUBSCRIBE issued before this call is live (Redis confirmed
 * them: it answers in order, so the confirmation of a channel subscribed for the purpose, then
 * dropped, comes after theirs), with status 0; or SB_EIO if the link fails first. 0, SB_EIO
 * (down: no callback), SB_ENOMEM. */
int sb_rconn_barrier(sb_rconn *c, void (*cb)(void *ctx, int status), void *ctx);

/* Number of channels the connection keeps subscribed. */
size_t sb_rconn_channels(const sb_rconn *c);

/* Drops the link now and reconnects after the backoff (a failed health check). */
void sb_rconn_reset(sb_rconn *c, const char *why);

#endif
