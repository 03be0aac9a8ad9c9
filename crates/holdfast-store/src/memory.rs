//! The volatile store: the state in memory, nothing on disk. It is also the reference model the
//! durable store is tested against.

use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::Mutex;

use crate::{Completion, Durability, Op, Store, StoreError, StoreStats, StoredState};

/// Applies every batch to a [`StoredState`] under a mutex and completes it at once.
#[derive(Debug, Default)]
pub struct MemoryStore {
    state: Mutex<StoredState>,
    stats: Mutex<StoreStats>,
    closed: AtomicBool,
}

impl MemoryStore {
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// A store that starts with `state` (as if it had been loaded).
    pub fn with_state(state: StoredState) -> MemoryStore {
        MemoryStore {
            state: Mutex::new(state),
            ..MemoryStore::default()
        }
    }
}

impl Store for MemoryStore {
    fn commit(&self, ops: Vec<Op>, durability: Durability, done: Option<Completion>) {
        let result = if self.closed.load(Ordering::Acquire) {
            self.stats.lock().failed_commits += 1;
            Err(StoreError::Closed)
        } else {
            if durability != Durability::Volatile {
                let mut state = self.state.lock();
                for op in ops {
                    state.apply_owned(op);
                }
                self.stats.lock().batches += 1;
            }
            Ok(())
        };
        if let Some(done) = done {
            done(result);
        }
    }

    fn load(&self) -> StoredState {
        self.state.lock().clone()
    }

    fn stats(&self) -> StoreStats {
        self.stats.lock().clone()
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }
}
