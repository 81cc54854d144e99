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
//! - [`fanout`]: the hub; per-viewer bounded queues and keyframe gates; the VP8 stream.
//! - [`audio`]: the microphone, encoded once to Opus onto the main hub; healed apart
//!   from the video.
//! - [`transcode`]: the stream the presenter does not produce (VP8 from H.264, H.264
//!   from VP8), made on demand while someone watches it.
//! - [`peer`]: one WebRTC session per viewer (webrtc crate).
//! - [`signaling`]: Kurento one2many protocol types and the WebSocket session.
//! - [`web`]: HTTP routes and the embedded pages (the settings page among them).
//! - [`settings`]: what the settings page may change, how each change applies, and the
//!   file the changes are kept in (pure but for that file).
//! - [`auth`]: optional viewer/admin passwords, session cookies, login rate limits.
//! - [`nvr_credentials`]: the passwords NVR logins need (RTSP and HTTP Digest, ONVIF
//!   UsernameToken), kept bound to their hashes; the pure digest checks.
//! - [`control`]: start/stop commands shared by the button and the API; remembered.
//! - [`gpio`]: button and LEDs (GPIO character device, rppal, or a simulator).
//! - [`provision`]: applies the boot partition's settings file at boot.
//! - [`upstream`]: pushes the stream to a bigger server over WHIP.
//! - [`rtsp`]: the RTSP server (`/stream`, `/sub`) for NVRs and players.
//! - [`snapshot`]: `/snapshot.jpg`, stills made only while someone asks.
//! - [`onvif`]: the ONVIF device and media services (pure SOAP in, SOAP out).
//! - [`discovery`]: the WS-Discovery responder (Probe, Hello, Bye) for ONVIF clients.
//! - [`netif`]: this machine's interfaces and addresses.
//! - [`board`]: the board's health (temperature, throttling, load, memory, uptime).
//! - [`supervisor`]: the camera supervisor's rules (pure; driven by `app`).
//! - [`app`]: wiring and supervision (systemd readiness and watchdog via [`notify`]).
//!
//! - [`admission`]: who may present and watch; leases every transport goes through.
//! - [`status`]: the read-only telemetry view behind `/api/status` and the data channels.
//! - [`atomic_file`], [`backoff`], [`task`]: the one atomic write, retry backoff and task
//!   guard.
//!
//! Dependency rule: a module imports only modules below it in this order, and the
//! daemon's state lives with the stage that produces it (presenter and viewers in
//! `admission`, the pipeline in `supervisor`, LEDs in `gpio`, links and data-channel
//! feed in `peer`, the push in `upstream`):
//!
//! ```text
//! media, atomic_file, backoff, task, notify → nvr_credentials → onvif (pure SOAP)
//!   → netif, board  (leaves)
//!   → auth, config → settings → capture → encode → fanout → transcode, audio → peer
//!   → admission, supervisor, control
//!   → gpio, signaling, upstream, rtsp, snapshot, discovery, provision → status
//!   → web → app
//! ```
//! `status` reads the stages and nothing it reads imports it; nothing imports `app`.
//! No module cycles (`python3 ../shared/tools/modcycles.py src`); tests/it/dependency_rule.rs
//! checks every `crate::` path against these layers.
//!
//! Architecture invariants:
//! - Data flows one way; the only upstream signal is a keyframe request over a channel.
//! - Publishing never blocks: a slow viewer loses frames up to its next keyframe.
//! - Nothing from the network, a file or a device may panic the daemon.

pub mod admission;
pub mod app;
pub mod atomic_file;
pub mod audio;
pub mod auth;
pub mod backoff;
pub mod board;
pub mod capture;
pub mod config;
pub mod control;
pub mod discovery;
pub mod encode;
pub mod fanout;
pub mod gpio;
pub mod media;
pub mod netif;
pub mod notify;
pub mod nvr_credentials;
pub mod onvif;
pub mod peer;
pub mod provision;
pub mod rtsp;
pub mod settings;
pub mod signaling;
pub mod snapshot;
pub mod status;
pub mod supervisor;
pub mod task;
pub mod transcode;
pub mod upstream;
pub mod web;
