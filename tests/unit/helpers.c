// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/syscall.h>
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

/* Whether the VmFlags line @line holds the two-letter flag @flag. */
static bool vmflags_line_has(const char *line, const char *flag)
{
	for (const char *p = line + 8; (p = strstr(p, flag)); p += 2)
		if (p[-1] == ' ' && (p[2] == ' ' || p[2] == '\n' || p[2] == '\0'))
			return true;
	return false;
}

/* Every VMA of the process with its marks, read in one pass over smaps. */
struct vma_mark {
	unsigned long start, end;
	char mark;	/* 'D', 'W' or '.' */
};

static size_t read_vma_marks(struct vma_mark **out)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	size_t n = 0, cap = 256;
	struct vma_mark *v = malloc(cap * sizeof(*v));
	char line[1024];

	assert_non_null(f);
	assert_non_null(v);
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;

		if (smaps_header(line, &s, &e)) {
			if (n == cap) {
				cap *= 2;
				v = realloc(v, cap * sizeof(*v));
				assert_non_null(v);
			}
			v[n++] = (struct vma_mark){ s, e, '.' };
		} else if (n && !strncmp(line, "VmFlags:", 8)) {
			if (vmflags_line_has(line, "dc"))
				v[n - 1].mark = 'D';
			else if (vmflags_line_has(line, "wf"))
				v[n - 1].mark = 'W';
		}
	}
	fclose(f);
	*out = v;
	return n;
}

void fork_marks_stride(const void *addr, size_t n, size_t stride, char *out)
{
	struct vma_mark *v;
	size_t nv = read_vma_marks(&v);

	for (size_t i = 0; i < n; i++) {
		uintptr_t a = (uintptr_t)addr + i * stride;

		out[i] = ' ';
		for (size_t j = 0; j < nv; j++)
			if (a >= v[j].start && a < v[j].end) {
				out[i] = v[j].mark;
				break;
			}
	}
	out[n] = '\0';
	free(v);
}

void fork_marks(const void *addr, size_t npages, char *out)
{
	fork_marks_stride(addr, npages, PAGE, out);
}

bool vma_bounds(const void *addr, uintptr_t *start, uintptr_t *end)
{
	struct vma_mark *v;
	size_t nv = read_vma_marks(&v);
	bool found = false;

	for (size_t j = 0; j < nv && !found; j++)
		if ((uintptr_t)addr >= v[j].start && (uintptr_t)addr < v[j].end) {
			*start = v[j].start;
			*end = v[j].end;
			found = true;
		}
	free(v);
	return found;
}

long smaps_field_kb(const void *addr, const char *name)
{
	FILE *f = fopen("/proc/self/smaps", "re");
	uintptr_t a = (uintptr_t)addr;
	size_t nlen = strlen(name);
	char line[1024];
	bool in = false;
	long kb = -1;

	assert_non_null(f);
	while (fgets(line, sizeof(line), f)) {
		unsigned long s, e;

		if (smaps_header(line, &s, &e)) {
			if (in)
				break;
			in = a >= s && a < e;
		} else if (in && !strncmp(line, name, nlen)) {
			kb = strtol(line + nlen, NULL, 10);
			break;
		}
	}
	fclose(f);
	return kb;
}

struct safepin_stats stats_now(void)
{
	struct safepin_stats s = { .size = sizeof(s) };

	assert_int_equal(safepin_get_stats(&s), 0);
	return s;
}

/*
 * The sanitizer runtimes map, grow and carve anonymous memory of their own
 * at any time, so in sanitized builds a snapshot keeps only the VMAs that
 * carry a fork mark (dc or wf): the runtimes never set one, and a stray
 * madvise() of the library still shows.  Unsanitized builds compare every
 * VMA's bounds and flags.
 */
#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED_BUILD 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED_BUILD 1
#endif
#endif

bool under_valgrind(void)
{
	const char *p = getenv("LD_PRELOAD");

	return p && strstr(p, "vgpreload");
}

/*
 * Sanitizer runtimes and valgrind map and grow regions of their own while
 * a test runs (valgrind's translation cache is an rwx mapping that grows):
 * there, only the VMAs the library could have marked are compared.
 */
static bool keep_in_snapshot(const char *vmflags)
{
#ifdef SANITIZED_BUILD
	return strstr(vmflags, " dc") || strstr(vmflags, " wf");
#else
	static int valgrind = -1;

	if (valgrind < 0)
		valgrind = under_valgrind();
	return !valgrind || strstr(vmflags, " dc") || strstr(vmflags, " wf");
#endif
}

void smaps_flags_snapshot_buf(char *out, size_t size)
{
	int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);
	char chunk[16384], header[512] = "";
	size_t fill = 0, len = 0;

	assert_true(fd >= 0);
	out[0] = '\0';
	for (;;) {
		ssize_t n = read(fd, chunk + fill, sizeof(chunk) - 1 - fill);
		char *line = chunk, *nl;

		assert_true(n >= 0);
		if (n == 0)
			break;
		fill += (size_t)n;
		chunk[fill] = '\0';
		while ((nl = strchr(line, '\n'))) {
			unsigned long s, e;
			size_t l = (size_t)(nl - line) + 1;

			/* VMA headers and their flags; sizes and counters move on their own. */
			if (smaps_header(line, &s, &e)) {
				snprintf(header, sizeof(header), "%.*s", (int)l, line);
			} else if (!strncmp(line, "VmFlags:", 8)) {
				*nl = '\0';
				if (keep_in_snapshot(line)) {
					size_t hl = strlen(header);

					assert_true(len + hl + l < size);
					memcpy(out + len, header, hl);
					len += hl;
					memcpy(out + len, line, l - 1);
					len += l - 1;
					out[len++] = '\n';
					out[len] = '\0';
				}
			}
			line = nl + 1;
		}
		fill -= (size_t)(line - chunk);
		memmove(chunk, line, fill);
		assert_true(fill < sizeof(chunk) - 1);	/* no line is that long */
	}
	close(fd);
}

char *smaps_flags_snapshot(void)
{
	static char buf[1 << 20];
	char *copy;

	smaps_flags_snapshot_buf(buf, sizeof(buf));
	copy = strdup(buf);
	assert_non_null(copy);
	return copy;
}

void assert_same_snapshot(const char *before, const char *after)
{
	const char *b = before, *a = after;

	if (!strcmp(before, after))
		return;
	/* Skip the common lines, print the first difference and a little context. */
	while (*b && *a) {
		size_t lb = strcspn(b, "\n"), la = strcspn(a, "\n");

		if (lb != la || strncmp(a, b, lb))
			break;
		b += lb + (b[lb] == '\n');
		a += la + (a[la] == '\n');
	}
	print_error("VMA flags changed; first difference:\n-%.*s\n+%.*s\n",
		    (int)strcspn(b, "\n"), b, (int)strcspn(a, "\n"), a);
	fail();
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
		/* cmocka catches SIGSEGV to report a crashed test: the child must die. */
		signal(SIGSEGV, SIG_DFL);
		signal(SIGBUS, SIG_DFL);
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

pid_t fork_sleeper(void)
{
	pid_t parent = getpid(), pid = fork();

	assert_true(pid >= 0);
	if (pid == 0) {
		/*
		 * Die with the test: a failed assertion skips kill_child(), and
		 * a child left behind would hold the test's output open.
		 */
		prctl(PR_SET_PDEATHSIG, SIGKILL);
		if (getppid() != parent)
			_exit(0);
		for (;;)
			pause();
	}
	return pid;
}

void kill_child(pid_t pid)
{
	int status;

	assert_int_equal(kill(pid, SIGKILL), 0);
	assert_int_equal(waitpid(pid, &status, 0), pid);
}

/* Not instrumented: a sanitizer's first store to its shadow of a page
 * that a fork write-protected takes a fault of its own. */
static __attribute__((noinline, no_sanitize("address", "thread"))) void store_back(char *p,
										    size_t len)
{
	for (size_t off = 0; off < len; off += PAGE)
		((volatile char *)p)[off] = p[off];
}

long write_faults(char *p, size_t len)
{
	static char warm[64];
	struct rusage before, after;

	/* Run the loop once first: under valgrind its first run translates
	 * code, which may fault on valgrind's own memory. */
	store_back(warm, sizeof(warm));
	assert_int_equal(getrusage(RUSAGE_SELF, &before), 0);
	store_back(p, len);
	assert_int_equal(getrusage(RUSAGE_SELF, &after), 0);
	return after.ru_minflt - before.ru_minflt;
}

void skip_if_faults_uncountable(void)
{
	if (under_valgrind()) {
		print_message("skipped under valgrind: its shadow memory takes write faults "
			      "of its own after a fork; counted in the other stages\n");
		skip();
	}
}

void *map_anon(size_t len, int prot, int extra)
{
	void *p = mmap(NULL, len, prot, MAP_PRIVATE | MAP_ANONYMOUS | extra, -1, 0);

	assert_true(p != MAP_FAILED);
	return p;
}

#define HUGEPAGES_2M "/sys/kernel/mm/hugepages/hugepages-2048kB/"

static long hugetlb_added;

static long read_long(const char *file)
{
	FILE *f = fopen(file, "re");
	long v = 0;

	if (f) {
		if (fscanf(f, "%ld", &v) != 1)
			v = 0;
		fclose(f);
	}
	return v;
}

static void write_long(const char *file, long v)
{
	FILE *f = fopen(file, "we");

	if (f) {
		fprintf(f, "%ld\n", v);
		fclose(f);
	}
}

long hugetlb_reserve(long n)
{
	long total = read_long(HUGEPAGES_2M "nr_hugepages");
	long free_pages = read_long(HUGEPAGES_2M "free_hugepages");

	if (free_pages < n) {
		write_long(HUGEPAGES_2M "nr_hugepages", total + n - free_pages);
		hugetlb_added += read_long(HUGEPAGES_2M "nr_hugepages") - total;
		free_pages = read_long(HUGEPAGES_2M "free_hugepages");
	}
	return free_pages;
}

void hugetlb_unreserve(void)
{
	long total;

	if (hugetlb_added <= 0)
		return;
	total = read_long(HUGEPAGES_2M "nr_hugepages");
	write_long(HUGEPAGES_2M "nr_hugepages", total > hugetlb_added ? total - hugetlb_added : 0);
	hugetlb_added = 0;
}

long test_alloc_live;
long test_alloc_budget = -1;

static void *test_alloc_node(void *ctx, size_t size)
{
	(void)ctx;
	if (test_alloc_budget == 0)
		return NULL;
	if (test_alloc_budget > 0)
		test_alloc_budget--;
	test_alloc_live++;
	return malloc(size);
}

static void test_free_node(void *ctx, void *p, size_t size)
{
	(void)ctx;
	(void)size;
	test_alloc_live--;
	free(p);
}

const struct node_alloc test_alloc = { test_alloc_node, test_free_node, NULL };

void pin_page_range(char *base, size_t first, size_t last)
{
	assert_int_equal(safepin_pin(base + first * PAGE, (last - first) * PAGE, 0), 0);
}

void unpin_page_range(char *base, size_t first, size_t last)
{
	assert_int_equal(safepin_unpin(base + first * PAGE, (last - first) * PAGE), 0);
}

void assert_page_marks(const void *base, size_t npages, const char *expect)
{
	char got[65];

	assert_true(npages < sizeof(got));
	fork_marks(base, npages, got);
	assert_string_equal(got, expect);
}

int raw_clone_reads(const volatile char *p)
{
	int status;
	pid_t pid = (pid_t)syscall(SYS_clone, SIGCHLD, NULL, NULL, NULL, NULL);

	assert_true(pid >= 0);
	if (pid == 0) {
		signal(SIGSEGV, SIG_DFL);	/* not cmocka's handler */
		_exit(*p == 0x5a ? 0 : *p == 0 ? 4 : 3);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	if (WIFSIGNALED(status)) {
		assert_int_equal(WTERMSIG(status), SIGSEGV);
		return 0;
	}
	if (WEXITSTATUS(status) == 4)
		return -1;
	assert_int_equal(WEXITSTATUS(status), 0);
	return 1;
}

void assert_immediate_leaves_nothing(void)
{
	struct safepin_stats s;

	assert_int_equal(safepin_set_unmark(SAFEPIN_UNMARK_IMMEDIATE), 0);
	s = stats_now();
	assert_int_equal(s.live_registrations, 0);
	assert_int_equal(s.parked_registrations, 0);
	assert_int_equal(s.pages_marked, 0);
}
