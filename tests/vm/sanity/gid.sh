# Sourced: sets gid to the GID index of the IPv4 address of the rxe device.
gid=
for f in /sys/class/infiniband/"$SAFEPIN_RXE_DEV"/ports/1/gids/*; do
    read -r g <"$f" 2>/dev/null || continue
    case $g in *:ffff:c000:0201) gid=${f##*/}; break ;; esac
done
[ -n "$gid" ] || { echo "no IPv4 GID on $SAFEPIN_RXE_DEV"; exit 1; }
