/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Everything the library asks of or tells the kernel about memory lives
 * here: madvise(), pre-faulting, and reading the VMA layout from
 * /proc/self/smaps.  The rest of the library deals in addresses and flags.
 */
#ifndef SAFEPIN_VM_H
#define SAFEPIN_VM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

enum {
	VMA_READ	= 1u << 0,
	VMA_WRITE	= 1u << 1,
	VMA_EXEC	= 1u << 2,
	VMA_SHARED	= 1u << 3,	/* MAP_SHARED: never copied on write */
	VMA_HUGETLB	= 1u << 4,
	VMA_DONTFORK	= 1u << 5,	/* VmFlags dc */
	VMA_WIPEONFORK	= 1u << 6,	/* VmFlags wf */
	VMA_FILE	= 1u << 7,	/* backed by a file (not anonymous) */
	VMA_IO		= 1u << 8,	/* VM_IO / VM_PFNMAP: no struct pages */
};

struct vma_info {
	uintptr_t start, end;
	unsigned int flags;
	size_t page_size;	/* KernelPageSize: huge page size on hugetlb */
};

typedef int (*vma_fn)(void *ctx, const struct vma_info *vma);

size_t vm_base_page_size(void);

/*
 * Call @fn, in address order, for every VMA intersecting [start, end).
 * Return: 0, @fn's first non-zero value, or a negative errno if smaps
 * could not be read.
 */
int vm_for_each_vma(uintptr_t start, uintptr_t end, vma_fn fn, void *ctx);

/* madvise(); returns 0 or -errno. */
int vm_madvise(uintptr_t start, uintptr_t end, int advice);

/*
 * Fault [start, end) in: writable when @write (breaking copy-on-write),
 * else readable.  Uses MADV_POPULATE_{WRITE,READ}; on kernels without it
 * (before 5.14) touches one byte per @page_size page with an atomic add of
 * zero, which takes a write fault but cannot lose another thread's store.
 * Data never changes.  Returns 0 or -errno.
 */
int vm_populate(uintptr_t start, uintptr_t end, bool write, size_t page_size);

/* Whether this kernel has MADV_POPULATE_WRITE (probed once). */
bool vm_has_populate(void);

/* Test hook: pretend MADV_POPULATE_* is missing, to run the fallback here. */
void vm_force_populate_fallback(bool force);

#endif
