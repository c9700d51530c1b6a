/*
 * fanout.c — the fan-out benchmark's load generator: publishers and subscribers of one group,
 * all in one process on libuv, for Switchboard's examples/broadcast and bench/node-broadcast.mjs.
 *
 * Like loadgen it does not use the Switchboard library: its own client handshake (a fixed
 * Sec-WebSocket-Key whose Sec-WebSocket-Accept is checked), masked frames, and an incremental
 * parser of the server's frames, all shared with loadgen and restgen (bench/wsclient.h,
 * bench/wsclient.c).
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

#include <arpa/inet.h>
#include <getopt.h>
#include <inttypes.h>
#include <netinet/in.h>
#include <sys/socket.h>
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

#define ENV_HDR 26        /* SEND envelope with empty stream and url, before the body */
#define BODY_MIN 24       /* magic u32, publisher u32, seq u64, send time u64 */
#define PREFIX 96         /* head of a split message kept for parsing */
#define MAGIC 0x5342464fu /* "SBFO" */
/* Socket.IO (--proto sio): the publisher emits SIO_PUB body SIO_END, the server pushes
 * SIO_PUSH body SIO_END; the body starts with the sequence number in 16 hex digits. */
#define SIO_PUB "42[\"p\",\""
#define SIO_PUSH "42[\"m\",\""
#define SIO_END "\"]"
#define LIT(s) (sizeof(s) - 1)
#define SIO_BODY_MIN 16

typedef struct conn {
  union { /* the client connection (wsclient.h), its fields also reachable as c->state, ... */
    wsc_conn ws;
    struct {
      WSC_CONN_FIELDS
    };
  };
  uint8_t hello;  /* ours: HELLO read; Socket.IO: namespace connected (40{...} read) */
  uint8_t opened; /* Socket.IO: Engine.IO open packet read */
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
  /* options (and the common ones in run) */
  int nsubs, window;
  bool all, wait_hello, sio, idle;
  size_t size;
  double stall_timeout;
  const char *pub_host; /* the publisher's server (--pub-host, --pub-port), if another one */
  int pub_port, pub_pid;
  const char *redis_host; /* the Redis the servers share (--redis-port), for its statistics */
  int redis_port;

  wsc_run run; /* phases, the measured window, CPU accounting */
  wsc_pool ws; /* the connections: subs, plus the publisher for --pattern one */
  conn *c;
  conn *pub; /* --pattern one */

  /* connect phase (its counters are in G.ws) */
  int hellos;
  uint64_t t_ready;

  /* load */
  uint8_t *msg; /* SEND envelope being built: header + body */
  size_t msg_len;
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
  hist h_last, h_each;

  /* the publisher's server and Redis over the measured window */
  long long pub_t0, pub_t1; /* utime + stime ticks of --pub-server-pid */
  double redis_cpu0;        /* Redis' used_cpu_sys + used_cpu_user at the start, -1 unknown */

  uv_timer_t t_watch;
} G;

static void maybe_start(void);

const char *wsc_prog = "fanout";

/* ---------------------------------------------------------------------------------------- */
/* Helpers                                                                                    */
/* ---------------------------------------------------------------------------------------- */

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

static void on_lost(wsc_conn *c, int err, const char *why) {
  if (G.run.phase == PH_DONE) return;
  G.errors++;
  if (++G.lost_conns <= 5) wsc_print_lost(c, err, why);
}

/* Queues a SEND envelope from publisher `pub` with sequence number `seq`. */
static void publish(conn *c, uint32_t pub, uint64_t seq, uint64_t now) {
  if (G.sio) { /* the sequence number in hex at the start of the body (a text message) */
    static const char hex[] = "0123456789abcdef";
    for (int k = 0; k < 16; k++) G.msg[LIT(SIO_PUB) + (size_t)k] = (uint8_t)hex[(seq >> (60 - 4 * k)) & 15];
    wsc_send(&c->ws, 0x1, G.msg, G.msg_len);
    if (G.run.phase == PH_MEASURE) G.published++;
    return;
  }
  uint8_t *b = G.msg + ENV_HDR;
  put32(b, MAGIC);
  put32(b + 4, pub);
  put64(b + 8, seq);
  put64(b + 16, now);
  wsc_send(&c->ws, 0x2, G.msg, G.msg_len);
  if (G.run.phase == PH_MEASURE) G.published++;
}

/* ---------------------------------------------------------------------------------------- */
/* Deliveries                                                                                 */
/* ---------------------------------------------------------------------------------------- */

static void bad_msg(conn *c, const char *why) {
  G.errors++;
  G.bad_msgs++;
  if (G.bad_msgs <= 5) fprintf(stderr, "fanout: connection %d: %s\n", (int)(c - G.c), why);
}

/* A text field (LEB128 length, bytes) at p[*i..n); advances *i past it. */
static bool skip_text(const uint8_t *p, size_t n, size_t *i) {
  uint64_t len;
  if (!get_varint(p, n, i, &len) || len > n - *i) return false;
  *i += (size_t)len;
  return true;
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
  if (G.run.phase == PH_MEASURE) {
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
  if (G.run.phase == PH_MEASURE) {
    G.msgs++;
    h_add(&G.h_last, lat);
  }
  if (wsc_running()) {
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
  if (G.run.phase == PH_MEASURE) {
    G.deliveries++;
    h_add(&G.h_each, lat);
  }
  if (++s->cnt == G.target) {
    s->cnt = 0;
    s->busy = 0;
    G.total_msgs++;
    if (G.run.phase == PH_MEASURE) {
      G.msgs++;
      h_add(&G.h_last, lat);
    }
  }
  if (c->cnt[c->round & 1] < G.target) return;
  /* This client has the whole round: on to the next one. */
  c->cnt[c->round & 1] = 0;
  c->round++;
  if (G.run.phase == PH_MEASURE) G.rounds_done++;
  if (wsc_running()) {
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

static void got_hello(conn *c) {
  if (c->hello) return;
  c->hello = 1;
  G.hellos++;
  if (G.run.phase == PH_READY) maybe_start();
}

/* --proto sio: a whole text message (Engine.IO v4 packet carrying a Socket.IO v5 one). */
static void on_message_sio(conn *c, uint8_t op, const uint8_t *p, size_t avail, uint64_t len,
                           uint64_t now) {
  if (op != 1) return bad_msg(c, "binary message from Socket.IO");
  if (len < 1) return bad_msg(c, "empty message");
  if (p[0] == '0') { /* Engine.IO open: connect to the main namespace */
    if (c->opened) return bad_msg(c, "second Engine.IO open packet");
    c->opened = 1;
    wsc_send(&c->ws, 0x1, (const uint8_t *)"40", 2);
    wsc_flush(&c->ws);
    return;
  }
  if (p[0] == '2' && len == 1) { /* Engine.IO ping */
    wsc_send(&c->ws, 0x1, (const uint8_t *)"3", 1);
    wsc_flush(&c->ws);
    return;
  }
  if (len < 2 || p[0] != '4') return bad_msg(c, "unexpected Engine.IO packet");
  if (p[1] == '0') return got_hello(c); /* 40{"sid":...}: the namespace is connected */
  if (p[1] == '4') { /* 44{...}: connect error */
    G.errors++;
    G.server_errors++;
    if (G.server_errors <= 3)
      fprintf(stderr, "fanout: Socket.IO connect error: %.*s\n", (int)avail, (const char *)p);
    return;
  }
  if (len != LIT(SIO_PUSH) + G.size + LIT(SIO_END) || avail < LIT(SIO_PUSH) + 16 ||
      memcmp(p, SIO_PUSH, LIT(SIO_PUSH)) != 0)
    return bad_msg(c, "not one of our events (name or size)");
  uint64_t seq = 0;
  for (size_t k = 0; k < 16; k++) {
    uint8_t d = p[LIT(SIO_PUSH) + k];
    if (d >= '0' && d <= '9') seq = seq << 4 | (uint64_t)(d - '0');
    else if (d >= 'a' && d <= 'f') seq = seq << 4 | (uint64_t)(d - 'a' + 10);
    else return bad_msg(c, "bad sequence number");
  }
  if (G.run.phase == PH_DONE) return;
  delivered_one(c, seq, now);
}

/* A whole message: p[0..avail) is its head (avail = len unless it was split). */
static void on_message(wsc_conn *ws, uint8_t op, const uint8_t *p, size_t avail, uint64_t len,
                       uint64_t now) {
  conn *c = (conn *)ws;
  if (G.sio) return on_message_sio(c, op, p, avail, len, now);
  if (op != 2) return bad_msg(c, "text message");
  if (len < 1) return bad_msg(c, "empty message");
  uint8_t kind = p[0];
  if (kind == 5) return got_hello(c); /* HELLO */
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
  if (G.run.phase == PH_DONE) return;
  if (G.all)
    delivered_all(c, get32(b + 4), get64(b + 8), now);
  else
    delivered_one(c, get64(b + 8), now);
}

static void on_closed(wsc_conn *ws, unsigned code) {
  conn *c = (conn *)ws;
  count_close_code(code);
  if (G.run.phase != PH_DONE) {
    G.errors++;
    if (G.closes <= 5)
      fprintf(stderr, "fanout: connection %d: server closed it (%u %.*s)\n", (int)(c - G.c), code,
              c->ctl_len > 2 ? (int)c->ctl_len - 2 : 0, (const char *)c->ctl + 2);
  }
}

/* ---------------------------------------------------------------------------------------- */
/* Redis statistics (--redis-port): one blocking exchange at each end of the measured window   */
/* ---------------------------------------------------------------------------------------- */

/* Sends `cmds` (inline commands, each ending in CRLF) to Redis and reads `n` replies; returns
 * the bulk replies' texts one after the other (malloc'd, NUL-terminated), or NULL after a
 * message on stderr. Blocking, with a 3 s limit: it runs only at the two ends of the window,
 * a few hundred microseconds each on loopback. */
static char *redis_exchange(const char *cmds, int n) {
  struct sockaddr_in a;
  if (uv_ip4_addr(G.redis_host, G.redis_port, &a) != 0) {
    fprintf(stderr, "fanout: --redis-host must be an IPv4 address\n");
    return NULL;
  }
  int fd = socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return NULL;
  struct timeval tv = {3, 0};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  char *in = NULL, *out = NULL;
  size_t in_len = 0, in_cap = 0, out_len = 0, out_cap = 0, pos = 0;
  const char *why = NULL;
  size_t clen = strlen(cmds);
  if (connect(fd, (struct sockaddr *)&a, sizeof a) != 0) why = "cannot connect";
  else if (send(fd, cmds, clen, MSG_NOSIGNAL) != (ssize_t)clen) why = "send failed";
  /* Replies: +line, -error, :number, $len CRLF bytes CRLF. */
  for (int got = 0; !why && got < n;) {
    char *nl = in ? memchr(in + pos, '\n', in_len - pos) : NULL;
    if (nl && in[pos] == '$') {
      long blen = strtol(in + pos + 1, NULL, 10);
      size_t start = (size_t)(nl - in) + 1;
      if (blen >= 0 && in_len >= start + (size_t)blen + 2) {
        grow((uint8_t **)&out, &out_cap, out_len + (size_t)blen + 1);
        memcpy(out + out_len, in + start, (size_t)blen);
        out_len += (size_t)blen;
        out[out_len] = 0;
        pos = start + (size_t)blen + 2;
        got++;
        continue;
      }
      if (blen < 0) {
        pos = start;
        got++;
        continue;
      }
    } else if (nl) {
      if (in[pos] == '-') {
        fprintf(stderr, "fanout: redis: %.*s\n", (int)(nl - in - (ptrdiff_t)pos), in + pos);
        why = "error reply";
        break;
      }
      pos = (size_t)(nl - in) + 1;
      got++;
      continue;
    }
    grow((uint8_t **)&in, &in_cap, in_len + 65536);
    ssize_t r = recv(fd, in + in_len, in_cap - in_len, 0);
    if (r <= 0) why = "no reply";
    else in_len += (size_t)r;
  }
  close(fd);
  free(in);
  if (why) {
    fprintf(stderr, "fanout: redis at %s:%d: %s\n", G.redis_host, G.redis_port, why);
    free(out);
    return NULL;
  }
  if (!out) out = calloc(1, 1);
  return out;
}

/* used_cpu_sys + used_cpu_user in INFO's text, -1 if missing. */
static double redis_cpu(const char *info) {
  const char *s = info ? strstr(info, "used_cpu_sys:") : NULL;
  const char *u = info ? strstr(info, "used_cpu_user:") : NULL;
  if (!s || !u) return -1;
  return strtod(s + LIT("used_cpu_sys:"), NULL) + strtod(u + LIT("used_cpu_user:"), NULL);
}

/* The start of the window: Redis' command counts zeroed, its CPU time read. */
static void redis_begin(void) {
  G.redis_cpu0 = -1;
  if (!G.redis_port) return;
  char *r = redis_exchange("CONFIG RESETSTAT\r\nINFO cpu\r\n", 2);
  G.redis_cpu0 = redis_cpu(r);
  free(r);
}

/* The end of the window: prints ,"redis_cpu_pct":..,"redis_cpu_us_per_msg":..,
 * "redis_cmds":{"<command>":<calls per message>,...},"redis_usec":{"<command>":<microseconds
 * Redis spent in it per message>,...},"redis_cmds_per_msg":.. over the messages published in
 * the window. Every command Redis ran is counted, those run inside scripts too (INFO
 * commandstats counts them; a script's time includes theirs), except our own INFO and CONFIG
 * RESETSTAT. */
static void redis_end(double secs) {
  if (!G.redis_port) return;
  char *r = G.redis_cpu0 >= 0 ? redis_exchange("INFO cpu\r\nINFO commandstats\r\n", 2) : NULL;
  double cpu1 = redis_cpu(r);
  double msgs = G.published ? (double)G.published : 1;
  if (cpu1 >= 0 && secs > 0)
    printf(",\"redis_cpu_pct\":%.1f,\"redis_cpu_us_per_msg\":%.2f", 100 * (cpu1 - G.redis_cpu0) / secs,
           (cpu1 - G.redis_cpu0) * 1e6 / msgs);
  if (r) {
    /* Two passes over the lines cmdstat_<name>:calls=N,usec=U,...: calls, then time spent. */
    uint64_t total = 0;
    for (int pass = 0; pass < 2; pass++) {
      printf(pass ? ",\"redis_usec\":{" : ",\"redis_cmds\":{");
      int k = 0;
      for (const char *p = strstr(r, "cmdstat_"); p; p = strstr(p + 1, "cmdstat_")) {
        const char *name = p + LIT("cmdstat_"), *colon = strchr(name, ':');
        if (!colon || strncmp(colon, ":calls=", LIT(":calls=")) != 0) continue;
        int nlen = (int)(colon - name);
        if ((nlen == 4 && !strncmp(name, "info", 4)) ||
            (nlen == (int)LIT("config|resetstat") && !strncmp(name, "config|resetstat", (size_t)nlen)))
          continue;
        char *end;
        uint64_t calls = strtoull(colon + LIT(":calls="), &end, 10);
        if (pass == 0) {
          total += calls;
          printf("%s\"%.*s\":%.4f", k++ ? "," : "", nlen, name, (double)calls / msgs);
        } else if (strncmp(end, ",usec=", LIT(",usec=")) == 0) {
          uint64_t us = strtoull(end + LIT(",usec="), NULL, 10);
          printf("%s\"%.*s\":%.2f", k++ ? "," : "", nlen, name, (double)us / msgs);
        }
      }
      printf("}");
    }
    printf(",\"redis_cmds_per_msg\":%.4f", (double)total / msgs);
  }
  free(r);
}

/* ---------------------------------------------------------------------------------------- */
/* Phases                                                                                     */
/* ---------------------------------------------------------------------------------------- */

static bool report(bool measured) {
  double secs = wsc_secs();
  if (G.pub_pid && measured) G.pub_t1 = wsc_proc_ticks(G.pub_pid);
  printf("{\"proto\":\"%s\",", G.sio ? "sio" : "sb");
  printf(
      "\"pattern\":\"%s\",\"subs\":%d,\"window\":%d,\"size\":%zu,\"msgs_per_s\":%.1f,"
      "\"deliveries_per_s\":%.0f,\"last_p50_us\":%.1f,\"last_p99_us\":%.1f,"
      "\"each_p50_us\":%.1f,\"each_p99_us\":%.1f,\"errors\":%" PRIu64 ",\"gaps\":%" PRIu64
      ",\"seq_errors\":%" PRIu64 ",\"bad_msgs\":%" PRIu64 ",\"lost_conns\":%" PRIu64
      ",\"server_errors\":%" PRIu64 ",\"stalled\":%s,\"closes\":%" PRIu64 ",\"close_codes\":{",
      G.all ? "all" : "one", G.nsubs, G.all ? 1 : G.window, G.size,
      secs > 0 ? (double)G.msgs / secs : 0.0, secs > 0 ? (double)G.deliveries / secs : 0.0,
      h_us(&G.h_last, 0.50), h_us(&G.h_last, 0.99), h_us(&G.h_each, 0.50), h_us(&G.h_each, 0.99),
      G.errors, G.gaps, G.seq_errors, G.bad_msgs, G.lost_conns, G.server_errors,
      G.stalled ? "true" : "false", G.closes);
  for (size_t i = 0, k = 0; i < sizeof G.close_codes / sizeof G.close_codes[0]; i++)
    if (G.close_codes[i].n)
      printf("%s\"%u\":%" PRIu64, k++ ? "," : "", G.close_codes[i].code, G.close_codes[i].n);
  printf(
      "},\"conns\":%d,\"open\":%d,\"hellos\":%d,\"connect_s\":%.2f,\"duration_s\":%.3f,"
      "\"msgs\":%" PRIu64 ",\"deliveries\":%" PRIu64 ",\"published\":%" PRIu64
      ",\"rounds\":%" PRIu64 ",\"total_msgs\":%" PRIu64 ",\"total_deliveries\":%" PRIu64
      ",\"self_deliveries\":%" PRIu64
      ",\"last_mean_us\":%.1f,\"last_p999_us\":%.1f,"
      "\"last_max_us\":%.1f,\"each_mean_us\":%.1f,\"each_p999_us\":%.1f,\"each_max_us\":%.1f",
      G.ws.nconns, G.ws.open_now, G.hellos,
      G.t_ready > G.run.t_connect0 ? (double)(G.t_ready - G.run.t_connect0) / 1e9 : 0.0, secs,
      G.msgs, G.deliveries, G.published, G.rounds_done, G.total_msgs, G.total_deliveries,
      G.self_deliveries, h_mean_us(&G.h_last), h_us(&G.h_last, 0.999), h_max_us(&G.h_last),
      h_mean_us(&G.h_each), h_us(&G.h_each, 0.999), h_max_us(&G.h_each));
  if (G.pub_pid && measured && G.pub_t0 >= 0 && G.pub_t1 >= 0 && secs > 0) {
    double s = (double)(G.pub_t1 - G.pub_t0) / (double)sysconf(_SC_CLK_TCK);
    printf(",\"pub_server_cpu_pct\":%.1f,\"pub_server_cpu_us_per_msg\":%.2f", 100 * s / secs,
           G.published ? s * 1e6 / (double)G.published : 0.0);
  }
  if (measured) redis_end(secs);
  cpu_print_end(&G.run.cpu, secs, "server_cpu_ns_per_delivery", 1e9, 1, G.deliveries);
  return measured && G.deliveries > 0 && !G.stalled;
}

static void measure(void) {
  h_reset(&G.h_last);
  h_reset(&G.h_each);
  G.deliveries = G.msgs = G.published = G.rounds_done = 0;
  redis_begin();
  if (G.pub_pid) G.pub_t0 = wsc_proc_ticks(G.pub_pid);
}

/* Every 100 ms: a run without deliveries for --stall-timeout seconds has lost something. */
static void on_watch(uv_timer_t *t) {
  (void)t;
  if (!wsc_running()) return;
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
  wsc_finish();
}

static void start_load(void) {
  G.run.phase = PH_WARMUP;
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
      wsc_finish();
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
  wsc_warmup();
}

/* --idle: every connection is open and ready (or the time for that is up). Prints one line
 * and leaves them idle (answering pings) until SIGTERM or SIGINT. */
static void idle_ready(void) {
  G.run.phase = PH_WARMUP; /* nothing else to start */
  printf("{\"idle\":true,\"proto\":\"%s\",\"conns\":%d,\"open\":%d,\"ready\":%d,"
         "\"connect_s\":%.2f}\n",
         G.sio ? "sio" : "sb", G.ws.nconns, G.ws.open_now, G.hellos,
         (double)(uv_hrtime() - G.run.t_connect0) / 1e9);
  fflush(stdout);
}

static void idle_exit(void) { exit(0); }

/* Called once connecting is over, and on every HELLO after that. */
static void maybe_start(void) {
  if (G.run.phase != PH_READY) return;
  if (G.wait_hello && G.hellos < G.ws.open_now) return;
  uv_timer_stop(&G.run.t_connect);
  if (G.idle) return idle_ready();
  start_load();
}

static void connect_phase_done(void) {
  if (wsc_connected()) maybe_start();
}

/* Still waiting for HELLOs. */
static void ready_timeout(void) {
  fprintf(stderr, "fanout: only %d of %d connections got a HELLO within %.0f s\n", G.hellos,
          G.ws.open_now, G.run.connect_timeout);
  if (G.idle) return idle_ready();
  G.errors++;
  wsc_finish();
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
          "  --server-pid PID        also report that process's CPU time\n"
          "  --proto sb|sio          Switchboard envelopes (default), or Socket.IO events over\n"
          "                          Engine.IO v4 (path /socket.io/?EIO=4&transport=websocket;\n"
          "                          the publisher emits \"p\", the server must emit \"m\" with the\n"
          "                          same string to every subscriber; --pattern one only)\n"
          "  --pub-host ADDR, --pub-port P  the publisher connects to this server instead\n"
          "                          (subscribers to --host/--port): fan-out across nodes\n"
          "  --pub-server-pid PID    also report that process's CPU time (the publisher's server)\n"
          "  --redis-port P [--redis-host ADDR]  the Redis the servers share: its CPU time and\n"
          "                          commands (CONFIG RESETSTAT, INFO) over the measured window\n"
          "  --idle                  only connect the subscribers, wait until each is ready (HELLO\n"
          "                          with --hello; Socket.IO: namespace connected), print one\n"
          "                          line and stay idle until SIGTERM (memory tests)\n");
}

int main(int argc, char **argv) {
  G.run.host = "127.0.0.1";
  G.run.path = "/";
  G.run.port = -1;
  G.nsubs = 1000;
  G.window = 1;
  G.size = 32;
  G.run.duration = 5;
  G.run.warmup = 1;
  G.ws.conc = 128;
  G.run.connect_timeout = 90;
  G.stall_timeout = 10;

  enum {
    OPT_PATTERN = WSC_OPT_END,
    OPT_SUBS,
    OPT_WINDOW,
    OPT_SIZE,
    OPT_HELLO,
    OPT_STALL,
    OPT_PROTO,
    OPT_PUB_HOST,
    OPT_PUB_PORT,
    OPT_PUB_PID,
    OPT_REDIS_HOST,
    OPT_REDIS_PORT,
    OPT_IDLE,
    OPT_HELP
  };
  static const struct option opts[] = {WSC_OPTIONS,
                                       {"pattern", required_argument, 0, OPT_PATTERN},
                                       {"subs", required_argument, 0, OPT_SUBS},
                                       {"window", required_argument, 0, OPT_WINDOW},
                                       {"size", required_argument, 0, OPT_SIZE},
                                       {"hello", no_argument, 0, OPT_HELLO},
                                       {"stall-timeout", required_argument, 0, OPT_STALL},
                                       {"proto", required_argument, 0, OPT_PROTO},
                                       {"pub-host", required_argument, 0, OPT_PUB_HOST},
                                       {"pub-port", required_argument, 0, OPT_PUB_PORT},
                                       {"pub-server-pid", required_argument, 0, OPT_PUB_PID},
                                       {"redis-host", required_argument, 0, OPT_REDIS_HOST},
                                       {"redis-port", required_argument, 0, OPT_REDIS_PORT},
                                       {"idle", no_argument, 0, OPT_IDLE},
                                       {"help", no_argument, 0, OPT_HELP},
                                       {0, 0, 0, 0}};
  int o;
  while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
    if (wsc_option(&G.run, &G.ws, o, optarg)) continue;
    switch (o) {
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
      case OPT_HELLO:
        G.wait_hello = true;
        break;
      case OPT_STALL:
        G.stall_timeout = num_arg("stall-timeout", optarg, 0.1, 1e6);
        break;
      case OPT_PROTO:
        if (strcmp(optarg, "sb") == 0)
          G.sio = false;
        else if (strcmp(optarg, "sio") == 0)
          G.sio = true;
        else {
          fprintf(stderr, "fanout: --proto is sb or sio\n");
          return 2;
        }
        break;
      case OPT_PUB_HOST:
        G.pub_host = optarg;
        break;
      case OPT_PUB_PORT:
        G.pub_port = (int)num_arg("pub-port", optarg, 1, 65535);
        break;
      case OPT_PUB_PID:
        G.pub_pid = (int)num_arg("pub-server-pid", optarg, 1, 1 << 30);
        break;
      case OPT_REDIS_HOST:
        G.redis_host = optarg;
        break;
      case OPT_REDIS_PORT:
        G.redis_port = (int)num_arg("redis-port", optarg, 1, 65535);
        break;
      case OPT_IDLE:
        G.idle = true;
        break;
      case OPT_HELP:
        usage(stdout);
        return 0;
      default:
        usage(stderr);
        return 2;
    }
  }
  if (optind < argc || G.run.port < 0) {
    usage(stderr);
    return 2;
  }
  if (G.sio && G.all) {
    fprintf(stderr, "fanout: --proto sio takes --pattern one only\n");
    return 2;
  }
  if (G.sio && G.size < SIO_BODY_MIN) {
    fprintf(stderr, "fanout: --proto sio needs --size >= %d\n", SIO_BODY_MIN);
    return 2;
  }
  if ((G.pub_host || G.pub_pid) && !G.pub_port) {
    fprintf(stderr, "fanout: --pub-host and --pub-server-pid go with --pub-port\n");
    return 2;
  }
  if (G.pub_port && G.all) {
    fprintf(stderr, "fanout: --pub-port is for --pattern one\n");
    return 2;
  }
  if (G.redis_host && !G.redis_port) {
    fprintf(stderr, "fanout: --redis-host goes with --redis-port\n");
    return 2;
  }
  if (!G.redis_host) G.redis_host = "127.0.0.1";
  if (G.all) G.window = 1;
  if (G.sio) {
    G.wait_hello = true; /* nothing can be sent before the namespace is connected */
    if (strcmp(G.run.path, "/") == 0) G.run.path = "/socket.io/?EIO=4&transport=websocket";
  }
  G.ws.nconns = G.all || G.idle ? G.nsubs : G.nsubs + 1;

  G.c = wsc_setup(&G.run, &G.ws, sizeof *G.c);
  if (G.pub_port && !G.idle)
    wsc_alt_target(&G.ws, G.pub_host ? G.pub_host : G.run.host, G.pub_port, G.run.path, G.nsubs);

  /* SEND envelope: kind 4, method 0, status 0, id 0, stream "", offset 0, epoch 0, url "",
   * then the body (its first 24 bytes are filled in per message). */
  if (G.sio) { /* 42["p","<16 hex digits of the sequence number><letters>"] */
    G.msg_len = LIT(SIO_PUB) + G.size + LIT(SIO_END);
    G.msg = malloc(G.msg_len);
    if (!G.msg) die("out of memory", 0);
    memcpy(G.msg, SIO_PUB, LIT(SIO_PUB));
    for (size_t i = 0; i < G.size; i++) G.msg[LIT(SIO_PUB) + i] = (uint8_t)('a' + i % 26);
    memcpy(G.msg + LIT(SIO_PUB) + G.size, SIO_END, LIT(SIO_END));
  } else {
    G.msg_len = ENV_HDR + G.size;
    G.msg = calloc(1, G.msg_len);
    if (!G.msg) die("out of memory", 0);
    G.msg[0] = 4;
    for (size_t i = BODY_MIN; i < G.size; i++) G.msg[ENV_HDR + i] = (uint8_t)('a' + i % 26);
  }

  h_reset(&G.h_last);
  h_reset(&G.h_each);
  G.slots = calloc(G.all ? 2 * (size_t)G.ws.nconns : (size_t)G.window, sizeof *G.slots);
  if (!G.slots) die("out of memory", 0);
  if (!G.all && !G.idle) G.pub = &G.c[G.nsubs];
  if (G.idle) G.run.interrupted = idle_exit;
  uv_timer_init(G.ws.loop, &G.t_watch);

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
