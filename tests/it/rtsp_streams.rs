//! The RTSP server as NVRs and players use it: ffprobe and ffmpeg (Debian's) read and
//! decode `/stream` (the WebRTC viewers' own H.264) and `/sub` (the small second encode)
//! over TCP and UDP; GStreamer's rtspsrc plays them; the protocol itself (OPTIONS,
//! DESCRIBE with SPS/PPS in the SDP, SETUP interleaved, PLAY, the GET_PARAMETER
//! keep-alive Synology sends) is checked by hand; the sub-stream is encoded only while
//! someone watches it.

use crate::common;

use common::Daemon;
use std::io::{BufRead, BufReader, Read, Write};
use std::process::Command;
use std::time::Duration;

/// Runs a client with a hard limit: a client that hangs is killed and fails the test
/// saying which, instead of holding the suite until its bound.
fn run(cmd: &mut Command, what: &str) -> std::process::Output {
    use std::process::Stdio;
    let mut child = cmd
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    let deadline = std::time::Instant::now() + Duration::from_secs(40);
    loop {
        if child.try_wait().ok().flatten().is_some() {
            return child.wait_with_output().expect("output");
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "{what} hung for 40 s: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("-version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// ffprobe's codec, width and height of the first video stream.
fn probe(url: &str, transport: &str) -> (String, u64, u64) {
    let out = Command::new("ffprobe")
        .args([
            "-v",
            "error",
            "-rw_timeout",
            "15000000",
            "-rtsp_transport",
            transport,
        ])
        .args([
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=codec_name,width,height",
        ])
        .args(["-of", "json", url])
        .output()
        .expect("ffprobe runs");
    let text = String::from_utf8_lossy(&out.stdout);
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let s = &v["streams"][0];
    (
        s["codec_name"].as_str().unwrap_or_default().to_string(),
        s["width"].as_u64().unwrap_or(0),
        s["height"].as_u64().unwrap_or(0),
    )
}

/// How many frames ffmpeg decodes from `url` (it stops at 90).
fn decode_frames(url: &str, transport: &str) -> usize {
    let out = run(
        Command::new("ffmpeg")
            .args(["-v", "error", "-rtsp_transport", transport])
            .args(["-i", url, "-frames:v", "90", "-f", "framemd5", "-"]),
        &format!("ffmpeg {url} over {transport}"),
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count()
}

/// Plays `url` with GStreamer's rtspsrc (gst-launch-1.0, a client process of its own)
/// until `frames` frames are decoded; their size, read from the negotiated caps, once
/// the frames written out as raw I420 show that all of them were decoded (what the
/// client printed otherwise). The frames are counted in the file rather than trusted
/// from the exit status, which a late teardown message can spoil after the last frame.
fn rtspsrc_play(url: &str, frames: usize) -> Result<(i32, i32), String> {
    let dir = tempfile::tempdir().map_err(|e| e.to_string())?;
    let file = dir.path().join("frames.i420");
    let out = run(
        Command::new("gst-launch-1.0").args(
            format!(
                "-v rtspsrc location={url} protocols=tcp latency=0 ! rtph264depay ! h264parse \
                 ! avdec_h264 ! videoconvert ! video/x-raw,format=I420 \
                 ! identity eos-after={} ! filesink location={}",
                // identity ends the stream in place of the buffer after the last one.
                frames + 1,
                file.display()
            )
            .split_whitespace(),
        ),
        &format!("rtspsrc {url}"),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    let written = std::fs::metadata(&file).map(|m| m.len()).unwrap_or(0);
    let failed = |why: &str| {
        format!(
            "rtspsrc {url}: {why} ({}, {written} bytes written)\n{}\n{}",
            out.status,
            text.lines().rev().take(15).collect::<Vec<_>>().join("\n"),
            String::from_utf8_lossy(&out.stderr)
        )
    };
    let caps = text
        .lines()
        .rev()
        .find(|l| l.contains("filesink") && l.contains("video/x-raw"))
        .ok_or_else(|| failed("no decoded caps"))?;
    let field = |name: &str| -> Option<i32> {
        let rest = caps.split(&format!("{name}=(int)")).nth(1)?;
        rest.split(|c: char| !c.is_ascii_digit())
            .next()?
            .parse()
            .ok()
    };
    let (w, h) = field("width")
        .zip(field("height"))
        .ok_or_else(|| failed("no size in the caps"))?;
    let frame = (w as u64) * (h as u64) * 3 / 2;
    if written != frame * frames as u64 {
        return Err(failed(&format!(
            "{} frames of {frames} decoded",
            written / frame
        )));
    }
    Ok((w, h))
}

/// One RTSP request on `conn`; the status line and headers of its answer, and its body.
fn request(
    conn: &mut BufReader<std::net::TcpStream>,
    seq: u32,
    line: &str,
    headers: &str,
) -> (String, String) {
    let msg =
        format!("{line} RTSP/1.0\r\nCSeq: {seq}\r\nUser-Agent: edgecam-test\r\n{headers}\r\n");
    conn.get_mut().write_all(msg.as_bytes()).expect("send");
    let mut head = String::new();
    loop {
        let mut l = String::new();
        conn.read_line(&mut l).expect("answer");
        if l == "\r\n" || l.is_empty() {
            break;
        }
        head.push_str(&l);
    }
    let length = head
        .lines()
        .find_map(|l| l.strip_prefix("Content-Length: "))
        .and_then(|n| n.trim().parse::<usize>().ok())
        .unwrap_or(0);
    let mut body = vec![0; length];
    conn.read_exact(&mut body).expect("body");
    (head, String::from_utf8_lossy(&body).into_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nvr_clients_read_both_rtsp_streams() {
    let _bound =
        crate::common::time_bound("rtsp_streams::nvr_clients_read_both_rtsp_streams", None);
    if !have("ffprobe") || !have("ffmpeg") {
        eprintln!("SKIPPED nvr_clients_read_both_rtsp_streams: no ffmpeg (sh tests/setup.sh)");
        return;
    }
    let daemon = Daemon::start(&[
        ("EDGECAM_RTSP__LISTEN", "127.0.0.1:0"),
        ("EDGECAM_ENCODER__KEYFRAME_INTERVAL_S", "10"),
        ("EDGECAM_SUBSTREAM__WIDTH", "320"),
        ("EDGECAM_SUBSTREAM__HEIGHT", "180"),
        ("EDGECAM_SUBSTREAM__FPS", "15"),
    ])
    .await;
    let s = daemon.status().await;
    let port = s["rtsp"]["port"].as_u64().expect("RTSP port in status");
    assert_eq!(s["substream"]["running"], false, "nobody watches /sub: {s}");
    let main = format!("rtsp://127.0.0.1:{port}/stream");
    let sub = format!("rtsp://127.0.0.1:{port}/sub");

    // The protocol as an NVR speaks it, by hand.
    let (head, sdp, interleaved) = tokio::task::spawn_blocking({
        let main = main.clone();
        move || {
            let tcp = std::net::TcpStream::connect(("127.0.0.1", port as u16)).expect("connect");
            tcp.set_read_timeout(Some(Duration::from_secs(15))).ok();
            let mut conn = BufReader::new(tcp);
            let (options, _) = request(&mut conn, 1, &format!("OPTIONS {main}"), "");
            let (describe, sdp) = request(
                &mut conn,
                2,
                &format!("DESCRIBE {main}"),
                "Accept: application/sdp\r\n",
            );
            assert!(describe.starts_with("RTSP/1.0 200"), "{describe}");
            let (setup, _) = request(
                &mut conn,
                3,
                &format!("SETUP {main}/stream=0"),
                "Transport: RTP/AVP/TCP;unicast;interleaved=0-1\r\n",
            );
            assert!(setup.starts_with("RTSP/1.0 200"), "{setup}");
            let session = setup
                .lines()
                .find_map(|l| l.strip_prefix("Session: "))
                .map(|v| v.split(';').next().unwrap_or(v).trim().to_string())
                .expect("a session");
            let (play, _) = request(
                &mut conn,
                4,
                &format!("PLAY {main}"),
                &format!("Session: {session}\r\nRange: npt=0.000-\r\n"),
            );
            assert!(play.starts_with("RTSP/1.0 200"), "{play}");
            // Media arrives interleaved in the same connection ('$', channel 0).
            let mut first = [0u8; 1];
            conn.read_exact(&mut first).expect("interleaved data");
            (options, sdp, first[0])
        }
    })
    .await
    .expect("RTSP exchange");
    assert!(head.contains("GET_PARAMETER"), "keep-alive offered: {head}");
    assert!(sdp.contains("H264/90000"), "{sdp}");
    assert!(
        sdp.contains("sprop-parameter-sets="),
        "SPS/PPS in the SDP: {sdp}"
    );
    assert_eq!(interleaved, b'$');

    // Real clients, TCP and UDP, both streams.
    let (m, s2) = (main.clone(), sub.clone());
    let results = tokio::task::spawn_blocking(move || {
        (
            probe(&m, "tcp"),
            probe(&m, "udp"),
            decode_frames(&m, "tcp"),
            decode_frames(&m, "udp"),
            probe(&s2, "tcp"),
            decode_frames(&s2, "udp"),
        )
    })
    .await
    .expect("clients ran");
    assert_eq!(results.0, ("h264".into(), 640, 360), "main over TCP");
    assert_eq!(results.1, ("h264".into(), 640, 360), "main over UDP");
    assert_eq!(results.2, 90, "90 frames decoded over TCP");
    assert_eq!(results.3, 90, "90 frames decoded over UDP");
    assert_eq!(results.4, ("h264".into(), 320, 180), "sub over TCP");
    assert_eq!(results.5, 90, "90 sub frames decoded over UDP");

    // GStreamer's rtspsrc plays the sub-stream; meanwhile it is encoded, and stops after.
    let s3 = sub.clone();
    let player = tokio::task::spawn_blocking(move || rtspsrc_play(&s3, 60));
    let s = daemon
        .wait_status(20, |s| s["substream"]["running"] == true)
        .await;
    assert_eq!(s["substream"]["origin"], "camera", "{s}");
    assert_eq!(player.await.expect("player"), Ok((320, 180)));
    let m2 = main.clone();
    let size = tokio::task::spawn_blocking(move || rtspsrc_play(&m2, 30))
        .await
        .expect("player");
    assert_eq!(size, Ok((640, 360)), "rtspsrc plays /stream");
    let s = daemon
        .wait_status(20, |s| {
            s["substream"]["viewers"] == 0 && s["substream"]["running"] == false
        })
        .await;
    assert!(
        s["substream"]["frames_encoded"].as_u64().unwrap_or(0) > 0,
        "{s}"
    );
    daemon.stop().await;
}

/// ffprobe's codec and size of `url`'s video over TCP, or what it printed when it failed.
fn probe_or_why(url: &str) -> Result<(String, u64, u64), String> {
    let out = run(
        Command::new("ffprobe")
            .args(["-v", "error", "-rtsp_transport", "tcp"])
            .args([
                "-select_streams",
                "v:0",
                "-show_entries",
                "stream=codec_name,width,height",
            ])
            .args(["-of", "json", url]),
        &format!("ffprobe {url}"),
    );
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
    let s = &v["streams"][0];
    match (
        s["codec_name"].as_str(),
        s["width"].as_u64(),
        s["height"].as_u64(),
    ) {
        (Some(c), Some(w), Some(h)) => Ok((c.to_string(), w, h)),
        _ => Err(String::from_utf8_lossy(&out.stderr).into_owned()),
    }
}

/// With a viewer password, both streams need RTSP Digest credentials (user `viewer` or
/// `admin`): refused without and with wrong ones, played with right ones by ffprobe and
/// rtspsrc; wrong ones count toward the same per-address limit as the page's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_passwords_nvrs_need_digest_credentials() {
    let _bound = crate::common::time_bound(
        "rtsp_streams::with_passwords_nvrs_need_digest_credentials",
        None,
    );
    if !have("ffprobe") {
        eprintln!(
            "SKIPPED with_passwords_nvrs_need_digest_credentials: no ffmpeg (sh tests/setup.sh)"
        );
        return;
    }
    let viewer_hash = edgecam::auth::hash_password("garden-camera").expect("hash");
    let daemon = Daemon::start_with_admin(
        &[
            ("EDGECAM_RTSP__LISTEN", "127.0.0.1:0"),
            ("EDGECAM_AUTH__VIEWER_PASSWORD_HASH", &viewer_hash),
            ("EDGECAM_SUBSTREAM__WIDTH", "320"),
            ("EDGECAM_SUBSTREAM__HEIGHT", "180"),
        ],
        "owner-secret-9",
    )
    .await;
    // The admin password is known from the harness's own logins; the viewer's from its
    // first use on the page.
    let viewer = crate::common::basic_auth("x", "garden-camera");
    let (code, _, _) = crate::common::http_full(
        daemon.addr,
        "GET",
        "/api/status",
        &[("Authorization", &viewer)],
        "",
    )
    .await;
    assert_eq!(code, 200);
    let port = daemon.status().await["rtsp"]["port"]
        .as_u64()
        .expect("RTSP port");
    let url = move |cred: &str, path: &str| format!("rtsp://{cred}127.0.0.1:{port}{path}");

    let results = tokio::task::spawn_blocking(move || {
        (
            probe_or_why(&url("", "/stream")),
            probe_or_why(&url("viewer:garden-cat@", "/stream")),
            probe_or_why(&url("guest:garden-camera@", "/stream")),
            probe_or_why(&url("viewer:garden-camera@", "/stream")),
            probe_or_why(&url("admin:owner-secret-9@", "/sub")),
            rtspsrc_play(&url("viewer:garden-camera@", "/stream"), 30),
        )
    })
    .await
    .expect("clients ran");
    for (what, r) in [
        ("no credentials", &results.0),
        ("a wrong password", &results.1),
        ("an unknown user", &results.2),
    ] {
        let why = r.as_ref().expect_err(what);
        assert!(why.contains("401"), "{what}: {why}");
    }
    assert_eq!(results.3, Ok(("h264".into(), 640, 360)), "viewer");
    assert_eq!(
        results.4,
        Ok(("h264".into(), 320, 180)),
        "admin, sub-stream"
    );
    assert_eq!(results.5, Ok((640, 360)), "rtspsrc with credentials");

    // Five wrong in a row: the right one waits too, here and on the page.
    let refused = tokio::task::spawn_blocking(move || {
        for n in 0..5 {
            let r = probe_or_why(&url(&format!("viewer:guess-{n}@"), "/stream"));
            assert!(r.is_err(), "guess {n}: {r:?}");
        }
        probe_or_why(&url("viewer:garden-camera@", "/stream"))
    })
    .await
    .expect("clients ran");
    assert!(refused.is_err(), "blocked after five wrong: {refused:?}");
    let (code, _, _) = crate::common::http_full(
        daemon.addr,
        "GET",
        "/api/status",
        &[("Authorization", &viewer)],
        "",
    )
    .await;
    assert_eq!(code, 429, "the page's limit is the same one");
    daemon.stop().await;
}
