// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * An application that knows nothing of libsafepin and gets a memory
 * lifetime wrong, run under libsafepin_preload.so by lifetime-shim-check.
 * It registers with ibv_dontfork_range() (the shim routes it into its
 * registry; no RDMA device needed), takes the memory away in the way argv[1]
 * names, maps new memory at the same address and registers it again: the
 * new pages must be marked (VmFlags dc).  Then it releases both (the
 * violated registration first) and checks the mark is gone.
 *
 *   lifetime_shim_prog munmap|mremap|dontneed|free|remove|mapfixed|freecall
 *   lifetime_shim_prog parked   (with SAFEPIN_UNMARK=deferred)
 *
 * parked: no violation at all.  The range is released twice, so the second
 * release parks it (still marked); the application then unmaps it (legal),
 * maps new memory there and marks it DONTFORK itself.  The shim must drop
 * the parked range at the munmap, so that the next fork()'s flush does not
 * clear the application's own mark.
 *
 * Exit 0 on success, 1 with a message otherwise.
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <malloc.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <infiniband/verbs.h>

#define N 4

/* libibverbs exports them; only its driver header declares them. */
int ibv_dontfork_range(void *base, size_t size);
int ibv_dofork_range(void *base, size_t size);

static size_t page;

static void die(const char *what)
{
	fprintf(stderr, "lifetime_shim_prog: %s\n", what);
	exit(1);
}

/* Whether the VMA holding @p has VmFlags @flag. */
static bool has_flag(const void *p, const char *flag)
{
	FILE *f = fopen("/proc/self/smaps", "r");
	char line[1024];
	bool in = false, found = false;

	if (!f)
		die("no smaps");
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;

		if (sscanf(line, "%lx-%lx ", &s, &e) == 2) {
			in = (unsigned long)p >= s && (unsigned long)p < e;
			continue;
		}
		if (in && !strncmp(line, "VmFlags:", 8)) {
			char pat[8];

			snprintf(pat, sizeof(pat), " %s", flag);
			found = strstr(line, pat) != NULL;
			break;
		}
	}
	fclose(f);
	return found;
}

static char *map(void *at, int extra)
{
	char *p = mmap(at, N * page, PROT_READ | PROT_WRITE,
		       (extra & MAP_SHARED ? MAP_SHARED : MAP_PRIVATE) | MAP_ANONYMOUS |
		       (at ? MAP_FIXED_NOREPLACE : 0), -1, 0);

	if (p == MAP_FAILED || (at && p != at))
		die("mmap");
	memset(p, 1, N * page);
	return p;
}

static int parked_case(void)
{
	char *p = map(NULL, 0);
	pid_t pid;
	int status;

	for (int i = 0; i < 2; i++)
		if (ibv_dontfork_range(p, N * page) || ibv_dofork_range(p, N * page))
			die("ibv_dontfork_range/ibv_dofork_range");
	if (!has_flag(p, "dc"))
		die("the range released twice is not parked (SAFEPIN_UNMARK=deferred unset?)");
	if (munmap(p, N * page))
		die("munmap");
	map(p, 0);
	if (madvise(p, N * page, MADV_DONTFORK))
		die("the application's own MADV_DONTFORK");
	pid = fork();	/* the prepare handler flushes parked ranges */
	if (pid < 0)
		die("fork");
	if (pid == 0)
		_exit(0);
	if (waitpid(pid, &status, 0) != pid)
		die("waitpid");
	if (!has_flag(p, "dc"))
		die("the fork's flush cleared the application's own DONTFORK on new memory");
	printf("ok parked\n");
	return 0;
}

int main(int argc, char **argv)
{
	const char *how = argc > 1 ? argv[1] : "";
	bool shared = !strcmp(how, "remove"), gone = true;
	size_t len = N * page;
	char *p, *q;

	page = (size_t)sysconf(_SC_PAGESIZE);
	/* A fixed mmap threshold: glibc raises it after an mmapped chunk is freed
	 * (libibverbs does that), and freecall needs an mmapped chunk. */
	mallopt(M_MMAP_THRESHOLD, 128 * 1024);
	len = N * page;
	if (!strcmp(how, "parked"))
		return parked_case();
	if (!strcmp(how, "freecall")) {
		/* A malloc chunk big enough for glibc to mmap it. */
		p = malloc(64 * page);
		if (!p)
			die("malloc");
		memset(p, 1, 64 * page);
		len = 64 * page;
	} else {
		p = map(NULL, shared ? MAP_SHARED : 0);
	}
	if (ibv_dontfork_range(p, len))
		die("ibv_dontfork_range");
	if (!shared && !has_flag(p, "dc"))
		die("not marked: is the shim loaded?");

	if (!strcmp(how, "munmap")) {
		if (munmap(p, len))
			die("munmap");
	} else if (!strcmp(how, "mremap")) {
		q = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (mremap(p, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, q) != q)
			die("mremap");
	} else if (!strcmp(how, "mapfixed")) {
		if (mmap(p, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED,
			 -1, 0) != p)
			die("mmap(MAP_FIXED)");
		gone = false;	/* already new memory there */
	} else if (!strcmp(how, "dontneed") || !strcmp(how, "free") || shared) {
		int adv = shared ? MADV_REMOVE : !strcmp(how, "free") ? MADV_FREE : MADV_DONTNEED;

		if (madvise(p, len, adv))
			die("madvise");
		if (!shared && has_flag(p, "dc"))
			die("still marked after the discard");
		gone = false;
	} else if (!strcmp(how, "freecall")) {
		uintptr_t at = (uintptr_t)p & ~(uintptr_t)(page - 1);

		__asm__ volatile("" : "+r"(at));	/* an address, not the freed pointer */
		free(p);
		/* glibc unmapped the chunk: map new memory there. */
		p = (char *)at;
		len = 64 * page;
		if (mmap(p, len + page, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) != p)
			die("the freed chunk is still mapped");
		len += page;
		gone = false;
	} else {
		die("usage: lifetime_shim_prog munmap|mremap|dontneed|free|remove|mapfixed|freecall");
	}
	if (gone)
		map(p, shared ? MAP_SHARED : 0);

	/* The address reused: registering again must mark it. */
	if (ibv_dontfork_range(p, len))
		die("ibv_dontfork_range again");
	if (!shared && !has_flag(p, "dc"))
		die("the new memory at the reused address is not marked");
	/* Release the violated registration (if its range matches), then the new one. */
	if (strcmp(how, "freecall")) {
		if (ibv_dofork_range(p, len))
			die("ibv_dofork_range of the violated registration");
		if (!shared && !has_flag(p, "dc"))
			die("releasing the violated registration unmarked the live one");
	}
	if (ibv_dofork_range(p, len))
		die("ibv_dofork_range");
	if (!shared && has_flag(p, "dc"))
		die("still marked after the last release");
	printf("ok %s\n", how);
	return 0;
}
