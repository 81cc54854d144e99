//! One WebSocket client: carries out the [`kurento`](super::kurento) session's actions
//! against the admission service, the peer and the socket, and turns the socket, the
//! peer's events, presenter changes and timers into its events.

use super::Signaling;
use super::kurento::{Action, Event, Session, Want};
use super::protocol::{Candidate, ServerMessage};
use crate::admission::{Presenter, PresenterLease, ViewerLease};
use crate::peer::{PeerEvent, PresenterPeer, ViewerKind, ViewerPeer};
use axum::extract::ws::{Message, WebSocket};
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::time::Instant;
use webrtc::peer_connection::RTCIceCandidateInit;

/// What the session holds while it is a viewer or the presenter.
enum Held {
    None,
    Viewer(ViewerLease, Option<ViewerPeer>),
    Presenter(PresenterLease, Option<PresenterPeer>),
}

struct Client {
    ctx: Arc<Signaling>,
    held: Held,
    /// Set until the peer connects; past it the peer is reaped.
    deadline: Option<Instant>,
    /// Events of the current peer only: each peer gets its own channel, so a closing
    /// old peer's last events cannot end its successor.
    events: Option<mpsc::UnboundedReceiver<PeerEvent>>,
}

impl Client {
    /// Carries out `actions` (and those their answers lead to); the messages to send.
    async fn act(&mut self, machine: &mut Session, actions: Vec<Action>) -> Vec<ServerMessage> {
        let mut queue = VecDeque::from(actions);
        let mut out = Vec::new();
        while let Some(action) = queue.pop_front() {
            let answer = match action {
                Action::Send(m) => {
                    out.push(m);
                    None
                }
                Action::Admit { want, audio } => Some(Event::Admitted(self.admit(want, audio))),
                Action::StartPeer { want, offer } => {
                    Some(Event::PeerStarted(self.start(want, &offer).await))
                }
                Action::AddCandidate(c) => self
                    .add_candidate(c)
                    .await
                    .err()
                    .map(Event::CandidateFailed),
                Action::Release => {
                    self.release().await;
                    None
                }
                Action::ArmDeadline => {
                    self.deadline = Some(Instant::now() + self.ctx.peers.connect_timeout());
                    None
                }
                Action::DisarmDeadline => {
                    self.deadline = None;
                    None
                }
            };
            if let Some(event) = answer {
                queue.extend(machine.handle(event));
            }
        }
        out
    }

    fn admit(&mut self, want: Want, audio: bool) -> Result<(), crate::admission::Refusal> {
        let admission = &self.ctx.admission;
        self.held = match want {
            Want::Viewer => Held::Viewer(admission.join_viewer()?, None),
            Want::Presenter => Held::Presenter(admission.present(Presenter::Browser, audio)?, None),
        };
        Ok(())
    }

    async fn start(&mut self, want: Want, offer: &str) -> Result<(String, Option<u64>), String> {
        let (tx, rx) = mpsc::unbounded_channel();
        let ctx = &self.ctx;
        let started = match (&mut self.held, want) {
            (Held::Viewer(_, peer), Want::Viewer) => ViewerPeer::start(
                &ctx.peers,
                offer,
                &ctx.hub,
                &ctx.vp8,
                tx,
                ctx.admission.presenter_audio(),
                ViewerKind::WebSocket,
            )
            .await
            .map(|(p, answer)| {
                let id = p.id();
                *peer = Some(p);
                (answer, Some(id))
            }),
            (Held::Presenter(_, peer), Want::Presenter) => {
                PresenterPeer::start(&ctx.peers, offer, &ctx.hub, &ctx.vp8, tx)
                    .await
                    .map(|(p, answer)| {
                        tracing::info!("a browser is presenting");
                        *peer = Some(p);
                        (answer, None)
                    })
            }
            // The machine starts a peer only under the lease it was just granted.
            _ => return Err("no admission for this peer".into()),
        };
        // A failed peer may have gathered already: its candidates are not sent.
        self.events = started.is_ok().then_some(rx);
        started.map_err(|e| e.to_string())
    }

    async fn add_candidate(&self, c: Candidate) -> Result<(), String> {
        let result = match &self.held {
            Held::Viewer(_, Some(p)) => p.add_candidate(from_wire(c)).await,
            Held::Presenter(_, Some(p)) => p.add_candidate(from_wire(c)).await,
            _ => Ok(()),
        };
        result.map_err(|e| e.to_string())
    }

    /// Ends whatever this client was doing. A presenter leaving releases every viewer.
    async fn release(&mut self) {
        self.deadline = None;
        self.events = None;
        match std::mem::replace(&mut self.held, Held::None) {
            Held::None => {}
            Held::Viewer(lease, peer) => {
                if let Some(p) = peer {
                    p.close().await;
                }
                drop(lease);
            }
            Held::Presenter(lease, peer) => {
                // Viewers are told first; then the relay is taken down.
                drop(lease);
                if let Some(p) = peer {
                    p.close().await;
                }
            }
        }
    }

    /// Whether the presenter this client watches under has gone.
    fn presenter_gone(&self) -> bool {
        matches!(&self.held, Held::Viewer(lease, _) if lease.presenter_gone())
    }
}

/// Runs one client until it closes or the daemon shuts down.
pub async fn run(ctx: Arc<Signaling>, access: Option<crate::auth::Role>, mut socket: WebSocket) {
    let mut presenter = ctx.admission.watch_presenter();
    presenter.mark_unchanged();
    let mut closing = ctx.closing.clone();
    let mut machine = Session::new(ctx.auth.grants(access, crate::auth::Role::Admin));
    let mut c = Client {
        ctx,
        held: Held::None,
        deadline: None,
        events: None,
    };

    // A client that goes silent (a laptop closed, a network gone) is pinged, and closed
    // when not even a pong comes back: its peer and viewer place are freed.
    let mut ping = tokio::time::interval(c.ctx.ping_every);
    ping.reset();
    let mut last_heard = Instant::now();
    'session: loop {
        let deadline = c.deadline;
        let event = tokio::select! {
            // Presenter news first, so a shutting-down daemon still says stopCommunication.
            biased;
            changed = presenter.changed() => {
                if changed.is_err() { break; }
                let now = *presenter.borrow_and_update();
                Event::PresenterChanged { now, mine_gone: c.presenter_gone() }
            },
            _ = daemon_closing(&mut closing) => {
                let _ = socket.send(Message::Close(None)).await;
                break 'session;
            },
            _ = ping.tick() => {
                if last_heard.elapsed() > c.ctx.silent_limit {
                    tracing::info!("closing a silent signaling connection");
                    let _ = socket.send(Message::Close(None)).await;
                    break 'session;
                }
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    break 'session;
                }
                continue;
            },
            msg = socket.recv() => match msg {
                Some(Ok(Message::Text(text))) => {
                    last_heard = Instant::now();
                    Event::Text(text.as_str().to_owned())
                }
                Some(Ok(Message::Binary(_))) => Event::Binary,
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => break,
                Some(Ok(_)) => {
                    // Pings are answered by axum; pongs and pings show the client lives.
                    last_heard = Instant::now();
                    continue;
                }
            },
            Some(event) = next_event(&mut c.events) => match event {
                PeerEvent::Candidate(cand) => Event::LocalCandidate(to_wire(cand)),
                PeerEvent::GatheringComplete => continue,
                PeerEvent::Connected => Event::Connected,
                PeerEvent::Gone => Event::PeerGone,
            },
            _ = sleep_until_opt(deadline) => Event::DeadlinePassed,
        };
        let actions = machine.handle(event);
        for m in c.act(&mut machine, actions).await {
            if socket
                .send(Message::Text(m.to_json().into()))
                .await
                .is_err()
            {
                break 'session;
            }
        }
    }
    c.release().await;
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
