/*
 * demo — what `make demo` runs: a chat with rooms, served at http://localhost:8080.
 *
 * The page (examples/demo/public) and the JavaScript client (client/) are static files; the
 * page opens one WebSocket and uses the same routes as curl can:
 *
 *   GET    /api/rooms                        the rooms and their member counts
 *   GET    /api/rooms/:roomId/messages       the last 100 messages and the room stream's position
 *                                            (404 for a room that does not exist)
 *   POST   /api/rooms/:roomId/messages       post (body: the text) → a push to the room's group
 *   PUT    /api/rooms/:roomId/members/me     join the room's group (WebSocket only)
 *   DELETE /api/rooms/:roomId/members/me     leave it
 *   GET    /api/online                       who is online (identities, one per person)
 *   GET    /api/health                       the engine and its Redis links (503 while down)
 *   GET    /api/nodes                        the live nodes and their urls ([{"id","url"}])
 *
 * Rooms: reading never creates one. A join or a post over the WebSocket creates the room it
 * names (an id is a name as below), at most 8 rooms per peer address (403 past it: the names
 * cost nothing, so they cannot carry a quota) and 32 in all (507); those answers say why in
 * {"error":..,"message":..}. A post over plain HTTP goes only to a room that exists.
 *
 * Pushes: POST /api/rooms/:roomId/messages {"from","text","at"} to the room's group (recorded:
 * a tab that was offline gets what it missed), and PUT /api/online [names] to every
 * connection whenever someone comes or goes (unrecorded: the page reloads it on resume).
 *
 * Auth, demo-grade: the upgrade must carry ?name=<1..32 of [A-Za-z0-9_-]>, which becomes the
 * identity (a real application verifies a token: see examples/rooms and sb_jwt_upgrade_cb); the
 * connection's claims are its peer address, which the room quota counts by. Writes over plain
 * HTTP take the name from the X-Name header.
 *
 * Answers are built with examples/common/strbuf.h, which never writes past its buffer.
 *
 *   demo [--host H] [--port P] [--public DIR] [--client DIR]
 *        [--redis URL [--node-id ID] [--public-url URL]]   (--public-url: GET /api/nodes lists it)
 * Prints the URL; Ctrl-C (SIGINT) or SIGTERM stops it gracefully.
 *
 * Many nodes (--redis redis://HOST:PORT, what `make demo-cluster` runs three of behind nginx):
 * the process becomes one node of a cluster through the redis engine (it waits up to 5 s for
 * Redis before it listens). What is then shared by every node, and what is not:
 *   shared   a room's group and its stream: a post on any node is pushed to the room's members
 *            on every node, numbered in one sequence, and a tab that reconnects to any node
 *            resumes and gets exactly what it missed; a room's history (GET .../messages is
 *            the newest 100 of the stream, sb_hub_history, with its exact position); sessions
 *            (a resume works on any node); who is online (GET /api/online and its pushes: the
 *            presence of the group "online", which every connection joins, across every node).
 *   per node the room table, which this file keeps in its own memory: GET /api/rooms lists
 *            the rooms created on this node, with this node's member counts; a room exists on
 *            a node once a write over the WebSocket made it there, so a GET of a room only
 *            another node knows is 404 here, and so is a post to it over plain HTTP; the
 *            quotas count per node; a post's answer {"seq":N} counts the posts through this
 *            node. (Reading never makes a room, or a stream in the engine.)
 */
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <uv.h>

#include "../common/cluster.h"
#include "../common/answer.h"
#include "../common/strbuf.h"
#include "switchboard.h"

#ifndef SB_DEMO_PUBLIC
#define SB_DEMO_PUBLIC "examples/demo/public"
#endif
#ifndef SB_DEMO_CLIENT
#define SB_DEMO_CLIENT "client"
#endif

#define MAX_ROOMS 32
#define ROOMS_PER_ADDRESS 8 /* rooms one peer address may create */
#define MAX_NAME 32         /* a name or a room id: 1..32 of [A-Za-z0-9_-] */
#define KEEP 100
#define MAX_TEXT 1000
#define MAX_ANSWER (8u << 20) /* the most a growable answer may take (the worst is ~610 KB) */

#define STR(x) #x
#define XSTR(x) STR(x)

typedef struct room {
  char id[MAX_NAME + 1];
  char creator[64]; /* the peer address whose quota it counts against */
  unsigned count;   /* posts through this node (the answer's "seq") */
} room;

static sb_hub *hub;
static room rooms[MAX_ROOMS];
static size_t nrooms;
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

static room *find_room(const char *id) {
  for (size_t i = 0; i < nrooms; i++) {
    if (strcmp(rooms[i].id, id) == 0) return &rooms[i];
  }
  return NULL;
}

/* The room `id` for a write (a join, or a post over the WebSocket): created if it does not
 * exist yet, within the quotas. NULL once the request has been answered with the reason.
 * Reads never create a room: 40 page loads of made-up room names once filled the table. */
static room *room_for_write(sb_req *req, const char *id) {
  room *r = find_room(id);
  if (r) return r;
  if (!valid_name(id, MAX_NAME)) {
    refuse(req, 422, "Unprocessable Entity", "a room name is 1 to 32 of A-Z a-z 0-9 _ -");
    return NULL;
  }
  /* A plain HTTP request has no peer address to count by (and no connection to join). */
  if (!sb_req_conn(req)) {
    refuse(req, 404, "Not Found", "no such room: a room is made by joining it");
    return NULL;
  }
  const char *addr = sb_req_claims(req) ? sb_req_claims(req) : "";
  size_t theirs = 0;
  for (size_t i = 0; i < nrooms; i++) theirs += strcmp(rooms[i].creator, addr) == 0;
  if (theirs >= ROOMS_PER_ADDRESS) {
    refuse(req, 403, "Forbidden",
           "one address may create at most " XSTR(ROOMS_PER_ADDRESS) " rooms: join one of them");
    return NULL;
  }
  if (nrooms == MAX_ROOMS) {
    refuse(req, 507, "Insufficient Storage", "all " XSTR(MAX_ROOMS) " rooms are taken");
    return NULL;
  }
  r = &rooms[nrooms];
  memset(r, 0, sizeof(*r));
  snprintf(r->id, sizeof(r->id), "%s", id);
  snprintf(r->creator, sizeof(r->creator), "%s", addr);
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
  return h && valid_name(h, MAX_NAME) ? h : "";
}

/* ---- presence ------------------------------------------------------------------------- */

/* Who is online is the presence of the group "online" (sb_hub_presence), which every
 * connection joins as it opens: the names of everyone connected to any node of the cluster,
 * one per person, sorted. Room groups are "room:<id>", so no room can be this group. */
#define ONLINE_GROUP "online"

static void online_json(strbuf *b, const sb_presence *who, size_t n) {
  strbuf_heap(b, MAX_ANSWER);
  STRBUF_LIT(b, "[");
  for (size_t i = 0, k = 0; i < n; i++) {
    if (!*who[i].identity) continue; /* the upgrade names everyone: never anonymous */
    if (k++) STRBUF_LIT(b, ",");
    strbuf_json(b, who[i].identity);
  }
  STRBUF_LIT(b, "]");
}

/* Someone came or went (on_presence, from any node): the list is read again and pushed to
 * this node's connections. One read at a time; events during it ask for one more after. */
static int announcing, announce_again;
static void announce_online(void);

static void on_announce(int status, const sb_presence *who, size_t n, void *user) {
  (void)user;
  announcing = 0;
  if (status == 0) {
    strbuf b;
    online_json(&b, who, n);
    if (!b.overflow) sb_hub_broadcast(hub, SB_METHOD_PUT, "/api/online", b.data, b.len);
    strbuf_free(&b);
  }
  if (announce_again) announce_online();
}

static void announce_online(void) {
  if (announcing) {
    announce_again = 1;
    return;
  }
  announce_again = 0;
  announcing = sb_hub_presence(hub, ONLINE_GROUP, on_announce, NULL) == 0;
}

static void on_presence(sb_hub *h, const char *group, const char *identity, int joined,
                        void *user) {
  (void)h;
  (void)identity;
  (void)joined;
  (void)user;
  if (strcmp(group, ONLINE_GROUP) == 0) announce_online();
}

static void on_open(sb_conn *c, void *user) {
  (void)user;
  sb_conn_join(c, ONLINE_GROUP); /* and closing leaves it */
}

/* ---- the upgrade ---------------------------------------------------------------------- */

static void name_auth(sb_upgrade *up, void *user) {
  (void)user;
  const char *name = sb_upgrade_query(up, "name");
  if (!name || !valid_name(name, MAX_NAME)) {
    sb_upgrade_reject(up, 401, NULL, 0, "choose a name: 1 to 32 of A-Z a-z 0-9 _ -");
    return;
  }
  /* The claims: the peer address, for the room quota (names cost nothing). */
  sb_upgrade_accept(up, name, sb_upgrade_remote_address(up), 0);
}

/* ---- routes --------------------------------------------------------------------------- */

/* GET /api/health: the engine and its links (docs/API.md); 503 while the engine is down, so a
 * load balancer's health check takes the node out while it cannot reach Redis. */
static void get_health(sb_req *req, void *user) {
  (void)user;
  sb_health h;
  sb_hub_health(hub, &h);
  char mem[512];
  strbuf b;
  strbuf_fixed(&b, mem, sizeof mem);
  STRBUF_LIT(&b, "{\"engine\":");
  strbuf_json(&b, h.engine);
  STRBUF_LIT(&b, ",\"up\":");
  if (h.up) STRBUF_LIT(&b, "true");
  else STRBUF_LIT(&b, "false");
  if (h.redis_commands >= 0) {
    STRBUF_LIT(&b, ",\"redis\":{\"commands\":");
    if (h.redis_commands) STRBUF_LIT(&b, "true");
    else STRBUF_LIT(&b, "false");
    STRBUF_LIT(&b, ",\"pubsub\":");
    if (h.redis_pubsub) STRBUF_LIT(&b, "true");
    else STRBUF_LIT(&b, "false");
    STRBUF_LIT(&b, "}");
  }
  STRBUF_LIT(&b, ",\"error\":");
  strbuf_json(&b, h.error);
  STRBUF_LIT(&b, "}");
  reply_json(req, h.up ? 200 : 503, &b);
}

/* GET /api/nodes: the live nodes and the urls they advertise, for a client's discovery (one
 * node, "local", without --redis). Answered when the engine has the list. */
static void on_nodes(int status, const sb_node *nodes, size_t n, void *user) {
  sb_req *req = user;
  if (status != 0) return sb_fail(req, 503, "the node list is unavailable");
  strbuf b;
  strbuf_heap(&b, 1 << 20);
  nodes_json(&b, nodes, n);
  reply_json(req, 200, &b);
  strbuf_free(&b);
}

static void get_nodes(sb_req *req, void *user) {
  (void)user;
  if (sb_hub_nodes(hub, on_nodes, req) != 0) sb_fail(req, 503, "the node list is unavailable");
}

static void list_rooms(sb_req *req, void *user) {
  (void)user;
  char group[64];
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

/* GET .../messages: the newest KEEP messages of the room's stream and its position, from the
 * engine (every node's posts, in their order), answered when they come. The position lets the
 * page match this history with the pushes it gets from now on: a push of this epoch at or
 * below `offset` is already in the list. The epoch is 16 hex digits, as the JavaScript client
 * shows a push's epoch (a u64 does not fit a JavaScript number). */
static void on_room_history(int status, const sb_history *h, void *user) {
  sb_req *req = user;
  if (status != 0) return sb_fail(req, 503, "the room's history is unavailable");
  const char *id = sb_req_param(req, "roomId");
  char url[sizeof "/api/rooms//messages" + MAX_NAME];
  int ul = snprintf(url, sizeof(url), "/api/rooms/%s/messages", id); /* a valid name */
  strbuf b;
  strbuf_heap(&b, MAX_ANSWER);
  STRBUF_LIT(&b, "{\"room\":");
  strbuf_json(&b, id);
  STRBUF_LIT(&b, ",\"stream\":\"g:room:");
  strbuf_add(&b, id, strlen(id)); /* a valid name: nothing to escape */
  strbuf_addf(&b, "\",\"offset\":%" PRIu64 ",\"epoch\":\"%016" PRIx64 "\",\"messages\":[",
              h->offset, h->epoch);
  size_t k = 0;
  for (size_t i = 0; i < h->n; i++) {
    const sb_history_entry *e = &h->entries[i];
    /* Only this demo's posts are in a room's group: {"from","text","at"}, built (escaped) by
     * post_message on whichever node took the post. */
    if (e->url_len != (size_t)ul || memcmp(e->url, url, e->url_len) != 0 || !e->body_len)
      continue;
    if (k++) STRBUF_LIT(&b, ",");
    strbuf_add(&b, e->body, e->body_len);
  }
  STRBUF_LIT(&b, "]}");
  reply_json(req, 200, &b);
  strbuf_free(&b);
}

static void get_messages(sb_req *req, void *user) {
  (void)user;
  room *r = find_room(sb_req_param(req, "roomId"));
  if (!r) return sb_fail(req, 404, "no such room"); /* reading makes no stream either */
  char group[64];
  group_of(group, sizeof(group), r->id);
  if (sb_hub_history(hub, group, 0, KEEP, on_room_history, req) != 0)
    sb_fail(req, 503, "the room's history is unavailable");
}

static void post_message(sb_req *req, void *user) {
  (void)user;
  const char *from = sender(req);
  if (!*from) return sb_fail(req, 401, "who are you? (the X-Name header over HTTP)");
  size_t len;
  const char *text = sb_req_body(req, &len);
  char copy[MAX_TEXT + 1];
  if (len == 0 || len > MAX_TEXT || memchr(text, '\0', len))
    return sb_fail(req, 422, "a message is 1 to 1000 bytes of UTF-8 text");
  memcpy(copy, text, len);
  copy[len] = '\0';
  if (!utf8_valid(copy)) return sb_fail(req, 422, "a message is 1 to 1000 bytes of UTF-8 text");
  room *r = room_for_write(req, sb_req_param(req, "roomId"));
  if (!r) return;
  uv_timeval64_t tv;
  uv_gettimeofday(&tv);
  int64_t at = (int64_t)tv.tv_sec * 1000 + tv.tv_usec / 1000;
  r->count++;
  static char push[sizeof "{\"from\":,\"text\":,\"at\":}" + STRBUF_JSON_MAX(MAX_NAME) +
                   STRBUF_JSON_MAX(MAX_TEXT) + 20];
  char group[64], url[sizeof "/api/rooms//messages" + MAX_NAME];
  strbuf p;
  strbuf_fixed(&p, push, sizeof push);
  STRBUF_LIT(&p, "{\"from\":");
  strbuf_json(&p, from);
  STRBUF_LIT(&p, ",\"text\":");
  strbuf_json(&p, copy);
  strbuf_addf(&p, ",\"at\":%" PRId64 "}", at);
  if (p.overflow) return sb_fail(req, 500, "the push does not fit");
  group_of(group, sizeof(group), r->id);
  snprintf(url, sizeof(url), "/api/rooms/%s/messages", r->id); /* a valid name: no escaping */
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
  sb_conn *c = sb_req_conn(req);
  if (!c) return sb_fail(req, 400, "joining is for WebSocket connections");
  room *r = room_for_write(req, sb_req_param(req, "roomId"));
  if (!r) return;
  char group[64];
  group_of(group, sizeof(group), r->id);
  if (sb_conn_join(c, group) != 0) return sb_fail(req, 500, "join failed");
  sb_respond(req, 204, NULL, 0);
}

static void leave_room(sb_req *req, void *user) {
  (void)user;
  sb_conn *c = sb_req_conn(req);
  const char *id = sb_req_param(req, "roomId");
  char group[64];
  group_of(group, sizeof(group), id);
  if (c && valid_name(id, MAX_NAME)) sb_conn_leave(c, group);
  sb_respond(req, 204, NULL, 0);
}

/* GET /api/online, answered when the presence comes. */
static void on_online(int status, const sb_presence *who, size_t n, void *user) {
  sb_req *req = user;
  if (status != 0) return sb_fail(req, 503, "who is online is unavailable");
  strbuf b;
  online_json(&b, who, n);
  reply_json(req, 200, &b);
  strbuf_free(&b);
}

static void get_online(sb_req *req, void *user) {
  (void)user;
  if (sb_hub_presence(hub, ONLINE_GROUP, on_online, req) != 0)
    sb_fail(req, 503, "who is online is unavailable");
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
  const char *redis_url = NULL, *node_id = NULL, *public_url = NULL;
  int port = 8080;
  for (int i = 1; i < argc; i += 2) {
    const char *f = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
    if (!v) f = ""; /* a flag without its value: the usage */
    if (!strcmp(f, "--host")) host = v;
    else if (!strcmp(f, "--port")) port = atoi(v);
    else if (!strcmp(f, "--public")) pub = v;
    else if (!strcmp(f, "--client")) client = v;
    else if (!strcmp(f, "--redis")) redis_url = v;
    else if (!strcmp(f, "--node-id")) node_id = v;
    else if (!strcmp(f, "--public-url")) public_url = v;
    else {
      fprintf(stderr,
              "usage: demo [--host H] [--port P] [--public DIR] [--client DIR] "
              "[--redis URL [--node-id ID] [--public-url URL]]\n");
      return 2;
    }
  }
  if ((node_id || public_url) && !redis_url) {
    fprintf(stderr, "demo: --node-id and --public-url are for a cluster: give --redis URL too\n");
    return 2;
  }
  uv_loop_t *loop = uv_default_loop();
  sb_engine *engine = NULL;
  if (redis_url && cluster_engine_start(&engine, loop, "demo", redis_url, node_id, public_url) != 0)
    return 1;
  sb_server_options so;
  sb_server_options_init(&so);
  so.on_upgrade = name_auth;
  so.idle_timeout_ms = 15000; /* the page notices a dead connection within 30 s */
  sb_hub_options ho;
  sb_hub_options_init(&ho);
  ho.on_open = on_open;
  ho.on_presence = on_presence;
  ho.history_age_ms = 24u * 3600u * 1000u; /* a room's history is its stream's: kept a day */
  ho.engine = engine; /* NULL: the memory engine, this node alone */
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
  sb_routes_get(api, "/health", get_health, NULL);
  sb_routes_get(api, "/nodes", get_nodes, NULL);
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
  if (r == 0) cluster_engine_stop(engine, loop); /* never under a hub that still uses it */
  uv_loop_close(loop);
  return r == 0 ? 0 : 1;
}
