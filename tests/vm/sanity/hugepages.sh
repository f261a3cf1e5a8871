#!/bin/sh
# 2 MiB huge pages are reserved and hugetlbfs is mounted.
set -eu
grep -E '^Huge' /proc/meminfo
total=$(sed -n 's/^HugePages_Total: *//p' /proc/meminfo)
[ "$total" -gt 0 ] || { echo "no huge pages reserved"; exit 1; }
grep -q ' /dev/hugepages hugetlbfs ' /proc/mounts || { echo "hugetlbfs not mounted"; exit 1; }
