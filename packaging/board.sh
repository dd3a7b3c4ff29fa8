# shellcheck shell=sh
# Which board config fits this machine. Sourced (not run) by install.sh from
# the release tarball and by the .deb's postinst from /usr/share/podnet/board.sh,
# so both pick the same board for the same machine.

# podnet_model FILE: the device-tree model string without its NULs
# ("Raspberry Pi 4 Model B Rev 1.4"), or nothing if FILE is unreadable.
podnet_model() {
    if [ -r "$1" ]; then tr -d '\0' < "$1"; fi
}

# podnet_board MODEL MACHINE: the board-configs/ name (without .toml) for a
# model string and a `uname -m` machine name: a Pi by its model, else x86_64
# or the generic defaults.
podnet_board() {
    case "$1" in
        "Raspberry Pi 5"*|"Raspberry Pi Compute Module 5"*) echo rpi5 ;;
        # "Raspberry Pi 4"* covers the Pi 400 too.
        "Raspberry Pi 4"*|"Raspberry Pi Compute Module 4"*) echo rpi4b ;;
        "Raspberry Pi 3"*|"Raspberry Pi Compute Module 3"*) echo rpi3b ;;
        "Raspberry Pi Zero 2"*) echo rpi-zero2w ;;
        *)
            case "$2" in
                x86_64) echo x86_64 ;;
                *) echo default ;;
            esac ;;
    esac
}
