//! The segment files of a log directory: naming, appending, rolling over, and writing snapshots.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::backend::{Backend, BackendFile};
use crate::record::{self, SegmentHeader, FLAG_SNAPSHOT, FORMAT_VERSION, HEADER_LEN};
use crate::StoredState;

/// Snapshot records hold about this many bytes of ops each: damage to one loses no more.
const SNAPSHOT_RECORD: usize = 4 << 10;
/// Snapshots are written in pieces of about this size.
const SNAPSHOT_WRITE: usize = 1 << 20;

pub(crate) fn segment_name(seq: u64) -> String {
    format!("{seq:016x}.log")
}

/// The sequence number of a segment file name, if it is one.
pub(crate) fn parse_segment_name(name: &str) -> Option<u64> {
    let hex = name.strip_suffix(".log")?;
    if hex.len() != 16 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(hex, 16).ok()
}

pub(crate) fn is_temp_name(name: &str) -> bool {
    name.strip_suffix(".tmp")
        .and_then(parse_segment_name)
        .is_some()
}

/// The segments of an open log; the last one is appended to.
#[derive(Debug)]
pub(crate) struct Segments {
    pub backend: Arc<dyn Backend>,
    pub dir: PathBuf,
    /// Sequence numbers and lengths of the segments before the active one.
    pub older: Vec<(u64, u64)>,
    pub active_seq: u64,
    pub active: Box<dyn BackendFile>,
    /// The next sequence number to use: above every segment or temporary file ever seen.
    pub next_seq: u64,
    /// Bytes of the last snapshot (what the live state took to write).
    pub snapshot_bytes: u64,
    pub segment_size: u64,
}

impl Segments {
    pub fn path(&self, seq: u64) -> PathBuf {
        self.dir.join(segment_name(seq))
    }

    pub fn total_bytes(&self) -> u64 {
        self.older.iter().map(|(_, len)| len).sum::<u64>() + self.active.len()
    }

    /// Appends `buf` (rolling over to a new segment first if the active one is full); returns the
    /// offset it starts at in the active segment. On failure the file is cut back, so no part of it
    /// stays; `broken` says when that, or the roll-over, failed.
    pub fn append(&mut self, buf: &[u8]) -> Result<u64, AppendError> {
        let before = self.active.len();
        if before > HEADER_LEN as u64 && before + buf.len() as u64 > self.segment_size {
            self.roll().map_err(|error| AppendError {
                error,
                broken: true,
            })?;
        }
        let before = self.active.len();
        if let Err(error) = self.active.append(buf) {
            let mut broken = false;
            if let Err(t) = self.active.truncate(before) {
                tracing::error!("cannot cut back a failed write: {t}");
                broken = true;
            }
            return Err(AppendError { error, broken });
        }
        Ok(before)
    }

    /// Cuts the active segment back to `len` (dropping records whose fsync failed).
    pub fn cut(&mut self, len: u64) -> io::Result<()> {
        self.active.truncate(len)
    }

    pub fn sync(&mut self) -> io::Result<()> {
        self.active.sync()
    }

    /// Closes the active segment (fsync'd, so later segments never survive without it) and starts
    /// the next one.
    fn roll(&mut self) -> io::Result<()> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let mut end = Vec::new();
        record::encode_segment_end(&mut end, seq);
        self.active.append(&end)?;
        self.active.sync()?;
        let file = create_segment(&*self.backend, &self.dir, seq, 0)?;
        let old = std::mem::replace(&mut self.active, file);
        self.older.push((self.active_seq, old.len()));
        self.active_seq = seq;
        Ok(())
    }

    /// Writes `state` as a new snapshot segment, makes it the active one and removes the older
    /// segments. Safe to interrupt at any point: the snapshot is written to a temporary file,
    /// fsync'd, and only then renamed into place; a restart ignores segments older than the newest
    /// snapshot segment.
    pub fn write_snapshot(&mut self, state: &StoredState) -> io::Result<()> {
        let seq = self.next_seq;
        self.next_seq += 1;
        let path = self.path(seq);
        let bytes = write_snapshot_file(&*self.backend, &self.dir, seq, state)?;
        // From here the snapshot supersedes the older segments: never append to them again.
        let file = match self.backend.open(&path) {
            Ok(file) => file,
            Err(e) => {
                let _ = self.backend.remove(&path);
                return Err(e);
            }
        };
        let old_active = std::mem::replace(&mut self.active, file);
        let mut older = std::mem::take(&mut self.older);
        older.push((self.active_seq, old_active.len()));
        drop(old_active);
        self.active_seq = seq;
        self.snapshot_bytes = bytes;
        if let Err(e) = self.backend.sync_dir(&self.dir) {
            // The snapshot's name may not be durable yet: keep the older segments until it is.
            self.older = older;
            return Err(e);
        }
        for (old, _) in older {
            if let Err(e) = self.backend.remove(&self.path(old)) {
                tracing::warn!(segment = %self.path(old).display(), "cannot remove a compacted segment: {e}");
            }
        }
        if let Err(e) = self.backend.sync_dir(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), "cannot sync the directory after compaction: {e}");
        }
        Ok(())
    }
}

/// A failed append.
#[derive(Debug)]
pub(crate) struct AppendError {
    pub error: io::Error,
    /// The file may hold part of the write (or the roll-over's fsync failed).
    pub broken: bool,
}

/// Creates segment `seq` with its header, fsync'd and its name made durable.
pub(crate) fn create_segment(
    backend: &dyn Backend,
    dir: &Path,
    seq: u64,
    flags: u8,
) -> io::Result<Box<dyn BackendFile>> {
    let path = dir.join(segment_name(seq));
    let mut file = backend.create(&path)?;
    let header = SegmentHeader {
        version: FORMAT_VERSION,
        flags,
        seq,
    };
    file.append(&header.encode())?;
    file.sync()?;
    backend.sync_dir(dir)?;
    Ok(file)
}

/// Writes the snapshot segment `seq` through a temporary file, fsync'd and renamed into place;
/// returns the size of the snapshot. Once it returns, the segment is in place (its name not yet
/// durable); on an error before the rename nothing is left.
pub(crate) fn write_snapshot_file(
    backend: &dyn Backend,
    dir: &Path,
    seq: u64,
    state: &StoredState,
) -> io::Result<u64> {
    let path = dir.join(segment_name(seq));
    let tmp = dir.join(format!("{}.tmp", segment_name(seq)));
    let result = (|| {
        let mut file = backend.create(&tmp)?;
        let header = SegmentHeader {
            version: FORMAT_VERSION,
            flags: FLAG_SNAPSHOT,
            seq,
        };
        let mut buf = Vec::with_capacity(SNAPSHOT_WRITE + (64 << 10));
        buf.extend_from_slice(&header.encode());
        let ops = record::encode_state(state, &mut buf, SNAPSHOT_RECORD, SNAPSHOT_WRITE, |b| {
            let r = file.append(b);
            b.clear();
            r
        })?;
        let bytes = file.len();
        record::encode_snapshot_end(&mut buf, ops, bytes);
        file.append(&buf)?;
        file.sync()?;
        drop(file);
        backend.rename(&tmp, &path)?;
        Ok::<_, io::Error>(bytes)
    })();
    if result.is_err() {
        let _ = backend.remove(&tmp);
    }
    result
}
