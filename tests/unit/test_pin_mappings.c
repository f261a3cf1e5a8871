// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Kinds of memory: hugetlb (invariant 9), MAP_SHARED anonymous and memfd,
 * an application's own MADV_DONTFORK (invariant 7), read-only private
 * mappings, ranges over several VMAs of different kinds, and the zero-fill
 * policy with its fallbacks.
 */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "vm.h"

#define HPAGE (2ul << 20)

static int teardown(void **state)
{
	struct safepin_stats s = stats_now();

	(void)state;
	vm_force_populate_fallback(false);
	assert_int_equal(safepin_set_policy(SAFEPIN_POLICY_DONTFORK), 0);
	assert_int_equal(s.live_registrations, 0);
	assert_int_equal(s.pages_marked, 0);
	return 0;
}

static void assert_marks(const void *addr, size_t npages, const char *expect)
{
	char got[64];

	assert_true(npages < sizeof(got));
	fork_marks(addr, npages, got);
	assert_string_equal(got, expect);
}

static void assert_huge_marks(const void *addr, size_t nhuge, const char *expect)
{
	char got[16];

	assert_true(nhuge < sizeof(got));
	fork_marks_stride(addr, nhuge, HPAGE, got);
	assert_string_equal(got, expect);
}

/*
 * Fork a child, then store @value at @addr in the parent, then let the
 * child read @addr.  Return: 1 if the child saw @value, 0 if it read
 * something else, -signal if it died.
 */
static int child_sees_later_write(volatile char *addr, char value)
{
	int pfd[2], status;
	pid_t pid;
	char c = 'x';

	assert_int_equal(pipe(pfd), 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);
		close(pfd[1]);
		if (read(pfd[0], &c, 1) != 1)
			_exit(4);
		_exit(*addr == value ? 0 : 3);
	}
	close(pfd[0]);
	*addr = value;
	assert_int_equal(write(pfd[1], &c, 1), 1);
	close(pfd[1]);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status))
		return -WTERMSIG(status);
	return WEXITSTATUS(status) == 0 ? 1 : 0;
}

static int make_memfd(size_t size)
{
	int fd = memfd_create("safepin-test", MFD_CLOEXEC);

	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, (off_t)size), 0);
	return fd;
}

/* --- hugetlb ----------------------------------------------------------- */

static char *map_huge(size_t nhuge)
{
	char *p = mmap(NULL, nhuge * HPAGE, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

/* Returns a 3-huge-page private mapping, or skips the test saying why. */
static char *huge_or_skip(void)
{
	long free_pages = hugetlb_reserve(4);
	char *hp;

	if (free_pages < 3) {
		print_message("SKIP: only %ld free 2 MiB huge pages after trying to reserve 4 "
			      "(/proc/sys/vm/nr_hugepages: not root, or memory too fragmented)\n",
			      free_pages);
		skip();
	}
	hp = map_huge(3);
	if (!hp) {
		print_message("SKIP: mmap(MAP_HUGETLB) failed: %s\n", strerror(errno));
		skip();
	}
	return hp;
}

static int hugetlb_teardown(void **state)
{
	hugetlb_unreserve();
	return teardown(state);
}

static void check_hugetlb(bool fallback)
{
	char *hp = huge_or_skip();
	struct safepin_stats s0 = stats_now();
	uintptr_t vs, ve;
	pid_t child;

	vm_force_populate_fallback(fallback);
	memset(hp, 0x21, 3 * HPAGE);
	child = fork_sleeper();		/* the huge pages are now copy-on-write shared */
	assert_false(pagemap_entry(hp + HPAGE) & PM_EXCLUSIVE);

	/* 8 KiB in the middle of the second huge page: all of it is marked. */
	assert_int_equal(safepin_pin(hp + HPAGE + 300 * 1024, 8192, 0), 0);
	assert_huge_marks(hp, 3, ".D.");
	assert_true(vma_bounds(hp + HPAGE, &vs, &ve));
	assert_int_equal(vs, (uintptr_t)hp + HPAGE);
	assert_int_equal(ve, (uintptr_t)hp + 2 * HPAGE);
	assert_int_equal(stats_now().madvise_calls, s0.madvise_calls + 1);
	assert_int_equal(stats_now().pages_marked, s0.pages_marked + HPAGE / PAGE);
	assert_int_equal(stats_now().prefaulted_pages, s0.prefaulted_pages + HPAGE / PAGE);
	/* Pre-faulted for write: the copy-on-write share with the child is broken. */
	assert_true(pagemap_entry(hp + HPAGE) & PM_PRESENT);
	assert_true(pagemap_entry(hp + HPAGE) & PM_EXCLUSIVE);
	assert_true(pagemap_entry(hp + 2 * HPAGE - PAGE) & PM_EXCLUSIVE);
	for (size_t i = 0; i < 3 * HPAGE; i += PAGE)
		assert_int_equal(hp[i], 0x21);
	kill_child(child);

	assert_int_equal(safepin_unpin(hp + HPAGE + 300 * 1024, 8192), 0);
	assert_huge_marks(hp, 3, "...");

	/*
	 * A whole huge page is gone in the child.  (A partially covered one
	 * comes back with its unregistered bytes: invariant 8, fork tests.)
	 */
	assert_int_equal(safepin_pin(hp + HPAGE, HPAGE, 0), 0);
	assert_huge_marks(hp, 3, ".D.");
	assert_true(child_segfaults_at(hp + HPAGE));
	assert_true(child_segfaults_at(hp + 2 * HPAGE - 1));
	{
		const void *ok[2] = { hp + HPAGE - 1, hp + 2 * HPAGE };

		assert_int_equal(child_reads(ok, 2, 0x21), 1);
	}

	/* 8 KiB straddling the boundary of huge pages 0 and 1: both marked. */
	assert_int_equal(safepin_pin(hp + HPAGE - 4096, 8192, 0), 0);
	assert_huge_marks(hp, 3, "DD.");
	assert_int_equal(stats_now().pages_marked, s0.pages_marked + 2 * HPAGE / PAGE);
	assert_int_equal(safepin_unpin(hp + HPAGE, HPAGE), 0);
	assert_huge_marks(hp, 3, "DD.");	/* huge page 1 is still covered */
	assert_int_equal(safepin_unpin(hp + HPAGE - 4096, 8192), 0);
	assert_huge_marks(hp, 3, "...");
	assert_int_equal(stats_now().pages_marked, s0.pages_marked);

	/* The zero-fill policy cannot wipe hugetlb memory: it falls back to DONTFORK. */
	assert_int_equal(safepin_set_policy(SAFEPIN_POLICY_ZERO_FILL), 0);
	assert_int_equal(safepin_pin(hp + 2 * HPAGE + 5, 1, 0), 0);
	assert_huge_marks(hp, 3, "..D");
	assert_int_equal(safepin_unpin(hp + 2 * HPAGE + 5, 1), 0);
	assert_huge_marks(hp, 3, "...");
	assert_int_equal(safepin_set_policy(SAFEPIN_POLICY_DONTFORK), 0);

	assert_int_equal(munmap(hp, 3 * HPAGE), 0);
}

static void test_hugetlb_populate(void **state)
{
	(void)state;
	check_hugetlb(false);
}

static void test_hugetlb_fallback(void **state)
{
	(void)state;
	check_hugetlb(true);
}

/* --- transparent huge pages ------------------------------------------- */

/*
 * THP is not hugetlb: a pin marks only its own base pages, and only the
 * huge page the pin's edges fall in is split; the next one stays whole.
 */
static void test_thp_not_split_more_than_needed(void **state)
{
	char *raw = map_anon(3 * HPAGE, PROT_READ | PROT_WRITE, 0);
	char *hp = (char *)(((uintptr_t)raw + HPAGE - 1) & ~(HPAGE - 1));
	unsigned char *copy = malloc(2 * HPAGE);
	unsigned int seed = 7;
	long thp_kb;

	(void)state;
	assert_non_null(copy);
	if (madvise(hp, 2 * HPAGE, MADV_HUGEPAGE)) {
		print_message("SKIP: madvise(MADV_HUGEPAGE): %s\n", strerror(errno));
		skip();
	}
	for (size_t i = 0; i < 2 * HPAGE; i++)
		hp[i] = (char)rand_r(&seed);
	memcpy(copy, hp, 2 * HPAGE);
	thp_kb = smaps_field_kb(hp, "AnonHugePages:");
	if (thp_kb < 4096) {
		print_message("SKIP: no transparent huge pages here (AnonHugePages: %ld kB)\n",
			      thp_kb);
		skip();
	}

	assert_int_equal(safepin_pin(hp + 2 * PAGE + 10, PAGE, 0), 0);
	assert_marks(hp, 6, "..DD..");
	assert_int_equal(stats_now().pages_marked, 2);
	assert_true(pagemap_entry(hp + 2 * PAGE) & PM_EXCLUSIVE);
	/* The second huge page is still mapped huge. */
	assert_int_equal(smaps_field_kb(hp + HPAGE, "AnonHugePages:"), 2048);
	assert_memory_equal(hp, copy, 2 * HPAGE);
	assert_int_equal(safepin_unpin(hp + 2 * PAGE + 10, PAGE), 0);
	assert_marks(hp, 6, "......");
	assert_memory_equal(hp, copy, 2 * HPAGE);
	free(copy);
	assert_int_equal(munmap(raw, 3 * HPAGE), 0);
}

/* --- MAP_SHARED -------------------------------------------------------- */

static void check_shared(char *m, size_t npages)
{
	struct safepin_stats s0 = stats_now(), s1;

	assert_int_equal(safepin_pin(m + 10, npages * PAGE - 20, 0), 0);
	s1 = stats_now();
	assert_int_equal(s1.live_registrations, s0.live_registrations + 1);
	assert_int_equal(s1.pages_marked, s0.pages_marked);
	assert_int_equal(s1.madvise_calls, s0.madvise_calls);
	assert_marks(m, npages, "....");
	/* Shared memory stays shared: the child sees what the parent writes later. */
	assert_int_equal(child_sees_later_write(m, 0x31), 1);
	assert_int_equal(child_sees_later_write(m + npages * PAGE - 1, 0x32), 1);
	assert_int_equal(safepin_unpin(m + 10, npages * PAGE - 20), 0);
	assert_marks(m, npages, "....");
}

static void test_shared_anon(void **state)
{
	char *m = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	char *priv = map_anon(PAGE, PROT_READ | PROT_WRITE, 0);

	(void)state;
	assert_true(m != MAP_FAILED);
	check_shared(m, 4);
	/* The same check on private memory does fail: the helper can tell. */
	assert_int_equal(child_sees_later_write(priv, 0x33), 0);
	assert_int_equal(munmap(m, 4 * PAGE), 0);
	assert_int_equal(munmap(priv, PAGE), 0);
}

static void test_shared_memfd(void **state)
{
	int fd = make_memfd(4 * PAGE);
	char *m = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);

	(void)state;
	assert_true(m != MAP_FAILED);
	check_shared(m, 4);
	assert_int_equal(munmap(m, 4 * PAGE), 0);
	close(fd);
}

/* --- several VMAs ------------------------------------------------------ */

static void test_private_and_shared_vmas(void **state)
{
	char *m = map_anon(8 * PAGE, PROT_READ | PROT_WRITE, 0);
	int fd = make_memfd(2 * PAGE);
	uint64_t calls = stats_now().madvise_calls;

	(void)state;
	/* private [0,3) | shared anonymous [3,5) | private [5,6) | memfd [6,8) */
	assert_true(mmap(m + 3 * PAGE, 2 * PAGE, PROT_READ | PROT_WRITE,
			 MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == m + 3 * PAGE);
	assert_true(mmap(m + 6 * PAGE, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED,
			 fd, 0) == m + 6 * PAGE);
	memset(m, 0x44, 8 * PAGE);

	assert_int_equal(safepin_pin(m + PAGE + 1, 7 * PAGE - 2, 0), 0);
	assert_marks(m, 8, ".DD..D..");
	assert_int_equal(stats_now().madvise_calls, calls + 2);	/* two private runs */
	assert_int_equal(stats_now().pages_marked, 3);
	assert_true(child_segfaults_at(m + 2 * PAGE));
	assert_true(child_segfaults_at(m + 5 * PAGE));
	assert_int_equal(child_sees_later_write(m + 3 * PAGE, 0x45), 1);
	assert_int_equal(child_sees_later_write(m + 7 * PAGE, 0x46), 1);

	assert_int_equal(safepin_pin(m + 4 * PAGE, 2 * PAGE, 0), 0);	/* shared + private */
	assert_int_equal(stats_now().madvise_calls, calls + 2);		/* nothing new */
	assert_int_equal(safepin_unpin(m + PAGE + 1, 7 * PAGE - 2), 0);
	assert_marks(m, 8, ".....D..");
	assert_int_equal(safepin_unpin(m + 4 * PAGE, 2 * PAGE), 0);
	assert_marks(m, 8, "........");
	assert_int_equal(munmap(m, 8 * PAGE), 0);
	close(fd);
}

/* --- the application's own DONTFORK ------------------------------------ */

static void test_preexisting_dontfork_survives(void **state)
{
	char *m = map_anon(8 * PAGE, PROT_READ | PROT_WRITE, 0);
	struct safepin_stats s0;

	(void)state;
	memset(m, 0x55, 8 * PAGE);
	assert_int_equal(madvise(m + 2 * PAGE, 2 * PAGE, MADV_DONTFORK), 0);
	assert_marks(m, 8, "..DD....");
	s0 = stats_now();

	/* Entirely inside the application's range: nothing to do, nothing to undo. */
	assert_int_equal(safepin_pin(m + 2 * PAGE, 2 * PAGE, 0), 0);
	assert_int_equal(stats_now().madvise_calls, s0.madvise_calls);
	assert_int_equal(stats_now().pages_marked, s0.pages_marked);
	assert_int_equal(safepin_unpin(m + 2 * PAGE, 2 * PAGE), 0);
	assert_marks(m, 8, "..DD....");

	/* Overlapping ranges around it. */
	assert_int_equal(safepin_pin(m, 6 * PAGE, 0), 0);
	assert_marks(m, 8, "DDDDDD..");
	assert_int_equal(stats_now().pages_marked, s0.pages_marked + 4);
	assert_int_equal(safepin_pin(m + 3 * PAGE, 5 * PAGE, 0), 0);
	assert_marks(m, 8, "DDDDDDDD");
	assert_int_equal(stats_now().pages_marked, s0.pages_marked + 6);
	assert_int_equal(safepin_unpin(m, 6 * PAGE), 0);
	assert_marks(m, 8, "..DDDDDD");
	assert_int_equal(safepin_unpin(m + 3 * PAGE, 5 * PAGE), 0);
	/* Ours are cleared, the application's stay. */
	assert_marks(m, 8, "..DD....");
	assert_int_equal(stats_now().pages_marked, s0.pages_marked);
	assert_true(child_segfaults_at(m + 2 * PAGE));
	{
		const void *ok[3] = { m + PAGE, m + 4 * PAGE, m + 7 * PAGE };

		assert_int_equal(child_reads(ok, 3, 0x55), 1);
	}
	assert_int_equal(munmap(m, 8 * PAGE), 0);
}

/* --- read-only private mappings ---------------------------------------- */

static void test_read_only_private_anon(void **state)
{
	char *m = map_anon(4 * PAGE, PROT_READ | PROT_WRITE, 0);
	char *untouched = map_anon(2 * PAGE, PROT_READ, 0);
	struct safepin_stats s0;
	pid_t child;

	(void)state;
	memset(m, 0x3c, 4 * PAGE);
	assert_int_equal(mprotect(m, 4 * PAGE, PROT_READ), 0);
	child = fork_sleeper();		/* the pages are copy-on-write shared */
	s0 = stats_now();

	assert_int_equal(safepin_pin(m, 4 * PAGE, 0), 0);
	assert_int_equal(stats_now().cow_unbroken_pages, s0.cow_unbroken_pages + 4);
	assert_int_equal(stats_now().prefaulted_pages, s0.prefaulted_pages + 4);
	assert_marks(m, 4, "DDDD");
	for (size_t i = 0; i < 4 * PAGE; i++)
		assert_int_equal(m[i], 0x3c);
	/* No write happened: the pages are still shared with the child. */
	for (size_t i = 0; i < 4; i++) {
		uint64_t e = pagemap_entry(m + i * PAGE);

		assert_true(e & PM_PRESENT);
		assert_false(e & PM_EXCLUSIVE);
	}
	kill_child(child);
	assert_int_equal(safepin_unpin(m, 4 * PAGE), 0);
	assert_marks(m, 4, "....");

	/* Never touched: faulted in for read (the zero page), still zeros. */
	assert_false(pagemap_entry(untouched) & PM_PRESENT);
	assert_int_equal(safepin_pin(untouched, 2 * PAGE, 0), 0);
	assert_int_equal(stats_now().cow_unbroken_pages, s0.cow_unbroken_pages + 6);
	assert_true(pagemap_entry(untouched) & PM_PRESENT);
	assert_true(pagemap_entry(untouched + PAGE) & PM_PRESENT);
	for (size_t i = 0; i < 2 * PAGE; i++)
		assert_int_equal(untouched[i], 0);
	assert_int_equal(safepin_unpin(untouched, 2 * PAGE), 0);

	assert_int_equal(munmap(m, 4 * PAGE), 0);
	assert_int_equal(munmap(untouched, 2 * PAGE), 0);
}

static void test_read_only_file_mappings(void **state)
{
	int fd = make_memfd(0);
	char pattern[2 * PAGE], back[2 * PAGE];
	struct safepin_stats s0;
	char *priv, *shared;

	(void)state;
	for (size_t i = 0; i < sizeof(pattern); i++)
		pattern[i] = (char)(i * 7 + 1);
	assert_int_equal(write(fd, pattern, sizeof(pattern)), (ssize_t)sizeof(pattern));
	priv = mmap(NULL, 2 * PAGE, PROT_READ, MAP_PRIVATE, fd, 0);
	shared = mmap(NULL, 2 * PAGE, PROT_READ, MAP_SHARED, fd, 0);
	assert_true(priv != MAP_FAILED && shared != MAP_FAILED);
	s0 = stats_now();

	/* Private: marked like any private memory, read-faulted, counted. */
	assert_int_equal(safepin_pin(priv, 2 * PAGE, 0), 0);
	assert_int_equal(stats_now().cow_unbroken_pages, s0.cow_unbroken_pages + 2);
	assert_marks(priv, 2, "DD");
	assert_true(pagemap_entry(priv) & PM_PRESENT);
	assert_memory_equal(priv, pattern, sizeof(pattern));
	/* Shared: neither marked nor counted as unbroken copy-on-write. */
	assert_int_equal(safepin_pin(shared, 2 * PAGE, 0), 0);
	assert_int_equal(stats_now().cow_unbroken_pages, s0.cow_unbroken_pages + 2);
	assert_marks(shared, 2, "..");
	assert_memory_equal(shared, pattern, sizeof(pattern));

	assert_int_equal(safepin_unpin(priv, 2 * PAGE), 0);
	assert_int_equal(safepin_unpin(shared, 2 * PAGE), 0);
	assert_marks(priv, 2, "..");
	/* The file did not change either. */
	assert_int_equal(pread(fd, back, sizeof(back), 0), (ssize_t)sizeof(back));
	assert_memory_equal(back, pattern, sizeof(pattern));
	assert_int_equal(munmap(priv, 2 * PAGE), 0);
	assert_int_equal(munmap(shared, 2 * PAGE), 0);
	close(fd);
}

/* --- policies ---------------------------------------------------------- */

static void test_zero_fill_policy(void **state)
{
	char *m = map_anon(4 * PAGE, PROT_READ | PROT_WRITE, 0);
	int fd = make_memfd(PAGE);
	char *file = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);

	(void)state;
	assert_true(file != MAP_FAILED);
	memset(m, 0xab, 4 * PAGE);
	assert_int_equal(safepin_set_policy(SAFEPIN_POLICY_ZERO_FILL), 0);
	assert_int_equal(safepin_get_policy(), SAFEPIN_POLICY_ZERO_FILL);

	assert_int_equal(safepin_pin(m + PAGE, 2 * PAGE, 0), 0);
	assert_marks(m, 4, ".WW.");
	assert_int_equal(stats_now().pages_marked, 2);
	{
		const void *wiped[2] = { m + PAGE, m + 3 * PAGE - 1 };
		const void *kept[2] = { m, m + 3 * PAGE };

		assert_int_equal(child_reads(wiped, 2, 0), 1);
		assert_int_equal(child_reads(kept, 2, 0xab), 1);
	}
	assert_int_equal(m[PAGE], (char)0xab);	/* the parent keeps its data */

	/* No policy change while registrations are live. */
	errno = 0;
	assert_int_equal(safepin_set_policy(SAFEPIN_POLICY_DONTFORK), -EBUSY);
	assert_int_equal(errno, EBUSY);
	assert_int_equal(safepin_get_policy(), SAFEPIN_POLICY_ZERO_FILL);

	/* A private file mapping cannot be wiped: DONTFORK instead. */
	assert_int_equal(safepin_pin(file, PAGE, 0), 0);
	assert_marks(file, 1, "D");
	assert_true(child_segfaults_at(file));
	assert_int_equal(safepin_unpin(file, PAGE), 0);
	assert_marks(file, 1, ".");

	assert_int_equal(safepin_unpin(m + PAGE, 2 * PAGE), 0);
	assert_marks(m, 4, "....");
	{
		const void *back[1] = { m + PAGE };

		assert_int_equal(child_reads(back, 1, 0xab), 1);
	}
	assert_int_equal(safepin_set_policy(SAFEPIN_POLICY_DONTFORK), 0);
	assert_int_equal(safepin_pin(m, PAGE, 0), 0);
	assert_marks(m, 4, "D...");
	assert_int_equal(safepin_unpin(m, PAGE), 0);

	assert_int_equal(munmap(m, 4 * PAGE), 0);
	assert_int_equal(munmap(file, PAGE), 0);
	close(fd);
}

/* The application's own WIPEONFORK survives like its own DONTFORK. */
static void test_preexisting_wipeonfork_survives(void **state)
{
	char *m = map_anon(4 * PAGE, PROT_READ | PROT_WRITE, 0);

	(void)state;
	assert_int_equal(madvise(m + PAGE, PAGE, MADV_WIPEONFORK), 0);
	assert_int_equal(safepin_set_policy(SAFEPIN_POLICY_ZERO_FILL), 0);
	assert_int_equal(safepin_pin(m, 3 * PAGE, 0), 0);
	assert_marks(m, 4, "WWW.");
	assert_int_equal(stats_now().pages_marked, 2);
	assert_int_equal(safepin_unpin(m, 3 * PAGE), 0);
	assert_marks(m, 4, ".W..");
	assert_int_equal(safepin_set_policy(SAFEPIN_POLICY_DONTFORK), 0);
	assert_int_equal(munmap(m, 4 * PAGE), 0);
}

static void test_policy_errors(void **state)
{
	(void)state;
	assert_int_equal(safepin_get_policy(), SAFEPIN_POLICY_DONTFORK);
	/* Only where the probe proved this kernel copies pinned pages at fork. */
	{
		struct safepin_kernel_info k = { .size = sizeof(k) };

		assert_int_equal(safepin_probe(&k), 0);
		errno = 0;
		if (k.copy_on_fork_anon == 1 && k.copy_on_fork_hugetlb == 1) {
			assert_int_equal(safepin_set_policy(SAFEPIN_POLICY_KERNEL_COPY), 0);
			assert_int_equal(safepin_get_policy(), SAFEPIN_POLICY_KERNEL_COPY);
			assert_int_equal(safepin_set_policy(SAFEPIN_POLICY_DONTFORK), 0);
		} else {
			assert_int_equal(safepin_set_policy(SAFEPIN_POLICY_KERNEL_COPY),
					 -EOPNOTSUPP);
			assert_int_equal(errno, EOPNOTSUPP);
		}
	}
	errno = 0;
	assert_int_equal(safepin_set_policy((enum safepin_policy)42), -EINVAL);
	assert_int_equal(errno, EINVAL);
	errno = 0;
	assert_int_equal(safepin_set_policy((enum safepin_policy)-1), -EINVAL);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(safepin_get_policy(), SAFEPIN_POLICY_DONTFORK);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_hugetlb_populate, hugetlb_teardown),
		cmocka_unit_test_teardown(test_hugetlb_fallback, hugetlb_teardown),
		cmocka_unit_test_teardown(test_thp_not_split_more_than_needed, teardown),
		cmocka_unit_test_teardown(test_shared_anon, teardown),
		cmocka_unit_test_teardown(test_shared_memfd, teardown),
		cmocka_unit_test_teardown(test_private_and_shared_vmas, teardown),
		cmocka_unit_test_teardown(test_preexisting_dontfork_survives, teardown),
		cmocka_unit_test_teardown(test_read_only_private_anon, teardown),
		cmocka_unit_test_teardown(test_read_only_file_mappings, teardown),
		cmocka_unit_test_teardown(test_zero_fill_policy, teardown),
		cmocka_unit_test_teardown(test_preexisting_wipeonfork_survives, teardown),
		cmocka_unit_test_teardown(test_policy_errors, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
