/*
 * server.c — the net layer: libuv loop glue, accept, the loop-wide read buffer, the corked
 * write path and the sweep timer.
 *
 * The write path, in full:
 *   1. A send frames its message into the connection's queue (owned bytes, copied; or a
 *      reference to a prepared message) and puts the connection on the server's dirty list.
 *      Nothing is written yet, so everything a loop turn produces for one socket is corked.
 *   2. Once per loop turn, after I/O callbacks (a uv_check_t), every dirty connection is
 *      flushed with uv_try_write: one writev of all its queued items.
 *   3. Whatever the kernel refuses is handed to one uv_write() together with the queue that
 *      holds it: the queue moves into an sb_wreq, so later sends start a fresh queue and can
 *      never move memory libuv is writing from. No data is copied for that, and there is at
 *      most one uv_write_t per connection, and only while the socket is backed up.
 *   4. When that write completes, anything queued meanwhile is flushed the same way and, if a
 *      send had reported BACKPRESSURE, the drain callback fires.
 *
 * Reads: every connection's alloc callback hands out the same server-wide buffer; libuv calls
 * the read callback synchronously after each read, and the ws layer parses (and unmasks) frames
 * in place before returning, so the buffer is free again for the next socket.
 *
 * Timers: one coarse timer walks all connections (handshake, idle-ping and close deadlines),
 * so that no connection owns a timer handle.
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "common/map.h"
#include "net/net.h"

#define SB_READBUF (256 * 1024)
#define SB_IOV_BATCH 64

static void release_addr(sb_conn *c);

uint32_t sb_net_now(const sb_server *s) { return (uint32_t)uv_now(s->loop); }

static void set_error(sb_server *s, const char *what, int uverr) {
  snprintf(s->last_error, sizeof(s->last_error), "%s: %s", what, uv_strerror(uverr));
}

static int map_uv_error(int uverr) {
  switch (uverr) {
    case UV_ENOMEM: return SB_ENOMEM;
    case UV_EADDRINUSE: return SB_EADDRINUSE;
    case UV_EINVAL: return SB_EINVAL;
    default: return SB_EIO;
  }
}

/* Descriptors beyond the connections: the listener, libuv's own (its loop, its reserve for
 * accepting when out of descriptors), and what the application opens (files, Redis). */
#define SB_FD_RESERVE 64

static size_t default_max_connections(void) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0 || rl.rlim_cur == RLIM_INFINITY ||
      rl.rlim_cur > 1000000 + SB_FD_RESERVE)
    return 1000000;
  return rl.rlim_cur > 2 * SB_FD_RESERVE ? (size_t)rl.rlim_cur - SB_FD_RESERVE
                                         : SB_MAX((size_t)rl.rlim_cur / 2, (size_t)1);
}

void sb_server_options_init(sb_server_options *o) {
  memset(o, 0, sizeof(*o));
  o->max_header_bytes = 16 * 1024;
  o->max_message_bytes = 16 * 1024 * 1024;
  o->max_queued_bytes = 16 * 1024 * 1024 + 64 * 1024;
  o->handshake_timeout_ms = 10000;
  o->idle_timeout_ms = 60000;
  o->close_timeout_ms = 5000;
  o->shutdown_spread_ms = 2000;
  o->backlog = 1024;
  o->refresh_before_ms = 30000;
  o->max_body_bytes = 1024 * 1024;
  o->keepalive_timeout_ms = 5000;
  o->message_timeout_ms = 30000;
  o->max_connections = default_max_connections();
  o->max_connections_per_address = 256;
}

int sb_server_new(sb_server **out, uv_loop_t *loop, const sb_server_options *opts) {
  *out = NULL;
  if (!loop || !opts) return SB_EINVAL;
  const sb_allocator *a = opts->allocator ? opts->allocator : &sb_default_allocator;
  if (!a->malloc || !a->realloc || !a->free) return SB_EINVAL;
  sb_server *s = sb_malloc(a, sizeof(*s));
  if (!s) return SB_ENOMEM;
  memset(s, 0, sizeof(*s));
  s->alloc = *a;
  s->loop = loop;
  s->opts = *opts;
  sb_server_options def;
  sb_server_options_init(&def);
  /* A zero limit means "the default". */
  if (!s->opts.max_header_bytes) s->opts.max_header_bytes = def.max_header_bytes;
  if (!s->opts.max_message_bytes) s->opts.max_message_bytes = def.max_message_bytes;
  if (!s->opts.max_queued_bytes) s->opts.max_queued_bytes = def.max_queued_bytes;
  if (!s->opts.handshake_timeout_ms) s->opts.handshake_timeout_ms = def.handshake_timeout_ms;
  if (!s->opts.idle_timeout_ms) s->opts.idle_timeout_ms = def.idle_timeout_ms;
  if (!s->opts.close_timeout_ms) s->opts.close_timeout_ms = def.close_timeout_ms;
  if (!s->opts.shutdown_spread_ms) s->opts.shutdown_spread_ms = def.shutdown_spread_ms;
  if (s->opts.backlog <= 0) s->opts.backlog = def.backlog;
  if (!s->opts.refresh_before_ms) s->opts.refresh_before_ms = def.refresh_before_ms;
  if (!s->opts.max_body_bytes) s->opts.max_body_bytes = def.max_body_bytes;
  if (!s->opts.keepalive_timeout_ms) s->opts.keepalive_timeout_ms = def.keepalive_timeout_ms;
  if (!s->opts.message_timeout_ms) s->opts.message_timeout_ms = def.message_timeout_ms;
  if (!s->opts.max_connections) s->opts.max_connections = def.max_connections;
  if (!s->opts.max_connections_per_address)
    s->opts.max_connections_per_address = def.max_connections_per_address;
  s->opts.allocator = &s->alloc;
  s->hook_user = opts->user;
  sb_map_init_borrowed(&s->addrs, &s->alloc); /* keys live in the counts */
  if (opts->allowed_origins_count) {
    if (!opts->allowed_origins) {
      sb_free(a, s);
      return SB_EINVAL;
    }
    s->origins = sb_malloc(a, opts->allowed_origins_count * sizeof(char *));
    if (!s->origins) {
      sb_free(a, s);
      return SB_ENOMEM;
    }
    for (size_t i = 0; i < opts->allowed_origins_count; i++) {
      size_t n = strlen(opts->allowed_origins[i]) + 1;
      s->origins[i] = sb_malloc(a, n);
      if (!s->origins[i]) {
        while (i--) sb_free(a, s->origins[i]);
        sb_free(a, s->origins);
        sb_free(a, s);
        return SB_ENOMEM;
      }
      memcpy(s->origins[i], opts->allowed_origins[i], n);
    }
    s->norigins = opts->allowed_origins_count;
  }
  s->opts.allowed_origins = NULL; /* the copy above is what counts */
  /* The sweep runs often enough to honour the shortest timeout within a quarter of it. */
  unsigned shortest = SB_MIN(SB_MIN(s->opts.handshake_timeout_ms, s->opts.keepalive_timeout_ms),
                             SB_MIN(s->opts.idle_timeout_ms, s->opts.close_timeout_ms));
  shortest = SB_MIN(shortest, s->opts.message_timeout_ms);
  s->sweep_ms = SB_MAX(10u, SB_MIN(1000u, shortest / 4));
  s->readbuf_len = SB_READBUF;
  s->readbuf = sb_malloc(a, s->readbuf_len);
  if (!s->readbuf) {
    for (size_t i = 0; i < s->norigins; i++) sb_free(a, s->origins[i]);
    sb_free(a, s->origins);
    sb_free(a, s);
    return SB_ENOMEM;
  }
  sb_ignore_sigpipe(); /* a client hanging up must not kill the server */
  *out = s;
  return 0;
}

static void handle_closed(uv_handle_t *h) {
  sb_server *s = h->data;
  if (--s->handles_open == 0 && s->shutdown_cb) s->shutdown_cb(s, s->shutdown_user);
}

static void maybe_finish(sb_server *s) {
  if (!s->shutting_down || s->nconns > 0 || !s->handles_started) return;
  s->handles_started = 0;
  uv_close((uv_handle_t *)&s->check, handle_closed);
  uv_close((uv_handle_t *)&s->sweep, handle_closed);
}

/* ---- connections ---------------------------------------------------------------------- */

/* Busy-state blocks come from a small per-server pool: the block and its small queue buffers
 * are reused as they are, so that connections that come and go (and the HELLO of each new
 * one) do not allocate and free them every time. A connection keeps its block while it is
 * busy, so steady traffic never allocates; only members quiet for a whole sweep interval get
 * theirs back. The pool is small so that it does not show as memory per idle connection. */
#define SB_IO_POOL 256
#define SB_IO_KEEP_BUF 4096

int sb_net_io(sb_conn *c) {
  if (!c->io) {
    sb_server *s = c->srv;
    sb_conn_io *io = s->io_pool;
    if (io) {
      s->io_pool = (sb_conn_io *)io->msg;
      s->io_pooled--;
      io->msg = NULL;
    } else {
      io = sb_malloc(&s->alloc, sizeof(*io));
      if (!io) return SB_ENOMEM;
      memset(io, 0, sizeof(*io));
    }
    c->io = io;
  }
  c->flags |= SB_F_IO_TOUCHED;
  return 0;
}

/* Memory a connection gave back. A queue or a message that grew large is usually carved from
 * the heap in many pieces or, past glibc's adaptive mmap threshold, from the heap as one piece
 * once a first large block was freed; either way free() keeps it in the process. The sweep
 * hands it back to the system (sb_alloc_give_back) once enough was freed, so that the memory a
 * flood of slow consumers took is not kept for good after they left. */
#define SB_TRIM_AFTER (4 * 1024 * 1024)

void sb_net_note_freed(sb_server *s, size_t bytes) {
  s->freed_since_trim += bytes;
}

static void maybe_trim(sb_server *s) {
  if (s->freed_since_trim < SB_TRIM_AFTER) return;
  s->freed_since_trim = 0;
  sb_alloc_give_back(&s->alloc);
}

void sb_net_io_release(sb_conn *c) {
  sb_conn_io *io = c->io;
  if (!io) return;
  sb_server *s = c->srv;
  c->io = NULL;
  sb_net_note_freed(s, io->msg_cap + io->in_cap + sb_outq_cost(&io->out));
  sb_free(&s->alloc, io->msg);
  io->msg = NULL;
  io->msg_len = io->msg_cap = 0;
  io->ctl_len = 0;
  sb_free(&s->alloc, io->in);
  io->in = NULL;
  io->in_off = io->in_len = io->in_cap = 0;
  if (s->io_pooled >= SB_IO_POOL || io->out.bytes || io->out.buf_cap > SB_IO_KEEP_BUF ||
      io->out.cap > 64) {
    sb_outq_free(&io->out, &s->alloc);
    sb_free(&s->alloc, io);
    return;
  }
  /* Pooled with its (small, empty) queue buffers; linked through msg. */
  io->msg = (uint8_t *)s->io_pool;
  s->io_pool = io;
  s->io_pooled++;
}

int sb_net_stash(sb_conn *c, const uint8_t *data, size_t len) {
  if (sb_net_io(c)) return SB_ENOMEM;
  sb_conn_io *io = c->io;
  if (io->in_off == io->in_len) io->in_off = io->in_len = 0;
  if (io->in_len + len > io->in_cap && io->in_off) {
    memmove(io->in, io->in + io->in_off, io->in_len - io->in_off);
    io->in_len -= io->in_off;
    io->in_off = 0;
  }
  if (io->in_len + len > io->in_cap) {
    size_t cap = SB_MAX(io->in_len + len, SB_MAX((size_t)4096, io->in_cap * 2));
    uint8_t *p = sb_realloc(&c->srv->alloc, io->in, cap);
    if (!p) return SB_ENOMEM;
    io->in = p;
    io->in_cap = cap;
  }
  memcpy(io->in + io->in_len, data, len);
  io->in_len += len;
  return 0;
}

int sb_net_io_idle(const sb_conn *c) {
  const sb_conn_io *io = c->io;
  return io && !io->wreq && io->out.bytes == 0 && io->msg_len == 0 && io->in_off == io->in_len &&
         !c->fp.in_payload &&
         c->fp.hdr_len == 0 && !c->fp.fragmented;
}

void sb_net_want_drain(sb_conn *c) {
  c->flags |= SB_F_BACKPRESSURE;
  sb_net_mark_dirty(c);
}

void sb_net_mark_dirty(sb_conn *c) {
  if (c->flags & SB_F_DIRTY) return;
  c->flags |= SB_F_DIRTY;
  c->dirty_next = c->srv->dirty;
  c->srv->dirty = c;
}

size_t sb_net_queued(const sb_conn *c) {
  return (c->io ? c->io->out.bytes : 0) + c->tcp.write_queue_size;
}

size_t sb_net_queued_cost(const sb_conn *c) {
  return c->io ? sb_outq_cost(&c->io->out) + (c->io->wreq ? sb_outq_cost(&c->io->wreq->out) : 0)
               : 0;
}

static void conn_closed(uv_handle_t *h) {
  sb_conn *c = (sb_conn *)h;
  sb_server *s = c->srv;
  if (c->flags & SB_F_DIRTY) { /* rare: unlink from the dirty list */
    for (sb_conn **p = &s->dirty; *p; p = &(*p)->dirty_next) {
      if (*p == c) {
        *p = c->dirty_next;
        break;
      }
    }
  }
  sb_ws_free(c);
  release_addr(c);
  if (c->flags & SB_F_REJECTED) s->nrefusing--;
  if (c->prev) c->prev->next = c->next;
  else s->conns = c->next;
  if (c->next) c->next->prev = c->prev;
  s->nconns--;
  sb_free(&s->alloc, c);
  maybe_finish(s);
}

void sb_net_close(sb_conn *c) {
  if (c->state == SB_CONN_CLOSED) return;
  c->state = SB_CONN_CLOSED;
  uv_close((uv_handle_t *)&c->tcp, conn_closed);
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  sb_conn *c = (sb_conn *)req->handle;
  sb_free(&c->srv->alloc, req);
  if (status < 0 && status != UV_ECANCELED) sb_net_close(c);
}

void sb_net_shutdown(sb_conn *c) {
  if (c->flags & SB_F_SHUTDOWN_SENT || c->state == SB_CONN_CLOSED) return;
  c->flags |= SB_F_SHUTDOWN_SENT;
  uv_shutdown_t *req = sb_malloc(&c->srv->alloc, sizeof(*req));
  if (!req || uv_shutdown(req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
    sb_free(&c->srv->alloc, req);
    sb_net_close(c);
  }
}

/* Payloads from this size on are written at once, straight from the caller's buffer, together
 * with whatever is queued before them: copying a large payload into the queue costs more than
 * the extra write(2) that giving up corking for it costs, and the caller's buffer (often the
 * read buffer, still in cache) is the cheapest place to write it from. Smaller frames are
 * corked. Only what the kernel refuses is copied. */
#define SB_DIRECT_MIN 4096

static int push_tail(sb_conn *c, const uint8_t *hdr, size_t hlen, const uint8_t *payload,
                     size_t plen, size_t skip) {
  if (skip < hlen) {
    if (sb_outq_push_frame(&c->io->out, &c->srv->alloc, hdr + skip, hlen - skip, payload, plen))
      return SB_ENOMEM;
  } else if (sb_outq_push_bytes(&c->io->out, &c->srv->alloc, payload + (skip - hlen),
                                plen - (skip - hlen))) {
    return SB_ENOMEM;
  }
  return 0;
}

int sb_net_send_frame(sb_conn *c, const uint8_t *hdr, size_t hlen, const void *payload,
                      size_t plen) {
  if (sb_net_io(c)) return SB_ENOMEM;
  sb_outq *q = &c->io->out;
  size_t skip = 0;
  if (plen >= SB_DIRECT_MIN && !c->io->wreq && q->n - q->head <= SB_IOV_BATCH - 2) {
    sb_iov iov[SB_IOV_BATCH];
    uv_buf_t bufs[SB_IOV_BATCH];
    unsigned k = sb_outq_iov(q, iov, SB_IOV_BATCH - 2);
    for (unsigned i = 0; i < k; i++) bufs[i] = uv_buf_init(iov[i].base, (unsigned)iov[i].len);
    bufs[k++] = uv_buf_init((char *)hdr, (unsigned)hlen);
    bufs[k++] = uv_buf_init((char *)payload, (unsigned)plen);
    /* An error is not reported here (a callback must not fire inside the caller's send): the
     * frame is queued and the flush in this turn's check meets the error again. */
    int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, k);
    size_t written = r > 0 ? (size_t)r : 0, queued = q->bytes;
    sb_outq_consume(q, SB_MIN(written, queued));
    if (written >= queued) skip = written - queued;
  }
  if (skip == hlen + plen) return 0;
  if (push_tail(c, hdr, hlen, payload, plen, skip)) return SB_ENOMEM;
  sb_net_mark_dirty(c);
  return 0;
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  sb_conn *c = (sb_conn *)h;
  buf->base = (char *)c->srv->readbuf;
  buf->len = c->srv->readbuf_len;
}

static void on_read(uv_stream_t *st, ssize_t nread, const uv_buf_t *buf) {
  sb_conn *c = (sb_conn *)st;
  if (nread > 0) sb_ws_on_data(c, (uint8_t *)buf->base, (size_t)nread);
  else if (nread < 0) sb_ws_on_eof(c, (int)nread);
}

void sb_net_read_stop(sb_conn *c) { uv_read_stop((uv_stream_t *)&c->tcp); }

int sb_net_read_start(sb_conn *c) {
  int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  return r == 0 || r == UV_EALREADY ? 0 : SB_EIO;
}

void sb_net_set_http(sb_server *s, void *ctx,
                     void (*on_http)(void *, sb_conn *, const sb_http_request *),
                     void (*on_http_close)(void *, sb_conn *)) {
  s->http_ctx = ctx;
  s->on_http = on_http;
  s->on_http_close = on_http_close;
}

static void on_write(uv_write_t *req, int status) {
  sb_wreq *w = SB_CONTAINER_OF(req, sb_wreq, req);
  sb_conn *c = (sb_conn *)req->handle;
  sb_net_note_freed(c->srv, sb_outq_cost(&w->out));
  sb_outq_free(&w->out, &c->srv->alloc);
  sb_free(&c->srv->alloc, w);
  c->io->wreq = NULL;
  if (status == UV_ECANCELED || c->state == SB_CONN_CLOSED) return;
  if (status < 0) {
    sb_ws_on_write_error(c, status);
    return;
  }
  /* Flush what was queued meanwhile in this turn's check, or report the drain now. */
  if (c->io && c->io->out.bytes) sb_net_mark_dirty(c);
  else sb_ws_on_flushed(c);
}

/* Hands the unwritten rest of the queue to libuv (step 3 above). */
static void write_rest(sb_conn *c) {
  sb_server *s = c->srv;
  sb_wreq *w = sb_malloc(&s->alloc, sizeof(*w));
  if (!w) {
    sb_ws_on_write_error(c, UV_ENOMEM);
    return;
  }
  w->out = c->io->out;
  memset(&c->io->out, 0, sizeof(c->io->out));
  /* Every unwritten item in one uv_write; libuv copies the buffer array, so a temporary one
   * (on the stack when small) is enough. */
  unsigned count = w->out.n - w->out.head;
  sb_iov small_iov[SB_IOV_BATCH], *iov = small_iov;
  uv_buf_t small[SB_IOV_BATCH], *bufs = small;
  if (count > SB_IOV_BATCH) {
    iov = sb_malloc(&s->alloc, count * (sizeof(*iov) + sizeof(*bufs)));
    if (!iov) {
      sb_outq_free(&w->out, &s->alloc);
      sb_free(&s->alloc, w);
      sb_ws_on_write_error(c, UV_ENOMEM);
      return;
    }
    bufs = (uv_buf_t *)(void *)(iov + count);
  }
  sb_outq_iov(&w->out, iov, count);
  for (unsigned i = 0; i < count; i++) bufs[i] = uv_buf_init(iov[i].base, (unsigned)iov[i].len);
  c->io->wreq = w;
  int r = uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, count, on_write);
  if (iov != small_iov) sb_free(&s->alloc, iov);
  if (r < 0) {
    c->io->wreq = NULL;
    sb_outq_free(&w->out, &s->alloc);
    sb_free(&s->alloc, w);
    sb_ws_on_write_error(c, r);
  }
}

/* Step 2: one corked writev per dirty connection. */
static void flush(sb_conn *c) {
  if (c->state == SB_CONN_CLOSED || sb_net_writing(c)) return;
  if (c->io) {
    sb_outq *q = &c->io->out;
    while (q->bytes) {
      sb_iov iov[SB_IOV_BATCH];
      uv_buf_t bufs[SB_IOV_BATCH];
      unsigned k = sb_outq_iov(q, iov, SB_IOV_BATCH);
      size_t want = 0;
      for (unsigned i = 0; i < k; i++) {
        bufs[i] = uv_buf_init(iov[i].base, (unsigned)iov[i].len);
        want += iov[i].len;
      }
      int r = uv_try_write((uv_stream_t *)&c->tcp, bufs, k);
      if (r == UV_EAGAIN || r == UV_ENOSYS) r = 0;
      if (r < 0) {
        sb_ws_on_write_error(c, r);
        return;
      }
      sb_outq_consume(q, (size_t)r);
      if ((size_t)r < want) break; /* the kernel is full */
    }
    if (q->bytes) {
      write_rest(c);
      return;
    }
    /* Written out: buffers that a burst made large go now rather than at the next sweep, as
     * they count against the queue limit (sb_outq_cost) for as long as they are kept. */
    if (q->buf_cap > SB_IO_KEEP_BUF || q->cap > 64) {
      sb_net_note_freed(c->srv, sb_outq_cost(q));
      sb_outq_free(q, &c->srv->alloc);
    }
  }
  sb_ws_on_flushed(c);
}

void sb_net_flush_now(sb_conn *c) {
  flush(c);
  /* Give the busy-state block back at once when it is empty: a connection that goes idle
   * right after its handshake then holds nothing but its struct (see conn.c). */
  if (c->state == SB_CONN_OPEN && sb_net_io_idle(c)) sb_net_io_release(c);
}

static void on_check(uv_check_t *h) {
  sb_server *s = h->data;
  sb_conn *c;
  while ((c = s->dirty) != NULL) {
    s->dirty = c->dirty_next;
    c->flags &= ~SB_F_DIRTY;
    /* A plain HTTP request answered later: parse the requests that waited behind it first,
     * so that their answers leave in this same write. */
    if (c->hflags & SB_H_RESUME) sb_ws_http_resume(c);
    flush(c);
  }
}

static void on_sweep(uv_timer_t *t) {
  sb_server *s = t->data;
  uint32_t now = sb_net_now(s);
  if (s->tick) s->tick(s->hub);
  maybe_trim(s);
  for (sb_conn *c = s->conns, *next; c; c = next) {
    next = c->next;
    if (c->state != SB_CONN_CLOSED) sb_ws_sweep(c, now);
  }
}

/*
 * Admission. Every connection, in any state, holds a descriptor and memory, so what one client
 * (or everyone) may hold at once is capped: max_connections in all, max_connections_per_address
 * from one address (an IPv4 address, or the /64 of an IPv6 one: a single host usually has a
 * whole /64; loopback only with limit_loopback, as a proxy on the same host is loopback). A connection past a cap is accepted, answered at once with 503 or 429 and
 * Retry-After, and closed after at most a second; it reads nothing but the peer's FIN. At most
 * SB_REFUSING_MAX such answers are in flight: beyond that a refused connection is closed without
 * one, so that refusing cannot itself use up the descriptors.
 *
 * When the process is out of descriptors anyway (the application's own files, a limit lower
 * than max_connections), libuv accepts and closes what waits with a descriptor it keeps in
 * reserve for that, and reports UV_EMFILE here; the listener keeps being watched, without a
 * busy loop, and serves again as soon as descriptors are free.
 */
#define SB_REFUSING_MAX 64

struct sb_addr_count {
  uint32_t n;     /* connections from this address */
  uint8_t len;
  char key[16];   /* the address bytes (4, or the first 8 of an IPv6 address) */
};

/* The key of the peer's address, or 0 when it is unknown or not counted (loopback). */
static size_t addr_key(const sb_conn *c, char key[16]) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) return 0;
  const uint8_t *a;
  if (ss.ss_family == AF_INET) {
    a = (const uint8_t *)&((struct sockaddr_in *)&ss)->sin_addr;
  } else if (ss.ss_family == AF_INET6) {
    static const uint8_t v4mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t loop6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
    a = ((struct sockaddr_in6 *)&ss)->sin6_addr.s6_addr;
    if (memcmp(a, loop6, 16) == 0 && !c->srv->opts.limit_loopback) return 0;
    if (memcmp(a, v4mapped, 12) != 0) {
      memcpy(key, a, 8);
      return 8;
    }
    a += 12;
  } else {
    return 0;
  }
  if (a[0] == 127 && !c->srv->opts.limit_loopback) return 0;
  memcpy(key, a, 4);
  return 4;
}

/* Counts `c` against its address; 0, or the status to refuse it with. */
static int admit(sb_server *s, sb_conn *c) {
  if (s->nconns - s->nrefusing > s->opts.max_connections) return 503;
  char key[16];
  size_t klen = addr_key(c, key);
  if (klen == 0) return 0;
  sb_addr_count *ac = sb_map_get(&s->addrs, key, klen);
  if (ac && ac->n >= s->opts.max_connections_per_address) return 429;
  if (!ac) {
    ac = sb_malloc(&s->alloc, sizeof(*ac));
    if (!ac) return 503;
    memset(ac, 0, sizeof(*ac));
    memcpy(ac->key, key, klen);
    ac->len = (uint8_t)klen;
    if (sb_map_put(&s->addrs, ac->key, klen, ac) != 0) {
      sb_free(&s->alloc, ac);
      return 503;
    }
  }
  ac->n++;
  c->addr = ac;
  return 0;
}

static void release_addr(sb_conn *c) {
  sb_addr_count *ac = c->addr;
  if (!ac) return;
  c->addr = NULL;
  if (--ac->n == 0) {
    sb_map_del(&c->srv->addrs, ac->key, ac->len);
    sb_free(&c->srv->alloc, ac);
  }
}

static void refuse(sb_conn *c, int status) {
  sb_server *s = c->srv;
  c->flags |= SB_F_REJECTED;
  s->nrefusing++;
  c->state = SB_CONN_DRAINING;
  c->t0 = sb_net_now(s);
  if (s->nrefusing > SB_REFUSING_MAX) return sb_net_close(c);
  static const char busy[] = "HTTP/1.1 503 Service Unavailable\r\n"
                             "Retry-After: 10\r\n"
                             "Content-Type: text/plain; charset=utf-8\r\n"
                             "Content-Length: 21\r\n"
                             "Connection: close\r\n\r\n"
                             "too many connections\n";
  static const char many[] = "HTTP/1.1 429 Too Many Requests\r\n"
                             "Retry-After: 5\r\n"
                             "Content-Type: text/plain; charset=utf-8\r\n"
                             "Content-Length: 39\r\n"
                             "Connection: close\r\n\r\n"
                             "too many connections from this address\n";
  const char *text = status == 429 ? many : busy;
  size_t n = status == 429 ? sizeof many - 1 : sizeof busy - 1;
  /* Reading goes on (bytes are discarded while draining) so that the peer's FIN ends it. */
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0 ||
      sb_net_send_frame(c, (const uint8_t *)text, n, NULL, 0) != 0)
    return sb_net_close(c);
  sb_net_mark_dirty(c); /* the flush half-closes once the answer is written */
}

/* A connection libuv accepted and we cannot take (out of memory): libuv stops watching the
 * listener until the accepted descriptor is taken, so it is closed here, else the server would
 * accept nothing more. The field is libuv's (unix) own; there is no call for this. */
static void drop_accepted(sb_server *s) {
  if (s->listener.accepted_fd >= 0) {
    close(s->listener.accepted_fd);
    s->listener.accepted_fd = -1;
  }
}

static void on_connection(uv_stream_t *ls, int status) {
  sb_server *s = ls->data;
  if (status < 0) {
    set_error(s, "accept", status); /* UV_EMFILE: see "Admission" above */
    return;
  }
  if (s->shutting_down) return drop_accepted(s);
  sb_conn *c = sb_malloc(&s->alloc, sizeof(*c));
  if (!c) return drop_accepted(s);
  memset(c, 0, sizeof(*c));
  c->srv = s;
  if (uv_tcp_init(s->loop, &c->tcp) != 0) {
    sb_free(&s->alloc, c);
    return drop_accepted(s);
  }
  c->next = s->conns;
  if (s->conns) s->conns->prev = c;
  s->conns = c;
  s->nconns++;
  c->state = SB_CONN_HANDSHAKE;
  if (uv_accept(ls, (uv_stream_t *)&c->tcp) != 0) {
    drop_accepted(s);
    sb_net_close(c);
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  int verdict = admit(s, c);
  if (verdict) return refuse(c, verdict);
  if (uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read) != 0) {
    sb_net_close(c);
    return;
  }
  sb_ws_on_accept(c);
}

void sb_net_peer(const sb_conn *c, char *out, size_t cap) {
  struct sockaddr_storage ss;
  int len = sizeof(ss);
  out[0] = '\0';
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &len) != 0) return;
  if (ss.ss_family == AF_INET) uv_ip4_name((const struct sockaddr_in *)&ss, out, cap);
  else if (ss.ss_family == AF_INET6) uv_ip6_name((const struct sockaddr_in6 *)&ss, out, cap);
}

/* ---- server --------------------------------------------------------------------------- */

int sb_server_listen(sb_server *s, const char *host, int port) {
  if (!s || !host || port < 0 || port > 65535) return SB_EINVAL;
  if (s->listening || s->shutting_down || s->handles_open) return SB_ESTATE;
  struct sockaddr_storage addr;
  socklen_t alen = sizeof(struct sockaddr_in);
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)&addr) != 0) {
    alen = sizeof(struct sockaddr_in6);
    if (uv_ip6_addr(host, port, (struct sockaddr_in6 *)&addr) != 0) {
      snprintf(s->last_error, sizeof(s->last_error), "not an IP address: %s", host);
      return SB_EINVAL;
    }
  }
  /* Bind a plain socket first, so that the usual failures (address in use, no permission)
   * happen before any libuv handle exists and leave nothing to close. */
  int fd = socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    set_error(s, "socket", uv_translate_sys_error(errno));
    return SB_EIO;
  }
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
  if (bind(fd, (struct sockaddr *)&addr, alen) != 0) {
    int err = uv_translate_sys_error(errno);
    close(fd);
    set_error(s, "bind", err);
    return map_uv_error(err);
  }
  struct sockaddr_storage bound;
  socklen_t blen = sizeof(bound);
  getsockname(fd, (struct sockaddr *)&bound, &blen);
  s->port = bound.ss_family == AF_INET6 ? ntohs(((struct sockaddr_in6 *)&bound)->sin6_port)
                                        : ntohs(((struct sockaddr_in *)&bound)->sin_port);
  uv_tcp_init(s->loop, &s->listener);
  s->listener.data = s;
  s->handles_open = 1;
  int r = uv_tcp_open(&s->listener, fd);
  if (r == 0) r = uv_listen((uv_stream_t *)&s->listener, s->opts.backlog, on_connection);
  if (r != 0) {
    /* Rare (listen(2) itself failed). The handle closes on the next loop turn; until then
     * sb_server_free() answers SB_EBUSY. */
    if (r != 0 && uv_fileno((uv_handle_t *)&s->listener, &(uv_os_fd_t){0}) != 0) close(fd);
    set_error(s, "listen", r);
    s->port = 0;
    uv_close((uv_handle_t *)&s->listener, handle_closed);
    return map_uv_error(r);
  }
  uv_check_init(s->loop, &s->check);
  s->check.data = s;
  uv_check_start(&s->check, on_check);
  uv_timer_init(s->loop, &s->sweep);
  s->sweep.data = s;
  uv_timer_start(&s->sweep, on_sweep, s->sweep_ms, s->sweep_ms);
  s->handles_open = 3;
  s->handles_started = 1;
  s->listening = 1;
  return 0;
}

int sb_server_port(const sb_server *s) { return s ? s->port : 0; }

size_t sb_server_conn_count(const sb_server *s) { return s ? s->nopen : 0; }

const char *sb_server_last_error(const sb_server *s) { return s ? s->last_error : ""; }

/* The drain: every 10 ms, close as many of the open WebSocket connections as their share of
 * the time passed asks for (ceil(total x elapsed / spread) in all), so that clients reconnect
 * to other nodes spread over the window instead of all at once. Connections that closed by
 * themselves meanwhile count as done. */
#define SB_DRAIN_TICK_MS 10

static void drain_tick(uv_timer_t *t) {
  sb_server *s = t->data;
  uint64_t spread = s->opts.shutdown_spread_ms, el = uv_now(s->loop) - s->drain_t0;
  size_t due = el >= spread ? s->drain_total
                            : (size_t)((s->drain_total * el + spread - 1) / spread);
  size_t left = 0;
  for (sb_conn *c = s->conns, *next; c; c = next) {
    next = c->next;
    if (c->state != SB_CONN_OPEN) continue;
    if (s->drain_done < due) {
      s->drain_done++;
      sb_ws_shutdown(c);
    } else {
      left++;
    }
  }
  if (left == 0) {
    uv_timer_stop(t);
    uv_close((uv_handle_t *)t, handle_closed);
  }
}

int sb_server_shutdown(sb_server *s, sb_shutdown_cb cb, void *user) {
  if (!s) return SB_EINVAL;
  if (!s->listening) return SB_ESTATE;
  if (s->shutting_down) return 0;
  s->shutting_down = 1;
  s->shutdown_cb = cb;
  s->shutdown_user = user;
  uv_close((uv_handle_t *)&s->listener, handle_closed);
  if (s->shutdown_hook) s->shutdown_hook(s->hub);
  /* Handshakes and plain HTTP connections go at once (a request in flight is answered
   * first); open WebSocket connections over the spread. */
  size_t open = 0;
  for (sb_conn *c = s->conns, *next; c; c = next) {
    next = c->next;
    if (c->state == SB_CONN_OPEN) open++;
    else if (c->state != SB_CONN_CLOSED) sb_ws_shutdown(c);
  }
  if (open > 1 && s->opts.shutdown_spread_ms > 1) {
    uv_timer_init(s->loop, &s->drain);
    s->drain.data = s;
    s->handles_open++;
    s->drain_t0 = uv_now(s->loop);
    s->drain_total = open;
    s->drain_done = 0;
    uv_timer_start(&s->drain, drain_tick, 0, SB_DRAIN_TICK_MS);
  } else {
    for (sb_conn *c = s->conns, *next; c; c = next) {
      next = c->next;
      if (c->state == SB_CONN_OPEN) sb_ws_shutdown(c);
    }
  }
  maybe_finish(s);
  return 0;
}

int sb_server_free(sb_server *s) {
  if (!s) return 0;
  if (s->nconns > 0 || s->handles_open > 0) return SB_EBUSY;
  sb_allocator a = s->alloc;
  while (s->hs_pool) {
    sb_handshake *h = s->hs_pool;
    s->hs_pool = h->pool_next;
    sb_handshake_free(h);
    sb_free(&a, h);
  }
  while (s->io_pool) {
    sb_conn_io *io = s->io_pool;
    s->io_pool = (sb_conn_io *)io->msg;
    sb_outq_free(&io->out, &a);
    sb_free(&a, io);
  }
  for (size_t i = 0; i < s->norigins; i++) sb_free(&a, s->origins[i]);
  sb_free(&a, s->origins);
  sb_free(&a, s->readbuf);
  sb_map_free(&s->addrs); /* empty: every connection released its address */
  sb_free(&a, s);
  return 0;
}
