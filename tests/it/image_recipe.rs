//! The SD-card image recipe hangs together: partition labels match fstab and the
//! firmware's root setting, first-boot units call the real commands, HTTP is on port 80.

const BUILD_SH: &str = include_str!("../../image/build.sh");
const CUSTOMIZE: &str = include_str!("../../image/customize.sh");
const GENIMAGE: &str = include_str!("../../image/genimage.cfg");
const PROVISION_UNIT: &str = include_str!("../../image/files/edgecam-provision.service");
const IMAGE_CONFIG: &str = include_str!("../../image/files/edgecam.toml");
const CLOUD_CFG: &str = include_str!("../../image/files/90-edgecam.cfg");
const DEBIAN: &str = include_str!("../../image/flavours/debian.sh");
const RASPIOS: &str = include_str!("../../image/flavours/raspios.sh");
const BOOKWORM: &str = include_str!("../../image/flavours/bookworm.sh");

/// The recipe: the build script and the customize step it runs.
static BUILD: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("{BUILD_SH}\n{CUSTOMIZE}"));

#[test]
fn both_flavours_share_one_recipe_and_differ_in_sources_and_packages() {
    let _bound = crate::common::time_bound(
        "image_recipe::both_flavours_share_one_recipe_and_differ_in_sources_and_packages",
        None,
    );
    for (name, flavour, suite) in [
        ("debian", DEBIAN, "trixie"),
        ("raspios", RASPIOS, "trixie"),
        ("bookworm", BOOKWORM, "bookworm"),
    ] {
        let suite_line = format!("FLAVOUR_SUITE={suite}\n");
        assert!(flavour.contains(&suite_line), "{name} is not on {suite}");
        assert!(
            flavour.contains(&format!(" {suite} ")),
            "{name}'s sources are not {suite}'s"
        );
        // bookworm takes the rest from the debian flavour.
        let whole = if name == "bookworm" {
            assert!(flavour.contains(". image/flavours/debian.sh"));
            format!("{DEBIAN}\n{flavour}")
        } else {
            flavour.to_string()
        };
        for needed in [
            "FLAVOUR_SOURCES=",
            "FLAVOUR_PACKAGES=",
            "FLAVOUR_KEYRING=",
            "flavour_setup()",
            "flavour_customize()",
            "flavour_fetch_keyring()",
        ] {
            assert!(whole.contains(needed), "{name} lacks {needed}");
        }
    }
    assert!(DEBIAN.contains("linux-image-arm64") && DEBIAN.contains("ROOTPART=LABEL=RASPIROOT"));
    // Raspberry Pi OS: its kernels (Pi 3/4 and Pi 5), libcamera's GStreamer element, and a
    // command line that finds our root partition.
    for p in [
        "linux-image-rpi-v8",
        "linux-image-rpi-2712",
        "gstreamer1.0-libcamera",
    ] {
        assert!(RASPIOS.contains(p), "{p}");
    }
    assert!(RASPIOS.contains("root=LABEL=RASPIROOT"));
    assert!(BUILD_SH.contains("image/flavours/$FLAVOUR.sh"));
    assert!(
        BUILD_SH.contains("\"$FLAVOUR_SUITE\" \"$ROOTFS\""),
        "each flavour names its Debian release"
    );
}

#[test]
fn imagers_cloud_init_files_are_read_from_the_boot_partition() {
    let _bound = crate::common::time_bound(
        "image_recipe::imagers_cloud_init_files_are_read_from_the_boot_partition",
        None,
    );
    assert!(BUILD_SH.contains("cloud-init") && BUILD_SH.contains("netplan.io"));
    assert!(CUSTOMIZE.contains("90-edgecam.cfg"));
    assert!(CLOUD_CFG.contains("fs_label: RASPIFIRM"), "{CLOUD_CFG}");
    assert!(CLOUD_CFG.contains("datasource_list: [ NoCloud, None ]"));
    // The image grows its own root; cloud-init must not race it.
    assert!(CLOUD_CFG.contains("growpart:") && CLOUD_CFG.contains("resize_rootfs: false"));
    assert!(
        PROVISION_UNIT.contains("cloud-init-local.service"),
        "edgecam.toml first"
    );
}

#[test]
fn partition_labels_agree() {
    let _bound = crate::common::time_bound("image_recipe::partition_labels_agree", None);
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
    assert!(DEBIAN.contains("ROOTPART=LABEL=RASPIROOT"));
    assert!(GENIMAGE.contains("mountpoint = \"/boot/firmware\""));
    assert!(
        !BUILD.contains("losetup") && !BUILD.contains("mount -o loop"),
        "no loop mounts"
    );
}

#[test]
fn first_boot_applies_the_boot_partition_file_before_the_daemon() {
    let _bound = crate::common::time_bound(
        "image_recipe::first_boot_applies_the_boot_partition_file_before_the_daemon",
        None,
    );
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
    let _bound = crate::common::time_bound(
        "image_recipe::the_image_config_is_valid_and_serves_on_port_80",
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("edgecam.toml");
    std::fs::write(&path, IMAGE_CONFIG).unwrap();
    let cfg = edgecam::config::load_file_only(&path).expect("image config is valid");
    assert_eq!(cfg.http.listen.port(), 80);
}

#[test]
fn ssh_host_keys_are_made_before_debians_config_check() {
    let _bound = crate::common::time_bound(
        "image_recipe::ssh_host_keys_are_made_before_debians_config_check",
        None,
    );
    // Debian's ssh.service runs `sshd -t` first, which fails without host keys; the
    // drop-in resets the list so the keys come first.
    assert!(CUSTOMIZE.contains(
        "ExecStartPre=\\nExecStartPre=/usr/bin/ssh-keygen -A\\nExecStartPre=/usr/sbin/sshd -t"
    ));
    assert!(CUSTOMIZE.contains("rm -f \"$ROOT\"/etc/ssh/ssh_host_*"));
}

#[test]
fn the_page_and_rtsp_are_advertised_on_mdns_at_the_image_ports() {
    let _bound = crate::common::time_bound(
        "image_recipe::the_page_and_rtsp_are_advertised_on_mdns_at_the_image_ports",
        None,
    );
    let service = include_str!("../../image/files/edgecam.avahi.service");
    assert!(CUSTOMIZE.contains("/etc/avahi/services/edgecam.service"));
    // Well-formed, with one service per door.
    let mut reader = quick_xml::Reader::from_str(service);
    let mut types = Vec::new();
    let mut ports = Vec::new();
    let mut current = String::new();
    loop {
        match reader.read_event().expect("well-formed avahi service file") {
            quick_xml::events::Event::Start(e) => {
                current = String::from_utf8_lossy(e.name().as_ref()).into_owned();
            }
            quick_xml::events::Event::Text(t) => {
                let text = t.decode().expect("text").trim().to_string();
                match current.as_str() {
                    "type" => types.push(text),
                    "port" => ports.push(text),
                    _ => {}
                }
            }
            quick_xml::events::Event::End(_) => current.clear(),
            quick_xml::events::Event::Eof => break,
            _ => {}
        }
    }
    assert_eq!(types, ["_http._tcp", "_rtsp._tcp"]);
    // The image's page port and the default RTSP port.
    assert!(IMAGE_CONFIG.contains("listen = \"0.0.0.0:80\""));
    let rtsp_default = edgecam::config::load_str("").expect("defaults").rtsp_listen;
    assert_eq!(rtsp_default.map(|a| a.port()), Some(8554));
    assert_eq!(ports, ["80", "8554"]);
}
