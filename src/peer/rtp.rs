//! Per-viewer RTP framing of H.264 access units (RFC 6184, packetization-mode 1) and of
//! VP8 frames (RFC 7741) for viewers whose browser has no H.264.
//! Timestamps come from the frame's pts so skipped frames keep the clock right;
//! sequence numbers are the viewer's own, so a dropped frame is no gap on the wire.
//! An H.264 frame is cut into payloads once, for all its viewers (every viewer starts at
//! an IDR that carries SPS and PPS, so the cut does not depend on what a viewer saw
//! before); each viewer only stamps its own header on the shared payloads. VP8 payloads
//! carry a picture id of the viewer's own, so they are cut per viewer.

use crate::media::EncodedFrame;
use rtc::rtp::codec::h264::H264Payloader;
use rtc::rtp::codec::vp8::Vp8Payloader;
use rtc::rtp::packetizer::Payloader;
use rtc::rtp::{header::Header, packet::Packet};

/// Payload size that fits a 1500-byte MTU after IP/UDP/SRTP overheads (as browsers do).
pub const RTP_MTU: usize = 1200;
const CLOCK_RATE: u128 = 90_000;

/// One viewer's RTP sequence, timestamp and SSRC.
#[derive(Debug)]
pub struct RtpFramer {
    pub ssrc: u32,
    seq: u16,
    ts_base: u32,
    /// The pts that maps to `epoch_ticks`; reset when the source restarts.
    epoch_pts: Option<std::time::Duration>,
    epoch_ticks: u64,
    last: Option<(std::time::Duration, u64)>,
    /// VP8's payloader; `None` for H.264, whose payloads are the frame's shared cut.
    payloader: Option<Vp8Payloader>,
}

/// A pts jump larger than this (or any jump back) is a new source run, not a gap.
const MAX_PTS_GAP: std::time::Duration = std::time::Duration::from_secs(5);
/// After a source restart the clock continues one frame (at 30 fps) after the last.
const RESTART_STEP_TICKS: u64 = 3000;

impl RtpFramer {
    pub fn new(ssrc: u32, first_seq: u16, ts_base: u32) -> Self {
        Self {
            ssrc,
            seq: first_seq,
            ts_base,
            epoch_pts: None,
            epoch_ticks: 0,
            last: None,
            payloader: None,
        }
    }

    /// The same for VP8 frames (picture ids on, so a receiver sees loss within a frame).
    pub fn vp8(ssrc: u32, first_seq: u16, ts_base: u32) -> Self {
        let mut framer = Self::new(ssrc, first_seq, ts_base);
        let mut payloader = Vp8Payloader::default();
        payloader.enable_picture_id = true;
        framer.payloader = Some(payloader);
        framer
    }

    /// RTP timestamp for a pts (90 kHz, wrapping). A restarted pipeline starts its pts
    /// over; the RTP clock must not go back, or the browser would drop the new frames.
    pub fn timestamp(&mut self, pts: std::time::Duration) -> u32 {
        if let Some((last_pts, last_ticks)) = self.last
            && (pts < last_pts || pts - last_pts > MAX_PTS_GAP)
        {
            self.epoch_pts = Some(pts);
            self.epoch_ticks = last_ticks + RESTART_STEP_TICKS;
        }
        let epoch = *self.epoch_pts.get_or_insert(pts);
        let ticks = self.epoch_ticks
            + (pts.saturating_sub(epoch).as_nanos() * CLOCK_RATE / 1_000_000_000) as u64;
        self.last = Some((pts, ticks));
        self.ts_base.wrapping_add(ticks as u32)
    }

    /// Packets for one access unit; the last carries the marker bit.
    pub fn packetize(&mut self, frame: &EncodedFrame, payload_type: u8) -> Vec<Packet> {
        let timestamp = self.timestamp(frame.pts);
        // The payloaders only fail on an MTU too small to make progress; ours is fixed.
        let own;
        let payloads: &[bytes::Bytes] = match &mut self.payloader {
            Some(vp8) => {
                own = vp8.payload(RTP_MTU, &frame.data).unwrap_or_default();
                &own
            }
            None => frame.rtp_payloads.get_or_init(|| {
                H264Payloader::default()
                    .payload(RTP_MTU, &frame.data)
                    .unwrap_or_default()
            }),
        };
        let n = payloads.len();
        payloads
            .iter()
            .cloned()
            .enumerate()
            .map(|(i, payload)| {
                let seq = self.seq;
                self.seq = self.seq.wrapping_add(1);
                Packet {
                    header: Header {
                        version: 2,
                        marker: i + 1 == n,
                        payload_type,
                        sequence_number: seq,
                        timestamp,
                        ssrc: self.ssrc,
                        ..Default::default()
                    },
                    payload,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::time::Duration;

    fn au(pts_ms: u64, idr: bool, size: usize) -> EncodedFrame {
        let mut data = vec![
            0, 0, 0, 1, 0x67, 0x42, 0xe0, 0x1f, 0, 0, 0, 1, 0x68, 0xce, 0x06, 0xe2,
        ];
        data.extend_from_slice(&[0, 0, 0, 1, if idr { 0x65 } else { 0x41 }]);
        data.extend(std::iter::repeat_n(0xab, size));
        EncodedFrame::new(Bytes::from(data), Duration::from_millis(pts_ms), idr)
    }

    #[test]
    fn one_timestamp_per_frame_marker_on_last_and_continuous_seq() {
        let mut f = RtpFramer::new(42, 65534, 1000);
        let a = f.packetize(&au(100, true, 5000), 102);
        assert!(a.len() > 4, "large frame is fragmented");
        assert!(
            a.iter()
                .all(|p| p.header.timestamp == 1000 && p.header.ssrc == 42)
        );
        assert!(a.iter().all(|p| p.header.payload_type == 102));
        assert_eq!(a.iter().filter(|p| p.header.marker).count(), 1);
        assert!(a.last().unwrap().header.marker);
        assert!(a.iter().all(|p| p.payload.len() <= RTP_MTU));
        assert_eq!(a[0].header.sequence_number, 65534);
        assert_eq!(a[2].header.sequence_number, 0, "wraps");
        // A frame 1 s later (frames in between skipped) is 90000 ticks later, seq continuous.
        let b = f.packetize(&au(1100, false, 10), 102);
        assert_eq!(b[0].header.timestamp, 1000 + 90_000);
        assert_eq!(
            b[0].header.sequence_number,
            a.last().unwrap().header.sequence_number.wrapping_add(1)
        );
    }

    #[test]
    fn a_restarted_source_keeps_the_clock_going_forward() {
        let mut f = RtpFramer::new(1, 0, 0);
        assert_eq!(f.timestamp(Duration::from_secs(100)), 0);
        assert_eq!(f.timestamp(Duration::from_secs(101)), 90_000);
        // The pipeline restarted: pts begins again near zero.
        assert_eq!(f.timestamp(Duration::from_millis(10)), 93_000);
        assert_eq!(f.timestamp(Duration::from_millis(43)), 93_000 + 2970);
        // A huge jump forward is a restart too, not a 10-minute gap.
        assert_eq!(f.timestamp(Duration::from_secs(700)), 93_000 + 2970 + 3000);
    }

    #[test]
    fn an_h264_frame_is_cut_once_and_each_viewer_stamps_its_own_headers() {
        let frame = au(0, true, 5000);
        let mut a = RtpFramer::new(1, 100, 0);
        let mut b = RtpFramer::new(2, 7, 9000);
        let pa = a.packetize(&frame, 96);
        let pb = b.packetize(&frame, 102);
        assert!(pa.len() > 3, "5 kB make several packets");
        assert_eq!(pa.len(), pb.len());
        for (x, y) in pa.iter().zip(&pb) {
            // The very same bytes, not a copy of them.
            assert_eq!(x.payload.as_ptr(), y.payload.as_ptr());
            assert_ne!(x.header.ssrc, y.header.ssrc);
            assert_ne!(x.header.payload_type, y.header.payload_type);
        }
        assert_eq!(pa[0].header.sequence_number, 100);
        assert_eq!(pb[0].header.sequence_number, 7);
        assert_eq!(frame.rtp_payloads.get().map(Vec::len), Some(pa.len()));
    }

    #[test]
    fn garbage_frame_yields_no_panic() {
        let mut f = RtpFramer::new(1, 0, 0);
        let junk = EncodedFrame::new(Bytes::from_static(&[1, 2, 3]), Duration::ZERO, false);
        let _ = f.packetize(&junk, 96);
        let empty = EncodedFrame::new(Bytes::new(), Duration::ZERO, false);
        assert!(f.packetize(&empty, 96).is_empty());
    }
}
