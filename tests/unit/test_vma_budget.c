// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * No surprise VMA growth (invariant 10) on the host kernel: 100k
 * register/deregister cycles of sub-page and page ranges in the middle of
 * one VMA (each one splits it in three and merges it back) leave the VMA
 * count of the process flat, and safepin_vma_budget() reports the count
 * (as /proc/self/maps has it) and vm.max_map_count.  The ENOMEM side, with
 * the limit lowered, runs in the guests (tests/guest/budget): the sysctl
 * is the host's, shared with everything else running there.
 */
#include <errno.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "helpers.h"

/* Sanitizer runtimes map memory of their own at any time. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

#define CYCLES 100000

static long maps_lines(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	long n = 0;
	int c;

	assert_non_null(f);
	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static long max_map_count(void)
{
	FILE *f = fopen("/proc/sys/vm/max_map_count", "re");
	long v = -1;

	assert_non_null(f);
	assert_int_equal(fscanf(f, "%ld", &v), 1);
	fclose(f);
	return v;
}

static void test_budget_api(void **state)
{
	struct safepin_vma_budget b = { .size = sizeof(b) };
	struct safepin_vma_budget small = { .size = offsetof(struct safepin_vma_budget, vma_free) };
	long lines;

	(void)state;
	assert_int_equal(safepin_vma_budget(&b), 0);
	lines = maps_lines();
	/* Nothing maps or unmaps in between here, but allow the odd stdio buffer. */
	assert_true((long)b.vma_count >= lines - 2 && (long)b.vma_count <= lines + 2);
	assert_int_equal(b.vma_limit, max_map_count());
	assert_int_equal(b.vma_free, b.vma_limit - b.vma_count);
	printf("vma budget: count %llu limit %llu free %llu\n",
	       (unsigned long long)b.vma_count, (unsigned long long)b.vma_limit,
	       (unsigned long long)b.vma_free);

	/* An older caller's struct: fields beyond its size are not written. */
	small.vma_free = 12345;
	assert_int_equal(safepin_vma_budget(&small), 0);
	assert_int_equal(small.vma_free, 12345);
	assert_true(small.vma_limit > 0);

	errno = 0;
	assert_int_equal(safepin_vma_budget(NULL), -EINVAL);
	assert_int_equal(errno, EINVAL);
	small.size = sizeof(size_t);
	assert_int_equal(safepin_vma_budget(&small), -EINVAL);
}

/* VMAs of /proc/self/maps intersecting [addr, addr + len). */
static long vmas_in(const void *addr, size_t len)
{
	FILE *f = fopen("/proc/self/maps", "re");
	unsigned long s, e, a = (uintptr_t)addr;
	char line[512];
	long n = 0;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "%lx-%lx", &s, &e) == 2 && s < a + len && e > a)
			n++;
	fclose(f);
	return n;
}

/*
 * A registration splits its VMA (+2) and the last deregistration merges it
 * back, seen in the buffer and in safepin_vma_budget() (exactly, where no
 * sanitizer runtime maps memory of its own in between).
 */
static void test_registration_costs_two_then_none(void **state)
{
	char *buf = map_anon(16 * PAGE, PROT_READ | PROT_WRITE, 0);
	struct safepin_vma_budget b0 = { .size = sizeof(b0) }, b1 = b0, b2 = b0;
	long in0, in1, in2;

	(void)state;
	/* The library's bookkeeping first. */
	assert_int_equal(safepin_pin(buf, PAGE, 0), 0);
	assert_int_equal(safepin_unpin(buf, PAGE), 0);
	in0 = vmas_in(buf, 16 * PAGE);
	assert_int_equal(safepin_vma_budget(&b0), 0);
	assert_int_equal(safepin_pin(buf + 4 * PAGE + 10, 2 * PAGE, 0), 0);
	assert_int_equal(safepin_vma_budget(&b1), 0);
	in1 = vmas_in(buf, 16 * PAGE);
	assert_int_equal(safepin_unpin(buf + 4 * PAGE + 10, 2 * PAGE), 0);
	assert_int_equal(safepin_vma_budget(&b2), 0);
	in2 = vmas_in(buf, 16 * PAGE);
	munmap(buf, 16 * PAGE);
	assert_int_equal(in0, 1);
	assert_int_equal(in1, 3);
	assert_int_equal(in2, 1);
	if (!SANITIZED) {
		assert_int_equal(b1.vma_count, b0.vma_count + 2);
		assert_int_equal(b1.vma_free + 2, b0.vma_free);
		assert_int_equal(b2.vma_count, b0.vma_count);
	}
}

static void test_100k_cycles_flat(void **state)
{
	char *buf = map_anon(64 * PAGE, PROT_READ | PROT_WRITE, 0);
	struct safepin_vma_budget b0 = { .size = sizeof(b0) }, b = b0;
	long before, peak = 0, after;
	char marks[65];

	(void)state;
	assert_int_equal(safepin_vma_budget(&b0), 0);
	before = maps_lines();
	for (int i = 0; i < CYCLES; i++) {
		/* Sub-page, page-aligned and overlapping pairs, all over the buffer. */
		char *a = buf + PAGE * (size_t)(1 + i % 50) + (size_t)(i % 7) * 300;
		size_t len = (size_t)(1 + i % 3) * PAGE - (size_t)(i % 5) * 100;

		assert_int_equal(safepin_pin(a, len, 0), 0);
		if (i % 4 == 0) {
			assert_int_equal(safepin_pin(a + 100, PAGE, 0), 0);
			assert_int_equal(safepin_unpin(a + 100, PAGE), 0);
		}
		assert_int_equal(safepin_unpin(a, len), 0);
		if (i % 10000 == 0) {
			assert_int_equal(safepin_vma_budget(&b), 0);
			if ((long)b.vma_count > peak)
				peak = (long)b.vma_count;
		}
	}
	after = maps_lines();
	assert_int_equal(safepin_vma_budget(&b), 0);
	printf("%d cycles: /proc/self/maps %ld lines before, %ld after (sampled peak %ld); "
	       "budget count %llu -> %llu\n", CYCLES, before, after, peak,
	       (unsigned long long)b0.vma_count, (unsigned long long)b.vma_count);
	/* The whole process's count: the sanitizers' and valgrind's runtimes
	 * map memory of their own as they go (both grew it by one over the
	 * loop: TSan's allocator, valgrind's translation cache). */
	if (!SANITIZED && !under_valgrind()) {
		assert_int_equal(after, before);
		assert_true(peak <= before + 1);	/* sampled between cycles: nothing left split */
	}
	assert_int_equal(vmas_in(buf, 64 * PAGE), 1);
	fork_marks(buf, 64, marks);
	assert_string_equal(marks, "................................................................");
	assert_int_equal(stats_now().live_registrations, 0);
	assert_int_equal(stats_now().pages_marked, 0);
	munmap(buf, 64 * PAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_budget_api),
		cmocka_unit_test(test_registration_costs_two_then_none),
		cmocka_unit_test(test_100k_cycles_flat),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
