// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

/* "start-end perms ...": the first line of each VMA in smaps. */
static bool smaps_header(const char *line, unsigned long *start, unsigned long *end)
{
	char *p;

	*start = strtoul(line, &p, 16);
	if (p == line || *p != '-')
		return false;
	*end = strtoul(p + 1, &p, 16);
	return *p == ' ';
}

bool vmflags_at(const void *addr, char *out, size_t size)
{
	uintptr_t a = (uintptr_t)addr;
	FILE *f = fopen("/proc/self/smaps", "re");
	char line[1024];
	bool in = false, found = false;

	assert_non_null(f);
	out[0] = '\0';
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;

		if (smaps_header(line, &s, &e)) {
			in = a >= s && a < e;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			snprintf(out, size, "%s", line + 8);
			out[strcspn(out, "\n")] = '\0';
			found = true;
			break;
		}
	}
	fclose(f);
	return found;
}

bool vma_has_flag(const void *addr, const char *flag)
{
	char flags[512], *tok, *save;

	if (!vmflags_at(addr, flags, sizeof(flags)))
		return false;
	for (tok = strtok_r(flags, " ", &save); tok; tok = strtok_r(NULL, " ", &save))
		if (!strcmp(tok, flag))
			return true;
	return false;
}

void fork_marks(const void *addr, size_t npages, char *out)
{
	for (size_t i = 0; i < npages; i++) {
		const char *p = (const char *)addr + i * PAGE;
		char flags[512];

		if (!vmflags_at(p, flags, sizeof(flags)))
			out[i] = ' ';
		else if (vma_has_flag(p, "dc"))
			out[i] = 'D';
		else if (vma_has_flag(p, "wf"))
			out[i] = 'W';
		else
			out[i] = '.';
	}
	out[npages] = '\0';
}

char *smaps_flags_snapshot(void)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	size_t cap = 1 << 16, len = 0;
	char *buf = malloc(cap), line[1024];

	assert_non_null(f);
	assert_non_null(buf);
	buf[0] = '\0';
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;

		/* VMA headers and their flags; sizes and counters move on their own. */
		if (strncmp(line, "VmFlags:", 8) && !smaps_header(line, &s, &e))
			continue;
		if (len + strlen(line) + 1 > cap) {
			cap *= 2;
			buf = realloc(buf, cap);
			assert_non_null(buf);
		}
		strcpy(buf + len, line);
		len += strlen(line);
	}
	fclose(f);
	return buf;
}

uint64_t pagemap_entry(const void *addr)
{
	int fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
	uint64_t e = 0;
	off_t off = (off_t)((uintptr_t)addr / PAGE * sizeof(e));

	assert_true(fd >= 0);
	assert_int_equal(pread(fd, &e, sizeof(e), off), sizeof(e));
	close(fd);
	return e;
}

int child_reads(const void *const *addrs, size_t n, unsigned char expect)
{
	int status;
	pid_t pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		for (size_t i = 0; i < n; i++)
			if (*(volatile const unsigned char *)addrs[i] != expect)
				_exit(3);
		_exit(0);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status))
		return -WTERMSIG(status);
	return WEXITSTATUS(status) == 0 ? 1 : 0;
}

bool child_segfaults_at(const void *addr)
{
	const void *a[1] = { addr };

	return child_reads(a, 1, *(volatile const unsigned char *)addr) == -SIGSEGV;
}

void *map_anon(size_t len, int prot, int extra)
{
	void *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

long hugetlb_reserve(long n)
{
	const char *path = "/sys/kernel/mm/hugepages/hugepages-2048kB/";
	char file[256];
	long total = 0, free_pages = 0;
	FILE *f;

	snprintf(file, sizeof(file), "%snr_hugepages", path);
	f = fopen(file, "re");
	if (f) {
		if (fscanf(f, "%ld", &total) != 1)
			total = 0;
		fclose(f);
	}
	snprintf(file, sizeof(file), "%sfree_hugepages", path);
	f = fopen(file, "re");
	if (f) {
		if (fscanf(f, "%ld", &free_pages) != 1)
			free_pages = 0;
		fclose(f);
	}
	if (free_pages < n) {
		snprintf(file, sizeof(file), "%snr_hugepages", path);
		f = fopen(file, "we");
		if (f) {
			fprintf(f, "%ld\n", total + n - free_pages);
			fclose(f);
		}
		snprintf(file, sizeof(file), "%sfree_hugepages", path);
		f = fopen(file, "re");
		if (f) {
			if (fscanf(f, "%ld", &free_pages) != 1)
				free_pages = 0;
			fclose(f);
		}
	}
	return free_pages;
}
