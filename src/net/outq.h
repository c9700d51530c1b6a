/*
 * outq.h — a connection's queue of bytes to write, and prepared messages.
 *
 * The queue is a list of items, each either a run of bytes owned by the queue (copied in by a
 * send, stored back to back in one growable buffer) or a reference to a prepared message
 * (sb_msg, shared by every connection it was sent to, never copied). Consecutive owned runs are
 * contiguous in the buffer, so they leave as one iovec. See server.c for how the queue is
 * flushed (corked writev once per loop turn) and how it is handed to libuv when the kernel
 * refuses part of it.
 */
#ifndef SB_NET_OUTQ_H
#define SB_NET_OUTQ_H

#include <stddef.h>
#include <stdint.h>

#include "common/common.h"

struct sb_msg {
  uint32_t refs;
  uint32_t hdr_len;            /* frame header bytes at the front of data[] */
  size_t len;                  /* header + payload */
  const sb_allocator *alloc;
  uint8_t data[];
};

typedef struct sb_outq_item {
  sb_msg *msg; /* NULL: `len` owned bytes in the buffer; else a reference to msg */
  size_t len;
} sb_outq_item;

typedef struct sb_outq {
  uint8_t *buf;          /* owned bytes, items in order */
  size_t buf_len, buf_cap;
  size_t own_off;        /* offset in buf of the first unwritten owned byte */
  sb_outq_item *items;
  uint32_t head, n, cap; /* items[head..n) are unwritten */
  size_t head_off;       /* bytes of items[head] already written */
  size_t bytes;          /* unwritten bytes in all */
  size_t msg_cost;       /* what the referenced messages occupy (SB_MSG_COST each) */
} sb_outq;

/* The memory a referenced message holds: its bytes, its struct and the allocator's own
 * overhead (about two words with glibc). A message shared by many connections is counted in
 * full by each: the limit is per connection, and the last reference may be any one's. */
#define SB_MSG_COST(m) ((m)->len + sizeof(sb_msg) + 2 * sizeof(size_t))

/* Appends a frame (header + payload, both copied) as owned bytes. */
int sb_outq_push_frame(sb_outq *q, const sb_allocator *a, const uint8_t *hdr, size_t hlen,
                       const void *payload, size_t plen);
/* Appends raw bytes (an HTTP response). */
int sb_outq_push_bytes(sb_outq *q, const sb_allocator *a, const void *data, size_t len);
/* Appends a reference to msg (taking a new reference). */
int sb_outq_push_msg(sb_outq *q, const sb_allocator *a, sb_msg *msg);

/* Fills up to `max` iovecs (as {base,len} pairs through the callback-free struct below) with
 * the unwritten data; returns how many. */
typedef struct sb_iov {
  void *base;
  size_t len;
} sb_iov;
unsigned sb_outq_iov(const sb_outq *q, sb_iov *iov, unsigned max);

/* Marks `n` bytes as written, releasing messages that are done. Resets the queue when empty. */
void sb_outq_consume(sb_outq *q, size_t n);

/* The memory the queue holds: its byte buffer and item array as allocated (written parts
 * included, until they are dropped) and the messages it references. This, not the unwritten
 * byte count, is what max_queued_bytes bounds. */
size_t sb_outq_cost(const sb_outq *q);

/* Releases everything (drops message references, frees buffers). */
void sb_outq_free(sb_outq *q, const sb_allocator *a);

static inline int sb_outq_empty(const sb_outq *q) { return q->bytes == 0; }

#endif
