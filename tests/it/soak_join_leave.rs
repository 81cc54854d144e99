//! Soak: 1,000 viewer join/leave cycles against the real binary, ten at a time, each a
//! full WebRTC join that waits for its first frame (or a WHEP session), leaving in turn
//! by closing cleanly, by `stop`, by dropping the connection, or by WHEP DELETE. A viewer
//! that stays watches throughout. Afterwards the daemon's resident memory is within 10% of
//! where it started, and its open file descriptors and async tasks are back to their
//! starting counts.

use crate::common;

use common::process::DaemonProcess;
use common::rust_viewer::RustViewer;
use common::{header, http_full};
use serde_json::{Value, json};
use std::time::{Duration, Instant};

const CYCLES: usize = 1000;
const AT_ONCE: usize = 10;

async fn status(daemon: &DaemonProcess) -> Value {
    let (code, _, body) = http_full(daemon.addr, "GET", "/api/status", &[], "").await;
    assert_eq!(code, 200, "{body}");
    serde_json::from_str(&body).expect("status JSON")
}

/// (RSS KiB, open fds, tasks) as the daemon and /proc see them.
async fn usage(daemon: &DaemonProcess) -> (u64, usize, u64) {
    let s = status(daemon).await;
    let tasks = s["process"]["tasks"].as_u64().expect("tasks in status");
    (daemon.rss_kib(), daemon.open_fds(), tasks)
}

/// One viewer's whole life; the way it leaves depends on `n`.
async fn cycle(daemon: &DaemonProcess, n: usize, offer: &str) -> Result<(), String> {
    if n % 4 == 3 {
        // WHEP: a session made and deleted (no media needed for the bookkeeping).
        let (code, head, body) = http_full(
            daemon.addr,
            "POST",
            "/whep",
            &[("Content-Type", "application/sdp")],
            offer,
        )
        .await;
        if code != 201 {
            return Err(format!("WHEP POST {code}: {body}"));
        }
        let location = header(&head, "location").ok_or("no Location")?.to_string();
        let (code, _, _) = http_full(daemon.addr, "DELETE", &location, &[], "").await;
        return if code == 200 {
            Ok(())
        } else {
            Err(format!("WHEP DELETE {code}"))
        };
    }
    let viewer = RustViewer::join(&daemon.ws_url()).await;
    if viewer.wait_frames(1, 20).await < 1 {
        return Err("no first frame within 20 s".into());
    }
    match n % 4 {
        0 => viewer.close().await,
        1 => {
            let (pc, mut ws) = viewer.into_ws().await;
            ws.send_json(&json!({"id": "stop"})).await;
            let _ = pc.close().await;
            // The socket is dropped without a close frame.
        }
        _ => {
            // Gone without a word: the TCP connection drops, the peer is closed later.
            let (pc, ws) = viewer.into_ws().await;
            drop(ws);
            tokio::time::sleep(Duration::from_millis(50)).await;
            let _ = pc.close().await;
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_joins_and_leaves_leave_nothing_behind() {
    let _bound = crate::common::time_bound(
        "soak_join_leave::a_thousand_joins_and_leaves_leave_nothing_behind",
        None,
    );
    let daemon = DaemonProcess::spawn(&[("EDGECAM_VIEWERS__MAX", "64")]);
    let watcher = RustViewer::join(&daemon.ws_url()).await;
    assert!(watcher.wait_frames(10, 30).await >= 10);
    let offer = RustViewer::offer_sdp().await;

    // Warm-up, in batches like the run: the first concurrent joins size the allocator's
    // per-thread pools, caches and the blocking threads.
    for b in 0..3 {
        let batch: Vec<_> = (b * AT_ONCE..(b + 1) * AT_ONCE)
            .map(|n| cycle(&daemon, n, &offer))
            .collect();
        for r in futures_util::future::join_all(batch).await {
            r.expect("warm-up cycle");
        }
    }
    settle(&daemon).await;
    let start = usage(&daemon).await;
    let threads_start = daemon.threads();
    eprintln!(
        "start: RSS {} KiB, fds {}, tasks {}, threads {threads_start}",
        start.0, start.1, start.2
    );

    let t0 = Instant::now();
    let mut done = 0;
    while done < CYCLES {
        let batch: Vec<_> = (done..done + AT_ONCE)
            .map(|n| cycle(&daemon, n, &offer))
            .collect();
        for (i, r) in futures_util::future::join_all(batch)
            .await
            .into_iter()
            .enumerate()
        {
            if let Err(e) = r {
                panic!("cycle {}: {e}", done + i);
            }
        }
        done += AT_ONCE;
        if done % 200 == 0 {
            let u = usage(&daemon).await;
            eprintln!(
                "{done} cycles in {:.0?}: RSS {} KiB, fds {}, tasks {}, watcher at {} frames",
                t0.elapsed(),
                u.0,
                u.1,
                u.2,
                watcher.frames()
            );
        }
    }
    // Back to the start: wait (bounded) for the last departures to close their sockets.
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut end = settle(&daemon).await;
    while (end.1 > start.1 || end.2 > start.2) && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_secs(1)).await;
        end = usage(&daemon).await;
    }
    let threads_end = daemon.threads();
    eprintln!(
        "end: RSS {} KiB, fds {}, tasks {}, threads {threads_end}",
        end.0, end.1, end.2
    );

    let s = status(&daemon).await;
    assert_eq!(s["viewers"], 1, "only the watcher is left: {s}");
    assert_eq!(s["viewer_links"].as_array().map(Vec::len), Some(1));
    let before = watcher.frames();
    assert!(
        watcher.wait_frames(before + 30, 10).await >= before + 30,
        "the watcher still receives"
    );
    let (rss0, rss1) = (start.0 as f64, end.0 as f64);
    assert!(
        (rss1 - rss0).abs() <= rss0 * 0.10,
        "RSS {rss0} -> {rss1} KiB is more than 10% off"
    );
    // Not above the start (a socket still closing at the start measurement can make the
    // end one lower, never higher).
    assert!(
        end.1 <= start.1,
        "open file descriptors {} -> {}",
        start.1,
        end.1
    );
    assert!(end.2 <= start.2, "tasks {} -> {}", start.2, end.2);
    watcher.close().await;
    daemon.stop();
}

/// Waits (up to 30 s) for departed peers to wind down: the usage once fds and tasks have
/// read the same three times a second apart (a closing socket can linger a moment).
async fn settle(daemon: &DaemonProcess) -> (u64, usize, u64) {
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut last = usage(daemon).await;
    let mut same = 0;
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let now = usage(daemon).await;
        same = if (now.1, now.2) == (last.1, last.2) {
            same + 1
        } else {
            0
        };
        if (same >= 2 && status(daemon).await["viewers"] == 1) || Instant::now() > deadline {
            return now;
        }
        last = now;
    }
}
