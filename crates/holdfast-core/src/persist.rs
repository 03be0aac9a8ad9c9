//! The records of Session state as a store keeps them: every change the broker makes to a session, a
//! message or the retained index is one [`Op`]. Stores (holdfast-store) record and replay them.

use std::sync::Arc;

use bytes::Bytes;
use holdfast_proto::Properties;

use crate::ClientId;

/// One change to stored state. Ops of one batch are applied in order, and batches in commit order.
#[derive(Debug, Clone, PartialEq)]
pub enum Op {
    /// Create or replace a session's record (its subscriptions and messages are kept).
    PutSession {
        client_id: ClientId,
        record: SessionRecord,
    },
    /// The session is over: its record, subscriptions, outbound entries and inbound QoS 2 ids go.
    DeleteSession {
        client_id: ClientId,
    },
    /// `options` is the MQTT 5 subscription options byte (QoS, No Local, Retain As Published, Retain
    /// Handling); `filter` may be a `$share/...` filter.
    PutSubscription {
        client_id: ClientId,
        filter: String,
        options: u8,
        id: Option<u32>,
    },
    DeleteSubscription {
        client_id: ClientId,
        filter: String,
    },
    /// A message body, stored once and referenced by outbound entries and the retained index.
    PutMessage {
        id: u64,
        message: StoredMessage,
    },
    /// The last reference to a message went away.
    DeleteMessage {
        id: u64,
    },
    /// Add or replace a session's outbound entry: queued (no packet id), in flight (packet id set), or
    /// released (PUBREC received, PUBREL sent). `seq` orders a session's entries.
    PutOutbound {
        client_id: ClientId,
        seq: u64,
        entry: OutEntry,
    },
    /// Delivery completed (PUBACK/PUBCOMP) or the entry was dropped.
    DeleteOutbound {
        client_id: ClientId,
        seq: u64,
    },
    /// An inbound QoS 2 packet id was received and PUBREC'd; kept until PUBREL.
    PutInboundQos2 {
        client_id: ClientId,
        packet_id: u16,
    },
    DeleteInboundQos2 {
        client_id: ClientId,
        packet_id: u16,
    },
    PutRetained {
        topic: String,
        message_id: u64,
    },
    DeleteRetained {
        topic: String,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredWill {
    pub topic: String,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    /// Will properties: will delay, payload format, message expiry, content type, response topic,
    /// correlation data, user properties.
    pub properties: Properties,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SessionRecord {
    /// Protocol level: 3, 4 or 5.
    pub protocol: u8,
    /// Session Expiry Interval, seconds (u32::MAX: never).
    pub expiry: u32,
    /// Milliseconds since the UNIX epoch when the last connection closed; None while connected.
    pub disconnected_at: Option<u64>,
    pub will: Option<StoredWill>,
    /// When a disconnected session's delayed will is due (ms since the epoch).
    pub will_due: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredMessage {
    pub topic: Arc<str>,
    pub payload: Bytes,
    pub qos: u8,
    pub retain: bool,
    /// Forwarded properties: payload format, content type, response topic, correlation data, user
    /// properties.
    pub properties: Properties,
    /// Expiry, ms since the epoch.
    pub expires_at: Option<u64>,
    pub publisher: Option<ClientId>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutEntry {
    pub message_id: u64,
    /// QoS of this delivery (1 or 2).
    pub qos: u8,
    pub retain: bool,
    pub subscription_ids: Vec<u32>,
    /// Set once sent: the packet id used, so a resend after restart reuses it [MQTT-4.4.0-1].
    pub packet_id: Option<u16>,
    /// PUBREC received and PUBREL sent (QoS 2).
    pub released: bool,
}

/// The MQTT 5 subscription options byte [MQTT-3.8.3-?]: QoS in bits 0-1, No Local bit 2, Retain As
/// Published bit 3, Retain Handling bits 4-5.
pub fn options_to_byte(o: &holdfast_proto::SubscriptionOptions) -> u8 {
    o.qos.as_u8()
        | (u8::from(o.no_local) << 2)
        | (u8::from(o.retain_as_published) << 3)
        | ((o.retain_handling as u8) << 4)
}

pub fn options_from_byte(b: u8) -> holdfast_proto::SubscriptionOptions {
    use holdfast_proto::{QoS, RetainHandling};
    holdfast_proto::SubscriptionOptions {
        qos: QoS::from_u8(b & 0b11).unwrap_or(QoS::AtMostOnce),
        no_local: b & 0b100 != 0,
        retain_as_published: b & 0b1000 != 0,
        retain_handling: match (b >> 4) & 0b11 {
            1 => RetainHandling::SendIfNew,
            2 => RetainHandling::DoNotSend,
            _ => RetainHandling::SendAtSubscribe,
        },
    }
}

impl StoredMessage {
    pub fn from_message(m: &crate::Message) -> StoredMessage {
        StoredMessage {
            topic: m.topic.clone(),
            payload: m.payload.clone(),
            qos: m.qos.as_u8(),
            retain: m.retain,
            properties: m.properties.clone(),
            expires_at: m.expires_at,
            publisher: m.publisher.clone(),
        }
    }

    /// Back into a routed message; `cfg` decides its durability class again (rules may have changed).
    pub fn into_message(self, cfg: &crate::CoreConfig) -> crate::Message {
        let topic = self.topic;
        crate::Message {
            durability: cfg.durability.for_topic(&topic),
            topic,
            payload: self.payload,
            qos: holdfast_proto::QoS::from_u8(self.qos).unwrap_or(holdfast_proto::QoS::AtLeastOnce),
            retain: self.retain,
            properties: self.properties,
            expires_at: self.expires_at,
            publisher: self.publisher,
            stored: None,
        }
    }
}

/// Rebuilds routed messages from stored ones, at start and by the million: consecutive messages with
/// the same topic (most of a queue) share one allocation of it and one look-up of its durability
/// class, and consecutive ones from the same publisher share its name.
pub struct MessageRebuilder<'a> {
    cfg: &'a crate::CoreConfig,
    topic: Option<(std::sync::Arc<str>, crate::Durability)>,
    publisher: Option<crate::ClientId>,
}

impl<'a> MessageRebuilder<'a> {
    pub fn new(cfg: &'a crate::CoreConfig) -> MessageRebuilder<'a> {
        MessageRebuilder {
            cfg,
            topic: None,
            publisher: None,
        }
    }

    /// What [`StoredMessage::into_message`] gives, from a borrowed message.
    pub fn message(&mut self, m: &StoredMessage) -> crate::Message {
        let (topic, durability) = match &self.topic {
            Some((t, d)) if **t == *m.topic => (t.clone(), *d),
            _ => {
                let t = m.topic.clone();
                let d = self.cfg.durability.for_topic(&t);
                self.topic = Some((t.clone(), d));
                (t, d)
            }
        };
        let publisher = m.publisher.as_deref().map(|p| match &self.publisher {
            Some(x) if **x == *p => x.clone(),
            _ => {
                let x: crate::ClientId = p.into();
                self.publisher = Some(x.clone());
                x
            }
        });
        crate::Message {
            durability,
            topic,
            payload: m.payload.clone(),
            qos: holdfast_proto::QoS::from_u8(m.qos).unwrap_or(holdfast_proto::QoS::AtLeastOnce),
            retain: m.retain,
            properties: m.properties.clone(),
            expires_at: m.expires_at,
            publisher,
            stored: None,
        }
    }
}

impl StoredWill {
    pub fn from_will(w: &holdfast_proto::Will) -> StoredWill {
        StoredWill {
            topic: w.topic.clone(),
            payload: w.payload.clone(),
            qos: w.qos.as_u8(),
            retain: w.retain,
            properties: w.properties.clone(),
        }
    }

    pub fn into_will(self) -> holdfast_proto::Will {
        holdfast_proto::Will {
            topic: self.topic,
            payload: self.payload,
            qos: holdfast_proto::QoS::from_u8(self.qos).unwrap_or(holdfast_proto::QoS::AtMostOnce),
            retain: self.retain,
            properties: self.properties,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use holdfast_proto::{QoS, RetainHandling, SubscriptionOptions};

    #[test]
    fn options_byte_round_trip() {
        for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
            for rh in [
                RetainHandling::SendAtSubscribe,
                RetainHandling::SendIfNew,
                RetainHandling::DoNotSend,
            ] {
                for (nl, rap) in [(false, false), (true, false), (false, true), (true, true)] {
                    let o = SubscriptionOptions {
                        qos,
                        no_local: nl,
                        retain_as_published: rap,
                        retain_handling: rh,
                    };
                    assert_eq!(options_from_byte(options_to_byte(&o)), o);
                }
            }
        }
    }
}
