//! `/metrics` speaks the Prometheus text format, agrees with what is happening (a viewer,
//! a running camera, frames flowing), and needs the admin credential when one is set.

use crate::common;

use common::{Daemon, http_full, rust_viewer::RustViewer};
use std::collections::HashMap;

/// `name{labels}` → value, every sample line checked for form; and the whole text read
/// by a Prometheus exposition parser (prometheus-parse): every sample parses, with the
/// labels it was written with, and every family has its HELP and TYPE.
fn parse(text: &str) -> HashMap<String, f64> {
    let mut out = HashMap::new();
    let mut families = 0;
    for line in text.lines() {
        if line.starts_with("# HELP ") {
            families += 1;
            continue;
        }
        if line.starts_with("# TYPE ") {
            continue;
        }
        let (key, value) = line.rsplit_once(' ').expect("sample line: name value");
        assert!(
            (key.starts_with("edgecam_") || key.starts_with("process_"))
                && key.chars().all(|c| c.is_ascii_graphic()),
            "{line}"
        );
        out.insert(key.to_string(), value.parse::<f64>().expect("a number"));
    }
    let scrape = prometheus_parse::Scrape::parse(text.lines().map(|l| Ok(l.to_owned())))
        .expect("Prometheus text format");
    assert_eq!(
        scrape.samples.len(),
        out.len(),
        "every sample parsed:\n{text}"
    );
    assert_eq!(
        scrape.docs.len(),
        families,
        "every family has HELP:\n{text}"
    );
    for sample in &scrape.samples {
        assert!(
            scrape.docs.contains_key(&sample.metric),
            "{} has no HELP",
            sample.metric
        );
        let mut labels: Vec<String> = sample
            .labels
            .iter()
            .map(|(k, v)| format!("{k}=\"{v}\""))
            .collect();
        labels.sort();
        let same = out.keys().any(|key| {
            let (name, rest) = key.split_once('{').unwrap_or((key, ""));
            let mut written: Vec<String> = rest
                .trim_end_matches('}')
                .split(',')
                .filter(|l| !l.is_empty())
                .map(str::to_owned)
                .collect();
            written.sort();
            name == sample.metric && written == labels
        });
        assert!(
            same,
            "{} {labels:?} as parsed is not as written",
            sample.metric
        );
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_tell_what_is_happening() {
    let _bound =
        crate::common::time_bound("metrics_prometheus::metrics_tell_what_is_happening", None);
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
    assert!(m.contains_key("edgecam_encoder_bitrate_bps"));
    assert!(m["edgecam_fanout_frames_out_total"] >= 10.0);
    assert!(
        m["edgecam_keyframe_requests_total"] + m["edgecam_fanout_joins_from_recent_gop_total"]
            >= 1.0,
        "the join asked for an IDR, or started from a keyframe just made: {body}"
    );
    assert!(m.contains_key("edgecam_fanout_dropped_total{reason=\"queue_full\"}"));
    assert!(
        !m.contains_key("edgecam_upstream_live"),
        "no upstream configured"
    );
    // Per-viewer link quality from RTCP: the viewer's receiver reports echo our SRs (sent
    // about once a second), which gives the round trip.
    let mut links = serde_json::Value::Null;
    for _ in 0..100 {
        let (_, status) = daemon.get("/api/status").await;
        let v: serde_json::Value = serde_json::from_str(&status).expect("status JSON");
        links = v["viewer_links"].clone();
        if links[0]["rtt_ms"].is_number() && links[0]["send_bitrate_bps"].as_u64() > Some(0) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert_eq!(links.as_array().map(Vec::len), Some(1), "{links}");
    let link = &links[0];
    assert_eq!(link["kind"], "websocket");
    let rtt_ms = link["rtt_ms"].as_f64().expect("RTT measured within 10 s");
    assert!(rtt_ms > 0.0 && rtt_ms < 100.0, "loopback RTT {rtt_ms} ms");
    assert!(link["reports"].as_u64() >= Some(1));
    assert_eq!(link["packets_lost"], 0, "nothing is lost on loopback");
    assert!(link["send_bitrate_bps"].as_u64() > Some(10_000), "{link}");
    let id = link["id"].as_u64().expect("viewer id");
    let m = parse(&daemon.get("/metrics").await.1);
    let labels = format!("{{viewer=\"{id}\",kind=\"websocket\"}}");
    let rtt_s = m[&format!("edgecam_viewer_rtt_seconds{labels}")];
    assert!(rtt_s > 0.0 && rtt_s < 0.1, "{rtt_s}");
    assert_eq!(m[&format!("edgecam_viewer_fraction_lost{labels}")], 0.0);
    assert!(m[&format!("edgecam_viewer_send_bitrate_bps{labels}")] > 10_000.0);
    assert!(m["edgecam_send_bitrate_bps"] > 10_000.0);
    // By now the encoder has run for over a second: its rate is measured (800 kbit/s set).
    assert!(
        m["edgecam_encoder_bitrate_bps"] > 100_000.0,
        "{}",
        m["edgecam_encoder_bitrate_bps"]
    );
    assert!(m["process_resident_memory_bytes"] > 1e6);
    assert!(m["process_open_fds"] >= 3.0);
    assert!(m["process_threads"] >= 2.0);
    assert!(m["edgecam_runtime_tasks"] >= 1.0);
    // Counters only grow.
    let later = parse(&daemon.get("/metrics").await.1);
    assert!(later["edgecam_frames_encoded_total"] >= m["edgecam_frames_encoded_total"]);
    viewer.close().await;
    daemon.stop().await;
}
