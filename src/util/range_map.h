/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Refcounted interval map over page-aligned addresses: for every page, how
 * many live registrations cover it, and how the page was marked when its
 * count went from 0 to 1.  A pure data structure: no syscalls, no locks, so
 * it is tested alone against a reference model.
 *
 * Pages with count 0 are not stored.  Stored intervals are disjoint and
 * adjacent intervals never have both the same count and the same mark, so
 * the runs reported on 0<->1 transitions are maximal: one madvise() each.
 *
 * Failure atomicity: range_map_add() either fails with -ENOMEM before
 * changing anything or succeeds; range_map_sub() of a range whose pages all
 * have count >= 1 never fails once range_map_add() or range_map_reserve()
 * succeeded, so a caller can always roll an add back.
 */
#ifndef SAFEPIN_RANGE_MAP_H
#define SAFEPIN_RANGE_MAP_H

#include <stddef.h>
#include <stdint.h>

#include "btree.h"
#include "node_alloc.h"

/* How a page was marked on its 0->1 transition; undone on 1->0. */
enum range_mark {
	RANGE_MARK_NONE = 0,	/* counted only: shared, foreign DONTFORK, kernel-copy */
	RANGE_MARK_DONTFORK,
	RANGE_MARK_WIPEONFORK,
};

struct range_seg {
	uintptr_t start, end;	/* [start, end) */
	enum range_mark mark;
};

/*
 * Stored as a B+tree of breakpoints: each item says that from its address
 * on, up to the next item, pages have this count and mark.  The last item
 * of a run has count 0.
 */
struct range_map {
	struct btree tree;
	struct node_alloc alloc;	/* the tree allocates through this one */
	size_t nr_spare;	/* spare tree nodes, so rollback never allocates */
	size_t nr_nodes;	/* stored intervals */
};

typedef int (*range_seg_fn)(void *ctx, const struct range_seg *seg);

void range_map_init(struct range_map *map, const struct node_alloc *alloc);
/* Free every node; the map is empty and usable afterwards. */
void range_map_clear(struct range_map *map);
/* Forget every node without freeing it (their memory went away with the allocator). */
void range_map_forget(struct range_map *map);

/*
 * Call @fn for every maximal run of count-0 pages in [start, end), in order;
 * seg->mark is RANGE_MARK_NONE.  Stops early and returns @fn's value if it
 * returns non-zero.
 */
int range_map_gaps(const struct range_map *map, uintptr_t start, uintptr_t end,
		   range_seg_fn fn, void *ctx);

/*
 * Add one to every page of [start, end).  @segs must tile exactly the gaps
 * range_map_gaps() reports for [start, end), in order (adjacent segments
 * may carry different marks).  Return: 0, -ENOMEM (nothing changed), or
 * -EINVAL if @segs do not tile the gaps (nothing changed).
 */
int range_map_add(struct range_map *map, uintptr_t start, uintptr_t end,
		  const struct range_seg *segs, size_t nr_segs);

/*
 * Subtract one from every page of [start, end) and call @fn (may be NULL)
 * for every maximal run whose count dropped to 0, with the mark it had.
 * Return: 0; -ENOENT if a page in the range has count 0 (nothing changed);
 * -ENOMEM if no spare node was left to split a boundary (nothing changed).
 */
int range_map_sub(struct range_map *map, uintptr_t start, uintptr_t end,
		  range_seg_fn fn, void *ctx);

/*
 * Give the pages of [start, end) that are counted and carry mark @from
 * mark @to instead; counts do not change.  For a mark that has to change
 * while registrations hold the pages (a window's, when it closes).
 * Return: 0, or -ENOMEM (nothing changed); like range_map_sub(), it
 * cannot fail after a successful range_map_reserve().
 */
int range_map_remark(struct range_map *map, uintptr_t start, uintptr_t end,
		     enum range_mark from, enum range_mark to);

/* Make sure the next range_map_sub() cannot fail with -ENOMEM. */
int range_map_reserve(struct range_map *map);
/*
 * Spare nodes range_map_reserve() makes sure of (they depend on the tree's
 * height): with fewer in nr_spare, it has to allocate.
 */
size_t range_map_spares_wanted(const struct range_map *map);

/* Count of the page containing @addr; its mark in *@mark if non-NULL. */
unsigned int range_map_count(const struct range_map *map, uintptr_t addr,
			     enum range_mark *mark);

/* Call @fn for every stored interval in address order (seg + its count). */
typedef int (*range_walk_fn)(void *ctx, const struct range_seg *seg,
			     unsigned int count);
int range_map_walk(const struct range_map *map, range_walk_fn fn, void *ctx);
/* The same for the intervals meeting [start, end), clipped to it. */
int range_map_walk_range(const struct range_map *map, uintptr_t start, uintptr_t end,
			 range_walk_fn fn, void *ctx);

/* Check every invariant of the map and its tree. Return 0 or a negative code (tests). */
int range_map_check(const struct range_map *map);

#endif
