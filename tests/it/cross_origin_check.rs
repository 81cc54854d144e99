//! A web page from another origin cannot open the signaling WebSocket or start and stop
//! the camera (so a site the user visits cannot drive the camera through their browser,
//! even with no password set) unless it is listed in `http.allowed_origins`; the camera's
//! own pages and clients without an Origin can.

use crate::common;

use common::{Daemon, Ws, http_full};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_own_and_listed_origins_drive_the_camera() {
    let _bound = crate::common::time_bound(
        "cross_origin_check::only_own_and_listed_origins_drive_the_camera",
        None,
    );
    let daemon =
        Daemon::start(&[("EDGECAM_HTTP__ALLOWED_ORIGINS", "https://tutorial.example")]).await;
    let url = daemon.ws_url();
    let own = format!("http://{}", daemon.addr);
    assert!(
        Ws::connect_with(&url, &[]).await.is_ok(),
        "no Origin: a tool"
    );
    assert!(
        Ws::connect_with(&url, &[("Origin", &own)]).await.is_ok(),
        "own page"
    );
    assert!(
        Ws::connect_with(&url, &[("Origin", "https://tutorial.example")])
            .await
            .is_ok(),
        "listed origin"
    );
    for evil in [
        "http://evil.example",
        "null",
        "https://tutorial.example.evil",
    ] {
        assert_eq!(
            Ws::connect_with(&url, &[("Origin", evil)]).await.err(),
            Some(403),
            "{evil}"
        );
    }

    // Start and stop over HTTP: refused from a foreign page, the camera untouched.
    daemon.wait_running().await;
    for evil in ["http://evil.example", "null"] {
        let (code, _, body) = http_full(
            daemon.addr,
            "POST",
            "/api/stream/stop",
            &[("Origin", evil)],
            "",
        )
        .await;
        assert_eq!(code, 403, "{evil}: {body}");
    }
    assert_eq!(daemon.status().await["presenter"], "camera");
    for (origin, on) in [
        (own.as_str(), false),
        ("https://tutorial.example", true),
        ("", false),
    ] {
        let path = if on {
            "/api/stream/start"
        } else {
            "/api/stream/stop"
        };
        let headers: &[(&str, &str)] = if origin.is_empty() {
            &[]
        } else {
            &[("Origin", origin)]
        };
        let (code, _, body) = http_full(daemon.addr, "POST", path, headers, "").await;
        assert_eq!(code, 200, "{origin:?}: {body}");
        assert!(body.contains(&format!("\"streaming\":{on}")), "{body}");
    }
    daemon.stop().await;
}
