// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * vfio_edu_demo: a minimal VFIO user-space driver for QEMU's "edu" PCI
 * device, with fork-safe DMA buffers from libsafepin.
 *
 *   vfio_edu_demo [--raw] [BDF]
 *
 * BDF defaults to $SAFEPIN_EDU_BDF (e.g. 0000:00:04.0).  The device must be
 * bound to vfio-pci and its /dev/vfio/<group> accessible; QEMU needs
 * "-device intel-iommu,caching-mode=on -device edu" and the guest kernel
 * "intel_iommu=on".  --raw uses the plain ioctls instead of libsafepin's
 * wrappers, to show what goes wrong without them.
 *
 * What it does, step by step (each step is one function below):
 *   1. open the VFIO container, the device's IOMMU group and the device;
 *   2. enable the device (PCI memory decoding, bus mastering) and map its
 *      registers (BAR0);
 *   3. fork() a child: from now on the process's private pages are
 *      copy-on-write, shared with the child until one of them writes;
 *   4. map a buffer READ-only for the device (VFIO_IOMMU_MAP_DMA) with
 *      safepin_vfio_map_dma(), and a second one read-write;
 *   5. write new data into the first buffer, let the device copy it (DMA)
 *      into its internal memory and back out into the second buffer;
 *   6. unmap with safepin_vfio_unmap_dma() and close.
 *
 * Step 5 is where fork() hurts.  The kernel pins a read-only mapping for
 * reading only; older kernels (Debian's 5.10, for one) then leave the page
 * shared with the child.  The parent's write moves the parent to a fresh
 * copy, and the device keeps reading the old page: with --raw on 5.10 the
 * device reads 0 of 4095 bytes of the new data.  libsafepin faults the
 * buffer in with write semantics before the map, so the device pins the
 * parent's own page, and keeps the page out of any later child
 * (MADV_DONTFORK), so that the parent never has to copy it again.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <safepin/vfio.h>

#define PAGE 4096

/* The edu device (QEMU docs/specs/edu.rst): registers in BAR0 and a
 * 4 KiB buffer inside the device at device address 0x40000. */
#define EDU_DMA_SRC 0x80
#define EDU_DMA_DST 0x88
#define EDU_DMA_COUNT 0x90
#define EDU_DMA_CMD 0x98	/* bit 0: start/busy, bit 1: device -> RAM */
#define EDU_BUFFER 0x40000
/* At most 4095 bytes per DMA: QEMU 7.2 aborts on a DMA that touches the
 * buffer's last byte.  IOVAs stay below the device's 28-bit DMA mask. */
#define DMA_BYTES 4095
#define IOVA_SRC 0x100000
#define IOVA_DST 0x200000

static bool raw;	/* --raw: plain ioctls, no libsafepin */

static _Noreturn void die(const char *what)
{
	fprintf(stderr, "vfio_edu_demo: %s: %s\n", what, strerror(errno));
	exit(1);
}

/* Step 1: container, group, device. */
struct dev {
	int container, group, device;
	volatile uint8_t *regs;
	size_t regs_size;
};

static void open_device(struct dev *d, const char *bdf)
{
	char link[256], target[256], path[64];
	struct vfio_group_status status = { .argsz = sizeof(status) };
	ssize_t n;

	/* The IOMMU group is the last component of the iommu_group link. */
	snprintf(link, sizeof(link), "/sys/bus/pci/devices/%s/iommu_group", bdf);
	n = readlink(link, target, sizeof(target) - 1);
	if (n < 0)
		die(link);
	target[n] = 0;
	snprintf(path, sizeof(path), "/dev/vfio/%s", strrchr(target, '/') + 1);

	d->container = open("/dev/vfio/vfio", O_RDWR);
	if (d->container < 0)
		die("/dev/vfio/vfio");
	if (ioctl(d->container, VFIO_GET_API_VERSION) != VFIO_API_VERSION ||
	    ioctl(d->container, VFIO_CHECK_EXTENSION, VFIO_TYPE1v2_IOMMU) != 1)
		die("VFIO type1v2 IOMMU not supported");

	d->group = open(path, O_RDWR);
	if (d->group < 0)
		die(path);
	if (ioctl(d->group, VFIO_GROUP_GET_STATUS, &status) ||
	    !(status.flags & VFIO_GROUP_FLAGS_VIABLE))
		die("group not viable (every device of the group must be bound to vfio-pci)");
	if (ioctl(d->group, VFIO_GROUP_SET_CONTAINER, &d->container))
		die("VFIO_GROUP_SET_CONTAINER");
	if (ioctl(d->container, VFIO_SET_IOMMU, VFIO_TYPE1v2_IOMMU))
		die("VFIO_SET_IOMMU");

	d->device = ioctl(d->group, VFIO_GROUP_GET_DEVICE_FD, bdf);
	if (d->device < 0)
		die("VFIO_GROUP_GET_DEVICE_FD");
}

/* Step 2: PCI command register (memory decoding + bus mastering), BAR0. */
static void enable_device(struct dev *d)
{
	struct vfio_region_info cfg = { .argsz = sizeof(cfg), .index = VFIO_PCI_CONFIG_REGION_INDEX };
	struct vfio_region_info bar = { .argsz = sizeof(bar), .index = VFIO_PCI_BAR0_REGION_INDEX };
	uint16_t cmd;
	void *p;

	if (ioctl(d->device, VFIO_DEVICE_GET_REGION_INFO, &cfg) ||
	    pread(d->device, &cmd, sizeof(cmd), (off_t)cfg.offset + 4) != sizeof(cmd))
		die("read PCI command register");
	cmd |= 0x2 | 0x4;	/* memory space, bus master: else the DMA goes nowhere */
	if (pwrite(d->device, &cmd, sizeof(cmd), (off_t)cfg.offset + 4) != sizeof(cmd))
		die("write PCI command register");

	if (ioctl(d->device, VFIO_DEVICE_GET_REGION_INFO, &bar))
		die("BAR0 region info");
	p = mmap(NULL, bar.size, PROT_READ | PROT_WRITE, MAP_SHARED, d->device, (off_t)bar.offset);
	if (p == MAP_FAILED)
		die("mmap BAR0");
	d->regs = p;
	d->regs_size = bar.size;
}

/* Step 4: map a buffer for the device. */
static void map_buffer(struct dev *d, void *buf, uint64_t iova, bool device_writes)
{
	struct vfio_iommu_type1_dma_map map = {
		.argsz = sizeof(map),
		.flags = VFIO_DMA_MAP_FLAG_READ | (device_writes ? VFIO_DMA_MAP_FLAG_WRITE : 0),
		.vaddr = (uintptr_t)buf,
		.iova = iova,
		.size = PAGE,
	};

	if (raw ? ioctl(d->container, VFIO_IOMMU_MAP_DMA, &map)
		: safepin_vfio_map_dma(d->container, &map))
		die("VFIO_IOMMU_MAP_DMA");
}

/* Step 6: unmap it; libsafepin releases the buffer after the kernel did. */
static void unmap_buffer(struct dev *d, uint64_t iova)
{
	struct vfio_iommu_type1_dma_unmap unmap = {
		.argsz = sizeof(unmap), .iova = iova, .size = PAGE,
	};

	if (raw ? ioctl(d->container, VFIO_IOMMU_UNMAP_DMA, &unmap)
		: safepin_vfio_unmap_dma(d->container, &unmap))
		die("VFIO_IOMMU_UNMAP_DMA");
}

/* Step 5: one DMA between RAM (an IOVA) and the device's buffer. */
static void dma(struct dev *d, uint64_t iova, bool to_ram)
{
	volatile uint64_t *src = (volatile uint64_t *)(d->regs + EDU_DMA_SRC);
	volatile uint64_t *dst = (volatile uint64_t *)(d->regs + EDU_DMA_DST);
	volatile uint64_t *count = (volatile uint64_t *)(d->regs + EDU_DMA_COUNT);
	volatile uint32_t *cmd = (volatile uint32_t *)(d->regs + EDU_DMA_CMD);
	struct timespec tick = { 0, 10 * 1000 * 1000 };

	*src = to_ram ? EDU_BUFFER : iova;
	*dst = to_ram ? iova : EDU_BUFFER;
	*count = DMA_BYTES;
	*cmd = 1u | (to_ram ? 2u : 0u);
	for (int i = 0; *cmd & 1; i++) {	/* the device clears bit 0 when done */
		if (i == 500) {
			fprintf(stderr, "vfio_edu_demo: DMA timed out\n");
			exit(1);
		}
		nanosleep(&tick, NULL);
	}
}

int main(int argc, char **argv)
{
	const char *bdf = getenv("SAFEPIN_EDU_BDF");
	struct dev d;
	unsigned char *src, *dst;
	int pipefd[2], status, good = 0;
	pid_t child;
	char c;

	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--raw"))
			raw = true;
		else
			bdf = argv[i];
	}
	if (!bdf) {
		fprintf(stderr, "usage: %s [--raw] BDF   (or set SAFEPIN_EDU_BDF)\n", argv[0]);
		return 2;
	}
	printf("edu at %s, buffers mapped with %s\n", bdf,
	       raw ? "plain VFIO ioctls" : "libsafepin (safepin_vfio_map_dma)");

	open_device(&d, bdf);
	enable_device(&d);

	/* Two private buffers; src holds old data before the fork. */
	src = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	dst = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (src == MAP_FAILED || dst == MAP_FAILED)
		die("mmap");
	memset(src, 'o', PAGE);

	/* Step 3: a child that lives for a while (a helper process, a
	 * system() call, ...). It shares src copy-on-write with us. */
	if (pipe(pipefd))
		die("pipe");
	child = fork();
	if (child < 0)
		die("fork");
	if (child == 0) {
		close(pipefd[1]);
		while (read(pipefd[0], &c, 1) < 0 && errno == EINTR)
			;	/* wait until the parent is done */
		_exit(0);
	}
	close(pipefd[0]);

	/* Step 4: the device only reads src, and writes dst. */
	map_buffer(&d, src, IOVA_SRC, false);
	map_buffer(&d, dst, IOVA_DST, true);

	/* Step 5: new data in src; the device copies src -> device -> dst. */
	memset(src, 'N', PAGE);
	dma(&d, IOVA_SRC, false);
	dma(&d, IOVA_DST, true);
	for (int i = 0; i < DMA_BYTES; i++)
		good += dst[i] == 'N';
	printf("the device read %d of %d bytes of the new data%s\n", good, DMA_BYTES,
	       good == DMA_BYTES ? "" : ": it read a stale page the parent no longer maps");

	/* Step 6. */
	close(pipefd[1]);
	waitpid(child, &status, 0);
	unmap_buffer(&d, IOVA_SRC);
	unmap_buffer(&d, IOVA_DST);
	munmap((void *)d.regs, d.regs_size);
	close(d.device);
	close(d.group);
	close(d.container);
	return good == DMA_BYTES ? 0 : 1;
}
