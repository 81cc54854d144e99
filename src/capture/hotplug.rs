//! Noticing a camera arrive at once: inotify on `/dev` (the kernel's devtmpfs creates
//! `videoN`, udev then sets its group) and on udev's stable names in `/dev/v4l/by-id` and
//! `/dev/v4l/by-path`. Waiters re-check what they want on every relevant event instead of
//! polling; where inotify cannot be had they fall back to a slow poll.

use inotify::{Inotify, WatchDescriptor, WatchMask};
use std::ffi::OsStr;
use std::time::Duration;

/// Directories whose entries name cameras.
const DIRS: &[&str] = &["/dev", "/dev/v4l", "/dev/v4l/by-id", "/dev/v4l/by-path"];
/// Without inotify: how often to look again.
const FALLBACK_POLL: Duration = Duration::from_secs(2);

/// Whether a name that changed in `/dev` may be a camera (or the directory that will hold
/// the stable names): `/dev`'s other churn (ttys, disks) is ignored. Every change in
/// `/dev/v4l` and below concerns cameras.
pub fn concerns_cameras(name: &OsStr) -> bool {
    let name = name.to_string_lossy();
    name.starts_with("video") || name == "v4l"
}

/// Resolves once `present()` holds, checking again whenever a camera-like device node or
/// stable name appears or changes. `present` runs on the blocking pool (it may open
/// devices).
pub async fn until_present<F>(present: F)
where
    F: Fn() -> bool + Send + Sync + Clone + 'static,
{
    // Watches first, then the check: nothing that appears in between is missed.
    let mut watch = Watch::new();
    loop {
        let check = present.clone();
        if tokio::task::spawn_blocking(check).await.unwrap_or(false) {
            return;
        }
        watch.changed().await;
    }
}

struct Watch {
    /// `None` where inotify is not available: then `changed` is a timer.
    stream: Option<inotify::EventStream<Vec<u8>>>,
    /// The watch on `/dev` itself, whose other churn is filtered out by name.
    dev: Option<WatchDescriptor>,
}

const MASK: WatchMask = WatchMask::CREATE
    .union(WatchMask::ATTRIB)
    .union(WatchMask::MOVED_TO);

impl Watch {
    fn new() -> Self {
        let mut dev = None;
        let stream = Inotify::init().ok().and_then(|inotify| {
            dev = inotify.watches().add("/dev", MASK).ok();
            dev.as_ref()?;
            // /dev/v4l and below exist only once a camera has been seen.
            for dir in &DIRS[1..] {
                let _ = inotify.watches().add(dir, MASK);
            }
            inotify.into_event_stream(vec![0u8; 4096]).ok()
        });
        if stream.is_none() {
            tracing::debug!("no inotify on /dev; looking for cameras every {FALLBACK_POLL:?}");
        }
        Self { stream, dev }
    }

    /// The next camera-related change (or the fallback poll's next tick).
    async fn changed(&mut self) {
        use futures_util::StreamExt;
        let Some(stream) = self.stream.as_mut() else {
            tokio::time::sleep(FALLBACK_POLL).await;
            return;
        };
        loop {
            match stream.next().await {
                Some(Ok(event)) => {
                    let in_dev = self.dev.as_ref() == Some(&event.wd);
                    let relevant = !in_dev || event.name.as_deref().is_some_and(concerns_cameras);
                    if relevant {
                        // A new /dev/v4l/by-* directory: watch it from now on.
                        if event.mask.contains(inotify::EventMask::ISDIR) {
                            self.rewatch();
                        }
                        return;
                    }
                }
                Some(Err(e)) => {
                    tracing::debug!("inotify on /dev failed ({e}); polling instead");
                    self.stream = None;
                    tokio::time::sleep(FALLBACK_POLL).await;
                    return;
                }
                None => {
                    self.stream = None;
                    return;
                }
            }
        }
    }

    fn rewatch(&mut self) {
        if let Some(stream) = self.stream.as_mut() {
            let mut watches = stream.watches();
            for dir in &DIRS[1..] {
                let _ = watches.add(dir, MASK);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_camera_names_in_dev_count() {
        assert!(concerns_cameras(OsStr::new("video0")));
        assert!(concerns_cameras(OsStr::new("v4l")));
        assert!(!concerns_cameras(OsStr::new("ttyS0")));
        assert!(!concerns_cameras(OsStr::new("sda1")));
    }
}
