//! `/metrics` in the Prometheus text format (version 0.0.4), from the same snapshot as
//! `/api/status`. Counters of the encoder restart with each pipeline run; Prometheus's
//! `rate()` takes such resets in its stride. The encoder's bitrate is also a gauge, over the last second.

use crate::admission::Presenter;
use crate::status::Snapshot;
use crate::supervisor::Pipeline;
use std::fmt::Write;

fn borrowed(v: &[(String, f64)]) -> Vec<(&str, f64)> {
    v.iter().map(|(l, x)| (l.as_str(), *x)).collect()
}

/// The snapshot as Prometheus text.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, f64)]| {
        let _ = writeln!(out, "# HELP {name} {help}");
        let _ = writeln!(out, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            if labels.is_empty() {
                let _ = writeln!(out, "{name} {value}");
            } else {
                let _ = writeln!(out, "{name}{{{labels}}} {value}");
            }
        }
    };
    let f = |v: u64| v as f64;
    metric(
        "edgecam_viewers",
        "gauge",
        "Viewers with a peer (WebSocket and WHEP).",
        &[("", s.viewers as f64)],
    );
    metric(
        "edgecam_viewers_max",
        "gauge",
        "Most viewers at once (viewers.max).",
        &[("", s.viewers_max as f64)],
    );
    let presenter = |p: Presenter| if s.presenter == p { 1.0 } else { 0.0 };
    metric(
        "edgecam_presenter",
        "gauge",
        "Who presents: 1 for the current kind.",
        &[
            ("kind=\"camera\"", presenter(Presenter::Camera)),
            ("kind=\"browser\"", presenter(Presenter::Browser)),
            ("kind=\"none\"", presenter(Presenter::None)),
        ],
    );
    metric(
        "edgecam_pipeline_up",
        "gauge",
        "1 while the camera pipeline delivers frames.",
        &[(
            "",
            if s.pipeline == Pipeline::Running {
                1.0
            } else {
                0.0
            },
        )],
    );
    metric(
        "edgecam_pipeline_restarts_total",
        "counter",
        "Camera pipeline restarts after errors or stalls.",
        &[("", f(s.pipeline_restarts))],
    );
    metric(
        "edgecam_frames_encoded_total",
        "counter",
        "Access units from the encoder (this pipeline run).",
        &[("", f(s.frames_encoded))],
    );
    metric(
        "edgecam_keyframes_total",
        "counter",
        "Keyframes from the encoder (this pipeline run).",
        &[("", f(s.keyframes))],
    );
    metric(
        "edgecam_forced_idrs_total",
        "counter",
        "Keyframes forced on request (this pipeline run).",
        &[("", f(s.forced_idrs))],
    );
    metric(
        "edgecam_bytes_encoded_total",
        "counter",
        "Encoded bytes (this pipeline run).",
        &[("", f(s.bytes_encoded))],
    );
    metric(
        "edgecam_encoder_bitrate_bps",
        "gauge",
        "Encoded bits per second over the last second.",
        &[("", f(s.bitrate_bps))],
    );
    metric(
        "edgecam_fanout_frames_in_total",
        "counter",
        "Frames into the fan-out.",
        &[("", f(s.fanout.frames_in))],
    );
    metric(
        "edgecam_fanout_frames_out_total",
        "counter",
        "Frames handed to viewers, summed over viewers.",
        &[("", f(s.fanout.frames_out))],
    );
    metric(
        "edgecam_fanout_dropped_total",
        "counter",
        "Frames a viewer did not get, by reason.",
        &[
            ("reason=\"queue_full\"", f(s.fanout.dropped_queue_full)),
            (
                "reason=\"keyframe_wait\"",
                f(s.fanout.skipped_keyframe_wait),
            ),
        ],
    );
    metric(
        "edgecam_keyframe_requests_total",
        "counter",
        "Keyframe requests from joins and PLI/FIR.",
        &[("", f(s.fanout.keyframe_requests))],
    );
    metric(
        "edgecam_fanout_subscribers",
        "gauge",
        "Subscribers of the fan-out (viewers and the upstream push).",
        &[("", s.fanout.subscribed as f64)],
    );
    let upstream = match &s.upstream {
        None => None,
        Some(crate::upstream::UpstreamState::Live { .. }) => Some(1.0),
        Some(_) => Some(0.0),
    };
    // Per viewer, from its RTCP receiver reports (RTT once a report echoes one of our SRs).
    let per_viewer = |value: &dyn Fn(&crate::peer::link_stats::LinkQuality) -> Option<f64>| {
        s.viewer_links
            .iter()
            .filter_map(|l| {
                let labels = format!("viewer=\"{}\",kind=\"{}\"", l.id, l.kind.name());
                Some((labels, value(&l.quality)?))
            })
            .collect::<Vec<(String, f64)>>()
    };
    let rtt = per_viewer(&|q| q.rtt_ms.map(|ms| ms / 1000.0));
    metric(
        "edgecam_viewer_rtt_seconds",
        "gauge",
        "Round-trip time to each viewer, from RTCP receiver reports.",
        &borrowed(&rtt),
    );
    let loss = per_viewer(&|q| Some(q.fraction_lost));
    metric(
        "edgecam_viewer_fraction_lost",
        "gauge",
        "Share of packets each viewer lost over its last report interval.",
        &borrowed(&loss),
    );
    let lost = per_viewer(&|q| Some(q.packets_lost as f64));
    metric(
        "edgecam_viewer_packets_lost_total",
        "counter",
        "Packets each viewer reports lost over its session.",
        &borrowed(&lost),
    );
    let jitter = per_viewer(&|q| Some(q.jitter_ms / 1000.0));
    metric(
        "edgecam_viewer_jitter_seconds",
        "gauge",
        "Interarrival jitter each viewer reports.",
        &borrowed(&jitter),
    );
    let rate = per_viewer(&|q| Some(q.send_bitrate_bps as f64));
    metric(
        "edgecam_viewer_send_bitrate_bps",
        "gauge",
        "Bits per second sent to each viewer (last second).",
        &borrowed(&rate),
    );
    let total: u64 = s
        .viewer_links
        .iter()
        .map(|l| l.quality.send_bitrate_bps)
        .sum();
    metric(
        "edgecam_send_bitrate_bps",
        "gauge",
        "Bits per second sent to all viewers together (last second).",
        &[("", total as f64)],
    );
    // The usual process metrics (names as Prometheus client libraries use them), and tasks.
    let p = &s.process;
    metric(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory of the daemon.",
        &[("", f(p.resident_bytes))],
    );
    metric(
        "process_open_fds",
        "gauge",
        "Open file descriptors of the daemon.",
        &[("", f(p.open_fds))],
    );
    metric(
        "process_threads",
        "gauge",
        "Threads of the daemon.",
        &[("", f(p.threads))],
    );
    metric(
        "edgecam_runtime_tasks",
        "gauge",
        "Async tasks alive in the daemon.",
        &[("", f(p.tasks))],
    );
    if let Some(up) = upstream {
        metric(
            "edgecam_upstream_live",
            "gauge",
            "1 while the push to upstream.whip_url is live.",
            &[("", up)],
        );
    }
    out
}
