//! Typed settings: built-in defaults, then the TOML file, then `EDGECAM_<SECTION>__<KEY>`
//! environment overrides, then command-line overrides. Everything is validated once, here,
//! into typed values; every bad key is reported, not just the first.

mod load;
pub mod provisioning;
mod source;

pub use load::{
    CONFIG_PATH, EXAMPLE, Overrides, SETTINGS_FILE, layer, load, load_file_only, load_layers,
    load_str,
};
pub use source::{AudioSource, EncoderKind, PortRange, SourceSpec};

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

/// Where a configuration came from, so the settings page can check a change against the
/// same layers. Not part of what a configuration is: any two compare equal.
#[derive(Debug, Clone, Default)]
pub struct Layers {
    pub file: Option<std::path::PathBuf>,
    /// The environment it was read with (`None`: the process's own).
    pub env: Option<std::collections::HashMap<String, String>>,
    pub overrides: Overrides,
}

impl PartialEq for Layers {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

/// The whole validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Where it came from.
    pub layers: Layers,
    pub http: HttpConfig,
    pub camera: CameraConfig,
    pub encoder: EncoderConfig,
    pub fallback: FallbackConfig,
    /// `rtsp.listen`: where the RTSP server listens; `None`: it is off.
    pub rtsp_listen: Option<SocketAddr>,
    pub substream: SubstreamConfig,
    /// `onvif.discovery`: answer WS-Discovery probes (and say Hello and Bye).
    pub onvif_discovery: bool,
    /// `[audio]`: the microphone.
    pub audio: AudioConfig,
    /// `camera.name`: what NVRs and the page call the camera; `None`: the hostname.
    pub camera_name: Option<String>,
    pub webrtc: WebRtcConfig,
    pub viewers: ViewersConfig,
    pub gpio: GpioConfig,
    pub state: StateConfig,
    /// Viewer and admin password hashes; none means open on the LAN.
    pub auth: crate::auth::AuthConfig,
    /// The bearer token WHIP publishers must send; `None`: WHIP is off.
    pub whip_token: Option<String>,
    /// `upstream.whip_url` and `upstream.token`: where to push the stream, if anywhere.
    pub upstream: Option<(url::Url, Option<String>)>,
    /// The boot partition file's `[provisioning]` section, when present.
    pub provisioning: Option<provisioning::Provisioning>,
}

/// Which GPIO implementation drives the button and LEDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GpioBackend {
    /// rppal where /dev/gpiomem is, else the GPIO character device, else the simulator.
    Auto,
    /// The kernel's GPIO character device (/dev/gpiochip*).
    Gpiochip,
    Rppal,
    Simulator,
}

/// What a long press of the button does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LongPressAction {
    None,
    /// Restart the camera pipeline (closes and reopens the camera).
    Restart,
    /// Reboot the board (`systemctl reboot`).
    Reboot,
    /// Power the board off (`systemctl poweroff`).
    Poweroff,
}

/// An input pin by BCM number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ButtonPin {
    pub pin: u8,
    /// Pressed reads low (button to ground), the usual wiring with a pull-up.
    pub active_low: bool,
    pub pull_up: bool,
}

/// An output pin by BCM number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LedPin {
    pub pin: u8,
    /// Lit when the pin is high (LED to ground); false for an LED wired to 3.3 V.
    pub active_high: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct GpioConfig {
    pub backend: GpioBackend,
    /// The chip to take pin numbers as line offsets of (path, name or label); "" = find
    /// the header by line name or chip label.
    pub chip: String,
    /// `None` when no start/stop button is wired.
    pub button: Option<ButtonPin>,
    pub debounce: Duration,
    pub long_press: Duration,
    pub long_press_action: LongPressAction,
    pub status_led: Option<LedPin>,
    pub viewers_led: Option<LedPin>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct StateConfig {
    /// Where state that must survive a restart is kept (whether streaming is on).
    pub dir: std::path::PathBuf,
}

#[derive(Debug, Clone, PartialEq)]
pub struct HttpConfig {
    /// Where the page, the API and the signaling WebSocket listen.
    pub listen: SocketAddr,
    /// Web origins besides the camera's own whose pages may open the signaling WebSocket
    /// (e.g. a Kurento tutorial page hosted elsewhere), as `scheme://host[:port]`.
    pub allowed_origins: Vec<String>,
    /// Signaling WebSockets one client address may hold open at once.
    pub max_connections_per_address: usize,
    /// How often a signaling WebSocket is pinged.
    pub ping_every: std::time::Duration,
    /// How long a signaling WebSocket may stay silent (no message, no pong) before it is
    /// closed and its peer freed.
    pub silent_limit: std::time::Duration,
    /// HTTPS: off, or with which certificate.
    pub tls: TlsMode,
}

/// Where the HTTPS certificate comes from (`[tls]`).
#[derive(Debug, Clone, PartialEq)]
pub enum TlsMode {
    /// Plain HTTP.
    Off,
    /// Generated on first start and kept in `state.dir/tls/` (browsers warn once; a
    /// presenter's camera then works from other machines, which needs a secure context).
    SelfSigned,
    /// PEM certificate chain and private key, e.g. from the fleet's own CA.
    Files {
        cert: std::path::PathBuf,
        key: std::path::PathBuf,
    },
}

/// `[fallback]`: the VP8 stream for browsers without H.264.
#[derive(Debug, Clone, PartialEq)]
pub struct FallbackConfig {
    pub enabled: bool,
    pub width: u32,
    pub height: u32,
    pub bitrate_kbps: u32,
}

/// `[audio]`: the microphone, encoded once to Opus for every viewer and RTSP client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AudioConfig {
    pub source: AudioSource,
    pub bitrate_kbps: u32,
}

/// `[substream]`: the small H.264 stream at RTSP `/sub` (for an NVR's motion detection).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SubstreamConfig {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_kbps: u32,
}

#[derive(Debug, Clone, PartialEq)]
pub struct CameraConfig {
    /// Which camera to open (or the test pattern).
    pub source: SourceSpec,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    /// Start the camera at boot. When false a browser may present until it is started.
    pub autostart: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct EncoderConfig {
    pub kind: EncoderKind,
    pub bitrate_kbps: u32,
    /// Natural GOP length; joins force an IDR anyway, so this only bounds recovery time.
    pub keyframe_interval: Duration,
}

#[derive(Debug, Clone, PartialEq)]
pub struct WebRtcConfig {
    /// STUN/TURN URLs handed to peers; empty on a plain LAN.
    pub ice_servers: Vec<String>,
    /// UDP ports for media, one per viewer; `None` lets the OS pick.
    pub udp_ports: Option<PortRange>,
    /// Addresses advertised instead of the local ones (behind a port forward or NAT).
    pub nat_ips: Vec<IpAddr>,
    /// Local addresses to bind media sockets to; empty means every non-loopback interface.
    pub bind_ips: Vec<IpAddr>,
    /// `webrtc.connect_timeout_s`: a peer that has not connected by then is ended (its
    /// viewer place or the presenter slot freed).
    pub connect_timeout: std::time::Duration,
    /// `webrtc.substream_for_weak_links`: an H.264 viewer whose reports show loss is moved
    /// to the sub-stream, and back once its link is clean.
    pub substream_for_weak_links: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ViewersConfig {
    /// Upper bound on concurrent viewers; the next one is rejected with a message.
    pub max: usize,
}

/// One problem with one key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyError {
    /// Dotted key, e.g. `camera.fps`.
    pub key: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl std::fmt::Display for KeyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {reason}")]
    Read { path: String, reason: String },
    #[error("config file {path} is not valid TOML: {reason}")]
    Syntax { path: String, reason: String },
    #[error("invalid configuration:\n{}", .0.iter().map(|e| format!("  - {e}")).collect::<Vec<_>>().join("\n"))]
    Invalid(Vec<KeyError>),
}
