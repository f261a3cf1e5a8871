/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * The process-wide registry: one lock over the page counts (range_map), the
 * live registrations (reg_table) and their bookkeeping arena, turning
 * pin/unpin requests into the minimum set of madvise() calls and rolling
 * back every step of a request that fails.
 */
#ifndef SAFEPIN_REGISTRY_H
#define SAFEPIN_REGISTRY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <safepin/safepin.h>

void registry_init(void);

/* Callers hold the fork guard. Return 0 or -errno; nothing changes on error. */
int registry_pin(uintptr_t addr, size_t len);
/*
 * The same without the pre-fault: the device's pin that follows is a write
 * pin (FOLL_WRITE), whose own write faults break copy-on-write and fault
 * absent pages in (SAFEPIN_PIN_DEVICE_WRITES).
 */
int registry_pin_device_faults(uintptr_t addr, size_t len);
/* The same with the pre-fault's pages placed on a NUMA node (numa_place.h; NULL: none). */
struct pin_placement;
int registry_pin_placed(uintptr_t addr, size_t len, const struct pin_placement *pl);
int registry_unpin(uintptr_t addr, size_t len);
/*
 * The same, never parked even with deferred unmarking: for undoing a
 * registration whose device call failed (a failed call leaves no mark
 * behind) and for memory about to be unmapped.
 */
int registry_unpin_now(uintptr_t addr, size_t len);

/* Deferred unmarking (registry_deferred.c); callers hold the fork guard. */
int registry_set_unmark(enum safepin_unmark mode);
enum safepin_unmark registry_unmark(void);
int registry_flush(void);

int registry_set_policy(enum safepin_policy policy);
enum safepin_policy registry_policy(void);
void registry_read_stats(struct safepin_stats *out);
void registry_count_failure(void);

/* Fork support (fork.c): hold the lock across fork(); restore edge pages and
 * reset in the child. */
void registry_lock(void);
void registry_unlock(void);
void registry_reset_in_child(void);
/* In the prepare handler, lock held: unmark parked registrations, re-mark revived ones. */
void registry_before_fork_locked(void);
/* Copy partially registered hidden pages before fork (lock held); drop the copy after. */
void registry_snapshot_edges(void);
void registry_release_edges(void);

/* Test-only: count registrations but neither mark nor pre-fault, to show
 * that a test fails without the library's protection. Not exported. */
void registry_disable_protection(bool disable);

#endif
