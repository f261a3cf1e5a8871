// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * B+tree of fixed-size items (see btree.h).  Every node is BTREE_NODE_SIZE
 * bytes: a header, then either @leaf_cap items or, in an inner node,
 * @inner_cap child pointers followed by as many separator items.  Child i
 * of an inner node holds the items in [key i, key i+1); key 0 is unused.
 * A separator is a copy of some item and may sort below every item left in
 * its subtree after deletions: only the bound matters for routing.
 * Leaves are chained in order for cursors; nodes know their parent, so a
 * cursor alone is enough to insert or delete.
 */
#include <errno.h>
#include <string.h>

#include "btree.h"

struct btree_node {
	uint16_t n;		/* items in a leaf, children in an inner node */
	uint16_t leaf;
	struct btree_node *parent;
	struct btree_node *prev, *next;	/* leaves only */
	unsigned char data[];
};

#define HDR offsetof(struct btree_node, data)

static unsigned char *item_of(const struct btree *t, const struct btree_node *n, unsigned int i)
{
	return (unsigned char *)n->data + (size_t)i * t->item_size;
}

static struct btree_node **kids(const struct btree_node *n)
{
	return (struct btree_node **)(void *)n->data;
}

static unsigned char *key_of(const struct btree *t, const struct btree_node *n, unsigned int i)
{
	return (unsigned char *)n->data + t->inner_cap * sizeof(void *) +
	       (size_t)i * t->item_size;
}

static unsigned int cap_of(const struct btree *t, const struct btree_node *n)
{
	return n->leaf ? t->leaf_cap : t->inner_cap;
}

/* Below this a non-root node takes from or merges with a sibling. */
static unsigned int min_of(const struct btree *t, const struct btree_node *n)
{
	unsigned int m = cap_of(t, n) / 3;

	return m < 2 ? 2u - n->leaf : m;
}

void btree_init(struct btree *t, size_t item_size, btree_cmp_fn cmp,
		const struct node_alloc *alloc)
{
	*t = (struct btree){
		.alloc = alloc,
		.cmp = cmp,
		.item_size = (uint16_t)item_size,
		.leaf_cap = (uint16_t)((BTREE_NODE_SIZE - HDR) / item_size),
		.inner_cap = (uint16_t)((BTREE_NODE_SIZE - HDR) / (item_size + sizeof(void *))),
	};
}

/* --- nodes and spares --------------------------------------------------- */

size_t btree_insert_worst(const struct btree *t, size_t nr_inserts)
{
	/* Insert i splits at most every level of a tree grown by i, plus a new root. */
	return nr_inserts * ((size_t)t->height + 1) + nr_inserts * (nr_inserts - 1) / 2;
}

static void spare_push(struct btree *t, struct btree_node *n)
{
	n->parent = t->spare;
	t->spare = n;
	t->nr_spare++;
}

static struct btree_node *spare_pop(struct btree *t)
{
	struct btree_node *n = t->spare;

	t->spare = n->parent;
	t->nr_spare--;
	return n;
}

int btree_reserve(struct btree *t, size_t n)
{
	while (t->nr_spare < n) {
		struct btree_node *node = t->alloc->alloc(t->alloc->ctx, BTREE_NODE_SIZE);

		if (!node)
			return -ENOMEM;
		spare_push(t, node);
	}
	return 0;
}

void btree_take_spares(struct btree *to, struct btree *from, size_t n)
{
	while (to->nr_spare < n && from->nr_spare)
		spare_push(to, spare_pop(from));
}

void btree_trim(struct btree *t)
{
	size_t keep = btree_insert_worst(t, 2);

	while (t->nr_spare > keep)
		t->alloc->free(t->alloc->ctx, spare_pop(t), BTREE_NODE_SIZE);
}

/* A node from the spares; the caller reserved it. */
static struct btree_node *node_get(struct btree *t, int leaf)
{
	struct btree_node *n = spare_pop(t);

	*n = (struct btree_node){ .leaf = (uint16_t)leaf };
	t->nr_nodes++;
	return n;
}

/* Keep a freed node while the spares are short of two inserts' worth. */
static void node_put(struct btree *t, struct btree_node *n)
{
	t->nr_nodes--;
	if (t->nr_spare < btree_insert_worst(t, 2))
		spare_push(t, n);
	else
		t->alloc->free(t->alloc->ctx, n, BTREE_NODE_SIZE);
}

static void free_subtree(struct btree *t, struct btree_node *n)
{
	if (!n->leaf)
		for (unsigned int i = 0; i < n->n; i++)
			free_subtree(t, kids(n)[i]);
	t->alloc->free(t->alloc->ctx, n, BTREE_NODE_SIZE);
}

void btree_forget(struct btree *t)
{
	t->root = NULL;
	t->spare = NULL;
	t->nr_spare = 0;
	t->nr_items = 0;
	t->nr_nodes = 0;
	t->height = 0;
}

void btree_clear(struct btree *t)
{
	if (t->root)
		free_subtree(t, t->root);
	while (t->nr_spare)
		t->alloc->free(t->alloc->ctx, spare_pop(t), BTREE_NODE_SIZE);
	btree_forget(t);
}

/* --- search and cursors ------------------------------------------------- */

/* Without a comparison function, keys are uint64_t and items start with theirs. */
static uint64_t u64_at(const void *p)
{
	uint64_t v;

	memcpy(&v, p, sizeof(v));
	return v;
}

static int compare(const struct btree *t, const void *key, const void *item)
{
	uint64_t a, b;

	if (t->cmp)
		return t->cmp(key, item);
	a = *(const uint64_t *)key;
	b = u64_at(item);
	return a < b ? -1 : a > b;
}

/* Of @n items @stride apart: the first whose u64 is > @k (@after) or >= @k. */
static unsigned int search_u64(const unsigned char *base, size_t stride, unsigned int n,
			       uint64_t k, bool after)
{
	unsigned int lo = 0;

	if (after) {		/* > k is >= k + 1 */
		if (k == UINT64_MAX)
			return n;
		k++;
	}
	if (!n)
		return 0;
	/* Branch-free halving (the comparisons are unpredictable): lo + n bounds the answer. */
	while (n > 1) {
		unsigned int half = n / 2;

		lo += (unsigned int)(u64_at(base + (size_t)(lo + half) * stride) < k) * half;
		n -= half;
	}
	return lo + (u64_at(base + (size_t)lo * stride) < k);
}

/* In a leaf: the first item after @key (@after) or not before it. */
static unsigned int leaf_search(const struct btree *t, const struct btree_node *n,
				const void *key, bool after)
{
	unsigned int lo = 0, hi = n->n;

	if (!t->cmp)
		return search_u64(item_of(t, n, 0), t->item_size, n->n, *(const uint64_t *)key,
				  after);
	while (lo < hi) {
		unsigned int mid = (lo + hi) / 2;
		int c = t->cmp(key, item_of(t, n, mid));

		if (c > 0 || (after && c == 0))
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}

/* In an inner node: the last child whose separator does not sort after @key. */
static unsigned int inner_search(const struct btree *t, const struct btree_node *n,
				 const void *key)
{
	unsigned int lo = 1, hi = n->n;

	if (!t->cmp)
		return search_u64(key_of(t, n, 1), t->item_size, n->n - 1u,
				  *(const uint64_t *)key, true);
	while (lo < hi) {
		unsigned int mid = (lo + hi) / 2;

		if (t->cmp(key, key_of(t, n, mid)) >= 0)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo - 1;
}

void *btree_seek(const struct btree *t, const void *key, bool after, struct btree_cursor *c)
{
	struct btree_node *n = t->root;
	struct btree_cursor tmp;

	if (!n) {
		*c = (struct btree_cursor){ NULL, 0 };
		return NULL;
	}
	while (!n->leaf)
		n = kids(n)[inner_search(t, n, key)];
	c->leaf = n;
	c->idx = leaf_search(t, n, key, after);
	tmp = *c;
	return btree_at(t, &tmp);
}

void *btree_at(const struct btree *t, struct btree_cursor *c)
{
	if (!c->leaf)
		return NULL;
	if (c->idx >= c->leaf->n) {
		if (!c->leaf->next)
			return NULL;
		c->leaf = c->leaf->next;
		c->idx = 0;
	}
	return item_of(t, c->leaf, c->idx);
}

void *btree_first(const struct btree *t, struct btree_cursor *c)
{
	struct btree_node *n = t->root;

	*c = (struct btree_cursor){ NULL, 0 };
	if (!n)
		return NULL;
	while (!n->leaf)
		n = kids(n)[0];
	c->leaf = n;
	return btree_at(t, c);
}

void *btree_next(const struct btree *t, struct btree_cursor *c)
{
	if (!c->leaf)
		return NULL;
	if (c->idx + 1 < c->leaf->n) {
		c->idx++;
		return item_of(t, c->leaf, c->idx);
	}
	if (!c->leaf->next)
		return NULL;
	c->leaf = c->leaf->next;
	c->idx = 0;
	return item_of(t, c->leaf, 0);
}

void *btree_prev(const struct btree *t, struct btree_cursor *c)
{
	if (!c->leaf)
		return NULL;
	if (c->idx > 0) {
		c->idx--;
		return item_of(t, c->leaf, c->idx);
	}
	if (!c->leaf->prev)
		return NULL;
	c->leaf = c->leaf->prev;
	c->idx = c->leaf->n - 1u;
	return item_of(t, c->leaf, c->idx);
}

void *btree_find(const struct btree *t, const void *key, struct btree_cursor *c)
{
	void *it;

	btree_seek(t, key, false, c);
	it = btree_at(t, c);
	return it && !compare(t, key, it) ? it : NULL;
}

/* --- insert ------------------------------------------------------------- */

static unsigned int child_index(const struct btree_node *p, const struct btree_node *child)
{
	unsigned int i = 0;

	while (kids(p)[i] != child)
		i++;
	return i;
}

/* Nodes an insert into @leaf takes: one per full level, and a new root. */
static size_t split_need(const struct btree *t, const struct btree_node *leaf)
{
	const struct btree_node *n = leaf;
	size_t need = 0;

	while (n && n->n == cap_of(t, n)) {
		need++;
		n = n->parent;
	}
	return need && !n ? need + 1 : need;
}

/* The first item of @leaf is new: make it the bound of the subtree it starts. */
static void fix_separator(struct btree *t, struct btree_node *leaf)
{
	struct btree_node *n = leaf;

	for (; n->parent; n = n->parent) {
		unsigned int ci = child_index(n->parent, n);

		if (ci) {
			memcpy(key_of(t, n->parent, ci), item_of(t, leaf, 0), t->item_size);
			return;
		}
	}
}

static void inner_put(struct btree *t, struct btree_node *p, unsigned int pos,
		      struct btree_node *child, const void *sep)
{
	memmove(&kids(p)[pos + 1], &kids(p)[pos], (p->n - pos) * sizeof(void *));
	memmove(key_of(t, p, pos + 1), key_of(t, p, pos), (size_t)(p->n - pos) * t->item_size);
	kids(p)[pos] = child;
	memcpy(key_of(t, p, pos), sep, t->item_size);
	child->parent = p;
	p->n++;
}

/* @right, new, goes just after @left under @left's parent with separator @sep. */
static void insert_child(struct btree *t, struct btree_node *left, struct btree_node *right,
			 const void *sep)
{
	struct btree_node *p = left->parent, *q;
	unsigned char up[BTREE_ITEM_MAX];
	unsigned int pos, half;

	if (!p) {
		p = node_get(t, 0);
		p->n = 1;
		kids(p)[0] = left;
		left->parent = p;
		t->root = p;
		t->height++;
		inner_put(t, p, 1, right, sep);
		return;
	}
	pos = child_index(p, left) + 1;
	if (p->n < t->inner_cap) {
		inner_put(t, p, pos, right, sep);
		return;
	}
	/* Split @p: its upper half moves to @q, whose first separator goes up. */
	half = p->n / 2;
	q = node_get(t, 0);
	memcpy(up, key_of(t, p, half), t->item_size);
	q->n = (uint16_t)(p->n - half);
	memcpy(kids(q), &kids(p)[half], q->n * sizeof(void *));
	memcpy(key_of(t, q, 0), key_of(t, p, half), (size_t)q->n * t->item_size);
	for (unsigned int i = 0; i < q->n; i++)
		kids(q)[i]->parent = q;
	p->n = (uint16_t)half;
	if (pos <= half)
		inner_put(t, p, pos, right, sep);
	else
		inner_put(t, q, pos - half, right, sep);
	insert_child(t, p, q, up);
}

/* --- delete ------------------------------------------------------------- */

static void inner_remove(struct btree *t, struct btree_node *p, unsigned int pos)
{
	memmove(&kids(p)[pos], &kids(p)[pos + 1], (p->n - pos - 1u) * sizeof(void *));
	memmove(key_of(t, p, pos), key_of(t, p, pos + 1), (size_t)(p->n - pos - 1u) * t->item_size);
	p->n--;
}

/* Append @r to @l (neighbours under @p, @r at @rci); @r is freed. */
static void merge(struct btree *t, struct btree_node *p, unsigned int rci,
		  struct btree_node *l, struct btree_node *r)
{
	if (l->leaf) {
		memcpy(item_of(t, l, l->n), item_of(t, r, 0), (size_t)r->n * t->item_size);
		l->next = r->next;
		if (r->next)
			r->next->prev = l;
	} else {
		memcpy(&kids(l)[l->n], kids(r), r->n * sizeof(void *));
		memcpy(key_of(t, l, l->n), key_of(t, p, rci), t->item_size);
		memcpy(key_of(t, l, l->n + 1u), key_of(t, r, 1), (size_t)(r->n - 1u) * t->item_size);
		for (unsigned int i = 0; i < r->n; i++)
			kids(r)[i]->parent = l;
	}
	l->n = (uint16_t)(l->n + r->n);
	inner_remove(t, p, rci);
	node_put(t, r);
}

/* Move @m entries from the end of @l to the front of @r (neighbours under @p, @r at @rci). */
static void shift_right(struct btree *t, struct btree_node *p, unsigned int rci,
			struct btree_node *l, struct btree_node *r, unsigned int m)
{
	if (l->leaf) {
		memmove(item_of(t, r, m), item_of(t, r, 0), (size_t)r->n * t->item_size);
		memcpy(item_of(t, r, 0), item_of(t, l, l->n - m), (size_t)m * t->item_size);
		memcpy(key_of(t, p, rci), item_of(t, r, 0), t->item_size);
	} else {
		memmove(&kids(r)[m], kids(r), r->n * sizeof(void *));
		memmove(key_of(t, r, m), key_of(t, r, 0), (size_t)r->n * t->item_size);
		memcpy(key_of(t, r, m), key_of(t, p, rci), t->item_size);
		memcpy(kids(r), &kids(l)[l->n - m], m * sizeof(void *));
		memcpy(key_of(t, r, 0), key_of(t, l, l->n - m), (size_t)m * t->item_size);
		memcpy(key_of(t, p, rci), key_of(t, r, 0), t->item_size);
		for (unsigned int i = 0; i < m; i++)
			kids(r)[i]->parent = r;
	}
	l->n = (uint16_t)(l->n - m);
	r->n = (uint16_t)(r->n + m);
}

/* Move @m entries from the front of @r to the end of @l. */
static void shift_left(struct btree *t, struct btree_node *p, unsigned int rci,
		       struct btree_node *l, struct btree_node *r, unsigned int m)
{
	if (l->leaf) {
		memcpy(item_of(t, l, l->n), item_of(t, r, 0), (size_t)m * t->item_size);
		memmove(item_of(t, r, 0), item_of(t, r, m), (size_t)(r->n - m) * t->item_size);
		memcpy(key_of(t, p, rci), item_of(t, r, 0), t->item_size);
	} else {
		memcpy(&kids(l)[l->n], kids(r), m * sizeof(void *));
		memcpy(key_of(t, l, l->n), key_of(t, p, rci), t->item_size);
		memcpy(key_of(t, l, l->n + 1u), key_of(t, r, 1), (size_t)(m - 1u) * t->item_size);
		memcpy(key_of(t, p, rci), key_of(t, r, m), t->item_size);
		for (unsigned int i = 0; i < m; i++)
			kids(l)[l->n + i]->parent = l;
		memmove(kids(r), &kids(r)[m], (r->n - m) * sizeof(void *));
		memmove(key_of(t, r, 0), key_of(t, r, m), (size_t)(r->n - m) * t->item_size);
	}
	l->n = (uint16_t)(l->n + m);
	r->n = (uint16_t)(r->n - m);
}

/* @n (not the root) fell below its minimum: merge with or take from a neighbour. */
static void rebalance(struct btree *t, struct btree_node *n)
{
	struct btree_node *p = n->parent, *l, *r;
	unsigned int ci = child_index(p, n), rci = ci ? ci : 1, total;

	l = kids(p)[rci - 1];
	r = kids(p)[rci];
	total = (unsigned int)l->n + r->n;
	if (total <= cap_of(t, n)) {
		merge(t, p, rci, l, r);
		if (p == t->root && p->n == 1) {
			t->root = l;
			l->parent = NULL;
			t->height--;
			node_put(t, p);
		} else if (p != t->root && p->n < min_of(t, p)) {
			rebalance(t, p);
		}
		return;
	}
	if (l->n > total / 2)
		shift_right(t, p, rci, l, r, l->n - total / 2);
	else
		shift_left(t, p, rci, l, r, total / 2 - l->n);
}

bool btree_delete_at(struct btree *t, struct btree_cursor *c)
{
	struct btree_node *leaf = c->leaf;

	memmove(item_of(t, leaf, c->idx), item_of(t, leaf, c->idx + 1),
		(size_t)(leaf->n - c->idx - 1u) * t->item_size);
	leaf->n--;
	t->nr_items--;
	if (leaf == t->root) {
		if (!leaf->n) {
			t->root = NULL;
			t->height = 0;
			node_put(t, leaf);
			*c = (struct btree_cursor){ NULL, 0 };
		}
		return true;
	}
	if (leaf->n >= min_of(t, leaf))
		return true;
	rebalance(t, leaf);
	return false;
}

/* --- insert into a leaf ------------------------------------------------- */

/* Appending at the very end: ascending inserts, which leave leaves full. */
static bool appending(const struct btree_node *leaf, unsigned int idx)
{
	return idx == leaf->n && !leaf->next;
}

/*
 * A neighbour under the same parent that a full @leaf can pass items to,
 * rather than split: leaves stay fuller, and no node is needed.  NULL if
 * neither has room for two.
 */
static struct btree_node *spill_target(const struct btree *t, const struct btree_node *leaf,
				       unsigned int *ci)
{
	struct btree_node *p = leaf->parent, *l, *r;
	unsigned int room_l = 0, room_r = 0;

	if (!p)
		return NULL;
	*ci = child_index(p, leaf);
	l = *ci ? kids(p)[*ci - 1] : NULL;
	r = *ci + 1u < p->n ? kids(p)[*ci + 1] : NULL;
	if (l)
		room_l = t->leaf_cap - l->n;
	if (r)
		room_r = t->leaf_cap - r->n;
	if (room_l < 2 && room_r < 2)
		return NULL;
	return room_r >= room_l ? r : l;
}

size_t btree_insert_need(const struct btree *t, const struct btree_cursor *c)
{
	unsigned int ci;

	if (!c->leaf)
		return 1;
	if (c->leaf->n == t->leaf_cap && !appending(c->leaf, c->idx) &&
	    spill_target(t, c->leaf, &ci))
		return 0;
	return split_need(t, c->leaf);
}

static void leaf_put(struct btree *t, struct btree_node *leaf, unsigned int idx, const void *item)
{
	memmove(item_of(t, leaf, idx + 1), item_of(t, leaf, idx),
		(size_t)(leaf->n - idx) * t->item_size);
	memcpy(item_of(t, leaf, idx), item, t->item_size);
	leaf->n++;
}

/* Split full @leaf for an item at @idx; return the half it goes to, @idx adjusted. */
static struct btree_node *split_leaf(struct btree *t, struct btree_node *leaf, unsigned int *idx)
{
	/*
	 * Appending at the very end leaves the left leaf full and starts a
	 * short last leaf, the one leaf allowed below the minimum until a
	 * delete rebalances it.
	 */
	unsigned int mid = appending(leaf, *idx) ? leaf->n : leaf->n / 2u;
	struct btree_node *r = node_get(t, 1);

	r->n = (uint16_t)(leaf->n - mid);
	memcpy(item_of(t, r, 0), item_of(t, leaf, mid), (size_t)r->n * t->item_size);
	leaf->n = (uint16_t)mid;
	r->prev = leaf;
	r->next = leaf->next;
	if (leaf->next)
		leaf->next->prev = r;
	leaf->next = r;
	if (*idx < mid)
		return leaf;
	*idx -= mid;
	return r;
}

/* Make room in full @leaf by passing items to @sib (at @ci +- 1); the same contract. */
static struct btree_node *spill(struct btree *t, struct btree_node *leaf, unsigned int ci,
				struct btree_node *sib, unsigned int *idx)
{
	struct btree_node *p = leaf->parent;
	unsigned int m = (t->leaf_cap - sib->n + 1u) / 2u, old = sib->n;

	if (sib == leaf->next) {
		shift_right(t, p, ci + 1, leaf, sib, m);
		if (*idx <= leaf->n)
			return leaf;
		*idx -= leaf->n;
		return sib;
	}
	shift_left(t, p, ci, sib, leaf, m);
	if (*idx < m || (*idx == m && sib->n < t->leaf_cap)) {
		*idx += old;
		return sib;
	}
	*idx -= m;
	return leaf;
}

int btree_insert_at(struct btree *t, struct btree_cursor *c, const void *item)
{
	struct btree_node *leaf, *sib = NULL;
	unsigned int idx, ci = 0;

	if (!t->root) {
		if (btree_reserve(t, 1))
			return -ENOMEM;
		t->root = node_get(t, 1);
		t->height = 1;
		*c = (struct btree_cursor){ t->root, 0 };
	}
	leaf = c->leaf;
	idx = c->idx;
	if (leaf->n == t->leaf_cap && !appending(leaf, idx))
		sib = spill_target(t, leaf, &ci);
	if (!sib && btree_reserve(t, split_need(t, leaf)))
		return -ENOMEM;
	if (sib) {
		leaf = spill(t, leaf, ci, sib, &idx);
		leaf_put(t, leaf, idx, item);
	} else if (leaf->n == t->leaf_cap) {
		struct btree_node *half = split_leaf(t, leaf, &idx);

		leaf_put(t, half, idx, item);
		insert_child(t, leaf, leaf->next, item_of(t, leaf->next, 0));
		leaf = half;
	} else {
		leaf_put(t, leaf, idx, item);
	}
	if (idx == 0)
		fix_separator(t, leaf);
	t->nr_items++;
	*c = (struct btree_cursor){ leaf, idx };
	return 0;
}

/* --- consistency check, for tests --------------------------------------- */

struct check {
	btree_cmp_fn cmp;
	const struct btree_node *last_leaf;
	size_t items, nodes;
};

static int check_node(const struct btree *t, const struct btree_node *n, unsigned int depth,
		      const void *lo, const void *hi, struct check *k)
{
	k->nodes++;
	/* The last leaf may be short: ascending inserts split off a new one. */
	if (n->n > cap_of(t, n) || !n->n ||
	    (n != t->root && n->n < min_of(t, n) && !(n->leaf && !n->next)) ||
	    (n == t->root && n->n < 2u - n->leaf))
		return -1;
	if (n->leaf) {
		if (depth != t->height || n->prev != k->last_leaf ||
		    (k->last_leaf && k->last_leaf->next != n))
			return -2;
		k->last_leaf = n;
		k->items += n->n;
		for (unsigned int i = 0; i < n->n; i++) {
			const void *it = item_of(t, n, i);

			if ((lo && k->cmp(lo, it) > 0) || (hi && k->cmp(hi, it) <= 0))
				return -3;
			if (i && k->cmp(item_of(t, n, i - 1), it) >= 0)
				return -4;
		}
		return 0;
	}
	for (unsigned int i = 0; i < n->n; i++) {
		const void *clo = i ? key_of(t, n, i) : lo;
		const void *chi = i + 1u < n->n ? key_of(t, n, i + 1) : hi;
		int ret;

		if (kids(n)[i]->parent != n)
			return -5;
		if (i && ((lo && k->cmp(lo, clo) > 0) || (hi && k->cmp(hi, clo) <= 0)))
			return -6;
		ret = check_node(t, kids(n)[i], depth + 1, clo, chi, k);
		if (ret)
			return ret;
	}
	return 0;
}

int btree_check(const struct btree *t, btree_cmp_fn item_cmp)
{
	struct check k = { .cmp = item_cmp };
	size_t spares = 0;
	int ret = 0;

	for (const struct btree_node *s = t->spare; s; s = s->parent)
		spares++;
	if (spares != t->nr_spare)
		return -7;
	if (!t->root)
		return t->height || t->nr_items || t->nr_nodes ? -8 : 0;
	if (t->root->parent)
		return -9;
	ret = check_node(t, t->root, 1, NULL, NULL, &k);
	if (ret)
		return ret;
	if (k.last_leaf->next || k.items != t->nr_items || k.nodes != t->nr_nodes)
		return -10;
	return 0;
}
