#!/bin/sh
# Installs what building, running and testing edgecam need on Debian/Ubuntu, and nothing
# that is already there. Safe to run repeatedly; used by the README's quick-start commands.
set -eu

PACKAGES="pkg-config libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
gstreamer1.0-plugins-ugly gstreamer1.0-x gstreamer1.0-tools libv4l-dev clang libclang-dev systemd \
iproute2 libgstrtspserver-1.0-dev gstreamer1.0-libav gstreamer1.0-alsa ffmpeg python3-venv"
# The browser tests drive Debian's Chromium and Firefox ESR; skip them with
# EDGECAM_NO_BROWSER=1.
if [ "${EDGECAM_NO_BROWSER:-0}" != 1 ]; then
    if grep -qi ubuntu /etc/os-release 2>/dev/null; then
        PACKAGES="$PACKAGES chromium-browser"
    else
        PACKAGES="$PACKAGES chromium firefox-esr"
    fi
fi

missing=""
for p in $PACKAGES; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done

if [ -n "$missing" ]; then
    echo "edgecam setup: installing$missing" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO="sudo"
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq $missing >&2
fi

# Third-party clients from PyPI that the tests drive (Home Assistant's ONVIF library),
# in a virtualenv of the project's own.
PYENV="${CARGO_TARGET_DIR:-target}/pyenv"
if [ ! -x "$PYENV/bin/python" ] || ! "$PYENV/bin/python" -c "import onvif, wsdiscovery" 2>/dev/null; then
    echo "edgecam setup: installing onvif-zeep-async and WSDiscovery into $PYENV" >&2
    python3 -m venv "$PYENV"
    "$PYENV/bin/pip" install -q "onvif-zeep-async==4.3.0" "WSDiscovery==2.1.2" >&2
fi

if ! command -v cargo >/dev/null 2>&1; then
    echo "edgecam setup: Rust is not installed; install it with rustup (https://rustup.rs), then re-run." >&2
    exit 1
fi
