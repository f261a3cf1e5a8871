// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The cheap VMA sources (vm.c): ioctl(PROCMAP_QUERY) and the /proc/self/maps
 * fallback must answer exactly what smaps answers, over many random layouts;
 * the engine must keep its promises whichever source it uses, including
 * the probe that decides without smaps whether a private VMA was already
 * DONTFORK (the application's mark) and the munmap/mmap-at-the-same-address
 * case (a new mapping is marked again, never trusted from old state).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <safepin/safepin.h>

#include "helpers.h"
#include "vm.h"

#define MASK (VMA_READ | VMA_WRITE | VMA_EXEC | VMA_SHARED | VMA_FILE | VMA_HUGETLB)
#define MAXV 512

struct vlist {
	struct vma_info v[MAXV];
	size_t n;
};

static int collect(void *ctx, const struct vma_info *vma)
{
	struct vlist *l = ctx;

	if (l->n < MAXV)
		l->v[l->n++] = *vma;
	return 0;
}

/*
 * The first and last VMA reach outside [start, end), where other memory
 * may be mapped between two queries (a sanitizer runtime maps its own
 * anonymous memory at any time, and a neighbour with equal flags merges):
 * compare what lies inside the range.
 */
static void clip(struct vma_info *v, uintptr_t start, uintptr_t end)
{
	if (v->start < start)
		v->start = start;
	if (v->end > end)
		v->end = end;
}

static void query(enum vm_source src, uintptr_t start, uintptr_t end, struct vlist *l)
{
	l->n = 0;
	vm_force_source(src);
	assert_int_equal(vm_for_each_vma(start, end, collect, l), 0);
	vm_force_source(VM_SOURCE_AUTO);
	for (size_t i = 0; i < l->n; i++)
		clip(&l->v[i], start, end);
}

static void assert_same(const struct vlist *a, const struct vlist *b)
{
	assert_int_equal(a->n, b->n);
	for (size_t i = 0; i < a->n; i++) {
		assert_int_equal(a->v[i].start, b->v[i].start);
		assert_int_equal(a->v[i].end, b->v[i].end);
		assert_int_equal(a->v[i].flags & MASK, b->v[i].flags & MASK);
		assert_int_equal(a->v[i].page_size, b->v[i].page_size);
	}
}

static void test_host_has_procmap_query(void **state)
{
	(void)state;
	/* The host kernel (6.11+) has it; the guests' 6.1 and 5.10 do not. */
	assert_true(vm_has_procmap_query());
}

/* Random layouts: prot changes, holes, shared file pages, DONTFORK, PROT_NONE. */
static void test_sources_agree(void **state)
{
	const size_t npages = 256;
	int fd = memfd_create("vmq", 0);
	unsigned int seed = 12345;
	struct vlist *a = malloc(sizeof(*a)), *m = malloc(sizeof(*m)), *s = malloc(sizeof(*s));

	(void)state;
	assert_true(fd >= 0 && a && m && s);
	assert_int_equal(ftruncate(fd, 16 * PAGE), 0);
	for (int round = 0; round < 40; round++) {
		char *base = map_anon(npages * PAGE, PROT_READ | PROT_WRITE, 0);
		uintptr_t lo = (uintptr_t)base, hi = lo + npages * PAGE;

		for (int op = 0; op < 24; op++) {
			size_t first = (size_t)rand_r(&seed) % npages;
			size_t n = 1 + (size_t)rand_r(&seed) % 16;
			char *p = base + first * PAGE;

			if (first + n > npages)
				n = npages - first;
			switch (rand_r(&seed) % 6) {
			case 0:
				mprotect(p, n * PAGE, PROT_READ);
				break;
			case 1:
				mprotect(p, n * PAGE, PROT_NONE);
				break;
			case 2:
				munmap(p, n * PAGE);
				break;
			case 3:
				madvise(p, n * PAGE, MADV_DONTFORK);
				break;
			case 4:
				if (n > 16)
					n = 16;
				mmap(p, n * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_FIXED, fd, 0);
				break;
			default:
				mmap(p, n * PAGE, PROT_READ | PROT_EXEC,
				     MAP_PRIVATE | MAP_FIXED, fd, 0);
				break;
			}
		}
		query(VM_SOURCE_AUTO, lo, hi, a);
		query(VM_SOURCE_MAPS, lo, hi, m);
		query(VM_SOURCE_SMAPS, lo, hi, s);
		assert_same(a, s);
		assert_same(m, s);
		/* One address at a time, mapped or not. */
		for (int k = 0; k < 32; k++) {
			uintptr_t addr = lo + ((size_t)rand_r(&seed) % npages) * PAGE + 17;
			struct vma_info va, vm;
			int ra, rm;

			ra = vm_vma_at(addr, &va);
			vm_force_source(VM_SOURCE_MAPS);
			rm = vm_vma_at(addr, &vm);
			vm_force_source(VM_SOURCE_AUTO);
			assert_int_equal(ra, rm);
			clip(&va, lo, hi);
			clip(&vm, lo, hi);
			if (!ra) {
				assert_int_equal(va.start, vm.start);
				assert_int_equal(va.end, vm.end);
				assert_int_equal(va.flags & MASK, vm.flags & MASK);
			} else {
				assert_int_equal(ra, -ENOENT);
			}
		}
		munmap(base, npages * PAGE);
	}
	close(fd);
	free(a);
	free(m);
	free(s);
}

/* Hugetlb: PROCMAP_QUERY's page size equals smaps' KernelPageSize. */
static void test_sources_agree_hugetlb(void **state)
{
	const size_t huge = 2ul << 20;
	struct vlist a, s;
	char *p;

	(void)state;
	if (hugetlb_reserve(2) < 2)
		skip();
	p = mmap(NULL, 2 * huge, PROT_READ | PROT_WRITE,
		 MAP_PRIVATE | MAP_ANONYMOUS | MAP_HUGETLB, -1, 0);
	if (p == MAP_FAILED) {
		hugetlb_unreserve();
		skip();
	}
	query(VM_SOURCE_AUTO, (uintptr_t)p, (uintptr_t)p + 2 * huge, &a);
	query(VM_SOURCE_SMAPS, (uintptr_t)p, (uintptr_t)p + 2 * huge, &s);
	assert_same(&a, &s);
	assert_int_equal(a.v[0].page_size, huge);
	assert_true(a.v[0].flags & VMA_HUGETLB);
	/* The maps fallback reads smaps for file-backed VMAs: same answer. */
	query(VM_SOURCE_MAPS, (uintptr_t)p, (uintptr_t)p + 2 * huge, &a);
	assert_same(&a, &s);
	munmap(p, 2 * huge);
	hugetlb_unreserve();
}

static void marks(const char *m, size_t n, const char *expect)
{
	char got[64];

	fork_marks(m, n, got);
	assert_string_equal(got, expect);
}

/*
 * The application's own DONTFORK around a registration, with the run a
 * strict part of the VMA (the probe decides without smaps) and as the whole
 * VMA (smaps decides), under every source.
 */
static void app_dontfork_survives(enum vm_source src)
{
	char *m = map_anon(8 * PAGE, PROT_READ | PROT_WRITE, 0);
	struct safepin_stats s0;

	vm_force_source(src);
	assert_int_equal(madvise(m + 2 * PAGE, 4 * PAGE, MADV_DONTFORK), 0);
	marks(m, 8, "..DDDD..");
	s0 = stats_now();
	/* Strictly inside the application's VMA. */
	assert_int_equal(safepin_pin(m + 3 * PAGE, PAGE + 5, 0), 0);
	assert_int_equal(stats_now().pages_marked, s0.pages_marked);
	assert_int_equal(safepin_unpin(m + 3 * PAGE, PAGE + 5), 0);
	marks(m, 8, "..DDDD..");
	/* Exactly the application's VMA. */
	assert_int_equal(safepin_pin(m + 2 * PAGE, 4 * PAGE, 0), 0);
	assert_int_equal(stats_now().madvise_calls, s0.madvise_calls + (src == VM_SOURCE_SMAPS ? 0 : 1));
	assert_int_equal(safepin_unpin(m + 2 * PAGE, 4 * PAGE), 0);
	marks(m, 8, "..DDDD..");
	/* Across it: ours on both sides. */
	assert_int_equal(safepin_pin(m + PAGE, 6 * PAGE, 0), 0);
	marks(m, 8, ".DDDDDD.");
	assert_int_equal(stats_now().pages_marked, s0.pages_marked + 2);
	assert_int_equal(safepin_unpin(m + PAGE, 6 * PAGE), 0);
	marks(m, 8, "..DDDD..");
	/* Ours strictly inside a VMA that is not DONTFORK. */
	assert_int_equal(safepin_pin(m + 6 * PAGE + 1, 1, 0), 0);
	marks(m, 8, "..DDDDD.");
	assert_int_equal(stats_now().pages_marked, s0.pages_marked + 1);
	assert_int_equal(safepin_unpin(m + 6 * PAGE + 1, 1), 0);
	marks(m, 8, "..DDDD..");
	assert_int_equal(stats_now().pages_marked, s0.pages_marked);
	vm_force_source(VM_SOURCE_AUTO);
	assert_int_equal(munmap(m, 8 * PAGE), 0);
}

static void test_app_dontfork_procmap(void **state)
{
	(void)state;
	app_dontfork_survives(VM_SOURCE_AUTO);
}

static void test_app_dontfork_maps(void **state)
{
	(void)state;
	app_dontfork_survives(VM_SOURCE_MAPS);
}

static void test_app_dontfork_smaps(void **state)
{
	(void)state;
	app_dontfork_survives(VM_SOURCE_SMAPS);
}

/*
 * Deregister, munmap, mmap a new buffer at the same address, register it:
 * the new mapping must be marked (libibverbs' stale-tree bug leaves it
 * unmarked).  Nothing is remembered across an unpin that could be trusted.
 */
static void remap_same_address(enum vm_source src)
{
	char *m = map_anon(8 * PAGE, PROT_READ | PROT_WRITE, 0);
	char *again;

	vm_force_source(src);
	for (int i = 0; i < 3; i++) {
		assert_int_equal(safepin_pin(m + PAGE, 2 * PAGE, 0), 0);
		marks(m, 8, ".DD.....");
		assert_int_equal(safepin_unpin(m + PAGE, 2 * PAGE), 0);
		marks(m, 8, "........");
	}
	assert_int_equal(safepin_pin(m + PAGE, 2 * PAGE, 0), 0);
	assert_int_equal(safepin_unpin(m + PAGE, 2 * PAGE), 0);
	assert_int_equal(munmap(m, 8 * PAGE), 0);
	again = mmap(m, 8 * PAGE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	assert_ptr_equal(again, m);
	memset(m, 0x5a, 8 * PAGE);
	assert_int_equal(safepin_pin(m + PAGE, 2 * PAGE, 0), 0);
	marks(m, 8, ".DD.....");
	assert_true(child_segfaults_at(m + PAGE));
	{
		const void *ok[2] = { m, m + 3 * PAGE };

		assert_int_equal(child_reads(ok, 2, 0x5a), 1);
	}
	/* Also a registration still live while its memory is replaced. */
	assert_int_equal(munmap(m + PAGE, 2 * PAGE), 0);
	again = mmap(m + PAGE, 2 * PAGE, PROT_READ | PROT_WRITE,
		     MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	assert_ptr_equal(again, m + PAGE);
	marks(m, 8, "........");	/* the kernel dropped the mark with the VMA */
	assert_int_equal(safepin_unpin(m + PAGE, 2 * PAGE), 0);
	assert_int_equal(safepin_pin(m + PAGE, 2 * PAGE, 0), 0);
	marks(m, 8, ".DD.....");
	assert_int_equal(safepin_unpin(m + PAGE, 2 * PAGE), 0);
	marks(m, 8, "........");
	vm_force_source(VM_SOURCE_AUTO);
	assert_int_equal(munmap(m, 8 * PAGE), 0);
}

static void test_remap_same_address_procmap(void **state)
{
	(void)state;
	remap_same_address(VM_SOURCE_AUTO);
}

static void test_remap_same_address_maps(void **state)
{
	(void)state;
	remap_same_address(VM_SOURCE_MAPS);
}

/* Shared file memory is counted, never marked, and pre-faulted. */
static void test_shared_file_counted(void **state)
{
	int fd = memfd_create("vmq2", 0);
	char *p;
	struct safepin_stats s0;

	(void)state;
	assert_true(fd >= 0);
	assert_int_equal(ftruncate(fd, 4 * PAGE), 0);
	p = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	assert_ptr_not_equal(p, MAP_FAILED);
	s0 = stats_now();
	for (int src = VM_SOURCE_AUTO; src <= VM_SOURCE_SMAPS; src++) {
		vm_force_source((enum vm_source)src);
		assert_int_equal(safepin_pin(p + 1, 2 * PAGE, 0), 0);
		marks(p, 4, "....");
		assert_int_equal(safepin_unpin(p + 1, 2 * PAGE), 0);
	}
	vm_force_source(VM_SOURCE_AUTO);
	assert_int_equal(stats_now().madvise_calls, s0.madvise_calls);
	assert_int_equal(stats_now().prefaulted_pages, s0.prefaulted_pages + 9);
	munmap(p, 4 * PAGE);
	close(fd);
}

/* Our /proc/self/maps descriptor stays out of the application's way. */
static void test_fd_not_lowest(void **state)
{
	char *m = map_anon(PAGE, PROT_READ | PROT_WRITE, 0);
	int probe = dup(0);

	(void)state;
	assert_true(probe >= 0);
	close(probe);
	assert_int_equal(safepin_pin(m, PAGE, 0), 0);
	assert_int_equal(safepin_unpin(m, PAGE), 0);
	/* The lowest free number is still free. */
	assert_int_equal(fcntl(probe, F_GETFD), -1);
	assert_int_equal(errno, EBADF);
	munmap(m, PAGE);
}

/*
 * The cached pagemap descriptor names the process that opened it: a raw
 * clone() child, which ran no atfork handler, must still read its own.  A
 * page the parent marked DONTFORK is present and ours alone there, and not
 * mapped at all in the child.
 */
static void test_raw_clone_child_reads_its_own_pagemap(void **state)
{
	char *p = map_anon(PAGE, PROT_READ | PROT_WRITE, 0);
	uintptr_t s = (uintptr_t)p;
	int status;
	pid_t pid;

	(void)state;
	p[0] = 1;
	assert_int_equal(madvise(p, PAGE, MADV_DONTFORK), 0);
	assert_int_equal(vm_pages_exclusive(s, s + PAGE), 1);	/* opens it here */
	pid = (pid_t)syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, NULL);
	assert_true(pid >= 0);
	if (pid == 0)
		_exit(vm_pages_exclusive(s, s + PAGE) == 0 ? 0 : 3);
	assert_int_equal(waitpid(pid, &status, 0), pid);
	assert_true(WIFEXITED(status));
	assert_int_equal(WEXITSTATUS(status), 0);
	assert_int_equal(vm_pages_exclusive(s, s + PAGE), 1);
	assert_int_equal(munmap(p, PAGE), 0);
}

/*
 * A buffer mmap()ed and registered whole, again and again (what a verbs
 * registration cache does): smaps is read the first time only, and every
 * registration still marks and every release still unmarks.  A new VMA the
 * application marked itself is still asked about, and its mark survives.
 */
static void test_whole_vma_reregistration(void **state)
{
	char *buf = map_anon(16 * PAGE, PROT_READ | PROT_WRITE, 0);
	char *own = map_anon(8 * PAGE, PROT_READ | PROT_WRITE, 0);
	unsigned long reads;

	(void)state;
	assert_int_equal(safepin_pin(buf, 16 * PAGE, 0), 0);
	assert_true(vma_has_flag(buf, "dc"));
	assert_int_equal(safepin_unpin(buf, 16 * PAGE), 0);
	assert_false(vma_has_flag(buf, "dc"));
	reads = vm_smaps_reads();
	for (int i = 0; i < 5; i++) {
		assert_int_equal(safepin_pin(buf, 16 * PAGE, 0), 0);
		assert_true(vma_has_flag(buf + 15 * PAGE, "dc"));
		assert_int_equal(safepin_unpin(buf, 16 * PAGE), 0);
		assert_false(vma_has_flag(buf, "dc"));
	}
	assert_int_equal(vm_smaps_reads(), reads);

	assert_int_equal(madvise(own, 8 * PAGE, MADV_DONTFORK), 0);
	assert_int_equal(safepin_pin(own, 8 * PAGE, 0), 0);
	assert_int_equal(vm_smaps_reads(), reads + 1);
	assert_int_equal(safepin_unpin(own, 8 * PAGE), 0);
	assert_true(vma_has_flag(own, "dc"));	/* the application's, kept */
	munmap(own, 8 * PAGE);
	munmap(buf, 16 * PAGE);
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_host_has_procmap_query),
		cmocka_unit_test(test_sources_agree),
		cmocka_unit_test(test_sources_agree_hugetlb),
		cmocka_unit_test(test_app_dontfork_procmap),
		cmocka_unit_test(test_app_dontfork_maps),
		cmocka_unit_test(test_app_dontfork_smaps),
		cmocka_unit_test(test_remap_same_address_procmap),
		cmocka_unit_test(test_remap_same_address_maps),
		cmocka_unit_test(test_shared_file_counted),
		cmocka_unit_test(test_fd_not_lowest),
		cmocka_unit_test(test_raw_clone_child_reads_its_own_pagemap),
		cmocka_unit_test(test_whole_vma_reregistration),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
