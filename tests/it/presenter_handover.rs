//! The camera was asked to stream while a browser presented, so it takes over the moment
//! the browser leaves. Every viewer of the browser — WebSocket and WHEP alike — is still
//! released and told `stopCommunication` (then `presenterAvailable`), however quickly the
//! camera claimed its place; viewers that join again watch the camera.

use crate::common;

use common::{Daemon, http_full, rust_presenter::RustPresenter, rust_viewer::RustViewer};

const VIEWERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_are_released_when_the_camera_takes_over() {
    let _bound = crate::common::time_bound(
        "presenter_handover::viewers_are_released_when_the_camera_takes_over",
        None,
    );
    let daemon = Daemon::start(&[("EDGECAM_CAMERA__AUTOSTART", "false")]).await;
    let mut presenter = RustPresenter::present(&daemon.ws_url()).await;
    assert_eq!(presenter.response["response"], "accepted");
    presenter.connect(20).await;

    let mut viewers = Vec::new();
    for _ in 0..VIEWERS {
        let v = RustViewer::join(&daemon.ws_url()).await;
        assert_eq!(v.answer["response"], "accepted", "{}", v.answer);
        viewers.push(v);
    }
    for v in &viewers {
        assert!(v.wait_frames(5, 20).await >= 5, "relayed frames");
    }
    // A WHEP viewer of the browser too (it need not connect to be a session).
    let offer = RustViewer::offer_sdp().await;
    let (code, head, body) = http_full(
        daemon.addr,
        "POST",
        "/whep",
        &[("Content-Type", "application/sdp")],
        &offer,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    let whep = common::header(&head, "location")
        .expect("Location")
        .to_string();
    daemon
        .wait_status(10, |s| s["viewers"] == VIEWERS as u64 + 1)
        .await;

    // The camera is asked to stream; it waits for the browser to finish.
    let (code, body) = common::http(daemon.addr, "POST", "/api/stream/start").await;
    assert_eq!(code, 200, "{body}");
    assert_eq!(daemon.status().await["presenter"], "browser");

    presenter.stop().await;
    for (i, v) in viewers.iter().enumerate() {
        assert!(
            v.wait_message("stopCommunication", 10).await.is_some(),
            "viewer {i} was told its presenter left"
        );
        assert!(
            v.wait_message("presenterAvailable", 10).await.is_some(),
            "viewer {i} was told the camera is there"
        );
    }
    let s = daemon
        .wait_status(20, |s| s["presenter"] == "camera" && s["viewers"] == 0)
        .await;
    assert_eq!(s["fanout"]["subscribed"], 0, "{s}");
    // The WHEP session of the browser's stream was ended too.
    assert_eq!(
        http_full(daemon.addr, "DELETE", &whep, &[], "").await.0,
        404
    );

    for v in viewers {
        v.close().await;
    }
    let again = RustViewer::join(&daemon.ws_url()).await;
    assert_eq!(again.answer["response"], "accepted", "{}", again.answer);
    assert!(again.wait_frames(10, 20).await >= 10, "the camera's frames");
    again.close().await;
    daemon.stop().await;
}
