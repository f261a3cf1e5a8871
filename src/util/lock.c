// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The contended paths of lock.h: spin while the holder runs, then sleep on a futex. */
#include "lock.h"

#ifndef SP_LOCK_PTHREAD
#include <linux/futex.h>
#include <stdint.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

/*
 * How long to spin before sleeping.  The registry lock is held across a
 * madvise() or a VMA query (a few microseconds, the holder running in the
 * kernel): a waiter that sleeps instead pays a FUTEX_WAKE in the holder and
 * a wake-up latency of its own (tens of microseconds in a VM), which made
 * two threads on disjoint ranges half as fast together as one alone.
 * Beyond it the holder is likely off its CPU or in a long call (smaps).
 */
#define SPIN_NS 20000
/* Pauses between two looks at the clock. */
#define SPIN_BATCH 32

static inline void cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
	__builtin_ia32_pause();
#elif defined(__aarch64__)
	__asm__ volatile("yield");
#endif
}

static void futex(atomic_int *word, int op, int val)
{
	(void)syscall(SYS_futex, word, op | FUTEX_PRIVATE_FLAG, val, NULL, NULL, 0);
}

/*
 * Spin while the lock is held and nobody sleeps on it (1): the holder is
 * running and will be out soon.  Stop at 0 (free) or 2 (a sleeper: the
 * holder will make a system call to wake it, spinning gains nothing).
 */
static uint64_t now_ns(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (uint64_t)t.tv_sec * 1000000000u + (uint64_t)t.tv_nsec;
}

static int spin(struct sp_lock *l)
{
	uint64_t deadline = 0;
	int c;

	for (;;) {
		for (int i = 0; i < SPIN_BATCH; i++) {
			c = atomic_load_explicit(&l->state, memory_order_relaxed);
			if (c != 1)
				return c;
			cpu_relax();
		}
		if (!deadline)
			deadline = now_ns() + SPIN_NS;
		else if (now_ns() >= deadline)
			return atomic_load_explicit(&l->state, memory_order_relaxed);
	}
}

void sp_lock_slow(struct sp_lock *l)
{
	int c = spin(l);

	/* Free after spinning: take it without announcing a sleeper. */
	if (c == 0) {
		if (atomic_compare_exchange_strong_explicit(&l->state, &c, 1, memory_order_acquire,
							    memory_order_relaxed))
			return;
	}
	for (;;) {
		/* Announce a sleeper (2): whoever unlocks then wakes one. */
		if (c != 2 && atomic_exchange_explicit(&l->state, 2, memory_order_acquire) == 0)
			return;
		futex(&l->state, FUTEX_WAIT, 2);
		c = spin(l);
	}
}

void sp_unlock_wake(struct sp_lock *l)
{
	futex(&l->state, FUTEX_WAKE, 1);
}
#endif
