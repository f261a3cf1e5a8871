/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * The live registrations: a multiset of (addr, len) with the page-aligned
 * extent each one counted in the range map.  Unpin looks a registration up
 * here, so a range never pinned, or pinned once and unpinned twice, is
 * refused instead of corrupting page counts.  Pure data structure.
 */
#ifndef SAFEPIN_REG_TABLE_H
#define SAFEPIN_REG_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "btree.h"
#include "node_alloc.h"

struct reg_extent {
	uintptr_t start, end;	/* what was counted: [start, end) */
	/* Partially registered first and last page, [start, head_end) and
	 * [tail_start, end); empty when the registration is page aligned. */
	uintptr_t head_end, tail_start;
};

/*
 * Two B+trees.  An entry whose extent follows from (addr, len) and one page
 * size, with len under 64 MiB and no cookie, takes 16 bytes in @compact;
 * any other takes 64 in @wide.  An entry lives in one of them only.
 */
struct reg_table {
	struct btree compact, wide;
	struct node_alloc alloc;	/* both trees allocate through this one */
	size_t nr_live;		/* registrations, duplicates included */
};

void reg_table_init(struct reg_table *t, const struct node_alloc *alloc);
void reg_table_clear(struct reg_table *t);
void reg_table_forget(struct reg_table *t);

/* Record one more registration of (addr, len). Return 0 or -ENOMEM. */
int reg_table_add(struct reg_table *t, uintptr_t addr, size_t len,
		  const struct reg_extent *ext);
/* Extent of a live registration of (addr, len). Return 0 or -ENOENT. */
int reg_table_find(const struct reg_table *t, uintptr_t addr, size_t len,
		   struct reg_extent *ext);
/* Drop one registration found with reg_table_find(). Return 0 or -ENOENT. */
int reg_table_del(struct reg_table *t, uintptr_t addr, size_t len,
		  const struct reg_extent *ext);

/*
 * Move one registration of (addr, len) from @from to @to, two tables with
 * the same allocator; its extent in @ext.  A registration alone in its
 * entry moves with it: tree nodes it needs in @to come from the spares of
 * both tables first, so it allocates only when they run out (parking and
 * reviving do this once per release and registration).  A cookie does not
 * move.  Return 0, or -ENOENT / -ENOMEM with both tables unchanged.
 */
int reg_table_move(struct reg_table *from, struct reg_table *to, uintptr_t addr, size_t len,
		   struct reg_extent *ext);

/*
 * A caller's 64-bit note on an entry (identical registrations share it),
 * 0 until set: the audit keeps a hash of the physical pages here.  Return
 * 0, -ENOENT, or -ENOMEM (the entry needs a bigger slot for it; unchanged).
 */
int reg_table_set_cookie(struct reg_table *t, uintptr_t addr, size_t len,
			 const struct reg_extent *ext, uint64_t cookie);

/* Call @fn for every entry in (addr, len) order; @refs identical registrations. */
typedef int (*reg_walk_fn)(void *ctx, uintptr_t addr, size_t len,
			   const struct reg_extent *ext, uint32_t refs, uint64_t cookie);
int reg_table_walk(const struct reg_table *t, reg_walk_fn fn, void *ctx);

/* Check the invariants of both trees. Return 0 or a negative code (tests). */
int reg_table_check(const struct reg_table *t);

#endif
