//! A viewer written with the webrtc crate that speaks the Kurento protocol and reassembles
//! H.264 access units from RTP, recording what a real viewer would see.

use super::ClientCodecs;
use super::Ws;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::packetizer::Depacketizer;
use rtc::rtp_transceiver::rtp_sender::RtpCodecKind;
use rtc::rtp_transceiver::{RTCRtpTransceiverDirection, RTCRtpTransceiverInit};
use serde_json::{Value, json};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::mpsc;
use webrtc::data_channel::{DataChannel, DataChannelEvent};
use webrtc::media_stream::track_remote::{TrackRemote, TrackRemoteEvent};
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent,
    RTCSessionDescription,
};

/// What the viewer received.
#[derive(Debug, Default)]
pub struct Received {
    /// Whole access units in Annex B form, in arrival order.
    pub access_units: Vec<Vec<u8>>,
    pub first_frame_at: Option<Instant>,
    pub packets: u64,
    /// The video's SSRC, from its first packet.
    pub media_ssrc: Option<u32>,
    /// Access units that arrived without a gap in the sequence numbers (decodable, once
    /// a keyframe has come): what a viewer would see on a lossy link.
    pub whole_units: u64,
    /// When each decodable H.264 access unit arrived: whole, and an IDR or following one
    /// without a break (what a decoder would show).
    pub shown_at: Vec<Instant>,
    /// Data-channel text messages.
    pub channel: Vec<String>,
    /// Signaling messages received after the viewerResponse.
    pub signaling: Vec<Value>,
}

struct Handler {
    candidates: mpsc::UnboundedSender<RTCIceCandidateInit>,
    received: Arc<Mutex<Received>>,
    /// The peer takes VP8 only (frames are VP8 frames, not access units).
    vp8: bool,
    /// The video track once it arrives, for feedback the test sends (a PLI).
    video: Arc<Mutex<Option<Arc<dyn TrackRemote>>>>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(c) = event.candidate.to_json() {
            let _ = self.candidates.send(c);
        }
    }

    async fn on_track(&self, track: Arc<dyn TrackRemote>) {
        *self.video.lock().unwrap() = Some(track.clone());
        let received = self.received.clone();
        let vp8 = self.vp8;
        tokio::spawn(async move {
            let mut depack: Box<dyn Depacketizer + Send> = if vp8 {
                Box::new(rtc::rtp::codec::vp8::Vp8Packet::default())
            } else {
                Box::new(H264Packet::default())
            };
            let mut au: Vec<u8> = Vec::new();
            let (mut last_seq, mut gap, mut chain) = (None::<u16>, false, false);
            while let Some(evt) = track.poll().await {
                if let TrackRemoteEvent::OnRtpPacket(p) = evt {
                    let mut r = received.lock().unwrap();
                    r.packets += 1;
                    r.media_ssrc.get_or_insert(p.header.ssrc);
                    let seq = p.header.sequence_number;
                    // A late packet (a retransmission that a NACK asked for after the
                    // frame was given up) or a duplicate: this simple receiver has no
                    // jitter buffer to put it back in place, so it is left out.
                    let step = last_seq.map(|l| seq.wrapping_sub(l) as i16);
                    if step.is_some_and(|d| d <= 0) {
                        continue;
                    }
                    gap |= step.is_some_and(|d| d > 1);
                    last_seq = Some(seq);
                    if let Ok(bytes) = depack.depacketize(&p.payload) {
                        au.extend_from_slice(&bytes);
                    }
                    if p.header.marker && !au.is_empty() {
                        r.first_frame_at.get_or_insert_with(Instant::now);
                        let unit = std::mem::take(&mut au);
                        let whole = !std::mem::take(&mut gap);
                        if whole {
                            r.whole_units += 1;
                        }
                        if !vp8 {
                            let idr = edgecam::media::nal_types(&unit)
                                .contains(&edgecam::media::nal::IDR);
                            chain = whole && (idr || chain);
                            if chain {
                                r.shown_at.push(Instant::now());
                            }
                        }
                        r.access_units.push(unit);
                    }
                }
            }
        });
    }
}

pub struct RustViewer {
    pub pc: Arc<dyn PeerConnection>,
    pub received: Arc<Mutex<Received>>,
    pub answer: Value,
    pump: tokio::task::JoinHandle<Ws>,
    stop_pump: tokio::sync::oneshot::Sender<()>,
    video: Arc<Mutex<Option<Arc<dyn TrackRemote>>>>,
}

impl RustViewer {
    /// Connects, sends `viewer` with a recv-only video offer (plus a data channel), and
    /// returns once the response arrived; ICE then trickles in the background.
    pub async fn join(ws_url: &str) -> Self {
        Self::join_with(ws_url, false).await
    }

    /// With `candidates_first`, every local candidate is sent *before* the `viewer`
    /// message and the server's candidates are ignored: the connection then comes up
    /// only if the server queued ours and applied them once the peer existed.
    pub async fn join_with(ws_url: &str, candidates_first: bool) -> Self {
        Self::join_inner(ws_url, candidates_first, &[], ClientCodecs::All, None).await
    }

    /// Joins with its media socket on `bind` (an address of a network namespace the
    /// calling thread is in).
    pub async fn join_from(ws_url: &str, bind: std::net::IpAddr) -> Self {
        Self::join_inner(ws_url, false, &[], ClientCodecs::All, Some(bind)).await
    }

    /// Joins with extra request headers on the WebSocket (e.g. `Authorization`).
    pub async fn join_with_headers(ws_url: &str, headers: &[(&str, &str)]) -> Self {
        Self::join_inner(ws_url, false, headers, ClientCodecs::All, None).await
    }

    /// Joins as a client whose only video codec is VP8 (a Firefox without OpenH264):
    /// `access_units` then holds VP8 frames.
    pub async fn join_vp8_only(ws_url: &str) -> Self {
        Self::join_inner(ws_url, false, &[], ClientCodecs::Vp8Only, None).await
    }

    /// Joins as a client whose only video codec is H.264.
    pub async fn join_h264_only(ws_url: &str) -> Self {
        Self::join_inner(ws_url, false, &[], ClientCodecs::H264Only, None).await
    }

    async fn join_inner(
        ws_url: &str,
        candidates_first: bool,
        headers: &[(&str, &str)],
        codecs: ClientCodecs,
        bind: Option<std::net::IpAddr>,
    ) -> Self {
        let vp8 = codecs == ClientCodecs::Vp8Only;
        let (cand_tx, mut cand_rx) = mpsc::unbounded_channel();
        let received = Arc::new(Mutex::new(Received::default()));
        let video = Arc::new(Mutex::new(None));
        let handler = Arc::new(Handler {
            candidates: cand_tx,
            received: received.clone(),
            vp8,
            video: video.clone(),
        });
        let handler = handler as Arc<dyn PeerConnectionEventHandler>;
        let pc = match bind {
            Some(ip) => super::peer_on(ip, handler).await,
            None => super::loopback_peer_with(handler, codecs).await,
        };
        pc.add_transceiver_from_kind(
            RtpCodecKind::Video,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            }),
        )
        .await
        .expect("transceiver");
        let dc = pc
            .create_data_channel("status", None)
            .await
            .expect("data channel");
        let r2 = received.clone();
        tokio::spawn(async move { read_channel(dc, r2).await });
        let offer = pc.create_offer(None).await.expect("offer");
        pc.set_local_description(offer.clone())
            .await
            .expect("set local");

        let mut ws = Ws::connect_with(ws_url, headers)
            .await
            .expect("WebSocket accepted");
        if candidates_first {
            // Gathering on loopback is immediate; take what comes within a short pause.
            let mut sent = 0;
            while let Ok(Some(c)) = tokio::time::timeout(
                Duration::from_millis(if sent == 0 { 3000 } else { 300 }),
                cand_rx.recv(),
            )
            .await
            {
                ws.send_json(&json!({"id": "onIceCandidate", "candidate": c}))
                    .await;
                sent += 1;
            }
            assert!(sent > 0, "client gathered no candidates");
        }
        ws.send_json(&json!({"id": "viewer", "sdpOffer": offer.sdp}))
            .await;
        let answer = loop {
            let m = ws.recv().await;
            if m["id"] == "viewerResponse" {
                break m;
            }
        };
        if answer["response"] == "accepted" {
            let sdp = answer["sdpAnswer"].as_str().expect("sdpAnswer").to_string();
            pc.set_remote_description(RTCSessionDescription::answer(sdp).expect("answer"))
                .await
                .expect("set remote");
        }
        // Pump: our candidates out, theirs in, until told to stop; then hand the socket back.
        let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel();
        let pump_pc = pc.clone();
        let pump_received = received.clone();
        let pump = tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = &mut stop_rx => return ws,
                    Some(c) = cand_rx.recv() => {
                        ws.send_json(&json!({"id": "onIceCandidate", "candidate": c})).await;
                    }
                    m = ws.recv_timeout(3600) => match m {
                        Some(m) if m["id"] == "iceCandidate" && !candidates_first => {
                            pump_received.lock().unwrap().signaling.push(m.clone());
                            let c: RTCIceCandidateInit = serde_json::from_value(m["candidate"].clone()).expect("candidate");
                            let _ = pump_pc.add_ice_candidate(c).await;
                        }
                        Some(m) => pump_received.lock().unwrap().signaling.push(m),
                        None => {
                            let _ = (&mut stop_rx).await;
                            return ws;
                        }
                    }
                }
            }
        });
        Self {
            pc,
            received,
            answer,
            pump,
            stop_pump: stop_tx,
            video,
        }
    }

    /// Sends a PLI for the video it receives, as a browser does when its decoder lost the
    /// picture.
    pub async fn send_pli(&self) {
        let track = self.video.lock().unwrap().clone().expect("a video track");
        let media_ssrc = self
            .received
            .lock()
            .unwrap()
            .media_ssrc
            .expect("video received");
        let pli = rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication {
            sender_ssrc: 0,
            media_ssrc,
        };
        track
            .write_rtcp(vec![Box::new(pli)])
            .await
            .expect("PLI sent");
    }

    /// A real recv-only video offer from a throwaway peer (for abort tests).
    pub async fn offer_sdp() -> String {
        let (tx, _rx) = mpsc::unbounded_channel();
        let handler = Arc::new(Handler {
            candidates: tx,
            received: Arc::default(),
            vp8: false,
            video: Arc::default(),
        });
        let pc = super::loopback_peer(handler as Arc<dyn PeerConnectionEventHandler>).await;
        pc.add_transceiver_from_kind(
            RtpCodecKind::Video,
            Some(RTCRtpTransceiverInit {
                direction: RTCRtpTransceiverDirection::Recvonly,
                ..Default::default()
            }),
        )
        .await
        .expect("transceiver");
        let offer = pc.create_offer(None).await.expect("offer");
        let _ = pc.close().await;
        offer.sdp
    }

    /// Waits until at least `n` access units arrived (bounded).
    pub async fn wait_frames(&self, n: usize, secs: u64) -> usize {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            let got = self.received.lock().unwrap().access_units.len();
            if got >= n || Instant::now() > deadline {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Waits (bounded) for a signaling message with this id.
    pub async fn wait_message(&self, id: &str, secs: u64) -> Option<Value> {
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Some(m) = self
                .received
                .lock()
                .unwrap()
                .signaling
                .iter()
                .find(|m| m["id"] == id)
            {
                return Some(m.clone());
            }
            if Instant::now() > deadline {
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn frames(&self) -> usize {
        self.received.lock().unwrap().access_units.len()
    }

    /// Stops the background pump and returns the signaling socket.
    pub async fn into_ws(self) -> (Arc<dyn PeerConnection>, Ws) {
        let _ = self.stop_pump.send(());
        let ws = self.pump.await.expect("pump");
        (self.pc, ws)
    }

    pub async fn close(self) {
        let (pc, mut ws) = self.into_ws().await;
        let _ = pc.close().await;
        let _ = ws.inner.close(None).await;
    }
}

async fn read_channel(dc: Arc<dyn DataChannel>, received: Arc<Mutex<Received>>) {
    while let Some(evt) = dc.poll().await {
        if let DataChannelEvent::OnMessage(m) = evt {
            let text = String::from_utf8_lossy(&m.data).to_string();
            received.lock().unwrap().channel.push(text);
        }
    }
}
