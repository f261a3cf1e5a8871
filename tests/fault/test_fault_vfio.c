// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The VFIO type1 and iommufd wrappers under fault injection (fault.h).
 * On one descriptor (/dev/null, opened here) it
 * plays a container / iommufd that maps and unmaps, so the success paths
 * run on the host, and each VFIO_IOMMU_MAP_DMA / UNMAP_DMA / IOMMU_IOAS_MAP
 * / IOMMU_IOAS_UNMAP is a failure point next to every call of the engine.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <safepin/vfio.h>

#include "fault.h"
#include "iommufd_uapi.h"

static int fake_fd = -1;

/* The fake IOMMU: mappings by IOVA. */
static struct { uint64_t iova, size; bool used; } maps[16];

static int fake_map(uint64_t *iova, uint64_t size, bool fixed)
{
	int i, free_i = -1;

	if (!fixed)
		*iova = 0x100000 * (uint64_t)(1 + (uint64_t)rand() % 64);
	for (i = 0; i < 16; i++) {
		if (maps[i].used && *iova < maps[i].iova + maps[i].size &&
		    maps[i].iova < *iova + size)
			return EEXIST;
		if (!maps[i].used && free_i < 0)
			free_i = i;
	}
	if (free_i < 0)
		return ENOSPC;
	maps[free_i].iova = *iova;
	maps[free_i].size = size;
	maps[free_i].used = true;
	return 0;
}

static uint64_t fake_unmap(uint64_t iova, uint64_t size)
{
	uint64_t done = 0;

	for (int i = 0; i < 16; i++)
		if (maps[i].used && maps[i].iova >= iova && maps[i].iova - iova < size) {
			done += maps[i].size;
			maps[i].used = false;
		}
	return done;
}

/* The fake container / iommufd, behind fault.c's ioctl failure point. */
static int fake_ioctl(int fd, unsigned long req, void *arg, int *ret)
{
	int e;

	if (fd != fake_fd || fake_fd < 0)
		return 0;
	switch (req) {
	case VFIO_IOMMU_MAP_DMA: {
		struct vfio_iommu_type1_dma_map *m = arg;
		uint64_t iova = m->iova;

		e = fake_map(&iova, m->size, true);
		break;
	}
	case VFIO_IOMMU_UNMAP_DMA: {
		struct vfio_iommu_type1_dma_unmap *u = arg;

		u->size = fake_unmap(u->iova, u->size);
		e = 0;
		break;
	}
	case IOMMU_IOAS_MAP: {
		struct iommu_ioas_map *m = arg;
		uint64_t iova = m->iova;

		e = fake_map(&iova, m->length, m->flags & IOMMU_IOAS_MAP_FIXED_IOVA);
		m->iova = iova;
		break;
	}
	case IOMMU_IOAS_UNMAP: {
		struct iommu_ioas_unmap *u = arg;

		u->length = fake_unmap(u->iova, u->length);
		e = 0;
		break;
	}
	default:
		e = ENOTTY;
	}
	errno = e;
	*ret = e ? -1 : 0;
	return 1;
}

#define RW (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)

static void must(int ret, const char *what)
{
	if (ret) {
		fprintf(stderr, "setup: %s: %s\n", what, strerror(errno));
		_exit(1);
	}
}

static void nothing(void)
{
}

static int vmap(void *vaddr, uint64_t iova, uint64_t size)
{
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof(m), .flags = RW, .vaddr = (uintptr_t)vaddr, .iova = iova, .size = size,
	};

	return safepin_vfio_map_dma(fake_fd, &m) ? errno : 0;
}

static int vunmap(uint64_t iova, uint64_t size)
{
	struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u), .iova = iova, .size = size };

	return safepin_vfio_unmap_dma(fake_fd, &u) ? errno : 0;
}

static uint64_t ioas_iova;

static int imap(void)
{
	struct iommu_ioas_map m = {
		.size = sizeof(m), .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = 1, .user_va = (uintptr_t)(fault_buf + 8 * PAGE), .length = 4 * PAGE,
	};

	if (safepin_iommufd_map(fake_fd, &m))
		return errno;
	ioas_iova = m.iova;
	return 0;
}

static int iunmap(void)
{
	struct iommu_ioas_unmap u = { .size = sizeof(u), .ioas_id = 1, .iova = ioas_iova,
				      .length = 4 * PAGE };

	return safepin_iommufd_unmap(fake_fd, &u) ? errno : 0;
}

static int map_a(void)
{
	return vmap(fault_buf + PAGE, 0x1000000, 6 * PAGE);
}

static void unmap_a(void)
{
	must(vunmap(0x1000000, 6 * PAGE), "unmap A");
}

static int unmap_a_op(void)
{
	return vunmap(0x1000000, 6 * PAGE);
}

static void remap_a(void)
{
	must(map_a(), "map A");
}

static void overlapping(void)
{
	must(vmap(fault_buf, 0x2000000, 2 * PAGE), "map 0-1");
}

static void overlapping_and_a(void)
{
	overlapping();
	remap_a();
}

static void undo_imap(void)
{
	must(iunmap(), "iommufd unmap");
}

static void redo_imap(void)
{
	must(imap(), "iommufd map");
}

static void overlapping_and_i(void)
{
	overlapping();
	redo_imap();
}

static const struct scenario scenarios[] = {
	{ "vfio map, fresh", nothing, map_a, unmap_a, TOLERATE_NONE, false },
	{ "vfio map over a live mapping", overlapping, map_a, unmap_a, TOLERATE_NONE, true },
	{ "vfio unmap", overlapping_and_a, unmap_a_op, remap_a, TOLERATE_UNMARK, true },
	{ "iommufd map", overlapping, imap, undo_imap, TOLERATE_NONE, true },
	{ "iommufd unmap", overlapping_and_i, iunmap, redo_imap, TOLERATE_UNMARK, true },
};

int main(void)
{
	int fails = 0;

	setvbuf(stdout, NULL, _IOLBF, 0);
	fake_fd = open("/dev/null", O_RDWR | O_CLOEXEC);
	fault_ioctl_hook = fake_ioctl;
	fault_buf = mmap(NULL, FAULT_BUF_PAGES * PAGE, PROT_READ | PROT_WRITE,
			 MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (fake_fd < 0 || fault_buf == MAP_FAILED)
		return 1;
	overlapping();
	must(vunmap(0x2000000, 2 * PAGE), "unmap 0-1");
	for (size_t i = 0; i < sizeof(scenarios) / sizeof(scenarios[0]); i++)
		fails += fault_run(&scenarios[i]) < 0;
	fault_summary("test_fault_vfio");
	return fails ? 1 : 0;
}
