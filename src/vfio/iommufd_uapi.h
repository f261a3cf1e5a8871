/* SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause */
/*
 * The part of the iommufd uapi (Linux 6.2+, include/uapi/linux/iommufd.h)
 * that libsafepin uses, for building against older kernel headers (Debian
 * bookworm ships 6.1 headers without <linux/iommufd.h>).  The layouts and
 * numbers are the kernel's stable ABI; with newer headers theirs are used.
 */
#ifndef SAFEPIN_IOMMUFD_UAPI_H
#define SAFEPIN_IOMMUFD_UAPI_H

#if defined(__has_include)
#if __has_include(<linux/iommufd.h>)
#include <linux/iommufd.h>
#define SAFEPIN_HAVE_LINUX_IOMMUFD_H 1
#endif
#endif

#ifndef SAFEPIN_HAVE_LINUX_IOMMUFD_H
#include <linux/ioctl.h>
#include <linux/types.h>

#define IOMMUFD_TYPE (';')

/* Command numbers: IOMMUFD_CMD_BASE 0x80 and the order of the kernel's enum. */
#define SAFEPIN_IOMMUFD_CMD_DESTROY	0x80
#define SAFEPIN_IOMMUFD_CMD_IOAS_ALLOC	0x81
#define SAFEPIN_IOMMUFD_CMD_IOAS_MAP	0x85
#define SAFEPIN_IOMMUFD_CMD_IOAS_UNMAP	0x86

struct iommu_destroy {
	__u32 size;
	__u32 id;
};
#define IOMMU_DESTROY _IO(IOMMUFD_TYPE, SAFEPIN_IOMMUFD_CMD_DESTROY)

struct iommu_ioas_alloc {
	__u32 size;
	__u32 flags;
	__u32 out_ioas_id;
};
#define IOMMU_IOAS_ALLOC _IO(IOMMUFD_TYPE, SAFEPIN_IOMMUFD_CMD_IOAS_ALLOC)

enum iommufd_ioas_map_flags {
	IOMMU_IOAS_MAP_FIXED_IOVA = 1 << 0,
	IOMMU_IOAS_MAP_WRITEABLE = 1 << 1,
	IOMMU_IOAS_MAP_READABLE = 1 << 2,
};

struct iommu_ioas_map {
	__u32 size;
	__u32 flags;
	__u32 ioas_id;
	__u32 __reserved;
	__aligned_u64 user_va;
	__aligned_u64 length;
	__aligned_u64 iova;
};
#define IOMMU_IOAS_MAP _IO(IOMMUFD_TYPE, SAFEPIN_IOMMUFD_CMD_IOAS_MAP)

struct iommu_ioas_unmap {
	__u32 size;
	__u32 ioas_id;
	__aligned_u64 iova;
	__aligned_u64 length;
};
#define IOMMU_IOAS_UNMAP _IO(IOMMUFD_TYPE, SAFEPIN_IOMMUFD_CMD_IOAS_UNMAP)
#endif

#endif
