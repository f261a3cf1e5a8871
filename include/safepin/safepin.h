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

/* ===================================================================== *
 * Kernel probe: what this kernel does, found by experiment.             *
 * ===================================================================== */

/** Room for huge page sizes in struct safepin_kernel_info. */
#define SAFEPIN_MAX_HUGE_PAGE_SIZES 8

/**
 * struct safepin_kernel_info - what safepin_probe() found.
 *
 * Tri-state fields read 1 (yes), 0 (no) or -1 (could not be determined;
 * the matching *_reason string says why).
 *
 * @size: set by the caller to sizeof(struct safepin_kernel_info); fields
 *	beyond it are not written (older callers keep working).
 * @copy_on_fork_anon: whether the kernel keeps a long-term pinned private
 *	anonymous page with the parent at fork (copying it into the child
 *	instead of sharing it copy-on-write).  Found by experiment: a page is
 *	pinned with io_uring fixed buffers (FOLL_PIN | FOLL_LONGTERM, the pin
 *	RDMA and VFIO take as well), a child is forked, the parent writes the
 *	page, and the kernel reads and writes the page through the pin.  1:
 *	both directions reached the parent's page; 0: the pin was left on a
 *	page the parent no longer maps (a device would read stale data and
 *	its writes would be lost); -1: the experiment could not run (io_uring
 *	unavailable or disabled, RLIMIT_MEMLOCK, ...).  No root and no RDMA
 *	device needed.  Linux >= 5.9 copies pinned anonymous pages.
 * @copy_on_fork_hugetlb: the same experiment on a MAP_HUGETLB page of the
 *	smallest huge page size (2 MiB on x86).  -1 when no huge page could
 *	be had (vm.nr_hugepages is 0 or all are in use).  Debian's 5.10
 *	kernel answers 0 here while it answers 1 for anonymous memory.
 * @populate_write: whether madvise(MADV_POPULATE_WRITE) works (5.14+); 0
 *	means the library pre-faults with atomic writes instead.
 * @wipeonfork: whether madvise(MADV_WIPEONFORK) works on private anonymous
 *	memory (4.14+); needed by SAFEPIN_POLICY_ZERO_FILL, which falls back
 *	to DONTFORK without it.  -1 if the test page could not be mapped.
 * @nr_huge_page_sizes: entries used in @huge_page_sizes.
 * @huge_page_sizes: huge page sizes in bytes the kernel supports
 *	(/sys/kernel/mm/hugepages), ascending; configured or not.
 * @copy_on_fork_anon_reason, @copy_on_fork_hugetlb_reason: one line of
 *	text explaining the answer (never NULL; static storage).
 * @kernel_release: uname -r of the running kernel (informational only:
 *	the library never decides by version).
 *
 * safepin_set_policy(SAFEPIN_POLICY_KERNEL_COPY) is accepted only when both
 * @copy_on_fork_anon and @copy_on_fork_hugetlb are 1: that policy marks no
 * range, hugetlb ones included.  The hugetlb experiment needs two free huge
 * pages (one to pin, one the kernel copies into the child; with only one,
 * fork fails with ENOMEM on a copying kernel and the answer is -1).
 *
 * The probe runs once per process (the first caller pays: one fork of the
 * calling process, two io_uring instances, a few milliseconds on a small
 * process) and its result is cached.  Call it early: the fork duplicates
 * the caller's page tables, and with pinned memory outside libsafepin's
 * control the kernel copies those pages into the (short-lived) child.
 * The child is created with a raw clone() syscall, so no pthread_atfork
 * handler runs for it.
 */
struct safepin_kernel_info {
	size_t size;
	int copy_on_fork_anon;
	int copy_on_fork_hugetlb;
	int populate_write;
	int wipeonfork;
	unsigned int nr_huge_page_sizes;
	size_t huge_page_sizes[SAFEPIN_MAX_HUGE_PAGE_SIZES];
	const char *copy_on_fork_anon_reason;
	const char *copy_on_fork_hugetlb_reason;
	const char *kernel_release;
};

/**
 * safepin_probe() - report what this kernel does (see above).
 * @info: ->size must be set; fields beyond it are not written.
 *
 * Return: 0, or -EINVAL (errno EINVAL) if @info is NULL or ->size is
 * smaller than offsetof(struct safepin_kernel_info, copy_on_fork_hugetlb).
 * A probe that cannot run is not an error: its fields read -1.
 */
SAFEPIN_EXPORT int safepin_probe(struct safepin_kernel_info *info);

/* ===== end of kernel probe ===== */

/* ===================================================================== *
 * VMA budget: how close the process is to vm.max_map_count.            *
 * ===================================================================== */

/**
 * struct safepin_vma_budget - what safepin_vma_budget() found.
 * @size: set by the caller to sizeof(struct safepin_vma_budget); fields
 *	beyond it are not written (older callers keep working).
 * @vma_count: VMAs the process maps now (lines of /proc/self/maps).
 * @vma_limit: vm.max_map_count (/proc/sys/vm/max_map_count).
 * @vma_free: @vma_limit - @vma_count, 0 when the process is at or over it.
 *
 * Marking a range splits its VMA where the range starts and ends inside
 * it: a registration costs at most two VMAs, and none once its neighbours
 * are marked too.  When the kernel cannot split a VMA any more, madvise()
 * fails with ENOMEM and safepin_pin() (and the wrappers) fail with ENOMEM,
 * changing nothing.  A process that registers many small disjoint ranges
 * can watch @vma_free and stop (or raise the sysctl) before that happens.
 * The counts are a snapshot: other threads may map and unmap meanwhile.
 */
struct safepin_vma_budget {
	size_t size;
	uint64_t vma_count;
	uint64_t vma_limit;
	uint64_t vma_free;
};

/**
 * safepin_vma_budget() - read the VMA count of the process and its limit.
 * @budget: ->size must be set; fields beyond it are not written.
 *
 * Return: 0, -EINVAL if @budget is NULL or ->size is smaller than
 * offsetof(struct safepin_vma_budget, vma_limit) + sizeof(uint64_t), or
 * the negative errno of reading /proc (e.g. -ENOENT without procfs).
 */
SAFEPIN_EXPORT int safepin_vma_budget(struct safepin_vma_budget *budget);

/* ===== end of VMA budget ===== */

#ifdef __cplusplus
}
#endif

#endif /* SAFEPIN_SAFEPIN_H */
