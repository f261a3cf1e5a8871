// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * SAFEPIN_UNMARK_DEFERRED: an unpin of a range unpinned before parks it
 * (still marked), the same range pinned again costs no madvise and no
 * pre-fault, a range seen once is unmarked at once, and every
 * fork() still sees exactly the live registrations: the prepare handler
 * unmarks the parked ranges and re-marks revived ones whose memory was
 * replaced meanwhile.  A raw clone() does not run that handler: what its
 * child sees is pinned down here too, as documented.
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

#define NPAGES 8

static char *arena;

#define pin_pages(first, last) pin_page_range(arena, first, last)
#define unpin_pages(first, last) unpin_page_range(arena, first, last)
#define assert_marks(expect) assert_page_marks(arena, NPAGES, expect)

/* Pin and unpin twice: the first unpin unmarks and remembers the range, the second parks it. */
static void park_pages(size_t first, size_t last)
{
	pin_pages(first, last);
	unpin_pages(first, last);
	pin_pages(first, last);
	unpin_pages(first, last);
}

static int setup(void **state)
{
	(void)state;
	arena = map_anon(NPAGES * PAGE, PROT_READ | PROT_WRITE, 0);
	memset(arena, 0x5a, NPAGES * PAGE);
	assert_int_equal(safepin_set_unmark(SAFEPIN_UNMARK_DEFERRED), 0);
	assert_int_equal(safepin_get_unmark(), SAFEPIN_UNMARK_DEFERRED);
	return 0;
}

/* Switching back to IMMEDIATE unmarks what is parked: nothing is left. */
static int teardown(void **state)
{
	(void)state;
	assert_immediate_leaves_nothing();
	assert_marks("........");
	assert_int_equal(munmap(arena, NPAGES * PAGE), 0);
	return 0;
}

/* The registration-cache pattern: the second cycle makes no madvise and no pre-fault. */
static void test_repin_of_parked_range_is_free(void **state)
{
	struct safepin_stats before, s;

	(void)state;
	pin_pages(2, 5);
	unpin_pages(2, 5);
	assert_marks("........");	/* seen once: unmarked at once */
	assert_int_equal(stats_now().parked_registrations, 0);
	pin_pages(2, 5);
	unpin_pages(2, 5);
	assert_marks("..DDD...");
	s = stats_now();
	assert_int_equal(s.live_registrations, 0);
	assert_int_equal(s.parked_registrations, 1);
	assert_int_equal(s.pages_marked, 3);

	before = stats_now();
	for (int i = 0; i < 100; i++) {
		pin_pages(2, 5);
		unpin_pages(2, 5);
	}
	s = stats_now();
	assert_int_equal(s.madvise_calls, before.madvise_calls);
	assert_int_equal(s.prefaulted_pages, before.prefaulted_pages);
	assert_int_equal(s.revived_registrations, before.revived_registrations + 100);
	assert_int_equal(s.parked_registrations, 1);
	assert_marks("..DDD...");
	/* A parked range is not live: it cannot be unpinned again. */
	assert_int_equal(safepin_unpin(arena + 2 * PAGE, 3 * PAGE), -ENOENT);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(stats_now().parked_registrations, 1);
	assert_marks("..DDD...");
}

/* fork() sees the live registration only; the parked one is unmarked before it. */
static void test_fork_sees_exactly_live_ranges(void **state)
{
	const void *parked_page = arena + 5 * PAGE;
	struct safepin_stats s;

	(void)state;
	pin_pages(1, 3);
	park_pages(5, 7);
	assert_marks(".DD..DD.");
	assert_true(child_segfaults_at(arena + 1 * PAGE));	/* the fork runs prepare */
	assert_marks(".DD.....");
	assert_int_equal(child_reads(&parked_page, 1, 0x5a), 1);
	s = stats_now();
	assert_int_equal(s.parked_registrations, 0);
	assert_int_equal(s.pages_marked, 2);
	unpin_pages(1, 3);
}

/* Adjacent parked ranges are unmarked with one madvise(). */
static void test_flush_coalesces_runs(void **state)
{
	uint64_t calls;

	(void)state;
	park_pages(2, 4);
	park_pages(0, 2);
	park_pages(4, 6);
	assert_int_equal(stats_now().parked_registrations, 3);
	assert_marks("DDDDDD..");
	calls = stats_now().madvise_calls;
	assert_int_equal(safepin_flush(), 0);
	assert_int_equal(stats_now().madvise_calls, calls + 1);
	assert_int_equal(stats_now().parked_registrations, 0);
	assert_marks("........");
}

/*
 * A pin that overlaps a parked range without being it finds the parked
 * pages counted and marked: it trusts them like a revival (no system
 * call), and the next fork checks and marks them again.  The parked
 * registration stays parked.
 */
static void test_overlapping_pin_trusts_parked_marks_until_fork(void **state)
{
	uint64_t calls, revived;

	(void)state;
	park_pages(0, 4);
	calls = stats_now().madvise_calls;
	revived = stats_now().revived_registrations;
	/* Pages 1-2, as bytes no other test registers (the set of seen ranges is per process). */
	assert_int_equal(safepin_pin(arena + PAGE + 24, 2 * PAGE - 48, 0), 0);
	assert_int_equal(stats_now().madvise_calls, calls);
	assert_int_equal(stats_now().revived_registrations, revived);
	assert_int_equal(stats_now().parked_registrations, 1);
	assert_int_equal(stats_now().live_registrations, 1);
	assert_marks("DDDD....");
	/* The fork re-marks pages 1-2 (a no-op here) and unmarks the parked
	 * rest: page 0 is the child's (1-2 are edge pages, restored there). */
	assert_false(child_segfaults_at(arena));
	assert_int_equal(stats_now().madvise_calls, calls + 3);	/* 0 and 3 unmarked, 1-2 re-marked */
	assert_marks(".DD.....");
	/* Seen once: unmarked at once. */
	assert_int_equal(safepin_unpin(arena + PAGE + 24, 2 * PAGE - 48), 0);
	assert_marks("........");
}

/*
 * The same after the memory changed: a parked range unmapped, a bigger
 * buffer mapped over it and registered.  The pin covers the parked range
 * whole: that one is unmarked and dropped first, and the new buffer is
 * marked whole at once (one VMA, no trusted piece in its middle), so a
 * child gets none of it.
 */
static void test_bigger_buffer_over_parked_range_is_marked_whole(void **state)
{
	uintptr_t start, end;
	char *again;

	(void)state;
	park_pages(2, 4);
	assert_int_equal(munmap(arena + 2 * PAGE, 2 * PAGE), 0);
	again = mmap(arena + PAGE, 4 * PAGE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	assert_ptr_equal(again, arena + PAGE);
	memset(again, 0x5a, 4 * PAGE);
	pin_pages(1, 5);
	assert_marks(".DDDD...");
	assert_true(vma_bounds(arena + PAGE, &start, &end));
	assert_true(start == (uintptr_t)arena + PAGE && end == (uintptr_t)arena + 5 * PAGE);
	assert_int_equal(stats_now().parked_registrations, 0);
	assert_true(child_segfaults_at(arena + 2 * PAGE));
	assert_true(child_segfaults_at(arena + 3 * PAGE));
	unpin_pages(1, 5);
	assert_int_equal(safepin_flush(), 0);
	assert_marks("........");
}

/*
 * Memory replaced while parked: the revived registration trusted a mark
 * the new mapping does not carry.  The prepare handler marks it again, so
 * fork() still hides the registered pages.
 */
static void test_replaced_memory_is_remarked_before_fork(void **state)
{
	char *again;

	(void)state;
	park_pages(2, 4);
	again = mmap(arena + 2 * PAGE, 2 * PAGE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	assert_ptr_equal(again, arena + 2 * PAGE);
	memset(again, 0x5a, 2 * PAGE);
	pin_pages(2, 4);	/* revived, no syscall: nothing marks the new VMA yet */
	assert_marks("........");
	assert_true(child_segfaults_at(arena + 2 * PAGE));
	assert_marks("..DD....");
	unpin_pages(2, 4);
}

/*
 * Memory replaced while parked by memory that must not be marked: a shared
 * mapping, which a child must keep.  The prepare handler checks the VMAs of
 * revived runs before marking them again: this one becomes a violated
 * registration (counted, logged), nothing marks it, the child shares it,
 * and its release is still accepted.
 */
static void test_replaced_by_shared_memory_is_not_hidden(void **state)
{
	struct safepin_stats s0, s1;
	volatile char *shared;
	pid_t pid;
	int status;

	(void)state;
	park_pages(2, 4);
	shared = mmap(arena + 2 * PAGE, 2 * PAGE, PROT_READ | PROT_WRITE,
		      MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
	assert_ptr_equal(shared, arena + 2 * PAGE);
	shared[0] = 1;
	pin_pages(2, 4);	/* revived: trusted until the next fork */
	s0 = stats_now();
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		shared[0] = 2;	/* SIGSEGV if the mapping was hidden */
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
	assert_int_equal(shared[0], 2);
	s1 = stats_now();
	assert_int_equal(s1.violations, s0.violations + 1);
	assert_int_equal(s1.pages_marked, s0.pages_marked - 2);
	assert_marks("........");
	unpin_pages(2, 4);
	assert_int_equal(stats_now().live_registrations, 0);
	/* Give the test's arena its private pages back for the next test. */
	assert_ptr_equal(mmap(arena + 2 * PAGE, 2 * PAGE, PROT_READ | PROT_WRITE,
			      MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0), arena + 2 * PAGE);
	memset(arena + 2 * PAGE, 0x5a, 2 * PAGE);
}

/*
 * A registration cache revives one buffer many times between two forks:
 * the prepare handler re-marks that buffer once, not every live
 * registration (which it does only past 32 distinct revived ones).
 */
static void test_hot_buffer_revived_often_is_remarked_once(void **state)
{
	enum { OTHERS = 40 };
	char *others = map_anon(2 * OTHERS * PAGE, PROT_READ | PROT_WRITE, 0);
	uint64_t before;
	pid_t pid;
	int status;

	(void)state;
	for (int i = 0; i < OTHERS; i++)
		assert_int_equal(safepin_pin(others + 2 * i * PAGE, PAGE, 0), 0);
	park_pages(1, 3);
	for (int i = 0; i < 100; i++) {
		pin_pages(1, 3);
		unpin_pages(1, 3);
	}
	pin_pages(1, 3);
	before = stats_now().madvise_calls;
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	/* One re-mark of pages 1-2 (and no parked range left to flush). */
	assert_int_equal(stats_now().madvise_calls, before + 1);
	unpin_pages(1, 3);
	for (int i = 0; i < OTHERS; i++)
		assert_int_equal(safepin_unpin(others + 2 * i * PAGE, PAGE), 0);
	assert_int_equal(safepin_flush(), 0);
	munmap(others, 2 * OTHERS * PAGE);
}

/* Documented: a raw clone() runs no atfork handler and misses parked ranges too. */
static void test_raw_clone_misses_parked_until_flush(void **state)
{
	(void)state;
	park_pages(3, 4);
	assert_int_equal(raw_clone_reads(arena + 3 * PAGE), 0);
	assert_int_equal(safepin_flush(), 0);
	assert_int_equal(raw_clone_reads(arena + 3 * PAGE), 1);
}

/* At most 256 parked ranges: the 257th unpin unmarks the batch first. */
static void test_parked_ranges_are_bounded(void **state)
{
	enum { N = 600 };
	char *big = map_anon(2 * N * PAGE, PROT_READ | PROT_WRITE, 0);
	uint64_t max_parked = 0;

	(void)state;
	for (size_t i = 0; i < 2 * N; i++) {
		char *p = big + 2 * (i / 2) * PAGE;	/* each range twice: the second unpin parks */

		assert_int_equal(safepin_pin(p, PAGE, 0), 0);
		assert_int_equal(safepin_unpin(p, PAGE), 0);
		if (stats_now().parked_registrations > max_parked)
			max_parked = stats_now().parked_registrations;
	}
	assert_int_equal(max_parked, 256);
	assert_int_equal(safepin_flush(), 0);
	assert_int_equal(stats_now().pages_marked, 0);
	assert_false(vma_has_flag(big + 2 * (N - 1) * PAGE, "dc"));
	assert_int_equal(munmap(big, 2 * N * PAGE), 0);
}

/* Bad input changes nothing, parked ranges included. */
static void test_bad_input_changes_nothing(void **state)
{
	struct safepin_stats before, s;

	(void)state;
	park_pages(0, 2);
	before = stats_now();
	assert_int_equal(safepin_set_unmark((enum safepin_unmark)7), -EINVAL);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(safepin_unpin(arena + 4 * PAGE, PAGE), -ENOENT);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(safepin_unpin(arena, PAGE), -ENOENT);	/* not the parked (addr, len) */
	assert_int_equal(errno, ENOENT);
	s = stats_now();
	assert_int_equal(s.parked_registrations, before.parked_registrations);
	assert_int_equal(s.pages_marked, before.pages_marked);
	assert_int_equal(s.madvise_calls, before.madvise_calls);
	assert_int_equal(safepin_get_unmark(), SAFEPIN_UNMARK_DEFERRED);
	assert_marks("DD......");
}

/* A policy change unmarks what the old policy parked. */
static void test_policy_change_flushes(void **state)
{
	(void)state;
	park_pages(1, 3);
	assert_int_equal(stats_now().parked_registrations, 1);
	assert_int_equal(safepin_set_policy(SAFEPIN_POLICY_ZERO_FILL), 0);
	assert_int_equal(stats_now().parked_registrations, 0);
	assert_marks("........");
	park_pages(1, 3);
	assert_marks(".WW.....");
	assert_int_equal(safepin_set_policy(SAFEPIN_POLICY_DONTFORK), 0);
	assert_marks("........");
}

/* Unmapping a parked range is legal: the monitor drops it without a stale madvise. */
static void on_violation(const struct safepin_violation *v, void *arg)
{
	(void)v;
	(void)arg;
}

static void test_monitor_drops_unmapped_parked_range(void **state)
{
	struct safepin_monitor_opts o = { .size = sizeof(o), .callback = on_violation };
	char *buf = map_anon(4 * PAGE, PROT_READ | PROT_WRITE, 0);
	int ret;

	(void)state;
	ret = safepin_monitor_start(&o);
	if (ret) {
		assert_int_equal(munmap(buf, 4 * PAGE), 0);
		print_message("skipped: userfaultfd unavailable here (errno %d)\n", errno);
		skip();
	}
	memset(buf, 1, 4 * PAGE);
	for (int i = 0; i < 2; i++) {
		assert_int_equal(safepin_pin(buf, 4 * PAGE, 0), 0);
		assert_int_equal(safepin_unpin(buf, 4 * PAGE), 0);
	}
	assert_int_equal(stats_now().parked_registrations, 1);
	assert_int_equal(munmap(buf, 4 * PAGE), 0);
	for (int i = 0; i < 2000 && stats_now().parked_registrations; i++)
		usleep(1000);
	assert_int_equal(stats_now().parked_registrations, 0);
	assert_int_equal(stats_now().pages_marked, 0);
	assert_int_equal(safepin_monitor_stop(), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_repin_of_parked_range_is_free, setup, teardown),
		cmocka_unit_test_setup_teardown(test_fork_sees_exactly_live_ranges, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_coalesces_runs, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlapping_pin_trusts_parked_marks_until_fork,
						setup, teardown),
		cmocka_unit_test_setup_teardown(test_bigger_buffer_over_parked_range_is_marked_whole,
						setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_replaced_memory_is_remarked_before_fork, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_replaced_by_shared_memory_is_not_hidden, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_hot_buffer_revived_often_is_remarked_once, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_raw_clone_misses_parked_until_flush, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_parked_ranges_are_bounded, setup, teardown),
		cmocka_unit_test_setup_teardown(test_bad_input_changes_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_policy_change_flushes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_monitor_drops_unmapped_parked_range, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
