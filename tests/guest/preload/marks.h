/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/* For preload_dlopen, which links no libibverbs (so not ../verbs/rdma.c). */
#ifndef SAFEPIN_PRELOAD_MARKS_H
#define SAFEPIN_PRELOAD_MARKS_H

#include <stddef.h>

/* One char per 4 KiB page of [addr, addr + n pages): 'D' if VmFlags has dc. */
void dc_marks(const void *addr, size_t n, char *out);

#endif
