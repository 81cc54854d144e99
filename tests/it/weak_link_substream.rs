//! A viewer behind a thin link (a veth pair into a network namespace of the test's own,
//! its egress limited by `tbf`) is moved to the sub-stream once its receiver reports show
//! loss, keeps a moving picture there, and is moved back to the main stream once the limit
//! is lifted; a viewer on a good link meanwhile gets every frame. Needs root (namespaces,
//! tc); skipped without.

use crate::common;

use common::netns::ThinLink;
use common::{Daemon, rust_viewer::RustViewer};
use serde_json::Value;
use std::time::{Duration, Instant};

/// The link's limit: well under the main stream, well over the sub-stream.
const THIN_KBIT: u32 = 700;

/// The daemon on every address, media on `bind_ips`: the main stream at 1280x720 (well
/// over the thin link), the sub-stream at 320x180 and 150 kbit/s (well under it).
async fn on_both_links(bind_ips: &str) -> Daemon {
    Daemon::start_on(
        "0.0.0.0:0",
        &[
            ("EDGECAM_WEBRTC__BIND_IPS", bind_ips),
            ("EDGECAM_CAMERA__WIDTH", "1280"),
            ("EDGECAM_CAMERA__HEIGHT", "720"),
            ("EDGECAM_ENCODER__BITRATE_KBPS", "2500"),
            ("EDGECAM_ENCODER__KEYFRAME_INTERVAL_S", "2"),
            ("EDGECAM_SUBSTREAM__WIDTH", "320"),
            ("EDGECAM_SUBSTREAM__HEIGHT", "180"),
            ("EDGECAM_SUBSTREAM__BITRATE_KBPS", "150"),
        ],
    )
    .await
}

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
    let daemon = on_both_links(&bind).await;
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
    let far = link.spawn_inside(move || async move {
        let url = format!("ws://{}:{port}/one2many", ThinLink::HOST);
        let v = RustViewer::join_from(&url, ThinLink::FAR.parse().unwrap()).await;
        let _ = far_tx.send((v.answer.clone(), v.received.clone()));
        let _ = stop_rx.await;
        v.close().await;
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
    // What the thin link lost was asked for again and resent, within the NACK budget.
    let resent = far_link(&down)["packets_resent"].as_u64().unwrap_or(0);
    let budget = edgecam::peer::nack_budget::BURST
        + edgecam::peer::nack_budget::PACKETS_PER_S * (moved_down - joined).as_secs_f64();
    assert!(
        resent > 0 && resent as f64 <= budget,
        "{resent} packets resent to the thin link's viewer (budget {budget:.0}): {down}"
    );
    let before = shown(joined, moved_down) as f64 / (moved_down - joined).as_secs_f64();
    // Past the catch-up right after the move (the GOP it started from, at once).
    tokio::time::sleep(Duration::from_secs(5)).await;
    let on_sub = shown(moved_down + Duration::from_secs(2), Instant::now()) as f64 / 3.0;
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
        (8.0..16.0).contains(&on_sub),
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
    // Down and up; a probe tried while the link was still thin adds a pair.
    let moves = far_link(&up)["stream_moves"].as_u64().unwrap_or(0);
    assert!(moves >= 2 && moves % 2 == 0, "{moves} moves: {up}");
    tokio::time::sleep(Duration::from_secs(5)).await;
    let on_main = shown(moved_up + Duration::from_secs(2), Instant::now()) as f64 / 3.0;
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
        .filter(|t| *t >= lifted && *t < moved_up + Duration::from_secs(5))
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

/// The same with Chromium behind the thin link (the browser itself inside the namespace):
/// its own receiver reports move it down, its picture becomes the sub-stream's size, and
/// after the limit is lifted it is the camera's size again, decoding at full rate.
#[test]
fn chromium_on_a_weak_link_gets_the_substream_and_then_the_main_stream() {
    let _bound = crate::common::time_bound(
        "weak_link_substream::chromium_on_a_weak_link_gets_the_substream_and_then_the_main_stream",
        None,
    );
    let test = "chromium_on_a_weak_link_gets_the_substream_and_then_the_main_stream";
    if !common::browser::installed() {
        eprintln!("SKIPPED {test}: Chromium is not installed");
        return;
    }
    let Some(link) = ThinLink::create_or_skip(test) else {
        return;
    };
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let daemon = on_both_links(ThinLink::HOST).await;
        let url = format!("http://{}:{}/", ThinLink::HOST, daemon.addr.port());
        // Chromium and its DevTools connection live in the namespace, on a thread of
        // their own, sampling the page's decoder every 250 ms for this thread.
        let (samples_tx, samples) = std::sync::mpsc::channel::<(Instant, Value)>();
        let (stop_tx, stop_rx) = std::sync::mpsc::channel::<()>();
        let far = link.spawn_inside(move || async move {
            let browser = common::browser::Browser::launch(&[]).await;
            let page = browser.open(&url).await;
            while stop_rx.try_recv().is_err() {
                let v = page.eval(common::browser::VIEWER_PROBE).await;
                if samples_tx.send((Instant::now(), v)).is_err() {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(250)).await;
            }
            page.close().await;
        });
        let mut seen: Vec<(Instant, Value)> = Vec::new();
        let latest = |seen: &mut Vec<(Instant, Value)>| {
            seen.extend(samples.try_iter());
            seen.last().map(|(_, v)| v.clone()).unwrap_or_default()
        };
        // Decoding rate and picture width over the last `secs` of samples.
        let rate = |seen: &Vec<(Instant, Value)>, secs: f64| {
            let now = Instant::now();
            let window: Vec<&(Instant, Value)> = seen
                .iter()
                .filter(|(t, _)| (now - *t).as_secs_f64() <= secs)
                .collect();
            let (Some(a), Some(b)) = (window.first(), window.last()) else {
                return (0.0, 0);
            };
            let frames = |v: &Value| v["frames"].as_f64().unwrap_or(0.0);
            let dt = (b.0 - a.0).as_secs_f64().max(0.001);
            (
                (frames(&b.1) - frames(&a.1)) / dt,
                b.1["width"].as_u64().unwrap_or(0),
            )
        };
        let wait = |what: &str, secs: u64| {
            let deadline = Instant::now() + Duration::from_secs(secs);
            let what = what.to_string();
            move || {
                assert!(
                    Instant::now() < deadline,
                    "Chromium behind the thin link: {what}"
                );
            }
        };
        // Playing on a free link first.
        let check = wait("first frames", 60);
        while latest(&mut seen)["frames"].as_u64().unwrap_or(0) < 30 {
            check();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        let (fps, width) = rate(&seen, 2.0);
        eprintln!("Chromium on a free link: {fps:.1} frames decoded per second, {width} wide");
        assert_eq!(width, 1280);

        link.limit(Some(THIN_KBIT));
        let limited = Instant::now();
        let down = daemon
            .wait_status(30, |s| s["viewer_links"][0]["stream"] == "sub")
            .await;
        eprintln!(
            "moved down {:?} after the limit: {}",
            limited.elapsed(),
            down["viewer_links"][0]
        );
        let check = wait("the sub-stream's picture", 20);
        while latest(&mut seen)["width"] != 320 {
            check();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        // Past the catch-up right after the move (the GOP it started from, at once).
        tokio::time::sleep(Duration::from_secs(5)).await;
        latest(&mut seen);
        let (fps, width) = rate(&seen, 3.0);
        eprintln!("Chromium on the sub-stream: {fps:.1} frames decoded per second, {width} wide");
        assert!(fps >= 7.0, "{fps:.1} frames/s on the sub-stream (10 fps)");

        link.limit(None);
        let lifted = Instant::now();
        daemon
            .wait_status(40, |s| s["viewer_links"][0]["stream"] == "main")
            .await;
        let check = wait("the main stream's picture again", 20);
        while latest(&mut seen)["width"] != 1280 {
            check();
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        eprintln!(
            "back on the main stream {:?} after the limit went",
            lifted.elapsed()
        );
        tokio::time::sleep(Duration::from_secs(3)).await;
        latest(&mut seen);
        let (fps, _) = rate(&seen, 3.0);
        eprintln!("Chromium back on the main stream: {fps:.1} frames decoded per second");
        assert!(fps >= 20.0, "{fps:.1} frames/s back on the main stream");
        assert_eq!(
            latest(&mut seen)["pc"],
            "connected",
            "the same connection throughout"
        );
        let _ = stop_tx.send(());
        far.join().expect("Chromium thread");
        daemon.stop().await;
    });
    drop(link);
}
