// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The NUMA part of the public core API: argument checks, errno, fork guard. */
#include <ctype.h>
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include <safepin/safepin.h>

#include "fork.h"
#include "init.h"
#include "numa_place.h"
#include "pin_opts.h"
#include "registry.h"

int opts_fail(int ret)
{
	if (ret < 0) {
		registry_count_failure();
		errno = -ret;
	}
	return ret;
}

int opts_copy(void *dst, size_t dst_size, size_t min_size, const void *src, size_t src_size)
{
	if (src_size < min_size)
		return -EINVAL;
	for (size_t i = dst_size; i < src_size; i++)
		if (((const unsigned char *)src)[i])
			return -E2BIG;
	/* ->size stays ours: the copy is read with our layout. */
	memcpy((char *)dst + sizeof(size_t), (const char *)src + sizeof(size_t),
	       (src_size < dst_size ? src_size : dst_size) - sizeof(size_t));
	return 0;
}

int pin_placed(const void *addr, size_t len, int node, bool migrate)
{
	struct pin_placement pl = { .node = node, .migrate = migrate };
	uintptr_t start = (uintptr_t)addr;
	int ret;

	if (!addr || !len || start + len < start)
		return -EINVAL;
	if (node < SAFEPIN_NUMA_NODE_NONE || (migrate && node < 0))
		return -EINVAL;
	if (node >= 0) {
		ret = numa_check_node(node);
		if (ret)
			return ret;
	}
	fork_guard_enter();
	ret = registry_pin_placed(start, len, node >= 0 ? &pl : NULL);
	fork_guard_exit();
	if (!ret && node >= 0)
		numa_count_placed();
	return ret;
}

SAFEPIN_EXPORT int safepin_pin_opts(const void *addr, size_t len,
				    const struct safepin_pin_opts *opts)
{
	struct safepin_pin_opts o = { .size = sizeof(o), .numa_node = SAFEPIN_NUMA_NODE_NONE };
	int ret = 0;

	safepin_init();
	if (opts)
		ret = opts_copy(&o, sizeof(o), offsetof(struct safepin_pin_opts, flags) +
				sizeof(o.flags), opts, opts->size);
	if (!ret && (o.flags & ~SAFEPIN_PIN_MIGRATE))
		ret = -EINVAL;
	if (!ret)
		ret = pin_placed(addr, len, o.numa_node, o.flags & SAFEPIN_PIN_MIGRATE);
	return opts_fail(ret);
}

SAFEPIN_EXPORT int safepin_get_numa_stats(struct safepin_numa_stats *stats)
{
	struct safepin_numa_stats all = { .size = sizeof(all) };
	size_t size;

	safepin_init();
	if (!stats || stats->size < offsetof(struct safepin_numa_stats, placed_registrations))
		return opts_fail(-EINVAL);
	size = stats->size < sizeof(all) ? stats->size : sizeof(all);
	numa_read_stats(&all);
	memcpy((char *)stats + sizeof(all.size), (char *)&all + sizeof(all.size),
	       size - sizeof(all.size));
	return 0;
}

/* "[dddd:]bb:dd.f" (hex), written as sysfs spells it into @out. */
static int parse_bdf(const char *bdf, char *out, size_t size)
{
	unsigned int dom = 0, bus, dev, fn;
	int n = 0;
	size_t len;

	if (!bdf)
		return -EINVAL;
	len = strlen(bdf);
	for (size_t i = 0; i < len; i++)
		if (!isxdigit((unsigned char)bdf[i]) && bdf[i] != ':' && bdf[i] != '.')
			return -EINVAL;
	if (sscanf(bdf, "%x:%2x:%2x.%1x%n", &dom, &bus, &dev, &fn, &n) == 4 &&
	    (size_t)n == len && strchr(bdf, ':') - bdf >= 4) {
		/* domain, bus, device, function */
	} else if (dom = 0, n = 0,
		   sscanf(bdf, "%2x:%2x.%1x%n", &bus, &dev, &fn, &n) == 3 && (size_t)n == len) {
		/* bus, device, function in domain 0 */
	} else {
		return -EINVAL;
	}
	if (dev > 0x1f || fn > 7 || dom > 0xffffffu)
		return -EINVAL;
	snprintf(out, size, "/sys/bus/pci/devices/%04x:%02x:%02x.%x", dom, bus, dev, fn);
	return 0;
}

SAFEPIN_EXPORT int safepin_numa_node_of_pci(const char *bdf)
{
	char dir[96];
	int ret;

	safepin_init();
	ret = parse_bdf(bdf, dir, sizeof(dir));
	if (!ret)
		ret = numa_node_of_sysfs_dir(dir);
	if (ret < SAFEPIN_NUMA_NODE_NONE)
		return opts_fail(ret);
	return ret;
}
