//! The file as written (every key optional, values kept with their spans), and its validation
//! into a [`Config`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::ops::Range;
use std::path::PathBuf;

use holdfast_core::config::{CoreConfig, QueuePolicy};
use holdfast_proto::QoS;
use serde::Deserialize;
use toml::Spanned;

use super::error::Source;
use super::units::{ByteSize, DurationValue, ExpiryValue, Seconds16};
use super::{
    validate_log_level, AdminConfig, Config, ConfigError, DiscardOrder, DiscardRules, Durability,
    DurabilityRule, ListenerConfig, ListenerProtocol, LogConfig, LogFormat, QuotaPolicy,
    StorageConfig,
};

/// The largest MQTT packet: 1 byte of type and flags, 4 of Remaining Length, 268,435,455 of body.
const MQTT_MAX_PACKET_SIZE: u64 = 268_435_460;
/// The server must accept client ids of 1 to 23 bytes [MQTT-3.1.3-5].
const MIN_CLIENT_ID_LEN: usize = 23;

pub(super) fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
    let src = Source { text, origin };
    // Syntax first, so that a TOML error is reported as such and not as a bad key.
    text.parse::<toml::Table>().map_err(|e| src.syntax(e))?;
    let raw: RawConfig = serde_path_to_error::deserialize(toml::Deserializer::new(text))
        .map_err(|e| src.deserialize(e))?;
    raw.validate(&src)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawConfig {
    listener: Option<Spanned<Vec<Spanned<RawListener>>>>,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    mqtt: RawMqtt,
    #[serde(default)]
    server: RawServer,
    #[serde(default)]
    storage: RawStorage,
    #[serde(default)]
    log: RawLog,
    #[serde(default)]
    admin: RawAdmin,
    #[serde(default)]
    discard: RawDiscard,
    #[serde(default)]
    auth: super::security::RawAuth,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawListener {
    bind: Option<Spanned<String>>,
    protocol: Option<Spanned<ListenerProtocol>>,
    cert: Option<Spanned<PathBuf>>,
    key: Option<Spanned<PathBuf>>,
    client_ca: Option<Spanned<PathBuf>>,
    path: Option<Spanned<String>>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawLimits {
    max_connections: Option<usize>,
    max_packet_size: Option<Spanned<ByteSize>>,
    receive_maximum: Option<Spanned<u16>>,
    max_inflight: Option<Spanned<u16>>,
    max_queued_messages: Option<usize>,
    max_queued_bytes: Option<ByteSize>,
    queue_full_policy: Option<RawQueuePolicy>,
    session_expiry_max: Option<ExpiryValue>,
    message_expiry_max: Option<Spanned<ExpiryValue>>,
    max_keep_alive: Option<Seconds16>,
    max_client_id_len: Option<Spanned<usize>>,
    max_subscriptions: Option<usize>,
    max_topic_levels: Option<usize>,
    max_topic_len: Option<usize>,
    topic_alias_maximum: Option<u16>,
    max_connections_per_ip: Option<usize>,
    connect_rate_per_ip: Option<u32>,
    max_publish_rate: Option<u32>,
    connect_timeout: Option<Spanned<DurationValue>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum RawQueuePolicy {
    RejectNew,
    DropOldest,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawMqtt {
    maximum_qos: Option<Spanned<u8>>,
    retain_available: Option<bool>,
    wildcard_subscriptions: Option<bool>,
    shared_subscriptions: Option<bool>,
    subscription_identifiers: Option<bool>,
    allow_zero_length_client_id: Option<bool>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawServer {
    shutdown_timeout: Option<DurationValue>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawStorage {
    data_dir: Option<Spanned<PathBuf>>,
    durability: Option<Durability>,
    flush_interval: Option<Spanned<DurationValue>>,
    rule: Option<Vec<RawRule>>,
    max_bytes: Option<ByteSize>,
    quota_policy: Option<QuotaPolicy>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawRule {
    topics: Spanned<Vec<Spanned<String>>>,
    durability: Durability,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawLog {
    level: Option<Spanned<String>>,
    format: Option<LogFormat>,
}

fn span<T>(value: &Spanned<T>) -> Option<Range<usize>> {
    Some(value.span())
}

impl RawConfig {
    fn validate(self, src: &Source) -> Result<Config, ConfigError> {
        let defaults = Config::default();
        let listeners = match self.listener {
            None => defaults.listeners,
            Some(list) => validate_listeners(list, src)?,
        };
        let conn_limits = super::security::conn_limits(
            self.limits.max_connections_per_ip,
            self.limits.connect_rate_per_ip,
            self.limits.max_publish_rate,
            self.limits.connect_timeout.as_ref(),
            src,
        )?;
        let (mut core, max_connections) = validate_core(self.limits, self.mqtt, src)?;
        let storage = self.storage.validate(src)?;
        core.durability = storage.durability_rules();
        Ok(Config {
            listeners,
            core,
            max_connections,
            storage,
            log: self.log.validate(src)?,
            admin: self.admin.validate(src)?,
            discard: self.discard.validate(src)?,
            auth: self.auth.validate(src)?,
            conn_limits,
            shutdown_timeout: self
                .server
                .shutdown_timeout
                .map_or(defaults.shutdown_timeout, |d| d.0),
        })
    }
}

fn validate_listeners(
    raw: Spanned<Vec<Spanned<RawListener>>>,
    src: &Source,
) -> Result<Vec<ListenerConfig>, ConfigError> {
    if raw.get_ref().is_empty() {
        return Err(src.invalid(
            span(&raw),
            "listener",
            "no listeners: give at least one [[listener]], or leave the key out for the default \
             tcp listener on 0.0.0.0:1883",
        ));
    }
    let raw = raw.into_inner();
    let mut listeners = Vec::with_capacity(raw.len());
    let mut bound: HashMap<SocketAddr, usize> = HashMap::new();
    for (i, entry) in raw.into_iter().enumerate() {
        let table_span = span(&entry);
        let l = entry.into_inner();
        let key = |name: &str| format!("listener[{i}].{name}");
        let protocol = l
            .protocol
            .as_ref()
            .map_or(ListenerProtocol::Tcp, |p| *p.get_ref());
        let protocol_span = l.protocol.as_ref().map(|p| p.span()).or(table_span.clone());

        let bind = match &l.bind {
            None => SocketAddr::from(([0, 0, 0, 0], protocol.default_port())),
            Some(b) => b.get_ref().trim().parse::<SocketAddr>().map_err(|_| {
                src.invalid(
                    span(b),
                    key("bind"),
                    format!(
                        "\"{}\" is not an address and port; write e.g. \"0.0.0.0:1883\", \
                         \"127.0.0.1:1883\" or \"[::]:1883\"",
                        b.get_ref()
                    ),
                )
            })?,
        };
        if let Some(first) = bound.insert(bind, i) {
            return Err(src.invalid(
                l.bind.as_ref().map(|b| b.span()).or(table_span),
                key("bind"),
                format!("{bind} is already bound by listener[{first}]"),
            ));
        }

        for (name, value) in [
            ("cert", &l.cert),
            ("key", &l.key),
            ("client_ca", &l.client_ca),
        ] {
            let Some(value) = value else { continue };
            if !protocol.is_tls() {
                return Err(src.invalid(
                    span(value),
                    key(name),
                    format!(
                        "only tls and wss listeners use `{name}`, this one is {protocol}; \
                         set protocol = \"tls\" or \"wss\""
                    ),
                ));
            }
            if value.get_ref().as_os_str().is_empty() {
                return Err(src.invalid(span(value), key(name), "empty path"));
            }
        }
        if protocol.is_tls() {
            for (name, value, what) in [
                ("cert", &l.cert, "a PEM certificate chain"),
                ("key", &l.key, "the PEM private key of `cert`"),
            ] {
                if value.is_none() {
                    return Err(src.invalid(
                        protocol_span.clone(),
                        key(name),
                        format!("a {protocol} listener needs `{name}`: {what}"),
                    ));
                }
            }
        }

        let path = match &l.path {
            None => ListenerConfig::DEFAULT_WS_PATH.to_string(),
            Some(p) if !protocol.is_websocket() => {
                return Err(src.invalid(
                    span(p),
                    key("path"),
                    format!(
                        "only ws and wss listeners use `path`, this one is {protocol}; \
                         set protocol = \"ws\" or \"wss\""
                    ),
                ))
            }
            Some(p) if !p.get_ref().starts_with('/') => {
                return Err(src.invalid(
                    span(p),
                    key("path"),
                    format!("\"{}\" must start with '/', e.g. \"/mqtt\"", p.get_ref()),
                ))
            }
            Some(p) => p.get_ref().clone(),
        };

        listeners.push(ListenerConfig {
            bind,
            protocol,
            cert: l.cert.map(Spanned::into_inner),
            key: l.key.map(Spanned::into_inner),
            client_ca: l.client_ca.map(Spanned::into_inner),
            path,
        });
    }
    Ok(listeners)
}

fn validate_core(
    limits: RawLimits,
    mqtt: RawMqtt,
    src: &Source,
) -> Result<(CoreConfig, usize), ConfigError> {
    let mut core = CoreConfig::default();

    if let Some(size) = &limits.max_packet_size {
        let bytes = size.get_ref().0;
        if bytes == 0 || bytes > MQTT_MAX_PACKET_SIZE {
            return Err(src.invalid(
                span(size),
                "limits.max_packet_size",
                format!(
                    "{bytes} bytes is out of range: must be between 1 and {MQTT_MAX_PACKET_SIZE} \
                     (the largest MQTT packet, 256MiB)"
                ),
            ));
        }
        core.max_packet_size = bytes as u32;
    }
    if let Some(v) = &limits.receive_maximum {
        if *v.get_ref() == 0 {
            return Err(src.invalid(
                span(v),
                "limits.receive_maximum",
                "must be between 1 and 65535 (MQTT 5 forbids a Receive Maximum of 0)",
            ));
        }
        core.receive_maximum = *v.get_ref();
    }
    if let Some(v) = &limits.max_inflight {
        if *v.get_ref() == 0 {
            return Err(src.invalid(
                span(v),
                "limits.max_inflight",
                "must be between 1 and 65535: with 0 no QoS 1 or 2 message could be delivered",
            ));
        }
        core.max_inflight = *v.get_ref();
    }
    if let Some(v) = &limits.max_client_id_len {
        let len = *v.get_ref();
        if !(MIN_CLIENT_ID_LEN..=65_535).contains(&len) {
            return Err(src.invalid(
                span(v),
                "limits.max_client_id_len",
                format!(
                    "{len} is out of range: must be between {MIN_CLIENT_ID_LEN} (MQTT requires \
                     servers to accept client ids of 1 to 23 bytes) and 65535"
                ),
            ));
        }
        core.max_client_id_len = len;
    }
    if let Some(v) = &limits.message_expiry_max {
        if v.get_ref().0 == Some(0) {
            return Err(src.invalid(
                span(v),
                "limits.message_expiry_max",
                "0 would expire every message at once; give a positive duration or \"never\"",
            ));
        }
        core.message_expiry_max = v.get_ref().0;
    }
    if let Some(v) = &mqtt.maximum_qos {
        core.maximum_qos = QoS::from_u8(*v.get_ref()).ok_or_else(|| {
            src.invalid(
                span(v),
                "mqtt.maximum_qos",
                format!("{} is not a QoS: must be 0, 1 or 2", v.get_ref()),
            )
        })?;
    }

    set(&mut core.max_queued_messages, limits.max_queued_messages);
    set(
        &mut core.max_queued_bytes,
        limits.max_queued_bytes.map(|b| b.0),
    );
    set(
        &mut core.queue_policy,
        limits.queue_full_policy.map(|p| match p {
            RawQueuePolicy::RejectNew => QueuePolicy::RejectNew,
            RawQueuePolicy::DropOldest => QueuePolicy::DropOldest,
        }),
    );
    set(
        &mut core.session_expiry_max,
        limits.session_expiry_max.map(|e| e.0),
    );
    set(&mut core.max_keep_alive, limits.max_keep_alive.map(|s| s.0));
    set(&mut core.max_subscriptions, limits.max_subscriptions);
    set(&mut core.max_topic_levels, limits.max_topic_levels);
    set(&mut core.max_topic_len, limits.max_topic_len);
    set(&mut core.topic_alias_maximum, limits.topic_alias_maximum);
    set(&mut core.retain_available, mqtt.retain_available);
    set(
        &mut core.wildcard_subscription_available,
        mqtt.wildcard_subscriptions,
    );
    set(
        &mut core.shared_subscription_available,
        mqtt.shared_subscriptions,
    );
    set(
        &mut core.subscription_identifiers_available,
        mqtt.subscription_identifiers,
    );
    set(
        &mut core.allow_zero_length_client_id,
        mqtt.allow_zero_length_client_id,
    );
    Ok((core, limits.max_connections.unwrap_or(0)))
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

impl RawStorage {
    fn validate(self, src: &Source) -> Result<StorageConfig, ConfigError> {
        let mut storage = StorageConfig::default();
        if let Some(dir) = self.data_dir {
            if dir.get_ref().as_os_str().is_empty() {
                return Err(src.invalid(span(&dir), "storage.data_dir", "empty path"));
            }
            storage.data_dir = dir.into_inner();
        }
        if let Some(interval) = &self.flush_interval {
            if interval.get_ref().0.is_zero() {
                return Err(src.invalid(
                    span(interval),
                    "storage.flush_interval",
                    "must be longer than 0; for an fsync before every acknowledgement use \
                     durability = \"sync\"",
                ));
            }
            storage.flush_interval = interval.get_ref().0;
        }
        for (i, rule) in self.rule.unwrap_or_default().into_iter().enumerate() {
            let key = format!("storage.rule[{i}].topics");
            if rule.topics.get_ref().is_empty() {
                return Err(src.invalid(
                    span(&rule.topics),
                    key,
                    "needs at least one topic filter",
                ));
            }
            let mut topics = Vec::with_capacity(rule.topics.get_ref().len());
            for filter in rule.topics.into_inner() {
                let text = filter.get_ref();
                let problem = if text.starts_with("$share/") {
                    Err("a shared-subscription filter; rules match the topics messages are published to")
                } else {
                    holdfast_proto::topic::validate_topic_filter(text)
                };
                if let Err(why) = problem {
                    return Err(src.invalid(
                        span(&filter),
                        key,
                        format!("\"{text}\" is not a valid topic filter: {why}"),
                    ));
                }
                topics.push(filter.into_inner());
            }
            storage.rules.push(DurabilityRule {
                topics,
                durability: rule.durability,
            });
        }
        set(&mut storage.durability, self.durability);
        set(&mut storage.max_bytes, self.max_bytes.map(|b| b.0));
        set(&mut storage.quota_policy, self.quota_policy);
        Ok(storage)
    }
}

impl RawLog {
    fn validate(self, src: &Source) -> Result<LogConfig, ConfigError> {
        let mut log = LogConfig::default();
        if let Some(level) = self.level {
            validate_log_level(level.get_ref())
                .map_err(|why| src.invalid(span(&level), "log.level", why))?;
            log.level = level.into_inner();
        }
        set(&mut log.format, self.format);
        Ok(log)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawAdmin {
    bind: Option<Spanned<String>>,
    token: Option<Spanned<String>>,
    sys_interval: Option<DurationValue>,
}

impl RawAdmin {
    fn validate(self, src: &Source) -> Result<AdminConfig, ConfigError> {
        let mut admin = AdminConfig::default();
        let bind_span = self.bind.as_ref().map(|b| b.span());
        if let Some(b) = &self.bind {
            let text = b.get_ref().trim();
            if !text.is_empty() {
                admin.bind = Some(text.parse::<SocketAddr>().map_err(|_| {
                    src.invalid(
                        span(b),
                        "admin.bind",
                        format!(
                            "\"{text}\" is not an address and port; write e.g. \"127.0.0.1:8080\" \
                             (or \"\" to disable the admin API)"
                        ),
                    )
                })?);
            }
        }
        if let Some(t) = &self.token {
            if t.get_ref().trim().is_empty() {
                return Err(src.invalid(span(t), "admin.token", "empty token"));
            }
            admin.token = Some(t.get_ref().clone());
        }
        set(&mut admin.sys_interval, self.sys_interval.map(|d| d.0));
        admin
            .check()
            .map_err(|why| src.invalid(bind_span, "admin.token", why))?;
        Ok(admin)
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, expecting = "a table")]
struct RawDiscard {
    idle_after: Option<Spanned<ExpiryValue>>,
    store_high_water: Option<ByteSize>,
    store_low_water: Option<Spanned<ByteSize>>,
    victims: Option<DiscardOrder>,
    unsubscribed_messages: Option<bool>,
}

impl RawDiscard {
    fn validate(self, src: &Source) -> Result<DiscardRules, ConfigError> {
        let mut rules = DiscardRules::default();
        if let Some(idle) = &self.idle_after {
            rules.idle_after = match idle.get_ref().0 {
                None => None,
                Some(0) => {
                    return Err(src.invalid(
                        span(idle),
                        "discard.idle_after",
                        "0 would discard every session as soon as its client leaves; give a \
                         positive duration or \"never\"",
                    ))
                }
                Some(secs) => Some(std::time::Duration::from_secs(u64::from(secs))),
            };
        }
        rules.store_high_water = self.store_high_water.map_or(0, |b| b.0);
        if let Some(low) = &self.store_low_water {
            let low_bytes = low.get_ref().0;
            if rules.store_high_water == 0 || low_bytes >= rules.store_high_water {
                return Err(src.invalid(
                    span(low),
                    "discard.store_low_water",
                    "must be below discard.store_high_water (which must be set)",
                ));
            }
            rules.store_low_water = low_bytes;
        } else {
            rules.store_low_water = rules.store_high_water / 10 * 8;
        }
        set(&mut rules.victims, self.victims);
        set(&mut rules.unsubscribed_messages, self.unsubscribed_messages);
        Ok(rules)
    }
}
