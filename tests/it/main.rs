//! The integration scenarios, one module (file) each, in one test binary: a clean build
//! links the daemon's whole dependency tree once instead of once per scenario. Every
//! scenario starts the suite's time bound first thing (`common::time_bound`; checked
//! below), so a hang ends the run naming the scenario instead of eating CI's limit.

mod common;

mod auth_password;
mod bad_input_keeps_serving;
mod browser_presenter_relay;
mod browser_reconnects_after_restart;
mod browser_three_viewers;
mod camera_audio;
mod candidate_flood_refused;
mod candidates_before_offer;
mod cli;
mod connections_per_address;
mod cross_origin_check;
mod dependency_rule;
mod firefox_presenter_and_mixed_room;
mod firefox_vp8_viewer;
mod gpio_button_and_leds;
mod hostile_input;
mod image_boot;
mod image_recipe;
mod kurento_protocol_client;
mod metrics_prometheus;
mod nat_ips_advertised;
mod onvif_home_assistant;
mod pipeline_fault_recovery;
mod presenter_handover;
mod provisioning;
mod rtsp_streams;
mod rust_viewer_receives_h264;
mod settings_page;
mod silent_websocket_closed;
mod snapshot_jpeg;
mod soak_join_leave;
mod stats_panel_browser;
mod systemd_notify_and_sigterm;
mod systemd_unit;
mod tls_configured_certificate;
mod tls_https_presenter;
mod transcode_both_ways;
mod unconnected_peer_reaped;
mod upstream_push_reconnects;
mod viewer_limit;
mod vp8_stream;
mod weak_link_substream;
mod whep_browser_watch;
mod whep_errors;
mod whip_browser_present;
mod whip_client_hangs_up;
mod ws_discovery_finds_the_camera;

/// Every scenario starts the time bound first thing (so none can hang the run).
#[test]
fn every_scenario_runs_under_the_time_bound() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it");
    let mut checked = 0;
    for entry in std::fs::read_dir(dir).expect("tests/it") {
        let path = entry.expect("entry").path();
        if path.extension().is_none_or(|e| e != "rs") || path.ends_with("main.rs") {
            continue;
        }
        let text = std::fs::read_to_string(&path).expect("source");
        let lines: Vec<&str> = text.lines().collect();
        for (i, line) in lines.iter().enumerate() {
            if !(line.starts_with("#[test]") || line.starts_with("#[tokio::test")) {
                continue;
            }
            let mut j = i + 1;
            while lines[j].starts_with("#[") {
                j += 1;
            }
            assert!(
                lines[j + 1..(j + 3).min(lines.len())]
                    .join(" ")
                    .contains("common::time_bound("),
                "{}: {} does not start the time bound",
                path.display(),
                lines[j]
            );
            checked += 1;
        }
    }
    assert!(checked >= 50, "only {checked} scenarios found");
}
