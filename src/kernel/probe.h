/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * What this kernel does, found by experiment (see probe.c): whether it
 * copies long-term pinned pages into a forked child, MADV_POPULATE_WRITE,
 * MADV_WIPEONFORK, huge page sizes.  Probed once per process and cached.
 */
#ifndef SAFEPIN_PROBE_H
#define SAFEPIN_PROBE_H

#include <stdbool.h>

#include <safepin/safepin.h>

/* The cached result (probed on first use).  Never NULL. */
const struct safepin_kernel_info *probe_kernel(void);

/*
 * Whether the probe proved that this kernel copies pinned pages into the
 * child at fork: for private anonymous memory, or for hugetlb memory.
 * Unknown counts as no.
 */
bool probe_copies_on_fork(bool hugetlb);

#endif
