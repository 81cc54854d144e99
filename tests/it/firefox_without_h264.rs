//! Debian's Firefox ESR, whose WebRTC has no H.264 without Cisco's OpenH264 plugin
//! (which it downloads from the internet; the test profile turns it off, as on a camera
//! LAN without internet). Until the camera sends a second codec, such a browser must be
//! told in words what is wrong and what to do — on the viewer page and in a plain
//! Kurento one2many `viewerResponse` — never the webrtc crate's internal error.

use crate::common;

use common::Daemon;
use common::firefox::Firefox;

/// A Kurento one2many viewer written against the browser's own RTCPeerConnection.
const ONE2MANY_VIEWER: &str = r#"new Promise(async (resolve) => {
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
async fn firefox_without_h264_is_told_what_to_do() {
    let _bound = crate::common::time_bound(
        "firefox_without_h264::firefox_without_h264_is_told_what_to_do",
        None,
    );
    let daemon = Daemon::start(&[]).await;
    let Some(ff) = Firefox::launch_or_skip("firefox_without_h264").await else {
        return;
    };
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

    // The viewer page says so in words, and keeps saying it while it tries again.
    let shown = ff
        .wait_for(
            "document.getElementById('overlay').textContent",
            20,
            "the page explains the codec",
            |v| v.as_str().is_some_and(|t| t.contains("cannot play H.264")),
        )
        .await;
    let text = shown.as_str().unwrap_or_default();
    assert!(text.contains("VP8") && text.contains("OpenH264"), "{text}");
    assert!(
        !text.contains("RTPSender") && !text.contains("OFFLINE"),
        "no crate text: {text}"
    );
    tokio::time::sleep(std::time::Duration::from_secs(4)).await;
    let again = ff
        .eval("document.getElementById('overlay').textContent")
        .await;
    assert!(
        again
            .as_str()
            .is_some_and(|t| t.contains("cannot play H.264")),
        "still readable after a retry: {again}"
    );

    // A plain one2many client in the same browser gets the same words.
    let m = ff.eval(ONE2MANY_VIEWER).await;
    assert_eq!(m["response"], "rejected", "{m}");
    let message = m["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("offers VP8"),
        "names the codecs offered: {message}"
    );
    assert!(
        message.contains("H.264"),
        "names what the camera sends: {message}"
    );
    daemon.stop().await;
}
