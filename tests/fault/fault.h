/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Fault injection by link-time wrapping: the test executables link the
 * static library with -Wl,--wrap=madvise,--wrap=mmap,... so every call the
 * library's objects make to these functions goes through __wrap_*() here.
 * Nothing in the library changes.  While armed, the wrappers number every
 * fallible call; call #fail_at fails with a chosen errno and is recorded.
 *
 * fault_run() drives one operation of a scenario through every position:
 * for k = 1, 2, ... a forked child (fresh registry and bookkeeping arena)
 * sets the scenario up, makes call #k fail, and checks that the operation
 * returned the injected errno and changed nothing (VmFlags of every VMA or
 * of the test buffers, live registrations, pages marked), that the same
 * operation then succeeds, and that undoing it restores the start state;
 * until k passes the number of calls the operation makes.
 */
#ifndef SAFEPIN_TEST_FAULT_H
#define SAFEPIN_TEST_FAULT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <safepin/safepin.h>

#define PAGE 4096ul

/* Sanitizer runtimes map memory of their own at any time (allocator,
 * shadow): the whole-process VMA comparison is skipped under them. */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

enum fault_kind {
	FK_MADVISE,	/* detail: advice */
	FK_MMAP,
	FK_MALLOC,	/* detail: FAULT_MALLOC (malloc, calloc) or FAULT_REALLOC */
	FK_OPEN,
	FK_READ,
	FK_IOCTL,	/* detail: request (PROCMAP_QUERY, VFIO, iommufd) */
	FK_DEVICE,	/* a fake provider's verbs call; detail: which */
	FK_NODE,	/* a bookkeeping node of a hooked map: fault_hook_node_alloc() */
	FK_NR
};

#define FAULT_MALLOC 0
#define FAULT_REALLOC 1

/* The errno each kind fails with: distinct, so that pass-through shows. */
int fault_errno(enum fault_kind k, long detail);
const char *fault_desc(enum fault_kind k, long detail);

/* Outside fault_run(): make the next call of kind @k with @detail fail once
 * (e.g. FK_MADVISE, MADV_DOFORK), with fault_errno()'s errno. */
void fault_fail_next(enum fault_kind k, long detail);
/* The same with errno @err (e.g. ENOMEM, as the kernel gives at vm.max_map_count). */
void fault_fail_next_errno(enum fault_kind k, long detail, int err);
/*
 * Outside fault_run(): counting only the calls of kind @k with @detail from
 * now on, fail calls #@first .. #@first + @count - 1 (1-based; @count
 * INT_MAX: every one from #@first on) with errno @err (0: fault_errno()'s).
 */
void fault_fail_calls(enum fault_kind k, long detail, int first, int count, int err);
/* Stop failing calls (fault_fail_next(), fault_fail_calls()). */
void fault_disarm(void);
/* Whether that failure happened since; how many calls it failed. */
bool fault_fired(void);
int fault_fired_count(void);

/*
 * Route the node allocator @a (of one of the registry's maps, reached
 * through registry_internal.h) through the injector as FK_NODE, so that a
 * bookkeeping allocation the arena would serve can fail on demand; undone
 * by fault_unhook_node_alloc(@a).  One at a time.
 */
struct node_alloc;
void fault_hook_node_alloc(struct node_alloc *a);
void fault_unhook_node_alloc(struct node_alloc *a);

/* Called by the wrappers (and fake devices): 0 to proceed, else the errno to fail with. */
int fault_point(enum fault_kind k, long detail);

/* A fake device: return true and set *@ret to handle the ioctl (after the
 * failure point), false to pass it to the kernel. */
extern int (*fault_ioctl_hook)(int fd, unsigned long req, void *arg, int *ret);

/* ---- scenarios --------------------------------------------------------- */

struct scenario {
	const char *name;
	/* Build the starting state (unarmed). */
	void (*setup)(void);
	/* The operation: 0 on success or the errno the caller saw. */
	int (*op)(void);
	/* Undo a successful op (unarmed). */
	void (*undo)(void);
	/* Failures the operation absorbs by design (see fault_run()). */
	enum {
		TOLERATE_NONE,
		/* The op releases a registration: a failing unmark madvise
		 * completes it and leaves the pages marked (the safe side). */
		TOLERATE_UNMARK,
		/* The op is a fork(): a failing snapshot mmap in the prepare
		 * handler lets fork() go on (logged, counted in failures). */
		TOLERATE_SNAPSHOT,
	} tolerate;
	/* Compare the VmFlags of the whole process, not only the buffers:
	 * setup has already mapped the bookkeeping memory. */
	bool whole_process;
};

/* Buffers the scenarios use; their marks are compared ('D', 'W', '.'). */
extern char *fault_buf;
#define FAULT_BUF_PAGES 16

/* Run @s at every position. Returns the number of injected failures
 * checked, or -1 after printing what diverged. */
int fault_run(const struct scenario *s);

/* Distinct (kind, detail) pairs failed so far, and a one-line summary. */
void fault_summary(const char *prog);

/* One character per page of [addr, addr + n pages). */
void fault_marks(const void *addr, size_t n, char *out);
/*
 * The VMAs meeting [addr, addr + n pages), clipped to it: "first-end:c "
 * for each, in pages from @addr, c as fault_marks() gives it.  Shows the
 * VMA splits and merges that fault_marks() cannot.
 */
void fault_layout(const void *addr, size_t n, char *out, size_t size);

#endif
