/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * What tests observe of the kernel, read independently of the library's
 * own vm.c so that a bug there cannot hide itself.
 */
#ifndef SAFEPIN_TEST_HELPERS_H
#define SAFEPIN_TEST_HELPERS_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>
#include <setjmp.h>
#include <cmocka.h>

#include "node_alloc.h"

#include <safepin/safepin.h>

#define PAGE 4096ul

/* VmFlags of the VMA containing @addr, as a space separated string ("" if unmapped). */
bool vmflags_at(const void *addr, char *out, size_t size);
/* Whether the VMA containing @addr has VmFlag @flag ("dc", "wf", ...). */
bool vma_has_flag(const void *addr, const char *flag);
/*
 * One character per page of [addr, addr + npages * PAGE): 'D' marked
 * DONTFORK, 'W' WIPEONFORK, '.' neither, ' ' unmapped.  Compare with
 * assert_string_equal for a readable failure.
 */
void fork_marks(const void *addr, size_t npages, char *out);
/* The same picture with one character per @stride bytes (e.g. per huge page). */
void fork_marks_stride(const void *addr, size_t n, size_t stride, char *out);
/* safepin_pin/unpin of pages [first, last) of @base, asserting success. */
void pin_page_range(char *base, size_t first, size_t last);
void unpin_page_range(char *base, size_t first, size_t last);
/* Assert fork_marks() of @npages (at most 64) pages at @base equals @expect. */
void assert_page_marks(const void *base, size_t npages, const char *expect);
/* Bounds of the VMA containing @addr; false if unmapped. */
bool vma_bounds(const void *addr, uintptr_t *start, uintptr_t *end);
/* A "Name:   123 kB" field of the smaps entry of the VMA containing @addr, in kB; -1 if absent. */
long smaps_field_kb(const void *addr, const char *name);
/* Whether this test runs under valgrind (which preloads its own libraries). */
bool under_valgrind(void);
/*
 * A snapshot of VmFlags of every VMA of the process, for "nothing changed"
 * (under a sanitizer or valgrind: of the VMAs marked dc or wf only).
 */
char *smaps_flags_snapshot(void);
/*
 * The same into @out without allocating, so that taking it does not move
 * the heap: for "before" and "after" around a call that must change nothing.
 */
void smaps_flags_snapshot_buf(char *out, size_t size);
/* Assert two snapshots are equal; on failure print only the lines that differ. */
void assert_same_snapshot(const char *before, const char *after);

/* /proc/self/pagemap entry of the page containing @addr. */
uint64_t pagemap_entry(const void *addr);
#define PM_PRESENT (1ull << 63)
#define PM_EXCLUSIVE (1ull << 56)

/*
 * Fork a child that reads one byte at each address in turn and reports
 * the result.  Return: 1 if the child read @expect at every address,
 * -SIGSEGV (or another signal) if it died, 0 if it read something else.
 */
int child_reads(const void *const *addrs, size_t n, unsigned char expect);
/* Whether a child dies with SIGSEGV reading @addr. */
bool child_segfaults_at(const void *addr);
/*
 * A child of a raw clone() (no atfork handler runs) reads @p: 1 if it read
 * 0x5a, 0 if it died with SIGSEGV, -1 if it read 0 (a WIPEONFORK page).
 */
int raw_clone_reads(const volatile char *p);

/*
 * Fork a child that only sleeps, so that the parent's private pages are
 * copy-on-write shared with it until kill_child() (SIGKILL + wait).
 */
pid_t fork_sleeper(void);
void kill_child(pid_t pid);

/*
 * Minor faults taken by storing each page's first byte back into it, over
 * [p, p + len): 0 when every PTE was writable already, one per page a
 * fork left write-protected (even once its child is gone).
 */
long write_faults(char *p, size_t len);
/*
 * Skip the calling test when write_faults() cannot count: under valgrind,
 * whose shadow memory the fork write-protected as well.  Call first thing.
 */
void skip_if_faults_uncountable(void);

/* mmap with MAP_PRIVATE|MAP_ANONYMOUS (plus @extra flags); asserts success. */
void *map_anon(size_t len, int prot, int extra);

/* safepin_get_stats(), asserting success. */
struct safepin_stats stats_now(void);
/*
 * Back to immediate unmarking, which unmarks whatever was parked or left in
 * windows, and assert that nothing is left: no live or parked
 * registration, no page marked.
 */
void assert_immediate_leaves_nothing(void);

/* Reserve @n 2 MiB huge pages if possible; returns how many are free. */
long hugetlb_reserve(long n);
/* Give back what hugetlb_reserve() added to the pool (nr_hugepages as before). */
void hugetlb_unreserve(void);

/*
 * A node allocator over malloc for the data-structure tests: counts the
 * nodes alive and fails on demand.  test_alloc_budget: -1 never fails,
 * n lets the next n allocations succeed and fails the rest.
 */
extern long test_alloc_live;
extern long test_alloc_budget;
extern const struct node_alloc test_alloc;

#endif
