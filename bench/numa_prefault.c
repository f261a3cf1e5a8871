// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * numa_prefault: how fast a buffer is faulted in, and where its pages land.
 *
 *   numa_prefault [-s MiB] [-r reps]
 *
 * For every node with memory (the target) and for base pages
 * (MADV_NOHUGEPAGE) and THP (MADV_HUGEPAGE), from a thread pinned to CPU 0,
 * each a fresh mapping per repetition:
 *
 *   first touch            the CPU writes one byte per page (no policy)
 *   first touch, policy    the same with the thread's policy MPOL_PREFERRED
 *                          on the target (what an application could do)
 *   POPULATE_WRITE         madvise(MADV_POPULATE_WRITE), no policy
 *   POPULATE_WRITE, policy the same with the policy on the target: the
 *                          kernel's own bound for a placed pre-fault
 *   safepin_pin            the library, no node (mark + pre-fault)
 *   safepin_pin_opts       the library, node = target (+ census of present
 *                          pages, policy switch, placement check)
 *   safepin_alloc          mmap + all of the above in one call
 *
 * Prints a markdown table: median time, MiB/s, and the share of pages on
 * the target node (move_pages() status query, not timed).  Time excludes
 * mmap (except safepin_alloc) and munmap/unpin.
 */
#include <errno.h>
#include <numaif.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <safepin/safepin.h>

#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

#define PAGE 4096ul

static size_t len = 128ul << 20;
static int reps = 3;

enum mode { FIRST_TOUCH, FIRST_TOUCH_POL, POPULATE, POPULATE_POL, PIN, PIN_OPTS, ALLOC, NMODES };
static const char *const names[] = {
	"first touch (CPU writes)", "first touch, thread policy on node",
	"MADV_POPULATE_WRITE", "MADV_POPULATE_WRITE, thread policy on node",
	"safepin_pin (no node)", "safepin_pin_opts (node)", "safepin_alloc (node)",
};

static double now(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static void policy(int node)
{
	unsigned long mask[16] = { 0 };

	if (node < 0) {
		set_mempolicy(MPOL_DEFAULT, NULL, 0);
		return;
	}
	mask[0] = 1ul << node;
	if (set_mempolicy(MPOL_PREFERRED, mask, 1024))
		perror("set_mempolicy");
}

static double share_on(const char *p, int node)
{
	static void *pages[1024];
	static int status[1024];
	size_t n = len / PAGE, on = 0;

	for (size_t i = 0; i < n; i += 1024) {
		size_t k = n - i < 1024 ? n - i : 1024;

		for (size_t j = 0; j < k; j++)
			pages[j] = (void *)(p + (i + j) * PAGE);
		if (move_pages(0, k, pages, NULL, status, 0))
			return -1;
		for (size_t j = 0; j < k; j++)
			on += status[j] == node;
	}
	return (double)on / n;
}

/* One run: returns seconds, or -1 when the mode is not available. */
static double run(enum mode m, int node, int advice, double *share)
{
	struct safepin_pin_opts po = { .size = sizeof(po), .numa_node = node };
	struct safepin_alloc_opts ao = { .size = sizeof(ao), .numa_node = node,
					 .flags = advice == MADV_HUGEPAGE ? SAFEPIN_ALLOC_THP : 0 };
	char *p = NULL;
	double t0, t = -1;
	int ret = 0;

	if (m != ALLOC) {
		p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED)
			return -1;
		madvise(p, len, advice);
	}
	t0 = now();
	switch (m) {
	case FIRST_TOUCH_POL:
		policy(node);
		/* fall through */
	case FIRST_TOUCH:
		for (size_t i = 0; i < len; i += PAGE)
			((volatile char *)p)[i] = 1;
		break;
	case POPULATE_POL:
		policy(node);
		/* fall through */
	case POPULATE:
		ret = madvise(p, len, MADV_POPULATE_WRITE);
		break;
	case PIN:
		ret = safepin_pin(p, len, 0);
		break;
	case PIN_OPTS:
		ret = safepin_pin_opts(p, len, &po);
		break;
	case ALLOC:
		p = safepin_alloc(len, &ao);
		ret = p ? 0 : -1;
		break;
	default:
		break;
	}
	t = now() - t0;
	policy(-1);
	if (ret) {
		t = -1;
	} else {
		*share = share_on(p, node);
		if (m == PIN || m == PIN_OPTS)
			safepin_unpin(p, len);
	}
	if (m == ALLOC) {
		if (p)
			safepin_free(p, len);
	} else {
		munmap(p, len);
	}
	return t;
}

int main(int argc, char **argv)
{
	cpu_set_t cpus;
	int opt;

	while ((opt = getopt(argc, argv, "s:r:")) != -1) {
		if (opt == 's')
			len = strtoul(optarg, NULL, 10) << 20;
		else if (opt == 'r')
			reps = atoi(optarg);
		else
			return 2;
	}
	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);

	printf("buffer %zu MiB, median of %d runs, thread on CPU 0 (node 0)\n\n", len >> 20, reps);
	printf("| pages | target node | method | median ms | MiB/s | pages on target |\n");
	printf("|---|---|---|---:|---:|---:|\n");
	for (int kind = 0; kind < 2; kind++) {
		int advice = kind ? MADV_HUGEPAGE : MADV_NOHUGEPAGE;

		for (int node = 0; node < 64; node++) {
			char path[64];

			snprintf(path, sizeof(path), "/sys/devices/system/node/node%d", node);
			if (access(path, F_OK))
				break;
			for (int m = 0; m < NMODES; m++) {
				double t[16], share = 0;
				int ok = 1;

				for (int r = 0; r < reps && r < 16; r++) {
					t[r] = run(m, node, advice, &share);
					ok &= t[r] >= 0;
				}
				if (!ok) {
					printf("| %s | %d | %s | n/a | n/a | n/a |\n",
					       kind ? "THP" : "4 KiB", node, names[m]);
					continue;
				}
				qsort(t, reps, sizeof(t[0]), cmp);
				printf("| %s | %d | %s | %.1f | %.0f | %.1f%% |\n",
				       kind ? "THP" : "4 KiB", node, names[m], t[reps / 2] * 1e3,
				       (len >> 20) / t[reps / 2], share * 100);
			}
		}
	}
	return 0;
}
