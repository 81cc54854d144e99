//! Benchmark in headless Chromium: time to first decoded frame with a 10 s GOP, and
//! capture-to-decoded latency read back from the picture (source `test:stamp`).
//!
//! Run: `cargo bench --bench browser` (loopback only; bounded: about a minute).
//! Results go to stdout as Markdown tables for BENCHMARKS.md.

#[path = "../tests/it/common/mod.rs"]
mod common;
mod support;

use common::browser::{Browser, LATENCY_PROBE};
use std::time::{Duration, Instant};
use support::{Proc, percentile};

const TTFF_RUNS: usize = 20;
/// Frames whose latency is read (at 30 fps: 15 s).
const LATENCY_FRAMES: usize = 450;

/// Tabs opened at once in [`together`], and how many times.
const TOGETHER: usize = 10;
const TOGETHER_ROUNDS: usize = 3;

/// Ten viewers opening the page at once (a wall of screens powering up), 10 s GOP: each
/// one's time to first decoded frame from its join (offer sent), and the forced IDRs.
async fn together(port: u16) {
    let daemon = Proc::start(port, "test", 10);
    daemon.wait_ready().await;
    // Tabs in the background would not decode (Chromium throttles them).
    let browser = Browser::launch(&[
        "--disable-background-timer-throttling",
        "--disable-renderer-backgrounding",
        "--disable-backgrounding-occluded-windows",
    ])
    .await;
    let url = format!("http://127.0.0.1:{port}/");
    println!("## {TOGETHER} viewers joining at once, headless Chromium, 10 s GOP\n");
    println!(
        "| round | first frame from join p50 | max | forced IDRs | joins from the young GOP \
         | answer / connected p50 | never decoded |"
    );
    println!("|---|---|---|---|---|---|---|");
    for round in 1..=TOGETHER_ROUNDS {
        let before = daemon.status().await;
        let cpu_before = (daemon.sample().0, machine_busy_ticks());
        let pages = futures_util::future::join_all((0..TOGETHER).map(|_| browser.open(&url))).await;
        // Each page watches its own decoder (hidden tabs may never paint, but they
        // decode): the first decoded frame's time from its join.
        const FIRST_DECODED: &str = r#"new Promise((resolve) => {
          const deadline = performance.now() + 20000;
          const poll = async () => {
            const e = window.edgecam, pc = e && e.pc;
            let video = {};
            if (pc && e.timings.offerSent !== undefined) {
              const stats = await pc.getStats();
              stats.forEach(r => { if (r.type === 'inbound-rtp' && r.kind === 'video') video = r; });
              if ((video.framesDecoded || 0) > 0) {
                const t = e.timings, from = (k) => t[k] === undefined ? null : t[k] - t.offerSent;
                return resolve({ decoded: performance.now() - t.offerSent, answer: from('answer'),
                  connected: from('connected') });
              }
            }
            if (performance.now() > deadline) return resolve({ decoded: null,
              state: pc ? pc.connectionState : 'none', timings: e ? e.timings : null,
              packets: video.packetsReceived || 0, frames: video.framesReceived || 0,
              plis: video.pliCount || 0, nacks: video.nackCount || 0 });
            setTimeout(poll, 5);
          };
          poll();
        })"#;
        // The poll runs in the page's own script context: wait until the page (not the
        // blank tab it replaces) has it, or the evaluation dies with the navigation.
        let answers = futures_util::future::join_all(pages.iter().map(|p| async move {
            p.wait_for("typeof window.edgecam", 20, "the viewer page", |v| {
                v == "object"
            })
            .await;
            p.eval(FIRST_DECODED).await
        }))
        .await;
        let times = |k: &str| {
            let mut v: Vec<f64> = answers.iter().filter_map(|a| a[k].as_f64()).collect();
            v.sort_by(|a, b| a.total_cmp(b));
            v
        };
        let from_join = times("decoded");
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            for a in &answers {
                eprintln!("page: {a}");
            }
        }
        for a in answers.iter().filter(|a| a["decoded"].is_null()) {
            eprintln!("a page never decoded a frame: {a}");
        }
        let after = daemon.status().await;
        if std::env::var_os("BENCH_VERBOSE").is_some() {
            let (d, m) = (
                daemon.sample().0 - cpu_before.0,
                machine_busy_ticks() - cpu_before.1,
            );
            eprintln!("round {round}: daemon {d} ticks, machine busy {m} ticks (both cores)");
        }
        let delta = |k: &str| {
            after[k]
                .as_u64()
                .unwrap_or(0)
                .saturating_sub(before[k].as_u64().unwrap_or(0))
        };
        let reused =
            |s: &serde_json::Value| s["fanout"]["joins_from_recent_gop"].as_u64().unwrap_or(0);
        println!(
            "| {round} | {:.0} ms | {:.0} ms | {} | {} | {:.0} / {:.0} ms | {} |",
            percentile(&from_join, 0.5),
            from_join.last().copied().unwrap_or(f64::NAN),
            delta("forced_idrs"),
            reused(&after).saturating_sub(reused(&before)),
            percentile(&times("answer"), 0.5),
            percentile(&times("connected"), 0.5),
            TOGETHER - from_join.len(),
        );
        for page in pages {
            page.close().await;
        }
        // Every tab gone, and the GOP old again before the next round.
        tokio::time::sleep(Duration::from_secs(3)).await;
    }
    println!();
}

async fn time_to_first_frame(port: u16) {
    let daemon = Proc::start(port, "test", 10);
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

async fn latency(port: u16) {
    let daemon = Proc::start(port, "test:stamp", 2);
    daemon.wait_ready().await;
    let browser = Browser::launch(&[]).await;
    let page = browser.open(&format!("http://127.0.0.1:{port}/")).await;
    page.wait_for(
        "(document.getElementById('video') || {}).videoWidth || 0",
        30,
        "the first frame",
        |v| v.as_u64().unwrap_or(0) > 0,
    )
    .await;
    page.eval(LATENCY_PROBE).await;
    let started = Instant::now();
    let v = page
        .wait_for("window.lat", 60, "enough stamped frames", |v| {
            v["ms"]
                .as_array()
                .is_some_and(|a| a.len() >= LATENCY_FRAMES)
        })
        .await;
    let secs = started.elapsed().as_secs_f64();
    let mut ms: Vec<f64> = v["ms"]
        .as_array()
        .map(|a| a.iter().filter_map(|x| x.as_f64()).collect())
        .unwrap_or_default();
    ms.sort_by(|a, b| a.total_cmp(b));
    let mean = ms.iter().sum::<f64>() / ms.len() as f64;
    println!(
        "## Capture-to-decoded latency, 1280x720 30 fps 2 Mbps x264 zerolatency
"
    );
    println!(
        "{} frames read in {secs:.1} s ({} unreadable), headless Chromium, same clock:
",
        ms.len(),
        v["misread"]
    );
    println!("| p50 | p95 | max | mean |");
    println!("|---|---|---|---|");
    println!(
        "| {:.0} ms | {:.0} ms | {:.0} ms | {mean:.1} ms |\n",
        percentile(&ms, 0.5),
        percentile(&ms, 0.95),
        ms.last().copied().unwrap_or(f64::NAN)
    );
    page.close().await;
}

fn main() {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // `cargo bench --bench browser -- latency` runs one part; no name runs both.
    let only: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let run = |name: &str| only.is_empty() || only.iter().any(|o| o == name);
    rt.block_on(async {
        if run("ttff") {
            time_to_first_frame(18612).await;
        }
        if run("latency") {
            latency(18613).await;
        }
        if run("together") {
            together(18614).await;
        }
    });
}

/// Busy clock ticks of the whole machine so far (all cores, from /proc/stat).
fn machine_busy_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let cpu: Vec<u64> = stat
        .lines()
        .next()
        .unwrap_or_default()
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    // user nice system idle iowait irq softirq ...: all but idle and iowait.
    cpu.iter()
        .enumerate()
        .filter(|(i, _)| *i != 3 && *i != 4)
        .map(|(_, v)| v)
        .sum()
}
