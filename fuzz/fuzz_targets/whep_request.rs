//! What a WHEP/WHIP POST or PATCH body meets before any peer exists: the content-type and
//! size checks, the SDP parser the webrtc crate negotiates with, the section scan that
//! decides whether video flows, adding our candidates to an answer, and the trickle
//! fragment parser. Any input must end in a value or an error, never a panic.
#![no_main]

use axum::http::{HeaderMap, HeaderValue, header};
use edgecam::signaling::wish;
use libfuzzer_sys::fuzz_target;

const TYPES: &[&str] = &[
    "application/sdp",
    "application/sdp; charset=utf-8",
    "APPLICATION/SDP",
    "application/trickle-ice-sdpfrag",
    "text/plain",
    "",
];

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else {
        return;
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(TYPES[selector as usize % TYPES.len()]) {
        headers.insert(header::CONTENT_TYPE, v);
    }
    let bytes = bytes::Bytes::copy_from_slice(body);
    if let Ok(offer) = wish::read_offer(&headers, &bytes) {
        if let Err(e) = edgecam::peer::parse_offer(&offer) {
            // The reason goes back to the client and into the log: it stays short.
            let shown = e.to_string();
            assert!(shown.len() < 512, "error text grows with the input: {}", shown.len());
        }
        let _ = edgecam::peer::section_flows(&offer, "video", &["inactive", "sendonly"]);
        let _ = edgecam::peer::offer_sends_audio(&offer);
        let _ = edgecam::peer::sdp::with_candidates(&offer, &["candidate:1 1 udp 1 127.0.0.1 9 typ host".into()]);
    }
    if let Ok(text) = std::str::from_utf8(body) {
        let _ = wish::fragment_candidates(text);
    }
});
