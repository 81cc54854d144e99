//! A bound on the retransmissions one viewer may ask for. On a LAN a NACK asks for a packet
//! or two now and then; on a link that cannot carry the stream, every lost packet is
//! asked for again and again, and answering them all sends that viewer many times the
//! stream's own rate (measured: 11 Mbit/s of resends toward a 0.7 Mbit/s link), which
//! starves the very link, and the small stream it was moved to. NACKs beyond a token
//! bucket of packets are dropped before the NACK responder sees them; the receiver then
//! asks for a keyframe, which is what a stream that lost that much needs anyway.
//! Pure apart from the interceptor plumbing: the time is the packet's own.

use rtc::interceptor::{Packet, TaggedPacket};
use rtc::rtcp::transport_feedbacks::transport_layer_nack::TransportLayerNack;
use rtc::sansio::Protocol;
use rtc::shared::error::Error;
use std::collections::VecDeque;
use std::time::Instant;

/// Packets a viewer may have resent per second, over time (about 0.25 Mbit/s of resends).
pub const PACKETS_PER_S: f64 = 25.0;
/// And at once: a lost keyframe's worth.
pub const BURST: f64 = 80.0;

/// The bucket itself.
#[derive(Debug)]
pub struct Budget {
    tokens: f64,
    last: Option<Instant>,
}

impl Default for Budget {
    fn default() -> Self {
        Self {
            tokens: BURST,
            last: None,
        }
    }
}

impl Budget {
    /// Whether `packets` more resends fit at `now` (taken from the bucket if so).
    pub fn take(&mut self, packets: u32, now: Instant) -> bool {
        if let Some(last) = self.last {
            let secs = now.saturating_duration_since(last).as_secs_f64();
            self.tokens = (self.tokens + secs * PACKETS_PER_S).min(BURST);
        }
        self.last = Some(now);
        let want = f64::from(packets);
        if self.tokens >= want {
            self.tokens -= want;
            true
        } else {
            false
        }
    }
}

/// Packets one NACK asks for.
pub fn asked_for(nack: &TransportLayerNack) -> u32 {
    nack.nacks
        .iter()
        .map(|p| 1 + p.lost_packets.count_ones())
        .sum()
}

/// The interceptor: sits between the wire and the NACK responder.
#[derive(Default)]
pub struct NackBudget {
    budget: Budget,
    read: VecDeque<TaggedPacket>,
    write: VecDeque<TaggedPacket>,
}

impl Protocol<TaggedPacket, TaggedPacket, ()> for NackBudget {
    fn handle_read(&mut self, mut msg: TaggedPacket) -> Result<(), Error> {
        let now = msg.now;
        if let Packet::Rtcp(packets) = &mut msg.message.packet {
            let before = packets.len();
            packets.retain(|p| match p.as_any().downcast_ref::<TransportLayerNack>() {
                Some(nack) => self.budget.take(asked_for(nack), now),
                None => true,
            });
            if packets.is_empty() && before > 0 {
                return Ok(());
            }
        }
        self.read.push_back(msg);
        Ok(())
    }

    interceptor_protocol!(pass_writes);
}

interceptor_plumbing!(NackBudget);

#[cfg(test)]
mod tests {
    use super::*;
    use rtc::rtcp::transport_feedbacks::transport_layer_nack::NackPair;
    use std::time::Duration;

    #[test]
    fn a_lan_s_odd_nack_is_always_answered_a_storm_is_not() {
        let t0 = Instant::now();
        let mut b = Budget::default();
        // A lost keyframe's worth at once.
        assert!(b.take(80, t0));
        assert!(!b.take(1, t0), "the bucket is empty");
        // It refills at PACKETS_PER_S.
        assert!(b.take(25, t0 + Duration::from_secs(1)));
        assert!(!b.take(25, t0 + Duration::from_millis(1500)));
        assert!(b.take(12, t0 + Duration::from_millis(1500)));
        // A storm for ten seconds gets about PACKETS_PER_S a second through.
        let mut passed = 0;
        for ms in (2000..12_000).step_by(10) {
            if b.take(17, t0 + Duration::from_millis(ms)) {
                passed += 17;
            }
        }
        assert!((200..=300).contains(&passed), "{passed} resends in 10 s");
    }

    #[test]
    fn a_nack_counts_its_pair_and_its_bitmap() {
        let nack = TransportLayerNack {
            sender_ssrc: 1,
            media_ssrc: 2,
            nacks: vec![
                NackPair {
                    packet_id: 10,
                    lost_packets: 0,
                },
                NackPair {
                    packet_id: 40,
                    lost_packets: 0b1011,
                },
            ],
        };
        assert_eq!(asked_for(&nack), 1 + 4);
    }
}
