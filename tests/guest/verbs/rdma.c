// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "rdma.h"

int test_failures;

const char *guest_kernel(void)
{
	const char *k = getenv("SAFEPIN_GUEST_KERNEL");

	return k ? k : "";
}

static int find_gid(struct ibv_context *ctx)
{
	struct ibv_port_attr pa;

	if (ibv_query_port(ctx, 1, &pa))
		DIE("ibv_query_port: %s", strerror(errno));
	/* The IPv4-mapped GID (::ffff:a.b.c.d) of the dummy netdev. */
	for (int i = 0; i < pa.gid_tbl_len && i < 64; i++) {
		union ibv_gid g;
		static const uint8_t v4[12] = { [10] = 0xff, [11] = 0xff };

		if (ibv_query_gid(ctx, 1, i, &g))
			continue;
		if (!memcmp(g.raw, v4, sizeof(v4)))
			return i;
	}
	return 1;
}

static void connect_qp(struct ibv_qp *qp, uint32_t dest, const union ibv_gid *gid, int gidx)
{
	struct ibv_qp_attr a = {
		.qp_state = IBV_QPS_INIT,
		.port_num = 1,
		.qp_access_flags = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE |
				   IBV_ACCESS_REMOTE_READ,
	};

	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
				   IBV_QP_ACCESS_FLAGS))
		DIE("modify_qp INIT: %s", strerror(errno));
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTR;
	a.path_mtu = IBV_MTU_1024;
	a.dest_qp_num = dest;
	a.max_dest_rd_atomic = 1;
	a.min_rnr_timer = 12;
	a.ah_attr.is_global = 1;
	a.ah_attr.grh.dgid = *gid;
	a.ah_attr.grh.sgid_index = (uint8_t)gidx;
	a.ah_attr.grh.hop_limit = 1;
	a.ah_attr.port_num = 1;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU | IBV_QP_DEST_QPN |
				   IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
				   IBV_QP_MIN_RNR_TIMER))
		DIE("modify_qp RTR: %s", strerror(errno));
	memset(&a, 0, sizeof(a));
	a.qp_state = IBV_QPS_RTS;
	a.timeout = 14;
	a.retry_cnt = 7;
	a.rnr_retry = 7;
	a.max_rd_atomic = 1;
	if (ibv_modify_qp(qp, &a, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
				   IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC))
		DIE("modify_qp RTS: %s", strerror(errno));
}

void rdma_open(struct rdma *r)
{
	const char *want = getenv("SAFEPIN_RXE_DEV");
	struct ibv_device **list;
	struct ibv_qp_init_attr qa = {
		.qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = 4, .max_recv_wr = 4, .max_send_sge = 1,
			 .max_recv_sge = 1 },
	};
	union ibv_gid gid;
	int n;

	memset(r, 0, sizeof(*r));
	list = ibv_get_device_list(&n);
	if (!list || !n)
		DIE("no RDMA device");
	for (int i = 0; i < n && !r->ctx; i++)
		if (!want || !strcmp(ibv_get_device_name(list[i]), want))
			r->ctx = ibv_open_device(list[i]);
	ibv_free_device_list(list);
	if (!r->ctx)
		DIE("cannot open RDMA device %s", want ? want : "");
	r->pd = ibv_alloc_pd(r->ctx);
	r->cq = ibv_create_cq(r->ctx, 8, NULL, NULL, 0);
	if (!r->pd || !r->cq)
		DIE("pd/cq: %s", strerror(errno));
	qa.send_cq = qa.recv_cq = r->cq;
	r->qa = ibv_create_qp(r->pd, &qa);
	r->qb = ibv_create_qp(r->pd, &qa);
	if (!r->qa || !r->qb)
		DIE("create_qp: %s", strerror(errno));
	r->gid_index = find_gid(r->ctx);
	if (ibv_query_gid(r->ctx, 1, r->gid_index, &gid))
		DIE("query_gid: %s", strerror(errno));
	connect_qp(r->qa, r->qb->qp_num, &gid, r->gid_index);
	connect_qp(r->qb, r->qa->qp_num, &gid, r->gid_index);
}

void rdma_close(struct rdma *r)
{
	ibv_destroy_qp(r->qa);
	ibv_destroy_qp(r->qb);
	ibv_destroy_cq(r->cq);
	ibv_dealloc_pd(r->pd);
	ibv_close_device(r->ctx);
}

int rdma_op(struct rdma *r, enum ibv_wr_opcode op, void *local, uint32_t lkey, size_t len,
	    uint64_t raddr, uint32_t rkey)
{
	struct ibv_sge sge = { (uintptr_t)local, (uint32_t)len, lkey };
	struct ibv_send_wr wr = {
		.wr_id = 1, .sg_list = &sge, .num_sge = 1, .opcode = op,
		.send_flags = IBV_SEND_SIGNALED,
		.wr.rdma = { .remote_addr = raddr, .rkey = rkey },
	}, *bad;
	struct ibv_wc wc;
	struct timespec t0, t;
	int n;

	if (ibv_post_send(r->qa, &wr, &bad)) {
		printf("ibv_post_send: %s\n", strerror(errno));
		return -1;
	}
	clock_gettime(CLOCK_MONOTONIC, &t0);
	while ((n = ibv_poll_cq(r->cq, 1, &wc)) == 0) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (t.tv_sec - t0.tv_sec > 20) {
			printf("no completion after 20 s\n");
			return -1;
		}
		usleep(100);
	}
	if (n < 0 || wc.status != IBV_WC_SUCCESS) {
		printf("completion: %s\n", n < 0 ? "poll failed" : ibv_wc_status_str(wc.status));
		return -1;
	}
	return 0;
}

void *map_buf(size_t len, bool huge)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
		       MAP_PRIVATE | MAP_ANONYMOUS | (huge ? MAP_HUGETLB : 0), -1, 0);

	if (p == MAP_FAILED)
		DIE("mmap %zu%s: %s", len, huge ? " MAP_HUGETLB" : "", strerror(errno));
	return p;
}

void unmap_buf(void *p, size_t len)
{
	munmap(p, len);
}

void page_marks(const void *addr, size_t n, char *out)
{
	uintptr_t a = (uintptr_t)addr & ~(PAGE - 1);
	char line[512];
	uintptr_t vs = 0, ve = 0;
	FILE *f;

	memset(out, ' ', n);
	out[n] = 0;
	f = fopen("/proc/self/smaps", "re");
	if (!f)
		DIE("smaps: %s", strerror(errno));
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;

		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			vs = s;
			ve = e;
		} else if (!strncmp(line, "VmFlags:", 8)) {
			bool dc = strstr(line, " dc") != NULL;

			for (size_t i = 0; i < n; i++) {
				uintptr_t p = a + i * PAGE;

				if (p >= vs && p < ve)
					out[i] = dc ? 'D' : '.';
			}
		}
	}
	fclose(f);
}

bool is_dontfork(const void *addr)
{
	char m[2];

	page_marks(addr, 1, m);
	return m[0] == 'D';
}

uint64_t pfn_of(const void *addr)
{
	uint64_t e = 0;
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		DIE("pagemap: %s", strerror(errno));
	if (pread(fd, &e, 8, (off_t)((uintptr_t)addr / PAGE * 8)) != 8)
		DIE("pagemap read: %s", strerror(errno));
	close(fd);
	return (e >> 63) ? e & ((1ull << 55) - 1) : 0;
}

struct sleeper child_sleeper(void)
{
	struct sleeper s;
	int p[2];
	char c;

	if (pipe(p))
		DIE("pipe: %s", strerror(errno));
	fflush(stdout);
	s.pid = fork();
	if (s.pid < 0)
		DIE("fork: %s", strerror(errno));
	if (!s.pid) {
		close(p[1]);
		while (read(p[0], &c, 1) < 0 && errno == EINTR)
			;
		_exit(0);
	}
	close(p[0]);
	s.fd = p[1];
	return s;
}

void child_release(struct sleeper s)
{
	close(s.fd);
	waitpid(s.pid, NULL, 0);
}
