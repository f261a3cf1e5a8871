/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* One-time library initialisation shared by every public entry point. */
#ifndef SAFEPIN_INIT_H
#define SAFEPIN_INIT_H

/* Idempotent and thread-safe (pthread_once). */
void safepin_init(void);

#endif
