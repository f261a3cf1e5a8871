// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * verbs_guest TEST: the verbs drop-in API on a real RDMA device (rxe) in a
 * guest kernel.  Runs as root; exit 0 pass, 1 fail, 2 setup error, 77 skip.
 *
 *   write     register, fork, parent writes, RDMA WRITE into the MR: the
 *             parent reads every written byte, PFNs unchanged (anonymous and
 *             hugetlb).  Then the same without protection: on 5.10 the
 *             hugetlb case MUST lose the data (proves the test can fail).
 *   read      register, fork, parent writes, RDMA READ returns the newest bytes
 *   overlap   overlapping MRs in two PDs, deregistered in every order:
 *             VmFlags equal what the live MRs imply at every step
 *   rereg     rereg CHANGE_TRANSLATION moves the marking (or, where the
 *             provider cannot, fails leaving everything as it was); provider
 *             failures leave nothing marked with plain libibverbs' errno
 *   memlock   (run as nobody with a tiny RLIMIT_MEMLOCK) ENOMEM as ibv_reg_mr
 *   forkinit  coexistence with ibv_fork_init()/ibv_dontfork_range()
 *   child     a forked child registers its own memory
 *   subpage   MR on part of a page; the child reads a neighbour on that page
 *   odp       IBV_ACCESS_ON_DEMAND passes through unmarked
 *   deferred  "write" with SAFEPIN_UNMARK_DEFERRED: the MR is registered,
 *             deregistered (parked) and registered again (revived, no
 *             syscall), also after the buffer was unmapped and mapped anew
 *             at the same address while parked: every byte arrives
 *   windowed  "write" with SAFEPIN_UNMARK_WINDOWED: MRs at random places of
 *             a pool whose 2 MiB blocks are open windows, registered
 *             without a madvise(); the fork closes the windows (only the
 *             MR stays hidden from the child) and every byte arrives
 */
#include <errno.h>
#include <inttypes.h>
#include <signal.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <safepin/safepin.h>
#include <safepin/verbs.h>

#include "rdma.h"
#include "registry.h"	/* registry_disable_protection(): test-only */

#define RW (IBV_ACCESS_LOCAL_WRITE | IBV_ACCESS_REMOTE_WRITE | IBV_ACCESS_REMOTE_READ)
#define XFER 8192ul	/* bytes moved by the device in the fork scenarios */

static uint64_t live_regs(void)
{
	struct safepin_stats s = { .size = sizeof(s) };

	if (safepin_get_stats(&s))
		DIE("safepin_get_stats");
	return s.live_registrations;
}

static unsigned char pattern(size_t i, unsigned char seed)
{
	return (unsigned char)(seed ^ (i * 7) ^ (i >> 8));
}

static size_t count_pattern(const unsigned char *p, size_t n, unsigned char seed)
{
	size_t ok = 0;

	for (size_t i = 0; i < n; i++)
		ok += p[i] == pattern(i, seed);
	return ok;
}

/*
 * The seed's scenario: MR on @buf, fork (child lives on), parent writes the
 * buffer, RDMA WRITE of XFER bytes from a fresh source into the MR.
 * Return how many of the XFER bytes the parent sees; *pfn_same whether the
 * parent's PFNs are those the MR was registered with.
 */
/*
 * Deferred unmarking (t_deferred): register and deregister @buf twice, so
 * the second deregistration parks it; with @replace, unmap it and map new
 * memory at the same address while it is parked.  The registration that
 * follows is then revived from the parked one.
 */
static unsigned char *park_first(struct rdma *r, unsigned char *buf, size_t len, bool huge,
				 bool replace)
{
	for (int i = 0; i < 2; i++) {
		struct ibv_mr *mr = safepin_reg_mr(r->pd, buf, len, RW);

		if (!mr)
			DIE("safepin_reg_mr: %s", strerror(errno));
		CHECK(safepin_dereg_mr(mr) == 0, "safepin_dereg_mr: %s", strerror(errno));
	}
	if (replace) {
		void *p = mmap(buf, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS |
			       MAP_FIXED | (huge ? MAP_HUGETLB : 0), -1, 0);

		if (p != buf)
			DIE("mmap MAP_FIXED over the parked buffer: %s", strerror(errno));
		memset(buf, 0xAA, len);
	}
	return buf;
}

enum cycle { PLAIN, PARKED, PARKED_REPLACED };

static uint64_t revived_count(void)
{
	struct safepin_stats s = { .size = sizeof(s) };

	if (safepin_get_stats(&s))
		DIE("safepin_get_stats");
	return s.revived_registrations;
}

/* Whether the last write_after_fork_cycle()'s MR came back from a parked one. */
static bool last_mr_revived;

/*
 * After the fork: the parent writes the complement of what the device will
 * write, so that no byte of a lost transfer matches by chance, then the
 * device RDMA-WRITEs XFER bytes from a fresh source into @mr at @buf.
 * Return how many arrived; *pfn_same whether @buf's PFNs are still @pfn.
 */
static size_t device_writes_after_parent(struct rdma *r, unsigned char *buf,
					 const struct ibv_mr *mr, const uint64_t *pfn,
					 bool *pfn_same)
{
	unsigned char *src = map_buf(XFER, false);	/* mapped after fork: never shared */
	struct ibv_mr *smr;
	size_t ok;

	for (size_t i = 0; i < XFER; i++) {
		buf[i] = (unsigned char)~pattern(i, 0x5A);
		src[i] = pattern(i, 0x5A);
	}
	smr = ibv_reg_mr(r->pd, src, XFER, IBV_ACCESS_LOCAL_WRITE);
	if (!smr)
		DIE("ibv_reg_mr(src): %s", strerror(errno));
	if (rdma_op(r, IBV_WR_RDMA_WRITE, src, smr->lkey, XFER, (uintptr_t)buf, mr->rkey))
		DIE("RDMA WRITE failed");
	ok = count_pattern(buf, XFER, 0x5A);
	*pfn_same = true;
	for (size_t i = 0; i < XFER / PAGE; i++)
		*pfn_same &= pfn_of(buf + i * PAGE) == pfn[i] && pfn[i];
	ibv_dereg_mr(smr);
	unmap_buf(src, XFER);
	return ok;
}

static size_t write_after_fork_cycle(struct rdma *r, bool huge, bool protect, enum cycle cy,
				     bool *pfn_same)
{
	size_t len = huge ? HUGE : 4 * PAGE;
	unsigned char *buf = map_buf(len, huge);
	uint64_t pfn[XFER / PAGE], revived;
	struct sleeper child;
	struct ibv_mr *mr;
	size_t ok;

	registry_disable_protection(!protect);
	memset(buf, 0xAA, len);
	if (cy != PLAIN)
		park_first(r, buf, len, huge, cy == PARKED_REPLACED);
	revived = revived_count();
	mr = safepin_reg_mr(r->pd, buf, len, RW);
	if (!mr)
		DIE("safepin_reg_mr: %s", strerror(errno));
	last_mr_revived = revived_count() == revived + 1;
	for (size_t i = 0; i < XFER / PAGE; i++)
		pfn[i] = pfn_of(buf + i * PAGE);

	child = child_sleeper();
	memset(buf, 0x11, len);
	ok = device_writes_after_parent(r, buf, mr, pfn, pfn_same);
	child_release(child);
	CHECK(safepin_dereg_mr(mr) == 0, "safepin_dereg_mr: %s", strerror(errno));
	registry_disable_protection(false);
	/* Parked again: unmark before the memory goes (see docs/deferred-unmarking.md). */
	if (cy != PLAIN)
		CHECK(safepin_flush() == 0, "safepin_flush: %s", strerror(errno));
	unmap_buf(buf, len);
	return ok;
}

static size_t write_after_fork(struct rdma *r, bool huge, bool protect, bool *pfn_same)
{
	return write_after_fork_cycle(r, huge, protect, PLAIN, pfn_same);
}

static int t_write(void)
{
	const char *k = guest_kernel();
	struct rdma r;

	rdma_open(&r);
	for (int huge = 0; huge < 2; huge++) {
		const char *kind = huge ? "hugetlb 2M" : "anon 4K";
		bool same, same_off;
		size_t on = write_after_fork(&r, huge, true, &same);
		size_t off = write_after_fork(&r, huge, false, &same_off);

		printf("kernel %s, %-10s: protected %zu/%lu bytes, PFNs %s; "
		       "unprotected %zu/%lu bytes, PFNs %s\n", k, kind, on, XFER,
		       same ? "unchanged" : "CHANGED", off, XFER,
		       same_off ? "unchanged" : "changed");
		CHECK(on == XFER, "%s protected: %zu/%lu", kind, on, XFER);
		CHECK(same, "%s protected: the parent's PFNs changed across fork", kind);
		if (huge && !strcmp(k, "5.10")) {
			/* The hazard kernel: without protection the data is lost.
			 * If this passes, the test cannot tell protection from none. */
			CHECK(off < XFER, "5.10 hugetlb unprotected kept %zu/%lu bytes: "
			      "the scenario no longer reproduces the hazard", off, XFER);
			printf("  -> 5.10 hugetlb without protection lost %lu of %lu bytes "
			       "(expected: lost)\n", XFER - off, XFER);
		} else if (off != XFER) {
			printf("  -> note: unprotected lost %lu bytes here\n", XFER - off);
		}
	}
	rdma_close(&r);
	return test_failures ? 1 : 0;
}

static int t_read(void)
{
	struct rdma r;

	rdma_open(&r);
	for (int huge = 0; huge < 2; huge++) {
		size_t len = huge ? HUGE : 4 * PAGE, ok;
		unsigned char *buf = map_buf(len, huge), *dst;
		struct ibv_mr *mr, *dmr;
		struct sleeper child;

		memset(buf, 0x22, len);
		mr = safepin_reg_mr(r.pd, buf, len, RW);
		if (!mr)
			DIE("safepin_reg_mr: %s", strerror(errno));
		child = child_sleeper();
		for (size_t i = 0; i < XFER; i++)	/* the newest bytes */
			buf[i] = pattern(i, 0x3C);
		dst = map_buf(XFER, false);
		dmr = ibv_reg_mr(r.pd, dst, XFER, IBV_ACCESS_LOCAL_WRITE);
		if (!dmr)
			DIE("ibv_reg_mr(dst): %s", strerror(errno));
		if (rdma_op(&r, IBV_WR_RDMA_READ, dst, dmr->lkey, XFER, (uintptr_t)buf, mr->rkey))
			DIE("RDMA READ failed");
		ok = count_pattern(dst, XFER, 0x3C);
		printf("kernel %s, %s: RDMA READ after fork + parent write: %zu/%lu newest bytes\n",
		       guest_kernel(), huge ? "hugetlb 2M" : "anon 4K", ok, XFER);
		CHECK(ok == XFER, "READ returned %zu/%lu of the parent's newest bytes", ok, XFER);
		child_release(child);
		ibv_dereg_mr(dmr);
		unmap_buf(dst, XFER);
		CHECK(safepin_dereg_mr(mr) == 0, "dereg: %s", strerror(errno));
		unmap_buf(buf, len);
	}
	rdma_close(&r);
	return test_failures ? 1 : 0;
}

/* ---- overlap --------------------------------------------------------- */

#define NPAGES 8
struct span {
	size_t off, len;
	int pd;
};
static const struct span spans[] = {
	{ 0, NPAGES * PAGE, 0 },			/* whole buffer, PD 0 */
	{ 0, NPAGES * PAGE, 1 },			/* same range, PD 1 */
	{ PAGE + 100, 2 * PAGE - 50, 0 },		/* nested, unaligned */
	{ 5 * PAGE, PAGE, 1 },				/* nested, one page */
	{ 5 * PAGE + 10, 20, 0 },			/* nested in the nested */
};
#define NSPANS (sizeof(spans) / sizeof(spans[0]))

static void expected_marks(const bool *live, char *out)
{
	for (size_t p = 0; p < NPAGES; p++) {
		out[p] = '.';
		for (size_t i = 0; i < NSPANS; i++) {
			size_t a = spans[i].off / PAGE, b = (spans[i].off + spans[i].len - 1) / PAGE;

			if (live[i] && p >= a && p <= b)
				out[p] = 'D';
		}
	}
	out[NPAGES] = 0;
}

static int t_overlap(void)
{
	struct rdma r;
	struct ibv_pd *pds[2];
	unsigned char *buf = map_buf(NPAGES * PAGE, false);
	size_t perm[NSPANS], orders = 0, steps = 0;
	char want[NPAGES + 1], got[NPAGES + 1];

	rdma_open(&r);
	pds[0] = r.pd;
	pds[1] = ibv_alloc_pd(r.ctx);
	if (!pds[1])
		DIE("second PD: %s", strerror(errno));
	memset(buf, 1, NPAGES * PAGE);
	for (size_t i = 0; i < NSPANS; i++)
		perm[i] = i;
	/* Every deregistration order (Heap's algorithm over NSPANS! orders). */
	size_t c[NSPANS] = { 0 }, idx = 1;
	for (;;) {
		struct ibv_mr *mr[NSPANS];
		bool live[NSPANS];

		for (size_t i = 0; i < NSPANS; i++) {
			mr[i] = safepin_reg_mr(pds[spans[i].pd], buf + spans[i].off, spans[i].len, RW);
			if (!mr[i])
				DIE("safepin_reg_mr span %zu: %s", i, strerror(errno));
			live[i] = true;
		}
		expected_marks(live, want);
		page_marks(buf, NPAGES, got);
		CHECK(!strcmp(want, got), "all registered: want %s got %s", want, got);
		for (size_t j = 0; j < NSPANS; j++) {
			size_t i = perm[j];

			CHECK(safepin_dereg_mr(mr[i]) == 0, "dereg: %s", strerror(errno));
			live[i] = false;
			expected_marks(live, want);
			page_marks(buf, NPAGES, got);
			if (strcmp(want, got))
				CHECK(0, "order %zu, after dereg of span %zu: want '%s' got '%s'",
				      orders, i, want, got);
			steps++;
		}
		orders++;
		/* next permutation */
		while (idx < NSPANS && c[idx] >= idx) {
			c[idx] = 0;
			idx++;
		}
		if (idx >= NSPANS)
			break;
		size_t sw = idx % 2 ? c[idx] : 0, t = perm[sw];
		perm[sw] = perm[idx];
		perm[idx] = t;
		c[idx]++;
		idx = 1;
	}
	printf("overlap: %zu deregistration orders, %zu steps, VmFlags matched the live MRs "
	       "at every step: %s; live registrations left: %" PRIu64 "\n",
	       orders, steps, test_failures ? "NO" : "yes", live_regs());
	CHECK(live_regs() == 0, "registrations left over");
	ibv_dealloc_pd(pds[1]);
	rdma_close(&r);
	unmap_buf(buf, NPAGES * PAGE);
	return test_failures ? 1 : 0;
}

/* ---- rereg and provider failures ------------------------------------- */

static int t_rereg(void)
{
	struct rdma r;
	unsigned char *a = map_buf(4 * PAGE, false), *b = map_buf(4 * PAGE, false);
	unsigned char *c = map_buf(4 * PAGE, false), *hole = map_buf(3 * PAGE, false);
	struct ibv_mr *mr, *plain;
	char m[5];
	int rc, e, prc, pe;

	rdma_open(&r);
	memset(a, 1, 4 * PAGE);
	memset(b, 2, 4 * PAGE);
	memset(c, 3, 4 * PAGE);
	memset(hole, 4, 3 * PAGE);
	unmap_buf(hole + PAGE, PAGE);

	/* rereg CHANGE_TRANSLATION a -> b: compare with plain libibverbs. */
	plain = ibv_reg_mr(r.pd, c, 4 * PAGE, RW);
	if (!plain)
		DIE("ibv_reg_mr: %s", strerror(errno));
	errno = 0;
	prc = ibv_rereg_mr(plain, IBV_REREG_MR_CHANGE_TRANSLATION, NULL, b, 4 * PAGE, 0);
	pe = errno;
	ibv_dereg_mr(plain);

	mr = safepin_reg_mr(r.pd, a, 4 * PAGE, RW);
	if (!mr)
		DIE("safepin_reg_mr: %s", strerror(errno));
	CHECK(is_dontfork(a) && !is_dontfork(b), "before rereg");
	errno = 0;
	rc = safepin_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL, b, 4 * PAGE, 0);
	e = errno;
	printf("rereg CHANGE_TRANSLATION: ibv_rereg_mr %d (errno %d %s), "
	       "safepin_rereg_mr %d (errno %d %s)\n", prc, prc ? pe : 0, prc ? strerror(pe) : "",
	       rc, rc ? e : 0, rc ? strerror(e) : "");
	CHECK(rc == prc, "return %d, plain libibverbs %d", rc, prc);
	if (rc) {
		CHECK(e == pe, "errno %d, plain libibverbs %d", e, pe);
		/* The provider refused: the old range keeps its mark, the new none. */
		page_marks(a, 4, m);
		CHECK(!strcmp(m, "DDDD"), "old range after failed rereg: '%s'", m);
		page_marks(b, 4, m);
		CHECK(!strcmp(m, "...."), "new range after failed rereg: '%s'", m);
		CHECK(live_regs() == 1, "live registrations %" PRIu64, live_regs());
		printf("  provider cannot rereg: marking stayed on the old range, nothing "
		       "marked on the new one\n");
	} else {
		page_marks(a, 4, m);
		CHECK(!strcmp(m, "...."), "old range after rereg: '%s'", m);
		page_marks(b, 4, m);
		CHECK(!strcmp(m, "DDDD"), "new range after rereg: '%s'", m);
		printf("  marking moved to the new range\n");
	}
	CHECK(safepin_dereg_mr(mr) == 0, "dereg: %s", strerror(errno));
	page_marks(a, 4, m);
	CHECK(!strcmp(m, "...."), "a after dereg: '%s'", m);
	page_marks(b, 4, m);
	CHECK(!strcmp(m, "...."), "b after dereg: '%s'", m);

	/* rereg argument errors are libibverbs' own. */
	mr = safepin_reg_mr(r.pd, a, 4 * PAGE, RW);
	if (!mr)
		DIE("safepin_reg_mr: %s", strerror(errno));
	errno = 0;
	rc = safepin_rereg_mr(mr, IBV_REREG_MR_CHANGE_TRANSLATION, NULL, NULL, 0, 0);
	CHECK(rc == IBV_REREG_MR_ERR_INPUT && errno == EINVAL, "rereg NULL: %d errno %d", rc,
	      errno);
	CHECK(safepin_dereg_mr(mr) == 0, "dereg: %s", strerror(errno));

	/* Provider failures at registration: same errno, nothing marked. */
	struct {
		const char *what;
		void *addr;
		size_t len;
		int access;
	} bad[] = {
		{ "REMOTE_WRITE without LOCAL_WRITE", a, 4 * PAGE, IBV_ACCESS_REMOTE_WRITE },
		{ "REMOTE_ATOMIC without LOCAL_WRITE", a + 10, PAGE, IBV_ACCESS_REMOTE_ATOMIC },
		{ "range over a hole", hole + PAGE - 100, 2 * PAGE, RW },
	};
	for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
		struct ibv_mr *p, *s;
		int access = bad[i].access;	/* not a constant: the non-macro path */
		uint64_t before = live_regs();

		errno = 0;
		p = ibv_reg_mr(r.pd, bad[i].addr, bad[i].len, access);
		pe = errno;
		if (p)
			ibv_dereg_mr(p);
		errno = 0;
		s = safepin_reg_mr(r.pd, bad[i].addr, bad[i].len, access);
		e = errno;
		printf("reg %-34s: ibv_reg_mr %s (errno %d), safepin_reg_mr %s (errno %d)\n",
		       bad[i].what, p ? "ok" : "NULL", p ? 0 : pe, s ? "ok" : "NULL", s ? 0 : e);
		CHECK(!p == !s, "%s: outcome differs", bad[i].what);
		if (!p && !s)
			CHECK(e == pe, "%s: errno %d, plain %d", bad[i].what, e, pe);
		if (s)
			safepin_dereg_mr(s);
		page_marks(a, 4, m);
		CHECK(!strcmp(m, "...."), "%s: marks left '%s'", bad[i].what, m);
		page_marks(hole, 3, m);
		CHECK(!strcmp(m, ". ."), "%s: marks left '%s'", bad[i].what, m);
		CHECK(live_regs() == before, "%s: live registrations changed", bad[i].what);
	}
	/* A constant access through the same function (the ibv_reg_mr macro
	 * special-cases constants; safepin_reg_mr is a plain function). */
	mr = safepin_reg_mr(r.pd, c, 4 * PAGE, IBV_ACCESS_LOCAL_WRITE);
	CHECK(mr && is_dontfork(c), "constant access flags");
	if (mr)
		safepin_dereg_mr(mr);
	mr = safepin_reg_mr_iova(r.pd, c, 4 * PAGE, 0x10000, IBV_ACCESS_LOCAL_WRITE);
	CHECK(mr && is_dontfork(c), "reg_mr_iova");
	if (mr)
		CHECK(safepin_dereg_mr(mr) == 0 && !is_dontfork(c), "iova dereg");
	/* Zero length passes through (pins nothing) with libibverbs' outcome. */
	errno = 0;
	plain = ibv_reg_mr(r.pd, c, 0, IBV_ACCESS_LOCAL_WRITE);
	pe = errno;
	if (plain)
		ibv_dereg_mr(plain);
	errno = 0;
	mr = safepin_reg_mr(r.pd, c, 0, IBV_ACCESS_LOCAL_WRITE);
	e = errno;
	printf("reg zero length: ibv_reg_mr %s (errno %d), safepin_reg_mr %s (errno %d)\n",
	       plain ? "ok" : "NULL", plain ? 0 : pe, mr ? "ok" : "NULL", mr ? 0 : e);
	CHECK(!plain == !mr && (mr || e == pe), "zero length differs");
	if (mr)
		safepin_dereg_mr(mr);
	CHECK(!is_dontfork(c) && live_regs() == 0, "zero length left a mark");

	rdma_close(&r);
	unmap_buf(a, 4 * PAGE);
	unmap_buf(b, 4 * PAGE);
	unmap_buf(c, 4 * PAGE);
	unmap_buf(hole, PAGE);
	unmap_buf(hole + 2 * PAGE, PAGE);
	return test_failures ? 1 : 0;
}

/* Run as nobody with a tiny RLIMIT_MEMLOCK: ibv_reg_mr and safepin_reg_mr
 * fail alike and nothing stays marked. */
static int t_memlock(void)
{
	struct rlimit rl;
	struct rdma r;
	size_t len = 64 * PAGE;
	unsigned char *buf = map_buf(len, false);
	struct ibv_mr *p, *s;
	int pe, e;
	char m[65];

	getrlimit(RLIMIT_MEMLOCK, &rl);
	if (geteuid() == 0 || rl.rlim_cur >= len) {
		printf("skip: needs a non-root user with RLIMIT_MEMLOCK < %zu (uid %d, limit %lu)\n",
		       len, (int)geteuid(), (unsigned long)rl.rlim_cur);
		return 77;
	}
	rdma_open(&r);
	memset(buf, 1, len);
	errno = 0;
	p = ibv_reg_mr(r.pd, buf, len, RW);
	pe = errno;
	if (p)
		ibv_dereg_mr(p);
	errno = 0;
	s = safepin_reg_mr(r.pd, buf, len, RW);
	e = errno;
	printf("uid %d, RLIMIT_MEMLOCK %lu: ibv_reg_mr %s (errno %d %s), "
	       "safepin_reg_mr %s (errno %d %s)\n", (int)geteuid(), (unsigned long)rl.rlim_cur,
	       p ? "ok" : "NULL", pe, strerror(pe), s ? "ok" : "NULL", e, strerror(e));
	CHECK(!p && !s, "registration over RLIMIT_MEMLOCK succeeded");
	CHECK(e == pe, "errno %d, plain %d", e, pe);
	page_marks(buf, 64, m);
	CHECK(!strchr(m, 'D'), "marks left: %s", m);
	CHECK(live_regs() == 0, "live registrations left");
	/* A small one still works as that user. */
	s = safepin_reg_mr(r.pd, buf, 1, IBV_ACCESS_LOCAL_WRITE);
	CHECK(s && is_dontfork(buf), "small registration: %s", strerror(errno));
	if (s)
		CHECK(safepin_dereg_mr(s) == 0 && !is_dontfork(buf), "small dereg");
	rdma_close(&r);
	return test_failures ? 1 : 0;
}

/* ---- coexistence with ibv_fork_init ---------------------------------- */

int ibv_dontfork_range(void *base, size_t size);
int ibv_dofork_range(void *base, size_t size);

static int t_forkinit(void)
{
	static const char *names[] = { "DISABLED", "ENABLED", "UNNEEDED" };
	int ret = ibv_fork_init();
	enum ibv_fork_status st = ibv_is_fork_initialized();
	unsigned char *buf = map_buf(4 * PAGE, false);
	bool active;
	struct ibv_mr *mr;
	struct rdma r;
	char m[5];

	printf("kernel %s: ibv_fork_init() = %d, ibv_is_fork_initialized() = %s\n",
	       guest_kernel(), ret, names[st]);
	CHECK(ret == 0, "ibv_fork_init: %d", ret);
	/* Whether libibverbs really marks ranges now: its status can say
	 * UNNEEDED (kernel copies) while its madvise machinery is on anyway
	 * (rdma-core 44 enables it whatever the kernel). Ask the VMA. */
	CHECK(ibv_dontfork_range(buf, PAGE) == 0, "ibv_dontfork_range");
	active = is_dontfork(buf);
	CHECK(ibv_dofork_range(buf, PAGE) == 0, "ibv_dofork_range");
	CHECK(!is_dontfork(buf), "ibv_dofork_range left the probe page marked");
	printf("  libibverbs marks ranges itself after ibv_fork_init(): %s\n", active ? "yes" : "no");
	rdma_open(&r);
	memset(buf, 1, 4 * PAGE);

	/* safepin first, then the application's own ibv_dontfork_range. */
	mr = safepin_reg_mr(r.pd, buf, 4 * PAGE, RW);
	CHECK(mr && is_dontfork(buf), "registered: not DONTFORK");
	CHECK(ibv_dontfork_range(buf, 4 * PAGE) == 0, "ibv_dontfork_range");
	CHECK(safepin_dereg_mr(mr) == 0, "dereg");
	page_marks(buf, 4, m);
	printf("  reg, app dontfork, dereg:   %s (libibverbs still holds the range: %s)\n", m,
	       active ? "yes" : "no, its fork support is off");
	CHECK(!strcmp(m, active ? "DDDD" : "...."), "%s", active ?
	      "safepin cleared libibverbs' mark early" : "marks left after the last release");
	CHECK(ibv_dofork_range(buf, 4 * PAGE) == 0, "ibv_dofork_range");
	page_marks(buf, 4, m);
	CHECK(!strcmp(m, "...."), "after both released: %s", m);

	/* the application's dontfork first, then safepin; release in the same order. */
	CHECK(ibv_dontfork_range(buf, 4 * PAGE) == 0, "ibv_dontfork_range");
	mr = safepin_reg_mr(r.pd, buf, 4 * PAGE, RW);
	CHECK(mr && is_dontfork(buf), "registered: not DONTFORK");
	CHECK(ibv_dofork_range(buf, 4 * PAGE) == 0, "ibv_dofork_range");
	page_marks(buf, 4, m);
	printf("  app dontfork, reg, dofork:  %s (MR live)\n", m);
	CHECK(!strcmp(m, "DDDD"), "libibverbs cleared safepin's mark of a live MR: %s", m);
	CHECK(safepin_dereg_mr(mr) == 0, "dereg");
	page_marks(buf, 4, m);
	CHECK(!strcmp(m, "...."), "after both released: %s", m);
	CHECK(live_regs() == 0, "live registrations left");
	unmap_buf(buf, 4 * PAGE);

	/* And the data is right, anonymous and hugetlb. */
	for (int huge = 0; huge < 2; huge++) {
		bool same;
		size_t ok = write_after_fork(&r, huge, true, &same);

		printf("  with ibv_fork_init, %s: %zu/%lu bytes, PFNs %s\n",
		       huge ? "hugetlb 2M" : "anon 4K", ok, XFER, same ? "unchanged" : "CHANGED");
		CHECK(ok == XFER && same, "data lost with ibv_fork_init");
	}
	rdma_close(&r);
	return test_failures ? 1 : 0;
}

/* ---- a child registers its own memory -------------------------------- */

static int t_child(void)
{
	struct rdma r;
	unsigned char *buf = map_buf(4 * PAGE, false);
	struct ibv_mr *mr;
	int status;
	pid_t pid;

	rdma_open(&r);
	memset(buf, 1, 4 * PAGE);
	mr = safepin_reg_mr(r.pd, buf, 4 * PAGE, RW);
	if (!mr)
		DIE("safepin_reg_mr: %s", strerror(errno));
	fflush(stdout);
	pid = fork();
	if (pid < 0)
		DIE("fork");
	if (!pid) {
		struct rdma cr;
		unsigned char *mine = map_buf(4 * PAGE, false), *src = map_buf(PAGE, false);
		struct ibv_mr *cm, *sm;
		int ret, e;

		errno = 0;
		ret = safepin_unpin(buf, 4 * PAGE);
		e = errno;
		printf("child: safepin_unpin(parent's range) = %d errno %d (%s)\n", ret, e,
		       strerror(e));
		CHECK(ret == -ENOENT && e == ENOENT, "parent's range in the child");
		CHECK(live_regs() == 0, "the child inherited registrations");
		rdma_open(&cr);
		memset(mine, 0, 4 * PAGE);
		cm = safepin_reg_mr(cr.pd, mine, 4 * PAGE, RW);
		CHECK(cm && is_dontfork(mine), "child registration: %s", strerror(errno));
		for (size_t i = 0; i < PAGE; i++)
			src[i] = pattern(i, 0x77);
		sm = safepin_reg_mr(cr.pd, src, PAGE, IBV_ACCESS_LOCAL_WRITE);
		CHECK(sm != NULL, "child source registration");
		if (cm && sm) {
			CHECK(!rdma_op(&cr, IBV_WR_RDMA_WRITE, src, sm->lkey, PAGE,
				       (uintptr_t)mine + 100, cm->rkey), "child RDMA WRITE");
			printf("child: RDMA WRITE into its own MR: %zu/%lu bytes\n",
			       count_pattern(mine + 100, PAGE, 0x77), PAGE);
			CHECK(count_pattern(mine + 100, PAGE, 0x77) == PAGE, "child data");
			CHECK(safepin_dereg_mr(sm) == 0 && safepin_dereg_mr(cm) == 0, "child dereg");
			CHECK(!is_dontfork(mine), "child unmark");
		}
		rdma_close(&cr);
		fflush(stdout);
		_exit(test_failures ? 1 : 0);
	}
	waitpid(pid, &status, 0);
	CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
	CHECK(is_dontfork(buf) && live_regs() == 1, "parent's MR after the child");
	CHECK(safepin_dereg_mr(mr) == 0 && !is_dontfork(buf), "parent dereg");
	printf("parent: child exit status %d, parent's registration intact\n",
	       WIFEXITED(status) ? WEXITSTATUS(status) : -1);
	rdma_close(&r);
	return test_failures ? 1 : 0;
}

/* ---- sub-page registrations ------------------------------------------ */

static int child_reads(const unsigned char *p, size_t n, unsigned char want)
{
	int status;
	pid_t pid;

	fflush(stdout);
	pid = fork();
	if (!pid) {
		for (size_t i = 0; i < n; i++)
			if (p[i] != want)
				_exit(3);
		_exit(0);
	}
	waitpid(pid, &status, 0);
	if (WIFSIGNALED(status))
		return -WTERMSIG(status);
	return WEXITSTATUS(status) == 0 ? 1 : 0;
}

static const char *read_result(int r)
{
	return r == 1 ? "right bytes" : r == 0 ? "WRONG bytes" : r == -SIGSEGV ? "SIGSEGV" : "died";
}

static int t_subpage(void)
{
	struct rdma r;
	unsigned char *blk = map_buf(3 * PAGE, false);
	unsigned char *heap_a, *heap_b;
	struct ibv_mr *mr, *mr2;
	int res1, res2, res3;

	rdma_open(&r);
	/* Page 0: neighbour [0, 256), MR [256, PAGE + 512), neighbour after it. */
	memset(blk, 0x6B, 3 * PAGE);
	mr = safepin_reg_mr(r.pd, blk + 256, PAGE + 256, RW);
	if (!mr)
		DIE("safepin_reg_mr: %s", strerror(errno));
	res1 = child_reads(blk, 256, 0x6B);
	res2 = child_reads(blk + PAGE + 512, 512, 0x6B);
	printf("sub-page MR [256, %lu): child reads the neighbour before it: %s, after it: %s\n",
	       PAGE + 512, read_result(res1), read_result(res2));
	CHECK(res1 == 1, "neighbour before the MR on its first page");
	CHECK(res2 == 1, "neighbour after the MR on its last page");

	/* The malloc heap: two neighbouring objects, one registered. */
	heap_a = malloc(200);
	heap_b = malloc(1000);
	if (!heap_a || !heap_b)
		DIE("malloc");
	memset(heap_a, 0x4D, 200);
	memset(heap_b, 0, 1000);
	mr2 = safepin_reg_mr(r.pd, heap_b, 1000, RW);
	if (!mr2)
		DIE("safepin_reg_mr(heap): %s", strerror(errno));
	res3 = child_reads(heap_a, 200, 0x4D);
	printf("heap object %p registered; child reads the neighbouring object %p: %s\n",
	       (void *)heap_b, (void *)heap_a, read_result(res3));
	CHECK(res3 == 1, "neighbouring heap object in the child");
	CHECK(safepin_dereg_mr(mr2) == 0 && safepin_dereg_mr(mr) == 0, "dereg");
	free(heap_b);
	free(heap_a);
	rdma_close(&r);
	return test_failures ? 1 : 0;
}

/* ---- ODP passthrough ------------------------------------------------- */

static int t_odp(void)
{
	struct ibv_device_attr_ex attr = { 0 };
	unsigned char *buf = map_buf(4 * PAGE, false);
	struct ibv_mr *p, *s;
	struct rdma r;
	int pe, e;
	bool odp;

	rdma_open(&r);
	memset(buf, 1, 4 * PAGE);
	if (ibv_query_device_ex(r.ctx, NULL, &attr))
		DIE("ibv_query_device_ex: %s", strerror(errno));
	odp = (attr.odp_caps.general_caps & IBV_ODP_SUPPORT) &&
	      (attr.odp_caps.per_transport_caps.rc_odp_caps & IBV_ODP_SUPPORT_WRITE);
	errno = 0;
	p = ibv_reg_mr(r.pd, buf, 4 * PAGE, RW | IBV_ACCESS_ON_DEMAND);
	pe = errno;
	if (p)
		ibv_dereg_mr(p);
	errno = 0;
	s = safepin_reg_mr(r.pd, buf, 4 * PAGE, RW | IBV_ACCESS_ON_DEMAND);
	e = errno;
	printf("kernel %s: device ODP caps %#" PRIx64 " (RC %#x); ODP MR: ibv_reg_mr %s (errno %d), "
	       "safepin_reg_mr %s (errno %d)\n", guest_kernel(), attr.odp_caps.general_caps,
	       attr.odp_caps.per_transport_caps.rc_odp_caps, p ? "ok" : "NULL", p ? 0 : pe,
	       s ? "ok" : "NULL", s ? 0 : e);
	CHECK(!p == !s, "ODP outcome differs from libibverbs");
	if (!s)
		CHECK(e == pe, "errno %d, plain %d", e, pe);
	CHECK(!is_dontfork(buf), "ODP MR marked DONTFORK");
	CHECK(live_regs() == 0, "ODP MR counted as a registration");
	if (s) {
		CHECK(safepin_dereg_mr(s) == 0, "ODP dereg");
		printf("ODP MR passed through unmarked\n");
	} else {
		printf("skip reason: this rxe/kernel has no ODP (%s); checked only that the "
		       "refusal is passed through unchanged and unmarked\n",
		       odp ? "caps claim support but registration failed" : "no IBV_ODP_SUPPORT");
	}
	rdma_close(&r);
	return test_failures ? 1 : 0;
}

static int t_deferred(void)
{
	static const char *const cycle_name[] = { "", "revived", "revived after remap" };
	const char *k = guest_kernel();
	struct rdma r;

	if (safepin_set_unmark(SAFEPIN_UNMARK_DEFERRED))
		DIE("safepin_set_unmark: %s", strerror(errno));
	rdma_open(&r);
	for (int huge = 0; huge < 2; huge++) {
		for (enum cycle cy = PARKED; cy <= PARKED_REPLACED; cy++) {
			const char *kind = huge ? "hugetlb 2M" : "anon 4K";
			bool same;
			size_t on;

			on = write_after_fork_cycle(&r, huge, true, cy, &same);
			printf("kernel %s, %-10s %-19s: %zu/%lu bytes, PFNs %s\n", k, kind,
			       cycle_name[cy], on, XFER, same ? "unchanged" : "CHANGED");
			/* The registration under test came back from the parked one. */
			CHECK(last_mr_revived, "%s %s: the MR was not revived from the parked one",
			      kind, cycle_name[cy]);
			CHECK(on == XFER, "%s %s: %zu/%lu", kind, cycle_name[cy], on, XFER);
			CHECK(same, "%s %s: the parent's PFNs changed across fork", kind,
			      cycle_name[cy]);
		}
	}
	CHECK(safepin_set_unmark(SAFEPIN_UNMARK_IMMEDIATE) == 0, "back to immediate");
	rdma_close(&r);
	return test_failures ? 1 : 0;
}

/*
 * One MR inside an open window, registered without a madvise(): fork, the
 * parent writes, RDMA WRITE into the MR.  Return the bytes that arrived.
 */
static size_t write_in_window(struct rdma *r, unsigned char *buf, bool *pfn_same,
			      bool *exact_marks)
{
	uint64_t pfn[XFER / PAGE];
	struct safepin_stats s0 = { .size = sizeof(s0) }, s1 = { .size = sizeof(s1) };
	struct sleeper child;
	struct ibv_mr *mr;
	size_t ok;

	if (safepin_get_stats(&s0))
		DIE("safepin_get_stats");
	mr = safepin_reg_mr(r->pd, buf, XFER, RW);
	if (!mr || safepin_get_stats(&s1))
		DIE("safepin_reg_mr: %s", strerror(errno));
	CHECK(s1.madvise_calls == s0.madvise_calls, "the MR in a window made %llu madvise calls",
	      (unsigned long long)(s1.madvise_calls - s0.madvise_calls));
	for (size_t i = 0; i < XFER / PAGE; i++)
		pfn[i] = pfn_of(buf + i * PAGE);

	child = child_sleeper();
	/* The prepare handler closed the windows: only the MR is hidden. */
	*exact_marks = is_dontfork(buf) && is_dontfork(buf + XFER - 1) &&
		       !is_dontfork(buf - PAGE) && !is_dontfork(buf + XFER);
	memset(buf - PAGE, 0x11, XFER + 2 * PAGE);
	ok = device_writes_after_parent(r, buf, mr, pfn, pfn_same);
	child_release(child);
	CHECK(safepin_dereg_mr(mr) == 0, "safepin_dereg_mr: %s", strerror(errno));
	return ok;
}

static int t_windowed(void)
{
	const size_t pool_len = 12 * HUGE;
	unsigned char *pool, *blk;
	uint64_t rng = 0x9e3779b97f4a7c15ull;
	struct rdma r;

	if (safepin_set_unmark(SAFEPIN_UNMARK_WINDOWED))
		DIE("safepin_set_unmark: %s", strerror(errno));
	rdma_open(&r);
	pool = map_buf(pool_len, false);
	if (madvise(pool, pool_len, MADV_NOHUGEPAGE))
		DIE("madvise: %s", strerror(errno));
	memset(pool, 0xAA, pool_len);
	blk = (unsigned char *)(((uintptr_t)pool + HUGE - 1) & ~(HUGE - 1)) + HUGE;
	for (int i = 0; i < 8; i++) {
		unsigned char *block, *opener, *buf;
		struct ibv_mr *mr;
		bool same, exact;
		size_t on;

		rng ^= rng << 13;
		rng ^= rng >> 7;
		rng ^= rng << 17;
		/* Any page of blocks 0-7 but the first and the last three of a block. */
		block = blk + (rng % 8) * HUGE;
		buf = block + (1 + (rng >> 8) % (HUGE / PAGE - 4)) * PAGE;
		/* A registration at the other end of the block opens its window. */
		opener = buf - block < (ptrdiff_t)(HUGE / 2) ? block + HUGE - PAGE : block;
		mr = safepin_reg_mr(r.pd, opener, PAGE, RW);
		if (!mr)
			DIE("safepin_reg_mr (opener): %s", strerror(errno));
		CHECK(safepin_dereg_mr(mr) == 0, "dereg opener: %s", strerror(errno));
		on = write_in_window(&r, buf, &same, &exact);
		printf("kernel %s, anon 4K in a window, MR at +%#lx: %zu/%lu bytes, PFNs %s, "
		       "marks after fork %s\n", guest_kernel(), (unsigned long)(buf - blk), on, XFER,
		       same ? "unchanged" : "CHANGED", exact ? "exact" : "WRONG");
		CHECK(on == XFER, "window MR: %zu/%lu", on, XFER);
		CHECK(same, "window MR: the parent's PFNs changed across fork");
		CHECK(exact, "window MR: after fork the marks are not exactly the MR's");
	}
	CHECK(safepin_set_unmark(SAFEPIN_UNMARK_IMMEDIATE) == 0, "back to immediate");
	CHECK(!is_dontfork(blk) && live_regs() == 0, "windows left behind");
	unmap_buf(pool, pool_len);
	rdma_close(&r);
	return test_failures ? 1 : 0;
}

int main(int argc, char **argv)
{
	static const struct {
		const char *name;
		int (*fn)(void);
	} tests[] = {
		{ "write", t_write }, { "read", t_read }, { "overlap", t_overlap },
		{ "rereg", t_rereg }, { "memlock", t_memlock }, { "forkinit", t_forkinit },
		{ "child", t_child }, { "subpage", t_subpage }, { "odp", t_odp },
		{ "deferred", t_deferred }, { "windowed", t_windowed },
	};

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (argc != 2)
		DIE("usage: verbs_guest TEST");
	for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) {
		if (!strcmp(argv[1], tests[i].name)) {
			int ret = tests[i].fn();

			printf("%s: %s\n", argv[1], ret == 0 ? "PASS" : ret == 77 ? "SKIP" : "FAIL");
			return ret;
		}
	}
	DIE("unknown test %s", argv[1]);
}
