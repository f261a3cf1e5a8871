/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Attributes the registration fast path relies on. */
#ifndef SAFEPIN_COMPILER_H
#define SAFEPIN_COMPILER_H

/*
 * Thread-local state of the library, in the initial-exec TLS model.  The
 * default model for a shared object (general dynamic) calls
 * __tls_get_addr() on every access, and a registration touches three such
 * variables; under an emulating hypervisor each of those calls costs about
 * as much as the library's own work.  Initial-exec draws on the static TLS
 * block, which glibc reserves with room to spare for a library that is
 * dlopen()ed later: all of ours is 16 bytes.
 */
#define SP_THREAD_LOCAL _Thread_local __attribute__((tls_model("initial-exec")))

/*
 * The pre-fault stores into the first byte of every page of a range,
 * which need not be the application's: a heap buffer's page starts in
 * malloc's bookkeeping, or in AddressSanitizer's redzone.  The store puts
 * back the byte it read, atomically, so nobody's data changes.
 */
#define SP_NO_SANITIZE_ADDRESS __attribute__((no_sanitize("address")))

#define SP_LIKELY(x) __builtin_expect(!!(x), 1)
#define SP_UNLIKELY(x) __builtin_expect(!!(x), 0)

#endif
