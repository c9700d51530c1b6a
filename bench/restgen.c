/*
 * restgen.c — the REST round-trip benchmark's load generator: N WebSocket connections, each
 * keeping --window requests `GET /items/<k>` in flight, against either Switchboard's
 * bench/rest-server (REQUEST/RESPONSE envelopes, docs/PROTOCOL.md) or Socket.IO's
 * bench/node-socketio.mjs (an event with an acknowledgement, Engine.IO v4 / Socket.IO v5 over
 * a plain WebSocket). The same program, the same client code (bench/wsclient.[ch]: handshake,
 * masked frames, incremental frame parser, shared with loadgen and fanout) and the same work
 * per request drive both, so the comparison is between the servers.
 *
 *   restgen --port P --proto sb|sio [--host 127.0.0.1] [--conns 100] [--window 1]
 *           [--duration 5] [--warmup 1] [--server-pid PID] ...
 *
 * --proto sb: each connection reads the server's HELLO (kind 5, version 1, and the envelope
 *   schema it announces must be the one this program encodes, docs/PROTOCOL.md §2.1), then
 *   sends REQUEST envelopes (kind 1, method GET, id, url "/items/<k>", empty body) as binary
 *   messages and expects a RESPONSE (kind 2) with that id, status 200 and exactly the body
 *   {"id":"<k>","name":"item <k>","price":42}.
 * --proto sio: each connection opens /socket.io/?EIO=4&transport=websocket, reads the Engine.IO
 *   open packet `0{...}`, connects to the main namespace (`40`), waits for `40{"sid":...}`, then
 *   emits `42<id>["get","/items/<k>"]` as text messages and expects the acknowledgement
 *   `43<id>[{"status":200,"body":{"id":"<k>","name":"item <k>","price":42}}]`, exactly (the
 *   serialization of JSON.stringify, which Socket.IO uses). Engine.IO pings (`2`) are answered
 *   (`3`).
 * Either way an answer is matched to its request by id (a slot per request in flight: id =
 * generation x window + slot), so answers out of order would be counted right too; <k> is
 * derived from the connection and the id, so every request asks for another item and every
 * answer is checked against the item it asked for. A wrong, unexpected or unknown answer, an
 * ERROR envelope, a Socket.IO connect error, a close by the server or a lost connection is
 * an error; so is a request still unanswered 2 s after it was sent when the run ends.
 *
 * Output: one line of JSON on stdout (fields in bench/README.md). Exit status 0 if round trips
 * were measured, 1 otherwise, 2 on bad usage.
 *
 * As in loadgen and fanout the costs per request are kept low: one shared read buffer, a
 * complete frame handled where it lies in it (only a frame split across reads copies its head,
 * up to PREFIX bytes), requests built into reused buffers, no allocation per request, latency
 * in a log-linear histogram.
 */
#include "wsclient.h"

#include <getopt.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

/* ---------------------------------------------------------------------------------------- */
/* State                                                                                      */
/* ---------------------------------------------------------------------------------------- */

#define PREFIX 512            /* the most of a message read; every expected message is shorter */
#define KEY_MAX 11            /* digits of <k>, and a NUL */
#define LATE_NS 2000000000ull /* a request unanswered this long at the end is an error */

/* The envelope schema this program encodes, as HELLO announces it (docs/PROTOCOL.md §2.1). */
static const uint8_t ENVELOPE_SCHEMA[] = {
    0x01, 0x09, 0x01, 0x00, 0x04, 'k',  'i',  'n',  'd', 0x01, 0x00, 0x06, 'm',  'e',  't',
    'h',  'o',  'd',  0x02, 0x00, 0x06, 's',  't',  'a', 't',  'u',  's',  0x03, 0x00, 0x02,
    'i',  'd',  0x07, 0x00, 0x06, 's',  't',  'r',  'e', 'a',  'm',  0x04, 0x00, 0x06, 'o',
    'f',  'f',  's',  'e',  't',  0x04, 0x00, 0x05, 'e', 'p',  'o',  'c',  'h',  0x07, 0x00,
    0x03, 'u',  'r',  'l',  0x08, 0x00, 0x04, 'b',  'o', 'd',  'y'};

/* The expected JSON around <k>: BODY0 k BODY1 k BODY2; Socket.IO wraps it in SIO0 .. SIO1. */
#define BODY0 "{\"id\":\""
#define BODY1 "\",\"name\":\"item "
#define BODY2 "\",\"price\":42}"
#define SIO0 "[{\"status\":200,\"body\":"
#define SIO1 "}]"
#define LIT(s) (sizeof(s) - 1)

typedef struct slot {
  uint64_t t;   /* send time */
  uint32_t id;  /* the request's id */
  uint32_t gen; /* generation: the next id of this slot is gen * window + slot */
  uint8_t busy; /* a request is in flight */
  uint8_t klen;
  char k[KEY_MAX];
} slot;

typedef struct conn {
  union { /* the client connection (wsclient.h), its fields also reachable as c->state, ... */
    wsc_conn ws;
    struct {
      WSC_CONN_FIELDS
    };
  };
  uint8_t ready;       /* sb: HELLO read; sio: namespace connected (40{...} read) */
  uint8_t opened;      /* sio: Engine.IO open packet read */
  slot *slots;         /* --window of them */
  uint8_t pre[PREFIX]; /* head of the current message when it is split across reads */
} conn;

static struct {
  /* options (and the common ones in run) */
  int window;
  bool sio;

  wsc_run run; /* phases, the measured window, CPU accounting */
  wsc_pool ws; /* the connections (nconns, open_now, ... there) */
  conn *c;

  int readies;
  uint64_t t_ready;
  uint8_t req[64]; /* the request being built */

  /* counters (errors: everything that should not happen) */
  uint64_t errors, bad_responses, server_errors, lost_conns, closes, late;
  uint64_t total, reqs, sent;
  hist h;
} G;

static void maybe_start(void);

const char *wsc_prog = "restgen";

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                    */
/* ---------------------------------------------------------------------------------------- */

/* Writes v in decimal to d; returns the number of digits (at most 10). */
static inline size_t utoa(char *d, uint32_t v) {
  char t[10];
  size_t n = 0;
  do {
    t[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v);
  for (size_t i = 0; i < n; i++) d[i] = t[n - 1 - i];
  return n;
}

/* Compares p[*i..n) with s[0..len) and advances *i past it. */
static inline bool match(const uint8_t *p, size_t n, size_t *i, const void *s, size_t len) {
  if (n - *i < len || memcmp(p + *i, s, len) != 0) return false;
  *i += len;
  return true;
}

/* ---------------------------------------------------------------------------------------- */
/* Connections                                                                                */
/* ---------------------------------------------------------------------------------------- */

static void on_lost(wsc_conn *c, int err, const char *why) {
  if (G.run.phase == PH_DONE) return;
  G.errors++;
  if (++G.lost_conns <= 5) wsc_print_lost(c, err, why);
}

static void bad(conn *c, const char *why) {
  G.errors++;
  G.bad_responses++;
  if (G.bad_responses <= 5) fprintf(stderr, "restgen: connection %d: %s\n", (int)(c - G.c), why);
}

/* Sends the next request of slot s on c. */
static void send_request(conn *c, slot *s, uint64_t now) {
  uint32_t si = (uint32_t)(s - c->slots);
  uint32_t id = s->gen * (uint32_t)G.window + si;
  if (++s->gen >= (uint32_t)(INT32_MAX / G.window)) s->gen = 0; /* ids stay below 2^31 */
  /* The item: another one for every request, spread over a million. */
  uint32_t ci = (uint32_t)(c - G.c);
  uint32_t k = (ci * 7919u + id) % 1000000u;
  s->klen = (uint8_t)utoa(s->k, k);
  s->id = id;
  s->t = now;
  s->busy = 1;
  uint8_t *d = G.req;
  size_t n;
  if (G.sio) {
    /* 42<id>["get","/items/<k>"] */
    n = 0;
    d[n++] = '4', d[n++] = '2';
    n += utoa((char *)d + n, id);
    memcpy(d + n, "[\"get\",\"/items/", 15), n += 15;
    memcpy(d + n, s->k, s->klen), n += s->klen;
    d[n++] = '"', d[n++] = ']';
    wsc_send(&c->ws, 0x1, d, n);
  } else {
    /* kind 1, method 1 (GET), status 0, id, stream "", offset 0, epoch 0, url, body empty */
    memset(d, 0, 25);
    d[0] = 1;
    d[1] = 1;
    put32(d + 4, id);
    size_t ulen = 7 + s->klen;
    d[25] = (uint8_t)ulen; /* < 128: a one-byte varint */
    memcpy(d + 26, "/items/", 7);
    memcpy(d + 33, s->k, s->klen);
    n = 26 + ulen;
    wsc_send(&c->ws, 0x2, d, n);
  }
  if (G.run.phase == PH_MEASURE) G.sent++;
}

/* The answer to request `id` has arrived. `why` is NULL if its status was 200 (and, for
 * Socket.IO, the wrapper around the body was right); then the body, the item's JSON, starts at
 * p[i] and must be the item asked for. A wrong answer is an error and no round trip, but it
 * answers its request all the same: the connection goes on with the next one. */
static void answered(conn *c, uint32_t id, const char *why, const uint8_t *p, size_t n, size_t i,
                     uint64_t now) {
  slot *s = &c->slots[id % (uint32_t)G.window];
  if (!s->busy || s->id != id) return bad(c, "an answer to no request in flight");
  const char *tail = G.sio ? BODY2 SIO1 : BODY2;
  size_t tail_len = G.sio ? LIT(BODY2 SIO1) : LIT(BODY2);
  if (!why && !(match(p, n, &i, BODY0, LIT(BODY0)) && match(p, n, &i, s->k, s->klen) &&
                match(p, n, &i, BODY1, LIT(BODY1)) && match(p, n, &i, s->k, s->klen) &&
                match(p, n, &i, tail, tail_len) && i == n))
    why = "wrong body";
  s->busy = 0;
  if (why) {
    bad(c, why); /* not counted as a round trip */
  } else {
    G.total++;
    if (G.run.phase == PH_MEASURE) {
      G.reqs++;
      h_add(&G.h, now - s->t);
    }
  }
  if (wsc_running()) send_request(c, s, now);
}

static void conn_ready(conn *c) {
  if (c->ready) return;
  c->ready = 1;
  G.readies++;
  if (G.run.phase == PH_READY) maybe_start();
}

/* The server's greeting was wrong: the connection is closed at once rather than waited for
 * until --connect-timeout. */
static void not_ready(conn *c, const char *why) {
  bad(c, why);
  wsc_close(&c->ws);
  if (G.run.phase == PH_READY) maybe_start();
}

/* HELLO (docs/PROTOCOL.md §5): kind, version, conn_id, token, 4 x u32, envelope schema. */
static void on_hello(conn *c, const uint8_t *p, size_t n) {
  size_t i = 2;
  uint64_t len;
  if (n < 2 || p[1] != 1) return not_ready(c, "HELLO of an unknown protocol version");
  for (int f = 0; f < 2; f++) { /* conn_id, token */
    if (!get_varint(p, n, &i, &len) || len > n - i) return not_ready(c, "truncated HELLO");
    i += (size_t)len;
  }
  if (n - i < 16) return not_ready(c, "truncated HELLO");
  i += 16;
  if (!get_varint(p, n, &i, &len) || len > n - i) return not_ready(c, "truncated HELLO");
  if (len != sizeof ENVELOPE_SCHEMA || memcmp(p + i, ENVELOPE_SCHEMA, sizeof ENVELOPE_SCHEMA))
    return not_ready(c, "HELLO announces another envelope schema");
  conn_ready(c);
}

/* A Switchboard message: HELLO, RESPONSE or ERROR. */
static void on_sb_message(conn *c, const uint8_t *p, size_t n, uint64_t now) {
  if (n < 1) return bad(c, "empty message");
  if (p[0] == 5) {
    if (c->ready) return bad(c, "a second HELLO");
    return on_hello(c, p, n);
  }
  if (p[0] == 9) { /* ERROR */
    G.errors++;
    G.server_errors++;
    if (G.server_errors <= 3 && n > 26)
      fprintf(stderr, "restgen: server error %u: %.*s\n", (unsigned)(p[2] << 8 | p[3]),
              (int)(n - 26), p + 26);
    return;
  }
  if (p[0] != 2 || n < 26) return bad(c, "not a RESPONSE");
  /* kind method status id | stream | offset epoch | url | body */
  uint32_t id = get32(p + 4);
  unsigned status = (unsigned)(p[2] << 8 | p[3]);
  size_t i = 8;
  uint64_t len;
  if (!get_varint(p, n, &i, &len) || len > n - i) return bad(c, "truncated RESPONSE");
  i += (size_t)len;
  if (n - i < 16) return bad(c, "truncated RESPONSE");
  i += 16;
  if (!get_varint(p, n, &i, &len) || len > n - i) return bad(c, "truncated RESPONSE");
  i += (size_t)len;
  answered(c, id, status == 200 ? NULL : "status is not 200", p, n, i, now);
}

/* A Socket.IO (Engine.IO) text message. */
static void on_sio_message(conn *c, const uint8_t *p, size_t n, uint64_t now) {
  if (n < 1) return bad(c, "empty message");
  switch (p[0]) {
    case '0': /* Engine.IO open: connect to the main namespace */
      if (c->opened) return bad(c, "a second Engine.IO open packet");
      if (n < 2 || p[1] != '{') return not_ready(c, "Engine.IO open packet without its JSON");
      c->opened = 1;
      wsc_send(&c->ws, 0x1, (const uint8_t *)"40", 2);
      return;
    case '2': /* ping -> pong, with the same payload */
      if (n > sizeof G.req) return bad(c, "ping with a long payload");
      G.req[0] = '3';
      memcpy(G.req + 1, p + 1, n - 1);
      wsc_send(&c->ws, 0x1, G.req, n);
      return;
    case '6': /* noop */
      return;
    case '1': /* close */
      G.errors++;
      G.closes++;
      if (!c->ready) {
        wsc_close(&c->ws);
        maybe_start();
      }
      return;
    case '4':
      break;
    default:
      return bad(c, "unexpected Engine.IO packet");
  }
  if (n < 2) return bad(c, "empty Socket.IO packet");
  if (p[1] == '0') { /* CONNECT acknowledged: 40{"sid":...} */
    if (!c->opened || c->ready) return bad(c, "unexpected Socket.IO CONNECT");
    return conn_ready(c);
  }
  if (p[1] == '4') { /* CONNECT_ERROR: 44{"message":...} */
    G.server_errors++;
    if (G.server_errors <= 3) fprintf(stderr, "restgen: connect error: %.*s\n", (int)n, p);
    if (!c->ready) return not_ready(c, "Socket.IO refused the connection");
    G.errors++;
    return;
  }
  if (p[1] != '3') return bad(c, "unexpected Socket.IO packet");
  /* ACK: 43<id>[...] (main namespace: no "/nsp," before the id) */
  size_t i = 2;
  uint64_t id = 0;
  while (i < n && p[i] >= '0' && p[i] <= '9' && id <= UINT32_MAX) id = id * 10 + (p[i++] - '0');
  if (i == 2 || id > UINT32_MAX) return bad(c, "acknowledgement without an id");
  bool ok = match(p, n, &i, SIO0, LIT(SIO0));
  answered(c, (uint32_t)id, ok ? NULL : "not {\"status\":200,\"body\":...}", p, n, i, now);
}

static void on_message(wsc_conn *ws, uint8_t op, const uint8_t *p, size_t avail, uint64_t len,
                       uint64_t now) {
  conn *c = (conn *)ws;
  const char *why = NULL;
  if (avail < len)
    why = "message longer than expected";
  else if (op != (G.sio ? 1 : 2))
    why = G.sio ? "binary message" : "text message";
  if (why) return c->ready ? bad(c, why) : not_ready(c, why); /* not the server we want */
  if (G.sio)
    on_sio_message(c, p, avail, now);
  else
    on_sb_message(c, p, avail, now);
}

static void on_closed(wsc_conn *ws, unsigned code) {
  if (G.run.phase == PH_DONE) return;
  G.errors++;
  G.closes++;
  if (G.closes <= 5)
    fprintf(stderr, "restgen: connection %d: server closed it (%u)\n", (int)((conn *)ws - G.c), code);
}

/* ---------------------------------------------------------------------------------------- */
/* Phases                                                                                     */
/* ---------------------------------------------------------------------------------------- */

static bool report(bool measured) {
  if (measured) {
    /* A request that long unanswered was lost (or the server is stuck). */
    uint64_t now = G.run.t_end;
    for (int i = 0; i < G.ws.nconns; i++) {
      conn *c = &G.c[i];
      if (!c->slots || c->state != ST_OPEN) continue;
      for (int k = 0; k < G.window; k++)
        if (c->slots[k].busy && now - c->slots[k].t > LATE_NS) G.late++;
    }
    if (G.late) {
      G.errors += G.late;
      fprintf(stderr, "restgen: %" PRIu64 " request(s) unanswered for over %.0f s\n", G.late,
              (double)LATE_NS / 1e9);
    }
  }
  double secs = wsc_secs();
  printf(
      "{\"proto\":\"%s\",\"conns\":%d,\"window\":%d,\"rps\":%.0f,\"p50_us\":%.1f,"
      "\"p99_us\":%.1f,\"errors\":%" PRIu64 ",\"bad_responses\":%" PRIu64
      ",\"server_errors\":%" PRIu64 ",\"lost_conns\":%" PRIu64 ",\"closes\":%" PRIu64
      ",\"late\":%" PRIu64
      ",\"open\":%d,\"ready\":%d,\"connect_s\":%.2f,"
      "\"duration_s\":%.3f,\"reqs\":%" PRIu64 ",\"sent\":%" PRIu64 ",\"total_reqs\":%" PRIu64
      ",\"mean_us\":%.1f,\"p999_us\":%.1f,\"max_us\":%.1f",
      G.sio ? "sio" : "sb", G.ws.nconns, G.window, secs > 0 ? (double)G.reqs / secs : 0.0,
      h_us(&G.h, 0.50), h_us(&G.h, 0.99), G.errors, G.bad_responses, G.server_errors,
      G.lost_conns, G.closes, G.late, G.ws.open_now, G.readies,
      G.t_ready > G.run.t_connect0 ? (double)(G.t_ready - G.run.t_connect0) / 1e9 : 0.0, secs,
      G.reqs, G.sent, G.total, h_mean_us(&G.h), h_us(&G.h, 0.999), h_max_us(&G.h));
  cpu_print_end(&G.run.cpu, secs, "server_cpu_us_per_req", 1e6, 3, G.reqs);
  return measured && G.reqs > 0;
}

static void measure(void) {
  h_reset(&G.h);
  G.reqs = G.sent = 0;
}

static void start_load(void) {
  G.run.phase = PH_WARMUP;
  G.t_ready = uv_hrtime();
  uint64_t now = G.t_ready;
  for (int i = 0; i < G.ws.nconns; i++) {
    conn *c = &G.c[i];
    if (c->state != ST_OPEN || !c->ready) continue;
    for (int k = 0; k < G.window; k++) send_request(c, &c->slots[k], now);
    wsc_flush(&c->ws);
  }
  wsc_warmup();
}

/* Called once connecting is over, and on every connection that becomes ready after that. */
static void maybe_start(void) {
  if (G.run.phase != PH_READY) return;
  if (G.readies < G.ws.open_now) return;
  uv_timer_stop(&G.run.t_connect);
  if (G.readies == 0) {
    fprintf(stderr, "restgen: no connection became ready\n");
    wsc_finish();
    return;
  }
  start_load();
}

static void connect_phase_done(void) {
  if (wsc_connected()) maybe_start();
}

/* Open, but not all ready: go on with those that are. */
static void ready_timeout(void) {
  fprintf(stderr, "restgen: only %d of %d connections became ready within %.0f s\n", G.readies,
          G.ws.open_now, G.run.connect_timeout);
  G.errors += (uint64_t)(G.ws.open_now - G.readies);
  if (G.readies == 0) {
    wsc_finish();
    return;
  }
  start_load();
}

/* ---------------------------------------------------------------------------------------- */
/* Main                                                                                       */
/* ---------------------------------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: restgen --port P --proto sb|sio [options]\n"
          "  --proto sb|sio          Switchboard REQUEST envelopes, or Socket.IO events with\n"
          "                          acknowledgements (required)\n"
          "  --host ADDR             server address, an IP literal (default 127.0.0.1)\n"
          "  --port P                server port (required)\n"
          "  --path PATH             request path of the upgrade (default / for sb,\n"
          "                          /socket.io/?EIO=4&transport=websocket for sio)\n"
          "  --conns N               connections (default 100)\n"
          "  --window K              requests in flight per connection (default 1: lockstep)\n"
          "  --duration S            measured seconds (default 5)\n"
          "  --warmup S              seconds of load before measuring (default 1)\n"
          "  --connect-concurrency N handshakes in progress at once (default 64)\n"
          "  --connect-timeout S     give up on connections not ready by then (default 60)\n"
          "  --server-pid PID        also report that process's CPU time per request\n");
}

int main(int argc, char **argv) {
  G.run.host = "127.0.0.1";
  G.run.port = -1;
  G.ws.nconns = 100;
  G.window = 1;
  G.run.duration = 5;
  G.run.warmup = 1;
  G.ws.conc = 64;
  G.run.connect_timeout = 60;
  int proto = -1;

  enum { OPT_PROTO = WSC_OPT_END, OPT_CONNS, OPT_WINDOW, OPT_HELP };
  static const struct option opts[] = {WSC_OPTIONS,
                                       {"proto", required_argument, 0, OPT_PROTO},
                                       {"conns", required_argument, 0, OPT_CONNS},
                                       {"window", required_argument, 0, OPT_WINDOW},
                                       {"help", no_argument, 0, OPT_HELP},
                                       {0, 0, 0, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (wsc_option(&G.run, &G.ws, o, optarg)) continue;
    switch (o) {
      case OPT_PROTO:
        if (strcmp(optarg, "sb") == 0)
          proto = 0;
        else if (strcmp(optarg, "sio") == 0)
          proto = 1;
        else {
          fprintf(stderr, "restgen: --proto is sb or sio\n");
          return 2;
        }
        break;
      case OPT_CONNS:
        G.ws.nconns = (int)num_arg("conns", optarg, 1, 1000000);
        break;
      case OPT_WINDOW:
        G.window = (int)num_arg("window", optarg, 1, 4096);
        break;
      case OPT_HELP:
        usage(stdout);
        return 0;
      default:
        usage(stderr);
        return 2;
    }
  }
  if (optind < argc || G.run.port < 0 || proto < 0) {
    usage(stderr);
    return 2;
  }
  G.sio = proto == 1;
  if (!G.run.path) G.run.path = G.sio ? "/socket.io/?EIO=4&transport=websocket" : "/";

  G.c = wsc_setup(&G.run, &G.ws, sizeof *G.c);
  h_reset(&G.h);
  for (int i = 0; i < G.ws.nconns; i++) {
    G.c[i].slots = calloc((size_t)G.window, sizeof(slot));
    if (!G.c[i].slots) die("out of memory", 0);
  }

  G.run.report = report;
  G.run.measure = measure;
  G.run.ready_timeout = ready_timeout;
  G.ws.errors = &G.errors;
  G.ws.lost = on_lost;
  G.ws.message = on_message;
  G.ws.closed = on_closed;
  G.ws.prefix_off = offsetof(conn, pre);
  G.ws.prefix = PREFIX;
  G.ws.all_resolved = connect_phase_done;
  wsc_go();
  return 1;
}
