#!/bin/sh
# Builds a flashable SD-card image for Raspberry Pi 3/4/5 (arm64) from Debian bookworm,
# the way Debian's own raspi images are made (raspi-firmware + linux-image-arm64),
# without loop mounts: mmdebstrap builds the root file system into a directory, genimage
# makes the FAT and ext4 partitions from it (mkfs.vfat + mtools, mke2fs -d).
#
#   sh image/build.sh                  -> target/image/edgecam.img
#   sh image/build.sh --update-edgecam  -> the same, reusing the last root file system and
#                                          only replacing the edgecam package (minutes,
#                                          not the ~40 of a full build; for development)
#
# Needs root (mmdebstrap's root mode; arm64 maintainer scripts run under qemu-user).
set -eu
cd "$(dirname "$0")/.."
OUT="$PWD/target/image"
mkdir -p "$OUT"

need=""
for p in mmdebstrap qemu-user-static genimage mtools dosfstools e2fsprogs; do
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

# The edgecam package for arm64.
sh cross/deb.sh aarch64
cp "$(ls -t target/edgecam_*_arm64.deb | head -1)" "$OUT/edgecam_arm64.deb"

ROOTFS="$OUT/rootfs"
if [ "${1:-}" = "--update-edgecam" ]; then
    [ -x "$ROOTFS/usr/bin/edgecam" ] || { echo "no earlier build in $ROOTFS: run without --update-edgecam" >&2; exit 2; }
    sh image/customize.sh "$ROOTFS"
else
    # An interrupted earlier build can leave /proc, /sys and /dev/pts mounted in the old
    # root: unmount them first and never let rm cross into another file system.
    if [ -d "$ROOTFS" ]; then
        grep -o " $ROOTFS/[^ ]*" /proc/mounts | sort -r | while read -r m; do umount -l "$m"; done
    fi
    rm -rf --one-file-system "$ROOTFS" "$OUT/tmp"
    mmdebstrap --mode=root --arch=arm64 --variant=apt \
        --components="main non-free-firmware" \
        --dpkgopt=force-confold \
        --include=systemd-sysv,udev,kmod,linux-image-arm64,raspi-firmware,firmware-brcm80211,wpasupplicant,iproute2,avahi-daemon,libnss-mdns,openssh-server,cloud-guest-utils,e2fsprogs,dosfstools,util-linux,zstd \
        --essential-hook='mkdir -p "$1/boot/firmware"' \
        --setup-hook='mkdir -p "$1/etc/default" && echo "ROOTPART=LABEL=RASPIROOT" > "$1/etc/default/raspi-firmware"' \
        --dpkgopt=force-confdef \
        --customize-hook='sh image/customize.sh "$1"' \
        bookworm "$ROOTFS"
fi

rm -rf "$OUT/tmp"
genimage --config image/genimage.cfg --rootpath "$ROOTFS" --tmppath "$OUT/tmp" \
    --inputpath "$OUT" --outputpath "$OUT"
ls -l "$OUT/edgecam.img"
echo "image: $OUT/edgecam.img ($(du -h --apparent-size "$OUT/edgecam.img" | cut -f1))"
