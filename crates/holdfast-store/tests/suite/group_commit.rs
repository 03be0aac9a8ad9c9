//! Group commit: concurrent Sync batches share fsyncs.

use std::sync::Arc;
use std::time::Duration;

use holdfast_store::{Durability, FaultyBackend, Op, SessionRecord, Store};

use crate::common::*;

#[test]
fn concurrent_sync_batches_share_fsyncs() {
    let backend = FaultyBackend::new();
    backend.set_sync_delay(Duration::from_millis(2));
    let store = Arc::new(open_faulty(&backend, 64 << 20));
    let before = store.stats().fsyncs;
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..25 {
                    let record = SessionRecord {
                        protocol: 4,
                        ..SessionRecord::default()
                    };
                    let op = Op::PutSession {
                        client_id: format!("t{t}-{i}").into(),
                        record,
                    };
                    commit(&*store, vec![op], Durability::Sync).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    let stats = store.stats();
    let fsyncs = stats.fsyncs - before;
    assert_eq!(stats.batches, 400);
    assert!(
        fsyncs * 4 < stats.batches,
        "{fsyncs} fsyncs for {} batches",
        stats.batches
    );
    assert_eq!(stats.writes, fsyncs, "one write per group");
    assert_eq!(store.load().sessions.len(), 400);
}

#[test]
fn flush_batches_are_fsynced_within_the_interval() {
    let backend = FaultyBackend::new();
    let mut opts = faulty_opts(&backend, 1 << 20);
    opts.flush_interval = Duration::from_millis(20);
    let (store, _) = holdfast_store::LogStore::open(std::path::Path::new("/data"), opts).unwrap();
    let syncs = backend.sync_count();
    let op = Op::PutSession {
        client_id: "f".into(),
        record: SessionRecord::default(),
    };
    commit(&store, vec![op], Durability::Flush).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    assert!(backend.sync_count() > syncs, "the interval fsync ran");
    // So power loss now loses nothing.
    let after = backend.crash(holdfast_store::CrashMode::LoseUnsynced);
    drop(store);
    assert_eq!(open_faulty(&after, 1 << 20).load().sessions.len(), 1);
}
