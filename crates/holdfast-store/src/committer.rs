//! Group commit: one thread owns the segment files. It takes every batch pending, writes them with one
//! write, fsyncs once if any of them asked for it, then completes them all in order.

use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

use crate::segment::{AppendError, Segments};
use crate::{live, record};
use crate::{Completion, Durability, Op, StoreError, StoreStats, StoredState};

/// Longest wait between two attempts to repair the log after a failed write or fsync.
const MAX_BACKOFF: Duration = Duration::from_secs(1);
const MIN_BACKOFF: Duration = Duration::from_millis(10);

pub(crate) enum Request {
    Batch {
        ops: Vec<Op>,
        durability: Durability,
        done: Option<Completion>,
        queued_at: Instant,
    },
    Compact(Completion),
}

#[derive(Default)]
pub(crate) struct Queue {
    pub pending: VecDeque<Request>,
    /// `close` was called: no more requests.
    pub closing: bool,
}

/// What the store's handle and the committer share.
#[derive(Default)]
pub(crate) struct Shared {
    pub queue: Mutex<Queue>,
    pub wake: Condvar,
    pub stats: Mutex<StoreStats>,
    /// The state the log holds, for `load` and for snapshots. Shared with whoever took it with
    /// `load_shared` (the broker, at start): the committer copies it only if it must change it while
    /// that copy is still held.
    pub mirror: Mutex<Arc<StoredState>>,
}

pub(crate) struct Committer {
    pub shared: Arc<Shared>,
    pub segs: Segments,
    pub flush_interval: Duration,
    pub max_bytes: u64,
    /// Set after a failed write or fsync: nothing is appended until a snapshot of the state has
    /// been written (a failed fsync may have dropped earlier writes that the file still shows).
    pub broken: Option<String>,
    pub retry_at: Instant,
    pub backoff: Duration,
    /// Since when written data waits for an fsync.
    pub unsynced_since: Option<Instant>,
    pub buf: Vec<u8>,
    /// Bytes a snapshot of the mirror would take (see `live.rs`); `None` until counted, which the
    /// committer does first thing, off the caller's start-up path.
    pub live: Option<i64>,
    pub scratch: Vec<u8>,
}

struct Pending {
    ops: Vec<Op>,
    durability: Durability,
    done: Option<Completion>,
    queued_at: Instant,
    /// Where its record starts and ends in the buffer.
    start: usize,
    outcome: Result<(), StoreError>,
}

fn complete(done: Option<Completion>, result: Result<(), StoreError>) {
    if let Some(done) = done {
        if catch_unwind(AssertUnwindSafe(|| done(result))).is_err() {
            tracing::error!("a store completion panicked");
        }
    }
}

/// Does the batch add data rather than update or delete it? Only such batches count against the quota.
fn adds_data(state: &StoredState, ops: &[Op]) -> bool {
    ops.iter().any(|op| match op {
        Op::PutMessage { .. } | Op::PutRetained { .. } => true,
        Op::PutSession { client_id, .. } => !state.sessions.contains_key(client_id),
        Op::PutSubscription {
            client_id, filter, ..
        } => state
            .sessions
            .get(client_id)
            .is_some_and(|s| !s.subscriptions.contains_key(filter)),
        Op::PutOutbound { client_id, seq, .. } => state
            .sessions
            .get(client_id)
            .is_some_and(|s| !s.outbound.contains_key(seq)),
        Op::PutInboundQos2 {
            client_id,
            packet_id,
        } => state
            .sessions
            .get(client_id)
            .is_some_and(|s| !s.inbound_qos2.contains(packet_id)),
        _ => false,
    })
}

impl Committer {
    pub fn run(mut self) {
        if self.live.is_none() {
            let mirror = self.shared.mirror.lock().clone();
            let live = live::state_bytes(&mirror) as i64;
            drop(mirror);
            self.live = Some(live);
            self.shared.stats.lock().live_bytes = live as u64;
        }
        loop {
            let (group, closing) = {
                let mut q = self.shared.queue.lock();
                while q.pending.is_empty() && !q.closing {
                    match self.unsynced_since {
                        Some(t) if t.elapsed() >= self.flush_interval => break,
                        Some(t) => {
                            self.shared.wake.wait_until(&mut q, t + self.flush_interval);
                        }
                        None => self.shared.wake.wait(&mut q),
                    }
                }
                (std::mem::take(&mut q.pending), q.closing)
            };
            self.process(group);
            if self.buf.capacity() > 16 << 20 {
                self.buf = Vec::new();
            }
            if self
                .unsynced_since
                .is_some_and(|t| closing || t.elapsed() >= self.flush_interval)
            {
                self.sync_now();
            }
            if closing {
                self.update_stats();
                return;
            }
            self.maybe_compact();
            self.update_stats();
        }
    }

    fn process(&mut self, group: VecDeque<Request>) {
        let mut batches = Vec::new();
        for req in group {
            match req {
                Request::Batch {
                    ops,
                    durability,
                    done,
                    queued_at,
                } => batches.push(Pending {
                    ops,
                    durability,
                    done,
                    queued_at,
                    start: 0,
                    outcome: Ok(()),
                }),
                Request::Compact(done) => {
                    self.commit(std::mem::take(&mut batches));
                    let result = self.compact();
                    complete(Some(done), result);
                }
            }
        }
        self.commit(batches);
    }

    fn fail(&mut self, batches: Vec<Pending>, error: StoreError) {
        self.shared.stats.lock().failed_commits += batches.len() as u64;
        for b in batches {
            complete(b.done, Err(error.clone()));
        }
    }

    /// Writes a group of batches and completes them.
    fn commit(&mut self, mut batches: Vec<Pending>) {
        if batches.is_empty() {
            return;
        }
        if let Err(e) = self.repair() {
            return self.fail(batches, e);
        }
        self.buf.clear();
        // The quota caps live state, not the log: a batch is refused only when it adds data (a message,
        // a new queue entry, ...) that would take the live state over `max_bytes`. Deletes and updates
        // always pass, so a full store can still drain; compaction keeps the log within about twice
        // the live state.
        let mut growth = 0i64;
        let live = self.live();
        {
            let mirror = self.shared.mirror.lock();
            for b in &mut batches {
                b.start = self.buf.len();
                b.outcome = Ok(());
                if self.max_bytes > 0 && adds_data(&mirror, &b.ops) {
                    let delta: i64 = b
                        .ops
                        .iter()
                        .map(|op| live::delta(&mirror, op, &mut self.scratch))
                        .sum();
                    if delta > 0 && live + growth + delta > self.max_bytes as i64 {
                        b.outcome = Err(StoreError::QuotaExceeded {
                            max: self.max_bytes,
                        });
                        continue;
                    }
                    growth += delta;
                }
                record::encode_batch(&mut self.buf, &b.ops);
            }
        }
        let rejected = batches.iter().filter(|b| b.outcome.is_err()).count() as u64;
        if rejected > 0 {
            let mut stats = self.shared.stats.lock();
            stats.quota_rejections += rejected;
            stats.failed_commits += rejected;
        }
        let appended = if self.buf.is_empty() {
            Ok(self.segs.active.len())
        } else {
            self.segs.append(&self.buf)
        };
        let start = match appended {
            Ok(start) => start,
            Err(AppendError { error, broken }) => {
                tracing::error!("store write failed: {error}");
                if broken {
                    self.set_broken(error.to_string());
                }
                let error = StoreError::Io(error.to_string());
                let failed = batches.len() as u64 - rejected;
                self.shared.stats.lock().failed_commits += failed;
                for b in batches {
                    let outcome = b.outcome.and(Err(error.clone()));
                    complete(b.done, outcome);
                }
                return;
            }
        };
        if !self.buf.is_empty() {
            self.unsynced_since.get_or_insert_with(Instant::now);
            let mut stats = self.shared.stats.lock();
            stats.writes += 1;
            let carried = batches.iter().filter(|b| b.outcome.is_ok()).count();
            stats.batches_per_write.observe(carried as f64);
        }
        // Batches before the first Sync one are done once written; the rest wait for the fsync.
        let first_sync = batches
            .iter()
            .position(|b| b.outcome.is_ok() && b.durability == Durability::Sync);
        let mut rest = batches.split_off(first_sync.unwrap_or(batches.len()));
        self.apply_and_complete(batches);
        let Some(first) = rest.first() else { return };
        let first_start = start + first.start as u64;
        if self.unsynced_since.is_some() {
            if let Err(e) = self.timed_sync() {
                tracing::error!("store fsync failed: {e}");
                // Those batches are not durable: take them out of the file, and rewrite the rest.
                if let Err(t) = self.segs.cut(first_start) {
                    tracing::error!("cannot cut back the log after a failed fsync: {t}");
                }
                self.set_broken(e.to_string());
                let error = StoreError::Io(e.to_string());
                for b in &mut rest {
                    if b.outcome.is_ok() {
                        b.outcome = Err(error.clone());
                        self.shared.stats.lock().failed_commits += 1;
                    }
                }
                for b in rest {
                    complete(b.done, b.outcome);
                }
                return;
            }
            self.shared.stats.lock().fsyncs += 1;
            self.unsynced_since = None;
        }
        self.apply_and_complete(rest);
    }

    fn apply_and_complete(&mut self, mut batches: Vec<Pending>) {
        let mut live = self.live();
        {
            let mut guard = self.shared.mirror.lock();
            let mirror = Arc::make_mut(&mut guard);
            for b in batches.iter_mut().filter(|b| b.outcome.is_ok()) {
                for op in std::mem::take(&mut b.ops) {
                    live += live::delta(mirror, &op, &mut self.scratch);
                    mirror.apply_owned(op);
                }
            }
        }
        self.live = Some(live);
        {
            let mut stats = self.shared.stats.lock();
            stats.batches += batches.iter().filter(|b| b.outcome.is_ok()).count() as u64;
            stats.live_bytes = live.max(0) as u64;
            for b in batches.iter().filter(|b| b.outcome.is_ok()) {
                stats
                    .commit_seconds
                    .observe(b.queued_at.elapsed().as_secs_f64());
            }
        }
        for b in batches {
            complete(b.done, b.outcome);
        }
    }

    fn set_broken(&mut self, error: String) {
        self.broken = Some(error);
        self.retry_at = Instant::now();
        self.unsynced_since = None;
    }

    /// After a failure, writes the state as a fresh snapshot before anything else is appended
    /// (retrying with a backoff while the disk keeps failing).
    fn repair(&mut self) -> Result<(), StoreError> {
        let Some(error) = self.broken.clone() else {
            return Ok(());
        };
        if Instant::now() < self.retry_at {
            return Err(StoreError::Io(error));
        }
        match self.compact() {
            Ok(()) => {
                tracing::info!("store recovered: state rewritten as a snapshot");
                self.broken = None;
                self.backoff = MIN_BACKOFF;
                Ok(())
            }
            Err(e) => {
                self.retry_at = Instant::now() + self.backoff;
                self.backoff = (self.backoff * 2).min(MAX_BACKOFF);
                Err(e)
            }
        }
    }

    /// Writes the state as a snapshot segment and drops the segments before it.
    fn compact(&mut self) -> Result<(), StoreError> {
        let before = self.segs.active_seq;
        let result = {
            let mut guard = self.shared.mirror.lock();
            let mirror = Arc::make_mut(&mut guard);
            mirror.collect_garbage();
            self.segs.write_snapshot(mirror)
        };
        match result {
            Ok(()) => {
                self.unsynced_since = None;
                self.live = Some(self.segs.snapshot_bytes as i64);
                let mut stats = self.shared.stats.lock();
                stats.compactions += 1;
                stats.fsyncs += 1;
                Ok(())
            }
            Err(e) => {
                tracing::error!("store compaction failed: {e}");
                if self.segs.active_seq != before {
                    // The snapshot took over but its name may not be durable yet.
                    self.set_broken(e.to_string());
                }
                Err(StoreError::Io(e.to_string()))
            }
        }
    }

    fn maybe_compact(&mut self) {
        if self.broken.is_some() {
            let _ = self.repair();
            return;
        }
        let total = self.segs.total_bytes();
        // Compact once at least half the log is garbage and it is more than a segment, or more than
        // the quota: the log stays within about twice the live state.
        let due = total > 2 * self.live().max(0) as u64
            && (total > self.segs.segment_size || (self.max_bytes > 0 && total > self.max_bytes));
        if due && Instant::now() >= self.retry_at && self.compact().is_err() {
            self.retry_at = Instant::now() + MAX_BACKOFF;
        }
    }

    /// fsync the log, recording how long it took.
    fn timed_sync(&mut self) -> std::io::Result<()> {
        let started = Instant::now();
        let synced = self.segs.sync();
        self.shared
            .stats
            .lock()
            .fsync_seconds
            .observe(started.elapsed().as_secs_f64());
        synced
    }

    fn sync_now(&mut self) {
        match self.timed_sync() {
            Ok(()) => {
                self.shared.stats.lock().fsyncs += 1;
                self.unsynced_since = None;
            }
            Err(e) => {
                tracing::error!("store fsync failed: {e}");
                self.set_broken(e.to_string());
            }
        }
    }

    /// The live byte count, once `run` has counted it.
    fn live(&self) -> i64 {
        self.live.unwrap_or(0)
    }

    fn update_stats(&self) {
        self.shared.stats.lock().disk_bytes = self.segs.total_bytes();
    }
}
