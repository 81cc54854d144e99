//! Shared test harness: the daemon in-process on 127.0.0.1:0, a Kurento-protocol
//! WebSocket client, a Rust WebRTC viewer, and headless Chromium over CDP.
#![allow(dead_code)] // each test file uses a different part of the harness

pub mod bound;
pub mod browser;
pub mod firefox;
pub mod netns;
pub mod process;
pub mod rpc;
pub mod rust_presenter;
pub mod rust_viewer;
pub mod tls;

#[allow(unused_imports)] // the benches share this harness and have no bound
pub use bound::time_bound;
use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream, tungstenite::Message};

/// Evaluates `eval` every 100 ms until `pred` holds; fails naming `what` after `secs`
/// (the browsers' `wait_for`).
pub async fn eval_until<F, Fut>(
    secs: u64,
    what: &str,
    eval: F,
    pred: impl Fn(&Value) -> bool,
) -> Value
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = Value>,
{
    let deadline = std::time::Instant::now() + Duration::from_secs(secs);
    loop {
        let v = eval().await;
        if pred(&v) {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{what} not reached in {secs}s: {v}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// A webrtc-crate peer for test clients: default codecs and interceptors, bound to
/// 127.0.0.1 with loopback candidates (tests only talk over loopback).
pub async fn loopback_peer(
    handler: std::sync::Arc<dyn webrtc::peer_connection::PeerConnectionEventHandler>,
) -> std::sync::Arc<dyn webrtc::peer_connection::PeerConnection> {
    peer_on([127, 0, 0, 1].into(), handler).await
}

/// Which video codecs a test client offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCodecs {
    /// The webrtc crate's defaults (H.264, VP8, VP9, ...), as a browser's.
    All,
    /// VP8 only: a browser without H.264.
    Vp8Only,
    /// H.264 only: an NVR-style client, or a browser without VP8.
    H264Only,
}

/// A loopback peer whose only video codec is VP8: a browser without H.264.
pub async fn loopback_peer_vp8_only(
    handler: std::sync::Arc<dyn webrtc::peer_connection::PeerConnectionEventHandler>,
) -> std::sync::Arc<dyn webrtc::peer_connection::PeerConnection> {
    build_peer([127, 0, 0, 1].into(), handler, ClientCodecs::Vp8Only).await
}

/// A loopback peer offering `codecs`.
pub async fn loopback_peer_with(
    handler: std::sync::Arc<dyn webrtc::peer_connection::PeerConnectionEventHandler>,
    codecs: ClientCodecs,
) -> std::sync::Arc<dyn webrtc::peer_connection::PeerConnection> {
    build_peer([127, 0, 0, 1].into(), handler, codecs).await
}

/// Like `loopback_peer`, with its socket bound to `bind` (a bench's own test host).
pub async fn peer_on(
    bind: std::net::IpAddr,
    handler: std::sync::Arc<dyn webrtc::peer_connection::PeerConnectionEventHandler>,
) -> std::sync::Arc<dyn webrtc::peer_connection::PeerConnection> {
    build_peer(bind, handler, ClientCodecs::All).await
}

async fn build_peer(
    bind: std::net::IpAddr,
    handler: std::sync::Arc<dyn webrtc::peer_connection::PeerConnectionEventHandler>,
    codecs: ClientCodecs,
) -> std::sync::Arc<dyn webrtc::peer_connection::PeerConnection> {
    use rtc::interceptor::Registry;
    use rtc::peer_connection::configuration::interceptor_registry::register_default_interceptors;
    use rtc::peer_connection::configuration::media_engine::MediaEngine;
    use webrtc::peer_connection::{PeerConnectionBuilder, SettingEngineBuilder};
    let mut media = MediaEngine::default();
    let video = rtc::rtp_transceiver::rtp_sender::RtpCodecKind::Video;
    match codecs {
        ClientCodecs::Vp8Only => media
            .register_codec(edgecam::peer::vp8_codec(), video)
            .expect("VP8"),
        ClientCodecs::H264Only => media
            .register_codec(edgecam::peer::h264_codec(), video)
            .expect("H.264"),
        ClientCodecs::All => media.register_default_codecs().expect("codecs"),
    }
    let registry =
        register_default_interceptors(Registry::new(), &mut media).expect("interceptors");
    std::sync::Arc::new(
        PeerConnectionBuilder::new()
            .with_media_engine(media)
            .with_interceptor_registry(registry)
            .with_setting_engine(
                SettingEngineBuilder::new()
                    .with_include_loopback_candidate(true)
                    .build(),
            )
            .with_handler(handler)
            .with_udp_addrs(vec![SocketAddr::new(bind, 0).to_string()])
            .build()
            .await
            .expect("client peer"),
    )
}

/// An `Authorization` header value for HTTP Basic with `user` and `password`.
pub fn basic_auth(user: &str, password: &str) -> String {
    use base64::Engine;
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
    )
}

/// A daemon running inside the test process.
pub struct Daemon {
    pub addr: SocketAddr,
    /// The simulated GPIO pins: press the button, read the LEDs.
    pub gpio: edgecam::gpio::Simulator,
    /// The daemon's state directory (kept so a restarted daemon can reuse it).
    pub state: std::sync::Arc<tempfile::TempDir>,
    /// `Authorization` header the harness's own requests carry (daemons with passwords).
    pub credentials: Option<String>,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Daemon {
    /// Starts the daemon on the test pattern, loopback only, with `extra` env-style settings
    /// (e.g. `("EDGECAM_VIEWERS__MAX", "2")`).
    pub async fn start(extra: &[(&str, &str)]) -> Self {
        Self::start_on("127.0.0.1:0", extra).await
    }

    /// Like `start`, on a given address (to restart a daemon where pages expect it).
    pub async fn start_on(listen: &str, extra: &[(&str, &str)]) -> Self {
        Self::start_full(
            listen,
            extra,
            std::sync::Arc::new(tempfile::tempdir().expect("state dir")),
        )
        .await
    }

    /// Starts with an admin password (hashed into the config); the harness's own status
    /// requests log in with it over HTTP Basic.
    pub async fn start_with_admin(extra: &[(&str, &str)], admin_password: &str) -> Self {
        use base64::Engine;
        let hash = edgecam::auth::hash_password(admin_password).expect("hash");
        let mut all = extra.to_vec();
        all.push(("EDGECAM_AUTH__ADMIN_PASSWORD_HASH", &hash));
        let basic =
            base64::engine::general_purpose::STANDARD.encode(format!("admin:{admin_password}"));
        let state = std::sync::Arc::new(tempfile::tempdir().expect("state dir"));
        Self::start_inner(
            "127.0.0.1:0",
            &all,
            state,
            Some(format!("Basic {basic}")),
            false,
        )
        .await
    }

    /// Starts with a given state directory (to check what a restart remembers).
    pub async fn start_full(
        listen: &str,
        extra: &[(&str, &str)],
        state: std::sync::Arc<tempfile::TempDir>,
    ) -> Self {
        Self::start_inner(listen, extra, state, None, false).await
    }

    /// Like `start_full`, with the settings in a settings file (`<state>/edgecam.toml`)
    /// instead of the environment, as on a device: the settings page may then change
    /// them (the environment wins over the page). `admin`: an admin password.
    pub async fn start_settable(
        extra: &[(&str, &str)],
        state: std::sync::Arc<tempfile::TempDir>,
        admin: Option<&str>,
    ) -> Self {
        use base64::Engine;
        let hash = admin.map(|p| edgecam::auth::hash_password(p).expect("hash"));
        let mut all = extra.to_vec();
        if let Some(h) = &hash {
            all.push(("EDGECAM_AUTH__ADMIN_PASSWORD_HASH", h));
        }
        let credentials = admin.map(|p| {
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(format!("admin:{p}"))
            )
        });
        Self::start_inner("127.0.0.1:0", &all, state, credentials, true).await
    }

    async fn start_inner(
        listen: &str,
        extra: &[(&str, &str)],
        state: std::sync::Arc<tempfile::TempDir>,
        credentials: Option<String>,
        in_file: bool,
    ) -> Self {
        let mut env: HashMap<String, String> = [
            ("EDGECAM_CAMERA__SOURCE", "test"),
            ("EDGECAM_CAMERA__WIDTH", "640"),
            ("EDGECAM_CAMERA__HEIGHT", "360"),
            ("EDGECAM_ENCODER__KIND", "x264"),
            ("EDGECAM_ENCODER__BITRATE_KBPS", "800"),
            ("EDGECAM_WEBRTC__BIND_IPS", "127.0.0.1"),
            // Off unless a test asks (many daemons run at once; each would want 8554).
            ("EDGECAM_RTSP__LISTEN", ""),
            ("EDGECAM_ONVIF__DISCOVERY", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        env.insert(
            "EDGECAM_STATE__DIR".into(),
            state.path().display().to_string(),
        );
        for (k, v) in extra {
            env.insert(k.to_string(), v.to_string());
        }
        // For `start_settable`: the settings go into a file, as a device has them.
        let file = in_file.then(|| {
            let mut table = toml::Table::new();
            for (key, value) in env.drain() {
                let Some((section, name)) = key
                    .strip_prefix("EDGECAM_")
                    .and_then(|k| k.split_once("__"))
                else {
                    continue;
                };
                let section = table
                    .entry(section.to_ascii_lowercase())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if let toml::Value::Table(t) = section {
                    t.insert(name.to_ascii_lowercase(), toml::Value::String(value));
                }
            }
            let path = state.path().join("edgecam.toml");
            std::fs::write(&path, toml::to_string(&table).expect("toml")).expect("settings file");
            path
        });
        let cfg = edgecam::config::load(file.as_deref(), Some(env.clone()), &Default::default())
            .expect("test config");
        let listener = tokio::net::TcpListener::bind(listen).await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (tx, rx) = oneshot::channel::<()>();
        let gpio = edgecam::gpio::Simulator::new();
        let pins = std::sync::Arc::new(gpio.clone());
        let task = tokio::spawn(async move {
            edgecam::app::serve_with(
                cfg,
                listener,
                async {
                    let _ = rx.await;
                },
                pins,
            )
            .await
            .expect("daemon ran");
        });
        let d = Self {
            addr,
            gpio,
            state,
            credentials,
            stop: Some(tx),
            task: Some(task),
        };
        let remembered_off = std::fs::read_to_string(d.state.path().join("streaming"))
            .is_ok_and(|s| s.trim() == "off");
        // An `rtp:` camera has frames only once the test's sender runs.
        let waits_for_a_sender = extra
            .iter()
            .any(|(k, v)| *k == "EDGECAM_CAMERA__SOURCE" && v.starts_with("rtp:"));
        if !extra.contains(&("EDGECAM_CAMERA__AUTOSTART", "false"))
            && !remembered_off
            && !waits_for_a_sender
        {
            d.wait_running().await;
        }
        d
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/one2many", self.addr)
    }

    /// Holds the simulated button for `ms` milliseconds, then lets go.
    pub async fn press(&self, ms: u64) {
        self.gpio.set_button(true);
        tokio::time::sleep(Duration::from_millis(ms)).await;
        self.gpio.set_button(false);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    /// GET a path; returns status code and body.
    pub async fn get(&self, path: &str) -> (u16, String) {
        match &self.credentials {
            None => http_get(self.addr, path).await,
            Some(c) => {
                let (code, _, body) =
                    http_full(self.addr, "GET", path, &[("Authorization", c)], "").await;
                (code, body)
            }
        }
    }

    pub async fn status(&self) -> Value {
        let (code, body) = self.get("/api/status").await;
        assert_eq!(code, 200);
        serde_json::from_str(&body).expect("status is JSON")
    }

    /// Waits (bounded) until the camera pipeline produces frames.
    pub async fn wait_running(&self) {
        for _ in 0..200 {
            let s = self.status().await;
            if s["pipeline"]["state"] == "running" {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("pipeline never ran: {}", self.status().await);
    }

    /// Polls `/api/status` until `pred` holds, for at most `secs`.
    pub async fn wait_status(&self, secs: u64, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let s = self.status().await;
            if pred(&s) {
                return s;
            }
            if tokio::time::Instant::now() > deadline {
                panic!("status condition not reached in {secs}s: {s}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub async fn stop(mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.task.take() {
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .expect("daemon stops within 5 s")
                .expect("daemon task ok");
        }
    }
}

/// Minimal HTTP/1.1 GET over loopback (no client crate needed).
pub async fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(addr, "GET", path).await
}

/// Minimal HTTP/1.1 request without a body.
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    let (code, _, body) = http_full(addr, method, path, &[], "").await;
    (code, body)
}

/// HTTP/1.1 request with extra headers and a body; answers status, head and body.
pub async fn http_full(
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String, String) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = TcpStream::connect(addr).await.expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\n");
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str(&format!(
        "Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    ));
    s.write_all(req.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut buf))
        .await
        .expect("response in time")
        .expect("read");
    split_response(&buf)
}

/// A raw HTTP response as (status, head, body); status 0 when there is none.
pub fn split_response(raw: &[u8]) -> (u16, String, String) {
    let text = String::from_utf8_lossy(raw).to_string();
    let code = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (code, head.to_string(), body.to_string())
}

/// A header's value in a response head (case-insensitive name).
pub fn header<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines()
        .filter_map(|l| l.split_once(':'))
        .find(|(k, _)| k.trim().eq_ignore_ascii_case(name))
        .map(|(_, v)| v.trim())
}

/// A Kurento one2many client speaking plain JSON over the WebSocket.
pub struct Ws {
    pub inner: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl Ws {
    pub async fn connect(url: &str) -> Self {
        Self::connect_with(url, &[]).await.expect("ws connect")
    }

    /// Connects with extra request headers (cookies, credentials); the HTTP status on refusal.
    pub async fn connect_with(url: &str, headers: &[(&str, &str)]) -> Result<Self, u16> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = url.into_client_request().expect("ws url");
        for (k, v) in headers {
            req.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes())
                    .expect("header name"),
                v.parse().expect("header value"),
            );
        }
        match tokio_tungstenite::connect_async(req).await {
            Ok((inner, _)) => Ok(Self { inner }),
            Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
            Err(e) => panic!("ws connect: {e}"),
        }
    }

    pub async fn send_text(&mut self, text: impl Into<String>) {
        self.inner
            .send(Message::Text(text.into().into()))
            .await
            .expect("ws send");
    }

    pub async fn send_json(&mut self, v: &Value) {
        self.send_text(v.to_string()).await;
    }

    /// Next JSON message, or None on close/timeout.
    pub async fn recv_timeout(&mut self, secs: u64) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match tokio::time::timeout(left, self.inner.next()).await {
                Ok(Some(Ok(Message::Text(t)))) => return serde_json::from_str(t.as_str()).ok(),
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) | Err(_) => {
                    return None;
                }
                Ok(Some(Ok(_))) => continue,
            }
        }
    }

    pub async fn recv(&mut self) -> Value {
        self.recv_timeout(10).await.expect("a message within 10 s")
    }

    /// Next message with the given id, skipping others (e.g. iceCandidate).
    pub async fn recv_id(&mut self, id: &str) -> Value {
        for _ in 0..100 {
            let m = self.recv().await;
            if m["id"] == id {
                return m;
            }
        }
        panic!("no {id} message");
    }

    /// The next message with this id within `secs`, skipping others; None on timeout/close.
    pub async fn recv_id_within(&mut self, id: &str, secs: u64) -> Option<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let m = self.recv_timeout(left.as_secs().max(1)).await?;
            if m["id"] == id {
                return Some(m);
            }
            if tokio::time::Instant::now() >= deadline {
                return None;
            }
        }
    }
}

/// A VP8 key frame's size from its frame header (RFC 6386 section 9.1): `None` for an
/// inter frame.
pub fn vp8_keyframe_size(frame: &[u8]) -> Option<(u16, u16)> {
    if frame.len() < 10 || frame[0] & 1 != 0 || frame[3..6] != [0x9d, 0x01, 0x2a] {
        return None;
    }
    let w = u16::from_le_bytes([frame[6], frame[7]]) & 0x3fff;
    let h = u16::from_le_bytes([frame[8], frame[9]]) & 0x3fff;
    Some((w, h))
}
