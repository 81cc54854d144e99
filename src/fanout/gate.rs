//! The per-viewer keyframe gate and drop policy, free of I/O.

use tokio::sync::mpsc::error::TrySendError;

/// What happened to one frame offered to one viewer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    Delivered,
    /// Skipped: the viewer is waiting for a keyframe.
    Waiting,
    /// Lost: the viewer's queue was full; it now waits for a keyframe.
    Dropped,
    /// The viewer is gone.
    Closed,
}

/// Passes frames from a keyframe on; after a loss, closes until the next keyframe
/// (a decoder cannot use P-frames whose references it never got).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Gate {
    open: bool,
}

impl Default for Gate {
    fn default() -> Self {
        Self::new()
    }
}

impl Gate {
    pub fn new() -> Self {
        Self { open: false }
    }

    pub fn is_open(&self) -> bool {
        self.open
    }

    /// Offers one frame, trying `send` only when the gate lets it through.
    pub fn offer<T>(
        &mut self,
        keyframe: bool,
        send: impl FnOnce(T) -> Result<(), TrySendError<T>>,
        item: T,
    ) -> Verdict {
        if !self.open && !keyframe {
            return Verdict::Waiting;
        }
        match send(item) {
            Ok(()) => {
                self.open = true;
                Verdict::Delivered
            }
            Err(TrySendError::Full(_)) => {
                self.open = false;
                Verdict::Dropped
            }
            Err(TrySendError::Closed(_)) => Verdict::Closed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(_: u8) -> Result<(), TrySendError<u8>> {
        Ok(())
    }
    fn full(x: u8) -> Result<(), TrySendError<u8>> {
        Err(TrySendError::Full(x))
    }
    fn closed(x: u8) -> Result<(), TrySendError<u8>> {
        Err(TrySendError::Closed(x))
    }

    #[test]
    fn starts_closed_and_opens_on_keyframe() {
        let mut g = Gate::new();
        assert_eq!(g.offer(false, ok, 0), Verdict::Waiting);
        assert_eq!(g.offer(true, ok, 0), Verdict::Delivered);
        assert_eq!(g.offer(false, ok, 0), Verdict::Delivered);
    }

    #[test]
    fn a_full_queue_closes_until_keyframe() {
        let mut g = Gate::new();
        g.offer(true, ok, 0);
        assert_eq!(g.offer(false, full, 0), Verdict::Dropped);
        assert!(!g.is_open());
        assert_eq!(g.offer(false, ok, 0), Verdict::Waiting);
        assert_eq!(
            g.offer(true, full, 0),
            Verdict::Dropped,
            "keyframe lost too"
        );
        assert_eq!(g.offer(true, ok, 0), Verdict::Delivered);
    }

    #[test]
    fn closed_receiver_is_reported() {
        let mut g = Gate::new();
        assert_eq!(g.offer(true, closed, 0), Verdict::Closed);
    }
}
