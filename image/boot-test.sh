#!/bin/sh
# End-to-end test of the built image (run `sudo sh image/build.sh` first): boots it in
# qemu-system-aarch64 with a provisioning file, Raspberry Pi Imager's cloud-init files and
# the vivid camera, watches it from headless Chromium on the host, presses the board's
# button (QEMU's PL061 power-button line), then checks that a bad provisioning file is
# survived and that a long press powers off. About 15 minutes (software emulation). See
# tests/it/image_boot.rs.
#
#   sh image/boot-test.sh [debian|raspios|bookworm]  the whole test
#   sh image/boot-test.sh [debian|raspios|bookworm] --bench N
#                                                N boots timed to the first decoded frame
set -eu
cd "$(dirname "$0")/.."
FLAVOUR=debian
BENCH=0
while [ $# -gt 0 ]; do
    case "$1" in
        debian|raspios|bookworm) FLAVOUR="$1" ;;
        --bench) BENCH="$2"; shift ;;
        *) echo "usage: $0 [debian|raspios|bookworm] [--bench N]" >&2; exit 2 ;;
    esac
    shift
done
sh tests/setup.sh
need=""
for p in qemu-system-arm openssh-client mtools; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || need="$need $p"
done
if [ -n "$need" ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $need
fi
# Build (and fetch) first: the test itself runs offline, in a network namespace of its
# own with only a loopback interface. There the host's side of qemu's user network, the
# forwarded ports and Chromium all use 127.0.0.1, which qemu maps to the guest's view of
# the host (10.0.2.2) in both directions; with a LAN address on the host, Chromium's
# checks would come from an address the guest's answers cannot reach.
cargo test --locked --test it --no-run
NS=edgecam-e2e
ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
trap 'ip netns del "$NS"' EXIT
ip -n "$NS" link set lo up
export EDGECAM_IMAGE_FLAVOUR="$FLAVOUR"
if [ "$BENCH" -gt 0 ]; then
    i=0
    while [ "$i" -lt "$BENCH" ]; do
        i=$((i + 1))
        EDGECAM_BOOT_BENCH=1 ip netns exec "$NS" cargo test --locked --offline --test it \
            -- image_boot --ignored --nocapture 2>&1 | grep -E "^(boot to|guest:)|test result" | sed "s/^/run $i: /"
    done
else
    ip netns exec "$NS" cargo test --locked --offline --test it -- image_boot --ignored --nocapture
fi
