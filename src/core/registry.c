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
 */
#include <errno.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "arena.h"
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
#include "vm.h"

static struct {
	pthread_mutex_t lock;
	struct arena arena;
	struct range_map pages;		/* per page: registrations covering it */
	struct range_map edges;		/* per page: registrations it is a partial edge of */
	struct reg_table regs;
	struct reg_table parked;	/* unpinned, still counted and marked: see PARK_MAX */
	struct recent_set unpinned;	/* (addr, len) unmarked at an unpin lately */
	bool defer_unmark;
	struct edge_snapshot snapshot;	/* taken while a fork() is in progress */
	enum safepin_policy policy;
	bool unprotected;		/* test-only */
	uint64_t pages_marked;
	uint64_t madvise_calls;
	uint64_t prefaulted_pages;
	uint64_t cow_unbroken_pages;
	uint64_t failures;
	uint64_t revived;
} reg = { .lock = PTHREAD_ADAPTIVE_MUTEX_INITIALIZER_NP };

/* Runs whose unmarking failed: see keep_stuck_locked(). */
#define MAX_STUCK_RUNS 16

struct run_list {
	struct range_seg run[MAX_STUCK_RUNS];
	size_t n;
};

static struct run_list stuck;

/* Parked registrations pinned again since the last fork: see remark_revived_locked(). */
#define MAX_REVIVED 32

static struct {
	struct reg_extent ext[MAX_REVIVED];
	size_t n;
	bool overflow;		/* more than MAX_REVIVED: re-mark every live registration */
} revived;

/* Whole VMAs known to carry no mark of the application's: see mark_for(). */
#define CLEAN_VMAS 16

static struct {
	uintptr_t start[CLEAN_VMAS], end[CLEAN_VMAS];
	unsigned int next;
} clean_vmas;

void registry_init(void)
{
	struct node_alloc alloc;

	arena_init(&reg.arena);
	/* Probe MADV_POPULATE_WRITE now, not inside the first pin (whose
	 * pre-fault may skip pages pagemap shows ready already). */
	(void)vm_has_populate();
	alloc = arena_node_alloc(&reg.arena);
	range_map_init(&reg.pages, &alloc);
	range_map_init(&reg.edges, &alloc);
	reg_table_init(&reg.regs, &alloc);
	reg_table_init(&reg.parked, &alloc);
	reg.policy = config_default_policy();
	reg.defer_unmark = config_default_unmark() == SAFEPIN_UNMARK_DEFERRED;
	/* Only an experiment on this kernel may allow marking nothing. */
	if (reg.policy == SAFEPIN_POLICY_KERNEL_COPY &&
	    !(probe_copies_on_fork(false) && probe_copies_on_fork(true))) {
		sp_log(SP_LOG_ERROR, "SAFEPIN_POLICY=kernel-copy: this kernel was not shown to "
		       "copy pinned pages at fork; using dontfork");
		reg.policy = SAFEPIN_POLICY_DONTFORK;
	}
}

/* Whether this thread holds reg.lock (lifetime section: the shim's munmap). */
static _Thread_local bool reg_lock_held;

void registry_lock(void)
{
	pthread_mutex_lock(&reg.lock);
	reg_lock_held = true;
}

void registry_unlock(void)
{
	reg_lock_held = false;
	pthread_mutex_unlock(&reg.lock);
}

void registry_snapshot_edges(void)
{
	if (edge_snapshot_take(&reg.snapshot, &reg.edges, &reg.pages)) {
		reg.failures++;
		sp_log(SP_LOG_ERROR, "no memory to save partially registered pages: "
		       "the child will miss their unregistered bytes");
	}
}

void registry_release_edges(void)
{
	edge_snapshot_release(&reg.snapshot);
}

/* In the child, with reg.lock held by the forking thread (the only one left). */
void registry_reset_in_child(void)
{
	edge_snapshot_restore(&reg.snapshot);
	edge_snapshot_release(&reg.snapshot);
	/* The nodes are the parent's: drop them with the arena in one go. */
	range_map_forget(&reg.pages);
	range_map_forget(&reg.edges);
	reg_table_forget(&reg.regs);
	reg_table_forget(&reg.parked);
	recent_set_clear(&reg.unpinned);
	memset(&revived, 0, sizeof(revived));
	lifetime_forget_violated();
	stuck.n = 0;
	memset(&clean_vmas, 0, sizeof(clean_vmas));
	arena_release(&reg.arena);
	reg.pages_marked = 0;
	reg.madvise_calls = 0;
	reg.prefaulted_pages = 0;
	reg.cow_unbroken_pages = 0;
	reg.failures = 0;
	reg.revived = 0;
}

void registry_disable_protection(bool disable)
{
	registry_lock();
	reg.unprotected = disable;
	registry_unlock();
}

/* --- step 1: the VMAs of a range ------------------------------------- */

struct vma_list {
	struct vma_info *v;
	size_t n, cap;
	uintptr_t want;		/* next address that must be mapped */
};

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
	ext->start = align_down(addr, l->v[0].page_size);
	ext->end = align_up(addr + len, l->v[l->n - 1].page_size);
	ext->head_end = addr == ext->start ? ext->start : ext->start + l->v[0].page_size;
	ext->tail_start = addr + len == ext->end ? ext->end : ext->end - l->v[l->n - 1].page_size;
	if (ext->tail_start < ext->head_end) {	/* both edges on one page */
		ext->head_end = ext->end;
		ext->tail_start = ext->end;
	}
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

static void clean_vma_learn(const struct vma_info *v)
{
	if (!cacheable(v) || (v->flags & (VMA_DONTFORK | VMA_WIPEONFORK | VMA_IO)) ||
	    clean_vma_known(v))
		return;
	clean_vmas.start[clean_vmas.next] = v->start;
	clean_vmas.end[clean_vmas.next] = v->end;
	clean_vmas.next = (clean_vmas.next + 1) % CLEAN_VMAS;
}

static enum range_mark mark_for(const struct vma_info *v, uintptr_t start, uintptr_t end)
{
	if (reg.unprotected || reg.policy == SAFEPIN_POLICY_KERNEL_COPY)
		return RANGE_MARK_NONE;
	/* Shared memory is never copied on write: hiding it only hurts. */
	if (v->flags & VMA_SHARED)
		return RANGE_MARK_NONE;
	if (!(v->flags & VMA_VMFLAGS)) {
		/* Writable private anonymous or hugetlb memory: never VM_IO. */
		if (reg.policy == SAFEPIN_POLICY_DONTFORK && (v->flags & VMA_WRITE) &&
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
		return reg.policy == SAFEPIN_POLICY_ZERO_FILL && !(v->flags & VMA_HUGETLB) ?
		       RANGE_MARK_WIPEONFORK : RANGE_MARK_DONTFORK;
	}
	if (v->flags & VMA_IO)
		return RANGE_MARK_NONE;
	/* The application's own marking: not ours to add or remove. */
	if (v->flags & VMA_DONTFORK)
		return RANGE_MARK_NONE;
	if (reg.policy == SAFEPIN_POLICY_ZERO_FILL && !(v->flags & (VMA_FILE | VMA_HUGETLB)))
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
			clean_vma_learn(vma);
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
		mark = mark_for(v, pos, end);
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

static uint64_t base_pages(uintptr_t start, uintptr_t end)
{
	return (end - start) / vm_base_page_size();
}

/* Every marking and unmarking madvise() of the registry, counted. */
static int mark_madvise(uintptr_t start, uintptr_t end, enum range_mark mark, bool set)
{
	int ret;

	reg.madvise_calls++;
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
	ret = mark_madvise(seg->start, seg->end, seg->mark, set);
	if (ret) {
		sp_log(SP_LOG_ERROR, "madvise(%#lx-%#lx, %s) failed: errno %d",
		       (unsigned long)seg->start, (unsigned long)seg->end,
		       set ? "mark" : "unmark", -ret);
		return ret;
	}
	if (set)
		reg.pages_marked += base_pages(seg->start, seg->end);
	else
		reg.pages_marked -= base_pages(seg->start, seg->end);
	return 0;
}

/*
 * Runs whose unmarking failed (madvise can fail to split a VMA at the
 * vm.max_map_count limit).  They stay in the page counts with one count
 * held here, so the pages remain ours: a later pin of them takes no
 * madvise and does not mistake our mark for the application's, and each
 * later pin or unpin retries the unmarking.  Bounded: beyond it the pages
 * stay marked with nobody counting them (and stats.failures says so).
 * The list itself is declared with the registry state above.
 */

/* range_seg_fn for 1->0 runs; @ctx: a run_list collecting the failures, or NULL. */
static int unmark_run(void *ctx, const struct range_seg *seg)
{
	struct run_list *failed = ctx;

	if (!apply_mark(seg, false))
		return 0;
	reg.failures++;
	if (failed && failed->n < MAX_STUCK_RUNS)
		failed->run[failed->n++] = *seg;
	return 0;
}

/* Count the runs that are still marked again, on behalf of the stuck list. */
static void keep_stuck_locked(const struct run_list *failed)
{
	for (size_t i = 0; i < failed->n; i++) {
		const struct range_seg *run = &failed->run[i];

		if (stuck.n == MAX_STUCK_RUNS ||
		    range_map_add(&reg.pages, run->start, run->end, run, 1))
			continue;	/* cannot track it: it stays marked, uncounted */
		stuck.run[stuck.n++] = *run;
	}
}

/* Subtract @start..@end, unmarking what drops to 0; failures stay stuck. */
static void sub_and_unmark_locked(uintptr_t start, uintptr_t end)
{
	struct run_list failed = { .n = 0 };

	range_map_sub(&reg.pages, start, end, unmark_run, &failed);
	keep_stuck_locked(&failed);
}

static void retry_stuck_locked(void)
{
	struct run_list retry = stuck;

	stuck.n = 0;
	for (size_t i = 0; i < retry.n; i++)
		if (!range_map_reserve(&reg.pages))
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
	ret = range_map_gaps(&reg.edges, start, end, collect_gap, &g);
	return ret ? ret : range_map_add(&reg.edges, start, end, g.s, g.n);
}

static void edge_sub(uintptr_t start, uintptr_t end)
{
	if (start != end)
		range_map_sub(&reg.edges, start, end, NULL, NULL);
}

static int edges_add(const struct reg_extent *ext)
{
	int ret = edge_add(ext->start, ext->head_end);

	if (ret)
		return ret;
	ret = edge_add(ext->tail_start, ext->end);
	if (ret)
		edge_sub(ext->start, ext->head_end);
	return ret;
}

static void edges_sub(const struct reg_extent *ext)
{
	edge_sub(ext->start, ext->head_end);
	edge_sub(ext->tail_start, ext->end);
}

/* Caller holds reg.lock. Undo a registration already counted and marked. */
static void drop_locked(uintptr_t addr, size_t len, const struct reg_extent *ext)
{
	sub_and_unmark_locked(ext->start, ext->end);
	edges_sub(ext);
	reg_table_del(&reg.regs, addr, len, ext);
}

/* --- deferred unmarking ---------------------------------------------- */

/*
 * With SAFEPIN_UNMARK_DEFERRED, an unpin of an (addr, len) that was
 * unpinned before (reg.unpinned) parks its registration instead of
 * unmarking: the entry moves from reg.regs to reg.parked and its page
 * counts and marks stay.  A first unpin unmarks at once and only remembers
 * the key, so ranges that never come back (random I/O buffers) do not hold
 * VMA splits that make every other madvise() and lookup slower.  Pinning the same (addr, len) again takes it back
 * without a single system call: no VMA lookup, no madvise(), no pre-fault
 * (its pages stayed DONTFORK since they were faulted in, so no fork of any
 * kind can have shared them).  Parked registrations are unmarked, runs
 * coalesced, in the prepare handler of every fork(), when PARK_MAX are
 * parked, when a pin runs into ENOMEM (their VMA splits count against
 * vm.max_map_count) and on safepin_flush().  What this trusts, and what a
 * raw clone() sees: docs/deferred-unmarking.md.
 */
#define PARK_MAX 256

/*
 * 1->0 runs of the parked registrations being unmarked: gathered over all
 * of them, sorted and merged, so that neighbours and nested ranges cost one
 * madvise() per maximal run.  Without memory for the list a run is
 * unmarked on its own, which is correct, only not coalesced.
 */
struct unmark_batch {
	struct range_seg *run;
	size_t n, cap;
	struct run_list failed;
};

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
	ret = mark_madvise(run->start, run->end, run->mark, false);
	/* Unmapped since it was parked (legal once unpinned): no flag left to clear. */
	if (!ret || (ret == -ENOMEM && !range_mapped(run->start, run->end))) {
		reg.pages_marked -= base_pages(run->start, run->end);
		return;
	}
	sp_log(SP_LOG_ERROR, "madvise(%#lx-%#lx, unmark) failed: errno %d",
	       (unsigned long)run->start, (unsigned long)run->end, -ret);
	reg.failures++;
	if (b->failed.n < MAX_STUCK_RUNS)
		b->failed.run[b->failed.n++] = *run;
}

static int batch_run(void *ctx, const struct range_seg *seg)
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

static void batch_apply(struct unmark_batch *b)
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
}

struct reg_pick {
	uintptr_t start, end;		/* pick an entry whose extent meets [start, end) */
	uintptr_t addr;
	size_t len;
	struct reg_extent ext;
	bool found;
};

static int pick_entry(void *ctx, uintptr_t addr, size_t len, const struct reg_extent *ext,
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
 * Unmark every parked registration.  Return 0, or -ENOMEM when the page
 * map could not be split: those stay parked (counted and marked).
 */
static int flush_parked_locked(void)
{
	struct unmark_batch b = { .run = NULL };
	int ret = 0;

	while (reg.parked.nr_live) {
		struct reg_pick p = { .start = 0, .end = UINTPTR_MAX };

		(void)reg_table_walk(&reg.parked, pick_entry, &p);
		if (range_map_reserve(&reg.pages) || range_map_reserve(&reg.edges)) {
			ret = -ENOMEM;
			reg.failures++;
			sp_log(SP_LOG_ERROR, "out of memory unmarking parked registrations: "
			       "%zu stay marked", reg.parked.nr_live);
			break;
		}
		range_map_sub(&reg.pages, p.ext.start, p.ext.end, batch_run, &b);
		edges_sub(&p.ext);
		reg_table_del(&reg.parked, p.addr, p.len, &p.ext);
	}
	batch_apply(&b);
	keep_stuck_locked(&b.failed);
	return ret;
}

/* Unpin with deferred unmarking. Return 0, or -ENOENT / -ENOMEM: unmark now. */
static int park_locked(uintptr_t addr, size_t len, const struct reg_extent *ext)
{
	int ret;

	if (!recent_set_has(&reg.unpinned, addr, len)) {
		recent_set_add(&reg.unpinned, addr, len);
		return -ENOENT;
	}
	if (reg.parked.nr_live >= PARK_MAX)
		(void)flush_parked_locked();
	ret = reg_table_add(&reg.parked, addr, len, ext);
	if (!ret)
		reg_table_del(&reg.regs, addr, len, ext);
	return ret;
}

/* Pin of a parked (addr, len). Return 0, or -ENOENT / -ENOMEM: take the full path. */
static int revive_locked(uintptr_t addr, size_t len)
{
	struct reg_extent ext;
	int ret = reg_table_find(&reg.parked, addr, len, &ext);

	if (!ret)
		ret = reg_table_add(&reg.regs, addr, len, &ext);
	if (ret)
		return ret;
	reg_table_del(&reg.parked, addr, len, &ext);
	if (revived.n < MAX_REVIVED)
		revived.ext[revived.n++] = ext;
	else
		revived.overflow = true;
	reg.revived++;
	lifetime_pinned_locked(addr, len, &ext);
	return 0;
}

static int remark_seg(void *ctx, const struct range_seg *seg, unsigned int count)
{
	(void)ctx;
	(void)count;
	if (seg->mark != RANGE_MARK_NONE && mark_madvise(seg->start, seg->end, seg->mark, true)) {
		reg.failures++;
		sp_log(SP_LOG_ERROR, "re-marking %#lx-%#lx before fork failed",
		       (unsigned long)seg->start, (unsigned long)seg->end);
	}
	return 0;
}

static int remark_reg(void *ctx, uintptr_t addr, size_t len, const struct reg_extent *ext,
		      uint32_t refs, uint64_t cookie)
{
	(void)ctx;
	(void)addr;
	(void)len;
	(void)refs;
	(void)cookie;
	return range_map_walk_range(&reg.pages, ext->start, ext->end, remark_seg, NULL);
}

/*
 * A revived registration was trusted to still be the mapping that was
 * marked.  If the application unmapped it while it was parked and mapped
 * new memory at the same place, the new VMA carries no mark.  Before a
 * fork, apply the marks again: on an unchanged VMA the kernel sees equal
 * flags and changes nothing; on a new one it marks it.
 */
static void remark_revived_locked(void)
{
	if (revived.overflow)
		(void)reg_table_walk(&reg.regs, remark_reg, NULL);
	else
		for (size_t i = 0; i < revived.n; i++)
			(void)range_map_walk_range(&reg.pages, revived.ext[i].start,
						   revived.ext[i].end, remark_seg, NULL);
	revived.n = 0;
	revived.overflow = false;
}

void registry_before_fork_locked(void)
{
	if (reg.parked.nr_live)
		(void)flush_parked_locked();
	if (revived.n || revived.overflow)
		remark_revived_locked();
}

int registry_flush(void)
{
	int ret;

	registry_lock();
	ret = flush_parked_locked();
	registry_unlock();
	return ret;
}

int registry_set_unmark(enum safepin_unmark mode)
{
	int ret = 0;

	registry_lock();
	reg.defer_unmark = mode == SAFEPIN_UNMARK_DEFERRED;
	if (!reg.defer_unmark)
		ret = flush_parked_locked();
	registry_unlock();
	return ret;
}

enum safepin_unmark registry_unmark(void)
{
	enum safepin_unmark mode;

	registry_lock();
	mode = reg.defer_unmark ? SAFEPIN_UNMARK_DEFERRED : SAFEPIN_UNMARK_IMMEDIATE;
	registry_unlock();
	return mode;
}

/* The VMA of @l holding @addr. */
static const struct vma_info *vma_of(const struct vma_list *l, uintptr_t addr)
{
	for (size_t i = 0; i < l->n; i++)
		if (l->v[i].start <= addr && addr < l->v[i].end)
			return &l->v[i];
	return NULL;
}

/*
 * After MADV_DONTFORK on a MARK_PROBE run: was the VMA already DONTFORK
 * (the application's mark: count only) or did we mark it?  Unsure means
 * ours: unmarking later at worst clears a mark the application set, while
 * the reverse would leave a registered page unprotected.
 */
static enum range_mark resolve_probe(const struct vma_list *vmas, const struct range_seg *seg)
{
	const struct vma_info *was = vma_of(vmas, seg->start);
	struct vma_info now;

	if (was && !vm_vma_at(seg->start, &now) && now.start <= was->start &&
	    now.end >= was->end)
		return RANGE_MARK_NONE;
	return RANGE_MARK_DONTFORK;
}

static enum range_mark advice_mark(enum range_mark mark)
{
	return mark == MARK_PROBE ? RANGE_MARK_DONTFORK : mark;
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
		run.mark = advice_mark(run.mark);
		for (j = i + 1; j < b->n && b->s[j].start == b->s[j - 1].end &&
		     advice_mark(b->s[j].mark) == run.mark; j++)
			;
		run.end = b->s[j - 1].end;
		ret = mark_madvise(run.start, run.end, run.mark, true);
		if (ret) {
			sp_log(SP_LOG_ERROR, "madvise(%#lx-%#lx, mark) failed: errno %d",
			       (unsigned long)run.start, (unsigned long)run.end, -ret);
			break;
		}
		for (k = i; k < j; k++) {
			if (b->s[k].mark == MARK_PROBE)
				b->s[k].mark = resolve_probe(vmas, &b->s[k]);
			if (b->s[k].mark != RANGE_MARK_NONE)
				reg.pages_marked += base_pages(b->s[k].start, b->s[k].end);
		}
		i = j;
	}
	if (ret)
		for (k = 0; k < i; k++)
			apply_mark(&b->s[k], false);
	return ret;
}

static int count_and_mark_locked(uintptr_t addr, size_t len, struct vma_list *vmas,
				 const struct reg_extent *ext)
{
	struct seg_builder b = { .vmas = vmas };
	int ret;

	ret = range_map_gaps(&reg.pages, ext->start, ext->end, split_gap, &b);
	/*
	 * A 0->1 run no probe can decide, or a file mapping to pre-fault that
	 * may be VM_IO / VM_PFNMAP (no pages to fault in; only smaps says):
	 * read smaps, once, and redo.
	 */
	if (!ret && (b.need_vmflags || (!reg.unprotected && io_unknown(vmas)))) {
		ret = learn_vmflags(vmas);
		b.n = 0;
		b.vi = 0;
		if (!ret)
			ret = range_map_gaps(&reg.pages, ext->start, ext->end, split_gap, &b);
	}
	if (ret)
		goto out;
	ret = reg_table_add(&reg.regs, addr, len, ext);
	if (ret)
		goto out;
	ret = edges_add(ext);
	if (ret) {
		reg_table_del(&reg.regs, addr, len, ext);
		goto out;
	}
	ret = mark_segs(&b, vmas);
	if (!ret) {
		ret = range_map_add(&reg.pages, ext->start, ext->end, b.s, b.n);
		if (ret)	/* out of memory: unmark what mark_segs() marked */
			for (size_t k = 0; k < b.n; k++)
				apply_mark(&b.s[k], false);
	}
	if (ret) {
		edges_sub(ext);
		reg_table_del(&reg.regs, addr, len, ext);
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

int registry_pin(uintptr_t addr, size_t len)
{
	return registry_pin_placed(addr, len, NULL);
}

int registry_pin_placed(uintptr_t addr, size_t len, const struct pin_placement *pl)
{
	struct vma_list vmas = { 0 };
	struct reg_extent ext;
	uint64_t faulted = 0, cow_unbroken = 0;
	bool protect;
	int ret;

	registry_lock();
	if (stuck.n)
		retry_stuck_locked();
	if (!pl && reg.parked.nr_live && !revive_locked(addr, len)) {
		registry_unlock();
		return 0;
	}
	ret = describe_range(addr, len, &vmas, &ext);
	if (!ret)
		ret = count_and_mark_locked(addr, len, &vmas, &ext);
	/* Parked registrations hold VMA splits: give them back and retry once. */
	if (ret == -ENOMEM && reg.parked.nr_live && !flush_parked_locked()) {
		vmas.n = 0;
		ret = describe_range(addr, len, &vmas, &ext);
		if (!ret)
			ret = count_and_mark_locked(addr, len, &vmas, &ext);
	}
	protect = !reg.unprotected;
	registry_unlock();
	if (ret)
		goto out;

	if (protect)
		ret = prefault(&vmas, &ext, pl, &faulted, &cow_unbroken);
	registry_lock();
	if (ret)
		drop_locked(addr, len, &ext);
	else
		lifetime_pinned_locked(addr, len, &ext);
	reg.prefaulted_pages += faulted;
	reg.cow_unbroken_pages += cow_unbroken;
	registry_unlock();
out:
	free(vmas.v);
	return ret;
}

int registry_unpin(uintptr_t addr, size_t len)
{
	struct reg_extent ext;
	int ret;

	registry_lock();
	if (stuck.n)
		retry_stuck_locked();
	/* A registration already reported violated goes first (lifetime section). */
	ret = registry_unpin_violated_locked(addr, len);
	if (ret != -ENOENT)
		goto out;
	ret = reg_table_find(&reg.regs, addr, len, &ext);
	if (!ret)
		ret = range_map_reserve(&reg.pages);
	if (!ret)
		ret = range_map_reserve(&reg.edges);
	if (!ret) {
		if (!reg.defer_unmark || !registry_marks_locked() || park_locked(addr, len, &ext))
			drop_locked(addr, len, &ext);
		lifetime_unpinned_locked(&ext);
	}
out:
	registry_unlock();
	return ret;
}

int registry_set_policy(enum safepin_policy policy)
{
	int ret = 0;

	registry_lock();
	if (reg.regs.nr_live)
		ret = -EBUSY;
	else if (!(ret = flush_parked_locked()))	/* parked marks follow the old policy */
		reg.policy = policy;
	registry_unlock();
	return ret;
}

enum safepin_policy registry_policy(void)
{
	enum safepin_policy p;

	registry_lock();
	p = reg.policy;
	registry_unlock();
	return p;
}

void registry_count_failure(void)
{
	registry_lock();
	reg.failures++;
	registry_unlock();
}

void registry_read_stats(struct safepin_stats *out)
{
	registry_lock();
	out->live_registrations = reg.regs.nr_live;
	out->pages_marked = reg.pages_marked;
	out->madvise_calls = reg.madvise_calls;
	out->prefaulted_pages = reg.prefaulted_pages;
	out->cow_unbroken_pages = reg.cow_unbroken_pages;
	out->failures = reg.failures;
	out->parked_registrations = reg.parked.nr_live;
	out->revived_registrations = reg.revived;
	registry_unlock();
}

/* ===================================================================== *
 * Lifetime: registrations whose memory the application unmapped,        *
 * remapped or discarded before deregistering them (lifetime.h).         *
 * ===================================================================== */

/*
 * A violated registration leaves reg.regs for this list.  Its pages inside
 * the range the application took away are dropped from the counts at once
 * (unmarked with madvise only where the mapping is still there: a discard);
 * its other pages stay counted and marked, as "pieces", because the device
 * may still use them, until the application deregisters it.
 */
struct violated {
	struct violated *next;
	uintptr_t addr;
	size_t len;
	size_t n;			/* pieces still counted */
	struct range_seg *piece;	/* [start, end); mark unused */
};

static struct violated *violated_head;

bool registry_lock_held(void)
{
	return reg_lock_held;
}

enum safepin_policy registry_policy_locked(void)
{
	return reg.policy;
}

bool registry_marks_locked(void)
{
	return !reg.unprotected && reg.policy != SAFEPIN_POLICY_KERNEL_COPY;
}

int registry_set_cookie_locked(uintptr_t addr, size_t len, const struct reg_extent *ext,
			       uint64_t cookie)
{
	return reg_table_set_cookie(&reg.regs, addr, len, ext, cookie);
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

	return start < end && range_map_gaps(&reg.pages, start, end, whole_gap, &want) != 1;
}

static int drop_run(void *ctx, const struct range_seg *seg)
{
	const bool *gone = ctx;

	if (!*gone)
		return unmark_run(NULL, seg);	/* still mapped: give fork behaviour back */
	if (seg->mark != RANGE_MARK_NONE)	/* the mapping and its flags are gone */
		reg.pages_marked -= base_pages(seg->start, seg->end);
	return 0;
}

static void drop_counts(uintptr_t start, uintptr_t end, bool gone)
{
	if (start >= end)
		return;
	if (range_map_reserve(&reg.pages) ||
	    range_map_sub(&reg.pages, start, end, drop_run, &gone)) {
		reg.failures++;
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
 * Parked registrations meeting [start, end) leave: the application may
 * unmap or discard memory it no longer registers, and their pages there
 * must neither be trusted on a later pin nor unmarked on memory mapped
 * anew.  Their other pages are unmarked now.
 */
static void unpark_overlapping_locked(uintptr_t start, uintptr_t end, bool gone)
{
	for (;;) {
		struct reg_pick p = { .start = start, .end = end };

		(void)reg_table_walk(&reg.parked, pick_entry, &p);
		if (!p.found || range_map_reserve(&reg.edges))
			return;
		reg_table_del(&reg.parked, p.addr, p.len, &p.ext);
		drop_counts(p.ext.start, umin(p.ext.end, start), false);
		drop_counts(umax(p.ext.start, start), umin(p.ext.end, end), gone);
		drop_counts(umax(p.ext.start, end), p.ext.end, false);
		edges_sub(&p.ext);
	}
}

size_t registry_violation_locked(uintptr_t start, uintptr_t end, bool gone,
				 struct lt_hit *hits, size_t max)
{
	struct lt_collect c = { .start = start, .end = end };
	struct violated **tail = &violated_head;
	size_t total = 0;

	if (!registry_counted_locked(start, end))
		return 0;
	if (reg.parked.nr_live)
		unpark_overlapping_locked(start, end, gone);
	for (struct violated *v = violated_head; v; v = v->next) {
		if (cut_pieces(v, start, end, gone) > 0)
			add_hit(hits, max, &total, v->addr, v->len, true);
		tail = &v->next;
	}
	if (reg_table_walk(&reg.regs, lt_collect_one, &c)) {
		reg.failures++;
		sp_log(SP_LOG_ERROR, "lifetime: out of memory listing the registrations of "
		       "%#lx-%#lx: their counts are stale", (unsigned long)start, (unsigned long)end);
	}
	for (size_t i = 0; i < c.n; i++) {
		const struct reg_extent *ext = &c.r[i].ext;

		for (uint32_t ref = 0; ref < c.r[i].refs; ref++) {
			struct violated *v = calloc(1, sizeof(*v));
			struct range_seg *p = malloc(2 * sizeof(*p));

			if (!v || !p || range_map_reserve(&reg.edges)) {
				free(v);
				free(p);
				reg.failures++;
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
			edges_sub(ext);
			reg_table_del(&reg.regs, v->addr, v->len, ext);
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

	if (!registry_counted_locked(start & ~(uintptr_t)(vm_base_page_size() - 1), end))
		return 0;
	(void)reg_table_walk(&reg.regs, lt_collect_one, &c);
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
	int ret = reg_table_walk(&reg.regs, lt_collect_one, &c);

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
	return range_map_gaps(&reg.pages, start, end, fn, ctx);
}
