/*
 * loadgen.c — a standalone WebSocket load generator on libuv, for Switchboard's benchmarks.
 *
 * It does not use the Switchboard library: it has its own minimal client handshake (a fixed
 * Sec-WebSocket-Key whose Sec-WebSocket-Accept is checked), its own masked framing and an
 * incremental parser for the server's unmasked frames, so that it can be pointed at any
 * WebSocket echo server (ours, Node's `ws`, ...).
 *
 *   loadgen --port P [--host 127.0.0.1] [--conns 100] [--size 32] [--inflight 1]
 *           [--duration 5] [--warmup 1] [--binary|--text] [--mode echo|idle]
 *
 * echo mode: opens --conns connections (at most --connect-concurrency handshakes at a time),
 *   then every connection keeps --inflight messages of --size bytes in flight: each echoed
 *   message is timed (per-connection FIFO of send times) and immediately replaced by a new one.
 *   After --warmup seconds it counts completions for --duration seconds and prints one line of
 *   JSON on stdout:
 *     {"conns":..,"size":..,"inflight":..,"msgs_per_s":..,"p50_us":..,"p99_us":..,"errors":..,
 *      "open":..,"duration_s":..,"msgs":..,"total_msgs":..,"mean_us":..,"p999_us":..,
 *      "max_us":..,"client_cpu_pct":..[,"server_cpu_pct":..,"server_cpu_us_per_msg":..]}
 *   The server_* fields appear with --server-pid PID: loadgen reads that process's utime+stime
 *   from /proc/PID/stat at the start and the end of the measured window.
 * idle mode: opens --conns connections, completes the handshakes, prints {"conns":N,"open":n}
 *   and holds them (answering pings, reading and discarding whatever messages the server sends)
 *   until SIGTERM, SIGINT or EOF on stdin (when stdin is a pipe or a terminal); then it prints
 *   {"conns":N,"open":n,"msgs_received":m}.
 *
 * Costs per message are kept low so that the generator is not the bottleneck: one shared read
 * buffer for all connections, frames parsed in place, outgoing frames built into reused
 * per-connection buffers with a fresh mask key per frame applied 8 bytes at a time, one write
 * (uv_try_write) per connection per read callback, no allocation per message, and latencies
 * kept in a log-linear histogram (about 1.6% resolution) rather than as samples.
 */
#include <uv.h>

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/time.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------- */
/* Latency histogram: log-linear, values in nanoseconds.                                      */
/* Values below H_SUB are exact; above, every power of two is split into H_HALF buckets.      */
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

/* The q-quantile (0 < q <= 1) in nanoseconds: the middle of the bucket holding it, clamped to
 * the exact minimum and maximum seen. */
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
enum { PH_CONNECT, PH_WARMUP, PH_MEASURE, PH_DONE };

#define HS_MAX 4096 /* largest handshake response accepted */
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* base64(sha1(WS_KEY + GUID)), RFC 6455 1.3 */

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  uv_write_t wreq;
  uint8_t state;
  uint8_t resolved; /* its connect/handshake outcome has been counted */
  uint8_t writing;  /* wreq is in flight (wb is owned by the kernel/libuv) */
  uint8_t close_sent;
  /* frame parser */
  uint8_t hdr_len, hdr_need;
  uint8_t in_payload;
  uint8_t f_opcode, f_fin;
  uint8_t in_msg, msg_opcode;
  uint8_t ctl_len;
  uint8_t hdr[14];
  uint8_t ctl[125];
  uint64_t f_remaining;
  uint64_t msg_len;
  /* handshake response (only while handshaking) */
  char *hs;
  uint32_t hs_len;
  /* output: frames are built into tx; wb belongs to the write in flight */
  uint8_t *tx, *wb;
  size_t tx_len, tx_cap, wb_cap;
  /* send times of the messages in flight, a ring of --inflight entries */
  uint64_t *sent;
  uint32_t s_head, s_count;
} conn;

static struct {
  /* options */
  const char *host, *path;
  int port, nconns, inflight, conc, server_pid;
  size_t size;
  double duration, warmup, connect_timeout;
  bool binary, idle, allow_masked;

  uv_loop_t *loop;
  struct sockaddr_storage addr;
  conn *c;
  char *req;
  size_t req_len;

  /* connect phase */
  int next, connecting, resolved, open_now, opened, failed;
  bool connect_done;

  /* load */
  int phase;
  uint8_t *payload;
  uint8_t fhdr[10];
  size_t fhdr_len, frame_len;
  uint64_t rng;
  uint64_t errors, total, completions;
  uint64_t t_start, t_end;
  hist h;
  struct rusage ru0, ru1;
  long long srv0, srv1; /* server utime+stime in clock ticks, -1 if unknown */
  cpu_set_t cores;      /* the cores this process and the server may run on */
  long long busy0, busy1, steal0, steal1; /* /proc/stat ticks over those cores, -1 if unknown */

  uv_timer_t t_phase, t_connect;
  uv_signal_t sig_int, sig_term;
  union {
    uv_pipe_t pipe;
    uv_tty_t tty;
  } in;
  bool in_open;
} G;

static uint8_t rbuf[256 * 1024]; /* shared read buffer: libuv reads one stream at a time */

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void on_write(uv_write_t *req, int status);
static void pump_connects(void);
static void finish(void);

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                    */
/* ---------------------------------------------------------------------------------------- */

static void die(const char *what, int err) {
  fprintf(stderr, "loadgen: %s: %s\n", what, err ? uv_strerror(err) : "failed");
  exit(2);
}

static inline uint32_t rng32(void) { /* xorshift64* */
  uint64_t x = G.rng;
  x ^= x >> 12;
  x ^= x << 25;
  x ^= x >> 27;
  G.rng = x;
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

static void grow(uint8_t **buf, size_t *cap, size_t need) {
  if (need <= *cap) return;
  size_t c = *cap ? *cap : 256;
  while (c < need) c *= 2;
  uint8_t *p = realloc(*buf, c);
  if (!p) die("out of memory", 0);
  *buf = p;
  *cap = c;
}

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
  /* fields 3..15 after "pid (comm)": state ppid pgrp session tty tpgid flags minflt cminflt
   * majflt cmajflt utime stime */
  if (sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2)
    return -1;
  return (long long)(ut + st);
}

/* Busy (user+nice+system+irq+softirq) and steal ticks of the cores in G.cores, from
 * /proc/stat. Tells whether something else ran on the benchmark's cores. */
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

/* Counts the outcome of one connection attempt, once. */
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

/* The connection failed or ended. `err` is a libuv code or 0. */
static void conn_lost(conn *c, int err, const char *why) {
  if (c->state == ST_CLOSED) return;
  if (!c->resolved) {
    if (G.failed < 5) /* keep stderr readable when many fail the same way */
      fprintf(stderr, "loadgen: connection %d: %s%s%s\n", (int)(c - G.c), why,
              err ? ": " : "", err ? uv_strerror(err) : "");
    conn_close(c);
    resolve(c, false);
    return;
  }
  if (G.phase != PH_DONE && !(c->state == ST_CLOSING)) {
    G.errors++;
    if (G.errors <= 5)
      fprintf(stderr, "loadgen: connection %d lost: %s%s%s\n", (int)(c - G.c), why,
              err ? ": " : "", err ? uv_strerror(err) : "");
  }
  conn_close(c);
}

/* Hands tx to the kernel: uv_try_write first; whatever it refuses moves to wb for a uv_write. */
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

/* Queues one benchmark message and remembers when it left. */
static inline void send_msg(conn *c, uint64_t now) {
  grow(&c->tx, &c->tx_cap, c->tx_len + G.frame_len);
  uint8_t *d = c->tx + c->tx_len;
  memcpy(d, G.fhdr, G.fhdr_len);
  uint32_t k = rng32();
  memcpy(d + G.fhdr_len, &k, 4);
  mask_copy(d + G.fhdr_len + 4, G.payload, G.size, d + G.fhdr_len);
  c->tx_len += G.frame_len;
  uint32_t i = c->s_head + c->s_count;
  if (i >= (uint32_t)G.inflight) i -= (uint32_t)G.inflight;
  c->sent[i] = now;
  c->s_count++;
}

static void on_message(conn *c, uint8_t op, uint64_t len, uint64_t now) {
  if (G.idle) { /* read and discarded (a server's greeting, pushes) */
    G.total++;
    return;
  }
  if (c->s_count == 0) { /* an echo of nothing */
    G.errors++;
    return;
  }
  uint64_t t0 = c->sent[c->s_head];
  if (++c->s_head == (uint32_t)G.inflight) c->s_head = 0;
  c->s_count--;
  if (len != G.size || op != (G.binary ? 2 : 1)) G.errors++;
  G.total++;
  if (G.phase == PH_MEASURE) {
    G.completions++;
    h_add(&G.h, now - t0);
  }
  if (G.phase == PH_WARMUP || G.phase == PH_MEASURE) send_msg(c, now);
}

static void protocol_error(conn *c, const char *why) {
  conn_lost(c, 0, why);
}

/* A frame has been read completely. */
static void frame_end(conn *c, uint64_t now) {
  c->in_payload = 0;
  if (c->f_opcode & 8) {
    if (c->f_opcode == 9) {
      queue_frame(c, 0xA, c->ctl, c->ctl_len); /* ping -> pong */
    } else if (c->f_opcode == 8) {
      if (G.phase != PH_DONE && !G.idle) {
        G.errors++;
        if (G.errors <= 5) fprintf(stderr, "loadgen: connection %d: server closed it\n",
                                   (int)(c - G.c));
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
    on_message(c, c->msg_opcode, c->msg_len, now);
  }
}

/* Starts a frame whose header is complete in c->hdr. Returns false if the connection died. */
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
  if ((b1 & 0x80) && !G.allow_masked) return protocol_error(c, "masked frame from server"), false;
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

/* Parses server frames in p[0..n), in place; any split is carried in the connection. */
static void parse(conn *c, const uint8_t *p, size_t n, uint64_t now) {
  while (n > 0 && c->state == ST_OPEN) {
    if (!c->in_payload) {
      if (c->hdr_len < 2) {
        size_t take = 2u - c->hdr_len;
        if (take > n) take = n;
        memcpy(c->hdr + c->hdr_len, p, take);
        c->hdr_len += (uint8_t)take, p += take, n -= take;
        if (c->hdr_len < 2) break;
        unsigned l7 = c->hdr[1] & 0x7f;
        c->hdr_need = (uint8_t)(2 + (l7 == 126 ? 2 : l7 == 127 ? 8 : 0) +
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
      c->msg_len += take;
    }
    p += take, n -= take;
    c->f_remaining -= take;
    if (c->f_remaining == 0) frame_end(c, now);
  }
}

/* Feeds handshake response bytes; returns how many of p[0..n) belong to the response. */
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

static void print_echo_result(void) {
  double secs = G.t_end > G.t_start ? (double)(G.t_end - G.t_start) / 1e9 : 0;
  double rate = secs > 0 ? (double)G.completions / secs : 0;
  double cpu = tv_s(G.ru1.ru_utime) + tv_s(G.ru1.ru_stime) - tv_s(G.ru0.ru_utime) -
               tv_s(G.ru0.ru_stime);
  printf("{\"conns\":%d,\"size\":%zu,\"inflight\":%d,\"msgs_per_s\":%.0f,\"p50_us\":%.1f,"
         "\"p99_us\":%.1f,\"errors\":%" PRIu64 ",\"open\":%d,\"duration_s\":%.3f,"
         "\"msgs\":%" PRIu64 ",\"total_msgs\":%" PRIu64 ",\"mean_us\":%.1f,\"p999_us\":%.1f,"
         "\"max_us\":%.1f,\"client_cpu_pct\":%.1f",
         G.nconns, G.size, G.inflight, rate, h_quantile(&G.h, 0.50) / 1e3,
         h_quantile(&G.h, 0.99) / 1e3, G.errors, G.open_now, secs, G.completions, G.total,
         G.h.n ? (double)G.h.sum / (double)G.h.n / 1e3 : 0.0, h_quantile(&G.h, 0.999) / 1e3,
         G.h.n ? (double)G.h.max / 1e3 : 0.0, secs > 0 ? 100 * cpu / secs : 0.0);
  double hz = (double)sysconf(_SC_CLK_TCK);
  double scpu = 0;
  if (G.server_pid > 0 && G.srv0 >= 0 && G.srv1 >= 0) {
    scpu = (double)(G.srv1 - G.srv0) / hz; /* seconds */
    printf(",\"server_cpu_pct\":%.1f,\"server_cpu_us_per_msg\":%.3f",
           secs > 0 ? 100 * scpu / secs : 0.0,
           G.completions ? scpu * 1e6 / (double)G.completions : 0.0);
  }
  if (G.server_pid > 0 && secs > 0 && G.busy0 >= 0 && G.busy1 >= 0) {
    /* Everything else that ran on these cores: other processes, kernel threads. */
    double busy = (double)(G.busy1 - G.busy0) / hz;
    double other = busy - cpu - scpu;
    printf(",\"cores\":%d,\"other_cpu_pct\":%.1f,\"steal_pct\":%.1f", CPU_COUNT(&G.cores),
           other > 0 ? 100 * other / secs : 0.0,
           100 * (double)(G.steal1 - G.steal0) / hz / secs);
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
  print_echo_result();
  exit(measured && G.completions > 0 ? 0 : 1);
}

static void on_measure_end(uv_timer_t *t) {
  (void)t;
  finish();
}

static void begin_measure(void) {
  h_reset(&G.h);
  G.completions = 0;
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

static void connect_phase_done(void) {
  G.connect_done = true;
  uv_timer_stop(&G.t_connect);
  if (G.idle) {
    printf("{\"conns\":%d,\"open\":%d}\n", G.nconns, G.open_now);
    fflush(stdout);
    return;
  }
  if (G.open_now == 0) {
    fprintf(stderr, "loadgen: no connection could be opened\n");
    finish();
    return;
  }
  G.phase = PH_WARMUP;
  uint64_t now = uv_hrtime();
  for (int i = 0; i < G.nconns; i++) {
    conn *c = &G.c[i];
    if (c->state != ST_OPEN) continue;
    c->sent = calloc((size_t)G.inflight, sizeof *c->sent);
    if (!c->sent) die("out of memory", 0);
    for (int k = 0; k < G.inflight; k++) send_msg(c, now);
    flush(c);
  }
  if (G.warmup > 0)
    uv_timer_start(&G.t_phase, on_warmup_end, (uint64_t)(G.warmup * 1000 + 0.5), 0);
  else
    begin_measure();
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
  fprintf(stderr, "loadgen: connect timeout: %d connection(s) not open after %.0f s\n", pending,
          G.connect_timeout);
  if (!G.connect_done) connect_phase_done();
}

/* ---------------------------------------------------------------------------------------- */
/* Shutdown: signals and stdin                                                                */
/* ---------------------------------------------------------------------------------------- */

/* idle mode, at exit: what the held connections received meanwhile. */
static void idle_exit(void) {
  printf("{\"conns\":%d,\"open\":%d,\"msgs_received\":%" PRIu64 "}\n", G.nconns, G.open_now,
         G.total);
  fflush(stdout);
  exit(0);
}

static void on_signal(uv_signal_t *s, int signum) {
  (void)s, (void)signum;
  if (G.idle) idle_exit();
  finish(); /* echo mode: report what was measured so far */
}

static void on_stdin_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h, (void)hint;
  static char b[256];
  buf->base = b;
  buf->len = sizeof b;
}

static void on_stdin(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  (void)s, (void)buf;
  if (nread < 0) idle_exit();
}

static void watch_stdin(void) {
  uv_handle_type t = uv_guess_handle(0);
  int r;
  if (t == UV_NAMED_PIPE) {
    r = uv_pipe_init(G.loop, &G.in.pipe, 0);
    if (!r) r = uv_pipe_open(&G.in.pipe, 0);
  } else if (t == UV_TTY) {
    r = uv_tty_init(G.loop, &G.in.tty, 0, 1);
  } else {
    return; /* a file or /dev/null: hold until a signal */
  }
  if (!r) r = uv_read_start((uv_stream_t *)&G.in, on_stdin_alloc, on_stdin);
  if (r) fprintf(stderr, "loadgen: not watching stdin: %s\n", uv_strerror(r));
}

/* ---------------------------------------------------------------------------------------- */
/* Main                                                                                       */
/* ---------------------------------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: loadgen --port P [options]\n"
          "  --host ADDR             server address, an IP literal (default 127.0.0.1)\n"
          "  --port P                server port (required)\n"
          "  --path PATH             request path (default /)\n"
          "  --conns N               connections (default 100)\n"
          "  --size BYTES            message payload size (default 32)\n"
          "  --inflight K            messages in flight per connection (default 1)\n"
          "  --duration S            measured seconds (default 5)\n"
          "  --warmup S              seconds of load before measuring (default 1)\n"
          "  --binary | --text       message type (default binary)\n"
          "  --mode echo|idle        measure echoes, or hold idle connections (default echo)\n"
          "  --connect-concurrency N handshakes in progress at once (default 64)\n"
          "  --connect-timeout S     give up on connections not open by then (default 60)\n"
          "  --server-pid PID        also report that process's CPU time per message\n"
          "  --allow-masked-frames   accept masked frames from the server (self-tests only)\n");
}

static double num_arg(const char *name, const char *v, double lo, double hi) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  if (errno || end == v || *end || d < lo || d > hi) {
    fprintf(stderr, "loadgen: bad value for --%s: %s\n", name, v);
    exit(2);
  }
  return d;
}

int main(int argc, char **argv) {
  G.host = "127.0.0.1";
  G.path = "/";
  G.port = -1;
  G.nconns = 100;
  G.size = 32;
  G.inflight = 1;
  G.duration = 5;
  G.warmup = 1;
  G.binary = true;
  G.conc = 64;
  G.connect_timeout = 60;
  G.srv0 = G.srv1 = -1;
  G.busy0 = G.busy1 = -1;

  enum { OPT_HOST = 256, OPT_PORT, OPT_PATH, OPT_CONNS, OPT_SIZE, OPT_INFLIGHT, OPT_DURATION,
         OPT_WARMUP, OPT_BINARY, OPT_TEXT, OPT_MODE, OPT_CONC, OPT_CTIMEOUT, OPT_PID, OPT_MASKED,
         OPT_HELP };
  static const struct option opts[] = {
      {"host", required_argument, 0, OPT_HOST},
      {"port", required_argument, 0, OPT_PORT},
      {"path", required_argument, 0, OPT_PATH},
      {"conns", required_argument, 0, OPT_CONNS},
      {"size", required_argument, 0, OPT_SIZE},
      {"inflight", required_argument, 0, OPT_INFLIGHT},
      {"duration", required_argument, 0, OPT_DURATION},
      {"warmup", required_argument, 0, OPT_WARMUP},
      {"binary", no_argument, 0, OPT_BINARY},
      {"text", no_argument, 0, OPT_TEXT},
      {"mode", required_argument, 0, OPT_MODE},
      {"connect-concurrency", required_argument, 0, OPT_CONC},
      {"connect-timeout", required_argument, 0, OPT_CTIMEOUT},
      {"server-pid", required_argument, 0, OPT_PID},
      {"allow-masked-frames", no_argument, 0, OPT_MASKED},
      {"help", no_argument, 0, OPT_HELP},
      {0, 0, 0, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    switch (o) {
    case OPT_HOST: G.host = optarg; break;
    case OPT_PORT: G.port = (int)num_arg("port", optarg, 1, 65535); break;
    case OPT_PATH: G.path = optarg; break;
    case OPT_CONNS: G.nconns = (int)num_arg("conns", optarg, 1, 1000000); break;
    case OPT_SIZE: G.size = (size_t)num_arg("size", optarg, 0, 1 << 30); break;
    case OPT_INFLIGHT: G.inflight = (int)num_arg("inflight", optarg, 1, 1 << 20); break;
    case OPT_DURATION: G.duration = num_arg("duration", optarg, 0.001, 1e6); break;
    case OPT_WARMUP: G.warmup = num_arg("warmup", optarg, 0, 1e6); break;
    case OPT_BINARY: G.binary = true; break;
    case OPT_TEXT: G.binary = false; break;
    case OPT_MODE:
      if (strcmp(optarg, "echo") == 0) G.idle = false;
      else if (strcmp(optarg, "idle") == 0) G.idle = true;
      else {
        fprintf(stderr, "loadgen: --mode is echo or idle\n");
        return 2;
      }
      break;
    case OPT_CONC: G.conc = (int)num_arg("connect-concurrency", optarg, 1, 1000000); break;
    case OPT_CTIMEOUT: G.connect_timeout = num_arg("connect-timeout", optarg, 0.001, 1e6); break;
    case OPT_PID: G.server_pid = (int)num_arg("server-pid", optarg, 1, 1 << 30); break;
    case OPT_MASKED: G.allow_masked = true; break;
    case OPT_HELP: usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc || G.port < 0) {
    usage(stderr);
    return 2;
  }

  signal(SIGPIPE, SIG_IGN);

  /* The cores whose load matters: ours and the server's. */
  CPU_ZERO(&G.cores);
  sched_getaffinity(0, sizeof G.cores, &G.cores);
  if (G.server_pid > 0) {
    cpu_set_t s;
    CPU_ZERO(&s);
    if (sched_getaffinity(G.server_pid, sizeof s, &s) == 0) CPU_OR(&G.cores, &G.cores, &s);
  }

  /* Raise the descriptor limit to the hard limit. */
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      (rlim_t)G.nconns + 32 > rl.rlim_cur)
    fprintf(stderr, "loadgen: warning: %d connections but only %llu file descriptors allowed\n",
            G.nconns, (unsigned long long)rl.rlim_cur);

  const char *host = strcmp(G.host, "localhost") == 0 ? "127.0.0.1" : G.host;
  if (uv_ip4_addr(host, G.port, (struct sockaddr_in *)&G.addr) != 0 &&
      uv_ip6_addr(host, G.port, (struct sockaddr_in6 *)&G.addr) != 0) {
    fprintf(stderr, "loadgen: --host must be an IP address: %s\n", G.host);
    return 2;
  }

  /* The handshake request, the same for every connection. */
  bool v6 = G.addr.ss_family == AF_INET6;
  int rn = snprintf(NULL, 0,
                    "GET %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nUpgrade: websocket\r\n"
                    "Connection: Upgrade\r\nSec-WebSocket-Key: " WS_KEY "\r\n"
                    "Sec-WebSocket-Version: 13\r\n\r\n",
                    G.path, v6 ? "[" : "", host, v6 ? "]" : "", G.port);
  G.req = malloc((size_t)rn + 1);
  if (!G.req) die("out of memory", 0);
  snprintf(G.req, (size_t)rn + 1,
           "GET %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nUpgrade: websocket\r\n"
           "Connection: Upgrade\r\nSec-WebSocket-Key: " WS_KEY "\r\n"
           "Sec-WebSocket-Version: 13\r\n\r\n",
           G.path, v6 ? "[" : "", host, v6 ? "]" : "", G.port);
  G.req_len = (size_t)rn;

  /* The message: printable ASCII (valid UTF-8 for --text) and its frame header sans mask. */
  G.payload = malloc(G.size ? G.size : 1);
  if (!G.payload) die("out of memory", 0);
  for (size_t i = 0; i < G.size; i++) G.payload[i] = (uint8_t)('a' + i % 26);
  G.fhdr[0] = 0x80 | (G.binary ? 2 : 1);
  if (G.size < 126) {
    G.fhdr[1] = 0x80 | (uint8_t)G.size;
    G.fhdr_len = 2;
  } else if (G.size < 65536) {
    G.fhdr[1] = 0x80 | 126;
    G.fhdr[2] = (uint8_t)(G.size >> 8);
    G.fhdr[3] = (uint8_t)G.size;
    G.fhdr_len = 4;
  } else {
    G.fhdr[1] = 0x80 | 127;
    for (int i = 0; i < 8; i++) G.fhdr[2 + i] = (uint8_t)((uint64_t)G.size >> (8 * (7 - i)));
    G.fhdr_len = 10;
  }
  G.frame_len = G.fhdr_len + 4 + G.size;
  G.rng = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
  if (!G.rng) G.rng = 1;
  h_reset(&G.h);

  G.c = calloc((size_t)G.nconns, sizeof *G.c);
  if (!G.c) die("out of memory", 0);

  G.loop = uv_default_loop();
  uv_timer_init(G.loop, &G.t_phase);
  uv_timer_init(G.loop, &G.t_connect);
  uv_signal_init(G.loop, &G.sig_int);
  uv_signal_init(G.loop, &G.sig_term);
  uv_signal_start(&G.sig_int, on_signal, SIGINT);
  uv_signal_start(&G.sig_term, on_signal, SIGTERM);
  if (G.idle) watch_stdin();

  uv_timer_start(&G.t_connect, on_connect_timeout, (uint64_t)(G.connect_timeout * 1000 + 0.5), 0);
  pump_connects();
  uv_run(G.loop, UV_RUN_DEFAULT);
  /* Reached only if every handle went away (idle mode with no connection and no stdin). */
  return G.open_now > 0 ? 0 : 1;
}
