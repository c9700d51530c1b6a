/*
 * resume.h — internal to the hub: what hub.c and resume.c share.
 *
 * hub.c holds connections by id, groups, delivery, HELLO, the take-over of a session and the
 * hub's life; resume.c holds the RESUME merge and ACK. Both see the hub and its per-connection
 * state, declared here; each side's calls into the other are listed below it.
 */
#ifndef SB_HUB_RESUME_H
#define SB_HUB_RESUME_H

#include <stddef.h>
#include <stdint.h>

#include "common/map.h"
#include "engine/engine.h"
#include "hub/envelope.h"
#include "hub/groups.h"
#include "hub/hub.h"
#include "net/net.h"

#define SB_STREAM_MAX 256 /* "g:<group>" or "c:<id>", with its NUL */
#define SB_HUB_SCHEMAS 16

typedef struct sb_resume sb_resume; /* a resume in progress (resume.c) */
/* An outcome for the application, reported on the next loop turn (hub.c, "Deferred"): cb
 * runs with status and user, then the record is freed with the hub's allocator (a larger
 * record that starts with it is freed whole). The caller counts it in h->pending. */
typedef struct sb_hub_done {
  struct sb_hub_done *next;
  sb_hub *h;
  sb_hub_done_cb cb;
  void *user;
  int status;
} sb_hub_done;

/* The hub's state of one connection (conn->hub). */
typedef struct sb_hconn {
  sb_conn *conn;
  char id[23];
  uint8_t owner; /* this connection holds `id` in the map and in the engine's session */
  uint8_t slow;  /* already closed for being slow */
  uint8_t closing; /* the close callback runs: no more joins */
  uint8_t user_opened; /* the application's on_open ran, so its on_close must */
  uint8_t released;    /* its session was closed in the engine at shutdown already */
  char sub_id[23]; /* the id whose direct stream this connection subscribed, or "" */
  sb_glist groups;
  sb_resume *resume; /* while resuming: pushes to the connection are held */
} sb_hconn;

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
  sb_map conns;  /* id → sb_hconn (the owner) */
  sb_groups groups;
  named_schema schemas[SB_HUB_SCHEMAS];
  size_t nschemas, schemas_bytes;
  size_t pending; /* engine calls with a callback still to come, outcomes not yet reported,
                     and the deferral handle while it is open */
  void *app;      /* the rest layer, when installed */
  sb_hub_app_message_fn app_message;
  sb_hub_app_close_fn app_close;
  uint64_t last_tick;
  /* Outcomes for the application, reported on the next loop turn (hub.c, "Deferred"). */
  sb_hub_done *done_first, *done_last;
  uv_idle_t done_idle;
  uint8_t done_state; /* 0: no handle, 1: started, 2: closing */
};

static inline sb_hconn *sb_hub_hconn(const sb_conn *c) { return c ? c->hub : NULL; }

/* ---- hub.c, for resume.c ---------------------------------------------------------------- */

/* "<prefix>:<name>" into out (SB_STREAM_MAX bytes); its length, or 0 if it does not fit. */
size_t sb_hub_stream_name(char *out, char prefix, const char *name, size_t n);
/* Queues a message on a connection; one that cannot take it is closed as a slow consumer. */
int sb_hub_send_msg(sb_conn *c, sb_msg *m);
int sb_hub_send_env(sb_hub *h, sb_conn *c, const sb_envelope *env);
void sb_hub_send_error(sb_hub *h, sb_conn *c, uint32_t id, uint16_t status, const char *text);
/* The PUSH envelope of a stored record, framed. */
int sb_hub_push_msg(sb_hub *h, const char *stream, size_t slen, uint64_t epoch,
                    const sb_record *rec, sb_msg **out);
/* Joins the connection to a group on this node; with `record`, also in its session (with the
 * group stream's position now as the join position). */
int sb_hub_local_join(sb_hub *h, sb_hconn *hc, const char *name, size_t n, int record);
void sb_hub_record_join(sb_hub *h, sb_hconn *hc, const char *name, size_t n);
/* Subscribes the connection's direct stream (c:<its id>), dropping an earlier one. */
void sb_hub_subscribe_direct(sb_hub *h, sb_hconn *hc);
/* A fresh single-use token for the connection's session, announced in a HELLO. */
int sb_hub_new_token_and_hello(sb_hub *h, sb_hconn *hc);
/* Queues an outcome for the next loop turn. */
void sb_hub_done_later(sb_hub_done *d);
/* 1 for a group name the hub accepts: 1..200 bytes of UTF-8. */
int sb_hub_valid_group(const char *g, size_t n);
/* The connection of this node holding session `conn_id`, unless it is `keep`, loses it: out
 * of the id map, no longer the owner (its close does not close the session), closed with
 * 4000. Both a resume on this node and the engine's `taken` hook come here. */
void sb_hub_take_over(sb_hub *h, const char *conn_id, const sb_hconn *keep);

/* ---- resume.c, for hub.c ---------------------------------------------------------------- */

/* The RESUME and ACK envelopes of a connection. */
void sb_hub_on_resume(sb_hub *h, sb_hconn *hc, const sb_envelope *env);
void sb_hub_on_ack(sb_hub *h, sb_hconn *hc, const sb_envelope *env);
/* A push for a connection that is resuming: held until its replay is done (a reference). */
void sb_hub_resume_hold(sb_hub *h, sb_hconn *hc, const char *stream, size_t slen,
                        uint64_t offset, sb_msg *m);
/* The connection's send queue drained: a paused replay goes on. */
void sb_hub_resume_drained(sb_hub *h, sb_hconn *hc);
/* The connection closes: its resume (if any) lets go of it. */
void sb_hub_resume_detach(sb_hub *h, sb_hconn *hc);

#endif
