//! The Kurento one2many session rules as a state machine without I/O: one client's
//! messages, its peer's events, presenter changes and the connect deadline go in; the
//! messages to send and what to do with the peer come out. `session` carries out the
//! actions against the admission service, the peer and the socket.
//!
//! ```text
//!  Idle ──viewer/presenter──► Admitting ──admitted──► Starting ──peer up──► Viewer | Presenter
//!   ▲          │ refused: rejected      │ failed: rejected           │ stop, gone, timeout,
//!   └──────────┴────────────────────────┴────────────────────────────┘ presenter gone
//! ```

use super::protocol::{self, Candidate, ClientMessage, Response, ServerMessage};
use crate::admission::{Presenter, Refusal};

/// Candidates a client may send before its peer exists.
pub const MAX_PENDING_CANDIDATES: usize = 64;

/// What the client asked to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Want {
    Viewer,
    Presenter,
}

/// What happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A text frame from the client.
    Text(String),
    /// A binary frame (not part of the protocol).
    Binary,
    /// The answer to [`Action::Admit`].
    Admitted(Result<(), Refusal>),
    /// The answer to [`Action::StartPeer`]: the SDP answer and, for a viewer, its id in
    /// `/api/status`; or why no peer could be made.
    PeerStarted(Result<(String, Option<u64>), String>),
    /// [`Action::AddCandidate`] failed.
    CandidateFailed(String),
    /// One of our ICE candidates, to pass on.
    LocalCandidate(Candidate),
    /// The peer connected.
    Connected,
    /// The peer failed or closed.
    PeerGone,
    /// The presenter changed: who presents now, and (for a viewer) whether the presenter
    /// it joined under is gone.
    PresenterChanged { now: Presenter, mine_gone: bool },
    /// The connect deadline armed by [`Action::ArmDeadline`] passed.
    DeadlinePassed,
}

/// What to do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    Send(ServerMessage),
    /// Ask the admission service (`audio`: whether a presenter's offer sends audio);
    /// answer with [`Event::Admitted`].
    Admit {
        want: Want,
        audio: bool,
    },
    /// Make the peer for the offer under the lease just granted; answer with
    /// [`Event::PeerStarted`].
    StartPeer {
        want: Want,
        offer: String,
    },
    AddCandidate(Candidate),
    /// Close the peer and drop the lease.
    Release,
    /// Reap the peer if it has not connected by the connect timeout.
    ArmDeadline,
    DisarmDeadline,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Role {
    Idle,
    /// Asked admission for `want`, with this offer.
    Admitting {
        want: Want,
        offer: String,
    },
    /// Holding the lease; the peer is being made.
    Starting(Want),
    /// A peer exists (connected or connecting).
    Live(Want),
}

/// One client's session.
#[derive(Debug)]
pub struct Session {
    /// Whether this client's credentials allow presenting.
    may_present: bool,
    role: Role,
    /// Candidates that came before the peer existed (at most [`MAX_PENDING_CANDIDATES`]).
    pending: Vec<Candidate>,
}

fn error(message: String) -> Action {
    Action::Send(ServerMessage::Error { message })
}

fn rejected(want: Want, message: String) -> Action {
    let r = Response::Rejected { message };
    Action::Send(match want {
        Want::Viewer => ServerMessage::ViewerResponse(r),
        Want::Presenter => ServerMessage::PresenterResponse(r),
    })
}

impl Session {
    pub fn new(may_present: bool) -> Self {
        Self {
            may_present,
            role: Role::Idle,
            pending: Vec::new(),
        }
    }

    /// Whether a peer or lease is held (a release is then due when the session ends).
    pub fn holds_peer(&self) -> bool {
        matches!(self.role, Role::Starting(_) | Role::Live(_))
    }

    /// Ends whatever this client was doing.
    fn release(&mut self, out: &mut Vec<Action>) -> Option<Want> {
        let was = match std::mem::replace(&mut self.role, Role::Idle) {
            Role::Starting(w) | Role::Live(w) => Some(w),
            Role::Idle | Role::Admitting { .. } => None,
        };
        if was.is_some() {
            out.push(Action::DisarmDeadline);
            out.push(Action::Release);
        }
        was
    }

    pub fn handle(&mut self, event: Event) -> Vec<Action> {
        let mut out = Vec::new();
        match event {
            Event::Text(text) => match protocol::parse(&text) {
                Err(e) => out.push(error(e.to_string())),
                Ok(ClientMessage::Viewer { sdp_offer }) => {
                    self.offer(Want::Viewer, sdp_offer, &mut out)
                }
                Ok(ClientMessage::Presenter { sdp_offer }) => {
                    self.offer(Want::Presenter, sdp_offer, &mut out)
                }
                Ok(ClientMessage::OnIceCandidate { candidate }) => {
                    self.candidate(candidate, &mut out)
                }
                Ok(ClientMessage::Stop) => {
                    self.release(&mut out);
                    self.pending.clear();
                }
            },
            Event::Binary => out.push(error(
                "binary frames are not part of the protocol; send JSON text".into(),
            )),
            Event::Admitted(result) => {
                let Role::Admitting { want, offer } = std::mem::replace(&mut self.role, Role::Idle)
                else {
                    return out;
                };
                match result {
                    Ok(()) => {
                        self.role = Role::Starting(want);
                        out.push(Action::StartPeer { want, offer });
                    }
                    Err(refusal) => {
                        self.pending.clear();
                        out.push(rejected(want, refusal_text(want, &refusal)));
                    }
                }
            }
            Event::PeerStarted(result) => {
                let Role::Starting(want) = self.role else {
                    return out;
                };
                match result {
                    Ok((sdp_answer, viewer_id)) => {
                        self.role = Role::Live(want);
                        out.push(Action::ArmDeadline);
                        let r = Response::Accepted {
                            sdp_answer,
                            viewer_id,
                        };
                        out.push(Action::Send(match want {
                            Want::Viewer => ServerMessage::ViewerResponse(r),
                            Want::Presenter => ServerMessage::PresenterResponse(r),
                        }));
                        for c in std::mem::take(&mut self.pending) {
                            self.candidate(c, &mut out);
                        }
                    }
                    Err(message) => {
                        self.release(&mut out);
                        self.pending.clear();
                        out.push(rejected(want, message));
                    }
                }
            }
            Event::CandidateFailed(message) => out.push(error(message)),
            Event::LocalCandidate(candidate) => {
                if self.holds_peer() {
                    out.push(Action::Send(ServerMessage::IceCandidate { candidate }));
                }
            }
            Event::Connected => {
                if self.holds_peer() {
                    out.push(Action::DisarmDeadline);
                }
            }
            Event::PeerGone | Event::DeadlinePassed => {
                if self.release(&mut out) == Some(Want::Viewer) {
                    out.push(Action::Send(ServerMessage::StopCommunication));
                }
            }
            Event::PresenterChanged { now, mine_gone } => match (&self.role, now) {
                // Its presenter left, even if another took over at once: released like
                // every other viewer, then told who is there now.
                (Role::Live(Want::Viewer) | Role::Starting(Want::Viewer), _) if mine_gone => {
                    self.release(&mut out);
                    out.push(Action::Send(ServerMessage::StopCommunication));
                    if now != Presenter::None {
                        out.push(Action::Send(ServerMessage::PresenterAvailable));
                    }
                }
                (_, Presenter::None) => {}
                // Our own presenting is no news to us.
                (Role::Live(Want::Presenter) | Role::Starting(Want::Presenter), _) => {}
                _ => out.push(Action::Send(ServerMessage::PresenterAvailable)),
            },
        }
        out
    }

    fn offer(&mut self, want: Want, offer: String, out: &mut Vec<Action>) {
        // A new offer from the same client replaces what it was doing.
        self.release(out);
        if want == Want::Presenter && !self.may_present {
            self.pending.clear();
            out.push(rejected(
                want,
                "Presenting needs the admin password: log in at /login".into(),
            ));
            return;
        }
        let audio = want == Want::Presenter && crate::peer::offer_sends_audio(&offer);
        self.role = Role::Admitting { want, offer };
        out.push(Action::Admit { want, audio });
    }

    fn candidate(&mut self, c: Candidate, out: &mut Vec<Action>) {
        if let Err(e) = crate::peer::check_candidate(&c.candidate) {
            out.push(error(format!("onIceCandidate: {e}")));
            return;
        }
        if matches!(self.role, Role::Live(_)) {
            out.push(Action::AddCandidate(c));
        } else if self.pending.len() < MAX_PENDING_CANDIDATES {
            self.pending.push(c);
        } else {
            out.push(error(format!(
                "too many ICE candidates before an offer (limit {MAX_PENDING_CANDIDATES})"
            )));
        }
    }
}

/// The Kurento tutorial's wording for a refusal.
fn refusal_text(want: Want, refusal: &Refusal) -> String {
    match (want, refusal) {
        (_, Refusal::NoPresenter) => "No active presenter. Try again later...".into(),
        (_, Refusal::Full { max }) => {
            format!(
                "Too many viewers: this camera serves at most {max} at once. Try again later..."
            )
        }
        (Want::Presenter, Refusal::Taken { .. }) => {
            let mut text = refusal.to_string();
            if let Some(first) = text.get_mut(0..1) {
                first.make_ascii_uppercase();
            }
            format!("{text}. Try again later...")
        }
        (_, r) => r.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    const HOST: &str = "candidate:1 1 udp 2122260223 192.0.2.7 50000 typ host";

    fn text(v: serde_json::Value) -> Event {
        Event::Text(v.to_string())
    }

    fn viewer() -> Event {
        text(json!({"id": "viewer", "sdpOffer": "v=0 offer"}))
    }

    fn presenter() -> Event {
        text(json!({"id": "presenter", "sdpOffer": "v=0 offer"}))
    }

    fn candidate(line: &str) -> Event {
        text(
            json!({"id": "onIceCandidate", "candidate": {"candidate": line, "sdpMid": "0", "sdpMLineIndex": 0}}),
        )
    }

    fn sent(actions: &[Action]) -> Vec<serde_json::Value> {
        actions
            .iter()
            .filter_map(|a| match a {
                Action::Send(m) => Some(serde_json::from_str(&m.to_json()).unwrap()),
                _ => None,
            })
            .collect()
    }

    /// A viewer admitted and its peer up.
    fn live_viewer() -> Session {
        let mut s = Session::new(false);
        assert_eq!(
            s.handle(viewer()),
            vec![Action::Admit {
                want: Want::Viewer,
                audio: false
            }]
        );
        s.handle(Event::Admitted(Ok(())));
        s.handle(Event::PeerStarted(Ok(("v=0 answer".into(), Some(7)))));
        s
    }

    /// The presenter admitted and its peer up.
    fn live_presenter() -> Session {
        let mut p = Session::new(true);
        p.handle(presenter());
        p.handle(Event::Admitted(Ok(())));
        p.handle(Event::PeerStarted(Ok(("a".into(), None))));
        p
    }

    #[test]
    fn a_viewer_is_admitted_then_answered() {
        let mut s = Session::new(false);
        assert_eq!(
            s.handle(viewer()),
            vec![Action::Admit {
                want: Want::Viewer,
                audio: false
            }]
        );
        assert_eq!(
            s.handle(Event::Admitted(Ok(()))),
            vec![Action::StartPeer {
                want: Want::Viewer,
                offer: "v=0 offer".into()
            }]
        );
        let out = s.handle(Event::PeerStarted(Ok(("v=0 answer".into(), Some(7)))));
        assert_eq!(out[0], Action::ArmDeadline);
        assert_eq!(
            sent(&out),
            vec![
                json!({"id": "viewerResponse", "response": "accepted", "sdpAnswer": "v=0 answer", "viewerId": 7})
            ]
        );
        assert_eq!(s.handle(Event::Connected), vec![Action::DisarmDeadline]);
    }

    #[test]
    fn a_viewer_without_presenter_is_rejected() {
        let mut s = Session::new(false);
        s.handle(candidate(HOST));
        s.handle(viewer());
        let out = s.handle(Event::Admitted(Err(Refusal::NoPresenter)));
        assert_eq!(
            sent(&out),
            vec![
                json!({"id": "viewerResponse", "response": "rejected", "message": "No active presenter. Try again later..."})
            ]
        );
        assert!(!s.holds_peer());
        // Its early candidates went with the refusal.
        s.handle(viewer());
        s.handle(Event::Admitted(Ok(())));
        let out = s.handle(Event::PeerStarted(Ok(("a".into(), None))));
        assert!(!out.iter().any(|a| matches!(a, Action::AddCandidate(_))));
    }

    #[test]
    fn one_presenter_a_second_is_rejected_with_who_presents() {
        let mut s = Session::new(true);
        assert_eq!(
            s.handle(presenter()),
            vec![Action::Admit {
                want: Want::Presenter,
                audio: false
            }]
        );
        let out = s.handle(Event::Admitted(Err(Refusal::Taken {
            by: Presenter::Camera,
        })));
        assert_eq!(
            sent(&out),
            vec![
                json!({"id": "presenterResponse", "response": "rejected", "message": "Another presenter is active (the camera is streaming). Try again later..."})
            ]
        );
        assert!(!s.holds_peer());
    }

    #[test]
    fn presenting_needs_the_admin_password() {
        let mut s = Session::new(false);
        let out = s.handle(presenter());
        assert!(
            !out.contains(&Action::Admit {
                want: Want::Presenter,
                audio: false
            }),
            "admission not asked"
        );
        assert_eq!(sent(&out)[0]["response"], "rejected");
        assert!(
            sent(&out)[0]["message"]
                .as_str()
                .unwrap()
                .contains("admin password")
        );
    }

    #[test]
    fn candidates_before_the_offer_are_queued_and_applied_in_order() {
        let mut s = Session::new(false);
        let lines: Vec<String> = (0..3)
            .map(|i| HOST.replace("50000", &format!("5000{i}")))
            .collect();
        for l in &lines {
            assert!(s.handle(candidate(l)).is_empty());
        }
        s.handle(viewer());
        s.handle(Event::Admitted(Ok(())));
        let out = s.handle(Event::PeerStarted(Ok(("a".into(), Some(1)))));
        let applied: Vec<&str> = out
            .iter()
            .filter_map(|a| match a {
                Action::AddCandidate(c) => Some(c.candidate.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(
            applied,
            lines.iter().map(String::as_str).collect::<Vec<_>>()
        );
        // After the answer, candidates go straight to the peer.
        assert!(matches!(
            &s.handle(candidate(HOST))[..],
            [Action::AddCandidate(_)]
        ));
    }

    #[test]
    fn at_most_64_candidates_wait_for_an_offer() {
        let mut s = Session::new(false);
        for _ in 0..MAX_PENDING_CANDIDATES {
            assert!(s.handle(candidate(HOST)).is_empty());
        }
        let out = sent(&s.handle(candidate(HOST)));
        assert_eq!(out[0]["id"], "error");
        assert!(out[0]["message"].as_str().unwrap().contains("limit 64"));
    }

    #[test]
    fn malformed_candidates_are_answered_with_an_error_before_and_after_the_offer() {
        for bad in [
            "garbage",
            "candidate:1 1 udp 2122260223 not-an-address 50000 typ host",
        ] {
            let mut s = Session::new(false);
            let out = sent(&s.handle(candidate(bad)));
            assert_eq!(out[0]["id"], "error", "{bad} before the offer");
            assert!(
                out[0]["message"]
                    .as_str()
                    .unwrap()
                    .starts_with("onIceCandidate: ")
            );
            let mut s = live_viewer();
            let out = s.handle(candidate(bad));
            assert!(!out.iter().any(|a| matches!(a, Action::AddCandidate(_))));
            assert_eq!(sent(&out)[0]["id"], "error", "{bad} after the offer");
        }
        // An empty candidate (end of candidates) is fine.
        assert!(matches!(
            &live_viewer().handle(candidate(""))[..],
            [Action::AddCandidate(_)]
        ));
    }

    #[test]
    fn stop_releases_quietly_and_a_vanished_peer_tells_the_viewer() {
        let mut s = live_viewer();
        let out = s.handle(text(json!({"id": "stop"})));
        assert!(out.contains(&Action::Release));
        assert!(
            sent(&out).is_empty(),
            "stop: no stopCommunication to the one who asked"
        );
        let mut s = live_viewer();
        let out = s.handle(Event::PeerGone);
        assert!(out.contains(&Action::Release));
        assert_eq!(sent(&out), vec![json!({"id": "stopCommunication"})]);
        // A peer that never connects is reaped the same way.
        let mut s = live_viewer();
        let out = s.handle(Event::DeadlinePassed);
        assert!(out.contains(&Action::Release));
        assert_eq!(sent(&out), vec![json!({"id": "stopCommunication"})]);
        // A presenter whose peer goes is not told stopCommunication.
        let mut p = live_presenter();
        let out = p.handle(Event::PeerGone);
        assert!(out.contains(&Action::Release) && sent(&out).is_empty());
    }

    #[test]
    fn a_handover_is_stop_communication_then_presenter_available() {
        let mut s = live_viewer();
        let out = s.handle(Event::PresenterChanged {
            now: Presenter::Browser,
            mine_gone: true,
        });
        assert!(out.contains(&Action::Release));
        assert_eq!(
            sent(&out),
            vec![
                json!({"id": "stopCommunication"}),
                json!({"id": "presenterAvailable"})
            ]
        );
        // The presenter just gone, nobody after it: only stopCommunication.
        let mut s = live_viewer();
        let out = s.handle(Event::PresenterChanged {
            now: Presenter::None,
            mine_gone: true,
        });
        assert_eq!(sent(&out), vec![json!({"id": "stopCommunication"})]);
        // A waiting page hears of a new presenter; a presenter not of itself.
        let mut idle = Session::new(false);
        let out = idle.handle(Event::PresenterChanged {
            now: Presenter::Camera,
            mine_gone: false,
        });
        assert_eq!(sent(&out), vec![json!({"id": "presenterAvailable"})]);
        let mut p = live_presenter();
        assert!(
            p.handle(Event::PresenterChanged {
                now: Presenter::Browser,
                mine_gone: false
            })
            .is_empty()
        );
    }

    #[test]
    fn a_failed_peer_is_rejected_and_released() {
        let mut s = Session::new(false);
        s.handle(viewer());
        s.handle(Event::Admitted(Ok(())));
        let out = s.handle(Event::PeerStarted(Err("no video section".into())));
        assert!(out.contains(&Action::Release), "the lease goes back");
        assert_eq!(
            sent(&out),
            vec![
                json!({"id": "viewerResponse", "response": "rejected", "message": "no video section"})
            ]
        );
        assert!(!s.holds_peer());
        // Its gathered candidates are not passed on.
        assert!(
            s.handle(Event::LocalCandidate(protocol::Candidate {
                candidate: HOST.into(),
                sdp_mid: None,
                sdp_mline_index: None,
                username_fragment: None
            }))
            .is_empty()
        );
    }

    #[test]
    fn a_new_offer_replaces_the_old_role_and_garbage_is_an_error() {
        let mut s = live_viewer();
        let out = s.handle(viewer());
        assert_eq!(
            out,
            vec![
                Action::DisarmDeadline,
                Action::Release,
                Action::Admit {
                    want: Want::Viewer,
                    audio: false
                }
            ]
        );
        let out = sent(&s.handle(Event::Text("{not json".into())));
        assert_eq!(out[0]["id"], "error");
        let out = sent(&s.handle(Event::Binary));
        assert!(out[0]["message"].as_str().unwrap().contains("binary"));
    }
}
