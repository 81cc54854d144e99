//! Under systemd: the daemon says READY=1 once it serves, pings the watchdog while its
//! media loop lives, and on SIGTERM tells viewers, releases the pipeline and exits 0
//! within 2 s.

use crate::common;

use common::rust_viewer::RustViewer;
use std::io::{BufRead, BufReader};
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn recv_until(sock: &UnixDatagram, want: &str, secs: u64) -> String {
    let deadline = Instant::now() + Duration::from_secs(secs);
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        assert!(!left.is_zero(), "no {want} notification in {secs}s");
        sock.set_read_timeout(Some(left)).unwrap();
        if let Ok(n) = sock.recv(&mut buf) {
            let msg = String::from_utf8_lossy(&buf[..n]).to_string();
            if msg.lines().any(|l| l == want) {
                return msg;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_watchdog_and_clean_sigterm() {
    let _bound = crate::common::time_bound(
        "systemd_notify_and_sigterm::ready_watchdog_and_clean_sigterm",
        None,
    );
    let dir = tempfile::tempdir().unwrap();
    let sock_path = dir.path().join("notify.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_edgecam"))
        .args(["run", "--source", "test", "--listen", "127.0.0.1:0"])
        .env("NOTIFY_SOCKET", &sock_path)
        .env("WATCHDOG_USEC", "1500000")
        .env("EDGECAM_STATE__DIR", dir.path())
        .env("EDGECAM_CAMERA__WIDTH", "640")
        .env("EDGECAM_CAMERA__HEIGHT", "360")
        .env("EDGECAM_WEBRTC__BIND_IPS", "127.0.0.1")
        .env("EDGECAM_GPIO__BACKEND", "simulator")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .split_whitespace()
        .find(|w| w.starts_with("http://"))
        .expect("URL printed")
        .to_string();
    assert!(!url.contains(":0/"), "the real port is printed: {line}");
    let addr = url
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .to_string();

    let ready = recv_until(&sock, "READY=1", 20);
    assert!(ready.contains("STATUS=serving on"), "{ready}");
    recv_until(&sock, "WATCHDOG=1", 5);

    let viewer = RustViewer::join(&format!("ws://{addr}/one2many")).await;
    assert!(viewer.wait_frames(5, 20).await >= 5);

    let t0 = Instant::now();
    let pid = child.id().to_string();
    assert!(
        Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(10),
            "daemon did not exit"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    let took = t0.elapsed();
    eprintln!("SIGTERM to exit: {took:?}");
    assert!(status.success(), "exit status {status:?}");
    assert!(took < Duration::from_secs(2), "took {took:?}");
    assert!(
        viewer.wait_message("stopCommunication", 5).await.is_some(),
        "viewers were told"
    );
    viewer.close().await;
}
