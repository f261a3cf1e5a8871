// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The page-count map against a reference model: one counter and one mark
 * per page, updated the obvious way.  Random adds and subs, with the
 * allocator failing at random, must leave both in the same state, and the
 * runs reported on 1->0 must be exactly the maximal runs of pages that
 * dropped to zero.  A remark changes the mark of counted pages only.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "helpers.h"
#include "range_map.h"

#define MAXPAGES 1536
/* Pages in play: 96 for the long run, more for a map that spans many B-tree leaves. */
static size_t npages = 96;
#define BASE 0x40000000ul
#define ADDR(p) (BASE + (uintptr_t)(p) * PAGE)


struct model {
	unsigned int count[MAXPAGES];
	enum range_mark mark[MAXPAGES];
};

/* Every page of @seg has @count and @seg->mark in the model. Return its pages. */
static size_t assert_seg_matches(const struct model *m, const struct range_seg *seg,
				 unsigned int count)
{
	size_t n = 0;

	for (uintptr_t a = seg->start; a < seg->end; a += PAGE, n++) {
		size_t p = (a - BASE) / PAGE;

		assert_int_equal(m->count[p], count);
		assert_int_equal(m->mark[p], seg->mark);
	}
	return n;
}

struct walk_check {
	const struct model *m;
	uintptr_t prev_end;
	unsigned int prev_count;
	enum range_mark prev_mark;
	size_t pages;
};

static int check_interval(void *ctx, const struct range_seg *seg, unsigned int count)
{
	struct walk_check *w = ctx;

	assert_true(seg->start < seg->end);
	assert_true(seg->start >= w->prev_end);
	assert_true(count >= 1);
	/* Neighbours with equal count and mark must have been merged. */
	if (seg->start == w->prev_end)
		assert_false(count == w->prev_count && seg->mark == w->prev_mark);
	w->pages += assert_seg_matches(w->m, seg, count);
	w->prev_end = seg->end;
	w->prev_count = count;
	w->prev_mark = seg->mark;
	return 0;
}

struct window_check {
	const struct model *m;
	uintptr_t start, end, prev_end;
	size_t pages;
};

static int check_window_interval(void *ctx, const struct range_seg *seg, unsigned int count)
{
	struct window_check *w = ctx;

	assert_true(seg->start >= w->start && seg->end <= w->end);
	assert_true(seg->start < seg->end && seg->start >= w->prev_end);
	w->pages += assert_seg_matches(w->m, seg, count);
	w->prev_end = seg->end;
	return 0;
}

/* range_map_walk_range() over a random window: exactly the counted pages inside it. */
static void check_window(const struct range_map *map, const struct model *m)
{
	size_t a = (size_t)rand() % npages, b = a + (size_t)rand() % (npages - a + 1);
	struct window_check w = { .m = m, .start = ADDR(a), .end = ADDR(b), .prev_end = ADDR(a) };
	size_t counted = 0;

	for (size_t p = a; p < b; p++)
		counted += m->count[p] != 0;
	assert_int_equal(range_map_walk_range(map, w.start, w.end, check_window_interval, &w), 0);
	assert_int_equal(w.pages, counted);
}

static void check_equal(const struct range_map *map, const struct model *m)
{
	struct walk_check w = { .m = m };
	size_t nonzero = 0;

	for (size_t p = 0; p < npages; p++) {
		enum range_mark mk = RANGE_MARK_NONE;

		assert_int_equal(range_map_count(map, ADDR(p), &mk), m->count[p]);
		if (m->count[p]) {
			assert_int_equal(mk, m->mark[p]);
			nonzero++;
		}
	}
	assert_int_equal(range_map_check(map), 0);
	range_map_walk(map, check_interval, &w);
	assert_int_equal(w.pages, nonzero);
	check_window(map, m);
}

struct seg_list {
	struct range_seg s[MAXPAGES];
	size_t n;
};

static int collect(void *ctx, const struct range_seg *seg)
{
	struct seg_list *l = ctx;

	assert_true(l->n < MAXPAGES);
	l->s[l->n++] = *seg;
	return 0;
}

/* Cut every gap into random pieces with random marks. */
static void random_segs(const struct range_map *map, uintptr_t a, uintptr_t b,
			struct seg_list *out)
{
	struct seg_list gaps = { .n = 0 };

	range_map_gaps(map, a, b, collect, &gaps);
	out->n = 0;
	for (size_t i = 0; i < gaps.n; i++) {
		uintptr_t pos = gaps.s[i].start;

		while (pos < gaps.s[i].end) {
			size_t left = (gaps.s[i].end - pos) / PAGE;
			uintptr_t end = pos + (1 + (size_t)rand() % left) * PAGE;

			out->s[out->n++] = (struct range_seg){ pos, end, (enum range_mark)(rand() % 3) };
			pos = end;
		}
	}
}

static void model_add(struct model *m, size_t a, size_t b, const struct seg_list *segs)
{
	for (size_t p = a; p < b; p++)
		if (m->count[p])
			m->count[p]++;
	for (size_t i = 0; i < segs->n; i++)
		for (uintptr_t x = segs->s[i].start; x < segs->s[i].end; x += PAGE) {
			size_t p = (x - BASE) / PAGE;

			m->count[p] = 1;
			m->mark[p] = segs->s[i].mark;
		}
}

/* Maximal runs of pages in [a, b) that have count 1 now, split by mark. */
static void expected_drops(const struct model *m, size_t a, size_t b, struct seg_list *out)
{
	out->n = 0;
	for (size_t p = a; p < b; p++) {
		if (m->count[p] != 1)
			continue;
		if (out->n && out->s[out->n - 1].end == ADDR(p) &&
		    out->s[out->n - 1].mark == m->mark[p])
			out->s[out->n - 1].end = ADDR(p + 1);
		else
			out->s[out->n++] = (struct range_seg){ ADDR(p), ADDR(p + 1), m->mark[p] };
	}
}

static void random_against_model(size_t pages, int rounds, unsigned int seed)
{
	static struct model m;
	struct range_map map;

	npages = pages;
	srand(seed);
	memset(&m, 0, sizeof(m));
	range_map_init(&map, &test_alloc);
	for (int round = 0; round < rounds; round++) {
		size_t a = (size_t)rand() % npages, b = a + 1 + (size_t)rand() % (npages - a);
		bool covered = true;
		struct model before = m;
		int ret;

		for (size_t p = a; p < b; p++)
			covered &= m.count[p] > 0;
		test_alloc_budget = rand() % 8 == 0 ? rand() % 4 : -1;
		if (rand() % 5 == 0) {
			enum range_mark from = (enum range_mark)(rand() % 3);
			enum range_mark to = (enum range_mark)(rand() % 3);

			ret = range_map_remark(&map, ADDR(a), ADDR(b), from, to);
			if (ret) {
				assert_int_equal(ret, -ENOMEM);
			} else {
				for (size_t p = a; p < b; p++)
					if (m.count[p] && m.mark[p] == from)
						m.mark[p] = to;
			}
		} else if (rand() % 2 || !covered) {
			struct seg_list segs;

			random_segs(&map, ADDR(a), ADDR(b), &segs);
			ret = range_map_add(&map, ADDR(a), ADDR(b), segs.s, segs.n);
			if (ret) {
				assert_int_equal(ret, -ENOMEM);
				assert_memory_equal(&m, &before, sizeof(m));
			} else {
				/* A successful add can always be rolled back, memory or not. */
				if (rand() % 4 == 0) {
					test_alloc_budget = 0;
					assert_int_equal(range_map_sub(&map, ADDR(a), ADDR(b), NULL,
								       NULL), 0);
					test_alloc_budget = -1;
					check_equal(&map, &m);
					assert_int_equal(range_map_add(&map, ADDR(a), ADDR(b), segs.s,
								       segs.n), 0);
				}
				model_add(&m, a, b, &segs);
			}
		} else {
			struct seg_list want, got = { .n = 0 };

			expected_drops(&m, a, b, &want);
			ret = range_map_sub(&map, ADDR(a), ADDR(b), collect, &got);
			if (ret) {
				assert_int_equal(ret, -ENOMEM);
				assert_int_equal(got.n, 0);
			} else {
				for (size_t p = a; p < b; p++)
					m.count[p]--;
				assert_int_equal(got.n, want.n);
				/* Field by field: struct padding is not part of a run. */
				for (size_t i = 0; i < want.n; i++) {
					assert_int_equal(got.s[i].start, want.s[i].start);
					assert_int_equal(got.s[i].end, want.s[i].end);
					assert_int_equal(got.s[i].mark, want.s[i].mark);
				}
			}
		}
		test_alloc_budget = -1;
		check_equal(&map, &m);
	}
	range_map_clear(&map);
	assert_int_equal(test_alloc_live, 0);
	npages = 96;
}

static void test_random_against_model(void **state)
{
	(void)state;
	random_against_model(96, 60000, 12345);
}

/* Enough breakpoints for a tree of several levels: splits and merges under failures. */
static void test_random_many_pages(void **state)
{
	(void)state;
	random_against_model(MAXPAGES, 4000, 777);
}

/* After a successful add, the inverse sub cannot fail even with no memory at all. */
static void test_rollback_never_allocates(void **state)
{
	struct range_map map;
	struct range_seg seg[3];
	struct seg_list got = { .n = 0 };

	(void)state;
	range_map_init(&map, &test_alloc);
	seg[0] = (struct range_seg){ ADDR(0), ADDR(10), RANGE_MARK_DONTFORK };
	assert_int_equal(range_map_add(&map, ADDR(0), ADDR(10), seg, 1), 0);
	/* [2,5) over a count-1 interval: both ends split, then merge back on add. */
	assert_int_equal(range_map_add(&map, ADDR(2), ADDR(5), NULL, 0), 0);
	assert_int_equal(range_map_sub(&map, ADDR(2), ADDR(5), NULL, NULL), 0);
	assert_true(map.nr_spare >= range_map_spares_wanted(&map));
	test_alloc_budget = 0;
	assert_int_equal(range_map_add(&map, ADDR(12), ADDR(13), seg, 0), -EINVAL);
	assert_int_equal(range_map_sub(&map, ADDR(3), ADDR(4), collect, &got), 0);
	assert_int_equal(got.n, 1);
	assert_int_equal(got.s[0].start, ADDR(3));
	assert_int_equal(got.s[0].end, ADDR(4));
	test_alloc_budget = -1;
	range_map_clear(&map);
}

static void test_bad_tiles_and_holes(void **state)
{
	struct range_map map;
	struct range_seg seg = { ADDR(0), ADDR(4), RANGE_MARK_DONTFORK };
	struct range_seg short_seg = { ADDR(0), ADDR(3), RANGE_MARK_DONTFORK };

	(void)state;
	range_map_init(&map, &test_alloc);
	assert_int_equal(range_map_add(&map, ADDR(0), ADDR(4), &short_seg, 1), -EINVAL);
	assert_int_equal(range_map_add(&map, ADDR(0), ADDR(4), NULL, 0), -EINVAL);
	assert_int_equal(range_map_add(&map, ADDR(4), ADDR(4), NULL, 0), -EINVAL);
	assert_int_equal(range_map_add(&map, ADDR(0), ADDR(4), &seg, 1), 0);
	/* A sub reaching past what is counted changes nothing. */
	assert_int_equal(range_map_sub(&map, ADDR(2), ADDR(6), NULL, NULL), -ENOENT);
	assert_int_equal(range_map_count(&map, ADDR(3), NULL), 1);
	assert_int_equal(range_map_sub(&map, ADDR(0), ADDR(4), NULL, NULL), 0);
	assert_int_equal(range_map_sub(&map, ADDR(0), ADDR(4), NULL, NULL), -ENOENT);
	range_map_clear(&map);
}

/* Many disjoint ranges: the tree stays balanced enough to be fast. */
static void test_many_ranges(void **state)
{
	enum { N = 100000 };
	struct range_map map;

	(void)state;
	range_map_init(&map, &test_alloc);
	for (uintptr_t i = 0; i < N; i++) {
		struct range_seg s = { BASE + 2 * i * PAGE, BASE + (2 * i + 1) * PAGE,
				       RANGE_MARK_DONTFORK };

		assert_int_equal(range_map_add(&map, s.start, s.end, &s, 1), 0);
	}
	assert_int_equal(map.nr_nodes, N);
	assert_int_equal(range_map_check(&map), 0);
	for (uintptr_t i = 0; i < N; i += 2)
		assert_int_equal(range_map_sub(&map, BASE + 2 * i * PAGE,
					       BASE + (2 * i + 1) * PAGE, NULL, NULL), 0);
	assert_int_equal(map.nr_nodes, N / 2);
	assert_int_equal(range_map_check(&map), 0);
	range_map_clear(&map);
}

enum { GAPS = 2000 };

/* One page counted every four: GAPS of them. */
static void every_fourth_page(struct range_map *map)
{
	range_map_init(map, &test_alloc);
	for (uintptr_t i = 0; i < GAPS; i++) {
		struct range_seg s = { BASE + (4 * i + 3) * PAGE, BASE + (4 * i + 4) * PAGE,
				       RANGE_MARK_DONTFORK };

		assert_int_equal(range_map_add(map, s.start, s.end, &s, 1), 0);
	}
}

/*
 * One add over thousands of gaps, each cut in three segments (a large
 * registration over many small ones, across VMAs): thousands of new
 * breakpoints.  It fails cleanly when memory runs out part way, and when it
 * succeeds it never held much more memory than the result needs.
 */
static void test_add_over_many_gaps(void **state)
{
	static struct range_seg segs[3 * (GAPS + 1)];
	uintptr_t end = BASE + (4 * GAPS + 3) * PAGE;
	struct range_map map;
	size_t n = 0;

	(void)state;
	for (uintptr_t i = 0; i <= GAPS; i++)
		for (uintptr_t k = 0; k < 3; k++)
			segs[n++] = (struct range_seg){ BASE + (4 * i + k) * PAGE,
							BASE + (4 * i + k + 1) * PAGE,
							(enum range_mark)k };
	for (long budget = 0; budget < 60; budget += 20) {
		every_fourth_page(&map);
		test_alloc_budget = budget;
		assert_int_equal(range_map_add(&map, BASE, end, segs, n), -ENOMEM);
		test_alloc_budget = -1;
		assert_int_equal(range_map_check(&map), 0);
		assert_int_equal(map.nr_nodes, GAPS);
		assert_int_equal(range_map_count(&map, BASE, NULL), 0);
		assert_int_equal(range_map_count(&map, BASE + 3 * PAGE, NULL), 1);
		range_map_clear(&map);
	}
	every_fourth_page(&map);
	assert_int_equal(range_map_add(&map, BASE, end, segs, n), 0);
	assert_int_equal(range_map_check(&map), 0);
	assert_int_equal(map.nr_nodes, 3 * (GAPS + 1) + GAPS);
	assert_int_equal(range_map_count(&map, BASE + 3 * PAGE, NULL), 2);
	/* No more than the tree and its usual spares. */
	assert_true((size_t)test_alloc_live <= map.tree.nr_nodes + range_map_spares_wanted(&map));
	assert_int_equal(range_map_sub(&map, BASE, end, NULL, NULL), 0);
	assert_int_equal(map.nr_nodes, GAPS);
	assert_int_equal(range_map_check(&map), 0);
	range_map_clear(&map);
	assert_int_equal(test_alloc_live, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_random_against_model),
		cmocka_unit_test(test_random_many_pages),
		cmocka_unit_test(test_rollback_never_allocates),
		cmocka_unit_test(test_bad_tiles_and_holes),
		cmocka_unit_test(test_many_ranges),
		cmocka_unit_test(test_add_over_many_gaps),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
