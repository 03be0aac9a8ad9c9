//! `holdfast store check`: measure the data directory's disk, and say what durable (`sync`) message
//! rate it can sustain. MQTT 4.1 asks users to evaluate their storage; this is that evaluation.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::{Op, OutEntry, StoreError, StoredMessage};

/// Group commit batch sizes the report estimates rates for.
const BATCHES: [u32; 3] = [1, 16, 64];
const SMALL_WRITE: usize = 256;
const CHUNK: usize = 1 << 20;

/// The sustainable rate of `sync` messages for one group size.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SyncRate {
    /// Messages committed together (one write, one fsync).
    pub batch: u32,
    pub fsyncs_per_s: f64,
    pub messages_per_s: f64,
}

/// What the disk under a data directory can do.
#[derive(Debug, Clone, PartialEq)]
pub struct CheckReport {
    pub dir: PathBuf,
    /// Small appends each followed by fdatasync.
    pub fsyncs: u64,
    pub fsync_p50: Duration,
    pub fsync_p99: Duration,
    pub fsync_max: Duration,
    pub fsync_mean: Duration,
    /// Sequential write throughput, fsync included, MB/s (10^6 bytes).
    pub write_mb_per_s: f64,
    /// Bytes one stored `sync` message takes in the log (64-byte payload, one subscriber).
    pub message_bytes: usize,
    pub rates: Vec<SyncRate>,
}

fn io(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{what} {}: {e}", path.display()))
}

/// Measures for about `duration` in a temporary file inside `dir` (removed afterwards).
pub fn check(dir: &Path, duration: Duration) -> Result<CheckReport, StoreError> {
    fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
    let path = dir.join(format!(".holdfast-check-{}.tmp", std::process::id()));
    let result = measure(dir, &path, duration);
    let _ = fs::remove_file(&path);
    result
}

fn measure(dir: &Path, path: &Path, duration: Duration) -> Result<CheckReport, StoreError> {
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io("cannot create", path, e))?;
    let half = duration / 2;
    // fdatasync latency of small appends, as a lone sync commit does.
    let small = vec![0xA5u8; SMALL_WRITE];
    let mut latencies = Vec::new();
    let started = Instant::now();
    while latencies.is_empty() || (started.elapsed() < half && latencies.len() < 100_000) {
        let t = Instant::now();
        file.write_all(&small)
            .map_err(|e| io("cannot write", path, e))?;
        file.sync_data().map_err(|e| io("cannot fsync", path, e))?;
        latencies.push(t.elapsed());
    }
    latencies.sort_unstable();
    let pct = |p: f64| latencies[((latencies.len() - 1) as f64 * p).round() as usize];
    let mean = latencies.iter().sum::<Duration>() / latencies.len() as u32;
    // Sequential throughput.
    let mut file = reopen(path, file)?;
    let chunk = vec![0x5Au8; CHUNK];
    let started = Instant::now();
    let mut written = 0u64;
    while written == 0 || (started.elapsed() < half && written < (1 << 30)) {
        file.write_all(&chunk)
            .map_err(|e| io("cannot write", path, e))?;
        written += CHUNK as u64;
    }
    file.sync_data().map_err(|e| io("cannot fsync", path, e))?;
    let secs = started.elapsed().as_secs_f64();
    let write_mb_per_s = written as f64 / secs / 1e6;
    let message_bytes = message_record_bytes();
    let rates = BATCHES
        .iter()
        .map(|&batch| {
            let write = (batch as usize * message_bytes) as f64 / (write_mb_per_s * 1e6);
            let group = mean.as_secs_f64() + write;
            SyncRate {
                batch,
                fsyncs_per_s: 1.0 / group,
                messages_per_s: f64::from(batch) / group,
            }
        })
        .collect();
    Ok(CheckReport {
        dir: dir.to_path_buf(),
        fsyncs: latencies.len() as u64,
        fsync_p50: pct(0.5),
        fsync_p99: pct(0.99),
        fsync_max: *latencies.last().unwrap_or(&Duration::ZERO),
        fsync_mean: mean,
        write_mb_per_s,
        message_bytes,
        rates,
    })
}

fn reopen(path: &Path, file: File) -> Result<File, StoreError> {
    drop(file);
    OpenOptions::new()
        .write(true)
        .truncate(true)
        .open(path)
        .map_err(|e| io("cannot open", path, e))
}

/// The log bytes of a typical `sync` message: its body and one queue entry.
fn message_record_bytes() -> usize {
    let ops = [
        Op::PutMessage {
            id: 1_000_000,
            message: StoredMessage {
                topic: "meters/building-7/floor-3/power".into(),
                payload: Bytes::from_static(&[7; 64]),
                qos: 1,
                publisher: Some("meter-0042".into()),
                ..StoredMessage::default()
            },
        },
        Op::PutOutbound {
            client_id: "collector-01".into(),
            seq: 1_000_000,
            entry: OutEntry {
                message_id: 1_000_000,
                qos: 1,
                ..OutEntry::default()
            },
        },
    ];
    let mut buf = Vec::new();
    crate::record::encode_batch(&mut buf, &ops);
    buf.len()
}

impl fmt::Display for CheckReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let ms = |d: Duration| d.as_secs_f64() * 1e3;
        writeln!(f, "data directory: {}", self.dir.display())?;
        writeln!(
            f,
            "fdatasync after a {SMALL_WRITE}-byte append ({} samples): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms, mean {:.3} ms",
            self.fsyncs,
            ms(self.fsync_p50),
            ms(self.fsync_p99),
            ms(self.fsync_max),
            ms(self.fsync_mean)
        )?;
        writeln!(f, "sequential write: {:.0} MB/s", self.write_mb_per_s)?;
        writeln!(
            f,
            "sustainable `sync` messages ({} log bytes each: 64-byte payload, one subscriber):",
            self.message_bytes
        )?;
        for r in &self.rates {
            writeln!(
                f,
                "  {:>3} per group commit: {:>10.0} msg/s ({:.0} fsyncs/s)",
                r.batch, r.messages_per_s, r.fsyncs_per_s
            )?;
        }
        writeln!(
            f,
            "one publisher waiting for each ack gets the first line; many concurrent publishers approach the last."
        )?;
        write!(
            f,
            "`flush` messages are limited by write throughput, not fsync."
        )
    }
}
