//! Runs one pipeline until it fails or is stopped. Frames go to the sink from GStreamer's
//! streaming thread (never blocking it); bus errors come back as typed errors.

use super::pacer::{KeyframePacer, MIN_GAP, sleep_until_due};
use crate::media::EncodedFrame;
use bytes::Bytes;
use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};

/// Why a pipeline run ended.
#[derive(Debug, thiserror::Error)]
pub enum EncodeError {
    #[error("GStreamer could not be initialised: {0}")]
    Init(String),
    #[error("invalid pipeline description: {0}")]
    Parse(String),
    #[error("pipeline has no appsink named sink")]
    NoSink,
    #[error("transcoding pipeline has no appsrc named src")]
    NoSource,
    #[error("pipeline would not start (a device may be busy or missing)")]
    Start,
    #[error("{element}: {message}{}", .debug.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    Bus {
        element: String,
        message: String,
        debug: Option<String>,
    },
    #[error("the source ended (end of stream)")]
    Eos,
    #[error("no frame for {0:?}; the camera or encoder stalled")]
    Stalled(Duration),
}

/// Counters the runner keeps for status and for the keyframe pacer.
#[derive(Debug, Default)]
pub struct RunStats {
    pub frames: AtomicU64,
    pub keyframes: AtomicU64,
    pub bytes: AtomicU64,
    pub forced_idrs: AtomicU64,
    /// Advances every 100 ms while the runner's loop is alive (for the watchdog).
    pub ticks: AtomicU64,
    /// Encoded bits per second over the last full second.
    pub bitrate_bps: AtomicU64,
}

/// Initialises GStreamer once; safe to call repeatedly.
pub fn init() -> Result<(), EncodeError> {
    gst::init().map_err(|e| EncodeError::Init(e.to_string()))
}

/// Whether a GStreamer element is installed.
pub fn has_element(name: &str) -> bool {
    init().is_ok() && gst::ElementFactory::find(name).is_some()
}

/// An extra branch of a camera pipeline (whose raw frames go through a tee named `raw`):
/// the VP8 stream or the sub-stream, and where it goes. It is linked to the tee only
/// while someone watches it: until then the pipeline is the one it would be without it,
/// at start and in cost.
pub struct BranchOutput<'a> {
    /// Its description (see `pipeline::vp8_branch`), ending in an appsink `sink_name`.
    pub branch: String,
    pub sink_name: &'static str,
    pub sink: Arc<dyn Fn(EncodedFrame) + Send + Sync>,
    /// Keyframe requests from its viewers.
    pub keyframes: &'a mut mpsc::Receiver<()>,
    /// Whether anyone watches it now: the branch is linked and unlinked with this.
    pub watched: Arc<dyn Fn() -> bool + Send + Sync>,
    pub stats: Arc<RunStats>,
}

/// What a running camera encoder takes without a restart: its bitrate (kb/s, set on the
/// element named `enc`) and its keyframe interval. With an interval the runner makes the
/// GOP itself, forcing an IDR when that long has passed since the last keyframe (the
/// encoder's own interval is then only a ceiling), so a new interval applies at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tune {
    pub bitrate_kbps: u32,
    pub keyframe_interval: Option<Duration>,
}

pub type Tuning = watch::Receiver<Tune>;

/// Runs `description` until an error or until `stop` resolves (then returns Ok).
/// Every access unit goes to `sink`. Keyframe requests arriving on `keyframes` are
/// coalesced and turned into upstream force-key-unit events.
#[allow(clippy::too_many_arguments)]
pub async fn run(
    description: &str,
    sink: Arc<dyn Fn(EncodedFrame) + Send + Sync>,
    keyframes: &mut mpsc::Receiver<()>,
    stats: Arc<RunStats>,
    stall_after: Duration,
    stop: impl std::future::Future<Output = ()>,
    branches: Vec<BranchOutput<'_>>,
    tuning: Option<Tuning>,
) -> Result<(), EncodeError> {
    init()?;
    // GStreamer calls that may wait on a device (loading, opening, stopping it) run on
    // the blocking pool, so a slow camera never holds up signaling on a 2-core board.
    let description = description.to_owned();
    let pipeline = blocking(move || parse(&description)).await?;
    // Whatever happens below, the pipeline goes to NULL so the camera is released.
    let guard = NullOnDrop(Some(pipeline.clone()));
    let result = play(
        &pipeline,
        sink,
        keyframes,
        stats,
        stall_after,
        stop,
        branches,
        tuning,
    )
    .await;
    guard.release().await;
    result
}

/// The GOP a runner keeps by forcing keyframes: pure, fed the keyframe count and the
/// time on every tick.
#[derive(Debug)]
struct GopClock {
    keyframes: u64,
    last_keyframe: Instant,
    asked: Option<Instant>,
}

impl GopClock {
    fn new(now: Instant) -> Self {
        Self {
            keyframes: 0,
            last_keyframe: now,
            asked: None,
        }
    }

    /// Whether to ask for a keyframe now, given how many came out so far.
    fn due(&mut self, keyframes: u64, interval: Option<Duration>, now: Instant) -> bool {
        if keyframes != self.keyframes {
            self.keyframes = keyframes;
            self.last_keyframe = now;
            self.asked = None;
        }
        let Some(interval) = interval else {
            return false;
        };
        // Asked and not come yet: ask again only after a second (a lost request).
        if self.asked.is_some_and(|t| now - t < Duration::from_secs(1)) {
            return false;
        }
        if now - self.last_keyframe >= interval {
            self.asked = Some(now);
            return true;
        }
        false
    }
}

/// Sets the encoder's bitrate while it runs, in the unit each encoder takes: x264enc
/// kb/s, openh264enc b/s (both documented as changeable while playing), v4l2h264enc its
/// `video_bitrate` control (applied to the open device; checkable only on a board).
fn set_bitrate(pipeline: &gst::Pipeline, kbps: u32) -> bool {
    let Some(enc) = pipeline.by_name("enc") else {
        return false;
    };
    let factory = enc
        .factory()
        .map(|f| f.name().to_string())
        .unwrap_or_default();
    let bps = kbps.saturating_mul(1000);
    match factory.as_str() {
        "x264enc" => enc.set_property("bitrate", kbps),
        "openh264enc" => enc.set_property("bitrate", bps),
        "v4l2h264enc" => {
            let mut controls = enc
                .property::<Option<gst::Structure>>("extra-controls")
                .unwrap_or_else(|| gst::Structure::new_empty("controls"));
            controls.set("video_bitrate", bps as i32);
            enc.set_property("extra-controls", controls);
        }
        _ => return false,
    }
    tracing::info!(kbps, encoder = %factory, "bitrate changed live");
    true
}

/// The next tune asked of `tuning`; never, once its sender is gone (or without one).
async fn next_tune(tuning: &mut Option<Tuning>) -> Tune {
    if let Some(rx) = tuning {
        if rx.changed().await.is_ok() {
            return *rx.borrow_and_update();
        }
        *tuning = None;
    }
    std::future::pending().await
}

/// Runs a transcoding pipeline until an error or `stop`: `description` begins with an
/// appsrc named `src`, which is fed `input`'s frames (stamped with their arrival), and
/// ends in an appsink named `sink`, whose frames go to `sink`. The input queue is kept
/// short: when the pipeline falls behind, frames are left out up to the next keyframe
/// (the decoder could not use the ones after a gap), so latency never builds up.
pub async fn run_fed(
    description: &str,
    input: &mut mpsc::Receiver<Arc<EncodedFrame>>,
    sink: Arc<dyn Fn(EncodedFrame) + Send + Sync>,
    keyframes: &mut mpsc::Receiver<()>,
    stats: Arc<RunStats>,
    stall_after: Duration,
    stop: impl std::future::Future<Output = ()>,
) -> Result<(), EncodeError> {
    init()?;
    let description = description.to_owned();
    let pipeline = blocking(move || parse(&description)).await?;
    let guard = NullOnDrop(Some(pipeline.clone()));
    let result = match pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
    {
        None => Err(EncodeError::NoSource),
        Some(src) => {
            tokio::select! {
                r = play(&pipeline, sink, keyframes, stats, stall_after, stop, Vec::new(), None) => r,
                // The input ends only when its hub is gone.
                _ = feed(&src, input) => Err(EncodeError::Eos),
            }
        }
    };
    guard.release().await;
    result
}

/// Scales one JPEG picture to `width` (blocking; for a snapshot asked for smaller).
pub fn rescale_jpeg(jpeg: &[u8], width: u32) -> Result<Bytes, EncodeError> {
    init()?;
    let pipeline = parse(&super::pipeline::rescale_jpeg(width))?;
    let src = pipeline
        .by_name("src")
        .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
        .ok_or(EncodeError::NoSource)?;
    let sink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or(EncodeError::NoSink)?;
    let result = (|| {
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|_| EncodeError::Start)?;
        src.push_buffer(gst::Buffer::from_slice(jpeg.to_vec()))
            .map_err(|_| EncodeError::Start)?;
        let _ = src.end_of_stream();
        let sample = sink
            .try_pull_sample(gst::ClockTime::from_seconds(2))
            .ok_or(EncodeError::Stalled(Duration::from_secs(2)))?;
        let buffer = sample.buffer().ok_or(EncodeError::Eos)?;
        let map = buffer.map_readable().map_err(|_| EncodeError::Eos)?;
        Ok(Bytes::copy_from_slice(&map))
    })();
    let _ = pipeline.set_state(gst::State::Null);
    result
}

/// Frames an appsrc may hold before new ones are left out (a little over one frame's
/// work for the decoder and encoder behind it).
const FEED_QUEUE: u64 = 3;

/// Pushes `input` into `src` until the input ends or the appsrc refuses (stopping).
pub async fn feed(src: &gst_app::AppSrc, input: &mut mpsc::Receiver<Arc<EncodedFrame>>) {
    let mut skipping = false;
    let mut stamps = Restamper::default();
    while let Some(frame) = input.recv().await {
        if src.current_level_buffers() >= FEED_QUEUE {
            skipping = true;
        }
        if skipping && !frame.keyframe {
            continue;
        }
        skipping = false;
        let now = src
            .current_running_time()
            .map_or(Duration::ZERO, |t| Duration::from_nanos(t.nseconds()));
        let pts = gst::ClockTime::from_nseconds(stamps.stamp(frame.pts, now).as_nanos() as u64);
        let mut buffer = gst::Buffer::from_slice(frame.data.clone());
        if let Some(b) = buffer.get_mut() {
            b.set_pts(pts);
            b.set_dts(pts);
            if !frame.keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        if src.push_buffer(buffer).is_err() {
            return;
        }
    }
}

/// Timestamps for frames fed into a pipeline: the producer's own spacing (so a frame
/// that waited in a queue keeps its place in time), anchored to the pipeline's running
/// time, always increasing. A jump back or of over a second (another presenter, a
/// restarted camera) starts a new anchor.
#[derive(Debug, Default)]
pub struct Restamper {
    anchor: Option<(Duration, Duration)>,
    last_in: Duration,
    last_out: Option<Duration>,
}

impl Restamper {
    /// The time for a frame stamped `pts` by its producer, fed at running time `now`.
    pub fn stamp(&mut self, pts: Duration, now: Duration) -> Duration {
        let jumped = pts < self.last_in || pts - self.last_in > Duration::from_secs(1);
        if self.anchor.is_none() || jumped {
            let at = self
                .last_out
                .map_or(now, |last| now.max(last + Duration::from_millis(1)));
            self.anchor = Some((at, pts));
        }
        self.last_in = pts;
        let (at, first) = self.anchor.unwrap_or((now, pts));
        let mut out = at + pts.saturating_sub(first);
        if let Some(last) = self.last_out
            && out <= last
        {
            out = last + Duration::from_millis(1);
        }
        self.last_out = Some(out);
        out
    }
}

/// A pipeline from its description.
fn parse(description: &str) -> Result<gst::Pipeline, EncodeError> {
    gst::parse::launch(description)
        .map_err(|e| EncodeError::Parse(e.to_string()))?
        .downcast::<gst::Pipeline>()
        .map_err(|_| EncodeError::Parse("description is not a pipeline".into()))
}

/// Runs `f` on the blocking pool; a panic there (a bug) is reported as a failed start.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, EncodeError> + Send + 'static,
) -> Result<T, EncodeError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or(Err(EncodeError::Start))
}

/// Plays the pipeline until an error, a stall or `stop`.
#[allow(clippy::too_many_arguments)]
async fn play(
    pipeline: &gst::Pipeline,
    sink: Arc<dyn Fn(EncodedFrame) + Send + Sync>,
    keyframes: &mut mpsc::Receiver<()>,
    stats: Arc<RunStats>,
    stall_after: Duration,
    stop: impl std::future::Future<Output = ()>,
    branches: Vec<BranchOutput<'_>>,
    mut tuning: Option<Tuning>,
) -> Result<(), EncodeError> {
    let mut tune = tuning.as_ref().map(|t| *t.borrow());
    // A stamping test source names its last element `stamp` (see capture::stamp).
    if let Some(stamp) = pipeline.by_name("stamp") {
        crate::capture::stamp::install(&stamp);
    }
    let appsink = pipeline
        .by_name("sink")
        .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
        .ok_or(EncodeError::NoSink)?;

    appsink.set_callbacks(frame_callbacks(sink, stats.clone()));

    let bus = pipeline.bus().ok_or(EncodeError::Start)?;
    let mut messages = bus.stream();
    let starting = pipeline.clone();
    let started = blocking(move || {
        starting
            .set_state(gst::State::Playing)
            .map_err(|_| EncodeError::Start)
    })
    .await;
    if started.is_err() {
        // The bus usually holds the real reason (device busy, no such file...).
        let reason = tokio::time::timeout(Duration::from_secs(1), async {
            while let Some(msg) = messages.next().await {
                if let Some(err) = to_error(&msg) {
                    return err;
                }
            }
            EncodeError::Start
        })
        .await;
        return Err(reason.unwrap_or(EncodeError::Start));
    }

    let mut pacer = KeyframePacer::new(MIN_GAP);
    // The extra branches (when the pipeline has a tee for them), linked while watched.
    let mut extra: Vec<Branch<'_>> = match pipeline.by_name("raw") {
        Some(tee) => branches
            .into_iter()
            .map(|out| Branch {
                out,
                pipeline: pipeline.clone(),
                tee: tee.clone(),
                attached: None,
                failed: false,
                pacer: KeyframePacer::new(MIN_GAP),
            })
            .collect(),
        None => Vec::new(),
    };
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    let mut last_frames = 0;
    let mut last_progress = Instant::now();
    // The GOP the runner keeps (see `Tune`): when the last keyframe came out, and when
    // one was last asked for (not asked again until it arrives).
    let mut gop = GopClock::new(Instant::now());
    tokio::pin!(stop);
    let mut rate_mark = (Instant::now(), stats.bytes.load(Ordering::Relaxed));
    loop {
        let kf_due = pacer.due(stats.keyframes.load(Ordering::Relaxed));
        tokio::select! {
            _ = &mut stop => break Ok(()),
            new = next_tune(&mut tuning) => {
                if tune.map(|t| t.bitrate_kbps) != Some(new.bitrate_kbps) {
                    set_bitrate(pipeline, new.bitrate_kbps);
                }
                if tune.map(|t| t.keyframe_interval) != Some(new.keyframe_interval) {
                    tracing::info!(interval = ?new.keyframe_interval, "keyframe interval changed live");
                }
                tune = Some(new);
            }
            msg = messages.next() => match msg {
                None => break Err(EncodeError::Eos),
                Some(msg) => if let Some(err) = to_error(&msg) { break Err(err) },
            },
            req = keyframes.recv() => {
                if req.is_some() {
                    pacer.request(stats.keyframes.load(Ordering::Relaxed));
                } else {
                    // All requesters gone: keep running, just never force.
                    std::future::pending::<()>().await;
                }
            }
            _ = sleep_until_due(kf_due) => {
                let event = gstreamer_video::UpstreamForceKeyUnitEvent::builder()
                    .all_headers(true)
                    .build();
                appsink.send_event(event);
                stats.forced_idrs.fetch_add(1, Ordering::Relaxed);
                pacer.forced(Instant::now());
            }
            _ = tick.tick() => {
                stats.ticks.fetch_add(1, Ordering::Relaxed);
                let interval = tune.and_then(|t| t.keyframe_interval);
                if gop.due(stats.keyframes.load(Ordering::Relaxed), interval, Instant::now()) {
                    let event = gstreamer_video::UpstreamForceKeyUnitEvent::builder()
                        .all_headers(true)
                        .build();
                    appsink.send_event(event);
                }
                // An extra encode runs only while someone watches it (its first frame is
                // a keyframe); its viewers' keyframe requests are served on the tick.
                for branch in &mut extra {
                    branch.follow_watchers().await;
                    branch.serve_keyframe_requests();
                }
                let (since, bytes_then) = rate_mark;
                if since.elapsed() >= Duration::from_secs(1) {
                    let bytes = stats.bytes.load(Ordering::Relaxed);
                    let bps = bytes.saturating_sub(bytes_then) as f64 * 8.0 / since.elapsed().as_secs_f64();
                    stats.bitrate_bps.store(bps as u64, Ordering::Relaxed);
                    rate_mark = (Instant::now(), bytes);
                }
                let frames = stats.frames.load(Ordering::Relaxed);
                if frames != last_frames {
                    last_frames = frames;
                    last_progress = Instant::now();
                } else if last_progress.elapsed() >= stall_after {
                    break Err(EncodeError::Stalled(stall_after));
                }
            }
        }
    }
}

/// Each sample of an appsink as an `EncodedFrame` to `sink`, counted in `stats`.
fn frame_callbacks(
    sink: Arc<dyn Fn(EncodedFrame) + Send + Sync>,
    cb_stats: Arc<RunStats>,
) -> gst_app::AppSinkCallbacks {
    gst_app::AppSinkCallbacks::builder()
        .new_sample(move |s| {
            let sample = s.pull_sample().map_err(|_| gst::FlowError::Eos)?;
            let Some(buffer) = sample.buffer() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let Ok(map) = buffer.map_readable() else {
                return Ok(gst::FlowSuccess::Ok);
            };
            let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
            let pts = buffer
                .pts()
                .map_or(Duration::ZERO, |t| Duration::from_nanos(t.nseconds()));
            cb_stats.frames.fetch_add(1, Ordering::Relaxed);
            cb_stats
                .bytes
                .fetch_add(map.len() as u64, Ordering::Relaxed);
            if keyframe {
                cb_stats.keyframes.fetch_add(1, Ordering::Relaxed);
            }
            sink(EncodedFrame::new(
                Bytes::copy_from_slice(&map),
                pts,
                keyframe,
            ));
            Ok(gst::FlowSuccess::Ok)
        })
        .build()
}

/// An extra branch of a running camera pipeline, linked to the raw-frame tee while
/// watched and taken out again when not.
struct Branch<'a> {
    out: BranchOutput<'a>,
    pipeline: gst::Pipeline,
    tee: gst::Element,
    attached: Option<Attached>,
    /// It could not be linked in this run: not tried again until the next.
    failed: bool,
    pacer: KeyframePacer,
}

struct Attached {
    bin: gst::Bin,
    tee_pad: gst::Pad,
    sink: gst_app::AppSink,
}

impl Branch<'_> {
    /// Links or unlinks the branch to match whether anyone watches it.
    async fn follow_watchers(&mut self) {
        let want = (self.out.watched)() && !self.failed;
        let name = self.out.sink_name;
        match (want, self.attached.is_some()) {
            (true, false) => match self.attach() {
                Ok(a) => {
                    self.attached = Some(a);
                    tracing::info!("{name} stream started");
                }
                Err(e) => {
                    self.failed = true;
                    tracing::warn!("the {name} stream could not be started: {e}");
                }
            },
            (false, true) => {
                if let Some(a) = self.attached.take() {
                    self.detach(a).await;
                    tracing::info!("{name} stream stopped");
                }
            }
            _ => {}
        }
    }

    fn attach(&self) -> Result<Attached, String> {
        let bin =
            gst::parse::bin_from_description(&self.out.branch, true).map_err(|e| e.to_string())?;
        let sink = bin
            .by_name(self.out.sink_name)
            .and_then(|e| e.downcast::<gst_app::AppSink>().ok())
            .ok_or("the branch has no appsink of its name")?;
        sink.set_callbacks(frame_callbacks(
            self.out.sink.clone(),
            self.out.stats.clone(),
        ));
        self.pipeline.add(&bin).map_err(|e| e.to_string())?;
        // Playing before it is linked, so the first frame finds it ready.
        let linked = (|| {
            bin.sync_state_with_parent().map_err(|e| e.to_string())?;
            let tee_pad = self
                .tee
                .request_pad_simple("src_%u")
                .ok_or("the tee gave no pad")?;
            let bin_pad = bin.static_pad("sink").ok_or("the branch has no input")?;
            if let Err(e) = tee_pad.link(&bin_pad) {
                self.tee.release_request_pad(&tee_pad);
                return Err(format!("{e:?}"));
            }
            Ok(tee_pad)
        })();
        match linked {
            Ok(tee_pad) => Ok(Attached { bin, tee_pad, sink }),
            Err(e) => {
                let _ = bin.set_state(gst::State::Null);
                let _ = self.pipeline.remove(&bin);
                Err(e)
            }
        }
    }

    /// Unlinks the branch between two frames (an idle probe on the tee's pad), then
    /// stops and removes it, off the async threads.
    async fn detach(&self, a: Attached) {
        let (tx, rx) = tokio::sync::oneshot::channel();
        let tx = std::sync::Mutex::new(Some(tx));
        a.tee_pad.add_probe(gst::PadProbeType::IDLE, move |pad, _| {
            if let Some(peer) = pad.peer() {
                let _ = pad.unlink(&peer);
            }
            if let Some(tx) = tx.lock().ok().and_then(|mut t| t.take()) {
                let _ = tx.send(());
            }
            gst::PadProbeReturn::Remove
        });
        // A pipeline stuck mid-push gives up its pad when it is stopped anyway.
        let _ = tokio::time::timeout(Duration::from_secs(1), rx).await;
        let (pipeline, tee) = (self.pipeline.clone(), self.tee.clone());
        let _ = blocking(move || {
            let _ = a.bin.set_state(gst::State::Null);
            let _ = pipeline.remove(&a.bin);
            tee.release_request_pad(&a.tee_pad);
            Ok(())
        })
        .await;
    }

    /// Takes its viewers' keyframe requests and forces one when the pacer says so
    /// (at most one per `MIN_GAP`, none when a keyframe came anyway).
    fn serve_keyframe_requests(&mut self) {
        let stats = self.out.stats.clone();
        let keyframes = || stats.keyframes.load(Ordering::Relaxed);
        while self.out.keyframes.try_recv().is_ok() {
            self.pacer.request(keyframes());
        }
        let Some(a) = &self.attached else {
            return;
        };
        if self
            .pacer
            .due(keyframes())
            .is_some_and(|t| t <= Instant::now())
        {
            let event = gstreamer_video::UpstreamForceKeyUnitEvent::builder()
                .all_headers(true)
                .build();
            a.sink.send_event(event);
            stats.forced_idrs.fetch_add(1, Ordering::Relaxed);
            self.pacer.forced(Instant::now());
        }
    }
}

fn to_error(msg: &gst::Message) -> Option<EncodeError> {
    match msg.view() {
        gst::MessageView::Error(e) => Some(EncodeError::Bus {
            element: e
                .src()
                .map_or_else(|| "pipeline".into(), |s| s.path_string().to_string()),
            message: e.error().to_string(),
            debug: e.debug().map(|d| d.to_string()),
        }),
        gst::MessageView::Eos(_) => Some(EncodeError::Eos),
        _ => None,
    }
}

/// Takes the pipeline to NULL, which releases the camera. Stopping a misbehaving device
/// joins its streaming thread and can take seconds, so it happens off the async threads,
/// on a thread of its own: awaited on the normal way out (the next start may need the
/// device), left to finish when `run` is dropped mid-way. Not the blocking pool: a
/// runtime that is shutting down drops what is spawned on it unrun, and a pipeline
/// disposed while PLAYING crashes GStreamer (its streaming thread still holds the
/// element's lock).
struct NullOnDrop(Option<gst::Pipeline>);

impl NullOnDrop {
    /// Stops the pipeline and waits until it is stopped (the next start may need the
    /// device). If this wait is itself dropped, the stopping thread finishes anyway.
    async fn release(mut self) {
        if let Some(p) = self.0.take()
            && let Some(done) = to_null_on_a_thread(p)
        {
            let _ = done.await;
        }
    }
}

impl Drop for NullOnDrop {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            to_null_on_a_thread(p);
        }
    }
}

/// Takes `p` to NULL on a thread of its own; resolves when it is there. Without a thread
/// to be had, it is stopped here and now rather than disposed of while PLAYING.
fn to_null_on_a_thread(p: gst::Pipeline) -> Option<tokio::sync::oneshot::Receiver<()>> {
    let here = p.clone();
    let (done, stopped) = tokio::sync::oneshot::channel();
    let spawned = std::thread::Builder::new()
        .name("edgecam-null".into())
        .spawn(move || {
            let _ = p.set_state(gst::State::Null);
            let _ = done.send(());
        });
    match spawned {
        Ok(_) => Some(stopped),
        Err(e) => {
            tracing::warn!("stopping the pipeline inline: {e}");
            let _ = here.set_state(gst::State::Null);
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Mutex;

    fn collect() -> (
        Arc<dyn Fn(EncodedFrame) + Send + Sync>,
        Arc<Mutex<Vec<EncodedFrame>>>,
    ) {
        let frames = Arc::new(Mutex::new(Vec::new()));
        let f2 = frames.clone();
        (Arc::new(move |f| f2.lock().unwrap().push(f)), frames)
    }

    /// 30 fps encoder settings.
    fn settings(
        width: u32,
        height: u32,
        bitrate_kbps: u32,
        keyframe_interval_s: u32,
    ) -> crate::encode::EncodeSettings {
        crate::encode::EncodeSettings {
            width,
            height,
            fps: 30,
            bitrate_kbps,
            keyframe_interval_s,
        }
    }

    const VP8_SMALL: crate::encode::pipeline::Vp8Settings = crate::encode::pipeline::Vp8Settings {
        width: 160,
        height: 120,
        bitrate_kbps: 200,
    };

    /// How a pipeline that is expected to fail fails.
    async fn failure(description: &str) -> EncodeError {
        let (sink, _) = collect();
        let (_tx, mut rx) = mpsc::channel(1);
        run(
            description,
            sink,
            &mut rx,
            Default::default(),
            Duration::from_secs(5),
            std::future::pending(),
            Vec::new(),
            None,
        )
        .await
        .unwrap_err()
    }

    #[test]
    fn fed_frames_keep_their_spacing_and_always_increase() {
        let ms = Duration::from_millis;
        let mut r = Restamper::default();
        assert_eq!(
            r.stamp(ms(5000), ms(100)),
            ms(100),
            "anchored to running time"
        );
        assert_eq!(
            r.stamp(ms(5033), ms(180)),
            ms(133),
            "its own spacing, not arrival"
        );
        assert_eq!(
            r.stamp(ms(5033), ms(190)),
            ms(134),
            "never the same time twice"
        );
        // Another presenter starts again from 0: a new anchor, still later.
        assert_eq!(r.stamp(ms(0), ms(400)), ms(400));
        assert_eq!(r.stamp(ms(33), ms(420)), ms(433));
        // A gap of minutes: anchored anew at now.
        assert_eq!(r.stamp(ms(300_000), ms(1000)), ms(1000));
    }

    #[tokio::test]
    async fn bus_error_names_the_element() {
        let err = failure("v4l2src device=/dev/edgecam-no-such-camera ! appsink name=sink").await;
        let text = err.to_string();
        assert!(text.contains("v4l2src"), "{text}");
    }

    /// How many of this process's descriptors are open on `path`.
    fn fds_on(path: &std::path::Path) -> usize {
        std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .filter_map(Result::ok)
            .filter(|e| std::fs::read_link(e.path()).is_ok_and(|t| t == path))
            .count()
    }

    #[tokio::test]
    async fn a_failed_pipeline_has_closed_everything_it_opened_when_run_returns() {
        // A source that opens a file and a parser that fails on its contents: the same
        // path a camera takes when it is unplugged mid-stream (an element errors). No
        // descriptor may survive into the supervisor's backoff, or a re-plugged camera
        // could not be opened again (or its driver unloaded).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-h264.bin");
        std::fs::write(&file, vec![0x5au8; 200_000]).unwrap();
        let file = file.canonicalize().unwrap();
        for round in 0..3 {
            let err = failure(&format!(
                "filesrc location=\"{}\" ! h264parse ! appsink name=sink",
                file.display()
            ))
            .await;
            assert!(err.to_string().contains("h264parse"), "{err}");
            assert_eq!(fds_on(&file), 0, "round {round}: the file is still open");
        }
    }

    #[tokio::test]
    async fn bad_description_is_a_parse_error() {
        let err = failure("no-such-element ! appsink name=sink").await;
        assert!(matches!(err, EncodeError::Parse(_)), "{err}");
        let err = failure("fakesrc ! fakesink").await;
        assert!(matches!(err, EncodeError::NoSink), "{err}");
    }

    #[test]
    fn the_runners_gop_forces_a_keyframe_once_per_interval() {
        let t0 = Instant::now();
        let s = |ms: u64| t0 + Duration::from_millis(ms);
        let mut g = GopClock::new(t0);
        let two = Some(Duration::from_secs(2));
        assert!(!g.due(1, two, s(100)), "a keyframe just came");
        assert!(!g.due(1, two, s(2000)));
        assert!(g.due(1, two, s(2100)), "2 s since the last keyframe");
        assert!(!g.due(1, two, s(2200)), "asked; waits for it");
        assert!(
            !g.due(2, two, s(2300)),
            "it came: the interval starts again"
        );
        assert!(g.due(2, two, s(4300)));
        assert!(
            g.due(2, two, s(5300)),
            "a lost request is asked again after a second"
        );
        // A shorter interval applies at once; none: the encoder's own GOP.
        assert!(!g.due(3, Some(Duration::from_millis(500)), s(5400)));
        assert!(g.due(3, Some(Duration::from_millis(500)), s(5900)));
        assert!(!g.due(4, None, s(60_000)));
    }

    #[tokio::test]
    async fn x264_frames_start_with_an_idr_carrying_sps_pps_and_forced_idrs_arrive() {
        use crate::encode::pipeline::{EncodeSettings, Encoder, describe};
        use crate::media::{nal, nal_types};
        let s = EncodeSettings {
            width: 320,
            height: 240,
            fps: 30,
            bitrate_kbps: 500,
            keyframe_interval_s: 60,
        };
        let desc = describe(
            "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1",
            Encoder::X264,
            &s,
            false,
        );
        let (sink, frames) = collect();
        let (tx, mut rx) = mpsc::channel(1);
        let stats = Arc::new(RunStats::default());
        let stop = async {
            tokio::time::sleep(Duration::from_millis(700)).await;
            tx.send(()).await.unwrap();
            tokio::time::sleep(Duration::from_millis(700)).await;
        };
        run(
            &desc,
            sink,
            &mut rx,
            stats.clone(),
            Duration::from_secs(5),
            stop,
            Vec::new(),
            None,
        )
        .await
        .unwrap();
        let frames = frames.lock().unwrap();
        assert!(frames.len() >= 20, "got {} frames", frames.len());
        let first = nal_types(&frames[0].data);
        assert!(frames[0].keyframe);
        assert!(
            first.contains(&nal::SPS) && first.contains(&nal::PPS) && first.contains(&nal::IDR),
            "{first:?}"
        );
        // The GOP is 60 s, so any later keyframe is the forced one.
        let later_idrs = frames[1..].iter().filter(|f| f.keyframe).count();
        assert_eq!(stats.forced_idrs.load(Ordering::Relaxed), 1);
        assert!(later_idrs >= 1, "forced IDR never came out");
        for f in frames.iter().filter(|f| f.keyframe) {
            let t = nal_types(&f.data);
            assert!(t.contains(&nal::SPS), "SPS before every IDR: {t:?}");
        }
        assert!(
            frames.windows(2).all(|w| w[1].pts > w[0].pts),
            "pts increase"
        );
    }

    #[tokio::test]
    async fn a_source_that_ends_is_reported_as_ended_with_the_vp8_branch_unlinked() {
        use crate::encode::pipeline::{Encoder, describe};
        let (s, v) = (settings(160, 120, 200, 2), VP8_SMALL);
        let desc = describe(
            "videotestsrc num-buffers=15 ! video/x-raw,width=160,height=120,framerate=30/1",
            Encoder::X264,
            &s,
            true,
        );
        let (sink, _) = collect();
        let (vp8_sink, _) = collect();
        let (_tx, mut rx) = mpsc::channel(1);
        let (_vtx, mut vrx) = mpsc::channel(1);
        let out = BranchOutput {
            branch: crate::encode::pipeline::vp8_branch(&v, &s),
            sink_name: "vp8sink",
            sink: vp8_sink,
            keyframes: &mut vrx,
            watched: Arc::new(|| false),
            stats: Arc::default(),
        };
        let err = run(
            &desc,
            sink,
            &mut rx,
            Default::default(),
            Duration::from_secs(20),
            std::future::pending(),
            vec![out],
            None,
        )
        .await
        .unwrap_err();
        assert!(matches!(err, EncodeError::Eos), "{err}");
    }

    #[tokio::test]
    async fn the_vp8_branch_encodes_only_while_watched_and_starts_on_a_keyframe() {
        use crate::encode::pipeline::{Encoder, describe};
        let (s, v) = (settings(320, 240, 300, 60), VP8_SMALL);
        let desc = describe(
            "videotestsrc is-live=true ! video/x-raw,width=320,height=240,framerate=30/1",
            Encoder::X264,
            &s,
            true,
        );
        let (sink, h264) = collect();
        let (vp8_sink, vp8) = collect();
        let watched = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (_tx, mut rx) = mpsc::channel(1);
        let (_vtx, mut vrx) = mpsc::channel(1);
        let flag = watched.clone();
        let counted = vp8.clone();
        let stop = async move {
            tokio::time::sleep(Duration::from_millis(800)).await;
            assert!(
                counted.lock().unwrap().is_empty(),
                "no VP8 while nobody watches"
            );
            flag.store(true, Ordering::Relaxed);
            // Watched until ten VP8 frames came (bounded; a busy machine is slower).
            for _ in 0..100 {
                if counted.lock().unwrap().len() >= 10 {
                    break;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            flag.store(false, Ordering::Relaxed);
            tokio::time::sleep(Duration::from_millis(300)).await;
        };
        let w = watched.clone();
        let out = BranchOutput {
            branch: crate::encode::pipeline::vp8_branch(&v, &s),
            sink_name: "vp8sink",
            sink: vp8_sink,
            keyframes: &mut vrx,
            watched: Arc::new(move || w.load(Ordering::Relaxed)),
            stats: Arc::default(),
        };
        run(
            &desc,
            sink,
            &mut rx,
            Default::default(),
            Duration::from_secs(5),
            stop,
            vec![out],
            None,
        )
        .await
        .unwrap();
        let vp8 = vp8.lock().unwrap();
        assert!(vp8.len() >= 10, "VP8 while watched: {}", vp8.len());
        assert!(
            vp8[0].keyframe,
            "the first VP8 frame after opening is a keyframe"
        );
        // VP8's keyframe header: a clear low bit in the first byte (RFC 6386 9.1).
        assert_eq!(vp8[0].data[0] & 1, 0);
        let n = h264.lock().unwrap().len();
        assert!(n >= 20, "H.264 throughout: {n} frames, VP8 {}", vp8.len());
    }
}
