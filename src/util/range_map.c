// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <errno.h>
#include <stdbool.h>

#include "range_map.h"

struct range_node {
	struct avl_node avl;
	uintptr_t start, end;
	uint32_t count;
	uint8_t mark;
};

/* A sub splits at most two intervals; keeping two spare makes rollback infallible. */
#define SPARE_MIN 2
#define SPARE_MAX 8

static struct range_node *node_of(struct avl_node *a)
{
	return a ? avl_entry(a, struct range_node, avl) : NULL;
}

static struct range_node *next_node(struct range_node *n)
{
	return node_of(avl_next(&n->avl));
}

static struct range_node *prev_node(struct range_node *n)
{
	return node_of(avl_prev(&n->avl));
}

void range_map_init(struct range_map *map, const struct node_alloc *alloc)
{
	map->tree.root = NULL;
	map->alloc = *alloc;
	map->spare = NULL;
	map->nr_spare = 0;
	map->nr_nodes = 0;
}

/* Spare nodes are chained through avl.parent. */
static struct range_node *take_spare(struct range_map *map)
{
	struct range_node *n = map->spare;

	map->spare = node_of(n->avl.parent);
	map->nr_spare--;
	return n;
}

static void put_node(struct range_map *map, struct range_node *n)
{
	if (map->nr_spare >= SPARE_MAX) {
		map->alloc.free(map->alloc.ctx, n, sizeof(*n));
		return;
	}
	n->avl.parent = map->spare ? &map->spare->avl : NULL;
	map->spare = n;
	map->nr_spare++;
}

static int reserve(struct range_map *map, size_t want)
{
	while (map->nr_spare < want) {
		struct range_node *n = map->alloc.alloc(map->alloc.ctx, sizeof(*n));

		if (!n)
			return -ENOMEM;
		n->avl.parent = map->spare ? &map->spare->avl : NULL;
		map->spare = n;
		map->nr_spare++;
	}
	return 0;
}

int range_map_reserve(struct range_map *map)
{
	return reserve(map, SPARE_MIN);
}

void range_map_forget(struct range_map *map)
{
	map->tree.root = NULL;
	map->spare = NULL;
	map->nr_spare = 0;
	map->nr_nodes = 0;
}

void range_map_clear(struct range_map *map)
{
	struct range_node *n;

	while ((n = node_of(avl_first(&map->tree)))) {
		avl_remove(&map->tree, &n->avl);
		map->alloc.free(map->alloc.ctx, n, sizeof(*n));
	}
	while (map->nr_spare)
		map->alloc.free(map->alloc.ctx, take_spare(map), sizeof(*n));
	range_map_forget(map);
}

/* The interval with the largest start <= @addr, or NULL. */
static struct range_node *find_le(const struct range_map *map, uintptr_t addr)
{
	struct avl_node *a = map->tree.root, *best = NULL;

	while (a) {
		if (node_of(a)->start <= addr) {
			best = a;
			a = a->right;
		} else {
			a = a->left;
		}
	}
	return node_of(best);
}

/* The first interval ending after @addr. */
static struct range_node *first_after(const struct range_map *map, uintptr_t addr)
{
	struct range_node *n = find_le(map, addr);

	if (n && n->end > addr)
		return n;
	return n ? next_node(n) : node_of(avl_first(&map->tree));
}

static void insert_node(struct range_map *map, struct range_node *n)
{
	struct avl_node **link = &map->tree.root, *parent = NULL;
	int left = 0;

	while (*link) {
		parent = *link;
		left = n->start < node_of(parent)->start;
		link = left ? &parent->left : &parent->right;
	}
	avl_insert_at(&map->tree, &n->avl, parent, left);
	map->nr_nodes++;
}

static void remove_node(struct range_map *map, struct range_node *n)
{
	avl_remove(&map->tree, &n->avl);
	map->nr_nodes--;
	put_node(map, n);
}

/* Split @n at @at (start < at < end) using a spare node; returns the upper half. */
static struct range_node *split(struct range_map *map, struct range_node *n, uintptr_t at)
{
	struct range_node *hi = take_spare(map);

	hi->start = at;
	hi->end = n->end;
	hi->count = n->count;
	hi->mark = n->mark;
	n->end = at;
	insert_node(map, hi);
	return hi;
}

/* Splits needed so that no interval straddles @start or @end. */
static size_t splits_needed(const struct range_map *map, uintptr_t start, uintptr_t end)
{
	struct range_node *n = find_le(map, start);
	size_t splits = 0;

	if (n && n->start < start && n->end > start)
		splits++;
	n = find_le(map, end);
	if (n && n->start < end && n->end > end)
		splits++;
	return splits;
}

static void split_at_bounds(struct range_map *map, uintptr_t start, uintptr_t end)
{
	struct range_node *n = find_le(map, start);

	if (n && n->start < start && n->end > start)
		split(map, n, start);
	n = find_le(map, end);
	if (n && n->start < end && n->end > end)
		split(map, n, end);
}

static bool mergeable(const struct range_node *a, const struct range_node *b)
{
	return a->end == b->start && a->count == b->count && a->mark == b->mark;
}

/* Restore the "no two equal neighbours" rule over the intervals touching [start, end]. */
static void merge_around(struct range_map *map, uintptr_t start, uintptr_t end)
{
	struct range_node *n = find_le(map, start), *next;

	if (!n)
		n = node_of(avl_first(&map->tree));
	else if (prev_node(n))
		n = prev_node(n);
	while (n && n->start <= end) {
		next = next_node(n);
		if (next && mergeable(n, next)) {
			n->end = next->end;
			remove_node(map, next);
			continue;
		}
		n = next;
	}
}

int range_map_gaps(const struct range_map *map, uintptr_t start, uintptr_t end,
		   range_seg_fn fn, void *ctx)
{
	struct range_node *n = first_after(map, start);
	uintptr_t pos = start;
	int ret;

	while (pos < end) {
		struct range_seg gap = { .start = pos, .mark = RANGE_MARK_NONE };

		if (!n || n->start >= end) {
			gap.end = end;
			return fn(ctx, &gap);
		}
		if (n->start > pos) {
			gap.end = n->start;
			ret = fn(ctx, &gap);
			if (ret)
				return ret;
		}
		pos = n->end;
		n = next_node(n);
	}
	return 0;
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
	struct range_node *n;
	int ret;

	if (start >= end)
		return -EINVAL;
	ret = range_map_gaps(map, start, end, check_tile, &tile);
	if (ret)
		return ret;
	if (tile.idx != nr_segs)
		return -EINVAL;
	ret = reserve(map, splits_needed(map, start, end) + nr_segs + SPARE_MIN);
	if (ret)
		return ret;

	split_at_bounds(map, start, end);
	for (n = first_after(map, start); n && n->start < end; n = next_node(n))
		n->count++;
	for (size_t i = 0; i < nr_segs; i++) {
		n = take_spare(map);
		n->start = segs[i].start;
		n->end = segs[i].end;
		n->count = 1;
		n->mark = segs[i].mark;
		insert_node(map, n);
	}
	merge_around(map, start, end);
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
	struct range_node *n, *next;
	size_t splits;
	int ret;

	if (start >= end)
		return -EINVAL;
	ret = range_map_gaps(map, start, end, report_hole, NULL);
	if (ret)
		return ret;
	splits = splits_needed(map, start, end);
	if (reserve(map, splits))
		return -ENOMEM;

	split_at_bounds(map, start, end);
	for (n = first_after(map, start); n && n->start < end; n = next) {
		next = next_node(n);
		if (--n->count)
			continue;
		run_add(&acc, n->start, n->end, n->mark);
		remove_node(map, n);
	}
	run_flush(&acc);
	merge_around(map, start, end);
	reserve(map, SPARE_MIN);	/* best effort: keeps the next rollback infallible */
	return 0;
}

unsigned int range_map_count(const struct range_map *map, uintptr_t addr,
			     enum range_mark *mark)
{
	struct range_node *n = find_le(map, addr);

	if (!n || n->end <= addr)
		return 0;
	if (mark)
		*mark = n->mark;
	return n->count;
}

int range_map_walk(const struct range_map *map, range_walk_fn fn, void *ctx)
{
	for (struct range_node *n = node_of(avl_first(&map->tree)); n; n = next_node(n)) {
		struct range_seg seg = { n->start, n->end, n->mark };
		int ret = fn(ctx, &seg, n->count);

		if (ret)
			return ret;
	}
	return 0;
}

int range_map_walk_range(const struct range_map *map, uintptr_t start, uintptr_t end,
			 range_walk_fn fn, void *ctx)
{
	if (start >= end)
		return 0;
	for (struct range_node *n = first_after(map, start); n && n->start < end;
	     n = next_node(n)) {
		struct range_seg seg = { n->start > start ? n->start : start,
					 n->end < end ? n->end : end, n->mark };
		int ret = fn(ctx, &seg, n->count);

		if (ret)
			return ret;
	}
	return 0;
}
