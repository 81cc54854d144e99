//! The real `edgecam` binary in its own process, for what only a separate process can
//! show: the daemon's own memory, file descriptors and threads (the in-process harness
//! would count the test's clients too).

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct DaemonProcess {
    child: Child,
    pub addr: SocketAddr,
    pub state: tempfile::TempDir,
}

impl DaemonProcess {
    /// Starts the test-pattern camera on 127.0.0.1 and returns once it serves HTTP.
    pub fn spawn(extra: &[(&str, &str)]) -> Self {
        let state = tempfile::tempdir().expect("state dir");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_edgecam"));
        cmd.args(["run", "--source", "test", "--listen", "127.0.0.1:0"])
            .env("EDGECAM_STATE__DIR", state.path())
            .env("EDGECAM_CAMERA__WIDTH", "640")
            .env("EDGECAM_CAMERA__HEIGHT", "360")
            .env("EDGECAM_ENCODER__KIND", "x264")
            .env("EDGECAM_ENCODER__BITRATE_KBPS", "800")
            .env("EDGECAM_WEBRTC__BIND_IPS", "127.0.0.1")
            .env("EDGECAM_GPIO__BACKEND", "simulator")
            // No fixed ports shared between test daemons (RTSP 8554, discovery 3702).
            .env("EDGECAM_RTSP__LISTEN", "")
            .env("EDGECAM_ONVIF__DISCOVERY", "false")
            .env("RUST_LOG", "warn,edgecam=info")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("spawn edgecam");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        // Reads the log for the address, then keeps draining it so the daemon never
        // blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sent = false;
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if !sent && line.contains("serving on ") {
                    let url = line
                        .split_whitespace()
                        .find(|w| w.starts_with("http://") || w.starts_with("https://"))
                        .map(str::to_owned);
                    let _ = tx.send(url);
                    sent = true;
                }
            }
        });
        let url = rx
            .recv_timeout(Duration::from_secs(30))
            .ok()
            .flatten()
            .expect("the daemon logs where it serves");
        let addr = url
            .split("://")
            .nth(1)
            .and_then(|a| a.trim_end_matches('/').parse().ok())
            .expect("address in the log");
        Self { child, addr, state }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    fn status_field(&self, name: &str) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    }

    /// Resident memory in KiB.
    pub fn rss_kib(&self) -> u64 {
        self.status_field("VmRSS:")
    }

    pub fn threads(&self) -> u64 {
        self.status_field("Threads:")
    }

    pub fn open_fds(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid())).map_or(0, |d| d.count())
    }

    pub fn ws_url(&self) -> String {
        format!("ws://{}/one2many", self.addr)
    }

    /// Stops it as systemd does (SIGTERM) and waits up to 10 s.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.pid().to_string()])
            .status();
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for DaemonProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
