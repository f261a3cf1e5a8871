/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * The library's hot mutexes (the registry's, the verbs table's).  Taking
 * and releasing one that nobody else holds is one atomic instruction each,
 * inline: a revived registration takes such locks four times and makes no
 * system call, and a call into libc's pthread_mutex_lock() and back costs
 * more than the critical section, much more under emulation (the TCG
 * guests) where every call and return is looked up.  A contended lock
 * spins while its holder runs and nobody sleeps on it, then sleeps on a
 * futex; a waiter that wakes spins again before it sleeps again, so two
 * threads taking turns do not hand the lock over through system calls.
 *
 * ThreadSanitizer does not know futexes: under it, the lock is a pthread
 * mutex, so the data it protects stays checked.
 *
 * A child after fork() has only the forking thread; whatever that thread
 * held it releases with sp_unlock() or re-initialises with sp_lock_init().
 */
#ifndef SAFEPIN_LOCK_H
#define SAFEPIN_LOCK_H

#include <stdatomic.h>

#include "compiler.h"

#if defined(__SANITIZE_THREAD__)
#define SP_LOCK_PTHREAD 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define SP_LOCK_PTHREAD 1
#endif
#endif

#ifdef SP_LOCK_PTHREAD
#include <pthread.h>

struct sp_lock {
	pthread_mutex_t m;
};
#define SP_LOCK_INIT { PTHREAD_MUTEX_INITIALIZER }

static inline void sp_lock_init(struct sp_lock *l)
{
	pthread_mutex_init(&l->m, NULL);
}

static inline void sp_lock(struct sp_lock *l)
{
	pthread_mutex_lock(&l->m);
}

static inline void sp_unlock(struct sp_lock *l)
{
	pthread_mutex_unlock(&l->m);
}

#else

struct sp_lock {
	atomic_int state;	/* 0 free, 1 held, 2 held and someone may sleep on it */
};
#define SP_LOCK_INIT { 0 }

void sp_lock_slow(struct sp_lock *l);
void sp_unlock_wake(struct sp_lock *l);

static inline void sp_lock_init(struct sp_lock *l)
{
	atomic_init(&l->state, 0);
}

static inline void sp_lock(struct sp_lock *l)
{
	int free_ = 0;

	if (SP_UNLIKELY(!atomic_compare_exchange_strong_explicit(&l->state, &free_, 1,
								  memory_order_acquire,
								  memory_order_relaxed)))
		sp_lock_slow(l);
}

static inline void sp_unlock(struct sp_lock *l)
{
	if (SP_UNLIKELY(atomic_exchange_explicit(&l->state, 0, memory_order_release) == 2))
		sp_unlock_wake(l);
}

#endif
#endif
