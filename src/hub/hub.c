/*
 * hub.c — connections by id, groups, fan-out, HELLO, and resume.
 *
 * Fan-out. A push to a group goes to the engine, which gives it the stream's next offset,
 * stores it, and delivers it back (deliver()) because this node subscribes to the group's
 * stream while the group has local members. deliver() encodes the envelope once, frames it once
 * (an sb_msg) and queues a reference on every member: the same bytes for all of them. Members
 * are kept in a dense array per group, so fan-out is a linear walk; each membership also
 * knows its slot in the group and in the connection, so join and leave are O(1) either way.
 *
 * Resume, the merge (DESIGN.md, "Redelivery"):
 *   1. RESUME arrives with a token and the client's positions (stream, offset, epoch).
 *   2. The token is taken from the engine (single use) if it belongs to the same identity
 *      (checked first: another identity's attempt is refused with 403 and spends nothing).
 *      The connection adopts the session's id (an older connection still holding it is closed
 *      with 4000), rejoins the session's groups, and gets a fresh token in a new HELLO.
 *   3. From the moment the connection starts resuming, every live push to it is *held* (a
 *      reference and its stream offset) instead of sent.
 *   4. Each stream is replayed from the client's offset + 1, in batches of replay_batch, when
 *      its epoch matches and the history still reaches back and at most max_replay messages
 *      are missing; otherwise it is reported recovered:false and not replayed.
 *   5. Then the held pushes are released, skipping those at or below what the replay already
 *      sent for their stream: no gap (everything after the replayed range was held), no
 *      duplicate (the offsets tell), per-stream order kept. RESUMED ends the sequence.
 * With the memory engine everything completes inside one callback; the holding matters for an
 * engine whose reads complete later, while pushes keep arriving.
 *
 * Bounds: only the session's own streams are replayed (its groups, its direct stream), whatever
 * positions the client names; a RESUME carries at most 1024 positions; the replay is paced by
 * the connection's send queue (it pauses above half of max_queued_bytes and continues on
 * drain, so a client that missed a lot is not closed as a slow consumer by its own replay);
 * held pushes count against max_queued_bytes; and the replay is a loop, not a recursion, when
 * the engine answers synchronously.
 */
#include <stdio.h>
#include <string.h>

#include "common/map.h"
#include "engine/engine.h"
#include "hub/envelope.h"
#include "hub/groups.h"
#include "hub/hub.h"
#include "net/net.h"
#include "ws/utf8.h"

#define SB_GROUP_MAX_NAME 200
#define SB_STREAM_MAX 256
#define SB_MAX_POSITIONS 1024
#define SB_HUB_SCHEMAS 16

typedef struct hconn hconn;
typedef struct resume_ctx resume_ctx;

typedef struct held {
  char stream[SB_STREAM_MAX];
  size_t slen;
  uint64_t offset;
  sb_msg *msg;
} held;

typedef struct cpos { /* a position as the client sent it */
  char stream[SB_STREAM_MAX];
  size_t slen;
  uint64_t offset, epoch;
} cpos;

typedef struct rpos { /* a stream being resumed */
  char stream[SB_STREAM_MAX];
  size_t slen;
  uint64_t offset, epoch;  /* what the client has */
  uint64_t sent;           /* last offset delivered during the resume */
  uint64_t head, cur_epoch;
  uint8_t has_position;    /* the client gave a position */
  uint8_t started;
  uint8_t recovered;
} rpos;

struct resume_ctx {
  unsigned refs;
  sb_hub *h;
  hconn *hc; /* NULL once the connection is gone */
  cpos *cpos;
  size_t ncpos;
  rpos *pos;
  size_t npos, cur;
  held *held;
  size_t nheld, heldcap, held_bytes;
  sb_session_group *before; /* groups the connection was in when holding began, with their */
  size_t nbefore;           /* positions then (names packed after the array) */
  uint8_t in_read;   /* inside engine->read: a synchronous answer only marks done */
  uint8_t read_done;
  uint8_t paused;    /* waiting for the send queue to drain */
};

struct hconn {
  sb_conn *conn;
  char id[23];
  uint8_t owner; /* this connection holds `id` in the map and in the engine's session */
  uint8_t slow;  /* already closed for being slow */
  uint8_t closing; /* the close callback runs: no more joins */
  uint8_t user_opened; /* the application's on_open ran, so its on_close must */
  char sub_id[23]; /* the id whose direct stream this connection subscribed, or "" */
  sb_glist groups;
  resume_ctx *resume;
};

typedef struct named_schema {
  char *name;
  const sb_schema *schema;
} named_schema;

struct sb_hub {
  sb_server *srv;
  sb_hub_options opts;
  const sb_allocator *a;
  sb_engine *engine;
  int own_engine; /* the hub created it (the memory engine) and frees it */
  sb_schemas sch;
  sb_map conns;  /* id → hconn (the owner) */
  sb_groups groups;
  named_schema schemas[SB_HUB_SCHEMAS];
  size_t nschemas, schemas_bytes;
  size_t pending; /* engine calls with a callback still to come */
  void *app;      /* the rest layer, when installed */
  sb_hub_app_message_fn app_message;
  sb_hub_app_close_fn app_close;
  uint64_t last_tick;
};

static void send_push(sb_hub *h, hconn *hc, const char *stream, size_t slen, uint64_t offset,
                      sb_msg *m);

/* ---- small helpers -------------------------------------------------------------------- */

static uint64_t hub_now(void *hub) {
  sb_hub *h = hub;
  return uv_now(h->srv->loop);
}

static hconn *HC(const sb_conn *c) { return c ? c->hub : NULL; }

static size_t stream_name(char *out, char prefix, const char *name, size_t n) {
  if (n + 3 > SB_STREAM_MAX) return 0;
  out[0] = prefix;
  out[1] = ':';
  memcpy(out + 2, name, n);
  out[n + 2] = '\0';
  return n + 2;
}

/* Everything the hub sends goes through here: a push, an answer, an error, a pong. A message
 * that cannot be queued is never dropped silently: the connection's queue is full (or memory
 * ran out), so it is closed as a slow consumer with 1013 and resumes later, losing nothing of
 * its streams; a client whose answer was lost learns it from the close, not from a timeout
 * (DESIGN.md, "Failure and security principles"). The rest of a group is not slowed down. */
static int send_to(sb_conn *c, sb_msg *m) {
  int r = sb_conn_send_msg(c, m);
  hconn *hc = HC(c);
  if ((r == SB_SEND_DROPPED || r < 0) && hc && !hc->slow && c->state == SB_CONN_OPEN) {
    hc->slow = 1;
    sb_ws_slow_consumer(c);
  }
  return r;
}

static void deliver_to(hconn *hc, sb_msg *m) { send_to(hc->conn, m); }

static int send_env(sb_hub *h, sb_conn *c, const sb_envelope *env) {
  sb_msg *m;
  int r = sb_envelope_msg(&h->sch, h->srv, env, &m);
  if (r) {
    hconn *hc = HC(c);
    if (hc && !hc->slow && c->state == SB_CONN_OPEN) {
      hc->slow = 1;
      sb_conn_close(c, SB_CLOSE_INTERNAL, "out of memory", sizeof "out of memory" - 1);
    }
    return r;
  }
  r = send_to(c, m);
  sb_msg_unref(m);
  return r;
}

static void send_error(sb_hub *h, sb_conn *c, uint32_t id, uint16_t status, const char *text) {
  sb_envelope env = {0};
  env.kind = SB_KIND_ERROR;
  env.status = status;
  env.id = id;
  env.body = text;
  env.body_len = strlen(text);
  send_env(h, c, &env);
}

/* ---- groups --------------------------------------------------------------------------- */

/* "user:<identity>", the group of every connection of an identity (identity at most
 * SB_IDENTITY_MAX bytes; out has room for it). Returns the name's length. */
static size_t user_group(char out[SB_IDENTITY_MAX + 6], const char *identity) {
  int n = snprintf(out, SB_IDENTITY_MAX + 6, "user:%s", identity);
  return n < 0 ? 0 : SB_MIN((size_t)n, (size_t)SB_IDENTITY_MAX + 5);
}

static int valid_group(const char *g, size_t n) {
  return n > 0 && n <= SB_GROUP_MAX_NAME && sb_utf8_valid((const uint8_t *)g, n);
}

/* The first local member subscribes this node to the group's stream; the last one leaving
 * unsubscribes it. */
static int on_first_member(void *ctx, const char *name, size_t n) {
  sb_hub *h = ctx;
  char stream[SB_STREAM_MAX];
  size_t slen = stream_name(stream, 'g', name, n);
  return slen ? h->engine->ops->subscribe(h->engine, stream, slen) : SB_EINVAL;
}

static void on_group_empty(void *ctx, const char *name, size_t n) {
  sb_hub *h = ctx;
  char stream[SB_STREAM_MAX];
  size_t slen = stream_name(stream, 'g', name, n);
  if (slen) h->engine->ops->unsubscribe(h->engine, stream, slen);
}

/* Records in the session that it is in the group, with the group stream's position now: a
 * resume that names no position for the group (the client got no push from it yet) replays
 * from there, so that what was published while the client was away is not lost merely because
 * nothing had been published before. An engine that cannot answer at once records epoch 0
 * (unknown): such a group is then reported recovered:false. */
static void record_join(sb_hub *h, hconn *hc, const char *name, size_t n) {
  char stream[SB_STREAM_MAX];
  uint64_t offset = 0, epoch = 0;
  size_t slen = stream_name(stream, 'g', name, n);
  if (!slen || h->engine->ops->position_now(h->engine, stream, slen, &offset, &epoch) != 0)
    offset = epoch = 0;
  h->engine->ops->session_group(h->engine, hc->id, name, 1, offset, epoch);
}

static int local_join(sb_hub *h, hconn *hc, const char *name, size_t n, int record) {
  int r = sb_groups_join(&h->groups, &hc->groups, hc, name, n);
  if (r == 0 && record && hc->owner) {
    sb_group *g = sb_groups_find(&h->groups, name, n);
    record_join(h, hc, g->name, g->name_len);
  }
  return r;
}

int sb_conn_join(sb_conn *c, const char *name) {
  /* "user:<identity>" is joined by the upgrade auth only: a client-named group must not let
   * anyone into another user's pushes. */
  if (name && strncmp(name, "user:", 5) == 0) return SB_EINVAL;
  hconn *hc = HC(c);
  if (!hc || !name) return SB_EINVAL;
  if (hc->closing) return SB_ECLOSED;
  size_t n = strlen(name);
  if (!valid_group(name, n)) return SB_EINVAL;
  return local_join(c->srv->hub, hc, name, n, 1);
}

int sb_conn_leave(sb_conn *c, const char *name) {
  hconn *hc = HC(c);
  if (!hc || !name || strncmp(name, "user:", 5) == 0) return SB_EINVAL;
  if (hc->closing) return SB_ECLOSED;
  sb_hub *h = c->srv->hub;
  if (sb_groups_leave(&h->groups, &hc->groups, name, strlen(name)) == 0 && hc->owner)
    h->engine->ops->session_group(h->engine, hc->id, name, 0, 0, 0);
  return 0;
}

size_t sb_conn_groups(const sb_conn *c, const char **out, size_t max) {
  hconn *hc = HC(c);
  if (!hc) return 0;
  size_t k = 0;
  for (uint32_t i = 0; i < hc->groups.n && k < max; i++) out[k++] = hc->groups.refs[i].g->name;
  return hc->groups.n;
}

size_t sb_hub_group_size(sb_hub *h, const char *name) {
  sb_group *g = name ? sb_groups_find(&h->groups, name, strlen(name)) : NULL;
  return g ? g->n : 0;
}

/* ---- delivery ------------------------------------------------------------------------- */

/* Builds the PUSH envelope for a stored record. */
static int push_msg(sb_hub *h, const char *stream, size_t slen, uint64_t epoch,
                    const sb_record *rec, sb_msg **out) {
  sb_value v[3];
  int r = sb_schema_decode(h->sch.record, rec->data, rec->len, v, NULL, 0);
  if (r) return r;
  sb_envelope env = {0};
  env.kind = SB_KIND_PUSH;
  env.method = (uint8_t)v[0].u;
  env.stream = stream;
  env.stream_len = slen;
  env.offset = rec->offset;
  env.epoch = epoch;
  env.url = v[1].data;
  env.url_len = v[1].len;
  env.body = v[2].data;
  env.body_len = v[2].len;
  return sb_envelope_msg(&h->sch, h->srv, &env, out);
}

static void on_deliver(void *hub, const char *stream, size_t slen, uint64_t epoch,
                       const sb_record *rec) {
  sb_hub *h = hub;
  if (slen < 3) return;
  sb_msg *m = NULL;
  if (stream[0] == 'g') {
    sb_group *g = sb_groups_find(&h->groups, stream + 2, slen - 2);
    if (!g || g->n == 0 || push_msg(h, stream, slen, epoch, rec, &m)) return;
    /* The same framed bytes for every member. A member may be closed (slow) during the
     * walk, but membership only changes in the close callback, which comes later. */
    for (uint32_t i = 0; i < g->n; i++)
      send_push(h, g->members[i].member, stream, slen, rec->offset, m);
  } else if (stream[0] == 'c') {
    hconn *hc = sb_map_get(&h->conns, stream + 2, slen - 2);
    if (!hc || push_msg(h, stream, slen, epoch, rec, &m)) return;
    send_push(h, hc, stream, slen, rec->offset, m);
  }
  sb_msg_unref(m);
}

static void send_push(sb_hub *h, hconn *hc, const char *stream, size_t slen, uint64_t offset,
                      sb_msg *m) {
  resume_ctx *rc = hc->resume;
  if (!rc) {
    deliver_to(hc, m);
    return;
  }
  /* Resuming: hold it until the replay is done (step 3 of the merge). What is held counts
   * against the send-queue limit: past it the connection is a slow consumer. */
  size_t cost = sizeof(held) + sb_msg_len(m);
  if (hc->slow || slen >= SB_STREAM_MAX) return;
  if (rc->held_bytes + cost > h->srv->opts.max_queued_bytes) {
    hc->slow = 1;
    sb_conn_close(hc->conn, SB_CLOSE_TRY_AGAIN, "slow consumer: too much held during resume", 42);
    return;
  }
  if (rc->nheld == rc->heldcap) {
    size_t cap = rc->heldcap ? rc->heldcap * 2 : 16;
    held *p = sb_realloc(h->a, rc->held, cap * sizeof(*p));
    if (!p) {
      hc->slow = 1;
      sb_conn_close(hc->conn, SB_CLOSE_TRY_AGAIN, "out of memory during resume", 27);
      return;
    }
    rc->held = p;
    rc->heldcap = cap;
  }
  held *x = &rc->held[rc->nheld++];
  memcpy(x->stream, stream, slen);
  x->stream[slen] = '\0';
  x->slen = slen;
  x->offset = offset;
  x->msg = sb_msg_ref(m);
  rc->held_bytes += cost;
}

static int publish(sb_hub *h, const char *stream, size_t slen, const char *session,
                   sb_method method, const char *url, const void *body, size_t len) {
  sb_value v[3] = {{0}};
  v[0].u = method;
  v[1].data = url ? url : "";
  v[1].len = url ? strlen(url) : 0;
  v[2].data = body;
  v[2].len = len;
  size_t size, n;
  int r = sb_schema_encoded_size(h->sch.record, v, &size, NULL, 0);
  if (r) return r;
  uint8_t stack[1024];
  uint8_t *buf = size <= sizeof(stack) ? stack : sb_malloc(h->a, size);
  if (!buf) return SB_ENOMEM;
  r = sb_schema_encode(h->sch.record, v, buf, size, &n, NULL, 0);
  if (r == 0) r = h->engine->ops->publish(h->engine, stream, slen, session, buf, n);
  if (buf != stack) sb_free(h->a, buf);
  return r;
}

int sb_hub_publish(sb_hub *h, const char *group_name, sb_method method, const char *url,
                   const void *body, size_t len) {
  if (!h || !group_name || (!body && len) || method > SB_METHOD_DELETE) return SB_EINVAL;
  size_t n = strlen(group_name);
  if (!valid_group(group_name, n)) return SB_EINVAL;
  char stream[SB_STREAM_MAX];
  size_t slen = stream_name(stream, 'g', group_name, n);
  return publish(h, stream, slen, NULL, method, url, body, len);
}

int sb_hub_send_to(sb_hub *h, const char *conn_id, sb_method method, const char *url,
                   const void *body, size_t len) {
  if (!h || !conn_id || (!body && len) || method > SB_METHOD_DELETE) return SB_EINVAL;
  size_t n = strlen(conn_id);
  if (n != 22) return SB_ENOTFOUND;
  char stream[SB_STREAM_MAX];
  size_t slen = stream_name(stream, 'c', conn_id, n);
  return publish(h, stream, slen, conn_id, method, url, body, len);
}

int sb_hub_send_to_user(sb_hub *h, const char *identity, sb_method method, const char *url,
                        const void *body, size_t len) {
  if (!identity || !*identity || strlen(identity) > SB_IDENTITY_MAX) return SB_EINVAL;
  char g[SB_IDENTITY_MAX + 6];
  user_group(g, identity);
  return sb_hub_publish(h, g, method, url, body, len);
}

int sb_hub_broadcast(sb_hub *h, sb_method method, const char *url, const void *body,
                     size_t len) {
  if (!h || (!body && len) || method > SB_METHOD_DELETE) return SB_EINVAL;
  sb_envelope env = {0};
  env.kind = SB_KIND_PUSH;
  env.method = (uint8_t)method;
  env.url = url ? url : "";
  env.url_len = url ? strlen(url) : 0;
  env.body = body;
  env.body_len = len;
  sb_msg *m;
  int r = sb_envelope_msg(&h->sch, h->srv, &env, &m);
  if (r) return r;
  for (sb_conn *c = h->srv->conns; c; c = c->next) {
    if (c->hub && c->state == SB_CONN_OPEN) deliver_to(c->hub, m);
  }
  sb_msg_unref(m);
  return 0;
}

int sb_hub_respond(sb_conn *c, uint32_t id, uint16_t status, const void *body, size_t len) {
  if (!c || !c->hub || (!body && len)) return SB_EINVAL;
  sb_envelope env = {0};
  env.kind = SB_KIND_RESPONSE;
  env.id = id;
  env.status = status;
  env.body = body;
  env.body_len = len;
  return send_env(c->srv->hub, c, &env);
}

int sb_hub_position(sb_hub *h, const char *group_name, uint64_t *offset, uint64_t *epoch) {
  if (!h || !group_name || !offset || !epoch) return SB_EINVAL;
  size_t n = strlen(group_name);
  if (!valid_group(group_name, n)) return SB_EINVAL;
  char stream[SB_STREAM_MAX];
  size_t slen = stream_name(stream, 'g', group_name, n);
  return h->engine->ops->position_now(h->engine, stream, slen, offset, epoch);
}

/* ---- HELLO ---------------------------------------------------------------------------- */

static int send_hello(sb_hub *h, hconn *hc, const char *token) {
  uint8_t env_schema[1024], schemas[4096];
  size_t env_len = 0, sch_len = 0;
  if (sb_schema_serialize(h->sch.envelope, env_schema, sizeof(env_schema), &env_len))
    return SB_ENOMEM;
  /* Application schemas: (name text, schema bytes) back to back. */
  for (size_t i = 0; i < h->nschemas; i++) {
    uint8_t tmp[1024];
    size_t tl;
    if (sb_schema_serialize(h->schemas[i].schema, tmp, sizeof(tmp), &tl)) return SB_ENOMEM;
    size_t nl = strlen(h->schemas[i].name);
    if (sch_len + 20 + nl + tl > sizeof(schemas)) return SB_ENOMEM;
    /* varint lengths (both < 2^14 here) */
    size_t lens[2] = {nl, tl};
    const uint8_t *parts[2] = {(const uint8_t *)h->schemas[i].name, tmp};
    for (int k = 0; k < 2; k++) {
      size_t v = lens[k];
      do {
        uint8_t b = v & 0x7f;
        v >>= 7;
        schemas[sch_len++] = (uint8_t)(b | (v ? 0x80 : 0));
      } while (v);
      memcpy(schemas + sch_len, parts[k], lens[k]);
      sch_len += lens[k];
    }
  }
  const sb_server_options *so = &h->srv->opts;
  sb_value v[10] = {{0}};
  v[0].u = SB_KIND_HELLO;
  v[1].u = SB_PROTOCOL_VERSION;
  v[2].data = hc->id;
  v[2].len = strlen(hc->id);
  v[3].data = token;
  v[3].len = strlen(token);
  v[4].u = so->idle_timeout_ms;
  v[5].u = so->max_message_bytes > 0xffffffffu ? 0xffffffffu : so->max_message_bytes;
  v[6].u = h->opts.max_replay > 0xffffffffu ? 0xffffffffu : h->opts.max_replay;
  v[7].u = h->opts.history_max > 0xffffffffu ? 0xffffffffu : h->opts.history_max;
  v[8].data = env_schema;
  v[8].len = env_len;
  v[9].data = schemas;
  v[9].len = sch_len;
  size_t size, n;
  int r = sb_schema_encoded_size(h->sch.hello, v, &size, NULL, 0);
  if (r) return r;
  sb_msg *m;
  if ((r = sb_msg_alloc(&m, h->srv, SB_BINARY, size))) return r;
  r = sb_schema_encode(h->sch.hello, v, m->data + m->hdr_len, size, &n, NULL, 0);
  if (r == 0) {
    int sr = send_to(hc->conn, m);
    r = sr < 0 ? sr : sr == SB_SEND_DROPPED ? SB_ENOMEM : 0;
  }
  sb_msg_unref(m);
  return r;
}

/* A fresh single-use token for the session, announced in a HELLO. */
static int new_token_and_hello(sb_hub *h, hconn *hc) {
  char token[23];
  int r = sb_random_id(token);
  if (r == 0) r = h->engine->ops->session_token(h->engine, hc->id, token);
  if (r == 0) r = send_hello(h, hc, token);
  return r;
}

/* ---- resume --------------------------------------------------------------------------- */

static void resume_release(sb_hub *h, resume_ctx *rc) {
  if (--rc->refs) return;
  for (size_t i = 0; i < rc->nheld; i++) sb_msg_unref(rc->held[i].msg);
  sb_free(h->a, rc->held);
  sb_free(h->a, rc->pos);
  sb_free(h->a, rc->cpos);
  sb_free(h->a, rc->before);
  sb_free(h->a, rc);
}

/* The groups this connection is in as holding begins, each with its stream's position at that
 * moment. A group it joined before sending RESUME, which the resumed session did not have, has
 * no join position in the session; but every push of it up to now reached this connection live,
 * and every later one is held, so this position is where its replay starts. An engine that
 * cannot answer at once leaves epoch 0 (unknown: recovered:false). */
static int note_groups_before(sb_hub *h, resume_ctx *rc, hconn *hc) {
  size_t n = hc->groups.n, bytes = 0;
  if (n == 0) return 0;
  for (uint32_t i = 0; i < n; i++) bytes += hc->groups.refs[i].g->name_len + 1;
  rc->before = sb_malloc(h->a, n * sizeof(*rc->before) + bytes);
  if (!rc->before) return SB_ENOMEM;
  char *names = (char *)(rc->before + n), stream[SB_STREAM_MAX];
  for (uint32_t i = 0; i < n; i++) {
    const sb_group *g = hc->groups.refs[i].g;
    sb_session_group *b = &rc->before[i];
    memcpy(names, g->name, g->name_len + 1);
    b->name = names;
    names += g->name_len + 1;
    size_t slen = stream_name(stream, 'g', g->name, g->name_len);
    if (!slen || h->engine->ops->position_now(h->engine, stream, slen, &b->offset, &b->epoch))
      b->offset = b->epoch = 0;
  }
  rc->nbefore = n;
  return 0;
}

static rpos *find_pos(resume_ctx *rc, const char *stream, size_t slen) {
  for (size_t i = 0; i < rc->npos; i++) {
    if (rc->pos[i].slen == slen && memcmp(rc->pos[i].stream, stream, slen) == 0)
      return &rc->pos[i];
  }
  return NULL;
}

/* Adds a stream to the resume, at the client's position for it if it named one; else, for a
 * group, from where the session joined it (`joined`, may be NULL; epoch 0: unknown). A
 * position (0, 0) means "nothing seen" (PROTOCOL.md §6), which is what naming no position
 * means too: it must not let a group replay from its first offset, messages published before
 * the session joined included. */
static int add_pos(sb_hub *h, resume_ctx *rc, const char *stream, size_t slen, int direct,
                   const sb_session_group *joined) {
  if (slen == 0 || slen >= SB_STREAM_MAX) return SB_EINVAL;
  if (find_pos(rc, stream, slen)) return 0;
  rpos *np = sb_realloc(h->a, rc->pos, (rc->npos + 1) * sizeof(*np));
  if (!np) return SB_ENOMEM;
  rc->pos = np;
  rpos *p = &rc->pos[rc->npos++];
  memset(p, 0, sizeof(*p));
  memcpy(p->stream, stream, slen);
  p->slen = slen;
  for (size_t i = 0; i < rc->ncpos; i++) {
    cpos *c = &rc->cpos[i];
    if (c->slen == slen && memcmp(c->stream, stream, slen) == 0 && (c->offset || c->epoch)) {
      p->offset = c->offset;
      p->epoch = c->epoch;
      p->has_position = 1;
    }
  }
  /* The direct stream is the session's own from its first message: without a position the
   * client has seen none of it, so all of it is replayed (PROTOCOL.md §6). */
  if (direct && !p->has_position) p->has_position = 1;
  if (joined && !p->has_position && joined->epoch != 0) {
    p->offset = joined->offset;
    p->epoch = joined->epoch;
    p->has_position = 1;
  }
  return 0;
}

/* The resume cannot go on (engine failure, out of memory): close, so that the client resumes
 * again later rather than believe it is complete. */
static void resume_abort(sb_hub *h, hconn *hc, const char *why) {
  (void)h;
  if (hc->conn->state == SB_CONN_OPEN) sb_conn_close(hc->conn, SB_CLOSE_INTERNAL, why, strlen(why));
}

static void resume_finish(sb_hub *h, resume_ctx *rc) {
  hconn *hc = rc->hc;
  /* Step 5: release what was held, skipping what the replay already sent. */
  for (size_t i = 0; i < rc->nheld; i++) {
    held *x = &rc->held[i];
    rpos *p = find_pos(rc, x->stream, x->slen);
    if (p && x->offset <= p->sent) continue;
    if (p) p->sent = x->offset;
    deliver_to(hc, x->msg);
  }
  /* RESUMED: per stream, recovered or not, and where the client stands now. */
  size_t size = 0, off = 0, n;
  for (size_t i = 0; i < rc->npos; i++) size += 1 + 10 + rc->pos[i].slen + 17;
  uint8_t *body = sb_malloc(h->a, size ? size : 1);
  for (size_t i = 0; body && i < rc->npos; i++) {
    rpos *p = &rc->pos[i];
    sb_value v[4] = {{0, p->stream, p->slen}, {p->recovered, NULL, 0}, {p->sent, NULL, 0},
                     {p->cur_epoch, NULL, 0}};
    if (sb_schema_encode(h->sch.resumed, v, body + off, size - off, &n, NULL, 0) == 0) off += n;
  }
  hc->resume = NULL;
  rc->hc = NULL;
  int r = SB_ENOMEM;
  if (body) {
    sb_envelope env = {0};
    env.kind = SB_KIND_RESUMED;
    env.body = body;
    env.body_len = off;
    r = send_env(h, hc->conn, &env);
    sb_free(h->a, body);
  }
  resume_release(h, rc);
  if (r != SB_SEND_OK && r != SB_SEND_BACKPRESSURE) {
    resume_abort(h, hc, "resume: RESUMED could not be sent");
    return;
  }
  if (h->opts.on_resume) h->opts.on_resume(hc->conn, h->opts.user);
}

static void replay_run(sb_hub *h, resume_ctx *rc);

static void on_history(void *ctx, int status, uint64_t epoch, uint64_t first, uint64_t head,
                       const sb_record *recs, size_t n) {
  resume_ctx *rc = ctx;
  sb_hub *h = rc->h;
  h->pending--;
  hconn *hc = rc->hc;
  if (!hc || hc->resume != rc || hc->conn->state != SB_CONN_OPEN) {
    resume_release(h, rc); /* the connection went away (or is closing) meanwhile */
    return;
  }
  rpos *p = &rc->pos[rc->cur];
  if (status != 0) {
    resume_abort(h, hc, "resume: history unavailable");
    resume_release(h, rc);
    return;
  }
  if (!p->started) {
    p->started = 1;
    p->head = head;
    p->cur_epoch = epoch;
    /* Step 4: replay only when nothing the client missed has been lost. Epoch 0 with
     * offset 0 means "nothing seen yet": recoverable if the history starts at 1. */
    int same_epoch = p->epoch == epoch || (p->epoch == 0 && p->offset == 0);
    p->recovered = p->has_position && same_epoch && p->offset <= head &&
                   first <= p->offset + 1 && head - p->offset <= h->opts.max_replay;
    p->sent = p->recovered ? p->offset : head;
    if (!p->recovered) n = 0;
  } else if (epoch != p->cur_epoch || first > p->sent + 1) {
    /* The history changed under a batched replay (lost, or trimmed past where we are): what
     * is missing now cannot be replayed. Say so. */
    p->recovered = 0;
    p->sent = head;
    p->cur_epoch = epoch;
    n = 0;
  }
  size_t pace = h->srv->opts.max_queued_bytes / 2;
  for (size_t i = 0; i < n && hc->conn->state == SB_CONN_OPEN; i++) {
    if (recs[i].offset <= p->sent) continue;
    /* Paced by the send queue: the rest of this batch is read again after the drain. */
    if (sb_net_queued_cost(hc->conn) > pace) break;
    sb_msg *m;
    if (push_msg(h, p->stream, p->slen, epoch, &recs[i], &m) != 0) {
      resume_abort(h, hc, "resume: out of memory");
      break;
    }
    deliver_to(hc, m);
    sb_msg_unref(m);
    p->sent = recs[i].offset;
  }
  if (!(p->recovered && n > 0 && p->sent < p->head)) rc->cur++;
  if (rc->in_read) {
    rc->read_done = 1; /* answered inside read(): replay_run's loop goes on */
    resume_release(h, rc);
    return;
  }
  replay_run(h, rc);
  resume_release(h, rc);
}

/* Replays stream after stream, batch after batch. A loop rather than a recursion: a
 * synchronous engine answers inside read(), and only marks the batch done. */
static void replay_run(sb_hub *h, resume_ctx *rc) {
  for (;;) {
    hconn *hc = rc->hc;
    if (!hc || hc->resume != rc || hc->conn->state != SB_CONN_OPEN) return;
    if (sb_net_queued_cost(hc->conn) > h->srv->opts.max_queued_bytes / 2) {
      rc->paused = 1; /* continue when the socket has taken it (on_drain) */
      sb_net_want_drain(hc->conn);
      return;
    }
    if (rc->cur == rc->npos) {
      resume_finish(h, rc);
      return;
    }
    rpos *p = &rc->pos[rc->cur];
    uint64_t from = p->started ? p->sent + 1 : p->offset + 1;
    rc->refs++;
    h->pending++;
    rc->in_read = 1;
    rc->read_done = 0;
    int r = h->engine->ops->read(h->engine, p->stream, p->slen, from, h->opts.replay_batch,
                                 on_history, rc);
    rc->in_read = 0;
    if (r != 0) {
      h->pending--;
      resume_release(h, rc);
      resume_abort(h, hc, "resume: history unavailable");
      return;
    }
    if (!rc->read_done) return; /* asynchronous: on_history continues */
  }
}

static void subscribe_direct(sb_hub *h, hconn *hc) {
  char stream[SB_STREAM_MAX];
  if (hc->sub_id[0]) {
    size_t n = stream_name(stream, 'c', hc->sub_id, strlen(hc->sub_id));
    h->engine->ops->unsubscribe(h->engine, stream, n);
    hc->sub_id[0] = '\0';
  }
  size_t n = stream_name(stream, 'c', hc->id, strlen(hc->id));
  if (h->engine->ops->subscribe(h->engine, stream, n) == 0) memcpy(hc->sub_id, hc->id, 23);
}

static void on_synced(void *ctx, int status) {
  resume_ctx *rc = ctx;
  sb_hub *h = rc->h;
  h->pending--;
  if (rc->hc && rc->hc->resume == rc) {
    if (status != 0) resume_abort(h, rc->hc, "resume: engine unavailable");
    else replay_run(h, rc);
  }
  resume_release(h, rc);
}

static void on_session(void *ctx, int status, const sb_session_info *s) {
  resume_ctx *rc = ctx;
  sb_hub *h = rc->h;
  h->pending--;
  hconn *hc = rc->hc;
  if (!hc || hc->resume != rc) {
    resume_release(h, rc);
    return;
  }
  /* The engine checked the identity before it spent the token (a refused attempt leaves the
   * owner's token usable); the check here only guards against an engine that did not. */
  if (status == 0 && strcmp(s->identity, sb_conn_identity(hc->conn)) != 0)
    status = SB_ENGINE_EIDENTITY;
  if (status != 0) {
    /* Unknown, used, expired, forged, or another identity's token: refuse, and carry on as
     * the fresh session this connection already is. */
    int other = status == SB_ENGINE_EIDENTITY;
    send_error(h, hc->conn, 0, other ? 403 : 401,
               other ? "resume refused: token belongs to another identity"
                     : "resume refused: unknown, used or expired token");
    hc->resume = NULL;
    rc->hc = NULL;
    resume_release(h, rc); /* the connection's reference */
    resume_release(h, rc); /* this call's */
    return;
  }
  /* The session info belongs to the engine and is only good until the next engine call:
   * copy what is needed first. */
  char conn_id[23];
  snprintf(conn_id, sizeof(conn_id), "%s", s->conn_id);
  size_t total = 0, ngroups = s->ngroups, off = 0;
  for (size_t i = 0; i < ngroups; i++) total += strlen(s->groups[i].name) + 1;
  /* the session's groups with their join positions, then their names */
  sb_session_group *joined = sb_malloc(h->a, ngroups * sizeof(*joined) + total + 1);
  if (!joined) {
    resume_abort(h, hc, "resume: out of memory");
    resume_release(h, rc);
    return;
  }
  char *names = (char *)(joined + ngroups);
  for (size_t i = 0; i < ngroups; i++) {
    size_t l = strlen(s->groups[i].name) + 1;
    memcpy(names + off, s->groups[i].name, l);
    joined[i] = s->groups[i];
    joined[i].name = names + off;
    off += l;
  }
  /* Step 2: adopt the session. An older connection still holding it is closed. */
  hconn *old = sb_map_get(&h->conns, conn_id, strlen(conn_id));
  if (old && old != hc) {
    old->owner = 0;
    sb_conn_close(old->conn, SB_CLOSE_REPLACED, "session resumed by another connection", 37);
  }
  char fresh[23]; /* the connection's own session, closed once the resumed one is open */
  memcpy(fresh, hc->id, 23);
  int had_fresh = hc->owner;
  if (hc->owner) sb_map_del(&h->conns, hc->id, strlen(hc->id));
  memcpy(hc->id, conn_id, 23);
  hc->owner = 1;
  int r = sb_map_put(&h->conns, hc->id, strlen(hc->id), hc);
  if (r == 0) r = h->engine->ops->session_open(h->engine, hc->id, sb_conn_identity(hc->conn));
  /* In this order: closing a session may evict the oldest closed one, which must not be the
   * one being resumed. */
  if (had_fresh) h->engine->ops->session_closed(h->engine, fresh);
  if (r != 0) {
    hc->owner = r == 0;
    sb_free(h->a, joined);
    resume_abort(h, hc, "resume: out of memory");
    resume_release(h, rc);
    return;
  }
  subscribe_direct(h, hc);
  /* Groups joined on this connection before the resume become part of the session too. */
  for (uint32_t i = 0; i < hc->groups.n; i++)
    record_join(h, hc, hc->groups.refs[i].g->name, hc->groups.refs[i].g->name_len);
  for (size_t i = 0; i < ngroups; i++) local_join(h, hc, joined[i].name, strlen(joined[i].name), 0);
  /* Only the session's own streams are replayed: its groups and its direct stream, whatever
   * else the client names. */
  char stream[SB_STREAM_MAX];
  for (uint32_t i = 0; i < hc->groups.n && r == 0; i++) {
    sb_group *g = hc->groups.refs[i].g;
    const sb_session_group *j = NULL; /* the session's join position, if it was a member */
    for (size_t k = 0; k < ngroups && !j; k++) {
      if (strcmp(joined[k].name, g->name) == 0) j = &joined[k];
    }
    for (size_t k = 0; k < rc->nbefore && !j; k++) { /* else where holding began */
      if (strcmp(rc->before[k].name, g->name) == 0) j = &rc->before[k];
    }
    size_t slen = stream_name(stream, 'g', g->name, g->name_len);
    if (slen) r = add_pos(h, rc, stream, slen, 0, j);
  }
  sb_free(h->a, joined);
  size_t dlen = stream_name(stream, 'c', hc->id, strlen(hc->id));
  if (r == 0) r = add_pos(h, rc, stream, dlen, 1, NULL);
  if (r != 0 || new_token_and_hello(h, hc) != 0) {
    resume_abort(h, hc, "resume: out of memory");
    resume_release(h, rc);
    return;
  }
  /* Subscriptions first (the rejoined groups, the direct stream), then history. */
  rc->cur = 0;
  rc->refs++;
  h->pending++;
  if (h->engine->ops->sync(h->engine, on_synced, rc) != 0) {
    h->pending--;
    rc->refs--;
    resume_abort(h, hc, "resume: engine unavailable");
  }
  resume_release(h, rc);
}

static void on_resume_msg(sb_hub *h, hconn *hc, const sb_envelope *env) {
  if (hc->resume) return send_error(h, hc->conn, env->id, 409, "resume already in progress");
  sb_value v[2];
  char err[128];
  if (sb_schema_decode(h->sch.resume, env->body, env->body_len, v, err, sizeof(err)))
    return send_error(h, hc->conn, env->id, 400, err);
  if (v[0].len != 22) return send_error(h, hc->conn, env->id, 401,
                                        "resume refused: unknown, used or expired token");
  resume_ctx *rc = sb_malloc(h->a, sizeof(*rc));
  if (!rc) return send_error(h, hc->conn, env->id, 503, "out of memory");
  memset(rc, 0, sizeof(*rc));
  rc->refs = 1;
  rc->h = h;
  /* The client's positions, back to back: at most SB_MAX_POSITIONS records. */
  const uint8_t *p = v[1].data;
  size_t left = v[1].len;
  while (left > 0) {
    sb_value pv[3];
    size_t used;
    if (rc->ncpos == SB_MAX_POSITIONS ||
        sb_schema_decode_prefix(h->sch.position, p, left, pv, &used, err, sizeof(err)) ||
        pv[0].len == 0 || pv[0].len >= SB_STREAM_MAX) {
      resume_release(h, rc);
      return send_error(h, hc->conn, env->id, 400, "malformed positions in RESUME");
    }
    if (rc->ncpos % 16 == 0) {
      cpos *np = sb_realloc(h->a, rc->cpos, (rc->ncpos + 16) * sizeof(*np));
      if (!np) {
        resume_release(h, rc);
        return send_error(h, hc->conn, env->id, 503, "out of memory");
      }
      rc->cpos = np;
    }
    cpos *c = &rc->cpos[rc->ncpos++];
    memcpy(c->stream, pv[0].data, pv[0].len);
    c->slen = pv[0].len;
    c->offset = pv[1].u;
    c->epoch = pv[2].u;
    p += used;
    left -= used;
  }
  char token[23];
  memcpy(token, v[0].data, 22);
  token[22] = '\0';
  if (note_groups_before(h, rc, hc) != 0) {
    resume_release(h, rc);
    return send_error(h, hc->conn, env->id, 503, "out of memory");
  }
  rc->hc = hc;
  hc->resume = rc; /* from here on, pushes to this connection are held */
  rc->refs++;
  h->pending++;
  if (h->engine->ops->session_take(h->engine, token, sb_conn_identity(hc->conn), on_session,
                                   rc) != 0) {
    h->pending--;
    hc->resume = NULL;
    rc->hc = NULL;
    rc->refs--;
    resume_release(h, rc);
    send_error(h, hc->conn, env->id, 503, "resume failed: engine unavailable");
  }
}

typedef struct ack_ctx {
  sb_hub *h;
  char stream[SB_STREAM_MAX];
  size_t slen;
  uint64_t offset, epoch;
} ack_ctx;

static void on_ack_position(void *ctx, int status, uint64_t offset, uint64_t epoch) {
  ack_ctx *a = ctx;
  a->h->pending--;
  /* Only trim the epoch the client saw: an offset of an older epoch means nothing now. */
  if (status == 0 && epoch == a->epoch && a->offset <= offset)
    a->h->engine->ops->trim(a->h->engine, a->stream, a->slen, a->offset);
  sb_free(a->h->a, a);
}

/* ACK: acknowledged direct messages are trimmed (group streams keep their size/age bounds,
 * so that one idle browser cannot pin a group's history). One engine call per ACK, for the
 * highest position of the connection's own direct stream in it. */
static void on_ack_msg(sb_hub *h, hconn *hc, const sb_envelope *env) {
  const uint8_t *p = env->body;
  size_t left = env->body_len;
  char direct[SB_STREAM_MAX];
  size_t dlen = stream_name(direct, 'c', hc->id, strlen(hc->id));
  uint64_t best = 0, best_epoch = 0;
  while (left > 0) {
    sb_value pv[3];
    size_t used;
    if (sb_schema_decode_prefix(h->sch.position, p, left, pv, &used, NULL, 0))
      return send_error(h, hc->conn, env->id, 400, "malformed positions in ACK");
    if (pv[0].len == dlen && memcmp(pv[0].data, direct, dlen) == 0 && pv[1].u > best) {
      best = pv[1].u;
      best_epoch = pv[2].u;
    }
    p += used;
    left -= used;
  }
  if (!hc->owner || best == 0) return;
  ack_ctx *a = sb_malloc(h->a, sizeof(*a));
  if (!a) return;
  a->h = h;
  memcpy(a->stream, direct, dlen);
  a->slen = dlen;
  a->offset = best;
  a->epoch = best_epoch;
  h->pending++;
  if (h->engine->ops->position(h->engine, direct, dlen, on_ack_position, a) != 0) {
    h->pending--;
    sb_free(h->a, a);
  }
}

/* ---- server callbacks ----------------------------------------------------------------- */

/* ---- credentials: refresh before expiry ------------------------------------------------ */

/* AUTH, server to client: status 401 "send a new token before `expires`", 200 "the new
 * token is accepted until `expires`" (error NULL: the body is {"expires":N}), or 4xx/5xx
 * "refused" with {"error":"<reason>"}. */
static void send_auth(sb_hub *h, sb_conn *c, uint16_t status, const char *error) {
  char body[600];
  size_t n;
  if (!error) {
    n = (size_t)snprintf(body, sizeof(body), "{\"expires\":%lld}",
                         (long long)sb_conn_expires(c));
  } else {
    /* The reason (control characters already replaced) as a JSON string. */
    memcpy(body, "{\"error\":\"", 10);
    n = 10;
    for (const char *p = error; *p && n < 400; p++) {
      if (*p == '"' || *p == '\\') body[n++] = '\\';
      body[n++] = *p;
    }
    memcpy(body + n, "\"}", 2);
    n += 2;
  }
  sb_envelope env = {0};
  env.kind = SB_KIND_AUTH;
  env.status = status;
  env.body = body;
  env.body_len = n;
  send_env(h, c, &env);
}

static void on_auth_event(void *hub, sb_conn *c, int status, const char *text) {
  if (!HC(c)) return;
  if (status == 0) send_auth(hub, c, 401, NULL);
  else send_auth(hub, c, (uint16_t)status, status == 200 ? NULL : text);
}

/* AUTH, client to server: the body is a new token, verified by the same on_upgrade callback
 * as the upgrade was (docs/PROTOCOL.md, "Credentials"). */
static void on_auth_msg(sb_hub *h, sb_conn *c, const sb_envelope *env) {
  int r = sb_ws_refresh(c, env->body, env->body_len);
  if (r == SB_ESTATE) send_auth(h, c, 400, "this connection has no credentials to refresh");
  else if (r == SB_EBUSY) send_auth(h, c, 409, "a refresh is already being verified");
  else if (r != 0) send_auth(h, c, 503, "out of memory");
}

static void on_open(sb_conn *c, void *user) {
  sb_hub *h = user;
  hconn *hc = sb_malloc(h->a, sizeof(*hc));
  if (!hc) {
    sb_conn_close(c, SB_CLOSE_TRY_AGAIN, "out of memory", 13);
    return;
  }
  memset(hc, 0, sizeof(*hc));
  hc->conn = c;
  c->hub = hc;
  if (sb_random_id(hc->id) != 0 || sb_map_put(&h->conns, hc->id, 22, hc) != 0) {
    sb_conn_close(c, SB_CLOSE_INTERNAL, "cannot allocate an id", 21);
    return;
  }
  hc->owner = 1;
  const char *identity = sb_conn_identity(c);
  if (h->engine->ops->session_open(h->engine, hc->id, identity) != 0 ||
      new_token_and_hello(h, hc) != 0) {
    sb_conn_close(c, SB_CLOSE_INTERNAL, "cannot start a session", 22);
    return;
  }
  /* Every connection of an identity is in "user:<identity>": one publish reaches all of a
   * user's tabs and devices (sb_hub_send_to_user). Recorded like any group, so a resume
   * keeps it. */
  if (*identity) {
    char g[SB_IDENTITY_MAX + 6];
    if (local_join(h, hc, g, user_group(g, identity), 1) != 0) {
      sb_conn_close(c, SB_CLOSE_INTERNAL, "cannot join the user's group", 28);
      return;
    }
  }
  subscribe_direct(h, hc); /* direct messages reach the open connection live */
  hc->user_opened = 1;
  if (h->opts.on_open) h->opts.on_open(c, h->opts.user);
}

static void on_drain(sb_conn *c, void *user) {
  sb_hub *h = user;
  hconn *hc = HC(c);
  if (hc && hc->resume && hc->resume->paused) {
    resume_ctx *rc = hc->resume;
    rc->paused = 0;
    rc->refs++;
    replay_run(h, rc);
    resume_release(h, rc);
  }
}

static void on_message(sb_conn *c, sb_opcode op, const void *data, size_t len, void *user) {
  sb_hub *h = user;
  hconn *hc = HC(c);
  if (!hc) return;
  if (op != SB_BINARY) {
    sb_conn_close(c, SB_CLOSE_UNSUPPORTED, "envelopes are binary messages", 29);
    return;
  }
  sb_envelope env;
  char err[160];
  if (sb_envelope_decode(&h->sch, data, len, &env, err, sizeof(err)) != 0) {
    /* A malformed envelope is answered, not fatal: the connection loses nothing. */
    send_error(h, c, 0, 400, err);
    return;
  }
  switch (env.kind) {
    case SB_KIND_REQUEST:
    case SB_KIND_SEND:
      if (h->app) h->app_message(h->app, c, &env);
      else if (h->opts.on_message) h->opts.on_message(c, &env, h->opts.user);
      else if (env.kind == SB_KIND_REQUEST) send_error(h, c, env.id, 404, "no handler");
      break;
    case SB_KIND_RESUME:
      on_resume_msg(h, hc, &env);
      break;
    case SB_KIND_ACK:
      on_ack_msg(h, hc, &env);
      break;
    case SB_KIND_AUTH:
      on_auth_msg(h, c, &env);
      break;
    case SB_KIND_PING: {
      /* A heartbeat probe (PROTOCOL.md §10): answered at once, without the application. A
       * browser cannot see WebSocket pings, so this is how its client learns that the
       * connection still carries messages both ways. */
      sb_envelope pong = {0};
      pong.kind = SB_KIND_PING;
      pong.status = 200;
      pong.id = env.id;
      send_env(h, c, &pong);
      break;
    }
    default:
      send_error(h, c, env.id, 400, "unexpected envelope kind from a client");
  }
}

static void on_close(sb_conn *c, int code, const char *reason, size_t rlen, void *user) {
  sb_hub *h = user;
  hconn *hc = HC(c);
  if (hc) {
    hc->closing = 1;
    sb_groups_leave_all(&h->groups, &hc->groups); /* the session keeps them for a resume */
    if (hc->sub_id[0]) {
      char stream[SB_STREAM_MAX];
      size_t n = stream_name(stream, 'c', hc->sub_id, strlen(hc->sub_id));
      h->engine->ops->unsubscribe(h->engine, stream, n);
    }
    if (hc->owner) {
      sb_map_del(&h->conns, hc->id, strlen(hc->id));
      h->engine->ops->session_closed(h->engine, hc->id);
    }
    if (hc->resume) {
      resume_ctx *rc = hc->resume;
      rc->hc = NULL;
      hc->resume = NULL;
      resume_release(h, rc);
    }
  }
  if (h->app) h->app_close(h->app, c);
  if (h->opts.on_close && (!hc || hc->user_opened))
    h->opts.on_close(c, code, reason, rlen, h->opts.user);
  if (hc) {
    sb_free(h->a, hc);
    c->hub = NULL;
  }
}

static void on_tick(void *hub) {
  sb_hub *h = hub;
  uint64_t now = hub_now(h);
  if (now - h->last_tick < 1000) return;
  h->last_tick = now;
  if (h->engine->ops->tick) h->engine->ops->tick(h->engine);
}

/* ---- lifecycle ------------------------------------------------------------------------ */

void sb_hub_options_init(sb_hub_options *o) {
  memset(o, 0, sizeof(*o));
  o->history_max = 1000;
  o->history_age_ms = 5 * 60 * 1000;
  o->session_ttl_ms = 5 * 60 * 1000;
  o->max_replay = 10000;
  o->replay_batch = 256;
  o->max_closed_sessions = 100000;
}

int sb_hub_new(sb_hub **out, uv_loop_t *loop, const sb_server_options *server_opts,
               const sb_hub_options *opts) {
  *out = NULL;
  if (!loop || !server_opts || !opts) return SB_EINVAL;
  const sb_allocator *a = server_opts->allocator ? server_opts->allocator : &sb_default_allocator;
  sb_hub *h = sb_malloc(a, sizeof(*h));
  if (!h) return SB_ENOMEM;
  memset(h, 0, sizeof(*h));
  h->opts = *opts;
  sb_hub_options def;
  sb_hub_options_init(&def);
  if (!h->opts.history_max) h->opts.history_max = def.history_max;
  if (!h->opts.history_age_ms) h->opts.history_age_ms = def.history_age_ms;
  if (!h->opts.session_ttl_ms) h->opts.session_ttl_ms = def.session_ttl_ms;
  if (!h->opts.max_replay) h->opts.max_replay = def.max_replay;
  if (!h->opts.replay_batch) h->opts.replay_batch = def.replay_batch;
  if (!h->opts.max_closed_sessions) h->opts.max_closed_sessions = def.max_closed_sessions;
  sb_server_options so = *server_opts;
  so.on_open = on_open;
  so.on_message = on_message;
  so.on_close = on_close;
  so.on_drain = on_drain;
  so.user = h;
  int r = sb_server_new(&h->srv, loop, &so);
  if (r) {
    sb_free(a, h);
    return r;
  }
  h->a = &h->srv->alloc;
  h->srv->hub = h;
  h->srv->tick = on_tick;
  h->srv->auth_event = on_auth_event;
  h->srv->hook_user = server_opts->user; /* the application's, for on_upgrade/on_subprotocol */
  sb_map_init_borrowed(&h->conns, h->a); /* the key is the hconn's own id */
  sb_groups_init(&h->groups, h->a);
  h->groups.on_first = on_first_member;
  h->groups.on_empty = on_group_empty;
  h->groups.ctx = h;
  sb_engine_limits lim = {h->opts.history_max, h->opts.history_age_ms, h->opts.session_ttl_ms,
                          h->opts.max_closed_sessions};
  h->engine = opts->engine;
  h->own_engine = !opts->engine;
  if ((r = sb_schemas_init(&h->sch, h->a)) != 0 ||
      (h->own_engine && (r = sb_memory_engine_new(&h->engine, h->a, &lim)) != 0)) {
    sb_schemas_free(&h->sch);
    sb_server_free(h->srv);
    sb_free(a, h);
    return r;
  }
  h->engine->ops->attach(h->engine, h, on_deliver, hub_now);
  *out = h;
  return 0;
}

sb_server *sb_hub_server(sb_hub *h) { return h ? h->srv : NULL; }

void sb_hub_set_app(sb_hub *h, void *app, sb_hub_app_message_fn message_fn,
                    sb_hub_app_close_fn close_fn) {
  h->app = app;
  h->app_message = message_fn;
  h->app_close = close_fn;
}

const sb_allocator *sb_hub_allocator(const sb_hub *h) { return h->a; }

sb_hub *sb_conn_hub(const sb_conn *c) { return c && c->hub ? c->srv->hub : NULL; }

const char *sb_conn_id(const sb_conn *c) {
  hconn *hc = HC(c);
  return hc ? hc->id : NULL;
}

sb_conn *sb_hub_find(sb_hub *h, const char *conn_id) {
  if (!h || !conn_id) return NULL;
  hconn *hc = sb_map_get(&h->conns, conn_id, strlen(conn_id));
  return hc && hc->conn->state == SB_CONN_OPEN ? hc->conn : NULL;
}

int sb_hub_add_schema(sb_hub *h, const char *name, const sb_schema *schema) {
  if (!h || !name || !schema || !*name || strlen(name) > 63) return SB_EINVAL;
  if (h->nschemas == SB_HUB_SCHEMAS) return SB_ENOMEM;
  size_t wire;
  /* HELLO carries every schema: refuse here what would make every HELLO fail later. */
  if (sb_schema_serialize(schema, NULL, 0, &wire) != 0 && wire == 0) return SB_EINVAL;
  if (wire > 1024 || h->schemas_bytes + wire + strlen(name) + 20 > 4096) return SB_EINVAL;
  h->schemas_bytes += wire + strlen(name) + 20;
  size_t n = strlen(name) + 1;
  char *copy = sb_malloc(h->a, n);
  if (!copy) return SB_ENOMEM;
  memcpy(copy, name, n);
  h->schemas[h->nschemas++] = (named_schema){copy, schema};
  return 0;
}

int sb_hub_free(sb_hub *h) {
  if (!h) return 0;
  sb_allocator a = *h->a;
  /* Everything below lives as long as the server; free the server last-but-one so that an
   * SB_EBUSY leaves the hub intact. */
  if (h->srv->nconns > 0 || h->srv->handles_open > 0 || h->pending > 0) return SB_EBUSY;
  if (h->own_engine) h->engine->ops->free(h->engine);
  else h->engine->ops->attach(h->engine, NULL, NULL, NULL); /* no deliveries to a freed hub */
  sb_schemas_free(&h->sch);
  for (size_t i = 0; i < h->nschemas; i++) sb_free(&a, h->schemas[i].name);
  sb_map_free(&h->conns);
  sb_groups_free(&h->groups);
  sb_server_free(h->srv);
  sb_free(&a, h);
  return 0;
}
