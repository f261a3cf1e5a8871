// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <errno.h>

#include "reg_table.h"

struct reg_entry {
	struct avl_node avl;
	uintptr_t addr;
	size_t len;
	struct reg_extent ext;
	uint32_t refs;		/* identical registrations share one entry */
	uint64_t cookie;	/* reg_table_set_cookie() */
};

struct reg_key {
	uintptr_t addr;
	size_t len;
	uintptr_t start, end;
};

static struct reg_entry *entry_of(struct avl_node *a)
{
	return a ? avl_entry(a, struct reg_entry, avl) : NULL;
}

/* Order by (addr, len, extent); a NULL extent in @k matches any. */
static int cmp(const struct reg_key *k, const struct reg_entry *e, int any_ext)
{
	if (k->addr != e->addr)
		return k->addr < e->addr ? -1 : 1;
	if (k->len != e->len)
		return k->len < e->len ? -1 : 1;
	if (any_ext)
		return 0;
	if (k->start != e->ext.start)
		return k->start < e->ext.start ? -1 : 1;
	if (k->end != e->ext.end)
		return k->end < e->ext.end ? -1 : 1;
	return 0;
}

static struct reg_entry *lookup(const struct reg_table *t, const struct reg_key *k,
				int any_ext)
{
	struct avl_node *a = t->tree.root;

	while (a) {
		int c = cmp(k, entry_of(a), any_ext);

		if (!c)
			return entry_of(a);
		a = c < 0 ? a->left : a->right;
	}
	return NULL;
}

void reg_table_init(struct reg_table *t, const struct node_alloc *alloc)
{
	t->tree.root = NULL;
	t->alloc = *alloc;
	t->nr_live = 0;
}

void reg_table_forget(struct reg_table *t)
{
	t->tree.root = NULL;
	t->nr_live = 0;
}

void reg_table_clear(struct reg_table *t)
{
	struct reg_entry *e;

	while ((e = entry_of(avl_first(&t->tree)))) {
		avl_remove(&t->tree, &e->avl);
		t->alloc.free(t->alloc.ctx, e, sizeof(*e));
	}
	reg_table_forget(t);
}

int reg_table_add(struct reg_table *t, uintptr_t addr, size_t len,
		  const struct reg_extent *ext)
{
	struct reg_key k = { addr, len, ext->start, ext->end };
	struct avl_node **link = &t->tree.root, *parent = NULL;
	struct reg_entry *e;
	int c = 0;

	while (*link) {
		parent = *link;
		c = cmp(&k, entry_of(parent), 0);
		if (!c) {
			entry_of(parent)->refs++;
			t->nr_live++;
			return 0;
		}
		link = c < 0 ? &parent->left : &parent->right;
	}
	e = t->alloc.alloc(t->alloc.ctx, sizeof(*e));
	if (!e)
		return -ENOMEM;
	e->addr = addr;
	e->len = len;
	e->ext = *ext;
	e->refs = 1;
	e->cookie = 0;
	avl_insert_at(&t->tree, &e->avl, parent, c < 0);
	t->nr_live++;
	return 0;
}

int reg_table_find(const struct reg_table *t, uintptr_t addr, size_t len,
		   struct reg_extent *ext)
{
	struct reg_key k = { .addr = addr, .len = len };
	struct reg_entry *e = lookup(t, &k, 1);

	if (!e)
		return -ENOENT;
	*ext = e->ext;
	return 0;
}

int reg_table_del(struct reg_table *t, uintptr_t addr, size_t len,
		  const struct reg_extent *ext)
{
	struct reg_key k = { addr, len, ext->start, ext->end };
	struct reg_entry *e = lookup(t, &k, 0);

	if (!e)
		return -ENOENT;
	t->nr_live--;
	if (--e->refs)
		return 0;
	avl_remove(&t->tree, &e->avl);
	t->alloc.free(t->alloc.ctx, e, sizeof(*e));
	return 0;
}

int reg_table_move(struct reg_table *from, struct reg_table *to, uintptr_t addr, size_t len,
		   struct reg_extent *ext)
{
	struct reg_key k = { .addr = addr, .len = len };
	struct reg_entry *e = lookup(from, &k, 1);
	struct avl_node **link = &to->tree.root, *parent = NULL;
	int c = 0, ret;

	if (!e)
		return -ENOENT;
	*ext = e->ext;
	if (e->refs > 1) {
		ret = reg_table_add(to, addr, len, ext);
		if (!ret) {
			e->refs--;
			from->nr_live--;
		}
		return ret;
	}
	k.start = e->ext.start;
	k.end = e->ext.end;
	while (*link) {
		parent = *link;
		c = cmp(&k, entry_of(parent), 0);
		if (!c)
			break;
		link = c < 0 ? &parent->left : &parent->right;
	}
	avl_remove(&from->tree, &e->avl);
	from->nr_live--;
	to->nr_live++;
	if (*link) {		/* an identical registration is there already */
		entry_of(*link)->refs++;
		from->alloc.free(from->alloc.ctx, e, sizeof(*e));
		return 0;
	}
	e->cookie = 0;
	avl_insert_at(&to->tree, &e->avl, parent, c < 0);
	return 0;
}

int reg_table_set_cookie(struct reg_table *t, uintptr_t addr, size_t len,
			 const struct reg_extent *ext, uint64_t cookie)
{
	struct reg_key k = { addr, len, ext->start, ext->end };
	struct reg_entry *e = lookup(t, &k, 0);

	if (!e)
		return -ENOENT;
	e->cookie = cookie;
	return 0;
}

int reg_table_walk(const struct reg_table *t, reg_walk_fn fn, void *ctx)
{
	for (struct avl_node *a = avl_first(&t->tree); a; a = avl_next(a)) {
		const struct reg_entry *e = entry_of(a);
		int ret = fn(ctx, e->addr, e->len, &e->ext, e->refs, e->cookie);

		if (ret)
			return ret;
	}
	return 0;
}
