//! Wiring and supervision: the camera pipeline is kept running (restarted with backoff
//! when it fails) while the HTTP server, signaling and peers live on independently.

use crate::capture::{Source, Want};
use crate::config::Config;
use crate::encode::{self, EncodeSettings, RunStats, pipeline};
use crate::fanout::Hub;
use crate::media::KeyframeRequester;
use crate::peer::PeerFactory;
use crate::signaling::Signaling;
use crate::status::{Pipeline, Presenter, Status};
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

/// A run that lasted this long resets the backoff.
const HEALTHY_RUN: Duration = Duration::from_secs(30);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// No frame for this long means the camera or encoder is stuck.
const STALL_AFTER: Duration = Duration::from_secs(5);

/// Serves until `shutdown` resolves. Binding is the caller's job, so tests can use port 0.
pub async fn serve(
    config: Config,
    listener: TcpListener,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> anyhow::Result<()> {
    encode::runner::init()?;
    let (requester, keyframes) = KeyframeRequester::channel();
    let hub = Hub::new(requester);
    let status = Status::new(hub.clone(), config.viewers.max);
    let (stop_tx, stop_rx) = watch::channel(false);

    let camera = tokio::spawn(supervise_camera(config.clone(), hub.clone(), keyframes, status.clone(), stop_rx.clone()));
    let signaling = Arc::new(Signaling {
        hub,
        peers: PeerFactory::new(config.webrtc.clone()),
        status: status.clone(),
        closing: stop_rx.clone(),
    });
    let router = crate::web::router(signaling);
    let addr = listener.local_addr()?;
    tracing::info!("serving on http://{addr}/");

    axum::serve(listener, router)
        .with_graceful_shutdown(async move {
            shutdown.await;
            // Tell viewers the presenter is gone so their pages show offline, then stop media.
            status.set_presenter(Presenter::None);
            let _ = stop_tx.send(true);
        })
        .await?;
    let _ = tokio::time::timeout(Duration::from_secs(2), camera).await;
    Ok(())
}

/// Keeps the camera pipeline running for as long as the daemon lives.
async fn supervise_camera(
    config: Config,
    hub: Arc<Hub>,
    mut keyframes: mpsc::Receiver<()>,
    status: Arc<Status>,
    mut stop: watch::Receiver<bool>,
) {
    let want = Want { width: config.camera.width, height: config.camera.height, fps: config.camera.fps };
    let settings = EncodeSettings {
        width: want.width,
        height: want.height,
        fps: want.fps,
        bitrate_kbps: config.encoder.bitrate_kbps,
        keyframe_interval_s: config.encoder.keyframe_interval.as_secs() as u32,
    };
    // The camera presents from the start: viewers may join while it is still opening.
    status.set_presenter(Presenter::Camera);
    let mut backoff = Duration::from_secs(1);
    loop {
        if *stop.borrow() {
            break;
        }
        status.set_pipeline(Pipeline::Starting, 0);
        let spec = config.camera.source.clone();
        let resolved = tokio::task::spawn_blocking(move || {
            Source::resolve(&spec, want, &encode::has_element)
        })
        .await;
        let started = Instant::now();
        let result: Result<(), String> = match resolved {
            Err(e) => Err(format!("camera probe failed: {e}")),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(source)) => match pipeline::choose(config.encoder.kind, source.delivers_h264(), &encode::has_element) {
                Err(e) => Err(e.to_string()),
                Ok(encoder) => {
                    let desc = pipeline::describe(&source.fragment(want), encoder, &settings);
                    tracing::info!(source = %source.describe(), encoder = encoder.name(), "starting pipeline");
                    tracing::debug!(pipeline = %desc);
                    let stats = Arc::new(RunStats::default());
                    status.set_source(source.describe(), encoder.name().into(), stats.clone());
                    let sink_hub = hub.clone();
                    let sink_status = status.clone();
                    let first_frame = std::sync::Once::new();
                    let sink = Arc::new(move |frame| {
                        first_frame.call_once(|| sink_status.set_pipeline(Pipeline::Running, 0));
                        sink_hub.publish(frame);
                    });
                    let mut stop_run = stop.clone();
                    let stop_fut = async move {
                        let _ = stop_run.wait_for(|s| *s).await;
                    };
                    encode::run(&desc, sink, &mut keyframes, stats, STALL_AFTER, stop_fut)
                        .await
                        .map_err(|e| e.to_string())
                }
            },
        };
        if *stop.borrow() {
            break;
        }
        if started.elapsed() >= HEALTHY_RUN {
            backoff = Duration::from_secs(1);
        }
        let reason = result.err().unwrap_or_else(|| "pipeline ended".into());
        status.pipeline_restarts.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::warn!("camera pipeline: {reason}; restarting in {}s", backoff.as_secs());
        status.set_pipeline(Pipeline::Error(reason), backoff.as_secs());
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = stop.wait_for(|s| *s) => break,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
    status.set_pipeline(Pipeline::Stopped, 0);
}
