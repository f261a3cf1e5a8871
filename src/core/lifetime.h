/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Lifetime violations: memory unmapped, remapped or discarded while still
 * registered.  Found by the LD_PRELOAD shim (interposed munmap, mremap,
 * madvise, mmap(MAP_FIXED), free, realloc) or by the userfaultfd monitor
 * (lifetime.c), reported here, and dropped from the registry's counts by
 * its lifetime section (registry.c) so that a later registration at the
 * same address is marked like any other.  audit.c checks the registrations
 * that are still live.
 */
#ifndef SAFEPIN_LIFETIME_H
#define SAFEPIN_LIFETIME_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <safepin/safepin.h>

#include "range_map.h"
#include "reg_table.h"

/* One registration a violation hit. */
struct lt_hit {
	uintptr_t addr;
	size_t len;
	bool again;	/* reported violated before; what was left of it is hit now */
};

/* A registration as the audit sees it. */
struct lt_reg {
	uintptr_t addr;
	size_t len;
	struct reg_extent ext;	/* for a violated one: a piece still counted */
	uint32_t refs;
	uint64_t cookie;	/* hash of the PFNs at pin time, 0 if not recorded */
	bool violated;
};

/* ---- registry_lifetime.c: caller holds the registry lock ---- */
bool registry_lock_held(void);	/* by this thread; no lock needed */
enum safepin_policy registry_policy_locked(void);
/* Whether registrations are marked at all (not kernel-copy, not the test hook). */
bool registry_marks_locked(void);
int registry_set_cookie_locked(uintptr_t addr, size_t len, const struct reg_extent *ext,
			       uint64_t cookie);
/* Whether any page of [start, end) is counted. */
bool registry_counted_locked(uintptr_t start, uintptr_t end);
/*
 * [start, end) (page aligned) was unmapped (@gone) or discarded: every
 * registration counting a page of it becomes violated, its pages there are
 * dropped from the counts (unmarked only if !@gone).  Fills up to @max hits;
 * returns how many registrations were hit.
 */
size_t registry_violation_locked(uintptr_t start, uintptr_t end, bool gone,
				 struct lt_hit *hits, size_t max);
/* Live registrations whose bytes overlap [start, end) (free() of a chunk). */
size_t registry_overlapping_locked(uintptr_t start, uintptr_t end, struct lt_hit *hits,
				   size_t max);
/* Release the oldest violated registration (addr, len): 0, or -ENOENT. */
int registry_unpin_violated_locked(uintptr_t addr, size_t len);
int registry_walk_locked(int (*fn)(void *ctx, const struct lt_reg *r), void *ctx);
uint64_t registry_violated_live_locked(void);
/* range_map_gaps() of the page counts. */
int registry_gaps_locked(uintptr_t start, uintptr_t end, range_seg_fn fn, void *ctx);
void lifetime_forget_violated(void);

/* ---- lifetime.c: hooks the registry calls with its lock held ---- */
void lifetime_pinned_locked(uintptr_t addr, size_t len, const struct reg_extent *ext);
void lifetime_unpinned_locked(const struct reg_extent *ext);

/* Log and call back for one application action (counted already). */
void lifetime_report(enum safepin_violation_kind kind, uintptr_t start, uintptr_t end,
		     const struct lt_hit *hits, size_t nhits, size_t total, bool monitor);
uint64_t lifetime_violation_count(void);
/* Count violations found without an application call to report them to
 * (the fork prepare handler's check of revived registrations: logged only). */
void lifetime_count_violations(size_t total);
/* Whether any registration is live (racy hint for the shim's fast path). */
bool lifetime_any_live(void);

/*
 * The shim's path: run @call (the real munmap/madvise/...) with the registry
 * locked, and if it succeeded (returns true) treat [start, end) as violated;
 * @call may narrow the range to what it actually took away (mremap).
 * Without the lock held across the call, another thread could register new
 * memory at the address before the counts are dropped.
 */
void lifetime_app_call(enum safepin_violation_kind kind, uintptr_t start, uintptr_t end,
		       bool gone, bool (*call)(void *ctx, uintptr_t *start, uintptr_t *end),
		       void *ctx);
/*
 * free()/realloc() of the chunk [start, end) that may still be registered:
 * @call frees (or reallocates) it and returns the end of what the caller
 * still owns of the old chunk (@start: nothing; @end: all).
 */
void lifetime_app_free(uintptr_t start, uintptr_t end, uintptr_t (*call)(void *ctx), void *ctx);

/* ---- audit.c ---- */
/* Whether PFNs are recorded at pin time (SAFEPIN_AUDIT_PFNS=1). */
bool audit_pfns_enabled(void);
/* Hash of the PFNs of [start, end); 0 if unreadable (no CAP_SYS_ADMIN). */
uint64_t audit_pfn_hash(uintptr_t start, uintptr_t end);
/* safepin_audit() with the registry lock held (the fork prepare hook). */
int audit_run_locked(struct safepin_audit_report *r);

#endif
