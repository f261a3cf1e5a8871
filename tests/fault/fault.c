// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "fault.h"
#include "node_alloc.h"

#ifndef MADV_POPULATE_READ
#define MADV_POPULATE_READ 22
#endif
#ifndef MADV_POPULATE_WRITE
#define MADV_POPULATE_WRITE 23
#endif

/* ---- the injector -------------------------------------------------------- */

static struct injector {
	bool armed;
	int fail_at;		/* 1-based position of the call that fails */
	int calls;
	bool fired;
	enum fault_kind kind;
	long detail;
	int err;
	bool match;		/* fail_calls(): fail calls of kind/detail by number */
	enum fault_kind match_kind;
	long match_detail;
	int match_err;		/* 0: fault_errno()'s */
	int match_first, match_count;	/* the calls #first .. #first + count - 1 */
	int match_seen;		/* calls of kind/detail so far */
	int fired_count;
} inj;

void fault_fail_calls(enum fault_kind k, long detail, int first, int count, int err)
{
	inj = (struct injector){ .match = true, .match_kind = k, .match_detail = detail,
				 .match_err = err, .match_first = first, .match_count = count };
}

void fault_fail_next(enum fault_kind k, long detail)
{
	fault_fail_calls(k, detail, 1, 1, 0);
}

void fault_fail_next_errno(enum fault_kind k, long detail, int err)
{
	fault_fail_calls(k, detail, 1, 1, err);
}

void fault_disarm(void)
{
	inj.match = false;
	inj.armed = false;
}

bool fault_fired(void)
{
	return inj.fired;
}

int fault_fired_count(void)
{
	return inj.fired_count;
}

int fault_errno(enum fault_kind k, long detail)
{
	(void)detail;
	switch (k) {
	case FK_MADVISE: return EINVAL;	/* EAGAIN would come back as ENOMEM */
	case FK_MMAP: return ENOMEM;
	case FK_MALLOC: return ENOMEM;
	case FK_OPEN: return EMFILE;
	case FK_READ: return EIO;
	case FK_IOCTL: return EBUSY;
	case FK_DEVICE: return EPROTO;
	case FK_NODE: return ENOMEM;	/* what the arena's failure gives */
	default: return EDOM;
	}
}

const char *fault_desc(enum fault_kind k, long detail)
{
	static char buf[64];

	switch (k) {
	case FK_MADVISE:
		switch (detail) {
		case MADV_DONTFORK: return "madvise(MADV_DONTFORK)";
		case MADV_DOFORK: return "madvise(MADV_DOFORK)";
		case MADV_WIPEONFORK: return "madvise(MADV_WIPEONFORK)";
		case MADV_KEEPONFORK: return "madvise(MADV_KEEPONFORK)";
		case MADV_POPULATE_READ: return "madvise(MADV_POPULATE_READ)";
		case MADV_POPULATE_WRITE: return "madvise(MADV_POPULATE_WRITE)";
		default: snprintf(buf, sizeof(buf), "madvise(%ld)", detail); return buf;
		}
	case FK_MMAP: return "mmap (bookkeeping)";
	case FK_MALLOC: return detail == FAULT_REALLOC ? "realloc" : "malloc/calloc";
	case FK_OPEN: return "open(/proc/self/smaps)";
	case FK_READ: return "read(/proc/self/smaps)";
	case FK_IOCTL:
		switch ((unsigned long)detail) {
		case 0x3b71: return "ioctl(VFIO_IOMMU_MAP_DMA)";
		case 0x3b72: return "ioctl(VFIO_IOMMU_UNMAP_DMA)";
		case 0x3b85: return "ioctl(IOMMU_IOAS_MAP)";
		case 0x3b86: return "ioctl(IOMMU_IOAS_UNMAP)";
		default:
			if (((unsigned long)detail & 0xffff) == (('f' << 8) | 17))
				return "ioctl(PROCMAP_QUERY)";
			snprintf(buf, sizeof(buf), "ioctl(%#lx)", (unsigned long)detail);
			return buf;
		}
	case FK_DEVICE: {
		static const char *const dev[] = { "?", "ibv_dontfork_range", "ibv_reg_mr_iova2",
						   "ibv_dereg_mr", "ibv_rereg_mr" };

		return detail > 0 && detail < 5 ? dev[detail] : "device call";
	}
	case FK_NODE: return "bookkeeping node (hooked map)";
	default: return "?";
	}
}

int fault_point(enum fault_kind k, long detail)
{
	if (inj.match && k == inj.match_kind && detail == inj.match_detail) {
		int n = ++inj.match_seen - inj.match_first;

		if (n < 0)
			return 0;
		if (n >= inj.match_count - 1)
			inj.match = false;	/* the last one to fail */
		inj.fired = true;
		inj.fired_count++;
		inj.err = inj.match_err ? inj.match_err : fault_errno(k, detail);
		return inj.err;
	}
	if (!inj.armed)
		return 0;
	if (++inj.calls != inj.fail_at)
		return 0;
	inj.fired = true;
	inj.kind = k;
	inj.detail = detail;
	inj.err = fault_errno(k, detail);
	return inj.err;
}

/* ---- the wrappers (-Wl,--wrap=...) ---------------------------------------- */

int __real_madvise(void *addr, size_t len, int advice);
int __wrap_madvise(void *addr, size_t len, int advice);
void *__real_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off);
void *__real_malloc(size_t size);
void *__wrap_malloc(size_t size);
void *__real_calloc(size_t n, size_t size);
void *__wrap_calloc(size_t n, size_t size);
void *__real_realloc(void *p, size_t size);
void *__wrap_realloc(void *p, size_t size);
int __real_open(const char *path, int flags, ...);
int __wrap_open(const char *path, int flags, ...);
ssize_t __real_read(int fd, void *buf, size_t n);
ssize_t __wrap_read(int fd, void *buf, size_t n);
int __real_ioctl(int fd, unsigned long req, ...);
int __wrap_ioctl(int fd, unsigned long req, ...);

int (*fault_ioctl_hook)(int fd, unsigned long req, void *arg, int *ret);

int __wrap_ioctl(int fd, unsigned long req, ...)
{
	va_list ap;
	void *arg;
	int e, ret;

	va_start(ap, req);
	arg = va_arg(ap, void *);
	va_end(ap);
	e = fault_point(FK_IOCTL, (long)req);
	if (e) {
		errno = e;
		return -1;
	}
	if (fault_ioctl_hook && fault_ioctl_hook(fd, req, arg, &ret))
		return ret;
	return __real_ioctl(fd, req, arg);
}

/* The range of the last madvise() the injector failed. */
static uintptr_t failed_start, failed_end;

int __wrap_madvise(void *addr, size_t len, int advice)
{
	int e = fault_point(FK_MADVISE, advice);

	if (e) {
		failed_start = (uintptr_t)addr;
		failed_end = (uintptr_t)addr + len;
		errno = e;
		return -1;
	}
	return __real_madvise(addr, len, advice);
}

void *__wrap_mmap(void *addr, size_t len, int prot, int flags, int fd, off_t off)
{
	int e = fault_point(FK_MMAP, 0);

	if (e) {
		errno = e;
		return MAP_FAILED;
	}
	return __real_mmap(addr, len, prot, flags, fd, off);
}

void *__wrap_malloc(size_t size)
{
	int e = fault_point(FK_MALLOC, FAULT_MALLOC);

	if (e) {
		errno = e;
		return NULL;
	}
	return __real_malloc(size);
}

void *__wrap_calloc(size_t n, size_t size)
{
	int e = fault_point(FK_MALLOC, FAULT_MALLOC);

	if (e) {
		errno = e;
		return NULL;
	}
	return __real_calloc(n, size);
}

void *__wrap_realloc(void *p, size_t size)
{
	int e = fault_point(FK_MALLOC, FAULT_REALLOC);

	if (e) {
		errno = e;
		return NULL;
	}
	return __real_realloc(p, size);
}

int __wrap_open(const char *path, int flags, ...)
{
	mode_t mode = 0;
	int e = fault_point(FK_OPEN, 0);

	if (flags & (O_CREAT | O_TMPFILE)) {
		va_list ap;

		va_start(ap, flags);
		mode = (mode_t)va_arg(ap, unsigned int);
		va_end(ap);
	}
	if (e) {
		errno = e;
		return -1;
	}
	return __real_open(path, flags, mode);
}

ssize_t __wrap_read(int fd, void *buf, size_t n)
{
	int e = fault_point(FK_READ, 0);

	if (e) {
		errno = e;
		return -1;
	}
	return __real_read(fd, buf, n);
}

/* ---- a registry map's node allocator, hooked --------------------------------- */

static struct node_alloc hooked;	/* the allocator replaced */

static void *hooked_alloc(void *ctx, size_t size)
{
	(void)ctx;
	return fault_point(FK_NODE, 0) ? NULL : hooked.alloc(hooked.ctx, size);
}

static void hooked_free(void *ctx, void *ptr, size_t size)
{
	(void)ctx;
	hooked.free(hooked.ctx, ptr, size);
}

void fault_hook_node_alloc(struct node_alloc *a)
{
	hooked = *a;
	*a = (struct node_alloc){ hooked_alloc, hooked_free, NULL };
}

void fault_unhook_node_alloc(struct node_alloc *a)
{
	*a = hooked;
}

/* ---- observation (unarmed; no allocation) --------------------------------- */

char *fault_buf;

/*
 * Call @fn for every VMA of /proc/self/smaps meeting [a0, a1), with its
 * bounds and one character for its VmFlags: 'D' dc, 'W' wf, '.' neither.
 * Reads with the real open/read: nothing here may hit an armed fault.
 */
static void smaps_marks(uintptr_t a0, uintptr_t a1,
			void (*fn)(void *ctx, uintptr_t s, uintptr_t e, char mark), void *ctx)
{
	static char chunk[1 << 16];
	unsigned long s = 0, e = 0;
	size_t fill = 0;
	int fd = __real_open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);

	if (fd < 0)
		return;
	for (;;) {
		ssize_t r = __real_read(fd, chunk + fill, sizeof(chunk) - 1 - fill);
		char *line = chunk, *nl;

		if (r <= 0)
			break;
		fill += (size_t)r;
		chunk[fill] = '\0';
		while ((nl = strchr(line, '\n'))) {
			*nl = '\0';
			char *end;
			unsigned long hs = strtoul(line, &end, 16);

			if (end != line && *end == '-') {
				/* the header "start-end perms ...", kept until its VmFlags */
				s = hs;
				e = strtoul(end + 1, NULL, 16);
			} else if (!strncmp(line, "VmFlags:", 8) && s < a1 && e > a0) {
				fn(ctx, s, e, strstr(line, " dc") ? 'D' : strstr(line, " wf") ? 'W' : '.');
			}
			line = nl + 1;
		}
		fill -= (size_t)(line - chunk);
		memmove(chunk, line, fill);
	}
	close(fd);
}

struct marks_out {
	uintptr_t a0, a1;
	char *out;
	size_t len, size;	/* fault_layout(): bytes written, room */
};

static void page_marks(void *ctx, uintptr_t s, uintptr_t e, char mark)
{
	struct marks_out *m = ctx;

	for (uintptr_t p = s > m->a0 ? s : m->a0; p < e && p < m->a1; p += PAGE)
		m->out[(p - m->a0) / PAGE] = mark;
}

/* One character per page from /proc/self/smaps VmFlags: 'D' dc, 'W' wf, '.' neither. */
void fault_marks(const void *addr, size_t n, char *out)
{
	struct marks_out m = { (uintptr_t)addr, (uintptr_t)addr + n * PAGE, out, 0, 0 };

	memset(out, ' ', n);
	out[n] = '\0';
	smaps_marks(m.a0, m.a1, page_marks, &m);
}

static void layout_entry(void *ctx, uintptr_t s, uintptr_t e, char mark)
{
	struct marks_out *m = ctx;
	uintptr_t from = s > m->a0 ? s : m->a0, to = e < m->a1 ? e : m->a1;
	int w;

	if (m->len >= m->size)
		return;
	w = snprintf(m->out + m->len, m->size - m->len, "%lu-%lu:%c ",
		     (unsigned long)((from - m->a0) / PAGE), (unsigned long)((to - m->a0) / PAGE),
		     mark);
	m->len = w > 0 && (size_t)w < m->size - m->len ? m->len + (size_t)w : m->size;
}


void fault_layout(const void *addr, size_t n, char *out, size_t size)
{
	struct marks_out m = { (uintptr_t)addr, (uintptr_t)addr + n * PAGE, out, 0, size };

	out[0] = '\0';
	smaps_marks(m.a0, m.a1, layout_entry, &m);
}

/* Headers and VmFlags of every VMA. */
static void snapshot(char *out, size_t size)
{
	static char chunk[1 << 16];
	size_t fill = 0, len = 0;
	int fd = __real_open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);

	out[0] = '\0';
	if (fd < 0)
		return;
	for (;;) {
		ssize_t r = __real_read(fd, chunk + fill, sizeof(chunk) - 1 - fill);
		char *line = chunk, *nl;

		if (r <= 0)
			break;
		fill += (size_t)r;
		chunk[fill] = '\0';
		while ((nl = strchr(line, '\n'))) {
			unsigned long s, e;
			size_t l = (size_t)(nl - line) + 1;

			if ((!strncmp(line, "VmFlags:", 8) ||
			     (sscanf(line, "%lx-%lx ", &s, &e) == 2 && line[0] != 'V')) &&
			    len + l < size) {
				memcpy(out + len, line, l);
				len += l;
				out[len] = '\0';
			}
			line = nl + 1;
		}
		fill -= (size_t)(line - chunk);
		memmove(chunk, line, fill);
	}
	close(fd);
}

static struct safepin_stats stats(void)
{
	struct safepin_stats s = { .size = sizeof(s) };

	if (safepin_get_stats(&s))
		abort();
	return s;
}

/* ---- the driver ------------------------------------------------------------ */

/* Shared with the children: which (kind, detail) pairs were failed. */
struct tally {
	int n;
	struct { enum fault_kind kind; long detail; int count; } seen[64];
	int total;
};
static struct tally *tally;

static void tally_add(enum fault_kind k, long detail)
{
	int i;

	tally->total++;
	for (i = 0; i < tally->n; i++)
		if (tally->seen[i].kind == k && tally->seen[i].detail == detail)
			break;
	if (i == tally->n) {
		if (tally->n == 64)
			return;
		tally->n++;
		tally->seen[i].kind = k;
		tally->seen[i].detail = detail;
	}
	tally->seen[i].count++;
}

static char snap0[1 << 18], snap1[1 << 18];

#define CHECK(c, ...)                                                                   \
	do {                                                                            \
		if (!(c)) {                                                             \
			fprintf(stderr, "%s, call #%d (%s) failed: line %d: %s: ",      \
				s->name, k, fault_desc(inj.kind, inj.detail), __LINE__, #c); \
			fprintf(stderr, __VA_ARGS__);                                   \
			fprintf(stderr, "\n");                                          \
			_exit(1);                                                       \
		}                                                                       \
	} while (0)

static bool is_unmark(long advice)
{
	return advice == MADV_DOFORK || advice == MADV_KEEPONFORK;
}

/* In a fresh child: fail call #k of s->op. Exit 0 checked, 3 no call #k, 1 diverged. */
static void child(const struct scenario *s, int k)
{
	char m0[FAULT_BUF_PAGES + 1], m1[FAULT_BUF_PAGES + 1];
	struct safepin_stats s0, s1;
	int err;

	s->setup();
	if (s->whole_process && !SANITIZED)
		snapshot(snap0, sizeof(snap0));
	fault_marks(fault_buf, FAULT_BUF_PAGES, m0);
	s0 = stats();
	inj = (struct injector){ .armed = true, .fail_at = k };
	err = s->op();
	inj.armed = false;
	fault_marks(fault_buf, FAULT_BUF_PAGES, m1);
	s1 = stats();
	if (!inj.fired) {
		CHECK(err == 0, "no fault injected, yet the operation failed with %d", err);
		s->undo();
		fault_marks(fault_buf, FAULT_BUF_PAGES, m1);
		CHECK(!strcmp(m0, m1), "op + undo: marks %s, were %s", m1, m0);
		_exit(3);
	}
	tally_add(inj.kind, inj.detail);
	if (s->tolerate == TOLERATE_SNAPSHOT && inj.kind == FK_MMAP) {
		/* fork() goes on; the child misses partial pages (logged, counted). */
		CHECK(err == 0, "fork with a failing snapshot returned %d", err);
		CHECK(!strcmp(m0, m1), "marks %s, were %s", m1, m0);
		CHECK(s1.live_registrations == s0.live_registrations &&
		      s1.pages_marked == s0.pages_marked, "counts changed");
		CHECK(s1.failures == s0.failures + 1, "failure not counted");
		_exit(0);
	}
	if (s->tolerate == TOLERATE_UNMARK && inj.kind == FK_MADVISE && is_unmark(inj.detail)) {
		/* Completed and counted; the run whose unmark failed stays
		 * marked (the safe side: registry.c keeps it as a stuck run);
		 * the rest of the operation went on as usual. */
		size_t kept = 0, in_run = 0;

		CHECK(err == 0, "release with a failing unmark returned %d", err);
		CHECK(s1.failures == s0.failures + 1, "failures %llu -> %llu",
		      (unsigned long long)s0.failures, (unsigned long long)s1.failures);
		for (size_t i = 0; i < FAULT_BUF_PAGES; i++) {
			uintptr_t page = (uintptr_t)fault_buf + i * PAGE;

			if (page < failed_start || page >= failed_end)
				continue;
			in_run++;
			kept += m0[i] != '.' && m1[i] == m0[i];
		}
		CHECK(kept == in_run, "the run whose unmark failed lost its mark: %s -> %s",
		      m0, m1);
		_exit(0);
	}
	if (err == 0 && inj.kind == FK_IOCTL && (inj.detail & 0xffff) == (('f' << 8) | 17)) {
		/* A PROCMAP_QUERY after marking only asks whether the VMA was
		 * the application's DONTFORK already; unsure means ours
		 * (registry.c resolve_probe).  The op completes: its undo must
		 * bring back the start state. */
		s->undo();
		fault_marks(fault_buf, FAULT_BUF_PAGES, m1);
		s1 = stats();
		CHECK(!strcmp(m0, m1), "absorbed query, undo: marks %s, were %s", m1, m0);
		CHECK(s1.live_registrations == s0.live_registrations &&
		      s1.pages_marked == s0.pages_marked, "absorbed query, undo: counts differ");
		_exit(0);
	}
	CHECK(err == inj.err, "the caller saw errno %d (%s), injected %d (%s)", err,
	      strerror(err), inj.err, strerror(inj.err));
	CHECK(!strcmp(m0, m1), "marks %s, were %s", m1, m0);
	if (s->whole_process && !SANITIZED) {
		snapshot(snap1, sizeof(snap1));
		if (strcmp(snap0, snap1))
			fprintf(stderr, "before:\n%s\nafter:\n%s\n", snap0, snap1);
		CHECK(!strcmp(snap0, snap1), "VmFlags of the process changed");
	}
	CHECK(s1.live_registrations == s0.live_registrations, "live %llu -> %llu",
	      (unsigned long long)s0.live_registrations,
	      (unsigned long long)s1.live_registrations);
	CHECK(s1.pages_marked == s0.pages_marked, "pages_marked %llu -> %llu",
	      (unsigned long long)s0.pages_marked, (unsigned long long)s1.pages_marked);
	/* The counts are intact: the same operation works, and undoing it
	 * brings back the start state. */
	err = s->op();
	CHECK(err == 0, "the operation failed after the fault: %d", err);
	s->undo();
	fault_marks(fault_buf, FAULT_BUF_PAGES, m1);
	s1 = stats();
	CHECK(!strcmp(m0, m1), "after redo + undo: marks %s, were %s", m1, m0);
	CHECK(s1.live_registrations == s0.live_registrations &&
	      s1.pages_marked == s0.pages_marked, "redo + undo: live %llu/%llu marked %llu/%llu",
	      (unsigned long long)s1.live_registrations,
	      (unsigned long long)s0.live_registrations,
	      (unsigned long long)s1.pages_marked, (unsigned long long)s0.pages_marked);
	_exit(0);
}

int fault_run(const struct scenario *s)
{
	int k;

	if (!tally) {
		tally = __real_mmap(NULL, sizeof(*tally), PROT_READ | PROT_WRITE,
				    MAP_SHARED | MAP_ANONYMOUS, -1, 0);
		if (tally == MAP_FAILED)
			abort();
	}
	if (!fault_buf) {
		fault_buf = __real_mmap(NULL, FAULT_BUF_PAGES * PAGE, PROT_READ | PROT_WRITE,
					MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (fault_buf == MAP_FAILED)
			abort();
	}
	for (k = 1; k < 1000; k++) {
		int status;
		pid_t pid;

		fflush(NULL);
		pid = fork();
		if (pid < 0)
			abort();
		if (pid == 0)
			child(s, k);
		if (waitpid(pid, &status, 0) != pid)
			abort();
		if (WIFEXITED(status) && WEXITSTATUS(status) == 3)
			break;
		if (!WIFEXITED(status) || WEXITSTATUS(status)) {
			fprintf(stderr, "FAIL %s: failing call #%d: child status %#x\n", s->name, k,
				status);
			return -1;
		}
	}
	printf("ok   %-34s %3d failure points\n", s->name, k - 1);
	return k - 1;
}

void fault_summary(const char *prog)
{
	printf("%s: %d injected failures checked, by call:\n", prog, tally ? tally->total : 0);
	for (int i = 0; tally && i < tally->n; i++)
		printf("  %-30s %d\n", fault_desc(tally->seen[i].kind, tally->seen[i].detail),
		       tally->seen[i].count);
}
