#!/bin/sh
# --numa: two memory nodes with one CPU each, and node 2: a CPU, no memory.
set -eu
online=$(cat /sys/devices/system/node/online)
has_memory=$(cat /sys/devices/system/node/has_memory)
echo "online $online, with memory $has_memory"
[ "$online" = 0-2 ] || { echo "expected nodes 0-2 online"; exit 1; }
[ "$has_memory" = 0-1 ] || { echo "expected memory on nodes 0-1 only"; exit 1; }
for n in 0 1 2; do
    echo "node$n cpus $(cat /sys/devices/system/node/node$n/cpulist)"
    [ "$(cat /sys/devices/system/node/node$n/cpulist)" = $n ] || { echo "node$n: wrong cpus"; exit 1; }
done
