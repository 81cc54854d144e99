//! V4L2 probing with the `v4l` crate: list capture devices with their formats, sizes and
//! frame rates, and choose the mode closest to what was asked for.

use super::Want;
use std::fmt;
use std::path::{Path, PathBuf};
use v4l::video::Capture;

/// How a camera delivers frames.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CaptureFormat {
    /// Already encoded: passed through without re-encoding.
    H264,
    /// Motion JPEG: decoded, then encoded.
    Mjpeg,
    /// Uncompressed; holds the GStreamer format name (YUY2, NV12, ...).
    Raw(String),
}

impl fmt::Display for CaptureFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::H264 => f.write_str("H264"),
            Self::Mjpeg => f.write_str("MJPEG"),
            Self::Raw(s) => f.write_str(s),
        }
    }
}

impl CaptureFormat {
    /// Maps a V4L2 fourcc to a format edgecam can use.
    pub fn from_fourcc(fourcc: &str) -> Option<Self> {
        Some(match fourcc {
            "H264" => Self::H264,
            "MJPG" | "JPEG" => Self::Mjpeg,
            "YUYV" => Self::Raw("YUY2".into()),
            "UYVY" => Self::Raw("UYVY".into()),
            "NV12" => Self::Raw("NV12".into()),
            "YU12" => Self::Raw("I420".into()),
            "YV12" => Self::Raw("YV12".into()),
            "RGB3" => Self::Raw("RGB".into()),
            "BGR3" => Self::Raw("BGR".into()),
            _ => return None,
        })
    }

    /// Lower is better when sizes and rates tie: no encode beats cheap convert beats decode.
    fn rank(&self) -> u32 {
        match self {
            Self::H264 => 0,
            Self::Raw(_) => 1,
            Self::Mjpeg => 2,
        }
    }
}

/// One concrete way to open a camera.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mode {
    pub format: CaptureFormat,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

/// A frame size and the whole frame rates offered at it.
#[derive(Debug, Clone, PartialEq)]
pub struct SizeInfo {
    pub width: u32,
    pub height: u32,
    pub fps: Vec<f64>,
}

/// A pixel format and its sizes.
#[derive(Debug, Clone, PartialEq)]
pub struct FormatInfo {
    pub fourcc: String,
    pub description: String,
    pub sizes: Vec<SizeInfo>,
}

/// A V4L2 capture device.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceInfo {
    pub path: PathBuf,
    pub name: String,
    pub driver: String,
    pub bus: String,
    pub formats: Vec<FormatInfo>,
}

/// udev's stable names for a camera: `/dev/v4l/by-id/…` (USB cameras, by vendor, model
/// and serial) and `/dev/v4l/by-path/…` (by the port it is plugged into), in that order.
/// A node number changes when a camera is plugged back in; these do not.
pub fn stable_names(node: &Path) -> Vec<PathBuf> {
    let Ok(node) = node.canonicalize() else {
        return vec![];
    };
    let mut names = vec![];
    for dir in ["/dev/v4l/by-id", "/dev/v4l/by-path"] {
        let Ok(entries) = std::fs::read_dir(dir) else {
            continue;
        };
        let mut here: Vec<PathBuf> = entries
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|link| link.canonicalize().is_ok_and(|t| t == node))
            .collect();
        here.sort();
        names.extend(here);
    }
    names
}

/// Drivers of a Raspberry Pi CSI camera receiver (Pi 1-4: unicam; Pi 5: rp1-cfe). Their
/// nodes carry raw sensor data that only libcamera (with the ISP) turns into pictures.
pub fn is_csi_receiver(driver: &str) -> bool {
    matches!(driver, "unicam" | "rp1-cfe")
}

/// The Raspberry Pi's camera and codec plumbing: CSI receivers, the ISPs (bcm2835-isp,
/// the Pi 5's pispbe) and the VideoCore codec. Capture nodes, but not cameras.
pub fn is_pi_camera_plumbing(driver: &str) -> bool {
    is_csi_receiver(driver)
        || matches!(
            driver,
            "bcm2835-isp" | "pispbe" | "bcm2835-codec" | "rpivid"
        )
}

/// A V4L2 memory-to-memory H.264 encoder (the hardware encoder `v4l2h264enc` drives).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HardwareEncoder {
    pub path: PathBuf,
    pub card: String,
}

/// Whether a device is an H.264 encoder: the Raspberry Pi's VideoCore encoder by its card
/// name (as rpicam-apps finds it), or any memory-to-memory device producing H.264.
pub fn is_h264_encoder(card: &str, m2m: bool, produces: &[String]) -> bool {
    card == "bcm2835-codec-encode" || (m2m && produces.iter().any(|f| f == "H264"))
}

/// The V4L2 device nodes, in /dev/videoN order.
fn nodes() -> Vec<v4l::context::Node> {
    let mut nodes = v4l::context::enum_devices();
    nodes.sort_by_key(|n| n.index());
    nodes
}

/// The hardware H.264 encoders present, in /dev/videoN order (Pi 2-4: bcm2835-codec's
/// /dev/video11; none on the Pi 5 or on Debian's kernel).
pub fn hardware_encoders() -> Vec<HardwareEncoder> {
    nodes()
        .iter()
        .filter_map(|n| {
            let dev = v4l::Device::with_path(n.path()).ok()?;
            let caps = dev.query_caps().ok()?;
            let m2m = caps
                .capabilities
                .contains(v4l::capability::Flags::VIDEO_M2M)
                || caps
                    .capabilities
                    .contains(v4l::capability::Flags::VIDEO_M2M_MPLANE);
            // An M2M device's capture queue is what it produces.
            let produces: Vec<String> = if m2m {
                dev.enum_formats()
                    .unwrap_or_default()
                    .iter()
                    .filter_map(|f| f.fourcc.str().ok().map(str::to_string))
                    .collect()
            } else {
                vec![]
            };
            is_h264_encoder(&caps.card, m2m, &produces).then(|| HardwareEncoder {
                path: n.path().to_path_buf(),
                card: caps.card,
            })
        })
        .collect()
}

/// The nodes that open as video-capture devices (capabilities only, no format probing:
/// cheap enough to run on every hotplug event), in /dev/videoN order.
pub fn capture_nodes() -> Vec<PathBuf> {
    nodes()
        .iter()
        .filter(|n| usable(n.path()))
        .map(|n| n.path().to_path_buf())
        .collect()
}

/// Whether `path` opens as a video-capture device: one open and one `VIDIOC_QUERYCAP`.
/// What a hotplug wait checks on every event; [`probe`]'s enumeration of every format,
/// size and rate costs hundreds of milliseconds on a slow board and runs once, at start.
pub fn usable(path: &Path) -> bool {
    v4l::Device::with_path(path)
        .and_then(|d| d.query_caps())
        .is_ok_and(|c| is_capture(c.capabilities))
}

fn is_capture(flags: v4l::capability::Flags) -> bool {
    flags.contains(v4l::capability::Flags::VIDEO_CAPTURE)
        && !flags.contains(v4l::capability::Flags::VIDEO_M2M)
}

/// Every V4L2 video-capture device, in /dev/videoN order. Devices that cannot be opened,
/// or that are not capture devices (encoders, metadata nodes), are left out.
pub fn list_devices() -> Vec<DeviceInfo> {
    devices_by(probe)
}

/// The same with only the formats a pipeline can take sized ([`probe_usable`]): what
/// `auto` chooses from at each camera start.
pub fn usable_devices() -> Vec<DeviceInfo> {
    devices_by(probe_usable)
}

fn devices_by(probe: fn(&Path) -> Result<DeviceInfo, ProbeError>) -> Vec<DeviceInfo> {
    nodes()
        .iter()
        .filter_map(|n| probe(n.path()).ok())
        .collect()
}

/// Why a device could not be probed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("not a video capture device")]
    NotCapture,
}

/// Opens one device and reads its capabilities, formats, sizes and rates.
pub fn probe(path: &Path) -> Result<DeviceInfo, ProbeError> {
    probe_sizes_of(path, |_| true)
}

/// Like [`probe`], but sizes and rates only of the formats a pipeline can take: what a
/// camera start needs, at a fraction of the ioctls (a camera may list dozens of formats,
/// and on a slow board each size and rate query costs).
pub fn probe_usable(path: &Path) -> Result<DeviceInfo, ProbeError> {
    probe_sizes_of(path, |fourcc| CaptureFormat::from_fourcc(fourcc).is_some())
}

fn probe_sizes_of(path: &Path, sizes_of: impl Fn(&str) -> bool) -> Result<DeviceInfo, ProbeError> {
    let dev = v4l::Device::with_path(path)?;
    let caps = dev.query_caps()?;
    if !is_capture(caps.capabilities) {
        return Err(ProbeError::NotCapture);
    }
    let mut formats = Vec::new();
    for desc in dev.enum_formats()? {
        let fourcc = desc.fourcc.str().unwrap_or("????").to_string();
        let mut sizes = Vec::new();
        let framesizes = if sizes_of(&fourcc) {
            dev.enum_framesizes(desc.fourcc).unwrap_or_default()
        } else {
            Vec::new()
        };
        for fs in framesizes {
            for (width, height) in frame_sizes(&fs.size) {
                let fps = dev
                    .enum_frameintervals(desc.fourcc, width, height)
                    .unwrap_or_default()
                    .iter()
                    .flat_map(|fi| frame_rates(&fi.interval))
                    .collect();
                sizes.push(SizeInfo { width, height, fps });
            }
        }
        formats.push(FormatInfo {
            fourcc,
            description: desc.description,
            sizes,
        });
    }
    Ok(DeviceInfo {
        path: path.into(),
        name: caps.card,
        driver: caps.driver,
        bus: caps.bus,
        formats,
    })
}

/// Discrete sizes, or for a stepwise range a few common sizes inside it plus its maximum.
fn frame_sizes(size: &v4l::framesize::FrameSizeEnum) -> Vec<(u32, u32)> {
    use v4l::framesize::FrameSizeEnum;
    match size {
        FrameSizeEnum::Discrete(d) => vec![(d.width, d.height)],
        FrameSizeEnum::Stepwise(s) => {
            let common = [(640, 480), (1280, 720), (1920, 1080)];
            let mut out: Vec<(u32, u32)> = common
                .into_iter()
                .filter(|&(w, h)| {
                    (s.min_width..=s.max_width).contains(&w)
                        && (s.min_height..=s.max_height).contains(&h)
                })
                .collect();
            out.push((s.max_width, s.max_height));
            out.dedup();
            out
        }
    }
}

/// Frames per second from a V4L2 interval (seconds per frame).
fn frame_rates(interval: &v4l::frameinterval::FrameIntervalEnum) -> Vec<f64> {
    use v4l::frameinterval::FrameIntervalEnum;
    let rate = |f: &v4l::fraction::Fraction| {
        if f.numerator == 0 {
            None
        } else {
            Some(f64::from(f.denominator) / f64::from(f.numerator))
        }
    };
    match interval {
        FrameIntervalEnum::Discrete(f) => rate(f).into_iter().collect(),
        // Fastest and slowest ends of the range.
        FrameIntervalEnum::Stepwise(s) => {
            [rate(&s.min), rate(&s.max)].into_iter().flatten().collect()
        }
    }
}

/// Picks the usable mode closest to `want`: first the size nearest in pixel count (at or
/// below the request preferred), then a rate that reaches `want.fps`, then the cheapest format.
pub fn choose_mode(formats: &[FormatInfo], want: Want) -> Option<Mode> {
    let want_px = i64::from(want.width) * i64::from(want.height);
    let mut best: Option<((i64, u32, u32), Mode)> = None;
    for f in formats {
        let Some(format) = CaptureFormat::from_fourcc(&f.fourcc) else {
            continue;
        };
        for s in &f.sizes {
            let px = i64::from(s.width) * i64::from(s.height);
            // Larger than asked costs bandwidth and CPU: weigh it double.
            let size_cost = if px > want_px {
                2 * (px - want_px)
            } else {
                want_px - px
            };
            let max_fps = s.fps.iter().cloned().fold(0.0_f64, f64::max);
            // Unknown rates (empty list) are taken at face value.
            let fps = if s.fps.is_empty() || max_fps >= f64::from(want.fps) {
                want.fps
            } else {
                max_fps.floor().max(1.0) as u32
            };
            let key = (size_cost, want.fps - fps.min(want.fps), format.rank());
            if best.as_ref().is_none_or(|(k, _)| key < *k) {
                let mode = Mode {
                    format: format.clone(),
                    width: s.width,
                    height: s.height,
                    fps,
                };
                best = Some((key, mode));
            }
        }
    }
    best.map(|(_, m)| m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pis_encoder_is_found_by_card_and_others_by_what_they_produce() {
        let h264 = vec!["H264".to_string()];
        assert!(is_h264_encoder("bcm2835-codec-encode", true, &[]));
        assert!(is_h264_encoder("hantro-vpu", true, &h264));
        // The Pi's decoder and ISP nodes, and a camera that delivers H.264 itself.
        assert!(!is_h264_encoder(
            "bcm2835-codec-decode",
            true,
            &["YU12".into()]
        ));
        assert!(!is_h264_encoder(
            "bcm2835-codec-isp",
            true,
            &["YUYV".into()]
        ));
        assert!(!is_h264_encoder("HD Pro Webcam C920", false, &h264));
        assert!(is_pi_camera_plumbing("bcm2835-isp") && is_pi_camera_plumbing("unicam"));
        assert!(!is_pi_camera_plumbing("uvcvideo") && !is_pi_camera_plumbing("vivid"));
    }

    fn fmt(fourcc: &str, sizes: &[(u32, u32, &[f64])]) -> FormatInfo {
        FormatInfo {
            fourcc: fourcc.into(),
            description: fourcc.into(),
            sizes: sizes
                .iter()
                .map(|&(width, height, fps)| SizeInfo {
                    width,
                    height,
                    fps: fps.to_vec(),
                })
                .collect(),
        }
    }

    const HD: Want = Want {
        width: 1280,
        height: 720,
        fps: 30,
    };

    #[test]
    fn prefers_h264_passthrough_at_equal_size() {
        let formats = [
            fmt("YUYV", &[(1280, 720, &[10.0]), (640, 480, &[30.0])]),
            fmt("MJPG", &[(1280, 720, &[30.0])]),
            fmt("H264", &[(1280, 720, &[30.0])]),
        ];
        let m = choose_mode(&formats, HD).unwrap();
        assert_eq!(
            m,
            Mode {
                format: CaptureFormat::H264,
                width: 1280,
                height: 720,
                fps: 30
            }
        );
    }

    #[test]
    fn mjpeg_beats_slow_raw_at_the_wanted_size() {
        let formats = [
            fmt("YUYV", &[(1280, 720, &[10.0])]),
            fmt("MJPG", &[(1280, 720, &[30.0, 15.0])]),
        ];
        assert_eq!(
            choose_mode(&formats, HD).unwrap().format,
            CaptureFormat::Mjpeg
        );
    }

    #[test]
    fn nearest_size_and_reachable_rate() {
        let formats = [fmt("YUYV", &[(640, 480, &[30.0]), (1920, 1080, &[5.0])])];
        let m = choose_mode(&formats, HD).unwrap();
        assert_eq!((m.width, m.height, m.fps), (640, 480, 30));
        let slow = [fmt("YUYV", &[(1280, 720, &[7.5])])];
        assert_eq!(choose_mode(&slow, HD).unwrap().fps, 7);
    }

    #[test]
    fn unusable_formats_give_none() {
        assert_eq!(
            choose_mode(&[fmt("BA81", &[(1280, 720, &[30.0])])], HD),
            None
        );
        assert_eq!(choose_mode(&[], HD), None);
    }

    #[test]
    fn maps_fourccs() {
        assert_eq!(
            CaptureFormat::from_fourcc("YUYV"),
            Some(CaptureFormat::Raw("YUY2".into()))
        );
        assert_eq!(
            CaptureFormat::from_fourcc("H264"),
            Some(CaptureFormat::H264)
        );
        assert_eq!(CaptureFormat::from_fourcc("pRAA"), None);
    }

    #[test]
    fn listing_without_cameras_does_not_fail() {
        // On CI there are no cameras; on a dev box there may be. Either way it must not panic,
        // and every listed device must be a capture device with a path under /dev.
        for d in list_devices() {
            assert!(d.path.starts_with("/dev"));
        }
    }
}
