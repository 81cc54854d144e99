//! Coalesces keyframe requests: at most one forced IDR per `min_gap`, however many
//! viewers ask, and none at all when a keyframe came out on its own after the request.

use std::time::{Duration, Instant};

/// The smallest gap between forced IDRs.
pub const MIN_GAP: Duration = Duration::from_millis(500);

#[derive(Debug)]
pub struct KeyframePacer {
    min_gap: Duration,
    last_forced: Option<Instant>,
    /// Keyframes counted when the oldest unanswered request arrived.
    pending_since: Option<u64>,
}

impl KeyframePacer {
    pub fn new(min_gap: Duration) -> Self {
        Self {
            min_gap,
            last_forced: None,
            pending_since: None,
        }
    }

    /// Records a request; `keyframes` is how many keyframes have been produced so far.
    pub fn request(&mut self, keyframes: u64) {
        self.pending_since.get_or_insert(keyframes);
    }

    /// When the pending request should be acted on, if one is still needed.
    /// A keyframe produced since the request answers it.
    pub fn due(&mut self, keyframes: u64) -> Option<Instant> {
        let since = self.pending_since?;
        if keyframes > since {
            self.pending_since = None;
            return None;
        }
        Some(match self.last_forced {
            Some(t) => t + self.min_gap,
            None => Instant::now(),
        })
    }

    /// Records that an IDR was forced at `now`; the pending request is answered.
    pub fn forced(&mut self, now: Instant) {
        self.last_forced = Some(now);
        self.pending_since = None;
    }
}

/// Sleeps until `due` (from [`KeyframePacer::due`]); forever when nothing is due.
pub async fn sleep_until_due(due: Option<Instant>) {
    match due {
        Some(at) => tokio::time::sleep_until(at.into()).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_request_is_due_now() {
        let mut p = KeyframePacer::new(MIN_GAP);
        assert_eq!(p.due(0), None);
        p.request(0);
        let due = p.due(0).unwrap();
        assert!(due <= Instant::now());
    }

    #[test]
    fn many_requests_collapse_into_one() {
        let mut p = KeyframePacer::new(MIN_GAP);
        for _ in 0..100 {
            p.request(0);
        }
        let now = Instant::now();
        assert!(p.due(0).is_some());
        p.forced(now);
        assert_eq!(p.due(0), None, "answered");
    }

    #[test]
    fn requests_within_the_gap_wait_for_it() {
        let mut p = KeyframePacer::new(MIN_GAP);
        let t0 = Instant::now();
        p.request(0);
        p.forced(t0);
        p.request(1);
        assert_eq!(p.due(1), Some(t0 + MIN_GAP));
    }

    #[test]
    fn a_natural_keyframe_answers_the_request() {
        let mut p = KeyframePacer::new(MIN_GAP);
        p.request(3);
        assert_eq!(p.due(4), None);
        assert_eq!(p.due(4), None, "stays answered");
    }
}
