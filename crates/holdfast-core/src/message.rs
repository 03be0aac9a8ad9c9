use std::sync::Arc;

use bytes::Bytes;
use holdfast_proto::{Properties, Publish, QoS};

use crate::{ClientId, Durability, Millis};

/// A message body held by a store. When the last copy of the message is dropped the store is told, so
/// the body is deleted once no queue, in-flight window or retained topic refers to it.
pub struct StoredRef {
    pub id: u64,
    on_drop: Arc<dyn Fn(u64) + Send + Sync>,
}

impl StoredRef {
    pub fn new(id: u64, on_drop: Arc<dyn Fn(u64) + Send + Sync>) -> StoredRef {
        StoredRef { id, on_drop }
    }
}

impl Drop for StoredRef {
    fn drop(&mut self) {
        (self.on_drop)(self.id)
    }
}

impl std::fmt::Debug for StoredRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "StoredRef({})", self.id)
    }
}

impl PartialEq for StoredRef {
    fn eq(&self, other: &Self) -> bool {
        self.id == other.id
    }
}
impl Eq for StoredRef {}

/// An application message as routed: shared by every subscriber and queue that holds it, so the body is
/// kept once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// The properties forwarded unaltered [MQTT-3.3.2-?]: payload format, content type, response topic,
    /// correlation data, user properties. Topic alias, subscription ids and expiry are per hop.
    pub properties: Properties,
    /// When the message expires, from its Message Expiry Interval.
    pub expires_at: Option<Millis>,
    /// For No Local [MQTT-3.8.3-3].
    pub publisher: Option<ClientId>,
    /// How safely it is stored, from the topic's durability rule.
    pub durability: Durability,
    /// Set once the body is in a store.
    pub stored: Option<Arc<StoredRef>>,
}

impl Message {
    /// Build from a received PUBLISH whose topic alias has already been resolved into `topic`.
    pub fn from_publish(
        p: Publish,
        topic: Arc<str>,
        publisher: Option<ClientId>,
        now: Millis,
        cfg: &crate::CoreConfig,
    ) -> Message {
        let expiry_cap = cfg.message_expiry_max;
        let durability = cfg.durability.for_topic(&topic);
        let mut properties = p.properties;
        let given = properties.existing_mut().and_then(|set| {
            set.topic_alias = None;
            set.subscription_identifiers.clear();
            set.message_expiry_interval.take()
        });
        properties.shrink();
        let interval = match (given, expiry_cap) {
            (Some(i), Some(cap)) => Some(i.min(cap)),
            (i, cap) => i.or(cap),
        };
        Message {
            topic,
            // The decoded payload is a slice of the connection's read buffer; a message may be queued or
            // retained for long, so it gets its own allocation rather than pinning that buffer.
            payload: Bytes::copy_from_slice(&p.payload),
            qos: p.qos,
            retain: p.retain,
            properties,
            expires_at: interval.map(|s| now + u64::from(s) * 1000),
            publisher,
            durability,
            stored: None,
        }
    }

    /// The id of the stored body, if it is stored.
    pub fn stored_id(&self) -> Option<u64> {
        self.stored.as_ref().map(|s| s.id)
    }

    pub fn is_expired(&self, now: Millis) -> bool {
        self.expires_at.is_some_and(|t| t <= now)
    }

    /// Seconds left, rounded up, for the Message Expiry Interval of a forwarded copy [MQTT-3.3.2-6].
    pub fn remaining_expiry(&self, now: Millis) -> Option<u32> {
        self.expires_at.map(|t| {
            let left = t.saturating_sub(now);
            u32::try_from(left.div_ceil(1000)).unwrap_or(u32::MAX)
        })
    }

    /// Bytes this message accounts for in queue quotas.
    pub fn size(&self) -> u64 {
        (self.topic.len() + self.payload.len()) as u64
    }
}
