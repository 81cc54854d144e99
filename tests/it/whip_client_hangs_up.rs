//! A WHIP client that hangs up while its offer is being answered (a script timing out, an
//! encoder restarting) must not leave the camera thinking someone presents: the half-made
//! session is finished and, never connecting, reaped, so the next publisher gets in. The
//! same for a WHEP viewer's place.

use crate::common;

use common::{Daemon, http_full, rust_viewer::RustViewer};
use tokio::io::AsyncWriteExt;

const TOKEN: &str = "hang-up-token-0123";

/// Sends a whole POST, waits until the daemon is at work on it (`busy`), and hangs up
/// without reading the answer.
async fn post_and_hang_up(
    daemon: &Daemon,
    path: &str,
    offer: &str,
    busy: impl Fn(&serde_json::Value) -> bool,
) {
    let addr = daemon.addr;
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/sdp\r\n\
         Authorization: Bearer {TOKEN}\r\nContent-Length: {}\r\n\r\n{offer}",
        offer.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    daemon.wait_status(5, busy).await;
    drop(s);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn abandoned_whip_and_whep_requests_free_their_places() {
    let _bound = crate::common::time_bound(
        "whip_client_hangs_up::abandoned_whip_and_whep_requests_free_their_places",
        None,
    );
    // A STUN server that never answers keeps each answer gathering for its full 2 s, so
    // the hang-up below lands while the daemon is still making the session.
    let silent_stun = std::net::UdpSocket::bind("127.0.0.1:0").expect("udp");
    let stun = format!("stun:{}", silent_stun.local_addr().expect("addr"));
    let daemon = Daemon::start(&[
        ("EDGECAM_CAMERA__AUTOSTART", "false"),
        ("EDGECAM_WEBRTC__ICE_SERVERS", &stun),
        ("EDGECAM_WHIP__TOKEN", TOKEN),
        ("EDGECAM_VIEWERS__MAX", "1"),
        ("EDGECAM_WEBRTC__CONNECT_TIMEOUT_S", "3"),
    ])
    .await;
    let watch_offer = RustViewer::offer_sdp().await;
    let publish_offer = watch_offer.replace("a=recvonly", "a=sendonly");
    assert_ne!(watch_offer, publish_offer, "a send-only offer for WHIP");

    // Hung up once the request has claimed the presenter; a WHEP viewer hangs up the same
    // way once it has taken the one viewer place.
    post_and_hang_up(&daemon, "/whip", &publish_offer, |s| {
        s["presenter"] == "browser"
    })
    .await;
    post_and_hang_up(&daemon, "/whep", &watch_offer, |s| s["viewers"] == 1).await;
    // Neither ever connects: both are reaped (after webrtc.connect_timeout_s, 3 s here),
    // and neither keeps its place.
    daemon
        .wait_status(15, |s| s["presenter"] == "none" && s["viewers"] == 0)
        .await;

    // The next publisher is let in (201), not refused as a second presenter (409).
    let bearer = format!("Bearer {TOKEN}");
    let (code, head, body) = http_full(
        daemon.addr,
        "POST",
        "/whip",
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &bearer),
        ],
        &publish_offer,
    )
    .await;
    assert_eq!(code, 201, "{head}{body}");
    // And the one viewer place is free again.
    let (code, _, body) = http_full(
        daemon.addr,
        "POST",
        "/whep",
        &[("Content-Type", "application/sdp")],
        &watch_offer,
    )
    .await;
    assert_eq!(code, 201, "{body}");
    daemon.stop().await;
}
