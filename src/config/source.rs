//! Small value types parsed from config strings.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

/// Which camera to capture from (`camera.source`, `--source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SourceSpec {
    /// The first usable camera, else the test pattern.
    Auto,
    /// A moving test pattern with a running clock; needs no hardware.
    Test,
    /// The test pattern ending after N frames, as a camera that fails would
    /// (`test:frames=N`, for exercising recovery).
    TestEnding(u32),
    /// The test pattern with its capture time stamped into the picture (`test:stamp`),
    /// for measuring capture-to-screen latency.
    TestStamp,
    /// H.264 over RTP from another encoder, received on this UDP port (`rtp:PORT`):
    /// passed through without re-encoding.
    Rtp(u16),
    /// A V4L2 capture device such as `/dev/video0`.
    V4l2(PathBuf),
    /// A CSI camera through libcamera (`libcamerasrc`).
    Libcamera,
}

impl FromStr for SourceSpec {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "test" => Ok(Self::Test),
            "test:stamp" => Ok(Self::TestStamp),
            "libcamera" => Ok(Self::Libcamera),
            other if other.starts_with("test:frames=") => other["test:frames=".len()..]
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .map(Self::TestEnding)
                .ok_or_else(|| {
                    format!("{other:?}: test:frames= takes a whole number of frames above 0")
                }),
            other if other.starts_with("rtp:") => other["rtp:".len()..]
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .map(Self::Rtp)
                .ok_or_else(|| format!("{other:?}: rtp: takes a UDP port, e.g. rtp:5004")),
            other => match other.strip_prefix("v4l2:") {
                Some(path) if path.starts_with("/dev/") && path.len() > 5 => {
                    Ok(Self::V4l2(PathBuf::from(path)))
                }
                _ => Err(format!(
                    "{other:?} is not a source; use auto, test, libcamera, v4l2:/dev/videoN or rtp:PORT"
                )),
            },
        }
    }
}

impl fmt::Display for SourceSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Auto => f.write_str("auto"),
            Self::Test => f.write_str("test"),
            Self::TestEnding(n) => write!(f, "test:frames={n}"),
            Self::TestStamp => f.write_str("test:stamp"),
            Self::Rtp(port) => write!(f, "rtp:{port}"),
            Self::Libcamera => f.write_str("libcamera"),
            Self::V4l2(p) => write!(f, "v4l2:{}", p.display()),
        }
    }
}

/// Which H.264 encoder to use (`encoder.kind`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EncoderKind {
    /// Hardware if the board has it, else x264, else openh264.
    Auto,
    /// The V4L2 memory-to-memory encoder (`v4l2h264enc`, Raspberry Pi 2–4).
    Hardware,
    X264,
    OpenH264,
}

impl FromStr for EncoderKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "auto" => Ok(Self::Auto),
            "hardware" => Ok(Self::Hardware),
            "x264" => Ok(Self::X264),
            "openh264" => Ok(Self::OpenH264),
            other => Err(format!(
                "{other:?} is not an encoder; use auto, hardware, x264 or openh264"
            )),
        }
    }
}

impl fmt::Display for EncoderKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auto => "auto",
            Self::Hardware => "hardware",
            Self::X264 => "x264",
            Self::OpenH264 => "openh264",
        })
    }
}

/// An inclusive UDP port range such as `40000-40099`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange {
    pub first: u16,
    pub last: u16,
}

impl PortRange {
    pub fn len(&self) -> usize {
        usize::from(self.last - self.first) + 1
    }
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let bad = || format!("{s:?} is not a port range; use FIRST-LAST, e.g. 40000-40099");
        let (a, b) = s.trim().split_once('-').ok_or_else(bad)?;
        let first: u16 = a.trim().parse().map_err(|_| bad())?;
        let last: u16 = b.trim().parse().map_err(|_| bad())?;
        if first == 0 || first > last {
            return Err(format!(
                "{s:?}: the range must be 1-65535 with FIRST <= LAST"
            ));
        }
        Ok(Self { first, last })
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.first, self.last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_sources() {
        assert_eq!("auto".parse(), Ok(SourceSpec::Auto));
        assert_eq!("test".parse(), Ok(SourceSpec::Test));
        assert_eq!("test:frames=90".parse(), Ok(SourceSpec::TestEnding(90)));
        assert!("test:frames=0".parse::<SourceSpec>().is_err());
        assert!("test:frames=x".parse::<SourceSpec>().is_err());
        assert_eq!("libcamera".parse(), Ok(SourceSpec::Libcamera));
        assert_eq!(
            "v4l2:/dev/video2".parse(),
            Ok(SourceSpec::V4l2("/dev/video2".into()))
        );
        // udev's stable names, which survive re-plugging (the node number does not).
        let by_id = "/dev/v4l/by-id/usb-046d_HD_Pro_Webcam_C920_A1B2C3D4-video-index0";
        assert_eq!(
            format!("v4l2:{by_id}").parse(),
            Ok(SourceSpec::V4l2(by_id.into()))
        );
        assert!(
            "v4l2:/dev/v4l/by-path/platform-vivid.0-video-index0"
                .parse::<SourceSpec>()
                .is_ok()
        );
        assert!("v4l2:".parse::<SourceSpec>().is_err());
        assert!("v4l2:/dev/".parse::<SourceSpec>().is_err());
        assert!("webcam".parse::<SourceSpec>().is_err());
        assert_eq!("test:stamp".parse(), Ok(SourceSpec::TestStamp));
        assert_eq!("rtp:5004".parse(), Ok(SourceSpec::Rtp(5004)));
        for bad in ["rtp:0", "rtp:70000", "rtp:", "rtp:x"] {
            assert!(bad.parse::<SourceSpec>().is_err(), "{bad}");
        }
        for s in ["test:stamp", "rtp:5004", "test:frames=3"] {
            assert_eq!(s.parse::<SourceSpec>().unwrap().to_string(), s);
        }
        assert_eq!(
            SourceSpec::V4l2("/dev/video0".into()).to_string(),
            "v4l2:/dev/video0"
        );
    }

    #[test]
    fn parses_encoders() {
        assert_eq!("x264".parse(), Ok(EncoderKind::X264));
        assert_eq!("hardware".parse(), Ok(EncoderKind::Hardware));
        assert!(
            "h265"
                .parse::<EncoderKind>()
                .unwrap_err()
                .contains("openh264")
        );
    }

    #[test]
    fn parses_port_ranges() {
        assert_eq!(
            "40000-40099".parse(),
            Ok(PortRange {
                first: 40000,
                last: 40099
            })
        );
        assert_eq!("40000-40099".parse::<PortRange>().map(|r| r.len()), Ok(100));
        assert!("5-4".parse::<PortRange>().is_err());
        assert!("0-10".parse::<PortRange>().is_err());
        assert!("1-70000".parse::<PortRange>().is_err());
        assert!("40000".parse::<PortRange>().is_err());
    }
}

/// Where the camera's sound comes from (`audio.source`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AudioSource {
    /// No audio: viewers and RTSP clients get video only.
    None,
    /// The first ALSA capture device the board has (a USB microphone, a HAT).
    Auto,
    /// An ALSA device by name, e.g. `alsa:plughw:1,0` or `alsa:plughw:CARD=Device`.
    Alsa(String),
    /// A tone, for testing without a microphone.
    Test,
    /// The tone ending after N packets of 20 ms, as a microphone that vanishes would
    /// (`test:packets=N`, for exercising recovery).
    TestEnding(u32),
}

impl FromStr for AudioSource {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim() {
            "none" | "" => Ok(Self::None),
            "auto" => Ok(Self::Auto),
            "test" => Ok(Self::Test),
            other if other.starts_with("test:packets=") => other["test:packets=".len()..]
                .parse::<u32>()
                .ok()
                .filter(|n| *n > 0)
                .map(Self::TestEnding)
                .ok_or_else(|| format!("{other:?}: test:packets= takes a whole number above 0")),
            other => match other.strip_prefix("alsa:") {
                // The name goes into a pipeline description: plain characters only.
                Some(dev)
                    if !dev.is_empty()
                        && dev.len() <= 64
                        && dev
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || ":,=_.-".contains(c)) =>
                {
                    Ok(Self::Alsa(dev.to_string()))
                }
                _ => Err(format!(
                    "{other:?} is not an audio source; use none, auto, test or alsa:DEVICE \
                     (e.g. alsa:plughw:1,0; `arecord -L` lists them)"
                )),
            },
        }
    }
}

impl fmt::Display for AudioSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::None => f.write_str("none"),
            Self::Auto => f.write_str("auto"),
            Self::Alsa(d) => write!(f, "alsa:{d}"),
            Self::Test => f.write_str("test"),
            Self::TestEnding(n) => write!(f, "test:packets={n}"),
        }
    }
}
