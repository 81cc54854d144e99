//! A JSON command channel over a WebSocket, as both browser protocols are (Chromium's
//! DevTools protocol and WebDriver BiDi): every command carries an `id` and its reply the
//! same `id`; messages without one (events) are not needed by the tests and dropped.

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::{Mutex, mpsc, oneshot};
use tokio_tungstenite::tungstenite::Message;

type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<Value>>>>;

pub struct Rpc {
    out: mpsc::UnboundedSender<String>,
    pending: Pending,
    next_id: AtomicU64,
}

impl Rpc {
    /// Takes over a connected WebSocket: a writer and a reader task serve it.
    pub fn new<S>(ws: tokio_tungstenite::WebSocketStream<S>) -> Self
    where
        S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    {
        let (mut sink, mut stream) = ws.split();
        let (out, mut out_rx) = mpsc::unbounded_channel::<String>();
        tokio::spawn(async move {
            while let Some(text) = out_rx.recv().await {
                if sink.send(Message::Text(text.into())).await.is_err() {
                    break;
                }
            }
        });
        let pending: Pending = Arc::default();
        let replies = pending.clone();
        tokio::spawn(async move {
            while let Some(Ok(msg)) = stream.next().await {
                if let Message::Text(text) = msg
                    && let Ok(v) = serde_json::from_str::<Value>(text.as_str())
                    && let Some(id) = v["id"].as_u64()
                    && let Some(tx) = replies.lock().await.remove(&id)
                {
                    let _ = tx.send(v);
                }
            }
        });
        Self {
            out,
            pending,
            next_id: AtomicU64::new(1),
        }
    }

    /// Sends `command` (an object; its `id` is set here) and waits up to `within` for
    /// the reply. `None`: no reply in time.
    pub async fn call(&self, mut command: Value, within: Duration) -> Option<Value> {
        let id = self.next_id.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = oneshot::channel();
        self.pending.lock().await.insert(id, tx);
        command["id"] = Value::from(id);
        self.out
            .send(command.to_string())
            .expect("the browser's connection is open");
        tokio::time::timeout(within, rx).await.ok()?.ok()
    }
}
