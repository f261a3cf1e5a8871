// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "vm.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

size_t vm_base_page_size(void)
{
	static size_t page_size;

	if (!page_size)
		page_size = (size_t)sysconf(_SC_PAGESIZE);
	return page_size;
}

/* --- /proc/self/smaps ------------------------------------------------- */

/*
 * smaps is parsed as a stream through a fixed buffer: no allocation, so the
 * registry can call this with its lock held.  Only the header line, the
 * KernelPageSize line and the VmFlags line of each VMA matter.
 */
struct smaps_parser {
	uintptr_t start, end;	/* the window the caller asked about */
	vma_fn fn;
	void *ctx;
	struct vma_info cur;
	bool have_cur;
	int ret;
};

static bool parse_hex(const char **p, uintptr_t *out)
{
	char *end;
	unsigned long long v;

	errno = 0;
	v = strtoull(*p, &end, 16);
	if (end == *p || errno)
		return false;
	*p = end;
	*out = (uintptr_t)v;
	return true;
}

/* "start-end perms offset dev inode path": returns false if not a header. */
static bool parse_header(const char *line, struct vma_info *v)
{
	const char *p = line;
	unsigned long long inode;
	char *end;
	int field;

	if (!parse_hex(&p, &v->start) || *p++ != '-' || !parse_hex(&p, &v->end) || *p != ' ')
		return false;
	p++;
	v->flags = 0;
	v->page_size = vm_base_page_size();
	if (strlen(p) < 4)
		return false;
	if (p[0] == 'r')
		v->flags |= VMA_READ;
	if (p[1] == 'w')
		v->flags |= VMA_WRITE;
	if (p[2] == 'x')
		v->flags |= VMA_EXEC;
	if (p[3] == 's')
		v->flags |= VMA_SHARED;
	/* Skip perms, offset and dev to reach the inode. */
	for (field = 0; field < 3; field++) {
		p = strchr(p, ' ');
		if (!p)
			return false;
		p++;
	}
	inode = strtoull(p, &end, 10);
	if (inode)
		v->flags |= VMA_FILE;
	return true;
}

static void parse_vmflags(const char *p, struct vma_info *v)
{
	while (*p) {
		const char *tok;

		while (*p == ' ')
			p++;
		tok = p;
		while (*p && *p != ' ')
			p++;
		if (p - tok != 2)
			continue;
		if (!strncmp(tok, "dc", 2))
			v->flags |= VMA_DONTFORK;
		else if (!strncmp(tok, "wf", 2))
			v->flags |= VMA_WIPEONFORK;
		else if (!strncmp(tok, "ht", 2))
			v->flags |= VMA_HUGETLB;
		else if (!strncmp(tok, "io", 2) || !strncmp(tok, "pf", 2))
			v->flags |= VMA_IO;
	}
}

static void emit(struct smaps_parser *sp)
{
	if (!sp->have_cur || sp->ret)
		return;
	sp->have_cur = false;
	if (sp->cur.end <= sp->start || sp->cur.start >= sp->end)
		return;
	sp->ret = sp->fn(sp->ctx, &sp->cur);
}

static void parse_line(struct smaps_parser *sp, const char *line)
{
	struct vma_info v;

	if (!strncmp(line, "KernelPageSize:", 15)) {
		sp->cur.page_size = strtoull(line + 15, NULL, 10) * 1024;
	} else if (!strncmp(line, "VmFlags:", 8)) {
		parse_vmflags(line + 8, &sp->cur);
		emit(sp);
	} else if (line[0] >= '0' && line[0] <= 'f' && parse_header(line, &v)) {
		emit(sp);	/* a kernel without VmFlags: emit what we have */
		sp->cur = v;
		sp->have_cur = true;
	}
}

int vm_for_each_vma(uintptr_t start, uintptr_t end, vma_fn fn, void *ctx)
{
	struct smaps_parser sp = { .start = start, .end = end, .fn = fn, .ctx = ctx };
	char buf[8192];
	size_t fill = 0;
	int fd;

	fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (!sp.ret) {
		ssize_t n = read(fd, buf + fill, sizeof(buf) - 1 - fill);
		char *line, *nl;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			sp.ret = -errno;
			break;
		}
		if (n == 0)
			break;
		fill += (size_t)n;
		buf[fill] = '\0';
		line = buf;
		while (!sp.ret && (nl = strchr(line, '\n'))) {
			*nl = '\0';
			parse_line(&sp, line);
			line = nl + 1;
		}
		fill -= (size_t)(line - buf);
		memmove(buf, line, fill);
		if (fill == sizeof(buf) - 1)
			fill = 0;	/* a line longer than the buffer (a path): drop it */
		/* VMAs are in address order: stop once past the window. */
		if (sp.have_cur && sp.cur.start >= end)
			break;
	}
	emit(&sp);
	close(fd);
	return sp.ret;
}

/* --- madvise and pre-fault ------------------------------------------- */

int vm_madvise(uintptr_t start, uintptr_t end, int advice)
{
	if (madvise((void *)start, end - start, advice))
		return -errno;
	return 0;
}

static pthread_once_t populate_once = PTHREAD_ONCE_INIT;
static bool populate_supported;
static bool populate_forced_off;

static void probe_populate(void)
{
	size_t ps = vm_base_page_size();
	void *p = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return;
	populate_supported = madvise(p, ps, MADV_POPULATE_WRITE) == 0;
	munmap(p, ps);
}

bool vm_has_populate(void)
{
	pthread_once(&populate_once, probe_populate);
	return populate_supported && !populate_forced_off;
}

void vm_force_populate_fallback(bool force)
{
	populate_forced_off = force;
}

int vm_populate(uintptr_t start, uintptr_t end, bool write, size_t page_size)
{
	if (vm_has_populate())
		return vm_madvise(start, end, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);

	for (uintptr_t p = start; p < end; p += page_size) {
		if (write) {
			/*
			 * A locked read-modify-write: faults for write, stores
			 * back exactly what another thread last wrote.  The
			 * zero is hidden from the optimizer: clang turns an
			 * atomic add of a constant 0 into "mfence; load", which
			 * takes no write fault and leaves copy-on-write unbroken.
			 */
			unsigned char zero = 0;

			__asm__ volatile("" : "+r"(zero));
			__atomic_fetch_add((volatile unsigned char *)p, zero, __ATOMIC_RELAXED);
		} else {
			(void)*(volatile const unsigned char *)p;
		}
	}
	return 0;
}

/* ===================================================================== *
 * VMA budget (safepin_vma_budget): how close the process is to          *
 * vm.max_map_count.  Public API; kept apart from the engine above.      *
 * ===================================================================== */

#include <safepin/safepin.h>

#include "registry.h"

/* Lines of @path (every VMA is one line of /proc/self/maps). No allocation. */
static int budget_count_lines(const char *path, uint64_t *lines)
{
	char buf[4096];
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	*lines = 0;
	if (fd < 0)
		return -errno;
	for (;;) {
		ssize_t n = read(fd, buf, sizeof(buf));

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			int err = -errno;

			close(fd);
			return err;
		}
		if (n == 0)
			break;
		for (ssize_t i = 0; i < n; i++)
			*lines += buf[i] == '\n';
	}
	close(fd);
	return 0;
}

/* The decimal number in @path. */
static int budget_read_u64(const char *path, uint64_t *out)
{
	char buf[32], *end;
	unsigned long long v;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	do
		n = read(fd, buf, sizeof(buf) - 1);
	while (n < 0 && errno == EINTR);
	if (n < 0) {
		int err = -errno;

		close(fd);
		return err;
	}
	close(fd);
	buf[n] = '\0';
	errno = 0;
	v = strtoull(buf, &end, 10);
	if (end == buf || errno || (*end && *end != '\n'))
		return -EINVAL;
	*out = v;
	return 0;
}

static int budget_fail(int ret)
{
	registry_count_failure();
	errno = -ret;
	return ret;
}

SAFEPIN_EXPORT int safepin_vma_budget(struct safepin_vma_budget *budget)
{
	struct safepin_vma_budget b = { .size = sizeof(b) };
	size_t size;
	int ret;

	if (!budget || budget->size < offsetof(struct safepin_vma_budget, vma_limit) +
					  sizeof(budget->vma_limit))
		return budget_fail(-EINVAL);
	ret = budget_read_u64("/proc/sys/vm/max_map_count", &b.vma_limit);
	if (!ret)
		ret = budget_count_lines("/proc/self/maps", &b.vma_count);
	if (ret)
		return budget_fail(ret);
	b.vma_free = b.vma_count < b.vma_limit ? b.vma_limit - b.vma_count : 0;
	size = budget->size < sizeof(b) ? budget->size : sizeof(b);
	memcpy((char *)budget + sizeof(b.size), (char *)&b + sizeof(b.size),
	       size - sizeof(b.size));
	return 0;
}
