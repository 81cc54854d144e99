//! Fleet provisioning from the boot partition. A `edgecam.toml` dropped on the FAT boot
//! partition carries the camera settings plus a `[provisioning]` section (hostname,
//! Wi-Fi, SSH keys, timezone). At boot `edgecam provision` validates it like
//! `check-config`; a valid file is applied and then renamed (never deleted), so a changed
//! file dropped later is applied again. An invalid file changes nothing: the device
//! boots with its previous settings and the error is recorded for the daemon to show.

pub use crate::config::provisioning::{Provisioning, check};
use crate::config::{self, ConfigError};
use std::path::{Path, PathBuf};

/// Where the boot partition is mounted on Debian's and Raspberry Pi OS's images.
pub const BOOT_FILE: &str = "/boot/firmware/edgecam.toml";
/// The recorded error of the last provisioning attempt, under `state.dir`.
pub const ERROR_FILE: &str = "provision-error";

/// Why provisioning failed.
#[derive(Debug, thiserror::Error)]
pub enum ProvisionError {
    #[error("{0}")]
    Config(#[from] ConfigError),
    #[error("cannot write {path}: {reason}")]
    Write { path: String, reason: String },
    #[error("cannot hash the password: {0}")]
    Hash(#[from] crate::auth::PasswordError),
}

/// What happened.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// No file on the boot partition.
    NothingToDo,
    /// Applied; the original now has this name.
    Applied { kept_as: PathBuf },
}

/// Applies `boot_file` to the system rooted at `root` ("/" on a device; a directory in
/// tests). On error nothing in the system is changed and the error is recorded in
/// `<state_dir>/provision-error` (relative to `root`); success clears it.
pub fn run(boot_file: &Path, root: &Path, state_dir: &Path) -> Result<Outcome, ProvisionError> {
    if !boot_file.exists() {
        return Ok(Outcome::NothingToDo);
    }
    let error_file = under(root, &state_dir.join(ERROR_FILE));
    let result = apply(boot_file, root, state_dir);
    match &result {
        Ok(_) => {
            let _ = std::fs::remove_file(&error_file);
        }
        Err(e) => {
            let text = format!("{}: {e}\n", boot_file.display());
            write(&error_file, &text, 0o644)?;
        }
    }
    result
}

fn apply(boot_file: &Path, root: &Path, state_dir: &Path) -> Result<Outcome, ProvisionError> {
    // Validate first, completely: an invalid file must change nothing.
    let cfg = config::load_file_only(boot_file)?;
    let p = cfg.provisioning.clone().unwrap_or_default();
    let text = std::fs::read_to_string(boot_file).map_err(|e| ConfigError::Read {
        path: boot_file.display().to_string(),
        reason: e.to_string(),
    })?;
    let mut table: toml::Table =
        text.parse()
            .map_err(|e: toml::de::Error| ConfigError::Syntax {
                path: boot_file.display().to_string(),
                reason: e.to_string(),
            })?;
    table.remove("provisioning");
    // Plain passwords become argon2 hashes in [auth]; the plain text is not kept in /etc
    // (it stays only in the renamed boot file, which the operator wrote).
    for (plain, key) in [
        (&p.viewer_password, "viewer_password_hash"),
        (&p.admin_password, "admin_password_hash"),
    ] {
        let Some(plain) = plain else { continue };
        let hash = if plain.is_empty() {
            String::new()
        } else {
            crate::auth::hash_password(plain)?
        };
        if !table.contains_key("auth") {
            table.insert("auth".into(), toml::Value::Table(toml::Table::new()));
        }
        if let Some(toml::Value::Table(auth)) = table.get_mut("auth") {
            auth.insert(key.into(), toml::Value::String(hash));
        }
    }
    // Layered onto the device's current settings: a key the file does not name keeps its
    // value (the image's port 80, passwords an earlier file set), so a later file that
    // only changes the Wi-Fi does not reset the camera or open it to the LAN.
    let config_path = under(root, Path::new(config::CONFIG_PATH));
    let current_name = config_path.display().to_string();
    let current = std::fs::read_to_string(&config_path).unwrap_or_default();
    let over = toml::to_string(&table).unwrap_or_default();
    let over_name = boot_file.display().to_string();
    let settings =
        config::layer(&[(&current, &current_name), (&over, &over_name)]).or_else(|e| {
            tracing::warn!("{current_name} cannot be read as settings ({e}); replacing it");
            config::layer(&[(&over, &over_name)])
        })?;
    let merged = toml::to_string(&settings).unwrap_or_default();
    // What the daemon will load must be valid as a whole, not just the file.
    let loaded = config::load_str(&merged)?;
    let settings = format!(
        "# Written by `edgecam provision`: {} layered onto what was here.\n{merged}",
        boot_file.display(),
    );
    // The daemon runs as the `edgecam` user: its config is root-owned, group `edgecam`.
    write(&config_path, &settings, 0o640)?;
    if let Some(gid) = group_id(root, "edgecam") {
        std::os::unix::fs::chown(&config_path, None, Some(gid)).map_err(|e| {
            ProvisionError::Write {
                path: config_path.display().to_string(),
                reason: e.to_string(),
            }
        })?;
    }
    keep_nvr_passwords(root, state_dir, &loaded.auth, &p)?;
    // The boot file decides the keys it names: the settings page's earlier choices for
    // them are taken out (the rest of them stay).
    let page = crate::settings::Store::new(&under(root, state_dir));
    let kept = page.read();
    let left = crate::settings::without(&kept, &crate::settings::keys_of(&table));
    if left != kept {
        page.write(&left).map_err(|e| ProvisionError::Write {
            path: page.path.display().to_string(),
            reason: e.to_string(),
        })?;
    }

    if let Some(h) = &p.hostname {
        write(
            &under(root, Path::new("/etc/hostname")),
            &format!("{h}\n"),
            0o644,
        )?;
        let hosts = under(root, Path::new("/etc/hosts"));
        let old =
            std::fs::read_to_string(&hosts).unwrap_or_else(|_| "127.0.0.1\tlocalhost\n".into());
        write(&hosts, &hosts_with(&old, h), 0o644)?;
        // Raspberry Pi Imager's user-data names a hostname too; cloud-init runs after us
        // (edgecam-provision.service is ordered before it) and this keeps it from setting
        // its own: edgecam.toml wins.
        let cloud = under(root, Path::new("/etc/cloud/cloud.cfg.d"));
        if cloud.is_dir() {
            write(
                &cloud.join(CLOUD_INIT_HOSTNAME),
                "# Written by `edgecam provision`: the hostname comes from edgecam.toml.\n\
                 preserve_hostname: true\n",
                0o644,
            )?;
        }
    }
    if let Some(ssid) = &p.wifi_ssid {
        let country = p.wifi_country.as_deref().unwrap_or("US");
        let conf = wpa_supplicant_conf(ssid, p.wifi_psk.as_deref(), country);
        write(
            &under(
                root,
                Path::new("/etc/wpa_supplicant/wpa_supplicant-wlan0.conf"),
            ),
            &conf,
            0o600,
        )?;
    }
    if !p.ssh_authorized_keys.is_empty() {
        let keys = p.ssh_authorized_keys.join("\n") + "\n";
        write(
            &under(root, Path::new("/root/.ssh/authorized_keys")),
            &keys,
            0o600,
        )?;
    }
    if let Some(tz) = &p.timezone {
        write(
            &under(root, Path::new("/etc/timezone")),
            &format!("{tz}\n"),
            0o644,
        )?;
        let link = under(root, Path::new("/etc/localtime"));
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(format!("/usr/share/zoneinfo/{tz}"), &link).map_err(|e| {
            ProvisionError::Write {
                path: link.display().to_string(),
                reason: e.to_string(),
            }
        })?;
    }
    // Keep the original, renamed: a file present at the next boot is a new one.
    let stamp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    // Never overwrite an earlier kept file: add a counter if the name is taken.
    let mut kept_as = boot_file.with_file_name(format!("edgecam.toml.applied-{stamp}"));
    let mut n = 1;
    while kept_as.exists() {
        kept_as = boot_file.with_file_name(format!("edgecam.toml.applied-{stamp}-{n}"));
        n += 1;
    }
    // The boot partition is FAT, readable by anyone with the card: once applied, secrets
    // (plain passwords, the Wi-Fi key) leave the kept copy, and every other byte of it
    // stays as written. The redacted copy is written whole before the original goes, so
    // a power cut leaves one or the other, never a half-redacted file.
    let redacted = redact_secrets(&text);
    if redacted == text {
        std::fs::rename(boot_file, &kept_as).map_err(|e| ProvisionError::Write {
            path: kept_as.display().to_string(),
            reason: e.to_string(),
        })?;
    } else {
        write(&kept_as, &redacted, 0o600)?;
        std::fs::remove_file(boot_file).map_err(|e| ProvisionError::Write {
            path: boot_file.display().to_string(),
            reason: e.to_string(),
        })?;
    }
    Ok(Outcome::Applied { kept_as })
}

/// Keys whose values never stay on the boot partition once applied.
const SECRETS: [&str; 3] = ["viewer_password", "admin_password", "wifi_psk"];

/// `text` with each secret's line (`admin_password = …`, `provisioning.wifi_psk = …`,
/// quoted keys too) turned into a comment. Whatever line-by-line redaction cannot reach
/// (an inline table, a multi-line string) makes the whole `[provisioning]` section go:
/// the result is checked by parsing it again.
pub fn redact_secrets(text: &str) -> String {
    let by_line: String = text
        .split_inclusive('\n')
        .map(|line| {
            let key = line.trim_start().split('=').next().unwrap_or("").trim();
            let key = key.strip_prefix("provisioning.").unwrap_or(key).trim();
            let key = key.trim_matches(|c| c == '"' || c == '\'');
            if SECRETS.contains(&key) && line.contains('=') {
                let end = if line.ends_with('\n') { "\n" } else { "" };
                format!("# {key} = (applied; removed from this copy){end}")
            } else {
                line.to_string()
            }
        })
        .collect();
    let secret_left = |t: &str| match t.parse::<toml::Table>() {
        Ok(table) => table
            .get("provisioning")
            .and_then(|p| p.as_table())
            .is_some_and(|p| SECRETS.iter().any(|k| p.contains_key(*k))),
        Err(_) => true,
    };
    if !secret_left(&by_line) {
        return by_line;
    }
    let mut table: toml::Table = text.parse().unwrap_or_default();
    table.remove("provisioning");
    format!(
        "# Applied by edgecam; its [provisioning] section held secrets and was removed.\n{}",
        toml::to_string(&table).unwrap_or_default()
    )
}

/// cloud-init drop-in written when edgecam.toml sets the hostname.
pub const CLOUD_INIT_HOSTNAME: &str = "91-edgecam-hostname.cfg";

/// The plain passwords the file set, kept for RTSP Digest and ONVIF logins (see
/// `crate::nvr_credentials`) in the state directory, readable by the daemon's user only.
fn keep_nvr_passwords(
    root: &Path,
    state_dir: &Path,
    auth: &crate::auth::AuthConfig,
    p: &config::provisioning::Provisioning,
) -> Result<(), ProvisionError> {
    let path = under(root, &state_dir.join(crate::nvr_credentials::FILE));
    let hashes = [
        (
            "viewer",
            auth.viewer_password_hash.as_deref(),
            &p.viewer_password,
        ),
        (
            "admin",
            auth.admin_password_hash.as_deref(),
            &p.admin_password,
        ),
    ];
    let current: Vec<(&str, Option<&str>)> = hashes.iter().map(|(u, h, _)| (*u, *h)).collect();
    let mut store = crate::nvr_credentials::Store::load(&path, &current);
    let failed = |e: std::io::Error| ProvisionError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    };
    let mut wrote = false;
    for (user, hash, plain) in hashes {
        if let (Some(hash), Some(plain)) = (hash, plain.as_deref().filter(|p| !p.is_empty())) {
            wrote |= store.learn(user, hash, plain).map_err(failed)?;
        }
    }
    if wrote
        && let (Some(uid), Some(gid)) =
            (id_of(root, "passwd", "edgecam"), group_id(root, "edgecam"))
    {
        std::os::unix::fs::chown(&path, Some(uid), Some(gid)).map_err(failed)?;
    }
    Ok(())
}

/// A user's id from `<root>/etc/passwd` (or a group's from `<root>/etc/group`).
fn id_of(root: &Path, file: &str, name: &str) -> Option<u32> {
    let text = std::fs::read_to_string(under(root, &Path::new("/etc").join(file))).ok()?;
    text.lines().find_map(|line| {
        let mut f = line.split(':');
        (f.next()? == name).then_some(())?;
        f.nth(1)?.parse().ok()
    })
}

/// `path` (absolute) inside `root`.
fn under(root: &Path, path: &Path) -> PathBuf {
    root.join(path.strip_prefix("/").unwrap_or(path))
}

fn write(path: &Path, text: &str, mode: u32) -> Result<(), ProvisionError> {
    crate::atomic_file::write(path, text.as_bytes(), mode).map_err(|e| ProvisionError::Write {
        path: path.display().to_string(),
        reason: e.to_string(),
    })
}

/// A group's id from `<root>/etc/group`.
fn group_id(root: &Path, name: &str) -> Option<u32> {
    id_of(root, "group", name)
}

/// /etc/hosts with the 127.0.1.1 line naming `hostname` (Debian's convention).
pub fn hosts_with(old: &str, hostname: &str) -> String {
    let mut out: Vec<String> = old
        .lines()
        .filter(|l| !l.starts_with("127.0.1.1"))
        .map(String::from)
        .collect();
    out.push(format!("127.0.1.1\t{hostname}"));
    out.join("\n") + "\n"
}

/// A wpa_supplicant configuration for one network. wpa_supplicant reads a quoted value
/// literally up to the line's last `"`, with no escapes: the SSID (any bytes) is written
/// as hex, and the passphrase (printable ASCII, see `check`) between plain quotes.
pub fn wpa_supplicant_conf(ssid: &str, psk: Option<&str>, country: &str) -> String {
    let key = match psk {
        // 64 hex digits is a raw key, written unquoted.
        Some(k) if k.len() == 64 && k.chars().all(|c| c.is_ascii_hexdigit()) => {
            format!("\tpsk={k}\n")
        }
        Some(k) => format!("\tpsk=\"{k}\"\n"),
        None => "\tkey_mgmt=NONE\n".into(),
    };
    let ssid_hex = hex::encode(ssid);
    format!(
        "ctrl_interface=DIR=/run/wpa_supplicant GROUP=netdev\nupdate_config=0\ncountry={country}\n\nnetwork={{\n\t# {}\n\tssid={ssid_hex}\n{key}}}\n",
        ssid.escape_debug()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_redacted_from_the_kept_copy() {
        let text = "[camera]\nfps = 15\n[provisioning]\nviewer_password = \"pa=ss word\"\n  admin_password=\"x\"\n\"wifi_psk\" = \"hunter2hunter2\"";
        let out = redact_secrets(text);
        assert!(
            !out.contains("pa=ss") && !out.contains("\"x\"") && !out.contains("hunter2"),
            "{out}"
        );
        assert!(out.starts_with(
            "[camera]\nfps = 15\n[provisioning]\n# viewer_password = (applied; removed"
        ));
        assert!(out.contains("# admin_password = (applied") && !out.ends_with('\n'));
        assert!(out.contains("# wifi_psk = (applied"));
        assert_eq!(redact_secrets("a = 1\n"), "a = 1\n");
        // Dotted keys at the top level.
        let dotted = "provisioning.admin_password = \"secret-one\"\n[camera]\nfps = 5\n";
        let out = redact_secrets(dotted);
        assert!(
            !out.contains("secret-one") && out.contains("fps = 5"),
            "{out}"
        );
        // What lines cannot reach: the whole section goes, the rest is kept.
        for hard in [
            "provisioning = { admin_password = \"secret-one\" }\n[camera]\nfps = 5\n",
            "[camera]\nfps = 5\n[provisioning]\nadmin_password = \"\"\"\nsecret-one\"\"\"\n",
        ] {
            let out = redact_secrets(hard);
            assert!(!out.contains("secret-one"), "{out}");
            let kept: toml::Table = out.parse().unwrap();
            assert_eq!(kept["camera"]["fps"].as_integer(), Some(5), "{out}");
            assert!(!kept.contains_key("provisioning"));
        }
    }

    #[test]
    fn group_ids_come_from_the_roots_group_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir_all(dir.path().join("etc")).unwrap();
        std::fs::write(
            dir.path().join("etc/group"),
            "root:x:0:\nvideo:x:44:edgecam\nedgecam:x:996:\nbroken\n",
        )
        .unwrap();
        assert_eq!(group_id(dir.path(), "edgecam"), Some(996));
        assert_eq!(group_id(dir.path(), "video"), Some(44));
        assert_eq!(group_id(dir.path(), "nobody"), None);
        assert_eq!(group_id(dir.path(), "broken"), None);
    }

    #[test]
    fn checks_values() {
        assert_eq!(check("hostname", "cam-kitchen-01"), None);
        assert!(check("hostname", "bad_name").is_some());
        assert!(check("hostname", "-x").is_some());
        assert_eq!(check("wifi_country", "GB"), None);
        assert!(check("wifi_country", "gbr").is_some());
        assert_eq!(check("wifi_psk", "correct horse"), None);
        assert!(check("wifi_psk", "short").is_some());
        assert!(check("wifi_psk", "new\nline-in-it").is_some());
        assert!(check("wifi_psk", "pässwörter").is_some(), "not ASCII");
        assert!(check("wifi_ssid", "bad\nssid").is_some());
        assert_eq!(check("wifi_ssid", "Café \"5G\""), None);
        assert_eq!(check("timezone", "America/Argentina/Buenos_Aires"), None);
        assert!(check("timezone", "../../etc/passwd").is_some());
        assert_eq!(
            check("ssh_authorized_keys", "ssh-ed25519 AAAAC3 me@laptop"),
            None
        );
        assert!(check("ssh_authorized_keys", "rm -rf /").is_some());
    }

    #[test]
    fn hosts_and_wpa_files() {
        let h = hosts_with("127.0.0.1\tlocalhost\n127.0.1.1\told\n", "cam1");
        assert_eq!(h, "127.0.0.1\tlocalhost\n127.0.1.1\tcam1\n");
        // Quotes and backslashes are literal to wpa_supplicant: the SSID goes as hex, the
        // passphrase as written between quotes.
        let w = wpa_supplicant_conf("My \"Net\"", Some("se\"cret\\pass"), "GB");
        assert!(w.contains("country=GB"));
        assert!(w.contains("\tssid=4d7920224e657422\n"), "{w}");
        assert!(w.contains("\tpsk=\"se\"cret\\pass\"\n"), "{w}");
        let hex = "a".repeat(64);
        assert!(wpa_supplicant_conf("n", Some(&hex), "US").contains(&format!("psk={hex}\n")));
        assert!(wpa_supplicant_conf("open", None, "US").contains("key_mgmt=NONE"));
    }
}
