//! Firefox (without OpenH264) with Chromium, in a network namespace of the test's own
//! (Firefox gathers no loopback candidates): in a mixed room on the camera, Chromium
//! keeps the camera's H.264 while the second, VP8 encode runs from the first Firefox
//! viewer to the last (seen in `/api/status` and `/metrics`), and a plain one2many client
//! in Firefox decodes it as the viewer page does; then a Firefox presenter
//! (its fake camera, sending VP8) reaches two Chromium viewers and a Firefox viewer.

use crate::common;

use common::Daemon;
use common::browser::{Browser, VIEWER_PROBE};
use common::firefox::Firefox;

#[test]
fn a_mixed_room_and_a_firefox_presenter() {
    let _bound = crate::common::time_bound(
        "firefox_presenter_and_mixed_room::a_mixed_room_and_a_firefox_presenter",
        None,
    );
    if !std::path::Path::new(common::firefox::FIREFOX).exists() || !common::browser::installed() {
        eprintln!("SKIPPED a_mixed_room_and_a_firefox_presenter: needs Firefox ESR and Chromium");
        return;
    }
    common::netns::run_inside("a_mixed_room_and_a_firefox_presenter", scenario);
}

/// A plain Kurento one2many viewer on Firefox's own RTCPeerConnection (trickle ICE both
/// ways), its picture in a video element: `window.one2many` once it has sent `viewer`.
const ONE2MANY_VIEWER: &str = r#"new Promise(async (resolve) => {
  const pc = new RTCPeerConnection();
  pc.addTransceiver('video', { direction: 'recvonly' });
  pc.ontrack = (e) => {
    const v = document.createElement('video');
    v.muted = true; v.autoplay = true;
    v.srcObject = e.streams[0] || new MediaStream([e.track]);
    document.body.appendChild(v);
  };
  const ws = new WebSocket(`ws://${location.host}/one2many`);
  ws.onmessage = async (e) => {
    const m = JSON.parse(e.data);
    if (m.id === 'viewerResponse') {
      window.one2many.response = m.response;
      if (m.response === 'accepted') await pc.setRemoteDescription({ type: 'answer', sdp: m.sdpAnswer });
    } else if (m.id === 'iceCandidate') {
      pc.addIceCandidate(m.candidate).catch(() => {});
    }
  };
  await new Promise((ok) => { ws.onopen = ok; });
  pc.onicecandidate = (e) => { if (e.candidate) ws.send(JSON.stringify({ id: 'onIceCandidate', candidate: e.candidate })); };
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  window.one2many = { pc, ws, response: null };
  ws.send(JSON.stringify({ id: 'viewer', sdpOffer: offer.sdp }));
  resolve(true);
})"#;

const ONE2MANY_FRAMES: &str = r#"(async () => {
  let f = 0;
  (await window.one2many.pc.getStats()).forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video') f = r.framesDecoded || 0; });
  return { frames: f, response: window.one2many.response, pc: window.one2many.pc.connectionState };
})()"#;

async fn metric(daemon: &Daemon, name: &str) -> String {
    let (_, text) = daemon.get("/metrics").await;
    text.lines()
        .find(|l| l.starts_with(&format!("{name} ")))
        .unwrap_or_default()
        .to_string()
}

async fn scenario() {
    let daemon = Daemon::start(&[
        ("EDGECAM_WEBRTC__BIND_IPS", common::netns::ADDRESS),
        ("EDGECAM_ENCODER__KEYFRAME_INTERVAL_S", "10"),
    ])
    .await;
    let chromium = Browser::launch(&[
        "--use-fake-device-for-media-stream",
        "--use-fake-ui-for-media-stream",
    ])
    .await;

    // The mixed room: Chromium first, on the camera's own H.264 (640x360 here, the
    // harness's camera size; no second encode for it).
    let c1 = chromium.open(&daemon.url("/")).await;
    c1.wait_for(VIEWER_PROBE, 40, "Chromium decodes the camera", |v| {
        v["frames"].as_u64().unwrap_or(0) > 10
    })
    .await;
    let codec = c1
        .eval(
            "(async () => { let c = ''; (await window.edgecam.pc.getStats()).forEach(r => { if (r.type === 'codec') c += r.mimeType + ' '; }); return c; })()",
        )
        .await;
    assert!(
        codec.as_str().unwrap_or_default().contains("H264"),
        "Chromium gets H.264: {codec}"
    );
    let s = daemon.status().await;
    assert_eq!(s["vp8"]["running"], false, "{s}");
    assert_eq!(
        metric(&daemon, "edgecam_vp8_encoding").await,
        "edgecam_vp8_encoding 0"
    );

    let ff = Firefox::launch().await;
    ff.open(&daemon.url("/")).await;
    ff.wait_for(VIEWER_PROBE, 40, "Firefox decodes the VP8 stream", |v| {
        v["frames"].as_u64().unwrap_or(0) > 10 && v["width"] == 640
    })
    .await;
    let s = daemon.status().await;
    assert_eq!(s["vp8"]["running"], true, "{s}");
    assert_eq!(s["vp8"]["origin"], "camera", "{s}");
    assert_eq!(s["viewers"], 2, "{s}");
    assert_eq!(
        metric(&daemon, "edgecam_vp8_encoding").await,
        "edgecam_vp8_encoding 1"
    );
    // A plain one2many client in Firefox (no edgecam page) decodes the VP8 stream too.
    ff.open(&daemon.url("/healthz")).await;
    daemon.wait_status(15, |s| s["vp8"]["viewers"] == 0).await;
    assert_eq!(ff.eval(ONE2MANY_VIEWER).await, true);
    let v = ff
        .wait_for(
            ONE2MANY_FRAMES,
            40,
            "a one2many client in Firefox decodes",
            |v| v["frames"].as_u64().unwrap_or(0) > 10,
        )
        .await;
    assert_eq!(v["response"], "accepted", "{v}");
    assert_eq!(daemon.status().await["vp8"]["viewers"], 1);
    // Firefox leaves: the second encode stops; Chromium plays on.
    ff.open("about:blank").await;
    daemon
        .wait_status(15, |s| {
            s["vp8"]["viewers"] == 0 && s["vp8"]["running"] == false
        })
        .await;
    assert_eq!(
        metric(&daemon, "edgecam_vp8_encoding").await,
        "edgecam_vp8_encoding 0"
    );
    let before = c1.eval(VIEWER_PROBE).await["frames"].as_u64().unwrap_or(0);
    c1.wait_for(VIEWER_PROBE, 10, "Chromium plays on", |v| {
        v["frames"].as_u64().unwrap_or(0) > before + 10
    })
    .await;
    c1.close().await;

    // A Firefox presenter (fake camera; VP8, since it has no H.264) takes over from the
    // camera.
    let (code, body) = common::http(daemon.addr, "POST", "/api/stream/stop").await;
    assert_eq!(code, 200, "{body}");
    daemon.wait_status(15, |s| s["presenter"] == "none").await;
    let presenter = Firefox::launch().await;
    presenter.open(&daemon.url("/presenter")).await;
    presenter
        .wait_for("typeof window.edgecam", 10, "presenter page", |v| {
            v == "object"
        })
        .await;
    presenter.eval("(window.edgecam.start(), true)").await;
    presenter
        .wait_for(
            "({ state: document.getElementById('state').textContent, \
               message: document.getElementById('message').textContent })",
            40,
            "Firefox presenting",
            |v| v["state"] == "live",
        )
        .await;
    let s = daemon
        .wait_status(10, |s| s["presenter"] == "browser")
        .await;
    assert_eq!(s["vp8"]["origin"], "presenter", "Firefox sends VP8: {s}");

    let viewers = [
        chromium.open(&daemon.url("/")).await,
        chromium.open(&daemon.url("/")).await,
    ];
    for v in &viewers {
        v.wait_for(VIEWER_PROBE, 40, "a Chromium viewer of Firefox", |v| {
            v["frames"].as_u64().unwrap_or(0) > 10
        })
        .await;
    }
    ff.open(&daemon.url("/")).await;
    ff.wait_for(VIEWER_PROBE, 40, "the Firefox viewer of Firefox", |v| {
        v["frames"].as_u64().unwrap_or(0) > 10
    })
    .await;
    let s = daemon.status().await;
    assert_eq!(s["viewers"], 3, "{s}");
    assert_eq!(
        s["vp8"]["viewers"], 3,
        "all three take its VP8 as sent: {s}"
    );
    assert_eq!(s["transcode"]["running"], false, "nothing re-encoded: {s}");
    for v in viewers {
        v.close().await;
    }
    drop(ff);
    drop(presenter);
    daemon.stop().await;
}
