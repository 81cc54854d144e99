//! The SD-card image recipe hangs together: partition labels match fstab and the
//! firmware's root setting, first-boot units call the real commands, HTTP is on port 80.

const BUILD: &str = include_str!("../image/build.sh");
const GENIMAGE: &str = include_str!("../image/genimage.cfg");
const PROVISION_UNIT: &str = include_str!("../image/files/edgecam-provision.service");
const IMAGE_CONFIG: &str = include_str!("../image/files/edgecam.toml");

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
}

#[test]
fn the_image_config_is_valid_and_serves_on_port_80() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edgecam.toml");
    std::fs::write(&path, IMAGE_CONFIG).unwrap();
    let cfg = edgecam::config::load_file_only(&path).expect("image config is valid");
    assert_eq!(cfg.http.listen.port(), 80);
}
