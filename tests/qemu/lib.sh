# Shared by the VMs' /init scripts (tests/qemu/run packs it as /lib.sh):
# mounts, and the PASS/FAIL reporting tests/qemu/run parses. $WHO, when set,
# prefixes every result with the VM's name.
/bin/busybox --install -s /bin 2>/dev/null
export PATH=/bin:/sbin:/usr/bin:/usr/sbin
# runc pivot_roots into a container's root, and the kernel refuses
# pivot_root away from the initramfs (rootfs can never be unmounted): move
# everything to a tmpfs and start /init again from there, as a distro's
# initramfs does before its real root.
if [ "$$" = 1 ] && [ ! -e /.on-tmpfs ]; then
    mkdir -p /newroot
    mount -t tmpfs -o mode=0755 root /newroot
    for f in /*; do [ "$f" = /newroot ] || cp -a "$f" /newroot/; done
    : > /newroot/.on-tmpfs
    exec switch_root /newroot /init
fi
mount -t proc proc /proc
mount -t sysfs sysfs /sys
# cgroup v2 only (as Raspberry Pi OS bookworm boots): runc puts image pods' containers here.
mount -t cgroup2 cgroup2 /sys/fs/cgroup
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
