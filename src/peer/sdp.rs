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

/// One video codec an SDP offers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoCodec {
    /// As in `a=rtpmap`, upper-cased: "H264", "VP8", "VP9", "AV1", "RTX"...
    pub name: String,
    pub fmtp: String,
}

impl VideoCodec {
    /// H.264 the camera can send: packetization-mode 1 (every browser's; the camera's
    /// stream is Constrained Baseline, which every H.264 decoder plays).
    pub fn is_h264_mode1(&self) -> bool {
        self.name == "H264"
            && self
                .fmtp
                .split(';')
                .any(|p| p.trim().eq_ignore_ascii_case("packetization-mode=1"))
    }
}

/// The codecs of every active video section (port not 0), in offer order.
pub fn video_codecs(sdp: &str) -> Vec<VideoCodec> {
    let Some(session) = parse(sdp) else {
        return vec![];
    };
    let mut out = Vec::new();
    for m in &session.media_descriptions {
        if m.media_name.media != "video" || m.media_name.port.value == 0 {
            continue;
        }
        let codecs = m.codecs();
        for format in &m.media_name.formats {
            let Some(c) = format.parse::<u8>().ok().and_then(|pt| codecs.get(&pt)) else {
                continue;
            };
            out.push(VideoCodec {
                name: c.name.to_ascii_uppercase(),
                fmtp: c.fmtp.clone(),
            });
        }
    }
    out
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

    /// Firefox without OpenH264 (VP8, VP9, AV1 and their RTX) and Chromium (H.264 too).
    const FIREFOX_VIDEO: &str = "m=video 9 UDP/TLS/RTP/SAVPF 120 124 121 125 99\r\na=rtpmap:120 VP8/90000\r\na=rtpmap:124 rtx/90000\r\na=fmtp:124 apt=120\r\na=rtpmap:121 VP9/90000\r\na=rtpmap:125 rtx/90000\r\na=rtpmap:99 AV1/90000\r\na=recvonly\r\n";
    const CHROMIUM_VIDEO: &str = "m=video 9 UDP/TLS/RTP/SAVPF 96 102 103\r\na=rtpmap:96 VP8/90000\r\na=rtpmap:102 H264/90000\r\na=fmtp:102 level-asymmetry-allowed=1;packetization-mode=1;profile-level-id=42001f\r\na=rtpmap:103 H264/90000\r\na=fmtp:103 packetization-mode=0;profile-level-id=42001f\r\n";

    #[test]
    fn video_codecs_are_read_from_active_sections() {
        let ff = video_codecs(&format!("{HEAD}{FIREFOX_VIDEO}"));
        let names: Vec<&str> = ff.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["VP8", "RTX", "VP9", "RTX", "AV1"]);
        assert!(!ff.iter().any(VideoCodec::is_h264_mode1));
        let cr = video_codecs(&format!("{HEAD}{CHROMIUM_VIDEO}"));
        assert_eq!(cr.iter().filter(|c| c.is_h264_mode1()).count(), 1, "{cr:?}");
        let rejected = FIREFOX_VIDEO.replace("m=video 9", "m=video 0");
        assert!(video_codecs(&format!("{HEAD}{rejected}")).is_empty());
        assert!(video_codecs("garbage").is_empty());
    }

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
