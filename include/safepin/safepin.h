/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * libsafepin core API: make memory safe to hand to a DMA device across fork().
 *
 * A device (RDMA NIC, IOMMU behind VFIO, io_uring fixed buffers, ...) that
 * pins user pages keeps their physical addresses.  After fork() the kernel
 * write-protects private pages; the first CPU write moves that process to a
 * new page while the device keeps using the old one, and data silently goes
 * to the wrong process.  Kernels that copy pinned pages into the child at
 * fork avoid the corruption but make fork cost O(pinned bytes).
 *
 * libsafepin keeps registered pages out of the child (MADV_DONTFORK by
 * default), breaks copy-on-write before the device pins them, and counts
 * every page across overlapping registrations so that marking is added on
 * the first registration of a page and removed on the last.
 *
 * Typical use around any long-term pin:
 *
 *	safepin_fork_guard_enter();          // no fork() until exit
 *	ret = safepin_pin(buf, len, 0);      // mark + pre-fault
 *	if (!ret && device_pin(buf, len))    // e.g. io_uring_register_buffers
 *		safepin_unpin(buf, len);     // roll back: nothing stays marked
 *	safepin_fork_guard_exit();
 *	...
 *	safepin_fork_guard_enter();
 *	device_unpin(buf, len);
 *	safepin_unpin(buf, len);             // unmark after the device let go
 *	safepin_fork_guard_exit();
 *
 * RDMA users want <safepin/verbs.h> instead; VFIO users <safepin/vfio.h>.
 *
 * Error convention: functions return 0 on success or a negative errno value,
 * and also set errno to the positive value.  A failed call changes nothing:
 * no page count, no VMA flag.
 *
 * All functions are thread-safe.
 */
#ifndef SAFEPIN_SAFEPIN_H
#define SAFEPIN_SAFEPIN_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#if defined(SAFEPIN_BUILDING_LIBRARY)
#define SAFEPIN_EXPORT __attribute__((visibility("default")))
#else
#define SAFEPIN_EXPORT
#endif

/**
 * safepin_pin() - make [addr, addr + len) safe for a device to pin.
 * @addr:  start of the range; need not be page aligned.
 * @len:   length in bytes, > 0.
 * @flags: must be 0 (reserved).
 *
 * Expands the range to whole pages (to whole huge pages on hugetlb
 * mappings), marks the pages no registration covered before so that a
 * forked child does not share them (see safepin_set_policy()), and faults
 * every page in with write semantics so that the device pins pages this
 * process owns exclusively.  Data is never changed, even with other threads
 * writing the same pages.
 *
 * Private read-only mappings are faulted in for read only (copy-on-write
 * cannot be broken there; counted in stats.cow_unbroken_pages).  Shared
 * mappings are counted but never hidden from the child: they are not
 * copied on write, so the device and both processes see the same pages.
 * Pages the application marked MADV_DONTFORK itself keep that mark after
 * the last safepin_unpin().
 *
 * Each successful call must be matched by one safepin_unpin() with the same
 * @addr and @len.  Identical ranges may be pinned several times.
 *
 * Return: 0, or a negative errno:
 *  -EINVAL  NULL @addr, @len == 0, the range wraps around, @flags != 0;
 *  -EFAULT  part of the range is unmapped or PROT_NONE;
 *  -ENOMEM  out of memory, or the kernel could not split a VMA
 *           (vm.max_map_count reached);
 *  other    an errno from madvise() passed through unchanged.
 */
SAFEPIN_EXPORT int safepin_pin(const void *addr, size_t len, unsigned int flags);

/**
 * safepin_unpin() - release a range pinned with safepin_pin().
 *
 * Call it after the device released the pages.  Pages no longer covered by
 * any registration get their fork behaviour back.
 *
 * Return: 0, or -EINVAL for bad arguments, -ENOENT when no live registration
 * has exactly this @addr and @len (never pinned, or already unpinned).
 */
SAFEPIN_EXPORT int safepin_unpin(const void *addr, size_t len);

/**
 * safepin_fork_guard_enter() - hold off fork() in this process.
 *
 * Between enter and exit no fork() (through glibc, which runs
 * pthread_atfork handlers) can start, so a child never sees a range marked
 * but not yet pinned by the device, or unpinned but still marked.  Nests
 * within a thread; cheap when no fork is pending.  Do not fork() while
 * holding it: that deadlocks.
 */
SAFEPIN_EXPORT void safepin_fork_guard_enter(void);
SAFEPIN_EXPORT void safepin_fork_guard_exit(void);

/** What a forked child sees of registered pages. */
enum safepin_policy {
	/* Registered pages are absent in the child (MADV_DONTFORK). Default. */
	SAFEPIN_POLICY_DONTFORK = 0,
	/* Private anonymous pages read as zeros in the child
	 * (MADV_WIPEONFORK); other mappings fall back to DONTFORK. */
	SAFEPIN_POLICY_ZERO_FILL = 1,
	/* No marking: the kernel copies pinned pages into the child at fork.
	 * Only accepted where safepin_probe() proved this kernel does so. */
	SAFEPIN_POLICY_KERNEL_COPY = 2,
};

/**
 * safepin_set_policy() - choose what a forked child sees.
 *
 * The default comes from the environment variable SAFEPIN_POLICY
 * ("dontfork", "zero-fill" or "kernel-copy"), else DONTFORK.
 *
 * Return: 0, -EINVAL for an unknown policy, -EBUSY while registrations are
 * live, -EOPNOTSUPP for KERNEL_COPY on a kernel that does not copy pinned
 * pages at fork.
 */
SAFEPIN_EXPORT int safepin_set_policy(enum safepin_policy policy);
SAFEPIN_EXPORT enum safepin_policy safepin_get_policy(void);

/** Counters since the process (or the forked child) started. */
struct safepin_stats {
	size_t size;                  /* set to sizeof(struct safepin_stats) */
	uint64_t live_registrations;  /* safepin_pin() not yet unpinned */
	uint64_t pages_marked;        /* base pages currently marked by us */
	uint64_t madvise_calls;       /* every madvise() the library made */
	uint64_t prefaulted_pages;    /* pages faulted in before a pin */
	uint64_t cow_unbroken_pages;  /* read-only private pages: COW not broken */
	uint64_t failures;            /* calls that returned an error */
};

/**
 * safepin_get_stats() - read the counters.
 * @stats: ->size must be set; fields beyond it are not written.
 *
 * Return: 0, or -EINVAL if @stats is NULL or ->size is too small.
 */
SAFEPIN_EXPORT int safepin_get_stats(struct safepin_stats *stats);

/** Library version, e.g. "1.0.0". */
SAFEPIN_EXPORT const char *safepin_version(void);

#ifdef __cplusplus
}
#endif

#endif /* SAFEPIN_SAFEPIN_H */
