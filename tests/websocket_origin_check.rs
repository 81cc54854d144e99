//! A web page from another origin cannot open the signaling WebSocket (so a site the
//! user visits cannot drive the camera through their browser) unless it is listed in
//! `http.allowed_origins`; the camera's own pages and clients without an Origin can.

mod common;

use common::{Daemon, Ws};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_own_and_listed_origins_open_the_websocket() {
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
    daemon.stop().await;
}
