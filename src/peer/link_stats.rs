//! Per-viewer link quality from RTCP: round-trip time and loss from the receiver's reports,
//! and the send bitrate. The webrtc crate's own statistics leave RTT at zero, so an
//! observing interceptor at the wire end of the chain (it sees every Sender Report we send
//! and every report the viewer sends back) measures it, as RFC 3550 §6.4.1 describes:
//! RTT = arrival of the report − sending of the SR it echoes − the receiver's delay (DLSR).
//! The SR's send time is our own monotonic clock, so a wall-clock jump (a Pi without RTC
//! getting NTP time) cannot corrupt the figure.

use rtc::interceptor::{Packet, TaggedPacket};
use rtc::rtcp::receiver_report::ReceiverReport;
use rtc::rtcp::reception_report::ReceptionReport;
use rtc::rtcp::sender_report::SenderReport;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use rtc::shared::marshal::MarshalSize;
use serde::Serialize;
use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// Sender Reports remembered for matching echoes: SRs go out about once a second and a
/// receiver echoes the latest, so a few seconds' worth is plenty.
const SR_MEMORY: usize = 8;

/// RTP clock of the video track (H.264 over RTP is always 90 kHz).
const VIDEO_CLOCK_HZ: f64 = 90_000.0;

/// What one viewer's link looks like, as `/api/status` and `/metrics` show it.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct LinkQuality {
    /// Round trip from the last report that echoed one of our SRs; `null` until then.
    pub rtt_ms: Option<f64>,
    /// Share of packets lost since the viewer's previous report (0.0–1.0).
    pub fraction_lost: f64,
    /// Packets lost over the whole session, as the viewer counts them.
    pub packets_lost: u64,
    /// Interarrival jitter the viewer reports.
    pub jitter_ms: f64,
    /// Receiver reports received.
    pub reports: u64,
    /// RTP packets and payload-plus-header bytes sent to this viewer.
    pub packets_sent: u64,
    /// Of those, packets sent again because the viewer's NACK asked for them.
    pub packets_resent: u64,
    pub bytes_sent: u64,
    /// Send rate over the last SR interval (about a second).
    pub send_bitrate_bps: u64,
}

/// Shared between the interceptor (writer) and the status page (reader).
#[derive(Debug)]
pub struct LinkStats {
    /// The viewer's video SSRC: its report block is the one that describes the picture.
    video_ssrc: u32,
    state: Mutex<State>,
    /// Set by the viewer's writer: on the sub-stream now (its link is weak), and how often
    /// it moved between the streams.
    on_substream: std::sync::atomic::AtomicBool,
    stream_moves: std::sync::atomic::AtomicU64,
}

#[derive(Debug, Default)]
struct State {
    quality: LinkQuality,
    /// (ssrc, middle 32 bits of the SR's NTP time, when it left).
    sent_srs: VecDeque<(u32, u32, Instant)>,
    /// Bytes sent and time at the previous SR, for the send rate.
    rate_mark: Option<(u64, Instant)>,
    /// The newest video sequence number sent: one not after it is a resend.
    newest_seq: Option<u16>,
}

impl LinkStats {
    pub fn new(video_ssrc: u32) -> Self {
        Self {
            video_ssrc,
            state: Mutex::new(State::default()),
            on_substream: Default::default(),
            stream_moves: Default::default(),
        }
    }

    pub fn quality(&self) -> LinkQuality {
        self.lock().quality.clone()
    }

    /// The viewer's writer moved it to the sub-stream (`true`) or back to the main one.
    pub fn moved(&self, to_substream: bool) {
        use std::sync::atomic::Ordering;
        self.on_substream.store(to_substream, Ordering::Relaxed);
        self.stream_moves.fetch_add(1, Ordering::Relaxed);
    }

    /// On the sub-stream now, and the moves so far.
    pub fn stream(&self) -> (bool, u64) {
        use std::sync::atomic::Ordering;
        (
            self.on_substream.load(Ordering::Relaxed),
            self.stream_moves.load(Ordering::Relaxed),
        )
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn on_rtp_sent(&self, seq: u16, bytes: usize) {
        let mut s = self.lock();
        s.quality.packets_sent += 1;
        s.quality.bytes_sent += bytes as u64;
        // Sequence numbers wrap: "after" is within half the space ahead. Retransmissions
        // (no RTX: the packet itself again) are the only ones that go back.
        match s.newest_seq {
            Some(newest) if (seq.wrapping_sub(newest) as i16) <= 0 => s.quality.packets_resent += 1,
            _ => s.newest_seq = Some(seq),
        }
    }

    fn on_sr_sent(&self, sr: &SenderReport, now: Instant) {
        let mut s = self.lock();
        if s.sent_srs.len() == SR_MEMORY {
            s.sent_srs.pop_front();
        }
        s.sent_srs
            .push_back((sr.ssrc, ntp_middle(sr.ntp_time), now));
        if sr.ssrc == self.video_ssrc {
            let bytes = s.quality.bytes_sent;
            if let Some((before, at)) = s.rate_mark {
                let secs = now.saturating_duration_since(at).as_secs_f64();
                if secs > 0.0 {
                    s.quality.send_bitrate_bps =
                        (bytes.saturating_sub(before) as f64 * 8.0 / secs) as u64;
                }
            }
            s.rate_mark = Some((bytes, now));
        }
    }

    fn on_report(&self, report: &ReceptionReport, now: Instant) {
        if report.ssrc != self.video_ssrc {
            return;
        }
        let mut s = self.lock();
        s.quality.reports += 1;
        s.quality.fraction_lost = f64::from(report.fraction_lost) / 256.0;
        // 24-bit signed on the wire; a negative count (duplicates) means nothing lost.
        s.quality.packets_lost = if report.total_lost & 0x80_0000 != 0 {
            0
        } else {
            u64::from(report.total_lost)
        };
        s.quality.jitter_ms = f64::from(report.jitter) / VIDEO_CLOCK_HZ * 1000.0;
        let sent = s
            .sent_srs
            .iter()
            .rev()
            .find(|(ssrc, mid, _)| *ssrc == report.ssrc && *mid == report.last_sender_report)
            .map(|(_, _, at)| *at);
        if let Some(rtt) = sent.and_then(|at| round_trip(at, now, report.delay)) {
            s.quality.rtt_ms = Some(rtt.as_secs_f64() * 1000.0);
        }
    }
}

/// The middle 32 bits of a 64-bit NTP timestamp: what a report block echoes as LSR.
fn ntp_middle(ntp: u64) -> u32 {
    (ntp >> 16) as u32
}

/// RTT from when the echoed SR left, when the report arrived and the receiver's hold time
/// (DLSR, 1/65536 s). None when the report claims to have held the SR longer than the
/// whole round trip took (a broken or hostile receiver).
fn round_trip(sr_sent: Instant, report_arrived: Instant, dlsr: u32) -> Option<Duration> {
    let held = Duration::from_secs_f64(f64::from(dlsr) / 65536.0);
    report_arrived
        .checked_duration_since(sr_sent)?
        .checked_sub(held)
}

/// The observing interceptor: passes every packet through untouched.
pub struct LinkObserver {
    stats: std::sync::Arc<LinkStats>,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl LinkObserver {
    pub fn new(stats: std::sync::Arc<LinkStats>) -> Self {
        Self {
            stats,
            read: VecDeque::new(),
            write: VecDeque::new(),
        }
    }
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for LinkObserver {
    fn handle_read(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        if let Packet::Rtcp(packets) = &msg.message.packet {
            for p in packets {
                let any = p.as_any();
                let reports = if let Some(rr) = any.downcast_ref::<ReceiverReport>() {
                    &rr.reports
                } else if let Some(sr) = any.downcast_ref::<SenderReport>() {
                    // A viewer that also sends (audio) reports in its own SR.
                    &sr.reports
                } else {
                    continue;
                };
                for report in reports {
                    self.stats.on_report(report, msg.now);
                }
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    fn handle_write(&mut self, msg: TaggedPacket) -> Result<(), Error> {
        match &msg.message.packet {
            Packet::Rtp(rtp) if rtp.header.ssrc == self.stats.video_ssrc => {
                self.stats.on_rtp_sent(
                    rtp.header.sequence_number,
                    rtp.header.marshal_size() + rtp.payload.len(),
                );
            }
            Packet::Rtcp(packets) => {
                for p in packets {
                    if let Some(sr) = p.as_any().downcast_ref::<SenderReport>() {
                        self.stats.on_sr_sent(sr, msg.now);
                    }
                }
            }
            _ => {}
        }
        self.write.push_back(msg);
        Ok(())
    }

    interceptor_protocol!();
}

interceptor_plumbing!(LinkObserver);

#[cfg(test)]
mod tests {
    use super::*;

    fn sr(ssrc: u32, ntp: u64) -> SenderReport {
        SenderReport {
            ssrc,
            ntp_time: ntp,
            ..Default::default()
        }
    }

    fn report(ssrc: u32, lsr: u32, dlsr: u32) -> ReceptionReport {
        ReceptionReport {
            ssrc,
            fraction_lost: 64,
            total_lost: 12,
            jitter: 900,
            last_sender_report: lsr,
            delay: dlsr,
            ..Default::default()
        }
    }

    #[test]
    fn rtt_is_arrival_minus_send_minus_receiver_hold() {
        let stats = LinkStats::new(7);
        let t0 = Instant::now();
        let ntp = 0x1234_5678_9abc_def0;
        stats.on_sr_sent(&sr(7, ntp), t0);
        // Held 0.5 s (32768/65536) by the receiver, back 520 ms after sending: RTT 20 ms.
        stats.on_report(
            &report(7, ntp_middle(ntp), 32768),
            t0 + Duration::from_millis(520),
        );
        let q = stats.quality();
        let rtt = q.rtt_ms.expect("rtt measured");
        assert!((rtt - 20.0).abs() < 0.01, "{rtt}");
        assert_eq!(q.fraction_lost, 0.25);
        assert_eq!(q.packets_lost, 12);
        assert!((q.jitter_ms - 10.0).abs() < 1e-9);
        assert_eq!(q.reports, 1);
    }

    #[test]
    fn reports_for_other_streams_or_unknown_srs_do_not_set_rtt() {
        let stats = LinkStats::new(7);
        let t0 = Instant::now();
        stats.on_sr_sent(&sr(7, 1 << 40), t0);
        // Another SSRC (audio) is ignored altogether.
        stats.on_report(&report(8, ntp_middle(1 << 40), 0), t0);
        assert_eq!(stats.quality().reports, 0);
        // No SR received yet (LSR 0) or an LSR we never sent: loss counts, RTT stays unknown.
        stats.on_report(&report(7, 0, 0), t0 + Duration::from_millis(5));
        stats.on_report(&report(7, 99, 0), t0 + Duration::from_millis(5));
        let q = stats.quality();
        assert_eq!(q.reports, 2);
        assert_eq!(q.rtt_ms, None);
    }

    #[test]
    fn a_hold_longer_than_the_round_trip_is_ignored() {
        let stats = LinkStats::new(7);
        let t0 = Instant::now();
        stats.on_sr_sent(&sr(7, 5 << 32), t0);
        stats.on_report(
            &report(7, ntp_middle(5 << 32), u32::MAX),
            t0 + Duration::from_millis(10),
        );
        assert_eq!(stats.quality().rtt_ms, None);
    }

    #[test]
    fn negative_cumulative_loss_counts_as_none() {
        let stats = LinkStats::new(7);
        let mut r = report(7, 0, 0);
        r.total_lost = 0xff_fffe; // -2 in 24-bit two's complement: duplicates
        stats.on_report(&r, Instant::now());
        assert_eq!(stats.quality().packets_lost, 0);
    }

    #[test]
    fn send_rate_is_measured_between_srs() {
        let stats = LinkStats::new(7);
        let t0 = Instant::now();
        stats.on_sr_sent(&sr(7, 1), t0);
        for i in 0..100 {
            stats.on_rtp_sent(i, 1250);
        }
        stats.on_sr_sent(&sr(7, 2), t0 + Duration::from_secs(1));
        let q = stats.quality();
        assert_eq!(q.send_bitrate_bps, 1_000_000);
        assert_eq!((q.packets_sent, q.bytes_sent), (100, 125_000));
    }

    #[test]
    fn a_packet_sent_again_counts_as_resent_across_the_wrap() {
        let stats = LinkStats::new(7);
        for seq in [65_533, 65_534, 65_535, 0, 1] {
            stats.on_rtp_sent(seq, 100);
        }
        // The NACK responder resends two from before the wrap and one after it.
        for seq in [65_534, 65_535, 0] {
            stats.on_rtp_sent(seq, 100);
        }
        stats.on_rtp_sent(2, 100);
        let q = stats.quality();
        assert_eq!((q.packets_sent, q.packets_resent), (9, 3));
    }

    #[test]
    fn old_srs_are_forgotten() {
        let stats = LinkStats::new(7);
        let t0 = Instant::now();
        for i in 0..(SR_MEMORY as u64 + 2) {
            stats.on_sr_sent(&sr(7, i << 16), t0);
        }
        assert_eq!(stats.lock().sent_srs.len(), SR_MEMORY);
        stats.on_report(&report(7, 0, 0), t0 + Duration::from_millis(1));
        assert_eq!(stats.quality().rtt_ms, None, "SR 0 was forgotten");
    }
}
