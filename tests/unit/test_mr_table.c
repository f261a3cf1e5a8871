// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The per-region pin table of the verbs API: lookups, take/put back,
 * stale entries, allocation failure, many keys in any order. */
#include <errno.h>
#include <stdlib.h>

#include "helpers.h"
#include "mr_table.h"


#define KEY(n) ((const void *)(uintptr_t)(0x10000 + 64 * (n)))

static void insert(struct mr_table *t, const void *key, uintptr_t addr, size_t len)
{
	struct mr_node *n = mr_table_node_new(t);
	struct mr_pin p = { addr, len }, stale;

	assert_non_null(n);
	assert_int_equal(mr_table_insert(t, n, key, &p, &stale), 0);
}

static void test_find_and_take(void **state)
{
	struct mr_table t;
	struct mr_pin got;
	struct mr_node *n;

	(void)state;
	mr_table_init(&t, &test_alloc);
	assert_int_equal(mr_table_find(&t, KEY(1), &got), -ENOENT);
	assert_null(mr_table_take(&t, KEY(1)));
	insert(&t, KEY(1), 0x1000, 100);
	insert(&t, KEY(2), 0x5000, 8192);
	assert_int_equal(mr_table_count(&t), 2);
	assert_int_equal(mr_table_find(&t, KEY(2), &got), 0);
	assert_int_equal(got.addr, 0x5000);
	assert_int_equal(got.len, 8192);
	n = mr_table_take(&t, KEY(1));
	assert_non_null(n);
	assert_int_equal(n->pin.addr, 0x1000);
	assert_int_equal(n->pin.len, 100);
	assert_int_equal(mr_table_count(&t), 1);
	assert_int_equal(mr_table_find(&t, KEY(1), &got), -ENOENT);
	assert_null(mr_table_take(&t, KEY(1)));
	mr_table_node_free(&t, n);
	mr_table_clear(&t);
	assert_int_equal(mr_table_count(&t), 0);
	assert_int_equal(test_alloc_live, 0);
}

/* A node taken out (a failing dereg) goes back in unchanged. */
static void test_take_and_put_back(void **state)
{
	struct mr_table t;
	struct mr_pin got, stale;
	struct mr_node *n;

	(void)state;
	mr_table_init(&t, &test_alloc);
	insert(&t, KEY(7), 0x7000, 1);
	n = mr_table_take(&t, KEY(7));
	assert_non_null(n);
	assert_int_equal(mr_table_insert(&t, n, KEY(7), &n->pin, &stale), 0);
	assert_int_equal(mr_table_find(&t, KEY(7), &got), 0);
	assert_int_equal(got.addr, 0x7000);
	assert_int_equal(got.len, 1);
	assert_int_equal(test_alloc_live, 1);
	mr_table_clear(&t);
	assert_int_equal(test_alloc_live, 0);
}

/* The same key twice: the old entry was stale; its pin is handed back. */
static void test_stale_entry_replaced(void **state)
{
	struct mr_table t;
	struct mr_pin p = { 0x9000, 4096 }, stale = { 0 }, got;
	struct mr_node *n;

	(void)state;
	mr_table_init(&t, &test_alloc);
	insert(&t, KEY(3), 0x3000, 300);
	n = mr_table_node_new(&t);
	assert_non_null(n);
	assert_int_equal(mr_table_insert(&t, n, KEY(3), &p, &stale), 1);
	assert_int_equal(stale.addr, 0x3000);
	assert_int_equal(stale.len, 300);
	assert_int_equal(mr_table_count(&t), 1);
	assert_int_equal(test_alloc_live, 1);
	assert_int_equal(mr_table_find(&t, KEY(3), &got), 0);
	assert_int_equal(got.addr, 0x9000);
	assert_int_equal(got.len, 4096);
	mr_table_clear(&t);
	assert_int_equal(test_alloc_live, 0);
}

static void test_enomem(void **state)
{
	struct mr_table t;

	(void)state;
	mr_table_init(&t, &test_alloc);
	test_alloc_budget = 0;
	assert_null(mr_table_node_new(&t));
	test_alloc_budget = -1;
	assert_int_equal(mr_table_count(&t), 0);
	mr_table_clear(&t);
}

/* forget() drops nodes without touching them (a forked child's view). */
static void test_forget(void **state)
{
	struct mr_table t;
	struct mr_node *all[3];
	struct mr_pin got, stale;

	(void)state;
	mr_table_init(&t, &test_alloc);
	for (int i = 0; i < 3; i++) {
		all[i] = mr_table_node_new(&t);
		assert_non_null(all[i]);
		got = (struct mr_pin){ 0x1000u * (i + 1), 10 };
		assert_int_equal(mr_table_insert(&t, all[i], KEY(i), &got, &stale), 0);
	}
	mr_table_forget(&t);
	assert_int_equal(mr_table_count(&t), 0);
	assert_int_equal(mr_table_find(&t, KEY(1), &got), -ENOENT);
	insert(&t, KEY(1), 0x1000, 1);
	assert_int_equal(mr_table_count(&t), 1);
	mr_table_clear(&t);
	/* The forgotten nodes were not freed by the table. */
	assert_int_equal(test_alloc_live, 3);
	for (int i = 0; i < 3; i++)
		mr_table_node_free(&t, all[i]);
	assert_int_equal(test_alloc_live, 0);
}

/* Many keys inserted and removed in scrambled orders against a reference. */
static void test_many_keys(void **state)
{
	enum { N = 2000 };
	static uintptr_t ref[N];	/* 0: absent, else the pinned address */
	struct mr_table t;
	unsigned int seed = 12345;

	(void)state;
	mr_table_init(&t, &test_alloc);
	for (int round = 0; round < 20000; round++) {
		int k = (int)(rand_r(&seed) % N);
		struct mr_pin got;

		if (!ref[k]) {
			ref[k] = 0x100000 + (uintptr_t)round * 4096;
			insert(&t, KEY(k), ref[k], (size_t)k + 1);
		} else if (rand_r(&seed) % 2) {
			struct mr_node *n = mr_table_take(&t, KEY(k));

			assert_non_null(n);
			assert_int_equal(n->pin.addr, ref[k]);
			mr_table_node_free(&t, n);
			ref[k] = 0;
		} else {
			assert_int_equal(mr_table_find(&t, KEY(k), &got), 0);
			assert_int_equal(got.addr, ref[k]);
			assert_int_equal(got.len, (size_t)k + 1);
		}
	}
	size_t live = 0;
	for (int k = 0; k < N; k++) {
		struct mr_pin got;

		live += ref[k] != 0;
		assert_int_equal(mr_table_find(&t, KEY(k), &got), ref[k] ? 0 : -ENOENT);
	}
	assert_int_equal(mr_table_count(&t), live);
	assert_int_equal(test_alloc_live, (long)live);
	mr_table_clear(&t);
	assert_int_equal(test_alloc_live, 0);
}

/* Every combination of old pin, translation and access change. */
static void test_rereg_plan(void **state)
{
	const struct mr_pin old = { 0x10000, 0x2000 }, want = { 0x40000, 0x3000 },
			    cur = { 0x10000, 0x2000 }, empty = { 0x40000, 0 };
	struct mr_rereg_plan p;

	(void)state;
	/* Access only, pinned stays pinned: nothing moves. */
	mr_rereg_plan(&p, &old, NULL, &cur, true, false);
	assert_true(p.new_pinned && !p.pin_new && !p.unpin_old);
	assert_int_equal(p.new.addr, old.addr);
	/* Translation: pin the new range first, release the old after. */
	mr_rereg_plan(&p, &old, &want, &cur, false, false);
	assert_true(p.new_pinned && p.pin_new && p.unpin_old);
	assert_int_equal(p.new.addr, want.addr);
	assert_int_equal(p.new.len, want.len);
	/* To ODP: the old pin goes, nothing new. */
	mr_rereg_plan(&p, &old, NULL, &cur, true, true);
	assert_true(!p.new_pinned && !p.pin_new && p.unpin_old);
	/* From ODP (no pin) to pinned: the current range gets pinned. */
	mr_rereg_plan(&p, NULL, NULL, &cur, true, false);
	assert_true(p.new_pinned && p.pin_new && !p.unpin_old);
	assert_int_equal(p.new.addr, cur.addr);
	/* ODP region, PD change only: stays unpinned. */
	mr_rereg_plan(&p, NULL, NULL, &cur, false, false);
	assert_true(!p.new_pinned && !p.pin_new && !p.unpin_old);
	/* A zero-length new range pins nothing. */
	mr_rereg_plan(&p, &old, &empty, &cur, true, false);
	assert_true(!p.new_pinned && !p.pin_new && p.unpin_old);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_rereg_plan),
		cmocka_unit_test(test_find_and_take),
		cmocka_unit_test(test_take_and_put_back),
		cmocka_unit_test(test_stale_entry_replaced),
		cmocka_unit_test(test_enomem),
		cmocka_unit_test(test_forget),
		cmocka_unit_test(test_many_keys),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
