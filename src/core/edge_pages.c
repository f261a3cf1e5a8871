// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <errno.h>
#include <stdbool.h>
#include <string.h>
#include <sys/mman.h>

#include "edge_pages.h"
#include "vm.h"

/*
 * The edge pages belong to the application: under AddressSanitizer they hold
 * redzones of its heap chunks, which a whole-page memcpy() would trip over.
 * Copy them with an uninstrumented loop of volatile word accesses (which the
 * compiler cannot turn back into a memcpy() call).
 */
#if defined(__has_feature)
#if __has_feature(address_sanitizer)
#define NO_ASAN __attribute__((no_sanitize("address")))
#endif
#endif
#if !defined(NO_ASAN) && defined(__SANITIZE_ADDRESS__)
#define NO_ASAN __attribute__((no_sanitize_address))
#endif
#ifndef NO_ASAN
#define NO_ASAN
#endif

NO_ASAN static void copy_page_words(void *dst, const void *src, size_t len)
{
	volatile uint64_t *d = dst;
	const volatile uint64_t *s = src;

	for (size_t i = 0; i < len / sizeof(*d); i++)
		d[i] = s[i];
}

/* Two passes over the edge map: the first sizes the snapshot, the second fills it. */
struct edge_walk {
	const struct range_map *pages;
	struct edge_run *runs;	/* NULL in the sizing pass */
	char *data;
	size_t nr_runs, bytes;
	uintptr_t prev_end;
};

static void add_page(struct edge_walk *w, uintptr_t page, size_t ps)
{
	bool extends = w->nr_runs && w->prev_end == page;

	if (w->runs) {
		copy_page_words(w->data + w->bytes, (const void *)page, ps);
		if (extends)
			w->runs[w->nr_runs - 1].end += ps;
		else
			w->runs[w->nr_runs] = (struct edge_run){ page, page + ps };
	}
	if (!extends)
		w->nr_runs++;
	w->prev_end = page + ps;
	w->bytes += ps;
}

static int walk_edge(void *ctx, const struct range_seg *seg, unsigned int count)
{
	struct edge_walk *w = ctx;
	size_t ps = vm_base_page_size();

	(void)count;
	for (uintptr_t page = seg->start; page < seg->end; page += ps) {
		enum range_mark mark = RANGE_MARK_NONE;

		if (range_map_count(w->pages, page, &mark) && mark != RANGE_MARK_NONE)
			add_page(w, page, ps);
	}
	return 0;
}

int edge_snapshot_take(struct edge_snapshot *snap, const struct range_map *edges,
		       const struct range_map *pages)
{
	struct edge_walk w = { .pages = pages };
	size_t header;
	void *mem;

	*snap = (struct edge_snapshot){ 0 };
	range_map_walk(edges, walk_edge, &w);
	if (!w.nr_runs)
		return 0;
	header = w.nr_runs * sizeof(struct edge_run);
	header = (header + 63) & ~(size_t)63;
	mem = mmap(NULL, header + w.bytes, PROT_READ | PROT_WRITE,
		   MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		return -ENOMEM;
	snap->mem = mem;
	snap->mem_len = header + w.bytes;
	w = (struct edge_walk){ .pages = pages, .runs = mem, .data = (char *)mem + header };
	range_map_walk(edges, walk_edge, &w);
	snap->nr_runs = w.nr_runs;
	return 0;
}

size_t edge_snapshot_restore(const struct edge_snapshot *snap)
{
	const struct edge_run *runs = snap->mem;
	size_t header = (snap->nr_runs * sizeof(*runs) + 63) & ~(size_t)63;
	const char *data;
	size_t restored = 0;

	if (!snap->nr_runs)
		return 0;	/* nothing saved: snap->mem is NULL */
	data = (const char *)snap->mem + header;

	for (size_t i = 0; i < snap->nr_runs; i++) {
		size_t len = runs[i].end - runs[i].start;
		void *p = mmap((void *)runs[i].start, len, PROT_READ | PROT_WRITE,
			       MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);

		if (p != MAP_FAILED) {
			copy_page_words(p, data, len);
			restored += len / vm_base_page_size();
		}
		data += len;
	}
	return restored;
}

void edge_snapshot_release(struct edge_snapshot *snap)
{
	if (snap->mem)
		munmap(snap->mem, snap->mem_len);
	*snap = (struct edge_snapshot){ 0 };
}
