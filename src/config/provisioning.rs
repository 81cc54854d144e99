//! The `[provisioning]` section's values and their rules (the settings file's first-boot
//! part: hostname, Wi-Fi, SSH keys, timezone, passwords). `provision` applies them.

/// What the `[provisioning]` section may set.
#[derive(Default, Clone, PartialEq, Eq)]
pub struct Provisioning {
    pub hostname: Option<String>,
    pub wifi_ssid: Option<String>,
    pub wifi_psk: Option<String>,
    pub wifi_country: Option<String>,
    pub ssh_authorized_keys: Vec<String>,
    pub timezone: Option<String>,
    /// Plain passwords, hashed into `[auth]` when applied; "" removes the password.
    pub viewer_password: Option<String>,
    pub admin_password: Option<String>,
}

/// Secrets never reach logs or error messages.
impl std::fmt::Debug for Provisioning {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let hidden = |v: &Option<String>| v.as_ref().map(|_| "<hidden>");
        f.debug_struct("Provisioning")
            .field("hostname", &self.hostname)
            .field("wifi_ssid", &self.wifi_ssid)
            .field("wifi_psk", &hidden(&self.wifi_psk))
            .field("wifi_country", &self.wifi_country)
            .field("ssh_authorized_keys", &self.ssh_authorized_keys)
            .field("timezone", &self.timezone)
            .field("viewer_password", &hidden(&self.viewer_password))
            .field("admin_password", &hidden(&self.admin_password))
            .finish()
    }
}

/// Checks one provisioning value; `None` when fine, else what is wrong.
pub fn check(key: &str, value: &str) -> Option<String> {
    match key {
        "hostname" => {
            let ok = !value.is_empty()
                && value.len() <= 63
                && value.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
                && !value.starts_with('-')
                && !value.ends_with('-');
            (!ok).then(|| {
                format!("{value:?} is not a hostname (letters, digits and '-', at most 63)")
            })
        }
        "wifi_country" => {
            let ok = value.len() == 2 && value.chars().all(|c| c.is_ascii_uppercase());
            (!ok).then(|| format!("{value:?} is not a two-letter country code such as GB or US"))
        }
        "wifi_psk" => {
            // IEEE 802.11 passphrases are 8 to 63 printable ASCII characters.
            let hex = value.len() == 64 && value.chars().all(|c| c.is_ascii_hexdigit());
            let ok = hex
                || ((8..=63).contains(&value.len())
                    && value.bytes().all(|b| (0x20..=0x7e).contains(&b)));
            (!ok).then(|| {
                "a WPA passphrase has 8 to 63 printable ASCII characters (or 64 hex digits)".into()
            })
        }
        "wifi_ssid" => {
            let ok = !value.is_empty() && value.len() <= 32 && !value.chars().any(char::is_control);
            (!ok).then(|| "an SSID has 1 to 32 bytes and no control characters".into())
        }
        "timezone" => {
            let ok = !value.is_empty()
                && !value.contains("..")
                && !value.starts_with('/')
                && value
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "/_-+".contains(c));
            (!ok).then(|| format!("{value:?} is not a time zone name such as Europe/London"))
        }
        "viewer_password" | "admin_password" => {
            // Empty removes the password (the camera's page is then open).
            (!value.is_empty())
                .then(|| {
                    crate::auth::check_password_text(value)
                        .err()
                        .map(|e| e.to_string())
                })
                .flatten()
        }
        "ssh_authorized_keys" => {
            let ok = value.starts_with("ssh-")
                || value.starts_with("ecdsa-")
                || value.starts_with("sk-");
            (!ok).then(|| {
                "each key is a public key line such as \"ssh-ed25519 AAAA... user@host\"".into()
            })
        }
        _ => Some("unknown key".into()),
    }
}
