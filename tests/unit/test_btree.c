// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The B+tree against a reference model (a flag and a value per key):
 * random inserts, deletes and in-place updates, with the allocator failing
 * at random, must leave the tree holding exactly the model, in order, with
 * every structural invariant (btree_check()) intact.  Run with small items
 * (many per leaf) and with the largest (seven per leaf, six children per
 * inner node: deep trees, every split and merge path).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "btree.h"
#include "helpers.h"

#define NKEYS 3000

/* An item: the key in its first 8 bytes, a value in the next 4, padding after. */
static uint64_t item_key(const void *it)
{
	uint64_t k;

	memcpy(&k, it, sizeof(k));
	return k;
}

static uint32_t item_val(const void *it)
{
	uint32_t v;

	memcpy(&v, (const char *)it + 8, sizeof(v));
	return v;
}

static void make_item(unsigned char *it, size_t size, uint64_t key, uint32_t val)
{
	memset(it, 0xa5, size);
	memcpy(it, &key, sizeof(key));
	memcpy(it + 8, &val, sizeof(val));
}

/* Search keys are bare uint64_t. */
static int key_cmp(const void *key, const void *item)
{
	uint64_t a = *(const uint64_t *)key, b = item_key(item);

	return a < b ? -1 : a > b;
}

static int item_cmp(const void *a, const void *b)
{
	uint64_t x = item_key(a), y = item_key(b);

	return x < y ? -1 : x > y;
}

struct model {
	bool present[NKEYS];
	uint32_t val[NKEYS];
	size_t n;
};

/* Key of the i-th slot: spread out, so that seeks between keys mean something. */
static uint64_t slot_key(size_t i)
{
	return 1000 + 3 * (uint64_t)i;
}

static void check_equal(const struct btree *t, const struct model *m)
{
	struct btree_cursor c;
	const void *it;
	size_t i = 0, seen = 0;

	assert_int_equal(btree_check(t, item_cmp), 0);
	assert_int_equal(t->nr_items, m->n);
	for (it = btree_first(t, &c); it; it = btree_next(t, &c), i++, seen++) {
		while (i < NKEYS && !m->present[i])
			i++;
		assert_true(i < NKEYS);
		assert_int_equal(item_key(it), slot_key(i));
		assert_int_equal(item_val(it), m->val[i]);
	}
	assert_int_equal(seen, m->n);
	/* And backwards from the end. */
	if (m->n) {
		uint64_t last = UINT64_MAX;

		btree_seek(t, &last, true, &c);
		seen = 0;
		i = NKEYS;
		for (it = btree_prev(t, &c); it; it = btree_prev(t, &c), seen++) {
			while (!m->present[--i])
				;
			assert_int_equal(item_key(it), slot_key(i));
		}
		assert_int_equal(seen, m->n);
	}
}

/* Seeks between, at and around keys agree with the model. */
static void check_seeks(const struct btree *t, const struct model *m)
{
	for (int r = 0; r < 20; r++) {
		size_t i = (size_t)rand() % NKEYS;
		uint64_t key = slot_key(i) + (uint64_t)(rand() % 3) - 1;
		bool after = rand() % 2;
		struct btree_cursor c;
		const void *it = btree_seek(t, &key, after, &c), *prev;
		size_t want = 0, j;

		/* First slot whose key is > key (after) or >= key. */
		while (want < NKEYS && (slot_key(want) < key || (after && slot_key(want) == key)))
			want++;
		for (j = want; j < NKEYS && !m->present[j]; j++)
			;
		if (j == NKEYS) {
			assert_null(it);
		} else {
			assert_non_null(it);
			assert_int_equal(item_key(it), slot_key(j));
		}
		/* The item before the insertion point is the model's predecessor. */
		prev = btree_prev(t, &c);
		for (j = want; j > 0 && !m->present[j - 1]; j--)
			;
		if (j == 0) {
			assert_null(prev);
		} else {
			assert_non_null(prev);
			assert_int_equal(item_key(prev), slot_key(j - 1));
		}
		it = btree_find(t, &key, &c);
		if (key >= 1000 && (key - 1000) % 3 == 0 && m->present[(key - 1000) / 3])
			assert_non_null(it);
		else
			assert_null(it);
	}
}

static void random_against_model(size_t item_size, btree_cmp_fn cmp, int rounds)
{
	static struct model m, before;
	unsigned char it[BTREE_ITEM_MAX];
	struct btree t;

	memset(&m, 0, sizeof(m));
	btree_init(&t, item_size, cmp, &test_alloc);
	for (int round = 0; round < rounds; round++) {
		/* Phases that grow, then shrink, then churn the tree. */
		int grow = (round / 4000) % 3 == 0 ? 80 : (round / 4000) % 3 == 1 ? 20 : 50;
		size_t i = (size_t)rand() % NKEYS;
		uint64_t key = slot_key(i);
		struct btree_cursor c;

		before = m;
		if (!m.present[i] && rand() % 100 < grow) {
			uint32_t val = (uint32_t)rand();
			int ret;

			test_alloc_budget = rand() % 4 == 0 ? rand() % 3 : -1;
			btree_seek(&t, &key, false, &c);
			make_item(it, item_size, key, val);
			ret = btree_insert_at(&t, &c, it);
			test_alloc_budget = -1;
			if (ret) {
				assert_int_equal(ret, -ENOMEM);
				assert_memory_equal(&m, &before, sizeof(m));
			} else {
				assert_int_equal(item_key(btree_at(&t, &c)), key);
				m.present[i] = true;
				m.val[i] = val;
				m.n++;
			}
		} else if (m.present[i] && rand() % 4 == 0) {
			void *p = btree_find(&t, &key, &c);
			uint32_t val = (uint32_t)rand();

			assert_non_null(p);
			memcpy((char *)p + 8, &val, sizeof(val));
			m.val[i] = val;
		} else if (m.present[i]) {
			assert_non_null(btree_find(&t, &key, &c));
			/* Deleting never allocates. */
			test_alloc_budget = 0;
			btree_delete_at(&t, &c);
			test_alloc_budget = -1;
			m.present[i] = false;
			m.n--;
		} else {
			assert_null(btree_find(&t, &key, &c));
		}
		if (round % 97 == 0 || m.n < 20)
			check_equal(&t, &m);
		check_seeks(&t, &m);
	}
	check_equal(&t, &m);
	btree_clear(&t);
	assert_int_equal(test_alloc_live, 0);
}

static void test_small_items(void **state)
{
	(void)state;
	srand(4242);
	random_against_model(12, key_cmp, 40000);
}

static void test_large_items(void **state)
{
	(void)state;
	srand(777);
	random_against_model(BTREE_ITEM_MAX, key_cmp, 40000);
}

/* No comparison function: the inline search on a uint64_t key, odd item size. */
static void test_u64_keys(void **state)
{
	(void)state;
	srand(31337);
	random_against_model(13, NULL, 40000);
}

/* After btree_reserve() of the worst case, that many inserts take no memory. */
static void test_reserve_covers_inserts(void **state)
{
	unsigned char it[BTREE_ITEM_MAX];
	struct btree t;

	(void)state;
	srand(99);
	for (int round = 0; round < 300; round++) {
		size_t k = 1 + (size_t)rand() % 6, fill = (size_t)rand() % 400;

		btree_init(&t, BTREE_ITEM_MAX, key_cmp, &test_alloc);
		for (size_t i = 0; i < fill; i++) {
			uint64_t key = (uint64_t)rand() % 100000 * 2;
			struct btree_cursor c;

			if (btree_find(&t, &key, &c))
				continue;
			make_item(it, BTREE_ITEM_MAX, key, 0);
			btree_seek(&t, &key, false, &c);
			assert_int_equal(btree_insert_at(&t, &c, it), 0);
		}
		assert_int_equal(btree_reserve(&t, btree_insert_worst(&t, k)), 0);
		test_alloc_budget = 0;
		/* Odd keys in one spot: all into the same leaf and its ancestors. */
		for (size_t i = 0; i < k; i++) {
			uint64_t key = 2 * 50000 + 1 + 2 * i;
			struct btree_cursor c;

			make_item(it, BTREE_ITEM_MAX, key, 1);
			btree_seek(&t, &key, false, &c);
			assert_int_equal(btree_insert_at(&t, &c, it), 0);
		}
		test_alloc_budget = -1;
		assert_int_equal(btree_check(&t, item_cmp), 0);
		btree_clear(&t);
		assert_int_equal(test_alloc_live, 0);
	}
}

/* Ascending and descending fills, then emptying from either end. */
static void test_sequential(void **state)
{
	unsigned char it[BTREE_ITEM_MAX];
	struct btree_cursor c;
	struct btree t;
	enum { N = 5000 };

	(void)state;
	for (int dir = 0; dir < 2; dir++) {
		btree_init(&t, 16, key_cmp, &test_alloc);
		for (uint64_t i = 0; i < N; i++) {
			uint64_t key = dir ? N - i : i;

			make_item(it, 16, key, (uint32_t)key);
			btree_seek(&t, &key, false, &c);
			assert_int_equal(btree_insert_at(&t, &c, it), 0);
		}
		assert_int_equal(btree_check(&t, item_cmp), 0);
		assert_int_equal(t.nr_items, N);
		if (!dir)	/* appends fill leaves whole */
			assert_true(t.nr_nodes * t.leaf_cap < (size_t)N + N / 10 + 2u * t.leaf_cap);
		for (uint64_t i = 0; i < N; i++) {
			btree_first(&t, &c);
			if (dir) {
				uint64_t last = UINT64_MAX;

				btree_seek(&t, &last, true, &c);
				btree_prev(&t, &c);
			}
			btree_delete_at(&t, &c);
			if (i % 500 == 0)
				assert_int_equal(btree_check(&t, item_cmp), 0);
		}
		assert_null(t.root);
		assert_int_equal(t.nr_nodes, 0);
		btree_clear(&t);
		assert_int_equal(test_alloc_live, 0);
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_small_items),
		cmocka_unit_test(test_large_items),
		cmocka_unit_test(test_u64_keys),
		cmocka_unit_test(test_reserve_covers_inserts),
		cmocka_unit_test(test_sequential),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
