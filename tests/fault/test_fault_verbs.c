// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The verbs wrappers under fault injection (fault.h), against a fake
 * provider defined here (as in tests/unit/test_verbs_fake.c): the provider
 * calls -- ibv_dontfork_range(), ibv_reg_mr_iova2(), ibv_dereg_mr(),
 * ibv_rereg_mr() -- are failure points too, next to every call the engine
 * makes.  ibv_dofork_range() is not: the wrappers ignore its result by
 * design (it runs after the device let go; a failure there keeps pages
 * marked in libibverbs' own count, the safe side).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include <safepin/verbs.h>

#include "fault.h"

void *__real_calloc(size_t n, size_t size);

enum { DEV_DONTFORK = 1, DEV_REG, DEV_DEREG, DEV_REREG };

static int device_fails(long which)
{
	int e = fault_point(FK_DEVICE, which);

	if (e)
		errno = e;
	return e;
}

struct ibv_mr *ibv_reg_mr_iova2(struct ibv_pd *pd, void *addr, size_t length, uint64_t iova,
				unsigned int access)
{
	struct ibv_mr *mr;

	(void)iova;
	(void)access;
	if (device_fails(DEV_REG))
		return NULL;
	mr = __real_calloc(1, sizeof(*mr));
	if (!mr)
		abort();
	mr->pd = pd;
	mr->addr = addr;
	mr->length = length;
	return mr;
}

int ibv_dereg_mr(struct ibv_mr *mr)
{
	int e = device_fails(DEV_DEREG);

	if (e)
		return e;
	free(mr);
	return 0;
}

int ibv_rereg_mr(struct ibv_mr *mr, int flags, struct ibv_pd *pd, void *addr, size_t length,
		 int access)
{
	(void)pd;
	(void)access;
	if (device_fails(DEV_REREG))
		return IBV_REREG_MR_ERR_CMD;
	if (flags & IBV_REREG_MR_CHANGE_TRANSLATION) {
		mr->addr = addr;
		mr->length = length;
	}
	return 0;
}

int ibv_dontfork_range(void *base, size_t size);
int ibv_dofork_range(void *base, size_t size);
int ibv_dontfork_range(void *base, size_t size)
{
	(void)base;
	(void)size;
	return device_fails(DEV_DONTFORK) ? -1 : 0;
}

int ibv_dofork_range(void *base, size_t size)
{
	(void)base;
	(void)size;
	return 0;
}

/* As after ibv_fork_init(): the library keeps calling the two above, so
 * that a failing ibv_dontfork_range() can be injected at every step. */
enum ibv_fork_status ibv_is_fork_initialized(void)
{
	return IBV_FORK_ENABLED;
}

#define RW (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE)
#define A_ADDR (fault_buf + PAGE + 100)
#define A_LEN (3 * PAGE)
#define B_ADDR (fault_buf + 8 * PAGE)
#define B_LEN (3 * PAGE + 5)

static struct ibv_pd pd;
static struct ibv_mr *mr, *other;

static void must(bool ok, const char *what)
{
	if (!ok) {
		fprintf(stderr, "setup: %s: %s\n", what, strerror(errno));
		_exit(1);
	}
}

static void nothing(void)
{
}

static int reg_a(void)
{
	mr = safepin_reg_mr(&pd, A_ADDR, A_LEN, RW);
	return mr ? 0 : errno;
}

static void dereg_a(void)
{
	must(safepin_dereg_mr(mr) == 0, "dereg");
}

static void overlapping(void)
{
	other = safepin_reg_mr(&pd, fault_buf, 2 * PAGE, RW);
	must(other != NULL, "reg 0-1");
}

static void overlapping_and_a(void)
{
	overlapping();
	must(reg_a() == 0, "reg A");
}

static int dereg_op(void)
{
	return safepin_dereg_mr(mr);
}

static void rereg_back(void)
{
	must(safepin_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL, A_ADDR, A_LEN, 0) == 0,
	     "rereg back");
}

static int rereg_to_b(void)
{
	return safepin_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL, B_ADDR, B_LEN, 0)
		       ? errno
		       : 0;
}

static void undo_rereg(void)
{
	rereg_back();
}

static void reg_again(void)
{
	must(reg_a() == 0, "reg A again");
}

static const struct scenario scenarios[] = {
	{ "reg_mr, fresh", nothing, reg_a, dereg_a, TOLERATE_NONE, false },
	{ "reg_mr over a live region", overlapping, reg_a, dereg_a, TOLERATE_NONE, true },
	{ "dereg_mr", overlapping_and_a, dereg_op, reg_again, TOLERATE_UNMARK, true },
	{ "rereg_mr CHANGE_TRANSLATION", overlapping_and_a, rereg_to_b, undo_rereg,
	  TOLERATE_UNMARK, true },
};

int main(void)
{
	int fails = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	fault_buf = mmap(NULL, FAULT_BUF_PAGES * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fault_buf == MAP_FAILED)
		return 1;
	/* Initialise the library and the verbs table outside the children. */
	overlapping();
	if (safepin_dereg_mr(other))
		return 1;
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		fails += fault_run(&scenarios[i]) < 0;
	fault_summary("test_fault_verbs");
	return fails ? 1 : 0;
}
