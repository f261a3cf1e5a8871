// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Deferred unmarking: parking unpinned registrations, reviving them on the
 * next pin, flushing them (coalesced) and re-marking revived ones before a
 * fork, and the threads' caches that let a thread revive and park its own
 * registrations without the registry lock.  Apart from registry.c because
 * it is a mode layered on the pin path, not a step of it: it works on the
 * same counts and marks through registry_internal.h, and registry.c calls
 * in at few points (an unpin parks, a pin revives, a pin meeting ENOMEM or
 * a policy change flushes).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "lifetime.h"
#include "log.h"
#include "registry.h"
#include "registry_internal.h"

/*
 * With SAFEPIN_UNMARK_DEFERRED, an unpin of an (addr, len) that was
 * unpinned before (registry_state.unpinned) parks its registration instead
 * of unmarking: the entry moves from registry_state.regs to
 * registry_state.parked and its page counts and marks stay.  A first unpin
 * unmarks at once and only remembers the key, so ranges that never come
 * back (random I/O buffers) do not hold VMA splits that make every other
 * madvise() and lookup slower.  Pinning the same (addr, len) again takes it back
 * without a single system call: no VMA lookup, no madvise(), no pre-fault
 * (its pages stayed DONTFORK since they were faulted in, so no fork of any
 * kind can have shared them).  Parked registrations are unmarked, runs
 * coalesced, in the prepare handler of every fork(), when PARK_MAX are
 * parked, when a pin runs into ENOMEM (their VMA splits count against
 * vm.max_map_count) and on safepin_flush().  What this trusts, and what a
 * raw clone() sees: docs/deferred-unmarking.md.
 */
#define PARK_MAX 256

/* Parked registrations pinned again since the last fork: see remark_revived_locked(). */
#define MAX_REVIVED 32

static struct {
	struct reg_extent ext[MAX_REVIVED];
	size_t n;
	bool overflow;		/* more than MAX_REVIVED: re-mark every live registration */
} revived;

/*
 * A registration cache revives the same few buffers over and over between
 * two forks: each extent is remembered once, so that MAX_REVIVED distinct
 * ones fit before the prepare handler has to re-mark every live
 * registration.
 */
static void remember_revived(const struct reg_extent *ext)
{
	if (revived.overflow)
		return;		/* every live registration is re-marked anyway */
	for (size_t i = revived.n; i-- > 0;)
		if (revived.ext[i].start == ext->start && revived.ext[i].end == ext->end)
			return;
	if (revived.n < MAX_REVIVED)
		revived.ext[revived.n++] = *ext;
	else
		revived.overflow = true;
}

void registry_trust_until_fork_locked(const struct reg_extent *ext)
{
	remember_revived(ext);
}

/*
 * 1->0 runs of the parked registrations (and windows) being unmarked:
 * gathered over all of them, sorted and merged (struct unmark_batch).
 * Without memory for the list a run is unmarked on its own, which is
 * correct, only not coalesced.
 */

static int check_no_hole(void *ctx, const struct vma_info *vma)
{
	uintptr_t *want = ctx;

	if (vma->start > *want)
		return -EFAULT;
	*want = vma->end;
	return 0;
}

static bool range_mapped(uintptr_t start, uintptr_t end)
{
	uintptr_t want = start;

	return !vm_for_each_vma(start, end, check_no_hole, &want) && want >= end;
}

static void unmark_parked_run(struct unmark_batch *b, const struct range_seg *run)
{
	int ret;

	if (run->mark == RANGE_MARK_NONE)
		return;
	ret = registry_mark_madvise(run->start, run->end, run->mark, false);
	/* Unmapped since it was parked (legal once unpinned): no flag left to clear. */
	if (!ret || (ret == -ENOMEM && !range_mapped(run->start, run->end))) {
		registry_state.pages_marked -= base_pages(run->start, run->end);
		return;
	}
	sp_log(SP_LOG_ERROR, "madvise(%#lx-%#lx, unmark) failed: errno %d",
	       (unsigned long)run->start, (unsigned long)run->end, -ret);
	registry_state.failures++;
	if (b->failed.n < MAX_STUCK_RUNS)
		b->failed.run[b->failed.n++] = *run;
}

int registry_batch_run(void *ctx, const struct range_seg *seg)
{
	struct unmark_batch *b = ctx;

	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 16;
		struct range_seg *run = realloc(b->run, cap * sizeof(*run));

		if (!run) {
			unmark_parked_run(b, seg);
			return 0;
		}
		b->run = run;
		b->cap = cap;
	}
	b->run[b->n++] = *seg;
	return 0;
}

static int by_start(const void *a, const void *b)
{
	const struct range_seg *x = a, *y = b;

	return x->start < y->start ? -1 : x->start > y->start;
}

void registry_batch_apply(struct unmark_batch *b)
{
	size_t i = 0;

	if (b->n)
		qsort(b->run, b->n, sizeof(*b->run), by_start);
	while (i < b->n) {
		struct range_seg run = b->run[i++];

		while (i < b->n && b->run[i].start == run.end && b->run[i].mark == run.mark)
			run.end = b->run[i++].end;
		unmark_parked_run(b, &run);
	}
	free(b->run);
	registry_keep_stuck_locked(&b->failed);
}

/* Also registry_lifetime.c's, to take parked entries out of a range. */
int registry_pick_entry(void *ctx, uintptr_t addr, size_t len, const struct reg_extent *ext,
			uint32_t refs, uint64_t cookie)
{
	struct reg_pick *p = ctx;

	(void)refs;
	(void)cookie;
	if (ext->end <= p->start || ext->start >= p->end)
		return 0;
	*p = (struct reg_pick){ p->start, p->end, addr, len, *ext, true };
	return 1;
}

/*
 * Take the parked registration @p out: its counts go, its 1->0 runs join
 * @b.  Return 0, or -ENOMEM (the page map could not be split): it stays.
 */
static int unpark_into(const struct reg_pick *p, struct unmark_batch *b)
{
	if (range_map_reserve(&registry_state.pages) || range_map_reserve(&registry_state.edges))
		return -ENOMEM;
	range_map_sub(&registry_state.pages, p->ext.start, p->ext.end, registry_batch_run, b);
	registry_edges_sub(&p->ext);
	reg_table_del(&registry_state.parked, p->addr, p->len, &p->ext);
	return 0;
}

/*
 * The threads' caches.  Re-registering a parked range takes no system
 * call, so what is left of its cost is the lock and the shared cache lines
 * it touches: two threads re-registering their own buffers would spend
 * their time passing them back and forth.  So an unpin that parks puts the
 * registration into a slot of the calling thread's cache instead of the
 * parked table (if one is free); a pin of exactly that (addr, len) in that
 * thread revives it in the slot, and its unpin parks it there again, each
 * under the thread's own lock only.  The entries stay in the page and edge
 * counts, exactly as parked and live registrations in the tables do: only
 * which table lists them differs.
 *
 * Everything else reaches them with the registry lock held, taking each
 * cache's lock after it: flushes unmark the parked ones (the fork's
 * prepare handler, safepin_flush(), PARK_MAX, ENOMEM), a revival there is
 * remembered for the next fork's re-marking, a pin other than an exact
 * revival in its own thread moves the parked ones of the same (addr, len)
 * or on its pages back to the parked table first (registry.c then treats
 * them as it always did), an unpin that finds nothing in the live table,
 * the lifetime code before it walks the tables, and a change of mode or
 * policy move them all back; the stats count them where they are.  A
 * thread's own parks do not count against PARK_MAX (they add no VMA
 * split); its first park of an entry does.  A thread that exits moves
 * its entries back (a pthread key's destructor); its cache then serves the
 * next new thread.  Caches are never freed, so none is ever lost sight of.
 * The library walking every registration for the monitor or the audit
 * (which need every pin and unpin to be seen) turns the caches off.
 */
#define TC_SLOTS 32
/*
 * Pins inside open windows a thread holds (registry_window.c): neither
 * counted nor marked by anyone but the windows, so recording one is all a
 * pin there does, and with the window set read under its seqlock it needs
 * no registry lock.  A closer of windows bumps the sequence first and then
 * visits every cache under its lock, so a pin recorded after that visit
 * sees the change and takes the locked path instead.
 */
#define TC_WSLOTS 16

enum { TC_FREE, TC_PARKED, TC_LIVE, TC_STRANDED /* live, could not move back */ };

struct tc_slot {
	uintptr_t addr;
	size_t len;
	struct reg_extent ext;
	unsigned char state;
	bool revived;		/* since the registry last looked */
};

struct tc_wslot {
	uintptr_t addr;
	size_t len;
	struct reg_extent ext;
};

struct thread_cache {
	_Alignas(64) struct sp_lock lock;	/* over all below but next and in_use */
	unsigned int n;		/* slots not free */
	uint64_t revived;	/* revivals, not yet in registry_state.revived */
	struct tc_slot slot[TC_SLOTS];
	unsigned int wn;	/* window pins: the first wn of wslot */
	struct tc_wslot wslot[TC_WSLOTS];
	/* (addr, len) of the window pins released last: a second release parks. */
	struct { uintptr_t addr; size_t len; } wgone[TC_WSLOTS];
	unsigned int wgone_next;
	struct thread_cache *next;	/* under the registry lock */
	bool in_use;			/* under the registry lock */
};

static struct thread_cache *tc_head;	/* under the registry lock */
#define TC_STATIC 4
static struct thread_cache tc_static[TC_STATIC];	/* the first ones */
static unsigned int tc_static_used;			/* under the registry lock */
static SP_THREAD_LOCAL struct thread_cache *tc_self;
static pthread_key_t tc_key;
static pthread_once_t tc_key_once = PTHREAD_ONCE_INIT;
static bool tc_have_key;

static void tc_release(void *p);

static void tc_make_key(void)
{
	tc_have_key = !pthread_key_create(&tc_key, tc_release);
}

static struct tc_slot *tc_find(struct thread_cache *c, uintptr_t addr, size_t len,
			       unsigned char state)
{
	for (unsigned int i = 0; i < TC_SLOTS; i++) {
		struct tc_slot *s = &c->slot[i];

		if (s->state == state && s->addr == addr && s->len == len)
			return s;
	}
	return NULL;
}

int registry_tc_revive(uintptr_t addr, size_t len)
{
	struct thread_cache *c = tc_self;
	struct tc_slot *s;

	if (!c)
		return -ENOENT;
	sp_lock(&c->lock);
	s = tc_find(c, addr, len, TC_PARKED);
	if (s) {
		s->state = TC_LIVE;
		s->revived = true;
		c->revived++;
	}
	sp_unlock(&c->lock);
	return s ? 0 : -ENOENT;
}

int registry_tc_park(uintptr_t addr, size_t len)
{
	struct thread_cache *c = tc_self;
	struct tc_slot *s;

	if (!c)
		return -ENOENT;
	sp_lock(&c->lock);
	s = tc_find(c, addr, len, TC_LIVE);
	if (s)
		s->state = TC_PARKED;
	sp_unlock(&c->lock);
	return s ? 0 : -ENOENT;
}

int registry_tc_pin_in_windows(uintptr_t addr, size_t len, struct reg_extent *ext)
{
	struct thread_cache *c = tc_self;
	unsigned int seq;
	int ret = -ENOENT;

	if (!c)
		return -ENOENT;
	sp_lock(&c->lock);
	seq = registry_windows_read_begin();
	if (!(seq & 1) && c->wn < TC_WSLOTS && registry_windows_cover(addr, len, ext)) {
		c->wslot[c->wn++] = (struct tc_wslot){ addr, len, *ext };
		if (registry_windows_read_retry(seq)) {
			c->wn--;
		} else {
			if (!atomic_load_explicit(&registry_state.wheld, memory_order_relaxed))
				atomic_store(&registry_state.wheld, true);
			ret = 0;
		}
	}
	sp_unlock(&c->lock);
	return ret;
}

/* Whether @c released (addr, len) from a window lately; remember it if not. */
static bool tc_released_before(struct thread_cache *c, uintptr_t addr, size_t len)
{
	for (unsigned int i = 0; i < TC_WSLOTS; i++)
		if (c->wgone[i].addr == addr && c->wgone[i].len == len)
			return true;
	c->wgone[c->wgone_next].addr = addr;
	c->wgone[c->wgone_next].len = len;
	c->wgone_next = (c->wgone_next + 1) % TC_WSLOTS;
	return false;
}

void registry_tc_note_released_locked(uintptr_t addr, size_t len)
{
	struct thread_cache *c = tc_self;

	if (!c)
		return;
	sp_lock(&c->lock);
	(void)tc_released_before(c, addr, len);
	sp_unlock(&c->lock);
}

int registry_tc_unpin_in_windows(uintptr_t addr, size_t len, struct reg_extent *ext)
{
	struct thread_cache *c = tc_self;
	int ret = -ENOENT;

	if (!c)
		return -ENOENT;
	sp_lock(&c->lock);
	for (unsigned int i = c->wn; i-- > 0;) {
		if (c->wslot[i].addr == addr && c->wslot[i].len == len) {
			if (ext)
				*ext = c->wslot[i].ext;
			c->wslot[i] = c->wslot[--c->wn];
			ret = ext && tc_released_before(c, addr, len) ? 1 : 0;
			break;
		}
	}
	sp_unlock(&c->lock);
	return ret;
}

/* Move @c's window pins to wregs (the caller holds both locks): 0 or -ENOMEM. */
static int tc_settle_windows(struct thread_cache *c)
{
	while (c->wn) {
		const struct tc_wslot *w = &c->wslot[c->wn - 1];

		if (reg_table_add(&registry_state.wregs, w->addr, w->len, &w->ext))
			return -ENOMEM;
		registry_trust_until_fork_locked(&w->ext);
		c->wn--;
	}
	return 0;
}

int registry_tc_settle_windows_locked(void)
{
	int ret = 0;

	for (struct thread_cache *c = tc_head; c; c = c->next) {
		sp_lock(&c->lock);
		if (tc_settle_windows(c))
			ret = -ENOMEM;
		sp_unlock(&c->lock);
	}
	return ret;
}

/* The calling thread's cache, claimed or made on its first park. */
static struct thread_cache *tc_get_locked(void)
{
	struct thread_cache *c;

	if (tc_self)
		return tc_self;
	if (registry_state.tc_off)
		return NULL;
	/* The audit keeps a note on every live entry: none may hide here. */
	if (audit_pfns_enabled()) {
		registry_state.tc_off = true;
		return NULL;
	}
	pthread_once(&tc_key_once, tc_make_key);
	if (!tc_have_key)
		return NULL;
	for (c = tc_head; c && c->in_use; c = c->next)
		;
	if (!c) {
		/* Off the malloc heap, as the arena: a registered heap buffer
		 * may share a page with it, and the child resets it. */
		if (tc_static_used < TC_STATIC)
			c = &tc_static[tc_static_used++];
		else if ((c = mmap(NULL, sizeof(*c), PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)) == MAP_FAILED)
			return NULL;
		sp_lock_init(&c->lock);
		c->next = tc_head;
		tc_head = c;
	}
	if (pthread_setspecific(tc_key, c))
		return NULL;
	c->in_use = true;
	tc_self = c;
	return c;
}

void registry_tc_claim_locked(void)
{
	if (!registry_state.tc_off)
		(void)tc_get_locked();
}

/* An unpin parks (addr, len), in the live table with @ext, in this thread's cache. */
static int tc_hold_locked(uintptr_t addr, size_t len, const struct reg_extent *ext)
{
	struct thread_cache *c = registry_state.tc_off ? NULL : tc_get_locked();
	int ret = -ENOSPC;

	if (!c)
		return -ENOENT;
	sp_lock(&c->lock);
	if (c->n < TC_SLOTS) {
		struct tc_slot *s = c->slot;

		while (s->state != TC_FREE)
			s++;
		reg_table_del(&registry_state.regs, addr, len, ext);
		*s = (struct tc_slot){ addr, len, *ext, TC_PARKED, false };
		c->n++;
		registry_state.nr_held++;
		ret = 0;
	}
	sp_unlock(&c->lock);
	return ret;
}

static void tc_free_slot(struct thread_cache *c, struct tc_slot *s)
{
	s->state = TC_FREE;
	c->n--;
	registry_state.nr_held--;
}

/* Unmark a parked entry of a cache into @b: 0, or -ENOMEM (it stays). */
static int tc_unpark(struct thread_cache *c, struct tc_slot *s, struct unmark_batch *b)
{
	if (range_map_reserve(&registry_state.pages) || range_map_reserve(&registry_state.edges))
		return -ENOMEM;
	range_map_sub(&registry_state.pages, s->ext.start, s->ext.end, registry_batch_run, b);
	registry_edges_sub(&s->ext);
	tc_free_slot(c, s);
	return 0;
}

/* What tc_visit_locked() does with the entries besides noting revivals. */
enum tc_do {
	TC_NOTE,	/* nothing */
	TC_UNPARK,	/* unmark the parked ones */
	TC_PARK_BACK,	/* the parked ones meeting the pick back to the parked table */
	TC_SETTLE,	/* all back to the tables */
};

/* For TC_PARK_BACK: (addr, len) itself, and every extent meeting [start, end). */
struct tc_pick {
	uintptr_t addr, start, end;
	size_t len;
};

static bool tc_picked(const struct tc_pick *p, const struct tc_slot *s)
{
	return !p || (s->addr == p->addr && s->len == p->len) ||
	       (s->ext.start < p->end && s->ext.end > p->start);
}

static int tc_visit_one(struct thread_cache *c, enum tc_do what, struct unmark_batch *b,
			const struct tc_pick *pick)
{
	int ret = 0;

	sp_lock(&c->lock);
	registry_state.revived += c->revived;
	c->revived = 0;
	if (what == TC_SETTLE && tc_settle_windows(c))
		ret = -ENOMEM;
	for (unsigned int i = 0; c->n && i < TC_SLOTS; i++) {
		struct tc_slot *s = &c->slot[i];

		if (s->state == TC_FREE)
			continue;
		if (s->revived)
			remember_revived(&s->ext);
		s->revived = false;
		if (s->state == TC_PARKED && what == TC_UNPARK) {
			if (tc_unpark(c, s, b))
				ret = -ENOMEM;
		} else if (s->state == TC_PARKED && what != TC_NOTE && tc_picked(pick, s)) {
			if (!reg_table_add(&registry_state.parked, s->addr, s->len, &s->ext))
				tc_free_slot(c, s);
			else if (tc_unpark(c, s, b))
				ret = -ENOMEM;
		} else if (s->state != TC_PARKED && what == TC_SETTLE) {
			if (!reg_table_add(&registry_state.regs, s->addr, s->len, &s->ext)) {
				tc_free_slot(c, s);
			} else {
				s->state = TC_STRANDED;
				ret = -ENOMEM;
			}
		}
	}
	sp_unlock(&c->lock);
	return ret;
}

static int tc_visit_locked(enum tc_do what, struct unmark_batch *b, const struct tc_pick *pick)
{
	int ret = 0;

	for (struct thread_cache *c = tc_head; c; c = c->next) {
		int r = tc_visit_one(c, what, b, pick);

		ret = ret ? ret : r;
	}
	return ret;
}

static int tc_visit_apply_locked(enum tc_do what, const struct tc_pick *pick)
{
	struct unmark_batch b = { .run = NULL };
	int ret = tc_visit_locked(what, &b, pick);

	registry_batch_apply(&b);
	return ret;
}

void registry_tc_park_back_locked(uintptr_t addr, size_t len, uintptr_t start, uintptr_t end)
{
	struct tc_pick pick = { addr, start, end, len };

	/*
	 * (addr, len) alone (no extent yet): this thread's own cache was
	 * looked at by registry_tc_revive() already, so with every held entry
	 * in it there is nothing to do (n and nr_held change under the
	 * registry lock only).
	 */
	if (!registry_state.nr_held ||
	    (start == end && tc_self && tc_self->n == registry_state.nr_held))
		return;
	(void)tc_visit_apply_locked(TC_PARK_BACK, &pick);
}

int registry_settle_threads_locked(void)
{
	int ret = tc_visit_apply_locked(TC_SETTLE, NULL);

	if (ret) {
		registry_state.failures++;
		sp_log(SP_LOG_ERROR, "out of memory moving registrations back from the "
		       "threads' caches: %zu stay there", registry_state.nr_held);
	}
	return ret;
}

bool registry_tc_stranded_locked(uintptr_t addr, size_t len)
{
	bool found = false;

	for (struct thread_cache *c = tc_head; c && !found; c = c->next) {
		sp_lock(&c->lock);
		found = c->n && tc_find(c, addr, len, TC_STRANDED);
		sp_unlock(&c->lock);
	}
	return found;
}

void registry_tc_count_locked(uint64_t *live, uint64_t *parked)
{
	*live = *parked = 0;
	for (struct thread_cache *c = tc_head; c; c = c->next) {
		(void)tc_visit_one(c, TC_NOTE, NULL, NULL);
		sp_lock(&c->lock);
		*live += c->wn;
		for (unsigned int i = 0; c->n && i < TC_SLOTS; i++) {
			if (c->slot[i].state == TC_PARKED)
				(*parked)++;
			else if (c->slot[i].state != TC_FREE)
				(*live)++;
		}
		sp_unlock(&c->lock);
	}
}

/* A thread exits: its entries go back to the tables, its cache to the next thread. */
static void tc_release(void *p)
{
	struct thread_cache *c = p;
	struct unmark_batch b = { .run = NULL };

	registry_lock();
	if (tc_visit_one(c, TC_SETTLE, &b, NULL)) {
		registry_state.failures++;
		sp_log(SP_LOG_ERROR, "out of memory moving an exiting thread's registrations "
		       "back: they stay in its cache, for the next thread");
	}
	registry_batch_apply(&b);
	c->in_use = false;
	tc_self = NULL;
	registry_unlock();
}

/* In the child, with the registry lock held by the only thread. */
void registry_tc_forget(void)
{
	for (struct thread_cache *c = tc_head; c; c = c->next) {
		sp_lock_init(&c->lock);
		memset(c->slot, 0, sizeof(c->slot));
		c->n = 0;
		c->wn = 0;
		memset(c->wgone, 0, sizeof(c->wgone));
		c->revived = 0;
		c->in_use = c == tc_self;
	}
	registry_state.nr_held = 0;
	atomic_store(&registry_state.wheld, false);
}

/*
 * Unmark every parked registration.  Return 0, or -ENOMEM when the page
 * map could not be split: those stay parked (counted and marked).
 */
int registry_flush_parked_locked(void)
{
	struct unmark_batch b = { .run = NULL };
	int ret = 0;

	if (registry_state.nr_held)
		ret = tc_visit_locked(TC_UNPARK, &b, NULL);
	while (!ret && registry_state.parked.nr_live) {
		struct reg_pick p = { .start = 0, .end = UINTPTR_MAX };

		(void)reg_table_walk(&registry_state.parked, registry_pick_entry, &p);
		ret = unpark_into(&p, &b);
	}
	if (ret) {
		uint64_t held_live, held_parked;

		registry_tc_count_locked(&held_live, &held_parked);
		registry_state.failures++;
		sp_log(SP_LOG_ERROR, "out of memory unmarking parked registrations: "
		       "%zu stay marked", registry_state.parked.nr_live + (size_t)held_parked);
	}
	registry_batch_apply(&b);
	return ret;
}

int registry_park_locked(uintptr_t addr, size_t len, const struct reg_extent *ext)
{
	struct reg_extent moved;

	if (!recent_set_has(&registry_state.unpinned, addr, len)) {
		recent_set_add(&registry_state.unpinned, addr, len);
		return -ENOENT;
	}
	/*
	 * Entries the threads hold may be parked: when they could make
	 * PARK_MAX, count them.  (A thread parking in its cache again what
	 * it revived there adds no VMA split, and does not count here.)
	 */
	if (registry_state.parked.nr_live + registry_state.nr_held >= PARK_MAX) {
		uint64_t held_live, held_parked;

		registry_tc_count_locked(&held_live, &held_parked);
		if (registry_state.parked.nr_live + held_parked >= PARK_MAX)
			(void)registry_flush_parked_locked();
	}
	if (!tc_hold_locked(addr, len, ext))
		return 0;
	return reg_table_move(&registry_state.regs, &registry_state.parked, addr, len, &moved);
}

/* Pin of a parked (addr, len). Return 0, or -ENOENT / -ENOMEM: take the full path. */
int registry_revive_locked(uintptr_t addr, size_t len)
{
	struct reg_extent ext;
	int ret = reg_table_move(&registry_state.parked, &registry_state.regs, addr, len, &ext);

	if (ret)
		return ret;
	remember_revived(&ext);
	registry_state.revived++;
	lifetime_pinned_locked(addr, len, &ext);
	return 0;
}

/*
 * Marked runs of the revived registrations, gathered before any of them is
 * touched: checking them against the VMAs may turn a registration into a
 * violated one, which changes the page map being walked.
 */
struct remark_list {
	struct range_seg *run;
	size_t n, cap;
	bool short_of_memory;
};

static int gather_run(void *ctx, const struct range_seg *seg, unsigned int count)
{
	struct remark_list *l = ctx;

	(void)count;
	if (seg->mark == RANGE_MARK_NONE)
		return 0;
	if (l->n == l->cap) {
		size_t cap = l->cap ? 2 * l->cap : 16;
		struct range_seg *run = realloc(l->run, cap * sizeof(*run));

		if (!run) {
			l->short_of_memory = true;
			return 1;
		}
		l->run = run;
		l->cap = cap;
	}
	l->run[l->n++] = *seg;
	return 0;
}

static int gather_reg(void *ctx, uintptr_t addr, size_t len, const struct reg_extent *ext,
		      uint32_t refs, uint64_t cookie)
{
	(void)addr;
	(void)len;
	(void)refs;
	(void)cookie;
	return range_map_walk_range(&registry_state.pages, ext->start, ext->end, gather_run, ctx);
}

/*
 * Whether @run can still take its mark: mapped without a hole, private,
 * and on page boundaries of every VMA under it.  A run fails this only if
 * its memory was unmapped while parked and something else mapped there.
 */
static bool run_still_markable(const struct vma_vec *a, const struct range_seg *run)
{
	uintptr_t want = run->start;

	for (size_t i = vma_vec_first_after(a, run->start); i < a->n && want < run->end; i++) {
		const struct vma_info *v = &a->v[i];
		size_t ps = v->page_size ? v->page_size : vm_base_page_size();

		if (v->start > want || (v->flags & VMA_SHARED))
			return false;
		if ((v->start < run->start && run->start % ps) || (v->end > run->end && run->end % ps))
			return false;
		want = v->end;
	}
	return want >= run->end;
}

/*
 * A revived registration was trusted to still be the memory that was
 * marked.  If the application unmapped it while it was parked and mapped
 * new memory at the same place, the new VMA carries no mark.  Before a
 * fork, check the VMAs under every revived run and apply the marks again:
 * on an unchanged VMA the kernel sees equal flags and changes nothing; on
 * new private memory it marks it.  New memory that must not take the mark
 * (shared, or huge pages the run does not align to) turns the registration
 * into a violated one, as if the shim had seen the unmap: its pages leave
 * the counts, no madvise() touches them, and its deregistration is
 * accepted later.  One VMA listing covers all runs: on kernels without
 * PROCMAP_QUERY every listing reads /proc/self/maps.
 */
static void remark_revived_locked(void)
{
	struct remark_list l = { .run = NULL };
	struct vma_vec a = { .v = NULL };
	int ret = 0;

	if (revived.overflow) {
		registry_settle_threads();
		(void)reg_table_walk(&registry_state.regs, gather_reg, &l);
		for (struct thread_cache *c = tc_head; c; c = c->next) {	/* stranded */
			sp_lock(&c->lock);
			for (unsigned int i = 0; c->n && i < TC_SLOTS; i++)
				if (c->slot[i].state == TC_STRANDED)
					(void)gather_reg(&l, 0, 0, &c->slot[i].ext, 1, 0);
			sp_unlock(&c->lock);
		}
	}
	else
		for (size_t i = 0; i < revived.n && !l.short_of_memory; i++)
			(void)range_map_walk_range(&registry_state.pages, revived.ext[i].start,
						   revived.ext[i].end, gather_run, &l);
	if (l.n) {
		uintptr_t lo = l.run[0].start, hi = l.run[0].end;

		for (size_t i = 1; i < l.n; i++) {
			lo = l.run[i].start < lo ? l.run[i].start : lo;
			hi = l.run[i].end > hi ? l.run[i].end : hi;
		}
		ret = vm_for_each_vma(lo, hi, vma_vec_collect, &a);
	}
	if (l.short_of_memory || ret < 0) {
		registry_state.failures++;
		sp_log(SP_LOG_ERROR, "re-marking revived registrations before fork: %s; "
		       "applying the marks unchecked", ret < 0 ? "cannot list the VMAs" :
		       "out of memory");
	}
	for (size_t i = 0; i < l.n; i++) {
		const struct range_seg *run = &l.run[i];

		if (ret >= 0 && !run_still_markable(&a, run)) {
			struct lt_hit hits[1];
			size_t hit = registry_violation_locked(run->start, run->end, true, hits, 1);

			if (!hit)
				continue;	/* a run listed twice: already done */
			sp_log(SP_LOG_ERROR, "%#lx-%#lx was unmapped while parked and is now "
			       "memory that takes no mark (shared, or other huge pages): "
			       "%zu registration(s) of it no longer protected",
			       (unsigned long)run->start, (unsigned long)run->end, hit);
			lifetime_count_violations(hit);
			continue;
		}
		if (registry_mark_madvise(run->start, run->end, run->mark, true)) {
			registry_state.failures++;
			sp_log(SP_LOG_ERROR, "re-marking %#lx-%#lx before fork failed",
			       (unsigned long)run->start, (unsigned long)run->end);
		}
	}
	free(a.v);
	free(l.run);
	revived.n = 0;
	revived.overflow = false;
}

/*
 * Any pin that meets parked pages, not only an exact revival, finds them
 * counted already, so its 0->1 marking would skip them and count on marks
 * their memory may no longer carry (the application may have unmapped the
 * parked buffer and mapped another one there).
 *
 * A parked registration the pin covers whole (a bigger buffer over a
 * parked one, the same buffer registered with another length) is unmarked
 * and dropped first, so the pin marks its whole extent at once: otherwise
 * the trusted pages would stay a VMA of their own in the middle of the new
 * buffer, splitting its transparent huge pages, until the next fork.
 *
 * The pages of a parked registration the pin only shares (a neighbour on a
 * common page, as malloc()ed buffers are) are trusted like a revival's and
 * checked and marked again by the next fork's prepare handler: they join
 * the revived list, and the neighbour stays parked at no cost.
 */
struct within {
	const struct reg_extent *ext;
	struct reg_pick pick;
};

static int pick_within(void *ctx, uintptr_t addr, size_t len, const struct reg_extent *ext,
		       uint32_t refs, uint64_t cookie)
{
	struct within *w = ctx;

	(void)refs;
	(void)cookie;
	if (ext->start < w->ext->start || ext->end > w->ext->end)
		return 0;
	w->pick = (struct reg_pick){ .addr = addr, .len = len, .ext = *ext, .found = true };
	return 1;
}

int registry_unpark_within_locked(const struct reg_extent *ext)
{
	struct unmark_batch b = { .run = NULL };
	int n = 0, ret = 0;

	for (;;) {
		struct within w = { .ext = ext };

		(void)reg_table_walk(&registry_state.parked, pick_within, &w);
		if (!w.pick.found || (ret = unpark_into(&w.pick, &b)))
			break;
		n++;
	}
	registry_batch_apply(&b);
	return ret ? ret : n;
}

struct overlap_note {
	struct reg_extent want;		/* the pin's extent */
};

static int note_parked(void *ctx, uintptr_t addr, size_t len, const struct reg_extent *ext,
		       uint32_t refs, uint64_t cookie)
{
	struct overlap_note *o = ctx;
	struct reg_extent clip = {
		.start = ext->start > o->want.start ? ext->start : o->want.start,
		.end = ext->end < o->want.end ? ext->end : o->want.end,
	};

	(void)addr;
	(void)len;
	(void)refs;
	(void)cookie;
	if (clip.start < clip.end)
		remember_revived(&clip);
	return 0;
}

void registry_note_parked_overlap_locked(const struct reg_extent *ext)
{
	struct overlap_note o = { .want = *ext };

	(void)reg_table_walk(&registry_state.parked, note_parked, &o);
}

void registry_forget_revived(void)
{
	registry_tc_forget();
	memset(&revived, 0, sizeof(revived));
}

int registry_flush_all_locked(void)
{
	int ret = 0, ret2 = 0;

	if (registry_any_parked())
		ret = registry_flush_parked_locked();
	if (registry_state.windows.n)
		ret2 = registry_close_windows_locked();
	return ret ? ret : ret2;
}

/* Windows close first: the revived runs re-marked after them stay marked. */
void registry_before_fork_locked(void)
{
	(void)registry_flush_all_locked();
	if (revived.n || revived.overflow)
		remark_revived_locked();
}

int registry_flush(void)
{
	int ret;

	registry_lock();
	ret = registry_flush_all_locked();
	registry_unlock();
	return ret;
}

int registry_set_unmark(enum safepin_unmark mode)
{
	int ret = 0;

	registry_lock();
	/* Entries the threads hold were parked and revived in the old mode. */
	registry_settle_threads();
	registry_state.defer_unmark = mode != SAFEPIN_UNMARK_IMMEDIATE;
	registry_state.windowed = mode == SAFEPIN_UNMARK_WINDOWED;
	if (!registry_state.windowed && registry_state.windows.n)
		ret = registry_close_windows_locked();
	if (!registry_state.defer_unmark && registry_any_parked()) {
		int r = registry_flush_parked_locked();

		ret = ret ? ret : r;
	}
	registry_unlock();
	return ret;
}

enum safepin_unmark registry_unmark(void)
{
	enum safepin_unmark mode;

	registry_lock();
	mode = registry_state.windowed ? SAFEPIN_UNMARK_WINDOWED :
	       registry_state.defer_unmark ? SAFEPIN_UNMARK_DEFERRED : SAFEPIN_UNMARK_IMMEDIATE;
	registry_unlock();
	return mode;
}
