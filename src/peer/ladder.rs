//! Which of the camera's H.264 streams one viewer's link can carry: the main stream, or
//! the small sub-stream when the viewer's receiver reports say packets are being lost
//! (a distant Wi-Fi, a thin uplink). A weak link then degrades only itself: it gets a
//! smaller picture instead of a frozen one, and nobody else notices.
//!
//! Down is quick (two lossy reports in a row, about two seconds); up is a probe, tried
//! once the link has been clean for a while, and each probe that fails doubles the wait
//! before the next (so a link that really is thin is not flipped back and forth). Pure:
//! the caller passes each report's loss and the time.

use std::time::{Duration, Instant};

/// A report losing at least this share of packets is lossy.
pub const LOSSY: f64 = 0.10;
/// A report losing at most this share is clean.
pub const CLEAN: f64 = 0.02;
/// Lossy reports in a row that move a viewer down.
pub const LOSSY_IN_A_ROW: u32 = 2;
/// Clean time on the sub-stream before the first probe up.
pub const FIRST_PROBE_AFTER: Duration = Duration::from_secs(8);
/// The longest wait between probes.
pub const LONGEST_PROBE_WAIT: Duration = Duration::from_secs(120);
/// A probe that lasts this long on the main stream has succeeded.
pub const PROBE_PROVEN_AFTER: Duration = Duration::from_secs(15);

/// The stream a viewer is on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rung {
    Main,
    Sub,
}

#[derive(Debug)]
pub struct Ladder {
    rung: Rung,
    lossy_in_a_row: u32,
    /// On the sub-stream: clean since then (reset by any report that is not clean).
    clean_since: Option<Instant>,
    /// The clean time the next probe up waits for.
    probe_wait: Duration,
    /// On the main stream after a probe: when it began (until it is proven).
    probing_since: Option<Instant>,
    /// After a move down that could not be made: no new one before this.
    not_before: Option<Instant>,
}

impl Default for Ladder {
    fn default() -> Self {
        Self {
            rung: Rung::Main,
            lossy_in_a_row: 0,
            clean_since: None,
            probe_wait: FIRST_PROBE_AFTER,
            probing_since: None,
            not_before: None,
        }
    }
}

impl Ladder {
    pub fn rung(&self) -> Rung {
        self.rung
    }

    /// Takes in one receiver report's loss (0.0–1.0) at `now`; says where to move, if
    /// anywhere.
    pub fn on_report(&mut self, fraction_lost: f64, now: Instant) -> Option<Rung> {
        match self.rung {
            Rung::Main => {
                if let Some(since) = self.probing_since
                    && now.saturating_duration_since(since) >= PROBE_PROVEN_AFTER
                {
                    // The link carried the main stream for long enough: a later loss is
                    // a new event, not a failed probe.
                    self.probing_since = None;
                    self.probe_wait = FIRST_PROBE_AFTER;
                }
                if fraction_lost < LOSSY || self.not_before.is_some_and(|t| now < t) {
                    self.lossy_in_a_row = 0;
                    return None;
                }
                self.lossy_in_a_row += 1;
                if self.lossy_in_a_row < LOSSY_IN_A_ROW {
                    return None;
                }
                if self.probing_since.take().is_some() {
                    self.probe_wait = (self.probe_wait * 2).min(LONGEST_PROBE_WAIT);
                }
                self.lossy_in_a_row = 0;
                self.clean_since = None;
                self.rung = Rung::Sub;
                Some(Rung::Sub)
            }
            Rung::Sub => {
                if fraction_lost > CLEAN {
                    self.clean_since = None;
                    return None;
                }
                let since = *self.clean_since.get_or_insert(now);
                if now.saturating_duration_since(since) < self.probe_wait {
                    return None;
                }
                self.rung = Rung::Main;
                self.probing_since = Some(now);
                self.lossy_in_a_row = 0;
                Some(Rung::Main)
            }
        }
    }

    /// The move to `Sub` could not be made (no sub-stream is produced now): the viewer
    /// stays on the main stream, and the next move down waits a probe's wait (doubling).
    pub fn move_failed(&mut self, now: Instant) {
        self.rung = Rung::Main;
        self.lossy_in_a_row = 0;
        self.not_before = Some(now + self.probe_wait);
        self.probe_wait = (self.probe_wait * 2).min(LONGEST_PROBE_WAIT);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, s: u64) -> Instant {
        t0 + Duration::from_secs(s)
    }

    #[test]
    fn two_lossy_reports_in_a_row_move_down_and_a_clean_link_moves_back_up() {
        let t0 = Instant::now();
        let mut l = Ladder::default();
        assert_eq!(l.on_report(0.0, at(t0, 1)), None);
        assert_eq!(
            l.on_report(0.5, at(t0, 2)),
            None,
            "one lossy report is a blip"
        );
        assert_eq!(l.on_report(0.0, at(t0, 3)), None);
        assert_eq!(l.on_report(0.3, at(t0, 4)), None);
        assert_eq!(l.on_report(0.3, at(t0, 5)), Some(Rung::Sub));
        assert_eq!(l.rung(), Rung::Sub);
        // Clean from 6 s on: up after FIRST_PROBE_AFTER of it, not before.
        assert_eq!(l.on_report(0.0, at(t0, 6)), None);
        assert_eq!(
            l.on_report(0.05, at(t0, 7)),
            None,
            "not clean: the wait starts over"
        );
        for s in 8..16 {
            assert_eq!(l.on_report(0.01, at(t0, s)), None, "{s} s");
        }
        assert_eq!(l.on_report(0.0, at(t0, 16)), Some(Rung::Main));
    }

    #[test]
    fn failed_probes_wait_longer_and_a_proven_one_resets_the_wait() {
        let t0 = Instant::now();
        let mut l = Ladder::default();
        l.on_report(0.5, at(t0, 0));
        assert_eq!(l.on_report(0.5, at(t0, 1)), Some(Rung::Sub));
        l.on_report(0.0, at(t0, 2));
        assert_eq!(
            l.on_report(0.0, at(t0, 10)),
            Some(Rung::Main),
            "first probe"
        );
        l.on_report(0.6, at(t0, 11));
        assert_eq!(
            l.on_report(0.6, at(t0, 12)),
            Some(Rung::Sub),
            "probe failed"
        );
        l.on_report(0.0, at(t0, 13));
        assert_eq!(l.on_report(0.0, at(t0, 21)), None, "the wait has doubled");
        assert_eq!(l.on_report(0.0, at(t0, 29)), Some(Rung::Main));
        // This probe holds past PROBE_PROVEN_AFTER: the next fall waits the first wait.
        assert_eq!(l.on_report(0.0, at(t0, 45)), None);
        l.on_report(0.6, at(t0, 46));
        assert_eq!(l.on_report(0.6, at(t0, 47)), Some(Rung::Sub));
        l.on_report(0.0, at(t0, 48));
        assert_eq!(l.on_report(0.0, at(t0, 56)), Some(Rung::Main));
    }

    #[test]
    fn without_a_sub_stream_the_viewer_stays_and_asks_again_later() {
        let t0 = Instant::now();
        let mut l = Ladder::default();
        l.on_report(0.5, at(t0, 0));
        assert_eq!(l.on_report(0.5, at(t0, 1)), Some(Rung::Sub));
        l.move_failed(at(t0, 4));
        assert_eq!(l.rung(), Rung::Main);
        for s in 5..12 {
            assert_eq!(l.on_report(0.5, at(t0, s)), None, "{s} s: waiting");
        }
        l.on_report(0.5, at(t0, 12));
        assert_eq!(l.on_report(0.5, at(t0, 13)), Some(Rung::Sub));
        // Failing again and again, the wait stops growing at its bound.
        for n in 0..10 {
            l.move_failed(at(t0, 20 + n));
        }
        assert_eq!(l.probe_wait, LONGEST_PROBE_WAIT);
    }
}
