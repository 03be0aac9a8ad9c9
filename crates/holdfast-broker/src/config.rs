//! The broker's configuration: a TOML file in which every key is optional.
//!
//! [`Config::default`] holds the embedded defaults; [`Config::from_toml_str`] and [`Config::load`]
//! read a file over them. Unknown keys are errors, so a typo never silently falls back to a default.
//! Every error names the file, the line and the key, e.g.
//! `holdfast.toml line 12: limits.max_inflight: invalid value: integer `-1`, expected u16`.
//! docs/configuration.md describes each key; holdfast.example.toml lists them with their defaults.

mod error;
mod raw;
mod security;
#[cfg(test)]
mod tests;
mod units;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use holdfast_core::config::CoreConfig;
use serde::Deserialize;

pub use error::ConfigError;
pub use security::{AuthConfig, ConnLimits};
pub use units::{parse_byte_size, parse_duration};

/// Everything the broker needs to start.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// `[[listener]]` tables; default: one plain TCP listener on 0.0.0.0:1883. Never empty.
    pub listeners: Vec<ListenerConfig>,
    /// Limits and MQTT features of the broker logic, built from `[limits]` and `[mqtt]`.
    pub core: CoreConfig,
    /// `[limits] max_connections`: concurrent client connections over all listeners; 0 = unlimited.
    pub max_connections: usize,
    /// `[storage]`.
    pub storage: StorageConfig,
    /// `[log]`.
    pub log: LogConfig,
    /// `[server] shutdown_timeout`: how long a graceful shutdown waits for connections and the store.
    pub shutdown_timeout: Duration,
    /// `[admin]`: the HTTP admin API, metrics, dashboard and `$SYS` topics.
    pub admin: AdminConfig,
    /// `[discard]`: automated rules that discard stored session state.
    pub discard: DiscardRules,
    /// `[auth]`: anonymous access, password file, ACL file.
    pub auth: AuthConfig,
    /// `[limits]` per-address and per-connection limits (docs/security.md).
    pub conn_limits: ConnLimits,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listeners: vec![ListenerConfig::tcp(SocketAddr::from(([0, 0, 0, 0], 1883)))],
            core: CoreConfig::default(),
            max_connections: 0,
            storage: StorageConfig::default(),
            log: LogConfig::default(),
            shutdown_timeout: Duration::from_secs(5),
            admin: AdminConfig::default(),
            discard: DiscardRules::default(),
            auth: AuthConfig::default(),
            conn_limits: ConnLimits::default(),
        }
    }
}

impl Config {
    /// Parses and validates a config file's text. `origin` names it in error messages.
    pub fn from_toml_str(src: &str, origin: &str) -> Result<Config, ConfigError> {
        raw::parse(src, origin)
    }

    /// Reads and parses the config file at `path`.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let src = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::from_toml_str(&src, &path.display().to_string())
    }
}

/// One `[[listener]]`: an address the broker accepts MQTT connections on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ListenerConfig {
    /// Address and port to bind; default per protocol: tcp 0.0.0.0:1883, tls 0.0.0.0:8883,
    /// ws 0.0.0.0:8083, wss 0.0.0.0:8084.
    pub bind: SocketAddr,
    pub protocol: ListenerProtocol,
    /// PEM certificate chain (tls and wss; required there, refused elsewhere).
    pub cert: Option<PathBuf>,
    /// PEM private key of `cert` (tls and wss; required there, refused elsewhere).
    pub key: Option<PathBuf>,
    /// PEM CA certificates; when set, clients must present a certificate signed by one of them
    /// (tls and wss only).
    pub client_ca: Option<PathBuf>,
    /// HTTP path of the WebSocket endpoint (ws and wss); default "/mqtt".
    pub path: String,
}

impl ListenerConfig {
    /// The WebSocket path used when none is configured.
    pub const DEFAULT_WS_PATH: &'static str = "/mqtt";

    /// A plain TCP listener on `bind` (what `holdfast serve --listen` creates).
    pub fn tcp(bind: SocketAddr) -> ListenerConfig {
        ListenerConfig {
            bind,
            protocol: ListenerProtocol::Tcp,
            cert: None,
            key: None,
            client_ca: None,
            path: Self::DEFAULT_WS_PATH.to_string(),
        }
    }
}

/// The transport of a listener.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ListenerProtocol {
    /// MQTT over plain TCP.
    #[default]
    Tcp,
    /// MQTT over TLS.
    Tls,
    /// MQTT over WebSocket (subprotocol "mqtt").
    Ws,
    /// MQTT over WebSocket over TLS.
    Wss,
}

impl ListenerProtocol {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            ListenerProtocol::Tcp => "tcp",
            ListenerProtocol::Tls => "tls",
            ListenerProtocol::Ws => "ws",
            ListenerProtocol::Wss => "wss",
        }
    }
    /// Whether the listener terminates TLS (needs `cert` and `key`).
    pub fn is_tls(self) -> bool {
        matches!(self, ListenerProtocol::Tls | ListenerProtocol::Wss)
    }
    /// Whether the listener speaks WebSocket (uses `path`).
    pub fn is_websocket(self) -> bool {
        matches!(self, ListenerProtocol::Ws | ListenerProtocol::Wss)
    }
    /// The port a listener of this protocol binds when `bind` is not given.
    pub fn default_port(self) -> u16 {
        match self {
            ListenerProtocol::Tcp => 1883,
            ListenerProtocol::Tls => 8883,
            ListenerProtocol::Ws => 8083,
            ListenerProtocol::Wss => 8084,
        }
    }
}

impl std::fmt::Display for ListenerProtocol {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// `[storage]`: where and how durably session state and retained messages are stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StorageConfig {
    /// Directory of the store; default "./holdfast-data".
    pub data_dir: PathBuf,
    /// Class of everything no rule matches; default `flush`.
    pub durability: Durability,
    /// How often `flush` data is fsync'd; default 1s. Never zero.
    pub flush_interval: Duration,
    /// `[[storage.rule]]`, in file order: the first rule with a filter matching a topic wins.
    pub rules: Vec<DurabilityRule>,
    /// Cap on the store's size in bytes; 0 = unlimited.
    pub max_bytes: u64,
    /// What happens when `max_bytes` is reached.
    pub quota_policy: QuotaPolicy,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            data_dir: PathBuf::from("./holdfast-data"),
            durability: Durability::Flush,
            flush_interval: Duration::from_secs(1),
            rules: Vec::new(),
            max_bytes: 0,
            quota_policy: QuotaPolicy::Reject,
        }
    }
}

impl StorageConfig {
    /// The durability class of a message published to `topic`: that of the first rule with a
    /// matching filter, else the default.
    pub fn durability_for(&self, topic: &str) -> Durability {
        self.durability_rules().for_topic(topic)
    }

    /// The rules as the broker logic applies them: one entry per filter, in file order.
    pub fn durability_rules(&self) -> holdfast_core::durability::DurabilityRules {
        holdfast_core::durability::DurabilityRules {
            default: self.durability,
            rules: self
                .rules
                .iter()
                .flat_map(|r| r.topics.iter().map(|t| (t.clone(), r.durability)))
                .collect(),
        }
    }
}

/// How safely a message or state change is stored (see DESIGN.md, "Durability classes"); in the
/// config file `"volatile"`, `"flush"` or `"sync"`.
pub use holdfast_core::Durability;

/// One `[[storage.rule]]`: messages whose topic matches any of `topics` get `durability`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DurabilityRule {
    /// Topic filters (wildcards allowed, shared-subscription filters not); never empty.
    pub topics: Vec<String>,
    pub durability: Durability,
}

/// What the store does when `max_bytes` is reached.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum QuotaPolicy {
    /// Refuse new stored state: publishers get 0x97 Quota exceeded (v5) or no acknowledgement.
    #[default]
    Reject,
    /// Discard the oldest queued messages to make room (each discard is logged and counted).
    DiscardOldest,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogConfig {
    /// A tracing `EnvFilter` directive: a level ("info") or per-target levels
    /// ("info,holdfast_broker=debug"); default "info". `RUST_LOG`, when set, wins.
    pub level: String,
    pub format: LogFormat,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            level: "info".to_string(),
            format: LogFormat::Text,
        }
    }
}

/// How log lines are written to stderr.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON object per line.
    Json,
}

/// Checks a log level or `EnvFilter` directive list, as accepted by `[log] level` and
/// `--log-level`. Besides the `EnvFilter` syntax, a bare word must be a level name: `EnvFilter`
/// would take a misspelt level like "inof" as a target name and silently log nothing else.
pub fn validate_log_level(level: &str) -> Result<(), String> {
    const LEVELS: [&str; 6] = ["trace", "debug", "info", "warn", "error", "off"];
    if level.trim().is_empty() {
        return Err("empty log level; use trace, debug, info, warn, error or off".to_string());
    }
    for directive in level.split(',').map(str::trim).filter(|d| !d.is_empty()) {
        let bare_word = !directive.contains(['=', '[', ':']);
        if bare_word && !LEVELS.iter().any(|l| l.eq_ignore_ascii_case(directive)) {
            return Err(format!(
                "unknown log level \"{directive}\"; use trace, debug, info, warn, error or off, \
                 or target=level (e.g. \"info,holdfast_broker=debug\")"
            ));
        }
    }
    tracing_subscriber::EnvFilter::try_new(level)
        .map(drop)
        .map_err(|e| format!("invalid log level \"{level}\": {e}"))
}

/// `[admin]`: the admin HTTP listener (API, `/metrics`, dashboard) and the `$SYS` topics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminConfig {
    /// Address of the admin HTTP listener; default none (disabled). `--admin-listen` overrides it.
    pub bind: Option<SocketAddr>,
    /// Bearer token every `/api` and `/metrics` request must carry; required when `bind` is not
    /// a loopback address.
    pub token: Option<String>,
    /// How often the `$SYS/broker/...` topics are published; zero disables them. Default 10s.
    pub sys_interval: Duration,
}

impl Default for AdminConfig {
    fn default() -> Self {
        AdminConfig {
            bind: None,
            token: None,
            sys_interval: Duration::from_secs(10),
        }
    }
}

impl AdminConfig {
    /// An admin listener reachable from other hosts must be protected by a token.
    pub fn check(&self) -> Result<(), String> {
        match self.bind {
            Some(bind) if !bind.ip().is_loopback() && self.token.is_none() => Err(format!(
                "the admin API on {bind} would be reachable from other hosts without a token: \
                 set [admin] token, or bind a loopback address such as 127.0.0.1:8080"
            )),
            _ => Ok(()),
        }
    }
}

/// `[discard]`: automated rules that discard offline sessions; each discard is logged with its
/// reason and counted.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DiscardRules {
    /// Discard a session whose client has been away longer than this, whatever its expiry
    /// interval; default none.
    pub idle_after: Option<Duration>,
    /// When the store grows past this many bytes, discard offline sessions until it is under
    /// `store_low_water`; 0 = off.
    pub store_high_water: u64,
    /// Where discarding stops; default 80% of `store_high_water`.
    pub store_low_water: u64,
    /// Which offline sessions go first when the high-water mark is passed.
    pub victims: DiscardOrder,
    /// Drop queued messages of offline sessions that none of their subscriptions matches any more.
    pub unsubscribed_messages: bool,
}

/// Which offline sessions the store high-water rule discards first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DiscardOrder {
    /// Those holding the most queued bytes.
    #[default]
    Largest,
    /// Those disconnected longest ago.
    Oldest,
}
