//! WHIP: a headless Chromium page with a fake camera presents with plain `fetch` and the
//! bearer token; a viewer page decodes it; a second publisher gets 409, a wrong token 401;
//! `DELETE` ends the publishing and the camera's place is free again.

use crate::common;

use common::browser::{Browser, VIEWER_PROBE, WHEP_PROBE, WHEP_WATCH};
use common::{Daemon, header, http_full};

const TOKEN: &str = "whip-token-0123456789";

const PUBLISH: &str = r#"(async (token) => {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 360 } });
  const pc = new RTCPeerConnection();
  pc.addTransceiver(stream.getVideoTracks()[0], { direction: 'sendonly', streams: [stream] });
  await pc.setLocalDescription(await pc.createOffer());
  await new Promise(r => {
    if (pc.iceGatheringState === 'complete') return r();
    pc.onicegatheringstatechange = () => pc.iceGatheringState === 'complete' && r();
    setTimeout(r, 2000);
  });
  const res = await fetch('/whip', { method: 'POST', body: pc.localDescription.sdp,
    headers: { 'Content-Type': 'application/sdp', 'Authorization': 'Bearer ' + token } });
  const answer = await res.text();
  if (res.status === 201) await pc.setRemoteDescription({ type: 'answer', sdp: answer });
  window.whip = { pc, location: res.headers.get('Location') };
  return { status: res.status, location: window.whip.location, body: res.status === 201 ? '' : answer };
})"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_presents_over_whip_and_a_viewer_decodes() {
    let _bound = crate::common::time_bound(
        "whip_browser_present::chromium_presents_over_whip_and_a_viewer_decodes",
        None,
    );
    let daemon = Daemon::start(&[
        ("EDGECAM_CAMERA__AUTOSTART", "false"),
        ("EDGECAM_WHIP__TOKEN", TOKEN),
    ])
    .await;
    let Some(browser) = Browser::launch_or_skip(
        "whip_browser_present",
        &[
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
        ],
    )
    .await
    else {
        return;
    };
    let publisher = browser.open(&daemon.url("/healthz")).await;
    publisher
        .wait_for(
            "document.readyState === 'complete' && location.pathname",
            20,
            "the page loaded",
            |v| v == "/healthz",
        )
        .await;

    // A wrong token: 401, nothing claimed.
    let r = publisher
        .eval(&format!("({PUBLISH})('not-the-token-at-all')"))
        .await;
    assert_eq!(r["status"], 401, "{r}");
    assert_eq!(daemon.status().await["presenter"], "none");

    let r = publisher.eval(&format!("({PUBLISH})('{TOKEN}')")).await;
    assert_eq!(r["status"], 201, "{r}");
    let location = r["location"].as_str().unwrap_or_default().to_string();
    assert!(location.starts_with("/whip/"), "{r}");
    daemon
        .wait_status(20, |s| s["presenter"] == "browser")
        .await;

    // A viewer page (WebSocket protocol) decodes the WHIP publisher's picture.
    let viewer = browser.open(&daemon.url("/")).await;
    let v = viewer
        .wait_for(
            VIEWER_PROBE,
            30,
            "the viewer decodes the WHIP stream",
            |v| v["frames"].as_u64().unwrap_or(0) > 5 && v["width"].as_u64().unwrap_or(0) > 0,
        )
        .await;
    eprintln!("viewer of the WHIP publisher: {v}");
    // And a WHEP player gets it too.
    let player = browser.open(&daemon.url("/healthz")).await;
    player
        .wait_for(
            "document.readyState === 'complete' && location.pathname",
            20,
            "the player page loaded",
            |v| v == "/healthz",
        )
        .await;
    let r = player.eval(WHEP_WATCH).await;
    assert_eq!(r["status"], 201, "{r}");
    player
        .wait_for(
            WHEP_PROBE,
            30,
            "the WHEP player decodes the WHIP stream",
            |v| v["frames"].as_u64().unwrap_or(0) > 5,
        )
        .await;
    player.close().await;

    // One presenter at a time: a second publisher is refused with 409.
    let offer = common::rust_viewer::RustViewer::offer_sdp().await;
    let bearer = format!("Bearer {TOKEN}");
    let (code, _, body) = http_full(
        daemon.addr,
        "POST",
        "/whip",
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &bearer),
        ],
        &offer,
    )
    .await;
    assert_eq!(code, 409, "{body}");
    // Ending needs the token too.
    assert_eq!(
        http_full(daemon.addr, "DELETE", &location, &[], "").await.0,
        401
    );
    let (code, head, _) = http_full(
        daemon.addr,
        "DELETE",
        &location,
        &[("Authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(code, 200, "{head}");
    assert!(header(&head, "access-control-allow-origin").is_some());
    daemon.wait_status(20, |s| s["presenter"] == "none").await;
    viewer
        .wait_for(
            "document.getElementById('state').textContent",
            20,
            "the viewer page shows offline",
            |v| v == "offline",
        )
        .await;
    publisher.close().await;
    viewer.close().await;
    drop(browser);
    daemon.stop().await;

    // Without whip.token, WHIP is off.
    let off = Daemon::start(&[]).await;
    let (code, _, body) = http_full(
        off.addr,
        "POST",
        "/whip",
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &bearer),
        ],
        &offer,
    )
    .await;
    assert_eq!(code, 403, "{body}");
    off.stop().await;
}
