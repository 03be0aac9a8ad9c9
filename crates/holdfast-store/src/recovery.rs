//! Reading a log directory back: which segments count, replaying their records, and finding damage.
//! [`replay`] only reads (it serves `verify` too); [`recover`] then repairs what it found.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::backend::Backend;
use crate::codec::PayloadArena;
use crate::record::{self, Bad, Record, SegmentHeader, FORMAT_VERSION, HEADER_LEN, RECORD_MAGIC};
use crate::segment::{self, is_temp_name, parse_segment_name, segment_name, Segments};
use crate::{Op, StoreError, StoredState};

/// A damaged stretch of a segment that was skipped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CorruptRecord {
    /// The segment file's name.
    pub file: String,
    pub offset: u64,
    /// Bytes skipped.
    pub len: u64,
    pub reason: String,
}

impl fmt::Display for CorruptRecord {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} at offset {} ({} bytes): {}",
            self.file, self.offset, self.len, self.reason
        )
    }
}

/// How much state a store holds.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StateCounts {
    pub sessions: usize,
    pub subscriptions: usize,
    pub messages: usize,
    /// Outbound entries: queued, in flight and released.
    pub outbound: usize,
    pub inbound_qos2: usize,
    pub retained: usize,
}

impl StateCounts {
    pub fn of(state: &StoredState) -> StateCounts {
        let s = state.sessions.values();
        StateCounts {
            sessions: state.sessions.len(),
            subscriptions: s.clone().map(|s| s.subscriptions.len()).sum(),
            messages: state.messages.len(),
            outbound: s.clone().map(|s| s.outbound.len()).sum(),
            inbound_qos2: s.map(|s| s.inbound_qos2.len()).sum(),
            retained: state.retained.len(),
        }
    }
}

impl fmt::Display for StateCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} sessions, {} subscriptions, {} messages, {} outbound entries, {} inbound QoS 2 ids, {} retained",
            self.sessions, self.subscriptions, self.messages, self.outbound, self.inbound_qos2, self.retained
        )
    }
}

/// What a restart found and did.
#[derive(Debug, Clone, Default)]
pub struct RecoveryReport {
    /// What was recovered (after unreachable messages were dropped).
    pub counts: StateCounts,
    pub segments_read: usize,
    pub bytes_read: u64,
    pub records: u64,
    /// Damaged records skipped, with where they were.
    pub corrupt_records: Vec<CorruptRecord>,
    /// Bytes cut off the end of the last segment (an interrupted write).
    pub torn_bytes_truncated: u64,
    /// Damaged segments, copied into `damaged/` (their content is in the new snapshot).
    pub moved_aside: Vec<PathBuf>,
    /// Segments superseded by a snapshot and leftover temporary files, removed.
    pub removed: Vec<String>,
    /// Messages no session or retained topic referred to, dropped.
    pub garbage_messages: usize,
    /// Whether the recovered state was written as a fresh snapshot segment.
    pub snapshot_written: bool,
    pub duration: Duration,
}

impl fmt::Display for RecoveryReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "recovered {} from {} segments ({} bytes, {} records) in {:?}",
            self.counts, self.segments_read, self.bytes_read, self.records, self.duration
        )?;
        if !self.corrupt_records.is_empty() {
            write!(
                f,
                "; {} corrupt records skipped",
                self.corrupt_records.len()
            )?;
        }
        if self.torn_bytes_truncated > 0 {
            write!(f, "; {} torn bytes cut off", self.torn_bytes_truncated)?;
        }
        if !self.moved_aside.is_empty() {
            write!(
                f,
                "; {} damaged segments moved aside",
                self.moved_aside.len()
            )?;
        }
        Ok(())
    }
}

/// One segment as replay found it.
#[derive(Debug, Clone)]
pub(crate) struct SegmentScan {
    pub seq: u64,
    pub name: String,
    pub len: u64,
    pub snapshot: bool,
    pub records: u64,
    pub corrupt: Vec<CorruptRecord>,
    /// Where the torn tail begins (last segment only).
    pub torn_at: Option<u64>,
    /// The size of the snapshot this segment starts with, if it is a complete one.
    pub snapshot_bytes: Option<u64>,
    /// It has its end record.
    pub ended: bool,
}

/// A directory, read.
#[derive(Debug, Default)]
pub(crate) struct Replay {
    pub state: StoredState,
    pub scans: Vec<SegmentScan>,
    /// Segments older than the newest snapshot segment.
    pub superseded: Vec<String>,
    pub temp_files: Vec<String>,
    pub bytes_read: u64,
    pub records: u64,
    /// The highest sequence number of any segment or temporary file.
    pub max_seq: u64,
}

pub(crate) fn io_error(what: &str, path: &Path, e: std::io::Error) -> StoreError {
    StoreError::Io(format!("{what} {}: {e}", path.display()))
}

/// Reads every segment that counts, in order, into a state (not yet garbage-collected).
pub(crate) fn replay(backend: &dyn Backend, dir: &Path) -> Result<Replay, StoreError> {
    let names = backend
        .list(dir)
        .map_err(|e| io_error("cannot list", dir, e))?;
    let mut out = Replay::default();
    let mut segments = Vec::new();
    for name in names {
        if let Some(seq) = parse_segment_name(&name) {
            segments.push(seq);
            out.max_seq = out.max_seq.max(seq);
        } else if is_temp_name(&name) {
            out.max_seq = out
                .max_seq
                .max(parse_segment_name(&name[..name.len() - 4]).unwrap_or(0));
            out.temp_files.push(name);
        }
    }
    segments.sort_unstable();
    // The newest snapshot segment is where the state starts.
    let mut start = 0;
    for (i, seq) in segments.iter().enumerate().rev() {
        let path = dir.join(segment_name(*seq));
        let head = backend
            .read(&path, Some(HEADER_LEN as u64))
            .map_err(|e| io_error("cannot read", &path, e))?;
        if SegmentHeader::decode(&head).is_some_and(|h| h.is_snapshot()) {
            start = i;
            break;
        }
    }
    out.superseded = segments[..start].iter().map(|s| segment_name(*s)).collect();
    let count = segments.len();
    // Two threads share the work: this one reads, checks and decodes the records, another applies
    // them to the state (at a million messages, both take hundreds of milliseconds). The ops go over
    // in chunks, and the emptied chunks come back to be filled again: memory freed on the other
    // thread is not at once reusable here, and fresh memory is what costs most.
    let (tx, rx) = mpsc::sync_channel::<Vec<Op>>(8);
    let (back_tx, back_rx) = mpsc::channel::<Vec<Op>>();
    out.state = std::thread::scope(|scope| {
        let applier = std::thread::Builder::new()
            .name("holdfast-replay".to_string())
            .spawn_scoped(scope, move || {
                let mut state = StoredState::default();
                for mut chunk in rx {
                    for op in chunk.drain(..) {
                        state.apply_owned(op);
                    }
                    let _ = back_tx.send(chunk);
                }
                state
            })
            .map_err(|e| StoreError::Io(format!("cannot start the replay thread: {e}")))?;
        let mut sink = Batches {
            tx,
            back: back_rx,
            ops: Vec::with_capacity(Batches::CHUNK_OPS),
        };
        let mut buf = Vec::new();
        let mut arena = PayloadArena::default();
        let read = || {
            for (i, seq) in segments.into_iter().enumerate().skip(start) {
                let name = segment_name(seq);
                let path = dir.join(&name);
                backend
                    .read_into(&path, &mut buf)
                    .map_err(|e| io_error("cannot read", &path, e))?;
                out.bytes_read += buf.len() as u64;
                let last = i + 1 == count;
                let scan = scan_segment(&buf, seq, name, last, &mut sink, &mut arena)?;
                out.records += scan.records;
                out.scans.push(scan);
            }
            Ok(())
        };
        let read = read();
        sink.flush();
        drop(sink); // ends the applier's loop
        match applier.join() {
            Ok(state) => read.map(|()| state),
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })?;
    Ok(out)
}

/// Decoded ops on their way to the applying thread, a few thousand at a time.
struct Batches {
    tx: mpsc::SyncSender<Vec<Op>>,
    /// Chunks the applier has emptied.
    back: mpsc::Receiver<Vec<Op>>,
    /// Whole batches only: a record's ops are appended all together or not at all.
    ops: Vec<Op>,
}

impl Batches {
    const CHUNK_OPS: usize = 4096;

    /// After each record: hand the chunk over once it is full.
    fn record_done(&mut self) {
        if self.ops.len() >= Self::CHUNK_OPS {
            self.flush();
        }
    }

    fn flush(&mut self) {
        if self.ops.is_empty() {
            return;
        }
        let next = match self.back.try_recv() {
            Ok(chunk) => chunk,
            Err(_) => Vec::with_capacity(Self::CHUNK_OPS),
        };
        // The applier only stops early by panicking, which `join` passes on.
        let _ = self.tx.send(std::mem::replace(&mut self.ops, next));
    }
}

/// Replays one segment's records into `sink`, skipping damage.
fn scan_segment(
    buf: &[u8],
    seq: u64,
    name: String,
    last: bool,
    sink: &mut Batches,
    arena: &mut PayloadArena,
) -> Result<SegmentScan, StoreError> {
    let mut scan = SegmentScan {
        seq,
        name,
        len: buf.len() as u64,
        snapshot: false,
        records: 0,
        corrupt: Vec::new(),
        torn_at: None,
        snapshot_bytes: None,
        ended: false,
    };
    if buf.len() < HEADER_LEN {
        if last {
            scan.torn_at = Some(0);
        } else {
            scan.corrupt.push(corrupt(
                &scan.name,
                0,
                buf.len(),
                "segment header incomplete",
            ));
        }
        return Ok(scan);
    }
    match SegmentHeader::decode(buf) {
        Some(h) if h.version > FORMAT_VERSION => {
            return Err(StoreError::Io(format!(
                "segment {} has format version {}; this build reads up to {FORMAT_VERSION}",
                scan.name, h.version
            )))
        }
        Some(h) if h.seq != seq => scan.corrupt.push(corrupt(
            &scan.name,
            0,
            HEADER_LEN,
            "segment header names another segment",
        )),
        Some(h) => scan.snapshot = h.is_snapshot(),
        None => scan
            .corrupt
            .push(corrupt(&scan.name, 0, HEADER_LEN, "bad segment header")),
    }
    let mut pos = HEADER_LEN;
    while pos < buf.len() {
        match record::read_record_in(buf, pos, arena, &mut sink.ops) {
            Ok((rec, next)) => {
                apply(&mut scan, sink, rec);
                pos = next;
            }
            Err(bad) => match resync(buf, pos + 1, arena, &mut sink.ops) {
                Some((rec, at, next)) => {
                    let reason = reason(bad);
                    tracing::warn!(segment = %scan.name, offset = pos, len = at - pos, "skipping a corrupt record: {reason}");
                    scan.corrupt
                        .push(corrupt(&scan.name, pos, at - pos, reason));
                    apply(&mut scan, sink, rec);
                    pos = next;
                }
                None => {
                    let torn = bad == Bad::Incomplete || buf[pos..].iter().all(|b| *b == 0);
                    if last && torn {
                        scan.torn_at = Some(pos as u64);
                    } else {
                        let reason = if torn {
                            "segment ends inside a record"
                        } else {
                            reason(bad)
                        };
                        tracing::warn!(segment = %scan.name, offset = pos, "corrupt end of segment: {reason}");
                        scan.corrupt
                            .push(corrupt(&scan.name, pos, buf.len() - pos, reason));
                    }
                    break;
                }
            },
        }
    }
    if !last && !scan.ended && scan.corrupt.is_empty() {
        tracing::warn!(segment = %scan.name, "segment ends without its end record: cut short?");
        scan.corrupt.push(corrupt(
            &scan.name,
            buf.len(),
            0,
            "segment ends without its end record (cut short?)",
        ));
    }
    Ok(scan)
}

/// Takes note of a record read (a batch's ops are in `sink` already).
fn apply(scan: &mut SegmentScan, sink: &mut Batches, rec: Record) {
    scan.records += 1;
    match rec {
        Record::Batch(_) => sink.record_done(),
        Record::SnapshotEnd { bytes, .. } => {
            if scan.snapshot {
                scan.snapshot_bytes = Some(bytes);
            }
        }
        Record::SegmentEnd { .. } => scan.ended = true,
    }
}

/// The next record after damage: the first magic byte from `from` on that starts a record that
/// checks out.
fn resync(
    buf: &[u8],
    from: usize,
    arena: &mut PayloadArena,
    ops: &mut Vec<Op>,
) -> Option<(Record, usize, usize)> {
    let mut pos = from;
    while pos < buf.len() {
        let at = pos + buf[pos..].iter().position(|b| *b == RECORD_MAGIC)?;
        if let Ok((rec, next)) = record::read_record_in(buf, at, arena, ops) {
            return Some((rec, at, next));
        }
        pos = at + 1;
    }
    None
}

fn reason(bad: Bad) -> &'static str {
    match bad {
        Bad::Incomplete => "record runs past the end of the segment",
        Bad::Corrupt(why) => why,
    }
}

fn corrupt(file: &str, offset: usize, len: usize, reason: &str) -> CorruptRecord {
    CorruptRecord {
        file: file.to_string(),
        offset: offset as u64,
        len: len as u64,
        reason: reason.to_string(),
    }
}

/// What [`recover`] hands to the committer.
pub(crate) struct Recovered {
    pub segments: Segments,
    pub state: StoredState,
    pub report: RecoveryReport,
    /// A snapshot was needed but could not be written: write one before appending.
    pub needs_snapshot: bool,
}

/// Replays `dir` and repairs it: cuts a torn tail, removes superseded segments and temporary
/// files, copies damaged segments into `damaged/` and replaces them with a snapshot.
pub(crate) fn recover(
    backend: std::sync::Arc<dyn Backend>,
    dir: &Path,
    segment_size: u64,
) -> Result<Recovered, StoreError> {
    let started = Instant::now();
    backend
        .create_dir_all(dir)
        .map_err(|e| io_error("cannot create", dir, e))?;
    let mut replay = replay(&*backend, dir)?;
    let mut report = RecoveryReport {
        segments_read: replay.scans.len(),
        bytes_read: replay.bytes_read,
        records: replay.records,
        ..RecoveryReport::default()
    };
    for name in replay.temp_files.iter().chain(&replay.superseded) {
        let path = dir.join(name);
        backend
            .remove(&path)
            .map_err(|e| io_error("cannot remove", &path, e))?;
        tracing::info!(file = %path.display(), "removed a leftover of an interrupted compaction");
        report.removed.push(name.clone());
    }
    // The torn tail of the last segment.
    if let Some(scan) = replay.scans.last_mut() {
        if let Some(at) = scan.torn_at {
            let path = dir.join(&scan.name);
            tracing::warn!(segment = %path.display(), offset = at, bytes = scan.len - at, "cutting off a torn tail");
            report.torn_bytes_truncated = scan.len - at;
            if at < HEADER_LEN as u64 {
                backend
                    .remove(&path)
                    .map_err(|e| io_error("cannot remove", &path, e))?;
                replay.scans.pop();
            } else {
                let mut file = backend
                    .open(&path)
                    .map_err(|e| io_error("cannot open", &path, e))?;
                file.truncate(at)
                    .and_then(|()| file.sync())
                    .map_err(|e| io_error("cannot truncate", &path, e))?;
                scan.len = at;
            }
        }
    }
    let mut state = std::mem::take(&mut replay.state);
    let before = StateCounts::of(&state);
    report.garbage_messages = state.collect_garbage();
    report.counts = StateCounts::of(&state);
    let gc_changed = before != report.counts;
    // Damaged segments are copied aside before the snapshot that replaces them.
    for scan in replay.scans.iter().filter(|s| !s.corrupt.is_empty()) {
        report.corrupt_records.extend(scan.corrupt.iter().cloned());
        report
            .moved_aside
            .push(copy_aside(&*backend, dir, &scan.name)?);
    }
    let snapshot_bytes = replay
        .scans
        .first()
        .and_then(|s| s.snapshot_bytes)
        .unwrap_or(0);
    let mut scans = replay.scans.into_iter();
    let mut segments = match scans.next_back() {
        Some(last) => {
            let path = dir.join(&last.name);
            Segments {
                active: backend
                    .open(&path)
                    .map_err(|e| io_error("cannot open", &path, e))?,
                active_seq: last.seq,
                older: scans.map(|s| (s.seq, s.len)).collect(),
                next_seq: replay.max_seq + 1,
                snapshot_bytes,
                segment_size,
                backend: backend.clone(),
                dir: dir.to_path_buf(),
            }
        }
        None => {
            let seq = replay.max_seq + 1;
            let bytes = segment::write_snapshot_file(&*backend, dir, seq, &StoredState::default())
                .and_then(|b| backend.sync_dir(dir).map(|()| b))
                .map_err(|e| io_error("cannot create the first segment in", dir, e))?;
            let path = dir.join(segment_name(seq));
            Segments {
                active: backend
                    .open(&path)
                    .map_err(|e| io_error("cannot open", &path, e))?,
                active_seq: seq,
                older: Vec::new(),
                next_seq: seq + 1,
                snapshot_bytes: bytes,
                segment_size,
                backend: backend.clone(),
                dir: dir.to_path_buf(),
            }
        }
    };
    let mut needs_snapshot = false;
    if !report.moved_aside.is_empty() || gc_changed {
        match segments.write_snapshot(&state) {
            Ok(()) => report.snapshot_written = true,
            Err(e) => {
                tracing::error!(dir = %dir.display(), "cannot write the recovered state as a snapshot (will retry): {e}");
                needs_snapshot = true;
            }
        }
    }
    report.duration = started.elapsed();
    Ok(Recovered {
        segments,
        state,
        report,
        needs_snapshot,
    })
}

/// Copies a damaged segment into `dir/damaged/`, under a name not taken yet.
fn copy_aside(backend: &dyn Backend, dir: &Path, name: &str) -> Result<PathBuf, StoreError> {
    let aside = dir.join("damaged");
    backend
        .create_dir_all(&aside)
        .map_err(|e| io_error("cannot create", &aside, e))?;
    let taken = backend
        .list(&aside)
        .map_err(|e| io_error("cannot list", &aside, e))?;
    let mut target = name.to_string();
    let mut n = 1;
    while taken.contains(&target) {
        target = format!("{name}.{n}");
        n += 1;
    }
    let from = dir.join(name);
    let to = aside.join(&target);
    let data = backend
        .read(&from, None)
        .map_err(|e| io_error("cannot read", &from, e))?;
    let mut file = backend
        .create(&to)
        .map_err(|e| io_error("cannot create", &to, e))?;
    file.append(&data)
        .and_then(|()| file.sync())
        .and_then(|()| backend.sync_dir(&aside))
        .map_err(|e| io_error("cannot write", &to, e))?;
    tracing::warn!(segment = %from.display(), copy = %to.display(), "moved a damaged segment aside");
    Ok(to)
}
