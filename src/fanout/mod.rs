//! Fan-out: one producer, N viewers. Each viewer has a bounded queue and its own keyframe
//! gate: it gets nothing until an IDR, and a viewer whose queue is full loses frames up to
//! the next IDR. Publishing never blocks, so a slow viewer never slows the encoder or others.

mod gate;

pub use gate::{Gate, Verdict};

use crate::media::{AudioPacket, EncodedFrame, KeyframeRequester};
use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc};

/// Frames a viewer may have queued before it counts as behind (~0.5 s at 30 fps).
pub const VIEWER_QUEUE: usize = 16;

/// Hub-wide counters (for status and metrics).
#[derive(Debug, Default)]
pub struct HubStats {
    pub frames_in: AtomicU64,
    pub frames_out: AtomicU64,
    /// Frames not delivered because a viewer's queue was full.
    pub dropped_queue_full: AtomicU64,
    /// Frames skipped while a viewer waited for a keyframe.
    pub skipped_keyframe_wait: AtomicU64,
    pub keyframe_requests: AtomicU64,
}

/// Per-viewer counters, shared with the viewer's own writer.
#[derive(Debug, Default)]
pub struct ViewerStats {
    pub delivered: AtomicU64,
    pub dropped: AtomicU64,
    pub keyframe_waits: AtomicU64,
}

struct Slot {
    tx: mpsc::Sender<Arc<EncodedFrame>>,
    gate: Gate,
    stats: Arc<ViewerStats>,
}

/// The stream hub between encoder and peers.
pub struct Hub {
    slots: Mutex<HashMap<u64, Slot>>,
    next_id: AtomicU64,
    keyframes: KeyframeRequester,
    pub stats: HubStats,
    /// Relayed presenter audio. Audio needs no gate (every Opus packet decodes alone);
    /// a viewer that lags simply skips packets.
    pub audio: broadcast::Sender<Arc<AudioPacket>>,
}

/// The camera's second stream, VP8 for browsers whose WebRTC has no H.264: its hub, and
/// whether the running pipeline produces it (a camera pipeline with raw frames does; a
/// relayed browser presenter, or a camera that delivers H.264 itself, does not).
pub struct SecondStream {
    pub hub: Arc<Hub>,
    available: std::sync::atomic::AtomicBool,
}

impl SecondStream {
    pub fn new(hub: Arc<Hub>) -> Arc<Self> {
        Arc::new(Self {
            hub,
            available: std::sync::atomic::AtomicBool::new(false),
        })
    }

    pub fn set_available(&self, available: bool) {
        self.available.store(available, Ordering::Release);
    }

    /// The hub, while the stream can be watched.
    pub fn get(&self) -> Option<&Arc<Hub>> {
        self.available.load(Ordering::Acquire).then_some(&self.hub)
    }
}

/// A viewer's end of the hub. Dropping it leaves the hub.
pub struct Subscription {
    pub id: u64,
    pub frames: mpsc::Receiver<Arc<EncodedFrame>>,
    pub stats: Arc<ViewerStats>,
    hub: Arc<Hub>,
}

impl Subscription {
    /// Asks the encoder for an IDR (a PLI/FIR from this viewer's browser).
    pub fn request_keyframe(&self) {
        self.hub.request_keyframe();
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.remove(self.id);
    }
}

impl Hub {
    pub fn new(keyframes: KeyframeRequester) -> Arc<Self> {
        Arc::new(Self {
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            keyframes,
            stats: HubStats::default(),
            audio: broadcast::channel(64).0,
        })
    }

    /// Joins a viewer. It receives frames from the next keyframe on, and one is
    /// requested now so that it comes soon whatever the GOP length.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        self.subscribe_with_capacity(VIEWER_QUEUE)
    }

    pub fn subscribe_with_capacity(self: &Arc<Self>, capacity: usize) -> Subscription {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(ViewerStats::default());
        self.lock().insert(
            id,
            Slot {
                tx,
                gate: Gate::new(),
                stats: stats.clone(),
            },
        );
        self.request_keyframe();
        Subscription {
            id,
            frames: rx,
            stats,
            hub: self.clone(),
        }
    }

    /// Number of subscribed viewers.
    pub fn viewers(&self) -> usize {
        self.lock().len()
    }

    /// Hands a frame to every viewer. Never blocks.
    pub fn publish(&self, frame: EncodedFrame) {
        self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
        let frame = Arc::new(frame);
        let mut need_keyframe = false;
        let mut slots = self.lock();
        slots.retain(|_, slot| {
            let verdict = slot
                .gate
                .offer(frame.keyframe, |f| slot.tx.try_send(f), frame.clone());
            match verdict {
                Verdict::Delivered => {
                    slot.stats.delivered.fetch_add(1, Ordering::Relaxed);
                    self.stats.frames_out.fetch_add(1, Ordering::Relaxed);
                }
                Verdict::Waiting => {
                    slot.stats.keyframe_waits.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .skipped_keyframe_wait
                        .fetch_add(1, Ordering::Relaxed);
                }
                Verdict::Dropped => {
                    slot.stats.dropped.fetch_add(1, Ordering::Relaxed);
                    self.stats
                        .dropped_queue_full
                        .fetch_add(1, Ordering::Relaxed);
                    need_keyframe = true;
                }
                Verdict::Closed => return false,
            }
            true
        });
        drop(slots);
        if need_keyframe {
            self.request_keyframe();
        }
    }

    /// Asks the encoder for an IDR; coalesced by the encoder's pacer.
    pub fn request_keyframe(&self) {
        self.stats.keyframe_requests.fetch_add(1, Ordering::Relaxed);
        self.keyframes.request();
    }

    fn remove(&self, id: u64) {
        self.lock().remove(&id);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Slot>> {
        // A panic while holding this lock is a bug elsewhere; the map itself stays valid.
        self.slots.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    fn frame(n: u64, keyframe: bool) -> EncodedFrame {
        EncodedFrame {
            data: Bytes::from(vec![n as u8]),
            pts: Duration::from_millis(n * 33),
            keyframe,
        }
    }

    fn hub() -> (Arc<Hub>, mpsc::Receiver<()>) {
        let (req, rx) = KeyframeRequester::channel();
        (Hub::new(req), rx)
    }

    #[tokio::test]
    async fn new_viewer_waits_for_a_keyframe_and_asks_for_one() {
        let (hub, mut kf) = hub();
        let mut sub = hub.subscribe();
        assert!(kf.try_recv().is_ok(), "join requests a keyframe");
        hub.publish(frame(1, false));
        hub.publish(frame(2, false));
        hub.publish(frame(3, true));
        hub.publish(frame(4, false));
        assert_eq!(sub.frames.recv().await.unwrap().data[0], 3);
        assert_eq!(sub.frames.recv().await.unwrap().data[0], 4);
        assert_eq!(sub.stats.keyframe_waits.load(Ordering::Relaxed), 2);
    }

    #[tokio::test]
    async fn slow_viewer_drops_until_next_keyframe_and_fast_one_gets_everything() {
        let (hub, mut kf) = hub();
        let mut slow = hub.subscribe_with_capacity(2);
        let mut fast = hub.subscribe_with_capacity(100);
        while kf.try_recv().is_ok() {}
        hub.publish(frame(0, true));
        for n in 1..10 {
            hub.publish(frame(n, false));
        }
        // slow got 0 and 1 (queue of 2) and lost 2..=9; once it catches up it resumes
        // at keyframe 10, never at a P-frame whose references it lost.
        let mut got = Vec::new();
        while let Ok(f) = slow.frames.try_recv() {
            got.push(f.data[0]);
        }
        hub.publish(frame(10, true));
        hub.publish(frame(11, false));
        while let Ok(f) = slow.frames.try_recv() {
            got.push(f.data[0]);
        }
        assert_eq!(got, vec![0, 1, 10, 11]);
        assert_eq!(slow.stats.dropped.load(Ordering::Relaxed), 1);
        assert!(slow.stats.keyframe_waits.load(Ordering::Relaxed) >= 7);
        assert!(kf.try_recv().is_ok(), "a drop asks for a keyframe");
        let mut all = 0;
        while fast.frames.try_recv().is_ok() {
            all += 1;
        }
        assert_eq!(all, 12, "the fast viewer is not slowed or starved");
        assert_eq!(hub.stats.dropped_queue_full.load(Ordering::Relaxed), 1);
    }

    #[tokio::test]
    async fn dropping_a_subscription_leaves_the_hub() {
        let (hub, _kf) = hub();
        let a = hub.subscribe();
        let b = hub.subscribe();
        assert_eq!(hub.viewers(), 2);
        drop(a);
        assert_eq!(hub.viewers(), 1);
        drop(b);
        assert_eq!(hub.viewers(), 0);
        hub.publish(frame(0, true));
    }
}
