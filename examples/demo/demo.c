/*
 * demo — what `make demo` runs: a chat with rooms, served at http://localhost:8080.
 *
 * The page (examples/demo/public) and the JavaScript client (client/) are static files; the
 * page opens one WebSocket and uses the same routes as curl can:
 *
 *   GET    /api/rooms                        the rooms and their member counts
 *   GET    /api/rooms/:roomId/messages       the last 100 messages and the room stream's position
 *   POST   /api/rooms/:roomId/messages       post (body: the text) → a push to the room's group
 *   PUT    /api/rooms/:roomId/members/me     join the room's group (WebSocket only)
 *   DELETE /api/rooms/:roomId/members/me     leave it
 *   GET    /api/online                       who is online (identities, one per person)
 *
 * Pushes: POST /api/rooms/:roomId/messages {"from","text","at"} to the room's group (recorded:
 * a tab that was offline gets what it missed), and PUT /api/online [names] to every
 * connection whenever someone comes or goes (unrecorded: the page reloads it on resume).
 *
 * Auth, demo-grade: the upgrade must carry ?name=<1..32 of [A-Za-z0-9_-]>, which becomes the
 * identity (a real application verifies a token: see examples/rooms and sb_jwt_upgrade_cb).
 * Writes over plain HTTP take the name from the X-Name header.
 *
 *   demo [--host H] [--port P] [--public DIR] [--client DIR]
 * Prints the URL; Ctrl-C (SIGINT) or SIGTERM stops it gracefully.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "switchboard.h"

#ifndef SB_DEMO_PUBLIC
#define SB_DEMO_PUBLIC "examples/demo/public"
#endif
#ifndef SB_DEMO_CLIENT
#define SB_DEMO_CLIENT "client"
#endif

#define MAX_ROOMS 32
#define KEEP 100
#define MAX_TEXT 1000
#define MAX_ONLINE 256

typedef struct message {
  char from[33];
  char text[MAX_TEXT + 1];
  int64_t at; /* ms since the epoch */
} message;

typedef struct room {
  char id[33];
  message *last; /* KEEP of them, a ring */
  unsigned count;
} room;

typedef struct person {
  char name[33];
  unsigned tabs;
} person;

static sb_hub *hub;
static room rooms[MAX_ROOMS];
static size_t nrooms;
static person online[MAX_ONLINE];
static size_t nonline;
static uv_signal_t sigint, sigterm;

/* ---- small helpers -------------------------------------------------------------------- */

static int valid_name(const char *s, size_t max) {
  size_t n = 0;
  for (; s[n]; n++) {
    char ch = s[n];
    if (!((ch >= 'a' && ch <= 'z') || (ch >= 'A' && ch <= 'Z') || (ch >= '0' && ch <= '9') ||
          ch == '_' || ch == '-'))
      return 0;
  }
  return n >= 1 && n <= max;
}

/* Appends s as a JSON string to out[*n..cap). */
static void json_str(char *out, size_t cap, size_t *n, const char *s) {
  if (*n + 2 >= cap) return;
  out[(*n)++] = '"';
  for (; *s && *n + 8 < cap; s++) {
    unsigned char ch = (unsigned char)*s;
    if (ch == '"' || ch == '\\') {
      out[(*n)++] = '\\';
      out[(*n)++] = (char)ch;
    } else if (ch < 0x20) {
      *n += (size_t)snprintf(out + *n, cap - *n, "\\u%04x", ch);
    } else {
      out[(*n)++] = (char)ch;
    }
  }
  out[(*n)++] = '"';
  out[*n] = '\0';
}

static void reply_json(sb_req *req, uint16_t status, const char *json, size_t n) {
  sb_respond(req, status, json, n);
}

static room *find_room(const char *id, int create) {
  for (size_t i = 0; i < nrooms; i++) {
    if (strcmp(rooms[i].id, id) == 0) return &rooms[i];
  }
  if (!create || nrooms == MAX_ROOMS || !valid_name(id, 32)) return NULL;
  room *r = &rooms[nrooms];
  memset(r, 0, sizeof(*r));
  r->last = calloc(KEEP, sizeof(message));
  if (!r->last) return NULL;
  snprintf(r->id, sizeof(r->id), "%s", id);
  nrooms++;
  return r;
}

static void group_of(char *out, size_t cap, const char *room_id) {
  snprintf(out, cap, "room:%.32s", room_id);
}

/* Who sent it: the identity from the upgrade, or over plain HTTP the X-Name header. */
static const char *sender(sb_req *req) {
  const char *id = sb_req_identity(req);
  if (*id) return id;
  const char *h = sb_req_header(req, "X-Name");
  return h && valid_name(h, 32) ? h : "";
}

/* ---- presence ------------------------------------------------------------------------- */

static size_t online_json(char *out, size_t cap) {
  size_t n = 0;
  out[n++] = '[';
  for (size_t i = 0; i < nonline; i++) {
    if (i) out[n++] = ',';
    json_str(out, cap, &n, online[i].name);
  }
  out[n++] = ']';
  out[n] = '\0';
  return n;
}

static void announce_online(void) {
  char body[MAX_ONLINE * 40 + 8];
  size_t n = online_json(body, sizeof(body));
  sb_hub_broadcast(hub, SB_METHOD_PUT, "/api/online", body, n);
}

static void on_open(sb_conn *c, void *user) {
  (void)user;
  const char *name = sb_conn_identity(c);
  for (size_t i = 0; i < nonline; i++) {
    if (strcmp(online[i].name, name) == 0) {
      online[i].tabs++;
      return;
    }
  }
  if (nonline == MAX_ONLINE) return;
  snprintf(online[nonline].name, sizeof(online[0].name), "%s", name);
  online[nonline++].tabs = 1;
  announce_online();
}

static void on_close(sb_conn *c, int code, const char *reason, size_t len, void *user) {
  (void)code;
  (void)reason;
  (void)len;
  (void)user;
  const char *name = sb_conn_identity(c);
  for (size_t i = 0; i < nonline; i++) {
    if (strcmp(online[i].name, name) != 0) continue;
    if (--online[i].tabs == 0) {
      online[i] = online[--nonline];
      announce_online();
    }
    return;
  }
}

/* ---- the upgrade ---------------------------------------------------------------------- */

static void name_auth(sb_upgrade *up, void *user) {
  (void)user;
  const char *name = sb_upgrade_query(up, "name");
  if (!name || !valid_name(name, 32)) {
    sb_upgrade_reject(up, 401, NULL, 0, "choose a name: 1 to 32 of A-Z a-z 0-9 _ -");
    return;
  }
  sb_upgrade_accept(up, name, NULL, 0);
}

/* ---- routes --------------------------------------------------------------------------- */

static void list_rooms(sb_req *req, void *user) {
  (void)user;
  char out[MAX_ROOMS * 80 + 8], group[64];
  size_t n = 0;
  out[n++] = '[';
  for (size_t i = 0; i < nrooms; i++) {
    group_of(group, sizeof(group), rooms[i].id);
    n += (size_t)snprintf(out + n, sizeof(out) - n, "%s{\"id\":", i ? "," : "");
    json_str(out, sizeof(out), &n, rooms[i].id);
    n += (size_t)snprintf(out + n, sizeof(out) - n, ",\"members\":%zu}",
                          sb_hub_group_size(hub, group));
  }
  n += (size_t)snprintf(out + n, sizeof(out) - n, "]");
  reply_json(req, 200, out, n);
}

static void get_messages(sb_req *req, void *user) {
  (void)user;
  room *r = find_room(sb_req_param(req, "roomId"), 1);
  if (!r) return sb_fail(req, 404, "no such room");
  char group[64];
  group_of(group, sizeof(group), r->id);
  uint64_t offset = 0, epoch = 0;
  sb_hub_position(hub, group, &offset, &epoch);
  size_t cap = KEEP * (MAX_TEXT * 6 + 128) + 128, n;
  char *out = malloc(cap);
  if (!out) return sb_fail(req, 503, "out of memory");
  /* The position lets the page match this history with the pushes it gets from now on: a
   * push at or below `offset` is already in the list. The epoch is 16 hex digits, as the
   * JavaScript client shows a push's epoch (a u64 does not fit a JavaScript number). */
  n = (size_t)snprintf(out, cap, "{\"room\":");
  json_str(out, cap, &n, r->id);
  n += (size_t)snprintf(out + n, cap - n,
                        ",\"stream\":\"g:%s\",\"offset\":%" PRIu64 ",\"epoch\":\"%016" PRIx64
                        "\",\"messages\":[",
                        group, offset, epoch);
  unsigned first = r->count > KEEP ? r->count - KEEP : 0;
  for (unsigned i = first; i < r->count; i++) {
    const message *m = &r->last[i % KEEP];
    n += (size_t)snprintf(out + n, cap - n, "%s{\"from\":", i > first ? "," : "");
    json_str(out, cap, &n, m->from);
    n += (size_t)snprintf(out + n, cap - n, ",\"text\":");
    json_str(out, cap, &n, m->text);
    n += (size_t)snprintf(out + n, cap - n, ",\"at\":%" PRId64 "}", m->at);
  }
  n += (size_t)snprintf(out + n, cap - n, "]}");
  reply_json(req, 200, out, n);
  free(out);
}

static void post_message(sb_req *req, void *user) {
  (void)user;
  const char *from = sender(req);
  if (!*from) return sb_fail(req, 401, "who are you? (the X-Name header over HTTP)");
  size_t len;
  const char *text = sb_req_body(req, &len);
  if (len == 0 || len > MAX_TEXT || memchr(text, '\0', len))
    return sb_fail(req, 422, "a message is 1 to 1000 bytes of text");
  room *r = find_room(sb_req_param(req, "roomId"), 1);
  if (!r) return sb_fail(req, 404, "no such room");
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  message *m = &r->last[r->count++ % KEEP];
  snprintf(m->from, sizeof(m->from), "%s", from);
  memcpy(m->text, text, len);
  m->text[len] = '\0';
  m->at = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
  static char push[MAX_TEXT * 6 + 256];
  char group[64], url[96];
  size_t n = (size_t)snprintf(push, sizeof(push), "{\"from\":");
  json_str(push, sizeof(push), &n, m->from);
  n += (size_t)snprintf(push + n, sizeof(push) - n, ",\"text\":");
  json_str(push, sizeof(push), &n, m->text);
  n += (size_t)snprintf(push + n, sizeof(push) - n, ",\"at\":%" PRId64 "}", m->at);
  group_of(group, sizeof(group), r->id);
  snprintf(url, sizeof(url), "/api/rooms/%s/messages", r->id);
  if (sb_hub_publish(hub, group, SB_METHOD_POST, url, push, n) != 0)
    return sb_fail(req, 503, "publish failed");
  char out[32];
  int k = snprintf(out, sizeof(out), "{\"seq\":%u}", r->count);
  reply_json(req, 201, out, (size_t)k);
}

static void join_room(sb_req *req, void *user) {
  (void)user;
  sb_conn *c = sb_req_conn(req);
  if (!c) return sb_fail(req, 400, "joining is for WebSocket connections");
  room *r = find_room(sb_req_param(req, "roomId"), 1);
  if (!r) return sb_fail(req, 404, "no such room");
  char group[64];
  group_of(group, sizeof(group), r->id);
  if (sb_conn_join(c, group) != 0) return sb_fail(req, 500, "join failed");
  sb_respond(req, 204, NULL, 0);
}

static void leave_room(sb_req *req, void *user) {
  (void)user;
  sb_conn *c = sb_req_conn(req);
  char group[64];
  group_of(group, sizeof(group), sb_req_param(req, "roomId"));
  if (c) sb_conn_leave(c, group);
  sb_respond(req, 204, NULL, 0);
}

static void get_online(sb_req *req, void *user) {
  (void)user;
  char body[MAX_ONLINE * 40 + 8];
  size_t n = online_json(body, sizeof(body));
  reply_json(req, 200, body, n);
}

/* ---- main ----------------------------------------------------------------------------- */

static void on_signal_closed(uv_handle_t *h) { (void)h; }

static void on_shutdown(sb_server *s, void *user) {
  (void)s;
  (void)user;
  uv_close((uv_handle_t *)&sigint, on_signal_closed);
  uv_close((uv_handle_t *)&sigterm, on_signal_closed);
}

static void on_signal(uv_signal_t *h, int signum) {
  (void)h;
  (void)signum;
  fprintf(stderr, "demo: stopping\n");
  sb_server_shutdown(sb_hub_server(hub), on_shutdown, NULL);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *pub = SB_DEMO_PUBLIC, *client = SB_DEMO_CLIENT;
  int port = 8080;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--host")) host = argv[i + 1];
    else if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--public")) pub = argv[i + 1];
    else if (!strcmp(argv[i], "--client")) client = argv[i + 1];
    else {
      fprintf(stderr, "usage: demo [--host H] [--port P] [--public DIR] [--client DIR]\n");
      return 2;
    }
  }
  uv_loop_t *loop = uv_default_loop();
  sb_server_options so;
  sb_server_options_init(&so);
  so.on_upgrade = name_auth;
  so.idle_timeout_ms = 15000; /* the page notices a dead connection within 30 s */
  sb_hub_options ho;
  sb_hub_options_init(&ho);
  ho.on_open = on_open;
  ho.on_close = on_close;
  sb_app *app;
  int r = sb_hub_new(&hub, loop, &so, &ho);
  if (r == 0) r = sb_app_new(&app, hub);
  if (r == 0) r = sb_app_static(app, "/client", client);
  if (r == 0) r = sb_app_static(app, "/", pub);
  if (r != 0) {
    fprintf(stderr, "demo: %s (the page in %s, the client in %s)\n", sb_strerror(r), pub, client);
    return 1;
  }
  sb_routes *api;
  if (sb_routes_new(&api, app) != 0) return 1;
  sb_routes_get(api, "/rooms", list_rooms, NULL);
  sb_routes_get(api, "/rooms/:roomId/messages", get_messages, NULL);
  sb_routes_post(api, "/rooms/:roomId/messages", post_message, NULL);
  sb_routes_put(api, "/rooms/:roomId/members/me", join_room, NULL);
  sb_routes_delete(api, "/rooms/:roomId/members/me", leave_room, NULL);
  sb_routes_get(api, "/online", get_online, NULL);
  sb_app_mount(app, "/api", api);
  r = sb_server_listen(sb_hub_server(hub), host, port);
  if (r != 0) {
    fprintf(stderr, "demo: listen on %s:%d: %s\n", host, port, sb_strerror(r));
    return 1;
  }
  uv_signal_init(loop, &sigint);
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  printf("listening on %s:%d\n", host, sb_server_port(sb_hub_server(hub)));
  printf("open http://%s:%d/ in a browser (Ctrl-C stops the demo)\n",
         strcmp(host, "127.0.0.1") == 0 ? "localhost" : host, sb_server_port(sb_hub_server(hub)));
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  r = sb_app_free(app);
  if (r == 0) r = sb_hub_free(hub);
  for (size_t i = 0; i < nrooms; i++) free(rooms[i].last);
  uv_loop_close(loop);
  return r == 0 ? 0 : 1;
}
