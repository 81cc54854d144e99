//! WS-Discovery as NVRs use it: the WSDiscovery library (PyPI) probes for
//! NetworkVideoTransmitters in a network namespace of the test's own (multicast enabled
//! on its loopback, so nothing leaves it) and finds the camera, with its scopes and the
//! device service's address; that address answers ONVIF.

use crate::common;

use common::{Daemon, http_full};
use std::process::Command;

#[test]
fn the_wsdiscovery_library_finds_the_camera() {
    let _bound = crate::common::time_bound(
        "ws_discovery_finds_the_camera::the_wsdiscovery_library_finds_the_camera",
        None,
    );
    let python = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/pyenv/bin/python");
    if !python.exists() {
        eprintln!(
            "SKIPPED the_wsdiscovery_library_finds_the_camera: no target/pyenv (sh tests/setup.sh)"
        );
        return;
    }
    common::netns::run_inside(
        "the_wsdiscovery_library_finds_the_camera",
        move || async move {
            // Multicast on this namespace's loopback (its veth has it already).
            for args in [
                &["link", "set", "lo", "multicast", "on"][..],
                &["route", "add", "224.0.0.0/4", "dev", "lo"],
            ] {
                let ok = Command::new("ip")
                    .args(args)
                    .status()
                    .is_ok_and(|s| s.success());
                assert!(ok, "ip {args:?}");
            }
            let daemon = Daemon::start(&[("EDGECAM_ONVIF__DISCOVERY", "true")]).await;
            let script = concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/tests/clients/ws_discovery_probe.py"
            );
            let out = tokio::task::spawn_blocking(move || {
                Command::new(python)
                    .args([script, "3"])
                    .output()
                    .expect("python runs")
            })
            .await
            .expect("probe");
            let text = String::from_utf8_lossy(&out.stdout);
            let found: serde_json::Value = serde_json::from_str(text.trim()).unwrap_or_else(|_| {
                panic!(
                    "probe output: {text} {}",
                    String::from_utf8_lossy(&out.stderr)
                )
            });
            let found = found.as_array().expect("a list");
            assert_eq!(found.len(), 1, "one camera: {found:?}");
            let camera = &found[0];
            assert!(
                camera["epr"]
                    .as_str()
                    .is_some_and(|e| e.starts_with("urn:uuid:")),
                "{camera}"
            );
            let scopes = camera["scopes"].to_string();
            assert!(
                scopes.contains("onvif://www.onvif.org/type/video_encoder"),
                "{scopes}"
            );
            assert!(scopes.contains("onvif://www.onvif.org/name/"), "{scopes}");
            let xaddr = camera["xaddrs"][0].as_str().unwrap_or_default().to_string();
            assert_eq!(
                xaddr,
                format!(
                    "http://127.0.0.1:{}/onvif/device_service",
                    daemon.addr.port()
                ),
                "where the web server listens"
            );
            // The address found answers ONVIF.
            let (code, _, answer) = http_full(
            daemon.addr,
            "POST",
            "/onvif/device_service",
            &[("Content-Type", "application/soap+xml")],
            "<s:Envelope xmlns:s=\"http://www.w3.org/2003/05/soap-envelope\"><s:Body>\
             <GetDeviceInformation xmlns=\"http://www.onvif.org/ver10/device/wsdl\"/></s:Body></s:Envelope>",
        )
        .await;
            assert_eq!(code, 200, "{answer}");
            assert!(
                answer.contains("<tds:Model>edgecam</tds:Model>"),
                "{answer}"
            );
            daemon.stop().await;
        },
    );
}
