//! Load client: N concurrent WebRTC viewers (webrtc crate) against edgecam, speaking its
//! Kurento one2many protocol over the WebSocket, or against Janus's streaming plugin,
//! speaking Janus's HTTP API. Each viewer reassembles H.264 access units from RTP and
//! records time to first frame, frames and bytes received, frames missing and keyframe
//! waits; the server's CPU time and RSS are sampled from /proc over the run.
//!
//! Three runs per N (1, 10, 50, 100 by default), each on a fresh server process:
//! - edgecam on its own test pattern and x264 encoder (the product as shipped);
//! - edgecam and Janus side by side, both fed the very same H.264 RTP from one GStreamer
//!   pipeline (`multiudpsink` to both), so their per-viewer costs compare directly.
//!
//! Run: `cargo bench --bench load` (all; about 6 minutes), or name targets and counts:
//! `cargo bench --bench load -- edgecam janus 10 100`. Loopback only; every loop is
//! bounded in count and time. Needs Debian's `janus` package for the Janus runs.

#[path = "../tests/it/common/mod.rs"]
mod common;
mod support;

use common::Ws;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use serde_json::{Value, json};
use std::net::{IpAddr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use support::{Proc, percentile, sample_pid, stat_ticks, ticks_per_s};
use tokio::sync::mpsc;
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent,
    RTCSessionDescription,
};

const FPS: u32 = 30;
/// RTP clock ticks per frame at 30 fps.
const TS_PER_FRAME: u32 = 90_000 / FPS;
const IDLE: Duration = Duration::from_secs(5);
const SETTLE: Duration = Duration::from_secs(3);
const SAMPLE: Duration = Duration::from_secs(10);
/// Viewers joining at once; the rest queue.
const JOIN_BATCH: usize = 10;
/// A viewer that has no first frame after this long counts as failed.
const FIRST_FRAME_LIMIT: Duration = Duration::from_secs(20);

const EDGECAM_PORT: u16 = 18620;
const EDGECAM_RTP_PORT: u16 = 15006;
const JANUS_PORT: u16 = 18088;
const JANUS_RTP_PORT: u16 = 15004;

// ---------------------------------------------------------------------------------------
// What one viewer sees

/// Per-viewer counters, updated by its track reader.
#[derive(Debug)]
struct Stats {
    joined: Instant,
    first_frame: Option<Duration>,
    /// Access units complete and decodable (after a keyframe, nothing lost since).
    frames: u64,
    bytes: u64,
    /// RTP packets received.
    packets: u64,
    /// Access units that never arrived (RTP timestamp gaps) or arrived broken.
    missing: u64,
    /// Complete access units that could not be decoded: waiting for a keyframe.
    undecodable: u64,
    /// Times a loss left the viewer waiting for a keyframe (the join wait not counted).
    keyframe_waits: u64,
    waiting_since: Option<Instant>,
    // Reassembly state.
    last_seq: Option<u16>,
    cur_ts: Option<u32>,
    last_au_ts: Option<u32>,
    au: Vec<u8>,
    broken: bool,
}

impl Stats {
    fn new() -> Self {
        let now = Instant::now();
        Self {
            joined: now,
            first_frame: None,
            frames: 0,
            bytes: 0,
            packets: 0,
            missing: 0,
            undecodable: 0,
            keyframe_waits: 0,
            waiting_since: Some(now),
            last_seq: None,
            cur_ts: None,
            last_au_ts: None,
            au: Vec::new(),
            broken: false,
        }
    }

    fn on_packet(
        &mut self,
        depack: &mut H264Packet,
        seq: u16,
        ts: u32,
        marker: bool,
        payload: &[u8],
    ) {
        let now = Instant::now();
        self.bytes += payload.len() as u64;
        self.packets += 1;
        if let Some(last) = self.last_seq
            && seq != last.wrapping_add(1)
        {
            self.broken = true;
        }
        self.last_seq = Some(seq);
        if self.cur_ts != Some(ts) {
            // A new access unit began before the last one's marker: that one is lost.
            if !self.au.is_empty() {
                self.finish(true, now);
            }
            self.cur_ts = Some(ts);
        }
        match depack.depacketize(&bytes::Bytes::copy_from_slice(payload)) {
            Ok(b) => self.au.extend_from_slice(&b),
            Err(_) => self.broken = true,
        }
        if marker {
            let broken = self.broken;
            self.finish(broken, now);
        }
    }

    fn finish(&mut self, broken: bool, now: Instant) {
        let Some(ts) = self.cur_ts else { return };
        if let Some(prev) = self.last_au_ts {
            let steps = ts.wrapping_sub(prev).wrapping_add(TS_PER_FRAME / 2) / TS_PER_FRAME;
            // Whole frames skipped (a bounded step: a restarted stream is not a loss).
            if (2..300).contains(&steps) {
                self.missing += u64::from(steps - 1);
            }
        }
        self.last_au_ts = Some(ts);
        self.broken = false;
        if broken || self.au.is_empty() {
            self.missing += 1;
            if self.waiting_since.is_none() {
                self.waiting_since = Some(now);
                self.keyframe_waits += 1;
            }
        } else if has_idr(&self.au) {
            self.waiting_since = None;
            self.frames += 1;
            self.first_frame.get_or_insert(now - self.joined);
        } else if self.waiting_since.is_some() {
            self.undecodable += 1;
        } else {
            self.frames += 1;
        }
        self.au.clear();
    }
}

/// Whether an Annex B access unit holds an IDR slice.
fn has_idr(au: &[u8]) -> bool {
    au.windows(4)
        .any(|w| w[0] == 0 && w[1] == 0 && w[2] == 1 && w[3] & 0x1F == 5)
}

struct Handler {
    candidates: mpsc::UnboundedSender<RTCIceCandidateInit>,
    stats: Arc<Mutex<Stats>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(c) = event.candidate.to_json() {
            let _ = self.candidates.send(c);
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        let stats = self.stats.clone();
        tokio::spawn(async move {
            let mut depack = H264Packet::default();
            while let Some(evt) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = evt {
                    let mut s = stats.lock().unwrap_or_else(|e| e.into_inner());
                    s.on_packet(
                        &mut depack,
                        p.header.sequence_number,
                        p.header.timestamp,
                        p.header.marker,
                        &p.payload,
                    );
                }
            }
        });
    }
}

/// A connected viewer: its peer, its counters and its signaling task.
struct Viewer {
    pc: Arc<dyn PeerConnection>,
    stats: Arc<Mutex<Stats>>,
    signaling: tokio::task::JoinHandle<()>,
}

impl Viewer {
    fn snapshot(&self) -> (u64, u64, u64, u64, u64) {
        let s = self.stats.lock().unwrap_or_else(|e| e.into_inner());
        (
            s.frames,
            s.missing + s.undecodable,
            s.bytes,
            s.keyframe_waits,
            s.packets,
        )
    }

    async fn close(self) {
        self.signaling.abort();
        let _ = self.pc.close().await;
    }
}

async fn new_peer(
    bind: IpAddr,
) -> (
    Arc<dyn PeerConnection>,
    Arc<Mutex<Stats>>,
    mpsc::UnboundedReceiver<RTCIceCandidateInit>,
) {
    let (tx, rx) = mpsc::unbounded_channel();
    let stats = Arc::new(Mutex::new(Stats::new()));
    let handler = Arc::new(Handler {
        candidates: tx,
        stats: stats.clone(),
    });
    let pc = common::peer_on(bind, handler as Arc<dyn PeerConnectionEventHandler>).await;
    (pc, stats, rx)
}

// ---------------------------------------------------------------------------------------
// edgecam: Kurento one2many over the WebSocket; the viewer offers.

async fn join_edgecam(server: SocketAddr, bind: IpAddr) -> Result<Viewer, String> {
    let (pc, stats, mut candidates) = new_peer(bind).await;
    pc.add_transceiver_from_kind(
        RtpCodecKind::Video,
        Some(RTCRtpTransceiverInit {
            direction: RTCRtpTransceiverDirection::Recvonly,
            ..Default::default()
        }),
    )
    .await
    .map_err(|e| e.to_string())?;
    let offer = pc.create_offer(None).await.map_err(|e| e.to_string())?;
    pc.set_local_description(offer.clone())
        .await
        .map_err(|e| e.to_string())?;
    let mut ws = Ws::connect_with(&format!("ws://{server}/one2many"), &[])
        .await
        .map_err(|code| format!("WebSocket refused: HTTP {code}"))?;
    ws.send_json(&json!({"id": "viewer", "sdpOffer": offer.sdp}))
        .await;
    let answer = loop {
        match ws.recv_timeout(10).await {
            Some(m) if m["id"] == "viewerResponse" => break m,
            Some(_) => continue,
            None => return Err("no viewerResponse".into()),
        }
    };
    if answer["response"] != "accepted" {
        return Err(format!("rejected: {answer}"));
    }
    let sdp = answer["sdpAnswer"].as_str().unwrap_or_default().to_string();
    pc.set_remote_description(RTCSessionDescription::answer(sdp).map_err(|e| e.to_string())?)
        .await
        .map_err(|e| e.to_string())?;
    let task_pc = pc.clone();
    let signaling = tokio::spawn(async move {
        loop {
            tokio::select! {
                Some(c) = candidates.recv() => {
                    ws.send_json(&json!({"id": "onIceCandidate", "candidate": c})).await;
                }
                m = ws.recv_timeout(3600) => match m {
                    Some(m) if m["id"] == "iceCandidate" => {
                        if let Ok(c) = serde_json::from_value::<RTCIceCandidateInit>(m["candidate"].clone()) {
                            let _ = task_pc.add_ice_candidate(c).await;
                        }
                    }
                    Some(_) => {}
                    None => return,
                }
            }
        }
    });
    Ok(Viewer {
        pc,
        stats,
        signaling,
    })
}

// ---------------------------------------------------------------------------------------
// Janus: the streaming plugin over the HTTP API; Janus offers, the viewer answers.

/// One HTTP request with a JSON body (or none), answered JSON; bounded by `limit`.
/// HTTP/1.0, so Janus's libmicrohttpd answers without chunked encoding.
async fn janus_http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    body: Option<&Value>,
    limit: Duration,
) -> Result<Value, String> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let io = async {
        let mut s = tokio::net::TcpStream::connect(addr)
            .await
            .map_err(|e| e.to_string())?;
        let body = body.map(|b| b.to_string()).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.0\r\nHost: {addr}\r\nContent-Type: application/json\r\n\
             Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        s.write_all(req.as_bytes())
            .await
            .map_err(|e| e.to_string())?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.map_err(|e| e.to_string())?;
        let text = String::from_utf8_lossy(&buf).to_string();
        let (_, body) = text.split_once("\r\n\r\n").ok_or("no HTTP body")?;
        serde_json::from_str::<Value>(body).map_err(|e| format!("{e}: {body}"))
    };
    tokio::time::timeout(limit, io)
        .await
        .map_err(|_| format!("{method} {path}: timed out"))?
}

fn transaction() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("t{}", N.fetch_add(1, Ordering::Relaxed))
}

async fn janus_post(addr: SocketAddr, path: &str, mut body: Value) -> Result<Value, String> {
    body["transaction"] = json!(transaction());
    let r = janus_http(addr, "POST", path, Some(&body), Duration::from_secs(10)).await?;
    if r["janus"] == "error" {
        return Err(format!("Janus error: {r}"));
    }
    Ok(r)
}

async fn join_janus(port: SocketAddr, bind: IpAddr, mountpoint: u64) -> Result<Viewer, String> {
    let session = janus_post(port, "/janus", json!({"janus": "create"})).await?["data"]["id"]
        .as_u64()
        .ok_or("no session id")?;
    let spath = format!("/janus/{session}");
    let handle = janus_post(
        port,
        &spath,
        json!({"janus": "attach", "plugin": "janus.plugin.streaming"}),
    )
    .await?["data"]["id"]
        .as_u64()
        .ok_or("no handle id")?;
    let hpath = format!("{spath}/{handle}");
    janus_post(
        port,
        &hpath,
        json!({"janus": "message", "body": {"request": "watch", "id": mountpoint}}),
    )
    .await?;
    // The offer arrives as an event on the session's long poll, sometimes after Janus's
    // candidates: those wait until the offer is applied.
    let mut early: Vec<Value> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let offer = loop {
        if Instant::now() > deadline {
            return Err("no offer from Janus".into());
        }
        let e = janus_http(
            port,
            "GET",
            &format!("{spath}?maxev=1"),
            None,
            Duration::from_secs(35),
        )
        .await?;
        if e["jsep"]["type"] == "offer" {
            break e["jsep"]["sdp"].as_str().unwrap_or_default().to_string();
        }
        if e["janus"] == "trickle" {
            early.push(e["candidate"].clone());
        }
        if e["janus"] == "event" && e["plugindata"]["data"]["error"].is_string() {
            return Err(format!("watch refused: {e}"));
        }
    };
    let (pc, stats, mut candidates) = new_peer(bind).await;
    pc.set_remote_description(RTCSessionDescription::offer(offer).map_err(|e| e.to_string())?)
        .await
        .map_err(|e| e.to_string())?;
    for c in early {
        if let Ok(c) = serde_json::from_value::<RTCIceCandidateInit>(c) {
            let _ = pc.add_ice_candidate(c).await;
        }
    }
    let answer = pc.create_answer(None).await.map_err(|e| e.to_string())?;
    pc.set_local_description(answer.clone())
        .await
        .map_err(|e| e.to_string())?;
    janus_post(
        port,
        &hpath,
        json!({"janus": "message", "body": {"request": "start"},
               "jsep": {"type": "answer", "sdp": answer.sdp}}),
    )
    .await?;
    let task_pc = pc.clone();
    let signaling = tokio::spawn(async move {
        // Our candidates go out as trickle requests; Janus's arrive on the long poll,
        // which also keeps the session alive.
        let poll = async {
            loop {
                match janus_http(
                    port,
                    "GET",
                    &format!("{spath}?maxev=1"),
                    None,
                    Duration::from_secs(35),
                )
                .await
                {
                    Ok(e) if e["janus"] == "trickle" => {
                        let c = &e["candidate"];
                        if c["completed"] == true {
                            continue;
                        }
                        if let Ok(c) = serde_json::from_value::<RTCIceCandidateInit>(c.clone()) {
                            let _ = task_pc.add_ice_candidate(c).await;
                        }
                    }
                    Ok(_) => {}
                    Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
                }
            }
        };
        let trickle = async {
            while let Some(c) = candidates.recv().await {
                let _ = janus_post(port, &hpath, json!({"janus": "trickle", "candidate": c})).await;
            }
        };
        tokio::join!(poll, trickle);
    });
    Ok(Viewer {
        pc,
        stats,
        signaling,
    })
}

// ---------------------------------------------------------------------------------------
// Servers

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Target {
    /// edgecam with its own test pattern and x264, on loopback.
    Edgecam,
    /// edgecam fed the shared RTP, in its own network namespace.
    EdgecamRtp,
    /// Janus fed the shared RTP, in its own network namespace.
    Janus,
}

impl Target {
    fn name(self) -> &'static str {
        match self {
            Target::Edgecam => "edgecam (own encoder)",
            Target::EdgecamRtp => "edgecam (shared RTP)",
            Target::Janus => "Janus (shared RTP)",
        }
    }

    /// A short name for files.
    fn key(self) -> &'static str {
        match self {
            Target::Edgecam => "own",
            Target::EdgecamRtp => "edgecam",
            Target::Janus => "janus",
        }
    }

    /// The server's address and the address its viewers bind to.
    fn addrs(self) -> (SocketAddr, IpAddr) {
        match self {
            Target::Edgecam => (([127, 0, 0, 1], EDGECAM_PORT).into(), [127, 0, 0, 1].into()),
            Target::EdgecamRtp => Netns::EDGECAM.addrs(EDGECAM_PORT),
            Target::Janus => Netns::JANUS.addrs(JANUS_PORT),
        }
    }
}

/// A test host of the bench's own: a network namespace joined to this one by a veth
/// pair (10.213.N.1 here, 10.213.N.2 there). Janus never gathers ICE candidates on a
/// loopback interface, so it cannot serve viewers on 127.0.0.1; for a like-for-like
/// comparison both servers fed the shared RTP run in a namespace each. Needs root.
#[derive(Clone, Copy)]
struct Netns(u8);

impl Netns {
    const EDGECAM: Netns = Netns(1);
    const JANUS: Netns = Netns(2);

    fn name(self) -> String {
        format!("edgebench{}", self.0)
    }
    fn host_ip(self) -> IpAddr {
        [10, 213, self.0, 1].into()
    }
    fn ns_ip(self) -> IpAddr {
        [10, 213, self.0, 2].into()
    }
    fn ns_iface(self) -> String {
        format!("ebn{}", self.0)
    }
    fn addrs(self, port: u16) -> (SocketAddr, IpAddr) {
        (SocketAddr::new(self.ns_ip(), port), self.host_ip())
    }

    fn create(self) {
        self.delete();
        let (name, host, peer) = (self.name(), format!("ebh{}", self.0), self.ns_iface());
        let host_cidr = format!("{}/30", self.host_ip());
        let ns_cidr = format!("{}/30", self.ns_ip());
        let host_ip = self.host_ip().to_string();
        let steps: Vec<Vec<&str>> = vec![
            vec!["netns", "add", &name],
            vec!["link", "add", &host, "type", "veth", "peer", "name", &peer],
            vec!["link", "set", &peer, "netns", &name],
            vec!["addr", "add", &host_cidr, "dev", &host],
            vec!["link", "set", &host, "up"],
            vec!["-n", &name, "addr", "add", &ns_cidr, "dev", &peer],
            vec!["-n", &name, "link", "set", &peer, "up"],
            vec!["-n", &name, "link", "set", "lo", "up"],
            // Janus looks up its own address through the default route.
            vec!["-n", &name, "route", "add", "default", "via", &host_ip],
        ];
        for args in steps {
            let ok = Command::new("ip")
                .args(&args)
                .status()
                .is_ok_and(|s| s.success());
            assert!(ok, "ip {}: the side-by-side runs need root", args.join(" "));
        }
    }

    fn delete(self) {
        // Deleting the namespace deletes the veth pair with it.
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name()])
            .stderr(Stdio::null())
            .status();
    }
}

enum Server {
    Edgecam(Proc, Option<Netns>),
    /// The process, its namespace and its config directory (removed on drop).
    Janus(Child, Netns, #[allow(dead_code)] tempfile::TempDir),
}

impl Server {
    fn pid(&self) -> u32 {
        match self {
            Server::Edgecam(p, _) => p.pid(),
            Server::Janus(c, _, _) => c.id(),
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        match self {
            Server::Edgecam(p, ns) => {
                let _ = p.child.kill();
                let _ = p.child.wait();
                if let Some(ns) = ns {
                    ns.delete();
                }
            }
            Server::Janus(c, ns, _) => {
                let _ = c.kill();
                let _ = c.wait();
                ns.delete();
            }
        }
    }
}

async fn start(target: Target) -> Server {
    match target {
        Target::Edgecam => {
            let p = Proc::start(EDGECAM_PORT, "test", 2);
            p.wait_ready().await;
            Server::Edgecam(p, None)
        }
        Target::EdgecamRtp => {
            let ns = Netns::EDGECAM;
            ns.create();
            let source = format!("rtp:{EDGECAM_RTP_PORT}");
            let p = Proc::start_in(Some(&ns.name()), target.addrs().0, &source, 2);
            let server = Server::Edgecam(p, Some(ns));
            if let Server::Edgecam(p, _) = &server {
                p.wait_ready().await;
            }
            server
        }
        Target::Janus => start_janus().await,
    }
}

/// Janus with only its HTTP transport and streaming plugin, ICE on its namespace's veth,
/// one RTP mountpoint (id 1) fed by the shared pipeline.
async fn start_janus() -> Server {
    let ns = Netns::JANUS;
    ns.create();
    let (http, _) = Target::Janus.addrs();
    let dir = tempfile::tempdir().expect("janus config dir");
    let cfg = dir.path();
    let lib = "/usr/lib/x86_64-linux-gnu/janus";
    std::fs::write(
        cfg.join("janus.jcfg"),
        format!(
            r#"general: {{
    configs_folder = "{cfg}"
    plugins_folder = "{lib}/plugins"
    transports_folder = "{lib}/transports"
    events_folder = "{lib}/events"
    loggers_folder = "{lib}/loggers"
    debug_level = 3
    debug_colors = false
    session_timeout = 60
}}
certificates: {{
}}
media: {{
    ipv6 = false
    rtp_port_range = "20000-20999"
}}
nat: {{
    nice_debug = false
    full_trickle = true
    ice_lite = false
    ice_enforce_list = "{iface}"
    ignore_mdns = true
}}
plugins: {{
    disable = "libjanus_audiobridge.so,libjanus_duktape.so,libjanus_echotest.so,libjanus_lua.so,libjanus_nosip.so,libjanus_recordplay.so,libjanus_sip.so,libjanus_textroom.so,libjanus_videocall.so,libjanus_videoroom.so,libjanus_voicemail.so"
}}
transports: {{
    disable = "libjanus_mqtt.so,libjanus_nanomsg.so,libjanus_pfunix.so,libjanus_rabbitmq.so,libjanus_websockets.so"
}}
loggers: {{
    disable = "libjanus_jsonlog.so"
}}
events: {{
    broadcast = false
    disable = "libjanus_gelfevh.so,libjanus_mqttevh.so,libjanus_nanomsgevh.so,libjanus_rabbitmqevh.so,libjanus_sampleevh.so,libjanus_wsevh.so"
}}
"#,
            cfg = cfg.display(),
            iface = ns.ns_iface()
        ),
    )
    .expect("janus.jcfg");
    std::fs::write(
        cfg.join("janus.transport.http.jcfg"),
        format!(
            r#"general: {{
    json = "plain"
    base_path = "/janus"
    http = true
    port = {JANUS_PORT}
    ip = "{ip}"
    https = false
}}
admin: {{
    admin_http = false
    admin_https = false
}}
cors: {{
}}
certificates: {{
}}
"#,
            ip = http.ip()
        ),
    )
    .expect("http config");
    std::fs::write(
        cfg.join("janus.plugin.streaming.jcfg"),
        format!(
            r#"general: {{
}}
bench: {{
    type = "rtp"
    id = 1
    description = "shared RTP"
    audio = false
    video = true
    videoport = {JANUS_RTP_PORT}
    videoiface = "{ip}"
    videopt = 96
    videocodec = "h264"
    videofmtp = "profile-level-id=42e01f;packetization-mode=1"
    videobufferkf = true
}}
"#,
            ip = http.ip()
        ),
    )
    .expect("streaming config");
    let child = Command::new("ip")
        .args(["netns", "exec", &ns.name()])
        .args(support::callgrind_prefix())
        .args(["janus", "-F"])
        .arg(cfg)
        .args(["-o", "-d", "3"])
        .stdout(std::fs::File::create(cfg.join("janus.log")).expect("janus log"))
        .stderr(Stdio::null())
        .spawn()
        .expect("janus (apt-get install janus)");
    let server = Server::Janus(child, ns, dir);
    let tries = if support::callgrind_dir().is_some() {
        1800
    } else {
        100
    };
    for _ in 0..tries {
        if let Ok(r) = janus_http(http, "GET", "/janus/info", None, Duration::from_secs(2)).await
            && r["janus"] == "server_info"
        {
            return server;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let log = match &server {
        Server::Janus(_, _, dir) => {
            std::fs::read_to_string(dir.path().join("janus.log")).unwrap_or_default()
        }
        _ => String::new(),
    };
    panic!("Janus did not come up on {http}:\n{log}");
}

/// Stops the shared source however the bench ends (a panic included).
struct Feeder(Child);

impl Drop for Feeder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The shared source: one x264 encode at 1280x720 30 fps 2 Mbps, RTP to both servers.
fn start_feeder() -> Child {
    Command::new("gst-launch-1.0")
        .args(["-q"])
        .args(
            format!(
                "videotestsrc is-live=true pattern=smpte horizontal-speed=2 \
                 ! video/x-raw,width=1280,height=720,framerate={FPS}/1 \
                 ! timeoverlay font-desc=Sans,20 \
                 ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=2000 \
                   key-int-max={} bframes=0 \
                 ! video/x-h264,profile=constrained-baseline \
                 ! rtph264pay config-interval=-1 pt=96 mtu=1200 \
                 ! multiudpsink clients={}:{EDGECAM_RTP_PORT},{}:{JANUS_RTP_PORT}",
                2 * FPS,
                Netns::EDGECAM.ns_ip(),
                Netns::JANUS.ns_ip()
            )
            .split_whitespace(),
        )
        .stdout(Stdio::null())
        .spawn()
        .expect("gst-launch-1.0")
}

// ---------------------------------------------------------------------------------------
// One measured run

struct RunResult {
    n: usize,
    idle_cpu: f64,
    cpu: f64,
    idle_rss_mib: f64,
    rss_mib: f64,
    /// Per viewer during the sample: frames, frames lost or undecodable.
    delivered: Vec<(u64, u64)>,
    ttff_ms: Vec<f64>,
    keyframe_waits: u64,
    mbit_per_viewer: f64,
    failed: usize,
}

async fn run(target: Target, n: usize) -> RunResult {
    let server = start(target).await;
    let pid = server.pid();
    let (server_addr, bind) = target.addrs();
    let cpu_over = |d: Duration| async move {
        let (t0, _) = sample_pid(pid);
        let start = Instant::now();
        let mut rss = 0;
        while start.elapsed() < d {
            tokio::time::sleep(Duration::from_millis(500)).await;
            rss = rss.max(sample_pid(pid).1);
        }
        let (t1, _) = sample_pid(pid);
        (
            (t1 - t0) as f64 / ticks_per_s() / start.elapsed().as_secs_f64() * 100.0,
            rss as f64 / 1024.0,
        )
    };
    let (idle_cpu, idle_rss_mib) = cpu_over(IDLE).await;

    // Join in batches; a viewer that cannot join is counted, not retried.
    let mut viewers = Vec::new();
    let mut failed = 0;
    for batch in (0..n).collect::<Vec<_>>().chunks(JOIN_BATCH) {
        let joins = batch.iter().map(|_| async {
            match target {
                Target::Janus => join_janus(server_addr, bind, 1).await,
                _ => join_edgecam(server_addr, bind).await,
            }
        });
        for r in futures_util::future::join_all(joins).await {
            match r {
                Ok(v) => viewers.push(v),
                Err(e) => {
                    eprintln!("{}: a viewer failed to join: {e}", target.name());
                    failed += 1;
                }
            }
        }
    }
    // Everyone's first frame (bounded), then a settle period.
    let deadline = Instant::now() + FIRST_FRAME_LIMIT;
    while Instant::now() < deadline
        && viewers.iter().any(|v| {
            v.stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .first_frame
                .is_none()
        })
    {
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    tokio::time::sleep(SETTLE).await;
    let callgrind = support::callgrind_dir();
    if callgrind.is_some() {
        support::callgrind_collect(pid, true);
    }
    let before: Vec<_> = viewers.iter().map(Viewer::snapshot).collect();
    let (cpu, rss_mib) = cpu_over(SAMPLE).await;
    let after: Vec<_> = viewers.iter().map(Viewer::snapshot).collect();
    if let Some(dir) = &callgrind {
        // What was counted, and the packets the viewers got meanwhile, for the script.
        support::callgrind_collect(pid, false);
        let packets: u64 = before.iter().zip(&after).map(|(b, a)| a.4 - b.4).sum();
        let frames: u64 = before.iter().zip(&after).map(|(b, a)| a.0 - b.0).sum();
        std::fs::write(
            dir.join(format!("{}-{n}.json", target.key())),
            serde_json::json!({"pid": pid, "viewers": viewers.len(), "packets": packets,
                "frames": frames, "seconds": SAMPLE.as_secs()})
            .to_string(),
        )
        .expect("callgrind run summary");
    }
    let mut ttff_ms: Vec<f64> = viewers
        .iter()
        .filter_map(|v| {
            v.stats
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .first_frame
                .map(|d| d.as_secs_f64() * 1000.0)
        })
        .collect();
    failed += viewers.len() - ttff_ms.len();
    ttff_ms.sort_by(|a, b| a.total_cmp(b));
    let delivered: Vec<(u64, u64)> = before
        .iter()
        .zip(&after)
        .map(|(b, a)| (a.0 - b.0, a.1 - b.1))
        .collect();
    let bytes: u64 = before.iter().zip(&after).map(|(b, a)| a.2 - b.2).sum();
    let keyframe_waits = after.iter().map(|a| a.3).sum();
    for v in viewers {
        v.close().await;
    }
    drop(server);
    tokio::time::sleep(Duration::from_secs(1)).await;
    RunResult {
        n,
        idle_cpu,
        cpu,
        idle_rss_mib,
        rss_mib,
        mbit_per_viewer: bytes as f64 * 8.0 / 1e6 / SAMPLE.as_secs_f64() / n.max(1) as f64,
        delivered,
        ttff_ms,
        keyframe_waits,
        failed,
    }
}

impl RunResult {
    fn cpu_per_viewer(&self) -> f64 {
        (self.cpu - self.idle_cpu) / self.n as f64
    }
    fn rss_per_viewer(&self) -> f64 {
        (self.rss_mib - self.idle_rss_mib) / self.n as f64
    }
    /// Lowest and median share of frames delivered per viewer, in percent.
    fn delivery(&self) -> (f64, f64) {
        let mut pct: Vec<f64> = self
            .delivered
            .iter()
            .map(|(got, lost)| 100.0 * *got as f64 / (*got + *lost).max(1) as f64)
            .collect();
        pct.sort_by(|a, b| a.total_cmp(b));
        (
            pct.first().copied().unwrap_or(f64::NAN),
            percentile(&pct, 0.5),
        )
    }
    fn frames_min_median(&self) -> (u64, u64) {
        let mut f: Vec<u64> = self.delivered.iter().map(|d| d.0).collect();
        f.sort();
        (
            f.first().copied().unwrap_or(0),
            f.get(f.len() / 2).copied().unwrap_or(0),
        )
    }
}

fn print_table(target: Target, results: &[RunResult]) {
    println!("## {}\n", target.name());
    println!(
        "| viewers | CPU (% of a core) | CPU per viewer | RSS (MiB) | RSS per viewer | frames per viewer in {} s (min / median; sent {}) | delivered (min / median) | first frame p50 / p95 / max | keyframe waits | Mbit/s per viewer | failed |",
        SAMPLE.as_secs(),
        SAMPLE.as_secs() * u64::from(FPS)
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    for r in results {
        let (fmin, fmed) = r.frames_min_median();
        let (dmin, dmed) = r.delivery();
        println!(
            "| {} | {:.1} (idle {:.1}) | {:.2} | {:.1} (idle {:.1}) | {:.2} | {fmin} / {fmed} | {dmin:.2}% / {dmed:.2}% | {:.0} / {:.0} / {:.0} ms | {} | {:.2} | {} |",
            r.n,
            r.cpu,
            r.idle_cpu,
            r.cpu_per_viewer(),
            r.rss_mib,
            r.idle_rss_mib,
            r.rss_per_viewer(),
            percentile(&r.ttff_ms, 0.5),
            percentile(&r.ttff_ms, 0.95),
            r.ttff_ms.last().copied().unwrap_or(f64::NAN),
            r.keyframe_waits,
            r.mbit_per_viewer,
            r.failed
        );
    }
    println!();
}

fn print_ratios(edgecam: &[RunResult], janus: &[RunResult]) {
    println!("## edgecam / Janus, same RTP input\n");
    println!(
        "| viewers | CPU per viewer edgecam / Janus (% of a core) | ratio | RSS edgecam / Janus (MiB) | ratio | RSS per viewer edgecam / Janus (MiB) |"
    );
    println!("|---|---|---|---|---|---|");
    for (e, j) in edgecam.iter().zip(janus) {
        println!(
            "| {} | {:.2} / {:.2} | {:.2} | {:.1} / {:.1} | {:.2} | {:.2} / {:.2} |",
            e.n,
            e.cpu_per_viewer(),
            j.cpu_per_viewer(),
            e.cpu_per_viewer() / j.cpu_per_viewer(),
            e.rss_mib,
            j.rss_mib,
            e.rss_mib / j.rss_mib,
            e.rss_per_viewer(),
            j.rss_per_viewer()
        );
    }
    println!();
}

/// Viewers kept joined in [`soak`], and how many are replaced each second
/// (`BENCH_SOAK_CHURN` changes the latter, `BENCH_SOAK_ROW_S` the five minutes a row
/// covers: a faster churn tells a cost that grows with joins from one that grows with time).
const SOAK_VIEWERS: usize = 20;
const SOAK_CHURN_PER_S: usize = 2;
const SOAK_ROW: Duration = Duration::from_secs(300);

fn knob(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// CPU ticks of each thread of `pid`, by the thread's name.
fn thread_ticks(pid: u32) -> std::collections::BTreeMap<String, u64> {
    let mut by_name = std::collections::BTreeMap::new();
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return by_name;
    };
    for task in dir.flatten() {
        let stat = std::fs::read_to_string(task.path().join("stat")).unwrap_or_default();
        let (Some(open), Some(close)) = (stat.find('('), stat.rfind(')')) else {
            continue;
        };
        *by_name
            .entry(stat[open + 1..close].to_string())
            .or_insert(0) += stat_ticks(&stat);
    }
    by_name
}

/// One value from the daemon's /metrics (0 when absent).
async fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    use prometheus_parse::Value as V;
    let (_, body) = common::http_get(addr, "/metrics").await;
    let Ok(scrape) = prometheus_parse::Scrape::parse(body.lines().map(|l| Ok(l.to_owned()))) else {
        return 0.0;
    };
    scrape
        .samples
        .iter()
        .find(|s| s.metric == name)
        .map_or(0.0, |s| match s.value {
            V::Counter(v) | V::Gauge(v) | V::Untyped(v) => v,
            _ => 0.0,
        })
}

/// What a soak row compares with the one before it.
struct SoakMark {
    at: Instant,
    ticks: u64,
    control_ticks: u64,
    workers: u64,
    forced_idrs: f64,
    joins: u64,
}

/// An hour (or `minutes`) of viewers joining and leaving: 20 kept joined, two replaced
/// every second, on the product as shipped (test pattern, x264). A second daemon, the
/// same but with no viewers, runs beside it as the control: what it spends is the encode
/// and the clock, so the difference over 20 is what the viewers cost, whatever the
/// encoder or the machine does meanwhile. Every five minutes: that CPU per viewer, the
/// async workers' CPU per viewer (the threads that serve viewers, without the encode),
/// the forced IDRs and joins in those minutes, RSS, open fds, async tasks and what the
/// viewers received; at the end, the first row against the last.
async fn soak(minutes: u64) {
    let churn = knob("BENCH_SOAK_CHURN", SOAK_CHURN_PER_S as u64) as usize;
    let row_every = Duration::from_secs(knob("BENCH_SOAK_ROW_S", SOAK_ROW.as_secs()));
    let p = Proc::start(EDGECAM_PORT, "test", 2);
    let control = Proc::start(EDGECAM_PORT + 1, "test", 2);
    p.wait_ready().await;
    control.wait_ready().await;
    let (addr, bind) = Target::Edgecam.addrs();
    let (pid, control_pid) = (p.pid(), control.pid());
    let fds = || std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count());
    let tasks = || async {
        let (_, body) = common::http_get(addr, "/api/status").await;
        serde_json::from_str::<Value>(&body).unwrap_or_default()["process"]["tasks"]
            .as_u64()
            .unwrap_or(0)
    };
    // The runtime's threads are named by tokio ("tokio-rt-worker"); everything else (GStreamer's
    // streaming threads, x264's) is the encode.
    let workers = || {
        thread_ticks(pid)
            .iter()
            .filter(|(name, _)| name.starts_with("tokio-"))
            .map(|(_, t)| t)
            .sum::<u64>()
    };
    println!(
        "## {SOAK_VIEWERS} viewers joining and leaving for {minutes} minutes, {churn} replaced a second\n"
    );
    println!(
        "| minute | CPU per viewer | async workers per viewer | control daemon | forced IDRs | joins | failed joins | RSS | open fds | async tasks | frames delivered |"
    );
    println!("|---|---|---|---|---|---|---|---|---|---|---|");
    let mut viewers: std::collections::VecDeque<Viewer> = Default::default();
    let (mut joins, mut failed) = (0u64, 0u64);
    let (mut got, mut lost) = (0u64, 0u64);
    let start = Instant::now();
    let end = start + Duration::from_secs(minutes * 60);
    let mark_now = |joins| async move {
        SoakMark {
            at: Instant::now(),
            ticks: sample_pid(pid).0,
            control_ticks: sample_pid(control_pid).0,
            workers: workers(),
            forced_idrs: metric(addr, "edgecam_forced_idrs_total").await,
            joins,
        }
    };
    let mut mark = mark_now(0).await;
    let mut next_row = start + row_every;
    let mut rows = Vec::new();
    while Instant::now() < end {
        let tick = Instant::now();
        // Leave: the oldest go (their frames counted first); join: as many new ones.
        let leaving = if viewers.len() >= SOAK_VIEWERS {
            churn
        } else {
            0
        };
        for _ in 0..leaving {
            if let Some(v) = viewers.pop_front() {
                let (f, l, ..) = v.snapshot();
                got += f;
                lost += l;
                v.close().await;
            }
        }
        let want = SOAK_VIEWERS - viewers.len();
        let joined =
            futures_util::future::join_all((0..want).map(|_| join_edgecam(addr, bind))).await;
        for r in joined {
            joins += 1;
            match r {
                Ok(v) => viewers.push_back(v),
                Err(_) => failed += 1,
            }
        }
        let last_step = tick + Duration::from_secs(1) >= end;
        if Instant::now() >= next_row || last_step {
            let now = mark_now(joins).await;
            let secs = (now.at - mark.at).as_secs_f64();
            let pct = |ticks: u64| ticks as f64 / ticks_per_s() / secs * 100.0;
            let cpu = pct(now.ticks - mark.ticks);
            let control_cpu = pct(now.control_ticks - mark.control_ticks);
            let live: (u64, u64) = viewers.iter().fold((0, 0), |a, v| {
                let (f, l, ..) = v.snapshot();
                (a.0 + f, a.1 + l)
            });
            let (all_got, all_lost) = (got + live.0, lost + live.1);
            let row = (
                (start.elapsed().as_secs() + 30) / 60,
                (cpu - control_cpu) / SOAK_VIEWERS as f64,
                sample_pid(pid).1 as f64 / 1024.0,
                fds(),
                tasks().await,
                pct(now.workers - mark.workers) / SOAK_VIEWERS as f64,
            );
            println!(
                "| {} | {:.2} % | {:.2} % | {:.1} % | {:.0} | {} | {failed} | {:.1} MiB | {} | {} | {:.2} % |",
                row.0,
                row.1,
                row.5,
                control_cpu,
                now.forced_idrs - mark.forced_idrs,
                now.joins - mark.joins,
                row.2,
                row.3,
                row.4,
                100.0 * all_got as f64 / (all_got + all_lost).max(1) as f64
            );
            rows.push(row);
            mark = now;
            next_row += row_every;
        }
        // One step a second.
        tokio::time::sleep(Duration::from_secs(1).saturating_sub(tick.elapsed())).await;
    }
    for v in viewers {
        v.close().await;
    }
    if let (Some(first), Some(last)) = (rows.first(), rows.last()) {
        println!(
            "\nFrom minute {} to {}: CPU per viewer {:.2} → {:.2} % (async workers {:.2} → {:.2} %), \
             RSS {:.1} → {:.1} MiB, fds {} → {}, tasks {} → {}\n",
            first.0,
            last.0,
            first.1,
            last.1,
            first.5,
            last.5,
            first.2,
            last.2,
            first.3,
            last.3,
            first.4,
            last.4
        );
    }
    let threads = thread_ticks(pid);
    let mut threads: Vec<_> = threads.into_iter().collect();
    threads.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
    let total = start.elapsed().as_secs_f64();
    let shown: Vec<String> = threads
        .iter()
        .take(8)
        .map(|(name, t)| format!("{name} {:.1} %", *t as f64 / ticks_per_s() / total * 100.0))
        .collect();
    println!(
        "The daemon's threads over the whole run: {}\n",
        shown.join(", ")
    );
}

fn main() {
    let args: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let mut counts: Vec<usize> = args.iter().filter_map(|a| a.parse().ok()).collect();
    if counts.is_empty() {
        counts = vec![1, 10, 50, 100];
    }
    let named = |t: &str| args.iter().any(|a| a == t);
    let all = !named("edgecam") && !named("janus") && !named("own") && !named("soak");
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        if named("soak") {
            // `soak [minutes]`: one hour unless told.
            let minutes = args.iter().find_map(|a| a.parse::<u64>().ok());
            soak(minutes.unwrap_or(60)).await;
            return;
        }
        if all || named("own") {
            let mut results = Vec::new();
            for &n in &counts {
                results.push(run(Target::Edgecam, n).await);
            }
            print_table(Target::Edgecam, &results);
        }
        if all || named("edgecam") || named("janus") {
            let _feeder = Feeder(start_feeder());
            let mut side = Vec::new();
            for target in [Target::EdgecamRtp, Target::Janus] {
                if !all
                    && !named(if target == Target::Janus {
                        "janus"
                    } else {
                        "edgecam"
                    })
                {
                    continue;
                }
                let mut results = Vec::new();
                for &n in &counts {
                    results.push(run(target, n).await);
                }
                print_table(target, &results);
                side.push(results);
            }
            if side.len() == 2 {
                print_ratios(&side[0], &side[1]);
            }
        }
    });
}
