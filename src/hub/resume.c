/*
 * resume.c — RESUME (the merge) and ACK.
 *
 * Resume, the merge (DESIGN.md, "Redelivery"):
 *   1. RESUME arrives with a token and the client's positions (stream, offset, epoch).
 *   2. The token is taken from the engine (single use) if it belongs to the same identity
 *      (checked first: another identity's attempt is refused with 403 and spends nothing).
 *      The connection adopts the session's id (an older connection still holding it is closed
 *      with 4000: here by the hub when it is on this node, through the engine's `taken` hook
 *      when it is on another), rejoins the session's groups, and gets a fresh token in a new
 *      HELLO.
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
 * Failures. A token that is unknown, used or expired gets ERROR 401, another identity's ERROR
 * 403; the connection carries on as the fresh session its HELLO described. An engine failure
 * (a take, the sync barrier or a history read that fails: Redis unreachable, a timeout) is not
 * the client's fault and says nothing about its token: ERROR 503 "retry". A failed take
 * changed nothing (the connection is its fresh session and the client retries with the same
 * token); a later failure leaves the connection as the resumed session of its new HELLO, with
 * nothing replayed and the held pushes dropped (they are stored: the retry, with that HELLO's
 * token, replays them). Out of memory, or a RESUMED that cannot be queued, closes with 1011
 * instead, so that the client resumes again rather than believe it is complete.
 *
 * Bounds: only the session's own streams are replayed (its groups, its direct stream), whatever
 * positions the client names; a RESUME carries at most 1024 positions; the replay is paced by
 * the connection's send queue (it pauses above half of max_queued_bytes and continues on
 * drain, so a client that missed a lot is not closed as a slow consumer by its own replay);
 * held pushes count against max_queued_bytes; and the replay is a loop, not a recursion, when
 * the engine answers synchronously.
 *
 * Lifetime: a resume is reference-counted. The connection holds one reference while it is
 * resuming (hc->resume), every engine call in flight holds one, and a callback that finds the
 * connection gone (rc->hc NULL) or resuming something else only lets go of its own.
 */
#include <stdio.h>
#include <string.h>

#include "hub/resume.h"

#define SB_MAX_POSITIONS 1024

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

struct sb_resume {
  unsigned refs;
  sb_hub *h;
  sb_hconn *hc;    /* NULL once the connection is gone, or the resume ended */
  uint32_t req_id; /* the RESUME envelope's id: an ERROR answering it carries it */
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

static void replay_run(sb_hub *h, sb_resume *rc);

/* ---- the resume's life ---------------------------------------------------------------- */

static void resume_release(sb_hub *h, sb_resume *rc) {
  if (--rc->refs) return;
  for (size_t i = 0; i < rc->nheld; i++) sb_msg_unref(rc->held[i].msg);
  sb_free(h->a, rc->held);
  sb_free(h->a, rc->pos);
  sb_free(h->a, rc->cpos);
  sb_free(h->a, rc->before);
  sb_free(h->a, rc);
}

/* Is this callback's resume still the connection's, on an open connection? */
static int resume_live(const sb_resume *rc) {
  return rc->hc && rc->hc->resume == rc && rc->hc->conn->state == SB_CONN_OPEN;
}

/* The connection stops resuming (pushes go out live again) and lets go of its reference. */
static void resume_end(sb_hub *h, sb_resume *rc) {
  sb_hconn *hc = rc->hc;
  hc->resume = NULL;
  rc->hc = NULL;
  resume_release(h, rc);
}

/* The resume cannot go on for want of memory (or RESUMED cannot be queued): close, so that the
 * client resumes again later rather than believe it is complete. */
static void resume_abort(sb_hconn *hc, const char *why) {
  if (hc->conn->state == SB_CONN_OPEN) sb_conn_close(hc->conn, SB_CLOSE_INTERNAL, why, strlen(why));
}

/* The engine failed (take, sync or read): ERROR 503, and the connection stays open as the
 * session its latest HELLO named (see the top). What was held is dropped: it is stored, and
 * the retried resume replays it. */
static void resume_unavailable(sb_hub *h, sb_resume *rc) {
  static const char text[] = "resume failed: engine unavailable, retry";
  sb_hconn *hc = rc->hc;
  uint32_t id = rc->req_id;
  resume_end(h, rc);
  sb_hub_send_error(h, hc->conn, id, 503, text);
}

/* ---- step 1: RESUME ------------------------------------------------------------------- */

/* The client's positions, back to back: at most SB_MAX_POSITIONS records. Returns 0, or the
 * status of the ERROR to answer with (400, 503). */
static uint16_t parse_positions(sb_hub *h, sb_resume *rc, const uint8_t *p, size_t left) {
  while (left > 0) {
    sb_value pv[3];
    size_t used;
    if (rc->ncpos == SB_MAX_POSITIONS ||
        sb_schema_decode_prefix(h->sch.position, p, left, pv, &used, NULL, 0) ||
        pv[0].len == 0 || pv[0].len >= SB_STREAM_MAX)
      return 400;
    if (rc->ncpos % 16 == 0) {
      cpos *np = sb_realloc(h->a, rc->cpos, (rc->ncpos + 16) * sizeof(*np));
      if (!np) return 503;
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
  return 0;
}

/* The groups this connection is in as holding begins, each with its stream's position at that
 * moment. A group it joined before sending RESUME, which the resumed session did not have, has
 * no join position in the session; but every push of it up to now reached this connection live,
 * and every later one is held, so this position is where its replay starts. An engine that
 * cannot answer at once leaves epoch 0 (unknown: recovered:false). */
static int note_groups_before(sb_hub *h, sb_resume *rc, sb_hconn *hc) {
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
    size_t slen = sb_hub_stream_name(stream, 'g', g->name, g->name_len);
    if (!slen || h->engine->ops->position_now(h->engine, stream, slen, &b->offset, &b->epoch))
      b->offset = b->epoch = 0;
  }
  rc->nbefore = n;
  return 0;
}

static void on_session(void *ctx, int status, const sb_session_info *s);

/* Step 2 begins: the token goes to the engine; from here on pushes to the connection are
 * held. A take the engine refuses at once changed nothing: 503, the connection is still its
 * fresh session. */
static void start_take(sb_hub *h, sb_resume *rc, sb_hconn *hc, const char *token) {
  rc->hc = hc;
  hc->resume = rc; /* the connection's reference (refs is 1 from the start) */
  rc->refs++;      /* the engine call's */
  h->pending++;
  if (h->engine->ops->session_take(h->engine, token, sb_conn_identity(hc->conn), on_session,
                                   rc) != 0) {
    h->pending--;
    rc->refs--;
    resume_unavailable(h, rc);
  }
}

void sb_hub_on_resume(sb_hub *h, sb_hconn *hc, const sb_envelope *env) {
  if (hc->resume) return sb_hub_send_error(h, hc->conn, env->id, 409, "resume already in progress");
  sb_value v[2];
  char err[128];
  if (sb_schema_decode(h->sch.resume, env->body, env->body_len, v, err, sizeof(err)))
    return sb_hub_send_error(h, hc->conn, env->id, 400, err);
  if (v[0].len != 22)
    return sb_hub_send_error(h, hc->conn, env->id, 401,
                             "resume refused: unknown, used or expired token");
  sb_resume *rc = sb_malloc(h->a, sizeof(*rc));
  if (!rc) return sb_hub_send_error(h, hc->conn, env->id, 503, "out of memory");
  memset(rc, 0, sizeof(*rc));
  rc->refs = 1;
  rc->h = h;
  rc->req_id = env->id;
  uint16_t bad = parse_positions(h, rc, v[1].data, v[1].len);
  if (!bad && note_groups_before(h, rc, hc) != 0) bad = 503;
  if (bad) {
    resume_release(h, rc);
    return sb_hub_send_error(h, hc->conn, env->id, bad,
                             bad == 400 ? "malformed positions in RESUME" : "out of memory");
  }
  char token[23];
  memcpy(token, v[0].data, 22);
  token[22] = '\0';
  start_take(h, rc, hc, token);
}

/* ---- step 2: the session -------------------------------------------------------------- */

/* The take was refused or failed: 401 (no such token), 403 (another identity's), 503 (the
 * engine failed). The connection carries on as the fresh session this connection already is. */
static void take_refused(sb_hub *h, sb_resume *rc, int status) {
  if (status != SB_ENOTFOUND && status != SB_ENGINE_EIDENTITY) {
    resume_unavailable(h, rc);
    return;
  }
  sb_hconn *hc = rc->hc;
  uint32_t id = rc->req_id;
  int other = status == SB_ENGINE_EIDENTITY;
  resume_end(h, rc);
  sb_hub_send_error(h, hc->conn, id, other ? 403 : 401,
                    other ? "resume refused: token belongs to another identity"
                          : "resume refused: unknown, used or expired token");
}

/* The session's groups with their join positions, then their names, in one block: the session
 * info belongs to the engine and is only good until the next engine call. */
static sb_session_group *copy_groups(sb_hub *h, const sb_session_info *s) {
  size_t total = 0, off = 0;
  for (size_t i = 0; i < s->ngroups; i++) total += strlen(s->groups[i].name) + 1;
  sb_session_group *joined = sb_malloc(h->a, s->ngroups * sizeof(*joined) + total + 1);
  if (!joined) return NULL;
  char *names = (char *)(joined + s->ngroups);
  for (size_t i = 0; i < s->ngroups; i++) {
    size_t l = strlen(s->groups[i].name) + 1;
    memcpy(names + off, s->groups[i].name, l);
    joined[i] = s->groups[i];
    joined[i].name = names + off;
    off += l;
  }
  return joined;
}

/* The connection becomes the session's: an older connection of this node still holding it is
 * closed (4000), the id map points at this one under the session's id, the session is opened
 * for it, and the connection's own fresh session is closed (unless it is the one resumed: a
 * RESUME with the connection's own latest token). */
static int adopt_session(sb_hub *h, sb_hconn *hc, const char *conn_id) {
  sb_hub_take_over(h, conn_id, hc);
  char fresh[23];
  memcpy(fresh, hc->id, sizeof(fresh));
  /* A shutdown that began meanwhile closed the fresh session already (hconn.released); the
   * adopted one is this connection's to close when it goes. */
  int close_fresh = hc->owner && !hc->released && strcmp(fresh, conn_id) != 0;
  if (hc->owner) sb_map_del(&h->conns, hc->id, strlen(hc->id));
  memcpy(hc->id, conn_id, sizeof(hc->id));
  hc->owner = 1;
  hc->released = 0;
  int r = sb_map_put(&h->conns, hc->id, strlen(hc->id), hc);
  if (r == 0) r = h->engine->ops->session_open(h->engine, hc->id, sb_conn_identity(hc->conn));
  if (r != 0) {
    if (sb_map_get(&h->conns, hc->id, strlen(hc->id)) == hc)
      sb_map_del(&h->conns, hc->id, strlen(hc->id));
    hc->owner = 0;
  }
  /* In this order: closing a session may evict the oldest closed one, which must not be the
   * one being resumed. */
  if (close_fresh) h->engine->ops->session_closed(h->engine, fresh);
  return r;
}

/* The session's groups, joined here (not recorded again: the session has them with their
 * join positions), and the groups this connection joined before RESUME recorded in it. */
static void rejoin_groups(sb_hub *h, sb_hconn *hc, const sb_session_group *joined, size_t n) {
  for (uint32_t i = 0; i < hc->groups.n; i++)
    sb_hub_record_join(h, hc, hc->groups.refs[i].g->name, hc->groups.refs[i].g->name_len);
  for (size_t i = 0; i < n; i++)
    sb_hub_local_join(h, hc, joined[i].name, strlen(joined[i].name), 0);
}

static rpos *find_pos(sb_resume *rc, const char *stream, size_t slen) {
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
static int add_pos(sb_hub *h, sb_resume *rc, const char *stream, size_t slen, int direct,
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

/* The streams to replay: only the session's own, its groups and its direct stream, whatever
 * else the client names. A group starts from the client's position, else from the session's
 * join position, else from where it stood when holding began. */
static int plan_streams(sb_hub *h, sb_resume *rc, sb_hconn *hc, const sb_session_group *joined,
                        size_t n) {
  char stream[SB_STREAM_MAX];
  int r = 0;
  for (uint32_t i = 0; i < hc->groups.n && r == 0; i++) {
    sb_group *g = hc->groups.refs[i].g;
    const sb_session_group *j = NULL;
    for (size_t k = 0; k < n && !j; k++) {
      if (strcmp(joined[k].name, g->name) == 0) j = &joined[k];
    }
    for (size_t k = 0; k < rc->nbefore && !j; k++) {
      if (strcmp(rc->before[k].name, g->name) == 0) j = &rc->before[k];
    }
    size_t slen = sb_hub_stream_name(stream, 'g', g->name, g->name_len);
    if (slen) r = add_pos(h, rc, stream, slen, 0, j);
  }
  size_t dlen = sb_hub_stream_name(stream, 'c', hc->id, strlen(hc->id));
  if (r == 0) r = add_pos(h, rc, stream, dlen, 1, NULL);
  return r;
}

static void on_synced(void *ctx, int status);

/* Subscriptions first (the rejoined groups, the direct stream), then history: the engine's
 * barrier says when the subscriptions are live. */
static void start_sync(sb_hub *h, sb_resume *rc) {
  rc->cur = 0;
  rc->refs++;
  h->pending++;
  if (h->engine->ops->sync(h->engine, on_synced, rc) != 0) {
    h->pending--;
    rc->refs--;
    resume_unavailable(h, rc);
  }
}

static void on_session(void *ctx, int status, const sb_session_info *s) {
  sb_resume *rc = ctx;
  sb_hub *h = rc->h;
  h->pending--;
  sb_hconn *hc = rc->hc;
  if (!hc || hc->resume != rc) {
    /* The connection went away meanwhile. A session it took may be this node's now (a shared
     * engine's take moves it): closed, it expires like any other. */
    if (status == 0) h->engine->ops->session_closed(h->engine, s->conn_id);
    resume_release(h, rc);
    return;
  }
  /* The engine checked the identity before it spent the token (a refused attempt leaves the
   * owner's token usable); the check here only guards against an engine that did not. */
  if (status == 0 && strcmp(s->identity, sb_conn_identity(hc->conn)) != 0)
    status = SB_ENGINE_EIDENTITY;
  if (status != 0) {
    take_refused(h, rc, status);
    resume_release(h, rc);
    return;
  }
  char conn_id[23];
  snprintf(conn_id, sizeof(conn_id), "%s", s->conn_id);
  size_t ngroups = s->ngroups;
  sb_session_group *joined = copy_groups(h, s);
  int r = joined ? adopt_session(h, hc, conn_id) : SB_ENOMEM;
  if (r == 0) {
    sb_hub_subscribe_direct(h, hc);
    rejoin_groups(h, hc, joined, ngroups);
    r = plan_streams(h, rc, hc, joined, ngroups);
  }
  sb_free(h->a, joined);
  if (r == 0) r = sb_hub_new_token_and_hello(h, hc);
  if (r != 0) resume_abort(hc, "resume: out of memory");
  else start_sync(h, rc);
  resume_release(h, rc);
}

/* ---- steps 4 and 5: replay, release, RESUMED ----------------------------------------- */

static void on_synced(void *ctx, int status) {
  sb_resume *rc = ctx;
  sb_hub *h = rc->h;
  h->pending--;
  if (rc->hc && rc->hc->resume == rc) {
    if (status != 0) resume_unavailable(h, rc);
    else replay_run(h, rc);
  }
  resume_release(h, rc);
}

/* Step 5: release what was held, skipping what the replay already sent. */
static void release_held(sb_resume *rc) {
  for (size_t i = 0; i < rc->nheld; i++) {
    held *x = &rc->held[i];
    rpos *p = find_pos(rc, x->stream, x->slen);
    if (p && x->offset <= p->sent) continue;
    if (p) p->sent = x->offset;
    sb_hub_send_msg(rc->hc->conn, x->msg);
  }
}

/* RESUMED: per stream, recovered or not, and where the client stands now. */
static int send_resumed(sb_hub *h, sb_resume *rc, sb_hconn *hc) {
  size_t size = 0, off = 0, n;
  for (size_t i = 0; i < rc->npos; i++) size += 1 + 10 + rc->pos[i].slen + 17;
  uint8_t *body = sb_malloc(h->a, size ? size : 1);
  if (!body) return SB_ENOMEM;
  for (size_t i = 0; i < rc->npos; i++) {
    rpos *p = &rc->pos[i];
    sb_value v[4] = {{0, p->stream, p->slen}, {p->recovered, NULL, 0}, {p->sent, NULL, 0},
                     {p->cur_epoch, NULL, 0}};
    if (sb_schema_encode(h->sch.resumed, v, body + off, size - off, &n, NULL, 0) == 0) off += n;
  }
  sb_envelope env = {0};
  env.kind = SB_KIND_RESUMED;
  env.body = body;
  env.body_len = off;
  int r = sb_hub_send_env(h, hc->conn, &env);
  sb_free(h->a, body);
  return r;
}

static void resume_finish(sb_hub *h, sb_resume *rc) {
  sb_hconn *hc = rc->hc;
  release_held(rc);
  rc->refs++; /* resume_end lets go of the connection's reference; the RESUMED needs rc */
  resume_end(h, rc);
  int r = send_resumed(h, rc, hc);
  resume_release(h, rc);
  if (r != SB_SEND_OK && r != SB_SEND_BACKPRESSURE) {
    resume_abort(hc, "resume: RESUMED could not be sent");
    return;
  }
  if (h->opts.on_resume) h->opts.on_resume(hc->conn, h->opts.user);
}

/* Step 4 for one batch of one stream's history. */
static void on_history(void *ctx, int status, uint64_t epoch, uint64_t first, uint64_t head,
                       const sb_record *recs, size_t n) {
  sb_resume *rc = ctx;
  sb_hub *h = rc->h;
  h->pending--;
  if (!resume_live(rc)) {
    resume_release(h, rc); /* the connection went away (or is closing) meanwhile */
    return;
  }
  sb_hconn *hc = rc->hc;
  rpos *p = &rc->pos[rc->cur];
  if (status != 0) {
    resume_unavailable(h, rc);
    resume_release(h, rc);
    return;
  }
  if (!p->started) {
    p->started = 1;
    p->head = head;
    p->cur_epoch = epoch;
    /* Replay only when nothing the client missed has been lost. Epoch 0 with offset 0 means
     * "nothing seen yet": recoverable if the history starts at 1. */
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
    if (sb_hub_push_msg(h, p->stream, p->slen, epoch, &recs[i], &m) != 0) {
      resume_abort(hc, "resume: out of memory");
      break;
    }
    sb_hub_send_msg(hc->conn, m);
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
static void replay_run(sb_hub *h, sb_resume *rc) {
  for (;;) {
    if (!resume_live(rc)) return;
    sb_hconn *hc = rc->hc;
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
      rc->refs--;
      resume_unavailable(h, rc);
      return;
    }
    if (!rc->read_done) return; /* asynchronous: on_history continues */
  }
}

void sb_hub_resume_drained(sb_hub *h, sb_hconn *hc) {
  sb_resume *rc = hc->resume;
  if (!rc || !rc->paused) return;
  rc->paused = 0;
  rc->refs++;
  replay_run(h, rc);
  resume_release(h, rc);
}

/* Step 3: a push while resuming is held. What is held counts against the send-queue limit:
 * past it the connection is a slow consumer. */
void sb_hub_resume_hold(sb_hub *h, sb_hconn *hc, const char *stream, size_t slen,
                        uint64_t offset, sb_msg *m) {
  sb_resume *rc = hc->resume;
  size_t cost = sizeof(held) + sb_msg_len(m);
  if (hc->slow || slen >= SB_STREAM_MAX) return;
  if (rc->held_bytes + cost > h->srv->opts.max_queued_bytes) {
    static const char why[] = "slow consumer: too much held during resume";
    hc->slow = 1;
    sb_conn_close(hc->conn, SB_CLOSE_TRY_AGAIN, why, sizeof why - 1);
    return;
  }
  if (rc->nheld == rc->heldcap) {
    size_t cap = rc->heldcap ? rc->heldcap * 2 : 16;
    held *p = sb_realloc(h->a, rc->held, cap * sizeof(*p));
    if (!p) {
      static const char why[] = "out of memory during resume";
      hc->slow = 1;
      sb_conn_close(hc->conn, SB_CLOSE_TRY_AGAIN, why, sizeof why - 1);
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

void sb_hub_resume_detach(sb_hub *h, sb_hconn *hc) {
  if (hc->resume) resume_end(h, hc->resume);
}

/* ---- ACK ------------------------------------------------------------------------------ */

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
void sb_hub_on_ack(sb_hub *h, sb_hconn *hc, const sb_envelope *env) {
  const uint8_t *p = env->body;
  size_t left = env->body_len;
  char direct[SB_STREAM_MAX];
  size_t dlen = sb_hub_stream_name(direct, 'c', hc->id, strlen(hc->id));
  uint64_t best = 0, best_epoch = 0;
  while (left > 0) {
    sb_value pv[3];
    size_t used;
    if (sb_schema_decode_prefix(h->sch.position, p, left, pv, &used, NULL, 0))
      return sb_hub_send_error(h, hc->conn, env->id, 400, "malformed positions in ACK");
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
