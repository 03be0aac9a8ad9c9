//! Our QoS 0/1/2 messages: taking them into the session, sending them within the inflight window,
//! and what follows a store commit (first transmission, PUBREL, PUBREC, PUBCOMP).

use holdfast_core::persist::StoredMessage;
use holdfast_proto::{encoded_len, Packet, PubResp, Publish, QoS};
use tokio::sync::oneshot;

use crate::conn::Conn;
use crate::eventloop::{Command, EventLoop};
use crate::session::{After, Committed, OutMsg};
use crate::{ClientError, Outgoing};

impl EventLoop {
    /// Sends what may go now: QoS 0 messages, then stored QoS 1/2 messages in order within the
    /// inflight window.
    pub fn pump(&mut self, conn: &mut Conn) {
        let version = self.opts.protocol;
        while let Some((p, done)) = self.qos0.pop_front() {
            let p = Packet::Publish(p);
            let r = match encoded_len(&p, version) > self.max_packet {
                true => Err(too_large(self.max_packet)),
                false => conn.send(&p),
            };
            let _ = done.send(r);
        }
        let mut inflight = self.session.out.values().filter(|m| m.sent).count();
        let mut too_big = Vec::new();
        for (seq, m) in self.session.out.iter_mut() {
            if m.sent {
                continue;
            }
            if !m.stored || inflight >= self.inflight_limit {
                break;
            }
            let packet = if m.released {
                Packet::PubRel(PubResp::new(m.packet_id))
            } else {
                Packet::Publish(publish_of(m))
            };
            // [MQTT-3.1.2-24] a PUBLISH over the server's Maximum Packet Size is not sent: it fails.
            if encoded_len(&packet, version) > self.max_packet {
                too_big.push(*seq);
                continue;
            }
            if let Err(e) = conn.send(&packet) {
                tracing::warn!("cannot send PUBLISH: {e}");
                break;
            }
            m.sent = true;
            m.dup = true;
            inflight += 1;
        }
        for seq in too_big {
            if let Some(mut m) = self.session.complete(seq) {
                if let Some(tx) = m.done_tx.take() {
                    let _ = tx.send(Err(too_large(self.max_packet)));
                }
            }
        }
    }

    pub(crate) fn publish(
        &mut self,
        m: Outgoing,
        stored: oneshot::Sender<Result<(), ClientError>>,
        done: oneshot::Sender<Result<(), ClientError>>,
        conn: Option<&mut Conn>,
    ) {
        if m.qos == QoS::AtMostOnce {
            let p = Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: m.retain,
                topic: m.topic,
                packet_id: None,
                payload: m.payload,
                properties: m.properties,
            };
            let _ = stored.send(Ok(()));
            self.qos0.push_back((p, done));
            if let Some(c) = conn {
                self.pump(c);
            }
            return;
        }
        // Behind publishes already waiting for an id, to keep the order.
        let free = match self.backlog.is_empty() {
            true => self.session.alloc_pid(),
            false => None,
        };
        let Some(packet_id) = free else {
            self.backlog.push_back(Command::Publish {
                message: Box::new(m),
                stored,
                done,
            });
            return;
        };
        self.publish_with_id(m, packet_id, stored, done, conn);
    }

    fn publish_with_id(
        &mut self,
        m: Outgoing,
        packet_id: u16,
        stored: oneshot::Sender<Result<(), ClientError>>,
        done: oneshot::Sender<Result<(), ClientError>>,
        conn: Option<&mut Conn>,
    ) {
        let durability = m.durability.unwrap_or(self.opts.durability);
        let msg = OutMsg {
            message: StoredMessage {
                topic: m.topic,
                payload: m.payload,
                qos: m.qos.as_u8(),
                retain: m.retain,
                properties: m.properties,
                expires_at: None,
                publisher: None,
            },
            packet_id,
            durability,
            stored: false,
            released: false,
            sent: false,
            dup: false,
            stored_tx: Some(stored),
            done_tx: Some(done),
        };
        if let Some(now) = self.session.enqueue(msg) {
            self.after(now, conn);
        }
    }

    pub fn on_committed(&mut self, (after, r): Committed, conn: Option<&mut Conn>) {
        match r {
            Ok(()) => self.after(after, conn),
            Err(e) => {
                tracing::warn!("client store commit failed: {e}");
                if let After::Stored(seq) = after {
                    if let Some(mut m) = self.session.complete(seq) {
                        if let Some(tx) = m.stored_tx.take() {
                            let _ = tx.send(Err(e.into()));
                        }
                    }
                }
                self.check_idle();
            }
        }
    }

    /// Performs what waited for a commit (or needed none).
    pub fn after(&mut self, after: After, conn: Option<&mut Conn>) {
        match after {
            After::Stored(seq) => {
                if let Some(m) = self.session.out.get_mut(&seq) {
                    m.stored = true;
                    if let Some(tx) = m.stored_tx.take() {
                        let _ = tx.send(Ok(()));
                    }
                }
                if let Some(c) = conn {
                    self.pump(c);
                }
            }
            After::Released(seq) => {
                if let Some(m) = self.session.out.get_mut(&seq) {
                    m.released = true;
                    if let (Some(c), true) = (conn, m.sent) {
                        let _ = c.send(&Packet::PubRel(PubResp::new(m.packet_id)));
                    }
                }
            }
            After::PubRec(pid) => {
                if let Some(c) = conn {
                    let _ = c.send(&Packet::PubRec(PubResp::new(pid)));
                }
            }
            After::PubComp(pid) => {
                if let Some(c) = conn {
                    let _ = c.send(&Packet::PubComp(PubResp::new(pid)));
                }
            }
            After::Nothing => {}
        }
    }

    /// Frees packet ids: publishes waiting for one go now.
    pub fn drain_backlog(&mut self, conn: &mut Conn) {
        while !self.backlog.is_empty() {
            let Some(packet_id) = self.session.alloc_pid() else {
                break;
            };
            if let Some(Command::Publish {
                message,
                stored,
                done,
            }) = self.backlog.pop_front()
            {
                self.publish_with_id(*message, packet_id, stored, done, Some(&mut *conn));
            }
        }
    }

    /// Wakes [`Command::Idle`] waiters once the session holds no message.
    pub fn check_idle(&mut self) {
        if self.session.out.is_empty() && self.backlog.is_empty() && self.qos0.is_empty() {
            for w in self.idle_waiters.drain(..) {
                let _ = w.send(());
            }
        }
    }
}

fn too_large(max: usize) -> ClientError {
    ClientError::Invalid(format!(
        "PUBLISH larger than the server's Maximum Packet Size {max}"
    ))
}

pub(crate) fn publish_of(m: &OutMsg) -> Publish {
    Publish {
        dup: m.dup,
        qos: QoS::from_u8(m.message.qos).unwrap_or(QoS::AtLeastOnce),
        retain: m.message.retain,
        topic: m.message.topic.clone(),
        packet_id: Some(m.packet_id),
        payload: m.message.payload.clone(),
        properties: m.message.properties.clone(),
    }
}
