// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The registry's side of lifetime violations (lifetime.h): registrations
 * whose memory the application unmapped, remapped or discarded before
 * deregistering them leave the live table, their pages there leave the
 * counts, and what is left of them stays counted until they are
 * deregistered; also the lock-held queries lifetime.c, audit.c and the
 * preload shim make.  Apart from registry.c because none of it is on the
 * pin path: it is reached from the shim's interposed calls, the
 * userfaultfd monitor and the audit, and shares the registry state through
 * registry_internal.h.
 */
#include <errno.h>
#include <stdlib.h>

#include "lifetime.h"
#include "log.h"
#include "registry.h"
#include "registry_internal.h"

/*
 * A violated registration leaves registry_state.regs for this list.  Its
 * pages inside the range the application took away are dropped from the
 * counts at once (unmarked with madvise only where the mapping is still
 * there: a discard); its other pages stay counted and marked, as "pieces",
 * because the device may still use them, until the application
 * deregisters it.
 */
struct violated {
	struct violated *next;
	uintptr_t addr;
	size_t len;
	size_t n;			/* pieces still counted */
	struct range_seg *piece;	/* [start, end); mark unused */
};

static struct violated *violated_head;

enum safepin_policy registry_policy_locked(void)
{
	return registry_state.policy;
}

bool registry_marks_locked(void)
{
	return !registry_state.unprotected && registry_state.policy != SAFEPIN_POLICY_KERNEL_COPY;
}

int registry_set_cookie_locked(uintptr_t addr, size_t len, const struct reg_extent *ext,
			       uint64_t cookie)
{
	registry_settle_windows();
	registry_settle_threads();
	return reg_table_set_cookie(&registry_state.regs, addr, len, ext, cookie);
}

/* In the child (lock held): the parent's violated registrations are not ours. */
void lifetime_forget_violated(void)
{
	struct violated *v, *next;

	for (v = violated_head; v; v = next) {
		next = v->next;
		free(v->piece);
		free(v);
	}
	violated_head = NULL;
}

static int whole_gap(void *ctx, const struct range_seg *gap)
{
	const struct range_seg *want = ctx;

	return gap->start == want->start && gap->end == want->end ? 1 : 2;
}

bool registry_counted_locked(uintptr_t start, uintptr_t end)
{
	struct range_seg want = { start, end, RANGE_MARK_NONE };

	return start < end &&
	       range_map_gaps(&registry_state.pages, start, end, whole_gap, &want) != 1;
}

static int drop_run(void *ctx, const struct range_seg *seg)
{
	const bool *gone = ctx;

	if (!*gone)
		return registry_unmark_run(NULL, seg);	/* still mapped: give fork behaviour back */
	if (seg->mark != RANGE_MARK_NONE)	/* the mapping and its flags are gone */
		registry_state.pages_marked -= base_pages(seg->start, seg->end);
	return 0;
}

static void drop_counts(uintptr_t start, uintptr_t end, bool gone)
{
	if (start >= end)
		return;
	if (range_map_reserve(&registry_state.pages) ||
	    range_map_sub(&registry_state.pages, start, end, drop_run, &gone)) {
		registry_state.failures++;
		sp_log(SP_LOG_ERROR, "lifetime: cannot drop %#lx-%#lx from the page counts",
		       (unsigned long)start, (unsigned long)end);
	}
}

static uintptr_t umax(uintptr_t a, uintptr_t b)
{
	return a > b ? a : b;
}

static uintptr_t umin(uintptr_t a, uintptr_t b)
{
	return a < b ? a : b;
}

/* Take [s, e) out of @v's pieces. Return 1 if it held any of it, 0, -ENOMEM. */
static int cut_pieces(struct violated *v, uintptr_t s, uintptr_t e, bool gone)
{
	struct range_seg *np;
	size_t k = 0;
	int hit = 0;

	for (size_t i = 0; i < v->n; i++)
		hit |= v->piece[i].start < e && v->piece[i].end > s;
	if (!hit)
		return 0;
	np = malloc((v->n + 1) * sizeof(*np));
	if (!np)
		return -ENOMEM;
	for (size_t i = 0; i < v->n; i++) {
		struct range_seg p = v->piece[i];

		if (p.end <= s || p.start >= e) {
			np[k++] = p;
			continue;
		}
		drop_counts(umax(p.start, s), umin(p.end, e), gone);
		if (p.start < s)
			np[k++] = (struct range_seg){ p.start, s, RANGE_MARK_NONE };
		if (p.end > e)
			np[k++] = (struct range_seg){ e, p.end, RANGE_MARK_NONE };
	}
	free(v->piece);
	v->piece = np;
	v->n = k;
	return 1;
}

struct lt_collect {
	struct lt_reg *r;
	size_t n, cap;
	uintptr_t start, end;
	bool bytes;	/* compare the registered bytes, not the counted pages */
};

static int lt_collect_one(void *ctx, uintptr_t addr, size_t len, const struct reg_extent *ext,
			  uint32_t refs, uint64_t cookie)
{
	struct lt_collect *c = ctx;
	uintptr_t s = c->bytes ? addr : ext->start, e = c->bytes ? addr + len : ext->end;

	if (e <= c->start || s >= c->end)
		return 0;
	if (c->n == c->cap) {
		size_t cap = c->cap ? 2 * c->cap : 8;
		struct lt_reg *r = realloc(c->r, cap * sizeof(*r));

		if (!r)
			return -ENOMEM;
		c->r = r;
		c->cap = cap;
	}
	c->r[c->n++] = (struct lt_reg){ addr, len, *ext, refs, cookie, false };
	return 0;
}

static void add_hit(struct lt_hit *hits, size_t max, size_t *total, uintptr_t addr, size_t len,
		    bool again)
{
	if (*total < max)
		hits[*total] = (struct lt_hit){ addr, len, again };
	(*total)++;
}

/*
 * Drop [s, e), counted for a parked registration or a window, from the page
 * counts: its pages inside [start, end) without a madvise() if @gone (the
 * mapping went), the rest unmarked in maximal runs.
 */
static void drop_extent(uintptr_t s, uintptr_t e, uintptr_t start, uintptr_t end, bool gone)
{
	if (!gone) {
		drop_counts(s, e, false);
		return;
	}
	drop_counts(s, umin(e, start), false);
	drop_counts(umax(s, start), umin(e, end), true);
	drop_counts(umax(s, end), e, false);
}

/*
 * Parked registrations meeting [start, end) leave: the application may
 * unmap or discard memory it no longer registers, and their pages there
 * must neither be trusted on a later pin nor unmarked on memory mapped
 * anew (@gone: they are not).  Their other pages are unmarked now.
 * Without memory for the edge counts the rest stay parked.
 */
static void unpark_overlapping_locked(uintptr_t start, uintptr_t end, bool gone)
{
	for (;;) {
		struct reg_pick p = { .start = start, .end = end };

		(void)reg_table_walk(&registry_state.parked, registry_pick_entry, &p);
		if (!p.found || range_map_reserve(&registry_state.edges))
			return;
		reg_table_del(&registry_state.parked, p.addr, p.len, &p.ext);
		drop_extent(p.ext.start, p.ext.end, start, end, gone);
		registry_edges_sub(&p.ext);
	}
}

size_t registry_violation_locked(uintptr_t start, uintptr_t end, bool gone,
				 struct lt_hit *hits, size_t max)
{
	struct lt_collect c = { .start = start, .end = end };
	struct violated **tail = &violated_head;
	size_t total = 0;

	registry_settle_windows();
	if (!registry_counted_locked(start, end))
		return 0;
	/* Threads' entries are counted: only now, when one may be hit. */
	registry_settle_threads();
	if (registry_state.parked.nr_live)
		unpark_overlapping_locked(start, end, gone);
	if (registry_state.windows.n)
		registry_drop_windows_locked(start, end, drop_extent, gone);
	for (struct violated *v = violated_head; v; v = v->next) {
		if (cut_pieces(v, start, end, gone) > 0)
			add_hit(hits, max, &total, v->addr, v->len, true);
		tail = &v->next;
	}
	if (reg_table_walk(&registry_state.regs, lt_collect_one, &c)) {
		registry_state.failures++;
		sp_log(SP_LOG_ERROR, "lifetime: out of memory listing the registrations of "
		       "%#lx-%#lx: their counts are stale", (unsigned long)start,
		       (unsigned long)end);
	}
	for (size_t i = 0; i < c.n; i++) {
		const struct reg_extent *ext = &c.r[i].ext;

		for (uint32_t ref = 0; ref < c.r[i].refs; ref++) {
			struct violated *v = calloc(1, sizeof(*v));
			struct range_seg *p = malloc(2 * sizeof(*p));

			if (!v || !p || range_map_reserve(&registry_state.edges)) {
				free(v);
				free(p);
				registry_state.failures++;
				sp_log(SP_LOG_ERROR, "lifetime: out of memory: registration %#lx+%zu "
				       "stays counted", (unsigned long)c.r[i].addr, c.r[i].len);
				add_hit(hits, max, &total, c.r[i].addr, c.r[i].len, false);
				continue;
			}
			v->addr = c.r[i].addr;
			v->len = c.r[i].len;
			v->piece = p;
			if (ext->start < start)
				p[v->n++] = (struct range_seg){ ext->start, umin(ext->end, start),
								RANGE_MARK_NONE };
			if (ext->end > end)
				p[v->n++] = (struct range_seg){ umax(ext->start, end), ext->end,
								RANGE_MARK_NONE };
			drop_counts(umax(ext->start, start), umin(ext->end, end), gone);
			/* Its partial edge pages are no longer restored in a child. */
			registry_edges_sub(ext);
			reg_table_del(&registry_state.regs, v->addr, v->len, ext);
			*tail = v;
			tail = &v->next;
			add_hit(hits, max, &total, v->addr, v->len, false);
		}
	}
	free(c.r);
	return total;
}

size_t registry_overlapping_locked(uintptr_t start, uintptr_t end, struct lt_hit *hits,
				   size_t max)
{
	struct lt_collect c = { .start = start, .end = end, .bytes = true };
	size_t total = 0;

	registry_settle_windows();
	if (!registry_counted_locked(start & ~(uintptr_t)(vm_base_page_size() - 1), end))
		return 0;
	registry_settle_threads();
	(void)reg_table_walk(&registry_state.regs, lt_collect_one, &c);
	for (size_t i = 0; i < c.n; i++)
		add_hit(hits, max, &total, c.r[i].addr, c.r[i].len, false);
	free(c.r);
	return total;
}

int registry_unpin_violated_locked(uintptr_t addr, size_t len)
{
	for (struct violated **pp = &violated_head; *pp; pp = &(*pp)->next) {
		struct violated *v = *pp;

		if (v->addr != addr || v->len != len)
			continue;
		*pp = v->next;
		for (size_t i = 0; i < v->n; i++) {
			struct reg_extent ext = { v->piece[i].start, v->piece[i].end,
						  v->piece[i].start, v->piece[i].end };

			drop_counts(ext.start, ext.end, false);
			lifetime_unpinned_locked(&ext);
		}
		free(v->piece);
		free(v);
		return 0;
	}
	return -ENOENT;
}

int registry_walk_locked(int (*fn)(void *ctx, const struct lt_reg *r), void *ctx)
{
	struct lt_collect c = { .start = 0, .end = UINTPTR_MAX };
	int ret;

	/*
	 * The monitor and the audit walk every registration, and then need to
	 * see every later pin and unpin: the threads' caches are off for good.
	 * (A thread recording a window pin of its own meanwhile sees the
	 * windows change and takes the locked path.)
	 */
	registry_windows_change_begin();
	registry_state.tc_off = true;
	registry_settle_windows();
	registry_settle_threads();
	registry_windows_change_end();
	ret = reg_table_walk(&registry_state.regs, lt_collect_one, &c);

	for (size_t i = 0; !ret && i < c.n; i++)
		ret = fn(ctx, &c.r[i]);
	free(c.r);
	for (struct violated *v = violated_head; !ret && v; v = v->next) {
		for (size_t i = 0; !ret && i < v->n; i++) {
			struct lt_reg r = { v->addr, v->len,
					    { v->piece[i].start, v->piece[i].end,
					      v->piece[i].start, v->piece[i].end },
					    1, 0, true };

			ret = fn(ctx, &r);
		}
		if (!ret && !v->n) {
			struct lt_reg r = { v->addr, v->len, { 0, 0, 0, 0 }, 1, 0, true };

			ret = fn(ctx, &r);
		}
	}
	return ret;
}

uint64_t registry_violated_live_locked(void)
{
	uint64_t n = 0;

	for (struct violated *v = violated_head; v; v = v->next)
		n++;
	return n;
}

int registry_gaps_locked(uintptr_t start, uintptr_t end, range_seg_fn fn, void *ctx)
{
	return range_map_gaps(&registry_state.pages, start, end, fn, ctx);
}
