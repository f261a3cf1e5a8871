// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * A loader in the style of NCCL: not linked with libibverbs, it
 * dlopen()s libibverbs.so.1 (RTLD_LOCAL: not in the global scope) and takes
 * every function from the handle with dlsym()/dlvsym(), which search the
 * handle's object and never the LD_PRELOAD shim.  The shim interposes
 * dlsym/dlvsym and must hand out its own registration functions here, count
 * each registration once and mark the range; lookups it does not wrap must
 * come back untouched, and dlsym(RTLD_NEXT) must still search after the
 * CALLER (this program), not after the shim.
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include <stdlib.h>
#include <sys/mman.h>

#include <infiniband/verbs.h>

#include "marks.h"

#define PAGE 4096ul

static int test_failures;

#define CHECK(cond, ...)                                                        \
	do {                                                                    \
		if (!(cond)) {                                                  \
			printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);  \
			printf(__VA_ARGS__);                                    \
			printf("\n");                                           \
			test_failures++;                                        \
		}                                                               \
	} while (0)
#define DIE(...)                                                                \
	do {                                                                    \
		printf("ERROR: " __VA_ARGS__);                                  \
		printf("\n");                                                   \
		exit(2);                                                        \
	} while (0)

/* The pre-2.34 binding of dlsym (what a binary built on an older distribution uses). */
void *old_dlsym(void *handle, const char *name);
__asm__(".symver old_dlsym, dlsym@GLIBC_2.2.5");

static const char *owner(void *fn)
{
	Dl_info info;

	if (!fn || !dladdr(fn, &info) || !info.dli_fname)
		return "?";
	return info.dli_fname;
}

#define FN(h, name) dlsym(h, name)

int main(void)
{
	void *h = dlopen("libibverbs.so.1", RTLD_NOW | RTLD_LOCAL);
	struct ibv_device **(*get_list)(int *);
	void (*free_list)(struct ibv_device **);
	const char *(*dev_name)(struct ibv_device *);
	struct ibv_context *(*open_dev)(struct ibv_device *);
	int (*close_dev)(struct ibv_context *);
	struct ibv_pd *(*alloc_pd)(struct ibv_context *);
	int (*dealloc_pd)(struct ibv_pd *);
	struct ibv_mr *(*reg)(struct ibv_pd *, void *, size_t, int);
	struct ibv_mr *(*reg2)(struct ibv_pd *, void *, size_t, uint64_t, unsigned int);
	int (*dereg)(struct ibv_mr *);
	struct ibv_device **list;
	struct ibv_context *ctx = NULL;
	struct ibv_pd *pd;
	struct ibv_mr *mr, *mr2;
	char *buf = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	char marks[5] = { 0 };
	const char *want = getenv("SAFEPIN_RXE_DEV");
	int n;

	if (!h || buf == MAP_FAILED)
		DIE("dlopen: %s", dlerror());
	get_list = (struct ibv_device **(*)(int *))FN(h, "ibv_get_device_list");
	free_list = (void (*)(struct ibv_device **))FN(h, "ibv_free_device_list");
	dev_name = (const char *(*)(struct ibv_device *))FN(h, "ibv_get_device_name");
	open_dev = (struct ibv_context * (*)(struct ibv_device *)) FN(h, "ibv_open_device");
	close_dev = (int (*)(struct ibv_context *))FN(h, "ibv_close_device");
	alloc_pd = (struct ibv_pd * (*)(struct ibv_context *)) FN(h, "ibv_alloc_pd");
	dealloc_pd = (int (*)(struct ibv_pd *))FN(h, "ibv_dealloc_pd");
	reg = (struct ibv_mr * (*)(struct ibv_pd *, void *, size_t, int))
		dlvsym(h, "ibv_reg_mr", "IBVERBS_1.1");
	reg2 = (struct ibv_mr * (*)(struct ibv_pd *, void *, size_t, uint64_t, unsigned int))
		old_dlsym(h, "ibv_reg_mr_iova2");
	dereg = (int (*)(struct ibv_mr *))FN(h, "ibv_dereg_mr");
	if (!get_list || !free_list || !dev_name || !open_dev || !close_dev || !alloc_pd ||
	    !dealloc_pd || !reg || !reg2 || !dereg)
		DIE("missing symbol");

	printf("dlvsym(h, ibv_reg_mr, IBVERBS_1.1) -> %s\n", owner((void *)reg));
	printf("dlsym@GLIBC_2.2.5(h, ibv_reg_mr_iova2) -> %s\n", owner((void *)reg2));
	printf("dlsym(h, ibv_dereg_mr) -> %s\n", owner((void *)dereg));
	printf("dlsym(h, ibv_alloc_pd) -> %s\n", owner((void *)alloc_pd));
	CHECK(strstr(owner((void *)reg), "libsafepin_preload"), "ibv_reg_mr not redirected");
	CHECK(strstr(owner((void *)reg2), "libsafepin_preload"), "ibv_reg_mr_iova2 not redirected");
	CHECK(strstr(owner((void *)dereg), "libsafepin_preload"), "ibv_dereg_mr not redirected");
	CHECK(strstr(owner((void *)alloc_pd), "libibverbs"), "ibv_alloc_pd changed");
	/* libibverbs is local: only the shim exports ibv_reg_mr globally, and
	 * it comes after this program in the search order. */
	CHECK(strstr(owner(dlsym(RTLD_NEXT, "ibv_reg_mr")), "libsafepin_preload"),
	      "dlsym(RTLD_NEXT) did not search after the caller: %s",
	      owner(dlsym(RTLD_NEXT, "ibv_reg_mr")));
	CHECK(dlsym(RTLD_DEFAULT, "ibv_alloc_pd") == NULL, "RTLD_DEFAULT sees a local library");
	CHECK(dlvsym(h, "ibv_reg_mr", "IBVERBS_9.9") == NULL, "unknown version found");

	list = get_list(&n);
	for (int i = 0; list && i < n && !ctx; i++)
		if (!want || !strcmp(dev_name(list[i]), want))
			ctx = open_dev(list[i]);
	if (!ctx)
		DIE("no device");
	free_list(list);
	pd = alloc_pd(ctx);
	if (!pd)
		DIE("ibv_alloc_pd: %s", strerror(errno));
	memset(buf, 1, 4 * PAGE);
	mr = reg(pd, buf, PAGE, IBV_ACCESS_LOCAL_WRITE);
	mr2 = reg2(pd, buf + 2 * PAGE, PAGE, (uintptr_t)buf, IBV_ACCESS_LOCAL_WRITE);
	if (!mr || !mr2)
		DIE("registration: %s", strerror(errno));
	dc_marks(buf, 4, marks);
	CHECK(!strcmp(marks, "D.D."), "registered: pages %s, expected D.D.", marks);
	CHECK(dereg(mr) == 0 && dereg(mr2) == 0, "ibv_dereg_mr");
	dc_marks(buf, 4, marks);
	CHECK(!strcmp(marks, "...."), "deregistered: pages %s, expected ....", marks);
	dealloc_pd(pd);
	close_dev(ctx);
	printf("dlopen: %s\n", test_failures ? "FAILED" : "ok");
	return test_failures ? 1 : 0;
}
