// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * safepin_probe() on the host kernel: the answers, the cache, the size
 * field, bad arguments, and safepin_set_policy(KERNEL_COPY) following it.
 * The guest kernels (6.1, 5.10) are checked by tests/guest/probe.
 *
 * Runs as root or not.  As root, two 2 MiB huge pages are reserved for the
 * hugetlb experiment (and the pool restored at the end); without one the
 * hugetlb answer must be -1 with a reason.
 */
#include <dirent.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "probe.h"
#include "vm.h"

#define NR_HUGEPAGES "/sys/kernel/mm/hugepages/hugepages-2048kB/nr_hugepages"

static long saved_nr_hugepages = -1;
static bool have_hugepage;

static long read_nr_hugepages(void)
{
	FILE *f = fopen(NR_HUGEPAGES, "re");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static void write_nr_hugepages(long v)
{
	FILE *f = fopen(NR_HUGEPAGES, "we");

	if (f) {
		fprintf(f, "%ld\n", v);
		fclose(f);
	}
}

static int count_fds(void)
{
	DIR *d = opendir("/proc/self/fd");
	struct dirent *e;
	int n = 0;

	assert_non_null(d);
	while ((e = readdir(d)))
		n += e->d_name[0] != '.';
	closedir(d);
	return n;
}

/* Kernel release as major * 1000 + minor (informational expectations only). */
static int kernel_version(void)
{
	struct utsname u;
	int major = 0, minor = 0;

	if (uname(&u) || sscanf(u.release, "%d.%d", &major, &minor) != 2)
		return 0;
	return major * 1000 + minor;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int group_setup(void **state)
{
	(void)state;
	saved_nr_hugepages = read_nr_hugepages();
	/* One to pin, one for a copying kernel to copy into the child. */
	have_hugepage = hugetlb_reserve(2) >= 2;
	return 0;
}

static int group_teardown(void **state)
{
	(void)state;
	if (saved_nr_hugepages >= 0 && read_nr_hugepages() != saved_nr_hugepages)
		write_nr_hugepages(saved_nr_hugepages);
	return 0;
}

/*
 * The first probe of the process: runs while this thread holds the fork
 * guard (the probe's child is no glibc fork, so no atfork handler waits on
 * the guard), leaves no child and no file descriptor behind, keeps errno.
 */
static void test_first_probe_clean(void **state)
{
	struct safepin_kernel_info info = { .size = sizeof(info) };
	int fds = count_fds();

	(void)state;
	safepin_fork_guard_enter();
	errno = 12345;
	assert_int_equal(safepin_probe(&info), 0);
	assert_int_equal(errno, 12345);
	safepin_fork_guard_exit();
	assert_int_equal(count_fds(), fds);
	assert_int_equal(waitpid(-1, NULL, WNOHANG), -1);
	assert_int_equal(errno, ECHILD);
}

static void test_host_answers(void **state)
{
	struct safepin_kernel_info info = { .size = sizeof(info) };
	bool has_2m = false;

	(void)state;
	assert_int_equal(safepin_probe(&info), 0);
	assert_int_equal(info.size, sizeof(info));
	print_message("kernel %s: anon %d (%s); hugetlb %d (%s); populate_write %d; wipeonfork %d\n",
		      info.kernel_release, info.copy_on_fork_anon, info.copy_on_fork_anon_reason,
		      info.copy_on_fork_hugetlb, info.copy_on_fork_hugetlb_reason,
		      info.populate_write, info.wipeonfork);
	assert_non_null(info.kernel_release);
	assert_non_null(info.copy_on_fork_anon_reason);
	assert_non_null(info.copy_on_fork_hugetlb_reason);
	assert_true(info.copy_on_fork_anon_reason[0] && info.copy_on_fork_hugetlb_reason[0]);

	assert_int_equal(info.populate_write, vm_has_populate());
	assert_true(info.nr_huge_page_sizes <= SAFEPIN_MAX_HUGE_PAGE_SIZES);
	for (unsigned i = 0; i < info.nr_huge_page_sizes; i++) {
		if (i)
			assert_true(info.huge_page_sizes[i - 1] < info.huge_page_sizes[i]);
		has_2m |= info.huge_page_sizes[i] == 2ul << 20;
	}

	if (info.copy_on_fork_anon == -1 && strstr(info.copy_on_fork_anon_reason, "io_uring")) {
		print_message("io_uring is not usable here: %s\n", info.copy_on_fork_anon_reason);
		skip();
	}
	/* The expectations by version are the test's, never the library's. */
	if (kernel_version() >= 5012) {
		assert_int_equal(info.wipeonfork, 1);
		assert_true(has_2m);
		assert_int_equal(info.copy_on_fork_anon, 1);
		if (have_hugepage) {
			assert_int_equal(info.copy_on_fork_hugetlb, 1);
		} else {
			assert_int_equal(info.copy_on_fork_hugetlb, -1);
			assert_non_null(strstr(info.copy_on_fork_hugetlb_reason, "huge page"));
		}
	}
}

/* Later calls answer from the cache: same data, no new experiment. */
static void test_cached(void **state)
{
	struct safepin_kernel_info a = { .size = sizeof(a) }, b = { .size = sizeof(b) };
	long nr = read_nr_hugepages();
	double t0;

	(void)state;
	assert_int_equal(safepin_probe(&a), 0);
	/* Take the huge pages away: a fresh hugetlb experiment would answer -1. */
	if (nr > 0 && have_hugepage)
		write_nr_hugepages(0);
	t0 = now_ms();
	for (int i = 0; i < 1000; i++)
		assert_int_equal(safepin_probe(&b), 0);
	assert_true(now_ms() - t0 < 100);	/* an experiment forks: ~ms each */
	assert_memory_equal(&a, &b, sizeof(a));
	assert_ptr_equal(probe_kernel(), probe_kernel());
	if (nr > 0 && have_hugepage)
		write_nr_hugepages(nr);
}

/* Fields beyond ->size are never written; ->size itself is left alone. */
static void test_size_field(void **state)
{
	struct safepin_kernel_info full = { .size = sizeof(full) }, part;
	struct {
		struct safepin_kernel_info info;
		unsigned char tail[64];
	} big;
	const size_t min = offsetof(struct safepin_kernel_info, copy_on_fork_hugetlb);

	(void)state;
	assert_int_equal(safepin_probe(&full), 0);

	memset(&part, 0x7e, sizeof(part));
	part.size = min;
	assert_int_equal(safepin_probe(&part), 0);
	assert_int_equal(part.size, min);
	assert_int_equal(part.copy_on_fork_anon, full.copy_on_fork_anon);
	for (size_t i = min; i < sizeof(part); i++)
		assert_int_equal(((unsigned char *)&part)[i], 0x7e);

	/* A caller built against a larger struct: we fill what we know. */
	memset(&big, 0x7e, sizeof(big));
	big.info.size = sizeof(big);
	assert_int_equal(safepin_probe(&big.info), 0);
	assert_int_equal(big.info.size, sizeof(big));
	assert_memory_equal((char *)&big.info + sizeof(size_t), (char *)&full + sizeof(size_t),
			    sizeof(full) - sizeof(size_t));
	for (size_t i = 0; i < sizeof(big.tail); i++)
		assert_int_equal(big.tail[i], 0x7e);
}

static void test_einval(void **state)
{
	struct safepin_kernel_info info = { .size = offsetof(struct safepin_kernel_info,
							     copy_on_fork_hugetlb) - 1 };

	(void)state;
	errno = 0;
	assert_int_equal(safepin_probe(NULL), -EINVAL);
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_int_equal(safepin_probe(&info), -EINVAL);
	assert_int_equal(errno, EINVAL);
	info.size = 0;
	assert_int_equal(safepin_probe(&info), -EINVAL);
}

/* KERNEL_COPY is accepted exactly when both experiments proved copying. */
static void test_kernel_copy_policy(void **state)
{
	struct safepin_kernel_info info = { .size = sizeof(info) };
	bool proven;
	int ret;

	(void)state;
	assert_int_equal(safepin_probe(&info), 0);
	proven = info.copy_on_fork_anon == 1 && info.copy_on_fork_hugetlb == 1;
	assert_int_equal(proven, probe_copies_on_fork(false) && probe_copies_on_fork(true));
	errno = 0;
	ret = safepin_set_policy(SAFEPIN_POLICY_KERNEL_COPY);
	if (proven) {
		assert_int_equal(ret, 0);
		assert_int_equal(safepin_get_policy(), SAFEPIN_POLICY_KERNEL_COPY);
	} else {
		assert_int_equal(ret, -EOPNOTSUPP);
		assert_int_equal(errno, EOPNOTSUPP);
		assert_int_not_equal(safepin_get_policy(), SAFEPIN_POLICY_KERNEL_COPY);
	}
	assert_int_equal(safepin_set_policy(SAFEPIN_POLICY_DONTFORK), 0);
	assert_int_equal(safepin_get_policy(), SAFEPIN_POLICY_DONTFORK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_first_probe_clean),	/* must stay first */
		cmocka_unit_test(test_host_answers),
		cmocka_unit_test(test_cached),
		cmocka_unit_test(test_size_field),
		cmocka_unit_test(test_einval),
		cmocka_unit_test(test_kernel_copy_policy),
	};

	return cmocka_run_group_tests(tests, group_setup, group_teardown);
}
