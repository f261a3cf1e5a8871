// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The kernel probe: what this kernel does with pinned pages at fork, found
 * by experiment rather than by version number (distributions backport).
 *
 * Copy-on-fork experiment, for one page of private anonymous memory and
 * one huge page of MAP_HUGETLB memory:
 *
 *   1. map the page, fill it with pattern A;
 *   2. pin it with io_uring fixed buffers (io_uring_register_buffers() is
 *      pin_user_pages(FOLL_WRITE | FOLL_LONGTERM), the pin RDMA and VFIO
 *      take too), and check the pin works: WRITE_FIXED into a memfd reads A;
 *   3. fork a child that only waits (it never touches the page);
 *   4. the parent writes pattern B into the page;
 *   5. "device reads": IORING_OP_WRITE_FIXED from the fixed buffer into a
 *      memfd, read the memfd back.  B: the pin points at the parent's page.
 *      A: the parent's write moved it to a new page (copy-on-write) and the
 *      pin stayed on the old one, which the child now owns;
 *   6. "device writes": put pattern C in the memfd, IORING_OP_READ_FIXED
 *      into the fixed buffer, and the parent reads the page.  C: fine; B:
 *      the device's write went to a page the parent no longer maps.
 *
 * A kernel that copies pinned pages into the child at fork ("early COW",
 * 5.9 for anonymous memory; hugetlb later) passes both.  No root, no RDMA.
 *
 * liburing (Debian's liburing-dev) sets up the rings: it is maintained with
 * the kernel's io_uring and spares us hand-written ring mmap and barriers.
 *
 * The child is a raw clone(SIGCHLD) rather than fork(): no pthread_atfork
 * handler runs (neither the application's nor ours, so the probe works even
 * while the caller holds the fork guard), and the child only makes raw
 * system calls before exiting.
 */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <signal.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <liburing.h>

#include <safepin/safepin.h>

#include "probe.h"
#include "vm.h"

#ifndef MAP_HUGE_SHIFT
#define MAP_HUGE_SHIFT 26
#endif
#ifndef MADV_WIPEONFORK
#define MADV_WIPEONFORK 18
#endif

#define PROBE_BYTES 4096u	/* bytes moved through the pin */
#define REASON_LEN 160

enum { PAT_A = 0xa5, PAT_B = 0x5b, PAT_C = 0xc3 };

static pthread_once_t probe_once = PTHREAD_ONCE_INIT;
static struct safepin_kernel_info cached;
static char anon_reason[REASON_LEN];
static char hugetlb_reason[REASON_LEN];
static char release[sizeof(((struct utsname *)0)->release)];

static int reasonf(char *buf, int result, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));

static int reasonf(char *buf, int result, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vsnprintf(buf, REASON_LEN, fmt, ap);
	va_end(ap);
	return result;
}

/* Every byte of @p equals @c. */
static bool all_bytes(const volatile unsigned char *p, size_t len, unsigned char c)
{
	for (size_t i = 0; i < len; i++)
		if (p[i] != c)
			return false;
	return true;
}

static void fill(volatile unsigned char *p, size_t len, unsigned char c)
{
	for (size_t i = 0; i < len; i++)
		p[i] = c;
}

/* One fixed-buffer I/O between buffer 0 and @fd at offset 0. */
static int fixed_io(struct io_uring *ring, bool write, int fd, void *buf, unsigned len)
{
	struct io_uring_sqe *sqe = io_uring_get_sqe(ring);
	struct io_uring_cqe *cqe;
	int ret;

	if (!sqe)
		return -EBUSY;
	if (write)
		io_uring_prep_write_fixed(sqe, fd, buf, len, 0, 0);
	else
		io_uring_prep_read_fixed(sqe, fd, buf, len, 0, 0);
	ret = io_uring_submit_and_wait(ring, 1);
	if (ret < 0)
		return ret;
	ret = io_uring_wait_cqe(ring, &cqe);
	if (ret < 0)
		return ret;
	ret = cqe->res;
	io_uring_cqe_seen(ring, cqe);
	if (ret >= 0 && (unsigned)ret != len)
		return -EIO;
	return ret < 0 ? ret : 0;
}

/* What the pin shows: the device reads the page into @fd, we read it back. */
static int device_reads(struct io_uring *ring, int fd, void *buf, unsigned char *out)
{
	int ret = fixed_io(ring, true, fd, buf, PROBE_BYTES);
	ssize_t n;

	if (ret)
		return ret;
	n = pread(fd, out, PROBE_BYTES, 0);
	if (n != (ssize_t)PROBE_BYTES)
		return n < 0 ? -errno : -EIO;
	return 0;
}

/* The device writes @c into the page through the pin. */
static int device_writes(struct io_uring *ring, int fd, void *buf, unsigned char c)
{
	unsigned char tmp[PROBE_BYTES];

	ssize_t n;

	memset(tmp, c, sizeof(tmp));
	n = pwrite(fd, tmp, sizeof(tmp), 0);
	if (n != (ssize_t)sizeof(tmp))
		return n < 0 ? -errno : -EIO;
	return fixed_io(ring, false, fd, buf, PROBE_BYTES);
}

/*
 * A child that shares our memory the way fork() does and waits until
 * @wait_fd reports EOF (our end closed, or we died) or it is killed.
 */
static pid_t spawn_waiting_child(int wait_fd, int wake_fd)
{
	long pid;

	vm_note_cow_child();
#if defined(__s390__) || defined(__CRIS__)
	pid = syscall(SYS_clone, 0L, (long)SIGCHLD, 0L, 0L, 0L);
#else
	pid = syscall(SYS_clone, (long)SIGCHLD, 0L, 0L, 0L, 0L);
#endif
	if (pid == 0) {
		char c;

		/* Raw system calls only: this is not a glibc fork. */
		syscall(SYS_close, (long)wake_fd);
		syscall(SYS_read, (long)wait_fd, &c, 1L);
		syscall(SYS_exit_group, 0L);
		__builtin_unreachable();
	}
	return (pid_t)pid;
}

/*
 * The experiment on @len bytes at @buf (already mapped).  Returns 1, 0 or
 * -1 with @reason filled in.
 */
static int copy_experiment(unsigned char *buf, size_t len, const char *what, char *reason)
{
	struct io_uring ring;
	struct iovec iov = { .iov_base = buf, .iov_len = len < PROBE_BYTES ? len : PROBE_BYTES };
	unsigned char *seen = NULL;
	int memfd = -1, sync[2] = { -1, -1 };
	pid_t child = -1;
	int ret, result = -1;

	fill(buf, iov.iov_len, PAT_A);
	ret = io_uring_queue_init(4, &ring, 0);
	if (ret < 0)
		return reasonf(reason, -1, "io_uring unavailable: io_uring_setup: %s", strerror(-ret));
	ret = io_uring_register_buffers(&ring, &iov, 1);
	if (ret < 0) {
		reasonf(reason, -1, "cannot pin %s memory with io_uring fixed buffers: %s%s", what,
			strerror(-ret), ret == -ENOMEM ? " (RLIMIT_MEMLOCK?)" : "");
		goto out_ring;
	}
	memfd = (int)syscall(SYS_memfd_create, "safepin-probe", 1u /* MFD_CLOEXEC */);
	seen = malloc(PROBE_BYTES);
	if (memfd < 0 || !seen) {
		reasonf(reason, -1, "memfd_create: %s", strerror(errno));
		goto out;
	}
	ret = device_reads(&ring, memfd, buf, seen);
	if (ret || !all_bytes(seen, PROBE_BYTES, PAT_A)) {
		reasonf(reason, -1, "io_uring fixed-buffer I/O does not see the buffer%s%s",
			ret ? ": " : "", ret ? strerror(-ret) : "");
		goto out;
	}

	if (pipe2(sync, O_CLOEXEC)) {
		reasonf(reason, -1, "pipe2: %s", strerror(errno));
		goto out;
	}
	child = spawn_waiting_child(sync[0], sync[1]);
	if (child < 0) {
		if (errno == ENOMEM && strcmp(what, "hugetlb") == 0)
			/* A kernel that copies the pinned huge page into the
			 * child needs a second free huge page, or fork fails. */
			reasonf(reason, -1, "fork failed with ENOMEM: copying the pinned huge "
				"page into the child needs a second free huge page");
		else
			reasonf(reason, -1, "clone: %s", strerror(errno));
		goto out;
	}

	/* The parent writes: on a sharing kernel this breaks COW away from the pin. */
	fill(buf, PROBE_BYTES, PAT_B);
	ret = device_reads(&ring, memfd, buf, seen);
	if (ret) {
		reasonf(reason, -1, "WRITE_FIXED after fork: %s", strerror(-ret));
		goto out;
	}
	if (all_bytes(seen, PROBE_BYTES, PAT_A)) {
		result = reasonf(reason, 0, "pinned %s page shared with the child at fork: after "
				 "a parent write the pin reads stale data", what);
		goto out;
	}
	if (!all_bytes(seen, PROBE_BYTES, PAT_B)) {
		reasonf(reason, -1, "unexpected data through the pin after fork");
		goto out;
	}
	ret = device_writes(&ring, memfd, buf, PAT_C);
	if (ret) {
		reasonf(reason, -1, "READ_FIXED after fork: %s", strerror(-ret));
		goto out;
	}
	if (all_bytes(buf, PROBE_BYTES, PAT_C))
		result = reasonf(reason, 1, "pinned %s page stays with the parent at fork "
				 "(io_uring fixed buffer: reads and writes through the pin "
				 "reach the parent)", what);
	else if (all_bytes(buf, PROBE_BYTES, PAT_B))
		result = reasonf(reason, 0, "pinned %s page shared with the child at fork: "
				 "writes through the pin are lost to the parent", what);
	else
		reasonf(reason, -1, "unexpected data in the parent after a write through the pin");
out:
	if (child > 0) {
		close(sync[1]);
		sync[1] = -1;
		kill(child, SIGKILL);
		while (waitpid(child, NULL, 0) < 0 && errno == EINTR)
			;
	}
	if (sync[0] >= 0)
		close(sync[0]);
	if (sync[1] >= 0)
		close(sync[1]);
	if (memfd >= 0)
		close(memfd);
	free(seen);
	io_uring_unregister_buffers(&ring);
out_ring:
	io_uring_queue_exit(&ring);
	return result;
}

static int probe_anon(char *reason)
{
	size_t ps = vm_base_page_size();
	unsigned char *p = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int ret;

	if (p == MAP_FAILED)
		return reasonf(reason, -1, "mmap: %s", strerror(errno));
	madvise(p, ps, MADV_NOHUGEPAGE);	/* a plain 4 KiB page, whatever THP says */
	ret = copy_experiment(p, ps, "anonymous", reason);
	munmap(p, ps);
	return ret;
}

static unsigned log2_size(size_t v)
{
	unsigned n = 0;

	while (v > 1) {
		v >>= 1;
		n++;
	}
	return n;
}

static int probe_hugetlb(const struct safepin_kernel_info *info, char *reason)
{
	size_t hps;
	unsigned char *p;
	int ret;

	if (!info->nr_huge_page_sizes)
		return reasonf(reason, -1, "the kernel has no huge page sizes (no hugetlbfs)");
	hps = info->huge_page_sizes[0];
	p = mmap(NULL, hps, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB | (int)(log2_size(hps) << MAP_HUGE_SHIFT),
		 -1, 0);
	if (p == MAP_FAILED)
		return reasonf(reason, -1, "no free %zu KiB huge page to test with (mmap: %s; "
			       "see vm.nr_hugepages)", hps >> 10, strerror(errno));
	ret = copy_experiment(p, hps, "hugetlb", reason);
	munmap(p, hps);
	return ret;
}

static int probe_wipeonfork(void)
{
	size_t ps = vm_base_page_size();
	void *p = mmap(NULL, ps, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	int ret;

	if (p == MAP_FAILED)
		return -1;
	ret = madvise(p, ps, MADV_WIPEONFORK) == 0 ? 1 : errno == EINVAL ? 0 : -1;
	munmap(p, ps);
	return ret;
}

static int cmp_size(const void *a, const void *b)
{
	size_t x = *(const size_t *)a, y = *(const size_t *)b;

	return x < y ? -1 : x > y;
}

static void probe_huge_sizes(struct safepin_kernel_info *info)
{
	DIR *d = opendir("/sys/kernel/mm/hugepages");
	struct dirent *e;

	if (!d)
		return;
	while ((e = readdir(d)) && info->nr_huge_page_sizes < SAFEPIN_MAX_HUGE_PAGE_SIZES) {
		unsigned long kb;
		char tail;

		if (sscanf(e->d_name, "hugepages-%lukB%c", &kb, &tail) == 1 && kb)
			info->huge_page_sizes[info->nr_huge_page_sizes++] = (size_t)kb << 10;
	}
	closedir(d);
	qsort(info->huge_page_sizes, info->nr_huge_page_sizes, sizeof(size_t), cmp_size);
}

static void probe_all(void)
{
	struct safepin_kernel_info *info = &cached;
	struct utsname u;

	info->size = sizeof(*info);
	if (uname(&u) == 0)
		snprintf(release, sizeof(release), "%s", u.release);
	info->kernel_release = release;
	info->populate_write = vm_has_populate();
	info->wipeonfork = probe_wipeonfork();
	probe_huge_sizes(info);
	info->copy_on_fork_anon = probe_anon(anon_reason);
	info->copy_on_fork_hugetlb = probe_hugetlb(info, hugetlb_reason);
	info->copy_on_fork_anon_reason = anon_reason;
	info->copy_on_fork_hugetlb_reason = hugetlb_reason;
}

const struct safepin_kernel_info *probe_kernel(void)
{
	int saved = errno;

	pthread_once(&probe_once, probe_all);
	errno = saved;
	return &cached;
}

bool probe_copies_on_fork(bool hugetlb)
{
	const struct safepin_kernel_info *info = probe_kernel();

	return (hugetlb ? info->copy_on_fork_hugetlb : info->copy_on_fork_anon) == 1;
}

SAFEPIN_EXPORT int safepin_probe(struct safepin_kernel_info *info)
{
	const struct safepin_kernel_info *all;
	size_t size;

	if (!info || info->size < offsetof(struct safepin_kernel_info, copy_on_fork_hugetlb)) {
		errno = EINVAL;
		return -EINVAL;
	}
	all = probe_kernel();
	size = info->size < sizeof(*all) ? info->size : sizeof(*all);
	memcpy((char *)info + sizeof(info->size), (const char *)all + sizeof(all->size),
	       size - sizeof(all->size));
	return 0;
}
