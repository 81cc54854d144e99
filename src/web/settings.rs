//! `/settings` and `/api/settings`: the owner changes the camera from its page. A change
//! is checked by the config validator on top of the same layers the daemon started
//! with, kept (atomically) in the state directory, and applied: live where the running
//! stages take it, by a new camera pipeline (viewers stay) or a new microphone run, or
//! from the next start. A camera that will not start with new settings gets the old
//! ones back, and the page says so.

use crate::admission::Admission;
use crate::config::{Config, ConfigError};
use crate::settings::{self, Apply, Store};
use crate::supervisor::{CameraState, Pipeline};
use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Map, Value, json};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::watch;

/// How long a new camera pipeline gets to show its first frame before its settings are
/// taken back.
const SETTLE: Duration = Duration::from_secs(20);

pub struct SettingsService {
    /// The settings in effect; every stage that takes changes watches it.
    pub settings: watch::Sender<Config>,
    pub admission: Arc<Admission>,
    pub auth: Arc<crate::auth::Auth>,
    pub store: Store,
    pub camera: watch::Receiver<CameraState>,
    /// What became of the last change, for the page.
    last: Mutex<Option<Value>>,
    /// One change at a time.
    busy: tokio::sync::Mutex<()>,
}

impl SettingsService {
    pub fn new(
        settings: watch::Sender<Config>,
        admission: Arc<Admission>,
        auth: Arc<crate::auth::Auth>,
        camera: watch::Receiver<CameraState>,
    ) -> Arc<Self> {
        let store = Store::new(&settings.borrow().state.dir);
        Arc::new(Self {
            settings,
            admission,
            auth,
            store,
            camera,
            last: Mutex::new(None),
            busy: tokio::sync::Mutex::new(()),
        })
    }

    fn remember(&self, v: Value) {
        *self.last.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
    }

    /// What the page shows: the fields, the values in effect, the cameras found (with
    /// their sizes and rates), and what became of the last change.
    pub async fn view(&self) -> Value {
        let config = self.settings.borrow().clone();
        let devices = tokio::task::spawn_blocking(crate::capture::v4l2::list_devices)
            .await
            .unwrap_or_default();
        let cameras: Vec<Value> = devices
            .iter()
            .map(|d| {
                let names = crate::capture::v4l2::stable_names(&d.path);
                let best = names.first().unwrap_or(&d.path);
                json!({
                    "source": format!("v4l2:{}", best.display()),
                    "name": d.name,
                    "sizes": d.formats.iter().flat_map(|f| f.sizes.iter().map(move |s| json!({
                        "format": f.fourcc, "width": s.width, "height": s.height, "fps": s.fps,
                    }))).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "fields": settings::FIELDS,
            "values": settings::current(&config),
            "cameras": cameras,
            "kept_in": self.store.path.display().to_string(),
            "last_change": self.last.lock().unwrap_or_else(|p| p.into_inner()).clone(),
        })
    }

    /// Checks, keeps and applies `changes`. Errors name their keys.
    pub async fn change(self: &Arc<Self>, changes: &Map<String, Value>) -> Result<Value, Response> {
        let _one = self.busy.lock().await;
        let old = self.settings.borrow().clone();
        let kept = self.store.read();
        let hash = |p: &str| {
            crate::auth::check_password_text(p)
                .and_then(|()| crate::auth::hash_password(p))
                .map_err(|e| e.to_string())
        };
        let layers = old.layers.clone();
        let decided = |key: &str| settings::decided_elsewhere(&layers, key);
        let merged =
            settings::merge(&kept, changes, hash, decided).map_err(|errors| refused(&errors))?;
        let new = match crate::config::load_layers(&old.layers, Some(&merged)) {
            Ok(c) => c,
            Err(ConfigError::Invalid(errors)) => {
                // Only the keys this change touched are the page's to show; others
                // (from the file or the environment) would already have failed at start.
                return Err(refused(&errors));
            }
            Err(e) => return Err(refused_text(&e.to_string())),
        };
        let need = settings::needs(&old, &new);
        if need.is_none() {
            return Ok(json!({"applied": null, "values": settings::current(&old)}));
        }
        if let Err(e) = self.store.write(&merged) {
            return Err((
                StatusCode::INTERNAL_SERVER_ERROR,
                Json(json!({"error": format!("cannot keep the settings in {}: {e}", self.store.path.display())})),
            )
                .into_response());
        }
        self.admission.set_viewers_max(new.viewers.max);
        self.auth.set_config(new.auth.clone());
        let run_before = self.camera.borrow().run.clone();
        self.settings.send_replace(new.clone());
        let pipeline = settings::pipeline_changed(&old, &new);
        let outcome = json!({
            "applied": need,
            "values": settings::current(&new),
            "next_start": need == Some(Apply::NextStart),
        });
        self.remember(json!({"ok": true, "applied": need}));
        tracing::info!(applied = ?need, keys = ?changes.keys().collect::<Vec<_>>(), "settings changed");
        if pipeline {
            // Judged in the background: the answer does not wait for the camera.
            let this = self.clone();
            tokio::spawn(async move { this.judge(run_before, kept, old).await });
        }
        Ok(outcome)
    }

    /// Waits for the camera's next run: if it fails before its first frame, the previous
    /// settings come back (kept and in effect) and the page is told why.
    async fn judge(
        &self,
        run_before: Arc<crate::encode::RunStats>,
        kept_before: toml::Table,
        old: Config,
    ) {
        let mut camera = self.camera.clone();
        // Only what happens from now on counts (an error from before the change is the
        // old settings' fault).
        camera.borrow_and_update();
        let verdict = tokio::time::timeout(SETTLE, async {
            while camera.changed().await.is_ok() {
                let s = camera.borrow_and_update();
                match &s.pipeline {
                    Pipeline::Error(reason) => return Some(reason.clone()),
                    Pipeline::Running if !Arc::ptr_eq(&s.run, &run_before) => return None,
                    _ => {}
                }
            }
            None
        })
        .await;
        let Ok(Some(reason)) = verdict else {
            return;
        };
        tracing::warn!(
            "the camera did not start with the new settings ({reason}); the previous ones are back"
        );
        let _one = self.busy.lock().await;
        if let Err(e) = self.store.write(&kept_before) {
            tracing::error!("cannot put the previous settings back: {e}");
        }
        self.admission.set_viewers_max(old.viewers.max);
        self.auth.set_config(old.auth.clone());
        self.settings.send_replace(old);
        self.remember(json!({
            "ok": false,
            "message": format!("The camera did not start with those settings ({reason}). The previous settings are back."),
        }));
    }
}

fn refused(errors: &[crate::config::KeyError]) -> Response {
    let map: Map<String, Value> = errors
        .iter()
        .map(|e| (e.key.clone(), Value::String(e.message.clone())))
        .collect();
    (StatusCode::BAD_REQUEST, Json(json!({"errors": map}))).into_response()
}

fn refused_text(message: &str) -> Response {
    (StatusCode::BAD_REQUEST, Json(json!({"error": message}))).into_response()
}
