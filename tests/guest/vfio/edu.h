/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * QEMU's edu PCI device (docs/specs/edu.rst) driven from user space through
 * VFIO: a type1v2 container, the device's group and fd, PCI command bits
 * (memory decoding, bus mastering) set through the config region, BAR0
 * mmap()ed, and the DMA engine (one transfer at a time, ~100 ms each).
 */
#ifndef SAFEPIN_TEST_EDU_H
#define SAFEPIN_TEST_EDU_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The device's internal DMA buffer, and what may be moved at once: a
 * transfer touching the buffer's last byte aborts QEMU 7.2. */
#define EDU_BUF_ADDR 0x40000u
#define EDU_DMA_MAX 4095u
/* IOVAs must stay below the device's 28-bit DMA mask. */
#define EDU_IOVA_LIMIT 0x10000000ull

struct edu {
	int container, group, device;
	volatile uint8_t *bar0;
	size_t bar0_size;
};

/* Open the edu device named by SAFEPIN_EDU_BDF / SAFEPIN_VFIO_GROUP.
 * Return 0, or -1 with a message on stderr. */
int edu_open(struct edu *e);
void edu_close(struct edu *e);
/* One DMA of @count bytes between RAM (@iova) and the device's buffer;
 * @to_ram: device -> RAM, else RAM -> device. Waits for completion.
 * Return 0, or -1 (timeout) with a message. */
int edu_dma(struct edu *e, uint64_t iova, uint32_t count, bool to_ram);

#endif
