use std::sync::Arc;

use bytes::Bytes;
use holdfast_core::persist::{SessionRecord, StoredMessage};
use holdfast_core::Durability;
use holdfast_store::{MemoryStore, Store};
use tokio::sync::mpsc;

use super::{After, OutMsg, Session};

fn msg(packet_id: u16, qos: u8, payload: &str) -> OutMsg {
    OutMsg {
        message: StoredMessage {
            topic: "t".into(),
            payload: Bytes::from(payload.to_string()),
            qos,
            ..StoredMessage::default()
        },
        packet_id,
        durability: Durability::Sync,
        stored: false,
        released: false,
        sent: false,
        dup: false,
        stored_tx: None,
        done_tx: None,
    }
}

fn session(store: &Arc<MemoryStore>) -> (Session, mpsc::UnboundedReceiver<super::Committed>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let store: Arc<dyn Store> = store.clone();
    (
        Session::load("c1", Some(store), SessionRecord::default(), tx),
        rx,
    )
}

#[test] // [MQTT-2.2.1-3] a packet id in use is not given out again until its exchange ends.
fn packet_ids_are_not_reused_while_in_flight() {
    let store = Arc::new(MemoryStore::new());
    let (mut s, _rx) = session(&store);
    let mut seen = std::collections::HashSet::new();
    for _ in 0..1000 {
        let id = s.alloc_pid().unwrap();
        assert!(seen.insert(id), "id {id} given out twice");
        s.other_pids.insert(id);
    }
    s.other_pids.clear();
    s.other_pids.extend(1..=u16::MAX);
    assert_eq!(s.alloc_pid(), None);
    s.other_pids.remove(&7);
    assert_eq!(s.alloc_pid(), Some(7));
}

#[test] // A stored message is recovered with its packet id, released flag and order, to resend with DUP.
fn outbound_state_is_recovered_from_the_store() {
    let store = Arc::new(MemoryStore::new());
    let (mut s, mut rx) = session(&store);
    for (pid, qos, p) in [(10, 1, "a"), (11, 2, "b"), (12, 2, "c"), (13, 1, "d")] {
        assert!(
            s.enqueue(msg(pid, qos, p)).is_none(),
            "sync waits for the store"
        );
    }
    let seq_b = s.by_pid[&11];
    assert!(s.release(seq_b).is_none());
    let seq_a = s.by_pid[&10];
    s.complete(seq_a);
    while let Ok((after, r)) = rx.try_recv() {
        r.unwrap();
        assert!(!matches!(after, After::PubRec(_) | After::PubComp(_)));
    }
    let (s2, _rx2) = session(&store);
    let got: Vec<_> = s2
        .out
        .values()
        .map(|m| (m.packet_id, m.released, m.dup, &m.message.payload[..]))
        .collect();
    assert_eq!(
        got,
        [
            (11, true, true, &b"b"[..]),
            (12, false, true, &b"c"[..]),
            (13, false, true, &b"d"[..])
        ]
    );
    assert_eq!(s2.by_pid.len(), 3);
}

#[test] // [MQTT-4.3.3-?] an inbound QoS 2 id is kept until PUBREL, across a restart.
fn inbound_qos2_ids_are_recovered() {
    let store = Arc::new(MemoryStore::new());
    let (mut s, _rx) = session(&store);
    s.inbound_received(5, Durability::Flush);
    s.inbound_received(6, Durability::Flush);
    s.inbound_released(5, Durability::Flush);
    let (s2, _rx2) = session(&store);
    assert_eq!(s2.inbound_qos2.iter().copied().collect::<Vec<_>>(), [6]);
}

#[test] // Volatile messages are not written: nothing is waited for, nothing is recovered.
fn volatile_messages_are_not_stored() {
    let store = Arc::new(MemoryStore::new());
    let (mut s, _rx) = session(&store);
    let mut m = msg(1, 1, "x");
    m.durability = Durability::Volatile;
    assert!(matches!(s.enqueue(m), Some(After::Stored(_))));
    let (s2, _rx2) = session(&store);
    assert!(s2.out.is_empty());
}
