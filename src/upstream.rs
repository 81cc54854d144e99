//! Upstream push: when a board cannot feed everyone, edgecam publishes its one stream to
//! a bigger server (MediaMTX, LiveKit, Janus, a cloud service, another edgecam) over WHIP
//! (RFC 9725), alongside its local viewers and from the same single encode: the
//! publisher is one more subscriber of the hub. It reconnects with backoff (1 s → 30 s)
//! and shows its state in `/api/status`.

use crate::fanout::Hub;
use crate::peer::{PeerEvent, PeerFactory, ViewerPeer};
use crate::peer::sdp::{gather, with_candidates};
use serde::Serialize;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, watch};

const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Each HTTP exchange with the server is bounded.
const HTTP_LIMIT: Duration = Duration::from_secs(10);
/// How long a stopping daemon waits for its session's DELETE.
const GOODBYE_LIMIT: Duration = Duration::from_secs(1);
/// From the answer to media flowing.
const CONNECT_LIMIT: Duration = Duration::from_secs(20);
/// Answers larger than this are refused.
const MAX_ANSWER_BYTES: usize = 256 * 1024;

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

/// Publishes until `stop` turns true, showing how it goes in `state`.
pub async fn run(
    url: String,
    token: Option<String>,
    peers: Arc<PeerFactory>,
    hub: Arc<Hub>,
    state: watch::Sender<Option<UpstreamState>>,
    mut stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            return;
        }
        state.send_replace(Some(UpstreamState::Connecting));
        let attempt = publish(&url, token.as_deref(), &peers, &hub, &state, stop.clone());
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
                    backoff = Duration::from_secs(1);
                }
                "the session ended".to_string()
            }
            Err(e) => e,
        };
        tracing::warn!(url = %url, retry_s = backoff.as_secs(), "upstream: {detail}");
        state.send_replace(Some(UpstreamState::Error {
            detail,
            retry_s: backoff.as_secs(),
        }));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.changed() => return,
        }
        backoff = (backoff * 2).min(BACKOFF_MAX);
    }
}

/// One session: offer, answer, media until the peer goes or `stop` turns true.
/// `Ok(true)` if it went live.
async fn publish(
    url: &str,
    token: Option<&str>,
    peers: &PeerFactory,
    hub: &Arc<Hub>,
    state: &watch::Sender<Option<UpstreamState>>,
    mut stop: watch::Receiver<bool>,
) -> Result<bool, String> {
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let (peer, offer) = ViewerPeer::offer(peers, hub, events_tx)
        .await
        .map_err(|e| e.to_string())?;
    let result = async {
        // Whole offer, candidates included: not every WHIP server takes trickle.
        let offer = with_candidates(&offer, &gather(&mut events).await);
        let mut headers = vec![("Content-Type".to_string(), "application/sdp".to_string())];
        if let Some(t) = token {
            headers.push(("Authorization".into(), format!("Bearer {t}")));
        }
        let answer = request("POST", url, &headers, &offer).await?;
        if answer.status != 201 {
            return Err(format!(
                "the server answered {}: {}",
                answer.status,
                answer.body.trim().chars().take(200).collect::<String>()
            ));
        }
        let resource = answer
            .header("location")
            .map(|l| resolve(url, l))
            .ok_or("the server's answer has no Location")?;
        // The token goes only where it was meant for: a session URL on another host or
        // scheme gets the DELETE without it.
        let delete_headers = if same_origin(url, &resource) {
            &headers[1..]
        } else {
            &[]
        };
        peer.accept_answer(&answer.body)
            .await
            .map_err(|e| format!("the server's answer: {e}"))?;
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
            let _ = request("DELETE", &resource, delete_headers, "").await;
            return Err("no media connection to the server".into());
        }
        tracing::info!(resource = %resource, "upstream: publishing");
        state.send_replace(Some(UpstreamState::Live {
            resource: resource.clone(),
        }));
        loop {
            tokio::select! {
                e = events.recv() => if matches!(e, Some(PeerEvent::Gone) | None) { break },
                _ = stop.changed() => break,
            }
        }
        // Best effort: the server may be the thing that went away.
        let _ = request("DELETE", &resource, delete_headers, "").await;
        Ok(true)
    }
    .await;
    peer.close().await;
    result
}

/// A parsed `http://` or `https://` URL.
#[derive(Debug, PartialEq, Eq)]
pub struct Url {
    pub tls: bool,
    pub host: String,
    pub port: u16,
    pub path: String,
}

/// Parses the URLs `upstream.whip_url` may hold.
pub fn parse_url(url: &str) -> Result<Url, String> {
    let (tls, rest) = if let Some(r) = url.strip_prefix("https://") {
        (true, r)
    } else if let Some(r) = url.strip_prefix("http://") {
        (false, r)
    } else {
        return Err(format!("{url:?} is not an http:// or https:// URL"));
    };
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err("put credentials in upstream.token, not in the URL".into());
    }
    // An IPv6 literal is bracketed: `[2001:db8::1]` or `[2001:db8::1]:8443`.
    let (host, port) = match authority.strip_prefix('[') {
        Some(v6) => match v6.split_once(']') {
            Some((h, "")) => (h, None),
            Some((h, p)) => (h, Some(p.strip_prefix(':').unwrap_or(p))),
            None => return Err(format!("{url:?}: unclosed [ in the host")),
        },
        None => match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        },
    };
    let port = match port {
        Some(p) => p.parse().map_err(|_| format!("{url:?}: bad port {p:?}"))?,
        None => {
            if tls {
                443
            } else {
                80
            }
        }
    };
    if host.is_empty() || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(format!("{url:?} is not a usable URL"));
    }
    Ok(Url {
        tls,
        host: host.to_string(),
        port,
        path: path.to_string(),
    })
}

/// Whether two URLs have the same scheme, host and port.
fn same_origin(a: &str, b: &str) -> bool {
    match (parse_url(a), parse_url(b)) {
        (Ok(a), Ok(b)) => {
            (a.tls, a.host.to_ascii_lowercase(), a.port)
                == (b.tls, b.host.to_ascii_lowercase(), b.port)
        }
        _ => false,
    }
}

/// `location` (absolute or a path) against `base`.
pub fn resolve(base: &str, location: &str) -> String {
    if location.starts_with("http://") || location.starts_with("https://") {
        return location.to_string();
    }
    let Ok(u) = parse_url(base) else {
        return location.to_string();
    };
    let scheme = if u.tls { "https" } else { "http" };
    let host = if u.host.contains(':') {
        format!("[{}]", u.host)
    } else {
        u.host
    };
    if location.starts_with('/') {
        format!("{scheme}://{host}:{}{location}", u.port)
    } else {
        let dir = u.path.rsplit_once('/').map_or("", |(d, _)| d);
        format!("{scheme}://{host}:{}{dir}/{location}", u.port)
    }
}

/// An HTTP answer.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    headers: Vec<(String, String)>,
    pub body: String,
}

impl Answer {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// One HTTP/1.1 request (`Connection: close`), over TLS for https, bounded in time/size.
pub async fn request(
    method: &str,
    url: &str,
    headers: &[(String, String)],
    body: &str,
) -> Result<Answer, String> {
    let u = parse_url(url)?;
    let exchange = async {
        let tcp = tokio::net::TcpStream::connect((u.host.as_str(), u.port))
            .await
            .map_err(|e| format!("cannot connect to {}:{}: {e}", u.host, u.port))?;
        if u.tls {
            let mut roots = tokio_rustls::rustls::RootCertStore::empty();
            roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
            let config = tokio_rustls::rustls::ClientConfig::builder_with_provider(Arc::new(
                tokio_rustls::rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .map_err(|e| e.to_string())?
            .with_root_certificates(roots)
            .with_no_client_auth();
            let name = tokio_rustls::rustls::pki_types::ServerName::try_from(u.host.clone())
                .map_err(|e| format!("{}: {e}", u.host))?;
            let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
                .connect(name, tcp)
                .await
                .map_err(|e| format!("TLS with {}: {e}", u.host))?;
            exchange_on(stream, method, &u, headers, body).await
        } else {
            exchange_on(tcp, method, &u, headers, body).await
        }
    };
    tokio::time::timeout(HTTP_LIMIT, exchange)
        .await
        .map_err(|_| format!("{method} {url}: no answer in {} s", HTTP_LIMIT.as_secs()))?
}

async fn exchange_on<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    method: &str,
    u: &Url,
    headers: &[(String, String)],
    body: &str,
) -> Result<Answer, String> {
    let host = if u.host.contains(':') {
        format!("[{}]", u.host)
    } else {
        u.host.clone()
    };
    let mut req = format!(
        "{method} {} HTTP/1.1\r\nHost: {host}:{}\r\nConnection: close\r\nContent-Length: {}\r\n",
        u.path,
        u.port,
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    req.push_str(body);
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        match s.read(&mut chunk).await {
            Ok(0) => break,
            Ok(n) => {
                raw.extend_from_slice(&chunk[..n]);
                // Done once the answer is whole, even if the server keeps the
                // connection open against `Connection: close`.
                if is_complete(&raw) {
                    break;
                }
            }
            // TLS servers often close without close_notify; what came is the answer.
            Err(_) if !raw.is_empty() => break,
            Err(e) => return Err(e.to_string()),
        }
        if raw.len() > MAX_ANSWER_BYTES {
            return Err("the answer is too large".into());
        }
    }
    parse_answer(&raw)
}

/// Whether `raw` holds a whole answer: its head, and all of a body sized by
/// Content-Length or ended by the last chunk. Without either, only the end of the
/// connection tells.
fn is_complete(raw: &[u8]) -> bool {
    let Some(head_end) = raw.windows(4).position(|w| w == b"\r\n\r\n") else {
        return false;
    };
    let Ok(answer) = parse_answer(raw) else {
        return false;
    };
    let body = &raw[head_end + 4..];
    if answer
        .header("transfer-encoding")
        .is_some_and(|v| v.eq_ignore_ascii_case("chunked"))
    {
        return body.ends_with(b"0\r\n\r\n");
    }
    answer
        .header("content-length")
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| body.len() >= n)
}

/// Status, headers and body (by Content-Length, chunked, or to the end).
pub fn parse_answer(raw: &[u8]) -> Result<Answer, String> {
    let text = String::from_utf8_lossy(raw);
    let (head, rest) = text
        .split_once("\r\n\r\n")
        .ok_or("the server's answer is not HTTP")?;
    let mut lines = head.lines();
    let status = lines
        .next()
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|c| c.parse().ok())
        .ok_or("the server's answer has no status")?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect();
    let get = |name: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let body = if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        dechunk(rest)
    } else if let Some(n) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        rest.get(..n).unwrap_or(rest).to_string()
    } else {
        rest.to_string()
    };
    Ok(Answer {
        status,
        headers,
        body,
    })
}

fn dechunk(mut rest: &str) -> String {
    let mut out = String::new();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.split(';').next().unwrap_or("").trim(), 16) else {
            break;
        };
        if n == 0 {
            break;
        }
        let Some(data) = after.get(..n) else {
            out.push_str(after);
            break;
        };
        out.push_str(data);
        rest = after.get(n..).unwrap_or("").trim_start_matches("\r\n");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        assert_eq!(
            parse_url("http://10.0.0.2:8889/cam/whip").unwrap(),
            Url {
                tls: false,
                host: "10.0.0.2".into(),
                port: 8889,
                path: "/cam/whip".into()
            }
        );
        let u = parse_url("https://live.example.com/whip").unwrap();
        assert_eq!((u.tls, u.port, u.path.as_str()), (true, 443, "/whip"));
        let u = parse_url("http://[::1]:8080").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.path.as_str()),
            ("::1", 8080, "/")
        );
        for bad in [
            "ftp://x/",
            "http://",
            "http://h:x/",
            "http://u:p@h/",
            "http://h/a b",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
        assert_eq!(
            resolve("http://h:1/a/whip", "/whip/abc"),
            "http://h:1/whip/abc"
        );
        assert_eq!(resolve("http://h:1/a/whip", "res/1"), "http://h:1/a/res/1");
        assert_eq!(resolve("http://h/whip", "https://o/x"), "https://o/x");
        // IPv6 literals, with and without a port.
        let u = parse_url("https://[2001:db8::1]/whip").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("2001:db8::1", 443));
        let u = parse_url("http://[2001:db8::1]:8889/whip").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("2001:db8::1", 8889));
        assert!(parse_url("http://[2001:db8::1/whip").is_err());
        assert!(parse_url("http://[::1]x/").is_err());
        assert_eq!(
            resolve("http://[2001:db8::1]/whip", "/whip/1"),
            "http://[2001:db8::1]:80/whip/1"
        );
        // The token follows only to the same scheme, host and port.
        assert!(same_origin("https://h/whip", "https://H:443/whip/1"));
        assert!(!same_origin("https://h/whip", "http://h/whip/1"));
        assert!(!same_origin("https://h/whip", "https://other/whip/1"));
    }

    #[test]
    fn answers() {
        let a = parse_answer(
            b"HTTP/1.1 201 Created\r\nLocation: /whip/1\r\nContent-Length: 5\r\n\r\nv=0\r\nextra",
        )
        .unwrap();
        assert_eq!(
            (a.status, a.header("location"), a.body.as_str()),
            (201, Some("/whip/1"), "v=0\r\n")
        );
        let c = parse_answer(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nv=0\n\r\n3\r\nabc\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(c.body, "v=0\nabc");
        assert!(parse_answer(b"garbage").is_err());
        assert!(parse_answer(b"HTTP/1.1 xyz\r\n\r\n").is_err());
        assert_eq!(dechunk("zz\r\n"), "");
        assert_eq!(dechunk("10\r\nshort"), "short");
        // Whole answers are seen as such without waiting for the connection to close.
        assert!(is_complete(
            b"HTTP/1.1 201 Created\r\nContent-Length: 3\r\n\r\nv=0"
        ));
        assert!(!is_complete(
            b"HTTP/1.1 201 Created\r\nContent-Length: 4\r\n\r\nv=0"
        ));
        assert!(is_complete(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"));
        assert!(is_complete(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
        ));
        assert!(!is_complete(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
        ));
        assert!(!is_complete(b"HTTP/1.1 200 OK\r\n\r\nbody to the end"));
        assert!(!is_complete(b"HTTP/1.1 200 OK\r\nContent-Le"));
    }
}
