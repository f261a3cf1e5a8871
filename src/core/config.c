// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "config.h"
#include "log.h"

int config_parse_word(const char *value, const char *const *words)
{
	for (int i = 0; words[i]; i++)
		if (!strcmp(value, words[i]))
			return i;
	return -1;
}

/* The environment's word for @name, or @def when unset or invalid. */
static int env_word(const char *name, const char *const *words, int def)
{
	const char *value = secure_getenv(name);
	int i;

	if (!value)
		return def;
	i = config_parse_word(value, words);
	if (i >= 0)
		return i;
	fprintf(stderr, "libsafepin: ignoring %s=\"%s\": expected one of", name, value);
	for (i = 0; words[i]; i++)
		fprintf(stderr, " %s", words[i]);
	fprintf(stderr, "; using %s\n", words[def]);
	return def;
}

enum safepin_policy config_default_policy(void)
{
	/* Indexed by enum safepin_policy. */
	static const char *const words[] = { "dontfork", "zero-fill", "kernel-copy", NULL };

	return (enum safepin_policy)env_word("SAFEPIN_POLICY", words, SAFEPIN_POLICY_DONTFORK);
}

enum safepin_unmark config_default_unmark(void)
{
	/* Indexed by enum safepin_unmark. */
	static const char *const words[] = { "immediate", "deferred", "windowed", NULL };

	return (enum safepin_unmark)env_word("SAFEPIN_UNMARK", words, SAFEPIN_UNMARK_DEFERRED);
}

int config_log_level(void)
{
	static const char *const words[] = { "error", "info", "debug", NULL };

	return env_word("SAFEPIN_LOG", words, SP_LOG_ERROR);
}
