//! One WebSocket client's session: at most one viewer peer, candidates queued until
//! the peer exists, and the presenter's comings and goings relayed to it.

use super::Signaling;
use super::protocol::{self, Candidate, ClientMessage, Response, ServerMessage};
use crate::peer::{CONNECT_TIMEOUT, PeerEvent, ViewerPeer};
use crate::status::Presenter;
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
    /// Set until the peer connects; past it the peer is reaped.
    deadline: Option<Instant>,
}

/// Runs one client until it closes or the daemon shuts down.
pub async fn run(ctx: Arc<Signaling>, mut socket: WebSocket) {
    let (events_tx, mut events) = mpsc::unbounded_channel::<PeerEvent>();
    let mut presenter = ctx.status.presenter.subscribe();
    presenter.mark_unchanged();
    let mut viewer: Option<Viewer> = None;
    let mut pending: Vec<Candidate> = Vec::new();
    let mut closing = ctx.closing.clone();

    'session: loop {
        let deadline = viewer.as_ref().and_then(|v| v.deadline);
        let out: Vec<ServerMessage> = tokio::select! {
            // Presenter news first, so a shutting-down daemon still says stopCommunication.
            biased;
            changed = presenter.changed() => {
                if changed.is_err() { break; }
                let now = *presenter.borrow_and_update();
                match now {
                    Presenter::None => {
                        let had = viewer.take();
                        let was_viewing = had.is_some();
                        if let Some(v) = had { v.peer.close().await; }
                        if was_viewing { vec![ServerMessage::StopCommunication] } else { vec![] }
                    }
                    _ => vec![ServerMessage::PresenterAvailable],
                }
            },
            _ = daemon_closing(&mut closing) => {
                let _ = socket.send(Message::Close(None)).await;
                break 'session;
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(text))) => {
                    handle(&ctx, text.as_str(), &mut viewer, &mut pending, &events_tx).await
                }
                Some(Ok(Message::Binary(_))) => vec![ServerMessage::Error {
                    message: "binary frames are not part of the protocol; send JSON text".into(),
                }],
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => vec![], // ping/pong are answered by axum
            },
            Some(event) = events.recv() => match event {
                PeerEvent::Candidate(c) => vec![ServerMessage::IceCandidate { candidate: to_wire(c) }],
                PeerEvent::Connected => {
                    if let Some(v) = viewer.as_mut() { v.deadline = None; }
                    vec![]
                }
                PeerEvent::Gone => {
                    if let Some(v) = viewer.take() { v.peer.close().await; }
                    vec![ServerMessage::StopCommunication]
                }
            },
            _ = sleep_until_opt(deadline) => {
                if let Some(v) = viewer.take() { v.peer.close().await; }
                vec![ServerMessage::StopCommunication]
            }
        };
        for m in out {
            if socket.send(Message::Text(m.to_json().into())).await.is_err() {
                break 'session;
            }
        }
    }
    if let Some(v) = viewer.take() {
        v.peer.close().await;
    }
}

/// Resolves once the daemon shuts down (the guard `wait_for` returns is not Send).
async fn daemon_closing(closing: &mut tokio::sync::watch::Receiver<bool>) {
    let _ = closing.wait_for(|c| *c).await;
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

async fn handle(
    ctx: &Arc<Signaling>,
    text: &str,
    viewer: &mut Option<Viewer>,
    pending: &mut Vec<Candidate>,
    events: &mpsc::UnboundedSender<PeerEvent>,
) -> Vec<ServerMessage> {
    let msg = match protocol::parse(text) {
        Ok(m) => m,
        Err(e) => return vec![ServerMessage::Error { message: e.to_string() }],
    };
    match msg {
        ClientMessage::Viewer { sdp_offer } => {
            // A new offer from the same client replaces its previous viewer.
            if let Some(v) = viewer.take() {
                v.peer.close().await;
            }
            let reject = |message: String| vec![ServerMessage::ViewerResponse(Response::Rejected { message })];
            if *ctx.status.presenter.borrow() == Presenter::None {
                pending.clear();
                return reject("No active presenter. Try again later...".into());
            }
            let Some(slot) = ctx.reserve_viewer() else {
                pending.clear();
                return reject(format!(
                    "Too many viewers: this camera serves at most {} at once. Try again later...",
                    ctx.status.viewers_max
                ));
            };
            let started = ViewerPeer::start(
                &ctx.peers,
                &sdp_offer,
                &ctx.hub,
                events.clone(),
                ctx.status.channel_json.subscribe(),
            )
            .await;
            match started {
                Ok((peer, answer)) => {
                    let mut out = vec![ServerMessage::ViewerResponse(Response::Accepted { sdp_answer: answer })];
                    for c in pending.drain(..) {
                        if let Err(e) = peer.add_candidate(from_wire(c)).await {
                            out.push(ServerMessage::Error { message: e.to_string() });
                        }
                    }
                    *viewer = Some(Viewer {
                        peer,
                        _slot: slot,
                        deadline: Some(Instant::now() + CONNECT_TIMEOUT),
                    });
                    out
                }
                Err(e) => {
                    pending.clear();
                    reject(e.to_string())
                }
            }
        }
        ClientMessage::Presenter { .. } => vec![ServerMessage::PresenterResponse(Response::Rejected {
            message: match *ctx.status.presenter.borrow() {
                Presenter::Camera => "Another presenter is active: the camera is presenting. Try again later...".into(),
                Presenter::None => "Presenting from a browser is not enabled on this camera.".into(),
            },
        })],
        ClientMessage::OnIceCandidate { candidate } => match viewer {
            Some(v) => match v.peer.add_candidate(from_wire(candidate)).await {
                Ok(()) => vec![],
                Err(e) => vec![ServerMessage::Error { message: e.to_string() }],
            },
            None if pending.len() < MAX_PENDING_CANDIDATES => {
                pending.push(candidate);
                vec![]
            }
            None => vec![ServerMessage::Error {
                message: format!("too many ICE candidates before an offer (limit {MAX_PENDING_CANDIDATES})"),
            }],
        },
        ClientMessage::Stop => {
            if let Some(v) = viewer.take() {
                v.peer.close().await;
            }
            pending.clear();
            vec![]
        }
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
