// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <stdarg.h>
#include <stdio.h>

#include "config.h"
#include "log.h"

static int log_level = SP_LOG_ERROR;

void log_init(void)
{
	log_level = config_log_level();
}

void sp_log(int level, const char *fmt, ...)
{
	char line[256];
	va_list ap;

	if (level > log_level)
		return;
	va_start(ap, fmt);
	vsnprintf(line, sizeof(line), fmt, ap);
	va_end(ap);
	/* One write per line so concurrent threads do not interleave. */
	fprintf(stderr, "libsafepin: %s\n", line);
}
