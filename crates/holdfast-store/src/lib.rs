//! Storage of MQTT Session state and retained messages (MQTT 5.0 section 4.1).
//!
//! The broker keeps its working state in memory; a store records every change to it as [`Op`]s, in
//! batches, so that the state can be rebuilt at start ([`Store::load`]). A batch is committed with a
//! [`Durability`]: `Flush` completes once written to the OS (survives `kill -9`), `Sync` once fsync'd
//! (survives power loss). The durable store commits the batches of every connection together: one
//! write, at most one fsync, then every completion (group commit).
//!
//! - [`MemoryStore`]: volatile, and the reference model of the semantics ([`StoredState::apply`]).
//! - [`LogStore`]: the durable store, a segmented checksummed log (format in `docs/storage.md`).
//! - [`verify`] reads a data directory offline; [`check`] measures what its disk can sustain.
//! - [`FaultyBackend`] simulates power loss, failing writes and fsyncs and a full disk, for tests.
//!
//! Garbage: a message no outbound entry or retained topic refers to, and an outbound entry or a
//! retained topic whose message is gone, may be dropped at any compaction and at every start
//! ([`StoredState::collect_garbage`]). So put a message in the same batch as its first reference.

mod backend;
mod check;
mod codec;
mod committer;
mod faulty;
mod live;
mod lock;
mod log;
mod memory;
mod record;
mod recovery;
mod segment;
mod state;
mod verify;

pub use backend::{Backend, BackendFile, FsBackend};
pub use check::{check, CheckReport, SyncRate};
pub use faulty::{CrashMode, FaultyBackend};
pub use holdfast_core::persist::{Op, OutEntry, SessionRecord, StoredMessage, StoredWill};
pub use holdfast_core::Durability;
pub use lock::{lock_dir, DirLock, LOCK_FILE};
pub use log::{LogOptions, LogStore};
pub use memory::MemoryStore;
pub use recovery::{CorruptRecord, RecoveryReport, StateCounts};
pub use state::{StoredSession, StoredState};
pub use verify::{verify, verify_with, SegmentReport, VerifyReport};

/// Why a commit or an open failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    #[error("storage I/O error: {0}")]
    Io(String),
    #[error("store quota of {max} bytes reached")]
    QuotaExceeded { max: u64 },
    #[error("store is closed")]
    Closed,
    /// Another process holds the lock on the data directory ([`lock_dir`]).
    #[error("{} is in use by another process (its LOCK file is locked)", .0.display())]
    Locked(std::path::PathBuf),
}

/// Called once a committed batch is as durable as asked, or failed. Runs on the committer thread:
/// it must be quick (send on a channel, wake a task).
pub type Completion = Box<dyn FnOnce(Result<(), StoreError>) + Send>;

/// What a store can report about itself.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct StoreStats {
    /// Bytes used on disk (all segments).
    pub disk_bytes: u64,
    /// Bytes the live state takes (what a snapshot would write): what `max_bytes` caps.
    pub live_bytes: u64,
    /// Batches recorded.
    pub batches: u64,
    pub fsyncs: u64,
    /// Records found damaged during recovery and skipped.
    pub corrupt_records_skipped: u64,
    /// Bytes cut off the torn tail during recovery.
    pub torn_bytes_truncated: u64,
    /// Batches that completed with an error (I/O, quota, closed).
    pub failed_commits: u64,
    /// write(2) calls of group commit: each carries every batch that was pending.
    pub writes: u64,
    /// Snapshots written (compaction, repair after a failure, recovery of damaged data).
    pub compactions: u64,
    /// Batches refused with [`StoreError::QuotaExceeded`] (also counted in `failed_commits`).
    pub quota_rejections: u64,
    /// Seconds one fsync took.
    pub fsync_seconds: Histogram,
    /// Seconds from a batch's commit to its completion (as durable as it asked).
    pub commit_seconds: Histogram,
    /// Batches carried by one write of group commit.
    pub batches_per_write: Histogram,
}

/// A distribution over fixed buckets, as Prometheus histograms show it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Histogram {
    /// Upper bounds of the buckets, increasing; a last bucket above them is implied.
    pub bounds: Vec<f64>,
    /// Observations per bucket (not cumulative): `bounds.len() + 1` entries.
    pub counts: Vec<u64>,
    pub sum: f64,
    pub count: u64,
}

impl Histogram {
    pub fn new(bounds: &[f64]) -> Histogram {
        Histogram {
            bounds: bounds.to_vec(),
            counts: vec![0; bounds.len() + 1],
            sum: 0.0,
            count: 0,
        }
    }

    /// Buckets for latencies from 50 µs to 5 s.
    pub fn latency() -> Histogram {
        Histogram::new(&[
            0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25,
            1.0, 5.0,
        ])
    }

    pub fn observe(&mut self, v: f64) {
        if self.counts.len() != self.bounds.len() + 1 {
            self.counts = vec![0; self.bounds.len() + 1];
        }
        let i = self
            .bounds
            .iter()
            .position(|b| v <= *b)
            .unwrap_or(self.bounds.len());
        self.counts[i] += 1;
        self.sum += v;
        self.count += 1;
    }
}

pub trait Store: Send + Sync {
    /// Queue a batch. `done` (if any) is called when the batch is durable as `durability` asks, in
    /// commit order. `Volatile` batches are not recorded at all and complete at once.
    fn commit(&self, ops: Vec<Op>, durability: Durability, done: Option<Completion>);
    /// The state recorded so far (after recovery, at start): a copy.
    fn load(&self) -> StoredState;
    /// The state recorded so far, shared instead of copied: what a start wants, since it reads the
    /// state once and drops it. The durable store copies its own state only if a commit changes it
    /// while this is still held, so drop it before committing.
    fn load_shared(&self) -> std::sync::Arc<StoredState> {
        std::sync::Arc::new(self.load())
    }
    fn stats(&self) -> StoreStats;
    /// Write and fsync everything pending; used at shutdown.
    fn close(&self);
}
