//! Upstream push: when a board cannot feed everyone, edgecam publishes its one stream to
//! a bigger server (MediaMTX, LiveKit, Janus, a cloud service, another edgecam) over WHIP
//! (RFC 9725), alongside its local viewers and from the same single encode: the
//! publisher is one more subscriber of the hub. It reconnects with backoff (1 s → 30 s)
//! and shows its state in `/api/status`.

use crate::backoff::Backoff;
use crate::fanout::Hub;
use crate::peer::sdp::{gather, with_candidates};
use crate::peer::{PeerEvent, PeerFactory, ViewerPeer};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, watch};
use url::Url;

const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Each HTTP exchange with the server is bounded.
const HTTP_LIMIT: Duration = Duration::from_secs(10);
/// How long a stopping daemon waits for its session's DELETE.
const GOODBYE_LIMIT: Duration = Duration::from_secs(1);
/// From the answer to media flowing.
const CONNECT_LIMIT: Duration = Duration::from_secs(20);
/// Answers larger than this are refused.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

/// Why a publishing attempt ended.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    #[error("{0}")]
    Http(#[from] reqwest::Error),
    #[error("the server answered {code}: {body}")]
    Refused { code: u16, body: String },
    #[error("the server's answer has no usable Location")]
    NoLocation,
    #[error("the server's answer is larger than {MAX_ANSWER_BYTES} bytes")]
    TooLarge,
    #[error("the server's answer is not UTF-8 text")]
    NotText,
    #[error("{0}")]
    Peer(#[from] crate::peer::PeerError),
    #[error("the server's answer: {0}")]
    BadAnswer(crate::peer::PeerError),
    #[error("no media connection to the server")]
    NoMedia,
}

/// The WHIP server: one HTTP client (its TLS set up once) for every attempt.
struct Server {
    http: reqwest::Client,
    url: Url,
    token: Option<String>,
}

impl Server {
    fn new(url: Url, token: Option<String>) -> Result<Self, UpstreamError> {
        let http = reqwest::Client::builder()
            // A WHIP answer is the server's own; a redirect elsewhere is not followed
            // with our offer and token.
            .redirect(reqwest::redirect::Policy::none())
            .timeout(HTTP_LIMIT)
            .build()?;
        Ok(Self { http, url, token })
    }

    /// POSTs the offer; the answer's SDP and the session's URL.
    async fn offer(&self, offer: String) -> Result<(String, Url), UpstreamError> {
        let mut req = self
            .http
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/sdp")
            .body(offer);
        if let Some(t) = &self.token {
            req = req.bearer_auth(t);
        }
        let answer = req.send().await?;
        let code = answer.status().as_u16();
        let location = answer
            .headers()
            .get(reqwest::header::LOCATION)
            .and_then(|l| l.to_str().ok())
            .map(str::to_owned);
        let body = body_limited(answer).await?;
        if code != 201 {
            let body = body.trim().chars().take(200).collect();
            return Err(UpstreamError::Refused { code, body });
        }
        let resource = location
            .and_then(|l| self.url.join(&l).ok())
            .ok_or(UpstreamError::NoLocation)?;
        Ok((body, resource))
    }

    /// Ends the session. The token goes only where it was meant for: a session URL on
    /// another scheme, host or port gets the DELETE without it.
    async fn delete(&self, resource: &Url) {
        let mut req = self.http.delete(resource.clone());
        if let Some(t) = &self.token
            && resource.origin() == self.url.origin()
        {
            req = req.bearer_auth(t);
        }
        let _ = req.send().await;
    }
}

/// The body, refused past MAX_ANSWER_BYTES.
async fn body_limited(mut answer: reqwest::Response) -> Result<String, UpstreamError> {
    let mut body = Vec::new();
    while let Some(chunk) = answer.chunk().await? {
        if body.len() + chunk.len() > MAX_ANSWER_BYTES {
            return Err(UpstreamError::TooLarge);
        }
        body.extend_from_slice(&chunk);
    }
    String::from_utf8(body).map_err(|_| UpstreamError::NotText)
}

/// What `/api/status` shows under `upstream`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase", tag = "state")]
pub enum UpstreamState {
    Connecting,
    /// Publishing; `resource` is the session URL the server gave.
    Live {
        resource: String,
    },
    /// The last attempt failed or the session ended; the next is after `retry_s`.
    Error {
        detail: String,
        retry_s: u64,
    },
}

/// Publishes to `url` until `stop` turns true, showing how it goes in `state`.
pub async fn run(
    url: Url,
    token: Option<String>,
    peers: Arc<PeerFactory>,
    hub: Arc<Hub>,
    state: watch::Sender<Option<UpstreamState>>,
    mut stop: watch::Receiver<bool>,
) {
    let server = match Server::new(url, token) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!("upstream: {e}");
            state.send_replace(Some(UpstreamState::Error {
                detail: e.to_string(),
                retry_s: 0,
            }));
            return;
        }
    };
    let mut backoff = Backoff::new(Duration::from_secs(1), BACKOFF_MAX);
    loop {
        if *stop.borrow() {
            return;
        }
        state.send_replace(Some(UpstreamState::Connecting));
        let attempt = publish(&server, &peers, &hub, &state, stop.clone());
        tokio::pin!(attempt);
        let result = tokio::select! {
            r = &mut attempt => r,
            _ = stop.changed() => {
                // A live session ends itself with a DELETE, so the server frees the
                // publisher place at once instead of when it times the peer out.
                let _ = tokio::time::timeout(GOODBYE_LIMIT, attempt).await;
                return;
            }
        };
        let detail = match result {
            Ok(was_live) => {
                if was_live {
                    backoff.reset();
                }
                "the session ended".to_string()
            }
            Err(e) => e.to_string(),
        };
        let pause = backoff.next_pause();
        tracing::warn!(url = %server.url, retry_s = pause.as_secs(), "upstream: {detail}");
        state.send_replace(Some(UpstreamState::Error {
            detail,
            retry_s: pause.as_secs(),
        }));
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.changed() => return,
        }
    }
}

/// One session: offer, answer, media until the peer goes or `stop` turns true.
/// `Ok(true)` if it went live.
async fn publish(
    server: &Server,
    peers: &PeerFactory,
    hub: &Arc<Hub>,
    state: &watch::Sender<Option<UpstreamState>>,
    mut stop: watch::Receiver<bool>,
) -> Result<bool, UpstreamError> {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (peer, offer) = ViewerPeer::offer(peers, hub, events_tx).await?;
    let result = async {
        // Whole offer, candidates included: not every WHIP server takes trickle.
        let offer = with_candidates(&offer, &gather(&mut events).await);
        let (answer, resource) = server.offer(offer).await?;
        peer.accept_answer(&answer)
            .await
            .map_err(UpstreamError::BadAnswer)?;
        let connected = tokio::time::timeout(CONNECT_LIMIT, async {
            while let Some(e) = events.recv().await {
                match e {
                    PeerEvent::Connected => return true,
                    PeerEvent::Gone => return false,
                    _ => {}
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        if !connected {
            server.delete(&resource).await;
            return Err(UpstreamError::NoMedia);
        }
        tracing::info!(resource = %resource, "upstream: publishing");
        state.send_replace(Some(UpstreamState::Live {
            resource: resource.to_string(),
        }));
        loop {
            tokio::select! {
                e = events.recv() => if matches!(e, Some(PeerEvent::Gone) | None) { break },
                _ = stop.changed() => break,
            }
        }
        // Best effort: the server may be the thing that went away.
        server.delete(&resource).await;
        Ok(true)
    }
    .await;
    peer.close().await;
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn session_urls_resolve_against_the_whip_url() {
        let base = Url::parse("http://h:1/a/whip").unwrap();
        assert_eq!(
            base.join("/whip/abc").unwrap().as_str(),
            "http://h:1/whip/abc"
        );
        assert_eq!(base.join("res/1").unwrap().as_str(), "http://h:1/a/res/1");
        assert_eq!(base.join("https://o/x").unwrap().as_str(), "https://o/x");
        let v6 = Url::parse("http://[2001:db8::1]/whip").unwrap();
        assert_eq!(
            v6.join("/whip/1").unwrap().as_str(),
            "http://[2001:db8::1]/whip/1"
        );
        // The token follows only to the same scheme, host and port.
        let origin = |u: &str| Url::parse(u).unwrap().origin();
        assert_eq!(origin("https://h/whip"), origin("https://H:443/whip/1"));
        assert_ne!(origin("https://h/whip"), origin("http://h/whip/1"));
        assert_ne!(origin("https://h/whip"), origin("https://other/whip/1"));
    }
}
