// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/*
 * The VFIO type1 and iommufd wrappers: the only file of libsafepin that
 * issues VFIO or iommufd ioctls.  Every call runs inside the fork guard and
 * under one mutex held across the ioctl and the table update:
 *
 *   map:    node for the table -> mark + pre-fault (registry_pin; mark
 *           only for a WRITE mapping, whose pin write-faults the pages)
 *           -> ioctl
 *           -> remember (fd, space, IOVA, size, vaddr); an ioctl failure
 *           unmarks, and the kernel's errno is returned.
 *   unmap:  ioctl -> take the records the kernel removed -> unmark them.
 *           A failed ioctl releases nothing.
 *
 * The mutex makes "the ioctl and what it did to the table" atomic with
 * respect to other threads: otherwise a map at an IOVA another thread has
 * just unmapped could be recorded before that thread takes the records of
 * its range, and be released while mapped.  The kernel serializes maps of
 * one container (its iommu lock) anyway.
 */
#include <errno.h>
#include <linux/vfio.h>
#include <pthread.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/ioctl.h>

#include <safepin/vfio.h>

#include "arena.h"
#include "fork.h"
#include "init.h"
#include "iommufd_uapi.h"
#include "log.h"
#include "registry.h"
#include "vfio_table.h"

/* The fallback uapi definitions must match the kernel's ABI. */
_Static_assert(sizeof(struct iommu_ioas_map) == 40, "iommu_ioas_map layout");
_Static_assert(offsetof(struct iommu_ioas_map, iova) == 32, "iommu_ioas_map layout");
_Static_assert(sizeof(struct iommu_ioas_unmap) == 24, "iommu_ioas_unmap layout");
_Static_assert(offsetof(struct iommu_ioas_unmap, length) == 16, "iommu_ioas_unmap layout");

#ifndef VFIO_DMA_MAP_FLAG_VADDR
#define VFIO_DMA_MAP_FLAG_VADDR (1 << 2)
#endif
#ifndef VFIO_DMA_UNMAP_FLAG_ALL
#define VFIO_DMA_UNMAP_FLAG_ALL (1 << 1)
#endif
#ifndef VFIO_DMA_UNMAP_FLAG_VADDR
#define VFIO_DMA_UNMAP_FLAG_VADDR (1 << 2)
#endif

static struct {
	pthread_mutex_t lock;	/* taken inside the fork guard only */
	struct arena arena;
	struct vfio_table maps;
} vf = { .lock = PTHREAD_MUTEX_INITIALIZER };

static pthread_once_t vfio_once = PTHREAD_ONCE_INIT;

/* The child owns no mapping (the registry resets itself likewise). */
static void vfio_child(void)
{
	pthread_mutex_init(&vf.lock, NULL);
	vfio_table_forget(&vf.maps);
	arena_release(&vf.arena);
}

static void vfio_init_once(void)
{
	struct node_alloc alloc;

	safepin_init();
	arena_init(&vf.arena);
	alloc = arena_node_alloc(&vf.arena);
	vfio_table_init(&vf.maps, &alloc);
	fork_on_child(vfio_child);
}

static void vfio_init(void)
{
	pthread_once(&vfio_once, vfio_init_once);
}

static int fail(int ret)
{
	if (ret < 0) {
		registry_count_failure();
		errno = -ret;
	}
	return ret;
}

/* The last IOVA of [iova, iova + size), clamped at the top of the space. */
static uint64_t last_iova(uint64_t iova, uint64_t size)
{
	return iova + (size - 1) < iova ? UINT64_MAX : iova + (size - 1);
}

/* Unmark and free a list of records. vf.lock held, inside the fork guard. */
static void release_list(struct vfio_node *list)
{
	while (list) {
		struct vfio_node *next = list->next;
		int ret = registry_unpin(list->map.vaddr, (size_t)list->map.size);

		if (ret) {
			/* Stays marked: safe, but a child misses these pages. */
			registry_count_failure();
			sp_log(SP_LOG_ERROR, "cannot release %#lx+%#llx (IOVA %#llx): errno %d",
			       (unsigned long)list->map.vaddr,
			       (unsigned long long)list->map.size,
			       (unsigned long long)list->map.iova, -ret);
		}
		vfio_table_node_free(&vf.maps, list);
		list = next;
	}
}

/*
 * Mark [vaddr, vaddr + size), run @call, record the mapping on success.
 * @call returns 0 or -errno and, on success, the mapping's IOVA.
 * @device_writes: a WRITE mapping, which the kernel pins for write
 * (FOLL_WRITE), write-faulting every page itself: mark only.
 */
typedef int (*map_call)(int fd, void *arg, uint64_t *iova);

static int map_locked(int fd, uint32_t space, uint64_t vaddr, uint64_t size, bool device_writes,
		      map_call call, void *arg)
{
	struct vfio_node *n, *stale = NULL;
	struct vfio_map m = { .size = size, .vaddr = (uintptr_t)vaddr };
	int ret;

	if (vaddr > UINTPTR_MAX || size > SIZE_MAX)
		return -EINVAL;	/* what the kernel answers too */
	fork_guard_enter();
	pthread_mutex_lock(&vf.lock);
	n = vfio_table_node_new(&vf.maps);
	if (!n) {
		ret = -ENOMEM;
		goto out;
	}
	ret = device_writes ? registry_pin_device_faults((uintptr_t)vaddr, (size_t)size) :
			      registry_pin((uintptr_t)vaddr, (size_t)size);
	if (ret)
		goto out;
	ret = call(fd, arg, &m.iova);
	if (ret) {
		int unpin = registry_unpin_now((uintptr_t)vaddr, (size_t)size);

		if (unpin)
			sp_log(SP_LOG_ERROR, "cannot roll back %#llx+%#llx: errno %d",
			       (unsigned long long)vaddr, (unsigned long long)size, -unpin);
		goto out;
	}
	stale = vfio_table_insert(&vf.maps, n, fd, space, &m);
	n = NULL;
	if (stale)
		sp_log(SP_LOG_INFO, "fd %d: %zu mapping(s) recorded at IOVA %#llx+%#llx were "
		       "gone (fd closed and reused?): released", fd, vfio_list_length(stale),
		       (unsigned long long)m.iova, (unsigned long long)size);
	release_list(stale);
out:
	vfio_table_node_free(&vf.maps, n);
	pthread_mutex_unlock(&vf.lock);
	fork_guard_exit();
	return ret;
}

/*
 * Run @call (an unmap); on success release the records of (fd, space)
 * starting in [first, last], provided the kernel's count of unmapped bytes
 * (*@done after the call) accounts for them.
 */
typedef int (*unmap_call)(int fd, void *arg, uint64_t *done);

static int unmap_locked(int fd, uint32_t space, uint64_t first, uint64_t last, bool release,
			unmap_call call, void *arg)
{
	struct vfio_node *list = NULL;
	uint64_t done = 0;
	int ret;

	fork_guard_enter();
	pthread_mutex_lock(&vf.lock);
	ret = call(fd, arg, &done);
	if (!ret && release) {
		list = vfio_table_take_starting(&vf.maps, fd, space, first, last);
		if (list && vfio_list_bytes(list) > done) {
			/* Only a type1 (v1) container unmaps less than every
			 * mapping starting in the range (when the range starts
			 * inside a mapping); which ones is not knowable here:
			 * keep them all marked, the safe side. */
			sp_log(SP_LOG_ERROR, "fd %d: the kernel unmapped %#llx bytes in "
			       "IOVA %#llx-%#llx, fewer than the %#llx recorded there: "
			       "keeping them marked", fd, (unsigned long long)done,
			       (unsigned long long)first, (unsigned long long)last,
			       (unsigned long long)vfio_list_bytes(list));
			vfio_table_put_back(&vf.maps, list);
			list = NULL;
		}
		release_list(list);
	}
	pthread_mutex_unlock(&vf.lock);
	fork_guard_exit();
	return ret;
}

/* ---- VFIO type1 ------------------------------------------------------ */

static int vfio_map_call(int fd, void *arg, uint64_t *iova)
{
	const struct vfio_iommu_type1_dma_map *map = arg;

	if (ioctl(fd, VFIO_IOMMU_MAP_DMA, map))
		return -errno;
	*iova = map->iova;
	return 0;
}

static int vfio_unmap_call(int fd, void *arg, uint64_t *done)
{
	struct vfio_iommu_type1_dma_unmap *unmap = arg;

	if (ioctl(fd, VFIO_IOMMU_UNMAP_DMA, unmap))
		return -errno;
	*done = unmap->size;
	return 0;
}

SAFEPIN_EXPORT int safepin_vfio_map_dma(int container_fd,
					const struct vfio_iommu_type1_dma_map *map)
{
	if (!map)
		return fail(-EINVAL);
	vfio_init();
	/* Requests that pin nothing go to the kernel as they are: it refuses
	 * the first two; a vaddr update keeps the pages pinned before. */
	if (map->argsz < offsetof(struct vfio_iommu_type1_dma_map, size) + sizeof(map->size) ||
	    !map->size || !(map->flags & (VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE)) ||
	    (map->flags & VFIO_DMA_MAP_FLAG_VADDR))
		return fail(ioctl(container_fd, VFIO_IOMMU_MAP_DMA, map) ? -errno : 0);
	return fail(map_locked(container_fd, VFIO_TABLE_CONTAINER, map->vaddr, map->size,
			       map->flags & VFIO_DMA_MAP_FLAG_WRITE, vfio_map_call, (void *)map));
}

SAFEPIN_EXPORT int safepin_vfio_unmap_dma(int container_fd,
					  struct vfio_iommu_type1_dma_unmap *unmap)
{
	uint64_t first, last;
	bool release;

	if (!unmap)
		return fail(-EINVAL);
	vfio_init();
	/* Read before the call: the kernel writes the unmapped size back. */
	if (unmap->flags & VFIO_DMA_UNMAP_FLAG_ALL) {
		first = 0;
		last = UINT64_MAX;
	} else {
		first = unmap->iova;
		last = last_iova(unmap->iova, unmap->size);
	}
	/* A vaddr invalidation unmaps nothing and keeps the pages pinned. */
	release = !(unmap->flags & VFIO_DMA_UNMAP_FLAG_VADDR) &&
		  ((unmap->flags & VFIO_DMA_UNMAP_FLAG_ALL) || unmap->size);
	return fail(unmap_locked(container_fd, VFIO_TABLE_CONTAINER, first, last, release,
				 vfio_unmap_call, unmap));
}

/* ---- iommufd --------------------------------------------------------- */

static int iommufd_map_call(int fd, void *arg, uint64_t *iova)
{
	struct iommu_ioas_map *map = arg;

	if (ioctl(fd, IOMMU_IOAS_MAP, map))
		return -errno;
	*iova = map->iova;	/* the kernel's choice without FIXED_IOVA */
	return 0;
}

static int iommufd_unmap_call(int fd, void *arg, uint64_t *done)
{
	struct iommu_ioas_unmap *unmap = arg;

	if (ioctl(fd, IOMMU_IOAS_UNMAP, unmap))
		return -errno;
	*done = unmap->length;
	return 0;
}

SAFEPIN_EXPORT int safepin_iommufd_map(int iommufd, struct iommu_ioas_map *map)
{
	if (!map)
		return fail(-EINVAL);
	vfio_init();
	if (map->size < sizeof(*map) || !map->length ||
	    !(map->flags & (IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE)))
		return fail(ioctl(iommufd, IOMMU_IOAS_MAP, map) ? -errno : 0);
	return fail(map_locked(iommufd, map->ioas_id, map->user_va, map->length,
			       map->flags & IOMMU_IOAS_MAP_WRITEABLE, iommufd_map_call, map));
}

SAFEPIN_EXPORT int safepin_iommufd_unmap(int iommufd, struct iommu_ioas_unmap *unmap)
{
	if (!unmap)
		return fail(-EINVAL);
	vfio_init();
	return fail(unmap_locked(iommufd, unmap->ioas_id, unmap->iova,
				 last_iova(unmap->iova, unmap->length), unmap->length != 0,
				 iommufd_unmap_call, unmap));
}

SAFEPIN_EXPORT int safepin_vfio_forget_fd(int fd)
{
	struct vfio_node *list;
	size_t n;

	if (fd < 0)
		return fail(-EINVAL);
	vfio_init();
	fork_guard_enter();
	pthread_mutex_lock(&vf.lock);
	list = vfio_table_take_fd(&vf.maps, fd);
	n = vfio_list_length(list);
	release_list(list);
	pthread_mutex_unlock(&vf.lock);
	fork_guard_exit();
	return n > INT32_MAX ? INT32_MAX : (int)n;
}
