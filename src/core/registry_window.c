// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Windowed unmarking (SAFEPIN_UNMARK_WINDOWED): deferred unmarking for
 * ranges that never come back.
 *
 * Random I/O buffers carved out of a large pool are registered once and
 * released: parking them would keep one VMA split each (which made every
 * other madvise() slower), so deferred unmarking marks and unmarks them,
 * two madvise() calls per pair, each a VMA split or merge under the mmap
 * lock taken for writing.  A window instead is a whole 2 MiB-aligned block
 * of private anonymous memory that the library marks at once and counts as
 * one more registration of its pages.  Neighbouring windows merge into one
 * VMA.  The mark is MADV_WIPEONFORK: against a raw clone() it protects the
 * parent as DONTFORK does (no page of the VMA is copied, so no PTE is
 * write-protected), and it leaves DONTFORK to the application: one it sets
 * inside an open window is a flag of its own, which closing the window
 * does not clear.  A registration inside open windows then finds every page
 * counted and marked: no madvise(), no VMA lookup; one read of
 * /proc/self/pagemap checks that its pages are present and mapped by this
 * process alone (which also means private and anonymous), else the full
 * path faults them in.  While its windows are open, its pages need no
 * count of their own either: it is recorded in registry_state.wregs only,
 * and counted ("settled") when a window closes or anything walks the
 * live registrations.  Its release makes no system call either.  A thread
 * records such pins in its own cache (registry_deferred.c), without the
 * registry lock: the window set is read under registry_state.windows_seq,
 * which every change of it makes odd first (registry_windows_change_begin()).
 *
 * Marking is only observed at fork.  The prepare handler of every fork()
 * closes the windows before anything else (registry_before_fork_locked()):
 * their counts go, the pages no registration covers are unmarked (runs
 * merged), the pages registrations hold trade WIPEONFORK for DONTFORK
 * (keep_registered()), so the child sees exactly the live registrations,
 * with nothing where they are.  Windows are
 * also closed on safepin_flush(), on ENOMEM (their VMA splits count against
 * vm.max_map_count), when MAX_WINDOWS are open and a new one is needed,
 * and when the mode changes.
 *
 * What is trusted: a pin in a window takes the window's mark as still in
 * place, like a revived registration (registry_deferred.c), and joins the
 * list the prepare handler checks and marks again.  It also takes a page
 * that pagemap shows present and ours alone as write-faulted: true of
 * every page written since the window opened, and opening a window after
 * any fork write-faults its present pages (a fork leaves their PTEs
 * write-protected even once the child is gone).  Memory unmapped inside
 * a window leaves it when the LD_PRELOAD shim or the userfaultfd monitor
 * sees the unmap (registry_drop_windows_locked()).  What it gives up:
 * docs/deferred-unmarking.md.
 */
#include <errno.h>
#include <stdlib.h>

#include "lifetime.h"
#include "log.h"
#include "registry.h"
#include "registry_internal.h"

#define WINDOW_SHIFT 21		/* 2 MiB: a window never splits a transparent huge page */
#define WINDOW_SIZE ((uintptr_t)1 << WINDOW_SHIFT)
#define WINDOW_SLOTS 4096
#define MAX_WINDOWS (WINDOW_SLOTS / 2)	/* 4 GiB of windows */
/* A pin over more blocks than this takes the full path (it marks little anyway). */
#define FAST_PATH_BLOCKS 8

static uintptr_t window_slot[WINDOW_SLOTS];

/*
 * Blocks that are a VMA of their own only because windows on both sides
 * split it off, and that a window's probe showed unmarked by the
 * application.  Opening a window on a whole VMA cannot be probed (marking
 * all of a VMA moves no bound either way) and would read smaps, a page
 * table walk of every VMA before it; random ranges leave many such blocks
 * between windows.  Forgotten with the windows.
 */
static uintptr_t clean_slot[WINDOW_SLOTS];
static struct block_set clean_blocks;
/* Keys being closed: a set cannot be iterated while it changes. */
static uintptr_t closing[MAX_WINDOWS];

static uintptr_t block_of(uintptr_t addr)
{
	return addr >> WINDOW_SHIFT;
}

void registry_windows_change_begin(void)
{
	if (registry_state.windows_changing++ == 0) {
		atomic_fetch_add(&registry_state.windows_seq, 1);
		atomic_thread_fence(memory_order_release);
	}
}

void registry_windows_change_end(void)
{
	if (--registry_state.windows_changing == 0)
		atomic_fetch_add_explicit(&registry_state.windows_seq, 1, memory_order_release);
}

void registry_windows_init(void)
{
	block_set_init(&registry_state.windows, window_slot, WINDOW_SLOTS);
	block_set_init(&clean_blocks, clean_slot, WINDOW_SLOTS);
}

void registry_forget_windows(void)
{
	registry_windows_change_begin();
	block_set_clear(&registry_state.windows);
	block_set_clear(&clean_blocks);
	registry_windows_change_end();
}

/* [start, end), a piece of a VMA just shown unmarked, is one block: remember it. */
static void learn_clean_piece(uintptr_t start, uintptr_t end)
{
	if (end - start == WINDOW_SIZE && !(start & (WINDOW_SIZE - 1)))
		(void)block_set_add(&clean_blocks, block_of(start));
}

/* An open window meeting [start, end) in *@key; false if none. */
static bool window_meeting(uintptr_t start, uintptr_t end, uintptr_t *key)
{
	const struct block_set *w = &registry_state.windows;
	uintptr_t first = block_of(start), last = block_of(end - 1);
	size_t pos = 0;

	if (!w->n || start >= end)
		return false;
	if (last - first < MAX_WINDOWS) {
		for (uintptr_t b = first; b <= last; b++) {
			if (block_set_has(w, b)) {
				*key = b;
				return true;
			}
		}
		return false;
	}
	while (block_set_next(w, &pos, key))	/* a huge range: fewer windows than blocks */
		if (*key >= first && *key <= last)
			return true;
	return false;
}

bool registry_meets_window_locked(uintptr_t start, uintptr_t end)
{
	uintptr_t key;

	return window_meeting(start, end, &key);
}

bool registry_windows_cover(uintptr_t addr, size_t len, struct reg_extent *ext)
{
	const size_t ps = vm_base_page_size();

	if (!len || addr + len < addr || addr + len > UINTPTR_MAX - ps ||
	    atomic_load_explicit(&registry_state.tc_off, memory_order_relaxed))
		return false;
	reg_extent_of(addr, len, ps, ps, ext);
	/* Partial edge pages are counted in the edge map: the locked path's. */
	if (ext->head_end != ext->start || ext->tail_start != ext->end)
		return false;
	if (block_of(ext->end - 1) - block_of(ext->start) >= FAST_PATH_BLOCKS)
		return false;
	for (uintptr_t b = block_of(ext->start); b <= block_of(ext->end - 1); b++)
		if (!block_set_has(&registry_state.windows, b))
			return false;
	return true;
}

int registry_pin_in_windows_locked(uintptr_t addr, size_t len, struct reg_extent *ext)
{
	const size_t ps = vm_base_page_size();
	int ret;

	/* Empty and wrapping ranges get their errno from the full path. */
	if (!len || addr + len < addr || addr + len > UINTPTR_MAX - ps)
		return -ENOENT;
	reg_extent_of(addr, len, ps, ps, ext);
	if (block_of(ext->end - 1) - block_of(ext->start) >= FAST_PATH_BLOCKS)
		return -ENOENT;
	for (uintptr_t b = block_of(ext->start); b <= block_of(ext->end - 1); b++)
		if (!block_set_has(&registry_state.windows, b))
			return -ENOENT;
	/* The audit hashes the pages into the live table's entry. */
	if (audit_pfns_enabled())
		return -ENOENT;
	ret = reg_table_add(&registry_state.wregs, addr, len, ext);
	if (ret)
		return ret;
	ret = registry_edges_add(ext);
	if (ret) {
		reg_table_del(&registry_state.wregs, addr, len, ext);
		return ret;
	}
	registry_trust_until_fork_locked(ext);
	/* The next ones this thread makes need no registry lock. */
	registry_tc_claim_locked();
	return 0;
}

void registry_drop_in_windows_locked(uintptr_t addr, size_t len, const struct reg_extent *ext)
{
	registry_edges_sub(ext);
	reg_table_del(&registry_state.wregs, addr, len, ext);
}

/* Move one pin from wregs to the live table, counted. 0, or -ENOMEM (it stays). */
static int settle_one(const struct reg_pick *p)
{
	struct reg_extent moved;
	int ret;

	/* Its windows count every page: there is no 0->1 run to mark. */
	ret = range_map_add(&registry_state.pages, p->ext.start, p->ext.end, NULL, 0);
	if (ret)
		return ret;
	ret = reg_table_move(&registry_state.wregs, &registry_state.regs, p->addr, p->len, &moved);
	if (ret)
		range_map_sub(&registry_state.pages, p->ext.start, p->ext.end, NULL, NULL);
	return ret;
}

int registry_unpin_in_windows_locked(uintptr_t addr, size_t len, bool may_park)
{
	struct reg_pick p = { .addr = addr, .len = len };
	int ret = reg_table_find(&registry_state.wregs, addr, len, &p.ext);

	if (ret)
		return ret;
	if (may_park) {
		if (recent_set_has(&registry_state.unpinned, addr, len) && !settle_one(&p))
			return -EAGAIN;
		recent_set_add(&registry_state.unpinned, addr, len);
	}
	ret = range_map_reserve(&registry_state.edges);
	if (ret)
		return ret;
	registry_drop_in_windows_locked(addr, len, &p.ext);
	lifetime_unpinned_locked(&p.ext);
	return 0;
}

int registry_settle_windows_locked(void)
{
	if (registry_tc_settle_windows_locked())
		goto enomem;
	while (registry_state.wregs.nr_live) {
		struct reg_pick p = { .start = 0, .end = UINTPTR_MAX };

		(void)reg_table_walk(&registry_state.wregs, registry_pick_entry, &p);
		if (settle_one(&p))
			goto enomem;
	}
	return 0;
enomem:
	registry_state.failures++;
	sp_log(SP_LOG_ERROR, "out of memory counting registrations in windows: "
	       "%zu keep their windows open", registry_state.wregs.nr_live);
	return -ENOMEM;
}

/*
 * Only memory whose marking the probe of registry.c can attribute, and
 * that a child would otherwise share copy-on-write: private, anonymous,
 * writable, base pages, not marked by the application as far as known.
 */
static bool window_fits(const struct vma_info *v)
{
	if (v->page_size != vm_base_page_size())
		return false;
	if (v->flags & (VMA_SHARED | VMA_FILE | VMA_HUGETLB | VMA_IO | VMA_WIPEONFORK))
		return false;
	return (v->flags & (VMA_READ | VMA_WRITE)) == (VMA_READ | VMA_WRITE);
}

/* Returned for a block whose memory does not fit a window: no error. */
#define DOES_NOT_FIT 1

/* The VMAs of a block, without a hole, each fitting; else DOES_NOT_FIT. */
static int collect_fitting(void *ctx, const struct vma_info *vma)
{
	struct vma_list *l = ctx;

	if (vma->start > l->want || !window_fits(vma))
		return DOES_NOT_FIT;
	if (vma_push(&l->v, &l->n, &l->cap, vma))
		return -ENOMEM;
	l->want = vma->end;
	return 0;
}

/*
 * Mark and count block @key.  Its VMAs may be several: the marks of live
 * registrations inside split it.  A block that is one VMA of its own needs
 * smaps to be marked (see mark_for() in registry.c) unless clean_blocks
 * knows it.
 */
static int open_window(uintptr_t key, const struct vma_info *known)
{
	uintptr_t ws = key << WINDOW_SHIFT, we = ws + WINDOW_SIZE;
	uint64_t marked = registry_state.pages_marked;
	struct vma_list l = { .want = ws };
	int ret;

	/* The pin's own VMA, just listed, often holds the whole block. */
	if (known && known->start <= ws && known->end >= we)
		ret = collect_fitting(&l, known);
	else
		ret = vm_for_each_vma(ws, we, collect_fitting, &l);
	if (!ret && l.want < we)
		ret = DOES_NOT_FIT;
	if (ret)
		goto out;
	if (registry_state.windows.n == registry_state.windows.max &&
	    registry_close_windows_locked()) {
		ret = -ENOMEM;
		goto out;
	}
	ret = registry_count_window_locked(&l, ws, we,
					   l.n == 1 && l.v[0].start == ws && l.v[0].end == we &&
					   block_set_del(&clean_blocks, key));
	if (ret)
		goto out;
	registry_windows_change_begin();
	(void)block_set_add(&registry_state.windows, key);	/* room made above */
	registry_windows_change_end();
	/* Pins inside take pagemap's word that a page is ours alone, which
	 * does not say its PTE is writable: after a fork that one may not be. */
	if (vm_cow_child_seen())
		vm_write_fault_present(ws, we);
	/* We marked pages of the one VMA: it carried no WIPEONFORK of the application's. */
	if (l.n == 1 && registry_state.pages_marked > marked) {
		learn_clean_piece(l.v[0].start, ws);
		learn_clean_piece(we, l.v[0].end);
	}
out:
	free(l.v);
	return ret;
}

/*
 * A window that cannot open because its memory does not fit is no error
 * (the pin marks its own pages); any other failure is the pin's, so that a
 * pin that fails leaves no window behind: nothing changed.
 */
int registry_open_windows_locked(const struct vma_list *vmas, const struct reg_extent *ext,
				 struct windows_opened *opened)
{
	uintptr_t key[2] = { block_of(ext->start), block_of(ext->end - 1) };
	int ret;

	opened->n = 0;
	if (!registry_state.windowed || registry_state.unprotected || !vmas->n ||
	    registry_state.policy != SAFEPIN_POLICY_DONTFORK)
		return 0;
	for (int i = 0; i < 2; i++) {
		const struct vma_info *v = i ? &vmas->v[vmas->n - 1] : &vmas->v[0];
		uintptr_t ws = key[i] << WINDOW_SHIFT, we = ws + WINDOW_SIZE;

		if (i && key[1] == key[0])
			break;
		/* A block the pin covers whole is marked by the pin itself. */
		if ((ext->start <= ws && ext->end >= we) ||
		    block_set_has(&registry_state.windows, key[i]) || !window_fits(v))
			continue;
		/* The VMAs listed before this call's first madvise() still stand. */
		ret = open_window(key[i], opened->n ? NULL : v);
		if (!ret) {
			opened->key[opened->n++] = key[i];
		} else if (ret != DOES_NOT_FIT) {
			registry_close_opened_locked(opened);
			return ret;
		}
	}
	return opened->n;
}

/*
 * Closing a window, the pages registrations still hold trade its
 * WIPEONFORK for their own DONTFORK.  The application may have marked them
 * DONTFORK itself since the window opened (a flag of its own on our
 * WIPEONFORK VMA): probed as any marking is, and then left to it.
 */

/* The VMAs under [start, end), with VmFlags if @smaps. */
static int list_vmas(uintptr_t start, uintptr_t end, bool smaps, struct vma_vec *l)
{
	l->n = 0;
	return smaps ? vm_for_each_vma_smaps(start, end, vma_vec_collect, l) :
		       vm_for_each_vma(start, end, vma_vec_collect, l);
}

/* One piece of a held run, inside the one VMA @v. */
static void keep_piece(uintptr_t start, uintptr_t end, const struct vma_info *v)
{
	/* A piece of a VMA shows by a split whether the flag was there. */
	bool probe = start > v->start || end < v->end;
	enum range_mark mark = RANGE_MARK_DONTFORK;
	uint64_t pages = (end - start) / vm_base_page_size();

	if (!probe && (v->flags & VMA_DONTFORK))
		mark = RANGE_MARK_NONE;		/* smaps: the application's */
	if (range_map_remark(&registry_state.pages, start, end, RANGE_MARK_WIPEONFORK, mark))
		goto keep_window_mark;
	if (mark == RANGE_MARK_DONTFORK) {
		if (registry_mark_madvise(start, end, RANGE_MARK_DONTFORK, true)) {
			range_map_remark(&registry_state.pages, start, end, mark,
					 RANGE_MARK_WIPEONFORK);
			goto keep_window_mark;
		}
		if (probe)
			mark = registry_resolve_probe(v, start, RANGE_MARK_DONTFORK);
		if (mark == RANGE_MARK_NONE)
			range_map_remark(&registry_state.pages, start, end,
					 RANGE_MARK_DONTFORK, RANGE_MARK_NONE);
	}
	if (mark == RANGE_MARK_NONE)
		registry_state.pages_marked -= pages;
	if (registry_mark_madvise(start, end, RANGE_MARK_WIPEONFORK, false)) {
		registry_state.failures++;
		sp_log(SP_LOG_ERROR, "%#lx-%#lx: the window's WIPEONFORK could not be cleared",
		       (unsigned long)start, (unsigned long)end);
	}
	return;
keep_window_mark:
	/* Still protected: a child gets zeros there instead of nothing. */
	registry_state.failures++;
	sp_log(SP_LOG_ERROR, "%#lx-%#lx keeps its window's WIPEONFORK: out of memory or "
	       "madvise() failed", (unsigned long)start, (unsigned long)end);
}

static void keep_run(const struct range_seg *run)
{
	struct vma_vec l = { .v = NULL };
	bool smaps = false;
	int ret;

	ret = list_vmas(run->start, run->end, false, &l);
	for (size_t i = 0; !ret && i < l.n; i++)
		smaps |= l.v[i].start >= run->start && l.v[i].end <= run->end;
	if (!ret && smaps)
		ret = list_vmas(run->start, run->end, true, &l);
	if (ret) {
		free(l.v);
		registry_state.failures++;
		sp_log(SP_LOG_ERROR, "%#lx-%#lx keeps its window's WIPEONFORK: cannot list "
		       "its VMAs", (unsigned long)run->start, (unsigned long)run->end);
		return;
	}
	for (size_t i = 0; i < l.n; i++) {
		uintptr_t s = l.v[i].start > run->start ? l.v[i].start : run->start;
		uintptr_t e = l.v[i].end < run->end ? l.v[i].end : run->end;

		if (s < e)
			keep_piece(s, e, &l.v[i]);
	}
	free(l.v);
}

#define HELD_BATCH 16

struct held_runs {
	struct range_seg run[HELD_BATCH];
	size_t n;
};

/* Pages counted by the window and by registrations: a count of 2 or more. */
static int collect_held(void *ctx, const struct range_seg *seg, unsigned int count)
{
	struct held_runs *h = ctx;

	if (count < 2 || seg->mark != RANGE_MARK_WIPEONFORK)
		return 0;
	if (h->n && h->run[h->n - 1].end == seg->start) {
		h->run[h->n - 1].end = seg->end;
		return 0;
	}
	if (h->n == HELD_BATCH)
		return 1;
	h->run[h->n++] = *seg;
	return 0;
}

/* Everything of [start, end) that registrations hold takes their marks. */
static void keep_registered(uintptr_t start, uintptr_t end)
{
	uintptr_t pos = start;

	while (pos < end) {
		struct held_runs h = { .n = 0 };
		int more = range_map_walk_range(&registry_state.pages, pos, end, collect_held, &h);

		for (size_t i = 0; i < h.n; i++) {
			/* Each remark needs the spares a reserve makes sure of. */
			if (range_map_reserve(&registry_state.pages)) {
				registry_state.failures++;
				sp_log(SP_LOG_ERROR, "out of memory closing a window: "
				       "registered pages keep its WIPEONFORK");
				return;
			}
			keep_run(&h.run[i]);
		}
		if (!more || !h.n)
			return;
		pos = h.run[h.n - 1].end;
	}
}

/* Take window @key out of the counts; its 1->0 runs join @b. 0 or -ENOMEM (it stays). */
static int close_window(uintptr_t key, struct unmark_batch *b)
{
	uintptr_t ws = key << WINDOW_SHIFT;

	keep_registered(ws, ws + WINDOW_SIZE);
	if (range_map_reserve(&registry_state.pages))
		return -ENOMEM;
	range_map_sub(&registry_state.pages, ws, ws + WINDOW_SIZE, registry_batch_run, b);
	block_set_del(&registry_state.windows, key);
	return 0;
}

void registry_close_opened_locked(struct windows_opened *opened)
{
	struct unmark_batch b = { .run = NULL };

	if (!opened->n)
		return;
	registry_windows_change_begin();
	if (registry_settle_windows_locked()) {
		registry_windows_change_end();
		opened->n = 0;
		return;
	}

	for (int i = 0; i < opened->n; i++) {
		if (block_set_has(&registry_state.windows, opened->key[i]) &&
		    close_window(opened->key[i], &b)) {
			registry_state.failures++;
			sp_log(SP_LOG_ERROR, "out of memory closing a window: it stays open");
		}
	}
	opened->n = 0;
	registry_windows_change_end();
	registry_batch_apply(&b);
}

int registry_close_windows_locked(void)
{
	struct unmark_batch b = { .run = NULL };
	size_t pos = 0, n = 0;
	uintptr_t key;
	int ret = 0;

	registry_windows_change_begin();
	if (registry_settle_windows_locked()) {
		registry_windows_change_end();
		return -ENOMEM;
	}
	while (n < MAX_WINDOWS && block_set_next(&registry_state.windows, &pos, &key))
		closing[n++] = key;
	for (size_t i = 0; i < n; i++) {
		if (close_window(closing[i], &b)) {
			registry_state.failures++;
			sp_log(SP_LOG_ERROR, "out of memory closing windows: %zu stay open",
			       n - i);
			ret = -ENOMEM;
			break;
		}
	}
	registry_windows_change_end();
	registry_batch_apply(&b);
	/* Unmarked windows merge back with the pieces between them. */
	block_set_clear(&clean_blocks);
	return ret;
}

void registry_drop_windows_locked(uintptr_t start, uintptr_t end,
				  void (*drop)(uintptr_t ws, uintptr_t we, uintptr_t start,
					       uintptr_t end, bool gone),
				  bool gone)
{
	uintptr_t key;

	block_set_clear(&clean_blocks);	/* what was there may be mapped anew */
	registry_windows_change_begin();
	if (!registry_settle_windows_locked()) {
		while (window_meeting(start, end, &key)) {
			uintptr_t ws = key << WINDOW_SHIFT, we = ws + WINDOW_SIZE;

			block_set_del(&registry_state.windows, key);
			/* What went away keeps no mark to trade. */
			if (gone) {
				keep_registered(ws, start > ws ? start : ws);
				keep_registered(end < we ? end : we, we);
			} else {
				keep_registered(ws, we);
			}
			drop(ws, we, start, end, gone);
		}
	}
	registry_windows_change_end();
}
