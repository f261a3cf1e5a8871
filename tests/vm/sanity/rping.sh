#!/bin/sh
# rping server and client over rdma_cm on the dummy netdev.
set -u
rping -s -a "$SAFEPIN_RXE_IP" -C 3 -v >/tmp/server.out.$$ 2>&1 &
srv=$!
i=0 rc=1
while [ $i -lt 20 ]; do
    sleep 0.3
    rping -c -a "$SAFEPIN_RXE_IP" -C 3 -v && { rc=0; break; }
    i=$((i + 1))
done
[ $rc = 0 ] || kill "$srv" 2>/dev/null
wait "$srv"; src=$?
echo "--- server:"; cat /tmp/server.out.$$; rm -f /tmp/server.out.$$
echo "client exit $rc, server exit $src"
[ $rc = 0 ] && [ $src = 0 ]
