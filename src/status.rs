//! Live state shared by the camera supervisor, signaling and the HTTP API, and the
//! snapshot `/api/status` and the data channels show.

use crate::encode::RunStats;
use crate::fanout::Hub;
use crate::peer::link_stats::{LinkQuality, LinkStats};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;
use tokio::sync::{broadcast, watch};

/// Who is presenting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Presenter {
    /// Nobody: viewers are told `stopCommunication` and wait.
    None,
    /// The appliance's own camera pipeline.
    Camera,
    /// A browser (or other WebRTC client) relayed through the appliance.
    Browser,
}

/// The camera pipeline's condition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state", content = "detail")]
pub enum Pipeline {
    Starting,
    Running,
    /// Failed; being restarted after the backoff shown.
    Error(String),
    Stopped,
}

/// Shared live state.
pub struct Status {
    pub hub: Arc<Hub>,
    pub presenter: watch::Sender<Presenter>,
    /// How many presenters have stopped. A viewer remembers the count it joined under:
    /// once the count moves on, its presenter is gone, even when another has taken over
    /// before the viewer heard of the change.
    presenters_ended: AtomicU64,
    /// Viewers with a peer (connected or connecting), counted by signaling.
    pub viewers: AtomicUsize,
    pub viewers_max: usize,
    pub pipeline_restarts: AtomicU64,
    inner: Mutex<Inner>,
    /// The compact JSON pushed on viewers' data channels; changes trigger a push.
    pub channel_json: watch::Sender<String>,
    /// Whether the current presenter sends audio (viewers then get an audio track).
    pub presenter_audio: AtomicBool,
    /// Presenter text messages, already wrapped as data-channel JSON, for every viewer.
    pub texts: broadcast::Sender<String>,
    /// A rejected boot-partition settings file: shown on the page, the status LED blinks.
    pub config_error: Mutex<Option<String>>,
    /// The push to `upstream.whip_url`, when configured.
    upstream: Mutex<Option<crate::upstream::UpstreamState>>,
    /// HTTPS certificate in use (None: plain HTTP).
    tls: Mutex<Option<TlsInfo>>,
    /// Every viewer peer's link statistics, by viewer id.
    links: Mutex<BTreeMap<u64, LinkEntry>>,
    next_link: AtomicU64,
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

/// How a viewer reached the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewerKind {
    WebSocket,
    Whep,
    /// The push to `upstream.whip_url` (a WHIP server watching us).
    Upstream,
}

struct LinkEntry {
    kind: ViewerKind,
    since: Instant,
    stats: Arc<LinkStats>,
}

/// A viewer's entry in the link list; dropping it (with the peer) removes the entry.
pub struct LinkGuard {
    pub id: u64,
    status: Arc<Status>,
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        self.status.lock_links().remove(&self.id);
    }
}

/// One viewer in `/api/status`.
#[derive(Debug, Clone, Serialize)]
pub struct ViewerLink {
    pub id: u64,
    pub kind: ViewerKind,
    pub connected_s: u64,
    #[serde(flatten)]
    pub quality: LinkQuality,
}

struct Inner {
    leds: Leds,
    source: String,
    encoder: String,
    pipeline: Pipeline,
    backoff_s: u64,
    run: Arc<RunStats>,
}

/// LED states as `/api/status` shows them.
#[derive(Debug, Clone, Serialize)]
pub struct Leds {
    /// The backend: "gpiochip", "rppal", "simulator" (or "none" before it starts).
    pub gpio: &'static str,
    /// The chip(s) the lines are on, with the character device.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gpio_chip: Option<String>,
    pub status: crate::gpio::LedMode,
    pub viewers: crate::gpio::LedMode,
}

impl Default for Leds {
    fn default() -> Self {
        Self {
            gpio: "none",
            gpio_chip: None,
            status: crate::gpio::LedMode::Off,
            viewers: crate::gpio::LedMode::Off,
        }
    }
}

/// What `/api/status` returns.
#[derive(Debug, Serialize)]
pub struct Snapshot {
    pub version: &'static str,
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
    pub leds: Leds,
    /// Why the last provisioning file was rejected, if it was.
    pub config_error: Option<String>,
    /// The push to an upstream WHIP server (`null` when none is configured).
    pub upstream: Option<crate::upstream::UpstreamState>,
    /// Each viewer's link: RTT and loss from its RTCP receiver reports, send bitrate.
    pub viewer_links: Vec<ViewerLink>,
    /// The HTTPS certificate in use; `null` for plain HTTP.
    pub tls: Option<TlsInfo>,
    /// What the daemon itself holds: memory, descriptors, threads, tasks.
    pub process: ProcessSnapshot,
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

#[derive(Debug, Serialize)]
pub struct FanoutSnapshot {
    pub subscribed: usize,
    pub frames_in: u64,
    pub frames_out: u64,
    pub dropped_queue_full: u64,
    pub skipped_keyframe_wait: u64,
    pub keyframe_requests: u64,
}

impl Status {
    pub fn new(hub: Arc<Hub>, viewers_max: usize) -> Arc<Self> {
        let status = Arc::new(Self {
            hub,
            presenter: watch::channel(Presenter::None).0,
            presenters_ended: AtomicU64::new(0),
            viewers: AtomicUsize::new(0),
            viewers_max,
            pipeline_restarts: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                leds: Leds::default(),
                source: String::new(),
                encoder: String::new(),
                pipeline: Pipeline::Starting,
                backoff_s: 0,
                run: Arc::default(),
            }),
            channel_json: watch::channel(String::new()).0,
            presenter_audio: AtomicBool::new(false),
            texts: broadcast::channel(32).0,
            config_error: Mutex::new(None),
            upstream: Mutex::new(None),
            tls: Mutex::new(None),
            links: Mutex::new(BTreeMap::new()),
            next_link: AtomicU64::new(1),
        });
        status.refresh_channel();
        status
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_links(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, LinkEntry>> {
        self.links.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lists a viewer's link until the returned guard is dropped.
    pub fn register_link(self: &Arc<Self>, kind: ViewerKind, stats: Arc<LinkStats>) -> LinkGuard {
        let id = self.next_link.fetch_add(1, Ordering::Relaxed);
        self.lock_links().insert(
            id,
            LinkEntry {
                kind,
                since: Instant::now(),
                stats,
            },
        );
        LinkGuard {
            id,
            status: self.clone(),
        }
    }

    pub fn viewer_links(&self) -> Vec<ViewerLink> {
        self.lock_links()
            .iter()
            .map(|(id, e)| ViewerLink {
                id: *id,
                kind: e.kind,
                connected_s: e.since.elapsed().as_secs(),
                quality: e.stats.quality(),
            })
            .collect()
    }

    pub fn set_source(&self, source: String, encoder: String, run: Arc<RunStats>) {
        let mut i = self.lock();
        i.source = source;
        i.encoder = encoder;
        i.run = run;
    }

    pub fn set_pipeline(&self, state: Pipeline, backoff_s: u64) {
        {
            let mut i = self.lock();
            i.pipeline = state;
            i.backoff_s = backoff_s;
        }
        self.refresh_channel();
    }

    pub fn set_leds(
        &self,
        status: crate::gpio::LedMode,
        viewers: crate::gpio::LedMode,
        gpio: &'static str,
        gpio_chip: Option<String>,
    ) {
        self.lock().leds = Leds {
            gpio,
            gpio_chip,
            status,
            viewers,
        };
    }

    pub fn set_tls(&self, tls: Option<TlsInfo>) {
        *self.tls.lock().unwrap_or_else(|p| p.into_inner()) = tls;
    }

    pub fn set_upstream(&self, state: Option<crate::upstream::UpstreamState>) {
        *self.upstream.lock().unwrap_or_else(|p| p.into_inner()) = state;
    }

    pub fn config_error(&self) -> Option<String> {
        self.config_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The current pipeline run's liveness counter.
    pub fn run_ticks(&self) -> u64 {
        self.lock().run.ticks.load(Ordering::Relaxed)
    }

    pub fn pipeline(&self) -> Pipeline {
        self.lock().pipeline.clone()
    }

    pub fn set_presenter(&self, p: Presenter) {
        self.presenter.send_if_modified(|cur| {
            let was = std::mem::replace(cur, p);
            if was != Presenter::None && was != p {
                self.presenters_ended.fetch_add(1, Ordering::AcqRel);
            }
            was != p
        });
        self.refresh_channel();
    }

    /// The presenter generation a joining viewer watches under (read it before checking
    /// that there is a presenter).
    pub fn presenter_generation(&self) -> u64 {
        self.presenters_ended.load(Ordering::Acquire)
    }

    /// Whether the presenter a viewer joined under (`generation`) has stopped since.
    pub fn presenter_gone_since(&self, generation: u64) -> bool {
        self.presenter_generation() != generation || *self.presenter.borrow() == Presenter::None
    }

    /// Becomes the presenter if nobody is; false when another presenter is active.
    pub fn claim_presenter(&self, who: Presenter, audio: bool) -> bool {
        let claimed = self.presenter.send_if_modified(|cur| {
            if *cur == Presenter::None {
                *cur = who;
                true
            } else {
                false
            }
        });
        if claimed {
            self.presenter_audio.store(audio, Ordering::Release);
            self.refresh_channel();
        }
        claimed
    }

    /// Gives up presenting, if `who` is the presenter; viewers are then told it stopped.
    pub fn release_presenter(&self, who: Presenter) {
        let released = self.presenter.send_if_modified(|cur| {
            if *cur == who {
                *cur = Presenter::None;
                // Counted before viewers are woken, so each sees it.
                self.presenters_ended.fetch_add(1, Ordering::AcqRel);
                true
            } else {
                false
            }
        });
        if released {
            self.presenter_audio.store(false, Ordering::Release);
            self.refresh_channel();
        }
    }

    /// Sends a presenter's text to every viewer's data channel. Returns the JSON sent.
    pub fn broadcast_text(&self, text: &str) -> String {
        let json = serde_json::json!({"type": "text", "text": text}).to_string();
        let _ = self.texts.send(json.clone());
        json
    }

    /// Recomputes the data-channel JSON; watchers are woken only when it changed.
    pub fn refresh_channel(&self) {
        let presenter = *self.presenter.borrow();
        let live = match presenter {
            Presenter::Camera => matches!(self.lock().pipeline, Pipeline::Running),
            Presenter::Browser => true,
            Presenter::None => false,
        };
        let json = serde_json::json!({
            "type": "status",
            "viewers": self.viewers.load(Ordering::Relaxed),
            "presenter": presenter,
            "live": live,
        })
        .to_string();
        self.channel_json.send_if_modified(|cur| {
            if *cur == json {
                false
            } else {
                *cur = json;
                true
            }
        });
    }

    pub fn snapshot(&self) -> Snapshot {
        let viewer_links = self.viewer_links();
        let i = self.lock();
        let h = &self.hub.stats;
        Snapshot {
            version: env!("CARGO_PKG_VERSION"),
            presenter: *self.presenter.borrow(),
            viewers: self.viewers.load(Ordering::Relaxed),
            viewers_max: self.viewers_max,
            source: i.source.clone(),
            encoder: i.encoder.clone(),
            pipeline: i.pipeline.clone(),
            pipeline_restarts: self.pipeline_restarts.load(Ordering::Relaxed),
            restart_backoff_s: i.backoff_s,
            frames_encoded: i.run.frames.load(Ordering::Relaxed),
            keyframes: i.run.keyframes.load(Ordering::Relaxed),
            forced_idrs: i.run.forced_idrs.load(Ordering::Relaxed),
            bytes_encoded: i.run.bytes.load(Ordering::Relaxed),
            bitrate_bps: if i.pipeline == Pipeline::Running {
                i.run.bitrate_bps.load(Ordering::Relaxed)
            } else {
                0
            },
            leds: i.leds.clone(),
            config_error: self.config_error(),
            upstream: self
                .upstream
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .clone(),
            viewer_links,
            tls: self.tls.lock().unwrap_or_else(|p| p.into_inner()).clone(),
            process: ProcessSnapshot::read(),
            fanout: FanoutSnapshot {
                subscribed: self.hub.viewers(),
                frames_in: h.frames_in.load(Ordering::Relaxed),
                frames_out: h.frames_out.load(Ordering::Relaxed),
                dropped_queue_full: h.dropped_queue_full.load(Ordering::Relaxed),
                skipped_keyframe_wait: h.skipped_keyframe_wait.load(Ordering::Relaxed),
                keyframe_requests: h.keyframe_requests.load(Ordering::Relaxed),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::KeyframeRequester;

    fn status() -> Arc<Status> {
        let (req, _rx) = KeyframeRequester::channel();
        Status::new(Hub::new(req), 4)
    }

    #[test]
    fn exactly_one_presenter_at_a_time() {
        let s = status();
        assert!(s.claim_presenter(Presenter::Browser, true));
        assert!(s.presenter_audio.load(Ordering::Acquire));
        assert!(
            !s.claim_presenter(Presenter::Camera, false),
            "second presenter refused"
        );
        s.release_presenter(Presenter::Camera);
        assert_eq!(
            *s.presenter.borrow(),
            Presenter::Browser,
            "only the presenter can release"
        );
        s.release_presenter(Presenter::Browser);
        assert_eq!(*s.presenter.borrow(), Presenter::None);
        assert!(!s.presenter_audio.load(Ordering::Acquire));
        assert!(s.claim_presenter(Presenter::Camera, false));
    }

    #[test]
    fn a_presenter_replaced_at_once_still_counts_as_gone() {
        let s = status();
        assert!(s.claim_presenter(Presenter::Browser, false));
        let joined = s.presenter_generation();
        assert!(!s.presenter_gone_since(joined));
        // The browser leaves and the camera takes over before the viewer looks.
        s.release_presenter(Presenter::Browser);
        assert!(s.claim_presenter(Presenter::Camera, false));
        assert_eq!(*s.presenter.borrow(), Presenter::Camera);
        assert!(s.presenter_gone_since(joined), "its presenter is gone");
        let rejoined = s.presenter_generation();
        assert!(!s.presenter_gone_since(rejoined));
        s.set_presenter(Presenter::None);
        assert!(s.presenter_gone_since(rejoined), "shutdown ends it too");
    }

    #[test]
    fn channel_status_follows_the_presenter() {
        let s = status();
        let mut rx = s.channel_json.subscribe();
        assert!(s.claim_presenter(Presenter::Browser, false));
        assert!(rx.has_changed().unwrap());
        let v: serde_json::Value = serde_json::from_str(&rx.borrow_and_update()).unwrap();
        assert_eq!(v["presenter"], "browser");
        assert_eq!(v["live"], true);
    }

    #[test]
    fn links_are_listed_while_their_guard_lives() {
        let s = status();
        let a = s.register_link(ViewerKind::WebSocket, Arc::new(LinkStats::new(1)));
        let b = s.register_link(ViewerKind::Whep, Arc::new(LinkStats::new(2)));
        let ids: Vec<u64> = s.snapshot().viewer_links.iter().map(|l| l.id).collect();
        assert_eq!(ids, vec![a.id, b.id]);
        drop(a);
        let links = s.viewer_links();
        assert_eq!(links.len(), 1);
        assert_eq!(links[0].kind, ViewerKind::Whep);
        let json = serde_json::to_value(&links[0]).unwrap();
        assert_eq!(json["kind"], "whep");
        assert!(json["rtt_ms"].is_null(), "flattened quality: {json}");
    }

    #[test]
    fn texts_are_wrapped_as_json() {
        let s = status();
        let mut rx = s.texts.subscribe();
        s.broadcast_text("hello \"all\"");
        let v: serde_json::Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "text", "text": "hello \"all\""})
        );
    }
}
