#!/bin/sh
# End-to-end test of the built image (run `sudo sh image/build.sh` first): boots it in
# qemu-system-aarch64 with a provisioning file and the vivid camera, watches it from
# headless Chromium on the host, then checks that a bad provisioning file is survived.
# Takes about 10-15 minutes (software emulation). See tests/image_boot.rs.
set -eu
cd "$(dirname "$0")/.."
sh tests/setup.sh
need=""
for p in qemu-system-arm openssh-client mtools; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
fi
exec cargo test --locked --test image_boot -- --ignored --nocapture
