/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * A small lossy set of recently seen (addr, len) keys: 4-way set
 * associative, a newer key evicts the oldest of the four in its bucket
 * (direct mapping let two buffers of a registration cache that collide
 * evict each other forever).  Deferred
 * unmarking parks only ranges seen before, so one-off ranges (which would
 * never be revived) pay nothing for it.  A lost key costs one more
 * immediate unmarking, never a wrong answer.  Pure data structure.
 */
#ifndef SAFEPIN_RECENT_SET_H
#define SAFEPIN_RECENT_SET_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define RECENT_SET_WAYS 4
#define RECENT_SET_BUCKETS 256	/* power of two */
#define RECENT_SET_SLOTS (RECENT_SET_WAYS * RECENT_SET_BUCKETS)

struct recent_set {
	struct {
		struct {
			uintptr_t addr;
			size_t len;	/* 0: empty */
		} way[RECENT_SET_WAYS];
		unsigned int next;	/* the way the next new key replaces */
	} bucket[RECENT_SET_BUCKETS];
};

void recent_set_clear(struct recent_set *s);
bool recent_set_has(const struct recent_set *s, uintptr_t addr, size_t len);
void recent_set_add(struct recent_set *s, uintptr_t addr, size_t len);

#endif
