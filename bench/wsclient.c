/*
 * wsclient.c — the cold half of bench/wsclient.h: connection setup and teardown, the write
 * path, the handshake, the histogram's quantiles, CPU accounting and setup helpers.
 */
#include "wsclient.h"

#include <errno.h>
#include <stdlib.h>
#include <strings.h>
#include <unistd.h>

#define HS_MAX 4096 /* largest handshake response accepted */
#define WS_KEY "dGhlIHNhbXBsZSBub25jZQ=="
#define WS_ACCEPT "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" /* base64(sha1(WS_KEY + GUID)), RFC 6455 1.3 */

static uint8_t rbuf[256 * 1024]; /* shared read buffer: libuv reads one stream at a time */

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

void raise_nofile(int nconns) {
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

bool ws_target(const char *host_arg, int port, const char *path, struct sockaddr_storage *addr,
               char **req, size_t *req_len) {
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
  if (a->server_pid > 0) a->srv0 = proc_cpu_ticks(a->server_pid);
  proc_stat_ticks(&a->cores, &a->busy0, &a->steal0);
  getrusage(RUSAGE_SELF, &a->ru0);
}

void cpu_end(cpu_acct *a) {
  getrusage(RUSAGE_SELF, &a->ru1);
  if (a->server_pid > 0) a->srv1 = proc_cpu_ticks(a->server_pid);
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

/* ---------------------------------------------------------------------------------------- */
/* Connections                                                                                */
/* ---------------------------------------------------------------------------------------- */

static wsc_pool *P;

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

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
    P->lost(c, status, "write");
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
    P->lost(c, r, "write");
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
    P->lost(c, r, "write");
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
    if (c->hs_len >= HS_MAX) P->lost(c, 0, "handshake response too long");
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
    P->lost(c, 0, why);
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
    P->lost(c, nread == UV_EOF ? 0 : (int)nread, nread == UV_EOF ? "closed by peer" : "read");
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
  if (c->state == ST_OPEN) P->parse(c, p, n, now);
  wsc_flush(c);
  if (c->state == ST_CLOSING && !c->writing && c->tx_len == 0) wsc_close(c);
}

static void on_connect(uv_connect_t *req, int status) {
  wsc_conn *c = req->data;
  if (c->state == ST_CLOSED) return;
  if (status < 0) {
    P->lost(c, status, "connect");
    return;
  }
  c->state = ST_HANDSHAKE;
  c->hs = malloc(HS_MAX + 1);
  if (!c->hs) die("out of memory", 0);
  c->hs_len = 0;
  int r = uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
  if (r) {
    P->lost(c, r, "read_start");
    return;
  }
  uv_buf_t b = uv_buf_init(P->req, (unsigned)P->req_len);
  c->writing = 1;
  r = uv_write(&c->wreq, (uv_stream_t *)&c->tcp, &b, 1, on_write);
  if (r) {
    c->writing = 0;
    P->lost(c, r, "write");
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
  r = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&P->addr, on_connect);
  if (r) P->lost(c, r, "connect");
}

static void pump_connects(void) {
  static bool pumping;
  if (pumping) return;
  pumping = true;
  while (P->connecting < P->conc && P->next < P->nconns) start_connect(conn_at(P->next++));
  pumping = false;
  if (!P->connect_done && P->resolved == P->nconns) P->all_resolved();
}

void wsc_pool_start(wsc_pool *pool) {
  P = pool;
  pump_connects();
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
