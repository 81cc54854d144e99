//! Pure pipeline-description builder: source fragment + encoder choice + settings ->
//! a gst-launch string ending in an appsink named `sink` that yields byte-stream H.264
//! access units with SPS/PPS before every IDR, its raw frames through a tee named `raw`
//! where the runner links the VP8 branch (`vp8_branch`, for browsers without H.264)
//! only while someone watches it: a pipeline nobody watches in VP8 starts and runs as if
//! there were no VP8 at all (a branch built in and shut by a valve cost a restart on an
//! emulated board seconds, libvpx setting up at every start). The transcoders
//! (`h264_to_vp8`, `vp8_to_h264`) read an appsrc named `src`.

use crate::config::EncoderKind;

/// The encoder actually used for a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoder {
    /// The camera already delivers H.264.
    Passthrough,
    /// `v4l2h264enc` (Raspberry Pi 2–4 VideoCore encoder).
    Hardware,
    X264,
    OpenH264,
}

impl Encoder {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Passthrough => "passthrough",
            Self::Hardware => "v4l2h264enc",
            Self::X264 => "x264enc",
            Self::OpenH264 => "openh264enc",
        }
    }
}

/// Numbers the encoder needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EncodeSettings {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
    pub keyframe_interval_s: u32,
}

/// The VP8 branch's numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Vp8Settings {
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
}

/// No encoder that fits the request is installed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "no usable H.264 encoder for encoder.kind = {kind}: GStreamer element {missing} is not installed"
)]
pub struct NoEncoder {
    pub kind: EncoderKind,
    pub missing: &'static str,
}

/// Picks the encoder for `kind`. `auto` prefers hardware, then x264, then openh264.
pub fn choose(
    kind: EncoderKind,
    source_delivers_h264: bool,
    has_element: &dyn Fn(&str) -> bool,
) -> Result<Encoder, NoEncoder> {
    if source_delivers_h264 {
        return Ok(Encoder::Passthrough);
    }
    let want = |enc: Encoder| {
        if has_element(enc.name()) {
            Ok(enc)
        } else {
            Err(NoEncoder {
                kind,
                missing: enc.name(),
            })
        }
    };
    match kind {
        EncoderKind::Hardware => want(Encoder::Hardware),
        EncoderKind::X264 => want(Encoder::X264),
        EncoderKind::OpenH264 => want(Encoder::OpenH264),
        EncoderKind::Auto => want(Encoder::Hardware)
            .or_else(|_| want(Encoder::X264))
            .or_else(|_| want(Encoder::OpenH264))
            .map_err(|_| NoEncoder {
                kind,
                missing: "x264enc (or v4l2h264enc, openh264enc)",
            }),
    }
}

/// The lowest H.264 level whose macroblock limits fit the size and rate
/// (ITU-T H.264 table A-1), never below 3.0. The Pi's encoder needs it stated.
pub fn h264_level(width: u32, height: u32, fps: u32) -> &'static str {
    let mbs = u64::from(width.div_ceil(16)) * u64::from(height.div_ceil(16));
    let mbps = mbs * u64::from(fps);
    const LEVELS: &[(&str, u64, u64)] = &[
        ("3", 40_500, 1_620),
        ("3.1", 108_000, 3_600),
        ("3.2", 216_000, 5_120),
        ("4", 245_760, 8_192),
        ("4.2", 522_240, 8_704),
        ("5", 589_824, 22_080),
        ("5.1", 983_040, 36_864),
    ];
    LEVELS
        .iter()
        .find(|(_, max_mbps, max_fs)| mbps <= *max_mbps && mbs <= *max_fs)
        .map_or("5.2", |(name, _, _)| name)
}

/// A leaky queue decouples capture from encoding: if the encoder falls behind, old
/// frames are dropped instead of latency growing.
const QUEUE: &str = "queue leaky=downstream max-size-buffers=2 max-size-bytes=0 max-size-time=0";

/// Raw frames to byte-stream H.264 access units with SPS/PPS before every IDR, up to
/// (not including) the appsink.
fn h264_encode(encoder: Encoder, s: &EncodeSettings) -> String {
    let gop_frames = gop_frames(s);
    let bps = u64::from(s.bitrate_kbps) * 1000;
    let raw_i420 = "videoconvert ! video/x-raw,format=I420";
    let encode = match encoder {
        Encoder::Passthrough => String::new(),
        Encoder::X264 => format!(
            "{QUEUE} ! {raw_i420} ! x264enc name=enc tune=zerolatency speed-preset=ultrafast \
             bitrate={} key-int-max={gop_frames} bframes=0 b-adapt=false aud=false \
             byte-stream=true ! video/x-h264,profile=constrained-baseline ! ",
            s.bitrate_kbps
        ),
        Encoder::OpenH264 => format!(
            "{QUEUE} ! {raw_i420} ! openh264enc name=enc bitrate={bps} gop-size={gop_frames} \
             rate-control=bitrate usage-type=camera complexity=low \
             ! video/x-h264,profile=constrained-baseline ! "
        ),
        Encoder::Hardware => format!(
            "{QUEUE} ! {raw_i420} ! v4l2h264enc name=enc extra-controls=\"controls,\
             repeat_sequence_header=1,video_bitrate={bps},h264_i_frame_period={gop_frames},\
             h264_profile=1\" ! video/x-h264,profile=constrained-baseline,level=(string){} ! ",
            h264_level(s.width, s.height, s.fps)
        ),
    };
    format!(
        "{encode}h264parse config-interval=-1 \
         ! video/x-h264,stream-format=byte-stream,alignment=au"
    )
}

/// Frames between keyframes.
pub fn gop_frames(s: &EncodeSettings) -> u32 {
    s.keyframe_interval_s.saturating_mul(s.fps).max(1)
}

/// Raw frames (any size) to realtime VP8 at the fallback size, up to the appsink.
fn vp8_encode(v: &Vp8Settings, gop_frames: u32) -> String {
    format!(
        "videoscale ! videoconvert \
         ! video/x-raw,format=I420,width={},height={},pixel-aspect-ratio=1/1 \
         ! vp8enc name=vp8enc deadline=1 cpu-used=8 end-usage=cbr target-bitrate={} \
         keyframe-max-dist={gop_frames} lag-in-frames=0 threads=2 error-resilient=default",
        v.width,
        v.height,
        u64::from(v.bitrate_kbps) * 1000
    )
}

/// The full pipeline description. `vp8`: leave a tee for the VP8 branch (only where the
/// source gives raw frames; a camera that delivers H.264 is passed through without one).
pub fn describe(source_fragment: &str, encoder: Encoder, s: &EncodeSettings, vp8: bool) -> String {
    let h264 = format!(
        "{} ! appsink name=sink sync=false max-buffers=8 drop=true",
        h264_encode(encoder, s)
    );
    if vp8 && encoder != Encoder::Passthrough {
        format!("{source_fragment} ! tee name=raw allow-not-linked=true ! {h264}")
    } else {
        format!("{source_fragment} ! {h264}")
    }
}

/// The VP8 branch the runner links to the `raw` tee while it is watched: its own leaky
/// queue (a slow VP8 encode never holds up the H.264 one), realtime VP8, and a sink that
/// takes no part in prerolling (it joins a pipeline that is already playing).
pub fn vp8_branch(v: &Vp8Settings, s: &EncodeSettings) -> String {
    format!(
        "queue leaky=downstream max-size-buffers=1 max-size-bytes=0 max-size-time=0 ! {} \
         ! appsink name=vp8sink sync=false async=false max-buffers=8 drop=true",
        vp8_encode(v, gop_frames(s))
    )
}

/// Raw frames (any size and rate) to the sub-stream's size and rate.
fn sub_scale(sub: &EncodeSettings) -> String {
    format!(
        "videorate drop-only=true ! videoscale ! videoconvert \
         ! video/x-raw,format=I420,width={},height={},framerate={}/1,pixel-aspect-ratio=1/1",
        sub.width, sub.height, sub.fps
    )
}

/// The sub-stream branch the runner links to the `raw` tee while it is watched: a second,
/// small H.264 encode (for an NVR's motion detection), ending in an appsink `subsink`.
pub fn sub_branch(encoder: Encoder, sub: &EncodeSettings) -> String {
    format!(
        "queue leaky=downstream max-size-buffers=1 max-size-bytes=0 max-size-time=0 ! {} ! {} \
         ! appsink name=subsink sync=false async=false max-buffers=8 drop=true",
        sub_scale(sub),
        h264_encode(encoder, sub)
    )
}

/// The sub-stream made from the H.264 stream (a camera that delivers H.264, a relayed
/// H.264 presenter), ending in an appsink named `sink`.
pub fn h264_to_sub(decoder: &str, encoder: Encoder, sub: &EncodeSettings) -> String {
    format!(
        "{} ! h264parse ! {decoder} ! {QUEUE} ! {} ! {} ! appsink name=sink sync=false max-buffers=8 drop=true",
        transcode_source("video/x-h264,stream-format=byte-stream,alignment=au"),
        sub_scale(sub),
        h264_encode(encoder, sub)
    )
}

/// The sub-stream made from a VP8 presenter's video, ending in an appsink named `sink`.
pub fn vp8_to_sub(encoder: Encoder, sub: &EncodeSettings) -> String {
    format!(
        "{} ! vp8dec ! {QUEUE} ! {} ! {} ! appsink name=sink sync=false max-buffers=8 drop=true",
        transcode_source("video/x-vp8"),
        sub_scale(sub),
        h264_encode(encoder, sub)
    )
}

/// Snapshots are made at most this often (a polling NVR asks about once a second).
pub const STILLS_PER_SECOND: u32 = 2;

/// Raw frames to JPEG stills, a few a second, up to the appsink.
fn stills() -> String {
    format!(
        "videorate drop-only=true max-rate={STILLS_PER_SECOND} ! videoconvert ! jpegenc quality=85"
    )
}

/// The snapshot branch the runner links to the `raw` tee while snapshots are asked for:
/// the current picture as JPEG at the capture's size, ending in an appsink `stillsink`.
pub fn still_branch() -> String {
    format!(
        "queue leaky=downstream max-size-buffers=1 max-size-bytes=0 max-size-time=0 ! {} \
         ! appsink name=stillsink sync=false async=false max-buffers=2 drop=true",
        stills()
    )
}

/// Snapshots made from the H.264 stream (no raw frames: a camera that delivers H.264, a
/// relayed presenter), ending in an appsink named `sink`.
pub fn h264_to_still(decoder: &str) -> String {
    format!(
        "{} ! h264parse ! {decoder} ! {QUEUE} ! {} ! appsink name=sink sync=false max-buffers=2 drop=true",
        transcode_source("video/x-h264,stream-format=byte-stream,alignment=au"),
        stills()
    )
}

/// Snapshots made from a VP8 presenter's video.
pub fn vp8_to_still() -> String {
    format!(
        "{} ! vp8dec ! {QUEUE} ! {} ! appsink name=sink sync=false max-buffers=2 drop=true",
        transcode_source("video/x-vp8"),
        stills()
    )
}

/// A JPEG scaled to `width` (its height keeps the picture's shape), one picture in, one
/// out: appsrc `src` to appsink `sink`.
pub fn rescale_jpeg(width: u32) -> String {
    format!(
        "appsrc name=src caps=image/jpeg ! jpegdec ! videoscale ! videoconvert \
         ! video/x-raw,width={width},pixel-aspect-ratio=1/1 ! jpegenc quality=85 \
         ! appsink name=sink sync=false"
    )
}

/// H.264 decoders, best first: the Raspberry Pi's VideoCore (`v4l2h264dec`), libav,
/// OpenH264 (in plugins-bad, so always there where edgecam is installed).
pub const H264_DECODERS: [&str; 3] = ["v4l2h264dec", "avdec_h264", "openh264dec"];

/// The first installed H.264 decoder.
pub fn h264_decoder(has_element: &dyn Fn(&str) -> bool) -> Option<&'static str> {
    H264_DECODERS.into_iter().find(|d| has_element(d))
}

/// The head of a transcoding pipeline: an appsrc named `src` taking `caps` frames
/// (timestamped by the feeder: the producer's spacing on the pipeline's clock).
fn transcode_source(caps: &str) -> String {
    format!("appsrc name=src is-live=true format=time caps={caps}")
}

/// The transcoder from the H.264 stream (a camera that delivers H.264, a relayed H.264
/// presenter) to VP8 at the fallback size, ending in an appsink named `sink`.
pub fn h264_to_vp8(decoder: &str, v: &Vp8Settings, gop_frames: u32) -> String {
    format!(
        "{} ! h264parse ! {decoder} ! {QUEUE} ! {} ! appsink name=sink sync=false max-buffers=8 drop=true",
        transcode_source("video/x-h264,stream-format=byte-stream,alignment=au"),
        vp8_encode(v, gop_frames)
    )
}

/// The transcoder from a VP8 presenter's video to the H.264 stream, at the camera's size
/// (letterboxed: a presenter's picture keeps its shape), ending in an appsink named `sink`.
pub fn vp8_to_h264(encoder: Encoder, s: &EncodeSettings) -> String {
    format!(
        "{} ! vp8dec ! videoscale add-borders=true ! videoconvert \
         ! video/x-raw,width={},height={},pixel-aspect-ratio=1/1 ! {} \
         ! appsink name=sink sync=false max-buffers=8 drop=true",
        transcode_source("video/x-vp8"),
        s.width,
        s.height,
        h264_encode(encoder, s)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: EncodeSettings = EncodeSettings {
        width: 1280,
        height: 720,
        fps: 30,
        bitrate_kbps: 2000,
        keyframe_interval_s: 2,
    };

    #[test]
    fn auto_prefers_hardware_then_x264_then_openh264() {
        let all = |_: &str| true;
        assert_eq!(
            choose(EncoderKind::Auto, false, &all),
            Ok(Encoder::Hardware)
        );
        let no_hw = |e: &str| e != "v4l2h264enc";
        assert_eq!(choose(EncoderKind::Auto, false, &no_hw), Ok(Encoder::X264));
        let only_open = |e: &str| e == "openh264enc";
        assert_eq!(
            choose(EncoderKind::Auto, false, &only_open),
            Ok(Encoder::OpenH264)
        );
        assert!(choose(EncoderKind::Auto, false, &|_| false).is_err());
    }

    #[test]
    fn explicit_kind_is_not_substituted() {
        let no_hw = |e: &str| e != "v4l2h264enc";
        let err = choose(EncoderKind::Hardware, false, &no_hw).unwrap_err();
        assert_eq!(err.missing, "v4l2h264enc");
        assert_eq!(choose(EncoderKind::X264, false, &no_hw), Ok(Encoder::X264));
    }

    #[test]
    fn h264_camera_is_passed_through() {
        assert_eq!(
            choose(EncoderKind::X264, true, &|_| false),
            Ok(Encoder::Passthrough)
        );
        let d = describe(
            "v4l2src ! video/x-h264 ! h264parse",
            Encoder::Passthrough,
            &S,
            true,
        );
        assert!(!d.contains("enc"), "no encoder and no VP8 branch: {d}");
        assert!(d.contains("h264parse config-interval=-1"));
    }

    #[test]
    fn x264_is_zero_latency_constrained_baseline() {
        let d = describe("videotestsrc", Encoder::X264, &S, false);
        assert!(d.starts_with("videotestsrc ! queue leaky=downstream"));
        assert!(d.contains("tune=zerolatency"));
        assert!(d.contains("bframes=0"));
        assert!(d.contains("bitrate=2000"));
        assert!(d.contains("key-int-max=60"));
        assert!(d.contains("profile=constrained-baseline"));
        assert!(d.contains("config-interval=-1"), "SPS/PPS before every IDR");
        assert!(d.contains("alignment=au"));
        assert!(d.ends_with("appsink name=sink sync=false max-buffers=8 drop=true"));
    }

    #[test]
    fn hardware_states_level_and_repeats_headers() {
        let d = describe("libcamerasrc", Encoder::Hardware, &S, false);
        assert!(d.contains("repeat_sequence_header=1"));
        assert!(d.contains("video_bitrate=2000000"));
        assert!(d.contains("level=(string)3.1"));
    }

    #[test]
    fn openh264_uses_bits_per_second() {
        let d = describe("videotestsrc", Encoder::OpenH264, &S, false);
        assert!(d.contains("openh264enc name=enc bitrate=2000000 gop-size=60"));
    }

    const V: Vp8Settings = Vp8Settings {
        width: 640,
        height: 360,
        bitrate_kbps: 800,
    };

    #[test]
    fn the_vp8_branch_is_linked_to_the_raw_frames_tee_apart() {
        let d = describe("videotestsrc", Encoder::X264, &S, true);
        assert!(
            d.starts_with("videotestsrc ! tee name=raw allow-not-linked=true ! queue"),
            "{d}"
        );
        assert!(
            d.contains("x264enc")
                && d.ends_with("appsink name=sink sync=false max-buffers=8 drop=true"),
            "{d}"
        );
        assert!(!d.contains("vp8"), "nothing of VP8 until watched: {d}");
        assert!(!describe("v4l2src", Encoder::Passthrough, &S, true).contains("tee"));
        let b = vp8_branch(&V, &S);
        assert!(
            b.starts_with("queue leaky=downstream max-size-buffers=1"),
            "{b}"
        );
        assert!(b.contains("width=640,height=360"));
        assert!(b.contains("vp8enc name=vp8enc deadline=1"), "realtime: {b}");
        assert!(b.contains("target-bitrate=800000") && b.contains("keyframe-max-dist=60"));
        // It joins a playing pipeline: its sink must not wait to preroll.
        assert!(b.ends_with("appsink name=vp8sink sync=false async=false max-buffers=8 drop=true"));
    }

    #[test]
    fn transcoders_read_an_appsrc_and_end_in_the_sink() {
        let d = h264_to_vp8("avdec_h264", &V, 60);
        assert!(d.starts_with("appsrc name=src is-live=true format=time caps=video/x-h264,stream-format=byte-stream"), "{d}");
        assert!(
            d.contains("! h264parse ! avdec_h264 ! queue leaky=downstream"),
            "{d}"
        );
        assert!(
            d.contains("width=640,height=360") && d.contains("keyframe-max-dist=60"),
            "{d}"
        );
        assert!(
            d.ends_with("appsink name=sink sync=false max-buffers=8 drop=true"),
            "{d}"
        );
        let d = vp8_to_h264(Encoder::X264, &S);
        assert!(
            d.starts_with("appsrc name=src") && d.contains("caps=video/x-vp8 ! vp8dec"),
            "{d}"
        );
        assert!(
            d.contains("add-borders=true") && d.contains("width=1280,height=720"),
            "{d}"
        );
        assert!(
            d.contains("x264enc name=enc") && d.contains("h264parse config-interval=-1"),
            "{d}"
        );
        assert!(
            d.ends_with("appsink name=sink sync=false max-buffers=8 drop=true"),
            "{d}"
        );
    }

    #[test]
    fn the_sub_stream_is_a_small_h264_encode_at_its_own_rate() {
        let sub = EncodeSettings {
            width: 640,
            height: 360,
            fps: 10,
            bitrate_kbps: 500,
            keyframe_interval_s: 2,
        };
        let b = sub_branch(Encoder::X264, &sub);
        assert!(b.contains("videorate drop-only=true"), "{b}");
        assert!(b.contains("width=640,height=360,framerate=10/1"), "{b}");
        assert!(
            b.contains("bitrate=500 key-int-max=20"),
            "GOP in its own frames: {b}"
        );
        assert!(b.ends_with("appsink name=subsink sync=false async=false max-buffers=8 drop=true"));
        for d in [
            h264_to_sub("avdec_h264", Encoder::X264, &sub),
            vp8_to_sub(Encoder::X264, &sub),
        ] {
            assert!(
                d.starts_with("appsrc name=src") && d.contains("framerate=10/1"),
                "{d}"
            );
            assert!(
                d.contains("h264parse config-interval=-1"),
                "SPS/PPS before IDRs: {d}"
            );
            assert!(
                d.ends_with("appsink name=sink sync=false max-buffers=8 drop=true"),
                "{d}"
            );
        }
    }

    #[test]
    fn the_best_installed_decoder_is_used() {
        assert_eq!(h264_decoder(&|_| true), Some("v4l2h264dec"));
        assert_eq!(h264_decoder(&|e| e == "openh264dec"), Some("openh264dec"));
        assert_eq!(h264_decoder(&|_| false), None);
    }

    #[test]
    fn levels_follow_table_a1() {
        assert_eq!(h264_level(640, 480, 30), "3");
        assert_eq!(h264_level(1280, 720, 30), "3.1");
        assert_eq!(h264_level(1280, 720, 60), "3.2");
        assert_eq!(h264_level(1920, 1080, 30), "4");
        assert_eq!(h264_level(1920, 1080, 60), "4.2");
        assert_eq!(h264_level(3840, 2160, 30), "5.1");
        assert_eq!(h264_level(7680, 4320, 60), "5.2");
    }
}
