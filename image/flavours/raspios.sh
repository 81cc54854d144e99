# Image flavour "raspios": Raspberry Pi OS (trixie, arm64), that is Debian trixie with
# Raspberry Pi's archive layered over it, as Raspberry Pi's own generator (rpi-image-gen)
# assembles it from mmdebstrap and genimage. Adds what Debian's kernel lacks on a Pi:
# the Raspberry Pi kernels (Pi 3/4/Zero 2 W and Pi 5) with unicam/CFE and the ISP for
# CSI cameras through libcamera (gstreamer1.0-libcamera), the VideoCore encoder
# (bcm2835-codec, v4l2h264enc on Pi 2-4) and /dev/gpiomem. Sourced by image/build.sh.
#
# Raspberry Pi's archive key is fetched over HTTPS from the archive itself (it is not in
# Debian). Not built on the project's machines, which reach only Debian's archive.
RPI_ARCHIVE="${RPI_ARCHIVE:-http://archive.raspberrypi.com/debian}"
RPI_KEY_URL="${RPI_KEY_URL:-https://archive.raspberrypi.com/debian/raspberrypi.gpg.key}"
FLAVOUR_KEYRING="$OUT/raspberrypi-archive.gpg"
FLAVOUR_SUITE=trixie
FLAVOUR_SOURCES="deb http://deb.debian.org/debian trixie main non-free-firmware
deb http://deb.debian.org/debian-security trixie-security main non-free-firmware
deb $RPI_ARCHIVE trixie main"
FLAVOUR_PACKAGES="raspberrypi-archive-keyring,raspi-firmware,linux-image-rpi-v8,linux-image-rpi-2712,raspberrypi-sys-mods,gstreamer1.0-libcamera,libcamera-ipa"

flavour_fetch_keyring() {
    if [ ! -s "$FLAVOUR_KEYRING" ]; then
        command -v gpg >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq gpg
        curl -fsSL "$RPI_KEY_URL" | gpg --dearmor > "$FLAVOUR_KEYRING.new"
        mv "$FLAVOUR_KEYRING.new" "$FLAVOUR_KEYRING"
    fi
}

flavour_setup() {
    # The image's own apt trusts the archive too (for updates on the board).
    mkdir -p "$1/etc/apt/trusted.gpg.d"
    cp "$FLAVOUR_KEYRING" "$1/etc/apt/trusted.gpg.d/raspberrypi-archive.gpg"
}

# Raspberry Pi's firmware package does not write these; what rpi-image-gen writes, with
# our root label. camera_auto_detect loads the overlay of an attached CSI camera.
flavour_customize() {
    cat > "$1/boot/firmware/config.txt" <<'CFG'
# edgecam image (Raspberry Pi OS flavour)
arm_64bit=1
auto_initramfs=1
camera_auto_detect=1
display_auto_detect=1
dtoverlay=vc4-kms-v3d
disable_overscan=1
[all]
CFG
    echo "console=serial0,115200 console=tty1 root=LABEL=RASPIROOT rootfstype=ext4 fsck.repair=yes rootwait" \
        > "$1/boot/firmware/cmdline.txt"
}
