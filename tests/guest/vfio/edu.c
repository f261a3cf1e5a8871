// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "edu.h"

#define EDU_REG_IDENT 0x00
#define EDU_REG_DMA_SRC 0x80
#define EDU_REG_DMA_DST 0x88
#define EDU_REG_DMA_COUNT 0x90
#define EDU_REG_DMA_CMD 0x98
#define EDU_DMA_RUN 0x1
#define EDU_DMA_TO_RAM 0x2

static int err(const char *what)
{
	fprintf(stderr, "edu: %s: %s\n", what, strerror(errno));
	return -1;
}

static uint32_t rd32(struct edu *e, size_t off)
{
	return *(volatile uint32_t *)(e->bar0 + off);
}

static void wr64(struct edu *e, size_t off, uint64_t v)
{
	*(volatile uint64_t *)(e->bar0 + off) = v;
}

int edu_open(struct edu *e)
{
	const char *bdf = getenv("SAFEPIN_EDU_BDF"), *grp = getenv("SAFEPIN_VFIO_GROUP");
	struct vfio_group_status status = { .argsz = sizeof(status) };
	struct vfio_region_info cfg = { .argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	struct vfio_region_info bar = { .argsz = sizeof(bar), .index = VFIO_PCI_BAR0_REGION_INDEX };
	char path[64];
	uint16_t cmd;
	void *p;

	memset(e, 0, sizeof(*e));
	e->container = e->group = e->device = -1;
	if (!bdf || !grp) {
		fprintf(stderr, "edu: SAFEPIN_EDU_BDF/SAFEPIN_VFIO_GROUP not set (guest without --edu?)\n");
		return -1;
	}
	e->container = open("/dev/vfio/vfio", O_RDWR | O_CLOEXEC);
	if (e->container < 0)
		return err("open /dev/vfio/vfio");
	if (ioctl(e->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION ||
	    ioctl(e->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) != 1)
		return err("no VFIO type1v2");
	snprintf(path, sizeof(path), "/dev/vfio/%s", grp);
	e->group = open(path, O_RDWR | O_CLOEXEC);
	if (e->group < 0)
		return err(path);
	if (ioctl(e->group, VFIO_GROUP_GET_STATUS, &status) ||
	    !(status.flags & VFIO_GROUP_FLAGS_VIABLE))
		return err("group not viable");
	if (ioctl(e->group, VFIO_GROUP_SET_CONTAINER, &e->container))
		return err("VFIO_GROUP_SET_CONTAINER");
	if (ioctl(e->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		return err("VFIO_SET_IOMMU");
	e->device = ioctl(e->group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (e->device < 0)
		return err("VFIO_GROUP_GET_DEVICE_FD");
	/* Memory decoding and bus mastering, or the DMA goes nowhere. */
	if (ioctl(e->device, VFIO_DEVICE_GET_REGION_INFO, &cfg) ||
	    pread(e->device, &cmd, 2, (off_t)cfg.offset + 4) != 2)
		return err("PCI config read");
	cmd |= 0x6;
	if (pwrite(e->device, &cmd, 2, (off_t)cfg.offset + 4) != 2)
		return err("PCI config write");
	if (ioctl(e->device, VFIO_DEVICE_GET_REGION_INFO, &bar) ||
	    !(bar.flags & VFIO_REGION_INFO_FLAG_MMAP))
		return err("BAR0 info");
	p = mmap(NULL, bar.size, PROT_READ | PROT_WRITE, MAP_SHARED, e->device, (off_t)bar.offset);
	if (p == MAP_FAILED)
		return err("mmap BAR0");
	e->bar0 = p;
	e->bar0_size = bar.size;
	if ((rd32(e, EDU_REG_IDENT) & 0xff) != 0xed) {
		fprintf(stderr, "edu: identification %#x is not edu's\n", rd32(e, EDU_REG_IDENT));
		return -1;
	}
	return 0;
}

void edu_close(struct edu *e)
{
	if (e->bar0)
		munmap((void *)e->bar0, e->bar0_size);
	if (e->device >= 0)
		close(e->device);
	if (e->group >= 0)
		close(e->group);
	if (e->container >= 0)
		close(e->container);
	e->bar0 = NULL;
	e->container = e->group = e->device = -1;
}

int edu_dma(struct edu *e, uint64_t iova, uint32_t count, bool to_ram)
{
	struct timespec tick = { 0, 5 * 1000 * 1000 };

	if (to_ram) {
		wr64(e, EDU_REG_DMA_SRC, EDU_BUF_ADDR);
		wr64(e, EDU_REG_DMA_DST, iova);
	} else {
		wr64(e, EDU_REG_DMA_SRC, iova);
		wr64(e, EDU_REG_DMA_DST, EDU_BUF_ADDR);
	}
	wr64(e, EDU_REG_DMA_COUNT, count);
	wr64(e, EDU_REG_DMA_CMD, EDU_DMA_RUN | (to_ram ? EDU_DMA_TO_RAM : 0));
	for (int i = 0; i < 2000; i++) {	/* 10 s */
		if (!(rd32(e, EDU_REG_DMA_CMD) & EDU_DMA_RUN))
			return 0;
		nanosleep(&tick, NULL);
	}
	fprintf(stderr, "edu: DMA %s IOVA %#llx did not complete\n", to_ram ? "to" : "from",
		(unsigned long long)iova);
	return -1;
}
