/*
 * test_groups.c — group membership (src/hub/groups.c). A model (a plain matrix of who is in
 * which group) is driven with the implementation through thousands of random joins and leaves;
 * after every step the two must agree, and every back index must point back: a member's ref
 * names the slot that names the member, and the other way round. Plus the first/empty hooks,
 * a refused first join, and one group of 100,000 members.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "hub/groups.h"

#define MEMBERS 40
#define GROUPS 12

typedef struct member {
  int id;
  sb_glist list;
} member;

static int firsts, empties, refuse_first;
static char last_first[32], last_empty[32];

static int on_first(void *ctx, const char *name, size_t n) {
  (void)ctx;
  if (refuse_first) return SB_EIO;
  firsts++;
  snprintf(last_first, sizeof(last_first), "%.*s", (int)n, name);
  return 0;
}

static void on_empty(void *ctx, const char *name, size_t n) {
  (void)ctx;
  empties++;
  snprintf(last_empty, sizeof(last_empty), "%.*s", (int)n, name);
}

static void setup_groups(sb_groups *gs) {
  sb_groups_init(gs, &sb_default_allocator);
  gs->on_first = on_first;
  gs->on_empty = on_empty;
  firsts = empties = refuse_first = 0;
}

static void check(const sb_groups *gs, member *m, int model[MEMBERS][GROUPS]) {
  char name[16];
  for (int g = 0; g < GROUPS; g++) {
    snprintf(name, sizeof(name), "g%d", g);
    uint32_t expect = 0;
    for (int i = 0; i < MEMBERS; i++) expect += (uint32_t)model[i][g];
    sb_group *grp = sb_groups_find(gs, name, strlen(name));
    if (expect == 0) {
      assert_null(grp); /* empty groups are forgotten */
      continue;
    }
    assert_non_null(grp);
    assert_int_equal(grp->n, expect);
    for (uint32_t s = 0; s < grp->n; s++) {
      member *mm = grp->members[s].member;
      assert_true(model[mm->id][g]);
      assert_ptr_equal(grp->members[s].list, &mm->list);
      sb_gref *ref = &mm->list.refs[grp->members[s].ref];
      assert_ptr_equal(ref->g, grp);
      assert_int_equal(ref->slot, s);
    }
  }
  for (int i = 0; i < MEMBERS; i++) {
    uint32_t expect = 0;
    for (int g = 0; g < GROUPS; g++) expect += (uint32_t)model[i][g];
    assert_int_equal(m[i].list.n, expect);
    for (uint32_t r = 0; r < m[i].list.n; r++) {
      sb_gref *ref = &m[i].list.refs[r];
      assert_ptr_equal(ref->g->members[ref->slot].member, &m[i]);
      assert_int_equal(ref->g->members[ref->slot].ref, r);
    }
  }
}

static void test_random_against_model(void **state) {
  (void)state;
  sb_groups gs;
  setup_groups(&gs);
  member m[MEMBERS];
  int model[MEMBERS][GROUPS];
  memset(m, 0, sizeof(m));
  memset(model, 0, sizeof(model));
  for (int i = 0; i < MEMBERS; i++) m[i].id = i;
  srand(12345);
  int expect_firsts = 0, expect_empties = 0;
  char name[16];
  for (int step = 0; step < 20000; step++) {
    int i = rand() % MEMBERS, g = rand() % GROUPS, op = rand() % 10;
    snprintf(name, sizeof(name), "g%d", g);
    int count = 0;
    for (int k = 0; k < MEMBERS; k++) count += model[k][g];
    if (op < 5) {
      if (!model[i][g] && count == 0) expect_firsts++;
      assert_int_equal(sb_groups_join(&gs, &m[i].list, &m[i], name, strlen(name)), 0);
      model[i][g] = 1;
    } else if (op < 9) {
      int r = sb_groups_leave(&gs, &m[i].list, name, strlen(name));
      assert_int_equal(r, model[i][g] ? 0 : SB_ENOTFOUND);
      if (model[i][g] && count == 1) expect_empties++;
      model[i][g] = 0;
    } else {
      for (int k = 0; k < GROUPS; k++) {
        if (!model[i][k]) continue;
        int c = 0;
        for (int x = 0; x < MEMBERS; x++) c += model[x][k];
        if (c == 1) expect_empties++;
        model[i][k] = 0;
      }
      sb_groups_leave_all(&gs, &m[i].list);
    }
    if (step % 97 == 0) check(&gs, m, model);
  }
  check(&gs, m, model);
  assert_int_equal(firsts, expect_firsts);
  assert_int_equal(empties, expect_empties);
  for (int i = 0; i < MEMBERS; i++) sb_groups_leave_all(&gs, &m[i].list);
  assert_int_equal(gs.map.len, 0);
  sb_groups_free(&gs);
}

static void test_hooks_and_refusal(void **state) {
  (void)state;
  sb_groups gs;
  setup_groups(&gs);
  member a = {0, {0}}, b = {1, {0}};
  assert_int_equal(sb_groups_join(&gs, &a.list, &a, "room", 4), 0);
  assert_int_equal(firsts, 1);
  assert_string_equal(last_first, "room");
  assert_int_equal(sb_groups_join(&gs, &b.list, &b, "room", 4), 0);
  assert_int_equal(sb_groups_join(&gs, &b.list, &b, "room", 4), 0); /* twice: once */
  assert_int_equal(firsts, 1);
  assert_int_equal(sb_groups_find(&gs, "room", 4)->n, 2);
  assert_int_equal(sb_groups_leave(&gs, &a.list, "room", 4), 0);
  assert_int_equal(empties, 0);
  assert_int_equal(sb_groups_leave(&gs, &b.list, "room", 4), 0);
  assert_int_equal(empties, 1);
  assert_string_equal(last_empty, "room");
  assert_null(sb_groups_find(&gs, "room", 4));
  /* a refused first join changes nothing */
  refuse_first = 1;
  assert_int_equal(sb_groups_join(&gs, &a.list, &a, "other", 5), SB_EIO);
  assert_null(sb_groups_find(&gs, "other", 5));
  assert_int_equal(a.list.n, 0);
  assert_int_equal(empties, 1);
  sb_groups_leave_all(&gs, &a.list);
  sb_groups_leave_all(&gs, &b.list);
  sb_groups_free(&gs);
}

static void test_hundred_thousand_members(void **state) {
  (void)state;
  enum { N = 100000 };
  sb_groups gs;
  setup_groups(&gs);
  member *m = calloc(N, sizeof(*m));
  assert_non_null(m);
  for (int i = 0; i < N; i++) {
    m[i].id = i;
    assert_int_equal(sb_groups_join(&gs, &m[i].list, &m[i], "big", 3), 0);
  }
  sb_group *g = sb_groups_find(&gs, "big", 3);
  assert_int_equal(g->n, N);
  /* every member exactly once */
  char *seen = calloc(N, 1);
  for (uint32_t s = 0; s < g->n; s++) {
    member *mm = g->members[s].member;
    assert_int_equal(seen[mm->id], 0);
    seen[mm->id] = 1;
  }
  /* leave every other one, then check the rest are intact */
  for (int i = 0; i < N; i += 2) sb_groups_leave_all(&gs, &m[i].list);
  assert_int_equal(g->n, N / 2);
  for (uint32_t s = 0; s < g->n; s++) {
    member *mm = g->members[s].member;
    assert_int_equal(mm->id % 2, 1);
    assert_int_equal(mm->list.refs[g->members[s].ref].slot, s);
  }
  for (int i = 1; i < N; i += 2) sb_groups_leave_all(&gs, &m[i].list);
  assert_null(sb_groups_find(&gs, "big", 3));
  assert_int_equal(empties, 1);
  free(seen);
  free(m);
  sb_groups_free(&gs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_random_against_model),
      cmocka_unit_test(test_hooks_and_refusal),
      cmocka_unit_test(test_hundred_thousand_members),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
