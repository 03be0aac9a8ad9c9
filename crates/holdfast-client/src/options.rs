//! How a [`Client`](crate::Client) connects and keeps its session.

use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use holdfast_core::Durability;
use holdfast_proto::{Properties, ProtocolVersion, QoS};

/// A will message: published by the server when the connection ends without DISCONNECT.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastWill {
    pub topic: String,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// MQTT 5 will properties: Will Delay Interval, Message Expiry, content type, user properties...
    pub properties: Properties,
}

/// MQTT over TLS (needs the `tls` feature). Certificates and keys are PEM files.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsOptions {
    /// The CA certificates that sign the server's certificate (required: no system roots yet).
    pub ca_file: Option<PathBuf>,
    /// A client certificate chain and its key, for servers that ask for one.
    pub cert_file: Option<PathBuf>,
    pub key_file: Option<PathBuf>,
    /// The name the server certificate must carry (default: the host).
    pub server_name: Option<String>,
}

/// Connection and session options. Build with [`ClientOptions::new`] and the `with_*` methods.
///
/// ```
/// use holdfast_client::{ClientOptions, Durability};
/// let opts = ClientOptions::new("127.0.0.1", 1883, "meter-17")
///     .with_v5(true)
///     .with_clean_start(false)
///     .with_persistence("/var/lib/meter", Durability::Sync);
/// assert_eq!(opts.client_id, "meter-17");
/// ```
#[derive(Debug, Clone)]
pub struct ClientOptions {
    pub host: String,
    pub port: u16,
    /// May be empty with clean start: the server assigns one (MQTT 5) or accepts it (3.1.1).
    pub client_id: String,
    pub protocol: ProtocolVersion,
    /// Clean Start / Clean Session for the first connection. Reconnects always resume the session.
    pub clean_start: bool,
    /// Seconds; 0 turns keep alive off.
    pub keep_alive: u16,
    /// MQTT 5 Session Expiry Interval, seconds (3.1.1: a session without clean session never expires).
    pub session_expiry: u32,
    pub username: Option<String>,
    pub password: Option<Bytes>,
    pub will: Option<LastWill>,
    /// Where the client keeps its Session state (the Holdfast store format); None: memory only.
    pub persist_dir: Option<PathBuf>,
    /// The class of messages published without one of their own (volatile without `persist_dir`).
    pub durability: Durability,
    /// At most this many QoS 1/2 PUBLISH in flight, also when the server allows more (Receive Maximum).
    pub max_inflight: u16,
    /// The Receive Maximum this client announces (MQTT 5).
    pub receive_maximum: u16,
    /// Reconnect delays: start at `min`, double up to `max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Give up a connection attempt (TCP + CONNACK) after this long.
    pub connect_timeout: Duration,
    /// Connect over TLS.
    pub tls: Option<TlsOptions>,
}

impl ClientOptions {
    pub fn new(host: impl Into<String>, port: u16, client_id: impl Into<String>) -> ClientOptions {
        ClientOptions {
            host: host.into(),
            port,
            client_id: client_id.into(),
            protocol: ProtocolVersion::V3_1_1,
            clean_start: true,
            keep_alive: 60,
            session_expiry: 0,
            username: None,
            password: None,
            will: None,
            persist_dir: None,
            durability: Durability::Volatile,
            max_inflight: 100,
            receive_maximum: 65535,
            reconnect_min: Duration::from_millis(100),
            reconnect_max: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            tls: None,
        }
    }

    /// MQTT 5 (true) or 3.1.1 (false, the default).
    pub fn with_v5(mut self, v5: bool) -> Self {
        self.protocol = if v5 {
            ProtocolVersion::V5
        } else {
            ProtocolVersion::V3_1_1
        };
        self
    }

    pub fn with_clean_start(mut self, clean: bool) -> Self {
        self.clean_start = clean;
        self
    }

    pub fn with_keep_alive(mut self, secs: u16) -> Self {
        self.keep_alive = secs;
        self
    }

    pub fn with_session_expiry(mut self, secs: u32) -> Self {
        self.session_expiry = secs;
        self
    }

    pub fn with_credentials(mut self, user: impl Into<String>, password: impl Into<Bytes>) -> Self {
        self.username = Some(user.into());
        self.password = Some(password.into());
        self
    }

    pub fn with_will(mut self, will: LastWill) -> Self {
        self.will = Some(will);
        self
    }

    /// Keep Session state in `dir` with `durability` as the default class of published messages.
    pub fn with_persistence(mut self, dir: impl Into<PathBuf>, durability: Durability) -> Self {
        self.persist_dir = Some(dir.into());
        self.durability = durability;
        self
    }

    /// Connect over TLS (the `tls` feature).
    pub fn with_tls(mut self, tls: TlsOptions) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn with_max_inflight(mut self, n: u16) -> Self {
        self.max_inflight = n.max(1);
        self
    }

    pub fn with_reconnect(mut self, min: Duration, max: Duration) -> Self {
        self.reconnect_min = min;
        self.reconnect_max = max.max(min);
        self
    }
}
