// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * fork_latency: how long fork() takes, and how much memory the child gets,
 * with N bytes pinned by a device (io_uring fixed buffers: a FOLL_PIN |
 * FOLL_LONGTERM pin like RDMA's and VFIO's), for:
 *
 *   unprotected   the buffer is only pinned; a kernel that copies pinned
 *                 pages at fork (5.9+) copies all of it into the child
 *   dontfork      safepin_pin() with the default policy (MADV_DONTFORK)
 *   zero-fill     safepin_pin() with SAFEPIN_POLICY_ZERO_FILL (WIPEONFORK)
 *   kernel-copy   safepin_pin() with SAFEPIN_POLICY_KERNEL_COPY (only
 *                 where safepin_probe() proved the kernel copies; the same
 *                 work as unprotected)
 *
 * Every fork is a glibc fork(), so libsafepin's pthread_atfork handlers
 * run and are part of the time.  The latency is the parent's wall time in
 * fork(); the child's memory comes from /proc/<child>/smaps_rollup while
 * the child waits.  The median of several forks is reported (min and max
 * in the TSV): the first fork that makes the kernel copy gigabytes can be
 * much slower than the next ones on a VM whose guest-physical memory is
 * backed lazily by the host.
 *
 *   fork_latency [-s SIZES] [-m MODES] [-r REPS] [-R BIG_REPS]
 *                [-t TSV] [-M MARKDOWN]
 *
 *   -s  comma-separated sizes with K/M/G suffix (default 0,64M,1G,4G)
 *   -m  comma-separated modes (default unprotected,dontfork,zero-fill,kernel-copy)
 *   -r  forks per cell (default 15)
 *   -R  forks per cell where the kernel copies >= 1 GiB (default 3)
 *   -t  also write the results as tab-separated values (for gnuplot)
 *   -M  also write the tables as markdown
 *
 * Big buffers need RLIMIT_MEMLOCK (io_uring accounts pinned pages without
 * CAP_IPC_LOCK): the limit is raised to its hard limit, to infinity as root.
 */
#include <errno.h>
#include <inttypes.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/uio.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <liburing.h>

#include <safepin/safepin.h>

#define MAX_SIZES 16
#define MAX_REPS 101
#define IOV_MAX_LEN (1ul << 30)	/* io_uring: at most 1 GiB per fixed buffer */

enum mode { UNPROTECTED, DONTFORK, ZERO_FILL, KERNEL_COPY, NR_MODES };

static const char *const mode_names[NR_MODES] = {
	"unprotected", "dontfork", "zero-fill", "kernel-copy",
};

struct cell {
	bool done;
	char note[96];		/* why not measured */
	int reps;
	double median_ms, min_ms, max_ms;
	uint64_t child_rss_kib, child_private_kib;
};

static size_t sizes[MAX_SIZES];
static int nr_sizes;
static bool modes[NR_MODES];
static int reps = 15, big_reps = 3;
static struct cell cells[MAX_SIZES][NR_MODES];

static void die(const char *what, int err)
{
	fprintf(stderr, "fork_latency: %s: %s\n", what, strerror(err));
	exit(1);
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static size_t parse_size(const char *s)
{
	char *end;
	unsigned long long v = strtoull(s, &end, 10);

	switch (*end) {
	case 'K': case 'k': v <<= 10; end++; break;
	case 'M': case 'm': v <<= 20; end++; break;
	case 'G': case 'g': v <<= 30; end++; break;
	}
	if (end == s || *end) {
		fprintf(stderr, "fork_latency: bad size '%s'\n", s);
		exit(2);
	}
	return (size_t)v;
}

static void parse_list(char *arg, bool is_size)
{
	for (char *tok = strtok(arg, ","); tok; tok = strtok(NULL, ",")) {
		if (is_size) {
			if (nr_sizes == MAX_SIZES)
				die("too many sizes", E2BIG);
			sizes[nr_sizes++] = parse_size(tok);
			continue;
		}
		int m;

		for (m = 0; m < NR_MODES; m++)
			if (!strcmp(tok, mode_names[m]))
				break;
		if (m == NR_MODES) {
			fprintf(stderr, "fork_latency: unknown mode '%s'\n", tok);
			exit(2);
		}
		modes[m] = true;
	}
}

static void size_label(size_t v, char *buf, size_t len)
{
	if (!v)
		snprintf(buf, len, "0");
	else if (!(v & ((1ul << 30) - 1)))
		snprintf(buf, len, "%zu GiB", v >> 30);
	else if (!(v & ((1ul << 20) - 1)))
		snprintf(buf, len, "%zu MiB", v >> 20);
	else
		snprintf(buf, len, "%zu KiB", v >> 10);
}

static int cmp_double(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

/* Rss and Private_Dirty of @pid in KiB. */
static void child_memory(pid_t pid, uint64_t *rss, uint64_t *priv)
{
	char path[64], line[256];
	FILE *f;

	*rss = *priv = 0;
	snprintf(path, sizeof(path), "/proc/%d/smaps_rollup", (int)pid);
	f = fopen(path, "re");
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		sscanf(line, "Rss: %" SCNu64, rss);
		sscanf(line, "Private_Dirty: %" SCNu64, priv);
	}
	fclose(f);
}

/* Fork @n times; the child waits until we looked at its memory. */
static void measure(struct cell *c, int n)
{
	double t[MAX_REPS];

	for (int i = 0; i < n; i++) {
		int sync[2];
		double t0;
		pid_t pid;
		char b;

		if (pipe(sync))
			die("pipe", errno);
		t0 = now_ms();
		pid = fork();
		if (pid < 0)
			die("fork", errno);
		if (pid == 0) {
			close(sync[1]);
			if (read(sync[0], &b, 1) < 0)
				_exit(1);
			_exit(0);
		}
		t[i] = now_ms() - t0;
		close(sync[0]);
		if (i == 0)
			child_memory(pid, &c->child_rss_kib, &c->child_private_kib);
		close(sync[1]);
		while (waitpid(pid, NULL, 0) < 0 && errno == EINTR)
			;
	}
	qsort(t, (size_t)n, sizeof(double), cmp_double);
	c->reps = n;
	c->median_ms = n % 2 ? t[n / 2] : (t[n / 2 - 1] + t[n / 2]) / 2;
	c->min_ms = t[0];
	c->max_ms = t[n - 1];
	c->done = true;
}

static int register_buffers(struct io_uring *ring, void *buf, size_t len)
{
	size_t n = (len + IOV_MAX_LEN - 1) / IOV_MAX_LEN;
	struct iovec *iov = calloc(n, sizeof(*iov));
	int ret;

	if (!iov)
		return -ENOMEM;
	for (size_t i = 0; i < n; i++) {
		iov[i].iov_base = (char *)buf + i * IOV_MAX_LEN;
		iov[i].iov_len = len - i * IOV_MAX_LEN < IOV_MAX_LEN ? len - i * IOV_MAX_LEN
								     : IOV_MAX_LEN;
	}
	ret = io_uring_register_buffers(ring, iov, (unsigned)n);
	free(iov);
	return ret;
}

static void run_cell(int si, enum mode m, void *buf)
{
	static const enum safepin_policy policy[NR_MODES] = {
		[DONTFORK] = SAFEPIN_POLICY_DONTFORK,
		[ZERO_FILL] = SAFEPIN_POLICY_ZERO_FILL,
		[KERNEL_COPY] = SAFEPIN_POLICY_KERNEL_COPY,
	};
	struct cell *c = &cells[si][m];
	size_t len = sizes[si];
	bool copies = m == UNPROTECTED || m == KERNEL_COPY;
	struct io_uring ring;
	bool pinned = false, registered = false;
	int ret;

	if (m != UNPROTECTED) {
		ret = safepin_set_policy(policy[m]);
		if (ret) {
			snprintf(c->note, sizeof(c->note), "n/a (%s)", strerror(-ret));
			return;
		}
	}
	ret = io_uring_queue_init(4, &ring, 0);
	if (ret < 0)
		die("io_uring_queue_init", -ret);
	if (len) {
		if (m != UNPROTECTED) {
			safepin_fork_guard_enter();
			ret = safepin_pin(buf, len, 0);
			if (ret)
				die("safepin_pin", -ret);
			pinned = true;
		}
		ret = register_buffers(&ring, buf, len);
		if (m != UNPROTECTED)
			safepin_fork_guard_exit();
		if (ret < 0)
			die("io_uring_register_buffers (RLIMIT_MEMLOCK?)", -ret);
		registered = true;
	}
	fprintf(stderr, "  %-12s ...", mode_names[m]);
	/*
	 * Let the previous cell's deferred work finish first (io_uring drops
	 * big buffer registrations and exited children free their copies in
	 * the background; on 2 CPUs that shows up in a 40 us fork).  Cheap
	 * cells get one discarded warm-up fork.
	 */
	sleep(1);
	if (copies && len >= (1ul << 30)) {
		measure(c, big_reps);
	} else {
		measure(c, 1);
		measure(c, reps);
	}
	fprintf(stderr, " median %.3f ms\n", c->median_ms);

	if (registered) {
		if (pinned)
			safepin_fork_guard_enter();
		io_uring_unregister_buffers(&ring);
		if (pinned) {
			safepin_unpin(buf, len);
			safepin_fork_guard_exit();
		}
	}
	io_uring_queue_exit(&ring);
	if (m != UNPROTECTED)
		safepin_set_policy(SAFEPIN_POLICY_DONTFORK);
}

static void fmt_ms(const struct cell *c, char *buf, size_t len)
{
	if (!c->done)
		snprintf(buf, len, "%s", c->note[0] ? c->note : "-");
	else if (c->median_ms >= 1000)
		snprintf(buf, len, "%.2f s", c->median_ms / 1000);
	else
		snprintf(buf, len, "%.3f ms", c->median_ms);
}

static void fmt_mem(const struct cell *c, char *buf, size_t len)
{
	if (!c->done)
		snprintf(buf, len, "%s", c->note[0] ? "n/a" : "-");
	else
		snprintf(buf, len, "%.1f MiB", c->child_private_kib / 1024.0);
}

typedef void (*fmt_fn)(const struct cell *, char *, size_t);

static void table(FILE *f, bool md, const char *title, fmt_fn fmt)
{
	char buf[128];

	if (md)
		fprintf(f, "\n**%s**\n\n| pinned |", title);
	else
		fprintf(f, "\n%s\n%-10s", title, "pinned");
	for (int m = 0; m < NR_MODES; m++)
		if (modes[m])
			fprintf(f, md ? " %s |" : " %16s", mode_names[m]);
	fprintf(f, "\n");
	if (md) {
		fprintf(f, "|---:|");
		for (int m = 0; m < NR_MODES; m++)
			if (modes[m])
				fprintf(f, "---:|");
		fprintf(f, "\n");
	}
	for (int s = 0; s < nr_sizes; s++) {
		size_label(sizes[s], buf, sizeof(buf));
		fprintf(f, md ? "| %s |" : "%-10s", buf);
		for (int m = 0; m < NR_MODES; m++) {
			if (!modes[m])
				continue;
			fmt(&cells[s][m], buf, sizeof(buf));
			fprintf(f, md ? " %s |" : " %16s", buf);
		}
		fprintf(f, "\n");
	}
}

static void verdict(FILE *f, bool md)
{
	int zero = -1, big = -1;

	for (int s = 0; s < nr_sizes; s++) {
		if (sizes[s] == 0)
			zero = s;
		if (big < 0 || sizes[s] > sizes[big])
			big = s;
	}
	if (zero < 0 || big == zero || !cells[zero][DONTFORK].done || !cells[big][DONTFORK].done)
		return;
	double base = cells[zero][DONTFORK].median_ms, top = cells[big][DONTFORK].median_ms;
	char label[32];

	size_label(sizes[big], label, sizeof(label));
	fprintf(f, "\n%sdefault policy (dontfork): fork with %s pinned takes %.2fx the time of "
		"fork with nothing pinned (target: <= 2x): %s\n", md ? "- " : "", label,
		top / base, top <= 2 * base ? "met" : "MISSED");
	if (cells[big][UNPROTECTED].done)
		fprintf(f, "%sunprotected: %.0fx slower than dontfork at %s\n", md ? "- " : "",
			cells[big][UNPROTECTED].median_ms / top, label);
}

static void write_tsv(const char *path)
{
	FILE *f = fopen(path, "we");

	if (!f)
		die(path, errno);
	fprintf(f, "# pinned_mib\tmode\tmedian_ms\tmin_ms\tmax_ms\treps\tchild_rss_kib\t"
		"child_private_dirty_kib\n");
	for (int m = 0; m < NR_MODES; m++) {
		if (!modes[m])
			continue;
		for (int s = 0; s < nr_sizes; s++) {
			const struct cell *c = &cells[s][m];

			if (c->done)
				fprintf(f, "%zu\t%s\t%.4f\t%.4f\t%.4f\t%d\t%" PRIu64 "\t%" PRIu64 "\n",
					sizes[s] >> 20, mode_names[m], c->median_ms, c->min_ms,
					c->max_ms, c->reps, c->child_rss_kib, c->child_private_kib);
		}
		fprintf(f, "\n\n");	/* one gnuplot data block per mode */
	}
	fclose(f);
}

static void header(FILE *f, bool md)
{
	struct safepin_kernel_info info = { .size = sizeof(info) };
	struct utsname u;
	char cpu[128] = "?", thp[64] = "?", line[256];
	long mem_kib = 0;
	FILE *p;

	safepin_probe(&info);
	uname(&u);
	if ((p = fopen("/proc/cpuinfo", "re"))) {
		while (fgets(line, sizeof(line), p))
			if (sscanf(line, "model name : %127[^\n]", cpu) == 1)
				break;
		fclose(p);
	}
	if ((p = fopen("/proc/meminfo", "re"))) {
		if (fscanf(p, "MemTotal: %ld", &mem_kib) != 1)
			mem_kib = 0;
		fclose(p);
	}
	if ((p = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "re"))) {
		if (!fgets(thp, sizeof(thp), p))
			snprintf(thp, sizeof(thp), "?");
		thp[strcspn(thp, "\n")] = 0;
		fclose(p);
	}
	fprintf(f, "%skernel %s, %ld CPUs (%s), %.1f GiB RAM, THP %s\n", md ? "- " : "",
		u.release, sysconf(_SC_NPROCESSORS_ONLN), cpu, mem_kib / 1048576.0, thp);
	fprintf(f, "%sprobe: copy-on-fork anon %d, hugetlb %d; libsafepin %s\n", md ? "- " : "",
		info.copy_on_fork_anon, info.copy_on_fork_hugetlb, safepin_version());
	fprintf(f, "%spin: io_uring fixed buffers; median of %d forks (%d where the kernel "
		"copies >= 1 GiB); child memory: Private_Dirty in the child's smaps_rollup\n",
		md ? "- " : "", reps, big_reps);
}

int main(int argc, char **argv)
{
	char default_sizes[] = "0,64M,1G,4G";
	const char *tsv = NULL, *md = NULL;
	bool any_mode = false;
	struct rlimit rl;
	int opt;

	while ((opt = getopt(argc, argv, "s:m:r:R:t:M:h")) != -1) {
		switch (opt) {
		case 's': parse_list(optarg, true); break;
		case 'm': parse_list(optarg, false); break;
		case 'r': reps = atoi(optarg); break;
		case 'R': big_reps = atoi(optarg); break;
		case 't': tsv = optarg; break;
		case 'M': md = optarg; break;
		default:
			fprintf(stderr, "usage: %s [-s SIZES] [-m MODES] [-r REPS] [-R BIG_REPS] "
				"[-t TSV] [-M MARKDOWN]\n", argv[0]);
			return 2;
		}
	}
	if (reps < 1 || reps > MAX_REPS || big_reps < 1 || big_reps > MAX_REPS) {
		fprintf(stderr, "fork_latency: repetitions must be 1..%d\n", MAX_REPS);
		return 2;
	}
	if (!nr_sizes)
		parse_list(default_sizes, true);
	for (int m = 0; m < NR_MODES; m++)
		any_mode |= modes[m];
	if (!any_mode)
		for (int m = 0; m < NR_MODES; m++)
			modes[m] = true;

	/* io_uring charges pinned pages to RLIMIT_MEMLOCK. */
	if (!getrlimit(RLIMIT_MEMLOCK, &rl)) {
		struct rlimit inf = { RLIM_INFINITY, RLIM_INFINITY };

		if (setrlimit(RLIMIT_MEMLOCK, &inf)) {
			rl.rlim_cur = rl.rlim_max;
			setrlimit(RLIMIT_MEMLOCK, &rl);
		}
	}

	/* Probe first, while the process is small (the probe forks once). */
	header(stdout, false);
	for (int s = 0; s < nr_sizes; s++) {
		size_t len = sizes[s];
		void *buf = NULL;
		char label[32];

		size_label(len, label, sizeof(label));
		fprintf(stderr, "%s pinned:\n", label);
		if (len) {
			buf = mmap(NULL, len, PROT_READ | PROT_WRITE,
				   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			if (buf == MAP_FAILED)
				die("mmap", errno);
			/* Real data in every page, as a DMA buffer has. */
			for (size_t off = 0; off < len; off += 4096)
				((volatile char *)buf)[off] = (char)(off >> 12);
		}
		for (int m = 0; m < NR_MODES; m++)
			if (modes[m])
				run_cell(s, (enum mode)m, buf);
		if (buf)
			munmap(buf, len);
	}

	table(stdout, false, "fork() latency (median)", fmt_ms);
	table(stdout, false, "child memory (Private_Dirty right after fork)", fmt_mem);
	verdict(stdout, false);
	if (md) {
		FILE *f = fopen(md, "we");

		if (!f)
			die(md, errno);
		header(f, true);
		table(f, true, "fork() latency (median)", fmt_ms);
		table(f, true, "child memory (Private_Dirty right after fork)", fmt_mem);
		verdict(f, true);
		fclose(f);
	}
	if (tsv)
		write_tsv(tsv);
	return 0;
}
