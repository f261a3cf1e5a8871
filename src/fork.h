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
void fork_guard_exit(void);

#endif
