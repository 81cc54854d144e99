#!/bin/sh
# Builds a flashable SD-card image for Raspberry Pi 3/4/5 and Zero 2 W (arm64) on Debian
# trixie, without loop mounts: mmdebstrap builds the root file system into a directory,
# genimage makes the FAT and ext4 partitions from it (mkfs.vfat + mtools, mke2fs -d).
# Both flavours share this recipe and differ only in image/flavours/<name>.sh: package
# sources, the kernel/firmware packages and the boot files.
#
#   sh image/build.sh [debian|raspios|bookworm] -> target/image/edgecam-<flavour>.img
#   sh image/build.sh [debian|raspios|bookworm] --update-edgecam
#                                               -> the same, reusing the last root file
#                                                  system and only replacing the edgecam
#                                                  package (minutes, for development)
#
# debian (the default): Debian's kernel; USB cameras, x264, GPIO through the character
# device. raspios: Raspberry Pi OS's kernel and firmware on top, for CSI cameras
# (libcamera) and the hardware encoder. bookworm: the debian flavour on Debian 12, whose
# GStreamer 1.22 is what Raspberry Pi OS bookworm systems run (the image test checks the
# camera-unplug fixes there). Needs root (mmdebstrap's root mode; arm64
# maintainer scripts run under qemu-user).
set -eu
export OUT FLAVOUR
cd "$(dirname "$0")/.."
OUT="$PWD/target/image"
mkdir -p "$OUT"

FLAVOUR=debian
UPDATE=0
for arg in "$@"; do
    case "$arg" in
        debian|raspios|bookworm) FLAVOUR="$arg" ;;
        --update-edgecam) UPDATE=1 ;;
        *) echo "usage: $0 [debian|raspios|bookworm] [--update-edgecam]" >&2; exit 2 ;;
    esac
done
. "image/flavours/$FLAVOUR.sh"

need=""
for p in mmdebstrap qemu-user-static genimage mtools dosfstools e2fsprogs curl; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
fi

# arm64 programs (maintainer scripts) run through binfmt_misc + qemu-user.
if [ ! -e /proc/sys/fs/binfmt_misc/register ]; then
    mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
fi
if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    cat /usr/lib/binfmt.d/qemu-aarch64.conf > /proc/sys/fs/binfmt_misc/register
fi

# The edgecam package for arm64, built against bookworm's glibc 2.36 so the same .deb
# installs on bookworm- and trixie-based systems.
sh cross/deb.sh aarch64
cp "$(ls -t target/edgecam_*_arm64.deb | head -1)" "$OUT/edgecam_arm64.deb"

# Packages both flavours have: boot, networking (systemd-networkd; netplan renders
# Raspberry Pi Imager's network-config for it), SSH, mDNS, cloud-init for Imager's
# user-data, first-boot tools; gst-inspect/gst-launch for looking at a camera on the board.
COMMON_PACKAGES="gstreamer1.0-tools,systemd-sysv,udev,kmod,firmware-brcm80211,wpasupplicant,iproute2,avahi-daemon,libnss-mdns,openssh-server,cloud-init,netplan.io,cloud-guest-utils,e2fsprogs,dosfstools,util-linux,zstd"

ROOTFS="$OUT/rootfs-$FLAVOUR"
if [ "$UPDATE" = 1 ]; then
    [ -x "$ROOTFS/usr/bin/edgecam" ] || { echo "no earlier build in $ROOTFS: run without --update-edgecam" >&2; exit 2; }
    sh image/customize.sh "$ROOTFS"
    chroot "$ROOTFS" apt-get clean
    rm -rf "$ROOTFS"/var/lib/apt/lists/*
else
    flavour_fetch_keyring
    # An interrupted earlier build can leave /proc, /sys and /dev/pts mounted in the old
    # root: unmount them first and never let rm cross into another file system.
    if [ -d "$ROOTFS" ]; then
        grep -o " $ROOTFS/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done
    fi
    rm -rf --one-file-system "$ROOTFS" "$OUT/tmp"
    KEYRINGS=""
    [ -n "$FLAVOUR_KEYRING" ] && KEYRINGS="--keyring=/usr/share/keyrings/debian-archive-keyring.gpg --keyring=$FLAVOUR_KEYRING"
    # shellcheck disable=SC2086
    mmdebstrap --mode=root --arch=arm64 --variant=apt $KEYRINGS \
        --dpkgopt=force-confold --dpkgopt=force-confdef \
        --include="$COMMON_PACKAGES,$FLAVOUR_PACKAGES" \
        --essential-hook='mkdir -p "$1/boot/firmware"' \
        --setup-hook=". image/flavours/$FLAVOUR.sh && flavour_setup \"\$1\"" \
        --customize-hook='sh image/customize.sh "$1"' \
        --customize-hook=". image/flavours/$FLAVOUR.sh && flavour_customize \"\$1\"" \
        "$FLAVOUR_SUITE" "$ROOTFS" - <<SOURCES
$FLAVOUR_SOURCES
SOURCES
fi

IMG="edgecam-$FLAVOUR.img"
rm -rf "$OUT/tmp"
sed "s/@IMAGE@/$IMG/" image/genimage.cfg > "$OUT/genimage-$FLAVOUR.cfg"
genimage --config "$OUT/genimage-$FLAVOUR.cfg" --rootpath "$ROOTFS" --tmppath "$OUT/tmp" \
    --inputpath "$OUT" --outputpath "$OUT"
echo "image: $OUT/$IMG ($(du -h --apparent-size "$OUT/$IMG" | cut -f1))"
