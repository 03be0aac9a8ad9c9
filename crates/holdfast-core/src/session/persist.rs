//! Keeping the stored copy of a session in step with it: every change becomes an `Action::Persist`, in
//! the order the session made it, with the durability class it needs.

use std::sync::Arc;

use holdfast_proto::ProtocolVersion;

use super::{Delivery, Inflight, Session, Stage, Subscription};
use crate::persist::{options_from_byte, options_to_byte, Op, OutEntry, SessionRecord, StoredWill};
use crate::{Action, CoreConfig, Durability, Message, Millis};

/// A session as read back from a store, ready to be rebuilt.
#[derive(Debug, Default)]
pub struct Restored {
    pub record: SessionRecord,
    pub subscriptions: Vec<(String, u8, Option<u32>)>,
    /// Outbound entries in `seq` order, with their messages.
    pub outbound: Vec<(u64, OutEntry, Arc<Message>)>,
    pub inbound_qos2: Vec<u16>,
}

fn push(op: Op, class: Durability, out: &mut Vec<Action>) {
    if class != Durability::Volatile {
        out.push(Action::Persist(op, class));
    }
}

impl Session {
    /// Rebuild a session from the store after a restart. A session that was connected when the broker
    /// stopped lost its connection then: its will is handled as for any connection that closed without
    /// DISCONNECT [MQTT-3.1.2-8], from `now`.
    pub fn restore(
        client_id: crate::ClientId,
        r: Restored,
        cfg: Arc<CoreConfig>,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> Session {
        Session::restore_with(client_id, r, std::iter::empty(), cfg, now, out)
    }

    /// [`restore`](Session::restore), with more outbound entries (in `seq` order, after those of
    /// `r`) from an iterator: a caller restoring a million queued messages need not collect them
    /// into a vector first.
    pub fn restore_with(
        client_id: crate::ClientId,
        r: Restored,
        outbound: impl IntoIterator<Item = (u64, OutEntry, Arc<Message>)>,
        cfg: Arc<CoreConfig>,
        now: Millis,
        out: &mut Vec<Action>,
    ) -> Session {
        let protocol = match r.record.protocol {
            3 => ProtocolVersion::V3_1,
            4 => ProtocolVersion::V3_1_1,
            _ => ProtocolVersion::V5,
        };
        let mut s = Session::new(client_id, protocol, cfg);
        s.expiry = r.record.expiry;
        s.will = r.record.will.map(StoredWill::into_will);
        s.will_due = r.record.will_due;
        s.persisted = true;
        for (filter, options, id) in r.subscriptions {
            let plain = plain_filter(&filter);
            s.durability = s.durability.max(s.cfg.durability.for_filter(plain));
            s.subscriptions.insert(
                filter,
                Subscription {
                    options: options_from_byte(options),
                    id,
                },
            );
        }
        let outbound = r.outbound.into_iter().chain(outbound);
        // Most of a large restored session is its queue: room for it at once, not by doubling.
        let (least, most) = outbound.size_hint();
        s.queue.reserve(most.unwrap_or(least));
        for (seq, e, msg) in outbound {
            s.next_seq = s.next_seq.max(seq + 1);
            let qos =
                holdfast_proto::QoS::from_u8(e.qos).unwrap_or(holdfast_proto::QoS::AtLeastOnce);
            let d = Delivery {
                msg,
                qos,
                retain: e.retain,
                subscription_ids: e.subscription_ids,
                seq,
            };
            match e.packet_id {
                Some(packet_id) => {
                    s.next_packet_id = packet_id.wrapping_add(1).max(1);
                    // Ids from the store: their order is not known to be the allocation order.
                    s.ids_in_order = false;
                    let stage = if e.released {
                        s.released += 1;
                        Stage::Released
                    } else {
                        Stage::Sent
                    };
                    s.inflight.push_back(Inflight {
                        packet_id,
                        stage,
                        delivery: d,
                    });
                }
                None => {
                    s.queued_bytes += d.msg.size();
                    s.note_expiry(&d);
                    s.queue.push_back(d);
                }
            }
        }
        s.inbound_qos2.extend(r.inbound_qos2);
        match r.record.disconnected_at {
            Some(at) => s.disconnected_at = Some(at),
            None => {
                s.disconnected_at = Some(now);
                if let Some(will) = &s.will {
                    match will.properties.will_delay_interval.unwrap_or(0) {
                        0 => s.publish_will(now, out),
                        delay => s.will_due = Some(now + u64::from(delay) * 1000),
                    }
                }
                s.sync_record(out);
            }
        }
        s
    }

    /// The class the session's own records are stored with: none while the session cannot outlive its
    /// connection (Session Expiry 0), since nothing of it survives a restart then.
    pub(super) fn record_class(&self) -> Durability {
        if self.expiry == 0 || self.ended {
            Durability::Volatile
        } else {
            self.durability
        }
    }

    /// The class of one outbound entry: that of its message, if the session is stored at all.
    pub(super) fn entry_class(&self, d: &Delivery) -> Durability {
        if !self.persisted || d.msg.stored.is_none() {
            Durability::Volatile
        } else {
            d.msg.durability
        }
    }

    fn record(&self) -> SessionRecord {
        SessionRecord {
            protocol: self.protocol.level(),
            expiry: self.expiry,
            disconnected_at: if self.conn.is_some() {
                None
            } else {
                self.disconnected_at
            },
            will: self.will.as_ref().map(StoredWill::from_will),
            will_due: self.will_due,
        }
    }

    /// Bring the stored copy in line: write the record (and, the first time, everything the session
    /// holds), or delete the stored copy when the session no longer outlives its connection.
    pub(super) fn sync_record(&mut self, out: &mut Vec<Action>) {
        let class = self.record_class();
        if class == Durability::Volatile {
            if self.persisted {
                self.persisted = false;
                out.push(Action::Persist(
                    Op::DeleteSession {
                        client_id: self.client_id.clone(),
                    },
                    Durability::Flush,
                ));
            }
            return;
        }
        let client_id = self.client_id.clone();
        push(
            Op::PutSession {
                client_id: client_id.clone(),
                record: self.record(),
            },
            class,
            out,
        );
        if self.persisted {
            return;
        }
        self.persisted = true;
        for (filter, sub) in &self.subscriptions {
            let op = Op::PutSubscription {
                client_id: client_id.clone(),
                filter: filter.clone(),
                options: options_to_byte(&sub.options),
                id: sub.id,
            };
            push(op, class, out);
        }
        for e in &self.inflight {
            self.persist_entry(
                &e.delivery,
                Some(e.packet_id),
                e.stage == Stage::Released,
                out,
            );
        }
        for d in &self.queue {
            self.persist_entry(d, None, false, out);
        }
        for &packet_id in &self.inbound_qos2 {
            push(
                Op::PutInboundQos2 {
                    client_id: client_id.clone(),
                    packet_id,
                },
                class,
                out,
            );
        }
    }

    pub(super) fn persist_subscription(
        &self,
        filter: &str,
        sub: &Subscription,
        out: &mut Vec<Action>,
    ) {
        if !self.persisted {
            return;
        }
        let op = Op::PutSubscription {
            client_id: self.client_id.clone(),
            filter: filter.to_string(),
            options: options_to_byte(&sub.options),
            id: sub.id,
        };
        push(op, self.record_class(), out);
    }

    pub(super) fn persist_unsubscribe(&self, filter: &str, out: &mut Vec<Action>) {
        if self.persisted {
            let op = Op::DeleteSubscription {
                client_id: self.client_id.clone(),
                filter: filter.to_string(),
            };
            push(op, self.record_class().min(Durability::Flush), out);
        }
    }

    pub(super) fn persist_entry(
        &self,
        d: &Delivery,
        packet_id: Option<u16>,
        released: bool,
        out: &mut Vec<Action>,
    ) {
        let class = self.entry_class(d);
        let Some(message_id) = d.msg.stored_id().filter(|_| class != Durability::Volatile) else {
            return;
        };
        let entry = OutEntry {
            message_id,
            qos: d.qos.as_u8(),
            retain: d.retain,
            subscription_ids: d.subscription_ids.clone(),
            packet_id,
            released,
        };
        push(
            Op::PutOutbound {
                client_id: self.client_id.clone(),
                seq: d.seq,
                entry,
            },
            class,
            out,
        );
    }

    /// The entry is complete or dropped. Nothing waits on its removal, so it need not be fsync'd at once:
    /// if it is lost, a QoS 1 message is sent again (with DUP) and a released QoS 2 one gets its PUBREL
    /// again, both harmless.
    pub(super) fn persist_entry_gone(&self, d: &Delivery, out: &mut Vec<Action>) {
        let class = self.entry_class(d);
        if class != Durability::Volatile {
            let op = Op::DeleteOutbound {
                client_id: self.client_id.clone(),
                seq: d.seq,
            };
            push(op, class.min(Durability::Flush), out);
        }
    }

    /// The store change recording an inbound QoS 2 packet id, if the session is stored.
    pub(super) fn inbound_qos2_op(&self, packet_id: u16, class: Durability) -> Option<Op> {
        (self.persisted && class != Durability::Volatile).then(|| Op::PutInboundQos2 {
            client_id: self.client_id.clone(),
            packet_id,
        })
    }

    /// The exchange of an inbound QoS 2 packet id is over (PUBREL, or an error PUBREC).
    pub(super) fn persist_inbound_qos2_gone(&self, packet_id: u16, out: &mut Vec<Action>) {
        if self.persisted {
            let op = Op::DeleteInboundQos2 {
                client_id: self.client_id.clone(),
                packet_id,
            };
            push(op, self.record_class().min(Durability::Flush), out);
        }
    }
}

/// The topic filter of a possibly shared (`$share/group/...`) subscription.
pub(crate) fn plain_filter(filter: &str) -> &str {
    match holdfast_proto::topic::parse_shared(filter) {
        Some(Ok((_, inner))) => inner,
        _ => filter,
    }
}
