//! The passwords NVRs prove they know. RTSP Digest (a hash over the password and a
//! server nonce) and ONVIF's WS-Security UsernameToken with PasswordDigest
//! (`Base64(SHA-1(nonce + created + password))`, what Home Assistant sends) can only be
//! checked by someone who has the password itself: the argon2 hash the page checks is
//! made to be useless for that. So the device keeps the viewer and admin passwords in
//! `<state.dir>/nvr-credentials` (JSON, mode 0600, owned by the daemon's user, never on
//! the boot partition), each bound to the argon2 hash it was learned for: when a password
//! changes, the old entry no longer matches the configured hash and is dropped.
//!
//! An entry is learned when provisioning sets a password, or the first time the password
//! is used successfully on the page or with HTTP Basic (for a hash written by hand).
//! Until then NVR logins for that user are refused, which the log says.
//!
//! Pure apart from [`Store::load`] and [`Store::learn`], which read and write the file.

use base64::Engine;
use serde::{Deserialize, Serialize};
use sha1::Sha1;
use sha2::Digest;
use std::collections::{BTreeMap, VecDeque};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// The file's name in the state directory.
pub const FILE: &str = "nvr-credentials";
/// How far a token's `Created` time may be from the device's clock. ONVIF clients learn
/// the device's time with GetSystemDateAndTime first and correct for it.
pub const CREATED_WINDOW: Duration = Duration::from_secs(300);
/// Nonces remembered to refuse a replayed token within [`CREATED_WINDOW`].
const NONCES_KEPT: usize = 4096;

/// One user's password and the argon2 hash it was checked against.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub for_hash: String,
    pub password: String,
}

/// The kept passwords, by user name (`viewer`, `admin`).
#[derive(Debug, Clone, Default)]
pub struct Store {
    path: Option<PathBuf>,
    entries: BTreeMap<String, Entry>,
}

impl Store {
    /// Reads `path`, keeping only the entries whose hash is still the configured one
    /// (`current`: user name and its configured hash). A missing or unreadable file is
    /// an empty store; one that is not ours is logged and replaced on the next learn.
    pub fn load(path: &Path, current: &[(&str, Option<&str>)]) -> Self {
        let entries: BTreeMap<String, Entry> = match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                tracing::warn!(path = %path.display(), error = %e,
                    "the kept NVR credentials cannot be read; NVRs log in again after a page login");
                BTreeMap::new()
            }),
            Err(_) => BTreeMap::new(),
        };
        let mut store = Self {
            path: Some(path.to_path_buf()),
            entries: BTreeMap::new(),
        };
        for (user, hash) in current {
            if let (Some(hash), Some(e)) = (hash, entries.get(*user))
                && e.for_hash == *hash
            {
                store.entries.insert((*user).to_string(), e.clone());
            }
        }
        store
    }

    /// The password of `user`, if it is known for its configured hash.
    pub fn password(&self, user: &str) -> Option<&str> {
        self.entries.get(user).map(|e| e.password.as_str())
    }

    /// Every known user and password.
    pub fn users(&self) -> impl Iterator<Item = (&str, &str)> {
        self.entries
            .iter()
            .map(|(u, e)| (u.as_str(), e.password.as_str()))
    }

    /// Keeps `password` for `user` (checked against `hash`); writes the file when that
    /// changes anything. `Ok(true)` when it did.
    pub fn learn(&mut self, user: &str, hash: &str, password: &str) -> std::io::Result<bool> {
        let entry = Entry {
            for_hash: hash.to_string(),
            password: password.to_string(),
        };
        if self.entries.get(user) == Some(&entry) {
            return Ok(false);
        }
        self.entries.insert(user.to_string(), entry);
        if let Some(path) = &self.path {
            crate::atomic_file::write(path, &self.encoded(), 0o600)?;
        }
        Ok(true)
    }

    /// The file's contents.
    pub fn encoded(&self) -> Vec<u8> {
        serde_json::to_vec_pretty(&self.entries).unwrap_or_default()
    }
}

/// A WS-Security UsernameToken as it came in a SOAP header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UsernameToken {
    pub username: String,
    /// The digest (Base64) or, for `PasswordText`, the password itself.
    pub password: String,
    pub digest: bool,
    /// Base64, as sent.
    pub nonce: Option<String>,
    /// `xsd:dateTime`, as sent.
    pub created: Option<String>,
}

/// Why a token is not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the password does not match")]
    Wrong,
    #[error("a password digest needs a Base64 nonce and a Created time")]
    Incomplete,
    #[error("the token's Created time is more than 5 minutes from the camera's clock")]
    Stale,
    #[error("this token was already used")]
    Replayed,
}

/// The PasswordDigest a client with `password` sends for `nonce` (raw bytes) and
/// `created`.
pub fn password_digest(nonce: &[u8], created: &str, password: &str) -> String {
    let mut h = Sha1::new();
    h.update(nonce);
    h.update(created.as_bytes());
    h.update(password.as_bytes());
    base64::engine::general_purpose::STANDARD.encode(h.finalize())
}

/// Checks `token` against `password` at `now`. A digest must be fresh (its Created
/// within [`CREATED_WINDOW`]) and is compared in constant time.
pub fn check_token(
    token: &UsernameToken,
    password: &str,
    now: SystemTime,
) -> Result<(), TokenError> {
    if !token.digest {
        return equal(token.password.as_bytes(), password.as_bytes())
            .then_some(())
            .ok_or(TokenError::Wrong);
    }
    let (Some(nonce), Some(created)) = (&token.nonce, &token.created) else {
        return Err(TokenError::Incomplete);
    };
    let nonce = base64::engine::general_purpose::STANDARD
        .decode(nonce.trim())
        .map_err(|_| TokenError::Incomplete)?;
    let at = parse_date_time(created).ok_or(TokenError::Incomplete)?;
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    if (at - now).unsigned_abs() > CREATED_WINDOW.as_secs() {
        return Err(TokenError::Stale);
    }
    let expected = password_digest(&nonce, created, password);
    equal(token.password.trim().as_bytes(), expected.as_bytes())
        .then_some(())
        .ok_or(TokenError::Wrong)
}

fn equal(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// Seconds since 1970 of an `xsd:dateTime` such as `2026-12-01T17:43:05Z`,
/// `2026-12-01T17:43:05.123Z` or `2026-12-01T18:43:05+01:00` (no zone: UTC).
pub fn parse_date_time(text: &str) -> Option<i64> {
    let t = text.trim();
    let (date, rest) = t.split_once('T')?;
    let mut d = date.splitn(3, '-');
    let year: i64 = d.next()?.parse().ok()?;
    let month: i64 = d.next()?.parse().ok()?;
    let day: i64 = d.next()?.parse().ok()?;
    let zone_at = rest.find(['Z', 'z', '+', '-']).unwrap_or(rest.len());
    let (time, zone) = rest.split_at(zone_at);
    let mut tp = time.splitn(3, ':');
    let hour: i64 = tp.next()?.parse().ok()?;
    let minute: i64 = tp.next()?.parse().ok()?;
    let second: i64 = tp.next()?.split('.').next()?.parse().ok()?;
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 60
    {
        return None;
    }
    let offset = match zone {
        "" | "Z" | "z" => 0,
        z => {
            let sign = if z.starts_with('-') { -1 } else { 1 };
            let (h, m) = z[1..].split_once(':')?;
            let (h, m): (i64, i64) = (h.parse().ok()?, m.parse().ok()?);
            sign * (h * 3600 + m * 60)
        }
    };
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some(days * 86_400 + hour * 3600 + minute * 60 + second - offset)
}

/// How long an HTTP Digest nonce is good for; after that the client is told `stale` and
/// answers the new one without asking its user again.
pub const NONCE_LIFETIME: Duration = Duration::from_secs(300);

/// An HTTP Digest nonce made at `now` (seconds): the time and a MAC over it, so the
/// device needs to remember nothing to check it.
pub fn http_nonce(key: &[u8], now: u64) -> String {
    format!("{now:x}.{}", nonce_mac(key, now))
}

fn nonce_mac(key: &[u8], at: u64) -> String {
    use hmac::{Hmac, Mac};
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(key).expect("HMAC takes any key");
    mac.update(b"http-digest-nonce.");
    mac.update(at.to_string().as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// The `WWW-Authenticate` value asking for HTTP Digest (RFC 7616, MD5 as every camera
/// client speaks it, qop=auth).
pub fn http_challenge(key: &[u8], now: u64, stale: bool) -> String {
    format!(
        "Digest realm=\"{REALM}\", qop=\"auth\", algorithm=MD5, nonce=\"{}\"{}",
        http_nonce(key, now),
        if stale { ", stale=true" } else { "" }
    )
}

/// The realm of both RTSP and HTTP Digest.
pub const REALM: &str = "edgecam";

/// The fields of an `Authorization: Digest …` header.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DigestAuth {
    pub username: String,
    pub realm: String,
    pub nonce: String,
    pub uri: String,
    pub response: String,
    pub qop: Option<String>,
    pub nc: Option<String>,
    pub cnonce: Option<String>,
}

/// Reads an `Authorization: Digest …` value; None if it is not one or lacks a field.
pub fn parse_digest(header: &str) -> Option<DigestAuth> {
    let rest = header.trim().strip_prefix("Digest ")?;
    let mut d = DigestAuth::default();
    let mut chars = rest.chars().peekable();
    loop {
        while chars.peek().is_some_and(|c| *c == ',' || c.is_whitespace()) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|c| *c != '=').collect();
        if key.is_empty() {
            break;
        }
        let value: String = if chars.peek() == Some(&'"') {
            chars.next();
            let mut v = String::new();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => v.extend(chars.next()),
                    '"' => break,
                    c => v.push(c),
                }
            }
            v
        } else {
            chars
                .by_ref()
                .take_while(|c| *c != ',')
                .collect::<String>()
                .trim()
                .to_string()
        };
        if value.len() > 1024 {
            return None;
        }
        match key.trim().to_ascii_lowercase().as_str() {
            "username" => d.username = value,
            "realm" => d.realm = value,
            "nonce" => d.nonce = value,
            "uri" => d.uri = value,
            "response" => d.response = value,
            "qop" => d.qop = Some(value),
            "nc" => d.nc = Some(value),
            "cnonce" => d.cnonce = Some(value),
            _ => {}
        }
    }
    (!d.username.is_empty() && !d.nonce.is_empty() && !d.response.is_empty()).then_some(d)
}

/// Why an HTTP Digest answer is not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DigestError {
    /// Not made with the password (or for another request).
    Wrong,
    /// A genuine nonce, but too old: ask again with a fresh one.
    Stale,
}

/// Checks `d` for a request `method` on `uri` against `password`.
pub fn check_digest(
    d: &DigestAuth,
    method: &str,
    uri: &str,
    password: &str,
    key: &[u8],
    now: u64,
) -> Result<(), DigestError> {
    let (at, mac) = d.nonce.split_once('.').ok_or(DigestError::Wrong)?;
    let at = u64::from_str_radix(at, 16).map_err(|_| DigestError::Wrong)?;
    if !equal(mac.as_bytes(), nonce_mac(key, at).as_bytes()) || d.realm != REALM || d.uri != uri {
        return Err(DigestError::Wrong);
    }
    let md5 = |s: String| hex::encode(md5::Md5::digest(s.as_bytes()));
    let ha1 = md5(format!("{}:{REALM}:{password}", d.username));
    let ha2 = md5(format!("{method}:{uri}"));
    let expected = match (&d.qop, &d.nc, &d.cnonce) {
        (Some(q), Some(nc), Some(cn)) if q == "auth" => {
            md5(format!("{ha1}:{}:{nc}:{cn}:auth:{ha2}", d.nonce))
        }
        (None, _, _) => md5(format!("{ha1}:{}:{ha2}", d.nonce)),
        _ => return Err(DigestError::Wrong),
    };
    if !equal(
        d.response.to_ascii_lowercase().as_bytes(),
        expected.as_bytes(),
    ) {
        return Err(DigestError::Wrong);
    }
    if now.saturating_sub(at) > NONCE_LIFETIME.as_secs() || at > now + 60 {
        return Err(DigestError::Stale);
    }
    Ok(())
}

/// Nonces seen recently, so a token captured on the LAN cannot be sent again.
#[derive(Debug, Default)]
pub struct SeenNonces {
    seen: VecDeque<(i64, String)>,
}

impl SeenNonces {
    /// Records `nonce` at `now` (seconds); false if it was seen within the window.
    pub fn first_use(&mut self, nonce: &str, now: i64) -> bool {
        let window = CREATED_WINDOW.as_secs() as i64 * 2;
        while self
            .seen
            .front()
            .is_some_and(|(t, _)| now - t > window || self.seen.len() >= NONCES_KEPT)
        {
            self.seen.pop_front();
        }
        if self.seen.iter().any(|(_, n)| n == nonce) {
            return false;
        }
        self.seen.push_back((now, nonce.to_string()));
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NONCE: &str = "LKqI6G/AikKCQrN0zqZFlg==";
    const CREATED: &str = "2010-09-16T07:50:45Z";

    #[test]
    fn the_digest_is_the_one_onvif_documents() {
        // The ONVIF Application Programmer's Guide's example: user admin, password
        // "userpassword".
        let nonce = base64::engine::general_purpose::STANDARD
            .decode(NONCE)
            .unwrap();
        assert_eq!(
            password_digest(&nonce, CREATED, "userpassword"),
            "tuOSpGlFlIXsozq4HFNeeGeFLEI="
        );
    }

    #[test]
    fn tokens_are_checked_fresh_and_whole() {
        let now = UNIX_EPOCH + Duration::from_secs(parse_date_time(CREATED).unwrap() as u64);
        let token = UsernameToken {
            username: "admin".into(),
            password: "tuOSpGlFlIXsozq4HFNeeGeFLEI=".into(),
            digest: true,
            nonce: Some(NONCE.into()),
            created: Some(CREATED.into()),
        };
        assert_eq!(check_token(&token, "userpassword", now), Ok(()));
        assert_eq!(
            check_token(&token, "otherpassword", now),
            Err(TokenError::Wrong)
        );
        let later = now + Duration::from_secs(301);
        assert_eq!(
            check_token(&token, "userpassword", later),
            Err(TokenError::Stale)
        );
        let incomplete = UsernameToken {
            nonce: None,
            ..token.clone()
        };
        assert_eq!(
            check_token(&incomplete, "userpassword", now),
            Err(TokenError::Incomplete)
        );
        let garbage = UsernameToken {
            nonce: Some("%%%".into()),
            ..token.clone()
        };
        assert_eq!(
            check_token(&garbage, "userpassword", now),
            Err(TokenError::Incomplete)
        );
        let text = UsernameToken {
            password: "userpassword".into(),
            digest: false,
            ..Default::default()
        };
        assert_eq!(check_token(&text, "userpassword", now), Ok(()));
        assert_eq!(
            check_token(&text, "userpassworD", now),
            Err(TokenError::Wrong)
        );
    }

    #[test]
    fn date_times_in_their_forms() {
        assert_eq!(parse_date_time("1970-01-01T00:00:00Z"), Some(0));
        assert_eq!(parse_date_time("2026-12-01T17:43:05Z"), Some(1_796_146_985));
        assert_eq!(
            parse_date_time("2026-12-01T17:43:05.250Z"),
            Some(1_796_146_985)
        );
        assert_eq!(
            parse_date_time("2026-12-01T18:43:05+01:00"),
            Some(1_796_146_985)
        );
        assert_eq!(
            parse_date_time("2026-12-01T16:43:05-01:00"),
            Some(1_796_146_985)
        );
        assert_eq!(parse_date_time("2024-02-29T23:59:59"), Some(1_709_251_199));
        for bad in [
            "",
            "2026-13-01T00:00:00Z",
            "yesterday",
            "2026-12-01",
            "2026-12-01T25:00:00Z",
        ] {
            assert_eq!(parse_date_time(bad), None, "{bad}");
        }
    }

    #[test]
    fn http_digest_as_rfc_2617_computes_it() {
        let key = b"k";
        let nonce = http_nonce(key, 1000);
        // What a client (curl, httpx) answers for user viewer, password "Circle Of Life".
        let md5 = |s: &str| hex::encode(md5::Md5::digest(s.as_bytes()));
        let ha1 = md5("viewer:edgecam:Circle Of Life");
        let ha2 = md5("GET:/snapshot.jpg?width=320");
        let response = md5(&format!("{ha1}:{nonce}:00000001:0a4f113b:auth:{ha2}"));
        let header = format!(
            "Digest username=\"viewer\", realm=\"edgecam\", nonce=\"{nonce}\", \
             uri=\"/snapshot.jpg?width=320\", qop=auth, nc=00000001, cnonce=\"0a4f113b\", \
             response=\"{response}\", algorithm=MD5"
        );
        let d = parse_digest(&header).expect("parsed");
        assert_eq!(
            (d.username.as_str(), d.nc.as_deref()),
            ("viewer", Some("00000001"))
        );
        let uri = "/snapshot.jpg?width=320";
        assert_eq!(
            check_digest(&d, "GET", uri, "Circle Of Life", key, 1010),
            Ok(())
        );
        assert_eq!(
            check_digest(&d, "GET", uri, "circle of life", key, 1010),
            Err(DigestError::Wrong)
        );
        assert_eq!(
            check_digest(&d, "GET", "/other", "Circle Of Life", key, 1010),
            Err(DigestError::Wrong)
        );
        assert_eq!(
            check_digest(&d, "GET", uri, "Circle Of Life", b"other key", 1010),
            Err(DigestError::Wrong)
        );
        assert_eq!(
            check_digest(&d, "GET", uri, "Circle Of Life", key, 1000 + 301),
            Err(DigestError::Stale)
        );
        assert!(http_challenge(key, 5, true).starts_with("Digest realm=\"edgecam\", qop=\"auth\""));
        for bad in [
            "Basic abc",
            "Digest ",
            "Digest username=\"x\"",
            "Digest username=\"unterminated",
        ] {
            assert_eq!(parse_digest(bad), None, "{bad}");
        }
    }

    #[test]
    fn nonces_are_used_once_within_the_window() {
        let mut seen = SeenNonces::default();
        assert!(seen.first_use("a", 1000));
        assert!(!seen.first_use("a", 1200));
        assert!(seen.first_use("b", 1200));
        // Long after, the window has passed.
        assert!(seen.first_use("a", 1000 + 601));
    }

    #[test]
    fn entries_follow_their_hash_and_the_file_is_private() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(FILE);
        let mut store = Store::load(&path, &[("viewer", Some("$h1"))]);
        assert_eq!(store.password("viewer"), None);
        assert!(store.learn("viewer", "$h1", "watch-me-please").unwrap());
        assert!(!store.learn("viewer", "$h1", "watch-me-please").unwrap());
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = Store::load(&path, &[("viewer", Some("$h1")), ("admin", None)]);
        assert_eq!(again.password("viewer"), Some("watch-me-please"));
        // The password changed (a new hash): the kept one is no longer used.
        let changed = Store::load(&path, &[("viewer", Some("$h2"))]);
        assert_eq!(changed.password("viewer"), None);
        // A file that is not ours is an empty store, not a panic.
        std::fs::write(&path, b"{not json").unwrap();
        assert_eq!(
            Store::load(&path, &[("viewer", Some("$h1"))])
                .users()
                .count(),
            0
        );
    }
}
