// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Everything about fork() lives here.
 *
 * Registrations hold the fork guard from before they mark a range until
 * after the device has pinned it, and from before the device unpins until
 * the range is unmarked.  The atfork prepare handler closes the gate and
 * waits for every thread inside to leave, so fork() never sees a range
 * marked but not pinned, or unpinned but still marked; threads arriving
 * while a fork waits queue behind it, so registrations cannot starve a
 * fork.  Nesting is counted per thread: a thread already inside never waits
 * behind a fork (that would deadlock).
 *
 * With the gate closed, prepare also takes the registry lock, unmarks the
 * registrations whose unmarking was deferred (and re-marks the ones pinned
 * again meanwhile), so the child sees exactly the live registrations, and
 * copies the partially registered pages (edge_pages.h) for the child.
 */
#include <errno.h>
#include <pthread.h>
#include <stdatomic.h>

#include "fork.h"
#include "once.h"
#include "registry.h"

/*
 * A readers-writer gate built from two counters, a mutex and two condition
 * variables rather than pthread_rwlock_t: the forking thread holds the
 * gate's mutex across fork() and unlocks it in the child, which glibc
 * allows for a default mutex but not for a rwlock (its unlock path depends
 * on the owner's TID, which differs in the child).
 *
 * Entering and leaving touch only the counters while no fork waits: a
 * registration that makes no system call (a parked range revived) would
 * otherwise spend its time passing the mutex between threads.  The
 * counters are sequentially consistent, Dekker style: a thread raises
 * `inside` and then reads `forks_waiting`, prepare raises `forks_waiting`
 * and then reads `inside`, so at least one of them sees the other.
 */
static struct {
	pthread_mutex_t lock;
	pthread_cond_t can_enter;	/* no fork waiting */
	pthread_cond_t drained;		/* no registration in flight */
} gate = {
	.lock = PTHREAD_MUTEX_INITIALIZER,
	.can_enter = PTHREAD_COND_INITIALIZER,
	.drained = PTHREAD_COND_INITIALIZER,
};
/* The counters and the nesting depth: read by the inline fast path in fork.h. */
struct fork_gate_counters fork_gate;
SP_THREAD_LOCAL unsigned int fork_guard_depth;
struct once fork_once = ONCE_INIT;

/* Consumers' child resets; written under gate.lock, read in the child. */
static void (*child_resets[FORK_MAX_CHILD_RESETS])(void);
static unsigned int nr_child_resets;
static void (*prepare_hook)(void);

static void prepare(void)
{
	pthread_mutex_lock(&gate.lock);
	atomic_fetch_add(&fork_gate.forks_waiting, 1);
	while (atomic_load(&fork_gate.inside))
		pthread_cond_wait(&gate.drained, &gate.lock);
	/* gate.lock and forks_waiting stay until the fork is done: nobody enters. */
	registry_lock();
	registry_before_fork_locked();
	if (prepare_hook)
		prepare_hook();
	registry_snapshot_edges();
}

static void parent(void)
{
	registry_release_edges();
	registry_unlock();
	atomic_fetch_sub(&fork_gate.forks_waiting, 1);
	pthread_cond_broadcast(&gate.can_enter);
	pthread_mutex_unlock(&gate.lock);
}

/*
 * The child owns no registration: it gets unlocked locks, an empty registry,
 * and the unregistered bytes of partially registered pages back.  Only the
 * forking thread exists here, and it holds both locks.
 */
static void child(void)
{
	pthread_cond_init(&gate.can_enter, NULL);
	pthread_cond_init(&gate.drained, NULL);
	atomic_store(&fork_gate.inside, 0);
	atomic_store(&fork_gate.forks_waiting, 0);
	fork_guard_depth = 0;
	registry_reset_in_child();
	registry_unlock();
	for (unsigned int i = 0; i < nr_child_resets; i++)
		child_resets[i]();
	pthread_mutex_unlock(&gate.lock);
}

void fork_init_once(void)
{
	pthread_atfork(prepare, parent, child);
}

int fork_on_child(void (*reset)(void))
{
	int ret = 0;

	fork_init();
	pthread_mutex_lock(&gate.lock);
	if (nr_child_resets < FORK_MAX_CHILD_RESETS)
		child_resets[nr_child_resets++] = reset;
	else
		ret = -ENOSPC;
	pthread_mutex_unlock(&gate.lock);
	return ret;
}

/* The last thread out of the gate wakes the fork waiting for it. */
void fork_guard_leave_slow(void)
{
	/* Under the mutex: prepare is either before its check of `inside`
	 * (and sees 0) or waiting (and gets the signal). */
	pthread_mutex_lock(&gate.lock);
	pthread_cond_signal(&gate.drained);
	pthread_mutex_unlock(&gate.lock);
}

/* A fork is waiting: step back out and queue behind it, then enter. */
void fork_guard_wait(void)
{
	for (;;) {
		fork_guard_leave();
		pthread_mutex_lock(&gate.lock);
		while (atomic_load(&fork_gate.forks_waiting))
			pthread_cond_wait(&gate.can_enter, &gate.lock);
		pthread_mutex_unlock(&gate.lock);
		atomic_fetch_add(&fork_gate.inside, 1);
		if (!atomic_load(&fork_gate.forks_waiting))
			return;
	}
}

int fork_on_prepare(void (*fn)(void))
{
	fork_init();
	pthread_mutex_lock(&gate.lock);
	prepare_hook = fn;
	pthread_mutex_unlock(&gate.lock);
	return 0;
}
