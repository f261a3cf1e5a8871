// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * reg_mr_bench: what fork safety costs per memory registration.  One
 * register + deregister cycle, timed, for
 *
 *   a  raw       ibv_reg_mr() / ibv_dereg_mr(), no fork protection
 *   b  forkinit  the same after ibv_fork_init(): libibverbs' own fork
 *                support (MADV_DONTFORK/DOFORK with a range tree), where
 *                rdma-core enables it at all (see below)
 *   c  safepin   safepin_reg_mr() / safepin_dereg_mr() in the library's
 *                default mode, deferred unmarking: a range released a second
 *                time stays marked ("parked") until the next fork, and
 *                registering it again makes no system call
 *   d  immediate the same with SAFEPIN_UNMARK_IMMEDIATE (the strict mode:
 *                every registration marks, every release unmarks)
 *   e  raw2      (a) again, in a worker forked later: the noise floor
 *   f  raw-dc    (a) on a buffer the worker marked MADV_DONTFORK once, by
 *                hand: what the kernel charges for registering a marked VMA
 *
 * and two buffer patterns:
 *
 *   prefaulted  one buffer per size, written before the loop, registered
 *               and deregistered again and again (a registration cache
 *               miss on a warm buffer)
 *   fresh       a new, never touched anonymous mmap() per cycle: the
 *               registration also faults every page in (mmap/munmap are
 *               outside the timed part)
 *
 * (e) and (f) run pre-faulted only.  Pre-faulted, (c)'s first cycle marks
 * and unmarks, its second parks the buffer and every later one revives it.
 * Fresh, (c) meets trust item 1 of docs/deferred-unmarking.md: munmap()
 * and mmap() put the new buffer at the parked one's address, so after the
 * first two cycles it is revived without being marked (the prepare handler
 * of the next fork would mark it; these workers never fork); (d) marks and
 * unmarks every fresh buffer.  The mode (c) ran in is printed, and so are
 * the madvise() calls and revivals per cycle of (c) and (d), from
 * safepin_get_stats() around the timed cycles.
 *
 * ibv_fork_init() is process-wide and cannot be undone, and once any
 * registration ran it refuses to start (EINVAL); the unmarking mode is
 * process-wide too.  So the cases cannot share a process: the parent forks
 * one worker per case before it touches libibverbs itself; each worker
 * opens the device and allocates its own PD, (b)'s worker calls
 * ibv_fork_init() first and (d)'s sets SAFEPIN_UNMARK_IMMEDIATE.  The
 * parent then drives the workers through pipes, interleaved: for every size and
 * pattern it runs ROUNDS rounds, in each round every case gets a slice of
 * the time budget, in an order that rotates between rounds.  So the cases
 * see the same machine (a TCG guest on a shared host drifts) and none of
 * them inherits another's state.
 *
 * Generations.  Two identical workers differ by themselves, by 5-20% under
 * TCG and more now and then (column (e)): page placement, caches, the
 * emulator's translation state; more cycles in the same worker do not
 * shrink that.  So the whole measurement runs in -g generations of fresh
 * workers, each with 1/g of the time budget; a cell's value is the median
 * of its generations' medians (N sums them), so one odd worker cannot
 * decide a ratio.  The anatomy table is taken in the first generation.
 *
 * N (cycles per cell) is not fixed: each case runs until its time budget
 * for the cell is used up (at most -n cycles per round, at least one), so
 * big sizes get few cycles.  The cell's value is the median over all its
 * cycles; N is reported.
 *
 * Where the kernel copies DMA-pinned pages at fork (5.13+ reports it to
 * rdma-core), ibv_is_fork_initialized() returns IBV_FORK_UNNEEDED, yet
 * rdma-core 44 still turns its fork support on when asked: (b)'s worker
 * checks whether a plain ibv_reg_mr() leaves its range MADV_DONTFORK and
 * the bench prints the answer.
 *
 * The "anatomy" table takes a marking cycle apart: in the immediate worker
 * (same address space layout; its buffer is unmarked between cycles, where
 * (c)'s parked one stays marked and would make MADV_DONTFORK a no-op), on
 * the same pre-faulted buffer, with plain verbs, it times each system call
 * such a cycle can make: reading /proc/self/maps up to the buffer's VMA,
 * the same through /proc/self/smaps (which also walks the page tables of
 * every VMA it passes), MADV_DONTFORK, MADV_POPULATE_WRITE, ibv_reg_mr() on
 * the now DONTFORK range, ibv_dereg_mr(), MADV_DOFORK.  Which of them the
 * library makes, and how often, is the library's business (strace it); the
 * table gives their prices next to the measured overheads (d) - (a) and
 * (c) - (a).
 *
 *   reg_mr_bench [-d DEVICE] [-s SIZES] [-p PATTERNS] [-T MS] [-r ROUNDS]
 *                [-n MAX] [-F SIZE] [-t TSV] [-M MARKDOWN]
 *
 *   -d  RDMA device (default $SAFEPIN_RXE_DEV, else the first one)
 *   -s  comma-separated sizes, K/M/G suffix (default 4K,16K,...,256M)
 *   -p  prefaulted,fresh (default both)
 *   -T  time budget per case and cell in ms (default 800)
 *   -r  rounds per cell (default 3)
 *   -g  worker generations (default 3): see "Generations" above
 *   -n  at most this many cycles per case and round (default 200)
 *   -F  largest size for the fresh pattern (default 64M: a fresh 256 MiB
 *       cycle takes seconds under TCG, mostly the page faults)
 *   -t  also write tab-separated values (for gnuplot)
 *   -M  also write the tables as markdown
 *
 * Big sizes need RLIMIT_MEMLOCK: raised to the hard limit (root: infinity).
 */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <safepin/safepin.h>
#include <safepin/verbs.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define MAX_SIZES 16
#define MAX_SAMPLES 4096
#define ACCESS (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ)

/* RAW2 repeats RAW in a worker forked last: the spread between two
 * identical workers is the noise floor every ratio must be read against. */
enum kase { RAW, FORKINIT, SAFEPIN, IMMEDIATE, RAW2, RAW_DC, NR_CASES };
enum pattern { PREFAULTED, FRESH, NR_PATTERNS };
enum op { OP_RUN, OP_ANATOMY, OP_QUIT };

static const char *const case_names[NR_CASES] = {
	"raw", "forkinit", "safepin", "immediate", "raw2", "raw-dontfork",
};
static const char *const case_labels[NR_CASES] = {
	"(a) ibv_reg_mr", "(b) + ibv_fork_init",
	"(c) safepin_reg_mr, default mode (deferred unmarking)",
	"(d) safepin_reg_mr, SAFEPIN_UNMARK_IMMEDIATE",
	"(e) ibv_reg_mr again, in a worker forked later (control)",
	"(f) ibv_reg_mr of a buffer kept MADV_DONTFORK by hand (no library)",
};
static const char *const pattern_names[NR_PATTERNS] = { "prefaulted", "fresh" };

struct cmd {
	uint32_t op, pattern;
	uint64_t size;
	uint32_t max_cycles, budget_us, warmup, pad;
};

struct reply {
	int32_t err;		/* errno of a failure, 0 */
	uint32_t n;		/* samples that follow */
	/* (c), (d): safepin_get_stats() over the timed cycles */
	uint32_t madvise_calls, revived;
};

struct sample {
	double reg_us, dereg_us;
};

/* What the worker reports once, at start. */
struct hello {
	int32_t err;
	int32_t fork_init_ret;	/* (b) only */
	int32_t fork_status;	/* ibv_is_fork_initialized() after the init */
	int32_t marks;		/* ibv_reg_mr() left its range MADV_DONTFORK */
	int32_t unmark;		/* (c), (d): safepin_get_unmark() */
	char dev[64];
};

struct worker {
	pid_t pid;
	int to, from;
	struct hello hello;
};

struct cell {
	int n;
	double med_us, min_us, med_reg_us, med_dereg_us;
	uint64_t madvise_calls, revived;	/* (c), (d): summed over the N cycles */
};

enum step { S_MAPS, S_SMAPS, S_DONTFORK, S_POPULATE, S_REG, S_DEREG, S_DOFORK, NR_STEPS };

struct anatomy {
	int n;
	double us[NR_STEPS];	/* medians */
	int vmas;		/* VMAs in smaps up to the buffer */
	int maps_lines;		/* VMAs in maps up to the buffer */
};

static size_t sizes[MAX_SIZES];
static int nr_sizes;
static bool patterns[NR_PATTERNS];
static unsigned int budget_ms = 800, rounds = 3, max_cycles = 200, generations = 3;
static size_t fresh_max = 64ul << 20;
static const char *device;
#define MAX_GENERATIONS 9
static struct cell cells[NR_PATTERNS][MAX_SIZES][NR_CASES];
static struct cell gen_cells[MAX_GENERATIONS][NR_PATTERNS][MAX_SIZES][NR_CASES];
static struct anatomy anat[MAX_SIZES];
static struct worker workers[NR_CASES];

static void die(const char *what, int err)
{
	fprintf(stderr, "reg_mr_bench: %s: %s\n", what, strerror(err));
	exit(1);
}

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec / 1e3;
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
	if (end == s || *end || !v) {
		fprintf(stderr, "reg_mr_bench: bad size '%s'\n", s);
		exit(2);
	}
	return (size_t)v;
}

static void size_label(size_t v, char *buf, size_t len)
{
	if (!(v & ((1ul << 30) - 1)))
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

static double median(double *v, int n)
{
	if (!n)
		return 0;
	qsort(v, (size_t)n, sizeof(*v), cmp_double);
	return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

static void write_all(int fd, const void *p, size_t len)
{
	const char *c = p;

	while (len) {
		ssize_t n = write(fd, c, len);

		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			die("write to pipe", n < 0 ? errno : EPIPE);
		c += n;
		len -= (size_t)n;
	}
}

/* Returns false on EOF before the first byte. */
static bool read_all(int fd, void *p, size_t len)
{
	char *c = p;
	size_t got = 0;

	while (got < len) {
		ssize_t n = read(fd, c + got, len - got);

		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0)
			die("read from pipe", errno);
		if (n == 0) {
			if (!got)
				return false;
			die("read from pipe", EPIPE);
		}
		got += (size_t)n;
	}
	return true;
}

/* --- the worker: one case, its own device context ----------------------- */

static enum kase wcase;
static struct ibv_pd *wpd;
static char *wbuf;
static size_t wbuf_len;

/* Volatile so the compiler cannot turn "add 0" into a load (no write fault). */
static volatile char zero_addend;

static void *map_buf(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	return p == MAP_FAILED ? NULL : p;
}

static struct ibv_mr *do_reg(void *p, size_t len)
{
	if (wcase == SAFEPIN || wcase == IMMEDIATE)
		return safepin_reg_mr(wpd, p, len, ACCESS);
	return ibv_reg_mr(wpd, p, len, ACCESS);
}

static int do_dereg(struct ibv_mr *mr)
{
	if (wcase == SAFEPIN || wcase == IMMEDIATE)
		return safepin_dereg_mr(mr);
	return ibv_dereg_mr(mr);
}

/* One timed cycle on @p (a fresh mapping when @p is NULL). */
static int cycle(void *p, size_t len, struct sample *s)
{
	bool fresh = !p;
	struct ibv_mr *mr;
	double t0, t1, t2;
	int err = 0;

	if (fresh && !(p = map_buf(len)))
		return errno;
	t0 = now_us();
	mr = do_reg(p, len);
	t1 = now_us();
	if (!mr) {
		err = errno ? errno : EIO;
	} else if (do_dereg(mr)) {
		err = errno ? errno : EIO;
	}
	t2 = now_us();
	if (fresh)
		munmap(p, len);
	s->reg_us = t1 - t0;
	s->dereg_us = t2 - t1;
	return err;
}

static int prefaulted_buf(size_t len)
{
	if (wbuf && wbuf_len == len)
		return 0;
	if (wbuf)
		munmap(wbuf, wbuf_len);
	wbuf_len = 0;
	if (!(wbuf = map_buf(len)))
		return errno;
	memset(wbuf, 0x5a, len);	/* write-fault every page */
	wbuf_len = len;
	/* (f): what any DONTFORK-based protection leaves the kernel to do. */
	if (wcase == RAW_DC && madvise(wbuf, len, MADV_DONTFORK))
		return errno;
	return 0;
}

static void lib_stats(struct safepin_stats *st)
{
	memset(st, 0, sizeof(*st));
	st->size = sizeof(*st);
	if (wcase == SAFEPIN || wcase == IMMEDIATE)
		safepin_get_stats(st);
}

static void run_cells(int out, const struct cmd *c)
{
	static struct sample s[MAX_SAMPLES];
	struct reply r = { 0, 0, 0, 0 };
	struct safepin_stats st0, st1;
	void *p = NULL;
	double start;

	if (c->pattern == PREFAULTED) {
		r.err = prefaulted_buf(c->size);
		p = wbuf;
	}
	if (!r.err && c->warmup) {
		struct sample w;

		r.err = cycle(p, c->size, &w);
	}
	lib_stats(&st0);
	start = now_us();
	while (!r.err && r.n < c->max_cycles && r.n < MAX_SAMPLES) {
		r.err = cycle(p, c->size, &s[r.n]);
		if (r.err)
			break;
		r.n++;
		if (now_us() - start >= c->budget_us)
			break;
	}
	lib_stats(&st1);
	r.madvise_calls = (uint32_t)(st1.madvise_calls - st0.madvise_calls);
	r.revived = (uint32_t)(st1.revived_registrations - st0.revived_registrations);
	write_all(out, &r, sizeof(r));
	write_all(out, s, r.n * sizeof(s[0]));
}

/*
 * Read /proc/self/maps or smaps the way a VMA query through it does: 8 KiB
 * reads, stop at the first VMA that starts at or after @end.  Returns the
 * number of VMAs seen, or -1.
 */
static int read_vmas_until(const char *path, uintptr_t end)
{
	char buf[8193];
	size_t fill = 0;
	int fd = open(path, O_RDONLY | O_CLOEXEC), vmas = 0;
	bool past = false;

	if (fd < 0)
		return -1;
	while (!past) {
		ssize_t n = read(fd, buf + fill, sizeof(buf) - 1 - fill);
		char *line = buf, *nl;

		if (n <= 0)
			break;
		fill += (size_t)n;
		buf[fill] = '\0';
		while ((nl = strchr(line, '\n'))) {
			uintptr_t lo, hi;

			*nl = '\0';
			/* "start-end perms ..." (field lines never parse as two) */
			if (sscanf(line, "%" SCNxPTR "-%" SCNxPTR, &lo, &hi) == 2) {
				vmas++;
				if (lo >= end)
					past = true;
			}
			line = nl + 1;
		}
		fill -= (size_t)(line - buf);
		memmove(buf, line, fill);
		if (fill == sizeof(buf) - 1)
			fill = 0;
	}
	close(fd);
	return vmas;
}

static void run_anatomy(int out, const struct cmd *c)
{
	static double t[NR_STEPS][MAX_SAMPLES];
	struct reply r = { 0, 0, 0, 0 };
	double res[NR_STEPS + 2] = { 0 };
	uint32_t n = 0;

	r.err = prefaulted_buf(c->size);
	for (; !r.err && n < c->max_cycles && n < MAX_SAMPLES; n++) {
		uintptr_t end = (uintptr_t)wbuf + c->size;
		double ts[NR_STEPS + 1];
		struct ibv_mr *mr = NULL;
		int lines, vmas;

		ts[0] = now_us();
		lines = read_vmas_until("/proc/self/maps", end);
		ts[1] = now_us();
		vmas = read_vmas_until("/proc/self/smaps", end);
		ts[2] = now_us();
		if (lines < 0 || vmas < 0 || madvise(wbuf, c->size, MADV_DONTFORK)) {
			r.err = errno ? errno : EIO;
			break;
		}
		ts[3] = now_us();
		/* Before 5.14 (the 5.10 guest) there is no MADV_POPULATE_WRITE: the
		 * library writes each page atomically instead, and so does this. */
		if (madvise(wbuf, c->size, MADV_POPULATE_WRITE)) {
			if (errno != EINVAL)
				r.err = errno;
			for (size_t off = 0; !r.err && off < c->size; off += 4096)
				__atomic_fetch_add((volatile char *)wbuf + off, zero_addend,
						   __ATOMIC_RELAXED);
		}
		ts[4] = now_us();
		if (!r.err && !(mr = ibv_reg_mr(wpd, wbuf, c->size, ACCESS)))
			r.err = errno ? errno : EIO;
		ts[5] = now_us();
		if (mr && ibv_dereg_mr(mr))
			r.err = errno ? errno : EIO;
		ts[6] = now_us();
		if (madvise(wbuf, c->size, MADV_DOFORK) && !r.err)
			r.err = errno;
		ts[7] = now_us();
		if (r.err)
			break;
		for (int k = 0; k < NR_STEPS; k++)
			t[k][n] = ts[k + 1] - ts[k];
		res[NR_STEPS] = vmas;
		res[NR_STEPS + 1] = lines;
	}
	r.n = n;
	for (int k = 0; k < NR_STEPS; k++)
		res[k] = median(t[k], (int)n);
	write_all(out, &r, sizeof(r));
	write_all(out, res, sizeof(res));
}

static struct ibv_context *open_device(const char *name, char *got, size_t len)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *ctx = NULL;

	for (int i = 0; list && list[i] && !ctx; i++)
		if (!name || !strcmp(ibv_get_device_name(list[i]), name)) {
			ctx = ibv_open_device(list[i]);
			if (ctx)
				snprintf(got, len, "%s", ibv_get_device_name(list[i]));
		}
	if (list)
		ibv_free_device_list(list);
	if (!ctx && !errno)
		errno = ENODEV;
	return ctx;
}

/* Whether the VMA holding @p is MADV_DONTFORK ("dc" in its VmFlags). */
static bool vma_dontfork(const void *p)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[512];
	bool in = false, dc = false;

	if (!f)
		return false;
	while (fgets(line, sizeof(line), f)) {
		unsigned long lo, hi;

		if (sscanf(line, "%lx-%lx ", &lo, &hi) == 2 && strchr(line, '-') < strchr(line, ' '))
			in = (uintptr_t)p >= lo && (uintptr_t)p < hi;
		else if (in && !strncmp(line, "VmFlags:", 8))
			dc = strstr(line, " dc") != NULL;
	}
	fclose(f);
	return dc;
}

/* Does plain ibv_reg_mr() mark its range in this worker (libibverbs' own fork support)? */
static int32_t reg_mr_marks(void)
{
	long page = sysconf(_SC_PAGESIZE);
	char *p = mmap(NULL, 2 * (size_t)page, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct ibv_mr *mr;
	int32_t marks = -1;

	if (p == MAP_FAILED)
		return -1;
	p[0] = 1;
	mr = ibv_reg_mr(wpd, p, (size_t)page, IBV_ACCESS_LOCAL_WRITE);
	if (mr) {
		marks = vma_dontfork(p);
		ibv_dereg_mr(mr);
	}
	munmap(p, 2 * (size_t)page);
	return marks;
}

static _Noreturn void worker_main(enum kase k, int in, int out)
{
	struct hello h = { 0, 0, 0, 0, -1, "" };
	struct ibv_context *ctx = NULL;
	struct cmd c;

	wcase = k;
	if (k == FORKINIT)
		h.fork_init_ret = ibv_fork_init();	/* before any other verb */
	/* (c) keeps whatever mode the library starts in (the default, unless
	 * SAFEPIN_UNMARK says otherwise: reported). */
	if (k == IMMEDIATE && safepin_set_unmark(SAFEPIN_UNMARK_IMMEDIATE))
		h.err = errno;
	if (k == SAFEPIN || k == IMMEDIATE)
		h.unmark = (int32_t)safepin_get_unmark();
	h.fork_status = (int32_t)ibv_is_fork_initialized();
	errno = 0;
	ctx = h.err ? NULL : open_device(device, h.dev, sizeof(h.dev));
	if (h.err) {
		/* reported below */
	} else if (!ctx || !(wpd = ibv_alloc_pd(ctx))) {
		h.err = errno ? errno : ENODEV;
	} else {
		/* First call of each kind (library initialisation) untimed. */
		struct sample w;

		h.err = cycle(NULL, 4096, &w);
		if (!h.err)
			h.marks = reg_mr_marks();
	}
	write_all(out, &h, sizeof(h));
	while (!h.err && read_all(in, &c, sizeof(c)) && c.op != OP_QUIT) {
		if (c.op == OP_RUN)
			run_cells(out, &c);
		else
			run_anatomy(out, &c);
	}
	if (wbuf)
		munmap(wbuf, wbuf_len);
	if (wpd)
		ibv_dealloc_pd(wpd);
	if (ctx)
		ibv_close_device(ctx);
	_exit(h.err ? 1 : 0);
}

static void start_worker(enum kase k)
{
	int down[2], up[2];
	struct worker *w = &workers[k];

	if (pipe(down) || pipe(up))
		die("pipe", errno);
	fflush(NULL);
	w->pid = fork();
	if (w->pid < 0)
		die("fork", errno);
	if (!w->pid) {
		close(down[1]);
		close(up[0]);
		for (int i = 0; i < (int)k; i++) {
			close(workers[i].to);
			close(workers[i].from);
		}
		worker_main(k, down[0], up[1]);
	}
	close(down[0]);
	close(up[1]);
	w->to = down[1];
	w->from = up[0];
}

static void stop_workers(void)
{
	struct cmd c = { .op = OP_QUIT };

	for (int k = 0; k < NR_CASES; k++) {
		int st;

		if (workers[k].pid <= 0)
			continue;
		write_all(workers[k].to, &c, sizeof(c));
		close(workers[k].to);
		close(workers[k].from);
		waitpid(workers[k].pid, &st, 0);
	}
}

/* --- the parent ----------------------------------------------------------- */

static void measure(enum pattern pat, int si)
{
	static double tot[NR_CASES][MAX_SAMPLES], reg[NR_CASES][MAX_SAMPLES],
		dereg[NR_CASES][MAX_SAMPLES];
	static struct sample s[MAX_SAMPLES];
	int n[NR_CASES] = { 0 };
	uint64_t madv[NR_CASES] = { 0 }, revived[NR_CASES] = { 0 };
	uint32_t slice = (uint32_t)(budget_ms * 1000u / rounds / generations);

	for (unsigned int r = 0; r < rounds; r++) {
		for (int j = 0; j < NR_CASES; j++) {
			int k = (int)((r + (unsigned int)j) % NR_CASES);
			struct cmd c = {
				.op = OP_RUN, .pattern = pat, .size = sizes[si],
				.max_cycles = max_cycles, .budget_us = slice, .warmup = r == 0,
			};
			struct reply rep;

			if (n[k] + (int)max_cycles > MAX_SAMPLES)
				c.max_cycles = (uint32_t)(MAX_SAMPLES - n[k]);
			/* The controls run pre-faulted only.  (c) does run fresh:
			 * see the top for what it times there. */
			if (!c.max_cycles || ((k == RAW2 || k == RAW_DC) && pat == FRESH))
				continue;
			write_all(workers[k].to, &c, sizeof(c));
			if (!read_all(workers[k].from, &rep, sizeof(rep)))
				die(case_names[k], EPIPE);
			if (rep.n && !read_all(workers[k].from, s, rep.n * sizeof(s[0])))
				die(case_names[k], EPIPE);
			if (rep.err) {
				char what[128], lbl[32];

				size_label(sizes[si], lbl, sizeof(lbl));
				snprintf(what, sizeof(what), "%s, %s, %s", case_names[k],
					 pattern_names[pat], lbl);
				die(what, rep.err);
			}
			madv[k] += rep.madvise_calls;
			revived[k] += rep.revived;
			for (uint32_t i = 0; i < rep.n; i++) {
				tot[k][n[k]] = s[i].reg_us + s[i].dereg_us;
				reg[k][n[k]] = s[i].reg_us;
				dereg[k][n[k]] = s[i].dereg_us;
				n[k]++;
			}
		}
	}
	for (int k = 0; k < NR_CASES; k++) {
		struct cell *c = &cells[pat][si][k];

		c->n = n[k];
		c->med_us = median(tot[k], n[k]);
		c->min_us = n[k] ? tot[k][0] : 0;
		c->med_reg_us = median(reg[k], n[k]);
		c->med_dereg_us = median(dereg[k], n[k]);
		c->madvise_calls = madv[k];
		c->revived = revived[k];
	}
}

static void measure_anatomy(int si)
{
	struct cmd c = { .op = OP_ANATOMY, .size = sizes[si] };
	struct reply rep;
	double res[NR_STEPS + 2];
	int n = cells[PREFAULTED][si][IMMEDIATE].n;

	/* In the immediate worker: see the top. */
	c.max_cycles = (uint32_t)(n < 5 ? 5 : n > 100 ? 100 : n);
	write_all(workers[IMMEDIATE].to, &c, sizeof(c));
	if (!read_all(workers[IMMEDIATE].from, &rep, sizeof(rep)) ||
	    !read_all(workers[IMMEDIATE].from, res, sizeof(res)))
		die("anatomy", EPIPE);
	if (rep.err)
		die("anatomy", rep.err);
	anat[si].n = (int)rep.n;
	for (int k = 0; k < NR_STEPS; k++)
		anat[si].us[k] = res[k];
	anat[si].vmas = (int)res[NR_STEPS];
	anat[si].maps_lines = (int)res[NR_STEPS + 1];
}

static const char *fork_status_name(int s)
{
	switch (s) {
	case IBV_FORK_DISABLED: return "IBV_FORK_DISABLED";
	case IBV_FORK_ENABLED: return "IBV_FORK_ENABLED";
	case IBV_FORK_UNNEEDED: return "IBV_FORK_UNNEEDED";
	}
	return "?";
}

static bool measured(enum pattern p, int si)
{
	return patterns[p] && (p != FRESH || sizes[si] <= fresh_max);
}

/* @x / @y, 0 where either was not measured. */
static double ratio(const struct cell *c, enum kase x, enum kase y)
{
	return c[x].n && c[y].n && c[y].med_us > 0 ? c[x].med_us / c[y].med_us : 0.0;
}

/* Library calls of (c) or (d) per timed cycle (safepin_get_stats). */
static double per_cycle(const struct cell *c, enum kase k, bool revived)
{
	return c[k].n ? (double)(revived ? c[k].revived : c[k].madvise_calls) / c[k].n : 0.0;
}

/* One target over the pre-faulted sizes: case @k against case @base. */
static void print_verdict(FILE *f, bool md, enum kase k, enum kase base, double limit,
			  const char *what, const char *note)
{
	int met = 0, n = 0, w = -1;
	double worst = 0;
	char l[32] = "";

	for (int si = 0; si < nr_sizes; si++) {
		double r = ratio(cells[PREFAULTED][si], k, base);

		n++;
		met += limit < 1.0 ? r < limit : r <= limit;
		if (w < 0 || r > worst) {
			worst = r;
			w = si;
		}
	}
	if (w >= 0)
		size_label(sizes[w], l, sizeof(l));
	fprintf(f, "%s(%c) %s (%c)%s: met at %d of %d sizes; worst (%c)/(%c) = %.2f at %s%s\n",
		md ? "- " : "  ", case_labels[k][1], what, case_labels[base][1], note, met, n,
		case_labels[k][1], case_labels[base][1], worst, l,
		base == FORKINIT && !workers[FORKINIT].hello.marks ?
		" ((b) marks nothing on this kernel, see above)" : "");
}

/* The targets, judged on this run's medians: about (c), the default. */
static void print_verdicts(FILE *f, bool md)
{
	if (!patterns[PREFAULTED])
		return;
	fprintf(f, md ? "\n### Targets (pre-faulted, this run)\n\n" : "\ntargets (prefaulted):\n");
	print_verdict(f, md, SAFEPIN, RAW, 1.10, "within 1.10x of", "");
	print_verdict(f, md, SAFEPIN, FORKINIT, 0.9999, "faster than", "");
	print_verdict(f, md, RAW2, RAW, 1.10, "within 1.10x of",
		      " (identical to (a): the noise floor)");
	print_verdict(f, md, SAFEPIN, RAW_DC, 1.10, "within 1.10x of", "");
}

static void print_text(FILE *f)
{
	for (int p = 0; p < NR_PATTERNS; p++) {
		if (!patterns[p])
			continue;
		fprintf(f, "\n%s buffer: register + deregister, median us per cycle (N cycles)\n",
			pattern_names[p]);
		fprintf(f, "%-9s %16s %16s %16s %16s %16s %16s %7s %7s %7s %7s %7s %7s\n", "size",
			"a raw", "b forkinit", "c safepin", "d immediate", "e raw again",
			"f raw dontfork", "c/a", "c/b", "d/a", "d/b", "e/a", "c/f");
		for (int si = 0; si < nr_sizes; si++) {
			const struct cell *c = cells[p][si];
			static const enum kase rk[6][2] = {
				{ SAFEPIN, RAW }, { SAFEPIN, FORKINIT }, { IMMEDIATE, RAW },
				{ IMMEDIATE, FORKINIT }, { RAW2, RAW }, { SAFEPIN, RAW_DC },
			};
			char lbl[32], col[NR_CASES][32], rat[6][16];

			if (!measured(p, si))
				continue;
			size_label(sizes[si], lbl, sizeof(lbl));
			for (int k = 0; k < NR_CASES; k++)
				if (c[k].n)
					snprintf(col[k], sizeof(col[k]), "%.1f (%d)", c[k].med_us, c[k].n);
				else
					snprintf(col[k], sizeof(col[k]), "-");
			for (int i = 0; i < 6; i++) {
				double r = ratio(c, rk[i][0], rk[i][1]);

				if (r > 0)
					snprintf(rat[i], sizeof(rat[i]), "%.3f", r);
				else
					snprintf(rat[i], sizeof(rat[i]), "-");
			}
			fprintf(f, "%-9s %16s %16s %16s %16s %16s %16s %7s %7s %7s %7s %7s %7s\n", lbl,
				col[0], col[1], col[2], col[3], col[4], col[5], rat[0], rat[1],
				rat[2], rat[3], rat[4], rat[5]);
		}
	}
	fprintf(f, "\nlibrary calls per timed cycle (safepin_get_stats): madvise() calls, and "
		"registrations revived from a parked range\n");
	fprintf(f, "%-9s %12s %12s %12s %12s %12s %12s\n", "size", "c pre madv", "c pre rev",
		"d pre madv", "c fresh madv", "c fresh rev", "d fresh madv");
	for (int si = 0; si < nr_sizes; si++) {
		const struct cell *pc = cells[PREFAULTED][si], *fc = cells[FRESH][si];
		char lbl[32], col[6][16];
		const struct { const struct cell *c; enum kase k; bool rev; bool on; } v[6] = {
			{ pc, SAFEPIN, false, measured(PREFAULTED, si) },
			{ pc, SAFEPIN, true, measured(PREFAULTED, si) },
			{ pc, IMMEDIATE, false, measured(PREFAULTED, si) },
			{ fc, SAFEPIN, false, measured(FRESH, si) },
			{ fc, SAFEPIN, true, measured(FRESH, si) },
			{ fc, IMMEDIATE, false, measured(FRESH, si) },
		};

		size_label(sizes[si], lbl, sizeof(lbl));
		for (int i = 0; i < 6; i++)
			if (v[i].on)
				snprintf(col[i], sizeof(col[i]), "%.2f", per_cycle(v[i].c, v[i].k, v[i].rev));
			else
				snprintf(col[i], sizeof(col[i]), "-");
		fprintf(f, "%-9s %12s %12s %12s %12s %12s %12s\n", lbl, col[0], col[1], col[2],
			col[3], col[4], col[5]);
	}
	if (patterns[PREFAULTED]) {
		fprintf(f, "\nprefaulted, split: median us of reg / dereg alone\n");
		fprintf(f, "%-9s %17s %17s %17s %17s %17s %17s\n", "size", "a reg/dereg",
			"b reg/dereg", "c reg/dereg", "d reg/dereg", "e reg/dereg", "f reg/dereg");
		for (int si = 0; si < nr_sizes; si++) {
			const struct cell *c = cells[PREFAULTED][si];
			char lbl[32], col[NR_CASES][40];

			size_label(sizes[si], lbl, sizeof(lbl));
			for (int k = 0; k < NR_CASES; k++)
				snprintf(col[k], sizeof(col[k]), "%.1f / %.1f", c[k].med_reg_us,
					 c[k].med_dereg_us);
			fprintf(f, "%-9s %17s %17s %17s %17s %17s %17s\n", lbl, col[0], col[1], col[2],
				col[3], col[4], col[5]);
		}
		fprintf(f, "\nanatomy (immediate worker, prefaulted buffer, plain verbs): median us "
			"per step\n");
		fprintf(f, "%-9s %8s %8s %8s %8s %8s %8s %8s %8s %8s %8s %6s\n", "size", "d - a",
			"c - a", "maps", "smaps", "dontfork", "populate", "reg", "dereg", "dofork",
			"a reg", "VMAs");
		for (int si = 0; si < nr_sizes; si++) {
			const struct anatomy *a = &anat[si];
			const struct cell *c = cells[PREFAULTED][si];
			char lbl[32];

			size_label(sizes[si], lbl, sizeof(lbl));
			fprintf(f, "%-9s %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f %8.1f "
				"%3d/%-3d\n", lbl, c[IMMEDIATE].med_us - c[RAW].med_us,
				c[SAFEPIN].med_us - c[RAW].med_us, a->us[S_MAPS], a->us[S_SMAPS],
				a->us[S_DONTFORK], a->us[S_POPULATE], a->us[S_REG], a->us[S_DEREG],
				a->us[S_DOFORK], c[RAW].med_reg_us, a->vmas, a->maps_lines);
		}
	}
	print_verdicts(f, false);
}

static void md_ratio(FILE *f, const struct cell *c, enum kase x, enum kase y)
{
	double r = ratio(c, x, y);

	if (r > 0)
		fprintf(f, "| %.3f ", r);
	else
		fprintf(f, "| – ");
}

static void md_time(FILE *f, const struct cell *c, enum kase k)
{
	if (c[k].n)
		fprintf(f, "| %.1f ", c[k].med_us);
	else
		fprintf(f, "| – ");
}

static void print_markdown(FILE *f)
{
	for (int p = 0; p < NR_PATTERNS; p++) {
		if (!patterns[p])
			continue;
		fprintf(f, "\n### %s\n\n", p == PREFAULTED ?
			"Pre-faulted buffer, the same one re-registered" :
			"Fresh (untouched) buffer per cycle");
		fprintf(f, "| size | (a) raw µs | (b) fork_init µs | (c) safepin µs | (c)/(a) | (c)/(b) "
			"| (d) immediate µs | (d)/(a) | (d)/(b) | (e) raw again µs | (e)/(a) "
			"| (f) raw, DONTFORK µs | (c)/(f) | N a/b/c/d/e/f |\n"
			"|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
		for (int si = 0; si < nr_sizes; si++) {
			const struct cell *c = cells[p][si];
			char lbl[32];

			if (!measured(p, si))
				continue;
			size_label(sizes[si], lbl, sizeof(lbl));
			fprintf(f, "| %s ", lbl);
			md_time(f, c, RAW);
			md_time(f, c, FORKINIT);
			md_time(f, c, SAFEPIN);
			md_ratio(f, c, SAFEPIN, RAW);
			md_ratio(f, c, SAFEPIN, FORKINIT);
			md_time(f, c, IMMEDIATE);
			md_ratio(f, c, IMMEDIATE, RAW);
			md_ratio(f, c, IMMEDIATE, FORKINIT);
			md_time(f, c, RAW2);
			md_ratio(f, c, RAW2, RAW);
			md_time(f, c, RAW_DC);
			md_ratio(f, c, SAFEPIN, RAW_DC);
			fprintf(f, "| %d/%d/%d/%d/%d/%d |\n", c[RAW].n, c[FORKINIT].n, c[SAFEPIN].n,
				c[IMMEDIATE].n, c[RAW2].n, c[RAW_DC].n);
		}
	}
	fprintf(f, "\n### What the library did per timed cycle (`safepin_get_stats`)\n\n"
		"| size | (c) pre-faulted: madvise | (c) pre-faulted: revived "
		"| (d) pre-faulted: madvise | (c) fresh: madvise | (c) fresh: revived "
		"| (d) fresh: madvise |\n|---|---:|---:|---:|---:|---:|---:|\n");
	for (int si = 0; si < nr_sizes; si++) {
		const struct cell *pc = cells[PREFAULTED][si], *fc = cells[FRESH][si];
		bool mp = measured(PREFAULTED, si), mf = measured(FRESH, si);
		char lbl[32];

		size_label(sizes[si], lbl, sizeof(lbl));
		fprintf(f, "| %s ", lbl);
		if (mp)
			fprintf(f, "| %.2f | %.2f | %.2f ", per_cycle(pc, SAFEPIN, false),
				per_cycle(pc, SAFEPIN, true), per_cycle(pc, IMMEDIATE, false));
		else
			fprintf(f, "| – | – | – ");
		if (mf)
			fprintf(f, "| %.2f | %.2f | %.2f |\n", per_cycle(fc, SAFEPIN, false),
				per_cycle(fc, SAFEPIN, true), per_cycle(fc, IMMEDIATE, false));
		else
			fprintf(f, "| – | – | – |\n");
	}
	if (patterns[PREFAULTED]) {
		fprintf(f, "\n### Anatomy: the price of each step (pre-faulted)\n\n"
			"A marking cycle done by hand with plain verbs in the immediate "
			"worker, on the same buffer: medians per step, next to the measured "
			"overheads (d) − (a) and (c) − (a) and (a)'s own `ibv_reg_mr`.\n\n"
			"| size | (d) − (a) | (c) − (a) | read maps to buffer | read smaps to buffer "
			"| MADV_DONTFORK | MADV_POPULATE_WRITE | ibv_reg_mr (DONTFORK range) "
			"| ibv_dereg_mr | MADV_DOFORK | (a) ibv_reg_mr | VMAs smaps/maps |\n"
			"|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
		for (int si = 0; si < nr_sizes; si++) {
			const struct anatomy *a = &anat[si];
			const struct cell *c = cells[PREFAULTED][si];
			char lbl[32];

			size_label(sizes[si], lbl, sizeof(lbl));
			fprintf(f, "| %s | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f | %.1f "
				"| %.1f | %d/%d |\n", lbl, c[IMMEDIATE].med_us - c[RAW].med_us,
				c[SAFEPIN].med_us - c[RAW].med_us, a->us[S_MAPS], a->us[S_SMAPS],
				a->us[S_DONTFORK], a->us[S_POPULATE], a->us[S_REG], a->us[S_DEREG],
				a->us[S_DOFORK], c[RAW].med_reg_us, a->vmas, a->maps_lines);
		}
		fprintf(f, "\nAll times in µs.\n");
	}
	print_verdicts(f, true);
}

static void print_tsv(FILE *f)
{
	fprintf(f, "# size_bytes\traw_us\tforkinit_us\tsafepin_us\tc/a\tc/b\tn_a\tn_b\tn_c"
		"\tmin_a\tmin_b\tmin_c\treg_a\tdereg_a\treg_b\tdereg_b\treg_c\tdereg_c"
		"\timmediate_us\td/a\tn_d\traw2_us\te/a\traw_dontfork_us\tc/f"
		"\tmadvise_per_cycle_c\trevived_per_cycle_c\tmadvise_per_cycle_d\n");
	for (int p = 0; p < NR_PATTERNS; p++) {
		fprintf(f, "# %s\n", pattern_names[p]);
		for (int si = 0; si < nr_sizes; si++) {
			const struct cell *c = cells[p][si];

			if (!measured(p, si))
				continue;
			fprintf(f, "%zu\t%.2f\t%.2f\t%.2f\t%.4f\t%.4f\t%d\t%d\t%d\t%.2f\t%.2f\t%.2f"
				"\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.2f\t%.4f\t%d\t%.2f\t%.4f"
				"\t%.2f\t%.4f\t%.3f\t%.3f\t%.3f\n",
				sizes[si],
				c[RAW].med_us, c[FORKINIT].med_us, c[SAFEPIN].med_us,
				ratio(c, SAFEPIN, RAW), ratio(c, SAFEPIN, FORKINIT), c[RAW].n,
				c[FORKINIT].n, c[SAFEPIN].n, c[RAW].min_us, c[FORKINIT].min_us,
				c[SAFEPIN].min_us, c[RAW].med_reg_us, c[RAW].med_dereg_us,
				c[FORKINIT].med_reg_us, c[FORKINIT].med_dereg_us, c[SAFEPIN].med_reg_us,
				c[SAFEPIN].med_dereg_us, c[IMMEDIATE].med_us, ratio(c, IMMEDIATE, RAW),
				c[IMMEDIATE].n, c[RAW2].med_us, ratio(c, RAW2, RAW), c[RAW_DC].med_us,
				ratio(c, SAFEPIN, RAW_DC), per_cycle(c, SAFEPIN, false),
				per_cycle(c, SAFEPIN, true), per_cycle(c, IMMEDIATE, false));
		}
		fprintf(f, "\n\n");	/* gnuplot index separator */
	}
}

static const char *unmark_name(int m)
{
	switch (m) {
	case SAFEPIN_UNMARK_IMMEDIATE: return "immediate";
	case SAFEPIN_UNMARK_DEFERRED: return "deferred";
	}
	return "?";
}

static void print_header(FILE *f, bool md)
{
	struct utsname u;
	const char *thp = "?";
	char buf[128] = "";
	FILE *t = fopen("/sys/kernel/mm/transparent_hugepage/enabled", "r");

	if (t) {
		if (fgets(buf, sizeof(buf), t))
			buf[strcspn(buf, "\n")] = '\0';
		thp = buf;
		fclose(t);
	}
	uname(&u);
	fprintf(f, "%skernel %s, device %s, THP %s; budget %u ms per case and cell, spread "
		"over %u generations of fresh workers (a cell is the median of their medians) "
		"and %u interleaved rounds each (at most %u cycles per round)\n",
		md ? "- " : "", u.release, workers[RAW].hello.dev, thp, budget_ms, generations,
		rounds, max_cycles);
	fprintf(f, "%s(b): ibv_fork_init() returned %d, then ibv_is_fork_initialized() = %s; "
		"a range ibv_reg_mr() registered there was %s\n",
		md ? "- " : "", workers[FORKINIT].hello.fork_init_ret,
		fork_status_name(workers[FORKINIT].hello.fork_status),
		workers[FORKINIT].hello.marks < 0 ? "not checked (no memory or no MR)" :
		!workers[FORKINIT].hello.marks ? "not marked: (b) is (a); compare its cost with (e)" :
		workers[FORKINIT].hello.fork_status == IBV_FORK_UNNEEDED ?
		"MADV_DONTFORK: libibverbs marks and unmarks every registration itself "
		"(rdma-core honours ibv_fork_init() even where it reports UNNEEDED)" :
		"MADV_DONTFORK: libibverbs marks and unmarks every registration itself");
	fprintf(f, "%s(c) ran with unmarking %s, (d) with %s%s%s%s\n", md ? "- " : "",
		unmark_name(workers[SAFEPIN].hello.unmark),
		unmark_name(workers[IMMEDIATE].hello.unmark),
		getenv("SAFEPIN_UNMARK") ? " (SAFEPIN_UNMARK=" : "",
		getenv("SAFEPIN_UNMARK") ? getenv("SAFEPIN_UNMARK") : "",
		getenv("SAFEPIN_UNMARK") ? " in the environment)" : "");
}

/* One generation: fresh workers, every cell measured once, kept in gen_cells[g]. */
static void run_generation(unsigned int g)
{
	/* No verb in the parent before the workers exist (see the top). */
	for (int k = 0; k < NR_CASES; k++)
		start_worker((enum kase)k);
	for (int k = 0; k < NR_CASES; k++) {
		struct hello *h = &workers[k].hello;

		if (!read_all(workers[k].from, h, sizeof(*h)))
			die(case_names[k], EPIPE);
		if (h->err)
			die(case_names[k], h->err);
	}
	if (workers[FORKINIT].hello.fork_init_ret)
		die("ibv_fork_init", workers[FORKINIT].hello.fork_init_ret);

	for (int si = 0; si < nr_sizes; si++) {
		for (int p = 0; p < NR_PATTERNS; p++)
			if (measured((enum pattern)p, si))
				measure((enum pattern)p, si);
		if (patterns[PREFAULTED] && !g)
			measure_anatomy(si);
		char lbl[32];

		size_label(sizes[si], lbl, sizeof(lbl));
		fprintf(stderr, "reg_mr_bench: generation %u/%u: %s done\n", g + 1,
			generations, lbl);
	}
	stop_workers();
	memcpy(gen_cells[g], cells, sizeof(cells));
}

/* A cell's value: the median of its generations' medians; N and counts summed. */
static void combine_generations(void)
{
	for (int p = 0; p < NR_PATTERNS; p++)
		for (int si = 0; si < nr_sizes; si++)
			for (int k = 0; k < NR_CASES; k++) {
				struct cell *c = &cells[p][si][k];
				double med[MAX_GENERATIONS], reg[MAX_GENERATIONS],
					dereg[MAX_GENERATIONS];

				memset(c, 0, sizeof(*c));
				for (unsigned int g = 0; g < generations; g++) {
					const struct cell *x = &gen_cells[g][p][si][k];

					med[g] = x->med_us;
					reg[g] = x->med_reg_us;
					dereg[g] = x->med_dereg_us;
					if (x->n && (!c->n || x->min_us < c->min_us))
						c->min_us = x->min_us;
					c->n += x->n;
					c->madvise_calls += x->madvise_calls;
					c->revived += x->revived;
				}
				c->med_us = median(med, (int)generations);
				c->med_reg_us = median(reg, (int)generations);
				c->med_dereg_us = median(dereg, (int)generations);
			}
}

int main(int argc, char **argv)
{
	const char *tsv = NULL, *mdpath = NULL;
	struct rlimit rl;
	int opt;

	device = getenv("SAFEPIN_RXE_DEV");
	while ((opt = getopt(argc, argv, "d:s:p:T:r:g:n:F:t:M:")) != -1) {
		switch (opt) {
		case 'd': device = optarg; break;
		case 's':
			for (char *tok = strtok(optarg, ","); tok; tok = strtok(NULL, ",")) {
				if (nr_sizes == MAX_SIZES)
					die("too many sizes", E2BIG);
				sizes[nr_sizes++] = parse_size(tok);
			}
			break;
		case 'p':
			for (char *tok = strtok(optarg, ","); tok; tok = strtok(NULL, ",")) {
				int p;

				for (p = 0; p < NR_PATTERNS; p++)
					if (!strcmp(tok, pattern_names[p]))
						break;
				if (p == NR_PATTERNS) {
					fprintf(stderr, "reg_mr_bench: unknown pattern '%s'\n", tok);
					return 2;
				}
				patterns[p] = true;
			}
			break;
		case 'T': budget_ms = (unsigned int)strtoul(optarg, NULL, 10); break;
		case 'r': rounds = (unsigned int)strtoul(optarg, NULL, 10); break;
		case 'g': generations = (unsigned int)strtoul(optarg, NULL, 10); break;
		case 'n': max_cycles = (unsigned int)strtoul(optarg, NULL, 10); break;
		case 'F': fresh_max = parse_size(optarg); break;
		case 't': tsv = optarg; break;
		case 'M': mdpath = optarg; break;
		default:
			fprintf(stderr, "usage: reg_mr_bench [-d DEV] [-s SIZES] [-p PATTERNS] [-T MS] "
				"[-r ROUNDS] [-g GENERATIONS] [-n MAX] [-F SIZE] [-t TSV] [-M MD]\n");
			return 2;
		}
	}
	if (!budget_ms || !rounds || !max_cycles || !generations || generations > MAX_GENERATIONS) {
		fprintf(stderr, "reg_mr_bench: -T, -r and -n must be positive, -g 1..%d\n",
			MAX_GENERATIONS);
		return 2;
	}
	if (!nr_sizes)
		for (size_t s = 4096; s <= (256ul << 20); s *= 4)
			sizes[nr_sizes++] = s;
	if (!patterns[PREFAULTED] && !patterns[FRESH])
		patterns[PREFAULTED] = patterns[FRESH] = true;

	if (!getrlimit(RLIMIT_MEMLOCK, &rl)) {
		rl.rlim_cur = rl.rlim_max;
		if (!geteuid())
			rl.rlim_cur = rl.rlim_max = RLIM_INFINITY;
		setrlimit(RLIMIT_MEMLOCK, &rl);
	}
	signal(SIGPIPE, SIG_IGN);

	for (unsigned int g = 0; g < generations; g++)
		run_generation(g);
	combine_generations();

	print_header(stdout, false);
	for (int k = 0; k < NR_CASES; k++)
		printf("  %c = %s\n", 'a' + k, case_labels[k]);
	print_text(stdout);
	if (tsv) {
		FILE *f = fopen(tsv, "w");

		if (!f)
			die(tsv, errno);
		print_tsv(f);
		fclose(f);
	}
	if (mdpath) {
		FILE *f = fopen(mdpath, "w");

		if (!f)
			die(mdpath, errno);
		print_header(f, true);
		print_markdown(f);
		fclose(f);
	}
	return 0;
}
