//! A client written only from the Kurento one2many protocol (plain JSON over the
//! WebSocket, the client makes every offer) does the presenter and viewer flows; every
//! response field the protocol defines is asserted.

use crate::common;

use common::{Daemon, Ws, rust_presenter::RustPresenter, rust_viewer::RustViewer};
use edgecam::media::{nal, nal_types};
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kurento_client_presents_and_views() {
    let _bound = crate::common::time_bound(
        "kurento_protocol_client::kurento_client_presents_and_views",
        None,
    );
    let daemon = Daemon::start(&[("EDGECAM_CAMERA__AUTOSTART", "false")]).await;

    // No presenter yet: a viewer is rejected with a message.
    let early = RustViewer::join(&daemon.ws_url()).await;
    assert_eq!(early.answer["id"], "viewerResponse");
    assert_eq!(early.answer["response"], "rejected");
    assert!(
        early.answer["message"]
            .as_str()
            .unwrap()
            .contains("No active presenter")
    );
    early.close().await;

    // presenter → presenterResponse accepted with an SDP answer.
    let mut presenter = RustPresenter::present(&daemon.ws_url()).await;
    let r = &presenter.response;
    assert_eq!(r["id"], "presenterResponse");
    assert_eq!(r["response"], "accepted", "{r}");
    let answer = r["sdpAnswer"].as_str().expect("sdpAnswer is a string");
    assert!(answer.starts_with("v=0"));
    assert!(
        answer.contains("H264") && answer.contains("a=recvonly"),
        "{answer}"
    );
    presenter.connect(20).await;
    // iceCandidate messages carry candidate, sdpMid and sdpMLineIndex.
    let cand = presenter
        .messages
        .iter()
        .find(|m| m["id"] == "iceCandidate")
        .expect("server trickled a candidate");
    assert!(
        cand["candidate"]["candidate"]
            .as_str()
            .unwrap()
            .starts_with("candidate:"),
        "{cand}"
    );
    assert!(cand["candidate"]["sdpMid"].is_string(), "{cand}");
    assert!(cand["candidate"]["sdpMLineIndex"].is_u64(), "{cand}");
    assert_eq!(daemon.status().await["presenter"], "browser");

    // A second presenter is rejected.
    let mut second = Ws::connect(&daemon.ws_url()).await;
    second
        .send_json(&json!({"id": "presenter", "sdpOffer": "v=0\r\n"}))
        .await;
    let m = second.recv_id("presenterResponse").await;
    assert_eq!(m["response"], "rejected");
    assert!(
        m["message"]
            .as_str()
            .unwrap()
            .contains("Another presenter is active"),
        "{m}"
    );
    assert!(m.get("sdpAnswer").is_none());

    // Unknown ids get an error.
    second.send_json(&json!({"id": "hello"})).await;
    let m = second.recv().await;
    assert_eq!(m["id"], "error");
    assert!(m["message"].is_string());

    // viewer → viewerResponse accepted; the relayed H.264 decodes from an IDR on.
    let viewer = RustViewer::join(&daemon.ws_url()).await;
    assert_eq!(viewer.answer["id"], "viewerResponse");
    assert_eq!(viewer.answer["response"], "accepted", "{}", viewer.answer);
    assert!(
        viewer.answer["sdpAnswer"]
            .as_str()
            .unwrap()
            .starts_with("v=0")
    );
    let got = viewer.wait_frames(20, 20).await;
    assert!(got >= 20, "viewer got {got} relayed frames");
    {
        let r = viewer.received.lock().unwrap();
        let first = nal_types(&r.access_units[0]);
        assert!(
            first.contains(&nal::IDR) && first.contains(&nal::SPS),
            "{first:?}"
        );
    }

    // The presenter stops: the viewer gets stopCommunication and is released.
    presenter.stop().await;
    let m = viewer
        .wait_message("stopCommunication", 10)
        .await
        .expect("stopCommunication");
    assert_eq!(m, json!({"id": "stopCommunication"}));
    viewer.close().await;
    let s = daemon
        .wait_status(10, |s| s["presenter"] == "none" && s["viewers"] == 0)
        .await;
    assert_eq!(s["fanout"]["subscribed"], 0);
    daemon.stop().await;
}
