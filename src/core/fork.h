/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * fork() handling: the fork guard that keeps fork() out of a registration
 * in flight, and the pthread_atfork handlers that hand the child a clean
 * library.
 */
#ifndef SAFEPIN_FORK_H
#define SAFEPIN_FORK_H

/* Register the atfork handlers; idempotent. */
void fork_init(void);
void fork_guard_enter(void);
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
void fork_guard_exit(void);

#endif
