/*
 * wsclient.h — what bench/loadgen.c, bench/fanout.c and bench/restgen.c share: a minimal
 * WebSocket client on libuv (fixed-key handshake, masked frames, an incremental reader of the
 * server's frames that answers pings and closes), the connect phase of many such connections
 * (wsc_pool), the phases of a measured run (wsc_run: options, timers, signals, warm-up and
 * measured window, CPU accounting), a log-linear latency histogram, and setup and printing
 * helpers. It does not use the Switchboard library.
 *
 * Connections: each program's `conn` starts with
 *   union { wsc_conn ws; struct { WSC_CONN_FIELDS }; };
 * so that its own code reads c->state, c->tx, ... and hands &c->ws to the functions here.
 * The program keeps what differs: what a message means (wsc_pool.message), how a close from
 * the server and a lost connection are counted (wsc_pool.closed, wsc_pool.lost), what it
 * sends, and its result line (wsc_run.report).
 * What runs per message where the program calls it (h_add, rng32, mask_copy, wsc_send) is
 * static inline here; the frame reader (one call per read, calling the program's message
 * callback per message) and the rest are in wsclient.c.
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

/* The program's name, for messages on stderr ("loadgen", "fanout", "restgen"). */
extern const char *wsc_prog;
/* The state of rng32 for mask keys, seeded by wsc_setup. */
extern uint64_t wsc_rng;

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
/* The same in microseconds, and the mean and the maximum in microseconds (0 when empty). */
static inline double h_us(const hist *h, double q) { return h_quantile(h, q) / 1e3; }
static inline double h_mean_us(const hist *h) {
  return h->n ? (double)h->sum / (double)h->n / 1e3 : 0.0;
}
static inline double h_max_us(const hist *h) { return h->n ? (double)h->max / 1e3 : 0.0; }

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

/* Big-endian integers, as in Switchboard's envelopes (docs/PROTOCOL.md §2). */
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

/* An unsigned LEB128 varint at p[*i..n) (docs/PROTOCOL.md §2); advances *i past it. */
static inline bool get_varint(const uint8_t *p, size_t n, size_t *i, uint64_t *v) {
  *v = 0;
  for (unsigned shift = 0; shift < 64; shift += 7) {
    if (*i >= n) return false;
    uint8_t b = p[(*i)++];
    *v |= (uint64_t)(b & 0x7f) << shift;
    if (!(b & 0x80)) return true;
  }
  return false;
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

/* utime + stime of process pid (all threads) in clock ticks, from /proc/PID/stat; -1 if
 * unknown. */
long long wsc_proc_ticks(int pid);
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
/* Ends a result line: prints ,"client_cpu_pct":..; with the server's CPU time known,
 * ,"server_cpu_pct":.. and ,"<per>":.. (server CPU seconds x scale per one of n events, with
 * prec decimals); then what cpu_print_other prints, "}\n", and flushes stdout. */
void cpu_print_end(const cpu_acct *a, double secs, const char *per, double scale, int prec,
                   uint64_t n);

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
 * calls wsc_setup and wsc_go once, and reads the counters; the functions below work on the
 * pool given to wsc_setup (a program has one). */
typedef struct wsc_pool {
  uv_loop_t *loop;
  struct sockaddr_storage addr; /* the server */
  char *req;                    /* the handshake request, the same for every connection */
  size_t req_len;
  /* Connections from index alt_first on go to another server (wsc_alt_target); alt_first is
   * nconns (none) unless set. */
  struct sockaddr_storage alt_addr;
  char *alt_req;
  size_t alt_req_len;
  int alt_first;
  int nconns, conc; /* connections; handshakes in progress at once at the most */
  uint8_t *conns;   /* the program's array of nconns connections, each starting with a */
  size_t conn_size; /* wsc_conn, conn_size bytes apart (wsc_setup allocates it) */
  uint64_t *errors; /* the program's error count: a failed connection counts one */
  /* An open connection failed or ended (err: a libuv code or 0). The program counts it; the
   * pool then closes it. (A connection that fails before it opens is counted in failed and
   * errors, and reported on stderr, by the pool.) */
  void (*lost)(wsc_conn *c, int err, const char *why);
  /* A whole data message from the server: opcode op (1 text, 2 binary), len bytes, of which
   * p[0..avail) is the head (all of it when the frame came whole in one read; else up to
   * prefix bytes, copied into the program's buffer at prefix_off in its conn). */
  void (*message)(wsc_conn *c, uint8_t op, const uint8_t *p, size_t avail, uint64_t len,
                  uint64_t now);
  /* The server sent a close frame with that code (1005 if none); the pool answers it and the
   * connection ends. */
  void (*closed)(wsc_conn *c, unsigned code);
  size_t prefix_off, prefix; /* see message; prefix 0: heads are not kept (p is NULL) */
  bool allow_masked;         /* accept masked frames from the server (self-tests only) */
  /* Every connection has been resolved (open or failed); called once. */
  void (*all_resolved)(void);
  /* the connect phase */
  int next, connecting, resolved, open_now, opened, failed;
  bool connect_done;
} wsc_pool;

/* After wsc_setup: connections from index `first` on connect to host:port (an IP address;
 * exits 2 otherwise) with the same request path, instead of the run's --host and --port. */
void wsc_alt_target(wsc_pool *pool, const char *host, int port, const char *path, int first);
/* Closes c (counting it out of open_now if it was open). */
void wsc_close(wsc_conn *c);
/* Counts the outcome of one connection attempt, once, and starts the next ones. */
void wsc_resolve(wsc_conn *c, bool ok);
/* Gives up on every connection not resolved yet, counting each as failed; returns how many. */
int wsc_expire(void);
/* Hands tx to the kernel: uv_try_write first; whatever it refuses moves to wb for a
 * uv_write. A failed write is reported to pool->lost. */
void wsc_flush(wsc_conn *c);
/* c's index in the pool. */
int wsc_index(const wsc_conn *c);
/* Prints "<prog>: connection <i> lost: why[: libuv error]" on stderr. */
void wsc_print_lost(const wsc_conn *c, int err, const char *why);

/* Appends a masked frame with opcode `op` and payload p[0..n) to tx, with a fresh mask key. */
static inline void wsc_send(wsc_conn *c, uint8_t op, const uint8_t *p, size_t n) {
  grow(&c->tx, &c->tx_cap, c->tx_len + n + 14);
  uint8_t *d = c->tx + c->tx_len;
  size_t h = ws_frame_header(d, op, n);
  uint32_t key = rng32(&wsc_rng);
  memcpy(d + h, &key, 4);
  mask_copy(d + h + 4, p, n, d + h);
  c->tx_len += h + 4 + n;
}

/* ---------------------------------------------------------------------------------------- */
/* A run: options, phases, timers, signals, the measured window                              */
/* ---------------------------------------------------------------------------------------- */

/* The phases of a run. A program without a wait for readiness skips PH_READY. */
enum { PH_CONNECT, PH_READY, PH_WARMUP, PH_MEASURE, PH_DONE };

typedef struct wsc_run {
  /* options (wsc_option) */
  const char *host, *path;
  int port, server_pid;
  double duration, warmup, connect_timeout; /* seconds */
  /* The run is over (measured: a window was measured; phase is PH_DONE, t_start/t_end and
   * cpu hold the window): prints the result line; returns whether the run succeeded (exit
   * status 0, else 1). */
  bool (*report)(bool measured);
  /* The measured window begins: resets the program's counters of the window. */
  void (*measure)(void);
  /* Optional: every connection was resolved, but not every open one became ready by the
   * connect timeout (or 10 s later). */
  void (*ready_timeout)(void);
  /* Optional: SIGINT or SIGTERM (default: wsc_finish). */
  void (*interrupted)(void);
  /* state */
  int phase;
  uint64_t t_connect0, t_start, t_end; /* uv_hrtime: connecting began; the measured window */
  cpu_acct cpu;
  uv_timer_t t_phase, t_connect;
  uv_signal_t sig_int, sig_term;
} wsc_run;

/* Options every generator takes: their getopt_long codes (a program's own start at
 * WSC_OPT_END) and entries, to begin its table of options with. */
enum {
  WSC_OPT_HOST = 256,
  WSC_OPT_PORT,
  WSC_OPT_PATH,
  WSC_OPT_DURATION,
  WSC_OPT_WARMUP,
  WSC_OPT_CONC,
  WSC_OPT_CTIMEOUT,
  WSC_OPT_PID,
  WSC_OPT_END
};
#define WSC_OPTIONS                                                  \
  {"host", required_argument, 0, WSC_OPT_HOST},                      \
      {"port", required_argument, 0, WSC_OPT_PORT},                  \
      {"path", required_argument, 0, WSC_OPT_PATH},                  \
      {"duration", required_argument, 0, WSC_OPT_DURATION},          \
      {"warmup", required_argument, 0, WSC_OPT_WARMUP},              \
      {"connect-concurrency", required_argument, 0, WSC_OPT_CONC},   \
      {"connect-timeout", required_argument, 0, WSC_OPT_CTIMEOUT},   \
      {"server-pid", required_argument, 0, WSC_OPT_PID}
/* Takes option o (a WSC_OPT_ code) with value v into r and pool; false if o is not one of
 * them. A bad value exits 2. */
bool wsc_option(wsc_run *r, wsc_pool *pool, int o, const char *v);

/* Before the program's own setup: ignores SIGPIPE, starts CPU accounting (r->server_pid),
 * raises the descriptor limit, parses r->host and r->port (exits 2 if the host is not an IP
 * address) and builds the handshake request for r->path, seeds wsc_rng, allocates the
 * pool's nconns connections of conn_size bytes each (zeroed), and sets up the loop, the
 * timers and the signals. Returns the connections. */
void *wsc_setup(wsc_run *r, wsc_pool *pool, size_t conn_size);
/* Starts the connect timeout and the connect phase, and runs the loop; returns when the loop
 * has nothing left to do. */
void wsc_go(void);
/* The connect phase is over, for a program that then waits for its connections to become
 * ready (its pool->all_resolved): reports failed connections on stderr; with none open,
 * ends the run (wsc_finish) and returns false; else enters PH_READY and returns true. */
bool wsc_connected(void);
/* Load is running (phase is PH_WARMUP or PH_MEASURE). */
bool wsc_running(void);
/* After the first load was sent (phase PH_WARMUP): starts the measured window after
 * r->warmup seconds, or at once. It ends after r->duration seconds with wsc_finish. */
void wsc_warmup(void);
/* Ends the run (once): closes the measured window, calls report and exits. */
void wsc_finish(void);
/* The measured window in seconds (0 if none). */
double wsc_secs(void);
#endif
