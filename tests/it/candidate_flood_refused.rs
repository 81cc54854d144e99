//! A peer takes at most 64 remote ICE candidates: a flood is answered with errors, not
//! stored, and the viewer keeps receiving.

use crate::common;

use common::{Daemon, rust_viewer::RustViewer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_candidate_flood_is_refused_and_media_goes_on() {
    let _bound = crate::common::time_bound(
        "candidate_flood_refused::a_candidate_flood_is_refused_and_media_goes_on",
        None,
    );
    let daemon = Daemon::start(&[]).await;
    let viewer = RustViewer::join(&daemon.ws_url()).await;
    assert!(viewer.wait_frames(10, 20).await >= 10);
    let received = viewer.received.clone();
    let (pc, mut ws) = viewer.into_ws().await;
    for i in 0..100 {
        ws.send_json(&json!({"id": "onIceCandidate", "candidate": {
            "candidate": format!("candidate:{i} 1 udp 2122260223 127.0.0.1 {} typ host", 20000 + i),
            "sdpMid": "0", "sdpMLineIndex": 0}}))
            .await;
    }
    let mut refused = 0;
    while let Some(m) = ws.recv_timeout(3).await {
        if m["id"] == "error"
            && m["message"]
                .as_str()
                .is_some_and(|t| t.contains("too many ICE candidates"))
        {
            refused += 1;
        }
    }
    assert!(
        refused >= 36,
        "the flood beyond 64 is refused ({refused} refusals)"
    );
    let before = received.lock().unwrap().access_units.len();
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    let after = received.lock().unwrap().access_units.len();
    assert!(after > before + 10, "media goes on: {before} -> {after}");
    let _ = pc.close().await;
    daemon.stop().await;
}
