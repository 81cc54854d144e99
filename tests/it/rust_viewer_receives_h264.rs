//! A Rust WebRTC client speaking the Kurento protocol receives whole H.264 access units
//! from the daemon's test pattern, starting with an IDR that carries SPS and PPS.

use crate::common;

use common::{Daemon, rust_viewer::RustViewer};
use edgecam::media::{nal, nal_types};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rust_viewer_receives_h264_starting_with_an_idr() {
    let _bound = crate::common::time_bound(
        "rust_viewer_receives_h264::rust_viewer_receives_h264_starting_with_an_idr",
        None,
    );
    let daemon = Daemon::start(&[("EDGECAM_ENCODER__KEYFRAME_INTERVAL_S", "10")]).await;
    let viewer = RustViewer::join(&daemon.ws_url()).await;
    assert_eq!(viewer.answer["id"], "viewerResponse");
    assert_eq!(viewer.answer["response"], "accepted", "{}", viewer.answer);
    let sdp = viewer.answer["sdpAnswer"].as_str().unwrap();
    assert!(sdp.contains("H264"), "answer offers H.264: {sdp}");
    assert!(sdp.contains("packetization-mode=1"));

    let got = viewer.wait_frames(30, 20).await;
    assert!(got >= 30, "received {got} access units");
    let received = viewer.received.lock().unwrap();
    let first = nal_types(&received.access_units[0]);
    assert!(first.contains(&nal::SPS), "first AU has SPS: {first:?}");
    assert!(first.contains(&nal::PPS), "first AU has PPS: {first:?}");
    assert!(first.contains(&nal::IDR), "first AU is an IDR: {first:?}");
    // Every later AU is a whole picture: it has at least one slice NAL (1 or 5).
    for au in received.access_units.iter() {
        let t = nal_types(au);
        assert!(
            t.iter().any(|&n| n == 1 || n == nal::IDR),
            "AU without a slice: {t:?}"
        );
    }
    // The data channel brought status with the viewer counted.
    let status_msgs: Vec<serde_json::Value> = received
        .channel
        .iter()
        .filter_map(|t| serde_json::from_str(t).ok())
        .collect();
    assert!(
        status_msgs
            .iter()
            .any(|m| m["type"] == "status" && m["viewers"] == 1),
        "status on data channel: {:?}",
        received.channel
    );
    drop(received);
    let s = daemon.status().await;
    assert_eq!(s["viewers"], 1);
    assert!(
        s["forced_idrs"].as_u64().unwrap() >= 1
            || s["fanout"]["joins_from_recent_gop"].as_u64().unwrap() >= 1,
        "with a 10 s GOP the join forced an IDR, or started from one just made: {s}"
    );
    viewer.close().await;
    daemon
        .wait_status(10, |s| s["viewers"] == 0 && s["fanout"]["subscribed"] == 0)
        .await;
    daemon.stop().await;
}

/// Viewers joining together with a 10 s GOP: each starts at a whole IDR (SPS, PPS, IDR
/// slice), whether its join forced one or started from the GOP a moment old, and together
/// they cost at most two forced IDRs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_joining_together_each_start_at_an_idr() {
    let _bound = crate::common::time_bound(
        "rust_viewer_receives_h264::viewers_joining_together_each_start_at_an_idr",
        None,
    );
    let daemon = Daemon::start(&[("EDGECAM_ENCODER__KEYFRAME_INTERVAL_S", "10")]).await;
    // Past the pipeline's own first IDR, so what comes is forced or reused.
    daemon
        .wait_status(20, |s| s["frames_encoded"].as_u64().unwrap_or(0) > 45)
        .await;
    let before = daemon.status().await;
    let url = daemon.ws_url();
    let viewers = futures_util::future::join_all((0..4).map(|_| RustViewer::join(&url))).await;
    for v in &viewers {
        assert_eq!(v.answer["response"], "accepted", "{}", v.answer);
        let got = v.wait_frames(15, 20).await;
        assert!(got >= 15, "received {got} access units");
        let received = v.received.lock().unwrap();
        let first = nal_types(&received.access_units[0]);
        for (n, what) in [
            (nal::SPS, "SPS"),
            (nal::PPS, "PPS"),
            (nal::IDR, "an IDR slice"),
        ] {
            assert!(
                first.contains(&n),
                "a joiner's first AU has {what}: {first:?}"
            );
        }
    }
    let after = daemon.status().await;
    let count = |s: &serde_json::Value, k: &str| s["fanout"][k].as_u64().unwrap_or(0);
    let forced = after["forced_idrs"].as_u64().unwrap() - before["forced_idrs"].as_u64().unwrap();
    eprintln!(
        "4 joins: {forced} forced IDRs, {} from the young GOP",
        count(&after, "joins_from_recent_gop") - count(&before, "joins_from_recent_gop")
    );
    assert!(
        (1..=2).contains(&forced),
        "4 joins together forced {forced} IDRs: {after}"
    );
    for v in viewers {
        v.close().await;
    }
    daemon.stop().await;
}

/// A viewer's PLI (its decoder lost the picture) brings a fresh IDR with a 10 s GOP: the
/// request reaches the encoder of the stream that viewer is fed from.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pli_brings_an_idr_at_once() {
    let _bound = crate::common::time_bound(
        "rust_viewer_receives_h264::a_pli_brings_an_idr_at_once",
        None,
    );
    let daemon = Daemon::start(&[("EDGECAM_ENCODER__KEYFRAME_INTERVAL_S", "10")]).await;
    let viewer = RustViewer::join(&daemon.ws_url()).await;
    assert_eq!(viewer.answer["response"], "accepted", "{}", viewer.answer);
    assert!(viewer.wait_frames(20, 20).await >= 20);
    let idrs = |v: &RustViewer| {
        let r = v.received.lock().unwrap();
        r.access_units
            .iter()
            .filter(|au| nal_types(au).contains(&nal::IDR))
            .count()
    };
    // Past the coalescing window of the join's own forced IDR.
    tokio::time::sleep(std::time::Duration::from_millis(700)).await;
    let (before, forced) = (idrs(&viewer), daemon.status().await["forced_idrs"].clone());
    viewer.send_pli().await;
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
    while idrs(&viewer) == before {
        assert!(
            tokio::time::Instant::now() < deadline,
            "no IDR within 3 s of the PLI (10 s GOP)"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let s = daemon.status().await;
    assert!(
        s["forced_idrs"].as_u64() > forced.as_u64(),
        "the IDR was forced: {forced} → {}",
        s["forced_idrs"]
    );
    viewer.close().await;
    daemon.stop().await;
}
