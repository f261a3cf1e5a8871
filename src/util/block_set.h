/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * A set of block numbers (an address shifted right by a block size) in a
 * fixed array the caller provides: open addressing, linear probing,
 * deletion by backward shift, so no tombstones build up.  It never
 * allocates: the windows of windowed unmarking live in one, and a lookup
 * on the registration fast path must cost a hash and a compare or two.
 * Pure data structure.
 */
#ifndef SAFEPIN_BLOCK_SET_H
#define SAFEPIN_BLOCK_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

struct block_set {
	uintptr_t *slot;	/* key + 1; 0 marks a free slot */
	size_t mask;		/* slots - 1 */
	size_t n, max;		/* max = slots / 2 keeps probe runs short */
};

/* @slots: a power of two, at least 2. */
void block_set_init(struct block_set *s, uintptr_t *slot, size_t slots);
void block_set_clear(struct block_set *s);
bool block_set_has(const struct block_set *s, uintptr_t key);
/* Return 0, -EEXIST (already in), or -ENOSPC (full: half the slots used). */
int block_set_add(struct block_set *s, uintptr_t key);
/* Return whether @key was in the set. */
bool block_set_del(struct block_set *s, uintptr_t key);
/*
 * Iterate: start with *@pos = 0; each call stores the next key and returns
 * true, false when none is left.  The set must not change meanwhile.
 */
bool block_set_next(const struct block_set *s, size_t *pos, uintptr_t *key);

#endif
