//! `/metrics` speaks the Prometheus text format, agrees with what is happening (a viewer,
//! a running camera, frames flowing), and needs the admin credential when one is set.

mod common;

use common::{Daemon, http_full, rust_viewer::RustViewer};
use std::collections::HashMap;

/// `name{labels}` → value, every sample line checked for form.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    for line in text.lines() {
        if line.starts_with("# HELP ") || line.starts_with("# TYPE ") {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("sample line: name value");
        assert!(
            key.starts_with("edgecam_") && key.chars().all(|c| c.is_ascii_graphic()),
            "{line}"
        );
        out.insert(key.to_string(), value.parse::<f64>().expect("a number"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_tell_what_is_happening() {
    let daemon = Daemon::start_with_admin(&[], "only-me-please").await;
    assert_eq!(
        http_full(daemon.addr, "GET", "/metrics", &[], "").await.0,
        401,
        "operator data needs the admin credential"
    );
    let viewer = RustViewer::join(&daemon.ws_url()).await;
    assert!(viewer.wait_frames(10, 20).await >= 10);
    let (code, body) = daemon.get("/metrics").await;
    assert_eq!(code, 200, "{body}");
    let m = parse(&body);
    assert_eq!(m["edgecam_viewers"], 1.0, "{body}");
    assert_eq!(m["edgecam_pipeline_up"], 1.0);
    assert_eq!(m["edgecam_presenter{kind=\"camera\"}"], 1.0);
    assert_eq!(m["edgecam_presenter{kind=\"none\"}"], 0.0);
    assert!(m["edgecam_frames_encoded_total"] >= 10.0);
    assert!(m["edgecam_bytes_encoded_total"] > 0.0);
    assert!(m["edgecam_fanout_frames_out_total"] >= 10.0);
    assert!(
        m["edgecam_keyframe_requests_total"] >= 1.0,
        "the join asked for an IDR"
    );
    assert!(m.contains_key("edgecam_fanout_dropped_total{reason=\"queue_full\"}"));
    assert!(
        !m.contains_key("edgecam_upstream_live"),
        "no upstream configured"
    );
    // Counters only grow.
    let later = parse(&daemon.get("/metrics").await.1);
    assert!(later["edgecam_frames_encoded_total"] >= m["edgecam_frames_encoded_total"]);
    viewer.close().await;
    daemon.stop().await;
}
