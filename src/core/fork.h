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
 * leaving are two atomic operations, inline, on a counter of the calling
 * thread's own (struct fork_thread, in its own cache line): a revived
 * registration makes no system call, and two threads registering at once
 * must not pass a shared cache line back and forth, nor, under emulation
 * (the TCG guests), pay for calls and returns that cost about as much as
 * the rest of it.  fork.c has the protocol.
 */
struct fork_thread {
	_Alignas(64) atomic_uint inside;	/* this thread between enter and exit */
	atomic_bool in_use;		/* claimed by a live thread */
	struct fork_thread *next;	/* every record made: never freed */
};
struct fork_gate_counters {
	_Alignas(64) atomic_uint forks_waiting;	/* a line of its own: read on every entry */
	struct fork_thread *_Atomic threads;
};
extern struct fork_gate_counters fork_gate;
extern SP_THREAD_LOCAL unsigned int fork_guard_depth;
extern SP_THREAD_LOCAL struct fork_thread *fork_self;
struct fork_thread *fork_thread_attach(void);
void fork_guard_wait(void);
void fork_guard_leave_slow(void);

static inline void fork_guard_enter(void)
{
	struct fork_thread *me;

	fork_init();
	if (fork_guard_depth++)
		return;		/* nested: never wait behind a fork while inside */
	me = fork_self;
	if (SP_UNLIKELY(!me))
		me = fork_thread_attach();
	atomic_fetch_add(&me->inside, 1);
	if (SP_UNLIKELY(atomic_load(&fork_gate.forks_waiting)))
		fork_guard_wait();
}

/* Leave the gate; a thread leaving while a fork waits wakes it. */
static inline void fork_guard_leave(void)
{
	atomic_fetch_sub(&fork_self->inside, 1);
	if (SP_UNLIKELY(atomic_load(&fork_gate.forks_waiting)))
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
