// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * libsafepin_preload.so: LD_PRELOAD shim that makes every memory
 * registration of an unmodified libibverbs program fork-safe.
 *
 * What is interposed (exported under libibverbs' own symbol versions, see
 * libsafepin_preload.map.in):
 *
 *   ibv_reg_mr@IBVERBS_1.0      compat, old struct ibv_pd layout: forwarded
 *                               untouched to the real 1.0 symbol; the range
 *                               is marked around it
 *   ibv_reg_mr@@IBVERBS_1.1     ibv_reg_mr_iova@@IBVERBS_1.7
 *   ibv_reg_mr_iova2@@IBVERBS_1.8 (what the verbs.h macro calls for
 *                               non-constant access flags)
 *   ibv_reg_mr_ex@@IBVERBS_1.15 when the rdma-core built against has it
 *   ibv_rereg_mr@@IBVERBS_1.1   ibv_dereg_mr@IBVERBS_1.0, @@IBVERBS_1.1
 *   ibv_fork_init, ibv_dontfork_range, ibv_dofork_range (IBVERBS_1.1),
 *   ibv_is_fork_initialized@@IBVERBS_1.13
 *   dlsym, dlvsym (GLIBC_2.2.5, GLIBC_2.34; dlsym.c)
 *
 * Real functions are found with dlvsym(RTLD_NEXT, name, version), lazily on
 * the first call (a program that never calls libibverbs never makes the shim
 * look for it, let alone load it), or, when libibverbs was dlopen()ed with
 * RTLD_LOCAL and so is not in the global scope, through a
 * dlopen("libibverbs.so.1", RTLD_NOLOAD) handle.
 *
 * A registration, entered at any of the entry points above:
 *
 *   fork guard -> registry_pin(range) -> real function -> remember mr
 *
 * libibverbs calls its own ibv_reg_mr_iova2, ibv_dereg_mr,
 * ibv_dontfork_range and ibv_dofork_range through its PLT, so they land in
 * the shim again while the outer call runs.  A thread-local guard (depth and
 * the ranges the outer call handles) makes those inner calls plain
 * forwards, or no-ops for the dontfork/dofork of the outer call's own
 * range: one registration is counted and marked exactly once.
 *
 * One refcount map per process: ibv_dontfork_range()/ibv_dofork_range()
 * called by the application or by a provider (queue buffers) go into the
 * same registry (registry_pin/registry_unpin), never to libibverbs'
 * madvise code, and ibv_fork_init() turns on nothing inside libibverbs:
 * the two libraries cannot clear each other's marks.  Semantics of the
 * pair (libibverbs counts per page; the registry counts (addr, len)
 * registrations):
 *   - ibv_dontfork_range(a, n) pins (a, n) once more (n == 0: nothing);
 *   - ibv_dofork_range(a, n) releases one earlier ibv_dontfork_range of
 *     exactly (a, n);
 *   - one that lies inside a single earlier dontfork range (a sub-range, as
 *     libibverbs' page counting allows) splits it: the rest stays pinned,
 *     the sub-range is released;
 *   - anything else (never dontforked, a range straddling several, the
 *     range of a live memory region) releases nothing and returns 0: the
 *     pages stay marked as long as something covers them, which is safe.
 *     Counted as dofork_unmatched.  It can never unmark the pages of a
 *     memory region (libibverbs' own counting can: an unbalanced dofork
 *     there drops a live region's count).
 *
 * Inert with AT_SECURE (setuid/setgid/file capabilities; glibc loads a
 * preload there only from /etc/ld.so.preload or from system directories):
 * every wrapper forwards, nothing is marked, no environment is read.
 *
 * Statistics at exit with SAFEPIN_STATS=1: one line per process, to stderr
 * or appended to SAFEPIN_STATS_FILE ("%p" in it becomes the pid).
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dlfcn.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>
#include <unistd.h>

#include <infiniband/verbs.h>

#include <safepin/verbs_config.h>

#include "arena.h"
#include "avl.h"
#include "fork.h"
#include "init.h"
#include "lifetime.h"
#include "log.h"
#include "mr_table.h"
#include "rereg_plan.h"
#include "preload.h"
#include "registry.h"

#undef ibv_reg_mr
#undef ibv_reg_mr_iova

#define EXPORT __attribute__((visibility("default")))

/* The shim's entry points: exported only under the versioned names below. */
EXPORT struct ibv_mr *shim_reg_mr_1_0(struct ibv_pd *pd, void *addr, size_t length, int access);
EXPORT struct ibv_mr *shim_reg_mr(struct ibv_pd *pd, void *addr, size_t length, int access);
EXPORT struct ibv_mr *shim_reg_mr_iova(struct ibv_pd *pd, void *addr, size_t length,
				       uint64_t iova, int access);
EXPORT struct ibv_mr *shim_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t length,
					uint64_t iova, unsigned int access);
#if SAFEPIN_HAVE_REG_MR_EX
EXPORT struct ibv_mr *shim_reg_mr_ex(struct ibv_pd *pd, struct ibv_mr_init_attr *attr);
#endif
EXPORT int shim_dereg_mr_1_0(struct ibv_mr *mr);
EXPORT int shim_dereg_mr(struct ibv_mr *mr);
EXPORT int shim_rereg_mr(struct ibv_mr *mr, int flags, struct ibv_pd *pd, void *addr,
			 size_t length, int access);
EXPORT int shim_fork_init(void);
EXPORT enum ibv_fork_status shim_is_fork_initialized(void);
EXPORT int shim_dontfork_range(void *base, size_t size);
EXPORT int shim_dofork_range(void *base, size_t size);
/* Bind a C function to an exported versioned name (the map declares it). */
#define SYMVER(fn, sym) __asm__(".symver " #fn ", " sym)

/* ===================================================================== *
 * The real functions                                                    *
 * ===================================================================== */

enum fn {
	FN_REG_MR_1_0,
	FN_REG_MR,
	FN_REG_MR_IOVA,
	FN_REG_MR_IOVA2,
	FN_REG_MR_EX,
	FN_REREG_MR,
	FN_DEREG_MR_1_0,
	FN_DEREG_MR,
	FN_FORK_INIT,
	FN_DONTFORK,
	FN_DOFORK,
	FN_IS_FORK_INIT,
	FN_COUNT
};

struct fn_info {
	const char *name, *version, *stat;
	bool is_default;	/* what dlsym(handle, name) finds */
	void *wrapper;		/* the shim's function (set below) */
};

static struct fn_info fns[FN_COUNT] = {
	[FN_REG_MR_1_0] = { "ibv_reg_mr", "IBVERBS_1.0", "reg_mr_1_0", false, NULL },
	[FN_REG_MR] = { "ibv_reg_mr", "IBVERBS_1.1", "reg_mr", true, NULL },
	[FN_REG_MR_IOVA] = { "ibv_reg_mr_iova", "IBVERBS_1.7", "reg_mr_iova", true, NULL },
	[FN_REG_MR_IOVA2] = { "ibv_reg_mr_iova2", "IBVERBS_1.8", "reg_mr_iova2", true, NULL },
	[FN_REG_MR_EX] = { "ibv_reg_mr_ex", "IBVERBS_1.15", "reg_mr_ex", true, NULL },
	[FN_REREG_MR] = { "ibv_rereg_mr", "IBVERBS_1.1", "rereg_mr", true, NULL },
	[FN_DEREG_MR_1_0] = { "ibv_dereg_mr", "IBVERBS_1.0", "dereg_mr_1_0", false, NULL },
	[FN_DEREG_MR] = { "ibv_dereg_mr", "IBVERBS_1.1", "dereg_mr", true, NULL },
	[FN_FORK_INIT] = { "ibv_fork_init", "IBVERBS_1.1", "fork_init", true, NULL },
	[FN_DONTFORK] = { "ibv_dontfork_range", "IBVERBS_1.1", "dontfork_range", true, NULL },
	[FN_DOFORK] = { "ibv_dofork_range", "IBVERBS_1.1", "dofork_range", true, NULL },
	[FN_IS_FORK_INIT] = { "ibv_is_fork_initialized", "IBVERBS_1.13", "is_fork_initialized",
			      true, NULL },
};

static void *_Atomic real_fns[FN_COUNT];

/* Look @f up without loading anything: the global scope after the shim,
 * else a libibverbs that is loaded but local (dlopen(RTLD_LOCAL)). */
static void *lookup_real(enum fn f)
{
	void *sym = NULL, *h;

	shim_dl_resolve();
	if (!shim_real_dlvsym)
		return NULL;
	sym = shim_real_dlvsym(RTLD_NEXT, fns[f].name, fns[f].version);
	if (!sym) {
		h = dlopen("libibverbs.so.1", RTLD_NOLOAD | RTLD_LAZY);
		if (h) {
			sym = shim_real_dlvsym(h, fns[f].name, fns[f].version);
			dlclose(h);
		}
	}
	return sym;
}

static void *real_fn(enum fn f)
{
	void *sym = atomic_load_explicit(&real_fns[f], memory_order_acquire);

	if (!sym) {
		sym = lookup_real(f);
		if (sym)
			atomic_store_explicit(&real_fns[f], sym, memory_order_release);
	}
	return sym;
}

/* A real function or, if libibverbs is nowhere, NULL with errno ENOSYS. */
static void *real_or_enosys(enum fn f)
{
	void *sym = real_fn(f);

	if (!sym)
		errno = ENOSYS;
	return sym;
}
#define REAL(f, type) ((type)real_or_enosys(f))

typedef struct ibv_mr *(*reg_mr_fn)(struct ibv_pd *, void *, size_t, int);
typedef struct ibv_mr *(*reg_mr_iova_fn)(struct ibv_pd *, void *, size_t, uint64_t, int);
typedef struct ibv_mr *(*reg_mr_iova2_fn)(struct ibv_pd *, void *, size_t, uint64_t,
					  unsigned int);
typedef int (*rereg_mr_fn)(struct ibv_mr *, int, struct ibv_pd *, void *, size_t, int);
typedef int (*dereg_mr_fn)(struct ibv_mr *);
typedef int (*fork_init_fn)(void);
typedef int (*range_fn)(void *, size_t);
typedef enum ibv_fork_status (*is_fork_init_fn)(void);

/* ===================================================================== *
 * Statistics                                                            *
 * ===================================================================== */

enum shim_stat {
	/* S_FN + enum fn: calls seen at each entry point (outermost only) */
	S_DOFORK_UNMATCHED = FN_COUNT,
	S_DLSYM_REDIRECTS,
	S_REGS_MARKED,		/* registrations whose range was pinned */
	S_PAGES_REGISTERED,	/* base pages spanned by those ranges, summed */
	S_PAGES_MARKED_PEAK,	/* max of the registry's marked pages */
	S_MARK_FAILURES,	/* registry_pin failed: the call failed */
	S_UNMARK_FAILURES,	/* registry_unpin failed: pages stay marked */
	S_PROVIDER_FAILURES,	/* the real function failed (passed through) */
	S_COUNT
};

static const char *const stat_names[S_COUNT - FN_COUNT] = {
	"dofork_unmatched", "dlsym_redirects",	  "registrations_marked", "pages_registered",
	"pages_marked_peak", "mark_failures",	  "unmark_failures",	  "provider_failures",
};

static _Atomic uint64_t stats[S_COUNT];

static void stat_add(int s, uint64_t n)
{
	atomic_fetch_add_explicit(&stats[s], n, memory_order_relaxed);
}

static void stat_max(int s, uint64_t v)
{
	uint64_t cur = atomic_load_explicit(&stats[s], memory_order_relaxed);

	while (v > cur && !atomic_compare_exchange_weak_explicit(&stats[s], &cur, v,
								 memory_order_relaxed,
								 memory_order_relaxed))
		;
}

static struct {
	bool secure;		/* AT_SECURE: forward only */
	bool stats;		/* SAFEPIN_STATS=1 */
	char stats_file[4096];	/* SAFEPIN_STATS_FILE, "" = stderr */
	pid_t stats_pid;	/* the process whose line is always printed */
} cfg;

SHIM_HIDDEN bool shim_secure(void)
{
	return cfg.secure;
}

/* ===================================================================== *
 * State: memory regions we pinned, dontfork ranges                      *
 * ===================================================================== */

struct df_node {
	struct avl_node avl;
	uintptr_t addr;
	size_t len;
	uint64_t count;
};

static struct {
	pthread_mutex_t lock;	/* taken inside the fork guard only */
	struct arena arena;
	struct node_alloc alloc;
	struct mr_table mrs;
	struct avl_tree dontfork;	/* struct df_node by (addr, len) */
	bool active;
} sh = { .lock = PTHREAD_MUTEX_INITIALIZER };

static pthread_once_t shim_once = PTHREAD_ONCE_INIT;

/* The registration being handled by this thread's outermost wrapper: the
 * inner dontfork/dofork calls libibverbs makes for these ranges are ours. */
static __thread struct {
	int depth;
	struct mr_pin own[2];
} tls __attribute__((tls_model("initial-exec")));

static void shim_child(void)
{
	pthread_mutex_init(&sh.lock, NULL);
	mr_table_forget(&sh.mrs);
	sh.dontfork.root = NULL;
	arena_release(&sh.arena);
	for (int i = 0; i < S_COUNT; i++)
		atomic_store_explicit(&stats[i], 0, memory_order_relaxed);
	cfg.stats_pid = -1;	/* print only what the child itself did */
}

static void shim_init_once(void)
{
	if (cfg.secure)
		return;
	safepin_init();
	arena_init(&sh.arena);
	sh.alloc = arena_node_alloc(&sh.arena);
	mr_table_init(&sh.mrs, &sh.alloc);
	sh.dontfork.root = NULL;
	fork_on_child(shim_child);
	sh.active = true;
	sp_log(SP_LOG_INFO, "preload: active, policy %d", (int)registry_policy());
}

/* True when the shim does its work for this call: not AT_SECURE. */
static bool shim_active(void)
{
	if (cfg.secure)
		return false;
	pthread_once(&shim_once, shim_init_once);
	return sh.active;
}

static bool own_range(const void *addr, size_t len)
{
	if (!tls.depth)
		return false;
	for (int i = 0; i < 2; i++)
		if (tls.own[i].len && tls.own[i].addr == (uintptr_t)addr && tls.own[i].len == len)
			return true;
	return false;
}

static void nest_enter(const struct mr_pin *a, const struct mr_pin *b)
{
	tls.depth++;
	tls.own[0] = a ? *a : (struct mr_pin){ 0, 0 };
	tls.own[1] = b ? *b : (struct mr_pin){ 0, 0 };
}

static void nest_exit(void)
{
	tls.depth--;
	tls.own[0] = tls.own[1] = (struct mr_pin){ 0, 0 };
}

static uint64_t span_pages(const struct mr_pin *p)
{
	uintptr_t ps = (uintptr_t)sysconf(_SC_PAGESIZE);
	uintptr_t start = p->addr & ~(ps - 1), end = (p->addr + p->len + ps - 1) & ~(ps - 1);

	return (end - start) / ps;
}

static void note_marked(const struct mr_pin *p)
{
	struct safepin_stats st = { .size = sizeof(st) };

	stat_add(S_REGS_MARKED, 1);
	stat_add(S_PAGES_REGISTERED, span_pages(p));
	registry_read_stats(&st);
	stat_max(S_PAGES_MARKED_PEAK, st.pages_marked);
}

/* Pin @p (fork guard held). Return 0 or -1 with errno; nothing changed then. */
static int pin(const struct mr_pin *p)
{
	int ret = registry_pin(p->addr, p->len);

	if (ret) {
		stat_add(S_MARK_FAILURES, 1);
		sp_log(SP_LOG_ERROR, "preload: cannot mark %#lx+%zu: errno %d",
		       (unsigned long)p->addr, p->len, -ret);
		errno = -ret;
		return -1;
	}
	return 0;
}

/*
 * Release @p (fork guard held): after a deregistration or the application's
 * ibv_dofork_range(), or, @now, undoing a registration the provider refused
 * (never parked: a failed call leaves no mark). errno preserved.
 */
static void unpin(const struct mr_pin *p, bool now)
{
	int saved = errno;
	int ret = now ? registry_unpin_now(p->addr, p->len) : registry_unpin(p->addr, p->len);

	if (ret) {
		stat_add(S_UNMARK_FAILURES, 1);
		sp_log(SP_LOG_ERROR, "preload: cannot release %#lx+%zu: errno %d",
		       (unsigned long)p->addr, p->len, -ret);
	}
	errno = saved;
}

static struct mr_node *node_new(void)
{
	struct mr_node *n;

	pthread_mutex_lock(&sh.lock);
	n = mr_table_node_new(&sh.mrs);
	pthread_mutex_unlock(&sh.lock);
	if (!n) {
		stat_add(S_MARK_FAILURES, 1);
		errno = ENOMEM;
	}
	return n;
}

static void node_free(struct mr_node *n)
{
	int saved = errno;

	pthread_mutex_lock(&sh.lock);
	mr_table_node_free(&sh.mrs, n);
	pthread_mutex_unlock(&sh.lock);
	errno = saved;
}

static struct mr_node *take(const void *mr)
{
	struct mr_node *n;

	pthread_mutex_lock(&sh.lock);
	n = mr_table_take(&sh.mrs, mr);
	pthread_mutex_unlock(&sh.lock);
	return n;
}

static void remember(struct mr_node *n, const void *mr, const struct mr_pin *p)
{
	struct mr_pin stale;
	int replaced, saved = errno;

	pthread_mutex_lock(&sh.lock);
	replaced = mr_table_insert(&sh.mrs, n, mr, p, &stale);
	pthread_mutex_unlock(&sh.lock);
	if (replaced) {
		/* Freed behind our back (cannot happen through the shim, which
		 * sees every dereg) and the address reused. */
		sp_log(SP_LOG_ERROR, "preload: stale region %p, releasing %#lx+%zu", mr,
		       (unsigned long)stale.addr, stale.len);
		unpin(&stale, false);
	}
	errno = saved;
}

static bool pins_pages(size_t length, unsigned int access)
{
	return length && !(access & IBV_ACCESS_ON_DEMAND);
}

/* ===================================================================== *
 * Registration                                                          *
 * ===================================================================== */

struct reg_args {
	enum fn f;
	struct ibv_pd *pd;
	void *addr;
	size_t length;
	uint64_t iova;
	unsigned int access;
	void *attr;	/* ibv_reg_mr_ex */
};

static void *call_reg(const struct reg_args *a)
{
	switch (a->f) {
	case FN_REG_MR_1_0:
	case FN_REG_MR: {
		reg_mr_fn fn = REAL(a->f, reg_mr_fn);
		return fn ? (void *)fn(a->pd, a->addr, a->length, (int)a->access) : NULL;
	}
	case FN_REG_MR_IOVA: {
		reg_mr_iova_fn fn = REAL(a->f, reg_mr_iova_fn);
		return fn ? fn(a->pd, a->addr, a->length, a->iova, (int)a->access) : NULL;
	}
	case FN_REG_MR_IOVA2: {
		reg_mr_iova2_fn fn = REAL(a->f, reg_mr_iova2_fn);
		return fn ? fn(a->pd, a->addr, a->length, a->iova, a->access) : NULL;
	}
#if SAFEPIN_HAVE_REG_MR_EX
	case FN_REG_MR_EX: {
		struct ibv_mr *(*fn)(struct ibv_pd *, struct ibv_mr_init_attr *) =
			REAL(a->f, struct ibv_mr *(*)(struct ibv_pd *, struct ibv_mr_init_attr *));
		return fn ? fn(a->pd, a->attr) : NULL;
	}
#endif
	default:
		errno = ENOSYS;
		return NULL;
	}
}

/*
 * Every registration entry point. @pins: whether the region pins user pages
 * (not ODP, not zero length, not a dma-buf).  The result is an opaque
 * pointer: struct ibv_mr, or struct ibv_mr_1_0 for the compat symbol.
 */
static void *reg(const struct reg_args *a, bool pins)
{
	struct mr_pin p = { (uintptr_t)a->addr, a->length };
	struct mr_node *n;
	void *mr = NULL;
	int saved;

	if (tls.depth || !shim_active())
		return call_reg(a);	/* libibverbs calling itself, or inert */
	stat_add((int)a->f, 1);
	if (!pins) {
		nest_enter(NULL, NULL);
		mr = call_reg(a);
		saved = errno;
		nest_exit();
		if (!mr)
			stat_add(S_PROVIDER_FAILURES, 1);
		errno = saved;
		return mr;
	}

	fork_guard_enter();
	n = node_new();
	if (!n)
		goto out;
	if (pin(&p)) {
		node_free(n);
		goto out;
	}
	nest_enter(&p, NULL);
	mr = call_reg(a);
	saved = errno;
	nest_exit();
	if (!mr) {
		stat_add(S_PROVIDER_FAILURES, 1);
		unpin(&p, true);
		node_free(n);
	} else {
		remember(n, mr, &p);
		note_marked(&p);
	}
	errno = saved;
out:
	saved = errno;
	fork_guard_exit();
	errno = saved;
	return mr;
}

/* The IBVERBS_1.0 compat symbol: @pd is a struct ibv_pd_1_0 (old layout),
 * never looked into; forwarded to the real 1.0 symbol. */
EXPORT struct ibv_mr *shim_reg_mr_1_0(struct ibv_pd *pd, void *addr, size_t length, int access)
{
	struct reg_args a = { FN_REG_MR_1_0, pd, addr, length, (uintptr_t)addr,
			      (unsigned int)access, NULL };

	return reg(&a, pins_pages(length, (unsigned int)access));
}
SYMVER(shim_reg_mr_1_0, "ibv_reg_mr@IBVERBS_1.0");

EXPORT struct ibv_mr *shim_reg_mr(struct ibv_pd *pd, void *addr, size_t length, int access)
{
	struct reg_args a = { FN_REG_MR, pd, addr, length, (uintptr_t)addr, (unsigned int)access,
			      NULL };

	return reg(&a, pins_pages(length, (unsigned int)access));
}
SYMVER(shim_reg_mr, "ibv_reg_mr@@IBVERBS_1.1");

EXPORT struct ibv_mr *shim_reg_mr_iova(struct ibv_pd *pd, void *addr, size_t length,
				       uint64_t iova, int access)
{
	struct reg_args a = { FN_REG_MR_IOVA, pd, addr, length, iova, (unsigned int)access, NULL };

	return reg(&a, pins_pages(length, (unsigned int)access));
}
SYMVER(shim_reg_mr_iova, "ibv_reg_mr_iova@@IBVERBS_1.7");

EXPORT struct ibv_mr *shim_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t length,
					uint64_t iova, unsigned int access)
{
	struct reg_args a = { FN_REG_MR_IOVA2, pd, addr, length, iova, access, NULL };

	return reg(&a, pins_pages(length, access));
}
SYMVER(shim_reg_mr_iova2, "ibv_reg_mr_iova2@@IBVERBS_1.8");

#if SAFEPIN_HAVE_REG_MR_EX
EXPORT struct ibv_mr *shim_reg_mr_ex(struct ibv_pd *pd, struct ibv_mr_init_attr *attr)
{
	struct reg_args a = { FN_REG_MR_EX, pd, NULL, 0, 0, 0, attr };
	bool user = attr && (attr->comp_mask & IBV_REG_MR_MASK_ADDR) &&
		    !(attr->comp_mask & IBV_REG_MR_MASK_FD);

	if (user) {
		a.addr = attr->addr;
		a.length = attr->length;
		a.access = attr->access;
	}
	return reg(&a, user && pins_pages(a.length, a.access));
}
SYMVER(shim_reg_mr_ex, "ibv_reg_mr_ex@@IBVERBS_1.15");
#define SHIM_REG_MR_EX ((void *)shim_reg_mr_ex)
#else
#define SHIM_REG_MR_EX NULL
#endif

/* ===================================================================== *
 * Deregistration                                                        *
 * ===================================================================== */

static int dereg(enum fn f, struct ibv_mr *mr)
{
	dereg_mr_fn fn;
	struct mr_node *n;
	struct mr_pin p;
	int ret, saved;

	fn = REAL(f, dereg_mr_fn);
	if (!fn)
		return ENOSYS;
	if (tls.depth || !shim_active())
		return fn(mr);
	stat_add((int)f, 1);
	fork_guard_enter();
	/* Unlink first: once freed, another thread's region may get @mr's address. */
	n = take(mr);
	if (n) {
		p = n->pin;
		nest_enter(&p, NULL);
	}
	/* Without @n (not registered through the shim) libibverbs' inner
	 * ibv_dofork_range reaches our dofork and releases a matching
	 * ibv_dontfork_range, if there is one. */
	ret = fn(mr);
	saved = errno;
	if (n) {
		nest_exit();
		if (ret) {
			remember(n, mr, &p);	/* still registered, still marked */
		} else {
			node_free(n);
			unpin(&p, false);
		}
	}
	if (ret)
		stat_add(S_PROVIDER_FAILURES, 1);
	fork_guard_exit();
	errno = saved;
	return ret;
}

/* Compat: @mr is a struct ibv_mr_1_0, only used as a key. */
EXPORT int shim_dereg_mr_1_0(struct ibv_mr *mr)
{
	return dereg(FN_DEREG_MR_1_0, mr);
}
SYMVER(shim_dereg_mr_1_0, "ibv_dereg_mr@IBVERBS_1.0");

EXPORT int shim_dereg_mr(struct ibv_mr *mr)
{
	return dereg(FN_DEREG_MR, mr);
}
SYMVER(shim_dereg_mr, "ibv_dereg_mr@@IBVERBS_1.1");

/* ===================================================================== *
 * Re-registration (the logic of safepin_rereg_mr, around the real one)  *
 * ===================================================================== */

EXPORT int shim_rereg_mr(struct ibv_mr *mr, int flags, struct ibv_pd *pd, void *addr,
			 size_t length, int access)
{
	rereg_mr_fn fn;
	struct mr_node *old_node, *n = NULL;
	struct mr_pin old = { 0, 0 }, new, lib_old;
	struct mr_rereg_plan plan;
	bool old_pinned, new_pinned, pin_new, unpin_old;
	int ret, saved;

	fn = REAL(FN_REREG_MR, rereg_mr_fn);
	if (!fn)
		return IBV_REREG_MR_ERR_INPUT;
	if (tls.depth || !shim_active())
		return fn(mr, flags, pd, addr, length, access);
	stat_add(FN_REREG_MR, 1);
	/* Input ibv_rereg_mr() refuses before touching anything. */
	if (!mr || !flags || (flags & ~IBV_REREG_MR_FLAGS_SUPPORTED) ||
	    ((flags & IBV_REREG_MR_CHANGE_TRANSLATION) && (!length || !addr)) ||
	    (access && !(flags & IBV_REREG_MR_CHANGE_ACCESS)))
		return fn(mr, flags, pd, addr, length, access);

	fork_guard_enter();
	old_node = take(mr);
	old_pinned = old_node != NULL;
	if (old_pinned)
		old = old_node->pin;
	plan_ibv_rereg(&plan, old_pinned ? &old : NULL, mr, flags, addr, length, access);
	new = plan.new;
	new_pinned = plan.new_pinned;
	pin_new = plan.pin_new;
	unpin_old = plan.unpin_old;

	if (new_pinned && !old_pinned) {
		n = node_new();
		if (!n) {
			ret = IBV_REREG_MR_ERR_DONT_FORK_NEW;
			goto out;
		}
	}
	if (pin_new && pin(&new)) {
		ret = IBV_REREG_MR_ERR_DONT_FORK_NEW;
		goto out;
	}
	/* libibverbs dontforks (addr, length) and dofork's its view of the old
	 * range (mr->addr, mr->length): both are ours. */
	lib_old.addr = (uintptr_t)mr->addr;
	lib_old.len = mr->length;
	nest_enter(&new, &lib_old);
	ret = fn(mr, flags, pd, addr, length, access);
	saved = errno;
	nest_exit();
	errno = saved;
	if (ret) {
		stat_add(S_PROVIDER_FAILURES, 1);
		if (pin_new)
			unpin(&new, true);
		goto out;
	}
	if (pin_new)
		note_marked(&new);
	if (unpin_old)
		unpin(&old, false);
	if (new_pinned) {
		remember(old_node ? old_node : n, mr, &new);
		old_node = n = NULL;
	}
	old_pinned = false;	/* consumed */
out:
	saved = errno;
	if (old_pinned) {
		remember(old_node, mr, &old);
		old_node = NULL;
	}
	if (old_node)
		node_free(old_node);
	if (n)
		node_free(n);
	fork_guard_exit();
	errno = saved;
	return ret;
}
SYMVER(shim_rereg_mr, "ibv_rereg_mr@@IBVERBS_1.1");

/* ===================================================================== *
 * Fork support calls: one refcount map                                  *
 * ===================================================================== */

EXPORT int shim_fork_init(void)
{
	fork_init_fn fn;

	if (!shim_active()) {
		fn = REAL(FN_FORK_INIT, fork_init_fn);
		return fn ? fn() : ENOSYS;
	}
	/* libibverbs' own fork support stays off: the registry does it. */
	if (!tls.depth)
		stat_add(FN_FORK_INIT, 1);
	return 0;
}
SYMVER(shim_fork_init, "ibv_fork_init@@IBVERBS_1.1");

EXPORT enum ibv_fork_status shim_is_fork_initialized(void)
{
	is_fork_init_fn fn;

	if (!shim_active()) {
		fn = REAL(FN_IS_FORK_INIT, is_fork_init_fn);
		return fn ? fn() : IBV_FORK_DISABLED;
	}
	stat_add(FN_IS_FORK_INIT, 1);
	return registry_policy() == SAFEPIN_POLICY_KERNEL_COPY ? IBV_FORK_UNNEEDED
							       : IBV_FORK_ENABLED;
}
SYMVER(shim_is_fork_initialized, "ibv_is_fork_initialized@@IBVERBS_1.13");

/* The dontfork entry for exactly (addr, len), or where it would go. */
static struct df_node *df_find(uintptr_t addr, size_t len, struct avl_node **parent, int *left)
{
	struct avl_node *cur = sh.dontfork.root;

	*parent = NULL;
	*left = 0;
	while (cur) {
		struct df_node *d = avl_entry(cur, struct df_node, avl);

		if (addr == d->addr && len == d->len)
			return d;
		*parent = cur;
		*left = addr < d->addr || (addr == d->addr && len < d->len);
		cur = *left ? cur->left : cur->right;
	}
	return NULL;
}

/* Count one more dontfork of (addr, len) (lock held). Return 0 or -ENOMEM. */
static int df_add(uintptr_t addr, size_t len)
{
	struct avl_node *parent;
	struct df_node *d;
	int left;

	d = df_find(addr, len, &parent, &left);
	if (d) {
		d->count++;
		return 0;
	}
	d = sh.alloc.alloc(sh.alloc.ctx, sizeof(*d));
	if (!d)
		return -ENOMEM;
	d->addr = addr;
	d->len = len;
	d->count = 1;
	avl_insert_at(&sh.dontfork, &d->avl, parent, left);
	return 0;
}

static void df_drop(struct df_node *d)
{
	if (--d->count)
		return;
	avl_remove(&sh.dontfork, &d->avl);
	sh.alloc.free(sh.alloc.ctx, d, sizeof(*d));
}

/* The only dontfork range that contains [addr, addr + len), or NULL. */
static struct df_node *df_container(uintptr_t addr, size_t len)
{
	struct df_node *found = NULL;

	for (struct avl_node *a = avl_first(&sh.dontfork); a; a = avl_next(a)) {
		struct df_node *d = avl_entry(a, struct df_node, avl);

		if (d->addr >= addr + len)
			break;
		if (d->addr <= addr && addr + len <= d->addr + d->len) {
			if (found)
				return NULL;	/* ambiguous */
			found = d;
		}
	}
	return found;
}

EXPORT int shim_dontfork_range(void *base, size_t size)
{
	struct mr_pin p = { (uintptr_t)base, size };
	range_fn fn;
	int ret;

	if (!shim_active()) {
		fn = REAL(FN_DONTFORK, range_fn);
		return fn ? fn(base, size) : -1;
	}
	if (own_range(base, size))
		return 0;	/* inside our own registration */
	stat_add(FN_DONTFORK, 1);
	if (!size)
		return 0;
	fork_guard_enter();
	/* Reserve the entry first so that nothing can fail after the pin. */
	pthread_mutex_lock(&sh.lock);
	ret = df_add(p.addr, p.len);
	pthread_mutex_unlock(&sh.lock);
	if (ret) {
		stat_add(S_MARK_FAILURES, 1);
		errno = -ret;
	} else if (pin(&p)) {
		struct avl_node *parent;
		int left, saved = errno;

		pthread_mutex_lock(&sh.lock);
		df_drop(df_find(p.addr, p.len, &parent, &left));
		pthread_mutex_unlock(&sh.lock);
		errno = saved;
		ret = -1;
	} else {
		note_marked(&p);
	}
	fork_guard_exit();
	return ret ? -1 : 0;
}
SYMVER(shim_dontfork_range, "ibv_dontfork_range@@IBVERBS_1.1");

EXPORT int shim_dofork_range(void *base, size_t size)
{
	struct mr_pin p = { (uintptr_t)base, size }, whole = { 0, 0 }, left_part, right_part;
	struct avl_node *parent;
	struct df_node *d;
	range_fn fn;
	int left, ret = 0, split = 0;

	if (!shim_active()) {
		fn = REAL(FN_DOFORK, range_fn);
		return fn ? fn(base, size) : -1;
	}
	if (own_range(base, size))
		return 0;
	stat_add(FN_DOFORK, 1);
	if (!size)
		return 0;
	fork_guard_enter();
	pthread_mutex_lock(&sh.lock);
	d = df_find(p.addr, p.len, &parent, &left);
	if (d) {
		df_drop(d);
		split = 0;
	} else if ((d = df_container(p.addr, p.len))) {
		whole.addr = d->addr;
		whole.len = d->len;
		split = 1;
	}
	pthread_mutex_unlock(&sh.lock);

	if (d && !split) {
		unpin(&p, false);
	} else if (split) {
		/* Keep what is left of the dontfork range: pin the remainders
		 * (as dontfork ranges of their own), then release the whole. */
		left_part = (struct mr_pin){ whole.addr, p.addr - whole.addr };
		right_part = (struct mr_pin){ p.addr + p.len, whole.addr + whole.len - p.addr - p.len };
		pthread_mutex_lock(&sh.lock);
		ret = left_part.len ? df_add(left_part.addr, left_part.len) : 0;
		if (!ret && right_part.len)
			ret = df_add(right_part.addr, right_part.len);
		pthread_mutex_unlock(&sh.lock);
		if (!ret && left_part.len && pin(&left_part))
			ret = -1;
		if (!ret && right_part.len && pin(&right_part)) {
			if (left_part.len)
				unpin(&left_part, true);
			ret = -1;
		}
		pthread_mutex_lock(&sh.lock);
		if (ret) {
			/* Nothing released: drop the remainders' entries again. */
			if (left_part.len && (d = df_find(left_part.addr, left_part.len, &parent, &left)))
				df_drop(d);
			if (right_part.len &&
			    (d = df_find(right_part.addr, right_part.len, &parent, &left)))
				df_drop(d);
		} else {
			df_drop(df_find(whole.addr, whole.len, &parent, &left));
		}
		pthread_mutex_unlock(&sh.lock);
		if (!ret)
			unpin(&whole, false);
		ret = 0;	/* the range stays marked at worst: safe */
	} else {
		stat_add(S_DOFORK_UNMATCHED, 1);
		sp_log(SP_LOG_INFO, "preload: ibv_dofork_range(%p, %zu) matches no "
		       "ibv_dontfork_range: nothing released", base, size);
	}
	fork_guard_exit();
	return ret;
}
SYMVER(shim_dofork_range, "ibv_dofork_range@@IBVERBS_1.1");

/* ===================================================================== *
 * dlsym() redirection (called by dlsym.c)                               *
 * ===================================================================== */

static bool in_libibverbs(void *sym)
{
	Dl_info info;
	const char *base;

	if (!dladdr(sym, &info) || !info.dli_fname)
		return false;
	base = strrchr(info.dli_fname, '/');
	base = base ? base + 1 : info.dli_fname;
	return !strncmp(base, "libibverbs.so", 13);
}

SHIM_HIDDEN void *shim_redirect(const char *name, const char *version, void *sym)
{
	void *real;

	if (!sym || !name || cfg.secure || strncmp(name, "ibv_", 4))
		return sym;
	for (int f = 0; f < FN_COUNT; f++) {
		if (!fns[f].wrapper || strcmp(name, fns[f].name))
			continue;
		if (version ? strcmp(version, fns[f].version) : !fns[f].is_default)
			continue;
		real = real_fn((enum fn)f);
		if (real ? real != sym : !in_libibverbs(sym))
			return sym;
		if (!real)
			atomic_store_explicit(&real_fns[f], sym, memory_order_release);
		stat_add(S_DLSYM_REDIRECTS, 1);
		return fns[f].wrapper;
	}
	return sym;
}

/* ===================================================================== *
 * Load, exit                                                            *
 * ===================================================================== */

/* SAFEPIN_STATS: exactly "0" or "1". */
static void read_stats_config(void)
{
	const char *v = secure_getenv("SAFEPIN_STATS"), *file;
	char *o = cfg.stats_file, *end = cfg.stats_file + sizeof(cfg.stats_file) - 16;

	if (v && !strcmp(v, "1")) {
		cfg.stats = true;
	} else if (v && strcmp(v, "0")) {
		fprintf(stderr, "libsafepin_preload: ignoring SAFEPIN_STATS=\"%s\": expected 0 "
			"or 1\n", v);
	}
	file = secure_getenv("SAFEPIN_STATS_FILE");
	if (!cfg.stats || !file)
		return;
	/* "%p" -> pid, "%%" -> "%" (expanded now; a forked child writes to its
	 * parent's file, an exec()ed program expands again). */
	for (; *file && o < end; file++) {
		if (file[0] == '%' && file[1] == 'p') {
			o += snprintf(o, (size_t)(end - o), "%ld", (long)getpid());
			file++;
		} else if (file[0] == '%' && file[1] == '%') {
			*o++ = '%';
			file++;
		} else {
			*o++ = *file;
		}
	}
	*o = '\0';
}

__attribute__((constructor)) static void shim_load(void)
{
	cfg.secure = getauxval(AT_SECURE) != 0;
	shim_dl_resolve();
	fns[FN_REG_MR_1_0].wrapper = (void *)shim_reg_mr_1_0;
	fns[FN_REG_MR].wrapper = (void *)shim_reg_mr;
	fns[FN_REG_MR_IOVA].wrapper = (void *)shim_reg_mr_iova;
	fns[FN_REG_MR_IOVA2].wrapper = (void *)shim_reg_mr_iova2;
	fns[FN_REG_MR_EX].wrapper = SHIM_REG_MR_EX;
	fns[FN_REREG_MR].wrapper = (void *)shim_rereg_mr;
	fns[FN_DEREG_MR_1_0].wrapper = (void *)shim_dereg_mr_1_0;
	fns[FN_DEREG_MR].wrapper = (void *)shim_dereg_mr;
	fns[FN_FORK_INIT].wrapper = (void *)shim_fork_init;
	fns[FN_DONTFORK].wrapper = (void *)shim_dontfork_range;
	fns[FN_DOFORK].wrapper = (void *)shim_dofork_range;
	fns[FN_IS_FORK_INIT].wrapper = (void *)shim_is_fork_initialized;
	if (cfg.secure)
		return;
	read_stats_config();
	cfg.stats_pid = getpid();
}

static bool libibverbs_loaded(void)
{
	void *h = dlopen("libibverbs.so.1", RTLD_NOLOAD | RTLD_LAZY);

	if (h)
		dlclose(h);
	return h != NULL;
}

static const char *policy_name(void)
{
	if (!sh.active)
		return "none";
	switch (registry_policy()) {
	case SAFEPIN_POLICY_ZERO_FILL:
		return "zero-fill";
	case SAFEPIN_POLICY_KERNEL_COPY:
		return "kernel-copy";
	default:
		return "dontfork";
	}
}

__attribute__((destructor)) static void shim_unload(void)
{
	char line[2048], comm[64] = "?";
	uint64_t v[S_COUNT], any = 0;
	size_t n = 0;
	int fd, cf;
	ssize_t r;

	if (cfg.secure || !cfg.stats)
		return;
	for (int i = 0; i < S_COUNT; i++) {
		v[i] = atomic_load_explicit(&stats[i], memory_order_relaxed);
		any |= v[i];
	}
	any |= lifetime_violation_count();
	if (getpid() != cfg.stats_pid && !any)
		return;	/* a forked child that did nothing itself */
	if (!any && !sh.active && !libibverbs_loaded())
		return;	/* not an RDMA program (a shell, a helper) */
	cf = open("/proc/self/comm", O_RDONLY | O_CLOEXEC);
	if (cf >= 0) {
		r = read(cf, comm, sizeof(comm) - 1);
		comm[r > 0 ? r : 0] = '\0';
		comm[strcspn(comm, "\n ")] = '\0';
		close(cf);
	}
	n += (size_t)snprintf(line + n, sizeof(line) - n, "safepin-preload pid=%ld comm=%s policy=%s",
			      (long)getpid(), comm, policy_name());
	for (int i = 0; i < S_COUNT && n < sizeof(line); i++)
		n += (size_t)snprintf(line + n, sizeof(line) - n, " %s=%llu",
				      i < FN_COUNT ? fns[i].stat : stat_names[i - FN_COUNT],
				      (unsigned long long)v[i]);
	if (n < sizeof(line))
		n += (size_t)snprintf(line + n, sizeof(line) - n, " violations=%llu failures=%llu\n",
				      (unsigned long long)lifetime_violation_count(),
				      (unsigned long long)(v[S_MARK_FAILURES] + v[S_UNMARK_FAILURES]));
	if (n >= sizeof(line))
		n = sizeof(line) - 1;
	fd = cfg.stats_file[0] ? open(cfg.stats_file, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644)
			       : STDERR_FILENO;
	if (fd < 0) {
		fprintf(stderr, "libsafepin_preload: cannot open %s: %s\n", cfg.stats_file,
			strerror(errno));
		fd = STDERR_FILENO;
	}
	r = write(fd, line, n);
	(void)r;
	if (fd != STDERR_FILENO)
		close(fd);
}
