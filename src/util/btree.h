/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * B+tree of small fixed-size items, for bookkeeping that must stay cheap
 * per entry: a leaf packs dozens of items behind one header, where a
 * binary tree spends three pointers and an allocation on each.  Items are
 * opaque bytes ordered by the owner's comparison of a search key with an
 * item; the owner finds a position with btree_seek() and inserts or
 * deletes there.  Nodes come from a struct node_alloc, through a pool of
 * spare nodes: btree_reserve() fills it so that inserts made afterwards
 * cannot fail.  Pure data structure: no syscalls, no locks.
 *
 * A cursor is a position in a leaf; any insert or delete invalidates every
 * cursor but the one it returns.  Items may be changed in place as long as
 * their order does not change.
 */
#ifndef SAFEPIN_BTREE_H
#define SAFEPIN_BTREE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "node_alloc.h"

/* Every node, leaf or inner, is this size: one arena size class. */
#define BTREE_NODE_SIZE 512u
/* Items are at most this big (a leaf holds at least 7). */
#define BTREE_ITEM_MAX 64u

struct btree_node;

/*
 * <0, 0, >0 as @key sorts before, with or after @item.  A tree without one
 * (NULL) orders its items by a uint64_t in their first 8 bytes, any
 * alignment, and takes a uint64_t as key: searches compare inline.
 */
typedef int (*btree_cmp_fn)(const void *key, const void *item);

struct btree {
	struct btree_node *root;
	const struct node_alloc *alloc;	/* the owner's: it may be swapped under us */
	btree_cmp_fn cmp;
	struct btree_node *spare;	/* nodes kept back, chained through their parent link */
	size_t nr_spare;
	size_t nr_items;
	size_t nr_nodes;		/* in the tree, spares not included */
	uint16_t item_size;
	uint16_t leaf_cap, inner_cap;
	uint8_t height;			/* 0: empty; 1: the root is a leaf */
};

struct btree_cursor {
	struct btree_node *leaf;	/* NULL: the tree is empty */
	unsigned int idx;		/* may equal the leaf's count: just past its last item */
};

/* @alloc must outlive the tree; nodes are allocated through it at the time. */
void btree_init(struct btree *t, size_t item_size, btree_cmp_fn cmp,
		const struct node_alloc *alloc);
/* Free every node, spares included; the tree is empty and usable afterwards. */
void btree_clear(struct btree *t);
/* Forget every node without freeing it (their memory went away with the allocator). */
void btree_forget(struct btree *t);

/*
 * Position of the first item that sorts after @key (@after) or not before
 * it (!@after), as an insertion point: it may be one past the last item of
 * a leaf.  Return the item there (looking into the next leaf if need be),
 * or NULL if there is none.
 */
void *btree_seek(const struct btree *t, const void *key, bool after, struct btree_cursor *c);
/* The item at @c, moving @c to the next leaf if it is past a leaf's end; NULL at the end. */
void *btree_at(const struct btree *t, struct btree_cursor *c);
void *btree_first(const struct btree *t, struct btree_cursor *c);
/* Step @c to the next or previous item and return it; NULL (and @c unchanged) if none. */
void *btree_next(const struct btree *t, struct btree_cursor *c);
void *btree_prev(const struct btree *t, struct btree_cursor *c);
/* The item with @key, or NULL. */
void *btree_find(const struct btree *t, const void *key, struct btree_cursor *c);

/*
 * Insert @item at @c (from btree_seek() of the item's own key, no change
 * since).  Return 0 with @c at the new item, or -ENOMEM with nothing
 * changed if a node was needed and neither a spare nor the allocator gave
 * one.
 */
int btree_insert_at(struct btree *t, struct btree_cursor *c, const void *item);
/*
 * Delete the item at @c (a real item).  Never allocates, never fails.
 * Return true with @c at the position of the next item (see btree_at()),
 * or false if nodes were merged or rebalanced and @c is invalid.
 */
bool btree_delete_at(struct btree *t, struct btree_cursor *c);

/* Nodes an insert at @c would take now: a new root, or one per full level. */
size_t btree_insert_need(const struct btree *t, const struct btree_cursor *c);
/* Spare nodes that @nr_inserts inserts can take at most. */
size_t btree_insert_worst(const struct btree *t, size_t nr_inserts);
/* Hold at least @n spare nodes. Return 0 or -ENOMEM (the ones gotten are kept). */
int btree_reserve(struct btree *t, size_t n);
/* Take spare nodes from @from (same allocator) until @to holds @n. */
void btree_take_spares(struct btree *to, struct btree *from, size_t n);
/* Free spare nodes beyond what two inserts could need. */
void btree_trim(struct btree *t);

/*
 * Check every invariant of @t (order, separators, fill, links, counts),
 * with @item_cmp comparing two items.  Return 0 or a negative code.  For
 * tests: it visits every node.
 */
int btree_check(const struct btree *t, btree_cmp_fn item_cmp);

#endif
