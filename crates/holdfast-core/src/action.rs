use std::sync::Arc;

use holdfast_proto::{Packet, ReasonCode, SubscriptionOptions};

use crate::Message;

/// What the caller of a state machine must do, in order.
// Packets are moved, not copied, from decision to socket; boxing them would cost an allocation each.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Action {
    /// Write this packet to the session's connection. Must be performed before the session is released to
    /// another caller, so the wire order is the order of decisions.
    Send(Packet),
    /// Route a message received from the client (or its will) to subscribers and the retained index. When
    /// `ack` is set the caller reports the outcome back with [`crate::Session::publish_done`], which
    /// produces the PUBACK/PUBREC.
    Publish {
        msg: Arc<Message>,
        ack: Option<PendingAck>,
        /// A change of the publisher's session that must be stored in the same batch as the message
        /// and every queue entry made for it: the inbound QoS 2 packet id. Stored apart, a crash in
        /// between would lose the message (id kept, message gone) or deliver it twice (the other way).
        store: Option<crate::persist::Op>,
    },
    /// Add (or replace) a subscription in the topic tree. `filter` is the full filter, `$share/...`
    /// included.
    Subscribe {
        filter: String,
        options: SubscriptionOptions,
        id: Option<u32>,
    },
    /// Send the retained messages matching this filter to the session (after the SUBACK).
    SendRetained {
        filter: String,
        options: SubscriptionOptions,
        id: Option<u32>,
    },
    /// Remove a subscription from the topic tree.
    Unsubscribe { filter: String },
    /// Close the network connection. With a reason (MQTT 5) a DISCONNECT carrying it is sent first.
    Close(Option<ReasonCode>),
    /// The session is over: forget it (its subscriptions were already removed by Unsubscribe actions).
    EndSession,
    /// A message was not delivered; counted by the caller.
    Dropped(DropReason),
    /// Record a change of Session state in the store. The Persist actions of one call form one batch;
    /// every `Send` after them waits until that batch is as durable as its strongest class (DESIGN.md).
    Persist(crate::persist::Op, crate::Durability),
}

/// The acknowledgement owed to a publisher once its message is routed (and, later, stored).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PendingAck {
    PubAck(u16),
    PubRec(u16),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DropReason {
    /// Queue of an offline or slow session full (RejectNew), or oldest dropped (DropOldest).
    QueueFull,
    /// Expired before it could be delivered.
    Expired,
    /// Larger than the client's Maximum Packet Size [MQTT-3.1.2-25].
    TooLargeForClient,
    /// QoS 0 message for a disconnected session.
    Qos0Offline,
    /// Discarded to bring the store back under its quota (`storage.quota_policy = "discard-oldest"`).
    StoreQuota,
    /// Queued for a subscription the session no longer has (`discard.unsubscribed_messages`).
    NoSubscriber,
}
