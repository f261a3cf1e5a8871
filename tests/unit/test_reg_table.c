// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The registration multiset: exact matching, duplicates, ENOMEM, moves, cookies. */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

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
	struct reg_table live, parked, fresh;
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

	/*
	 * Two identical: the one that moves needs an entry of its own, an
	 * insert like any other: into a table with no spare node (a fresh
	 * one), it must allocate.
	 */
	test_alloc_budget = -1;
	assert_int_equal(reg_table_add(&parked, 0x1100, 0x1f00, &a), 0);
	reg_table_init(&fresh, &test_alloc);
	test_alloc_budget = 0;
	assert_int_equal(reg_table_move(&parked, &fresh, 0x1100, 0x1f00, &got), -ENOMEM);
	assert_int_equal(fresh.nr_live, 0);	/* refused: both unchanged */
	assert_int_equal(parked.nr_live, 2);
	assert_int_equal(reg_table_find(&fresh, 0x1100, 0x1f00, &got), -ENOENT);
	assert_int_equal(reg_table_check(&parked), 0);
	test_alloc_budget = -1;
	reg_table_clear(&fresh);
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

/* --- two tables against a model ------------------------------------------ */

#define NCAND 400

struct cand {
	uintptr_t addr;
	size_t len;
	struct reg_extent ext;
};

static struct cand cands[NCAND];	/* sorted by (addr, len, start, end) */

/* The extent registry.c gives (addr, len) on pages of 1 << @shift at both ends. */
static struct reg_extent widen(uintptr_t addr, size_t len, size_t ps0, size_t ps1)
{
	struct reg_extent e;

	e.start = addr & ~(uintptr_t)(ps0 - 1);
	e.end = (addr + len + ps1 - 1) & ~(uintptr_t)(ps1 - 1);
	e.head_end = addr == e.start ? e.start : e.start + ps0;
	e.tail_start = addr + len == e.end ? e.end : e.end - ps1;
	if (e.tail_start < e.head_end) {
		e.head_end = e.end;
		e.tail_start = e.end;
	}
	return e;
}

static int cand_cmp(const void *a, const void *b)
{
	const struct cand *x = a, *y = b;

	if (x->addr != y->addr)
		return x->addr < y->addr ? -1 : 1;
	if (x->len != y->len)
		return x->len < y->len ? -1 : 1;
	if (x->ext.start != y->ext.start)
		return x->ext.start < y->ext.start ? -1 : 1;
	if (x->ext.end != y->ext.end)
		return x->ext.end < y->ext.end ? -1 : 1;
	return 0;
}

/* Mostly base-page registrations (the compact kind), and every wide kind. */
static void make_cands(void)
{
	for (size_t i = 0; i < NCAND; i++) {
		struct cand *c = &cands[i];
		size_t kind = (size_t)rand() % 10;

		c->addr = 0x7f0000000000ul + (uintptr_t)(rand() % 64) * 0x200000 +
			  (uintptr_t)(rand() % 8) * PAGE + (rand() % 3 ? 0 : (uintptr_t)(rand() % 4096));
		c->len = 1 + (size_t)rand() % (6 * PAGE);
		if (kind == 0)
			c->len = ((size_t)64 << 20) + (size_t)rand() % (1 << 24);	/* long */
		c->ext = widen(c->addr, c->len, PAGE, PAGE);
		if (kind == 1)
			c->ext = widen(c->addr, c->len, 0x200000, 0x200000);	/* hugetlb */
		if (kind == 2)
			c->ext = widen(c->addr, c->len, 0x200000, PAGE);	/* mixed */
		if (kind == 3)
			c->ext = (struct reg_extent){ .start = c->ext.start, .end = c->ext.end };
		for (size_t j = 0; j < i; j++)
			if (!cand_cmp(c, &cands[j])) {
				i--;	/* the same key twice: draw again */
				break;
			}
	}
	qsort(cands, NCAND, sizeof(cands[0]), cand_cmp);
}

struct table_model {
	uint32_t refs[NCAND];
	uint64_t cookie[NCAND];
	size_t live;
};

struct walk_model {
	const struct table_model *m;
	size_t next;
};

static int walk_check(void *ctx, uintptr_t addr, size_t len, const struct reg_extent *ext,
		      uint32_t refs, uint64_t cookie)
{
	struct walk_model *w = ctx;
	const struct cand *c;

	while (w->next < NCAND && !w->m->refs[w->next])
		w->next++;
	assert_true(w->next < NCAND);
	c = &cands[w->next];
	assert_int_equal(addr, c->addr);
	assert_int_equal(len, c->len);
	assert_int_equal(ext->start, c->ext.start);
	assert_int_equal(ext->end, c->ext.end);
	assert_int_equal(ext->head_end, c->ext.head_end);
	assert_int_equal(ext->tail_start, c->ext.tail_start);
	assert_int_equal(refs, w->m->refs[w->next]);
	assert_int_equal(cookie, w->m->cookie[w->next]);
	w->next++;
	return 0;
}

static void table_equal(const struct reg_table *t, const struct table_model *m)
{
	struct walk_model w = { .m = m };

	assert_int_equal(reg_table_check(t), 0);
	assert_int_equal(t->nr_live, m->live);
	assert_int_equal(reg_table_walk(t, walk_check, &w), 0);
	while (w.next < NCAND)
		assert_int_equal(m->refs[w.next++], 0);
}

static void test_two_tables_against_model(void **state)
{
	static struct table_model m[2];
	struct reg_table t[2];

	(void)state;
	srand(2024);
	make_cands();
	memset(m, 0, sizeof(m));
	reg_table_init(&t[0], &test_alloc);
	reg_table_init(&t[1], &test_alloc);
	for (int round = 0; round < 30000; round++) {
		size_t i = (size_t)rand() % NCAND, a = (size_t)rand() % 2, b = 1 - a;
		const struct cand *c = &cands[i];
		struct table_model before[2];
		struct reg_extent got;
		int op = rand() % 6, ret;

		memcpy(before, m, sizeof(m));
		test_alloc_budget = rand() % 5 == 0 ? rand() % 2 : -1;
		if (op <= 1) {
			ret = reg_table_add(&t[a], c->addr, c->len, &c->ext);
			if (!ret) {
				m[a].refs[i]++;
				m[a].live++;
			}
		} else if (op == 2) {
			ret = reg_table_del(&t[a], c->addr, c->len, &c->ext);
			assert_int_equal(ret, m[a].refs[i] ? 0 : -ENOENT);
			if (!ret) {
				m[a].live--;
				if (!--m[a].refs[i])
					m[a].cookie[i] = 0;
			}
		} else if (op == 3) {
			ret = reg_table_move(&t[a], &t[b], c->addr, c->len, &got);
			if (!m[a].refs[i]) {
				assert_int_equal(ret, -ENOENT);
			} else if (!ret) {
				assert_int_equal(got.start, c->ext.start);
				assert_int_equal(got.head_end, c->ext.head_end);
				m[a].live--;
				if (!--m[a].refs[i])
					m[a].cookie[i] = 0;
				m[b].refs[i]++;
				m[b].live++;
			}
		} else if (op == 4) {
			uint64_t cookie = rand() % 3 ? (uint64_t)rand() << 20 | 1 : 0;

			ret = reg_table_set_cookie(&t[a], c->addr, c->len, &c->ext, cookie);
			if (!m[a].refs[i])
				assert_int_equal(ret, -ENOENT);
			else if (!ret)
				m[a].cookie[i] = cookie;
		} else {
			ret = reg_table_find(&t[a], c->addr, c->len, &got);
			assert_int_equal(ret, m[a].refs[i] ? 0 : -ENOENT);
			if (!ret) {
				assert_int_equal(got.end, c->ext.end);
				assert_int_equal(got.tail_start, c->ext.tail_start);
			}
		}
		test_alloc_budget = -1;
		if (ret && ret != -ENOENT) {
			assert_int_equal(ret, -ENOMEM);
			assert_memory_equal(m, before, sizeof(m));
		}
		if (round % 50 == 0 || ret == -ENOMEM) {
			table_equal(&t[0], &m[0]);
			table_equal(&t[1], &m[1]);
		}
	}
	table_equal(&t[0], &m[0]);
	table_equal(&t[1], &m[1]);
	reg_table_clear(&t[0]);
	reg_table_clear(&t[1]);
	assert_int_equal(test_alloc_live, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_exact_match_and_duplicates),
		cmocka_unit_test(test_enomem_changes_nothing),
		cmocka_unit_test(test_move_between_tables),
		cmocka_unit_test(test_many_random),
		cmocka_unit_test(test_two_tables_against_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
