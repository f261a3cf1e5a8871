// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The verbs drop-in API.  Every call runs inside the fork guard:
 *
 *   reg:    node for the table -> mark + pre-fault (registry_pin; mark
 *           only with IBV_ACCESS_LOCAL_WRITE, whose pin write-faults the
 *           pages) -> provider
 *           -> remember (mr -> pinned range); a provider failure unmarks
 *           with the provider's errno kept.
 *   dereg:  forget -> provider -> unmark; a provider failure remembers
 *           the region again and unmarks nothing.
 *   rereg:  mark new -> provider -> unmark old; a provider failure
 *           unmarks new and keeps old.
 *
 * Coexistence with libibverbs' own fork support (ibv_fork_init()): before
 * marking, the range is handed to ibv_dontfork_range() and after unmarking
 * to ibv_dofork_range().  Without ibv_fork_init() (or where the kernel made
 * it unnecessary) both are no-ops.  With it, libibverbs marks the range
 * first, so the registry finds it already DONTFORK and leaves the marking
 * to libibverbs' page counts: neither library then clears a mark the other
 * still needs (an application's own ibv_dontfork_range() included).
 * ibv_reg_mr_iova2() and ibv_dereg_mr() call the same pair internally; the
 * counts stay balanced.  Once a registration ran while
 * ibv_is_fork_initialized() says DISABLED, libibverbs' fork support can
 * never be turned on (ibv_fork_init() fails with EINVAL after that first
 * ibv_dontfork_range()): from then on the two calls are skipped, as they
 * would do nothing.  UNNEEDED (a kernel that copies pinned pages) says
 * nothing about that: rdma-core 44 still honours ibv_fork_init() there and
 * marks, so the calls stay.
 */
#include <errno.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>

#include <safepin/verbs.h>

#include "arena.h"
#include "fork.h"
#include "init.h"
#include "lock.h"
#include "log.h"
#include "mr_table.h"
#include "once.h"
#include "rereg_plan.h"
#include "registry.h"

/* Exported by libibverbs since IBVERBS_1.1 but declared in no public
 * header of rdma-core 44; the prototypes are those of libibverbs/memory.c. */
int ibv_dontfork_range(void *base, size_t size);
int ibv_dofork_range(void *base, size_t size);

static struct {
	struct sp_lock lock;	/* taken inside the fork guard only */
	struct arena arena;
	struct mr_table mrs;
} vb = { .lock = SP_LOCK_INIT };

static struct once verbs_once = ONCE_INIT;

/* What the first registration learnt of libibverbs' fork support. */
enum ibv_ranges { IBV_RANGES_UNKNOWN, IBV_RANGES_OFF, IBV_RANGES_CALL };
static _Atomic enum ibv_ranges ibv_ranges;

static int ibv_mark(const struct mr_pin *p)
{
	enum ibv_ranges known = atomic_load_explicit(&ibv_ranges, memory_order_relaxed);
	int ret;

	if (known == IBV_RANGES_OFF)
		return 0;
	ret = ibv_dontfork_range((void *)p->addr, p->len);
	/* If it was off, the call above made a later ibv_fork_init() fail. */
	if (!ret && known == IBV_RANGES_UNKNOWN)
		atomic_store_explicit(&ibv_ranges,
				      ibv_is_fork_initialized() == IBV_FORK_DISABLED ?
				      IBV_RANGES_OFF : IBV_RANGES_CALL, memory_order_relaxed);
	return ret;
}

static void ibv_unmark(const struct mr_pin *p)
{
	if (atomic_load_explicit(&ibv_ranges, memory_order_relaxed) != IBV_RANGES_OFF)
		ibv_dofork_range((void *)p->addr, p->len);
}

/*
 * One free node kept per thread: a register/deregister cycle then takes
 * vb.lock once each way instead of twice (measured in the 6.1 guest, where
 * every lock operation is emulated, as a few us per cycle).  A thread that
 * exits leaves its spare in the arena, one node.
 */
static SP_THREAD_LOCAL struct mr_node *spare_node;

/* The child owns no registration (the registry resets itself likewise). */
static void verbs_child(void)
{
	spare_node = NULL;	/* the forking thread's: its arena goes below */
	sp_lock_init(&vb.lock);
	mr_table_forget(&vb.mrs);
	arena_release(&vb.arena);
}

static void verbs_init_once(void)
{
	struct node_alloc alloc;

	safepin_init();
	arena_init(&vb.arena);
	alloc = arena_node_alloc(&vb.arena);
	mr_table_init(&vb.mrs, &alloc);
	fork_on_child(verbs_child);
}

static void verbs_init(void)
{
	once_run(&verbs_once, verbs_init_once);
}

static struct mr_node *node_new(void)
{
	struct mr_node *n = spare_node;

	if (n) {
		spare_node = NULL;
		return n;
	}
	sp_lock(&vb.lock);
	n = mr_table_node_new(&vb.mrs);
	sp_unlock(&vb.lock);
	return n;
}

static void node_free(struct mr_node *n)
{
	if (!spare_node) {
		spare_node = n;
		return;
	}
	sp_lock(&vb.lock);
	mr_table_node_free(&vb.mrs, n);
	sp_unlock(&vb.lock);
}

static struct mr_node *take(const struct ibv_mr *mr)
{
	struct mr_node *n;

	sp_lock(&vb.lock);
	n = mr_table_take(&vb.mrs, mr);
	sp_unlock(&vb.lock);
	return n;
}

static void unpin(const struct mr_pin *p, bool undo);

/* Remember @n as @mr's pin. Never fails. */
static void remember(struct mr_node *n, const struct ibv_mr *mr, const struct mr_pin *p)
{
	struct mr_pin stale;
	int replaced;

	sp_lock(&vb.lock);
	replaced = mr_table_insert(&vb.mrs, n, mr, p, &stale);
	sp_unlock(&vb.lock);
	if (replaced) {
		/* The previous region at this address was released with plain
		 * ibv_dereg_mr() and its memory reused: release its pin now. */
		sp_log(SP_LOG_ERROR, "memory region %p was deregistered without "
		       "safepin_dereg_mr(); releasing its range %#lx+%zu now",
		       (const void *)mr, (unsigned long)stale.addr, stale.len);
		unpin(&stale, false);
	}
}

/*
 * Mark and pre-fault @p: 0, or -1 with errno set, nothing changed then.
 * A region the device may write is pinned for write (FOLL_WRITE) by the
 * kernel's ib_umem_get(), which write-faults every page itself: mark only
 * (SAFEPIN_PIN_DEVICE_WRITES).  @access: IBV_ACCESS_* flags, or -1 when
 * unknown (a re-registration keeping the old access).
 */
static int pin(const struct mr_pin *p, long access)
{
	int ret;

	if (ibv_mark(p))
		return -1;	/* errno from libibverbs */
	if (access >= 0 && (access & IBV_ACCESS_LOCAL_WRITE))
		ret = registry_pin_device_faults(p->addr, p->len);
	else
		ret = registry_pin(p->addr, p->len);
	if (ret) {
		ibv_unmark(p);
		registry_count_failure();
		errno = -ret;
		return -1;
	}
	return 0;
}

/*
 * Release @p after its region was deregistered, or undo pin() (@undo: the
 * provider refused the region, nothing may stay behind). errno is preserved.
 */
static void unpin(const struct mr_pin *p, bool undo)
{
	int saved = errno, ret;

	ret = undo ? registry_unpin_now(p->addr, p->len) : registry_unpin(p->addr, p->len);
	if (ret) {
		/* Stays marked: safe, but a child misses these pages. */
		registry_count_failure();
		sp_log(SP_LOG_ERROR, "cannot release %#lx+%zu: errno %d",
		       (unsigned long)p->addr, p->len, -ret);
	}
	ibv_unmark(p);
	errno = saved;
}

static bool pins_pages(size_t length, unsigned int access)
{
	/* ODP pins nothing long-term; a zero-length region pins no page. */
	return length && !(access & IBV_ACCESS_ON_DEMAND);
}

SAFEPIN_EXPORT struct ibv_mr *safepin_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t length,
						   uint64_t iova, unsigned int access)
{
	struct mr_pin p = { (uintptr_t)addr, length };
	struct mr_node *n;
	struct ibv_mr *mr = NULL;
	int saved;

	verbs_init();
	if (!pins_pages(length, access))
		return ibv_reg_mr_iova2(pd, addr, length, iova, access);

	fork_guard_enter();
	n = node_new();
	if (!n) {
		registry_count_failure();
		errno = ENOMEM;
		goto out;
	}
	if (pin(&p, (long)access))
		goto out_free;
	mr = ibv_reg_mr_iova2(pd, addr, length, iova, access);
	if (!mr) {
		unpin(&p, true);
		goto out_free;
	}
	remember(n, mr, &p);
	n = NULL;
out_free:
	saved = errno;
	if (n)
		node_free(n);
	errno = saved;
out:
	fork_guard_exit();
	return mr;
}

SAFEPIN_EXPORT struct ibv_mr *safepin_reg_mr(struct ibv_pd *pd, void *addr, size_t length,
					     int access)
{
	return safepin_reg_mr_iova2(pd, addr, length, (uintptr_t)addr, (unsigned int)access);
}

SAFEPIN_EXPORT struct ibv_mr *safepin_reg_mr_iova(struct ibv_pd *pd, void *addr, size_t length,
						  uint64_t hca_va, int access)
{
	return safepin_reg_mr_iova2(pd, addr, length, hca_va, (unsigned int)access);
}

#if SAFEPIN_HAVE_REG_MR_EX
SAFEPIN_EXPORT struct ibv_mr *safepin_reg_mr_ex(struct ibv_pd *pd,
						struct ibv_mr_init_attr *attr)
{
	struct mr_pin p;
	struct mr_node *n;
	struct ibv_mr *mr = NULL;
	int saved;

	verbs_init();
	if (!attr || !(attr->comp_mask & IBV_REG_MR_MASK_ADDR) ||
	    (attr->comp_mask & IBV_REG_MR_MASK_FD) || !pins_pages(attr->length, attr->access))
		return ibv_reg_mr_ex(pd, attr);
	p.addr = (uintptr_t)attr->addr;
	p.len = attr->length;

	fork_guard_enter();
	n = node_new();
	if (!n) {
		registry_count_failure();
		errno = ENOMEM;
		goto out;
	}
	if (pin(&p, (long)attr->access))
		goto out_free;
	mr = ibv_reg_mr_ex(pd, attr);
	if (!mr) {
		unpin(&p, true);
		goto out_free;
	}
	remember(n, mr, &p);
	n = NULL;
out_free:
	saved = errno;
	if (n)
		node_free(n);
	errno = saved;
out:
	fork_guard_exit();
	return mr;
}
#endif

SAFEPIN_EXPORT int safepin_dereg_mr(struct ibv_mr *mr)
{
	struct mr_node *n;
	struct mr_pin p;
	int ret, saved;

	verbs_init();
	fork_guard_enter();
	/* Unlink first: once the provider freed @mr, another thread's new
	 * region may get the same address. */
	n = take(mr);
	ret = ibv_dereg_mr(mr);
	saved = errno;
	if (n) {
		p = n->pin;
		if (ret) {
			remember(n, mr, &p);	/* still registered, still marked */
		} else {
			node_free(n);
			unpin(&p, false);
		}
	}
	fork_guard_exit();
	errno = saved;
	return ret;
}

SAFEPIN_EXPORT int safepin_rereg_mr(struct ibv_mr *mr, int flags, struct ibv_pd *pd, void *addr,
				    size_t length, int access)
{
	struct mr_node *old_node, *n = NULL;
	struct mr_pin old = { 0 }, new;
	struct mr_rereg_plan plan;
	bool old_pinned, new_pinned, pin_new, unpin_old;
	int ret, saved;

	/* The argument checks ibv_rereg_mr() makes before it marks anything. */
	if ((flags & ~IBV_REREG_MR_FLAGS_SUPPORTED) ||
	    ((flags & IBV_REREG_MR_CHANGE_TRANSLATION) && (!length || !addr)) ||
	    (access && !(flags & IBV_REREG_MR_CHANGE_ACCESS))) {
		errno = EINVAL;
		return IBV_REREG_MR_ERR_INPUT;
	}
	verbs_init();
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
			registry_count_failure();
			errno = ENOMEM;
			ret = IBV_REREG_MR_ERR_DONT_FORK_NEW;
			goto out;
		}
	}
	if (pin_new && pin(&new, (flags & IBV_REREG_MR_CHANGE_ACCESS) ? (long)access : -1)) {
		ret = IBV_REREG_MR_ERR_DONT_FORK_NEW;
		goto out;
	}
	ret = ibv_rereg_mr(mr, flags, pd, addr, length, access);
	if (ret) {
		if (pin_new)
			unpin(&new, true);
		goto out;
	}
	if (unpin_old) {
		saved = registry_unpin(old.addr, old.len);
		ibv_unmark(&old);
		if (saved) {
			registry_count_failure();
			sp_log(SP_LOG_ERROR, "cannot release %#lx+%zu: errno %d",
			       (unsigned long)old.addr, old.len, -saved);
			errno = -saved;
			ret = IBV_REREG_MR_ERR_DO_FORK_OLD;
		}
	}
	/* The region's pin is @new from here on (or none). */
	if (new_pinned) {
		remember(old_node ? old_node : n, mr, &new);
		old_node = n = NULL;
	}
	old_pinned = false;	/* consumed: nothing to put back */
out:
	saved = errno;
	if (old_pinned) {
		/* Failed: the region keeps its old pin. */
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
