#!/bin/bash
# The shared library exports exactly the symbols of its version script,
# each bound to its version node, and carries its SONAME.
set -eu
lib=$1 map=$2
soname=$(objdump -p "$lib" | awk '/SONAME/ {print $2}')
[ "$soname" = libsafepin.so.1 ] || { echo "SONAME is '$soname'"; exit 1; }
exported=$(nm -D --defined-only "$lib" | awk '$2 ~ /^[TDBR]$/ {print $3}' | grep -v '^SAFEPIN_' | sort)
expected=$(sed -n 's/^[[:space:]]*\([a-z_0-9]*\);$/\1/p' "$map" | sort)
echo "exported:"; echo "$exported"
if [ "$(echo "$exported" | sed 's/@.*//')" != "$expected" ]; then
	echo "exports differ from $map:"; diff <(echo "$expected") <(echo "$exported" | sed 's/@.*//') || true
	exit 1
fi
if echo "$exported" | grep -v '@@SAFEPIN_1\.0$'; then
	echo "symbols above are not bound to SAFEPIN_1.0"; exit 1
fi
echo "ok: $(echo "$exported" | wc -l) symbols, all @@SAFEPIN_1.0, SONAME $soname"
