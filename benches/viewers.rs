//! Benchmark: daemon CPU and RSS with 0, 1 and 10 viewers at 1280x720 30 fps 2 Mbps, and
//! time to first decoded frame in headless Chromium with a 10 s GOP.
//!
//! Run: `cargo bench --bench viewers` (loopback only; bounded in count and time).
//! Results go to stdout as Markdown tables for BENCHMARKS.md.

#[path = "../tests/common/mod.rs"]
mod common;

use common::browser::Browser;
use common::rust_viewer::RustViewer;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const SAMPLE: Duration = Duration::from_secs(10);
const TTFF_RUNS: usize = 20;

struct Proc {
    child: Child,
    port: u16,
}

impl Proc {
    fn start(port: u16, gop_s: u32) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_edgecam"))
            .args([
                "run",
                "--source",
                "test",
                "--listen",
                &format!("127.0.0.1:{port}"),
            ])
            .env("EDGECAM_CAMERA__WIDTH", "1280")
            .env("EDGECAM_CAMERA__HEIGHT", "720")
            .env("EDGECAM_CAMERA__FPS", "30")
            .env("EDGECAM_ENCODER__KIND", "x264")
            .env("EDGECAM_ENCODER__BITRATE_KBPS", "2000")
            .env("EDGECAM_ENCODER__KEYFRAME_INTERVAL_S", gop_s.to_string())
            .env("EDGECAM_WEBRTC__BIND_IPS", "127.0.0.1")
            .env("EDGECAM_VIEWERS__MAX", "100")
            .env("RUST_LOG", "warn")
            // Never touch the machine's real state directory.
            .env(
                "EDGECAM_STATE__DIR",
                std::env::temp_dir().join(format!("edgecam-bench-{port}")),
            )
            .stdout(Stdio::null())
            .spawn()
            .expect("edgecam binary");
        Self { child, port }
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }

    /// utime+stime in clock ticks, and VmRSS in KiB, from /proc.
    fn sample(&self) -> (u64, u64) {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.pid())).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are 14th and 15th.
        let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = after.split_whitespace().collect();
        let ticks = f.get(11).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0)
            + f.get(12).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
        let status =
            std::fs::read_to_string(format!("/proc/{}/status", self.pid())).unwrap_or_default();
        let rss = status
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        (ticks, rss)
    }

    async fn wait_ready(&self) {
        let addr = format!("127.0.0.1:{}", self.port).parse().expect("addr");
        for _ in 0..300 {
            if tokio::net::TcpStream::connect(addr).await.is_ok() {
                let (_, body) = common::http_get(addr, "/api/status").await;
                if body.contains("\"running\"") {
                    return;
                }
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        panic!("daemon did not come up");
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn ticks_per_s() -> f64 {
    // SC_CLK_TCK is 100 on every Linux this runs on.
    100.0
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

async fn cpu_rss(port: u16) {
    let daemon = Proc::start(port, 2);
    daemon.wait_ready().await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    println!("## Daemon CPU and RSS, 1280x720 30 fps 2 Mbps x264 (test pattern)\n");
    println!(
        "| viewers | daemon CPU (% of one core) | RSS (MiB) | frames per viewer in {}s (expected {}) |",
        SAMPLE.as_secs(),
        SAMPLE.as_secs() * 30
    );
    println!("|---|---|---|---|");
    for n in [0usize, 1, 10] {
        let url = format!("ws://127.0.0.1:{port}/one2many");
        let mut viewers = Vec::new();
        for _ in 0..n {
            viewers.push(RustViewer::join(&url).await);
        }
        for v in &viewers {
            assert!(v.wait_frames(5, 20).await >= 5, "viewer did not start");
        }
        let start_frames: Vec<usize> = viewers.iter().map(|v| v.frames()).collect();
        let (t0, _) = daemon.sample();
        let started = Instant::now();
        let mut rss_max = 0;
        while started.elapsed() < SAMPLE {
            tokio::time::sleep(Duration::from_millis(500)).await;
            rss_max = rss_max.max(daemon.sample().1);
        }
        let (t1, _) = daemon.sample();
        let secs = started.elapsed().as_secs_f64();
        let cpu = (t1 - t0) as f64 / ticks_per_s() / secs * 100.0;
        let per_viewer: Vec<usize> = viewers
            .iter()
            .zip(&start_frames)
            .map(|(v, s)| v.frames() - s)
            .collect();
        let frames = if per_viewer.is_empty() {
            "–".to_string()
        } else {
            format!(
                "min {} / max {}",
                per_viewer.iter().min().unwrap(),
                per_viewer.iter().max().unwrap()
            )
        };
        println!(
            "| {n} | {cpu:.1} | {:.1} | {frames} |",
            rss_max as f64 / 1024.0
        );
        for v in viewers {
            v.close().await;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    println!();
}

async fn time_to_first_frame(port: u16) {
    let daemon = Proc::start(port, 10);
    daemon.wait_ready().await;
    let browser = Browser::launch(&[]).await;
    let url = format!("http://127.0.0.1:{port}/");
    let mut times = Vec::new();
    let mut from_join = Vec::new();
    let mut phases: Vec<serde_json::Value> = Vec::new();
    for _ in 0..TTFF_RUNS {
        let page = browser.open(&url).await;
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let v = page
                .eval("window.edgecam && window.edgecam.firstFrameMs")
                .await;
            if let Some(ms) = v.as_f64() {
                times.push(ms);
                let t = page.eval("window.edgecam.timings").await;
                if let Some(sent) = t["offerSent"].as_f64() {
                    from_join.push(ms - sent);
                }
                phases.push(t);
                break;
            }
            if Instant::now() > deadline {
                eprintln!("a page never showed a frame");
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        page.close().await;
        tokio::time::sleep(Duration::from_millis(700)).await;
    }
    times.sort_by(|a, b| a.total_cmp(b));
    from_join.sort_by(|a, b| a.total_cmp(b));
    println!("## Time to first decoded frame, headless Chromium, 10 s GOP\n");
    println!("{} runs (of {TTFF_RUNS}), each a new tab:\n", times.len());
    println!("| measured from | p50 | p95 | max |");
    println!("|---|---|---|---|");
    for (name, v) in [
        ("page navigation start", &times),
        ("viewer offer sent (join)", &from_join),
    ] {
        println!(
            "| {name} | {:.0} ms | {:.0} ms | {:.0} ms |",
            percentile(v, 0.5),
            percentile(v, 0.95),
            v.last().copied().unwrap_or(f64::NAN)
        );
    }
    println!("\nMedian milliseconds since navigation start at each step:\n");
    println!("| page loaded → ws open | offer sent | answer | connected | first frame |");
    println!("|---|---|---|---|---|");
    let med = |k: &str| {
        let mut xs: Vec<f64> = phases.iter().filter_map(|p| p[k].as_f64()).collect();
        xs.sort_by(|a, b| a.total_cmp(b));
        percentile(&xs, 0.5)
    };
    println!(
        "| {:.0} | {:.0} | {:.0} | {:.0} | {:.0} |\n",
        med("wsOpen"),
        med("offerSent"),
        med("answer"),
        med("connected"),
        med("firstFrame")
    );
}

fn main() {
    // `cargo bench` passes --bench; any filter argument is ignored: this runs the whole set.
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        cpu_rss(18611).await;
        time_to_first_frame(18612).await;
    });
}
