// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Deferred unmarking with threads: a thread re-registering the buffers it
 * released itself revives and parks them in its own cache, without the
 * registry lock.  What those caches hold stays visible to everything
 * else: the stats, double-unpin detection, an unpin or a pin from another
 * thread, safepin_flush(), a change of mode, the fork() prepare handler
 * (every child sees exactly the live registrations) and a thread's exit.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#define NPAGES 16

static char *arena;

#define assert_marks(expect) assert_page_marks(arena, NPAGES, expect)

static void pin1(size_t page)
{
	assert_int_equal(safepin_pin(arena + page * PAGE, PAGE, 0), 0);
}

static int unpin1(size_t page)
{
	return safepin_unpin(arena + page * PAGE, PAGE);
}

/*
 * Pin and unpin twice: the second unpin parks it, in the calling thread's
 * cache.  For the helper threads: no cmocka assert (they are for the main
 * thread), a failure aborts.
 */
static void park1(size_t page)
{
	for (int i = 0; i < 2; i++)
		if (safepin_pin(arena + page * PAGE, PAGE, 0) || unpin1(page))
			abort();
}

static void tpin1(size_t page)
{
	if (safepin_pin(arena + page * PAGE, PAGE, 0))
		abort();
}

static int setup(void **state)
{
	(void)state;
	arena = map_anon(NPAGES * PAGE, PROT_READ | PROT_WRITE, 0);
	memset(arena, 0x5a, NPAGES * PAGE);
	assert_int_equal(safepin_set_unmark(SAFEPIN_UNMARK_DEFERRED), 0);
	return 0;
}

/* Nothing left behind by any test: no live, no parked, no mark. */
static int teardown(void **state)
{
	(void)state;
	assert_immediate_leaves_nothing();
	assert_marks("................");
	munmap(arena, NPAGES * PAGE);
	return 0;
}

/* Run @fn in a new thread and wait for it to end. */
static void in_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
}

/* A helper thread that runs steps the main thread hands it, one at a time. */
struct helper {
	pthread_t thread;
	pthread_mutex_t lock;
	pthread_cond_t cond;
	void (*step)(void);
	int done;		/* steps finished */
	int given;
};

static void *helper_main(void *arg)
{
	struct helper *h = arg;

	pthread_mutex_lock(&h->lock);
	for (;;) {
		while (h->done == h->given)
			pthread_cond_wait(&h->cond, &h->lock);
		if (!h->step)
			break;
		pthread_mutex_unlock(&h->lock);
		h->step();
		pthread_mutex_lock(&h->lock);
		h->done++;
		pthread_cond_broadcast(&h->cond);
	}
	pthread_mutex_unlock(&h->lock);
	return NULL;
}

static void helper_start(struct helper *h)
{
	memset(h, 0, sizeof(*h));
	pthread_mutex_init(&h->lock, NULL);
	pthread_cond_init(&h->cond, NULL);
	assert_int_equal(pthread_create(&h->thread, NULL, helper_main, h), 0);
}

/* Run @step in the helper and wait for it (NULL: let it exit and join it). */
static void helper_run(struct helper *h, void (*step)(void))
{
	pthread_mutex_lock(&h->lock);
	h->step = step;
	h->given++;
	pthread_cond_broadcast(&h->cond);
	while (step && h->done != h->given)
		pthread_cond_wait(&h->cond, &h->lock);
	pthread_mutex_unlock(&h->lock);
	if (!step)
		assert_int_equal(pthread_join(h->thread, NULL), 0);
}

static int step_ret;	/* what a helper's last step returned */
static uint64_t step_madvise;	/* madvise() calls the step made */

static void park_0_and_1(void)
{
	park1(0);
	park1(1);
}

static void revive_0(void)
{
	step_ret = safepin_pin(arena, PAGE, 0);
}

static void unpin_0(void)
{
	step_ret = unpin1(0);
}

/* No cmocka assert here: they are for the main thread. */
static void revive_1_unpin_it_twice(void)
{
	struct safepin_stats s0 = { .size = sizeof(s0) }, s1 = { .size = sizeof(s1) };

	(void)safepin_get_stats(&s0);
	step_ret = safepin_pin(arena + PAGE, PAGE, 0) || unpin1(1) ? -100 : unpin1(1);
	(void)safepin_get_stats(&s1);
	step_madvise = s1.madvise_calls - s0.madvise_calls;
}

/*
 * A thread's cache: revivals and parks there make no madvise(), the stats
 * count its entries exactly where they are, a second unpin is -ENOENT.
 */
static void test_own_cache_counts_and_double_unpin(void **state)
{
	struct helper h;
	struct safepin_stats s0, s;

	(void)state;
	helper_start(&h);
	helper_run(&h, park_0_and_1);
	s0 = stats_now();
	assert_int_equal(s0.live_registrations, 0);
	assert_int_equal(s0.parked_registrations, 2);
	assert_marks("DD..............");
	helper_run(&h, revive_0);
	assert_int_equal(step_ret, 0);
	s = stats_now();
	assert_int_equal(s.live_registrations, 1);
	assert_int_equal(s.parked_registrations, 1);
	assert_int_equal(s.madvise_calls, s0.madvise_calls);
	assert_int_equal(s.revived_registrations, s0.revived_registrations + 1);
	helper_run(&h, unpin_0);
	assert_int_equal(step_ret, 0);
	helper_run(&h, unpin_0);	/* parked: not a live registration */
	assert_int_equal(step_ret, -ENOENT);
	helper_run(&h, revive_1_unpin_it_twice);
	assert_int_equal(step_ret, -ENOENT);
	assert_int_equal(step_madvise, 0);	/* revived and parked again: no system call */
	s = stats_now();
	assert_int_equal(s.live_registrations, 0);
	assert_int_equal(s.parked_registrations, 2);
	assert_int_equal(s.madvise_calls, s0.madvise_calls);
	/* From this thread too: nothing live. */
	assert_int_equal(unpin1(0), -ENOENT);
	assert_int_equal(errno, ENOENT);
	helper_run(&h, NULL);
	assert_int_equal(stats_now().parked_registrations, 2);
	assert_marks("DD..............");
}

/* A registration revived in one thread's cache, released by another. */
static void test_cross_thread_unpin(void **state)
{
	struct helper h;
	struct safepin_stats s;

	(void)state;
	helper_start(&h);
	helper_run(&h, park_0_and_1);
	helper_run(&h, revive_0);	/* live in the helper's cache */
	assert_int_equal(step_ret, 0);
	assert_int_equal(unpin1(0), 0);
	s = stats_now();
	assert_int_equal(s.live_registrations, 0);
	assert_int_equal(s.parked_registrations, 2);
	helper_run(&h, unpin_0);	/* already released */
	assert_int_equal(step_ret, -ENOENT);
	/* Parked in the helper's cache, revived by this thread: no madvise. */
	s = stats_now();
	pin1(1);
	assert_int_equal(stats_now().madvise_calls, s.madvise_calls);
	assert_int_equal(stats_now().live_registrations, 1);
	assert_marks("DD..............");
	helper_run(&h, NULL);
	assert_int_equal(unpin1(1), 0);
	assert_int_equal(unpin1(1), -ENOENT);
	assert_int_equal(errno, ENOENT);
	assert_int_equal(stats_now().live_registrations, 0);
}

/* safepin_flush() and a change of mode reach what another thread holds. */
static void test_flush_from_another_thread(void **state)
{
	struct helper h;
	struct safepin_stats s;

	(void)state;
	helper_start(&h);
	helper_run(&h, park_0_and_1);
	helper_run(&h, revive_0);
	assert_marks("DD..............");
	assert_int_equal(safepin_flush(), 0);
	s = stats_now();
	assert_marks("D...............");	/* page 0 is live */
	assert_int_equal(s.live_registrations, 1);
	assert_int_equal(s.parked_registrations, 0);
	helper_run(&h, unpin_0);	/* parks it again, in its cache */
	assert_int_equal(step_ret, 0);
	assert_int_equal(stats_now().parked_registrations, 1);
	helper_run(&h, revive_0);
	assert_int_equal(step_ret, 0);
	/* Immediate from now on: the live one is unmarked at its release. */
	assert_int_equal(safepin_set_unmark(SAFEPIN_UNMARK_IMMEDIATE), 0);
	helper_run(&h, unpin_0);
	assert_int_equal(step_ret, 0);
	s = stats_now();
	assert_marks("................");
	assert_int_equal(s.parked_registrations, 0);
	assert_int_equal(s.pages_marked, 0);
	assert_int_equal(safepin_set_unmark(SAFEPIN_UNMARK_DEFERRED), 0);
	helper_run(&h, NULL);
}

static void *park_4_and_exit(void *arg)
{
	(void)arg;
	for (size_t p = 4; p < 8; p++)
		park1(p);
	return NULL;
}

static void *revive_4_and_exit(void *arg)
{
	(void)arg;
	tpin1(4);	/* parked in the exited thread's cache, now the table's */
	park1(5);
	tpin1(5);	/* live in this thread's cache when it exits */
	return NULL;
}

/*
 * A thread that exits with entries in its cache hands them back: parked
 * ones stay parked (and are flushed later), live ones are released by
 * another thread.  Nothing leaks.
 */
static void test_thread_exit_with_held_entries(void **state)
{
	struct safepin_stats s;

	(void)state;
	in_thread(park_4_and_exit, NULL);
	s = stats_now();
	assert_int_equal(s.parked_registrations, 4);
	assert_int_equal(s.live_registrations, 0);
	assert_marks("....DDDD........");
	in_thread(revive_4_and_exit, NULL);
	s = stats_now();
	assert_int_equal(s.live_registrations, 2);
	assert_int_equal(s.parked_registrations, 2);
	assert_int_equal(unpin1(4), 0);
	assert_int_equal(unpin1(5), 0);
	assert_int_equal(unpin1(5), -ENOENT);
	assert_int_equal(safepin_flush(), 0);
	s = stats_now();
	assert_int_equal(s.live_registrations, 0);
	assert_int_equal(s.parked_registrations, 0);
	assert_marks("................");
	assert_int_equal(s.pages_marked, 0);
}

/*
 * The storm: two threads re-register their own pages (every revival and
 * every park in their caches) while this thread forks; every child must
 * see exactly the live registrations hidden, and none of them as its own.
 */
#define STORM_THREADS 2
#define STORM_PAGES 6		/* per thread */

static atomic_int live[STORM_THREADS][STORM_PAGES];
static atomic_int stop;

static void *storm(void *arg)
{
	long t = (long)arg;
	unsigned int seed = (unsigned int)t * 7919u + 3;

	while (!atomic_load(&stop)) {
		int p = rand_r(&seed) % STORM_PAGES;
		char *a = arena + (size_t)(t * STORM_PAGES + p) * PAGE;

		safepin_fork_guard_enter();
		if (atomic_load(&live[t][p])) {
			if (safepin_unpin(a, PAGE))
				abort();	/* cmocka asserts are for the main thread */
			atomic_store(&live[t][p], 0);
		} else {
			if (safepin_pin(a, PAGE, 0))
				abort();
			atomic_store(&live[t][p], 1);
		}
		safepin_fork_guard_exit();
	}
	return NULL;
}

static int storm_child(void)
{
	struct safepin_stats st = { .size = sizeof(st) };
	unsigned char vec;

	for (int t = 0; t < STORM_THREADS; t++)
		for (int p = 0; p < STORM_PAGES; p++) {
			char *a = arena + (size_t)(t * STORM_PAGES + p) * PAGE;
			int present = mincore(a, PAGE, &vec) == 0;

			if (present == atomic_load(&live[t][p]))
				return 10 + t * STORM_PAGES + p;
			if (present && *a != 0x5a)
				return 2;
		}
	if (safepin_get_stats(&st) || st.live_registrations || st.parked_registrations)
		return 3;
	return 0;
}

static void test_fork_storm_with_thread_caches(void **state)
{
	pthread_t th[STORM_THREADS];
	struct safepin_stats s0, s;
	char marks[NPAGES + 1], want[NPAGES + 1];

	(void)state;
	s0 = stats_now();
	atomic_store(&stop, 0);
	for (long t = 0; t < STORM_THREADS; t++)
		assert_int_equal(pthread_create(&th[t], NULL, storm, (void *)t), 0);
	/* valgrind runs one thread at a time: the storm threads starve the forks. */
	for (int i = 0; i < (under_valgrind() ? 10 : 200); i++) {
		int status;
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0)
			_exit(storm_child());
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
	}
	atomic_store(&stop, 1);
	for (int t = 0; t < STORM_THREADS; t++)
		pthread_join(th[t], NULL);
	/* The threads revived in their caches; exact counts where they are. */
	s = stats_now();
	assert_true(s.revived_registrations > s0.revived_registrations);
	{
		uint64_t n = 0;

		for (int t = 0; t < STORM_THREADS; t++)
			for (int p = 0; p < STORM_PAGES; p++)
				n += (uint64_t)atomic_load(&live[t][p]);
		assert_int_equal(s.live_registrations, n);
	}
	assert_int_equal(safepin_flush(), 0);
	memset(want, '.', NPAGES);
	want[NPAGES] = '\0';
	for (int t = 0; t < STORM_THREADS; t++)
		for (int p = 0; p < STORM_PAGES; p++)
			if (atomic_load(&live[t][p]))
				want[t * STORM_PAGES + p] = 'D';
	fork_marks(arena, NPAGES, marks);
	assert_string_equal(marks, want);
	for (int t = 0; t < STORM_THREADS; t++)
		for (int p = 0; p < STORM_PAGES; p++)
			if (atomic_load(&live[t][p]))
				assert_int_equal(safepin_unpin(arena + (size_t)(t * STORM_PAGES + p) *
							       PAGE, PAGE), 0);
	assert_int_equal(stats_now().live_registrations, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_own_cache_counts_and_double_unpin, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_cross_thread_unpin, setup, teardown),
		cmocka_unit_test_setup_teardown(test_flush_from_another_thread, setup, teardown),
		cmocka_unit_test_setup_teardown(test_thread_exit_with_held_entries, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fork_storm_with_thread_caches, setup,
						teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
