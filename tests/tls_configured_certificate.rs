//! HTTPS with the operator's own certificate: a leaf issued by a private CA, given as a
//! full chain in `tls.cert_file`, is served as-is so a client trusting only the CA
//! connects. When a later restart finds files that do not belong together (a renewal
//! that replaced the key but not the certificate), the camera stays reachable over HTTPS
//! on a self-signed certificate and says why in `/api/status`.

mod common;

use common::Daemon;
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
use sha2::{Digest, Sha256};
use std::sync::Arc;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::rustls::client::danger::{
    HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier,
};
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use tokio_rustls::rustls::{ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme};

const CAMERA_OFF: (&str, &str) = ("EDGECAM_CAMERA__AUTOSTART", "false");

fn provider() -> Arc<tokio_rustls::rustls::crypto::CryptoProvider> {
    Arc::new(tokio_rustls::rustls::crypto::ring::default_provider())
}

/// One HTTPS GET to `localhost` with `config`; the certificate chain the server sent and
/// the whole response, or the handshake error.
async fn https_get(
    daemon: &Daemon,
    config: ClientConfig,
    path: &str,
) -> Result<(Vec<CertificateDer<'static>>, String), String> {
    let tcp = tokio::net::TcpStream::connect(daemon.addr)
        .await
        .expect("connect");
    let name = ServerName::try_from("localhost").expect("name");
    let mut tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, tcp)
        .await
        .map_err(|e| e.to_string())?;
    let chain = tls
        .get_ref()
        .1
        .peer_certificates()
        .map(|c| c.to_vec())
        .unwrap_or_default();
    let req = format!("GET {path} HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n");
    tls.write_all(req.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    Ok((chain, String::from_utf8_lossy(&out).into_owned()))
}

fn trusting(ca: &CertificateDer<'static>) -> ClientConfig {
    let mut roots = RootCertStore::empty();
    roots.add(ca.clone()).expect("CA parses");
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// Accepts any certificate, as a user clicking through a browser warning does; used only
/// to read what the fallback serves.
#[derive(Debug)]
struct AcceptAny;

impl ServerCertVerifier for AcceptAny {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, tokio_rustls::rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }
    fn verify_tls12_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls12_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn verify_tls13_signature(
        &self,
        m: &[u8],
        c: &CertificateDer<'_>,
        d: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, tokio_rustls::rustls::Error> {
        tokio_rustls::rustls::crypto::verify_tls13_signature(
            m,
            c,
            d,
            &provider().signature_verification_algorithms,
        )
    }
    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

fn accepting_any() -> ClientConfig {
    ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .expect("protocols")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(AcceptAny))
        .with_no_client_auth()
}

fn fingerprint(cert: &CertificateDer<'_>) -> String {
    Sha256::digest(cert.as_ref())
        .iter()
        .map(|b| format!("{b:02X}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn status_json(response: &str) -> serde_json::Value {
    let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
    serde_json::from_str(body).unwrap_or_else(|e| panic!("status JSON: {e}: {response}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_certificate_chain_then_a_broken_renewal() {
    // A private CA, and a leaf for this camera issued by it.
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().expect("CA key"))
        .expect("CA certificate");
    let leaf_key = KeyPair::generate().expect("leaf key");
    let leaf = CertificateParams::new(vec!["localhost".to_string()])
        .expect("leaf params")
        .signed_by(&leaf_key, &ca)
        .expect("leaf certificate");

    let files = tempfile::tempdir().expect("dir");
    let cert_file = files.path().join("fullchain.pem");
    let key_file = files.path().join("privkey.pem");
    std::fs::write(&cert_file, format!("{}{}", leaf.pem(), ca.pem())).expect("write chain");
    std::fs::write(&key_file, leaf_key.serialize_pem()).expect("write key");
    let (cert_s, key_s) = (
        cert_file.to_string_lossy().into_owned(),
        key_file.to_string_lossy().into_owned(),
    );
    let settings = [
        ("EDGECAM_TLS__ENABLED", "true"),
        ("EDGECAM_TLS__CERT_FILE", cert_s.as_str()),
        ("EDGECAM_TLS__KEY_FILE", key_s.as_str()),
        CAMERA_OFF,
    ];

    let daemon = Daemon::start(&settings).await;
    let mut served = None;
    for _ in 0..100 {
        if let Ok(got) = https_get(&daemon, trusting(ca.der()), "/api/status").await {
            served = Some(got);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (chain, response) = served.expect("HTTPS trusted through the operator's CA");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert_eq!(chain.len(), 2, "leaf and CA both sent");
    assert_eq!(&chain[0], leaf.der());
    assert_eq!(&chain[1], ca.der());
    let status = status_json(&response);
    assert_eq!(status["tls"]["source"], "files", "{status}");
    assert_eq!(status["tls"]["fingerprint_sha256"], fingerprint(leaf.der()));
    assert!(status["tls"]["error"].is_null(), "{status}");
    // No certificate of its own was made while the operator's was in use.
    assert!(!daemon.state.path().join("tls/cert.pem").exists());

    // A renewal that wrote a new key but kept the old certificate.
    std::fs::write(
        &key_file,
        KeyPair::generate().expect("other key").serialize_pem(),
    )
    .expect("write key");
    let state = daemon.state.clone();
    daemon.stop().await;
    let again = Daemon::start_full("127.0.0.1:0", &settings, state).await;
    let mut served = None;
    for _ in 0..100 {
        if let Ok(got) = https_get(&again, accepting_any(), "/api/status").await {
            served = Some(got);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let (chain, response) = served.expect("still served over HTTPS");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    let status = status_json(&response);
    assert_eq!(status["tls"]["source"], "self-signed", "{status}");
    let error = status["tls"]["error"].as_str().unwrap_or_default();
    assert!(
        error.contains("do not go together"),
        "the reason is given: {status}"
    );
    assert_eq!(status["tls"]["fingerprint_sha256"], fingerprint(&chain[0]));
    assert_ne!(&chain[0], leaf.der());
    // A client that trusts only the CA is now refused rather than silently downgraded.
    let refused = https_get(&again, trusting(ca.der()), "/healthz").await;
    assert!(refused.is_err(), "the stand-in certificate is not the CA's");
    again.stop().await;
}
