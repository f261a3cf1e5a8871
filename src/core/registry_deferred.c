// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Deferred unmarking: parking unpinned registrations, reviving them on the
 * next pin, flushing them (coalesced) and re-marking revived ones before a
 * fork.  Apart from registry.c because it is a mode layered on the pin
 * path, not a step of it: it works on the same counts and marks through
 * registry_internal.h, and registry.c calls in at few points (an unpin
 * parks, a pin revives, a pin meeting ENOMEM or a policy change flushes).
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include "lifetime.h"
#include "log.h"
#include "registry.h"
#include "registry_internal.h"

/*
 * With SAFEPIN_UNMARK_DEFERRED, an unpin of an (addr, len) that was
 * unpinned before (registry_state.unpinned) parks its registration instead
 * of unmarking: the entry moves from registry_state.regs to
 * registry_state.parked and its page counts and marks stay.  A first unpin
 * unmarks at once and only remembers the key, so ranges that never come
 * back (random I/O buffers) do not hold VMA splits that make every other
 * madvise() and lookup slower.  Pinning the same (addr, len) again takes it back
 * without a single system call: no VMA lookup, no madvise(), no pre-fault
 * (its pages stayed DONTFORK since they were faulted in, so no fork of any
 * kind can have shared them).  Parked registrations are unmarked, runs
 * coalesced, in the prepare handler of every fork(), when PARK_MAX are
 * parked, when a pin runs into ENOMEM (their VMA splits count against
 * vm.max_map_count) and on safepin_flush().  What this trusts, and what a
 * raw clone() sees: docs/deferred-unmarking.md.
 */
#define PARK_MAX 256

/* Parked registrations pinned again since the last fork: see remark_revived_locked(). */
#define MAX_REVIVED 32

static struct {
	struct reg_extent ext[MAX_REVIVED];
	size_t n;
	bool overflow;		/* more than MAX_REVIVED: re-mark every live registration */
} revived;

/*
 * 1->0 runs of the parked registrations being unmarked: gathered over all
 * of them, sorted and merged, so that neighbours and nested ranges cost one
 * madvise() per maximal run.  Without memory for the list a run is
 * unmarked on its own, which is correct, only not coalesced.
 */
struct unmark_batch {
	struct range_seg *run;
	size_t n, cap;
	struct run_list failed;
};

static int check_no_hole(void *ctx, const struct vma_info *vma)
{
	uintptr_t *want = ctx;

	if (vma->start > *want)
		return -EFAULT;
	*want = vma->end;
	return 0;
}

static bool range_mapped(uintptr_t start, uintptr_t end)
{
	uintptr_t want = start;

	return !vm_for_each_vma(start, end, check_no_hole, &want) && want >= end;
}

static void unmark_parked_run(struct unmark_batch *b, const struct range_seg *run)
{
	int ret;

	if (run->mark == RANGE_MARK_NONE)
		return;
	ret = registry_mark_madvise(run->start, run->end, run->mark, false);
	/* Unmapped since it was parked (legal once unpinned): no flag left to clear. */
	if (!ret || (ret == -ENOMEM && !range_mapped(run->start, run->end))) {
		registry_state.pages_marked -= base_pages(run->start, run->end);
		return;
	}
	sp_log(SP_LOG_ERROR, "madvise(%#lx-%#lx, unmark) failed: errno %d",
	       (unsigned long)run->start, (unsigned long)run->end, -ret);
	registry_state.failures++;
	if (b->failed.n < MAX_STUCK_RUNS)
		b->failed.run[b->failed.n++] = *run;
}

static int batch_run(void *ctx, const struct range_seg *seg)
{
	struct unmark_batch *b = ctx;

	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 16;
		struct range_seg *run = realloc(b->run, cap * sizeof(*run));

		if (!run) {
			unmark_parked_run(b, seg);
			return 0;
		}
		b->run = run;
		b->cap = cap;
	}
	b->run[b->n++] = *seg;
	return 0;
}

static int by_start(const void *a, const void *b)
{
	const struct range_seg *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

static void batch_apply(struct unmark_batch *b)
{
	size_t i = 0;

	if (b->n)
		qsort(b->run, b->n, sizeof(*b->run), by_start);
	while (i < b->n) {
		struct range_seg run = b->run[i++];

		while (i < b->n && b->run[i].start == run.end && b->run[i].mark == run.mark)
			run.end = b->run[i++].end;
		unmark_parked_run(b, &run);
	}
	free(b->run);
}

/* Also registry_lifetime.c's, to take parked entries out of a range. */
int registry_pick_entry(void *ctx, uintptr_t addr, size_t len, const struct reg_extent *ext,
			uint32_t refs, uint64_t cookie)
{
	struct reg_pick *p = ctx;

	(void)refs;
	(void)cookie;
	if (ext->end <= p->start || ext->start >= p->end)
		return 0;
	*p = (struct reg_pick){ p->start, p->end, addr, len, *ext, true };
	return 1;
}

/*
 * Unmark every parked registration.  Return 0, or -ENOMEM when the page
 * map could not be split: those stay parked (counted and marked).
 */
int registry_flush_parked_locked(void)
{
	struct unmark_batch b = { .run = NULL };
	int ret = 0;

	while (registry_state.parked.nr_live) {
		struct reg_pick p = { .start = 0, .end = UINTPTR_MAX };

		(void)reg_table_walk(&registry_state.parked, registry_pick_entry, &p);
		if (range_map_reserve(&registry_state.pages) ||
		    range_map_reserve(&registry_state.edges)) {
			ret = -ENOMEM;
			registry_state.failures++;
			sp_log(SP_LOG_ERROR, "out of memory unmarking parked registrations: "
			       "%zu stay marked", registry_state.parked.nr_live);
			break;
		}
		range_map_sub(&registry_state.pages, p.ext.start, p.ext.end, batch_run, &b);
		registry_edges_sub(&p.ext);
		reg_table_del(&registry_state.parked, p.addr, p.len, &p.ext);
	}
	batch_apply(&b);
	registry_keep_stuck_locked(&b.failed);
	return ret;
}

/* Unpin with deferred unmarking. Return 0, or -ENOENT / -ENOMEM: unmark now. */
int registry_park_locked(uintptr_t addr, size_t len, const struct reg_extent *ext)
{
	int ret;

	if (!recent_set_has(&registry_state.unpinned, addr, len)) {
		recent_set_add(&registry_state.unpinned, addr, len);
		return -ENOENT;
	}
	if (registry_state.parked.nr_live >= PARK_MAX)
		(void)registry_flush_parked_locked();
	ret = reg_table_add(&registry_state.parked, addr, len, ext);
	if (!ret)
		reg_table_del(&registry_state.regs, addr, len, ext);
	return ret;
}

/* Pin of a parked (addr, len). Return 0, or -ENOENT / -ENOMEM: take the full path. */
int registry_revive_locked(uintptr_t addr, size_t len)
{
	struct reg_extent ext;
	int ret = reg_table_find(&registry_state.parked, addr, len, &ext);

	if (!ret)
		ret = reg_table_add(&registry_state.regs, addr, len, &ext);
	if (ret)
		return ret;
	reg_table_del(&registry_state.parked, addr, len, &ext);
	if (revived.n < MAX_REVIVED)
		revived.ext[revived.n++] = ext;
	else
		revived.overflow = true;
	registry_state.revived++;
	lifetime_pinned_locked(addr, len, &ext);
	return 0;
}

static int remark_seg(void *ctx, const struct range_seg *seg, unsigned int count)
{
	(void)ctx;
	(void)count;
	if (seg->mark != RANGE_MARK_NONE &&
	    registry_mark_madvise(seg->start, seg->end, seg->mark, true)) {
		registry_state.failures++;
		sp_log(SP_LOG_ERROR, "re-marking %#lx-%#lx before fork failed",
		       (unsigned long)seg->start, (unsigned long)seg->end);
	}
	return 0;
}

static int remark_reg(void *ctx, uintptr_t addr, size_t len, const struct reg_extent *ext,
		      uint32_t refs, uint64_t cookie)
{
	(void)ctx;
	(void)addr;
	(void)len;
	(void)refs;
	(void)cookie;
	return range_map_walk_range(&registry_state.pages, ext->start, ext->end, remark_seg, NULL);
}

/*
 * A revived registration was trusted to still be the mapping that was
 * marked.  If the application unmapped it while it was parked and mapped
 * new memory at the same place, the new VMA carries no mark.  Before a
 * fork, apply the marks again: on an unchanged VMA the kernel sees equal
 * flags and changes nothing; on a new one it marks it.
 */
static void remark_revived_locked(void)
{
	if (revived.overflow)
		(void)reg_table_walk(&registry_state.regs, remark_reg, NULL);
	else
		for (size_t i = 0; i < revived.n; i++)
			(void)range_map_walk_range(&registry_state.pages, revived.ext[i].start,
						   revived.ext[i].end, remark_seg, NULL);
	revived.n = 0;
	revived.overflow = false;
}

void registry_forget_revived(void)
{
	memset(&revived, 0, sizeof(revived));
}

void registry_before_fork_locked(void)
{
	if (registry_state.parked.nr_live)
		(void)registry_flush_parked_locked();
	if (revived.n || revived.overflow)
		remark_revived_locked();
}

int registry_flush(void)
{
	int ret;

	registry_lock();
	ret = registry_flush_parked_locked();
	registry_unlock();
	return ret;
}

int registry_set_unmark(enum safepin_unmark mode)
{
	int ret = 0;

	registry_lock();
	registry_state.defer_unmark = mode == SAFEPIN_UNMARK_DEFERRED;
	if (!registry_state.defer_unmark)
		ret = registry_flush_parked_locked();
	registry_unlock();
	return ret;
}

enum safepin_unmark registry_unmark(void)
{
	enum safepin_unmark mode;

	registry_lock();
	mode = registry_state.defer_unmark ? SAFEPIN_UNMARK_DEFERRED : SAFEPIN_UNMARK_IMMEDIATE;
	registry_unlock();
	return mode;
}
