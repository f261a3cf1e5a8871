// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * numa_guest: NUMA placement in a guest with two memory nodes (tests/vm
 * --numa: nodes 0 and 1, 1 GiB and one CPU each), on 6.1 and on 5.10 (no
 * MADV_POPULATE_WRITE there: the pre-fault writes each page itself).
 *
 *   numa_guest place | policy | migrate | alloc | errors
 *
 * place    64 MiB pinned with node 1, then with node 0, from a thread running
 *          on CPU 0 (node 0): every page on the node asked for.
 * policy   the application's policies survive: an mbind(MPOL_BIND, node 0)
 *          on the middle of the range keeps it (and its pages go to node 0,
 *          counted off node), the rest goes to node 1, the thread's own
 *          MPOL_BIND policy is back afterwards, no VMA split.
 * migrate  pages first touched on node 0, pinned for node 1: without
 *          SAFEPIN_PIN_MIGRATE they stay (reported), with it they move
 *          (data unchanged); half-present ranges; pages shared with a forked
 *          child cannot move (counted) but breaking COW puts the parent's
 *          new copies on node 1 anyway.
 * alloc    safepin_alloc() on node 1 (base pages, THP and hugetlb) and free.
 * errors   node 2 (online, with a CPU but no memory: ENODEV), node 63 (no
 *          such node: ENODEV), huge and negative numbers (EINVAL), nothing
 *          changed; the rxe device has no node.
 *
 * Every page is checked with move_pages(2) status queries (nodes NULL),
 * made here with raw syscalls.  Exit 0 pass, 1 fail, 77 skip.
 */
#include <errno.h>
#include <sched.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <safepin/safepin.h>
#include <safepin/verbs_config.h>
#if SAFEPIN_HAVE_VERBS
#include <safepin/verbs.h>
#endif

#define PAGE 4096ul
#define MIB (1ul << 20)
#define MPOL_DEFAULT 0
#define MPOL_PREFERRED 1
#define MPOL_BIND 2
#define MPOL_F_ADDR (1 << 1)
#define MASK_BITS 1024

static int failures;

#define CHECK(cond, ...)                                                         \
	do {                                                                     \
		if (!(cond)) {                                                   \
			failures++;                                              \
			printf("FAIL %s:%d: %s: ", __func__, __LINE__, #cond);   \
			printf(__VA_ARGS__);                                     \
			printf("\n");                                            \
		}                                                                \
	} while (0)

static void *map(size_t len)
{
	void *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

	if (p == MAP_FAILED) {
		perror("mmap");
		exit(1);
	}
	return p;
}

static int other_status;	/* the last status census() counted in out[2] */

/* Pages of [p, p + n pages) per node: out[0], out[1]; out[2] not present/other. */
static void census(const void *p, size_t n, size_t out[3])
{
	void *pages[1024];
	int status[1024];

	out[0] = out[1] = out[2] = 0;
	for (size_t i = 0; i < n; i += 1024) {
		size_t k = n - i < 1024 ? n - i : 1024;

		for (size_t j = 0; j < k; j++)
			pages[j] = (char *)p + (i + j) * PAGE;
		if (syscall(SYS_move_pages, 0, k, pages, NULL, status, 0)) {
			perror("move_pages");
			exit(1);
		}
		for (size_t j = 0; j < k; j++) {
			out[status[j] == 0 ? 0 : status[j] == 1 ? 1 : 2]++;
			if (status[j] != 0 && status[j] != 1)
				other_status = status[j];
		}
	}
}

static size_t on_node(const void *p, size_t n, int node)
{
	size_t c[3];

	census(p, n, c);
	return c[node];
}

static struct safepin_numa_stats nstats(void)
{
	struct safepin_numa_stats s = { .size = sizeof(s) };

	if (safepin_get_numa_stats(&s))
		exit(1);
	return s;
}

static int pin_node(void *p, size_t len, int node, unsigned int flags)
{
	struct safepin_pin_opts o = { .size = sizeof(o), .numa_node = node, .flags = flags };

	return safepin_pin_opts(p, len, &o);
}

static int thread_policy(unsigned long *mask)
{
	int mode = -1;

	memset(mask, 0, MASK_BITS / 8);
	syscall(SYS_get_mempolicy, &mode, mask, MASK_BITS, NULL, 0);
	return mode;
}

static int vma_policy(void *addr, unsigned long *mask)
{
	int mode = -1;

	memset(mask, 0, MASK_BITS / 8);
	syscall(SYS_get_mempolicy, &mode, mask, MASK_BITS, addr, MPOL_F_ADDR);
	return mode;
}

static void set_thread_node(int mode, int node)
{
	unsigned long mask[MASK_BITS / 64] = { 1ul << node };

	if (syscall(SYS_set_mempolicy, mode, mode == MPOL_DEFAULT ? NULL : mask,
		    mode == MPOL_DEFAULT ? 0 : MASK_BITS)) {
		perror("set_mempolicy");
		exit(1);
	}
}

static int count_vmas(void)
{
	FILE *f = fopen("/proc/self/maps", "re");
	int n = 0, c;

	while ((c = fgetc(f)) != EOF)
		n += c == '\n';
	fclose(f);
	return n;
}

/*
 * Memory of one node from /proc/zoneinfo, in pages, summed over its
 * populated zones: free, and the min/low/high watermarks the allocator
 * checks.  An MPOL_PREFERRED allocation falls back to another node only
 * when the node's zones are at their low watermark.
 */
struct node_mem {
	long free, min, low, high, managed;
};

static struct node_mem node_mem(int node)
{
	struct node_mem m = { 0 }, z = { 0 };
	char line[256], key[32];
	bool in = false;
	FILE *f = fopen("/proc/zoneinfo", "re");
	long v;
	int nd;

	if (!f) {
		perror("/proc/zoneinfo");
		exit(1);
	}
	for (;;) {
		bool eof = !fgets(line, sizeof(line), f);

		if (eof || sscanf(line, "Node %d, zone %31s", &nd, key) == 2) {
			if (in && z.managed > 0) {
				m.free += z.free;
				m.min += z.min;
				m.low += z.low;
				m.high += z.high;
				m.managed += z.managed;
			}
			if (eof)
				break;
			in = nd == node;
			memset(&z, 0, sizeof(z));
		} else if (!in) {
			continue;
		} else if (sscanf(line, " pages free %ld", &v) == 1) {
			z.free = v;
		} else if (sscanf(line, " %31s %ld", key, &v) == 2) {
			/* exact words: the per-CPU lists have "high:" */
			if (!strcmp(key, "min"))
				z.min = v;
			else if (!strcmp(key, "low"))
				z.low = v;
			else if (!strcmp(key, "high"))
				z.high = v;
			else if (!strcmp(key, "managed"))
				z.managed = v;
		}
	}
	fclose(f);
	return m;
}

static long node_huge(int node, const char *what)
{
	char path[128];
	long v = -1;
	FILE *f;

	snprintf(path, sizeof(path),
		 "/sys/devices/system/node/node%d/hugepages/hugepages-2048kB/%s", node, what);
	f = fopen(path, "re");
	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

static void write_file(const char *path, const char *text)
{
	FILE *f = fopen(path, "we");
	int bad = !f || fputs(text, f) < 0;

	if ((f && fclose(f)) || bad)
		printf("numa_guest: cannot write %s: %s\n", path, strerror(errno));
}

/* Pages of room on @node above its low watermark. */
static long room(const struct node_mem *m)
{
	return m->free - m->low;
}

#define ROOM_SLACK 2048l	/* 8 MiB: page tables, the kernel's own allocations */

/*
 * Before a placement on @node of @n pages: if the node cannot hold them
 * above its low watermark, give it back its page cache and compact it
 * (reclaimable memory does not stop the fallback: the allocator's fast
 * path tries the next node before it reclaims).
 */
static struct node_mem make_room(int node, size_t n)
{
	struct node_mem m = node_mem(node);
	char path[96];

	if (room(&m) >= (long)n + ROOM_SLACK)
		return m;
	write_file("/proc/sys/vm/drop_caches", "3");
	snprintf(path, sizeof(path), "/sys/devices/system/node/node%d/compact", node);
	write_file(path, "1");
	printf("place: node %d: %ld pages free, low watermark %ld: dropped caches, compacted: "
	       "%ld free\n", node, m.free, m.low, node_mem(node).free);
	return node_mem(node);
}

/*
 * The pages of [p, p + n pages) should be on @node.  Strict whenever the
 * node had room for them above its low watermark before (@before).  Only
 * when it had not, and it is at its watermarks afterwards, may pages be
 * elsewhere: the kernel's MPOL_PREFERRED fallback, which a placement must
 * then have counted (@off, from pages_off_node; -1 without a placement)
 * page for page, and no page may be missing.
 */
static void check_on(const char *what, const void *p, size_t n, int node,
		     const struct node_mem *before, long long off)
{
	struct node_mem after = node_mem(node);
	bool short_before = room(before) < (long)n + ROOM_SLACK;
	bool at_wmark = after.free < after.high + ROOM_SLACK;
	size_t c[3];

	census(p, n, c);
	printf("place: %s: %zu/%zu pages on node %d, %zu on node %d, %zu neither (status %d); "
	       "off_node %s%lld\n", what, c[node], n, node, c[!node], !node, c[2],
	       c[2] ? other_status : 0, off < 0 ? "(no placement) " : "+", off < 0 ? 0 : off);
	printf("place: %s: node %d free %ld -> %ld pages (watermarks min %ld low %ld high %ld, "
	       "managed %ld), huge pages %ld; room before %ld for %zu\n", what, node,
	       before->free, after.free, after.min, after.low, after.high, after.managed,
	       node_huge(node, "nr_hugepages"), room(before), n);
	if (!short_before || !at_wmark || c[node] == n) {
		CHECK(c[node] == n, "%s: %zu of %zu on node %d although it had room (%ld pages "
		      "above its low watermark before, %ld free after)", what, c[node], n, node,
		      room(before), after.free);
		CHECK(off <= 0, "%s: off node +%lld", what, off);
		return;
	}
	printf("place: %s: node %d was short (room %ld < %zu + %ld) and is at its watermarks "
	       "(free %ld < high %ld + %ld): %zu pages fell back to node %d\n", what, node,
	       room(before), n, ROOM_SLACK, after.free, after.high, ROOM_SLACK, c[!node], !node);
	CHECK(c[2] == 0, "%s: %zu pages not present", what, c[2]);
	CHECK(off < 0 || (size_t)off == c[!node], "%s: %zu off node but counted +%lld", what,
	      c[!node], off);
}

static void test_place(void)
{
	const size_t len = 64 * MIB, n = len / PAGE;

	for (int node = 1; node >= 0; node--) {
		char *p = map(len);
		struct node_mem before = make_room(node, n);
		struct safepin_numa_stats s0 = nstats(), s1;
		char what[16];

		CHECK(pin_node(p, len, node, 0) == 0, "pin: %s", strerror(errno));
		s1 = nstats();
		snprintf(what, sizeof(what), "node %d", node);
		check_on(what, p, n, node, &before,
			 (long long)(s1.pages_off_node - s0.pages_off_node));
		CHECK(s1.placed_registrations == s0.placed_registrations + 1, "placed");
		CHECK(safepin_unpin(p, len) == 0, "unpin");
		munmap(p, len);
	}
	/* Without a node: first touch on the CPU we run on (node 0). */
	{
		char *p = map(8 * MIB);
		struct node_mem before = make_room(0, 8 * MIB / PAGE);

		CHECK(pin_node(p, 8 * MIB, SAFEPIN_NUMA_NODE_NONE, 0) == 0, "pin");
		check_on("no node (first touch, CPU 0)", p, 8 * MIB / PAGE, 0, &before, -1);
		safepin_unpin(p, 8 * MIB);
		munmap(p, 8 * MIB);
	}
}

static void test_policy(void)
{
	const size_t len = 32 * MIB, n = len / PAGE;
	unsigned long mask0[MASK_BITS / 64] = { 1 }, m[MASK_BITS / 64];
	char *p = map(len);
	char *mid = p + 8 * MIB;
	struct safepin_numa_stats s0, s1;
	size_t c[3], cm[3];
	int vmas;

	if (syscall(SYS_mbind, mid, 8 * MIB, MPOL_BIND, mask0, MASK_BITS, 0)) {
		perror("mbind");
		exit(1);
	}
	set_thread_node(MPOL_BIND, 0);		/* the application's thread policy */
	vmas = count_vmas();
	s0 = nstats();
	CHECK(pin_node(p, len, 1, 0) == 0, "pin: %s", strerror(errno));
	s1 = nstats();
	census(p, n, c);
	census(mid, 8 * MIB / PAGE, cm);
	printf("policy: %zu/%zu pages on node 1; the mbind(node 0) part: %zu/%zu on node 0; "
	       "off_node +%llu\n", c[1], n, cm[0], 8 * MIB / PAGE,
	       (unsigned long long)(s1.pages_off_node - s0.pages_off_node));
	CHECK(c[1] == n - 8 * MIB / PAGE, "rest on node 1: %zu", c[1]);
	CHECK(cm[0] == 8 * MIB / PAGE, "mbind part on node 0: %zu", cm[0]);
	CHECK(s1.pages_off_node - s0.pages_off_node == 8 * MIB / PAGE, "off node counted");
	CHECK(thread_policy(m) == MPOL_BIND && m[0] == 1, "thread policy restored: %d %#lx",
	      thread_policy(m), m[0]);
	CHECK(vma_policy(mid, m) == MPOL_BIND && m[0] == 1, "mbind kept: %d %#lx",
	      vma_policy(mid, m), m[0]);
	CHECK(vma_policy(p, m) == MPOL_DEFAULT, "no policy added: %d", vma_policy(p, m));
	CHECK(vma_policy(p + len - PAGE, m) == MPOL_DEFAULT, "no policy added");
	/* DONTFORK splits the range off its neighbours; no further split. */
	CHECK(count_vmas() <= vmas + 2, "VMAs %d -> %d", vmas, count_vmas());
	CHECK(safepin_unpin(p, len) == 0, "unpin");
	CHECK(count_vmas() == vmas, "VMAs %d -> %d after unpin", vmas, count_vmas());
	CHECK(thread_policy(m) == MPOL_BIND && m[0] == 1, "thread policy");
	set_thread_node(MPOL_DEFAULT, 0);
	printf("policy: thread MPOL_BIND{0} and VMA MPOL_BIND{0} kept; VMA count back to %d\n",
	       count_vmas());
	munmap(p, len);
}

static void touch_on_node0(char *p, size_t len)
{
	set_thread_node(MPOL_BIND, 0);
	for (size_t i = 0; i < len; i += PAGE)
		p[i] = (char)(i / PAGE);
	set_thread_node(MPOL_DEFAULT, 0);
}

static bool data_ok(const char *p, size_t len)
{
	for (size_t i = 0; i < len; i += PAGE)
		if (p[i] != (char)(i / PAGE))
			return false;
	return true;
}

static void test_migrate(void)
{
	const size_t len = 16 * MIB, n = len / PAGE;
	struct safepin_numa_stats s0, s1;
	char *p = map(len);
	size_t c[3];

	touch_on_node0(p, len);
	CHECK(on_node(p, n, 0) == n, "set-up");

	/* No flag: reported, left alone. */
	s0 = nstats();
	CHECK(pin_node(p, len, 1, 0) == 0, "pin");
	s1 = nstats();
	census(p, n, c);
	printf("migrate: without the flag: %zu/%zu still on node 0; elsewhere +%llu, "
	       "migrated +%llu, off_node +%llu\n", c[0], n,
	       (unsigned long long)(s1.pages_elsewhere - s0.pages_elsewhere),
	       (unsigned long long)(s1.pages_migrated - s0.pages_migrated),
	       (unsigned long long)(s1.pages_off_node - s0.pages_off_node));
	CHECK(c[0] == n, "moved without the flag: %zu", c[0]);
	CHECK(s1.pages_elsewhere - s0.pages_elsewhere == n, "reported");
	CHECK(s1.pages_migrated == s0.pages_migrated, "no migration");
	CHECK(s1.pages_off_node - s0.pages_off_node == n, "off node");
	CHECK(safepin_unpin(p, len) == 0, "unpin");

	/* The flag: moved before the pin, data unchanged. */
	s0 = nstats();
	CHECK(pin_node(p, len, 1, SAFEPIN_PIN_MIGRATE) == 0, "pin");
	s1 = nstats();
	census(p, n, c);
	printf("migrate: with SAFEPIN_PIN_MIGRATE: %zu/%zu on node 1; migrated +%llu, "
	       "failed +%llu, off_node +%llu\n", c[1], n,
	       (unsigned long long)(s1.pages_migrated - s0.pages_migrated),
	       (unsigned long long)(s1.pages_migrate_failed - s0.pages_migrate_failed),
	       (unsigned long long)(s1.pages_off_node - s0.pages_off_node));
	CHECK(c[1] == n, "on node 1: %zu", c[1]);
	CHECK(s1.pages_migrated - s0.pages_migrated == n, "migrated");
	CHECK(s1.pages_off_node == s0.pages_off_node, "off node");
	CHECK(data_ok(p, len), "data changed");
	CHECK(safepin_unpin(p, len) == 0, "unpin");
	munmap(p, len);

	/* Half present on node 0 (a little more with THP: a touch faults in
	 * the whole huge page), half fresh; no flag: the present ones stay,
	 * the fresh ones go to node 1. */
	p = map(len);
	touch_on_node0(p, len / 2);
	{
		size_t before[3];

		census(p, n, before);
		CHECK(pin_node(p, len, 1, 0) == 0, "pin");
		census(p, n, c);
		printf("migrate: %zu present on node 0, %zu fresh, no flag: after the pin "
		       "node 0 %zu, node 1 %zu of %zu\n", before[0], n - before[0], c[0], c[1], n);
		CHECK(before[0] >= n / 2 && c[0] == before[0] && c[1] == n - before[0],
		      "present stay, fresh on node 1: %zu %zu", c[0], c[1]);
	}
	CHECK(safepin_unpin(p, len) == 0, "unpin");
	munmap(p, len);

	/* Shared with a child (COW): cannot move; the pre-fault's COW break
	 * gives the parent new copies, on node 1. */
	p = map(len);
	touch_on_node0(p, len);
	{
		pid_t pid = fork();

		if (pid == 0) {
			pause();
			_exit(0);
		}
		s0 = nstats();
		CHECK(pin_node(p, len, 1, SAFEPIN_PIN_MIGRATE) == 0, "pin");
		s1 = nstats();
		census(p, n, c);
		printf("migrate: COW-shared with a child: could not move %llu, after the "
		       "pre-fault %zu/%zu on node 1\n",
		       (unsigned long long)(s1.pages_migrate_failed - s0.pages_migrate_failed),
		       c[1], n);
		CHECK(s1.pages_migrate_failed - s0.pages_migrate_failed == n, "failed count");
		CHECK(c[1] == n, "COW copies on node 1: %zu", c[1]);
		CHECK(data_ok(p, len), "data changed");
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
	}
	CHECK(safepin_unpin(p, len) == 0, "unpin");
	munmap(p, len);
}

static void test_alloc(void)
{
	struct safepin_alloc_opts o = { .size = sizeof(o), .numa_node = 1 };
	const size_t len = 32 * MIB, n = len / PAGE;
	struct safepin_stats st0 = { .size = sizeof(st0) }, st1 = { .size = sizeof(st1) };
	unsigned int flags[] = { 0, SAFEPIN_ALLOC_THP, SAFEPIN_ALLOC_HUGETLB };
	const char *names[] = { "base pages", "THP", "hugetlb" };

	/* The NUMA guest reserves its huge page pool on node 0 (guest-init):
	 * node 1's memory stays free for the placements.  This test takes the
	 * huge pages it needs on node 1 and gives them back. */
	long nr1 = node_huge(1, "nr_hugepages"), need = (long)(len / (2 * MIB));
	char path[128], num[32];

	snprintf(path, sizeof(path),
		 "/sys/devices/system/node/node1/hugepages/hugepages-2048kB/nr_hugepages");
	if (node_huge(1, "free_hugepages") < need) {
		snprintf(num, sizeof(num), "%ld", nr1 + need - node_huge(1, "free_hugepages"));
		write_file(path, num);
		printf("alloc: node 1 huge pages %ld -> %ld (%ld free)\n", nr1,
		       node_huge(1, "nr_hugepages"), node_huge(1, "free_hugepages"));
	}
	safepin_get_stats(&st0);
	for (int i = 0; i < 3; i++) {
		long hp0 = node_huge(1, "free_hugepages"), hp1;
		char *p;

		o.flags = flags[i];
		p = safepin_alloc(len, &o);
		CHECK(p != NULL, "%s: %s", names[i], strerror(errno));
		if (!p)
			continue;
		hp1 = node_huge(1, "free_hugepages");
		printf("alloc: %s: %zu/%zu pages on node 1, aligned to %s%s\n", names[i],
		       on_node(p, n, 1), n, (uintptr_t)p % (2 * MIB) ? "4 KiB" : "2 MiB",
		       i == 2 ? "" : "");
		if (i == 2)
			printf("alloc: hugetlb: node 1 free huge pages %ld -> %ld\n", hp0, hp1);
		CHECK(on_node(p, n, 1) == n, "%s", names[i]);
		CHECK((uintptr_t)p % (2 * MIB) == 0, "alignment");
		CHECK(i != 2 || hp0 - hp1 == (long)(len / (2 * MIB)), "huge pages from node 1");
		memset(p, 0xaa, len);
		CHECK(safepin_free(p, len) == 0, "free: %s", strerror(errno));
	}
	safepin_get_stats(&st1);
	CHECK(st1.live_registrations == st0.live_registrations, "registrations left");
	if (node_huge(1, "nr_hugepages") != nr1) {
		snprintf(num, sizeof(num), "%ld", nr1);
		write_file(path, num);
	}
}

/* Whether the sysfs node list @file ("online", "has_memory") contains @node. */
static bool node_listed(const char *file, int node)
{
	char path[128], buf[256], *p;
	FILE *f;

	snprintf(path, sizeof(path), "/sys/devices/system/node/%s", file);
	f = fopen(path, "re");
	if (!f || !fgets(buf, sizeof(buf), f)) {
		if (f)
			fclose(f);
		return false;
	}
	fclose(f);
	for (p = buf; *p;) {
		long lo = strtol(p, &p, 10), hi = lo;

		if (*p == '-')
			hi = strtol(p + 1, &p, 10);
		if (node >= lo && node <= hi)
			return true;
		if (*p != ',')
			break;
		p++;
	}
	return false;
}

static void test_errors(void)
{
	char *p = map(4 * MIB);
	struct safepin_stats s0 = { .size = sizeof(s0) }, s1 = { .size = sizeof(s1) };
	struct { int node, err; } cases[] = { { 2, ENODEV }, { 63, ENODEV }, { 1 << 20, EINVAL },
					       { -2, EINVAL }, { -ENODEV, EINVAL } };
	unsigned long m[MASK_BITS / 64];
	int vmas = count_vmas();

	/* The guest's third node is the memoryless one the issue asks about. */
	CHECK(node_listed("online", 2) && !node_listed("has_memory", 2),
	      "node 2 should be online without memory (guest-run --numa)");
	safepin_get_stats(&s0);
	for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
		int ret;

		errno = 0;
		ret = pin_node(p, 4 * MIB, cases[i].node, SAFEPIN_PIN_MIGRATE);
		printf("errors: node %d: %d (%s)\n", cases[i].node, ret, strerror(errno));
		CHECK(ret == -cases[i].err && errno == cases[i].err, "node %d", cases[i].node);
	}
	errno = 0;
	{
		struct safepin_alloc_opts o = { .size = sizeof(o), .numa_node = 2 };

		CHECK(safepin_alloc(MIB, &o) == NULL && errno == ENODEV, "alloc node 2: %s",
		      strerror(errno));
	}
	safepin_get_stats(&s1);
	CHECK(s1.live_registrations == s0.live_registrations, "registered");
	CHECK(s1.madvise_calls == s0.madvise_calls, "madvise");
	CHECK(count_vmas() == vmas, "VMAs");
	CHECK(thread_policy(m) == MPOL_DEFAULT, "thread policy");
	CHECK(on_node(p, 4 * MIB / PAGE, 0) + on_node(p, 4 * MIB / PAGE, 1) == 0,
	      "pages faulted");
	munmap(p, 4 * MIB);
	printf("errors: nothing registered, marked, faulted or changed\n");

#if SAFEPIN_HAVE_VERBS
	{
		int num = 0;
		struct ibv_device **list = ibv_get_device_list(&num);

		for (int i = 0; list && i < num; i++) {
			int node = safepin_numa_node_of_ibv_device(list[i]);

			printf("errors: %s: node %d\n", ibv_get_device_name(list[i]), node);
			if (!strncmp(ibv_get_device_name(list[i]), "rxe", 3))
				CHECK(node == SAFEPIN_NUMA_NODE_NONE, "rxe on a dummy netdev");
		}
		if (list)
			ibv_free_device_list(list);
	}
#endif
}

int main(int argc, char **argv)
{
	cpu_set_t cpus;
	const char *cmd = argc > 1 ? argv[1] : "";

	setvbuf(stdout, NULL, _IOLBF, 0);
	if (access("/sys/devices/system/node/node1", F_OK)) {
		printf("numa_guest: needs two NUMA nodes (tests/vm --numa): skipped\n");
		return 77;
	}
	/* Run on CPU 0 (node 0): node 1 is the remote one. */
	CPU_ZERO(&cpus);
	CPU_SET(0, &cpus);
	sched_setaffinity(0, sizeof(cpus), &cpus);

	if (!strcmp(cmd, "place"))
		test_place();
	else if (!strcmp(cmd, "policy"))
		test_policy();
	else if (!strcmp(cmd, "migrate"))
		test_migrate();
	else if (!strcmp(cmd, "alloc"))
		test_alloc();
	else if (!strcmp(cmd, "errors"))
		test_errors();
	else {
		fprintf(stderr, "usage: numa_guest place|policy|migrate|alloc|errors\n");
		return 2;
	}
	printf("numa_guest %s: %s\n", cmd, failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}
