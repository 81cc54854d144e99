//! Upstream push: daemon A publishes its test pattern to daemon B's `/whip` (one encode
//! serves A's own viewers and the push); a viewer on B decodes it; B is killed and
//! restarted on the same address, and A reconnects by itself; A stopping frees B.

use crate::common;

use common::{Daemon, rust_viewer::RustViewer};

const TOKEN: &str = "upstream-token-0123456789";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pushes_to_b_and_reconnects_after_b_restarts() {
    let _bound = crate::common::time_bound(
        "upstream_push_reconnects::a_pushes_to_b_and_reconnects_after_b_restarts",
        None,
    );
    let b_extra = [
        ("EDGECAM_CAMERA__AUTOSTART", "false"),
        ("EDGECAM_WHIP__TOKEN", TOKEN),
    ];
    let b = Daemon::start(&b_extra).await;
    let b_addr = b.addr;
    let url = format!("http://{b_addr}/whip");
    let a = Daemon::start(&[
        ("EDGECAM_UPSTREAM__WHIP_URL", url.as_str()),
        ("EDGECAM_UPSTREAM__TOKEN", TOKEN),
    ])
    .await;
    let s = a
        .wait_status(30, |s| s["upstream"]["state"] == "live")
        .await;
    assert!(
        s["upstream"]["resource"]
            .as_str()
            .is_some_and(|r| r.starts_with(&format!("http://{b_addr}/whip/"))),
        "{s}"
    );
    b.wait_status(10, |s| s["presenter"] == "browser").await;

    // A viewer on B gets A's picture; A's own viewer gets it too, from the same encode.
    let on_b = RustViewer::join(&b.ws_url()).await;
    assert!(on_b.wait_frames(15, 30).await >= 15, "frames on B");
    let on_a = RustViewer::join(&a.ws_url()).await;
    assert!(on_a.wait_frames(15, 30).await >= 15, "frames on A");
    let au = on_b.received.lock().unwrap().access_units[0].clone();
    assert!(
        au.windows(4).any(|w| w == [0, 0, 0, 1]),
        "H.264 access units"
    );
    on_b.close().await;

    // B goes away: A notices and retries with backoff, showing the error meanwhile.
    b.stop().await;
    let s = a
        .wait_status(60, |s| s["upstream"]["state"] != "live")
        .await;
    eprintln!("A while B is down: {}", s["upstream"]);
    let b2 = Daemon::start_on(&b_addr.to_string(), &b_extra).await;
    a.wait_status(90, |s| s["upstream"]["state"] == "live")
        .await;
    let again = RustViewer::join(&b2.ws_url()).await;
    assert!(
        again.wait_frames(15, 30).await >= 15,
        "frames on the restarted B"
    );
    // A's local viewer never stopped.
    let before = on_a.frames();
    assert!(on_a.wait_frames(before + 15, 20).await >= before + 15);
    again.close().await;
    on_a.close().await;
    // A stopping ends its session on B (DELETE): B's presenter place is free at once.
    a.stop().await;
    b2.wait_status(3, |s| s["presenter"] == "none").await;
    b2.stop().await;
}
