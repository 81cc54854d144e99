//! Loading: each file parsed once (toml), the layers merged by the `config` crate, then
//! every key validated by one reader that records what it read.

use super::{
    ButtonPin, CameraConfig, Config, ConfigError, EncoderConfig, FallbackConfig, GpioBackend,
    GpioConfig, HttpConfig, KeyError, Layers, LedPin, LongPressAction, StateConfig, TlsMode,
    ViewersConfig, WebRtcConfig,
};
use config::{Environment, Map, Value, ValueKind};
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Where the daemon looks for its configuration when `--config` is not given.
pub const CONFIG_PATH: &str = "/etc/edgecam/edgecam.toml";

/// The settings page's settings, in the state directory (see the `settings` module).
pub const SETTINGS_FILE: &str = "settings.toml";

/// The shipped, fully commented example; its values are also the built-in defaults.
pub const EXAMPLE: &str = include_str!("edgecam.example.toml");

/// Command-line overrides, applied last.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Overrides {
    pub source: Option<String>,
    pub listen: Option<String>,
}

/// Loads defaults, then `file` (if given), then the settings page's kept settings
/// (`<state.dir>/settings.toml`, when there are any), then `env` (the process
/// environment when `None`), then `overrides`, and validates the result. Kept settings
/// that are not valid on top of the rest are logged and left out, so a camera never
/// stops starting because of them.
pub fn load(
    file: Option<&Path>,
    env: Option<HashMap<String, String>>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let layers = Layers {
        file: file.map(Path::to_path_buf),
        env,
        overrides: overrides.clone(),
    };
    let base = load_layers(&layers, None)?;
    let path = base.state.dir.join(SETTINGS_FILE);
    let mut config = match std::fs::read_to_string(&path) {
        Err(_) => base,
        Ok(text) => match text
            .parse::<toml::Table>()
            .map_err(|e| ConfigError::Syntax {
                path: path.display().to_string(),
                reason: e.to_string(),
            })
            .and_then(|kept| load_layers(&layers, Some(&kept)))
        {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(path = %path.display(), "the settings page's settings are left out: {e}");
                base
            }
        },
    };
    config.layers = layers;
    Ok(config)
}

/// The layers of `layers` with `kept` as the settings page's settings: what the page
/// checks a change with before keeping it.
pub fn load_layers(layers: &Layers, kept: Option<&toml::Table>) -> Result<Config, ConfigError> {
    let text = match &layers.file {
        Some(path) => Some(
            std::fs::read_to_string(path).map_err(|e| ConfigError::Read {
                path: path.display().to_string(),
                reason: e.to_string(),
            })?,
        ),
        None => None,
    };
    let named = layers.file.as_ref().map(|p| p.display().to_string());
    let kept = kept.map(|t| toml::to_string(t).unwrap_or_default());
    let mut config = load_text(
        text.as_deref().zip(named.as_deref()),
        kept.as_deref(),
        layers.env.clone(),
        &layers.overrides,
    )?;
    config.layers = layers.clone();
    Ok(config)
}

/// Validates `text` as a config file on top of the defaults, without the environment
/// (what the config fuzz target drives; `load_file_only` without the file system).
pub fn load_str(text: &str) -> Result<Config, ConfigError> {
    load_text(
        Some((text, "(text)")),
        None,
        Some(HashMap::new()),
        &Overrides::default(),
    )
}

/// `load` once the file (its text and the name errors use) has been read.
fn load_text(
    file: Option<(&str, &str)>,
    kept: Option<&str>,
    env: Option<HashMap<String, String>>,
    overrides: &Overrides,
) -> Result<Config, ConfigError> {
    let mut files = vec![(EXAMPLE, "(defaults)")];
    files.extend(file);
    files.extend(kept.map(|k| (k, "(the settings page's settings)")));
    let mut builder = files_layered(&files)?;
    // Values stay text (the reader parses numbers and booleans itself): the crate's own
    // parsing would turn a token like "0000123456789012" into the number 123456789012.
    // List keys are split on ',' by the reader.
    let mut environment = Environment::with_prefix("EDGECAM")
        .prefix_separator("_")
        .separator("__");
    if let Some(vars) = env {
        environment = environment.source(Some(vars.into_iter().collect()));
    }
    builder = builder.add_source(environment);
    // set_override only fails on an unparsable key path; ours are literals.
    if let Some(source) = &overrides.source {
        builder = builder
            .set_override("camera.source", source.as_str())
            .map_err(|e| invalid("camera.source", e.to_string()))?;
    }
    if let Some(listen) = &overrides.listen {
        builder = builder
            .set_override("http.listen", listen.as_str())
            .map_err(|e| invalid("http.listen", e.to_string()))?;
    }
    let merged = builder.build().map_err(|e| ConfigError::Syntax {
        path: file.map_or("(defaults)".into(), |(_, p)| p.to_string()),
        reason: e.to_string(),
    })?;
    let table = merged
        .try_deserialize::<Map<String, Value>>()
        .map_err(|e| ConfigError::Syntax {
            path: "(merged)".into(),
            reason: e.to_string(),
        })?;
    validate(&table)
}

/// The files laid over each other in order (tables merge key by key, any other value
/// replaces), each checked first so a syntax error names its file.
fn files_layered(
    files: &[(&str, &str)],
) -> Result<config::ConfigBuilder<config::builder::DefaultState>, ConfigError> {
    let mut builder = config::Config::builder();
    for (text, path) in files {
        builder = builder.add_source(TomlFile::parse(text, path)?);
    }
    Ok(builder)
}

/// Settings files (text, name for errors) laid over each other exactly as the daemon
/// lays its file over the defaults: the one layering path, which provisioning uses to
/// lay a boot-partition file onto the device's settings.
pub fn layer(files: &[(&str, &str)]) -> Result<toml::Table, ConfigError> {
    files_layered(files)?
        .build()
        .and_then(|merged| merged.try_deserialize::<toml::Table>())
        .map_err(|e| ConfigError::Syntax {
            path: "(layered settings)".into(),
            reason: e.to_string(),
        })
}

/// Loads exactly one file on top of the defaults, ignoring the environment and the
/// settings page's settings (what `edgecam check-config FILE` judges).
pub fn load_file_only(file: &Path) -> Result<Config, ConfigError> {
    let layers = Layers {
        file: Some(file.to_path_buf()),
        env: Some(HashMap::new()),
        overrides: Overrides::default(),
    };
    load_layers(&layers, None)
}

fn invalid(key: &str, message: String) -> ConfigError {
    ConfigError::Invalid(vec![KeyError {
        key: key.into(),
        message,
    }])
}

/// A settings file parsed once (by the toml crate, so a syntax error names its file and
/// line) and handed to the config crate as one of its layers.
#[derive(Debug, Clone)]
struct TomlFile {
    name: String,
    table: toml::Table,
}

impl TomlFile {
    fn parse(text: &str, name: &str) -> Result<Self, ConfigError> {
        let table = text
            .parse::<toml::Table>()
            .map_err(|e| ConfigError::Syntax {
                path: name.to_string(),
                reason: e.to_string(),
            })?;
        Ok(Self {
            name: name.to_string(),
            table,
        })
    }

    fn value(&self, v: &toml::Value) -> Value {
        let origin = Some(&self.name);
        match v {
            toml::Value::String(s) => Value::new(origin, s.as_str()),
            toml::Value::Integer(n) => Value::new(origin, *n),
            toml::Value::Float(f) => Value::new(origin, *f),
            toml::Value::Boolean(b) => Value::new(origin, *b),
            toml::Value::Datetime(d) => Value::new(origin, d.to_string()),
            toml::Value::Array(items) => Value::new(
                origin,
                items.iter().map(|i| self.value(i)).collect::<Vec<_>>(),
            ),
            toml::Value::Table(t) => Value::new(origin, self.map(t)),
        }
    }

    fn map(&self, t: &toml::Table) -> Map<String, Value> {
        t.iter().map(|(k, v)| (k.clone(), self.value(v))).collect()
    }
}

impl config::Source for TomlFile {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<Map<String, Value>, config::ConfigError> {
        Ok(self.map(&self.table))
    }
}

/// Reads typed values out of the merged table, collecting every problem, and records
/// which keys it read: whatever else the table holds is a key this version does not
/// know (a typo, reported instead of ignored), with no second list to keep in step.
struct Reader<'a> {
    table: &'a Map<String, Value>,
    errors: Vec<KeyError>,
    read: std::collections::HashSet<String>,
}

impl<'a> Reader<'a> {
    fn raw(&mut self, key: &str) -> Option<&'a Value> {
        self.read.insert(key.to_owned());
        let table = self.table;
        let (section, name) = key.split_once('.')?;
        match &table.get(section)?.kind {
            ValueKind::Table(t) => t.get(name),
            _ => None,
        }
    }

    fn fail(&mut self, key: &str, message: String) {
        self.errors.push(KeyError {
            key: key.into(),
            message,
        });
    }

    /// A scalar rendered as text (numbers from env arrive as strings and vice versa).
    fn text(&mut self, key: &str) -> Option<String> {
        match self.raw(key).map(|v| &v.kind) {
            Some(ValueKind::String(s)) => Some(s.clone()),
            Some(ValueKind::I64(n)) => Some(n.to_string()),
            Some(ValueKind::U64(n)) => Some(n.to_string()),
            Some(ValueKind::I128(n)) => Some(n.to_string()),
            Some(ValueKind::U128(n)) => Some(n.to_string()),
            Some(ValueKind::Float(n)) => Some(n.to_string()),
            Some(ValueKind::Boolean(b)) => Some(b.to_string()),
            Some(ValueKind::Nil) | None => {
                self.fail(key, "missing value".into());
                None
            }
            Some(ValueKind::Table(_)) | Some(ValueKind::Array(_)) => {
                self.fail(key, "expected a single value, found a table or list".into());
                None
            }
        }
    }

    fn parse<T: FromStr<Err = String>>(&mut self, key: &str) -> Option<T> {
        let text = self.text(key)?;
        match text.parse() {
            Ok(v) => Some(v),
            Err(msg) => {
                self.fail(key, msg);
                None
            }
        }
    }

    fn number(&mut self, key: &str, min: u64, max: u64) -> Option<u64> {
        let text = self.text(key)?;
        match text.trim().parse::<u64>() {
            Ok(n) if (min..=max).contains(&n) => Some(n),
            _ => {
                self.fail(
                    key,
                    format!("{text:?} is not a whole number from {min} to {max}"),
                );
                None
            }
        }
    }

    fn boolean(&mut self, key: &str) -> Option<bool> {
        let text = self.text(key)?;
        match text.trim() {
            "true" => Some(true),
            "false" => Some(false),
            _ => {
                self.fail(key, format!("{text:?} is not true or false"));
                None
            }
        }
    }

    /// A pin number 0..=max (BCM numbers on the header), or -1 for "not connected".
    fn pin(&mut self, key: &str, max: u8) -> Option<Option<u8>> {
        let text = self.text(key)?;
        match text.trim().parse::<i64>() {
            Ok(-1) => Some(None),
            Ok(n) if (0..=i64::from(max)).contains(&n) => Some(Some(n as u8)),
            _ => {
                let what = if max == 27 {
                    "a BCM pin number (0 to 27"
                } else {
                    "a line of gpio.chip (0 to 255"
                };
                self.fail(key, format!("{text:?} is not {what}, or -1 for none)"));
                None
            }
        }
    }

    /// A time in seconds, whole or decimal, from min to max.
    fn seconds(&mut self, key: &str, min: f64, max: f64) -> Option<Duration> {
        let text = self.text(key)?;
        match text.trim().parse::<f64>() {
            Ok(s) if s.is_finite() && (min..=max).contains(&s) => Some(Duration::from_secs_f64(s)),
            _ => {
                self.fail(
                    key,
                    format!("{text:?} is not a number of seconds from {min} to {max}"),
                );
                None
            }
        }
    }

    fn choice<T: Copy>(&mut self, key: &str, options: &[(&str, T)]) -> Option<T> {
        let text = self.text(key)?;
        match options.iter().find(|(name, _)| *name == text.trim()) {
            Some((_, v)) => Some(*v),
            None => {
                let names: Vec<&str> = options.iter().map(|(n, _)| *n).collect();
                self.fail(key, format!("{text:?} is not one of {}", names.join(", ")));
                None
            }
        }
    }

    fn list(&mut self, key: &str) -> Vec<String> {
        match self.raw(key).map(|v| v.kind.clone()) {
            Some(ValueKind::Array(items)) => {
                let mut out = Vec::new();
                for item in items {
                    match item.kind {
                        ValueKind::String(s) if !s.trim().is_empty() => out.push(s.trim().into()),
                        ValueKind::String(_) => {}
                        other => {
                            self.fail(key, format!("list items must be strings, found {other}"))
                        }
                    }
                }
                out
            }
            // An environment variable (or `key = "a,b"`): comma-separated; empty is none.
            Some(ValueKind::String(s)) => s
                .split(',')
                .map(str::trim)
                .filter(|item| !item.is_empty())
                .map(String::from)
                .collect(),
            Some(ValueKind::Nil) | None => Vec::new(),
            Some(other) => {
                self.fail(key, format!("expected a list of strings, found {other}"));
                Vec::new()
            }
        }
    }

    fn ips(&mut self, key: &str) -> Vec<std::net::IpAddr> {
        let mut out = Vec::new();
        for item in self.list(key) {
            match item.parse() {
                Ok(ip) => out.push(ip),
                Err(_) => self.fail(key, format!("{item:?} is not an IP address")),
            }
        }
        out
    }
}

/// Every key of `table` that is not in `read`.
fn unknown_keys(
    table: &Map<String, Value>,
    read: &std::collections::HashSet<String>,
) -> Vec<KeyError> {
    let mut errors = Vec::new();
    for (section, value) in table {
        match &value.kind {
            ValueKind::Table(inner) => {
                for name in inner.keys() {
                    let key = format!("{section}.{name}");
                    if !read.contains(&key) {
                        errors.push(KeyError {
                            key,
                            message: "unknown key".into(),
                        });
                    }
                }
            }
            _ => errors.push(KeyError {
                key: section.clone(),
                message: "unknown key (settings live in sections such as [camera])".into(),
            }),
        }
    }
    errors
}

/// `[tls]`: off, a certificate and key from files, or a self-signed one kept in state.dir.
fn read_tls(r: &mut Reader<'_>) -> Option<TlsMode> {
    let enabled = r.boolean("tls.enabled");
    let path = |r: &mut Reader<'_>, key: &str| {
        r.text(key)
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .map(std::path::PathBuf::from)
    };
    let cert = path(r, "tls.cert_file");
    let key = path(r, "tls.key_file");
    match (enabled?, cert, key) {
        (false, None, None) => Some(TlsMode::Off),
        (false, Some(_), _) | (false, _, Some(_)) => {
            r.fail(
                "tls.enabled",
                "is false but tls.cert_file/tls.key_file are set: set it to true to use them"
                    .into(),
            );
            None
        }
        (true, None, None) => Some(TlsMode::SelfSigned),
        (true, Some(cert), Some(key)) => Some(TlsMode::Files { cert, key }),
        (true, Some(_), None) => {
            r.fail(
                "tls.key_file",
                "is needed with tls.cert_file (PEM private key)".into(),
            );
            None
        }
        (true, None, Some(_)) => {
            r.fail(
                "tls.cert_file",
                "is needed with tls.key_file (PEM certificate chain)".into(),
            );
            None
        }
    }
}

fn read_gpio(r: &mut Reader<'_>) -> Option<GpioConfig> {
    let backend = r.choice(
        "gpio.backend",
        &[
            ("auto", GpioBackend::Auto),
            ("gpiochip", GpioBackend::Gpiochip),
            ("rppal", GpioBackend::Rppal),
            ("simulator", GpioBackend::Simulator),
        ],
    );
    let chip = r.text("gpio.chip").map(|c| c.trim().to_string());
    // Header pins are BCM 0-27; on a chip named outright any line offset the u8 holds.
    let max_pin = if chip.as_deref().is_some_and(|c| !c.is_empty()) {
        255
    } else {
        27
    };
    let button_pin = r.pin("gpio.button_pin", max_pin);
    let active_low = r.boolean("gpio.button_active_low");
    let pull_up = r.boolean("gpio.button_pull_up");
    let debounce = r.number("gpio.debounce_ms", 1, 1000);
    let long_press = r.seconds("gpio.long_press_s", 0.05, 60.0);
    let action = r.choice(
        "gpio.long_press_action",
        &[
            ("none", LongPressAction::None),
            ("restart", LongPressAction::Restart),
            ("reboot", LongPressAction::Reboot),
            ("poweroff", LongPressAction::Poweroff),
        ],
    );
    let status_pin = r.pin("gpio.status_led_pin", max_pin);
    let status_high = r.boolean("gpio.status_led_active_high");
    let viewers_pin = r.pin("gpio.viewers_led_pin", max_pin);
    let viewers_high = r.boolean("gpio.viewers_led_active_high");
    // A pin wired to two things is a wiring mistake: name every key involved.
    let used = [
        ("gpio.button_pin", button_pin),
        ("gpio.status_led_pin", status_pin),
        ("gpio.viewers_led_pin", viewers_pin),
    ];
    for (i, (key, pin)) in used.iter().enumerate() {
        if let Some(Some(p)) = pin
            && let Some((other, _)) = used[..i].iter().find(|(_, q)| *q == Some(Some(*p)))
        {
            r.fail(key, format!("pin {p} is already used by {other}"));
        }
    }
    Some(GpioConfig {
        backend: backend?,
        chip: chip?,
        button: button_pin?.map(|pin| ButtonPin {
            pin,
            active_low: active_low.unwrap_or(true),
            pull_up: pull_up.unwrap_or(true),
        }),
        debounce: Duration::from_millis(debounce?),
        long_press: long_press?,
        long_press_action: action?,
        status_led: status_pin?.map(|pin| LedPin {
            pin,
            active_high: status_high.unwrap_or(true),
        }),
        viewers_led: viewers_pin?.map(|pin| LedPin {
            pin,
            active_high: viewers_high.unwrap_or(true),
        }),
    })
}

/// The `[provisioning]` section of a boot-partition file, each value checked.
/// `upstream.whip_url`: an http(s) URL with a host and without credentials.
fn whip_url(text: &str) -> Result<url::Url, String> {
    let url = url::Url::parse(text).map_err(|e| format!("{text:?} is not a URL: {e}"))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(format!("{text:?} is not an http:// or https:// URL"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("put credentials in upstream.token, not in the URL".into());
    }
    if url.host_str().is_none_or(str::is_empty) {
        return Err(format!("{text:?} has no host"));
    }
    Ok(url)
}

fn read_provisioning(r: &mut Reader<'_>) -> Option<super::provisioning::Provisioning> {
    r.table.get("provisioning")?;
    let mut p = super::provisioning::Provisioning::default();
    for name in [
        "hostname",
        "wifi_ssid",
        "wifi_psk",
        "wifi_country",
        "timezone",
        "viewer_password",
        "admin_password",
    ] {
        let key = format!("provisioning.{name}");
        if r.raw(&key).is_none() {
            continue;
        }
        let Some(value) = r.text(&key) else { continue };
        if let Some(problem) = super::provisioning::check(name, &value) {
            r.fail(&key, problem);
            continue;
        }
        let slot = match name {
            "hostname" => &mut p.hostname,
            "wifi_ssid" => &mut p.wifi_ssid,
            "wifi_psk" => &mut p.wifi_psk,
            "wifi_country" => &mut p.wifi_country,
            "viewer_password" => &mut p.viewer_password,
            "admin_password" => &mut p.admin_password,
            _ => &mut p.timezone,
        };
        *slot = Some(value);
    }
    for k in r.list("provisioning.ssh_authorized_keys") {
        match super::provisioning::check("ssh_authorized_keys", &k) {
            Some(problem) => r.fail("provisioning.ssh_authorized_keys", problem),
            None => p.ssh_authorized_keys.push(k),
        }
    }
    if p.wifi_psk.is_some() && p.wifi_ssid.is_none() {
        r.fail(
            "provisioning.wifi_psk",
            "set provisioning.wifi_ssid too".into(),
        );
    }
    Some(p)
}

fn validate(table: &Map<String, Value>) -> Result<Config, ConfigError> {
    let mut r = Reader {
        table,
        errors: Vec::new(),
        read: Default::default(),
    };

    let listen = r.text("http.listen").and_then(|s| match s.trim().parse() {
        Ok(addr) => Some(addr),
        Err(_) => {
            r.fail(
                "http.listen",
                format!("{s:?} is not ADDRESS:PORT, e.g. 0.0.0.0:8080"),
            );
            None
        }
    });
    let allowed_origins: Vec<String> = r
        .list("http.allowed_origins")
        .into_iter()
        .map(|o| o.trim_end_matches('/').to_ascii_lowercase())
        .collect();
    for o in &allowed_origins {
        if !(o.starts_with("http://") || o.starts_with("https://")) || o.matches('/').count() != 2 {
            r.fail(
                "http.allowed_origins",
                format!("{o:?} is not an origin such as https://example.org or http://host:8000"),
            );
        }
    }
    let per_address = r.number("http.max_connections_per_address", 1, 10_000);
    let ping = r.number("http.ping_interval_s", 1, 300);
    let silence = r.number("http.silence_timeout_s", 2, 3600);
    if let (Some(p), Some(q)) = (ping, silence)
        && q <= p
    {
        r.fail(
            "http.silence_timeout_s",
            format!(
                "must be longer than http.ping_interval_s ({p}), or no pong can arrive in time"
            ),
        );
    }
    let tls = read_tls(&mut r);
    let source = r.parse("camera.source");
    let width = r.number("camera.width", 16, 7680);
    let height = r.number("camera.height", 16, 4320);
    let fps = r.number("camera.fps", 1, 240);
    let autostart = r.boolean("camera.autostart");
    let kind = r.parse("encoder.kind");
    let bitrate = r.number("encoder.bitrate_kbps", 100, 50_000);
    let fallback = FallbackConfig {
        enabled: r.boolean("fallback.enabled").unwrap_or(true),
        // Even sizes: the encoder's 4:2:0 frames need them.
        width: r.number("fallback.width", 64, 3840).unwrap_or(640) as u32 & !1,
        height: r.number("fallback.height", 64, 2160).unwrap_or(360) as u32 & !1,
        bitrate_kbps: r
            .number("fallback.bitrate_kbps", 100, 20_000)
            .unwrap_or(800) as u32,
    };
    let rtsp_listen = match r.text("rtsp.listen") {
        Some(s) if s.trim().is_empty() => None,
        Some(s) => match s.trim().parse() {
            Ok(addr) => Some(addr),
            Err(_) => {
                r.fail(
                    "rtsp.listen",
                    format!("{s:?} is not ADDRESS:PORT, e.g. 0.0.0.0:8554 (empty: off)"),
                );
                None
            }
        },
        None => None,
    };
    let substream = crate::config::SubstreamConfig {
        // Even sizes: the encoder's 4:2:0 frames need them.
        width: r.number("substream.width", 64, 3840).unwrap_or(640) as u32 & !1,
        height: r.number("substream.height", 64, 2160).unwrap_or(360) as u32 & !1,
        fps: r.number("substream.fps", 1, 60).unwrap_or(10) as u32,
        bitrate_kbps: r
            .number("substream.bitrate_kbps", 100, 20_000)
            .unwrap_or(500) as u32,
    };
    let onvif_discovery = r.boolean("onvif.discovery").unwrap_or(true);
    let camera_name = match r.text("camera.name") {
        Some(n) if n.trim().is_empty() => None,
        Some(n) if n.chars().count() > 64 || n.chars().any(char::is_control) => {
            r.fail(
                "camera.name",
                "a name of up to 64 characters, without control characters".into(),
            );
            None
        }
        Some(n) => Some(n.trim().to_string()),
        None => None,
    };
    let audio = crate::config::AudioConfig {
        source: r
            .parse("audio.source")
            .unwrap_or(crate::config::AudioSource::None),
        bitrate_kbps: r.number("audio.bitrate_kbps", 6, 256).unwrap_or(32) as u32,
    };
    let gop = r.number("encoder.keyframe_interval_s", 1, 60);
    let ice_servers = r.list("webrtc.ice_servers");
    for url in &ice_servers {
        if !(url.starts_with("stun:") || url.starts_with("turn:") || url.starts_with("turns:")) {
            r.fail(
                "webrtc.ice_servers",
                format!("{url:?} must start with stun:, turn: or turns:"),
            );
        }
    }
    let udp_ports = match r.text("webrtc.udp_ports") {
        Some(s) if s.trim().is_empty() => Some(None),
        Some(s) => match s.parse() {
            Ok(range) => Some(Some(range)),
            Err(msg) => {
                r.fail("webrtc.udp_ports", msg);
                None
            }
        },
        None => None,
    };
    let nat_ips = r.ips("webrtc.nat_ips");
    let bind_ips = r.ips("webrtc.bind_ips");
    let connect_timeout = r.seconds("webrtc.connect_timeout_s", 2.0, 300.0);
    let substream_for_weak_links = r.boolean("webrtc.substream_for_weak_links");
    let max = r.number("viewers.max", 1, 1000);
    let gpio = read_gpio(&mut r);
    let provisioning = read_provisioning(&mut r);
    let upstream_token = r
        .text("upstream.token")
        .map(|t| t.trim().to_string())
        .filter(|t| !t.is_empty());
    if upstream_token
        .as_deref()
        .is_some_and(|t| !t.chars().all(|c| c.is_ascii_graphic()))
    {
        r.fail(
            "upstream.token",
            "a bearer token has printable characters only, no spaces".into(),
        );
    }
    let upstream = match r.text("upstream.whip_url") {
        Some(u) if u.trim().is_empty() => None,
        Some(u) => match whip_url(u.trim()) {
            Ok(url) => Some((url, upstream_token)),
            Err(msg) => {
                r.fail("upstream.whip_url", msg);
                None
            }
        },
        None => None,
    };
    let whip_token = match r.text("whip.token") {
        Some(t) if t.trim().is_empty() => None,
        Some(t) => {
            let t = t.trim().to_string();
            if t.len() < 16 || !t.chars().all(|c| c.is_ascii_graphic()) {
                r.fail(
                    "whip.token",
                    "a bearer token has at least 16 printable characters, no spaces".into(),
                );
                None
            } else {
                Some(t)
            }
        }
        None => None,
    };
    let mut hash = |key: &str| match r.text(key) {
        Some(h) if h.trim().is_empty() => None,
        Some(h) => match crate::auth::check_hash(h.trim()) {
            Ok(()) => Some(h.trim().to_string()),
            Err(e) => {
                r.fail(key, e.to_string());
                None
            }
        },
        None => None,
    };
    let auth = crate::auth::AuthConfig {
        viewer_password_hash: hash("auth.viewer_password_hash"),
        admin_password_hash: hash("auth.admin_password_hash"),
    };
    let state_dir = r.text("state.dir").and_then(|d| {
        if d.trim().is_empty() {
            r.fail("state.dir", "must be a directory path".into());
            None
        } else {
            Some(std::path::PathBuf::from(d.trim()))
        }
    });

    if let (Some(w), Some(h)) = (width, height) {
        // 4:2:0 chroma subsampling needs even dimensions.
        if w % 2 != 0 {
            r.fail("camera.width", format!("{w} must be even"));
        }
        if h % 2 != 0 {
            r.fail("camera.height", format!("{h} must be even"));
        }
    }

    // Unknown keys first, as a reader of the file meets them.
    let unknown = unknown_keys(table, &r.read);
    r.errors.splice(0..0, unknown);
    if !r.errors.is_empty() {
        return Err(ConfigError::Invalid(r.errors));
    }
    let (Some(gpio), Some(state_dir), Some(per_address), Some(tls), Some(ping), Some(silence)) =
        (gpio, state_dir, per_address, tls, ping, silence)
    else {
        return Err(ConfigError::Invalid(vec![KeyError {
            key: "(internal)".into(),
            message: "a value was missing without an error; please report this".into(),
        }]));
    };
    // Every value below is Some: a None always pushed an error, and we returned above.
    match (
        listen, source, width, height, fps, autostart, kind, bitrate, gop, udp_ports, max,
    ) {
        (
            Some(listen),
            Some(source),
            Some(width),
            Some(height),
            Some(fps),
            Some(autostart),
            Some(kind),
            Some(bitrate),
            Some(gop),
            Some(udp_ports),
            Some(max),
        ) => Ok(Config {
            layers: Layers::default(),
            http: HttpConfig {
                listen,
                allowed_origins,
                max_connections_per_address: per_address as usize,
                ping_every: Duration::from_secs(ping),
                silent_limit: Duration::from_secs(silence),
                tls,
            },
            camera: CameraConfig {
                source,
                width: width as u32,
                height: height as u32,
                fps: fps as u32,
                autostart,
            },
            fallback,
            rtsp_listen,
            substream,
            onvif_discovery,
            audio,
            camera_name,
            encoder: EncoderConfig {
                kind,
                bitrate_kbps: bitrate as u32,
                keyframe_interval: Duration::from_secs(gop),
            },
            webrtc: WebRtcConfig {
                ice_servers,
                udp_ports,
                nat_ips,
                bind_ips,
                // (Read above; a bad value is among the errors returned before here.)
                connect_timeout: connect_timeout.unwrap_or(Duration::from_secs(30)),
                substream_for_weak_links: substream_for_weak_links.unwrap_or(true),
            },
            viewers: ViewersConfig { max: max as usize },
            gpio,
            state: StateConfig { dir: state_dir },
            auth,
            whip_token,
            upstream,
            provisioning,
        }),
        _ => Err(ConfigError::Invalid(vec![KeyError {
            key: "(internal)".into(),
            message: "a value was missing without an error; please report this".into(),
        }])),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{EncoderKind, LedPin, PortRange, SourceSpec};
    use std::io::Write;

    fn no_env() -> Option<HashMap<String, String>> {
        Some(HashMap::new())
    }

    fn write_temp(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().expect("temp file");
        f.write_all(text.as_bytes()).expect("write temp file");
        f
    }

    /// Loads the defaults with `pairs` as the environment.
    fn load_env(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let env = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect::<HashMap<_, _>>();
        load(None, Some(env), &Overrides::default())
    }

    fn keys(err: ConfigError) -> Vec<String> {
        match err {
            ConfigError::Invalid(errors) => errors.into_iter().map(|e| e.key).collect(),
            other => panic!("expected Invalid, got {other}"),
        }
    }

    #[test]
    fn tls_is_off_self_signed_or_from_both_files() {
        assert_eq!(load_env(&[]).unwrap().http.tls, TlsMode::Off);
        assert_eq!(
            load_env(&[("EDGECAM_TLS__ENABLED", "true")])
                .unwrap()
                .http
                .tls,
            TlsMode::SelfSigned
        );
        assert_eq!(
            load_env(&[
                ("EDGECAM_TLS__ENABLED", "true"),
                ("EDGECAM_TLS__CERT_FILE", "/etc/edgecam/cert.pem"),
                ("EDGECAM_TLS__KEY_FILE", "/etc/edgecam/key.pem"),
            ])
            .unwrap()
            .http
            .tls,
            TlsMode::Files {
                cert: "/etc/edgecam/cert.pem".into(),
                key: "/etc/edgecam/key.pem".into()
            }
        );
        let only_cert = load_env(&[
            ("EDGECAM_TLS__ENABLED", "true"),
            ("EDGECAM_TLS__CERT_FILE", "/c.pem"),
        ]);
        assert_eq!(keys(only_cert.unwrap_err()), ["tls.key_file"]);
        let not_enabled = load_env(&[("EDGECAM_TLS__KEY_FILE", "/k.pem")]);
        assert_eq!(keys(not_enabled.unwrap_err()), ["tls.enabled"]);
    }

    #[test]
    fn rtsp_listens_on_8554_by_default_and_is_off_when_empty() {
        let cfg = load_env(&[]).unwrap();
        assert_eq!(cfg.rtsp_listen, Some("0.0.0.0:8554".parse().unwrap()));
        assert_eq!(
            (cfg.substream.width, cfg.substream.height, cfg.substream.fps),
            (640, 360, 10)
        );
        assert_eq!(
            load_env(&[("EDGECAM_RTSP__LISTEN", "")])
                .unwrap()
                .rtsp_listen,
            None
        );
        let bad = load_env(&[
            ("EDGECAM_RTSP__LISTEN", "rtsp://camera"),
            ("EDGECAM_SUBSTREAM__FPS", "0"),
        ])
        .unwrap_err();
        assert_eq!(keys(bad), ["rtsp.listen", "substream.fps"]);
    }

    #[test]
    fn whip_token_is_off_by_default_and_must_be_long() {
        assert_eq!(
            load(None, no_env(), &Overrides::default())
                .unwrap()
                .whip_token,
            None
        );
        let f = write_temp("[whip]\ntoken = \"short\"\n");
        assert_eq!(keys(load_file_only(f.path()).unwrap_err()), ["whip.token"]);
        let f = write_temp("[whip]\ntoken = \"0123456789abcdef\"\n");
        assert_eq!(
            load_file_only(f.path()).unwrap().whip_token.as_deref(),
            Some("0123456789abcdef")
        );
    }

    #[test]
    fn defaults_are_valid() {
        let cfg = load(None, no_env(), &Overrides::default()).expect("defaults");
        assert_eq!(
            cfg.http.listen,
            "0.0.0.0:8080".parse::<std::net::SocketAddr>().unwrap()
        );
        assert_eq!(cfg.camera.source, SourceSpec::Auto);
        assert_eq!(
            (cfg.camera.width, cfg.camera.height, cfg.camera.fps),
            (1280, 720, 30)
        );
        assert_eq!(cfg.encoder.kind, EncoderKind::Auto);
        assert_eq!(cfg.encoder.bitrate_kbps, 2000);
        assert_eq!(cfg.webrtc.udp_ports, None);
        assert_eq!(cfg.viewers.max, 20);
        assert!(cfg.camera.autostart);
    }

    #[test]
    fn autostart_is_a_boolean_from_file_or_env() {
        let f = write_temp("[camera]\nautostart = false\n");
        assert!(!load_file_only(f.path()).unwrap().camera.autostart);
        let env = [("EDGECAM_CAMERA__AUTOSTART".to_string(), "true".to_string())]
            .into_iter()
            .collect();
        assert!(
            load(Some(f.path()), Some(env), &Overrides::default())
                .unwrap()
                .camera
                .autostart
        );
        let f = write_temp("[camera]\nautostart = \"yes\"\n");
        assert_eq!(
            keys(load_file_only(f.path()).unwrap_err()),
            vec!["camera.autostart"]
        );
    }

    #[test]
    fn shipped_example_parses_as_a_file() {
        let f = write_temp(EXAMPLE);
        let from_file = load_file_only(f.path()).expect("example config is valid");
        let defaults = load(None, no_env(), &Overrides::default()).unwrap();
        assert_eq!(from_file, defaults);
    }

    #[test]
    fn file_then_env_then_cli() {
        let f = write_temp(
            "[camera]\nsource = \"test\"\nwidth = 640\nheight = 480\n[webrtc]\nudp_ports = \"40000-40009\"\nnat_ips = [\"127.0.0.1\"]\n",
        );
        let env: HashMap<String, String> = [
            ("EDGECAM_CAMERA__WIDTH", "800"),
            (
                "EDGECAM_WEBRTC__ICE_SERVERS",
                "stun:a.example:3478,stun:b.example:3478",
            ),
            ("EDGECAM_HTTP__LISTEN", "127.0.0.1:9000"),
            // Looks like a number; is a token, kept digit for digit.
            ("EDGECAM_WHIP__TOKEN", "000012345678901234567890"),
            ("EDGECAM_CAMERA__AUTOSTART", "false"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let cli = Overrides {
            listen: Some("127.0.0.1:9001".into()),
            source: None,
        };
        let cfg = load(Some(f.path()), Some(env), &cli).expect("valid");
        assert_eq!(cfg.camera.source, SourceSpec::Test);
        assert_eq!(cfg.camera.width, 800, "env beats file");
        assert_eq!(cfg.camera.height, 480, "file beats defaults");
        assert_eq!(
            cfg.http.listen,
            "127.0.0.1:9001".parse::<std::net::SocketAddr>().unwrap(),
            "cli beats env"
        );
        assert_eq!(cfg.webrtc.ice_servers.len(), 2);
        assert_eq!(cfg.whip_token.as_deref(), Some("000012345678901234567890"));
        assert!(!cfg.camera.autostart);
        assert_eq!(
            cfg.webrtc.udp_ports,
            Some(PortRange {
                first: 40000,
                last: 40009
            })
        );
        assert_eq!(
            cfg.webrtc.nat_ips,
            vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
        );
    }

    #[test]
    fn every_bad_key_is_named() {
        let f = write_temp(
            "[http]\nlisten = \"nowhere\"\n[camera]\nsource = \"webcam\"\nfps = 0\nwidth = 641\nheigth = 480\n[encoder]\nkind = \"h265\"\nbitrate_kbps = \"fast\"\n[webrtc]\nudp_ports = \"9-1\"\nnat_ips = [\"not-an-ip\"]\nice_servers = [\"http://x\"]\n[viewers]\nmax = 0\n",
        );
        let mut got = keys(load_file_only(f.path()).unwrap_err());
        got.sort();
        let mut want = vec![
            "http.listen",
            "camera.source",
            "camera.fps",
            "camera.width",
            "camera.heigth",
            "encoder.kind",
            "encoder.bitrate_kbps",
            "webrtc.udp_ports",
            "webrtc.nat_ips",
            "webrtc.ice_servers",
            "viewers.max",
        ];
        want.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn the_silence_limit_must_outlast_the_ping_interval() {
        let f = write_temp("[http]\nping_interval_s = 30\nsilence_timeout_s = 30\n");
        let text = load_file_only(f.path()).unwrap_err().to_string();
        assert!(text.contains("http.silence_timeout_s"), "{text}");
        let f = write_temp("[http]\nping_interval_s = 5\nsilence_timeout_s = 12\n");
        let http = load_file_only(f.path()).unwrap().http;
        assert_eq!(http.ping_every, Duration::from_secs(5));
        assert_eq!(http.silent_limit, Duration::from_secs(12));
    }

    #[test]
    fn gpio_pins_are_validated() {
        let f = write_temp(
            "[gpio]\nbutton_pin = 40\nstatus_led_pin = 5\nviewers_led_pin = 5\nlong_press_action = \"explode\"\nbackend = \"wiringpi\"\n",
        );
        let mut got = keys(load_file_only(f.path()).unwrap_err());
        got.sort();
        assert_eq!(
            got,
            vec![
                "gpio.backend",
                "gpio.button_pin",
                "gpio.long_press_action",
                "gpio.viewers_led_pin"
            ]
        );
        let text = load_file_only(f.path()).unwrap_err().to_string();
        assert!(
            text.contains("pin 5 is already used by gpio.status_led_pin"),
            "{text}"
        );
        assert!(text.contains("0 to 27"), "{text}");
        let f = write_temp(
            "[gpio]\nbutton_pin = -1\nviewers_led_pin = 4\nviewers_led_active_high = false\n",
        );
        let g = load_file_only(f.path()).unwrap().gpio;
        assert_eq!(g.button, None);
        assert_eq!(
            g.viewers_led,
            Some(LedPin {
                pin: 4,
                active_high: false
            })
        );
        assert_eq!(
            g.status_led,
            Some(LedPin {
                pin: 27,
                active_high: true
            })
        );
        assert_eq!(g.long_press, Duration::from_secs(5));
    }

    #[test]
    fn provisioning_section_is_validated() {
        let f = write_temp(
            "[camera]\nsource = \"test\"\n[provisioning]\nhostname = \"cam-1\"\nwifi_ssid = \"home\"\nwifi_psk = \"correct horse\"\nwifi_country = \"GB\"\nssh_authorized_keys = [\"ssh-ed25519 AAAA me\"]\ntimezone = \"Europe/London\"\n",
        );
        let p = load_file_only(f.path()).unwrap().provisioning.unwrap();
        assert_eq!(p.hostname.as_deref(), Some("cam-1"));
        assert_eq!(p.ssh_authorized_keys.len(), 1);
        let f = write_temp(
            "[provisioning]\nhostname = \"no way\"\nwifi_psk = \"x\"\nwifi_country = \"Britain\"\nssh_authorized_keys = [\"hello\"]\ncolour = \"red\"\n",
        );
        let mut got = keys(load_file_only(f.path()).unwrap_err());
        got.sort();
        got.dedup();
        assert_eq!(
            got,
            vec![
                "provisioning.colour",
                "provisioning.hostname",
                "provisioning.ssh_authorized_keys",
                "provisioning.wifi_country",
                "provisioning.wifi_psk"
            ]
        );
        assert_eq!(
            load(None, no_env(), &Overrides::default())
                .unwrap()
                .provisioning,
            None
        );
    }

    #[test]
    fn messages_say_what_is_allowed() {
        let f = write_temp("[encoder]\nkind = \"h265\"\n");
        let text = load_file_only(f.path()).unwrap_err().to_string();
        assert!(text.contains("encoder.kind"), "{text}");
        assert!(text.contains("x264"), "{text}");
    }

    #[test]
    fn syntax_error_and_missing_file_are_errors() {
        let f = write_temp("[camera\nsource=");
        assert!(matches!(
            load_file_only(f.path()),
            Err(ConfigError::Syntax { .. })
        ));
        assert!(matches!(
            load_file_only(Path::new("/nonexistent/edgecam.toml")),
            Err(ConfigError::Read { .. })
        ));
    }

    #[test]
    fn top_level_scalar_is_unknown() {
        let f = write_temp("fps = 30\n");
        assert_eq!(keys(load_file_only(f.path()).unwrap_err()), vec!["fps"]);
    }

    #[test]
    fn whip_urls_are_http_with_a_host_and_no_credentials() {
        let u = whip_url("http://[2001:db8::1]:8889/cam/whip").unwrap();
        assert_eq!(
            (u.host_str(), u.port(), u.path()),
            (Some("[2001:db8::1]"), Some(8889), "/cam/whip")
        );
        assert_eq!(
            whip_url("https://live.example.com/whip")
                .unwrap()
                .port_or_known_default(),
            Some(443)
        );
        for bad in [
            "ftp://x/",
            "http://",
            "http://h:x/",
            "http://u:p@h/",
            "whip",
            "http://[::1/",
        ] {
            assert!(whip_url(bad).is_err(), "{bad}");
        }
        let f = write_temp("[upstream]\nwhip_url = \"http://u:p@h/whip\"\n");
        assert_eq!(
            keys(load_file_only(f.path()).unwrap_err()),
            vec!["upstream.whip_url"]
        );
    }

    #[test]
    fn settings_are_layered_onto_the_current_ones() {
        let base = "[http]\nlisten = \"0.0.0.0:80\"\n[auth]\nadmin_password_hash = \"h\"\n[camera]\nfps = 30\nwidth = 1280\n";
        let over = "[camera]\nfps = 15\n[tls]\nenabled = true\n";
        let t = layer(&[(base, "base"), (over, "over")]).unwrap();
        assert_eq!(t["http"]["listen"].as_str(), Some("0.0.0.0:80"));
        assert_eq!(t["auth"]["admin_password_hash"].as_str(), Some("h"));
        assert_eq!(t["camera"]["fps"].as_integer(), Some(15));
        assert_eq!(t["camera"]["width"].as_integer(), Some(1280));
        assert_eq!(t["tls"]["enabled"].as_bool(), Some(true));
        match layer(&[(base, "base"), ("[camera\n", "the boot file")]) {
            Err(ConfigError::Syntax { path, .. }) => assert_eq!(path, "the boot file"),
            other => panic!("{other:?}"),
        }
    }
}
