//! Button logic free of I/O and of the clock: fed the button's edges with their times
//! (the kernel's event timestamps on CLOCK_MONOTONIC), it debounces, then reports a short
//! press (on release) or a long press (once, while still held). Between edges the caller
//! wakes it at `deadline()`; times are durations since any fixed epoch.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ButtonEvent {
    Short,
    Long,
}

#[derive(Debug)]
pub struct Button {
    debounce: Duration,
    long_press: Duration,
    /// Debounced state.
    pressed: bool,
    /// Raw level and since when it has held.
    raw: bool,
    raw_since: Duration,
    pressed_at: Option<Duration>,
    long_fired: bool,
}

impl Button {
    pub fn new(debounce: Duration, long_press: Duration, now: Duration) -> Self {
        Self {
            debounce,
            long_press,
            pressed: false,
            raw: false,
            raw_since: now,
            pressed_at: None,
            long_fired: false,
        }
    }

    /// The (logical) level last seen.
    pub fn level(&self) -> bool {
        self.raw
    }

    /// When `sample` must next be called even without an edge: the end of the debounce
    /// time, or the moment a held button becomes a long press.
    pub fn deadline(&self) -> Option<Duration> {
        if self.raw != self.pressed {
            Some(self.raw_since + self.debounce)
        } else if self.pressed && !self.long_fired {
            self.pressed_at.map(|at| at + self.long_press)
        } else {
            None
        }
    }

    /// Feeds the (logical) pressed level at `now`: an edge, or the level unchanged at a
    /// deadline. Times going backwards count as no time passing.
    pub fn sample(&mut self, pressed: bool, now: Duration) -> Option<ButtonEvent> {
        if pressed != self.raw {
            self.raw = pressed;
            self.raw_since = now;
        }
        if self.raw != self.pressed && now.saturating_sub(self.raw_since) >= self.debounce {
            self.pressed = self.raw;
            if self.pressed {
                self.pressed_at = Some(now);
                self.long_fired = false;
            } else {
                let was_long = std::mem::take(&mut self.long_fired);
                self.pressed_at = None;
                if !was_long {
                    return Some(ButtonEvent::Short);
                }
            }
        }
        if self.pressed
            && !self.long_fired
            && let Some(at) = self.pressed_at
            && now.saturating_sub(at) >= self.long_press
        {
            self.long_fired = true;
            return Some(ButtonEvent::Long);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn run(b: &mut Button, t0: Duration, samples: &[(u64, bool)]) -> Vec<(u64, ButtonEvent)> {
        samples
            .iter()
            .filter_map(|&(ms, p)| b.sample(p, t0 + MS * ms as u32).map(|e| (ms, e)))
            .collect()
    }

    /// Edges only, as the kernel reports them; the deadlines are honoured in between the
    /// way `gpio::run` does (due ones first, at their own time).
    fn edges(b: &mut Button, edges: &[(u64, bool)]) -> Vec<(u64, ButtonEvent)> {
        let mut out = vec![];
        for &(ms, level) in edges.iter().chain([(u64::MAX / 2, false)].iter()) {
            let at = MS * ms as u32;
            while let Some(d) = b.deadline().filter(|d| *d <= at) {
                let lv = b.level();
                out.extend(b.sample(lv, d).map(|e| (d.as_millis() as u64, e)));
            }
            if ms < u64::MAX / 2 {
                out.extend(b.sample(level, at).map(|e| (ms, e)));
            }
        }
        out
    }

    #[test]
    fn edges_with_deadlines_give_presses_at_their_exact_times() {
        let mut b = Button::new(MS * 30, MS * 1000, Duration::ZERO);
        // A bouncy 200 ms press: the short press is reported 30 ms after the release.
        let ev = edges(
            &mut b,
            &[
                (100, true),
                (103, false),
                (105, true),
                (305, false),
                (306, true),
                (308, false),
            ],
        );
        assert_eq!(ev, vec![(338, ButtonEvent::Short)]);
        // A 1.5 s hold: long once, at 1 s after the press settled, and no short after.
        let ev = edges(&mut b, &[(2000, true), (3500, false)]);
        assert_eq!(ev, vec![(3030, ButtonEvent::Long)]);
    }

    #[test]
    fn a_pulse_longer_than_the_long_press_is_a_long_press_however_late_it_is_read() {
        // QEMU's power button: a 100 ms pulse; with a 50 ms long press configured and both
        // edges read together (a slow guest), the times alone decide.
        let mut b = Button::new(MS * 10, MS * 50, Duration::ZERO);
        let ev = edges(&mut b, &[(1000, true), (1100, false)]);
        assert_eq!(ev, vec![(1060, ButtonEvent::Long)]);
        assert_eq!(b.deadline(), None);
    }

    #[test]
    fn times_going_backwards_do_not_panic() {
        let mut b = Button::new(MS * 30, MS * 1000, MS * 500);
        assert_eq!(b.sample(true, MS * 100), None);
        assert_eq!(b.sample(true, MS * 10), None);
    }

    #[test]
    fn a_clean_press_is_a_short_press_on_release() {
        let t0 = Duration::from_secs(7);
        let mut b = Button::new(MS * 30, Duration::from_secs(5), t0);
        let ev = run(
            &mut b,
            t0,
            &[
                (0, true),
                (10, true),
                (40, true),
                (200, false),
                (240, false),
            ],
        );
        assert_eq!(ev, vec![(240, ButtonEvent::Short)]);
    }

    #[test]
    fn bounces_are_ignored() {
        let t0 = Duration::from_secs(7);
        let mut b = Button::new(MS * 30, Duration::from_secs(5), t0);
        // Contact bounce: never stable for 30 ms.
        let ev = run(
            &mut b,
            t0,
            &[
                (0, true),
                (5, false),
                (10, true),
                (15, false),
                (20, true),
                (25, false),
                (100, false),
            ],
        );
        assert!(ev.is_empty(), "{ev:?}");
    }

    #[test]
    fn holding_fires_long_once_and_release_does_not_toggle() {
        let t0 = Duration::from_secs(7);
        let mut b = Button::new(MS * 30, Duration::from_secs(5), t0);
        let ev = run(
            &mut b,
            t0,
            &[
                (0, true),
                (40, true),
                (5000, true),
                (5040, true),
                (6000, true),
                (7000, false),
                (7040, false),
            ],
        );
        assert_eq!(ev, vec![(5040, ButtonEvent::Long)]);
    }
}
