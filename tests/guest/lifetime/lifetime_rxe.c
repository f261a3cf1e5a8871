// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * A libibverbs application that gets a memory region's lifetime wrong, run
 * under the LD_PRELOAD shim (safepin-run) on rxe by lifetime-check.  Plain
 * libibverbs calls, not linked with libsafepin.
 *
 *   lifetime_rxe munmap|mremap|dontneed|free|remove|freecall
 *	register an MR, take its memory away that way (without ibv_dereg_mr),
 *	map new memory at the same address and register it again: it must be
 *	marked (VmFlags dc, the bug libibverbs' own fork support has), and an
 *	RDMA WRITE through the new MR must land.  Then deregister the old MR
 *	(succeeds; the new one stays marked) and the new one (unmarked).
 *   lifetime_rxe audit
 *	register an MR, MADV_DOFORK it behind everyone's back (raw syscall),
 *	fork: run with safepin-run --audit, the report at the fork names it.
 *
 * Exit 0, 1 on a failed check, 2 on a setup error.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdint.h>
#include <malloc.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "../verbs/rdma.h"


#define N 16
#define ACCESS (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ)

static char *map_at(void *at, size_t len, bool shared)
{
	char *p = mmap(at, len, PROT_READ | PROT_WRITE,
		       (shared ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS |
		       (at ? MAP_FIXED_NOREPLACE : 0), -1, 0);

	if (p == MAP_FAILED || (at && p != at))
		DIE("mmap at %p", at);
	memset(p, 0x11, len);
	return p;
}

static int audit_mode(struct rdma *r)
{
	char *p = map_at(NULL, N * PAGE, false);
	struct ibv_mr *mr = ibv_reg_mr(r->pd, p, N * PAGE, ACCESS);
	int st;
	pid_t pid;

	if (!mr)
		DIE("ibv_reg_mr");
	CHECK(is_dontfork(p), "registered memory not marked");
	if (syscall(SYS_madvise, p, N * PAGE, MADV_DOFORK))
		DIE("madvise");
	printf("audit: MR %p+%lu unmarked behind the library; forking\n", (void *)p, N * PAGE);
	fflush(stdout);
	pid = fork();
	if (pid == 0)
		_exit(0);
	waitpid(pid, &st, 0);
	CHECK(ibv_dereg_mr(mr) == 0, "dereg");
	return 0;
}

int main(int argc, char **argv)
{
	const char *how = argc > 1 ? argv[1] : "";
	bool shared = !strcmp(how, "remove"), gone = true;
	size_t len = N * PAGE;
	struct ibv_mr *mr1, *mr2, *dst_mr;
	struct rdma r;
	char *p, *dst;

	setvbuf(stdout, NULL, _IONBF, 0);
	/* A fixed mmap threshold: glibc raises it after an mmapped chunk is freed
	 * (libibverbs does that), and freecall needs an mmapped chunk. */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	rdma_open(&r);
	if (!strcmp(how, "audit"))
		return audit_mode(&r) || test_failures ? 1 : 0;

	dst = map_at(NULL, len, false);
	dst_mr = ibv_reg_mr(r.pd, dst, len, ACCESS);
	if (!dst_mr)
		DIE("ibv_reg_mr dst");
	if (!strcmp(how, "freecall")) {
		len = 64 * PAGE;	/* over glibc's mmap threshold: an mmapped chunk */
		p = malloc(len);
		if (!p)
			DIE("malloc");
		memset(p, 0x11, len);
	} else {
		p = map_at(NULL, len, shared);
	}
	mr1 = ibv_reg_mr(r.pd, p, len, ACCESS);
	if (!mr1)
		DIE("ibv_reg_mr");
	CHECK(shared || is_dontfork(p), "registered memory not marked");

	if (!strcmp(how, "munmap")) {
		CHECK(munmap(p, len) == 0, "munmap");
	} else if (!strcmp(how, "mremap")) {
		void *q = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

		CHECK(mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, q) == q, "mremap");
	} else if (!strcmp(how, "dontneed") || !strcmp(how, "free") || shared) {
		int adv = shared ? MADV_REMOVE : !strcmp(how, "free") ? MADV_FREE : MADV_DONTNEED;

		CHECK(madvise(p, len, adv) == 0, "madvise");
		CHECK(shared || !is_dontfork(p), "still marked after the discard");
		gone = false;
	} else if (!strcmp(how, "freecall")) {
		uintptr_t at = (uintptr_t)p & ~(uintptr_t)(PAGE - 1);

		__asm__ volatile("" : "+r"(at));
		free(p);
		p = (char *)at;
		len += PAGE;	/* the chunk's pages, header included */
		gone = true;
	} else {
		DIE("usage: lifetime_rxe munmap|mremap|dontneed|free|remove|freecall|audit");
	}
	if (gone)
		map_at(p, len, shared);
	else
		memset(p, 0x11, len);

	mr2 = ibv_reg_mr(r.pd, p, len, ACCESS);
	if (!mr2)
		DIE("ibv_reg_mr again");
	CHECK(shared || is_dontfork(p), "new memory at the reused address not marked");
	/* The new MR works: RDMA WRITE dst <- p. */
	memset(p, 0x5a, PAGE);
	CHECK(rdma_op(&r, IBV_WR_RDMA_WRITE, p, mr2->lkey, PAGE, (uintptr_t)dst, dst_mr->rkey) == 0,
	      "RDMA WRITE");
	CHECK(dst[0] == 0x5a && dst[PAGE - 1] == 0x5a, "data did not arrive: %#x", dst[0]);

	CHECK(ibv_dereg_mr(mr1) == 0, "dereg of the violated MR");
	CHECK(shared || is_dontfork(p), "dereg of the violated MR unmarked the new one");
	CHECK(ibv_dereg_mr(mr2) == 0, "dereg");
	CHECK(shared || !is_dontfork(p), "still marked after the last dereg");
	CHECK(ibv_dereg_mr(dst_mr) == 0, "dereg dst");
	rdma_close(&r);
	printf("%s %s\n", test_failures ? "FAILED" : "ok", how);
	return test_failures ? 1 : 0;
}
