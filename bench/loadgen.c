/*
 * loadgen.c — a standalone WebSocket load generator on libuv, for Switchboard's benchmarks.
 *
 * It does not use the Switchboard library: it has its own minimal client handshake (a fixed
 * Sec-WebSocket-Key whose Sec-WebSocket-Accept is checked), its own masked framing and an
 * incremental parser for the server's unmasked frames, so that it can be pointed at any
 * WebSocket echo server (ours, Node's `ws`, ...). That client, the histogram and the CPU
 * accounting are shared with bench/fanout.c, in bench/wsclient.h and bench/wsclient.c.
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
#include "wsclient.h"

#include <getopt.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------- */
/* State                                                                                      */
/* ---------------------------------------------------------------------------------------- */

enum { PH_CONNECT, PH_WARMUP, PH_MEASURE, PH_DONE };

typedef struct conn {
  union { /* the client connection (wsclient.h), its fields also reachable as c->state, ... */
    wsc_conn ws;
    struct {
      WSC_CONN_FIELDS
    };
  };
  /* send times of the messages in flight, a ring of --inflight entries */
  uint64_t *sent;
  uint32_t s_head, s_count;
} conn;

static struct {
  /* options */
  const char *host, *path;
  int port, inflight, server_pid;
  size_t size;
  double duration, warmup, connect_timeout;
  bool binary, idle, allow_masked;

  wsc_pool ws; /* the connections (nconns, open_now, ... there) */
  conn *c;

  /* load */
  int phase;
  uint8_t *payload;
  uint8_t fhdr[10];
  size_t fhdr_len, frame_len;
  uint64_t rng;
  uint64_t errors, total, completions;
  uint64_t t_start, t_end;
  hist h;
  cpu_acct cpu;

  uv_timer_t t_phase, t_connect;
  uv_signal_t sig_int, sig_term;
  union {
    uv_pipe_t pipe;
    uv_tty_t tty;
  } in;
  bool in_open;
} G;

static void finish(void);

const char *wsc_prog = "loadgen";

/* ---------------------------------------------------------------------------------------- */
/* Connections                                                                                */
/* ---------------------------------------------------------------------------------------- */

/* The connection failed or ended. `err` is a libuv code or 0. */
static void conn_lost(conn *c, int err, const char *why) {
  if (c->state == ST_CLOSED) return;
  if (!c->resolved) {
    if (G.ws.failed < 5) /* keep stderr readable when many fail the same way */
      fprintf(stderr, "loadgen: connection %d: %s%s%s\n", (int)(c - G.c), why,
              err ? ": " : "", err ? uv_strerror(err) : "");
    wsc_close(&c->ws);
    wsc_resolve(&c->ws, false);
    return;
  }
  if (G.phase != PH_DONE && !(c->state == ST_CLOSING)) {
    G.errors++;
    if (G.errors <= 5)
      fprintf(stderr, "loadgen: connection %d lost: %s%s%s\n", (int)(c - G.c), why,
              err ? ": " : "", err ? uv_strerror(err) : "");
  }
  wsc_close(&c->ws);
}

static void on_lost(wsc_conn *c, int err, const char *why) { conn_lost((conn *)c, err, why); }

/* Appends a masked frame with opcode `op` and payload p[0..n) to tx. */
static void queue_frame(conn *c, uint8_t op, const uint8_t *p, size_t n) {
  wsc_queue_frame(&c->ws, op, p, n, rng32(&G.rng));
}

/* Queues one benchmark message and remembers when it left. */
static inline void send_msg(conn *c, uint64_t now) {
  grow(&c->tx, &c->tx_cap, c->tx_len + G.frame_len);
  uint8_t *d = c->tx + c->tx_len;
  memcpy(d, G.fhdr, G.fhdr_len);
  uint32_t k = rng32(&G.rng);
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
  const char *err = wsc_frame_begin(&c->ws, G.allow_masked);
  if (err) return protocol_error(c, err), false;
  if (c->f_remaining == 0) frame_end(c, now);
  return true;
}

/* Parses server frames in p[0..n), in place; any split is carried in the connection. */
static void parse(wsc_conn *ws, const uint8_t *p, size_t n, uint64_t now) {
  conn *c = (conn *)ws;
  while (n > 0 && c->state == ST_OPEN) {
    if (!c->in_payload) {
      if (!wsc_header_feed(&c->ws, &p, &n)) break;
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

/* ---------------------------------------------------------------------------------------- */
/* Phases                                                                                     */
/* ---------------------------------------------------------------------------------------- */

static void print_echo_result(void) {
  double secs = G.t_end > G.t_start ? (double)(G.t_end - G.t_start) / 1e9 : 0;
  double rate = secs > 0 ? (double)G.completions / secs : 0;
  double cpu = cpu_client_s(&G.cpu);
  printf("{\"conns\":%d,\"size\":%zu,\"inflight\":%d,\"msgs_per_s\":%.0f,\"p50_us\":%.1f,"
         "\"p99_us\":%.1f,\"errors\":%" PRIu64 ",\"open\":%d,\"duration_s\":%.3f,"
         "\"msgs\":%" PRIu64 ",\"total_msgs\":%" PRIu64 ",\"mean_us\":%.1f,\"p999_us\":%.1f,"
         "\"max_us\":%.1f,\"client_cpu_pct\":%.1f",
         G.ws.nconns, G.size, G.inflight, rate, h_quantile(&G.h, 0.50) / 1e3,
         h_quantile(&G.h, 0.99) / 1e3, G.errors, G.ws.open_now, secs, G.completions, G.total,
         G.h.n ? (double)G.h.sum / (double)G.h.n / 1e3 : 0.0, h_quantile(&G.h, 0.999) / 1e3,
         G.h.n ? (double)G.h.max / 1e3 : 0.0, secs > 0 ? 100 * cpu / secs : 0.0);
  double scpu;
  if (cpu_server_s(&G.cpu, &scpu))
    printf(",\"server_cpu_pct\":%.1f,\"server_cpu_us_per_msg\":%.3f",
           secs > 0 ? 100 * scpu / secs : 0.0,
           G.completions ? scpu * 1e6 / (double)G.completions : 0.0);
  cpu_print_other(&G.cpu, secs, cpu, scpu);
  printf("}\n");
  fflush(stdout);
}

static void finish(void) {
  if (G.phase == PH_DONE) return;
  bool measured = G.phase == PH_MEASURE;
  G.phase = PH_DONE;
  if (measured) {
    G.t_end = uv_hrtime();
    cpu_end(&G.cpu);
  } else {
    G.t_start = G.t_end = 0;
    cpu_none(&G.cpu);
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
  cpu_begin(&G.cpu);
  G.t_start = uv_hrtime();
  uv_timer_start(&G.t_phase, on_measure_end, (uint64_t)(G.duration * 1000 + 0.5), 0);
}

static void on_warmup_end(uv_timer_t *t) {
  (void)t;
  begin_measure();
}

static void connect_phase_done(void) {
  G.ws.connect_done = true;
  uv_timer_stop(&G.t_connect);
  if (G.idle) {
    printf("{\"conns\":%d,\"open\":%d}\n", G.ws.nconns, G.ws.open_now);
    fflush(stdout);
    return;
  }
  if (G.ws.open_now == 0) {
    fprintf(stderr, "loadgen: no connection could be opened\n");
    finish();
    return;
  }
  G.phase = PH_WARMUP;
  uint64_t now = uv_hrtime();
  for (int i = 0; i < G.ws.nconns; i++) {
    conn *c = &G.c[i];
    if (c->state != ST_OPEN) continue;
    c->sent = calloc((size_t)G.inflight, sizeof *c->sent);
    if (!c->sent) die("out of memory", 0);
    for (int k = 0; k < G.inflight; k++) send_msg(c, now);
    wsc_flush(&c->ws);
  }
  if (G.warmup > 0)
    uv_timer_start(&G.t_phase, on_warmup_end, (uint64_t)(G.warmup * 1000 + 0.5), 0);
  else
    begin_measure();
}

static void on_connect_timeout(uv_timer_t *t) {
  (void)t;
  int pending = wsc_expire();
  fprintf(stderr, "loadgen: connect timeout: %d connection(s) not open after %.0f s\n", pending,
          G.connect_timeout);
  if (!G.ws.connect_done) connect_phase_done();
}

/* ---------------------------------------------------------------------------------------- */
/* Shutdown: signals and stdin                                                                */
/* ---------------------------------------------------------------------------------------- */

/* idle mode, at exit: what the held connections received meanwhile. */
static void idle_exit(void) {
  printf("{\"conns\":%d,\"open\":%d,\"msgs_received\":%" PRIu64 "}\n", G.ws.nconns, G.ws.open_now,
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
    r = uv_pipe_init(G.ws.loop, &G.in.pipe, 0);
    if (!r) r = uv_pipe_open(&G.in.pipe, 0);
  } else if (t == UV_TTY) {
    r = uv_tty_init(G.ws.loop, &G.in.tty, 0, 1);
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

int main(int argc, char **argv) {
  G.host = "127.0.0.1";
  G.path = "/";
  G.port = -1;
  G.ws.nconns = 100;
  G.size = 32;
  G.inflight = 1;
  G.duration = 5;
  G.warmup = 1;
  G.binary = true;
  G.ws.conc = 64;
  G.connect_timeout = 60;

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
    case OPT_CONNS: G.ws.nconns = (int)num_arg("conns", optarg, 1, 1000000); break;
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
    case OPT_CONC: G.ws.conc = (int)num_arg("connect-concurrency", optarg, 1, 1000000); break;
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

  cpu_init(&G.cpu, G.server_pid);
  raise_nofile(G.ws.nconns);
  if (!ws_target(G.host, G.port, G.path, &G.ws.addr, &G.ws.req, &G.ws.req_len)) return 2;

  /* The message: printable ASCII (valid UTF-8 for --text) and its frame header sans mask. */
  G.payload = malloc(G.size ? G.size : 1);
  if (!G.payload) die("out of memory", 0);
  for (size_t i = 0; i < G.size; i++) G.payload[i] = (uint8_t)('a' + i % 26);
  G.fhdr_len = ws_frame_header(G.fhdr, G.binary ? 2 : 1, G.size);
  G.frame_len = G.fhdr_len + 4 + G.size;
  G.rng = rng_seed();
  h_reset(&G.h);

  G.c = calloc((size_t)G.ws.nconns, sizeof *G.c);
  if (!G.c) die("out of memory", 0);

  G.ws.loop = uv_default_loop();
  uv_timer_init(G.ws.loop, &G.t_phase);
  uv_timer_init(G.ws.loop, &G.t_connect);
  uv_signal_init(G.ws.loop, &G.sig_int);
  uv_signal_init(G.ws.loop, &G.sig_term);
  uv_signal_start(&G.sig_int, on_signal, SIGINT);
  uv_signal_start(&G.sig_term, on_signal, SIGTERM);
  if (G.idle) watch_stdin();

  uv_timer_start(&G.t_connect, on_connect_timeout, (uint64_t)(G.connect_timeout * 1000 + 0.5), 0);
  G.ws.conns = (uint8_t *)G.c;
  G.ws.conn_size = sizeof *G.c;
  G.ws.errors = &G.errors;
  G.ws.lost = on_lost;
  G.ws.parse = parse;
  G.ws.all_resolved = connect_phase_done;
  wsc_pool_start(&G.ws);
  uv_run(G.ws.loop, UV_RUN_DEFAULT);
  /* Reached only if every handle went away (idle mode with no connection and no stdin). */
  return G.ws.open_now > 0 ? 0 : 1;
}
