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
 *   PUT    /rooms/:roomId/members/me    join the room's group  → 204 (over a WebSocket)
 *   DELETE /rooms/:roomId/members/me    leave it               → 204
 *   POST   /users/:userId/pokes         push to every tab of that user → 202
 *
 * A room is created by the first post or join (reading never creates one): its id is 1 to 31
 * bytes of UTF-8, an identity creates at most 8 rooms (403 past it) and there are at most 64
 * (507); these answers say why: {"error":"Forbidden","message":"..."}. Every answer is built
 * with examples/common/strbuf.h, which never writes past its buffer: an answer that would not
 * fit is a 500, never a cut one.
 *
 * Middleware: a request log on every path (the client's path and identity escaped, so that a
 * newline in them cannot forge a line), and an auth guard on writes (POST/PUT/DELETE need an
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

#include "../common/answer.h"
#include "../common/strbuf.h"
#include "switchboard.h"

#define MAX_ROOMS 64
#define ROOMS_PER_USER 8 /* rooms one identity may create: no one user takes them all */
#define MAX_ID 31        /* bytes of a room id */
#define MAX_IDENTITY 190 /* bytes of an identity (sb_upgrade_accept) */
#define KEEP 50          /* messages kept per room for GET .../messages */
#define MAX_TEXT 500
#define MAX_ANSWER (4u << 20) /* the most a growable answer may take (the worst is ~210 KB) */

#define STR(x) #x
#define XSTR(x) STR(x)

typedef struct message {
  char from[MAX_IDENTITY + 1];
  char text[MAX_TEXT + 1];
} message;

typedef struct room {
  char id[MAX_ID + 1];
  char creator[MAX_IDENTITY + 1]; /* whose quota it counts against */
  message last[KEEP];             /* a ring */
  unsigned count;                 /* messages ever posted */
} room;

static sb_hub *hub;
static room rooms[MAX_ROOMS];
static size_t nrooms;
static uv_signal_t sigint, sigterm;

/* ---- helpers -------------------------------------------------------------------------- */

static room *find_room(const char *id) {
  for (size_t i = 0; i < nrooms; i++) {
    if (strcmp(rooms[i].id, id) == 0) return &rooms[i];
  }
  return NULL;
}

/* The room `id` for a write (a post or a join): created if it does not exist yet, within the
 * quotas. NULL once the request has been answered with the reason. Reads never create a room,
 * so that anonymous readers cannot fill the table. */
static room *room_for_write(sb_req *req, const char *id) {
  room *r = find_room(id);
  if (r) return r;
  const char *who = sb_req_identity(req);
  size_t len = strlen(id), mine = 0;
  if (len == 0 || len > MAX_ID || !utf8_valid(id)) {
    refuse(req, 422, "Unprocessable Entity", "a room id is 1 to " XSTR(MAX_ID) " bytes of UTF-8");
    return NULL;
  }
  for (size_t i = 0; i < nrooms; i++) mine += strcmp(rooms[i].creator, who) == 0;
  if (mine >= ROOMS_PER_USER) {
    refuse(req, 403, "Forbidden", "a user may create at most " XSTR(ROOMS_PER_USER) " rooms");
    return NULL;
  }
  if (nrooms == MAX_ROOMS) {
    refuse(req, 507, "Insufficient Storage", "all " XSTR(MAX_ROOMS) " rooms are taken");
    return NULL;
  }
  r = &rooms[nrooms++];
  memset(r, 0, sizeof(*r));
  memcpy(r->id, id, len + 1);
  snprintf(r->creator, sizeof(r->creator), "%s", who);
  return r;
}

static void group_of(char *out, size_t cap, const char *room_id) {
  snprintf(out, cap, "room:%.200s", room_id);
}

/* ---- middleware ----------------------------------------------------------------------- */

/* One line per request. The path and the identity are the client's: escaped (strbuf_log), a
 * newline in them cannot make a line of its own in the log. */
static void log_requests(sb_req *req, void *user) {
  (void)user;
  static const char *names[] = {"-", "GET", "POST", "PUT", "PATCH", "DELETE"};
  sb_method m = sb_req_method(req);
  const char *id = sb_req_identity(req);
  char pmem[1024], imem[4 * MAX_IDENTITY + 1];
  strbuf path, who;
  strbuf_fixed(&path, pmem, sizeof pmem);
  strbuf_fixed(&who, imem, sizeof imem);
  strbuf_log(&path, sb_req_path(req));
  strbuf_log(&who, *id ? id : "anonymous");
  fprintf(stderr, "%s %s%s (%s)\n", m <= SB_METHOD_DELETE ? names[m] : "?", path.data,
          path.overflow ? "[...]" : "", who.data);
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
  char mem[sizeof "{\"identity\":}" + STRBUF_JSON_MAX(MAX_IDENTITY)];
  strbuf b;
  strbuf_fixed(&b, mem, sizeof mem);
  STRBUF_LIT(&b, "{\"identity\":");
  strbuf_json(&b, sb_req_identity(req));
  STRBUF_LIT(&b, "}");
  reply_json(req, 200, &b);
}

/* The answers that grow with what clients created are built in a growable buffer. */
static void list_rooms(sb_req *req, void *user) {
  (void)user;
  char group[256];
  strbuf b;
  strbuf_heap(&b, MAX_ANSWER);
  STRBUF_LIT(&b, "[");
  for (size_t i = 0; i < nrooms; i++) {
    group_of(group, sizeof(group), rooms[i].id);
    if (i) STRBUF_LIT(&b, ",");
    STRBUF_LIT(&b, "{\"id\":");
    strbuf_json(&b, rooms[i].id);
    strbuf_addf(&b, ",\"members\":%zu}", sb_hub_group_size(hub, group));
  }
  STRBUF_LIT(&b, "]");
  reply_json(req, 200, &b);
  strbuf_free(&b);
}

/* The history comes with the room stream's position, so that a client can tell which pushes
 * it already has (docs/PROTOCOL.md §4). */
static void get_messages(sb_req *req, void *user) {
  (void)user;
  room *r = find_room(sb_req_param(req, "roomId"));
  if (!r) return sb_fail(req, 404, "no such room");
  char group[256];
  group_of(group, sizeof(group), r->id);
  uint64_t offset = 0, epoch = 0;
  sb_hub_position(hub, group, &offset, &epoch);
  strbuf b;
  strbuf_heap(&b, MAX_ANSWER);
  strbuf_addf(&b, "{\"offset\":%" PRIu64 ",\"epoch\":\"%016" PRIx64 "\",\"messages\":[", offset,
              epoch);
  unsigned first = r->count > KEEP ? r->count - KEEP : 0;
  for (unsigned i = first; i < r->count; i++) {
    const message *m = &r->last[i % KEEP];
    if (i > first) STRBUF_LIT(&b, ",");
    STRBUF_LIT(&b, "{\"from\":");
    strbuf_json(&b, m->from);
    STRBUF_LIT(&b, ",\"text\":");
    strbuf_json(&b, m->text);
    STRBUF_LIT(&b, "}");
  }
  STRBUF_LIT(&b, "]}");
  reply_json(req, 200, &b);
  strbuf_free(&b);
}

static void post_message(sb_req *req, void *user) {
  (void)user;
  size_t len;
  const char *text = sb_req_body(req, &len);
  message m;
  if (len == 0 || len > MAX_TEXT || memchr(text, '\0', len))
    return sb_fail(req, 422, "the text must be 1..500 bytes");
  memcpy(m.text, text, len);
  m.text[len] = '\0';
  if (!utf8_valid(m.text)) return sb_fail(req, 422, "the text must be UTF-8");
  snprintf(m.from, sizeof(m.from), "%s", sb_req_identity(req));
  room *r = room_for_write(req, sb_req_param(req, "roomId"));
  if (!r) return;
  r->last[r->count++ % KEEP] = m;
  /* Push to the room's group: recorded in its stream, so members that reconnect get it. */
  char push[sizeof "{\"from\":,\"text\":}" + STRBUF_JSON_MAX(MAX_IDENTITY) +
            STRBUF_JSON_MAX(MAX_TEXT)];
  char url[sizeof "/rooms//messages" + 3 * MAX_ID], group[256];
  strbuf p, u;
  strbuf_fixed(&p, push, sizeof push);
  STRBUF_LIT(&p, "{\"from\":");
  strbuf_json(&p, m.from);
  STRBUF_LIT(&p, ",\"text\":");
  strbuf_json(&p, m.text);
  STRBUF_LIT(&p, "}");
  /* The id goes into the url percent-encoded: it may hold '/', '?' or control characters. */
  strbuf_fixed(&u, url, sizeof url);
  STRBUF_LIT(&u, "/rooms/");
  strbuf_segment(&u, r->id);
  STRBUF_LIT(&u, "/messages");
  if (p.overflow || u.overflow) return sb_fail(req, 500, "the push does not fit");
  group_of(group, sizeof(group), r->id);
  if (sb_hub_publish(hub, group, SB_METHOD_POST, url, p.data, p.len) != 0)
    return sb_fail(req, 503, "publish failed");
  char out[sizeof "{\"seq\":}" + 10];
  strbuf b;
  strbuf_fixed(&b, out, sizeof out);
  strbuf_addf(&b, "{\"seq\":%u}", r->count);
  reply_json(req, 201, &b);
}

static void join_room(sb_req *req, void *user) {
  (void)user;
  char group[256];
  sb_conn *c = sb_req_conn(req);
  if (!c) return sb_fail(req, 400, "joining is for WebSocket connections");
  room *r = room_for_write(req, sb_req_param(req, "roomId"));
  if (!r) return;
  group_of(group, sizeof(group), r->id);
  if (sb_conn_join(c, group) != 0) return sb_fail(req, 500, "join failed");
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
  char body[sizeof "{\"from\":}" + STRBUF_JSON_MAX(MAX_IDENTITY)];
  strbuf b;
  strbuf_fixed(&b, body, sizeof body);
  STRBUF_LIT(&b, "{\"from\":");
  strbuf_json(&b, sb_req_identity(req));
  STRBUF_LIT(&b, "}");
  if (b.overflow) return sb_fail(req, 500, "the push does not fit");
  int r = sb_hub_send_to_user(hub, sb_req_param(req, "userId"), SB_METHOD_POST, "/pokes", b.data,
                              b.len);
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
