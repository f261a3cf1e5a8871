/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* Shared by the option-taking public calls (pin_opts.c, dma_alloc.c). */
#ifndef SAFEPIN_PIN_OPTS_H
#define SAFEPIN_PIN_OPTS_H

#include <stdbool.h>
#include <stddef.h>

/*
 * Copy a caller's options structure of @src_size bytes into @dst (ours,
 * @dst_size bytes, pre-filled with defaults): -EINVAL when @src_size is
 * below @min_size (the first version of the structure), -E2BIG when the
 * caller's structure is longer than ours and the extra bytes are not zero.
 */
int opts_copy(void *dst, size_t dst_size, size_t min_size, const void *src, size_t src_size);

/* Checked registration of [addr, addr + len) with its pages on @node (-1: none). */
int pin_placed(const void *addr, size_t len, int node, bool migrate);

/* Count a failed public call and set errno; returns @ret. */
int opts_fail(int ret);

#endif
