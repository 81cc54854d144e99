//! A peer that never completes ICE is reaped after `webrtc.connect_timeout_s` (30 s by
//! default, 3 s here): a WebSocket viewer that was
//! accepted but never connects gets `stopCommunication` and its place back, and a WHEP
//! session that never connects is ended (its resource is gone). Both hold a viewer place
//! meanwhile, so this is what keeps half-open clients from filling `viewers.max`.

use crate::common;

use common::rust_viewer::RustViewer;
use common::{Daemon, Ws, header, http_full};
use serde_json::json;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn peers_that_never_connect_are_reaped_after_the_connect_timeout() {
    let _bound = crate::common::time_bound(
        "unconnected_peer_reaped::peers_that_never_connect_are_reaped_after_the_connect_timeout",
        None,
    );
    let daemon = Daemon::start(&[("EDGECAM_WEBRTC__CONNECT_TIMEOUT_S", "3")]).await;
    // Offers from throwaway peers carry no candidates and their peers are gone: ICE can
    // never complete.
    let mut ws = Ws::connect(&daemon.ws_url()).await;
    ws.send_json(&json!({"id": "viewer", "sdpOffer": RustViewer::offer_sdp().await}))
        .await;
    assert_eq!(ws.recv_id("viewerResponse").await["response"], "accepted");
    let (code, head, body) = http_full(
        daemon.addr,
        "POST",
        "/whep",
        &[("Content-Type", "application/sdp")],
        &RustViewer::offer_sdp().await,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let location = header(&head, "location").expect("Location").to_string();
    let t0 = Instant::now();
    assert_eq!(
        daemon.status().await["viewers"],
        2,
        "both hold a place while connecting"
    );

    // The WebSocket viewer is told, after the limit and not long before it.
    let m = ws.recv_id_within("stopCommunication", 15).await;
    let waited = t0.elapsed();
    assert!(m.is_some(), "stopCommunication after the connect limit");
    assert!(
        waited >= Duration::from_millis(2500),
        "not reaped early: {waited:?}"
    );
    daemon
        .wait_status(10, |s| s["viewers"] == 0 && s["fanout"]["subscribed"] == 0)
        .await;
    let (code, _, _) = http_full(daemon.addr, "DELETE", &location, &[], "").await;
    assert_eq!(code, 404, "the WHEP session was ended");
    // The socket itself stays usable: the viewer may try again.
    ws.send_json(&json!({"id": "stop"})).await;
    ws.send_json(&json!({"id": "nonsense"})).await;
    assert_eq!(ws.recv().await["id"], "error");
    daemon.stop().await;
}
