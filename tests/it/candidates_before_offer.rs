//! Candidates that arrive before their peer exists are queued and applied, not dropped;
//! and a viewer whose socket closes mid-negotiation leaves no peer behind.

use crate::common;

use common::{Daemon, Ws, rust_viewer::RustViewer};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queued_candidates_are_applied_and_aborted_joins_leave_nothing() {
    let _bound = crate::common::time_bound(
        "candidates_before_offer::queued_candidates_are_applied_and_aborted_joins_leave_nothing",
        None,
    );
    let daemon = Daemon::start(&[]).await;

    // All of the client's candidates go first, and the server's are ignored: media can
    // only flow if the server applied the queued ones.
    let viewer = RustViewer::join_with(&daemon.ws_url(), true).await;
    assert_eq!(viewer.answer["response"], "accepted", "{}", viewer.answer);
    let got = viewer.wait_frames(10, 20).await;
    assert!(
        got >= 10,
        "no media: queued candidates were not applied ({got} frames)"
    );
    assert_eq!(daemon.status().await["viewers"], 1);

    // Five clients send a real offer and hang up before reading the answer.
    for _ in 0..5 {
        let probe = RustViewer::offer_sdp().await;
        let mut ws = Ws::connect(&daemon.ws_url()).await;
        ws.send_json(&json!({"id": "viewer", "sdpOffer": probe}))
            .await;
        ws.send_json(&json!({"id": "onIceCandidate", "candidate": {"candidate": "candidate:1 1 udp 2122260223 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}})).await;
        let _ = ws.inner.close(None).await;
    }
    // Back to where it was: the one real viewer, nothing else, still receiving.
    let s = daemon
        .wait_status(20, |s| s["viewers"] == 1 && s["fanout"]["subscribed"] == 1)
        .await;
    assert_eq!(s["viewers"], 1);
    let before = viewer.frames();
    assert!(viewer.wait_frames(before + 10, 20).await >= before + 10);
    viewer.close().await;
    daemon
        .wait_status(10, |s| s["viewers"] == 0 && s["fanout"]["subscribed"] == 0)
        .await;
    daemon.stop().await;
}
