// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * budget_guest: resource limits in the guests (tests/vm), where lowering a
 * sysctl touches nobody else.
 *
 *   budget_guest maxmap         (root) vm.max_map_count lowered to a few VMAs
 *                               above the process's count: registrations of
 *                               disjoint single pages split the VMA until one
 *                               fails with ENOMEM (6.1's madvise() says
 *                               EAGAIN: translated); that one changes nothing
 *                               (VmFlags, stats), safepin_vma_budget() reports
 *                               the count at the limit, everything unpins and
 *                               the count comes back.  The sysctl is restored.
 *   budget_guest vfio-memlock   (as nobody, tiny RLIMIT_MEMLOCK, edu device)
 *                               safepin_vfio_map_dma() of more than the limit
 *                               fails with the errno the raw ioctl gives
 *                               (ENOMEM) and leaves nothing marked.  The
 *                               verbs counterpart: tests/guest/verbs memlock.
 *
 * Refuses to run outside a guest (SAFEPIN_GUEST=1).  Exit 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include <safepin/safepin.h>
#include <safepin/vfio.h>

#include "edu.h"

#define PAGE 4096ul

static int failures;

#define CHECK(cond, ...)                                                        \
	do {                                                                    \
		if (!(cond)) {                                                  \
			failures++;                                             \
			printf("FAIL %s:%d: %s: ", __func__, __LINE__, #cond);  \
			printf(__VA_ARGS__);                                    \
			printf("\n");                                           \
		}                                                               \
	} while (0)

static struct safepin_stats stats(void)
{
	struct safepin_stats s = { .size = sizeof(s) };

	safepin_get_stats(&s);
	return s;
}

static struct safepin_vma_budget budget(void)
{
	struct safepin_vma_budget b = { .size = sizeof(b) };

	if (safepin_vma_budget(&b))
		printf("safepin_vma_budget: %s\n", strerror(errno));
	return b;
}

/* 'D' per page marked DONTFORK, '.' otherwise; no allocation. */
static void marks(const char *addr, size_t n, char *out)
{
	static char chunk[1 << 16];
	uintptr_t a0 = (uintptr_t)addr, a1 = a0 + n * PAGE;
	unsigned long s = 0, e = 0;
	size_t fill = 0;
	int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);

	memset(out, '?', n);
	out[n] = '\0';
	for (;;) {
		ssize_t r = fd < 0 ? 0 : read(fd, chunk + fill, sizeof(chunk) - 1 - fill);
		char *line = chunk, *nl;

		if (r <= 0)
			break;
		fill += (size_t)r;
		chunk[fill] = '\0';
		while ((nl = strchr(line, '\n'))) {
			unsigned long s2, e2;

			*nl = '\0';
			if (!strncmp(line, "VmFlags:", 8)) {
				for (uintptr_t p = s > a0 ? s : a0; p < e && p < a1; p += PAGE)
					out[(p - a0) / PAGE] = strstr(line, " dc") ? 'D' : '.';
			} else if (line[0] != 'V' && sscanf(line, "%lx-%lx ", &s2, &e2) == 2) {
				s = s2;
				e = e2;
			}
			line = nl + 1;
		}
		fill -= (size_t)(line - chunk);
		memmove(chunk, line, fill);
	}
	if (fd >= 0)
		close(fd);
}

static int write_sysctl(long v)
{
	int fd = open("/proc/sys/vm/max_map_count", O_WRONLY | O_CLOEXEC);
	char buf[32];
	int n = snprintf(buf, sizeof(buf), "%ld\n", v), ok;

	if (fd < 0)
		return -1;
	ok = write(fd, buf, (size_t)n) == n;
	close(fd);
	return ok ? 0 : -1;
}

#define NPAGES 512
static char before[NPAGES + 1], after[NPAGES + 1];

static int t_maxmap(void)
{
	struct safepin_vma_budget b0 = budget(), b;
	char *buf = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct safepin_stats s0 = { 0 }, s1 = { 0 };
	int pinned = 0, ret = 0, err = 0;

	if (buf == MAP_FAILED)
		return 1;
	/* The library's bookkeeping first, so that the limit meets the buffer. */
	CHECK(!safepin_pin(buf, PAGE, 0) && !safepin_unpin(buf, PAGE), "warm-up");
	b0 = budget();
	printf("before: %llu VMAs, vm.max_map_count %llu, free %llu\n",
	       (unsigned long long)b0.vma_count, (unsigned long long)b0.vma_limit,
	       (unsigned long long)b0.vma_free);
	if (write_sysctl((long)b0.vma_count + 40)) {
		printf("cannot lower vm.max_map_count: %s\n", strerror(errno));
		return 1;
	}
	b = budget();
	CHECK(b.vma_limit == b0.vma_count + 40 && b.vma_free == 40, "budget %llu/%llu/%llu",
	      (unsigned long long)b.vma_count, (unsigned long long)b.vma_limit,
	      (unsigned long long)b.vma_free);
	/* Pages 1, 3, 5, ...: every registration costs two VMAs. */
	for (int i = 1; i < NPAGES - 1; i += 2) {
		marks(buf, NPAGES, before);
		s0 = stats();
		errno = 0;
		ret = safepin_pin(buf + i * PAGE, PAGE, 0);
		err = errno;
		if (!ret) {
			pinned++;
			continue;
		}
		marks(buf, NPAGES, after);
		s1 = stats();
		b = budget();
		break;
	}
	write_sysctl((long)b0.vma_limit);
	printf("%d registrations fit; the next one: %d (%s); budget at the failure: count %llu "
	       "limit %llu free %llu\n", pinned, ret, strerror(err),
	       (unsigned long long)b.vma_count, (unsigned long long)b.vma_limit,
	       (unsigned long long)b.vma_free);
	/* 6.1's madvise() reports the failed VMA split as EAGAIN, 5.10's as
	 * ENOMEM; the registry promises ENOMEM on both. */
	CHECK(ret == -ENOMEM && err == ENOMEM, "expected ENOMEM, got %d errno %d", ret, err);
	CHECK(pinned >= 15 && pinned <= 20, "%d registrations fit under 40 free VMAs", pinned);
	CHECK(!strcmp(before, after), "VmFlags changed by the failed registration");
	CHECK(s1.live_registrations == s0.live_registrations &&
	      s1.pages_marked == s0.pages_marked && s1.failures == s0.failures + 1,
	      "stats changed: live %llu->%llu marked %llu->%llu",
	      (unsigned long long)s0.live_registrations, (unsigned long long)s1.live_registrations,
	      (unsigned long long)s0.pages_marked, (unsigned long long)s1.pages_marked);
	CHECK(b.vma_free <= 1, "budget should be exhausted: free %llu",
	      (unsigned long long)b.vma_free);
	for (int i = 1, n = 0; n < pinned; i += 2, n++)
		CHECK(!safepin_unpin(buf + i * PAGE, PAGE), "unpin page %d", i);
	b = budget();
	marks(buf, NPAGES, after);
	CHECK(!strchr(after, 'D'), "pages left marked");
	CHECK(b.vma_count == b0.vma_count, "VMA count %llu after unpinning all, %llu before",
	      (unsigned long long)b.vma_count, (unsigned long long)b0.vma_count);
	CHECK(stats().live_registrations == 0 && stats().pages_marked == 0, "stats not zero");
	munmap(buf, NPAGES * PAGE);
	return failures ? 1 : 0;
}

static int t_vfio_memlock(void)
{
	struct rlimit rl;
	struct edu edu;
	size_t len = 64 * PAGE;
	char *buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof(m), .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)buf, .iova = 0x100000, .size = len,
	};
	int raw, raw_err, ret, err;

	getrlimit(RLIMIT_MEMLOCK, &rl);
	if (geteuid() == 0 || rl.rlim_cur >= len) {
		printf("skip: needs a non-root user with RLIMIT_MEMLOCK < %zu (uid %d, limit %lu)\n",
		       len, (int)geteuid(), (unsigned long)rl.rlim_cur);
		return 77;
	}
	if (buf == MAP_FAILED || edu_open(&edu))
		return 77;
	memset(buf, 1, len);
	errno = 0;
	raw = ioctl(edu.container, VFIO_IOMMU_MAP_DMA, &m);
	raw_err = errno;
	CHECK(raw != 0, "raw map over RLIMIT_MEMLOCK succeeded");
	marks(buf, 64, before);
	errno = 0;
	ret = safepin_vfio_map_dma(edu.container, &m);
	err = errno;
	marks(buf, 64, after);
	printf("uid %d, RLIMIT_MEMLOCK %lu: VFIO_IOMMU_MAP_DMA %s (errno %d %s), "
	       "safepin_vfio_map_dma %d (errno %d %s)\n", (int)geteuid(),
	       (unsigned long)rl.rlim_cur, raw ? "failed" : "succeeded", raw_err,
	       strerror(raw_err), ret, err, strerror(err));
	CHECK(ret == -raw_err && err == raw_err, "errno %d, the kernel's is %d", err, raw_err);
	CHECK(!strchr(after, 'D') && !strcmp(before, after), "pages left marked: %s", after);
	CHECK(stats().live_registrations == 0 && stats().pages_marked == 0, "stats not zero");
	/* Within the limit it works: one page. */
	m.size = PAGE;
	CHECK(!safepin_vfio_map_dma(edu.container, &m), "one page: %s", strerror(errno));
	{
		struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u), .iova = 0x100000,
							.size = PAGE };

		CHECK(!safepin_vfio_unmap_dma(edu.container, &u), "unmap: %s", strerror(errno));
	}
	CHECK(stats().live_registrations == 0 && stats().pages_marked == 0, "stats not zero");
	edu_close(&edu);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *guest = getenv("SAFEPIN_GUEST");

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (!guest || strcmp(guest, "1")) {
		printf("skip: changes sysctls; runs only in a tests/vm guest (SAFEPIN_GUEST=1)\n");
		return 77;
	}
	if (argc == 2 && !strcmp(argv[1], "maxmap"))
		return t_maxmap();
	if (argc == 2 && !strcmp(argv[1], "vfio-memlock"))
		return t_vfio_memlock();
	fprintf(stderr, "usage: %s maxmap|vfio-memlock\n", argv[0]);
	return 2;
}
