//! The viewer page's stats panel: hidden until asked for, then shows what Chromium measures
//! (resolution, frame rate, bitrate, round trip) beside what the camera measures from this
//! viewer's RTCP receiver reports (its round trip, loss and send rate), matched by the
//! viewer id that came with viewerResponse.

use crate::common;

use common::Daemon;
use common::browser::{Browser, VIEWER_PROBE};

const PANEL: &str = r#"(() => {
  const el = document.getElementById('stats');
  const rows = {};
  for (const tr of el.querySelectorAll('tr')) rows[tr.cells[0].textContent] = tr.cells[1].textContent;
  return { hidden: el.hidden, rows, stats: window.edgecam.stats, viewerId: window.edgecam.viewerId };
})()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stats_panel_shows_both_ends_of_the_link() {
    let _bound = crate::common::time_bound(
        "stats_panel_browser::stats_panel_shows_both_ends_of_the_link",
        None,
    );
    let daemon = Daemon::start(&[]).await;
    let Some(browser) = Browser::launch_or_skip("stats_panel_browser", &[]).await else {
        return;
    };
    let page = browser.open(&daemon.url("/")).await;
    page.wait_for(VIEWER_PROBE, 30, "decoding", |p| {
        p["frames"].as_u64().unwrap_or(0) > 10 && p["badge"] == "live"
    })
    .await;
    let before = page.eval(PANEL).await;
    assert_eq!(before["hidden"], true, "hidden until asked for: {before}");
    let id = before["viewerId"]
        .as_u64()
        .expect("viewerResponse carried an id");
    let links = daemon.status().await["viewer_links"].clone();
    assert_eq!(links[0]["id"], id, "{links}");

    page.eval("document.getElementById('stats-toggle').click(); true")
        .await;
    let panel = page
        .wait_for(PANEL, 20, "both ends measured", |p| {
            let s = &p["stats"];
            s["fps"].as_f64().unwrap_or(0.0) > 0.0
                && s["bitrateKbps"].as_f64().unwrap_or(0.0) > 0.0
                && s["rttMs"].is_number()
                && s["cameraRttMs"].is_number()
                && s["cameraKbps"].as_f64().unwrap_or(0.0) > 0.0
        })
        .await;
    eprintln!("stats panel: {panel}");
    assert_eq!(panel["hidden"], false);
    let rows = &panel["rows"];
    assert_eq!(rows["Resolution"], "640x360", "{rows}");
    assert!(rows["Frame rate"].as_str().unwrap_or("").ends_with(" fps"));
    let rtt = panel["stats"]["cameraRttMs"].as_f64().unwrap_or(-1.0);
    assert!(
        (0.0..100.0).contains(&rtt),
        "camera-side loopback RTT {rtt} ms"
    );
    assert!(
        rows["Camera: round trip"]
            .as_str()
            .unwrap_or("")
            .ends_with(" ms")
    );
    assert_eq!(panel["stats"]["cameraLost"], 0, "nothing lost on loopback");
    assert_eq!(rows["Viewers"], "1");
    assert!(
        rows["Encoder"].as_str().unwrap_or("").ends_with(" kbit/s"),
        "{rows}"
    );

    // Hidden again on a second click, and the choice survives a reload.
    page.eval("document.getElementById('stats-toggle').click(); true")
        .await;
    assert_eq!(page.eval(PANEL).await["hidden"], true);
    page.eval("document.getElementById('stats-toggle').click(); location.reload(); true")
        .await;
    page.wait_for(PANEL, 20, "panel shown after reload", |p| {
        p["hidden"] == false && p["stats"]["fps"].as_f64().unwrap_or(0.0) > 0.0
    })
    .await;
    page.close().await;
    drop(browser);
    daemon.stop().await;
}
