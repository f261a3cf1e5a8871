#!/bin/sh
# The edu device is bound to vfio-pci, alone in its group, usable by anyone.
set -eu
: "${SAFEPIN_EDU_BDF:?not set (guest booted without --edu?)}" "${SAFEPIN_VFIO_GROUP:?not set}"
d=/sys/bus/pci/devices/$SAFEPIN_EDU_BDF
echo "edu at $SAFEPIN_EDU_BDF, IOMMU group $SAFEPIN_VFIO_GROUP"
[ "$(cat "$d/vendor"):$(cat "$d/device")" = 0x1234:0x11e8 ] || { echo "not an edu device"; exit 1; }
drv=$(readlink "$d/driver"); drv=${drv##*/}
[ "$drv" = vfio-pci ] || { echo "bound to '$drv', not vfio-pci"; exit 1; }
[ -c "/dev/vfio/$SAFEPIN_VFIO_GROUP" ] || { echo "/dev/vfio/$SAFEPIN_VFIO_GROUP missing"; exit 1; }
ls -l /dev/vfio
[ -r "/dev/vfio/$SAFEPIN_VFIO_GROUP" ] && [ "$(stat -c %a "/dev/vfio/$SAFEPIN_VFIO_GROUP")" = 666 ] ||
    { echo "/dev/vfio/$SAFEPIN_VFIO_GROUP is not 0666"; exit 1; }
ls "$d/iommu_group/devices"
[ "$(ls "$d/iommu_group/devices")" = "$SAFEPIN_EDU_BDF" ] || { echo "edu not alone in its group"; exit 1; }
lspci -nnk -s "$SAFEPIN_EDU_BDF"
