/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Which range libsafepin pinned for which memory region: a map from the
 * struct ibv_mr pointer (an opaque key here) to the (addr, len) handed to
 * registry_pin(), so that deregistration and re-registration release exactly
 * what was pinned, even after the application changed mr->addr.
 *
 * Pure data structure, no syscalls.  Nodes are allocated separately from
 * insertion (mr_table_node_new()) so that the verbs wrappers can allocate
 * before the provider call and never fail after the device has pinned
 * memory.  mr_table_take() unlinks an entry without freeing it, so that an
 * entry can be put back (mr_table_insert()) when a device call fails.
 */
#ifndef SAFEPIN_MR_TABLE_H
#define SAFEPIN_MR_TABLE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "avl.h"
#include "node_alloc.h"

struct mr_pin {
	uintptr_t addr;
	size_t len;
};

struct mr_node {
	struct avl_node avl;
	const void *key;
	struct mr_pin pin;
};

struct mr_table {
	struct avl_tree tree;
	struct node_alloc alloc;
	size_t count;
};

void mr_table_init(struct mr_table *t, const struct node_alloc *alloc);
/* Free every node; the table is empty and usable afterwards. */
void mr_table_clear(struct mr_table *t);
/* Drop every node without freeing it (a forked child, whose nodes are the
 * parent's); the table is empty and usable afterwards. */
void mr_table_forget(struct mr_table *t);

/* A node for mr_table_insert(); NULL when out of memory. */
struct mr_node *mr_table_node_new(struct mr_table *t);
void mr_table_node_free(struct mr_table *t, struct mr_node *n);

/*
 * Link @n as the entry of @key with @pin.  Never fails.  If @key already
 * had an entry it is stale (the region was released behind the library's
 * back and its memory reused): it is replaced and freed, its pin copied to
 * *@stale and 1 returned, so that the caller can release it.  Else 0.
 */
int mr_table_insert(struct mr_table *t, struct mr_node *n, const void *key,
		    const struct mr_pin *pin, struct mr_pin *stale);
/* The pin of @key into *@pin. Return 0 or -ENOENT. */
int mr_table_find(const struct mr_table *t, const void *key, struct mr_pin *pin);
/* Unlink the entry of @key and return it (not freed); NULL if none. */
struct mr_node *mr_table_take(struct mr_table *t, const void *key);

static inline size_t mr_table_count(const struct mr_table *t)
{
	return t->count;
}

/*
 * What a re-registration does to a region's pin, decided before the device
 * call (safepin_rereg_mr() and the shim's ibv_rereg_mr share it).
 * @old: the region's pin, NULL if it has none; @translation: the new range
 * (IBV_REREG_MR_CHANGE_TRANSLATION), NULL if unchanged; @current: the
 * region's range as the device knows it; @change_access with @odp: the new
 * access flags are given and ask for on-demand paging (which pins nothing).
 */
struct mr_rereg_plan {
	struct mr_pin new;	/* the region's range afterwards */
	bool new_pinned;	/* it pins pages afterwards */
	bool pin_new;		/* pin @new before the device call */
	bool unpin_old;		/* release the old pin once the call succeeded */
};

void mr_rereg_plan(struct mr_rereg_plan *plan, const struct mr_pin *old,
		   const struct mr_pin *translation, const struct mr_pin *current,
		   bool change_access, bool odp);

#endif
