//! One WebRTC session per viewer (webrtc crate): answers the browser's offer, trickles
//! candidates out as events, feeds its own track from the hub, turns PLI/FIR into
//! keyframe requests, and pushes status over a data channel when the offer has one.

/// The plumbing the crate's own interceptors share: each keeps what passes it in `read`
/// and `write` queues, and none keeps per-stream state.
macro_rules! interceptor_plumbing {
    ($t:ty) => {
        impl rtc::interceptor::Interceptor for $t {
            fn bind_local_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
            fn unbind_local_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
            fn bind_remote_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
            fn unbind_remote_stream(&mut self, _info: &rtc::interceptor::StreamInfo) {}
        }
    };
}

/// The rest of an interceptor's `Protocol`: packets in and out, no events, and what was
/// handled polled in order; `pass_writes` also lets writes through untouched.
macro_rules! interceptor_protocol {
    () => {
        type Rout = rtc::interceptor::TaggedPacket;
        type Wout = rtc::interceptor::TaggedPacket;
        type Eout = ();
        type Error = rtc::shared::error::Error;
        type Time = std::time::Instant;

        fn poll_read(&mut self) -> Option<rtc::interceptor::TaggedPacket> {
            self.read.pop_front()
        }

        fn poll_write(&mut self) -> Option<rtc::interceptor::TaggedPacket> {
            self.write.pop_front()
        }
    };
    (pass_writes) => {
        interceptor_protocol!();

        fn handle_write(
            &mut self,
            msg: rtc::interceptor::TaggedPacket,
        ) -> Result<(), rtc::shared::error::Error> {
            self.write.push_back(msg);
            Ok(())
        }
    };
}

pub mod channel;
pub mod keyframe_rtcp;
pub mod ladder;
pub mod link_stats;
pub mod links;
pub mod nack_budget;
pub mod presenter;
pub mod rtp;
pub mod sdp;
mod viewer;

pub use links::ViewerKind;
pub use presenter::{PresenterPeer, offer_sends_audio};
pub use viewer::ViewerPeer;

use crate::config::{PortRange, WebRtcConfig};
use crate::fanout::Hub;
use channel::{ChannelFeed, MAX_TEXT_BYTES};
use keyframe_rtcp::KeyframeRequestForwarder;
use links::Links;
use rtc::ice::mdns::MulticastDnsMode;
use rtc::interceptor::{
    NackGeneratorBuilder, NackResponderBuilder, Registry, SenderReportBuilder, Slot,
};
use rtc::media_stream::MediaStreamTrack;
use rtc::peer_connection::configuration::interceptor_registry::{
    configure_rtcp_reports, configure_simulcast_extension_headers, configure_twcc_receiver_only,
};
use rtc::peer_connection::configuration::media_engine::{
    MIME_TYPE_H264, MIME_TYPE_OPUS, MIME_TYPE_VP8, MediaEngine,
};
use rtc::peer_connection::transport::RTCDtlsRole;
use rtc::rtp_transceiver::rtp_sender::{
    RTCPFeedback, RTCRtpCodec, RTCRtpCodecParameters, RTCRtpCodingParameters,
    RTCRtpEncodingParameters, RtpCodecKind,
};
use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use tokio::sync::{broadcast, mpsc, watch};
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_local::static_rtp::TrackLocalStaticRTP;
use webrtc::media_stream::track_local::{TrackLocal, TrackLocalEvent};
use webrtc::media_stream::track_remote::TrackRemote;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionBuilder, PeerConnectionEventHandler, RTCConfigurationBuilder,
    RTCIceCandidateInit, RTCIceGatheringState, RTCIceServer, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription, SettingEngineBuilder,
};

/// The H.264 format we send: Constrained Baseline 3.1, packetization-mode 1, which every
/// browser decodes (Safari shows black on a profile mismatch, Firefox refuses mode 0).
pub const H264_FMTP: &str =
    "level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42e01f";

/// The video codec every peer uses (payload type 102).
pub fn h264_codec() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_H264.to_owned(),
            clock_rate: 90_000,
            channels: 0,
            sdp_fmtp_line: H264_FMTP.to_owned(),
            rtcp_feedback: vec![
                RTCPFeedback {
                    typ: "nack".into(),
                    parameter: String::new(),
                },
                RTCPFeedback {
                    typ: "nack".into(),
                    parameter: "pli".into(),
                },
                RTCPFeedback {
                    typ: "ccm".into(),
                    parameter: "fir".into(),
                },
            ],
        },
        payload_type: 102,
    }
}

/// VP8, the camera's second stream for browsers without H.264 (payload type 96).
pub fn vp8_codec() -> RTCRtpCodecParameters {
    let mut codec = h264_codec();
    codec.rtp_codec.mime_type = MIME_TYPE_VP8.to_owned();
    codec.rtp_codec.sdp_fmtp_line = String::new();
    codec.payload_type = 96;
    codec
}

/// Which of the camera's streams a viewer gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VideoStream {
    H264,
    /// The second encode, for a browser whose WebRTC has no H.264.
    Vp8,
}

/// Opus, relayed from a browser presenter (payload type 111).
pub fn opus_codec() -> RTCRtpCodecParameters {
    RTCRtpCodecParameters {
        rtp_codec: RTCRtpCodec {
            mime_type: MIME_TYPE_OPUS.to_owned(),
            clock_rate: 48_000,
            channels: 2,
            sdp_fmtp_line: "minptime=10;useinbandfec=1".to_owned(),
            rtcp_feedback: vec![],
        },
        payload_type: 111,
    }
}

/// Why a peer could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum PeerError {
    #[error("the offer is not a valid SDP offer: {0}")]
    BadOffer(String),
    #[error(
        "the offer has no video the camera can send (it must accept H.264 with packetization-mode=1)"
    )]
    NoVideo,
    /// The offer's video has no codec the camera sends (a Firefox without its OpenH264
    /// plugin offers VP8, VP9 and AV1 only): said in words a viewer can act on.
    #[error(
        "this browser's WebRTC cannot play H.264, the only video the camera sends (it offers {}). \
         In Firefox, enable the OpenH264 plugin (Add-ons and themes → Plugins; it is downloaded \
         from the internet once), or watch in Chromium, Chrome, Edge or Safari",
        list_or_none(.offered)
    )]
    NoCommonCodec { offered: Vec<String> },
    /// The same for a presenter, whose video the camera relays as H.264 or VP8.
    #[error(
        "this browser can send only {} video; the camera relays H.264 or VP8. Present from \
         Firefox, Chromium, Chrome, Edge or Safari",
        list_or_none(.offered)
    )]
    PresenterCodec { offered: Vec<String> },
    /// The webrtc crate could not answer an offer that passed our checks; its own text
    /// goes to the log, not to the client.
    #[error("the offer cannot be answered: it has no media the camera can use")]
    Unanswerable(String),
    #[error("no free UDP port for media: {0}")]
    NoPort(String),
    #[error("WebRTC: {0}")]
    WebRtc(String),
    #[error("bad ICE candidate: {0}")]
    BadCandidate(String),
}

/// "VP8, VP9 and AV1", or "no video codec".
fn list_or_none(names: &[String]) -> String {
    match names {
        [] => "no video codec".into(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// The offer's video codecs, checked before the webrtc crate sees it: the stream to send
/// or receive, or a refusal in words (`presenter`: for the presenter's message). H.264
/// when the offer takes it, else VP8 when there is VP8 (`vp8`: the camera has a VP8
/// stream to send, or, for a presenter, always); `prefer_vp8`: VP8 first (the presenter's
/// own video is VP8, so H.264 would be a re-encode).
fn check_video_codecs(
    offer_sdp: &str,
    presenter: bool,
    vp8: bool,
    prefer_vp8: bool,
) -> Result<VideoStream, PeerError> {
    let codecs = sdp::video_codecs(offer_sdp);
    let has_vp8 = vp8 && codecs.iter().any(|c| c.name == "VP8");
    if has_vp8 && prefer_vp8 {
        return Ok(VideoStream::Vp8);
    }
    if codecs.is_empty() || codecs.iter().any(|c| c.is_h264_mode1()) {
        // No video at all is the answer check's to report (NoVideo).
        return Ok(VideoStream::H264);
    }
    if has_vp8 {
        return Ok(VideoStream::Vp8);
    }
    let mut offered: Vec<String> = Vec::new();
    for c in codecs {
        if !offered.contains(&c.name) && !matches!(c.name.as_str(), "RTX" | "RED" | "ULPFEC") {
            offered.push(c.name);
        }
    }
    Err(if presenter {
        PeerError::PresenterCodec { offered }
    } else {
        PeerError::NoCommonCodec { offered }
    })
}

fn webrtc_err(e: impl std::fmt::Display) -> PeerError {
    PeerError::WebRtc(brief(e))
}

/// An error's text cut to 200 characters: parsers quote the offending input, which
/// may be 64 KiB of a client's making, and the text goes back to it and into the log.
fn brief(e: impl std::fmt::Display) -> String {
    e.to_string().chars().take(200).collect()
}

/// Things a peer tells its signaling session.
#[derive(Debug, Clone, PartialEq)]
pub enum PeerEvent {
    /// A local ICE candidate to trickle to the browser.
    Candidate(RTCIceCandidateInit),
    /// Media is flowing.
    Connected,
    /// ICE/DTLS failed or the peer closed; the session should release it.
    Gone,
    /// Every local candidate has been announced (WHEP puts them all in its answer).
    GatheringComplete,
}

/// Media network settings shared by every peer.
pub struct PeerFactory {
    config: WebRtcConfig,
    /// Every viewer peer's link, for the status page.
    links: Arc<Links>,
    /// What the data channels carry.
    channel: Arc<ChannelFeed>,
    /// Next port to try within `udp_ports`, so ports are spread rather than retried.
    port_cursor: AtomicUsize,
    /// Where H.264 viewers on weak links are moved (`webrtc.substream_for_weak_links`).
    substream: Option<Arc<Hub>>,
}

impl PeerFactory {
    /// `substream`: the sub-stream's hub, given when weak links are moved to it.
    pub fn new(config: WebRtcConfig, substream: Option<Arc<Hub>>) -> Arc<Self> {
        Arc::new(Self {
            config,
            links: Arc::default(),
            channel: Arc::default(),
            port_cursor: AtomicUsize::new(0),
            substream,
        })
    }

    pub fn links(&self) -> &Arc<Links> {
        &self.links
    }

    pub fn channel(&self) -> &Arc<ChannelFeed> {
        &self.channel
    }

    /// Addresses to bind for one peer, for each port to try in turn.
    fn bind_candidates(&self) -> Vec<Vec<SocketAddr>> {
        let ips: Vec<IpAddr> = if self.config.bind_ips.is_empty() {
            vec![IpAddr::from([0, 0, 0, 0])]
        } else {
            self.config.bind_ips.clone()
        };
        let ports: Vec<u16> = match self.config.udp_ports {
            None => vec![0],
            Some(PortRange { first, last }) => {
                let len = usize::from(last - first) + 1;
                let start = self.port_cursor.fetch_add(1, Ordering::Relaxed) % len;
                (0..len)
                    .map(|i| first + ((start + i) % len) as u16)
                    .collect()
            }
        };
        ports
            .into_iter()
            .map(|port| ips.iter().map(|ip| SocketAddr::new(*ip, port)).collect())
            .collect()
    }

    /// True when every media socket is bound to a loopback address.
    fn loopback_only(&self) -> bool {
        !self.config.bind_ips.is_empty() && self.config.bind_ips.iter().all(|ip| ip.is_loopback())
    }

    /// How long a peer may take to connect (`webrtc.connect_timeout_s`).
    pub fn connect_timeout(&self) -> Duration {
        self.config.connect_timeout
    }

    /// The configured STUN/TURN URLs with their credentials (for WHEP's `Link` headers).
    pub fn ice_server_urls(&self) -> Vec<(String, Option<(String, String)>)> {
        self.ice_servers()
            .into_iter()
            .flat_map(|s| {
                let cred =
                    (!s.username.is_empty()).then(|| (s.username.clone(), s.credential.clone()));
                s.urls.into_iter().map(move |u| (u, cred.clone()))
            })
            .collect()
    }

    fn ice_servers(&self) -> Vec<RTCIceServer> {
        self.config
            .ice_servers
            .iter()
            .map(|url| ice_server(url))
            .collect()
    }
}

/// Parses `turn:USER:PASS@host:port` into a server with credentials; other URLs as-is.
pub fn ice_server(url: &str) -> RTCIceServer {
    if let Some((scheme, rest)) = url.split_once(':')
        && (scheme == "turn" || scheme == "turns")
        && let Some((cred, host)) = rest.rsplit_once('@')
        && let Some((user, pass)) = cred.split_once(':')
    {
        return RTCIceServer {
            urls: vec![format!("{scheme}:{host}")],
            username: user.into(),
            credential: pass.into(),
        };
    }
    RTCIceServer {
        urls: vec![url.into()],
        ..Default::default()
    }
}

fn random_u32() -> u32 {
    // RandomState is seeded from the OS; good enough for SSRCs and sequence starts.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(std::process::id().into());
    h.finish() as u32
}

/// Which side of the relay a peer is on; decides what its data channel does.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    Viewer,
    Presenter,
}

/// Events from the webrtc driver, forwarded to the session and to our own tasks.
struct Handler {
    events: mpsc::UnboundedSender<PeerEvent>,
    connected: watch::Sender<bool>,
    channel: Arc<ChannelFeed>,
    /// `webrtc.nat_ips`: host candidates are advertised with these addresses instead.
    nat_ips: Vec<IpAddr>,
    role: Role,
    /// Remote tracks (a presenter's media) go here.
    tracks: Option<mpsc::UnboundedSender<Arc<dyn TrackRemote>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(init) = event.candidate.to_json() {
            for candidate in advertised(&init.candidate, &self.nat_ips) {
                let _ = self.events.send(PeerEvent::Candidate(RTCIceCandidateInit {
                    candidate,
                    ..init.clone()
                }));
            }
        }
    }

    async fn on_ice_gathering_state_change(&self, state: RTCIceGatheringState) {
        if state == RTCIceGatheringState::Complete {
            let _ = self.events.send(PeerEvent::GatheringComplete);
        }
    }

    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        match state {
            RTCPeerConnectionState::Connected => {
                let _ = self.connected.send(true);
                let _ = self.events.send(PeerEvent::Connected);
            }
            RTCPeerConnectionState::Failed | RTCPeerConnectionState::Closed => {
                let _ = self.events.send(PeerEvent::Gone);
            }
            _ => {}
        }
    }

    async fn on_data_channel(&self, dc: Arc<dyn DataChannel>) {
        tokio::spawn(serve_channel(dc, self.channel.clone(), self.role));
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        if let Some(tx) = &self.tracks {
            let _ = tx.send(track);
        }
    }
}

/// Serves one data channel until it closes. Everyone gets the status on open and on
/// every change. Viewers also get the presenter's texts; a presenter's texts go to every
/// viewer. A viewer's own messages are ignored: they never reach anyone else.
async fn serve_channel(dc: Arc<dyn DataChannel>, feed: Arc<ChannelFeed>, role: Role) {
    let mut state = feed.watch_status();
    let mut texts = feed.subscribe_texts();
    let mut open = false;
    loop {
        tokio::select! {
            evt = dc.poll() => match evt {
                Some(DataChannelEvent::OnOpen) => {
                    open = true;
                    let text = state.borrow_and_update().clone();
                    if dc.send_text(&text).await.is_err() { return; }
                }
                Some(DataChannelEvent::OnMessage(m)) if role == Role::Presenter && m.is_string => {
                    if m.data.len() <= MAX_TEXT_BYTES {
                        feed.broadcast_text(&String::from_utf8_lossy(&m.data));
                    }
                }
                Some(DataChannelEvent::OnClose) | None => return,
                Some(_) => {}
            },
            changed = state.changed() => {
                if changed.is_err() { return; }
                if open {
                    let text = state.borrow_and_update().clone();
                    if dc.send_text(&text).await.is_err() { return; }
                }
            }
            text = texts.recv(), if role == Role::Viewer => match text {
                Ok(text) if open => {
                    if dc.send_text(&text).await.is_err() { return; }
                }
                Ok(_) | Err(broadcast::error::RecvError::Lagged(_)) => {}
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }
}

/// Applies the offer and makes the answer; closes the connection on failure.
async fn negotiate(
    pc: &Arc<dyn PeerConnection>,
    offer: RTCSessionDescription,
) -> Result<RTCSessionDescription, PeerError> {
    let result = async {
        pc.set_remote_description(offer)
            .await
            .map_err(|e| PeerError::BadOffer(brief(e)))?;
        // A parsed offer that cannot be answered (no media we know) is the offer's fault.
        let answer = pc.create_answer(None).await.map_err(|e| {
            tracing::debug!("the webrtc crate cannot answer an offer: {e}");
            PeerError::Unanswerable(brief(e))
        })?;
        pc.set_local_description(answer.clone())
            .await
            .map_err(webrtc_err)?;
        Ok::<_, PeerError>(answer)
    }
    .await;
    if result.is_err() {
        let _ = pc.close().await;
    }
    result
}

/// Adds a browser's candidate unless it is the end marker or cannot be reached.
async fn add_remote_candidate(
    pc: &Arc<dyn PeerConnection>,
    loopback_only: bool,
    candidate: RTCIceCandidateInit,
) -> Result<(), PeerError> {
    if candidate.candidate.is_empty() || !candidate_usable(&candidate.candidate, loopback_only) {
        return Ok(());
    }
    pc.add_ice_candidate(candidate)
        .await
        .map_err(|e| PeerError::BadCandidate(brief(e)))
}

/// How a local candidate is advertised. With `webrtc.nat_ips` (the camera reached through
/// a port forward or a 1:1 NAT), a host candidate is announced once per NAT address, with
/// the same port, instead of with its local address; the browser's checks then arrive on
/// the local socket and are answered as usual. (The webrtc crate has a setting for this
/// but does not apply it.)
pub fn advertised(candidate: &str, nat_ips: &[IpAddr]) -> Vec<String> {
    let is_host = rtc::ice::candidate::unmarshal_candidate(candidate_body(candidate))
        .is_ok_and(|c| c.candidate_type() == rtc::ice::candidate::CandidateType::Host);
    if nat_ips.is_empty() || !is_host {
        return vec![candidate.to_string()];
    }
    // The address is the fifth field of the grammar (RFC 8839): only it changes.
    let fields: Vec<&str> = candidate.split(' ').collect();
    nat_ips
        .iter()
        .map(|ip| {
            let mut f = fields.clone();
            let ip = ip.to_string();
            f[4] = &ip;
            f.join(" ")
        })
        .collect()
}

/// A candidate line without its `a=` and `candidate:` prefixes, as browsers send either.
fn candidate_body(line: &str) -> &str {
    line.trim()
        .trim_start_matches("a=")
        .trim_start_matches("candidate:")
}

/// Whether a remote candidate is worth pairing. mDNS (`.local`) names are skipped: the
/// browser's own checks reach us and are learned as peer-reflexive, and resolving them
/// would mean multicast queries. With loopback-only sockets, only loopback addresses pair.
pub fn candidate_usable(candidate: &str, loopback_only: bool) -> bool {
    let Ok(c) = rtc::ice::candidate::unmarshal_candidate(candidate_body(candidate)) else {
        return false;
    };
    if c.address().ends_with(".local") {
        return false;
    }
    match c.address().parse::<IpAddr>() {
        Ok(ip) => !loopback_only || ip.is_loopback(),
        Err(_) => false,
    }
}

/// Checks that a remote candidate line is an ICE candidate at all (the grammar of RFC
/// 8839, as the rtc crate parses it). Empty means end of candidates; an mDNS `.local`
/// host is valid (it is merely not used). Anything else that does not parse is refused
/// with a reason, whether it arrives before the offer or after.
pub fn check_candidate(line: &str) -> Result<(), PeerError> {
    let body = candidate_body(line);
    if body.is_empty() {
        return Ok(());
    }
    rtc::ice::candidate::unmarshal_candidate(body)
        .map(|_| ())
        .map_err(|e| PeerError::BadCandidate(brief(e)))
}

/// The offer parsed as the webrtc crate will use it (public for the fuzz target).
pub fn parse_offer(sdp: &str) -> Result<RTCSessionDescription, PeerError> {
    if !sdp.trim_start().starts_with("v=0") {
        return Err(PeerError::BadOffer("it does not start with v=0".into()));
    }
    RTCSessionDescription::offer(sdp.to_owned()).map_err(|e| PeerError::BadOffer(brief(e)))
}

/// Whether some active `m=<kind>` section of `sdp` carries media in our direction: not
/// rejected (port 0) and not marked with any of the `blocked` direction attributes
/// (e.g. `inactive`). Read with the rtc crate's SDP parser; an SDP it cannot parse
/// carries nothing.
pub fn section_flows(sdp: &str, kind: &str, blocked: &[&str]) -> bool {
    sdp::parse(sdp).is_some_and(|session| {
        session.media_descriptions.iter().any(|m| {
            m.media_name.media == kind
                && m.media_name.port.value != 0
                && !blocked.iter().any(|b| m.has_attribute(b))
        })
    })
}

/// Whether the answer actually sends video (a rejected m-line has port 0 or inactive).
fn answer_sends_video(sdp: &str) -> bool {
    section_flows(sdp, "video", &["inactive", "recvonly"])
}

/// One peer connection and the tasks that serve it; what viewers and presenters share.
struct Connection {
    pc: Arc<dyn PeerConnection>,
    /// Media sockets are bound to loopback only, so only loopback candidates can pair.
    loopback_only: bool,
    tasks: Vec<crate::task::AbortOnDrop>,
    /// Remote candidates offered so far: a flood is refused, not stored.
    candidates: AtomicUsize,
}

/// Remote ICE candidates one peer may add (a browser sends a handful).
pub const MAX_REMOTE_CANDIDATES: usize = 64;

impl Connection {
    fn new(
        pc: Arc<dyn PeerConnection>,
        loopback_only: bool,
        tasks: Vec<crate::task::AbortOnDrop>,
    ) -> Self {
        Self {
            pc,
            loopback_only,
            tasks,
            candidates: AtomicUsize::new(0),
        }
    }

    async fn add_candidate(&self, candidate: RTCIceCandidateInit) -> Result<(), PeerError> {
        if self.candidates.fetch_add(1, Ordering::Relaxed) >= MAX_REMOTE_CANDIDATES {
            return Err(PeerError::BadCandidate(format!(
                "too many ICE candidates for one peer (limit {MAX_REMOTE_CANDIDATES})"
            )));
        }
        add_remote_candidate(&self.pc, self.loopback_only, candidate).await
    }

    async fn close(&mut self) {
        self.tasks.clear();
        let _ = self.pc.close().await;
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        // (The tasks end with their guards.)
        let pc = self.pc.clone();
        // Closing is async; if dropped without close(), finish it in the background.
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = pc.close().await;
            });
        }
    }
}

/// Packets each viewer keeps for retransmission on NACK. The webrtc crate's default is
/// 1024 (about 1.2 MB per viewer at 2 Mbps, most of a viewer's memory); 256 is still over a
/// second of history at 2 Mbps, where a NACK on a LAN comes back within milliseconds.
const NACK_HISTORY: u16 = 256;

/// The interceptor chain, by what the peer does with media. Every interceptor is a hop
/// that each packet is moved through (callgrind: about 180 instructions a hop), so each
/// side has only what it uses.
///
/// A viewer only sends media and only receives RTCP: the NACK responder (with a smaller
/// retransmission buffer, bounded by [`nack_budget`]), sender reports, its link's
/// observer and the keyframe-request forwarder.
///
/// A presenter only receives media and sends none: the webrtc crate's default receive
/// side (NACK generator, receiver reports, TWCC feedback).
fn interceptors(
    media: &mut MediaEngine,
    link: Option<&Arc<link_stats::LinkStats>>,
) -> Result<Registry, PeerError> {
    for parameter in ["", "pli"] {
        media.register_feedback(
            RTCPFeedback {
                typ: "nack".into(),
                parameter: parameter.into(),
            },
            RtpCodecKind::Video,
        );
    }
    configure_simulcast_extension_headers(media).map_err(webrtc_err)?;
    Ok(match link {
        Some(stats) => Registry::new()
            .with(
                Slot::NackResponder,
                NackResponderBuilder::new().with_size(NACK_HISTORY).build(),
            )
            .with(Slot::SenderReport, SenderReportBuilder::new().build())
            // Wire-ward of the NACK responder (4_000), so what it resends is bounded.
            .with(Slot::from(3_000), nack_budget::NackBudget::default())
            // At the wire end, so it sees the SRs the report interceptor sends and every report.
            .with(
                Slot::from(500),
                link_stats::LinkObserver::new(stats.clone()),
            )
            // Last in the chain, so the other interceptors have read the RTCP first.
            .with(Slot::from(14_000), KeyframeRequestForwarder::default()),
        None => {
            let registry =
                Registry::new().with(Slot::NackGenerator, NackGeneratorBuilder::new().build());
            let registry = configure_twcc_receiver_only(registry, media).map_err(webrtc_err)?;
            configure_rtcp_reports(registry)
        }
    })
}

/// A viewer's peer has its link's statistics; a presenter's has none.
async fn build_pc(
    factory: &PeerFactory,
    codecs: &[(RTCRtpCodecParameters, RtpCodecKind)],
    handler: Arc<Handler>,
    link: Option<Arc<link_stats::LinkStats>>,
) -> Result<Arc<dyn PeerConnection>, PeerError> {
    let mut last_err = String::from("no addresses");
    for addrs in factory.bind_candidates() {
        let mut media = MediaEngine::default();
        for (codec, kind) in codecs {
            media
                .register_codec(codec.clone(), *kind)
                .map_err(webrtc_err)?;
        }
        let registry = interceptors(&mut media, link.as_ref())?;
        let loopback = addrs.iter().any(|a| a.ip().is_loopback());
        // ICE checks every 25 ms rather than 200 ms: on a LAN the round trip is ~1 ms, and
        // the default interval alone added ~200 ms to the time to first picture.
        // (`webrtc.nat_ips` is applied to our candidates as they are announced, see
        // `advertised`: the setting engine's 1:1 NAT option is not used by the crate.)
        let settings = SettingEngineBuilder::new()
            .with_include_loopback_candidate(loopback)
            .with_multicast_dns_mode(MulticastDnsMode::Disabled)
            // As DTLS server we let the browser send ClientHello as soon as its own ICE
            // check succeeds, instead of waiting for our side to see the nomination.
            .with_answering_dtls_role(RTCDtlsRole::Server)
            .with_ice_connection_attempts(Some(ICE_CHECK_INTERVAL), Some(ICE_MAX_CHECKS));
        let config = RTCConfigurationBuilder::new()
            .with_ice_servers(factory.ice_servers())
            .build();
        let built = PeerConnectionBuilder::new()
            .with_configuration(config)
            .with_media_engine(media)
            .with_setting_engine(settings.build())
            .with_interceptor_registry(registry)
            .with_handler(handler.clone() as Arc<dyn PeerConnectionEventHandler>)
            .with_udp_addrs(addrs.clone())
            .build()
            .await;
        match built {
            Ok(pc) => return Ok(Arc::new(pc)),
            Err(e) => last_err = format!("{addrs:?}: {e}"),
        }
    }
    Err(PeerError::NoPort(last_err))
}

/// Interval between ICE connectivity checks while connecting.
const ICE_CHECK_INTERVAL: Duration = Duration::from_millis(25);
/// Checks per candidate pair: 25 ms x 80 = 2 s before a pair is given up.
const ICE_MAX_CHECKS: u16 = 80;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_lines_that_are_not_candidates_are_refused() {
        for good in [
            "candidate:1 1 udp 2122260223 192.168.1.20 54321 typ host generation 0",
            "candidate:2 1 udp 1686052607 203.0.113.7 40000 typ srflx raddr 192.168.1.20 rport 54321",
            "candidate:3 1 tcp 1518280447 192.168.1.20 9 typ host tcptype active",
            "candidate:4 1 udp 2122260223 0f1e2d3c-aaaa-bbbb-cccc-001122334455.local 5000 typ host",
            "a=candidate:1 1 udp 1 ::1 9 typ host",
            "",
        ] {
            assert!(check_candidate(good).is_ok(), "{good}");
        }
        for bad in [
            "garbage",
            "candidate:1 1 udp 1 not-an-address 9 typ host",
            "candidate:1 1 udp 1 999.1.1.1 9 typ host",
            "candidate:1 1 udp x 1.2.3.4 9 typ host",
            "candidate:1 1 udp 1 1.2.3.4 99999 typ host",
            "candidate:1 1 udp 1 1.2.3.4 9 typ",
        ] {
            let e = check_candidate(bad).unwrap_err().to_string();
            assert!(e.starts_with("bad ICE candidate"), "{bad}: {e}");
        }
    }

    fn factory(udp_ports: Option<PortRange>, bind_ips: Vec<IpAddr>) -> Arc<PeerFactory> {
        PeerFactory::new(
            WebRtcConfig {
                ice_servers: vec![],
                udp_ports,
                nat_ips: vec![],
                bind_ips,
                connect_timeout: Duration::from_secs(30),
                substream_for_weak_links: true,
            },
            None,
        )
    }

    #[test]
    fn host_candidates_are_advertised_at_the_nat_addresses() {
        let host = "candidate:1 1 udp 2130706431 10.0.2.15 41100 typ host";
        assert_eq!(advertised(host, &[]), vec![host.to_string()]);
        let nat: Vec<IpAddr> = vec!["127.0.0.1".parse().unwrap(), "203.0.113.7".parse().unwrap()];
        assert_eq!(
            advertised(host, &nat),
            vec![
                "candidate:1 1 udp 2130706431 127.0.0.1 41100 typ host".to_string(),
                "candidate:1 1 udp 2130706431 203.0.113.7 41100 typ host".to_string(),
            ]
        );
        let srflx =
            "candidate:2 1 udp 1694498815 198.51.100.2 5000 typ srflx raddr 10.0.2.15 rport 41100";
        assert_eq!(advertised(srflx, &nat), vec![srflx.to_string()]);
        assert_eq!(advertised("garbage", &nat), vec!["garbage".to_string()]);
    }

    #[test]
    fn port_range_is_walked_from_a_rotating_start() {
        let f = factory(
            Some(PortRange {
                first: 40000,
                last: 40002,
            }),
            vec!["127.0.0.1".parse().unwrap()],
        );
        let a: Vec<u16> = f.bind_candidates().iter().map(|v| v[0].port()).collect();
        let b: Vec<u16> = f.bind_candidates().iter().map(|v| v[0].port()).collect();
        assert_eq!(a, vec![40000, 40001, 40002]);
        assert_eq!(b, vec![40001, 40002, 40000]);
    }

    #[test]
    fn default_binds_every_interface_on_an_ephemeral_port() {
        let f = factory(None, vec![]);
        assert_eq!(
            f.bind_candidates(),
            vec![vec!["0.0.0.0:0".parse::<SocketAddr>().unwrap()]]
        );
    }

    #[test]
    fn turn_credentials_are_split_out() {
        let s = ice_server("turn:alice:secret@turn.example.org:3478");
        assert_eq!(s.urls, vec!["turn:turn.example.org:3478"]);
        assert_eq!(
            (s.username.as_str(), s.credential.as_str()),
            ("alice", "secret")
        );
        let s = ice_server("stun:stun.example.org:3478");
        assert_eq!(s.urls, vec!["stun:stun.example.org:3478"]);
        assert!(s.username.is_empty());
    }

    #[test]
    fn candidates_are_filtered_by_reach() {
        let host = "candidate:1 1 udp 2122260223 192.0.2.7 50000 typ host generation 0";
        let lo = "candidate:2 1 udp 2122260223 127.0.0.1 50001 typ host";
        let mdns = "candidate:3 1 udp 2122260223 3f1c-aa.local 50002 typ host";
        assert!(candidate_usable(host, false));
        assert!(!candidate_usable(host, true));
        assert!(candidate_usable(lo, true));
        assert!(candidate_usable(&format!("a={lo}"), true));
        assert!(!candidate_usable(mdns, false));
        assert!(!candidate_usable("garbage", false));
        assert!(!candidate_usable(
            "candidate:1 1 udp 1 not-an-ip 5 typ host",
            false
        ));
        assert!(candidate_usable("candidate:1 1 udp 1 ::1 5 typ host", true));
    }

    #[test]
    fn an_offer_without_h264_is_refused_in_words() {
        let sdp = |media: &str| format!("{}{media}", sdp::tests::HEAD);
        let firefox = sdp(
            "m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 99\r\na=rtpmap:120 VP8/90000\r\na=rtpmap:124 rtx/90000\r\na=rtpmap:121 VP9/90000\r\na=rtpmap:99 AV1/90000\r\n",
        );
        let e = check_video_codecs(&firefox, false, false, false).unwrap_err();
        let text = e.to_string();
        assert!(
            text.contains("cannot play H.264") && text.contains("offers VP8, VP9 and AV1"),
            "{text}"
        );
        assert!(text.contains("OpenH264"), "what to do: {text}");
        let av1_only = sdp("m=video 9 UDP/TLS/RTP/SAVPF 99\r\na=rtpmap:99 AV1/90000\r\n");
        let e = check_video_codecs(&av1_only, true, true, false)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("send only AV1") && e.contains("H.264 or VP8"),
            "{e}"
        );
        // A Firefox presenter's VP8 is taken.
        assert_eq!(
            check_video_codecs(&firefox, true, true, false).ok(),
            Some(VideoStream::Vp8)
        );
        let h264 = sdp(
            "m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 packetization-mode=1;profile-level-id=42e01f\r\n",
        );
        assert_eq!(
            check_video_codecs(&h264, false, true, false).ok(),
            Some(VideoStream::H264)
        );
        assert_eq!(
            check_video_codecs(&firefox, false, true, false).ok(),
            Some(VideoStream::Vp8)
        );
        // A viewer offering both gets a VP8 presenter's video as sent, when it can.
        let both = format!("{h264}a=rtpmap:96 VP8/90000\r\n").replace("SAVPF 102", "SAVPF 102 96");
        assert_eq!(
            check_video_codecs(&both, false, true, true).ok(),
            Some(VideoStream::Vp8)
        );
        assert_eq!(
            check_video_codecs(&h264, false, true, true).ok(),
            Some(VideoStream::H264),
            "H.264 only: the transcoded stream"
        );
        let mode0 = h264.replace("packetization-mode=1", "packetization-mode=0");
        assert!(
            check_video_codecs(&mode0, false, false, false)
                .unwrap_err()
                .to_string()
                .contains("offers H264")
        );
        // No video at all is for the answer check to say.
        assert!(
            check_video_codecs(
                &sdp("m=audio 9 UDP/TLS/RTP/SAVPF 111\r\n"),
                false,
                true,
                false
            )
            .is_ok()
        );
    }

    #[test]
    fn garbage_offers_are_rejected_before_webrtc() {
        assert!(matches!(parse_offer("hello"), Err(PeerError::BadOffer(_))));
        assert!(matches!(parse_offer(""), Err(PeerError::BadOffer(_))));
    }

    #[test]
    fn recognises_answers_that_send_video() {
        let sdp = |media: &str| format!("{}{media}", sdp::tests::HEAD);
        assert!(answer_sends_video(&sdp(
            "m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=sendonly\r\n"
        )));
        assert!(!answer_sends_video(&sdp(
            "m=video 0 UDP/TLS/RTP/SAVPF 0\r\n"
        )));
        assert!(!answer_sends_video(&sdp(
            "m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=inactive\r\n"
        )));
        assert!(!answer_sends_video(&sdp(
            "m=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\n"
        )));
        assert!(
            !answer_sends_video("v=0\r\nm=video 9 x 102\r\n"),
            "not a whole SDP"
        );
    }
}
