//! HTTP: the embedded viewer page, the signaling WebSocket, status and health.

use crate::signaling::{Signaling, protocol::MAX_MESSAGE_BYTES, session};
use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::get;
use rust_embed::RustEmbed;
use std::sync::Arc;

#[derive(RustEmbed)]
#[folder = "src/web/static/"]
struct Assets;

/// Builds the router; `signaling` carries everything handlers need.
pub fn router(signaling: Arc<Signaling>) -> Router {
    Router::new()
        .route("/", get(|| asset("index.html")))
        .route("/app.js", get(|| asset("app.js")))
        .route("/style.css", get(|| asset("style.css")))
        .route("/one2many", get(websocket))
        .route("/call", get(websocket))
        .route("/api/status", get(status))
        .route("/healthz", get(|| async { "ok\n" }))
        .with_state(signaling)
}

async fn asset(name: &'static str) -> Response {
    match Assets::get(name) {
        Some(file) => {
            let mime = match name.rsplit('.').next() {
                Some("html") => "text/html; charset=utf-8",
                Some("js") => "text/javascript; charset=utf-8",
                Some("css") => "text/css; charset=utf-8",
                _ => "application/octet-stream",
            };
            (
                [(header::CONTENT_TYPE, mime), (header::CACHE_CONTROL, "no-cache")],
                file.data.into_owned(),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

async fn websocket(State(sig): State<Arc<Signaling>>, ws: WebSocketUpgrade) -> Response {
    // Frames above the protocol limit are still read (up to 4x) so the client gets a
    // clear `error` message instead of a dropped connection.
    ws.max_message_size(4 * MAX_MESSAGE_BYTES)
        .max_frame_size(4 * MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| session::run(sig, socket))
}

async fn status(State(sig): State<Arc<Signaling>>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(sig.status.snapshot()),
    )
        .into_response()
}
