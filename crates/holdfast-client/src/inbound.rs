//! Packets from the server: acknowledgements of our messages, and messages for our subscriptions.

use holdfast_proto::{Packet, PubResp, Publish, QoS, ReasonCode};
use tokio::sync::mpsc::error::TrySendError;

use crate::conn::Conn;
use crate::eventloop::{Active, EventLoop, Pending, Sink};
use crate::{ClientError, Message};

impl EventLoop {
    pub(crate) fn packet(&mut self, conn: &mut Conn, p: Packet) -> Result<(), ClientError> {
        match p {
            Packet::Publish(p) => self.incoming(conn, p)?,
            Packet::PubAck(r) => {
                if let Some(&seq) = self.session.by_pid.get(&r.packet_id) {
                    self.finished(seq, r.reason, conn);
                }
            }
            Packet::PubRec(r) => {
                let Some(&seq) = self.session.by_pid.get(&r.packet_id) else {
                    // Not ours (any more): end the exchange.
                    let _ = conn.send(&Packet::PubRel(PubResp::with_reason(
                        r.packet_id,
                        ReasonCode(0x92),
                    )));
                    return Ok(());
                };
                if r.reason.is_error() {
                    self.finished(seq, r.reason, conn);
                } else if let Some(now) = self.session.release(seq) {
                    self.after(now, Some(conn));
                }
            }
            Packet::PubComp(r) => {
                if let Some(&seq) = self.session.by_pid.get(&r.packet_id) {
                    self.finished(seq, ReasonCode::SUCCESS, conn);
                }
            }
            Packet::PubRel(r) => {
                let d = self.inbound_durability();
                if let Some(now) = self.session.inbound_released(r.packet_id, d) {
                    self.after(now, Some(conn));
                }
            }
            Packet::SubAck(ack) => {
                self.session.other_pids.remove(&ack.packet_id);
                if let Some(Pending::Sub {
                    packet,
                    sink,
                    reply,
                }) = self.pending.remove(&ack.packet_id)
                {
                    let granted: Vec<u8> = ack.reasons.iter().map(|r| r.0).collect();
                    let filters = packet
                        .filters
                        .iter()
                        .zip(&granted)
                        .filter(|(_, g)| **g < 0x80)
                        .map(|((f, o), _)| (f.clone(), *o))
                        .collect::<Vec<_>>();
                    let id = packet.properties.subscription_identifiers.first().copied();
                    if !filters.is_empty() {
                        self.active.push(Active { filters, id, sink });
                    }
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(granted));
                    }
                }
                self.drain_backlog(conn);
            }
            Packet::UnsubAck(ack) => {
                self.session.other_pids.remove(&ack.packet_id);
                if let Some(Pending::Unsub { reply, .. }) = self.pending.remove(&ack.packet_id) {
                    let _ = reply.send(Ok(()));
                }
                self.drain_backlog(conn);
            }
            Packet::PingResp => {}
            Packet::Disconnect(d) => {
                return Err(ClientError::ServerDisconnect(d.reason.0));
            }
            other => {
                return Err(ClientError::Protocol(format!(
                    "unexpected {} from the server",
                    other.name()
                )));
            }
        }
        Ok(())
    }

    /// The exchange of `seq` ended: PUBACK, PUBCOMP, or an error reason code.
    fn finished(&mut self, seq: u64, reason: ReasonCode, conn: &mut Conn) {
        if let Some(mut m) = self.session.complete(seq) {
            let r = if reason.is_error() {
                Err(ClientError::PublishRejected(reason.0))
            } else {
                Ok(())
            };
            if let Some(tx) = m.done_tx.take() {
                let _ = tx.send(r);
            }
        }
        self.drain_backlog(conn);
        self.pump(conn);
        self.check_idle();
    }

    fn incoming(&mut self, conn: &mut Conn, mut p: Publish) -> Result<(), ClientError> {
        if let Err((reason, why)) = self.aliases_in.resolve(&mut p) {
            self.violation = Some(reason);
            return Err(ClientError::Protocol(format!(
                "{why} (DISCONNECT {:#04x})",
                reason.0
            )));
        }
        // Behind any held message: deliveries and acknowledgements keep the order of arrival
        // [MQTT-4.6.0-2] [MQTT-4.6.0-3].
        self.held_qos0 += usize::from(p.qos == QoS::AtMostOnce);
        self.held.push_back(p);
        if self.blocked.is_none() {
            self.drain_held(conn);
        }
        Ok(())
    }

    /// Hands held messages to their subscriptions, in order, and acknowledges each once handed
    /// over; stops at the first whose subscription is full.
    pub(crate) fn drain_held(&mut self, conn: &mut Conn) {
        self.blocked = None;
        while let Some(p) = self.held.pop_front() {
            self.held_qos0 -= usize::from(p.qos == QoS::AtMostOnce);
            let pid = p.packet_id.unwrap_or(0);
            // A resend of a QoS 2 message delivered already: acknowledged, not delivered again.
            let resent = p.qos == QoS::ExactlyOnce && self.session.inbound_qos2.contains(&pid);
            if !resent {
                if let Err(full) = self.deliver(&p) {
                    self.held_qos0 += usize::from(p.qos == QoS::AtMostOnce);
                    self.held.push_front(p);
                    self.blocked = Some(full);
                    return;
                }
            }
            self.acknowledge(conn, p.qos, pid, resent);
        }
    }

    fn acknowledge(&mut self, conn: &mut Conn, qos: QoS, pid: u16, resent: bool) {
        if resent {
            let _ = conn.send(&Packet::PubRec(PubResp::new(pid)));
            return;
        }
        match qos {
            QoS::AtMostOnce => {}
            QoS::AtLeastOnce => {
                let _ = conn.send(&Packet::PubAck(PubResp::new(pid)));
            }
            QoS::ExactlyOnce => {
                let d = self.inbound_durability();
                if let Some(now) = self.session.inbound_received(pid, d) {
                    self.after(now, Some(conn));
                }
            }
        }
    }

    /// To every subscription with a matching filter, once each; all or none: `Err` is a full
    /// subscription to wait for. Subscriptions whose [`Subscription`](crate::Subscription) was
    /// dropped are skipped (and forgotten).
    fn deliver(&mut self, p: &Publish) -> Result<(), Sink> {
        let mut closed = false;
        {
            let pending = self.pending.values().filter_map(|p| match p {
                Pending::Sub { packet, sink, .. } => {
                    let id = packet.properties.subscription_identifiers.first().copied();
                    Some((&packet.filters, id, sink))
                }
                _ => None,
            });
            let targets = self.active.iter().map(|a| (&a.filters, a.id, &a.sink));
            // The ids the server matched [MQTT-3.3.4-3]: a subscription with an id gets the
            // message when its id is among them; without ids, by its filters.
            let ids = &p.properties.subscription_identifiers;
            let mut permits = Vec::new();
            for (filters, id, sink) in targets.chain(pending) {
                let wanted = match id {
                    Some(id) if !ids.is_empty() => ids.contains(&id),
                    _ => filters.iter().any(|(f, _)| filter_matches(f, &p.topic)),
                };
                if !wanted {
                    continue;
                }
                match sink.try_reserve() {
                    Ok(permit) => permits.push(permit),
                    // The permits taken so far are given back when dropped.
                    Err(TrySendError::Full(())) => return Err(sink.clone()),
                    Err(TrySendError::Closed(())) => closed = true,
                }
            }
            if !permits.is_empty() {
                let m = Message {
                    topic: p.topic.to_string(),
                    payload: p.payload.clone(),
                    qos: p.qos,
                    retain: p.retain,
                    dup: p.dup,
                    properties: p.properties.clone(),
                };
                for permit in permits {
                    permit.send(m.clone());
                }
            }
        }
        if closed {
            self.active.retain(|a| !a.sink.is_closed());
        }
        Ok(())
    }
}

/// Matches plain and `$share/group/filter` filters.
fn filter_matches(filter: &str, topic: &str) -> bool {
    let plain = match holdfast_proto::topic::parse_shared(filter) {
        Some(Ok((_, f))) => f,
        _ => filter,
    };
    holdfast_proto::topic::matches(plain, topic)
}
