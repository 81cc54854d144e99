//! Button logic free of I/O: debounce, then a short press (on release) or a long press
//! (once, while still held).

use std::time::{Duration, Instant};

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
    raw_since: Instant,
    pressed_at: Option<Instant>,
    long_fired: bool,
}

impl Button {
    pub fn new(debounce: Duration, long_press: Duration, now: Instant) -> Self {
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

    /// Feeds one sample of the (logical) pressed level.
    pub fn sample(&mut self, pressed: bool, now: Instant) -> Option<ButtonEvent> {
        if pressed != self.raw {
            self.raw = pressed;
            self.raw_since = now;
        }
        if self.raw != self.pressed && now.duration_since(self.raw_since) >= self.debounce {
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
            && now.duration_since(at) >= self.long_press
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

    fn run(b: &mut Button, t0: Instant, samples: &[(u64, bool)]) -> Vec<(u64, ButtonEvent)> {
        samples
            .iter()
            .filter_map(|&(ms, p)| b.sample(p, t0 + MS * ms as u32).map(|e| (ms, e)))
            .collect()
    }

    #[test]
    fn a_clean_press_is_a_short_press_on_release() {
        let t0 = Instant::now();
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
        let t0 = Instant::now();
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
        let t0 = Instant::now();
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
