// SPDX-License-Identifier: GPL-2.0-only OR BSD-2-Clause
/* The VFIO/iommufd wrappers on the host kernel, which has neither VFIO nor
 * iommufd: every ioctl fails, so every call must return the kernel's errno
 * (ENOTTY on a descriptor of the wrong kind, EBADF on a closed one) and
 * leave nothing marked: the rollback path of each wrapper, on any machine.
 * The success paths run with a real device in tests/guest/vfio. */
#include <errno.h>
#include <fcntl.h>
#include <linux/vfio.h>
#include <sys/mman.h>
#include <unistd.h>

#include <safepin/vfio.h>

#include "helpers.h"
#include "iommufd_uapi.h"

static unsigned char *buf;
static int devnull;

static int setup(void **state)
{
	(void)state;
	buf = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	devnull = open("/dev/null", O_RDWR | O_CLOEXEC);
	return buf == MAP_FAILED || devnull < 0;
}

static int teardown(void **state)
{
	(void)state;
	munmap(buf, 4 * PAGE);
	close(devnull);
	return 0;
}

static void assert_untouched(void)
{
	struct safepin_stats s = stats_now();
	char marks[8];

	fork_marks(buf, 4, marks);
	assert_string_equal(marks, "....");
	assert_int_equal(s.live_registrations, 0);
	assert_int_equal(s.pages_marked, 0);
}

#define ASSERT_ERR(call, err)                           \
	do {                                            \
		errno = 0;                              \
		assert_int_equal((call), -(err));       \
		assert_int_equal(errno, (err));         \
		assert_untouched();                     \
	} while (0)

static void test_vfio_wrong_fd(void **state)
{
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof(m), .flags = VFIO_DMA_MAP_FLAG_READ | VFIO_DMA_MAP_FLAG_WRITE,
		.vaddr = (uintptr_t)buf, .iova = 0x100000, .size = 4 * PAGE,
	};
	struct vfio_iommu_type1_dma_unmap u = { .argsz = sizeof(u), .iova = 0x100000, .size = PAGE };
	int closed = dup(devnull);

	(void)state;
	close(closed);
	ASSERT_ERR(safepin_vfio_map_dma(devnull, &m), ENOTTY);
	ASSERT_ERR(safepin_vfio_map_dma(closed, &m), EBADF);
	m.flags = VFIO_DMA_MAP_FLAG_READ;	/* read-only: pre-faulted, then rolled back */
	ASSERT_ERR(safepin_vfio_map_dma(devnull, &m), ENOTTY);
	m.size = 0;				/* passed through as it is */
	ASSERT_ERR(safepin_vfio_map_dma(devnull, &m), ENOTTY);
	ASSERT_ERR(safepin_vfio_unmap_dma(devnull, &u), ENOTTY);
	u.flags = VFIO_DMA_UNMAP_FLAG_ALL;
	u.iova = u.size = 0;
	ASSERT_ERR(safepin_vfio_unmap_dma(closed, &u), EBADF);
	ASSERT_ERR(safepin_vfio_map_dma(devnull, NULL), EINVAL);
	ASSERT_ERR(safepin_vfio_unmap_dma(devnull, NULL), EINVAL);
}

static void test_iommufd_wrong_fd(void **state)
{
	struct iommu_ioas_map m = {
		.size = sizeof(m), .flags = IOMMU_IOAS_MAP_READABLE | IOMMU_IOAS_MAP_WRITEABLE,
		.ioas_id = 1, .user_va = (uintptr_t)buf, .length = 4 * PAGE,
	};
	struct iommu_ioas_unmap u = { .size = sizeof(u), .ioas_id = 1, .length = UINT64_MAX };

	(void)state;
	ASSERT_ERR(safepin_iommufd_map(devnull, &m), ENOTTY);
	m.flags |= IOMMU_IOAS_MAP_FIXED_IOVA;
	m.iova = 0x100000;
	ASSERT_ERR(safepin_iommufd_map(devnull, &m), ENOTTY);
	ASSERT_ERR(safepin_iommufd_unmap(devnull, &u), ENOTTY);
	ASSERT_ERR(safepin_iommufd_map(devnull, NULL), EINVAL);
	ASSERT_ERR(safepin_iommufd_unmap(devnull, NULL), EINVAL);
}

/* An unmapped buffer: the library's own EFAULT before any ioctl. */
static void test_unmapped_buffer(void **state)
{
	void *hole = mmap(NULL, PAGE, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	struct vfio_iommu_type1_dma_map m = {
		.argsz = sizeof(m), .flags = VFIO_DMA_MAP_FLAG_READ,
		.vaddr = (uintptr_t)hole, .iova = 0x100000, .size = PAGE,
	};

	(void)state;
	assert_true(hole != MAP_FAILED);
	ASSERT_ERR(safepin_vfio_map_dma(devnull, &m), EFAULT);	/* PROT_NONE */
	munmap(hole, PAGE);
}

static void test_forget_fd(void **state)
{
	(void)state;
	assert_int_equal(safepin_vfio_forget_fd(-1), -EINVAL);
	assert_int_equal(safepin_vfio_forget_fd(devnull), 0);
	assert_untouched();
}

int main(void)
{
	const struct CMUnitTest tests[] = {
		cmocka_unit_test(test_vfio_wrong_fd),
		cmocka_unit_test(test_iommufd_wrong_fd),
		cmocka_unit_test(test_unmapped_buffer),
		cmocka_unit_test(test_forget_fd),
	};

	return cmocka_run_group_tests(tests, setup, teardown);
}
