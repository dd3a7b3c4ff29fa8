#!/bin/sh
# Installs podnet from an unpacked release tarball (run it from there):
# the binary to /usr/local/bin, a board config to /etc/podnet/config.toml
# (kept if one exists), the board configs to /usr/local/share/podnet, and
# the systemd unit. Says how to install an OCI runtime (runc or crun) when
# there is none: pods from images need one.
#
#   sudo ./install.sh [--board NAME] [--binary PATH] [--cni]
#
# --board NAME   use board-configs/NAME.toml instead of guessing the board
#                from /proc/device-tree/model
# --cni          also make podnet the CNI plugin of podman, containerd or
#                k3s on this machine: podnet linked into the CNI bin dir
#                (/usr/lib/cni, else /opt/cni/bin) and
#                /etc/cni/net.d/10-podnet.conflist (what `podnet cni install` does)
# DESTDIR=/tmp/root ./install.sh   installs under a staging root instead
#                (no root needed, systemctl not called); MODEL_FILE overrides
#                /proc/device-tree/model (for tests).
set -eu

HERE=$(cd "$(dirname "$0")" && pwd)
DESTDIR=${DESTDIR:-}
MODEL_FILE=${MODEL_FILE:-/proc/device-tree/model}
BOARD=""
BINARY=""
CNI=no
while [ $# -gt 0 ]; do
    case "$1" in
        --board) BOARD=${2:?--board needs a name}; shift 2 ;;
        --binary) BINARY=${2:?--binary needs a path}; shift 2 ;;
        --cni) CNI=yes; shift ;;
        -h|--help) sed -n '2,18p' "$0"; exit 0 ;;
        *) echo "install.sh: unknown argument $1 (try --help)" >&2; exit 2 ;;
    esac
done

die() { echo "install.sh: $*" >&2; exit 1; }

if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
    die "must run as root (sudo ./install.sh), or set DESTDIR to stage into a directory"
fi

# The pieces: next to this script (release tarball), or the repository layout.
[ -n "$BINARY" ] || BINARY=$HERE/podnet
[ -f "$BINARY" ] || die "no podnet binary at $BINARY (pass --binary PATH)"
CONFIGS=$HERE/board-configs
[ -d "$CONFIGS" ] || CONFIGS=$HERE/../board-configs
[ -d "$CONFIGS" ] || die "no board-configs directory next to install.sh"
UNIT=$HERE/podnet.service
[ -f "$UNIT" ] || die "no podnet.service next to install.sh"

# Which board: /proc/device-tree/model on a Pi, else generic (board.sh,
# shared with the .deb's postinst).
if [ -z "$BOARD" ]; then
    [ -f "$HERE/board.sh" ] || die "no board.sh next to install.sh (pass --board NAME, or unpack the whole tarball)"
    # shellcheck source=board.sh
    . "$HERE/board.sh"
    model=$(podnet_model "$MODEL_FILE")
    BOARD=$(podnet_board "$model" "$(uname -m)")
    echo "install.sh: board ${model:+\"$model\" -> }$BOARD"
fi
[ -f "$CONFIGS/$BOARD.toml" ] || die "no board config $CONFIGS/$BOARD.toml (see $CONFIGS)"

install -d -m 0755 "$DESTDIR/usr/local/bin" "$DESTDIR/etc/systemd/system" \
    "$DESTDIR/usr/local/share/podnet/board-configs"
install -d -m 0700 "$DESTDIR/etc/podnet" "$DESTDIR/var/lib/podnet"
install -m 0755 "$BINARY" "$DESTDIR/usr/local/bin/podnet"
install -m 0644 "$CONFIGS"/*.toml "$DESTDIR/usr/local/share/podnet/board-configs/"
if [ -e "$DESTDIR/etc/podnet/config.toml" ]; then
    echo "install.sh: keeping the existing /etc/podnet/config.toml ($CONFIGS/$BOARD.toml not copied)"
else
    install -m 0644 "$CONFIGS/$BOARD.toml" "$DESTDIR/etc/podnet/config.toml"
    echo "install.sh: /etc/podnet/config.toml from board-configs/$BOARD.toml"
fi
install -m 0644 "$UNIT" "$DESTDIR/etc/systemd/system/podnet.service"

# The CNI plugin is the podnet binary itself, by its name in the bin dir;
# the conflist comes from the binary, so the two never disagree.
if [ "$CNI" = yes ]; then
    cni_bin=/opt/cni/bin
    [ -d "$DESTDIR/usr/lib/cni" ] && cni_bin=/usr/lib/cni
    install -d -m 0755 "$DESTDIR$cni_bin" "$DESTDIR/etc/cni/net.d"
    conflist=$DESTDIR/etc/cni/net.d/10-podnet.conflist
    if ! "$DESTDIR/usr/local/bin/podnet" cni config > "$conflist.new" 2>/dev/null; then
        rm -f "$conflist.new"
        die "--cni: cannot run $DESTDIR/usr/local/bin/podnet here to write the CNI config (another architecture?): run 'sudo podnet cni install' on the board"
    fi
    mv "$conflist.new" "$conflist"
    ln -sf /usr/local/bin/podnet "$DESTDIR$cni_bin/podnet"
    echo "install.sh: CNI plugin $cni_bin/podnet, network config /etc/cni/net.d/10-podnet.conflist"
fi

# Image pods need an OCI runtime (runc or crun); command pods run without one.
oci=""
for runtime in runc crun; do
    for dir in /usr/local/sbin /usr/local/bin /usr/sbin /usr/bin /sbin /bin; do
        if [ -z "$oci" ] && [ -x "$DESTDIR$dir/$runtime" ]; then oci=$dir/$runtime; fi
    done
done
if [ -z "$oci" ]; then
    echo "install.sh: no OCI runtime (runc or crun) found: pods from images need one (apt-get install runc); command pods work without it"
fi

if [ -z "$DESTDIR" ]; then
    # The binary checks the config (where it can run: not an arm64 binary on x86_64).
    if out=$(/usr/local/bin/podnet config check /etc/podnet/config.toml 2>&1); then
        :
    elif [ -n "$out" ] && ! echo "$out" | grep -qi "exec format\|not found"; then
        echo "$out" >&2
        echo "install.sh: WARNING: /etc/podnet/config.toml has problems; fix them before starting" >&2
    fi
    if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
        systemctl daemon-reload
    else
        echo "install.sh: systemd is not running; run 'systemctl daemon-reload' when it is"
    fi
fi
echo "install.sh: installed podnet to ${DESTDIR:-/}. Start it now and at every boot with:"
echo "    sudo systemctl enable --now podnet"
