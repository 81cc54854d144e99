//! RTSP for the systems camera owners already run (NVRs, Home Assistant, Frigate, VLC,
//! ffmpeg): GStreamer's RTSP server on a GLib main loop of its own thread, serving
//! `/stream` and `/sub` over RTP/UDP and RTP interleaved in the RTSP connection (TCP).
//! Each mount's media is shared by all its clients and fed from a hub through an appsrc:
//! `/stream` carries the very access units the WebRTC viewers get (no second encode),
//! `/sub` the sub-stream's (encoded only while its hub has a subscriber). The media
//! subscribes to its hub when the first client asks for it, so it starts on a keyframe
//! (forced, with the usual coalescing), and leaves when the last client goes; a client
//! that starts playing a media already running asks for a keyframe too.
//!
//! With a viewer password set, every request needs RTSP Digest credentials (user
//! `viewer` or `admin`, checked against the passwords `crate::nvr_credentials` keeps;
//! Basic is not offered: it would send the password in the clear on the LAN), and wrong
//! ones count toward the address's limit like wrong passwords on the page.

use crate::fanout::Hub;
use crate::task::AbortOnDrop;
use gstreamer as gst;
use gstreamer::glib;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_rtsp_server as rtsp;
use gstreamer_rtsp_server::prelude::*;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// The media each mount serves: the hub's H.264 as it is, SPS/PPS in the SDP and before
/// every IDR, packetized for the lowest latency; with `audio`, the microphone's Opus
/// packets as they are, stamped on arrival (the video is too, so they stay in step).
pub fn launch(audio: bool) -> String {
    let video = "appsrc name=src is-live=true format=time \
         caps=video/x-h264,stream-format=byte-stream,alignment=au \
         ! h264parse config-interval=-1 \
         ! rtph264pay name=pay0 pt=96 config-interval=-1 aggregate-mode=zero-latency";
    let audio = if audio {
        " appsrc name=asrc is-live=true format=time do-timestamp=true \
         caps=audio/x-opus,channel-mapping-family=0,channels=1,rate=48000 \
         ! rtpopuspay name=pay1 pt=97"
    } else {
        ""
    };
    format!("( {video}{audio} )")
}

/// A path, the hub it serves, and the hub whose audio it carries (the main one).
pub struct Mount {
    pub path: &'static str,
    pub hub: Arc<Hub>,
    pub audio: Option<Arc<Hub>>,
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
pub enum RtspError {
    #[error("GStreamer: {0}")]
    Init(String),
    #[error("cannot listen on {0} (in use, or not an address of this machine)")]
    Listen(SocketAddr),
}

/// The running server; dropping it stops it.
pub struct RtspServer {
    /// The port it listens on (the configured one, or the one the system chose for 0).
    pub port: u16,
    main_loop: glib::MainLoop,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Drop for RtspServer {
    /// Ends the loop and waits a little for its thread; a media stuck tearing down (a
    /// client that stopped reading) is left to finish on its own rather than holding
    /// the daemon's shutdown.
    fn drop(&mut self) {
        self.main_loop.quit();
        if let Some(t) = self.thread.take() {
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
            while !t.is_finished() && std::time::Instant::now() < deadline {
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            if t.is_finished() {
                let _ = t.join();
            } else {
                tracing::warn!("the RTSP server did not stop within 2 s; left to finish");
            }
        }
    }
}

/// The role a credential gets in RTSP: both users may watch every mount.
const WATCH: &str = "watch";

/// GStreamer's RTSP authentication (Digest, its nonces and checks), with the passwords
/// taken from `crate::auth::Auth` whenever they change and every attempt counted by
/// address there.
mod digest {
    use super::*;
    use gstreamer_rtsp_server::subclass::prelude::*;

    glib::wrapper! {
        pub struct GuardedAuth(ObjectSubclass<imp::Guard>)
            @extends rtsp::RTSPAuth;
    }

    impl GuardedAuth {
        pub fn new(auth: Arc<crate::auth::Auth>) -> Self {
            let this: Self = glib::Object::new();
            let _ = this.imp().auth.set(auth);
            this.set_realm(Some("edgecam"));
            this.set_supported_methods(gstreamer_rtsp::RTSPAuthMethod::Digest);
            this
        }
    }

    /// The address a client connected from, if its connection says.
    fn peer_ip(client: &rtsp::RTSPClient) -> Option<std::net::IpAddr> {
        // The binding leaves the connection out; reading its address is all we need.
        unsafe {
            let conn = rtsp::ffi::gst_rtsp_client_get_connection(client.as_ptr());
            if conn.is_null() {
                return None;
            }
            let ip = gstreamer_rtsp::ffi::gst_rtsp_connection_get_ip(conn);
            if ip.is_null() {
                return None;
            }
            std::ffi::CStr::from_ptr(ip).to_str().ok()?.parse().ok()
        }
    }

    pub mod imp {
        use super::*;

        #[derive(Default)]
        pub struct Guard {
            pub auth: std::sync::OnceLock<Arc<crate::auth::Auth>>,
            /// The generation of the passwords last given to GStreamer.
            pub generation: Mutex<Option<u64>>,
        }

        #[glib::object_subclass]
        impl ObjectSubclass for Guard {
            const NAME: &'static str = "EdgecamRtspAuth";
            type Type = GuardedAuth;
            type ParentType = rtsp::RTSPAuth;
        }

        impl ObjectImpl for Guard {}

        impl Guard {
            /// Gives GStreamer the passwords as they are now, if they changed.
            fn refresh(&self, auth: &crate::auth::Auth) {
                let (generation, users) = auth.nvr_users();
                let mut seen = self.generation.lock().unwrap_or_else(|p| p.into_inner());
                if *seen == Some(generation) {
                    return;
                }
                let obj = self.obj();
                let token = rtsp::RTSPToken::builder()
                    .field("media.factory.role", WATCH)
                    .build();
                for user in ["viewer", "admin"] {
                    obj.remove_digest(user);
                }
                for (user, password) in &users {
                    obj.add_digest(user, password, &token);
                }
                *seen = Some(generation);
            }
        }

        impl RTSPAuthImpl for Guard {
            fn authenticate(&self, ctx: &rtsp::RTSPContext) -> bool {
                let Some(auth) = self.auth.get() else {
                    return false;
                };
                // Open while no viewer password is set (the settings page may set one
                // while the server runs).
                if !auth.watching_needs_credentials() {
                    ctx.set_token(
                        rtsp::RTSPToken::builder()
                            .field("media.factory.role", WATCH)
                            .build(),
                    );
                    return true;
                }
                self.refresh(auth);
                let from = ctx.client().and_then(peer_ip);
                if let Some(ip) = from
                    && auth.attempt_blocked(ip).is_some()
                {
                    return false;
                }
                let sent = ctx
                    .request()
                    .is_some_and(|r| !r.parse_auth_credentials().is_empty());
                let ok = self.parent_authenticate(ctx);
                let granted = ctx
                    .token()
                    .is_some_and(|t| t.string("media.factory.role").as_deref() == Some(WATCH));
                if let (Some(ip), true) = (from, sent) {
                    if granted {
                        auth.attempt_succeeded(ip);
                    } else {
                        tracing::info!(%ip, "RTSP credentials refused");
                        auth.attempt_failed(ip);
                    }
                }
                ok
            }
        }
    }
}

/// Pushes each Opus packet into `src` as it comes (a lagging reader skips ahead: old
/// sound is worth nothing live).
async fn feed_audio(
    src: gst_app::AppSrc,
    mut packets: tokio::sync::broadcast::Receiver<Arc<crate::media::AudioPacket>>,
) {
    use tokio::sync::broadcast::error::RecvError;
    loop {
        let packet = match packets.recv().await {
            Ok(p) => p,
            Err(RecvError::Lagged(_)) => continue,
            Err(RecvError::Closed) => return,
        };
        let mut buffer = gst::Buffer::from_slice(packet.payload.clone());
        if let Some(b) = buffer.get_mut() {
            b.set_duration(gst::ClockTime::from_mseconds(20));
        }
        if src.push_buffer(buffer).is_err() {
            return;
        }
    }
}

/// Starts serving `mounts` on `listen`, asking for credentials whenever `auth` says
/// watching needs them. Must be called inside the tokio runtime (the hubs are read from
/// its tasks).
pub fn start(
    listen: SocketAddr,
    mounts: Vec<Mount>,
    auth: Arc<crate::auth::Auth>,
) -> Result<RtspServer, RtspError> {
    crate::encode::runner::init().map_err(|e| RtspError::Init(e.to_string()))?;
    let context = glib::MainContext::new();
    let server = rtsp::RTSPServer::new();
    server.set_address(&listen.ip().to_string());
    server.set_service(&listen.port().to_string());
    server.set_auth(Some(&digest::GuardedAuth::new(auth)));
    let points = server
        .mount_points()
        .ok_or_else(|| RtspError::Init("the server has no mount points".into()))?;
    let runtime = tokio::runtime::Handle::current();
    let hubs: Vec<Arc<Hub>> = mounts.iter().map(|m| m.hub.clone()).collect();
    for mount in mounts {
        let factory = rtsp::RTSPMediaFactory::new();
        factory.set_launch(&launch(mount.audio.is_some()));
        factory.set_shared(true);
        factory.add_role_from_structure(
            &gst::Structure::builder(WATCH)
                .field("media.factory.access", true)
                .field("media.factory.construct", true)
                .build(),
        );
        let hub = mount.hub;
        let audio = mount.audio;
        let runtime = runtime.clone();
        factory.connect_media_configure(move |_, media| {
            let bin = media.element().downcast::<gst::Bin>().ok();
            let appsrc = |name: &str| {
                bin.as_ref()
                    .and_then(|b| b.by_name(name))
                    .and_then(|e| e.downcast::<gst_app::AppSrc>().ok())
            };
            let Some(src) = appsrc("src") else {
                tracing::warn!("RTSP media without its appsrc; not fed");
                return;
            };
            let mut input = hub.subscribe();
            let mut feeders = vec![AbortOnDrop(runtime.spawn(async move {
                crate::encode::runner::feed(&src, &mut input.frames).await;
            }))];
            if let (Some(asrc), Some(audio)) = (appsrc("asrc"), &audio) {
                let packets = audio.audio.subscribe();
                feeders.push(AbortOnDrop(runtime.spawn(feed_audio(asrc, packets))));
            }
            // Fed until the media is taken down (its last client gone).
            let feeders = Mutex::new(feeders);
            media.connect_unprepared(move |_| {
                if let Ok(mut f) = feeders.lock() {
                    f.clear();
                }
            });
        });
        points.add_factory(mount.path, factory);
    }
    // A client that starts playing a shared media mid-GOP needs a keyframe (coalesced).
    server.connect_client_connected(move |_, client| {
        let hubs = hubs.clone();
        client.connect_play_request(move |_, _| {
            for hub in &hubs {
                hub.request_keyframe();
            }
        });
    });
    server
        .attach(Some(&context))
        .map_err(|_| RtspError::Listen(listen))?;
    let port = u16::try_from(server.bound_port()).map_err(|_| RtspError::Listen(listen))?;
    let main_loop = glib::MainLoop::new(Some(&context), false);
    let running = main_loop.clone();
    let thread = std::thread::Builder::new()
        .name("rtsp".into())
        .spawn(move || {
            // The server stays referenced for as long as its loop runs.
            let _server = server;
            let _ = context.with_thread_default(|| running.run());
        })
        .map_err(|e| RtspError::Init(e.to_string()))?;
    tracing::info!("RTSP on rtsp://{}:{port}/stream and /sub", listen.ip());
    Ok(RtspServer {
        port,
        main_loop,
        thread: Some(thread),
    })
}
