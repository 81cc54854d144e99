//! A signaling client that goes silent (no messages, no pong to the server's pings) is
//! closed after `http.silence_timeout_s` (a minute by default; 3 s here), so a vanished
//! laptop does not hold a place forever, while a client that answers pings stays.

use crate::common;

use common::{Daemon, Ws};
use futures_util::StreamExt;
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_is_closed() {
    let _bound =
        crate::common::time_bound("silent_websocket_closed::a_silent_client_is_closed", None);
    let daemon = Daemon::start(&[
        ("EDGECAM_HTTP__PING_INTERVAL_S", "1"),
        ("EDGECAM_HTTP__SILENCE_TIMEOUT_S", "3"),
    ])
    .await;
    let lively = Ws::connect(&daemon.ws_url()).await;
    let mut silent = Ws::connect(&daemon.ws_url()).await;
    // The silent one is not read (so it never answers a ping) for 7 s: well past the
    // 3 s limit, and the lively one lives through six pings.
    let started = Instant::now();
    let mut lively = lively;
    let keep_reading = async {
        // Reading answers pings: this client stays.
        while lively.inner.next().await.is_some() {}
    };
    let _ = tokio::time::timeout(Duration::from_secs(7), keep_reading).await;
    // Now the silent client sees what the server did meanwhile: pings, then a close.
    let mut closed = false;
    while let Ok(Some(msg)) =
        tokio::time::timeout(Duration::from_secs(5), silent.inner.next()).await
    {
        match msg {
            Ok(tokio_tungstenite::tungstenite::Message::Close(_)) | Err(_) => {
                closed = true;
                break;
            }
            Ok(_) => {}
        }
    }
    assert!(
        closed,
        "the silent client was closed within {:?}",
        started.elapsed()
    );
    // The lively one still works.
    lively.send_text("{\"id\":\"nonsense\"}").await;
    let r = lively.recv().await;
    assert_eq!(r["id"], "error", "{r}");
    daemon.stop().await;
}
