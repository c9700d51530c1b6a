/*
 * hub.c — connections by id, groups, fan-out, HELLO, take-over, and the hub's life. The resume
 * merge and ACK live in resume.c; what the two share is in resume.h.
 *
 * Fan-out. A push to a group goes to the engine, which gives it the stream's next offset,
 * stores it, and delivers it back (on_deliver) because this node subscribes to the group's
 * stream while the group has local members. on_deliver encodes the envelope once, frames it
 * once (an sb_msg) and queues a reference on every member: the same bytes for all of them.
 * Members are kept in a dense array per group, so fan-out is a linear walk; each membership
 * also knows its slot in the group and in the connection, so join and leave are O(1) either
 * way. A member that is resuming holds the push instead (resume.c, step 3 of the merge).
 *
 * Take-over. A session is held by one connection at a time. When a resume makes another
 * connection its holder, the old one is closed with 4000 and stops being the owner, so that
 * its close does not start the session's expiry: on this node the hub does it as the resume
 * adopts the session; for a resume on another node the engine calls the `taken` hook. Both
 * come to sb_hub_take_over.
 *
 * Deferred outcomes. An engine may answer inside the call (memory) or later (redis), but the
 * application's callbacks never run inside the call that caused them (the house rule): an
 * outcome for the application (sb_hub_send_to_cb) is queued and reported from a uv_idle handle
 * on the next loop turn. The handle is opened for a burst of outcomes and closed after it, so
 * that an idle hub holds no handle the loop would have to close. The plain publish paths pass
 * no completion at all: no allocation, nothing deferred.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "hub/resume.h"
#include "ws/utf8.h"

#define SB_GROUP_MAX_NAME 200

static void send_push(sb_hub *h, sb_hconn *hc, const char *stream, size_t slen, uint64_t offset,
                      sb_msg *m);

/* ---- small helpers -------------------------------------------------------------------- */

static uint64_t hub_now(void *hub) {
  sb_hub *h = hub;
  return uv_now(h->srv->loop);
}

size_t sb_hub_stream_name(char *out, char prefix, const char *name, size_t n) {
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
int sb_hub_send_msg(sb_conn *c, sb_msg *m) {
  int r = sb_conn_send_msg(c, m);
  sb_hconn *hc = sb_hub_hconn(c);
  if ((r == SB_SEND_DROPPED || r < 0) && hc && !hc->slow && c->state == SB_CONN_OPEN) {
    hc->slow = 1;
    sb_ws_slow_consumer(c);
  }
  return r;
}

int sb_hub_send_env(sb_hub *h, sb_conn *c, const sb_envelope *env) {
  sb_msg *m;
  int r = sb_envelope_msg(&h->sch, h->srv, env, &m);
  if (r) {
    sb_hconn *hc = sb_hub_hconn(c);
    if (hc && !hc->slow && c->state == SB_CONN_OPEN) {
      hc->slow = 1;
      sb_conn_close(c, SB_CLOSE_INTERNAL, "out of memory", sizeof "out of memory" - 1);
    }
    return r;
  }
  r = sb_hub_send_msg(c, m);
  sb_msg_unref(m);
  return r;
}

void sb_hub_send_error(sb_hub *h, sb_conn *c, uint32_t id, uint16_t status, const char *text) {
  sb_envelope env = {0};
  env.kind = SB_KIND_ERROR;
  env.status = status;
  env.id = id;
  env.body = text;
  env.body_len = strlen(text);
  sb_hub_send_env(h, c, &env);
}

/* ---- groups --------------------------------------------------------------------------- */

/* "user:<identity>", the group of every connection of an identity (identity at most
 * SB_IDENTITY_MAX bytes; out has room for it). Returns the name's length. */
static size_t user_group(char out[SB_IDENTITY_MAX + 6], const char *identity) {
  int n = snprintf(out, SB_IDENTITY_MAX + 6, "user:%s", identity);
  return n < 0 ? 0 : SB_MIN((size_t)n, (size_t)SB_IDENTITY_MAX + 5);
}

int sb_hub_valid_group(const char *g, size_t n) {
  return n > 0 && n <= SB_GROUP_MAX_NAME && sb_utf8_valid((const uint8_t *)g, n);
}

/* The first local member subscribes this node to the group's stream; the last one leaving
 * unsubscribes it. */
static int on_first_member(void *ctx, const char *name, size_t n) {
  sb_hub *h = ctx;
  char stream[SB_STREAM_MAX];
  size_t slen = sb_hub_stream_name(stream, 'g', name, n);
  return slen ? h->engine->ops->subscribe(h->engine, stream, slen) : SB_EINVAL;
}

static void on_group_empty(void *ctx, const char *name, size_t n) {
  sb_hub *h = ctx;
  char stream[SB_STREAM_MAX];
  size_t slen = sb_hub_stream_name(stream, 'g', name, n);
  if (slen) h->engine->ops->unsubscribe(h->engine, stream, slen);
}

/* Records in the session that it is in the group, with the group stream's position now: a
 * resume that names no position for the group (the client got no push from it yet) replays
 * from there, so that what was published while the client was away is not lost merely because
 * nothing had been published before. An engine that cannot answer at once (position_now
 * refuses) gets epoch 0, and records the stream's position itself, atomically with the join
 * (engine.h, session_group). */
void sb_hub_record_join(sb_hub *h, sb_hconn *hc, const char *name, size_t n) {
  char stream[SB_STREAM_MAX];
  uint64_t offset = 0, epoch = 0;
  size_t slen = sb_hub_stream_name(stream, 'g', name, n);
  if (!slen || h->engine->ops->position_now(h->engine, stream, slen, &offset, &epoch) != 0)
    offset = epoch = 0;
  h->engine->ops->session_group(h->engine, hc->id, name, 1, offset, epoch);
}

int sb_hub_local_join(sb_hub *h, sb_hconn *hc, const char *name, size_t n, int record) {
  int r = sb_groups_join(&h->groups, &hc->groups, hc, name, n);
  if (r == 0 && record && hc->owner) {
    sb_group *g = sb_groups_find(&h->groups, name, n);
    sb_hub_record_join(h, hc, g->name, g->name_len);
  }
  return r;
}

int sb_conn_join(sb_conn *c, const char *name) {
  /* "user:<identity>" is joined by the upgrade auth only: a client-named group must not let
   * anyone into another user's pushes. */
  if (name && strncmp(name, "user:", 5) == 0) return SB_EINVAL;
  sb_hconn *hc = sb_hub_hconn(c);
  if (!hc || !name) return SB_EINVAL;
  if (hc->closing) return SB_ECLOSED;
  size_t n = strlen(name);
  if (!sb_hub_valid_group(name, n)) return SB_EINVAL;
  return sb_hub_local_join(c->srv->hub, hc, name, n, 1);
}

int sb_conn_leave(sb_conn *c, const char *name) {
  sb_hconn *hc = sb_hub_hconn(c);
  if (!hc || !name || strncmp(name, "user:", 5) == 0) return SB_EINVAL;
  if (hc->closing) return SB_ECLOSED;
  sb_hub *h = c->srv->hub;
  if (sb_groups_leave(&h->groups, &hc->groups, name, strlen(name)) == 0 && hc->owner)
    h->engine->ops->session_group(h->engine, hc->id, name, 0, 0, 0);
  return 0;
}

size_t sb_conn_groups(const sb_conn *c, const char **out, size_t max) {
  sb_hconn *hc = sb_hub_hconn(c);
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
int sb_hub_push_msg(sb_hub *h, const char *stream, size_t slen, uint64_t epoch,
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
    if (!g || g->n == 0 || sb_hub_push_msg(h, stream, slen, epoch, rec, &m)) return;
    /* The same framed bytes for every member. A member may be closed (slow) during the
     * walk, but membership only changes in the close callback, which comes later. */
    for (uint32_t i = 0; i < g->n; i++)
      send_push(h, g->members[i].member, stream, slen, rec->offset, m);
  } else if (stream[0] == 'c') {
    sb_hconn *hc = sb_map_get(&h->conns, stream + 2, slen - 2);
    if (!hc || sb_hub_push_msg(h, stream, slen, epoch, rec, &m)) return;
    send_push(h, hc, stream, slen, rec->offset, m);
  }
  sb_msg_unref(m);
}

static void send_push(sb_hub *h, sb_hconn *hc, const char *stream, size_t slen, uint64_t offset,
                      sb_msg *m) {
  if (hc->resume) sb_hub_resume_hold(h, hc, stream, slen, offset, m);
  else sb_hub_send_msg(hc->conn, m);
}

/* Encodes the record and hands it to the engine, with `done` (may be NULL) for its outcome.
 * *engine_called tells a failure of the engine's (the outcome) from one before it (the
 * arguments, or memory). */
static int publish(sb_hub *h, const char *stream, size_t slen, const char *session,
                   sb_method method, const char *url, const void *body, size_t len,
                   sb_engine_position_cb done, void *ctx, int *engine_called) {
  sb_value v[3] = {{0}};
  v[0].u = method;
  v[1].data = url ? url : "";
  v[1].len = url ? strlen(url) : 0;
  v[2].data = body;
  v[2].len = len;
  size_t size, n;
  *engine_called = 0;
  int r = sb_schema_encoded_size(h->sch.record, v, &size, NULL, 0);
  if (r) return r;
  uint8_t stack[1024];
  uint8_t *buf = size <= sizeof(stack) ? stack : sb_malloc(h->a, size);
  if (!buf) return SB_ENOMEM;
  r = sb_schema_encode(h->sch.record, v, buf, size, &n, NULL, 0);
  if (r == 0) {
    *engine_called = 1;
    r = h->engine->ops->publish(h->engine, stream, slen, session, buf, n, done, ctx);
  }
  if (buf != stack) sb_free(h->a, buf);
  return r;
}

int sb_hub_publish(sb_hub *h, const char *group_name, sb_method method, const char *url,
                   const void *body, size_t len) {
  if (!h || !group_name || (!body && len) || method > SB_METHOD_DELETE) return SB_EINVAL;
  size_t n = strlen(group_name);
  if (!sb_hub_valid_group(group_name, n)) return SB_EINVAL;
  char stream[SB_STREAM_MAX];
  size_t slen = sb_hub_stream_name(stream, 'g', group_name, n);
  int called;
  return publish(h, stream, slen, NULL, method, url, body, len, NULL, NULL, &called);
}

/* Without a completion: an engine that knows at once answers SB_ENOTFOUND here; an
 * asynchronous one accepts (0), and only sb_hub_send_to_cb learns the outcome. */
int sb_hub_send_to(sb_hub *h, const char *conn_id, sb_method method, const char *url,
                   const void *body, size_t len) {
  if (!h || !conn_id || (!body && len) || method > SB_METHOD_DELETE) return SB_EINVAL;
  size_t n = strlen(conn_id);
  if (n != 22) return SB_ENOTFOUND;
  char stream[SB_STREAM_MAX];
  size_t slen = sb_hub_stream_name(stream, 'c', conn_id, n);
  int called;
  return publish(h, stream, slen, conn_id, method, url, body, len, NULL, NULL, &called);
}

/* ---- deferred outcomes (see the top) ---------------------------------------------------- */

static void done_flush(uv_idle_t *idle);

static void done_start(sb_hub *h) {
  uv_idle_init(h->srv->loop, &h->done_idle);
  h->done_idle.data = h;
  uv_idle_start(&h->done_idle, done_flush);
  h->done_state = 1;
  h->pending++; /* the handle, until it is closed: sb_hub_free waits for it */
}

static void done_closed(uv_handle_t *handle) {
  sb_hub *h = handle->data;
  h->done_state = 0;
  h->pending--;
  if (h->done_first) done_start(h); /* queued while the handle was closing */
}

/* Queues an outcome for the next loop turn. */
void sb_hub_done_later(sb_hub_done *d) {
  sb_hub *h = d->h;
  d->next = NULL;
  if (h->done_last) h->done_last->next = d;
  else h->done_first = d;
  h->done_last = d;
  if (h->done_state == 0) done_start(h);
}

/* Reports what was queued before this turn; what these callbacks cause is queued anew (a
 * fresh list, and the handle opens again once this one has closed). */
static void done_flush(uv_idle_t *idle) {
  sb_hub *h = idle->data;
  sb_hub_done *d = h->done_first;
  h->done_first = h->done_last = NULL;
  uv_idle_stop(idle);
  uv_close((uv_handle_t *)idle, done_closed);
  h->done_state = 2;
  while (d) {
    sb_hub_done *next = d->next;
    h->pending--;
    d->cb(d->status, d->user);
    sb_free(h->a, d);
    d = next;
  }
}

/* The engine's outcome of a publish with a completion: always deferred, whether the engine
 * answered inside the call or later, so that the rule holds for any engine. */
static void on_published(void *ctx, int status, uint64_t offset, uint64_t epoch) {
  (void)offset;
  (void)epoch;
  sb_hub_done *d = ctx;
  d->status = status;
  sb_hub_done_later(d);
}

int sb_hub_send_to_cb(sb_hub *h, const char *conn_id, sb_method method, const char *url,
                      const void *body, size_t len, sb_hub_done_cb cb, void *user) {
  if (!h || !conn_id || !cb || (!body && len) || method > SB_METHOD_DELETE) return SB_EINVAL;
  sb_hub_done *d = sb_malloc(h->a, sizeof(*d));
  if (!d) return SB_ENOMEM;
  *d = (sb_hub_done){NULL, h, cb, user, 0};
  size_t n = strlen(conn_id);
  int r = SB_ENOTFOUND, called = 1; /* not an id: no such session, an outcome like any */
  if (n == 22) {
    char stream[SB_STREAM_MAX];
    size_t slen = sb_hub_stream_name(stream, 'c', conn_id, n);
    r = publish(h, stream, slen, conn_id, method, url, body, len, on_published, d, &called);
  }
  if (!called) { /* refused before the engine: the call fails, cb never runs */
    sb_free(h->a, d);
    return r;
  }
  h->pending++; /* until cb has run */
  if (r != 0) { /* the engine answered at once with a failure; `done` will not fire */
    d->status = r;
    sb_hub_done_later(d);
  }
  return 0;
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
    if (c->hub && c->state == SB_CONN_OPEN) sb_hub_send_msg(c, m);
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
  return sb_hub_send_env(c->srv->hub, c, &env);
}

int sb_hub_position(sb_hub *h, const char *group_name, uint64_t *offset, uint64_t *epoch) {
  if (!h || !group_name || !offset || !epoch) return SB_EINVAL;
  size_t n = strlen(group_name);
  if (!sb_hub_valid_group(group_name, n)) return SB_EINVAL;
  char stream[SB_STREAM_MAX];
  size_t slen = sb_hub_stream_name(stream, 'g', group_name, n);
  return h->engine->ops->position_now(h->engine, stream, slen, offset, epoch);
}

/* ---- HELLO ---------------------------------------------------------------------------- */

static int send_hello(sb_hub *h, sb_hconn *hc, const char *token) {
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
    int sr = sb_hub_send_msg(hc->conn, m);
    r = sr < 0 ? sr : sr == SB_SEND_DROPPED ? SB_ENOMEM : 0;
  }
  sb_msg_unref(m);
  return r;
}

/* A fresh single-use token for the session, announced in a HELLO. */
int sb_hub_new_token_and_hello(sb_hub *h, sb_hconn *hc) {
  char token[23];
  int r = sb_random_id(token);
  if (r == 0) r = h->engine->ops->session_token(h->engine, hc->id, token);
  if (r == 0) r = send_hello(h, hc, token);
  return r;
}

/* ---- sessions: the direct stream, take-over -------------------------------------------- */

void sb_hub_subscribe_direct(sb_hub *h, sb_hconn *hc) {
  char stream[SB_STREAM_MAX];
  if (hc->sub_id[0]) {
    size_t n = sb_hub_stream_name(stream, 'c', hc->sub_id, strlen(hc->sub_id));
    h->engine->ops->unsubscribe(h->engine, stream, n);
    hc->sub_id[0] = '\0';
  }
  size_t n = sb_hub_stream_name(stream, 'c', hc->id, strlen(hc->id));
  if (h->engine->ops->subscribe(h->engine, stream, n) == 0) memcpy(hc->sub_id, hc->id, 23);
}

void sb_hub_take_over(sb_hub *h, const char *conn_id, const sb_hconn *keep) {
  static const char why[] = "session resumed by another connection";
  sb_hconn *old = sb_map_get(&h->conns, conn_id, strlen(conn_id));
  if (!old || old == keep) return;
  sb_map_del(&h->conns, old->id, strlen(old->id));
  old->owner = 0; /* its close must not start the expiry of a session held elsewhere */
  sb_conn_close(old->conn, SB_CLOSE_REPLACED, why, sizeof why - 1);
}

/* The engine's `taken` hook: the session was resumed on another node. */
static void on_taken(void *hub, const char *conn_id) {
  if (hub && conn_id) sb_hub_take_over(hub, conn_id, NULL);
}

/* ---- presence ------------------------------------------------------------------------- */

/* Every membership counts in the group's presence, under the connection's identity. The
 * membership is named by its connection's address: unique among this node's live
 * memberships, which is all the engine asks (engine.h, presence). */
static void on_member(void *ctx, const sb_group *g, void *member, int joined) {
  sb_hub *h = ctx;
  const sb_hconn *hc = member;
  const char *identity = sb_conn_identity(hc->conn);
  /* Presence is who is there: an anonymous connection is nobody in particular, and counting
   * them would cost a Redis call and an entry per membership on public fan-out (the common
   * anonymous case) that no one asks for; sb_hub_group_size counts them on this node. */
  if (!*identity) return;
  char stream[SB_STREAM_MAX];
  size_t slen = sb_hub_stream_name(stream, 'g', g->name, g->name_len);
  if (slen && h->engine->ops->presence)
    h->engine->ops->presence(h->engine, stream, slen, (uint64_t)(uintptr_t)hc, identity,
                             joined);
}

/* A presence event for the application: the group and the identity, copied, reported on the
 * next loop turn like every outcome (the memory engine reports inside the hub's own call). */
typedef struct presence_note {
  sb_hub_done d; /* first: the deferral frees the note through it */
  int joined;
  const char *identity;
  char group[]; /* then the identity, both NUL-terminated */
} presence_note;

static void presence_note_fire(int status, void *user) {
  (void)status;
  presence_note *q = user;
  sb_hub *h = q->d.h;
  if (h->opts.on_presence)
    h->opts.on_presence(h, q->group, q->identity, q->joined, h->opts.user);
}

static void on_presence_event(void *hub, const char *stream, size_t slen, const char *identity,
                              size_t ilen, int joined) {
  sb_hub *h = hub;
  if (!h->opts.on_presence || slen < 2 || stream[0] != 'g' || stream[1] != ':') return;
  size_t gl = slen - 2;
  presence_note *q = sb_malloc(h->a, sizeof(*q) + gl + ilen + 2);
  if (!q) return; /* a notification: the state itself stays right (sb_hub_presence) */
  q->d = (sb_hub_done){NULL, h, presence_note_fire, q, 0};
  q->joined = joined;
  memcpy(q->group, stream + 2, gl);
  q->group[gl] = '\0';
  char *id = q->group + gl + 1;
  memcpy(id, identity, ilen);
  id[ilen] = '\0';
  q->identity = id;
  h->pending++;
  sb_hub_done_later(&q->d);
}

/* sb_hub_presence: the engine's answer, copied (it may come inside the call), sorted by
 * identity, and reported on a later turn. */
typedef struct presence_req {
  sb_hub_done d; /* first */
  sb_hub_presence_cb cb;
  void *user;
  sb_presence *who; /* one allocation: the entries, then their identities */
  size_t n;
} presence_req;

static int presence_cmp(const void *a, const void *b) {
  return strcmp(((const sb_presence *)a)->identity, ((const sb_presence *)b)->identity);
}

static void presence_req_fire(int status, void *user) {
  presence_req *q = user;
  q->cb(status, q->who, q->n, q->user);
  sb_free(q->d.h->a, q->who);
}

static void presence_answer(void *ctx, int status, const sb_engine_presence *who, size_t n) {
  presence_req *q = ctx;
  sb_hub *h = q->d.h;
  q->d.status = status;
  if (status == 0) {
    size_t bytes = (n ? n : 1) * sizeof(sb_presence);
    for (size_t i = 0; i < n; i++) bytes += who[i].ilen + 1;
    q->who = sb_malloc(h->a, bytes);
    if (!q->who) {
      q->d.status = SB_ENOMEM;
    } else {
      char *text = (char *)(q->who + (n ? n : 1));
      for (size_t i = 0; i < n; i++) {
        memcpy(text, who[i].identity, who[i].ilen);
        text[who[i].ilen] = '\0';
        q->who[i] = (sb_presence){text, (size_t)who[i].connections};
        text += who[i].ilen + 1;
      }
      q->n = n;
      qsort(q->who, n, sizeof(*q->who), presence_cmp);
    }
  }
  sb_hub_done_later(&q->d);
}

int sb_hub_presence(sb_hub *h, const char *group, sb_hub_presence_cb cb, void *user) {
  if (!h || !group || !cb) return SB_EINVAL;
  size_t gl = strlen(group);
  char stream[SB_STREAM_MAX];
  size_t slen = sb_hub_valid_group(group, gl) ? sb_hub_stream_name(stream, 'g', group, gl) : 0;
  if (!slen) return SB_EINVAL;
  if (!h->engine->ops->presence_get) return SB_EINVAL; /* an engine without presence */
  presence_req *q = sb_malloc(h->a, sizeof(*q));
  if (!q) return SB_ENOMEM;
  *q = (presence_req){{NULL, h, presence_req_fire, q, 0}, cb, user, NULL, 0};
  h->pending++;
  int r = h->engine->ops->presence_get(h->engine, stream, slen, presence_answer, q);
  if (r != 0) {
    h->pending--;
    sb_free(h->a, q);
  }
  return r;
}

/* The engine's `session_lost` hook: the session of an open connection lacks its groups in
 * the engine's store (Redis was away when they were joined, or lost them); they are recorded
 * again, from the streams' positions now where none is recorded (engine.h). */
static void on_session_lost(void *hub, const char *conn_id) {
  sb_hub *h = hub;
  sb_hconn *hc = conn_id ? sb_map_get(&h->conns, conn_id, strlen(conn_id)) : NULL;
  if (!hc || !hc->owner || hc->closing) return;
  for (uint32_t i = 0; i < hc->groups.n; i++) {
    const sb_group *g = hc->groups.refs[i].g;
    sb_hub_record_join(h, hc, g->name, g->name_len);
  }
}

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
  sb_hub_send_env(h, c, &env);
}

static void on_auth_event(void *hub, sb_conn *c, int status, const char *text) {
  if (!sb_hub_hconn(c)) return;
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
  sb_hconn *hc = sb_malloc(h->a, sizeof(*hc));
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
      sb_hub_new_token_and_hello(h, hc) != 0) {
    sb_conn_close(c, SB_CLOSE_INTERNAL, "cannot start a session", 22);
    return;
  }
  /* Every connection of an identity is in "user:<identity>": one publish reaches all of a
   * user's tabs and devices (sb_hub_send_to_user). Recorded like any group, so a resume
   * keeps it. */
  if (*identity) {
    char g[SB_IDENTITY_MAX + 6];
    if (sb_hub_local_join(h, hc, g, user_group(g, identity), 1) != 0) {
      sb_conn_close(c, SB_CLOSE_INTERNAL, "cannot join the user's group", 28);
      return;
    }
  }
  sb_hub_subscribe_direct(h, hc); /* direct messages reach the open connection live */
  hc->user_opened = 1;
  if (h->opts.on_open) h->opts.on_open(c, h->opts.user);
}

static void on_drain(sb_conn *c, void *user) {
  sb_hconn *hc = sb_hub_hconn(c);
  if (hc) sb_hub_resume_drained(user, hc);
}

static void on_message(sb_conn *c, sb_opcode op, const void *data, size_t len, void *user) {
  sb_hub *h = user;
  sb_hconn *hc = sb_hub_hconn(c);
  if (!hc) return;
  if (op != SB_BINARY) {
    sb_conn_close(c, SB_CLOSE_UNSUPPORTED, "envelopes are binary messages", 29);
    return;
  }
  sb_envelope env;
  char err[160];
  if (sb_envelope_decode(&h->sch, data, len, &env, err, sizeof(err)) != 0) {
    /* A malformed envelope is answered, not fatal: the connection loses nothing. */
    sb_hub_send_error(h, c, 0, 400, err);
    return;
  }
  switch (env.kind) {
    case SB_KIND_REQUEST:
    case SB_KIND_SEND:
      if (h->app) h->app_message(h->app, c, &env);
      else if (h->opts.on_message) h->opts.on_message(c, &env, h->opts.user);
      else if (env.kind == SB_KIND_REQUEST) sb_hub_send_error(h, c, env.id, 404, "no handler");
      break;
    case SB_KIND_RESUME:
      sb_hub_on_resume(h, hc, &env);
      break;
    case SB_KIND_ACK:
      sb_hub_on_ack(h, hc, &env);
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
      sb_hub_send_env(h, c, &pong);
      break;
    }
    default:
      sb_hub_send_error(h, c, env.id, 400, "unexpected envelope kind from a client");
  }
}

static void on_close(sb_conn *c, int code, const char *reason, size_t rlen, void *user) {
  sb_hub *h = user;
  sb_hconn *hc = sb_hub_hconn(c);
  if (hc) {
    hc->closing = 1;
    sb_groups_leave_all(&h->groups, &hc->groups); /* the session keeps them for a resume */
    if (hc->sub_id[0]) {
      char stream[SB_STREAM_MAX];
      size_t n = sb_hub_stream_name(stream, 'c', hc->sub_id, strlen(hc->sub_id));
      h->engine->ops->unsubscribe(h->engine, stream, n);
    }
    if (hc->owner) {
      sb_map_del(&h->conns, hc->id, strlen(hc->id));
      if (!hc->released) h->engine->ops->session_closed(h->engine, hc->id);
    }
    sb_hub_resume_detach(h, hc);
  }
  if (h->app) h->app_close(h->app, c);
  if (h->opts.on_close && (!hc || hc->user_opened))
    h->opts.on_close(c, code, reason, rlen, h->opts.user);
  if (hc) {
    sb_free(h->a, hc);
    c->hub = NULL;
  }
}

/* The server began a graceful shutdown: every session this node holds is closed in the engine
 * now (its expiry clock starts), though the connections close over the drain's spread: a
 * client resumes elsewhere as soon as it is told to go, and a process that dies before its
 * last close leaves no session open on a node that is gone. */
static void on_shutdown_start(void *hub) {
  sb_hub *h = hub;
  for (size_t i = 0; i < h->conns.cap; i++) {
    sb_hconn *hc = h->conns.slots[i].key ? h->conns.slots[i].val : NULL;
    if (!hc || !hc->owner || hc->released) continue;
    hc->released = 1;
    h->engine->ops->session_closed(h->engine, hc->id);
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
  h->srv->shutdown_hook = on_shutdown_start;
  h->srv->auth_event = on_auth_event;
  h->srv->hook_user = server_opts->user; /* the application's, for on_upgrade/on_subprotocol */
  sb_map_init_borrowed(&h->conns, h->a); /* the key is the sb_hconn's own id */
  sb_groups_init(&h->groups, h->a);
  h->groups.on_first = on_first_member;
  h->groups.on_empty = on_group_empty;
  h->groups.on_member = on_member;
  h->groups.ctx = h;
  /* The limits go to the engine both ways: the memory engine is made with them, and an
   * engine the application made (redis) learns them when it is attached. */
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
  sb_engine_host host = {h, on_deliver, hub_now, on_taken, &lim, on_presence_event,
                         on_session_lost};
  h->engine->ops->attach(h->engine, &host);
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
  sb_hconn *hc = sb_hub_hconn(c);
  return hc ? hc->id : NULL;
}

sb_conn *sb_hub_find(sb_hub *h, const char *conn_id) {
  if (!h || !conn_id) return NULL;
  sb_hconn *hc = sb_map_get(&h->conns, conn_id, strlen(conn_id));
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
  else h->engine->ops->attach(h->engine, NULL); /* no deliveries to a freed hub */
  sb_schemas_free(&h->sch);
  for (size_t i = 0; i < h->nschemas; i++) sb_free(&a, h->schemas[i].name);
  sb_map_free(&h->conns);
  sb_groups_free(&h->groups);
  sb_server_free(h->srv);
  sb_free(&a, h);
  return 0;
}

void sb_hub_health(sb_hub *h, sb_health *out) {
  sb_engine_health eh = {1, -1, -1, ""};
  if (h->engine->ops->health) h->engine->ops->health(h->engine, &eh);
  out->engine = h->engine->ops->name;
  out->up = eh.up;
  out->redis_commands = eh.commands;
  out->redis_pubsub = eh.pubsub;
  out->error = eh.error ? eh.error : "";
}

/* sb_hub_nodes: the engine's list (its answer always comes later), or this node alone for an
 * engine without one, reported from a one-shot timer so that it comes later too. */
typedef struct nodes_req {
  uv_timer_t timer; /* the single-node case */
  sb_hub *h;
  sb_hub_nodes_cb cb;
  void *user;
} nodes_req;

static void nodes_answer(void *ctx, int status, const sb_engine_node *nodes, size_t n) {
  nodes_req *q = ctx;
  q->h->pending--;
  /* sb_engine_node and sb_node have the same members, in the same order */
  sb_node stack[32], *v = n <= 32 ? stack : sb_malloc(q->h->a, n * sizeof(*v));
  if (!v) {
    status = SB_ENOMEM;
    n = 0;
    v = stack;
  }
  for (size_t i = 0; i < n; i++) v[i] = (sb_node){nodes[i].id, nodes[i].url};
  q->cb(status, v, n, q->user);
  if (v != stack) sb_free(q->h->a, v);
  sb_free(q->h->a, q);
}

static void nodes_timer_closed(uv_handle_t *t) {
  nodes_req *q = t->data;
  q->h->pending--;
  sb_free(q->h->a, q);
}

static void nodes_local(uv_timer_t *t) {
  nodes_req *q = t->data;
  sb_node self = {"local", ""};
  q->cb(0, &self, 1, q->user);
  uv_close((uv_handle_t *)t, nodes_timer_closed);
}

int sb_hub_nodes(sb_hub *h, sb_hub_nodes_cb cb, void *user) {
  if (!h || !cb) return SB_EINVAL;
  nodes_req *q = sb_malloc(h->a, sizeof(*q));
  if (!q) return SB_ENOMEM;
  q->h = h;
  q->cb = cb;
  q->user = user;
  h->pending++;
  if (h->engine->ops->nodes) {
    int r = h->engine->ops->nodes(h->engine, nodes_answer, q);
    if (r != 0) {
      h->pending--;
      sb_free(h->a, q);
    }
    return r;
  }
  uv_timer_init(h->srv->loop, &q->timer);
  q->timer.data = q;
  uv_timer_start(&q->timer, nodes_local, 0, 0);
  return 0;
}
