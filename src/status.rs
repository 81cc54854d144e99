//! The read-only telemetry view behind `/api/status`, `/metrics` and the data channels'
//! status line. Each stage keeps its own state (admission: presenter and viewers;
//! supervisor: the pipeline; gpio: the LEDs; peer: the links; upstream: the push); this
//! module only reads them, and nothing it reads imports it.

use crate::admission::{Admission, Presenter};
use crate::fanout::Hub;
use crate::gpio::Leds;
use crate::peer::channel::ChannelFeed;
use crate::peer::links::{Links, ViewerLink};
use crate::supervisor::{CameraState, Pipeline};
use crate::upstream::UpstreamState;
use serde::Serialize;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use tokio::sync::watch;

/// Where the daemon's state is read from.
pub struct Status {
    /// What NVRs and the page call the camera (`camera.name`, else the hostname).
    pub name: String,
    pub admission: Arc<Admission>,
    pub camera: watch::Receiver<CameraState>,
    pub leds: watch::Receiver<Leds>,
    pub links: Arc<Links>,
    pub upstream: watch::Receiver<Option<UpstreamState>>,
    pub hub: Arc<Hub>,
    /// The VP8 stream for browsers without H.264.
    pub vp8: Arc<crate::fanout::SecondStream>,
    pub transcoding: watch::Receiver<crate::transcode::Transcoding>,
    /// The sub-stream's hub (RTSP `/sub`).
    pub sub: Arc<Hub>,
    /// The microphone.
    pub audio: watch::Receiver<crate::audio::AudioState>,
    /// The RTSP server (None: `rtsp.listen` is empty).
    pub rtsp: Option<RtspInfo>,
    /// HTTPS certificate in use (None: plain HTTP).
    pub tls: Option<TlsInfo>,
    /// A rejected boot-partition settings file: shown on the page, the status LED blinks.
    pub config_error: Option<String>,
}

/// The RTSP server in `/api/status`.
#[derive(Debug, Clone, Serialize)]
pub struct RtspInfo {
    /// The port it listens on.
    pub port: Option<u16>,
    /// Why it is not running, when it could not start.
    pub error: Option<String>,
}

/// The HTTPS certificate, so a user can check the one the browser shows.
#[derive(Debug, Clone, Serialize)]
pub struct TlsInfo {
    /// `self-signed` or `files`.
    pub source: &'static str,
    pub fingerprint_sha256: String,
    /// Why the configured files were not used (a self-signed certificate stands in).
    pub error: Option<String>,
}

/// What `/api/status` returns.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub version: &'static str,
    /// The camera's name (`camera.name`, else the hostname).
    pub name: String,
    pub presenter: Presenter,
    pub viewers: usize,
    pub viewers_max: usize,
    pub source: String,
    pub encoder: String,
    pub pipeline: Pipeline,
    pub pipeline_restarts: u64,
    pub restart_backoff_s: u64,
    pub frames_encoded: u64,
    pub keyframes: u64,
    pub forced_idrs: u64,
    pub bytes_encoded: u64,
    /// Encoded bits per second over the last second (0 when the camera is not running).
    pub bitrate_bps: u64,
    pub fanout: FanoutSnapshot,
    /// The second, VP8 stream: encoded only while one of its viewers watches.
    pub vp8: Vp8Snapshot,
    /// Converting the presenter's video for viewers of the other codec.
    pub transcode: TranscodeSnapshot,
    /// The RTSP server (`null` when off).
    pub rtsp: Option<RtspInfo>,
    /// The sub-stream at RTSP `/sub`.
    pub substream: SubSnapshot,
    /// The microphone (`state` `off` when `audio.source` is none).
    pub audio: AudioSnapshot,
    pub leds: Leds,
    /// Why the last provisioning file was rejected, if it was.
    pub config_error: Option<String>,
    /// The push to an upstream WHIP server (`null` when none is configured).
    pub upstream: Option<UpstreamState>,
    /// Each viewer's link: RTT and loss from its RTCP receiver reports, send bitrate.
    pub viewer_links: Vec<ViewerLink>,
    /// The HTTPS certificate in use; `null` for plain HTTP.
    pub tls: Option<TlsInfo>,
    /// What the daemon itself holds: memory, descriptors, threads, tasks.
    pub process: ProcessSnapshot,
    /// The board: temperature, throttling and undervoltage, load, memory, uptime.
    pub board: crate::board::Health,
    /// The names and addresses the camera can be reached at.
    pub network: NetworkSnapshot,
}

/// Where the camera is on the network.
#[derive(Debug, Serialize)]
pub struct NetworkSnapshot {
    pub hostname: String,
    /// Its mDNS name (the image runs avahi).
    pub mdns_name: String,
    /// `interface: address/prefix` for each IPv4 address but loopback's.
    pub addresses: Vec<String>,
}

impl NetworkSnapshot {
    pub fn read() -> Self {
        let hostname = crate::netif::hostname();
        Self {
            mdns_name: format!("{hostname}.local"),
            hostname,
            addresses: crate::netif::ipv4_addresses()
                .into_iter()
                .filter(|(name, _, _)| name != "lo")
                .map(|(name, a, p)| format!("{name}: {a}/{p}"))
                .collect(),
        }
    }
}

/// The daemon's own resource use (for leak checks and dashboards).
#[derive(Debug, Default, Serialize)]
pub struct ProcessSnapshot {
    pub resident_bytes: u64,
    pub open_fds: u64,
    pub threads: u64,
    /// Tokio tasks alive (sessions, peers, pumps): back to its idle value when all leave.
    pub tasks: u64,
}

impl ProcessSnapshot {
    /// Reads `/proc/self`; fields it cannot read stay 0 (not Linux, or /proc not mounted).
    pub fn read() -> Self {
        let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Self {
            resident_bytes: field("VmRSS:") * 1024,
            open_fds: std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count() as u64),
            threads: field("Threads:"),
            tasks: tokio::runtime::Handle::try_current()
                .map_or(0, |h| h.metrics().num_alive_tasks() as u64),
        }
    }
}

/// The VP8 stream in `/api/status`.
#[derive(Debug, Serialize)]
pub struct Vp8Snapshot {
    /// A VP8 viewer can watch now.
    pub available: bool,
    /// Where its frames come from: `camera` (the pipeline's second encode),
    /// `transcode` (made from the presenter's H.264), `presenter` (a VP8 presenter's own
    /// video, relayed as sent); null when there is none.
    pub origin: Option<&'static str>,
    /// Viewers on it; an encode for it runs while there is one.
    pub viewers: usize,
    /// It is being encoded now (by the camera or the transcoder).
    pub running: bool,
    /// Frames encoded for it in the current camera or transcoder run.
    pub frames_encoded: u64,
}

/// The microphone in `/api/status`.
#[derive(Debug, Serialize)]
pub struct AudioSnapshot {
    #[serde(flatten)]
    pub state: crate::audio::AudioState,
    /// Opus packets captured since start (silence sent while it is missing not counted).
    pub packets: u64,
}

/// The sub-stream in `/api/status`.
#[derive(Debug, Serialize)]
pub struct SubSnapshot {
    /// RTSP clients on it; it is encoded while there is one.
    pub viewers: usize,
    /// Where it comes from now: `camera` (a branch of the capture) or `transcode`.
    pub origin: Option<&'static str>,
    pub running: bool,
    /// Frames encoded for it in the current camera or transcoder run.
    pub frames_encoded: u64,
}

/// The transcoder in `/api/status`.
#[derive(Debug, Serialize)]
pub struct TranscodeSnapshot {
    /// `h264` or `vp8`, while the presenter's codec is not every viewer's.
    pub from: Option<crate::transcode::Codec>,
    pub to: Option<crate::transcode::Codec>,
    /// Running now (its output has viewers).
    pub running: bool,
    pub frames_encoded: u64,
    /// Runs that failed (each is retried).
    pub failures: u64,
}

#[derive(Debug, Serialize)]
pub struct FanoutSnapshot {
    pub subscribed: usize,
    pub frames_in: u64,
    pub frames_out: u64,
    pub dropped_queue_full: u64,
    pub skipped_keyframe_wait: u64,
    pub keyframe_requests: u64,
    /// Joins that started from the young current GOP (no forced IDR needed).
    pub joins_from_recent_gop: u64,
}

impl Status {
    /// Everything `/api/status` shows. Each stage's state is read on its own (one watch
    /// borrow or one lock at a time), so no lock order exists to get wrong.
    pub fn snapshot(&self) -> Snapshot {
        let camera = self.camera.borrow().clone();
        let run = &camera.run;
        let h = &self.hub.stats;
        Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            name: self.name.clone(),
            presenter: self.admission.presenter(),
            viewers: self.admission.viewers(),
            viewers_max: self.admission.viewers_max(),
            source: camera.source.clone(),
            encoder: camera.encoder.clone(),
            pipeline_restarts: camera.restarts,
            restart_backoff_s: camera.backoff_s,
            frames_encoded: run.frames.load(Ordering::Relaxed),
            keyframes: run.keyframes.load(Ordering::Relaxed),
            forced_idrs: run.forced_idrs.load(Ordering::Relaxed),
            bytes_encoded: run.bytes.load(Ordering::Relaxed),
            bitrate_bps: if camera.pipeline == Pipeline::Running {
                run.bitrate_bps.load(Ordering::Relaxed)
            } else {
                0
            },
            vp8: self.vp8_snapshot(&camera),
            rtsp: self.rtsp.clone(),
            substream: self.sub_snapshot(&camera),
            audio: {
                let a = self.audio.borrow().clone();
                AudioSnapshot {
                    packets: a.packets(),
                    state: a,
                }
            },
            transcode: {
                let t = self.transcoding.borrow();
                TranscodeSnapshot {
                    from: t.direction.map(|d| d.0),
                    to: t.direction.map(|d| d.1),
                    running: t.codec.running,
                    frames_encoded: t.codec.run.frames.load(Ordering::Relaxed),
                    failures: t.codec.failures + t.sub.failures,
                }
            },
            pipeline: camera.pipeline,
            leds: self.leds.borrow().clone(),
            config_error: self.config_error.clone(),
            upstream: self.upstream.borrow().clone(),
            viewer_links: self.links.list(),
            tls: self.tls.clone(),
            process: ProcessSnapshot::read(),
            board: crate::board::read_live(),
            network: NetworkSnapshot::read(),
            fanout: FanoutSnapshot {
                subscribed: self.hub.viewers(),
                frames_in: h.frames_in.load(Ordering::Relaxed),
                frames_out: h.frames_out.load(Ordering::Relaxed),
                dropped_queue_full: h.dropped_queue_full.load(Ordering::Relaxed),
                skipped_keyframe_wait: h.skipped_keyframe_wait.load(Ordering::Relaxed),
                keyframe_requests: h.keyframe_requests.load(Ordering::Relaxed),
                joins_from_recent_gop: h.joins_from_recent_gop.load(Ordering::Relaxed),
            },
        }
    }
}

impl Status {
    fn sub_snapshot(&self, camera: &CameraState) -> SubSnapshot {
        let viewers = self.sub.viewers();
        let t = self.transcoding.borrow();
        let from_camera = self.vp8.produced().raw && self.camera.borrow().sub_run.is_some();
        let (origin, running, frames) = if from_camera {
            let frames = camera
                .sub_run
                .as_ref()
                .map_or(0, |r| r.frames.load(Ordering::Relaxed));
            (Some("camera"), viewers > 0, frames)
        } else if t.sub.planned {
            (
                Some("transcode"),
                t.sub.running,
                t.sub.run.frames.load(Ordering::Relaxed),
            )
        } else {
            (None, false, 0)
        };
        SubSnapshot {
            viewers,
            origin,
            running,
            frames_encoded: frames,
        }
    }

    fn vp8_snapshot(&self, camera: &CameraState) -> Vp8Snapshot {
        let viewers = self.vp8.hub.viewers();
        let available = self.vp8.get().is_some();
        let t = self.transcoding.borrow();
        let transcoded = t.direction.map(|d| d.1) == Some(crate::transcode::Codec::Vp8);
        let p = self.vp8.produced();
        let origin = match () {
            _ if !available => None,
            _ if p.vp8 && p.h264 => Some("camera"),
            _ if p.vp8 => Some("presenter"),
            _ if transcoded => Some("transcode"),
            _ => None,
        };
        let (running, frames) = match origin {
            Some("camera") => (
                viewers > 0,
                camera
                    .vp8_run
                    .as_ref()
                    .map_or(0, |r| r.frames.load(Ordering::Relaxed)),
            ),
            Some("transcode") => (t.codec.running, t.codec.run.frames.load(Ordering::Relaxed)),
            _ => (false, 0),
        };
        Vp8Snapshot {
            available,
            origin,
            viewers,
            running,
            frames_encoded: frames,
        }
    }
}

/// The data channels' status line: who presents, how many watch, and whether there is
/// a picture (the camera counts once its pipeline runs).
pub fn channel_line(presenter: Presenter, viewers: usize, pipeline: &Pipeline) -> String {
    let live = match presenter {
        Presenter::Camera => *pipeline == Pipeline::Running,
        Presenter::Browser => true,
        Presenter::None => false,
    };
    serde_json::json!({
        "type": "status",
        "viewers": viewers,
        "presenter": presenter,
        "live": live,
    })
    .to_string()
}

/// Keeps the data channels' status line current until `stop` turns true.
pub async fn feed_channel(
    admission: Arc<Admission>,
    mut camera: watch::Receiver<CameraState>,
    feed: Arc<ChannelFeed>,
    mut stop: watch::Receiver<bool>,
) {
    let mut presenter = admission.watch_presenter();
    let mut viewers = admission.watch_viewers();
    loop {
        let line = channel_line(
            *presenter.borrow_and_update(),
            *viewers.borrow_and_update(),
            &camera.borrow_and_update().pipeline,
        );
        feed.set_status(line);
        tokio::select! {
            r = presenter.changed() => if r.is_err() { return },
            r = viewers.changed() => if r.is_err() { return },
            r = camera.changed() => if r.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn next(lines: &mut watch::Receiver<String>) -> serde_json::Value {
        tokio::time::timeout(std::time::Duration::from_secs(5), lines.changed())
            .await
            .expect("a new line")
            .unwrap();
        serde_json::from_str(&lines.borrow_and_update()).unwrap()
    }

    #[test]
    fn the_channel_line_follows_the_presenter_and_pipeline() {
        let line = |p, n, pipe: Pipeline| {
            serde_json::from_str::<serde_json::Value>(&channel_line(p, n, &pipe)).unwrap()
        };
        let v = line(Presenter::Browser, 2, Pipeline::Stopped);
        assert_eq!(
            v,
            serde_json::json!({"type": "status", "viewers": 2, "presenter": "browser", "live": true})
        );
        assert_eq!(
            line(Presenter::Camera, 0, Pipeline::Starting)["live"],
            false
        );
        assert_eq!(line(Presenter::Camera, 0, Pipeline::Running)["live"], true);
        assert_eq!(line(Presenter::None, 0, Pipeline::Running)["live"], false);
    }

    #[tokio::test]
    async fn the_feed_wakes_on_each_stage_change() {
        let admission = Admission::new(4);
        let (camera_tx, camera) = watch::channel(CameraState::default());
        let feed = Arc::new(ChannelFeed::default());
        let (_stop_tx, stop) = watch::channel(false);
        let mut lines = feed.watch_status();
        tokio::spawn(feed_channel(admission.clone(), camera, feed.clone(), stop));
        assert_eq!(next(&mut lines).await["presenter"], "none");
        let _camera = admission.present(Presenter::Camera, false).unwrap();
        assert_eq!(next(&mut lines).await["live"], false);
        camera_tx.send_modify(|c| c.pipeline = Pipeline::Running);
        assert_eq!(next(&mut lines).await["live"], true);
        let _viewer = admission.join_viewer().unwrap();
        assert_eq!(next(&mut lines).await["viewers"], 1);
    }
}
