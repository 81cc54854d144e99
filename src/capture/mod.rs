//! Capture: turn a `SourceSpec` into a concrete source and render it as the head of a
//! GStreamer pipeline. Sources are one enum; the only probing is V4L2 (see `v4l2`).

pub mod hotplug;
pub mod stamp;
pub mod v4l2;

use crate::config::SourceSpec;
use std::path::{Path, PathBuf};
pub use v4l2::{CaptureFormat, DeviceInfo, Mode};

/// A source resolved against the hardware that is actually present.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// Moving test pattern with a running clock.
    Test,
    /// The test pattern ending (EOS) after this many frames: a camera that fails.
    TestEnding(u32),
    /// The test pattern with its capture time stamped in (see [`stamp`]).
    TestStamp,
    /// H.264 RTP received on a UDP port.
    Rtp(u16),
    /// A V4L2 capture device opened in a specific mode.
    V4l2 {
        device: PathBuf,
        name: String,
        mode: Mode,
    },
    /// A CSI camera through libcamera.
    Libcamera,
}

/// What the caller asks of a source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Want {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

/// Why a source could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum CaptureError {
    #[error("waiting for {0} (not present)")]
    Missing(PathBuf),
    #[error("cannot open camera {device}: {reason}")]
    Open {
        device: PathBuf,
        reason: v4l2::ProbeError,
    },
    #[error("camera {0} offers no format edgecam can use (H.264, MJPEG or raw YUV)")]
    NoUsableFormat(PathBuf),
    #[error("libcamera is not installed (GStreamer element libcamerasrc is missing)")]
    NoLibcamera,
}

impl Source {
    /// Resolves a spec. `auto` takes the first usable V4L2 camera, else the test pattern.
    /// `has_element` says whether a GStreamer element is installed.
    pub fn resolve(
        spec: &SourceSpec,
        want: Want,
        has_element: &dyn Fn(&str) -> bool,
    ) -> Result<Self, CaptureError> {
        match spec {
            SourceSpec::Test => Ok(Self::Test),
            SourceSpec::TestEnding(n) => Ok(Self::TestEnding(*n)),
            SourceSpec::TestStamp => Ok(Self::TestStamp),
            SourceSpec::Rtp(port) => Ok(Self::Rtp(*port)),
            SourceSpec::Libcamera if has_element("libcamerasrc") => Ok(Self::Libcamera),
            SourceSpec::Libcamera => Err(CaptureError::NoLibcamera),
            SourceSpec::V4l2(path) => open_v4l2(path, want),
            SourceSpec::Auto => Ok(Self::pick_auto(
                v4l2::usable_devices(),
                has_element("libcamerasrc"),
                want,
            )),
        }
    }

    /// `auto`'s choice among the devices present: a CSI camera (its receiver's node is
    /// there and libcamera is installed) first, then the first V4L2 camera with a usable
    /// mode, else the test pattern. The Raspberry Pi's camera plumbing (CSI receiver,
    /// ISP, codec nodes) is never opened as a plain V4L2 camera: it only works through
    /// libcamera.
    pub fn pick_auto(devices: Vec<DeviceInfo>, has_libcamera: bool, want: Want) -> Self {
        if has_libcamera && devices.iter().any(|d| v4l2::is_csi_receiver(&d.driver)) {
            return Self::Libcamera;
        }
        devices
            .into_iter()
            .filter(|d| !v4l2::is_pi_camera_plumbing(&d.driver))
            .find_map(|d| {
                v4l2::choose_mode(&d.formats, want).map(|mode| Self::V4l2 {
                    device: d.path,
                    name: d.name,
                    mode,
                })
            })
            .unwrap_or(Self::Test)
    }

    /// True when the source already delivers H.264 (passed through, not re-encoded).
    pub fn delivers_h264(&self) -> bool {
        matches!(self, Self::V4l2 { mode, .. } if mode.format == CaptureFormat::H264)
            || matches!(self, Self::Rtp(_))
    }

    /// Short human description for status and logs.
    pub fn describe(&self) -> String {
        match self {
            Self::Test => "test pattern".into(),
            Self::TestEnding(n) => format!("test pattern ending after {n} frames"),
            Self::TestStamp => "test pattern with capture-time stamp".into(),
            Self::Rtp(port) => format!("H.264 RTP on UDP port {port}"),
            Self::Libcamera => "libcamera".into(),
            Self::V4l2 { device, name, mode } => format!(
                "{} ({}) {} {}x{}@{}",
                device.display(),
                name,
                mode.format,
                mode.width,
                mode.height,
                mode.fps
            ),
        }
    }

    /// The head of the pipeline: ends in raw video (any format; the encoder stage
    /// converts) or, when `delivers_h264`, in parsed H.264.
    pub fn fragment(&self, want: Want) -> String {
        let Want { width, height, fps } = want;
        match self {
            Self::Test | Self::TestEnding(_) => format!(
                "videotestsrc is-live=true {}pattern=smpte horizontal-speed=2 \
                 ! video/x-raw,width={width},height={height},framerate={fps}/1 \
                 ! clockoverlay time-format=\"%H:%M:%S\" halignment=left valignment=top font-desc=\"Sans 20\" \
                 ! timeoverlay halignment=right valignment=top font-desc=\"Sans 20\"",
                match self {
                    Self::TestEnding(n) => format!("num-buffers={n} "),
                    _ => String::new(),
                }
            ),
            // The stamp goes on after the overlays, bottom edge, in I420 (see `stamp`).
            Self::TestStamp => format!(
                "videotestsrc is-live=true pattern=smpte horizontal-speed=2 \
                 ! video/x-raw,format=I420,width={width},height={height},framerate={fps}/1 \
                 ! timeoverlay halignment=right valignment=top font-desc=\"Sans 20\" \
                 ! video/x-raw,format=I420 ! identity name=stamp"
            ),
            // A sender's packets as they come: no jitter buffer (LAN; lowest latency).
            Self::Rtp(port) => format!(
                "udpsrc port={port} caps=\"application/x-rtp,media=video,clock-rate=90000,\
                 encoding-name=H264\" ! rtph264depay ! h264parse"
            ),
            Self::Libcamera => format!(
                "libcamerasrc ! video/x-raw,width={width},height={height},framerate={fps}/1"
            ),
            Self::V4l2 { device, mode, .. } => {
                let dev = gst_quote(device);
                let Mode {
                    width, height, fps, ..
                } = *mode;
                let size = format!("width={width},height={height},framerate={fps}/1");
                match &mode.format {
                    CaptureFormat::H264 => {
                        format!("v4l2src device={dev} ! video/x-h264,{size} ! h264parse")
                    }
                    CaptureFormat::Mjpeg => {
                        format!("v4l2src device={dev} ! image/jpeg,{size} ! jpegdec")
                    }
                    CaptureFormat::Raw(gst_format) => {
                        format!("v4l2src device={dev} ! video/x-raw,format={gst_format},{size}")
                    }
                }
            }
        }
    }
}

fn open_v4l2(path: &Path, want: Want) -> Result<Source, CaptureError> {
    if !path.exists() {
        return Err(CaptureError::Missing(path.into()));
    }
    let dev = v4l2::probe_usable(path).map_err(|reason| CaptureError::Open {
        device: path.into(),
        reason,
    })?;
    let mode = v4l2::choose_mode(&dev.formats, want)
        .ok_or_else(|| CaptureError::NoUsableFormat(path.into()))?;
    Ok(Source::V4l2 {
        device: dev.path,
        name: dev.name,
        mode,
    })
}

/// Quotes a path for a gst-launch description.
fn gst_quote(path: &Path) -> String {
    let s = path.display().to_string();
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

#[cfg(test)]
mod tests {
    use super::*;

    const WANT: Want = Want {
        width: 1280,
        height: 720,
        fps: 30,
    };

    #[test]
    fn test_pattern_is_live_sized_and_clocked() {
        let f = Source::Test.fragment(WANT);
        assert!(f.starts_with("videotestsrc is-live=true"));
        assert!(f.contains("width=1280,height=720,framerate=30/1"));
        assert!(f.contains("clockoverlay"));
        assert!(!Source::Test.delivers_h264());
        let ending = Source::TestEnding(30).fragment(WANT);
        assert!(
            ending.starts_with("videotestsrc is-live=true num-buffers=30 pattern=smpte"),
            "{ending}"
        );
    }

    #[test]
    fn resolves_without_hardware() {
        let none = |_: &str| false;
        assert_eq!(
            Source::resolve(&SourceSpec::Test, WANT, &none).unwrap(),
            Source::Test
        );
        assert!(matches!(
            Source::resolve(&SourceSpec::Libcamera, WANT, &none),
            Err(CaptureError::NoLibcamera)
        ));
        assert_eq!(
            Source::resolve(&SourceSpec::Libcamera, WANT, &|e| e == "libcamerasrc").unwrap(),
            Source::Libcamera
        );
        assert!(matches!(
            Source::resolve(
                &SourceSpec::V4l2("/dev/video-none-here".into()),
                WANT,
                &none
            ),
            Err(CaptureError::Missing(_))
        ));
    }

    #[test]
    fn v4l2_fragments_by_format() {
        let mk = |format| Source::V4l2 {
            device: "/dev/video0".into(),
            name: "cam".into(),
            mode: Mode {
                format,
                width: 640,
                height: 480,
                fps: 30,
            },
        };
        let h264 = mk(CaptureFormat::H264);
        assert!(h264.delivers_h264());
        assert_eq!(
            h264.fragment(WANT),
            "v4l2src device=\"/dev/video0\" ! video/x-h264,width=640,height=480,framerate=30/1 ! h264parse"
        );
        assert!(
            mk(CaptureFormat::Mjpeg)
                .fragment(WANT)
                .ends_with("! jpegdec")
        );
        assert!(
            mk(CaptureFormat::Raw("YUY2".into()))
                .fragment(WANT)
                .contains("format=YUY2")
        );
        assert!(!mk(CaptureFormat::Mjpeg).delivers_h264());
    }

    fn dev(path: &str, driver: &str, fourcc: &str) -> DeviceInfo {
        DeviceInfo {
            path: path.into(),
            name: format!("{driver} card"),
            driver: driver.into(),
            bus: "platform".into(),
            formats: vec![v4l2::FormatInfo {
                fourcc: fourcc.into(),
                description: fourcc.into(),
                sizes: vec![v4l2::SizeInfo {
                    width: 1280,
                    height: 720,
                    fps: vec![30.0],
                }],
            }],
        }
    }

    #[test]
    fn auto_prefers_a_csi_camera_through_libcamera_and_never_opens_the_pis_plumbing() {
        // Raspberry Pi OS on a Pi 4 with a Camera Module and a USB webcam: unicam's node
        // and the ISP's YUV output nodes are there besides the webcam.
        let pi = || {
            vec![
                dev("/dev/video0", "unicam", "pRAA"),
                dev("/dev/video13", "bcm2835-isp", "YUYV"),
                dev("/dev/video20", "uvcvideo", "MJPG"),
            ]
        };
        assert_eq!(Source::pick_auto(pi(), true, WANT), Source::Libcamera);
        // Without libcamera installed the webcam is used, never the ISP node.
        match Source::pick_auto(pi(), false, WANT) {
            Source::V4l2 { device, .. } => assert_eq!(device, PathBuf::from("/dev/video20")),
            other => panic!("{other:?}"),
        }
        // The Pi 5's receiver too.
        let pi5 = vec![dev("/dev/video0", "rp1-cfe", "pRAA")];
        assert_eq!(
            Source::pick_auto(pi5.clone(), true, WANT),
            Source::Libcamera
        );
        assert_eq!(Source::pick_auto(pi5, false, WANT), Source::Test);
        // A plain USB camera board, as before.
        match Source::pick_auto(vec![dev("/dev/video0", "uvcvideo", "YUYV")], true, WANT) {
            Source::V4l2 { device, .. } => assert_eq!(device, PathBuf::from("/dev/video0")),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn quotes_odd_paths() {
        assert_eq!(gst_quote(Path::new("/dev/v\"x")), "\"/dev/v\\\"x\"");
    }
}
