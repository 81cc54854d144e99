//! Hostile and malformed signaling input gets an `error` or a rejected response, and a
//! live viewer keeps receiving frames throughout.

use crate::common;

use common::{Daemon, Ws, http_get, rust_viewer::RustViewer};
use futures_util::SinkExt;
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_is_answered_and_the_live_viewer_keeps_watching() {
    let _bound = crate::common::time_bound(
        "bad_input_keeps_serving::bad_input_is_answered_and_the_live_viewer_keeps_watching",
        None,
    );
    let daemon = Daemon::start(&[]).await;
    let viewer = RustViewer::join(&daemon.ws_url()).await;
    assert!(viewer.wait_frames(10, 20).await >= 10);
    let mut ws = Ws::connect(&daemon.ws_url()).await;

    // Not JSON.
    ws.send_text("this is not json").await;
    let m = ws.recv().await;
    assert_eq!(m["id"], "error");
    assert!(
        m["message"].as_str().unwrap().contains("not valid JSON"),
        "{m}"
    );

    // JSON without an id, and an id of the wrong type.
    for text in [
        r#"{"sdpOffer":"v=0"}"#,
        r#"{"id":42}"#,
        "[]",
        "null",
        "\"viewer\"",
    ] {
        ws.send_text(text).await;
        let m = ws.recv().await;
        assert_eq!(m["id"], "error", "{text} -> {m}");
    }

    // Unknown id.
    ws.send_json(&json!({"id": "selfDestruct"})).await;
    let m = ws.recv().await;
    assert_eq!(m["id"], "error");
    assert!(
        m["message"].as_str().unwrap().contains("selfDestruct"),
        "{m}"
    );

    // viewer without sdpOffer, with a non-string one, with an empty one.
    for msg in [
        json!({"id": "viewer"}),
        json!({"id": "viewer", "sdpOffer": 7}),
        json!({"id": "viewer", "sdpOffer": ""}),
    ] {
        ws.send_json(&msg).await;
        let m = ws.recv().await;
        assert_eq!(m["id"], "error", "{msg} -> {m}");
        assert!(m["message"].as_str().unwrap().contains("sdpOffer"), "{m}");
    }

    // Garbage SDP: rejected with a reason.
    for sdp in [
        "garbage",
        "v=0\r\nthis is not sdp\r\n",
        "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\n",
    ] {
        ws.send_json(&json!({"id": "viewer", "sdpOffer": sdp}))
            .await;
        let m = ws.recv_id("viewerResponse").await;
        assert_eq!(m["response"], "rejected", "{sdp:?} -> {m}");
        assert!(!m["message"].as_str().unwrap().is_empty());
    }

    // Candidates: malformed ones are errors; well-formed ones before an offer are queued silently.
    ws.send_json(&json!({"id": "onIceCandidate"})).await;
    assert_eq!(ws.recv().await["id"], "error");
    ws.send_json(&json!({"id": "onIceCandidate", "candidate": "nope"}))
        .await;
    assert_eq!(ws.recv().await["id"], "error");
    for i in 0..64 {
        ws.send_json(&json!({"id": "onIceCandidate", "candidate": {"candidate": format!("candidate:{i} 1 udp 1 127.0.0.1 {} typ host", 1000 + i), "sdpMid": "0", "sdpMLineIndex": 0}})).await;
    }
    // The 65th overflows the queue.
    ws.send_json(&json!({"id": "onIceCandidate", "candidate": {"candidate": "candidate:x 1 udp 1 127.0.0.1 9 typ host", "sdpMid": "0", "sdpMLineIndex": 0}})).await;
    let m = ws.recv().await;
    assert_eq!(m["id"], "error");
    assert!(m["message"].as_str().unwrap().contains("too many"), "{m}");

    // A second presenter while the camera presents.
    ws.send_json(&json!({"id": "presenter", "sdpOffer": "v=0\r\n"}))
        .await;
    let m = ws.recv_id("presenterResponse").await;
    assert_eq!(m["response"], "rejected");
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains("Another presenter is active"),
        "{m}"
    );

    // A huge text frame (200 KiB) gets an error naming the limit.
    let huge = json!({"id": "viewer", "sdpOffer": "v".repeat(200 * 1024)}).to_string();
    ws.send_text(huge).await;
    let m = ws.recv().await;
    assert_eq!(m["id"], "error");
    assert!(m["message"].as_str().unwrap().contains("too large"), "{m}");

    // Binary frames are refused.
    ws.inner
        .send(Message::Binary(vec![0u8, 1, 2, 3].into()))
        .await
        .unwrap();
    assert_eq!(ws.recv().await["id"], "error");

    // The session still works after all that: stop is accepted silently.
    ws.send_json(&json!({"id": "stop"})).await;

    // A frame beyond any sane size closes that one connection, nothing else.
    let mut rude = Ws::connect(&daemon.ws_url()).await;
    let _ = rude
        .inner
        .send(Message::Text("x".repeat(2 * 1024 * 1024).into()))
        .await;
    assert!(
        rude.recv_timeout(5).await.is_none(),
        "oversized frame closes the socket"
    );

    // Plain HTTP garbage and unknown paths.
    let (code, _) = http_get(daemon.addr, "/../../etc/passwd").await;
    assert!(code == 404 || code == 400, "{code}");
    let (code, _) = http_get(daemon.addr, "/one2many").await;
    assert!(code >= 400, "GET without upgrade is refused: {code}");

    // The live viewer kept receiving the whole time.
    let before = viewer.frames();
    let after = viewer.wait_frames(before + 30, 20).await;
    assert!(after >= before + 30, "viewer stalled: {before} -> {after}");
    let s = daemon.status().await;
    assert_eq!(
        s["viewers"], 1,
        "the rejected offers left no viewer behind: {s}"
    );
    viewer.close().await;
    daemon.stop().await;
}
