// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * probe_check: safepin_probe() gives the right answers on a guest kernel.
 *
 *   SAFEPIN_GUEST_KERNEL=6.1|5.10 probe_check
 *
 * Expected (measured by hand first, see the design notes):
 *   6.1:  copy-on-fork anon 1, hugetlb 1, MADV_POPULATE_WRITE 1, WIPEONFORK 1
 *   5.10: copy-on-fork anon 1, hugetlb 0, MADV_POPULATE_WRITE 0, WIPEONFORK 1
 *         (a pinned huge page stays COW-shared with the child at fork there;
 *          an RDMA WRITE into a hugetlb MR after fork + parent write is lost)
 * and safepin_set_policy(KERNEL_COPY) accepted on 6.1, -EOPNOTSUPP on 5.10.
 *
 * The probe runs twice: first as an unprivileged user (nobody, in a child,
 * no capabilities: the probe must not need root), then as the caller.
 * Runs as root (to reserve huge pages); exit 77 (skip) when not root.
 */
#include <errno.h>
#include <grp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <sys/wait.h>
#include <unistd.h>

#include <safepin/safepin.h>

struct expect {
	const char *kernel;
	int anon, hugetlb, populate_write, wipeonfork, kernel_copy_ret;
};

static const struct expect expects[] = {
	{ "6.1", 1, 1, 1, 1, 0 },
	{ "5.10", 1, 0, 0, 1, -EOPNOTSUPP },
};

static int failures;

static void check_int(const char *who, const char *what, int got, int want)
{
	printf("%-8s %-22s %3d  (expected %d)%s\n", who, what, got, want,
	       got == want ? "" : "  <-- WRONG");
	failures += got != want;
}

static void ensure_hugepages(long want_free)
{
	const char *dir = "/sys/kernel/mm/hugepages/hugepages-2048kB/";
	char path[128];
	long nr = 0, free_pages = 0;
	FILE *f;

	snprintf(path, sizeof(path), "%sfree_hugepages", dir);
	if ((f = fopen(path, "re"))) {
		if (fscanf(f, "%ld", &free_pages) != 1)
			free_pages = 0;
		fclose(f);
	}
	if (free_pages >= want_free)
		return;
	snprintf(path, sizeof(path), "%snr_hugepages", dir);
	if ((f = fopen(path, "re"))) {
		if (fscanf(f, "%ld", &nr) != 1)
			nr = 0;
		fclose(f);
	}
	if ((f = fopen(path, "we"))) {
		fprintf(f, "%ld\n", nr + want_free - free_pages);
		fclose(f);
	}
}

static void check_info(const char *who, const struct expect *e)
{
	struct safepin_kernel_info info = { .size = sizeof(info) };

	if (safepin_probe(&info)) {
		printf("%s: safepin_probe: %s\n", who, strerror(errno));
		failures++;
		return;
	}
	printf("%-8s kernel %s\n", who, info.kernel_release);
	printf("%-8s anon:    %s\n", who, info.copy_on_fork_anon_reason);
	printf("%-8s hugetlb: %s\n", who, info.copy_on_fork_hugetlb_reason);
	check_int(who, "copy_on_fork_anon", info.copy_on_fork_anon, e->anon);
	check_int(who, "copy_on_fork_hugetlb", info.copy_on_fork_hugetlb, e->hugetlb);
	check_int(who, "populate_write", info.populate_write, e->populate_write);
	check_int(who, "wipeonfork", info.wipeonfork, e->wipeonfork);
}

/* The probe as nobody, in a fresh child (the probe caches per process). */
static void check_unprivileged(const struct expect *e)
{
	pid_t pid = fork();
	int status;

	if (pid < 0) {
		perror("fork");
		failures++;
		return;
	}
	if (pid == 0) {
		/* 8 MiB, the default since 5.16 (5.10 had 64 KiB): room to pin a
		 * 2 MiB huge page, which io_uring accounts in full. */
		struct rlimit rl = { 8 << 20, 8 << 20 };

		if (setrlimit(RLIMIT_MEMLOCK, &rl))
			perror("setrlimit");
		if (setgroups(0, NULL) || setgid(65534) || setuid(65534)) {
			perror("dropping privileges");
			_exit(2);
		}
		failures = 0;
		check_info("nobody", e);
		fflush(stdout);
		_exit(failures ? 1 : 0);
	}
	if (waitpid(pid, &status, 0) != pid || !WIFEXITED(status) || WEXITSTATUS(status)) {
		printf("nobody: the unprivileged probe failed (status %#x)\n", status);
		failures++;
	}
}

int main(void)
{
	const char *k = getenv("SAFEPIN_GUEST_KERNEL");
	const struct expect *e = NULL;
	struct utsname u;
	char prefix[16];
	int ret;

	if (!k) {
		fprintf(stderr, "usage: SAFEPIN_GUEST_KERNEL=6.1|5.10 %s\n", "probe_check");
		return 2;
	}
	for (size_t i = 0; i < sizeof(expects) / sizeof(expects[0]); i++)
		if (!strcmp(k, expects[i].kernel))
			e = &expects[i];
	if (!e) {
		fprintf(stderr, "probe_check: unknown SAFEPIN_GUEST_KERNEL '%s'\n", k);
		return 2;
	}
	if (geteuid() != 0) {
		printf("probe_check: needs root (huge pages, then drops to nobody): skipped\n");
		return 77;
	}
	/* The expectations are per kernel: make sure we run on that one. */
	snprintf(prefix, sizeof(prefix), "%s.", k);
	if (uname(&u) || strncmp(u.release, prefix, strlen(prefix))) {
		printf("probe_check: expected a %s kernel, running %s\n", k, u.release);
		return 1;
	}
	/* One huge page to pin, one for a copying kernel to copy into the child. */
	ensure_hugepages(2);

	setvbuf(stdout, NULL, _IOLBF, 0);
	check_unprivileged(e);
	check_info("root", e);

	errno = 0;
	ret = safepin_set_policy(SAFEPIN_POLICY_KERNEL_COPY);
	check_int("root", "set_policy(KERNEL_COPY)", ret, e->kernel_copy_ret);
	if (ret == 0)
		safepin_set_policy(SAFEPIN_POLICY_DONTFORK);

	printf("probe_check (%s): %s\n", k, failures ? "FAILED" : "ok");
	return failures ? 1 : 0;
}
