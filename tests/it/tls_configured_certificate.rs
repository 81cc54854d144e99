//! HTTPS with the operator's own certificate: a leaf issued by a private CA, given as a
//! full chain in `tls.cert_file`, is served as-is so a client trusting only the CA
//! connects. When a later restart finds files that do not belong together (a renewal
//! that replaced the key but not the certificate), the camera stays reachable over HTTPS
//! on a self-signed certificate and says why in `/api/status`.

use crate::common;

use common::Daemon;
use common::tls::{accepting_any, fingerprint, https_get, status_json, trusting};
use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};

const CAMERA_OFF: (&str, &str) = ("EDGECAM_CAMERA__AUTOSTART", "false");

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_certificate_chain_then_a_broken_renewal() {
    let _bound = crate::common::time_bound(
        "tls_configured_certificate::operator_certificate_chain_then_a_broken_renewal",
        None,
    );
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
        if let Ok(got) = https_get(daemon.addr, trusting(ca.der()), "/api/status").await {
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
        if let Ok(got) = https_get(again.addr, accepting_any(), "/api/status").await {
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
    let refused = https_get(again.addr, trusting(ca.der()), "/healthz").await;
    assert!(refused.is_err(), "the stand-in certificate is not the CA's");
    again.stop().await;
}
