#!/bin/sh
# --numa: two memory nodes with one CPU each.
set -eu
cat /sys/devices/system/node/online
[ "$(cat /sys/devices/system/node/online)" = 0-1 ] || { echo "expected nodes 0-1"; exit 1; }
for n in 0 1; do
    echo "node$n cpus $(cat /sys/devices/system/node/node$n/cpulist)"
    [ "$(cat /sys/devices/system/node/node$n/cpulist)" = $n ] || { echo "node$n: wrong cpus"; exit 1; }
done
