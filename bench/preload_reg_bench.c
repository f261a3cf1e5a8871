// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Registration cost seen by an unmodified program: ibv_reg_mr + ibv_dereg_mr
 * of the same buffer in a loop, plain libibverbs calls (run it with and
 * without safepin-run; bench/run-preload-bench does).  The shim's whole cost
 * is here: the data path (perftest) never enters it.
 *
 *   preload_reg_bench [iterations [bytes]]   -> "reg_dereg_us <mean>"
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include <infiniband/verbs.h>

static double now_us(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3;
}

int main(int argc, char **argv)
{
	long iters = argc > 1 ? atol(argv[1]) : 1000;
	size_t len = argc > 2 ? strtoul(argv[2], NULL, 0) : 65536;
	const char *want = getenv("SAFEPIN_RXE_DEV");
	struct ibv_context *ctx = NULL;
	struct ibv_device **list;
	struct ibv_pd *pd;
	char *buf;
	double t0, t1;
	int n;

	list = ibv_get_device_list(&n);
	for (int i = 0; list && i < n && !ctx; i++)
		if (!want || !strcmp(ibv_get_device_name(list[i]), want))
			ctx = ibv_open_device(list[i]);
	if (!ctx || !(pd = ibv_alloc_pd(ctx))) {
		fprintf(stderr, "no RDMA device\n");
		return 2;
	}
	buf = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (buf == MAP_FAILED)
		return 2;
	memset(buf, 1, len);
	t0 = now_us();
	for (long i = 0; i < iters; i++) {
		struct ibv_mr *mr = ibv_reg_mr(pd, buf, len, IBV_ACCESS_LOCAL_WRITE);

		if (!mr || ibv_dereg_mr(mr)) {
			fprintf(stderr, "registration %ld: %s\n", i, strerror(errno));
			return 1;
		}
	}
	t1 = now_us();
	printf("reg_dereg_us %.2f\n", (t1 - t0) / (double)iters);
	ibv_dealloc_pd(pd);
	ibv_close_device(ctx);
	ibv_free_device_list(list);
	return 0;
}
