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
    /// The CA certificates that sign the server's certificate. None: the system's root
    /// certificates (`SSL_CERT_FILE` / `SSL_CERT_DIR` override where they are looked for).
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
    /// The Receive Maximum this client announces (MQTT 5), at most `subscription_capacity`.
    pub receive_maximum: u16,
    /// Reconnect delays: start at `min`, double up to `max`.
    pub reconnect_min: Duration,
    pub reconnect_max: Duration,
    /// Give up a connection attempt (TCP + CONNACK) after this long.
    pub connect_timeout: Duration,
    /// Connect over TLS.
    pub tls: Option<TlsOptions>,
    /// Connect over WebSocket (the `ws` feature) with this request path, e.g. `/mqtt`; with `tls`
    /// it is `wss://`.
    pub websocket: Option<String>,
    /// MQTT 5: at most this many topic aliases for the topics this client publishes to (also
    /// capped by the server's Topic Alias Maximum); 0 sends none.
    pub topic_alias_max_out: u16,
    /// MQTT 5: the Topic Alias Maximum this client announces, i.e. how many aliases the server
    /// may use towards it; 0 asks for none.
    pub topic_alias_max_in: u16,
    /// How many messages each [`Subscription`](crate::Subscription) holds before the application
    /// takes them; when one is full the client stops acknowledging (see `docs/client.md`).
    pub subscription_capacity: usize,
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
            websocket: None,
            topic_alias_max_out: 16,
            topic_alias_max_in: 16,
            subscription_capacity: 1024,
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

    /// Connect over WebSocket (the `ws` feature) with this request path (e.g. `/mqtt`),
    /// subprotocol `mqtt`; `wss://` when TLS is set too.
    pub fn with_websocket(mut self, path: impl Into<String>) -> Self {
        self.websocket = Some(path.into());
        self
    }

    /// MQTT 5 topic aliases: at most `outbound` aliases for topics this client publishes to
    /// (capped by the server's maximum), and `inbound` announced as this client's Topic Alias
    /// Maximum. 0 turns a direction off. Default 16 and 16.
    pub fn with_topic_aliases(mut self, outbound: u16, inbound: u16) -> Self {
        self.topic_alias_max_out = outbound;
        self.topic_alias_max_in = inbound;
        self
    }

    /// Messages each subscription holds before the client stops acknowledging new ones (at
    /// least 1; default 1024).
    pub fn with_subscription_capacity(mut self, n: usize) -> Self {
        self.subscription_capacity = n.max(1);
        self
    }

    /// The Receive Maximum announced to the server (MQTT 5; at least 1, at most the
    /// subscription capacity).
    pub fn with_receive_maximum(mut self, n: u16) -> Self {
        self.receive_maximum = n.max(1);
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
