//! GPIO simulator: the button can be pressed from code and the LEDs read back.

use super::{Edge, EdgeSender, GpioError, Led, Pins, monotonic_now};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

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
    /// Where presses go once the daemon watches the button.
    edges: Mutex<Option<EdgeSender>>,
}

impl Simulator {
    pub fn new() -> Self {
        Self::default()
    }

    /// Holds the button down (true) or lets it go (false): an edge, as a real line sends.
    pub fn set_button(&self, pressed: bool) {
        if self.inner.button.swap(pressed, Ordering::AcqRel) == pressed {
            return;
        }
        let edges = self.inner.edges.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(tx) = edges.as_ref() {
            let _ = tx.try_send(Edge {
                pressed,
                at: monotonic_now(),
            });
        }
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

    fn watch_button(&self, edges: EdgeSender) -> Result<(), GpioError> {
        *self.inner.edges.lock().unwrap_or_else(|p| p.into_inner()) = Some(edges);
        Ok(())
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
