// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <errno.h>

#include "block_set.h"

/*
 * Slots and the count are read and written with relaxed atomics: one
 * writer at a time (the caller's lock), readers that may run meanwhile
 * and check a sequence count the writer bumps (registry_window.c).  A
 * reader during a change sees some mix of old and new slots, never a torn
 * one, and its probe still ends: at least half of the slots are free.
 */
#define LOAD(x) __atomic_load_n(&(x), __ATOMIC_RELAXED)
#define STORE(x, v) __atomic_store_n(&(x), (v), __ATOMIC_RELAXED)

static size_t home_of(const struct block_set *s, uintptr_t key)
{
	uint64_t x = (uint64_t)key * 0x9e3779b97f4a7c15ull;

	/* Neighbouring blocks are the common case: spread them (Fibonacci hashing). */
	return (size_t)(x >> 32 ^ x) & s->mask;
}

void block_set_init(struct block_set *s, uintptr_t *slot, size_t slots)
{
	s->slot = slot;
	s->mask = slots - 1;
	s->max = slots / 2;
	block_set_clear(s);
}

void block_set_clear(struct block_set *s)
{
	for (size_t i = 0; i <= s->mask; i++)
		STORE(s->slot[i], 0);
	STORE(s->n, 0);
}

/* The slot holding @key, or the free slot ending its probe run. */
static size_t probe(const struct block_set *s, uintptr_t key)
{
	size_t i = home_of(s, key);

	uintptr_t v;

	while ((v = LOAD(s->slot[i])) && v != key + 1)
		i = (i + 1) & s->mask;
	return i;
}

bool block_set_has(const struct block_set *s, uintptr_t key)
{
	return LOAD(s->n) && LOAD(s->slot[probe(s, key)]) == key + 1;
}

int block_set_add(struct block_set *s, uintptr_t key)
{
	size_t i = probe(s, key);

	if (s->slot[i])
		return -EEXIST;
	if (s->n == s->max)
		return -ENOSPC;
	STORE(s->slot[i], key + 1);
	STORE(s->n, s->n + 1);
	return 0;
}

/* Whether the key of home @h may move to the hole at @hole, probing from @h through @i. */
static bool may_fill(size_t hole, size_t h, size_t i)
{
	/* Cyclically, the hole must lie in [h, i): the key is still found from h. */
	return hole <= i ? (h <= hole || h > i) : (h <= hole && h > i);
}

bool block_set_del(struct block_set *s, uintptr_t key)
{
	size_t hole = probe(s, key), i;

	if (!s->slot[hole])
		return false;
	STORE(s->slot[hole], 0);
	STORE(s->n, s->n - 1);
	for (i = (hole + 1) & s->mask; s->slot[i]; i = (i + 1) & s->mask) {
		if (may_fill(hole, home_of(s, s->slot[i] - 1), i)) {
			STORE(s->slot[hole], s->slot[i]);
			STORE(s->slot[i], 0);
			hole = i;
		}
	}
	return true;
}

bool block_set_next(const struct block_set *s, size_t *pos, uintptr_t *key)
{
	while (*pos <= s->mask) {
		uintptr_t v = s->slot[(*pos)++];

		if (v) {
			*key = v - 1;
			return true;
		}
	}
	return false;
}
