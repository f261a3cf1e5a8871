// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* safepin_numa_node_of_ibv_device(): the RDMA device's node from sysfs. */
#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include <safepin/verbs.h>

#include "init.h"
#include "numa_place.h"
#include "pin_opts.h"

SAFEPIN_EXPORT int safepin_numa_node_of_ibv_device(struct ibv_device *device)
{
	const char *name;
	char dir[256];
	int ret;

	safepin_init();
	name = device ? ibv_get_device_name(device) : NULL;
	if (!name || !*name || strchr(name, '/') || !strcmp(name, "..") || !strcmp(name, "."))
		return opts_fail(-EINVAL);
	if ((size_t)snprintf(dir, sizeof(dir), "/sys/class/infiniband/%s", name) >=
	    sizeof(dir) - sizeof("/device"))
		return opts_fail(-EINVAL);
	if (access(dir, F_OK))
		return opts_fail(-ENODEV);
	/* Soft devices (rxe on a virtual netdev, siw) have no parent device. */
	strcat(dir, "/device");
	if (access(dir, F_OK))
		return SAFEPIN_NUMA_NODE_NONE;
	ret = numa_node_of_sysfs_dir(dir);
	return ret < SAFEPIN_NUMA_NODE_NONE ? opts_fail(ret) : ret;
}
