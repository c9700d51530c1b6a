/*
 * broadcast — every connection joins the group "all" on open, and every message a client
 * sends (a SEND or REQUEST envelope, docs/PROTOCOL.md) is published to "all" as the body of a
 * push: through the same path as any group message, recorded in the group's history (so a
 * client that reconnects and resumes gets what it missed), and delivered to every member, the
 * sender included. Requests are answered 202 once published.
 *
 * One url is different: a message whose url is /to/<connection id> goes to that connection
 * alone, as a push on its direct stream ("c:<id>", recorded and replayed like a group's) whose
 * url is /from/<sender's id>, so that it can answer. With --redis the connection may be on any
 * node of the cluster. A request is answered once the outcome is known: 202 "sent", or 404
 * "not found" when no session has that id (a closed one that can still be resumed counts: it
 * gets the message when it resumes), or 500/503 with the reason.
 *
 * And a GET request whose url is /nodes is answered, not published: 200 with the live nodes of
 * the cluster as JSON, [{"id":..,"url":..}] (each node's --public-url; without --redis this
 * node alone, {"id":"local","url":""}), or 503 while Redis is unreachable. It is the list a
 * client picks a node from (its discovery), over the WebSocket: this example serves no plain
 * HTTP.
 *
 *   broadcast [PORT] [--host H] [--port P] [--history-max N] [--history-age-ms N]
 *             [--session-ttl-ms N] [--max-replay N] [--max-queued-bytes N]
 *             [--idle-timeout-ms N] [--redis URL [--node-id ID] [--public-url URL]]
 * Port 0 picks a free port. Prints "listening on HOST:PORT" once bound; SIGINT/SIGTERM stop it
 * gracefully (close 1001 to every client).
 *
 * --redis redis://HOST:PORT (or unix:/path) makes this process one node of a cluster: every
 * node started with the same Redis shares the group "all", the direct streams and the sessions
 * (a client resumes on any node). It waits up to 5 s for Redis before it listens, and stops
 * with a message if Redis does not answer. --node-id names the node (default: random), and
 * --public-url is the url clients reach it at (listed by /nodes; default none, "").
 * Without --redis it is a single node with the memory engine.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "../common/answer.h"
#include "../common/cluster.h"
#include "../common/strbuf.h"
#include "switchboard.h"

typedef struct app {
  sb_hub *hub;
  uv_signal_t sigint, sigterm;
} app;

/* A /to/ or /nodes request waiting for its outcome. The sender is found again by its id when the
 * outcome comes (it may have left meanwhile: then nobody is answered). */
typedef struct pending {
  sb_hub *hub;
  char sender[32];
  uint32_t request; /* 0 for a SEND: nothing to answer */
} pending;

static void answer(sb_conn *c, uint32_t id, uint16_t status, const char *text) {
  if (c && id) sb_hub_respond(c, id, status, text, strlen(text));
}

static void on_sent(int status, void *user) {
  pending *p = user;
  sb_conn *c = sb_hub_find(p->hub, p->sender);
  if (status == 0) answer(c, p->request, 202, "sent");
  else if (status == SB_ENOTFOUND) answer(c, p->request, 404, "not found");
  else answer(c, p->request, status == SB_EIO ? 503 : 500, sb_strerror(status));
  free(p);
}

#define TO_PREFIX "/to/"

/* A message to one connection: /to/<id>. The id is at most 63 bytes (22 for the hub's own),
 * without a NUL; any other is an id no session has. */
static void send_to_one(app *a, sb_conn *c, const sb_envelope *env) {
  uint32_t request = env->kind == SB_KIND_REQUEST ? env->id : 0;
  const char *id = env->url + (sizeof TO_PREFIX - 1);
  size_t n = env->url_len - (sizeof TO_PREFIX - 1);
  char target[64];
  if (n == 0 || n >= sizeof target || memchr(id, '\0', n))
    return answer(c, request, 404, "not found");
  memcpy(target, id, n);
  target[n] = '\0';
  char from[sizeof "/from/" + 32];
  snprintf(from, sizeof from, "/from/%s", sb_conn_id(c));
  pending *p = calloc(1, sizeof *p);
  if (!p) return answer(c, request, 500, sb_strerror(SB_ENOMEM));
  p->hub = a->hub;
  snprintf(p->sender, sizeof p->sender, "%s", sb_conn_id(c));
  p->request = request;
  int r = sb_hub_send_to_cb(a->hub, target, (sb_method)env->method, from, env->body,
                            env->body_len, on_sent, p);
  if (r != 0) {
    free(p);
    answer(c, request, 500, sb_strerror(r));
  }
}

#define NODES_URL "/nodes"

/* The answer to GET /nodes, when the engine has the list (a JSON string per id and url: both
 * come from Redis, so they are escaped, and the answer is bounded). */
static void on_nodes(int status, const sb_node *nodes, size_t n, void *user) {
  pending *p = user;
  sb_conn *c = sb_hub_find(p->hub, p->sender);
  if (status != 0) {
    answer(c, p->request, status == SB_EIO ? 503 : 500, sb_strerror(status));
    free(p);
    return;
  }
  strbuf b;
  strbuf_heap(&b, 1 << 20);
  nodes_json(&b, nodes, n);
  if (b.overflow) answer(c, p->request, 500, "the node list does not fit");
  else if (c) sb_hub_respond(c, p->request, 200, b.data, b.len);
  strbuf_free(&b);
  free(p);
}

static void get_nodes(app *a, sb_conn *c, uint32_t request) {
  pending *p = calloc(1, sizeof *p);
  if (!p) return answer(c, request, 500, sb_strerror(SB_ENOMEM));
  p->hub = a->hub;
  snprintf(p->sender, sizeof p->sender, "%s", sb_conn_id(c));
  p->request = request;
  int r = sb_hub_nodes(a->hub, on_nodes, p);
  if (r != 0) {
    free(p);
    answer(c, request, r == SB_EIO ? 503 : 500, sb_strerror(r));
  }
}

static void on_open(sb_conn *c, void *user) {
  (void)user;
  sb_conn_join(c, "all");
}

static void on_message(sb_conn *c, const sb_envelope *env, void *user) {
  app *a = user;
  if (env->url_len >= sizeof TO_PREFIX - 1 && !memcmp(env->url, TO_PREFIX, sizeof TO_PREFIX - 1))
    return send_to_one(a, c, env);
  if (env->kind == SB_KIND_REQUEST && env->method == SB_METHOD_GET &&
      env->url_len == sizeof NODES_URL - 1 && !memcmp(env->url, NODES_URL, env->url_len))
    return get_nodes(a, c, env->id);
  int r = sb_hub_publish(a->hub, "all", (sb_method)env->method, NULL, env->body, env->body_len);
  if (env->kind == SB_KIND_REQUEST) {
    const char *text = r == 0 ? "published" : sb_strerror(r);
    sb_hub_respond(c, env->id, r == 0 ? 202 : 500, text, strlen(text));
  }
}

static void on_signal_closed(uv_handle_t *h) { (void)h; }

static void on_shutdown(sb_server *s, void *user) {
  app *a = user;
  (void)s;
  uv_close((uv_handle_t *)&a->sigint, on_signal_closed);
  uv_close((uv_handle_t *)&a->sigterm, on_signal_closed);
}

static void on_signal(uv_signal_t *h, int signum) {
  app *a = h->data;
  (void)signum;
  sb_server_shutdown(sb_hub_server(a->hub), on_shutdown, a);
}

static unsigned long number(const char *flag, const char *v) {
  char *end;
  unsigned long n = strtoul(v, &end, 10);
  if (!*v || *end) {
    fprintf(stderr, "broadcast: %s needs a number, got '%s'\n", flag, v);
    exit(2);
  }
  return n;
}

int main(int argc, char **argv) {
  app a;
  memset(&a, 0, sizeof(a));
  sb_server_options so;
  sb_server_options_init(&so);
  sb_hub_options ho;
  sb_hub_options_init(&ho);
  const char *host = "127.0.0.1", *redis_url = NULL, *node_id = NULL, *public_url = NULL;
  int port = 8080;
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i];
    if (f[0] != '-') {
      port = (int)number("port", f);
      continue;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "broadcast: %s needs a value\n", f);
      return 2;
    }
    const char *v = argv[++i];
    if (!strcmp(f, "--host")) host = v;
    else if (!strcmp(f, "--port")) port = (int)number(f, v);
    else if (!strcmp(f, "--history-max")) ho.history_max = number(f, v);
    else if (!strcmp(f, "--history-age-ms")) ho.history_age_ms = (unsigned)number(f, v);
    else if (!strcmp(f, "--session-ttl-ms")) ho.session_ttl_ms = (unsigned)number(f, v);
    else if (!strcmp(f, "--max-replay")) ho.max_replay = number(f, v);
    else if (!strcmp(f, "--max-queued-bytes")) so.max_queued_bytes = number(f, v);
    else if (!strcmp(f, "--idle-timeout-ms")) so.idle_timeout_ms = (unsigned)number(f, v);
    else if (!strcmp(f, "--redis")) redis_url = v;
    else if (!strcmp(f, "--node-id")) node_id = v;
    else if (!strcmp(f, "--public-url")) public_url = v;
    else {
      fprintf(stderr,
              "broadcast: unknown option %s\n"
              "usage: broadcast [PORT] [--host H] [--port P] [--history-max N] "
              "[--history-age-ms N]\n"
              "                 [--session-ttl-ms N] [--max-replay N] [--max-queued-bytes N]\n"
              "                 [--idle-timeout-ms N] [--redis URL [--node-id ID] "
              "[--public-url URL]]\n",
              f);
      return 2;
    }
  }
  ho.on_open = on_open;
  ho.on_message = on_message;
  ho.user = &a;

  uv_loop_t *loop = uv_default_loop();
  if ((node_id || public_url) && !redis_url) {
    fprintf(stderr,
            "broadcast: --node-id and --public-url are for a cluster: give --redis URL too\n");
    return 2;
  }
  sb_engine *engine = NULL;
  if (redis_url &&
      cluster_engine_start(&engine, loop, "broadcast", redis_url, node_id, public_url) != 0)
    return 1;
  ho.engine = engine;
  int r = sb_hub_new(&a.hub, loop, &so, &ho);
  if (r == 0) r = sb_server_listen(sb_hub_server(a.hub), host, port);
  if (r != 0) {
    fprintf(stderr, "broadcast: cannot listen on %s:%d: %s (%s)\n", host, port, sb_strerror(r),
            a.hub ? sb_server_last_error(sb_hub_server(a.hub)) : "");
    return 1;
  }
  uv_signal_init(loop, &a.sigint);
  uv_signal_init(loop, &a.sigterm);
  a.sigint.data = a.sigterm.data = &a;
  uv_signal_start(&a.sigint, on_signal, SIGINT);
  uv_signal_start(&a.sigterm, on_signal, SIGTERM);
  printf("listening on %s:%d\n", host, sb_server_port(sb_hub_server(a.hub)));
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  r = sb_hub_free(a.hub);
  if (r == 0) cluster_engine_stop(engine, loop); /* never under a hub that still uses it */
  else fprintf(stderr, "broadcast: freeing the hub: %s\n", sb_strerror(r));
  uv_loop_close(loop);
  return r == 0 ? 0 : 1;
}
