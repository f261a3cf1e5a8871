/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * What the three files of the registry share, and nothing outside them
 * includes: the registry state and the helpers they call with its lock held.
 *   registry.c           the pin path (describe, decide, mark, pre-fault),
 *                        unpin, edge pages, stuck runs, fork support, stats;
 *   registry_deferred.c  deferred unmarking: park, revive, flush, re-mark,
 *                        and the threads' caches of parked registrations;
 *   registry_lifetime.c  registrations whose memory went away (lifetime.h).
 * The rest of the library uses registry.h and lifetime.h.
 */
#ifndef SAFEPIN_REGISTRY_INTERNAL_H
#define SAFEPIN_REGISTRY_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <safepin/safepin.h>

#include "arena.h"
#include "block_set.h"
#include "edge_pages.h"
#include "lock.h"
#include "range_map.h"
#include "recent_set.h"
#include "reg_table.h"
#include "vm.h"

/*
 * One lock over all of it: registry_lock() / registry_unlock().  (Each
 * thread's cache of registrations it parked has a lock of its own, taken
 * after this one: see registry_tc_revive().)
 */
struct registry_state {
	struct sp_lock lock;
	struct arena arena;
	struct range_map pages;		/* per page: registrations covering it */
	struct range_map edges;		/* per page: registrations it is a partial edge of */
	struct reg_table regs;
	struct reg_table parked;	/* unpinned, still counted and marked: see PARK_MAX */
	struct recent_set unpinned;	/* (addr, len) unmarked at an unpin lately */
	bool defer_unmark;
	bool windowed;			/* SAFEPIN_UNMARK_WINDOWED: see registry_window.c */
	struct block_set windows;	/* 2 MiB blocks marked whole, in the counts */
	/*
	 * Odd while the window set changes (a seqlock): threads read the set
	 * without the lock to record pins inside windows in their own caches.
	 */
	atomic_uint windows_seq;
	unsigned int windows_changing;	/* nesting of registry_windows_change_begin() */
	struct reg_table wregs;		/* pinned inside open windows: not in the counts */
	struct edge_snapshot snapshot;	/* taken while a fork() is in progress */
	enum safepin_policy policy;
	bool unprotected;		/* test-only */
	uint64_t pages_marked;
	uint64_t madvise_calls;
	uint64_t prefaulted_pages;
	uint64_t cow_unbroken_pages;
	uint64_t failures;
	uint64_t revived;
	size_t nr_held;			/* entries in threads' caches: see registry_deferred.c */
	/*
	 * Some thread recorded a pin inside windows in its cache (sticky: a
	 * count would be a cache line every thread writes on every pin).
	 */
	atomic_bool wheld;
	/* Threads' caches disabled for good (monitor, audit); read without the
	 * lock by the window pins of registry_tc_pin_in_windows(). */
	atomic_bool tc_off;
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

/* The VMAs of a range being pinned, in address order, and the next address to cover. */
struct vma_list {
	struct vma_info *v;
	size_t n, cap;
	uintptr_t want;
};

/*
 * What (addr, len) counts when its memory has pages of @ps bytes (@ps
 * hugetlb-sized only if the VMA is): whole pages, and the partial first and
 * last ones.  Caller checked that addr + len does not wrap.
 */
static inline void reg_extent_of(uintptr_t addr, size_t len, size_t first_ps, size_t last_ps,
				 struct reg_extent *ext)
{
	ext->start = addr & ~(uintptr_t)(first_ps - 1);
	ext->end = (addr + len + last_ps - 1) & ~(uintptr_t)(last_ps - 1);
	ext->head_end = addr == ext->start ? ext->start : ext->start + first_ps;
	ext->tail_start = addr + len == ext->end ? ext->end : ext->end - last_ps;
	if (ext->tail_start < ext->head_end) {	/* both edges on one page */
		ext->head_end = ext->end;
		ext->tail_start = ext->end;
	}
}

/* ---- registry.c: the caller holds the lock ---- */
/* Every marking and unmarking madvise() of the registry, counted. */
int registry_mark_madvise(uintptr_t start, uintptr_t end, enum range_mark mark, bool set);
/* range_seg_fn for 1->0 runs; @ctx: a run_list collecting the failures, or NULL. */
int registry_unmark_run(void *ctx, const struct range_seg *seg);
/* Count the runs that are still marked again, on behalf of the stuck list. */
void registry_keep_stuck_locked(const struct run_list *failed);
/* Add the partial edge pages of @ext to the edge counts: 0 or -ENOMEM (nothing added). */
int registry_edges_add(const struct reg_extent *ext);
/*
 * @v, a private VMA, is known to carry no DONTFORK or WIPEONFORK of the
 * application's: marking it whole needs no smaps (see mark_for()).
 */
void registry_learn_clean_vma(const struct vma_info *v);
/* Drop the partial edge pages of @ext from the edge counts. */
void registry_edges_sub(const struct reg_extent *ext);
/*
 * Add one to every page of [start, end), a window's block, marking the
 * 0->1 runs WIPEONFORK where the application did not (@vmas cover the
 * range; @block_clean: the block is one VMA known without WIPEONFORK).
 * Return 0 or -errno; nothing changed on error.
 */
int registry_count_window_locked(struct vma_list *vmas, uintptr_t start, uintptr_t end,
				 bool block_clean);
/*
 * After the madvise() that set @mark on [start, ...) inside the VMA @was
 * (NULL: unknown): @mark if it moved a bound of that VMA, or
 * RANGE_MARK_NONE if the VMA carried the flag already (the application's).
 */
enum range_mark registry_resolve_probe(const struct vma_info *was, uintptr_t start,
				       enum range_mark mark);

/*
 * 1->0 runs being unmarked together: gathered, sorted and merged, so that
 * neighbours and nested ranges cost one madvise() per maximal run.
 * registry_batch_run() is a range_seg_fn adding to it; registry_batch_apply()
 * unmarks and frees, and keeps the runs that failed as stuck.
 */
struct unmark_batch {
	struct range_seg *run;
	size_t n, cap;
	struct run_list failed;
};

int registry_batch_run(void *ctx, const struct range_seg *seg);
void registry_batch_apply(struct unmark_batch *b);

/* ---- registry_deferred.c: the caller holds the lock ---- */
/* Unmark every parked registration: 0, or -ENOMEM (those left stay parked). */
int registry_flush_parked_locked(void);
/* The same, and close every window (registry_window.c). */
int registry_flush_all_locked(void);
/*
 * Unpin with deferred unmarking of (addr, len), found in the live table
 * with extent @ext: parked in the calling thread's cache, or in the parked
 * table.  Return 0, or -ENOENT / -ENOMEM: unmark now.
 */
int registry_park_locked(uintptr_t addr, size_t len, const struct reg_extent *ext);
/* Pin of a parked (addr, len). Return 0, or -ENOENT / -ENOMEM: take the full path. */
int registry_revive_locked(uintptr_t addr, size_t len);

/*
 * The threads' caches (registry_deferred.c).  A thread keeps the
 * registrations it parked itself in a few slots of its own, out of the
 * tables but still in the page counts, and revives and parks them again
 * there under its own lock only: no registry lock, no shared cache line.
 * Everything else reaches them with the registry lock held (lock order:
 * the registry's, then a thread's):
 */
/* Without the registry lock, the caller holds the fork guard: 0 or -ENOENT. */
int registry_tc_revive(uintptr_t addr, size_t len);
int registry_tc_park(uintptr_t addr, size_t len);
/* Whether any table or thread holds a parked registration (or may). */
static inline bool registry_any_parked(void)
{
	return registry_state.parked.nr_live || registry_state.nr_held;
}
/*
 * Move the parked entries of (addr, len), and those whose extent meets
 * [start, end), from every thread's cache back to the parked table: a pin
 * that is no revival in its own thread's cache must see them there.
 */
void registry_tc_park_back_locked(uintptr_t addr, size_t len, uintptr_t start, uintptr_t end);
/*
 * Move every thread-held entry back to the tables: before anything looks
 * for a live registration or walks the tables.  0, or -ENOMEM: an entry
 * that could not move stays (stranded) and counts as live where it is.
 */
int registry_settle_threads_locked(void);
static inline void registry_settle_threads(void)
{
	if (registry_state.nr_held || atomic_load(&registry_state.wheld))
		(void)registry_settle_threads_locked();
}
/*
 * Pins inside open windows, recorded in the calling thread's cache without
 * the registry lock (the caller holds the fork guard).  Only page-aligned
 * ranges whose blocks are all open windows, read under the windows'
 * seqlock: 0, or -ENOENT (take the locked path).  Release: 0, -ENOENT
 * (not held by this thread), or with @ext (its extent, stored) 1: this
 * thread released the same (addr, len) from a window lately, a
 * registration cache's pattern, so the caller parks it (see
 * registry_unpin_in_windows_locked()).
 */
int registry_tc_pin_in_windows(uintptr_t addr, size_t len, struct reg_extent *ext);
int registry_tc_unpin_in_windows(uintptr_t addr, size_t len, struct reg_extent *ext);
/* A release through the locked path, so that the next one of (addr, len) parks. */
void registry_tc_note_released_locked(uintptr_t addr, size_t len);
/* The calling thread's cache, made if need be, so that its next window pins are its own. */
void registry_tc_claim_locked(void);
/* Move every thread's window pins to wregs: 0, or -ENOMEM (those left stay). */
int registry_tc_settle_windows_locked(void);
/* Whether a live (addr, len) was left stranded in a thread's cache. */
bool registry_tc_stranded_locked(uintptr_t addr, size_t len);
/* Live and parked entries the threads hold, for the stats. */
void registry_tc_count_locked(uint64_t *live, uint64_t *parked);
/* In the child: the threads' entries are the parent's; the other threads are gone. */
void registry_tc_forget(void);

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

/*
 * Pages of @ext counted as marked without a look at their VMA (a revival,
 * a window): checked and marked again in the next fork's prepare handler.
 */
void registry_trust_until_fork_locked(const struct reg_extent *ext);

/* In the child: the revived registrations are the parent's. */
void registry_forget_revived(void);

/* ---- registry_window.c: the caller holds the lock ---- */
void registry_windows_init(void);
/*
 * Pin (addr, len) lying in open windows: recorded in wregs, not yet
 * pre-faulted.  Return 0, -ENOENT (not all in windows: take the full
 * path) or -ENOMEM.
 */
int registry_pin_in_windows_locked(uintptr_t addr, size_t len, struct reg_extent *ext);
/* Undo that pin (its pages could not be shown ready). */
void registry_drop_in_windows_locked(uintptr_t addr, size_t len, const struct reg_extent *ext);
/*
 * Release a pin recorded in wregs: 0, -ENOENT (not there) or -ENOMEM
 * (nothing changed).  With @may_park, a range released before (the
 * registration-cache pattern) is settled instead and -EAGAIN returned: the
 * caller parks it from the live table, so that it revives for free.
 */
int registry_unpin_in_windows_locked(uintptr_t addr, size_t len, bool may_park);
/*
 * Count the pins of wregs in the page map and move them to the live
 * table, as every other registration: before windows close and before
 * anything walks the live table.  0, or -ENOMEM (those left stay).
 */
int registry_settle_windows_locked(void);
static inline void registry_settle_windows(void)
{
	if (registry_state.wregs.nr_live || atomic_load(&registry_state.wheld))
		(void)registry_settle_windows_locked();
}
/*
 * Around every change of the window set, and around anything that must
 * not see a thread record a window pin meanwhile (closing windows: the
 * pins inside are settled first).  Nests.
 */
void registry_windows_change_begin(void);
void registry_windows_change_end(void);
/*
 * Without the lock: whether (addr, len) is page aligned and every block
 * of it an open window, its extent in @ext.  Valid only if
 * registry_windows_read_retry(@seq) then says no change happened.
 */
bool registry_windows_cover(uintptr_t addr, size_t len, struct reg_extent *ext);
static inline unsigned int registry_windows_read_begin(void)
{
	return atomic_load_explicit(&registry_state.windows_seq, memory_order_acquire);
}
static inline bool registry_windows_read_retry(unsigned int seq)
{
	atomic_thread_fence(memory_order_acquire);
	return (seq & 1) ||
	       atomic_load_explicit(&registry_state.windows_seq, memory_order_relaxed) != seq;
}
/* Whether [start, end) meets an open window. */
bool registry_meets_window_locked(uintptr_t start, uintptr_t end);
/* The windows one pin opened, closed again if the pin fails. */
struct windows_opened {
	uintptr_t key[2];
	int n;
};

/*
 * Before the full path counts @ext over @vmas: open windows on the blocks
 * it covers in part, noted in @opened.  How many were opened (their marks
 * moved VMA bounds), or -errno with none opened.
 */
int registry_open_windows_locked(const struct vma_list *vmas, const struct reg_extent *ext,
				 struct windows_opened *opened);
/* Close the windows of @opened still open (the pin that opened them failed). */
void registry_close_opened_locked(struct windows_opened *opened);
/* Close every window: 0, or -ENOMEM (those left stay open). */
int registry_close_windows_locked(void);
/*
 * Take the windows meeting [start, end) out: the application unmapped or
 * discarded it.  @drop(ws, we, start, end, gone) takes each window's
 * [ws, we) out of the counts (registry_lifetime.c).
 */
void registry_drop_windows_locked(uintptr_t start, uintptr_t end,
				  void (*drop)(uintptr_t ws, uintptr_t we, uintptr_t start,
					       uintptr_t end, bool gone),
				  bool gone);
/* In the child: the parent's windows are not ours. */
void registry_forget_windows(void);

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
