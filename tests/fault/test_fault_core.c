// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Every fallible call of safepin_pin() and safepin_unpin() -- open and read
 * of /proc/self/smaps, realloc of the registry's temporary arrays, mmap of
 * the bookkeeping arena, madvise with each advice (DONTFORK, WIPEONFORK,
 * POPULATE_WRITE, POPULATE_READ, DOFORK, KEEPONFORK) -- fails in turn at
 * every position (fault.h).  Also the fork prepare handler's snapshot mmap.
 *
 * The buffer: private [0,6) | shared [6,8) | private [8,12) | read-only
 * private [12,16).  The pinned range, pages 1-9 with sub-page edges, makes
 * two marked runs and three pre-faulted VMAs.
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault.h"
#include "vm.h"

#define R_ADDR (fault_buf + PAGE + 100)
#define R_LEN (8 * PAGE)
#define RO_ADDR (fault_buf + 11 * PAGE)	/* private rw page 11 + read-only 12-13 */
#define RO_LEN (3 * PAGE)

static int pin_r(void)
{
	return safepin_pin(R_ADDR, R_LEN, 0) ? errno : 0;
}

static int unpin_r(void)
{
	return safepin_unpin(R_ADDR, R_LEN) ? errno : 0;
}

static void must(int err, const char *what)
{
	if (err) {
		fprintf(stderr, "setup: %s: %s\n", what, strerror(err));
		_exit(1);
	}
}

static void undo_pin_r(void)
{
	must(unpin_r(), "unpin");
}

static void redo_pin_r(void)
{
	must(pin_r(), "pin");
}

static void nothing(void)
{
}

/* Registrations overlapping R on pages 0-1 and 9, and the arena mapped. */
static void overlapping(void)
{
	must(safepin_pin(fault_buf, 2 * PAGE, 0) ? errno : 0, "pin 0-1");
	must(safepin_pin(fault_buf + 9 * PAGE + 8, 8, 0) ? errno : 0, "pin 9");
}

static void zero_fill_overlapping(void)
{
	must(-safepin_set_policy(SAFEPIN_POLICY_ZERO_FILL), "policy");
	overlapping();
}

static void fallback_overlapping(void)
{
	vm_force_populate_fallback(true);
	overlapping();
}

static void overlapping_and_r(void)
{
	overlapping();
	redo_pin_r();
}

static void zero_fill_overlapping_and_r(void)
{
	zero_fill_overlapping();
	redo_pin_r();
}

static int pin_ro(void)
{
	return safepin_pin(RO_ADDR, RO_LEN, 0) ? errno : 0;
}

static void undo_pin_ro(void)
{
	must(safepin_unpin(RO_ADDR, RO_LEN) ? errno : 0, "unpin ro");
}

static int fork_op(void)
{
	int status;
	pid_t pid = fork();

	if (pid < 0)
		return errno;
	if (pid == 0)
		_exit(0);
	waitpid(pid, &status, 0);
	return 0;
}

static const struct scenario scenarios[] = {
	{ "pin, fresh registry", nothing, pin_r, undo_pin_r, TOLERATE_NONE, false },
	{ "pin over live registrations", overlapping, pin_r, undo_pin_r, TOLERATE_NONE, true },
	{ "pin, zero-fill policy", zero_fill_overlapping, pin_r, undo_pin_r, TOLERATE_NONE, true },
	{ "pin, pre-fault fallback", fallback_overlapping, pin_r, undo_pin_r, TOLERATE_NONE, true },
	{ "pin, read-only private", overlapping, pin_ro, undo_pin_ro, TOLERATE_NONE, true },
	{ "unpin", overlapping_and_r, unpin_r, redo_pin_r, TOLERATE_UNMARK, true },
	{ "unpin, zero-fill policy", zero_fill_overlapping_and_r, unpin_r, redo_pin_r,
	  TOLERATE_UNMARK, true },
	{ "fork with partial pages", overlapping_and_r, fork_op, nothing, TOLERATE_SNAPSHOT, true },
};

/*
 * An unmarking madvise that fails (at the vm.max_map_count limit, say) must
 * not leave a mark nobody owns: the pages stay counted as the library's, a
 * later pin of them adds no madvise and mistakes nothing for the
 * application's own DONTFORK, and the next unpin unmarks them.
 */
static int check_stuck_unmark_recovers(void)
{
	struct safepin_stats st = { .size = sizeof(st) };
	char *b = fault_buf;	/* pages 0-3: private anonymous */
	char marks[8];

	if (safepin_pin(b, 4 * PAGE, 0))
		return 1;
	fault_fail_next(FK_MADVISE, MADV_DOFORK);
	if (safepin_unpin(b, 4 * PAGE) || !fault_fired())
		return 2;
	fault_marks(b, 4, marks);
	safepin_get_stats(&st);
	printf("stuck: after a failed unmark: %s, live %lu, marked %lu\n", marks,
	       (unsigned long)st.live_registrations, (unsigned long)st.pages_marked);
	if (strcmp(marks, "DDDD") || st.live_registrations || st.pages_marked != 4)
		return 3;
	/* Pinning again: still ours (unmarked at its release), the retry unmarks nothing yet. */
	if (safepin_pin(b + PAGE, PAGE, 0) || safepin_unpin(b + PAGE, PAGE))
		return 4;
	fault_marks(b, 4, marks);
	safepin_get_stats(&st);
	printf("stuck: after the next pin and unpin: %s, marked %lu\n", marks,
	       (unsigned long)st.pages_marked);
	if (strcmp(marks, "....") || st.pages_marked)
		return 5;
	return 0;
}

/*
 * Deferred unmarking: parked ranges hold VMA splits, so a pin that meets
 * ENOMEM (the vm.max_map_count limit) unmarks them and tries once more.
 */
static int check_enomem_flushes_parked(void)
{
	struct safepin_stats st = { .size = sizeof(st) };
	char *b = fault_buf;	/* pages 0-3: private anonymous */
	char marks[8];

	if (safepin_set_unmark(SAFEPIN_UNMARK_DEFERRED))
		return 1;
	for (int i = 0; i < 2; i++)	/* the second unpin parks */
		if (safepin_pin(b, 2 * PAGE, 0) || safepin_unpin(b, 2 * PAGE))
			return 2;
	fault_fail_next_errno(FK_MADVISE, MADV_DONTFORK, ENOMEM);
	if (safepin_pin(b + 2 * PAGE, 2 * PAGE, 0) || !fault_fired())
		return 3;
	fault_marks(b, 4, marks);
	safepin_get_stats(&st);
	printf("enomem: after a pin that met ENOMEM with a parked range: %s, live %lu, "
	       "parked %lu\n", marks, (unsigned long)st.live_registrations,
	       (unsigned long)st.parked_registrations);
	if (strcmp(marks, "..DD") || st.live_registrations != 1 || st.parked_registrations)
		return 4;
	if (safepin_unpin(b + 2 * PAGE, 2 * PAGE) ||
	    safepin_set_unmark(SAFEPIN_UNMARK_IMMEDIATE))
		return 5;
	fault_marks(b, 4, marks);
	return strcmp(marks, "....") ? 6 : 0;
}

int main(void)
{
	int fails = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	/* Map the buffer (fault_run does it on first use) and lay it out. */
	fault_buf = mmap(NULL, FAULT_BUF_PAGES * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fault_buf == MAP_FAILED ||
	    mmap(fault_buf + 6 * PAGE, 2 * PAGE, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED ||
	    mprotect(fault_buf + 12 * PAGE, 4 * PAGE, PROT_READ))
		return 1;
	for (size_t i = 0; i < 12 * PAGE; i++)
		fault_buf[i] = (char)i;
	/* The library initialises (and probes MADV_POPULATE_WRITE) once, here. */
	if (safepin_pin(fault_buf, PAGE, 0) || safepin_unpin(fault_buf, PAGE))
		return 1;
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		fails += fault_run(&scenarios[i]) < 0;
	if (check_stuck_unmark_recovers()) {
		printf("FAIL: a failed unmark left pages marked that nobody owns\n");
		fails++;
	}
	if (check_enomem_flushes_parked()) {
		printf("FAIL: ENOMEM with parked ranges did not give their VMAs back\n");
		fails++;
	}
	fault_summary("test_fault_core");
	return fails ? 1 : 0;
}
