//! The command line: --version, devices, check-config exit codes and messages.

use std::io::Write;
use std::process::Command;

fn edgecam(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(args)
        .output()
        .expect("run edgecam")
}

#[test]
fn version_prints_the_crate_version() {
    let _bound = crate::common::time_bound("cli::version_prints_the_crate_version", None);
    let out = edgecam(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("edgecam {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn devices_exits_zero_with_or_without_cameras() {
    let _bound = crate::common::time_bound("cli::devices_exits_zero_with_or_without_cameras", None);
    let out = edgecam(&["devices"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("No V4L2 capture devices found") || text.contains("use: source = \"v4l2:"),
        "{text}"
    );
    // GPIO chips too: where the header's pins would go, or that there are none.
    assert!(
        text.contains("No GPIO chips (/dev/gpiochip*) found.")
            || text.contains("header pin 17 (BCM):"),
        "{text}"
    );
}

#[test]
fn check_config_accepts_the_shipped_example() {
    let _bound = crate::common::time_bound("cli::check_config_accepts_the_shipped_example", None);
    let out = edgecam(&[
        "check-config",
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/src/config/edgecam.example.toml"
        ),
    ]);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).contains("valid"));
}

#[test]
fn check_config_exits_2_naming_every_bad_key() {
    let _bound = crate::common::time_bound("cli::check_config_exits_2_naming_every_bad_key", None);
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        f,
        "[camera]\nsource = \"webcam\"\nfps = 500\n[encoder]\nkind = \"vp8\"\n[viewers]\nmaxx = 3"
    )
    .unwrap();
    let out = edgecam(&["check-config", f.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for key in [
        "camera.source",
        "camera.fps",
        "encoder.kind",
        "viewers.maxx",
    ] {
        assert!(err.contains(key), "{key} missing from: {err}");
    }
}

#[test]
fn check_config_exits_2_on_missing_or_broken_files() {
    let _bound =
        crate::common::time_bound("cli::check_config_exits_2_on_missing_or_broken_files", None);
    let out = edgecam(&["check-config", "/nonexistent/edgecam.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "[camera\nsource = ").unwrap();
    let out = edgecam(&["check-config", f.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn check_config_reads_the_tls_certificate_files() {
    let _bound =
        crate::common::time_bound("cli::check_config_reads_the_tls_certificate_files", None);
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(
        f,
        "[tls]\nenabled = true\ncert_file = \"/nonexistent/c.pem\"\nkey_file = \"/nonexistent/k.pem\""
    )
    .unwrap();
    let out = edgecam(&["check-config", f.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("tls.cert_file") && err.contains("/nonexistent/c.pem"),
        "{err}"
    );
}

#[test]
fn run_refuses_a_bad_source_with_exit_2() {
    let _bound = crate::common::time_bound("cli::run_refuses_a_bad_source_with_exit_2", None);
    let out = edgecam(&["run", "--source", "webcam", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("camera.source"));
}

#[test]
fn hash_password_prints_an_argon2_hash_that_check_config_accepts() {
    let _bound = crate::common::time_bound(
        "cli::hash_password_prints_an_argon2_hash_that_check_config_accepts",
        None,
    );
    use std::io::Write;
    let hash_of = |input: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_edgecam"))
            .arg("hash-password")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let out = hash_of("family-room-7\n");
    assert!(out.status.success());
    let hash = String::from_utf8(out.stdout).unwrap().trim().to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("edgecam.toml");
    std::fs::write(
        &file,
        format!("[auth]\nviewer_password_hash = \"{hash}\"\n"),
    )
    .unwrap();
    assert!(
        edgecam(&["check-config", file.to_str().unwrap()])
            .status
            .success()
    );
    // A plain password where a hash belongs is named as a problem.
    std::fs::write(&file, "[auth]\nadmin_password_hash = \"hunter22\"\n").unwrap();
    let out = edgecam(&["check-config", file.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("auth.admin_password_hash"));
    // Too short.
    let out = hash_of("short\n");
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("8 to 128"));
}
