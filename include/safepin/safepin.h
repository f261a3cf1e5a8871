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
 * @flags: 0 or SAFEPIN_PIN_DEVICE_WRITES.
 *
 * Expands the range to whole pages (to whole huge pages on hugetlb
 * mappings), marks the pages no registration covered before so that a
 * forked child does not share them (see safepin_set_policy()), and faults
 * every page in with write semantics so that the device pins pages this
 * process owns exclusively.  Data is never changed, even with other threads
 * writing the same pages.
 *
 * With SAFEPIN_PIN_DEVICE_WRITES the pages are marked only: see there.
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
 *  -EINVAL  NULL @addr, @len == 0, the range wraps around, unknown @flags;
 *  -EFAULT  part of the range is unmapped or PROT_NONE;
 *  -ENOMEM  out of memory, or the kernel could not split a VMA
 *           (vm.max_map_count reached);
 *  other    an errno from madvise() passed through unchanged.
 */
SAFEPIN_EXPORT int safepin_pin(const void *addr, size_t len, unsigned int flags);

/*
 * SAFEPIN_PIN_DEVICE_WRITES - safepin_pin() flag: the pin the caller takes
 * next is a write pin, so safepin_pin() marks the pages and skips its
 * pre-fault.  A write pin (the kernel's FOLL_WRITE) takes a write fault on
 * every page that needs one: it breaks copy-on-write, replaces the shared
 * zero page and faults absent pages in, in the pinning process, on every
 * kernel.  Write pins: an MR with IBV_ACCESS_LOCAL_WRITE, REMOTE_WRITE or
 * REMOTE_ATOMIC; a VFIO or iommufd map with the WRITE flag; io_uring fixed
 * buffers (always).  Not for a read-only pin (an MR without those flags, a
 * READ-only map, O_DIRECT writes to a file): it may land on the zero page
 * or a page the next CPU write copies away from.  stats.prefaulted_pages
 * does not count these pages; NUMA placement needs the pre-fault
 * (safepin_pin_opts() always does it).
 */
#define SAFEPIN_PIN_DEVICE_WRITES (1u << 1)

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

/** When an unpin gives fork behaviour back to its pages. */
enum safepin_unmark {
	/* At the unpin: one madvise() per run of pages no registration
	 * covers any more.  VMA flags always equal the live registrations. */
	SAFEPIN_UNMARK_IMMEDIATE = 0,
	/*
	 * Default.  At the next fork(): a range unpinned a second time stays
	 * marked ("parked") until the prepare handler of the next fork(), 256
	 * parked ranges, an ENOMEM from the VMA limit, or safepin_flush().
	 * Pinning the same (addr, len) again meanwhile costs no system call.
	 * A failed registration never parks.  A fork() child still sees
	 * exactly the live registrations; a child of a raw clone() that
	 * bypasses pthread_atfork also misses the parked ranges.  One case is
	 * left to the application: memory it maps over a parked range and
	 * marks MADV_DONTFORK itself loses that mark at the next fork(),
	 * unless the LD_PRELOAD shim or safepin_monitor_start() saw the unmap.
	 * docs/deferred-unmarking.md.
	 */
	SAFEPIN_UNMARK_DEFERRED = 1,
	/*
	 * Deferred, and coarser: a registration that has to mark pages of
	 * private anonymous memory marks the whole 2 MiB-aligned blocks
	 * ("windows") it covers in part MADV_WIPEONFORK, so that later
	 * registrations inside them (random I/O buffers in a large pool)
	 * make no madvise() and no VMA lookup, only a pagemap read.  The
	 * prepare handler of every fork() closes the windows first: a
	 * fork() child sees exactly the live registrations, and the
	 * application's own MADV_DONTFORK, set before or inside a window,
	 * is kept.  What it gives up beyond DEFERRED: the child of a raw
	 * clone() reads zeros in open windows (call safepin_flush() before
	 * one), and an MADV_WIPEONFORK the application sets itself inside
	 * an open window is cleared at the next fork().
	 * docs/deferred-unmarking.md.
	 */
	SAFEPIN_UNMARK_WINDOWED = 2,
};

/**
 * safepin_set_unmark() - choose when unpinned ranges are unmarked.
 *
 * The default comes from the environment variable SAFEPIN_UNMARK
 * ("immediate", "deferred" or "windowed"), else DEFERRED.  Switching to
 * IMMEDIATE unmarks every parked range first; leaving WINDOWED closes the
 * windows.
 *
 * Return: 0, -EINVAL for an unknown mode, -ENOMEM if parked ranges could
 * not all be unmarked (they stay marked and are retried at the next fork).
 */
SAFEPIN_EXPORT int safepin_set_unmark(enum safepin_unmark mode);
SAFEPIN_EXPORT enum safepin_unmark safepin_get_unmark(void);

/**
 * safepin_flush() - unmark every parked range now (SAFEPIN_UNMARK_DEFERRED),
 * e.g. before handing memory to code that forks with a raw clone().
 *
 * Return: 0, or -ENOMEM as for safepin_set_unmark().
 */
SAFEPIN_EXPORT int safepin_flush(void);

/** Counters since the process (or the forked child) started. */
struct safepin_stats {
	size_t size;                  /* set to sizeof(struct safepin_stats) */
	uint64_t live_registrations;  /* safepin_pin() not yet unpinned */
	uint64_t pages_marked;        /* base pages currently marked by us */
	uint64_t madvise_calls;       /* every madvise() the library made */
	uint64_t prefaulted_pages;    /* pages faulted in before a pin */
	uint64_t cow_unbroken_pages;  /* read-only private pages: COW not broken */
	uint64_t failures;            /* calls that returned an error */
	/* Appended (1.x): lifetime violations reported, see safepin_monitor_start(). */
	uint64_t violations;
	/* Appended (1.1): SAFEPIN_UNMARK_DEFERRED, see safepin_set_unmark(). */
	uint64_t parked_registrations;  /* unpinned, still marked until the next fork */
	uint64_t revived_registrations; /* pins served from a parked range, no syscall */
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
 * NUMA placement and DMA buffers.                                       *
 * ===================================================================== */

/*
 * A pre-fault decides where a buffer's pages live for as long as a device
 * pins them.  Faulted on whichever CPU registers the buffer, they may sit
 * on a node far from the device and cost bandwidth for the buffer's whole
 * life.  The calls below place them on a chosen node, usually the device's:
 *
 *	struct safepin_pin_opts o = { .size = sizeof(o),
 *		.numa_node = safepin_numa_node_of_pci("0000:3b:00.0") };
 *	ret = safepin_pin_opts(buf, len, &o);    // then map it for DMA
 *	...
 *	safepin_unpin(buf, len);                  // as for safepin_pin()
 *
 * How pages are placed.  For the duration of the pre-fault only, the
 * calling thread's memory policy is switched to MPOL_PREFERRED on the node
 * and then restored exactly (mode, mode flags and nodemask); the range
 * itself gets no mbind() policy, so its VMAs are neither split nor changed
 * and the application's own policies are what they were afterwards.
 * Consequences:
 *  - pages the pre-fault creates (first touch, or the copy that breaks
 *    copy-on-write) go to the node;
 *  - a VMA with its own policy (mbind(), or a shmem/tmpfs shared policy)
 *    keeps it, and the kernel places its new pages by that policy, not on
 *    the node: they are counted in stats.pages_off_node and logged;
 *  - when the node runs out of free memory (or free huge pages) the kernel
 *    falls back to another node instead of failing or invoking the OOM
 *    killer: counted in pages_off_node as well.  Check the counter (or
 *    SAFEPIN_LOG=info) when placement matters;
 *  - pages already present on another node are never moved silently: they
 *    are counted in stats.pages_elsewhere and logged, and moved with
 *    move_pages() before the call returns (so before the device pins
 *    them) only with SAFEPIN_PIN_MIGRATE.  Pages the kernel cannot move
 *    (shared with a forked child or another process, locked by a device
 *    pin already) stay where they are: counted in pages_migrate_failed,
 *    logged, and the registration still succeeds.
 * Page counts are in base pages (a 2 MiB huge page counts 512).
 *
 * Kernels without NUMA support: node 0 is accepted (placement is a no-op),
 * every other node gives -ENODEV.
 */

/** No NUMA placement: the kernel's usual first-touch placement. */
#define SAFEPIN_NUMA_NODE_NONE (-1)

/** safepin_pin_opts() flag: move pages already present on another node. */
#define SAFEPIN_PIN_MIGRATE (1u << 0)

/**
 * struct safepin_pin_opts - options of safepin_pin_opts().
 * @size: set to sizeof(struct safepin_pin_opts).  A caller built against
 *	a newer header may pass a larger structure as long as the fields
 *	this library does not know are zero (else -E2BIG).
 * @numa_node: node the pre-faulted pages go to, or SAFEPIN_NUMA_NODE_NONE.
 *	Any negative value other than -1 is -EINVAL, so the negative errno
 *	of a failed safepin_numa_node_of_*() call stops the registration
 *	instead of silently dropping the placement.
 * @flags: 0 or SAFEPIN_PIN_MIGRATE (needs a node).
 */
struct safepin_pin_opts {
	size_t size;
	int numa_node;
	unsigned int flags;
};

/**
 * safepin_pin_opts() - safepin_pin() with options (NUMA placement).
 * @opts: NULL for the behaviour of safepin_pin(addr, len, 0).
 *
 * Everything safepin_pin() says holds; in addition the pages go to
 * @opts->numa_node as described above.  Release with safepin_unpin(@addr,
 * @len).  (In C++, name the structure "struct safepin_pin_opts": the
 * function hides the bare name.)
 *
 * Return: 0, or a negative errno with no page count, VMA flag or memory
 * policy changed (the argument errors below are found before any page is
 * looked at; pages SAFEPIN_PIN_MIGRATE moved before a later failure, e.g.
 * -EFAULT, stay moved):
 *  -EINVAL  as for safepin_pin(); @opts->size smaller than the first
 *           version of the structure; unknown @flags; SAFEPIN_PIN_MIGRATE
 *           without a node; @numa_node < -1 or larger than any node this
 *           kernel can name (numa_max_possible_node());
 *  -E2BIG   @opts->size larger than this library knows, with non-zero
 *           bytes in the part it does not know;
 *  -ENODEV  @numa_node is a valid number but not a node this process can
 *           allocate on: not online, without memory (a memoryless, CPU-only
 *           node), or outside its cpuset's mems_allowed;
 *  other    as for safepin_pin(); or an errno of set_mempolicy().
 */
SAFEPIN_EXPORT int safepin_pin_opts(const void *addr, size_t len,
				    const struct safepin_pin_opts *opts);

/**
 * safepin_numa_node_of_pci() - the NUMA node of a PCI device (VFIO users).
 * @bdf: the device's address as in /sys/bus/pci/devices: "0000:3b:00.0"
 *	(a bare "3b:00.0" means PCI domain 0).
 *
 * Return: the node (>= 0); SAFEPIN_NUMA_NODE_NONE (-1) when the device has
 * no NUMA affinity (sysfs says -1, a single-node machine, no NUMA support);
 * -EINVAL (errno EINVAL) for a malformed @bdf or NULL; -ENODEV (errno
 * ENODEV) when there is no such device.  Errors are below -1, so the result
 * can go straight into a numa_node field (see struct safepin_pin_opts).
 * RDMA users: safepin_numa_node_of_ibv_device() in <safepin/verbs.h>.
 */
SAFEPIN_EXPORT int safepin_numa_node_of_pci(const char *bdf);

/**
 * struct safepin_numa_stats - NUMA counters (since the process, or the
 * forked child, started), in base pages.
 * @size: set to sizeof(struct safepin_numa_stats); fields beyond it are not
 *	written.
 * @placed_registrations: successful calls with a node (alloc included).
 * @pages_elsewhere: pages found present on another node before the
 *	pre-fault (migrated or not).
 * @pages_migrated: of those, moved to the node (SAFEPIN_PIN_MIGRATE).
 * @pages_migrate_failed: of those, SAFEPIN_PIN_MIGRATE could not move.
 * @pages_off_node: pages not on the node when the pre-fault was done (VMA
 *	policy, node out of memory, not migrated, migration failed).
 */
struct safepin_numa_stats {
	size_t size;
	uint64_t placed_registrations;
	uint64_t pages_elsewhere;
	uint64_t pages_migrated;
	uint64_t pages_migrate_failed;
	uint64_t pages_off_node;
};

/**
 * safepin_get_numa_stats() - read the NUMA counters.
 * Return: 0, or -EINVAL if @stats is NULL or ->size is too small.
 */
SAFEPIN_EXPORT int safepin_get_numa_stats(struct safepin_numa_stats *stats);

/** safepin_alloc() flag: hugetlb pages (MAP_HUGETLB). */
#define SAFEPIN_ALLOC_HUGETLB (1u << 0)
/** safepin_alloc() flag: madvise(MADV_HUGEPAGE), for THP in "madvise" mode. */
#define SAFEPIN_ALLOC_THP (1u << 1)

/**
 * struct safepin_alloc_opts - options of safepin_alloc().
 * @size: set to sizeof(struct safepin_alloc_opts); larger sizes as for
 *	struct safepin_pin_opts.
 * @numa_node: node of the pages, or SAFEPIN_NUMA_NODE_NONE; same rules as
 *	struct safepin_pin_opts (e.g. safepin_numa_node_of_pci()).
 * @flags: 0, SAFEPIN_ALLOC_HUGETLB, SAFEPIN_ALLOC_THP.
 * @huge_page_size: with SAFEPIN_ALLOC_HUGETLB, the huge page size in bytes
 *	(a power of two the kernel supports, see safepin_probe()); 0 for the
 *	default huge page size.  Must be 0 otherwise.
 */
struct safepin_alloc_opts {
	size_t size;
	int numa_node;
	unsigned int flags;
	size_t huge_page_size;
};

/**
 * safepin_alloc() - allocate a DMA buffer: mapped, placed, pre-faulted and
 * registered (as by safepin_pin_opts()) in one call.
 * @len: bytes, > 0.  The mapping is rounded up to whole pages (whole huge
 *	pages with SAFEPIN_ALLOC_HUGETLB).
 * @opts: NULL for defaults (no node, base pages).
 *
 * The buffer is fresh private anonymous memory, zero-filled, aligned to its
 * huge page size with SAFEPIN_ALLOC_HUGETLB, else to the transparent huge
 * page size (2 MiB on x86) when @len is at least that big, so that THP can
 * back it and no huge page straddles its ends; else to the base page.  It is
 * registered as [ret, ret + @len): hand it to a device as soon as the call
 * returns.  Its pages are on @opts->numa_node unless the node ran out of
 * memory or huge pages (stats.pages_off_node, logged).
 *
 * Return: the buffer, or NULL with errno set: EINVAL (bad @len, @opts,
 * flags or huge page size), E2BIG, ENODEV (as for safepin_pin_opts()),
 * ENOMEM (mmap() failed: no free huge pages of that size, address space,
 * vm.max_map_count), or an errno of the registration.  Nothing is left
 * mapped or registered on failure.
 */
SAFEPIN_EXPORT void *safepin_alloc(size_t len, const struct safepin_alloc_opts *opts);

/**
 * safepin_free() - release and unmap a buffer from safepin_alloc().
 * @p, @len: exactly as allocated.  Release the device's pin first.
 *
 * Return: 0, or a negative errno (also in errno), with nothing changed:
 * -EINVAL for NULL, 0 or a @p that is not page aligned; -ENOENT when no
 * live registration has exactly @p and @len (not from safepin_alloc(), or
 * freed already).
 */
SAFEPIN_EXPORT int safepin_free(void *p, size_t len);

/* ===== end of NUMA placement and DMA buffers ===== */

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

/* ===================================================================== *
 * Lifetime violations and audit.                                        *
 * ===================================================================== */

/*
 * The most common registration bug: memory is unmapped, moved or discarded
 * while a device still has it registered (free() or munmap() before
 * ibv_dereg_mr()).  The device keeps the old pages; the process gets new
 * ones at the same address.  Two ways to notice, both reporting the same
 * way (a log line at level error naming the range and the registration it
 * hit, stats.violations, and the monitor's callback):
 *  - the LD_PRELOAD shim (safepin-run) sees the call itself: munmap,
 *    mremap, madvise(MADV_DONTNEED/FREE/REMOVE/DONTNEED_LOCKED),
 *    mmap(MAP_FIXED) over it, free() or realloc() of a malloc chunk that
 *    overlaps a registration;
 *  - a linked application can start safepin_monitor_start(): a userfaultfd
 *    watches the registered ranges for unmap, remap and remove events.
 *
 * What a violation does to the library's state.  The registration is
 * "violated": its pages inside the range taken away no longer count (the
 * mapping is gone, so nothing is unmarked there; after a discard the still
 * existing mapping is unmarked if no other registration covers it), so new
 * memory mapped at the same address and registered again is marked like
 * any other.  Its other pages stay counted and marked (the device may still
 * use them).  The later safepin_unpin() (or dereg) of a violated
 * registration succeeds, releases what is left of it and reports nothing
 * more.  Identical (addr, len) registrations release the violated one first.
 */

/** What the application did to registered memory. */
enum safepin_violation_kind {
	SAFEPIN_VIOLATION_MUNMAP = 1,	/* munmap(), or shrinking brk/shm (monitor) */
	SAFEPIN_VIOLATION_MREMAP = 2,	/* moved or shrunk by mremap() */
	SAFEPIN_VIOLATION_DONTNEED = 3,	/* madvise(MADV_DONTNEED[_LOCKED]) */
	SAFEPIN_VIOLATION_FREE = 4,	/* madvise(MADV_FREE) */
	SAFEPIN_VIOLATION_REMOVE = 5,	/* madvise(MADV_REMOVE) (monitor: any discard) */
	SAFEPIN_VIOLATION_MAP_FIXED = 6,/* mmap(MAP_FIXED) over it (shim) */
	SAFEPIN_VIOLATION_FREE_CALL = 7,/* free()/realloc() of a malloc chunk (shim) */
};

/**
 * struct safepin_violation - one violation, as passed to the callback.
 * @kind:  what happened.
 * @start, @end: the page-aligned range the application took away.
 * @reg_addr, @reg_len: a registration it hit (one callback per registration).
 * @again: the registration was reported violated before.
 */
struct safepin_violation {
	size_t size;
	enum safepin_violation_kind kind;
	uintptr_t start, end;
	const void *reg_addr;
	size_t reg_len;
	int again;
};

typedef void (*safepin_violation_fn)(const struct safepin_violation *v, void *arg);

/**
 * struct safepin_monitor_opts - options of safepin_monitor_start().
 * @size: sizeof(struct safepin_monitor_opts).
 * @callback: called from the monitor's thread for every violation (may be
 *	NULL); it may call any libsafepin function.
 * @arg: passed to @callback.
 */
struct safepin_monitor_opts {
	size_t size;
	safepin_violation_fn callback;
	void *arg;
};

/**
 * safepin_monitor_start() - watch registered memory with a userfaultfd.
 * @opts: NULL for no callback.
 *
 * Opens a userfaultfd with UFFD_FEATURE_EVENT_UNMAP | EVENT_REMOVE |
 * EVENT_REMAP, registers every live and future registration's pages with
 * it and starts a thread that reads its events.  The registration changes
 * no fault behaviour: write-protect mode with nothing write-protected where
 * the kernel allows it (anonymous memory: Linux 5.7+; shmem and hugetlb:
 * 5.19+), else missing mode, where a fault after a discard is resolved by
 * unregistering the page.  Registrations of other file mappings cannot be
 * watched (logged at level info).  Events arrive after the fact: the
 * munmap has happened, and the report follows within the thread's latency;
 * a new registration waits until pending events are handled.
 *
 * Needs userfaultfd: privileged (CAP_SYS_PTRACE), or vm.unprivileged_userfaultfd
 * = 1, or UFFD_USER_MODE_ONLY (5.11+, tried first), or /dev/userfaultfd
 * access (6.1+).  Forked children are not watched (the thread is not
 * copied); start it again there if needed.
 *
 * Return: 0, -EALREADY if running, -EINVAL for bad @opts, -ENOSYS without
 * userfaultfd, -EPERM when the kernel refuses it, -errno otherwise.
 */
SAFEPIN_EXPORT int safepin_monitor_start(const struct safepin_monitor_opts *opts);
/* Stop the thread, unregister everything. Return 0 or -ENOENT (not running). */
SAFEPIN_EXPORT int safepin_monitor_stop(void);

/** safepin_audit() flag: print the report (one line per finding) to stderr. */
#define SAFEPIN_AUDIT_PRINT (1u << 0)

/**
 * struct safepin_audit_report - what safepin_audit() found.
 * @size: sizeof(struct safepin_audit_report).
 * @flags: in: 0 or SAFEPIN_AUDIT_PRINT.
 * @registrations: live registrations checked (identical ones count once
 *	each); violated registrations not yet deregistered included.
 * @pages: base pages checked.
 * @bad: registrations with at least one finding below.
 * @unmapped: ... with a page unmapped or PROT_NONE.
 * @not_present: ... with a page not present (discarded, swapped out).
 * @not_exclusive: ... with a private page also mapped elsewhere (pagemap
 *	bit 56 clear: shared copy-on-write, e.g. with a child of a fork that
 *	did not go through glibc's fork()).
 * @moved: ... now on other physical pages than when it was pinned.
 * @unmarked: ... whose private pages are not marked as the policy says
 *	(VmFlags dc or wf: someone called MADV_DOFORK behind the library).
 * @violated: violated registrations not yet deregistered.
 * @pfns: 1 physical pages were compared; 0 not recorded (set
 *	SAFEPIN_AUDIT_PFNS=1 before the first registration); -1 pagemap shows
 *	no PFNs (needs CAP_SYS_ADMIN).
 *
 * Cost: one smaps read for the VMA flags and one pagemap read per 512 pages
 * of every registration, under the registry lock (registrations wait).
 * Recording PFNs costs one pagemap read per registration at pin time and 8
 * bytes per registration (a hash of the PFN list, not the list).
 */
struct safepin_audit_report {
	size_t size;
	unsigned int flags;
	uint64_t registrations;
	uint64_t pages;
	uint64_t bad;
	uint64_t unmapped;
	uint64_t not_present;
	uint64_t not_exclusive;
	uint64_t moved;
	uint64_t unmarked;
	uint64_t violated;
	int pfns;
};

/**
 * safepin_audit() - check every live registration against the kernel.
 * Return: 0 (findings are in @report, not an error), -EINVAL for a bad
 * @report, or a negative errno when /proc could not be read.
 */
SAFEPIN_EXPORT int safepin_audit(struct safepin_audit_report *report);

/* ===== end of lifetime violations and audit ===== */

#ifdef __cplusplus
}
#endif

#endif /* SAFEPIN_SAFEPIN_H */
