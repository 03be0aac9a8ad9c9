//! Packets from the client.

use std::sync::Arc;

use holdfast_proto::topic::{has_wildcard, parse_shared};
use holdfast_proto::{
    Disconnect, Packet, PubResp, Publish, QoS, ReasonCode, RetainHandling, SubAck, Subscribe,
    UnsubAck, Unsubscribe,
};

use super::{Session, Stage, Subscription};
use crate::action::PendingAck;
use crate::{Action, Message, Millis};

impl Session {
    /// Handle one packet received on the attached connection.
    pub fn handle_packet(&mut self, packet: Packet, now: Millis, out: &mut Vec<Action>) {
        if self.conn.is_none() {
            return;
        }
        match packet {
            Packet::Publish(p) => self.on_publish(p, now, out),
            Packet::PubAck(r) => self.on_ack(r.packet_id, QoS::AtLeastOnce, Stage::Sent, now, out),
            Packet::PubRec(r) => self.on_pubrec(r, now, out),
            Packet::PubRel(r) => self.on_pubrel(r, out),
            Packet::PubComp(r) => {
                self.on_ack(r.packet_id, QoS::ExactlyOnce, Stage::Released, now, out)
            }
            Packet::Subscribe(s) => self.on_subscribe(s, out),
            Packet::Unsubscribe(u) => self.on_unsubscribe(u, out),
            Packet::PingReq => out.push(Action::Send(Packet::PingResp)),
            Packet::Disconnect(d) => self.on_disconnect(d, out),
            // A second CONNECT is a Protocol Error [MQTT-3.1.0-2]; AUTH needs an authentication method,
            // and none was accepted in CONNECT [MQTT-4.12.0-?]; the rest only flow server to client.
            Packet::Connect(_)
            | Packet::Auth(_)
            | Packet::ConnAck(_)
            | Packet::SubAck(_)
            | Packet::UnsubAck(_)
            | Packet::PingResp => self.protocol_error(out),
        }
    }

    fn on_publish(&mut self, p: Publish, now: Millis, out: &mut Vec<Action>) {
        let v5 = self.protocol.is_v5();
        if p.qos > self.cfg.maximum_qos {
            return self.close_with(ReasonCode::QOS_NOT_SUPPORTED, out); // [MQTT-3.2.2-11]
        }
        if p.retain && !self.cfg.retain_available {
            return self.close_with(ReasonCode::RETAIN_NOT_SUPPORTED, out); // [MQTT-3.2.2-14]
        }
        let Some(topic) = self.resolve_topic(&p, out) else {
            return;
        };
        if self.topic_too_big(&topic) {
            return self.publish_refused(&p, ReasonCode::TOPIC_NAME_INVALID, out);
        }
        if !self.acl_allows(true, &topic) {
            return self.publish_refused(&p, ReasonCode::NOT_AUTHORIZED, out);
        }
        if v5
            && p.properties.payload_format_indicator == Some(1)
            && std::str::from_utf8(&p.payload).is_err()
        {
            // [MQTT-3.3.2-?] the receiver may refuse a payload that is not the UTF-8 it claims to be.
            match (p.qos, p.packet_id) {
                (QoS::AtLeastOnce, Some(id)) => out.push(Action::Send(Packet::PubAck(
                    PubResp::with_reason(id, ReasonCode::PAYLOAD_FORMAT_INVALID),
                ))),
                (QoS::ExactlyOnce, Some(id)) => out.push(Action::Send(Packet::PubRec(
                    PubResp::with_reason(id, ReasonCode::PAYLOAD_FORMAT_INVALID),
                ))),
                _ => self.close_with(ReasonCode::PAYLOAD_FORMAT_INVALID, out),
            }
            return;
        }
        let mut store = None;
        let ack = match (p.qos, p.packet_id) {
            (QoS::AtMostOnce, _) => None,
            (QoS::AtLeastOnce, Some(id)) => {
                if !self.inbound_slot_free() {
                    return self.close_with(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, out);
                    // [MQTT-3.3.4-8]
                }
                if let Some(c) = self.conn.as_mut() {
                    c.qos1_pending += 1;
                }
                Some(PendingAck::PubAck(id))
            }
            (QoS::ExactlyOnce, Some(id)) => {
                if self.inbound_qos2.contains(&id) {
                    // A resent PUBLISH of an exchange already under way: acknowledge again, deliver
                    // nothing new [MQTT-4.3.3-?] (exactly once).
                    out.push(Action::Send(Packet::PubRec(PubResp::new(id))));
                    return;
                }
                if !self.inbound_slot_free() {
                    return self.close_with(ReasonCode::RECEIVE_MAXIMUM_EXCEEDED, out);
                }
                self.inbound_qos2.insert(id);
                // Kept until PUBREL, stored with the message's class and in the message's own batch,
                // so a PUBLISH resent after a restart is still recognised [MQTT-4.3.3-?].
                store = self.inbound_qos2_op(id, self.cfg.durability.for_topic(&topic));
                Some(PendingAck::PubRec(id))
            }
            (_, None) => return self.close_with(ReasonCode::MALFORMED_PACKET, out),
        };
        let msg = Message::from_publish(p, topic, Some(self.client_id.clone()), now, &self.cfg);
        out.push(Action::Publish {
            msg: Arc::new(msg),
            ack,
            store,
        });
    }

    /// The caller routed (and stored) the message of `ack`: send the PUBACK/PUBREC with `reason` (0x00,
    /// 0x10 No matching subscribers, or an error such as 0x97 Quota exceeded).
    pub fn publish_done(&mut self, ack: PendingAck, reason: ReasonCode, out: &mut Vec<Action>) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let reason = if self.protocol.is_v5() {
            reason
        } else {
            ReasonCode::SUCCESS
        };
        match ack {
            PendingAck::PubAck(id) => {
                conn.qos1_pending = conn.qos1_pending.saturating_sub(1);
                out.push(Action::Send(Packet::PubAck(PubResp::with_reason(
                    id, reason,
                ))));
            }
            PendingAck::PubRec(id) => {
                if reason.is_error() && self.inbound_qos2.remove(&id) {
                    // An error PUBREC ends the exchange [MQTT-4.3.3-?].
                    self.persist_inbound_qos2_gone(id, out);
                }
                out.push(Action::Send(Packet::PubRec(PubResp::with_reason(
                    id, reason,
                ))));
            }
        }
    }

    /// Whether the ACL (if any) lets this session publish to a topic or subscribe to a filter.
    fn acl_allows(&self, publish: bool, topic_or_filter: &str) -> bool {
        let Some(acl) = &self.cfg.acl else {
            return true;
        };
        let acl = acl.current();
        let who = crate::acl::Identity {
            username: self.username.as_deref(),
            client_id: &self.client_id,
        };
        if publish {
            acl.may_publish(who, topic_or_filter)
        } else {
            acl.may_subscribe(who, topic_or_filter)
        }
    }

    /// A PUBLISH the ACL denies: v5 gets 0x87 Not authorized in its PUBACK/PUBREC; 3.1.1 is
    /// acknowledged and dropped, as MQTT 3.1.1 section 4.7 allows; QoS 0 is dropped. The same for a
    /// topic over `max_topic_levels` / `max_topic_len` (v5: 0x90 Topic Name invalid).
    fn publish_refused(&mut self, p: &Publish, reason: ReasonCode, out: &mut Vec<Action>) {
        let reason = if self.protocol.is_v5() {
            reason
        } else {
            ReasonCode::SUCCESS
        };
        match (p.qos, p.packet_id) {
            (QoS::AtLeastOnce, Some(id)) => out.push(Action::Send(Packet::PubAck(
                PubResp::with_reason(id, reason),
            ))),
            (QoS::ExactlyOnce, Some(id)) => out.push(Action::Send(Packet::PubRec(
                PubResp::with_reason(id, reason),
            ))),
            _ => {}
        }
    }

    /// A topic name or filter over the configured level count or length.
    fn topic_too_big(&self, topic: &str) -> bool {
        let levels = self.cfg.max_topic_levels;
        let len = self.cfg.max_topic_len;
        (len > 0 && topic.len() > len) || (levels > 0 && topic.split('/').nth(levels).is_some())
    }

    fn inbound_slot_free(&self) -> bool {
        let pending =
            self.conn.as_ref().map_or(0, |c| c.qos1_pending as usize) + self.inbound_qos2.len();
        pending < self.cfg.receive_maximum as usize
    }

    /// The topic of a PUBLISH after applying and recording its Topic Alias [MQTT-3.3.2-12].
    fn resolve_topic(&mut self, p: &Publish, out: &mut Vec<Action>) -> Option<Arc<str>> {
        let Some(alias) = p.properties.topic_alias else {
            if p.topic.is_empty() {
                self.protocol_error(out);
                return None;
            }
            return Some(p.topic.clone());
        };
        if alias == 0 || alias > self.cfg.topic_alias_maximum {
            self.close_with(ReasonCode::TOPIC_ALIAS_INVALID, out); // [MQTT-3.3.2-9] [MQTT-3.3.2-10]
            return None;
        }
        let conn = self.conn.as_mut()?;
        if p.topic.is_empty() {
            let found = conn.aliases_in.get(&alias).cloned();
            if found.is_none() {
                self.protocol_error(out); // alias used before it was set
            }
            found
        } else {
            let topic = p.topic.clone();
            conn.aliases_in.insert(alias, topic.clone());
            Some(topic)
        }
    }

    fn on_pubrel(&mut self, r: PubResp, out: &mut Vec<Action>) {
        // Releasing an unknown id still gets a PUBCOMP so the client can finish [MQTT-4.3.3-?]; v5 says why.
        let known = self.inbound_qos2.remove(&r.packet_id);
        if known {
            self.persist_inbound_qos2_gone(r.packet_id, out);
        }
        let reason = if known || !self.protocol.is_v5() {
            ReasonCode::SUCCESS
        } else {
            ReasonCode::PACKET_IDENTIFIER_NOT_FOUND
        };
        out.push(Action::Send(Packet::PubComp(PubResp::with_reason(
            r.packet_id,
            reason,
        ))));
    }

    fn on_pubrec(&mut self, r: PubResp, now: Millis, out: &mut Vec<Action>) {
        let pos = self
            .inflight
            .iter()
            .position(|e| e.packet_id == r.packet_id && e.delivery.qos == QoS::ExactlyOnce);
        let Some(pos) = pos else {
            if self.protocol.is_v5() {
                let rel =
                    PubResp::with_reason(r.packet_id, ReasonCode::PACKET_IDENTIFIER_NOT_FOUND);
                out.push(Action::Send(Packet::PubRel(rel)));
            }
            return;
        };
        if r.reason.is_error() {
            // The receiver refused the message: the exchange is over [MQTT-4.3.3-?].
            if let Some(e) = self.inflight.remove(pos) {
                if e.stage == Stage::Released {
                    self.released -= 1;
                }
                self.persist_entry_gone(&e.delivery, out);
            }
            self.fill_window(now, out);
            return;
        }
        if self.inflight[pos].stage == Stage::Sent {
            self.inflight[pos].stage = Stage::Released;
            self.released += 1;
            // PUBREL goes out only once the released stage is stored: after a restart the broker then
            // resends PUBREL, never the PUBLISH, and the message is not delivered twice.
            self.persist_entry(&self.inflight[pos].delivery, Some(r.packet_id), true, out);
            out.push(Action::Send(Packet::PubRel(PubResp::new(r.packet_id))));
            // The PUBLISH is acknowledged: `max_inflight` has room for the next one.
            self.fill_window(now, out);
            return;
        }
        out.push(Action::Send(Packet::PubRel(PubResp::new(r.packet_id))));
    }

    /// PUBACK of a QoS 1 or PUBCOMP of a QoS 2 message: the exchange is complete and its packet id free.
    fn on_ack(&mut self, id: u16, qos: QoS, stage: Stage, now: Millis, out: &mut Vec<Action>) {
        let pos = self
            .inflight
            .iter()
            .position(|e| e.packet_id == id && e.delivery.qos == qos && e.stage == stage);
        if let Some(e) = pos.and_then(|pos| self.inflight.remove(pos)) {
            if e.stage == Stage::Released {
                self.released -= 1;
            }
            self.persist_entry_gone(&e.delivery, out);
            self.fill_window(now, out);
        }
    }

    fn on_subscribe(&mut self, s: Subscribe, out: &mut Vec<Action>) {
        let v5 = self.protocol.is_v5();
        let id = s.properties.subscription_identifiers.first().copied();
        if id.is_some() && !self.cfg.subscription_identifiers_available {
            return self.close_with(ReasonCode::SUBSCRIPTION_IDENTIFIERS_NOT_SUPPORTED, out);
            // [MQTT-3.2.2-?]
        }
        let mut reasons = Vec::with_capacity(s.filters.len());
        let mut retained = Vec::new();
        for (filter, mut options) in s.filters {
            let shared = match parse_shared(&filter) {
                Some(Ok((_, inner))) => Some(inner),
                Some(Err(_)) => {
                    reasons.push(ReasonCode::TOPIC_FILTER_INVALID);
                    continue;
                }
                None => None,
            };
            if shared.is_some() && options.no_local {
                return self.protocol_error(out); // [MQTT-3.8.3-4]
            }
            let plain = shared.unwrap_or(&filter);
            let refused = if self.topic_too_big(plain) {
                Some(ReasonCode::TOPIC_FILTER_INVALID)
            } else if !self.acl_allows(false, &filter) {
                Some(ReasonCode::NOT_AUTHORIZED)
            } else if shared.is_some() && !self.cfg.shared_subscription_available {
                Some(ReasonCode::SHARED_SUBSCRIPTIONS_NOT_SUPPORTED)
            } else if has_wildcard(plain) && !self.cfg.wildcard_subscription_available {
                Some(ReasonCode::WILDCARD_SUBSCRIPTIONS_NOT_SUPPORTED)
            } else if self.cfg.max_subscriptions > 0
                && !self.subscriptions.contains_key(&filter)
                && self.subscriptions.len() >= self.cfg.max_subscriptions
            {
                Some(ReasonCode::QUOTA_EXCEEDED)
            } else {
                None
            };
            if let Some(reason) = refused {
                // 3.1.1 has a single failure code [MQTT-3.9.3-2].
                reasons.push(if v5 {
                    reason
                } else {
                    ReasonCode::UNSPECIFIED_ERROR
                });
                continue;
            }
            // Granted QoS is at most the server's maximum [MQTT-3.2.2-9].
            options.qos = options.qos.min(self.cfg.maximum_qos);
            if !v5 {
                options = holdfast_proto::SubscriptionOptions {
                    qos: options.qos,
                    ..Default::default()
                };
            }
            let sub = Subscription { options, id };
            let existed = self.subscriptions.insert(filter.clone(), sub).is_some();
            // The subscription (and so the session) takes the strongest class it can receive; the SUBACK
            // waits until it is stored.
            let class = self.durability.max(self.cfg.durability.for_filter(plain));
            if class > self.durability && self.persisted {
                self.durability = class;
                self.persisted = false; // rewrite the whole session with the stronger class
                self.sync_record(out);
            } else {
                self.durability = class;
                if self.persisted {
                    self.persist_subscription(&filter, &sub, out);
                } else {
                    self.sync_record(out);
                }
            }
            // Retained messages are not sent for shared subscriptions [MQTT-3.8.4-?], and Retain
            // Handling decides for the others [MQTT-3.3.1-9] [MQTT-3.3.1-10] [MQTT-3.3.1-11].
            let send_retained = shared.is_none()
                && match options.retain_handling {
                    RetainHandling::SendAtSubscribe => true,
                    RetainHandling::SendIfNew => !existed,
                    RetainHandling::DoNotSend => false,
                };
            if send_retained {
                retained.push(Action::SendRetained {
                    filter: filter.clone(),
                    options,
                    id,
                });
            }
            out.push(Action::Subscribe {
                filter,
                options,
                id,
            });
            reasons.push(ReasonCode(options.qos.as_u8()));
        }
        let ack = SubAck {
            packet_id: s.packet_id,
            reasons,
            properties: Default::default(),
        };
        out.push(Action::Send(Packet::SubAck(ack)));
        out.extend(retained);
    }

    fn on_unsubscribe(&mut self, u: Unsubscribe, out: &mut Vec<Action>) {
        let mut reasons = Vec::with_capacity(u.filters.len());
        for filter in u.filters {
            if self.subscriptions.remove(&filter).is_some() {
                self.persist_unsubscribe(&filter, out);
                out.push(Action::Unsubscribe { filter });
                reasons.push(ReasonCode::SUCCESS);
            } else {
                reasons.push(ReasonCode::NO_SUBSCRIPTION_EXISTED);
            }
        }
        if !self.protocol.is_v5() {
            reasons.clear();
        }
        let ack = UnsubAck {
            packet_id: u.packet_id,
            reasons,
            properties: Default::default(),
        };
        out.push(Action::Send(Packet::UnsubAck(ack)));
    }

    fn on_disconnect(&mut self, d: Disconnect, out: &mut Vec<Action>) {
        if let Some(expiry) = d.properties.session_expiry_interval {
            let zero_at_connect = self
                .conn
                .as_ref()
                .is_some_and(|c| c.connected_with_zero_expiry);
            if zero_at_connect && expiry != 0 {
                return self.protocol_error(out); // [MQTT-3.14.2-2]
            }
            self.expiry = self
                .cfg
                .session_expiry_max
                .map_or(expiry, |max| expiry.min(max));
        }
        // A normal DISCONNECT deletes the will; 0x04 asks for it to be sent [MQTT-3.14.4-3].
        if d.reason != ReasonCode::DISCONNECT_WITH_WILL {
            self.will = None;
        }
        out.push(Action::Close(None));
    }
}
