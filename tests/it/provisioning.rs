//! Boot-partition provisioning: a valid file is applied to the system (settings layered
//! onto the image's, hostname, Wi-Fi, SSH keys, time zone) and kept renamed without its
//! secrets; a later file is applied again on top, keeping what it does not name; an
//! invalid file changes nothing and the running daemon reports the error.

use crate::common;

use common::Daemon;
use std::os::unix::fs::PermissionsExt;
use std::process::Command;

fn provision(boot: &std::path::Path, root: &std::path::Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(["provision", "--boot"])
        .arg(boot)
        .arg("--root")
        .arg(root)
        .output()
        .expect("edgecam provision runs")
}

const GOOD: &str = r#"
[camera]
source = "v4l2:/dev/video0"
fps = 25

[provisioning]
hostname = "cam-garden"
wifi_ssid = "home"
wifi_psk = "correct horse battery"
wifi_country = "GB"
ssh_authorized_keys = ["ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAA admin@laptop"]
timezone = "Europe/London"
viewer_password = "family-room-7"
admin_password = "only-me-please"
"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_file_is_applied_kept_and_errors_are_reported() {
    let _bound = crate::common::time_bound(
        "provisioning::boot_file_is_applied_kept_and_errors_are_reported",
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("boot");
    let root = dir.path().join("root");
    std::fs::create_dir_all(&boot).unwrap();
    std::fs::create_dir_all(root.join("etc")).unwrap();
    std::fs::write(root.join("etc/hosts"), "127.0.0.1\tlocalhost\n").unwrap();
    // The daemon's group: its config must stay readable to it (as root the test can
    // chown to any group; otherwise only to its own).
    use std::os::unix::fs::MetadataExt;
    let me = std::fs::metadata(&root).unwrap();
    let edgecam_gid = if me.uid() == 0 { 4242 } else { me.gid() };
    std::fs::write(
        root.join("etc/group"),
        format!("root:x:0:\nedgecam:x:{edgecam_gid}:\n"),
    )
    .unwrap();
    std::fs::write(
        root.join("etc/passwd"),
        format!(
            "root:x:0:0::/root:/bin/sh\nedgecam:x:{}:{edgecam_gid}::/:/usr/sbin/nologin\n",
            me.uid()
        ),
    )
    .unwrap();
    let file = boot.join("edgecam.toml");
    // The image's own settings: port 80.
    std::fs::create_dir_all(root.join("etc/edgecam")).unwrap();
    std::fs::write(
        root.join("etc/edgecam/edgecam.toml"),
        "[http]\nlisten = \"0.0.0.0:80\"\n",
    )
    .unwrap();
    // The image has cloud-init (for Raspberry Pi Imager's files).
    std::fs::create_dir_all(root.join("etc/cloud/cloud.cfg.d")).unwrap();

    // Nothing on the boot partition: nothing to do.
    let out = provision(&file, &root);
    assert!(out.status.success());

    // The settings page chose a width and a frame rate earlier; the boot file below
    // names the frame rate, so the page's choice for it goes and its width stays.
    let page = root.join("var/lib/edgecam/settings.toml");
    std::fs::create_dir_all(page.parent().unwrap()).unwrap();
    std::fs::write(&page, "[camera]\nwidth = 320\nfps = 10\n").unwrap();
    std::fs::write(&file, GOOD).unwrap();
    let out = provision(&file, &root);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let settings = std::fs::read_to_string(root.join("etc/edgecam/edgecam.toml")).unwrap();
    assert!(
        settings.contains("v4l2:/dev/video0") && settings.contains("fps = 25"),
        "{settings}"
    );
    assert!(
        settings.contains("listen = \"0.0.0.0:80\""),
        "the image's port is kept: {settings}"
    );
    assert!(
        !settings.contains("wifi_psk"),
        "secrets stay out of the daemon's config"
    );
    let applied = std::fs::metadata(root.join("etc/edgecam/edgecam.toml")).unwrap();
    assert_eq!(applied.gid(), edgecam_gid, "group edgecam");
    assert_eq!(applied.mode() & 0o777, 0o640);
    // Plain passwords become argon2 hashes; the plain text is nowhere in /etc.
    assert!(
        settings.contains("viewer_password_hash = \"$argon2id$")
            && settings.contains("admin_password_hash = \"$argon2id$")
            && !settings.contains("family-room-7")
            && !settings.contains("only-me-please"),
        "{settings}"
    );
    let left = std::fs::read_to_string(&page).unwrap();
    assert!(
        left.contains("width = 320") && !left.contains("fps"),
        "the boot file wins for the keys it names: {left}"
    );
    // The passwords themselves are kept for RTSP Digest and ONVIF logins, in the state
    // directory, readable by the daemon's user alone, bound to the hashes just written.
    let kept_path = root.join("var/lib/edgecam/nvr-credentials");
    let kept: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&kept_path).expect("NVR credentials kept")).unwrap();
    assert_eq!(kept["viewer"]["password"], "family-room-7");
    assert_eq!(kept["admin"]["password"], "only-me-please");
    let hash = kept["viewer"]["for_hash"].as_str().unwrap();
    assert!(settings.contains(hash), "bound to the configured hash");
    let meta = std::fs::metadata(&kept_path).unwrap();
    assert_eq!(meta.mode() & 0o777, 0o600);
    assert_eq!(
        (meta.uid(), meta.gid()),
        (me.uid(), edgecam_gid),
        "owned by edgecam"
    );
    let check = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .arg("check-config")
        .arg(root.join("etc/edgecam/edgecam.toml"))
        .output()
        .unwrap();
    assert!(check.status.success(), "applied settings are valid");
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "cam-garden\n"
    );
    // edgecam.toml's hostname wins over Imager's user-data: cloud-init is told to keep it.
    let cloud = std::fs::read_to_string(
        root.join("etc/cloud/cloud.cfg.d")
            .join(edgecam::provision::CLOUD_INIT_HOSTNAME),
    )
    .unwrap();
    assert!(cloud.contains("preserve_hostname: true"), "{cloud}");
    assert!(
        std::fs::read_to_string(root.join("etc/hosts"))
            .unwrap()
            .contains("127.0.1.1\tcam-garden")
    );
    let wpa = root.join("etc/wpa_supplicant/wpa_supplicant-wlan0.conf");
    let wpa_text = std::fs::read_to_string(&wpa).unwrap();
    assert!(
        wpa_text.contains("ssid=686f6d65\n") && wpa_text.contains("country=GB"),
        "{wpa_text}"
    );
    assert!(wpa_text.contains("psk=\"correct horse battery\""));
    assert_eq!(
        std::fs::metadata(&wpa).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let keys = root.join("root/.ssh/authorized_keys");
    assert!(
        std::fs::read_to_string(&keys)
            .unwrap()
            .starts_with("ssh-ed25519 ")
    );
    assert_eq!(
        std::fs::metadata(&keys).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert_eq!(
        std::fs::read_link(root.join("etc/localtime")).unwrap(),
        std::path::PathBuf::from("/usr/share/zoneinfo/Europe/London")
    );
    // The original is kept, renamed, with its content.
    assert!(!file.exists());
    let kept: Vec<_> = std::fs::read_dir(&boot)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(kept.len(), 1);
    assert!(
        kept[0]
            .file_name()
            .unwrap()
            .to_str()
            .unwrap()
            .starts_with("edgecam.toml.applied-")
    );
    // The original is kept as written, but for the plain passwords and the Wi-Fi key
    // (the FAT partition is readable by anyone holding the card).
    let kept_text = std::fs::read_to_string(&kept[0]).unwrap();
    assert!(
        !kept_text.contains("family-room-7")
            && !kept_text.contains("only-me-please")
            && !kept_text.contains("correct horse"),
        "{kept_text}"
    );
    assert_eq!(
        kept_text
            .replace(
                "# viewer_password = (applied; removed from this copy)",
                "viewer_password = \"family-room-7\""
            )
            .replace(
                "# admin_password = (applied; removed from this copy)",
                "admin_password = \"only-me-please\""
            )
            .replace(
                "# wifi_psk = (applied; removed from this copy)",
                "wifi_psk = \"correct horse battery\""
            ),
        GOOD
    );

    // A bad file later: nothing changes, the error is recorded, the file stays to be fixed.
    std::fs::write(
        &file,
        "[camera]\nfps = 0\n[provisioning]\nhostname = \"not ok\"\n",
    )
    .unwrap();
    let out = provision(&file, &root);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("camera.fps") && err.contains("provisioning.hostname"),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "cam-garden\n"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("etc/edgecam/edgecam.toml")).unwrap(),
        settings
    );
    assert!(file.exists(), "a rejected file is left in place");
    let state = root.join("var/lib/edgecam");
    let recorded = std::fs::read_to_string(state.join("provision-error")).unwrap();
    assert!(recorded.contains("camera.fps"), "{recorded}");

    // The daemon boots on and reports it: status, page, LED.
    let state_dir = std::sync::Arc::new(tempfile::tempdir().unwrap());
    std::fs::copy(
        state.join("provision-error"),
        state_dir.path().join("provision-error"),
    )
    .unwrap();
    let daemon = Daemon::start_full("127.0.0.1:0", &[], state_dir).await;
    let s = daemon
        .wait_status(5, |s| s["leds"]["status"] == "fast_blink")
        .await;
    assert!(
        s["config_error"].as_str().unwrap().contains("camera.fps"),
        "{s}"
    );
    assert_eq!(
        s["pipeline"]["state"], "running",
        "the camera streams with the previous settings"
    );
    let (_, page) = daemon.get("/").await;
    assert!(page.contains("config_error"), "the page shows it");
    daemon.stop().await;

    // A fixed file is applied on the next boot, and the error clears.
    std::fs::write(
        &file,
        "[camera]\nfps = 15\n[provisioning]\nhostname = \"cam-garden-2\"\n",
    )
    .unwrap();
    assert!(provision(&file, &root).status.success());
    assert_eq!(
        std::fs::read_to_string(root.join("etc/hostname")).unwrap(),
        "cam-garden-2\n"
    );
    // Layered on top: what this file does not name is kept, passwords included (a file
    // that only renames the camera must not open it to the LAN).
    let later = std::fs::read_to_string(root.join("etc/edgecam/edgecam.toml")).unwrap();
    assert!(
        later.contains("fps = 15") && later.contains("0.0.0.0:80"),
        "{later}"
    );
    assert!(later.contains("v4l2:/dev/video0"), "{later}");
    assert!(
        later.contains("admin_password_hash = \"$argon2id$"),
        "{later}"
    );
    assert!(!state.join("provision-error").exists());
    assert_eq!(
        std::fs::read_dir(&boot).unwrap().count(),
        2,
        "both applied files are kept"
    );
}
