// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * safepin: the libsafepin command-line tool.  See safepin(1).
 *
 *   safepin probe [-q]          what this kernel and machine do and have
 *   safepin run [OPTIONS] PROG  run PROG under the LD_PRELOAD shim (safepin-run)
 *
 * Installed as "safepin-probe" too, which is "safepin probe".
 */
#ifndef _GNU_SOURCE
#define _GNU_SOURCE
#endif
#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <safepin/safepin.h>

static const char *tri(int v)
{
	return v > 0 ? "yes" : v == 0 ? "no" : "unknown";
}

static void size_str(unsigned long long v, char *buf, size_t len)
{
	if (v >= (1ull << 30) && !(v & ((1ull << 30) - 1)))
		snprintf(buf, len, "%lluG", v >> 30);
	else if (v >= (1ull << 20) && !(v & ((1ull << 20) - 1)))
		snprintf(buf, len, "%lluM", v >> 20);
	else
		snprintf(buf, len, "%lluK", v >> 10);
}

static long read_long(const char *path)
{
	FILE *f = fopen(path, "r");
	long v = -1;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = -1;
		fclose(f);
	}
	return v;
}

/* Entries of @dir (not . and ..) joined with spaces into @out; their count. */
static int list_dir(const char *dir, const char *prefix, char *out, size_t len)
{
	DIR *d = opendir(dir);
	struct dirent *e;
	int n = 0;

	out[0] = '\0';
	if (!d)
		return -1;
	while ((e = readdir(d))) {
		if (e->d_name[0] == '.' || (prefix && strncmp(e->d_name, prefix, strlen(prefix))))
			continue;
		if (strlen(out) + strlen(e->d_name) + 2 < len)
			snprintf(out + strlen(out), len - strlen(out), "%s%s", n ? " " : "",
				 e->d_name);
		n++;
	}
	closedir(d);
	return n;
}

static void limit_str(rlim_t v, char *buf, size_t len)
{
	if (v == RLIM_INFINITY)
		snprintf(buf, len, "unlimited");
	else
		size_str((unsigned long long)v, buf, len);
}

static int probe(int argc, char **argv)
{
	struct safepin_kernel_info info = { .size = sizeof(info) };
	struct safepin_vma_budget budget = { .size = sizeof(budget) };
	char sizes[512] = "", one[32], buf[1024], path[256];
	bool quiet = false, kernel_copy;
	struct rlimit rl;
	int opt, n, ret;

	optind = 1;
	while ((opt = getopt(argc, argv, "qh")) != -1) {
		switch (opt) {
		case 'q':
			quiet = true;
			break;
		default:
			fprintf(stderr, "usage: safepin probe [-q]\n");
			return opt == 'h' ? 0 : 2;
		}
	}
	if (safepin_probe(&info)) {
		fprintf(stderr, "safepin probe: %s\n", strerror(errno));
		return 1;
	}
	kernel_copy = info.copy_on_fork_anon == 1 && info.copy_on_fork_hugetlb == 1;
	if (quiet) {
		printf("dontfork zero-fill%s\n", kernel_copy ? " kernel-copy" : "");
		return 0;
	}
	for (unsigned i = 0; i < info.nr_huge_page_sizes; i++) {
		size_t hs = info.huge_page_sizes[i];
		long nr, fr;

		size_str(hs, one, sizeof(one));
		snprintf(path, sizeof(path), "/sys/kernel/mm/hugepages/hugepages-%zukB/nr_hugepages",
			 hs >> 10);
		nr = read_long(path);
		snprintf(path, sizeof(path),
			 "/sys/kernel/mm/hugepages/hugepages-%zukB/free_hugepages", hs >> 10);
		fr = read_long(path);
		snprintf(sizes + strlen(sizes), sizeof(sizes) - strlen(sizes),
			 "%s%s (%ld reserved, %ld free)", i ? ", " : "", one, nr, fr);
	}
	printf("kernel: %s\n", info.kernel_release);
	printf("copy-on-fork anon: %s (%s)\n", tri(info.copy_on_fork_anon),
	       info.copy_on_fork_anon_reason);
	printf("copy-on-fork hugetlb: %s (%s)\n", tri(info.copy_on_fork_hugetlb),
	       info.copy_on_fork_hugetlb_reason);
	printf("MADV_POPULATE_WRITE: %s\n", tri(info.populate_write));
	printf("MADV_WIPEONFORK: %s\n", tri(info.wipeonfork));
	printf("huge page sizes: %s\n", info.nr_huge_page_sizes ? sizes : "none");
	printf("policies: dontfork (default), zero-fill%s\n",
	       kernel_copy ? ", kernel-copy" : "; kernel-copy refused (not proven for anon and hugetlb)");

	n = list_dir("/sys/class/infiniband", NULL, buf, sizeof(buf));
	printf("RDMA devices: %s\n", n > 0 ? buf : "none");
	n = list_dir("/dev/vfio", NULL, buf, sizeof(buf));
	printf("VFIO: %s", access("/dev/vfio/vfio", F_OK) ? "no (/dev/vfio/vfio missing)" : "yes");
	if (n > 1)
		printf(" (%s)", buf);
	printf("\niommufd: %s\n", access("/dev/iommu", F_OK) ? "no" : "yes (/dev/iommu)");

	if (!getrlimit(RLIMIT_MEMLOCK, &rl)) {
		char soft[32], hard[32];

		limit_str(rl.rlim_cur, soft, sizeof(soft));
		limit_str(rl.rlim_max, hard, sizeof(hard));
		printf("memlock limit: %s (hard %s)%s\n", soft, hard,
		       geteuid() == 0 ? "; not enforced for root (CAP_IPC_LOCK)" : "");
	}
	ret = safepin_vma_budget(&budget);
	if (!ret) {
		printf("vm.max_map_count: %llu\n", (unsigned long long)budget.vma_limit);
		printf("VMAs: %llu (%llu free)\n", (unsigned long long)budget.vma_count,
		       (unsigned long long)budget.vma_free);
	} else {
		printf("vm.max_map_count: unknown (%s)\n", strerror(-ret));
	}
	ret = safepin_monitor_start(NULL);
	if (!ret)
		safepin_monitor_stop();
	printf("userfaultfd monitor: %s", ret ? "unavailable" : "available");
	if (ret)
		printf(" (%s)", strerror(-ret));
	n = (int)read_long("/proc/sys/vm/unprivileged_userfaultfd");
	if (n >= 0)
		printf("; vm.unprivileged_userfaultfd=%d", n);
	printf("\n");
	return 0;
}

/* safepin-run: next to this program (build tree, bindir), else in PATH. */
static int run(int argc, char **argv)
{
	char self[PATH_MAX], path[PATH_MAX + 16];
	ssize_t n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	char **args = calloc((size_t)argc + 1, sizeof(*args));

	if (!args)
		return 125;
	args[0] = "safepin-run";
	for (int i = 1; i < argc; i++)
		args[i] = argv[i];
	if (n > 0) {
		char *slash;

		self[n] = '\0';
		slash = strrchr(self, '/');
		if (slash) {
			*slash = '\0';
			snprintf(path, sizeof(path), "%s/safepin-run", self);
			if (!access(path, X_OK))
				execv(path, args);
		}
	}
	execvp("safepin-run", args);
	fprintf(stderr, "safepin run: cannot execute safepin-run: %s\n", strerror(errno));
	return 127;
}

static void usage(FILE *f)
{
	fprintf(f, "Usage: safepin COMMAND [ARGS...]\n"
		   "  probe [-q]                what this kernel does with pinned pages at fork,\n"
		   "                            huge pages, RDMA/VFIO, limits, userfaultfd\n"
		   "  run [OPTIONS] PROGRAM...  run PROGRAM under the LD_PRELOAD shim (see\n"
		   "                            safepin run --help, safepin-run(1))\n"
		   "  version                   print the library version\n");
}

int main(int argc, char **argv)
{
	const char *base = strrchr(argv[0], '/');

	base = base ? base + 1 : argv[0];
	if (!strcmp(base, "safepin-probe"))
		return probe(argc, argv);
	if (argc < 2) {
		usage(stderr);
		return 2;
	}
	if (!strcmp(argv[1], "probe"))
		return probe(argc - 1, argv + 1);
	if (!strcmp(argv[1], "run"))
		return run(argc - 1, argv + 1);
	if (!strcmp(argv[1], "version") || !strcmp(argv[1], "--version")) {
		printf("safepin (libsafepin) %s\n", safepin_version());
		return 0;
	}
	if (!strcmp(argv[1], "help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "--help")) {
		usage(stdout);
		return 0;
	}
	fprintf(stderr, "safepin: unknown command '%s'\n", argv[1]);
	usage(stderr);
	return 2;
}
