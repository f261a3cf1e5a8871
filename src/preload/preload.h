/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Internals shared by the two halves of libsafepin_preload.so: preload.c
 * (the libibverbs wrappers, the refcount routing, statistics) and dlsym.c
 * (the real dlsym/dlvsym of libc and their interposers).
 */
#ifndef SAFEPIN_PRELOAD_H
#define SAFEPIN_PRELOAD_H

#include <stdbool.h>

#define SHIM_HIDDEN __attribute__((visibility("hidden")))

/* libc's own dlvsym (GLIBC_2.34), found by reading libc's dynamic symbol
 * table: the name "dlvsym" resolves to the shim itself. NULL if not found. */
SHIM_HIDDEN extern void *(*shim_real_dlvsym)(void *handle, const char *name,
					      const char *version);
/* Find libc's dlsym/dlvsym (idempotent, no allocation). */
SHIM_HIDDEN void shim_dl_resolve(void);

/* True when running with AT_SECURE (setuid/setgid/capabilities): the shim
 * then forwards every call untouched. */
SHIM_HIDDEN bool shim_secure(void);

/*
 * For dlsym()/dlvsym() on a real handle: @sym is what the lookup of @name
 * (@version, or NULL for the default version) found.  If that is one of the
 * libibverbs functions the shim interposes, return the shim's function;
 * else @sym unchanged.
 */
SHIM_HIDDEN void *shim_redirect(const char *name, const char *version, void *sym);

#endif
