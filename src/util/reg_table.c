// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The registration multiset (reg_table.h) in two B+trees ordered by
 * (addr, len, extent start, extent end).  Nearly every registration's
 * extent is (addr, len) widened to one page size, so the compact tree
 * keeps only addr, len, the page shift and refs: 16 bytes.  Extents that
 * do not follow (a hugetlb VMA next to a base-page one, callers' own),
 * lengths of 64 MiB and more, and entries with a cookie go to the wide
 * tree, whole.  Lookups try both; walks merge them.  As before, entries
 * are told apart by (addr, len, start, end): an identical registration
 * joins the entry there, whichever tree it is in.
 */
#include <errno.h>
#include <stdbool.h>

#include "reg_table.h"

#define LEN_BITS 26		/* compact lengths: below 64 MiB */
#define SHIFT_BITS 6

struct compact {
	uint64_t addr;
	uint32_t len_shift;	/* len << SHIFT_BITS | page shift */
	uint32_t refs;
};

struct wide {
	uint64_t addr;
	uint64_t len;
	struct reg_extent ext;
	uint64_t cookie;
	uint32_t refs;
};

_Static_assert(sizeof(struct wide) <= BTREE_ITEM_MAX, "wide entries must fit a B-tree item");

struct reg_key {
	uintptr_t addr;
	size_t len;
	uintptr_t start, end;
};

/* The extent of a registration on pages of 1 << @shift, as registry.c widens it. */
static void derive(uintptr_t addr, size_t len, unsigned int shift, struct reg_extent *e)
{
	uintptr_t mask = ((uintptr_t)1 << shift) - 1;

	e->start = addr & ~mask;
	e->end = (addr + len + mask) & ~mask;
	e->head_end = addr == e->start ? e->start : e->start + mask + 1;
	e->tail_start = addr + len == e->end ? e->end : e->end - mask - 1;
	if (e->tail_start < e->head_end) {	/* both edges on one page */
		e->head_end = e->end;
		e->tail_start = e->end;
	}
}

static bool same_extent(const struct reg_extent *a, const struct reg_extent *b)
{
	return a->start == b->start && a->end == b->end && a->head_end == b->head_end &&
	       a->tail_start == b->tail_start;
}

/* The compact form of (addr, len, ext), if it has one. */
static bool compact_of(uintptr_t addr, size_t len, const struct reg_extent *ext,
		       struct compact *c)
{
	struct reg_extent e;

	if (len >> LEN_BITS || addr + len < addr)
		return false;
	/* Base pages first, then 2 MiB and 1 GiB, then every other size. */
	for (unsigned int i = 0; i < 32; i++) {
		unsigned int shift = i == 0 ? 12 : i == 1 ? 21 : i == 2 ? 30 : i + 10;

		if (i > 2 && (shift == 12 || shift == 21 || shift == 30))
			continue;
		derive(addr, len, shift, &e);
		if (same_extent(&e, ext)) {
			*c = (struct compact){ addr, (uint32_t)(len << SHIFT_BITS | shift), 1 };
			return true;
		}
	}
	return false;
}

static size_t compact_len(const struct compact *c)
{
	return c->len_shift >> SHIFT_BITS;
}

static void compact_extent(const struct compact *c, struct reg_extent *e)
{
	derive(c->addr, compact_len(c), c->len_shift & ((1u << SHIFT_BITS) - 1), e);
}

static int cmp_key(const struct reg_key *k, uintptr_t addr, size_t len, uintptr_t start,
		   uintptr_t end)
{
	if (k->addr != addr)
		return k->addr < addr ? -1 : 1;
	if (k->len != len)
		return k->len < len ? -1 : 1;
	if (k->start != start)
		return k->start < start ? -1 : 1;
	if (k->end != end)
		return k->end < end ? -1 : 1;
	return 0;
}

static int compact_cmp(const void *key, const void *item)
{
	const struct reg_key *k = key;
	const struct compact *c = item;
	struct reg_extent e;

	/* The address alone decides nearly every step of a search. */
	if (k->addr != c->addr)
		return k->addr < c->addr ? -1 : 1;
	compact_extent(c, &e);
	return cmp_key(k, c->addr, compact_len(c), e.start, e.end);
}

static int wide_cmp(const void *key, const void *item)
{
	const struct wide *w = item;

	return cmp_key(key, w->addr, w->len, w->ext.start, w->ext.end);
}

void reg_table_init(struct reg_table *t, const struct node_alloc *alloc)
{
	t->alloc = *alloc;
	btree_init(&t->compact, sizeof(struct compact), compact_cmp, &t->alloc);
	btree_init(&t->wide, sizeof(struct wide), wide_cmp, &t->alloc);
	t->nr_live = 0;
}

void reg_table_forget(struct reg_table *t)
{
	btree_forget(&t->compact);
	btree_forget(&t->wide);
	t->nr_live = 0;
}

void reg_table_clear(struct reg_table *t)
{
	btree_clear(&t->compact);
	btree_clear(&t->wide);
	reg_table_forget(t);
}

/* An entry found: which tree, where, and the item. */
struct hit {
	struct btree *tree;
	struct btree_cursor c;
	void *item;
};

static uint32_t *refs_of(const struct hit *h)
{
	return h->tree == NULL ? NULL : h->tree->item_size == sizeof(struct compact) ?
	       &((struct compact *)h->item)->refs : &((struct wide *)h->item)->refs;
}

/*
 * The entry of (addr, len, ext): entries are told apart by (addr, len,
 * start, end).  If there is none, @compact_at (if not NULL) is where it
 * would go in the compact tree, and @h->c in the wide one.
 */
static bool lookup(const struct reg_table *t, uintptr_t addr, size_t len,
		   const struct reg_extent *ext, struct hit *h, struct btree_cursor *compact_at)
{
	struct reg_key k = { addr, len, ext->start, ext->end };

	h->tree = (struct btree *)&t->compact;
	h->item = btree_find(h->tree, &k, &h->c);
	if (h->item)
		return true;
	if (compact_at)
		*compact_at = h->c;
	h->tree = (struct btree *)&t->wide;
	h->item = btree_find(h->tree, &k, &h->c);
	return h->item != NULL;
}

/* An entry of (addr, len), any extent. */
static bool lookup_any(const struct reg_table *t, uintptr_t addr, size_t len,
		       struct hit *h, struct reg_extent *ext)
{
	struct reg_key k = { addr, len, 0, 0 };
	const struct compact *c;
	const struct wide *w;

	h->tree = (struct btree *)&t->compact;
	btree_seek(h->tree, &k, false, &h->c);
	c = btree_at(h->tree, &h->c);
	if (c && c->addr == addr && compact_len(c) == len) {
		h->item = (void *)c;
		compact_extent(c, ext);
		return true;
	}
	h->tree = (struct btree *)&t->wide;
	btree_seek(h->tree, &k, false, &h->c);
	w = btree_at(h->tree, &h->c);
	if (w && w->addr == addr && w->len == len) {
		h->item = (void *)w;
		*ext = w->ext;
		return true;
	}
	return false;
}

/* The tree and item a new entry of (addr, len, ext) goes to. */
static struct btree *new_entry(struct reg_table *t, uintptr_t addr, size_t len,
			       const struct reg_extent *ext, uint64_t cookie,
			       struct compact *c, struct wide *w)
{
	if (!cookie && compact_of(addr, len, ext, c))
		return &t->compact;
	*w = (struct wide){ .addr = addr, .len = len, .ext = *ext, .cookie = cookie, .refs = 1 };
	return &t->wide;
}

/*
 * Insert @item into @tree at its place (@at, or looked up if NULL); the
 * spares of @t's trees, and of @donor's, come first.
 */
static int insert_item(struct reg_table *t, struct btree *tree, uintptr_t addr, size_t len,
		       const struct reg_extent *ext, const void *item, struct reg_table *donor,
		       const struct btree_cursor *at)
{
	struct reg_key k = { addr, len, ext->start, ext->end };
	struct btree_cursor c;
	size_t need;

	if (at)
		c = *at;
	else
		btree_seek(tree, &k, false, &c);
	need = btree_insert_need(tree, &c);
	btree_take_spares(tree, tree == &t->compact ? &t->wide : &t->compact, need);
	if (donor) {
		btree_take_spares(tree, &donor->compact, need);
		btree_take_spares(tree, &donor->wide, need);
	}
	return btree_insert_at(tree, &c, item);
}

/* Best effort: keep one insert's worth of spares, for moves that must not allocate. */
static void top_up(struct btree *tree)
{
	(void)btree_reserve(tree, btree_insert_worst(tree, 1));
}

int reg_table_add(struct reg_table *t, uintptr_t addr, size_t len,
		  const struct reg_extent *ext)
{
	struct btree_cursor at;
	struct compact c;
	struct wide w;
	struct btree *tree;
	struct hit h;
	int ret;

	if (lookup(t, addr, len, ext, &h, &at)) {
		(*refs_of(&h))++;
		t->nr_live++;
		return 0;
	}
	/* Not found: @at is where it goes in the compact tree, @h.c in the wide one. */
	tree = new_entry(t, addr, len, ext, 0, &c, &w);
	ret = insert_item(t, tree, addr, len, ext, tree == &t->compact ? (void *)&c : (void *)&w,
			  NULL, tree == &t->compact ? &at : &h.c);
	if (ret)
		return ret;
	t->nr_live++;
	top_up(tree);
	return 0;
}

int reg_table_find(const struct reg_table *t, uintptr_t addr, size_t len,
		   struct reg_extent *ext)
{
	struct hit h;

	return lookup_any(t, addr, len, &h, ext) ? 0 : -ENOENT;
}

int reg_table_del(struct reg_table *t, uintptr_t addr, size_t len,
		  const struct reg_extent *ext)
{
	struct hit h;

	if (!lookup(t, addr, len, ext, &h, NULL))
		return -ENOENT;
	t->nr_live--;
	if (--*refs_of(&h))
		return 0;
	btree_delete_at(h.tree, &h.c);
	return 0;
}

int reg_table_move(struct reg_table *from, struct reg_table *to, uintptr_t addr, size_t len,
		   struct reg_extent *ext)
{
	struct compact c;
	struct wide w;
	struct btree *tree;
	struct hit h, dst;
	int ret;

	if (!lookup_any(from, addr, len, &h, ext))
		return -ENOENT;
	if (*refs_of(&h) > 1) {
		ret = reg_table_add(to, addr, len, ext);
		if (!ret) {
			(*refs_of(&h))--;
			from->nr_live--;
		}
		return ret;
	}
	if (lookup(to, addr, len, ext, &dst, NULL)) {	/* an identical registration is there already */
		(*refs_of(&dst))++;
	} else {
		tree = new_entry(to, addr, len, ext, 0, &c, &w);
		ret = insert_item(to, tree, addr, len, ext,
				  tree == &to->compact ? (void *)&c : (void *)&w, from, NULL);
		if (ret)
			return ret;
	}
	/* Inserting into @to moved no item of @from: the cursor still holds. */
	btree_delete_at(h.tree, &h.c);
	from->nr_live--;
	to->nr_live++;
	return 0;
}

int reg_table_set_cookie(struct reg_table *t, uintptr_t addr, size_t len,
			 const struct reg_extent *ext, uint64_t cookie)
{
	struct compact c;
	struct wide w;
	struct hit h;
	int ret;

	if (!lookup(t, addr, len, ext, &h, NULL))
		return -ENOENT;
	if (h.tree == &t->wide) {
		((struct wide *)h.item)->cookie = cookie;
		return 0;
	}
	if (!cookie)
		return 0;
	/* A compact entry has no room for it: it moves to the wide tree. */
	new_entry(t, addr, len, ext, cookie, &c, &w);
	w.refs = ((struct compact *)h.item)->refs;
	ret = insert_item(t, &t->wide, addr, len, ext, &w, NULL, NULL);
	if (ret)
		return ret;
	btree_delete_at(&t->compact, &h.c);
	return 0;
}

/* Both trees in (addr, len, start, end) order. */
int reg_table_walk(const struct reg_table *t, reg_walk_fn fn, void *ctx)
{
	struct btree_cursor cc, wc;
	const struct compact *c = btree_first(&t->compact, &cc);
	const struct wide *w = btree_first(&t->wide, &wc);

	while (c || w) {
		struct reg_extent e;
		int ret;

		if (c) {
			compact_extent(c, &e);
			if (w) {
				struct reg_key k = { c->addr, compact_len(c), e.start, e.end };

				if (wide_cmp(&k, w) > 0)
					goto wide;
			}
			ret = fn(ctx, c->addr, compact_len(c), &e, c->refs, 0);
			if (ret)
				return ret;
			c = btree_next(&t->compact, &cc);
			continue;
		}
wide:
		ret = fn(ctx, w->addr, w->len, &w->ext, w->refs, w->cookie);
		if (ret)
			return ret;
		w = btree_next(&t->wide, &wc);
	}
	return 0;
}

/* --- consistency check, for tests --------------------------------------- */

static int compact_item_cmp(const void *a, const void *b)
{
	const struct compact *x = a;
	struct reg_extent e;

	compact_extent(x, &e);
	return compact_cmp(&(struct reg_key){ x->addr, compact_len(x), e.start, e.end }, b);
}

static int wide_item_cmp(const void *a, const void *b)
{
	const struct wide *x = a;

	return wide_cmp(&(struct reg_key){ x->addr, x->len, x->ext.start, x->ext.end }, b);
}

static int count_refs(void *ctx, uintptr_t addr, size_t len, const struct reg_extent *ext,
		      uint32_t refs, uint64_t cookie)
{
	size_t *n = ctx;

	(void)addr;
	(void)len;
	(void)ext;
	(void)cookie;
	if (!refs)
		return -1;
	*n += refs;
	return 0;
}

int reg_table_check(const struct reg_table *t)
{
	size_t live = 0;
	int ret = btree_check(&t->compact, compact_item_cmp);

	if (!ret)
		ret = btree_check(&t->wide, wide_item_cmp);
	if (!ret && reg_table_walk(t, count_refs, &live))
		ret = -30;
	if (!ret && live != t->nr_live)
		ret = -31;
	return ret;
}
