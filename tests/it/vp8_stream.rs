//! The camera's second stream: a viewer whose only video codec is VP8 (a Firefox without
//! OpenH264) gets VP8 frames at `fallback.width`×`fallback.height`, starting on a
//! keyframe, encoded only while such a viewer watches; an H.264 viewer in the same room
//! keeps the camera's own stream throughout.

use crate::common;

use common::Daemon;
use common::rust_viewer::RustViewer;
use common::vp8_keyframe_size as keyframe_size;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_viewer_without_h264_gets_vp8_only_while_it_watches() {
    let _bound = crate::common::time_bound(
        "vp8_stream::a_viewer_without_h264_gets_vp8_only_while_it_watches",
        None,
    );
    let daemon = Daemon::start(&[
        ("EDGECAM_ENCODER__KEYFRAME_INTERVAL_S", "10"),
        ("EDGECAM_FALLBACK__WIDTH", "320"),
        ("EDGECAM_FALLBACK__HEIGHT", "180"),
    ])
    .await;
    let h264 = RustViewer::join(&daemon.ws_url()).await;
    assert_eq!(h264.answer["response"], "accepted", "{}", h264.answer);
    assert!(h264.wait_frames(10, 20).await >= 10);
    let s = daemon.status().await;
    assert_eq!(s["vp8"]["available"], true, "{s}");
    assert_eq!(
        s["vp8"]["running"], false,
        "no VP8 viewer, no VP8 encode: {s}"
    );
    let idle = s["vp8"]["frames_encoded"].as_u64().unwrap_or(0);
    assert_eq!(idle, 0, "{s}");

    let vp8 = RustViewer::join_vp8_only(&daemon.ws_url()).await;
    assert_eq!(vp8.answer["response"], "accepted", "{}", vp8.answer);
    let answer = vp8.answer["sdpAnswer"].as_str().unwrap_or_default();
    assert!(
        answer.contains("VP8/90000") && !answer.contains("H264"),
        "{answer}"
    );
    assert!(vp8.wait_frames(15, 20).await >= 15, "VP8 frames");
    {
        let r = vp8.received.lock().unwrap();
        assert_eq!(
            keyframe_size(&r.access_units[0]),
            Some((320, 180)),
            "the first frame is a key frame at the fallback size"
        );
    }
    let s = daemon.status().await;
    assert_eq!(s["vp8"]["running"], true, "{s}");
    assert_eq!(
        s["vp8"]["origin"], "camera",
        "the camera's second encode: {s}"
    );
    assert_eq!(s["vp8"]["viewers"], 1, "{s}");
    assert_eq!(s["viewers"], 2, "{s}");
    let (_, metrics) = daemon.get("/metrics").await;
    assert!(metrics.contains("edgecam_vp8_encoding 1"), "{metrics}");
    // The H.264 viewer kept its stream meanwhile.
    let before = h264.frames();
    assert!(h264.wait_frames(before + 10, 10).await >= before + 10);

    // The last VP8 viewer leaves: the encode stops, H.264 goes on.
    vp8.close().await;
    daemon
        .wait_status(15, |s| {
            s["vp8"]["viewers"] == 0 && s["vp8"]["running"] == false
        })
        .await;
    let frames = |s: &serde_json::Value| s["vp8"]["frames_encoded"].as_u64().unwrap_or(0);
    // (The branch is unlinked on the runner's next tick, 100 ms; frames in flight drain.)
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let stopped = frames(&daemon.status().await);
    let before = h264.frames();
    assert!(h264.wait_frames(before + 15, 10).await >= before + 15);
    assert!(
        frames(&daemon.status().await) <= stopped + 1,
        "no VP8 frames once nobody watches"
    );
    h264.close().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_the_fallback_a_vp8_only_viewer_is_told_in_words() {
    let _bound = crate::common::time_bound(
        "vp8_stream::without_the_fallback_a_vp8_only_viewer_is_told_in_words",
        None,
    );
    let daemon = Daemon::start(&[("EDGECAM_FALLBACK__ENABLED", "false")]).await;
    let vp8 = RustViewer::join_vp8_only(&daemon.ws_url()).await;
    assert_eq!(vp8.answer["response"], "rejected", "{}", vp8.answer);
    let message = vp8.answer["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("cannot play H.264") && message.contains("offers VP8"),
        "{message}"
    );
    assert!(!message.contains("RTPSender"), "no crate text: {message}");
    vp8.close().await;
    daemon.stop().await;
}
