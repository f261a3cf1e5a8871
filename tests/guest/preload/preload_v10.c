// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * A program bound to libibverbs' IBVERBS_1.0 compat ABI (a binary built
 * against the headers of 2006): ibv_reg_mr@IBVERBS_1.0 takes a struct
 * ibv_pd_1_0 (old layout) from ibv_alloc_pd@IBVERBS_1.0 and so on.  The
 * shim must forward it untouched and still mark the range.  The objects are
 * opaque here: nothing of the 1.0 layouts is needed.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../verbs/rdma.h"


void **v10_get_device_list(int *n);
void v10_free_device_list(void **list);
void *v10_open_device(void *dev);
int v10_close_device(void *ctx);
void *v10_alloc_pd(void *ctx);
int v10_dealloc_pd(void *pd);
void *v10_reg_mr(void *pd, void *addr, size_t length, int access);
int v10_dereg_mr(void *mr);
__asm__(".symver v10_get_device_list, ibv_get_device_list@IBVERBS_1.0");
__asm__(".symver v10_free_device_list, ibv_free_device_list@IBVERBS_1.0");
__asm__(".symver v10_open_device, ibv_open_device@IBVERBS_1.0");
__asm__(".symver v10_close_device, ibv_close_device@IBVERBS_1.0");
__asm__(".symver v10_alloc_pd, ibv_alloc_pd@IBVERBS_1.0");
__asm__(".symver v10_dealloc_pd, ibv_dealloc_pd@IBVERBS_1.0");
__asm__(".symver v10_reg_mr, ibv_reg_mr@IBVERBS_1.0");
__asm__(".symver v10_dereg_mr, ibv_dereg_mr@IBVERBS_1.0");

int main(void)
{
	char *buf = map_buf(3 * PAGE, false), marks[4] = { 0 };
	void **list, *ctx, *pd, *mr;
	Dl_info info;
	int n;

	if (!dladdr((void *)v10_reg_mr, &info) || !strstr(info.dli_fname, "libsafepin_preload"))
		DIE("ibv_reg_mr@IBVERBS_1.0 is not the shim's (%s): use safepin-run",
		    info.dli_fname ? info.dli_fname : "?");
	list = v10_get_device_list(&n);
	if (!list || !n)
		DIE("no device (1.0 API)");
	ctx = v10_open_device(list[0]);
	if (!ctx)
		DIE("ibv_open_device@1.0: %s", strerror(errno));
	pd = v10_alloc_pd(ctx);
	if (!pd)
		DIE("ibv_alloc_pd@1.0: %s", strerror(errno));
	memset(buf, 1, 3 * PAGE);
	mr = v10_reg_mr(pd, buf + PAGE, PAGE, IBV_ACCESS_LOCAL_WRITE);
	if (!mr)
		DIE("ibv_reg_mr@1.0: %s", strerror(errno));
	page_marks(buf, 3, marks);
	CHECK(!strcmp(marks, ".D."), "registered (1.0): pages %s, expected .D.", marks);
	CHECK(v10_dereg_mr(mr) == 0, "ibv_dereg_mr@1.0: %s", strerror(errno));
	page_marks(buf, 3, marks);
	CHECK(!strcmp(marks, "..."), "deregistered (1.0): pages %s, expected ...", marks);
	v10_dealloc_pd(pd);
	v10_close_device(ctx);
	v10_free_device_list(list);
	printf("v10: %s\n", test_failures ? "FAILED" : "ok");
	return test_failures ? 1 : 0;
}
