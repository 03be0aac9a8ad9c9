//! The state a store holds, and how ops change it. `MemoryStore` is exactly this; the durable store
//! rebuilds it by replaying its log, so the two can be compared in tests.

use std::collections::{BTreeMap, BTreeSet};

use crate::{Op, OutEntry, SessionRecord, StoredMessage};

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredSession {
    pub record: SessionRecord,
    pub subscriptions: BTreeMap<String, (u8, Option<u32>)>,
    pub outbound: BTreeMap<u64, OutEntry>,
    pub inbound_qos2: BTreeSet<u16>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StoredState {
    pub sessions: BTreeMap<holdfast_core::ClientId, StoredSession>,
    pub messages: BTreeMap<u64, StoredMessage>,
    pub retained: BTreeMap<String, u64>,
}

impl StoredState {
    /// Apply one op. Ops naming a session that does not exist (other than `PutSession`) are ignored, so
    /// a log whose middle was damaged still replays into a consistent state.
    pub fn apply(&mut self, op: &Op) {
        self.apply_owned(op.clone());
    }

    /// [`apply`](Self::apply), moving the op's strings and message into the state instead of copying
    /// them (replay and the committer own their ops).
    pub fn apply_owned(&mut self, op: Op) {
        match op {
            Op::PutSession { client_id, record } => {
                self.sessions.entry(client_id).or_default().record = record;
            }
            Op::DeleteSession { client_id } => {
                self.sessions.remove(&client_id);
            }
            Op::PutSubscription {
                client_id,
                filter,
                options,
                id,
            } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.subscriptions.insert(filter, (options, id));
                }
            }
            Op::DeleteSubscription { client_id, filter } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.subscriptions.remove(&filter);
                }
            }
            Op::PutMessage { id, message } => {
                self.messages.insert(id, message);
            }
            Op::DeleteMessage { id } => {
                self.messages.remove(&id);
            }
            Op::PutOutbound {
                client_id,
                seq,
                entry,
            } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.outbound.insert(seq, entry);
                }
            }
            Op::DeleteOutbound { client_id, seq } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.outbound.remove(&seq);
                }
            }
            Op::PutInboundQos2 {
                client_id,
                packet_id,
            } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.inbound_qos2.insert(packet_id);
                }
            }
            Op::DeleteInboundQos2 {
                client_id,
                packet_id,
            } => {
                if let Some(s) = self.sessions.get_mut(&client_id) {
                    s.inbound_qos2.remove(&packet_id);
                }
            }
            Op::PutRetained { topic, message_id } => {
                self.retained.insert(topic, message_id);
            }
            Op::DeleteRetained { topic } => {
                self.retained.remove(&topic);
            }
        }
    }

    /// Drop what can no longer be reached: outbound entries whose message is gone, and messages no
    /// entry or retained topic refers to. Returns how many messages were dropped.
    pub fn collect_garbage(&mut self) -> usize {
        // Sorted vectors rather than sets: this runs over every message at each start.
        let ids: Vec<u64> = self.messages.keys().copied().collect();
        let exists = |id: &u64| ids.binary_search(id).is_ok();
        let mut live = Vec::with_capacity(ids.len());
        for s in self.sessions.values_mut() {
            s.outbound.retain(|_, e| exists(&e.message_id));
            live.extend(s.outbound.values().map(|e| e.message_id));
        }
        self.retained.retain(|_, id| exists(id));
        live.extend(self.retained.values().copied());
        live.sort_unstable();
        live.dedup();
        if live.len() == ids.len() {
            return 0; // every message is referred to (each id in `live` exists)
        }
        let before = self.messages.len();
        // Both ascending: walk them together.
        let mut next = live.iter().peekable();
        self.messages.retain(|id, _| {
            while next.next_if(|l| *l < id).is_some() {}
            next.peek() == Some(&id)
        });
        before - self.messages.len()
    }

    /// The ops that rebuild this state from nothing (a snapshot, used by compaction).
    pub fn to_ops(&self) -> Vec<Op> {
        let mut ops = Vec::new();
        for (id, message) in &self.messages {
            ops.push(Op::PutMessage {
                id: *id,
                message: message.clone(),
            });
        }
        for (client_id, s) in &self.sessions {
            ops.push(Op::PutSession {
                client_id: client_id.clone(),
                record: s.record.clone(),
            });
            for (filter, (options, id)) in &s.subscriptions {
                ops.push(Op::PutSubscription {
                    client_id: client_id.clone(),
                    filter: filter.clone(),
                    options: *options,
                    id: *id,
                });
            }
            for (seq, entry) in &s.outbound {
                ops.push(Op::PutOutbound {
                    client_id: client_id.clone(),
                    seq: *seq,
                    entry: entry.clone(),
                });
            }
            for packet_id in &s.inbound_qos2 {
                ops.push(Op::PutInboundQos2 {
                    client_id: client_id.clone(),
                    packet_id: *packet_id,
                });
            }
        }
        for (topic, id) in &self.retained {
            ops.push(Op::PutRetained {
                topic: topic.clone(),
                message_id: *id,
            });
        }
        ops
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test] // entries whose message is gone go, then messages nothing refers to
    fn garbage_is_what_nothing_reaches() {
        let mut state = StoredState::default();
        for id in 1..=6 {
            state.messages.insert(id, StoredMessage::default());
        }
        let entry = |message_id| OutEntry {
            message_id,
            qos: 1,
            ..OutEntry::default()
        };
        let mut s = StoredSession::default();
        s.outbound.insert(1, entry(4));
        s.outbound.insert(2, entry(9));
        s.outbound.insert(3, entry(2));
        state.sessions.insert("c".into(), s);
        state.retained.insert("r".into(), 5);
        state.retained.insert("gone".into(), 8);
        assert_eq!(state.collect_garbage(), 3);
        assert_eq!(
            state.messages.keys().copied().collect::<Vec<_>>(),
            [2, 4, 5]
        );
        assert_eq!(
            state.sessions["c"]
                .outbound
                .keys()
                .copied()
                .collect::<Vec<_>>(),
            [1, 3]
        );
        assert_eq!(state.retained.keys().collect::<Vec<_>>(), ["r"]);
        assert_eq!(state.collect_garbage(), 0);
    }
}
