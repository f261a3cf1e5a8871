// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * fork_demo: what happens to a buffer a device has pinned when the process
 * forks, with and without libsafepin.  The "device" is io_uring: a fixed
 * buffer is a real long-term pin of the pages (the same kernel mechanism
 * an RDMA NIC or VFIO uses), and a READ_FIXED from a pipe makes the kernel
 * write into the pinned pages the way a NIC's DMA would.
 *
 * Run it as root or with a RLIMIT_MEMLOCK large enough for the buffer.
 */
#include <errno.h>
#include <inttypes.h>
#include <liburing.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <safepin/safepin.h>

#define BUF_SIZE (256ul << 20)
#define MSG_LEN 64

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static void die(const char *what, int err)
{
	fprintf(stderr, "fork_demo: %s: %s\n", what, strerror(err));
	exit(1);
}

/* The device DMAs @msg into the pinned buffer: io_uring reads a pipe into it. */
static void device_write(struct io_uring *ring, char *buf, const char *msg)
{
	struct io_uring_sqe *sqe;
	struct io_uring_cqe *cqe;
	char padded[MSG_LEN] = { 0 };
	int fds[2];

	strncpy(padded, msg, MSG_LEN - 1);
	if (pipe(fds))
		die("pipe", errno);
	if (write(fds[1], padded, MSG_LEN) != MSG_LEN)
		die("write", errno);
	sqe = io_uring_get_sqe(ring);
	io_uring_prep_read_fixed(sqe, fds[0], buf, MSG_LEN, 0, 0);
	io_uring_submit(ring);
	if (io_uring_wait_cqe(ring, &cqe) || cqe->res != MSG_LEN)
		die("READ_FIXED", cqe ? -cqe->res : EIO);
	io_uring_cqe_seen(ring, cqe);
	close(fds[0]);
	close(fds[1]);
}

/* What the child finds at the buffer and at a heap object next to it. */
static void child_report(const char *buf, const char *heap_neighbour)
{
	unsigned char vec;

	/* mincore() fails with ENOMEM where nothing is mapped. */
	if (mincore((void *)buf, 4096, &vec) && errno == ENOMEM)
		printf("  child : the registered buffer is not mapped here (MADV_DONTFORK)\n");
	else
		printf("  child : the registered buffer is mapped here, reads \"%.20s\"\n", buf);
	printf("  child : heap object next to it reads \"%s\"\n", heap_neighbour);
	fflush(stdout);
}

static int run(const char *title, int protect)
{
	struct iovec iov;
	struct io_uring ring;
	char *buf, *neighbour;
	double t0, fork_ms;
	int status, ret;
	pid_t pid;

	printf("\n== %s ==\n", title);
	buf = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		die("mmap", errno);
	memset(buf, 'a', BUF_SIZE);
	neighbour = strdup("heap data the child still needs");

	if (protect && safepin_pin(buf, BUF_SIZE, 0))
		die("safepin_pin", errno);
	ret = io_uring_queue_init(4, &ring, 0);
	if (ret)
		die("io_uring_queue_init", -ret);
	iov = (struct iovec){ buf, BUF_SIZE };
	ret = io_uring_register_buffers(&ring, &iov, 1);
	if (ret)
		die("io_uring_register_buffers (raise ulimit -l or run as root)", -ret);
	printf("  parent: %lu MiB pinned by the device (io_uring fixed buffer)%s\n",
	       BUF_SIZE >> 20, protect ? ", registered with libsafepin" : "");

	t0 = now_ms();
	pid = fork();
	if (pid < 0)
		die("fork", errno);
	if (pid == 0) {
		child_report(buf, neighbour);
		_exit(0);
	}
	fork_ms = now_ms() - t0;
	printf("  parent: fork() took %.2f ms\n", fork_ms);
	waitpid(pid, &status, 0);

	/* The parent writes, then the device writes through its pin. */
	memcpy(buf, "parent wrote this", 18);
	device_write(&ring, buf, "the device's DMA wrote this");
	printf("  parent: after its own write and the device's, the buffer reads \"%s\"\n", buf);
	printf("  parent: %s\n", strcmp(buf, "the device's DMA wrote this") ?
	       "the device wrote into a page this process no longer maps: DATA LOST" :
	       "the device's bytes arrived: correct");

	io_uring_unregister_buffers(&ring);
	io_uring_queue_exit(&ring);
	if (protect && safepin_unpin(buf, BUF_SIZE))
		die("safepin_unpin", errno);
	munmap(buf, BUF_SIZE);
	free(neighbour);
	return 0;
}

static const char *tri(int v)
{
	return v > 0 ? "yes" : v == 0 ? "NO" : "unknown";
}

/* What this kernel does, found by experiment (safepin_probe()). */
static void print_kernel(void)
{
	struct safepin_kernel_info k = { .size = sizeof(k) };

	if (safepin_probe(&k)) {
		printf("kernel probe failed: %s\n", strerror(errno));
		return;
	}
	printf("kernel %s: copies pinned pages at fork: anonymous %s, hugetlb %s%s%s; "
	       "MADV_POPULATE_WRITE %s; MADV_WIPEONFORK %s\n", k.kernel_release,
	       tri(k.copy_on_fork_anon), tri(k.copy_on_fork_hugetlb),
	       k.copy_on_fork_hugetlb < 0 ? " -- " : "",
	       k.copy_on_fork_hugetlb < 0 ? k.copy_on_fork_hugetlb_reason : "",
	       tri(k.populate_write), tri(k.wipeonfork));
}

int main(void)
{
	struct rlimit unlimited = { RLIM_INFINITY, RLIM_INFINITY };
	struct safepin_stats st = { .size = sizeof(st) };

	setrlimit(RLIMIT_MEMLOCK, &unlimited);	/* best effort; root only */
	setvbuf(stdout, NULL, _IOLBF, 0);
	printf("libsafepin %s fork demo\n", safepin_version());
	print_kernel();
	run("without libsafepin: the kernel copies every pinned page into the child", 0);
	run("with libsafepin (policy dontfork): the pinned pages stay out of the child", 1);
	safepin_get_stats(&st);
	printf("\nlibsafepin stats: %" PRIu64 " madvise calls, %" PRIu64 " pages pre-faulted, "
	       "%" PRIu64 " live registrations\n", st.madvise_calls, st.prefaulted_pages,
	       st.live_registrations);
	return 0;
}
