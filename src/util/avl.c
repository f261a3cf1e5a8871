// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include "avl.h"

static int height(const struct avl_node *n)
{
	return n ? n->height : 0;
}

static void update_height(struct avl_node *n)
{
	int l = height(n->left), r = height(n->right);

	n->height = 1 + (l > r ? l : r);
}

static void replace_child(struct avl_tree *tree, struct avl_node *parent,
			  struct avl_node *old, struct avl_node *new)
{
	if (!parent)
		tree->root = new;
	else if (parent->left == old)
		parent->left = new;
	else
		parent->right = new;
	if (new)
		new->parent = parent;
}

/* Rotate @n's right child up; returns the new subtree root. */
static struct avl_node *rotate_left(struct avl_tree *tree, struct avl_node *n)
{
	struct avl_node *r = n->right;

	replace_child(tree, n->parent, n, r);
	n->right = r->left;
	if (r->left)
		r->left->parent = n;
	r->left = n;
	n->parent = r;
	update_height(n);
	update_height(r);
	return r;
}

static struct avl_node *rotate_right(struct avl_tree *tree, struct avl_node *n)
{
	struct avl_node *l = n->left;

	replace_child(tree, n->parent, n, l);
	n->left = l->right;
	if (l->right)
		l->right->parent = n;
	l->right = n;
	n->parent = l;
	update_height(n);
	update_height(l);
	return l;
}

/* Walk from @n to the root restoring heights and balance. */
static void rebalance(struct avl_tree *tree, struct avl_node *n)
{
	while (n) {
		int bal;

		update_height(n);
		bal = height(n->left) - height(n->right);
		if (bal > 1) {
			if (height(n->left->left) < height(n->left->right))
				rotate_left(tree, n->left);
			n = rotate_right(tree, n);
		} else if (bal < -1) {
			if (height(n->right->right) < height(n->right->left))
				rotate_right(tree, n->right);
			n = rotate_left(tree, n);
		}
		n = n->parent;
	}
}

void avl_insert_at(struct avl_tree *tree, struct avl_node *node,
		   struct avl_node *parent, int left)
{
	node->left = node->right = NULL;
	node->parent = parent;
	node->height = 1;
	if (!parent)
		tree->root = node;
	else if (left)
		parent->left = node;
	else
		parent->right = node;
	rebalance(tree, parent);
}

void avl_remove(struct avl_tree *tree, struct avl_node *node)
{
	struct avl_node *fix;

	if (node->left && node->right) {
		/* Put the in-order successor in @node's place. */
		struct avl_node *succ = node->right;

		while (succ->left)
			succ = succ->left;
		if (succ->parent == node) {
			fix = succ;
		} else {
			fix = succ->parent;
			fix->left = succ->right;
			if (succ->right)
				succ->right->parent = fix;
			succ->right = node->right;
			node->right->parent = succ;
		}
		succ->left = node->left;
		node->left->parent = succ;
		replace_child(tree, node->parent, node, succ);
	} else {
		struct avl_node *child = node->left ? node->left : node->right;

		fix = node->parent;
		replace_child(tree, node->parent, node, child);
	}
	rebalance(tree, fix);
}

struct avl_node *avl_first(const struct avl_tree *tree)
{
	struct avl_node *n = tree->root;

	while (n && n->left)
		n = n->left;
	return n;
}

struct avl_node *avl_last(const struct avl_tree *tree)
{
	struct avl_node *n = tree->root;

	while (n && n->right)
		n = n->right;
	return n;
}

struct avl_node *avl_next(const struct avl_node *n)
{
	if (n->right) {
		n = n->right;
		while (n->left)
			n = n->left;
		return (struct avl_node *)n;
	}
	while (n->parent && n->parent->right == n)
		n = n->parent;
	return n->parent;
}

struct avl_node *avl_prev(const struct avl_node *n)
{
	if (n->left) {
		n = n->left;
		while (n->right)
			n = n->right;
		return (struct avl_node *)n;
	}
	while (n->parent && n->parent->left == n)
		n = n->parent;
	return n->parent;
}
