//! Wiring and supervision: the camera pipeline is kept running (restarted with backoff
//! when it fails) while the HTTP server, signaling and peers live on independently.

use crate::admission::{Admission, Presenter, PresenterLease};
use crate::capture::{Source, Want};
use crate::config::Config;
use crate::control::Control;
use crate::encode::{self, EncodeSettings, RunStats, pipeline};
use crate::fanout::Hub;
use crate::gpio::Pins;
use crate::peer::PeerFactory;
use crate::signaling::Signaling;
use crate::status::{Status, TlsInfo};
use crate::supervisor::{Action, CameraState, Event, Outcome, Pipeline, State, Supervisor};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::watch;

/// No frame for this long means the camera or encoder is stuck.
const STALL_AFTER: Duration = Duration::from_secs(5);

/// Serves until `shutdown` resolves. Binding is the caller's job, so tests can use port 0.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    let pins = crate::gpio::open(&config.gpio)?;
    serve_with(config, listener, shutdown, pins).await
}

/// Like `serve`, with the GPIO pins given (tests pass a simulator they keep a handle to).
pub async fn serve_with(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
    pins: Arc<dyn Pins>,
) -> anyhow::Result<()> {
    encode::runner::init()?;
    let control = Arc::new(Control::new(
        config.camera.autostart,
        config.state.dir.clone(),
        config.gpio.long_press_action,
    ));
    let hub = Hub::new();
    // The second, VP8 stream (the camera's second encode, a VP8 presenter's own video,
    // or made from H.264 by the transcoder).
    let vp8 = crate::fanout::SecondStream::new();
    // The sub-stream: RTSP /sub (NVRs detect motion on it), and viewers on weak links.
    let sub = Hub::new();
    let snapshots = crate::snapshot::Snapshots::new();
    let admission = Admission::new(config.viewers.max);
    let peers = PeerFactory::new(
        config.webrtc.clone(),
        config.webrtc.substream_for_weak_links.then(|| sub.clone()),
    );
    let provision_error = config.state.dir.join(crate::provision::ERROR_FILE);
    let config_error = std::fs::read_to_string(&provision_error)
        .ok()
        .map(|text| text.trim().to_string());
    if let Some(text) = &config_error {
        tracing::error!("the boot partition's settings were rejected: {text}");
    }
    let (stop_tx, stop_rx) = watch::channel(false);
    // The settings in effect; the settings page changes them while everything runs.
    let (settings_tx, settings_rx) = watch::channel(config.clone());
    let (camera_tx, camera_state) = watch::channel(CameraState::default());
    let camera = tokio::spawn(supervise_camera(
        settings_rx.clone(),
        CameraOutputs {
            hub: hub.clone(),
            vp8: vp8.clone(),
            sub: sub.clone(),
            stills: snapshots.hub.clone(),
        },
        admission.clone(),
        camera_tx,
        control.camera_on(),
        control.restarts(),
        stop_rx.clone(),
    ));
    // The microphone, apart from the camera: it never holds up a picture.
    let audio_on = config.audio.source != crate::config::AudioSource::None;
    let (audio_tx, audio_state) = watch::channel(crate::audio::AudioState {
        source: config.audio.source.to_string(),
        state: if audio_on { "starting" } else { "off" },
        ..Default::default()
    });
    tokio::spawn(crate::audio::run(
        settings_rx.clone(),
        hub.clone(),
        {
            let admission = admission.clone();
            Arc::new(move || admission.presenter() == Presenter::Camera)
        },
        audio_tx,
        stop_rx.clone(),
    ));
    let (transcoding_tx, transcoding) = watch::channel(crate::transcode::Transcoding::default());
    tokio::spawn(crate::transcode::serve(
        transcode_plan(&config),
        hub.clone(),
        vp8.clone(),
        sub.clone(),
        snapshots.hub.clone(),
        transcoding_tx,
        stop_rx.clone(),
    ));
    let (leds_tx, leds) = watch::channel(crate::gpio::Leds::default());
    let gpio = tokio::spawn(crate::gpio::run(
        pins,
        config.gpio.clone(),
        control.clone(),
        crate::gpio::LedInputs {
            admission: admission.clone(),
            camera: camera_state.clone(),
            config_error: config_error.is_some(),
            shown: leds_tx,
        },
        stop_rx.clone(),
    ));
    tokio::spawn(crate::status::feed_channel(
        admission.clone(),
        camera_state.clone(),
        peers.channel().clone(),
        stop_rx.clone(),
    ));
    let tls = tls_or_fallback(&config);
    let auth = Arc::new(crate::auth::Auth::new(
        config.auth.clone(),
        &config.state.dir,
    ));
    let signaling = Arc::new(Signaling {
        https: tls.is_some(),
        hub: hub.clone(),
        vp8: vp8.clone(),
        peers: peers.clone(),
        admission: admission.clone(),
        control: control.clone(),
        auth: auth.clone(),
        allowed_origins: config.http.allowed_origins.clone(),
        connections: Default::default(),
        per_address_max: config.http.max_connections_per_address,
        ping_every: config.http.ping_every,
        silent_limit: config.http.silent_limit,
        wish: Default::default(),
        whip_token: config.whip_token.clone(),
        closing: stop_rx.clone(),
    });
    let (upstream_tx, upstream_state) = watch::channel(None);
    let upstream = config.upstream.clone().map(|(url, token)| {
        tokio::spawn(crate::upstream::run(
            url,
            token,
            peers.clone(),
            hub.clone(),
            upstream_tx,
            stop_rx.clone(),
        ))
    });
    // RTSP for NVRs and players; a port in use is reported, and the rest still runs.
    let (rtsp_server, rtsp_info) = match config.rtsp_listen {
        None => (None, None),
        Some(listen) => {
            let mounts = vec![
                crate::rtsp::Mount {
                    path: "/stream",
                    hub: hub.clone(),
                    audio: audio_on.then(|| hub.clone()),
                },
                crate::rtsp::Mount {
                    path: "/sub",
                    hub: sub.clone(),
                    audio: audio_on.then(|| hub.clone()),
                },
            ];
            match crate::rtsp::start(listen, mounts, auth.clone()) {
                Ok(server) => {
                    let port = server.port;
                    (
                        Some(server),
                        Some(crate::status::RtspInfo {
                            port: Some(port),
                            error: None,
                        }),
                    )
                }
                Err(e) => {
                    tracing::error!("RTSP is off: {e}");
                    (
                        None,
                        Some(crate::status::RtspInfo {
                            port: None,
                            error: Some(e.to_string()),
                        }),
                    )
                }
            }
        }
    };
    let sessions = signaling.clone();
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    let status = Arc::new(Status {
        name: config.camera_name.clone().unwrap_or_else(|| {
            Some(crate::netif::hostname())
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "edgecam".into())
        }),
        admission: admission.clone(),
        camera: camera_state.clone(),
        leds,
        links: peers.links().clone(),
        vp8: vp8.clone(),
        sub,
        transcoding,
        audio: audio_state,
        rtsp: rtsp_info,
        upstream: upstream_state,
        hub,
        tls: tls.as_ref().map(|(t, error)| TlsInfo {
            source: t.source,
            fingerprint_sha256: t.fingerprint.clone(),
            error: error.clone(),
        }),
        config_error,
    });
    let onvif_facts = {
        let stream = |s: &EncodeSettings, path| crate::onvif::StreamInfo {
            width: s.width,
            height: s.height,
            fps: s.fps,
            bitrate_kbps: s.bitrate_kbps,
            gov_length: pipeline::gop_frames(s),
            path,
        };
        let main = main_settings(&config);
        Arc::new(crate::web::onvif::Facts::read(
            config.camera_name.clone(),
            stream(&main, "/stream"),
            stream(&substream_settings(&config), "/sub"),
            rtsp_server.as_ref().map(|s| s.port),
            addr,
        ))
    };
    // WS-Discovery: NVRs and Home Assistant find the camera by themselves.
    let discovery = config.onvif_discovery.then(|| {
        let facts = onvif_facts.clone();
        let port = addr.port();
        // Every IPv4 address, loopback too (a prober on this machine).
        let addresses: Vec<std::net::Ipv4Addr> = crate::netif::ipv4_addresses()
            .into_iter()
            .filter_map(|(_, a, _)| a.parse().ok())
            .collect();
        // Where the web server can be reached: its own address when it listens on one.
        let reachable = if addr.ip().is_unspecified() {
            addresses.clone()
        } else {
            match addr.ip() {
                std::net::IpAddr::V4(a) => vec![a],
                std::net::IpAddr::V6(_) => addresses.clone(),
            }
        };
        let pinned = !addr.ip().is_unspecified();
        let endpoint = {
            use sha2::Digest;
            crate::discovery::uuid_from(&sha2::Sha256::digest(format!("edgecam/{}", facts.serial)))
        };
        let identity = move |from: Option<std::net::Ipv4Addr>| crate::discovery::Identity {
            endpoint: endpoint.clone(),
            scopes: crate::onvif::scopes(&facts.name, &facts.hardware),
            // Loopback addresses only for a prober on this machine.
            xaddrs: reachable
                .iter()
                .filter(|a| pinned || !a.is_loopback() || from.is_some_and(|f| f.is_loopback()))
                .map(|a| format!("http://{a}:{port}/onvif/device_service"))
                .collect(),
        };
        let stop = stop_rx.clone();
        tokio::spawn(async move {
            if let Err(e) = crate::discovery::run(addresses, identity, stop).await {
                tracing::warn!("WS-Discovery is off: {e}");
            }
        })
    });
    let settings = crate::web::settings::SettingsService::new(
        settings_tx,
        admission.clone(),
        auth.clone(),
        camera_state.clone(),
    );
    let router = crate::web::router(signaling, status, snapshots, onvif_facts, settings);
    tracing::info!("serving on {scheme}://{addr}/");
    // HTTP listens and the camera supervisor runs (streaming or retrying): ready.
    crate::notify::notify(&format!("READY=1\nSTATUS=serving on {scheme}://{addr}"));
    let watchdog = crate::notify::watchdog_period()
        .map(|period| crate::task::AbortOnDrop::spawn(watchdog(period, camera_state)));

    let graceful = async move {
        shutdown.await;
        // Tell viewers the presenter is gone so their pages show offline, then stop media.
        admission.close();
        control.shutdown();
        let _ = stop_tx.send(true);
    };
    match tls {
        Some((tls, _)) => {
            let listener = crate::web::tls::TlsListener::new(listener, tls.config)?;
            http_server(listener, router, graceful).await?
        }
        None => http_server(listener, router, graceful).await?,
    }
    // The pipeline goes to NULL (camera released) and the LEDs go dark before we return.
    let _ = tokio::time::timeout(Duration::from_millis(1500), async {
        let _ = camera.await;
        let _ = gpio.await;
        // WHIP/WHEP sessions end now: each one's watcher then sees its peer go.
        sessions.wish.end_all().await;
        // The upstream publisher stops with the daemon (its server sees the peer go).
        if let Some(u) = upstream {
            let _ = u.await;
        }
        // Discovery says Bye.
        if let Some(d) = discovery {
            let _ = d.await;
        }
    })
    .await;
    drop(watchdog);
    drop(rtsp_server);
    Ok(())
}

/// Serves `router` on `listener` until `shutdown` completes. Client addresses are passed
/// along for the per-address limits.
async fn http_server<L>(
    listener: L,
    router: axum::Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()>
where
    L: axum::serve::Listener<Addr = std::net::SocketAddr>,
{
    use axum::serve::ListenerExt;
    // tap_io gives any listener axum's ConnectInfo<SocketAddr> support.
    axum::serve(
        listener.tap_io(|_| {}),
        router.into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await
}

/// The configured certificate; if it cannot be used, a self-signed one (still HTTPS, with
/// the reason in /api/status); if even that fails, plain HTTP rather than no camera.
fn tls_or_fallback(config: &Config) -> Option<(crate::web::tls::Tls, Option<String>)> {
    use crate::config::TlsMode;
    use crate::web::tls;
    match tls::load(&config.http.tls, &config.state.dir) {
        Ok(t) => t.map(|t| (t, None)),
        Err(e) if matches!(config.http.tls, TlsMode::Files { .. }) => {
            tracing::error!("TLS: {e}; using a self-signed certificate instead");
            match tls::load(&TlsMode::SelfSigned, &config.state.dir) {
                Ok(t) => t.map(|t| (t, Some(e.to_string()))),
                Err(e2) => {
                    tracing::error!("TLS: {e2}; serving plain HTTP");
                    None
                }
            }
        }
        Err(e) => {
            tracing::error!("TLS: {e}; serving plain HTTP");
            None
        }
    }
}

/// Pings systemd's watchdog only while the media loop is alive: the pipeline runner's
/// loop ticks, or the supervisor is waiting (stopped, or backing off after an error).
/// A runner stuck in GStreamer stops the pings, and systemd restarts the daemon.
async fn watchdog(period: Duration, camera: watch::Receiver<CameraState>) {
    let ticks_now = || {
        camera
            .borrow()
            .run
            .ticks
            .load(std::sync::atomic::Ordering::Relaxed)
    };
    let mut last_ticks = ticks_now();
    let mut every = tokio::time::interval(period / 3);
    loop {
        every.tick().await;
        let ticks = ticks_now();
        let pipeline = camera.borrow().pipeline.clone();
        let alive = match pipeline {
            Pipeline::Running | Pipeline::Starting => ticks != last_ticks,
            Pipeline::Stopped | Pipeline::Error(_) => true,
        };
        last_ticks = ticks;
        if alive {
            crate::notify::notify("WATCHDOG=1");
        } else {
            tracing::warn!(
                "media loop made no progress for {:?}; not pinging the watchdog",
                period / 3
            );
        }
    }
}

/// Resolves when a capture device appears that was not there when the test pattern
/// started (`auto` then rescans). Only capabilities are read here, which is cheap; the
/// full probe of formats and sizes is the rescan's.
async fn camera_appeared(before: Vec<std::path::PathBuf>) {
    crate::capture::hotplug::until_present(move || {
        crate::capture::v4l2::capture_nodes()
            .iter()
            .any(|n| !before.contains(n))
    })
    .await
}

/// Resolves when the configured camera at `path` is back and can be opened (udev has
/// given it its group), noticed through inotify rather than by polling.
async fn device_back(path: std::path::PathBuf) {
    crate::capture::hotplug::until_present(move || crate::capture::v4l2::usable(&path)).await
}

/// Resolves when `flag` equals `want` (or its sender is gone).
async fn until(flag: &mut watch::Receiver<bool>, want: bool) {
    let _ = flag.wait_for(|v| *v == want).await;
}

/// Keeps the camera pipeline running while it is switched on, for as long as the daemon
/// lives. The camera presents only when no browser does. The rules are
/// [`supervisor::Supervisor`]'s; this loop turns channels, timers and pipeline runs into
/// its events and carries out its actions.
async fn supervise_camera(
    settings_rx: watch::Receiver<Config>,
    outputs: CameraOutputs,
    admission: Arc<Admission>,
    state: watch::Sender<CameraState>,
    mut camera_on: watch::Receiver<bool>,
    restarts: watch::Receiver<u64>,
    mut stop: watch::Receiver<bool>,
) {
    let CameraOutputs {
        hub,
        vp8,
        sub,
        stills,
    } = outputs;
    // Viewers get an audio track from the camera when it has a microphone configured.
    let audio_on = settings_rx.borrow().audio.source != crate::config::AudioSource::None;
    let mut presenter = admission.watch_presenter();
    let mut machine = Supervisor::new();
    // The presenter slot while the camera presents; its keyframe requests are read by
    // the pipeline runs (locked for as long as the camera presents).
    let mut presenting: Option<(PresenterLease, tokio::sync::OwnedMutexGuard<_>)> = None;
    let mut pause_until = tokio::time::Instant::now();
    let mut pending = std::collections::VecDeque::from([Event::Switched(*camera_on.borrow())]);
    while *machine.state() != State::Done {
        let event = match pending.pop_front() {
            Some(e) => e,
            None => {
                next_event(
                    machine.state(),
                    &mut stop,
                    &mut camera_on,
                    &mut presenter,
                    pause_until,
                )
                .await
            }
        };
        for action in machine.handle(event) {
            match action {
                Action::Claim => {
                    let lease = try_claim(&mut presenter, || {
                        admission.present(Presenter::Camera, audio_on).ok()
                    });
                    let claimed = lease.is_some();
                    if let Some(lease) = lease {
                        let inbox = hub.keyframe_inbox().lock_owned().await;
                        presenting = Some((lease, inbox));
                    }
                    pending.push_back(Event::Claimed(claimed));
                }
                Action::Release => {
                    presenting = None;
                    tracing::info!("camera stopped");
                }
                Action::Report(pipeline, backoff_s) => state.send_modify(|s| {
                    s.pipeline = pipeline;
                    s.backoff_s = backoff_s;
                }),
                Action::CountRestart => state.send_modify(|s| s.restarts += 1),
                Action::Sleep(d) => {
                    pause_until = tokio::time::Instant::now() + d;
                }
                Action::StartPipeline => {
                    let Some((_, inbox)) = presenting.as_mut() else {
                        // Cannot happen: the machine starts only after a claim.
                        pending.push_back(Event::Stop);
                        continue;
                    };
                    let started = Instant::now();
                    // Each run takes the settings in effect as it starts.
                    let config = settings_rx.borrow().clone();
                    let run = CameraRun {
                        config: &config,
                        want: Want {
                            width: config.camera.width,
                            height: config.camera.height,
                            fps: config.camera.fps,
                        },
                        settings: main_settings(&config),
                        fallback: config.fallback.enabled.then_some(pipeline::Vp8Settings {
                            width: config.fallback.width,
                            height: config.fallback.height,
                            bitrate_kbps: config.fallback.bitrate_kbps,
                        }),
                        substream: substream_wanted(&config).then(|| substream_settings(&config)),
                        hub: &hub,
                        vp8: &vp8,
                        sub: &sub,
                        stills: &stills,
                        state: &state,
                    };
                    let outcome = run
                        .once(inbox, &camera_on, &restarts, &settings_rx, &stop)
                        .await;
                    let event = if *stop.borrow() {
                        Event::Stop
                    } else if !*camera_on.borrow() {
                        Event::RunEnded {
                            outcome: Outcome::SwitchedOff,
                            ran_for: started.elapsed(),
                        }
                    } else {
                        match &outcome {
                            Outcome::Restart => tracing::info!("camera pipeline restart requested"),
                            Outcome::Failed { reason, .. } => tracing::warn!(
                                "camera pipeline: {reason}; restarting after a pause"
                            ),
                            Outcome::SwitchedOff => {}
                        }
                        Event::RunEnded {
                            outcome,
                            ran_for: started.elapsed(),
                        }
                    };
                    pending.push_back(event);
                }
            }
        }
    }
}

/// Claims the presenter slot with `claim`, having marked the presenter channel seen
/// first: a presenter that leaves right after a failed claim is then a change the wait
/// that follows wakes for (marking it after the claim lost that wake-up).
fn try_claim<L>(
    presenter: &mut watch::Receiver<Presenter>,
    claim: impl FnOnce() -> Option<L>,
) -> Option<L> {
    presenter.borrow_and_update();
    claim()
}

/// What happens next in a state that waits for the world.
async fn next_event(
    state: &State,
    stop: &mut watch::Receiver<bool>,
    camera_on: &mut watch::Receiver<bool>,
    presenter: &mut watch::Receiver<Presenter>,
    pause_until: tokio::time::Instant,
) -> Event {
    match state {
        State::Off => tokio::select! {
            _ = until(stop, true) => Event::Stop,
            _ = until(camera_on, true) => Event::Switched(true),
        },
        State::WaitingForPresenter => loop {
            tokio::select! {
                _ = until(stop, true) => return Event::Stop,
                _ = until(camera_on, false) => return Event::Switched(false),
                changed = presenter.changed() => {
                    if changed.is_err() || *presenter.borrow_and_update() == Presenter::None {
                        return Event::PresenterFree;
                    }
                }
            }
        },
        State::Backoff { waiting_for } => {
            let back = async {
                match waiting_for {
                    Some(path) => device_back(path.clone()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = tokio::time::sleep_until(pause_until) => Event::BackoffOver,
                _ = back => {
                    tracing::info!("the camera is back; starting it");
                    Event::DeviceBack
                }
                _ = until(camera_on, false) => Event::Switched(false),
                _ = until(stop, true) => Event::Stop,
            }
        }
        // The machine answers these itself (claims and runs are carried out inline).
        State::Claiming | State::Running | State::Done => {
            until(stop, true).await;
            Event::Stop
        }
    }
}

/// The camera encoder's own keyframe interval: twice the longest the settings allow,
/// as the runner forces each GOP's IDR itself.
const GOP_CEILING_S: u32 = 120;

/// Where the camera's streams go: the H.264 hub, the VP8 stream and the sub-stream.
struct CameraOutputs {
    hub: Arc<Hub>,
    vp8: Arc<crate::fanout::SecondStream>,
    sub: Arc<Hub>,
    /// JPEG snapshots.
    stills: Arc<Hub>,
}

/// What one pipeline run needs, borrowed from the supervisor.
struct CameraRun<'a> {
    config: &'a Config,
    want: Want,
    settings: EncodeSettings,
    /// `[fallback]`: the VP8 branch, when enabled.
    fallback: Option<pipeline::Vp8Settings>,
    /// `[substream]`, where it has a door (`substream_wanted`).
    substream: Option<EncodeSettings>,
    hub: &'a Arc<Hub>,
    vp8: &'a Arc<crate::fanout::SecondStream>,
    sub: &'a Arc<Hub>,
    stills: &'a Arc<Hub>,
    state: &'a watch::Sender<CameraState>,
}

impl CameraRun<'_> {
    /// Resolves the source and runs one pipeline until it fails, or until the camera is
    /// switched off, a restart is asked for, a camera appears (auto on the test pattern)
    /// or the daemon stops. Everything the pipeline opened is closed when this returns.
    async fn once(
        &self,
        keyframes: &mut tokio::sync::mpsc::Receiver<()>,
        camera_on: &watch::Receiver<bool>,
        restarts: &watch::Receiver<u64>,
        settings: &watch::Receiver<Config>,
        stop: &watch::Receiver<bool>,
    ) -> Outcome {
        let (config, want, state) = (self.config, self.want, self.state);
        // A new bitrate is taken by the running encoder; other camera settings need a
        // new pipeline (the run ends as for a restart; viewers stay).
        let tune = |c: &Config| encode::runner::Tune {
            bitrate_kbps: c.encoder.bitrate_kbps,
            keyframe_interval: Some(c.encoder.keyframe_interval),
        };
        let (tune_tx, tune_rx) = watch::channel(tune(config));
        let mut changes = settings.clone();
        changes.borrow_and_update();
        let running = config.clone();
        let spec = config.camera.source.clone();
        let resolved =
            tokio::task::spawn_blocking(move || Source::resolve(&spec, want, &encode::has_element))
                .await;
        let mut off = camera_on.clone();
        let mut stop_run = stop.clone();
        let mut restart = restarts.clone();
        restart.borrow_and_update();
        // With `auto` on the test pattern, a camera plugged in later takes over.
        let watch_hotplug = config.camera.source == crate::config::SourceSpec::Auto
            && matches!(resolved, Ok(Ok(Source::Test)));
        let present_now = if watch_hotplug {
            tokio::task::spawn_blocking(crate::capture::v4l2::capture_nodes)
                .await
                .unwrap_or_default()
        } else {
            vec![]
        };
        let stop_fut = async move {
            let appeared = camera_appeared(present_now);
            tokio::pin!(appeared);
            loop {
                tokio::select! {
                    _ = until(&mut stop_run, true) => break,
                    _ = until(&mut off, false) => break,
                    _ = restart.changed() => break,
                    _ = &mut appeared, if watch_hotplug => {
                        tracing::info!("a camera appeared; switching to it");
                        break;
                    }
                    Ok(()) = changes.changed() => {
                        let new = changes.borrow_and_update().clone();
                        if crate::settings::pipeline_changed(&running, &new) {
                            tracing::info!("camera settings changed; starting a new pipeline");
                            break;
                        }
                        let _ = tune_tx.send(tune(&new));
                    }
                }
            }
        };
        let failed = |reason: String, waiting_for| Outcome::Failed {
            reason,
            waiting_for,
        };
        let source = match resolved {
            Err(e) => return failed(format!("camera probe failed: {e}"), None),
            Ok(Err(e)) => {
                // A configured camera that is not there is waited for, not retried blindly.
                let waiting_for = match &e {
                    crate::capture::CaptureError::Missing(path) => Some(path.clone()),
                    _ => None,
                };
                return failed(e.to_string(), waiting_for);
            }
            Ok(Ok(source)) => source,
        };
        // v4l2h264enc counts only with an encoder device behind it (the Pi 2-4's
        // bcm2835-codec-encode), found the way rpicam-apps does.
        let hw = if encoder_may_be_hardware(config.encoder.kind) {
            crate::capture::v4l2::hardware_encoders()
        } else {
            vec![]
        };
        let has = |e: &str| encode::has_element(e) && (e != "v4l2h264enc" || !hw.is_empty());
        let encoder = match pipeline::choose(config.encoder.kind, source.delivers_h264(), &has) {
            Ok(encoder) => encoder,
            Err(e) => return failed(e.to_string(), None),
        };
        // A camera that delivers H.264 is passed through: no raw frames for the extra
        // encodes (the transcoder makes them from its H.264 instead).
        let raw = encoder != pipeline::Encoder::Passthrough;
        let fallback = self.fallback.filter(|_| raw);
        let substream = self.substream.filter(|_| raw);
        // The runner keeps the GOP (so a new keyframe interval applies live); the
        // encoder's own interval is only a ceiling.
        let ceiling = EncodeSettings {
            keyframe_interval_s: GOP_CEILING_S,
            ..self.settings
        };
        let desc = pipeline::describe(&source.fragment(want), encoder, &ceiling, raw);
        tracing::info!(source = %source.describe(), encoder = encoder.name(), "starting pipeline");
        tracing::debug!(pipeline = %desc);
        let stats = Arc::new(RunStats::default());
        let encoder_name = match (encoder, hw.first()) {
            (pipeline::Encoder::Hardware, Some(dev)) => {
                format!("{} ({}, {})", encoder.name(), dev.card, dev.path.display())
            }
            _ => encoder.name().into(),
        };
        let sink_hub = self.hub.clone();
        let sink_state = state.clone();
        let first_frame = std::sync::Once::new();
        let sink = Arc::new(move |frame| {
            first_frame.call_once(|| {
                sink_state.send_modify(|s| {
                    s.pipeline = Pipeline::Running;
                    s.backoff_s = 0;
                })
            });
            sink_hub.publish(frame);
        });
        // Said before the extra streams' requests are taken: a transcoder that made one
        // for the previous presenter stops at this and lets go of them.
        let _produced =
            self.vp8
                .announce(crate::fanout::Produced::of(true, fallback.is_some(), raw));
        let mut vp8_requests = match fallback {
            Some(_) => Some(self.vp8.hub.keyframe_inbox().lock_owned().await),
            None => None,
        };
        let mut sub_requests = match substream {
            Some(_) => Some(self.sub.keyframe_inbox().lock_owned().await),
            None => None,
        };
        let branch = |hub: &Arc<Hub>, stats: &Arc<RunStats>| {
            let (to, watched_hub) = (hub.clone(), hub.clone());
            (
                Arc::new(move |frame| to.publish(frame)) as Arc<dyn Fn(_) + Send + Sync>,
                Arc::new(move || watched_hub.viewers() > 0) as Arc<dyn Fn() -> bool + Send + Sync>,
                stats.clone(),
            )
        };
        let mut still_requests = match raw {
            true => Some(self.stills.keyframe_inbox().lock_owned().await),
            false => None,
        };
        let vp8_stats = Arc::new(RunStats::default());
        let sub_stats = Arc::new(RunStats::default());
        let still_stats = Arc::new(RunStats::default());
        let mut branches = Vec::new();
        if let Some(requests) = still_requests.as_mut() {
            let (sink, watched, stats) = branch(self.stills, &still_stats);
            branches.push(encode::BranchOutput {
                branch: pipeline::still_branch(),
                sink_name: "stillsink",
                sink,
                keyframes: requests,
                watched,
                stats,
            });
        }
        if let (Some(requests), Some(v)) = (vp8_requests.as_mut(), fallback) {
            let (sink, watched, stats) = branch(&self.vp8.hub, &vp8_stats);
            branches.push(encode::BranchOutput {
                branch: pipeline::vp8_branch(&v, &self.settings),
                sink_name: "vp8sink",
                sink,
                keyframes: requests,
                watched,
                stats,
            });
        }
        if let (Some(requests), Some(sub)) = (sub_requests.as_mut(), substream) {
            let (sink, watched, stats) = branch(self.sub, &sub_stats);
            branches.push(encode::BranchOutput {
                branch: pipeline::sub_branch(encoder, &sub),
                sink_name: "subsink",
                sink,
                keyframes: requests,
                watched,
                stats,
            });
        }
        // What this run is, told once (each change wakes the LEDs and the status feed).
        state.send_modify(|s| {
            s.source = source.describe();
            s.encoder = encoder_name;
            s.run = stats.clone();
            s.vp8_run = fallback.map(|_| vp8_stats.clone());
            s.sub_run = substream.map(|_| sub_stats.clone());
        });
        let result = encode::run(
            &desc,
            sink,
            keyframes,
            stats,
            STALL_AFTER,
            stop_fut,
            branches,
            Some(tune_rx),
        )
        .await;
        match result {
            Ok(()) => Outcome::Restart,
            Err(e) => failed(e.to_string(), None),
        }
    }
}

/// The transcoders this machine can run: VP8 from H.264 with `[fallback]` enabled and
/// an H.264 decoder installed; H.264 from VP8 with the camera's encoder settings (the
/// VideoCore encoder where the board has one).
fn transcode_plan(config: &Config) -> crate::transcode::Plan {
    let settings = main_settings(config);
    let to_vp8 = config
        .fallback
        .enabled
        .then(|| pipeline::h264_decoder(&encode::has_element))
        .flatten()
        .map(|decoder| {
            let v = pipeline::Vp8Settings {
                width: config.fallback.width,
                height: config.fallback.height,
                bitrate_kbps: config.fallback.bitrate_kbps,
            };
            pipeline::h264_to_vp8(decoder, &v, pipeline::gop_frames(&settings))
        });
    let hw = if encoder_may_be_hardware(config.encoder.kind) {
        crate::capture::v4l2::hardware_encoders()
    } else {
        vec![]
    };
    let has = |e: &str| encode::has_element(e) && (e != "v4l2h264enc" || !hw.is_empty());
    let encoder = pipeline::choose(config.encoder.kind, false, &has).ok();
    let vp8dec = encode::has_element("vp8dec");
    let to_h264 = encoder
        .filter(|_| vp8dec)
        .map(|encoder| pipeline::vp8_to_h264(encoder, &settings));
    // The sub-stream only where it has a door (RTSP /sub, weak links).
    let sub = substream_wanted(config).then(|| substream_settings(config));
    let decoder = pipeline::h264_decoder(&encode::has_element);
    let sub_from_h264 = (encoder.zip(sub).zip(decoder))
        .map(|((encoder, sub), decoder)| pipeline::h264_to_sub(decoder, encoder, &sub));
    let sub_from_vp8 = (encoder.zip(sub))
        .filter(|_| vp8dec)
        .map(|(encoder, sub)| pipeline::vp8_to_sub(encoder, &sub));
    crate::transcode::Plan {
        to_vp8,
        to_h264,
        sub_from_h264,
        sub_from_vp8,
        still_from_h264: decoder.map(pipeline::h264_to_still),
        still_from_vp8: vp8dec.then(pipeline::vp8_to_still),
    }
}

/// The main stream's encoder settings: the camera's size and rate, `[encoder]`'s rest.
fn main_settings(config: &Config) -> EncodeSettings {
    EncodeSettings {
        width: config.camera.width,
        height: config.camera.height,
        fps: config.camera.fps,
        bitrate_kbps: config.encoder.bitrate_kbps,
        keyframe_interval_s: config.encoder.keyframe_interval.as_secs() as u32,
    }
}

/// The sub-stream's encoder settings (its keyframe interval is the main stream's).
/// The sub-stream is made (while someone watches it) where one of its doors is open: RTSP
/// `/sub`, or weak links moved to it.
fn substream_wanted(config: &Config) -> bool {
    config.rtsp_listen.is_some() || config.webrtc.substream_for_weak_links
}

fn substream_settings(config: &Config) -> EncodeSettings {
    let s = config.substream;
    EncodeSettings {
        width: s.width,
        height: s.height,
        fps: s.fps,
        bitrate_kbps: s.bitrate_kbps,
        keyframe_interval_s: config.encoder.keyframe_interval.as_secs() as u32,
    }
}

/// Whether the hardware encoder could be chosen (worth probing the devices for).
fn encoder_may_be_hardware(kind: crate::config::EncoderKind) -> bool {
    matches!(
        kind,
        crate::config::EncoderKind::Auto | crate::config::EncoderKind::Hardware
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_presenter_leaving_right_after_a_failed_claim_still_wakes_the_camera() {
        let (tx, mut rx) = watch::channel(Presenter::Browser);
        // The race: the browser leaves between the failed claim and the wait.
        let claimed = try_claim(&mut rx, || {
            tx.send_replace(Presenter::None);
            None::<()>
        });
        assert!(claimed.is_none());
        let (_stop_tx, mut stop) = watch::channel(false);
        let (_on_tx, mut on) = watch::channel(true);
        let woken = tokio::time::timeout(
            Duration::from_secs(1),
            next_event(
                &State::WaitingForPresenter,
                &mut stop,
                &mut on,
                &mut rx,
                tokio::time::Instant::now(),
            ),
        )
        .await;
        assert_eq!(woken.ok(), Some(Event::PresenterFree), "lost wake-up");
    }
}
