//! Packets from the server: acknowledgements of our messages, and messages for our subscriptions.

use holdfast_proto::{Packet, PubResp, Publish, QoS, ReasonCode};

use crate::conn::Conn;
use crate::eventloop::{Active, EventLoop, Pending};
use crate::{ClientError, Message};

impl EventLoop {
    pub(crate) fn packet(&mut self, conn: &mut Conn, p: Packet) -> Result<(), ClientError> {
        match p {
            Packet::Publish(p) => self.incoming(conn, p),
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
                    if !filters.is_empty() {
                        self.active.push(Active { filters, sink });
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

    fn incoming(&mut self, conn: &mut Conn, p: Publish) {
        let pid = p.packet_id.unwrap_or(0);
        if p.qos == QoS::ExactlyOnce && self.session.inbound_qos2.contains(&pid) {
            // A resend of a message delivered already [MQTT-4.3.3-?]: acknowledge, don't deliver.
            let _ = conn.send(&Packet::PubRec(PubResp::new(pid)));
            return;
        }
        let qos = p.qos;
        self.deliver(Message {
            topic: p.topic,
            payload: p.payload,
            qos: p.qos,
            retain: p.retain,
            dup: p.dup,
            properties: p.properties,
        });
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

    /// To every subscription with a matching filter, once each.
    fn deliver(&mut self, m: Message) {
        let mut pending_subs = self
            .pending
            .values()
            .filter_map(|p| match p {
                Pending::Sub { packet, sink, .. } => Some((
                    packet.filters.iter().map(|(f, _)| f.clone()).collect(),
                    sink,
                )),
                _ => None,
            })
            .collect::<Vec<(Vec<String>, _)>>();
        let mut targets = self
            .active
            .iter()
            .map(|a| (a.filters.iter().map(|(f, _)| f.clone()).collect(), &a.sink))
            .collect::<Vec<(Vec<String>, _)>>();
        targets.append(&mut pending_subs);
        for (filters, sink) in targets {
            if filters.iter().any(|f| filter_matches(f, &m.topic)) {
                let _ = sink.send(m.clone());
            }
        }
        self.active.retain(|a| !a.sink.is_closed());
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
