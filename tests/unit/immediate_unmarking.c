// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * Linked into the tests that read VMA flags and counters right after a
 * release (safepin_unit_test(... IMMEDIATE)): only immediate unmarking
 * settles them at once; the default, deferred unmarking, settles them at
 * the next fork or safepin_flush().  A constructor, so that every way of
 * running the test (ctest, valgrind, a guest, by hand) gets the same mode.
 */
#include <stdio.h>
#include <stdlib.h>

#include <safepin/safepin.h>

__attribute__((constructor)) static void immediate_unmarking(void)
{
	if (safepin_set_unmark(SAFEPIN_UNMARK_IMMEDIATE)) {
		fprintf(stderr, "cannot switch to immediate unmarking\n");
		exit(1);
	}
}
