// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * range_bench: libsafepin's core API (safepin_pin/safepin_unpin) against
 * libibverbs' fork support (ibv_fork_init + ibv_dontfork_range /
 * ibv_dofork_range, exported by libibverbs without any RDMA device), side
 * by side in one process, on the same inputs (same seed, same offsets).
 * libsafepin runs in each of its unmarking modes (safepin_set_unmark()):
 * immediate ("safepin"), deferred and windowed; the unmarking a deferred
 * or windowed run still owes at its end (parked ranges, open windows) is
 * flushed inside its measurement.  The workloads:
 *
 *   rereg-64k    16 pre-faulted 64 KiB buffers, pin + unpin of each in turn
 *   rereg-1m     one pre-faulted 1 MiB buffer, pin + unpin
 *   rereg-1m-vma the same buffer as a VMA of its own (guard pages around):
 *                registered whole (libsafepin reads smaps, see
 *                docs/bench/range-analysis.md)
 *   (rereg-* buffers other than -vma sit inside one larger mapping)
 *   rereg-held   pin + unpin of a buffer another registration keeps live
 *   random       random 1-16 page ranges in a 1 GiB arena, pin + unpin
 *                (libsafepin pre-faults: pagemap shows the pages ready)
 *   random-10x   the same, ten times the pairs
 *   nested       4 ranges nested in a random 16-page range, in and out
 *   overlap      32 live ranges churning in a random 64-page window
 *   live-N       N live ranges (1-16 pages) under one arena-wide range;
 *                the cost of one more pin + unpin (O(log N)) and the
 *                library's memory per live range (RssAnon delta / N;
 *                libsafepin's in a forked child, see live_bytes_child())
 *   threads-T    random disjoint pin + unpin from T threads (own halves),
 *                10 x -n pairs in all
 *   *-dw         the same with SAFEPIN_PIN_DEVICE_WRITES: the device's pin
 *                is a write pin, which faults the pages itself, so
 *                libsafepin marks only (as libibverbs does)
 *   rereg-thr-T  re-registration of 16 x 64 KiB buffers per thread, T threads
 *                (20 x -n pairs)
 *   prefault     safepin_pin of a fresh 256 MiB buffer vs
 *                MADV_POPULATE_WRITE vs first touch (one store per page)
 *
 * madvise() calls are counted by defining madvise() in this executable:
 * the dynamic linker binds both libraries' calls (through their PLT) to
 * the executable's definition first, which counts and makes the syscall.
 * No LD_PRELOAD, no ptrace; bench/run-range-bench cross-checks it with
 * strace -c.  Marking calls (DONTFORK/DOFORK/WIPEONFORK/KEEPONFORK) and
 * populate calls are counted apart.  The VMA count is the number of lines
 * of /proc/self/maps after each workload.
 *
 * Output: a time table (us per pair for the four, and libibverbs' time
 * over each libsafepin mode's), a table of system calls per pair and VMAs,
 * memory per live range and pre-fault throughput; as text on stdout, as
 * markdown (-M) and as TSV for the plots (-t PREFIX: PREFIX.tsv, one row per
 * workload; PREFIX-live.tsv, one row per live-N).
 *
 *   range_bench [-n PAIRS] [-t TSV_PREFIX] [-M MARKDOWN]
 */
#include <errno.h>
#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <safepin/safepin.h>

/* Exported by libibverbs (IBVERBS_1.1) but not declared in rdma-core 44's headers. */
int ibv_fork_init(void);
int ibv_dontfork_range(void *base, size_t size);
int ibv_dofork_range(void *base, size_t size);
int ibv_is_fork_initialized(void);	/* 1.13: 0 disabled, 1 enabled, 2 unneeded */

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define PAGE 4096ul
#define ARENA (1ul << 30)
#define ARENA_PAGES (ARENA / PAGE)

/* --- madvise counter ---------------------------------------------------- */

static atomic_uint_fast64_t n_mark, n_populate;

int madvise(void *addr, size_t len, int advice)
{
	switch (advice) {
	case MADV_DONTFORK:
	case MADV_DOFORK:
	case MADV_WIPEONFORK:
	case MADV_KEEPONFORK:
		atomic_fetch_add(&n_mark, 1);
		break;
	case MADV_POPULATE_WRITE:
	case MADV_POPULATE_WRITE - 1:
		atomic_fetch_add(&n_populate, 1);
		break;
	default:
		break;
	}
	return (int)syscall(SYS_madvise, addr, len, advice);
}

/* --- the libraries: libsafepin in three unmarking modes, libibverbs ----- */

struct lib {
	const char *name;
	int (*pin)(void *addr, size_t len);
	int (*unpin)(void *addr, size_t len);
	enum safepin_unmark mode;	/* libsafepin's unmarking mode for its runs */
};

/* safepin_pin() flags of the current workload (the *-dw ones). */
static unsigned int sp_flags;
/*
 * Mixed into the seeds of the random workloads: a variant (-10x, -dw) must
 * not pin exactly the ranges the previous one released, which deferred
 * unmarking would take for a registration cache's and park.
 */
static uint64_t seed_salt;

static int sp_pin(void *a, size_t l)
{
	return safepin_pin(a, l, sp_flags);
}

static int sp_unpin(void *a, size_t l)
{
	return safepin_unpin(a, l);
}

static int ibv_pin(void *a, size_t l)
{
	return ibv_dontfork_range(a, l);
}

static int ibv_unpin(void *a, size_t l)
{
	return ibv_dofork_range(a, l);
}

static const struct lib libs[] = {
	{ "libsafepin", sp_pin, sp_unpin, SAFEPIN_UNMARK_IMMEDIATE },
	{ "libsafepin-deferred", sp_pin, sp_unpin, SAFEPIN_UNMARK_DEFERRED },
	{ "libsafepin-windowed", sp_pin, sp_unpin, SAFEPIN_UNMARK_WINDOWED },
	{ "libibverbs", ibv_pin, ibv_unpin, SAFEPIN_UNMARK_IMMEDIATE },
};
#define NLIBS 4
#define SP 0	/* indices into libs[] */
#define SPD 1
#define SPW 2
#define IBV 3

/* Unmarking mode for the runs of libs[li]; back to immediate (flushing) after. */
static void lib_begin(int li)
{
	if (safepin_set_unmark(libs[li].mode))
		exit(1);
}

static void lib_end(void)
{
	if (safepin_set_unmark(SAFEPIN_UNMARK_IMMEDIATE))
		exit(1);
}

static void must(int ret, const char *what, const struct lib *lib)
{
	if (ret) {
		fprintf(stderr, "range_bench: %s (%s) failed: %d (errno %d)\n", what, lib->name,
			ret, errno);
		exit(1);
	}
}

#define PIN(lib, a, l) must((lib)->pin((a), (l)), "pin", (lib))
#define UNPIN(lib, a, l) must((lib)->unpin((a), (l)), "unpin", (lib))

/* --- helpers ------------------------------------------------------------ */

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static long vma_count(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	long n = 0;
	int c;

	if (!f)
		return -1;
	while ((c = getc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

static long rss_anon_kb(void)
{
	FILE *f = fopen("/proc/self/status", "re");
	char line[256];
	long kb = -1;

	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f))
		if (sscanf(line, "RssAnon: %ld kB", &kb) == 1)
			break;
	fclose(f);
	return kb;
}

static void *map_faulted(size_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	madvise(p, len, MADV_NOHUGEPAGE);	/* same 4 KiB pages for every library */
	for (size_t i = 0; i < len; i += PAGE)
		p[i] = 1;
	return p;
}

/* xorshift: the same sequence for every library. */
static uint64_t rng;

static uint64_t rnd(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return rng;
}

/* --- results ------------------------------------------------------------ */

struct result {
	char workload[16];
	double us_per_pair[NLIBS];
	double mark_calls[NLIBS];	/* marking madvise per pair */
	double populate_calls[NLIBS];
	long vmas[NLIBS];
	double bytes_per_range[NLIBS];	/* live-N only */
	long n;				/* live-N: N */
};

static struct result results[32];
static size_t nresults;
static char *arena;
static long pairs = 20000;

struct meter {
	double t0;
	uint64_t m0, p0;
};

static void meter_start(struct meter *m)
{
	m->m0 = atomic_load(&n_mark);
	m->p0 = atomic_load(&n_populate);
	m->t0 = now_us();
}

static void meter_stop(struct meter *m, struct result *r, int li, long n)
{
	double t;

	/* Deferred, windowed: the unmarking still owed (parked ranges, open
	 * windows) is paid inside the measurement. */
	if (libs[li].mode != SAFEPIN_UNMARK_IMMEDIATE && safepin_flush())
		exit(1);
	t = now_us() - m->t0;

	r->us_per_pair[li] = t / (double)n;
	r->mark_calls[li] = (double)(atomic_load(&n_mark) - m->m0) / (double)n;
	r->populate_calls[li] = (double)(atomic_load(&n_populate) - m->p0) / (double)n;
	r->vmas[li] = vma_count();
}

static struct result *new_result(const char *name)
{
	struct result *r = &results[nresults++];

	memset(r, 0, sizeof(*r));
	snprintf(r->workload, sizeof(r->workload), "%s", name);
	return r;
}

/* --- workloads ---------------------------------------------------------- */

/*
 * @whole: each buffer is a VMA of its own (PROT_NONE guard pages around it,
 * as a buffer mmap()ed and registered whole); else buffers sit inside one
 * larger mapping (malloc/pool style).
 */
static void wl_rereg(struct result *r, int li, size_t buf_len, int nbufs, long n, bool whole)
{
	const struct lib *lib = &libs[li];
	size_t stride = buf_len + PAGE;
	char *map = map_faulted(stride * (size_t)nbufs + PAGE), *b = map + PAGE;
	struct meter m;

	for (int i = 0; i <= nbufs; i++)
		if (whole)
			mprotect(map + (size_t)i * stride, PAGE, PROT_NONE);

	for (int i = 0; i < nbufs; i++) {	/* warm: first registration of each */
		PIN(lib, b + (size_t)i * stride, stride - PAGE);
		UNPIN(lib, b + (size_t)i * stride, stride - PAGE);
	}
	meter_start(&m);
	for (long i = 0; i < n; i++) {
		char *p = b + (size_t)(i % nbufs) * stride;

		PIN(lib, p, stride - PAGE);
		UNPIN(lib, p, stride - PAGE);
	}
	meter_stop(&m, r, li, n);
	munmap(map, stride * (size_t)nbufs + PAGE);
}

static void wl_rereg_held(struct result *r, int li, long n)
{
	const struct lib *lib = &libs[li];
	size_t len = 16 * PAGE;
	char *b = map_faulted(len);
	struct meter m;

	PIN(lib, b, len);
	meter_start(&m);
	for (long i = 0; i < n; i++) {
		PIN(lib, b, len);
		UNPIN(lib, b, len);
	}
	meter_stop(&m, r, li, n);
	UNPIN(lib, b, len);
	munmap(b, len);
}

static void rand_range(size_t span_pages, size_t *first, size_t *npages)
{
	*npages = 1 + rnd() % 16;
	*first = rnd() % (span_pages - *npages);
}

static void wl_random(struct result *r, int li, long n)
{
	const struct lib *lib = &libs[li];
	struct meter m;

	rng = 0x9e3779b97f4a7c15ull ^ seed_salt;
	meter_start(&m);
	for (long i = 0; i < n; i++) {
		size_t first, np;

		rand_range(ARENA_PAGES, &first, &np);
		PIN(lib, arena + first * PAGE, np * PAGE);
		UNPIN(lib, arena + first * PAGE, np * PAGE);
	}
	meter_stop(&m, r, li, n);
}

static void wl_nested(struct result *r, int li, long n)
{
	const struct lib *lib = &libs[li];
	struct meter m;
	long done = 0;

	rng = 0x243f6a8885a308d3ull;
	meter_start(&m);
	while (done < n) {
		size_t first = rnd() % (ARENA_PAGES - 16);
		char *p = arena + first * PAGE;

		for (size_t k = 0; k < 4; k++)
			PIN(lib, p + k * PAGE, (16 - 2 * k) * PAGE);
		for (size_t k = 4; k--;)
			UNPIN(lib, p + k * PAGE, (16 - 2 * k) * PAGE);
		done += 4;
	}
	meter_stop(&m, r, li, done);
}

static void wl_overlap(struct result *r, int li, long n)
{
	const struct lib *lib = &libs[li];
	enum { LIVE = 32, WINDOW = 64 };
	struct { size_t first, np; } ring[LIVE];
	size_t base;
	struct meter m;

	rng = 0x13198a2e03707344ull;
	base = rnd() % (ARENA_PAGES - WINDOW);
	for (int i = 0; i < LIVE; i++) {
		rand_range(WINDOW, &ring[i].first, &ring[i].np);
		PIN(lib, arena + (base + ring[i].first) * PAGE, ring[i].np * PAGE);
	}
	meter_start(&m);
	for (long i = 0; i < n; i++) {
		int k = (int)(i % LIVE);

		UNPIN(lib, arena + (base + ring[k].first) * PAGE, ring[k].np * PAGE);
		rand_range(WINDOW, &ring[k].first, &ring[k].np);
		PIN(lib, arena + (base + ring[k].first) * PAGE, ring[k].np * PAGE);
	}
	meter_stop(&m, r, li, n);
	for (int i = 0; i < LIVE; i++)
		UNPIN(lib, arena + (base + ring[i].first) * PAGE, ring[i].np * PAGE);
}

/*
 * libsafepin's memory per live range, measured in a forked child: the
 * library keeps the nodes a run frees for its later runs (its node arena
 * never shrinks) and drops them all in a fork child, so that there each
 * mode starts from nothing, as the first one run in a process does.  The
 * child's arena-wide pin copies the 1 GiB arena (copy-on-write) before the
 * first RssAnon reading: RAM for a second arena, for a moment.
 */
static double live_bytes_child(int li, size_t (*ranges)[2], long live)
{
	double bytes = 0;
	int fd[2], status;
	pid_t pid;

	if (pipe(fd) || (pid = fork()) < 0) {
		perror("range_bench: live-N child");
		exit(1);
	}
	if (!pid) {
		long rss0, rss1;

		close(fd[0]);
		if (libs[li].pin(arena, ARENA))
			_exit(1);
		rss0 = rss_anon_kb();
		for (long i = 0; i < live; i++)
			if (libs[li].pin(arena + ranges[i][0] * PAGE, ranges[i][1] * PAGE))
				_exit(1);
		rss1 = rss_anon_kb();
		bytes = (double)(rss1 - rss0) * 1024.0 / (double)live;
		_exit(write(fd[1], &bytes, sizeof(bytes)) == (ssize_t)sizeof(bytes) ? 0 : 1);
	}
	close(fd[1]);
	if (read(fd[0], &bytes, sizeof(bytes)) != (ssize_t)sizeof(bytes) ||
	    waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
		fprintf(stderr, "range_bench: live-%ld child (%s) failed\n", live, libs[li].name);
		exit(1);
	}
	close(fd[0]);
	return bytes;
}

static void wl_live(struct result *r, int li, long live, long n)
{
	const struct lib *lib = &libs[li];
	size_t (*ranges)[2] = malloc(sizeof(*ranges) * (size_t)live);
	long rss0, rss1;
	struct meter m;

	if (!ranges)
		exit(1);
	rng = 0xa4093822299f31d0ull;
	for (long i = 0; i < live; i++)
		rand_range(ARENA_PAGES, &ranges[i][0], &ranges[i][1]);
	if (li != IBV)		/* forks while nothing is registered */
		r->bytes_per_range[li] = live_bytes_child(li, ranges, live);
	/* One range over the whole arena: the live ones split no VMA. */
	PIN(lib, arena, ARENA);
	rss0 = rss_anon_kb();
	for (long i = 0; i < live; i++)
		PIN(lib, arena + ranges[i][0] * PAGE, ranges[i][1] * PAGE);
	rss1 = rss_anon_kb();
	meter_start(&m);
	for (long i = 0; i < n; i++) {
		size_t first, np;

		rand_range(ARENA_PAGES, &first, &np);
		PIN(lib, arena + first * PAGE, np * PAGE);
		UNPIN(lib, arena + first * PAGE, np * PAGE);
	}
	meter_stop(&m, r, li, n);
	if (li == IBV)		/* malloc()ed nodes: measured here */
		r->bytes_per_range[li] = (double)(rss1 - rss0) * 1024.0 / (double)live;
	r->n = live;
	for (long i = 0; i < live; i++)
		UNPIN(lib, arena + ranges[i][0] * PAGE, ranges[i][1] * PAGE);
	UNPIN(lib, arena, ARENA);
	free(ranges);
}

struct thr {
	const struct lib *lib;
	char *base;
	size_t pages;
	long n;
	uint64_t seed;
	bool rereg;	/* re-register 16 x 64 KiB buffers instead of random ranges */
};

static void *thr_main(void *arg)
{
	struct thr *t = arg;
	uint64_t s = t->seed;

	for (long i = 0; i < t->n && t->rereg; i++) {
		char *p = t->base + (size_t)(i % 16) * (65 * 1024);

		PIN(t->lib, p, 64 * 1024);
		UNPIN(t->lib, p, 64 * 1024);
	}
	for (long i = 0; i < t->n && !t->rereg; i++) {
		size_t np, first;

		s ^= s << 13;
		s ^= s >> 7;
		s ^= s << 17;
		np = 1 + s % 16;
		first = (s >> 8) % (t->pages - np);
		PIN(t->lib, t->base + first * PAGE, np * PAGE);
		UNPIN(t->lib, t->base + first * PAGE, np * PAGE);
	}
	return NULL;
}

/* us_per_pair here is wall time / total pairs: lower with 2 threads = scales. */
static void wl_threads(struct result *r, int li, int nthreads, long n, bool rereg)
{
	pthread_t tid[2];
	struct thr t[2];
	struct meter m;

	if (rereg) {	/* warm: each buffer registered twice (deferred parks the second) */
		for (int i = 0; i < nthreads; i++)
			for (int b = 0; b < 32; b++) {
				char *p = arena + (size_t)i * (ARENA / 2) + (size_t)(b % 16) * (65 * 1024);

				PIN(&libs[li], p, 64 * 1024);
				UNPIN(&libs[li], p, 64 * 1024);
			}
	}
	meter_start(&m);
	for (int i = 0; i < nthreads; i++) {
		t[i] = (struct thr){ &libs[li], arena + (size_t)i * (ARENA / 2), ARENA_PAGES / 2,
				     n / nthreads, (0x9e3779b97f4a7c15ull ^ seed_salt) + (uint64_t)i,
				     rereg };
		pthread_create(&tid[i], NULL, thr_main, &t[i]);
	}
	for (int i = 0; i < nthreads; i++)
		pthread_join(tid[i], NULL);
	meter_stop(&m, r, li, n / nthreads * nthreads);
}

/* --- pre-fault throughput ------------------------------------------------ */

static double prefault_gibs(int how, size_t len)
{
	double best = 0;

	for (int rep = 0; rep < 3; rep++) {
		char *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
		double t0, t;

		if (p == MAP_FAILED)
			exit(1);
		madvise(p, len, MADV_NOHUGEPAGE);
		t0 = now_us();
		if (how == 0) {
			if (safepin_pin(p, len, 0))
				exit(1);
		} else if (how == 1) {
			if (madvise(p, len, MADV_POPULATE_WRITE))
				exit(1);
		} else {
			for (size_t i = 0; i < len; i += PAGE)
				((volatile char *)p)[i] = 0;
		}
		t = now_us() - t0;
		if (how == 0)
			safepin_unpin(p, len);
		munmap(p, len);
		if ((double)len / t * 1e6 / (1u << 30) > best)
			best = (double)len / t * 1e6 / (1u << 30);
	}
	return best;
}

/* --- output ---------------------------------------------------------------- */

static const char rule[] =
	"-------------------------------------------------------------------------------"
	"---------------------------------------------";

/* libibverbs' time over libs[li]'s: above 1, libsafepin is that much faster. */
static double speedup(const struct result *r, int li)
{
	return r->us_per_pair[IBV] / r->us_per_pair[li];
}

static void print_text(const double pf[3])
{
	printf("time per pin + unpin pair (lower is better), and libibverbs' time over each\n"
	       "libsafepin mode's (above 1x: libsafepin is faster)\n\n");
	printf("%-12s | %-36s | %s\n", "", "us per pin+unpin pair", "speed-up: ibverbs / X");
	printf("%-12s | %9s%9s%9s%9s | %9s%9s%9s\n", "workload", "safepin", "deferred",
	       "windowed", "ibverbs", "safepin", "deferred", "windowed");
	printf("%.*s\n", 12 + 3 + 36 + 3 + 27, rule);
	for (size_t i = 0; i < nresults; i++) {
		const struct result *r = &results[i];

		printf("%-12s | %9.2f%9.2f%9.2f%9.2f | %8.2fx%8.2fx%8.2fx\n", r->workload,
		       r->us_per_pair[SP], r->us_per_pair[SPD], r->us_per_pair[SPW],
		       r->us_per_pair[IBV], speedup(r, SP), speedup(r, SPD), speedup(r, SPW));
	}

	printf("\nsystem calls per pair: marking madvise (DONTFORK/DOFORK/WIPEONFORK/KEEPONFORK)\n"
	       "and populate madvise (libsafepin's pre-fault); VMAs: lines of /proc/self/maps\n"
	       "at the end of the workload\n\n");
	printf("%-12s | %-36s | %-27s | %s\n", "", "marking madvise per pair",
	       "populate per pair", "VMAs at the end");
	printf("%-12s | %9s%9s%9s%9s | %9s%9s%9s | %9s%9s%9s%9s\n", "workload", "safepin",
	       "deferred", "windowed", "ibverbs", "safepin", "deferred", "windowed", "safepin",
	       "deferred", "windowed", "ibverbs");
	printf("%.*s\n", 12 + 3 + 36 + 3 + 27 + 3 + 36, rule);
	for (size_t i = 0; i < nresults; i++) {
		const struct result *r = &results[i];

		printf("%-12s | %9.2f%9.2f%9.2f%9.2f | %9.2f%9.2f%9.2f | %9ld%9ld%9ld%9ld\n",
		       r->workload, r->mark_calls[SP], r->mark_calls[SPD], r->mark_calls[SPW],
		       r->mark_calls[IBV], r->populate_calls[SP], r->populate_calls[SPD],
		       r->populate_calls[SPW], r->vmas[SP], r->vmas[SPD], r->vmas[SPW],
		       r->vmas[IBV]);
	}

	printf("\nmemory per live range (RssAnon delta / live ranges, bytes; libsafepin's\n"
	       "measured in a forked child, where its node memory starts empty):\n");
	for (size_t i = 0; i < nresults; i++)
		if (results[i].n >= 10000)
			printf("  %-11s safepin %6.1f   windowed %6.1f   ibverbs %6.1f\n",
			       results[i].workload, results[i].bytes_per_range[SP],
			       results[i].bytes_per_range[SPW], results[i].bytes_per_range[IBV]);
	printf("\npre-fault of a fresh 256 MiB buffer (4 KiB pages), GiB/s:\n"
	       "  safepin_pin %.2f   MADV_POPULATE_WRITE %.2f   first touch %.2f\n",
	       pf[0], pf[1], pf[2]);
}

static void write_md(FILE *f, const double pf[3])
{
	fprintf(f, "Time per pin + unpin pair, and libibverbs' time over each libsafepin "
		"mode's (above 1x: libsafepin is faster).\n\n");
	fprintf(f, "| workload | safepin us/pair | deferred us/pair | windowed us/pair "
		"| libibverbs us/pair | ibverbs / safepin | ibverbs / deferred "
		"| ibverbs / windowed |\n");
	fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---:|\n");
	for (size_t i = 0; i < nresults; i++) {
		const struct result *r = &results[i];

		fprintf(f, "| %s | %.2f | %.2f | %.2f | %.2f | %.2fx | %.2fx | %.2fx |\n",
			r->workload, r->us_per_pair[SP], r->us_per_pair[SPD],
			r->us_per_pair[SPW], r->us_per_pair[IBV], speedup(r, SP),
			speedup(r, SPD), speedup(r, SPW));
	}
	fprintf(f, "\nSystem calls per pair: marking madvise (DONTFORK/DOFORK/WIPEONFORK/"
		"KEEPONFORK) and populate madvise (libsafepin's pre-fault; libibverbs has "
		"none); VMAs: lines of /proc/self/maps at the end of the workload.\n\n");
	fprintf(f, "| workload | marking safepin | marking deferred | marking windowed "
		"| marking libibverbs | populate safepin | populate deferred "
		"| populate windowed | VMAs safepin | VMAs deferred | VMAs windowed "
		"| VMAs libibverbs |\n");
	fprintf(f, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n");
	for (size_t i = 0; i < nresults; i++) {
		const struct result *r = &results[i];

		fprintf(f, "| %s | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f "
			"| %ld | %ld | %ld | %ld |\n",
			r->workload, r->mark_calls[SP], r->mark_calls[SPD], r->mark_calls[SPW],
			r->mark_calls[IBV], r->populate_calls[SP], r->populate_calls[SPD],
			r->populate_calls[SPW], r->vmas[SP], r->vmas[SPD], r->vmas[SPW],
			r->vmas[IBV]);
	}
	fprintf(f, "\nMemory per live range: RssAnon delta / live ranges; libsafepin's "
		"measured in a forked child, where its node memory starts empty.\n\n");
	fprintf(f, "| live ranges | safepin bytes/range | windowed bytes/range "
		"| libibverbs bytes/range |\n|---:|---:|---:|---:|\n");
	for (size_t i = 0; i < nresults; i++)
		if (results[i].n >= 10000)
			fprintf(f, "| %ld | %.1f | %.1f | %.1f |\n", results[i].n,
				results[i].bytes_per_range[SP], results[i].bytes_per_range[SPW],
				results[i].bytes_per_range[IBV]);
	fprintf(f, "\n| pre-fault, fresh 256 MiB | GiB/s |\n|---|---:|\n"
		"| safepin_pin (mark + MADV_POPULATE_WRITE) | %.2f |\n"
		"| MADV_POPULATE_WRITE alone | %.2f |\n| first touch | %.2f |\n",
		pf[0], pf[1], pf[2]);
}

static void write_tsv(const char *prefix)
{
	char path[512];
	FILE *f;

	snprintf(path, sizeof(path), "%s.tsv", prefix);
	if ((f = fopen(path, "w"))) {
		fprintf(f, "# workload\tsafepin_us\tdeferred_us\twindowed_us\tibverbs_us\n");
		for (size_t i = 0; i < nresults; i++)
			if (!results[i].n)
				fprintf(f, "%s\t%.3f\t%.3f\t%.3f\t%.3f\n", results[i].workload,
					results[i].us_per_pair[SP], results[i].us_per_pair[SPD],
					results[i].us_per_pair[SPW], results[i].us_per_pair[IBV]);
		fclose(f);
	}
	snprintf(path, sizeof(path), "%s-live.tsv", prefix);
	if ((f = fopen(path, "w"))) {
		fprintf(f, "# live\tsafepin_us\tdeferred_us\twindowed_us\tibverbs_us"
			"\tsafepin_B\twindowed_B\tibverbs_B\n");
		for (size_t i = 0; i < nresults; i++)
			if (results[i].n)
				fprintf(f, "%ld\t%.3f\t%.3f\t%.3f\t%.3f\t%.1f\t%.1f\t%.1f\n",
					results[i].n, results[i].us_per_pair[SP],
					results[i].us_per_pair[SPD], results[i].us_per_pair[SPW],
					results[i].us_per_pair[IBV], results[i].bytes_per_range[SP],
					results[i].bytes_per_range[SPW],
					results[i].bytes_per_range[IBV]);
		fclose(f);
	}
}

/* --- main ------------------------------------------------------------------ */

static void run_all(const char *name, void (*fn)(struct result *, int, long), long n)
{
	struct result *r = new_result(name);

	for (int li = 0; li < NLIBS; li++) {
		lib_begin(li);
		fn(r, li, n);
		lib_end();
	}
}

static void rereg64k(struct result *r, int li, long n)
{
	wl_rereg(r, li, 64 << 10, 16, n, false);
}

static void rereg1m(struct result *r, int li, long n)
{
	wl_rereg(r, li, 1 << 20, 1, n, false);
}

static void rereg1m_vma(struct result *r, int li, long n)
{
	wl_rereg(r, li, 1 << 20, 1, n, true);
}

static void threads1(struct result *r, int li, long n)
{
	wl_threads(r, li, 1, n, false);
}

static void threads2(struct result *r, int li, long n)
{
	wl_threads(r, li, 2, n, false);
}

/*
 * The *-dw workloads: libsafepin told the device's pin is a write pin
 * (SAFEPIN_PIN_DEVICE_WRITES), so it marks only, as libibverbs' range
 * functions do; libibverbs runs exactly as in the plain workload.
 */
static void random_10x(struct result *r, int li, long n)
{
	seed_salt = 0x5851f42d4c957f2dull;
	wl_random(r, li, n);
	seed_salt = 0;
}

static void random_dw(struct result *r, int li, long n)
{
	sp_flags = SAFEPIN_PIN_DEVICE_WRITES;
	seed_salt = 0x14057b7ef767814full;
	wl_random(r, li, n);
	sp_flags = 0;
	seed_salt = 0;
}

static void threads_dw(struct result *r, int li, int nthreads, long n)
{
	sp_flags = SAFEPIN_PIN_DEVICE_WRITES;
	seed_salt = 0x14057b7ef767814full;
	wl_threads(r, li, nthreads, n, false);
	sp_flags = 0;
	seed_salt = 0;
}

static void threads1_dw(struct result *r, int li, long n)
{
	threads_dw(r, li, 1, n);
}

static void threads2_dw(struct result *r, int li, long n)
{
	threads_dw(r, li, 2, n);
}

static void rereg_threads1(struct result *r, int li, long n)
{
	wl_threads(r, li, 1, n, true);
}

static void rereg_threads2(struct result *r, int li, long n)
{
	wl_threads(r, li, 2, n, true);
}

int main(int argc, char **argv)
{
	const char *tsv = NULL, *md = NULL;
	static const long lives[] = { 1, 100, 10000, 100000 };
	double pf[3];
	FILE *f;
	int opt;

	while ((opt = getopt(argc, argv, "n:t:M:")) != -1) {
		switch (opt) {
		case 'n':
			pairs = atol(optarg);
			break;
		case 't':
			tsv = optarg;
			break;
		case 'M':
			md = optarg;
			break;
		default:
			fprintf(stderr, "usage: range_bench [-n PAIRS] [-t TSV_PREFIX] [-M MD]\n");
			return 2;
		}
	}
	if (ibv_fork_init() || ibv_is_fork_initialized() != 1) {
		fprintf(stderr, "range_bench: libibverbs fork support not enabled (%d)\n",
			ibv_is_fork_initialized());
		return 1;
	}
	arena = map_faulted(ARENA);

	run_all("rereg-64k", rereg64k, pairs);
	run_all("rereg-1m", rereg1m, pairs / 10);
	run_all("rereg-1m-vma", rereg1m_vma, pairs / 100);
	run_all("rereg-held", wl_rereg_held, pairs);
	run_all("random", wl_random, pairs);
	/* 10x the pairs: windowed opens each of the arena's 512 windows once
	 * per run (~5 us each, ~0.13 us per pair of a 20k run). */
	run_all("random-10x", random_10x, pairs * 10);
	run_all("random-dw", random_dw, pairs);
	run_all("nested", wl_nested, pairs);
	run_all("overlap", wl_overlap, pairs);
	/* 10x the pairs: a 20k-pair windowed run is mostly its threads
	 * opening the arena's 512 windows (~5 us each, both threads taking
	 * the mmap write lock for it), not their steady state. */
	run_all("threads-1", threads1, pairs * 10);
	run_all("threads-2", threads2, pairs * 10);
	run_all("threads-1-dw", threads1_dw, pairs * 10);
	run_all("threads-2-dw", threads2_dw, pairs * 10);
	/* 20x the pairs: a revived pair takes ~0.1 us, and 2 ms of threads
	 * measure their start-up and scheduling more than their scaling. */
	run_all("rereg-thr-1", rereg_threads1, pairs * 20);
	run_all("rereg-thr-2", rereg_threads2, pairs * 20);
	for (size_t i = 0; i < sizeof(lives) / sizeof(lives[0]); i++) {
		char name[32];
		struct result *r;

		snprintf(name, sizeof(name), "live-%ld", lives[i]);
		r = new_result(name);
		for (int li = 0; li < NLIBS; li++) {
			lib_begin(li);
			wl_live(r, li, lives[i], pairs);
			lib_end();
		}
	}
	for (int how = 0; how < 3; how++)
		pf[how] = prefault_gibs(how, 256u << 20);

	print_text(pf);
	if (md && (f = fopen(md, "w"))) {
		write_md(f, pf);
		fclose(f);
	}
	if (tsv)
		write_tsv(tsv);
	munmap(arena, ARENA);
	return 0;
}
