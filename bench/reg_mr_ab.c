// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * reg_mr_ab: raw ibv_reg_mr + ibv_dereg_mr against safepin_reg_mr +
 * safepin_dereg_mr in the library's default mode (deferred unmarking,
 * unless SAFEPIN_UNMARK says otherwise; the mode is printed), interleaved
 * cycle by cycle in one process, on two pre-faulted buffers of the same
 * size.  In the default mode the safepin buffer is parked from its second
 * release on, so from the third cycle every registration is a revival.
 *
 * reg_mr_bench gives each case a worker process of its own, and two
 * identical workers differ by several per cent (its control case (e)).
 * Here both sides share the process, the device context, the PD and the
 * moment, so their ratio carries no worker effect.  It is also a floor for
 * any library: the safepin side includes only the library's own work.
 *
 *   reg_mr_ab [-d DEVICE] [-n CYCLES] [-o raw|safepin] SIZE...  (sizes in bytes, K, M)
 *
 * -o runs one side only, for a profiler: perf record of each side alone,
 * same cycle count, shows where the library's extra time goes.
 *
 * Prints one line per size: the medians and their ratio.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <safepin/safepin.h>
#include <safepin/verbs.h>

static double now_us(void)
{
	struct timespec t;

	clock_gettime(CLOCK_MONOTONIC, &t);
	return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

static int by_value(const void *a, const void *b)
{
	double x = *(const double *)a, y = *(const double *)b;

	return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
	qsort(v, (size_t)n, sizeof(*v), by_value);
	return v[n / 2];
}

static _Noreturn void die(const char *what)
{
	fprintf(stderr, "reg_mr_ab: %s: %s\n", what, strerror(errno));
	exit(1);
}

static char *prefaulted(size_t len)
{
	char *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED)
		die("mmap");
	memset(p, 0x5a, len);
	return p;
}

static size_t parse_size(const char *s)
{
	char *end;
	size_t v = strtoul(s, &end, 0);

	if (*end == 'K' || *end == 'k')
		v <<= 10;
	else if (*end == 'M' || *end == 'm')
		v <<= 20;
	return v;
}

int main(int argc, char **argv)
{
	const char *dev = NULL;
	int opt, n = 1000, ndev, only = -1;	/* -1: both sides; 0: raw; 1: safepin */
	struct ibv_device **list;
	struct ibv_context *ctx = NULL;
	struct ibv_pd *pd;

	while ((opt = getopt(argc, argv, "d:n:o:")) != -1) {
		if (opt == 'd')
			dev = optarg;
		else if (opt == 'n')
			n = atoi(optarg);
		else if (opt == 'o' && !strcmp(optarg, "raw"))
			only = 0;
		else if (opt == 'o' && !strcmp(optarg, "safepin"))
			only = 1;
		else
			return 2;
	}
	if (optind >= argc || n < 1) {
		fprintf(stderr, "usage: reg_mr_ab [-d DEVICE] [-n CYCLES] [-o raw|safepin] SIZE...\n");
		return 2;
	}
	list = ibv_get_device_list(&ndev);
	for (int i = 0; list && i < ndev && !ctx; i++)
		if (!dev || !strcmp(ibv_get_device_name(list[i]), dev))
			ctx = ibv_open_device(list[i]);
	if (!ctx || !(pd = ibv_alloc_pd(ctx)))
		die("no RDMA device");
	printf("in-process A/B, %d interleaved cycles per size (raw ibv_reg_mr vs "
	       "safepin_reg_mr, %s unmarking%s):\n", n,
	       safepin_get_unmark() == SAFEPIN_UNMARK_DEFERRED ? "deferred" : "immediate",
	       getenv("SAFEPIN_UNMARK") ? ", set by SAFEPIN_UNMARK" : ": the default");
	for (int a = optind; a < argc; a++) {
		size_t len = parse_size(argv[a]);
		char *raw = prefaulted(len), *sp = prefaulted(len);
		double *t_raw = malloc((size_t)n * sizeof(double));
		double *t_sp = malloc((size_t)n * sizeof(double));

		if (!len || !t_raw || !t_sp)
			die("bad size or no memory");
		for (int i = -3; i < n; i++) {	/* 3 untimed warm-up cycles */
			/* Alternate which side goes first: no order effect. */
			for (int side = 0; side < 2; side++) {
				bool lib = (side ^ (i & 1)) != 0;
				double t0;
				struct ibv_mr *mr;

				if (only >= 0 && lib != (only == 1)) {
					if (i >= 0)	/* not run: no time */
						(lib ? t_sp : t_raw)[i] = 0;
					continue;
				}
				t0 = now_us();
				mr = lib ?
					safepin_reg_mr(pd, sp, len, IBV_ACCESS_LOCAL_WRITE) :
					ibv_reg_mr(pd, raw, len, IBV_ACCESS_LOCAL_WRITE);

				if (!mr || (lib ? safepin_dereg_mr(mr) : ibv_dereg_mr(mr)))
					die(lib ? "safepin_reg_mr/dereg" : "ibv_reg_mr/dereg");
				if (i >= 0)
					(lib ? t_sp : t_raw)[i] = now_us() - t0;
			}
		}
		{
			double r = median(t_raw, n), s = median(t_sp, n);

			printf("  %9zu bytes: raw %.1f us, safepin %.1f us, ratio %.3f\n", len, r,
			       s, s / r);
		}
		free(t_raw);
		free(t_sp);
		munmap(raw, len);
		munmap(sp, len);
	}
	ibv_dealloc_pd(pd);
	ibv_close_device(ctx);
	ibv_free_device_list(list);
	return 0;
}
