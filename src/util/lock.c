// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The contended paths of lock.h: spin a little, then sleep on a futex. */
#include "lock.h"

#ifndef SP_LOCK_PTHREAD
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>

/* About what glibc's adaptive mutex spins before it sleeps. */
#define SPIN_TRIES 100

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

void sp_lock_slow(struct sp_lock *l)
{
	int c;

	for (int i = 0; i < SPIN_TRIES; i++) {
		c = 0;
		if (atomic_load_explicit(&l->state, memory_order_relaxed) == 0 &&
		    atomic_compare_exchange_weak_explicit(&l->state, &c, 1, memory_order_acquire,
							  memory_order_relaxed))
			return;
		cpu_relax();
	}
	/* Announce a sleeper (2) with every attempt: whoever unlocks then wakes one. */
	while (atomic_exchange_explicit(&l->state, 2, memory_order_acquire) != 0)
		futex(&l->state, FUTEX_WAIT, 2);
}

void sp_unlock_wake(struct sp_lock *l)
{
	futex(&l->state, FUTEX_WAKE, 1);
}
#endif
