//! Messages to the client: the in-flight window, the queue, packet ids, topic aliases and size limits.

use std::sync::Arc;

use holdfast_proto::{encoded_len, Packet, PubResp, Publish, QoS};

use super::{Inflight, Session, Stage};
use crate::config::QueuePolicy;
use crate::{Action, DropReason, Message, Millis};

/// One copy of a message for this session, with what the matching subscription(s) decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Delivery {
    pub msg: Arc<Message>,
    /// min(message QoS, subscription QoS) [MQTT-3.8.4-8].
    pub qos: QoS,
    /// The RETAIN flag this copy carries.
    pub retain: bool,
    /// Subscription Identifiers of the matching subscriptions [MQTT-3.3.4-3].
    pub subscription_ids: Vec<u32>,
    /// Orders the session's stored entries; given by the session when it accepts the delivery.
    pub seq: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeliverOutcome {
    /// Sent, or queued to be sent.
    Accepted,
    Dropped(DropReason),
}

impl Session {
    /// Offer a routed message to this session. QoS 1/2 copies go out when the in-flight window allows,
    /// otherwise they are queued in order; QoS 0 copies for an offline session are dropped.
    pub fn deliver(
        &mut self,
        mut d: Delivery,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> DeliverOutcome {
        if d.msg.is_expired(now) {
            return self.dropped(DropReason::Expired, out);
        }
        if d.qos == QoS::AtMostOnce {
            if self.conn.is_none() {
                return self.dropped(DropReason::Qos0Offline, out);
            }
            self.send_publish(&d, None, false, now, out);
            return DeliverOutcome::Accepted;
        }
        d.seq = self.next_seq;
        self.next_seq += 1;
        if self.queue.is_empty() && self.window_open() {
            if let Some(id) = self.alloc_packet_id() {
                self.start_inflight(d, id, now, out);
                return DeliverOutcome::Accepted;
            }
        }
        self.enqueue(d, out)
    }

    fn enqueue(&mut self, d: Delivery, out: &mut Vec<Action>) -> DeliverOutcome {
        let size = d.msg.size();
        let max_msgs = self.cfg.max_queued_messages;
        let max_bytes = self.cfg.max_queued_bytes;
        let full = |s: &Session| {
            (max_msgs > 0 && s.queue.len() >= max_msgs)
                || (max_bytes > 0 && s.queued_bytes + size > max_bytes)
        };
        if full(self) {
            match self.cfg.queue_policy {
                QueuePolicy::RejectNew => return self.dropped(DropReason::QueueFull, out),
                QueuePolicy::DropOldest => {
                    while full(self) {
                        let Some(old) = self.queue.pop_front() else {
                            // Larger than the whole byte quota on its own.
                            return self.dropped(DropReason::QueueFull, out);
                        };
                        self.queued_bytes -= old.msg.size();
                        self.persist_entry_gone(&old, out);
                        out.push(Action::Dropped(DropReason::QueueFull));
                    }
                }
            }
        }
        self.queued_bytes += size;
        self.persist_entry(&d, None, false, out);
        self.note_expiry(&d);
        self.queue.push_back(d);
        DeliverOutcome::Accepted
    }

    /// Keep [`Session::queued_expiry`] a lower bound of the queued messages' expiry times.
    pub(super) fn note_expiry(&mut self, d: &Delivery) {
        if let Some(t) = d.msg.expires_at {
            self.queued_expiry = Some(self.queued_expiry.map_or(t, |e| e.min(t)));
        }
    }

    fn dropped(&self, reason: DropReason, out: &mut Vec<Action>) -> DeliverOutcome {
        out.push(Action::Dropped(reason));
        DeliverOutcome::Dropped(reason)
    }

    /// Whether another QoS 1/2 PUBLISH may go out now. `max_inflight` counts PUBLISH packets not yet
    /// acknowledged by PUBACK or PUBREC (as rumqttd does; a QoS 2 message whose PUBREC arrived only
    /// waits for PUBCOMP and holds no copy the client might still need); as many again may wait for
    /// PUBCOMP. The client's Receive Maximum counts every exchange until PUBACK or PUBCOMP
    /// [MQTT-3.3.4-9].
    fn window_open(&self) -> bool {
        let Some(conn) = &self.conn else {
            return false;
        };
        let max = usize::from(self.cfg.max_inflight);
        self.inflight.len() - self.released < max
            && self.released < max
            && self.inflight.len() < usize::from(conn.receive_maximum)
    }

    /// A packet id not in use by an unacknowledged outbound message [MQTT-2.2.1-3].
    fn alloc_packet_id(&mut self) -> Option<u16> {
        if self.inflight.is_empty() {
            self.ids_in_order = true;
        }
        if self.ids_in_order {
            let id = self.next_packet_id;
            if self
                .inflight
                .front()
                .is_none_or(|oldest| oldest.packet_id != id)
            {
                self.next_packet_id = if id == u16::MAX { 1 } else { id + 1 };
                return Some(id);
            }
            // The ids went all the way round to one still in use: search from here on.
            self.ids_in_order = false;
        }
        for _ in 0..u16::MAX {
            let id = self.next_packet_id;
            self.next_packet_id = if id == u16::MAX { 1 } else { id + 1 };
            if !self.inflight.iter().any(|e| e.packet_id == id) {
                return Some(id);
            }
        }
        None
    }

    /// Send a QoS 1/2 message under a new packet id. The packet id is stored before the PUBLISH goes
    /// out, so a resend after a restart reuses it [MQTT-4.4.0-1].
    fn start_inflight(&mut self, d: Delivery, id: u16, now: Millis, out: &mut Vec<Action>) {
        self.persist_entry(&d, Some(id), false, out);
        if self.send_publish(&d, Some(id), false, now, out) {
            self.inflight.push_back(Inflight {
                packet_id: id,
                stage: Stage::Sent,
                delivery: d,
            });
        } else {
            self.persist_entry_gone(&d, out);
        }
    }

    /// Move queued messages into the window as it frees up, in order, skipping expired ones.
    pub(super) fn fill_window(&mut self, now: Millis, out: &mut Vec<Action>) {
        if self.conn.is_none() {
            return;
        }
        while self.window_open() {
            let Some(d) = self.queue.pop_front() else {
                break;
            };
            self.queued_bytes -= d.msg.size();
            if d.msg.is_expired(now) {
                out.push(Action::Dropped(DropReason::Expired)); // [MQTT-3.3.2-5]
                self.persist_entry_gone(&d, out);
                continue;
            }
            if d.qos == QoS::AtMostOnce {
                self.send_publish(&d, None, false, now, out);
                continue;
            }
            let Some(id) = self.alloc_packet_id() else {
                self.queued_bytes += d.msg.size();
                self.queue.push_front(d);
                break;
            };
            self.start_inflight(d, id, now, out);
        }
    }

    pub(super) fn resend_inflight(&mut self, now: Millis, out: &mut Vec<Action>) {
        let pending: Vec<(u16, Stage, Delivery)> = self
            .inflight
            .iter()
            .map(|e| (e.packet_id, e.stage, e.delivery.clone()))
            .collect();
        for (id, stage, d) in pending {
            match stage {
                Stage::Sent => {
                    if !self.send_publish(&d, Some(id), true, now, out) {
                        self.inflight.retain(|e| e.packet_id != id);
                        self.persist_entry_gone(&d, out);
                    }
                }
                Stage::Released => out.push(Action::Send(Packet::PubRel(PubResp::new(id)))),
            }
        }
    }

    /// Drop up to `max` of the oldest queued (not in-flight) messages; returns how many and their bytes.
    pub fn drop_oldest_queued(
        &mut self,
        max: usize,
        reason: DropReason,
        out: &mut Vec<Action>,
    ) -> (usize, u64) {
        let mut freed = (0, 0);
        while freed.0 < max {
            let Some(d) = self.queue.pop_front() else {
                break;
            };
            self.queued_bytes -= d.msg.size();
            freed = (freed.0 + 1, freed.1 + d.msg.size());
            out.push(Action::Dropped(reason));
            self.persist_entry_gone(&d, out);
        }
        freed
    }

    /// Drop queued messages that no subscription of the session matches any more (it unsubscribed
    /// after they were queued): they can no longer be delivered as the client now wants. Returns
    /// how many went.
    pub fn drop_unmatched_queued(&mut self, out: &mut Vec<Action>) -> usize {
        let subscribed =
            |topic: &str, subs: &std::collections::HashMap<String, super::Subscription>| {
                subs.keys()
                    .any(|f| holdfast_proto::topic::matches(super::persist::plain_filter(f), topic))
            };
        if self
            .queue
            .iter()
            .all(|d| subscribed(&d.msg.topic, &self.subscriptions))
        {
            return 0;
        }
        let subs = std::mem::take(&mut self.subscriptions);
        let (gone, kept): (Vec<Delivery>, Vec<Delivery>) = self
            .queue
            .drain(..)
            .partition(|d| !subscribed(&d.msg.topic, &subs));
        self.subscriptions = subs;
        self.queue = kept.into();
        for d in &gone {
            self.queued_bytes -= d.msg.size();
            out.push(Action::Dropped(DropReason::NoSubscriber));
            self.persist_entry_gone(d, out);
        }
        gone.len()
    }

    pub(super) fn drop_expired_queued(&mut self, now: Millis, out: &mut Vec<Action>) {
        if self.queued_expiry.is_none_or(|t| t > now) {
            return;
        }
        let (expired, kept): (Vec<Delivery>, Vec<Delivery>) =
            self.queue.drain(..).partition(|d| d.msg.is_expired(now));
        self.queue = kept.into();
        self.queued_expiry = self.queue.iter().filter_map(|d| d.msg.expires_at).min();
        for d in expired {
            self.queued_bytes -= d.msg.size();
            out.push(Action::Dropped(DropReason::Expired));
            self.persist_entry_gone(&d, out);
        }
    }

    /// Encode a PUBLISH for this connection. Returns false (and counts a drop) when it exceeds the
    /// client's Maximum Packet Size: the message is discarded for this client only [MQTT-3.1.2-25].
    fn send_publish(
        &mut self,
        d: &Delivery,
        id: Option<u16>,
        dup: bool,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> bool {
        let v5 = self.protocol.is_v5();
        let mut properties = if v5 {
            d.msg.properties.clone()
        } else {
            Default::default()
        };
        // The message's own properties hold neither (see `Message::from_publish`); only a copy
        // that carries one allocates a property set.
        if v5 {
            if let Some(left) = d.msg.remaining_expiry(now) {
                properties.message_expiry_interval = Some(left);
            }
            if !d.subscription_ids.is_empty() {
                properties
                    .subscription_identifiers
                    .clone_from(&d.subscription_ids);
            }
        }
        let publish = Publish {
            dup,
            qos: d.qos,
            retain: d.retain,
            topic: d.msg.topic.clone(),
            packet_id: id,
            payload: d.msg.payload.clone(),
            properties,
        };
        let Some(conn) = self.conn.as_mut() else {
            return false;
        };
        let mut packet = Packet::Publish(publish);
        if conn
            .max_packet_size
            .is_some_and(|max| encoded_len(&packet, self.protocol) > max as usize)
        {
            out.push(Action::Dropped(DropReason::TooLargeForClient));
            return false;
        }
        let Packet::Publish(publish) = &mut packet else {
            return false;
        };
        if v5 && conn.alias_max_out > 0 {
            // Aliases are handed out first come, first served, up to the client's maximum; a topic
            // already aliased is sent with an empty name [MQTT-3.3.2-?].
            if let Some(&alias) = conn.aliases_out.get(&d.msg.topic) {
                publish.topic = holdfast_proto::empty_topic();
                publish.properties.topic_alias = Some(alias);
            } else if conn.aliases_out.len() < usize::from(conn.alias_max_out) {
                let alias = conn.aliases_out.len() as u16 + 1;
                conn.aliases_out.insert(d.msg.topic.clone(), alias);
                publish.properties.topic_alias = Some(alias);
            }
        }
        out.push(Action::Send(packet));
        true
    }
}
