//! GPIO simulator: the button can be pressed from code and the LEDs read back.

use super::{Led, Pins};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

/// Cheap to clone; clones share the same simulated pins.
#[derive(Clone, Default)]
pub struct Simulator {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    button: AtomicBool,
    status: AtomicBool,
    viewers: AtomicBool,
}

impl Simulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds the button down (true) or lets it go (false).
    pub fn set_button(&self, pressed: bool) {
        self.inner.button.store(pressed, Ordering::Release);
    }

    /// Whether an LED is lit right now.
    pub fn led(&self, led: Led) -> bool {
        match led {
            Led::Status => self.inner.status.load(Ordering::Acquire),
            Led::Viewers => self.inner.viewers.load(Ordering::Acquire),
        }
    }
}

impl Pins for Simulator {
    fn button_pressed(&self) -> bool {
        self.inner.button.load(Ordering::Acquire)
    }

    fn set_led(&self, led: Led, lit: bool) {
        match led {
            Led::Status => self.inner.status.store(lit, Ordering::Release),
            Led::Viewers => self.inner.viewers.store(lit, Ordering::Release),
        }
    }

    fn name(&self) -> &'static str {
        "simulator"
    }
}
