# Image flavour "bookworm": the debian flavour on Debian 12 (bookworm), the base of
# Raspberry Pi OS bookworm, with its GStreamer 1.22. Kept so the image test runs the
# camera on the GStreamer that most Raspberry Pi systems in the field still have: 1.22's
# V4L2 source orphans an unplugged camera's buffer pool unless GST_V4L2_FORCE_DRAIN is
# set (tests/it/image_boot.rs checks both). Sourced by image/build.sh; everything but the
# release is the debian flavour's.
. image/flavours/debian.sh
FLAVOUR_SUITE=bookworm
FLAVOUR_SOURCES="deb http://deb.debian.org/debian bookworm main non-free-firmware
deb http://deb.debian.org/debian bookworm-updates main non-free-firmware
deb http://deb.debian.org/debian-security bookworm-security main non-free-firmware"
