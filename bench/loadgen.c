/*
 * loadgen.c — a standalone WebSocket load generator on libuv, for Switchboard's benchmarks.
 *
 * It does not use the Switchboard library: it has its own minimal client handshake (a fixed
 * Sec-WebSocket-Key whose Sec-WebSocket-Accept is checked), its own masked framing and an
 * incremental parser for the server's unmasked frames, so that it can be pointed at any
 * WebSocket echo server (ours, Node's `ws`, ...). That client, the phases of a run, the
 * histogram and the CPU accounting are shared with bench/fanout.c and bench/restgen.c, in
 * bench/wsclient.h and bench/wsclient.c.
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
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------- */
/* State                                                                                      */
/* ---------------------------------------------------------------------------------------- */

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
  /* options (and the common ones in run) */
  int inflight;
  size_t size;
  bool binary, idle;

  wsc_run run; /* phases (no PH_READY), the measured window, CPU accounting */
  wsc_pool ws; /* the connections (nconns, open_now, ... there) */
  conn *c;

  /* load */
  uint8_t *payload;
  uint8_t fhdr[10];
  size_t fhdr_len, frame_len;
  uint64_t errors, total, completions;
  hist h;

  union {
    uv_pipe_t pipe;
    uv_tty_t tty;
  } in;
  bool in_open;
} G;

const char *wsc_prog = "loadgen";

/* ---------------------------------------------------------------------------------------- */
/* Connections                                                                                */
/* ---------------------------------------------------------------------------------------- */

/* An open connection failed or ended. `err` is a libuv code or 0. */
static void on_lost(wsc_conn *c, int err, const char *why) {
  if (G.run.phase == PH_DONE || c->state == ST_CLOSING) return;
  if (++G.errors <= 5) wsc_print_lost(c, err, why);
}

/* Queues one benchmark message and remembers when it left. */
static inline void send_msg(conn *c, uint64_t now) {
  grow(&c->tx, &c->tx_cap, c->tx_len + G.frame_len);
  uint8_t *d = c->tx + c->tx_len;
  memcpy(d, G.fhdr, G.fhdr_len);
  uint32_t k = rng32(&wsc_rng);
  memcpy(d + G.fhdr_len, &k, 4);
  mask_copy(d + G.fhdr_len + 4, G.payload, G.size, d + G.fhdr_len);
  c->tx_len += G.frame_len;
  uint32_t i = c->s_head + c->s_count;
  if (i >= (uint32_t)G.inflight) i -= (uint32_t)G.inflight;
  c->sent[i] = now;
  c->s_count++;
}

/* A whole message (its bytes are not kept: only the length matters). */
static void on_message(wsc_conn *ws, uint8_t op, const uint8_t *p, size_t avail, uint64_t len,
                       uint64_t now) {
  (void)p, (void)avail;
  conn *c = (conn *)ws;
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
  if (G.run.phase == PH_MEASURE) {
    G.completions++;
    h_add(&G.h, now - t0);
  }
  if (wsc_running()) send_msg(c, now);
}

static void on_closed(wsc_conn *c, unsigned code) {
  (void)code;
  if (G.run.phase != PH_DONE && !G.idle) {
    G.errors++;
    if (G.errors <= 5) fprintf(stderr, "loadgen: connection %d: server closed it\n", wsc_index(c));
  }
}

/* ---------------------------------------------------------------------------------------- */
/* Phases                                                                                     */
/* ---------------------------------------------------------------------------------------- */

static bool report_echo(bool measured) {
  double secs = wsc_secs();
  double rate = secs > 0 ? (double)G.completions / secs : 0;
  printf("{\"conns\":%d,\"size\":%zu,\"inflight\":%d,\"msgs_per_s\":%.0f,\"p50_us\":%.1f,"
         "\"p99_us\":%.1f,\"errors\":%" PRIu64 ",\"open\":%d,\"duration_s\":%.3f,"
         "\"msgs\":%" PRIu64 ",\"total_msgs\":%" PRIu64 ",\"mean_us\":%.1f,\"p999_us\":%.1f,"
         "\"max_us\":%.1f",
         G.ws.nconns, G.size, G.inflight, rate, h_us(&G.h, 0.50), h_us(&G.h, 0.99), G.errors,
         G.ws.open_now, secs, G.completions, G.total, h_mean_us(&G.h), h_us(&G.h, 0.999),
         h_max_us(&G.h));
  cpu_print_end(&G.run.cpu, secs, "server_cpu_us_per_msg", 1e6, 3, G.completions);
  return measured && G.completions > 0;
}

static void measure(void) {
  h_reset(&G.h);
  G.completions = 0;
}

static void connect_phase_done(void) {
  G.ws.connect_done = true;
  uv_timer_stop(&G.run.t_connect);
  if (G.idle) {
    printf("{\"conns\":%d,\"open\":%d}\n", G.ws.nconns, G.ws.open_now);
    fflush(stdout);
    return;
  }
  if (G.ws.open_now == 0) {
    fprintf(stderr, "loadgen: no connection could be opened\n");
    wsc_finish();
    return;
  }
  G.run.phase = PH_WARMUP;
  uint64_t now = uv_hrtime();
  for (int i = 0; i < G.ws.nconns; i++) {
    conn *c = &G.c[i];
    if (c->state != ST_OPEN) continue;
    c->sent = calloc((size_t)G.inflight, sizeof *c->sent);
    if (!c->sent) die("out of memory", 0);
    for (int k = 0; k < G.inflight; k++) send_msg(c, now);
    wsc_flush(&c->ws);
  }
  wsc_warmup();
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

/* SIGINT, SIGTERM: idle mode exits here; echo mode reports what was measured so far. */
static void interrupted(void) {
  if (G.idle) idle_exit();
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
  G.run.host = "127.0.0.1";
  G.run.path = "/";
  G.run.port = -1;
  G.ws.nconns = 100;
  G.size = 32;
  G.inflight = 1;
  G.run.duration = 5;
  G.run.warmup = 1;
  G.binary = true;
  G.ws.conc = 64;
  G.run.connect_timeout = 60;

  enum { OPT_CONNS = WSC_OPT_END, OPT_SIZE, OPT_INFLIGHT, OPT_BINARY, OPT_TEXT, OPT_MODE,
         OPT_MASKED, OPT_HELP };
  static const struct option opts[] = {
      WSC_OPTIONS,
      {"conns", required_argument, 0, OPT_CONNS},
      {"size", required_argument, 0, OPT_SIZE},
      {"inflight", required_argument, 0, OPT_INFLIGHT},
      {"binary", no_argument, 0, OPT_BINARY},
      {"text", no_argument, 0, OPT_TEXT},
      {"mode", required_argument, 0, OPT_MODE},
      {"allow-masked-frames", no_argument, 0, OPT_MASKED},
      {"help", no_argument, 0, OPT_HELP},
      {0, 0, 0, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (wsc_option(&G.run, &G.ws, o, optarg)) continue;
    switch (o) {
    case OPT_CONNS: G.ws.nconns = (int)num_arg("conns", optarg, 1, 1000000); break;
    case OPT_SIZE: G.size = (size_t)num_arg("size", optarg, 0, 1 << 30); break;
    case OPT_INFLIGHT: G.inflight = (int)num_arg("inflight", optarg, 1, 1 << 20); break;
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
    case OPT_MASKED: G.ws.allow_masked = true; break;
    case OPT_HELP: usage(stdout); return 0;
    default: usage(stderr); return 2;
    }
  }
  if (optind < argc || G.run.port < 0) {
    usage(stderr);
    return 2;
  }

  G.c = wsc_setup(&G.run, &G.ws, sizeof *G.c);

  /* The message: printable ASCII (valid UTF-8 for --text) and its frame header sans mask. */
  G.payload = malloc(G.size ? G.size : 1);
  if (!G.payload) die("out of memory", 0);
  for (size_t i = 0; i < G.size; i++) G.payload[i] = (uint8_t)('a' + i % 26);
  G.fhdr_len = ws_frame_header(G.fhdr, G.binary ? 2 : 1, G.size);
  G.frame_len = G.fhdr_len + 4 + G.size;
  h_reset(&G.h);
  if (G.idle) watch_stdin();

  G.run.report = report_echo;
  G.run.measure = measure;
  G.run.interrupted = interrupted;
  G.ws.errors = &G.errors;
  G.ws.lost = on_lost;
  G.ws.message = on_message;
  G.ws.closed = on_closed;
  G.ws.all_resolved = connect_phase_done;
  wsc_go();
  /* Reached only if every handle went away (idle mode with no connection and no stdin). */
  return G.ws.open_now > 0 ? 0 : 1;
}
