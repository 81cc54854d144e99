//! The appliance's controls on the GPIO simulator: the button stops and starts the camera
//! (viewers get stopCommunication, then presenterAvailable), a long press restarts the
//! pipeline, LEDs follow streaming and viewers, the HTTP API drives the same path, and
//! the choice survives a daemon restart.

use crate::common;

use common::{Daemon, http, rust_viewer::RustViewer};
use edgecam::gpio::Led;
use std::time::Duration;

async fn led_eventually(d: &Daemon, led: Led, lit: bool) {
    for _ in 0..100 {
        if d.gpio.led(led) == lit {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("{led:?} LED never became {lit}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn button_leds_api_and_remembered_state() {
    let _bound = crate::common::time_bound(
        "gpio_button_and_leds::button_leds_api_and_remembered_state",
        None,
    );
    let daemon = Daemon::start(&[("EDGECAM_GPIO__LONG_PRESS_S", "1")]).await;
    let s = daemon.wait_status(5, |s| s["leds"]["status"] == "on").await;
    assert_eq!(s["leds"]["gpio"], "simulator");
    led_eventually(&daemon, Led::Status, true).await;
    assert!(!daemon.gpio.led(Led::Viewers), "nobody watches yet");

    let viewer = RustViewer::join(&daemon.ws_url()).await;
    assert!(viewer.wait_frames(5, 20).await >= 5);
    daemon
        .wait_status(5, |s| s["leds"]["viewers"] == "on")
        .await;
    led_eventually(&daemon, Led::Viewers, true).await;

    // Short press: the camera stops; the viewer is told and released; LEDs go dark.
    daemon.press(150).await;
    let m = viewer
        .wait_message("stopCommunication", 10)
        .await
        .expect("stopCommunication");
    assert_eq!(m["id"], "stopCommunication");
    let s = daemon
        .wait_status(10, |s| {
            s["pipeline"]["state"] == "stopped"
                && s["presenter"] == "none"
                && s["viewers"] == 0
                && s["leds"]["status"] == "off"
                && s["leds"]["viewers"] == "off"
        })
        .await;
    assert_eq!(s["leds"]["gpio"], "simulator");
    led_eventually(&daemon, Led::Status, false).await;
    led_eventually(&daemon, Led::Viewers, false).await;
    assert_eq!(
        std::fs::read_to_string(daemon.state.path().join("streaming"))
            .unwrap()
            .trim(),
        "off"
    );

    // Press again: the camera comes back and waiting pages are told to rejoin.
    daemon.press(150).await;
    viewer
        .wait_message("presenterAvailable", 10)
        .await
        .expect("presenterAvailable");
    daemon
        .wait_status(15, |s| {
            s["pipeline"]["state"] == "running" && s["leds"]["status"] == "on"
        })
        .await;
    viewer.close().await;
    let viewer = RustViewer::join(&daemon.ws_url()).await;
    assert_eq!(viewer.answer["response"], "accepted");
    assert!(
        viewer.wait_frames(5, 20).await >= 5,
        "watching again after start"
    );

    // Long press (1 s here): the pipeline is reopened, streaming stays on, viewer resumes.
    let restarts = daemon.status().await["pipeline_restarts"].as_u64().unwrap();
    daemon.press(1400).await;
    let s = daemon
        .wait_status(15, |s| {
            s["pipeline_restarts"].as_u64().unwrap() > restarts
                && s["pipeline"]["state"] == "running"
        })
        .await;
    assert_eq!(s["presenter"], "camera", "a long press does not toggle");
    let before = viewer.frames();
    assert!(
        viewer.wait_frames(before + 10, 20).await >= before + 10,
        "frames resume after the restart"
    );

    // The HTTP API takes the same path as the button.
    let (code, body) = http(daemon.addr, "POST", "/api/stream/stop").await;
    assert_eq!(code, 200);
    assert!(body.contains("\"streaming\":false"), "{body}");
    viewer
        .wait_message("stopCommunication", 10)
        .await
        .expect("stopCommunication after API stop");
    daemon
        .wait_status(10, |s| s["pipeline"]["state"] == "stopped")
        .await;
    viewer.close().await;

    // Stopped is remembered across a restart of the daemon, even with autostart on.
    let state = daemon.state.clone();
    daemon.stop().await;
    let again = Daemon::start_full(
        "127.0.0.1:0",
        &[("EDGECAM_CAMERA__AUTOSTART", "true")],
        state.clone(),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let s = again.status().await;
    assert_eq!(s["pipeline"]["state"], "stopped", "{s}");
    let (code, _) = http(again.addr, "POST", "/api/stream/start").await;
    assert_eq!(code, 200);
    again.wait_running().await;
    again.stop().await;
    let third = Daemon::start_full("127.0.0.1:0", &[], state).await;
    assert_eq!(
        third.status().await["pipeline"]["state"],
        "running",
        "started is remembered too"
    );
    third.stop().await;
}
