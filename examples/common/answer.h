/*
 * answer.h — JSON answers for the examples' routes, built with strbuf.h (header only; copy it
 * with them).
 */
#ifndef EXAMPLES_ANSWER_H
#define EXAMPLES_ANSWER_H

#include "strbuf.h"
#include "switchboard.h"

/* Sends what `b` holds, or a 500 if it did not fit (never a cut, invalid answer). */
static inline void reply_json(sb_req *req, uint16_t status, const strbuf *b) {
  if (b->overflow) return sb_fail(req, 500, "the answer does not fit");
  sb_respond(req, status, b->data, b->len);
}

/* An error the client can show or act on, with its reason:
 * {"error":"Forbidden","message":"..."} (sb_fail's default handler shows only the status's
 * reason phrase). */
static inline void refuse(sb_req *req, uint16_t status, const char *error, const char *why) {
  char mem[512];
  strbuf b;
  strbuf_fixed(&b, mem, sizeof mem);
  STRBUF_LIT(&b, "{\"error\":");
  strbuf_json(&b, error);
  STRBUF_LIT(&b, ",\"message\":");
  strbuf_json(&b, why);
  STRBUF_LIT(&b, "}");
  reply_json(req, status, &b);
}

/* The live nodes as [{"id":..,"url":..}] (sb_hub_nodes' answer) into `b`, made by the caller
 * (strbuf_heap: the list grows with the cluster). */
static inline void nodes_json(strbuf *b, const sb_node *nodes, size_t n) {
  STRBUF_LIT(b, "[");
  for (size_t i = 0; i < n; i++) {
    if (i) STRBUF_LIT(b, ",");
    STRBUF_LIT(b, "{\"id\":");
    strbuf_json(b, nodes[i].id);
    STRBUF_LIT(b, ",\"url\":");
    strbuf_json(b, nodes[i].url);
    STRBUF_LIT(b, "}");
  }
  STRBUF_LIT(b, "]");
}

#endif
