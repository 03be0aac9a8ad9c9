//! Power loss at a random moment, on a simulated disk.

use std::sync::mpsc;
use std::time::Duration;

use holdfast_store::{CrashMode, Durability, FaultyBackend, Store, StoredState};

use crate::common::*;

/// Commits a broker-like workload with random durabilities and cuts the power part-way. After the
/// restart the state is the reference model after some prefix of the batches, which includes every
/// Sync batch that completed Ok.
fn power_loss(seed: u64, mode: CrashMode, segment_size: u64) {
    let backend = FaultyBackend::new();
    let store = open_faulty(&backend, segment_size);
    let mut wl = Workload::new(seed, 5);
    let (batches, _) = wl.batches(&StoredState::default(), 80);
    let durability: Vec<_> = (0..batches.len())
        .map(|_| {
            if wl.rng.chance(40) {
                Durability::Sync
            } else {
                Durability::Flush
            }
        })
        .collect();
    let crash_at = wl.rng.below(batches.len() as u64) as usize;
    let (tx, rx) = mpsc::channel();
    let mut crashed = None;
    for (i, batch) in batches.iter().enumerate() {
        let tx = tx.clone();
        store.commit(
            batch.clone(),
            durability[i],
            Some(Box::new(move |r| tx.send((i, r)).unwrap())),
        );
        if i % 8 == 0 {
            std::thread::sleep(Duration::from_micros(200));
        }
        if i == crash_at {
            crashed = Some(backend.crash(mode));
        }
    }
    drop(store);
    drop(tx);
    let results: Vec<_> = rx.iter().collect();
    assert_eq!(results.len(), batches.len(), "every completion is called");
    let order: Vec<_> = results.iter().map(|(i, _)| *i).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "in commit order");
    let must_have = results
        .iter()
        .filter(|(i, r)| r.is_ok() && durability[*i] == Durability::Sync)
        .map(|(i, _)| i + 1)
        .max()
        .unwrap_or(0);
    let after = crashed.unwrap();
    let recovered = open_faulty(&after, segment_size);
    let state = recovered.load();
    let mut prefix = StoredState::default();
    let mut matches = Vec::new();
    for k in 0..=batches.len() {
        if k > 0 {
            apply_all(&mut prefix, [&batches[k - 1]]);
        }
        if gc(prefix.clone()) == state {
            matches.push(k);
        }
    }
    assert!(
        !matches.is_empty(),
        "seed {seed} {mode:?}: the recovered state is no prefix of the batches"
    );
    assert!(
        *matches.last().unwrap() >= must_have,
        "seed {seed} {mode:?}: Sync batch {must_have} completed Ok but recovery has only {matches:?}"
    );
    // A second restart changes nothing.
    drop(recovered);
    assert_eq!(open_faulty(&after, segment_size).load(), state);
}

#[test]
fn power_loss_keeps_every_acknowledged_sync_batch() {
    for seed in 0..12 {
        power_loss(seed, CrashMode::LoseUnsynced, 64 << 20);
    }
}

#[test]
fn power_loss_with_a_torn_last_write() {
    for seed in 100..112 {
        power_loss(seed, CrashMode::TornTail { seed }, 64 << 20);
    }
}

#[test]
fn power_loss_with_garbage_after_the_last_fsync() {
    for seed in 200..212 {
        power_loss(seed, CrashMode::GarbageTail { seed }, 64 << 20);
    }
}

#[test]
fn power_loss_with_small_segments_and_compaction() {
    for seed in 300..316 {
        let mode = match seed % 3 {
            0 => CrashMode::LoseUnsynced,
            1 => CrashMode::TornTail { seed },
            _ => CrashMode::GarbageTail { seed },
        };
        power_loss(seed, mode, 1024);
    }
}
