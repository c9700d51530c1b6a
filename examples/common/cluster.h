/*
 * cluster.h — the redis engine for an example's `--redis URL [--node-id ID] [--public-url URL]`
 * (header only).
 *
 * Every example that can run as one node of many does the same three things around its hub
 * (include/switchboard.h, "The redis engine"):
 *
 *     sb_engine *engine = NULL;
 *     if (redis_url &&
 *         cluster_engine_start(&engine, loop, "demo", redis_url, node_id, public_url) != 0)
 *       return 1;                          // the reason is printed
 *     ho.engine = engine;                  // NULL: the memory engine, one node
 *     ... sb_hub_new, listen, uv_run, sb_hub_free ...
 *     cluster_engine_stop(engine, loop);   // after the hub; nothing for NULL
 *
 * Why wait before listening: the engine connects in the background, and until both of its
 * Redis links are up every call that needs Redis fails at once (a publish answers an error, a
 * resume 503). A node that listened at once would refuse its first clients for no reason a
 * user could see. The wait is bounded: a wrong url or a Redis that is down stops the program
 * with a message after CLUSTER_WAIT_MS instead of hanging (the engine itself would reconnect
 * forever, which is what a running node wants, not one being started by hand).
 */
#ifndef SB_EXAMPLES_CLUSTER_H
#define SB_EXAMPLES_CLUSTER_H

#include <stdio.h>
#include <string.h>

#include <uv.h>

#include "switchboard.h"

#define CLUSTER_WAIT_MS 5000
/* The longest public url the engine keeps whole (src/engine/redis.c holds it in 256 bytes and
 * would cut a longer one short): refused here rather than advertised wrong. */
#define CLUSTER_MAX_PUBLIC_URL 255

static void cluster_wait_tick(uv_timer_t *t) { (void)t; }

/* Creates the redis engine for `url` (node id `node_id`, NULL: random) on `loop` and runs the
 * loop until it is connected. `public_url` is the url clients reach this node at, listed with
 * the node's id by sb_hub_nodes (the examples' GET /nodes, GET /api/nodes); NULL: "". 0 with
 * *out set; otherwise prints why (prefixed with `prog`), frees what it made and returns a
 * negative SB_E* code. */
static int cluster_engine_start(sb_engine **out, uv_loop_t *loop, const char *prog,
                                const char *url, const char *node_id, const char *public_url) {
  if (public_url && strlen(public_url) > CLUSTER_MAX_PUBLIC_URL) {
    fprintf(stderr, "%s: --public-url: longer than %d bytes\n", prog, CLUSTER_MAX_PUBLIC_URL);
    return SB_EINVAL;
  }
  sb_redis_options ro;
  sb_redis_options_init(&ro);
  ro.url = url;
  ro.node_id = node_id;
  ro.public_url = public_url;
  char err[256] = "";
  sb_engine *engine;
  int r = sb_redis_engine_new(&engine, loop, &ro, err, sizeof err);
  if (r != 0) {
    fprintf(stderr, "%s: --redis %s: %s%s%s\n", prog, url, sb_strerror(r), *err ? ": " : "", err);
    return r;
  }
  /* The engine's handles do not keep the loop alive: a timer does, 10 ms at a time. */
  uv_timer_t tick;
  uv_timer_init(loop, &tick);
  uint64_t until = uv_now(loop) + CLUSTER_WAIT_MS;
  while (!sb_redis_engine_up(engine) && uv_now(loop) < until) {
    uv_timer_start(&tick, cluster_wait_tick, 10, 0);
    uv_run(loop, UV_RUN_ONCE);
  }
  uv_close((uv_handle_t *)&tick, NULL);
  uv_run(loop, UV_RUN_NOWAIT);
  if (!sb_redis_engine_up(engine)) {
    fprintf(stderr,
            "%s: --redis %s: Redis did not answer within %d s (is redis-server running and "
            "reachable there?)\n",
            prog, url, CLUSTER_WAIT_MS / 1000);
    sb_redis_engine_free(engine);
    uv_run(loop, UV_RUN_DEFAULT); /* its handles close */
    return SB_EIO;
  }
  fprintf(stderr, "%s: node %s, Redis at %s%s%s\n", prog, sb_redis_engine_node_id(engine), url,
          public_url ? ", public url " : "", public_url ? public_url : "");
  *out = engine;
  return 0;
}

/* Frees the engine after the hub that used it, and lets its handles close. NULL: nothing. */
static void cluster_engine_stop(sb_engine *engine, uv_loop_t *loop) {
  if (!engine) return;
  sb_redis_engine_free(engine);
  uv_run(loop, UV_RUN_DEFAULT);
}

#endif
