/*
 * echo — echoes every text and binary message back with the same opcode.
 *
 * This is the server that the conformance tests and the benchmarks run against.
 *   echo [PORT] [--host H] [--port P] [--handshake-timeout-ms N] [--idle-timeout-ms N]
 *        [--close-timeout-ms N] [--max-message-bytes N] [--max-header-bytes N]
 *        [--max-queued-bytes N] [--subprotocols a,b,...] [--origins o1,o2,...]
 * Port 0 picks a free port. Once bound it prints "listening on HOST:PORT". SIGINT or SIGTERM
 * shuts it down gracefully: every client gets close 1001, then the process exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "switchboard.h"

typedef struct app {
  sb_server *server;
  uv_signal_t sigint, sigterm;
  char *protocols[16];
  size_t nprotocols;
  char *origins_list;
} app;

static void on_message(sb_conn *c, sb_opcode op, const void *data, size_t len, void *user) {
  (void)user;
  sb_conn_send(c, op, data, len);
}

static int on_subprotocol(const char *const *offered, size_t n, void *user) {
  app *a = user;
  for (size_t i = 0; i < n; i++) {
    for (size_t k = 0; k < a->nprotocols; k++) {
      if (strcmp(offered[i], a->protocols[k]) == 0) return (int)i;
    }
  }
  return -1;
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
  sb_server_shutdown(a->server, on_shutdown, a);
}

static unsigned long number(const char *flag, const char *v) {
  char *end;
  unsigned long n = strtoul(v, &end, 10);
  if (!*v || *end) {
    fprintf(stderr, "echo: %s needs a number, got '%s'\n", flag, v);
    exit(2);
  }
  return n;
}

int main(int argc, char **argv) {
  app a;
  memset(&a, 0, sizeof(a));
  sb_server_options o;
  sb_server_options_init(&o);
  const char *host = "127.0.0.1";
  int port = 8080;
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (f[0] != '-') {
      port = (int)number("port", f);
      continue;
    }
    if (!v) {
      fprintf(stderr, "echo: %s needs a value\n", f);
      return 2;
    }
    i++;
    if (!strcmp(f, "--host")) host = v;
    else if (!strcmp(f, "--port")) port = (int)number(f, v);
    else if (!strcmp(f, "--handshake-timeout-ms")) o.handshake_timeout_ms = (unsigned)number(f, v);
    else if (!strcmp(f, "--idle-timeout-ms")) o.idle_timeout_ms = (unsigned)number(f, v);
    else if (!strcmp(f, "--close-timeout-ms")) o.close_timeout_ms = (unsigned)number(f, v);
    else if (!strcmp(f, "--max-message-bytes")) o.max_message_bytes = number(f, v);
    else if (!strcmp(f, "--max-header-bytes")) o.max_header_bytes = number(f, v);
    else if (!strcmp(f, "--max-queued-bytes")) o.max_queued_bytes = number(f, v);
    else if (!strcmp(f, "--subprotocols")) {
      char *list = strdup(v);
      for (char *t = strtok(list, ","); t && a.nprotocols < 16; t = strtok(NULL, ","))
        a.protocols[a.nprotocols++] = t;
      o.on_subprotocol = on_subprotocol;
    } else if (!strcmp(f, "--origins")) {
      /* comma-separated allow-list, e.g. https://a.example,https://b.example */
      static const char *origins[16];
      char *list = a.origins_list = strdup(v);
      size_t n = 0;
      for (char *t = strtok(list, ","); t && n < 16; t = strtok(NULL, ",")) origins[n++] = t;
      o.allowed_origins = origins;
      o.allowed_origins_count = n;
    } else {
      fprintf(stderr, "echo: unknown option %s\n", f);
      return 2;
    }
  }
  o.on_message = on_message;
  o.user = &a;

  uv_loop_t *loop = uv_default_loop();
  int r = sb_server_new(&a.server, loop, &o);
  if (r == 0) r = sb_server_listen(a.server, host, port);
  if (r != 0) {
    fprintf(stderr, "echo: cannot listen on %s:%d: %s (%s)\n", host, port, sb_strerror(r),
            a.server ? sb_server_last_error(a.server) : "");
    return 1;
  }
  uv_signal_init(loop, &a.sigint);
  uv_signal_init(loop, &a.sigterm);
  a.sigint.data = a.sigterm.data = &a;
  uv_signal_start(&a.sigint, on_signal, SIGINT);
  uv_signal_start(&a.sigterm, on_signal, SIGTERM);
  /* Only now say we are ready: a signal that arrives after this line is handled. */
  printf("listening on %s:%d\n", host, sb_server_port(a.server));
  fflush(stdout);

  uv_run(loop, UV_RUN_DEFAULT);
  r = sb_server_free(a.server);
  uv_loop_close(loop);
  if (a.nprotocols) free(a.protocols[0]);
  free(a.origins_list);
  return r == 0 ? 0 : 1;
}
