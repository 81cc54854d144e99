#!/bin/sh
# Builds the edgecam .deb for a Raspberry Pi class board:
#   sh cross/deb.sh [aarch64|armv7]   -> target/edgecam_<version>_<arm64|armhf>.deb
# Install on the board with: apt install ./edgecam_*.deb
set -eu
cd "$(dirname "$0")/.."
case "${1:-aarch64}" in
    aarch64|arm64) TRIPLE=aarch64-unknown-linux-gnu ;;
    armv7|armhf) TRIPLE=armv7-unknown-linux-gnueabihf ;;
    *) echo "usage: $0 [aarch64|armv7]" >&2; exit 2 ;;
esac
command -v cargo-deb >/dev/null 2>&1 || cargo install cargo-deb --locked
sh cross/build.sh "$1"
cargo deb --target "$TRIPLE" --no-build --output target/
