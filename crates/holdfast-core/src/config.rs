use holdfast_proto::QoS;

/// How safely a change is stored (DESIGN.md, "Durability classes").
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
#[cfg_attr(
    feature = "serde",
    derive(serde::Deserialize),
    serde(rename_all = "lowercase")
)]
pub enum Durability {
    /// Memory only: lost when the process ends.
    Volatile,
    /// Written to the OS at once, fsync'd every flush interval: survives a process crash.
    #[default]
    Flush,
    /// fsync'd before it is acknowledged or forwarded: survives power loss.
    Sync,
}

impl Durability {
    /// The name used in the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            Durability::Volatile => "volatile",
            Durability::Flush => "flush",
            Durability::Sync => "sync",
        }
    }
}

impl std::fmt::Display for Durability {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What to do when a session's queue of outbound messages is full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum QueuePolicy {
    /// Keep what is queued and refuse the new message for that session (counted; an MQTT 5 publisher
    /// whose message no subscriber could take gets 0x97 Quota exceeded).
    #[default]
    RejectNew,
    /// Make room by dropping the oldest queued message (counted).
    DropOldest,
}

/// The limits and features of the broker logic. Durations are seconds, as on the wire.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CoreConfig {
    /// Largest packet the server accepts, fixed header included (sent as Maximum Packet Size in v5).
    pub max_packet_size: u32,
    /// Receive Maximum the server announces: concurrent inbound QoS 1/2 publishes per client.
    pub receive_maximum: u16,
    /// Outbound QoS 1/2 messages in flight per client, further capped by the client's Receive Maximum.
    pub max_inflight: u16,
    /// Messages queued per session beyond those in flight; 0 means no limit.
    pub max_queued_messages: usize,
    /// Payload bytes queued per session; 0 means no limit.
    pub max_queued_bytes: u64,
    pub queue_policy: QueuePolicy,
    /// Cap on the session expiry interval a client asks for, and the expiry given to MQTT 3.1.1
    /// persistent sessions. `None`: no cap (3.1.1 persistent sessions never expire).
    pub session_expiry_max: Option<u32>,
    /// Cap on message expiry intervals; also applied to messages that carry none. `None`: no cap.
    pub message_expiry_max: Option<u32>,
    pub maximum_qos: QoS,
    pub retain_available: bool,
    pub wildcard_subscription_available: bool,
    pub shared_subscription_available: bool,
    pub subscription_identifiers_available: bool,
    /// Topic aliases a client may use towards the server (0 disables).
    pub topic_alias_maximum: u16,
    /// Largest keep alive accepted; a client asking for more (or for 0) gets this as Server Keep Alive
    /// (MQTT 5). 0 means no maximum.
    pub max_keep_alive: u16,
    pub allow_zero_length_client_id: bool,
    pub max_client_id_len: usize,
    /// Subscriptions per session; 0 means no limit.
    pub max_subscriptions: usize,
    /// Levels of a topic name or filter ("a/b/c" has 3); 0 means no limit.
    pub max_topic_levels: usize,
    /// Bytes of a topic name or filter; 0 means no limit (MQTT's own is 65535).
    pub max_topic_len: usize,
    /// How safely messages and sessions are stored, by topic.
    pub durability: crate::durability::DurabilityRules,
    /// Access rules for publish and subscribe; `None`: everything is allowed.
    pub acl: Option<std::sync::Arc<crate::acl::SharedAcl>>,
}

impl Default for CoreConfig {
    fn default() -> Self {
        CoreConfig {
            max_packet_size: 1024 * 1024,
            receive_maximum: 1024,
            max_inflight: 64,
            max_queued_messages: 1000,
            max_queued_bytes: 0,
            queue_policy: QueuePolicy::RejectNew,
            session_expiry_max: None,
            message_expiry_max: None,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            wildcard_subscription_available: true,
            shared_subscription_available: true,
            subscription_identifiers_available: true,
            topic_alias_maximum: 64,
            max_keep_alive: 0,
            allow_zero_length_client_id: true,
            max_client_id_len: 65_535,
            max_subscriptions: 0,
            max_topic_levels: 200,
            max_topic_len: 0,
            durability: Default::default(),
            acl: None,
        }
    }
}
