// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The environment is parsed strictly (src/core/config.c): SAFEPIN_POLICY,
 * SAFEPIN_UNMARK and SAFEPIN_LOG accept exactly their documented words.  Anything else --
 * other case, spaces, numbers, "on", empty -- prints one clear line on
 * stderr and leaves the default (DONTFORK, never a weaker policy).  With
 * AT_SECURE (a setuid program) the variables are not read at all
 * (secure_getenv): checked with a setuid-nobody copy of this program when
 * running as root on a filesystem that honours setuid, else skipped.
 *
 * The checks run in a fresh exec of this program (--child), because the
 * library reads the environment once per process.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"

#if defined(__SANITIZE_ADDRESS__) || defined(__SANITIZE_THREAD__)
#define SANITIZED 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer) || __has_feature(thread_sanitizer)
#define SANITIZED 1
#endif
#endif
#ifndef SANITIZED
#define SANITIZED 0
#endif

static char self[4096];

/* Run "exe --child" with exactly @env; its stdout and stderr into @out, @err
 * (through memfds: a pipe could fill up while the other one is read). */
static void slurp(int fd, char *buf, size_t size)
{
	ssize_t n = pread(fd, buf, size - 1, 0);

	buf[n > 0 ? n : 0] = '\0';
	close(fd);
}

static int run(const char *exe, char *const env[], char *out, size_t outsz, char *err,
	       size_t errsz)
{
	int fo = memfd_create("env-out", MFD_CLOEXEC), fe = memfd_create("env-err", MFD_CLOEXEC);
	int status;
	pid_t pid;

	assert_true(fo >= 0 && fe >= 0);
	pid = fork();
	assert_true(pid >= 0);
	if (pid == 0) {
		char *argv[] = { (char *)exe, (char *)"--child", NULL };

		dup2(fo, 1);
		dup2(fe, 2);
		execve(exe, argv, env);
		_exit(127);
	}
	assert_int_equal(waitpid(pid, &status, 0), pid);
	slurp(fo, out, outsz);
	slurp(fe, err, errsz);
	return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

static int child(void)
{
	char *m = map_anon(PAGE, PROT_READ | PROT_WRITE, 0);
	char marks[2];

	/* The policy in force and what a pin does with it. */
	if (safepin_pin(m, PAGE, 0))
		return 2;
	fork_marks(m, 1, marks);
	printf("policy=%d unmark=%d marks=%s\n", (int)safepin_get_policy(),
	       (int)safepin_get_unmark(), marks);
	return safepin_unpin(m, PAGE) ? 2 : 0;
}

struct env_case {
	const char *assignment;
	const char *stdout_expect;
	const char *stderr_expect;	/* substring, or "" for nothing at all */
};

static void check_cases(const char *exe, const struct env_case *c, size_t n)
{
	char out[4096], err[4096];

	for (size_t i = 0; i < n; i++) {
		char *env[] = { (char *)c[i].assignment, NULL };

		assert_int_equal(run(exe, env, out, sizeof(out), err, sizeof(err)), 0);
		if (strcmp(out, c[i].stdout_expect) ||
		    (*c[i].stderr_expect ? !strstr(err, c[i].stderr_expect) : *err != '\0')) {
			print_error("%s: stdout \"%s\" stderr \"%s\"; expected \"%s\" and \"%s\"\n",
				    c[i].assignment, out, err, c[i].stdout_expect,
				    c[i].stderr_expect);
			fail();
		}
	}
}

/* The defaults: the dontfork policy, deferred unmarking. */
#define DONTFORK_OUT "policy=0 unmark=1 marks=D\n"
#define ZEROFILL_OUT "policy=1 unmark=1 marks=W\n"
#define DEFERRED_OUT DONTFORK_OUT
#define IMMEDIATE_OUT "policy=0 unmark=0 marks=D\n"
#define WINDOWED_OUT "policy=0 unmark=2 marks=D\n"

static void test_policy_strict(void **state)
{
	static const struct env_case cases[] = {
		{ "SAFEPIN_UNRELATED=1", DONTFORK_OUT, "" },
		{ "SAFEPIN_POLICY=dontfork", DONTFORK_OUT, "" },
		{ "SAFEPIN_POLICY=zero-fill", ZEROFILL_OUT, "" },
		{ "SAFEPIN_POLICY=ZERO-FILL", DONTFORK_OUT,
		  "libsafepin: ignoring SAFEPIN_POLICY=\"ZERO-FILL\": expected one of dontfork "
		  "zero-fill kernel-copy; using dontfork" },
		{ "SAFEPIN_POLICY=zero-fill ", DONTFORK_OUT, "ignoring SAFEPIN_POLICY=\"zero-fill \"" },
		{ "SAFEPIN_POLICY= zero-fill", DONTFORK_OUT, "ignoring SAFEPIN_POLICY=\" zero-fill\"" },
		{ "SAFEPIN_POLICY=zero", DONTFORK_OUT, "ignoring SAFEPIN_POLICY=\"zero\"" },
		{ "SAFEPIN_POLICY=1", DONTFORK_OUT, "ignoring SAFEPIN_POLICY=\"1\"" },
		{ "SAFEPIN_POLICY=on", DONTFORK_OUT, "ignoring SAFEPIN_POLICY=\"on\"" },
		{ "SAFEPIN_POLICY=", DONTFORK_OUT, "ignoring SAFEPIN_POLICY=\"\"" },
		{ "SAFEPIN_POLICY=kernel-copyy", DONTFORK_OUT, "ignoring SAFEPIN_POLICY=\"kernel-copyy\"" },
		{ "SAFEPIN_POLICY=none", DONTFORK_OUT, "ignoring SAFEPIN_POLICY=\"none\"" },
	};

	(void)state;
	check_cases(self, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_unmark_strict(void **state)
{
	static const struct env_case cases[] = {
		{ "SAFEPIN_UNMARK=immediate", IMMEDIATE_OUT, "" },
		{ "SAFEPIN_UNMARK=deferred", DEFERRED_OUT, "" },
		{ "SAFEPIN_UNMARK=windowed", WINDOWED_OUT, "" },
		{ "SAFEPIN_UNMARK=Deferred", DONTFORK_OUT,
		  "libsafepin: ignoring SAFEPIN_UNMARK=\"Deferred\": expected one of immediate "
		  "deferred windowed; using deferred" },
		{ "SAFEPIN_UNMARK=window", DONTFORK_OUT, "ignoring SAFEPIN_UNMARK=\"window\"" },
		{ "SAFEPIN_UNMARK=lazy", DONTFORK_OUT, "ignoring SAFEPIN_UNMARK=\"lazy\"" },
		{ "SAFEPIN_UNMARK=1", DONTFORK_OUT, "ignoring SAFEPIN_UNMARK=\"1\"" },
		{ "SAFEPIN_UNMARK=", DONTFORK_OUT, "ignoring SAFEPIN_UNMARK=\"\"" },
	};

	(void)state;
	check_cases(self, cases, sizeof(cases) / sizeof(cases[0]));
}

static void test_log_strict(void **state)
{
	static const struct env_case cases[] = {
		{ "SAFEPIN_LOG=error", DONTFORK_OUT, "" },
		{ "SAFEPIN_LOG=verbose", DONTFORK_OUT,
		  "libsafepin: ignoring SAFEPIN_LOG=\"verbose\": expected one of error info debug; "
		  "using error" },
		{ "SAFEPIN_LOG=2", DONTFORK_OUT, "ignoring SAFEPIN_LOG=\"2\"" },
		{ "SAFEPIN_LOG=", DONTFORK_OUT, "ignoring SAFEPIN_LOG=\"\"" },
	};

	(void)state;
	check_cases(self, cases, sizeof(cases) / sizeof(cases[0]));
}

/* A value with control characters and a very long one: printed, not obeyed. */
static void test_hostile_values(void **state)
{
	static char longval[70000];
	char out[4096], err[1 << 17];
	char *env[] = { longval, NULL };

	(void)state;
	strcpy(longval, "SAFEPIN_POLICY=");
	memset(longval + strlen(longval), 'z', sizeof(longval) - strlen(longval) - 1);
	assert_int_equal(run(self, env, out, sizeof(out), err, sizeof(err)), 0);
	assert_string_equal(out, DONTFORK_OUT);
	assert_non_null(strstr(err, "ignoring SAFEPIN_POLICY="));
}

/* AT_SECURE: secure_getenv() hides the variables; no message, the default. */
static void test_setuid_ignores_environment(void **state)
{
	char dir[] = "/tmp/safepin-env-XXXXXX", exe[64], out[4096], err[4096];
	char *env[] = { (char *)"SAFEPIN_POLICY=zero-fill", (char *)"SAFEPIN_LOG=bogus", NULL };
	struct statvfs vfs;
	int in, o, rc;
	ssize_t n;
	char buf[65536];

	(void)state;
	if (SANITIZED) {
		/* The sanitizer runtimes do not run setuid (they re-exec, read
		 * their options from the environment, write logs). */
		print_message("skipped: sanitizer build\n");
		skip();
	}
	if (geteuid() != 0 || !mkdtemp(dir)) {
		print_message("skipped: needs root to make a setuid copy\n");
		skip();
	}
	if (statvfs(dir, &vfs) || (vfs.f_flag & ST_NOSUID)) {
		rmdir(dir);
		print_message("skipped: %s is mounted nosuid\n", dir);
		skip();
	}
	snprintf(exe, sizeof(exe), "%s/test_env", dir);
	in = open(self, O_RDONLY | O_CLOEXEC);
	o = open(exe, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0755);
	assert_true(in >= 0 && o >= 0);
	while ((n = read(in, buf, sizeof(buf))) > 0)
		assert_int_equal(write(o, buf, (size_t)n), n);
	close(in);
	close(o);
	assert_int_equal(chown(exe, 65534, 65534), 0);
	assert_int_equal(chmod(exe, 04755), 0);
	assert_int_equal(chmod(dir, 0755), 0);
	rc = run(exe, env, out, sizeof(out), err, sizeof(err));
	unlink(exe);
	rmdir(dir);
	assert_int_equal(rc, 0);
	assert_string_equal(out, DONTFORK_OUT);
	assert_string_equal(err, "");

	/* The control: the same program without AT_SECURE obeys them. */
	rc = run(self, env, out, sizeof(out), err, sizeof(err));
	assert_int_equal(rc, 0);
	assert_string_equal(out, ZEROFILL_OUT);
	assert_non_null(strstr(err, "ignoring SAFEPIN_LOG=\"bogus\""));
}

int main(int argc, char **argv)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_policy_strict),
		cmocka_unit_test(test_unmark_strict),
		cmocka_unit_test(test_log_strict),
		cmocka_unit_test(test_hostile_values),
		cmocka_unit_test(test_setuid_ignores_environment),
	};
	ssize_t n;

	if (argc > 1 && !strcmp(argv[1], "--child"))
		return child();
	n = readlink("/proc/self/exe", self, sizeof(self) - 1);
	if (n <= 0)
		return 1;
	self[n] = '\0';
	return cmocka_run_group_tests(tests, NULL, NULL);
}
