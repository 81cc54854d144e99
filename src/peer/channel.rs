//! What the peers' data channels carry: the status line every peer gets on open and on
//! each change, and a presenter's texts for every viewer.

use tokio::sync::{broadcast, watch};

/// Longest presenter text relayed to viewers, in bytes.
pub const MAX_TEXT_BYTES: usize = 4096;

pub struct ChannelFeed {
    /// The compact status JSON; set by whoever computes it (the daemon's wiring).
    status: watch::Sender<String>,
    /// Presenter texts, already wrapped as data-channel JSON.
    texts: broadcast::Sender<String>,
}

impl Default for ChannelFeed {
    fn default() -> Self {
        Self {
            status: watch::channel(String::new()).0,
            texts: broadcast::channel(32).0,
        }
    }
}

impl ChannelFeed {
    /// Sets the status line; channels are woken only when it changed.
    pub fn set_status(&self, json: String) {
        self.status.send_if_modified(|cur| {
            if *cur == json {
                false
            } else {
                *cur = json;
                true
            }
        });
    }

    pub fn watch_status(&self) -> watch::Receiver<String> {
        self.status.subscribe()
    }

    pub fn subscribe_texts(&self) -> broadcast::Receiver<String> {
        self.texts.subscribe()
    }

    /// Sends a presenter's text to every viewer's data channel. Returns the JSON sent.
    pub fn broadcast_text(&self, text: &str) -> String {
        let json = serde_json::json!({"type": "text", "text": text}).to_string();
        let _ = self.texts.send(json.clone());
        json
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn texts_are_wrapped_as_json() {
        let feed = ChannelFeed::default();
        let mut rx = feed.subscribe_texts();
        feed.broadcast_text("hello \"all\"");
        let v: serde_json::Value = serde_json::from_str(&rx.try_recv().unwrap()).unwrap();
        assert_eq!(
            v,
            serde_json::json!({"type": "text", "text": "hello \"all\""})
        );
    }

    #[test]
    fn an_unchanged_status_wakes_nobody() {
        let feed = ChannelFeed::default();
        let mut rx = feed.watch_status();
        feed.set_status("a".into());
        assert!(rx.has_changed().unwrap());
        rx.borrow_and_update();
        feed.set_status("a".into());
        assert!(!rx.has_changed().unwrap());
    }
}
