// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Lifetime violations (see lifetime.h and the public header): reporting,
 * the shim's synchronous path, and the userfaultfd monitor for linked
 * applications.
 *
 * The monitor.  A userfaultfd with UFFD_FEATURE_EVENT_UNMAP | EVENT_REMOVE
 * | EVENT_REMAP gets an event for every munmap (mmap(MAP_FIXED), brk and
 * shmdt included), mremap and discard (MADV_DONTNEED, MADV_FREE,
 * MADV_REMOVE; the event does not say which) of a registered range.  The
 * kernel makes the thread that unmaps wait until the event is read; the
 * monitor reads with the registry lock held, so a registration made after
 * the munmap returned waits until the counts were dropped.  Ranges are
 * registered in write-protect mode without write-protecting anything, so
 * no fault ever reaches the monitor (anonymous memory: 5.7+; shmem and
 * hugetlb: 5.19+ with UFFD_FEATURE_WP_HUGETLBFS_SHMEM); where the kernel
 * refuses that, in missing mode: registered pages are present (pre-faulted
 * and pinned), so only a touch after a discard faults, and the monitor
 * resolves it by unregistering the page, after which the kernel retries the
 * fault as if no userfaultfd had been there.  With UFFD_USER_MODE_ONLY (the
 * only kind an unprivileged process gets when vm.unprivileged_userfaultfd
 * is 0) a kernel-mode fault in missing mode would fail with EFAULT instead
 * of waiting, so missing mode is not used then.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "fork.h"
#include "init.h"
#include "lifetime.h"
#include "log.h"
#include "registry.h"
#include "vm.h"

#define MAX_HITS 16

static _Atomic uint64_t violations;
static atomic_bool ever_pinned;

static struct {
	pthread_mutex_t lock;	/* start/stop */
	int uffd;
	int wake[2];
	pthread_t thread;
	bool running;		/* read by the hooks under the registry lock */
	bool missing_ok;	/* missing mode allowed (not UFFD_USER_MODE_ONLY) */
	safepin_violation_fn cb;
	void *arg;
	uint64_t watched, unwatched;
} mon = { .lock = PTHREAD_MUTEX_INITIALIZER, .uffd = -1, .wake = { -1, -1 } };

static const char *kind_name(enum safepin_violation_kind kind)
{
	switch (kind) {
	case SAFEPIN_VIOLATION_MUNMAP: return "munmap";
	case SAFEPIN_VIOLATION_MREMAP: return "mremap";
	case SAFEPIN_VIOLATION_DONTNEED: return "madvise(MADV_DONTNEED)";
	case SAFEPIN_VIOLATION_FREE: return "madvise(MADV_FREE)";
	case SAFEPIN_VIOLATION_REMOVE: return "madvise(MADV_REMOVE)";
	case SAFEPIN_VIOLATION_MAP_FIXED: return "mmap(MAP_FIXED)";
	case SAFEPIN_VIOLATION_FREE_CALL: return "free/realloc";
	}
	return "?";
}

uint64_t lifetime_violation_count(void)
{
	return atomic_load_explicit(&violations, memory_order_relaxed);
}

bool lifetime_any_live(void)
{
	return atomic_load_explicit(&ever_pinned, memory_order_relaxed);
}

/* Counted with the registry lock held, before it is released: a thread that
 * registers next sees the counter already up (the report may come later). */
static void count_locked(size_t total)
{
	atomic_fetch_add_explicit(&violations, total, memory_order_relaxed);
}

void lifetime_count_violations(size_t total)
{
	count_locked(total);
}

void lifetime_report(enum safepin_violation_kind kind, uintptr_t start, uintptr_t end,
		     const struct lt_hit *hits, size_t nhits, size_t total, bool monitor)
{
	safepin_violation_fn cb = mon.cb;
	void *arg = mon.arg;

	if (!total)
		return;
	for (size_t i = 0; i < nhits; i++) {
		sp_log(SP_LOG_ERROR, "violation: %s of %#lx-%#lx while registered: registration "
		       "%#lx+%zu%s (%s); its pages there are no longer protected or counted",
		       monitor && kind == SAFEPIN_VIOLATION_REMOVE ? "madvise discard" : kind_name(kind),
		       (unsigned long)start, (unsigned long)end, (unsigned long)hits[i].addr, hits[i].len,
		       hits[i].again ? ", violated before" : "", monitor ? "monitor" : "preload");
		if (cb) {
			struct safepin_violation v = { sizeof(v), kind, start, end,
						       (const void *)hits[i].addr, hits[i].len,
						       hits[i].again };

			cb(&v, arg);
		}
	}
	if (total > nhits)
		sp_log(SP_LOG_ERROR, "violation: %s of %#lx-%#lx hit %zu more registrations",
		       kind_name(kind), (unsigned long)start, (unsigned long)end, total - nhits);
}

/* ===================================================================== *
 * The shim's path                                                       *
 * ===================================================================== */

void lifetime_app_call(enum safepin_violation_kind kind, uintptr_t start, uintptr_t end,
		       bool gone, bool (*call)(void *ctx, uintptr_t *start, uintptr_t *end),
		       void *ctx)
{
	struct lt_hit hits[MAX_HITS];
	size_t total = 0;

	/* The library's own calls (lock held), or nothing ever registered. */
	if (registry_lock_held() || !lifetime_any_live() || start >= end) {
		call(ctx, &start, &end);
		return;
	}
	registry_lock();
	if (!registry_counted_locked(start, end)) {
		registry_unlock();
		call(ctx, &start, &end);
		return;
	}
	if (call(ctx, &start, &end) && start < end)
		total = registry_violation_locked(start, end, gone, hits, MAX_HITS);
	count_locked(total);
	registry_unlock();
	lifetime_report(kind, start, end, hits, total < MAX_HITS ? total : MAX_HITS, total, false);
}

static int count_vma(void *ctx, const struct vma_info *vma)
{
	(void)vma;
	++*(size_t *)ctx;
	return 0;
}

void lifetime_app_free(uintptr_t start, uintptr_t end, uintptr_t (*call)(void *ctx), void *ctx)
{
	const uintptr_t ps = vm_base_page_size();
	struct lt_hit hits[MAX_HITS];
	uintptr_t kept, gs, ge;
	size_t total, nvma = 0;

	if (registry_lock_held() || !lifetime_any_live() || start >= end) {
		call(ctx);
		return;
	}
	registry_lock();
	if (!registry_overlapping_locked(start, end, hits, 0)) {
		registry_unlock();
		call(ctx);
		return;
	}
	kept = call(ctx);	/* [start, kept) is still the caller's */
	total = kept < end ? registry_overlapping_locked(kept, end, hits, MAX_HITS) : 0;
	/* The pages the allocator gave back to the kernel (an mmapped chunk). */
	gs = kept > start ? (kept + ps - 1) & ~(ps - 1) : start & ~(ps - 1);
	ge = (end + ps - 1) & ~(ps - 1);
	if (total && gs < ge && !vm_for_each_vma(gs, ge, count_vma, &nvma) && !nvma)
		total = registry_violation_locked(gs, ge, true, hits, MAX_HITS);
	count_locked(total);
	registry_unlock();
	lifetime_report(SAFEPIN_VIOLATION_FREE_CALL, kept > start ? kept : start, end, hits,
			total < MAX_HITS ? total : MAX_HITS, total, false);
}

/* ===================================================================== *
 * The monitor                                                           *
 * ===================================================================== */

static int uffd_new(int flags)
{
	int fd = (int)syscall(SYS_userfaultfd, flags);

#ifdef USERFAULTFD_IOC_NEW
	if (fd < 0 && errno == EPERM) {
		int dev = open("/dev/userfaultfd", O_RDWR | O_CLOEXEC);

		if (dev >= 0) {
			fd = ioctl(dev, USERFAULTFD_IOC_NEW, flags);
			close(dev);
		}
		errno = EPERM;
	}
#endif
	return fd;
}

/* A userfaultfd with the events we need, or -errno. */
static int uffd_open(bool *missing_ok)
{
	const uint64_t need = UFFD_FEATURE_EVENT_UNMAP | UFFD_FEATURE_EVENT_REMOVE |
			      UFFD_FEATURE_EVENT_REMAP;
	struct uffdio_api api = { .api = UFFD_API };
	int flags = O_CLOEXEC | O_NONBLOCK, fd, mode = 0;
	uint64_t want = need;

	*missing_ok = true;
	fd = uffd_new(flags);
#ifdef UFFD_USER_MODE_ONLY
	if (fd < 0 && errno == EPERM) {
		mode = UFFD_USER_MODE_ONLY;
		fd = uffd_new(flags | mode);
		*missing_ok = false;
	}
#endif
	if (fd < 0)
		return errno == ENOSYS ? -ENOSYS : -errno;
	/* Ask what the kernel has (UFFDIO_API works once per descriptor). */
	if (ioctl(fd, UFFDIO_API, &api)) {
		int e = errno;

		close(fd);
		return -e;
	}
	close(fd);
	if ((api.features & need) != need)
		return -ENOSYS;
#ifdef UFFD_FEATURE_WP_HUGETLBFS_SHMEM
	want |= api.features & UFFD_FEATURE_WP_HUGETLBFS_SHMEM;
#endif
	fd = uffd_new(flags | mode);
	if (fd < 0)
		return -errno;
	api = (struct uffdio_api){ .api = UFFD_API, .features = want };
	if (ioctl(fd, UFFDIO_API, &api)) {
		int e = errno;

		close(fd);
		return -e;
	}
	return fd;
}

/* Watch [start, end) (registry lock held). */
static void track(uintptr_t start, uintptr_t end)
{
	struct uffdio_register r = { .range = { start, end - start },
				     .mode = UFFDIO_REGISTER_MODE_WP };

	if (!ioctl(mon.uffd, UFFDIO_REGISTER, &r)) {
		mon.watched++;
		sp_log(SP_LOG_DEBUG, "monitor: watching %#lx-%#lx (write-protect mode)",
		       (unsigned long)start, (unsigned long)end);
		return;
	}
	r.mode = UFFDIO_REGISTER_MODE_MISSING;
	if (mon.missing_ok && !ioctl(mon.uffd, UFFDIO_REGISTER, &r)) {
		mon.watched++;
		sp_log(SP_LOG_DEBUG, "monitor: watching %#lx-%#lx (missing mode)",
		       (unsigned long)start, (unsigned long)end);
		return;
	}
	mon.unwatched++;
	sp_log(SP_LOG_INFO, "monitor: cannot watch %#lx-%#lx (errno %d): a mapping "
	       "userfaultfd does not support", (unsigned long)start, (unsigned long)end, errno);
}

static void untrack(uintptr_t start, uintptr_t end)
{
	struct uffdio_range r = { start, end - start };

	if (start < end)
		(void)ioctl(mon.uffd, UFFDIO_UNREGISTER, &r);
}

static int untrack_gap(void *ctx, const struct range_seg *gap)
{
	(void)ctx;
	untrack(gap->start, gap->end);
	return 0;
}

void lifetime_pinned_locked(uintptr_t addr, size_t len, const struct reg_extent *ext)
{
	atomic_store_explicit(&ever_pinned, true, memory_order_relaxed);
	if (audit_pfns_enabled())
		registry_set_cookie_locked(addr, len, ext, audit_pfn_hash(ext->start, ext->end));
	if (mon.running)
		track(ext->start, ext->end);
}

void lifetime_unpinned_locked(const struct reg_extent *ext)
{
	/* Stop watching the pages no registration covers any more. */
	if (mon.running)
		registry_gaps_locked(ext->start, ext->end, untrack_gap, NULL);
}

static int track_reg(void *ctx, const struct lt_reg *r)
{
	(void)ctx;
	if (r->ext.start < r->ext.end)
		track(r->ext.start, r->ext.end);
	return 0;
}

struct pending {
	enum safepin_violation_kind kind;
	uintptr_t start, end;
	struct lt_hit hits[MAX_HITS];
	size_t total;
};

/* Handle one message (registry lock held). */
static void handle(const struct uffd_msg *m, struct pending *p)
{
	p->total = 0;
	switch (m->event) {
	case UFFD_EVENT_UNMAP:
		p->kind = SAFEPIN_VIOLATION_MUNMAP;
		p->start = (uintptr_t)m->arg.remove.start;
		p->end = (uintptr_t)m->arg.remove.end;
		p->total = registry_violation_locked(p->start, p->end, true, p->hits, MAX_HITS);
		break;
	case UFFD_EVENT_REMOVE:
		p->kind = SAFEPIN_VIOLATION_REMOVE;
		p->start = (uintptr_t)m->arg.remove.start;
		p->end = (uintptr_t)m->arg.remove.end;
		p->total = registry_violation_locked(p->start, p->end, false, p->hits, MAX_HITS);
		registry_gaps_locked(p->start, p->end, untrack_gap, NULL);
		break;
	case UFFD_EVENT_REMAP:
		p->kind = SAFEPIN_VIOLATION_MREMAP;
		p->start = (uintptr_t)m->arg.remap.from;
		p->end = p->start + (uintptr_t)m->arg.remap.len;
		p->total = registry_violation_locked(p->start, p->end, true, p->hits, MAX_HITS);
		/* The watch moved with the pages: nothing is registered there. */
		registry_gaps_locked((uintptr_t)m->arg.remap.to,
				     (uintptr_t)(m->arg.remap.to + m->arg.remap.len), untrack_gap,
				     NULL);
		break;
	case UFFD_EVENT_PAGEFAULT: {
		/* Missing mode, a touch after a discard: let the kernel handle it. */
		uintptr_t a = (uintptr_t)m->arg.pagefault.address;
		struct vma_info v;
		size_t ps = vm_vma_at(a, &v) ? vm_base_page_size() : v.page_size;
		struct uffdio_range r = { a & ~(uintptr_t)(ps - 1), ps };

		(void)ioctl(mon.uffd, UFFDIO_UNREGISTER, &r);
		(void)ioctl(mon.uffd, UFFDIO_WAKE, &r);
		break;
	}
	default:
		break;
	}
}

static void *monitor_thread(void *unused)
{
	(void)unused;
	for (;;) {
		struct pollfd pf[2] = { { mon.uffd, POLLIN, 0 }, { mon.wake[0], POLLIN, 0 } };
		struct pending p[8];
		size_t np = 0;

		if (poll(pf, 2, -1) < 0) {
			if (errno == EINTR)
				continue;
			break;
		}
		if (pf[1].revents)
			break;
		if (!(pf[0].revents & POLLIN))
			continue;
		/* Read with the lock held: see the comment at the top. */
		registry_lock();
		while (np < sizeof(p) / sizeof(p[0])) {
			struct uffd_msg m;
			ssize_t n = read(mon.uffd, &m, sizeof(m));

			if (n != (ssize_t)sizeof(m))
				break;
			handle(&m, &p[np]);
			count_locked(p[np].total);
			if (p[np].total)
				np++;
		}
		registry_unlock();
		for (size_t i = 0; i < np; i++)
			lifetime_report(p[i].kind, p[i].start, p[i].end, p[i].hits,
					p[i].total < MAX_HITS ? p[i].total : MAX_HITS, p[i].total,
					true);
	}
	return NULL;
}

static void monitor_child(void)
{
	/* The thread is not in the child; the watch was not inherited. */
	if (mon.uffd >= 0)
		close(mon.uffd);
	if (mon.wake[0] >= 0) {
		close(mon.wake[0]);
		close(mon.wake[1]);
	}
	mon.uffd = mon.wake[0] = mon.wake[1] = -1;
	mon.running = false;
	mon.cb = NULL;
	pthread_mutex_init(&mon.lock, NULL);
}

static void register_child(void)
{
	fork_on_child(monitor_child);
}

static int fail(int ret)
{
	errno = -ret;
	return ret;
}

SAFEPIN_EXPORT int safepin_monitor_start(const struct safepin_monitor_opts *opts)
{
	static pthread_once_t child_once = PTHREAD_ONCE_INIT;
	bool missing_ok;
	int fd, ret;

	safepin_init();
	if (opts && opts->size < offsetof(struct safepin_monitor_opts, callback))
		return fail(-EINVAL);
	pthread_once(&child_once, register_child);
	pthread_mutex_lock(&mon.lock);
	if (mon.running) {
		pthread_mutex_unlock(&mon.lock);
		return fail(-EALREADY);
	}
	fd = uffd_open(&missing_ok);
	if (fd < 0) {
		pthread_mutex_unlock(&mon.lock);
		sp_log(SP_LOG_INFO, "monitor: no userfaultfd: errno %d", -fd);
		return fail(fd);
	}
	if (pipe2(mon.wake, O_CLOEXEC)) {
		ret = -errno;
		close(fd);
		pthread_mutex_unlock(&mon.lock);
		return fail(ret);
	}
	mon.uffd = fd;
	mon.missing_ok = missing_ok;
	mon.cb = opts && opts->size >= offsetof(struct safepin_monitor_opts, arg) ? opts->callback
										    : NULL;
	mon.arg = opts && opts->size >= sizeof(*opts) ? opts->arg : NULL;
	registry_lock();
	mon.running = true;
	(void)registry_walk_locked(track_reg, NULL);
	registry_unlock();
	ret = pthread_create(&mon.thread, NULL, monitor_thread, NULL);
	if (ret) {
		registry_lock();
		mon.running = false;
		registry_unlock();
		close(fd);
		close(mon.wake[0]);
		close(mon.wake[1]);
		mon.uffd = mon.wake[0] = mon.wake[1] = -1;
		pthread_mutex_unlock(&mon.lock);
		return fail(-ret);
	}
	pthread_mutex_unlock(&mon.lock);
	return 0;
}

SAFEPIN_EXPORT int safepin_monitor_stop(void)
{
	char c = 0;

	safepin_init();
	pthread_mutex_lock(&mon.lock);
	if (!mon.running) {
		pthread_mutex_unlock(&mon.lock);
		return fail(-ENOENT);
	}
	if (write(mon.wake[1], &c, 1) != 1)
		sp_log(SP_LOG_ERROR, "monitor: cannot wake the thread: errno %d", errno);
	pthread_join(mon.thread, NULL);
	registry_lock();
	mon.running = false;
	close(mon.uffd);	/* unregisters every range */
	registry_unlock();
	close(mon.wake[0]);
	close(mon.wake[1]);
	mon.uffd = mon.wake[0] = mon.wake[1] = -1;
	mon.cb = NULL;
	pthread_mutex_unlock(&mon.lock);
	return 0;
}
