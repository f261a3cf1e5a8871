/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Everything the library asks of or tells the kernel about memory lives
 * here: madvise(), pre-faulting, and reading the VMA layout.  The rest of
 * the library deals in addresses and flags.
 *
 * The VMA layout comes from the cheapest source that answers the question:
 *  - ioctl(PROCMAP_QUERY) on /proc/self/maps (Linux 6.11+): one syscall per
 *    VMA, no text; bounds, r/w/x/shared, page size, inode;
 *  - else /proc/self/maps, parsed up to the end of the window (no page
 *    table walk in the kernel);
 *  - /proc/self/smaps only for what nothing else shows: VmFlags (dc, wf,
 *    io/pf), and the page size of file-backed VMAs on kernels without
 *    PROCMAP_QUERY (a hugetlbfs file looks like any file in maps).
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
	/* VMA_DONTFORK, VMA_WIPEONFORK and VMA_IO are known (smaps was read).
	 * Without it those three bits are 0 and mean "not looked at". */
	VMA_VMFLAGS	= 1u << 9,
};

struct vma_info {
	uintptr_t start, end;
	unsigned int flags;
	size_t page_size;	/* KernelPageSize: huge page size on hugetlb */
};

typedef int (*vma_fn)(void *ctx, const struct vma_info *vma);

/* Append @vma to a growable array (*@v, *@n used, *@cap allocated). 0 or -ENOMEM. */
int vma_push(struct vma_info **v, size_t *n, size_t *cap, const struct vma_info *vma);

/* VMAs listed in address order; free(v) when done. */
struct vma_vec {
	struct vma_info *v;
	size_t n, cap;
};

/* A vma_fn appending to the vma_vec @ctx. */
int vma_vec_collect(void *ctx, const struct vma_info *vma);
/* Index of the first VMA of @l ending above @addr (l->n if none). */
size_t vma_vec_first_after(const struct vma_vec *l, uintptr_t addr);

size_t vm_base_page_size(void);

/*
 * Call @fn, in address order, for every VMA intersecting [start, end), with
 * bounds, VMA_READ/WRITE/EXEC/SHARED/FILE/HUGETLB and page_size; the VmFlags
 * bits only where the source was smaps anyway (VMA_VMFLAGS set).  Cheap:
 * PROCMAP_QUERY, else /proc/self/maps (smaps when the window holds a
 * file-backed VMA, whose page size maps does not show).
 * Return: 0, @fn's first non-zero value, or a negative errno.
 */
int vm_for_each_vma(uintptr_t start, uintptr_t end, vma_fn fn, void *ctx);

/* The same from /proc/self/smaps: every field, VmFlags included (slow). */
int vm_for_each_vma_smaps(uintptr_t start, uintptr_t end, vma_fn fn, void *ctx);
/* How many times smaps was read (it is the expensive source; for tests). */
unsigned long vm_smaps_reads(void);

/* The VMA containing @addr (cheap source). Return 0, -ENOENT if unmapped, -errno. */
int vm_vma_at(uintptr_t addr, struct vma_info *vma);

/* Whether this kernel answers ioctl(PROCMAP_QUERY) (probed once). */
bool vm_has_procmap_query(void);

/* Test hook: which source vm_for_each_vma() and vm_vma_at() use. */
enum vm_source {
	VM_SOURCE_AUTO = 0,	/* PROCMAP_QUERY if the kernel has it, else maps */
	VM_SOURCE_MAPS,		/* /proc/self/maps (+ smaps for file-backed VMAs) */
	VM_SOURCE_SMAPS,	/* /proc/self/smaps for everything */
};
void vm_force_source(enum vm_source source);

/* madvise(); returns 0 or -errno. */
int vm_madvise(uintptr_t start, uintptr_t end, int advice);

/*
 * Fault [start, end) in: writable when @write (breaking copy-on-write),
 * else readable.  Uses MADV_POPULATE_{WRITE,READ}; on kernels without it
 * (before 5.14) touches one byte per @page_size page with an atomic add of
 * zero, which takes a write fault but cannot lose another thread's store.
 * Base pages that /proc/self/pagemap shows present (and for @write,
 * anonymous and mapped only here) are left alone: nothing to do.
 * Data never changes.  Returns 0 or -errno.
 */
int vm_populate(uintptr_t start, uintptr_t end, bool write, size_t page_size);

/*
 * Whether /proc/self/pagemap shows every base page of [start, end)
 * present, not swapped, anonymous and mapped by this process alone: what
 * a write pre-fault would leave, and private memory, except that the PTE
 * may still be write-protected (see vm_note_cow_child()).  Return 1, 0 (no, or
 * pagemap unreadable; also under vm_force_populate_always()) or -errno.
 */
int vm_pages_exclusive(uintptr_t start, uintptr_t end);

/*
 * A child that shares this process's private pages copy-on-write was
 * created (a fork(), or the probe's raw clone()).  From then on a present
 * page pagemap shows mapped by us alone may still have the write-protected
 * PTE the fork left (the child exited): only a write fault makes it
 * writable, and a read-only pin of it is lost at the next CPU write on
 * kernels before 5.19 and for FOLL_GET pinners on any kernel.
 */
void vm_note_cow_child(void);
bool vm_cow_child_seen(void);

/*
 * Write-fault every present base page of [start, end), which must be
 * writable private memory, without faulting absent ones in (no memory is
 * added) and without changing data.  Best effort: nothing without pagemap.
 */
void vm_write_fault_present(uintptr_t start, uintptr_t end);

/*
 * Map what this file keeps for the life of the process (a page telling the
 * process that opened the cached descriptors from its children), so that
 * it exists before the first registration (a constructor calls it at load).
 * Idempotent, thread-safe.
 */
void vm_init(void);

/* Whether this kernel has MADV_POPULATE_WRITE (probed once). */
bool vm_has_populate(void);

/* Test hook: pretend MADV_POPULATE_* is missing, to run the fallback here. */
void vm_force_populate_fallback(bool force);

/*
 * Test hook: fault in even when /proc/self/pagemap shows every page present
 * and exclusive already (vm_populate() skips the work then).
 */
void vm_force_populate_always(bool force);

#endif
