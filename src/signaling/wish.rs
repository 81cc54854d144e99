//! WHIP (RFC 9725) and WHEP (draft-ietf-wish-whep): presenting and watching by plain
//! HTTP. `POST /whip` or `/whep` with an SDP offer answers `201 Created` with the SDP
//! answer (our candidates included, so clients need no server-side trickle) and the
//! session's URL in `Location`; `PATCH` on that URL adds the client's candidates
//! (`application/trickle-ice-sdpfrag`); `DELETE` ends it. A WHEP viewer is a viewer like
//! any other (same hub, keyframe gate, `viewers.max`); a WHIP publisher is a presenter
//! under the same one-presenter rule, and needs the bearer token `whip.token`.

use super::Signaling;
use crate::admission::{Presenter, PresenterLease, Refusal, ViewerLease};
use crate::peer::sdp::{gather, with_candidates};
use crate::peer::{PeerError, PeerEvent, PresenterPeer, ViewerKind, ViewerPeer, offer_sends_audio};
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::mpsc;
use webrtc::peer_connection::RTCIceCandidateInit;

/// Offers larger than this are refused (a real offer is a few KiB).
pub const MAX_SDP_BYTES: usize = 64 * 1024;

/// Live WHIP and WHEP sessions by id.
#[derive(Default)]
pub struct Sessions {
    map: Mutex<HashMap<String, Arc<Session>>>,
}

struct Session {
    /// `None` once closed.
    peer: tokio::sync::Mutex<Option<Peer>>,
}

enum Peer {
    /// A WHEP viewer, holding its place among `viewers.max`.
    Viewer(ViewerPeer, ViewerLease),
    /// The WHIP publisher: it holds the presenter slot until it ends.
    Presenter(PresenterPeer, PresenterLease),
}

impl Peer {
    async fn add_candidate(&self, c: RTCIceCandidateInit) -> Result<(), PeerError> {
        match self {
            Peer::Viewer(p, _) => p.add_candidate(c).await,
            Peer::Presenter(p, _) => p.add_candidate(c).await,
        }
    }

    async fn close(self) {
        match self {
            Peer::Viewer(p, _lease) => p.close().await,
            Peer::Presenter(p, lease) => {
                drop(lease);
                p.close().await;
                tracing::info!("the WHIP publisher left");
            }
        }
    }

    fn is_presenter(&self) -> bool {
        matches!(self, Peer::Presenter(..))
    }
}

impl Sessions {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Arc<Session>>> {
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many WHEP sessions are live.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Ends every session (the daemon is stopping).
    pub async fn end_all(&self) {
        let ids: Vec<String> = self.lock().keys().cloned().collect();
        for id in ids {
            self.end(&id).await;
        }
    }

    async fn end(&self, id: &str) -> bool {
        let Some(session) = self.lock().remove(id) else {
            return false;
        };
        if let Some(peer) = session.peer.lock().await.take() {
            peer.close().await;
        }
        true
    }
}

fn error(code: StatusCode, message: &str) -> Response {
    (
        code,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{message}\n"),
    )
        .into_response()
}

/// Whether the request's `Content-Type` is `expected` (parameters ignored).
fn content_type_is(headers: &HeaderMap, expected: &str) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case(expected))
}

/// The offer of a POST, or the answer to give instead.
pub fn read_offer(headers: &HeaderMap, body: &Bytes) -> Result<String, Response> {
    if !content_type_is(headers, "application/sdp") {
        return Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "an offer is sent as Content-Type: application/sdp",
        ));
    }
    if body.len() > MAX_SDP_BYTES {
        return Err(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            "the offer is too large",
        ));
    }
    let Ok(offer) = std::str::from_utf8(body) else {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "malformed SDP: not UTF-8 text",
        ));
    };
    let parsed = crate::peer::sdp::parse(offer);
    if parsed.is_none_or(|sdp| sdp.media_descriptions.is_empty()) {
        return Err(error(
            StatusCode::BAD_REQUEST,
            "malformed SDP: an offer starts with v=0 and has a media section",
        ));
    }
    Ok(offer.to_string())
}

fn unavailable(message: &str, retry_s: &'static str) -> Response {
    let mut r = error(StatusCode::SERVICE_UNAVAILABLE, message);
    r.headers_mut()
        .insert(header::RETRY_AFTER, HeaderValue::from_static(retry_s));
    r
}

/// WHEP: watch.
pub async fn post_whep(
    State(sig): State<Arc<Signaling>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let offer = match read_offer(&headers, &body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    detached(async move {
        let lease = match sig.admission.join_viewer() {
            Ok(lease) => lease,
            Err(refusal) => return refused(&refusal),
        };
        let (events_tx, events) = mpsc::unbounded_channel();
        match ViewerPeer::start(
            &sig.peers,
            &offer,
            &sig.hub,
            &sig.vp8,
            events_tx,
            sig.admission.presenter_audio(),
            ViewerKind::Whep,
        )
        .await
        {
            Ok((peer, answer)) => {
                created(&sig, "whep", Peer::Viewer(peer, lease), answer, events).await
            }
            Err(e) => refused_offer(e),
        }
    })
    .await
}

/// Makes a session in a task of its own and waits for it. A client hanging up drops the
/// request's future; cut off halfway, the setup would keep a claimed presenter or a
/// viewer place for good. Finished, a session its client never heard of is reaped like
/// any other that never connects.
async fn detached(setup: impl Future<Output = Response> + Send + 'static) -> Response {
    tokio::spawn(setup).await.unwrap_or_else(|e| {
        error(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("making the session failed: {e}"),
        )
    })
}

/// An admission refusal as HTTP: 503 with a retry time while there is nothing to watch
/// or no room, 409 while someone else presents.
fn refused(refusal: &Refusal) -> Response {
    match refusal {
        Refusal::NoPresenter => unavailable(
            "no presenter: the camera is stopped and nobody presents",
            "5",
        ),
        Refusal::Full { .. } => unavailable(&refusal.to_string(), "10"),
        Refusal::Closing => unavailable(&refusal.to_string(), "5"),
        Refusal::Taken { by } => {
            let who = match by {
                Presenter::Camera => "the camera is streaming",
                _ => "another publisher is presenting",
            };
            error(
                StatusCode::CONFLICT,
                &format!("another presenter is active ({who})"),
            )
        }
    }
}

/// The answer to an offer no peer could be made for: the offer's fault (400), a
/// momentary shortage (503), or ours (500).
fn refused_offer(e: PeerError) -> Response {
    match e {
        PeerError::BadOffer(_) => error(StatusCode::BAD_REQUEST, &format!("malformed SDP: {e}")),
        PeerError::NoVideo
        | PeerError::NoCommonCodec { .. }
        | PeerError::PresenterCodec { .. }
        | PeerError::Unanswerable(_)
        | PeerError::BadCandidate(_) => error(StatusCode::BAD_REQUEST, &e.to_string()),
        PeerError::NoPort(_) => unavailable(&e.to_string(), "5"),
        PeerError::WebRtc(_) => error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

/// WHIP: present, under the one-presenter rule. Needs the bearer token.
pub async fn post_whip(
    State(sig): State<Arc<Signaling>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_bearer(&sig, &headers) {
        return r;
    }
    let offer = match read_offer(&headers, &body) {
        Ok(o) => o,
        Err(r) => return r,
    };
    detached(async move {
        let lease = match sig
            .admission
            .present(Presenter::Browser, offer_sends_audio(&offer))
        {
            Ok(lease) => lease,
            Err(refusal) => return refused(&refusal),
        };
        let (events_tx, events) = mpsc::unbounded_channel();
        let started = PresenterPeer::start(&sig.peers, &offer, &sig.hub, &sig.vp8, events_tx).await;
        match started {
            Ok((peer, answer)) => {
                tracing::info!("a WHIP publisher is presenting");
                created(&sig, "whip", Peer::Presenter(peer, lease), answer, events).await
            }
            // The lease goes with the error: the slot is free again.
            Err(e) => refused_offer(e),
        }
    })
    .await
}

/// `Authorization: Bearer <whip.token>`, compared in constant time.
fn check_bearer(sig: &Signaling, headers: &HeaderMap) -> Result<(), Response> {
    let Some(token) = sig.whip_token.as_deref() else {
        return Err(error(
            StatusCode::FORBIDDEN,
            "WHIP is off: set whip.token in the config",
        ));
    };
    let given = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .unwrap_or("");
    let same = given.len() == token.len()
        && given
            .bytes()
            .zip(token.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b))
            == 0;
    if same {
        Ok(())
    } else {
        let mut r = error(StatusCode::UNAUTHORIZED, "WHIP needs the bearer token");
        r.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"edgecam\""),
        );
        Err(r)
    }
}

/// Registers the session and answers 201 with the answer, `Location` and `Link`s.
async fn created(
    sig: &Arc<Signaling>,
    kind: &str,
    peer: Peer,
    answer: String,
    mut events: mpsc::UnboundedReceiver<PeerEvent>,
) -> Response {
    // Our candidates go into the answer: most WHIP/WHEP clients take no server trickle.
    let answer = with_candidates(&answer, &gather(&mut events).await);
    let id = session_id();
    let session = Arc::new(Session {
        peer: tokio::sync::Mutex::new(Some(peer)),
    });
    sig.wish.lock().insert(id.clone(), session.clone());
    tokio::spawn(watch_session(
        sig.clone(),
        id.clone(),
        session.clone(),
        events,
    ));

    let mut r = (
        StatusCode::CREATED,
        [(header::CONTENT_TYPE, "application/sdp")],
        answer,
    )
        .into_response();
    if let Ok(v) = HeaderValue::from_str(&format!("/{kind}/{id}")) {
        r.headers_mut().insert(header::LOCATION, v);
    }
    for link in ice_server_links(&sig.peers.ice_server_urls()) {
        if let Ok(v) = HeaderValue::from_str(&link) {
            r.headers_mut().append(header::LINK, v);
        }
    }
    r
}

/// Ends the session when its peer goes away or never connects; a viewer's also when
/// the presenter it joined under leaves.
async fn watch_session(
    sig: Arc<Signaling>,
    id: String,
    session: Arc<Session>,
    mut events: mpsc::UnboundedReceiver<PeerEvent>,
) {
    let viewer = matches!(*session.peer.lock().await, Some(Peer::Viewer(..)));
    let mut presenter = sig.admission.watch_presenter();
    // Checked at once too: the presenter may have left while the answer was made.
    presenter.mark_changed();
    let mut connected = false;
    let deadline = tokio::time::Instant::now() + sig.peers.connect_timeout();
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Some(PeerEvent::Connected) => connected = true,
                Some(PeerEvent::Gone) | None => break,
                Some(_) => {}
            },
            _ = tokio::time::sleep_until(deadline), if !connected => break,
            changed = presenter.changed(), if viewer => {
                presenter.borrow_and_update();
                let gone = match &*session.peer.lock().await {
                    Some(Peer::Viewer(_, lease)) => lease.presenter_gone(),
                    _ => true,
                };
                if changed.is_err() || gone {
                    break;
                }
            }
        }
    }
    sig.wish.end(&id).await;
}

pub async fn patch_whep(
    State(sig): State<Arc<Signaling>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    patch(&sig, &id, false, &headers, &body).await
}

pub async fn patch_whip(
    State(sig): State<Arc<Signaling>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(r) = check_bearer(&sig, &headers) {
        return r;
    }
    patch(&sig, &id, true, &headers, &body).await
}

async fn patch(
    sig: &Signaling,
    id: &str,
    presenter: bool,
    headers: &HeaderMap,
    body: &Bytes,
) -> Response {
    let Some(session) = sig.wish.lock().get(id).cloned() else {
        return error(StatusCode::NOT_FOUND, "no such session");
    };
    if !content_type_is(headers, "application/trickle-ice-sdpfrag") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "candidates are sent as Content-Type: application/trickle-ice-sdpfrag",
        );
    }
    if body.len() > MAX_SDP_BYTES {
        return error(StatusCode::PAYLOAD_TOO_LARGE, "the fragment is too large");
    }
    let Ok(frag) = std::str::from_utf8(body) else {
        return error(StatusCode::BAD_REQUEST, "malformed SDP fragment: not UTF-8");
    };
    let peer = session.peer.lock().await;
    let Some(peer) = peer.as_ref().filter(|p| p.is_presenter() == presenter) else {
        return error(StatusCode::NOT_FOUND, "no such session");
    };
    for candidate in fragment_candidates(frag) {
        // An unusable or malformed candidate is skipped; the others still count.
        let _ = peer.add_candidate(candidate).await;
    }
    StatusCode::NO_CONTENT.into_response()
}

pub async fn delete_whep(State(sig): State<Arc<Signaling>>, Path(id): Path<String>) -> Response {
    delete(&sig, &id, false).await
}

pub async fn delete_whip(
    State(sig): State<Arc<Signaling>>,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(r) = check_bearer(&sig, &headers) {
        return r;
    }
    delete(&sig, &id, true).await
}

async fn delete(sig: &Signaling, id: &str, presenter: bool) -> Response {
    let session = sig.wish.lock().get(id).cloned();
    let is_kind = match session {
        Some(session) => session
            .peer
            .lock()
            .await
            .as_ref()
            .is_some_and(|p| p.is_presenter() == presenter),
        None => false,
    };
    if is_kind && sig.wish.end(id).await {
        StatusCode::OK.into_response()
    } else {
        error(StatusCode::NOT_FOUND, "no such session")
    }
}

/// CORS preflight: a page on another origin may use WHIP and WHEP.
pub async fn options() -> Response {
    (StatusCode::NO_CONTENT, [("accept-post", "application/sdp")]).into_response()
}

/// CORS headers on every WHIP/WHEP answer, errors included (else the player sees only a
/// network error).
pub async fn cors(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let mut r = next.run(req).await;
    let h = r.headers_mut();
    h.insert(
        header::ACCESS_CONTROL_ALLOW_ORIGIN,
        HeaderValue::from_static("*"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_METHODS,
        HeaderValue::from_static("POST, PATCH, DELETE, OPTIONS"),
    );
    h.insert(
        header::ACCESS_CONTROL_ALLOW_HEADERS,
        HeaderValue::from_static("Content-Type, Authorization, If-Match"),
    );
    h.insert(
        header::ACCESS_CONTROL_EXPOSE_HEADERS,
        HeaderValue::from_static("Location, Link, Retry-After"),
    );
    r
}

/// The candidates of a trickle-ice-sdpfrag, each with the `a=mid` it follows.
pub fn fragment_candidates(frag: &str) -> Vec<RTCIceCandidateInit> {
    let mut mid: Option<String> = None;
    let mut index: i64 = -1;
    let mut out = Vec::new();
    for line in frag.lines().map(str::trim) {
        if line.starts_with("m=") {
            index += 1;
        } else if let Some(m) = line.strip_prefix("a=mid:") {
            mid = Some(m.trim().to_string());
        } else if let Some(c) = line.strip_prefix("a=")
            && c.starts_with("candidate:")
        {
            out.push(RTCIceCandidateInit {
                candidate: c.to_string(),
                sdp_mid: mid.clone().or_else(|| Some("0".into())),
                sdp_mline_index: Some(index.max(0) as u16),
                ..Default::default()
            });
        }
    }
    out
}

/// `Link` header values for the configured STUN/TURN servers (WHEP §4.4).
pub fn ice_server_links(urls: &[(String, Option<(String, String)>)]) -> Vec<String> {
    urls.iter()
        .map(|(url, cred)| match cred {
            Some((user, pass)) => format!(
                "<{url}>; rel=\"ice-server\"; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                user.replace('"', ""),
                pass.replace('"', "")
            ),
            None => format!("<{url}>; rel=\"ice-server\""),
        })
        .collect()
}

fn session_id() -> String {
    use argon2::password_hash::rand_core::{OsRng, RngCore};
    let mut bytes = [0u8; 16];
    OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fragment_candidates_keep_their_mid() {
        let frag = "a=ice-ufrag:abcd\r\na=ice-pwd:xyz\r\nm=video 9 UDP/TLS/RTP/SAVPF 0\r\na=mid:0\r\na=candidate:1 1 udp 1 127.0.0.1 9 typ host\r\na=end-of-candidates\r\n";
        let c = fragment_candidates(frag);
        assert_eq!(c.len(), 1);
        assert_eq!(c[0].candidate, "candidate:1 1 udp 1 127.0.0.1 9 typ host");
        assert_eq!(c[0].sdp_mid.as_deref(), Some("0"));
        assert_eq!(c[0].sdp_mline_index, Some(0));
        assert!(fragment_candidates("garbage\n\u{0}").is_empty());
    }

    #[test]
    fn ice_servers_as_link_headers() {
        let links = ice_server_links(&[
            ("stun:stun.example.net".into(), None),
            (
                "turn:turn.example.net:3478".into(),
                Some(("u".into(), "p\"w".into())),
            ),
        ]);
        assert_eq!(links[0], "<stun:stun.example.net>; rel=\"ice-server\"");
        assert_eq!(
            links[1],
            "<turn:turn.example.net:3478>; rel=\"ice-server\"; username=\"u\"; credential=\"pw\"; credential-type=\"password\""
        );
    }

    #[test]
    fn content_types_ignore_parameters() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/SDP; charset=utf-8"),
        );
        assert!(content_type_is(&h, "application/sdp"));
        assert!(!content_type_is(&HeaderMap::new(), "application/sdp"));
    }
}
