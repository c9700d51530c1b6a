/*
 * redis.c — the redis engine: many nodes behave as one through one Redis (issue 10).
 *
 * Every operation is one script (src/engine/scripts/, docs/ARCHITECTURE.md "Redis engine: key
 * layout and scripts") on the commands connection; messages arrive on the pub/sub connection:
 * a group's channel for group streams, this node's channel for direct messages and control.
 * Both connections are rconn.c's (reconnects, timeouts, scripts).
 *
 * Delivery, per stream subscribed on this node. The node remembers the epoch and the last
 * offset it delivered. A message of the same epoch at offset + 1 is delivered; at or below it,
 * it is a duplicate and dropped; above offset + 1 it is held and the gap is filled from the
 * stream's history (the read script) before it, so a lost pub/sub message costs the clients
 * nothing. A message of another epoch resets the stream (its history was lost; the clients'
 * positions in the old epoch mean nothing and their resume says so).
 *
 * The first local member subscribes: SUBSCRIBE, and the position script for the stream's head.
 * Messages that come before that answer are held; the baseline is the head, or just below the
 * first held message of the same epoch if that is lower (those arrived live after the
 * subscription and belong to the members). Once both the head is known and the subscription is
 * confirmed, the history after the head is read once: what was published between the two
 * reached no one here. Publishing from this node to a stream whose
 * subscription is not live yet waits for it (a barrier on the pub/sub connection), so that a
 * node's own publish right after a first join reaches its members.
 *
 * The join race. The hub answers a join at once, and this node's commands reach Redis after the
 * answer has left: a client may have another node publish before Redis has heard of the join.
 * Such a message counts in the head that the position script answers, and nothing else would
 * deliver it. So the first subscription reads the last LOOKBACK records below the head again
 * and delivers those stored at or after the moment the first member joined (this node's clock
 * against the publisher's: with clocks in step, exactly the ones published after the join).
 *
 * Sessions this node holds are fenced by their generation (the scripts' `g`): every script
 * that acts for a connection passes the generation it holds, and a late close of a session
 * that was resumed elsewhere is ignored by Redis. The generation comes with the answer to the
 * open; what the hub asks before it (a token, a close) waits for it.
 *
 * Presence. The node keeps its own memberships per group (member → identity) and tells Redis
 * each change (presence.lua, add or remove); Redis keeps every node's memberships and the
 * counts per identity, and publishes an identity's first and last connection on the group's
 * channel. A call that failed marks the group for a sync (the whole set, the script changing
 * only what differs), which the tick sends; after a reconnect, or a heartbeat that found this
 * node expired, every group is synced. A dead node's memberships go in node_expire.
 *
 * The tops. Every TOPS_MS the node reads the epoch and head of every stream it subscribes
 * (tops.lua, a hundred at a time, read only) and fills any stream whose head is past what it
 * delivered: a message whose pub/sub copy was lost (between Redis and this node, with no link
 * trouble that would have caused a fill) is delivered even when nothing follows it. After
 * link trouble the fill happens at once (on_sub_state), and the tops are checked at the next
 * tick after the commands link comes back (a fill asked for while it was down went nowhere).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common/map.h"
#include "engine/engine.h"
#include "engine/rconn.h"
#include "redis_scripts.h"

#define X(name) S_##name,
enum { SB_LUA_SCRIPTS(X) S_COUNT };
#undef X
#define X(name) sb_lua_##name,
static const char *const script_text[] = {SB_LUA_SCRIPTS(X)};
#undef X

#define KEY_MAX 512
#define FILL_BATCH 256
#define LOOKBACK 32 /* records read again at a first subscription (the join race) */
#define TOPS_MS 5000 /* how often the tops of the subscribed streams are checked */
#define TOPS_BATCH 100 /* streams per tops call */

typedef struct held_msg {
  uint64_t epoch, offset, time_ms;
  uint8_t *data;
  size_t len;
} held_msg;

typedef struct queued_pub {
  struct queued_pub *next;
  sb_engine_position_cb done;
  void *ctx;
  char *session;
  size_t len;
  uint8_t data[];
} queued_pub;

typedef struct rstream {
  struct redis_engine *e;
  unsigned refs;     /* subscribe calls not undone */
  unsigned pending;  /* its commands and barrier still to answer */
  uint8_t gone;      /* unsubscribed: freed once nothing is pending */
  uint8_t live;    /* the subscription is confirmed */
  uint8_t ready;   /* the baseline is known */
  uint8_t filling; /* a read for a gap is in flight */
  uint8_t direct;  /* "c:": arrives on the node channel */
  uint64_t epoch, offset;
  /* The first subscription's look-back: records up to `lookback` that were stored before
   * `since` (this node's clock when the first member joined) are passed over silently; later
   * ones are delivered. See "The join race" at the top. */
  uint64_t since, lookback;
  held_msg *held;
  size_t nheld, heldcap;
  queued_pub *queue, **queue_tail;
  size_t name_len;
  char name[];
} rstream;

typedef struct rsess {
  char id[23];
  char token[23]; /* its current token ("" none), kept to bind it again if Redis loses it */
  uint64_t gen;   /* 0: the open is not answered yet */
  uint8_t close_pending;
  uint8_t token_unsent; /* the token waits for the generation, or for Redis */
  uint8_t opening;      /* an open is in flight */
  uint8_t groups_lost;  /* a group change did not reach Redis: the hub records them again */
  char *identity;       /* kept to make the session again if Redis loses it; NULL: "" */
} rsess;

/* This node's memberships of one group stream, for presence: what it told Redis, so that it
 * can tell it again after Redis lost it (presence.lua, op sync). */
typedef struct rpres {
  struct redis_engine *e;
  sb_map members;   /* member (16 hex digits) → identity (malloc'd) */
  unsigned pending; /* calls not answered yet */
  uint8_t dirty;    /* a call failed, or Redis may have lost it: sync again */
  size_t name_len;
  char name[];
} rpres;

typedef struct redis_engine {
  sb_engine base;
  uv_loop_t *loop;
  sb_redis_options o;
  char prefix[64];
  char node_id[64];
  char public_url[256];
  char node_channel[128];
  size_t node_channel_len;
  sb_rconn *cmd, *sub;
  sb_engine_host host;
  sb_engine_limits lim;
  sb_map streams;  /* name → rstream (subscribed here; the key is the stream's own name) */
  sb_map channels; /* a group stream's channel → rstream */
  sb_map sessions; /* conn id → rsess (held here) */
  sb_map presence; /* group stream → rpres (this node's memberships) */
  int registered;  /* a heartbeat found this node registered and on time */
  unsigned opens;  /* sessions opened since the heap was last handed back */
  int tops_now;    /* check the tops at the next tick (the commands link came back) */
  int beat_answered; /* a heartbeat was answered: this run is registered as itself */
  uint64_t started_ms, last_beat, last_expire, last_refresh, last_tops;
  int freeing;
  int cmd_ups;       /* times the commands link came up (> 1: a reconnect) */
  int sub_ups;
  /* The health probe: a message this node sends itself through its own channel, which must
   * come back within a few command timeouts, else the pub/sub link is deaf and is made again. */
  char probe[24];
  uint64_t probe_sent;
  int probe_waiting;
} redis_engine;

static void rsess_free(rsess *ss) {
  if (!ss) return;
  free(ss->identity);
  free(ss);
}

static uint64_t wall_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

/* ---- keys -------------------------------------------------------------------------------- */

/* prefix + "{" + E(tag) + "}" + suffix, E escaping '%', '{', '}' (the hash tag is the name). */
static size_t make_key(const redis_engine *e, char *out, size_t cap, const char *tag_prefix,
                       const char *name, size_t n, const char *suffix) {
  size_t k = (size_t)snprintf(out, cap, "%s{%s", e->prefix, tag_prefix);
  if (k >= cap) return 0;
  for (size_t i = 0; i < n; i++) {
    unsigned char ch = (unsigned char)name[i];
    if (ch == '%' || ch == '{' || ch == '}') {
      static const char hex[] = "0123456789ABCDEF";
      if (k + 3 >= cap) return 0;
      out[k++] = '%';
      out[k++] = hex[ch >> 4];
      out[k++] = hex[ch & 15];
    } else {
      if (k + 1 >= cap) return 0;
      out[k++] = (char)ch;
    }
  }
  int r = snprintf(out + k, cap - k, "}%s", suffix);
  if (r < 0 || (size_t)r >= cap - k) return 0;
  return k + (size_t)r;
}

/* ---- replies ------------------------------------------------------------------------------ */

static uint64_t reply_u64(const redisReply *r) {
  if (!r) return 0;
  if (r->type == REDIS_REPLY_INTEGER) return (uint64_t)r->integer;
  if (r->type == REDIS_REPLY_STRING) return strtoull(r->str, NULL, 10);
  return 0;
}

static int reply_is(const redisReply *r, const char *s) {
  return r && r->type == REDIS_REPLY_STRING && r->len == strlen(s) && memcmp(r->str, s, r->len) == 0;
}

/* A script call through the commands connection. `args` are the keys then the arguments. */
typedef struct call_args {
  const char *v[16];
  size_t l[16];
  int n;
} call_args;

static void arg(call_args *a, const void *p, size_t len) {
  a->v[a->n] = p;
  a->l[a->n] = len;
  a->n++;
}
static void arg_s(call_args *a, const char *s) { arg(a, s, strlen(s)); }

static int call(redis_engine *e, int script, int nkeys, call_args *a, sb_rconn_reply_cb cb,
                void *ctx) {
  return sb_rconn_script(e->cmd, (size_t)script, nkeys, a->n, a->v, a->l, cb, ctx);
}

/* A stream script's arguments: its two keys (the metadata, the history), the prefix and the
 * stream's name, then numbers formatted here; the texts live in the struct for the call. */
typedef struct stream_call {
  call_args a;
  char m[KEY_MAX], x[KEY_MAX];
  char num[8][24];
  int nnum;
} stream_call;

static int stream_begin(redis_engine *e, stream_call *c, const char *name, size_t n) {
  c->a.n = 0;
  c->nnum = 0;
  size_t ml = make_key(e, c->m, sizeof(c->m), "", name, n, ":m");
  size_t xl = make_key(e, c->x, sizeof(c->x), "", name, n, ":x");
  if (!ml || !xl) return SB_EINVAL;
  arg(&c->a, c->m, ml);
  arg(&c->a, c->x, xl);
  return 0;
}

static void arg_u64(stream_call *c, uint64_t v) {
  char *t = c->num[c->nnum++];
  arg(&c->a, t, (size_t)snprintf(t, sizeof(c->num[0]), "%llu", (unsigned long long)v));
}

/* The arguments that end read and publish: now, an epoch candidate, the run_id, the limits. */
static void arg_stream_tail(redis_engine *e, stream_call *c) {
  arg_u64(c, wall_ms());
  arg_u64(c, sb_random_epoch());
  arg_s(&c->a, sb_rconn_run_id(e->cmd));
  arg_u64(c, e->lim.history_max);
  arg_u64(c, e->lim.history_age_ms);
  arg_u64(c, e->o.stream_ttl_ms);
}

/* The read script: records of `name` from `from`, at most `max`. */
static int send_read(redis_engine *e, const char *name, size_t n, uint64_t from, size_t max,
                     sb_rconn_reply_cb cb, void *ctx) {
  stream_call c;
  if (stream_begin(e, &c, name, n)) return SB_EINVAL;
  arg_s(&c.a, e->prefix);
  arg(&c.a, name, n);
  arg_u64(&c, from);
  arg_u64(&c, max ? max : 1);
  arg_stream_tail(e, &c);
  return call(e, S_read, 2, &c.a, cb, ctx);
}

static int send_position(redis_engine *e, const char *name, size_t n, sb_rconn_reply_cb cb,
                         void *ctx);

/* ---- delivery ----------------------------------------------------------------------------- */

static void emit(rstream *s, uint64_t epoch, uint64_t offset, uint64_t time_ms, const void *data,
                 size_t len) {
  redis_engine *e = s->e;
  s->epoch = epoch;
  s->offset = offset;
  if (!e->host.deliver) return;
  sb_record rec = {offset, time_ms, data, len};
  e->host.deliver(e->host.hub, s->name, s->name_len, epoch, &rec);
}

static int hold(rstream *s, uint64_t epoch, uint64_t offset, uint64_t time_ms, const void *data,
                size_t len) {
  if (s->nheld == s->heldcap) {
    size_t cap = s->heldcap ? s->heldcap * 2 : 8;
    held_msg *h = realloc(s->held, cap * sizeof(*h));
    if (!h) return SB_ENOMEM;
    s->held = h;
    s->heldcap = cap;
  }
  uint8_t *copy = malloc(len ? len : 1);
  if (!copy) return SB_ENOMEM;
  memcpy(copy, data, len);
  s->held[s->nheld++] = (held_msg){epoch, offset, time_ms, copy, len};
  return 0;
}

static void start_fill(rstream *s);
static void consider(rstream *s, uint64_t epoch, uint64_t offset, uint64_t time_ms,
                     const void *data, size_t len);

static int held_cmp(const void *a, const void *b) {
  const held_msg *x = a, *y = b;
  return x->offset < y->offset ? -1 : x->offset > y->offset;
}

/* The baseline or a fill is done: deliver what was held, in offset order. */
static void release_held(rstream *s) {
  if (s->nheld == 0) return;
  qsort(s->held, s->nheld, sizeof(*s->held), held_cmp);
  size_t n = s->nheld, i = 0;
  held_msg *h = s->held;
  s->held = NULL;
  s->nheld = s->heldcap = 0;
  for (; i < n; i++) {
    if (s->filling) { /* a new gap: the rest waits for its fill */
      if (hold(s, h[i].epoch, h[i].offset, h[i].time_ms, h[i].data, h[i].len) != 0) break;
    } else {
      consider(s, h[i].epoch, h[i].offset, h[i].time_ms, h[i].data, h[i].len);
    }
    free(h[i].data);
    h[i].data = NULL;
  }
  for (; i < n; i++) free(h[i].data);
  free(h);
}

static void consider(rstream *s, uint64_t epoch, uint64_t offset, uint64_t time_ms,
                     const void *data, size_t len) {
  if (!s->ready || s->filling) {
    hold(s, epoch, offset, time_ms, data, len);
    return;
  }
  if (epoch != s->epoch) {
    /* History was lost and a new epoch began: all of it is new here, from its first message
     * (which may have been published while this node could not hear it); this one waits for
     * the read of what came before it. */
    s->epoch = epoch;
    s->offset = 0;
    if (offset == 1) emit(s, epoch, offset, time_ms, data, len);
    else if (hold(s, epoch, offset, time_ms, data, len) == 0) start_fill(s);
    return;
  }
  if (offset <= s->offset) return; /* a duplicate */
  if (offset == s->offset + 1) {
    emit(s, epoch, offset, time_ms, data, len);
    return;
  }
  if (hold(s, epoch, offset, time_ms, data, len) == 0) start_fill(s);
}

static void free_stream(rstream *s);

/* A callback of the stream's came back; 1 if the stream was dropped meanwhile (then freed). */
static int stream_back(rstream *s) {
  s->pending--;
  if (!s->gone) return 0;
  if (s->pending == 0) free_stream(s);
  return 1;
}

static void on_fill(void *ctx, int status, redisReply *r) {
  rstream *s = ctx;
  if (stream_back(s) || s->e->freeing) return;
  int more = 0;
  if (status == 0 && r->type == REDIS_REPLY_ARRAY && r->elements == 4) {
    uint64_t epoch = reply_u64(r->element[0]), first = reply_u64(r->element[1]),
             head = reply_u64(r->element[2]);
    redisReply *recs = r->element[3];
    size_t nrecs = recs->elements;
    if (epoch != s->epoch) {
      /* History was lost: the new epoch is new here from its start. This read began at the
       * old epoch's position; unless its records start at the new epoch's first, read again
       * from there (it comes back with this epoch, so this happens once). */
      s->epoch = epoch;
      s->offset = 0;
      s->lookback = 0;
      if (nrecs < 3 || reply_u64(recs->element[0]) > (first > 1 ? first : 1)) {
        nrecs = 0;
        more = 1;
      }
    }
    for (size_t i = 0; i + 3 <= nrecs; i += 3) {
      uint64_t off = reply_u64(recs->element[i]), t = reply_u64(recs->element[i + 1]);
      if (off <= s->offset) continue;
      if (off <= s->lookback && t < s->since) { /* before the first member joined */
        s->offset = off;
        continue;
      }
      emit(s, epoch, off, t, recs->element[i + 2]->str, recs->element[i + 2]->len);
    }
    s->lookback = 0;
    /* What was trimmed away cannot come back: skip to the oldest held message. */
    more = more || (nrecs / 3 == FILL_BATCH && s->offset < head);
  }
  s->filling = 0;
  if (more) return start_fill(s);
  /* On failure (Redis unreachable) the held messages go out as they are: the gap stays,
   * and the clients see it in the offsets and resume. */
  if (status != 0 && s->nheld) {
    qsort(s->held, s->nheld, sizeof(*s->held), held_cmp);
    s->offset = s->held[0].offset - 1;
    s->epoch = s->held[0].epoch;
  } else if (s->nheld && s->held[0].epoch == s->epoch) {
    /* Anything still below the first held message is gone from the history. */
    qsort(s->held, s->nheld, sizeof(*s->held), held_cmp);
    if (s->held[0].offset > s->offset + 1) s->offset = s->held[0].offset - 1;
  }
  release_held(s);
}

static void start_fill(rstream *s) {
  s->filling = 1;
  if (send_read(s->e, s->name, s->name_len, s->offset + 1, FILL_BATCH, on_fill, s) == 0) {
    s->pending++;
  } else {
    s->filling = 0;
    /* Cannot fill now: deliver what is held, the clients see the gap and resume. */
    if (s->nheld) {
      qsort(s->held, s->nheld, sizeof(*s->held), held_cmp);
      s->offset = s->held[0].offset - 1;
      s->epoch = s->held[0].epoch;
    }
    release_held(s);
  }
}

/* "<epoch>:<offset>:<time>:" then the payload. */
static int parse_record(const char *p, size_t n, uint64_t *epoch, uint64_t *offset,
                        uint64_t *time_ms, const char **data, size_t *len) {
  uint64_t v[3];
  size_t i = 0;
  for (int k = 0; k < 3; k++) {
    v[k] = 0;
    size_t start = i;
    while (i < n && p[i] >= '0' && p[i] <= '9') v[k] = v[k] * 10 + (uint64_t)(p[i++] - '0');
    if (i == start || i >= n || p[i] != ':') return -1;
    i++;
  }
  *epoch = v[0];
  *offset = v[1];
  *time_ms = v[2];
  *data = p + i;
  *len = n - i;
  return 0;
}

static int publish_now(redis_engine *e, const char *name, size_t nlen, const char *session,
                       const uint8_t *data, size_t len, sb_engine_position_cb done, void *ctx);

static void on_sub_message(void *user, const char *ch, size_t clen, const char *data, size_t len) {
  redis_engine *e = user;
  uint64_t epoch, offset, t;
  const char *payload;
  size_t plen;
  if (clen == e->node_channel_len && memcmp(ch, e->node_channel, clen) == 0) {
    if (len < 1) return;
    if (data[0] == 'd') { /* d<slen>:<stream><record> */
      size_t i = 1, sl = 0;
      while (i < len && data[i] >= '0' && data[i] <= '9') sl = sl * 10 + (size_t)(data[i++] - '0');
      if (i >= len || data[i] != ':' || len - i - 1 < sl) return;
      const char *name = data + i + 1;
      rstream *s = sb_map_get(&e->streams, name, sl);
      if (!s || parse_record(name + sl, len - i - 1 - sl, &epoch, &offset, &t, &payload, &plen))
        return;
      consider(s, epoch, offset, t, payload, plen);
    } else if (data[0] == 'h') { /* our own health probe came back */
      if (e->probe_waiting && len == strlen(e->probe) && memcmp(data, e->probe, len) == 0)
        e->probe_waiting = 0;
    } else if (data[0] == 'k') { /* k<connid>:<generation> */
      const char *colon = memchr(data, ':', len);
      if (!colon) return;
      size_t idl = (size_t)(colon - data - 1);
      rsess *ss = sb_map_get(&e->sessions, data + 1, idl);
      uint64_t gen = strtoull(colon + 1, NULL, 10);
      if (!ss || (ss->gen && gen <= ss->gen)) return;
      char id[23];
      snprintf(id, sizeof(id), "%s", ss->id);
      sb_map_del(&e->sessions, ss->id, strlen(ss->id));
      rsess_free(ss);
      if (e->host.taken) e->host.taken(e->host.hub, id);
    }
    return;
  }
  /* A group's channel, P{E(g:name)}: a record, or a presence event "p1<id>" / "p0<id>". */
  rstream *s = sb_map_get(&e->channels, ch, clen);
  if (!s) return;
  if (len >= 2 && data[0] == 'p' && (data[1] == '0' || data[1] == '1')) {
    if (e->host.presence)
      e->host.presence(e->host.hub, s->name, s->name_len, data + 2, len - 2, data[1] == '1');
    return;
  }
  if (parse_record(data, len, &epoch, &offset, &t, &payload, &plen)) return;
  consider(s, epoch, offset, t, payload, plen);
}

/* ---- streams: subscribe ------------------------------------------------------------------- */

static void on_baseline(void *ctx, int status, redisReply *r) {
  rstream *s = ctx;
  if (stream_back(s) || s->e->freeing) return;
  if (status == 0 && r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
    s->epoch = reply_u64(r->element[0]);
    s->offset = reply_u64(r->element[1]);
    /* The join race: the head may already count messages published after the member joined
     * (its join was answered before this node's commands reached Redis). The last few are
     * read again, and those stored at or after the join time are delivered. */
    s->lookback = s->offset;
    s->offset = s->offset > LOOKBACK ? s->offset - LOOKBACK : 0;
  } else if (s->nheld) {
    qsort(s->held, s->nheld, sizeof(*s->held), held_cmp);
    s->epoch = s->held[0].epoch;
    s->offset = s->held[0].offset - 1;
  }
  /* Held messages of this epoch at or below the head came live after the subscription: they
   * belong to the members, so the baseline goes below the first of them. */
  for (size_t i = 0; i < s->nheld; i++) {
    if (s->held[i].epoch == s->epoch && s->held[i].offset <= s->offset)
      s->offset = s->held[i].offset - 1;
  }
  s->ready = 1;
  release_held(s);
  /* Both known (the head, and the subscription is live): what was published between the two
   * reached no one here; read it. */
  if (s->live && !s->filling && !s->gone) start_fill(s);
}

static void flush_queue(rstream *s) {
  queued_pub *q = s->queue;
  s->queue = NULL;
  s->queue_tail = &s->queue;
  while (q) {
    queued_pub *next = q->next;
    int r = publish_now(s->e, s->name, s->name_len, q->session, q->data, q->len, q->done, q->ctx);
    if (r != 0 && q->done) q->done(q->ctx, r, 0, 0);
    free(q->session);
    free(q);
    q = next;
  }
}

static void on_live(void *ctx, int status) {
  rstream *s = ctx;
  if (stream_back(s) || s->e->freeing) return;
  s->live = 1; /* or the link failed: publishing goes on, and fills cover what is missed */
  (void)status;
  /* Messages published after the head was read but before the subscription was live went to
   * no one here: read them (nothing when there are none). */
  if (s->ready && !s->filling) start_fill(s);
  flush_queue(s);
}

static void free_stream(rstream *s) {
  for (size_t i = 0; i < s->nheld; i++) free(s->held[i].data);
  free(s->held);
  for (queued_pub *q = s->queue, *next; q; q = next) { /* only when the engine is freed */
    next = q->next;
    free(q->session);
    free(q);
  }
  free(s);
}

static size_t channel_of(const redis_engine *e, char *out, size_t cap, const char *name, size_t n) {
  return make_key(e, out, cap, "", name, n, "");
}

static int r_subscribe(sb_engine *be, const char *name, size_t n) {
  redis_engine *e = (redis_engine *)be;
  rstream *s = sb_map_get(&e->streams, name, n);
  if (s) {
    s->refs++;
    return 0;
  }
  s = calloc(1, sizeof(*s) + n + 1);
  if (!s) return SB_ENOMEM;
  s->e = e;
  s->refs = 1;
  memcpy(s->name, name, n);
  s->name_len = n;
  s->queue_tail = &s->queue;
  s->direct = n > 2 && name[0] == 'c' && name[1] == ':';
  s->since = wall_ms();
  if (sb_map_put(&e->streams, s->name, n, s)) {
    free(s);
    return SB_ENOMEM;
  }
  if (s->direct) {
    s->live = 1; /* this node's channel is always subscribed */
  } else {
    char ch[KEY_MAX];
    size_t cl = channel_of(e, ch, sizeof(ch), name, n);
    /* Group messages are found by their channel. */
    if (!cl || sb_map_put(&e->channels, ch, cl, s) || sb_rconn_subscribe(e->sub, ch, cl)) {
      if (cl) sb_map_del(&e->channels, ch, cl);
      sb_map_del(&e->streams, s->name, n);
      free(s);
      return SB_ENOMEM;
    }
    if (sb_rconn_barrier(e->sub, on_live, s) == 0) s->pending++;
    else s->live = 1;
  }
  if (send_position(e, name, n, on_baseline, s) == 0) s->pending++;
  else s->ready = 1; /* Redis is down: the first message sets the baseline */
  return 0;
}

static int r_unsubscribe(sb_engine *be, const char *name, size_t n) {
  redis_engine *e = (redis_engine *)be;
  rstream *s = sb_map_get(&e->streams, name, n);
  if (!s || --s->refs > 0) return 0;
  flush_queue(s); /* publishes that waited for the subscription go out anyway */
  sb_map_del(&e->streams, s->name, n);
  if (!s->direct) {
    char ch[KEY_MAX];
    size_t cl = channel_of(e, ch, sizeof(ch), name, n);
    if (cl) {
      sb_map_del(&e->channels, ch, cl);
      sb_rconn_unsubscribe(e->sub, ch, cl);
    }
  }
  s->gone = 1;
  if (s->pending == 0) free_stream(s);
  return 0;
}

/* ---- publish ------------------------------------------------------------------------------ */

/* What a script call hands back to its caller: the engine, the callback, its context. */
typedef struct op_ctx {
  redis_engine *e;
  int status, local;       /* publish: the outcome, kept while waiting for the delivery to */
  uint64_t offset, epoch;  /* this node's subscription (local) */
  union {
    sb_engine_read_cb read;
    sb_engine_position_cb position;
    void (*sync)(void *, int);
    sb_engine_session_cb session;
    sb_engine_nodes_cb nodes;
    sb_engine_presence_cb presence;
  } cb;
  void *ctx;
} op_ctx;

static op_ctx *new_op(redis_engine *e, void *ctx) {
  op_ctx *o = malloc(sizeof(*o));
  if (o) {
    o->e = e;
    o->ctx = ctx;
  }
  return o;
}


static void on_published_delivered(void *ctx, int status) {
  op_ctx *p = ctx;
  (void)status; /* the pub/sub link failed: the outcome stands, the delivery may come later */
  if (!p->e->freeing) p->cb.position(p->ctx, p->status, p->offset, p->epoch);
  free(p);
}

/* The publish's answer. A message to a stream this node subscribes is in this node's pub/sub
 * stream already (the script published it before it answered), but the two connections are
 * read independently: the completion waits for a barrier on the pub/sub connection, which
 * comes back after that message, so that it fires after the delivery (engine.h). Only
 * publishes with a completion pay for it (sb_hub_send_to_cb). */
static void on_published(void *ctx, int status, redisReply *r) {
  op_ctx *p = ctx;
  redis_engine *e = p->e;
  p->status = status;
  if (status == 0) {
    if (r->type == REDIS_REPLY_NIL) p->status = SB_ENOTFOUND;
    else if (r->type == REDIS_REPLY_ARRAY && r->elements == 2) {
      p->epoch = reply_u64(r->element[0]);
      p->offset = reply_u64(r->element[1]);
    } else {
      p->status = SB_EIO;
    }
  }
  if (!e->freeing && p->status == 0 && p->local &&
      sb_rconn_barrier(e->sub, on_published_delivered, p) == 0)
    return;
  on_published_delivered(p, 0);
}

/* For calls whose answer nobody needs (their failure is a lost link, which reconnects). */
static void on_published_quiet(void *ctx, int status, redisReply *r) {
  (void)ctx;
  (void)status;
  (void)r;
}

static int publish_now(redis_engine *e, const char *name, size_t nlen, const char *session,
                       const uint8_t *data, size_t len, sb_engine_position_cb done, void *ctx) {
  stream_call c;
  char sk[KEY_MAX];
  size_t sl = session ? make_key(e, sk, sizeof(sk), "s:", session, strlen(session), "") : 0;
  if (stream_begin(e, &c, name, nlen) || (session && !sl)) return SB_EINVAL;
  if (session) arg(&c.a, sk, sl);
  arg_s(&c.a, e->prefix);
  arg(&c.a, name, nlen);
  arg(&c.a, data, len);
  arg_stream_tail(e, &c);
  int nkeys = session ? 3 : 2;
  if (!done) return call(e, S_publish, nkeys, &c.a, on_published_quiet, e);
  op_ctx *p = new_op(e, ctx);
  if (!p) return SB_ENOMEM;
  p->cb.position = done;
  p->local = sb_map_get(&e->streams, name, nlen) != NULL;
  int r = call(e, S_publish, nkeys, &c.a, on_published, p);
  if (r != 0) free(p);
  return r;
}

static int r_publish(sb_engine *be, const char *name, size_t n, const char *session,
                     const uint8_t *data, size_t len, sb_engine_position_cb done, void *ctx) {
  redis_engine *e = (redis_engine *)be;
  if (!sb_rconn_up(e->cmd)) return SB_EIO;
  rstream *s = sb_map_get(&e->streams, name, n);
  if (s && !s->live) {
    /* The first local member just joined: wait until its subscription is live, so that this
     * node's own message reaches it (rare: only right after a first join). */
    queued_pub *q = malloc(sizeof(*q) + len);
    if (!q) return SB_ENOMEM;
    q->next = NULL;
    q->done = done;
    q->ctx = ctx;
    q->len = len;
    q->session = NULL;
    if (session && !(q->session = strdup(session))) {
      free(q);
      return SB_ENOMEM;
    }
    memcpy(q->data, data, len);
    *s->queue_tail = q;
    s->queue_tail = &q->next;
    return 0;
  }
  return publish_now(e, name, n, session, data, len, done, ctx);
}

/* ---- read, position, trim ----------------------------------------------------------------- */

static void on_read(void *ctx, int status, redisReply *r) {
  op_ctx *o = ctx;
  if (o->e->freeing) return free(o);
  if (status != 0 || r->type != REDIS_REPLY_ARRAY || r->elements != 4 ||
      r->element[3]->type != REDIS_REPLY_ARRAY) {
    o->cb.read(o->ctx, SB_EIO, 0, 0, 0, NULL, 0);
    free(o);
    return;
  }
  redisReply *recs = r->element[3];
  size_t n = recs->elements / 3;
  sb_record stack[64], *v = n <= 64 ? stack : malloc(n * sizeof(*v));
  if (!v) {
    o->cb.read(o->ctx, SB_ENOMEM, 0, 0, 0, NULL, 0);
    free(o);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    redisReply *d = recs->element[3 * i + 2];
    v[i] = (sb_record){reply_u64(recs->element[3 * i]), reply_u64(recs->element[3 * i + 1]),
                       (const uint8_t *)d->str, d->len};
  }
  o->cb.read(o->ctx, 0, reply_u64(r->element[0]), reply_u64(r->element[1]),
             reply_u64(r->element[2]), v, n);
  if (v != stack) free(v);
  free(o);
}

static int r_read(sb_engine *be, const char *name, size_t n, uint64_t from, size_t max,
                  sb_engine_read_cb cb, void *ctx) {
  redis_engine *e = (redis_engine *)be;
  op_ctx *o = new_op(e, ctx);
  if (!o) return SB_ENOMEM;
  o->cb.read = cb;
  int r = send_read(e, name, n, from, max, on_read, o);
  if (r) free(o);
  return r;
}

static void on_position(void *ctx, int status, redisReply *r) {
  op_ctx *o = ctx;
  if (o->e->freeing) return free(o);
  if (status != 0 || r->type != REDIS_REPLY_ARRAY || r->elements != 2)
    o->cb.position(o->ctx, SB_EIO, 0, 0);
  else
    o->cb.position(o->ctx, 0, reply_u64(r->element[1]), reply_u64(r->element[0]));
  free(o);
}

/* The position script: KEYS m, x; ARGV P, S, candidate, run_id, stream TTL. */
static int send_position(redis_engine *e, const char *name, size_t n, sb_rconn_reply_cb cb,
                         void *ctx) {
  stream_call c;
  if (stream_begin(e, &c, name, n)) return SB_EINVAL;
  arg_s(&c.a, e->prefix);
  arg(&c.a, name, n);
  arg_u64(&c, sb_random_epoch());
  arg_s(&c.a, sb_rconn_run_id(e->cmd));
  arg_u64(&c, e->o.stream_ttl_ms);
  return call(e, S_position, 2, &c.a, cb, ctx);
}

static int r_position(sb_engine *be, const char *name, size_t n, sb_engine_position_cb cb,
                      void *ctx) {
  redis_engine *e = (redis_engine *)be;
  op_ctx *o = new_op(e, ctx);
  if (!o) return SB_ENOMEM;
  o->cb.position = cb;
  int r = send_position(e, name, n, on_position, o);
  if (r) free(o);
  return r;
}

static int r_position_now(sb_engine *be, const char *name, size_t n, uint64_t *offset,
                          uint64_t *epoch) {
  (void)be, (void)name, (void)n, (void)offset, (void)epoch;
  return SB_ENOTFOUND; /* only asynchronously: the hub passes "unknown" and the scripts fill it */
}

static int r_trim(sb_engine *be, const char *name, size_t n, uint64_t through) {
  redis_engine *e = (redis_engine *)be;
  char m[KEY_MAX], x[KEY_MAX], t[24];
  size_t ml = make_key(e, m, sizeof(m), "", name, n, ":m");
  size_t xl = make_key(e, x, sizeof(x), "", name, n, ":x");
  if (!ml || !xl) return SB_EINVAL;
  snprintf(t, sizeof(t), "%llu", (unsigned long long)through);
  call_args a = {.n = 0};
  arg(&a, m, ml);
  arg(&a, x, xl);
  arg_s(&a, t);
  arg_s(&a, "");
  return call(e, S_trim, 2, &a, on_published_quiet, e);
}

/* ---- sessions ----------------------------------------------------------------------------- */

static void send_token(redis_engine *e, rsess *ss);
static void send_closed(redis_engine *e, rsess *ss);
static int send_reopen(redis_engine *e, rsess *ss);
static void send_probe(redis_engine *e);

typedef struct sess_ctx {
  redis_engine *e;
  char id[23];
} sess_ctx;

static void on_opened(void *ctx, int status, redisReply *r) {
  sess_ctx *c = ctx;
  redis_engine *e = c->e;
  if (e->freeing) return free(c);
  rsess *ss = sb_map_get(&e->sessions, c->id, strlen(c->id));
  free(c);
  if (!ss) return;
  ss->opening = 0;
  ss->gen = status == 0 && r->type == REDIS_REPLY_INTEGER ? (uint64_t)r->integer : 0;
  if (!ss->gen) { /* Redis failed: the connection lives on; the open is sent again after */
    if (ss->close_pending) {  /* the reconnect (reregister_sessions) */
      sb_map_del(&e->sessions, ss->id, strlen(ss->id));
      rsess_free(ss);
    } else {
      ss->groups_lost = 1; /* whatever it joined meanwhile went nowhere */
    }
    return;
  }
  if (ss->token_unsent) send_token(e, ss);
  if (ss->close_pending) return send_closed(e, ss);
  if (ss->groups_lost && e->host.session_lost) {
    ss->groups_lost = 0;
    e->host.session_lost(e->host.hub, ss->id);
  }
}

static int r_session_open(sb_engine *be, const char *conn_id, const char *identity) {
  redis_engine *e = (redis_engine *)be;
  size_t idl = strlen(conn_id);
  if (idl == 0 || idl > 22) return SB_EINVAL;
  e->opens++;
  rsess *ss = sb_map_get(&e->sessions, conn_id, idl);
  if (ss && ss->gen) {
    /* Taken by this node just now (the take moved it here): confirmed, so that the token is
     * spent for good and the session stops expiring (session_take.lua, "Pending takes"). */
    int r = send_reopen(e, ss);
    return r == SB_EIO ? 0 : r; /* Redis away: the re-registration after it confirms */
  }
  if (!ss) {
    ss = calloc(1, sizeof(*ss));
    if (!ss) return SB_ENOMEM;
    memcpy(ss->id, conn_id, idl + 1);
    if ((identity && *identity && !(ss->identity = strdup(identity))) ||
        sb_map_put(&e->sessions, ss->id, idl, ss)) {
      rsess_free(ss);
      return SB_ENOMEM;
    }
  }
  int r = send_reopen(e, ss); /* generation 0: a first open, with ss->identity */
  if (r == 0) return 0;
  if (r == SB_EIO) { /* Redis is unreachable: the connection opens all the same, and the */
    ss->groups_lost = 1; /* session is opened after the reconnect (reregister_sessions) */
    return 0;
  }
  sb_map_del(&e->sessions, ss->id, idl);
  rsess_free(ss);
  return r;
}

/* A group change or a token that was sent but not answered (the link dropped, the command
 * timed out) may not have reached Redis: it is sent again after the reconnect (groups through
 * the session_lost hook, the token with the re-registration). */
static void on_group_done(void *ctx, int status, redisReply *r) {
  sess_ctx *c = ctx;
  if (!c->e->freeing && (status != 0 || r->type == REDIS_REPLY_ERROR)) {
    rsess *ss = sb_map_get(&c->e->sessions, c->id, strlen(c->id));
    if (ss) ss->groups_lost = 1;
  }
  free(c);
}

static void on_token_done(void *ctx, int status, redisReply *r) {
  sess_ctx *c = ctx;
  if (!c->e->freeing && (status != 0 || r->type == REDIS_REPLY_ERROR)) {
    rsess *ss = sb_map_get(&c->e->sessions, c->id, strlen(c->id));
    if (ss && ss->token[0]) ss->token_unsent = 1;
  }
  free(c);
}

static int r_session_group(sb_engine *be, const char *conn_id, const char *group, int joined,
                           uint64_t offset, uint64_t epoch) {
  redis_engine *e = (redis_engine *)be;
  size_t idl = strlen(conn_id), gl = strlen(group);
  char s1[KEY_MAX], s2[KEY_MAX], gm[KEY_MAX], gx[KEY_MAX], stream[260], off[24], ep[24],
      cand[24], ttl[24];
  if (gl + 3 > sizeof(stream)) return SB_EINVAL;
  int sl = snprintf(stream, sizeof(stream), "g:%s", group);
  size_t l1 = make_key(e, s1, sizeof(s1), "s:", conn_id, idl, "");
  size_t l2 = make_key(e, s2, sizeof(s2), "s:", conn_id, idl, ":g");
  size_t l3 = make_key(e, gm, sizeof(gm), "", stream, (size_t)sl, ":m");
  size_t l4 = make_key(e, gx, sizeof(gx), "", stream, (size_t)sl, ":x");
  if (!l1 || !l2 || !l3 || !l4) return SB_EINVAL;
  snprintf(off, sizeof(off), "%llu", (unsigned long long)offset);
  snprintf(ep, sizeof(ep), "%llu", (unsigned long long)epoch);
  snprintf(cand, sizeof(cand), "%llu", (unsigned long long)sb_random_epoch());
  snprintf(ttl, sizeof(ttl), "%u", e->o.stream_ttl_ms);
  call_args a = {.n = 0};
  arg(&a, s1, l1);
  arg(&a, s2, l2);
  arg(&a, gm, l3);
  arg(&a, gx, l4);
  arg_s(&a, e->prefix);
  arg(&a, group, gl);
  arg_s(&a, joined ? "1" : "0");
  arg_s(&a, off);
  arg_s(&a, ep);
  arg_s(&a, cand);
  arg_s(&a, sb_rconn_run_id(e->cmd));
  arg_s(&a, ttl);
  sess_ctx *c = idl < sizeof(c->id) ? malloc(sizeof(*c)) : NULL;
  int r = c ? call(e, S_session_group, 4, &a, on_group_done, c) : SB_ENOMEM;
  if (c && r == 0) {
    c->e = e;
    memcpy(c->id, conn_id, idl + 1);
    return 0;
  }
  free(c);
  rsess *ss = sb_map_get(&e->sessions, conn_id, idl);
  if (ss) ss->groups_lost = 1; /* recorded again once Redis is back (the session_lost hook) */
  return r;
}

static void send_closed(redis_engine *e, rsess *ss) {
  size_t idl = strlen(ss->id);
  char s1[KEY_MAX], s2[KEY_MAX], closed[KEY_MAX], gen[24], now[24], ttl[24], cap[24];
  size_t l1 = make_key(e, s1, sizeof(s1), "s:", ss->id, idl, "");
  size_t l2 = make_key(e, s2, sizeof(s2), "s:", ss->id, idl, ":g");
  int l3 = snprintf(closed, sizeof(closed), "%sclosed", e->prefix);
  snprintf(gen, sizeof(gen), "%llu", (unsigned long long)ss->gen);
  snprintf(now, sizeof(now), "%llu", (unsigned long long)wall_ms());
  snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)e->lim.session_ttl_ms);
  snprintf(cap, sizeof(cap), "%zu", e->lim.max_closed_sessions);
  call_args a = {.n = 0};
  arg(&a, s1, l1);
  arg(&a, s2, l2);
  arg(&a, closed, (size_t)l3);
  arg_s(&a, e->prefix);
  arg(&a, ss->id, idl);
  arg_s(&a, e->node_id);
  arg_s(&a, gen);
  arg_s(&a, now);
  arg_s(&a, ttl);
  arg_s(&a, cap);
  call(e, S_session_closed, 3, &a, on_published_quiet, e);
  sb_map_del(&e->sessions, ss->id, idl);
  rsess_free(ss);
}

static int r_session_closed(sb_engine *be, const char *conn_id) {
  redis_engine *e = (redis_engine *)be;
  rsess *ss = sb_map_get(&e->sessions, conn_id, strlen(conn_id));
  if (!ss) return SB_ENOTFOUND;
  if (!ss->gen) {
    if (ss->opening) { /* the open is not answered yet: closed right after it */
      ss->close_pending = 1;
    } else { /* it never reached Redis: nothing to close there */
      sb_map_del(&e->sessions, ss->id, strlen(ss->id));
      rsess_free(ss);
    }
    return 0;
  }
  send_closed(e, ss);
  return 0;
}

static void send_token(redis_engine *e, rsess *ss) {
  size_t idl = strlen(ss->id);
  char s1[KEY_MAX], tk[KEY_MAX], gen[24];
  size_t l1 = make_key(e, s1, sizeof(s1), "s:", ss->id, idl, "");
  size_t l2 = make_key(e, tk, sizeof(tk), "t:", ss->token, strlen(ss->token), "");
  snprintf(gen, sizeof(gen), "%llu", (unsigned long long)ss->gen);
  call_args a = {.n = 0};
  arg(&a, s1, l1);
  arg(&a, tk, l2);
  arg_s(&a, e->prefix);
  arg(&a, ss->id, idl);
  arg_s(&a, ss->token);
  arg_s(&a, e->node_id);
  arg_s(&a, gen);
  sess_ctx *c = malloc(sizeof(*c));
  if (c && call(e, S_session_token, 2, &a, on_token_done, c) == 0) {
    c->e = e;
    memcpy(c->id, ss->id, idl + 1);
    ss->token_unsent = 0;
    return;
  }
  free(c);
}

static int r_session_token(sb_engine *be, const char *conn_id, const char *token) {
  redis_engine *e = (redis_engine *)be;
  rsess *ss = sb_map_get(&e->sessions, conn_id, strlen(conn_id));
  if (!ss || strlen(token) != 22) return SB_EINVAL;
  memcpy(ss->token, token, 23); /* bound now, or once the session is open in Redis */
  ss->token_unsent = 1;
  if (ss->gen) send_token(e, ss);
  return 0;
}

static void on_taken(void *ctx, int status, redisReply *r) {
  op_ctx *o = ctx;
  redis_engine *e = o->e;
  if (e->freeing) return free(o);
  sb_engine_session_cb cb = o->cb.session;
  void *cctx = o->ctx;
  free(o);
  if (status != 0 || r->type != REDIS_REPLY_ARRAY || r->elements < 1) return cb(cctx, SB_EIO, NULL);
  if (reply_is(r->element[0], "notfound")) return cb(cctx, SB_ENOTFOUND, NULL);
  if (reply_is(r->element[0], "identity")) return cb(cctx, SB_ENGINE_EIDENTITY, NULL);
  /* Taken moments ago and not yet confirmed: a retry too early (503, the client retries). */
  if (reply_is(r->element[0], "pending")) return cb(cctx, SB_EIO, NULL);
  if (!reply_is(r->element[0], "ok") || r->elements != 7 ||
      r->element[6]->type != REDIS_REPLY_ARRAY || r->element[1]->len > 22)
    return cb(cctx, SB_EIO, NULL);
  redisReply *g = r->element[6];
  size_t ng = g->elements / 3;
  sb_session_group stack[16], *groups = ng <= 16 ? stack : malloc(ng * sizeof(*groups));
  char id[23];
  memcpy(id, r->element[1]->str, r->element[1]->len);
  id[r->element[1]->len] = '\0';
  /* This node holds the session now, with the take's generation. */
  rsess *ss = sb_map_get(&e->sessions, id, strlen(id));
  const char *who = r->element[2]->str ? r->element[2]->str : "";
  if (!ss && (ss = calloc(1, sizeof(*ss))) != NULL) {
    memcpy(ss->id, id, sizeof(id));
    if ((*who && !(ss->identity = strdup(who))) ||
        sb_map_put(&e->sessions, ss->id, strlen(ss->id), ss)) {
      rsess_free(ss);
      ss = NULL;
    }
  }
  if (!groups || !ss) {
    if (groups && groups != stack) free(groups);
    return cb(cctx, SB_ENOMEM, NULL);
  }
  ss->gen = reply_u64(r->element[5]);
  ss->close_pending = 0;
  for (size_t i = 0; i < ng; i++) {
    groups[i].name = g->element[3 * i]->str;
    groups[i].offset = reply_u64(g->element[3 * i + 1]);
    groups[i].epoch = reply_u64(g->element[3 * i + 2]);
  }
  sb_session_info info = {ss->id, who, groups, ng};
  cb(cctx, 0, &info);
  if (groups != stack) free(groups);
}

static int r_session_take(sb_engine *be, const char *token, const char *identity,
                          sb_engine_session_cb cb, void *ctx) {
  redis_engine *e = (redis_engine *)be;
  char tk[KEY_MAX], closed[KEY_MAX], now[24], ttl[24];
  size_t l1 = make_key(e, tk, sizeof(tk), "t:", token, strlen(token), "");
  int l2 = snprintf(closed, sizeof(closed), "%sclosed", e->prefix);
  if (!l1) return SB_EINVAL;
  snprintf(now, sizeof(now), "%llu", (unsigned long long)wall_ms());
  snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)e->lim.session_ttl_ms);
  call_args a = {.n = 0};
  arg(&a, tk, l1);
  arg(&a, closed, (size_t)l2);
  arg_s(&a, e->prefix);
  arg_s(&a, token);
  arg_s(&a, identity ? identity : "");
  arg_s(&a, e->node_id);
  arg_s(&a, now);
  arg_s(&a, ttl);
  /* A take not confirmed for a command timeout may be retried with the same token: its answer
   * was lost and the client was told to retry (session_take.lua, "Pending takes"). */
  char retry[24];
  snprintf(retry, sizeof(retry), "%u", e->o.command_timeout_ms);
  arg_s(&a, retry);
  op_ctx *o = new_op(e, ctx);
  if (!o) return SB_ENOMEM;
  o->cb.session = cb;
  int r = call(e, S_session_take, 2, &a, on_taken, o);
  if (r) free(o);
  return r;
}

/* ---- presence ----------------------------------------------------------------------------- */

static void rpres_free(rpres *p) {
  for (size_t i = 0; i < p->members.cap; i++)
    if (p->members.slots[i].key) free(p->members.slots[i].val);
  sb_map_free(&p->members);
  free(p);
}

/* A group's presence is forgotten once nothing is left to tell Redis about it. */
static void rpres_settle(rpres *p) {
  if (p->members.len || p->pending || p->dirty) return;
  sb_map_del(&p->e->presence, p->name, p->name_len);
  rpres_free(p);
}

static void on_presence_done(void *ctx, int status, redisReply *r) {
  rpres *p = ctx;
  p->pending--;
  if (p->e->freeing) return;
  if (status != 0 || !r || r->type == REDIS_REPLY_ERROR) p->dirty = 1; /* the tick syncs it */
  rpres_settle(p);
}

/* The presence script for `p` with `op` and member/identity pairs (2 * npairs strings). */
static int presence_call(redis_engine *e, rpres *p, const char *op, const char *const *pairs,
                         size_t npairs) {
  char mine[KEY_MAX], counts[KEY_MAX], set[KEY_MAX], ch[KEY_MAX], suffix[80];
  snprintf(suffix, sizeof(suffix), ":p:%s", e->node_id);
  size_t l1 = make_key(e, mine, sizeof(mine), "", p->name, p->name_len, suffix);
  size_t l2 = make_key(e, counts, sizeof(counts), "", p->name, p->name_len, ":pc");
  size_t l3 = make_key(e, set, sizeof(set), "node:", e->node_id, strlen(e->node_id), ":p");
  size_t l4 = channel_of(e, ch, sizeof(ch), p->name, p->name_len);
  if (!l1 || !l2 || !l3 || !l4) return SB_EINVAL;
  /* An add or a remove (one pair) fits on the stack; a sync's whole set is allocated. */
  size_t argc = 6 + 2 * npairs;
  const char *sv[8];
  size_t sl[8];
  const char **v = argc <= 8 ? sv : malloc(argc * sizeof(*v));
  size_t *l = argc <= 8 ? sl : malloc(argc * sizeof(*l));
  int r = SB_ENOMEM;
  if (v && l) {
    const char *head[6] = {mine, counts, set, ch, p->name, op};
    size_t hl[6] = {l1, l2, l3, l4, p->name_len, strlen(op)};
    for (size_t i = 0; i < argc; i++) {
      v[i] = i < 6 ? head[i] : pairs[i - 6];
      l[i] = i < 6 ? hl[i] : strlen(v[i]);
    }
    r = sb_rconn_script(e->cmd, S_presence, 4, (int)argc, v, l, on_presence_done, p);
    if (r == 0) p->pending++;
  }
  if (v != sv) free(v);
  if (l != sl) free(l);
  return r;
}

/* Tells Redis exactly this node's memberships of the group (after anything went wrong). */
static int presence_sync(redis_engine *e, rpres *p) {
  size_t n = p->members.len, k = 0;
  const char **pairs = malloc((2 * n + 1) * sizeof(*pairs));
  if (!pairs) return SB_ENOMEM;
  for (size_t i = 0; i < p->members.cap; i++) {
    if (!p->members.slots[i].key) continue;
    pairs[k++] = p->members.slots[i].key;
    pairs[k++] = p->members.slots[i].val;
  }
  int r = presence_call(e, p, "s", pairs, n);
  free(pairs);
  return r;
}

/* Syncs every group marked dirty (all of them after a reconnect: Redis may have lost them). */
static void presence_resync(redis_engine *e, int all) {
  if (!sb_rconn_up(e->cmd)) return;
  for (size_t i = 0; i < e->presence.cap; i++) {
    rpres *p = e->presence.slots[i].key ? e->presence.slots[i].val : NULL;
    if (!p || !(p->dirty || all)) continue;
    p->dirty = presence_sync(e, p) != 0; /* settles in its answer, never while walking */
  }
}

static int r_presence(sb_engine *be, const char *stream, size_t slen, uint64_t member,
                      const char *identity, int joined) {
  redis_engine *e = (redis_engine *)be;
  char m[17];
  snprintf(m, sizeof(m), "%016llx", (unsigned long long)member);
  if (!identity) identity = "";
  rpres *p = sb_map_get(&e->presence, stream, slen);
  if (!p) {
    if (!joined) return SB_ENOTFOUND;
    if (!(p = calloc(1, sizeof(*p) + slen + 1))) return SB_ENOMEM;
    p->e = e;
    memcpy(p->name, stream, slen);
    p->name_len = slen;
    sb_map_init(&p->members, &sb_default_allocator);
    if (sb_map_put(&e->presence, p->name, slen, p)) {
      free(p);
      return SB_ENOMEM;
    }
  }
  if (joined) {
    char *id = strdup(identity), *old = sb_map_get(&p->members, m, 16);
    if (!id || sb_map_put(&p->members, m, 16, id)) {
      free(id);
      rpres_settle(p);
      return SB_ENOMEM;
    }
    free(old);
  } else {
    char *old = sb_map_del(&p->members, m, 16);
    if (!old) return SB_ENOTFOUND;
    free(old);
  }
  /* A group already waiting for a sync gets it whole (the tick); else the one change. */
  const char *pair[2] = {m, identity};
  if (p->dirty || presence_call(e, p, joined ? "a" : "r", pair, 1) != 0) p->dirty = 1;
  rpres_settle(p);
  return 0;
}

static void on_presence_got(void *ctx, int status, redisReply *r) {
  op_ctx *o = ctx;
  if (o->e->freeing) return free(o);
  if (status != 0 || r->type != REDIS_REPLY_ARRAY) {
    o->cb.presence(o->ctx, SB_EIO, NULL, 0);
    return free(o);
  }
  size_t n = r->elements / 2, k = 0;
  sb_engine_presence *v = calloc(n ? n : 1, sizeof(*v));
  if (!v) {
    o->cb.presence(o->ctx, SB_ENOMEM, NULL, 0);
    return free(o);
  }
  for (size_t i = 0; i < n; i++) {
    const redisReply *id = r->element[2 * i];
    uint64_t count = reply_u64(r->element[2 * i + 1]);
    if (id->type != REDIS_REPLY_STRING || count == 0 || count > (1ull << 53)) continue;
    v[k++] = (sb_engine_presence){id->str, id->len, count};
  }
  o->cb.presence(o->ctx, 0, v, k);
  free(v);
  free(o);
}

/* The group's counts per identity: one HGETALL (presence.lua keeps them). */
static int r_presence_get(sb_engine *be, const char *stream, size_t slen,
                          sb_engine_presence_cb cb, void *ctx) {
  redis_engine *e = (redis_engine *)be;
  char counts[KEY_MAX];
  size_t cl = make_key(e, counts, sizeof(counts), "", stream, slen, ":pc");
  if (!cl) return SB_EINVAL;
  call_args a = {.n = 0};
  arg_s(&a, "HGETALL");
  arg(&a, counts, cl);
  op_ctx *o = new_op(e, ctx);
  if (!o) return SB_ENOMEM;
  o->cb.presence = cb;
  int r = sb_rconn_command(e->cmd, a.n, a.v, a.l, on_presence_got, o);
  if (r) free(o);
  return r;
}

/* ---- the tops of the subscribed streams ----------------------------------------------------- */

/* A tops call: the streams it asked about, by name (one may be gone when the answer comes). */
typedef struct tops_ctx {
  redis_engine *e;
  size_t n;
  size_t len[TOPS_BATCH];
  char *name[TOPS_BATCH];
  char buf[]; /* the names */
} tops_ctx;

/* Each stream whose head in Redis is past what this node delivered (same epoch), or whose
 * epoch changed, reads the rest from its history: a message whose pub/sub copy was lost is
 * delivered even when nothing follows it. */
static void on_tops(void *ctx, int status, redisReply *r) {
  tops_ctx *t = ctx;
  redis_engine *e = t->e;
  if (!e->freeing && status == 0 && r->type == REDIS_REPLY_ARRAY && r->elements == 2 * t->n) {
    for (size_t i = 0; i < t->n; i++) {
      rstream *s = sb_map_get(&e->streams, t->name[i], t->len[i]);
      uint64_t epoch = reply_u64(r->element[2 * i]), head = reply_u64(r->element[2 * i + 1]);
      if (!s || s->gone || !s->ready || !s->live || s->filling || epoch == 0) continue;
      if (epoch != s->epoch || head > s->offset) start_fill(s);
    }
  }
  free(t);
}

static void send_tops(redis_engine *e, rstream **v, size_t n) {
  size_t bytes = 0;
  for (size_t i = 0; i < n; i++) bytes += v[i]->name_len;
  tops_ctx *t = malloc(sizeof(*t) + bytes + 1);
  const char **argv = malloc(n * sizeof(*argv));
  size_t *lens = malloc(n * sizeof(*lens));
  char (*keys)[KEY_MAX] = malloc(n * sizeof(*keys));
  if (t && argv && lens && keys) {
    t->e = e;
    t->n = n;
    char *w = t->buf;
    size_t k = 0;
    for (size_t i = 0; i < n; i++) {
      memcpy(w, v[i]->name, v[i]->name_len);
      t->name[i] = w;
      t->len[i] = v[i]->name_len;
      w += v[i]->name_len;
      lens[k] = make_key(e, keys[k], KEY_MAX, "", v[i]->name, v[i]->name_len, ":m");
      argv[k] = keys[k];
      if (lens[k]) k++;
    }
    if (k == n && sb_rconn_script(e->cmd, S_tops, (int)n, (int)n, argv, lens, on_tops, t) == 0)
      t = NULL; /* the answer frees it */
  }
  free(t);
  free(argv);
  free(lens);
  free(keys);
}

/* Every TOPS_MS, in calls of TOPS_BATCH streams. */
static void check_tops(redis_engine *e) {
  rstream *v[TOPS_BATCH];
  size_t n = 0;
  for (size_t i = 0; i < e->streams.cap; i++) {
    rstream *s = e->streams.slots[i].key ? e->streams.slots[i].val : NULL;
    if (!s || s->gone || !s->ready || !s->live || s->filling) continue;
    v[n++] = s;
    if (n == TOPS_BATCH) {
      send_tops(e, v, n);
      n = 0;
    }
  }
  if (n) send_tops(e, v, n);
}

/* ---- sync, housekeeping ------------------------------------------------------------------- */

static void on_synced(void *ctx, int status) {
  op_ctx *o = ctx;
  if (o->e->freeing) return free(o);
  o->cb.sync(o->ctx, status);
  free(o);
}

static int r_sync(sb_engine *be, void (*cb)(void *ctx, int status), void *ctx) {
  redis_engine *e = (redis_engine *)be;
  op_ctx *o = new_op(e, ctx);
  if (!o) return SB_ENOMEM;
  o->cb.sync = cb;
  int r = sb_rconn_barrier(e->sub, on_synced, o);
  if (r) free(o);
  return r;
}

static void reregister_sessions(redis_engine *e);

/* 1: this node was not registered, or late (node_expire may have closed its sessions and
 * taken its presence out): it registers everything again, unless it is its first beat on
 * this link (on_cmd_state does that). */
static void on_beat(void *ctx, int status, redisReply *r) {
  redis_engine *e = ctx;
  if (e->freeing || status != 0 || r->type != REDIS_REPLY_INTEGER) return;
  e->beat_answered = 1;
  if (r->integer == 1 && e->registered) {
    reregister_sessions(e);
    presence_resync(e, 1);
  }
  e->registered = 1;
}

static void heartbeat(redis_engine *e) {
  char nodes[KEY_MAX], info[KEY_MAX], closed[KEY_MAX], started[24], now[24], ttl[24], sttl[24];
  int l1 = snprintf(nodes, sizeof(nodes), "%snodes", e->prefix);
  size_t l2 = make_key(e, info, sizeof(info), "node:", e->node_id, strlen(e->node_id), ":i");
  int l3 = snprintf(closed, sizeof(closed), "%sclosed", e->prefix);
  snprintf(started, sizeof(started), "%llu", (unsigned long long)e->started_ms);
  snprintf(now, sizeof(now), "%llu", (unsigned long long)wall_ms());
  snprintf(ttl, sizeof(ttl), "%u", e->o.node_ttl_ms);
  snprintf(sttl, sizeof(sttl), "%llu", (unsigned long long)e->lim.session_ttl_ms);
  /* This process's first beats (until one is answered) also let a previous run of this node
   * id go of what it held (node_heartbeat.lua, "A new run of a node id"). */
  int first = !e->beat_answered;
  call_args a = {.n = 0};
  arg(&a, nodes, (size_t)l1);
  arg(&a, info, l2);
  if (first) arg(&a, closed, (size_t)l3);
  arg_s(&a, e->node_id);
  arg_s(&a, e->public_url);
  arg_s(&a, started);
  arg_s(&a, now);
  arg_s(&a, ttl);
  if (first) {
    arg_s(&a, "1");
    arg_s(&a, e->prefix);
    arg_s(&a, sttl);
  }
  call(e, S_node_heartbeat, first ? 3 : 2, &a, on_beat, e);
}

static void expire_nodes(redis_engine *e) {
  char nodes[KEY_MAX], closed[KEY_MAX], now[24], ttl[24], cap[24];
  int l1 = snprintf(nodes, sizeof(nodes), "%snodes", e->prefix);
  int l2 = snprintf(closed, sizeof(closed), "%sclosed", e->prefix);
  snprintf(now, sizeof(now), "%llu", (unsigned long long)wall_ms());
  snprintf(ttl, sizeof(ttl), "%llu", (unsigned long long)e->lim.session_ttl_ms);
  snprintf(cap, sizeof(cap), "%zu", e->lim.max_closed_sessions);
  call_args a = {.n = 0};
  arg(&a, nodes, (size_t)l1);
  arg(&a, closed, (size_t)l2);
  arg_s(&a, e->prefix);
  arg_s(&a, now);
  arg_s(&a, ttl);
  arg_s(&a, cap);
  arg_s(&a, "1000");
  call(e, S_node_expire, 2, &a, on_published_quiet, e);
}

static void r_tick(sb_engine *be) {
  redis_engine *e = (redis_engine *)be;
  if (!sb_rconn_up(e->cmd)) return;
  uint64_t now = uv_now(e->loop);
  /* After a burst of connections (a reconnect storm after a node died), what was in flight
   * (commands, replies, contexts) leaves free memory in the heap; once the burst is over
   * (nothing pending, before this tick's own commands) the free pages are handed back. */
  if (e->opens >= 4096 && sb_rconn_pending(e->cmd) == 0) {
    e->opens = 0;
    sb_alloc_give_back(&sb_default_allocator);
  }

  if (now - e->last_beat >= e->o.heartbeat_ms) {
    e->last_beat = now;
    heartbeat(e);
    if (!e->probe_waiting && sb_rconn_up(e->sub)) send_probe(e);
  }
  /* A probe not back within two command timeouts: the pub/sub link is deaf (a proxy that
   * stopped forwarding, CLIENT KILL that the socket did not report). Made again. */
  if (e->probe_waiting && now - e->probe_sent > 2u * e->o.command_timeout_ms) {
    e->probe_waiting = 0;
    sb_rconn_reset(e->sub, "health probe lost");
  }
  if (now - e->last_expire >= 1000) {
    e->last_expire = now;
    expire_nodes(e);
    presence_resync(e, 0); /* groups whose last call failed */
  }
  if ((e->tops_now || now - e->last_tops >= TOPS_MS) && sb_rconn_up(e->sub)) {
    e->last_tops = now;
    e->tops_now = 0;
    check_tops(e);
  }
  /* A quiet group keeps its epoch while this node has members in it: its keys would expire
   * stream_ttl_ms after their last use, so the position script touches them twice per TTL. */
  if (now - e->last_refresh >= e->o.stream_ttl_ms / 2) {
    e->last_refresh = now;
    for (size_t i = 0; i < e->streams.cap; i++) {
      rstream *s = e->streams.slots[i].key ? e->streams.slots[i].val : NULL;
      if (s && !s->direct && !s->gone)
        send_position(e, s->name, s->name_len, on_published_quiet, e);
    }
  }
}

/* The answer to a re-registration: nil means the session was resumed elsewhere meanwhile
 * (while this node could not hear it): its connection here must go (4000). */
static void on_reregistered(void *ctx, int status, redisReply *r) {
  sess_ctx *c = ctx;
  redis_engine *e = c->e;
  if (e->freeing || status != 0) return free(c);
  rsess *ss = sb_map_get(&e->sessions, c->id, strlen(c->id));
  if (ss && r->type == REDIS_REPLY_NIL) {
    sb_map_del(&e->sessions, ss->id, strlen(ss->id));
    rsess_free(ss);
    if (e->host.taken) e->host.taken(e->host.hub, c->id);
  } else if (ss && r->type == REDIS_REPLY_INTEGER) {
    ss->gen = (uint64_t)r->integer;
    if (ss->token_unsent) send_token(e, ss);
    if (ss->groups_lost && e->host.session_lost) {
      ss->groups_lost = 0;
      e->host.session_lost(e->host.hub, c->id);
    }
  } else if (ss && r->type == REDIS_REPLY_ARRAY && r->elements == 2 &&
             reply_is(r->element[1], "new")) {
    /* Redis lost the session and it was made again: its token and groups go back too (the
     * groups' positions are the streams' new ones: their old epochs are gone with them). */
    ss->gen = reply_u64(r->element[0]);
    if (ss->token[0]) send_token(e, ss);
    ss->groups_lost = 0;
    if (e->host.session_lost) e->host.session_lost(e->host.hub, c->id);
  }
  free(c);
}

/* The open script for a session this node holds: with its generation (a re-registration,
 * or the confirmation of a take: nil means it was resumed elsewhere meanwhile), or a first
 * open (generation 0: it never reached Redis). */
static int send_reopen(redis_engine *e, rsess *ss) {
  size_t idl = strlen(ss->id);
  char s1[KEY_MAX], s2[KEY_MAX], closed[KEY_MAX], gen[24];
  size_t l1 = make_key(e, s1, sizeof(s1), "s:", ss->id, idl, "");
  size_t l2 = make_key(e, s2, sizeof(s2), "s:", ss->id, idl, ":g");
  int l3 = snprintf(closed, sizeof(closed), "%sclosed", e->prefix);
  snprintf(gen, sizeof(gen), "%llu", (unsigned long long)ss->gen);
  call_args a = {.n = 0};
  arg(&a, s1, l1);
  arg(&a, s2, l2);
  arg(&a, closed, (size_t)l3);
  arg_s(&a, e->prefix);
  arg(&a, ss->id, idl);
  arg_s(&a, ss->identity ? ss->identity : ""); /* a first open, or Redis lost the session */
  arg_s(&a, e->node_id);
  arg_s(&a, ss->gen ? gen : "");
  sess_ctx *c = malloc(sizeof(*c));
  if (!c) return SB_ENOMEM;
  c->e = e;
  memcpy(c->id, ss->id, idl + 1);
  int r = call(e, S_session_open, 3, &a, ss->gen ? on_reregistered : on_opened, c);
  if (r != 0) {
    free(c);
    return r;
  }
  if (!ss->gen) ss->opening = 1;
  return 0;
}

/* After a Redis reconnect, every session this node holds is registered again with the
 * generation it holds (Redis may have restarted without them, or a take may have happened
 * while this node was cut off), and a session whose open never got through is opened. */
static void reregister_sessions(redis_engine *e) {
  for (size_t i = 0; i < e->sessions.cap; i++) {
    rsess *ss = e->sessions.slots[i].key ? e->sessions.slots[i].val : NULL;
    /* An open in flight was sent after the heartbeat or the reconnect that asks for this:
     * it registers the session itself (sending another would bump its generation). */
    if (ss && !ss->close_pending && !ss->opening && send_reopen(e, ss) != 0) return;
  }
}

static void on_cmd_state(void *user, int up) {
  redis_engine *e = user;
  if (!up) return;
  e->last_beat = uv_now(e->loop);
  e->registered = 0; /* this beat may answer 1: what follows registers everything anyway */
  heartbeat(e); /* first, so that node_expire never sweeps a node that holds sessions */
  /* Every time, the first too: connections that opened before Redis ever answered hold
   * sessions that were never opened there. */
  reregister_sessions(e);
  presence_resync(e, 1);
  if (e->cmd_ups++ > 0) {
    /* A fill the pub/sub link asked for while this one was still down could not be sent:
     * the tops of every subscribed stream are checked now, not in TOPS_MS. */
    e->tops_now = 1;
  }
}

/* The pub/sub link came back (its channels are subscribed again): whatever was published
 * while it was down is read from the history, so a lost link costs the clients nothing. */
static void on_sub_state(void *user, int up) {
  redis_engine *e = user;
  e->probe_waiting = 0;
  if (!up || e->sub_ups++ == 0) return;
  for (size_t i = 0; i < e->streams.cap; i++) {
    rstream *s = e->streams.slots[i].key ? e->streams.slots[i].val : NULL;
    if (s && s->ready && !s->filling) start_fill(s);
  }
}

static void send_probe(redis_engine *e) {
  snprintf(e->probe, sizeof(e->probe), "h%llu", (unsigned long long)sb_random_epoch());
  call_args a = {.n = 0};
  arg_s(&a, "PUBLISH");
  arg(&a, e->node_channel, e->node_channel_len);
  arg_s(&a, e->probe);
  if (sb_rconn_command(e->cmd, a.n, a.v, a.l, on_published_quiet, e) == 0) {
    e->probe_sent = uv_now(e->loop);
    e->probe_waiting = 1;
  }
}

static void r_attach(sb_engine *be, const sb_engine_host *host) {
  redis_engine *e = (redis_engine *)be;
  if (!host) {
    memset(&e->host, 0, sizeof(e->host));
    return;
  }
  e->host = *host;
  e->host.limits = NULL;
  if (host->limits) e->lim = *host->limits;
}

static void on_nodes(void *ctx, int status, redisReply *r) {
  op_ctx *o = ctx;
  if (o->e->freeing) return free(o);
  if (status != 0 || r->type != REDIS_REPLY_ARRAY) {
    o->cb.nodes(o->ctx, SB_EIO, NULL, 0);
    return free(o);
  }
  size_t n = r->elements / 2;
  sb_engine_node *v = calloc(n ? n : 1, sizeof(*v));
  if (!v) {
    o->cb.nodes(o->ctx, SB_ENOMEM, NULL, 0);
    return free(o);
  }
  for (size_t i = 0; i < n; i++) {
    v[i].id = r->element[2 * i]->str ? r->element[2 * i]->str : "";
    v[i].url = r->element[2 * i + 1]->str ? r->element[2 * i + 1]->str : "";
  }
  o->cb.nodes(o->ctx, 0, v, n);
  free(v);
  free(o);
}

static int r_nodes(sb_engine *be, sb_engine_nodes_cb cb, void *ctx) {
  redis_engine *e = (redis_engine *)be;
  char nodes[KEY_MAX], now[24];
  int l1 = snprintf(nodes, sizeof(nodes), "%snodes", e->prefix);
  snprintf(now, sizeof(now), "%llu", (unsigned long long)wall_ms());
  call_args a = {.n = 0};
  arg(&a, nodes, (size_t)l1);
  arg_s(&a, e->prefix);
  arg_s(&a, now);
  op_ctx *o = new_op(e, ctx);
  if (!o) return SB_ENOMEM;
  o->cb.nodes = cb;
  int r = call(e, S_nodes, 1, &a, on_nodes, o);
  if (r) free(o);
  return r;
}

static void r_health(sb_engine *be, sb_engine_health *out) {
  redis_engine *e = (redis_engine *)be;
  out->commands = sb_rconn_up(e->cmd);
  out->pubsub = sb_rconn_up(e->sub);
  out->up = out->commands && out->pubsub;
  out->error = *sb_rconn_error(e->cmd) ? sb_rconn_error(e->cmd) : sb_rconn_error(e->sub);
}

static void r_free(sb_engine *be) { sb_redis_engine_free(be); }

static const sb_engine_ops redis_ops = {
    .name = "redis",
    .attach = r_attach,
    .publish = r_publish,
    .subscribe = r_subscribe,
    .unsubscribe = r_unsubscribe,
    .read = r_read,
    .trim = r_trim,
    .position = r_position,
    .position_now = r_position_now,
    .session_open = r_session_open,
    .session_group = r_session_group,
    .session_closed = r_session_closed,
    .session_token = r_session_token,
    .session_take = r_session_take,
    .presence = r_presence,
    .presence_get = r_presence_get,
    .sync = r_sync,
    .nodes = r_nodes,
    .health = r_health,
    .tick = r_tick,
    .free = r_free,
};

/* ---- the public API ----------------------------------------------------------------------- */

void sb_redis_options_init(sb_redis_options *o) {
  memset(o, 0, sizeof(*o));
  o->url = "redis://127.0.0.1:6379";
  o->prefix = "sb:";
  o->heartbeat_ms = 1000;
  o->node_ttl_ms = 5000;
  o->command_timeout_ms = 2000;
  o->stream_ttl_ms = 24u * 3600u * 1000u;
}

int sb_redis_engine_new(sb_engine **out, struct uv_loop_s *loop, const sb_redis_options *opts,
                        char *err, size_t errlen) {
  *out = NULL;
  if (err && errlen) err[0] = '\0';
  if (!loop || !opts) return SB_EINVAL;
  redis_engine *e = calloc(1, sizeof(*e));
  if (!e) return SB_ENOMEM;
  e->base.ops = &redis_ops;
  e->loop = loop;
  e->o = *opts;
  sb_redis_options def;
  sb_redis_options_init(&def);
  if (!e->o.url) e->o.url = def.url;
  if (!e->o.heartbeat_ms) e->o.heartbeat_ms = def.heartbeat_ms;
  if (!e->o.node_ttl_ms) e->o.node_ttl_ms = def.node_ttl_ms;
  if (!e->o.command_timeout_ms) e->o.command_timeout_ms = def.command_timeout_ms;
  if (!e->o.stream_ttl_ms) e->o.stream_ttl_ms = def.stream_ttl_ms;
  snprintf(e->prefix, sizeof(e->prefix), "%s", e->o.prefix ? e->o.prefix : def.prefix);
  if (e->o.node_id && *e->o.node_id) {
    if (strlen(e->o.node_id) >= sizeof(e->node_id)) {
      free(e);
      if (err) snprintf(err, errlen, "node id too long (at most 63 bytes)");
      return SB_EINVAL;
    }
    snprintf(e->node_id, sizeof(e->node_id), "%s", e->o.node_id);
  } else if (sb_random_id(e->node_id) != 0) {
    free(e);
    return SB_EIO;
  }
  snprintf(e->public_url, sizeof(e->public_url), "%s", e->o.public_url ? e->o.public_url : "");
  e->o.url = NULL; /* copied into the connections */
  e->node_channel_len =
      make_key(e, e->node_channel, sizeof(e->node_channel), "node:", e->node_id,
               strlen(e->node_id), "");
  e->lim.history_max = 1000;
  e->lim.history_age_ms = 5 * 60 * 1000;
  e->lim.session_ttl_ms = 5 * 60 * 1000;
  e->lim.max_closed_sessions = 100000;
  e->started_ms = wall_ms();
  sb_map_init_borrowed(&e->streams, &sb_default_allocator);
  sb_map_init(&e->channels, &sb_default_allocator);
  sb_map_init_borrowed(&e->sessions, &sb_default_allocator);
  sb_map_init_borrowed(&e->presence, &sb_default_allocator);
  sb_rconn_options co = {0};
  co.url = opts->url ? opts->url : def.url;
  co.command_timeout_ms = e->o.command_timeout_ms;
  co.scripts = script_text;
  co.nscripts = S_COUNT;
  co.on_state = on_cmd_state;
  co.user = e;
  int r = sb_rconn_new(&e->cmd, loop, &co, err, errlen);
  if (r == 0) {
    sb_rconn_options so = {0};
    so.url = co.url;
    so.pubsub = 1;
    so.command_timeout_ms = e->o.command_timeout_ms;
    so.on_message = on_sub_message;
    so.on_state = on_sub_state;
    so.user = e;
    r = sb_rconn_new(&e->sub, loop, &so, err, errlen);
    if (r == 0) r = sb_rconn_subscribe(e->sub, e->node_channel, e->node_channel_len);
  }
  if (r != 0) {
    sb_rconn_free(e->sub);
    sb_rconn_free(e->cmd);
    sb_map_free(&e->streams);
    sb_map_free(&e->channels);
    sb_map_free(&e->sessions);
    sb_map_free(&e->presence);
    free(e);
    return r;
  }
  *out = &e->base;
  return 0;
}

void sb_redis_engine_free(sb_engine *be) {
  redis_engine *e = (redis_engine *)be;
  if (!e) return;
  e->freeing = 1;
  memset(&e->host, 0, sizeof(e->host));
  /* Pending commands fail now, into callbacks that only free their contexts. */
  sb_rconn_free(e->cmd);
  sb_rconn_free(e->sub);
  for (size_t i = 0; i < e->streams.cap; i++)
    if (e->streams.slots[i].key) free_stream(e->streams.slots[i].val);
  for (size_t i = 0; i < e->sessions.cap; i++)
    if (e->sessions.slots[i].key) rsess_free(e->sessions.slots[i].val);
  for (size_t i = 0; i < e->presence.cap; i++)
    if (e->presence.slots[i].key) rpres_free(e->presence.slots[i].val);
  sb_map_free(&e->streams);
  sb_map_free(&e->channels);
  sb_map_free(&e->sessions);
  sb_map_free(&e->presence);
  free(e);
}

const char *sb_redis_engine_node_id(const sb_engine *be) {
  return be ? ((const redis_engine *)be)->node_id : NULL;
}

int sb_redis_engine_up(const sb_engine *be) {
  const redis_engine *e = (const redis_engine *)be;
  return e && sb_rconn_up(e->cmd) && sb_rconn_up(e->sub);
}
