// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * libFuzzer target: the engine through the public API and the kernel.
 * Random sequences of safepin_pin() / safepin_unpin() with random ranges
 * (sub-page edges; NULL, zero length, wrap-around, flags (unknown ones, and
 * SAFEPIN_PIN_DEVICE_WRITES: marked the same, not pre-faulted), PROT_NONE pages,
 * never-pinned ranges), policy changes, and fork() (prepare handler, edge
 * page snapshot, child reset) on a private arena of mixed VMAs:
 *
 *   page  0-1  PROT_NONE guard     18     PROT_NONE hole
 *         2-9  private anonymous   19-29  private anonymous
 *        10-13 MAP_SHARED          30-31  PROT_NONE guard
 *        14-17 private, application's own MADV_DONTFORK
 *
 * against a reference model: registrations (a multiset of (addr, len)),
 * per-page counts, the VmFlags each page must show (/proc/self/smaps),
 * safepin_get_stats(), and in the child: an empty registry and every byte
 * outside the live registrations still readable with its old value.
 * Any divergence aborts (libFuzzer writes the input as a reproducer).
 */
#include <errno.h>
#include <fcntl.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <safepin/safepin.h>

#define PG 4096ul
#define NP 32
#define MAXREG 48

#define DIVERGE(...)                                                          \
	do {                                                                  \
		fprintf(stderr, "fuzz_engine: line %d: ", __LINE__);          \
		fprintf(stderr, __VA_ARGS__);                                 \
		fprintf(stderr, "\n");                                        \
		abort();                                                      \
	} while (0)

enum kind { K_NONE, K_PRIV, K_SHARED, K_APPDC };
static enum kind kind[NP];
static unsigned char *area;
static enum safepin_policy policy;
/* SAFEPIN_UNMARK_DEFERRED: parked ranges stay marked until a fork or a flush. */
static bool deferred;

struct reg {
	uintptr_t addr;
	size_t len;
};
static struct reg regs[MAXREG];
static size_t nregs;

static unsigned char pattern(size_t off)
{
	return (unsigned char)(off * 7 + (off >> 12) * 13 + 1);
}

static void init(void)
{
	/* Low in the address space: /proc/self/smaps lists the area first, and
	 * both the library and the model stop reading after it (a full read
	 * costs ~0.7 ms in a fuzzer process, whose big mappings come later). */
	area = mmap((void *)0x100000000ul, NP * PG, PROT_NONE,
		    MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0);
	if (area == MAP_FAILED)
		area = mmap(NULL, NP * PG, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (area == MAP_FAILED)
		abort();
	for (size_t p = 0; p < NP; p++)
		kind[p] = p < 2 || p == 18 || p >= 30 ? K_NONE
			  : p >= 10 && p < 14	     ? K_SHARED
			  : p >= 14 && p < 18	     ? K_APPDC
						     : K_PRIV;
	if (mprotect(area + 2 * PG, 8 * PG, PROT_READ | PROT_WRITE) ||
	    mmap(area + 10 * PG, 4 * PG, PROT_READ | PROT_WRITE,
		 MAP_SHARED | MAP_ANONYMOUS | MAP_FIXED, -1, 0) == MAP_FAILED ||
	    mprotect(area + 14 * PG, 4 * PG, PROT_READ | PROT_WRITE) ||
	    madvise(area + 14 * PG, 4 * PG, MADV_DONTFORK) ||
	    mprotect(area + 19 * PG, 11 * PG, PROT_READ | PROT_WRITE))
		abort();
	for (size_t p = 0; p < NP; p++)
		if (kind[p] != K_NONE)
			for (size_t i = 0; i < PG; i++)
				area[p * PG + i] = pattern(p * PG + i);
}

/* ---- observation ---- */
static void marks(char *out)
{
	static char chunk[1 << 16];
	uintptr_t a0 = (uintptr_t)area, a1 = a0 + NP * PG;
	unsigned long s = 0, e = 0;
	size_t fill = 0;
	int fd = open("/proc/self/smaps", O_RDONLY | O_CLOEXEC);

	memset(out, ' ', NP);
	out[NP] = '\0';
	if (fd < 0)
		abort();
	for (;;) {
		ssize_t r = read(fd, chunk + fill, sizeof(chunk) - 1 - fill);
		char *line = chunk, *nl;

		if (r <= 0)
			break;
		fill += (size_t)r;
		chunk[fill] = '\0';
		while ((nl = strchr(line, '\n'))) {
			*nl = '\0';
			if (!strncmp(line, "VmFlags:", 8)) {
				char c = strstr(line, " dc") ? 'D' : strstr(line, " wf") ? 'W' : '.';

				for (uintptr_t p = s > a0 ? s : a0; p < e && p < a1; p += PG)
					out[(p - a0) / PG] = c;
			} else if (line[0] != 'V') {
				unsigned long s2, e2;

				if (sscanf(line, "%lx-%lx ", &s2, &e2) == 2) {
					s = s2;
					e = e2;
					if (s >= a1)
						goto done;	/* past the area */
				}
			}
			line = nl + 1;
		}
		fill -= (size_t)(line - chunk);
		memmove(chunk, line, fill);
	}
done:
	close(fd);
}

static unsigned int page_count(size_t p)
{
	uintptr_t ps = (uintptr_t)area + p * PG, pe = ps + PG;
	unsigned int c = 0;

	for (size_t i = 0; i < nregs; i++)
		c += regs[i].addr < pe && regs[i].addr + regs[i].len > ps;
	return c;
}

static void expected(char *out, unsigned long *marked)
{
	*marked = 0;
	for (size_t p = 0; p < NP; p++) {
		unsigned int c = page_count(p);

		switch (kind[p]) {
		case K_NONE: out[p] = '.'; break;
		case K_SHARED: out[p] = '.'; break;
		case K_APPDC: out[p] = 'D'; break;
		case K_PRIV:
			out[p] = !c ? '.' : policy == SAFEPIN_POLICY_ZERO_FILL ? 'W' : 'D';
			*marked += c != 0;
			break;
		}
	}
	out[NP] = '\0';
}

static void check(const char *after)
{
	char got[NP + 1], want[NP + 1];
	unsigned long marked;
	struct safepin_stats st = { .size = sizeof(st) };

	marks(got);
	expected(want, &marked);
	/* Deferred: marks may exceed the live registrations until a fork (the
	 * prepare handler unmarks parked ranges) or a switch back to immediate. */
	if (deferred && strcmp(after, "fork") && strcmp(after, "unmark")) {
		if (safepin_get_stats(&st) || st.live_registrations != nregs)
			DIVERGE("after %s (deferred): stats live %llu, model %zu", after,
				(unsigned long long)st.live_registrations, nregs);
		return;
	}
	if (strcmp(got, want))
		DIVERGE("after %s: VmFlags %s, model %s", after, got, want);
	if (safepin_get_stats(&st) || st.live_registrations != nregs || st.pages_marked != marked)
		DIVERGE("after %s: stats live %llu marked %llu, model %zu %lu", after,
			(unsigned long long)st.live_registrations,
			(unsigned long long)st.pages_marked, nregs, marked);
}

/* ---- the child ---- */
static bool covered(uintptr_t a)
{
	for (size_t i = 0; i < nregs; i++)
		if (a >= regs[i].addr && a < regs[i].addr + regs[i].len)
			return true;
	return false;
}

static int child_checks(void)
{
	struct safepin_stats st = { .size = sizeof(st) };

	if (safepin_get_stats(&st) || st.live_registrations || st.pages_marked) {
		fprintf(stderr, "child: registry not empty\n");
		return 1;
	}
	for (size_t p = 0; p < NP; p++) {
		if (kind[p] != K_PRIV && kind[p] != K_SHARED)
			continue;
		for (size_t i = 0; i < PG; i++) {
			uintptr_t a = (uintptr_t)area + p * PG + i;

			if (kind[p] == K_PRIV && covered(a))
				continue;
			if (*(volatile unsigned char *)a != pattern(p * PG + i)) {
				fprintf(stderr, "child: byte %zu of page %zu changed\n", i, p);
				return 1;
			}
		}
	}
	/* Locks usable, registry works (on a page the parent's registrations
	 * did not hide from this child). */
	for (size_t p = 0; p < NP; p++) {
		if (kind[p] != K_PRIV || page_count(p))
			continue;
		if (safepin_pin(area + p * PG, PG, 0) || safepin_unpin(area + p * PG, PG)) {
			fprintf(stderr, "child: pin/unpin of page %zu failed: %s\n", p,
				strerror(errno));
			return 1;
		}
		break;
	}
	return 0;
}

static void do_fork(void)
{
	int status = 0;
	pid_t ret;
	pid_t pid = fork();

	if (pid < 0)
		DIVERGE("fork: %s", strerror(errno));
	if (pid == 0)
		_exit(child_checks());
	/* libFuzzer's -timeout ticks SIGALRM: waitpid() sees EINTR. */
	while ((ret = waitpid(pid, &status, 0)) < 0 && errno == EINTR)
		;
	if (ret != pid || !WIFEXITED(status) || WEXITSTATUS(status))
		DIVERGE("the child of fork() failed its checks (status %#x)", status);
	/* The parent's data is untouched by pre-fault and fork. */
	for (size_t p = 0; p < NP; p++)
		if (kind[p] != K_NONE)
			for (size_t i = 0; i < PG; i++)
				if (area[p * PG + i] != pattern(p * PG + i))
					DIVERGE("parent: byte %zu of page %zu changed", i, p);
}

/* ---- ops ---- */
struct in {
	const uint8_t *p;
	size_t n;
};

static unsigned int byte(struct in *in)
{
	if (!in->n)
		return 0;
	in->n--;
	return *in->p++;
}

static int expect_pin(uintptr_t addr, size_t len, unsigned int flags)
{
	uintptr_t s, e;

	if (!addr || !len || addr + len < addr || (flags & ~SAFEPIN_PIN_DEVICE_WRITES))
		return -EINVAL;
	if ((addr + len + PG - 1) < addr + len)
		return -EINVAL;
	s = addr & ~(PG - 1);
	e = (addr + len + PG - 1) & ~(PG - 1);
	for (uintptr_t a = s; a < e; a += PG)
		if (kind[(a - (uintptr_t)area) / PG] == K_NONE)
			return -EFAULT;
	return 0;
}

static void random_range(struct in *in, uintptr_t *addr, size_t *len, unsigned int *flags)
{
	unsigned int how = byte(in);
	size_t p = byte(in) % NP, off = byte(in) * 16 + byte(in) % 16;
	size_t max;

	*flags = 0;
	*addr = (uintptr_t)area + p * PG + off % PG;
	max = (uintptr_t)area + NP * PG - *addr;
	*len = 1 + (byte(in) * 256 + byte(in)) % (max < 6 * PG ? max : 6 * PG);
	switch (how % 16) {
	case 0: *addr = 0; break;			/* NULL */
	case 1: *len = 0; break;
	case 2: *len = SIZE_MAX - byte(in); break;	/* wraps */
	case 3: *flags = 1u << (byte(in) % 32); break;
	case 4: *addr &= ~(PG - 1); *len = (1 + byte(in) % 4) * PG;	/* page aligned */
		if (*len > max)
			*len = max;
		break;
	default: break;
	}
}

static void op_pin(struct in *in)
{
	uintptr_t addr;
	size_t len;
	unsigned int flags;
	int want, ret;

	random_range(in, &addr, &len, &flags);
	want = expect_pin(addr, len, flags);
	if (!want && nregs == MAXREG)
		return;
	errno = 0;
	ret = safepin_pin((const void *)addr, len, flags);
	if (ret != want || (ret && errno != -ret))
		DIVERGE("pin(%#lx, %zu, %#x): %d errno %d, model %d", (unsigned long)addr, len, flags,
			ret, errno, want);
	if (!ret)
		regs[nregs++] = (struct reg){ addr, len };
	check("pin");
}

static void op_unpin(struct in *in)
{
	uintptr_t addr;
	size_t len, i;
	unsigned int flags;
	int want, ret;

	if (nregs && (byte(in) & 3)) {	/* mostly live ones */
		struct reg r = regs[byte(in) % nregs];

		addr = r.addr;
		len = r.len;
	} else {
		random_range(in, &addr, &len, &flags);
	}
	for (i = 0; i < nregs; i++)
		if (regs[i].addr == addr && regs[i].len == len)
			break;
	want = !addr || !len || addr + len < addr ? -EINVAL : i < nregs ? 0 : -ENOENT;
	errno = 0;
	ret = safepin_unpin((const void *)addr, len);
	if (ret != want || (ret && errno != -ret))
		DIVERGE("unpin(%#lx, %zu): %d errno %d, model %d", (unsigned long)addr, len, ret,
			errno, want);
	if (!ret)
		regs[i] = regs[--nregs];
	check("unpin");
}

/* Switching unmarking modes; back to immediate unmarks every parked range. */
static void op_unmark(struct in *in)
{
	bool want = byte(in) & 1;

	if (safepin_set_unmark(want ? SAFEPIN_UNMARK_DEFERRED : SAFEPIN_UNMARK_IMMEDIATE))
		DIVERGE("set_unmark(%d) failed", want);
	deferred = want;
	if (!deferred)
		check("unmark");
}

static void op_policy(struct in *in)
{
	enum safepin_policy p = byte(in) & 1 ? SAFEPIN_POLICY_ZERO_FILL : SAFEPIN_POLICY_DONTFORK;
	int ret = safepin_set_policy(p), want = nregs ? -EBUSY : 0;

	if (ret != want)
		DIVERGE("set_policy(%d) with %zu live: %d, model %d", p, nregs, ret, want);
	if (!ret)
		policy = p;
	if (safepin_get_policy() != policy)
		DIVERGE("get_policy %d, model %d", safepin_get_policy(), policy);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	struct in in = { data, size };
	int forks = 0;

	if (!area)
		init();
	for (int ops = 0; in.n && ops < 64; ops++) {
		switch (byte(&in) % 8) {
		case 0: case 1: case 2: op_pin(&in); break;
		case 3: case 4: case 5: op_unpin(&in); break;
		case 6:
			if (byte(&in) & 1)
				op_unmark(&in);
			else
				op_policy(&in);
			break;
		default:
			if (forks++ < 2) {
				do_fork();
				check("fork");
			}
		}
	}
	/* Leave the library as found: everything unpinned, nothing marked. */
	while (nregs) {
		nregs--;
		if (safepin_unpin((const void *)regs[nregs].addr, regs[nregs].len))
			DIVERGE("final unpin of a live registration failed");
	}
	if (deferred) {
		if (safepin_set_unmark(SAFEPIN_UNMARK_IMMEDIATE))
			DIVERGE("set_unmark back");
		deferred = false;
	}
	check("unpinning everything");
	if (policy != SAFEPIN_POLICY_DONTFORK) {
		policy = SAFEPIN_POLICY_DONTFORK;
		if (safepin_set_policy(policy))
			DIVERGE("set_policy back");
	}
	return 0;
}
