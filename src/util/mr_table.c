// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <errno.h>

#include "mr_table.h"

static struct mr_node *node_of(struct avl_node *a)
{
	return a ? avl_entry(a, struct mr_node, avl) : NULL;
}

static struct mr_node *lookup(const struct mr_table *t, const void *key)
{
	struct avl_node *a = t->tree.root;
	uintptr_t k = (uintptr_t)key;

	while (a) {
		uintptr_t ak = (uintptr_t)node_of(a)->key;

		if (k == ak)
			return node_of(a);
		a = k < ak ? a->left : a->right;
	}
	return NULL;
}

void mr_table_init(struct mr_table *t, const struct node_alloc *alloc)
{
	t->tree.root = NULL;
	t->alloc = *alloc;
	t->count = 0;
}

void mr_table_forget(struct mr_table *t)
{
	t->tree.root = NULL;
	t->count = 0;
}

void mr_table_clear(struct mr_table *t)
{
	struct mr_node *n;

	while ((n = node_of(avl_first(&t->tree)))) {
		avl_remove(&t->tree, &n->avl);
		mr_table_node_free(t, n);
	}
	mr_table_forget(t);
}

struct mr_node *mr_table_node_new(struct mr_table *t)
{
	return t->alloc.alloc(t->alloc.ctx, sizeof(struct mr_node));
}

void mr_table_node_free(struct mr_table *t, struct mr_node *n)
{
	if (n)
		t->alloc.free(t->alloc.ctx, n, sizeof(*n));
}

int mr_table_insert(struct mr_table *t, struct mr_node *n, const void *key,
		    const struct mr_pin *pin, struct mr_pin *stale)
{
	struct avl_node **link = &t->tree.root, *parent = NULL;
	uintptr_t k = (uintptr_t)key;
	int left = 0;

	n->key = key;
	n->pin = *pin;
	while (*link) {
		struct mr_node *cur = node_of(*link);
		uintptr_t ck = (uintptr_t)cur->key;

		if (k == ck) {
			/* Take the old node's place in the tree. */
			*stale = cur->pin;
			cur->pin = *pin;
			mr_table_node_free(t, n);
			return 1;
		}
		parent = *link;
		left = k < ck;
		link = left ? &parent->left : &parent->right;
	}
	avl_insert_at(&t->tree, &n->avl, parent, left);
	t->count++;
	return 0;
}

int mr_table_find(const struct mr_table *t, const void *key, struct mr_pin *pin)
{
	struct mr_node *n = lookup(t, key);

	if (!n)
		return -ENOENT;
	*pin = n->pin;
	return 0;
}

struct mr_node *mr_table_take(struct mr_table *t, const void *key)
{
	struct mr_node *n = lookup(t, key);

	if (n) {
		avl_remove(&t->tree, &n->avl);
		t->count--;
	}
	return n;
}

void mr_rereg_plan(struct mr_rereg_plan *plan, const struct mr_pin *old,
		   const struct mr_pin *translation, const struct mr_pin *current,
		   bool change_access, bool odp)
{
	if (translation)
		plan->new = *translation;
	else
		plan->new = old ? *old : *current;
	/* Without an access change the region keeps its kind (pinned or ODP). */
	plan->new_pinned = change_access ? plan->new.len && !odp : old != NULL;
	plan->pin_new = plan->new_pinned && (!old || translation);
	plan->unpin_old = old && (!plan->new_pinned || translation);
}
