//! SDP through the rtc crate's parser: what an offer or answer carries, and our
//! candidates gathered and written into it for WHIP/WHEP peers that take no trickle.

use super::PeerEvent;
use rtc::sdp::SessionDescription;
use rtc::sdp::description::common::Attribute;
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

/// An SDP read with the rtc crate's parser (`None`: not SDP it can read).
pub fn parse(sdp: &str) -> Option<SessionDescription> {
    SessionDescription::unmarshal(&mut std::io::Cursor::new(sdp.as_bytes())).ok()
}

/// The SDP with our candidates and `a=end-of-candidates` in every media section; an SDP
/// that does not parse is returned as it is.
pub fn with_candidates(sdp: &str, candidates: &[String]) -> String {
    let Some(mut session) = parse(sdp) else {
        return sdp.to_owned();
    };
    for media in &mut session.media_descriptions {
        for c in candidates {
            let value = c.trim_start_matches("a=").trim_start_matches("candidate:");
            media
                .attributes
                .push(Attribute::new("candidate".into(), Some(value.into())));
        }
        media
            .attributes
            .push(Attribute::new("end-of-candidates".into(), None));
    }
    session.marshal()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// The session part of an SDP, for tests that write media sections after it.
    pub(crate) const HEAD: &str = "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n";

    #[test]
    fn candidates_go_into_every_media_section() {
        let sdp = &format!(
            "{HEAD}m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=mid:0\r\nm=application 9 UDP/DTLS/SCTP webrtc-datachannel\r\na=mid:1\r\n"
        );
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
        assert_eq!(with_candidates("v=0\n", &[]), "v=0\n", "not SDP: unchanged");
        assert!(
            with_candidates(&format!("{HEAD}m=video 9 UDP/TLS/RTP/SAVPF 102\r\n"), &[])
                .ends_with("m=video 9 UDP/TLS/RTP/SAVPF 102\r\na=end-of-candidates\r\n")
        );
    }
}
