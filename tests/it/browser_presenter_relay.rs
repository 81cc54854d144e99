//! The full one2many flow in real browsers: a Chromium presenter (fake camera and
//! microphone) relayed to two Chromium viewers; a second presenter is rejected; text typed
//! by the presenter reaches both viewers over the data channel; closing the presenter's
//! tab sends stopCommunication to both viewers.

use crate::common;

use common::{
    Daemon,
    browser::{Browser, VIEWER_PROBE},
};

const AUDIO_PROBE: &str = r#"(async () => {
  const pc = window.edgecam.pc; if (!pc) return 0;
  let n = 0; (await pc.getStats()).forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'audio') n = r.packetsReceived || 0; });
  return n; })()"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_presenter_is_relayed_to_two_viewers() {
    let _bound = crate::common::time_bound(
        "browser_presenter_relay::browser_presenter_is_relayed_to_two_viewers",
        None,
    );
    let daemon = Daemon::start(&[("EDGECAM_CAMERA__AUTOSTART", "false")]).await;
    assert_eq!(daemon.status().await["presenter"], "none");
    let Some(browser) = Browser::launch_or_skip(
        "browser_presenter_relay",
        &[
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
        ],
    )
    .await
    else {
        return;
    };

    let presenter = browser.open(&daemon.url("/presenter")).await;
    presenter
        .wait_for("typeof window.edgecam", 10, "presenter page", |v| {
            v == "object"
        })
        .await;
    presenter.eval("window.edgecam.start(); true").await;
    presenter
        .wait_for(
            "document.getElementById('state').textContent",
            30,
            "presenter live",
            |v| v == "live",
        )
        .await;
    let s = daemon
        .wait_status(10, |s| s["presenter"] == "browser")
        .await;
    assert_eq!(s["presenter"], "browser");

    let v1 = browser.open(&daemon.url("/")).await;
    let v2 = browser.open(&daemon.url("/")).await;
    for (i, v) in [&v1, &v2].into_iter().enumerate() {
        let got = v
            .wait_for(VIEWER_PROBE, 30, &format!("viewer {i} decoding"), |p| {
                p["frames"].as_u64().unwrap_or(0) > 10
                    && p["width"].as_u64().unwrap_or(0) > 0
                    && p["badge"] == "live"
            })
            .await;
        eprintln!("viewer {i}: {got}");
        v.wait_for(AUDIO_PROBE, 20, &format!("viewer {i} audio"), |n| {
            n.as_u64().unwrap_or(0) > 10
        })
        .await;
    }
    presenter
        .wait_for(
            "document.getElementById('viewers').textContent",
            10,
            "viewer count on presenter page",
            |v| v == "2 watching",
        )
        .await;

    // A second presenter is rejected with a message.
    let second = browser.open(&daemon.url("/presenter")).await;
    second
        .wait_for("typeof window.edgecam", 10, "second presenter page", |v| {
            v == "object"
        })
        .await;
    second.eval("window.edgecam.start(); true").await;
    let msg = second
        .wait_for(
            "document.getElementById('message').textContent",
            20,
            "rejection",
            |v| {
                v.as_str()
                    .unwrap_or("")
                    .contains("Another presenter is active")
            },
        )
        .await;
    eprintln!("second presenter: {msg}");
    second.close().await;
    assert_eq!(
        daemon.status().await["presenter"],
        "browser",
        "the first presenter stays"
    );

    // Text from the presenter reaches both viewers over the data channel.
    presenter
        .eval("document.getElementById('text').value = 'hello from the presenter'; document.getElementById('send').click(); true")
        .await;
    for v in [&v1, &v2] {
        v.wait_for("window.edgecam.texts", 10, "text on viewer", |t| {
            t.as_array()
                .is_some_and(|a| a.iter().any(|x| x == "hello from the presenter"))
        })
        .await;
        v.wait_for(
            "document.getElementById('message').textContent",
            5,
            "text shown",
            |t| t == "hello from the presenter",
        )
        .await;
    }

    // The presenter closes its tab: both viewers get stopCommunication and show offline.
    presenter.close().await;
    for v in [&v1, &v2] {
        v.wait_for("window.edgecam.received", 20, "stopCommunication", |r| {
            r.as_array()
                .is_some_and(|a| a.iter().any(|x| x == "stopCommunication"))
        })
        .await;
        v.wait_for(
            "document.getElementById('state').textContent",
            10,
            "offline",
            |b| b == "offline",
        )
        .await;
    }
    let s = daemon
        .wait_status(10, |s| s["presenter"] == "none" && s["viewers"] == 0)
        .await;
    assert_eq!(s["fanout"]["subscribed"], 0);

    // A new presenter: the offline viewer pages rejoin by themselves (presenterAvailable)
    // and get a picture at once (their joins reach the presenter as keyframe requests).
    let again = browser.open(&daemon.url("/presenter")).await;
    again
        .wait_for("typeof window.edgecam", 10, "presenter page", |v| {
            v == "object"
        })
        .await;
    again
        .eval("document.getElementById('audio').checked = false; window.edgecam.start(); true")
        .await;
    again
        .wait_for(
            "document.getElementById('state').textContent",
            30,
            "presenter live again",
            |v| v == "live",
        )
        .await;
    for v in [&v1, &v2] {
        let before = v.eval(VIEWER_PROBE).await["frames"].as_u64().unwrap_or(0);
        v.wait_for(VIEWER_PROBE, 30, "viewer live again", |p| {
            p["badge"] == "live" && p["frames"].as_u64().unwrap_or(0) > before + 10
        })
        .await;
    }
    daemon
        .wait_status(10, |s| s["viewers"] == 2 && s["presenter"] == "browser")
        .await;
    drop((v1, v2, again));
    drop(browser);
    daemon.stop().await;
}
