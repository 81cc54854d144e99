//! Every viewer gets a codec it plays, whatever the presenter sends: a VP8-only presenter
//! (a Firefox without OpenH264, a WHIP client) is relayed as sent to VP8 viewers and
//! made H.264 only while an H.264-only viewer watches; a camera that delivers H.264
//! itself (here `rtp:`, as a UVC camera's H.264 would be) is decoded and made VP8 only
//! while a viewer without H.264 watches; so is a relayed H.264 presenter.

use crate::common;

use common::rust_presenter::RustPresenter;
use common::rust_viewer::RustViewer;
use common::{Daemon, vp8_keyframe_size};
use edgecam::media::{nal, nal_types};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vp8_presenter_is_relayed_as_sent_and_made_h264_for_the_others() {
    let _bound = crate::common::time_bound(
        "transcode_both_ways::a_vp8_presenter_is_relayed_as_sent_and_made_h264_for_the_others",
        None,
    );
    let daemon = Daemon::start(&[
        ("EDGECAM_CAMERA__AUTOSTART", "false"),
        ("EDGECAM_CAMERA__WIDTH", "640"),
        ("EDGECAM_CAMERA__HEIGHT", "360"),
    ])
    .await;
    let mut presenter = RustPresenter::present_vp8(&daemon.ws_url()).await;
    assert_eq!(
        presenter.response["response"], "accepted",
        "{}",
        presenter.response
    );
    let answer = presenter.response["sdpAnswer"].as_str().unwrap_or_default();
    assert!(
        answer.contains("VP8/90000") && !answer.contains("H264"),
        "{answer}"
    );
    presenter.connect(20).await;
    let s = daemon
        .wait_status(10, |s| s["vp8"]["origin"] == "presenter")
        .await;
    assert_eq!(s["transcode"]["from"], "vp8", "{s}");
    assert_eq!(s["transcode"]["to"], "h264", "{s}");
    assert_eq!(
        s["transcode"]["running"], false,
        "nobody needs H.264 yet: {s}"
    );

    // A VP8 viewer gets the presenter's own frames (its 320x240, not a re-encode).
    let vp8 = RustViewer::join_vp8_only(&daemon.ws_url()).await;
    assert_eq!(vp8.answer["response"], "accepted", "{}", vp8.answer);
    assert!(vp8.wait_frames(15, 20).await >= 15, "relayed VP8 frames");
    assert_eq!(
        vp8_keyframe_size(&vp8.received.lock().unwrap().access_units[0]),
        Some((320, 240)),
        "starts on the presenter's key frame, as sent"
    );
    assert_eq!(daemon.status().await["transcode"]["running"], false);

    // An H.264-only viewer gets it transcoded, at the camera's size.
    let h264 = RustViewer::join_h264_only(&daemon.ws_url()).await;
    assert_eq!(h264.answer["response"], "accepted", "{}", h264.answer);
    let answer = h264.answer["sdpAnswer"].as_str().unwrap_or_default();
    assert!(answer.contains("H264/90000"), "{answer}");
    assert!(h264.wait_frames(15, 30).await >= 15, "transcoded H.264");
    {
        let r = h264.received.lock().unwrap();
        let first = nal_types(&r.access_units[0]);
        assert!(
            first.contains(&nal::SPS) && first.contains(&nal::IDR),
            "starts on an IDR with its SPS: {first:?}"
        );
    }
    let s = daemon.status().await;
    assert_eq!(s["transcode"]["running"], true, "{s}");
    assert!(
        s["transcode"]["frames_encoded"].as_u64().unwrap_or(0) > 0,
        "{s}"
    );
    assert_eq!(s["viewers"], 2, "the transcoder is no viewer: {s}");
    let (_, metrics) = daemon.get("/metrics").await;
    assert!(metrics.contains("edgecam_transcode_running 1"), "{metrics}");
    // The VP8 viewer kept its relayed stream meanwhile.
    let before = vp8.frames();
    assert!(vp8.wait_frames(before + 10, 10).await >= before + 10);

    // The last H.264 viewer leaves: the transcoder stops.
    h264.close().await;
    daemon
        .wait_status(15, |s| s["transcode"]["running"] == false)
        .await;
    vp8.close().await;
    presenter.stop().await;
    // The presenter's slot is freed first; its peer (which says what it produced) ends
    // a moment later, and the transcoder's plan follows what was produced after that.
    daemon
        .wait_status(15, |s| {
            s["presenter"] == "none"
                && s["vp8"]["origin"].is_null()
                && s["transcode"]["from"].is_null()
        })
        .await;
    daemon.stop().await;
}

/// A free UDP port on loopback (bound and let go: the daemon's `udpsrc` takes it).
fn free_udp_port() -> u16 {
    std::net::UdpSocket::bind("127.0.0.1:0")
        .and_then(|s| s.local_addr())
        .expect("a UDP port")
        .port()
}

/// Kills the RTP sender when the test ends, however it ends.
struct Feeder(std::process::Child);

impl Drop for Feeder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_h264_camera_is_made_vp8_only_while_a_viewer_without_h264_watches() {
    let _bound = crate::common::time_bound(
        "transcode_both_ways::an_h264_camera_is_made_vp8_only_while_a_viewer_without_h264_watches",
        None,
    );
    let port = free_udp_port();
    let source = format!("rtp:{port}");
    let daemon = Daemon::start(&[
        ("EDGECAM_CAMERA__SOURCE", source.as_str()),
        ("EDGECAM_FALLBACK__WIDTH", "320"),
        ("EDGECAM_FALLBACK__HEIGHT", "180"),
    ])
    .await;
    let _feeder = Feeder(
        std::process::Command::new("gst-launch-1.0")
            .args(["-q"])
            .args(
                format!(
                    "videotestsrc is-live=true pattern=ball \
                     ! video/x-raw,width=320,height=240,framerate=30/1 \
                     ! x264enc tune=zerolatency speed-preset=ultrafast bitrate=400 key-int-max=30 \
                     ! video/x-h264,profile=constrained-baseline \
                     ! rtph264pay config-interval=-1 pt=96 mtu=1200 \
                     ! udpsink host=127.0.0.1 port={port}"
                )
                .split_whitespace(),
            )
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("gst-launch-1.0"),
    );
    let s = daemon
        .wait_status(30, |s| s["pipeline"]["state"] == "running")
        .await;
    assert_eq!(s["encoder"], "passthrough", "{s}");
    assert_eq!(s["vp8"]["available"], true, "{s}");
    assert_eq!(s["vp8"]["origin"], "transcode", "{s}");
    assert_eq!(s["transcode"]["from"], "h264", "{s}");
    assert_eq!(s["transcode"]["running"], false, "nobody watches VP8: {s}");
    // A snapshot of an H.264 camera is decoded from its stream (no raw frames).
    let (code, kind, jpeg) = crate::snapshot_jpeg::get_bytes(&daemon, "/snapshot.jpg").await;
    assert_eq!((code, kind.as_str()), (200, "image/jpeg"));
    assert_eq!(crate::snapshot_jpeg::jpeg_size(&jpeg), Some((320, 240)));

    let vp8 = RustViewer::join_vp8_only(&daemon.ws_url()).await;
    assert_eq!(vp8.answer["response"], "accepted", "{}", vp8.answer);
    assert!(vp8.wait_frames(15, 30).await >= 15, "VP8 made from H.264");
    assert_eq!(
        vp8_keyframe_size(&vp8.received.lock().unwrap().access_units[0]),
        Some((320, 180)),
        "a key frame at the fallback size first"
    );
    let s = daemon.status().await;
    assert_eq!(s["transcode"]["running"], true, "{s}");
    assert_eq!(s["vp8"]["running"], true, "{s}");
    assert!(s["vp8"]["frames_encoded"].as_u64().unwrap_or(0) > 0, "{s}");
    assert_eq!(
        s["fanout"]["subscribed"], 0,
        "the transcoder is no viewer: {s}"
    );

    vp8.close().await;
    daemon
        .wait_status(15, |s| {
            s["transcode"]["running"] == false && s["vp8"]["running"] == false
        })
        .await;
    daemon.stop().await;
}

/// A sendonly VP8-only offer, as a WHIP publisher without H.264 makes.
async fn vp8_publisher_offer() -> (
    std::sync::Arc<dyn webrtc::peer_connection::PeerConnection>,
    String,
) {
    use rtc::media_stream::MediaStreamTrack;
    use rtc::rtp_transceiver::rtp_sender::{
        RTCRtpCodingParameters, RTCRtpEncodingParameters, RtpCodecKind,
    };
    use webrtc::media_stream::track_local::TrackLocal;
    use webrtc::media_stream::track_local::static_sample::TrackLocalStaticSample;
    struct Quiet;
    #[async_trait::async_trait]
    impl webrtc::peer_connection::PeerConnectionEventHandler for Quiet {}
    let pc = common::loopback_peer_vp8_only(std::sync::Arc::new(Quiet)).await;
    let track = TrackLocalStaticSample::new(
        std::time::Instant::now(),
        MediaStreamTrack::new(
            "whip-vp8".into(),
            "video".into(),
            "video".into(),
            RtpCodecKind::Video,
            vec![RTCRtpEncodingParameters {
                rtp_coding_parameters: RTCRtpCodingParameters {
                    ssrc: Some(4343),
                    ..Default::default()
                },
                codec: edgecam::peer::vp8_codec().rtp_codec,
                ..Default::default()
            }],
        ),
    )
    .expect("track");
    pc.add_track(std::sync::Arc::new(track) as std::sync::Arc<dyn TrackLocal>)
        .await
        .expect("add track");
    let offer = pc.create_offer(None).await.expect("offer");
    (pc, offer.sdp)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_whip_publisher_may_send_vp8() {
    let _bound =
        crate::common::time_bound("transcode_both_ways::a_whip_publisher_may_send_vp8", None);
    const TOKEN: &str = "whip-token-vp8-0123456789";
    let daemon = Daemon::start(&[
        ("EDGECAM_CAMERA__AUTOSTART", "false"),
        ("EDGECAM_WHIP__TOKEN", TOKEN),
    ])
    .await;
    let (pc, offer) = vp8_publisher_offer().await;
    assert!(!offer.contains("H264"), "{offer}");
    let bearer = format!("Bearer {TOKEN}");
    let (code, head, answer) = common::http_full(
        daemon.addr,
        "POST",
        "/whip",
        &[
            ("Content-Type", "application/sdp"),
            ("Authorization", &bearer),
        ],
        &offer,
    )
    .await;
    assert_eq!(code, 201, "{answer}");
    assert!(
        answer.contains("VP8/90000") && answer.contains("a=recvonly"),
        "{answer}"
    );
    let s = daemon.status().await;
    assert_eq!(s["presenter"], "browser", "{s}");
    assert_eq!(s["vp8"]["origin"], "presenter", "{s}");
    assert_eq!(s["transcode"]["to"], "h264", "{s}");
    let location = common::header(&head, "location")
        .expect("Location")
        .to_string();
    let (code, _, _) = common::http_full(
        daemon.addr,
        "DELETE",
        &location,
        &[("Authorization", &bearer)],
        "",
    )
    .await;
    assert_eq!(code, 200);
    let s = daemon.wait_status(10, |s| s["presenter"] == "none").await;
    assert_eq!(s["vp8"]["origin"], serde_json::Value::Null, "{s}");
    let _ = pc.close().await;
    daemon.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relayed_h264_presenter_is_made_vp8_for_a_viewer_without_h264() {
    let _bound = crate::common::time_bound(
        "transcode_both_ways::a_relayed_h264_presenter_is_made_vp8_for_a_viewer_without_h264",
        None,
    );
    let daemon = Daemon::start(&[
        ("EDGECAM_CAMERA__AUTOSTART", "false"),
        ("EDGECAM_FALLBACK__WIDTH", "320"),
        ("EDGECAM_FALLBACK__HEIGHT", "180"),
    ])
    .await;
    let mut presenter = RustPresenter::present(&daemon.ws_url()).await;
    assert_eq!(presenter.response["response"], "accepted");
    presenter.connect(20).await;
    let s = daemon
        .wait_status(10, |s| s["presenter"] == "browser")
        .await;
    assert_eq!(s["vp8"]["origin"], "transcode", "{s}");
    let vp8 = RustViewer::join_vp8_only(&daemon.ws_url()).await;
    assert_eq!(vp8.answer["response"], "accepted", "{}", vp8.answer);
    assert!(
        vp8.wait_frames(15, 30).await >= 15,
        "VP8 made from the relayed H.264"
    );
    assert_eq!(
        vp8_keyframe_size(&vp8.received.lock().unwrap().access_units[0]),
        Some((320, 180))
    );
    assert_eq!(daemon.status().await["transcode"]["running"], true);
    vp8.close().await;
    daemon
        .wait_status(15, |s| s["transcode"]["running"] == false)
        .await;
    presenter.stop().await;
    daemon.stop().await;
}
