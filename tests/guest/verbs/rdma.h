/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Small toolkit for the verbs guest tests: a loopback RC QP pair on the
 * guest's rxe device, and what the tests observe of the kernel (VmFlags per
 * page from smaps, PFNs from pagemap), read independently of the library.
 */
#ifndef SAFEPIN_GUEST_RDMA_H
#define SAFEPIN_GUEST_RDMA_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>

#include <infiniband/verbs.h>

#define PAGE 4096ul
#define HUGE (2ul << 20)

extern int test_failures;

#define CHECK(cond, ...)                                                        \
	do {                                                                    \
		if (!(cond)) {                                                  \
			printf("FAIL %s:%d: %s: ", __FILE__, __LINE__, #cond);  \
			printf(__VA_ARGS__);                                    \
			printf("\n");                                           \
			fflush(stdout);                                         \
			test_failures++;                                        \
		}                                                               \
	} while (0)

#define DIE(...)                                                                \
	do {                                                                    \
		printf("ERROR %s:%d: ", __FILE__, __LINE__);                    \
		printf(__VA_ARGS__);                                            \
		printf("\n");                                                   \
		exit(2);                                                        \
	} while (0)

struct rdma {
	struct ibv_context *ctx;
	struct ibv_pd *pd;
	struct ibv_cq *cq;
	struct ibv_qp *qa, *qb;	/* connected to each other */
	int gid_index;
};

/* Open $SAFEPIN_RXE_DEV (else the first device), connect qa <-> qb. */
void rdma_open(struct rdma *r);
void rdma_close(struct rdma *r);
/* Post one RDMA WRITE or READ on qa between (local, lkey) and (raddr, rkey)
 * and wait for its completion. Return 0 or -1 (with a message). */
int rdma_op(struct rdma *r, enum ibv_wr_opcode op, void *local, uint32_t lkey, size_t len,
	    uint64_t raddr, uint32_t rkey);

/* mmap of @len bytes, private anonymous or MAP_HUGETLB (2 MiB). */
void *map_buf(size_t len, bool huge);
void unmap_buf(void *p, size_t len);

/* One char per page of [addr, addr + n * PAGE): 'D' DONTFORK (VmFlags dc),
 * '.' not, ' ' unmapped. */
void page_marks(const void *addr, size_t n, char *out);
bool is_dontfork(const void *addr);
/* PFN of the page containing @addr (pagemap, root only); 0 if not present. */
uint64_t pfn_of(const void *addr);

/* Fork a child that blocks until child_release(); it touches nothing. */
struct sleeper {
	int pid, fd;
};
struct sleeper child_sleeper(void);
void child_release(struct sleeper s);

/* "6.1", "5.10" or "" from SAFEPIN_GUEST_KERNEL. */
const char *guest_kernel(void);

#endif
