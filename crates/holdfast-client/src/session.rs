//! The client's Session state (MQTT 4.1) and how it is kept in a holdfast-store [`Store`]: the session
//! is one session record keyed by the client id; each outbound QoS 1/2 message is a `PutMessage` (its id
//! is the entry's sequence number) plus a `PutOutbound` carrying its packet id and `released` flag;
//! each inbound QoS 2 packet id awaiting PUBREL is a `PutInboundQos2`.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::sync::Arc;

use holdfast_core::persist::{Op, OutEntry, SessionRecord, StoredMessage};
use holdfast_core::Durability;
use holdfast_store::{Store, StoreError};
use tokio::sync::{mpsc, oneshot};

use crate::ClientError;

/// What to do once a batch is as durable as asked.
#[derive(Debug)]
pub(crate) enum After {
    /// The outbound message `seq` may now be transmitted.
    Stored(u64),
    /// `released` of `seq` is recorded: send PUBREL.
    Released(u64),
    /// The inbound QoS 2 id is recorded: send PUBREC.
    PubRec(u16),
    /// The inbound QoS 2 id is forgotten: send PUBCOMP.
    PubComp(u16),
    Nothing,
}

pub(crate) type Committed = (After, Result<(), StoreError>);

/// One outbound QoS 1/2 message, from publish until PUBACK/PUBCOMP.
pub(crate) struct OutMsg {
    pub message: StoredMessage,
    pub packet_id: u16,
    pub durability: Durability,
    /// Recorded as its class asks: may be transmitted.
    pub stored: bool,
    /// PUBREC received and `released` recorded: PUBREL is due, not PUBLISH.
    pub released: bool,
    /// Transmitted on the current connection (counts against Receive Maximum).
    pub sent: bool,
    /// Transmitted before (or recovered from the store): resend with DUP.
    pub dup: bool,
    pub stored_tx: Option<oneshot::Sender<Result<(), ClientError>>>,
    pub done_tx: Option<oneshot::Sender<Result<(), ClientError>>>,
}

pub(crate) struct Session {
    pub client_id: std::sync::Arc<str>,
    store: Option<Arc<dyn Store>>,
    record: SessionRecord,
    record_written: bool,
    pub out: BTreeMap<u64, OutMsg>,
    pub by_pid: HashMap<u16, u64>,
    /// Packet ids of SUBSCRIBE/UNSUBSCRIBE awaiting their ack.
    pub other_pids: HashSet<u16>,
    pub inbound_qos2: BTreeSet<u16>,
    next_seq: u64,
    next_pid: u16,
    committed_tx: mpsc::UnboundedSender<Committed>,
}

impl Session {
    /// The session of `client_id` as `store` holds it (empty without a store).
    pub fn load(
        client_id: &str,
        store: Option<Arc<dyn Store>>,
        record: SessionRecord,
        committed_tx: mpsc::UnboundedSender<Committed>,
    ) -> Session {
        let mut s = Session {
            client_id: client_id.into(),
            store,
            record,
            record_written: false,
            out: BTreeMap::new(),
            by_pid: HashMap::new(),
            other_pids: HashSet::new(),
            inbound_qos2: BTreeSet::new(),
            next_seq: 1,
            next_pid: 1,
            committed_tx,
        };
        let Some(store) = s.store.clone() else {
            return s;
        };
        let mut state = store.load();
        let Some(stored) = state.sessions.remove(client_id) else {
            return s;
        };
        s.record_written = true;
        s.inbound_qos2 = stored.inbound_qos2;
        for (seq, entry) in stored.outbound {
            let Some(message) = state.messages.remove(&entry.message_id) else {
                continue;
            };
            s.next_seq = s.next_seq.max(seq + 1);
            let packet_id = match entry.packet_id {
                Some(id) if !s.by_pid.contains_key(&id) => id,
                _ => match s.alloc_pid() {
                    Some(id) => id,
                    None => continue,
                },
            };
            s.by_pid.insert(packet_id, seq);
            s.out.insert(
                seq,
                OutMsg {
                    message,
                    packet_id,
                    durability: Durability::Flush,
                    stored: true,
                    released: entry.released,
                    sent: false,
                    dup: true,
                    stored_tx: None,
                    done_tx: None,
                },
            );
        }
        tracing::debug!(
            client_id,
            outbound = s.out.len(),
            inbound_qos2 = s.inbound_qos2.len(),
            "client session recovered"
        );
        s
    }

    /// A packet id in use by no outbound message and no SUBSCRIBE/UNSUBSCRIBE [MQTT-2.2.1-3].
    pub fn alloc_pid(&mut self) -> Option<u16> {
        for _ in 0..u16::MAX {
            let id = self.next_pid;
            self.next_pid = if id == u16::MAX { 1 } else { id + 1 };
            if !self.by_pid.contains_key(&id) && !self.other_pids.contains(&id) {
                return Some(id);
            }
        }
        None
    }

    /// Records `ops` with `durability`. Returns `Some(after)` when there is nothing to wait for
    /// (volatile, or no store): the caller performs `after` at once.
    fn commit(&mut self, mut ops: Vec<Op>, durability: Durability, after: After) -> Option<After> {
        let store = match &self.store {
            Some(s) if durability != Durability::Volatile => s.clone(),
            _ => return Some(after),
        };
        if !self.record_written {
            self.record_written = true;
            ops.insert(
                0,
                Op::PutSession {
                    client_id: self.client_id.clone(),
                    record: self.record.clone(),
                },
            );
        }
        let tx = self.committed_tx.clone();
        store.commit(
            ops,
            durability,
            Some(Box::new(move |r| {
                let _ = tx.send((after, r));
            })),
        );
        None
    }

    /// Adds an outbound message; `Some(After::Stored)` when it may be sent at once.
    pub fn enqueue(&mut self, mut msg: OutMsg) -> Option<After> {
        let seq = self.next_seq;
        self.next_seq += 1;
        self.by_pid.insert(msg.packet_id, seq);
        let ops = vec![
            Op::PutMessage {
                id: seq,
                message: msg.message.clone(),
            },
            Op::PutOutbound {
                client_id: self.client_id.clone(),
                seq,
                entry: self.entry(&msg),
            },
        ];
        let durability = msg.durability;
        msg.stored = false;
        self.out.insert(seq, msg);
        self.commit(ops, durability, After::Stored(seq))
    }

    fn entry(&self, msg: &OutMsg) -> OutEntry {
        OutEntry {
            message_id: self.seq_of(msg.packet_id),
            qos: msg.message.qos,
            retain: msg.message.retain,
            subscription_ids: Vec::new(),
            packet_id: Some(msg.packet_id),
            released: msg.released,
        }
    }

    fn seq_of(&self, pid: u16) -> u64 {
        self.by_pid.get(&pid).copied().unwrap_or(0)
    }

    /// PUBREC received for `seq`: record `released`, then PUBREL.
    pub fn release(&mut self, seq: u64) -> Option<After> {
        let msg = self.out.get(&seq)?;
        let mut entry = self.entry(msg);
        entry.released = true;
        let ops = vec![Op::PutOutbound {
            client_id: self.client_id.clone(),
            seq,
            entry,
        }];
        let d = msg.durability;
        self.commit(ops, d, After::Released(seq))
    }

    /// The exchange of `seq` is over (completed or refused): forget it.
    pub fn complete(&mut self, seq: u64) -> Option<OutMsg> {
        let msg = self.out.remove(&seq)?;
        self.by_pid.remove(&msg.packet_id);
        let ops = vec![
            Op::DeleteOutbound {
                client_id: self.client_id.clone(),
                seq,
            },
            Op::DeleteMessage { id: seq },
        ];
        // A lost delete only causes a resend (QoS 1) or a PUBREL answered with PUBCOMP (QoS 2).
        self.commit(ops, msg.durability.min(Durability::Flush), After::Nothing);
        Some(msg)
    }

    /// An inbound QoS 2 PUBLISH was delivered: record its id, then PUBREC.
    pub fn inbound_received(&mut self, pid: u16, durability: Durability) -> Option<After> {
        self.inbound_qos2.insert(pid);
        let ops = vec![Op::PutInboundQos2 {
            client_id: self.client_id.clone(),
            packet_id: pid,
        }];
        self.commit(ops, durability, After::PubRec(pid))
    }

    /// PUBREL received: forget the id, then PUBCOMP.
    pub fn inbound_released(&mut self, pid: u16, durability: Durability) -> Option<After> {
        self.inbound_qos2.remove(&pid);
        let ops = vec![Op::DeleteInboundQos2 {
            client_id: self.client_id.clone(),
            packet_id: pid,
        }];
        self.commit(ops, durability, After::PubComp(pid))
    }

    /// The server has no session: its inbound QoS 2 state is gone, so is ours.
    pub fn forget_inbound(&mut self) {
        let ids: Vec<u16> = std::mem::take(&mut self.inbound_qos2).into_iter().collect();
        let ops = ids
            .into_iter()
            .map(|packet_id| Op::DeleteInboundQos2 {
                client_id: self.client_id.clone(),
                packet_id,
            })
            .collect::<Vec<_>>();
        if !ops.is_empty() {
            self.commit(ops, Durability::Flush, After::Nothing);
        }
    }

    /// Writes and fsyncs what is pending; at the end of the client.
    pub fn close(&self) {
        if let Some(s) = &self.store {
            s.close();
        }
    }
}

#[cfg(test)]
#[path = "session_tests.rs"]
mod tests;
