/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * What the three files of the registry share, and nothing outside them
 * includes: the registry state and the helpers they call with its lock held.
 *   registry.c           the pin path (describe, decide, mark, pre-fault),
 *                        unpin, edge pages, stuck runs, fork support, stats;
 *   registry_deferred.c  deferred unmarking: park, revive, flush, re-mark;
 *   registry_lifetime.c  registrations whose memory went away (lifetime.h).
 * The rest of the library uses registry.h and lifetime.h.
 */
#ifndef SAFEPIN_REGISTRY_INTERNAL_H
#define SAFEPIN_REGISTRY_INTERNAL_H

#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <safepin/safepin.h>

#include "arena.h"
#include "edge_pages.h"
#include "lock.h"
#include "range_map.h"
#include "recent_set.h"
#include "reg_table.h"
#include "vm.h"

/* One lock over all of it: registry_lock() / registry_unlock(). */
struct registry_state {
	struct sp_lock lock;
	struct arena arena;
	struct range_map pages;		/* per page: registrations covering it */
	struct range_map edges;		/* per page: registrations it is a partial edge of */
	struct reg_table regs;
	struct reg_table parked;	/* unpinned, still counted and marked: see PARK_MAX */
	struct recent_set unpinned;	/* (addr, len) unmarked at an unpin lately */
	bool defer_unmark;
	struct edge_snapshot snapshot;	/* taken while a fork() is in progress */
	enum safepin_policy policy;
	bool unprotected;		/* test-only */
	uint64_t pages_marked;
	uint64_t madvise_calls;
	uint64_t prefaulted_pages;
	uint64_t cow_unbroken_pages;
	uint64_t failures;
	uint64_t revived;
};

extern struct registry_state registry_state;

/* Runs whose unmarking failed: see registry_keep_stuck_locked(). */
#define MAX_STUCK_RUNS 16

struct run_list {
	struct range_seg run[MAX_STUCK_RUNS];
	size_t n;
};

static inline uint64_t base_pages(uintptr_t start, uintptr_t end)
{
	return (end - start) / vm_base_page_size();
}

/* ---- registry.c: the caller holds the lock ---- */
/* Every marking and unmarking madvise() of the registry, counted. */
int registry_mark_madvise(uintptr_t start, uintptr_t end, enum range_mark mark, bool set);
/* range_seg_fn for 1->0 runs; @ctx: a run_list collecting the failures, or NULL. */
int registry_unmark_run(void *ctx, const struct range_seg *seg);
/* Count the runs that are still marked again, on behalf of the stuck list. */
void registry_keep_stuck_locked(const struct run_list *failed);
/* Drop the partial edge pages of @ext from the edge counts. */
void registry_edges_sub(const struct reg_extent *ext);

/* ---- registry_deferred.c: the caller holds the lock ---- */
/* Unmark every parked registration: 0, or -ENOMEM (those left stay parked). */
int registry_flush_parked_locked(void);
/* Unpin with deferred unmarking. Return 0, or -ENOENT / -ENOMEM: unmark now. */
int registry_park_locked(uintptr_t addr, size_t len);
/* Pin of a parked (addr, len). Return 0, or -ENOENT / -ENOMEM: take the full path. */
int registry_revive_locked(uintptr_t addr, size_t len);
/*
 * Before a pin of @ext (other than an exact revival): unmark and drop the
 * parked registrations inside it.  How many, or -ENOMEM.
 */
int registry_unpark_within_locked(const struct reg_extent *ext);
/*
 * After that pin counted and marked @ext: the pages of it that parked
 * registrations still count are checked and marked again before the next
 * fork, like a revival's.
 */
void registry_note_parked_overlap_locked(const struct reg_extent *ext);

/* In the child: the revived registrations are the parent's. */
void registry_forget_revived(void);

/* A reg_table_walk() callback: the first entry whose extent meets [start, end). */
struct reg_pick {
	uintptr_t start, end;		/* pick an entry whose extent meets [start, end) */
	uintptr_t addr;
	size_t len;
	struct reg_extent ext;
	bool found;
};

int registry_pick_entry(void *ctx, uintptr_t addr, size_t len, const struct reg_extent *ext,
			uint32_t refs, uint64_t cookie);

#endif
