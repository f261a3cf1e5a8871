/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Intrusive AVL tree with parent links, in the style of the kernel's rbtree:
 * the caller embeds struct avl_node, walks from avl->root to find where a
 * key belongs, and calls avl_insert_at() with the parent and side it found.
 * No allocation, no comparison callbacks, no syscalls.
 */
#ifndef SAFEPIN_AVL_H
#define SAFEPIN_AVL_H

#include <stddef.h>

struct avl_node {
	struct avl_node *left, *right, *parent;
	int height;
};

struct avl_tree {
	struct avl_node *root;
};

#define avl_entry(ptr, type, member) \
	((type *)((char *)(ptr) - offsetof(type, member)))

/* Link @node as the @left (or right) child of @parent (NULL: root) and rebalance. */
void avl_insert_at(struct avl_tree *tree, struct avl_node *node,
		   struct avl_node *parent, int left);
void avl_remove(struct avl_tree *tree, struct avl_node *node);

struct avl_node *avl_first(const struct avl_tree *tree);
struct avl_node *avl_last(const struct avl_tree *tree);
struct avl_node *avl_next(const struct avl_node *node);
struct avl_node *avl_prev(const struct avl_node *node);

#endif
