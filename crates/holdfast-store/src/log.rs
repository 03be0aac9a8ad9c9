//! [`LogStore`]: the durable store, a directory of checksummed segment files written by one
//! committer thread (see `docs/storage.md`).

use std::path::Path;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::backend::{Backend, FsBackend};
use crate::committer::{Committer, Request, Shared};
use crate::recovery::{self, RecoveryReport};
use crate::{Completion, Durability, Op, Store, StoreError, StoreStats, StoredState};

/// How a [`LogStore`] runs.
#[derive(Debug, Clone)]
pub struct LogOptions {
    /// `flush` batches are fsync'd at most this long after they were written.
    pub flush_interval: Duration,
    /// Bytes the segments may take (0: unlimited). A batch that would go over completes with
    /// [`StoreError::QuotaExceeded`], unless it only deletes.
    pub max_bytes: u64,
    /// A segment is closed and a new one started once it reaches this size.
    pub segment_size: u64,
    /// Where the files are: the file system, or a [`FaultyBackend`](crate::FaultyBackend) in tests.
    pub backend: Arc<dyn Backend>,
}

impl Default for LogOptions {
    fn default() -> LogOptions {
        LogOptions {
            flush_interval: Duration::from_secs(1),
            max_bytes: 0,
            segment_size: 64 << 20,
            backend: Arc::new(FsBackend),
        }
    }
}

/// The durable store: a segmented, checksummed log of batches, with group commit, compaction and
/// recovery.
pub struct LogStore {
    shared: Arc<Shared>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for LogStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LogStore")
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir` and recovers its state. Damaged data never stops it: a
    /// torn tail is cut off, corrupt records are skipped and their segments copied into
    /// `dir/damaged/`. Only I/O errors (no permission, no space to create the directory) fail it.
    pub fn open(dir: &Path, opts: LogOptions) -> Result<(LogStore, RecoveryReport), StoreError> {
        let recovered = recovery::recover(opts.backend.clone(), dir, opts.segment_size.max(1))?;
        let report = recovered.report;
        // Counting the live bytes means encoding the whole state: the committer does it, while the
        // caller rebuilds its own state from `load_shared`.
        let live = report
            .snapshot_written
            .then_some(recovered.segments.snapshot_bytes);
        tracing::debug!(dir = %dir.display(), "{report}");
        let shared = Arc::new(Shared::default());
        *shared.mirror.lock() = Arc::new(recovered.state);
        *shared.stats.lock() = StoreStats {
            disk_bytes: recovered.segments.total_bytes(),
            live_bytes: live.unwrap_or(0),
            corrupt_records_skipped: report.corrupt_records.len() as u64,
            torn_bytes_truncated: report.torn_bytes_truncated,
            compactions: u64::from(report.snapshot_written),
            fsync_seconds: crate::Histogram::latency(),
            commit_seconds: crate::Histogram::latency(),
            batches_per_write: crate::Histogram::new(&[
                1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0,
            ]),
            ..StoreStats::default()
        };
        let committer = Committer {
            shared: shared.clone(),
            segs: recovered.segments,
            flush_interval: opts.flush_interval,
            max_bytes: opts.max_bytes,
            broken: recovered
                .needs_snapshot
                .then(|| "the recovered state is not yet written".to_string()),
            retry_at: Instant::now(),
            backoff: Duration::from_millis(10),
            unsynced_since: None,
            buf: Vec::new(),
            live: live.map(|l| l as i64),
            scratch: Vec::new(),
        };
        let thread = std::thread::Builder::new()
            .name("holdfast-store".to_string())
            .spawn(move || committer.run())
            .map_err(|e| StoreError::Io(format!("cannot start the committer thread: {e}")))?;
        Ok((
            LogStore {
                shared,
                thread: Mutex::new(Some(thread)),
            },
            report,
        ))
    }

    /// Opens `dir` on the file system with the default options.
    pub fn open_dir(dir: &Path) -> Result<(LogStore, RecoveryReport), StoreError> {
        LogStore::open(dir, LogOptions::default())
    }

    /// Writes the state as a snapshot now and drops the older segments; waits for it.
    pub fn compact(&self) -> Result<(), StoreError> {
        let (tx, rx) = std::sync::mpsc::channel();
        self.push(Request::Compact(Box::new(move |r| {
            let _ = tx.send(r);
        })))?;
        rx.recv().unwrap_or(Err(StoreError::Closed))
    }

    fn push(&self, req: Request) -> Result<(), StoreError> {
        let mut q = self.shared.queue.lock();
        if q.closing {
            return Err(StoreError::Closed);
        }
        q.pending.push_back(req);
        self.shared.wake.notify_one();
        Ok(())
    }
}

impl Store for LogStore {
    fn commit(&self, ops: Vec<Op>, durability: Durability, done: Option<Completion>) {
        if durability == Durability::Volatile {
            if let Some(done) = done {
                done(Ok(()));
            }
            return;
        }
        let mut q = self.shared.queue.lock();
        if q.closing {
            drop(q);
            self.shared.stats.lock().failed_commits += 1;
            if let Some(done) = done {
                done(Err(StoreError::Closed));
            }
            return;
        }
        q.pending.push_back(Request::Batch {
            ops,
            durability,
            done,
            queued_at: Instant::now(),
        });
        drop(q);
        self.shared.wake.notify_one();
    }

    fn load(&self) -> StoredState {
        StoredState::clone(&self.shared.mirror.lock())
    }

    fn load_shared(&self) -> Arc<StoredState> {
        self.shared.mirror.lock().clone()
    }

    fn stats(&self) -> StoreStats {
        self.shared.stats.lock().clone()
    }

    fn close(&self) {
        self.shared.queue.lock().closing = true;
        self.shared.wake.notify_one();
        let mut slot = self.thread.lock();
        // Closed from a completion (on the committer thread itself): it stops after this group.
        if slot
            .as_ref()
            .is_some_and(|t| t.thread().id() == std::thread::current().id())
        {
            return;
        }
        if let Some(thread) = slot.take() {
            if thread.join().is_err() {
                tracing::error!("the store committer thread panicked");
            }
        }
    }
}

impl Drop for LogStore {
    fn drop(&mut self) {
        self.close();
    }
}
