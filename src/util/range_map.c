// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The page-count map (range_map.h) as a step function: a B+tree of
 * breakpoints, each holding the count and mark of the pages from its
 * address up to the next breakpoint.  Neighbouring breakpoints always
 * differ and the first one has a count, so every breakpoint with a count
 * starts one maximal interval and a count-0 one ends it.  13 bytes per
 * breakpoint, where a tree node per interval took 64.
 *
 * An update first makes sure breakpoints sit at both ends of its range
 * and where each segment an add fills starts, with the values already
 * there (the map says the same), then changes the values in place, then
 * deletes the breakpoints equal to their predecessor.  Only those inserts
 * can need memory; if one fails, deleting the new breakpoints again (which
 * never allocates) leaves the map as it was.  A sub inserts two at most,
 * which the spares a reserve keeps always cover.
 */
#include <errno.h>
#include <stdbool.h>

#include "range_map.h"

struct bp {
	uint64_t start;
	uint32_t count;
	uint8_t mark;
} __attribute__((packed));

static void sync_spares(struct range_map *map)
{
	map->nr_spare = map->tree.nr_spare;
}

void range_map_init(struct range_map *map, const struct node_alloc *alloc)
{
	map->alloc = *alloc;
	btree_init(&map->tree, sizeof(struct bp), NULL, &map->alloc);	/* keyed by start */
	map->nr_spare = 0;
	map->nr_nodes = 0;
}

void range_map_forget(struct range_map *map)
{
	btree_forget(&map->tree);
	map->nr_spare = 0;
	map->nr_nodes = 0;
}

void range_map_clear(struct range_map *map)
{
	btree_clear(&map->tree);
	range_map_forget(map);
}

/* Enough spare nodes for any two inserts: the breakpoints of one sub. */
size_t range_map_spares_wanted(const struct range_map *map)
{
	return btree_insert_worst(&map->tree, 2);
}

int range_map_reserve(struct range_map *map)
{
	int ret = btree_reserve(&map->tree, range_map_spares_wanted(map));

	sync_spares(map);
	return ret;
}

/* --- reading ------------------------------------------------------------ */

/* The last breakpoint at or before @addr, or NULL with @c at the first one. */
static struct bp *bp_le(const struct range_map *map, uintptr_t addr, struct btree_cursor *c)
{
	uint64_t key = addr;

	btree_seek(&map->tree, &key, true, c);
	return btree_prev(&map->tree, c);
}

/* The first breakpoint at or after @addr, with @c on it. */
static struct bp *bp_ge(const struct range_map *map, uintptr_t addr, struct btree_cursor *c)
{
	uint64_t key = addr;

	btree_seek(&map->tree, &key, false, c);
	return btree_at(&map->tree, c);
}

typedef int (*step_fn)(void *ctx, uintptr_t start, uintptr_t end, const struct bp *val);

/* Where a breakpoint at an address goes, and what is there now. */
struct spot {
	struct btree_cursor ip;	/* insertion point (btree_seek() after the address) */
	const struct bp *le;	/* the last breakpoint at or before it, or NULL */
	bool has;		/* a breakpoint sits at the address itself */
};

static void locate(const struct range_map *map, uintptr_t addr, struct spot *s)
{
	uint64_t key = addr;
	struct btree_cursor p;

	btree_seek(&map->tree, &key, true, &s->ip);
	p = s->ip;
	s->le = btree_prev(&map->tree, &p);
	s->has = s->le && s->le->start == addr;
}

/* Call @fn for every piece of [start, end) between breakpoints, in order; @s: @start located. */
static int walk_from(const struct range_map *map, const struct spot *s, uintptr_t start,
		     uintptr_t end, step_fn fn, void *ctx)
{
	static const struct bp zero;
	struct btree_cursor c = s->ip;
	const struct bp *val = s->le ? s->le : &zero, *next = btree_at(&map->tree, &c);
	uintptr_t pos = start;

	while (pos < end) {
		uintptr_t to = next && next->start < end ? next->start : end;
		int ret = fn(ctx, pos, to, val);

		if (ret || to == end)
			return ret;
		pos = to;
		val = next;
		next = btree_next(&map->tree, &c);
	}
	return 0;
}

static int walk_steps(const struct range_map *map, uintptr_t start, uintptr_t end,
		      step_fn fn, void *ctx)
{
	struct spot s;

	locate(map, start, &s);
	return walk_from(map, &s, start, end, fn, ctx);
}

struct seg_call {
	range_seg_fn seg_fn;
	range_walk_fn walk_fn;
	void *ctx;
};

static int gap_step(void *ctx, uintptr_t start, uintptr_t end, const struct bp *val)
{
	struct seg_call *s = ctx;
	struct range_seg gap = { start, end, RANGE_MARK_NONE };

	return val->count ? 0 : s->seg_fn(s->ctx, &gap);
}

int range_map_gaps(const struct range_map *map, uintptr_t start, uintptr_t end,
		   range_seg_fn fn, void *ctx)
{
	struct seg_call s = { .seg_fn = fn, .ctx = ctx };

	return walk_steps(map, start, end, gap_step, &s);
}

static int counted_step(void *ctx, uintptr_t start, uintptr_t end, const struct bp *val)
{
	struct seg_call *s = ctx;
	struct range_seg seg = { start, end, (enum range_mark)val->mark };

	return val->count ? s->walk_fn(s->ctx, &seg, val->count) : 0;
}

int range_map_walk_range(const struct range_map *map, uintptr_t start, uintptr_t end,
			 range_walk_fn fn, void *ctx)
{
	struct seg_call s = { .walk_fn = fn, .ctx = ctx };

	return start < end ? walk_steps(map, start, end, counted_step, &s) : 0;
}

int range_map_walk(const struct range_map *map, range_walk_fn fn, void *ctx)
{
	struct btree_cursor c;
	const struct bp *b = btree_first(&map->tree, &c), *next;

	for (; b; b = next) {
		next = btree_next(&map->tree, &c);
		if (b->count) {
			/* A counted breakpoint is never the last one. */
			struct range_seg seg = { b->start, next->start, (enum range_mark)b->mark };
			int ret = fn(ctx, &seg, b->count);

			if (ret)
				return ret;
		}
	}
	return 0;
}

unsigned int range_map_count(const struct range_map *map, uintptr_t addr,
			     enum range_mark *mark)
{
	struct btree_cursor c;
	const struct bp *b = bp_le(map, addr, &c);

	if (!b || !b->count)
		return 0;
	if (mark)
		*mark = (enum range_mark)b->mark;
	return b->count;
}

/* --- updating ----------------------------------------------------------- */

static void set_value(struct range_map *map, struct bp *b, uint32_t count, uint8_t mark)
{
	map->nr_nodes += (size_t)(count != 0) - (b->count != 0);
	b->count = count;
	b->mark = count ? mark : RANGE_MARK_NONE;
}

/*
 * Make sure a breakpoint sits at @addr, located in @s with no change since;
 * a new one takes the value of the piece it splits, so what the map says
 * does not change.  Return it with @c on it, or NULL if the insert found
 * no node (nothing changed).
 */
static struct bp *place(struct range_map *map, uintptr_t addr, const struct spot *s,
			struct btree_cursor *c)
{
	struct bp b = { addr, 0, RANGE_MARK_NONE };

	*c = s->ip;
	if (s->has)
		return btree_prev(&map->tree, c);
	if (s->le) {
		b.count = s->le->count;
		b.mark = s->le->mark;
	}
	if (btree_insert_at(&map->tree, c, &b))
		return NULL;
	map->nr_nodes += b.count != 0;
	return btree_at(&map->tree, c);
}

/* place() with its own lookup: 0, or -ENOMEM with nothing changed. */
static int place_at(struct range_map *map, uintptr_t addr)
{
	struct btree_cursor c;
	struct spot s;

	locate(map, addr, &s);
	return place(map, addr, &s, &c) ? 0 : -ENOMEM;
}

/*
 * Delete the breakpoints from @c (on the first one an update touched) up
 * to @hi that repeat their predecessor's value.
 */
static void normalize(struct range_map *map, struct btree_cursor *c, uintptr_t hi)
{
	struct btree_cursor p = *c;
	struct bp *b = btree_at(&map->tree, c);
	const struct bp *prev;
	uint32_t count = 0;
	uint8_t mark = RANGE_MARK_NONE;

	prev = b ? btree_prev(&map->tree, &p) : NULL;
	if (prev) {
		count = prev->count;
		mark = prev->mark;
	}
	while (b && b->start <= hi) {
		if (b->count == count && b->mark == mark) {
			uintptr_t at = b->start;

			map->nr_nodes -= b->count != 0;
			b = btree_delete_at(&map->tree, c) ? btree_at(&map->tree, c) :
							    bp_ge(map, at, c);
			continue;
		}
		count = b->count;
		mark = b->mark;
		b = btree_next(&map->tree, c);
	}
}

struct tile_check {
	const struct range_seg *segs;
	size_t nr, idx;
};

static int check_tile(void *ctx, const struct range_seg *gap)
{
	struct tile_check *t = ctx;
	uintptr_t pos = gap->start;

	while (pos < gap->end) {
		const struct range_seg *s;

		if (t->idx >= t->nr)
			return -EINVAL;
		s = &t->segs[t->idx];
		if (s->start != pos || s->end <= s->start || s->end > gap->end)
			return -EINVAL;
		pos = s->end;
		t->idx++;
	}
	return 0;
}

int range_map_add(struct range_map *map, uintptr_t start, uintptr_t end,
		  const struct range_seg *segs, size_t nr_segs)
{
	struct tile_check tile = { .segs = segs, .nr = nr_segs };
	struct seg_call gaps = { .seg_fn = check_tile, .ctx = &tile };
	struct btree_cursor c, first;
	struct spot s;
	size_t j = 0;
	struct bp *b;
	int ret;

	if (start >= end)
		return -EINVAL;
	locate(map, start, &s);
	ret = walk_from(map, &s, start, end, gap_step, &gaps);
	if (ret)
		return ret;
	if (tile.idx != nr_segs)
		return -EINVAL;
	/*
	 * Breakpoints where values will change, then the spares a rollback
	 * needs.  Until the values change this says what it said: undone by
	 * normalizing, which only deletes.
	 */
	ret = place(map, start, &s, &c) ? 0 : -ENOMEM;
	if (!ret)
		ret = place_at(map, end);
	for (size_t i = 0; !ret && i < nr_segs; i++)
		ret = place_at(map, segs[i].start);
	if (!ret)
		ret = btree_reserve(&map->tree, range_map_spares_wanted(map));
	if (ret) {
		bp_ge(map, start, &first);
		normalize(map, &first, end);
		sync_spares(map);
		return -ENOMEM;
	}

	/* Counted pieces count one more; each gap piece starts a segment. */
	b = bp_ge(map, start, &c);
	first = c;
	for (; b && b->start < end; b = btree_next(&map->tree, &c)) {
		if (b->count) {
			b->count++;
			continue;
		}
		while (j < nr_segs && segs[j].start < b->start)
			j++;
		if (j < nr_segs && segs[j].start == b->start)
			set_value(map, b, 1, (uint8_t)segs[j].mark);
	}
	normalize(map, &first, end);
	btree_trim(&map->tree);
	sync_spares(map);
	return 0;
}

struct run_acc {
	range_seg_fn fn;
	void *ctx;
	struct range_seg run;
	bool open;
};

static void run_flush(struct run_acc *acc)
{
	if (acc->open && acc->fn)
		acc->fn(acc->ctx, &acc->run);
	acc->open = false;
}

static void run_add(struct run_acc *acc, uintptr_t start, uintptr_t end, enum range_mark mark)
{
	if (acc->open && acc->run.end == start && acc->run.mark == mark) {
		acc->run.end = end;
		return;
	}
	run_flush(acc);
	acc->run = (struct range_seg){ .start = start, .end = end, .mark = mark };
	acc->open = true;
}

static int report_hole(void *ctx, const struct range_seg *gap)
{
	(void)ctx;
	(void)gap;
	return -ENOENT;
}

int range_map_sub(struct range_map *map, uintptr_t start, uintptr_t end,
		  range_seg_fn fn, void *ctx)
{
	struct run_acc acc = { .fn = fn, .ctx = ctx };
	struct seg_call holes = { .seg_fn = report_hole };
	struct btree_cursor c, first;
	struct spot s, e;
	struct bp *b, *next;
	int ret;

	if (start >= end)
		return -EINVAL;
	locate(map, start, &s);
	ret = walk_from(map, &s, start, end, gap_step, &holes);
	if (ret)
		return ret;
	/* Two inserts at most: the spares of a reserve cover them. */
	b = place(map, start, &s, &c);
	ret = b ? 0 : -ENOMEM;
	if (!ret) {
		locate(map, end, &e);
		ret = e.has ? 0 : place(map, end, &e, &first) ? 0 : -ENOMEM;
		if (!e.has)	/* the insert may have moved the one at @start */
			b = bp_ge(map, start, &c);
	}
	if (ret)
		b = bp_ge(map, start, &c);
	first = c;
	if (ret) {
		normalize(map, &first, end);
		sync_spares(map);
		return -ENOMEM;
	}

	for (; b && b->start < end; b = next) {
		enum range_mark mark = (enum range_mark)b->mark;

		next = btree_next(&map->tree, &c);	/* there is one: at @end */
		set_value(map, b, b->count - 1, b->mark);
		if (!b->count)
			run_add(&acc, b->start, next->start, mark);
	}
	run_flush(&acc);
	normalize(map, &first, end);
	range_map_reserve(map);		/* best effort: keeps the next rollback infallible */
	return 0;
}

int range_map_remark(struct range_map *map, uintptr_t start, uintptr_t end,
		     enum range_mark from, enum range_mark to)
{
	struct btree_cursor c, first;
	struct spot s;
	struct bp *b;
	int ret;

	if (start >= end)
		return -EINVAL;
	/* Breakpoints at both ends, saying what the map says (two inserts:
	 * a reserve's spares cover them); undone by normalizing. */
	locate(map, start, &s);
	ret = place(map, start, &s, &c) ? 0 : -ENOMEM;
	if (!ret)
		ret = place_at(map, end);
	b = bp_ge(map, start, &c);
	first = c;
	for (; !ret && b && b->start < end; b = btree_next(&map->tree, &c))
		if (b->count && b->mark == from)
			b->mark = (uint8_t)to;
	normalize(map, &first, end);
	range_map_reserve(map);		/* best effort, as after a sub */
	return ret;
}

/* --- consistency check, for tests --------------------------------------- */

static int bp_item_cmp(const void *a, const void *b)
{
	uint64_t x = ((const struct bp *)a)->start, y = ((const struct bp *)b)->start;

	return x < y ? -1 : x > y;
}

int range_map_check(const struct range_map *map)
{
	struct btree_cursor c;
	const struct bp *b = btree_first(&map->tree, &c), *prev = NULL;
	size_t counted = 0;
	int ret = btree_check(&map->tree, bp_item_cmp);

	if (ret)
		return ret;
	if (map->nr_spare != map->tree.nr_spare)
		return -20;
	for (; b; prev = b, b = btree_next(&map->tree, &c)) {
		if ((!prev && !b->count) || (!b->count && b->mark) || b->mark > RANGE_MARK_WIPEONFORK)
			return -21;
		if (prev && prev->count == b->count && prev->mark == b->mark)
			return -22;
		counted += b->count != 0;
	}
	if ((prev && prev->count) || counted != map->nr_nodes)
		return -23;
	return 0;
}
