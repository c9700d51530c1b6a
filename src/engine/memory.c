/*
 * memory.c — the memory engine: streams, history and sessions of one node, in this process.
 *
 * Each stream keeps its history in a ring buffer of at most history_max records, and drops
 * records older than history_age_ms whenever it is touched and on every tick. A stream's epoch
 * is drawn when the stream is created, so a restarted node (or a stream that was dropped and
 * made again) answers with a new epoch and clients learn that their positions mean nothing
 * here.
 *
 * Lifetimes. A stream lives as long as anything can hold a position in it:
 *   - a subscriber (this node has members of the group, or the connection is open), or
 *   - a session that refers to it: each group of a session counts one reference on the
 *     group's stream (its join position is in that stream), and every session holds its own
 *     direct stream ("c:<id>") until the session goes, or
 *   - history still kept (not yet aged out, trimmed or pushed out by newer records).
 * A stream with none of these is dropped by the next tick. That loses nothing: no session can
 * name it in a resume (only a session's own streams are replayed), and it holds no message.
 * So a quiet group keeps its epoch for as long as a session of one of its members lives, and
 * a stream that was published to once and then forgotten by everyone costs memory only for
 * history_age_ms. Sessions live while their connection is open, and after it closes for
 * session_ttl_ms; at most max_closed_sessions closed ones are kept, oldest evicted first. The
 * closed sessions are a list in close order, so expiry and eviction both take from its front.
 *
 * Memory. After a tick that freed much (the streams and sessions fell below half of their
 * count at the last such point), glibc's malloc_trim hands the freed pages back to the
 * system: the freed blocks are small and scattered, so free() alone would keep them resident.
 *
 * Callbacks fire synchronously: everything is in memory.
 */
#include <stddef.h>
#include <stdio.h>
#include <string.h>

#include "common/map.h"
#include "engine/engine.h"

typedef struct mem_rec {
  uint64_t offset, time_ms;
  uint8_t *data;
  size_t len;
} mem_rec;

typedef struct mem_stream {
  struct mem_stream *prev, *next; /* every stream, for the tick */
  uint64_t epoch;
  uint64_t head; /* last offset assigned */
  mem_rec *ring;
  size_t cap, start, count;
  unsigned subscribers; /* subscribe calls not undone yet */
  unsigned refs;        /* sessions that refer to the stream (see the top) */
  uint32_t name_len;
  char name[]; /* NUL-terminated; the key of the streams map (borrowed) */
} mem_stream;

/* A session is kept small (there is one per connection, open or resumable): the id and the
 * token are inline and are the keys of the two maps (borrowed), the identity is NULL when
 * anonymous, and the groups are one packed buffer: per group its NUL-terminated name and the
 * stream position at the join (offset, epoch: 16 bytes, unaligned). */
typedef struct mem_session {
  struct mem_session *prev, *next; /* the closed list (oldest first); unused while open */
  char conn_id[23];
  char token[23];     /* "" when none */
  /* When it closed: the low 32 bits of the clock in ms, compared by unsigned difference (a
   * closed session never lives longer than session_ttl_ms, far less than 49 days); 0 while a
   * connection holds the session. 32 bits and this order keep the struct at 88 bytes, one
   * malloc size class below 96: there is one session per connection. */
  uint32_t closed_at;
  uint32_t groups_len;
  char *identity;     /* NULL: anonymous */
  char *groups;       /* "a\0" + 16 bytes, "b\0" + 16 bytes, ... */
} mem_session;

/* Milliseconds since a session closed. */
static uint32_t closed_for(uint64_t now, const mem_session *ss) {
  return (uint32_t)now - ss->closed_at;
}

typedef struct mem_engine {
  sb_engine base;
  const sb_allocator *a;
  sb_engine_limits lim;
  sb_map streams;  /* name → mem_stream */
  sb_map sessions; /* conn id → mem_session */
  sb_map tokens;   /* token → mem_session */
  sb_map presence; /* group stream → sb_map* (identity → its connections, as uintptr_t) */
  mem_stream *all; /* every stream */
  mem_session *closed_first, *closed_last;
  size_t nclosed;
  size_t trim_mark; /* streams + sessions when memory was last handed back (or at the peak) */
  void *hub;
  sb_engine_deliver_cb deliver;
  sb_engine_presence_event_cb presence_event;
  uint64_t (*now)(void *);
} mem_engine;

static uint64_t now_ms(mem_engine *m) { return m->now ? m->now(m->hub) : 0; }

static char *dup_str(const sb_allocator *a, const char *s) {
  size_t n = strlen(s) + 1;
  char *d = sb_malloc(a, n);
  if (d) memcpy(d, s, n);
  return d;
}

/* ---- streams -------------------------------------------------------------------------- */

static void drop_front(mem_engine *m, mem_stream *s) {
  mem_rec *r = &s->ring[s->start];
  sb_free(m->a, r->data);
  r->data = NULL;
  s->start = (s->start + 1) % s->cap;
  s->count--;
}

static void expire(mem_engine *m, mem_stream *s, uint64_t now) {
  while (s->count > 0 && m->lim.history_age_ms &&
         now - s->ring[s->start].time_ms > m->lim.history_age_ms)
    drop_front(m, s);
}

static mem_stream *get_stream(mem_engine *m, const char *name, size_t n, int create) {
  mem_stream *s = sb_map_get(&m->streams, name, n);
  if (s || !create) return s;
  if (n > UINT32_MAX) return NULL;
  /* The name starts inside the struct's tail padding: allocated from offsetof, not sizeof, so
   * that a connection's direct stream ("c:" + 22) fits one malloc size class lower. */
  s = sb_malloc(m->a, offsetof(mem_stream, name) + n + 1);
  if (!s) return NULL;
  memset(s, 0, offsetof(mem_stream, name));
  memcpy(s->name, name, n);
  s->name[n] = '\0';
  s->name_len = (uint32_t)n;
  s->epoch = sb_random_epoch();
  if (sb_map_put(&m->streams, s->name, n, s)) {
    sb_free(m->a, s);
    return NULL;
  }
  s->next = m->all;
  if (m->all) m->all->prev = s;
  m->all = s;
  return s;
}

static void drop_stream(mem_engine *m, mem_stream *s) {
  if (s->prev) s->prev->next = s->next;
  else m->all = s->next;
  if (s->next) s->next->prev = s->prev;
  sb_map_del(&m->streams, s->name, s->name_len);
  while (s->count) drop_front(m, s);
  sb_free(m->a, s->ring);
  sb_free(m->a, s);
}

/* Finds (or, to take a reference, creates) the stream "<kind>:<name>" and adds `delta` to
 * its references. The hub's stream names fit the stack buffer (at most 256 bytes); a longer
 * one is built on the heap, and if that fails a release is lost: the stream is then kept until
 * the engine is freed, which is safe, only not frugal. */
static int stream_ref(mem_engine *m, char kind, const char *name, int delta) {
  size_t n = strlen(name);
  char stack[256];
  char *full = n + 2 <= sizeof(stack) ? stack : sb_malloc(m->a, n + 2);
  if (!full) return SB_ENOMEM;
  full[0] = kind;
  full[1] = ':';
  memcpy(full + 2, name, n);
  mem_stream *s = get_stream(m, full, n + 2, delta > 0);
  if (full != stack) sb_free(m->a, full);
  if (delta > 0) {
    if (!s) return SB_ENOMEM;
    s->refs++;
  } else if (s && s->refs) {
    s->refs--; /* dropped by the tick if nothing else keeps it */
  }
  return 0;
}

static int m_publish(sb_engine *e, const char *name, size_t n, const char *session,
                     const uint8_t *data, size_t len, sb_engine_position_cb done, void *ctx) {
  mem_engine *m = (mem_engine *)e;
  if (session && !sb_map_get(&m->sessions, session, strlen(session))) return SB_ENOTFOUND;
  mem_stream *s = get_stream(m, name, n, 1);
  if (!s) return SB_ENOMEM;
  uint64_t now = now_ms(m);
  expire(m, s, now);
  if (s->count == s->cap && s->cap < m->lim.history_max) { /* grow the ring up to the limit */
    /* From 4 records: most streams of a busy node hold a message or two (a poke to a user,
     * a direct message), and the ring is most of what an idle stream costs. */
    size_t cap = SB_MIN(m->lim.history_max, s->cap ? s->cap * 2 : 4);
    mem_rec *ring = sb_malloc(m->a, cap * sizeof(*ring));
    if (!ring) return SB_ENOMEM;
    for (size_t i = 0; i < s->count; i++) ring[i] = s->ring[(s->start + i) % s->cap];
    sb_free(m->a, s->ring);
    s->ring = ring;
    s->cap = cap;
    s->start = 0;
  }
  uint8_t *copy = sb_malloc(m->a, len ? len : 1);
  if (!copy) return SB_ENOMEM;
  if (len) memcpy(copy, data, len);
  if (s->count == s->cap) drop_front(m, s); /* full: the oldest goes */
  mem_rec *r = &s->ring[(s->start + s->count) % s->cap];
  r->offset = ++s->head;
  r->time_ms = now;
  r->data = copy;
  r->len = len;
  s->count++;
  uint64_t offset = r->offset, epoch = s->epoch; /* for `done`, after the delivery */
  if (s->subscribers && m->deliver) {
    sb_record rec = {r->offset, r->time_ms, r->data, r->len};
    m->deliver(m->hub, name, n, s->epoch, &rec);
  }
  if (done) done(ctx, 0, offset, epoch);
  return 0;
}

static int m_subscribe(sb_engine *e, const char *name, size_t n) {
  mem_engine *m = (mem_engine *)e;
  mem_stream *s = get_stream(m, name, n, 1);
  if (!s) return SB_ENOMEM;
  s->subscribers++;
  return 0;
}

static int m_unsubscribe(sb_engine *e, const char *name, size_t n) {
  mem_engine *m = (mem_engine *)e;
  mem_stream *s = get_stream(m, name, n, 0);
  if (s && s->subscribers) s->subscribers--;
  return 0;
}

static int m_read(sb_engine *e, const char *name, size_t n, uint64_t from, size_t max,
                  sb_engine_read_cb cb, void *ctx) {
  mem_engine *m = (mem_engine *)e;
  mem_stream *s = get_stream(m, name, n, 1);
  if (!s) return SB_ENOMEM;
  expire(m, s, now_ms(m));
  uint64_t first = s->count ? s->ring[s->start].offset : s->head + 1;
  size_t skip = from > first ? (size_t)SB_MIN(from - first, (uint64_t)s->count) : 0;
  size_t k = SB_MIN(max, s->count - skip);
  /* The records in order, from a stack batch in the common case (a resume a few messages
   * behind), else from one allocation. */
  sb_record batch[64];
  sb_record *recs = k <= 64 ? batch : sb_malloc(m->a, k * sizeof(*recs));
  if (!recs) return SB_ENOMEM;
  for (size_t i = 0; i < k; i++) {
    mem_rec *r = &s->ring[(s->start + skip + i) % s->cap];
    recs[i] = (sb_record){r->offset, r->time_ms, r->data, r->len};
  }
  cb(ctx, 0, s->epoch, first, s->head, recs, k);
  if (recs != batch) sb_free(m->a, recs);
  return 0;
}

static int m_trim(sb_engine *e, const char *name, size_t n, uint64_t through) {
  mem_engine *m = (mem_engine *)e;
  mem_stream *s = get_stream(m, name, n, 0);
  while (s && s->count && s->ring[s->start].offset <= through) drop_front(m, s);
  return 0;
}

static int m_position(sb_engine *e, const char *name, size_t n, sb_engine_position_cb cb,
                      void *ctx) {
  mem_engine *m = (mem_engine *)e;
  mem_stream *s = get_stream(m, name, n, 1);
  if (!s) return SB_ENOMEM;
  cb(ctx, 0, s->head, s->epoch);
  return 0;
}

static int m_position_now(sb_engine *e, const char *name, size_t n, uint64_t *offset,
                          uint64_t *epoch) {
  mem_engine *m = (mem_engine *)e;
  mem_stream *s = get_stream(m, name, n, 1);
  if (!s) return SB_ENOMEM;
  *offset = s->head;
  *epoch = s->epoch;
  return 0;
}

/* ---- sessions ------------------------------------------------------------------------- */

#define GROUP_POS 16 /* the join position after each packed name */

static void session_free(mem_engine *m, mem_session *ss) {
  sb_free(m->a, ss->groups);
  sb_free(m->a, ss->identity);
  sb_free(m->a, ss);
}

static void closed_unlink(mem_engine *m, mem_session *ss) {
  if (ss->prev) ss->prev->next = ss->next;
  else m->closed_first = ss->next;
  if (ss->next) ss->next->prev = ss->prev;
  else m->closed_last = ss->prev;
  ss->prev = ss->next = NULL;
  m->nclosed--;
}

static void session_drop(mem_engine *m, mem_session *ss) {
  if (ss->token[0]) sb_map_del(&m->tokens, ss->token, strlen(ss->token));
  if (ss->closed_at) closed_unlink(m, ss);
  /* Its groups no longer keep their streams... */
  for (uint32_t off = 0; off < ss->groups_len;) {
    const char *g = ss->groups + off;
    stream_ref(m, 'g', g, -1);
    off += (uint32_t)(strlen(g) + 1 + GROUP_POS);
  }
  /* ...and its direct-message stream goes with it. */
  char name[40];
  size_t n = (size_t)snprintf(name, sizeof(name), "c:%s", ss->conn_id);
  mem_stream *s = get_stream(m, name, n, 0);
  if (s) drop_stream(m, s);
  sb_map_del(&m->sessions, ss->conn_id, strlen(ss->conn_id));
  session_free(m, ss);
}

static int m_session_open(sb_engine *e, const char *conn_id, const char *identity) {
  mem_engine *m = (mem_engine *)e;
  size_t idlen = strlen(conn_id);
  if (idlen == 0 || idlen > 22) return SB_EINVAL;
  mem_session *ss = sb_map_get(&m->sessions, conn_id, idlen);
  if (ss) {
    if (ss->closed_at) closed_unlink(m, ss);
    ss->closed_at = 0;
    return 0;
  }
  ss = sb_malloc(m->a, sizeof(*ss));
  if (!ss) return SB_ENOMEM;
  memset(ss, 0, sizeof(*ss));
  memcpy(ss->conn_id, conn_id, idlen + 1);
  if (identity && *identity && !(ss->identity = dup_str(m->a, identity))) {
    session_free(m, ss);
    return SB_ENOMEM;
  }
  if (sb_map_put(&m->sessions, ss->conn_id, idlen, ss)) {
    session_free(m, ss);
    return SB_ENOMEM;
  }
  /* The direct stream exists as long as the session: its epoch must not change under a
   * client that is away. */
  if (stream_ref(m, 'c', ss->conn_id, 1) != 0) {
    sb_map_del(&m->sessions, ss->conn_id, idlen);
    session_free(m, ss);
    return SB_ENOMEM;
  }
  return 0;
}

static int m_session_group(sb_engine *e, const char *conn_id, const char *group, int joined,
                           uint64_t offset, uint64_t epoch) {
  mem_engine *m = (mem_engine *)e;
  mem_session *ss = sb_map_get(&m->sessions, conn_id, strlen(conn_id));
  if (!ss) return SB_ENOTFOUND;
  size_t gl = strlen(group) + 1;
  for (uint32_t off = 0; off < ss->groups_len;) {
    char *g = ss->groups + off;
    size_t l = strlen(g) + 1 + GROUP_POS;
    if (l == gl + GROUP_POS && memcmp(g, group, gl) == 0) {
      if (!joined) {
        memmove(g, g + l, ss->groups_len - off - l);
        ss->groups_len -= (uint32_t)l;
        stream_ref(m, 'g', group, -1);
      }
      return 0;
    }
    off += (uint32_t)l;
  }
  if (!joined) return 0;
  if ((uint64_t)ss->groups_len + gl + GROUP_POS > UINT32_MAX) return SB_EINVAL;
  /* The session can hold a position in the group's stream from now on: keep the stream. */
  if (stream_ref(m, 'g', group, 1) != 0) return SB_ENOMEM;
  char *p = sb_realloc(m->a, ss->groups, ss->groups_len + gl + GROUP_POS);
  if (!p) {
    stream_ref(m, 'g', group, -1);
    return SB_ENOMEM;
  }
  memcpy(p + ss->groups_len, group, gl);
  memcpy(p + ss->groups_len + gl, &offset, 8);
  memcpy(p + ss->groups_len + gl + 8, &epoch, 8);
  ss->groups = p;
  ss->groups_len += (uint32_t)(gl + GROUP_POS);
  return 0;
}

/* The session goes to the end of the closed list; past max_closed_sessions the oldest closed
 * one is dropped (its token then answers SB_ENOTFOUND, as an expired one's). */
static int m_session_closed(sb_engine *e, const char *conn_id) {
  mem_engine *m = (mem_engine *)e;
  mem_session *ss = sb_map_get(&m->sessions, conn_id, strlen(conn_id));
  if (!ss) return SB_ENOTFOUND;
  if (ss->closed_at) closed_unlink(m, ss);
  ss->closed_at = (uint32_t)now_ms(m);
  if (ss->closed_at == 0) ss->closed_at = 1;
  ss->prev = m->closed_last;
  ss->next = NULL;
  if (m->closed_last) m->closed_last->next = ss;
  else m->closed_first = ss;
  m->closed_last = ss;
  m->nclosed++;
  while (m->lim.max_closed_sessions && m->nclosed > m->lim.max_closed_sessions)
    session_drop(m, m->closed_first);
  return 0;
}

static int m_session_token(sb_engine *e, const char *conn_id, const char *token) {
  mem_engine *m = (mem_engine *)e;
  mem_session *ss = sb_map_get(&m->sessions, conn_id, strlen(conn_id));
  if (!ss || strlen(token) != 22) return SB_EINVAL;
  /* Single use: the previous token of the session dies with the new one. */
  if (ss->token[0]) sb_map_del(&m->tokens, ss->token, strlen(ss->token));
  memcpy(ss->token, token, 23);
  if (sb_map_put(&m->tokens, ss->token, 22, ss)) {
    ss->token[0] = '\0';
    return SB_ENOMEM;
  }
  return 0;
}

static int m_session_take(sb_engine *e, const char *token, const char *identity,
                          sb_engine_session_cb cb, void *ctx) {
  mem_engine *m = (mem_engine *)e;
  mem_session *ss = sb_map_get(&m->tokens, token, strlen(token));
  if (ss && ss->closed_at && m->lim.session_ttl_ms &&
      closed_for(now_ms(m), ss) > m->lim.session_ttl_ms) {
    session_drop(m, ss); /* expired, not yet swept by the tick */
    ss = NULL;
  }
  if (!ss) {
    cb(ctx, SB_ENOTFOUND, NULL);
    return 0;
  }
  /* Another identity's token is refused before anything is spent: the owner keeps it. */
  if (strcmp(ss->identity ? ss->identity : "", identity ? identity : "") != 0) {
    cb(ctx, SB_ENGINE_EIDENTITY, NULL);
    return 0;
  }
  /* Everything that can fail comes before the token is consumed. */
  size_t n = 0;
  for (uint32_t off = 0; off < ss->groups_len;
       off += (uint32_t)(strlen(ss->groups + off) + 1 + GROUP_POS))
    n++;
  sb_session_group stack[16];
  sb_session_group *groups = n <= 16 ? stack : sb_malloc(m->a, n * sizeof(*groups));
  if (!groups) return SB_ENOMEM;
  sb_map_del(&m->tokens, ss->token, strlen(ss->token));
  ss->token[0] = '\0';
  size_t k = 0;
  for (uint32_t off = 0; off < ss->groups_len;) {
    sb_session_group *g = &groups[k++];
    g->name = ss->groups + off;
    off += (uint32_t)strlen(g->name) + 1;
    memcpy(&g->offset, ss->groups + off, 8);
    memcpy(&g->epoch, ss->groups + off + 8, 8);
    off += GROUP_POS;
  }
  sb_session_info info = {ss->conn_id, ss->identity ? ss->identity : "", groups, n};
  cb(ctx, 0, &info);
  if (groups != stack) sb_free(m->a, (void *)groups);
  return 0;
}

static int m_sync(sb_engine *e, void (*cb)(void *ctx, int status), void *ctx) {
  (void)e;
  cb(ctx, 0); /* subscriptions take effect at once here */
  return 0;
}

/* Hands freed memory back to the system after a tick that freed much (see the top). */
static void give_back(mem_engine *m) {
  size_t live = m->streams.len + m->sessions.len;
  if (live > m->trim_mark) m->trim_mark = live; /* a new peak */
  if (m->trim_mark - live < 4096 || live > m->trim_mark / 2) return;
  m->trim_mark = live;
  sb_alloc_give_back(m->a);
}

/* Drops expired sessions, aged history, and the streams nothing keeps any more. */
static void m_tick(sb_engine *e) {
  mem_engine *m = (mem_engine *)e;
  uint64_t now = now_ms(m);
  /* Closed in this order, so they expire in this order. */
  while (m->closed_first && closed_for(now, m->closed_first) > m->lim.session_ttl_ms)
    session_drop(m, m->closed_first);
  for (mem_stream *s = m->all, *next; s; s = next) {
    next = s->next;
    expire(m, s, now);
    if (s->count == 0 && s->subscribers == 0 && s->refs == 0) drop_stream(m, s);
  }
  give_back(m);
}

/* ---- presence -------------------------------------------------------------------------- */

/* Per group stream, a map of identities to their connection counts (kept in the value
 * pointer); `member` is not needed on one node: the hub's calls are balanced. */
static int m_presence(sb_engine *e, const char *stream, size_t slen, uint64_t member,
                      const char *identity, int joined) {
  mem_engine *m = (mem_engine *)e;
  (void)member;
  size_t il = strlen(identity);
  sb_map *who = sb_map_get(&m->presence, stream, slen);
  if (!who) {
    if (!joined) return SB_ENOTFOUND;
    if (!(who = sb_malloc(m->a, sizeof(*who)))) return SB_ENOMEM;
    sb_map_init(who, m->a);
    if (sb_map_put(&m->presence, stream, slen, who)) {
      sb_free(m->a, who);
      return SB_ENOMEM;
    }
  }
  uintptr_t n = (uintptr_t)sb_map_get(who, identity, il);
  if (joined) {
    if (sb_map_put(who, identity, il, (void *)(n + 1))) {
      if (who->len == 0) {
        sb_map_del(&m->presence, stream, slen);
        sb_map_free(who);
        sb_free(m->a, who);
      }
      return SB_ENOMEM;
    }
  } else if (n == 0) {
    return SB_ENOTFOUND;
  } else if (n > 1) {
    sb_map_put(who, identity, il, (void *)(n - 1)); /* replaces: no allocation */
  } else {
    sb_map_del(who, identity, il);
    if (who->len == 0) {
      sb_map_del(&m->presence, stream, slen);
      sb_map_free(who);
      sb_free(m->a, who);
    }
  }
  if ((joined && n == 0) || (!joined && n == 1)) {
    if (m->presence_event) m->presence_event(m->hub, stream, slen, identity, il, joined);
  }
  return 0;
}

static int m_presence_get(sb_engine *e, const char *stream, size_t slen,
                          sb_engine_presence_cb cb, void *ctx) {
  mem_engine *m = (mem_engine *)e;
  sb_map *who = sb_map_get(&m->presence, stream, slen);
  size_t n = who ? who->len : 0, k = 0;
  sb_engine_presence *v = sb_malloc(m->a, (n ? n : 1) * sizeof(*v));
  if (!v) return SB_ENOMEM;
  for (size_t i = 0; who && i < who->cap; i++) {
    const sb_map_entry *en = &who->slots[i];
    if (en->key) v[k++] = (sb_engine_presence){en->key, en->klen, (uintptr_t)en->val};
  }
  cb(ctx, 0, v, k);
  sb_free(m->a, v);
  return 0;
}

static void presence_free(mem_engine *m) {
  for (size_t i = 0; i < m->presence.cap; i++) {
    sb_map *who = m->presence.slots[i].key ? m->presence.slots[i].val : NULL;
    if (!who) continue;
    sb_map_free(who);
    sb_free(m->a, who);
  }
  sb_map_free(&m->presence);
}

/* The memory engine needs no take-over hook: a session lives on this node only, and the hub
 * closes a connection whose session it resumed itself. */
static void m_attach(sb_engine *e, const sb_engine_host *host) {
  mem_engine *m = (mem_engine *)e;
  m->hub = host ? host->hub : NULL;
  m->deliver = host ? host->deliver : NULL;
  m->presence_event = host ? host->presence : NULL;
  m->now = host ? host->now : NULL;
  if (host && host->limits) {
    m->lim = *host->limits;
    if (m->lim.history_max == 0) m->lim.history_max = 1;
  }
}

static void m_free(sb_engine *e) {
  mem_engine *m = (mem_engine *)e;
  if (!m) return;
  while (m->all) drop_stream(m, m->all);
  for (size_t i = 0; i < m->sessions.cap; i++) {
    if (m->sessions.slots[i].key) session_free(m, m->sessions.slots[i].val);
  }
  sb_map_free(&m->streams);
  sb_map_free(&m->sessions);
  sb_map_free(&m->tokens);
  presence_free(m);
  sb_free(m->a, m);
}

void sb_memory_engine_stats(sb_engine *e, sb_memory_stats *out) {
  mem_engine *m = (mem_engine *)e;
  out->streams = m->streams.len;
  out->sessions = m->sessions.len;
  out->closed_sessions = m->nclosed;
}

static const sb_engine_ops memory_ops = {
    .name = "memory",
    .attach = m_attach,
    .publish = m_publish,
    .subscribe = m_subscribe,
    .unsubscribe = m_unsubscribe,
    .read = m_read,
    .trim = m_trim,
    .position = m_position,
    .position_now = m_position_now,
    .session_open = m_session_open,
    .session_group = m_session_group,
    .session_closed = m_session_closed,
    .session_token = m_session_token,
    .session_take = m_session_take,
    .presence = m_presence,
    .presence_get = m_presence_get,
    .sync = m_sync,
    .tick = m_tick,
    .free = m_free, /* no health: always up */
};

int sb_memory_engine_new(sb_engine **out, const sb_allocator *a, const sb_engine_limits *lim) {
  *out = NULL;
  if (!a) a = &sb_default_allocator;
  mem_engine *m = sb_malloc(a, sizeof(*m));
  if (!m) return SB_ENOMEM;
  memset(m, 0, sizeof(*m));
  m->base.ops = &memory_ops;
  m->a = a;
  m->lim = *lim;
  if (m->lim.history_max == 0) m->lim.history_max = 1;
  sb_map_init_borrowed(&m->streams, a); /* keys live in the streams */
  sb_map_init_borrowed(&m->sessions, a); /* and in the sessions */
  sb_map_init_borrowed(&m->tokens, a);
  sb_map_init(&m->presence, a);
  *out = &m->base;
  return 0;
}
