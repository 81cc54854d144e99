//! A camera that fails (a test source that ends after 45 frames) is restarted with
//! backoff while a real WebRTC viewer stays connected: its peer connection survives,
//! frames resume after each restart, and status shows the restarts, the backoff and the
//! error LED meanwhile.

use crate::common;

use common::{Daemon, rust_viewer::RustViewer};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewer_survives_pipeline_failures() {
    let _bound = crate::common::time_bound(
        "pipeline_fault_recovery::viewer_survives_pipeline_failures",
        None,
    );
    let daemon = Daemon::start(&[("EDGECAM_CAMERA__SOURCE", "test:frames=45")]).await;
    let viewer = RustViewer::join(&daemon.ws_url()).await;
    assert!(viewer.wait_frames(5, 20).await >= 5);

    // Watch status through two failures, noting what it shows.
    let mut saw_error = None;
    let mut saw_fast_blink = false;
    let mut max_backoff = 0;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut frames_at_error = Vec::new();
    loop {
        let s = daemon.status().await;
        if s["pipeline"]["state"] == "error" {
            saw_error.get_or_insert(s["pipeline"]["detail"].as_str().unwrap_or("").to_string());
            frames_at_error.push(viewer.frames());
            max_backoff = max_backoff.max(s["restart_backoff_s"].as_u64().unwrap_or(0));
        }
        saw_fast_blink |= s["leds"]["status"] == "fast_blink";
        if s["pipeline_restarts"].as_u64().unwrap_or(0) >= 2 && s["pipeline"]["state"] == "running"
        {
            break;
        }
        assert!(Instant::now() < deadline, "no second restart: {s}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let reason = saw_error.expect("status showed the error");
    assert!(reason.contains("end of stream"), "{reason}");
    assert!(saw_fast_blink, "status LED blinked fast during the error");
    assert_eq!(max_backoff, 2, "backoff doubled (1 s, then 2 s)");

    // Same peer, same viewer: frames resume after the restart.
    let before = viewer.frames();
    assert!(before > *frames_at_error.first().unwrap_or(&0));
    assert!(
        viewer.wait_frames(before + 15, 20).await >= before + 15,
        "frames resumed"
    );
    let s = daemon.status().await;
    assert_eq!(s["viewers"], 1, "the viewer stayed connected: {s}");
    assert!(
        viewer.wait_message("stopCommunication", 0).await.is_none(),
        "viewers are not dropped by an internal restart"
    );
    viewer.close().await;
    daemon.stop().await;
}
