/*
 * rest-server — the Switchboard side of the REST round-trip benchmark (bench/README.md,
 * section 6): a hub with an app (the rest layer) that routes one resource,
 *
 *   GET /items/:id  ->  200 {"id":"<id>","name":"item <id>","price":42}
 *
 * through the same path as any application's request: the envelope is decoded, the router
 * matches the path and percent-decodes the parameter, the handler builds the JSON body and
 * sb_respond() frames the RESPONSE envelope. Any other path gets the app's default 404 and any
 * other method 405. Its peer is bench/node-socketio.mjs (Socket.IO, an event with an ack doing
 * the same work); both are driven by bench/restgen.c.
 *
 *   rest-server [--host H] [--port P]
 * Port 0 picks a free port (the default is 8080). Prints "listening on HOST:PORT" once bound;
 * SIGINT or SIGTERM shuts it down gracefully (close 1001 to every client), then it exits 0.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "switchboard.h"

typedef struct app {
  sb_hub *hub;
  sb_app *rest;
  uv_signal_t sigint, sigterm;
} app;

/* Appends the JSON string escape of s (RFC 8259 §7: '"', '\\' and control characters) to
 * out[*n..cap); false if it does not fit. The id is whatever the client put in the path,
 * decoded, so it may hold any byte; UTF-8 passes through unchanged. */
static int json_escape(char *out, size_t *n, size_t cap, const char *s) {
  static const char hex[] = "0123456789abcdef";
  size_t i = *n;
  for (; *s; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      if (cap - i < 2) return 0;
      out[i++] = '\\';
      out[i++] = (char)ch;
    } else if (ch < 0x20) {
      if (cap - i < 6) return 0;
      memcpy(out + i, "\\u00", 4);
      out[i + 4] = hex[ch >> 4];
      out[i + 5] = hex[ch & 15];
      i += 6;
    } else {
      if (cap - i < 1) return 0;
      out[i++] = (char)ch;
    }
  }
  *n = i;
  return 1;
}

static int append(char *out, size_t *n, size_t cap, const char *s) {
  size_t len = strlen(s);
  if (cap - *n < len) return 0;
  memcpy(out + *n, s, len);
  *n += len;
  return 1;
}

/* GET /items/:id. The body is built on the stack and copied by sb_respond into the frame. */
static void get_item(sb_req *req, void *user) {
  (void)user;
  const char *id = sb_req_param(req, "id");
  char body[1024];
  size_t n = 0;
  int ok = append(body, &n, sizeof body, "{\"id\":\"") && json_escape(body, &n, sizeof body, id) &&
           append(body, &n, sizeof body, "\",\"name\":\"item ") &&
           json_escape(body, &n, sizeof body, id) &&
           append(body, &n, sizeof body, "\",\"price\":42}");
  if (!ok) {
    sb_fail(req, 414, "id too long");
    return;
  }
  sb_respond(req, 200, body, n);
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
    fprintf(stderr, "rest-server: %s needs a number, got '%s'\n", flag, v);
    exit(2);
  }
  return n;
}

int main(int argc, char **argv) {
  app a;
  memset(&a, 0, sizeof(a));
  const char *host = "127.0.0.1";
  int port = 8080;
  for (int i = 1; i < argc; i++) {
    const char *f = argv[i];
    if (!strcmp(f, "--help") || !strcmp(f, "-h")) {
      printf("usage: rest-server [--host H] [--port P]\n");
      return 0;
    }
    if (i + 1 >= argc) {
      fprintf(stderr, "rest-server: %s needs a value\n", f);
      return 2;
    }
    const char *v = argv[++i];
    if (!strcmp(f, "--host")) {
      host = v;
    } else if (!strcmp(f, "--port")) {
      unsigned long p = number(f, v);
      if (p > 65535) {
        fprintf(stderr, "rest-server: --port must be 0..65535\n");
        return 2;
      }
      port = (int)p;
    } else {
      fprintf(stderr, "rest-server: unknown option %s\n", f);
      return 2;
    }
  }

  sb_server_options so;
  sb_server_options_init(&so);
  sb_hub_options ho;
  sb_hub_options_init(&ho);
  uv_loop_t *loop = uv_default_loop();
  int r = sb_hub_new(&a.hub, loop, &so, &ho);
  if (r == 0) r = sb_app_new(&a.rest, a.hub);
  if (r == 0) r = sb_app_get(a.rest, "/items/:id", get_item, NULL);
  if (r != 0) {
    fprintf(stderr, "rest-server: cannot set up the app: %s\n", sb_strerror(r));
    return 1;
  }
  r = sb_server_listen(sb_hub_server(a.hub), host, port);
  if (r != 0) {
    fprintf(stderr, "rest-server: cannot listen on %s:%d: %s (%s)\n", host, port, sb_strerror(r),
            sb_server_last_error(sb_hub_server(a.hub)));
    return 1;
  }
  uv_signal_init(loop, &a.sigint);
  uv_signal_init(loop, &a.sigterm);
  a.sigint.data = a.sigterm.data = &a;
  uv_signal_start(&a.sigint, on_signal, SIGINT);
  uv_signal_start(&a.sigterm, on_signal, SIGTERM);
  /* Only now say we are ready: a signal that arrives after this line is handled. */
  printf("listening on %s:%d\n", host, sb_server_port(sb_hub_server(a.hub)));
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  /* Every request was answered synchronously, so none is pending: the app frees. */
  r = sb_app_free(a.rest);
  if (r == 0) r = sb_hub_free(a.hub);
  uv_loop_close(loop);
  return r == 0 ? 0 : 1;
}
