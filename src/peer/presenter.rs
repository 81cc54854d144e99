//! A relayed presenter: a browser (or any WebRTC client) that sends H.264 or VP8 (and
//! Opus) to the appliance. Its video is reassembled into whole pictures and published,
//! as sent, to the hub of its codec, so viewers who take that codec get it exactly like
//! the camera (the other codec's viewers get it through `transcode`); its audio goes to
//! the H.264 hub's audio relay. Keyframe requests from its hub's viewers reach it as
//! PLI, coalesced like the camera's.

use super::*;
use crate::encode::pacer::{KeyframePacer, MIN_GAP, sleep_until_due};
use crate::fanout::{Announcement, Produced, SecondStream};
use crate::media::{AudioPacket, EncodedFrame, KeyframeInbox, nal, nal_types};
use crate::task::AbortOnDrop;
use bytes::{Bytes, BytesMut};
use rtc::rtcp::payload_feedbacks::picture_loss_indication::PictureLossIndication;
use rtc::rtp::codec::h264::H264Packet;
use rtc::rtp::codec::vp8::Vp8Packet;
use rtc::rtp::packetizer::Depacketizer;
use std::sync::atomic::AtomicU64;
use std::time::Instant;
use webrtc::media_stream::track_remote::TrackRemoteEvent;

/// A browser presenting through the appliance.
pub struct PresenterPeer {
    conn: Connection,
    /// What it sends, told to the VP8 stream and the transcoder while it presents.
    _produced: Announcement,
}

/// Whether an offer sends audio (an `m=audio` section with a port and not receive-only).
pub fn offer_sends_audio(sdp: &str) -> bool {
    section_flows(sdp, "audio", &["recvonly", "inactive"])
}

impl PresenterPeer {
    /// Answers a presenter's offer (H.264 or VP8 video, optional Opus audio, optional
    /// data channel). H.264 is taken when offered (what the camera's viewers mostly
    /// play), else VP8; its pictures go to `hub` or to `vp8`'s hub.
    pub async fn start(
        factory: &PeerFactory,
        offer_sdp: &str,
        hub: &Arc<Hub>,
        vp8: &Arc<SecondStream>,
        events: mpsc::UnboundedSender<PeerEvent>,
    ) -> Result<(Self, String), PeerError> {
        let offer = parse_offer(offer_sdp)?;
        let stream = check_video_codecs(offer_sdp, true, true, false)?;
        let (connected_tx, _connected_rx) = watch::channel(false);
        let (tracks_tx, mut tracks_rx) = mpsc::unbounded_channel();
        let handler = Arc::new(Handler {
            events,
            connected: connected_tx,
            channel: factory.channel.clone(),
            nat_ips: factory.config.nat_ips.clone(),
            role: Role::Presenter,
            tracks: Some(tracks_tx),
        });
        // One video codec, the chosen one, so the answer cannot pick another.
        let video = match stream {
            VideoStream::H264 => h264_codec(),
            VideoStream::Vp8 => vp8_codec(),
        };
        let codecs = [
            (video, RtpCodecKind::Video),
            (opus_codec(), RtpCodecKind::Audio),
        ];
        let pc = build_pc(factory, &codecs, handler, None).await?;
        let answer = negotiate(&pc, offer).await?;
        if !answer_receives_video(&answer.sdp) {
            let _ = pc.close().await;
            return Err(PeerError::NoVideo);
        }

        let (video_hub, produced) = match stream {
            VideoStream::H264 => (hub.clone(), Produced::H264),
            VideoStream::Vp8 => (vp8.hub.clone(), Produced::VP8),
        };
        let audio_hub = hub.clone();
        let keyframe_count = Arc::new(AtomicU64::new(0));
        let (video_tx, video_rx) = watch::channel::<Option<(Arc<dyn TrackRemote>, u32)>>(None);
        let mut tasks = Vec::new();
        let relay_hub = video_hub.clone();
        let relay_count = keyframe_count.clone();
        tasks.push(AbortOnDrop::spawn(async move {
            let mut relays = Vec::new();
            while let Some(track) = tracks_rx.recv().await {
                let ssrc = track.ssrcs().await.first().copied().unwrap_or(0);
                match track.kind().await {
                    RtpCodecKind::Video => {
                        let _ = video_tx.send(Some((track.clone(), ssrc)));
                        relays.push(AbortOnDrop::spawn(relay_video(
                            track,
                            stream,
                            relay_hub.clone(),
                            relay_count.clone(),
                        )));
                    }
                    RtpCodecKind::Audio => {
                        relays.push(AbortOnDrop::spawn(relay_audio(track, audio_hub.clone())));
                    }
                    _ => {}
                }
            }
        }));
        tasks.push(AbortOnDrop::spawn(forward_keyframe_requests(
            video_hub.keyframe_inbox(),
            video_rx,
            keyframe_count,
        )));
        let loopback_only = factory.loopback_only();
        Ok((
            Self {
                conn: Connection::new(pc, loopback_only, tasks),
                _produced: vp8.announce(produced),
            },
            answer.sdp,
        ))
    }

    /// Adds a remote ICE candidate from the presenter.
    pub async fn add_candidate(&self, candidate: RTCIceCandidateInit) -> Result<(), PeerError> {
        self.conn.add_candidate(candidate).await
    }

    /// Ends the session.
    pub async fn close(mut self) {
        self.conn.close().await;
    }
}

/// Whether our answer receives video from the presenter.
fn answer_receives_video(sdp: &str) -> bool {
    section_flows(sdp, "video", &["inactive", "sendonly"])
}

/// Holds the keyframe inbox while presenting: viewers' requests become PLIs to the
/// presenter, at most one per `MIN_GAP`, none when a keyframe came anyway.
async fn forward_keyframe_requests(
    inbox: KeyframeInbox,
    mut video: watch::Receiver<Option<(Arc<dyn TrackRemote>, u32)>>,
    keyframes: Arc<AtomicU64>,
) {
    let mut requests = inbox.lock().await;
    let Ok(track) = video.wait_for(|v| v.is_some()).await.map(|v| v.clone()) else {
        return;
    };
    let Some((track, media_ssrc)) = track else {
        return;
    };
    let mut pacer = KeyframePacer::new(MIN_GAP);
    loop {
        let due = pacer.due(keyframes.load(std::sync::atomic::Ordering::Relaxed));
        tokio::select! {
            req = requests.recv() => match req {
                Some(()) => pacer.request(keyframes.load(std::sync::atomic::Ordering::Relaxed)),
                None => return,
            },
            _ = sleep_until_due(due) => {
                let pli = PictureLossIndication { sender_ssrc: 0, media_ssrc };
                if track.write_rtcp(vec![Box::new(pli)]).await.is_err() {
                    return;
                }
                pacer.forced(Instant::now());
            }
        }
    }
}

/// Reassembles RTP into whole pictures (by timestamp and marker bit): H.264 access units
/// or VP8 frames. After a lost packet nothing is published until the next keyframe,
/// since viewers could not decode it.
pub struct AccessUnitAssembler {
    codec: VideoStream,
    depacketizer: H264Packet,
    au: BytesMut,
    au_timestamp: Option<u32>,
    broken: bool,
    last_seq: Option<u16>,
    need_keyframe: bool,
    /// 90 kHz ticks before the current timestamp epoch, for unwrapping.
    base_ticks: u64,
    last_timestamp: Option<u32>,
    /// Payload bytes the depacketizer holds without having given them back yet (the
    /// fragments of an unfinished FU-A).
    unfinished: usize,
}

/// No real picture comes near this (a 1080p IDR at 8 Mbit/s is about 0.5 MB). A stream
/// that never finishes one is cut off here rather than grow in memory: the picture is
/// dropped and a keyframe asked for.
pub const MAX_ACCESS_UNIT_BYTES: usize = 4 << 20;

impl Default for AccessUnitAssembler {
    fn default() -> Self {
        Self::new(VideoStream::H264)
    }
}

impl AccessUnitAssembler {
    pub fn new(codec: VideoStream) -> Self {
        Self {
            codec,
            depacketizer: H264Packet::default(),
            au: BytesMut::new(),
            au_timestamp: None,
            broken: false,
            last_seq: None,
            need_keyframe: true,
            base_ticks: 0,
            last_timestamp: None,
            unfinished: 0,
        }
    }
}

/// What one packet produced.
#[derive(Debug, Default)]
pub struct Assembled {
    pub frames: Vec<EncodedFrame>,
    /// A packet was lost: ask the presenter for an IDR.
    pub need_keyframe: bool,
}

impl AccessUnitAssembler {
    pub fn push(&mut self, seq: u16, timestamp: u32, marker: bool, payload: &Bytes) -> Assembled {
        let mut out = Assembled::default();
        if let Some(ts) = self.au_timestamp
            && ts != timestamp
        {
            // A new picture began without the previous one's marker: finish it first.
            self.flush(&mut out);
        }
        if let Some(last) = self.last_seq
            && seq != last.wrapping_add(1)
        {
            self.broken = true;
        }
        self.last_seq = Some(seq);
        self.au_timestamp = Some(timestamp);
        self.unfinished = self.unfinished.saturating_add(payload.len());
        // A fresh VP8 descriptor parser per packet: it keeps optional fields from the
        // last packet otherwise.
        let depacketized = match self.codec {
            VideoStream::H264 => self.depacketizer.depacketize(payload),
            VideoStream::Vp8 => Vp8Packet::default().depacketize(payload),
        };
        match depacketized {
            Ok(bytes) => {
                if !bytes.is_empty() {
                    self.unfinished = 0;
                }
                self.au.extend_from_slice(&bytes);
            }
            Err(_) => self.broken = true,
        }
        if self.au.len().saturating_add(self.unfinished) > MAX_ACCESS_UNIT_BYTES {
            self.au.clear();
            self.depacketizer = H264Packet::default();
            self.unfinished = 0;
            self.broken = true;
        }
        if marker {
            self.flush(&mut out);
        }
        out
    }

    fn pts(&mut self, timestamp: u32) -> Duration {
        if let Some(last) = self.last_timestamp {
            // Signed difference copes with wrap-around and small reordering.
            let delta = timestamp.wrapping_sub(last) as i32;
            self.base_ticks = self.base_ticks.saturating_add_signed(delta as i64);
        }
        self.last_timestamp = Some(timestamp);
        Duration::from_nanos(self.base_ticks.saturating_mul(1_000_000_000) / 90_000)
    }

    fn flush(&mut self, out: &mut Assembled) {
        let data = std::mem::take(&mut self.au).freeze();
        let Some(timestamp) = self.au_timestamp.take() else {
            return;
        };
        if std::mem::take(&mut self.broken) {
            self.need_keyframe = true;
            out.need_keyframe = true;
            return;
        }
        if data.is_empty() {
            return;
        }
        let keyframe = match self.codec {
            VideoStream::H264 => nal_types(&data).contains(&nal::IDR),
            // The frame tag's low bit is clear on a key frame (RFC 6386, 9.1).
            VideoStream::Vp8 => data[0] & 1 == 0,
        };
        if self.need_keyframe && !keyframe {
            return;
        }
        self.need_keyframe = false;
        let pts = self.pts(timestamp);
        out.frames.push(EncodedFrame::new(data, pts, keyframe));
    }
}

async fn relay_video(
    track: Arc<dyn TrackRemote>,
    codec: VideoStream,
    hub: Arc<Hub>,
    keyframes: Arc<AtomicU64>,
) {
    let mut assembler = AccessUnitAssembler::new(codec);
    while let Some(evt) = track.poll().await {
        if let TrackRemoteEvent::OnRtpPacket(p) = evt {
            let out = assembler.push(
                p.header.sequence_number,
                p.header.timestamp,
                p.header.marker,
                &p.payload,
            );
            if out.need_keyframe {
                hub.request_keyframe();
            }
            for frame in out.frames {
                if frame.keyframe {
                    keyframes.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
                hub.publish(frame);
            }
        }
    }
}

async fn relay_audio(track: Arc<dyn TrackRemote>, hub: Arc<Hub>) {
    while let Some(evt) = track.poll().await {
        if let TrackRemoteEvent::OnRtpPacket(p) = evt {
            let _ = hub.audio.send(Arc::new(AudioPacket {
                payload: p.payload,
                timestamp: p.header.timestamp,
                marker: p.header.marker,
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Single-NAL packets: SPS, PPS, IDR slice of frame 1, then a P slice of frame 2.
    fn nal(t: u8) -> Bytes {
        Bytes::from(vec![t, 0xaa, 0xbb])
    }

    #[test]
    fn assembles_access_units_by_marker_and_timestamp() {
        let mut a = AccessUnitAssembler::default();
        assert!(a.push(1, 1000, false, &nal(0x67)).frames.is_empty());
        assert!(a.push(2, 1000, false, &nal(0x68)).frames.is_empty());
        let out = a.push(3, 1000, true, &nal(0x65));
        assert_eq!(out.frames.len(), 1);
        assert!(out.frames[0].keyframe);
        assert_eq!(nal_types(&out.frames[0].data), vec![7, 8, 5]);
        assert_eq!(out.frames[0].pts, Duration::ZERO);
        // No marker on frame 2, the next timestamp finishes it.
        assert!(a.push(4, 4000, false, &nal(0x41)).frames.is_empty());
        let out = a.push(5, 7000, true, &nal(0x41));
        assert_eq!(out.frames.len(), 2);
        assert!(!out.frames[0].keyframe);
        assert_eq!(
            out.frames[0].pts,
            Duration::from_millis(33) + Duration::from_micros(333) + Duration::from_nanos(333)
        );
    }

    #[test]
    fn a_picture_that_never_ends_is_cut_off() {
        let mut a = AccessUnitAssembler::default();
        assert_eq!(a.push(1, 0, true, &nal(0x65)).frames.len(), 1);
        // 6 MiB in single NALs, then in FU-A fragments that never end, all one picture.
        let big = Bytes::from(vec![0x41; 60_000]);
        let mut fua = vec![0x7c, 0x81]; // FU-A, start bit, non-IDR slice
        fua.resize(60_000, 0xaa);
        let (start, middle) = (Bytes::from(fua.clone()), {
            fua[1] = 0x01; // neither start nor end
            Bytes::from(fua)
        });
        let mut seq = 2u16;
        for i in 0..200 {
            let payload = match i {
                0..100 => &big,
                100 => &start,
                _ => &middle,
            };
            let out = a.push(seq, 3000, false, payload);
            assert!(out.frames.is_empty());
            assert!(a.au.len() + a.unfinished <= MAX_ACCESS_UNIT_BYTES);
            seq += 1;
        }
        // Its end is dropped and a keyframe asked for; the stream goes on from the IDR.
        let out = a.push(seq, 3000, true, &nal(0x41));
        assert!(out.frames.is_empty() && out.need_keyframe);
        assert_eq!(a.push(seq + 1, 6000, true, &nal(0x65)).frames.len(), 1);
    }

    #[test]
    fn waits_for_an_idr_and_drops_after_loss() {
        let mut a = AccessUnitAssembler::default();
        assert!(
            a.push(1, 0, true, &nal(0x41)).frames.is_empty(),
            "starts at an IDR"
        );
        assert_eq!(a.push(2, 3000, true, &nal(0x65)).frames.len(), 1);
        assert_eq!(a.push(3, 6000, true, &nal(0x41)).frames.len(), 1);
        let out = a.push(5, 9000, true, &nal(0x41)); // seq 4 lost
        assert!(out.frames.is_empty() && out.need_keyframe);
        assert!(
            a.push(6, 12000, true, &nal(0x41)).frames.is_empty(),
            "still waiting for an IDR"
        );
        assert_eq!(a.push(7, 15000, true, &nal(0x65)).frames.len(), 1);
    }

    #[test]
    fn timestamps_unwrap() {
        let mut a = AccessUnitAssembler::default();
        a.push(1, u32::MAX - 1499, true, &nal(0x65));
        let out = a.push(2, 1500, true, &nal(0x41));
        assert_eq!(
            out.frames[0].pts,
            Duration::from_nanos(3000 * 1_000_000_000 / 90_000)
        );
    }

    #[test]
    fn garbage_payloads_do_not_panic() {
        let mut a = AccessUnitAssembler::default();
        for (i, p) in [
            vec![],
            vec![0x1c],
            vec![0x1c, 0x85],
            vec![0x18, 0, 9, 1],
            vec![0xff; 40],
        ]
        .into_iter()
        .enumerate()
        {
            let _ = a.push(i as u16, i as u32, true, &Bytes::from(p));
        }
    }

    #[test]
    fn detects_audio_in_offers() {
        let sdp = |media: &str| format!("{}{media}", super::super::sdp::tests::HEAD);
        assert!(offer_sends_audio(&sdp(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        )));
        assert!(offer_sends_audio(&sdp(
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\nm=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=sendrecv\r\n"
        )));
        assert!(!offer_sends_audio(&sdp(
            "m=audio 9 UDP/TLS/RTP/SAVPF 111\r\na=recvonly\r\nm=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        )));
        assert!(!offer_sends_audio(&sdp(
            "m=video 9 UDP/TLS/RTP/SAVPF 96\r\n"
        )));
        assert!(!offer_sends_audio(&sdp(
            "m=audio 0 UDP/TLS/RTP/SAVPF 111\r\n"
        )));
    }
}
