// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Registers memory through one libibverbs entry point and checks what the
 * shim (libsafepin_preload.so, run with safepin-run) did to it: the range is
 * DONTFORK (VmFlags dc) while registered and not after deregistration.  The
 * driver (preload-check) checks the shim's statistics afterwards: each call
 * counted exactly once.  Written like an application that knows nothing of
 * libsafepin: plain libibverbs calls.
 *
 *   preload_reg const      ibv_reg_mr, constant flags (ibv_reg_mr@@IBVERBS_1.1)
 *   preload_reg var        non-constant flags: the verbs.h macro calls
 *                          ibv_reg_mr_iova2 directly
 *   preload_reg iova       ibv_reg_mr_iova (constant flags)
 *   preload_reg forkinit   ibv_fork_init() first, then as "const"
 *   preload_reg dontfork   ibv_dontfork_range/ibv_dofork_range semantics
 *   preload_reg secure     run setuid (AT_SECURE): the shim only forwards
 */
#include <dlfcn.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/auxv.h>

#include <infiniband/verbs.h>

#include "../verbs/rdma.h"


/* Exported by libibverbs, declared in no header of rdma-core 44. */
int ibv_dontfork_range(void *base, size_t size);
int ibv_dofork_range(void *base, size_t size);

static struct ibv_context *ctx;
static struct ibv_pd *pd;

static void open_pd(void)
{
	const char *want = getenv("SAFEPIN_RXE_DEV");
	struct ibv_device **list;
	int n;

	list = ibv_get_device_list(&n);
	if (!list || !n)
		DIE("no RDMA device");
	for (int i = 0; i < n && !ctx; i++)
		if (!want || !strcmp(ibv_get_device_name(list[i]), want))
			ctx = ibv_open_device(list[i]);
	ibv_free_device_list(list);
	if (!ctx)
		DIE("cannot open %s", want ? want : "a device");
	pd = ibv_alloc_pd(ctx);
	if (!pd)
		DIE("ibv_alloc_pd: %s", strerror(errno));
}

static void close_pd(void)
{
	ibv_dealloc_pd(pd);
	ibv_close_device(ctx);
}

/* Which object ibv_reg_mr binds to in this process. */
static const char *reg_mr_owner(void)
{
	Dl_info info;
	void *fn = dlsym(RTLD_DEFAULT, "ibv_reg_mr");

	if (!fn || !dladdr(fn, &info) || !info.dli_fname)
		return "?";
	return info.dli_fname;
}

static void expect_marks(const char *what, void *buf, size_t pages, const char *want)
{
	char got[64];

	page_marks(buf, pages, got);
	got[pages] = '\0';
	CHECK(!strcmp(got, want), "%s: pages %s, expected %s", what, got, want);
}

static int run_reg(const char *mode, unsigned int var_access)
{
	size_t len = 4 * PAGE;
	char *buf = map_buf(len, false);
	struct ibv_mr *mr;

	memset(buf, 1, len);
	if (!strcmp(mode, "forkinit")) {
		CHECK(ibv_fork_init() == 0, "ibv_fork_init failed");
		CHECK(ibv_is_fork_initialized() == IBV_FORK_ENABLED,
		      "ibv_is_fork_initialized() = %d, expected ENABLED under the shim",
		      (int)ibv_is_fork_initialized());
	}
	if (!strcmp(mode, "var"))
		mr = ibv_reg_mr(pd, buf + PAGE, 2 * PAGE, var_access);
	else if (!strcmp(mode, "iova"))
		mr = ibv_reg_mr_iova(pd, buf + PAGE, 2 * PAGE, 0x10000, IBV_ACCESS_LOCAL_WRITE);
	else
		mr = ibv_reg_mr(pd, buf + PAGE, 2 * PAGE, IBV_ACCESS_LOCAL_WRITE);
	if (!mr)
		DIE("registration: %s", strerror(errno));
	expect_marks("registered", buf, 4, ".DD.");
	CHECK(ibv_dereg_mr(mr) == 0, "ibv_dereg_mr: %s", strerror(errno));
	expect_marks("deregistered", buf, 4, "....");
	unmap_buf(buf, len);
	return 0;
}

/* The semantics preload.c documents for the dontfork/dofork pair. */
static int run_dontfork(void)
{
	size_t len = 4 * PAGE;
	char *buf = map_buf(len, false);
	struct ibv_mr *mr;

	memset(buf, 1, len);
	CHECK(ibv_dontfork_range(buf, 3 * PAGE) == 0, "dontfork");
	expect_marks("dontfork 3 pages", buf, 4, "DDD.");
	CHECK(ibv_dontfork_range(buf, 3 * PAGE) == 0, "dontfork again");
	CHECK(ibv_dofork_range(buf, 3 * PAGE) == 0, "dofork");
	expect_marks("dontfork twice, dofork once", buf, 4, "DDD.");
	/* A sub-range: split, the rest stays marked (libibverbs' page counts). */
	CHECK(ibv_dofork_range(buf + PAGE, PAGE) == 0, "dofork middle");
	expect_marks("dofork of the middle page", buf, 4, "D.D.");
	CHECK(ibv_dofork_range(buf, PAGE) == 0, "dofork first");
	CHECK(ibv_dofork_range(buf + 2 * PAGE, PAGE) == 0, "dofork third");
	expect_marks("all released", buf, 4, "....");
	/* An unbalanced dofork must not unmark a live memory region. */
	mr = ibv_reg_mr(pd, buf, 2 * PAGE, IBV_ACCESS_LOCAL_WRITE);
	if (!mr)
		DIE("ibv_reg_mr: %s", strerror(errno));
	CHECK(ibv_dofork_range(buf, 2 * PAGE) == 0, "unmatched dofork");
	expect_marks("region after an unmatched dofork", buf, 4, "DD..");
	CHECK(ibv_dereg_mr(mr) == 0, "ibv_dereg_mr");
	expect_marks("region deregistered", buf, 4, "....");
	unmap_buf(buf, len);
	return 0;
}

/* AT_SECURE: the shim is loaded (from /etc/ld.so.preload) but forwards only. */
static int run_secure(void)
{
	size_t len = 2 * PAGE;
	char *buf = map_buf(len, false);
	struct ibv_mr *mr;
	enum ibv_fork_status st;

	CHECK(getauxval(AT_SECURE) == 1, "not running with AT_SECURE");
	memset(buf, 1, len);
	mr = ibv_reg_mr(pd, buf, len, IBV_ACCESS_LOCAL_WRITE);
	if (!mr)
		DIE("ibv_reg_mr: %s", strerror(errno));
	/* libibverbs' own fork support is off: nothing marks the range. */
	expect_marks("registered, secure", buf, 2, "..");
	st = ibv_is_fork_initialized();
	CHECK(st != IBV_FORK_ENABLED, "ibv_is_fork_initialized() = ENABLED: not forwarded");
	CHECK(ibv_dereg_mr(mr) == 0, "ibv_dereg_mr");
	unmap_buf(buf, len);
	return 0;
}

int main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";
	const char *owner = reg_mr_owner();
	/* Not a compile-time constant: the verbs.h macro picks ibv_reg_mr_iova2. */
	unsigned int var_access = (unsigned int)strtoul(argc > 2 ? argv[2] : "1", NULL, 0);

	printf("%s: ibv_reg_mr is %s, kernel %s\n", mode, owner, guest_kernel());
	if (!strstr(owner, "libsafepin_preload"))
		DIE("not running under libsafepin_preload.so (use safepin-run)");
	open_pd();
	if (!strcmp(mode, "const") || !strcmp(mode, "var") || !strcmp(mode, "iova") ||
	    !strcmp(mode, "forkinit"))
		run_reg(mode, var_access);
	else if (!strcmp(mode, "dontfork"))
		run_dontfork();
	else if (!strcmp(mode, "secure"))
		run_secure();
	else
		DIE("unknown mode '%s'", mode);
	close_pd();
	printf("%s: %s\n", mode, test_failures ? "FAILED" : "ok");
	return test_failures ? 1 : 0;
}
