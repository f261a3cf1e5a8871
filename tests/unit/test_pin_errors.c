// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Bad input and failures: each gets its exact errno and changes nothing --
 * no VmFlags of any VMA, no registration, no page count.  A registration is
 * live during every test so that "no page count changed" is observable: a
 * stray count on its pages would keep them marked after its unpin.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define NPAGES 16

static char *arena;

static char *pg(size_t i)
{
	return arena + i * PAGE;
}

static void assert_marks(const char *expect)
{
	char got[NPAGES + 1];

	fork_marks(arena, NPAGES, got);
	assert_string_equal(got, expect);
}

/*
 * Run @call, which must fail with -@err and errno @err, and check that
 * nothing changed: every VMA's flags, live registrations, pages marked,
 * and that the failure was counted.  The snapshots go to static buffers:
 * an allocation between "before" and "after" would move the heap.
 */
static char snap_before[1 << 20], snap_after[1 << 20];

#define EXPECT_NOTHING_CHANGED(call, err)                                             \
	do {                                                                          \
		struct safepin_stats s0_ = stats_now(), s1_;                          \
		int ret_, errno_;                                                     \
		smaps_flags_snapshot_buf(snap_before, sizeof(snap_before));           \
		errno = 0;                                                            \
		ret_ = (call);                                                        \
		errno_ = errno;                                                       \
		smaps_flags_snapshot_buf(snap_after, sizeof(snap_after));             \
		s1_ = stats_now();                                                    \
		assert_int_equal(ret_, -(err));                                       \
		assert_int_equal(errno_, (err));                                      \
		assert_same_snapshot(snap_before, snap_after);                        \
		assert_int_equal(s1_.live_registrations, s0_.live_registrations);     \
		assert_int_equal(s1_.pages_marked, s0_.pages_marked);                 \
		assert_int_equal(s1_.failures, s0_.failures + 1);                     \
	} while (0)

/* Input errors are refused before any madvise(). */
#define EXPECT_REFUSED(call, err)                                                     \
	do {                                                                          \
		uint64_t calls_ = stats_now().madvise_calls;                          \
		EXPECT_NOTHING_CHANGED(call, err);                                    \
		assert_int_equal(stats_now().madvise_calls, calls_);                  \
	} while (0)

static int setup(void **state)
{
	(void)state;
	arena = map_anon(NPAGES * PAGE, PROT_READ | PROT_WRITE, 0);
	/* Pages 0 and 1 are registered throughout. */
	assert_int_equal(safepin_pin(arena, 2 * PAGE, 0), 0);
	assert_marks("DD..............");
	return 0;
}

static int teardown(void **state)
{
	struct safepin_stats s;

	(void)state;
	/* If a failed call had left a count on pages 0-1, they would stay marked. */
	assert_int_equal(safepin_unpin(arena, 2 * PAGE), 0);
	s = stats_now();
	assert_int_equal(s.live_registrations, 0);
	assert_int_equal(s.pages_marked, 0);
	assert_int_equal(munmap(arena, NPAGES * PAGE), 0);
	return 0;
}

static void test_null_addr(void **state)
{
	(void)state;
	EXPECT_REFUSED(safepin_pin(NULL, PAGE, 0), EINVAL);
	EXPECT_REFUSED(safepin_pin(NULL, 1, 0), EINVAL);
	EXPECT_REFUSED(safepin_unpin(NULL, PAGE), EINVAL);
}

static void test_zero_len(void **state)
{
	(void)state;
	EXPECT_REFUSED(safepin_pin(pg(4), 0, 0), EINVAL);
	EXPECT_REFUSED(safepin_pin(arena, 0, 0), EINVAL);	/* even on a pinned address */
	EXPECT_REFUSED(safepin_unpin(arena, 0), EINVAL);
}

static void test_wrap_around(void **state)
{
	(void)state;
	EXPECT_REFUSED(safepin_pin(pg(4), SIZE_MAX, 0), EINVAL);
	EXPECT_REFUSED(safepin_pin((void *)(UINTPTR_MAX - 100), 200, 0), EINVAL);
	/* Ends one past the last byte of the address space. */
	EXPECT_REFUSED(safepin_pin((void *)(UINTPTR_MAX - PAGE + 1), PAGE, 0), EINVAL);
	EXPECT_REFUSED(safepin_unpin(pg(4), SIZE_MAX), EINVAL);
}

static void test_unknown_flags(void **state)
{
	(void)state;
	EXPECT_REFUSED(safepin_pin(pg(4), PAGE, 1), EINVAL);	/* safepin_pin_opts()' MIGRATE */
	EXPECT_REFUSED(safepin_pin(pg(4), PAGE, SAFEPIN_PIN_DEVICE_WRITES | 4), EINVAL);
	EXPECT_REFUSED(safepin_pin(pg(4), PAGE, 0x80000000u), EINVAL);
	assert_marks("DD..............");
}

static void test_unmapped(void **state)
{
	char *gone = map_anon(4 * PAGE, PROT_READ | PROT_WRITE, 0);

	(void)state;
	assert_int_equal(munmap(gone, 4 * PAGE), 0);
	EXPECT_REFUSED(safepin_pin(gone, 4 * PAGE, 0), EFAULT);
	EXPECT_REFUSED(safepin_pin(gone + 100, 1, 0), EFAULT);
}

static void test_prot_none(void **state)
{
	char *none = map_anon(4 * PAGE, PROT_NONE, 0);

	(void)state;
	EXPECT_REFUSED(safepin_pin(none, 4 * PAGE, 0), EFAULT);
	EXPECT_REFUSED(safepin_pin(none + PAGE + 5, 10, 0), EFAULT);
	assert_int_equal(munmap(none, 4 * PAGE), 0);

	/* A PROT_NONE page inside an otherwise accessible range. */
	assert_int_equal(mprotect(pg(8), PAGE, PROT_NONE), 0);
	EXPECT_REFUSED(safepin_pin(pg(4), 8 * PAGE, 0), EFAULT);
	EXPECT_REFUSED(safepin_pin(pg(1), 8 * PAGE, 0), EFAULT);	/* overlaps the live pin */
	assert_marks("DD..............");
	assert_int_equal(mprotect(pg(8), PAGE, PROT_READ | PROT_WRITE), 0);
}

static void test_hole_in_middle(void **state)
{
	(void)state;
	assert_int_equal(munmap(pg(8), PAGE), 0);
	EXPECT_REFUSED(safepin_pin(pg(4), 8 * PAGE, 0), EFAULT);
	EXPECT_REFUSED(safepin_pin(pg(0), NPAGES * PAGE, 0), EFAULT);
	/* Overlapping the live registration: its pages must not gain a count. */
	EXPECT_REFUSED(safepin_pin(pg(1) + 17, 8 * PAGE, 0), EFAULT);
	assert_marks("DD...... .......");
}

static void test_hole_at_end_and_start(void **state)
{
	(void)state;
	assert_int_equal(munmap(pg(15), PAGE), 0);
	EXPECT_REFUSED(safepin_pin(pg(12), 4 * PAGE, 0), EFAULT);
	EXPECT_REFUSED(safepin_pin(pg(15) - 1, 2, 0), EFAULT);	/* last byte is past the end */
	EXPECT_REFUSED(safepin_pin(pg(1), 15 * PAGE, 0), EFAULT);

	assert_int_equal(munmap(pg(10), PAGE), 0);
	EXPECT_REFUSED(safepin_pin(pg(10), 3 * PAGE, 0), EFAULT);
	EXPECT_REFUSED(safepin_pin(pg(11) - 1, PAGE, 0), EFAULT);	/* first byte in the hole */
	assert_marks("DD........ .... ");
}

static void test_unpin_never_pinned(void **state)
{
	(void)state;
	EXPECT_REFUSED(safepin_unpin(pg(6), PAGE), ENOENT);
	/* Part of a live registration is not a registration. */
	EXPECT_REFUSED(safepin_unpin(arena, PAGE), ENOENT);
	EXPECT_REFUSED(safepin_unpin(pg(1), PAGE), ENOENT);
	assert_marks("DD..............");
}

static void test_double_unpin(void **state)
{
	(void)state;
	assert_int_equal(safepin_pin(pg(5), 3 * PAGE, 0), 0);
	assert_marks("DD...DDD........");
	assert_int_equal(safepin_unpin(pg(5), 3 * PAGE), 0);
	assert_marks("DD..............");
	EXPECT_REFUSED(safepin_unpin(pg(5), 3 * PAGE), ENOENT);

	/* Pinned twice, unpinned twice, the third one fails. */
	assert_int_equal(safepin_pin(pg(5), 1, 0), 0);
	assert_int_equal(safepin_pin(pg(5), 1, 0), 0);
	assert_int_equal(safepin_unpin(pg(5), 1), 0);
	assert_marks("DD...D..........");
	assert_int_equal(safepin_unpin(pg(5), 1), 0);
	assert_marks("DD..............");
	EXPECT_REFUSED(safepin_unpin(pg(5), 1), ENOENT);
}

static void test_unpin_wrong_len(void **state)
{
	(void)state;
	assert_int_equal(safepin_pin(pg(4) + 8, 2 * PAGE, 0), 0);
	assert_marks("DD..DDD.........");
	EXPECT_REFUSED(safepin_unpin(pg(4) + 8, 2 * PAGE + 1), ENOENT);
	/* Same pages after expansion, still not the registration. */
	EXPECT_REFUSED(safepin_unpin(pg(4) + 8, 2 * PAGE - 1), ENOENT);
	EXPECT_REFUSED(safepin_unpin(pg(4), 2 * PAGE + 8), ENOENT);
	assert_marks("DD..DDD.........");
	assert_int_equal(safepin_unpin(pg(4) + 8, 2 * PAGE), 0);
	assert_marks("DD..............");
}

/*
 * libibverbs writes refcount -1 over the rest of the address space after a
 * failed registration of an unmapped range, silently disabling
 * DONTFORK.  Here pins above and below the hole still mark and unmark.
 */
static void test_failed_pin_does_not_poison_neighbours(void **state)
{
	(void)state;
	assert_int_equal(munmap(pg(8), PAGE), 0);	/* X */
	EXPECT_REFUSED(safepin_pin(pg(0), NPAGES * PAGE, 0), EFAULT);
	EXPECT_REFUSED(safepin_pin(pg(8), PAGE, 0), EFAULT);
	EXPECT_REFUSED(safepin_pin(pg(7), 2 * PAGE, 0), EFAULT);
	EXPECT_REFUSED(safepin_pin(pg(8) + 100, 2 * PAGE, 0), EFAULT);

	assert_int_equal(safepin_pin(pg(9), 3 * PAGE, 0), 0);	/* above X */
	assert_marks("DD...... DDD....");
	assert_int_equal(safepin_pin(pg(3), 3 * PAGE, 0), 0);	/* below X */
	assert_marks("DD.DDD.. DDD....");
	assert_int_equal(safepin_pin(pg(2), 6 * PAGE, 0), 0);	/* up to X */
	assert_int_equal(safepin_pin(pg(9), 7 * PAGE, 0), 0);	/* from X to the end */
	assert_marks("DDDDDDDD DDDDDDD");
	assert_int_equal(stats_now().pages_marked, 15);
	assert_true(child_segfaults_at(pg(7)));
	assert_true(child_segfaults_at(pg(9)));

	assert_int_equal(safepin_unpin(pg(9), 3 * PAGE), 0);
	assert_int_equal(safepin_unpin(pg(3), 3 * PAGE), 0);
	assert_marks("DDDDDDDD DDDDDDD");
	assert_int_equal(safepin_unpin(pg(2), 6 * PAGE), 0);
	assert_int_equal(safepin_unpin(pg(9), 7 * PAGE), 0);
	assert_marks("DD...... .......");
}

/*
 * A failure after marking (here: the pre-fault of a private file mapping
 * beyond the end of its file, which gets SIGBUS and so EFAULT from
 * MADV_POPULATE_WRITE) undoes the marking and the counts.
 */
static void test_prefault_failure_rolls_back(void **state)
{
	int fd = memfd_create("safepin-short", MFD_CLOEXEC);
	char *m;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, PAGE), 0);
	m = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	assert_true(m != MAP_FAILED);

	/* Page 0 is backed and pinned; pages 1-3 lie beyond the end of the file. */
	assert_int_equal(safepin_pin(m, PAGE, 0), 0);
	EXPECT_NOTHING_CHANGED(safepin_pin(m, 4 * PAGE, 0), EFAULT);
	EXPECT_NOTHING_CHANGED(safepin_pin(m + PAGE, 3 * PAGE, 0), EFAULT);
	{
		char got[5];

		fork_marks(m, 4, got);
		assert_string_equal(got, "D...");
	}
	assert_int_equal(safepin_unpin(m, PAGE), 0);
	{
		char got[5];

		fork_marks(m, 4, got);
		assert_string_equal(got, "....");
	}
	assert_int_equal(munmap(m, 4 * PAGE), 0);
	close(fd);
}

/*
 * madvise() failing part way: a seccomp filter makes madvise(@fail_at,
 * any length, @advice) return @err.  Seccomp cannot be removed again, so
 * this runs in a forked child (which starts with an empty registry) and
 * reports by exit status; CHILD_CHECK prints the failing line.
 */
#define CHILD_CHECK(c)                                                                \
	do {                                                                          \
		if (!(c)) {                                                           \
			fprintf(stderr, "child: line %d: %s\n", __LINE__, #c);        \
			_exit(1);                                                     \
		}                                                                     \
	} while (0)

static void fail_madvise_at(const void *fail_at, int advice, int err)
{
	uint64_t a = (uintptr_t)fail_at;
	struct sock_filter f[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, __NR_madvise, 0, 7),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[2])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)advice, 0, 5),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0])),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)a, 0, 3),
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, args[0]) + 4),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)(a >> 32), 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | ((uint32_t)err & SECCOMP_RET_DATA)),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(f) / sizeof(f[0]), .filter = f };

	CHILD_CHECK(prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0);
	CHILD_CHECK(prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) == 0);
}

static void madvise_failure_child(int advice_policy, int err)
{
	/* private [0,3) | shared [3,5) | private [5,8): a pin of [1,7) makes two runs */
	char *m = map_anon(8 * PAGE, PROT_READ | PROT_WRITE, 0);
	int advice = advice_policy == SAFEPIN_POLICY_ZERO_FILL ? MADV_WIPEONFORK : MADV_DONTFORK;
	struct safepin_stats s0, s1;
	char got[9];
	int ret;

	CHILD_CHECK(mmap(m + 3 * PAGE, 2 * PAGE, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == m + 3 * PAGE);
	CHILD_CHECK(safepin_set_policy(advice_policy) == 0);
	/* The child's registry is new: let it map its bookkeeping before the snapshot. */
	CHILD_CHECK(safepin_pin(m, PAGE, 0) == 0 && safepin_unpin(m, PAGE) == 0);
	fail_madvise_at(m + 5 * PAGE, advice, err);

	/* The first run [1,3) is marked, the second [5,7) fails: [1,3) is unmarked again. */
	s0 = stats_now();
	smaps_flags_snapshot_buf(snap_before, sizeof(snap_before));
	errno = 0;
	ret = safepin_pin(m + PAGE, 6 * PAGE, 0);
	CHILD_CHECK(ret == -err && errno == err);
	smaps_flags_snapshot_buf(snap_after, sizeof(snap_after));
	s1 = stats_now();
	if (strcmp(snap_before, snap_after))
		fprintf(stderr, "before:\n%s\nafter:\n%s\n", snap_before, snap_after);
	CHILD_CHECK(strcmp(snap_before, snap_after) == 0);
	CHILD_CHECK(s1.live_registrations == s0.live_registrations);
	CHILD_CHECK(s1.pages_marked == s0.pages_marked);
	CHILD_CHECK(s1.madvise_calls == s0.madvise_calls + 3);	/* mark, fail, unmark */
	CHILD_CHECK(s1.failures == s0.failures + 1);
	fork_marks(m, 8, got);
	CHILD_CHECK(strcmp(got, "........") == 0);

	/* The counts are intact: [1,3) alone marks and unmarks as usual. */
	CHILD_CHECK(safepin_pin(m + PAGE, 2 * PAGE, 0) == 0);
	fork_marks(m, 8, got);
	CHILD_CHECK(strcmp(got, advice == MADV_DONTFORK ? ".DD....." : ".WW.....") == 0);
	CHILD_CHECK(safepin_unpin(m + PAGE, 2 * PAGE) == 0);
	fork_marks(m, 8, got);
	CHILD_CHECK(strcmp(got, "........") == 0);
	CHILD_CHECK(stats_now().live_registrations == 0 && stats_now().pages_marked == 0);
	_exit(0);
}

static void check_madvise_failure(int policy, int err)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		madvise_failure_child(policy, err);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
}

static void test_madvise_failure_rolls_back(void **state)
{
	(void)state;
	check_madvise_failure(SAFEPIN_POLICY_DONTFORK, ENOMEM);
	check_madvise_failure(SAFEPIN_POLICY_DONTFORK, EINVAL);
	check_madvise_failure(SAFEPIN_POLICY_ZERO_FILL, ENOMEM);
}

int main(void)
{
#define T(f) cmocka_unit_test_setup_teardown(f, setup, teardown)
	const struct CMUnitTest tests[] = {
		T(test_null_addr),
		T(test_zero_len),
		T(test_wrap_around),
		T(test_unknown_flags),
		T(test_unmapped),
		T(test_prot_none),
		T(test_hole_in_middle),
		T(test_hole_at_end_and_start),
		T(test_unpin_never_pinned),
		T(test_double_unpin),
		T(test_unpin_wrong_len),
		T(test_failed_pin_does_not_poison_neighbours),
		T(test_prefault_failure_rolls_back),
		T(test_madvise_failure_rolls_back),
	};
#undef T

	return cmocka_run_group_tests(tests, NULL, NULL);
}
