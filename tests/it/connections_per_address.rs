//! One client address may hold at most `http.max_connections_per_address` signaling
//! connections; the next is refused with 429, and a closed one frees its place.

use crate::common;

use common::{Daemon, Ws};
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_address_gets_its_share_and_no_more() {
    let _bound = crate::common::time_bound(
        "connections_per_address::an_address_gets_its_share_and_no_more",
        None,
    );
    let daemon = Daemon::start(&[("EDGECAM_HTTP__MAX_CONNECTIONS_PER_ADDRESS", "3")]).await;
    let url = daemon.ws_url();
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(Ws::connect_with(&url, &[]).await.expect("within the share"));
    }
    assert_eq!(Ws::connect_with(&url, &[]).await.err(), Some(429));
    // Closing one frees a place (once the daemon has seen the close).
    let mut first = open.remove(0);
    let _ = first.inner.close(None).await;
    drop(first);
    let mut again = None;
    for _ in 0..50 {
        if let Ok(ws) = Ws::connect_with(&url, &[]).await {
            again = Some(ws);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(again.is_some(), "a freed place is reusable");
    // The others still work.
    let mut ws = open.remove(0);
    ws.send_text("{\"id\":\"nonsense\"}").await;
    assert_eq!(ws.recv().await["id"], "error");
    daemon.stop().await;
}
