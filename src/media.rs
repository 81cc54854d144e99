//! Media types shared by every stage: what the encoder produces and what flows
//! back upstream (keyframe requests).

use bytes::Bytes;
use std::time::Duration;
use tokio::sync::mpsc;

/// One H.264 access unit in Annex B byte-stream form (start codes included).
/// SPS/PPS travel in-band before every IDR, so a keyframe AU is self-contained.
#[derive(Debug, Clone, Default)]
pub struct EncodedFrame {
    /// Annex B NAL units of one picture.
    pub data: Bytes,
    /// Presentation time since the pipeline started; RTP timestamps derive from it.
    pub pts: Duration,
    /// True for an IDR access unit: the only place a new or recovering viewer may start.
    pub keyframe: bool,
    /// `data` cut into H.264 RTP payloads, by the first viewer that sends this frame and
    /// shared by the others, which only stamp their own headers (`peer::rtp`): cutting
    /// was the largest per-viewer cost of a packet.
    pub rtp_payloads: std::sync::OnceLock<Vec<Bytes>>,
}

impl EncodedFrame {
    pub fn new(data: Bytes, pts: Duration, keyframe: bool) -> Self {
        Self {
            data,
            pts,
            keyframe,
            rtp_payloads: Default::default(),
        }
    }
}

/// NAL unit types this crate cares about (ITU-T H.264 table 7-1).
pub mod nal {
    pub const IDR: u8 = 5;
    pub const SPS: u8 = 7;
    pub const PPS: u8 = 8;
}

/// Splits an Annex B byte stream into NAL units (without start codes).
/// Malformed input yields whatever NAL units can be found; it never panics.
pub fn annexb_nalus(data: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new(); // (start of start code, start of NAL payload)
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            let code_start = if i > 0 && data[i - 1] == 0 { i - 1 } else { i };
            starts.push((code_start, i + 3));
            i += 3;
        } else {
            i += 1;
        }
    }
    let mut out = Vec::with_capacity(starts.len());
    for (k, &(_, payload)) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(data.len(), |&(code, _)| code);
        if payload < end {
            out.push(&data[payload..end]);
        }
    }
    out
}

/// NAL unit types present in an Annex B access unit, in order.
pub fn nal_types(data: &[u8]) -> Vec<u8> {
    annexb_nalus(data).iter().map(|n| n[0] & 0x1f).collect()
}

/// Relayed audio (Opus from a browser presenter), passed through without decoding.
#[derive(Debug, Clone)]
pub struct AudioPacket {
    pub payload: Bytes,
    /// The presenter's RTP timestamp (48 kHz for Opus).
    pub timestamp: u32,
    pub marker: bool,
}

/// The receiving end of keyframe requests, held by whichever presenter is live (the
/// camera runner or a relayed browser): the lock makes that exclusive.
pub type KeyframeInbox = std::sync::Arc<tokio::sync::Mutex<mpsc::Receiver<()>>>;

/// Sending half of the one upstream signal: "a viewer needs an IDR".
/// Cheap to clone; never blocks (a full queue means a request is already pending).
#[derive(Debug, Clone)]
pub struct KeyframeRequester {
    tx: mpsc::Sender<()>,
}

impl KeyframeRequester {
    /// Creates the requester and the receiver the encoder drains.
    pub fn channel() -> (Self, mpsc::Receiver<()>) {
        // One slot is enough: requests are idempotent and coalesced downstream of here.
        let (tx, rx) = mpsc::channel(1);
        (Self { tx }, rx)
    }

    /// Asks for an IDR. Never blocks; duplicates collapse into the pending one.
    pub fn request(&self) {
        let _ = self.tx.try_send(());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_annexb_with_3_and_4_byte_start_codes() {
        let au = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 9, 9,
        ];
        assert_eq!(nal_types(&au), vec![7, 8, 5]);
        let nalus = annexb_nalus(&au);
        assert_eq!(nalus[0], &[0x67, 1, 2]);
        assert_eq!(nalus[1], &[0x68, 3]);
        assert_eq!(nalus[2], &[0x65, 9, 9]);
    }

    #[test]
    fn garbage_yields_no_nalus() {
        assert!(annexb_nalus(&[]).is_empty());
        assert!(annexb_nalus(&[0, 0]).is_empty());
        assert!(annexb_nalus(&[1, 2, 3, 4, 5]).is_empty());
        assert!(annexb_nalus(&[0, 0, 1]).is_empty());
    }

    #[test]
    fn keyframe_requests_collapse() {
        let (req, mut rx) = KeyframeRequester::channel();
        for _ in 0..10 {
            req.request();
        }
        assert!(rx.try_recv().is_ok());
        assert!(rx.try_recv().is_err());
    }
}
