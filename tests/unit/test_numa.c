// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * NUMA placement and DMA buffers on the host kernel (one node, usually):
 * argument errors change nothing, the options' size field, placement on
 * node 0 checked page by page with move_pages(), the thread's and the
 * VMA's memory policies untouched, SAFEPIN_PIN_MIGRATE on one node, the
 * device helpers, safepin_alloc()/safepin_free().  Two-node behaviour is
 * tested in the NUMA guest (tests/guest/numa).
 *
 * The kernel is asked directly (raw syscalls), not through the library.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "helpers.h"

#define MPOL_DEFAULT 0
#define MPOL_PREFERRED 1
#define MPOL_BIND 2
#define MPOL_F_ADDR (1 << 1)
#define MASK_BITS 1024

static char snap_before[1 << 20], snap_after[1 << 20];

static long sys_move_pages(unsigned long n, void **pages, const int *nodes, int *status, int fl)
{
	return syscall(SYS_move_pages, 0, n, pages, nodes, status, fl);
}

static int policy_of(void *addr, unsigned long *mask)
{
	int mode = -1;

	memset(mask, 0, MASK_BITS / 8);
	assert_int_equal(syscall(SYS_get_mempolicy, &mode, mask, MASK_BITS, addr,
				 addr ? MPOL_F_ADDR : 0), 0);
	return mode;
}

static bool node_has_memory(int node)
{
	char path[96];

	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/meminfo", node);
	return access(path, F_OK) == 0;
}

/* How many of the @n pages at @p are on @node (every page must be present). */
static size_t pages_on(const char *p, size_t n, int node)
{
	void *pages[512];
	int status[512];
	size_t on = 0;

	for (size_t i = 0; i < n; i += 512) {
		size_t k = n - i < 512 ? n - i : 512;

		for (size_t j = 0; j < k; j++)
			pages[j] = (void *)(p + (i + j) * PAGE);
		assert_int_equal(sys_move_pages(k, pages, NULL, status, 0), 0);
		for (size_t j = 0; j < k; j++) {
			assert_true(status[j] >= 0);	/* present */
			on += status[j] == node;
		}
	}
	return on;
}

static struct safepin_numa_stats numa_now(void)
{
	struct safepin_numa_stats s = { .size = sizeof(s) };

	assert_int_equal(safepin_get_numa_stats(&s), 0);
	return s;
}

/* The call fails with @err, counted, and no VMA, registration or policy changed. */
#define EXPECT_REFUSED(call, err)                                                     \
	do {                                                                          \
		struct safepin_stats s0_ = stats_now(), s1_;                          \
		unsigned long m0_[MASK_BITS / 64], m1_[MASK_BITS / 64];               \
		int mode0_ = policy_of(NULL, m0_), ret_, errno_;                       \
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
		assert_int_equal(s1_.madvise_calls, s0_.madvise_calls);               \
		assert_int_equal(s1_.failures, s0_.failures + 1);                     \
		assert_int_equal(policy_of(NULL, m1_), mode0_);                        \
		assert_memory_equal(m0_, m1_, sizeof(m0_));                           \
	} while (0)

static int pin_node(void *p, size_t len, int node, unsigned int flags)
{
	struct safepin_pin_opts o = { .size = sizeof(o), .numa_node = node, .flags = flags };

	return safepin_pin_opts(p, len, &o);
}

static void test_errors(void **state)
{
	char *buf = map_anon(4 * PAGE, PROT_READ | PROT_WRITE, 0);
	struct safepin_pin_opts o = { .size = sizeof(o), .numa_node = 0 };
	int absent = -1;

	(void)state;
	EXPECT_REFUSED(safepin_pin_opts(NULL, PAGE, &o), EINVAL);
	EXPECT_REFUSED(safepin_pin_opts(buf, 0, &o), EINVAL);
	EXPECT_REFUSED(pin_node(buf, PAGE, -2, 0), EINVAL);
	EXPECT_REFUSED(pin_node(buf, PAGE, -ENODEV, 0), EINVAL);	/* a helper's error */
	EXPECT_REFUSED(pin_node(buf, PAGE, 1 << 20, 0), EINVAL);
	EXPECT_REFUSED(pin_node(buf, PAGE, 0x7fffffff, 0), EINVAL);
	EXPECT_REFUSED(pin_node(buf, PAGE, 0, 2), EINVAL);		/* unknown flag */
	EXPECT_REFUSED(pin_node(buf, PAGE, 0, 0x80000000u), EINVAL);
	EXPECT_REFUSED(pin_node(buf, PAGE, -1, SAFEPIN_PIN_MIGRATE), EINVAL);
	/* A node number the kernel can name but that has no memory here. */
	for (int n = 1; n < 64 && absent < 0; n++)
		if (!node_has_memory(n))
			absent = n;
	if (absent > 0)
		EXPECT_REFUSED(pin_node(buf, PAGE, absent, 0), ENODEV);
	/* Unmapped: the core's error, after the node check passed. */
	assert_int_equal(munmap(buf + 2 * PAGE, 2 * PAGE), 0);
	EXPECT_REFUSED(pin_node(buf, 4 * PAGE, 0, 0), EFAULT);
	assert_int_equal(munmap(buf, 2 * PAGE), 0);
}

static void test_opts_size(void **state)
{
	char *buf = map_anon(4 * PAGE, PROT_READ | PROT_WRITE, 0);
	struct {
		struct safepin_pin_opts o;
		char future[16];
	} big;
	struct safepin_pin_opts small = { .size = offsetof(struct safepin_pin_opts, flags) };
	struct safepin_numa_stats ns;

	(void)state;
	/* Shorter than the first version: refused. */
	EXPECT_REFUSED(safepin_pin_opts(buf, PAGE, &small), EINVAL);
	small.size = 0;
	EXPECT_REFUSED(safepin_pin_opts(buf, PAGE, &small), EINVAL);
	/* Longer, with zeros in the unknown part: fine; non-zero: E2BIG. */
	memset(&big, 0, sizeof(big));
	big.o.size = sizeof(big);
	big.o.numa_node = 0;
	assert_int_equal(safepin_pin_opts(buf, PAGE, &big.o), 0);
	assert_int_equal(safepin_unpin(buf, PAGE), 0);
	big.future[15] = 1;
	EXPECT_REFUSED(safepin_pin_opts(buf, PAGE, &big.o), E2BIG);
	/* NULL options: safepin_pin(). */
	assert_int_equal(safepin_pin_opts(buf, 2 * PAGE, NULL), 0);
	assert_true(vma_has_flag(buf, "dc"));
	assert_int_equal(safepin_unpin(buf, 2 * PAGE), 0);
	/* Stats: too small refused; a short structure gets only its fields. */
	ns.size = 1;
	assert_int_equal(safepin_get_numa_stats(&ns), -EINVAL);
	assert_int_equal(safepin_get_numa_stats(NULL), -EINVAL);
	memset(&ns, 0xab, sizeof(ns));
	ns.size = offsetof(struct safepin_numa_stats, pages_elsewhere);
	assert_int_equal(safepin_get_numa_stats(&ns), 0);
	assert_true(ns.placed_registrations >= 1);
	assert_int_equal(ns.pages_elsewhere, 0xababababababababull);
	assert_int_equal(munmap(buf, 4 * PAGE), 0);
}

static void test_node0_placement(void **state)
{
	const size_t n = 2048;	/* 8 MiB */
	char *buf = map_anon(n * PAGE, PROT_READ | PROT_WRITE, 0);
	struct safepin_numa_stats s0 = numa_now(), s1;
	unsigned long m0[MASK_BITS / 64], m1[MASK_BITS / 64];
	int mode0 = policy_of(NULL, m0);

	(void)state;
	assert_int_equal(pin_node(buf, n * PAGE, 0, 0), 0);
	assert_int_equal(pages_on(buf, n, 0), n);
	for (size_t i = 0; i < n; i++)
		assert_true(pagemap_entry(buf + i * PAGE) & PM_PRESENT);
	assert_true(vma_has_flag(buf, "dc"));
	/* The thread's policy is back; the VMA got none. */
	assert_int_equal(policy_of(NULL, m1), mode0);
	assert_memory_equal(m0, m1, sizeof(m0));
	assert_int_equal(policy_of(buf, m1), MPOL_DEFAULT);
	s1 = numa_now();
	assert_int_equal(s1.placed_registrations, s0.placed_registrations + 1);
	assert_int_equal(s1.pages_off_node, s0.pages_off_node);
	assert_int_equal(safepin_unpin(buf, n * PAGE), 0);
	assert_false(vma_has_flag(buf, "dc"));
	assert_int_equal(munmap(buf, n * PAGE), 0);
}

/* The application's own thread and VMA policies survive a placed pin. */
static void test_policies_kept(void **state)
{
	char *buf = map_anon(64 * PAGE, PROT_READ | PROT_WRITE, 0);
	unsigned long mask[MASK_BITS / 64] = { 1 }, got[MASK_BITS / 64];
	uintptr_t s0, e0, s1, e1;

	(void)state;
	/* VMA policy on the middle: the VMA splits now, not because of us. */
	assert_int_equal(syscall(SYS_mbind, buf + 16 * PAGE, 32 * PAGE, MPOL_BIND, mask,
				 MASK_BITS, 0), 0);
	assert_true(vma_bounds(buf + 16 * PAGE, &s0, &e0));
	/* A thread policy with a mode flag (MPOL_F_STATIC_NODES). */
	assert_int_equal(syscall(SYS_set_mempolicy, MPOL_BIND | (1 << 15), mask, MASK_BITS), 0);
	assert_int_equal(pin_node(buf, 64 * PAGE, 0, 0), 0);
	assert_int_equal(pages_on(buf, 64, 0), 64);
	assert_int_equal(policy_of(NULL, got), MPOL_BIND | (1 << 15));
	assert_int_equal(got[0], 1);
	assert_int_equal(policy_of(buf + 16 * PAGE, got), MPOL_BIND);
	assert_int_equal(got[0], 1);
	assert_int_equal(policy_of(buf, got), MPOL_DEFAULT);
	assert_true(vma_bounds(buf + 16 * PAGE, &s1, &e1));
	assert_int_equal(s1, s0);
	assert_int_equal(e1, e0);
	assert_int_equal(safepin_unpin(buf, 64 * PAGE), 0);
	assert_int_equal(syscall(SYS_set_mempolicy, MPOL_DEFAULT, NULL, 0), 0);
	assert_int_equal(policy_of(NULL, got), MPOL_DEFAULT);
	assert_int_equal(munmap(buf, 64 * PAGE), 0);
}

/* One node: nothing is elsewhere, so SAFEPIN_PIN_MIGRATE moves nothing. */
static void test_migrate_one_node(void **state)
{
	const size_t n = 256;
	char *buf = map_anon(n * PAGE, PROT_READ | PROT_WRITE, 0);
	struct safepin_numa_stats s0, s1;

	(void)state;
	memset(buf, 0x5a, n * PAGE / 2);	/* half present before the pin */
	s0 = numa_now();
	assert_int_equal(pin_node(buf, n * PAGE, 0, SAFEPIN_PIN_MIGRATE), 0);
	s1 = numa_now();
	assert_int_equal(pages_on(buf, n, 0), n);
	assert_int_equal(s1.pages_elsewhere, s0.pages_elsewhere);
	assert_int_equal(s1.pages_migrated, s0.pages_migrated);
	assert_int_equal(s1.pages_migrate_failed, s0.pages_migrate_failed);
	assert_int_equal(s1.pages_off_node, s0.pages_off_node);
	for (size_t i = 0; i < n * PAGE / 2; i++)
		if (buf[i] != 0x5a)
			fail_msg("byte %zu changed", i);
	assert_int_equal(safepin_unpin(buf, n * PAGE), 0);
	assert_int_equal(munmap(buf, n * PAGE), 0);
}

static void test_device_helpers(void **state)
{
	(void)state;
	errno = 0;
	assert_int_equal(safepin_numa_node_of_pci(NULL), -EINVAL);
	assert_int_equal(errno, EINVAL);
	assert_int_equal(safepin_numa_node_of_pci(""), -EINVAL);
	assert_int_equal(safepin_numa_node_of_pci("../../../etc"), -EINVAL);
	assert_int_equal(safepin_numa_node_of_pci("0000:00:00"), -EINVAL);
	assert_int_equal(safepin_numa_node_of_pci("0000:00:20.0"), -EINVAL);	/* device > 31 */
	assert_int_equal(safepin_numa_node_of_pci("0000:00:00.8"), -EINVAL);	/* function > 7 */
	assert_int_equal(safepin_numa_node_of_pci("0000:00:00.0 "), -EINVAL);
	errno = 0;
	assert_int_equal(safepin_numa_node_of_pci("fffe:fe:1f.7"), -ENODEV);
	assert_int_equal(errno, ENODEV);
	/* Devices that exist: a node, or -1 (no affinity). */
	if (!access("/sys/bus/pci/devices/0000:00:00.0", F_OK)) {
		int n = safepin_numa_node_of_pci("0000:00:00.0");

		assert_true(n >= -1);
		assert_int_equal(safepin_numa_node_of_pci("00:00.0"), n);
		assert_int_equal(safepin_numa_node_of_pci("0000:00:00.0"), n);
	}
}

static void test_alloc_roundtrip(void **state)
{
	struct safepin_alloc_opts o = { .size = sizeof(o), .numa_node = 0 };
	struct safepin_stats s0 = stats_now(), s1;
	const size_t len = 3 * 1024 * 1024 + 100;
	size_t n = (len + PAGE - 1) / PAGE;
	unsigned char *p;

	(void)state;
	p = safepin_alloc(len, &o);
	assert_non_null(p);
	assert_int_equal((uintptr_t)p % (2u << 20), 0);	/* THP-friendly */
	s1 = stats_now();
	assert_int_equal(s1.live_registrations, s0.live_registrations + 1);
	assert_int_equal(pages_on((char *)p, n, 0), n);
	assert_true(vma_has_flag(p, "dc"));
	for (size_t i = 0; i < len; i += 4096)
		assert_int_equal(p[i], 0);
	memset(p, 0x77, len);
	/* Not as allocated: refused, nothing unmapped. */
	assert_int_equal(safepin_free(p, len - 1), -ENOENT);
	assert_int_equal(safepin_free(p + PAGE, len - PAGE), -ENOENT);
	assert_int_equal(safepin_free(p + 1, len), -EINVAL);
	assert_int_equal(safepin_free(NULL, len), -EINVAL);
	assert_int_equal(p[len - 1], 0x77);
	assert_int_equal(safepin_free(p, len), 0);
	assert_int_equal(stats_now().live_registrations, s0.live_registrations);
	assert_false(vma_bounds(p, &(uintptr_t){ 0 }, &(uintptr_t){ 0 }));
	assert_false(vma_bounds(p + len - 1, &(uintptr_t){ 0 }, &(uintptr_t){ 0 }));
	errno = 0;
	assert_int_equal(safepin_free(p, len), -ENOENT);	/* twice */
	assert_int_equal(errno, ENOENT);

	/* Small, no node, no options. */
	p = safepin_alloc(100, NULL);
	assert_non_null(p);
	assert_int_equal((uintptr_t)p % PAGE, 0);
	assert_true(pagemap_entry(p) & PM_PRESENT);
	assert_int_equal(safepin_free(p, 100), 0);

	/* THP advice. */
	o.flags = SAFEPIN_ALLOC_THP;
	p = safepin_alloc(4u << 20, &o);
	assert_non_null(p);
	assert_true(vma_has_flag(p, "hg"));
	assert_int_equal(safepin_free(p, 4u << 20), 0);
}

static void test_alloc_hugetlb(void **state)
{
	struct safepin_alloc_opts o = { .size = sizeof(o), .numa_node = 0,
					.flags = SAFEPIN_ALLOC_HUGETLB };
	unsigned char *p;

	(void)state;
	if (hugetlb_reserve(2) < 2) {
		hugetlb_unreserve();
		skip();
	}
	p = safepin_alloc(3u << 20, &o);	/* two 2 MiB pages */
	assert_non_null(p);
	assert_int_equal((uintptr_t)p % (2u << 20), 0);
	assert_true(vma_has_flag(p, "ht"));
	assert_true(vma_has_flag(p, "dc"));
	assert_int_equal(smaps_field_kb(p, "KernelPageSize:"), 2048);
	assert_int_equal(pages_on((char *)p, 1024, 0), 1024);
	assert_int_equal(safepin_free(p, 3u << 20), 0);
	assert_false(vma_bounds(p + (4u << 20) - 1, &(uintptr_t){ 0 }, &(uintptr_t){ 0 }));
	o.huge_page_size = 2u << 20;
	p = safepin_alloc(2u << 20, &o);
	assert_non_null(p);
	assert_int_equal(safepin_free(p, 2u << 20), 0);
	hugetlb_unreserve();
}

#define EXPECT_ALLOC_REFUSED(len, opts, err)                                          \
	do {                                                                          \
		struct safepin_stats s0_ = stats_now();                               \
		smaps_flags_snapshot_buf(snap_before, sizeof(snap_before));           \
		errno = 0;                                                            \
		assert_null(safepin_alloc((len), (opts)));                            \
		assert_int_equal(errno, (err));                                       \
		smaps_flags_snapshot_buf(snap_after, sizeof(snap_after));             \
		assert_same_snapshot(snap_before, snap_after);                        \
		assert_int_equal(stats_now().live_registrations,                      \
				 s0_.live_registrations);                             \
	} while (0)

static void test_alloc_errors(void **state)
{
	struct safepin_alloc_opts o = { .size = sizeof(o), .numa_node = 0 };
	struct {
		struct safepin_alloc_opts o;
		long future;
	} big = { .o = { .size = sizeof(big), .numa_node = -1 }, .future = 1 };

	(void)state;
	EXPECT_ALLOC_REFUSED(0, &o, EINVAL);
	EXPECT_ALLOC_REFUSED(SIZE_MAX - 10, &o, ENOMEM);
	o.flags = 4;
	EXPECT_ALLOC_REFUSED(PAGE, &o, EINVAL);
	o.flags = SAFEPIN_ALLOC_HUGETLB | SAFEPIN_ALLOC_THP;
	EXPECT_ALLOC_REFUSED(PAGE, &o, EINVAL);
	o.flags = 0;
	o.huge_page_size = 2u << 20;		/* without HUGETLB */
	EXPECT_ALLOC_REFUSED(PAGE, &o, EINVAL);
	o.flags = SAFEPIN_ALLOC_HUGETLB;
	o.huge_page_size = 3u << 20;		/* not a power of two */
	EXPECT_ALLOC_REFUSED(PAGE, &o, EINVAL);
	o.huge_page_size = PAGE;		/* not a huge page */
	EXPECT_ALLOC_REFUSED(PAGE, &o, EINVAL);
	o.huge_page_size = 0;
	o.flags = 0;
	o.numa_node = -5;
	EXPECT_ALLOC_REFUSED(PAGE, &o, EINVAL);
	o.numa_node = 1 << 20;
	EXPECT_ALLOC_REFUSED(PAGE, &o, EINVAL);
	if (!node_has_memory(1)) {
		o.numa_node = 1;
		EXPECT_ALLOC_REFUSED(PAGE, &o, ENODEV);
	}
	o.size = 4;
	EXPECT_ALLOC_REFUSED(PAGE, &o, EINVAL);
	EXPECT_ALLOC_REFUSED(PAGE, &big.o, E2BIG);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_errors),
		cmocka_unit_test(test_opts_size),
		cmocka_unit_test(test_node0_placement),
		cmocka_unit_test(test_policies_kept),
		cmocka_unit_test(test_migrate_one_node),
		cmocka_unit_test(test_device_helpers),
		cmocka_unit_test(test_alloc_roundtrip),
		cmocka_unit_test(test_alloc_hugetlb),
		cmocka_unit_test(test_alloc_errors),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
