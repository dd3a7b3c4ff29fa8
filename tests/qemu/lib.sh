# Shared by the VMs' /init scripts (tests/qemu/run packs it as /lib.sh):
# mounts, and the PASS/FAIL reporting tests/qemu/run parses. $WHO, when set,
# prefixes every result with the VM's name.
/bin/busybox --install -s /bin
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
mount -t proc proc /proc
mount -t sysfs sysfs /sys
mount -t devtmpfs devtmpfs /dev
mount -t tmpfs -o mode=0755 run /run
mount -t tmpfs tmp /tmp
mkdir -p /run/netns /var/lib/podnet /dev/net /dev/pts
mount -t devpts devpts /dev/pts

FAILS=0
pass() { echo "PASS ${WHO:+$WHO: }$*"; }
fail() { echo "FAIL ${WHO:+$WHO: }$*"; FAILS=$((FAILS + 1)); }
step() { # name command... : PASS when the command succeeds
    name=$1; shift
    if "$@"; then pass "$name"; else fail "$name"; fi
}
finish() {
    echo "podnet-vm: ${WHO:+$WHO: }$FAILS failed"
    echo "SCENARIO DONE"
    sync
    poweroff -f
}
# Polls a condition once a second, up to $1 seconds.
wait_for() {
    limit=$1; shift
    i=0
    while [ "$i" -lt "$limit" ]; do
        "$@" >/dev/null 2>&1 && return 0
        sleep 1
        i=$((i + 1))
    done
    return 1
}
