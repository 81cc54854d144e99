//! `GET /snapshot.jpg`: the current picture as JPEG, for NVRs and home-automation
//! systems that poll a still. Stills are a stream of their own: a hub of JPEG pictures,
//! made a few times a second only while someone asks — by a branch of the camera's raw
//! frames where there are some (no H.264 is decoded), else by a transcoder decoding the
//! presenter's stream. A request joins that hub for a while (so a poller keeps one
//! producer running instead of starting one per request), takes the newest still, and
//! is served from a short cache; `?width=` scales it down.

use crate::fanout::Hub;
use crate::task::AbortOnDrop;
use bytes::Bytes;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// A still this recent is served again rather than waited for.
const FRESH: Duration = Duration::from_secs(1);
/// Stills keep being made this long after the last request.
const LINGER: Duration = Duration::from_secs(30);
/// How long a request waits for the first still (a forced keyframe, a decode).
const WAIT: Duration = Duration::from_secs(3);

#[derive(Debug, thiserror::Error)]
pub enum SnapshotError {
    #[error("no picture: the camera is not streaming and nobody presents")]
    NoPicture,
    #[error("the picture could not be scaled: {0}")]
    Scale(String),
}

/// The stills hub and what was made from it.
pub struct Snapshots {
    /// JPEG pictures (each a keyframe), published by their producer.
    pub hub: Arc<Hub>,
    latest: watch::Sender<Option<(Instant, Bytes)>>,
    /// When the reader should stop reading the hub.
    keep_until: Mutex<Instant>,
    reader: Mutex<Option<AbortOnDrop>>,
    /// Scaled copies of the latest still, by width.
    scaled: Mutex<HashMap<u32, (Instant, Bytes)>>,
}

impl Snapshots {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            hub: Hub::new(),
            latest: watch::channel(None).0,
            keep_until: Mutex::new(Instant::now()),
            reader: Mutex::new(None),
            scaled: Mutex::new(HashMap::new()),
        })
    }

    /// The current picture, `width` pixels wide when asked for (never wider than it is).
    pub async fn jpeg(self: &Arc<Self>, width: Option<u32>) -> Result<Bytes, SnapshotError> {
        self.keep_reading();
        let mut latest = self.latest.subscribe();
        let fresh =
            |v: &Option<(Instant, Bytes)>| v.as_ref().is_some_and(|(t, _)| t.elapsed() < FRESH);
        let still = tokio::time::timeout(WAIT, latest.wait_for(fresh))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|v| v.clone()))
            .ok_or(SnapshotError::NoPicture)?;
        let (made, full) = still;
        let Some(width) = width else {
            return Ok(full);
        };
        if let Some((at, jpeg)) = lock(&self.scaled).get(&width)
            && *at >= made
        {
            return Ok(jpeg.clone());
        }
        let source = full.clone();
        let scaled = tokio::task::spawn_blocking(move || {
            crate::encode::runner::rescale_jpeg(&source, width)
        })
        .await
        .map_err(|e| SnapshotError::Scale(e.to_string()))?
        .map_err(|e| SnapshotError::Scale(e.to_string()))?;
        let mut cache = lock(&self.scaled);
        cache.retain(|_, (at, _)| *at >= made);
        cache.insert(width, (made, scaled.clone()));
        Ok(scaled)
    }

    /// Reads the stills hub (so its producer runs) until `LINGER` after the last call.
    fn keep_reading(self: &Arc<Self>) {
        *lock(&self.keep_until) = Instant::now() + LINGER;
        let mut reader = lock(&self.reader);
        if reader.as_ref().is_some_and(|r| !r.0.is_finished()) {
            return;
        }
        let me = self.clone();
        *reader = Some(AbortOnDrop::spawn(async move {
            let mut stills = me.hub.subscribe();
            loop {
                let until = *lock(&me.keep_until);
                tokio::select! {
                    frame = stills.frames.recv() => match frame {
                        Some(f) => { me.latest.send_replace(Some((Instant::now(), f.data.clone()))); }
                        None => return,
                    },
                    _ = tokio::time::sleep_until(until.into()) => {
                        if Instant::now() >= *lock(&me.keep_until) {
                            return;
                        }
                    }
                }
            }
        }));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}
