#include <string.h>

#include "hub/groups.h"

void sb_groups_init(sb_groups *gs, const sb_allocator *a) {
  memset(gs, 0, sizeof(*gs));
  gs->a = a;
  sb_map_init(&gs->map, a);
}

void sb_groups_free(sb_groups *gs) {
  for (size_t i = 0; i < gs->map.cap; i++) {
    sb_group *g = gs->map.slots[i].key ? gs->map.slots[i].val : NULL;
    if (g) {
      sb_free(gs->a, g->members);
      sb_free(gs->a, g);
    }
  }
  sb_map_free(&gs->map);
}

sb_group *sb_groups_find(const sb_groups *gs, const char *name, size_t n) {
  return sb_map_get(&gs->map, name, n);
}

static void drop_if_empty(sb_groups *gs, sb_group *g) {
  if (g->n) return;
  if (gs->on_empty) gs->on_empty(gs->ctx, g->name, g->name_len);
  sb_free(gs->a, g->members);
  sb_map_del(&gs->map, g->name, g->name_len); /* frees the name */
  sb_free(gs->a, g);
}

int sb_groups_join(sb_groups *gs, sb_glist *l, void *member, const char *name, size_t n) {
  for (uint32_t i = 0; i < l->n; i++) {
    sb_group *g = l->refs[i].g;
    if (g->name_len == n && memcmp(g->name, name, n) == 0) return 0;
  }
  sb_group *g = sb_map_get(&gs->map, name, n);
  int created = 0;
  if (!g) {
    g = sb_malloc(gs->a, sizeof(*g));
    if (!g) return SB_ENOMEM;
    memset(g, 0, sizeof(*g));
    if (sb_map_put(&gs->map, name, n, g)) {
      sb_free(gs->a, g);
      return SB_ENOMEM;
    }
    g->name = sb_map_key(&gs->map, name, n);
    g->name_len = n;
    created = 1;
  }
  int r = 0;
  if (g->n == g->cap) {
    uint32_t cap = g->cap ? g->cap * 2 : 4;
    sb_gslot *p = sb_realloc(gs->a, g->members, cap * sizeof(*p));
    if (!p) r = SB_ENOMEM;
    else {
      g->members = p;
      g->cap = cap;
    }
  }
  if (r == 0 && l->n == l->cap) {
    uint32_t cap = l->cap ? l->cap * 2 : 2;
    sb_gref *p = sb_realloc(gs->a, l->refs, cap * sizeof(*p));
    if (!p) r = SB_ENOMEM;
    else {
      l->refs = p;
      l->cap = cap;
    }
  }
  if (r == 0 && g->n == 0 && gs->on_first) r = gs->on_first(gs->ctx, name, n);
  if (r != 0) {
    if (created) { /* undo quietly: on_empty is for groups that had members */
      sb_free(gs->a, g->members);
      sb_map_del(&gs->map, name, n);
      sb_free(gs->a, g);
    }
    return r;
  }
  g->members[g->n] = (sb_gslot){member, l, l->n};
  l->refs[l->n] = (sb_gref){g, g->n};
  g->n++;
  l->n++;
  if (gs->on_member) gs->on_member(gs->ctx, g, member, 1);
  return 0;
}

void sb_groups_leave_at(sb_groups *gs, sb_glist *l, uint32_t i) {
  sb_group *g = l->refs[i].g;
  uint32_t slot = l->refs[i].slot;
  if (gs->on_member) gs->on_member(gs->ctx, g, g->members[slot].member, 0);
  /* Swap-remove from the group; the member moved into `slot` learns its new index. */
  g->members[slot] = g->members[--g->n];
  if (slot < g->n) g->members[slot].list->refs[g->members[slot].ref].slot = slot;
  /* Swap-remove from the member's list; the group of the moved ref learns its new index. */
  l->refs[i] = l->refs[--l->n];
  if (i < l->n) l->refs[i].g->members[l->refs[i].slot].ref = i;
  drop_if_empty(gs, g);
}

int sb_groups_leave(sb_groups *gs, sb_glist *l, const char *name, size_t n) {
  for (uint32_t i = 0; i < l->n; i++) {
    sb_group *g = l->refs[i].g;
    if (g->name_len == n && memcmp(g->name, name, n) == 0) {
      sb_groups_leave_at(gs, l, i);
      return 0;
    }
  }
  return SB_ENOTFOUND;
}

void sb_groups_leave_all(sb_groups *gs, sb_glist *l) {
  while (l->n) sb_groups_leave_at(gs, l, l->n - 1);
  sb_free(gs->a, l->refs);
  l->refs = NULL;
  l->cap = 0;
}
