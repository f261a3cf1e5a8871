// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <errno.h>

#include "vfio_table.h"

static struct vfio_node *node_of(const struct avl_node *a)
{
	return a ? avl_entry(a, struct vfio_node, avl) : NULL;
}

/* Order: fd, then space, then IOVA. */
static int cmp(int fd, uint32_t space, uint64_t iova, const struct vfio_node *n)
{
	if (fd != n->fd)
		return fd < n->fd ? -1 : 1;
	if (space != n->space)
		return space < n->space ? -1 : 1;
	if (iova != n->map.iova)
		return iova < n->map.iova ? -1 : 1;
	return 0;
}

static int same_space(const struct vfio_node *n, int fd, uint32_t space)
{
	return n && n->fd == fd && n->space == space;
}

/* The first entry at or after (fd, space, iova) in table order. */
static struct vfio_node *lower_bound(const struct vfio_table *t, int fd, uint32_t space,
				     uint64_t iova)
{
	struct avl_node *a = t->tree.root, *best = NULL;

	while (a) {
		int c = cmp(fd, space, iova, node_of(a));

		if (c <= 0) {
			best = a;
			if (!c)
				break;
			a = a->left;
		} else {
			a = a->right;
		}
	}
	return node_of(best);
}

static uint64_t last_of(const struct vfio_map *m)
{
	return m->iova + (m->size - 1);
}

void vfio_table_init(struct vfio_table *t, const struct node_alloc *alloc)
{
	t->tree.root = NULL;
	t->alloc = *alloc;
	t->count = 0;
}

void vfio_table_forget(struct vfio_table *t)
{
	t->tree.root = NULL;
	t->count = 0;
}

void vfio_table_clear(struct vfio_table *t)
{
	struct vfio_node *n;

	while ((n = node_of(avl_first(&t->tree)))) {
		avl_remove(&t->tree, &n->avl);
		vfio_table_node_free(t, n);
	}
	vfio_table_forget(t);
}

struct vfio_node *vfio_table_node_new(struct vfio_table *t)
{
	struct vfio_node *n = t->alloc.alloc(t->alloc.ctx, sizeof(*n));

	if (n)
		n->next = NULL;
	return n;
}

void vfio_table_node_free(struct vfio_table *t, struct vfio_node *n)
{
	if (n)
		t->alloc.free(t->alloc.ctx, n, sizeof(*n));
}

void vfio_table_free_list(struct vfio_table *t, struct vfio_node *list)
{
	while (list) {
		struct vfio_node *next = list->next;

		vfio_table_node_free(t, list);
		list = next;
	}
}

static void link_node(struct vfio_table *t, struct vfio_node *n)
{
	struct avl_node **link = &t->tree.root, *parent = NULL;
	int left = 0;

	while (*link) {
		parent = *link;
		left = cmp(n->fd, n->space, n->map.iova, node_of(parent)) < 0;
		link = left ? &parent->left : &parent->right;
	}
	n->next = NULL;
	avl_insert_at(&t->tree, &n->avl, parent, left);
	t->count++;
}

/* Unlink @n and append it to the list ending at **@tail. */
static void unlink_to(struct vfio_table *t, struct vfio_node *n, struct vfio_node ***tail)
{
	avl_remove(&t->tree, &n->avl);
	t->count--;
	n->next = NULL;
	**tail = n;
	*tail = &n->next;
}

/* Unlink the entries of (fd, space) that overlap [first, last]. */
static struct vfio_node *take_overlapping(struct vfio_table *t, int fd, uint32_t space,
					  uint64_t first, uint64_t last)
{
	struct vfio_node *list = NULL, **tail = &list, *n, *prev;

	n = lower_bound(t, fd, space, first);
	/* At most one entry starting below @first reaches into the range. */
	prev = node_of(n ? avl_prev(&n->avl) : avl_last(&t->tree));
	if (same_space(prev, fd, space) && last_of(&prev->map) >= first)
		unlink_to(t, prev, &tail);
	while (same_space(n, fd, space) && n->map.iova <= last) {
		struct vfio_node *next = node_of(avl_next(&n->avl));

		unlink_to(t, n, &tail);
		n = next;
	}
	return list;
}

struct vfio_node *vfio_table_insert(struct vfio_table *t, struct vfio_node *n, int fd,
				    uint32_t space, const struct vfio_map *m)
{
	struct vfio_node *stale = take_overlapping(t, fd, space, m->iova, last_of(m));

	n->fd = fd;
	n->space = space;
	n->map = *m;
	link_node(t, n);
	return stale;
}

struct vfio_node *vfio_table_take_starting(struct vfio_table *t, int fd, uint32_t space,
					   uint64_t first, uint64_t last)
{
	struct vfio_node *list = NULL, **tail = &list, *n;

	if (first > last)
		return NULL;
	n = lower_bound(t, fd, space, first);
	while (same_space(n, fd, space) && n->map.iova <= last) {
		struct vfio_node *next = node_of(avl_next(&n->avl));

		unlink_to(t, n, &tail);
		n = next;
	}
	return list;
}

struct vfio_node *vfio_table_take_fd(struct vfio_table *t, int fd)
{
	struct vfio_node *list = NULL, **tail = &list, *n;

	n = lower_bound(t, fd, 0, 0);
	while (n && n->fd == fd) {
		struct vfio_node *next = node_of(avl_next(&n->avl));

		unlink_to(t, n, &tail);
		n = next;
	}
	return list;
}

void vfio_table_put_back(struct vfio_table *t, struct vfio_node *list)
{
	while (list) {
		struct vfio_node *next = list->next;

		link_node(t, list);
		list = next;
	}
}

int vfio_table_find(const struct vfio_table *t, int fd, uint32_t space, uint64_t iova,
		    struct vfio_map *m)
{
	struct vfio_node *n = lower_bound(t, fd, space, iova);

	if (!same_space(n, fd, space) || n->map.iova != iova) {
		n = node_of(n ? avl_prev(&n->avl) : avl_last(&t->tree));
		if (!same_space(n, fd, space) || last_of(&n->map) < iova)
			return -ENOENT;
	}
	*m = n->map;
	return 0;
}

uint64_t vfio_list_bytes(const struct vfio_node *list)
{
	uint64_t sum = 0;

	for (; list; list = list->next)
		sum += list->map.size;
	return sum;
}

size_t vfio_list_length(const struct vfio_node *list)
{
	size_t len = 0;

	for (; list; list = list->next)
		len++;
	return len;
}
