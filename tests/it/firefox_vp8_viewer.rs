//! Debian's Firefox ESR, whose WebRTC has no H.264 without Cisco's OpenH264 plugin
//! (which it downloads from the internet; the test profile turns it off, as on a camera
//! LAN without internet), is answered with the camera's second, VP8 stream — the viewer
//! page and a plain Kurento one2many client alike — while a Chromium viewer in the same
//! room keeps the H.264 stream.

use crate::common;

use common::Daemon;
use common::browser::{Browser, VIEWER_PROBE};
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

    // A plain one2many client in Firefox is answered with the VP8 stream. (The media
    // itself is checked with a VP8-only WebRTC client in tests/it/vp8_stream.rs: Firefox
    // ESR 153 here gathers no loopback candidates, even with
    // media.peerconnection.ice.loopback set, so it cannot connect to a daemon whose media
    // sockets are on 127.0.0.1, and the tests talk over loopback only.)
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
