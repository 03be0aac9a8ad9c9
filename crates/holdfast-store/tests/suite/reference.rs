//! The same behaviour from every store, and the durable store against the reference model.

use std::sync::{mpsc, Arc};

use holdfast_store::{
    Durability, FaultyBackend, LogStore, MemoryStore, Op, SessionRecord, Store, StoreError,
    StoredState,
};
use proptest::prelude::*;

use crate::common::*;

fn session(c: &str) -> Op {
    Op::PutSession {
        client_id: c.into(),
        record: SessionRecord {
            protocol: 5,
            expiry: 60,
            ..SessionRecord::default()
        },
    }
}

/// What every store does, whatever it keeps things in.
fn contract(store: &dyn Store) {
    // Completions run in commit order, whatever the durability.
    let (tx, rx) = mpsc::channel();
    for (i, d) in [
        Durability::Flush,
        Durability::Sync,
        Durability::Flush,
        Durability::Sync,
    ]
    .into_iter()
    .enumerate()
    {
        let tx = tx.clone();
        store.commit(
            vec![session(&format!("c{i}"))],
            d,
            Some(Box::new(move |r| tx.send((i, r)).unwrap())),
        );
    }
    let got: Vec<_> = (0..4).map(|_| rx.recv().unwrap()).collect();
    assert_eq!(got, (0..4).map(|i| (i, Ok(()))).collect::<Vec<_>>());
    // Volatile batches complete at once and are not recorded.
    commit(store, vec![session("volatile")], Durability::Volatile).unwrap();
    // A commit without a completion is still recorded; an empty one is a barrier.
    store.commit(vec![session("quiet")], Durability::Flush, None);
    commit(store, vec![], Durability::Sync).unwrap();
    let state = store.load();
    let names: Vec<_> = state.sessions.keys().map(|k| &**k).collect();
    assert_eq!(names, ["c0", "c1", "c2", "c3", "quiet"]);
    assert!(store.stats().batches >= 5);
    // After close: Closed.
    store.close();
    assert_eq!(
        commit(store, vec![session("late")], Durability::Sync),
        Err(StoreError::Closed)
    );
}

#[test]
fn memory_store_keeps_the_contract() {
    contract(&MemoryStore::new());
}

#[test]
fn log_store_keeps_the_contract() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = LogStore::open_dir(dir.path()).unwrap();
    contract(&store);
    let (store, report) = LogStore::open_dir(dir.path()).unwrap();
    assert_eq!(report.counts.sessions, 5);
    assert!(report.corrupt_records.is_empty() && report.torn_bytes_truncated == 0);
    assert_eq!(store.load().sessions.len(), 5);
}

#[test]
fn log_store_on_a_simulated_disk_keeps_the_contract() {
    contract(&open_faulty(&FaultyBackend::new(), 1 << 20));
}

/// Commits `batches` to both stores; the log is reopened after each of `reopen_at`.
fn run_against_reference(
    batches: &[Vec<Op>],
    reopen_at: &[usize],
    segment_size: u64,
) -> Result<(), TestCaseError> {
    let backend = FaultyBackend::new();
    let mut log = open_faulty(&backend, segment_size);
    let mut reference = MemoryStore::new();
    for (i, batch) in batches.iter().enumerate() {
        let d = if i % 3 == 0 {
            Durability::Sync
        } else {
            Durability::Flush
        };
        commit(&reference, batch.clone(), d).unwrap();
        commit(&log, batch.clone(), d).unwrap();
        if reopen_at.contains(&i) {
            drop(log);
            log = open_faulty(&backend, segment_size);
            // After a restart the broker's state is what load() returns: garbage is gone.
            let expected = gc(reference.load());
            prop_assert_eq!(log.load(), expected.clone());
            reference = MemoryStore::with_state(expected);
        }
    }
    let before_close = gc(log.load());
    drop(log);
    let log = open_faulty(&backend, segment_size);
    prop_assert_eq!(log.load(), gc(reference.load()));
    prop_assert_eq!(gc(log.load()), before_close);
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    /// Any sequence of ops, replayed from the log, gives the reference model's state.
    #[test]
    fn log_store_replays_to_the_reference_state(batches in batches(40), reopen in prop::collection::vec(0usize..40, 0..3)) {
        run_against_reference(&batches, &reopen, 64 << 20)?;
    }

    /// The same with tiny segments: many roll-overs, and compactions in between.
    #[test]
    fn log_store_with_tiny_segments_replays_to_the_reference_state(seed in any::<u64>(), reopen in prop::collection::vec(0usize..60, 0..3)) {
        let (batches, _) = Workload::new(seed, 4).batches(&StoredState::default(), 60);
        run_against_reference(&batches, &reopen, 512)?;
    }
}

#[test]
fn load_is_shared_between_threads() {
    let store: Arc<dyn Store> = Arc::new(open_faulty(&FaultyBackend::new(), 1 << 20));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let store = store.clone();
            std::thread::spawn(move || {
                for i in 0..20 {
                    commit(
                        &*store,
                        vec![session(&format!("t{t}-{i}"))],
                        Durability::Flush,
                    )
                    .unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(store.load().sessions.len(), 80);
}

#[test] // The broker reads the recovered state once at start: shared, not copied, and never changed under it.
fn load_shared_is_not_changed_by_later_commits() {
    let dir = tempfile::tempdir().unwrap();
    let (store, _) = LogStore::open_dir(dir.path()).unwrap();
    commit(&store, vec![session("a")], Durability::Flush).unwrap();
    let shared = store.load_shared();
    assert!(Arc::ptr_eq(&shared, &store.load_shared()));
    // Committed while the caller still holds it: the store changes its own copy.
    commit(&store, vec![session("b")], Durability::Flush).unwrap();
    assert_eq!(
        shared.sessions.keys().map(|k| &**k).collect::<Vec<_>>(),
        ["a"]
    );
    assert_eq!(store.load().sessions.len(), 2);
    drop(shared);
    commit(&store, vec![session("c")], Durability::Sync).unwrap();
    let loaded = store.load_shared();
    let names: Vec<_> = loaded.sessions.keys().map(|k| &**k).collect();
    assert_eq!(names, ["a", "b", "c"]);
    drop(store);
    let (store, _) = LogStore::open_dir(dir.path()).unwrap();
    assert_eq!(store.load_shared().sessions.len(), 3);
}
