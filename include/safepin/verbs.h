/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * libsafepin verbs API: fork-safe drop-in replacements for the libibverbs
 * memory registration calls.
 *
 * Converting an application is a rename:
 *
 *	ibv_reg_mr(pd, buf, len, access)        ->  safepin_reg_mr(...)
 *	ibv_reg_mr_iova(pd, buf, len, iova, a)  ->  safepin_reg_mr_iova(...)
 *	ibv_reg_mr_iova2(pd, buf, len, iova, a) ->  safepin_reg_mr_iova2(...)
 *	ibv_rereg_mr(mr, flags, pd, buf, len, a)->  safepin_rereg_mr(...)
 *	ibv_dereg_mr(mr)                        ->  safepin_dereg_mr(mr)
 *
 * Each function takes the same arguments and returns what its ibv_
 * counterpart returns, with the same errno.  The struct ibv_mr they return
 * is the provider's own: use it with every other verb as before.  Access
 * flags may be constants or variables (libibverbs' ibv_reg_mr macro
 * special-cases constants; these are plain functions and take both).
 *
 * What they add (see <safepin/safepin.h> for the mechanism): before the
 * provider pins the pages, the range is marked so that a fork()ed child
 * does not share them (MADV_DONTFORK by default) and faulted in with write
 * semantics, so the device pins pages this process owns exclusively; a
 * later fork() and a CPU write in the parent can no longer leave the device
 * on a page the parent does not see.  (A region with IBV_ACCESS_LOCAL_WRITE
 * is only marked: the kernel pins it for write, which faults every page in
 * with write semantics itself; see SAFEPIN_PIN_DEVICE_WRITES.)  The marking is counted per page
 * across overlapping regions (also across protection domains and with
 * safepin_pin() users) and removed only after the last region covering a
 * page has been deregistered.  All of it happens under the fork guard, so
 * no fork() sees a range marked but not yet registered, or deregistered but
 * still marked.
 *
 * Rules:
 *  - A failed call changes nothing: no page count, no VMA flag.  The errno
 *    of a failed provider call is passed through unchanged.
 *  - Memory regions registered with IBV_ACCESS_ON_DEMAND (ODP) pin no pages
 *    and are passed through unmarked; so are zero-length regions.
 *  - Deregister a region registered here with safepin_dereg_mr(): a region
 *    released with plain ibv_dereg_mr() stays counted (its pages stay
 *    marked: safe, but the child misses them).  safepin_dereg_mr() and
 *    safepin_rereg_mr() accept regions registered by plain libibverbs calls
 *    and pass them through.
 *  - A forked child owns no registrations: it may open devices and register
 *    its own memory here as usual.
 *  - Applications that also call ibv_fork_init(): where libibverbs' fork
 *    support is active, the marking of every region is left to libibverbs'
 *    own page counts (libsafepin still pre-faults and counts), so that
 *    ibv_dontfork_range()/ibv_dofork_range() and these functions never clear
 *    each other's marks.  Where ibv_fork_init() leaves that support off
 *    (newer rdma-core on kernels that copy pinned pages at fork),
 *    libsafepin marks as usual.
 *
 * Link with -lsafepin -libverbs (pkg-config safepin).  Thread-safe.
 */
#ifndef SAFEPIN_VERBS_H
#define SAFEPIN_VERBS_H

#include <infiniband/verbs.h>

#include <safepin/safepin.h>
#include <safepin/verbs_config.h>

#if !SAFEPIN_HAVE_VERBS
#error "libsafepin was built without libibverbs: the verbs API is not available"
#endif

#ifdef __cplusplus
extern "C" {
#endif

/**
 * safepin_reg_mr() - ibv_reg_mr() that stays correct across fork().
 *
 * Return: the memory region, or NULL with errno set: the provider's errno
 * when it refused the registration, else EFAULT (part of the range is not
 * mapped), ENOMEM (out of memory or vm.max_map_count reached), or an errno
 * of madvise().  Nothing stays marked on failure.
 */
SAFEPIN_EXPORT struct ibv_mr *safepin_reg_mr(struct ibv_pd *pd, void *addr, size_t length,
					     int access);

/** safepin_reg_mr_iova() - ibv_reg_mr_iova() (device address @hca_va); as above. */
SAFEPIN_EXPORT struct ibv_mr *safepin_reg_mr_iova(struct ibv_pd *pd, void *addr, size_t length,
						  uint64_t hca_va, int access);

/** safepin_reg_mr_iova2() - ibv_reg_mr_iova2() (unsigned access flags); as above. */
SAFEPIN_EXPORT struct ibv_mr *safepin_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t length,
						   uint64_t iova, unsigned int access);

#if SAFEPIN_HAVE_REG_MR_EX
/**
 * safepin_reg_mr_ex() - ibv_reg_mr_ex().  User memory (IBV_REG_MR_MASK_ADDR
 * in @attr->comp_mask, no dma-buf fd, no ODP) is handled as by
 * safepin_reg_mr(); other kinds pin no user pages and are passed through.
 * Only declared when the rdma-core libsafepin was built against has
 * ibv_reg_mr_ex().
 */
SAFEPIN_EXPORT struct ibv_mr *safepin_reg_mr_ex(struct ibv_pd *pd,
						struct ibv_mr_init_attr *attr);
#endif

/**
 * safepin_rereg_mr() - ibv_rereg_mr().
 *
 * With IBV_REREG_MR_CHANGE_TRANSLATION the marking moves from the region's
 * old range to [@addr, @addr + @length): the new range is marked before the
 * provider call, the old one unmarked after it succeeded (pages shared by
 * both stay marked throughout), all within one fork guard.  Changing the
 * access to or from IBV_ACCESS_ON_DEMAND marks or unmarks accordingly.
 *
 * Return: 0 or one of libibverbs' enum ibv_rereg_mr_err_code values, with
 * errno set: IBV_REREG_MR_ERR_INPUT for arguments ibv_rereg_mr() refuses,
 * IBV_REREG_MR_ERR_DONT_FORK_NEW when the new range could not be marked,
 * IBV_REREG_MR_ERR_CMD when the provider failed (its errno; the new range
 * is unmarked, the old one stays marked), IBV_REREG_MR_ERR_DO_FORK_OLD when
 * the provider succeeded but the old range could not be released (it stays
 * marked).
 */
SAFEPIN_EXPORT int safepin_rereg_mr(struct ibv_mr *mr, int flags, struct ibv_pd *pd, void *addr,
				    size_t length, int access);

/**
 * safepin_dereg_mr() - ibv_dereg_mr().
 *
 * The range is unmarked only after the provider released it; if
 * ibv_dereg_mr() fails nothing is unmarked.
 *
 * Return: 0, or the errno value ibv_dereg_mr() returned (also in errno).
 */
SAFEPIN_EXPORT int safepin_dereg_mr(struct ibv_mr *mr);

/* ----- NUMA: the device's node (see "NUMA placement" in <safepin/safepin.h>) ----- */

/**
 * safepin_numa_node_of_ibv_device() - the NUMA node of an RDMA device.
 * @device: from ibv_get_device_list(), or ibv_context->device.
 *
 * Reads /sys/class/infiniband/<name>/device/numa_node, the node of the
 * device's PCI function.
 *
 * Return: the node (>= 0); SAFEPIN_NUMA_NODE_NONE (-1) when the device has
 * no NUMA affinity: a soft device without a parent device (rxe on a virtual
 * netdev, siw), sysfs saying -1, a kernel without NUMA; -EINVAL (errno
 * EINVAL) for a NULL @device; -ENODEV (errno ENODEV) when sysfs does not
 * know the device.  Errors are below -1, so the result can go straight into
 * struct safepin_pin_opts.numa_node or struct safepin_alloc_opts.numa_node:
 *
 *	struct safepin_alloc_opts o = { .size = sizeof(o),
 *		.numa_node = safepin_numa_node_of_ibv_device(ctx->device) };
 *	void *buf = safepin_alloc(len, &o);   // then safepin_reg_mr(pd, buf, len, ...)
 *
 * (safepin_reg_mr() itself takes no node yet: register a buffer from
 * safepin_alloc(), or pin it with safepin_pin_opts() first.)
 */
SAFEPIN_EXPORT int safepin_numa_node_of_ibv_device(struct ibv_device *device);

#ifdef __cplusplus
}
#endif

#endif /* SAFEPIN_VERBS_H */
