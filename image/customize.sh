#!/bin/sh
# edgecam's part of the image, applied to the root file system in $1 after the Debian
# packages are in (mmdebstrap customize hook; again by `build.sh --update-edgecam`):
# our package, first-boot units, networking, SSH keys-only, fstab, port-80 config.
set -eu
ROOT="$1"
FILES="$(dirname "$0")/files"
OUT="$(dirname "$0")/../target/image"

cp "$OUT/edgecam_arm64.deb" "$ROOT/tmp/edgecam_arm64.deb"
# (build.sh --update-edgecam: the full build cleaned the package lists; a new dependency
# of the package needs them.)
ls "$ROOT"/var/lib/apt/lists/*_Packages >/dev/null 2>&1 || chroot "$ROOT" apt-get update -qq
# The image's own settings (port 80) replace the package's default: keep ours on upgrade.
chroot "$ROOT" sh -c 'DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
    -o Dpkg::Options::=--force-confold --reinstall /tmp/edgecam_arm64.deb'
rm "$ROOT/tmp/edgecam_arm64.deb"

install -m644 "$FILES/edgecam-provision.service" "$FILES/edgecam-growroot.service" "$ROOT/etc/systemd/system/"
install -m755 "$FILES/edgecam-growroot" "$ROOT/usr/local/sbin/"
install -m644 "$FILES/eth.network" "$FILES/wlan.network" "$ROOT/etc/systemd/network/"
install -m644 "$FILES/sshd-keys-only.conf" "$ROOT/etc/ssh/sshd_config.d/"
# Raspberry Pi Imager's user-data/network-config on the boot partition (cloud-init).
install -d "$ROOT/etc/cloud/cloud.cfg.d"
install -m644 "$FILES/90-edgecam.cfg" "$ROOT/etc/cloud/cloud.cfg.d/"
for unit in cloud-init-main cloud-init-local cloud-init-network cloud-config cloud-final; do
    install -d "$ROOT/etc/systemd/system/$unit.service.d"
    install -m644 "$FILES/cloud-init-imager-only.conf" "$ROOT/etc/systemd/system/$unit.service.d/edgecam.conf"
done
install -m640 "$FILES/edgecam.toml" "$ROOT/etc/edgecam/edgecam.toml"
# The page and RTSP on mDNS (DNS-SD): _http._tcp and _rtsp._tcp.
install -d "$ROOT/etc/avahi/services"
install -m644 "$FILES/edgecam.avahi.service" "$ROOT/etc/avahi/services/edgecam.service"
chroot "$ROOT" chown root:edgecam /etc/edgecam/edgecam.toml
printf "LABEL=RASPIROOT / ext4 rw,noatime 0 1\nLABEL=RASPIFIRM /boot/firmware vfat rw,noatime 0 2\n" > "$ROOT/etc/fstab"
echo edgecam > "$ROOT/etc/hostname"
chroot "$ROOT" systemctl enable systemd-networkd edgecam-provision \
    edgecam-growroot edgecam avahi-daemon ssh
# Wi-Fi starts when a wlan0 appears: enabled outright, boot would wait 90 s for the
# device on boards (and setups) without one.
chroot "$ROOT" systemctl disable wpa_supplicant@wlan0 2>/dev/null || true
# (systemctl add-wants refuses a device unit that does not exist yet: link it by hand.)
install -d "$ROOT/etc/systemd/system/sys-subsystem-net-devices-wlan0.device.wants"
ln -sf /lib/systemd/system/wpa_supplicant@.service \
    "$ROOT/etc/systemd/system/sys-subsystem-net-devices-wlan0.device.wants/wpa_supplicant@wlan0.service"

# Every card gets its own SSH host keys at first boot. Debian's unit checks the config
# (`sshd -t`) first, which fails without keys: make them before that check.
rm -f "$ROOT"/etc/ssh/ssh_host_*
install -d "$ROOT/etc/systemd/system/ssh.service.d"
printf "[Service]\nExecStartPre=\nExecStartPre=/usr/bin/ssh-keygen -A\nExecStartPre=/usr/sbin/sshd -t\n" \
    > "$ROOT/etc/systemd/system/ssh.service.d/hostkeys.conf"

# First boot skips what the build already did: ldconfig's cache, hwdb and the journal
# catalog are current (systemd's ConditionNeedsUpdate compares these stamps with /usr).
touch "$ROOT/etc/.updated" "$ROOT/var/.updated"
# GStreamer's plugin registry for the daemon's user, made now rather than in the first
# boot's first seconds (10 s under emulation; a plugin that crashes the scanner is
# remembered as such).
install -d -o "$(chroot "$ROOT" id -u edgecam)" -g "$(chroot "$ROOT" id -g edgecam)" -m 700 "$ROOT/var/lib/edgecam"
chroot "$ROOT" runuser -u edgecam -- env HOME=/var/lib/edgecam gst-inspect-1.0 >/dev/null 2>&1 || true
