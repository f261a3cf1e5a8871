// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The lossy (addr, len) set behind deferred unmarking's admission. */
#include "helpers.h"
#include "recent_set.h"

static struct recent_set set;

static void test_add_then_has(void **state)
{
	(void)state;
	recent_set_clear(&set);
	assert_false(recent_set_has(&set, 0x10000, PAGE));
	recent_set_add(&set, 0x10000, PAGE);
	assert_true(recent_set_has(&set, 0x10000, PAGE));
	/* The key is the pair: another length or address is another range. */
	assert_false(recent_set_has(&set, 0x10000, 2 * PAGE));
	assert_false(recent_set_has(&set, 0x11000, PAGE));
	assert_false(recent_set_has(&set, 0, 0));	/* empty slots hold len 0 */
	recent_set_clear(&set);
	assert_false(recent_set_has(&set, 0x10000, PAGE));
}

/* Lossy, never wrong: after many keys, every "has" is a key that was added. */
static void test_spread_and_no_false_hits(void **state)
{
	size_t kept = 0;

	(void)state;
	recent_set_clear(&set);
	/* Page-aligned buffers 64 KiB apart: the common registration pattern. */
	for (uintptr_t i = 0; i < RECENT_SET_SLOTS / 2; i++)
		recent_set_add(&set, 0x7f0000000000ul + i * 65536, 65536);
	for (uintptr_t i = 0; i < RECENT_SET_SLOTS / 2; i++)
		kept += recent_set_has(&set, 0x7f0000000000ul + i * 65536, 65536);
	/* Half full, a good hash keeps nearly all of them (a bad one keeps 1/16 or less). */
	assert_true(kept > RECENT_SET_SLOTS / 2 * 9 / 10);
	for (uintptr_t i = 0; i < 100000; i++)
		assert_false(recent_set_has(&set, 0x100000000ul + i * PAGE, 3 * PAGE));
}

/* A registration cache's buffers never evict each other, wherever they are mapped. */
static void test_small_working_set_always_kept(void **state)
{
	(void)state;
	for (uintptr_t base = 0x7f0000000000ul; base < 0x7f0000000000ul + 4096 * PAGE;
	     base += 17 * PAGE) {
		recent_set_clear(&set);
		for (uintptr_t i = 0; i < 16; i++)
			recent_set_add(&set, base + i * 17 * PAGE, 16 * PAGE);
		for (uintptr_t i = 0; i < 16; i++)
			assert_true(recent_set_has(&set, base + i * 17 * PAGE, 16 * PAGE));
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_then_has),
		cmocka_unit_test(test_spread_and_no_false_hits),
		cmocka_unit_test(test_small_working_set_always_kept),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
