/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
#ifndef SAFEPIN_LOG_H
#define SAFEPIN_LOG_H

enum { SP_LOG_ERROR = 0, SP_LOG_INFO = 1, SP_LOG_DEBUG = 2 };

void log_init(void);
/* One line on stderr, prefixed "libsafepin: ", if @level <= SAFEPIN_LOG. */
void sp_log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

#endif
