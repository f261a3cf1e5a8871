// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The fork protocol on the host kernel: the guard keeps fork() out of a
 * registration in flight, the child starts with an empty, usable library,
 * and bytes that share a page with a registration are still in the child.
 */
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <safepin/safepin.h>

#include "helpers.h"

/* Run @fn in a forked child; its return value is the child's exit code. */
static int in_child(int (*fn)(void *), void *arg)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0)
		_exit(fn(arg));
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status))
		return 100 + WTERMSIG(status);
	return WEXITSTATUS(status);
}

static int check_clean_child(void *arg)
{
	char *parent_buf = arg;
	struct safepin_stats st = { .size = sizeof(st) };
	char *mine;

	if (safepin_get_stats(&st) || st.live_registrations || st.pages_marked)
		return 1;
	/* The parent's registration is not the child's to release. */
	if (safepin_unpin(parent_buf, 8 * PAGE) != -ENOENT || errno != ENOENT)
		return 2;
	mine = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mine == MAP_FAILED || safepin_pin(mine, 4 * PAGE, 0))
		return 3;
	if (!vma_has_flag(mine, "dc"))
		return 4;
	if (safepin_unpin(mine, 4 * PAGE) || vma_has_flag(mine, "dc"))
		return 5;
	return 0;
}

static void test_child_starts_clean(void **state)
{
	char *buf = map_anon(8 * PAGE, PROT_READ | PROT_WRITE, 0);

	(void)state;
	assert_int_equal(safepin_pin(buf, 8 * PAGE, 0), 0);
	assert_int_equal(in_child(check_clean_child, buf), 0);
	/* The parent's registration is untouched by the child. */
	assert_true(vma_has_flag(buf, "dc"));
	assert_int_equal(safepin_unpin(buf, 8 * PAGE), 0);
	munmap(buf, 8 * PAGE);
}

/*
 * Layout over five pages, registration R = [page0 + 1000, page3 + 300):
 *   page 0: partial edge, bytes [0, 1000) are someone else's
 *   page 1, 2: fully registered: absent in the child
 *   page 3: partial edge, bytes [300, 4096) are someone else's
 *   page 4: not registered at all
 */
struct layout {
	enum safepin_policy policy;
	unsigned char *base;
	unsigned char *reg;
	size_t reg_len;
};

static int check_neighbours(void *arg)
{
	const struct layout *l = arg;
	unsigned char vec;

	for (size_t i = 0; i < 1000; i++)
		if (l->base[i] != 0x11)
			return 1;
	for (size_t i = 3 * PAGE + 300; i < 5 * PAGE; i++)
		if (l->base[i] != 0x33)
			return 2;
	if (l->policy == SAFEPIN_POLICY_ZERO_FILL) {
		/* Fully registered pages read as zeros in the child. */
		for (size_t i = PAGE; i < 3 * PAGE; i++)
			if (l->base[i])
				return 3;
	} else {
		/* Fully registered pages are not in the child. */
		if (mincore(l->base + PAGE, PAGE, &vec) != -1 || errno != ENOMEM)
			return 3;
		if (mincore(l->base + 2 * PAGE, PAGE, &vec) != -1 || errno != ENOMEM)
			return 4;
	}
	/* The restored edge pages are usable memory. */
	l->base[10] = 0x77;
	l->base[4 * PAGE - 1] = 0x77;
	return 0;
}

static void run_neighbour_test(enum safepin_policy policy)
{
	struct layout l;

	assert_int_equal(safepin_set_policy(policy), 0);
	l.policy = policy;
	l.base = map_anon(5 * PAGE, PROT_READ | PROT_WRITE, 0);
	memset(l.base, 0x11, PAGE);
	memset(l.base + PAGE, 0x22, 2 * PAGE);
	memset(l.base + 3 * PAGE, 0x33, 2 * PAGE);
	l.reg = l.base + 1000;
	l.reg_len = 3 * PAGE + 300 - 1000;
	assert_int_equal(safepin_pin(l.reg, l.reg_len, 0), 0);
	if (policy == SAFEPIN_POLICY_ZERO_FILL) {
		char marks[8];

		fork_marks(l.base, 5, marks);
		assert_string_equal(marks, "WWWW.");
	}
	assert_int_equal(in_child(check_neighbours, &l), 0);
	/* The parent's pages are untouched by the child's writes. */
	assert_int_equal(l.base[10], 0x11);
	assert_int_equal(safepin_unpin(l.reg, l.reg_len), 0);
	munmap(l.base, 5 * PAGE);
	assert_int_equal(safepin_set_policy(SAFEPIN_POLICY_DONTFORK), 0);
}

static void test_subpage_neighbours_dontfork(void **state)
{
	(void)state;
	run_neighbour_test(SAFEPIN_POLICY_DONTFORK);
}

static void test_subpage_neighbours_zero_fill(void **state)
{
	(void)state;
	run_neighbour_test(SAFEPIN_POLICY_ZERO_FILL);
}

/* A malloc chunk that shares a page with a registered malloc buffer. */
static int check_heap_neighbour(void *arg)
{
	char **chunks = arg;

	return strcmp(chunks[0], "neighbour before") || strcmp(chunks[2], "neighbour after");
}

static void test_heap_neighbours(void **state)
{
	char *chunks[3];

	(void)state;
	chunks[0] = strdup("neighbour before");
	chunks[1] = malloc(600);	/* the DMA buffer, likely sharing pages with both */
	chunks[2] = strdup("neighbour after");
	assert_int_equal(safepin_pin(chunks[1], 600, 0), 0);
	assert_true(vma_has_flag(chunks[1], "dc"));
	assert_int_equal(in_child(check_heap_neighbour, chunks), 0);
	assert_int_equal(safepin_unpin(chunks[1], 600), 0);
	free(chunks[0]);
	free(chunks[1]);
	free(chunks[2]);
}

/* Invariant 4: fork() waits for a thread inside the guard. */
static atomic_int guard_step;

static void *hold_guard(void *arg)
{
	struct timespec ts = { 0, 200 * 1000 * 1000 };

	(void)arg;
	safepin_fork_guard_enter();
	atomic_store(&guard_step, 1);
	nanosleep(&ts, NULL);
	atomic_store(&guard_step, 2);	/* e.g. "the device pinned the range" */
	safepin_fork_guard_exit();
	return NULL;
}

static int check_guard_done(void *arg)
{
	(void)arg;
	return atomic_load(&guard_step) == 2 ? 0 : 1;
}

static void test_guard_holds_off_fork(void **state)
{
	pthread_t t;

	(void)state;
	atomic_store(&guard_step, 0);
	assert_int_equal(pthread_create(&t, NULL, hold_guard, NULL), 0);
	while (atomic_load(&guard_step) == 0)
		sched_yield();
	/* The child must see the guarded section finished, never half-way. */
	assert_int_equal(in_child(check_guard_done, NULL), 0);
	pthread_join(t, NULL);
}

/*
 * The storm: threads pin and unpin overlapping sub-page ranges of one arena
 * while the main thread forks.  The test's own record of live ranges is
 * updated inside the fork guard, so at every fork it equals the library's
 * registrations; each child checks, page by page, that what it has is
 * exactly what those registrations imply, and that the library is empty
 * and usable.
 */
#define ARENA_PAGES 64
#define STORM_THREADS 3
#define SLOTS 8

struct live_range {
	size_t off, len;
	int live;
};

static unsigned char *arena;
static struct live_range ranges[STORM_THREADS][SLOTS];
static atomic_int stop_storm;

static void *storm_thread(void *arg)
{
	struct live_range *mine = ranges[(long)arg];
	unsigned int seed = (unsigned int)(long)arg * 7919u + 1;

	while (!atomic_load(&stop_storm)) {
		struct live_range *r = &mine[rand_r(&seed) % SLOTS];

		safepin_fork_guard_enter();
		if (r->live) {
			if (safepin_unpin(arena + r->off, r->len))
				abort();	/* cmocka asserts are for the main thread */
			r->live = 0;
		} else {
			/* Half the time the same range again (a parked one when deferred). */
			if (!r->len || rand_r(&seed) % 2) {
				r->off = (size_t)rand_r(&seed) % (ARENA_PAGES * PAGE - 1);
				r->len = 1 + (size_t)rand_r(&seed) % (6 * PAGE);
				if (r->off + r->len > ARENA_PAGES * PAGE)
					r->len = ARENA_PAGES * PAGE - r->off;
			}
			if (safepin_pin(arena + r->off, r->len, 0))
				abort();
			r->live = 1;
		}
		safepin_fork_guard_exit();
	}
	return NULL;
}

static int storm_child_check(void *arg)
{
	int covered[ARENA_PAGES] = { 0 }, edge[ARENA_PAGES] = { 0 };
	struct safepin_stats st = { .size = sizeof(st) };
	unsigned char vec;

	(void)arg;
	for (int t = 0; t < STORM_THREADS; t++)
		for (int s = 0; s < SLOTS; s++) {
			const struct live_range *r = &ranges[t][s];
			size_t first, last;

			if (!r->live)
				continue;
			first = r->off / PAGE;
			last = (r->off + r->len - 1) / PAGE;
			for (size_t p = first; p <= last; p++)
				covered[p] = 1;
			if (r->off % PAGE)
				edge[first] = 1;
			if ((r->off + r->len) % PAGE)
				edge[last] = 1;
		}
	for (int p = 0; p < ARENA_PAGES; p++) {
		int present = mincore(arena + (size_t)p * PAGE, PAGE, &vec) == 0;

		/* Hidden exactly when registered and not a partial edge. */
		if (present != (!covered[p] || edge[p]))
			return 10;
		if (present && arena[(size_t)p * PAGE + 17] != (unsigned char)p)
			return 11;
	}
	if (safepin_get_stats(&st) || st.live_registrations)
		return 12;
	if (safepin_pin(arena + 17, 100, 0) == 0)	/* the child may not have page 0 */
		safepin_unpin(arena + 17, 100);
	return 0;
}

static void run_fork_storm(enum safepin_unmark unmark)
{
	pthread_t threads[STORM_THREADS];
	char marks[ARENA_PAGES + 1], want[ARENA_PAGES + 1];

	assert_int_equal(safepin_set_unmark(unmark), 0);
	memset(ranges, 0, sizeof(ranges));
	arena = map_anon(ARENA_PAGES * PAGE, PROT_READ | PROT_WRITE, 0);
	for (int p = 0; p < ARENA_PAGES; p++)
		memset(arena + (size_t)p * PAGE, p, PAGE);
	atomic_store(&stop_storm, 0);
	for (long t = 0; t < STORM_THREADS; t++)
		assert_int_equal(pthread_create(&threads[t], NULL, storm_thread, (void *)t), 0);
	for (int i = 0; i < 300; i++)
		assert_int_equal(in_child(storm_child_check, NULL), 0);
	atomic_store(&stop_storm, 1);
	for (int t = 0; t < STORM_THREADS; t++)
		pthread_join(threads[t], NULL);
	/* Deferred: parked ranges stay marked until a fork or a flush. */
	assert_int_equal(safepin_flush(), 0);

	/* Quiescent: the parent's flags are exactly what the live ranges imply. */
	memset(want, '.', ARENA_PAGES);
	want[ARENA_PAGES] = '\0';
	for (int t = 0; t < STORM_THREADS; t++)
		for (int s = 0; s < SLOTS; s++) {
			const struct live_range *r = &ranges[t][s];

			if (!r->live)
				continue;
			for (size_t p = r->off / PAGE; p <= (r->off + r->len - 1) / PAGE; p++)
				want[p] = 'D';
		}
	fork_marks(arena, ARENA_PAGES, marks);
	assert_string_equal(marks, want);
	for (int t = 0; t < STORM_THREADS; t++)
		for (int s = 0; s < SLOTS; s++)
			if (ranges[t][s].live)
				assert_int_equal(safepin_unpin(arena + ranges[t][s].off,
							       ranges[t][s].len), 0);
	/* Deferred: the children above saw revived (parked, pinned again) ranges. */
	if (unmark == SAFEPIN_UNMARK_DEFERRED)
		assert_true(stats_now().revived_registrations > 0);
	assert_int_equal(safepin_set_unmark(SAFEPIN_UNMARK_IMMEDIATE), 0);
	fork_marks(arena, ARENA_PAGES, marks);
	memset(want, '.', ARENA_PAGES);
	assert_string_equal(marks, want);
	munmap(arena, ARENA_PAGES * PAGE);
}

static void test_fork_storm(void **state)
{
	(void)state;
	run_fork_storm(SAFEPIN_UNMARK_IMMEDIATE);
}

/* The same with deferred unmarking: every child still sees exactly the live ranges. */
static void test_fork_storm_deferred(void **state)
{
	(void)state;
	run_fork_storm(SAFEPIN_UNMARK_DEFERRED);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_child_starts_clean),
		cmocka_unit_test(test_subpage_neighbours_dontfork),
		cmocka_unit_test(test_subpage_neighbours_zero_fill),
		cmocka_unit_test(test_heap_neighbours),
		cmocka_unit_test(test_guard_holds_off_fork),
		cmocka_unit_test(test_fork_storm),
		cmocka_unit_test(test_fork_storm_deferred),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
