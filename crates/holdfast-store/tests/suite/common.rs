//! What the tests share: committing and waiting, a random op generator, and a workload that behaves
//! like the broker (a message is put with its first reference and deleted with its last).

use std::path::Path;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use holdfast_proto::Properties;
use holdfast_store::{
    Backend, Durability, FaultyBackend, LogOptions, LogStore, Op, OutEntry, SessionRecord, Store,
    StoreError, StoredMessage, StoredState, StoredWill,
};
use proptest::prelude::*;

/// Commits and waits for the completion.
pub fn commit(store: &dyn Store, ops: Vec<Op>, durability: Durability) -> Result<(), StoreError> {
    let (tx, rx) = mpsc::channel();
    store.commit(
        ops,
        durability,
        Some(Box::new(move |r| {
            let _ = tx.send(r);
        })),
    );
    rx.recv_timeout(Duration::from_secs(30))
        .expect("completion called")
}

/// Options for a store on a simulated disk (fsync every hour: only Sync commits force one).
pub fn faulty_opts(backend: &FaultyBackend, segment_size: u64) -> LogOptions {
    LogOptions {
        flush_interval: Duration::from_secs(3600),
        segment_size,
        backend: Arc::new(backend.clone()) as Arc<dyn Backend>,
        ..LogOptions::default()
    }
}

pub fn open_faulty(backend: &FaultyBackend, segment_size: u64) -> LogStore {
    LogStore::open(Path::new("/data"), faulty_opts(backend, segment_size))
        .expect("open")
        .0
}

pub fn gc(mut state: StoredState) -> StoredState {
    state.collect_garbage();
    state
}

pub fn apply_all<'a>(state: &mut StoredState, batches: impl IntoIterator<Item = &'a Vec<Op>>) {
    for batch in batches {
        for op in batch {
            state.apply(op);
        }
    }
}

// ---------------------------------------------------------------- random ops

const CLIENTS: [&str; 3] = ["a", "b", "c"];
const FILTERS: [&str; 3] = ["x/#", "y/+", "$share/g/z"];
const TOPICS: [&str; 2] = ["t/1", "t/2"];

fn client() -> impl Strategy<Value = holdfast_core::ClientId> {
    prop::sample::select(&CLIENTS[..]).prop_map(holdfast_core::ClientId::from)
}

fn properties() -> impl Strategy<Value = Properties> {
    (
        any::<Option<u8>>(),
        any::<Option<u32>>(),
        prop::option::of("[a-z/]{0,8}"),
        prop::collection::vec(("[a-z]{1,3}", "[a-z]{0,3}"), 0..2),
    )
        .prop_map(|(pfi, expiry, content_type, user_properties)| {
            Properties::from(holdfast_proto::PropertySet {
                payload_format_indicator: pfi,
                message_expiry_interval: expiry,
                content_type,
                user_properties,
                ..Default::default()
            })
        })
}

fn message() -> impl Strategy<Value = StoredMessage> {
    (
        prop::sample::select(&TOPICS[..]),
        prop::collection::vec(any::<u8>(), 0..40),
        0u8..3,
        any::<bool>(),
        properties(),
        any::<Option<u64>>(),
    )
        .prop_map(
            |(topic, payload, qos, retain, properties, expires_at)| StoredMessage {
                topic: topic.into(),
                payload: Bytes::from(payload),
                qos,
                retain,
                properties,
                expires_at,
                publisher: Some("p".into()),
            },
        )
}

fn record() -> impl Strategy<Value = SessionRecord> {
    (
        3u8..6,
        any::<u32>(),
        any::<Option<u64>>(),
        prop::option::of(properties()),
        any::<Option<u64>>(),
    )
        .prop_map(
            |(protocol, expiry, disconnected_at, will, will_due)| SessionRecord {
                protocol,
                expiry,
                disconnected_at,
                will: will.map(|properties| StoredWill {
                    topic: "w".into(),
                    payload: Bytes::from_static(b"bye"),
                    qos: 1,
                    retain: false,
                    properties,
                }),
                will_due,
            },
        )
}

fn entry() -> impl Strategy<Value = OutEntry> {
    (
        0u64..5,
        1u8..3,
        any::<bool>(),
        prop::collection::vec(1u32..5, 0..2),
        prop::option::of(1u16..4),
        any::<bool>(),
    )
        .prop_map(
            |(message_id, qos, retain, subscription_ids, packet_id, released)| OutEntry {
                message_id,
                qos,
                retain,
                subscription_ids,
                packet_id,
                released,
            },
        )
}

/// Any op over a few clients, filters, sequence numbers and message ids.
pub fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => (client(), record()).prop_map(|(client_id, record)| Op::PutSession { client_id, record }),
        1 => client().prop_map(|client_id| Op::DeleteSession { client_id }),
        2 => (client(), prop::sample::select(&FILTERS[..]), any::<u8>(), prop::option::of(1u32..9))
            .prop_map(|(client_id, f, options, id)| Op::PutSubscription { client_id, filter: f.into(), options, id }),
        1 => (client(), prop::sample::select(&FILTERS[..])).prop_map(|(client_id, f)| Op::DeleteSubscription { client_id, filter: f.into() }),
        3 => (0u64..5, message()).prop_map(|(id, message)| Op::PutMessage { id, message }),
        1 => (0u64..5).prop_map(|id| Op::DeleteMessage { id }),
        4 => (client(), 0u64..4, entry()).prop_map(|(client_id, seq, entry)| Op::PutOutbound { client_id, seq, entry }),
        2 => (client(), 0u64..4).prop_map(|(client_id, seq)| Op::DeleteOutbound { client_id, seq }),
        1 => (client(), 1u16..4).prop_map(|(client_id, packet_id)| Op::PutInboundQos2 { client_id, packet_id }),
        1 => (client(), 1u16..4).prop_map(|(client_id, packet_id)| Op::DeleteInboundQos2 { client_id, packet_id }),
        1 => (prop::sample::select(&TOPICS[..]), 0u64..5).prop_map(|(t, message_id)| Op::PutRetained { topic: t.into(), message_id }),
        1 => prop::sample::select(&TOPICS[..]).prop_map(|t| Op::DeleteRetained { topic: t.into() }),
    ]
}

pub fn batches(max: usize) -> impl Strategy<Value = Vec<Vec<Op>>> {
    prop::collection::vec(prop::collection::vec(op(), 0..5), 1..max)
}

// ---------------------------------------------------------------- broker-like workload

/// xorshift, seeded: the tests that use it loop over seeds.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }
}

/// Batches like the broker's: messages are put together with their references and deleted with
/// the last one, so the state never holds garbage and compaction changes nothing.
pub struct Workload {
    pub rng: Rng,
    next_message: u64,
    next_seq: u64,
    clients: u64,
}

impl Workload {
    pub fn new(seed: u64, clients: u64) -> Workload {
        Workload {
            rng: Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1),
            next_message: 1,
            next_seq: 1,
            clients,
        }
    }

    fn refs(state: &StoredState, id: u64) -> usize {
        state
            .sessions
            .values()
            .map(|s| s.outbound.values().filter(|e| e.message_id == id).count())
            .sum::<usize>()
            + state.retained.values().filter(|m| **m == id).count()
    }

    /// The next batch, given the state so far (which it does not change).
    pub fn next_batch(&mut self, state: &StoredState) -> Vec<Op> {
        let c: holdfast_core::ClientId = format!("client-{}", self.rng.below(self.clients)).into();
        let mut ops = Vec::new();
        let session = state.sessions.get(&c);
        match self.rng.below(10) {
            0 => {
                let will = self.rng.chance(50).then(|| StoredWill {
                    topic: format!("will/{c}"),
                    payload: Bytes::from(vec![1; 10]),
                    qos: 1,
                    retain: false,
                    properties: Properties::from(holdfast_proto::PropertySet {
                        will_delay_interval: Some(5),
                        ..Default::default()
                    }),
                });
                let record = SessionRecord {
                    protocol: 5,
                    expiry: 3600,
                    disconnected_at: None,
                    will,
                    will_due: None,
                };
                ops.push(Op::PutSession {
                    client_id: c,
                    record,
                });
            }
            1 if session.is_some() => {
                let filter = format!("f/{}", self.rng.below(4));
                ops.push(Op::PutSubscription {
                    client_id: c,
                    filter,
                    options: 1,
                    id: Some(1),
                });
            }
            2 if session.is_some() => {
                let filter = format!("f/{}", self.rng.below(4));
                ops.push(Op::DeleteSubscription {
                    client_id: c,
                    filter,
                });
            }
            3..=5 => {
                let id = self.next_message;
                self.next_message += 1;
                let len = self.rng.below(100) as usize;
                let message = StoredMessage {
                    topic: format!("t/{}", self.rng.below(3)).into(),
                    payload: Bytes::from(vec![(id % 251) as u8; len]),
                    qos: 1,
                    retain: false,
                    properties: Properties::from(holdfast_proto::PropertySet {
                        content_type: Some("text/plain".into()),
                        ..Default::default()
                    }),
                    expires_at: None,
                    publisher: Some("pub".into()),
                };
                let mut refs = Vec::new();
                for (client_id, _) in state.sessions.iter().filter(|_| self.rng.chance(60)) {
                    let seq = self.next_seq;
                    self.next_seq += 1;
                    let entry = OutEntry {
                        message_id: id,
                        qos: 1,
                        subscription_ids: vec![1],
                        ..OutEntry::default()
                    };
                    refs.push(Op::PutOutbound {
                        client_id: client_id.clone(),
                        seq,
                        entry,
                    });
                }
                if self.rng.chance(20) {
                    let topic = format!("r/{}", self.rng.below(3));
                    if let Some(old) = state.retained.get(&topic) {
                        if Self::refs(state, *old) == 1 {
                            refs.push(Op::DeleteMessage { id: *old });
                        }
                    }
                    refs.push(Op::PutRetained {
                        topic,
                        message_id: id,
                    });
                }
                if !refs.is_empty() {
                    ops.push(Op::PutMessage { id, message });
                    ops.extend(refs);
                }
            }
            6 => {
                if let Some((seq, e)) =
                    session.and_then(|s| s.outbound.iter().find(|(_, e)| e.packet_id.is_none()))
                {
                    let entry = OutEntry {
                        packet_id: Some((*seq % 65535 + 1) as u16),
                        ..e.clone()
                    };
                    ops.push(Op::PutOutbound {
                        client_id: c,
                        seq: *seq,
                        entry,
                    });
                }
            }
            7 => {
                if let Some((seq, e)) = session.and_then(|s| s.outbound.iter().next()) {
                    ops.push(Op::DeleteOutbound {
                        client_id: c.clone(),
                        seq: *seq,
                    });
                    if Self::refs(state, e.message_id) == 1 {
                        ops.push(Op::DeleteMessage { id: e.message_id });
                    }
                }
            }
            8 if session.is_some() => {
                let packet_id = self.rng.below(5) as u16 + 1;
                if self.rng.chance(50) {
                    ops.push(Op::PutInboundQos2 {
                        client_id: c,
                        packet_id,
                    });
                } else {
                    ops.push(Op::DeleteInboundQos2 {
                        client_id: c,
                        packet_id,
                    });
                }
            }
            9 if self.rng.chance(30) => {
                if let Some(s) = session {
                    ops.push(Op::DeleteSession {
                        client_id: c.clone(),
                    });
                    let mut gone: Vec<u64> = s.outbound.values().map(|e| e.message_id).collect();
                    gone.sort_unstable();
                    gone.dedup();
                    for id in gone {
                        let own = s.outbound.values().filter(|e| e.message_id == id).count();
                        if Self::refs(state, id) == own {
                            ops.push(Op::DeleteMessage { id });
                        }
                    }
                }
            }
            _ => {}
        }
        ops
    }

    /// The next batch that does something.
    pub fn next_nonempty(&mut self, state: &StoredState) -> Vec<Op> {
        loop {
            let ops = self.next_batch(state);
            if !ops.is_empty() {
                return ops;
            }
        }
    }

    /// `n` batches, and the state they lead to.
    pub fn batches(&mut self, start: &StoredState, n: usize) -> (Vec<Vec<Op>>, StoredState) {
        let mut state = start.clone();
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            let ops = self.next_batch(&state);
            if ops.is_empty() {
                continue;
            }
            apply_all(&mut state, [&ops]);
            out.push(ops);
        }
        (out, state)
    }
}
