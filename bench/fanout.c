/*
 * fanout.c — the fan-out benchmark's load generator: publishers and subscribers of one group,
 * all in one process on libuv, for Switchboard's examples/broadcast and bench/node-broadcast.mjs.
 *
 * Like loadgen it does not use the Switchboard library: its own client handshake (a fixed
 * Sec-WebSocket-Key whose Sec-WebSocket-Accept is checked), masked frames, and an incremental
 * parser of the server's frames. What it sends are SEND envelopes (docs/PROTOCOL.md §3) with a
 * --size-byte body; what it expects back are PUSH envelopes carrying that body. The body holds
 * a magic number, the publisher's index, a sequence number and the send time, so that every
 * delivery is matched to its message without a lookup by content.
 *
 *   fanout --port P [--host 127.0.0.1] [--pattern one|all] [--subs 1000] [--window 1]
 *          [--size 32] [--duration 5] [--warmup 1] [--hello] [--server-pid PID] ...
 *
 * --pattern one: one publisher connection and --subs subscriber connections (--subs + 1 in the
 *   group: the server also sends every message back to its publisher, which reads and counts
 *   it apart). The publisher keeps --window messages in flight: it sends the next one as soon
 *   as the oldest has reached every subscriber (--window 1: lockstep). A message's deliveries
 *   are counted per sequence number in a ring of --window slots (messages complete in order:
 *   each subscriber receives them in order, so the last subscriber of message s has s-1).
 * --pattern all: --subs connections, every one a publisher (lockstep rounds): each sends one
 *   message, waits until it has received the N messages of that round (its own included), then
 *   sends its message of the next round. No client can get two rounds ahead of another, so
 *   deliveries are counted per (publisher, round & 1) slot.
 *
 * Checks on every delivery: it is a binary PUSH (kind 3) with our magic, its offset follows the
 * previous one on that connection (a gap means a lost push), and its sequence number is the one
 * that connection expects next. Close frames from the server are counted by code (1013: the
 * server dropped a slow consumer). With no delivery for --stall-timeout seconds the run stops
 * and reports what it had (a lost message would stall the lockstep forever).
 *
 * Output: one line of JSON on stdout (fields in bench/README.md). Exit status 0 if deliveries
 * were measured and nothing stalled, 1 otherwise, 2 on bad usage.
 *
 * Costs per delivery are kept low: one shared read buffer, frames parsed in place (a complete
 * frame in the buffer is handled where it lies; only a frame split across reads copies up to
 * 64 bytes of its head), no allocation, and latency kept in log-linear histograms.
 */
#include <uv.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <sched.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------- */
/* Latency histogram (the same as loadgen's): log-linear, nanoseconds, ~1.6% resolution.      */
/* ---------------------------------------------------------------------------------------- */

#define H_SUB_BITS 7
#define H_SUB (1u << H_SUB_BITS)
#define H_HALF (H_SUB / 2)
#define H_BUCKETS (H_SUB + (64 - H_SUB_BITS) * H_HALF)

typedef struct {
  uint64_t b[H_BUCKETS];
  uint64_t n, sum, min, max;
} hist;

static inline unsigned h_index(uint64_t v) {
  if (v < H_SUB) return (unsigned)v;
  unsigned msb = 63u - (unsigned)__builtin_clzll(v);
  unsigned e = msb - H_SUB_BITS + 1;
  unsigned m = (unsigned)(v >> e);
  return H_SUB + (e - 1) * H_HALF + (m - H_HALF);
}

static void h_bounds(unsigned i, uint64_t *lo, uint64_t *hi) {
  if (i < H_SUB) {
    *lo = *hi = i;
    return;
  }
  unsigned e = (i - H_SUB) / H_HALF + 1;
  uint64_t m = (i - H_SUB) % H_HALF + H_HALF;
  *lo = m << e;
  *hi = ((m + 1) << e) - 1;
}

static void h_reset(hist *h) {
  memset(h, 0, sizeof *h);
  h->min = UINT64_MAX;
}

static inline void h_add(hist *h, uint64_t v) {
  h->b[h_index(v)]++;
  h->n++;
  h->sum += v;
  if (v < h->min) h->min = v;
  if (v > h->max) h->max = v;
}

static double h_quantile(const hist *h, double q) {
  if (h->n == 0) return 0;
  uint64_t rank = (uint64_t)(q * (double)h->n + 0.999999);
  if (rank < 1) rank = 1;
  if (rank > h->n) rank = h->n;
  uint64_t cum = 0;
  for (unsigned i = 0; i < H_BUCKETS; i++) {
    cum += h->b[i];
    if (cum >= rank) {
      uint64_t lo, hi;
      h_bounds(i, &lo, &hi);
      double v = ((double)lo + (double)hi) / 2;
      if (v < (double)h->min) v = (double)h->min;
      if (v > (double)h->max) v = (double)h->max;
      return v;
    }
  }
  return (double)h->max;
}

/* ---------------------------------------------------------------------------------------- */
/* State                                                                                      */
/* ---------------------------------------------------------------------------------------- */

enum { ST_IDLE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSING, ST_CLOSED };
enum { PH_CONNECT, PH_READY, PH_WARMUP, PH_MEASURE, PH_DONE };

#define HS_MAX 4096
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

#define ENV_HDR 26        /* SEND envelope with empty stream and url, before the body */
#define BODY_MIN 24       /* magic u32, publisher u32, seq u64, send time u64 */
#define PREFIX 96         /* head of a split message kept for parsing */
#define MAGIC 0x5342464fu /* "SBFO" */

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  uint8_t state, resolved, writing, close_sent, hello;
  /* frame parser */
  uint8_t hdr_len, hdr_need, in_payload, f_opcode, f_fin, in_msg, msg_opcode, ctl_len;
  uint8_t hdr[14];
  uint8_t ctl[125];
  uint8_t pre[PREFIX]; /* head of the current message when it is split across reads */
  uint64_t f_remaining, msg_len;
  char *hs;
  uint32_t hs_len;
  uint8_t *tx, *wb;
  size_t tx_len, tx_cap, wb_cap;
  /* checks and lockstep state */
  uint64_t last_offset; /* offset of the previous push on this connection, 0 before the first */
  uint64_t next_seq;    /* --pattern one: the sequence number expected next */
  uint32_t round;       /* --pattern all: this client's current round */
  uint32_t cnt[2];      /* --pattern all: messages received of rounds round and round + 1 */
} conn;

typedef struct slot {
  uint64_t t;   /* send time */
  uint32_t cnt; /* deliveries so far */
  uint32_t busy;
} slot;

static struct {
  /* options */
  const char *host, *path;
  int port, nsubs, window, conc, server_pid;
  bool all, wait_hello;
  size_t size;
  double duration, warmup, connect_timeout, stall_timeout;

  uv_loop_t *loop;
  struct sockaddr_storage addr;
  conn *c;
  int nconns; /* subs, plus the publisher for --pattern one */
  conn *pub;  /* --pattern one */
  char *req;
  size_t req_len;

  /* connect phase */
  int next, connecting, resolved, open_now, opened, failed, hellos;
  bool connect_done;
  uint64_t t_connect0, t_ready;

  /* load */
  int phase;
  uint8_t *msg; /* SEND envelope being built: header + body */
  size_t msg_len;
  uint64_t rng;
  slot *slots;                 /* --pattern one: window slots; --pattern all: 2 x subs */
  uint32_t target;             /* deliveries that complete a message */
  uint64_t seq_next, seq_done; /* --pattern one */
  uint64_t last_delivery;      /* time of the last delivery (stall detection) */
  bool stalled;

  /* counters (errors: everything that should not happen) */
  uint64_t errors, gaps, bad_msgs, seq_errors, lost_conns, server_errors;
  uint64_t closes;
  struct {
    unsigned code;
    uint64_t n;
  } close_codes[8];
  uint64_t total_deliveries, total_msgs, self_deliveries;
  uint64_t deliveries, msgs, published; /* in the measured window */
  uint64_t rounds_done;                 /* --pattern all: client rounds finished in the window */
  uint64_t t_start, t_end;
  hist h_last, h_each;
  struct rusage ru0, ru1;
  long long srv0, srv1;
  cpu_set_t cores;
  long long busy0, busy1, steal0, steal1;

  uv_timer_t t_phase, t_connect, t_watch;
  uv_signal_t sig_int, sig_term;
} G;

static uint8_t rbuf[256 * 1024];

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_write(uv_write_t *req, int status);
static void pump_connects(void);
static void finish(void);
static void maybe_start(void);

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                    */
/* ---------------------------------------------------------------------------------------- */

static void die(const char *what, int err) {
  fprintf(stderr, "fanout: %s: %s\n", what, err ? uv_strerror(err) : "failed");
  exit(2);
}

static inline uint32_t rng32(void) {
  uint64_t x = G.rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  G.rng = x;
  return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

static inline void mask_copy(uint8_t *restrict dst, const uint8_t *restrict src, size_t n,
                             const uint8_t key[4]) {
  uint8_t k8[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
  uint64_t k;
  memcpy(&k, k8, 8);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t a;
    memcpy(&a, src + i, 8);
    a ^= k;
    memcpy(dst + i, &a, 8);
  }
  for (; i < n; i++) dst[i] = src[i] ^ key[i & 3];
}

static void grow(uint8_t **buf, size_t *cap, size_t need) {
  if (need <= *cap) return;
  size_t c = *cap ? *cap : 256;
  while (c < need) c *= 2;
  uint8_t *p = realloc(*buf, c);
  if (!p) die("out of memory", 0);
  *buf = p;
  *cap = c;
}

static inline void put32(uint8_t *p, uint32_t v) {
  p[0] = (uint8_t)(v >> 24), p[1] = (uint8_t)(v >> 16), p[2] = (uint8_t)(v >> 8), p[3] = (uint8_t)v;
}
static inline void put64(uint8_t *p, uint64_t v) {
  put32(p, (uint32_t)(v >> 32));
  put32(p + 4, (uint32_t)v);
}
static inline uint32_t get32(const uint8_t *p) {
  return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | p[3];
}
static inline uint64_t get64(const uint8_t *p) { return ((uint64_t)get32(p) << 32) | get32(p + 4); }

static long long proc_cpu_ticks(int pid) {
  char path[64], buf[1024];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = 0;
  char *p = strrchr(buf, ')');
  if (!p) return -1;
  unsigned long long ut, st;
  if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return -1;
  return (long long)(ut + st);
}

static void proc_stat_ticks(long long *busy, long long *steal) {
  *busy = *steal = -1;
  FILE *f = fopen("/proc/stat", "r");
  if (!f) return;
  char line[512];
  long long b = 0, st = 0;
  bool any = false;
  while (fgets(line, sizeof line, f)) {
    int cpu;
    unsigned long long us, ni, sy, id, io, irq, sirq, stl;
    if (strncmp(line, "cpu", 3) != 0 || line[3] < '0' || line[3] > '9') continue;
    if (sscanf(line + 3, "%d %llu %llu %llu %llu %llu %llu %llu %llu", &cpu, &us, &ni, &sy, &id,
               &io, &irq, &sirq, &stl) != 9)
      continue;
    if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, &G.cores)) continue;
    b += (long long)(us + ni + sy + irq + sirq);
    st += (long long)stl;
    any = true;
  }
  fclose(f);
  if (any) *busy = b, *steal = st;
}

static double tv_s(struct timeval tv) { return (double)tv.tv_sec + (double)tv.tv_usec / 1e6; }

static bool running(void) { return G.phase == PH_WARMUP || G.phase == PH_MEASURE; }

static void count_close_code(unsigned code) {
  G.closes++;
  for (size_t i = 0; i < sizeof G.close_codes / sizeof G.close_codes[0]; i++) {
    if (G.close_codes[i].n == 0 || G.close_codes[i].code == code) {
      G.close_codes[i].code = code;
      G.close_codes[i].n++;
      return;
    }
  }
}

/* ---------------------------------------------------------------------------------------- */
/* Connections                                                                                */
/* ---------------------------------------------------------------------------------------- */

static void on_close(uv_handle_t *h) {
  conn *c = h->data;
  free(c->tx);
  free(c->wb);
  free(c->hs);
  c->tx = c->wb = NULL;
  c->hs = NULL;
  c->tx_cap = c->wb_cap = c->tx_len = 0;
}

static void conn_close(conn *c) {
  if (c->state == ST_CLOSED || c->state == ST_IDLE) return;
  if (c->state == ST_OPEN || c->state == ST_CLOSING) G.open_now--;
  c->state = ST_CLOSED;
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void resolve(conn *c, bool ok) {
  if (c->resolved) return;
  c->resolved = 1;
  G.connecting--;
  G.resolved++;
  if (ok) {
    G.opened++;
    G.open_now++;
  } else {
    G.failed++;
    G.errors++;
  }
  pump_connects();
}

static void conn_lost(conn *c, int err, const char *why) {
  if (c->state == ST_CLOSED) return;
  if (!c->resolved) {
    if (G.failed < 5)
      fprintf(stderr, "fanout: connection %d: %s%s%s\n", (int)(c - G.c), why, err ? ": " : "",
              err ? uv_strerror(err) : "");
    conn_close(c);
    resolve(c, false);
    return;
  }
  if (G.phase != PH_DONE) {
    G.errors++;
    G.lost_conns++;
    if (G.lost_conns <= 5)
      fprintf(stderr, "fanout: connection %d lost: %s%s%s\n", (int)(c - G.c), why, err ? ": " : "",
              err ? uv_strerror(err) : "");
  }
  conn_close(c);
}

static void flush(conn *c) {
  if (c->writing || c->tx_len == 0 || c->state == ST_CLOSED) return;
  uv_buf_t b = uv_buf_init((char *)c->tx, (unsigned)c->tx_len);
  int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (r >= 0 && (size_t)r == c->tx_len) {
    c->tx_len = 0;
    return;
  }
  if (r < 0 && r != UV_EAGAIN) {
    conn_lost(c, r, "write");
    return;
  }
  size_t done = r > 0 ? (size_t)r : 0;
  uint8_t *t = c->tx;
  size_t tc = c->tx_cap;
  c->tx = c->wb, c->tx_cap = c->wb_cap;
  c->wb = t, c->wb_cap = tc;
  b = uv_buf_init((char *)c->wb + done, (unsigned)(c->tx_len - done));
  c->tx_len = 0;
  c->writing = 1;
  r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (r) {
    c->writing = 0;
    conn_lost(c, r, "write");
  }
}

static void on_write(uv_write_t *req, int status) {
  conn *c = req->data;
  c->writing = 0;
  if (c->state == ST_CLOSED) return;
  if (status < 0) {
    conn_lost(c, status, "write");
    return;
  }
  flush(c);
  if (c->state == ST_CLOSING && !c->writing && c->tx_len == 0) conn_close(c);
}

/* Appends a masked frame with opcode `op` and payload p[0..n) to tx. */
static void queue_frame(conn *c, uint8_t op, const uint8_t *p, size_t n) {
  grow(&c->tx, &c->tx_cap, c->tx_len + n + 14);
  uint8_t *d = c->tx + c->tx_len;
  size_t h = 0;
  d[h++] = 0x80 | op;
  if (n < 126) {
    d[h++] = 0x80 | (uint8_t)n;
  } else if (n < 65536) {
    d[h++] = 0x80 | 126;
    d[h++] = (uint8_t)(n >> 8);
    d[h++] = (uint8_t)n;
  } else {
    d[h++] = 0x80 | 127;
    for (int i = 7; i >= 0; i--) d[h++] = (uint8_t)((uint64_t)n >> (8 * i));
  }
  uint32_t k = rng32();
  memcpy(d + h, &k, 4);
  mask_copy(d + h + 4, p, n, d + h);
  c->tx_len += h + 4 + n;
}

/* Queues a SEND envelope from publisher `pub` with sequence number `seq`. */
static void publish(conn *c, uint32_t pub, uint64_t seq, uint64_t now) {
  uint8_t *b = G.msg + ENV_HDR;
  put32(b, MAGIC);
  put32(b + 4, pub);
  put64(b + 8, seq);
  put64(b + 16, now);
  queue_frame(c, 0x2, G.msg, G.msg_len);
  if (G.phase == PH_MEASURE) G.published++;
}

/* ---------------------------------------------------------------------------------------- */
/* Deliveries                                                                                 */
/* ---------------------------------------------------------------------------------------- */

static void bad_msg(conn *c, const char *why) {
  G.errors++;
  G.bad_msgs++;
  if (G.bad_msgs <= 5) fprintf(stderr, "fanout: connection %d: %s\n", (int)(c - G.c), why);
}

/* LEB128 length of a text field at p[*i..n); advances *i past the field. */
static bool skip_text(const uint8_t *p, size_t n, size_t *i) {
  uint64_t len = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (*i >= n) return false;
    uint8_t b = p[(*i)++];
    len |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) {
      if (len > n - *i) return false;
      *i += (size_t)len;
      return true;
    }
  }
  return false;
}

/* --pattern one: a delivery of message `seq`. */
static void delivered_one(conn *c, uint64_t seq, uint64_t now) {
  if (c == G.pub) {
    G.self_deliveries++;
    return;
  }
  if (seq != c->next_seq) {
    G.errors++;
    G.seq_errors++;
    if (G.seq_errors <= 5)
      fprintf(stderr, "fanout: subscriber %d got message %" PRIu64 ", expected %" PRIu64 "\n",
              (int)(c - G.c), seq, c->next_seq);
  }
  c->next_seq = seq + 1;
  if (seq < G.seq_done || seq >= G.seq_next) return; /* counted in seq_errors above */
  slot *s = &G.slots[seq % (uint64_t)G.window];
  uint64_t lat = now - s->t;
  G.total_deliveries++;
  G.last_delivery = now;
  if (G.phase == PH_MEASURE) {
    G.deliveries++;
    h_add(&G.h_each, lat);
  }
  if (++s->cnt < G.target) return;
  /* The message reached every subscriber. Messages complete in order (see the top). */
  if (seq != G.seq_done) {
    G.errors++;
    G.seq_errors++;
  }
  s->cnt = 0;
  s->busy = 0;
  G.seq_done = seq + 1;
  G.total_msgs++;
  if (G.phase == PH_MEASURE) {
    G.msgs++;
    h_add(&G.h_last, lat);
  }
  if (running()) {
    while (G.seq_next < G.seq_done + (uint64_t)G.window) {
      slot *n = &G.slots[G.seq_next % (uint64_t)G.window];
      n->t = now;
      n->cnt = 0;
      n->busy = 1;
      publish(G.pub, 0, G.seq_next++, now);
    }
    flush(G.pub);
  }
}

/* --pattern all: client c received publisher p's message of round r. */
static void delivered_all(conn *c, uint32_t p, uint64_t r, uint64_t now) {
  if (p >= (uint32_t)G.nconns || (r != c->round && r != (uint64_t)c->round + 1)) {
    G.errors++;
    G.seq_errors++;
    if (G.seq_errors <= 5)
      fprintf(stderr, "fanout: client %d in round %u got publisher %u's round %" PRIu64 "\n",
              (int)(c - G.c), c->round, p, r);
    return;
  }
  c->cnt[r & 1]++;
  slot *s = &G.slots[(r & 1) * (uint64_t)G.nconns + p];
  uint64_t lat = now - s->t;
  G.total_deliveries++;
  G.last_delivery = now;
  if (G.phase == PH_MEASURE) {
    G.deliveries++;
    h_add(&G.h_each, lat);
  }
  if (++s->cnt == G.target) {
    s->cnt = 0;
    s->busy = 0;
    G.total_msgs++;
    if (G.phase == PH_MEASURE) {
      G.msgs++;
      h_add(&G.h_last, lat);
    }
  }
  if (c->cnt[c->round & 1] < G.target) return;
  /* This client has the whole round: on to the next one. */
  c->cnt[c->round & 1] = 0;
  c->round++;
  if (G.phase == PH_MEASURE) G.rounds_done++;
  if (running()) {
    uint32_t me = (uint32_t)(c - G.c);
    slot *n = &G.slots[(c->round & 1) * (uint64_t)G.nconns + me];
    if (n->busy) { /* cannot happen (see the top) unless a message went missing */
      G.errors++;
      G.seq_errors++;
    }
    n->t = now;
    n->cnt = 0;
    n->busy = 1;
    publish(c, me, c->round, now);
  }
}

/* A whole binary message: p[0..avail) is its head (avail = len unless it was split). */
static void on_message(conn *c, const uint8_t *p, size_t avail, uint64_t len, uint64_t now) {
  if (len < 1) return bad_msg(c, "empty message");
  uint8_t kind = p[0];
  if (kind == 5) { /* HELLO */
    if (!c->hello) {
      c->hello = 1;
      G.hellos++;
      if (G.phase == PH_READY) maybe_start();
    }
    return;
  }
  if (kind == 9) { /* ERROR envelope */
    G.errors++;
    G.server_errors++;
    if (G.server_errors <= 3 && avail > ENV_HDR)
      fprintf(stderr, "fanout: server error: %.*s\n", (int)(avail - ENV_HDR), p + ENV_HDR);
    return;
  }
  if (kind != 3) return bad_msg(c, "not a PUSH");
  /* kind method status id | stream | offset epoch | url | body */
  size_t i = 8;
  if (!skip_text(p, avail, &i) || avail - i < 16) return bad_msg(c, "truncated push");
  uint64_t offset = get64(p + i);
  i += 16;
  if (!skip_text(p, avail, &i) || avail - i < BODY_MIN) return bad_msg(c, "truncated push");
  const uint8_t *b = p + i;
  if (get32(b) != MAGIC || len - i != G.size) return bad_msg(c, "not one of ours (size or magic)");
  if (c->last_offset && offset != c->last_offset + 1) {
    G.errors++;
    G.gaps++;
    if (G.gaps <= 5)
      fprintf(stderr, "fanout: connection %d: offset %" PRIu64 " after %" PRIu64 "\n",
              (int)(c - G.c), offset, c->last_offset);
  }
  c->last_offset = offset;
  if (G.phase == PH_DONE) return;
  if (G.all)
    delivered_all(c, get32(b + 4), get64(b + 8), now);
  else
    delivered_one(c, get64(b + 8), now);
}

static void protocol_error(conn *c, const char *why) { conn_lost(c, 0, why); }

static void frame_end(conn *c, uint64_t now) {
  c->in_payload = 0;
  if (c->f_opcode & 8) {
    if (c->f_opcode == 9) {
      queue_frame(c, 0xA, c->ctl, c->ctl_len);
    } else if (c->f_opcode == 8) {
      unsigned code = c->ctl_len >= 2 ? ((unsigned)c->ctl[0] << 8 | c->ctl[1]) : 1005;
      count_close_code(code);
      if (G.phase != PH_DONE) {
        G.errors++;
        if (G.closes <= 5)
          fprintf(stderr, "fanout: connection %d: server closed it (%u %.*s)\n", (int)(c - G.c),
                  code, c->ctl_len > 2 ? (int)c->ctl_len - 2 : 0, (const char *)c->ctl + 2);
      }
      if (!c->close_sent) {
        queue_frame(c, 0x8, c->ctl, c->ctl_len >= 2 ? 2 : 0);
        c->close_sent = 1;
      }
      c->state = ST_CLOSING;
    }
    return;
  }
  if (c->f_fin) {
    c->in_msg = 0;
    if (c->msg_opcode != 2) {
      bad_msg(c, "text message");
      return;
    }
    on_message(c, c->pre, c->msg_len < PREFIX ? (size_t)c->msg_len : PREFIX, c->msg_len, now);
  }
}

static bool frame_begin(conn *c, uint64_t now) {
  uint8_t b0 = c->hdr[0], b1 = c->hdr[1];
  unsigned l7 = b1 & 0x7f;
  uint64_t len = l7;
  if (l7 == 126) {
    len = ((uint64_t)c->hdr[2] << 8) | c->hdr[3];
  } else if (l7 == 127) {
    len = 0;
    for (int i = 2; i < 10; i++) len = (len << 8) | c->hdr[i];
  }
  c->hdr_len = 0;
  c->f_opcode = b0 & 0x0f;
  c->f_fin = b0 >> 7;
  if (b0 & 0x70) return protocol_error(c, "reserved bits set"), false;
  if (b1 & 0x80) return protocol_error(c, "masked frame from server"), false;
  if (c->f_opcode & 8) {
    if (!c->f_fin || len > 125) return protocol_error(c, "bad control frame"), false;
    c->ctl_len = 0;
  } else if (c->f_opcode == 0) {
    if (!c->in_msg) return protocol_error(c, "continuation without a message"), false;
  } else if (c->f_opcode == 1 || c->f_opcode == 2) {
    if (c->in_msg) return protocol_error(c, "new message inside a fragmented one"), false;
    c->in_msg = 1;
    c->msg_opcode = c->f_opcode;
    c->msg_len = 0;
  } else {
    return protocol_error(c, "reserved opcode"), false;
  }
  c->f_remaining = len;
  c->in_payload = 1;
  if (len == 0) frame_end(c, now);
  return true;
}

/* Parses server frames in p[0..n). A complete unfragmented binary frame is handled where it
 * lies; anything split across reads goes through the incremental path. */
static void parse(conn *c, const uint8_t *p, size_t n, uint64_t now) {
  while (n > 0 && c->state == ST_OPEN) {
    if (!c->in_payload) {
      if (c->hdr_len == 0 && !c->in_msg && n >= 2 && p[0] == 0x82 && !(p[1] & 0x80)) {
        size_t hl = 2;
        uint64_t len = p[1];
        if (len == 126) {
          if (n >= 4)
            len = ((uint64_t)p[2] << 8) | p[3], hl = 4;
          else
            len = UINT64_MAX;
        } else if (len == 127) {
          len = UINT64_MAX;
        }
        if (len != UINT64_MAX && n - hl >= len) {
          on_message(c, p + hl, (size_t)len, len, now);
          p += hl + len, n -= hl + (size_t)len;
          continue;
        }
      }
      if (c->hdr_len < 2) {
        size_t take = 2u - c->hdr_len;
        if (take > n) take = n;
        memcpy(c->hdr + c->hdr_len, p, take);
        c->hdr_len += (uint8_t)take, p += take, n -= take;
        if (c->hdr_len < 2) break;
        unsigned l7 = c->hdr[1] & 0x7f;
        c->hdr_need = (uint8_t)(2 +
                                (l7 == 126   ? 2
                                 : l7 == 127 ? 8
                                             : 0) +
                                ((c->hdr[1] & 0x80) ? 4 : 0));
      }
      if (c->hdr_len < c->hdr_need) {
        size_t take = (size_t)(c->hdr_need - c->hdr_len);
        if (take > n) take = n;
        memcpy(c->hdr + c->hdr_len, p, take);
        c->hdr_len += (uint8_t)take, p += take, n -= take;
        if (c->hdr_len < c->hdr_need) break;
      }
      if (!frame_begin(c, now)) return;
      continue;
    }
    size_t take = c->f_remaining < n ? (size_t)c->f_remaining : n;
    if (c->f_opcode & 8) {
      memcpy(c->ctl + c->ctl_len, p, take);
      c->ctl_len += (uint8_t)take;
    } else {
      if (c->msg_len < PREFIX) {
        size_t k = PREFIX - (size_t)c->msg_len < take ? PREFIX - (size_t)c->msg_len : take;
        memcpy(c->pre + c->msg_len, p, k);
      }
      c->msg_len += take;
    }
    p += take, n -= take;
    c->f_remaining -= take;
    if (c->f_remaining == 0) frame_end(c, now);
  }
}

static size_t handshake_feed(conn *c, const uint8_t *p, size_t n) {
  size_t old = c->hs_len;
  size_t take = HS_MAX - old < n ? HS_MAX - old : n;
  memcpy(c->hs + old, p, take);
  c->hs_len += (uint32_t)take;
  c->hs[c->hs_len] = 0;
  size_t from = old >= 3 ? old - 3 : 0;
  char *end = NULL;
  for (size_t i = from; i + 4 <= c->hs_len; i++) {
    if (c->hs[i] == '\r' && memcmp(c->hs + i, "\r\n\r\n", 4) == 0) {
      end = c->hs + i;
      break;
    }
  }
  if (!end) {
    if (c->hs_len >= HS_MAX) conn_lost(c, 0, "handshake response too long");
    return n;
  }
  size_t hdr_end = (size_t)(end - c->hs) + 4;
  *end = 0;
  bool ok = strncmp(c->hs, "HTTP/1.1 101", 12) == 0;
  bool accept = false;
  for (char *line = strstr(c->hs, "\r\n"); ok && line; line = strstr(line + 2, "\r\n")) {
    char *l = line + 2;
    if (strncasecmp(l, "sec-websocket-accept:", 21) == 0) {
      l += 21;
      while (*l == ' ' || *l == '\t') l++;
      accept = strncmp(l, WS_ACCEPT, 28) == 0 &&
               (l[28] == '\r' || l[28] == 0 || l[28] == ' ' || l[28] == '\t');
    }
  }
  if (!ok || !accept) {
    char *eol = strstr(c->hs, "\r\n");
    if (eol) *eol = 0;
    char why[160];
    snprintf(why, sizeof why, "handshake refused (%s)", ok ? "bad Sec-WebSocket-Accept" : c->hs);
    conn_lost(c, 0, why);
    return n;
  }
  free(c->hs);
  c->hs = NULL;
  c->state = ST_OPEN;
  resolve(c, true);
  return hdr_end - old;
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h, (void)hint;
  buf->base = (char *)rbuf;
  buf->len = sizeof rbuf;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn *c = s->data;
  if (nread < 0) {
    conn_lost(c, nread == UV_EOF ? 0 : (int)nread, nread == UV_EOF ? "closed by peer" : "read");
    return;
  }
  if (nread == 0 || c->state == ST_CLOSED) return;
  uint64_t now = uv_hrtime();
  const uint8_t *p = (const uint8_t *)buf->base;
  size_t n = (size_t)nread;
  if (c->state == ST_HANDSHAKE) {
    size_t used = handshake_feed(c, p, n);
    if (c->state != ST_OPEN) return;
    p += used, n -= used;
  }
  if (c->state == ST_OPEN) parse(c, p, n, now);
  flush(c);
  if (c->state == ST_CLOSING && !c->writing && c->tx_len == 0) conn_close(c);
}

static void on_connect(uv_connect_t *req, int status) {
  conn *c = req->data;
  if (c->state == ST_CLOSED) return;
  if (status < 0) {
    conn_lost(c, status, "connect");
    return;
  }
  c->state = ST_HANDSHAKE;
  c->hs = malloc(HS_MAX + 1);
  if (!c->hs) die("out of memory", 0);
  c->hs_len = 0;
  int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (r) {
    conn_lost(c, r, "read_start");
    return;
  }
  uv_buf_t b = uv_buf_init(G.req, (unsigned)G.req_len);
  c->writing = 1;
  r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (r) {
    c->writing = 0;
    conn_lost(c, r, "write");
  }
}

static void start_connect(conn *c) {
  G.connecting++;
  int r = uv_tcp_init(G.loop, &c->tcp);
  if (r) die("uv_tcp_init", r);
  c->tcp.data = c;
  c->creq.data = c;
  c->wreq.data = c;
  c->state = ST_CONNECTING;
  uv_tcp_nodelay(&c->tcp, 1);
  r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&G.addr, on_connect);
  if (r) conn_lost(c, r, "connect");
}

/* ---------------------------------------------------------------------------------------- */
/* Phases                                                                                     */
/* ---------------------------------------------------------------------------------------- */

static void print_result(void) {
  double secs = G.t_end > G.t_start ? (double)(G.t_end - G.t_start) / 1e9 : 0;
  double cpu =
      tv_s(G.ru1.ru_utime) + tv_s(G.ru1.ru_stime) - tv_s(G.ru0.ru_utime) - tv_s(G.ru0.ru_stime);
  printf(
      "{\"pattern\":\"%s\",\"subs\":%d,\"window\":%d,\"size\":%zu,\"msgs_per_s\":%.1f,"
      "\"deliveries_per_s\":%.0f,\"last_p50_us\":%.1f,\"last_p99_us\":%.1f,"
      "\"each_p50_us\":%.1f,\"each_p99_us\":%.1f,\"errors\":%" PRIu64 ",\"gaps\":%" PRIu64
      ",\"seq_errors\":%" PRIu64 ",\"bad_msgs\":%" PRIu64 ",\"lost_conns\":%" PRIu64
      ",\"server_errors\":%" PRIu64 ",\"stalled\":%s,\"closes\":%" PRIu64 ",\"close_codes\":{",
      G.all ? "all" : "one", G.nsubs, G.all ? 1 : G.window, G.size,
      secs > 0 ? (double)G.msgs / secs : 0.0, secs > 0 ? (double)G.deliveries / secs : 0.0,
      h_quantile(&G.h_last, 0.50) / 1e3, h_quantile(&G.h_last, 0.99) / 1e3,
      h_quantile(&G.h_each, 0.50) / 1e3, h_quantile(&G.h_each, 0.99) / 1e3, G.errors, G.gaps,
      G.seq_errors, G.bad_msgs, G.lost_conns, G.server_errors, G.stalled ? "true" : "false",
      G.closes);
  for (size_t i = 0, k = 0; i < sizeof G.close_codes / sizeof G.close_codes[0]; i++)
    if (G.close_codes[i].n)
      printf("%s\"%u\":%" PRIu64, k++ ? "," : "", G.close_codes[i].code, G.close_codes[i].n);
  printf(
      "},\"conns\":%d,\"open\":%d,\"hellos\":%d,\"connect_s\":%.2f,\"duration_s\":%.3f,"
      "\"msgs\":%" PRIu64 ",\"deliveries\":%" PRIu64 ",\"published\":%" PRIu64
      ",\"rounds\":%" PRIu64 ",\"total_msgs\":%" PRIu64 ",\"total_deliveries\":%" PRIu64
      ",\"self_deliveries\":%" PRIu64
      ",\"last_mean_us\":%.1f,\"last_p999_us\":%.1f,"
      "\"last_max_us\":%.1f,\"each_mean_us\":%.1f,\"each_p999_us\":%.1f,\"each_max_us\":%.1f,"
      "\"client_cpu_pct\":%.1f",
      G.nconns, G.open_now, G.hellos,
      G.t_ready > G.t_connect0 ? (double)(G.t_ready - G.t_connect0) / 1e9 : 0.0, secs, G.msgs,
      G.deliveries, G.published, G.rounds_done, G.total_msgs, G.total_deliveries, G.self_deliveries,
      G.h_last.n ? (double)G.h_last.sum / (double)G.h_last.n / 1e3 : 0.0,
      h_quantile(&G.h_last, 0.999) / 1e3, G.h_last.n ? (double)G.h_last.max / 1e3 : 0.0,
      G.h_each.n ? (double)G.h_each.sum / (double)G.h_each.n / 1e3 : 0.0,
      h_quantile(&G.h_each, 0.999) / 1e3, G.h_each.n ? (double)G.h_each.max / 1e3 : 0.0,
      secs > 0 ? 100 * cpu / secs : 0.0);
  double hz = (double)sysconf(_SC_CLK_TCK);
  double scpu = 0;
  if (G.server_pid > 0 && G.srv0 >= 0 && G.srv1 >= 0) {
    scpu = (double)(G.srv1 - G.srv0) / hz;
    printf(",\"server_cpu_pct\":%.1f,\"server_cpu_ns_per_delivery\":%.1f",
           secs > 0 ? 100 * scpu / secs : 0.0,
           G.deliveries ? scpu * 1e9 / (double)G.deliveries : 0.0);
  }
  if (G.server_pid > 0 && secs > 0 && G.busy0 >= 0 && G.busy1 >= 0) {
    double busy = (double)(G.busy1 - G.busy0) / hz;
    double other = busy - cpu - scpu;
    printf(",\"cores\":%d,\"other_cpu_pct\":%.1f,\"steal_pct\":%.1f", CPU_COUNT(&G.cores),
           other > 0 ? 100 * other / secs : 0.0, 100 * (double)(G.steal1 - G.steal0) / hz / secs);
  }
  printf("}\n");
  fflush(stdout);
}

static void finish(void) {
  if (G.phase == PH_DONE) return;
  bool measured = G.phase == PH_MEASURE;
  G.phase = PH_DONE;
  if (measured) {
    G.t_end = uv_hrtime();
    getrusage(RUSAGE_SELF, &G.ru1);
    if (G.server_pid > 0) G.srv1 = proc_cpu_ticks(G.server_pid);
    proc_stat_ticks(&G.busy1, &G.steal1);
  } else {
    G.t_start = G.t_end = 0;
    G.ru1 = G.ru0;
    G.busy0 = G.busy1 = -1;
  }
  print_result();
  exit(measured && G.deliveries > 0 && !G.stalled ? 0 : 1);
}

static void on_measure_end(uv_timer_t *t) {
  (void)t;
  finish();
}

static void begin_measure(void) {
  h_reset(&G.h_last);
  h_reset(&G.h_each);
  G.deliveries = G.msgs = G.published = G.rounds_done = 0;
  G.phase = PH_MEASURE;
  if (G.server_pid > 0) G.srv0 = proc_cpu_ticks(G.server_pid);
  proc_stat_ticks(&G.busy0, &G.steal0);
  getrusage(RUSAGE_SELF, &G.ru0);
  G.t_start = uv_hrtime();
  uv_timer_start(&G.t_phase, on_measure_end, (uint64_t)(G.duration * 1000 + 0.5), 0);
}

static void on_warmup_end(uv_timer_t *t) {
  (void)t;
  begin_measure();
}

/* Every 100 ms: a run without deliveries for --stall-timeout seconds has lost something. */
static void on_watch(uv_timer_t *t) {
  (void)t;
  if (!running()) return;
  uint64_t now = uv_hrtime();
  if ((double)(now - G.last_delivery) / 1e9 < G.stall_timeout) return;
  G.stalled = true;
  G.errors++;
  if (G.all) {
    int behind = 0;
    uint32_t lo = UINT32_MAX;
    for (int i = 0; i < G.nconns; i++) {
      if (G.c[i].round < lo) lo = G.c[i].round;
    }
    for (int i = 0; i < G.nconns; i++) behind += G.c[i].round == lo;
    fprintf(stderr, "fanout: stalled: no delivery for %.1f s; %d client(s) stuck in round %u\n",
            G.stall_timeout, behind, lo);
  } else {
    slot *s = &G.slots[G.seq_done % (uint64_t)G.window];
    fprintf(stderr,
            "fanout: stalled: no delivery for %.1f s; message %" PRIu64
            " reached %u of %u subscribers\n",
            G.stall_timeout, G.seq_done, s->cnt, G.target);
  }
  finish();
}

static void start_load(void) {
  G.phase = PH_WARMUP;
  G.t_ready = uv_hrtime();
  uint64_t now = G.t_ready;
  G.last_delivery = now;
  if (G.all) {
    G.target = (uint32_t)G.open_now;
    for (int i = 0; i < G.nconns; i++) {
      conn *c = &G.c[i];
      if (c->state != ST_OPEN) continue;
      slot *s = &G.slots[i];
      s->t = now;
      s->busy = 1;
      publish(c, (uint32_t)i, 0, now);
      flush(c);
    }
  } else {
    G.target = (uint32_t)(G.open_now - (G.pub->state == ST_OPEN ? 1 : 0));
    if (G.pub->state != ST_OPEN || G.target == 0) {
      fprintf(stderr, "fanout: the publisher or every subscriber failed to connect\n");
      finish();
      return;
    }
    for (int k = 0; k < G.window; k++) {
      slot *s = &G.slots[G.seq_next % (uint64_t)G.window];
      s->t = now;
      s->cnt = 0;
      s->busy = 1;
      publish(G.pub, 0, G.seq_next++, now);
    }
    flush(G.pub);
  }
  uv_timer_start(&G.t_watch, on_watch, 100, 100);
  if (G.warmup > 0)
    uv_timer_start(&G.t_phase, on_warmup_end, (uint64_t)(G.warmup * 1000 + 0.5), 0);
  else
    begin_measure();
}

/* Called once connecting is over, and on every HELLO after that. */
static void maybe_start(void) {
  if (G.phase != PH_READY) return;
  if (G.wait_hello && G.hellos < G.open_now) return;
  uv_timer_stop(&G.t_connect);
  start_load();
}

static void connect_phase_done(void) {
  G.connect_done = true;
  if (G.failed) fprintf(stderr, "fanout: %d of %d connections failed\n", G.failed, G.nconns);
  if (G.open_now == 0) {
    fprintf(stderr, "fanout: no connection could be opened\n");
    finish();
    return;
  }
  G.phase = PH_READY;
  maybe_start();
}

static void pump_connects(void) {
  static bool pumping;
  if (pumping) return;
  pumping = true;
  while (G.connecting < G.conc && G.next < G.nconns) start_connect(&G.c[G.next++]);
  pumping = false;
  if (!G.connect_done && G.resolved == G.nconns) connect_phase_done();
}

static void on_connect_timeout(uv_timer_t *t) {
  (void)t;
  if (G.connect_done) { /* still waiting for HELLOs */
    fprintf(stderr, "fanout: only %d of %d connections got a HELLO within %.0f s\n", G.hellos,
            G.open_now, G.connect_timeout);
    G.errors++;
    finish();
    return;
  }
  int pending = 0;
  for (int i = 0; i < G.nconns; i++) {
    conn *c = &G.c[i];
    if (c->resolved) continue;
    pending++;
    if (c->state != ST_IDLE) {
      conn_close(c);
      c->resolved = 1;
      G.connecting--;
    }
    G.resolved++;
    G.failed++;
    G.errors++;
  }
  G.next = G.nconns;
  fprintf(stderr, "fanout: connect timeout: %d connection(s) not open after %.0f s\n", pending,
          G.connect_timeout);
  if (!G.connect_done) connect_phase_done();
  /* Whoever has not sent a HELLO by now gets 10 s more. */
  if (G.phase == PH_READY) uv_timer_start(&G.t_connect, on_connect_timeout, 10000, 0);
}

static void on_signal(uv_signal_t *s, int signum) {
  (void)s, (void)signum;
  finish();
}

/* ---------------------------------------------------------------------------------------- */
/* Main                                                                                       */
/* ---------------------------------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: fanout --port P [options]\n"
          "  --host ADDR             server address, an IP literal (default 127.0.0.1)\n"
          "  --port P                server port (required)\n"
          "  --path PATH             request path (default /)\n"
          "  --pattern one|all       one publisher and --subs subscribers, or every one of\n"
          "                          --subs clients publishing in lockstep rounds (default one)\n"
          "  --subs N                subscribers (default 1000)\n"
          "  --window K              --pattern one: messages in flight (default 1: lockstep)\n"
          "  --size BYTES            body of each SEND envelope, >= 24 (default 32)\n"
          "  --duration S            measured seconds (default 5)\n"
          "  --warmup S              seconds of load before measuring (default 1)\n"
          "  --hello                 wait for the server's HELLO on every connection first\n"
          "  --connect-concurrency N handshakes in progress at once (default 128)\n"
          "  --connect-timeout S     give up on connections (and HELLOs) by then (default 90)\n"
          "  --stall-timeout S       stop when nothing was delivered for S seconds (default 10)\n"
          "  --server-pid PID        also report that process's CPU time\n");
}

static double num_arg(const char *name, const char *v, double lo, double hi) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  if (errno || end == v || *end || d < lo || d > hi) {
    fprintf(stderr, "fanout: bad value for --%s: %s\n", name, v);
    exit(2);
  }
  return d;
}

int main(int argc, char **argv) {
  G.host = "127.0.0.1";
  G.path = "/";
  G.port = -1;
  G.nsubs = 1000;
  G.window = 1;
  G.size = 32;
  G.duration = 5;
  G.warmup = 1;
  G.conc = 128;
  G.connect_timeout = 90;
  G.stall_timeout = 10;
  G.srv0 = G.srv1 = -1;
  G.busy0 = G.busy1 = -1;

  enum {
    OPT_HOST = 256,
    OPT_PORT,
    OPT_PATH,
    OPT_PATTERN,
    OPT_SUBS,
    OPT_WINDOW,
    OPT_SIZE,
    OPT_DURATION,
    OPT_WARMUP,
    OPT_HELLO,
    OPT_CONC,
    OPT_CTIMEOUT,
    OPT_STALL,
    OPT_PID,
    OPT_HELP
  };
  static const struct option opts[] = {{"host", required_argument, 0, OPT_HOST},
                                       {"port", required_argument, 0, OPT_PORT},
                                       {"path", required_argument, 0, OPT_PATH},
                                       {"pattern", required_argument, 0, OPT_PATTERN},
                                       {"subs", required_argument, 0, OPT_SUBS},
                                       {"window", required_argument, 0, OPT_WINDOW},
                                       {"size", required_argument, 0, OPT_SIZE},
                                       {"duration", required_argument, 0, OPT_DURATION},
                                       {"warmup", required_argument, 0, OPT_WARMUP},
                                       {"hello", no_argument, 0, OPT_HELLO},
                                       {"connect-concurrency", required_argument, 0, OPT_CONC},
                                       {"connect-timeout", required_argument, 0, OPT_CTIMEOUT},
                                       {"stall-timeout", required_argument, 0, OPT_STALL},
                                       {"server-pid", required_argument, 0, OPT_PID},
                                       {"help", no_argument, 0, OPT_HELP},
                                       {0, 0, 0, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (o) {
      case OPT_HOST:
        G.host = optarg;
        break;
      case OPT_PORT:
        G.port = (int)num_arg("port", optarg, 1, 65535);
        break;
      case OPT_PATH:
        G.path = optarg;
        break;
      case OPT_PATTERN:
        if (strcmp(optarg, "one") == 0)
          G.all = false;
        else if (strcmp(optarg, "all") == 0)
          G.all = true;
        else {
          fprintf(stderr, "fanout: --pattern is one or all\n");
          return 2;
        }
        break;
      case OPT_SUBS:
        G.nsubs = (int)num_arg("subs", optarg, 1, 1000000);
        break;
      case OPT_WINDOW:
        G.window = (int)num_arg("window", optarg, 1, 1 << 20);
        break;
      case OPT_SIZE:
        G.size = (size_t)num_arg("size", optarg, BODY_MIN, 1 << 20);
        break;
      case OPT_DURATION:
        G.duration = num_arg("duration", optarg, 0.001, 1e6);
        break;
      case OPT_WARMUP:
        G.warmup = num_arg("warmup", optarg, 0, 1e6);
        break;
      case OPT_HELLO:
        G.wait_hello = true;
        break;
      case OPT_CONC:
        G.conc = (int)num_arg("connect-concurrency", optarg, 1, 1000000);
        break;
      case OPT_CTIMEOUT:
        G.connect_timeout = num_arg("connect-timeout", optarg, 0.001, 1e6);
        break;
      case OPT_STALL:
        G.stall_timeout = num_arg("stall-timeout", optarg, 0.1, 1e6);
        break;
      case OPT_PID:
        G.server_pid = (int)num_arg("server-pid", optarg, 1, 1 << 30);
        break;
      case OPT_HELP:
        usage(stdout);
        return 0;
      default:
        usage(stderr);
        return 2;
    }
  }
  if (optind < argc || G.port < 0) {
    usage(stderr);
    return 2;
  }
  if (G.all) G.window = 1;
  G.nconns = G.all ? G.nsubs : G.nsubs + 1;

  signal(SIGPIPE, SIG_IGN);

  CPU_ZERO(&G.cores);
  sched_getaffinity(0, sizeof G.cores, &G.cores);
  if (G.server_pid > 0) {
    cpu_set_t s;
    CPU_ZERO(&s);
    if (sched_getaffinity(G.server_pid, sizeof s, &s) == 0) CPU_OR(&G.cores, &G.cores, &s);
  }

  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      (rlim_t)G.nconns + 32 > rl.rlim_cur)
    fprintf(stderr, "fanout: warning: %d connections but only %llu file descriptors allowed\n",
            G.nconns, (unsigned long long)rl.rlim_cur);

  const char *host = strcmp(G.host, "localhost") == 0 ? "127.0.0.1" : G.host;
  if (uv_ip4_addr(host, G.port, (struct sockaddr_in *)&G.addr) != 0 &&
      uv_ip6_addr(host, G.port, (struct sockaddr_in6 *)&G.addr) != 0) {
    fprintf(stderr, "fanout: --host must be an IP address: %s\n", G.host);
    return 2;
  }

  bool v6 = G.addr.ss_family == AF_INET6;
  const char *fmt =
      "GET %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key: " WS_KEY
      "\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n";
  int rn = snprintf(NULL, 0, fmt, G.path, v6 ? "[" : "", host, v6 ? "]" : "", G.port);
  G.req = malloc((size_t)rn + 1);
  if (!G.req) die("out of memory", 0);
  snprintf(G.req, (size_t)rn + 1, fmt, G.path, v6 ? "[" : "", host, v6 ? "]" : "", G.port);
  G.req_len = (size_t)rn;

  /* SEND envelope: kind 4, method 0, status 0, id 0, stream "", offset 0, epoch 0, url "",
   * then the body (its first 24 bytes are filled in per message). */
  G.msg_len = ENV_HDR + G.size;
  G.msg = calloc(1, G.msg_len);
  if (!G.msg) die("out of memory", 0);
  G.msg[0] = 4;
  for (size_t i = BODY_MIN; i < G.size; i++) G.msg[ENV_HDR + i] = (uint8_t)('a' + i % 26);

  G.rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
  if (!G.rng) G.rng = 1;
  h_reset(&G.h_last);
  h_reset(&G.h_each);

  G.c = calloc((size_t)G.nconns, sizeof *G.c);
  G.slots = calloc(G.all ? 2 * (size_t)G.nconns : (size_t)G.window, sizeof *G.slots);
  if (!G.c || !G.slots) die("out of memory", 0);
  if (!G.all) G.pub = &G.c[G.nsubs];

  G.loop = uv_default_loop();
  uv_timer_init(G.loop, &G.t_phase);
  uv_timer_init(G.loop, &G.t_connect);
  uv_timer_init(G.loop, &G.t_watch);
  uv_signal_init(G.loop, &G.sig_int);
  uv_signal_init(G.loop, &G.sig_term);
  uv_signal_start(&G.sig_int, on_signal, SIGINT);
  uv_signal_start(&G.sig_term, on_signal, SIGTERM);

  G.t_connect0 = uv_hrtime();
  uv_timer_start(&G.t_connect, on_connect_timeout, (uint64_t)(G.connect_timeout * 1000 + 0.5), 0);
  pump_connects();
  uv_run(G.loop, UV_RUN_DEFAULT);
  return 1;
}
