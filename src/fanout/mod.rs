//! Fan-out: one producer, N viewers. Each viewer has a bounded queue and its own keyframe
//! gate: it gets nothing until an IDR, and a viewer whose queue is full loses frames up to
//! the next IDR. Publishing never blocks, so a slow viewer never slows the encoder or others.

mod gate;
mod recent;

pub use gate::{Gate, Verdict};
pub use recent::{JOIN_REUSE, RecentGop};

use crate::media::{AudioPacket, EncodedFrame, KeyframeInbox, KeyframeRequester};
use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{broadcast, mpsc, watch};

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
    /// Joins that started from the young current GOP instead of asking for an IDR.
    pub joins_from_recent_gop: AtomicU64,
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
    /// A transcoder reading this hub to feed another: not a viewer.
    relay: bool,
}

/// The stream hub between encoder and peers.
pub struct Hub {
    slots: Mutex<HashMap<u64, Slot>>,
    next_id: AtomicU64,
    keyframes: KeyframeRequester,
    /// The other end of `keyframes`, held by whoever produces this hub's frames now.
    inbox: KeyframeInbox,
    pub stats: HubStats,
    /// The current GOP while young, for joiners (taken with `slots` held).
    recent: Mutex<RecentGop>,
    /// Relayed presenter audio. Audio needs no gate (every Opus packet decodes alone);
    /// a viewer that lags simply skips packets.
    pub audio: broadcast::Sender<Arc<AudioPacket>>,
}

/// What the live presenter produces itself; the rest is transcoded on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Produced {
    pub h264: bool,
    pub vp8: bool,
    /// Raw frames: a camera pipeline that has them makes the sub-stream and the
    /// snapshots itself, by branches of its capture.
    pub raw: bool,
}

impl Produced {
    pub const NOTHING: Self = Self::of(false, false, false);
    /// A camera that delivers H.264, or a browser presenting H.264.
    pub const H264: Self = Self::of(true, false, false);
    /// A Firefox (or WHIP) presenter without H.264.
    pub const VP8: Self = Self::of(false, true, false);

    pub const fn of(h264: bool, vp8: bool, raw: bool) -> Self {
        Self { h264, vp8, raw }
    }
}

/// The VP8 stream, for browsers whose WebRTC has no H.264 (and for a VP8 presenter's
/// own video): its hub, and where its frames come from now.
pub struct SecondStream {
    pub hub: Arc<Hub>,
    /// What the live presenter produces, with the announcement that said so.
    produced: watch::Sender<(u64, Produced)>,
    next_announcement: AtomicU64,
    /// VP8 can be made from H.264 here (`fallback.enabled` and a decoder installed).
    transcodable: AtomicBool,
}

/// A presenter's word on what it produces, until dropped. A later announcement (the
/// next presenter) replaces it, and dropping a replaced one changes nothing, so a
/// presenter that ends late never clears its successor's.
pub struct Announcement {
    stream: Arc<SecondStream>,
    id: u64,
}

impl Drop for Announcement {
    fn drop(&mut self) {
        self.stream.produced.send_if_modified(|(id, produced)| {
            let mine = *id == self.id;
            if mine {
                *produced = Produced::NOTHING;
            }
            mine
        });
    }
}

impl SecondStream {
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            hub: Hub::new(),
            produced: watch::channel((0, Produced::NOTHING)).0,
            next_announcement: AtomicU64::new(1),
            transcodable: AtomicBool::new(false),
        })
    }

    /// Said by the presenter (a camera run or a browser) as it starts; holds while the
    /// returned announcement lives.
    pub fn announce(self: &Arc<Self>, produced: Produced) -> Announcement {
        let id = self.next_announcement.fetch_add(1, Ordering::Relaxed);
        self.produced.send_replace((id, produced));
        Announcement {
            stream: self.clone(),
            id,
        }
    }

    pub fn produced(&self) -> Produced {
        self.produced.borrow().1
    }

    /// Changes of what is produced (read `.borrow().1`).
    pub fn watch_produced(&self) -> watch::Receiver<(u64, Produced)> {
        self.produced.subscribe()
    }

    pub fn set_transcodable(&self, yes: bool) {
        self.transcodable.store(yes, Ordering::Release);
    }

    /// The hub, while VP8 can be watched: made by the presenter, or from its H.264.
    pub fn get(&self) -> Option<&Arc<Hub>> {
        let p = self.produced();
        let available = p.vp8 || (p.h264 && self.transcodable.load(Ordering::Acquire));
        available.then_some(&self.hub)
    }

    /// VP8 is the presenter's own video: a viewer that takes VP8 gets it as sent (its
    /// H.264 would be a re-encode).
    pub fn preferred(&self) -> bool {
        let p = self.produced();
        p.vp8 && !p.h264
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
    pub fn new() -> Arc<Self> {
        let (keyframes, inbox) = KeyframeRequester::channel();
        Arc::new(Self {
            slots: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
            keyframes,
            inbox: Arc::new(tokio::sync::Mutex::new(inbox)),
            stats: HubStats::default(),
            recent: Mutex::new(RecentGop::default()),
            audio: broadcast::channel(64).0,
        })
    }

    /// Joins a viewer. It starts from the current GOP when its keyframe is young
    /// ([`JOIN_REUSE`]); otherwise it receives frames from the next keyframe on, and one
    /// is requested now so that it comes soon whatever the GOP length.
    pub fn subscribe(self: &Arc<Self>) -> Subscription {
        self.subscribe_with_capacity(VIEWER_QUEUE)
    }

    pub fn subscribe_with_capacity(self: &Arc<Self>, capacity: usize) -> Subscription {
        self.join(capacity, false)
    }

    /// Joins a transcoder that feeds another hub from this one: like a viewer, but not
    /// counted as one.
    pub fn subscribe_relay(self: &Arc<Self>) -> Subscription {
        self.join(VIEWER_QUEUE, true)
    }

    /// The keyframe requests of this hub's viewers, for its producer to read (the lock
    /// makes that one producer at a time).
    pub fn keyframe_inbox(&self) -> KeyframeInbox {
        self.inbox.clone()
    }

    fn join(self: &Arc<Self>, capacity: usize, relay: bool) -> Subscription {
        let capacity = capacity.max(1);
        let (tx, rx) = mpsc::channel(capacity);
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let stats = Arc::new(ViewerStats::default());
        let mut slots = self.lock();
        // Under the slots lock, as `publish` updates the GOP under it: every frame is
        // either in what the joiner starts from or offered to it afterwards, once.
        let mut gate = Gate::new();
        let start = self
            .lock_recent()
            .for_joiner(std::time::Instant::now(), capacity)
            .map(<[_]>::to_vec);
        let reused = start.is_some();
        for frame in start.unwrap_or_default() {
            if gate.offer(frame.keyframe, |f| tx.try_send(f), frame) == Verdict::Delivered {
                stats.delivered.fetch_add(1, Ordering::Relaxed);
                self.stats.frames_out.fetch_add(1, Ordering::Relaxed);
            }
        }
        slots.insert(
            id,
            Slot {
                tx,
                gate,
                stats: stats.clone(),
                relay,
            },
        );
        drop(slots);
        if reused {
            self.stats
                .joins_from_recent_gop
                .fetch_add(1, Ordering::Relaxed);
        } else {
            self.request_keyframe();
        }
        Subscription {
            id,
            frames: rx,
            stats,
            hub: self.clone(),
        }
    }

    /// Number of subscribed viewers (transcoders reading it not counted).
    pub fn viewers(&self) -> usize {
        self.lock().values().filter(|s| !s.relay).count()
    }

    /// Hands a frame to every viewer. Never blocks.
    pub fn publish(&self, frame: EncodedFrame) {
        self.stats.frames_in.fetch_add(1, Ordering::Relaxed);
        let frame = Arc::new(frame);
        let mut need_keyframe = false;
        let mut slots = self.lock();
        self.lock_recent()
            .push(&frame, std::time::Instant::now(), VIEWER_QUEUE);
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

    fn lock_recent(&self) -> std::sync::MutexGuard<'_, RecentGop> {
        self.recent.lock().unwrap_or_else(|p| p.into_inner())
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
        EncodedFrame::new(
            Bytes::from(vec![n as u8]),
            Duration::from_millis(n * 33),
            keyframe,
        )
    }

    fn hub() -> (Arc<Hub>, tokio::sync::OwnedMutexGuard<mpsc::Receiver<()>>) {
        let hub = Hub::new();
        let inbox = hub.keyframe_inbox().try_lock_owned().expect("free");
        (hub, inbox)
    }

    #[tokio::test]
    async fn a_viewer_joining_a_young_gop_starts_from_it_without_asking() {
        let (hub, mut kf) = hub();
        let mut first = hub.subscribe();
        assert!(kf.try_recv().is_ok(), "the first join asks for a keyframe");
        hub.publish(frame(1, true));
        hub.publish(frame(2, false));
        // Right after that keyframe: the next joiner starts from it, asking for nothing.
        let mut second = hub.subscribe();
        assert!(kf.try_recv().is_err(), "no second forced IDR");
        hub.publish(frame(3, false));
        for n in [1, 2, 3] {
            assert_eq!(second.frames.recv().await.unwrap().data[0], n);
            assert_eq!(first.frames.recv().await.unwrap().data[0], n);
        }
        assert_eq!(hub.stats.joins_from_recent_gop.load(Ordering::Relaxed), 1);
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

    #[tokio::test]
    async fn a_relay_gets_frames_but_is_no_viewer() {
        let (hub, mut kf) = hub();
        let mut relay = hub.subscribe_relay();
        assert!(
            kf.try_recv().is_ok(),
            "it too starts on a keyframe it asks for"
        );
        assert_eq!(hub.viewers(), 0);
        hub.publish(frame(0, true));
        assert_eq!(relay.frames.recv().await.unwrap().data[0], 0);
    }

    #[test]
    fn vp8_is_offered_when_made_or_when_it_can_be_made_from_h264() {
        let s = SecondStream::new();
        assert!(s.get().is_none(), "nothing presents");
        let camera = s.announce(Produced::H264);
        assert!(s.get().is_none(), "no transcoder");
        s.set_transcodable(true);
        assert!(s.get().is_some() && !s.preferred());
        drop(camera);
        assert_eq!(s.produced(), Produced::NOTHING);
        let _both = s.announce(Produced::of(true, true, true));
        assert!(s.get().is_some() && !s.preferred());
        let _firefox = s.announce(Produced::VP8);
        assert!(
            s.get().is_some() && s.preferred(),
            "a VP8 presenter's own video"
        );
    }

    #[test]
    fn a_presenter_that_ends_late_does_not_clear_its_successor() {
        let s = SecondStream::new();
        let camera = s.announce(Produced::of(true, true, true));
        let browser = s.announce(Produced::VP8);
        drop(camera);
        assert_eq!(s.produced(), Produced::VP8);
        drop(browser);
        assert_eq!(s.produced(), Produced::NOTHING);
    }
}
