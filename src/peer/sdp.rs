//! SDP as the WHIP/WHEP exchanges need it: our candidates gathered and written into an
//! offer or answer, for clients and servers that take no trickle.

use super::PeerEvent;
use std::time::Duration;
use tokio::sync::mpsc;

/// How long an offer or answer may wait for our own candidates.
const GATHER_LIMIT: Duration = Duration::from_secs(2);

/// Our local candidates as they are announced, until gathering completes (bounded).
pub async fn gather(events: &mut mpsc::UnboundedReceiver<PeerEvent>) -> Vec<String> {
    let mut candidates = Vec::new();
    let _ = tokio::time::timeout(GATHER_LIMIT, async {
        while let Some(event) = events.recv().await {
            match event {
                PeerEvent::Candidate(c) => candidates.push(c.candidate),
                PeerEvent::GatheringComplete | PeerEvent::Gone => break,
                PeerEvent::Connected => {}
            }
        }
    })
    .await;
    candidates
}

/// The SDP with our candidates and `a=end-of-candidates` in every media section.
pub fn with_candidates(sdp: &str, candidates: &[String]) -> String {
    let eol = if sdp.contains("\r\n") { "\r\n" } else { "\n" };
    let block: String = candidates
        .iter()
        .map(|c| format!("a={}{eol}", c.trim_start_matches("a=")))
        .chain(std::iter::once(format!("a=end-of-candidates{eol}")))
        .collect();
    let mut out = String::with_capacity(sdp.len() + block.len() * 2);
    let mut in_media = false;
    for line in sdp.split_inclusive('\n') {
        if line.starts_with("m=") && in_media {
            out.push_str(&block);
        }
        if line.starts_with("m=") {
            in_media = true;
        }
        out.push_str(line);
    }
    if in_media {
        if !out.ends_with('\n') {
            out.push_str(eol);
        }
        out.push_str(&block);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_go_into_every_media_section() {
        let sdp = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\nm=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\n";
        let out = with_candidates(
            sdp,
            &["candidate:1 1 udp 2130706431 127.0.0.1 5000 typ host".into()],
        );
        assert_eq!(out.matches("a=candidate:1 1 udp").count(), 2, "{out}");
        assert_eq!(out.matches("a=end-of-candidates\r\n").count(), 2);
        let video = out.find("m=video").unwrap();
        let app = out.find("m=application").unwrap();
        let first = out.find("a=candidate").unwrap();
        assert!(video < first && first < app, "{out}");
        assert!(out.ends_with("a=end-of-candidates\r\n"));
        assert_eq!(
            with_candidates("v=0\n", &[]),
            "v=0\n",
            "no media: unchanged"
        );
    }
}
