/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * libsafepin for VFIO and iommufd user-space drivers.
 *
 * A user-space driver (DPDK, SPDK, a VMM, a research driver) maps its DMA
 * buffers into the IOMMU with VFIO_IOMMU_MAP_DMA or IOMMU_IOAS_MAP.  The
 * kernel pins the pages behind the buffer and programs their physical
 * addresses into the IOMMU.  After fork() those pages are copy-on-write in
 * the parent: the parent's next CPU write may move it to a new page while
 * the device keeps reading and writing the old one.  Debian's 5.10 kernel,
 * measured: fork, then a READ-only map of the buffer, then the parent
 * writes, and the device reads 0 of 4095 bytes of what the parent wrote.
 *
 * These wrappers take the same arguments as the ioctls (the kernel's own
 * structs from <linux/vfio.h> and <linux/iommufd.h>) and do, around each:
 *
 *   map:    hold off fork() -> mark the buffer (MADV_DONTFORK by default,
 *           see safepin_set_policy()) and fault every page in with write
 *           semantics (for a WRITE map the kernel's own write pin does
 *           that: marked only) -> the ioctl -> remember (fd, IOVA, vaddr,
 *           size);
 *           when the ioctl fails, the marking is undone and the kernel's
 *           errno returned.
 *   unmap:  hold off fork() -> the ioctl -> release the marking of exactly
 *           the mappings the kernel removed.  A failed unmap releases
 *           nothing.
 *
 * So a child forked at any time never shares a mapped page with the parent,
 * and fork() stays O(1) however much memory is mapped.
 *
 * Read-only maps: VFIO_DMA_MAP_FLAG_READ without VFIO_DMA_MAP_FLAG_WRITE
 * (or IOMMU_IOAS_MAP_READABLE without IOMMU_IOAS_MAP_WRITEABLE).  The
 * kernel pins such pages for read only, and kernels before ~6.2 do not
 * break copy-on-write for that: the pin can land on a page still shared
 * with a forked child (or on the shared zero page), and the device then
 * reads data the parent no longer sees.  The wrappers therefore fault every
 * page of a writable buffer in with WRITE semantics before the map, even
 * for a read-only map; data is never changed (MADV_POPULATE_WRITE, or an
 * atomic add of 0 per page on kernels without it).  Buffers in memory the
 * process cannot write (PROT_READ private mappings) keep the kernel's
 * behaviour: nothing can break copy-on-write there.
 *
 * Which mappings are released by an unmap:
 *  - VFIO type1v2 (VFIO_TYPE1v2_IOMMU, what every current user sets): an
 *    unmap must cover whole mappings and may cover several; all of them are
 *    released.  VFIO_DMA_UNMAP_FLAG_ALL (Linux 5.13+, where the kernel has
 *    it; older kernels refuse it with EINVAL, which is returned) releases
 *    every mapping of the container.
 *  - VFIO type1 (v1, VFIO_TYPE1_IOMMU): the kernel removes whole mappings
 *    that start inside the range.  The library releases those when the
 *    kernel's reported size accounts for them; otherwise (an unmap that
 *    starts inside a mapping) it keeps them marked, which is safe.
 *  - VFIO_DMA_UNMAP_FLAG_VADDR and VFIO_DMA_MAP_FLAG_VADDR (live update)
 *    change no pin: they are passed through and the tracking is unchanged.
 *  - iommufd: an unmap covers whole mappings (the kernel refuses to split
 *    one); iova 0 with length UINT64_MAX unmaps everything in the IOAS.
 *    Mappings made with IOMMU_IOAS_COPY are not tracked (they share the
 *    pages of a tracked IOMMU_IOAS_MAP): unmap the copies first.
 *
 * Mappings are remembered per file descriptor number.  When a container or
 * iommufd is closed the kernel drops its mappings: call
 * safepin_vfio_forget_fd() after close() so that the library releases them
 * too (and does not confuse them with a later file that gets the same
 * number; a map that succeeds over such a stale record also replaces it).
 *
 * A forked child inherits the descriptors but no mapping of the library:
 * its records start empty, like every registration of libsafepin.
 *
 * Maps and unmaps through these wrappers are serialized within a process
 * (the kernel serializes them per container anyway).  Do not mix them with
 * raw ioctls on the same IOVA ranges.
 *
 * Error convention: 0 on success, else a negative errno value, and errno is
 * set to the positive value.  Errors of the ioctl are the kernel's own
 * (EINVAL for unaligned vaddr/iova/size, EEXIST for an IOVA already mapped,
 * EBADF for a closed descriptor, ENOTTY for a descriptor of the wrong kind,
 * ...).  Before the ioctl the library may fail with:
 *   -EFAULT  part of the buffer is not mapped or PROT_NONE (the kernel
 *            could not pin it either);
 *   -ENOMEM  out of memory, or vm.max_map_count reached while marking;
 *   -EINVAL  a NULL struct pointer.
 * A failed call leaves no marking behind and the kernel's mappings as the
 * kernel left them.
 */
#ifndef SAFEPIN_VFIO_H
#define SAFEPIN_VFIO_H

#include <safepin/safepin.h>

#ifdef __cplusplus
extern "C" {
#endif

/* From <linux/vfio.h> (every kernel with VFIO). */
struct vfio_iommu_type1_dma_map;
struct vfio_iommu_type1_dma_unmap;
/* From <linux/iommufd.h> (Linux 6.2+ headers). */
struct iommu_ioas_map;
struct iommu_ioas_unmap;

/**
 * safepin_vfio_map_dma() - VFIO_IOMMU_MAP_DMA on a safe buffer.
 * @container_fd: the VFIO container (/dev/vfio/vfio with an IOMMU set), or
 *	an iommufd used through its VFIO compatibility interface.
 * @map: as for ioctl(container_fd, VFIO_IOMMU_MAP_DMA, map).
 *
 * Marks and pre-faults [map->vaddr, map->vaddr + map->size) (see above),
 * then maps it.  Requests that pin nothing are passed to the kernel
 * unchanged: size 0, no READ/WRITE flag (the kernel refuses both), and
 * VFIO_DMA_MAP_FLAG_VADDR updates.
 *
 * Return: 0, or a negative errno (the kernel's when the ioctl failed).
 */
SAFEPIN_EXPORT int safepin_vfio_map_dma(int container_fd,
					const struct vfio_iommu_type1_dma_map *map);

/**
 * safepin_vfio_unmap_dma() - VFIO_IOMMU_UNMAP_DMA, then release.
 * @container_fd: as for safepin_vfio_map_dma().
 * @unmap: as for ioctl(container_fd, VFIO_IOMMU_UNMAP_DMA, unmap); the
 *	kernel writes the number of bytes it unmapped into @unmap->size (and a
 *	dirty bitmap when asked to), as with the plain ioctl.
 *
 * After a successful unmap, releases every mapping made through
 * safepin_vfio_map_dma() on this container that the kernel removed: one,
 * several, or all of them with VFIO_DMA_UNMAP_FLAG_ALL.  An unmap of a
 * range where nothing is mapped succeeds with @unmap->size 0 (type1v2) and
 * releases nothing.
 *
 * Return: 0, or the kernel's negative errno (nothing released then).
 */
SAFEPIN_EXPORT int safepin_vfio_unmap_dma(int container_fd,
					  struct vfio_iommu_type1_dma_unmap *unmap);

/**
 * safepin_iommufd_map() - IOMMU_IOAS_MAP on a safe buffer.
 * @iommufd: an open /dev/iommu.
 * @map: as for ioctl(iommufd, IOMMU_IOAS_MAP, map).  With
 *	IOMMU_IOAS_MAP_FIXED_IOVA the mapping goes to @map->iova; without it
 *	the kernel chooses the IOVA and writes it into @map->iova.
 *
 * Return: 0, or a negative errno (the kernel's when the ioctl failed).
 */
SAFEPIN_EXPORT int safepin_iommufd_map(int iommufd, struct iommu_ioas_map *map);

/**
 * safepin_iommufd_unmap() - IOMMU_IOAS_UNMAP, then release.
 * @iommufd: as for safepin_iommufd_map().
 * @unmap: as for ioctl(iommufd, IOMMU_IOAS_UNMAP, unmap); the kernel
 *	writes the number of bytes unmapped into @unmap->length.
 *
 * Releases every mapping of @unmap->ioas_id made through
 * safepin_iommufd_map() inside the range.
 *
 * Return: 0, or the kernel's negative errno (ENOENT: nothing mapped there,
 * or the range cuts a mapping; nothing released then).
 */
SAFEPIN_EXPORT int safepin_iommufd_unmap(int iommufd, struct iommu_ioas_unmap *unmap);

/**
 * safepin_vfio_forget_fd() - release every mapping made through @fd.
 * @fd: a container or iommufd the application has closed (with its groups
 *	or devices), so that the kernel has dropped all of its mappings.
 *
 * Return: the number of mappings released (0 when none), or -EINVAL for a
 * negative @fd.
 */
SAFEPIN_EXPORT int safepin_vfio_forget_fd(int fd);

#ifdef __cplusplus
}
#endif

#endif /* SAFEPIN_VFIO_H */
