// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * SAFEPIN_PIN_DEVICE_WRITES: safepin_pin() marks the pages and leaves the
 * faults to the device's write pin.  The write pin here is io_uring's
 * fixed buffers: pin_user_pages(FOLL_WRITE | FOLL_LONGTERM), the pin RDMA
 * and VFIO take for a writable region.  After it every page is what the
 * library's own pre-fault leaves: present, mapped by this process alone,
 * writable, data unchanged; and a forked child still sees the marks.
 */
#include <errno.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/uio.h>

#include <liburing.h>

#include "helpers.h"

#define NPAGES 8

static char *arena;

static int setup(void **state)
{
	(void)state;
	arena = map_anon(NPAGES * PAGE, PROT_READ | PROT_WRITE, 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_immediate_leaves_nothing();
	assert_int_equal(munmap(arena, NPAGES * PAGE), 0);
	return 0;
}

/* Pages 0-3 written then shared with a child, 4-7 never touched. */
static pid_t shared_and_absent(void)
{
	pid_t child;

	memset(arena, 0x33, 4 * PAGE);
	child = fork_sleeper();
	for (size_t i = 0; i < NPAGES; i++)
		assert_true((pagemap_entry(arena + i * PAGE) & (PM_PRESENT | PM_EXCLUSIVE)) ==
			    (i < 4 ? PM_PRESENT : 0));
	return child;
}

static void test_marks_without_faulting(void **state)
{
	struct safepin_stats before, s;
	pid_t child;

	(void)state;
	child = shared_and_absent();
	before = stats_now();
	assert_int_equal(safepin_pin(arena, NPAGES * PAGE, SAFEPIN_PIN_DEVICE_WRITES), 0);
	s = stats_now();
	assert_int_equal(s.pages_marked, before.pages_marked + NPAGES);
	assert_int_equal(s.prefaulted_pages, before.prefaulted_pages);
	assert_page_marks(arena, NPAGES, "DDDDDDDD");
	/* Nothing faulted: still shared, still absent. */
	for (size_t i = 0; i < NPAGES; i++)
		assert_true((pagemap_entry(arena + i * PAGE) & (PM_PRESENT | PM_EXCLUSIVE)) ==
			    (i < 4 ? PM_PRESENT : 0));
	kill_child(child);
	assert_int_equal(safepin_unpin(arena, NPAGES * PAGE), 0);
}

static void test_write_pin_leaves_what_the_prefault_would(void **state)
{
	struct io_uring ring;
	struct iovec iov = { .iov_base = NULL, .iov_len = NPAGES * PAGE };
	pid_t child;
	int ret;

	(void)state;
	child = shared_and_absent();
	assert_int_equal(safepin_pin(arena, NPAGES * PAGE, SAFEPIN_PIN_DEVICE_WRITES), 0);

	iov.iov_base = arena;
	ret = io_uring_queue_init(4, &ring, 0);
	assert_int_equal(ret, 0);
	assert_int_equal(io_uring_register_buffers(&ring, &iov, 1), 0);
	for (size_t i = 0; i < NPAGES; i++) {
		char *p = arena + i * PAGE;

		assert_true((pagemap_entry(p) & (PM_PRESENT | PM_EXCLUSIVE)) ==
			    (PM_PRESENT | PM_EXCLUSIVE));
		assert_int_equal(p[0], i < 4 ? 0x33 : 0);
		assert_int_equal(p[PAGE - 1], i < 4 ? 0x33 : 0);
	}
	assert_int_equal(write_faults(arena, NPAGES * PAGE), 0);
	/* The child still shares nothing: the pages are marked. */
	assert_page_marks(arena, NPAGES, "DDDDDDDD");
	assert_int_equal(io_uring_unregister_buffers(&ring), 0);
	io_uring_queue_exit(&ring);
	kill_child(child);
	assert_int_equal(safepin_unpin(arena, NPAGES * PAGE), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_marks_without_faulting, setup, teardown),
		cmocka_unit_test_setup_teardown(test_write_pin_leaves_what_the_prefault_would, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
