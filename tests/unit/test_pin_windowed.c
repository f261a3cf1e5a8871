// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * SAFEPIN_UNMARK_WINDOWED: a registration in private anonymous memory
 * marks the whole 2 MiB blocks it covers in part ("windows"); later
 * registrations inside make no madvise() and no pre-fault of present
 * pages, and releases make none either.  Every fork() still sees exactly
 * the live registrations: the prepare handler closes the windows.  What a
 * raw clone() sees, and the application's own marks, are pinned down too.
 *
 * The pictures show one character per 256 KiB (8 per block) of blocks
 * 0-3 of a 2 MiB-aligned region strictly inside one mapping: 'W' an open
 * window (WIPEONFORK), 'D' marked DONTFORK, '.' neither.
 */
#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "vm.h"

#define BLOCK (2ul << 20)
#define NBLOCKS 4
#define STRIDE (BLOCK / 8)

static char *map;	/* NBLOCKS + 2 blocks, plus slack to align */
static size_t map_len;
static char *blk;	/* block 0: 2 MiB aligned, a block of margin on both sides */

static int setup(void **state)
{
	(void)state;
	map_len = (NBLOCKS + 3) * BLOCK;
	map = map_anon(map_len, PROT_READ | PROT_WRITE, 0);
	/* Same 4 KiB pages as the library's windows expect everywhere. */
	assert_int_equal(madvise(map, map_len, MADV_NOHUGEPAGE), 0);
	memset(map, 0x5a, map_len);
	blk = (char *)(((uintptr_t)map + BLOCK - 1) & ~(BLOCK - 1)) + BLOCK;
	assert_int_equal(safepin_set_unmark(SAFEPIN_UNMARK_WINDOWED), 0);
	assert_int_equal(safepin_get_unmark(), SAFEPIN_UNMARK_WINDOWED);
	return 0;
}

/* Leaving the mode closes the windows: nothing is left marked or counted. */
static int teardown(void **state)
{
	char marks[NBLOCKS * 8 + 1];

	(void)state;
	assert_immediate_leaves_nothing();
	fork_marks_stride(blk, NBLOCKS * 8, STRIDE, marks);
	assert_string_equal(marks, "................................");
	assert_int_equal(munmap(map, map_len), 0);
	return 0;
}

static void assert_blocks(const char *expect)
{
	char marks[NBLOCKS * 8 + 1];

	fork_marks_stride(blk, NBLOCKS * 8, STRIDE, marks);
	assert_string_equal(marks, expect);
}

static void pin(size_t off, size_t len)
{
	assert_int_equal(safepin_pin(blk + off, len, 0), 0);
}

static void unpin(size_t off, size_t len)
{
	assert_int_equal(safepin_unpin(blk + off, len), 0);
}

/* One madvise() marks the block; then random ranges inside cost none. */
static void test_ranges_in_a_window_make_no_syscall_that_marks(void **state)
{
	struct safepin_stats before, s;
	uint64_t rng = 0x9e3779b97f4a7c15ull;

	(void)state;
	before = stats_now();
	pin(BLOCK + 5 * PAGE, 3 * PAGE);
	s = stats_now();
	assert_int_equal(s.madvise_calls, before.madvise_calls + 1);
	assert_int_equal(s.pages_marked, BLOCK / PAGE);
	assert_blocks("........WWWWWWWW................");
	unpin(BLOCK + 5 * PAGE, 3 * PAGE);
	assert_blocks("........WWWWWWWW................");	/* the window stays */

	before = stats_now();
	for (int i = 0; i < 1000; i++) {
		size_t np, first;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		np = 1 + rng % 16;
		first = (rng >> 8) % (BLOCK / PAGE - np);
		pin(BLOCK + first * PAGE, np * PAGE);
		assert_int_equal(stats_now().live_registrations, 1);
		unpin(BLOCK + first * PAGE, np * PAGE);
	}
	s = stats_now();
	assert_int_equal(s.madvise_calls, before.madvise_calls);
	assert_int_equal(s.prefaulted_pages, before.prefaulted_pages);
	assert_int_equal(s.live_registrations, 0);
	assert_int_equal(s.pages_marked, BLOCK / PAGE);
	/* A release left nothing live behind: it cannot be released again. */
	assert_int_equal(safepin_unpin(blk + BLOCK, PAGE), -ENOENT);
	assert_int_equal(errno, ENOENT);
}

/*
 * A fork whose child is gone leaves every present page write-protected,
 * though pagemap calls it ours alone, which is all a pin inside a window
 * checks.  The window opening after that fork write-faults its present
 * pages: a pin inside leaves nothing for a CPU write to copy away.
 */
static void test_window_after_fork_write_faults_its_pages(void **state)
{
	struct safepin_stats before;

	(void)state;
	skip_if_faults_uncountable();
	kill_child(fork_sleeper());
	assert_true(pagemap_entry(blk + BLOCK + 100 * PAGE) & PM_EXCLUSIVE);
	pin(BLOCK, PAGE);				/* opens the window */
	before = stats_now();
	pin(BLOCK + 100 * PAGE, 8 * PAGE);		/* inside: no pre-fault */
	assert_int_equal(stats_now().prefaulted_pages, before.prefaulted_pages);
	assert_int_equal(write_faults(blk + BLOCK + 100 * PAGE, 8 * PAGE), 0);
	/* Block 2 opened no window: its pages still fault, the measure works. */
	assert_int_equal(write_faults(blk + 2 * BLOCK, 8 * PAGE), 8);
	unpin(BLOCK + 100 * PAGE, 8 * PAGE);
	unpin(BLOCK, PAGE);
}

/* A range over two blocks opens both; the neighbours merge into one VMA. */
static void test_range_over_two_blocks_opens_both(void **state)
{
	uintptr_t start, end;

	(void)state;
	pin(2 * BLOCK - 2 * PAGE, 4 * PAGE);
	assert_blocks("........WWWWWWWWWWWWWWWW........");
	assert_true(vma_bounds(blk + BLOCK, &start, &end));
	assert_int_equal(start, (uintptr_t)blk + BLOCK);
	assert_int_equal(end, (uintptr_t)blk + 3 * BLOCK);
	unpin(2 * BLOCK - 2 * PAGE, 4 * PAGE);
}

/* fork() closes the windows first: the child sees exactly the live registrations. */
static void test_fork_sees_exactly_live_ranges(void **state)
{
	const void *around[] = { blk + BLOCK, blk + BLOCK + 4 * PAGE, blk + 2 * BLOCK - PAGE };
	struct safepin_stats s;

	(void)state;
	pin(BLOCK + 5 * PAGE, 3 * PAGE);	/* opens the window */
	pin(BLOCK + 100 * PAGE, 8 * PAGE);	/* inside: no madvise */
	unpin(BLOCK + 5 * PAGE, 3 * PAGE);
	assert_true(child_segfaults_at(blk + BLOCK + 100 * PAGE));
	assert_int_equal(child_reads(around, 3, 0x5a), 1);
	assert_false(child_segfaults_at(blk + BLOCK + 5 * PAGE));
	s = stats_now();
	assert_int_equal(s.pages_marked, 8);
	assert_int_equal(s.live_registrations, 1);
	/* After the fork only the live range is marked; the next pin opens the window again. */
	assert_true(vma_has_flag(blk + BLOCK + 100 * PAGE, "dc"));
	assert_false(vma_has_flag(blk + BLOCK + 99 * PAGE, "dc"));
	assert_false(vma_has_flag(blk + BLOCK + 108 * PAGE, "dc"));
	pin(BLOCK + 200 * PAGE, PAGE);
	assert_blocks("........WWWWWWWW................");
	unpin(BLOCK + 200 * PAGE, PAGE);
	unpin(BLOCK + 100 * PAGE, 8 * PAGE);
}

/* Partial first and last pages inside a window: the child gets their other bytes. */
static void test_sub_page_range_in_window_keeps_child_bytes(void **state)
{
	char *p = blk + BLOCK + 10 * PAGE;
	const void *edge[] = { p + 50, p + PAGE + 3000 };

	(void)state;
	pin(BLOCK + PAGE, PAGE);	/* opens the window */
	unpin(BLOCK + PAGE, PAGE);
	assert_int_equal(safepin_pin(p + 100, PAGE + 200, 0), 0);
	assert_int_equal(child_reads(edge, 2, 0x5a), 1);
	assert_true(vma_has_flag(p, "dc"));
	assert_int_equal(safepin_unpin(p + 100, PAGE + 200), 0);
}

/* Discarded pages in a window are faulted in again before the pin. */
static void test_absent_pages_in_window_are_faulted_in(void **state)
{
	struct safepin_stats before, s;
	char *p = blk + BLOCK + 40 * PAGE;

	(void)state;
	pin(BLOCK, PAGE);
	unpin(BLOCK, PAGE);
	assert_int_equal(madvise(p, 4 * PAGE, MADV_DONTNEED), 0);
	assert_false(pagemap_entry(p) & PM_PRESENT);
	before = stats_now();
	assert_int_equal(safepin_pin(p, 4 * PAGE, 0), 0);
	s = stats_now();
	assert_int_equal(s.madvise_calls, before.madvise_calls);	/* still no marking */
	assert_int_equal(s.prefaulted_pages, before.prefaulted_pages + 4);
	for (int i = 0; i < 4; i++)
		assert_true((pagemap_entry(p + i * PAGE) & (PM_PRESENT | PM_EXCLUSIVE)) ==
			    (PM_PRESENT | PM_EXCLUSIVE));
	assert_int_equal(safepin_unpin(p, 4 * PAGE), 0);
}

/* A device write pin faults its pages itself: inside a window nothing is read or faulted. */
static void test_device_writes_in_window_fault_nothing(void **state)
{
	struct safepin_stats before, s;
	char *p = blk + BLOCK + 60 * PAGE;

	(void)state;
	pin(BLOCK, PAGE);
	assert_int_equal(madvise(p, 4 * PAGE, MADV_DONTNEED), 0);
	before = stats_now();
	assert_int_equal(safepin_pin(p, 4 * PAGE, SAFEPIN_PIN_DEVICE_WRITES), 0);
	s = stats_now();
	assert_int_equal(s.madvise_calls, before.madvise_calls);
	assert_int_equal(s.prefaulted_pages, before.prefaulted_pages);
	assert_int_equal(s.live_registrations, before.live_registrations + 1);
	for (int i = 0; i < 4; i++)
		assert_false(pagemap_entry(p + i * PAGE) & PM_PRESENT);
	assert_int_equal(safepin_unpin(p, 4 * PAGE), 0);
	unpin(BLOCK, PAGE);
}

/*
 * The documented cost: a raw clone() (no atfork handler closes the windows)
 * gets zeros for an open window's pages, until safepin_flush().
 */
static void test_raw_clone_gets_zeros_in_windows_until_flush(void **state)
{
	(void)state;
	pin(BLOCK, PAGE);
	unpin(BLOCK, PAGE);
	assert_int_equal(raw_clone_reads(blk + BLOCK + 300 * PAGE), -1);
	assert_int_equal(raw_clone_reads(blk + 2 * BLOCK), 1);
	assert_int_equal(safepin_flush(), 0);
	assert_blocks("................................");
	assert_int_equal(raw_clone_reads(blk + BLOCK + 300 * PAGE), 1);
	assert_int_equal(stats_now().pages_marked, 0);
}

/* Shared memory is never copied on write: no window, no mark. */
static void test_shared_memory_opens_no_window(void **state)
{
	char *sh = mmap(NULL, 3 * BLOCK, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char *b = (char *)(((uintptr_t)sh + BLOCK - 1) & ~(BLOCK - 1));
	struct safepin_stats before = stats_now();

	(void)state;
	assert_true(sh != MAP_FAILED);
	memset(sh, 1, 3 * BLOCK);
	assert_int_equal(safepin_pin(b + PAGE, PAGE, 0), 0);
	assert_false(vma_has_flag(b, "dc"));
	assert_int_equal(stats_now().pages_marked, before.pages_marked);
	assert_int_equal(safepin_unpin(b + PAGE, PAGE), 0);
	assert_int_equal(stats_now().madvise_calls, before.madvise_calls);
	assert_int_equal(munmap(sh, 3 * BLOCK), 0);
}

/*
 * The application's own DONTFORK set before a window opens is never taken
 * for the library's: over part of a block (no window there) and over a
 * whole block (a window that only counts).
 */
static void test_application_dontfork_survives(void **state)
{
	(void)state;
	assert_int_equal(madvise(blk + BLOCK + 10 * PAGE, 4 * PAGE, MADV_DONTFORK), 0);
	pin(BLOCK + 12 * PAGE, 8 * PAGE);
	unpin(BLOCK + 12 * PAGE, 8 * PAGE);
	assert_int_equal(madvise(blk + 2 * BLOCK, BLOCK, MADV_DONTFORK), 0);
	pin(2 * BLOCK + 7 * PAGE, PAGE);
	unpin(2 * BLOCK + 7 * PAGE, PAGE);
	assert_int_equal(safepin_flush(), 0);
	assert_true(vma_has_flag(blk + BLOCK + 10 * PAGE, "dc"));
	assert_true(vma_has_flag(blk + BLOCK + 13 * PAGE, "dc"));
	assert_false(vma_has_flag(blk + BLOCK + 14 * PAGE, "dc"));
	assert_blocks("................DDDDDDDD........");
	assert_int_equal(stats_now().pages_marked, 0);
	assert_int_equal(madvise(blk + BLOCK, 2 * BLOCK, MADV_DOFORK), 0);
}

/*
 * The application's own DONTFORK set inside an open window, over memory it
 * registers and over memory it does not: a window marks WIPEONFORK, so
 * that DONTFORK is a flag of its own and outlives the window, the
 * registration and every fork.  (A window marking DONTFORK could not tell
 * it from its own mark and cleared it at the next fork.)
 */
static void test_application_dontfork_inside_open_window_survives(void **state)
{
	char *own = blk + BLOCK + 40 * PAGE, *reg = blk + BLOCK + 80 * PAGE;

	(void)state;
	pin(BLOCK + PAGE, PAGE);				/* opens the window */
	assert_int_equal(madvise(own, 4 * PAGE, MADV_DONTFORK), 0);
	assert_int_equal(madvise(reg, 4 * PAGE, MADV_DONTFORK), 0);
	pin(80 * PAGE + BLOCK, 2 * PAGE);			/* inside the application's mark */
	assert_true(child_segfaults_at(own));			/* fork: the windows close */
	assert_true(child_segfaults_at(own + 3 * PAGE));
	assert_true(child_segfaults_at(reg + 3 * PAGE));
	assert_false(child_segfaults_at(own + 4 * PAGE));
	unpin(80 * PAGE + BLOCK, 2 * PAGE);
	unpin(BLOCK + PAGE, PAGE);
	assert_int_equal(safepin_flush(), 0);
	assert_true(child_segfaults_at(own));
	assert_true(child_segfaults_at(reg));
	assert_true(child_segfaults_at(reg + 3 * PAGE));
	assert_false(child_segfaults_at(blk + BLOCK + PAGE));
	assert_int_equal(stats_now().pages_marked, 0);
	assert_int_equal(madvise(blk + BLOCK, BLOCK, MADV_DOFORK), 0);
}

/* A block left a VMA of its own between two windows opens without reading smaps. */
static void test_block_between_windows_needs_no_smaps(void **state)
{
	unsigned long reads;

	(void)state;
	pin(BLOCK + PAGE, PAGE);
	unpin(BLOCK + PAGE, PAGE);
	pin(3 * BLOCK + PAGE, PAGE);
	unpin(3 * BLOCK + PAGE, PAGE);
	assert_blocks("........WWWWWWWW........WWWWWWWW");
	reads = vm_smaps_reads();
	pin(2 * BLOCK + PAGE, PAGE);
	assert_int_equal(vm_smaps_reads(), reads);
	assert_blocks("........WWWWWWWWWWWWWWWWWWWWWWWW");
	unpin(2 * BLOCK + PAGE, PAGE);
	assert_int_equal(stats_now().pages_marked, 3 * BLOCK / PAGE);
}

/* Back to DEFERRED: the windows close, parked ranges stay parked. */
static void test_leaving_the_mode_closes_windows(void **state)
{
	(void)state;
	for (int i = 0; i < 2; i++) {	/* the second release parks */
		pin(BLOCK + 8 * PAGE, 2 * PAGE);
		unpin(BLOCK + 8 * PAGE, 2 * PAGE);
	}
	assert_int_equal(safepin_set_unmark(SAFEPIN_UNMARK_DEFERRED), 0);
	assert_int_equal(stats_now().parked_registrations, 1);
	assert_int_equal(stats_now().pages_marked, 2);
	assert_true(vma_has_flag(blk + BLOCK + 8 * PAGE, "dc"));
	assert_false(vma_has_flag(blk + BLOCK + 10 * PAGE, "dc"));
	assert_int_equal(safepin_flush(), 0);
	assert_int_equal(stats_now().pages_marked, 0);
}

static void on_violation(const struct safepin_violation *v, void *arg)
{
	(void)v;
	(void)arg;
}

/*
 * The monitor sees a window's memory unmapped under a live registration:
 * the window leaves the counts without a madvise() on what went away, and
 * the windows around it stay open.
 */
static void test_monitor_drops_unmapped_window(void **state)
{
	struct safepin_monitor_opts o = { .size = sizeof(o), .callback = on_violation };
	int ret;

	(void)state;
	ret = safepin_monitor_start(&o);
	if (ret) {
		print_message("skipped: userfaultfd unavailable here (errno %d)\n", errno);
		skip();
	}
	pin(BLOCK + 5 * PAGE, PAGE);
	pin(2 * BLOCK + 5 * PAGE, PAGE);
	assert_blocks("........WWWWWWWWWWWWWWWW........");
	assert_int_equal(munmap(blk + BLOCK, BLOCK), 0);
	for (int i = 0; i < 2000 && stats_now().pages_marked > BLOCK / PAGE; i++)
		usleep(1000);
	assert_int_equal(stats_now().pages_marked, BLOCK / PAGE);
	assert_blocks("........        WWWWWWWW........");
	/* The registration whose memory went is released without a complaint. */
	unpin(BLOCK + 5 * PAGE, PAGE);
	unpin(2 * BLOCK + 5 * PAGE, PAGE);
	assert_int_equal(safepin_monitor_stop(), 0);
	assert_true(mmap(blk + BLOCK, BLOCK, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == blk + BLOCK);
}

/*
 * Part of a window unmapped under a registration, under the monitor's eye:
 * the window leaves the counts, and a registration that lives on in the
 * rest of its block keeps its pages hidden from a child (DONTFORK now),
 * while the rest of the block goes back to what it was.
 */
static void test_dropped_window_keeps_live_marks(void **state)
{
	struct safepin_monitor_opts o = { .size = sizeof(o), .callback = on_violation };
	char *hole = blk + BLOCK + 200 * PAGE;
	char marks[NBLOCKS * 8 + 1];
	int ret;

	(void)state;
	ret = safepin_monitor_start(&o);
	if (ret) {
		print_message("skipped: userfaultfd unavailable here (errno %d)\n", errno);
		skip();
	}
	pin(BLOCK + PAGE, PAGE);			/* opens the window */
	pin(BLOCK + 300 * PAGE, 2 * PAGE);		/* lives on */
	pin(BLOCK + 202 * PAGE, PAGE);			/* goes with the unmapped memory */
	unpin(BLOCK + PAGE, PAGE);
	assert_blocks("........WWWWWWWW................");
	assert_int_equal(munmap(hole, 8 * PAGE), 0);
	for (int i = 0; i < 2000 && vma_has_flag(blk + BLOCK + 300 * PAGE, "wf"); i++)
		usleep(1000);
	assert_true(vma_has_flag(blk + BLOCK + 300 * PAGE, "dc"));
	assert_false(vma_has_flag(blk + BLOCK + 300 * PAGE, "wf"));
	assert_false(vma_has_flag(blk + BLOCK + 299 * PAGE, "dc"));
	assert_false(vma_has_flag(blk + BLOCK + 299 * PAGE, "wf"));
	assert_false(vma_has_flag(blk + BLOCK + 302 * PAGE, "wf"));
	assert_int_equal(stats_now().pages_marked, 2);
	unpin(BLOCK + 202 * PAGE, PAGE);		/* released without a complaint */
	unpin(BLOCK + 300 * PAGE, 2 * PAGE);
	assert_int_equal(safepin_monitor_stop(), 0);
	assert_true(mmap(hole, 8 * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == hole);
	memset(hole, 0x5a, 8 * PAGE);
	fork_marks_stride(blk, NBLOCKS * 8, STRIDE, marks);
	assert_string_equal(marks, "................................");
}

int main(void)
{
	const struct CMUnitTest tests[] = {
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
		T(test_ranges_in_a_window_make_no_syscall_that_marks),
		T(test_range_over_two_blocks_opens_both),
		T(test_window_after_fork_write_faults_its_pages),
		T(test_fork_sees_exactly_live_ranges),
		T(test_sub_page_range_in_window_keeps_child_bytes),
		T(test_absent_pages_in_window_are_faulted_in),
		T(test_device_writes_in_window_fault_nothing),
		T(test_raw_clone_gets_zeros_in_windows_until_flush),
		T(test_shared_memory_opens_no_window),
		T(test_application_dontfork_survives),
		T(test_application_dontfork_inside_open_window_survives),
		T(test_block_between_windows_needs_no_smaps),
		T(test_leaving_the_mode_closes_windows),
		T(test_monitor_drops_unmapped_window),
		T(test_dropped_window_keeps_live_marks),
#undef T
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
