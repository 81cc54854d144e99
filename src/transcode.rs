//! Transcoding on demand between the streams, so every viewer gets a codec its browser
//! plays whatever the presenter sends: VP8 made from an H.264 presenter (a camera that
//! delivers H.264, a relayed browser) for browsers without H.264, H.264 made from a VP8
//! presenter (Firefox, a WHIP client) for viewers without VP8, and the small H.264
//! sub-stream from whichever the presenter sends when it does not make one. A transcoder
//! reads one hub like a viewer (not counted as one) and publishes to the other; it runs
//! only while the other has viewers, so the camera pays for it only then. Its keyframes
//! are forced by the target hub's requests, which it holds while it runs.

use crate::encode::{self, RunStats};
use crate::fanout::{Hub, SecondStream};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;

/// No frame out for this long restarts a transcoder (its input stalled or it did).
const STALL_AFTER: Duration = Duration::from_secs(5);
/// The pause after a transcoder failed, before it is tried again.
const RETRY_AFTER: Duration = Duration::from_secs(1);
/// How often a waiting transcoder looks at its target's viewers.
const LOOK_EVERY: Duration = Duration::from_millis(100);

/// The pipeline descriptions this machine can run (None: not installed or not wanted).
#[derive(Debug, Clone, Default)]
pub struct Plan {
    /// H.264 → VP8 (`[fallback]` enabled and an H.264 decoder installed).
    pub to_vp8: Option<String>,
    /// VP8 → H.264.
    pub to_h264: Option<String>,
    /// H.264 → the sub-stream, and VP8 → the sub-stream.
    pub sub_from_h264: Option<String>,
    pub sub_from_vp8: Option<String>,
    /// H.264 → JPEG snapshots, and VP8 → JPEG snapshots.
    pub still_from_h264: Option<String>,
    pub still_from_vp8: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    H264,
    Vp8,
}

/// What transcoding is doing now (for status and metrics).
#[derive(Debug, Clone, Default)]
pub struct Transcoding {
    /// From and to, while the presenter's video needs converting for some viewers.
    pub direction: Option<(Codec, Codec)>,
    /// Converting between the codecs.
    pub codec: Job,
    /// Making the sub-stream (while the presenter does not make it itself).
    pub sub: Job,
    /// Making snapshots (likewise).
    pub still: Job,
}

/// One transcoder's state.
#[derive(Debug, Clone, Default)]
pub struct Job {
    /// There is something to transcode from (it runs once its output is watched).
    pub planned: bool,
    /// It runs (someone watches its output).
    pub running: bool,
    /// The current (or last) run's counters.
    pub run: Arc<RunStats>,
    /// Runs that ended in an error.
    pub failures: u64,
}

/// Keeps the streams the presenter does not produce fed on demand, for as long as the
/// daemon runs (until `stop`).
pub async fn serve(
    plan: Plan,
    h264: Arc<Hub>,
    vp8: Arc<SecondStream>,
    sub: Arc<Hub>,
    stills: Arc<Hub>,
    board: watch::Sender<Transcoding>,
    mut stop: watch::Receiver<bool>,
) {
    vp8.set_transcodable(plan.to_vp8.is_some());
    let mut produced = vp8.watch_produced();
    loop {
        let now = produced.borrow_and_update().1;
        let codec = match (now.h264, now.vp8) {
            (true, false) => plan
                .to_vp8
                .as_deref()
                .map(|d| (d, &h264, &vp8.hub, (Codec::H264, Codec::Vp8))),
            (false, true) => plan
                .to_h264
                .as_deref()
                .map(|d| (d, &vp8.hub, &h264, (Codec::Vp8, Codec::H264))),
            _ => None,
        };
        // Without raw frames, the sub-stream and the snapshots come from the presenter's
        // own stream, decoded.
        let from_own = |from_h264: &Option<String>, from_vp8: &Option<String>| match (
            now.raw, now.h264, now.vp8,
        ) {
            (false, true, _) => from_h264.clone().map(|d| (d, h264.clone())),
            (false, false, true) => from_vp8.clone().map(|d| (d, vp8.hub.clone())),
            _ => None,
        };
        let sub_job = from_own(&plan.sub_from_h264, &plan.sub_from_vp8);
        let still_job = from_own(&plan.still_from_h264, &plan.still_from_vp8);
        board.send_modify(|b| {
            b.direction = codec.map(|j| j.3);
            b.codec.planned = codec.is_some();
            b.codec.running = false;
            b.sub.planned = sub_job.is_some();
            b.sub.running = false;
            b.still.planned = still_job.is_some();
            b.still.running = false;
        });
        let work = async {
            tokio::join!(
                async {
                    match codec {
                        Some((d, from, to, _)) => {
                            on_demand(d, from, to, &board, |b| &mut b.codec).await
                        }
                        None => std::future::pending().await,
                    }
                },
                async {
                    match &sub_job {
                        Some((d, from)) => on_demand(d, from, &sub, &board, |b| &mut b.sub).await,
                        None => std::future::pending().await,
                    }
                },
                async {
                    match &still_job {
                        Some((d, from)) => {
                            on_demand(d, from, &stills, &board, |b| &mut b.still).await
                        }
                        None => std::future::pending().await,
                    }
                }
            )
        };
        tokio::select! {
            _ = work => {}
            changed = produced.changed() => if changed.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}

/// Runs `description` from `from` into `to` whenever `to` has viewers, reporting in
/// `board`'s `job`. Never returns; dropping it stops the transcoder and lets go of
/// `to`'s keyframe requests.
async fn on_demand(
    description: &str,
    from: &Arc<Hub>,
    to: &Arc<Hub>,
    board: &watch::Sender<Transcoding>,
    job: fn(&mut Transcoding) -> &mut Job,
) {
    let inbox = to.keyframe_inbox();
    loop {
        until_viewers(to, |n| n > 0).await;
        let mut requests = inbox.lock().await;
        let mut input = from.subscribe_relay();
        let stats = Arc::new(RunStats::default());
        board.send_modify(|b| {
            job(b).running = true;
            job(b).run = stats.clone();
        });
        tracing::info!("transcoder started: {description}");
        let out = to.clone();
        let result = encode::runner::run_fed(
            description,
            &mut input.frames,
            Arc::new(move |frame| out.publish(frame)),
            &mut requests,
            stats,
            STALL_AFTER,
            until_viewers(to, |n| n == 0),
        )
        .await;
        board.send_modify(|b| job(b).running = false);
        drop((input, requests));
        match result {
            Ok(()) => tracing::info!("transcoder stopped: nobody watches its output"),
            Err(e) => {
                tracing::warn!("transcoder failed: {e}; trying again");
                board.send_modify(|b| job(b).failures += 1);
                tokio::time::sleep(RETRY_AFTER).await;
            }
        }
    }
}

/// Resolves once `hub`'s viewer count satisfies `want`.
async fn until_viewers(hub: &Hub, want: impl Fn(usize) -> bool) {
    while !want(hub.viewers()) {
        tokio::time::sleep(LOOK_EVERY).await;
    }
}
