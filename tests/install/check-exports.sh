#!/bin/bash
# The shared library exports exactly the symbols of its version script,
# each bound to its version node, and carries its SONAME.
# Usage: check-exports.sh LIB MAP [SYMBOL_NOT_BUILT...]
set -euo pipefail
lib=$1 map=$2
shift 2
soname=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
[ "$soname" = libsafepin.so.1 ] || { echo "SONAME is '$soname'"; exit 1; }
versioned=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' | grep -v '^SAFEPIN_' | sort)
exported=$(echo "$versioned" | sed 's/@.*//' | sort)
listed=$(sed -n 's/^[[:space:]]*\([a-z_0-9]*\);$/\1/p' "$map" | sort)
not_built=$(printf '%s\n' "$@" | sort)
echo "exported:"; echo "$versioned"

extra=$(comm -23 <(echo "$exported") <(echo "$listed"))
[ -z "$extra" ] || { echo "exported but not in $map: $extra"; exit 1; }
missing=$(comm -13 <(echo "$exported") <(echo "$listed") | comm -23 - <(echo "$not_built"))
[ -z "$missing" ] || { echo "in $map but not exported: $missing"; exit 1; }
# Each symbol bound to the node that lists it: sym@@SAFEPIN_x.y.
bound=$(awk '/^SAFEPIN_[0-9.]+ *\{/ {node=$1} /^[[:space:]]*[a-z_0-9]+;$/ {gsub(/[[:space:];]/, ""); print $0 "@@" node}' "$map" | sort)
wrong=$(comm -23 <(echo "$versioned") <(echo "$bound"))
[ -z "$wrong" ] || { echo "bound to the wrong version node: $wrong"; exit 1; }
echo "ok: $(echo "$exported" | wc -l) symbols, each bound to its node in $map, SONAME $soname"
