/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * fork() handling: the fork guard that keeps fork() out of a registration
 * in flight, and the pthread_atfork handlers that hand the child a clean
 * library.
 */
#ifndef SAFEPIN_FORK_H
#define SAFEPIN_FORK_H

#include <stdatomic.h>

#include "compiler.h"
#include "once.h"

/* Register the atfork handlers; idempotent. */
void fork_init_once(void);
extern struct once fork_once;

static inline void fork_init(void)
{
	once_run(&fork_once, fork_init_once);
}

/*
 * The fork guard: fork_guard_enter() before a registration marks or a
 * release unpins, fork_guard_exit() after the marks match the device's
 * pins again; they nest per thread.  While no fork waits, entering and
 * leaving are two atomic operations, inline: a revived registration makes
 * no system call, and under emulation (the TCG guests) every call and
 * return costs about as much as the rest of it.  fork.c has the protocol.
 */
struct fork_gate_counters {
	atomic_uint inside;		/* threads between enter and exit */
	atomic_uint forks_waiting;
};
extern struct fork_gate_counters fork_gate;
extern SP_THREAD_LOCAL unsigned int fork_guard_depth;
void fork_guard_wait(void);
void fork_guard_leave_slow(void);

static inline void fork_guard_enter(void)
{
	fork_init();
	if (fork_guard_depth++)
		return;		/* nested: never wait behind a fork while inside */
	atomic_fetch_add(&fork_gate.inside, 1);
	if (SP_UNLIKELY(atomic_load(&fork_gate.forks_waiting)))
		fork_guard_wait();
}

/* Leave the gate; the last one out wakes a waiting fork. */
static inline void fork_guard_leave(void)
{
	if (atomic_fetch_sub(&fork_gate.inside, 1) == 1 &&
	    SP_UNLIKELY(atomic_load(&fork_gate.forks_waiting)))
		fork_guard_leave_slow();
}

static inline void fork_guard_exit(void)
{
	if (!fork_guard_depth || --fork_guard_depth)
		return;
	fork_guard_leave();
}
/*
 * Have @reset run in every forked child, after the registry's own reset:
 * each consumer (verbs, VFIO, the shim) drops the registrations it tracks,
 * since the child owns none.  The fork guard is free when it runs.  At most
 * FORK_MAX_CHILD_RESETS; returns 0 or -ENOSPC.
 */
#define FORK_MAX_CHILD_RESETS 8
int fork_on_child(void (*reset)(void));
/*
 * Have @fn run in fork()'s prepare step, after every registration in
 * flight finished and with the registry lock held (the audit of
 * safepin-run --audit).  One hook; returns 0.
 */
int fork_on_prepare(void (*fn)(void));

#endif
