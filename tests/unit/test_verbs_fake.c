// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The verbs wrappers' ordering and rollback, on the host, against a fake
 * provider: this executable defines ibv_reg_mr_iova2(), ibv_rereg_mr(),
 * ibv_dereg_mr() and libibverbs' fork-range calls, so verbs.c (linked from
 * the static library) calls these instead of libibverbs.  The fake checks,
 * at the moment of the device call, that the range is already marked, and
 * fails on demand with a chosen errno.  Covers what soft-RoCE cannot: a
 * successful rereg with CHANGE_TRANSLATION, and a failing dereg.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "helpers.h"

#include <safepin/verbs.h>

static struct {
	int fail_errno;		/* next provider call fails with this */
	int calls;
	char seen[16];		/* marks of the watched buffer during the call */
	const void *watch;
	size_t watch_pages;
} fake;

static void look(void)
{
	fake.calls++;
	if (fake.watch)
		fork_marks(fake.watch, fake.watch_pages, fake.seen);
}

struct ibv_mr *ibv_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t length, uint64_t iova,
				unsigned int access)
{
	struct ibv_mr *mr;

	(void)iova;
	(void)access;
	look();
	if (fake.fail_errno) {
		errno = fake.fail_errno;
		fake.fail_errno = 0;
		return NULL;
	}
	mr = calloc(1, sizeof(*mr));
	mr->pd = pd;
	mr->addr = addr;
	mr->length = length;
	return mr;
}

int ibv_dereg_mr(struct ibv_mr *mr)
{
	look();
	if (fake.fail_errno) {
		int e = fake.fail_errno;

		fake.fail_errno = 0;
		errno = e;
		return e;
	}
	free(mr);
	return 0;
}

int ibv_rereg_mr(struct ibv_mr *mr, int flags, struct ibv_pd *pd, void *addr, size_t length,
		 int access)
{
	(void)pd;
	(void)access;
	look();
	if (fake.fail_errno) {
		errno = fake.fail_errno;
		fake.fail_errno = 0;
		return IBV_REREG_MR_ERR_CMD;
	}
	if (flags & IBV_REREG_MR_CHANGE_TRANSLATION) {
		mr->addr = addr;
		mr->length = length;
	}
	return 0;
}

/* libibverbs without ibv_fork_init(): no-ops, counted. */
static unsigned int dontfork_calls, dofork_calls;

int ibv_dontfork_range(void *base, size_t size);
int ibv_dofork_range(void *base, size_t size);
int ibv_dontfork_range(void *base, size_t size)
{
	(void)base;
	(void)size;
	dontfork_calls++;
	return 0;
}

int ibv_dofork_range(void *base, size_t size)
{
	(void)base;
	(void)size;
	dofork_calls++;
	return 0;
}

enum ibv_fork_status ibv_is_fork_initialized(void)
{
	return IBV_FORK_DISABLED;
}

#define RW (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE)
static struct ibv_pd fake_pd;

static char *buf;	/* 8 pages: [0, 4) range A, [4, 8) range B */

static int setup(void **state)
{
	(void)state;
	buf = map_anon(8 * PAGE, PROT_READ | PROT_WRITE, 0);
	memset(buf, 1, 8 * PAGE);
	memset(&fake, 0, sizeof(fake));
	fake.watch = buf;
	fake.watch_pages = 8;
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	munmap(buf, 8 * PAGE);
	return 0;
}

static const char *marks(void)
{
	static char m[16];

	fork_marks(buf, 8, m);
	return m;
}

/*
 * Runs first.  After one registration without libibverbs' fork support
 * ibv_fork_init() can no longer turn it on, so the library stops calling
 * the range functions (two calls saved per cycle).
 */
static void test_fork_support_off_is_asked_once(void **state)
{
	(void)state;
	for (int i = 0; i < 3; i++) {
		struct ibv_mr *mr = safepin_reg_mr(&fake_pd, buf, 4 * PAGE, RW);

		assert_non_null(mr);
		assert_string_equal(marks(), "DDDD....");
		assert_int_equal(safepin_dereg_mr(mr), 0);
	}
	assert_int_equal(dontfork_calls, 1);
	assert_int_equal(dofork_calls, 0);
}

static void test_reg_marks_before_provider(void **state)
{
	struct ibv_mr *mr;

	(void)state;
	mr = safepin_reg_mr(&fake_pd, buf + 100, 2 * PAGE, RW);
	assert_non_null(mr);
	assert_string_equal(fake.seen, "DDD.....");
	assert_string_equal(marks(), "DDD.....");
	assert_int_equal(stats_now().live_registrations, 1);
	assert_int_equal(safepin_dereg_mr(mr), 0);
	/* Unmarked only after the provider let go. */
	assert_string_equal(fake.seen, "DDD.....");
	assert_string_equal(marks(), "........");
	assert_int_equal(stats_now().live_registrations, 0);
}

/*
 * A region the device may write is pinned for write by the kernel, which
 * faults its pages in itself: marked, not pre-faulted.  A read-only region
 * is pre-faulted with write semantics before the provider sees it.
 */
static void test_prefault_only_without_local_write(void **state)
{
	struct safepin_stats before;
	struct ibv_mr *mr;

	(void)state;
	assert_int_equal(madvise(buf, 8 * PAGE, MADV_DONTNEED), 0);
	before = stats_now();
	mr = safepin_reg_mr(&fake_pd, buf, 2 * PAGE, RW);
	assert_non_null(mr);
	assert_string_equal(fake.seen, "DD......");
	assert_int_equal(stats_now().prefaulted_pages, before.prefaulted_pages);
	assert_false(pagemap_entry(buf) & PM_PRESENT);
	assert_int_equal(safepin_dereg_mr(mr), 0);

	mr = safepin_reg_mr(&fake_pd, buf + 4 * PAGE, 2 * PAGE, IBV_ACCESS_REMOTE_READ);
	assert_non_null(mr);
	assert_string_equal(fake.seen, "....DD..");
	assert_int_equal(stats_now().prefaulted_pages, before.prefaulted_pages + 2);
	assert_true(pagemap_entry(buf + 4 * PAGE) & PM_PRESENT);
	assert_int_equal(safepin_dereg_mr(mr), 0);
}

static void test_reg_failure_keeps_errno_and_unmarks(void **state)
{
	(void)state;
	fake.fail_errno = EACCES;
	errno = 0;
	assert_null(safepin_reg_mr_iova(&fake_pd, buf, 4 * PAGE, 0x1000, RW));
	assert_int_equal(errno, EACCES);
	assert_string_equal(fake.seen, "DDDD....");
	assert_string_equal(marks(), "........");
	assert_int_equal(stats_now().live_registrations, 0);
}

/*
 * With deferred unmarking (the default; this program runs immediate): a
 * refused registration leaves no mark, whether its range was only seen
 * before (unmarked, remembered) or parked (revived, then released at once).
 */
static void test_reg_failure_leaves_no_parked_mark(void **state)
{
	struct ibv_mr *mr;

	(void)state;
	assert_int_equal(safepin_set_unmark(SAFEPIN_UNMARK_DEFERRED), 0);
	for (int cycle = 0; cycle < 2; cycle++) {
		mr = safepin_reg_mr(&fake_pd, buf, 4 * PAGE, RW);
		assert_non_null(mr);
		assert_int_equal(safepin_dereg_mr(mr), 0);
		fake.fail_errno = EINVAL;
		assert_null(safepin_reg_mr(&fake_pd, buf, 4 * PAGE, RW));
		assert_int_equal(errno, EINVAL);
		fake.fail_errno = 0;
		assert_string_equal(marks(), "........");
		assert_int_equal(stats_now().live_registrations, 0);
		assert_int_equal(stats_now().parked_registrations, 0);
	}
	/* Parked by a second release, then refused: released at once. */
	for (int cycle = 0; cycle < 2; cycle++) {
		mr = safepin_reg_mr(&fake_pd, buf, 4 * PAGE, RW);
		assert_non_null(mr);
		assert_int_equal(safepin_dereg_mr(mr), 0);
	}
	assert_int_equal(stats_now().parked_registrations, 1);
	assert_string_equal(marks(), "DDDD....");
	fake.fail_errno = EINVAL;
	assert_null(safepin_reg_mr(&fake_pd, buf, 4 * PAGE, RW));
	fake.fail_errno = 0;
	assert_string_equal(marks(), "........");
	assert_int_equal(stats_now().parked_registrations, 0);
	assert_int_equal(safepin_set_unmark(SAFEPIN_UNMARK_IMMEDIATE), 0);
}

static void test_dereg_failure_unmarks_nothing(void **state)
{
	struct ibv_mr *mr;

	(void)state;
	mr = safepin_reg_mr(&fake_pd, buf, 4 * PAGE, RW);
	assert_non_null(mr);
	fake.fail_errno = EBUSY;
	assert_int_equal(safepin_dereg_mr(mr), EBUSY);
	assert_int_equal(errno, EBUSY);
	assert_string_equal(marks(), "DDDD....");
	assert_int_equal(stats_now().live_registrations, 1);
	/* Still tracked: a later dereg releases it. */
	assert_int_equal(safepin_dereg_mr(mr), 0);
	assert_string_equal(marks(), "........");
}

static void test_odp_passes_through(void **state)
{
	struct ibv_mr *mr;

	(void)state;
	mr = safepin_reg_mr(&fake_pd, buf, 4 * PAGE, RW | IBV_ACCESS_ON_DEMAND);
	assert_non_null(mr);
	assert_string_equal(fake.seen, "........");
	assert_int_equal(stats_now().live_registrations, 0);
	assert_int_equal(safepin_dereg_mr(mr), 0);
	assert_string_equal(marks(), "........");
}

static void test_rereg_moves_marking(void **state)
{
	struct ibv_mr *mr;

	(void)state;
	mr = safepin_reg_mr(&fake_pd, buf, 4 * PAGE, RW);
	assert_non_null(mr);
	assert_int_equal(safepin_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL,
					  buf + 4 * PAGE, 4 * PAGE, 0), 0);
	/* During the device call both ranges are marked. */
	assert_string_equal(fake.seen, "DDDDDDDD");
	assert_string_equal(marks(), "....DDDD");
	assert_int_equal(stats_now().live_registrations, 1);
	/* Overlapping move: the shared pages stay marked throughout. */
	assert_int_equal(safepin_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL,
					  buf + 2 * PAGE, 4 * PAGE, 0), 0);
	assert_string_equal(fake.seen, "..DDDDDD");
	assert_string_equal(marks(), "..DDDD..");
	assert_int_equal(safepin_dereg_mr(mr), 0);
	assert_string_equal(marks(), "........");
	assert_int_equal(stats_now().live_registrations, 0);
}

static void test_rereg_failure_keeps_old(void **state)
{
	struct ibv_mr *mr;

	(void)state;
	mr = safepin_reg_mr(&fake_pd, buf, 4 * PAGE, RW);
	assert_non_null(mr);
	fake.fail_errno = EOPNOTSUPP;
	errno = 0;
	assert_int_equal(safepin_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL,
					  buf + 4 * PAGE, 4 * PAGE, 0), IBV_REREG_MR_ERR_CMD);
	assert_int_equal(errno, EOPNOTSUPP);
	assert_string_equal(fake.seen, "DDDDDDDD");
	assert_string_equal(marks(), "DDDD....");
	/* Input errors are refused before anything is marked, like libibverbs. */
	fake.calls = 0;
	errno = 0;
	assert_int_equal(safepin_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL, NULL, 0, 0),
			 IBV_REREG_MR_ERR_INPUT);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(fake.calls, 0);
	assert_int_equal(safepin_dereg_mr(mr), 0);
	assert_string_equal(marks(), "........");
	assert_int_equal(stats_now().live_registrations, 0);
}

static void test_rereg_access_to_and_from_odp(void **state)
{
	struct ibv_mr *mr;

	(void)state;
	mr = safepin_reg_mr(&fake_pd, buf, 4 * PAGE, RW);
	assert_non_null(mr);
	assert_int_equal(safepin_rereg_mr(mr, IBV_REREG_MR_CHANGE_ACCESS, NULL, NULL, 0,
					  RW | IBV_ACCESS_ON_DEMAND), 0);
	assert_string_equal(marks(), "........");
	assert_int_equal(stats_now().live_registrations, 0);
	assert_int_equal(safepin_rereg_mr(mr, IBV_REREG_MR_CHANGE_ACCESS, NULL, NULL, 0, RW), 0);
	assert_string_equal(fake.seen, "DDDD....");
	assert_string_equal(marks(), "DDDD....");
	assert_int_equal(safepin_dereg_mr(mr), 0);
	assert_string_equal(marks(), "........");
	assert_int_equal(stats_now().live_registrations, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_fork_support_off_is_asked_once, setup, teardown),
		cmocka_unit_test_setup_teardown(test_reg_marks_before_provider, setup, teardown),
		cmocka_unit_test_setup_teardown(test_prefault_only_without_local_write, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reg_failure_keeps_errno_and_unmarks, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_reg_failure_leaves_no_parked_mark, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_dereg_failure_unmarks_nothing, setup, teardown),
		cmocka_unit_test_setup_teardown(test_odp_passes_through, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rereg_moves_marking, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rereg_failure_keeps_old, setup, teardown),
		cmocka_unit_test_setup_teardown(test_rereg_access_to_and_from_odp, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
