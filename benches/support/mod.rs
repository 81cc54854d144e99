//! Shared by the benches: the daemon as its own process, /proc sampling, percentiles.
#![allow(dead_code)] // each bench uses a different part

use std::process::{Child, Command, Stdio};
use std::time::Duration;

pub struct Proc {
    pub child: Child,
    /// Where its HTTP listens.
    pub addr: std::net::SocketAddr,
}

impl Proc {
    /// The daemon on 127.0.0.1:`port`.
    pub fn start(port: u16, source: &str, gop_s: u32) -> Self {
        Self::start_in(None, ([127, 0, 0, 1], port).into(), source, gop_s)
    }

    /// The daemon listening on `addr` (media bound to its IP), inside network namespace
    /// `netns` when given.
    pub fn start_in(
        netns: Option<&str>,
        addr: std::net::SocketAddr,
        source: &str,
        gop_s: u32,
    ) -> Self {
        let mut argv: Vec<String> = match netns {
            Some(ns) => ["ip", "netns", "exec", ns].map(String::from).to_vec(),
            None => Vec::new(),
        };
        argv.extend(callgrind_prefix());
        // `BENCH_DAEMON_NICE=-10`: the daemon ahead of everything else on the machine, as
        // on a camera, where the browsers are on other machines and not on its cores.
        if let Ok(nice) = std::env::var("BENCH_DAEMON_NICE") {
            argv.extend(["nice".to_string(), "-n".to_string(), nice]);
        }
        argv.push(env!("CARGO_BIN_EXE_edgecam").to_string());
        let mut cmd = Command::new(&argv[0]);
        cmd.args(&argv[1..]);
        let port = addr.port();
        let child = cmd
            .args(["run", "--source", source, "--listen", &addr.to_string()])
            .env("EDGECAM_CAMERA__WIDTH", "1280")
            .env("EDGECAM_CAMERA__HEIGHT", "720")
            .env("EDGECAM_CAMERA__FPS", "30")
            .env("EDGECAM_ENCODER__KIND", "x264")
            .env("EDGECAM_ENCODER__BITRATE_KBPS", "2000")
            .env("EDGECAM_ENCODER__KEYFRAME_INTERVAL_S", gop_s.to_string())
            .env("EDGECAM_WEBRTC__BIND_IPS", addr.ip().to_string())
            .env("EDGECAM_VIEWERS__MAX", "250")
            // Every load-client viewer comes from the same address.
            .env("EDGECAM_HTTP__MAX_CONNECTIONS_PER_ADDRESS", "1000")
            .env("RUST_LOG", "warn")
            // Never touch the machine's real state directory.
            .env(
                "EDGECAM_STATE__DIR",
                std::env::temp_dir().join(format!("edgecam-bench-{port}")),
            )
            .stdout(Stdio::null())
            .spawn()
            .expect("edgecam binary");
        Self { child, addr }
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// utime+stime in clock ticks, and VmRSS in KiB, from /proc.
    pub fn sample(&self) -> (u64, u64) {
        sample_pid(self.pid())
    }

    pub async fn wait_ready(&self) {
        let addr = self.addr;
        // Under valgrind the start takes tens of seconds.
        let tries = if callgrind_dir().is_some() { 1800 } else { 300 };
        for _ in 0..tries {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                let (_, body) = crate::common::http_get(addr, "/api/status").await;
                if body.contains("\"running\"") {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("daemon did not come up");
    }

    /// Its `/api/status`.
    pub async fn status(&self) -> serde_json::Value {
        let (_, body) = crate::common::http_get(self.addr, "/api/status").await;
        serde_json::from_str(&body).unwrap_or_default()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn ticks_per_s() -> f64 {
    // SC_CLK_TCK is 100 on every Linux this runs on.
    100.0
}

pub fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

/// utime+stime in clock ticks, and VmRSS in KiB, of any process, from /proc.
pub fn sample_pid(pid: u32) -> (u64, u64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let ticks = stat_ticks(&stat);
    let status = std::fs::read_to_string(format!("/proc/{}/status", pid)).unwrap_or_default();
    let rss = status
        .lines()
        .find(|l| l.starts_with("VmRSS:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    (ticks, rss)
}

/// utime+stime from a `/proc/.../stat` line (a process's or a thread's).
pub fn stat_ticks(stat: &str) -> u64 {
    // Fields after the parenthesised command name; utime and stime are 14th and 15th.
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
        + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
}

/// Where instruction counts go when the bench runs its servers under callgrind
/// (`BENCH_CALLGRIND=<dir>`, see benches/instructions_per_packet.sh).
pub fn callgrind_dir() -> Option<std::path::PathBuf> {
    std::env::var_os("BENCH_CALLGRIND").map(Into::into)
}

/// The valgrind command a server runs under in callgrind mode (else nothing).
pub fn callgrind_prefix() -> Vec<String> {
    let Some(dir) = callgrind_dir() else {
        return Vec::new();
    };
    vec![
        "valgrind".into(),
        "--tool=callgrind".into(),
        "--dump-line=no".into(),
        format!("--callgrind-out-file={}/callgrind.%p", dir.display()),
    ]
}

/// Marks the measured window in process `pid` (`callgrind_control`): at its start the
/// counts so far are zeroed, at its end they are dumped.
pub fn callgrind_collect(pid: u32, start: bool) {
    let pid = pid.to_string();
    let command = if start { "-z" } else { "-d" };
    let ok = Command::new("callgrind_control")
        .args([command, &pid])
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    assert!(ok, "callgrind_control {command} {pid} failed");
}
