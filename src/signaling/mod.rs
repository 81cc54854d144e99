//! Signaling: the Kurento one2many protocol over WebSocket, and WHEP over HTTP. It
//! creates and ends peers; it never touches media.

pub mod kurento;
pub mod protocol;
pub mod session;
pub mod wish;

use crate::fanout::Hub;
use crate::peer::PeerFactory;
use std::sync::Arc;

/// What every signaling session shares.
pub struct Signaling {
    pub hub: Arc<Hub>,
    /// The camera's VP8 stream, for viewers without H.264.
    pub vp8: Arc<crate::fanout::SecondStream>,
    pub peers: Arc<PeerFactory>,
    /// Who may present and watch: every transport goes through it.
    pub admission: Arc<crate::admission::Admission>,
    /// Start/stop, shared with the button.
    pub control: Arc<crate::control::Control>,
    /// Who may watch and who may present.
    pub auth: Arc<crate::auth::Auth>,
    /// `http.allowed_origins`: other web origins whose pages may open the WebSocket.
    pub allowed_origins: Vec<String>,
    /// Open signaling connections per client address, bounded by `per_address_max`.
    pub connections: std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>,
    pub per_address_max: usize,
    /// WHEP viewers and the WHIP publisher.
    pub wish: wish::Sessions,
    /// `whip.token`: the bearer token WHIP publishers must send; `None` turns WHIP off.
    pub whip_token: Option<String>,
    /// Becomes true when the daemon shuts down; every session then closes its socket.
    pub closing: tokio::sync::watch::Receiver<bool>,
    /// Served over HTTPS: the session cookie is then marked `Secure`.
    pub https: bool,
    /// `http.ping_interval_s` and `http.silence_timeout_s`.
    pub ping_every: std::time::Duration,
    pub silent_limit: std::time::Duration,
}

/// One open signaling connection of an address; released on drop.
pub struct ConnectionSlot {
    ctx: Arc<Signaling>,
    ip: std::net::IpAddr,
}

impl Signaling {
    /// Counts a new connection from `ip`, or `None` when that address has its maximum.
    pub fn open_connection(self: &Arc<Self>, ip: std::net::IpAddr) -> Option<ConnectionSlot> {
        let mut map = self.connections.lock().unwrap_or_else(|p| p.into_inner());
        let n = map.entry(ip).or_insert(0);
        if *n >= self.per_address_max {
            return None;
        }
        *n += 1;
        Some(ConnectionSlot {
            ctx: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnectionSlot {
    fn drop(&mut self) {
        let mut map = self
            .ctx
            .connections
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(n) = map.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                map.remove(&self.ip);
            }
        }
    }
}
