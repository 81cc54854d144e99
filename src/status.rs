//! Live state shared by the camera supervisor, signaling and the HTTP API, and the
//! snapshot `/api/status` and the data channels show.

use crate::encode::RunStats;
use crate::fanout::Hub;
use serde::Serialize;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::watch;

/// Who is presenting.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Presenter {
    /// Nobody: viewers are told `stopCommunication` and wait.
    None,
    /// The appliance's own camera pipeline.
    Camera,
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
    /// Viewers with a peer (connected or connecting), counted by signaling.
    pub viewers: AtomicUsize,
    pub viewers_max: usize,
    pub pipeline_restarts: AtomicU64,
    inner: Mutex<Inner>,
    /// The compact JSON pushed on viewers' data channels; changes trigger a push.
    pub channel_json: watch::Sender<String>,
}

struct Inner {
    source: String,
    encoder: String,
    pipeline: Pipeline,
    backoff_s: u64,
    run: Arc<RunStats>,
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
    pub fanout: FanoutSnapshot,
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
            viewers: AtomicUsize::new(0),
            viewers_max,
            pipeline_restarts: AtomicU64::new(0),
            inner: Mutex::new(Inner {
                source: String::new(),
                encoder: String::new(),
                pipeline: Pipeline::Starting,
                backoff_s: 0,
                run: Arc::default(),
            }),
            channel_json: watch::channel(String::new()).0,
        });
        status.refresh_channel();
        status
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
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

    pub fn pipeline(&self) -> Pipeline {
        self.lock().pipeline.clone()
    }

    pub fn set_presenter(&self, p: Presenter) {
        self.presenter.send_if_modified(|cur| std::mem::replace(cur, p) != p);
        self.refresh_channel();
    }

    /// Recomputes the data-channel JSON; watchers are woken only when it changed.
    pub fn refresh_channel(&self) {
        let live = matches!(self.lock().pipeline, Pipeline::Running);
        let json = serde_json::json!({
            "type": "status",
            "viewers": self.viewers.load(Ordering::Relaxed),
            "presenter": *self.presenter.borrow(),
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
