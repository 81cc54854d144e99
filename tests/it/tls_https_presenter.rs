//! HTTPS with a self-signed certificate made on first start: served on the same port
//! (plain requests are redirected), the certificate and its fingerprint are kept across
//! restarts, and a Chromium presenter on a non-loopback name gets its camera — which only a
//! secure context allows — and is watched by a viewer page over wss.

use crate::common;

use common::Daemon;
use common::browser::{Browser, VIEWER_PROBE};
use common::tls::{fingerprint, status_json};
use tokio_rustls::rustls::pki_types::CertificateDer;
use tokio_rustls::rustls::pki_types::pem::PemObject;

const TLS_ON: (&str, &str) = ("EDGECAM_TLS__ENABLED", "true");
const CAMERA_OFF: (&str, &str) = ("EDGECAM_CAMERA__AUTOSTART", "false");

/// The daemon's certificate, once it has started serving.
async fn certificate(daemon: &Daemon) -> Vec<u8> {
    let path = daemon.state.path().join("tls/cert.pem");
    for _ in 0..100 {
        if let Ok(pem) = std::fs::read(&path) {
            return pem;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("no certificate made in {}", path.display());
}

/// One HTTPS request trusting only the daemon's own certificate (which names localhost;
/// verification fails if it does not); the whole response.
async fn https_get(daemon: &Daemon, cert: &CertificateDer<'static>, path: &str) -> String {
    common::tls::https_get(daemon.addr, common::tls::trusting(cert), path)
        .await
        .expect("TLS handshake with the daemon's own certificate")
        .1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn https_with_a_kept_self_signed_certificate() {
    let _bound = crate::common::time_bound(
        "tls_https_presenter::https_with_a_kept_self_signed_certificate",
        None,
    );
    let daemon = Daemon::start(&[TLS_ON, CAMERA_OFF]).await;
    let pem = certificate(&daemon).await;
    let cert = CertificateDer::from_pem_slice(&pem).expect("PEM certificate");

    let health = https_get(&daemon, &cert, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let status = https_get(&daemon, &cert, "/api/status").await;
    let v = status_json(&status);
    assert_eq!(v["tls"]["source"], "self-signed", "{v}");
    assert_eq!(v["tls"]["fingerprint_sha256"], fingerprint(&cert));

    // Plain HTTP on the same port: redirected, method-preserving, to the same path.
    let (code, head, _) = common::http_full(daemon.addr, "GET", "/presenter?x=1", &[], "").await;
    assert_eq!(code, 308, "{head}");
    let location = format!("https://{}/presenter?x=1", daemon.addr);
    assert!(head.contains(&location), "{head}");

    // A presenter page on a real (non-loopback) name: only HTTPS makes it a secure context,
    // and only a secure context may open the camera.
    let port = daemon.addr.port();
    let Some(browser) = Browser::launch_or_skip(
        "tls_https_presenter",
        &[
            "--ignore-certificate-errors",
            "--host-resolver-rules=MAP cam.test 127.0.0.1",
            "--use-fake-device-for-media-stream",
            "--use-fake-ui-for-media-stream",
        ],
    )
    .await
    else {
        return;
    };
    let presenter = browser
        .open(&format!("https://cam.test:{port}/presenter"))
        .await;
    presenter
        .wait_for(
            "typeof window.edgecam",
            20,
            "presenter page over https",
            |v| v == "object",
        )
        .await;
    assert_eq!(presenter.eval("window.isSecureContext").await, true);
    assert_eq!(presenter.eval("location.protocol").await, "https:");
    presenter.eval("window.edgecam.start(); true").await;
    presenter
        .wait_for(
            "document.getElementById('state').textContent",
            30,
            "presenting from the browser's camera",
            |v| v == "live",
        )
        .await;
    let viewer = browser.open(&format!("https://cam.test:{port}/")).await;
    let got = viewer
        .wait_for(VIEWER_PROBE, 30, "viewer decoding over https/wss", |p| {
            p["frames"].as_u64().unwrap_or(0) > 10 && p["badge"] == "live"
        })
        .await;
    eprintln!("viewer over https: {got}");
    assert_eq!(
        viewer.eval("window.edgecam.ws.url.slice(0, 6)").await,
        "wss://"
    );
    viewer.close().await;
    presenter.close().await;
    drop(browser);

    // Restarted on the same state directory: the same certificate, so browsers that
    // accepted it once do not ask again.
    let state = daemon.state.clone();
    daemon.stop().await;
    let again = Daemon::start_full("127.0.0.1:0", &[TLS_ON, CAMERA_OFF], state).await;
    let pem2 = certificate(&again).await;
    assert_eq!(pem, pem2, "certificate kept across restarts");
    let health = https_get(&again, &cert, "/healthz").await;
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    again.stop().await;
}
