//! The current GOP while it is young. Joins come in bursts (a wall of screens powering
//! up, every page rejoining after a restart): the first joiner forces an IDR, and under
//! the coalescing rule (one forced IDR per 0.5 s) the next ones would wait for the next
//! window. Instead a viewer joining within [`JOIN_REUSE`] of the last keyframe starts
//! from it at once: the keyframe and the frames since (at most a fraction of a second of
//! them), then the live stream. Pure: the caller passes the time.

use crate::media::EncodedFrame;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How old the last keyframe may be for a joiner to start from it.
pub const JOIN_REUSE: Duration = Duration::from_millis(500);

#[derive(Debug, Default)]
pub struct RecentGop {
    frames: Vec<Arc<EncodedFrame>>,
    since: Option<Instant>,
}

impl RecentGop {
    /// Takes in each published frame; `limit` bounds what is kept (a joiner's queue).
    pub fn push(&mut self, frame: &Arc<EncodedFrame>, now: Instant, limit: usize) {
        if frame.keyframe {
            self.frames.clear();
            self.frames.push(frame.clone());
            self.since = Some(now);
            return;
        }
        let young = self.since.is_some_and(|t| now - t <= JOIN_REUSE);
        if young && self.frames.len() < limit {
            self.frames.push(frame.clone());
        } else if self.since.is_some() {
            // Too old (or too long) to start a joiner from: nothing is held for the
            // rest of a long GOP.
            self.frames.clear();
            self.since = None;
        }
    }

    /// What a viewer joining at `now` may start from: the last keyframe and what came
    /// after it, while young enough and no more than fits its queue of `capacity`.
    pub fn for_joiner(&self, now: Instant, capacity: usize) -> Option<&[Arc<EncodedFrame>]> {
        let since = self.since?;
        (now - since <= JOIN_REUSE && !self.frames.is_empty() && self.frames.len() <= capacity)
            .then_some(self.frames.as_slice())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn f(n: u8, keyframe: bool) -> Arc<EncodedFrame> {
        Arc::new(EncodedFrame::new(
            Bytes::from(vec![n]),
            Duration::from_millis(u64::from(n) * 33),
            keyframe,
        ))
    }

    #[test]
    fn a_joiner_starts_from_a_young_keyframe_only() {
        let t0 = Instant::now();
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        let mut g = RecentGop::default();
        g.push(&f(1, false), at(0), 16);
        assert!(g.for_joiner(at(0), 16).is_none(), "no keyframe yet");
        g.push(&f(2, true), at(10), 16);
        g.push(&f(3, false), at(43), 16);
        g.push(&f(4, false), at(76), 16);
        let first: Vec<u8> = g
            .for_joiner(at(100), 16)
            .unwrap()
            .iter()
            .map(|f| f.data[0])
            .collect();
        assert_eq!(first, [2, 3, 4], "the keyframe and what came since");
        assert!(
            g.for_joiner(at(100), 2).is_none(),
            "more than the joiner's queue holds"
        );
        assert!(
            g.for_joiner(at(600), 16).is_none(),
            "the keyframe is too old by then"
        );
        // Frames after the window let go of the GOP.
        g.push(&f(5, false), at(700), 16);
        assert!(g.for_joiner(at(700), 16).is_none());
        g.push(&f(6, true), at(800), 16);
        assert_eq!(g.for_joiner(at(900), 16).unwrap().len(), 1);
    }

    #[test]
    fn what_is_kept_is_bounded() {
        let t0 = Instant::now();
        let mut g = RecentGop::default();
        g.push(&f(0, true), t0, 4);
        for n in 1..10 {
            g.push(&f(n, false), t0 + Duration::from_millis(u64::from(n)), 4);
        }
        assert!(
            g.for_joiner(t0, 16).is_none(),
            "past its limit the GOP is let go"
        );
    }
}
