// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * A legacy-style application, the kind safepin-run is for: it registers a
 * 2 MiB hugetlb receive buffer with plain ibv_reg_mr(), forks a worker that
 * lives on (Python multiprocessing, a PyTorch DataLoader), writes into the
 * buffer in the parent, and then receives an RDMA WRITE into it.
 *
 * On a kernel that shares pinned hugetlb pages copy-on-write with the child
 * (Debian's 5.10), the parent's write moves the parent to a new page while
 * the device keeps the old one: every received byte is lost.  Under the
 * shim the buffer is DONTFORK, there is no COW and the data arrives.
 *
 * Exit status: 0 all 8192 bytes arrived, 1 some were lost, 2 setup error.
 */
#include <errno.h>
#include <stdio.h>
#include <string.h>

#include "../verbs/rdma.h"


#define LEN 8192

int main(void)
{
	struct rdma r;
	char *dst, *src;
	struct ibv_mr *mdst, *msrc;
	struct sleeper worker;
	size_t got = 0;

	rdma_open(&r);
	dst = map_buf(HUGE, true);
	src = map_buf(LEN, false);
	memset(dst, 0, HUGE);
	for (size_t i = 0; i < LEN; i++)
		src[i] = (char)(0x5a ^ i);
	mdst = ibv_reg_mr(r.pd, dst, HUGE,
			  IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE);
	msrc = ibv_reg_mr(r.pd, src, LEN, IBV_ACCESS_LOCAL_WRITE);
	if (!mdst || !msrc)
		DIE("ibv_reg_mr: %s", strerror(errno));

	worker = child_sleeper();		/* the worker lives on */
	dst[HUGE - 1] = 1;			/* the parent writes its buffer */
	if (rdma_op(&r, IBV_WR_RDMA_WRITE, src, msrc->lkey, LEN, (uintptr_t)dst, mdst->rkey))
		DIE("RDMA WRITE failed");
	for (size_t i = 0; i < LEN; i++)
		got += dst[i] == (char)(0x5a ^ i);
	child_release(worker);

	printf("legacy: kernel %s, received %zu/%d bytes of the RDMA WRITE\n", guest_kernel(),
	       got, LEN);
	ibv_dereg_mr(msrc);
	ibv_dereg_mr(mdst);
	rdma_close(&r);
	return got == LEN ? 0 : 1;
}
