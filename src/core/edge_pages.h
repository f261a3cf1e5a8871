/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Edge pages: a registration that does not start or end on a page boundary
 * still hides whole pages from a forked child, and with them whatever else
 * lives on those pages (typically a neighbouring malloc chunk).  The
 * prepare handler copies every hidden page that is a partial edge of a
 * live registration into a snapshot; the child maps those pages back and
 * fills them from it, so the child reads its neighbours' bytes as they were
 * when fork() began.
 *
 * Cost: one page copy per hidden edge page at every fork (4 KiB, or the huge
 * page size on hugetlb), two mmap() calls, and one mmap() per restored run
 * in the child.  Registrations on page boundaries cost nothing.
 *
 * What the child sees on a restored page: the neighbours' bytes and a
 * snapshot of the registered bytes (a device may be writing those while
 * they are copied).  Restored pages are private anonymous read-write
 * memory in the child, whatever the original mapping was.
 */
#ifndef SAFEPIN_EDGE_PAGES_H
#define SAFEPIN_EDGE_PAGES_H

#include <stddef.h>
#include <stdint.h>

#include "range_map.h"

struct edge_run {
	uintptr_t start, end;
};

struct edge_snapshot {
	void *mem;		/* mmap()ed: runs[] then the page contents */
	size_t mem_len;
	size_t nr_runs;
};

/*
 * Copy the pages that are in @edges (partial edges of live registrations)
 * and marked in @pages (hidden from the child).  No malloc: safe in a
 * pthread_atfork prepare handler.  Return 0 or -ENOMEM (nothing saved).
 */
int edge_snapshot_take(struct edge_snapshot *snap, const struct range_map *edges,
		       const struct range_map *pages);
/* In the child: map the saved pages back and fill them. Returns pages restored. */
size_t edge_snapshot_restore(const struct edge_snapshot *snap);
void edge_snapshot_release(struct edge_snapshot *snap);

#endif
