//! How long to wait before trying again after a failure: doubling from a first pause up
//! to a limit, and back to the first after a success. Pure (no clock), shared by the
//! camera supervisor and the upstream push.

use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backoff {
    first: Duration,
    max: Duration,
    next: Duration,
}

impl Backoff {
    pub fn new(first: Duration, max: Duration) -> Self {
        Self {
            first,
            max,
            next: first,
        }
    }

    /// The pause to take now; the one after it is twice as long (up to the limit).
    pub fn next_pause(&mut self) -> Duration {
        let pause = self.next;
        self.next = (self.next * 2).min(self.max);
        pause
    }

    /// After a success: the next failure waits the first pause again.
    pub fn reset(&mut self) {
        self.next = self.first;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_limit_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(5));
        let secs: Vec<u64> = (0..5).map(|_| b.next_pause().as_secs()).collect();
        assert_eq!(secs, vec![1, 2, 4, 5, 5]);
        b.reset();
        assert_eq!(b.next_pause(), Duration::from_secs(1));
    }
}
