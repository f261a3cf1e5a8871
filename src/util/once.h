/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * pthread_once() with the "already done" test inlined.  Every registration
 * passes three initialisation points (library, fork handlers, consumer);
 * a call into libc for each is measurable when a re-registration otherwise
 * makes no system call at all.
 */
#ifndef SAFEPIN_ONCE_H
#define SAFEPIN_ONCE_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>

#include "compiler.h"

struct once {
	atomic_bool done;	/* set after fn() has returned in some thread */
	pthread_once_t control;
};

#define ONCE_INIT { false, PTHREAD_ONCE_INIT }

static inline void once_run(struct once *o, void (*fn)(void))
{
	if (SP_LIKELY(atomic_load_explicit(&o->done, memory_order_acquire)))
		return;
	pthread_once(&o->control, fn);
	atomic_store_explicit(&o->done, true, memory_order_release);
}

#endif
