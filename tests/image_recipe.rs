//! The SD-card image recipe hangs together: partition labels match fstab and the
//! firmware's root setting, first-boot units call the real commands, HTTP is on port 80.

const BUILD_SH: &str = include_str!("../image/build.sh");
const CUSTOMIZE: &str = include_str!("../image/customize.sh");
const GENIMAGE: &str = include_str!("../image/genimage.cfg");
const PROVISION_UNIT: &str = include_str!("../image/files/edgecam-provision.service");
const IMAGE_CONFIG: &str = include_str!("../image/files/edgecam.toml");

/// The recipe: the build script and the customize step it runs.
static BUILD: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{BUILD_SH}\n{CUSTOMIZE}"));

#[test]
fn partition_labels_agree() {
    for label in ["RASPIFIRM", "RASPIROOT"] {
        assert!(
            GENIMAGE.contains(&format!("label = \"{label}\"")),
            "{label} in genimage.cfg"
        );
        assert!(
            BUILD.contains(&format!("LABEL={label}")),
            "{label} in fstab"
        );
    }
    assert!(BUILD.contains("ROOTPART=LABEL=RASPIROOT"));
    assert!(GENIMAGE.contains("mountpoint = \"/boot/firmware\""));
    assert!(
        !BUILD.contains("losetup") && !BUILD.contains("mount -o loop"),
        "no loop mounts"
    );
}

#[test]
fn first_boot_applies_the_boot_partition_file_before_the_daemon() {
    assert!(
        PROVISION_UNIT
            .contains("ExecStart=-/usr/bin/edgecam provision --boot /boot/firmware/edgecam.toml")
    );
    assert!(PROVISION_UNIT.contains("Before=") && PROVISION_UNIT.contains("edgecam.service"));
    assert!(BUILD.contains("systemctl enable") && BUILD.contains("edgecam-provision"));
    assert!(
        BUILD_SH.contains("customize.sh"),
        "build.sh runs the customize step"
    );
}

#[test]
fn the_image_config_is_valid_and_serves_on_port_80() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edgecam.toml");
    std::fs::write(&path, IMAGE_CONFIG).unwrap();
    let cfg = edgecam::config::load_file_only(&path).expect("image config is valid");
    assert_eq!(cfg.http.listen.port(), 80);
}

#[test]
fn ssh_host_keys_are_made_before_debians_config_check() {
    // Debian's ssh.service runs `sshd -t` first, which fails without host keys; the
    // drop-in resets the list so the keys come first.
    assert!(CUSTOMIZE.contains(
        "ExecStartPre=\\nExecStartPre=/usr/bin/ssh-keygen -A\\nExecStartPre=/usr/sbin/sshd -t"
    ));
    assert!(CUSTOMIZE.contains("rm -f \"$ROOT\"/etc/ssh/ssh_host_*"));
}
