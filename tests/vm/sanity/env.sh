#!/bin/sh
# The guest exports its setup and runs us as root in the share, read-write.
set -eu
[ "${SAFEPIN_GUEST:-}" = 1 ] || { echo "SAFEPIN_GUEST not set"; exit 1; }
case $(uname -r) in
    "$SAFEPIN_GUEST_KERNEL".*) ;;
    *) echo "kernel $(uname -r) is not $SAFEPIN_GUEST_KERNEL"; exit 1 ;;
esac
[ "$(id -u)" = 0 ] || { echo "not root"; exit 1; }
f=.safepin-guest-write-test.$$
echo ok >"$f" && [ "$(cat "$f")" = ok ] && rm -f "$f" || { echo "share $PWD not writable"; exit 1; }
echo "kernel $(uname -r), share $PWD writable, rxe $SAFEPIN_RXE_DEV at $SAFEPIN_RXE_IP"
