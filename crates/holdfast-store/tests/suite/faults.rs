//! Failed writes, failed fsyncs, a full disk and the quota: errors, never a false Ok, and recovery.

use std::time::{Duration, Instant};

use bytes::Bytes;
use holdfast_store::{
    CrashMode, Durability, FaultyBackend, LogStore, Op, OutEntry, SessionRecord, Store, StoreError,
    StoredMessage, StoredState,
};

use crate::common::*;

/// Commits until one succeeds (the store retries its repair with a backoff).
fn commit_until_ok(store: &LogStore, ops: Vec<Op>) -> Result<(), StoreError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let r = commit(store, ops.clone(), Durability::Sync);
        if r.is_ok() || Instant::now() > deadline {
            return r;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Runs the workload, breaking the disk with `fault` for a while; checks that what completed Ok
/// survives power loss and that the store works again once `heal` has run.
fn survive(fault: impl Fn(&FaultyBackend), heal: impl Fn(&FaultyBackend), durability: Durability) {
    let backend = FaultyBackend::new();
    let store = open_faulty(&backend, 2048);
    let mut wl = Workload::new(7, 4);
    let mut model = StoredState::default();
    // Healthy.
    for _ in 0..20 {
        let ops = wl.next_nonempty(&model);
        commit(&store, ops.clone(), durability).unwrap();
        apply_all(&mut model, [&ops]);
    }
    // Broken: every commit fails.
    fault(&backend);
    let failed_before = store.stats().failed_commits;
    for _ in 0..5 {
        let ops = wl.next_nonempty(&model);
        let r = commit(&store, ops, Durability::Sync);
        assert!(matches!(r, Err(StoreError::Io(_))), "{r:?}");
    }
    assert!(store.stats().failed_commits >= failed_before + 5);
    // Flush and Sync batches that were Ok before are still served.
    assert_eq!(gc(store.load()), model);
    heal(&backend);
    let ops = wl.next_nonempty(&model);
    commit_until_ok(&store, ops.clone()).unwrap();
    apply_all(&mut model, [&ops]);
    for _ in 0..20 {
        let ops = wl.next_nonempty(&model);
        commit(&store, ops.clone(), Durability::Sync).unwrap();
        apply_all(&mut model, [&ops]);
    }
    assert_eq!(store.load(), model);
    let after = backend.crash(CrashMode::TornTail { seed: 3 });
    drop(store);
    assert_eq!(
        open_faulty(&after, 2048).load(),
        model,
        "nothing reported Ok is lost, nothing failed is there"
    );
}

#[test]
fn failed_writes_fail_the_batch_and_the_store_recovers() {
    survive(
        |b| b.set_fail_writes(true),
        |b| b.set_fail_writes(false),
        Durability::Sync,
    );
}

#[test]
fn failed_writes_after_flush_batches() {
    survive(
        |b| b.set_fail_writes(true),
        |b| b.set_fail_writes(false),
        Durability::Flush,
    );
}

#[test]
fn failed_fsyncs_fail_the_batch_and_the_store_recovers() {
    survive(
        |b| b.set_fail_syncs(true),
        |b| b.set_fail_syncs(false),
        Durability::Sync,
    );
}

/// A failed fsync may drop earlier unsynced writes (Flush batches reported Ok) even though a later
/// fsync succeeds: the store rewrites its state before it acknowledges anything again.
#[test]
fn failed_fsyncs_after_flush_batches_lose_nothing() {
    survive(
        |b| b.set_fail_syncs(true),
        |b| b.set_fail_syncs(false),
        Durability::Flush,
    );
}

#[test]
fn a_full_disk_fails_the_batch_and_the_store_recovers_when_space_frees() {
    survive(
        |b| b.set_capacity(Some(b.used_bytes() + 10)),
        |b| b.set_capacity(None),
        Durability::Sync,
    );
}

#[test]
fn quota_refuses_new_state_but_accepts_deletes() {
    let backend = FaultyBackend::new();
    let mut opts = faulty_opts(&backend, 1 << 20);
    opts.max_bytes = 16 << 10;
    let (store, _) = LogStore::open(std::path::Path::new("/data"), opts).unwrap();
    let mut model = StoredState::default();
    let record = SessionRecord {
        protocol: 5,
        ..SessionRecord::default()
    };
    let session = vec![Op::PutSession {
        client_id: "q".into(),
        record,
    }];
    commit(&store, session.clone(), Durability::Sync).unwrap();
    apply_all(&mut model, [&session]);
    let mut refused = None;
    for id in 0..1000 {
        let message = StoredMessage {
            topic: "q/t".into(),
            payload: Bytes::from(vec![1; 200]),
            qos: 1,
            ..StoredMessage::default()
        };
        let entry = OutEntry {
            message_id: id,
            qos: 1,
            ..OutEntry::default()
        };
        let ops = vec![
            Op::PutMessage { id, message },
            Op::PutOutbound {
                client_id: "q".into(),
                seq: id,
                entry,
            },
        ];
        match commit(&store, ops.clone(), Durability::Sync) {
            Ok(()) => apply_all(&mut model, [&ops]),
            Err(StoreError::QuotaExceeded { max }) => {
                assert_eq!(max, 16 << 10);
                refused = Some(ops);
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
    let refused = refused.expect("the quota was reached");
    assert!(store.stats().live_bytes <= 16 << 10, "{:?}", store.stats());
    assert_eq!(store.stats().quota_rejections, 1);
    assert_eq!(store.load(), model);
    // Deleting everything is accepted, and makes room again (through compaction).
    let mut deletes: Vec<Op> = model
        .sessions
        .keys()
        .map(|c| Op::DeleteSession {
            client_id: c.clone(),
        })
        .collect();
    deletes.extend(
        model
            .messages
            .keys()
            .map(|id| Op::DeleteMessage { id: *id }),
    );
    deletes.extend(
        model
            .retained
            .keys()
            .map(|t| Op::DeleteRetained { topic: t.clone() }),
    );
    commit(&store, deletes.clone(), Durability::Sync).unwrap();
    apply_all(&mut model, [&deletes]);
    let again = [session, refused].concat();
    commit(&store, again.clone(), Durability::Sync).unwrap();
    apply_all(&mut model, [&again]);
    assert_eq!(model.messages.len(), 1);
    assert_eq!(store.load(), model);
    drop(store);
    assert_eq!(open_faulty(&backend, 1 << 20).load(), model);
}

#[test]
fn open_fails_only_on_io_errors() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("not-a-dir");
    std::fs::write(&file, b"x").unwrap();
    let err = LogStore::open_dir(&file.join("data")).unwrap_err();
    assert!(matches!(err, StoreError::Io(_)), "{err}");
    // A dead disk.
    let backend = FaultyBackend::new();
    backend.fail_after(0);
    let err = LogStore::open(
        std::path::Path::new("/data"),
        faulty_opts(&backend, 1 << 20),
    )
    .unwrap_err();
    assert!(matches!(err, StoreError::Io(_)), "{err}");
}
