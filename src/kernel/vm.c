// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <unistd.h>

#include "compiler.h"
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

/* --- PROCMAP_QUERY (Linux 6.11+) ---------------------------------------- */

/*
 * From the kernel's include/uapi/linux/fs.h; Debian bookworm's headers
 * predate it.  The kernel accepts any size >= its first version's 104 bytes.
 */
struct procmap_query {
	uint64_t size;
	uint64_t query_flags;		/* in */
	uint64_t query_addr;		/* in */
	uint64_t vma_start;		/* out */
	uint64_t vma_end;		/* out */
	uint64_t vma_flags;		/* out */
	uint64_t vma_page_size;		/* out */
	uint64_t vma_offset;		/* out */
	uint64_t inode;			/* out */
	uint32_t dev_major;		/* out */
	uint32_t dev_minor;		/* out */
	uint32_t vma_name_size;		/* in/out */
	uint32_t build_id_size;		/* in/out */
	uint64_t vma_name_addr;		/* in */
	uint64_t build_id_addr;		/* in */
};
_Static_assert(sizeof(struct procmap_query) == 104, "struct procmap_query layout");

#define PROCMAP_QUERY _IOWR('f', 17, struct procmap_query)
#define PROCMAP_QUERY_VMA_READABLE		0x01
#define PROCMAP_QUERY_VMA_WRITABLE		0x02
#define PROCMAP_QUERY_VMA_EXECUTABLE		0x04
#define PROCMAP_QUERY_VMA_SHARED		0x08
#define PROCMAP_QUERY_COVERING_OR_NEXT_VMA	0x10

static enum vm_source forced_source;

/*
 * Descriptors kept open (O_CLOEXEC): /proc/self/maps for the ioctl and
 * /proc/self/pagemap.  Each names the mm of the process that opened it, so
 * a child (forked, or a raw clone() that ran no atfork handler) must not
 * use its parent's: the pid is compared on every use and the file reopened
 * on a change.  If the application closed one behind our back the call
 * fails (EBADF, or ENOTTY on whatever reused the number) and it is
 * reopened once.
 */
struct cached_fd {
	const char *path;
	int fd;
	pid_t pid;
	int slot;		/* in opened_here */
};

static pthread_mutex_t fd_lock = PTHREAD_MUTEX_INITIALIZER;
static struct cached_fd maps_fd = { "/proc/self/maps", -1, 0, 0 };
static struct cached_fd pagemap_fd = { "/proc/self/pagemap", -1, 0, 1 };

/*
 * The pid comparison without a getpid() per use (a tenth of a pin inside a
 * window): one page marked MADV_WIPEONFORK, which the kernel zeroes in
 * every child that copies this address space, fork() and raw clone()
 * alike.  Byte @slot set: that descriptor was opened by this very process.
 * Without the page (kernels before 4.14) getpid() decides every time.
 */
static unsigned char *opened_here;
static pthread_once_t opened_here_once = PTHREAD_ONCE_INIT;

static void map_opened_here(void)
{
	long ps = sysconf(_SC_PAGESIZE);
	void *p = mmap(NULL, (size_t)ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		return;
	if (madvise(p, (size_t)ps, MADV_WIPEONFORK)) {
		munmap(p, (size_t)ps);
		return;
	}
	opened_here = p;
}
static int pmq_supported;	/* 1 yes, -1 no, 0 not probed yet */

/*
 * A descriptor the library keeps must not take the lowest free number: an
 * application that closed a descriptor and still uses the number (a bug,
 * but one tests exercise on purpose) would reach our file instead of
 * getting EBADF.  Move it near the top of RLIMIT_NOFILE.
 */
static int fd_out_of_the_way(int fd)
{
	struct rlimit rl;
	int high;

	if (fd < 0 || getrlimit(RLIMIT_NOFILE, &rl) || rl.rlim_cur < 256)
		return fd;
	high = fcntl(fd, F_DUPFD_CLOEXEC,
		     (int)((rl.rlim_cur > 65536 ? 65536 : rl.rlim_cur) - 64));
	if (high < 0)
		return fd;
	close(fd);
	return high;
}

void vm_init(void)
{
	pthread_once(&opened_here_once, map_opened_here);
}

/*
 * At load: a mapping made later, at the first registration, could take the
 * address of memory the application just unmapped, or show up between two
 * counts of its VMAs.
 */
__attribute__((constructor)) static void vm_load(void)
{
	vm_init();
}

static int cached_fd_get(struct cached_fd *c, bool reopen)
{
	pid_t pid;
	int fd;

	pthread_once(&opened_here_once, map_opened_here);
	if (!reopen && opened_here && __atomic_load_n(&opened_here[c->slot], __ATOMIC_ACQUIRE))
		return __atomic_load_n(&c->fd, __ATOMIC_RELAXED);
	pid = getpid();
	pthread_mutex_lock(&fd_lock);
	fd = c->fd;
	if (fd >= 0 && (reopen || c->pid != pid)) {
		if (c->pid == pid)
			close(fd);	/* a child's copy is closed by it as well: fine */
		fd = -1;
	}
	if (fd < 0) {
		fd = fd_out_of_the_way(open(c->path, O_RDONLY | O_CLOEXEC));
		c->pid = pid;
	}
	__atomic_store_n(&c->fd, fd, __ATOMIC_RELAXED);
	if (fd >= 0 && opened_here)
		__atomic_store_n(&opened_here[c->slot], 1, __ATOMIC_RELEASE);
	pthread_mutex_unlock(&fd_lock);
	return fd;
}

static void vma_from_query(const struct procmap_query *q, struct vma_info *v)
{
	v->start = (uintptr_t)q->vma_start;
	v->end = (uintptr_t)q->vma_end;
	v->flags = 0;
	if (q->vma_flags & PROCMAP_QUERY_VMA_READABLE)
		v->flags |= VMA_READ;
	if (q->vma_flags & PROCMAP_QUERY_VMA_WRITABLE)
		v->flags |= VMA_WRITE;
	if (q->vma_flags & PROCMAP_QUERY_VMA_EXECUTABLE)
		v->flags |= VMA_EXEC;
	if (q->vma_flags & PROCMAP_QUERY_VMA_SHARED)
		v->flags |= VMA_SHARED;
	if (q->inode)
		v->flags |= VMA_FILE;
	v->page_size = (size_t)q->vma_page_size;
	if (!v->page_size)
		v->page_size = vm_base_page_size();
	/* vma_kernel_pagesize(): larger than a base page only on hugetlb. */
	if (v->page_size > vm_base_page_size())
		v->flags |= VMA_HUGETLB;
}

/*
 * The VMA containing @addr, or with @next the first one ending above it.
 * Return 0, -ENOENT (none), -ENOTTY (no PROCMAP_QUERY here), or -errno.
 */
static int pmq_query(uintptr_t addr, bool next, struct vma_info *v)
{
	struct procmap_query q;
	bool retried = false;
	int fd, err;

	for (;;) {
		fd = cached_fd_get(&maps_fd, retried);
		if (fd < 0)
			return -errno;
		q = (struct procmap_query){
			.size = sizeof(q),
			.query_flags = next ? PROCMAP_QUERY_COVERING_OR_NEXT_VMA : 0,
			.query_addr = addr,
		};
		if (ioctl(fd, PROCMAP_QUERY, &q) == 0)
			break;
		err = errno;
		if (err == ENOENT)
			return -ENOENT;
		if (!retried && (err == EBADF || err == ENOTTY || err == EINVAL) &&
		    pmq_supported > 0) {
			retried = true;	/* our descriptor was closed or reused */
			continue;
		}
		if (err == ENOTTY || err == EINVAL) {
			if (!pmq_supported)
				pmq_supported = -1;	/* before 6.11: parse maps */
			return -ENOTTY;
		}
		return -err;
	}
	pmq_supported = 1;
	vma_from_query(&q, v);
	return 0;
}

bool vm_has_procmap_query(void)
{
	struct vma_info v;

	if (!pmq_supported)
		pmq_query((uintptr_t)&v, false, &v);	/* our stack: always mapped */
	return pmq_supported > 0;
}

void vm_force_source(enum vm_source source)
{
	forced_source = source;
}

static bool use_pmq(void)
{
	return forced_source == VM_SOURCE_AUTO && vm_has_procmap_query();
}

/* --- /proc/self/maps and /proc/self/smaps: a cheap line parser --------- */

/*
 * Both files are streamed through a fixed buffer: no allocation, so the
 * registry can read them with its lock held.  A line handler returns false
 * to stop reading (VMAs come in address order: past the window, stop).
 */
typedef bool (*line_fn)(void *ctx, char *line, char *eol);

static int read_lines(const char *path, line_fn fn, void *ctx)
{
	char buf[8192];
	size_t fill = 0;
	int fd, ret = 0;
	bool more = true;

	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	while (more) {
		ssize_t n = read(fd, buf + fill, sizeof(buf) - fill);
		char *line = buf, *nl, *lim;

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			ret = -errno;
			break;
		}
		if (n == 0)
			break;
		fill += (size_t)n;
		lim = buf + fill;
		while (more && (nl = memchr(line, '\n', (size_t)(lim - line)))) {
			more = fn(ctx, line, nl);
			line = nl + 1;
		}
		fill = (size_t)(lim - line);
		if (fill == sizeof(buf))
			fill = 0;	/* a line longer than the buffer (a path): drop it */
		else if (fill && line != buf)
			memmove(buf, line, fill);
	}
	close(fd);
	return ret;
}

static int hexval(char c)
{
	if (c >= '0' && c <= '9')
		return c - '0';
	if (c >= 'a' && c <= 'f')
		return c - 'a' + 10;
	return -1;
}

static const char *parse_hex(const char *p, const char *eol, uintptr_t *out)
{
	const char *s = p;
	uintptr_t v = 0;
	int d;

	while (p < eol && (d = hexval(*p)) >= 0) {
		v = v << 4 | (uintptr_t)d;
		p++;
	}
	*out = v;
	return p == s ? NULL : p;
}

static const char *skip_field(const char *p, const char *eol)
{
	while (p < eol && *p != ' ')
		p++;
	while (p < eol && *p == ' ')
		p++;
	return p;
}

/*
 * "start-end perms offset dev inode   name": false if not a header.  Sets
 * @name to the name (or @eol) for the callers that care.
 */
static bool parse_header(const char *line, const char *eol, struct vma_info *v,
			 const char **name)
{
	const char *p = line;
	bool file = false;

	p = parse_hex(p, eol, &v->start);
	if (!p || p >= eol || *p++ != '-')
		return false;
	p = parse_hex(p, eol, &v->end);
	if (!p || eol - p < 6 || *p++ != ' ')
		return false;
	v->flags = 0;
	v->page_size = vm_base_page_size();
	if (p[0] == 'r')
		v->flags |= VMA_READ;
	if (p[1] == 'w')
		v->flags |= VMA_WRITE;
	if (p[2] == 'x')
		v->flags |= VMA_EXEC;
	if (p[3] == 's')
		v->flags |= VMA_SHARED;
	p = skip_field(p, eol);		/* perms */
	p = skip_field(p, eol);		/* offset */
	p = skip_field(p, eol);		/* dev */
	for (; p < eol && *p >= '0' && *p <= '9'; p++)
		if (*p != '0')
			file = true;	/* inode != 0 */
	if (file)
		v->flags |= VMA_FILE;
	while (p < eol && *p == ' ')
		p++;
	*name = p;
	return true;
}

struct vma_walk {
	uintptr_t start, end;	/* the window */
	vma_fn fn;
	void *ctx;
	int ret;
	/* smaps */
	struct vma_info cur;
	bool have_cur;
	/* maps: the window's VMAs, handed out only if no smaps is needed */
	struct vma_info *buf;
	size_t n, cap;
	bool need_smaps;
};

static void walk_emit(struct vma_walk *w)
{
	if (!w->have_cur || w->ret)
		return;
	w->have_cur = false;
	w->cur.flags |= VMA_VMFLAGS;
	w->ret = w->fn(w->ctx, &w->cur);
}

static void parse_vmflags(const char *p, const char *eol, struct vma_info *v)
{
	/* Two-letter mnemonics separated by one space. */
	for (; p + 1 < eol; p++) {
		if (p[0] == ' ')
			continue;
		switch ((p[0] << 8) | p[1]) {
		case ('d' << 8) | 'c':
			v->flags |= VMA_DONTFORK;
			break;
		case ('w' << 8) | 'f':
			v->flags |= VMA_WIPEONFORK;
			break;
		case ('h' << 8) | 't':
			v->flags |= VMA_HUGETLB;
			break;
		case ('i' << 8) | 'o':
		case ('p' << 8) | 'f':
			v->flags |= VMA_IO;
			break;
		default:
			break;
		}
		p += 2;		/* the token and the space after it */
	}
}

static bool smaps_line(void *ctx, char *line, char *eol)
{
	struct vma_walk *w = ctx;
	struct vma_info v;
	const char *name;

	switch (line[0]) {
	case 'K':
		if (w->have_cur && eol - line > 15 && !memcmp(line, "KernelPageSize:", 15)) {
			uintptr_t kb = 0;

			for (const char *p = line + 15; p < eol; p++)
				if (*p >= '0' && *p <= '9')
					kb = kb * 10 + (uintptr_t)(*p - '0');
			w->cur.page_size = kb * 1024;
		}
		return true;
	case 'V':
		if (w->have_cur && eol - line >= 8 && !memcmp(line, "VmFlags:", 8)) {
			bool last = w->cur.end >= w->end;

			parse_vmflags(line + 8, eol, &w->cur);
			walk_emit(w);
			/* Done: reading on would make the kernel walk the next VMA. */
			if (last)
				return false;
		}
		return !w->ret;
	default:
		if (hexval(line[0]) < 0 || !parse_header(line, eol, &v, &name))
			return true;
		walk_emit(w);	/* a kernel without VmFlags: emit what we have */
		if (w->ret || v.start >= w->end)
			return false;
		if (v.end > w->start) {
			w->cur = v;
			w->have_cur = true;
		}
		return true;
	}
}

static unsigned long smaps_reads;

unsigned long vm_smaps_reads(void)
{
	return __atomic_load_n(&smaps_reads, __ATOMIC_RELAXED);
}

int vm_for_each_vma_smaps(uintptr_t start, uintptr_t end, vma_fn fn, void *ctx)
{
	struct vma_walk w = { .start = start, .end = end, .fn = fn, .ctx = ctx };
	int ret;

	__atomic_add_fetch(&smaps_reads, 1, __ATOMIC_RELAXED);
	ret = read_lines("/proc/self/smaps", smaps_line, &w);

	if (!ret)
		walk_emit(&w);
	return ret ? ret : w.ret;
}

static bool maps_line(void *ctx, char *line, char *eol)
{
	struct vma_walk *w = ctx;
	struct vma_info v;
	const char *name;

	if (!parse_header(line, eol, &v, &name))
		return true;
	if (v.start >= w->end)
		return false;
	if (v.end <= w->start)
		return true;
	/*
	 * maps shows no page size: a hugetlbfs file looks like any other file.
	 * Anonymous VMAs (inode 0) are base pages, except the kernel's special
	 * mappings ([vvar], [vdso], ...: VM_IO / VM_PFNMAP for some): smaps.
	 */
	if ((v.flags & VMA_FILE) || (eol - name >= 2 && name[0] == '[' && name[1] == 'v') ||
	    w->n == w->cap) {
		w->need_smaps = true;
		return false;
	}
	w->buf[w->n++] = v;
	return true;
}

static int for_each_vma_maps(uintptr_t start, uintptr_t end, vma_fn fn, void *ctx)
{
	struct vma_info buf[16];
	struct vma_walk w = { .start = start, .end = end, .buf = buf, .cap = 16 };
	int ret = read_lines("/proc/self/maps", maps_line, &w);

	if (ret)
		return ret;
	if (w.need_smaps)
		return vm_for_each_vma_smaps(start, end, fn, ctx);
	for (size_t i = 0; i < w.n; i++) {
		ret = fn(ctx, &buf[i]);
		if (ret)
			return ret;
	}
	return 0;
}

int vm_for_each_vma(uintptr_t start, uintptr_t end, vma_fn fn, void *ctx)
{
	uintptr_t addr = start;
	struct vma_info v;
	int ret;

	if (forced_source == VM_SOURCE_SMAPS)
		return vm_for_each_vma_smaps(start, end, fn, ctx);
	if (!use_pmq())
		return for_each_vma_maps(start, end, fn, ctx);
	while (addr < end) {
		ret = pmq_query(addr, true, &v);
		if (ret == -ENOENT)
			break;
		if (ret == -ENOTTY && addr == start)
			return for_each_vma_maps(start, end, fn, ctx);
		if (ret)
			return ret;
		if (v.start >= end)
			break;
		ret = fn(ctx, &v);
		if (ret)
			return ret;
		addr = v.end;
	}
	return 0;
}

static int take_first(void *ctx, const struct vma_info *vma)
{
	*(struct vma_info *)ctx = *vma;
	return 1;
}

int vm_vma_at(uintptr_t addr, struct vma_info *vma)
{
	int ret;

	if (use_pmq()) {
		ret = pmq_query(addr, false, vma);
		if (ret != -ENOTTY)
			return ret;
	}
	vma->start = vma->end = 0;
	ret = vm_for_each_vma(addr, addr + 1, take_first, vma);
	if (ret < 0)
		return ret;
	return ret == 1 && vma->start <= addr ? 0 : -ENOENT;
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
static bool populate_always;

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

void vm_force_populate_always(bool force)
{
	populate_always = force;
}

#define PM_PRESENT	(1ull << 63)
#define PM_SWAPPED	(1ull << 62)
#define PM_FILE		(1ull << 61)
#define PM_EXCLUSIVE	(1ull << 56)

/*
 * A locked read-modify-write of one byte per page: a write fault where the
 * PTE is not writable, that stores back exactly what another thread last
 * wrote.  The zero is hidden from the optimizer: clang turns an atomic add
 * of a constant 0 into "mfence; load", which takes no write fault and
 * leaves copy-on-write unbroken.  Only on memory known to be writable: a
 * read-only page raises SIGSEGV.
 */
SP_NO_SANITIZE_ADDRESS
static void touch_for_write(uintptr_t start, uintptr_t end, size_t page_size)
{
	for (uintptr_t p = start; p < end; p += page_size) {
		unsigned char zero = 0;

		__asm__ volatile("" : "+r"(zero));
		__atomic_fetch_add((volatile unsigned char *)p, zero, __ATOMIC_RELAXED);
	}
}

SP_NO_SANITIZE_ADDRESS
static void touch_for_read(uintptr_t start, uintptr_t end, size_t page_size)
{
	for (uintptr_t p = start; p < end; p += page_size)
		(void)*(volatile const unsigned char *)p;
}

/*
 * Whether every base page of [start, end) is present and, for @write, an
 * anonymous page mapped only here: all a write pre-fault could still do
 * is make a write-protected PTE writable (vm_populate() does that with a
 * store).  One pread of /proc/self/pagemap per 512 pages instead of a GUP
 * walk per page (MADV_POPULATE_WRITE costs ~0.1 us per present page here).
 * The shared zero page is never exclusive; a COW page still shared with a
 * child is not; a private file page not yet copied is PM_FILE.  Return 1
 * (ready), 0 (fault in; also when pagemap may not be opened: a setuid
 * process is not dumpable and its pagemap is root's 0400) or -errno when
 * the file cannot be opened for another reason (EMFILE...).
 */
static int pages_ready(uintptr_t start, uintptr_t end, bool write)
{
	static pid_t denied;	/* a setuid process may not open its own pagemap */
	const size_t ps = vm_base_page_size();
	uint64_t e[512];
	int fd;

	if (denied && denied == getpid())
		return 0;
	fd = cached_fd_get(&pagemap_fd, false);
	if (fd < 0) {
		if (errno != EACCES && errno != EPERM)
			return -errno;
		denied = getpid();
		return 0;	/* no permission (not dumpable): fault in as always */
	}
	while (start < end) {
		size_t n = (end - start) / ps;
		ssize_t got;

		if (n > 512)
			n = 512;
		got = pread(fd, e, n * sizeof(e[0]), (off_t)(start / ps * sizeof(e[0])));
		if (got != (ssize_t)(n * sizeof(e[0])))
			return 0;
		for (size_t i = 0; i < n; i++) {
			if ((e[i] & (PM_PRESENT | PM_SWAPPED)) != PM_PRESENT)
				return 0;
			if (write && (e[i] & (PM_EXCLUSIVE | PM_FILE)) != PM_EXCLUSIVE)
				return 0;
		}
		start += n * ps;
	}
	return 1;
}

int vm_pages_exclusive(uintptr_t start, uintptr_t end)
{
	return populate_always ? 0 : pages_ready(start, end, true);
}

static atomic_bool cow_child_seen;

void vm_note_cow_child(void)
{
	atomic_store_explicit(&cow_child_seen, true, memory_order_relaxed);
}

bool vm_cow_child_seen(void)
{
	return atomic_load_explicit(&cow_child_seen, memory_order_relaxed);
}

void vm_write_fault_present(uintptr_t start, uintptr_t end)
{
	const size_t ps = vm_base_page_size();
	uint64_t e[512];
	int fd = cached_fd_get(&pagemap_fd, false);

	if (fd < 0)
		return;
	while (start < end) {
		size_t n = (end - start) / ps;
		ssize_t got;

		if (n > 512)
			n = 512;
		got = pread(fd, e, n * sizeof(e[0]), (off_t)(start / ps * sizeof(e[0])));
		if (got != (ssize_t)(n * sizeof(e[0])))
			return;
		for (size_t i = 0; i < n; i++)
			if (e[i] & PM_PRESENT)
				touch_for_write(start + i * ps, start + (i + 1) * ps, ps);
		start += n * ps;
	}
}

int vm_populate(uintptr_t start, uintptr_t end, bool write, size_t page_size)
{
	if (page_size == vm_base_page_size() && !populate_always) {
		int ready = pages_ready(start, end, write);

		if (ready < 0)
			return ready;
		/*
		 * Present and ours alone is not yet write-faulted: after a
		 * fork whose child is gone, or an mprotect() round trip on
		 * older kernels, the PTE is still write-protected.  A
		 * read-only pin then holds the page the next CPU write copies
		 * away from (5.10, and FOLL_GET pinners on any kernel).  No
		 * system call: a writable PTE takes no fault at all.
		 */
		if (ready) {
			if (write)
				touch_for_write(start, end, page_size);
			return 0;
		}
	}
	if (vm_has_populate())
		return vm_madvise(start, end, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ);
	if (write)
		touch_for_write(start, end, page_size);
	else
		touch_for_read(start, end, page_size);
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

/* --- growable VMA arrays (the registry's and the audit's) ----------------- */

int vma_push(struct vma_info **v, size_t *n, size_t *cap, const struct vma_info *vma)
{
	if (*n == *cap) {
		size_t ncap = *cap ? 2 * *cap : 8;
		struct vma_info *nv = realloc(*v, ncap * sizeof(*nv));

		if (!nv)
			return -ENOMEM;
		*v = nv;
		*cap = ncap;
	}
	(*v)[(*n)++] = *vma;
	return 0;
}

int vma_vec_collect(void *ctx, const struct vma_info *vma)
{
	struct vma_vec *l = ctx;

	return vma_push(&l->v, &l->n, &l->cap, vma);
}

size_t vma_vec_first_after(const struct vma_vec *l, uintptr_t addr)
{
	size_t lo = 0, hi = l->n;

	while (lo < hi) {
		size_t mid = lo + (hi - lo) / 2;

		if (l->v[mid].end <= addr)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo;
}
