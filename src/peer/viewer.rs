//! A viewer's WebRTC session: answers the browser's offer, feeds its own video track from
//! the hub (and an audio track from a relayed presenter's audio), and turns the browser's
//! PLI/FIR into keyframe requests.

use super::*;
use crate::fanout::Subscription;
use crate::media::{AudioPacket, EncodedFrame};
use crate::task::AbortOnDrop;
use ladder::{Ladder, Rung};
use link_stats::LinkStats;
use links::{LinkGuard, ViewerKind};

/// A viewer's WebRTC session. Closing it (or dropping it) leaves the hub.
pub struct ViewerPeer {
    conn: Connection,
    /// Its entry in the status page's viewer list (RTT, loss, bitrate).
    link: LinkGuard,
}

fn local_track(
    kind: RtpCodecKind,
    ssrc: u32,
    codec: &RTCRtpCodecParameters,
) -> Arc<TrackLocalStaticRTP> {
    let label = if kind == RtpCodecKind::Video {
        "video"
    } else {
        "audio"
    };
    Arc::new(TrackLocalStaticRTP::new(MediaStreamTrack::new(
        "edgecam".to_string(),
        format!("{label}-{ssrc:08x}"),
        label.to_string(),
        kind,
        vec![RTCRtpEncodingParameters {
            rtp_coding_parameters: RTCRtpCodingParameters {
                ssrc: Some(ssrc),
                ..Default::default()
            },
            codec: codec.rtp_codec.clone(),
            ..Default::default()
        }],
    )))
}

async fn negotiated_pt(sender: &Arc<dyn webrtc::rtp_transceiver::RtpSender>) -> Option<u8> {
    sender
        .get_parameters()
        .await
        .ok()
        .and_then(|p| p.rtp_parameters.codecs.first().map(|c| c.payload_type))
}

impl ViewerPeer {
    /// Answers `offer_sdp`; returns the peer and the SDP answer. Local candidates then
    /// arrive as `PeerEvent::Candidate` on `events` (trickle ICE).
    /// `vp8`: the VP8 stream, for an offer without H.264 (when there is one now), and
    /// for any offer that takes VP8 while the presenter's own video is VP8.
    pub async fn start(
        factory: &PeerFactory,
        offer_sdp: &str,
        hub: &Arc<Hub>,
        vp8: &crate::fanout::SecondStream,
        events: mpsc::UnboundedSender<PeerEvent>,
        presenter_audio: bool,
        kind: ViewerKind,
    ) -> Result<(Self, String), PeerError> {
        let offer = parse_offer(offer_sdp)?;
        let stream = check_video_codecs(offer_sdp, false, vp8.get().is_some(), vp8.preferred())?;
        // Audio only when the presenter sends it (the camera's microphone, a browser
        // presenter's): always from the main hub, whichever video codec this viewer gets.
        let audio = (presenter_audio && offer_sdp.contains("m=audio")).then_some(hub);
        let hub = match stream {
            VideoStream::Vp8 => &vp8.hub,
            VideoStream::H264 => hub,
        };
        let (peer, sender) = Self::build(factory, hub, stream, events, audio, kind).await?;
        let answer = match negotiate(&peer.conn.pc, offer).await {
            Ok(a) => a,
            Err(e) => {
                peer.close().await;
                return Err(e);
            }
        };
        if negotiated_pt(&sender).await.is_none() || !answer_sends_video(&answer.sdp) {
            peer.close().await;
            return Err(PeerError::NoVideo);
        }
        Ok((peer, answer.sdp))
    }

    /// The offering side, for pushing to a WHIP server: returns the peer and its offer
    /// (video only); give the server's answer to [`ViewerPeer::accept_answer`].
    pub async fn offer(
        factory: &PeerFactory,
        hub: &Arc<Hub>,
        events: mpsc::UnboundedSender<PeerEvent>,
    ) -> Result<(Self, String), PeerError> {
        let (peer, _sender) = Self::build(
            factory,
            hub,
            VideoStream::H264,
            events,
            None,
            ViewerKind::Upstream,
        )
        .await?;
        let pc = &peer.conn.pc;
        let offer = async {
            let offer = pc.create_offer(None).await.map_err(webrtc_err)?;
            pc.set_local_description(offer.clone())
                .await
                .map_err(webrtc_err)?;
            Ok::<_, PeerError>(offer.sdp)
        }
        .await;
        match offer {
            Ok(sdp) => Ok((peer, sdp)),
            Err(e) => {
                peer.close().await;
                Err(e)
            }
        }
    }

    /// Applies the answer to our offer.
    pub async fn accept_answer(&self, sdp: &str) -> Result<(), PeerError> {
        let answer = RTCSessionDescription::answer(sdp.to_owned())
            .map_err(|e| PeerError::BadOffer(brief(e)))?;
        self.conn
            .pc
            .set_remote_description(answer)
            .await
            .map_err(|e| PeerError::BadOffer(brief(e)))
    }

    /// The peer with its tracks and the tasks that feed them once it connects.
    async fn build(
        factory: &PeerFactory,
        hub: &Arc<Hub>,
        stream: VideoStream,
        events: mpsc::UnboundedSender<PeerEvent>,
        audio_from: Option<&Arc<Hub>>,
        kind: ViewerKind,
    ) -> Result<(Self, Arc<dyn webrtc::rtp_transceiver::RtpSender>), PeerError> {
        let (connected_tx, connected_rx) = watch::channel(false);
        let handler = Arc::new(Handler {
            events,
            connected: connected_tx,
            channel: factory.channel.clone(),
            nat_ips: factory.config.nat_ips.clone(),
            role: Role::Viewer,
            tracks: None,
        });
        let video_codec = match stream {
            VideoStream::H264 => h264_codec(),
            VideoStream::Vp8 => vp8_codec(),
        };
        let audio_codec = opus_codec();
        let codecs = [
            (video_codec.clone(), RtpCodecKind::Video),
            (audio_codec.clone(), RtpCodecKind::Audio),
        ];
        let ssrc = random_u32();
        let link_stats = Arc::new(LinkStats::new(ssrc));
        let pc = build_pc(factory, &codecs, handler, Some(link_stats.clone())).await?;

        let track = local_track(RtpCodecKind::Video, ssrc, &video_codec);
        let sender = pc
            .add_track(track.clone() as Arc<dyn TrackLocal>)
            .await
            .map_err(webrtc_err)?;
        let audio = if let Some(audio_hub) = audio_from {
            let assrc = random_u32();
            let t = local_track(RtpCodecKind::Audio, assrc, &audio_codec);
            let s = pc
                .add_track(t.clone() as Arc<dyn TrackLocal>)
                .await
                .map_err(webrtc_err)?;
            Some((t, s, assrc, audio_hub.audio.subscribe()))
        } else {
            None
        };

        let mut tasks = Vec::new();
        // Writer: starts on connect, subscribing then (which forces an IDR), so the first
        // picture is a fresh keyframe rather than whatever the GOP had queued. The payload
        // type is the negotiated one, known by then on either side of the offer.
        // H.264 viewers (not the upstream push) move to the sub-stream on a weak link.
        let substream = factory
            .substream
            .clone()
            .filter(|_| stream == VideoStream::H264 && kind != ViewerKind::Upstream);
        let video = Video {
            track: track.clone(),
            main: hub.clone(),
            substream,
            link: link_stats.clone(),
        };
        let writer_sender = sender.clone();
        let mut connected = connected_rx.clone();
        tasks.push(AbortOnDrop::spawn(async move {
            if connected.wait_for(|c| *c).await.is_err() {
                return;
            }
            let Some(payload_type) = negotiated_pt(&writer_sender).await else {
                return;
            };
            let (seq, ts) = (random_u32() as u16, random_u32());
            let framer = match stream {
                VideoStream::H264 => rtp::RtpFramer::new(ssrc, seq, ts),
                VideoStream::Vp8 => rtp::RtpFramer::vp8(ssrc, seq, ts),
            };
            video.send(framer, payload_type).await;
        }));
        if let Some((atrack, asender, assrc, mut rx)) = audio {
            let mut connected = connected_rx.clone();
            tasks.push(AbortOnDrop::spawn(async move {
                if connected.wait_for(|c| *c).await.is_err() {
                    return;
                }
                let Some(apt) = negotiated_pt(&asender).await else {
                    return;
                };
                let mut seq = random_u32() as u16;
                loop {
                    let packet: Arc<AudioPacket> = match rx.recv().await {
                        Ok(p) => p,
                        Err(broadcast::error::RecvError::Lagged(_)) => continue,
                        Err(broadcast::error::RecvError::Closed) => return,
                    };
                    seq = seq.wrapping_add(1);
                    let out = rtc::rtp::packet::Packet {
                        header: rtc::rtp::header::Header {
                            version: 2,
                            marker: packet.marker,
                            payload_type: apt,
                            sequence_number: seq,
                            timestamp: packet.timestamp,
                            ssrc: assrc,
                            ..Default::default()
                        },
                        payload: packet.payload.clone(),
                    };
                    if atrack.write_rtp(out).await.is_err() {
                        return;
                    }
                }
            }));
        }
        let loopback_only = factory.loopback_only();
        Ok((
            Self {
                conn: Connection::new(pc, loopback_only, tasks),
                link: factory.links.register(kind, link_stats),
            },
            sender,
        ))
    }

    /// This viewer's id in `/api/status` `viewer_links`.
    pub fn id(&self) -> u64 {
        self.link.id
    }

    /// Adds a remote ICE candidate from the browser.
    pub async fn add_candidate(&self, candidate: RTCIceCandidateInit) -> Result<(), PeerError> {
        self.conn.add_candidate(candidate).await
    }

    /// Ends the session and releases its hub slot.
    pub async fn close(mut self) {
        self.conn.close().await;
    }
}

/// How long a move to the sub-stream may wait for its first frame before it is given up
/// (no sub-stream is being made: a camera that delivers H.264 and no decoder, say).
const MOVE_LIMIT: std::time::Duration = std::time::Duration::from_secs(5);
/// How often the writer looks for a new receiver report (they come about once a second).
const REPORT_LOOK: std::time::Duration = std::time::Duration::from_millis(250);

/// One viewer's video: its track, the streams it may be fed from and its link's reports.
struct Video {
    track: Arc<TrackLocalStaticRTP>,
    main: Arc<Hub>,
    /// The sub-stream, for an H.264 viewer whose link turns out weak.
    substream: Option<Arc<Hub>>,
    link: Arc<LinkStats>,
}

/// What the writer does next.
enum Next {
    Frame(Arc<EncodedFrame>),
    /// The stream moved to sent its first frame (a keyframe): the move is made.
    Moved(Arc<EncodedFrame>),
    Look,
    /// RTCP the browser sent about the video: PLI/FIR.
    Feedback(Option<TrackLocalEvent>),
    End,
}

impl Video {
    /// Sends frames until the peer closes. A move between the streams is made before it
    /// is broken: the new stream is subscribed (which brings a keyframe soon), the old
    /// one goes on until that keyframe comes, so the picture never stops for the move.
    /// Sequence numbers and the RTP clock continue across it (one framer). The browser's
    /// PLI/FIR become (coalesced) keyframe requests to the stream it is fed from now.
    async fn send(self, mut framer: rtp::RtpFramer, payload_type: u8) {
        let mut ladder = Ladder::default();
        let mut current = self.main.subscribe();
        // Frames already queued at a join (the young GOP a joiner starts from) go out
        // spaced a little: sent all at once, the start of the burst can be lost at a
        // receiver that is only just set up.
        let mut backlog = current.frames.len();
        let mut moving: Option<(Rung, Subscription, std::time::Instant)> = None;
        let mut reports = self.link.quality().reports;
        let mut look = tokio::time::interval(REPORT_LOOK);
        look.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut feedback = true;
        loop {
            let next = tokio::select! {
                f = current.frames.recv() => f.map_or(Next::End, Next::Frame),
                Some(f) = first_frame(&mut moving) => Next::Moved(f),
                _ = look.tick(), if self.substream.is_some() => Next::Look,
                e = self.track.poll(), if feedback => Next::Feedback(e),
            };
            let frame = match next {
                Next::End => return,
                Next::Frame(f) => f,
                Next::Feedback(Some(event)) => {
                    if let TrackLocalEvent::OnRtcpPacket(packets) = event
                        && packets
                            .iter()
                            .any(|p| keyframe_rtcp::is_keyframe_request(p.as_ref()))
                    {
                        current.request_keyframe();
                    }
                    continue;
                }
                // The track's feedback has ended; the frames go on.
                Next::Feedback(None) => {
                    feedback = false;
                    continue;
                }
                Next::Moved(f) => {
                    let Some((rung, sub, _)) = moving.take() else {
                        continue;
                    };
                    current = sub;
                    backlog = current.frames.len();
                    self.link.moved(rung == Rung::Sub);
                    tracing::debug!(?rung, "a viewer moved between the streams");
                    f
                }
                Next::Look => {
                    let now = std::time::Instant::now();
                    if let Some((Rung::Sub, _, since)) = &moving
                        && now.saturating_duration_since(*since) > MOVE_LIMIT
                    {
                        moving = None;
                        ladder.move_failed(now);
                    }
                    let q = self.link.quality();
                    if q.reports != reports {
                        reports = q.reports;
                        if let Some(rung) = ladder.on_report(q.fraction_lost, now) {
                            let hub = match rung {
                                Rung::Sub => self.substream.as_ref(),
                                Rung::Main => Some(&self.main),
                            };
                            moving = hub.map(|h| (rung, h.subscribe(), now));
                        }
                    }
                    continue;
                }
            };
            if backlog > 0 {
                backlog -= 1;
                tokio::time::sleep(std::time::Duration::from_millis(4)).await;
            }
            for packet in framer.packetize(&frame, payload_type) {
                // After the peer closes, writes fail: end this viewer's writer then.
                if self.track.write_rtp(packet).await.is_err() {
                    return;
                }
            }
        }
    }
}

/// The first frame of the stream being moved to; never, when no move is under way.
async fn first_frame(
    moving: &mut Option<(Rung, Subscription, std::time::Instant)>,
) -> Option<Arc<EncodedFrame>> {
    match moving {
        Some((_, sub, _)) => sub.frames.recv().await,
        None => std::future::pending().await,
    }
}
