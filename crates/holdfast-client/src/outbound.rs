//! Our QoS 0/1/2 messages: taking them into the session, sending them within the inflight window,
//! and what follows a store commit (first transmission, PUBREL, PUBREC, PUBCOMP).

use holdfast_core::persist::StoredMessage;
use holdfast_proto::{encoded_len, Packet, Properties, ProtocolVersion, PubResp, Publish, QoS};
use tokio::sync::oneshot;

use crate::alias::{OutAliases, Plan};
use crate::conn::Conn;
use crate::eventloop::{Command, EventLoop};
use crate::session::{After, Committed, OutMsg};
use crate::{ClientError, Outgoing};

impl EventLoop {
    /// Sends what may go now: QoS 0 messages, then stored QoS 1/2 messages in order within the
    /// inflight window.
    pub fn pump(&mut self, conn: &mut Conn) {
        let version = self.opts.protocol;
        let max = self.max_packet;
        let now = now_ms();
        while let Some((mut p, expires_at, done)) = self.qos0.pop_front() {
            let r = match stamp_expiry(&mut p, expires_at, now) {
                true => send_publish(conn, &mut self.aliases_out, version, max, p)
                    .map_err(|(SendError::Fails(e) | SendError::Encode(e))| e),
                false => Err(ClientError::Expired),
            };
            let _ = done.send(r);
        }
        let mut inflight = self.session.out.values().filter(|m| m.sent).count();
        let mut failed = Vec::new();
        for (seq, m) in self.session.out.iter_mut() {
            if m.sent {
                continue;
            }
            if !m.stored || inflight >= self.inflight_limit {
                break;
            }
            let r = if m.released {
                let pubrel = Packet::PubRel(PubResp::new(m.packet_id));
                conn.send(&pubrel).map_err(SendError::Encode)
            } else {
                let mut p = publish_of(m);
                match stamp_expiry(&mut p, m.message.expires_at, now) {
                    true => send_publish(conn, &mut self.aliases_out, version, max, p),
                    false => Err(SendError::Fails(ClientError::Expired)),
                }
            };
            match r {
                Ok(()) => {}
                // This message fails; the ones behind it go on.
                Err(SendError::Fails(e)) => {
                    failed.push((*seq, e));
                    continue;
                }
                Err(SendError::Encode(e)) => {
                    tracing::warn!("cannot send PUBLISH: {e}");
                    break;
                }
            }
            m.sent = true;
            m.dup = true;
            inflight += 1;
        }
        for (seq, e) in failed {
            if let Some(mut m) = self.session.complete(seq) {
                if let Some(tx) = m.done_tx.take() {
                    let _ = tx.send(Err(e));
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
        let mut m = m;
        // Aliases belong to one connection: the client chooses them when it sends.
        if m.properties.topic_alias.is_some() {
            m.properties.topic_alias = None;
        }
        if m.qos == QoS::AtMostOnce {
            let expires_at = expiry_of(&m.properties);
            let p = Publish {
                dup: false,
                qos: QoS::AtMostOnce,
                retain: m.retain,
                topic: m.topic.into(),
                packet_id: None,
                payload: m.payload,
                properties: m.properties,
            };
            let _ = stored.send(Ok(()));
            self.qos0.push_back((p, expires_at, done));
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
                topic: m.topic.into(),
                payload: m.payload,
                qos: m.qos.as_u8(),
                retain: m.retain,
                expires_at: expiry_of(&m.properties),
                properties: m.properties,
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

/// Milliseconds since the epoch: expiry instants are stored, so they are wall-clock time.
fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// When a message published now with these properties expires (MQTT 5 Message Expiry Interval).
fn expiry_of(p: &Properties) -> Option<u64> {
    p.message_expiry_interval
        .map(|s| now_ms().saturating_add(u64::from(s) * 1000))
}

/// A message kept while offline goes out with the lifetime it has left, rounded up (as the
/// server does for what it forwards [MQTT-3.3.2-6]), or not at all once expired: false.
fn stamp_expiry(p: &mut Publish, expires_at: Option<u64>, now: u64) -> bool {
    let Some(at) = expires_at else {
        return true;
    };
    if at <= now {
        return false;
    }
    let left = u32::try_from((at - now).div_ceil(1000)).unwrap_or(u32::MAX);
    p.properties.message_expiry_interval = Some(left);
    true
}

enum SendError {
    /// Over the server's Maximum Packet Size, or expired: this message fails, the session goes on.
    Fails(ClientError),
    Encode(ClientError),
}

/// Writes `p`, with a topic alias when that helps. [MQTT-3.1.2-24] a PUBLISH over the server's
/// Maximum Packet Size is not sent.
fn send_publish(
    conn: &mut Conn,
    aliases: &mut OutAliases,
    version: ProtocolVersion,
    max: usize,
    mut p: Publish,
) -> Result<(), SendError> {
    let plan = aliases.plan(&p.topic);
    let topic = (plan != Plan::Plain).then(|| p.topic.clone());
    OutAliases::apply(plan, &mut p);
    let packet = Packet::Publish(p);
    if encoded_len(&packet, version) > max {
        return Err(SendError::Fails(ClientError::Invalid(format!(
            "PUBLISH larger than the server's Maximum Packet Size {max}"
        ))));
    }
    conn.send(&packet).map_err(SendError::Encode)?;
    // Recorded only once written: the table matches what the server has seen.
    if let Some(topic) = topic {
        aliases.commit(&topic, plan);
    }
    Ok(())
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

#[cfg(test)]
mod tests {
    use super::*;

    fn publish() -> Publish {
        Publish {
            dup: false,
            qos: QoS::AtLeastOnce,
            retain: false,
            topic: "t".into(),
            packet_id: Some(1),
            payload: Default::default(),
            properties: Default::default(),
        }
    }

    #[test] // A kept message goes out with what is left of its Message Expiry Interval, rounded up.
    fn expiry_counts_down_while_kept() {
        let mut p = publish();
        assert!(stamp_expiry(&mut p, Some(10_000), 1_001));
        assert_eq!(p.properties.message_expiry_interval, Some(9));
        assert!(stamp_expiry(&mut p, Some(10_000), 9_999));
        assert_eq!(p.properties.message_expiry_interval, Some(1));
        assert!(!stamp_expiry(&mut p, Some(10_000), 10_000), "expired");
        let mut plain = publish();
        assert!(stamp_expiry(&mut plain, None, 5));
        assert_eq!(plain.properties.message_expiry_interval, None);
    }
}
