/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * ibv_rereg_mr()'s arguments to mr_rereg_plan(): shared by the verbs API
 * (safepin_rereg_mr) and the LD_PRELOAD shim's ibv_rereg_mr.
 */
#ifndef SAFEPIN_REREG_PLAN_H
#define SAFEPIN_REREG_PLAN_H

#include <infiniband/verbs.h>

#include "mr_table.h"

/* @old: the region's pin, NULL if it has none. */
static inline void plan_ibv_rereg(struct mr_rereg_plan *plan, const struct mr_pin *old,
				  const struct ibv_mr *mr, int flags, void *addr,
				  size_t length, int access)
{
	const struct mr_pin want = { (uintptr_t)addr, length };
	const struct mr_pin cur = { (uintptr_t)mr->addr, mr->length };

	mr_rereg_plan(plan, old, flags & IBV_REREG_MR_CHANGE_TRANSLATION ? &want : NULL, &cur,
		      flags & IBV_REREG_MR_CHANGE_ACCESS, access & IBV_ACCESS_ON_DEMAND);
}

#endif
