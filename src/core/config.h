/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * Settings from the environment, read with secure_getenv() and parsed
 * strictly: a value that is not exactly one of the documented words is
 * reported on stderr and the default is used.
 *
 *   SAFEPIN_POLICY = dontfork | zero-fill | kernel-copy   (default dontfork)
 *   SAFEPIN_UNMARK = immediate | deferred                 (default immediate)
 *   SAFEPIN_LOG    = error | info | debug                 (default error)
 */
#ifndef SAFEPIN_CONFIG_H
#define SAFEPIN_CONFIG_H

#include <safepin/safepin.h>

enum safepin_policy config_default_policy(void);
enum safepin_unmark config_default_unmark(void);
int config_log_level(void);

/* Index of @value in the NULL-terminated @words, or -1. */
int config_parse_word(const char *value, const char *const *words);

#endif
