// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * vfio_dma: libsafepin's VFIO wrappers with a real DMA engine (QEMU's edu
 * device behind an emulated IOMMU, bound to vfio-pci) in the guests.
 *
 *   vfio_dma fork-write | fork-readonly | overlap | errors | iommufd
 *
 * fork-write     map (RW), fork, parent writes, device writes the buffer:
 *                the parent sees the device's bytes; PFN unchanged.
 * fork-readonly  fork first (the page is COW-shared), READ-only map, parent
 *                writes, device reads: it must read the parent's bytes.
 *                With the library's protection off this fails on 5.10
 *                (asserted there, SAFEPIN_GUEST_KERNEL=5.10) and must pass
 *                with it on, every run.
 * fork-exited-readonly  the same, but the child exits before the map: the
 *                page is the parent's alone again, its PTE still
 *                write-protected.  Same expectations.
 * overlap        one buffer at three IOVAs (two overlapping ranges), unmap
 *                in all 6 orders; one unmap over several; UNMAP_FLAG_ALL.
 * errors         unaligned vaddr/iova/size, IOVA in use, unmap of nothing,
 *                bisecting unmap, closed and wrong fds: the kernel's errno
 *                and nothing marked.
 * iommufd        the same through /dev/iommu, or exit 77 (skip) with the
 *                evidence when the kernel has no iommufd.
 *
 * Runs as root (PFNs from /proc/self/pagemap).  Exit 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <safepin/safepin.h>
#include <safepin/vfio.h>

#include "edu.h"
#include "iommufd_uapi.h"
#include "registry.h"

#define PAGE 4096ul

static int failures;
static struct edu edu;
static const char *kernel = "";

#define CHECK(cond, ...)                                                         \
	do {                                                                     \
		if (!(cond)) {                                                   \
			failures++;                                              \
			printf("FAIL %s:%d: %s: ", __func__, __LINE__, #cond);   \
			printf(__VA_ARGS__);                                     \
			printf("\n");                                            \
		}                                                                \
	} while (0)

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void *map_pages(size_t n)
{
	void *p = mmap(NULL, n * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

static uint64_t pfn_of(const void *addr)
{
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0 || pread(fd, &e, 8, (off_t)((uintptr_t)addr / PAGE * 8)) != 8)
		e = 0;
	if (fd >= 0)
		close(fd);
	return (e >> 63) ? e & ((1ull << 55) - 1) : 0;
}

/* Whether the VMA holding @addr has VmFlag "dc" (MADV_DONTFORK). */
static bool dontfork_at(const void *addr)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[512];
	bool in = false, dc = false;
	uintptr_t a = (uintptr_t)addr;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			in = a >= lo && a < hi;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			dc = strstr(line, " dc") != NULL;
			break;
		}
	}
	fclose(f);
	return dc;
}

/* One character per page: 'D' DONTFORK, '.' not. */
static const char *marks(const void *addr, size_t n)
{
	static char s[64];

	for (size_t i = 0; i < n && i < sizeof(s) - 1; i++)
		s[i] = dontfork_at((const char *)addr + i * PAGE) ? 'D' : '.';
	s[n < sizeof(s) - 1 ? n : sizeof(s) - 1] = 0;
	return s;
}

static struct safepin_stats stats(void)
{
	struct safepin_stats s = { .size = sizeof(s) };

	safepin_get_stats(&s);
	return s;
}

static void fill(void *buf, size_t len, unsigned int seed)
{
	unsigned char *p = buf;

	for (size_t i = 0; i < len; i++)
		p[i] = (unsigned char)(seed * 131 + i * 7 + (i >> 8));
}

static size_t matching(const void *buf, size_t len, unsigned int seed)
{
	const unsigned char *p = buf;
	size_t ok = 0;

	for (size_t i = 0; i < len; i++)
		ok += p[i] == (unsigned char)(seed * 131 + i * 7 + (i >> 8));
	return ok;
}

static int vmap(void *vaddr, uint64_t iova, uint64_t size, uint32_t flags)
{
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof(m), .flags = flags, .vaddr = (uintptr_t)vaddr,
		.iova = iova, .size = size,
	};

	return safepin_vfio_map_dma(edu.container, &m);
}

static int vunmap(uint64_t iova, uint64_t size, uint32_t flags, uint64_t *unmapped)
{
	struct vfio_iommu_type1_dma_unmap u = {
		.argsz = sizeof(u), .flags = flags, .iova = iova, .size = size,
	};
	int ret = safepin_vfio_unmap_dma(edu.container, &u);

	if (unmapped)
		*unmapped = u.size;
	return ret;
}

#define RW (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)
#define RO VFIO_DMA_MAP_FLAG_READ

/* A child that holds its copy of the address space until released. */
struct sleeper {
	pid_t pid;
	int release;
};

static struct sleeper fork_sleeper(void)
{
	struct sleeper s;
	int p[2];
	char c;

	if (pipe(p)) {
		perror("pipe");
		exit(1);
	}
	s.pid = fork();
	if (s.pid < 0) {
		perror("fork");
		exit(1);
	}
	if (!s.pid) {
		close(p[1]);
		while (read(p[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(p[0]);
	s.release = p[1];
	return s;
}

static void release_sleeper(struct sleeper *s)
{
	int status;

	close(s->release);
	waitpid(s->pid, &status, 0);
}

static bool expect_hazard(void)
{
	return !strcmp(kernel, "5.10");
}

/* ---- 1 --------------------------------------------------------------- */

/* Map RW, fork, parent writes, device writes: bytes of the device's pattern
 * the parent sees (of EDU_DMA_MAX). */
static size_t fork_write_once(bool protect, uint64_t *pfn_before, uint64_t *pfn_after)
{
	unsigned char *buf = map_pages(1), *src = map_pages(1);
	struct sleeper child;
	size_t ok;

	registry_disable_protection(!protect);
	fill(src, EDU_DMA_MAX, 3);
	fill(buf, PAGE, 1);
	CHECK(!vmap(src, 0x200000, PAGE, RO), "map src: %s", strerror(errno));
	CHECK(!vmap(buf, 0x100000, PAGE, RW), "map buf: %s", strerror(errno));
	*pfn_before = pfn_of(buf);
	child = fork_sleeper();
	fill(buf, PAGE, 2);		/* the parent writes after fork */
	*pfn_after = pfn_of(buf);
	/* The device: src -> its buffer -> buf. */
	CHECK(!edu_dma(&edu, 0x200000, EDU_DMA_MAX, false), "DMA in");
	CHECK(!edu_dma(&edu, 0x100000, EDU_DMA_MAX, true), "DMA out");
	ok = matching(buf, EDU_DMA_MAX, 3);
	release_sleeper(&child);
	CHECK(!vunmap(0x100000, PAGE, 0, NULL), "unmap buf: %s", strerror(errno));
	CHECK(!vunmap(0x200000, PAGE, 0, NULL), "unmap src: %s", strerror(errno));
	registry_disable_protection(false);
	munmap(buf, PAGE);
	munmap(src, PAGE);
	return ok;
}

static void test_fork_write(void)
{
	uint64_t before, after;
	size_t ok;
	struct safepin_stats s;

	ok = fork_write_once(false, &before, &after);
	printf("fork-write, protection off: device wrote %zu/%u bytes the parent sees; "
	       "PFN %#llx -> %#llx (informational)\n", ok, EDU_DMA_MAX,
	       (unsigned long long)before, (unsigned long long)after);
	ok = fork_write_once(true, &before, &after);
	printf("fork-write, protection on:  device wrote %zu/%u bytes the parent sees; "
	       "PFN %#llx -> %#llx\n", ok, EDU_DMA_MAX,
	       (unsigned long long)before, (unsigned long long)after);
	CHECK(ok == EDU_DMA_MAX, "%zu/%u", ok, EDU_DMA_MAX);
	CHECK(before && before == after, "PFN %#llx -> %#llx", (unsigned long long)before,
	      (unsigned long long)after);
	s = stats();
	CHECK(!s.live_registrations && !s.pages_marked, "left: %llu registrations, %llu pages",
	      (unsigned long long)s.live_registrations, (unsigned long long)s.pages_marked);
}

/* ---- 2 --------------------------------------------------------------- */

/* Fork first, then a READ-only map of the COW-shared page; the parent
 * writes; the device reads it (and writes it back to a second buffer):
 * bytes of the parent's newest data the device read.  @child_exits: the
 * child is gone before the map, so the page is mapped by the parent alone
 * (pagemap's "exclusive" bit is set again) but its PTE is still
 * write-protected: only a write fault before the map makes it writable. */
static size_t fork_readonly_once(bool protect, bool child_exits, uint64_t *pfn_map,
				 uint64_t *pfn_write)
{
	unsigned char *buf = map_pages(1), *dst = map_pages(1);
	struct sleeper child;
	size_t ok;

	CHECK(!vmap(dst, 0x200000, PAGE, RW), "map dst: %s", strerror(errno));
	fill(buf, PAGE, 4);		/* old data, present before the fork */
	child = fork_sleeper();		/* buf is now COW-shared with the child */
	if (child_exits)
		release_sleeper(&child);
	registry_disable_protection(!protect);
	CHECK(!vmap(buf, 0x100000, PAGE, RO), "map buf RO: %s", strerror(errno));
	registry_disable_protection(false);
	*pfn_map = pfn_of(buf);
	fill(buf, PAGE, 5);		/* the parent's newest data */
	*pfn_write = pfn_of(buf);
	memset(dst, 0, PAGE);
	CHECK(!edu_dma(&edu, 0x100000, EDU_DMA_MAX, false), "DMA in");
	CHECK(!edu_dma(&edu, 0x200000, EDU_DMA_MAX, true), "DMA out");
	ok = matching(dst, EDU_DMA_MAX, 5);
	if (!child_exits)
		release_sleeper(&child);
	CHECK(!vunmap(0x100000, PAGE, 0, NULL), "unmap buf: %s", strerror(errno));
	CHECK(!vunmap(0x200000, PAGE, 0, NULL), "unmap dst: %s", strerror(errno));
	munmap(buf, PAGE);
	munmap(dst, PAGE);
	return ok;
}

static void test_fork_readonly(bool child_exits)
{
	const char *name = child_exits ? "fork-exited-readonly" : "fork-readonly";
	uint64_t pm, pw;
	size_t off, on;
	struct safepin_stats s;

	off = fork_readonly_once(false, child_exits, &pm, &pw);
	printf("%s, protection off: device read %zu/%u bytes of the parent's data; "
	       "PFN at map %#llx, after write %#llx\n", name, off, EDU_DMA_MAX,
	       (unsigned long long)pm, (unsigned long long)pw);
	on = fork_readonly_once(true, child_exits, &pm, &pw);
	printf("%s, protection on:  device read %zu/%u bytes of the parent's data; "
	       "PFN at map %#llx, after write %#llx\n", name, on, EDU_DMA_MAX,
	       (unsigned long long)pm, (unsigned long long)pw);
	CHECK(on == EDU_DMA_MAX, "with protection: %zu/%u", on, EDU_DMA_MAX);
	CHECK(pm && pm == pw, "with protection the PFN moved: %#llx -> %#llx",
	      (unsigned long long)pm, (unsigned long long)pw);
	if (expect_hazard()) {
		/* The test must be able to fail: without the library it does. */
		CHECK(off < EDU_DMA_MAX, "on %s the unprotected read-only map should read a "
		      "stale page, read %zu/%u", kernel, off, EDU_DMA_MAX);
	}
	s = stats();
	CHECK(!s.live_registrations && !s.pages_marked, "left: %llu registrations, %llu pages",
	      (unsigned long long)s.live_registrations, (unsigned long long)s.pages_marked);
}

/* ---- 3 --------------------------------------------------------------- */

#define IOVA_A 0x100000ull	/* pages 0-1 of buf, RW */
#define IOVA_B 0x300000ull	/* page 1 of buf, RO */
#define IOVA_C 0x102000ull	/* pages 0-1 again, RW, right after A */

struct overlap_map {
	uint64_t iova;
	size_t first, pages;
	uint32_t flags;
};

static const struct overlap_map omaps[3] = {
	{ IOVA_A, 0, 2, RW }, { IOVA_B, 1, 1, RO }, { IOVA_C, 0, 2, RW },
};

/* Registrations (of one page each) outside buf that are live. */
static unsigned int extra;

/* What must be marked with the mappings in @live (bit i: omaps[i]). */
static void expect_marks(const unsigned char *buf, unsigned int live, const char *when)
{
	char want[3] = "..";
	uint64_t pages = 0;
	struct safepin_stats s = stats();

	for (int i = 0; i < 3; i++)
		if (live & (1u << i))
			for (size_t p = omaps[i].first; p < omaps[i].first + omaps[i].pages; p++)
				want[p] = 'D';
	pages = (want[0] == 'D') + (want[1] == 'D');
	CHECK(!strcmp(marks(buf, 2), want), "%s: marks %s, want %s", when, marks(buf, 2), want);
	CHECK(s.pages_marked == pages + extra, "%s: %llu pages marked, want %llu", when,
	      (unsigned long long)s.pages_marked, (unsigned long long)(pages + extra));
	CHECK(s.live_registrations == (uint64_t)__builtin_popcount(live) + extra,
	      "%s: %llu registrations, want %u", when,
	      (unsigned long long)s.live_registrations, __builtin_popcount(live) + extra);
}

static void map_all(unsigned char *buf)
{
	for (int i = 0; i < 3; i++)
		CHECK(!vmap(buf + omaps[i].first * PAGE, omaps[i].iova, omaps[i].pages * PAGE,
			    omaps[i].flags), "map %d: %s", i, strerror(errno));
	expect_marks(buf, 7, "all mapped");
}

static void test_overlap(void)
{
	static const int orders[6][3] = {
		{ 0, 1, 2 }, { 0, 2, 1 }, { 1, 0, 2 }, { 1, 2, 0 }, { 2, 0, 1 }, { 2, 1, 0 },
	};
	unsigned char *buf = map_pages(2), *out = map_pages(1);
	uint64_t unmapped;
	char when[64];
	int ret;

	CHECK(!vmap(out, 0x400000, PAGE, RW), "map out: %s", strerror(errno));
	extra = 1;
	map_all(buf);
	/* The three IOVAs reach the same pages: the device writes page 1
	 * through C, reads it back through B (read-only) and through A. */
	fill(out, EDU_DMA_MAX, 9);
	CHECK(!edu_dma(&edu, 0x400000, EDU_DMA_MAX, false), "DMA");
	CHECK(!edu_dma(&edu, IOVA_C + PAGE, EDU_DMA_MAX, true), "DMA");
	CHECK(matching(buf + PAGE, EDU_DMA_MAX, 9) == EDU_DMA_MAX, "C -> page 1");
	fill(buf + PAGE, EDU_DMA_MAX, 10);
	CHECK(!edu_dma(&edu, IOVA_B, EDU_DMA_MAX, false), "DMA");
	CHECK(!edu_dma(&edu, 0x400000, EDU_DMA_MAX, true), "DMA");
	CHECK(matching(out, EDU_DMA_MAX, 10) == EDU_DMA_MAX, "page 1 via B");
	fill(buf + PAGE, EDU_DMA_MAX, 11);
	CHECK(!edu_dma(&edu, IOVA_A + PAGE, EDU_DMA_MAX, false), "DMA");
	CHECK(!edu_dma(&edu, 0x400000, EDU_DMA_MAX, true), "DMA");
	CHECK(matching(out, EDU_DMA_MAX, 11) == EDU_DMA_MAX, "page 1 via A");
	printf("overlap: device wrote page 1 through C and read it back through B and A: %s\n",
	       failures ? "WRONG" : "4095/4095 bytes each");

	for (int o = 0; o < 6; o++) {
		unsigned int live = 7;

		if (o)
			map_all(buf);
		for (int k = 0; k < 3; k++) {
			const struct overlap_map *m = &omaps[orders[o][k]];

			ret = vunmap(m->iova, m->pages * PAGE, 0, &unmapped);
			CHECK(!ret && unmapped == m->pages * PAGE, "unmap %d: %d, %llu bytes",
			      orders[o][k], ret, (unsigned long long)unmapped);
			live &= ~(1u << orders[o][k]);
			snprintf(when, sizeof(when), "order %d%d%d step %d", orders[o][0],
				 orders[o][1], orders[o][2], k);
			expect_marks(buf, live, when);
		}
	}

	/* One unmap covering A and C (adjacent) but not B. */
	map_all(buf);
	ret = vunmap(IOVA_A, 4 * PAGE, 0, &unmapped);
	CHECK(!ret && unmapped == 4 * PAGE, "unmap A+C: %d, %llu", ret,
	      (unsigned long long)unmapped);
	expect_marks(buf, 2, "after one unmap of A and C");
	CHECK(!vunmap(IOVA_B, PAGE, 0, NULL), "unmap B");
	expect_marks(buf, 0, "after unmapping B");

	/* VFIO_DMA_UNMAP_FLAG_ALL: 5.13+; older kernels refuse it with EINVAL. */
	map_all(buf);
	for (int i = 0; i < 3; i++) {
		/* Again: the IOVAs are in use; nothing changes. */
		ret = vmap(buf + omaps[i].first * PAGE, omaps[i].iova, omaps[i].pages * PAGE,
			   omaps[i].flags);
		CHECK(ret == -EEXIST && errno == EEXIST, "map %d again: %d", i, ret);
	}
	expect_marks(buf, 7, "after maps that failed with EEXIST");
	ret = vunmap(0, 0, VFIO_DMA_UNMAP_FLAG_ALL, &unmapped);
	if (ioctl(edu.container, VFIO_CHECK_EXTENSION, VFIO_UNMAP_ALL) == 1) {
		CHECK(!ret, "UNMAP_FLAG_ALL: %s", strerror(errno));
		CHECK(unmapped == 6 * PAGE, "UNMAP_FLAG_ALL unmapped %llu",
		      (unsigned long long)unmapped);
		extra = 0;	/* out is released as well */
		expect_marks(buf, 0, "after UNMAP_FLAG_ALL");
		printf("overlap: VFIO_DMA_UNMAP_FLAG_ALL released %llu bytes of 4 mappings\n",
		       (unsigned long long)unmapped);
	} else {
		CHECK(ret == -EINVAL && errno == EINVAL, "UNMAP_FLAG_ALL on %s: %d", kernel, ret);
		expect_marks(buf, 7, "after a refused UNMAP_FLAG_ALL");
		printf("overlap: VFIO_DMA_UNMAP_FLAG_ALL refused with EINVAL (kernel %s), "
		       "nothing released\n", kernel);
		for (int i = 0; i < 3; i++)
			CHECK(!vunmap(omaps[i].iova, omaps[i].pages * PAGE, 0, NULL), "unmap %d", i);
		CHECK(!vunmap(0x400000, PAGE, 0, NULL), "unmap out");
		extra = 0;
		expect_marks(buf, 0, "after unmapping one by one");
	}
	munmap(buf, 2 * PAGE);
	munmap(out, PAGE);
}

/* ---- 4 --------------------------------------------------------------- */

/* Nothing changed: same registrations, same marks on the probe pages. */
struct snap {
	struct safepin_stats s;
	char marks[8];
};

static struct snap snap(const void *buf, size_t pages)
{
	struct snap n;

	n.s = stats();
	snprintf(n.marks, sizeof(n.marks), "%s", marks(buf, pages));
	return n;
}

static void same(const struct snap *a, const void *buf, size_t pages, const char *what)
{
	struct snap b = snap(buf, pages);

	CHECK(a->s.live_registrations == b.s.live_registrations &&
	      a->s.pages_marked == b.s.pages_marked && !strcmp(a->marks, b.marks),
	      "%s changed something: registrations %llu -> %llu, pages %llu -> %llu, "
	      "marks %s -> %s", what, (unsigned long long)a->s.live_registrations,
	      (unsigned long long)b.s.live_registrations, (unsigned long long)a->s.pages_marked,
	      (unsigned long long)b.s.pages_marked, a->marks, b.marks);
}

#define EXPECT_ERR(call, err, what)                                                  \
	do {                                                                         \
		struct snap before_ = snap(buf, 3);                                  \
		int ret_;                                                            \
		errno = 0;                                                           \
		ret_ = (call);                                                       \
		CHECK(ret_ == -(err) && errno == (err), "%s: got %d (%s), want -%s", \
		      what, ret_, strerror(errno), #err);                            \
		same(&before_, buf, 3, what);                                        \
		printf("errors: %-34s -> %s\n", what, ret_ ? strerror(-ret_) : "0"); \
	} while (0)

static void test_errors(void)
{
	unsigned char *buf = map_pages(3), *hole = map_pages(1);
	struct vfio_iommu_type1_dma_map m = { .argsz = sizeof(m) };
	struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u) };
	uint64_t unmapped = 1;
	int closed, devnull;

	munmap(hole, PAGE);
	EXPECT_ERR(vmap(buf + 1, 0x100000, PAGE, RW), EINVAL, "unaligned vaddr");
	EXPECT_ERR(vmap(buf, 0x100001, PAGE, RW), EINVAL, "unaligned iova");
	EXPECT_ERR(vmap(buf, 0x100000, PAGE - 1, RW), EINVAL, "unaligned size");
	EXPECT_ERR(vmap(buf, 0x100000, 0, RW), EINVAL, "size 0");
	EXPECT_ERR(vmap(buf, 0x100000, PAGE, 0), EINVAL, "neither READ nor WRITE");
	EXPECT_ERR(vmap(hole, 0x100000, PAGE, RW), EFAULT, "unmapped vaddr");
	EXPECT_ERR(safepin_vfio_map_dma(edu.container, NULL), EINVAL, "NULL map");

	/* IOVA in use: the first mapping stays, alone. */
	CHECK(!vmap(buf, 0x100000, 2 * PAGE, RW), "map: %s", strerror(errno));
	CHECK(!strcmp(marks(buf, 3), "DD."), "marks %s", marks(buf, 3));
	EXPECT_ERR(vmap(buf + 2 * PAGE, 0x100000, PAGE, RW), EEXIST, "same IOVA");
	EXPECT_ERR(vmap(buf + 2 * PAGE, 0x101000, PAGE, RW), EEXIST, "IOVA inside a mapping");
	EXPECT_ERR(vmap(buf + 2 * PAGE, 0xff000, 2 * PAGE, RW), EEXIST, "IOVA overlapping the start");

	/* Unmaps that remove nothing. */
	{
		struct snap before = snap(buf, 3);
		int ret = vunmap(0x500000, PAGE, 0, &unmapped);

		CHECK(!ret && !unmapped, "unmap of nothing: %d, %llu bytes", ret,
		      (unsigned long long)unmapped);
		same(&before, buf, 3, "unmap of a never-mapped IOVA");
		printf("errors: %-34s -> 0, %llu bytes unmapped\n", "unmap of a never-mapped IOVA",
		       (unsigned long long)unmapped);
	}
	EXPECT_ERR(vunmap(0x100000, PAGE, 0, NULL), EINVAL, "unmap bisecting a mapping");
	EXPECT_ERR(vunmap(0x101000, 2 * PAGE, 0, NULL), EINVAL, "unmap over a mapping's end");
	EXPECT_ERR(vunmap(0x100000, PAGE - 1, 0, NULL), EINVAL, "unmap unaligned size");
	EXPECT_ERR(safepin_vfio_unmap_dma(edu.container, NULL), EINVAL, "NULL unmap");

	/* Descriptors that are not an open container. */
	closed = dup(edu.container);
	close(closed);
	m.flags = RW;
	m.vaddr = (uintptr_t)(buf + 2 * PAGE);
	m.iova = 0x600000;
	m.size = PAGE;
	EXPECT_ERR(safepin_vfio_map_dma(closed, &m), EBADF, "map on a closed fd");
	u.iova = 0x100000;
	u.size = 2 * PAGE;
	EXPECT_ERR(safepin_vfio_unmap_dma(closed, &u), EBADF, "unmap on a closed fd");
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	EXPECT_ERR(safepin_vfio_map_dma(devnull, &m), ENOTTY, "map on /dev/null");
	EXPECT_ERR(safepin_vfio_unmap_dma(devnull, &u), ENOTTY, "unmap on /dev/null");
	close(devnull);

	CHECK(!vunmap(0x100000, 2 * PAGE, 0, &unmapped) && unmapped == 2 * PAGE, "unmap");
	CHECK(!strcmp(marks(buf, 3), "..."), "marks %s after the last unmap", marks(buf, 3));
	CHECK(!stats().live_registrations, "registrations left");
	munmap(buf, 3 * PAGE);
}

/* ---- 5 --------------------------------------------------------------- */

/* Print whether a file of the running kernel mentions iommufd. */
static void show_mentions(const char *rel, const char *needle)
{
	struct utsname u;
	char path[256], line[512];
	FILE *f;
	int n = 0;

	uname(&u);
	snprintf(path, sizeof(path), "/lib/modules/%s/%s", u.release, rel);
	f = fopen(path, "re");
	if (!f) {
		printf("iommufd: %s: %s\n", path, strerror(errno));
		return;
	}
	while (fgets(line, sizeof(line), f))
		n += strstr(line, needle) != NULL;
	fclose(f);
	printf("iommufd: %s: %d line(s) mention \"%s\"\n", path, n, needle);
}

static int test_iommufd(void)
{
	struct iommu_ioas_alloc alloc = { .size = sizeof(alloc) };
	struct iommu_ioas_map m = { .size = sizeof(m) };
	struct iommu_ioas_unmap u = { .size = sizeof(u) };
	unsigned char *buf;
	uint64_t kernel_iova;
	int fd = open("/dev/iommu", O_RDWR | O_CLOEXEC);
	struct utsname un;

	uname(&un);
	if (fd < 0) {
		printf("iommufd: open /dev/iommu: %s on %s\n", strerror(errno), un.release);
		show_mentions("modules.builtin", "iommufd");
		show_mentions("modules.dep", "iommufd");
		printf("iommufd: not available on this kernel: skipped\n");
		return 77;
	}
	if (ioctl(fd, IOMMU_IOAS_ALLOC, &alloc)) {
		printf("iommufd: IOMMU_IOAS_ALLOC: %s\n", strerror(errno));
		close(fd);
		return 1;
	}
	buf = map_pages(2);
	/* Kernel-chosen IOVA. */
	m.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE;
	m.ioas_id = alloc.out_ioas_id;
	m.user_va = (uintptr_t)buf;
	m.length = PAGE;
	CHECK(!safepin_iommufd_map(fd, &m), "map: %s", strerror(errno));
	kernel_iova = m.iova;
	/* Fixed IOVA, read-only. */
	m.flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_FIXED_IOVA;
	m.user_va = (uintptr_t)buf + PAGE;
	m.iova = 0x100000;
	CHECK(!safepin_iommufd_map(fd, &m), "fixed map: %s", strerror(errno));
	CHECK(!strcmp(marks(buf, 2), "DD"), "marks %s", marks(buf, 2));
	/* Fixed IOVA in use. */
	CHECK(safepin_iommufd_map(fd, &m) == -EEXIST, "fixed map again: %s", strerror(errno));
	CHECK(stats().live_registrations == 2, "registrations");
	u.ioas_id = alloc.out_ioas_id;
	u.iova = kernel_iova;
	u.length = PAGE;
	CHECK(!safepin_iommufd_unmap(fd, &u) && u.length == PAGE, "unmap: %s", strerror(errno));
	CHECK(!strcmp(marks(buf, 2), ".D"), "marks %s", marks(buf, 2));
	u.iova = 0;
	u.length = UINT64_MAX;
	CHECK(!safepin_iommufd_unmap(fd, &u) && u.length == PAGE, "unmap all: %s",
	      strerror(errno));
	CHECK(!strcmp(marks(buf, 2), ".."), "marks %s", marks(buf, 2));
	CHECK(!stats().live_registrations, "registrations left");
	printf("iommufd: maps at kernel-chosen IOVA %#llx and fixed IOVA 0x100000 marked and "
	       "released\n", (unsigned long long)kernel_iova);
	close(fd);
	munmap(buf, 2 * PAGE);
	return failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	const char *t = argc > 1 ? argv[1] : "";
	double t0 = now();
	int ret;

	setvbuf(stdout, NULL, _IOLBF, 0);
	kernel = getenv("SAFEPIN_GUEST_KERNEL") ? getenv("SAFEPIN_GUEST_KERNEL") : "";
	if (!strcmp(t, "iommufd")) {
		ret = test_iommufd();
		printf("%s: %s in %.2f s\n", t, ret == 77 ? "skipped" : ret ? "FAILED" : "passed",
		       now() - t0);
		return ret;
	}
	if (geteuid()) {
		printf("needs root (PFNs in /proc/self/pagemap): skipped\n");
		return 77;
	}
	if (edu_open(&edu))
		return 1;
	if (!strcmp(t, "fork-write"))
		test_fork_write();
	else if (!strcmp(t, "fork-readonly"))
		test_fork_readonly(false);
	else if (!strcmp(t, "fork-exited-readonly"))
		test_fork_readonly(true);
	else if (!strcmp(t, "overlap"))
		test_overlap();
	else if (!strcmp(t, "errors"))
		test_errors();
	else {
		fprintf(stderr, "usage: %s fork-write|fork-readonly|fork-exited-readonly|overlap|errors|"
			"iommufd\n",
			argv[0]);
		return 2;
	}
	edu_close(&edu);
	printf("%s on %s: %s (%d failure(s)) in %.2f s\n", t, kernel, failures ? "FAILED" : "passed",
	       failures, now() - t0);
	return failures ? 1 : 0;
}
