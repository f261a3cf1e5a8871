// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * safepin_alloc() / safepin_free(): DMA buffers in one call each.
 *
 *   alloc: mmap (hugetlb, or over-allocated and trimmed to THP alignment)
 *          -> [MADV_HUGEPAGE] -> register with placement (pin_placed)
 *   free:  unregister (which proves the buffer is a live one) -> munmap
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <safepin/safepin.h>

#include "fork.h"
#include "init.h"
#include "log.h"
#include "pin_opts.h"
#include "registry.h"
#include "vm.h"

#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif

/* A "Name: value" number from a small file; @dflt if absent. */
static size_t read_size(const char *path, const char *key, size_t mult, size_t dflt)
{
	char buf[4096], *p;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return dflt;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return dflt;
	buf[n] = '\0';
	p = key ? strstr(buf, key) : buf;
	if (!p)
		return dflt;
	if (key)
		p += strlen(key);
	n = (ssize_t)strtoull(p, NULL, 10);
	return n > 0 ? (size_t)n * mult : dflt;
}

static size_t thp_size(void)
{
	static size_t size;

	if (!size)
		size = read_size("/sys/kernel/mm/transparent_hugepage/hpage_pmd_size", NULL, 1,
				 2u << 20);
	return size;
}

static size_t default_huge_page_size(void)
{
	return read_size("/proc/meminfo", "Hugepagesize:", 1024, 2u << 20);
}

static int page_size_cb(void *ctx, const struct vma_info *vma)
{
	*(size_t *)ctx = vma->page_size;
	return 1;
}

static void *map_aligned(size_t len, size_t align, int flags)
{
	size_t bps = vm_base_page_size(), extra = align > bps ? align - bps : 0;
	uintptr_t p, start;
	void *m;

	if (len + extra < len)
		return MAP_FAILED;
	m = mmap(NULL, len + extra, PROT_READ | PROT_WRITE, flags, -1, 0);
	if (m == MAP_FAILED || !extra)
		return m;
	p = (uintptr_t)m;
	start = (p + align - 1) & ~(uintptr_t)(align - 1);
	if (start > p)
		munmap(m, start - p);
	if (start + len < p + len + extra)
		munmap((void *)(start + len), p + len + extra - (start + len));
	return (void *)start;
}

SAFEPIN_EXPORT void *safepin_alloc(size_t len, const struct safepin_alloc_opts *opts)
{
	struct safepin_alloc_opts o = { .size = sizeof(o), .numa_node = SAFEPIN_NUMA_NODE_NONE };
	int flags = MAP_PRIVATE | MAP_ANONYMOUS, ret = 0;
	size_t page = vm_base_page_size(), align, maplen;
	void *p;

	safepin_init();
	if (opts)
		ret = opts_copy(&o, sizeof(o), offsetof(struct safepin_alloc_opts, huge_page_size),
				opts, opts->size);
	if (!ret && (!len || (o.flags & ~(SAFEPIN_ALLOC_HUGETLB | SAFEPIN_ALLOC_THP)) ||
		     (o.flags & SAFEPIN_ALLOC_HUGETLB && o.flags & SAFEPIN_ALLOC_THP) ||
		     (o.huge_page_size && !(o.flags & SAFEPIN_ALLOC_HUGETLB)) ||
		     (o.huge_page_size & (o.huge_page_size - 1)) ||
		     (o.huge_page_size && o.huge_page_size <= page) ||
		     o.numa_node < SAFEPIN_NUMA_NODE_NONE))
		ret = -EINVAL;
	if (ret) {
		opts_fail(ret);
		return NULL;
	}
	if (o.flags & SAFEPIN_ALLOC_HUGETLB) {
		page = o.huge_page_size ? o.huge_page_size : default_huge_page_size();
		flags |= MAP_HUGETLB;
		if (o.huge_page_size)
			flags |= __builtin_ctzl(o.huge_page_size) << MAP_HUGE_SHIFT;
	}
	maplen = (len + page - 1) & ~(page - 1);
	if (maplen < len) {
		opts_fail(-ENOMEM);
		return NULL;
	}
	/* hugetlb mappings come aligned to their page size: no over-allocation there. */
	align = flags & MAP_HUGETLB ? vm_base_page_size() : maplen >= thp_size() ? thp_size() : page;
	p = map_aligned(maplen, align, flags);
	if (p == MAP_FAILED) {
		opts_fail(-errno);
		return NULL;
	}
	if ((o.flags & SAFEPIN_ALLOC_THP) && madvise(p, maplen, MADV_HUGEPAGE))
		sp_log(SP_LOG_INFO, "safepin_alloc: MADV_HUGEPAGE failed: errno %d", errno);
	ret = pin_placed(p, len, o.numa_node, false);
	if (ret) {
		munmap(p, maplen);
		opts_fail(ret);
		return NULL;
	}
	return p;
}

SAFEPIN_EXPORT int safepin_free(void *p, size_t len)
{
	uintptr_t start = (uintptr_t)p;
	size_t page = 0;
	int ret;

	safepin_init();
	if (!p || !len || start + len < start || start % vm_base_page_size())
		return opts_fail(-EINVAL);
	/* The mapping's page size (hugetlb), read before it goes away. */
	if (vm_for_each_vma(start, start + 1, page_size_cb, &page) < 0 || !page)
		page = vm_base_page_size();
	fork_guard_enter();
	ret = registry_unpin_now(start, len);
	fork_guard_exit();
	if (ret)
		return opts_fail(ret);
	if (munmap(p, (len + page - 1) & ~(page - 1)))
		return opts_fail(-errno);
	return 0;
}
