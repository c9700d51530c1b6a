/*
 * rconn.c — a Redis connection that reconnects, times out and loads its scripts (rconn.h).
 *
 * States: DOWN (waiting for the next attempt) → CONNECTING → SETUP (the commands connection
 * reads the run_id and loads the scripts; the pub/sub one subscribes again) → UP. Any failure
 * goes back to DOWN, with every pending command failed (hiredis calls their callbacks with a
 * NULL reply when the context is freed) and the next attempt after a backoff that doubles from
 * backoff_min_ms to backoff_max_ms, with up to a quarter of jitter so that many nodes do not
 * reconnect in step.
 *
 * Pending commands are a FIFO: Redis answers in order, so a reply always belongs to the oldest
 * pending command, and the oldest one's deadline is the only one that matters for timeouts.
 * Each record keeps its formatted command only when it called a script, for the NOSCRIPT retry;
 * records and their buffers are reused in ring order, so steady traffic allocates nothing.
 *
 * hiredis' own memory comes from malloc, not from the server's allocator.
 *
 * The loop adapter is ours, not hiredis' adapters/libuv.h. That one polls for writability to
 * send a command: the command leaves only after one more epoll_wait (a loop turn later), and
 * every uv_poll_start re-registers the socket in epoll even when nothing changed (8 epoll_ctl
 * per published message, measured). Ours writes what the turn's callbacks queued from a
 * uv_check handle at the end of the same turn, in one write (and from a uv_prepare handle
 * before the loop would sleep, for what timers and close callbacks queued), and polls for
 * writability only while the kernel refuses part of it or the connect is in progress; the
 * poll is changed only when what it watches changes.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <hiredis/async.h>
#include <uv.h>
#include <openssl/sha.h>

#include "common/map.h"
#include "engine/engine.h"
#include "engine/rconn.h"

enum { ST_DOWN, ST_CONNECTING, ST_SETUP, ST_UP };

typedef struct barrier {
  struct barrier *next;
  void (*cb)(void *ctx, int status);
  void *ctx;
  char channel[48];
  size_t clen;
} barrier;

typedef struct pending {
  sb_rconn_reply_cb cb; /* NULL: an internal setup command */
  void *ctx;
  uint64_t deadline;
  int script;           /* index of the script called by EVALSHA, or -1 */
  int retried;          /* already sent again as EVAL */
  char *cmd;            /* the formatted EVALSHA (scripts only) */
  size_t cmd_len, cmd_cap;
} pending;

struct sb_rconn {
  uv_loop_t *loop;
  sb_rconn_options o;
  int unix_socket;
  char host[256];
  int port;
  redisAsyncContext *ac;
  int state;
  int freeing;
  unsigned setup_left;
  uint64_t connect_deadline, reconnect_at;
  unsigned backoff;
  pending *q;
  size_t qhead, qlen, qcap;
  uv_timer_t timer;
  char run_id[64];
  char (*sha)[41];
  sb_map channels; /* pub/sub: every channel to be subscribed */
  struct barrier *barriers; /* pub/sub: waiting for their confirmation, in order */
  struct barrier **barriers_tail;
  uint64_t barrier_seq;
  char err[160];
};

#define KEEP_CMD_BUF 4096

static uint64_t now_ms(const sb_rconn *c) { return uv_now(c->loop); }

static void set_err(sb_rconn *c, const char *what, const char *detail) {
  snprintf(c->err, sizeof(c->err), "%s%s%s", what, detail && *detail ? ": " : "",
           detail ? detail : "");
}

/* ---- the FIFO of pending commands ------------------------------------------------------ */

static pending *q_push(sb_rconn *c) {
  if (c->qlen == c->qcap) {
    size_t cap = c->qcap ? c->qcap * 2 : 16;
    pending *q = malloc(cap * sizeof(*q));
    if (!q) return NULL;
    for (size_t i = 0; i < c->qlen; i++) q[i] = c->q[(c->qhead + i) % c->qcap];
    /* the slots not in use keep their buffers too */
    for (size_t i = c->qlen; i < c->qcap; i++) q[i] = c->q[(c->qhead + i) % c->qcap];
    for (size_t i = c->qcap; i < cap; i++) memset(&q[i], 0, sizeof(q[i]));
    free(c->q);
    c->q = q;
    c->qhead = 0;
    c->qcap = cap;
  }
  pending *p = &c->q[(c->qhead + c->qlen) % c->qcap];
  p->cb = NULL;
  p->ctx = NULL;
  p->script = -1;
  p->retried = 0;
  p->cmd_len = 0;
  p->deadline = now_ms(c) + c->o.command_timeout_ms;
  c->qlen++;
  return p;
}

/* The oldest record. A large command's buffer is not kept in the ring: it goes with the
 * record returned (its owner frees it, after a NOSCRIPT retry may have read it). */
static pending q_pop(sb_rconn *c) {
  pending *p = &c->q[c->qhead];
  pending out = *p;
  if (p->cmd_cap > KEEP_CMD_BUF) {
    p->cmd = NULL;
    p->cmd_cap = 0;
  } else {
    out.cmd_cap = 0; /* borrowed from the ring */
  }
  c->qhead = (c->qhead + 1) % c->qcap;
  c->qlen--;
  return out;
}

/* A burst (a reconnect storm: thousands of sessions opened at once) grows the ring to what
 * was in flight, each record with its command's buffer; once nothing is pending, a ring past
 * Q_KEEP records is let go (measured: 10,000 connections with 64 handshakes in flight kept
 * about 0.6 KiB per connection in it). */
#define Q_KEEP 64

static void q_shrink(sb_rconn *c) {
  for (size_t i = 0; i < c->qcap; i++) free(c->q[i].cmd);
  free(c->q);
  c->q = NULL;
  c->qcap = c->qhead = 0;
}

/* ---- link state ------------------------------------------------------------------------ */

static void start_connect(sb_rconn *c);

static void schedule_reconnect(sb_rconn *c) {
  unsigned b = c->backoff ? c->backoff : c->o.backoff_min_ms;
  unsigned jitter = b / 4 ? (unsigned)(rand() % (int)(b / 4 + 1)) : 0;
  c->reconnect_at = now_ms(c) + b + jitter;
  c->backoff = b * 2 > c->o.backoff_max_ms ? c->o.backoff_max_ms : b * 2;
}

/* The link is gone (hiredis freed the context or is about to). Idempotent. */
static void fail_barriers(sb_rconn *c) {
  barrier *b = c->barriers;
  c->barriers = NULL;
  c->barriers_tail = &c->barriers;
  while (b) {
    barrier *next = b->next;
    b->cb(b->ctx, SB_EIO);
    free(b);
    b = next;
  }
}

static void went_down(sb_rconn *c) {
  int was_up = c->state == ST_UP;
  c->ac = NULL;
  fail_barriers(c);
  if (c->state == ST_DOWN) return;
  c->state = ST_DOWN;
  if (!c->freeing) schedule_reconnect(c);
  if (was_up && c->o.on_state && !c->freeing) c->o.on_state(c->o.user, 0);
}

static void on_disconnect(const redisAsyncContext *ac, int status) {
  sb_rconn *c = ac->data;
  if (!c || c->ac != ac) return;
  if (status != REDIS_OK) set_err(c, "connection lost", ac->errstr);
  went_down(c);
}

/* Drops the link now: every pending command fails. */
static void drop(sb_rconn *c) {
  redisAsyncContext *ac = c->ac;
  if (!ac) {
    went_down(c);
    return;
  }
  /* hiredis calls the pending callbacks (NULL replies) and, for a connected context, the
   * disconnect callback; a context still connecting gets neither, hence went_down after. */
  redisAsyncFree(ac);
  if (c->ac == ac) went_down(c);
}

void sb_rconn_reset(sb_rconn *c, const char *why) {
  set_err(c, why, NULL);
  drop(c);
}

static void came_up(sb_rconn *c) {
  c->state = ST_UP;
  c->backoff = 0;
  c->err[0] = '\0';
  if (c->o.on_state) c->o.on_state(c->o.user, 1);
}

/* ---- replies --------------------------------------------------------------------------- */

static void on_reply(redisAsyncContext *ac, void *r, void *privdata);

static int is_noscript(const redisReply *r) {
  return r && r->type == REDIS_REPLY_ERROR && r->len >= 8 && strncmp(r->str, "NOSCRIPT", 8) == 0;
}

/* The EVALSHA in p->cmd again as EVAL with the script's text: the same RESP array with its
 * first two elements replaced. */
static int send_as_eval(sb_rconn *c, const pending *p) {
  const char *cmd = p->cmd, *end = p->cmd + p->cmd_len;
  /* "*N\r\n$7\r\nEVALSHA\r\n$40\r\n<40>\r\n" */
  const char *nl = memchr(cmd, '\n', (size_t)(end - cmd));
  if (!nl) return SB_EINVAL;
  const char *rest = nl + 1 + (sizeof "$7\r\nEVALSHA\r\n$40\r\n" - 1) + 40 + 2;
  if (rest > end) return SB_EINVAL;
  const char *body = c->o.scripts[p->script];
  size_t blen = strlen(body), head = (size_t)(nl + 1 - cmd);
  char num[32];
  int nl2 = snprintf(num, sizeof(num), "$%zu\r\n", blen);
  size_t len = head + (sizeof "$4\r\nEVAL\r\n" - 1) + (size_t)nl2 + blen + 2 + (size_t)(end - rest);
  char *buf = malloc(len);
  if (!buf) return SB_ENOMEM;
  char *w = buf;
  memcpy(w, cmd, head);
  w += head;
  memcpy(w, "$4\r\nEVAL\r\n", sizeof "$4\r\nEVAL\r\n" - 1);
  w += sizeof "$4\r\nEVAL\r\n" - 1;
  memcpy(w, num, (size_t)nl2);
  w += nl2;
  memcpy(w, body, blen);
  w += blen;
  memcpy(w, "\r\n", 2);
  w += 2;
  memcpy(w, rest, (size_t)(end - rest));
  int r = redisAsyncFormattedCommand(c->ac, on_reply, c, buf, len);
  free(buf);
  return r == REDIS_OK ? 0 : SB_EIO;
}

static void load_scripts(sb_rconn *c);

static void setup_reply(sb_rconn *c, const pending *p, redisReply *r) {
  (void)p;
  if (!r || c->state != ST_SETUP) return;
  if (r->type == REDIS_REPLY_ERROR) {
    set_err(c, "setup failed", r->str);
    return drop(c);
  }
  if (r->type == REDIS_REPLY_STRING && r->len > 7 && memcmp(r->str, "# Server", 8) == 0) {
    const char *id = strstr(r->str, "run_id:");
    size_t n = 0;
    if (id) {
      id += 7;
      while (id[n] && id[n] != '\r' && id[n] != '\n' && n + 1 < sizeof(c->run_id)) n++;
    }
    memcpy(c->run_id, id ? id : "", n);
    c->run_id[n] = '\0';
  }
  if (--c->setup_left == 0) came_up(c);
}

static void on_reply(redisAsyncContext *ac, void *reply, void *privdata) {
  sb_rconn *c = privdata;
  redisReply *r = reply;
  (void)ac;
  if (c->qlen == 0) return; /* cannot happen: one record per command */
  pending p = q_pop(c);
  char *own = p.cmd_cap ? p.cmd : NULL; /* a large command's buffer, now ours (q_pop) */
  if (!p.cb) {
    free(own);
    return setup_reply(c, &p, r);
  }
  if (is_noscript(r) && p.script >= 0 && !p.retried && c->ac && !c->freeing) {
    /* The scripts are gone from Redis: this call goes again as EVAL (to the back of the FIFO,
     * with its own deadline), and they are loaded again for the calls after it. */
    pending *np = q_push(c);
    if (np && send_as_eval(c, &p) == 0) {
      np->cb = p.cb;
      np->ctx = p.ctx;
      np->script = p.script;
      np->retried = 1;
      load_scripts(c);
      free(own);
      return;
    }
    if (np) c->qlen--;
  }
  free(own);
  if (c->qlen == 0 && c->qcap > Q_KEEP) q_shrink(c);
  p.cb(p.ctx, r ? 0 : SB_EIO, r);
}

/* ---- connecting ------------------------------------------------------------------------ */

static void internal(sb_rconn *c, int argc, const char **argv, const size_t *lens) {
  pending *p = q_push(c);
  if (!p) return drop(c);
  if (redisAsyncCommandArgv(c->ac, on_reply, c, argc, argv, lens) != REDIS_OK) {
    c->qlen--;
    return drop(c);
  }
  c->setup_left++;
}

static void load_scripts(sb_rconn *c) {
  for (size_t i = 0; i < c->o.nscripts; i++) {
    const char *argv[3] = {"SCRIPT", "LOAD", c->o.scripts[i]};
    size_t lens[3] = {6, 4, strlen(c->o.scripts[i])};
    pending *p = q_push(c);
    if (!p) return drop(c);
    if (redisAsyncCommandArgv(c->ac, on_reply, c, 3, argv, lens) != REDIS_OK) {
      c->qlen--;
      return drop(c);
    }
    if (c->state == ST_SETUP) c->setup_left++;
  }
}

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata);

static void resubscribe(sb_rconn *c) {
  for (size_t i = 0; i < c->channels.cap; i++) {
    sb_map_entry *e = &c->channels.slots[i];
    if (!e->key) continue;
    const char *argv[2] = {"SUBSCRIBE", e->key};
    size_t lens[2] = {9, e->klen};
    if (redisAsyncCommandArgv(c->ac, on_sub_reply, c, 2, argv, lens) != REDIS_OK) return drop(c);
  }
}

static void on_connect(const redisAsyncContext *ac, int status) {
  sb_rconn *c = ac->data;
  if (!c || c->ac != ac) return;
  if (status != REDIS_OK) {
    set_err(c, "cannot connect", ac->errstr);
    went_down(c); /* hiredis frees the context after this */
    return;
  }
  c->state = ST_SETUP;
  c->setup_left = 0;
  if (c->o.pubsub) {
    resubscribe(c);
    if (c->state == ST_SETUP) came_up(c);
    return;
  }
  const char *argv[2] = {"INFO", "server"};
  size_t lens[2] = {4, 6};
  internal(c, 2, argv, lens);
  if (c->state == ST_SETUP) load_scripts(c);
}

/* ---- the loop adapter (see the top) ------------------------------------------------------ */

typedef struct rc_events {
  redisAsyncContext *ac; /* NULL once hiredis let go of it */
  uv_poll_t poll;
  uv_check_t check;     /* flushes at the end of the loop turn (after the poll phase)... */
  uv_prepare_t prepare; /* ...or before the next poll (what timers, close callbacks and later
                           check handles queued): the loop never sleeps on unsent commands */
  int watching; /* what the poll watches now (UV_READABLE | UV_WRITABLE) */
  int read, write; /* what hiredis asked for */
  int poll_write;  /* the kernel refused part of a write, or the connect is in progress */
  int closing;     /* handles still to close */
} rc_events;

static void ev_poll_cb(uv_poll_t *h, int status, int events);

static void ev_update(rc_events *v) {
  int want = (v->read ? UV_READABLE : 0) | (v->write && v->poll_write ? UV_WRITABLE : 0);
  if (want == v->watching) return;
  v->watching = want;
  if (want) uv_poll_start(&v->poll, want, ev_poll_cb);
  else uv_poll_stop(&v->poll);
}

static void ev_flush_stop(rc_events *v) {
  uv_check_stop(&v->check);
  uv_prepare_stop(&v->prepare);
}

static void ev_poll_cb(uv_poll_t *h, int status, int events) {
  rc_events *v = h->data;
  if (status < 0) v->watching = 0; /* libuv stopped the poll itself (POLLERR) */
  /* An error: reading finds it (and hiredis drops the connection). */
  if (v->ac && (status < 0 || (events & UV_READABLE))) redisAsyncHandleRead(v->ac);
  if (v->ac && status == 0 && (events & UV_WRITABLE)) {
    /* Writable: the connect completed (hiredis 0.14 takes any write call for the end of the
     * connect, so it is made only now), or the kernel takes more of a refused write. */
    redisAsyncHandleWrite(v->ac);
    if (v->ac && !v->write) {
      v->poll_write = 0;
      ev_update(v);
    }
  }
  if (v->ac) ev_update(v); /* after POLLERR: watch again what hiredis still wants */
}

/* What the turn queued leaves in one write. */
static void ev_flush(rc_events *v) {
  ev_flush_stop(v);
  if (!v->ac || !v->write || v->poll_write) return;
  redisAsyncHandleWrite(v->ac);
  if (v->ac && v->write) { /* not all of it: wait until writable */
    v->poll_write = 1;
    ev_update(v);
  }
}

static void ev_check_cb(uv_check_t *h) { ev_flush(h->data); }
static void ev_prepare_cb(uv_prepare_t *h) { ev_flush(h->data); }

static void ev_add_read(void *p) {
  rc_events *v = p;
  v->read = 1;
  ev_update(v);
}

static void ev_del_read(void *p) {
  rc_events *v = p;
  v->read = 0;
  ev_update(v);
}

static void ev_add_write(void *p) {
  rc_events *v = p;
  v->write = 1;
  if (v->poll_write) {
    ev_update(v);
  } else {
    uv_check_start(&v->check, ev_check_cb);
    uv_prepare_start(&v->prepare, ev_prepare_cb);
  }
}

static void ev_del_write(void *p) {
  rc_events *v = p;
  v->write = 0;
  v->poll_write = 0;
  ev_flush_stop(v);
  ev_update(v);
}

static void ev_closed(uv_handle_t *h) {
  rc_events *v = h->data;
  if (--v->closing == 0) free(v);
}

static void ev_cleanup(void *p) {
  rc_events *v = p;
  v->ac = NULL;
  v->closing = 3;
  uv_close((uv_handle_t *)&v->poll, ev_closed);
  uv_close((uv_handle_t *)&v->check, ev_closed);
  uv_close((uv_handle_t *)&v->prepare, ev_closed);
}

/* Attaches `ac` to the loop. Its handles do not keep the loop alive: the engine has nothing
 * to do once the application stopped its server. The connect is in progress: the first write
 * waits for writability (hiredis 0.14 would take a write attempted before it for a completed
 * connect). */
static int ev_attach(redisAsyncContext *ac, uv_loop_t *loop) {
  rc_events *v = calloc(1, sizeof(*v));
  if (!v) return REDIS_ERR;
  if (uv_poll_init(loop, &v->poll, ac->c.fd) != 0) {
    free(v);
    return REDIS_ERR;
  }
  uv_check_init(loop, &v->check);
  uv_prepare_init(loop, &v->prepare);
  v->poll.data = v->check.data = v->prepare.data = v;
  uv_unref((uv_handle_t *)&v->poll);
  uv_unref((uv_handle_t *)&v->check);
  uv_unref((uv_handle_t *)&v->prepare);
  v->poll_write = 1;
  v->ac = ac;
  ac->ev.data = v;
  ac->ev.addRead = ev_add_read;
  ac->ev.delRead = ev_del_read;
  ac->ev.addWrite = ev_add_write;
  ac->ev.delWrite = ev_del_write;
  ac->ev.cleanup = ev_cleanup;
  return REDIS_OK;
}

static void start_connect(sb_rconn *c) {
  redisAsyncContext *ac =
      c->unix_socket ? redisAsyncConnectUnix(c->host) : redisAsyncConnect(c->host, c->port);
  if (!ac || ac->err) {
    set_err(c, "cannot connect", ac ? ac->errstr : "out of memory");
    if (ac) redisAsyncFree(ac);
    c->state = ST_CONNECTING; /* so that went_down schedules the next attempt */
    went_down(c);
    return;
  }
  ac->data = c;
  if (ev_attach(ac, c->loop) != REDIS_OK) {
    set_err(c, "cannot attach to the loop", NULL);
    redisAsyncFree(ac);
    c->state = ST_CONNECTING;
    went_down(c);
    return;
  }
  redisAsyncSetConnectCallback(ac, on_connect);
  redisAsyncSetDisconnectCallback(ac, on_disconnect);
  c->ac = ac;
  c->state = ST_CONNECTING;
  c->connect_deadline = now_ms(c) + c->o.command_timeout_ms;
}

/* Timeouts and reconnects, a few times per command timeout. */
static void on_timer(uv_timer_t *t) {
  sb_rconn *c = t->data;
  uint64_t now = now_ms(c);
  if (c->state == ST_DOWN) {
    if (now >= c->reconnect_at) start_connect(c);
    return;
  }
  if (c->state == ST_CONNECTING && now >= c->connect_deadline) {
    set_err(c, "connect timed out", NULL);
    return drop(c);
  }
  if (c->qlen && now >= c->q[c->qhead].deadline) {
    set_err(c, "command timed out", NULL);
    drop(c);
  }
}

/* ---- the API --------------------------------------------------------------------------- */

static int parse_url(sb_rconn *c, const char *url, char *err, size_t errlen) {
  if (!url) url = "";
  if (strncmp(url, "unix:", 5) == 0) {
    const char *path = url + 5;
    if (strncmp(path, "//", 2) == 0) path += 2;
    if (!*path || strlen(path) >= sizeof(c->host)) goto bad;
    c->unix_socket = 1;
    snprintf(c->host, sizeof(c->host), "%s", path);
    return 0;
  }
  if (strncmp(url, "redis://", 8) != 0) goto bad;
  const char *h = url + 8, *colon;
  const char *end = h + strlen(h);
  if (end > h && end[-1] == '/') end--;
  if (*h == '[') { /* [::1]:6379 */
    const char *close = memchr(h, ']', (size_t)(end - h));
    if (!close) goto bad;
    if ((size_t)(close - h - 1) >= sizeof(c->host)) goto bad;
    memcpy(c->host, h + 1, (size_t)(close - h - 1));
    c->host[close - h - 1] = '\0';
    colon = close + 1 < end && close[1] == ':' ? close + 1 : NULL;
  } else {
    colon = memchr(h, ':', (size_t)(end - h));
    size_t hl = (size_t)((colon ? colon : end) - h);
    if (hl == 0 || hl >= sizeof(c->host)) goto bad;
    memcpy(c->host, h, hl);
    c->host[hl] = '\0';
  }
  c->port = 6379;
  if (colon) {
    char *e;
    long p = strtol(colon + 1, &e, 10);
    if (e != end || p <= 0 || p > 65535) goto bad;
    c->port = (int)p;
  }
  if (strcmp(c->host, "localhost") == 0) snprintf(c->host, sizeof(c->host), "127.0.0.1");
  return 0;
bad:
  if (err) snprintf(err, errlen, "redis url must be redis://host[:port] or unix:/path, not \"%.80s\"", url);
  return SB_EINVAL;
}

int sb_rconn_new(sb_rconn **out, uv_loop_t *loop, const sb_rconn_options *opts, char *err,
                 size_t errlen) {
  *out = NULL;
  if (!loop || !opts) return SB_EINVAL;
  sb_ignore_sigpipe(); /* a Redis that goes away must not kill the process (hiredis writes) */
  sb_rconn *c = calloc(1, sizeof(*c));
  if (!c) return SB_ENOMEM;
  c->loop = loop;
  c->o = *opts;
  if (!c->o.command_timeout_ms) c->o.command_timeout_ms = 2000;
  if (!c->o.backoff_min_ms) c->o.backoff_min_ms = 50;
  if (!c->o.backoff_max_ms) c->o.backoff_max_ms = 5000;
  if (c->o.backoff_max_ms < c->o.backoff_min_ms) c->o.backoff_max_ms = c->o.backoff_min_ms;
  int r = parse_url(c, opts->url, err, errlen);
  if (r) {
    free(c);
    return r;
  }
  sb_map_init(&c->channels, &sb_default_allocator);
  c->barriers_tail = &c->barriers;
  if (c->o.nscripts) {
    c->sha = calloc(c->o.nscripts, sizeof(*c->sha));
    if (!c->sha) {
      free(c);
      return SB_ENOMEM;
    }
    for (size_t i = 0; i < c->o.nscripts; i++) {
      uint8_t d[SHA_DIGEST_LENGTH];
      SHA1((const uint8_t *)c->o.scripts[i], strlen(c->o.scripts[i]), d);
      for (int k = 0; k < SHA_DIGEST_LENGTH; k++) snprintf(c->sha[i] + 2 * k, 3, "%02x", d[k]);
    }
  }
  uv_timer_init(loop, &c->timer);
  c->timer.data = c;
  unsigned tick = c->o.command_timeout_ms / 4;
  tick = tick < 10 ? 10 : tick > 250 ? 250 : tick;
  uv_timer_start(&c->timer, on_timer, tick, tick);
  uv_unref((uv_handle_t *)&c->timer);
  start_connect(c);
  *out = c;
  return 0;
}

static void timer_closed(uv_handle_t *h) {
  sb_rconn *c = h->data;
  for (size_t i = 0; i < c->qcap; i++) free(c->q[i].cmd);
  free(c->q);
  free(c->sha);
  sb_map_free(&c->channels);
  free(c);
}

void sb_rconn_free(sb_rconn *c) {
  if (!c) return;
  c->freeing = 1;
  if (c->ac) drop(c);
  c->state = ST_DOWN;
  uv_timer_stop(&c->timer);
  uv_close((uv_handle_t *)&c->timer, timer_closed);
}

int sb_rconn_up(const sb_rconn *c) { return c && c->state == ST_UP; }

size_t sb_rconn_pending(const sb_rconn *c) { return c ? c->qlen : 0; }
const char *sb_rconn_run_id(const sb_rconn *c) { return c->run_id; }
const char *sb_rconn_error(const sb_rconn *c) { return c->err; }

int sb_rconn_command(sb_rconn *c, int argc, const char **argv, const size_t *lens,
                     sb_rconn_reply_cb cb, void *ctx) {
  if (!c || !cb || c->o.pubsub) return SB_EINVAL;
  if (c->state != ST_UP || c->freeing) return SB_EIO;
  pending *p = q_push(c);
  if (!p) return SB_ENOMEM;
  if (redisAsyncCommandArgv(c->ac, on_reply, c, argc, argv, lens) != REDIS_OK) {
    c->qlen--;
    return SB_EIO;
  }
  p->cb = cb;
  p->ctx = ctx;
  return 0;
}

int sb_rconn_script(sb_rconn *c, size_t index, int nkeys, int argc, const char **argv,
                    const size_t *lens, sb_rconn_reply_cb cb, void *ctx) {
  if (!c || !cb || c->o.pubsub || index >= c->o.nscripts || argc < 0 || nkeys < 0 ||
      nkeys > argc)
    return SB_EINVAL;
  if (c->state != ST_UP || c->freeing) return SB_EIO;
  /* EVALSHA sha nkeys args...: formatted here so that a NOSCRIPT can send it again as EVAL. */
  const char *stack_argv[16];
  size_t stack_lens[16];
  const char **av = stack_argv;
  size_t *al = stack_lens;
  if (argc + 3 > 16) {
    av = malloc((size_t)(argc + 3) * (sizeof(*av) + sizeof(*al)));
    if (!av) return SB_ENOMEM;
    al = (size_t *)(void *)(av + argc + 3);
  }
  char nk[16];
  av[0] = "EVALSHA";
  al[0] = 7;
  av[1] = c->sha[index];
  al[1] = 40;
  al[2] = (size_t)snprintf(nk, sizeof(nk), "%d", nkeys);
  av[2] = nk;
  for (int i = 0; i < argc; i++) {
    av[i + 3] = argv[i];
    al[i + 3] = lens[i];
  }
  char *cmd = NULL;
  long long n = redisFormatCommandArgv(&cmd, argc + 3, av, al);
  if (av != stack_argv) free(av);
  if (n < 0) return SB_ENOMEM;
  pending *p = q_push(c);
  if (!p) {
    redisFreeCommand(cmd);
    return SB_ENOMEM;
  }
  if (p->cmd_cap < (size_t)n) {
    char *b = realloc(p->cmd, (size_t)n);
    if (!b) {
      c->qlen--;
      redisFreeCommand(cmd);
      return SB_ENOMEM;
    }
    p->cmd = b;
    p->cmd_cap = (size_t)n;
  }
  memcpy(p->cmd, cmd, (size_t)n);
  p->cmd_len = (size_t)n;
  int r = redisAsyncFormattedCommand(c->ac, on_reply, c, cmd, (size_t)n);
  redisFreeCommand(cmd);
  if (r != REDIS_OK) {
    c->qlen--;
    return SB_EIO;
  }
  p->cb = cb;
  p->ctx = ctx;
  p->script = (int)index;
  return 0;
}

/* ---- pub/sub --------------------------------------------------------------------------- */

static void on_sub_reply(redisAsyncContext *ac, void *reply, void *privdata) {
  sb_rconn *c = privdata;
  redisReply *r = reply;
  (void)ac;
  if (!r || r->type != REDIS_REPLY_ARRAY || r->elements != 3 || c->freeing) return;
  redisReply *kind = r->element[0], *ch = r->element[1], *data = r->element[2];
  if (kind->type != REDIS_REPLY_STRING || ch->type != REDIS_REPLY_STRING) return;
  if (kind->len == 7 && memcmp(kind->str, "message", 7) == 0 && data->type == REDIS_REPLY_STRING &&
      c->o.on_message) {
    c->o.on_message(c->o.user, ch->str, ch->len, data->str, data->len);
  } else if (kind->len == 9 && memcmp(kind->str, "subscribe", 9) == 0 && c->barriers &&
             ch->len == c->barriers->clen && memcmp(ch->str, c->barriers->channel, ch->len) == 0) {
    barrier *b = c->barriers;
    c->barriers = b->next;
    if (!c->barriers) c->barriers_tail = &c->barriers;
    const char *argv[2] = {"UNSUBSCRIBE", b->channel};
    size_t lens[2] = {11, b->clen};
    if (c->ac) redisAsyncCommandArgv(c->ac, on_sub_reply, c, 2, argv, lens);
    b->cb(b->ctx, 0);
    free(b);
  }
}

int sb_rconn_barrier(sb_rconn *c, void (*cb)(void *ctx, int status), void *ctx) {
  if (!c || !c->o.pubsub || !cb) return SB_EINVAL;
  if (c->state != ST_UP || c->freeing) return SB_EIO;
  barrier *b = calloc(1, sizeof(*b));
  if (!b) return SB_ENOMEM;
  b->cb = cb;
  b->ctx = ctx;
  b->clen = (size_t)snprintf(b->channel, sizeof(b->channel), "__sb_barrier:%p:%llu", (void *)c,
                             (unsigned long long)++c->barrier_seq);
  const char *argv[2] = {"SUBSCRIBE", b->channel};
  size_t lens[2] = {9, b->clen};
  if (redisAsyncCommandArgv(c->ac, on_sub_reply, c, 2, argv, lens) != REDIS_OK) {
    free(b);
    return SB_EIO;
  }
  *c->barriers_tail = b;
  c->barriers_tail = &b->next;
  return 0;
}

int sb_rconn_subscribe(sb_rconn *c, const char *channel, size_t len) {
  if (!c || !c->o.pubsub || !channel) return SB_EINVAL;
  if (sb_map_get(&c->channels, channel, len)) return 0;
  if (sb_map_put(&c->channels, channel, len, c)) return SB_ENOMEM;
  if (c->state == ST_UP) {
    const char *argv[2] = {"SUBSCRIBE", channel};
    size_t lens[2] = {9, len};
    if (redisAsyncCommandArgv(c->ac, on_sub_reply, c, 2, argv, lens) != REDIS_OK) drop(c);
  }
  return 0;
}

int sb_rconn_unsubscribe(sb_rconn *c, const char *channel, size_t len) {
  if (!c || !c->o.pubsub || !channel) return SB_EINVAL;
  if (!sb_map_del(&c->channels, channel, len)) return 0;
  if (c->state == ST_UP) {
    const char *argv[2] = {"UNSUBSCRIBE", channel};
    size_t lens[2] = {11, len};
    if (redisAsyncCommandArgv(c->ac, on_sub_reply, c, 2, argv, lens) != REDIS_OK) drop(c);
  }
  return 0;
}

size_t sb_rconn_channels(const sb_rconn *c) { return c->channels.len; }
