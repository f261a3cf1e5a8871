#!/bin/sh
# ibv_devices lists the soft-RoCE device; its port is active with an IPv4 GID.
# (Few processes: each exec costs ~50 ms in a TCG guest.)
set -eu
devs=$(ibv_devices)
echo "$devs"
case $devs in *" $SAFEPIN_RXE_DEV"[[:space:]]*) ;; *) echo "$SAFEPIN_RXE_DEV not listed"; exit 1 ;; esac
info=$(ibv_devinfo -v -d "$SAFEPIN_RXE_DEV")
echo "$info"
case $info in *PORT_ACTIVE*) ;; *) echo "port not active"; exit 1 ;; esac
case $info in *"::ffff:$SAFEPIN_RXE_IP"*) ;; *) echo "no GID for $SAFEPIN_RXE_IP"; exit 1 ;; esac
