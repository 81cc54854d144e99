//! Every viewer peer's link, listed while the peer lives: how it reached the camera, how
//! long it has been connected, and its RTT, loss and send bitrate (for `/api/status`).

use super::link_stats::{LinkQuality, LinkStats};
use serde::Serialize;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// How a viewer reached the camera.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ViewerKind {
    WebSocket,
    Whep,
    /// The push to `upstream.whip_url` (a WHIP server watching us).
    Upstream,
}

impl ViewerKind {
    /// As `/api/status` and `/metrics` name it.
    pub fn name(self) -> &'static str {
        match self {
            Self::WebSocket => "websocket",
            Self::Whep => "whep",
            Self::Upstream => "upstream",
        }
    }
}

struct Entry {
    kind: ViewerKind,
    since: Instant,
    stats: Arc<LinkStats>,
}

/// The list of live viewer links.
#[derive(Default)]
pub struct Links {
    map: Mutex<BTreeMap<u64, Entry>>,
    next: AtomicU64,
}

/// A viewer's entry in the list; dropping it (with the peer) removes the entry.
pub struct LinkGuard {
    pub id: u64,
    links: Arc<Links>,
}

impl Drop for LinkGuard {
    fn drop(&mut self) {
        self.links.lock().remove(&self.id);
    }
}

/// One viewer in `/api/status`.
#[derive(Debug, Clone, Serialize)]
pub struct ViewerLink {
    pub id: u64,
    pub kind: ViewerKind,
    pub connected_s: u64,
    /// `main`, or `sub` while its link is too weak for the main stream.
    pub stream: &'static str,
    /// Moves between the two streams so far.
    pub stream_moves: u64,
    #[serde(flatten)]
    pub quality: LinkQuality,
}

impl Links {
    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<u64, Entry>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Lists a viewer's link until the returned guard is dropped.
    pub fn register(self: &Arc<Self>, kind: ViewerKind, stats: Arc<LinkStats>) -> LinkGuard {
        let id = self.next.fetch_add(1, Ordering::Relaxed) + 1;
        self.lock().insert(
            id,
            Entry {
                kind,
                since: Instant::now(),
                stats,
            },
        );
        LinkGuard {
            id,
            links: self.clone(),
        }
    }

    pub fn list(&self) -> Vec<ViewerLink> {
        self.lock()
            .iter()
            .map(|(id, e)| {
                let (on_sub, stream_moves) = e.stats.stream();
                ViewerLink {
                    id: *id,
                    kind: e.kind,
                    connected_s: e.since.elapsed().as_secs(),
                    stream: if on_sub { "sub" } else { "main" },
                    stream_moves,
                    quality: e.stats.quality(),
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn links_are_listed_while_their_guard_lives() {
        let links = Arc::new(Links::default());
        let a = links.register(ViewerKind::WebSocket, Arc::new(LinkStats::new(1)));
        let b = links.register(ViewerKind::Whep, Arc::new(LinkStats::new(2)));
        let ids: Vec<u64> = links.list().iter().map(|l| l.id).collect();
        assert_eq!(ids, vec![a.id, b.id]);
        drop(a);
        let list = links.list();
        assert_eq!(list.len(), 1);
        assert_eq!(list[0].kind, ViewerKind::Whep);
        let json = serde_json::to_value(&list[0]).unwrap();
        assert_eq!(json["kind"], "whep");
        assert_eq!(json["kind"], ViewerKind::Whep.name());
        assert!(json["rtt_ms"].is_null(), "flattened quality: {json}");
    }
}
