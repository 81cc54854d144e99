//! WHEP: a headless Chromium page watches with plain `fetch` (POST the offer, read the
//! answer and its `Location`), decodes frames, counts as a viewer, and `DELETE` ends it.

use crate::common;

use common::Daemon;
use common::browser::{Browser, WHEP_PROBE as PROBE, WHEP_WATCH as WATCH};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_watches_over_whep_with_fetch() {
    let _bound = crate::common::time_bound(
        "whep_browser_watch::chromium_watches_over_whep_with_fetch",
        None,
    );
    let daemon = Daemon::start(&[("EDGECAM_ENCODER__KEYFRAME_INTERVAL_S", "10")]).await;
    let Some(browser) = Browser::launch_or_skip("whep_browser_watch", &[]).await else {
        return;
    };
    // Any page of the daemon's origin will do: the script brings its own player.
    let page = browser.open(&daemon.url("/healthz")).await;
    page.wait_for(
        "document.readyState === 'complete' && location.pathname",
        20,
        "the page loaded",
        |v| v == "/healthz",
    )
    .await;
    let r = page.eval(WATCH).await;
    assert_eq!(r["status"], 201, "{r}");
    assert_eq!(r["type"], "application/sdp", "{r}");
    let location = r["location"].as_str().unwrap_or_default().to_string();
    assert!(location.starts_with("/whep/"), "{r}");
    assert!(
        r["candidates"].as_u64().unwrap_or(0) > 0,
        "our candidates are in the answer: {r}"
    );
    let v = page
        .wait_for(PROBE, 30, "frames decoded over WHEP", |v| {
            v["frames"].as_u64().unwrap_or(0) > 5 && v["width"] == 640
        })
        .await;
    eprintln!("WHEP viewer: {v}");
    assert_eq!(daemon.status().await["viewers"], 1, "a WHEP viewer counts");

    let code = page
        .eval(&format!(
            "fetch('{location}', {{ method: 'DELETE' }}).then(r => r.status)"
        ))
        .await;
    assert_eq!(code, 200);
    daemon.wait_status(20, |s| s["viewers"] == 0).await;
    let code = page
        .eval(&format!(
            "fetch('{location}', {{ method: 'DELETE' }}).then(r => r.status)"
        ))
        .await;
    assert_eq!(code, 404, "gone once deleted");
    page.close().await;
    drop(browser);
    daemon.stop().await;
}
