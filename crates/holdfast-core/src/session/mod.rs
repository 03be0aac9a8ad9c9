//! The state machine of one MQTT session (MQTT 5.0 section 4.1): it outlives network connections,
//! holds subscriptions, outbound messages in flight and queued, and inbound QoS 2 packet ids. While a
//! connection is attached it also holds that connection's negotiated limits and topic aliases.

mod inbound;
mod outbound;
mod persist;
#[cfg(test)]
mod tests;

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use holdfast_proto::{ProtocolVersion, ReasonCode, SubscriptionOptions, Will};

use crate::connect::{connack, ConnectParams};
use crate::{Action, ClientId, CoreConfig, Durability, Message, Millis, EXPIRY_NEVER};

pub use outbound::{DeliverOutcome, Delivery};
pub use persist::Restored;

/// A subscription as the session keeps it: the options granted and its v5 Subscription Identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subscription {
    pub options: SubscriptionOptions,
    pub id: Option<u32>,
}

/// A snapshot of a session for administrators (admin API, `holdfast ctl`).
#[derive(Debug, Clone, PartialEq)]
pub struct SessionInfo {
    pub client_id: ClientId,
    pub protocol: ProtocolVersion,
    pub connected: bool,
    pub connected_at: Option<Millis>,
    pub disconnected_at: Option<Millis>,
    /// Session Expiry Interval, seconds ([`EXPIRY_NEVER`] never).
    pub expiry_interval: u32,
    /// When the session ends if its client stays away.
    pub expires_at: Option<Millis>,
    pub subscriptions: Vec<(String, Subscription)>,
    pub queued: usize,
    pub queued_bytes: u64,
    pub inflight: usize,
    pub inbound_qos2: usize,
    pub durability: Durability,
    /// A copy is in the store (the session outlives its connection and its class is not volatile).
    pub stored: bool,
    pub has_will: bool,
}

/// Where an outbound QoS 1/2 message stands [MQTT-4.3.2] [MQTT-4.3.3].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    /// PUBLISH sent, waiting for PUBACK (QoS 1) or PUBREC (QoS 2).
    Sent,
    /// PUBREC received and PUBREL sent, waiting for PUBCOMP.
    Released,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Inflight {
    pub packet_id: u16,
    pub stage: Stage,
    pub delivery: Delivery,
}

/// The limits and aliases of the network connection currently attached.
#[derive(Debug)]
struct Conn {
    receive_maximum: u16,
    max_packet_size: Option<u32>,
    alias_max_out: u16,
    aliases_out: HashMap<Arc<str>, u16>,
    aliases_in: HashMap<u16, Arc<str>>,
    /// Inbound QoS 1 publishes routed but not yet acknowledged (they count against Receive Maximum).
    qos1_pending: u16,
    /// CONNECT carried Session Expiry 0, so DISCONNECT may not raise it [MQTT-3.14.2-2].
    connected_with_zero_expiry: bool,
}

#[derive(Debug)]
pub struct Session {
    client_id: ClientId,
    protocol: ProtocolVersion,
    cfg: Arc<CoreConfig>,
    /// Session Expiry Interval in seconds; [`EXPIRY_NEVER`] never expires.
    expiry: u32,
    subscriptions: HashMap<String, Subscription>,
    inflight: VecDeque<Inflight>,
    /// Entries of `inflight` in [`Stage::Released`] (PUBREC received, waiting for PUBCOMP).
    released: usize,
    queue: VecDeque<Delivery>,
    queued_bytes: u64,
    /// No queued message expires before this (a lower bound: it is not raised as messages leave the
    /// queue), so the sweep of an offline session does not look at every queued message each time.
    queued_expiry: Option<Millis>,
    next_packet_id: u16,
    /// Every in-flight id was handed out by `alloc_packet_id`'s fast path, in `inflight`'s order,
    /// since `inflight` was last empty: the ids in use are then the run from the front's id to the
    /// last one handed out, so the next id is free unless it is the front's.
    ids_in_order: bool,
    /// QoS 2 packet ids received and PUBREC'd, not yet released by PUBREL [MQTT-4.3.3-?].
    inbound_qos2: HashSet<u16>,
    will: Option<Will>,
    will_due: Option<Millis>,
    conn: Option<Conn>,
    disconnected_at: Option<Millis>,
    connected_at: Option<Millis>,
    /// The id of the attached (or last) connection, so a stale connection cannot detach its successor.
    generation: u64,
    ended: bool,
    /// The class of the session's records: the default, raised by each subscription to the strongest
    /// class it can receive; never lowered, so the stored copy never goes stale.
    durability: Durability,
    /// A copy of this session is in the store.
    persisted: bool,
    /// Orders outbound entries in the store.
    next_seq: u64,
    /// The authenticated user name of the attached (or last) connection, for ACL decisions.
    username: Option<Arc<str>>,
}

impl Session {
    pub fn new(client_id: ClientId, protocol: ProtocolVersion, cfg: Arc<CoreConfig>) -> Session {
        let durability = cfg.durability.default;
        Session {
            client_id,
            protocol,
            cfg,
            expiry: 0,
            subscriptions: HashMap::new(),
            inflight: VecDeque::new(),
            released: 0,
            queue: VecDeque::new(),
            queued_expiry: None,
            queued_bytes: 0,
            next_packet_id: 1,
            ids_in_order: true,
            inbound_qos2: HashSet::new(),
            will: None,
            will_due: None,
            conn: None,
            disconnected_at: None,
            connected_at: None,
            generation: 0,
            ended: false,
            durability,
            persisted: false,
            next_seq: 1,
            username: None,
        }
    }

    /// The durability class of this session's records.
    pub fn durability(&self) -> Durability {
        self.durability
    }

    pub fn client_id(&self) -> &ClientId {
        &self.client_id
    }
    pub fn protocol(&self) -> ProtocolVersion {
        self.protocol
    }
    pub fn is_connected(&self) -> bool {
        self.conn.is_some()
    }
    pub fn generation(&self) -> u64 {
        self.generation
    }
    pub fn has_ended(&self) -> bool {
        self.ended
    }
    pub fn expiry_interval(&self) -> u32 {
        self.expiry
    }
    pub fn disconnected_at(&self) -> Option<Millis> {
        self.disconnected_at
    }
    pub fn subscriptions(&self) -> impl Iterator<Item = (&str, &Subscription)> {
        self.subscriptions.iter().map(|(f, s)| (f.as_str(), s))
    }
    pub fn inflight(&self) -> impl Iterator<Item = &Inflight> {
        self.inflight.iter()
    }
    pub fn queued(&self) -> impl Iterator<Item = &Delivery> {
        self.queue.iter()
    }
    pub fn queued_len(&self) -> usize {
        self.queue.len()
    }
    pub fn queued_bytes(&self) -> u64 {
        self.queued_bytes
    }
    pub fn inbound_qos2(&self) -> impl Iterator<Item = u16> + '_ {
        self.inbound_qos2.iter().copied()
    }

    /// Attach a network connection whose CONNECT was accepted. Sends the CONNACK, then resends
    /// unacknowledged PUBLISH (DUP set) and PUBREL packets in their original order [MQTT-4.4.0-1], then
    /// what was queued while offline.
    /// `connection` must be unique among the connections this client id ever has (a broker-wide
    /// counter).
    pub fn attach(
        &mut self,
        p: ConnectParams,
        session_present: bool,
        connection: u64,
        now: Millis,
        out: &mut Vec<Action>,
    ) {
        self.generation = connection;
        self.protocol = p.protocol;
        self.username = p.username.clone();
        self.expiry = p.session_expiry;
        // A new connection cancels a pending delayed will [MQTT-3.1.2-8]; its own will replaces it.
        self.will = p.will.clone();
        self.will_due = None;
        self.disconnected_at = None;
        self.connected_at = Some(now);
        self.conn = Some(Conn {
            receive_maximum: p.receive_maximum,
            max_packet_size: p.max_packet_size,
            alias_max_out: p.topic_alias_maximum,
            aliases_out: HashMap::new(),
            aliases_in: HashMap::new(),
            qos1_pending: 0,
            connected_with_zero_expiry: p.requested_expiry == 0,
        });
        // The CONNACK that confirms a stored session waits until the session is stored.
        self.sync_record(out);
        out.push(Action::Send(holdfast_proto::Packet::ConnAck(connack(
            &p,
            session_present,
            &self.cfg,
        ))));
        self.resend_inflight(now, out);
        self.fill_window(now, out);
    }

    /// The network connection of `generation` closed, for whatever reason. Publishes or schedules the
    /// will, and ends the session when its expiry is 0 [MQTT-3.1.2-?]. Returns false when the
    /// connection was not the current one (it was taken over), in which case nothing happens.
    pub fn detach(&mut self, generation: u64, now: Millis, out: &mut Vec<Action>) -> bool {
        if generation != self.generation || self.conn.is_none() {
            return false;
        }
        self.conn = None;
        self.disconnected_at = Some(now);
        if let Some(will) = &self.will {
            let delay = will.properties.will_delay_interval.unwrap_or(0);
            if delay == 0 || self.expiry == 0 {
                self.publish_will(now, out);
            } else {
                self.will_due = Some(now + u64::from(delay) * 1000);
            }
        }
        if self.expiry == 0 {
            self.end(now, out);
        } else {
            self.sync_record(out);
        }
        true
    }

    /// An administrator closes the connection (MQTT 5 clients get 0x98 Administrative action) and, with
    /// `discard`, ends the session: its state goes, and its will is published as at any session end.
    pub fn admin_close(&mut self, discard: bool, now: Millis, out: &mut Vec<Action>) {
        if self.conn.is_some() {
            self.close_with(ReasonCode::ADMINISTRATIVE_ACTION, out);
            self.detach(self.generation, now, out);
        }
        if discard && !self.ended {
            self.discard(true, now, out);
        }
    }

    /// What an administrator sees of the session.
    pub fn info(&self) -> SessionInfo {
        SessionInfo {
            client_id: self.client_id.clone(),
            protocol: self.protocol,
            connected: self.conn.is_some(),
            connected_at: self.connected_at.filter(|_| self.conn.is_some()),
            disconnected_at: self.disconnected_at,
            expiry_interval: self.expiry,
            expires_at: self.expires_at(),
            subscriptions: self
                .subscriptions
                .iter()
                .map(|(f, s)| (f.clone(), *s))
                .collect(),
            queued: self.queue.len(),
            queued_bytes: self.queued_bytes,
            inflight: self.inflight.len(),
            inbound_qos2: self.inbound_qos2.len(),
            durability: self.durability,
            stored: self.persisted,
            has_will: self.will.is_some(),
        }
    }

    /// Another connection takes this session over: the old one is told 0x8E (v5) and closed
    /// [MQTT-3.1.4-3], then detached.
    pub fn take_over(&mut self, now: Millis, out: &mut Vec<Action>) {
        if self.conn.is_none() {
            return;
        }
        let reason = self
            .protocol
            .is_v5()
            .then_some(ReasonCode::SESSION_TAKEN_OVER);
        out.push(Action::Close(reason));
        self.detach(self.generation, now, out);
    }

    /// Advance time for a session without a connection: publish a will whose delay has passed, end the
    /// session when its expiry interval has passed, drop expired queued messages. Returns when it next
    /// needs a tick, if ever.
    pub fn tick(&mut self, now: Millis, out: &mut Vec<Action>) -> Option<Millis> {
        if self.conn.is_some() || self.ended {
            return None;
        }
        if self.will_due.is_some_and(|t| t <= now) {
            self.publish_will(now, out);
            self.sync_record(out);
        }
        let ends_at = self.expires_at();
        if ends_at.is_some_and(|t| t <= now) {
            // The session ends before the will delay is over: the will goes now [MQTT-3.1.3-9].
            self.publish_will(now, out);
            self.end(now, out);
            return None;
        }
        self.drop_expired_queued(now, out);
        match (self.will_due, ends_at) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// When an offline session ends, if it does.
    pub fn expires_at(&self) -> Option<Millis> {
        let since = self.disconnected_at?;
        (self.expiry != EXPIRY_NEVER).then(|| since + u64::from(self.expiry) * 1000)
    }

    /// Discard the session by administrative action or because a new connection asked for a clean
    /// start: subscriptions are removed and state dropped. The will is published only if the caller
    /// asks (a Clean Start takeover ends the old session, which publishes its will [MQTT-3.1.2-8]).
    pub fn discard(&mut self, publish_will: bool, now: Millis, out: &mut Vec<Action>) {
        if publish_will {
            self.publish_will(now, out);
        } else {
            self.will = None;
            self.will_due = None;
        }
        self.end(now, out);
    }

    fn publish_will(&mut self, now: Millis, out: &mut Vec<Action>) {
        self.will_due = None;
        let Some(mut will) = self.will.take() else {
            return;
        };
        // Will Delay is about when to publish, not a property of the message [MQTT-3.1.3-?].
        will.properties.will_delay_interval = None;
        let publish = holdfast_proto::Publish {
            dup: false,
            qos: will.qos,
            retain: will.retain,
            topic: will.topic.as_str().into(),
            packet_id: None,
            payload: will.payload,
            properties: will.properties,
        };
        let topic: Arc<str> = Arc::from(will.topic);
        let msg =
            Message::from_publish(publish, topic, Some(self.client_id.clone()), now, &self.cfg);
        out.push(Action::Publish {
            msg: Arc::new(msg),
            ack: None,
            store: None,
        });
    }

    fn end(&mut self, _now: Millis, out: &mut Vec<Action>) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.conn = None;
        self.sync_record(out); // ended: the stored copy is deleted
        for (filter, _) in self.subscriptions.drain() {
            out.push(Action::Unsubscribe { filter });
        }
        self.inflight.clear();
        self.released = 0;
        self.queue.clear();
        self.queued_bytes = 0;
        self.queued_expiry = None;
        self.inbound_qos2.clear();
        out.push(Action::EndSession);
    }

    fn protocol_error(&self, out: &mut Vec<Action>) {
        self.close_with(ReasonCode::PROTOCOL_ERROR, out);
    }

    /// Close the connection; MQTT 5 clients get a DISCONNECT with the reason first [MQTT-4.13.1-1].
    fn close_with(&self, reason: ReasonCode, out: &mut Vec<Action>) {
        out.push(Action::Close(self.protocol.is_v5().then_some(reason)));
    }
}
