// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * NUMA placement of pre-faulted pages (see numa_place.h).
 *
 * Before the pre-fault of a range: mincore() finds the pages already
 * present (one call per 16 MiB; a fresh buffer ends the work here),
 * move_pages() without target nodes tells where those are, and with
 * SAFEPIN_PIN_MIGRATE move_pages() moves the ones on other nodes.  Then the
 * thread's policy becomes MPOL_PREFERRED(node) until the pre-fault is done.
 * After it, one more move_pages() status query counts the pages that are
 * not on the node.  No allocation: batches live on the stack.
 */
#include <errno.h>
#include <fcntl.h>
#include <numa.h>
#include <numaif.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "log.h"
#include "numa_place.h"
#include "vm.h"

#define NODE_BITS (NUMA_MASK_LONGS * 8 * sizeof(unsigned long))
#define BATCH 256			/* move_pages() entries per call */
#define CORE_CHUNK 4096			/* mincore() base pages per call */
/* MPOL_F_STATIC_NODES | MPOL_F_RELATIVE_NODES | MPOL_F_NUMA_BALANCING */
#define MODE_FLAGS ((1 << 15) | (1 << 14) | (1 << 13))

static struct {
	uint64_t placed, elsewhere, migrated, migrate_failed, off_node;
} st;

static pthread_once_t numa_once = PTHREAD_ONCE_INIT;
static bool numa_syscalls;	/* get_mempolicy() works: a NUMA kernel */
static int max_node;		/* numa_max_possible_node() */

static void reset_in_child(void)
{
	memset(&st, 0, sizeof(st));
}

static void numa_setup(void)
{
	int mode;

	numa_syscalls = get_mempolicy(&mode, NULL, 0, NULL, 0) == 0;
	max_node = numa_syscalls ? numa_max_possible_node() : 0;
	/* The counters start at zero in a forked child, as the core's do. */
	pthread_atfork(NULL, NULL, reset_in_child);
}

static void add(uint64_t *counter, uint64_t n)
{
	if (n)
		__atomic_fetch_add(counter, n, __ATOMIC_RELAXED);
}

/* --- which nodes exist ------------------------------------------------ */

/* Whether @node is in a sysfs node list such as "0-1,4". */
static int list_has(const char *path, int node)
{
	char buf[512], *p = buf;
	ssize_t n;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return -errno;
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return n < 0 ? -EIO : 0;
	buf[n] = '\0';
	while (*p >= '0' && *p <= '9') {
		long lo = strtol(p, &p, 10), hi = lo;

		if (*p == '-')
			hi = strtol(p + 1, &p, 10);
		if (node >= lo && node <= hi)
			return 1;
		if (*p != ',')
			break;
		p++;
	}
	return 0;
}

int numa_check_node(int node)
{
	unsigned long allowed[NUMA_MASK_LONGS] = { 0 };
	int ret, mode;

	pthread_once(&numa_once, numa_setup);
	if (node < 0)
		return -EINVAL;
	if (!numa_syscalls)
		return node == 0 ? 0 : -ENODEV;
	if (node > max_node || (size_t)node >= NODE_BITS)
		return -EINVAL;
	/* N_MEMORY: online nodes with memory (a memoryless node is not there). */
	ret = list_has("/sys/devices/system/node/has_memory", node);
	if (ret < 0)	/* an old kernel without has_memory: online nodes */
		ret = list_has("/sys/devices/system/node/online", node);
	if (ret <= 0)
		return -ENODEV;
	if (get_mempolicy(&mode, allowed, NODE_BITS, NULL, MPOL_F_MEMS_ALLOWED))
		return -errno;
	if (!(allowed[node / (8 * sizeof(long))] & (1ul << (node % (8 * sizeof(long))))))
		return -ENODEV;
	return 0;
}

/* --- where pages are --------------------------------------------------- */

struct batch {
	void *pages[BATCH];
	int status[BATCH];
	size_t n;
	uint64_t per;		/* base pages per entry */
};

struct census {
	uint64_t elsewhere, migrate_failed, off_node;
	int first_other;	/* a node the misplaced pages were on, or -1 */
};

/*
 * What a pass over the pages does with the ones not on the node: count
 * them before the pre-fault, move them, or count them after it.  Moving
 * is a pass of its own after the count: moving the first base page of a
 * THP moves all of it, so a count made while moving would miss the rest.
 */
enum pass { PASS_BEFORE, PASS_MIGRATE, PASS_AFTER };

/* Query where the pages of @b are and count (or move) the misplaced. */
static void census_batch(struct batch *b, const struct pin_placement *pl, enum pass pass,
			 struct census *c)
{
	int nodes[BATCH];
	void *move[BATCH];
	size_t nmove = 0;

	if (!b->n)
		return;
	if (move_pages(0, b->n, b->pages, NULL, b->status, 0)) {
		b->n = 0;	/* cannot tell: report nothing rather than guess */
		return;
	}
	for (size_t i = 0; i < b->n; i++) {
		int s = b->status[i];

		if (s < 0 || s == pl->node)
			continue;	/* not present (-ENOENT), zero page, or placed */
		if (c->first_other < 0)
			c->first_other = s;
		if (pass == PASS_BEFORE) {
			c->elsewhere += b->per;
		} else if (pass == PASS_AFTER) {
			c->off_node += b->per;
		} else {
			move[nmove] = b->pages[i];
			nodes[nmove++] = pl->node;
		}
	}
	b->n = 0;
	if (!nmove)
		return;
	if (move_pages(0, nmove, move, nodes, b->status, MPOL_MF_MOVE) < 0 && errno != ENOENT)
		sp_log(SP_LOG_INFO, "move_pages(%zu pages to node %d) failed: errno %d",
		       nmove, pl->node, errno);
	/* Ask again rather than trust the move's statuses: the other base
	 * pages of a THP moved with its first one report -EBUSY. */
	if (move_pages(0, nmove, move, NULL, b->status, 0)) {
		c->migrate_failed += nmove * b->per;
		return;
	}
	for (size_t i = 0; i < nmove; i++)
		if (b->status[i] != pl->node)
			c->migrate_failed += b->per;
}

/*
 * Walk the pages of [start, end) present in memory (mincore) in batches.
 * Pages of a huge page are asked about once, through their first base page.
 */
static void census(const struct pin_placement *pl, uintptr_t start, uintptr_t end,
		   size_t page_size, enum pass pass, struct census *c)
{
	size_t bps = vm_base_page_size();
	size_t step = page_size > bps ? page_size / bps : 1;
	unsigned char vec[CORE_CHUNK];
	struct batch b = { .n = 0, .per = step };

	for (uintptr_t chunk = start; chunk < end; chunk += (uintptr_t)CORE_CHUNK * bps) {
		size_t len = end - chunk < CORE_CHUNK * bps ? end - chunk : CORE_CHUNK * bps;
		size_t npages = len / bps;

		if (mincore((void *)chunk, len, vec))
			memset(vec, 1, npages);	/* ask move_pages about every page */
		for (size_t i = 0; i < npages; i += step) {
			if (!(vec[i] & 1))
				continue;
			b.pages[b.n++] = (void *)(chunk + i * bps);
			if (b.n == BATCH)
				census_batch(&b, pl, pass, c);
		}
	}
	census_batch(&b, pl, pass, c);
}

/* --- the pre-fault ------------------------------------------------------ */

int numa_prefault_begin(const struct pin_placement *pl, struct numa_prefault *pf,
			uintptr_t start, uintptr_t end, size_t page_size)
{
	unsigned long mask[NUMA_MASK_LONGS] = { 0 };
	struct census c = { .first_other = -1 };
	uint64_t migrated = 0;
	int mode;

	pf->active = false;
	if (!pl)
		return 0;
	pthread_once(&numa_once, numa_setup);
	if (!numa_syscalls)
		return 0;	/* no placement, or a one-node kernel (node 0) */

	census(pl, start, end, page_size, PASS_BEFORE, &c);
	if (c.elsewhere && pl->migrate) {
		census(pl, start, end, page_size, PASS_MIGRATE, &c);
		if (c.migrate_failed > c.elsewhere)
			c.migrate_failed = c.elsewhere;
		migrated = c.elsewhere - c.migrate_failed;
	}
	add(&st.elsewhere, c.elsewhere);
	add(&st.migrated, migrated);
	add(&st.migrate_failed, c.migrate_failed);
	if (c.elsewhere && !pl->migrate)
		sp_log(SP_LOG_INFO, "%#lx-%#lx: %llu pages already on node %d (and others), "
		       "not on node %d: left there (SAFEPIN_PIN_MIGRATE moves them)",
		       (unsigned long)start, (unsigned long)end,
		       (unsigned long long)c.elsewhere, c.first_other, pl->node);
	else if (c.elsewhere)
		sp_log(SP_LOG_INFO,
		       "%#lx-%#lx: %llu pages on other nodes (e.g. %d): %llu moved to node %d, "
		       "%llu could not be moved", (unsigned long)start, (unsigned long)end,
		       (unsigned long long)c.elsewhere, c.first_other,
		       (unsigned long long)migrated, pl->node,
		       (unsigned long long)c.migrate_failed);

	/* A VMA policy wins over the thread's: say so, never change it. */
	if (!get_mempolicy(&mode, NULL, 0, (void *)start, MPOL_F_ADDR) && mode != MPOL_DEFAULT)
		sp_log(SP_LOG_INFO, "%#lx-%#lx has its own memory policy (mode %d): kept; "
		       "its new pages follow it, not node %d", (unsigned long)start,
		       (unsigned long)end, mode, pl->node);

	if (get_mempolicy(&pf->old_mode, pf->old_mask, NODE_BITS, NULL, 0))
		return -errno;
	mask[pl->node / (8 * sizeof(long))] = 1ul << (pl->node % (8 * sizeof(long)));
	if (set_mempolicy(MPOL_PREFERRED, mask, NODE_BITS))
		return -errno;
	pf->active = true;
	return 0;
}

void numa_prefault_end(const struct pin_placement *pl, struct numa_prefault *pf,
		       uintptr_t start, uintptr_t end, size_t page_size)
{
	struct census c = { .first_other = -1 };
	int mode;

	if (!pf->active)
		return;
	pf->active = false;
	mode = pf->old_mode;
	if ((mode & ~MODE_FLAGS) == MPOL_DEFAULT ? set_mempolicy(MPOL_DEFAULT, NULL, 0)
	    : set_mempolicy(mode, pf->old_mask, NODE_BITS))
		sp_log(SP_LOG_ERROR, "could not restore the thread's memory policy "
		       "(mode %d): errno %d", mode, errno);

	census(pl, start, end, page_size, PASS_AFTER, &c);
	add(&st.off_node, c.off_node);
	if (c.off_node)
		sp_log(SP_LOG_INFO, "%#lx-%#lx: %llu pages are not on node %d after the "
		       "pre-fault (e.g. on node %d)", (unsigned long)start, (unsigned long)end,
		       (unsigned long long)c.off_node, pl->node, c.first_other);
}

void numa_count_placed(void)
{
	add(&st.placed, 1);
}

void numa_read_stats(struct safepin_numa_stats *out)
{
	out->placed_registrations = __atomic_load_n(&st.placed, __ATOMIC_RELAXED);
	out->pages_elsewhere = __atomic_load_n(&st.elsewhere, __ATOMIC_RELAXED);
	out->pages_migrated = __atomic_load_n(&st.migrated, __ATOMIC_RELAXED);
	out->pages_migrate_failed = __atomic_load_n(&st.migrate_failed, __ATOMIC_RELAXED);
	out->pages_off_node = __atomic_load_n(&st.off_node, __ATOMIC_RELAXED);
}

/* --- devices ------------------------------------------------------------ */

int numa_node_of_sysfs_dir(const char *dir)
{
	char path[512], buf[32];
	ssize_t n;
	long node;
	char *end;
	int fd;

	pthread_once(&numa_once, numa_setup);
	if (access(dir, F_OK))
		return -ENODEV;
	if ((size_t)snprintf(path, sizeof(path), "%s/numa_node", dir) >= sizeof(path))
		return -EINVAL;
	fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return SAFEPIN_NUMA_NODE_NONE;	/* no NUMA support, or no node file */
	n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return SAFEPIN_NUMA_NODE_NONE;
	buf[n] = '\0';
	node = strtol(buf, &end, 10);
	if (end == buf || node < 0 || node > 1 << 20)
		return SAFEPIN_NUMA_NODE_NONE;
	return (int)node;
}
