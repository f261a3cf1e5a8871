#!/bin/sh
# ibv_rc_pingpong server and client in the same guest over rxe.
set -u
. "$(dirname "$0")/gid.sh"
echo "using GID index $gid"
ibv_rc_pingpong -d "$SAFEPIN_RXE_DEV" -g "$gid" -n 100 >/tmp/server.out.$$ 2>&1 &
srv=$!
i=0 rc=1
while [ $i -lt 20 ]; do
    sleep 0.3
    ibv_rc_pingpong -d "$SAFEPIN_RXE_DEV" -g "$gid" -n 100 "$SAFEPIN_RXE_IP" && { rc=0; break; }
    i=$((i + 1))
done
[ $rc = 0 ] || kill "$srv" 2>/dev/null
wait "$srv"; src=$?
echo "--- server:"; cat /tmp/server.out.$$; rm -f /tmp/server.out.$$
echo "client exit $rc, server exit $src"
[ $rc = 0 ] && [ $src = 0 ]
