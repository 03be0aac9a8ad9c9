//! Compaction: the state is the same across it, and power loss at any step of it loses nothing.

use std::path::Path;

use holdfast_store::{Backend, CrashMode, Durability, FaultyBackend, LogStore, Store, StoredState};

use crate::common::*;

#[test]
fn state_is_identical_across_compaction() {
    let backend = FaultyBackend::new();
    let store = open_faulty(&backend, 1024);
    let mut wl = Workload::new(5, 6);
    let (batches, model) = wl.batches(&StoredState::default(), 400);
    for (i, b) in batches.iter().enumerate() {
        let d = if i % 2 == 0 {
            Durability::Sync
        } else {
            Durability::Flush
        };
        commit(&store, b.clone(), d).unwrap();
    }
    let stats = store.stats();
    assert!(stats.compactions >= 2, "{stats:?}");
    assert!(
        stats.disk_bytes <= 4 * 1024 + 3 * stats.disk_bytes.min(64 << 10),
        "{stats:?}"
    );
    assert_eq!(store.load(), model);
    store.compact().unwrap();
    assert_eq!(store.load(), model);
    drop(store);
    assert_eq!(open_faulty(&backend, 1024).load(), model);
}

#[test]
fn compaction_bounds_the_log() {
    let backend = FaultyBackend::new();
    let store = open_faulty(&backend, 4096);
    let mut wl = Workload::new(9, 3);
    let mut model = StoredState::default();
    for _ in 0..3000 {
        let ops = wl.next_batch(&model);
        commit(&store, ops.clone(), Durability::Flush).unwrap();
        apply_all(&mut model, [&ops]);
    }
    store.compact().unwrap();
    let live = store.stats().disk_bytes;
    for _ in 0..3000 {
        let ops = wl.next_batch(&model);
        commit(&store, ops.clone(), Durability::Flush).unwrap();
        apply_all(&mut model, [&ops]);
    }
    let stats = store.stats();
    assert!(
        stats.disk_bytes < 2 * live.max(4096) + 8192,
        "{stats:?} (live {live})"
    );
    assert_eq!(store.load(), model);
}

/// Power is cut after each number of disk operations into a compaction: the restart always finds
/// every batch (they were all fsync'd before).
#[test]
fn power_loss_at_each_step_of_compaction() {
    let mut completed = false;
    for step in 0..64 {
        for mode in [CrashMode::LoseUnsynced, CrashMode::TornTail { seed: step }] {
            let backend = FaultyBackend::new();
            let store = open_faulty(&backend, 1 << 20);
            let mut wl = Workload::new(step, 5);
            let (batches, model) = wl.batches(&StoredState::default(), 60);
            for b in &batches {
                commit(&store, b.clone(), Durability::Sync).unwrap();
            }
            backend.fail_after(step);
            let result = store.compact();
            completed |= result.is_ok() && !backend.is_dead();
            let after = backend.crash(mode);
            drop(store);
            let (reopened, report) =
                LogStore::open(Path::new("/data"), faulty_opts(&after, 1 << 20)).unwrap();
            assert_eq!(
                reopened.load(),
                model,
                "power cut {step} operations into compaction ({mode:?}): {report}"
            );
            assert!(report.corrupt_records.is_empty(), "{report:?}");
        }
        if completed {
            return;
        }
    }
    panic!("compaction never completed");
}

/// The same damaged disk, every time: a workload, then a byte flipped in the newest segment.
fn damaged_disk(seed: u64) -> FaultyBackend {
    let backend = FaultyBackend::new();
    let store = open_faulty(&backend, 1024);
    let mut wl = Workload::new(seed, 4);
    let (batches, _) = wl.batches(&StoredState::default(), 80);
    for b in &batches {
        commit(&store, b.clone(), Durability::Sync).unwrap();
    }
    drop(store);
    let dir = Path::new("/data");
    let names = Backend::list(&backend, dir).unwrap();
    let newest = names.iter().filter(|n| n.ends_with(".log")).max().unwrap();
    let path = dir.join(newest);
    let mut bytes = backend.file_bytes(&path).unwrap();
    let at = 24 + (bytes.len() - 24) / 2;
    bytes[at] ^= 0xff;
    backend.set_file_bytes(&path, bytes);
    backend
}

/// Power is cut at each step of the repair that recovery does after finding damage (copy aside,
/// snapshot, removal): the next start recovers the same state and the damaged segment is kept.
#[test]
fn power_loss_while_recovery_repairs_a_damaged_log() {
    let dir = Path::new("/data");
    let (clean, report) = LogStore::open(dir, faulty_opts(&damaged_disk(77), 1024)).unwrap();
    let expected = clean.load();
    assert!(!report.moved_aside.is_empty(), "{report:?}");
    drop(clean);
    for step in 0..100 {
        let backend = damaged_disk(77);
        backend.fail_after(step);
        let first = LogStore::open(dir, faulty_opts(&backend, 1024));
        let done = first.is_ok() && !backend.is_dead();
        let after = backend.crash(CrashMode::LoseUnsynced);
        drop(first);
        let (store, report) = LogStore::open(dir, faulty_opts(&after, 1024)).unwrap();
        assert_eq!(
            store.load(),
            expected,
            "power cut {step} operations into recovery: {report}"
        );
        let aside = Backend::list(&after, &dir.join("damaged")).unwrap_or_default();
        assert!(
            !aside.is_empty(),
            "step {step}: the damaged segment is kept"
        );
        if done {
            return;
        }
    }
    panic!("recovery never completed");
}
