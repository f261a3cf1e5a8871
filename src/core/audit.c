// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * safepin_audit(): every live registration against what the kernel shows.
 *
 *  - mapped:     /proc/self/smaps has a VMA, not PROT_NONE, over every page;
 *  - marked:     private pages carry VmFlags dc or wf unless the policy
 *                marks nothing (kernel-copy);
 *  - present:    pagemap bit 63 (not swapped out, not discarded);
 *  - exclusive:  pagemap bit 56 on private pages (not shared copy-on-write);
 *  - same pages: with SAFEPIN_AUDIT_PFNS=1 a hash of the PFNs is recorded at
 *                pin time (one pagemap read per registration, 8 bytes) and
 *                compared; PFNs read as 0 without CAP_SYS_ADMIN.
 *
 * One smaps read in all, one pagemap pread per 512 pages, all under the
 * registry lock.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "fork.h"
#include "init.h"
#include "lifetime.h"
#include "registry.h"
#include "vm.h"

#define PM_PRESENT	(1ull << 63)
#define PM_SWAPPED	(1ull << 62)
#define PM_EXCLUSIVE	(1ull << 56)
#define PM_PFN		((1ull << 55) - 1)

static pthread_once_t env_once = PTHREAD_ONCE_INIT;
static bool record_pfns;

static void read_env(void)
{
	const char *v = secure_getenv("SAFEPIN_AUDIT_PFNS");

	if (v && !strcmp(v, "1"))
		record_pfns = true;
	else if (v && strcmp(v, "0"))
		fprintf(stderr, "libsafepin: ignoring SAFEPIN_AUDIT_PFNS=\"%s\": expected 0 or 1\n",
			v);
}

bool audit_pfns_enabled(void)
{
	pthread_once(&env_once, read_env);
	return record_pfns;
}

static int pagemap_open(void)
{
	return open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
}

/* Call @fn for each pagemap entry of [start, end). Return 0 or -errno. */
static int pagemap_each(int fd, uintptr_t start, uintptr_t end,
			void (*fn)(void *ctx, uintptr_t addr, uint64_t e), void *ctx)
{
	const size_t ps = vm_base_page_size();
	uint64_t e[512];

	while (start < end) {
		size_t n = (end - start) / ps;
		ssize_t got;

		if (n > 512)
			n = 512;
		got = pread(fd, e, n * sizeof(e[0]), (off_t)(start / ps * sizeof(e[0])));
		if (got != (ssize_t)(n * sizeof(e[0])))
			return got < 0 ? -errno : -EIO;
		for (size_t i = 0; i < n; i++)
			fn(ctx, start + i * ps, e[i]);
		start += n * ps;
	}
	return 0;
}

struct hash {
	uint64_t h;
	bool any;
};

static void hash_one(void *ctx, uintptr_t addr, uint64_t e)
{
	struct hash *h = ctx;
	uint64_t pfn = e & PM_PFN;

	(void)addr;
	h->any |= pfn != 0;
	for (int i = 0; i < 8; i++) {	/* FNV-1a over the PFN's bytes */
		h->h ^= (pfn >> (8 * i)) & 0xff;
		h->h *= 0x100000001b3ull;
	}
}

uint64_t audit_pfn_hash(uintptr_t start, uintptr_t end)
{
	struct hash h = { 0xcbf29ce484222325ull, false };
	int fd = pagemap_open();

	if (fd < 0)
		return 0;
	if (pagemap_each(fd, start, end, hash_one, &h))
		h.any = false;
	close(fd);
	return h.any ? h.h | 1 : 0;
}

/* ---- the audit ------------------------------------------------------ */

struct audit {
	struct safepin_audit_report *r;
	struct vma_vec vmas;
	int pagemap;
	bool marks;
	/* per registration */
	size_t vi;
	uint64_t absent, shared;
};

static void page_one(void *ctx, uintptr_t addr, uint64_t e)
{
	struct audit *a = ctx;
	const struct vma_info *v;

	while (a->vi < a->vmas.n && a->vmas.v[a->vi].end <= addr)
		a->vi++;
	v = a->vi < a->vmas.n && a->vmas.v[a->vi].start <= addr ? &a->vmas.v[a->vi] : NULL;
	if (!v || (v->flags & VMA_IO))
		return;
	if ((e & (PM_PRESENT | PM_SWAPPED)) != PM_PRESENT)
		a->absent++;
	else if (!(v->flags & VMA_SHARED) && (v->flags & VMA_WRITE) && !(e & PM_EXCLUSIVE))
		a->shared++;
}

static int check_one(void *ctx, const struct lt_reg *reg)
{
	struct audit *a = ctx;
	struct safepin_audit_report *r = a->r;
	const uintptr_t s = reg->ext.start, e = reg->ext.end;
	bool unmapped = false, unmarked = false, moved = false;
	uintptr_t want = s;
	char why[256] = "";
	size_t n = 0;

	if (s >= e)
		return 0;	/* a violated registration with nothing left */
	r->registrations += reg->refs;
	r->pages += (e - s) / vm_base_page_size();
	for (size_t i = vma_vec_first_after(&a->vmas, s); i < a->vmas.n && a->vmas.v[i].start < e;
	     i++) {
		const struct vma_info *v = &a->vmas.v[i];

		if (v->start > want || !(v->flags & (VMA_READ | VMA_WRITE | VMA_EXEC)))
			unmapped = true;
		if (a->marks && !(v->flags & (VMA_SHARED | VMA_IO)) &&
		    !(v->flags & (VMA_DONTFORK | VMA_WIPEONFORK)))
			unmarked = true;
		want = v->end;
	}
	if (want < e)
		unmapped = true;
	a->absent = a->shared = 0;
	a->vi = vma_vec_first_after(&a->vmas, s);
	if (a->pagemap >= 0)
		(void)pagemap_each(a->pagemap, s, e, page_one, a);
	if (reg->cookie && !reg->violated && !unmapped) {
		uint64_t now = audit_pfn_hash(s, e);

		if (!now)
			r->pfns = -1;
		else if (now != reg->cookie)
			moved = true;
	}
	if (!unmapped && !unmarked && !moved && !a->absent && !a->shared)
		return 0;
	r->bad += reg->refs;
	r->unmapped += unmapped ? reg->refs : 0;
	r->unmarked += unmarked ? reg->refs : 0;
	r->moved += moved ? reg->refs : 0;
	r->not_present += a->absent ? reg->refs : 0;
	r->not_exclusive += a->shared ? reg->refs : 0;
	if (!(r->flags & SAFEPIN_AUDIT_PRINT))
		return 0;
	if (unmapped)
		n += (size_t)snprintf(why + n, sizeof(why) - n, ", unmapped");
	if (a->absent)
		n += (size_t)snprintf(why + n, sizeof(why) - n, ", %llu pages not present",
				      (unsigned long long)a->absent);
	if (a->shared && n < sizeof(why))
		n += (size_t)snprintf(why + n, sizeof(why) - n, ", %llu pages not exclusive",
				      (unsigned long long)a->shared);
	if (unmarked && n < sizeof(why))
		n += (size_t)snprintf(why + n, sizeof(why) - n, ", not marked (no dc/wf)");
	if (moved && n < sizeof(why))
		snprintf(why + n, sizeof(why) - n, ", on other physical pages than when pinned");
	fprintf(stderr, "libsafepin: audit: registration %#lx+%zu%s (pages %#lx-%#lx)%s%s\n",
		(unsigned long)reg->addr, reg->len, reg->refs > 1 ? " (several)" : "",
		(unsigned long)s, (unsigned long)e, reg->violated ? " [violated]" : "", why);
	return 0;
}

int audit_run_locked(struct safepin_audit_report *r)
{
	struct audit a = { .r = r, .pagemap = -1 };
	int ret;

	memset((char *)r + offsetof(struct safepin_audit_report, registrations), 0,
	       sizeof(*r) - offsetof(struct safepin_audit_report, registrations));
	a.marks = registry_marks_locked();
	ret = vm_for_each_vma_smaps(0, UINTPTR_MAX, vma_vec_collect, &a.vmas);
	if (!ret) {
		a.pagemap = pagemap_open();
		r->pfns = audit_pfns_enabled() ? 1 : 0;
		r->violated = registry_violated_live_locked();
		ret = registry_walk_locked(check_one, &a);
		if (a.pagemap >= 0)
			close(a.pagemap);
	}
	free(a.vmas.v);
	if (ret)
		return ret;
	if (r->flags & SAFEPIN_AUDIT_PRINT)
		fprintf(stderr, "libsafepin: audit: pid %ld: %llu registrations, %llu pages: %s"
			"%llu with findings (unmapped %llu, not present %llu, not exclusive %llu, "
			"unmarked %llu, moved %llu), %llu violated and not deregistered; physical "
			"pages %s\n", (long)getpid(), (unsigned long long)r->registrations,
			(unsigned long long)r->pages, r->bad ? "" : "OK, ",
			(unsigned long long)r->bad, (unsigned long long)r->unmapped,
			(unsigned long long)r->not_present, (unsigned long long)r->not_exclusive,
			(unsigned long long)r->unmarked, (unsigned long long)r->moved,
			(unsigned long long)r->violated,
			r->pfns > 0 ? "compared" : r->pfns < 0 ? "not readable (needs CAP_SYS_ADMIN)"
							 : "not recorded (SAFEPIN_AUDIT_PFNS=1)");
	return 0;
}

SAFEPIN_EXPORT int safepin_audit(struct safepin_audit_report *report)
{
	int ret;

	safepin_init();
	if (!report || report->size < sizeof(*report)) {
		errno = EINVAL;
		return -EINVAL;
	}
	registry_lock();
	ret = audit_run_locked(report);
	registry_unlock();
	if (ret)
		errno = -ret;
	return ret;
}
