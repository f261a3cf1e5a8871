// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <string.h>

#include "recent_set.h"

static size_t bucket_of(uintptr_t addr, size_t len)
{
	uint64_t x = (uint64_t)addr ^ ((uint64_t)len * 0x9e3779b97f4a7c15ull);

	/* splitmix64's finaliser: page-aligned addresses differ in high bits only. */
	x ^= x >> 30;
	x *= 0xbf58476d1ce4e5b9ull;
	x ^= x >> 27;
	x *= 0x94d049bb133111ebull;
	x ^= x >> 31;
	return (size_t)(x & (RECENT_SET_BUCKETS - 1));
}

void recent_set_clear(struct recent_set *s)
{
	memset(s, 0, sizeof(*s));
}

bool recent_set_has(const struct recent_set *s, uintptr_t addr, size_t len)
{
	size_t b = bucket_of(addr, len);

	for (unsigned int w = 0; len && w < RECENT_SET_WAYS; w++)
		if (s->bucket[b].way[w].addr == addr && s->bucket[b].way[w].len == len)
			return true;
	return false;
}

void recent_set_add(struct recent_set *s, uintptr_t addr, size_t len)
{
	size_t b = bucket_of(addr, len);
	unsigned int w;

	if (recent_set_has(s, addr, len))
		return;
	w = s->bucket[b].next;
	s->bucket[b].way[w].addr = addr;
	s->bucket[b].way[w].len = len;
	s->bucket[b].next = (w + 1) % RECENT_SET_WAYS;
}
