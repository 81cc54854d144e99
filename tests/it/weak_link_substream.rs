//! A viewer behind a thin link (a veth pair into a network namespace of the test's own,
//! its egress limited by `tbf`) is moved to the sub-stream once its receiver reports show
//! loss, keeps a moving picture there, and is moved back to the main stream once the limit
//! is lifted; a viewer on a good link meanwhile gets every frame. Needs root (namespaces,
//! tc); skipped without.

use crate::common;

use common::netns::{Netns, ThinLink};
use common::{Daemon, rust_viewer::RustViewer};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The link's limit: well under the main stream, well over the sub-stream.
const THIN_KBIT: u32 = 700;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_weak_link_moves_to_the_substream_and_back() {
    let _bound = crate::common::time_bound(
        "weak_link_substream::a_weak_link_moves_to_the_substream_and_back",
        None,
    );
    let test = "a_weak_link_moves_to_the_substream_and_back";
    let Some(link) = ThinLink::create_or_skip(test) else {
        return;
    };
    let bind = format!("127.0.0.1,{}", ThinLink::HOST);
    let daemon = Daemon::start_on(
        "0.0.0.0:0",
        &[
            ("EDGECAM_WEBRTC__BIND_IPS", bind.as_str()),
            ("EDGECAM_CAMERA__WIDTH", "1280"),
            ("EDGECAM_CAMERA__HEIGHT", "720"),
            ("EDGECAM_ENCODER__BITRATE_KBPS", "2500"),
            ("EDGECAM_ENCODER__KEYFRAME_INTERVAL_S", "2"),
            ("EDGECAM_SUBSTREAM__WIDTH", "320"),
            ("EDGECAM_SUBSTREAM__HEIGHT", "180"),
            ("EDGECAM_SUBSTREAM__BITRATE_KBPS", "150"),
        ],
    )
    .await;
    let port = daemon.addr.port();

    // The viewer on a good link, on loopback.
    let good = RustViewer::join(&daemon.ws_url()).await;
    assert_eq!(good.answer["response"], "accepted", "{}", good.answer);
    assert!(good.wait_frames(10, 20).await >= 10);

    // The viewer behind the thin link: its sockets must be the namespace's, so it lives
    // on a thread (and runtime) of its own inside it.
    link.limit(Some(THIN_KBIT));
    let (far_tx, far_rx) = std::sync::mpsc::channel();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let ns = link.namespace().to_string();
    let far = std::thread::spawn(move || {
        Netns::enter(&ns);
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let url = format!("ws://{}:{port}/one2many", ThinLink::HOST);
            let v = RustViewer::join_from(&url, ThinLink::FAR.parse().unwrap()).await;
            let _ = far_tx.send((v.answer.clone(), v.received.clone()));
            let _ = stop_rx.await;
            v.close().await;
        });
    });
    let (answer, weak) = far_rx
        .recv_timeout(Duration::from_secs(30))
        .expect("the far viewer joined");
    assert_eq!(answer["response"], "accepted", "{answer}");
    let joined = Instant::now();
    // Frames the weak viewer's decoder could show, between two instants.
    let shown = |from: Instant, to: Instant| {
        let r = weak.lock().unwrap();
        r.shown_at
            .iter()
            .filter(|t| **t >= from && **t < to)
            .count()
    };
    let good_frames = || good.frames();
    let frames_before = daemon.status().await["frames_encoded"].as_u64().unwrap();
    let good_before = good_frames();

    // Loss moves it down to the sub-stream, and it sees a moving picture there.
    let links = |s: &Value| s["viewer_links"].as_array().cloned().unwrap_or_default();
    let far_link = |s: &Value| {
        links(s)
            .into_iter()
            .max_by_key(|l| l["id"].as_u64())
            .unwrap_or_default()
    };
    let down = daemon
        .wait_status(30, |s| far_link(s)["stream"] == "sub")
        .await;
    let moved_down = Instant::now();
    eprintln!("moved down: {}", far_link(&down));
    let before = shown(joined, moved_down) as f64 / (moved_down - joined).as_secs_f64();
    tokio::time::sleep(Duration::from_secs(4)).await;
    let on_sub = shown(moved_down + Duration::from_secs(1), Instant::now()) as f64 / 3.0;
    eprintln!(
        "the weak viewer's frames shown per second: {before:.1} on the main stream over the thin link, {on_sub:.1} on the sub-stream"
    );
    // The sub-stream's first keyframe comes within its keyframe interval (2 s).
    let first = weak
        .lock()
        .unwrap()
        .shown_at
        .iter()
        .find(|t| **t >= moved_down)
        .copied()
        .expect("a frame shown on the sub-stream");
    assert!(
        first - moved_down < Duration::from_secs(2),
        "{:?} to the first frame on the sub-stream",
        first - moved_down
    );
    assert!(
        on_sub >= 8.0,
        "the weak viewer sees {on_sub:.1} frames/s on the sub-stream (10 fps)"
    );
    let s = daemon.status().await;
    assert!(
        links(&s).iter().filter(|l| l["stream"] == "main").count() == 1,
        "the good viewer stays on the main stream: {s}"
    );

    // The limit lifted: a probe moves it back up, and it stays there.
    link.limit(None);
    let lifted = Instant::now();
    let up = daemon
        .wait_status(40, |s| far_link(s)["stream"] == "main")
        .await;
    let moved_up = Instant::now();
    eprintln!(
        "moved up {:?} after the limit was lifted: {}",
        moved_up - lifted,
        far_link(&up)
    );
    assert_eq!(far_link(&up)["stream_moves"], 2, "{up}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    let on_main = shown(moved_up, Instant::now()) as f64 / 3.0;
    eprintln!("back on the main stream: {on_main:.1} frames shown per second");
    assert!(
        on_main >= 25.0,
        "back on the main stream: {on_main:.1} frames/s"
    );
    // Made before broken: no freeze around the move up.
    let window: Vec<Instant> = weak
        .lock()
        .unwrap()
        .shown_at
        .iter()
        .copied()
        .filter(|t| *t >= lifted && *t < moved_up + Duration::from_secs(3))
        .collect();
    let freeze = window
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    eprintln!("longest freeze around the move up: {freeze:?}");
    assert!(
        freeze < Duration::from_millis(500),
        "a {freeze:?} freeze around the move up"
    );

    // The good viewer got every frame meanwhile (30 fps; allow the frame in flight).
    let encoded = daemon.status().await["frames_encoded"].as_u64().unwrap() - frames_before;
    let got = (good_frames() - good_before) as u64;
    eprintln!("the good viewer: {got} of {encoded} frames");
    assert!(
        got as f64 >= 0.995 * encoded as f64 - 2.0,
        "the good viewer got {got} of {encoded} frames"
    );
    let _ = stop_tx.send(());
    far.join().expect("far viewer thread");
    good.close().await;
    daemon.stop().await;
    drop(link);
}
