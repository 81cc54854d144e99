//! ONVIF as Home Assistant uses it: its own library (onvif-zeep-async, from PyPI, in the
//! project's virtualenv) makes the integration's calls — services, clock, device
//! information, network interfaces, capabilities, media capabilities, profiles (H.264
//! only), stream URIs and the snapshot URI — and what it gets plays: the main stream's
//! URI in ffprobe, the snapshot URI as a JPEG. Bad SOAP gets a SOAP fault.

use crate::common;

use common::{Daemon, http_full};
use std::process::Command;

fn python() -> Option<std::path::PathBuf> {
    let p = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python");
    p.exists().then_some(p)
}

/// Runs Home Assistant's calls against `daemon` with the given credentials; what the
/// client learnt (an `error` key when it failed).
async fn add_camera(
    python: &std::path::Path,
    daemon: &Daemon,
    user: &str,
    password: &str,
) -> serde_json::Value {
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/clients/onvif_home_assistant.py"
    );
    let port = daemon.addr.port().to_string();
    let (python, user, password) = (python.to_path_buf(), user.to_string(), password.to_string());
    let out = tokio::task::spawn_blocking(move || {
        Command::new(python)
            .args([script, "127.0.0.1", &port, &user, &password])
            .output()
            .expect("python runs")
    })
    .await
    .expect("client");
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|_| {
        panic!(
            "client output: {text} {}",
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// With a viewer password, Home Assistant's library gets in only with a right
/// UsernameToken (PasswordDigest), and its snapshot only with HTTP Digest; the stream
/// URI it is given plays with the same credentials.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_passwords_only_the_right_credentials_add_the_camera() {
    let _bound = crate::common::time_bound(
        "onvif_home_assistant::with_passwords_only_the_right_credentials_add_the_camera",
        None,
    );
    let Some(python) = python() else {
        eprintln!(
            "SKIPPED with_passwords_only_the_right_credentials_add_the_camera: no target/pyenv"
        );
        return;
    };
    let viewer_hash = edgecam::auth::hash_password("front-door-cam").expect("hash");
    let daemon = Daemon::start_with_admin(
        &[
            ("EDGECAM_RTSP__LISTEN", "127.0.0.1:0"),
            ("EDGECAM_AUTH__VIEWER_PASSWORD_HASH", &viewer_hash),
        ],
        "the-owner-only",
    )
    .await;
    // The harness's own requests (HTTP Basic as admin) have made the admin password
    // known for NVR logins; the viewer's is learnt at its first use on the page.
    let basic = crate::common::basic_auth("x", "front-door-cam");
    let (code, _, _) = http_full(
        daemon.addr,
        "GET",
        "/api/status",
        &[("Authorization", &basic)],
        "",
    )
    .await;
    assert_eq!(code, 200);

    // Without a credential: the clock (to make a digest with), nothing else.
    let soap = [("Content-Type", "application/soap+xml")];
    let ask = |op: &str, ns: &str| {
        format!(
            "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body>\
             <x:{op} xmlns:x=\"{ns}\"/></s:Body></s:Envelope>"
        )
    };
    let device = "http://www.onvif.org/ver10/device/wsdl";
    let (code, _, _) = http_full(
        daemon.addr,
        "POST",
        "/onvif/device_service",
        &soap,
        &ask("GetSystemDateAndTime", device),
    )
    .await;
    assert_eq!(code, 200);
    let (code, _, answer) = http_full(
        daemon.addr,
        "POST",
        "/onvif/media_service",
        &soap,
        &ask("GetProfiles", "http://www.onvif.org/ver10/media/wsdl"),
    )
    .await;
    assert_eq!(code, 400, "{answer}");
    assert!(answer.contains("ter:NotAuthorized"), "{answer}");
    let wrong = add_camera(&python, &daemon, "viewer", "front-door-cat").await;
    assert!(
        wrong.get("error").is_some(),
        "a wrong password is refused: {wrong}"
    );
    let stranger = add_camera(&python, &daemon, "root", "front-door-cam").await;
    assert!(
        stranger.get("error").is_some(),
        "an unknown user is refused: {stranger}"
    );
    for (user, password) in [("viewer", "front-door-cam"), ("admin", "the-owner-only")] {
        let v = add_camera(&python, &daemon, user, password).await;
        assert!(v.get("error").is_none(), "{user}: {v}");
        assert_eq!(v["profiles"].as_array().map(Vec::len), Some(2), "{v}");
        assert!(
            v["snapshot_jpeg_bytes"].as_u64().unwrap_or(0) > 1000,
            "snapshot over HTTP Digest: {v}"
        );
    }
    // Five wrong attempts in a row from this address, and even the right password
    // waits (the page's limit, shared).
    for _ in 0..5 {
        let w = add_camera(&python, &daemon, "viewer", "guessing-again").await;
        assert!(w.get("error").is_some(), "{w}");
    }
    let blocked = add_camera(&python, &daemon, "viewer", "front-door-cam").await;
    assert!(
        blocked["error"]
            .as_str()
            .is_some_and(|e| e.contains("too many")),
        "{blocked}"
    );
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn home_assistants_onvif_library_adds_the_camera() {
    let _bound = crate::common::time_bound(
        "onvif_home_assistant::home_assistants_onvif_library_adds_the_camera",
        None,
    );
    let Some(python) = python() else {
        eprintln!(
            "SKIPPED home_assistants_onvif_library_adds_the_camera: no target/pyenv (sh tests/setup.sh)"
        );
        return;
    };
    let daemon = Daemon::start(&[
        ("EDGECAM_RTSP__LISTEN", "127.0.0.1:0"),
        ("EDGECAM_SUBSTREAM__WIDTH", "320"),
        ("EDGECAM_SUBSTREAM__HEIGHT", "180"),
    ])
    .await;
    let rtsp = daemon.status().await["rtsp"]["port"]
        .as_u64()
        .expect("RTSP port");
    let v = add_camera(&python, &daemon, "admin", "unused").await;
    assert!(v.get("error").is_none(), "{v}");
    assert_eq!(v["model"], "edgecam", "{v}");
    assert_eq!(v["firmware"], env!("CARGO_PKG_VERSION"));
    assert!(v["serial"].as_str().is_some_and(|s| !s.is_empty()), "{v}");
    assert!(v["utc_year"].as_u64().unwrap_or(0) >= 2024, "{v}");
    assert!(
        v["macs"].as_array().is_some_and(|m| !m.is_empty()),
        "the MAC keys the device in Home Assistant: {v}"
    );
    assert_eq!(v["snapshot_capable"], true);
    let profiles = v["profiles"].as_array().expect("profiles");
    assert_eq!(profiles.len(), 2, "{v}");
    assert_eq!(profiles[0]["token"], "main");
    assert_eq!(
        (
            profiles[0]["width"].as_u64(),
            profiles[0]["height"].as_u64()
        ),
        (Some(640), Some(360))
    );
    assert_eq!(
        (
            profiles[1]["width"].as_u64(),
            profiles[1]["height"].as_u64()
        ),
        (Some(320), Some(180))
    );
    let main_uri = profiles[0]["uri"].as_str().unwrap_or_default().to_string();
    assert_eq!(main_uri, format!("rtsp://127.0.0.1:{rtsp}/stream"));
    assert_eq!(profiles[1]["uri"], format!("rtsp://127.0.0.1:{rtsp}/sub"));
    assert_eq!(
        v["snapshot_uri"],
        format!("http://127.0.0.1:{}/snapshot.jpg", daemon.addr.port())
    );

    // What it was told plays.
    let probe = tokio::task::spawn_blocking(move || {
        Command::new("ffprobe")
            .args([
                "-v",
                "error",
                "-rtsp_transport",
                "tcp",
                "-select_streams",
                "v:0",
            ])
            .args([
                "-show_entries",
                "stream=codec_name,width",
                "-of",
                "csv=p=0",
                &main_uri,
            ])
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default()
    })
    .await
    .expect("ffprobe");
    assert_eq!(probe, "h264,640");
    let (code, kind, jpeg) = crate::snapshot_jpeg::get_bytes(&daemon, "/snapshot.jpg").await;
    assert_eq!((code, kind.as_str()), (200, "image/jpeg"));
    assert_eq!(crate::snapshot_jpeg::jpeg_size(&jpeg), Some((640, 360)));

    // Bad SOAP: a fault, never a crash; the daemon serves on.
    let soap = [("Content-Type", "application/soap+xml")];
    for body in [
        "not xml at all",
        "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body><x:Reboot xmlns:x=\"http://www.onvif.org/ver10/device/wsdl\"/></s:Body></s:Envelope>",
        "<s:Envelope><s:Body>",
    ] {
        let (code, _, answer) =
            http_full(daemon.addr, "POST", "/onvif/device_service", &soap, body).await;
        assert_eq!(code, 400, "{answer}");
        assert!(
            answer.contains("soap:Fault") && answer.contains("soap:Sender"),
            "{answer}"
        );
    }
    assert_eq!(daemon.status().await["pipeline"]["state"], "running");
    daemon.stop().await;
}
