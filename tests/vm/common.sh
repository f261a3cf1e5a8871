# Shared helpers for the tests/vm scripts (sourced, POSIX sh).

vm_die() { echo "${0##*/}: $*" >&2; exit 2; }

# vm_need "cmd:package" ...  -- make sure each command exists; install the
# missing packages with apt-get when we are root, otherwise explain and fail.
# A "cmd" starting with / is checked as a file path.
vm_need() {
    _missing=
    for _spec in "$@"; do
        _cmd=${_spec%%:*} _pkg=${_spec#*:}
        case $_cmd in
            /*) [ -e "$_cmd" ] && continue ;;
            *) command -v "$_cmd" >/dev/null 2>&1 && continue ;;
        esac
        case " $_missing " in *" $_pkg "*) ;; *) _missing="$_missing $_pkg" ;; esac
    done
    [ -z "$_missing" ] && return 0
    if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
        echo "${0##*/}: missing packages:$_missing" >&2
        echo "${0##*/}: install them as root: apt-get install -y$_missing" >&2
        exit 2
    fi
    echo "${0##*/}: installing missing packages:$_missing" >&2
    export DEBIAN_FRONTEND=noninteractive
    # shellcheck disable=SC2086
    _apt="apt-get -o DPkg::Lock::Timeout=300 -y --no-install-recommends"
    # shellcheck disable=SC2086
    if ! $_apt install $_missing >&2; then
        apt-get -o DPkg::Lock::Timeout=300 update >&2 && $_apt install $_missing >&2 ||
            vm_die "apt-get install$_missing failed"
    fi
}

# Map the short kernel name to the Debian suite that ships it.
vm_suite() {
    case $1 in
        6.1) echo bookworm ;;
        5.10) echo bullseye ;;
        *) vm_die "unknown kernel '$1' (use 6.1 or 5.10)" ;;
    esac
}

# Everything guest-run needs on the host; the guest runs the host's own tools.
vm_need_guest_deps() {
    vm_need qemu-system-x86_64:qemu-system-x86 timeout:coreutils ip:iproute2 rdma:iproute2 \
        modprobe:kmod /bin/busybox:busybox-static ibv_devices:ibverbs-utils \
        ibv_rc_pingpong:ibverbs-utils rping:rdmacm-utils lspci:pciutils cpio:cpio
    ls /usr/lib/*/libibverbs/librxe-rdmav*.so >/dev/null 2>&1 ||
        vm_need /nonexistent-librxe:ibverbs-providers
}
