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
    let out = edgecam(&["--version"]);
    assert!(out.status.success());
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        format!("edgecam {}", env!("CARGO_PKG_VERSION"))
    );
}

#[test]
fn devices_exits_zero_with_or_without_cameras() {
    let out = edgecam(&["devices"]);
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("No V4L2 capture devices found") || text.contains("use: source = \"v4l2:"),
        "{text}"
    );
}

#[test]
fn check_config_accepts_the_shipped_example() {
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
    let out = edgecam(&["check-config", "/nonexistent/edgecam.toml"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot read"));
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "[camera\nsource = ").unwrap();
    let out = edgecam(&["check-config", f.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2));
}

#[test]
fn run_refuses_a_bad_source_with_exit_2() {
    let out = edgecam(&["run", "--source", "webcam", "--listen", "127.0.0.1:0"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("camera.source"));
}
