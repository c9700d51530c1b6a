/*
 * history.c — sb_hub_history: a group stream's stored messages with its position, answered
 * later, for a handler that returns a group's state (GET /rooms/:id/messages) so that its
 * client listens from exactly there. It works the same with every engine: sb_hub_position
 * cannot answer at once with an asynchronous one, this can.
 *
 * "The newest max" (from 0) takes two reads: one past the head (no records: the stream's
 * epoch, first and head), then from head - max + 1. Each read answers one state of the stream;
 * what the answer reports (records, epoch, head) is the second read's, so a message published
 * in between is either in it or after its `offset`. The answer is copied into one block (the
 * engine's records are borrowed for its callback) and reported on a later loop turn.
 */
#include <string.h>

#include "hub/resume.h"

typedef struct history_req {
  sb_hub_done d; /* first: the deferral frees the request through it */
  sb_hub_history_cb cb;
  void *user;
  size_t max;
  int newest;         /* from 0: the first read looks for the head */
  sb_history hist;    /* the answer */
  sb_history_entry *entries; /* one block: the entries, then their urls and bodies */
  char stream[SB_STREAM_MAX];
  size_t slen;
} history_req;

static void history_fire(int status, void *user) {
  history_req *q = user;
  sb_history empty = {0};
  q->cb(status, status == 0 ? &q->hist : &empty, q->user);
  sb_free(q->d.h->a, q->entries);
}

static void history_fail(history_req *q, int status) {
  q->d.status = status;
  sb_hub_done_later(&q->d);
}

/* Copies the records, decoded (method, url, body), into one block. */
static int history_copy(history_req *q, uint64_t epoch, uint64_t first, uint64_t head,
                        const sb_record *recs, size_t n) {
  sb_hub *h = q->d.h;
  size_t bytes = (n ? n : 1) * sizeof(sb_history_entry);
  for (size_t i = 0; i < n; i++) bytes += recs[i].len; /* url and body fit in the record */
  q->entries = sb_malloc(h->a, bytes);
  if (!q->entries) return SB_ENOMEM;
  char *text = (char *)(q->entries + (n ? n : 1));
  for (size_t i = 0; i < n; i++) {
    sb_value x[3];
    if (sb_schema_decode(h->sch.record, recs[i].data, recs[i].len, x, NULL, 0) != 0)
      return SB_EIO; /* not a record a hub stored */
    sb_history_entry *e = &q->entries[i];
    e->offset = recs[i].offset;
    e->time_ms = recs[i].time_ms;
    e->method = (sb_method)x[0].u;
    memcpy(text, x[1].data, x[1].len);
    e->url = text;
    e->url_len = x[1].len;
    text += x[1].len;
    memcpy(text, x[2].data, x[2].len);
    e->body = text;
    e->body_len = x[2].len;
    text += x[2].len;
  }
  q->hist = (sb_history){epoch, n ? recs[n - 1].offset : head, first, head, q->entries, n};
  return 0;
}

static void on_read(void *ctx, int status, uint64_t epoch, uint64_t first, uint64_t head,
                    const sb_record *recs, size_t n) {
  history_req *q = ctx;
  sb_hub *h = q->d.h;
  if (status != 0) return history_fail(q, status);
  if (q->newest) { /* the head is known: now the newest `max` */
    q->newest = 0;
    uint64_t from = head >= q->max ? head - q->max + 1 : 1;
    if (from < first) from = first;
    int r = h->engine->ops->read(h->engine, q->stream, q->slen, from, q->max, on_read, q);
    if (r != 0) history_fail(q, r);
    return;
  }
  int r = history_copy(q, epoch, first, head, recs, n);
  if (r != 0) {
    sb_free(h->a, q->entries);
    q->entries = NULL;
  }
  history_fail(q, r); /* reported either way: 0 or the failure */
}

int sb_hub_history(sb_hub *h, const char *group, uint64_t from, size_t max,
                   sb_hub_history_cb cb, void *user) {
  if (!h || !group || !cb || max == 0) return SB_EINVAL;
  size_t gl = strlen(group);
  history_req *q = NULL;
  if (!sb_hub_valid_group(group, gl)) return SB_EINVAL;
  if (max > h->opts.history_max) max = h->opts.history_max ? h->opts.history_max : 1;
  q = sb_malloc(h->a, sizeof(*q));
  if (!q) return SB_ENOMEM;
  memset(q, 0, sizeof(*q));
  q->d = (sb_hub_done){NULL, h, history_fire, q, 0};
  q->cb = cb;
  q->user = user;
  q->max = max;
  q->newest = from == 0;
  q->slen = sb_hub_stream_name(q->stream, 'g', group, gl);
  if (!q->slen) {
    sb_free(h->a, q);
    return SB_EINVAL;
  }
  h->pending++;
  int r = h->engine->ops->read(h->engine, q->stream, q->slen, q->newest ? UINT64_MAX : from,
                               q->newest ? 1 : max, on_read, q);
  if (r != 0) {
    h->pending--;
    sb_free(h->a, q);
  }
  return r;
}
