//! Who may watch and who may control. Two optional passwords, stored as argon2 hashes:
//! the viewer password guards the page, the signaling WebSocket and WHEP; the admin
//! password guards presenting, WHIP, start/stop and settings (and lets its holder watch).
//! With neither set the camera is open to everyone on the LAN.
//!
//! A browser logs in once with a form and gets a session cookie: `role.expiry.mac`, an
//! HMAC over the role, the expiry and the current password hash, keyed by a secret kept
//! in the state directory. So sessions survive daemon restarts, and changing a password
//! ends every session made with the old one. Tools send HTTP Basic auth instead.
//! NVRs log in with RTSP Digest and ONVIF UsernameToken instead, checked against the
//! passwords kept for them ([`crate::nvr_credentials`]). Failed passwords, of every
//! kind, are rate-limited per client address (per /64 for IPv6).

use argon2::Argon2;
use argon2::password_hash::rand_core::{OsRng, RngCore};
use argon2::password_hash::{PasswordHash, PasswordHasher, SaltString};
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The session cookie's name.
pub const COOKIE: &str = "edgecam_session";
/// How long a login lasts.
pub const SESSION: Duration = Duration::from_secs(30 * 24 * 3600);
/// Failed passwords allowed per address within [`FAILURE_WINDOW`].
pub const MAX_FAILURES: u32 = 5;
pub const FAILURE_WINDOW: Duration = Duration::from_secs(60);
/// Shortest password accepted when one is set (provisioning, `edgecam hash-password`).
pub const MIN_PASSWORD_CHARS: usize = 8;
pub const MAX_PASSWORD_CHARS: usize = 128;
/// Passwords waiting for the verifier thread, from all addresses together; more are
/// answered "too many" at once instead of queueing minutes of argon2 work.
const VERIFY_QUEUE: usize = 16;

/// What a credential grants. An admin may do everything a viewer may.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    Viewer,
    Admin,
}

impl Role {
    fn name(self) -> &'static str {
        match self {
            Role::Viewer => "viewer",
            Role::Admin => "admin",
        }
    }
}

/// Why a request was not let in.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Denied {
    /// No credential, or one that does not grant what is needed.
    Unauthorized,
    /// A wrong password.
    BadPassword,
    /// Too many wrong passwords from this address; try again after this long.
    TooMany(Duration),
    /// An HTTP Digest answer to an expired nonce (not a wrong password): ask again.
    Stale,
}

/// The configured passwords (argon2 PHC strings), from `[auth]`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuthConfig {
    pub viewer_password_hash: Option<String>,
    pub admin_password_hash: Option<String>,
}

pub struct Auth {
    /// The passwords in effect; the settings page may change them while the daemon runs.
    config: std::sync::RwLock<AuthConfig>,
    /// Where the NVR passwords are kept (read again when the passwords change).
    nvr_path: std::path::PathBuf,
    /// Signs session cookies; kept in the state directory so logins survive restarts.
    key: [u8; 32],
    /// SHA-256 of passwords already verified, so Basic auth does not run argon2
    /// (tens of milliseconds, 19 MiB) on every request. Bounded.
    verified: Mutex<HashMap<[u8; 32], Role>>,
    limiter: Mutex<Limiter>,
    /// One thread runs every argon2 verification, one at a time: a login flood cannot
    /// take every core, and the 19 MiB each needs is reused by that thread's allocator
    /// instead of being kept once per blocking-pool thread (which grew RSS by 19 MiB per
    /// thread that ever verified).
    verifier: std::sync::mpsc::SyncSender<VerifyJob>,
    /// The passwords NVR logins are checked against; `nvr_generation` counts changes,
    /// so the RTSP server knows when to take them again.
    nvr: Mutex<crate::nvr_credentials::Store>,
    nvr_generation: std::sync::atomic::AtomicU64,
    nonces: Mutex<crate::nvr_credentials::SeenNonces>,
}

/// A password to check against the configured hashes, and where the answer goes.
struct VerifyJob {
    password: String,
    candidates: [(Role, Option<String>); 2],
    reply: tokio::sync::oneshot::Sender<Option<Role>>,
}

fn spawn_verifier() -> std::sync::mpsc::SyncSender<VerifyJob> {
    let (tx, rx) = std::sync::mpsc::sync_channel::<VerifyJob>(VERIFY_QUEUE);
    let spawned = std::thread::Builder::new()
        .name("edgecam-verify".into())
        .spawn(move || {
            // argon2's working memory, allocated on the first check and reused by every
            // later one, so the daemon's memory does not move with login attempts.
            let mut memory = Vec::new();
            // Ends when the Auth (the only sender) is dropped.
            for job in rx {
                // Its client hung up while it waited: not worth 19 MiB of hashing.
                if job.reply.is_closed() {
                    continue;
                }
                let found = job.candidates.into_iter().find_map(|(role, hash)| {
                    hash.filter(|h| verify_in(&job.password, h, &mut memory))
                        .map(|_| role)
                });
                let _ = job.reply.send(found);
            }
        });
    if let Err(e) = spawned {
        // Then every check finds its reply channel closed: passwords are refused.
        tracing::error!("cannot start the password verifier thread: {e}");
    }
    tx
}

impl Auth {
    /// `state_dir` holds the session key (made on first start, mode 0600). If it cannot
    /// be written, a key for this run only is used and logins last until the restart.
    pub fn new(config: AuthConfig, state_dir: &Path) -> Self {
        let path = state_dir.join("session-key");
        let key = match std::fs::read(&path) {
            Ok(bytes) if bytes.len() == 32 => {
                let mut k = [0u8; 32];
                k.copy_from_slice(&bytes);
                k
            }
            _ => {
                let mut k = [0u8; 32];
                OsRng.fill_bytes(&mut k);
                if let Err(e) = write_secret(&path, &k) {
                    tracing::warn!(path = %path.display(), error = %e,
                        "cannot keep the session key; logins will not survive a restart");
                }
                k
            }
        };
        let nvr_path = state_dir.join(crate::nvr_credentials::FILE);
        let nvr = nvr_store(&nvr_path, &config);
        Self {
            config: std::sync::RwLock::new(config),
            nvr_path,
            key,
            verified: Mutex::new(HashMap::new()),
            limiter: Mutex::new(Limiter::default()),
            verifier: spawn_verifier(),
            nvr: Mutex::new(nvr),
            nvr_generation: Default::default(),
            nonces: Default::default(),
        }
    }

    /// The passwords in effect.
    pub fn config(&self) -> AuthConfig {
        self.config
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// New passwords, in effect at once: sessions and NVR passwords made with the old
    /// ones stop working.
    pub fn set_config(&self, config: AuthConfig) {
        if self.config() == config {
            return;
        }
        *self.nvr.lock().unwrap_or_else(|p| p.into_inner()) = nvr_store(&self.nvr_path, &config);
        *self.config.write().unwrap_or_else(|p| p.into_inner()) = config;
        self.lock_verified().clear();
        self.nvr_generation
            .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
        tracing::info!("passwords changed");
    }

    /// Whether watching needs a credential (a viewer password is set). NVR protocols
    /// ask for one exactly then.
    pub fn watching_needs_credentials(&self) -> bool {
        !self.grants(None, Role::Viewer)
    }

    /// The NVR users (`viewer`, `admin`) whose passwords are known, and how many times
    /// they have changed since start.
    pub fn nvr_users(&self) -> (u64, Vec<(String, String)>) {
        let generation = self
            .nvr_generation
            .load(std::sync::atomic::Ordering::Acquire);
        let store = self.nvr.lock().unwrap_or_else(|p| p.into_inner());
        let users = store
            .users()
            .map(|(u, p)| (u.to_string(), p.to_string()))
            .collect();
        (generation, users)
    }

    /// Keeps a password that was just verified for NVR logins.
    fn learn(&self, role: Role, password: &str) {
        let config = self.config();
        let hash = match role {
            Role::Viewer => &config.viewer_password_hash,
            Role::Admin => &config.admin_password_hash,
        };
        let Some(hash) = hash else { return };
        let mut store = self.nvr.lock().unwrap_or_else(|p| p.into_inner());
        match store.learn(role.name(), hash, password) {
            Ok(false) => {}
            Ok(true) => {
                self.nvr_generation
                    .fetch_add(1, std::sync::atomic::Ordering::AcqRel);
                tracing::info!(
                    user = role.name(),
                    "password kept for RTSP and ONVIF logins"
                );
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot keep the password for RTSP and ONVIF logins")
            }
        }
    }

    /// The `WWW-Authenticate` value asking for HTTP Digest now.
    pub fn digest_challenge(&self, stale: bool) -> String {
        crate::nvr_credentials::http_challenge(&self.key, unix_now(), stale)
    }

    fn check_digest(
        &self,
        d: &crate::nvr_credentials::DigestAuth,
        (method, uri): (&str, &str),
        from: IpAddr,
    ) -> Result<Role, Denied> {
        use crate::nvr_credentials::DigestError;
        if let Some(wait) = self.attempt_blocked(from) {
            return Err(Denied::TooMany(wait));
        }
        let checked = match self.nvr_user(&d.username) {
            Some((role, p)) => {
                crate::nvr_credentials::check_digest(d, method, uri, &p, &self.key, unix_now())
                    .map(|()| role)
            }
            None => Err(DigestError::Wrong),
        };
        match checked {
            Ok(role) => {
                self.attempt_succeeded(from);
                Ok(role)
            }
            Err(DigestError::Stale) => Err(Denied::Stale),
            Err(DigestError::Wrong) => {
                self.attempt_failed(from);
                Err(Denied::BadPassword)
            }
        }
    }

    /// The role and kept password of an NVR user name (`viewer`, `admin`); None for
    /// another name, or a password not kept yet (which the log says).
    fn nvr_user(&self, name: &str) -> Option<(Role, String)> {
        let role = match name {
            "viewer" => Role::Viewer,
            "admin" => Role::Admin,
            _ => return None,
        };
        let store = self.nvr.lock().unwrap_or_else(|p| p.into_inner());
        let password = store.password(role.name()).map(str::to_string);
        if password.is_none() {
            tracing::warn!(
                user = role.name(),
                "an NVR login for a password not kept yet: log in once on the camera's page"
            );
        }
        Some((role, password?))
    }

    /// Whether `from` must wait before trying another credential.
    pub fn attempt_blocked(&self, from: IpAddr) -> Option<Duration> {
        self.lock_limiter().blocked(from, Instant::now())
    }

    /// A wrong credential from `from` (counted like a wrong password on the page).
    pub fn attempt_failed(&self, from: IpAddr) {
        self.lock_limiter().failed(from, Instant::now());
    }

    /// A right credential from `from`.
    pub fn attempt_succeeded(&self, from: IpAddr) {
        self.lock_limiter().succeeded(from);
    }

    /// The role an ONVIF UsernameToken grants (user `viewer` or `admin`), rate-limited
    /// per address like passwords.
    pub fn check_token(
        &self,
        token: &crate::nvr_credentials::UsernameToken,
        from: IpAddr,
        now: SystemTime,
    ) -> Result<Role, Denied> {
        if let Some(wait) = self.attempt_blocked(from) {
            return Err(Denied::TooMany(wait));
        }
        let checked = self.nvr_user(&token.username).and_then(|(role, password)| {
            crate::nvr_credentials::check_token(token, &password, now)
                .ok()
                .map(|()| role)
        });
        let fresh = || {
            let secs = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
            let nonce = token.nonce.as_deref().unwrap_or_default();
            !token.digest
                || self
                    .nonces
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .first_use(nonce, secs)
        };
        match checked {
            Some(role) if fresh() => {
                self.attempt_succeeded(from);
                Ok(role)
            }
            _ => {
                self.attempt_failed(from);
                Err(Denied::BadPassword)
            }
        }
    }

    /// No password at all: everyone on the network may do everything.
    pub fn is_open(&self) -> bool {
        let c = self.config();
        c.viewer_password_hash.is_none() && c.admin_password_hash.is_none()
    }

    /// Whether someone holding `have` may do what needs `need`. Admin actions fall back
    /// to the viewer password when no admin password is set.
    pub fn grants(&self, have: Option<Role>, need: Role) -> bool {
        let c = self.config();
        let viewer = c.viewer_password_hash.is_some();
        let admin = c.admin_password_hash.is_some();
        match need {
            Role::Viewer if !viewer => true,
            Role::Viewer => have.is_some(),
            Role::Admin if admin => have == Some(Role::Admin),
            Role::Admin if viewer => have.is_some(),
            Role::Admin => true,
        }
    }

    /// The role a password unlocks (admin checked first), rate-limited per address.
    pub async fn check_password(&self, password: &str, from: IpAddr) -> Result<Role, Denied> {
        let now = Instant::now();
        if let Some(wait) = self.lock_limiter().blocked(from, now) {
            return Err(Denied::TooMany(wait));
        }
        // Longer than any password that can be set: wrong, and not worth hashing.
        if password.chars().count() > MAX_PASSWORD_CHARS {
            self.lock_limiter().failed(from, now);
            return Err(Denied::BadPassword);
        }
        let digest: [u8; 32] = Sha256::digest(password.as_bytes()).into();
        let cached = self.lock_verified().get(&digest).copied();
        let role = match cached {
            Some(role) => Some(role),
            None => {
                let found = self.verify(password, from, now).await?;
                if let Some(role) = found {
                    self.remember(digest, role);
                    self.learn(role, password);
                }
                found
            }
        };
        match role {
            Some(role) => {
                self.lock_limiter().succeeded(from);
                Ok(role)
            }
            None => {
                self.lock_limiter().failed(from, now);
                Err(Denied::BadPassword)
            }
        }
    }

    /// Runs argon2 on the verifier thread. Checks still running count against the
    /// address's allowance like failures do, so opening many connections at once buys
    /// no more guesses than trying one after another.
    async fn verify(
        &self,
        password: &str,
        from: IpAddr,
        now: Instant,
    ) -> Result<Option<Role>, Denied> {
        let _checking = {
            let mut limiter = self.lock_limiter();
            if let Some(wait) = limiter.blocked(from, now) {
                return Err(Denied::TooMany(wait));
            }
            limiter.begin(from);
            Checking { auth: self, from }
        };
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = VerifyJob {
            password: password.to_owned(),
            candidates: [
                (Role::Admin, self.config().admin_password_hash),
                (Role::Viewer, self.config().viewer_password_hash),
            ],
            reply,
        };
        match self.verifier.try_send(job) {
            Ok(()) => Ok(answer.await.ok().flatten()),
            Err(std::sync::mpsc::TrySendError::Full(_)) => {
                Err(Denied::TooMany(Duration::from_secs(1)))
            }
            // A verifier that is gone refuses (fails closed).
            Err(std::sync::mpsc::TrySendError::Disconnected(_)) => Ok(None),
        }
    }

    fn remember(&self, digest: [u8; 32], role: Role) {
        let mut cache = self.lock_verified();
        if cache.len() >= 64 {
            cache.clear();
        }
        cache.insert(digest, role);
    }

    /// The role of a session cookie value, if it is genuine and not expired.
    pub fn session_role(&self, value: &str) -> Option<Role> {
        let mut parts = value.split('.');
        let (role, expiry, mac) = (parts.next()?, parts.next()?, parts.next()?);
        if parts.next().is_some() {
            return None;
        }
        let role = match role {
            "viewer" => Role::Viewer,
            "admin" => Role::Admin,
            _ => return None,
        };
        let expiry: u64 = expiry.parse().ok()?;
        if expiry <= unix_now() {
            return None;
        }
        // A SHA-256 MAC is 64 hex digits; anything longer is not worth decoding.
        if mac.len() > 64 {
            return None;
        }
        let mac = hex::decode(mac).ok()?;
        self.mac(role, expiry).verify_slice(&mac).ok()?;
        Some(role)
    }

    /// A fresh session cookie value for `role`.
    pub fn new_session(&self, role: Role) -> String {
        let expiry = unix_now() + SESSION.as_secs();
        let mac = self.mac(role, expiry).finalize().into_bytes();
        format!("{}.{expiry}.{}", role.name(), hex::encode(mac))
    }

    /// The role granted by a request's credentials: the session cookie, else HTTP Basic
    /// (any user name; the password decides), else HTTP Digest (user `viewer` or
    /// `admin`, for NVRs fetching snapshots; `request` is its method and URI).
    /// `Ok(None)` when it carries none.
    pub async fn identify(
        &self,
        cookie_header: Option<&str>,
        authorization: Option<&str>,
        request: (&str, &str),
        from: IpAddr,
    ) -> Result<Option<Role>, Denied> {
        if let Some(role) = cookie_header
            .and_then(|h| cookie_value(h, COOKIE))
            .and_then(|v| self.session_role(v))
        {
            return Ok(Some(role));
        }
        if let Some(digest) = authorization.and_then(crate::nvr_credentials::parse_digest) {
            return self.check_digest(&digest, request, from).map(Some);
        }
        match authorization.and_then(basic_password) {
            Some(password) => self.check_password(&password, from).await.map(Some),
            None => Ok(None),
        }
    }

    fn mac(&self, role: Role, expiry: u64) -> Hmac<Sha256> {
        // A key of any length is accepted by HMAC.
        let mut mac = Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC takes any key");
        let config = self.config();
        let hash = match role {
            Role::Viewer => &config.viewer_password_hash,
            Role::Admin => &config.admin_password_hash,
        };
        mac.update(role.name().as_bytes());
        mac.update(b".");
        mac.update(expiry.to_string().as_bytes());
        mac.update(b".");
        mac.update(hash.as_deref().unwrap_or("").as_bytes());
        mac
    }

    fn lock_limiter(&self) -> std::sync::MutexGuard<'_, Limiter> {
        self.limiter.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn lock_verified(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Role>> {
        self.verified.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The NVR passwords kept for `config`'s hashes.
fn nvr_store(path: &Path, config: &AuthConfig) -> crate::nvr_credentials::Store {
    crate::nvr_credentials::Store::load(
        path,
        &[
            (Role::Viewer.name(), config.viewer_password_hash.as_deref()),
            (Role::Admin.name(), config.admin_password_hash.as_deref()),
        ],
    )
}

/// Why a password or a password hash cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PasswordError {
    #[error("a password has {MIN_PASSWORD_CHARS} to {MAX_PASSWORD_CHARS} characters")]
    Length,
    #[error("a password cannot contain control characters")]
    Control,
    #[error("hashing failed: {0}")]
    Hashing(String),
    #[error(
        "asks more of the board than a login may take (at most {} MiB, {MAX_HASH_PASSES} \
         passes, {MAX_HASH_LANES} lanes): make one with `edgecam hash-password`",
        MAX_HASH_KIB / 1024
    )]
    CostlyHash,
    #[error(
        "is not an argon2 hash: make one with `edgecam hash-password`, or put the plain \
         password in the boot partition's [provisioning] section"
    )]
    NotAHash,
}

/// Hashes a password for `[auth]` (argon2id, random salt, the crate's default cost).
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    check_password_text(password)?;
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| PasswordError::Hashing(e.to_string()))
}

/// Whether a plain password is acceptable to set.
pub fn check_password_text(password: &str) -> Result<(), PasswordError> {
    let n = password.chars().count();
    if !(MIN_PASSWORD_CHARS..=MAX_PASSWORD_CHARS).contains(&n) {
        return Err(PasswordError::Length);
    }
    if password.chars().any(char::is_control) {
        return Err(PasswordError::Control);
    }
    Ok(())
}

/// Whether `text` is an argon2 hash as `[auth]` needs it.
pub fn check_hash(text: &str) -> Result<(), PasswordError> {
    match PasswordHash::new(text) {
        Ok(h) if h.algorithm.as_str().starts_with("argon2") && h.hash.is_some() => {
            match argon2::Params::try_from(&h) {
                Ok(params) if affordable(&params) => Ok(()),
                _ => Err(PasswordError::CostlyHash),
            }
        }
        _ => Err(PasswordError::NotAHash),
    }
}

/// The costliest hash a login may run: argon2 allocates its whole memory cost for each
/// check, and a hash asking for gigabytes would have the first login kill a 512 MiB
/// board's daemon. `edgecam hash-password` makes 19 MiB, 2 passes, 1 lane.
const MAX_HASH_KIB: u32 = 64 * 1024;
const MAX_HASH_PASSES: u32 = 16;
const MAX_HASH_LANES: u32 = 8;

fn affordable(params: &argon2::Params) -> bool {
    params.m_cost() <= MAX_HASH_KIB
        && params.t_cost() <= MAX_HASH_PASSES
        && params.p_cost() <= MAX_HASH_LANES
}

/// Like [`verify`], in caller-kept working memory (grown to the hash's cost once).
fn verify_in(password: &str, hash: &str, memory: &mut Vec<argon2::Block>) -> bool {
    let Ok(parsed) = PasswordHash::new(hash) else {
        return false;
    };
    let (Some(salt), Some(expected)) = (parsed.salt, parsed.hash) else {
        return false;
    };
    let Ok(params) = argon2::Params::try_from(&parsed) else {
        return false;
    };
    if !affordable(&params) {
        return false;
    }
    let Ok(algorithm) = argon2::Algorithm::try_from(parsed.algorithm) else {
        return false;
    };
    let version = match parsed.version.map(argon2::Version::try_from) {
        None => argon2::Version::default(),
        Some(Ok(v)) => v,
        Some(Err(_)) => return false,
    };
    let mut salt_buf = [0u8; 64];
    let Ok(salt) = salt.decode_b64(&mut salt_buf) else {
        return false;
    };
    if memory.len() < params.block_count() {
        memory.resize(params.block_count(), argon2::Block::default());
    }
    let blocks = params.block_count();
    let mut out = vec![0u8; expected.len()];
    let argon = Argon2::new(algorithm, version, params);
    if argon
        .hash_password_into_with_memory(password.as_bytes(), salt, &mut out, &mut memory[..blocks])
        .is_err()
    {
        return false;
    }
    // Output's equality is constant-time.
    argon2::password_hash::Output::new(&out).is_ok_and(|computed| computed == expected)
}

/// The password of an `Authorization: Basic …` header.
pub fn basic_password(header: &str) -> Option<String> {
    let (scheme, rest) = header.trim().split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(rest.trim())
        .ok()?;
    let text = String::from_utf8(bytes).ok()?;
    let (_user, password) = text.split_once(':')?;
    Some(password.to_owned())
}

/// One cookie's value from a `Cookie` header.
pub fn cookie_value<'a>(header: &'a str, name: &str) -> Option<&'a str> {
    header
        .split(';')
        .filter_map(|c| c.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v)
}

/// Failed passwords per address within a sliding window. Bounded: when full, stale
/// entries go first, then everything (on a LAN, losing the count beats locking out).
#[derive(Default)]
pub struct Limiter {
    failures: HashMap<IpAddr, (u32, Instant)>,
    /// Passwords from each address being verified right now (entries at 0 are removed).
    checking: HashMap<IpAddr, u32>,
}

/// One password under verification; counted until dropped, also when its request is.
struct Checking<'a> {
    auth: &'a Auth,
    from: IpAddr,
}

impl Drop for Checking<'_> {
    fn drop(&mut self) {
        self.auth.lock_limiter().end(self.from);
    }
}

const LIMITER_ENTRIES: usize = 4096;

impl Limiter {
    /// How long `from` must wait, if it is locked out: its recent failures and the
    /// checks it has running together reach [`MAX_FAILURES`].
    pub fn blocked(&self, from: IpAddr, now: Instant) -> Option<Duration> {
        let key = bucket(from);
        let (failed, wait) = match self.failures.get(&key) {
            Some((count, since)) => {
                let elapsed = now.saturating_duration_since(*since);
                match FAILURE_WINDOW.checked_sub(elapsed) {
                    Some(left) if !left.is_zero() => (*count, left),
                    _ => (0, Duration::ZERO),
                }
            }
            None => (0, Duration::ZERO),
        };
        let checking = self.checking.get(&key).copied().unwrap_or(0);
        (failed.saturating_add(checking) >= MAX_FAILURES).then(|| wait.max(Duration::from_secs(1)))
    }

    pub fn begin(&mut self, from: IpAddr) {
        *self.checking.entry(bucket(from)).or_default() += 1;
    }

    pub fn end(&mut self, from: IpAddr) {
        let key = bucket(from);
        if let Some(n) = self.checking.get_mut(&key) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.checking.remove(&key);
            }
        }
    }

    pub fn failed(&mut self, from: IpAddr, now: Instant) {
        if self.failures.len() >= LIMITER_ENTRIES {
            self.failures
                .retain(|_, (_, since)| now.saturating_duration_since(*since) < FAILURE_WINDOW);
            if self.failures.len() >= LIMITER_ENTRIES {
                self.failures.clear();
            }
        }
        let entry = self.failures.entry(bucket(from)).or_insert((0, now));
        if now.saturating_duration_since(entry.1) >= FAILURE_WINDOW {
            *entry = (0, now);
        }
        entry.0 += 1;
    }

    pub fn succeeded(&mut self, from: IpAddr) {
        self.failures.remove(&bucket(from));
    }
}

/// IPv6 clients usually own a whole /64: count them per /64.
fn bucket(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => {
            let s = v6.segments();
            IpAddr::V6(std::net::Ipv6Addr::new(s[0], s[1], s[2], s[3], 0, 0, 0, 0))
        }
        v4 => v4,
    }
}

/// Writes a file only its owner may read (keys), whole or not at all: a temporary file
/// then a rename. Makes the directory if needed.
pub fn write_secret(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    crate::atomic_file::write(path, bytes, 0o600)
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use argon2::password_hash::PasswordVerifier;

    #[test]
    fn reused_memory_verifies_exactly_as_the_crate_does() {
        let cheap = argon2::Params::new(4096, 1, 1, None).unwrap();
        let salt = SaltString::generate(&mut OsRng);
        let hashes = [
            hash_password("correct horse battery").unwrap(),
            Argon2::new(argon2::Algorithm::Argon2id, argon2::Version::V0x13, cheap)
                .hash_password(b"correct horse battery", &salt)
                .unwrap()
                .to_string(),
        ];
        let mut memory = Vec::new();
        for hash in &hashes {
            let parsed = PasswordHash::new(hash).unwrap();
            for password in ["correct horse battery", "correct horse batterY", ""] {
                let crate_says = Argon2::default()
                    .verify_password(password.as_bytes(), &parsed)
                    .is_ok();
                assert_eq!(verify_in(password, hash, &mut memory), crate_says, "{hash}");
            }
        }
        // Grown once to the largest cost (19 MiB default), then reused.
        assert_eq!(memory.len(), argon2::Params::default().block_count());
        for broken in [
            "",
            "$argon2id$",
            "not a hash",
            "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$",
        ] {
            assert!(!verify_in("x", broken, &mut memory), "{broken}");
        }
    }

    use super::*;

    fn auth(viewer: Option<&str>, admin: Option<&str>) -> (Auth, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap();
        let config = AuthConfig {
            viewer_password_hash: viewer.map(|p| hash_password(p).unwrap()),
            admin_password_hash: admin.map(|p| hash_password(p).unwrap()),
        };
        (Auth::new(config, dir.path()), dir)
    }

    const HOME: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 168, 1, 20));

    #[test]
    fn who_may_do_what() {
        let (open, _d) = auth(None, None);
        assert!(open.is_open());
        assert!(open.grants(None, Role::Viewer) && open.grants(None, Role::Admin));

        let (viewer_only, _d) = auth(Some("watch-me-1"), None);
        assert!(!viewer_only.grants(None, Role::Viewer));
        assert!(viewer_only.grants(Some(Role::Viewer), Role::Viewer));
        assert!(
            viewer_only.grants(Some(Role::Viewer), Role::Admin),
            "falls back"
        );
        assert!(!viewer_only.grants(None, Role::Admin));

        let (both, _d) = auth(Some("watch-me-1"), Some("control-me-2"));
        assert!(!both.grants(Some(Role::Viewer), Role::Admin));
        assert!(both.grants(Some(Role::Admin), Role::Admin));
        assert!(both.grants(Some(Role::Admin), Role::Viewer));

        let (admin_only, _d) = auth(None, Some("control-me-2"));
        assert!(admin_only.grants(None, Role::Viewer), "watching stays open");
        assert!(!admin_only.grants(None, Role::Admin));
    }

    #[tokio::test]
    async fn passwords_sessions_and_basic() {
        let (a, dir) = auth(Some("watch-me-1"), Some("control-me-2"));
        assert_eq!(a.check_password("watch-me-1", HOME).await, Ok(Role::Viewer));
        assert_eq!(
            a.check_password("control-me-2", HOME).await,
            Ok(Role::Admin)
        );
        assert_eq!(
            a.check_password("nope-nope", HOME).await,
            Err(Denied::BadPassword)
        );

        let cookie = a.new_session(Role::Admin);
        assert_eq!(a.session_role(&cookie), Some(Role::Admin));
        let forged = cookie.replacen("admin", "viewer", 1);
        assert_eq!(a.session_role(&forged), None, "role is under the MAC");
        for junk in [
            "",
            "admin",
            "admin.1.zz",
            "admin.99999999999.00",
            "a.b.c.d",
            "é.é.é",
        ] {
            assert_eq!(a.session_role(junk), None, "{junk:?}");
        }
        // The key is kept: a restarted daemon accepts the same cookie.
        let again = Auth::new(a.config(), dir.path());
        assert_eq!(again.session_role(&cookie), Some(Role::Admin));
        // A new password ends sessions made with the old one.
        let changed = Auth::new(
            AuthConfig {
                admin_password_hash: Some(hash_password("control-me-3").unwrap()),
                ..a.config()
            },
            dir.path(),
        );
        assert_eq!(changed.session_role(&cookie), None);

        let header = format!("{COOKIE}={cookie}; other=1");
        assert_eq!(
            a.identify(Some(&header), None, ("GET", "/"), HOME).await,
            Ok(Some(Role::Admin))
        );
        let basic = format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode("anyone:watch-me-1")
        );
        assert_eq!(
            a.identify(None, Some(&basic), ("GET", "/"), HOME).await,
            Ok(Some(Role::Viewer))
        );
        assert_eq!(
            a.identify(None, Some("Bearer x"), ("GET", "/"), HOME).await,
            Ok(None)
        );
        assert_eq!(
            a.identify(Some("x=y"), None, ("GET", "/"), HOME).await,
            Ok(None)
        );
    }

    #[tokio::test]
    async fn wrong_passwords_are_rate_limited_per_address() {
        let (a, _d) = auth(Some("watch-me-1"), None);
        for _ in 0..MAX_FAILURES {
            assert_eq!(
                a.check_password("wrong-one", HOME).await,
                Err(Denied::BadPassword)
            );
        }
        assert!(matches!(
            a.check_password("watch-me-1", HOME).await,
            Err(Denied::TooMany(w)) if w <= FAILURE_WINDOW
        ));
        let other: IpAddr = "192.168.1.21".parse().unwrap();
        assert_eq!(
            a.check_password("watch-me-1", other).await,
            Ok(Role::Viewer)
        );
    }

    #[test]
    fn limiter_window_and_ipv6_buckets() {
        let mut l = Limiter::default();
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8:1:2::10".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2::99".parse().unwrap();
        for _ in 0..MAX_FAILURES {
            l.failed(a, t0);
        }
        assert!(l.blocked(b, t0).is_some(), "same /64");
        assert!(l.blocked(b, t0 + FAILURE_WINDOW).is_none(), "window over");
        l.failed(a, t0 + FAILURE_WINDOW);
        assert!(
            l.blocked(a, t0 + FAILURE_WINDOW).is_none(),
            "count restarted"
        );
        l.succeeded(a);
        assert!(l.blocked(a, t0).is_none());

        // Checks still running count too, and stop counting when they end.
        for _ in 0..MAX_FAILURES {
            assert!(l.blocked(a, t0).is_none());
            l.begin(a);
        }
        assert_eq!(l.blocked(b, t0), Some(Duration::from_secs(1)));
        l.end(b);
        assert!(l.blocked(a, t0).is_none());
        for _ in 0..MAX_FAILURES {
            l.end(a);
        }
        assert!(l.checking.is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn many_guesses_at_once_get_no_more_than_one_after_another() {
        let (a, _d) = auth(Some("watch-me-1"), None);
        let a = std::sync::Arc::new(a);
        let guesses: Vec<_> = (0..40)
            .map(|i| {
                let a = a.clone();
                tokio::spawn(async move { a.check_password(&format!("guess-{i}"), HOME).await })
            })
            .collect();
        let mut wrong = 0;
        for g in guesses {
            match g.await.unwrap() {
                Err(Denied::BadPassword) => wrong += 1,
                Err(Denied::TooMany(_)) => {}
                other => panic!("{other:?}"),
            }
        }
        assert!(wrong <= MAX_FAILURES, "{wrong} passwords were tried");
        assert!(wrong >= 1);
        // Too long to be a password: refused without hashing, and counted.
        let (b, _d) = auth(Some("watch-me-1"), None);
        let long = "x".repeat(MAX_PASSWORD_CHARS + 1);
        assert_eq!(
            b.check_password(&long, HOME).await,
            Err(Denied::BadPassword)
        );
        assert_eq!(b.lock_limiter().failures[&HOME].0, 1);
    }

    #[test]
    fn hashes_and_headers() {
        let h = hash_password("correct horse").unwrap();
        assert!(h.starts_with("$argon2id$"));
        assert!(check_hash(&h).is_ok());
        assert!(check_hash("correct horse").is_err());
        // Valid argon2, but 4 GiB per check: refused, and never run.
        let greedy = "$argon2id$v=19$m=4194304,t=2,p=1$c2FsdHNhbHRzYWx0$MTIzNDU2Nzg5MDEyMzQ1Njc4OTAxMjM0NTY3ODkwMTI";
        assert!(PasswordHash::new(greedy).is_ok());
        assert!(
            check_hash(greedy)
                .unwrap_err()
                .to_string()
                .contains("64 MiB")
        );
        assert!(!verify_in("x", greedy, &mut Vec::new()));
        assert!(check_hash("$2b$12$abcdefghijklmnopqrstuv").is_err());
        assert!(hash_password("short").is_err());
        assert!(hash_password("tab\there!").is_err());
        assert_eq!(basic_password("Basic dTpwOnE="), Some("p:q".into()));
        assert_eq!(basic_password("Basic !!!"), None);
        assert_eq!(basic_password("Basic"), None);
        assert_eq!(
            cookie_value("a=1; edgecam_session=xyz", COOKIE),
            Some("xyz")
        );
    }
}
