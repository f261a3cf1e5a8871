#!/bin/sh
# ibv_devices lists the soft-RoCE device and it has an IPv4 GID.
set -eu
ibv_devices
ibv_devices | grep -qw "$SAFEPIN_RXE_DEV" || { echo "$SAFEPIN_RXE_DEV not listed"; exit 1; }
rdma link show
ibv_devinfo -v -d "$SAFEPIN_RXE_DEV" | grep -E 'state|GID'
ibv_devinfo -d "$SAFEPIN_RXE_DEV" | grep -q PORT_ACTIVE || { echo "port not active"; exit 1; }
ibv_devinfo -v -d "$SAFEPIN_RXE_DEV" | grep -q "::ffff:$SAFEPIN_RXE_IP" ||
    { echo "no GID for $SAFEPIN_RXE_IP"; exit 1; }
