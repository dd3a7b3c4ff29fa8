#!/bin/sh
# Runs install.sh and uninstall.sh into throwaway roots (DESTDIR) and checks
# what lands where; then builds the .deb (scripts/build-deb) and installs,
# upgrades, removes and purges it in a throwaway root with dpkg. Touches
# nothing on the real system. Runs without root too (dpkg --force-not-root);
# as root it installs lintian and shellcheck when missing and runs them.
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
contains() { printf '%s\n' "$1" | grep -Eq -- "$2"; } # text regex
one_line() { [ "$(printf '%s\n' "$1" | wc -l)" = 1 ] && contains "$1" "$2"; } # text regex

# A release-tarball-shaped directory with a stand-in binary.
PKG=$TMP/pkg
mkdir -p "$PKG/board-configs"
cp "$HERE/install.sh" "$HERE/uninstall.sh" "$HERE/board.sh" "$HERE/podnet.service" "$PKG/"
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
DESTDIR=$R "$PKG/install.sh" --board rpi5 --cni >/dev/null
check "--cni links the plugin to the installed binary" test "$(readlink "$R/opt/cni/bin/podnet")" = /usr/local/bin/podnet
check "--cni writes the conflist from the binary" grep -q "podnet stand-in" "$R/etc/cni/net.d/10-podnet.conflist"
mkdir -p "$TMP/root-debcni/usr/lib/cni"
DESTDIR=$TMP/root-debcni MODEL_FILE=/nonexistent "$PKG/install.sh" --board rpi5 --cni >/dev/null
check "--cni uses Debian's /usr/lib/cni when it exists" test -L "$TMP/root-debcni/usr/lib/cni/podnet"
mkdir -p "$R/var/lib/podnet/logs" && touch "$R/var/lib/podnet/state.json"
DESTDIR=$R "$PKG/uninstall.sh" >/dev/null
check "uninstall removes the binary" test ! -e "$R/usr/local/bin/podnet"
check "uninstall removes the unit" test ! -e "$R/etc/systemd/system/podnet.service"
check "uninstall removes the CNI link and conflist" sh -c "test ! -e '$R/opt/cni/bin/podnet' && test ! -L '$R/opt/cni/bin/podnet' && test ! -e '$R/etc/cni/net.d/10-podnet.conflist'"
check "uninstall keeps the config" test -f "$R/etc/podnet/config.toml"
check "uninstall keeps the state" test -f "$R/var/lib/podnet/state.json"
DESTDIR=$R "$PKG/uninstall.sh" --purge >/dev/null
check "--purge removes config and state" sh -c "test ! -e '$R/etc/podnet' && test ! -e '$R/var/lib/podnet'"
check "nothing else is left" test -z "$(find "$R" -type f)"
if [ "$(id -u)" != 0 ]; then
    check "install without root or DESTDIR is refused" sh -c "! '$PKG/install.sh' 2>/dev/null"
fi
out=$(DESTDIR=$TMP/root-nooci MODEL_FILE=/nonexistent "$PKG/install.sh" --board rpi5 2>&1)
check "install without runc or crun says how to get one, and installs" \
    sh -c "echo '$out' | grep -q 'apt-get install runc' && test -x '$TMP/root-nooci/usr/local/bin/podnet'"
mkdir -p "$TMP/root-oci/usr/sbin" && printf '#!/bin/sh\n' > "$TMP/root-oci/usr/sbin/runc" && chmod 0755 "$TMP/root-oci/usr/sbin/runc"
out=$(DESTDIR=$TMP/root-oci MODEL_FILE=/nonexistent "$PKG/install.sh" --board rpi5 2>&1)
check "install with runc says nothing of it" sh -c "! echo '$out' | grep -q 'apt-get install runc'"
mv "$PKG/board.sh" "$TMP/board.sh"
err=$(DESTDIR=$TMP/root-noboard MODEL_FILE=/nonexistent "$PKG/install.sh" 2>&1 >/dev/null || true)
check "install.sh without board.sh says so" one_line "$err" 'no board.sh next to install.sh'
check "... and --board still works without it" sh -c "DESTDIR='$TMP/root-noboard' '$PKG/install.sh' --board rpi5 >/dev/null"

# --- The .deb (scripts/build-deb), installed with dpkg into a throwaway root.
REPO=$(cd "$HERE/.." && pwd)
VERSION=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version *= *"\(.*\)"/\1/p' "$REPO/Cargo.toml")
ARCH=$(dpkg --print-architecture 2>/dev/null || echo none)
case "$ARCH" in
    amd64|arm64) ;;
    *) echo "SKIP .deb tests: dpkg architecture '$ARCH' (need amd64 or arm64)"; ARCH="" ;;
esac
if [ -n "$ARCH" ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    tools=""
    command -v lintian >/dev/null 2>&1 || tools="$tools lintian"
    command -v shellcheck >/dev/null 2>&1 || tools="$tools shellcheck"
    command -v file >/dev/null 2>&1 || tools="$tools file"
    if [ -n "$tools" ]; then
        echo "packaging: installing$tools"
        # shellcheck disable=SC2086
        { apt-get update -q && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $tools; } >/dev/null 2>&1 \
            || echo "packaging: could not install$tools; those checks are skipped"
    fi
fi
if [ -n "$ARCH" ]; then
    # What the test must leave alone on this machine.
    host_state() { ls -ld /etc/podnet /var/lib/podnet /run/systemd/system 2>&1 || true; md5sum /var/lib/dpkg/status 2>&1 || true; }
    host_before=$(host_state)
    OUT=$TMP/deb-out
    DEB=$OUT/podnet_${VERSION}_$ARCH.deb
    # A release binary for this machine if there is one, else a shell-script
    # stand-in (then the ELF/arch check is skipped with PODNET_DEB_SKIP_ARCH_CHECK=1).
    if [ "$ARCH" = amd64 ]; then rel=$REPO/target; else rel=$REPO/target/aarch64-build/aarch64-unknown-linux-gnu; fi
    real=""
    for b in "$rel/release/podnet" "$rel/quick-release/podnet"; do
        if [ -f "$b" ]; then real=$b; break; fi
    done
    printf '#!/bin/sh\necho podnet stand-in\n' > "$TMP/podnet"
    chmod 0755 "$TMP/podnet"

    # Bad input: one line naming the fix, and no .deb.
    err=$("$REPO/scripts/build-deb" --arch "$ARCH" --binary "$TMP/podnet" -o "$OUT" 2>&1 || true)
    check "build-deb refuses a non-ELF binary in one line" one_line "$err" 'not an ELF binary.*--binary PATH'
    # A 64-byte ELF header claiming aarch64 (e_machine 183): wrong for --arch amd64.
    printf '\177ELF\002\001\001\000\000\000\000\000\000\000\000\000\002\000\267\000\001\000\000\000' > "$TMP/arm-elf"
    head -c 40 /dev/zero >> "$TMP/arm-elf"
    if command -v file >/dev/null 2>&1; then
        err=$("$REPO/scripts/build-deb" --arch amd64 --binary "$TMP/arm-elf" -o "$OUT" 2>&1 || true)
        check "build-deb refuses an arm64 binary for --arch amd64, naming --arch arm64" \
            one_line "$err" 'is an arm64 binary, not amd64: pass --arch arm64'
    fi
    check "build-deb refuses --arch i386" sh -c "! '$REPO/scripts/build-deb' --arch i386 -o '$OUT' 2>/dev/null"
    check "no .deb after refusals" test -z "$(ls -A "$OUT" 2>/dev/null)"

    if [ -n "$real" ]; then
        echo "packaging: .deb from $real"
        "$REPO/scripts/build-deb" --arch "$ARCH" --binary "$real" -o "$OUT" >/dev/null || true
    else
        echo "packaging: .deb from a stand-in binary (no release build of podnet)"
        PODNET_DEB_SKIP_ARCH_CHECK=1 "$REPO/scripts/build-deb" --arch "$ARCH" --binary "$TMP/podnet" -o "$OUT" >/dev/null || true
    fi
    check "build-deb wrote podnet_${VERSION}_$ARCH.deb" test -f "$DEB"
    if [ ! -f "$DEB" ]; then echo "packaging: $fails FAILED (no .deb to test further)"; exit 1; fi

    info=$(dpkg-deb --info "$DEB")
    field() { dpkg-deb --field "$DEB" "$1"; }
    check "control: Package podnet" test "$(field Package)" = podnet
    check "control: Version $VERSION (Cargo.toml)" test "$(field Version)" = "$VERSION"
    check "control: Architecture $ARCH" test "$(field Architecture)" = "$ARCH"
    check "control: Maintainer podnet developers" sh -c "dpkg-deb --field '$DEB' Maintainer | grep -q '^podnet developers <'"
    check "control: Section net, Priority optional" test "$(field Section) $(field Priority)" = "net optional"
    check "control: Installed-Size in KiB" sh -c "dpkg-deb --field '$DEB' Installed-Size | grep -Eq '^[1-9][0-9]*$'"
    check "control: a long description" test "$(field Description | wc -l)" -gt 3
    if [ -z "$real" ] || file -b "$real" | grep -q 'static'; then
        check "control: a static binary depends on an OCI runtime only" test "$(field Depends)" = "runc | crun"
    else
        check "control: Depends ends with an OCI runtime" contains "$(field Depends)" ', runc \| crun$'
    fi
    for script in postinst prerm postrm; do
        check "control: $script is executable" contains "$info" "^ +[0-9]+ bytes, +[0-9]+ lines +\\* +$script "
    done

    contents=$(dpkg-deb --contents "$DEB" | awk '{ print $1, $2, $6 }')
    has() { # mode path
        echo "$contents" | grep -qx -- "$1 root/root ./$2"
    }
    check "contents: /usr/bin/podnet 0755" has -rwxr-xr-x usr/bin/podnet
    check "contents: /lib/systemd/system/podnet.service 0644" has -rw-r--r-- lib/systemd/system/podnet.service
    for f in "$REPO"/board-configs/*.toml; do
        check "contents: board config $(basename "$f") 0644" has -rw-r--r-- "usr/share/podnet/board-configs/$(basename "$f")"
    done
    check "contents: the CNI plugin link /usr/lib/cni/podnet" has lrwxrwxrwx usr/lib/cni/podnet
    check "contents: the CNI plugin link points at /usr/bin/podnet" \
        sh -c "dpkg-deb --contents '$DEB' | grep -q '\./usr/lib/cni/podnet -> \.\./\.\./bin/podnet\$'"
    check "contents: /usr/share/podnet/board.sh 0644" has -rw-r--r-- usr/share/podnet/board.sh
    check "contents: copyright 0644" has -rw-r--r-- usr/share/doc/podnet/copyright
    check "contents: changelog.gz 0644" has -rw-r--r-- usr/share/doc/podnet/changelog.gz
    check "contents: nothing outside /usr and /lib" test -z "$(echo "$contents" | awk '{ print $3 }' | grep -v '^\./$' | grep -Ev '^\./(usr|lib)/')"
    dpkg-deb --fsys-tarfile "$DEB" | tar -xO ./lib/systemd/system/podnet.service > "$TMP/unit"
    sed 's|^ExecStart=/usr/local/bin/podnet |ExecStart=/usr/bin/podnet |' "$HERE/podnet.service" > "$TMP/unit-expected"
    check "unit: packaging/podnet.service with ExecStart=/usr/bin/podnet" \
        sh -c "cmp -s '$TMP/unit' '$TMP/unit-expected' && grep -q '^ExecStart=/usr/bin/podnet node up' '$TMP/unit'"

    if command -v lintian >/dev/null 2>&1; then
        # Deliberate tags are overridden, with reasons, in packaging/deb/lintian-overrides
        # (statically-linked-binary, embedded-library libyaml, maintainer-script-calls-systemctl,
        # command-with-path-in-maintainer-script, copyright-without-copyright-notice,
        # no-manual-page); anything else at warning level or above fails.
        if lint=$(lintian --fail-on error,warning "$DEB" 2>&1); then lint_ok=yes; else lint_ok=no; fi
        echo "$lint" | grep -v -e 'running with root privileges' -e '^$' | sed 's/^/  lintian: /'
        check "lintian: no errors or warnings" test "$lint_ok" = yes
    else
        echo "SKIP lintian: not installed (apt-get install lintian)"
    fi

    # Install, upgrade, remove and purge into $DR with dpkg itself: its own
    # database, maintainer scripts run without chroot with DPKG_ROOT=$DR, so
    # they never call systemctl. MODEL_FILE picks the board as on a Pi.
    DR=$TMP/debroot
    mkdir -p "$DR/var/lib/dpkg/info" "$DR/var/lib/dpkg/updates" "$DR/var/log"
    : > "$DR/var/lib/dpkg/status"
    force=""
    [ "$(id -u)" = 0 ] || force="--force-not-root"
    # Its Depends (runc | crun, libc6 for a dynamic binary) are not in the empty root.
    force="$force --force-depends"
    dpkgr() {
        # shellcheck disable=SC2086
        dpkg --root="$DR" --force-script-chrootless $force --log="$DR/var/log/dpkg.log" "$@"
    }
    status() { dpkg-query --admindir="$DR/var/lib/dpkg" -W -f '${Status}' podnet 2>/dev/null || true; }
    printf 'Raspberry Pi 5 Model B Rev 1.0\0' > "$TMP/model5"
    out=$(MODEL_FILE=$TMP/model5 dpkgr -i "$DEB" 2>&1) || { echo "$out"; echo "FAIL dpkg -i"; fails=$((fails + 1)); }
    check "dpkg -i: installed" test "$(status)" = "install ok installed"
    check "dpkg -i: /usr/bin/podnet" test -x "$DR/usr/bin/podnet"
    check "dpkg -i: the unit" test -f "$DR/lib/systemd/system/podnet.service"
    check "postinst: config.toml from the MODEL_FILE board (rpi5)" grep -q '^board = "rpi5"' "$DR/etc/podnet/config.toml"
    check "postinst: config.toml is the shipped rpi5.toml" cmp -s "$REPO/board-configs/rpi5.toml" "$DR/etc/podnet/config.toml"
    check "postinst: /etc/podnet and /var/lib/podnet are 0700" \
        test "$(stat -c %a "$DR/etc/podnet") $(stat -c %a "$DR/var/lib/podnet")" = "700 700"
    check "postinst: prints the enable command, starts nothing" contains "$out" 'systemctl enable --now podnet'

    # A machine that is no Pi gets this architecture's generic config.
    DR2=$TMP/debroot2
    mkdir -p "$DR2/var/lib/dpkg/info" "$DR2/var/lib/dpkg/updates" "$DR2/var/log"
    : > "$DR2/var/lib/dpkg/status"
    # shellcheck disable=SC2086
    MODEL_FILE=/nonexistent dpkg --root="$DR2" --force-script-chrootless $force --log="$DR2/var/log/dpkg.log" -i "$DEB" >/dev/null 2>&1 || true
    generic=$( [ "$ARCH" = amd64 ] && echo x86_64 || echo generic)
    check "postinst: no Pi model -> $generic" grep -q "^board = \"$generic\"" "$DR2/etc/podnet/config.toml"

    # PODNET_CNI=1: the CNI network config from the packaged binary (a
    # stand-in prints its name), kept on upgrade, removed on purge.
    DR3=$TMP/debroot3
    mkdir -p "$DR3/var/lib/dpkg/info" "$DR3/var/lib/dpkg/updates" "$DR3/var/log"
    : > "$DR3/var/lib/dpkg/status"
    dpkg3() {
        # shellcheck disable=SC2086
        MODEL_FILE=/nonexistent dpkg --root="$DR3" --force-script-chrootless $force --log="$DR3/var/log/dpkg.log" "$@"
    }
    out=$(PODNET_CNI=1 dpkg3 -i "$DEB" 2>&1) || true
    check "PODNET_CNI=1: the conflist from the binary" grep -q podnet "$DR3/etc/cni/net.d/10-podnet.conflist"
    check "PODNET_CNI=1: says where the plugin and config are" contains "$out" 'CNI plugin /usr/lib/cni/podnet'
    check "PODNET_CNI=1: the plugin link resolves to the binary" test "$(readlink -f "$DR3/usr/lib/cni/podnet")" = "$(readlink -f "$DR3/usr/bin/podnet")"
    echo '# mine' > "$DR3/etc/cni/net.d/10-podnet.conflist"
    PODNET_CNI=1 dpkg3 -i "$DEB" >/dev/null 2>&1 || true
    check "PODNET_CNI=1 upgrade: an existing conflist is kept" test "$(cat "$DR3/etc/cni/net.d/10-podnet.conflist")" = "# mine"
    rm -f "$DR3/etc/cni/net.d/10-podnet.conflist"
    PODNET_CNI=1 dpkg3 -i "$DEB" >/dev/null 2>&1 || true
    dpkg3 -P podnet >/dev/null 2>&1 || { echo "FAIL dpkg -P (PODNET_CNI)"; fails=$((fails + 1)); }
    check "PODNET_CNI=1 purge: the conflist and the plugin link gone" \
        sh -c "test ! -e '$DR3/etc/cni/net.d/10-podnet.conflist' && test ! -L '$DR3/usr/lib/cni/podnet'"
    check "no PODNET_CNI: no conflist" test ! -e "$DR/etc/cni/net.d/10-podnet.conflist"

    # Upgrade (the same package again runs prerm upgrade, postinst configure
    # with the old version): an edited config stays, whatever the model says.
    echo '# mine' > "$DR/etc/podnet/config.toml"
    printf 'Raspberry Pi 3 Model B Rev 1.2\0' > "$TMP/model3"
    out=$(MODEL_FILE=$TMP/model3 dpkgr -i "$DEB" 2>&1) || { echo "$out"; echo "FAIL dpkg -i (upgrade)"; fails=$((fails + 1)); }
    check "upgrade: installed" test "$(status)" = "install ok installed"
    check "upgrade: the edited config is kept" test "$(cat "$DR/etc/podnet/config.toml")" = "# mine"
    check "upgrade: says it kept it" contains "$out" 'keeping the existing /etc/podnet/config.toml'

    # Remove keeps config and state; purge removes them and the enable link.
    mkdir -p "$DR/var/lib/podnet/logs" "$DR/etc/systemd/system/multi-user.target.wants"
    touch "$DR/var/lib/podnet/state.json"
    ln -s /lib/systemd/system/podnet.service "$DR/etc/systemd/system/multi-user.target.wants/podnet.service"
    dpkgr -r podnet >/dev/null 2>&1 || { echo "FAIL dpkg -r"; fails=$((fails + 1)); }
    check "remove: package in config-files state" test "$(status)" = "deinstall ok config-files"
    check "remove: binary, unit and board configs gone" \
        sh -c "test ! -e '$DR/usr/bin/podnet' && test ! -e '$DR/lib/systemd/system/podnet.service' && test ! -e '$DR/usr/share/podnet'"
    check "remove: config kept" test "$(cat "$DR/etc/podnet/config.toml")" = "# mine"
    check "remove: state kept" test -f "$DR/var/lib/podnet/state.json"
    dpkgr -P podnet >/dev/null 2>&1 || { echo "FAIL dpkg -P"; fails=$((fails + 1)); }
    check "purge: package gone" test -z "$(status)"
    check "purge: config and /etc/podnet gone" test ! -e "$DR/etc/podnet"
    check "purge: state gone" test ! -e "$DR/var/lib/podnet"
    check "purge: enable link gone" test ! -L "$DR/etc/systemd/system/multi-user.target.wants/podnet.service"
    check "purge: no file left but dpkg's" test -z "$(find "$DR" -path "$DR/var/lib/dpkg" -prune -o -type f ! -path "$DR/var/log/dpkg.log" -print)"

    # The systemd side of the maintainer scripts, which dpkg --root never
    # reaches (DPKG_ROOT is set): each script run with DPKG_ROOT empty in a
    # private mount namespace whose /etc, /var/lib and /run are empty tmpfs
    # (with /run/systemd/system, so "systemd runs"), and a fake systemctl that
    # logs its calls and says the agent is active. Root only (unshare -m).
    if [ "$(id -u)" = 0 ] && unshare -m true 2>/dev/null; then
        FAKE=$TMP/fakebin
        mkdir -p "$FAKE"
        cat > "$FAKE/systemctl" <<'FAKESYSTEMCTL'
#!/bin/sh
echo "systemctl $*" >> "$SYSTEMCTL_LOG"
case "$*" in
    "is-active --quiet podnet.service") exit 0 ;;
    "show -p MainPID --value podnet.service")
        if grep -q ' kill ' "$SYSTEMCTL_LOG"; then echo 0; else echo 4242; fi ;;
esac
exit 0
FAKESYSTEMCTL
        chmod 0755 "$FAKE/systemctl"
        maint() { # log-name script args... -> the systemctl calls it made, one per line
            SYSTEMCTL_LOG=$TMP/$1.log
            export SYSTEMCTL_LOG
            : > "$SYSTEMCTL_LOG"
            shift
            # shellcheck disable=SC2016 # expanded by the inner sh
            unshare -m sh -c '
                mount -t tmpfs tmpfs /etc && mount -t tmpfs tmpfs /var/lib && mount -t tmpfs tmpfs /run &&
                mkdir -p /run/systemd/system /etc/podnet && echo "# mine" > /etc/podnet/config.toml &&
                PATH=$0:$PATH DPKG_ROOT= DPKG_MAINTSCRIPT_ARCH=amd64 "$@"' "$FAKE" "$@" >/dev/null 2>&1 \
                || echo "exit $?" >> "$SYSTEMCTL_LOG"
            cat "$SYSTEMCTL_LOG"
        }
        calls=$(maint upgrade "$HERE/deb/postinst" configure "$VERSION")
        check "postinst upgrade, agent active: SIGKILL to the agent only, then start" test "$calls" = "systemctl daemon-reload
systemctl is-active --quiet podnet.service
systemctl show -p MainPID --value podnet.service
systemctl kill --kill-who=main --signal=SIGKILL podnet.service
systemctl show -p MainPID --value podnet.service
systemctl start podnet.service"
        calls=$(maint first "$HERE/deb/postinst" configure "")
        check "postinst first install: daemon-reload only, starts nothing" test "$calls" = "systemctl daemon-reload"
        calls=$(maint prerm-upgrade "$HERE/deb/prerm" upgrade "$VERSION")
        check "prerm upgrade: leaves the agent running" test -z "$calls"
        calls=$(maint prerm-remove "$HERE/deb/prerm" remove)
        check "prerm remove: stops the agent (a clean stop)" test "$calls" = "systemctl is-active --quiet podnet.service
systemctl stop podnet.service"
        calls=$(maint postrm-remove "$HERE/deb/postrm" remove)
        check "postrm remove: daemon-reload" test "$calls" = "systemctl daemon-reload"
    else
        echo "SKIP maintainer scripts' systemctl calls: need root and unshare -m"
    fi

    # The real arm64 package, when scripts/build-aarch64 has built its binary.
    arm=$REPO/target/aarch64-build/aarch64-unknown-linux-gnu
    for b in "$arm/release/podnet" "$arm/quick-release/podnet"; do
        if [ "$ARCH" != amd64 ] || [ ! -f "$b" ] || ! command -v lintian >/dev/null 2>&1; then continue; fi
        if ! "$REPO/scripts/build-deb" --arch arm64 --binary "$b" -o "$OUT" >/dev/null; then
            check "arm64 .deb from $b builds" false
            break
        fi
        check "arm64 .deb from $b: static, depends on an OCI runtime only" \
            test "$(dpkg-deb --field "$OUT/podnet_${VERSION}_arm64.deb" Depends)" = "runc | crun"
        if lint=$(lintian --fail-on error,warning "$OUT/podnet_${VERSION}_arm64.deb" 2>&1); then lint_ok=yes; else lint_ok=no; fi
        echo "$lint" | grep -v -e 'running with root privileges' -e '^$' | sed 's/^/  lintian: /'
        check "lintian on the arm64 .deb: no errors or warnings" test "$lint_ok" = yes
        break
    done

    check "the real /etc/podnet, /var/lib/podnet, /run/systemd and dpkg database untouched" \
        test "$(host_state)" = "$host_before"
fi

if command -v shellcheck >/dev/null 2>&1; then
    check "shellcheck: packaging and build-deb" shellcheck -x "$HERE"/*.sh "$HERE"/deb/postinst "$HERE"/deb/prerm \
        "$HERE"/deb/postrm "$REPO/scripts/build-deb"
else
    echo "SKIP shellcheck: not installed (apt-get install shellcheck)"
fi

if [ "$fails" -gt 0 ]; then echo "packaging: $fails FAILED"; exit 1; fi
echo "packaging: all passed"
