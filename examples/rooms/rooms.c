/*
 * rooms — a small chat API with Switchboard's REST layer, meant to be copied.
 *
 * Over one WebSocket (docs/PROTOCOL.md) a client calls routes like REST endpoints and gets
 * pushes for the rooms it joined:
 *
 *   GET    /me                          who the connection is  → {"identity":"alice"}
 *   GET    /rooms                       the rooms              → [{"id":"lobby","members":2}]
 *   GET    /rooms/:roomId/messages      the last messages      → {"offset":N,"epoch":"..","messages":[..]}
 *   POST   /rooms/:roomId/messages      post (body: the text)  → 201 {"seq":N}; every member gets
 *                                       a push POST /rooms/:roomId/messages {"from":..,"text":..}
 *   PUT    /rooms/:roomId/members/me    join the room's group  → 204
 *   DELETE /rooms/:roomId/members/me    leave it               → 204
 *   POST   /users/:userId/pokes         push to every tab of that user → 202
 *
 * Middleware: a request log on every path, and an auth guard on writes (POST/PUT/DELETE need an
 * identity). With --jwt-secret S the upgrade requires an HS256 JWT (its "sub" is the identity;
 * browsers pass it as new WebSocket(url, ["sb.v1", "bearer." + token])); without it everyone
 * is anonymous and may only read.
 *
 *   rooms [--host H] [--port P] [--jwt-secret S]
 * Prints "listening on HOST:PORT"; SIGINT/SIGTERM stop it gracefully.
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <uv.h>

#include "switchboard.h"

#define MAX_ROOMS 64
#define KEEP 50      /* messages kept per room for GET .../messages */
#define MAX_TEXT 500

typedef struct message {
  char from[64];
  char text[MAX_TEXT + 1];
} message;

typedef struct room {
  char id[32];
  message last[KEEP]; /* a ring */
  unsigned count;     /* messages ever posted */
} room;

static sb_hub *hub;
static room rooms[MAX_ROOMS];
static size_t nrooms;
static uv_signal_t sigint, sigterm;

/* ---- helpers -------------------------------------------------------------------------- */

/* Appends s as a JSON string (quotes included) to out[*n..cap). */
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

static void reply_json(sb_req *req, uint16_t status, const char *json) {
  sb_respond(req, status, json, strlen(json));
}

static room *find_room(const char *id, int create) {
  for (size_t i = 0; i < nrooms; i++) {
    if (strcmp(rooms[i].id, id) == 0) return &rooms[i];
  }
  if (!create || nrooms == MAX_ROOMS || strlen(id) >= sizeof(rooms[0].id)) return NULL;
  room *r = &rooms[nrooms++];
  memset(r, 0, sizeof(*r));
  snprintf(r->id, sizeof(r->id), "%s", id);
  return r;
}

static void group_of(char *out, size_t cap, const char *room_id) {
  snprintf(out, cap, "room:%.200s", room_id);
}

/* ---- middleware ----------------------------------------------------------------------- */

static void log_requests(sb_req *req, void *user) {
  (void)user;
  static const char *names[] = {"-", "GET", "POST", "PUT", "PATCH", "DELETE"};
  fprintf(stderr, "%s %s (%s)\n", names[sb_req_method(req)], sb_req_path(req),
          *sb_req_identity(req) ? sb_req_identity(req) : "anonymous");
  sb_next(req);
}

static void writers_only(sb_req *req, void *user) {
  (void)user;
  if (sb_req_method(req) != SB_METHOD_GET && !*sb_req_identity(req)) {
    sb_fail(req, 401, "writes need an identity");
    return;
  }
  sb_next(req);
}

/* ---- routes --------------------------------------------------------------------------- */

static void get_me(sb_req *req, void *user) {
  (void)user;
  char out[256];
  size_t n = (size_t)snprintf(out, sizeof(out), "{\"identity\":");
  json_str(out, sizeof(out), &n, sb_req_identity(req));
  snprintf(out + n, sizeof(out) - n, "}");
  reply_json(req, 200, out);
}

static void list_rooms(sb_req *req, void *user) {
  (void)user;
  char out[8192], group[256];
  size_t n = 0;
  out[n++] = '[';
  for (size_t i = 0; i < nrooms && n + 100 < sizeof(out); i++) {
    group_of(group, sizeof(group), rooms[i].id);
    n += (size_t)snprintf(out + n, sizeof(out) - n, "%s{\"id\":", i ? "," : "");
    json_str(out, sizeof(out), &n, rooms[i].id);
    n += (size_t)snprintf(out + n, sizeof(out) - n, ",\"members\":%zu}",
                          sb_hub_group_size(hub, group));
  }
  snprintf(out + n, sizeof(out) - n, "]");
  reply_json(req, 200, out);
}

/* The history comes with the room stream's position, so that a client can tell which pushes
 * it already has (docs/PROTOCOL.md §4). */
static void get_messages(sb_req *req, void *user) {
  (void)user;
  room *r = find_room(sb_req_param(req, "roomId"), 0);
  if (!r) return sb_fail(req, 404, "no such room");
  char group[256];
  group_of(group, sizeof(group), r->id);
  uint64_t offset = 0, epoch = 0;
  sb_hub_position(hub, group, &offset, &epoch);
  static char out[KEEP * (MAX_TEXT * 6 + 128) + 128];
  size_t n = (size_t)snprintf(out, sizeof(out),
                              "{\"offset\":%" PRIu64 ",\"epoch\":\"%016" PRIx64 "\",\"messages\":[",
                              offset, epoch);
  unsigned first = r->count > KEEP ? r->count - KEEP : 0;
  for (unsigned i = first; i < r->count; i++) {
    const message *m = &r->last[i % KEEP];
    n += (size_t)snprintf(out + n, sizeof(out) - n, "%s{\"from\":", i > first ? "," : "");
    json_str(out, sizeof(out), &n, m->from);
    n += (size_t)snprintf(out + n, sizeof(out) - n, ",\"text\":");
    json_str(out, sizeof(out), &n, m->text);
    n += (size_t)snprintf(out + n, sizeof(out) - n, "}");
  }
  snprintf(out + n, sizeof(out) - n, "]}");
  reply_json(req, 200, out);
}

static void post_message(sb_req *req, void *user) {
  (void)user;
  size_t len;
  const char *text = sb_req_body(req, &len);
  if (len == 0 || len > MAX_TEXT || memchr(text, '\0', len))
    return sb_fail(req, 422, "the text must be 1..500 bytes");
  room *r = find_room(sb_req_param(req, "roomId"), 1);
  if (!r) return sb_fail(req, 507, "too many rooms");
  message *m = &r->last[r->count++ % KEEP];
  snprintf(m->from, sizeof(m->from), "%s", sb_req_identity(req));
  memcpy(m->text, text, len);
  m->text[len] = '\0';
  /* Push to the room's group: recorded in its stream, so members that reconnect get it. */
  char push[MAX_TEXT * 6 + 128], group[256], url[96];
  size_t n = (size_t)snprintf(push, sizeof(push), "{\"from\":");
  json_str(push, sizeof(push), &n, m->from);
  n += (size_t)snprintf(push + n, sizeof(push) - n, ",\"text\":");
  json_str(push, sizeof(push), &n, m->text);
  n += (size_t)snprintf(push + n, sizeof(push) - n, "}");
  group_of(group, sizeof(group), r->id);
  snprintf(url, sizeof(url), "/rooms/%s/messages", r->id);
  if (sb_hub_publish(hub, group, SB_METHOD_POST, url, push, n) != 0)
    return sb_fail(req, 503, "publish failed");
  char out[64];
  snprintf(out, sizeof(out), "{\"seq\":%u}", r->count);
  reply_json(req, 201, out);
}

static void join_room(sb_req *req, void *user) {
  (void)user;
  char group[256];
  room *r = find_room(sb_req_param(req, "roomId"), 1);
  sb_conn *c = sb_req_conn(req);
  if (!r) return sb_fail(req, 507, "too many rooms");
  group_of(group, sizeof(group), r->id);
  if (!c || sb_conn_join(c, group) != 0) return sb_fail(req, 500, "join failed");
  sb_respond(req, 204, NULL, 0);
}

static void leave_room(sb_req *req, void *user) {
  (void)user;
  char group[256];
  sb_conn *c = sb_req_conn(req);
  group_of(group, sizeof(group), sb_req_param(req, "roomId"));
  if (c) sb_conn_leave(c, group);
  sb_respond(req, 204, NULL, 0);
}

static void poke_user(sb_req *req, void *user) {
  (void)user;
  char body[256];
  size_t n = (size_t)snprintf(body, sizeof(body), "{\"from\":");
  json_str(body, sizeof(body), &n, sb_req_identity(req));
  n += (size_t)snprintf(body + n, sizeof(body) - n, "}");
  int r = sb_hub_send_to_user(hub, sb_req_param(req, "userId"), SB_METHOD_POST, "/pokes", body, n);
  if (r != 0) return sb_fail(req, 400, sb_strerror(r));
  sb_respond(req, 202, NULL, 0);
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
  sb_server_shutdown(sb_hub_server(hub), on_shutdown, NULL);
}

int main(int argc, char **argv) {
  const char *host = "127.0.0.1", *secret = NULL;
  int port = 8080;
  for (int i = 1; i + 1 < argc; i += 2) {
    if (!strcmp(argv[i], "--host")) host = argv[i + 1];
    else if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
    else if (!strcmp(argv[i], "--jwt-secret")) secret = argv[i + 1];
    else {
      fprintf(stderr, "usage: rooms [--host H] [--port P] [--jwt-secret S]\n");
      return 2;
    }
  }
  uv_loop_t *loop = uv_default_loop();
  sb_server_options so;
  sb_server_options_init(&so);
  sb_jwt *jwt = NULL;
  if (secret) {
    sb_jwt_options jo = {.alg = "HS256", .key = secret, .key_len = strlen(secret)};
    if (sb_jwt_new(&jwt, &jo) != 0) {
      fprintf(stderr, "rooms: the JWT secret must be at least 32 bytes\n");
      return 1;
    }
    so.on_upgrade = sb_jwt_upgrade_cb; /* every upgrade needs a valid token */
    so.user = jwt;
  }
  sb_hub_options ho;
  sb_hub_options_init(&ho);
  sb_app *app;
  int r = sb_hub_new(&hub, loop, &so, &ho);
  if (r == 0) r = sb_app_new(&app, hub);
  if (r != 0) {
    fprintf(stderr, "rooms: %s\n", sb_strerror(r));
    return 1;
  }
  sb_app_use(app, NULL, log_requests, NULL);
  sb_app_use(app, NULL, writers_only, NULL);
  sb_app_get(app, "/me", get_me, NULL);
  sb_app_get(app, "/rooms", list_rooms, NULL);
  sb_app_get(app, "/rooms/:roomId/messages", get_messages, NULL);
  sb_app_post(app, "/rooms/:roomId/messages", post_message, NULL);
  sb_app_put(app, "/rooms/:roomId/members/me", join_room, NULL);
  sb_app_delete(app, "/rooms/:roomId/members/me", leave_room, NULL);
  sb_app_post(app, "/users/:userId/pokes", poke_user, NULL);
  r = sb_server_listen(sb_hub_server(hub), host, port);
  if (r != 0) {
    fprintf(stderr, "rooms: listen on %s:%d: %s\n", host, port, sb_strerror(r));
    return 1;
  }
  uv_signal_init(loop, &sigint);
  uv_signal_init(loop, &sigterm);
  uv_signal_start(&sigint, on_signal, SIGINT);
  uv_signal_start(&sigterm, on_signal, SIGTERM);
  printf("listening on %s:%d\n", host, sb_server_port(sb_hub_server(hub)));
  fflush(stdout);
  uv_run(loop, UV_RUN_DEFAULT);
  r = sb_app_free(app);
  if (r == 0) r = sb_hub_free(hub);
  sb_jwt_free(jwt);
  uv_loop_close(loop);
  return r == 0 ? 0 : 1;
}
