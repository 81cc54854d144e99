# Image flavour "debian": pure Debian trixie, the way Debian's own Raspberry Pi images
# are made (raspi-firmware + Debian's generic arm64 kernel). Sourced by image/build.sh.
#
# What Debian's kernel lacks on a Raspberry Pi (checked in its config and module list):
# the CSI camera receiver (unicam) and ISP, so libcamera finds no CSI camera; and the
# VideoCore codec (bcm2835-codec), so there is no v4l2h264enc and x264 encodes on the
# CPU. USB cameras, the GPIO header (through the GPIO character device) and Wi-Fi work.
# For CSI cameras and the hardware encoder build the "raspios" flavour.
FLAVOUR_SUITE=trixie
FLAVOUR_SOURCES="deb http://deb.debian.org/debian trixie main non-free-firmware
deb http://deb.debian.org/debian trixie-updates main non-free-firmware
deb http://deb.debian.org/debian-security trixie-security main non-free-firmware"
FLAVOUR_PACKAGES="linux-image-arm64,raspi-firmware"
FLAVOUR_KEYRING=""

# Debian's raspi-firmware writes cmdline.txt and config.txt itself from
# /etc/default/raspi-firmware (set up before it is installed).
flavour_setup() {
    mkdir -p "$1/etc/default"
    echo "ROOTPART=LABEL=RASPIROOT" > "$1/etc/default/raspi-firmware"
}

flavour_customize() {
    :
}
flavour_fetch_keyring() {
    :
}
