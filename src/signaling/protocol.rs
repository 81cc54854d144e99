//! The Kurento one2many JSON messages, parsed strictly into types. Anything that does
//! not parse becomes a `ProtocolError` whose text is sent back in an `error` message.

use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The largest signaling message accepted (an SDP offer is a few KiB).
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// A browser's ICE candidate as the Kurento tutorial sends it (RTCIceCandidate.toJSON()).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Candidate {
    pub candidate: String,
    #[serde(rename = "sdpMid", default, skip_serializing_if = "Option::is_none")]
    pub sdp_mid: Option<String>,
    #[serde(
        rename = "sdpMLineIndex",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub sdp_mline_index: Option<u16>,
    #[serde(
        rename = "usernameFragment",
        default,
        skip_serializing_if = "Option::is_none"
    )]
    pub username_fragment: Option<String>,
}

/// Client-to-server messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientMessage {
    Presenter { sdp_offer: String },
    Viewer { sdp_offer: String },
    OnIceCandidate { candidate: Candidate },
    Stop,
}

/// Why a client message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProtocolError {
    #[error("message is too large ({0} bytes; the limit is {MAX_MESSAGE_BYTES})")]
    TooLarge(usize),
    #[error("message is not valid JSON: {0}")]
    NotJson(String),
    #[error("message must be a JSON object with an \"id\" string")]
    NoId,
    #[error("Invalid message id {0:?}")]
    UnknownId(String),
    #[error("{id}: {problem}")]
    BadField { id: &'static str, problem: String },
}

/// Parses one text frame.
pub fn parse(text: &str) -> Result<ClientMessage, ProtocolError> {
    if text.len() > MAX_MESSAGE_BYTES {
        return Err(ProtocolError::TooLarge(text.len()));
    }
    let value: Value =
        serde_json::from_str(text).map_err(|e| ProtocolError::NotJson(e.to_string()))?;
    let id = value
        .get("id")
        .and_then(Value::as_str)
        .ok_or(ProtocolError::NoId)?;
    match id {
        "presenter" => Ok(ClientMessage::Presenter {
            sdp_offer: sdp_offer("presenter", &value)?,
        }),
        "viewer" => Ok(ClientMessage::Viewer {
            sdp_offer: sdp_offer("viewer", &value)?,
        }),
        "onIceCandidate" => {
            let raw = value
                .get("candidate")
                .ok_or_else(|| ProtocolError::BadField {
                    id: "onIceCandidate",
                    problem: "missing \"candidate\"".into(),
                })?;
            // serde's message quotes the offending value: cut it, or a 64 KiB field
            // comes back (and goes to the log) whole.
            let candidate = Candidate::deserialize(raw).map_err(|e| ProtocolError::BadField {
                id: "onIceCandidate",
                problem: format!("bad \"candidate\": {}", truncate(&e.to_string(), 160)),
            })?;
            Ok(ClientMessage::OnIceCandidate { candidate })
        }
        "stop" => Ok(ClientMessage::Stop),
        other => Err(ProtocolError::UnknownId(truncate(other, 64))),
    }
}

fn sdp_offer(id: &'static str, value: &Value) -> Result<String, ProtocolError> {
    match value.get("sdpOffer") {
        Some(Value::String(s)) if !s.trim().is_empty() => Ok(s.clone()),
        Some(Value::String(_)) => Err(ProtocolError::BadField {
            id,
            problem: "\"sdpOffer\" is empty".into(),
        }),
        Some(_) => Err(ProtocolError::BadField {
            id,
            problem: "\"sdpOffer\" must be a string".into(),
        }),
        None => Err(ProtocolError::BadField {
            id,
            problem: "missing \"sdpOffer\"".into(),
        }),
    }
}

fn truncate(s: &str, max: usize) -> String {
    s.chars().take(max).collect()
}

/// Server-to-client messages.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "id")]
pub enum ServerMessage {
    #[serde(rename = "presenterResponse")]
    PresenterResponse(Response),
    #[serde(rename = "viewerResponse")]
    ViewerResponse(Response),
    #[serde(rename = "iceCandidate")]
    IceCandidate { candidate: Candidate },
    #[serde(rename = "stopCommunication")]
    StopCommunication,
    #[serde(rename = "error")]
    Error { message: String },
    /// Extra (not Kurento): a presenter is live again; offline viewers may rejoin.
    #[serde(rename = "presenterAvailable")]
    PresenterAvailable,
}

/// The body of `presenterResponse` / `viewerResponse`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "response")]
pub enum Response {
    #[serde(rename = "accepted")]
    Accepted {
        #[serde(rename = "sdpAnswer")]
        sdp_answer: String,
        /// Extra (not Kurento): the viewer's id in `/api/status` `viewer_links`, so a page
        /// can show how the camera sees its link.
        #[serde(rename = "viewerId", skip_serializing_if = "Option::is_none")]
        viewer_id: Option<u64>,
    },
    #[serde(rename = "rejected")]
    Rejected { message: String },
}

impl ServerMessage {
    pub fn to_json(&self) -> String {
        // Serialising these plain structs cannot fail.
        serde_json::to_string(self)
            .unwrap_or_else(|_| r#"{"id":"error","message":"internal"}"#.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn parses_the_kurento_client_messages() {
        assert_eq!(
            parse(r#"{"id":"viewer","sdpOffer":"v=0\r\n"}"#),
            Ok(ClientMessage::Viewer {
                sdp_offer: "v=0\r\n".into()
            })
        );
        assert_eq!(
            parse(r#"{"id":"presenter","sdpOffer":"v=0"}"#),
            Ok(ClientMessage::Presenter {
                sdp_offer: "v=0".into()
            })
        );
        assert_eq!(parse(r#"{"id":"stop"}"#), Ok(ClientMessage::Stop));
        let c = parse(
            r#"{"id":"onIceCandidate","candidate":{"candidate":"candidate:1 1 udp 1 1.2.3.4 5 typ host","sdpMid":"0","sdpMLineIndex":0}}"#,
        )
        .unwrap();
        assert_eq!(
            c,
            ClientMessage::OnIceCandidate {
                candidate: Candidate {
                    candidate: "candidate:1 1 udp 1 1.2.3.4 5 typ host".into(),
                    sdp_mid: Some("0".into()),
                    sdp_mline_index: Some(0),
                    username_fragment: None,
                }
            }
        );
    }

    #[test]
    fn refuses_malformed_messages_with_reasons() {
        assert!(matches!(parse("not json"), Err(ProtocolError::NotJson(_))));
        assert_eq!(parse("[1,2]"), Err(ProtocolError::NoId));
        assert_eq!(parse(r#"{"id":7}"#), Err(ProtocolError::NoId));
        assert_eq!(
            parse(r#"{"id":"dance"}"#),
            Err(ProtocolError::UnknownId("dance".into()))
        );
        assert!(matches!(
            parse(r#"{"id":"viewer"}"#),
            Err(ProtocolError::BadField { id: "viewer", .. })
        ));
        assert!(matches!(
            parse(r#"{"id":"viewer","sdpOffer":5}"#),
            Err(ProtocolError::BadField { .. })
        ));
        assert!(matches!(
            parse(r#"{"id":"viewer","sdpOffer":"  "}"#),
            Err(ProtocolError::BadField { .. })
        ));
        assert!(matches!(
            parse(r#"{"id":"onIceCandidate"}"#),
            Err(ProtocolError::BadField { .. })
        ));
        assert!(matches!(
            parse(r#"{"id":"onIceCandidate","candidate":{"sdpMid":1}}"#),
            Err(ProtocolError::BadField { .. })
        ));
        let huge = format!(
            r#"{{"id":"viewer","sdpOffer":"{}"}}"#,
            "a".repeat(MAX_MESSAGE_BYTES)
        );
        assert!(matches!(parse(&huge), Err(ProtocolError::TooLarge(_))));
        // Found by the fuzzer: a long value of the wrong type was quoted whole.
        let long_field = format!(
            r#"{{"id":"onIceCandidate","candidate":{{"candidate":"c","sdpMLineIndex":"{}"}}}}"#,
            "x".repeat(60_000)
        );
        let e = parse(&long_field).unwrap_err().to_string();
        assert!(e.len() < 300, "{}", e.len());
        assert!(
            e.starts_with("onIceCandidate: bad \"candidate\": invalid type"),
            "{e}"
        );
        let long_id = format!(r#"{{"id":"{}"}}"#, "x".repeat(1000));
        assert!(matches!(parse(&long_id), Err(ProtocolError::UnknownId(s)) if s.len() == 64));
    }

    #[test]
    fn serialises_server_messages_as_kurento_does() {
        let v: Value = serde_json::from_str(
            &ServerMessage::ViewerResponse(Response::Accepted {
                sdp_answer: "v=0".into(),
                viewer_id: None,
            })
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"id":"viewerResponse","response":"accepted","sdpAnswer":"v=0"})
        );
        let v: Value = serde_json::from_str(
            &ServerMessage::ViewerResponse(Response::Accepted {
                sdp_answer: "v=0".into(),
                viewer_id: Some(3),
            })
            .to_json(),
        )
        .unwrap();
        assert_eq!(v["viewerId"], 3);
        let v: Value = serde_json::from_str(
            &ServerMessage::PresenterResponse(Response::Rejected {
                message: "busy".into(),
            })
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"id":"presenterResponse","response":"rejected","message":"busy"})
        );
        assert_eq!(
            ServerMessage::StopCommunication.to_json(),
            r#"{"id":"stopCommunication"}"#
        );
        let v: Value = serde_json::from_str(
            &ServerMessage::IceCandidate {
                candidate: Candidate {
                    candidate: "c".into(),
                    sdp_mid: Some("0".into()),
                    sdp_mline_index: Some(0),
                    username_fragment: None,
                },
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(
            v,
            json!({"id":"iceCandidate","candidate":{"candidate":"c","sdpMid":"0","sdpMLineIndex":0}})
        );
        let v: Value = serde_json::from_str(
            &ServerMessage::Error {
                message: "m".into(),
            }
            .to_json(),
        )
        .unwrap();
        assert_eq!(v, json!({"id":"error","message":"m"}));
    }
}
