/*
 * groups.h — group membership: which members (connections) are in which groups, on this node.
 *
 * Each group keeps its members in a dense array (fan-out is a linear walk over it), and each
 * member keeps the list of its groups. Both sides store the other's index, so join and leave
 * are O(1) (plus the member's own group count for the duplicate check) and a member leaves all
 * its groups in O(its groups). The first member of a group and the last one leaving are
 * reported through on_first / on_empty: the hub subscribes the node to the group's stream and
 * unsubscribes it there. Every membership made and undone is reported through on_member (the
 * hub's presence).
 */
#ifndef SB_HUB_GROUPS_H
#define SB_HUB_GROUPS_H

#include <stddef.h>
#include <stdint.h>

#include "common/map.h"

typedef struct sb_group sb_group;

typedef struct sb_gslot { /* a member, as its group sees it */
  void *member;
  struct sb_glist *list; /* the member's list of groups */
  uint32_t ref;          /* index in list->refs */
} sb_gslot;

typedef struct sb_gref { /* a group, as its member sees it */
  sb_group *g;
  uint32_t slot; /* index in g->members */
} sb_gref;

typedef struct sb_glist { /* a member's groups; zero-initialised is empty */
  sb_gref *refs;
  uint32_t n, cap;
} sb_glist;

struct sb_group {
  const char *name; /* NUL-terminated, owned by the map */
  size_t name_len;
  sb_gslot *members;
  uint32_t n, cap;
};

typedef struct sb_groups {
  sb_map map; /* name → sb_group */
  const sb_allocator *a;
  /* The group gets its first member; a non-zero return refuses the join. */
  int (*on_first)(void *ctx, const char *name, size_t n);
  /* The group lost its last member (it is freed right after). */
  void (*on_empty)(void *ctx, const char *name, size_t n);
  /* A member joined the group (after on_first), or is leaving it (before on_empty). */
  void (*on_member)(void *ctx, const sb_group *g, void *member, int joined);
  void *ctx;
} sb_groups;

void sb_groups_init(sb_groups *gs, const sb_allocator *a);
void sb_groups_free(sb_groups *gs);
sb_group *sb_groups_find(const sb_groups *gs, const char *name, size_t n);

/* Puts `member` (whose group list is `l`) into group `name`. 0 when it joined or was already
 * a member; SB_ENOMEM, or on_first's error, otherwise (nothing changed). */
int sb_groups_join(sb_groups *gs, sb_glist *l, void *member, const char *name, size_t n);

/* Takes the member out of the group at l->refs[i]. */
void sb_groups_leave_at(sb_groups *gs, sb_glist *l, uint32_t i);

/* Takes the member out of group `name`; 0, or SB_ENOTFOUND if it was not in it. */
int sb_groups_leave(sb_groups *gs, sb_glist *l, const char *name, size_t n);

/* Takes the member out of every group and frees the list's memory. */
void sb_groups_leave_all(sb_groups *gs, sb_glist *l);

#endif
