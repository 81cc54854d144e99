//! HTTP: the embedded viewer page, the signaling WebSocket, status and health.

mod login;
pub mod metrics;
pub mod onvif;
pub mod settings;
pub mod tls;

use crate::auth::Role;
use crate::control::Command;
use crate::signaling::{Signaling, protocol::MAX_MESSAGE_BYTES, session, wish};
use axum::Extension;
use axum::Router;
use axum::extract::{State, WebSocketUpgrade};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Json, Response};
use axum::routing::{get, post};
use rust_embed::RustEmbed;
use std::sync::Arc;

#[derive(RustEmbed)]
#[folder = "src/web/static/"]
struct Assets;

/// Builds the router; `signaling` carries what the handlers act on, `status` what the
/// status and metrics pages read. Routes come in three groups: open (health, login),
/// viewer (watching) and admin (presenting, control).
pub fn router(
    signaling: Arc<Signaling>,
    status: Arc<crate::status::Status>,
    snapshots: Arc<crate::snapshot::Snapshots>,
    onvif_facts: Arc<onvif::Facts>,
    settings: Arc<settings::SettingsService>,
) -> Router {
    let gate =
        |need: Role| axum::middleware::from_fn_with_state((signaling.clone(), need), login::gate);
    let viewer = Router::new()
        .route("/", get(|| page("index.html")))
        .route("/app.js", get(|| asset("app.js")))
        .route("/style.css", get(|| asset("style.css")))
        .route("/one2many", get(websocket))
        .route("/call", get(websocket))
        .route("/api/status", get(api_status))
        .route("/snapshot.jpg", get(snapshot))
        .route_layer(gate(Role::Viewer));
    // ONVIF, for NVRs and Home Assistant to find the streams: watching rights, checked
    // by the service itself (its credential is in the SOAP header).
    let onvif = Router::new()
        .route("/onvif/device_service", post(onvif_service))
        .route("/onvif/media_service", post(onvif_service));
    // WHEP: watching by HTTP, usable from pages on other origins (CORS).
    let whep = Router::new()
        .route("/whep", post(wish::post_whep).options(wish::options))
        .route(
            "/whep/{id}",
            axum::routing::patch(wish::patch_whep)
                .delete(wish::delete_whep)
                .options(wish::options),
        )
        .route_layer(gate(Role::Viewer))
        .layer(axum::middleware::from_fn(wish::cors));
    // WHIP: presenting by HTTP, guarded by its own bearer token (`whip.token`).
    let whip = Router::new()
        .route("/whip", post(wish::post_whip).options(wish::options))
        .route(
            "/whip/{id}",
            axum::routing::patch(wish::patch_whip)
                .delete(wish::delete_whip)
                .options(wish::options),
        )
        .layer(axum::middleware::from_fn(wish::cors));
    let admin = Router::new()
        .route("/presenter", get(|| page("presenter.html")))
        .route("/presenter.js", get(|| asset("presenter.js")))
        .route(
            "/api/stream/start",
            post(|s, h| stream(s, h, Command::Start)),
        )
        .route("/api/stream/stop", post(|s, h| stream(s, h, Command::Stop)))
        .route("/metrics", get(prometheus))
        .route("/settings", get(|| page("settings.html")))
        .route("/settings.js", get(|| asset("settings.js")))
        .route("/api/settings", get(settings_view).put(settings_change))
        .route_layer(gate(Role::Admin));
    Router::new()
        .merge(viewer)
        .merge(onvif)
        .merge(whep)
        .merge(whip)
        .merge(admin)
        .route("/login", get(login::form).post(login::login))
        .route("/logout", post(login::logout))
        .route("/healthz", get(|| async { "ok\n" }))
        .layer(Extension(status))
        .layer(Extension(snapshots))
        .layer(Extension(onvif_facts))
        .layer(Extension(settings))
        .with_state(signaling)
}

/// A page with its script and stylesheet inlined: one request instead of three gets
/// the page to its WebSocket sooner (the first picture is that much earlier).
async fn page(html: &'static str) -> Response {
    static PAGES: std::sync::OnceLock<std::collections::HashMap<&'static str, String>> =
        std::sync::OnceLock::new();
    let pages = PAGES.get_or_init(|| {
        let text = |name: &str| {
            Assets::get(name)
                .map(|f| String::from_utf8_lossy(&f.data).into_owned())
                .unwrap_or_default()
        };
        [
            ("index.html", "app.js"),
            ("presenter.html", "presenter.js"),
            ("settings.html", "settings.js"),
        ]
        .into_iter()
        .map(|(h, j)| (h, inline_assets(&text(h), &text("style.css"), j, &text(j))))
        .collect()
    });
    match pages.get(html) {
        Some(body) => (
            [
                (header::CONTENT_TYPE, "text/html; charset=utf-8"),
                (header::CACHE_CONTROL, "no-cache"),
            ],
            body.clone(),
        )
            .into_response(),
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

/// Replaces the page's `/style.css` link and its `/<js_name>` script tag with their contents.
pub fn inline_assets(html: &str, css: &str, js_name: &str, js: &str) -> String {
    html.replace(
        r#"<link rel="stylesheet" href="/style.css">"#,
        &format!("<style>\n{css}</style>"),
    )
    .replace(
        &format!(r#"<script src="/{js_name}"></script>"#),
        &format!("<script>\n{js}</script>"),
    )
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
                [
                    (header::CONTENT_TYPE, mime),
                    (header::CACHE_CONTROL, "no-cache"),
                ],
                file.data.into_owned(),
            )
                .into_response()
        }
        None => (StatusCode::NOT_FOUND, "not found\n").into_response(),
    }
}

async fn websocket(
    State(sig): State<Arc<Signaling>>,
    Extension(access): Extension<login::Access>,
    peer: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    headers: axum::http::HeaderMap,
    ws: WebSocketUpgrade,
) -> Response {
    if let Err(refused) = same_origin_only(&headers, &sig.allowed_origins, "WebSocket") {
        return refused;
    }
    let ip = peer.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |Extension(c)| {
        c.0.ip()
    });
    let Some(slot) = sig.open_connection(ip) else {
        return (
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "this address already holds {} signaling connections (http.max_connections_per_address)\n",
                sig.per_address_max
            ),
        )
            .into_response();
    };
    // Frames above the protocol limit are still read (up to 4x) so the client gets a
    // clear `error` message instead of a dropped connection.
    ws.max_message_size(4 * MAX_MESSAGE_BYTES)
        .max_frame_size(4 * MAX_MESSAGE_BYTES)
        .on_upgrade(move |socket| async move {
            session::run(sig, access.0, socket).await;
            drop(slot);
        })
}

/// Whether a browser page from `origin` may open the signaling WebSocket: its own pages
/// (origin host = `Host`), listed origins, and clients that send no Origin (not browsers).
/// Stops a web site the user happens to visit from driving the camera from their browser.
pub fn origin_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[String]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let origin = origin.trim().trim_end_matches('/').to_ascii_lowercase();
    let authority = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"));
    if let (Some(a), Some(h)) = (authority, host)
        && a.eq_ignore_ascii_case(h.trim())
    {
        return true;
    }
    allowed.contains(&origin)
}

/// `403` for a request from a browser page of a foreign origin (see `origin_allowed`).
fn same_origin_only(
    headers: &axum::http::HeaderMap,
    allowed: &[String],
    what: &str,
) -> Result<(), Response> {
    let text = |name| headers.get(name).and_then(|v| v.to_str().ok());
    if origin_allowed(text(header::ORIGIN), text(header::HOST), allowed) {
        return Ok(());
    }
    Err((
        StatusCode::FORBIDDEN,
        format!("cross-origin {what} refused: add the page's origin to http.allowed_origins\n"),
    )
        .into_response())
}

/// Starts or stops the camera exactly as the button does; answers with the new state.
/// Under the same Origin rule as the WebSocket: a browser sends a cross-site form or
/// fetch POST without asking, and with no password set nothing else would stop it.
async fn stream(
    State(sig): State<Arc<Signaling>>,
    headers: axum::http::HeaderMap,
    cmd: Command,
) -> Response {
    if let Err(refused) = same_origin_only(&headers, &sig.allowed_origins, "request") {
        return refused;
    }
    let on = sig.control.apply(cmd);
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(serde_json::json!({"streaming": on})),
    )
        .into_response()
}

async fn prometheus(Extension(status): Extension<Arc<crate::status::Status>>) -> Response {
    (
        [
            (
                header::CONTENT_TYPE,
                "text/plain; version=0.0.4; charset=utf-8",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        metrics::render(&status.snapshot()),
    )
        .into_response()
}

async fn settings_view(Extension(service): Extension<Arc<settings::SettingsService>>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(service.view().await),
    )
        .into_response()
}

/// `PUT /api/settings` with a JSON object of the keys to change. Same-origin only (a
/// foreign page's PUT is refused, as for start/stop), at most 16 KiB.
async fn settings_change(
    State(sig): State<Arc<Signaling>>,
    Extension(service): Extension<Arc<settings::SettingsService>>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = same_origin_only(&headers, &sig.allowed_origins, "settings change") {
        return refused;
    }
    if body.len() > crate::settings::MAX_BODY {
        return (
            StatusCode::PAYLOAD_TOO_LARGE,
            Json(serde_json::json!({"error": "at most 16 KiB of settings at once"})),
        )
            .into_response();
    }
    let changes = match serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| crate::settings::flatten(&v))
    {
        Some(m) => m,
        None => {
            return (
                StatusCode::BAD_REQUEST,
                Json(serde_json::json!({"error": "send the settings to change shaped like the settings file's sections, e.g. {\"camera\": {\"width\": 640}}"})),
            )
                .into_response();
        }
    };
    match service.change(&changes).await {
        Ok(v) => ([(header::CACHE_CONTROL, "no-store")], Json(v)).into_response(),
        Err(refused) => refused,
    }
}

async fn onvif_service(
    State(sig): State<Arc<Signaling>>,
    Extension(facts): Extension<Arc<onvif::Facts>>,
    peer: Option<Extension<axum::extract::ConnectInfo<std::net::SocketAddr>>>,
    uri: axum::http::Uri,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    let from = peer.map_or(std::net::Ipv4Addr::UNSPECIFIED.into(), |Extension(c)| {
        c.0.ip()
    });
    let uri = uri.path_and_query().map_or("/", |p| p.as_str());
    onvif::service(facts, &sig.auth, from, uri, headers, body).await
}

#[derive(serde::Deserialize)]
struct SnapshotQuery {
    width: Option<u32>,
}

/// The current picture as JPEG; `?width=` (16 to 3840) for a smaller one.
async fn snapshot(
    Extension(snapshots): Extension<Arc<crate::snapshot::Snapshots>>,
    query: Result<axum::extract::Query<SnapshotQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(axum::extract::Query(q)) = query else {
        return (
            StatusCode::BAD_REQUEST,
            "width must be a whole number of pixels\n",
        )
            .into_response();
    };
    if q.width.is_some_and(|w| !(16..=3840).contains(&w)) {
        return (StatusCode::BAD_REQUEST, "width must be from 16 to 3840\n").into_response();
    }
    match snapshots.jpeg(q.width).await {
        Ok(jpeg) => (
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            jpeg,
        )
            .into_response(),
        Err(e @ crate::snapshot::SnapshotError::NoPicture) => {
            (StatusCode::SERVICE_UNAVAILABLE, format!("{e}\n")).into_response()
        }
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

async fn api_status(Extension(status): Extension<Arc<crate::status::Status>>) -> Response {
    (
        [(header::CACHE_CONTROL, "no-store")],
        Json(status.snapshot()),
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_inlines_its_script_and_style() {
        let html = String::from_utf8(Assets::get("index.html").unwrap().data.into_owned()).unwrap();
        let page = inline_assets(&html, "body{}", "app.js", "let x = 1;");
        assert!(page.contains("<style>\nbody{}</style>"));
        assert!(page.contains("<script>\nlet x = 1;</script>"));
        assert!(!page.contains("src=\"/app.js\""), "script tag replaced");
        assert!(
            !page.contains("href=\"/style.css\""),
            "stylesheet link replaced"
        );
    }

    #[test]
    fn websocket_origins() {
        let allowed = vec!["https://tutorial.example".to_string()];
        assert!(
            origin_allowed(None, Some("cam:8080"), &[]),
            "tools send no Origin"
        );
        assert!(origin_allowed(
            Some("http://cam:8080"),
            Some("cam:8080"),
            &[]
        ));
        assert!(origin_allowed(
            Some("http://CAM:8080/"),
            Some("cam:8080"),
            &[]
        ));
        assert!(!origin_allowed(
            Some("http://evil.example"),
            Some("cam:8080"),
            &[]
        ));
        assert!(!origin_allowed(Some("null"), Some("cam:8080"), &[]));
        assert!(!origin_allowed(Some("http://cam:8080"), None, &[]));
        assert!(origin_allowed(
            Some("https://tutorial.example"),
            Some("cam"),
            &allowed
        ));
        assert!(!origin_allowed(
            Some("https://tutorial.example.evil"),
            Some("cam"),
            &allowed
        ));
    }

    #[test]
    fn the_page_has_the_elements_the_script_uses() {
        let html = String::from_utf8(Assets::get("index.html").unwrap().data.into_owned()).unwrap();
        for id in ["video", "overlay", "state", "viewers", "message"] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        assert!(html.contains("autoplay muted playsinline"));
    }

    #[test]
    fn the_presenter_page_has_its_controls() {
        let html =
            String::from_utf8(Assets::get("presenter.html").unwrap().data.into_owned()).unwrap();
        for id in [
            "video", "start", "stop", "text", "send", "viewers", "state", "audio",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "{id}");
        }
        assert!(html.contains(r#"<script src="/presenter.js"></script>"#));
    }
}
