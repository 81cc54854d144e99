//! `/metrics` in the Prometheus text format (version 0.0.4), from the same snapshot as
//! `/api/status`. Counters of the encoder restart with each pipeline run; Prometheus's
//! `rate()` takes such resets in its stride. The encoder's bitrate is also a gauge, over
//! the last second.
//!
//! Every family is one row of [`FAMILIES`]: its name, kind, help and how its samples are
//! read from the snapshot; [`render`] writes them all the same way.

use crate::admission::Presenter;
use crate::peer::link_stats::LinkQuality;
use crate::status::Snapshot;
use crate::supervisor::Pipeline;
use crate::upstream::UpstreamState;
use std::fmt::Write;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Counter,
    Gauge,
}

/// One sample: its labels (name, value) and its value.
type Sample = (Vec<(&'static str, String)>, f64);

/// One metric family.
struct Family {
    name: &'static str,
    kind: Kind,
    help: &'static str,
    samples: fn(&Snapshot) -> Vec<Sample>,
    /// Left out whole when it has no samples (a push that is not configured); other
    /// families keep their HELP and TYPE (no viewers yet).
    optional: bool,
}

fn one(v: f64) -> Vec<Sample> {
    vec![(vec![], v)]
}

fn flag(b: bool) -> f64 {
    if b { 1.0 } else { 0.0 }
}

/// A sample per viewer, from its RTCP receiver reports (RTT once a report echoes one of
/// our sender reports); viewers without the value have no sample.
fn per_viewer(s: &Snapshot, value: fn(&LinkQuality) -> Option<f64>) -> Vec<Sample> {
    s.viewer_links
        .iter()
        .filter_map(|l| {
            let labels = vec![("viewer", l.id.to_string()), ("kind", l.kind.name().into())];
            Some((labels, value(&l.quality)?))
        })
        .collect()
}

const FAMILIES: &[Family] = &[
    Family {
        name: "edgecam_viewers",
        kind: Kind::Gauge,
        help: "Viewers with a peer (WebSocket and WHEP).",
        samples: |s| one(s.viewers as f64),
        optional: false,
    },
    Family {
        name: "edgecam_viewers_max",
        kind: Kind::Gauge,
        help: "Most viewers at once (viewers.max).",
        samples: |s| one(s.viewers_max as f64),
        optional: false,
    },
    Family {
        name: "edgecam_presenter",
        kind: Kind::Gauge,
        help: "Who presents: 1 for the current kind.",
        samples: |s| {
            [
                ("camera", Presenter::Camera),
                ("browser", Presenter::Browser),
                ("none", Presenter::None),
            ]
            .into_iter()
            .map(|(kind, p)| (vec![("kind", kind.to_string())], flag(s.presenter == p)))
            .collect()
        },
        optional: false,
    },
    Family {
        name: "edgecam_pipeline_up",
        kind: Kind::Gauge,
        help: "1 while the camera pipeline delivers frames.",
        samples: |s| one(flag(s.pipeline == Pipeline::Running)),
        optional: false,
    },
    Family {
        name: "edgecam_pipeline_restarts_total",
        kind: Kind::Counter,
        help: "Camera pipeline restarts after errors or stalls.",
        samples: |s| one(s.pipeline_restarts as f64),
        optional: false,
    },
    Family {
        name: "edgecam_frames_encoded_total",
        kind: Kind::Counter,
        help: "Access units from the encoder (this pipeline run).",
        samples: |s| one(s.frames_encoded as f64),
        optional: false,
    },
    Family {
        name: "edgecam_keyframes_total",
        kind: Kind::Counter,
        help: "Keyframes from the encoder (this pipeline run).",
        samples: |s| one(s.keyframes as f64),
        optional: false,
    },
    Family {
        name: "edgecam_forced_idrs_total",
        kind: Kind::Counter,
        help: "Keyframes forced on request (this pipeline run).",
        samples: |s| one(s.forced_idrs as f64),
        optional: false,
    },
    Family {
        name: "edgecam_bytes_encoded_total",
        kind: Kind::Counter,
        help: "Encoded bytes (this pipeline run).",
        samples: |s| one(s.bytes_encoded as f64),
        optional: false,
    },
    Family {
        name: "edgecam_encoder_bitrate_bps",
        kind: Kind::Gauge,
        help: "Encoded bits per second over the last second.",
        samples: |s| one(s.bitrate_bps as f64),
        optional: false,
    },
    Family {
        name: "edgecam_fanout_frames_in_total",
        kind: Kind::Counter,
        help: "Frames into the fan-out.",
        samples: |s| one(s.fanout.frames_in as f64),
        optional: false,
    },
    Family {
        name: "edgecam_fanout_frames_out_total",
        kind: Kind::Counter,
        help: "Frames handed to viewers, summed over viewers.",
        samples: |s| one(s.fanout.frames_out as f64),
        optional: false,
    },
    Family {
        name: "edgecam_fanout_dropped_total",
        kind: Kind::Counter,
        help: "Frames a viewer did not get, by reason.",
        samples: |s| {
            vec![
                (
                    vec![("reason", "queue_full".into())],
                    s.fanout.dropped_queue_full as f64,
                ),
                (
                    vec![("reason", "keyframe_wait".into())],
                    s.fanout.skipped_keyframe_wait as f64,
                ),
            ]
        },
        optional: false,
    },
    Family {
        name: "edgecam_keyframe_requests_total",
        kind: Kind::Counter,
        help: "Keyframe requests from joins and PLI/FIR.",
        samples: |s| one(s.fanout.keyframe_requests as f64),
        optional: false,
    },
    Family {
        name: "edgecam_fanout_joins_from_recent_gop_total",
        kind: Kind::Counter,
        help: "Joins that started from the young current GOP instead of forcing an IDR.",
        samples: |s| one(s.fanout.joins_from_recent_gop as f64),
        optional: false,
    },
    Family {
        name: "edgecam_vp8_viewers",
        kind: Kind::Gauge,
        help: "Viewers on the VP8 stream (browsers without H.264).",
        samples: |s| one(s.vp8.viewers as f64),
        optional: false,
    },
    Family {
        name: "edgecam_vp8_encoding",
        kind: Kind::Gauge,
        help: "1 while the VP8 stream is encoded (someone watches it).",
        samples: |s| one(flag(s.vp8.running)),
        optional: false,
    },
    Family {
        name: "edgecam_vp8_frames_encoded_total",
        kind: Kind::Counter,
        help: "Frames of the VP8 stream (this pipeline run).",
        samples: |s| one(s.vp8.frames_encoded as f64),
        optional: false,
    },
    Family {
        name: "edgecam_transcode_running",
        kind: Kind::Gauge,
        help: "1 while the presenter's video is converted for viewers of the other codec.",
        samples: |s| one(flag(s.transcode.running)),
        optional: false,
    },
    Family {
        name: "edgecam_transcode_frames_encoded_total",
        kind: Kind::Counter,
        help: "Frames the transcoder made (this run).",
        samples: |s| one(s.transcode.frames_encoded as f64),
        optional: false,
    },
    Family {
        name: "edgecam_transcode_failures_total",
        kind: Kind::Counter,
        help: "Transcoder runs that failed (each is retried).",
        samples: |s| one(s.transcode.failures as f64),
        optional: false,
    },
    Family {
        name: "edgecam_audio_running",
        kind: Kind::Gauge,
        help: "1 while the microphone delivers (audio.source set and captured).",
        samples: |s| one(flag(s.audio.state.state == "running")),
        optional: false,
    },
    Family {
        name: "edgecam_audio_packets_total",
        kind: Kind::Counter,
        help: "Opus packets captured from the microphone.",
        samples: |s| one(s.audio.packets as f64),
        optional: false,
    },
    Family {
        name: "edgecam_audio_restarts_total",
        kind: Kind::Counter,
        help: "Times the microphone was opened again after failing or vanishing.",
        samples: |s| one(s.audio.state.restarts as f64),
        optional: false,
    },
    Family {
        name: "edgecam_board_temperature_celsius",
        kind: Kind::Gauge,
        help: "Each thermal zone's temperature (absent where the board has none).",
        samples: |s| {
            s.board
                .thermal_zones
                .iter()
                .map(|z| (vec![("zone", z.name.clone())], z.temp_c))
                .collect()
        },
        optional: true,
    },
    Family {
        name: "edgecam_board_condition",
        kind: Kind::Gauge,
        help: "1 while (when=now) or if ever since boot (when=since_boot) the firmware \
               reports the condition (Raspberry Pi get_throttled; absent elsewhere).",
        samples: |s| {
            let Some(t) = s.board.throttling else {
                return vec![];
            };
            let mut out = Vec::new();
            for (when, c) in [("now", t.now), ("since_boot", t.since_boot)] {
                for (name, on) in [
                    ("undervoltage", c.undervoltage),
                    ("frequency_capped", c.frequency_capped),
                    ("throttled", c.throttled),
                    ("soft_temperature_limit", c.soft_temperature_limit),
                ] {
                    out.push((
                        vec![("condition", name.into()), ("when", when.into())],
                        flag(on),
                    ));
                }
            }
            out
        },
        optional: true,
    },
    Family {
        name: "edgecam_board_load1",
        kind: Kind::Gauge,
        help: "The one-minute load average.",
        samples: |s| s.board.load.map_or(vec![], |l| one(l[0])),
        optional: true,
    },
    Family {
        name: "edgecam_board_memory_available_bytes",
        kind: Kind::Gauge,
        help: "Memory available to programs (MemAvailable).",
        samples: |s| {
            s.board
                .memory_available_mib
                .map_or(vec![], |m| one((m * 1024 * 1024) as f64))
        },
        optional: true,
    },
    Family {
        name: "edgecam_board_uptime_seconds",
        kind: Kind::Gauge,
        help: "Seconds since the board booted.",
        samples: |s| s.board.uptime_s.map_or(vec![], |u| one(u as f64)),
        optional: true,
    },
    Family {
        name: "edgecam_fanout_subscribers",
        kind: Kind::Gauge,
        help: "Subscribers of the fan-out (viewers and the upstream push).",
        samples: |s| one(s.fanout.subscribed as f64),
        optional: false,
    },
    Family {
        name: "edgecam_viewer_rtt_seconds",
        kind: Kind::Gauge,
        help: "Round-trip time to each viewer, from RTCP receiver reports.",
        samples: |s| per_viewer(s, |q| q.rtt_ms.map(|ms| ms / 1000.0)),
        optional: false,
    },
    Family {
        name: "edgecam_viewer_fraction_lost",
        kind: Kind::Gauge,
        help: "Share of packets each viewer lost over its last report interval.",
        samples: |s| per_viewer(s, |q| Some(q.fraction_lost)),
        optional: false,
    },
    Family {
        name: "edgecam_viewer_packets_lost_total",
        kind: Kind::Counter,
        help: "Packets each viewer reports lost over its session.",
        samples: |s| per_viewer(s, |q| Some(q.packets_lost as f64)),
        optional: false,
    },
    Family {
        name: "edgecam_viewer_packets_resent_total",
        kind: Kind::Counter,
        help: "Packets sent again to each viewer because its NACK asked for them.",
        samples: |s| per_viewer(s, |q| Some(q.packets_resent as f64)),
        optional: false,
    },
    Family {
        name: "edgecam_viewer_jitter_seconds",
        kind: Kind::Gauge,
        help: "Interarrival jitter each viewer reports.",
        samples: |s| per_viewer(s, |q| Some(q.jitter_ms / 1000.0)),
        optional: false,
    },
    Family {
        name: "edgecam_viewer_send_bitrate_bps",
        kind: Kind::Gauge,
        help: "Bits per second sent to each viewer (last second).",
        samples: |s| per_viewer(s, |q| Some(q.send_bitrate_bps as f64)),
        optional: false,
    },
    Family {
        name: "edgecam_viewers_on_substream",
        kind: Kind::Gauge,
        help: "Viewers moved to the sub-stream because their link loses packets.",
        samples: |s| one(s.viewer_links.iter().filter(|l| l.stream == "sub").count() as f64),
        optional: false,
    },
    Family {
        name: "edgecam_viewer_stream_moves_total",
        kind: Kind::Counter,
        help: "Moves of each viewer between the main stream and the sub-stream.",
        samples: |s| {
            s.viewer_links
                .iter()
                .map(|l| {
                    let labels = vec![("viewer", l.id.to_string()), ("kind", l.kind.name().into())];
                    (labels, l.stream_moves as f64)
                })
                .collect()
        },
        optional: false,
    },
    Family {
        name: "edgecam_send_bitrate_bps",
        kind: Kind::Gauge,
        help: "Bits per second sent to all viewers together (last second).",
        samples: |s| {
            let total: u64 = s
                .viewer_links
                .iter()
                .map(|l| l.quality.send_bitrate_bps)
                .sum();
            one(total as f64)
        },
        optional: false,
    },
    // The usual process metrics (names as Prometheus client libraries use them), and tasks.
    Family {
        name: "process_resident_memory_bytes",
        kind: Kind::Gauge,
        help: "Resident memory of the daemon.",
        samples: |s| one(s.process.resident_bytes as f64),
        optional: false,
    },
    Family {
        name: "process_open_fds",
        kind: Kind::Gauge,
        help: "Open file descriptors of the daemon.",
        samples: |s| one(s.process.open_fds as f64),
        optional: false,
    },
    Family {
        name: "process_threads",
        kind: Kind::Gauge,
        help: "Threads of the daemon.",
        samples: |s| one(s.process.threads as f64),
        optional: false,
    },
    Family {
        name: "edgecam_runtime_tasks",
        kind: Kind::Gauge,
        help: "Async tasks alive in the daemon.",
        samples: |s| one(s.process.tasks as f64),
        optional: false,
    },
    // Only when a push is configured.
    Family {
        name: "edgecam_upstream_live",
        kind: Kind::Gauge,
        help: "1 while the push to upstream.whip_url is live.",
        samples: |s| match &s.upstream {
            None => vec![],
            Some(state) => one(flag(matches!(state, UpstreamState::Live { .. }))),
        },
        optional: true,
    },
];

/// A label value as the text format needs it: backslash, double quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The snapshot as Prometheus text.
pub fn render(s: &Snapshot) -> String {
    let mut out = String::new();
    for family in FAMILIES {
        let samples = (family.samples)(s);
        if samples.is_empty() && family.optional {
            continue;
        }
        let kind = match family.kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
        };
        let _ = writeln!(out, "# HELP {} {}", family.name, family.help);
        let _ = writeln!(out, "# TYPE {} {kind}", family.name);
        for (labels, value) in samples {
            let _ = write!(out, "{}", family.name);
            if !labels.is_empty() {
                let text: Vec<String> = labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{}\"", escape(v)))
                    .collect();
                let _ = write!(out, "{{{}}}", text.join(","));
            }
            let _ = writeln!(out, " {value}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn families_are_named_by_the_conventions() {
        let mut names = std::collections::HashSet::new();
        for f in FAMILIES {
            assert!(names.insert(f.name), "{} twice", f.name);
            assert!(
                f.name
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'),
                "{}",
                f.name
            );
            // Counters end in _total; gauges do not.
            assert_eq!(
                f.kind == Kind::Counter,
                f.name.ends_with("_total"),
                "{}",
                f.name
            );
            assert!(f.help.ends_with('.'), "{}", f.name);
        }
    }

    #[test]
    fn label_values_are_escaped() {
        assert_eq!(escape("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
    }
}
