// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Every fallible call of safepin_pin() and safepin_unpin() -- open and read
 * of /proc/self/smaps, realloc of the registry's temporary arrays, mmap of
 * the bookkeeping arena, madvise with each advice (DONTFORK, WIPEONFORK,
 * POPULATE_WRITE, POPULATE_READ, DOFORK, KEEPONFORK) -- fails in turn at
 * every position (fault.h).  Also the fork prepare handler's snapshot mmap.
 *
 * The buffer: private [0,6) | shared [6,8) | private [8,12) | read-only
 * private [12,16).  The pinned range, pages 1-9 with sub-page edges, makes
 * two marked runs and three pre-faulted VMAs.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault.h"
#include "registry_internal.h"
#include "vm.h"

#define R_ADDR (fault_buf + PAGE + 100)
#define R_LEN (8 * PAGE)
#define RO_ADDR (fault_buf + 11 * PAGE)	/* private rw page 11 + read-only 12-13 */
#define RO_LEN (3 * PAGE)

static int pin_r(void)
{
	return safepin_pin(R_ADDR, R_LEN, 0) ? errno : 0;
}

static int unpin_r(void)
{
	return safepin_unpin(R_ADDR, R_LEN) ? errno : 0;
}

static void must(int err, const char *what)
{
	if (err) {
		fprintf(stderr, "setup: %s: %s\n", what, strerror(err));
		_exit(1);
	}
}

static void undo_pin_r(void)
{
	must(unpin_r(), "unpin");
}

static void redo_pin_r(void)
{
	must(pin_r(), "pin");
}

static void nothing(void)
{
}

/* Registrations overlapping R on pages 0-1 and 9, and the arena mapped. */
static void overlapping(void)
{
	must(safepin_pin(fault_buf, 2 * PAGE, 0) ? errno : 0, "pin 0-1");
	must(safepin_pin(fault_buf + 9 * PAGE + 8, 8, 0) ? errno : 0, "pin 9");
}

static void zero_fill_overlapping(void)
{
	must(-safepin_set_policy(SAFEPIN_POLICY_ZERO_FILL), "policy");
	overlapping();
}

static void fallback_overlapping(void)
{
	vm_force_populate_fallback(true);
	overlapping();
}

static void overlapping_and_r(void)
{
	overlapping();
	redo_pin_r();
}

static void zero_fill_overlapping_and_r(void)
{
	zero_fill_overlapping();
	redo_pin_r();
}

static int pin_ro(void)
{
	return safepin_pin(RO_ADDR, RO_LEN, 0) ? errno : 0;
}

static void undo_pin_ro(void)
{
	must(safepin_unpin(RO_ADDR, RO_LEN) ? errno : 0, "unpin ro");
}

static int fork_op(void)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return errno;
	if (pid == 0)
		_exit(0);
	waitpid(pid, &status, 0);
	return 0;
}

/*
 * Windowed unmarking (registry_window.c) needs whole 2 MiB blocks of
 * private memory: wblk is block-aligned, with a block of margin on both
 * sides.  Opening a window is part of the pin: a failure anywhere leaves
 * no window behind.
 */
#define WBLOCK (2ul << 20)
static char *wmap, *wblk;

static int pin_w(void)
{
	return safepin_pin(wblk + 5 * PAGE + 100, 3 * PAGE, 0) ? errno : 0;
}

static void undo_pin_w(void)
{
	must(safepin_unpin(wblk + 5 * PAGE + 100, 3 * PAGE) ? errno : 0, "unpin w");
}

static void windowed(void)
{
	must(-safepin_set_unmark(SAFEPIN_UNMARK_WINDOWED), "windowed");
}

/* Back to the start state: released, and the window the pin opened closed. */
static void undo_pin_w_and_flush(void)
{
	undo_pin_w();
	must(-safepin_flush(), "flush");
}

/*
 * A window open on wblk's block, nothing live in it, and the pages pin_w()
 * takes written in this child (fault_run() forks it: they were shared
 * copy-on-write with the parent, which sends a pin to the full path).
 */
static void window_open(void)
{
	memset(wblk, 2, 16 * PAGE);
	windowed();
	must(safepin_pin(wblk + 300 * PAGE, PAGE, 0) ? errno : 0, "pin w2");
	must(safepin_unpin(wblk + 300 * PAGE, PAGE) ? errno : 0, "unpin w2");
}

/* Windowed, and a window opened and closed once: the bookkeeping memory is mapped. */
static void window_closed(void)
{
	window_open();
	must(-safepin_flush(), "flush");
}

static const struct scenario scenarios[] = {
	{ "windowed: pin opening a window", window_closed, pin_w, undo_pin_w_and_flush,
	  TOLERATE_NONE, true },
	{ "windowed: pin in an open window", window_open, pin_w, undo_pin_w, TOLERATE_NONE,
	  true },
	{ "pin, fresh registry", nothing, pin_r, undo_pin_r, TOLERATE_NONE, false },
	{ "pin over live registrations", overlapping, pin_r, undo_pin_r, TOLERATE_NONE, true },
	{ "pin, zero-fill policy", zero_fill_overlapping, pin_r, undo_pin_r, TOLERATE_NONE, true },
	{ "pin, pre-fault fallback", fallback_overlapping, pin_r, undo_pin_r, TOLERATE_NONE, true },
	{ "pin, read-only private", overlapping, pin_ro, undo_pin_ro, TOLERATE_NONE, true },
	{ "unpin", overlapping_and_r, unpin_r, redo_pin_r, TOLERATE_UNMARK, true },
	{ "unpin, zero-fill policy", zero_fill_overlapping_and_r, unpin_r, redo_pin_r,
	  TOLERATE_UNMARK, true },
	{ "fork with partial pages", overlapping_and_r, fork_op, nothing, TOLERATE_SNAPSHOT, true },
};

/*
 * An unmarking madvise that fails (at the vm.max_map_count limit, say) must
 * not leave a mark nobody owns: the pages stay counted as the library's, a
 * later pin of them adds no madvise and mistakes nothing for the
 * application's own DONTFORK, and the next unpin unmarks them.
 */
static int check_stuck_unmark_recovers(void)
{
	struct safepin_stats st = { .size = sizeof(st) };
	char *b = fault_buf;	/* pages 0-3: private anonymous */
	char marks[8];

	if (safepin_pin(b, 4 * PAGE, 0))
		return 1;
	fault_fail_next(FK_MADVISE, MADV_DOFORK);
	if (safepin_unpin(b, 4 * PAGE) || !fault_fired())
		return 2;
	fault_marks(b, 4, marks);
	safepin_get_stats(&st);
	printf("stuck: after a failed unmark: %s, live %lu, marked %lu\n", marks,
	       (unsigned long)st.live_registrations, (unsigned long)st.pages_marked);
	if (strcmp(marks, "DDDD") || st.live_registrations || st.pages_marked != 4)
		return 3;
	/* Pinning again: still ours (unmarked at its release), the retry unmarks nothing yet. */
	if (safepin_pin(b + PAGE, PAGE, 0) || safepin_unpin(b + PAGE, PAGE))
		return 4;
	fault_marks(b, 4, marks);
	safepin_get_stats(&st);
	printf("stuck: after the next pin and unpin: %s, marked %lu\n", marks,
	       (unsigned long)st.pages_marked);
	if (strcmp(marks, "....") || st.pages_marked)
		return 5;
	return 0;
}

/*
 * Deferred unmarking: parked ranges hold VMA splits, so a pin that meets
 * ENOMEM (the vm.max_map_count limit) unmarks them and tries once more.
 */
static int check_enomem_flushes_parked(void)
{
	struct safepin_stats st = { .size = sizeof(st) };
	char *b = fault_buf;	/* pages 0-3: private anonymous */
	char marks[8];

	if (safepin_set_unmark(SAFEPIN_UNMARK_DEFERRED))
		return 1;
	for (int i = 0; i < 2; i++)	/* the second unpin parks */
		if (safepin_pin(b, 2 * PAGE, 0) || safepin_unpin(b, 2 * PAGE))
			return 2;
	fault_fail_next_errno(FK_MADVISE, MADV_DONTFORK, ENOMEM);
	if (safepin_pin(b + 2 * PAGE, 2 * PAGE, 0) || !fault_fired())
		return 3;
	fault_marks(b, 4, marks);
	safepin_get_stats(&st);
	printf("enomem: after a pin that met ENOMEM with a parked range: %s, live %lu, "
	       "parked %lu\n", marks, (unsigned long)st.live_registrations,
	       (unsigned long)st.parked_registrations);
	if (strcmp(marks, "..DD") || st.live_registrations != 1 || st.parked_registrations)
		return 4;
	if (safepin_unpin(b + 2 * PAGE, 2 * PAGE) ||
	    safepin_set_unmark(SAFEPIN_UNMARK_IMMEDIATE))
		return 5;
	fault_marks(b, 4, marks);
	return strcmp(marks, "....") ? 6 : 0;
}

static struct safepin_stats stats_now(void)
{
	struct safepin_stats st = { .size = sizeof(st) };

	if (safepin_get_stats(&st))
		abort();
	return st;
}

/*
 * Closing a window trades its WIPEONFORK for DONTFORK on the pages a live
 * registration holds.  When that madvise() fails, the pages keep the
 * window's mark (still protected: a child gets zeros there), nothing else
 * of the block stays marked, the failure is counted, and the release
 * later clears the mark it did get.  Pages 8-40 of wblk's block.
 */
static int check_window_close_keeps_registered(void)
{
	char *p = wblk + 8 * PAGE, marks[40];
	struct safepin_stats before;

	if (safepin_set_unmark(SAFEPIN_UNMARK_WINDOWED) || safepin_pin(p + 4 * PAGE, 2 * PAGE, 0))
		return 1;
	fault_marks(p, 32, marks);
	if (strcmp(marks, "WWWWWWWWWWWWWWWWWWWWWWWWWWWWWWWW"))
		return 2;
	before = stats_now();
	fault_fail_next(FK_MADVISE, MADV_DONTFORK);
	if (safepin_flush() || !fault_fired())
		return 3;
	fault_marks(p, 32, marks);
	printf("window close, DONTFORK failing: %s, failures +%lu, marked %lu\n", marks,
	       (unsigned long)(stats_now().failures - before.failures),
	       (unsigned long)stats_now().pages_marked);
	if (strcmp(marks, "....WW..........................") ||
	    stats_now().failures != before.failures + 1 || stats_now().pages_marked != 2)
		return 4;
	if (safepin_unpin(p + 4 * PAGE, 2 * PAGE))
		return 5;
	fault_marks(p, 32, marks);
	if (strcmp(marks, "................................") || stats_now().pages_marked)
		return 6;
	/* Without the failure: the registration's own DONTFORK, and nothing else. */
	if (safepin_pin(p + 4 * PAGE, 2 * PAGE, 0) || safepin_flush())
		return 7;
	fault_marks(p, 32, marks);
	if (strcmp(marks, "....DD..........................") || stats_now().pages_marked != 2)
		return 8;
	if (safepin_unpin(p + 4 * PAGE, 2 * PAGE) || safepin_set_unmark(SAFEPIN_UNMARK_IMMEDIATE))
		return 9;
	fault_marks(p, 32, marks);
	return strcmp(marks, "................................") ? 10 : 0;
}

/* Run @check in a child, on a registry of its own (fresh counts, arena and
 * set of recently unpinned ranges); its return value, or -1. */
static int in_child(int (*check)(void))
{
	int status;
	pid_t pid;

	fflush(NULL);
	pid = fork();
	if (pid < 0)
		return -1;
	if (pid == 0)
		_exit(check());
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status))
		return -1;
	return WEXITSTATUS(status);
}

/* Pin and unpin [first, last) of fault_buf twice: deferred, the second unpin parks it. */
static int park(size_t first, size_t last)
{
	for (int i = 0; i < 2; i++)
		if (safepin_pin(fault_buf + first * PAGE, (last - first) * PAGE, 0) ||
		    safepin_unpin(fault_buf + first * PAGE, (last - first) * PAGE))
			return -1;
	return 0;
}

/* Run @fn with stderr going to @log (NUL terminated, truncated to @size). */
static int with_stderr_to(char *log, size_t size, int (*fn)(void))
{
	int fds[2], saved, ret;
	ssize_t n;

	fflush(stderr);
	if (pipe(fds) || (saved = dup(2)) < 0 || dup2(fds[1], 2) < 0)
		abort();
	ret = fn();
	fflush(stderr);
	dup2(saved, 2);
	close(saved);
	close(fds[1]);
	n = read(fds[0], log, size - 1);
	log[n > 0 ? n : 0] = '\0';
	close(fds[0]);
	return ret;
}

static int flush_op(void)
{
	return safepin_flush() ? errno : 0;
}

/* Pin pages [0,4) of fault_buf, over the parked [0,2). */
static int pin_over_parked(void)
{
	return safepin_pin(fault_buf, 4 * PAGE, 0) ? errno : 0;
}

static bool same_counts(const struct safepin_stats *a, const struct safepin_stats *b)
{
	return a->live_registrations == b->live_registrations &&
	       a->parked_registrations == b->parked_registrations &&
	       a->pages_marked == b->pages_marked && a->madvise_calls == b->madvise_calls;
}

/*
 * [0,2) of fault_buf parked, then the page counts out of bookkeeping
 * memory.  On NPIN pages elsewhere, NPIN one-page registrations and one
 * over all of them: the page counts hold one run of count 2, and each
 * unpin of every other one-page registration adds breakpoints, which fill
 * the B-tree's leaves until they split with spare nodes.  With node
 * allocation failing from then on, those unpins use up the spare nodes,
 * which cannot be topped up again, until fewer are left than a
 * range_map_sub() may need.  Return 0, 1 (setup failed) or 2 (an unpin
 * failed); the caller disarms and unhooks.
 */
#define NPIN 1024
static int park_then_exhaust_nodes(void)
{
	char *d = mmap(NULL, NPIN * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS,
		       -1, 0);

	if (d == MAP_FAILED || safepin_set_unmark(SAFEPIN_UNMARK_DEFERRED) || park(0, 2))
		return 1;
	for (size_t i = 0; i < NPIN; i++)
		if (safepin_pin(d + i * PAGE, PAGE, 0))
			return 1;
	if (safepin_pin(d, NPIN * PAGE, 0))
		return 1;
	fault_hook_node_alloc(&registry_state.pages.alloc);
	fault_fail_calls(FK_NODE, 0, 1, INT_MAX, 0);
	for (size_t i = 0; i < NPIN &&
	     registry_state.pages.nr_spare >= range_map_spares_wanted(&registry_state.pages);
	     i += 2)
		if (safepin_unpin(d + i * PAGE, PAGE))
			return 2;
	return 0;
}

/*
 * Deferred unmarking, the flush out of bookkeeping memory (the arena's
 * mmap failing): range_map_reserve() of the page counts fails, the parked
 * ranges stay parked, counted and marked, the failure is logged and
 * counted, nothing else changes; the next flush that gets memory unmarks
 * them.  Tried from the fork prepare handler (no caller to tell: counted
 * once) and from safepin_flush() (ENOMEM; counted by the flush and by the
 * API's error return).
 */
static int check_flush_enomem_keeps_parked(void)
{
	struct safepin_stats s0, s1;
	char *b = fault_buf;	/* pages 0-5: private anonymous */
	char m0[8], m1[8], lay0[256], lay1[256], log[1024];
	int err, ret;

	ret = park_then_exhaust_nodes();
	if (ret)
		goto out;
	fault_marks(b, 6, m0);
	fault_layout(b, 6, lay0, sizeof(lay0));
	s0 = stats_now();
	printf("flush enomem: parked %s (%s), parked %lu, marked %lu, spare nodes %zu\n", m0,
	       lay0, (unsigned long)s0.parked_registrations, (unsigned long)s0.pages_marked,
	       registry_state.pages.nr_spare);
	if (strcmp(m0, "DD....") || s0.parked_registrations != 1 ||
	    registry_state.pages.nr_spare >= range_map_spares_wanted(&registry_state.pages)) {
		ret = 3;
		goto out;
	}
	/* The fork prepare handler's flush. */
	if (with_stderr_to(log, sizeof(log), fork_op) || !fault_fired()) {
		ret = 4;
		goto out;
	}
	fault_marks(b, 6, m1);
	fault_layout(b, 6, lay1, sizeof(lay1));
	s1 = stats_now();
	printf("flush enomem: after fork: %s (%s), parked %lu, marked %lu, failures +%lu\n",
	       m1, lay1, (unsigned long)s1.parked_registrations, (unsigned long)s1.pages_marked,
	       (unsigned long)(s1.failures - s0.failures));
	if (strcmp(m0, m1) || strcmp(lay0, lay1) || !same_counts(&s0, &s1) ||
	    s1.failures != s0.failures + 1 ||
	    !strstr(log, "out of memory unmarking parked registrations: 1 stay marked")) {
		printf("flush enomem: log: %s", log);
		ret = 5;
		goto out;
	}
	/* safepin_flush(): ENOMEM to the caller. */
	s0 = s1;
	err = with_stderr_to(log, sizeof(log), flush_op);
	fault_marks(b, 6, m1);
	fault_layout(b, 6, lay1, sizeof(lay1));
	s1 = stats_now();
	if (err != ENOMEM || strcmp(m0, m1) || strcmp(lay0, lay1) || !same_counts(&s0, &s1) ||
	    s1.failures != s0.failures + 2 ||
	    !strstr(log, "out of memory unmarking parked registrations: 1 stay marked")) {
		printf("flush enomem: safepin_flush: %d, %s (%s), failures +%lu, log: %s", err,
		       m1, lay1, (unsigned long)(s1.failures - s0.failures), log);
		ret = 6;
		goto out;
	}
	/* Memory again: the next flush unmarks them. */
	fault_disarm();
	if (safepin_flush()) {
		ret = 7;
		goto out;
	}
	fault_marks(b, 6, m1);
	s1 = stats_now();
	printf("flush enomem: flushed with memory: %s, parked %lu, marked %lu\n", m1,
	       (unsigned long)s1.parked_registrations, (unsigned long)s1.pages_marked);
	if (strcmp(m1, "......") || s1.parked_registrations ||
	    s1.pages_marked != s0.pages_marked - 2)
		ret = 8;
out:
	fault_disarm();
	fault_unhook_node_alloc(&registry_state.pages.alloc);
	if (safepin_set_unmark(SAFEPIN_UNMARK_IMMEDIATE))
		ret = ret ? ret : 9;
	return ret;
}

/*
 * A pin covering a parked registration first unmarks and drops it
 * (registry_unpark_within_locked()).  Out of bookkeeping memory there, and
 * in the flush it falls back to, the pin fails with ENOMEM and changes
 * nothing: the parked range stays parked, counted and marked, no VMA moves,
 * no madvise.  With memory again the same pin marks its whole extent.
 */
static int check_pin_over_parked_enomem_changes_nothing(void)
{
	struct safepin_stats s0, s1;
	char *b = fault_buf;	/* pages 0-5: private anonymous */
	char m0[8], m1[8], lay0[256], lay1[256], log[1024];
	int err, ret;

	ret = park_then_exhaust_nodes();
	if (ret)
		goto out;
	fault_marks(b, 6, m0);
	fault_layout(b, 6, lay0, sizeof(lay0));
	s0 = stats_now();
	if (strcmp(m0, "DD....") || s0.parked_registrations != 1) {
		ret = 3;
		goto out;
	}
	err = with_stderr_to(log, sizeof(log), pin_over_parked);
	fault_marks(b, 6, m1);
	fault_layout(b, 6, lay1, sizeof(lay1));
	s1 = stats_now();
	printf("pin over parked, enomem: %d, %s (%s), parked %lu, live %lu, marked %lu\n", err,
	       m1, lay1, (unsigned long)s1.parked_registrations,
	       (unsigned long)s1.live_registrations, (unsigned long)s1.pages_marked);
	if (err != ENOMEM || !fault_fired() || strcmp(m0, m1) || strcmp(lay0, lay1) ||
	    !same_counts(&s0, &s1)) {
		printf("pin over parked, enomem: log: %s", log);
		ret = 4;
		goto out;
	}
	/* Memory again: the parked one is dropped and the pin marks [0,4) whole. */
	fault_disarm();
	if (pin_over_parked()) {
		ret = 5;
		goto out;
	}
	fault_marks(b, 6, m1);
	fault_layout(b, 6, lay1, sizeof(lay1));
	s1 = stats_now();
	printf("pin over parked, with memory: %s (%s), parked %lu, live %lu\n", m1, lay1,
	       (unsigned long)s1.parked_registrations, (unsigned long)s1.live_registrations);
	if (strcmp(m1, "DDDD..") || s1.parked_registrations ||
	    s1.live_registrations != s0.live_registrations + 1)
		ret = 6;
out:
	fault_disarm();
	fault_unhook_node_alloc(&registry_state.pages.alloc);
	if (safepin_set_unmark(SAFEPIN_UNMARK_IMMEDIATE))
		ret = ret ? ret : 9;
	return ret;
}

/* The VMA layout of pages 0-5 and the stats after flushing three parked neighbours. */
struct flushed {
	char layout[256];
	uint64_t madvise_calls, pages_marked, failures, parked;
	int realloc_failed;
};

/* @fail_reallocs: how many reallocs fail from the first (the batch's), INT_MAX: all. */
static int flush_three(int fail_reallocs, struct flushed *f)
{
	struct safepin_stats s0, s1;
	char m[8];

	if (safepin_set_unmark(SAFEPIN_UNMARK_DEFERRED) || park(0, 2) || park(2, 4) || park(4, 6))
		return -1;
	fault_marks(fault_buf, 6, m);
	s0 = stats_now();
	if (strcmp(m, "DDDDDD") || s0.parked_registrations != 3)
		return -1;
	if (fail_reallocs)
		fault_fail_calls(FK_MALLOC, FAULT_REALLOC, 1, fail_reallocs, 0);
	if (safepin_flush())
		return -1;
	f->realloc_failed = fail_reallocs ? fault_fired_count() : 0;
	fault_disarm();
	s1 = stats_now();
	fault_layout(fault_buf, 6, f->layout, sizeof(f->layout));
	f->madvise_calls = s1.madvise_calls - s0.madvise_calls;
	f->pages_marked = s1.pages_marked;
	f->failures = s1.failures - s0.failures;
	f->parked = s1.parked_registrations;
	printf("flush, %d realloc(s) failing: %s madvise %lu, marked %lu, parked %lu\n",
	       f->realloc_failed, f->layout, (unsigned long)f->madvise_calls,
	       (unsigned long)f->pages_marked, (unsigned long)f->parked);
	return safepin_set_unmark(SAFEPIN_UNMARK_IMMEDIATE) ? -1 : 0;
}

/*
 * Deferred unmarking, the flush without memory for its batch of runs: each
 * run is unmarked on its own instead of coalesced with its neighbours.
 * Only the number of madvise() calls may tell: VMA flags, VMA bounds and
 * counts end as the batched flush and as immediate unmarking leave them.
 */
static int check_flush_unbatched_same_end_state(void)
{
	struct flushed batched, all, first;
	char imm[256];
	uint64_t marked_imm;

	/* Immediate unmarking of the same three neighbours. */
	for (size_t i = 0; i < 6; i += 2)
		if (safepin_pin(fault_buf + i * PAGE, 2 * PAGE, 0))
			return 1;
	for (size_t i = 0; i < 6; i += 2)
		if (safepin_unpin(fault_buf + i * PAGE, 2 * PAGE))
			return 1;
	fault_layout(fault_buf, 6, imm, sizeof(imm));
	marked_imm = stats_now().pages_marked;
	printf("immediate unmarking: %s marked %lu\n", imm, (unsigned long)marked_imm);
	if (flush_three(0, &batched) || flush_three(INT_MAX, &all) || flush_three(1, &first))
		return 2;
	if (strcmp(batched.layout, imm) || strcmp(all.layout, imm) || strcmp(first.layout, imm))
		return 3;
	if (batched.pages_marked != marked_imm || all.pages_marked != marked_imm ||
	    first.pages_marked != marked_imm || all.parked || first.parked || all.failures ||
	    first.failures)
		return 4;
	/* The paths taken: one madvise for the batch, one per run without it. */
	if (batched.madvise_calls != 1 || all.realloc_failed != 3 || all.madvise_calls != 3 ||
	    first.realloc_failed != 1 || first.madvise_calls != 2)
		return 5;
	return 0;
}

int main(void)
{
	int fails = 0, ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	/* Map the buffer (fault_run does it on first use) and lay it out. */
	fault_buf = mmap(NULL, FAULT_BUF_PAGES * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fault_buf == MAP_FAILED ||
	    mmap(fault_buf + 6 * PAGE, 2 * PAGE, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED ||
	    mprotect(fault_buf + 12 * PAGE, 4 * PAGE, PROT_READ))
		return 1;
	for (size_t i = 0; i < 12 * PAGE; i++)
		fault_buf[i] = (char)i;
	wmap = mmap(NULL, 4 * WBLOCK, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (wmap == MAP_FAILED || madvise(wmap, 4 * WBLOCK, MADV_NOHUGEPAGE))
		return 1;
	memset(wmap, 1, 4 * WBLOCK);
	wblk = (char *)(((uintptr_t)wmap + WBLOCK - 1) & ~(WBLOCK - 1)) + WBLOCK;
	/* The library initialises (and probes MADV_POPULATE_WRITE) once, here. */
	if (safepin_pin(fault_buf, PAGE, 0) || safepin_unpin(fault_buf, PAGE))
		return 1;
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		fails += fault_run(&scenarios[i]) < 0;
	if (check_stuck_unmark_recovers()) {
		printf("FAIL: a failed unmark left pages marked that nobody owns\n");
		fails++;
	}
	if (check_enomem_flushes_parked()) {
		printf("FAIL: ENOMEM with parked ranges did not give their VMAs back\n");
		fails++;
	}
	if ((ret = in_child(check_flush_enomem_keeps_parked))) {
		printf("check_flush_enomem_keeps_parked: %d\n", ret);
		printf("FAIL: a flush out of memory did not keep its parked ranges as they were\n");
		fails++;
	}
	if ((ret = in_child(check_pin_over_parked_enomem_changes_nothing))) {
		printf("check_pin_over_parked_enomem_changes_nothing: %d\n", ret);
		printf("FAIL: a pin over a parked range out of memory changed something\n");
		fails++;
	}
	if ((ret = in_child(check_flush_unbatched_same_end_state))) {
		printf("check_flush_unbatched_same_end_state: %d\n", ret);
		printf("FAIL: a flush without its batch ended unlike immediate unmarking\n");
		fails++;
	}
	if ((ret = in_child(check_window_close_keeps_registered))) {
		printf("check_window_close_keeps_registered: %d\n", ret);
		printf("FAIL: a window closing over a registration lost or leaked a mark\n");
		fails++;
	}
	fault_summary("test_fault_core");
	return fails ? 1 : 0;
}
