// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Windowed unmarking with threads: a thread's pins inside open windows are
 * recorded in its own cache, without the registry lock, the window set
 * read under its sequence count.  Those pins stay visible to everything
 * else: the stats, an unpin from another thread, safepin_flush() closing
 * the windows under them, a thread's exit, and the fork() prepare handler
 * (every child sees exactly the live registrations, while two threads pin
 * and unpin and the windows close at every fork and open again).
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

#define BLOCK (2ul << 20)

static char *map;	/* 3 blocks plus slack to align */
static size_t map_len;
static char *blk;	/* one 2 MiB-aligned block with a block of margin on both sides */

static int setup(void **state)
{
	(void)state;
	map_len = 4 * BLOCK;
	map = map_anon(map_len, PROT_READ | PROT_WRITE, 0);
	assert_int_equal(madvise(map, map_len, MADV_NOHUGEPAGE), 0);
	memset(map, 0x5a, map_len);
	blk = (char *)(((uintptr_t)map + BLOCK - 1) & ~(BLOCK - 1));
	if (blk == map)
		blk += BLOCK;
	assert_int_equal(safepin_set_unmark(SAFEPIN_UNMARK_WINDOWED), 0);
	return 0;
}

static int teardown(void **state)
{
	(void)state;
	assert_immediate_leaves_nothing();
	assert_int_equal(munmap(map, map_len), 0);
	return 0;
}

static char *page(size_t i)
{
	return blk + i * PAGE;
}

/* For helper threads: cmocka asserts are for the main thread. */
static void must(int ok)
{
	if (!ok)
		abort();
}

/* Open the window on the block, then pin page @i inside it from this thread twice over. */
static void *pin_twice_in_window(void *arg)
{
	size_t i = (size_t)arg;

	must(!safepin_pin(page(0), PAGE, 0));		/* opens it, or finds it open */
	must(!safepin_pin(page(i), PAGE, 0));
	must(!safepin_pin(page(i + 1), PAGE, 0));
	must(!safepin_unpin(page(0), PAGE));
	return NULL;
}

static void run_thread(void *(*fn)(void *), void *arg)
{
	pthread_t t;

	assert_int_equal(pthread_create(&t, NULL, fn, arg), 0);
	assert_int_equal(pthread_join(t, NULL), 0);
}

/* Pins a thread left in its cache are counted, released from another thread, and gone. */
static void test_exited_thread_pins_released_here(void **state)
{
	(void)state;
	run_thread(pin_twice_in_window, (void *)100);
	assert_int_equal(stats_now().live_registrations, 2);
	assert_int_equal(safepin_unpin(page(100), PAGE), 0);
	assert_int_equal(safepin_unpin(page(101), PAGE), 0);
	assert_int_equal(safepin_unpin(page(101), PAGE), -ENOENT);
	assert_int_equal(stats_now().live_registrations, 0);
}

/*
 * A helper holds pins in its cache while this thread closes the windows
 * (safepin_flush()) and releases one of them: the flush counts them first,
 * so a child still misses exactly those pages, and the release finds its
 * pin wherever it went.
 */
static pthread_mutex_t hold_lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t hold_cond = PTHREAD_COND_INITIALIZER;
static int hold_stage;

static void *pin_and_hold(void *arg)
{
	(void)arg;
	pin_twice_in_window((void *)200);
	/* A second round: the window is open, these go to this thread's cache. */
	must(!safepin_pin(page(300), PAGE, 0));
	must(!safepin_pin(page(301), PAGE, 0));
	pthread_mutex_lock(&hold_lock);
	hold_stage = 1;
	pthread_cond_broadcast(&hold_cond);
	while (hold_stage != 2)
		pthread_cond_wait(&hold_cond, &hold_lock);
	pthread_mutex_unlock(&hold_lock);
	/* Its own pins, after the flush moved them out of its cache. */
	must(!safepin_unpin(page(300), PAGE));
	must(!safepin_unpin(page(201), PAGE));
	return NULL;
}

static void test_flush_under_another_threads_pins(void **state)
{
	pthread_t t;

	(void)state;
	hold_stage = 0;
	assert_int_equal(pthread_create(&t, NULL, pin_and_hold, NULL), 0);
	pthread_mutex_lock(&hold_lock);
	while (hold_stage != 1)
		pthread_cond_wait(&hold_cond, &hold_lock);
	pthread_mutex_unlock(&hold_lock);

	assert_int_equal(stats_now().live_registrations, 4);
	assert_int_equal(safepin_flush(), 0);
	assert_int_equal(stats_now().pages_marked, 4);
	assert_true(child_segfaults_at(page(200)));
	assert_true(child_segfaults_at(page(301)));
	{
		const void *free_page = page(250);

		assert_int_equal(child_reads(&free_page, 1, 0x5a), 1);
	}
	assert_int_equal(safepin_unpin(page(301), PAGE), 0);	/* the helper's */

	pthread_mutex_lock(&hold_lock);
	hold_stage = 2;
	pthread_cond_broadcast(&hold_cond);
	pthread_mutex_unlock(&hold_lock);
	assert_int_equal(pthread_join(t, NULL), 0);
	assert_int_equal(stats_now().live_registrations, 1);
	assert_int_equal(safepin_unpin(page(200), PAGE), 0);
}

/*
 * The storm: two threads pin and unpin their own pages of the block (in
 * their caches while the window is open, through the registry when a fork
 * closed it) while this thread forks; every child must see exactly the
 * live registrations hidden.
 */
#define STORM_THREADS 2
#define STORM_PAGES 8		/* per thread, 32 pages apart */

static atomic_int live[STORM_THREADS][STORM_PAGES];
static atomic_int stop;

static char *storm_page(int t, int p)
{
	return page(1 + (size_t)(t * STORM_PAGES + p) * 32);
}

static void *storm(void *arg)
{
	long t = (long)arg;
	unsigned int seed = (unsigned int)t * 7919u + 3;

	while (!atomic_load(&stop)) {
		int p = rand_r(&seed) % STORM_PAGES;

		safepin_fork_guard_enter();
		if (atomic_load(&live[t][p])) {
			must(!safepin_unpin(storm_page((int)t, p), PAGE));
			atomic_store(&live[t][p], 0);
		} else {
			must(!safepin_pin(storm_page((int)t, p), PAGE, 0));
			atomic_store(&live[t][p], 1);
		}
		safepin_fork_guard_exit();
	}
	return NULL;
}

static int storm_child(void)
{
	unsigned char vec;

	for (int t = 0; t < STORM_THREADS; t++)
		for (int p = 0; p < STORM_PAGES; p++) {
			char *a = storm_page(t, p);
			int present = mincore(a, PAGE, &vec) == 0;

			if (present == atomic_load(&live[t][p]))
				return 10 + t * STORM_PAGES + p;
			if (present && *a != 0x5a)
				return 2;
		}
	/* The rest of the block is the child's, as it was. */
	if (mincore(page(2), PAGE, &vec) || *page(2) != 0x5a)
		return 3;
	return 0;
}

static void test_fork_storm_with_window_pins(void **state)
{
	pthread_t th[STORM_THREADS];

	(void)state;
	memset(live, 0, sizeof(live));
	atomic_store(&stop, 0);
	for (long t = 0; t < STORM_THREADS; t++)
		assert_int_equal(pthread_create(&th[t], NULL, storm, (void *)t), 0);
	for (int i = 0; i < (under_valgrind() ? 10 : 200); i++) {
		int status;
		pid_t pid = fork();

		assert_true(pid >= 0);
		if (pid == 0)
			_exit(storm_child());
		assert_int_equal(waitpid(pid, &status, 0), pid);
		assert_true(WIFEXITED(status));
		assert_int_equal(WEXITSTATUS(status), 0);
		usleep(200);	/* let the threads reopen the window and pin inside it */
	}
	atomic_store(&stop, 1);
	for (int t = 0; t < STORM_THREADS; t++)
		assert_int_equal(pthread_join(th[t], NULL), 0);
	{
		uint64_t n = 0;

		for (int t = 0; t < STORM_THREADS; t++)
			for (int p = 0; p < STORM_PAGES; p++)
				n += (uint64_t)atomic_load(&live[t][p]);
		assert_int_equal(stats_now().live_registrations, n);
	}
	for (int t = 0; t < STORM_THREADS; t++)
		for (int p = 0; p < STORM_PAGES; p++)
			if (atomic_load(&live[t][p]))
				assert_int_equal(safepin_unpin(storm_page(t, p), PAGE), 0);
	assert_int_equal(stats_now().live_registrations, 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_setup_teardown(test_exited_thread_pins_released_here, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_flush_under_another_threads_pins, setup,
						teardown),
		cmocka_unit_test_setup_teardown(test_fork_storm_with_window_pins, setup, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
