// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * rdma_fork_demo: a server and a client connected by an RC queue pair pair
 * (both in this process, over any RDMA device; soft-RoCE works).  Midway,
 * the server forks a worker.  Then the server updates its buffer and the
 * client RDMA-WRITEs into it and RDMA-READs it back.  Each side prints what
 * it sees.
 *
 *   rdma_fork_demo [--unprotected] [--huge] [-d DEVICE]
 *
 * --unprotected registers with plain ibv_reg_mr() instead of
 * safepin_reg_mr(): on a kernel that does not copy pinned pages at fork
 * (hugetlb before ~5.12, anonymous memory before 5.9) the RDMA WRITE then
 * lands in a page the server no longer maps.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <infiniband/verbs.h>
#include <safepin/verbs.h>

#define BUF_SIZE (2ul << 20)
#define XFER 8192

struct endpoint {
	struct ibv_qp *qp;
	char *buf;
	struct ibv_mr *mr;
};

static struct ibv_context *ctx;
static struct ibv_pd *pd;
static struct ibv_cq *cq;
static int gid_index = -1;
static union ibv_gid gid;

static void die(const char *what)
{
	fprintf(stderr, "rdma_fork_demo: %s: %s\n", what, strerror(errno));
	exit(1);
}

static struct ibv_context *open_device(const char *name)
{
	struct ibv_device **list = ibv_get_device_list(NULL);
	struct ibv_context *c = NULL;

	if (!list || !list[0]) {
		errno = ENODEV;
		die("no RDMA device (load rdma_rxe and add an rxe link)");
	}
	for (int i = 0; list[i] && !c; i++)
		if (!name || !strcmp(ibv_get_device_name(list[i]), name))
			c = ibv_open_device(list[i]);
	ibv_free_device_list(list);
	if (!c)
		die("ibv_open_device");
	return c;
}

/* RoCE needs a GID: prefer an IPv4-mapped one (::ffff:a.b.c.d). */
static void pick_gid(void)
{
	struct ibv_port_attr port;

	if (ibv_query_port(ctx, 1, &port))
		die("ibv_query_port");
	for (int i = 0; i < port.gid_tbl_len; i++) {
		union ibv_gid g;
		static const unsigned char v4[12] = { [10] = 0xff, [11] = 0xff };

		if (ibv_query_gid(ctx, 1, i, &g))
			continue;
		if (!memcmp(g.raw, v4, sizeof(v4)) || (gid_index < 0 && g.global.interface_id)) {
			gid_index = i;
			gid = g;
			if (!memcmp(g.raw, v4, sizeof(v4)))
				return;
		}
	}
	if (gid_index < 0) {
		errno = ENODEV;
		die("no usable GID on port 1");
	}
}

static struct ibv_qp *create_qp(void)
{
	struct ibv_qp_init_attr attr = {
		.send_cq = cq, .recv_cq = cq, .qp_type = IBV_QPT_RC,
		.cap = { .max_send_wr = 4, .max_recv_wr = 4, .max_send_sge = 1, .max_recv_sge = 1 },
	};
	struct ibv_qp_attr init = {
		.qp_state = IBV_QPS_INIT, .port_num = 1,
		.qp_access_flags = IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ,
	};
	struct ibv_qp *qp = ibv_create_qp(pd, &attr);

	if (!qp)
		die("ibv_create_qp");
	if (ibv_modify_qp(qp, &init, IBV_QP_STATE | IBV_QP_PKEY_INDEX | IBV_QP_PORT |
			  IBV_QP_ACCESS_FLAGS))
		die("modify QP to INIT");
	return qp;
}

static void connect_qp(struct ibv_qp *qp, uint32_t remote_qpn)
{
	struct ibv_qp_attr rtr = {
		.qp_state = IBV_QPS_RTR, .path_mtu = IBV_MTU_1024, .dest_qp_num = remote_qpn,
		.max_dest_rd_atomic = 1, .min_rnr_timer = 12,
		.ah_attr = { .is_global = 1, .port_num = 1,
			     .grh = { .dgid = gid, .sgid_index = (uint8_t)gid_index,
				      .hop_limit = 1 } },
	};
	struct ibv_qp_attr rts = {
		.qp_state = IBV_QPS_RTS, .timeout = 14, .retry_cnt = 7, .rnr_retry = 7,
		.max_rd_atomic = 1,
	};

	if (ibv_modify_qp(qp, &rtr, IBV_QP_STATE | IBV_QP_AV | IBV_QP_PATH_MTU |
			  IBV_QP_DEST_QPN | IBV_QP_RQ_PSN | IBV_QP_MAX_DEST_RD_ATOMIC |
			  IBV_QP_MIN_RNR_TIMER))
		die("modify QP to RTR");
	if (ibv_modify_qp(qp, &rts, IBV_QP_STATE | IBV_QP_TIMEOUT | IBV_QP_RETRY_CNT |
			  IBV_QP_RNR_RETRY | IBV_QP_SQ_PSN | IBV_QP_MAX_QP_RD_ATOMIC))
		die("modify QP to RTS");
}

static char *alloc_buf(bool huge)
{
	int flags = MAP_PRIVATE | MAP_ANONYMOUS | (huge ? MAP_HUGETLB : 0);
	char *p = mmap(NULL, BUF_SIZE, PROT_READ | PROT_WRITE, flags, -1, 0);

	if (p == MAP_FAILED)
		die(huge ? "mmap(MAP_HUGETLB): reserve huge pages first" : "mmap");
	return p;
}

/* The client moves XFER bytes between its buffer and the server's MR. */
static void rdma(struct endpoint *client, struct endpoint *server, enum ibv_wr_opcode op)
{
	struct ibv_sge sge = { (uintptr_t)client->buf, XFER, client->mr->lkey };
	struct ibv_send_wr wr = {
		.sg_list = &sge, .num_sge = 1, .opcode = op, .send_flags = IBV_SEND_SIGNALED,
		.wr.rdma = { (uintptr_t)server->buf, server->mr->rkey },
	}, *bad;
	struct ibv_wc wc;
	int n;

	if (ibv_post_send(client->qp, &wr, &bad))
		die("ibv_post_send");
	while ((n = ibv_poll_cq(cq, 1, &wc)) == 0)
		;
	if (n < 0 || wc.status != IBV_WC_SUCCESS) {
		fprintf(stderr, "rdma_fork_demo: completion error: %s\n",
			n < 0 ? "poll" : ibv_wc_status_str(wc.status));
		exit(1);
	}
}

static size_t count_equal(const char *a, const char *b, size_t n)
{
	size_t same = 0;

	for (size_t i = 0; i < n; i++)
		same += a[i] == b[i];
	return same;
}

int main(int argc, char **argv)
{
	bool protect = true, huge = false;
	const char *dev = getenv("SAFEPIN_RXE_DEV");
	int access = IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ;
	struct endpoint server, client;
	char expect[XFER];
	int pipefd[2], status, ok;
	pid_t worker;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--unprotected"))
			protect = false;
		else if (!strcmp(argv[i], "--huge"))
			huge = true;
		else if (!strcmp(argv[i], "-d") && i + 1 < argc)
			dev = argv[++i];
		else {
			fprintf(stderr, "usage: %s [--unprotected] [--huge] [-d DEVICE]\n", argv[0]);
			return 2;
		}
	}
	setvbuf(stdout, NULL, _IOLBF, 0);
	ctx = open_device(dev);
	pick_gid();
	pd = ibv_alloc_pd(ctx);
	cq = ibv_create_cq(ctx, 8, NULL, NULL, 0);
	if (!pd || !cq)
		die("ibv_alloc_pd/ibv_create_cq");
	server.qp = create_qp();
	client.qp = create_qp();
	connect_qp(server.qp, client.qp->qp_num);
	connect_qp(client.qp, server.qp->qp_num);

	server.buf = alloc_buf(huge);
	client.buf = alloc_buf(false);
	memset(server.buf, 's', BUF_SIZE);
	server.mr = protect ? safepin_reg_mr(pd, server.buf, BUF_SIZE, access)
			    : ibv_reg_mr(pd, server.buf, BUF_SIZE, access);
	client.mr = safepin_reg_mr(pd, client.buf, BUF_SIZE, access);
	if (!server.mr || !client.mr)
		die("register memory");
	printf("%s, %s %s server buffer, registered with %s\n",
	       ibv_get_device_name(ctx->device), huge ? "2 MiB hugetlb" : "4 KiB-page",
	       "private", protect ? "safepin_reg_mr()" : "plain ibv_reg_mr()");

	/* The server forks a worker, which lives on while the server works. */
	if (pipe(pipefd))
		die("pipe");
	worker = fork();
	if (worker < 0)
		die("fork");
	if (worker == 0) {
		unsigned char vec;
		char c;

		close(pipefd[1]);
		if (mincore(server.buf, 4096, &vec) && errno == ENOMEM)
			printf("  worker (child): the registered buffer is not in this process\n");
		else
			printf("  worker (child): the registered buffer is here, reads '%c'\n",
			       server.buf[0]);
		if (read(pipefd[0], &c, 1) < 0)
			_exit(1);
		_exit(0);
	}
	close(pipefd[0]);

	/* After the fork: the server writes its buffer, the client RDMA-WRITEs it. */
	memset(server.buf, 'p', XFER);
	printf("  server: wrote 'p' into its buffer after the fork\n");
	for (size_t i = 0; i < XFER; i++)
		client.buf[i] = expect[i] = (char)('A' + i % 26);
	rdma(&client, &server, IBV_WR_RDMA_WRITE);
	ok = count_equal(server.buf, expect, XFER) == XFER;
	printf("  server: the client's RDMA WRITE: %zu of %d bytes arrived%s\n",
	       count_equal(server.buf, expect, XFER), XFER,
	       ok ? "" : " -- the NIC wrote a page this process no longer maps");

	/* The server writes again; the client RDMA-READs what the server has. */
	memset(server.buf, 'q', XFER);
	memset(client.buf, 0, XFER);
	rdma(&client, &server, IBV_WR_RDMA_READ);
	memset(expect, 'q', XFER);
	printf("  client: RDMA READ returned %zu of %d of the server's newest bytes\n",
	       count_equal(client.buf, expect, XFER), XFER);
	ok &= count_equal(client.buf, expect, XFER) == XFER;

	close(pipefd[1]);
	waitpid(worker, &status, 0);
	if (protect ? safepin_dereg_mr(server.mr) : ibv_dereg_mr(server.mr))
		die("deregister");
	safepin_dereg_mr(client.mr);
	ibv_destroy_qp(server.qp);
	ibv_destroy_qp(client.qp);
	ibv_destroy_cq(cq);
	ibv_dealloc_pd(pd);
	ibv_close_device(ctx);
	printf("  result: %s\n", ok ? "correct" : "DATA LOST");
	return ok ? 0 : 3;
}
