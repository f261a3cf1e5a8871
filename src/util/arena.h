/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Bookkeeping memory for the registry: fixed-size objects carved from the
 * library's own anonymous mappings.  Never the malloc heap: an application
 * may register a heap buffer that shares a page with our nodes, and a child
 * would then fault on them.  A forked child drops the parent's arena whole.
 */
#ifndef SAFEPIN_ARENA_H
#define SAFEPIN_ARENA_H

#include <stddef.h>

#include "node_alloc.h"

struct arena_chunk;
struct arena_free;

#define ARENA_CLASSES 7	/* 32, 64, 96, 128, 256, 512, 1024 bytes */

struct arena {
	struct arena_chunk *chunks;
	char *cursor, *limit;			/* bump area of the newest chunk */
	struct arena_free *free[ARENA_CLASSES];	/* per size class */
	size_t bytes_in_use;
};

void arena_init(struct arena *a);
/* Unmap every chunk; the arena is empty and usable afterwards. */
void arena_release(struct arena *a);
/* A node_alloc that allocates from @a (objects up to 1 KiB: B-tree nodes). */
struct node_alloc arena_node_alloc(struct arena *a);

#endif
