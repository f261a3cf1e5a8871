// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The core engine seen from the kernel: which pages get VmFlags `dc`, how
 * registrations from independent callers are counted per page, how many
 * madvise() calls that takes, and what pagemap and a forked child see.
 */
#include <errno.h>
#include <signal.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "helpers.h"
#include "vm.h"

#define NPAGES 8

static char *arena;

#define pin_pages(first, last) pin_page_range(arena, first, last)
#define unpin_pages(first, last) unpin_page_range(arena, first, last)
#define assert_marks(expect) assert_page_marks(arena, NPAGES, expect)

static uint64_t madvise_calls(void)
{
	return stats_now().madvise_calls;
}

static int setup(void **state)
{
	(void)state;
	arena = map_anon(NPAGES * PAGE, PROT_READ | PROT_WRITE, 0);
	return 0;
}

/* Every test leaves nothing registered and nothing marked. */
static int teardown(void **state)
{
	struct safepin_stats s = stats_now();
	char got[NPAGES + 1];

	(void)state;
	vm_force_populate_fallback(false);
	fork_marks(arena, NPAGES, got);
	assert_string_equal(got, "........");
	assert_int_equal(s.live_registrations, 0);
	assert_int_equal(s.pages_marked, 0);
	assert_int_equal(munmap(arena, NPAGES * PAGE), 0);
	return 0;
}

/* The mark covers exactly the pages the byte range touches, no more. */
static void test_marks_exact_page_range(void **state)
{
	struct safepin_stats before = stats_now(), s;

	(void)state;
	assert_marks("........");
	/* Bytes 2*PAGE+100 .. 5*PAGE-101: pages 2, 3 and 4. */
	assert_int_equal(safepin_pin(arena + 2 * PAGE + 100, 3 * PAGE - 200, 0), 0);
	assert_marks("..DDD...");
	s = stats_now();
	assert_int_equal(s.live_registrations, before.live_registrations + 1);
	assert_int_equal(s.pages_marked, before.pages_marked + 3);
	assert_int_equal(safepin_unpin(arena + 2 * PAGE + 100, 3 * PAGE - 200), 0);
	assert_marks("........");

	/* One byte: its page only.  Two bytes across a boundary: both pages. */
	assert_int_equal(safepin_pin(arena + 5 * PAGE + PAGE - 1, 1, 0), 0);
	assert_marks(".....D..");
	assert_int_equal(safepin_pin(arena + PAGE - 1, 2, 0), 0);
	assert_marks("DD...D..");
	assert_int_equal(stats_now().pages_marked, before.pages_marked + 3);
	assert_int_equal(safepin_unpin(arena + 5 * PAGE + PAGE - 1, 1), 0);
	assert_marks("DD......");
	assert_int_equal(safepin_unpin(arena + PAGE - 1, 2), 0);
	assert_marks("........");

	/* The whole mapping, page aligned. */
	pin_pages(0, NPAGES);
	assert_marks("DDDDDDDD");
	assert_int_equal(stats_now().pages_marked, before.pages_marked + NPAGES);
	unpin_pages(0, NPAGES);
	s = stats_now();
	assert_int_equal(s.live_registrations, before.live_registrations);
	assert_int_equal(s.pages_marked, before.pages_marked);
}

/* A=[0,4), B=[2,6): madvise only where a page count goes 0->1 or 1->0. */
static void test_overlap_counts_and_madvise_calls(void **state)
{
	uint64_t calls = madvise_calls();

	(void)state;
	pin_pages(0, 4);
	assert_int_equal(madvise_calls(), calls + 1);
	assert_marks("DDDD....");

	pin_pages(2, 6);	/* only [4,6) is new */
	assert_int_equal(madvise_calls(), calls + 2);
	assert_marks("DDDDDD..");
	assert_int_equal(stats_now().live_registrations, 2);
	assert_int_equal(stats_now().pages_marked, 6);

	unpin_pages(0, 4);	/* only [0,2) drops to 0; [2,4) is still B's */
	assert_int_equal(madvise_calls(), calls + 3);
	assert_marks("..DDDD..");
	assert_int_equal(stats_now().pages_marked, 4);

	pin_pages(3, 5);	/* fully covered by B: no call */
	assert_int_equal(madvise_calls(), calls + 3);
	assert_marks("..DDDD..");
	unpin_pages(3, 5);	/* still covered by B: no call, still marked */
	assert_int_equal(madvise_calls(), calls + 3);
	assert_marks("..DDDD..");

	unpin_pages(2, 6);
	assert_int_equal(madvise_calls(), calls + 4);
	assert_marks("........");
}

/* Nested and identical registrations; the mark stays until the last one goes. */
static void test_nested_and_identical(void **state)
{
	uint64_t calls = madvise_calls();

	(void)state;
	pin_pages(0, 8);
	pin_pages(2, 4);
	pin_pages(2, 4);	/* the same range twice: two registrations */
	assert_int_equal(madvise_calls(), calls + 1);
	assert_int_equal(stats_now().live_registrations, 3);

	unpin_pages(0, 8);	/* [0,2) and [4,8): two runs, two calls */
	assert_int_equal(madvise_calls(), calls + 3);
	assert_marks("..DD....");
	assert_int_equal(stats_now().pages_marked, 2);

	unpin_pages(2, 4);
	assert_int_equal(madvise_calls(), calls + 3);
	assert_marks("..DD....");
	unpin_pages(2, 4);
	assert_int_equal(madvise_calls(), calls + 4);
	assert_marks("........");
}

/* Two callers pinning different bytes of one page share the page's count. */
static void test_same_page_different_bytes(void **state)
{
	uint64_t calls = madvise_calls();
	char *p = arena + 3 * PAGE;

	(void)state;
	assert_int_equal(safepin_pin(p + 10, 10, 0), 0);
	assert_int_equal(safepin_pin(p + 1000, 3000, 0), 0);
	assert_int_equal(madvise_calls(), calls + 1);
	assert_marks("...D....");
	assert_int_equal(stats_now().pages_marked, 1);
	assert_int_equal(safepin_unpin(p + 10, 10), 0);
	assert_marks("...D....");
	assert_int_equal(safepin_unpin(p + 1000, 3000), 0);
	assert_marks("........");
	assert_int_equal(madvise_calls(), calls + 2);
}

/* One madvise() per maximal run, both ways, however the counts were built. */
static void test_one_call_per_maximal_run(void **state)
{
	uint64_t calls = madvise_calls();

	(void)state;
	pin_pages(1, 2);
	pin_pages(3, 4);
	pin_pages(6, 7);
	assert_int_equal(madvise_calls(), calls + 3);
	assert_marks(".D.D..D.");

	pin_pages(0, 8);	/* gaps [0,1) [2,3) [4,6) [7,8): four calls */
	assert_int_equal(madvise_calls(), calls + 7);
	assert_marks("DDDDDDDD");
	assert_int_equal(stats_now().pages_marked, 8);

	unpin_pages(1, 2);
	unpin_pages(3, 4);
	unpin_pages(6, 7);
	assert_int_equal(madvise_calls(), calls + 7);
	assert_marks("DDDDDDDD");

	unpin_pages(0, 8);	/* every page drops to 0 at once: one run */
	assert_int_equal(madvise_calls(), calls + 8);
	assert_marks("........");
}

/*
 * Invariant 1: after the pin every page is present and mapped by this
 * process only, also pages never touched and pages copy-on-write shared
 * with a live child.  The "before" checks show the test can fail.
 */
static void check_present_exclusive(bool fallback)
{
	struct safepin_stats before;
	pid_t child;

	vm_force_populate_fallback(fallback);
	memset(arena, 0x11, 4 * PAGE);		/* pages 4..7 stay untouched */
	child = fork_sleeper();
	for (size_t i = 0; i < NPAGES; i++) {
		uint64_t e = pagemap_entry(arena + i * PAGE);

		if (i < 4) {
			assert_true(e & PM_PRESENT);
			assert_false(e & PM_EXCLUSIVE);	/* shared with the child */
		} else {
			assert_false(e & PM_PRESENT);
		}
	}

	before = stats_now();
	pin_pages(0, NPAGES);
	for (size_t i = 0; i < NPAGES; i++) {
		uint64_t e = pagemap_entry(arena + i * PAGE);

		assert_true(e & PM_PRESENT);
		assert_true(e & PM_EXCLUSIVE);
		assert_int_equal(arena[i * PAGE], i < 4 ? 0x11 : 0);
		assert_int_equal(arena[i * PAGE + PAGE - 1], i < 4 ? 0x11 : 0);
	}
	assert_int_equal(stats_now().prefaulted_pages, before.prefaulted_pages + NPAGES);
	assert_int_equal(stats_now().cow_unbroken_pages, before.cow_unbroken_pages);
	kill_child(child);
	unpin_pages(0, NPAGES);
}

static void test_present_exclusive_populate(void **state)
{
	(void)state;
	check_present_exclusive(false);
}

static void test_present_exclusive_fallback(void **state)
{
	(void)state;
	check_present_exclusive(true);
}

/*
 * Once the child of a fork is gone, pagemap shows the pages ours alone
 * again, but their PTEs are still write-protected: a read-only pin taken
 * now (a READ-only VFIO map on 5.10, a FOLL_GET pinner anywhere) is left
 * behind by the next CPU write.  safepin_pin() write-faults them: writing
 * afterwards takes no fault.
 */
static void test_write_faulted_after_child_exits(void **state)
{
	char *witness;

	(void)state;
	skip_if_faults_uncountable();
	witness = map_anon(PAGE, PROT_READ | PROT_WRITE, 0);
	memset(arena, 0x22, NPAGES * PAGE);
	witness[0] = 1;
	kill_child(fork_sleeper());
	for (size_t i = 0; i < NPAGES; i++)
		assert_true(pagemap_entry(arena + i * PAGE) & PM_EXCLUSIVE);
	/* The measure works: an untouched page faults once. */
	assert_int_equal(write_faults(witness, PAGE), 1);

	pin_pages(0, NPAGES);
	assert_int_equal(write_faults(arena, NPAGES * PAGE), 0);
	unpin_pages(0, NPAGES);
	assert_int_equal(munmap(witness, PAGE), 0);
}

/* A child touching a marked page dies; its unmarked neighbours are intact. */
static void test_child_segfaults_only_on_marked(void **state)
{
	(void)state;
	for (size_t i = 0; i < NPAGES; i++)
		memset(arena + i * PAGE, 0x40 + (int)i, PAGE);

	pin_pages(2, 5);
	for (size_t i = 0; i < NPAGES; i++) {
		const void *first = arena + i * PAGE, *last = arena + i * PAGE + PAGE - 1;
		const void *both[2] = { first, last };

		if (i >= 2 && i < 5) {
			assert_true(child_segfaults_at(first));
			assert_true(child_segfaults_at(last));
		} else {
			assert_int_equal(child_reads(both, 2, (unsigned char)(0x40 + i)), 1);
		}
	}
	unpin_pages(2, 5);

	/* Unpinned: the child has every page again, with the right bytes. */
	for (size_t i = 0; i < NPAGES; i++) {
		const void *a[1] = { arena + i * PAGE + 17 };

		assert_int_equal(child_reads(a, 1, (unsigned char)(0x40 + i)), 1);
	}
}

/*
 * Not page aligned: the fully covered middle page is gone in the child.
 * (What the child sees of the partially covered edge pages is invariant 8,
 * tested with the fork protocol.)
 */
static void test_child_segfaults_unaligned(void **state)
{
	const void *before[1] = { arena + PAGE + PAGE - 1 }, *after[1] = { arena + 5 * PAGE };

	(void)state;
	memset(arena, 0x5a, NPAGES * PAGE);
	assert_int_equal(safepin_pin(arena + 2 * PAGE + 123, 3 * PAGE - 200, 0), 0);
	assert_marks("..DDD...");
	assert_true(child_segfaults_at(arena + 3 * PAGE));
	assert_true(child_segfaults_at(arena + 4 * PAGE - 1));
	assert_int_equal(child_reads(before, 1, 0x5a), 1);
	assert_int_equal(child_reads(after, 1, 0x5a), 1);
	assert_int_equal(safepin_unpin(arena + 2 * PAGE + 123, 3 * PAGE - 200), 0);
}

/* Stats: a caller built against a shorter struct gets only what it knows. */
static void test_stats_size(void **state)
{
	struct safepin_stats s;

	(void)state;
	errno = 0;
	assert_int_equal(safepin_get_stats(NULL), -EINVAL);
	assert_int_equal(errno, EINVAL);
	memset(&s, 0, sizeof(s));
	assert_int_equal(safepin_get_stats(&s), -EINVAL);	/* size 0 */

	pin_pages(1, 3);
	memset(&s, 0xee, sizeof(s));
	s.size = offsetof(struct safepin_stats, madvise_calls);
	assert_int_equal(safepin_get_stats(&s), 0);
	assert_int_equal(s.live_registrations, 1);
	assert_int_equal(s.pages_marked, 2);
	assert_int_equal(s.madvise_calls, 0xeeeeeeeeeeeeeeeeull);	/* beyond ->size */
	assert_int_equal(s.failures, 0xeeeeeeeeeeeeeeeeull);
	unpin_pages(1, 3);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_marks_exact_page_range, setup, teardown),
		cmocka_unit_test_setup_teardown(test_overlap_counts_and_madvise_calls, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_nested_and_identical, setup, teardown),
		cmocka_unit_test_setup_teardown(test_same_page_different_bytes, setup, teardown),
		cmocka_unit_test_setup_teardown(test_one_call_per_maximal_run, setup, teardown),
		cmocka_unit_test_setup_teardown(test_present_exclusive_populate, setup, teardown),
		cmocka_unit_test_setup_teardown(test_present_exclusive_fallback, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_faulted_after_child_exits, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_child_segfaults_only_on_marked, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_child_segfaults_unaligned, setup, teardown),
		cmocka_unit_test_setup_teardown(test_stats_size, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
