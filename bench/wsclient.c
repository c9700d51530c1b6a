/*
 * wsclient.c — the rest of bench/wsclient.h: connection setup and teardown, the write path,
 * the handshake, the frame reader, the phases of a run, the histogram's quantiles, CPU
 * accounting and setup helpers.
 */
#include "wsclient.h"

#include <errno.h>
#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#define HS_MAX 4096 /* largest handshake response accepted */
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* base64(sha1(WS_KEY + GUID)), RFC 6455 1.3 */

static uint8_t rbuf[256 * 1024]; /* shared read buffer: libuv reads one stream at a time */

uint64_t wsc_rng = 1;

/* ---------------------------------------------------------------------------------------- */
/* Histogram                                                                                  */
/* ---------------------------------------------------------------------------------------- */

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

void h_reset(hist *h) {
  memset(h, 0, sizeof *h);
  h->min = UINT64_MAX;
}

double h_quantile(const hist *h, double q) {
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
/* Helpers                                                                                    */
/* ---------------------------------------------------------------------------------------- */

void die(const char *what, int err) {
  fprintf(stderr, "%s: %s: %s\n", wsc_prog, what, err ? uv_strerror(err) : "failed");
  exit(2);
}

void grow_slow(uint8_t **buf, size_t *cap, size_t need) {
  size_t c = *cap ? *cap : 256;
  while (c < need) c *= 2;
  uint8_t *p = realloc(*buf, c);
  if (!p) die("out of memory", 0);
  *buf = p;
  *cap = c;
}

double num_arg(const char *name, const char *v, double lo, double hi) {
  char *end;
  errno = 0;
  double d = strtod(v, &end);
  if (errno || end == v || *end || d < lo || d > hi) {
    fprintf(stderr, "%s: bad value for --%s: %s\n", wsc_prog, name, v);
    exit(2);
  }
  return d;
}

uint64_t rng_seed(void) {
  uint64_t s = uv_hrtime() ^ ((uint64_t)getpid() << 32) ^ 0x9E3779B97F4A7C15ULL;
  return s ? s : 1;
}

/* ---------------------------------------------------------------------------------------- */
/* Setup                                                                                      */
/* ---------------------------------------------------------------------------------------- */

/* Raises the descriptor limit to the hard limit; warns if nconns will not fit. */
static void raise_nofile(int nconns) {
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      (rlim_t)nconns + 32 > rl.rlim_cur)
    fprintf(stderr, "%s: warning: %d connections but only %llu file descriptors allowed\n",
            wsc_prog, nconns, (unsigned long long)rl.rlim_cur);
}

/* Parses host (an IP literal or "localhost") and port into *addr and builds the handshake
 * request for `path` into *req (malloc'd). Returns false, after a message, if host is not an
 * IP address. */
static bool ws_target(const char *host_arg, int port, const char *path,
                      struct sockaddr_storage *addr, char **req, size_t *req_len) {
  const char *host = strcmp(host_arg, "localhost") == 0 ? "127.0.0.1" : host_arg;
  if (uv_ip4_addr(host, port, (struct sockaddr_in *)addr) != 0 &&
      uv_ip6_addr(host, port, (struct sockaddr_in6 *)addr) != 0) {
    fprintf(stderr, "%s: --host must be an IP address: %s\n", wsc_prog, host_arg);
    return false;
  }
  /* The handshake request, the same for every connection. */
  bool v6 = addr->ss_family == AF_INET6;
  const char *fmt =
      "GET %s HTTP/1.1\r\nHost: %s%s%s:%d\r\nUpgrade: websocket\r\n"
      "Connection: Upgrade\r\nSec-WebSocket-Key: " WS_KEY
      "\r\n"
      "Sec-WebSocket-Version: 13\r\n\r\n";
  int rn = snprintf(NULL, 0, fmt, path, v6 ? "[" : "", host, v6 ? "]" : "", port);
  *req = malloc((size_t)rn + 1);
  if (!*req) die("out of memory", 0);
  snprintf(*req, (size_t)rn + 1, fmt, path, v6 ? "[" : "", host, v6 ? "]" : "", port);
  *req_len = (size_t)rn;
  return true;
}

/* ---------------------------------------------------------------------------------------- */
/* CPU accounting                                                                             */
/* ---------------------------------------------------------------------------------------- */

long long wsc_proc_ticks(int pid) {
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

/* Busy (user+nice+system+irq+softirq) and steal ticks of the given cores, from /proc/stat.
 * Tells whether something else ran on the benchmark's cores. */
static void proc_stat_ticks(const cpu_set_t *cores, long long *busy, long long *steal) {
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
    if (cpu < 0 || cpu >= CPU_SETSIZE || !CPU_ISSET(cpu, cores)) continue;
    b += (long long)(us + ni + sy + irq + sirq);
    st += (long long)stl;
    any = true;
  }
  fclose(f);
  if (any) *busy = b, *steal = st;
}

void cpu_init(cpu_acct *a, int server_pid) {
  a->server_pid = server_pid;
  a->srv0 = a->srv1 = -1;
  a->busy0 = a->busy1 = -1;
  /* The cores whose load matters: ours and the server's. */
  CPU_ZERO(&a->cores);
  sched_getaffinity(0, sizeof a->cores, &a->cores);
  if (server_pid > 0) {
    cpu_set_t s;
    CPU_ZERO(&s);
    if (sched_getaffinity(server_pid, sizeof s, &s) == 0) CPU_OR(&a->cores, &a->cores, &s);
  }
}

void cpu_begin(cpu_acct *a) {
  if (a->server_pid > 0) a->srv0 = wsc_proc_ticks(a->server_pid);
  proc_stat_ticks(&a->cores, &a->busy0, &a->steal0);
  getrusage(RUSAGE_SELF, &a->ru0);
}

void cpu_end(cpu_acct *a) {
  getrusage(RUSAGE_SELF, &a->ru1);
  if (a->server_pid > 0) a->srv1 = wsc_proc_ticks(a->server_pid);
  proc_stat_ticks(&a->cores, &a->busy1, &a->steal1);
}

void cpu_none(cpu_acct *a) {
  a->ru1 = a->ru0;
  a->busy0 = a->busy1 = -1;
}

double cpu_client_s(const cpu_acct *a) {
  return tv_s(a->ru1.ru_utime) + tv_s(a->ru1.ru_stime) - tv_s(a->ru0.ru_utime) -
         tv_s(a->ru0.ru_stime);
}

bool cpu_server_s(const cpu_acct *a, double *s) {
  *s = 0;
  if (a->server_pid <= 0 || a->srv0 < 0 || a->srv1 < 0) return false;
  *s = (double)(a->srv1 - a->srv0) / (double)sysconf(_SC_CLK_TCK); /* seconds */
  return true;
}

void cpu_print_other(const cpu_acct *a, double secs, double client_s, double server_s) {
  if (a->server_pid > 0 && secs > 0 && a->busy0 >= 0 && a->busy1 >= 0) {
    /* Everything else that ran on these cores: other processes, kernel threads. */
    double hz = (double)sysconf(_SC_CLK_TCK);
    double busy = (double)(a->busy1 - a->busy0) / hz;
    double other = busy - client_s - server_s;
    printf(",\"cores\":%d,\"other_cpu_pct\":%.1f,\"steal_pct\":%.1f", CPU_COUNT(&a->cores),
           other > 0 ? 100 * other / secs : 0.0, 100 * (double)(a->steal1 - a->steal0) / hz / secs);
  }
}

void cpu_print_end(const cpu_acct *a, double secs, const char *per, double scale, int prec,
                   uint64_t n) {
  double cpu = cpu_client_s(a);
  printf(",\"client_cpu_pct\":%.1f", secs > 0 ? 100 * cpu / secs : 0.0);
  double scpu;
  if (cpu_server_s(a, &scpu))
    printf(",\"server_cpu_pct\":%.1f,\"%s\":%.*f", secs > 0 ? 100 * scpu / secs : 0.0, per, prec,
           n ? scpu * scale / (double)n : 0.0);
  cpu_print_other(a, secs, cpu, scpu);
  printf("}\n");
  fflush(stdout);
}

/* ---------------------------------------------------------------------------------------- */
/* Connections                                                                                */
/* ---------------------------------------------------------------------------------------- */

static wsc_pool *P;

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);
static void read_frames(wsc_conn *c, const uint8_t *p, size_t n, uint64_t now);

int wsc_index(const wsc_conn *c) {
  return (int)(((const uint8_t *)c - P->conns) / P->conn_size);
}

static void print_conn(const wsc_conn *c, const char *what, int err, const char *why) {
  fprintf(stderr, "%s: connection %d%s: %s%s%s\n", wsc_prog, wsc_index(c), what, why,
          err ? ": " : "", err ? uv_strerror(err) : "");
}

void wsc_print_lost(const wsc_conn *c, int err, const char *why) { print_conn(c, " lost", err, why); }

/* The connection failed or ended (err: a libuv code or 0). */
static void lost(wsc_conn *c, int err, const char *why) {
  if (c->state == ST_CLOSED) return;
  if (!c->resolved) {
    if (P->failed < 5) print_conn(c, "", err, why); /* keep stderr readable when many fail alike */
    wsc_close(c);
    wsc_resolve(c, false);
    return;
  }
  P->lost(c, err, why);
  wsc_close(c);
}

static void on_alloc(uv_handle_t *h, size_t hint, uv_buf_t *buf) {
  (void)h, (void)hint;
  buf->base = (char *)rbuf;
  buf->len = sizeof rbuf;
}

static void on_close(uv_handle_t *h) {
  wsc_conn *c = h->data;
  free(c->tx);
  free(c->wb);
  free(c->hs);
  c->tx = c->wb = NULL;
  c->hs = NULL;
  c->tx_cap = c->wb_cap = c->tx_len = 0;
}

void wsc_close(wsc_conn *c) {
  if (c->state == ST_CLOSED || c->state == ST_IDLE) return;
  if (c->state == ST_OPEN || c->state == ST_CLOSING) P->open_now--;
  c->state = ST_CLOSED;
  uv_close((uv_handle_t *)&c->tcp, on_close);
}

static void pump_connects(void);

void wsc_resolve(wsc_conn *c, bool ok) {
  if (c->resolved) return;
  c->resolved = 1;
  P->connecting--;
  P->resolved++;
  if (ok) {
    P->opened++;
    P->open_now++;
  } else {
    P->failed++;
    (*P->errors)++;
  }
  pump_connects();
}

static void on_write(uv_write_t *req, int status) {
  wsc_conn *c = req->data;
  c->writing = 0;
  if (c->state == ST_CLOSED) return;
  if (status < 0) {
    lost(c, status, "write");
    return;
  }
  wsc_flush(c);
  if (c->state == ST_CLOSING && !c->writing && c->tx_len == 0) wsc_close(c);
}

void wsc_flush(wsc_conn *c) {
  if (c->writing || c->tx_len == 0 || c->state == ST_CLOSED) return;
  uv_buf_t b = uv_buf_init((char *)c->tx, (unsigned)c->tx_len);
  int r = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
  if (r >= 0 && (size_t)r == c->tx_len) {
    c->tx_len = 0;
    return;
  }
  if (r < 0 && r != UV_EAGAIN) {
    lost(c, r, "write");
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
    lost(c, r, "write");
  }
}

/* Feeds handshake response bytes; returns how many of p[0..n) belong to the response. */
static size_t handshake_feed(wsc_conn *c, const uint8_t *p, size_t n) {
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
    if (c->hs_len >= HS_MAX) lost(c, 0, "handshake response too long");
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
    lost(c, 0, why);
    return n;
  }
  free(c->hs);
  c->hs = NULL;
  c->state = ST_OPEN;
  wsc_resolve(c, true);
  return hdr_end - old;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  wsc_conn *c = s->data;
  if (nread < 0) {
    lost(c, nread == UV_EOF ? 0 : (int)nread, nread == UV_EOF ? "closed by peer" : "read");
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
  if (c->state == ST_OPEN) read_frames(c, p, n, now);
  wsc_flush(c);
  if (c->state == ST_CLOSING && !c->writing && c->tx_len == 0) wsc_close(c);
}

static void on_connect(uv_connect_t *req, int status) {
  wsc_conn *c = req->data;
  if (c->state == ST_CLOSED) return;
  if (status < 0) {
    lost(c, status, "connect");
    return;
  }
  c->state = ST_HANDSHAKE;
  c->hs = malloc(HS_MAX + 1);
  if (!c->hs) die("out of memory", 0);
  c->hs_len = 0;
  int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (r) {
    lost(c, r, "read_start");
    return;
  }
  bool alt = wsc_index(c) >= P->alt_first;
  uv_buf_t b = alt ? uv_buf_init(P->alt_req, (unsigned)P->alt_req_len)
                   : uv_buf_init(P->req, (unsigned)P->req_len);
  c->writing = 1;
  r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (r) {
    c->writing = 0;
    lost(c, r, "write");
  }
}

static wsc_conn *conn_at(int i) { return (wsc_conn *)(P->conns + (size_t)i * P->conn_size); }

static void start_connect(wsc_conn *c) {
  P->connecting++;
  int r = uv_tcp_init(P->loop, &c->tcp);
  if (r) die("uv_tcp_init", r);
  c->tcp.data = c;
  c->creq.data = c;
  c->wreq.data = c;
  c->state = ST_CONNECTING;
  uv_tcp_nodelay(&c->tcp, 1);
  const struct sockaddr_storage *to = wsc_index(c) >= P->alt_first ? &P->alt_addr : &P->addr;
  r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)to, on_connect);
  if (r) lost(c, r, "connect");
}

static void pump_connects(void) {
  static bool pumping;
  if (pumping) return;
  pumping = true;
  while (P->connecting < P->conc && P->next < P->nconns) start_connect(conn_at(P->next++));
  pumping = false;
  if (!P->connect_done && P->resolved == P->nconns) P->all_resolved();
}

int wsc_expire(void) {
  int pending = 0;
  for (int i = 0; i < P->nconns; i++) {
    wsc_conn *c = conn_at(i);
    if (c->resolved) continue;
    pending++;
    if (c->state != ST_IDLE) {
      wsc_close(c);
      c->resolved = 1;
      P->connecting--;
    }
    P->resolved++;
    P->failed++;
    (*P->errors)++;
  }
  P->next = P->nconns;
  return pending;
}

/* ---------------------------------------------------------------------------------------- */
/* Reading frames                                                                             */
/* ---------------------------------------------------------------------------------------- */

/* Moves frame header bytes from *p into c->hdr; true once the header is complete. */
static inline bool header_feed(wsc_conn *c, const uint8_t **p, size_t *n) {
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

/* Checks the frame whose header is complete in c->hdr and sets up the payload state
 * (f_remaining, in_payload, the message). Returns NULL, or the protocol error. */
static inline const char *frame_check(wsc_conn *c) {
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
  if ((b1 & 0x80) && !P->allow_masked) return "masked frame from server";
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

/* A frame has been read completely: a ping is answered, a close is counted by the program
 * and answered, the last frame of a message goes to the program. */
static void frame_end(wsc_conn *c, uint64_t now) {
  c->in_payload = 0;
  if (c->f_opcode & 8) {
    if (c->f_opcode == 9) {
      wsc_send(c, 0xA, c->ctl, c->ctl_len); /* ping -> pong */
    } else if (c->f_opcode == 8) {
      P->closed(c, c->ctl_len >= 2 ? ((unsigned)c->ctl[0] << 8 | c->ctl[1]) : 1005);
      if (!c->close_sent) {
        wsc_send(c, 0x8, c->ctl, c->ctl_len >= 2 ? 2 : 0);
        c->close_sent = 1;
      }
      c->state = ST_CLOSING;
    }
    return;
  }
  if (c->f_fin) {
    c->in_msg = 0;
    const uint8_t *pre = P->prefix ? (const uint8_t *)c + P->prefix_off : NULL;
    P->message(c, c->msg_opcode, pre, c->msg_len < P->prefix ? (size_t)c->msg_len : P->prefix,
               c->msg_len, now);
  }
}

/* Parses server frames in p[0..n), in place. A complete unfragmented data frame is handled
 * where it lies; anything split across reads goes through the incremental path, its state
 * carried in the connection. */
static void read_frames(wsc_conn *c, const uint8_t *p, size_t n, uint64_t now) {
  while (n > 0 && c->state == ST_OPEN) {
    if (!c->in_payload) {
      if (c->hdr_len == 0 && !c->in_msg && n >= 2 && (p[0] == 0x81 || p[0] == 0x82) &&
          !(p[1] & 0x80)) {
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
          P->message(c, p[0] & 0x0f, p + hl, (size_t)len, len, now);
          p += hl + len, n -= hl + (size_t)len;
          continue;
        }
      }
      if (!header_feed(c, &p, &n)) break;
      const char *err = frame_check(c);
      if (err) return lost(c, 0, err);
      if (c->f_remaining == 0) frame_end(c, now);
      continue;
    }
    size_t take = c->f_remaining < n ? (size_t)c->f_remaining : n;
    if (c->f_opcode & 8) {
      memcpy(c->ctl + c->ctl_len, p, take);
      c->ctl_len += (uint8_t)take;
    } else {
      if (c->msg_len < P->prefix) {
        size_t k = P->prefix - (size_t)c->msg_len < take ? P->prefix - (size_t)c->msg_len : take;
        memcpy((uint8_t *)c + P->prefix_off + c->msg_len, p, k);
      }
      c->msg_len += take;
    }
    p += take, n -= take;
    c->f_remaining -= take;
    if (c->f_remaining == 0) frame_end(c, now);
  }
}

/* ---------------------------------------------------------------------------------------- */
/* A run                                                                                      */
/* ---------------------------------------------------------------------------------------- */

static wsc_run *R;

bool wsc_option(wsc_run *r, wsc_pool *pool, int o, const char *v) {
  switch (o) {
    case WSC_OPT_HOST:
      r->host = v;
      return true;
    case WSC_OPT_PORT:
      r->port = (int)num_arg("port", v, 1, 65535);
      return true;
    case WSC_OPT_PATH:
      r->path = v;
      return true;
    case WSC_OPT_DURATION:
      r->duration = num_arg("duration", v, 0.001, 1e6);
      return true;
    case WSC_OPT_WARMUP:
      r->warmup = num_arg("warmup", v, 0, 1e6);
      return true;
    case WSC_OPT_CONC:
      pool->conc = (int)num_arg("connect-concurrency", v, 1, 1000000);
      return true;
    case WSC_OPT_CTIMEOUT:
      r->connect_timeout = num_arg("connect-timeout", v, 0.001, 1e6);
      return true;
    case WSC_OPT_PID:
      r->server_pid = (int)num_arg("server-pid", v, 1, 1 << 30);
      return true;
    default:
      return false;
  }
}

static void on_signal(uv_signal_t *s, int signum) {
  (void)s, (void)signum;
  if (R->interrupted) R->interrupted();
  wsc_finish();
}

void *wsc_setup(wsc_run *r, wsc_pool *pool, size_t conn_size) {
  R = r;
  P = pool;
  signal(SIGPIPE, SIG_IGN);
  cpu_init(&r->cpu, r->server_pid);
  raise_nofile(pool->nconns);
  if (!ws_target(r->host, r->port, r->path, &pool->addr, &pool->req, &pool->req_len)) exit(2);
  wsc_rng = rng_seed();
  pool->conns = calloc((size_t)pool->nconns, conn_size);
  if (!pool->conns) die("out of memory", 0);
  pool->conn_size = conn_size;
  pool->alt_first = pool->nconns;
  pool->loop = uv_default_loop();
  uv_timer_init(pool->loop, &r->t_phase);
  uv_timer_init(pool->loop, &r->t_connect);
  uv_signal_init(pool->loop, &r->sig_int);
  uv_signal_init(pool->loop, &r->sig_term);
  uv_signal_start(&r->sig_int, on_signal, SIGINT);
  uv_signal_start(&r->sig_term, on_signal, SIGTERM);
  return pool->conns;
}

void wsc_alt_target(wsc_pool *pool, const char *host, int port, const char *path, int first) {
  if (!ws_target(host, port, path, &pool->alt_addr, &pool->alt_req, &pool->alt_req_len)) exit(2);
  pool->alt_first = first;
}

static uint64_t ms(double s) { return (uint64_t)(s * 1000 + 0.5); }

static void on_connect_timeout(uv_timer_t *t) {
  (void)t;
  if (P->connect_done) { /* open, but not all ready */
    R->ready_timeout();
    return;
  }
  int pending = wsc_expire();
  fprintf(stderr, "%s: connect timeout: %d connection(s) not open after %.0f s\n", wsc_prog,
          pending, R->connect_timeout);
  if (!P->connect_done) P->all_resolved();
  /* Whoever is not ready by now gets 10 s more. */
  if (R->phase == PH_READY) uv_timer_start(&R->t_connect, on_connect_timeout, 10000, 0);
}

void wsc_go(void) {
  R->t_connect0 = uv_hrtime();
  uv_timer_start(&R->t_connect, on_connect_timeout, ms(R->connect_timeout), 0);
  pump_connects();
  uv_run(P->loop, UV_RUN_DEFAULT);
}

bool wsc_connected(void) {
  P->connect_done = true;
  if (P->failed)
    fprintf(stderr, "%s: %d of %d connections failed\n", wsc_prog, P->failed, P->nconns);
  if (P->open_now == 0) {
    fprintf(stderr, "%s: no connection could be opened\n", wsc_prog);
    wsc_finish();
    return false;
  }
  R->phase = PH_READY;
  return true;
}

bool wsc_running(void) { return R->phase == PH_WARMUP || R->phase == PH_MEASURE; }

static void on_measure_end(uv_timer_t *t) {
  (void)t;
  wsc_finish();
}

static void begin_measure(void) {
  R->measure();
  R->phase = PH_MEASURE;
  cpu_begin(&R->cpu);
  R->t_start = uv_hrtime();
  uv_timer_start(&R->t_phase, on_measure_end, ms(R->duration), 0);
}

static void on_warmup_end(uv_timer_t *t) {
  (void)t;
  begin_measure();
}

void wsc_warmup(void) {
  if (R->warmup > 0)
    uv_timer_start(&R->t_phase, on_warmup_end, ms(R->warmup), 0);
  else
    begin_measure();
}

void wsc_finish(void) {
  if (R->phase == PH_DONE) return;
  bool measured = R->phase == PH_MEASURE;
  R->phase = PH_DONE;
  if (measured) {
    R->t_end = uv_hrtime();
    cpu_end(&R->cpu);
  } else {
    R->t_start = R->t_end = 0;
    cpu_none(&R->cpu);
  }
  exit(R->report(measured) ? 0 : 1);
}

double wsc_secs(void) {
  return R->t_end > R->t_start ? (double)(R->t_end - R->t_start) / 1e9 : 0;
}
