//! HTTPS on the listening port: the certificate (from files, or self-signed and kept in the
//! state directory), and a listener that hands axum finished TLS streams. Handshakes run in
//! their own tasks, bounded in number and time, so one slow client never holds up accepts.
//! A plain-HTTP request on the same port gets a redirect to the https:// URL, so
//! `http://camera.local:8080` typed by hand still lands on the page.

use crate::config::TlsMode;
use sha2::{Digest, Sha256};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls::ServerConfig;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio_rustls::server::TlsStream;

/// First byte of a TLS record carrying a handshake (ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;
/// A client must finish its handshake (or plain request head) within this.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// Connections between accept and finished handshake; beyond this new ones are dropped.
const MAX_HANDSHAKES: usize = 256;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} holds no PEM certificate")]
    NoCertificate { path: PathBuf },
    #[error("{path} holds no PEM private key (PKCS#8, PKCS#1 or SEC1)")]
    NoKey { path: PathBuf },
    #[error("certificate and key do not go together: {0}")]
    Mismatch(String),
    #[error("cannot make a self-signed certificate: {0}")]
    Generate(String),
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// What the daemon serves HTTPS with.
pub struct Tls {
    pub config: Arc<ServerConfig>,
    /// SHA-256 of the leaf certificate, as browsers show it (`AB:CD:…`).
    pub fingerprint: String,
    /// Where the certificate came from: `self-signed` or `files`.
    pub source: &'static str,
}

/// The certificate for `mode`, or None when TLS is off.
pub fn load(mode: &TlsMode, state_dir: &Path) -> Result<Option<Tls>, TlsError> {
    let (certs, key, source) = match mode {
        TlsMode::Off => return Ok(None),
        TlsMode::Files { cert, key } => (read_certs(cert)?, read_key(key)?, "files"),
        TlsMode::SelfSigned => {
            let dir = state_dir.join("tls");
            let (cert, key, names) = (dir.join("cert.pem"), dir.join("key.pem"), dir.join("names"));
            // Made anew only when missing or when the board was renamed (provisioning
            // can change the host name), so browsers are asked again only then.
            let subjects = subject_names(&crate::netif::hostname());
            let wanted = subjects.join(" ");
            let made_for = std::fs::read_to_string(&names).unwrap_or_default();
            if !cert.exists() || !key.exists() || made_for.trim() != wanted {
                generate(&dir, &cert, &key, subjects)?;
                std::fs::write(&names, &wanted).map_err(|source| TlsError::Write {
                    path: names.clone(),
                    source,
                })?;
            }
            (read_certs(&cert)?, read_key(&key)?, "self-signed")
        }
    };
    let fingerprint = fingerprint(&certs[0]);
    let mut config = ServerConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| TlsError::Mismatch(e.to_string()))?
    .with_no_client_auth()
    .with_single_cert(certs, key)
    .map_err(|e| TlsError::Mismatch(e.to_string()))?;
    // HTTP/1.1 only: the WebSocket upgrade and every client here speak it.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Some(Tls {
        config: Arc::new(config),
        fingerprint,
        source,
    }))
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read {
        path: path.to_owned(),
        source,
    })
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let pem = read(path)?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&pem)
        .filter_map(Result::ok)
        .collect();
    if certs.is_empty() {
        return Err(TlsError::NoCertificate {
            path: path.to_owned(),
        });
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    PrivateKeyDer::from_pem_slice(&read(path)?).map_err(|_| TlsError::NoKey {
        path: path.to_owned(),
    })
}

fn fingerprint(cert: &CertificateDer<'_>) -> String {
    // The colon-separated upper-case form browsers show.
    let hex = hex::encode_upper(Sha256::digest(cert.as_ref()));
    hex.as_bytes()
        .chunks(2)
        .map(|pair| String::from_utf8_lossy(pair))
        .collect::<Vec<_>>()
        .join(":")
}

/// Names a self-signed certificate is made out to: the host name, its `.local` mDNS
/// name, and loopback.
fn subject_names(hostname: &str) -> Vec<String> {
    let mut names = vec![
        "localhost".to_string(),
        "127.0.0.1".to_string(),
        "::1".to_string(),
    ];
    let valid = !hostname.is_empty()
        && hostname.len() <= 63
        && hostname
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-');
    if valid && hostname != "localhost" {
        names.insert(0, format!("{hostname}.local"));
        names.insert(0, hostname.to_string());
    }
    names
}

/// Makes a self-signed certificate and key; the key is readable by its owner only.
fn generate(dir: &Path, cert: &Path, key: &Path, subjects: Vec<String>) -> Result<(), TlsError> {
    let made = rcgen::generate_simple_self_signed(subjects)
        .map_err(|e| TlsError::Generate(e.to_string()))?;
    let write_err = |path: &Path| {
        let path = path.to_owned();
        move |source| TlsError::Write { path, source }
    };
    std::fs::create_dir_all(dir).map_err(write_err(dir))?;
    crate::auth::write_secret(key, made.signing_key.serialize_pem().as_bytes())
        .map_err(write_err(key))?;
    std::fs::write(cert, made.cert.pem()).map_err(write_err(cert))?;
    tracing::info!(path = %cert.display(), "made a self-signed TLS certificate");
    Ok(())
}

/// Accepts TCP, completes TLS in background tasks, yields finished streams to axum.
pub struct TlsListener {
    ready: mpsc::Receiver<(TlsStream<TcpStream>, SocketAddr)>,
    local: SocketAddr,
    /// Ends with the listener.
    _accept_task: crate::task::AbortOnDrop,
}

impl TlsListener {
    pub fn new(listener: TcpListener, config: Arc<ServerConfig>) -> std::io::Result<Self> {
        let local = listener.local_addr()?;
        let (tx, ready) = mpsc::channel(64);
        let acceptor = TlsAcceptor::from(config);
        let slots = Arc::new(Semaphore::new(MAX_HANDSHAKES));
        let accept_task = crate::task::AbortOnDrop::spawn(async move {
            loop {
                let (tcp, peer) = match listener.accept().await {
                    Ok(c) => c,
                    Err(e) => {
                        // Out of file descriptors and the like: wait rather than spin.
                        tracing::warn!("accept: {e}");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        continue;
                    }
                };
                let Ok(slot) = slots.clone().try_acquire_owned() else {
                    tracing::debug!(%peer, "too many handshakes in progress; dropped");
                    continue;
                };
                let (acceptor, tx) = (acceptor.clone(), tx.clone());
                tokio::spawn(async move {
                    let _slot = slot;
                    let _ = tcp.set_nodelay(true);
                    if let Ok(Some(tls)) =
                        tokio::time::timeout(HANDSHAKE_TIMEOUT, handshake(tcp, acceptor, local))
                            .await
                    {
                        let _ = tx.send((tls, peer)).await;
                    }
                });
            }
        });
        Ok(Self {
            ready,
            local,
            _accept_task: accept_task,
        })
    }
}

/// TLS for a ClientHello; a redirect to https for a plain HTTP request; None otherwise.
async fn handshake(
    tcp: TcpStream,
    acceptor: TlsAcceptor,
    local: SocketAddr,
) -> Option<TlsStream<TcpStream>> {
    let mut first = [0u8; 1];
    if tcp.peek(&mut first).await.ok()? == 0 {
        return None;
    }
    if first[0] == TLS_HANDSHAKE {
        return acceptor.accept(tcp).await.ok();
    }
    let service = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let response = redirect_to_https(&req, local);
        async move { Ok::<_, std::convert::Infallible>(response) }
    });
    let _ = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(hyper_util::rt::TokioIo::new(tcp), service)
        .await;
    None
}

/// `308` to the same path over https (308 keeps the method, so a WHEP POST follows too).
fn redirect_to_https(
    req: &hyper::Request<hyper::body::Incoming>,
    local: SocketAddr,
) -> hyper::Response<String> {
    let host = req
        .headers()
        .get(hyper::header::HOST)
        .and_then(|h| h.to_str().ok());
    let path = req
        .uri()
        .path_and_query()
        .map(|p| p.as_str())
        .unwrap_or("/");
    let mut response = hyper::Response::new(String::new());
    match https_location(host, path, local) {
        Some(location) => {
            *response.status_mut() = hyper::StatusCode::PERMANENT_REDIRECT;
            *response.body_mut() = format!("This camera speaks HTTPS: {location}\n");
            if let Ok(v) = hyper::header::HeaderValue::from_str(&location) {
                response.headers_mut().insert(hyper::header::LOCATION, v);
            }
        }
        None => {
            *response.status_mut() = hyper::StatusCode::BAD_REQUEST;
            *response.body_mut() =
                "This camera speaks HTTPS; the request had no valid Host.\n".into();
        }
    }
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// The https URL for a plain request, from its Host header (port kept: HTTPS is served on
/// the same port). None for a missing or malformed Host.
fn https_location(host: Option<&str>, path: &str, local: SocketAddr) -> Option<String> {
    let host = host?;
    let ok = !host.is_empty()
        && host.len() <= 255
        && host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-.:[]_".contains(c));
    if !ok || !path.starts_with('/') || path.starts_with("//") {
        return None;
    }
    // A Host without a port means the default one; HTTPS is on ours.
    let has_port = host.rsplit_once(':').is_some_and(|(h, p)| {
        !p.is_empty()
            && p.chars().all(|c| c.is_ascii_digit())
            && (!h.contains(':') || h.ends_with(']'))
    });
    let authority = if has_port || local.port() == 443 {
        host.to_string()
    } else {
        format!("{host}:{}", local.port())
    };
    Some(format!("https://{authority}{path}"))
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        match self.ready.recv().await {
            Some(c) => c,
            // The accept task ended (only when aborted at shutdown): nothing more comes.
            None => std::future::pending().await,
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        Ok(self.local)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn host_name_comes_from_the_kernel() {
        let expected = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
        assert_eq!(crate::netif::hostname(), expected.trim());
    }

    #[test]
    fn self_signed_names_cover_host_mdns_and_loopback() {
        assert_eq!(
            subject_names("cam-7"),
            ["cam-7", "cam-7.local", "localhost", "127.0.0.1", "::1"]
        );
        assert_eq!(subject_names(""), ["localhost", "127.0.0.1", "::1"]);
        assert_eq!(
            subject_names("bad name/x"),
            ["localhost", "127.0.0.1", "::1"]
        );
    }

    #[test]
    fn plain_requests_are_sent_to_the_same_port_over_https() {
        let local: SocketAddr = "0.0.0.0:8080".parse().unwrap();
        assert_eq!(
            https_location(Some("cam.local:8080"), "/presenter?x=1", local).as_deref(),
            Some("https://cam.local:8080/presenter?x=1")
        );
        assert_eq!(
            https_location(Some("cam.local"), "/", local).as_deref(),
            Some("https://cam.local:8080/")
        );
        assert_eq!(
            https_location(Some("[::1]:8080"), "/", local).as_deref(),
            Some("https://[::1]:8080/")
        );
        assert_eq!(
            https_location(Some("[::1]"), "/", local).as_deref(),
            Some("https://[::1]:8080/")
        );
        let on_443: SocketAddr = "0.0.0.0:443".parse().unwrap();
        assert_eq!(
            https_location(Some("cam"), "/", on_443).as_deref(),
            Some("https://cam/")
        );
        for (host, path) in [
            (None, "/"),
            (Some(""), "/"),
            (Some("evil.com/x"), "/"),
            (Some("a b"), "/"),
            (Some("cam"), "//evil.com/"),
            (Some("cam"), "*"),
        ] {
            assert_eq!(https_location(host, path, local), None, "{host:?} {path}");
        }
    }

    #[test]
    fn self_signed_certificate_is_made_once_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let first = load(&TlsMode::SelfSigned, dir.path()).unwrap().unwrap();
        assert_eq!(first.source, "self-signed");
        assert_eq!(first.fingerprint.len(), 32 * 3 - 1);
        let key = dir.path().join("tls/key.pem");
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "key readable by its owner only");
        let again = load(&TlsMode::SelfSigned, dir.path()).unwrap().unwrap();
        assert_eq!(again.fingerprint, first.fingerprint, "kept across restarts");
        // Renamed board (as far as the kept names say): a new certificate.
        std::fs::write(dir.path().join("tls/names"), "old-name old-name.local").unwrap();
        let renamed = load(&TlsMode::SelfSigned, dir.path()).unwrap().unwrap();
        assert_ne!(
            renamed.fingerprint, first.fingerprint,
            "made anew for the new name"
        );
    }

    #[test]
    fn bad_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a pem").unwrap();
        let files = |cert: &Path, key: &Path| TlsMode::Files {
            cert: cert.to_owned(),
            key: key.to_owned(),
        };
        let missing = dir.path().join("missing.pem");
        let err = load(&files(&missing, &junk), dir.path()).err().unwrap();
        assert!(err.to_string().contains("missing.pem"), "{err}");
        let err = load(&files(&junk, &junk), dir.path()).err().unwrap();
        assert!(matches!(err, TlsError::NoCertificate { .. }), "{err}");
        // A good certificate with someone else's key.
        load(&TlsMode::SelfSigned, dir.path()).unwrap();
        let other = tempfile::tempdir().unwrap();
        load(&TlsMode::SelfSigned, other.path()).unwrap();
        let err = load(
            &files(
                &dir.path().join("tls/cert.pem"),
                &other.path().join("tls/key.pem"),
            ),
            dir.path(),
        )
        .err()
        .unwrap();
        assert!(matches!(err, TlsError::Mismatch(_)), "{err}");
        let err = load(&files(&dir.path().join("tls/cert.pem"), &junk), dir.path())
            .err()
            .unwrap();
        assert!(matches!(err, TlsError::NoKey { .. }), "{err}");
    }
}
