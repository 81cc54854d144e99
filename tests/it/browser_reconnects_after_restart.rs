//! A viewer page shows "offline" when the daemon goes away and comes back live by itself
//! when the daemon is restarted: no reload, no click.

use crate::common;

use common::{
    Daemon,
    browser::{Browser, VIEWER_PROBE},
};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn page_rejoins_after_a_daemon_restart() {
    let _bound = crate::common::time_bound(
        "browser_reconnects_after_restart::page_rejoins_after_a_daemon_restart",
        None,
    );
    let first = Daemon::start(&[]).await;
    let addr = first.addr;
    let Some(browser) = Browser::launch_or_skip("browser_reconnects_after_restart", &[]).await
    else {
        return;
    };
    let page = browser.open(&first.url("/")).await;
    page.wait_for(VIEWER_PROBE, 30, "first playback", |v| {
        v["frames"].as_u64().unwrap_or(0) > 10 && v["badge"] == "live"
    })
    .await;

    first.stop().await;
    let v = page
        .wait_for(VIEWER_PROBE, 15, "offline after shutdown", |v| {
            v["badge"] == "offline"
        })
        .await;
    assert_ne!(v["badge"], "live");

    let second = Daemon::start_on(&addr.to_string(), &[]).await;
    let v = page
        .wait_for(VIEWER_PROBE, 30, "live again", |v| {
            v["badge"] == "live" && v["frames"].as_u64().unwrap_or(0) > 10
        })
        .await;
    assert_eq!(v["width"], 640);
    second.wait_status(10, |s| s["viewers"] == 1).await;
    drop(page);
    drop(browser);
    second.stop().await;
}
