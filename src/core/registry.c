// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * A pin request, in order:
 *  1. read the VMAs of the range: refuse holes and PROT_NONE, widen the
 *     range to whole (huge) pages;
 *  2. record the registration and add one to every page's count; the pages
 *     that go 0->1 come back as maximal runs, each with the mark its VMA
 *     needs (none for shared memory or memory the application itself
 *     marked DONTFORK);
 *  3. one madvise() per marked run;
 *  4. pre-fault with write semantics, outside the lock.
 * Any failure undoes the steps before it, so counts and VMA flags end
 * exactly as they were.  Unpin subtracts and unmarks the runs that went
 * 1->0 with the inverse advice.
 *
 * Two parts of the registry live next door, sharing its state through
 * registry_internal.h: deferred unmarking (registry_deferred.c) and the
 * registrations whose memory went away (registry_lifetime.c).
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "arena.h"
#include "compiler.h"
#include "config.h"
#include "edge_pages.h"
#include "lifetime.h"
#include "log.h"
#include "numa_place.h"
#include "probe.h"
#include "range_map.h"
#include "recent_set.h"
#include "reg_table.h"
#include "registry.h"
#include "registry_internal.h"
#include "vm.h"

struct registry_state registry_state = { .lock = SP_LOCK_INIT };

/* Runs whose unmarking failed: see registry_keep_stuck_locked(). */
static struct run_list stuck;

/* Whole VMAs known to carry no mark of the application's: see mark_for(). */
#define CLEAN_VMAS 16

static struct {
	uintptr_t start[CLEAN_VMAS], end[CLEAN_VMAS];
	unsigned int next;
} clean_vmas;

void registry_init(void)
{
	enum safepin_unmark unmark;
	struct node_alloc alloc;

	arena_init(&registry_state.arena);
	/* Probe MADV_POPULATE_WRITE now, not inside the first pin (whose
	 * pre-fault may skip pages pagemap shows ready already). */
	(void)vm_has_populate();
	alloc = arena_node_alloc(&registry_state.arena);
	range_map_init(&registry_state.pages, &alloc);
	range_map_init(&registry_state.edges, &alloc);
	reg_table_init(&registry_state.regs, &alloc);
	reg_table_init(&registry_state.parked, &alloc);
	reg_table_init(&registry_state.wregs, &alloc);
	registry_state.policy = config_default_policy();
	unmark = config_default_unmark();
	registry_state.defer_unmark = unmark != SAFEPIN_UNMARK_IMMEDIATE;
	registry_state.windowed = unmark == SAFEPIN_UNMARK_WINDOWED;
	registry_windows_init();
	/* Only an experiment on this kernel may allow marking nothing. */
	if (registry_state.policy == SAFEPIN_POLICY_KERNEL_COPY &&
	    !(probe_copies_on_fork(false) && probe_copies_on_fork(true))) {
		sp_log(SP_LOG_ERROR, "SAFEPIN_POLICY=kernel-copy: this kernel was not shown to "
		       "copy pinned pages at fork; using dontfork");
		registry_state.policy = SAFEPIN_POLICY_DONTFORK;
	}
}

/* Whether this thread holds the lock (registry_lifetime.c: the shim's munmap). */
static SP_THREAD_LOCAL bool reg_lock_held;

void registry_lock(void)
{
	sp_lock(&registry_state.lock);
	reg_lock_held = true;
}

void registry_unlock(void)
{
	reg_lock_held = false;
	sp_unlock(&registry_state.lock);
}

bool registry_lock_held(void)
{
	return reg_lock_held;
}

void registry_snapshot_edges(void)
{
	if (edge_snapshot_take(&registry_state.snapshot, &registry_state.edges,
			       &registry_state.pages)) {
		registry_state.failures++;
		sp_log(SP_LOG_ERROR, "no memory to save partially registered pages: "
		       "the child will miss their unregistered bytes");
	}
}

void registry_release_edges(void)
{
	edge_snapshot_release(&registry_state.snapshot);
}

/* In the child, with registry_state.lock held by the forking thread (the only one left). */
void registry_reset_in_child(void)
{
	edge_snapshot_restore(&registry_state.snapshot);
	edge_snapshot_release(&registry_state.snapshot);
	/* The nodes are the parent's: drop them with the arena in one go. */
	range_map_forget(&registry_state.pages);
	range_map_forget(&registry_state.edges);
	reg_table_forget(&registry_state.regs);
	reg_table_forget(&registry_state.parked);
	reg_table_forget(&registry_state.wregs);
	recent_set_clear(&registry_state.unpinned);
	registry_forget_revived();
	registry_forget_windows();
	lifetime_forget_violated();
	stuck.n = 0;
	memset(&clean_vmas, 0, sizeof(clean_vmas));
	arena_release(&registry_state.arena);
	registry_state.pages_marked = 0;
	registry_state.madvise_calls = 0;
	registry_state.prefaulted_pages = 0;
	registry_state.cow_unbroken_pages = 0;
	registry_state.failures = 0;
	registry_state.revived = 0;
}

void registry_disable_protection(bool disable)
{
	registry_lock();
	registry_settle_threads();
	registry_state.unprotected = disable;
	registry_unlock();
}

/* --- step 1: the VMAs of a range ------------------------------------- */

static int collect_vma(void *ctx, const struct vma_info *vma)
{
	struct vma_list *l = ctx;

	if (vma->start > l->want)
		return -EFAULT;		/* a hole */
	if (!(vma->flags & (VMA_READ | VMA_WRITE | VMA_EXEC)))
		return -EFAULT;		/* PROT_NONE */
	if (vma_push(&l->v, &l->n, &l->cap, vma))
		return -ENOMEM;
	l->want = vma->end;
	return 0;
}

static uintptr_t align_down(uintptr_t x, size_t a)
{
	return x & ~(uintptr_t)(a - 1);
}

static uintptr_t align_up(uintptr_t x, size_t a)
{
	return (x + a - 1) & ~(uintptr_t)(a - 1);
}

/* Read the VMAs of [addr, addr + len) into @l and widen it to whole pages in @ext. */
static int describe_range(uintptr_t addr, size_t len, struct vma_list *l,
			  struct reg_extent *ext)
{
	size_t ps = vm_base_page_size();
	uintptr_t start = align_down(addr, ps), end = align_up(addr + len, ps);
	int ret;

	if (end < start)	/* the last page wraps around */
		return -EINVAL;
	l->want = start;
	ret = vm_for_each_vma(start, end, collect_vma, l);
	if (ret)
		return ret;
	if (!l->n || l->want < end)
		return -EFAULT;
	/* hugetlb VMAs are aligned to their page size: the widening stays inside. */
	reg_extent_of(addr, len, l->v[0].page_size, l->v[l->n - 1].page_size, ext);
	return 0;
}

/* --- step 2: what each 0->1 run needs --------------------------------- */

/*
 * Two marks that never reach the page map.  The cheap VMA sources do not
 * show VmFlags: whether the application marked a private VMA DONTFORK or
 * WIPEONFORK itself (invariant 7) needs smaps, which costs a page table walk
 * of every VMA before the range.  MARK_NEED_VMFLAGS asks for it.  MARK_PROBE
 * avoids it where the answer can be read off the madvise() we make anyway:
 * a 0->1 run that covers only part of a private VMA, policy DONTFORK.  If
 * the VMA was not DONTFORK, MADV_DONTFORK splits it, so the VMA found at the
 * run afterwards no longer covers the old one; if it already was, madvise
 * changes nothing (the kernel returns early when the flags are unchanged),
 * so the VMA found afterwards covers the old one (it may have grown by a
 * merge with a neighbour this call marked).  See resolve_probe().
 */
#define MARK_PROBE ((enum range_mark)(RANGE_MARK_WIPEONFORK + 1))
#define MARK_NEED_VMFLAGS ((enum range_mark)(RANGE_MARK_WIPEONFORK + 2))

/*
 * Whole private VMAs that smaps showed without DONTFORK or WIPEONFORK, by
 * bounds.  A buffer mmap()ed for DMA is registered whole, again and again,
 * and each time smaps would walk the page tables of every VMA before it
 * (milliseconds next to a large resident mapping).  A VMA found here is
 * taken as carrying no mark of the application's.  What that gives up: if
 * the application later marks that very VMA (or one remapped with the same
 * bounds) DONTFORK itself, the library takes the mark for its own and
 * removes it at the last unpin.  Small and round-robin: a miss costs one
 * smaps read.  The cache itself is declared with the registry state above.
 */
static bool cacheable(const struct vma_info *v)
{
	return !(v->flags & VMA_SHARED) && (!(v->flags & VMA_FILE) || (v->flags & VMA_HUGETLB));
}

static bool clean_vma_known(const struct vma_info *v)
{
	for (unsigned int i = 0; i < CLEAN_VMAS; i++)
		if (clean_vmas.start[i] == v->start && clean_vmas.end[i] == v->end)
			return v->end != 0;
	return false;
}

void registry_learn_clean_vma(const struct vma_info *v)
{
	if (!cacheable(v) || (v->flags & (VMA_DONTFORK | VMA_WIPEONFORK | VMA_IO)) ||
	    clean_vma_known(v))
		return;
	clean_vmas.start[clean_vmas.next] = v->start;
	clean_vmas.end[clean_vmas.next] = v->end;
	clean_vmas.next = (clean_vmas.next + 1) % CLEAN_VMAS;
}

/*
 * A window's mark (registry_window.c): WIPEONFORK, whatever the policy,
 * so that a DONTFORK the application sets inside an open window is a VMA
 * flag of its own, which closing the window (KEEPONFORK) leaves alone.
 * Only the application's own WIPEONFORK keeps a window off its pages.
 * @block_clean: the window's block is a whole VMA the probe of a
 * neighbouring window showed without WIPEONFORK.
 */
static enum range_mark window_mark_for(const struct vma_info *v, uintptr_t start,
				       uintptr_t end, bool block_clean)
{
	if (!(v->flags & VMA_VMFLAGS)) {
		if (start > v->start || end < v->end)
			return MARK_PROBE;
		return block_clean || clean_vma_known(v) ? RANGE_MARK_WIPEONFORK :
							   MARK_NEED_VMFLAGS;
	}
	return v->flags & (VMA_IO | VMA_WIPEONFORK) ? RANGE_MARK_NONE : RANGE_MARK_WIPEONFORK;
}

static enum range_mark mark_for(const struct vma_info *v, uintptr_t start, uintptr_t end)
{
	if (registry_state.unprotected || registry_state.policy == SAFEPIN_POLICY_KERNEL_COPY)
		return RANGE_MARK_NONE;
	/* Shared memory is never copied on write: hiding it only hurts. */
	if (v->flags & VMA_SHARED)
		return RANGE_MARK_NONE;
	if (!(v->flags & VMA_VMFLAGS)) {
		/* Writable private anonymous or hugetlb memory: never VM_IO. */
		if (registry_state.policy == SAFEPIN_POLICY_DONTFORK && (v->flags & VMA_WRITE) &&
		    (!(v->flags & VMA_FILE) || (v->flags & VMA_HUGETLB)) &&
		    (start > v->start || end < v->end))
			return MARK_PROBE;
		/*
		 * A whole VMA (a buffer mmap()ed and registered whole): marking
		 * it may change no bounds either way, and a probe on part of it
		 * would be a madvise() where the application's own DONTFORK
		 * asks for none.  smaps decides, unless it already did.
		 */
		if (!(cacheable(v) && (v->flags & VMA_WRITE) && clean_vma_known(v)))
			return MARK_NEED_VMFLAGS;
		return registry_state.policy == SAFEPIN_POLICY_ZERO_FILL &&
		       !(v->flags & VMA_HUGETLB) ? RANGE_MARK_WIPEONFORK : RANGE_MARK_DONTFORK;
	}
	if (v->flags & VMA_IO)
		return RANGE_MARK_NONE;
	/* The application's own marking: not ours to add or remove. */
	if (v->flags & VMA_DONTFORK)
		return RANGE_MARK_NONE;
	if (registry_state.policy == SAFEPIN_POLICY_ZERO_FILL &&
	    !(v->flags & (VMA_FILE | VMA_HUGETLB)))
		return v->flags & VMA_WIPEONFORK ? RANGE_MARK_NONE : RANGE_MARK_WIPEONFORK;
	return RANGE_MARK_DONTFORK;
}

/* Read VmFlags (smaps) for the VMAs of @l that lack them. */
static int fill_vmflags(void *ctx, const struct vma_info *vma)
{
	struct vma_list *l = ctx;

	for (size_t i = 0; i < l->n; i++) {
		if (l->v[i].start == vma->start && l->v[i].end == vma->end) {
			l->v[i] = *vma;
			registry_learn_clean_vma(vma);
			break;
		}
	}
	return 0;
}

static int learn_vmflags(struct vma_list *l)
{
	int ret;

	if (!l->n)
		return 0;
	ret = vm_for_each_vma_smaps(l->v[0].start, l->v[l->n - 1].end, fill_vmflags, l);
	/* A VMA smaps did not show as we saw it changed under us (a race with
	 * the application's own mmap/munmap): take it as carrying no flag. */
	for (size_t i = 0; i < l->n; i++)
		l->v[i].flags |= VMA_VMFLAGS;
	return ret;
}

/* A file mapping whose VM_IO / VM_PFNMAP was not looked up (hugetlb never is). */
static bool io_unknown(const struct vma_list *l)
{
	for (size_t i = 0; i < l->n; i++)
		if ((l->v[i].flags & (VMA_VMFLAGS | VMA_FILE | VMA_HUGETLB)) == VMA_FILE)
			return true;
	return false;
}

struct seg_builder {
	const struct vma_list *vmas;
	size_t vi;
	struct range_seg *s;
	size_t n, cap;
	bool need_vmflags;
	bool window;		/* the 0->1 runs are a window's (window_mark_for()) */
	bool block_clean;
};

static int push_seg(struct seg_builder *b, uintptr_t start, uintptr_t end,
		    enum range_mark mark)
{
	/* A probed run stays alone: it is checked against its own VMA. */
	if (b->n && b->s[b->n - 1].end == start && b->s[b->n - 1].mark == mark &&
	    mark != MARK_PROBE) {
		b->s[b->n - 1].end = end;
		return 0;
	}
	if (b->n == b->cap) {
		size_t cap = b->cap ? 2 * b->cap : 4;
		struct range_seg *s = realloc(b->s, cap * sizeof(*s));

		if (!s)
			return -ENOMEM;
		b->s = s;
		b->cap = cap;
	}
	b->s[b->n++] = (struct range_seg){ start, end, mark };
	return 0;
}

/* Cut one gap of the page map along VMA boundaries. */
static int split_gap(void *ctx, const struct range_seg *gap)
{
	struct seg_builder *b = ctx;
	uintptr_t pos = gap->start;

	while (pos < gap->end) {
		const struct vma_info *v = &b->vmas->v[b->vi];
		enum range_mark mark;
		uintptr_t end;
		int ret;

		if (v->end <= pos) {
			b->vi++;
			continue;
		}
		end = v->end < gap->end ? v->end : gap->end;
		mark = b->window ? window_mark_for(v, pos, end, b->block_clean) :
				   mark_for(v, pos, end);
		if (mark == MARK_NEED_VMFLAGS)
			b->need_vmflags = true;
		ret = push_seg(b, pos, end, mark);
		if (ret)
			return ret;
		pos = end;
	}
	return 0;
}

/* --- step 3: marking --------------------------------------------------- */

static int advice_of(enum range_mark mark, bool set)
{
	if (mark == RANGE_MARK_WIPEONFORK)
		return set ? MADV_WIPEONFORK : MADV_KEEPONFORK;
	return set ? MADV_DONTFORK : MADV_DOFORK;
}

/* Every marking and unmarking madvise() of the registry, counted. */
int registry_mark_madvise(uintptr_t start, uintptr_t end, enum range_mark mark, bool set)
{
	int ret;

	registry_state.madvise_calls++;
	ret = vm_madvise(start, end, advice_of(mark, set));
	/* Since 5.x madvise() reports a VMA split it could not make (the
	 * vm.max_map_count limit included) as EAGAIN; we promise ENOMEM. */
	return ret == -EAGAIN ? -ENOMEM : ret;
}

static int apply_mark(const struct range_seg *seg, bool set)
{
	int ret;

	if (seg->mark == RANGE_MARK_NONE)
		return 0;
	ret = registry_mark_madvise(seg->start, seg->end, seg->mark, set);
	if (ret) {
		sp_log(SP_LOG_ERROR, "madvise(%#lx-%#lx, %s) failed: errno %d",
		       (unsigned long)seg->start, (unsigned long)seg->end,
		       set ? "mark" : "unmark", -ret);
		return ret;
	}
	if (set)
		registry_state.pages_marked += base_pages(seg->start, seg->end);
	else
		registry_state.pages_marked -= base_pages(seg->start, seg->end);
	return 0;
}

/*
 * Runs whose unmarking failed (madvise can fail to split a VMA at the
 * vm.max_map_count limit).  They stay in the page counts with one count
 * held here, so the pages remain ours: a later pin of them takes no
 * madvise and does not mistake our mark for the application's, and each
 * later pin or unpin that takes the registry lock (not one served by a
 * thread's cache) retries the unmarking.  Bounded: beyond it the pages
 * stay marked with nobody counting them (and stats.failures says so).
 * The list itself is declared with the registry state above.
 */

/* range_seg_fn for 1->0 runs; @ctx: a run_list collecting the failures, or NULL. */
int registry_unmark_run(void *ctx, const struct range_seg *seg)
{
	struct run_list *failed = ctx;

	if (!apply_mark(seg, false))
		return 0;
	registry_state.failures++;
	if (failed && failed->n < MAX_STUCK_RUNS)
		failed->run[failed->n++] = *seg;
	return 0;
}

/* Count the runs that are still marked again, on behalf of the stuck list. */
void registry_keep_stuck_locked(const struct run_list *failed)
{
	for (size_t i = 0; i < failed->n; i++) {
		const struct range_seg *run = &failed->run[i];

		if (stuck.n == MAX_STUCK_RUNS ||
		    range_map_add(&registry_state.pages, run->start, run->end, run, 1))
			continue;	/* cannot track it: it stays marked, uncounted */
		stuck.run[stuck.n++] = *run;
	}
}

/* Subtract @start..@end, unmarking what drops to 0; failures stay stuck. */
static void sub_and_unmark_locked(uintptr_t start, uintptr_t end)
{
	struct run_list failed = { .n = 0 };

	range_map_sub(&registry_state.pages, start, end, registry_unmark_run, &failed);
	registry_keep_stuck_locked(&failed);
}

static void retry_stuck_locked(void)
{
	struct run_list retry = stuck;

	stuck.n = 0;
	for (size_t i = 0; i < retry.n; i++)
		if (!range_map_reserve(&registry_state.pages))
			sub_and_unmark_locked(retry.run[i].start, retry.run[i].end);
}

/* --- edge pages: partially registered pages, restored in a child ---- */

struct gap_list {
	struct range_seg s[4];
	size_t n;
};

static int collect_gap(void *ctx, const struct range_seg *gap)
{
	struct gap_list *g = ctx;

	if (g->n == sizeof(g->s) / sizeof(g->s[0]))
		return -ENOMEM;	/* an edge is one page: it has at most one gap */
	g->s[g->n++] = *gap;
	return 0;
}

static int edge_add(uintptr_t start, uintptr_t end)
{
	struct gap_list g = { .n = 0 };
	int ret;

	if (start == end)
		return 0;
	ret = range_map_gaps(&registry_state.edges, start, end, collect_gap, &g);
	return ret ? ret : range_map_add(&registry_state.edges, start, end, g.s, g.n);
}

static void edge_sub(uintptr_t start, uintptr_t end)
{
	if (start != end)
		range_map_sub(&registry_state.edges, start, end, NULL, NULL);
}

int registry_edges_add(const struct reg_extent *ext)
{
	int ret = edge_add(ext->start, ext->head_end);

	if (ret)
		return ret;
	ret = edge_add(ext->tail_start, ext->end);
	if (ret)
		edge_sub(ext->start, ext->head_end);
	return ret;
}

void registry_edges_sub(const struct reg_extent *ext)
{
	edge_sub(ext->start, ext->head_end);
	edge_sub(ext->tail_start, ext->end);
}

/* Caller holds registry_state.lock. Undo a registration already counted and marked. */
static void drop_locked(uintptr_t addr, size_t len, const struct reg_extent *ext)
{
	sub_and_unmark_locked(ext->start, ext->end);
	registry_edges_sub(ext);
	reg_table_del(&registry_state.regs, addr, len, ext);
}

/* The VMA of @l holding @addr. */
static const struct vma_info *vma_of(const struct vma_list *l, uintptr_t addr)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].start <= addr && addr < l->v[i].end)
			return &l->v[i];
	return NULL;
}

/* What a MARK_PROBE run is marked with: DONTFORK, or a window's WIPEONFORK. */
static enum range_mark advice_mark(enum range_mark mark, bool window)
{
	if (mark != MARK_PROBE)
		return mark;
	return window ? RANGE_MARK_WIPEONFORK : RANGE_MARK_DONTFORK;
}

enum range_mark registry_resolve_probe(const struct vma_info *was, uintptr_t start,
				       enum range_mark mark)
{
	struct vma_info now;

	if (was && !vm_vma_at(start, &now) && now.start <= was->start && now.end >= was->end)
		return RANGE_MARK_NONE;
	return mark;
}

/*
 * After the madvise() of a MARK_PROBE run: did the VMA already carry the
 * flag (the application's mark: count only) or did we set it?  Unsure
 * means ours: unmarking later at worst clears a mark the application set,
 * while the reverse would leave a registered page unprotected.
 */
static enum range_mark resolve_probe(const struct vma_list *vmas, const struct range_seg *seg,
				     bool window)
{
	return registry_resolve_probe(vma_of(vmas, seg->start), seg->start,
				      advice_mark(MARK_PROBE, window));
}

/*
 * One madvise() per maximal run of segments needing the same advice;
 * resolves the probed segments.  On failure the segments marked so far are
 * unmarked again and the error returned.
 */
static int mark_segs(struct seg_builder *b, const struct vma_list *vmas)
{
	size_t i = 0, j, k;
	int ret = 0;

	while (i < b->n) {
		struct range_seg run = b->s[i];

		if (run.mark == RANGE_MARK_NONE) {
			i++;
			continue;
		}
		run.mark = advice_mark(run.mark, b->window);
		for (j = i + 1; j < b->n && b->s[j].start == b->s[j - 1].end &&
		     advice_mark(b->s[j].mark, b->window) == run.mark; j++)
			;
		run.end = b->s[j - 1].end;
		ret = registry_mark_madvise(run.start, run.end, run.mark, true);
		if (ret) {
			sp_log(SP_LOG_ERROR, "madvise(%#lx-%#lx, mark) failed: errno %d",
			       (unsigned long)run.start, (unsigned long)run.end, -ret);
			break;
		}
		for (k = i; k < j; k++) {
			if (b->s[k].mark == MARK_PROBE)
				b->s[k].mark = resolve_probe(vmas, &b->s[k], b->window);
			if (b->s[k].mark != RANGE_MARK_NONE)
				registry_state.pages_marked +=
					base_pages(b->s[k].start, b->s[k].end);
		}
		i = j;
	}
	if (ret)
		for (k = 0; k < i; k++)
			apply_mark(&b->s[k], false);
	return ret;
}

/* The 0->1 runs of [start, end) in @b, each with the mark its VMA needs. */
static int plan_marks(struct seg_builder *b, struct vma_list *vmas, uintptr_t start,
		      uintptr_t end)
{
	int ret = range_map_gaps(&registry_state.pages, start, end, split_gap, b);

	/*
	 * A 0->1 run no probe can decide, or a file mapping to pre-fault that
	 * may be VM_IO / VM_PFNMAP (no pages to fault in; only smaps says):
	 * read smaps, once, and redo.
	 */
	if (!ret && (b->need_vmflags || (!registry_state.unprotected && io_unknown(vmas)))) {
		ret = learn_vmflags(vmas);
		b->n = 0;
		b->vi = 0;
		if (!ret)
			ret = range_map_gaps(&registry_state.pages, start, end, split_gap, b);
	}
	return ret;
}

/* Mark the planned runs and count [start, end); on failure nothing changed. */
static int commit_marks(struct seg_builder *b, const struct vma_list *vmas, uintptr_t start,
			uintptr_t end)
{
	int ret = mark_segs(b, vmas);

	if (!ret) {
		ret = range_map_add(&registry_state.pages, start, end, b->s, b->n);
		if (ret)	/* out of memory: unmark what mark_segs() marked */
			for (size_t k = 0; k < b->n; k++)
				apply_mark(&b->s[k], false);
	}
	return ret;
}

int registry_count_window_locked(struct vma_list *vmas, uintptr_t start, uintptr_t end,
				 bool block_clean)
{
	struct seg_builder b = { .vmas = vmas, .window = true, .block_clean = block_clean };
	int ret = plan_marks(&b, vmas, start, end);

	if (!ret)
		ret = commit_marks(&b, vmas, start, end);
	free(b.s);
	return ret;
}

static int count_and_mark_locked(uintptr_t addr, size_t len, struct vma_list *vmas,
				 const struct reg_extent *ext)
{
	struct seg_builder b = { .vmas = vmas };
	int ret;

	ret = plan_marks(&b, vmas, ext->start, ext->end);
	if (ret)
		goto out;
	ret = reg_table_add(&registry_state.regs, addr, len, ext);
	if (ret)
		goto out;
	ret = registry_edges_add(ext);
	if (ret) {
		reg_table_del(&registry_state.regs, addr, len, ext);
		goto out;
	}
	ret = commit_marks(&b, vmas, ext->start, ext->end);
	if (ret) {
		registry_edges_sub(ext);
		reg_table_del(&registry_state.regs, addr, len, ext);
	}
out:
	free(b.s);
	return ret;
}

/* --- step 4: pre-fault ------------------------------------------------- */

static int prefault(const struct vma_list *vmas, const struct reg_extent *ext,
		    const struct pin_placement *pl, uint64_t *faulted, uint64_t *cow_unbroken)
{
	for (size_t i = 0; i < vmas->n; i++) {
		const struct vma_info *v = &vmas->v[i];
		uintptr_t start = v->start > ext->start ? v->start : ext->start;
		uintptr_t end = v->end < ext->end ? v->end : ext->end;
		bool write = v->flags & VMA_WRITE;
		struct numa_prefault pf;
		int ret;

		if (start >= end || (v->flags & VMA_IO))
			continue;
		ret = numa_prefault_begin(pl, &pf, start, end, v->page_size);
		if (!ret)
			ret = vm_populate(start, end, write, v->page_size);
		numa_prefault_end(pl, &pf, start, end, v->page_size);
		if (ret)
			return ret;
		*faulted += base_pages(start, end);
		if (!write && !(v->flags & VMA_SHARED)) {
			*cow_unbroken += base_pages(start, end);
			sp_log(SP_LOG_INFO, "%#lx-%#lx is read-only private memory: "
			       "copy-on-write cannot be broken before the pin",
			       (unsigned long)start, (unsigned long)end);
		}
	}
	return 0;
}

/*
 * A pin inside open windows (registry_window.c): counted without a VMA
 * lookup or a madvise(), then pagemap must show every page present and
 * exclusively ours (which also says anonymous and private), unless the
 * device's write pin faults them itself.  Return 0
 * (pinned) or -errno (nothing changed) with the lock released, or -EAGAIN
 * with the lock held and nothing changed: take the full path, which
 * faults the pages in.
 */
static int pin_in_windows(uintptr_t addr, size_t len, bool device_faults)
{
	struct reg_extent ext;
	int ready;

	if (registry_pin_in_windows_locked(addr, len, &ext))
		return -EAGAIN;
	/* No audit here (it hashes the pages): nothing in it needs them faulted. */
	lifetime_pinned_locked(addr, len, &ext);
	registry_unlock();
	if (device_faults)
		return 0;
	ready = vm_pages_exclusive(ext.start, ext.end);
	if (ready == 1)
		return 0;
	registry_lock();
	lifetime_unpinned_locked(&ext);
	registry_drop_in_windows_locked(addr, len, &ext);
	if (!ready)
		return -EAGAIN;
	registry_unlock();
	return ready;	/* pagemap could not be opened: as the full path's pre-fault */
}

static int pin(uintptr_t addr, size_t len, const struct pin_placement *pl, bool device_faults)
{
	struct windows_opened opened = { .n = 0 };
	struct vma_list vmas = { 0 };
	struct reg_extent ext;
	uint64_t faulted = 0, cow_unbroken = 0;
	bool protect, trusted = false;
	int ret;

	/* Revived in this thread's cache: no registry lock (registry_deferred.c). */
	if (!pl && !registry_tc_revive(addr, len))
		return 0;
	/* Inside open windows, recorded in this thread's cache: no registry lock either. */
	if (!pl && !registry_tc_pin_in_windows(addr, len, &ext)) {
		int ready = device_faults ? 1 : vm_pages_exclusive(ext.start, ext.end);

		if (ready == 1)
			return 0;
		/* Back out (a window closer may have settled it meanwhile); the
		 * full path below faults the pages in. */
		if (registry_tc_unpin_in_windows(addr, len, NULL))
			(void)registry_unpin_now(addr, len);
		if (ready < 0)
			return ready;
	}
	registry_lock();
	if (stuck.n)
		retry_stuck_locked();
	/* Parked in another thread's cache: an exact revival takes it from the table. */
	registry_tc_park_back_locked(addr, len, 0, 0);
	if (!pl && registry_state.parked.nr_live && !registry_revive_locked(addr, len)) {
		registry_unlock();
		return 0;
	}
	if (!pl && registry_state.windows.n) {
		ret = pin_in_windows(addr, len, device_faults);
		if (ret != -EAGAIN)
			return ret;
	}
	ret = describe_range(addr, len, &vmas, &ext);
	if (!ret && registry_state.windows.n)
		trusted = registry_meets_window_locked(ext.start, ext.end);
	if (!ret && registry_state.windowed) {
		ret = registry_open_windows_locked(&vmas, &ext, &opened);
		/* Inside the windows it opened: recorded as any pin there is. */
		if (ret > 0 && !pl) {
			ret = pin_in_windows(addr, len, device_faults);
			if (ret != -EAGAIN) {
				if (ret) {	/* nothing changed: neither may the windows */
					registry_lock();
					registry_close_opened_locked(&opened);
					registry_unlock();
				}
				free(vmas.v);
				return ret;
			}
			ret = 1;
		}
		if (ret > 0) {
			/* The windows' marks moved VMA bounds the marking reads. */
			vmas.n = 0;
			ret = describe_range(addr, len, &vmas, &ext);
		}
	}
	/* Parked registrations this pin covers whole, or shares pages with:
	 * see registry_deferred.c.  (The lock was let go in pin_in_windows().) */
	if (!ret)
		registry_tc_park_back_locked(addr, len, ext.start, ext.end);
	if (!ret && registry_state.parked.nr_live) {
		ret = registry_unpark_within_locked(&ext);
		if (ret > 0) {
			/* Their unmarking moved VMA bounds the marking reads. */
			vmas.n = 0;
			ret = describe_range(addr, len, &vmas, &ext);
		}
	}
	if (!ret)
		ret = count_and_mark_locked(addr, len, &vmas, &ext);
	if (!ret && registry_state.parked.nr_live)
		registry_note_parked_overlap_locked(&ext);
	/* Counted by a window already open: trusted like a revival. */
	if (!ret && trusted)
		registry_trust_until_fork_locked(&ext);
	if (ret)
		registry_close_opened_locked(&opened);
	/* Parked registrations and windows hold VMA splits: give them back and retry once. */
	if (ret == -ENOMEM && (registry_any_parked() || registry_state.windows.n) &&
	    !registry_flush_all_locked()) {
		vmas.n = 0;
		ret = describe_range(addr, len, &vmas, &ext);
		if (!ret)
			ret = count_and_mark_locked(addr, len, &vmas, &ext);
	}
	protect = !registry_state.unprotected;
	registry_unlock();
	if (ret)
		goto out;

	if (protect && !device_faults)
		ret = prefault(&vmas, &ext, pl, &faulted, &cow_unbroken);
	registry_lock();
	if (ret) {
		drop_locked(addr, len, &ext);
		registry_close_opened_locked(&opened);
	} else {
		lifetime_pinned_locked(addr, len, &ext);
	}
	registry_state.prefaulted_pages += faulted;
	registry_state.cow_unbroken_pages += cow_unbroken;
	registry_unlock();
out:
	free(vmas.v);
	return ret;
}

int registry_pin(uintptr_t addr, size_t len)
{
	return pin(addr, len, NULL, false);
}

int registry_pin_device_faults(uintptr_t addr, size_t len)
{
	return pin(addr, len, NULL, true);
}

int registry_pin_placed(uintptr_t addr, size_t len, const struct pin_placement *pl)
{
	return pin(addr, len, pl, false);
}

/*
 * A pin of this thread's inside windows, released a second time: it goes
 * back to wregs and the unpin goes on as a release seen before, so that it
 * is counted and parked (registry_unpin_in_windows_locked()).  0, or
 * -ENOENT when that cannot be (not deferring, its windows closed since,
 * no memory): it is simply gone, as a release inside windows is.
 */
static int repark_window_pin_locked(uintptr_t addr, size_t len, const struct reg_extent *ext)
{
	struct reg_extent now;

	if (!registry_state.defer_unmark || !registry_windows_cover(addr, len, &now) ||
	    reg_table_add(&registry_state.wregs, addr, len, ext))
		return -ENOENT;
	recent_set_add(&registry_state.unpinned, addr, len);
	return 0;
}

static int unpin(uintptr_t addr, size_t len, bool may_park)
{
	struct reg_extent ext;
	int ret;

	/* Pinned inside windows by this thread, or revived in its cache: no registry lock. */
	ret = registry_tc_unpin_in_windows(addr, len, &ext);
	if (!ret || (ret > 0 && !may_park))
		return 0;
	if (ret < 0 && may_park && !registry_tc_park(addr, len))
		return 0;
	registry_lock();
	/* Released twice: back in wregs, still live, for the locked path to park it. */
	if (ret > 0 && repark_window_pin_locked(addr, len, &ext)) {
		registry_unlock();
		return 0;
	}
	if (stuck.n)
		retry_stuck_locked();
	/* A registration already reported violated goes first (registry_lifetime.c). */
	ret = registry_unpin_violated_locked(addr, len);
	if (ret != -ENOENT)
		goto out;
	may_park = may_park && registry_state.defer_unmark && registry_marks_locked();
	ret = reg_table_find(&registry_state.regs, addr, len, &ext);
	/* Pinned inside windows by another thread: its cache gives it up. */
	if (ret == -ENOENT && atomic_load(&registry_state.wheld) &&
	    registry_tc_settle_windows_locked())
		ret = -ENOMEM;
	if (ret == -ENOENT && registry_state.wregs.nr_live) {
		ret = registry_unpin_in_windows_locked(addr, len, may_park);
		if (ret != -EAGAIN)
			goto out;
		ret = reg_table_find(&registry_state.regs, addr, len, &ext);	/* settled */
	}
	/* Pinned, or revived, in a thread's cache (another thread's, or one
	 * that was not to park): back to the table. */
	if (ret == -ENOENT && registry_state.nr_held) {
		(void)registry_settle_threads_locked();
		ret = reg_table_find(&registry_state.regs, addr, len, &ext);
		if (ret == -ENOENT && registry_tc_stranded_locked(addr, len))
			ret = -ENOMEM;	/* it could not move back: nothing changed */
	}
	if (!ret)
		ret = range_map_reserve(&registry_state.pages);
	if (!ret)
		ret = range_map_reserve(&registry_state.edges);
	if (!ret) {
		if (!may_park || registry_park_locked(addr, len, &ext))
			drop_locked(addr, len, &ext);
		lifetime_unpinned_locked(&ext);
	}
out:
	if (!ret && registry_state.windows.n)
		registry_tc_note_released_locked(addr, len);
	registry_unlock();
	return ret;
}

int registry_unpin(uintptr_t addr, size_t len)
{
	return unpin(addr, len, true);
}

int registry_unpin_now(uintptr_t addr, size_t len)
{
	return unpin(addr, len, false);
}

int registry_set_policy(enum safepin_policy policy)
{
	int ret = 0;

	registry_lock();
	/* Parked marks follow the old policy: flushed before it changes. */
	registry_settle_threads();
	if (registry_state.regs.nr_live || registry_state.wregs.nr_live || registry_state.nr_held)
		ret = -EBUSY;
	else if (!(ret = registry_flush_all_locked()))
		registry_state.policy = policy;
	registry_unlock();
	return ret;
}

enum safepin_policy registry_policy(void)
{
	enum safepin_policy p;

	registry_lock();
	p = registry_state.policy;
	registry_unlock();
	return p;
}

void registry_count_failure(void)
{
	registry_lock();
	registry_state.failures++;
	registry_unlock();
}

void registry_read_stats(struct safepin_stats *out)
{
	uint64_t held_live, held_parked;

	registry_lock();
	registry_tc_count_locked(&held_live, &held_parked);
	out->live_registrations = registry_state.regs.nr_live + registry_state.wregs.nr_live +
				  held_live;
	out->pages_marked = registry_state.pages_marked;
	out->madvise_calls = registry_state.madvise_calls;
	out->prefaulted_pages = registry_state.prefaulted_pages;
	out->cow_unbroken_pages = registry_state.cow_unbroken_pages;
	out->failures = registry_state.failures;
	out->parked_registrations = registry_state.parked.nr_live + held_parked;
	out->revived_registrations = registry_state.revived;
	registry_unlock();
}
