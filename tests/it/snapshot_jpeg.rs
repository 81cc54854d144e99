//! `GET /snapshot.jpg` as NVRs poll it: a JPEG of the current picture at the camera's
//! size, smaller with `?width=`, bad widths refused; made by a branch of the camera's raw
//! frames only while asked for (and, for a camera that delivers H.264, by decoding it:
//! see `transcode_both_ways`).

use crate::common;

use common::Daemon;
use std::time::Instant;

/// A JPEG's size from its start-of-frame marker.
pub fn jpeg_size(jpeg: &[u8]) -> Option<(u16, u16)> {
    if jpeg.get(..2) != Some(&[0xFF, 0xD8]) {
        return None;
    }
    let mut i = 2;
    while i + 9 < jpeg.len() {
        if jpeg[i] != 0xFF {
            return None;
        }
        let marker = jpeg[i + 1];
        let len = u16::from_be_bytes([jpeg[i + 2], jpeg[i + 3]]) as usize;
        if matches!(marker, 0xC0..=0xC3) {
            let h = u16::from_be_bytes([jpeg[i + 5], jpeg[i + 6]]);
            let w = u16::from_be_bytes([jpeg[i + 7], jpeg[i + 8]]);
            return Some((w, h));
        }
        i += 2 + len;
    }
    None
}

/// GET `path`: status, content type and body bytes.
pub async fn get_bytes(daemon: &Daemon, path: &str) -> (u16, String, Vec<u8>) {
    let r = reqwest::get(daemon.url(path)).await.expect("request");
    let code = r.status().as_u16();
    let kind = r
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    (code, kind, r.bytes().await.expect("body").to_vec())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_is_the_current_picture_as_jpeg() {
    let _bound = crate::common::time_bound(
        "snapshot_jpeg::a_snapshot_is_the_current_picture_as_jpeg",
        None,
    );
    let daemon = Daemon::start(&[("EDGECAM_ENCODER__KEYFRAME_INTERVAL_S", "10")]).await;
    let t0 = Instant::now();
    let (code, kind, body) = get_bytes(&daemon, "/snapshot.jpg").await;
    let first = t0.elapsed();
    assert_eq!(code, 200, "{}", String::from_utf8_lossy(&body));
    assert_eq!(kind, "image/jpeg");
    assert_eq!(jpeg_size(&body), Some((640, 360)), "the camera's size");
    // Polled again: served from the stills still being made, at the asked-for width.
    let (code, _, small) = get_bytes(&daemon, "/snapshot.jpg?width=320").await;
    assert_eq!(code, 200);
    assert_eq!(jpeg_size(&small), Some((320, 180)), "same shape, smaller");
    let t1 = Instant::now();
    let (code, _, again) = get_bytes(&daemon, "/snapshot.jpg").await;
    assert_eq!(code, 200);
    assert_eq!(jpeg_size(&again), Some((640, 360)));
    eprintln!(
        "snapshot: first {} ms (10 s GOP), next {} ms",
        first.as_millis(),
        t1.elapsed().as_millis()
    );
    for bad in [
        "/snapshot.jpg?width=abc",
        "/snapshot.jpg?width=5",
        "/snapshot.jpg?width=99999",
    ] {
        let (code, _, body) = get_bytes(&daemon, bad).await;
        assert_eq!(code, 400, "{bad}: {}", String::from_utf8_lossy(&body));
    }
    // Not a viewer: the page's viewer count is untouched.
    assert_eq!(daemon.status().await["viewers"], 0);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_picture_is_said_so() {
    let _bound = crate::common::time_bound("snapshot_jpeg::no_picture_is_said_so", None);
    let daemon = Daemon::start(&[("EDGECAM_CAMERA__AUTOSTART", "false")]).await;
    let (code, _, body) = get_bytes(&daemon, "/snapshot.jpg").await;
    assert_eq!(code, 503);
    assert!(String::from_utf8_lossy(&body).contains("no picture"));
    daemon.stop().await;
}
