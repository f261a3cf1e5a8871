// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * safepin-probe: print what this kernel does with pinned pages at fork, as
 * found by safepin_probe(), one "key: value" line each.
 *
 *   safepin-probe [-q]
 *
 * -q prints only the policies this kernel allows.  Exit status 0, or 1 if
 * the probe itself failed.  No root needed.
 */
#include <errno.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <safepin/safepin.h>

static const char *tri(int v)
{
	return v > 0 ? "yes" : v == 0 ? "no" : "unknown";
}

static void size_str(size_t v, char *buf, size_t len)
{
	if (v >= (1ul << 30) && !(v & ((1ul << 30) - 1)))
		snprintf(buf, len, "%zuG", v >> 30);
	else if (v >= (1ul << 20) && !(v & ((1ul << 20) - 1)))
		snprintf(buf, len, "%zuM", v >> 20);
	else
		snprintf(buf, len, "%zuK", v >> 10);
}

int main(int argc, char **argv)
{
	struct safepin_kernel_info info = { .size = sizeof(info) };
	bool quiet = false;
	char sizes[256] = "", one[24];
	bool kernel_copy;
	int opt;

	while ((opt = getopt(argc, argv, "qh")) != -1) {
		switch (opt) {
		case 'q':
			quiet = true;
			break;
		default:
			fprintf(stderr, "usage: %s [-q]\n", argv[0]);
			return opt == 'h' ? 0 : 2;
		}
	}
	if (safepin_probe(&info)) {
		fprintf(stderr, "safepin-probe: %s\n", strerror(errno));
		return 1;
	}
	kernel_copy = info.copy_on_fork_anon == 1 && info.copy_on_fork_hugetlb == 1;
	if (quiet) {
		printf("dontfork zero-fill%s\n", kernel_copy ? " kernel-copy" : "");
		return 0;
	}
	for (unsigned i = 0; i < info.nr_huge_page_sizes; i++) {
		size_str(info.huge_page_sizes[i], one, sizeof(one));
		snprintf(sizes + strlen(sizes), sizeof(sizes) - strlen(sizes), "%s%s",
			 i ? " " : "", one);
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
	return 0;
}
