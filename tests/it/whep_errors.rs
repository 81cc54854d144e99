//! WHEP answers as the draft says: 415 for a wrong content type, 400 for malformed SDP,
//! 404 for an unknown session, 503 with a reason when nobody presents, 401 without the
//! viewer password; trickle PATCH is 204; CORS preflight and ICE servers in `Link`.

use crate::common;

use common::rust_viewer::RustViewer;
use common::{Daemon, header, http_full};

const SDP: (&str, &str) = ("Content-Type", "application/sdp");
const FRAG: (&str, &str) = ("Content-Type", "application/trickle-ice-sdpfrag");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn whep_status_codes() {
    let _bound = crate::common::time_bound("whep_errors::whep_status_codes", None);
    let daemon = Daemon::start(&[(
        "EDGECAM_WEBRTC__ICE_SERVERS",
        "stun:stun.example.net,turn:user:secret@turn.example.net:3478",
    )])
    .await;
    let a = daemon.addr;
    let offer = RustViewer::offer_sdp().await;

    assert_eq!(
        http_full(
            a,
            "POST",
            "/whep",
            &[("Content-Type", "text/plain")],
            &offer
        )
        .await
        .0,
        415
    );
    assert_eq!(
        http_full(a, "POST", "/whep", &[], &offer).await.0,
        415,
        "no type"
    );
    for bad in ["", "hello", "v=0\r\n", "v=0\r\nm=video 9 garbage\r\n\u{1}"] {
        let (code, _, body) = http_full(a, "POST", "/whep", &[SDP], bad).await;
        assert_eq!(code, 400, "{bad:?}: {body}");
        assert!(body.contains("malformed SDP"), "{body}");
    }
    let huge = format!("v=0\r\nm=video 9 x\r\n{}", "a=x\r\n".repeat(20_000));
    assert_eq!(http_full(a, "POST", "/whep", &[SDP], &huge).await.0, 413);
    for method in ["PATCH", "DELETE"] {
        let (code, _, _) = http_full(a, method, "/whep/0123456789abcdef", &[FRAG], "").await;
        assert_eq!(code, 404, "{method} on an unknown session");
    }

    // Preflight from another origin.
    let (code, head, _) = http_full(
        a,
        "OPTIONS",
        "/whep",
        &[
            ("Origin", "http://player.example"),
            ("Access-Control-Request-Method", "POST"),
        ],
        "",
    )
    .await;
    assert_eq!(code, 204);
    assert_eq!(header(&head, "access-control-allow-origin"), Some("*"));
    assert!(header(&head, "access-control-expose-headers").is_some_and(|v| v.contains("Location")));

    // A real offer: 201, Location, Link headers; PATCH trickles; DELETE ends.
    let (code, head, body) = http_full(a, "POST", "/whep", &[SDP], &offer).await;
    assert_eq!(code, 201, "{body}");
    assert!(body.starts_with("v=0"));
    let location = header(&head, "location").unwrap().to_string();
    let links: Vec<&str> = head
        .lines()
        .filter(|l| l.to_ascii_lowercase().starts_with("link:"))
        .collect();
    assert!(
        links
            .iter()
            .any(|l| l.contains("<stun:stun.example.net>; rel=\"ice-server\"")),
        "{links:?}"
    );
    assert!(
        links
            .iter()
            .any(|l| l.contains("<turn:turn.example.net:3478>")
                && l.contains("username=\"user\"")
                && l.contains("credential=\"secret\"")),
        "{links:?}"
    );
    assert_eq!(header(&head, "access-control-allow-origin"), Some("*"));
    assert_eq!(daemon.status().await["viewers"], 1);
    assert_eq!(
        http_full(
            a,
            "PATCH",
            &location,
            &[SDP],
            "a=candidate:1 1 udp 1 127.0.0.1 9 typ host"
        )
        .await
        .0,
        415
    );
    let frag = "a=ice-ufrag:abcd\r\na=ice-pwd:0123456789abcdefghijkl\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 2130706431 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n";
    assert_eq!(http_full(a, "PATCH", &location, &[FRAG], frag).await.0, 204);
    assert_eq!(http_full(a, "DELETE", &location, &[], "").await.0, 200);
    daemon.wait_status(10, |s| s["viewers"] == 0).await;
    daemon.stop().await;

    // Nobody presenting: 503 with a reason and Retry-After.
    let stopped = Daemon::start(&[("EDGECAM_CAMERA__AUTOSTART", "false")]).await;
    let (code, head, body) = http_full(stopped.addr, "POST", "/whep", &[SDP], &offer).await;
    assert_eq!(code, 503);
    assert!(body.contains("no presenter"), "{body}");
    assert!(header(&head, "retry-after").is_some());
    stopped.stop().await;

    // The viewer password guards WHEP: 401 without it, 201 with it.
    let hash = edgecam::auth::hash_password("family-room-7").unwrap();
    let guarded = Daemon::start_with_admin(
        &[("EDGECAM_AUTH__VIEWER_PASSWORD_HASH", &hash)],
        "only-me-please",
    )
    .await;
    let (code, head, _) = http_full(guarded.addr, "POST", "/whep", &[SDP], &offer).await;
    assert_eq!(code, 401);
    assert_eq!(
        header(&head, "access-control-allow-origin"),
        Some("*"),
        "CORS on errors too"
    );
    use base64::Engine;
    let basic = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode("viewer:family-room-7")
    );
    let (code, _, _) = http_full(
        guarded.addr,
        "POST",
        "/whep",
        &[SDP, ("Authorization", &basic)],
        &offer,
    )
    .await;
    assert_eq!(code, 201);
    guarded.stop().await;
}
