// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Pre-fault (invariant 6): it never changes data and never loses a store of
 * another thread, with MADV_POPULATE_WRITE and with the atomic fallback for
 * kernels without it.  A broken read-then-write pre-fault, written here in
 * the test, shows the harness does catch lost stores.  Plus a multi-thread
 * smoke test of the registry checked against a model at quiescent points.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "helpers.h"
#include "vm.h"

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static int teardown(void **state)
{
	struct safepin_stats s = stats_now();

	(void)state;
	vm_force_populate_fallback(false);
	assert_int_equal(s.live_registrations, 0);
	assert_int_equal(s.pages_marked, 0);
	return 0;
}

/* --- data is not changed ----------------------------------------------- */

static void check_data_unchanged(bool fallback)
{
	const size_t n = 16;
	char *buf = map_anon(n * PAGE, PROT_READ | PROT_WRITE, 0);
	unsigned char *copy = calloc(n, PAGE);
	unsigned int seed = 12345;
	struct safepin_stats before;
	pid_t child;

	assert_non_null(copy);
	vm_force_populate_fallback(fallback);
	/* Pages 0..11 hold a pattern; 12..15 were never touched. */
	for (size_t i = 0; i < 12 * PAGE; i++)
		buf[i] = (char)rand_r(&seed);
	memcpy(copy, buf, 12 * PAGE);	/* not reading the untouched pages */
	assert_false(pagemap_entry(buf + 12 * PAGE) & PM_PRESENT);

	child = fork_sleeper();		/* pages 0..11 copy-on-write shared */
	before = stats_now();
	assert_int_equal(safepin_pin(buf + 100, n * PAGE - 200, 0), 0);
	assert_int_equal(stats_now().prefaulted_pages, before.prefaulted_pages + n);
	assert_memory_equal(buf, copy, n * PAGE);
	for (size_t i = 0; i < n; i++)
		assert_true(pagemap_entry(buf + i * PAGE) & PM_EXCLUSIVE);
	kill_child(child);
	assert_int_equal(safepin_unpin(buf + 100, n * PAGE - 200), 0);
	assert_memory_equal(buf, copy, n * PAGE);
	free(copy);
	assert_int_equal(munmap(buf, n * PAGE), 0);
}

static void test_data_unchanged_populate(void **state)
{
	(void)state;
	assert_true(vm_has_populate());	/* the host kernel has it */
	check_data_unchanged(false);
}

static void test_data_unchanged_fallback(void **state)
{
	(void)state;
	check_data_unchanged(true);
}

/* --- no store is lost -------------------------------------------------- */

/*
 * One writer thread increments a counter at the start of every page (the
 * byte a per-page pre-fault touches) with plain load/add/store and counts
 * its increments privately.  The main thread repeatedly forks a child that
 * keeps the pages copy-on-write shared and pre-faults them while the writer
 * runs.  At the end each counter must equal the writer's count.
 */
#define WPAGES 8

struct harness {
	char *buf;
	atomic_bool stop;
	uint64_t done[WPAGES];
};

static void *writer(void *arg)
{
	struct harness *h = arg;

	while (!atomic_load_explicit(&h->stop, memory_order_relaxed)) {
		for (size_t i = 0; i < WPAGES; i++) {
			volatile uint64_t *c = (volatile uint64_t *)(h->buf + i * PAGE);

			for (int k = 0; k < 64; k++)
				*c = *c + 1;
			h->done[i] += 64;
		}
	}
	return NULL;
}

typedef void (*prefault_fn)(char *buf, size_t len);

#define MIN_ROUNDS 20

/* Returns how many counters ended different from the writer's count. */
static size_t run_harness(prefault_fn prefault, double seconds, unsigned long *rounds)
{
	struct harness h = { .buf = map_anon(WPAGES * PAGE, PROT_READ | PROT_WRITE, 0) };
	size_t bad = 0;
	pthread_t t;
	double end;

	atomic_init(&h.stop, false);
	assert_int_equal(pthread_create(&t, NULL, writer, &h), 0);
	*rounds = 0;
	/* At least MIN_ROUNDS however slow the build (valgrind, sanitizers). */
	for (end = now() + seconds; now() < end || *rounds < MIN_ROUNDS; ++*rounds) {
		pid_t child = fork_sleeper();

		prefault(h.buf, WPAGES * PAGE);
		kill_child(child);
	}
	atomic_store(&h.stop, true);
	assert_int_equal(pthread_join(t, NULL), 0);
	for (size_t i = 0; i < WPAGES; i++) {
		uint64_t got = *(uint64_t *)(h.buf + i * PAGE);

		if (got != h.done[i]) {
			print_message("page %zu: counter %llu, writer made %llu increments\n", i,
				      (unsigned long long)got, (unsigned long long)h.done[i]);
			bad++;
		}
	}
	assert_int_equal(munmap(h.buf, WPAGES * PAGE), 0);
	return bad;
}

static void library_prefault(char *buf, size_t len)
{
	assert_int_equal(safepin_pin(buf, len, 0), 0);
	assert_int_equal(safepin_unpin(buf, len), 0);
}

/* What the library must never do: read, then write back what was read. */
static void broken_prefault(char *buf, size_t len)
{
	for (size_t off = 0; off < len; off += PAGE) {
		volatile unsigned char *p = (volatile unsigned char *)(buf + off);
		unsigned char v = *p;

		/* A preemption here is always possible; make it likely, so the
		 * lost store shows up within the test's time even on a busy machine. */
		sched_yield();
		*p = v;
	}
}

static void test_no_lost_store_populate(void **state)
{
	unsigned long rounds;

	(void)state;
	assert_int_equal(run_harness(library_prefault, 1.5, &rounds), 0);
	print_message("%lu fork+pin rounds\n", rounds);
}

static void test_no_lost_store_fallback(void **state)
{
	unsigned long rounds;

	(void)state;
	vm_force_populate_fallback(true);
	assert_int_equal(run_harness(library_prefault, 1.5, &rounds), 0);
	print_message("%lu fork+pin rounds\n", rounds);
}

/* The harness is able to fail: a read-then-write pre-fault loses stores. */
static void test_harness_catches_read_then_write(void **state)
{
	unsigned long rounds;
	size_t bad = 0;

	(void)state;
	/* Usually the first second shows it; allow a few tries on a busy machine. */
	for (int tries = 0; tries < 4 && !bad; tries++)
		bad = run_harness(broken_prefault, 1.0, &rounds);
	assert_true(bad > 0);
}

/* --- thread-safety smoke ---------------------------------------------- */

#define ARENA_PAGES 64
#define THREADS 4
#define MAX_LIVE 8
#define PHASES 5

struct live_reg {
	char *addr;
	size_t len;
};

struct worker {
	pthread_t thread;
	unsigned int seed;
	struct live_reg live[MAX_LIVE];
	size_t nr_live;
	unsigned long ops;
};

static struct {
	char *arena;
	pthread_barrier_t go, paused;
	atomic_bool pause, done;
	atomic_int errors;
	struct worker w[THREADS];
} smoke;

static void worker_op(struct worker *w)
{
	if (w->nr_live < MAX_LIVE && (w->nr_live == 0 || rand_r(&w->seed) % 2)) {
		size_t first = (size_t)rand_r(&w->seed) % ARENA_PAGES;
		size_t pages = 1 + (size_t)rand_r(&w->seed) % 8;
		size_t off = (size_t)rand_r(&w->seed) % PAGE, len;

		if (first + pages > ARENA_PAGES)
			pages = ARENA_PAGES - first;
		len = pages * PAGE - off;
		len = 1 + (size_t)rand_r(&w->seed) % len;	/* stays inside the arena */
		if (safepin_pin(smoke.arena + first * PAGE + off, len, 0)) {
			atomic_fetch_add(&smoke.errors, 1);
			return;
		}
		w->live[w->nr_live++] = (struct live_reg){ smoke.arena + first * PAGE + off, len };
	} else {
		size_t i = (size_t)rand_r(&w->seed) % w->nr_live;

		if (safepin_unpin(w->live[i].addr, w->live[i].len))
			atomic_fetch_add(&smoke.errors, 1);
		w->live[i] = w->live[--w->nr_live];
	}
	w->ops++;
}

static void *worker_main(void *arg)
{
	struct worker *w = arg;

	for (;;) {
		pthread_barrier_wait(&smoke.go);
		if (atomic_load(&smoke.done))
			break;
		while (!atomic_load_explicit(&smoke.pause, memory_order_relaxed))
			worker_op(w);
		pthread_barrier_wait(&smoke.paused);
	}
	while (w->nr_live) {
		const struct live_reg *r = &w->live[--w->nr_live];

		if (safepin_unpin(r->addr, r->len))
			atomic_fetch_add(&smoke.errors, 1);
	}
	return NULL;
}

/* With every worker paused: the marks and stats match the live registrations. */
static void check_model(void)
{
	unsigned int count[ARENA_PAGES] = { 0 };
	char expect[ARENA_PAGES + 1], got[ARENA_PAGES + 1];
	uint64_t live = 0, marked = 0;
	struct safepin_stats s = stats_now();

	for (size_t t = 0; t < THREADS; t++) {
		for (size_t i = 0; i < smoke.w[t].nr_live; i++) {
			const struct live_reg *r = &smoke.w[t].live[i];
			size_t first = (size_t)(r->addr - smoke.arena) / PAGE;
			size_t last = (size_t)(r->addr + r->len - 1 - smoke.arena) / PAGE;

			for (size_t p = first; p <= last; p++)
				count[p]++;
		}
		live += smoke.w[t].nr_live;
	}
	for (size_t p = 0; p < ARENA_PAGES; p++) {
		expect[p] = count[p] ? 'D' : '.';
		marked += count[p] ? 1 : 0;
	}
	expect[ARENA_PAGES] = '\0';
	fork_marks(smoke.arena, ARENA_PAGES, got);
	assert_string_equal(got, expect);
	assert_int_equal(s.live_registrations, live);
	assert_int_equal(s.pages_marked, marked);
}

static void test_threads_smoke(void **state)
{
	struct safepin_stats before = stats_now();
	unsigned long ops = 0;
	char got[ARENA_PAGES + 1], none[ARENA_PAGES + 1];

	(void)state;
	smoke.arena = map_anon(ARENA_PAGES * PAGE, PROT_READ | PROT_WRITE, 0);
	atomic_init(&smoke.pause, false);
	atomic_init(&smoke.done, false);
	atomic_init(&smoke.errors, 0);
	pthread_barrier_init(&smoke.go, NULL, THREADS + 1);
	pthread_barrier_init(&smoke.paused, NULL, THREADS + 1);
	for (size_t t = 0; t < THREADS; t++) {
		smoke.w[t] = (struct worker){ .seed = 1000u + (unsigned int)t };
		assert_int_equal(pthread_create(&smoke.w[t].thread, NULL, worker_main, &smoke.w[t]),
				 0);
	}
	for (int phase = 0; phase < PHASES; phase++) {
		atomic_store(&smoke.pause, false);
		pthread_barrier_wait(&smoke.go);
		usleep(400 * 1000);
		atomic_store(&smoke.pause, true);
		pthread_barrier_wait(&smoke.paused);
		check_model();
	}
	atomic_store(&smoke.done, true);
	pthread_barrier_wait(&smoke.go);
	for (size_t t = 0; t < THREADS; t++) {
		assert_int_equal(pthread_join(smoke.w[t].thread, NULL), 0);
		ops += smoke.w[t].ops;
	}
	print_message("%lu pin/unpin operations by %d threads\n", ops, THREADS);
	assert_int_equal(atomic_load(&smoke.errors), 0);
	assert_true(ops > 1000);

	fork_marks(smoke.arena, ARENA_PAGES, got);
	memset(none, '.', ARENA_PAGES);
	none[ARENA_PAGES] = '\0';
	assert_string_equal(got, none);
	assert_int_equal(stats_now().live_registrations, 0);
	assert_int_equal(stats_now().pages_marked, 0);
	assert_int_equal(stats_now().failures, before.failures);
	pthread_barrier_destroy(&smoke.go);
	pthread_barrier_destroy(&smoke.paused);
	assert_int_equal(munmap(smoke.arena, ARENA_PAGES * PAGE), 0);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test_teardown(test_data_unchanged_populate, teardown),
		cmocka_unit_test_teardown(test_data_unchanged_fallback, teardown),
		cmocka_unit_test_teardown(test_no_lost_store_populate, teardown),
		cmocka_unit_test_teardown(test_no_lost_store_fallback, teardown),
		cmocka_unit_test_teardown(test_harness_catches_read_then_write, teardown),
		cmocka_unit_test_teardown(test_threads_smoke, teardown),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
