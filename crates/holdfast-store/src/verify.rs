//! `holdfast store verify`: read a data directory offline and report what it holds and what is
//! damaged. Changes nothing.

use std::fmt;
use std::path::{Path, PathBuf};

use crate::backend::{Backend, FsBackend};
use crate::recovery::{self, CorruptRecord, StateCounts};
use crate::StoreError;

/// One segment, as verify found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SegmentReport {
    pub name: String,
    pub bytes: u64,
    pub records: u64,
    /// It starts with a snapshot (the state starts here).
    pub snapshot: bool,
    pub corrupt_records: usize,
    pub torn_bytes: u64,
}

/// What a data directory holds.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VerifyReport {
    pub dir: PathBuf,
    /// The segments that count, in order.
    pub segments: Vec<SegmentReport>,
    /// What a start would load.
    pub counts: StateCounts,
    pub bytes: u64,
    pub records: u64,
    pub corrupt_records: Vec<CorruptRecord>,
    /// An interrupted write at the end of the last segment (normal after a crash; cut at next start).
    pub torn_bytes: u64,
    /// Segments older than the newest snapshot (an interrupted compaction; removed at next start).
    pub superseded: Vec<String>,
    /// Temporary files of an interrupted compaction (removed at next start).
    pub temp_files: Vec<String>,
    /// Messages nothing refers to (dropped at next start).
    pub garbage_messages: usize,
    /// Files in `damaged/`: segments moved aside by earlier starts.
    pub moved_aside: Vec<String>,
}

impl VerifyReport {
    /// Whether records were found damaged (a torn tail is not damage: it is what a crash leaves).
    pub fn is_damaged(&self) -> bool {
        !self.corrupt_records.is_empty()
    }
}

/// Reads the log in `dir` on the file system; see [`verify_with`].
pub fn verify(dir: &Path) -> Result<VerifyReport, StoreError> {
    verify_with(&FsBackend, dir)
}

/// Replays the log in `dir` as a start would, read-only: no truncation, nothing moved or removed.
pub fn verify_with(backend: &dyn Backend, dir: &Path) -> Result<VerifyReport, StoreError> {
    let mut replay = recovery::replay(backend, dir)?;
    let mut report = VerifyReport {
        dir: dir.to_path_buf(),
        bytes: replay.bytes_read,
        records: replay.records,
        superseded: replay.superseded,
        temp_files: replay.temp_files,
        ..VerifyReport::default()
    };
    for scan in &replay.scans {
        let torn_bytes = scan.torn_at.map_or(0, |at| scan.len - at);
        report.torn_bytes += torn_bytes;
        report.corrupt_records.extend(scan.corrupt.iter().cloned());
        report.segments.push(SegmentReport {
            name: scan.name.clone(),
            bytes: scan.len,
            records: scan.records,
            snapshot: scan.snapshot,
            corrupt_records: scan.corrupt.len(),
            torn_bytes,
        });
    }
    report.garbage_messages = replay.state.collect_garbage();
    report.counts = StateCounts::of(&replay.state);
    if let Ok(mut names) = backend.list(&dir.join("damaged")) {
        names.sort();
        report.moved_aside = names;
    }
    Ok(report)
}

impl fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "data directory: {}", self.dir.display())?;
        writeln!(
            f,
            "segments: {} ({} bytes, {} records)",
            self.segments.len(),
            self.bytes,
            self.records
        )?;
        for s in &self.segments {
            write!(
                f,
                "  {}  {:>12} bytes  {:>9} records",
                s.name, s.bytes, s.records
            )?;
            if s.snapshot {
                write!(f, "  snapshot")?;
            }
            if s.corrupt_records > 0 {
                write!(f, "  {} CORRUPT", s.corrupt_records)?;
            }
            if s.torn_bytes > 0 {
                write!(f, "  torn tail of {} bytes", s.torn_bytes)?;
            }
            writeln!(f)?;
        }
        writeln!(f, "holds: {}", self.counts)?;
        if self.garbage_messages > 0 {
            writeln!(
                f,
                "unreferenced messages: {} (dropped at next start)",
                self.garbage_messages
            )?;
        }
        if self.torn_bytes > 0 {
            writeln!(
                f,
                "torn tail: {} bytes of an interrupted write (cut off at next start)",
                self.torn_bytes
            )?;
        }
        for name in &self.superseded {
            writeln!(
                f,
                "superseded by a snapshot: {name} (removed at next start)"
            )?;
        }
        for name in &self.temp_files {
            writeln!(f, "unfinished snapshot: {name} (removed at next start)")?;
        }
        if !self.moved_aside.is_empty() {
            writeln!(
                f,
                "moved aside earlier, in damaged/: {}",
                self.moved_aside.join(", ")
            )?;
        }
        if self.is_damaged() {
            writeln!(
                f,
                "DAMAGED: {} corrupt records (skipped at start; their segments moved aside):",
                self.corrupt_records.len()
            )?;
            for c in &self.corrupt_records {
                writeln!(f, "  {c}")?;
            }
        } else {
            writeln!(f, "no damage found")?;
        }
        Ok(())
    }
}
