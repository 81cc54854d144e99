//! The settings an owner changes from the camera's page (`/settings`, `GET`/`PUT
//! /api/settings`): which keys, how each change is applied, and the file they are kept
//! in. Pure apart from [`Store`], which reads and writes that file.
//!
//! Kept in `<state.dir>/settings.toml`, laid over the settings file (`edgecam.toml`) and
//! under the environment and the command line (see `config::load`); written whole or not
//! at all. A boot-partition file applied later wins for the keys it names: provisioning
//! takes them out of this file.

use crate::config::{Config, KeyError};
use serde::Serialize;
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

/// The file's name in the state directory.
pub const FILE: &str = crate::config::SETTINGS_FILE;
/// The largest `PUT /api/settings` body accepted.
pub const MAX_BODY: usize = 16 * 1024;

/// How a change takes effect.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Apply {
    /// In effect at once (bitrate, keyframe interval, viewer limit, passwords).
    Live,
    /// The camera pipeline restarts with it, as after a camera fault; viewers stay.
    Pipeline,
    /// The microphone restarts with it.
    Audio,
    /// Kept now, used from the daemon's next start (HTTPS, the name NVRs see).
    NextStart,
}

/// The kind of value a key takes, for the page's form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Text,
    Number,
    Bool,
    /// Write-only: set it, or empty to remove it; never read back.
    Password,
}

/// One key the page may change.
#[derive(Debug, Clone, Copy, Serialize)]
pub struct Field {
    pub key: &'static str,
    pub kind: Kind,
    pub apply: Apply,
    pub label: &'static str,
}

const fn f(key: &'static str, kind: Kind, apply: Apply, label: &'static str) -> Field {
    Field {
        key,
        kind,
        apply,
        label,
    }
}

/// Every key the page may change, in the order it shows them.
pub const FIELDS: &[Field] = &[
    f("camera.name", Kind::Text, Apply::NextStart, "Name"),
    f("camera.source", Kind::Text, Apply::Pipeline, "Camera"),
    f("camera.width", Kind::Number, Apply::Pipeline, "Width"),
    f("camera.height", Kind::Number, Apply::Pipeline, "Height"),
    f("camera.fps", Kind::Number, Apply::Pipeline, "Frame rate"),
    f("encoder.kind", Kind::Text, Apply::Pipeline, "Encoder"),
    f(
        "encoder.bitrate_kbps",
        Kind::Number,
        Apply::Live,
        "Bitrate (kb/s)",
    ),
    f(
        "encoder.keyframe_interval_s",
        Kind::Number,
        Apply::Live,
        "Keyframe interval (s)",
    ),
    f(
        "substream.width",
        Kind::Number,
        Apply::Pipeline,
        "Sub-stream width",
    ),
    f(
        "substream.height",
        Kind::Number,
        Apply::Pipeline,
        "Sub-stream height",
    ),
    f(
        "substream.fps",
        Kind::Number,
        Apply::Pipeline,
        "Sub-stream frame rate",
    ),
    f(
        "substream.bitrate_kbps",
        Kind::Number,
        Apply::Pipeline,
        "Sub-stream bitrate (kb/s)",
    ),
    f(
        "fallback.enabled",
        Kind::Bool,
        Apply::Pipeline,
        "VP8 for browsers without H.264",
    ),
    f("audio.source", Kind::Text, Apply::Audio, "Microphone"),
    f(
        "audio.bitrate_kbps",
        Kind::Number,
        Apply::Audio,
        "Audio bitrate (kb/s)",
    ),
    f(
        "viewers.max",
        Kind::Number,
        Apply::Live,
        "Most viewers at once",
    ),
    f(
        "auth.viewer_password",
        Kind::Password,
        Apply::Live,
        "Viewer password",
    ),
    f(
        "auth.admin_password",
        Kind::Password,
        Apply::Live,
        "Admin password",
    ),
    f("tls.enabled", Kind::Bool, Apply::NextStart, "HTTPS"),
];

fn field(key: &str) -> Option<&'static Field> {
    FIELDS.iter().find(|f| f.key == key)
}

/// The values in effect, for the page (passwords only say whether one is set).
pub fn current(c: &Config) -> Value {
    json!({
        "camera.name": c.camera_name.clone().unwrap_or_default(),
        "camera.source": c.camera.source.to_string(),
        "camera.width": c.camera.width,
        "camera.height": c.camera.height,
        "camera.fps": c.camera.fps,
        "encoder.kind": c.encoder.kind.to_string(),
        "encoder.bitrate_kbps": c.encoder.bitrate_kbps,
        "encoder.keyframe_interval_s": c.encoder.keyframe_interval.as_secs(),
        "substream.width": c.substream.width,
        "substream.height": c.substream.height,
        "substream.fps": c.substream.fps,
        "substream.bitrate_kbps": c.substream.bitrate_kbps,
        "fallback.enabled": c.fallback.enabled,
        "audio.source": c.audio.source.to_string(),
        "audio.bitrate_kbps": c.audio.bitrate_kbps,
        "viewers.max": c.viewers.max,
        "auth.viewer_password": c.auth.viewer_password_hash.is_some(),
        "auth.admin_password": c.auth.admin_password_hash.is_some(),
        "tls.enabled": c.http.tls != crate::config::TlsMode::Off,
    })
}

/// A `PUT /api/settings` body, shaped like the settings file's sections
/// (`{"camera": {"width": 640}}`), as dotted keys (`camera.width`); None if it is not
/// an object of objects.
pub fn flatten(body: &Value) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    for (section, keys) in body.as_object()? {
        for (key, value) in keys.as_object()? {
            out.insert(format!("{section}.{key}"), value.clone());
        }
    }
    Some(out)
}

/// `changes` (key → JSON value) laid onto `overlay`, the kept settings: each key must
/// be one of [`FIELDS`], not `decided` elsewhere, with a value of its kind; passwords are hashed into their
/// `_hash` keys (empty removes one). Errors name their key.
pub fn merge(
    overlay: &toml::Table,
    changes: &Map<String, Value>,
    hash: impl Fn(&str) -> Result<String, String>,
    decided: impl Fn(&str) -> Option<String>,
) -> Result<toml::Table, Vec<KeyError>> {
    let mut out = overlay.clone();
    let mut errors = Vec::new();
    let mut fail = |key: &str, message: &str| {
        errors.push(KeyError {
            key: key.into(),
            message: message.into(),
        })
    };
    for (key, value) in changes {
        let Some(field) = field(key) else {
            fail(key, "not a setting this page can change");
            continue;
        };
        if let Some(why) = decided(key) {
            fail(key, &why);
            continue;
        }
        let text = match (field.kind, value) {
            (Kind::Bool, Value::Bool(b)) => toml::Value::Boolean(*b),
            (Kind::Number, Value::Number(n)) => match n.as_i64() {
                Some(n) => toml::Value::Integer(n),
                None => {
                    fail(key, "must be a whole number");
                    continue;
                }
            },
            // Numbers typed into a form arrive as text; the validator judges them.
            (Kind::Number, Value::String(s)) => toml::Value::String(s.trim().to_string()),
            (Kind::Text, Value::String(s)) => toml::Value::String(s.clone()),
            (Kind::Password, Value::String(s)) => {
                let hash = if s.is_empty() {
                    Ok(String::new())
                } else {
                    hash(s)
                };
                match hash {
                    Ok(h) => toml::Value::String(h),
                    Err(e) => {
                        fail(key, &e);
                        continue;
                    }
                }
            }
            _ => {
                fail(key, "has the wrong kind of value");
                continue;
            }
        };
        let (section, name) = key.split_once('.').unwrap_or((key, ""));
        let name = if field.kind == Kind::Password {
            format!("{name}_hash")
        } else {
            name.to_string()
        };
        let table = out
            .entry(section.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if let toml::Value::Table(t) = table {
            t.insert(name, text);
        }
    }
    if errors.is_empty() {
        Ok(out)
    } else {
        Err(errors)
    }
}

/// Where a key is decided above the page's settings, which then cannot change it: the
/// environment variable or command-line option that sets it.
pub fn decided_elsewhere(layers: &crate::config::Layers, key: &str) -> Option<String> {
    let cli = match key {
        "camera.source" => layers.overrides.source.as_ref().map(|_| "--source"),
        "http.listen" => layers.overrides.listen.as_ref().map(|_| "--listen"),
        _ => None,
    };
    if let Some(flag) = cli {
        return Some(format!(
            "set by {flag} on the command line, which wins over this page"
        ));
    }
    let var = format!(
        "EDGECAM_{}",
        key.to_ascii_uppercase().replacen('.', "__", 1)
    );
    let set = match &layers.env {
        Some(env) => env.contains_key(&var),
        None => std::env::var_os(&var).is_some(),
    };
    set.then(|| format!("set by the environment ({var}), which wins over this page"))
}

/// How the change from `old` to `new` is applied: the most a key that changed needs
/// (`None`: nothing changed).
pub fn needs(old: &Config, new: &Config) -> Option<Apply> {
    let (a, b) = (current(old), current(new));
    let mut need = None;
    for f in FIELDS {
        let changed = if f.kind == Kind::Password {
            let hash = |c: &Config| match f.key {
                "auth.viewer_password" => c.auth.viewer_password_hash.clone(),
                _ => c.auth.admin_password_hash.clone(),
            };
            hash(old) != hash(new)
        } else {
            a[f.key] != b[f.key]
        };
        if changed {
            need = need.max(Some(f.apply));
        }
    }
    need
}

/// Whether the camera pipeline must be built again to go from `old` to `new` (its
/// source, size, rate, encoder or extra streams changed); the bitrate and the keyframe
/// interval are taken by a running one.
pub fn pipeline_changed(old: &Config, new: &Config) -> bool {
    old.camera != new.camera
        || old.encoder.kind != new.encoder.kind
        || old.fallback != new.fallback
        || old.substream != new.substream
}

/// The keys a settings file sets (`section.key`), for provisioning to take out of the
/// page's settings the ones a boot-partition file now decides.
pub fn keys_of(table: &toml::Table) -> Vec<String> {
    table
        .iter()
        .flat_map(|(section, v)| match v {
            toml::Value::Table(t) => t.keys().map(|k| format!("{section}.{k}")).collect(),
            _ => vec![section.clone()],
        })
        .collect()
}

/// `overlay` without `keys` (and without sections left empty).
pub fn without(overlay: &toml::Table, keys: &[String]) -> toml::Table {
    let mut out = overlay.clone();
    for key in keys {
        if let Some((section, name)) = key.split_once('.')
            && let Some(toml::Value::Table(t)) = out.get_mut(section)
        {
            t.remove(name);
        }
    }
    out.retain(|_, v| !matches!(v, toml::Value::Table(t) if t.is_empty()));
    out
}

/// The kept settings file of a state directory.
#[derive(Debug, Clone)]
pub struct Store {
    pub path: PathBuf,
}

impl Store {
    pub fn new(state_dir: &Path) -> Self {
        Self {
            path: state_dir.join(FILE),
        }
    }

    /// What is kept (empty when nothing is, or when the file cannot be read as TOML,
    /// which the log says).
    pub fn read(&self) -> toml::Table {
        match std::fs::read_to_string(&self.path) {
            Ok(text) => text.parse().unwrap_or_else(|e| {
                tracing::warn!(path = %self.path.display(), error = %e, "kept settings unreadable; ignored");
                toml::Table::new()
            }),
            Err(_) => toml::Table::new(),
        }
    }

    /// Replaces the file with `table`, whole or not at all (a power cut leaves the old
    /// or the new one).
    pub fn write(&self, table: &toml::Table) -> std::io::Result<()> {
        let text = format!(
            "# Written by edgecam's settings page; laid over edgecam.toml.\n{}",
            toml::to_string(table).unwrap_or_default()
        );
        crate::atomic_file::write(&self.path, text.as_bytes(), 0o640)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn changes(v: Value) -> Map<String, Value> {
        v.as_object().unwrap().clone()
    }

    fn no_hash(p: &str) -> Result<String, String> {
        Ok(format!("hash-of-{p}"))
    }

    #[test]
    fn changes_become_keys_of_their_kind() {
        let merged = merge(
            &toml::Table::new(),
            &changes(json!({"camera.width": 640, "fallback.enabled": false,
                            "camera.source": "test", "encoder.bitrate_kbps": "900",
                            "auth.viewer_password": "longenough1"})),
            no_hash,
            |_| None,
        )
        .unwrap();
        assert_eq!(merged["camera"]["width"].as_integer(), Some(640));
        assert_eq!(merged["camera"]["source"].as_str(), Some("test"));
        assert_eq!(merged["fallback"]["enabled"].as_bool(), Some(false));
        assert_eq!(merged["encoder"]["bitrate_kbps"].as_str(), Some("900"));
        assert_eq!(
            merged["auth"]["viewer_password_hash"].as_str(),
            Some("hash-of-longenough1")
        );
        // An empty password removes it.
        let removed = merge(
            &merged,
            &changes(json!({"auth.viewer_password": ""})),
            no_hash,
            |_| None,
        )
        .unwrap();
        assert_eq!(removed["auth"]["viewer_password_hash"].as_str(), Some(""));
    }

    #[test]
    fn a_body_is_shaped_like_the_file() {
        let flat =
            flatten(&json!({"camera": {"width": 640, "fps": 10}, "audio": {"source": "test"}}))
                .unwrap();
        let keys: Vec<&String> = flat.keys().collect();
        assert_eq!(keys, ["audio.source", "camera.fps", "camera.width"]);
        assert_eq!(flatten(&json!({"camera.width": 640})), None);
        assert_eq!(flatten(&json!([1])), None);
        assert_eq!(flatten(&json!({})), Some(Map::new()));
    }

    #[test]
    fn unknown_keys_and_wrong_kinds_are_named() {
        let errors = merge(
            &toml::Table::new(),
            &changes(
                json!({"state.dir": "/tmp", "camera.width": true, "tls.enabled": "yes",
                            "camera.fps": 1.5, "auth.admin_password": "short"}),
            ),
            |_| Err("a password has 8 to 128 characters".into()),
            |k| (k == "camera.width").then(|| "set by the environment".into()),
        )
        .unwrap_err();
        let keys: Vec<&str> = errors.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            [
                "auth.admin_password",
                "camera.fps",
                "camera.width",
                "state.dir",
                "tls.enabled"
            ]
        );
        assert!(errors[0].message.contains("8 to 128"));
        assert_eq!(errors[2].message, "set by the environment");
        let mut layers = crate::config::Layers::default();
        layers.env = Some([("EDGECAM_CAMERA__FPS".to_string(), "5".to_string())].into());
        assert!(
            decided_elsewhere(&layers, "camera.fps")
                .is_some_and(|w| w.contains("EDGECAM_CAMERA__FPS"))
        );
        assert_eq!(decided_elsewhere(&layers, "camera.width"), None);
        layers.overrides.source = Some("test".into());
        assert!(
            decided_elsewhere(&layers, "camera.source").is_some_and(|w| w.contains("--source"))
        );
    }

    #[test]
    fn what_a_change_needs() {
        let base = crate::config::load_str("").unwrap();
        let with = |text: &str| crate::config::load_str(text).unwrap();
        assert_eq!(needs(&base, &base), None);
        assert_eq!(
            needs(&base, &with("[encoder]\nbitrate_kbps = 900")),
            Some(Apply::Live)
        );
        assert_eq!(
            needs(&base, &with("[encoder]\nkeyframe_interval_s = 5")),
            Some(Apply::Live)
        );
        assert_eq!(
            needs(&base, &with("[camera]\nwidth = 640")),
            Some(Apply::Pipeline)
        );
        assert_eq!(
            needs(&base, &with("[camera]\nwidth = 640\n[tls]\nenabled = true")),
            Some(Apply::NextStart)
        );
        assert_eq!(
            needs(&base, &with("[audio]\nsource = \"test\"")),
            Some(Apply::Audio)
        );
    }

    #[test]
    fn a_boot_file_takes_its_keys_out_of_the_kept_settings() {
        let kept: toml::Table = "[camera]\nwidth = 640\nfps = 10\n[encoder]\nbitrate_kbps = 900\n"
            .parse()
            .unwrap();
        let boot: toml::Table = "[camera]\nfps = 25\n[encoder]\nbitrate_kbps = 3000\n"
            .parse()
            .unwrap();
        let left = without(&kept, &keys_of(&boot));
        assert_eq!(toml::to_string(&left).unwrap(), "[camera]\nwidth = 640\n");
    }

    #[test]
    fn the_store_is_written_whole_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::new(dir.path());
        assert!(store.read().is_empty());
        let t: toml::Table = "[camera]\nwidth = 640\n".parse().unwrap();
        store.write(&t).unwrap();
        assert_eq!(store.read(), t);
        std::fs::write(&store.path, "not = [toml").unwrap();
        assert!(
            store.read().is_empty(),
            "a broken file is ignored, not fatal"
        );
    }
}
