// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Registrations hold the fork guard (a reader lock) from before they mark a
 * range until after the device has pinned it, and from before the device
 * unpins until the range is unmarked.  The atfork prepare handler takes the
 * writer side, so fork() waits for registrations in flight and new ones wait
 * for the fork: no child sees a range marked but not pinned, or unpinned but
 * still marked.  The lock prefers writers so a stream of registrations
 * cannot starve a fork; nesting is counted per thread so a thread never
 * re-takes the reader lock behind a waiting writer.
 */
#include <pthread.h>

#include "fork.h"
#include "registry.h"

static pthread_rwlock_t fork_gate;
static _Thread_local unsigned int guard_depth;
static pthread_once_t fork_once = PTHREAD_ONCE_INIT;

static void gate_init(void)
{
	pthread_rwlockattr_t attr;

	pthread_rwlockattr_init(&attr);
	pthread_rwlockattr_setkind_np(&attr, PTHREAD_RWLOCK_PREFER_WRITER_NONRECURSIVE_NP);
	pthread_rwlock_init(&fork_gate, &attr);
	pthread_rwlockattr_destroy(&attr);
}

static void prepare(void)
{
	pthread_rwlock_wrlock(&fork_gate);
	registry_lock();
}

static void parent(void)
{
	registry_unlock();
	pthread_rwlock_unlock(&fork_gate);
}

/* The child owns no registration: it gets fresh locks and an empty registry. */
static void child(void)
{
	gate_init();
	guard_depth = 0;
	registry_reset_in_child();
}

static void do_fork_init(void)
{
	gate_init();
	pthread_atfork(prepare, parent, child);
}

void fork_init(void)
{
	pthread_once(&fork_once, do_fork_init);
}

void fork_guard_enter(void)
{
	fork_init();
	if (guard_depth++ == 0)
		pthread_rwlock_rdlock(&fork_gate);
}

void fork_guard_exit(void)
{
	if (guard_depth && --guard_depth == 0)
		pthread_rwlock_unlock(&fork_gate);
}
