//! Three headless Chromium viewer pages at once each decode the camera: framesDecoded
//! rises and the video has the configured width.

use crate::common;

use common::{
    Daemon,
    browser::{Browser, VIEWER_PROBE},
};
use std::time::{Duration, Instant};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_chromium_viewers_decode_frames() {
    let _bound = crate::common::time_bound(
        "browser_three_viewers::three_chromium_viewers_decode_frames",
        None,
    );
    let daemon = Daemon::start(&[("EDGECAM_ENCODER__KEYFRAME_INTERVAL_S", "10")]).await;
    let Some(browser) = Browser::launch_or_skip("browser_three_viewers", &[]).await else {
        return;
    };
    let started = Instant::now();
    let mut pages = Vec::new();
    for _ in 0..3 {
        pages.push(browser.open(&daemon.url("/")).await);
    }
    // Each page must be decoding (frames rising) at the configured size.
    let mut first_frame = vec![None; pages.len()];
    let mut last = vec![serde_json::Value::Null; pages.len()];
    let deadline = Instant::now() + Duration::from_secs(30);
    while first_frame.iter().any(Option::is_none) && Instant::now() < deadline {
        for (i, page) in pages.iter().enumerate() {
            let v = page.eval(VIEWER_PROBE).await;
            if first_frame[i].is_none()
                && v["frames"].as_u64().unwrap_or(0) > 0
                && v["width"] == 640
            {
                first_frame[i] = Some(started.elapsed());
            }
            last[i] = v;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    eprintln!("first decoded frame per page (from opening the pages): {first_frame:?}");
    for (i, t) in first_frame.iter().enumerate() {
        assert!(t.is_some(), "page {i} never decoded: {}", last[i]);
    }
    // Frames keep coming on every page.
    let before: Vec<u64> =
        futures_util::future::join_all(pages.iter().map(|p| p.eval(VIEWER_PROBE)))
            .await
            .iter()
            .map(|v| v["frames"].as_u64().unwrap_or(0))
            .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;
    for (i, page) in pages.iter().enumerate() {
        let v = page.eval(VIEWER_PROBE).await;
        let now = v["frames"].as_u64().unwrap_or(0);
        assert!(
            now > before[i] + 10,
            "page {i} frames did not keep rising: {before:?} -> {v}"
        );
        assert_eq!(v["width"], 640);
        assert_eq!(v["height"], 360);
        assert_eq!(v["badge"], "live", "{v}");
        assert_eq!(v["viewers"], "3 watching", "{v}");
    }
    let s = daemon.status().await;
    assert_eq!(s["viewers"], 3, "{s}");
    drop(pages);
    drop(browser);
    daemon.wait_status(40, |s| s["viewers"] == 0).await;
    daemon.stop().await;
}
