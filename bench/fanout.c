/*
 * fanout.c — the fan-out benchmark's load generator: publishers and subscribers of one group,
 * all in one process on libuv, for Switchboard's examples/broadcast and bench/node-broadcast.mjs.
 *
 * Like loadgen it does not use the Switchboard library: its own client handshake (a fixed
 * Sec-WebSocket-Key whose Sec-WebSocket-Accept is checked), masked frames, and an incremental
 * parser of the server's frames, all shared with loadgen (bench/wsclient.h, bench/wsclient.c).
 * What it sends are SEND envelopes (docs/PROTOCOL.md §3) with a --size-byte body; what it
 * expects back are PUSH envelopes carrying that body. The body holds a magic number, the
 * publisher's index, a sequence number and the send time, so that every delivery is matched
 * to its message without a lookup by content.
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

enum { PH_CONNECT, PH_READY, PH_WARMUP, PH_MEASURE, PH_DONE };

#define ENV_HDR 26        /* SEND envelope with empty stream and url, before the body */
#define BODY_MIN 24       /* magic u32, publisher u32, seq u64, send time u64 */
#define PREFIX 96         /* head of a split message kept for parsing */
#define MAGIC 0x5342464fu /* "SBFO" */

typedef struct conn {
  union { /* the client connection (wsclient.h), its fields also reachable as c->state, ... */
    wsc_conn ws;
    struct {
      WSC_CONN_FIELDS
    };
  };
  uint8_t hello;
  uint8_t pre[PREFIX]; /* head of the current message when it is split across reads */
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
  int port, nsubs, window, server_pid;
  bool all, wait_hello;
  size_t size;
  double duration, warmup, connect_timeout, stall_timeout;

  wsc_pool ws; /* the connections: subs, plus the publisher for --pattern one */
  conn *c;
  conn *pub;  /* --pattern one */

  /* connect phase (its counters are in G.ws) */
  int hellos;
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
  cpu_acct cpu;

  uv_timer_t t_phase, t_connect, t_watch;
  uv_signal_t sig_int, sig_term;
} G;

static void finish(void);
static void maybe_start(void);

const char *wsc_prog = "fanout";

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                    */
/* ---------------------------------------------------------------------------------------- */

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

static void conn_lost(conn *c, int err, const char *why) {
  if (c->state == ST_CLOSED) return;
  if (!c->resolved) {
    if (G.ws.failed < 5)
      fprintf(stderr, "fanout: connection %d: %s%s%s\n", (int)(c - G.c), why, err ? ": " : "",
              err ? uv_strerror(err) : "");
    wsc_close(&c->ws);
    wsc_resolve(&c->ws, false);
    return;
  }
  if (G.phase != PH_DONE) {
    G.errors++;
    G.lost_conns++;
    if (G.lost_conns <= 5)
      fprintf(stderr, "fanout: connection %d lost: %s%s%s\n", (int)(c - G.c), why, err ? ": " : "",
              err ? uv_strerror(err) : "");
  }
  wsc_close(&c->ws);
}

static void on_lost(wsc_conn *c, int err, const char *why) { conn_lost((conn *)c, err, why); }

/* Appends a masked frame with opcode `op` and payload p[0..n) to tx. */
static void queue_frame(conn *c, uint8_t op, const uint8_t *p, size_t n) {
  wsc_queue_frame(&c->ws, op, p, n, rng32(&G.rng));
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
    wsc_flush(&G.pub->ws);
  }
}

/* --pattern all: client c received publisher p's message of round r. */
static void delivered_all(conn *c, uint32_t p, uint64_t r, uint64_t now) {
  if (p >= (uint32_t)G.ws.nconns || (r != c->round && r != (uint64_t)c->round + 1)) {
    G.errors++;
    G.seq_errors++;
    if (G.seq_errors <= 5)
      fprintf(stderr, "fanout: client %d in round %u got publisher %u's round %" PRIu64 "\n",
              (int)(c - G.c), c->round, p, r);
    return;
  }
  c->cnt[r & 1]++;
  slot *s = &G.slots[(r & 1) * (uint64_t)G.ws.nconns + p];
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
    slot *n = &G.slots[(c->round & 1) * (uint64_t)G.ws.nconns + me];
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
  const char *err = wsc_frame_begin(&c->ws, false);
  if (err) return protocol_error(c, err), false;
  if (c->f_remaining == 0) frame_end(c, now);
  return true;
}

/* Parses server frames in p[0..n). A complete unfragmented binary frame is handled where it
 * lies; anything split across reads goes through the incremental path. */
static void parse(wsc_conn *ws, const uint8_t *p, size_t n, uint64_t now) {
  conn *c = (conn *)ws;
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
      if (!wsc_header_feed(&c->ws, &p, &n)) break;
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

/* ---------------------------------------------------------------------------------------- */
/* Phases                                                                                     */
/* ---------------------------------------------------------------------------------------- */

static void print_result(void) {
  double secs = G.t_end > G.t_start ? (double)(G.t_end - G.t_start) / 1e9 : 0;
  double cpu = cpu_client_s(&G.cpu);
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
      G.ws.nconns, G.ws.open_now, G.hellos,
      G.t_ready > G.t_connect0 ? (double)(G.t_ready - G.t_connect0) / 1e9 : 0.0, secs, G.msgs,
      G.deliveries, G.published, G.rounds_done, G.total_msgs, G.total_deliveries, G.self_deliveries,
      G.h_last.n ? (double)G.h_last.sum / (double)G.h_last.n / 1e3 : 0.0,
      h_quantile(&G.h_last, 0.999) / 1e3, G.h_last.n ? (double)G.h_last.max / 1e3 : 0.0,
      G.h_each.n ? (double)G.h_each.sum / (double)G.h_each.n / 1e3 : 0.0,
      h_quantile(&G.h_each, 0.999) / 1e3, G.h_each.n ? (double)G.h_each.max / 1e3 : 0.0,
      secs > 0 ? 100 * cpu / secs : 0.0);
  double scpu;
  if (cpu_server_s(&G.cpu, &scpu))
    printf(",\"server_cpu_pct\":%.1f,\"server_cpu_ns_per_delivery\":%.1f",
           secs > 0 ? 100 * scpu / secs : 0.0,
           G.deliveries ? scpu * 1e9 / (double)G.deliveries : 0.0);
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
  cpu_begin(&G.cpu);
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
    for (int i = 0; i < G.ws.nconns; i++) {
      if (G.c[i].round < lo) lo = G.c[i].round;
    }
    for (int i = 0; i < G.ws.nconns; i++) behind += G.c[i].round == lo;
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
    G.target = (uint32_t)G.ws.open_now;
    for (int i = 0; i < G.ws.nconns; i++) {
      conn *c = &G.c[i];
      if (c->state != ST_OPEN) continue;
      slot *s = &G.slots[i];
      s->t = now;
      s->busy = 1;
      publish(c, (uint32_t)i, 0, now);
      wsc_flush(&c->ws);
    }
  } else {
    G.target = (uint32_t)(G.ws.open_now - (G.pub->state == ST_OPEN ? 1 : 0));
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
    wsc_flush(&G.pub->ws);
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
  if (G.wait_hello && G.hellos < G.ws.open_now) return;
  uv_timer_stop(&G.t_connect);
  start_load();
}

static void connect_phase_done(void) {
  G.ws.connect_done = true;
  if (G.ws.failed)
    fprintf(stderr, "fanout: %d of %d connections failed\n", G.ws.failed, G.ws.nconns);
  if (G.ws.open_now == 0) {
    fprintf(stderr, "fanout: no connection could be opened\n");
    finish();
    return;
  }
  G.phase = PH_READY;
  maybe_start();
}

static void on_connect_timeout(uv_timer_t *t) {
  (void)t;
  if (G.ws.connect_done) { /* still waiting for HELLOs */
    fprintf(stderr, "fanout: only %d of %d connections got a HELLO within %.0f s\n", G.hellos,
            G.ws.open_now, G.connect_timeout);
    G.errors++;
    finish();
    return;
  }
  int pending = wsc_expire();
  fprintf(stderr, "fanout: connect timeout: %d connection(s) not open after %.0f s\n", pending,
          G.connect_timeout);
  if (!G.ws.connect_done) connect_phase_done();
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

int main(int argc, char **argv) {
  G.host = "127.0.0.1";
  G.path = "/";
  G.port = -1;
  G.nsubs = 1000;
  G.window = 1;
  G.size = 32;
  G.duration = 5;
  G.warmup = 1;
  G.ws.conc = 128;
  G.connect_timeout = 90;
  G.stall_timeout = 10;

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
        G.ws.conc = (int)num_arg("connect-concurrency", optarg, 1, 1000000);
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
  G.ws.nconns = G.all ? G.nsubs : G.nsubs + 1;

  signal(SIGPIPE, SIG_IGN);

  cpu_init(&G.cpu, G.server_pid);
  raise_nofile(G.ws.nconns);
  if (!ws_target(G.host, G.port, G.path, &G.ws.addr, &G.ws.req, &G.ws.req_len)) return 2;

  /* SEND envelope: kind 4, method 0, status 0, id 0, stream "", offset 0, epoch 0, url "",
   * then the body (its first 24 bytes are filled in per message). */
  G.msg_len = ENV_HDR + G.size;
  G.msg = calloc(1, G.msg_len);
  if (!G.msg) die("out of memory", 0);
  G.msg[0] = 4;
  for (size_t i = BODY_MIN; i < G.size; i++) G.msg[ENV_HDR + i] = (uint8_t)('a' + i % 26);

  G.rng = rng_seed();
  h_reset(&G.h_last);
  h_reset(&G.h_each);

  G.c = calloc((size_t)G.ws.nconns, sizeof *G.c);
  G.slots = calloc(G.all ? 2 * (size_t)G.ws.nconns : (size_t)G.window, sizeof *G.slots);
  if (!G.c || !G.slots) die("out of memory", 0);
  if (!G.all) G.pub = &G.c[G.nsubs];

  G.ws.loop = uv_default_loop();
  uv_timer_init(G.ws.loop, &G.t_phase);
  uv_timer_init(G.ws.loop, &G.t_connect);
  uv_timer_init(G.ws.loop, &G.t_watch);
  uv_signal_init(G.ws.loop, &G.sig_int);
  uv_signal_init(G.ws.loop, &G.sig_term);
  uv_signal_start(&G.sig_int, on_signal, SIGINT);
  uv_signal_start(&G.sig_term, on_signal, SIGTERM);

  G.t_connect0 = uv_hrtime();
  uv_timer_start(&G.t_connect, on_connect_timeout, (uint64_t)(G.connect_timeout * 1000 + 0.5), 0);
  G.ws.conns = (uint8_t *)G.c;
  G.ws.conn_size = sizeof *G.c;
  G.ws.errors = &G.errors;
  G.ws.lost = on_lost;
  G.ws.parse = parse;
  G.ws.all_resolved = connect_phase_done;
  wsc_pool_start(&G.ws);
  uv_run(G.ws.loop, UV_RUN_DEFAULT);
  return 1;
}
