// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * libFuzzer target: the pure data structures at full speed.  Random
 * sequences of range_map adds (with the marks of each gap chosen at
 * random, sometimes with segments that do not tile the gaps), subs,
 * reserves and gap queries, the node allocator failing on demand, and
 * reg_table adds / finds / deletes, against a reference model: one count
 * and one mark per page, a plain array of registrations.  Any divergence
 * aborts (libFuzzer writes the input as a reproducer).
 */
#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "range_map.h"
#include "reg_table.h"

#define NPAGES 64
#define PG 4096ul
#define BASE 0x7f0000000000ul
#define ADDR(p) (BASE + (uintptr_t)(p) * PG)
#define MAXREG 64

#define DIVERGE(...)                                                          \
	do {                                                                  \
		fprintf(stderr, "fuzz_range_map: line %d: ", __LINE__);       \
		fprintf(stderr, __VA_ARGS__);                                 \
		fprintf(stderr, "\n");                                        \
		abort();                                                      \
	} while (0)

/* ---- input ---- */
struct in {
	const uint8_t *p;
	size_t n;
};

static unsigned int byte(struct in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

/* ---- allocator that fails on demand ---- */
static struct {
	int fail_in;	/* the n-th allocation from now fails (0: none) */
	long live;
} al;

static void *xalloc(void *ctx, size_t size)
{
	(void)ctx;
	if (al.fail_in && --al.fail_in == 0)
		return NULL;
	al.live++;
	return malloc(size);
}

static void xfree(void *ctx, void *p, size_t size)
{
	(void)ctx;
	(void)size;
	al.live--;
	free(p);
}

/* ---- model ---- */
static unsigned int count[NPAGES];
static enum range_mark mark[NPAGES];
static struct range_map map;

struct reg {
	uintptr_t addr;
	size_t len;
	struct reg_extent ext;
};
static struct reg regs[MAXREG];
static size_t nregs;
static struct reg_table table;

struct walk {
	uintptr_t prev_end;
	unsigned int prev_count;
	enum range_mark prev_mark;
	size_t pages;
};

static int walk_fn(void *ctx, const struct range_seg *seg, unsigned int c)
{
	struct walk *w = ctx;

	if (seg->start >= seg->end || seg->start < w->prev_end || seg->start < BASE ||
	    seg->end > ADDR(NPAGES) || c == 0)
		DIVERGE("bad interval %#lx-%#lx count %u", (unsigned long)seg->start,
			(unsigned long)seg->end, c);
	if (seg->start == w->prev_end && c == w->prev_count && seg->mark == w->prev_mark)
		DIVERGE("unmerged neighbours at %#lx", (unsigned long)seg->start);
	for (uintptr_t a = seg->start; a < seg->end; a += PG) {
		size_t p = (a - BASE) / PG;

		if (count[p] != c || mark[p] != seg->mark)
			DIVERGE("page %zu: map %u/%d, model %u/%d", p, c, seg->mark, count[p],
				mark[p]);
		w->pages++;
	}
	w->prev_end = seg->end;
	w->prev_count = c;
	w->prev_mark = seg->mark;
	return 0;
}

static void check_map(void)
{
	struct walk w = { 0 };
	size_t nonzero = 0;

	for (size_t p = 0; p < NPAGES; p++) {
		enum range_mark mk = RANGE_MARK_NONE;
		unsigned int c = range_map_count(&map, ADDR(p), &mk);

		if (c != count[p] || (c && mk != mark[p]))
			DIVERGE("count of page %zu: %u/%d, model %u/%d", p, c, mk, count[p], mark[p]);
		nonzero += count[p] != 0;
	}
	range_map_walk(&map, walk_fn, &w);
	if (w.pages != nonzero)
		DIVERGE("walk saw %zu pages, model has %zu", w.pages, nonzero);
}

/* ---- gaps and runs ---- */
struct segs {
	struct range_seg s[NPAGES];
	size_t n;
};

static int collect(void *ctx, const struct range_seg *seg)
{
	struct segs *l = ctx;

	if (l->n == NPAGES)
		DIVERGE("too many segments");
	l->s[l->n++] = *seg;
	return 0;
}

/* The model's maximal runs of pages in [a, b) satisfying count == c (and same mark). */
static void model_runs(size_t a, size_t b, unsigned int c, bool by_mark, struct segs *out)
{
	out->n = 0;
	for (size_t p = a; p < b; p++) {
		if (count[p] != c)
			continue;
		if (out->n && out->s[out->n - 1].end == ADDR(p) &&
		    (!by_mark || out->s[out->n - 1].mark == mark[p])) {
			out->s[out->n - 1].end = ADDR(p + 1);
			continue;
		}
		out->s[out->n++] = (struct range_seg){ ADDR(p), ADDR(p + 1),
						       by_mark ? mark[p] : RANGE_MARK_NONE };
	}
}

static void same_segs(const struct segs *a, const struct segs *b, const char *what)
{
	if (a->n != b->n)
		DIVERGE("%s: %zu segments, model %zu", what, a->n, b->n);
	for (size_t i = 0; i < a->n; i++)
		if (a->s[i].start != b->s[i].start || a->s[i].end != b->s[i].end ||
		    a->s[i].mark != b->s[i].mark)
			DIVERGE("%s: segment %zu differs", what, i);
}

static void op_add(struct in *in, size_t a, size_t b)
{
	struct segs gaps = { .n = 0 }, want;
	unsigned int how = byte(in);
	bool armed;
	int ret, expect = 0;

	if (range_map_gaps(&map, ADDR(a), ADDR(b), collect, &gaps))
		DIVERGE("gaps failed");
	model_runs(a, b, 0, false, &want);
	same_segs(&gaps, &want, "gaps");
	/* Split gaps and give each piece a mark. */
	struct range_seg segs[2 * NPAGES];
	size_t n = 0;

	for (size_t i = 0; i < gaps.n; i++) {
		uintptr_t s = gaps.s[i].start, e = gaps.s[i].end;

		if ((byte(in) & 3) == 0 && e - s > PG) {
			uintptr_t mid = s + PG * (1 + byte(in) % ((e - s) / PG - 1));

			segs[n++] = (struct range_seg){ s, mid, byte(in) % 3 };
			s = mid;
		}
		segs[n++] = (struct range_seg){ s, e, byte(in) % 3 };
	}
	if ((how & 7) == 1 && n) {	/* break the tiling */
		size_t i = byte(in) % n;

		if (segs[i].end - segs[i].start > PG)
			segs[i].end -= PG;
		else
			segs[i].start -= PG;
		expect = -EINVAL;
	} else if ((how & 7) == 2 && gaps.n) {
		n--;	/* one segment missing */
		expect = -EINVAL;
	}
	armed = !(how & 0x30);
	al.fail_in = armed ? 1 + (int)(byte(in) % 4) : 0;
	ret = range_map_add(&map, ADDR(a), ADDR(b), segs, n);
	al.fail_in = 0;
	if (ret == -ENOMEM && armed)
		goto check;	/* allowed when the allocator failed: nothing changed */
	if (ret != expect)
		DIVERGE("add [%zu,%zu): %d, expected %d", a, b, ret, expect);
	if (ret)
		goto check;
	for (size_t i = 0; i < n; i++)
		for (uintptr_t x = segs[i].start; x < segs[i].end; x += PG)
			mark[(x - BASE) / PG] = segs[i].mark;
	for (size_t p = a; p < b; p++)
		count[p]++;
check:
	check_map();
}

static void op_sub(struct in *in, size_t a, size_t b)
{
	struct segs runs = { .n = 0 }, want;
	bool zero = false;
	bool reserved = byte(in) & 1;
	int ret;

	for (size_t p = a; p < b; p++)
		zero |= count[p] == 0;
	model_runs(a, b, 1, true, &want);
	if (reserved) {
		if (range_map_reserve(&map))
			goto out;
		al.fail_in = 1;	/* reserved: sub must not need the allocator */
	}
	ret = range_map_sub(&map, ADDR(a), ADDR(b), collect, &runs);
	al.fail_in = 0;
	if (zero) {
		if (ret != -ENOENT || runs.n)
			DIVERGE("sub over a zero page: %d", ret);
	} else if (ret == -ENOMEM && !reserved) {
		if (runs.n)
			DIVERGE("failed sub reported runs");
	} else if (ret) {
		DIVERGE("sub [%zu,%zu): %d", a, b, ret);
	} else {
		same_segs(&runs, &want, "1->0 runs");
		for (size_t p = a; p < b; p++)
			count[p]--;
	}
out:
	check_map();
}

static void ext_of(uintptr_t addr, size_t len, unsigned int v, struct reg_extent *e)
{
	e->start = addr & ~(PG - 1);
	e->end = (addr + len + PG - 1) & ~(PG - 1);
	if (v & 1)	/* as if a huge page widened it */
		e->end += PG;
	e->head_end = e->start;
	e->tail_start = e->end;
}

static void op_reg(struct in *in)
{
	unsigned int k = byte(in);
	uintptr_t addr = ADDR(byte(in) % NPAGES) + byte(in) % 8;
	size_t len = 1 + byte(in) % 3, i;
	struct reg_extent e, got;
	int ret;

	ext_of(addr, len, k >> 3, &e);
	switch (k % 3) {
	case 0:	/* add */
		if (nregs == MAXREG)
			return;
		al.fail_in = (k & 0x80) ? 1 : 0;
		ret = reg_table_add(&table, addr, len, &e);
		al.fail_in = 0;
		if (ret == -ENOMEM && (k & 0x80))
			break;
		if (ret)
			DIVERGE("reg_table_add: %d", ret);
		regs[nregs++] = (struct reg){ addr, len, e };
		break;
	case 1:	/* find */
		for (i = 0; i < nregs; i++)
			if (regs[i].addr == addr && regs[i].len == len)
				break;
		ret = reg_table_find(&table, addr, len, &got);
		if ((i < nregs) != (ret == 0))
			DIVERGE("reg_table_find: %d, model %s", ret, i < nregs ? "has it" : "not");
		if (!ret) {
			bool match = false;

			for (size_t j = 0; j < nregs; j++)
				match |= regs[j].addr == addr && regs[j].len == len &&
					 !memcmp(&regs[j].ext, &got, sizeof(got));
			if (!match)
				DIVERGE("reg_table_find: an extent nobody registered");
		}
		break;
	default:	/* del: the exact extent */
		for (i = 0; i < nregs; i++)
			if (regs[i].addr == addr && regs[i].len == len &&
			    !memcmp(&regs[i].ext, &e, sizeof(e)))
				break;
		ret = reg_table_del(&table, addr, len, &e);
		if ((i < nregs) != (ret == 0))
			DIVERGE("reg_table_del: %d, model %s", ret, i < nregs ? "has it" : "not");
		if (!ret)
			regs[i] = regs[--nregs];
		break;
	}
	if (table.nr_live != nregs)
		DIVERGE("nr_live %zu, model %zu", table.nr_live, nregs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct node_alloc alloc = { xalloc, xfree, NULL };
	struct in in = { data, size };

	range_map_init(&map, &alloc);
	reg_table_init(&table, &alloc);
	memset(count, 0, sizeof(count));
	memset(mark, 0, sizeof(mark));
	nregs = 0;
	for (int ops = 0; in.n && ops < 256; ops++) {
		unsigned int op = byte(&in);
		size_t a = byte(&in) % NPAGES, b = a + 1 + byte(&in) % (NPAGES - a);

		switch (op % 4) {
		case 0: op_add(&in, a, b); break;
		case 1: op_sub(&in, a, b); break;
		case 2: op_reg(&in); break;
		default: {
			struct segs gaps = { .n = 0 }, want;

			range_map_gaps(&map, ADDR(a), ADDR(b), collect, &gaps);
			model_runs(a, b, 0, false, &want);
			same_segs(&gaps, &want, "gaps");
		}
		}
	}
	range_map_clear(&map);
	reg_table_clear(&table);
	if (al.live)
		DIVERGE("%ld nodes leaked", al.live);
	return 0;
}
