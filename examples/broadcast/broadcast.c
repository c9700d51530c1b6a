/*
 * broadcast — every connection joins the group "all" on open, and every message a client
 * sends (a SEND or REQUEST envelope, docs/PROTOCOL.md) is published to "all" as the body of a
 * push: through the same path as any group message, recorded in the group's history (so a
 * client that reconnects and resumes gets what it missed), and delivered to every member, the
 * sender included. Requests are answered 202 once published.
 *
 *   broadcast [PORT] [--host H] [--port P] [--history-max N] [--history-age-ms N]
 *             [--session-ttl-ms N] [--max-replay N] [--max-queued-bytes N]
 *             [--idle-timeout-ms N]
 * Port 0 picks a free port. Prints "listening on HOST:PORT" once bound; SIGINT/SIGTERM stop it
 * gracefully (close 1001 to every client).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "switchboard.h"

typedef struct app {
  sb_hub *hub;
  uv_signal_t sigint, sigterm;
} app;

static void on_open(sb_conn *c, void *user) {
  (void)user;
  sb_conn_join(c, "all");
}

static void on_message(sb_conn *c, const sb_envelope *env, void *user) {
  app *a = user;
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
  const char *host = "127.0.0.1";
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
    else {
      fprintf(stderr, "broadcast: unknown option %s\n", f);
      return 2;
    }
  }
  ho.on_open = on_open;
  ho.on_message = on_message;
  ho.user = &a;

  uv_loop_t *loop = uv_default_loop();
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
  uv_loop_close(loop);
  return r == 0 ? 0 : 1;
}
