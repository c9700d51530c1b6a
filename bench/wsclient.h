/*
 * wsclient.h — what bench/loadgen.c and bench/fanout.c share: a minimal WebSocket client on
 * libuv (fixed-key handshake, masked frames, an incremental parser of the server's frames),
 * the connect phase of many such connections (wsc_pool), a log-linear latency histogram, CPU
 * accounting from /proc, and setup helpers. It does not use the Switchboard library.
 *
 * Connections: each program's `conn` starts with
 *   union { wsc_conn ws; struct { WSC_CONN_FIELDS }; };
 * so that its own code reads c->state, c->tx, ... and hands &c->ws to the functions here.
 * The program keeps what differs: frame and message handling (wsc_pool.parse, which may use
 * wsc_header_feed and wsc_frame_begin) and how a lost connection is counted (wsc_pool.lost).
 * What runs per message (h_add, rng32, mask_copy, wsc_queue_frame, the frame header parser)
 * is static inline here; the rest is in wsclient.c.
 */
#ifndef BENCH_WSCLIENT_H
#define BENCH_WSCLIENT_H

#include <uv.h>

#include <sched.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>

/* The program's name, for messages on stderr ("loadgen", "fanout"). */
extern const char *wsc_prog;

/* ---------------------------------------------------------------------------------------- */
/* Latency histogram: log-linear, values in nanoseconds.                                      */
/* Values below H_SUB are exact; above, every power of two is split into H_HALF buckets      */
/* (about 1.6% resolution).                                                                   */
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
  unsigned e = msb - H_SUB_BITS + 1; /* >= 1 */
  unsigned m = (unsigned)(v >> e);   /* in [H_HALF, H_SUB) */
  return H_SUB + (e - 1) * H_HALF + (m - H_HALF);
}

static inline void h_add(hist *h, uint64_t v) {
  h->b[h_index(v)]++;
  h->n++;
  h->sum += v;
  if (v < h->min) h->min = v;
  if (v > h->max) h->max = v;
}

void h_reset(hist *h);
/* The q-quantile (0 < q <= 1) in nanoseconds: the middle of the bucket holding it, clamped to
 * the exact minimum and maximum seen. */
double h_quantile(const hist *h, double q);

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* Prints "<prog>: what: error" and exits with status 2. */
void die(const char *what, int err);
void grow_slow(uint8_t **buf, size_t *cap, size_t need); /* grow, when it must realloc */
/* Grows *buf to at least `need` bytes (doubling from 256); dies when out of memory. */
static inline void grow(uint8_t **buf, size_t *cap, size_t need) {
  if (need > *cap) grow_slow(buf, cap, need);
}
/* The number in option --name's value v, which must lie in [lo, hi]; exits 2 otherwise. */
double num_arg(const char *name, const char *v, double lo, double hi);
static inline double tv_s(struct timeval tv) {
  return (double)tv.tv_sec + (double)tv.tv_usec / 1e6;
}

/* A non-zero seed for rng32 from the time and the pid. */
uint64_t rng_seed(void);

static inline uint32_t rng32(uint64_t *s) { /* xorshift64* */
  uint64_t x = *s;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  *s = x;
  return (uint32_t)((x * 0x2545F4914F6CDD1DULL) >> 32);
}

/* dst = src XOR key (repeating 4-byte key starting at key byte 0), 8 bytes at a time. */
static inline void mask_copy(uint8_t *restrict dst, const uint8_t *restrict src, size_t n,
                             const uint8_t key[4]) {
  uint8_t k8[8] = {key[0], key[1], key[2], key[3], key[0], key[1], key[2], key[3]};
  uint64_t k;
  memcpy(&k, k8, 8);
  size_t i = 0;
  for (; i + 32 <= n; i += 32) {
    uint64_t a, b, c, d;
    memcpy(&a, src + i, 8);
    memcpy(&b, src + i + 8, 8);
    memcpy(&c, src + i + 16, 8);
    memcpy(&d, src + i + 24, 8);
    a ^= k, b ^= k, c ^= k, d ^= k;
    memcpy(dst + i, &a, 8);
    memcpy(dst + i + 8, &b, 8);
    memcpy(dst + i + 16, &c, 8);
    memcpy(dst + i + 24, &d, 8);
  }
  for (; i + 8 <= n; i += 8) {
    uint64_t a;
    memcpy(&a, src + i, 8);
    a ^= k;
    memcpy(dst + i, &a, 8);
  }
  for (; i < n; i++) dst[i] = src[i] ^ key[i & 3];
}

/* Writes the header of a final, masked frame (sans mask key) with opcode `op` and an n-byte
 * payload to d[0..10); returns its length (2, 4 or 10). */
static inline size_t ws_frame_header(uint8_t *d, uint8_t op, size_t n) {
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
  return h;
}

/* ---------------------------------------------------------------------------------------- */
/* Setup                                                                                      */
/* ---------------------------------------------------------------------------------------- */

/* Raises the descriptor limit to the hard limit; warns if nconns will not fit. */
void raise_nofile(int nconns);

/* Parses host (an IP literal or "localhost") and port into *addr and builds the handshake
 * request for `path` into *req (malloc'd). Returns false, after a message, if host is not an
 * IP address. */
bool ws_target(const char *host, int port, const char *path, struct sockaddr_storage *addr,
               char **req, size_t *req_len);

/* ---------------------------------------------------------------------------------------- */
/* CPU accounting: this process (getrusage), the server (/proc/PID/stat) and the cores both   */
/* may run on (/proc/stat), sampled at the start and the end of the measured window.          */
/* ---------------------------------------------------------------------------------------- */

typedef struct {
  int server_pid;
  struct rusage ru0, ru1;
  long long srv0, srv1;                   /* server utime+stime in clock ticks, -1 if unknown */
  cpu_set_t cores;                        /* the cores this process and the server may run on */
  long long busy0, busy1, steal0, steal1; /* /proc/stat ticks over those cores, -1 if unknown */
} cpu_acct;

/* Sets what is unknown to -1 and finds the cores (ours and server_pid's, if > 0). */
void cpu_init(cpu_acct *a, int server_pid);
void cpu_begin(cpu_acct *a); /* samples the start of the window */
void cpu_end(cpu_acct *a);   /* samples its end */
void cpu_none(cpu_acct *a);  /* nothing was measured */
/* Seconds of CPU this process used in the window. */
double cpu_client_s(const cpu_acct *a);
/* Seconds of CPU the server used in the window into *s (0 if unknown); false if unknown. */
bool cpu_server_s(const cpu_acct *a, double *s);
/* With a server pid: prints ,"cores":..,"other_cpu_pct":..,"steal_pct":.. (what else ran on
 * those cores in `secs` seconds besides client_s and server_s). */
void cpu_print_other(const cpu_acct *a, double secs, double client_s, double server_s);

/* ---------------------------------------------------------------------------------------- */
/* Connections                                                                                */
/* ---------------------------------------------------------------------------------------- */

enum { ST_IDLE, ST_CONNECTING, ST_HANDSHAKE, ST_OPEN, ST_CLOSING, ST_CLOSED };

#define WSC_CONN_FIELDS                                                                \
  uv_tcp_t tcp;                                                                        \
  uv_connect_t creq;                                                                   \
  uv_write_t wreq;                                                                     \
  uint8_t state;                                                                       \
  uint8_t resolved; /* its connect/handshake outcome has been counted */               \
  uint8_t writing;  /* wreq is in flight (wb is owned by the kernel/libuv) */          \
  uint8_t close_sent;                                                                  \
  /* frame parser */                                                                   \
  uint8_t hdr_len, hdr_need, in_payload, f_opcode, f_fin, in_msg, msg_opcode, ctl_len; \
  uint8_t hdr[14];                                                                     \
  uint8_t ctl[125];                                                                    \
  uint64_t f_remaining, msg_len;                                                       \
  /* handshake response (only while handshaking) */                                    \
  char *hs;                                                                            \
  uint32_t hs_len;                                                                     \
  /* output: frames are built into tx; wb belongs to the write in flight */            \
  uint8_t *tx, *wb;                                                                    \
  size_t tx_len, tx_cap, wb_cap;

typedef struct wsc_conn {
  WSC_CONN_FIELDS
} wsc_conn;

/* The connections of a run and their connect phase. The program fills in the first part,
 * calls wsc_pool_start once, and reads the counters; the functions below work on the pool
 * given to wsc_pool_start (a program has one). */
typedef struct wsc_pool {
  uv_loop_t *loop;
  struct sockaddr_storage addr; /* see ws_target */
  char *req;                    /* the handshake request, the same for every connection */
  size_t req_len;
  int nconns, conc; /* connections; handshakes in progress at once at the most */
  uint8_t *conns;   /* the program's array of nconns connections, each starting with a */
  size_t conn_size; /* wsc_conn, conn_size bytes apart */
  uint64_t *errors; /* the program's error count: a failed connection counts one */
  /* The connection failed or ended (err: a libuv code or 0). The program counts it and calls
   * wsc_resolve(c, false) if it was not resolved yet, then wsc_close. */
  void (*lost)(wsc_conn *c, int err, const char *why);
  /* Parses server frames in p[0..n), received at `now`. */
  void (*parse)(wsc_conn *c, const uint8_t *p, size_t n, uint64_t now);
  /* Every connection has been resolved (open or failed); called once. */
  void (*all_resolved)(void);
  /* the connect phase */
  int next, connecting, resolved, open_now, opened, failed;
  bool connect_done;
} wsc_pool;

/* Starts connecting (at most conc at a time). */
void wsc_pool_start(wsc_pool *pool);
/* Closes c (counting it out of open_now if it was open). */
void wsc_close(wsc_conn *c);
/* Counts the outcome of one connection attempt, once, and starts the next ones. */
void wsc_resolve(wsc_conn *c, bool ok);
/* Gives up on every connection not resolved yet, counting each as failed; returns how many. */
int wsc_expire(void);
/* Hands tx to the kernel: uv_try_write first; whatever it refuses moves to wb for a
 * uv_write. A failed write is reported to pool->lost. */
void wsc_flush(wsc_conn *c);
/* Appends a masked frame with opcode `op`, payload p[0..n) and mask `key` to tx. */
static inline void wsc_queue_frame(wsc_conn *c, uint8_t op, const uint8_t *p, size_t n,
                                   uint32_t key) {
  grow(&c->tx, &c->tx_cap, c->tx_len + n + 14);
  uint8_t *d = c->tx + c->tx_len;
  size_t h = ws_frame_header(d, op, n);
  memcpy(d + h, &key, 4);
  mask_copy(d + h + 4, p, n, d + h);
  c->tx_len += h + 4 + n;
}

/* Moves frame header bytes from *p into c->hdr; true once the header is complete. */
static inline bool wsc_header_feed(wsc_conn *c, const uint8_t **p, size_t *n) {
  if (c->hdr_len < 2) {
    size_t take = 2u - c->hdr_len;
    if (take > *n) take = *n;
    memcpy(c->hdr + c->hdr_len, *p, take);
    c->hdr_len += (uint8_t)take, *p += take, *n -= take;
    if (c->hdr_len < 2) return false;
    unsigned l7 = c->hdr[1] & 0x7f;
    c->hdr_need = (uint8_t)(2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) + ((c->hdr[1] & 0x80) ? 4 : 0));
  }
  if (c->hdr_len < c->hdr_need) {
    size_t take = (size_t)(c->hdr_need - c->hdr_len);
    if (take > *n) take = *n;
    memcpy(c->hdr + c->hdr_len, *p, take);
    c->hdr_len += (uint8_t)take, *p += take, *n -= take;
    if (c->hdr_len < c->hdr_need) return false;
  }
  return true;
}

/* Starts a frame whose header is complete in c->hdr: checks it and sets up the payload state
 * (f_remaining, in_payload, the message). Returns NULL, or the protocol error. The caller
 * ends the frame at once if c->f_remaining is 0. */
static inline const char *wsc_frame_begin(wsc_conn *c, bool allow_masked) {
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
  if (b0 & 0x70) return "reserved bits set";
  if ((b1 & 0x80) && !allow_masked) return "masked frame from server";
  if (c->f_opcode & 8) {
    if (!c->f_fin || len > 125) return "bad control frame";
    c->ctl_len = 0;
  } else if (c->f_opcode == 0) {
    if (!c->in_msg) return "continuation without a message";
  } else if (c->f_opcode == 1 || c->f_opcode == 2) {
    if (c->in_msg) return "new message inside a fragmented one";
    c->in_msg = 1;
    c->msg_opcode = c->f_opcode;
    c->msg_len = 0;
  } else {
    return "reserved opcode";
  }
  c->f_remaining = len;
  c->in_payload = 1;
  return NULL;
}

#endif
