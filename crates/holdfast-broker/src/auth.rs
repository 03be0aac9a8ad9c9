//! Who may connect: the password file (salted Argon2id hashes), anonymous access, client
//! certificates as identities, failed-login slow-down, and connection limits per source address.
//!
//! Hash verification is slow on purpose; it runs on the blocking thread pool behind a semaphore, so
//! a login storm costs at most a few threads and never stalls the tasks that route messages.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use argon2::Argon2;
use bytes::Bytes;
use holdfast_proto::ReasonCode;
use parking_lot::{Mutex, RwLock};
use tokio::sync::Semaphore;
use tracing::{info, warn};

use crate::config::{AuthConfig, ConnLimits};
use crate::stats::Stats;

/// Concurrent hash verifications; each Argon2id verification holds ~19 MiB for tens of ms.
const VERIFY_SLOTS: usize = 4;
/// Failed logins from one address are forgotten after this long without another.
const FAILURE_MEMORY: Duration = Duration::from_secs(300);
/// The longest a refusal is delayed for an address that keeps failing.
const MAX_FAILURE_DELAY: Duration = Duration::from_secs(5);
/// Per-address entries kept before idle ones are swept.
const MAX_TRACKED_ADDRESSES: usize = 65_536;

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} line {line}: {why}")]
    Line {
        path: PathBuf,
        line: usize,
        why: String,
    },
}

/// A password file: `user:$argon2id$...` lines; `#` starts a comment line.
#[derive(Debug, Default, Clone)]
pub struct PasswordFile {
    entries: Vec<(String, String)>,
}

impl PasswordFile {
    pub fn load(path: &Path) -> Result<PasswordFile, AuthError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(source) => {
                return Err(AuthError::Read {
                    path: path.to_path_buf(),
                    source,
                })
            }
        };
        PasswordFile::parse(&text).map_err(|(line, why)| AuthError::Line {
            path: path.to_path_buf(),
            line,
            why,
        })
    }

    /// Parses the file's text; `Err((line, why))` names the first bad line.
    pub fn parse(text: &str) -> Result<PasswordFile, (usize, String)> {
        let mut entries: Vec<(String, String)> = Vec::new();
        for (i, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let Some((user, hash)) = line.split_once(':') else {
                return Err((i + 1, "expected `user:hash`".into()));
            };
            if user.is_empty() {
                return Err((i + 1, "empty user name".into()));
            }
            if let Err(e) = PasswordHash::new(hash) {
                return Err((i + 1, format!("not a PHC password hash: {e}")));
            }
            if entries.iter().any(|(u, _)| u == user) {
                return Err((i + 1, format!("user {user:?} appears twice")));
            }
            entries.push((user.to_string(), hash.to_string()));
        }
        Ok(PasswordFile { entries })
    }

    pub fn get(&self, user: &str) -> Option<&str> {
        self.entries
            .iter()
            .find(|(u, _)| u == user)
            .map(|(_, h)| h.as_str())
    }

    pub fn users(&self) -> impl Iterator<Item = &str> {
        self.entries.iter().map(|(u, _)| u.as_str())
    }

    /// Adds or replaces `user` with a fresh salted hash of `password`.
    pub fn set(&mut self, user: &str, password: &[u8]) {
        let hash = hash_password(password);
        match self.entries.iter_mut().find(|(u, _)| u == user) {
            Some(e) => e.1 = hash,
            None => self.entries.push((user.to_string(), hash)),
        }
    }

    /// Removes `user`; false when it was not there.
    pub fn remove(&mut self, user: &str) -> bool {
        let before = self.entries.len();
        self.entries.retain(|(u, _)| u != user);
        self.entries.len() != before
    }

    pub fn to_text(&self) -> String {
        let mut s = String::new();
        for (u, h) in &self.entries {
            s.push_str(u);
            s.push(':');
            s.push_str(h);
            s.push('\n');
        }
        s
    }
}

/// A salted Argon2id hash (PHC string) of `password`, with the crate's default (OWASP) parameters.
pub fn hash_password(password: &[u8]) -> String {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password, &salt)
        .expect("argon2 with default parameters cannot fail")
        .to_string()
}

/// Checks `password` against a PHC hash string.
pub fn verify_password(hash: &str, password: &[u8]) -> bool {
    match PasswordHash::new(hash) {
        Ok(h) => Argon2::default().verify_password(password, &h).is_ok(),
        Err(_) => false,
    }
}

#[derive(Debug, Default)]
struct IpState {
    connections: usize,
    tokens: f64,
    refilled: Option<Instant>,
    failures: u32,
    last_failure: Option<Instant>,
}

/// Authentication and per-address limits, shared by every listener.
#[derive(Debug)]
pub struct Security {
    cfg: AuthConfig,
    limits: ConnLimits,
    passwords: RwLock<Option<Arc<PasswordFile>>>,
    verifying: Arc<Semaphore>,
    ips: Mutex<HashMap<IpAddr, IpState>>,
    /// A hash verified for unknown users, so that they take as long as known ones.
    dummy_hash: String,
    /// The rules of `acl_file`, shared with the broker logic (its `CoreConfig`).
    acl: Option<Arc<holdfast_core::acl::SharedAcl>>,
}

/// Holds a connection's place in its address's count.
pub struct IpGuard {
    security: Arc<Security>,
    ip: IpAddr,
}

impl Drop for IpGuard {
    fn drop(&mut self) {
        let mut ips = self.security.ips.lock();
        if let Some(s) = ips.get_mut(&self.ip) {
            s.connections = s.connections.saturating_sub(1);
        }
    }
}

impl Security {
    /// Reads the password file, if one is configured.
    pub fn new(cfg: AuthConfig, limits: ConnLimits) -> Result<Security, AuthError> {
        let passwords = match &cfg.password_file {
            Some(path) => Some(Arc::new(PasswordFile::load(path)?)),
            None => None,
        };
        Ok(Security {
            cfg,
            limits,
            passwords: RwLock::new(passwords),
            verifying: Arc::new(Semaphore::new(VERIFY_SLOTS)),
            ips: Mutex::new(HashMap::new()),
            dummy_hash: hash_password(b"holdfast dummy password"),
            acl: None,
        })
    }

    pub fn limits(&self) -> &ConnLimits {
        &self.limits
    }

    /// Re-reads the password file and the ACL file (on SIGHUP); a file that does not load keeps the
    /// previous one. New rules apply to the next PUBLISH or SUBSCRIBE of every session;
    /// subscriptions made under the old rules stay (as in Mosquitto).
    pub fn reload(&self) {
        if let Some(path) = &self.cfg.password_file {
            match PasswordFile::load(path) {
                Ok(p) => {
                    info!(path = %path.display(), users = p.entries.len(), "password file reloaded");
                    *self.passwords.write() = Some(Arc::new(p));
                }
                Err(e) => warn!(error = %e, "password file not reloaded; keeping the previous one"),
            }
        }
        if let (Some(path), Some(acl)) = (&self.cfg.acl_file, &self.acl) {
            match crate::acl_file::load(path) {
                Ok(rules) => {
                    info!(path = %path.display(), rules = rules.rules.len(), "ACL reloaded");
                    acl.replace(rules);
                }
                Err(e) => warn!(error = %e, "ACL not reloaded; keeping the previous rules"),
            }
        }
    }

    /// Counts a new connection from `ip` and consumes a connect token. The guard is kept for the
    /// life of the connection; the reason code, when there is one, refuses it after CONNECT.
    pub fn admit(self: &Arc<Self>, ip: IpAddr, stats: &Stats) -> (IpGuard, Option<ReasonCode>) {
        let now = Instant::now();
        let mut ips = self.ips.lock();
        if ips.len() >= MAX_TRACKED_ADDRESSES {
            ips.retain(|_, s| {
                s.connections > 0 || s.last_failure.is_some_and(|t| now - t < FAILURE_MEMORY)
            });
        }
        let s = ips.entry(ip).or_default();
        s.connections += 1;
        let mut refusal = None;
        if self.limits.max_connections_per_ip > 0
            && s.connections > self.limits.max_connections_per_ip
        {
            stats
                .connections_refused_per_ip
                .fetch_add(1, Ordering::Relaxed);
            refusal = Some(ReasonCode::QUOTA_EXCEEDED);
        }
        let rate = f64::from(self.limits.connect_rate_per_ip);
        if rate > 0.0 {
            let elapsed = s.refilled.map_or(rate, |t| (now - t).as_secs_f64() * rate);
            s.tokens = (s.tokens + elapsed).min(rate);
            s.refilled = Some(now);
            if s.tokens >= 1.0 {
                s.tokens -= 1.0;
            } else if refusal.is_none() {
                stats
                    .connections_rate_limited
                    .fetch_add(1, Ordering::Relaxed);
                refusal = Some(ReasonCode::CONNECTION_RATE_EXCEEDED);
            }
        }
        drop(ips);
        (
            IpGuard {
                security: self.clone(),
                ip,
            },
            refusal,
        )
    }

    /// Whether `ip` has so many connections over its limit that even reading CONNECT is not worth it.
    pub fn far_over_limit(&self, ip: IpAddr) -> bool {
        let max = self.limits.max_connections_per_ip;
        max > 0
            && self
                .ips
                .lock()
                .get(&ip)
                .is_some_and(|s| s.connections > max * 2)
    }

    /// Decides who the client is. `Ok(username)`: let it in, as that user (None: anonymous);
    /// `Err(reason)`: 0x86 Bad user name or password, or 0x87 Not authorized.
    pub async fn authenticate(
        &self,
        ip: IpAddr,
        username: Option<String>,
        password: Option<Bytes>,
        cert_identity: Option<Arc<str>>,
        stats: &Stats,
    ) -> Result<Option<Arc<str>>, ReasonCode> {
        if self.cfg.use_identity_as_username {
            if let Some(id) = cert_identity {
                return Ok(Some(id));
            }
        }
        let passwords = self.passwords.read().clone();
        let Some(user) = username else {
            if self.cfg.allow_anonymous {
                return Ok(None);
            }
            stats.auth_failures.fetch_add(1, Ordering::Relaxed);
            return Err(ReasonCode::NOT_AUTHORIZED);
        };
        let Some(passwords) = passwords else {
            // No password file: user names are taken as given when anonymous access is allowed.
            if self.cfg.allow_anonymous {
                return Ok(Some(Arc::from(user)));
            }
            stats.auth_failures.fetch_add(1, Ordering::Relaxed);
            return Err(ReasonCode::NOT_AUTHORIZED);
        };
        // An address that keeps failing waits before each further try.
        let delay = self.failure_delay(ip);
        if !delay.is_zero() {
            tokio::time::sleep(delay).await;
        }
        let (hash, known) = match passwords.get(&user) {
            Some(h) => (h.to_string(), true),
            None => (self.dummy_hash.clone(), false),
        };
        let password = password.unwrap_or_default();
        let ok = match self.verifying.clone().acquire_owned().await {
            Ok(permit) => tokio::task::spawn_blocking(move || {
                let ok = verify_password(&hash, &password);
                drop(permit);
                ok
            })
            .await
            .unwrap_or(false),
            Err(_) => false,
        };
        if ok && known {
            if let Some(s) = self.ips.lock().get_mut(&ip) {
                s.failures = 0;
            }
            Ok(Some(Arc::from(user)))
        } else {
            stats.auth_failures.fetch_add(1, Ordering::Relaxed);
            let mut ips = self.ips.lock();
            let s = ips.entry(ip).or_default();
            s.failures = s.failures.saturating_add(1);
            s.last_failure = Some(Instant::now());
            info!(%ip, user, failures = s.failures, "login failed");
            Err(ReasonCode::BAD_USER_NAME_OR_PASSWORD)
        }
    }

    /// 0 for the first failure, then 100 ms doubling per failure up to [`MAX_FAILURE_DELAY`].
    fn failure_delay(&self, ip: IpAddr) -> Duration {
        let ips = self.ips.lock();
        let Some(s) = ips.get(&ip) else {
            return Duration::ZERO;
        };
        let recent = s.last_failure.is_some_and(|t| t.elapsed() < FAILURE_MEMORY);
        if !recent || s.failures < 2 {
            return Duration::ZERO;
        }
        let exp = (s.failures - 2).min(10);
        (Duration::from_millis(100) * 2u32.pow(exp)).min(MAX_FAILURE_DELAY)
    }
}

/// Reads the password and ACL files the configuration names: the security state shared by every
/// listener, and the broker logic's configuration with the ACL in it.
pub fn load(
    config: &crate::config::Config,
) -> Result<(Arc<Security>, holdfast_core::CoreConfig), crate::ServeError> {
    let mut security = Security::new(config.auth.clone(), config.conn_limits.clone())
        .map_err(|e| crate::ServeError::Security(e.to_string()))?;
    let mut core = config.core.clone();
    if let Some(path) = &config.auth.acl_file {
        let acl =
            crate::acl_file::load(path).map_err(|e| crate::ServeError::Security(e.to_string()))?;
        info!(path = %path.display(), rules = acl.rules.len(), "ACL loaded");
        let shared = Arc::new(holdfast_core::acl::SharedAcl::new(acl));
        security.acl = Some(shared.clone());
        core.acl = Some(shared);
    }
    if !config.auth.allow_anonymous && config.auth.password_file.is_none() {
        warn!("allow_anonymous = false without a password file: only clients with a certificate identity can connect");
    }
    Ok((Arc::new(security), core))
}

/// What the listener knows about a connection besides its stream.
pub struct ConnContext {
    pub security: Arc<Security>,
    /// The verified client certificate's CN (or DNS name), on TLS listeners with `client_ca`.
    pub cert_identity: Option<Arc<str>>,
    /// The connection's place in its address's count (taken at accept, before any handshake).
    pub ip_guard: IpGuard,
    /// Set when a per-address limit refuses the connection (answered after its CONNECT).
    pub ip_refusal: Option<ReasonCode>,
}

/// The CONNECT hook: authenticates the client, records its user name in `params`, and checks that
/// the ACL lets it publish its will. `Err` carries the refusing reason code.
pub async fn check_connect(
    ctx: &ConnContext,
    broker: &crate::broker::Broker,
    ip: IpAddr,
    credentials: (Option<String>, Option<Bytes>),
    params: &mut holdfast_core::connect::ConnectParams,
) -> Result<(), ReasonCode> {
    let (username, password) = credentials;
    let user = ctx
        .security
        .authenticate(
            ip,
            username,
            password,
            ctx.cert_identity.clone(),
            &broker.stats,
        )
        .await?;
    if let (Some(acl), Some(will)) = (&broker.cfg.acl, &params.will) {
        let who = holdfast_core::acl::Identity {
            username: user.as_deref(),
            client_id: &params.client_id,
        };
        if !acl.current().may_publish(who, &will.topic) {
            return Err(ReasonCode::NOT_AUTHORIZED);
        }
    }
    params.username = user;
    Ok(())
}

/// A token bucket of inbound PUBLISH packets per connection (`[limits] max_publish_rate`).
#[derive(Debug)]
pub struct PublishRate {
    rate: f64,
    tokens: f64,
    at: Instant,
}

impl PublishRate {
    /// `None` when unlimited. The burst is one second's worth.
    pub fn new(per_second: u32) -> Option<PublishRate> {
        (per_second > 0).then(|| PublishRate {
            rate: f64::from(per_second),
            tokens: f64::from(per_second),
            at: Instant::now(),
        })
    }

    /// Takes one token; false when the rate is exceeded.
    pub fn take(&mut self) -> bool {
        let now = Instant::now();
        self.tokens = (self.tokens + (now - self.at).as_secs_f64() * self.rate).min(self.rate);
        self.at = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hash_round_trip_and_salted() {
        let a = hash_password(b"secret");
        let b = hash_password(b"secret");
        assert_ne!(a, b, "salted");
        assert!(a.starts_with("$argon2id$"));
        assert!(verify_password(&a, b"secret"));
        assert!(!verify_password(&a, b"Secret"));
    }

    #[test]
    fn password_file_parse_errors_name_the_line() {
        let h = hash_password(b"x");
        let good = format!("# users\nalice:{h}\n\nbob:{h}\n");
        let f = PasswordFile::parse(&good).unwrap();
        assert_eq!(f.users().collect::<Vec<_>>(), ["alice", "bob"]);
        assert_eq!(PasswordFile::parse("alice\n").unwrap_err().0, 1);
        assert_eq!(
            PasswordFile::parse(&format!("a:{h}\nb:plain\n"))
                .unwrap_err()
                .0,
            2
        );
        let twice = PasswordFile::parse(&format!("a:{h}\na:{h}\n")).unwrap_err();
        assert!(twice.1.contains("twice"));
    }

    #[test]
    fn set_remove_to_text() {
        let mut f = PasswordFile::default();
        f.set("u", b"p1");
        f.set("u", b"p2");
        assert_eq!(f.users().count(), 1);
        assert!(verify_password(f.get("u").unwrap(), b"p2"));
        let back = PasswordFile::parse(&f.to_text()).unwrap();
        assert!(back.get("u").is_some());
        assert!(f.remove("u"));
        assert!(!f.remove("u"));
    }

    #[test]
    fn publish_rate_bucket() {
        let mut r = PublishRate::new(5).unwrap();
        assert!((0..5).all(|_| r.take()));
        assert!(!r.take());
        assert!(PublishRate::new(0).is_none());
    }
}
