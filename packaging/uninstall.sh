#!/bin/sh
# Removes podnet: stops and disables the service, removes the binary, the
# unit and the shipped board configs. /etc/podnet (your config) and
# /var/lib/podnet (pod state and logs) stay unless --purge.
#
#   sudo ./uninstall.sh [--purge]
#   DESTDIR=/tmp/root ./uninstall.sh    works on a staging root (no systemctl)
set -eu

DESTDIR=${DESTDIR:-}
PURGE=no
for arg in "$@"; do
    case "$arg" in
        --purge) PURGE=yes ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "uninstall.sh: unknown argument $arg (try --help)" >&2; exit 2 ;;
    esac
done

if [ -z "$DESTDIR" ] && [ "$(id -u)" != 0 ]; then
    echo "uninstall.sh: must run as root (sudo ./uninstall.sh)" >&2
    exit 1
fi

systemd=no
[ -z "$DESTDIR" ] && [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1 && systemd=yes
if [ "$systemd" = yes ]; then
    # Stopping the agent ends its pods and removes their namespaces and TAPs.
    systemctl disable --now podnet.service 2>/dev/null || true
fi
rm -f "$DESTDIR/usr/local/bin/podnet" "$DESTDIR/etc/systemd/system/podnet.service"
# The CNI plugin link and network config, if install.sh --cni (or podnet cni
# install) made them: only links to podnet, never a file of another plugin.
for dir in /usr/lib/cni /opt/cni/bin; do
    [ -L "$DESTDIR$dir/podnet" ] && rm -f "$DESTDIR$dir/podnet"
done
rm -f "$DESTDIR/etc/cni/net.d/10-podnet.conflist"
rm -rf "$DESTDIR/usr/local/share/podnet"
[ "$systemd" = yes ] && systemctl daemon-reload
if [ "$PURGE" = yes ]; then
    rm -rf "$DESTDIR/etc/podnet" "$DESTDIR/var/lib/podnet"
    echo "uninstall.sh: removed podnet, its config and its state"
else
    echo "uninstall.sh: removed podnet; kept /etc/podnet and /var/lib/podnet (--purge removes them)"
fi
