// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The fixed-array set of block numbers behind windowed unmarking. */
#include <errno.h>
#include <stdlib.h>

#include "block_set.h"
#include "helpers.h"

#define SLOTS 64

static uintptr_t slot[SLOTS];
static struct block_set set;

static void test_add_has_del(void **state)
{
	(void)state;
	block_set_init(&set, slot, SLOTS);
	assert_false(block_set_has(&set, 0));
	assert_int_equal(block_set_add(&set, 0), 0);	/* key 0 is a key like any other */
	assert_int_equal(block_set_add(&set, 0), -EEXIST);
	assert_int_equal(block_set_add(&set, UINTPTR_MAX - 1), 0);
	assert_true(block_set_has(&set, 0));
	assert_true(block_set_has(&set, UINTPTR_MAX - 1));
	assert_false(block_set_has(&set, 1));
	assert_int_equal(set.n, 2);
	assert_true(block_set_del(&set, 0));
	assert_false(block_set_del(&set, 0));
	assert_false(block_set_has(&set, 0));
	assert_true(block_set_has(&set, UINTPTR_MAX - 1));
	block_set_clear(&set);
	assert_false(block_set_has(&set, UINTPTR_MAX - 1));
	assert_int_equal(set.n, 0);
}

static void test_full_at_half(void **state)
{
	(void)state;
	block_set_init(&set, slot, SLOTS);
	for (uintptr_t k = 0; k < SLOTS / 2; k++)
		assert_int_equal(block_set_add(&set, 1000 + k), 0);
	assert_int_equal(block_set_add(&set, 7), -ENOSPC);
	assert_false(block_set_has(&set, 7));
	assert_int_equal(block_set_add(&set, 1000), -EEXIST);
}

/* Random adds and deletes against a bitmap: deletion must keep every probe run whole. */
static void test_against_model(void **state)
{
	enum { KEYS = 200 };
	bool model[KEYS] = { false };
	size_t in = 0;

	(void)state;
	srand(7);
	block_set_init(&set, slot, SLOTS);
	for (int step = 0; step < 200000; step++) {
		uintptr_t k = (uintptr_t)rand() % KEYS;

		if (rand() % 2) {
			int ret = block_set_add(&set, k);

			if (model[k])
				assert_int_equal(ret, -EEXIST);
			else if (in == SLOTS / 2)
				assert_int_equal(ret, -ENOSPC);
			else {
				assert_int_equal(ret, 0);
				model[k] = true;
				in++;
			}
		} else {
			assert_int_equal(block_set_del(&set, k), model[k]);
			in -= model[k];
			model[k] = false;
		}
		if (step % 97 == 0) {
			size_t pos = 0, seen = 0;
			uintptr_t key;

			for (uintptr_t j = 0; j < KEYS; j++)
				assert_int_equal(block_set_has(&set, j), model[j]);
			while (block_set_next(&set, &pos, &key)) {
				assert_true(key < KEYS && model[key]);
				seen++;
			}
			assert_int_equal(seen, in);
			assert_int_equal(set.n, in);
		}
	}
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_add_has_del),
		cmocka_unit_test(test_full_at_half),
		cmocka_unit_test(test_against_model),
	};

	return cmocka_run_group_tests(tests, NULL, NULL);
}
