//! One WebSocket client's session: it is a viewer, the presenter, or neither. Candidates
//! are queued until its peer exists, and the presenter's comings and goings are relayed.

use super::Signaling;
use super::protocol::{self, Candidate, ClientMessage, Response, ServerMessage};
use crate::peer::presenter::offer_sends_audio;
use crate::peer::{CONNECT_TIMEOUT, PeerEvent, PresenterPeer, ViewerPeer};
use crate::status::{Presenter, ViewerKind};
use axum::extract::ws::{Message, WebSocket};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;
use webrtc::peer_connection::RTCIceCandidateInit;

/// Candidates a client may send before its peer exists.
pub const MAX_PENDING_CANDIDATES: usize = 64;

struct Viewer {
    peer: ViewerPeer,
    _slot: super::ViewerSlot,
    /// The presenter generation it joined under (see `Status::presenter_gone_since`).
    generation: u64,
}

/// What this client currently is.
enum Role {
    Idle,
    Viewer(Viewer),
    Presenter(PresenterPeer),
}

struct Session {
    ctx: Arc<Signaling>,
    /// What this client's credentials grant (`None`: no credentials).
    access: Option<crate::auth::Role>,
    role: Role,
    pending: Vec<Candidate>,
    /// Set until the peer connects; past it the peer is reaped.
    deadline: Option<Instant>,
    /// Events of the current peer only: each peer gets its own channel, so a closing
    /// old peer's last events cannot end its successor.
    events: Option<mpsc::UnboundedReceiver<PeerEvent>>,
}

impl Session {
    /// Ends whatever this client was doing. A presenter leaving releases every viewer.
    async fn release(&mut self) {
        self.deadline = None;
        self.events = None;
        match std::mem::replace(&mut self.role, Role::Idle) {
            Role::Idle => {}
            Role::Viewer(v) => v.peer.close().await,
            Role::Presenter(p) => {
                self.ctx.status.release_presenter(Presenter::Browser);
                p.close().await;
            }
        }
    }

    /// A fresh event channel for a new peer.
    fn peer_events(&mut self) -> mpsc::UnboundedSender<PeerEvent> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.events = Some(rx);
        tx
    }

    fn is_presenter(&self) -> bool {
        matches!(self.role, Role::Presenter(_))
    }

    async fn add_candidate(&mut self, c: Candidate) -> Vec<ServerMessage> {
        if let Err(e) = crate::peer::check_candidate(&c.candidate) {
            return vec![ServerMessage::Error {
                message: format!("onIceCandidate: {e}"),
            }];
        }
        let result = match &self.role {
            Role::Viewer(v) => v.peer.add_candidate(from_wire(c)).await,
            Role::Presenter(p) => p.add_candidate(from_wire(c)).await,
            Role::Idle if self.pending.len() < MAX_PENDING_CANDIDATES => {
                self.pending.push(c);
                Ok(())
            }
            Role::Idle => {
                return vec![ServerMessage::Error {
                    message: format!(
                        "too many ICE candidates before an offer (limit {MAX_PENDING_CANDIDATES})"
                    ),
                }];
            }
        };
        match result {
            Ok(()) => vec![],
            Err(e) => vec![ServerMessage::Error {
                message: e.to_string(),
            }],
        }
    }

    /// Applies candidates that arrived before the peer existed.
    async fn apply_pending(&mut self) -> Vec<ServerMessage> {
        let mut out = Vec::new();
        for c in std::mem::take(&mut self.pending) {
            out.extend(self.add_candidate(c).await);
        }
        out
    }

    async fn viewer(&mut self, sdp_offer: String) -> Vec<ServerMessage> {
        // A new offer from the same client replaces what it was doing.
        self.release().await;
        let reject = |message: String| {
            vec![ServerMessage::ViewerResponse(Response::Rejected {
                message,
            })]
        };
        let generation = self.ctx.status.presenter_generation();
        if *self.ctx.status.presenter.borrow() == Presenter::None {
            self.pending.clear();
            return reject("No active presenter. Try again later...".into());
        }
        let Some(slot) = self.ctx.reserve_viewer() else {
            self.pending.clear();
            return reject(format!(
                "Too many viewers: this camera serves at most {} at once. Try again later...",
                self.ctx.status.viewers_max
            ));
        };
        let events = self.peer_events();
        match ViewerPeer::start(
            &self.ctx.peers,
            &sdp_offer,
            &self.ctx.hub,
            events,
            &self.ctx.status,
            ViewerKind::WebSocket,
        )
        .await
        {
            Ok((peer, answer)) => {
                let viewer_id = Some(peer.id());
                self.role = Role::Viewer(Viewer {
                    peer,
                    _slot: slot,
                    generation,
                });
                self.deadline = Some(Instant::now() + CONNECT_TIMEOUT);
                let mut out = vec![ServerMessage::ViewerResponse(Response::Accepted {
                    sdp_answer: answer,
                    viewer_id,
                })];
                out.extend(self.apply_pending().await);
                out
            }
            Err(e) => {
                self.pending.clear();
                // The failed peer may have gathered already: its candidates are not sent.
                self.events = None;
                reject(e.to_string())
            }
        }
    }

    async fn presenter(&mut self, sdp_offer: String) -> Vec<ServerMessage> {
        self.release().await;
        let reject = |message: String| {
            vec![ServerMessage::PresenterResponse(Response::Rejected {
                message,
            })]
        };
        if !self.ctx.auth.grants(self.access, crate::auth::Role::Admin) {
            self.pending.clear();
            return reject("Presenting needs the admin password: log in at /login".into());
        }
        let status = &self.ctx.status;
        if !status.claim_presenter(Presenter::Browser, offer_sends_audio(&sdp_offer)) {
            self.pending.clear();
            let who = match *status.presenter.borrow() {
                Presenter::Camera => "the camera is streaming",
                _ => "a browser is presenting",
            };
            return reject(format!(
                "Another presenter is active ({who}). Try again later..."
            ));
        }
        let events = self.peer_events();
        let status = &self.ctx.status;
        let started = PresenterPeer::start(
            &self.ctx.peers,
            &sdp_offer,
            &self.ctx.hub,
            self.ctx.keyframes.clone(),
            events,
            status,
        )
        .await;
        match started {
            Ok((peer, answer)) => {
                self.role = Role::Presenter(peer);
                self.deadline = Some(Instant::now() + CONNECT_TIMEOUT);
                tracing::info!("a browser is presenting");
                let mut out = vec![ServerMessage::PresenterResponse(Response::Accepted {
                    sdp_answer: answer,
                    viewer_id: None,
                })];
                out.extend(self.apply_pending().await);
                out
            }
            Err(e) => {
                status.release_presenter(Presenter::Browser);
                self.pending.clear();
                self.events = None;
                reject(e.to_string())
            }
        }
    }

    async fn handle(&mut self, text: &str) -> Vec<ServerMessage> {
        match protocol::parse(text) {
            Err(e) => vec![ServerMessage::Error {
                message: e.to_string(),
            }],
            Ok(ClientMessage::Viewer { sdp_offer }) => self.viewer(sdp_offer).await,
            Ok(ClientMessage::Presenter { sdp_offer }) => self.presenter(sdp_offer).await,
            Ok(ClientMessage::OnIceCandidate { candidate }) => self.add_candidate(candidate).await,
            Ok(ClientMessage::Stop) => {
                self.release().await;
                self.pending.clear();
                vec![]
            }
        }
    }
}

/// Runs one client until it closes or the daemon shuts down.
pub async fn run(ctx: Arc<Signaling>, access: Option<crate::auth::Role>, mut socket: WebSocket) {
    let mut presenter = ctx.status.presenter.subscribe();
    presenter.mark_unchanged();
    let mut closing = ctx.closing.clone();
    let mut s = Session {
        ctx,
        access,
        role: Role::Idle,
        pending: Vec::new(),
        deadline: None,
        events: None,
    };

    // A client that goes silent (a laptop closed, a network gone) is pinged, and closed
    // when not even a pong comes back: its peer and viewer place are freed.
    let mut ping = tokio::time::interval(s.ctx.ping_every);
    ping.reset();
    let mut last_heard = Instant::now();
    'session: loop {
        let deadline = s.deadline;
        let out: Vec<ServerMessage> = tokio::select! {
            // Presenter news first, so a shutting-down daemon still says stopCommunication.
            biased;
            changed = presenter.changed() => {
                if changed.is_err() { break; }
                let now = *presenter.borrow_and_update();
                match (now, &s.role) {
                    // Its presenter left, even if another took over at once: released
                    // like every other viewer, then told who is there now.
                    (_, Role::Viewer(v)) if s.ctx.status.presenter_gone_since(v.generation) => {
                        s.release().await;
                        let mut out = vec![ServerMessage::StopCommunication];
                        if now != Presenter::None {
                            out.push(ServerMessage::PresenterAvailable);
                        }
                        out
                    }
                    (Presenter::None, _) => vec![],
                    // Our own presenting is no news to us.
                    (_, Role::Presenter(_)) => vec![],
                    (_, _) => vec![ServerMessage::PresenterAvailable],
                }
            },
            _ = daemon_closing(&mut closing) => {
                let _ = socket.send(Message::Close(None)).await;
                break 'session;
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > s.ctx.silent_limit {
                    tracing::info!("closing a silent signaling connection");
                    let _ = socket.send(Message::Close(None)).await;
                    break 'session;
                }
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break 'session;
                }
                vec![]
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(text))) => {
                    last_heard = Instant::now();
                    s.handle(text.as_str()).await
                }
                Some(Ok(Message::Binary(_))) => vec![ServerMessage::Error {
                    message: "binary frames are not part of the protocol; send JSON text".into(),
                }],
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {
                    // Pings are answered by axum; pongs and pings show the client lives.
                    last_heard = Instant::now();
                    vec![]
                }
            },
            Some(event) = next_event(&mut s.events) => match event {
                PeerEvent::Candidate(c) => vec![ServerMessage::IceCandidate { candidate: to_wire(c) }],
                PeerEvent::GatheringComplete => vec![],
                PeerEvent::Connected => {
                    s.deadline = None;
                    vec![]
                }
                PeerEvent::Gone => {
                    let was_presenter = s.is_presenter();
                    s.release().await;
                    if was_presenter { vec![] } else { vec![ServerMessage::StopCommunication] }
                }
            },
            _ = sleep_until_opt(deadline) => {
                let was_viewer = matches!(s.role, Role::Viewer(_));
                s.release().await;
                if was_viewer { vec![ServerMessage::StopCommunication] } else { vec![] }
            }
        };
        for m in out {
            if socket
                .send(Message::Text(m.to_json().into()))
                .await
                .is_err()
            {
                break 'session;
            }
        }
    }
    s.release().await;
}

/// Resolves once the daemon shuts down (the guard `wait_for` returns is not Send).
async fn daemon_closing(closing: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

async fn next_event(rx: &mut Option<mpsc::UnboundedReceiver<PeerEvent>>) -> Option<PeerEvent> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

fn to_wire(c: RTCIceCandidateInit) -> Candidate {
    Candidate {
        candidate: c.candidate,
        sdp_mid: c.sdp_mid,
        sdp_mline_index: c.sdp_mline_index,
        username_fragment: c.username_fragment,
    }
}

fn from_wire(c: Candidate) -> RTCIceCandidateInit {
    RTCIceCandidateInit {
        candidate: c.candidate,
        sdp_mid: c.sdp_mid,
        sdp_mline_index: c.sdp_mline_index,
        username_fragment: c.username_fragment,
        url: None,
    }
}
