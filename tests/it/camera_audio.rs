//! The camera's microphone (`audio.source = "test"`, a tone): encoded once to Opus and
//! heard by a viewer page in Chromium (audio packets received, decoded, not silent; the
//! unmute button appears and unmutes) and by ffmpeg on both RTSP streams (Opus frames
//! decoded). A microphone that keeps vanishing (`test:packets=N`) is restarted while the
//! video goes on untouched.

use crate::common;

use common::Daemon;
use common::browser::Browser;
use std::process::Command;

/// How many Opus frames ffmpeg decodes from `url` (it stops at `n`), and its exit code.
fn decode_audio(url: &str, n: usize) -> (usize, i32) {
    let out = Command::new("timeout")
        .args([
            "40",
            "ffmpeg",
            "-v",
            "error",
            "-rtsp_transport",
            "tcp",
            "-i",
            url,
        ])
        .args([
            "-map",
            "0:a",
            "-frames:a",
            &n.to_string(),
            "-f",
            "framemd5",
            "-",
        ])
        .output()
        .expect("ffmpeg runs");
    if !out.status.success() {
        eprintln!("ffmpeg {url}: {}", String::from_utf8_lossy(&out.stderr));
    }
    let text = String::from_utf8_lossy(&out.stdout);
    let audio = text
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .count();
    (audio, out.status.code().unwrap_or(-1))
}

const AUDIO_PROBE: &str = r#"(async () => {
  const pc = window.edgecam && window.edgecam.pc;
  const out = { packets: 0, samples: 0, level: 0, codec: '', frames: 0,
                unmute: !document.getElementById('unmute').hidden,
                muted: document.getElementById('video').muted };
  if (!pc) return out;
  const stats = await pc.getStats();
  const codecs = {};
  stats.forEach(r => { if (r.type === 'codec') codecs[r.id] = r.mimeType; });
  stats.forEach(r => {
    if (r.type === 'inbound-rtp' && r.kind === 'audio') {
      out.packets = r.packetsReceived || 0;
      out.samples = r.totalSamplesReceived || 0;
      out.level = r.audioLevel || 0;
      out.codec = codecs[r.codecId] || '';
    }
    if (r.type === 'inbound-rtp' && r.kind === 'video') out.frames = r.framesDecoded || 0;
  });
  return out;
})()"#;

/// A one2many viewer in Chromium whose offer has VP8 and no H.264 (as Firefox without
/// OpenH264): the video and audio it receives after a few seconds.
const VP8_VIEWER: &str = r#"new Promise(async (resolve) => {
  const pc = new RTCPeerConnection();
  const t = pc.addTransceiver('video', { direction: 'recvonly' });
  t.setCodecPreferences(RTCRtpReceiver.getCapabilities('video').codecs
    .filter(c => c.mimeType === 'video/VP8'));
  pc.addTransceiver('audio', { direction: 'recvonly' });
  const ws = new WebSocket(`ws://${location.host}/one2many`);
  pc.onicecandidate = e => e.candidate && ws.readyState === 1 &&
    ws.send(JSON.stringify({ id: 'onIceCandidate', candidate: e.candidate }));
  ws.onmessage = async (e) => {
    const m = JSON.parse(e.data);
    if (m.id === 'viewerResponse' && m.response === 'accepted')
      await pc.setRemoteDescription({ type: 'answer', sdp: m.sdpAnswer });
    if (m.id === 'iceCandidate') await pc.addIceCandidate(m.candidate);
  };
  const offer = await pc.createOffer();
  await pc.setLocalDescription(offer);
  const join = () => ws.send(JSON.stringify({ id: 'viewer', sdpOffer: offer.sdp }));
  if (ws.readyState === 1) join(); else ws.onopen = join;
  const deadline = Date.now() + 12000;
  for (;;) {
    await new Promise(r => setTimeout(r, 500));
    const out = { video: '', audio: 0, frames: 0, pc: pc.connectionState, answered: !!pc.remoteDescription };
    const stats = await pc.getStats();
    const codecs = {};
    stats.forEach(r => { if (r.type === 'codec') codecs[r.id] = r.mimeType; });
    stats.forEach(r => {
      if (r.type === 'inbound-rtp' && r.kind === 'video') { out.frames = r.framesDecoded || 0; out.video = codecs[r.codecId] || ''; }
      if (r.type === 'inbound-rtp' && r.kind === 'audio') out.audio = r.packetsReceived || 0;
    });
    if ((out.frames > 10 && out.audio > 50) || Date.now() > deadline) { ws.close(); pc.close(); return resolve(out); }
  }
})"#;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_microphone_reaches_chromium_and_both_rtsp_streams() {
    let _bound = crate::common::time_bound(
        "camera_audio::the_microphone_reaches_chromium_and_both_rtsp_streams",
        None,
    );
    let daemon = Daemon::start(&[
        ("EDGECAM_AUDIO__SOURCE", "test"),
        ("EDGECAM_RTSP__LISTEN", "127.0.0.1:0"),
        ("EDGECAM_SUBSTREAM__WIDTH", "320"),
        ("EDGECAM_SUBSTREAM__HEIGHT", "180"),
    ])
    .await;
    let s = daemon
        .wait_status(20, |s| s["audio"]["state"] == "running")
        .await;
    assert_eq!(s["audio"]["source"], "test", "{s}");
    let port = s["rtsp"]["port"].as_u64().expect("RTSP port");

    // RTSP: both streams carry the one Opus encode.
    let (main, sub) = tokio::task::spawn_blocking(move || {
        (
            decode_audio(&format!("rtsp://127.0.0.1:{port}/stream"), 100),
            decode_audio(&format!("rtsp://127.0.0.1:{port}/sub"), 100),
        )
    })
    .await
    .expect("ffmpeg");
    assert_eq!(main, (100, 0), "100 Opus frames decoded from /stream");
    assert_eq!(sub, (100, 0), "100 Opus frames decoded from /sub");

    // The viewer page in Chromium.
    let Some(browser) = Browser::launch_or_skip(
        "camera_audio",
        &["--autoplay-policy=no-user-gesture-required"],
    )
    .await
    else {
        daemon.stop().await;
        return;
    };
    let page = browser.open(&daemon.url("/")).await;
    let v = page
        .wait_for(AUDIO_PROBE, 60, "Opus heard on the viewer page", |v| {
            v["packets"].as_u64().unwrap_or(0) > 100
                && v["frames"].as_u64().unwrap_or(0) > 10
                && v["unmute"] == true
        })
        .await;
    eprintln!("viewer page audio: {v}");
    assert_eq!(v["codec"], "audio/opus", "{v}");
    assert_eq!(v["muted"], true, "the page starts muted (autoplay rules)");
    page.eval("document.getElementById('unmute').click(), true")
        .await;
    let v = page
        .wait_for(AUDIO_PROBE, 30, "unmuted and decoding the tone", |v| {
            v["muted"] == false
                && v["unmute"] == false
                && v["samples"].as_u64().unwrap_or(0) > 48_000
                && v["level"].as_f64().unwrap_or(0.0) > 0.01
        })
        .await;
    eprintln!("viewer page audio, unmuted: {v}");
    // A viewer of the VP8 stream hears the same microphone.
    let v = page.eval(VP8_VIEWER).await;
    assert_eq!(v["video"], "video/VP8", "{v}");
    assert!(
        v["audio"].as_u64().unwrap_or(0) > 50,
        "VP8 viewer hears: {v}"
    );
    page.close().await;
    drop(browser);
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vanishing_microphone_is_restarted_and_the_video_goes_on() {
    let _bound = crate::common::time_bound(
        "camera_audio::a_vanishing_microphone_is_restarted_and_the_video_goes_on",
        None,
    );
    // The tone ends after 1 s each time, as an unplugged USB microphone would.
    let daemon = Daemon::start(&[
        ("EDGECAM_AUDIO__SOURCE", "test:packets=50"),
        ("EDGECAM_RTSP__LISTEN", "127.0.0.1:0"),
    ])
    .await;
    let before = daemon.status().await;
    let port = before["rtsp"]["port"].as_u64().expect("RTSP port");
    // Over RTSP, video and audio (the tone, then silence while it is away) go on.
    let (audio, code) = tokio::task::spawn_blocking(move || {
        decode_audio(&format!("rtsp://127.0.0.1:{port}/stream"), 250)
    })
    .await
    .expect("ffmpeg");
    assert_eq!(
        (audio, code),
        (250, 0),
        "5 s of audio through the microphone's absences"
    );
    let s = daemon
        .wait_status(20, |s| s["audio"]["restarts"].as_u64().unwrap_or(0) >= 2)
        .await;
    assert_eq!(s["pipeline"]["state"], "running", "{s}");
    assert_eq!(s["pipeline_restarts"], 0, "the camera never restarted: {s}");
    assert!(
        s["frames_encoded"].as_u64() > before["frames_encoded"].as_u64(),
        "{s}"
    );
    assert!(s["audio"]["packets"].as_u64().unwrap_or(0) >= 100, "{s}");
    daemon.stop().await;
}
