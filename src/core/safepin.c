// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The public core API: argument checks, errno, and the fork guard. */
#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include <safepin/safepin.h>

#include "fork.h"
#include "init.h"
#include "lifetime.h"
#include "log.h"
#include "probe.h"
#include "once.h"
#include "registry.h"
#include "vm.h"

static struct once init_once = ONCE_INIT;

static void init(void)
{
	log_init();
	vm_init();
	registry_init();
	fork_init();
}

void safepin_init(void)
{
	once_run(&init_once, init);
}

static int fail(int ret)
{
	if (ret < 0) {
		registry_count_failure();
		errno = -ret;
	}
	return ret;
}

static int check_range(const void *addr, size_t len)
{
	uintptr_t start = (uintptr_t)addr;

	if (!addr || !len || start + len < start)
		return -EINVAL;
	return 0;
}

SAFEPIN_EXPORT int safepin_pin(const void *addr, size_t len, unsigned int flags)
{
	int ret;

	once_run(&init_once, init);
	ret = check_range(addr, len);
	if (!ret && (flags & ~SAFEPIN_PIN_DEVICE_WRITES))
		ret = -EINVAL;
	if (ret)
		return fail(ret);
	fork_guard_enter();
	if (flags & SAFEPIN_PIN_DEVICE_WRITES)
		ret = registry_pin_device_faults((uintptr_t)addr, len);
	else
		ret = registry_pin((uintptr_t)addr, len);
	fork_guard_exit();
	return fail(ret);
}

SAFEPIN_EXPORT int safepin_unpin(const void *addr, size_t len)
{
	int ret;

	once_run(&init_once, init);
	ret = check_range(addr, len);
	if (ret)
		return fail(ret);
	fork_guard_enter();
	ret = registry_unpin((uintptr_t)addr, len);
	fork_guard_exit();
	return fail(ret);
}

SAFEPIN_EXPORT void safepin_fork_guard_enter(void)
{
	once_run(&init_once, init);
	fork_guard_enter();
}

SAFEPIN_EXPORT void safepin_fork_guard_exit(void)
{
	fork_guard_exit();
}

SAFEPIN_EXPORT int safepin_set_policy(enum safepin_policy policy)
{
	once_run(&init_once, init);
	switch (policy) {
	case SAFEPIN_POLICY_DONTFORK:
	case SAFEPIN_POLICY_ZERO_FILL:
		break;
	case SAFEPIN_POLICY_KERNEL_COPY:
		/* Only where the probe proved this kernel copies pinned pages
		 * into the child, for anonymous and for hugetlb memory: the
		 * policy marks nothing, hugetlb ranges included, so a kernel
		 * that copies one kind only (5.9-5.11) or that could not be
		 * tested with a huge page is refused. */
		if (!probe_copies_on_fork(false) || !probe_copies_on_fork(true))
			return fail(-EOPNOTSUPP);
		break;
	default:
		return fail(-EINVAL);
	}
	return fail(registry_set_policy(policy));
}

SAFEPIN_EXPORT enum safepin_policy safepin_get_policy(void)
{
	once_run(&init_once, init);
	return registry_policy();
}

SAFEPIN_EXPORT int safepin_set_unmark(enum safepin_unmark mode)
{
	int ret;

	once_run(&init_once, init);
	if (mode != SAFEPIN_UNMARK_IMMEDIATE && mode != SAFEPIN_UNMARK_DEFERRED &&
	    mode != SAFEPIN_UNMARK_WINDOWED)
		return fail(-EINVAL);
	fork_guard_enter();
	ret = registry_set_unmark(mode);
	fork_guard_exit();
	return fail(ret);
}

SAFEPIN_EXPORT enum safepin_unmark safepin_get_unmark(void)
{
	once_run(&init_once, init);
	return registry_unmark();
}

SAFEPIN_EXPORT int safepin_flush(void)
{
	int ret;

	once_run(&init_once, init);
	fork_guard_enter();
	ret = registry_flush();
	fork_guard_exit();
	return fail(ret);
}

SAFEPIN_EXPORT int safepin_get_stats(struct safepin_stats *stats)
{
	struct safepin_stats all = { .size = sizeof(all) };
	size_t size;

	once_run(&init_once, init);
	if (!stats || stats->size < offsetof(struct safepin_stats, live_registrations))
		return fail(-EINVAL);
	size = stats->size < sizeof(all) ? stats->size : sizeof(all);
	registry_read_stats(&all);
	all.violations = lifetime_violation_count();
	memcpy((char *)stats + sizeof(all.size), (char *)&all + sizeof(all.size),
	       size - sizeof(all.size));
	return 0;
}

SAFEPIN_EXPORT const char *safepin_version(void)
{
	return SAFEPIN_VERSION_STRING;
}
