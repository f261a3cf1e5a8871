/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * NUMA placement of pre-faulted pages: the only file that talks to the
 * kernel's NUMA interfaces (get_mempolicy, set_mempolicy, move_pages through
 * libnuma, and the sysfs node files).
 *
 * Placement never touches a VMA's memory policy: the thread that pre-faults
 * switches its own policy to MPOL_PREFERRED(node) for the duration of the
 * pre-fault and restores it right after, so a VMA with its own mbind()
 * policy keeps it and its pages go where that policy says (counted as off
 * node, logged).
 */
#ifndef SAFEPIN_NUMA_PLACE_H
#define SAFEPIN_NUMA_PLACE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <safepin/safepin.h>

/* Where a registration's pages should live. NULL means "anywhere". */
struct pin_placement {
	int node;	/* a node numa_check_node() accepted */
	bool migrate;	/* move pages already present on another node */
};

/*
 * Whether @node can hold this process's memory: 0; -EINVAL for a number no
 * nodemask of this kernel can name (< 0 or > numa_max_possible_node());
 * -ENODEV for a node that is not online, has no memory, or is outside the
 * cpuset's mems_allowed.
 */
int numa_check_node(int node);

/* The thread policy saved by numa_prefault_begin() (4096-bit nodemask). */
#define NUMA_MASK_LONGS (4096 / (8 * sizeof(unsigned long)))
struct numa_prefault {
	bool active;
	int old_mode;
	unsigned long old_mask[NUMA_MASK_LONGS];
};

/*
 * Around the pre-fault of [start, end) (one VMA, pages of @page_size):
 * begin reports pages already present on another node (and with
 * @pl->migrate moves them there), then switches the calling thread's
 * policy to the node; end restores the thread's policy and counts the
 * pages that still are not on the node.  Both do nothing for a NULL @pl.
 * begin returns 0 or -errno (the policy could not be set; nothing to end).
 */
int numa_prefault_begin(const struct pin_placement *pl, struct numa_prefault *st,
			uintptr_t start, uintptr_t end, size_t page_size);
void numa_prefault_end(const struct pin_placement *pl, struct numa_prefault *st,
		       uintptr_t start, uintptr_t end, size_t page_size);

/* A registration with a placement was made (stats). */
void numa_count_placed(void);

void numa_read_stats(struct safepin_numa_stats *out);

/*
 * The numa_node of a device directory in sysfs (<dir>/numa_node):
 * node >= 0, SAFEPIN_NUMA_NODE_NONE when the file is missing or says -1,
 * -ENODEV when @dir does not exist.
 */
int numa_node_of_sysfs_dir(const char *dir);

#endif
