// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "marks.h"

void dc_marks(const void *addr, size_t n, char *out)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	uintptr_t a = (uintptr_t)addr, lo = 0, hi = 0, s, e;
	char line[512];

	memset(out, ' ', n);
	out[n] = '\0';
	if (!f)
		return;
	while (fgets(line, sizeof(line), f)) {
		if (sscanf(line, "%lx-%lx ", &s, &e) == 2 && strchr(line, '-') < strchr(line, ' ')) {
			lo = s;
			hi = e;
		} else if (!strncmp(line, "VmFlags:", 8)) {
			for (size_t i = 0; i < n; i++) {
				uintptr_t p = a + i * 4096;

				if (p >= lo && p < hi)
					out[i] = strstr(line, " dc") ? 'D' : '.';
			}
		}
	}
	fclose(f);
}
