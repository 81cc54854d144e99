//! edgecam: firmware for a plug-in IP streaming camera.
//!
//! Bird's-eye view: one daemon captures a camera, encodes H.264 once, and fans it out over
//! WebRTC to every browser that opens its page. Signaling is the Kurento one2many protocol
//! over a WebSocket.
//!
//! ```text
//! capture ──► encode ──► fanout ──► peer (one per viewer) ──► browser
//!                ▲                     │ PLI/FIR, join
//!                └── keyframe request ◄┘  (coalesced: ≤ 1 forced IDR per 0.5 s)
//! signaling (WebSocket) creates and ends peers; it never touches media.
//! ```
//!
//! Code map:
//! - [`config`]: typed settings (defaults → file → env → CLI), validated once.
//! - [`capture`]: source selection, V4L2 probing, the test pattern; renders a pipeline head.
//! - [`encode`]: pure pipeline builder, the GStreamer runner, the keyframe pacer.
//! - [`fanout`]: the hub; per-viewer bounded queues and keyframe gates.
//! - [`peer`]: one WebRTC session per viewer (webrtc crate).
//! - [`signaling`]: Kurento one2many protocol types and the WebSocket session.
//! - [`web`]: HTTP routes and the embedded pages.
//! - [`auth`]: optional viewer/admin passwords, session cookies, login rate limits.
//! - [`control`]: start/stop commands shared by the button and the API; remembered.
//! - [`gpio`]: button and LEDs (GPIO character device, rppal, or a simulator).
//! - [`provision`]: applies the boot partition's settings file at boot.
//! - [`status`]: live state behind `/api/status` and the data channels.
//! - [`upstream`]: pushes the stream to a bigger server over WHIP.
//! - [`supervisor`]: the camera supervisor's rules (pure; driven by `app`).
//! - [`app`]: wiring and supervision (systemd readiness and watchdog via [`notify`]).
//!
//! Architecture invariants:
//! - Data flows one way; the only upstream signal is a keyframe request over a channel.
//! - Publishing never blocks: a slow viewer loses frames up to its next keyframe.
//! - Nothing from the network, a file or a device may panic the daemon.

pub mod admission;
pub mod app;
pub mod atomic_file;
pub mod auth;
pub mod backoff;
pub mod capture;
pub mod config;
pub mod control;
pub mod encode;
pub mod fanout;
pub mod gpio;
pub mod media;
pub mod notify;
pub mod peer;
pub mod provision;
pub mod signaling;
pub mod status;
pub mod supervisor;
pub mod task;
pub mod upstream;
pub mod web;
