#!/bin/sh
# Runs install.sh and uninstall.sh into throwaway roots (DESTDIR) and checks
# what lands where; touches nothing on the real system. No root needed.
#   packaging/test.sh
set -eu
HERE=$(cd "$(dirname "$0")" && pwd)
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
fails=0
check() { # description command...
    what=$1; shift
    if "$@"; then echo "PASS $what"; else echo "FAIL $what"; fails=$((fails + 1)); fi
}

# A release-tarball-shaped directory with a stand-in binary.
PKG=$TMP/pkg
mkdir -p "$PKG/board-configs"
cp "$HERE/install.sh" "$HERE/uninstall.sh" "$HERE/podnet.service" "$PKG/"
cp "$HERE/../board-configs/"*.toml "$PKG/board-configs/"
printf '#!/bin/sh\necho podnet stand-in\n' > "$PKG/podnet"

board_for() { # model-text -> board installed
    root=$TMP/root-$(echo "$1" | tr -c 'a-zA-Z0-9' _)
    printf '%s\0' "$1" > "$TMP/model"
    DESTDIR=$root MODEL_FILE=$TMP/model "$PKG/install.sh" >/dev/null
    sed -n 's/^board = "\(.*\)"/\1/p' "$root/etc/podnet/config.toml"
}
check "Pi 3 B+ model -> rpi3b" test "$(board_for 'Raspberry Pi 3 Model B Plus Rev 1.3')" = rpi3b
check "Pi 4 model -> rpi4b" test "$(board_for 'Raspberry Pi 4 Model B Rev 1.4')" = rpi4b
check "Pi 5 model -> rpi5" test "$(board_for 'Raspberry Pi 5 Model B Rev 1.0')" = rpi5
check "Zero 2 W model -> rpi-zero2w" test "$(board_for 'Raspberry Pi Zero 2 W Rev 1.0')" = rpi-zero2w
generic=$( [ "$(uname -m)" = x86_64 ] && echo x86_64 || echo generic)
check "no Pi model -> $generic" test "$(board_for 'QEMU virt')" = "$generic"

R=$TMP/root
out=$(DESTDIR=$R MODEL_FILE=/nonexistent "$PKG/install.sh" --board rpi-zero2w)
check "install prints the enable command" sh -c "echo '$out' | grep -q 'systemctl enable --now podnet'"
check "binary installed executable" test -x "$R/usr/local/bin/podnet"
check "unit installed" cmp -s "$PKG/podnet.service" "$R/etc/systemd/system/podnet.service"
check "--board picks the config" grep -q '^board = "rpi-zero2w"' "$R/etc/podnet/config.toml"
check "board configs shipped" test -f "$R/usr/local/share/podnet/board-configs/rpi5.toml"
echo '# mine' > "$R/etc/podnet/config.toml"
DESTDIR=$R "$PKG/install.sh" --board rpi5 >/dev/null
check "an existing config is kept" test "$(cat "$R/etc/podnet/config.toml")" = "# mine"
check "unknown board is refused" sh -c "! DESTDIR=$R '$PKG/install.sh' --board nosuch 2>/dev/null"
mkdir -p "$R/var/lib/podnet/logs" && touch "$R/var/lib/podnet/state.json"
DESTDIR=$R "$PKG/uninstall.sh" >/dev/null
check "uninstall removes the binary" test ! -e "$R/usr/local/bin/podnet"
check "uninstall removes the unit" test ! -e "$R/etc/systemd/system/podnet.service"
check "uninstall keeps the config" test -f "$R/etc/podnet/config.toml"
check "uninstall keeps the state" test -f "$R/var/lib/podnet/state.json"
DESTDIR=$R "$PKG/uninstall.sh" --purge >/dev/null
check "--purge removes config and state" sh -c "test ! -e '$R/etc/podnet' && test ! -e '$R/var/lib/podnet'"
check "nothing else is left" test -z "$(find "$R" -type f)"
if [ "$(id -u)" != 0 ]; then
    check "install without root or DESTDIR is refused" sh -c "! '$PKG/install.sh' 2>/dev/null"
fi
if [ "$fails" -gt 0 ]; then echo "packaging: $fails FAILED"; exit 1; fi
echo "packaging: all passed"
