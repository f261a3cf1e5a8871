/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Where the data structures get their fixed-size nodes from.  The library
 * passes an allocator backed by its own mmap()ed arena (never the malloc
 * heap, whose pages an application may register and hide from a child);
 * unit tests pass malloc, or one that fails on demand.
 */
#ifndef SAFEPIN_NODE_ALLOC_H
#define SAFEPIN_NODE_ALLOC_H

#include <stddef.h>

struct node_alloc {
	void *(*alloc)(void *ctx, size_t size);
	void (*free)(void *ctx, void *ptr, size_t size);
	void *ctx;
};

#endif
