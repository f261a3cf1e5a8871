/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Which buffer libsafepin pinned for which IOMMU mapping: entries keyed by
 * (file descriptor, address space, IOVA) holding the IOVA range and the
 * (vaddr, size) handed to registry_pin(), so that an unmap by IOVA range
 * releases exactly what the kernel unmapped.  The address space is the
 * IOAS id for iommufd and VFIO_TABLE_CONTAINER for a VFIO container.
 *
 * Within one (fd, space) the kernel never lets two mappings overlap in
 * IOVA; the table keeps that invariant: a mapping the kernel accepted over
 * a recorded one proves the record stale (its fd was closed and the number
 * reused), and vfio_table_insert() hands such records back for release.
 *
 * Pure data structure, no syscalls.  Nodes are allocated apart from
 * insertion so that the wrappers never fail after the kernel mapped
 * memory; taken entries come back as a list (linked by ->next, ascending
 * IOVA) that can be released or put back unchanged.
 */
#ifndef SAFEPIN_VFIO_TABLE_H
#define SAFEPIN_VFIO_TABLE_H

#include <stddef.h>
#include <stdint.h>

#include "avl.h"
#include "node_alloc.h"

#define VFIO_TABLE_CONTAINER UINT32_MAX

struct vfio_map {
	uint64_t iova;
	uint64_t size;		/* > 0; iova + size - 1 does not wrap */
	uintptr_t vaddr;	/* the range pinned: vaddr, size */
};

struct vfio_node {
	struct avl_node avl;
	struct vfio_node *next;	/* in lists handed out by the table */
	int fd;
	uint32_t space;
	struct vfio_map map;
};

struct vfio_table {
	struct avl_tree tree;
	struct node_alloc alloc;
	size_t count;
};

void vfio_table_init(struct vfio_table *t, const struct node_alloc *alloc);
/* Free every node; the table is empty and usable afterwards. */
void vfio_table_clear(struct vfio_table *t);
/* Drop every node without freeing it (a forked child). */
void vfio_table_forget(struct vfio_table *t);

/* A node for vfio_table_insert(); NULL when out of memory. */
struct vfio_node *vfio_table_node_new(struct vfio_table *t);
void vfio_table_node_free(struct vfio_table *t, struct vfio_node *n);
/* Free a list of nodes. */
void vfio_table_free_list(struct vfio_table *t, struct vfio_node *list);

/*
 * Link @n as the mapping @m of (@fd, @space).  Never fails.  Entries of
 * (@fd, @space) whose IOVA range overlaps @m's are stale: they are unlinked
 * and returned as a list (NULL when there is none) for the caller to
 * release and free.
 */
struct vfio_node *vfio_table_insert(struct vfio_table *t, struct vfio_node *n, int fd,
				    uint32_t space, const struct vfio_map *m);

/* Unlink the entries of (@fd, @space) whose IOVA starts in [@first, @last]
 * (inclusive); return them as a list in ascending IOVA, NULL if none. */
struct vfio_node *vfio_table_take_starting(struct vfio_table *t, int fd, uint32_t space,
					   uint64_t first, uint64_t last);
/* Unlink every entry of @fd, any space. */
struct vfio_node *vfio_table_take_fd(struct vfio_table *t, int fd);
/* Link the entries of a taken list again (an unmap that proved nothing). */
void vfio_table_put_back(struct vfio_table *t, struct vfio_node *list);

/* The mapping of (@fd, @space) that contains @iova, into *@m. 0 or -ENOENT. */
int vfio_table_find(const struct vfio_table *t, int fd, uint32_t space, uint64_t iova,
		    struct vfio_map *m);

/* Sum of ->map.size over a list; number of nodes in it. */
uint64_t vfio_list_bytes(const struct vfio_node *list);
size_t vfio_list_length(const struct vfio_node *list);

static inline size_t vfio_table_count(const struct vfio_table *t)
{
	return t->count;
}

#endif
