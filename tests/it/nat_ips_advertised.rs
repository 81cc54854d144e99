//! `webrtc.nat_ips`: a camera reached through a port forward or 1:1 NAT advertises its
//! host candidates at the NAT address (same port) instead of its local one.
//! (The media path through a real port forward is exercised by tests/it/image_boot.rs.)

use crate::common;

use common::{Daemon, rust_viewer::RustViewer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn host_candidates_carry_the_nat_address() {
    let _bound = crate::common::time_bound(
        "nat_ips_advertised::host_candidates_carry_the_nat_address",
        None,
    );
    let daemon = Daemon::start(&[
        ("EDGECAM_WEBRTC__NAT_IPS", "198.51.100.7"),
        ("EDGECAM_WEBRTC__UDP_PORTS", "47000-47009"),
    ])
    .await;
    let viewer = RustViewer::join(&daemon.ws_url()).await;
    assert_eq!(viewer.answer["response"], "accepted", "{}", viewer.answer);
    let first = viewer.wait_message("iceCandidate", 10).await;
    assert!(first.is_some(), "the daemon trickles its candidates");
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let candidates: Vec<String> = viewer
        .received
        .lock()
        .unwrap()
        .signaling
        .iter()
        .filter(|m| m["id"] == "iceCandidate")
        .filter_map(|m| m["candidate"]["candidate"].as_str().map(str::to_string))
        .collect();
    let hosts: Vec<&String> = candidates
        .iter()
        .filter(|c| c.contains(" typ host"))
        .collect();
    assert!(!hosts.is_empty(), "{candidates:?}");
    for c in &hosts {
        let f: Vec<&str> = c.split(' ').collect();
        assert_eq!(f[4], "198.51.100.7", "advertised at the NAT address: {c}");
        let port: u16 = f[5].parse().unwrap();
        assert!(
            (47000..=47009).contains(&port),
            "same port as the socket: {c}"
        );
    }
    assert!(
        !candidates.iter().any(|c| c.contains(" 127.0.0.1 ")),
        "the local address is not advertised: {candidates:?}"
    );
    viewer.close().await;
    daemon.stop().await;
}
