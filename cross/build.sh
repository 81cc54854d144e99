#!/bin/sh
# Cross-compiles edgecam for a Raspberry Pi class board from an x86_64 Debian host,
# without Docker: a target sysroot made with mmdebstrap (GStreamer dev files for the
# target), Debian's cross gcc as linker, and qemu-user-static to run the result.
#
#   sh cross/build.sh [aarch64|armv7] [--test]
#
# aarch64 = aarch64-unknown-linux-gnu (Pi 3/4/5, Zero 2 W on 64-bit OS), the default;
# armv7   = armv7-unknown-linux-gnueabihf (32-bit Raspberry Pi OS / Debian armhf).
# Output: target/<triple>/release/edgecam. With --test it also runs `edgecam --version`
# and the library's unit tests under qemu-user-static.
set -eu
cd "$(dirname "$0")/.."

case "${1:-aarch64}" in
    aarch64|arm64) TRIPLE=aarch64-unknown-linux-gnu DEB_ARCH=arm64 GNU=aarch64-linux-gnu QEMU=qemu-aarch64-static ;;
    armv7|armhf) TRIPLE=armv7-unknown-linux-gnueabihf DEB_ARCH=armhf GNU=arm-linux-gnueabihf QEMU=qemu-arm-static ;;
    *) echo "usage: $0 [aarch64|armv7] [--test]" >&2; exit 2 ;;
esac
RUN_TESTS=0
[ "${2:-}" = "--test" ] && RUN_TESTS=1

# Host tools (Debian bookworm names).
need=""
for p in mmdebstrap "gcc-$GNU" qemu-user-static clang libclang-dev pkg-config; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
    SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $need
fi
rustup target add "$TRIPLE" >/dev/null

# The target's headers and libraries. Debian's arm64/armhf GStreamer -dev packages are
# not co-installable with the amd64 ones, so they live in their own sysroot.
SYSROOT="$PWD/target/sysroot-$DEB_ARCH"
INCLUDE=libgstreamer1.0-dev,libgstreamer-plugins-base1.0-dev,libgstrtspserver-1.0-dev,libc6-dev,linux-libc-dev
# Made again when the package list changed (.complete records the list it was made with).
if [ "$(cat "$SYSROOT/.complete" 2>/dev/null)" != "$INCLUDE" ]; then
    rm -rf "$SYSROOT"
    mmdebstrap --arch="$DEB_ARCH" --variant=extract \
        --include="$INCLUDE" \
        bookworm "$SYSROOT" \
        "deb http://deb.debian.org/debian bookworm main" \
        "deb http://deb.debian.org/debian bookworm-updates main"
    # Headers and libraries to link against only; the board's own apt brings security
    # updates to what runs there.
    echo "$INCLUDE" > "$SYSROOT/.complete"
fi

T=$(echo "$TRIPLE" | tr '[:lower:]-' '[:upper:]_')   # AARCH64_UNKNOWN_LINUX_GNU
t=$(echo "$TRIPLE" | tr '-' '_')                      # aarch64_unknown_linux_gnu
export PKG_CONFIG_ALLOW_CROSS=1
export "PKG_CONFIG_SYSROOT_DIR_$t=$SYSROOT"
export "PKG_CONFIG_LIBDIR_$t=$SYSROOT/usr/lib/$GNU/pkgconfig:$SYSROOT/usr/share/pkgconfig"
export "CC_$t=$GNU-gcc"
export "CFLAGS_$t=--sysroot=$SYSROOT"
export "BINDGEN_EXTRA_CLANG_ARGS_$t=--sysroot=$SYSROOT --target=$GNU -I$SYSROOT/usr/include/$GNU"
export "CARGO_TARGET_${T}_LINKER=$GNU-gcc"
export "CARGO_TARGET_${T}_RUSTFLAGS=-Clink-arg=--sysroot=$SYSROOT"
# Programs built for the target run under qemu with the sysroot's libraries.
export "CARGO_TARGET_${T}_RUNNER=$QEMU -L $SYSROOT"

cargo build --locked --release --target "$TRIPLE" --bin edgecam
BIN="target/$TRIPLE/release/edgecam"
echo "built $BIN ($(du -h "$BIN" | cut -f1))"

if [ "$RUN_TESTS" = 1 ]; then
    "$QEMU" -L "$SYSROOT" "$BIN" --version
    # Unit tests of the library; the GStreamer ones need plugins the sysroot lacks.
    cargo test --locked --release --target "$TRIPLE" --lib -- --skip encode::runner
fi
