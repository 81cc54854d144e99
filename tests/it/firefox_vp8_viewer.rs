//! Debian's Firefox ESR, whose WebRTC has no H.264 without Cisco's OpenH264 plugin
//! (which it downloads from the internet; the test profile turns it off, as on a camera
//! LAN without internet), is answered with the camera's second, VP8 stream — the viewer
//! page and a plain Kurento one2many client alike — while a Chromium viewer in the same
//! room keeps the H.264 stream; and, in a network namespace of the test's own (Firefox
//! will not use loopback), the viewer page in Firefox plays the VP8 stream.

use crate::common;

use common::Daemon;
use common::browser::{Browser, VIEWER_PROBE, WHEP_PROBE, WHEP_WATCH};
use common::firefox::Firefox;

/// A Kurento one2many viewer written against the browser's own RTCPeerConnection: the
/// `viewerResponse` it gets.
const ONE2MANY_ANSWER: &str = r#"new Promise(async (resolve) => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', { direction: 'recvonly' });
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  const ws = new WebSocket(`ws://${location.host}/one2many`);
  ws.onopen = () => ws.send(JSON.stringify({ id: 'viewer', sdpOffer: offer.sdp }));
  ws.onmessage = (e) => {
    const m = JSON.parse(e.data);
    if (m.id === 'viewerResponse') { ws.close(); pc.close(); resolve(m); }
  };
  setTimeout(() => resolve({ timeout: true }), 15000);
})"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firefox_without_h264_is_answered_with_vp8() {
    let _bound = crate::common::time_bound(
        "firefox_vp8_viewer::firefox_without_h264_is_answered_with_vp8",
        None,
    );
    let daemon = Daemon::start(&[
        ("EDGECAM_CAMERA__WIDTH", "1280"),
        ("EDGECAM_CAMERA__HEIGHT", "720"),
        ("EDGECAM_ENCODER__KEYFRAME_INTERVAL_S", "10"),
    ])
    .await;
    let Some(ff) = Firefox::launch_or_skip("firefox_vp8_viewer").await else {
        return;
    };
    let Some(chromium) = Browser::launch_or_skip("firefox_vp8_viewer", &[]).await else {
        return;
    };
    // A Chromium viewer first: the camera's own H.264, and no VP8 encode for it.
    let page = chromium.open(&daemon.url("/")).await;
    page.wait_for(VIEWER_PROBE, 30, "Chromium decodes H.264", |v| {
        v["frames"].as_u64().unwrap_or(0) > 5 && v["width"] == 1280
    })
    .await;
    let s = daemon.status().await;
    assert_eq!(s["vp8"]["available"], true, "{s}");
    assert_eq!(s["vp8"]["running"], false, "nobody needs VP8 yet: {s}");

    ff.open(&daemon.url("/")).await;
    // The premise: this Firefox's WebRTC offers no H.264.
    let codecs = ff
        .eval("RTCRtpReceiver.getCapabilities('video').codecs.map(c => c.mimeType)")
        .await;
    let list: Vec<&str> = codecs
        .as_array()
        .expect("codec list")
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(list.contains(&"video/VP8"), "{codecs}");
    assert!(
        !list.contains(&"video/H264"),
        "OpenH264 is off in the test profile: {codecs}"
    );

    // A plain one2many client in Firefox is answered with the VP8 stream. (On loopback
    // Firefox gathers no candidates, so its media is checked in a network namespace by
    // the next test.)
    let m = ff.eval(ONE2MANY_ANSWER).await;
    assert_eq!(m["response"], "accepted", "{m}");
    let answer = m["sdpAnswer"].as_str().unwrap_or_default();
    assert!(answer.contains("VP8/90000"), "{answer}");
    assert!(!answer.contains("H264"), "{answer}");
    // The viewer page is accepted too, with the same stream.
    let page_answer = ff
        .wait_for(
            "window.edgecam && window.edgecam.pc && window.edgecam.pc.remoteDescription && window.edgecam.pc.remoteDescription.sdp",
            20,
            "the viewer page's answer",
            |v| v.as_str().is_some_and(|s| s.contains("m=video")),
        )
        .await;
    assert!(
        page_answer
            .as_str()
            .unwrap_or_default()
            .contains("VP8/90000"),
        "{page_answer}"
    );
    // Chromium, in the same room, still gets H.264.
    let before = page.eval(VIEWER_PROBE).await["frames"]
        .as_u64()
        .unwrap_or(0);
    page.wait_for(VIEWER_PROBE, 10, "Chromium plays on", |v| {
        v["frames"].as_u64().unwrap_or(0) > before + 10
    })
    .await;
    daemon.stop().await;
}

/// Firefox plays the VP8 stream on the viewer page. Firefox gathers no loopback
/// candidates, so daemon and browser run in a network namespace of the test's own with a
/// private address (see `common::netns`); everything stays inside it.
#[test]
fn firefox_plays_the_vp8_stream_on_the_viewer_page() {
    let _bound = crate::common::time_bound(
        "firefox_vp8_viewer::firefox_plays_the_vp8_stream_on_the_viewer_page",
        None,
    );
    if !std::path::Path::new(common::firefox::FIREFOX).exists() {
        eprintln!("SKIPPED firefox_plays_the_vp8_stream_on_the_viewer_page: no Firefox ESR");
        return;
    }
    common::netns::run_inside(
        "firefox_plays_the_vp8_stream_on_the_viewer_page",
        move || async move {
            let daemon = Daemon::start(&[
                ("EDGECAM_WEBRTC__BIND_IPS", common::netns::ADDRESS),
                ("EDGECAM_ENCODER__KEYFRAME_INTERVAL_S", "10"),
            ])
            .await;
            let ff = Firefox::launch().await;
            ff.open(&daemon.url("/")).await;
            let v = ff
                .wait_for(VIEWER_PROBE, 40, "Firefox decodes the VP8 stream", |v| {
                    v["frames"].as_u64().unwrap_or(0) > 10 && v["width"] == 640
                })
                .await;
            assert_eq!(v["pc"], "connected", "{v}");
            assert_eq!(v["height"], 360, "{v}");
            let s = daemon.status().await;
            assert_eq!(s["vp8"]["running"], true, "{s}");
            assert_eq!(s["vp8"]["viewers"], 1, "{s}");
            // Frames keep coming (presented, not one keyframe and a stall).
            let before = v["frames"].as_u64().unwrap_or(0);
            ff.wait_for(VIEWER_PROBE, 10, "Firefox keeps decoding", |v| {
                v["frames"].as_u64().unwrap_or(0) > before + 20
            })
            .await;
            // A WHEP player in Firefox (plain fetch + RTCPeerConnection) gets VP8 too.
            ff.open(&daemon.url("/healthz")).await;
            let r = ff.eval(WHEP_WATCH).await;
            assert_eq!(r["status"], 201, "{r}");
            let w = ff
                .wait_for(WHEP_PROBE, 30, "Firefox decodes VP8 over WHEP", |v| {
                    v["frames"].as_u64().unwrap_or(0) > 10 && v["width"] == 640
                })
                .await;
            assert_eq!(w["pc"], "connected", "{w}");
            // A WHEP client leaves with DELETE on its session.
            let gone = ff
                .eval("fetch(window.whep.location, { method: 'DELETE' }).then(r => r.status)")
                .await;
            assert_eq!(gone, 200, "{gone}");
            ff.open(&daemon.url("/")).await;
            // EDGECAM_FIREFOX_BENCH=N: N page loads timed to the first decoded VP8 frame
            // (printed for BENCHMARKS.md; asserts nothing about time).
            let runs: usize = std::env::var("EDGECAM_FIREFOX_BENCH")
                .ok()
                .and_then(|n| n.parse().ok())
                .unwrap_or(0);
            let mut times = Vec::new();
            for _ in 0..runs {
                ff.open("about:blank").await;
                daemon
                    .wait_status(15, |s| {
                        s["vp8"]["viewers"] == 0 && s["vp8"]["running"] == false
                    })
                    .await;
                let t0 = std::time::Instant::now();
                ff.open(&daemon.url("/")).await;
                ff.wait_for(VIEWER_PROBE, 30, "a frame", |v| {
                    v["frames"].as_u64().unwrap_or(0) > 0
                })
                .await;
                times.push(t0.elapsed().as_millis() as u64);
            }
            if !times.is_empty() {
                times.sort();
                let pick = |q: f64| times[((times.len() - 1) as f64 * q).round() as usize];
                eprintln!(
                    "Firefox, VP8 stream, page load to first decoded frame over {} loads: \
                 p50 {} ms, p95 {} ms, max {} ms",
                    times.len(),
                    pick(0.5),
                    pick(0.95),
                    times[times.len() - 1]
                );
            }
            drop(ff);
            daemon.wait_status(15, |s| s["vp8"]["viewers"] == 0).await;
            daemon.stop().await;
        },
    );
}

/// Capture-to-decoded latency in Firefox on the VP8 stream, read back from the picture
/// (source `test:stamp`; camera and fallback both 640x360, so the stamp's blocks are not
/// scaled). Asserts the stamps come through readable; prints the distribution for
/// BENCHMARKS.md (`EDGECAM_FIREFOX_LATENCY_FRAMES=450` for the measured run).
#[test]
fn firefox_reads_the_capture_stamp_on_the_vp8_stream() {
    let _bound = crate::common::time_bound(
        "firefox_vp8_viewer::firefox_reads_the_capture_stamp_on_the_vp8_stream",
        None,
    );
    if !std::path::Path::new(common::firefox::FIREFOX).exists() {
        eprintln!("SKIPPED firefox_reads_the_capture_stamp_on_the_vp8_stream: no Firefox ESR");
        return;
    }
    let frames: usize = std::env::var("EDGECAM_FIREFOX_LATENCY_FRAMES")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(90);
    common::netns::run_inside(
        "firefox_reads_the_capture_stamp_on_the_vp8_stream",
        move || async move {
            let daemon = Daemon::start(&[
                ("EDGECAM_WEBRTC__BIND_IPS", common::netns::ADDRESS),
                ("EDGECAM_CAMERA__SOURCE", "test:stamp"),
                ("EDGECAM_CAMERA__FPS", "30"),
                ("EDGECAM_FALLBACK__WIDTH", "640"),
                ("EDGECAM_FALLBACK__HEIGHT", "360"),
            ])
            .await;
            let ff = Firefox::launch().await;
            ff.open(&daemon.url("/")).await;
            ff.wait_for(VIEWER_PROBE, 40, "Firefox decodes the VP8 stream", |v| {
                v["frames"].as_u64().unwrap_or(0) > 5
            })
            .await;
            ff.eval(common::browser::LATENCY_PROBE).await;
            let v = ff
                .wait_for("window.lat", 60, "stamped frames read", |v| {
                    v["ms"].as_array().is_some_and(|a| a.len() >= frames)
                })
                .await;
            let mut ms: Vec<f64> = v["ms"]
                .as_array()
                .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
                .unwrap_or_default();
            ms.sort_by(|a, b| a.total_cmp(b));
            let misread = v["misread"].as_u64().unwrap_or(u64::MAX);
            assert!(
                misread <= (ms.len() / 10) as u64,
                "the stamp survives VP8: {misread} unreadable of {}",
                ms.len()
            );
            let pick = |q: f64| ms[((ms.len() - 1) as f64 * q).round() as usize];
            eprintln!(
                "Firefox, VP8 640x360, capture to decoded over {} frames ({misread} unreadable): \
             p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
                ms.len(),
                pick(0.5),
                pick(0.95),
                ms[ms.len() - 1]
            );
            drop(ff);
            daemon.stop().await;
        },
    );
}
