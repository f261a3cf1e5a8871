// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The registration multiset: exact matching, duplicates, ENOMEM. */
#include <errno.h>
#include <stdlib.h>

#include "helpers.h"
#include "reg_table.h"


static void test_exact_match_and_duplicates(void **state)
{
	struct reg_table t;
	struct reg_extent a = { .start = 0x1000, .end = 0x3000 }, got;

	(void)state;
	reg_table_init(&t, &test_alloc);
	assert_int_equal(reg_table_find(&t, 0x1100, 0x100, &got), -ENOENT);
	assert_int_equal(reg_table_add(&t, 0x1100, 0x1f00, &a), 0);
	assert_int_equal(reg_table_add(&t, 0x1100, 0x1f00, &a), 0);
	assert_int_equal(t.nr_live, 2);
	assert_int_equal(reg_table_find(&t, 0x1100, 0x1eff, &got), -ENOENT);
	assert_int_equal(reg_table_find(&t, 0x1100, 0x1f00, &got), 0);
	assert_int_equal(got.start, 0x1000);
	assert_int_equal(got.end, 0x3000);
	assert_int_equal(reg_table_del(&t, 0x1100, 0x1f00, &got), 0);
	assert_int_equal(reg_table_del(&t, 0x1100, 0x1f00, &got), 0);
	assert_int_equal(reg_table_del(&t, 0x1100, 0x1f00, &got), -ENOENT);
	assert_int_equal(t.nr_live, 0);
	reg_table_clear(&t);
}

static void test_enomem_changes_nothing(void **state)
{
	struct reg_table t;
	struct reg_extent a = { .start = 0x1000, .end = 0x2000 }, got;

	(void)state;
	reg_table_init(&t, &test_alloc);
	test_alloc_budget = 0;
	assert_int_equal(reg_table_add(&t, 0x1000, 10, &a), -ENOMEM);
	test_alloc_budget = -1;
	assert_int_equal(t.nr_live, 0);
	assert_int_equal(reg_table_find(&t, 0x1000, 10, &got), -ENOENT);
	reg_table_clear(&t);
}

/* Parking and reviving: one registration moves between two tables. */
static void test_move_between_tables(void **state)
{
	struct reg_table live, parked;
	struct reg_extent a = { .start = 0x1000, .end = 0x3000 }, got;

	(void)state;
	reg_table_init(&live, &test_alloc);
	reg_table_init(&parked, &test_alloc);
	assert_int_equal(reg_table_move(&live, &parked, 0x1100, 0x1f00, &got), -ENOENT);
	assert_int_equal(reg_table_add(&live, 0x1100, 0x1f00, &a), 0);

	/* Alone in its entry: the node itself moves, nothing is allocated. */
	test_alloc_budget = 0;
	assert_int_equal(reg_table_move(&live, &parked, 0x1100, 0x1f00, &got), 0);
	assert_int_equal(got.start, 0x1000);
	assert_int_equal(got.end, 0x3000);
	assert_int_equal(live.nr_live, 0);
	assert_int_equal(parked.nr_live, 1);
	assert_int_equal(reg_table_find(&live, 0x1100, 0x1f00, &got), -ENOENT);
	assert_int_equal(reg_table_find(&parked, 0x1100, 0x1f00, &got), 0);

	/* Two identical: the one that moves needs a node of its own. */
	test_alloc_budget = -1;
	assert_int_equal(reg_table_add(&parked, 0x1100, 0x1f00, &a), 0);
	test_alloc_budget = 0;
	assert_int_equal(reg_table_move(&parked, &live, 0x1100, 0x1f00, &got), -ENOMEM);
	assert_int_equal(live.nr_live, 0);	/* refused: both unchanged */
	assert_int_equal(parked.nr_live, 2);
	test_alloc_budget = -1;
	assert_int_equal(reg_table_move(&parked, &live, 0x1100, 0x1f00, &got), 0);
	assert_int_equal(live.nr_live, 1);
	assert_int_equal(parked.nr_live, 1);

	/* The last one joins the identical live entry; its node is freed. */
	test_alloc_budget = 0;
	assert_int_equal(reg_table_move(&parked, &live, 0x1100, 0x1f00, &got), 0);
	test_alloc_budget = -1;
	assert_int_equal(parked.nr_live, 0);
	assert_int_equal(live.nr_live, 2);
	assert_int_equal(reg_table_find(&parked, 0x1100, 0x1f00, &got), -ENOENT);
	assert_int_equal(reg_table_del(&live, 0x1100, 0x1f00, &a), 0);
	assert_int_equal(reg_table_del(&live, 0x1100, 0x1f00, &a), 0);
	assert_int_equal(reg_table_del(&live, 0x1100, 0x1f00, &a), -ENOENT);
	reg_table_clear(&live);
	reg_table_clear(&parked);
}

static void test_many_random(void **state)
{
	enum { N = 2000 };
	struct reg_table t;
	static uintptr_t addr[N];
	static int live[N];

	(void)state;
	srand(7);
	reg_table_init(&t, &test_alloc);
	for (int i = 0; i < N; i++)
		addr[i] = (uintptr_t)(rand() % 500) * 0x1000 + 0x10000;
	for (int round = 0; round < 20000; round++) {
		int i = rand() % N;
		struct reg_extent e = { .start = addr[i], .end = addr[i] + 0x1000 }, got;

		if (live[i] && rand() % 2) {
			assert_int_equal(reg_table_find(&t, addr[i], 0x1000, &got), 0);
			assert_int_equal(reg_table_del(&t, addr[i], 0x1000, &e), 0);
			live[i]--;
		} else {
			assert_int_equal(reg_table_add(&t, addr[i], 0x1000, &e), 0);
			live[i]++;
		}
	}
	size_t total = 0;
	for (int i = 0; i < N; i++)
		total += (size_t)live[i];
	assert_int_equal(t.nr_live, total);
	reg_table_clear(&t);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_match_and_duplicates),
		cmocka_unit_test(test_enomem_changes_nothing),
		cmocka_unit_test(test_move_between_tables),
		cmocka_unit_test(test_many_random),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
