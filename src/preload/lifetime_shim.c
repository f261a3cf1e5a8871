// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The shim's half of lifetime violations (src/core/lifetime.c): interposed
 * munmap, mremap, madvise, mmap/mmap64 (MAP_FIXED only), free and realloc
 * report registered memory the application takes away and drop it from the
 * registry's counts, so that memory mapped later at the same address is
 * marked when it is registered.  And safepin-run --audit (SAFEPIN_AUDIT=1):
 * safepin_audit() at every fork() (in the prepare step, with no
 * registration in flight) and at exit, in processes that registered memory.
 *
 * Only the application's calls count: the library's own (madvise to mark,
 * munmap of its arena, free of its buffers) run with the registry lock held
 * by the calling thread and are forwarded untouched; its madvise advice is
 * never a discard anyway.  glibc's malloc unmaps and discards through
 * internal calls nobody can interpose, so free() and realloc() are checked
 * themselves: a chunk whose bytes overlap a live registration is reported,
 * and if its pages went back to the kernel (an mmapped chunk) the
 * registration is dropped like after munmap.  While any registration was
 * ever made, every free() takes the registry lock once (an AVL lookup);
 * before that, it costs one atomic load.
 *
 * Not seen: raw syscalls, brk/sbrk shrinking, shmdt, munmap from other
 * processes (process_madvise).  The userfaultfd monitor sees those.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <malloc.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fork.h"
#include "lifetime.h"
#include "preload.h"
#include "registry.h"

#define EXPORT __attribute__((visibility("default")))

EXPORT int munmap(void *addr, size_t len);
EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...);
EXPORT int madvise(void *addr, size_t len, int advice);
EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off);
EXPORT void free(void *p);
EXPORT void *realloc(void *p, size_t n);

static int (*real_munmap)(void *, size_t);
static void *(*real_mremap)(void *, size_t, size_t, int, ...);
static int (*real_madvise)(void *, size_t, int);
static void *(*real_mmap)(void *, size_t, int, int, int, off_t);
static void *(*real_mmap64)(void *, size_t, int, int, int, off_t);
static void (*real_free)(void *);
static void *(*real_realloc)(void *, size_t);
static __thread int resolving __attribute__((tls_model("initial-exec")));
static bool audit;

static void resolve(void)
{
	if (resolving)
		return;
	resolving = 1;
	real_munmap = (int (*)(void *, size_t))dlsym(RTLD_NEXT, "munmap");
	real_mremap = (void *(*)(void *, size_t, size_t, int, ...))dlsym(RTLD_NEXT, "mremap");
	real_madvise = (int (*)(void *, size_t, int))dlsym(RTLD_NEXT, "madvise");
	real_mmap = (void *(*)(void *, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap");
	real_mmap64 = (void *(*)(void *, size_t, int, int, int, off_t))dlsym(RTLD_NEXT, "mmap64");
	real_realloc = (void *(*)(void *, size_t))dlsym(RTLD_NEXT, "realloc");
	real_free = (void (*)(void *))dlsym(RTLD_NEXT, "free");
	resolving = 0;
}

static uintptr_t page_up(uintptr_t x)
{
	uintptr_t ps = (uintptr_t)sysconf(_SC_PAGESIZE);

	return (x + ps - 1) & ~(ps - 1);
}

/* The real calls; raw syscalls before the real functions are known. */
static int call_munmap(void *a, size_t l)
{
	if (!real_munmap)
		resolve();
	return real_munmap ? real_munmap(a, l) : (int)syscall(SYS_munmap, a, l);
}

static int call_madvise(void *a, size_t l, int adv)
{
	if (!real_madvise)
		resolve();
	return real_madvise ? real_madvise(a, l, adv) : (int)syscall(SYS_madvise, a, l, adv);
}

static void *call_mmap(bool is64, void *a, size_t l, int prot, int flags, int fd, off_t off)
{
	void *(*fn)(void *, size_t, int, int, int, off_t);

	if (!real_mmap)
		resolve();
	fn = is64 && real_mmap64 ? real_mmap64 : real_mmap;
	return fn ? fn(a, l, prot, flags, fd, off)
		  : (void *)syscall(SYS_mmap, a, l, prot, flags, fd, off);
}

/* ---- munmap ---- */

struct unmap_args {
	void *addr;
	size_t len;
	int ret;
};

static bool do_munmap(void *ctx, uintptr_t *start, uintptr_t *end)
{
	struct unmap_args *a = ctx;

	(void)start;
	(void)end;
	a->ret = call_munmap(a->addr, a->len);
	return a->ret == 0;
}

EXPORT int munmap(void *addr, size_t len)
{
	struct unmap_args a = { addr, len, -1 };

	if (shim_secure() || !lifetime_any_live())
		return call_munmap(addr, len);
	lifetime_app_call(SAFEPIN_VIOLATION_MUNMAP, (uintptr_t)addr,
			  page_up((uintptr_t)addr + len), true, do_munmap, &a);
	return a.ret;
}

/* ---- madvise ---- */

struct madv_args {
	void *addr;
	size_t len;
	int advice, ret;
};

static bool do_madvise(void *ctx, uintptr_t *start, uintptr_t *end)
{
	struct madv_args *a = ctx;

	(void)start;
	(void)end;
	a->ret = call_madvise(a->addr, a->len, a->advice);
	return a->ret == 0;
}

EXPORT int madvise(void *addr, size_t len, int advice)
{
	struct madv_args a = { addr, len, advice, -1 };
	enum safepin_violation_kind kind;

	switch (advice) {
	case MADV_DONTNEED:
#ifdef MADV_DONTNEED_LOCKED
	case MADV_DONTNEED_LOCKED:
#endif
		kind = SAFEPIN_VIOLATION_DONTNEED;
		break;
	case MADV_FREE:
		kind = SAFEPIN_VIOLATION_FREE;
		break;
	case MADV_REMOVE:
		kind = SAFEPIN_VIOLATION_REMOVE;
		break;
	default:
		return call_madvise(addr, len, advice);
	}
	if (shim_secure() || !lifetime_any_live())
		return call_madvise(addr, len, advice);
	lifetime_app_call(kind, (uintptr_t)addr, page_up((uintptr_t)addr + len), false,
			  do_madvise, &a);
	return a.ret;
}

/* ---- mremap ---- */

struct mremap_args {
	void *old;
	size_t old_len, new_len;
	int flags;
	void *new_addr, *ret;
};

static bool do_mremap(void *ctx, uintptr_t *start, uintptr_t *end)
{
	struct mremap_args *a = ctx;

	(void)end;
	if (!real_mremap)
		resolve();
	a->ret = real_mremap ? real_mremap(a->old, a->old_len, a->new_len, a->flags, a->new_addr)
			     : (void *)syscall(SYS_mremap, a->old, a->old_len, a->new_len,
					       a->flags, a->new_addr);
	if (a->ret == MAP_FAILED)
		return false;
	if (a->ret == a->old)	/* in place: only a shrunk tail went away */
		*start = page_up((uintptr_t)a->old + a->new_len);
	return true;		/* moved: all of the old range */
}

EXPORT void *mremap(void *old, size_t old_len, size_t new_len, int flags, ...)
{
	struct mremap_args a = { old, old_len, new_len, flags, NULL, MAP_FAILED };
	va_list ap;

	if (flags & MREMAP_FIXED) {
		va_start(ap, flags);
		a.new_addr = va_arg(ap, void *);
		va_end(ap);
	}
	if (shim_secure() || !lifetime_any_live()) {
		do_mremap(&a, &(uintptr_t){ 0 }, &(uintptr_t){ 0 });
		return a.ret;
	}
	lifetime_app_call(SAFEPIN_VIOLATION_MREMAP, (uintptr_t)old,
			  page_up((uintptr_t)old + old_len), true, do_mremap, &a);
	return a.ret;
}

/* ---- mmap(MAP_FIXED) over registered memory ---- */

struct mmap_args {
	bool is64;
	void *addr;
	size_t len;
	int prot, flags, fd;
	off_t off;
	void *ret;
};

static bool do_mmap(void *ctx, uintptr_t *start, uintptr_t *end)
{
	struct mmap_args *a = ctx;

	(void)start;
	(void)end;
	a->ret = call_mmap(a->is64, a->addr, a->len, a->prot, a->flags, a->fd, a->off);
	return a->ret != MAP_FAILED;
}

static void *shim_mmap(bool is64, void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	struct mmap_args a = { is64, addr, len, prot, flags, fd, off, MAP_FAILED };

	if (!(flags & MAP_FIXED) || shim_secure() || !lifetime_any_live())
		return call_mmap(is64, addr, len, prot, flags, fd, off);
	lifetime_app_call(SAFEPIN_VIOLATION_MAP_FIXED, (uintptr_t)addr,
			  page_up((uintptr_t)addr + len), true, do_mmap, &a);
	return a.ret;
}

EXPORT void *mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return shim_mmap(false, addr, len, prot, flags, fd, off);
}

EXPORT void *mmap64(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	return shim_mmap(true, addr, len, prot, flags, fd, off);
}

/* ---- free, realloc ---- */

struct free_args {
	void *p;
	size_t n;
	uintptr_t end;
	void *ret;
	bool is_realloc;
};

static uintptr_t do_free(void *ctx)
{
	struct free_args *a = ctx;

	if (!a->is_realloc) {
		real_free(a->p);
		return (uintptr_t)a->p;
	}
	a->ret = real_realloc(a->p, a->n);
	if (a->ret == a->p)
		return (uintptr_t)a->p + a->n;	/* in place */
	if (!a->ret && a->n)
		return a->end;			/* failed: nothing freed */
	return (uintptr_t)a->p;
}

EXPORT void free(void *p)
{
	struct free_args a = { p, 0, 0, NULL, false };

	if (!real_free) {
		resolve();
		if (!real_free)
			return;	/* during the lookup itself: leak rather than guess */
	}
	if (!p || shim_secure() || !lifetime_any_live()) {
		real_free(p);
		return;
	}
	a.end = (uintptr_t)p + malloc_usable_size(p);
	lifetime_app_free((uintptr_t)p, a.end, do_free, &a);
}

EXPORT void *realloc(void *p, size_t n)
{
	struct free_args a = { p, n, 0, NULL, true };

	if (!real_realloc) {
		resolve();
		if (!real_realloc)
			return NULL;
	}
	if (!p || shim_secure() || !lifetime_any_live())
		return real_realloc(p, n);
	a.end = (uintptr_t)p + malloc_usable_size(p);
	lifetime_app_free((uintptr_t)p, a.end, do_free, &a);
	return a.ret;
}

/* ---- safepin-run --audit ---- */

static void audit_now(const char *when)
{
	struct safepin_audit_report r = { .size = sizeof(r), .flags = SAFEPIN_AUDIT_PRINT };

	fprintf(stderr, "libsafepin: audit %s (pid %ld):\n", when, (long)getpid());
	(void)audit_run_locked(&r);
}

/* fork()'s prepare step: registry lock held, no registration in flight. */
static void audit_fork(void)
{
	if (lifetime_any_live())
		audit_now("at fork");
}

__attribute__((constructor)) static void lifetime_shim_load(void)
{
	const char *v;

	resolve();
	if (getauxval(AT_SECURE))
		return;
	v = secure_getenv("SAFEPIN_AUDIT");
	if (v && !strcmp(v, "1")) {
		audit = true;
		fork_on_prepare(audit_fork);
	} else if (v && strcmp(v, "0")) {
		fprintf(stderr, "libsafepin_preload: ignoring SAFEPIN_AUDIT=\"%s\": expected 0 "
			"or 1\n", v);
	}
}

__attribute__((destructor)) static void lifetime_shim_unload(void)
{
	if (!audit || shim_secure() || !lifetime_any_live())
		return;
	registry_lock();
	audit_now("at exit");
	registry_unlock();
}
