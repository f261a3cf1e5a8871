// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Lifetime violations seen by the userfaultfd monitor (linked
 * applications), and safepin_audit() catching registrations broken behind
 * the library's back.  The monitor tests are skipped where userfaultfd is
 * not available to this process.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <cmocka.h>

#include "helpers.h"

static struct {
	int calls;
	struct safepin_violation last;
} cb;

static void on_violation(const struct safepin_violation *v, void *arg)
{
	(void)arg;
	cb.last = *v;
	__atomic_add_fetch(&cb.calls, 1, __ATOMIC_RELEASE);
}

static int monitor_setup(void **state)
{
	struct safepin_monitor_opts o = { sizeof(o), on_violation, NULL };
	int ret;

	(void)state;
	memset(&cb, 0, sizeof(cb));
	ret = safepin_monitor_start(&o);
	if (ret)
		print_message("monitor unavailable: %s\n", strerror(-ret));
	return 0;
}

static int monitor_teardown(void **state)
{
	(void)state;
	safepin_monitor_stop();
	return 0;
}

/* The callback runs on the monitor's thread after the counts were dropped. */
static int calls_after(int n)
{
	for (int i = 0; i < 2000 && __atomic_load_n(&cb.calls, __ATOMIC_ACQUIRE) < n; i++)
		usleep(1000);
	return __atomic_load_n(&cb.calls, __ATOMIC_ACQUIRE);
}

static bool monitor_on(void)
{
	struct safepin_monitor_opts o = { sizeof(o), on_violation, NULL };

	/* Running already (setup started it): -EALREADY. */
	return safepin_monitor_start(&o) == -EALREADY;
}

/* Raw syscalls: nothing in this process could interpose them. */
static int raw_munmap(void *p, size_t len)
{
	return (int)syscall(SYS_munmap, p, len);
}

static int raw_madvise(void *p, size_t len, int adv)
{
	return (int)syscall(SYS_madvise, p, len, adv);
}

static void *map_at(void *addr, size_t len)
{
	void *p = mmap(addr, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);

	assert_ptr_equal(p, addr);
	return p;
}

/*
 * The test libibverbs fails: register, munmap without deregistering, new
 * memory at the same address, register again: it must be marked.  No sleep
 * anywhere: munmap returns once the monitor read the event, and the monitor
 * drops the counts before any later registration gets the lock.
 */
static void test_munmap_reuse(void **state)
{
	uint64_t v0 = stats_now().violations;
	char *p;

	(void)state;
	if (!monitor_on())
		skip();
	p = map_anon(4 * PAGE, PROT_READ | PROT_WRITE, 0);
	assert_int_equal(safepin_pin(p, 4 * PAGE, 0), 0);
	assert_true(vma_has_flag(p, "dc"));
	assert_int_equal(raw_munmap(p, 4 * PAGE), 0);
	map_at(p, 4 * PAGE);
	assert_int_equal(safepin_pin(p, 4 * PAGE, 0), 0);
	assert_true(vma_has_flag(p, "dc"));
	assert_int_equal(stats_now().violations, v0 + 1);
	assert_int_equal(calls_after(1), 1);
	assert_int_equal(cb.last.kind, SAFEPIN_VIOLATION_MUNMAP);
	assert_ptr_equal(cb.last.reg_addr, p);
	assert_int_equal(cb.last.reg_len, 4 * PAGE);
	assert_int_equal(stats_now().live_registrations, 1);
	/* The violated registration's unpin: succeeds, changes nothing. */
	assert_int_equal(safepin_unpin(p, 4 * PAGE), 0);
	assert_true(vma_has_flag(p, "dc"));
	assert_int_equal(safepin_unpin(p, 4 * PAGE), 0);
	assert_false(vma_has_flag(p, "dc"));
	assert_int_equal(safepin_unpin(p, 4 * PAGE), -ENOENT);
	assert_int_equal(stats_now().pages_marked, 0);
	munmap(p, 4 * PAGE);
}

/* Part of a registration unmapped: the rest stays counted and marked. */
static void test_munmap_partial(void **state)
{
	char *p;

	(void)state;
	if (!monitor_on())
		skip();
	p = map_anon(4 * PAGE, PROT_READ | PROT_WRITE, 0);
	assert_int_equal(safepin_pin(p, 4 * PAGE, 0), 0);
	assert_int_equal(raw_munmap(p + PAGE, PAGE), 0);
	assert_int_equal(calls_after(1), 1);
	assert_true(vma_has_flag(p, "dc"));
	assert_true(vma_has_flag(p + 2 * PAGE, "dc"));
	assert_int_equal(stats_now().pages_marked, 3);
	assert_int_equal(safepin_unpin(p, 4 * PAGE), 0);
	assert_false(vma_has_flag(p, "dc"));
	assert_false(vma_has_flag(p + 3 * PAGE, "dc"));
	assert_int_equal(stats_now().pages_marked, 0);
	munmap(p, 4 * PAGE);
}

static void test_mremap(void **state)
{
	char *p, *q;

	(void)state;
	if (!monitor_on())
		skip();
	p = map_anon(4 * PAGE, PROT_READ | PROT_WRITE, 0);
	q = map_anon(4 * PAGE, PROT_READ | PROT_WRITE, 0);
	assert_int_equal(safepin_pin(p, 4 * PAGE, 0), 0);
	assert_ptr_equal(mremap(p, 4 * PAGE, 4 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, q), q);
	assert_int_equal(calls_after(1), 1);
	assert_int_equal(cb.last.kind, SAFEPIN_VIOLATION_MREMAP);
	map_at(p, 4 * PAGE);
	assert_int_equal(safepin_pin(p, 4 * PAGE, 0), 0);
	assert_true(vma_has_flag(p, "dc"));
	assert_int_equal(safepin_unpin(p, 4 * PAGE), 0);
	assert_int_equal(safepin_unpin(p, 4 * PAGE), 0);
	assert_false(vma_has_flag(p, "dc"));
	/* No longer watched where it moved: unmapping it reports nothing. */
	munmap(q, 4 * PAGE);
	usleep(20000);
	assert_int_equal(calls_after(1), 1);
	munmap(p, 4 * PAGE);
}

static void discard(int advice)
{
	char *p;

	if (!monitor_on())
		skip();
	p = map_anon(4 * PAGE, PROT_READ | PROT_WRITE, 0);
	memset(p, 1, 4 * PAGE);
	assert_int_equal(safepin_pin(p, 4 * PAGE, 0), 0);
	assert_int_equal(raw_madvise(p, 4 * PAGE, advice), 0);
	assert_int_equal(calls_after(1), 1);
	assert_int_equal(cb.last.kind, SAFEPIN_VIOLATION_REMOVE);
	/* Still mapped: unmarked, since nothing counts it any more. */
	assert_false(vma_has_flag(p, "dc"));
	p[0] = 2;	/* touching it faults normally (no hang) */
	assert_int_equal(safepin_pin(p, 4 * PAGE, 0), 0);
	assert_true(vma_has_flag(p, "dc"));
	assert_int_equal(safepin_unpin(p, 4 * PAGE), 0);
	assert_int_equal(safepin_unpin(p, 4 * PAGE), 0);
	assert_false(vma_has_flag(p, "dc"));
	munmap(p, 4 * PAGE);
}

static void test_dontneed(void **state)
{
	(void)state;
	discard(MADV_DONTNEED);
}

static void test_madv_free(void **state)
{
	(void)state;
	discard(MADV_FREE);
}

/* MADV_REMOVE: shared memory (counted, never marked). */
static void test_remove(void **state)
{
	char *p;

	(void)state;
	if (!monitor_on())
		skip();
	p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	memset(p, 1, 4 * PAGE);
	assert_int_equal(safepin_pin(p, 4 * PAGE, 0), 0);
	assert_int_equal(raw_madvise(p, 4 * PAGE, MADV_REMOVE), 0);
	assert_int_equal(calls_after(1), 1);
	assert_int_equal(cb.last.kind, SAFEPIN_VIOLATION_REMOVE);
	assert_int_equal(p[0], 0);
	assert_int_equal(safepin_unpin(p, 4 * PAGE), 0);
	assert_int_equal(stats_now().live_registrations, 0);
	munmap(p, 4 * PAGE);
}

/* Unregistered memory: no event reaches anyone, nothing is reported. */
static void test_unregistered_quiet(void **state)
{
	char *p;

	(void)state;
	if (!monitor_on())
		skip();
	p = map_anon(4 * PAGE, PROT_READ | PROT_WRITE, 0);
	assert_int_equal(safepin_pin(p, 4 * PAGE, 0), 0);
	assert_int_equal(safepin_unpin(p, 4 * PAGE), 0);
	assert_int_equal(raw_munmap(p, 4 * PAGE), 0);
	usleep(20000);
	assert_int_equal(__atomic_load_n(&cb.calls, __ATOMIC_ACQUIRE), 0);
}

/* ---- audit (no monitor) ---- */

static struct safepin_audit_report audit_now(void)
{
	struct safepin_audit_report r = { .size = sizeof(r), .flags = SAFEPIN_AUDIT_PRINT };

	assert_int_equal(safepin_audit(&r), 0);
	return r;
}

static void test_audit_clean(void **state)
{
	struct safepin_audit_report r;
	char *p;

	(void)state;
	p = map_anon(8 * PAGE, PROT_READ | PROT_WRITE, 0);
	assert_int_equal(safepin_pin(p, 8 * PAGE, 0), 0);
	r = audit_now();
	assert_int_equal(r.registrations, 1);
	assert_int_equal(r.pages, 8);
	assert_int_equal(r.bad, 0);
	assert_int_equal(safepin_unpin(p, 8 * PAGE), 0);
	munmap(p, 8 * PAGE);
}

static void test_audit_dofork(void **state)
{
	struct safepin_audit_report r;
	char *p;

	(void)state;
	p = map_anon(4 * PAGE, PROT_READ | PROT_WRITE, 0);
	assert_int_equal(safepin_pin(p, 4 * PAGE, 0), 0);
	assert_int_equal(raw_madvise(p, 4 * PAGE, MADV_DOFORK), 0);
	r = audit_now();
	assert_int_equal(r.bad, 1);
	assert_int_equal(r.unmarked, 1);
	assert_int_equal(r.unmapped, 0);
	assert_int_equal(safepin_unpin(p, 4 * PAGE), 0);
	munmap(p, 4 * PAGE);
}

static void test_audit_remapped(void **state)
{
	struct safepin_audit_report r;
	char *p, *q;

	(void)state;
	p = map_anon(4 * PAGE, PROT_READ | PROT_WRITE, 0);
	assert_int_equal(safepin_pin(p, 4 * PAGE, 0), 0);
	/* New pages allocated while the old ones exist: other physical pages
	 * for sure (freed pages are often handed out again at once). */
	q = map_anon(4 * PAGE, PROT_READ | PROT_WRITE, 0);
	memset(q, 3, 4 * PAGE);
	assert_int_equal(raw_munmap(p, 4 * PAGE), 0);
	r = audit_now();
	assert_int_equal(r.unmapped, 1);
	assert_ptr_equal(syscall(SYS_mremap, q, 4 * PAGE, 4 * PAGE, MREMAP_MAYMOVE | MREMAP_FIXED, p),
			 p);
	r = audit_now();
	assert_int_equal(r.unmapped, 0);
	assert_int_equal(r.unmarked, 1);
	if (r.pfns > 0)
		assert_int_equal(r.moved, 1);
	print_message("physical pages: %s\n", r.pfns > 0 ? "compared, moved" : "not compared");
	assert_int_equal(safepin_unpin(p, 4 * PAGE), 0);
	munmap(p, 4 * PAGE);
}

static void test_audit_discarded(void **state)
{
	struct safepin_audit_report r;
	char *p;

	(void)state;
	p = map_anon(4 * PAGE, PROT_READ | PROT_WRITE, 0);
	assert_int_equal(safepin_pin(p, 4 * PAGE, 0), 0);
	assert_int_equal(raw_madvise(p + PAGE, PAGE, MADV_DONTNEED), 0);
	r = audit_now();
	assert_int_equal(r.not_present, 1);
	assert_int_equal(r.unmarked, 0);
	assert_int_equal(safepin_unpin(p, 4 * PAGE), 0);
	munmap(p, 4 * PAGE);
}

static void test_audit_bad_args(void **state)
{
	struct safepin_audit_report r = { .size = 8 };

	(void)state;
	assert_int_equal(safepin_audit(NULL), -EINVAL);
	assert_int_equal(safepin_audit(&r), -EINVAL);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_munmap_reuse, monitor_setup, monitor_teardown),
		cmocka_unit_test_setup_teardown(test_munmap_partial, monitor_setup, monitor_teardown),
		cmocka_unit_test_setup_teardown(test_mremap, monitor_setup, monitor_teardown),
		cmocka_unit_test_setup_teardown(test_dontneed, monitor_setup, monitor_teardown),
		cmocka_unit_test_setup_teardown(test_madv_free, monitor_setup, monitor_teardown),
		cmocka_unit_test_setup_teardown(test_remove, monitor_setup, monitor_teardown),
		cmocka_unit_test_setup_teardown(test_unregistered_quiet, monitor_setup,
						monitor_teardown),
		cmocka_unit_test(test_audit_clean),
		cmocka_unit_test(test_audit_dofork),
		cmocka_unit_test(test_audit_remapped),
		cmocka_unit_test(test_audit_discarded),
		cmocka_unit_test(test_audit_bad_args),
	};

	/* Record PFNs at pin time (compared where pagemap shows them: root). */
	setenv("SAFEPIN_AUDIT_PFNS", "1", 1);
	return cmocka_run_group_tests(tests, NULL, NULL);
}
