//! The suite's time bound: every scenario starts a guard, and a scenario still running
//! when its bound passes ends its test binary at once, naming itself, instead of
//! hanging until CI's limit. (libtest has no per-test timeout on stable Rust.)

use std::sync::mpsc;
use std::time::Duration;

/// Seconds a scenario may take: `EDGECAM_TEST_LIMIT_S`, default 300 (the slowest, the
/// soak, takes about 100 s here).
fn default_limit() -> Duration {
    let secs = std::env::var("EDGECAM_TEST_LIMIT_S")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(300);
    Duration::from_secs(secs)
}

/// Ends the scenario's bound when dropped (the scenario finished, passed or failed).
pub struct Bound {
    _done: mpsc::Sender<()>,
}

/// Starts `name`'s bound (the default limit, or `limit` for a scenario that is known to
/// take longer, such as the emulated image boot).
pub fn time_bound(name: &'static str, limit: Option<Duration>) -> Bound {
    let limit = limit.unwrap_or_else(default_limit);
    let (done, finished) = mpsc::channel::<()>();
    std::thread::spawn(move || {
        if let Err(mpsc::RecvTimeoutError::Timeout) = finished.recv_timeout(limit) {
            // Straight to the process's stderr: libtest's capture (which eprintln! from
            // this thread goes to) would swallow it with the exit.
            use std::io::Write;
            let _ = writeln!(
                std::io::stderr(),
                "\n{name} ran past its time bound of {} s: ending the test run",
                limit.as_secs()
            );
            std::process::exit(101);
        }
    });
    Bound { _done: done }
}
