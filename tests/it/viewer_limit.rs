//! viewers.max is enforced: the viewer beyond it is rejected with a message saying so,
//! and its place opens again when a viewer leaves.

use crate::common;

use common::{Daemon, rust_viewer::RustViewer};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_viewer_beyond_the_limit_is_rejected_until_a_place_frees() {
    let _bound = crate::common::time_bound(
        "viewer_limit::the_viewer_beyond_the_limit_is_rejected_until_a_place_frees",
        None,
    );
    let daemon = Daemon::start(&[("EDGECAM_VIEWERS__MAX", "2")]).await;
    let a = RustViewer::join(&daemon.ws_url()).await;
    let b = RustViewer::join(&daemon.ws_url()).await;
    assert_eq!(a.answer["response"], "accepted");
    assert_eq!(b.answer["response"], "accepted");

    let c = RustViewer::join(&daemon.ws_url()).await;
    assert_eq!(c.answer["id"], "viewerResponse");
    assert_eq!(c.answer["response"], "rejected");
    let msg = c.answer["message"].as_str().unwrap();
    assert!(
        msg.contains("Too many viewers") && msg.contains('2'),
        "{msg}"
    );
    assert!(c.answer.get("sdpAnswer").is_none());
    assert_eq!(daemon.status().await["viewers"], 2);
    c.close().await;

    // b leaves; a place opens for a newcomer, and a keeps watching.
    b.close().await;
    daemon.wait_status(10, |s| s["viewers"] == 1).await;
    let d = RustViewer::join(&daemon.ws_url()).await;
    assert_eq!(d.answer["response"], "accepted", "{}", d.answer);
    assert!(d.wait_frames(5, 20).await >= 5);
    let before = a.frames();
    assert!(a.wait_frames(before + 10, 20).await >= before + 10);
    a.close().await;
    d.close().await;
    daemon.wait_status(10, |s| s["viewers"] == 0).await;
    daemon.stop().await;
}
