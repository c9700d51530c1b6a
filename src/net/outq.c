#include <string.h>

#include "net/outq.h"

/* Items already written stay in front of items[head] until the queue empties; a queue that
 * never quite empties (a steady, slow reader) would keep them forever, so they are dropped
 * before the array grows. */
static int reserve_items(sb_outq *q, const sb_allocator *a) {
  if (q->n < q->cap) return 0;
  if (q->head > 0) {
    memmove(q->items, q->items + q->head, (q->n - q->head) * sizeof(*q->items));
    q->n -= q->head;
    q->head = 0;
    if (q->n < q->cap) return 0;
  }
  if (q->cap >= UINT32_MAX / 2) return SB_ENOMEM;
  uint32_t cap = q->cap ? q->cap * 2 : 8;
  sb_outq_item *p = sb_realloc(a, q->items, cap * sizeof(*p));
  if (!p) return SB_ENOMEM;
  q->items = p;
  q->cap = cap;
  return 0;
}

/* The same for owned bytes: those already written are dropped (the unwritten rest moves to
 * the front) before the buffer grows. It grows by doubling while small and by SB_OUTQ_STEP
 * once large, and never past what is needed by more than that, so that the buffer's size,
 * which is what the queue limit counts, stays close to the bytes it holds. */
#define SB_OUTQ_STEP (1024 * 1024)

static int reserve_bytes(sb_outq *q, const sb_allocator *a, size_t extra) {
  if (q->buf_len + extra <= q->buf_cap) return 0;
  if (q->own_off > 0) {
    memmove(q->buf, q->buf + q->own_off, q->buf_len - q->own_off);
    q->buf_len -= q->own_off;
    q->own_off = 0;
    if (q->buf_len + extra <= q->buf_cap) return 0;
  }
  if (extra > SIZE_MAX - q->buf_len) return SB_ENOMEM;
  size_t need = q->buf_len + extra;
  size_t cap = q->buf_cap ? q->buf_cap : 256;
  cap = cap < SB_OUTQ_STEP ? cap * 2 : cap + SB_OUTQ_STEP;
  if (cap < need) cap = need;
  uint8_t *p = sb_realloc(a, q->buf, cap);
  if (!p) return SB_ENOMEM;
  q->buf = p;
  q->buf_cap = cap;
  return 0;
}

/* Owned bytes extend the last item when it is owned too: they are contiguous in buf. */
static int push_owned(sb_outq *q, const sb_allocator *a, size_t len) {
  if (q->n > q->head && q->items[q->n - 1].msg == NULL) {
    q->items[q->n - 1].len += len;
  } else {
    if (reserve_items(q, a)) return SB_ENOMEM;
    q->items[q->n].msg = NULL;
    q->items[q->n].len = len;
    q->n++;
  }
  q->bytes += len;
  return 0;
}

int sb_outq_push_frame(sb_outq *q, const sb_allocator *a, const uint8_t *hdr, size_t hlen,
                       const void *payload, size_t plen) {
  if (reserve_bytes(q, a, hlen + plen) || reserve_items(q, a)) return SB_ENOMEM;
  memcpy(q->buf + q->buf_len, hdr, hlen);
  if (plen) memcpy(q->buf + q->buf_len + hlen, payload, plen);
  q->buf_len += hlen + plen;
  return push_owned(q, a, hlen + plen);
}

int sb_outq_push_bytes(sb_outq *q, const sb_allocator *a, const void *data, size_t len) {
  return sb_outq_push_frame(q, a, data, len, NULL, 0);
}

int sb_outq_push_msg(sb_outq *q, const sb_allocator *a, sb_msg *msg) {
  if (reserve_items(q, a)) return SB_ENOMEM;
  msg->refs++;
  q->msg_cost += SB_MSG_COST(msg);
  q->items[q->n].msg = msg;
  q->items[q->n].len = msg->len;
  q->n++;
  q->bytes += msg->len;
  return 0;
}

unsigned sb_outq_iov(const sb_outq *q, sb_iov *iov, unsigned max) {
  unsigned k = 0;
  size_t own = q->own_off, skip = q->head_off;
  for (uint32_t i = q->head; i < q->n && k < max; i++) {
    const sb_outq_item *it = &q->items[i];
    if (it->msg) {
      iov[k].base = it->msg->data + skip;
      iov[k].len = it->len - skip;
    } else {
      iov[k].base = q->buf + own + skip;
      iov[k].len = it->len - skip;
      own += it->len;
    }
    skip = 0;
    k++;
  }
  return k;
}

static void msg_release(sb_msg *m) {
  if (--m->refs == 0) sb_free(m->alloc, m);
}

void sb_outq_consume(sb_outq *q, size_t n) {
  q->bytes -= n;
  while (n > 0) {
    sb_outq_item *it = &q->items[q->head];
    size_t left = it->len - q->head_off;
    if (n < left) {
      q->head_off += n;
      break;
    }
    n -= left;
    if (it->msg) {
      q->msg_cost -= SB_MSG_COST(it->msg);
      msg_release(it->msg);
    }
    else q->own_off += it->len;
    q->head++;
    q->head_off = 0;
  }
  if (q->bytes == 0) {
    /* Everything left: keep the buffers for the next burst (the sweep frees idle ones). */
    q->head = q->n = 0;
    q->head_off = q->own_off = q->buf_len = 0;
  }
}

void sb_outq_free(sb_outq *q, const sb_allocator *a) {
  for (uint32_t i = q->head; i < q->n; i++) {
    if (q->items[i].msg) msg_release(q->items[i].msg);
  }
  sb_free(a, q->items);
  sb_free(a, q->buf);
  memset(q, 0, sizeof(*q));
}

size_t sb_outq_cost(const sb_outq *q) {
  return q->buf_cap + (size_t)q->cap * sizeof(*q->items) + q->msg_cost;
}
