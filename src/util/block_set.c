// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <errno.h>
#include <string.h>

#include "block_set.h"

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
	memset(s->slot, 0, (s->mask + 1) * sizeof(*s->slot));
	s->n = 0;
}

/* The slot holding @key, or the free slot ending its probe run. */
static size_t probe(const struct block_set *s, uintptr_t key)
{
	size_t i = home_of(s, key);

	while (s->slot[i] && s->slot[i] != key + 1)
		i = (i + 1) & s->mask;
	return i;
}

bool block_set_has(const struct block_set *s, uintptr_t key)
{
	return s->n && s->slot[probe(s, key)] == key + 1;
}

int block_set_add(struct block_set *s, uintptr_t key)
{
	size_t i = probe(s, key);

	if (s->slot[i])
		return -EEXIST;
	if (s->n == s->max)
		return -ENOSPC;
	s->slot[i] = key + 1;
	s->n++;
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
	s->slot[hole] = 0;
	s->n--;
	for (i = (hole + 1) & s->mask; s->slot[i]; i = (i + 1) & s->mask) {
		if (may_fill(hole, home_of(s, s->slot[i] - 1), i)) {
			s->slot[hole] = s->slot[i];
			s->slot[i] = 0;
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
