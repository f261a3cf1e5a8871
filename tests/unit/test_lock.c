// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * lock.h: mutual exclusion under contention, the sleeping path (a holder
 * that sleeps while others wait must not lose a wake-up), and a lock held
 * across fork() released in the child.
 */
#include <pthread.h>
#include <stdatomic.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "lock.h"

#define THREADS 4
#define ROUNDS 200000

static struct sp_lock lock = SP_LOCK_INIT;
static unsigned long counter;	/* plain: only the lock orders it */
static atomic_int inside;

static void *hammer(void *arg)
{
	(void)arg;
	for (int i = 0; i < ROUNDS; i++) {
		sp_lock(&lock);
		/* Two threads in here at once would both see inside != 0. */
		assert_int_equal(atomic_fetch_add(&inside, 1), 0);
		counter++;
		atomic_fetch_sub(&inside, 1);
		sp_unlock(&lock);
	}
	return NULL;
}

static void test_excludes_under_contention(void **state)
{
	pthread_t t[THREADS];

	(void)state;
	counter = 0;
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, hammer, NULL), 0);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(counter, (unsigned long)THREADS * ROUNDS);
}

static void *wait_for_lock(void *arg)
{
	sp_lock(&lock);
	counter++;
	sp_unlock(&lock);
	return arg;
}

/* Waiters outlast the spin and sleep; one unlock must wake them in turn. */
static void test_sleepers_are_woken(void **state)
{
	struct timespec ts = { 0, 50 * 1000 * 1000 };
	pthread_t t[THREADS];

	(void)state;
	counter = 0;
	sp_lock(&lock);
	for (int i = 0; i < THREADS; i++)
		assert_int_equal(pthread_create(&t[i], NULL, wait_for_lock, NULL), 0);
	nanosleep(&ts, NULL);
	assert_int_equal(counter, 0);
	sp_unlock(&lock);
	for (int i = 0; i < THREADS; i++)
		pthread_join(t[i], NULL);
	assert_int_equal(counter, THREADS);
}

/* The registry's pattern: held across fork(), released by the child. */
static void test_child_releases_held_lock(void **state)
{
	int status;
	pid_t pid;

	(void)state;
	sp_lock(&lock);
	pid = fork();
	assert_true(pid >= 0);
	if (!pid) {
		sp_unlock(&lock);
		sp_lock(&lock);
		sp_unlock(&lock);
		_exit(0);
	}
	sp_unlock(&lock);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status) && WEXITSTATUS(status) == 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_excludes_under_contention),
		cmocka_unit_test(test_sleepers_are_woken),
		cmocka_unit_test(test_child_releases_held_lock),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
