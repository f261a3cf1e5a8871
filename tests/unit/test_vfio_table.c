// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The per-mapping table of the VFIO/iommufd wrappers: exact lookups by
 * IOVA, unmaps that cover one, several or all mappings of one container or
 * IOAS and nothing of another, stale records replaced on insert, put back,
 * allocation failure, and a randomized check against a flat model. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "vfio_table.h"


#define C VFIO_TABLE_CONTAINER

static struct vfio_node *insert(struct vfio_table *t, int fd, uint32_t space, uint64_t iova,
				uint64_t size, uintptr_t vaddr)
{
	struct vfio_node *n = vfio_table_node_new(t);
	struct vfio_map m = { iova, size, vaddr };

	assert_non_null(n);
	assert_null(vfio_table_insert(t, n, fd, space, &m));
	return n;
}

static void assert_list(struct vfio_node *list, size_t len, const uint64_t *iovas)
{
	size_t i = 0;

	for (; list; list = list->next, i++) {
		assert_true(i < len);
		assert_int_equal(list->map.iova, iovas[i]);
	}
	assert_int_equal(i, len);
}

static void test_find(void **state)
{
	struct vfio_table t;
	struct vfio_map m;

	(void)state;
	vfio_table_init(&t, &test_alloc);
	assert_int_equal(vfio_table_find(&t, 3, C, 0x1000, &m), -ENOENT);
	insert(&t, 3, C, 0x10000, 0x3000, 0x7f0000001000);
	insert(&t, 3, C, 0x20000, 0x1000, 0x7f0000001000);
	insert(&t, 4, C, 0x10000, 0x1000, 0x7f0000009000);
	insert(&t, 3, 7, 0x10000, 0x1000, 0x7f000000a000);
	assert_int_equal(vfio_table_count(&t), 4);
	assert_int_equal(vfio_table_find(&t, 3, C, 0x10000, &m), 0);
	assert_int_equal(m.size, 0x3000);
	assert_int_equal(m.vaddr, 0x7f0000001000);
	assert_int_equal(vfio_table_find(&t, 3, C, 0x12fff, &m), 0);
	assert_int_equal(m.iova, 0x10000);
	assert_int_equal(vfio_table_find(&t, 3, C, 0x13000, &m), -ENOENT);
	assert_int_equal(vfio_table_find(&t, 3, C, 0xffff, &m), -ENOENT);
	assert_int_equal(vfio_table_find(&t, 4, C, 0x10000, &m), 0);
	assert_int_equal(m.vaddr, 0x7f0000009000);
	assert_int_equal(vfio_table_find(&t, 3, 7, 0x10000, &m), 0);
	assert_int_equal(m.vaddr, 0x7f000000a000);
	assert_int_equal(vfio_table_find(&t, 5, C, 0x10000, &m), -ENOENT);
	vfio_table_clear(&t);
	assert_int_equal(vfio_table_count(&t), 0);
	assert_int_equal(test_alloc_live, 0);
}

/* An unmap takes what starts in its range, of its own container only. */
static void test_take_starting(void **state)
{
	static const uint64_t two[] = { 0x2000, 0x4000 }, one[] = { 0x8000 };
	struct vfio_table t;
	struct vfio_node *l;

	(void)state;
	vfio_table_init(&t, &test_alloc);
	insert(&t, 3, C, 0x2000, 0x1000, 0xa000);
	insert(&t, 3, C, 0x4000, 0x2000, 0xa000);
	insert(&t, 3, C, 0x8000, 0x1000, 0xb000);
	insert(&t, 4, C, 0x2000, 0x1000, 0xa000);
	insert(&t, 2, C, 0x4000, 0x1000, 0xa000);
	/* Nothing starts in the range. */
	assert_null(vfio_table_take_starting(&t, 3, C, 0x2001, 0x3fff));
	assert_null(vfio_table_take_starting(&t, 3, 1, 0, UINT64_MAX));
	assert_null(vfio_table_take_starting(&t, 3, C, 5, 4));
	/* Two of three, ascending. */
	l = vfio_table_take_starting(&t, 3, C, 0x2000, 0x5fff);
	assert_list(l, 2, two);
	assert_int_equal(vfio_list_bytes(l), 0x3000);
	assert_int_equal(vfio_list_length(l), 2);
	assert_int_equal(vfio_table_count(&t), 3);
	/* Put back: everything as before. */
	vfio_table_put_back(&t, l);
	assert_int_equal(vfio_table_count(&t), 5);
	l = vfio_table_take_starting(&t, 3, C, 0x2000, 0x5fff);
	assert_list(l, 2, two);
	vfio_table_free_list(&t, l);
	/* "All" of one container. */
	l = vfio_table_take_starting(&t, 3, C, 0, UINT64_MAX);
	assert_list(l, 1, one);
	vfio_table_free_list(&t, l);
	assert_int_equal(vfio_table_count(&t), 2);
	vfio_table_clear(&t);
	assert_int_equal(test_alloc_live, 0);
}

/* The top of the IOVA space: no wrap-around in range ends. */
static void test_top_of_space(void **state)
{
	static const uint64_t top[] = { UINT64_MAX - 0xfff };
	struct vfio_table t;
	struct vfio_map m;
	struct vfio_node *l;

	(void)state;
	vfio_table_init(&t, &test_alloc);
	insert(&t, 3, C, UINT64_MAX - 0xfff, 0x1000, 0x1000);
	insert(&t, 3, C, 0, 0x1000, 0x1000);
	assert_int_equal(vfio_table_find(&t, 3, C, UINT64_MAX, &m), 0);
	assert_int_equal(m.iova, UINT64_MAX - 0xfff);
	l = vfio_table_take_starting(&t, 3, C, 0x1000, UINT64_MAX);
	assert_list(l, 1, top);
	vfio_table_free_list(&t, l);
	vfio_table_clear(&t);
	assert_int_equal(test_alloc_live, 0);
}

/* A map accepted by the kernel over a record: the record was stale. */
static void test_stale_on_insert(void **state)
{
	static const uint64_t both[] = { 0x1000, 0x3000 };
	struct vfio_table t;
	struct vfio_node *n, *stale;
	struct vfio_map m = { 0x2000, 0x2000, 0xc000 }, got;

	(void)state;
	vfio_table_init(&t, &test_alloc);
	insert(&t, 3, C, 0x1000, 0x2000, 0xa000);	/* overlaps the new one's start */
	insert(&t, 3, C, 0x3000, 0x1000, 0xb000);	/* inside it */
	insert(&t, 3, C, 0x4000, 0x1000, 0xb000);	/* just after it: kept */
	insert(&t, 9, C, 0x2000, 0x1000, 0xb000);	/* another fd: kept */
	n = vfio_table_node_new(&t);
	assert_non_null(n);
	stale = vfio_table_insert(&t, n, 3, C, &m);
	assert_list(stale, 2, both);
	assert_int_equal(stale->map.vaddr, 0xa000);
	vfio_table_free_list(&t, stale);
	assert_int_equal(vfio_table_count(&t), 3);
	assert_int_equal(vfio_table_find(&t, 3, C, 0x2000, &got), 0);
	assert_int_equal(got.vaddr, 0xc000);
	assert_int_equal(vfio_table_find(&t, 3, C, 0x4000, &got), 0);
	assert_int_equal(got.vaddr, 0xb000);
	vfio_table_clear(&t);
	assert_int_equal(test_alloc_live, 0);
}

static void test_take_fd(void **state)
{
	struct vfio_table t;
	struct vfio_node *l;

	(void)state;
	vfio_table_init(&t, &test_alloc);
	insert(&t, 3, C, 0x1000, 0x1000, 0xa000);
	insert(&t, 3, 1, 0x1000, 0x1000, 0xa000);
	insert(&t, 3, 0, 0x5000, 0x1000, 0xa000);
	insert(&t, 2, C, 0x1000, 0x1000, 0xa000);
	insert(&t, 4, 0, 0x1000, 0x1000, 0xa000);
	l = vfio_table_take_fd(&t, 3);
	assert_int_equal(vfio_list_length(l), 3);
	for (struct vfio_node *n = l; n; n = n->next)
		assert_int_equal(n->fd, 3);
	vfio_table_free_list(&t, l);
	assert_null(vfio_table_take_fd(&t, 3));
	assert_int_equal(vfio_table_count(&t), 2);
	vfio_table_clear(&t);
	assert_int_equal(test_alloc_live, 0);
}

static void test_enomem(void **state)
{
	struct vfio_table t;

	(void)state;
	vfio_table_init(&t, &test_alloc);
	test_alloc_budget = 0;
	assert_null(vfio_table_node_new(&t));
	test_alloc_budget = -1;
	assert_int_equal(vfio_table_count(&t), 0);
	assert_int_equal(test_alloc_live, 0);
}

/* The child's table forgets the parent's nodes without touching them. */
static void test_forget(void **state)
{
	struct vfio_table t;

	(void)state;
	struct vfio_node *parents;

	vfio_table_init(&t, &test_alloc);
	parents = insert(&t, 3, C, 0x1000, 0x1000, 0xa000);
	vfio_table_forget(&t);
	assert_int_equal(vfio_table_count(&t), 0);
	assert_null(vfio_table_take_fd(&t, 3));
	assert_int_equal(test_alloc_live, 1);	/* the parent's node, not freed by forget */
	test_alloc.free(NULL, parents, 0);		/* in a real child it goes with the arena */
}

/* Random maps (non-overlapping per space, as the kernel guarantees) and
 * unmaps against a flat model of slots. */
#define SLOTS 64
#define SPACES 3
static void test_random_against_model(void **state)
{
	struct vfio_table t;
	uint64_t model[SPACES][SLOTS];	/* size in pages at a slot start, 0: free */
	unsigned int seed = 12345;

	(void)state;
	memset(model, 0, sizeof(model));
	vfio_table_init(&t, &test_alloc);
	for (int round = 0; round < 20000; round++) {
		int sp = rand_r(&seed) % SPACES, s = rand_r(&seed) % SLOTS;
		int fd = 10 + sp;

		if (rand_r(&seed) % 2) {
			/* Map 1..4 pages at slot s if free. */
			int pages = 1 + rand_r(&seed) % 4, ok = s + pages <= SLOTS;

			for (int i = 0; ok && i < SLOTS; i++)
				if (model[sp][i] && i < s + pages && i + (int)model[sp][i] > s)
					ok = 0;
			if (!ok)
				continue;
			model[sp][s] = (uint64_t)pages;
			insert(&t, fd, C, (uint64_t)s << 12, (uint64_t)pages << 12,
			       0x100000 + ((uintptr_t)s << 12));
		} else {
			/* Unmap the slots starting in [s, e]. */
			int e = s + rand_r(&seed) % 8;
			uint64_t want = 0, got;
			size_t want_n = 0;
			struct vfio_node *l;

			for (int i = s; i <= e && i < SLOTS; i++)
				if (model[sp][i]) {
					want += model[sp][i] << 12;
					want_n++;
					model[sp][i] = 0;
				}
			l = vfio_table_take_starting(&t, fd, C, (uint64_t)s << 12,
						     ((uint64_t)(e + 1) << 12) - 1);
			got = vfio_list_bytes(l);
			assert_int_equal(got, want);
			assert_int_equal(vfio_list_length(l), want_n);
			for (struct vfio_node *n = l; n; n = n->next) {
				assert_int_equal(n->fd, fd);
				assert_int_equal(n->map.vaddr, 0x100000 + n->map.iova);
				if (n->next)
					assert_true(n->map.iova < n->next->map.iova);
			}
			vfio_table_free_list(&t, l);
		}
	}
	for (int sp = 0; sp < SPACES; sp++) {
		size_t n = 0;
		struct vfio_node *l;

		for (int i = 0; i < SLOTS; i++)
			n += model[sp][i] != 0;
		l = vfio_table_take_fd(&t, 10 + sp);
		assert_int_equal(vfio_list_length(l), n);
		vfio_table_free_list(&t, l);
	}
	assert_int_equal(vfio_table_count(&t), 0);
	assert_int_equal(test_alloc_live, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_find),
		cmocka_unit_test(test_take_starting),
		cmocka_unit_test(test_top_of_space),
		cmocka_unit_test(test_stale_on_insert),
		cmocka_unit_test(test_take_fd),
		cmocka_unit_test(test_enomem),
		cmocka_unit_test(test_forget),
		cmocka_unit_test(test_random_against_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
