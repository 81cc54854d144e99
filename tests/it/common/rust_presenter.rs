//! A presenter written only from the Kurento protocol and the webrtc crate: it makes the
//! offer, sends `presenter`, trickles candidates, and streams H.264 access units encoded
//! by GStreamer (x264 on a test pattern) through a sample track — or VP8 frames only, as
//! a Firefox without OpenH264 (or a WHIP client) sends.

use super::Ws;
use edgecam::encode::{EncodeSettings, Encoder, RunStats, pipeline};
use edgecam::media::EncodedFrame;
use rtc::media::Sample;
use rtc::media_stream::MediaStreamTrack;
use rtc::rtp_transceiver::rtp_sender::{
    RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
};
use serde_json::{Value, json};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use webrtc::media_stream::track_local::TrackLocal;
use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
use webrtc::peer_connection::{
    PeerConnection, PeerConnectionEventHandler, RTCIceCandidateInit, RTCPeerConnectionIceEvent,
    RTCPeerConnectionState, RTCSessionDescription,
};

struct Handler {
    candidates: mpsc::UnboundedSender<RTCIceCandidateInit>,
    connected: watch::Sender<bool>,
}

#[async_trait::async_trait]
impl PeerConnectionEventHandler for Handler {
    async fn on_ice_candidate(&self, event: RTCPeerConnectionIceEvent) {
        if let Ok(c) = event.candidate.to_json() {
            let _ = self.candidates.send(c);
        }
    }
    async fn on_connection_state_change(&self, state: RTCPeerConnectionState) {
        if state == RTCPeerConnectionState::Connected {
            let _ = self.connected.send(true);
        }
    }
}

pub struct RustPresenter {
    pub pc: Arc<dyn PeerConnection>,
    pub ws: Ws,
    pub response: Value,
    /// Every message the server sent, in order.
    pub messages: Vec<Value>,
    candidates: mpsc::UnboundedReceiver<RTCIceCandidateInit>,
    connected: watch::Receiver<bool>,
    streamer: Option<tokio::task::JoinHandle<()>>,
}

impl RustPresenter {
    /// Offers send-only H.264 and waits for the presenterResponse.
    pub async fn present(ws_url: &str) -> Self {
        Self::present_with(ws_url, false).await
    }

    /// Offers send-only VP8 (and no H.264) with a 320x240 test pattern.
    pub async fn present_vp8(ws_url: &str) -> Self {
        Self::present_with(ws_url, true).await
    }

    async fn present_with(ws_url: &str, vp8: bool) -> Self {
        let (cand_tx, candidates) = mpsc::unbounded_channel();
        let (connected_tx, connected) = watch::channel(false);
        let handler = Arc::new(Handler {
            candidates: cand_tx,
            connected: connected_tx,
        }) as Arc<dyn PeerConnectionEventHandler>;
        let (pc, codec) = if vp8 {
            (
                super::loopback_peer_vp8_only(handler).await,
                edgecam::peer::vp8_codec().rtp_codec,
            )
        } else {
            (
                super::loopback_peer(handler).await,
                edgecam::peer::h264_codec().rtp_codec,
            )
        };
        let track = Arc::new(
            TrackLocalStaticSample::new(
                Instant::now(),
                MediaStreamTrack::new(
                    "rust-presenter".into(),
                    "video".into(),
                    "video".into(),
                    RtpCodecKind::Video,
                    vec![RTCRtpEncodingParameters {
                        rtp_coding_parameters: RTCRtpCodingParameters {
                            ssrc: Some(4242),
                            ..Default::default()
                        },
                        codec,
                        ..Default::default()
                    }],
                ),
            )
            .expect("track"),
        );
        let sender = pc
            .add_track(track.clone() as Arc<dyn TrackLocal>)
            .await
            .expect("add track");
        let offer = pc.create_offer(None).await.expect("offer");
        pc.set_local_description(offer.clone())
            .await
            .expect("local");
        let mut ws = Ws::connect(ws_url).await;
        ws.send_json(&json!({"id": "presenter", "sdpOffer": offer.sdp}))
            .await;
        let mut messages = Vec::new();
        let response = loop {
            let m = ws.recv().await;
            messages.push(m.clone());
            if m["id"] == "presenterResponse" {
                break m;
            }
        };
        let mut me = Self {
            pc,
            ws,
            response,
            messages,
            candidates,
            connected,
            streamer: None,
        };
        if me.response["response"] == "accepted" {
            let sdp = me.response["sdpAnswer"]
                .as_str()
                .expect("sdpAnswer")
                .to_string();
            me.pc
                .set_remote_description(RTCSessionDescription::answer(sdp).expect("answer"))
                .await
                .expect("remote");
            let pt = sender
                .get_parameters()
                .await
                .expect("params")
                .rtp_parameters
                .codecs[0]
                .payload_type;
            me.streamer = Some(tokio::spawn(stream_test_pattern(track, pt, vp8)));
        }
        me
    }

    /// Trickles candidates both ways until connected (bounded).
    pub async fn connect(&mut self, secs: u64) {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(secs);
        while !*self.connected.borrow() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "presenter did not connect"
            );
            tokio::select! {
                Some(c) = self.candidates.recv() => {
                    self.ws.send_json(&json!({"id": "onIceCandidate", "candidate": c})).await;
                }
                m = self.ws.recv_timeout(1) => if let Some(m) = m {
                    if m["id"] == "iceCandidate" {
                        let c: RTCIceCandidateInit = serde_json::from_value(m["candidate"].clone()).expect("candidate");
                        self.pc.add_ice_candidate(c).await.expect("add candidate");
                    }
                    self.messages.push(m);
                },
                _ = self.connected.changed() => {}
            }
        }
    }

    pub async fn stop(mut self) {
        self.ws.send_json(&json!({"id": "stop"})).await;
        if let Some(s) = self.streamer.take() {
            s.abort();
        }
        let _ = self.pc.close().await;
    }
}

/// Encodes a 320x240 test pattern with x264 (or vp8enc) and writes each access unit (or
/// frame) as a sample.
async fn stream_test_pattern(track: Arc<TrackLocalStaticSample>, pt: u8, vp8: bool) {
    let s = EncodeSettings {
        width: 320,
        height: 240,
        fps: 30,
        bitrate_kbps: 300,
        keyframe_interval_s: 1,
    };
    let pattern =
        "videotestsrc is-live=true pattern=ball ! video/x-raw,width=320,height=240,framerate=30/1";
    let desc = if vp8 {
        format!(
            "{pattern} ! vp8enc deadline=1 cpu-used=8 keyframe-max-dist=30 target-bitrate=300000 \
             ! appsink name=sink sync=false"
        )
    } else {
        pipeline::describe(pattern, Encoder::X264, &s, false)
    };
    let (tx, mut rx) = mpsc::unbounded_channel::<EncodedFrame>();
    let sink = Arc::new(move |f: EncodedFrame| {
        let _ = tx.send(f);
    });
    let (_kf_tx, mut kf_rx) = mpsc::channel(1);
    let runner = tokio::spawn(async move {
        let _ = edgecam::encode::run(
            &desc,
            sink,
            &mut kf_rx,
            Arc::new(RunStats::default()),
            Duration::from_secs(5),
            std::future::pending(),
            Vec::new(),
            None,
        )
        .await;
    });
    while let Some(frame) = rx.recv().await {
        let sample = Sample {
            data: frame.data,
            duration: Duration::from_millis(33),
            ..Sample::new(Instant::now())
        };
        // Writes fail until the track is bound (connected); those frames are simply lost.
        let _ = track.write_sample(4242, pt, &sample, &[]).await;
    }
    runner.abort();
}
