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
if echo "$versioned" | grep -v '@@SAFEPIN_1\.0$'; then
	echo "symbols above are not bound to SAFEPIN_1.0"; exit 1
fi
echo "ok: $(echo "$exported" | wc -l) symbols, all @@SAFEPIN_1.0, SONAME $soname"
