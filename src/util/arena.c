// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <stdint.h>
#include <sys/mman.h>

#include "arena.h"

#define CHUNK_SIZE (64u << 10)
#define CLASS_SIZE 32u
#define SMALL_CLASSES 4		/* 32, 64, 96, 128 bytes; then 256, 512, 1024 */
#define BIG_ALIGN 64u		/* B-tree nodes: whole cache lines */

struct arena_chunk {
	struct arena_chunk *next;
};

struct arena_free {
	struct arena_free *next;
};

void arena_init(struct arena *a)
{
	*a = (struct arena){ 0 };
}

void arena_release(struct arena *a)
{
	struct arena_chunk *c = a->chunks, *next;

	for (; c; c = next) {
		next = c->next;
		munmap(c, CHUNK_SIZE);
	}
	arena_init(a);
}

static size_t class_of(size_t size)
{
	size_t cls = SMALL_CLASSES, bytes = 4 * CLASS_SIZE;

	if (size <= bytes)
		return (size + CLASS_SIZE - 1) / CLASS_SIZE - 1;
	for (bytes *= 2; bytes < size; bytes *= 2)
		cls++;
	return cls;
}

static size_t class_bytes(size_t cls)
{
	if (cls < SMALL_CLASSES)
		return (cls + 1) * CLASS_SIZE;
	return (size_t)4 * CLASS_SIZE << (cls - SMALL_CLASSES + 1);
}

static void *arena_alloc(void *ctx, size_t size)
{
	struct arena *a = ctx;
	size_t cls = class_of(size), bytes = class_bytes(cls), align;
	void *p;

	if (!size || cls >= ARENA_CLASSES)
		return NULL;
	align = cls < SMALL_CLASSES ? CLASS_SIZE : BIG_ALIGN;
	if (a->free[cls]) {
		p = a->free[cls];
		a->free[cls] = a->free[cls]->next;
	} else {
		if (a->cursor)
			a->cursor += -(uintptr_t)a->cursor & (align - 1);
		if (!a->cursor || a->cursor > a->limit || (size_t)(a->limit - a->cursor) < bytes) {
			struct arena_chunk *c = mmap(NULL, CHUNK_SIZE, PROT_READ | PROT_WRITE,
						     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);

			if (c == MAP_FAILED)
				return NULL;
			c->next = a->chunks;
			a->chunks = c;
			/* Tail of the old chunk is abandoned: < one object. */
			a->cursor = (char *)c + CLASS_SIZE;
			a->limit = (char *)c + CHUNK_SIZE;
		}
		p = a->cursor;
		a->cursor += bytes;
	}
	a->bytes_in_use += bytes;
	return p;
}

static void arena_free(void *ctx, void *ptr, size_t size)
{
	struct arena *a = ctx;
	size_t cls = class_of(size);
	struct arena_free *f = ptr;

	f->next = a->free[cls];
	a->free[cls] = f;
	a->bytes_in_use -= class_bytes(cls);
}

struct node_alloc arena_node_alloc(struct arena *a)
{
	return (struct node_alloc){ arena_alloc, arena_free, a };
}
