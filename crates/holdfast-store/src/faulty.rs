//! An in-memory [`Backend`] that fails on demand: power loss, failed writes and fsyncs, a full disk.
//!
//! It models what a POSIX file system promises and no more: file contents survive power loss only up
//! to the last successful fsync of the file, names (creations, renames, removals) only once their
//! directory was fsync'd, and a failed fsync may have dropped the dirty data it was to write (the
//! data is still read back until the crash, but is zeroed by it, even if a later fsync succeeds).

use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;

use crate::backend::{Backend, BackendFile};

/// What power loss does to the bytes written since a file's last fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CrashMode {
    /// They are all lost.
    LoseUnsynced,
    /// A random prefix of them is kept: the last write is torn.
    TornTail { seed: u64 },
    /// They are replaced by a random length of random bytes (blocks allocated, never written).
    GarbageTail { seed: u64 },
}

/// A simulated disk. Clones share it.
#[derive(Debug, Clone, Default)]
pub struct FaultyBackend {
    disk: Arc<Mutex<Disk>>,
}

#[derive(Debug, Default)]
struct Disk {
    inodes: BTreeMap<u64, Inode>,
    next_inode: u64,
    /// The names as they are now.
    names: BTreeMap<PathBuf, u64>,
    /// The names as power loss leaves them (as of each directory's last fsync).
    durable_names: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    fail_writes: bool,
    fail_syncs: bool,
    capacity: Option<u64>,
    sync_delay: Duration,
    /// Mutating operations left before the disk stops (power is cut at that point).
    ops_left: Option<u64>,
    /// After a crash the old disk answers every call with an error.
    dead: bool,
    syncs: u64,
}

#[derive(Debug, Default, Clone)]
struct Inode {
    data: Vec<u8>,
    synced: usize,
    /// Ranges a failed fsync may have dropped.
    poisoned: Vec<(usize, usize)>,
}

#[derive(Debug)]
struct FaultyFile {
    disk: Arc<Mutex<Disk>>,
    inode: u64,
}

fn err(kind: io::ErrorKind, what: &str) -> io::Error {
    io::Error::new(kind, format!("injected fault: {what}"))
}

impl Disk {
    fn check_alive(&self) -> io::Result<()> {
        if self.dead {
            return Err(err(io::ErrorKind::Other, "the machine lost power"));
        }
        Ok(())
    }

    /// Counts a mutating operation; past the limit the disk is dead.
    fn step(&mut self) -> io::Result<()> {
        self.check_alive()?;
        if let Some(left) = &mut self.ops_left {
            if *left == 0 {
                self.dead = true;
                return self.check_alive();
            }
            *left -= 1;
        }
        Ok(())
    }

    fn used(&self) -> u64 {
        self.inodes.values().map(|i| i.data.len() as u64).sum()
    }

    fn inode(&mut self, path: &Path) -> io::Result<u64> {
        self.names.get(path).copied().ok_or_else(|| {
            err(
                io::ErrorKind::NotFound,
                &format!("{} not found", path.display()),
            )
        })
    }

    fn gc_inodes(&mut self) {
        let live: BTreeSet<u64> = self
            .names
            .values()
            .chain(self.durable_names.values())
            .copied()
            .collect();
        self.inodes.retain(|id, _| live.contains(id));
    }
}

impl FaultyBackend {
    pub fn new() -> FaultyBackend {
        FaultyBackend::default()
    }

    /// Appends fail (after writing half of what they were given) while set.
    pub fn set_fail_writes(&self, fail: bool) {
        self.disk.lock().fail_writes = fail;
    }

    /// fsyncs (of files and directories) fail while set, and drop the data they were to write.
    pub fn set_fail_syncs(&self, fail: bool) {
        self.disk.lock().fail_syncs = fail;
    }

    /// The disk holds at most this many bytes (all files together); `None`: unlimited.
    pub fn set_capacity(&self, bytes: Option<u64>) {
        self.disk.lock().capacity = bytes;
    }

    /// Every fsync takes this long (to make group commit observable).
    pub fn set_sync_delay(&self, delay: Duration) {
        self.disk.lock().sync_delay = delay;
    }

    /// Power is cut after `n` more mutating operations (create, append, sync, truncate, rename,
    /// remove, directory sync): from then on every call fails, until [`crash`](Self::crash).
    pub fn fail_after(&self, n: u64) {
        self.disk.lock().ops_left = Some(n);
    }

    /// Whether the power was cut by [`fail_after`](Self::fail_after).
    pub fn is_dead(&self) -> bool {
        self.disk.lock().dead
    }

    /// Bytes held by all files.
    pub fn used_bytes(&self) -> u64 {
        self.disk.lock().used()
    }

    /// Successful fsyncs of files so far.
    pub fn sync_count(&self) -> u64 {
        self.disk.lock().syncs
    }

    /// Power loss: this backend (and everything still using it) fails from now on; the returned one
    /// holds what survived, as a restart would find it.
    pub fn crash(&self, mode: CrashMode) -> FaultyBackend {
        let mut old = self.disk.lock();
        old.dead = true;
        let mut rng = Rng(match mode {
            CrashMode::LoseUnsynced => 1,
            CrashMode::TornTail { seed } | CrashMode::GarbageTail { seed } => seed | 1,
        });
        let mut disk = Disk {
            dirs: old.dirs.clone(),
            names: old.durable_names.clone(),
            ..Disk::default()
        };
        disk.durable_names = disk.names.clone();
        disk.next_inode = old.next_inode;
        for id in disk.names.values() {
            if disk.inodes.contains_key(id) {
                continue;
            }
            let src = &old.inodes[id];
            let mut data = src.data[..src.synced].to_vec();
            let unsynced = &src.data[src.synced..];
            if !unsynced.is_empty() {
                match mode {
                    CrashMode::LoseUnsynced => {}
                    CrashMode::TornTail { .. } => {
                        let keep = rng.below(unsynced.len() as u64 + 1) as usize;
                        data.extend_from_slice(&unsynced[..keep]);
                    }
                    CrashMode::GarbageTail { .. } => {
                        let n = rng.below(unsynced.len() as u64 + 1) as usize;
                        data.extend((0..n).map(|_| rng.next() as u8));
                    }
                }
            }
            for &(from, to) in &src.poisoned {
                let to = to.min(data.len());
                if from < to {
                    data[from..to].fill(0);
                }
            }
            let synced = data.len();
            disk.inodes.insert(
                *id,
                Inode {
                    data,
                    synced,
                    poisoned: Vec::new(),
                },
            );
        }
        FaultyBackend {
            disk: Arc::new(Mutex::new(disk)),
        }
    }

    /// The current bytes of a file (for tests that damage files on purpose).
    pub fn file_bytes(&self, path: &Path) -> Option<Vec<u8>> {
        let disk = self.disk.lock();
        disk.names.get(path).map(|id| disk.inodes[id].data.clone())
    }

    /// Replaces a file's bytes, as synced (for tests that damage files on purpose).
    pub fn set_file_bytes(&self, path: &Path, data: Vec<u8>) {
        let mut disk = self.disk.lock();
        if let Some(id) = disk.names.get(path).copied() {
            let synced = data.len();
            disk.inodes.insert(
                id,
                Inode {
                    data,
                    synced,
                    poisoned: Vec::new(),
                },
            );
        }
    }
}

impl Backend for FaultyBackend {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.check_alive()?;
        for a in dir.ancestors() {
            disk.dirs.insert(a.to_path_buf());
        }
        Ok(())
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let disk = self.disk.lock();
        disk.check_alive()?;
        if !disk.dirs.contains(dir) {
            return Err(err(io::ErrorKind::NotFound, "no such directory"));
        }
        let names = disk.names.keys().filter(|p| p.parent() == Some(dir));
        Ok(names
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn BackendFile>> {
        let mut disk = self.disk.lock();
        disk.step()?;
        if !path.parent().is_some_and(|d| disk.dirs.contains(d)) {
            return Err(err(io::ErrorKind::NotFound, "no such directory"));
        }
        let id = disk.next_inode;
        disk.next_inode += 1;
        disk.inodes.insert(id, Inode::default());
        disk.names.insert(path.to_path_buf(), id);
        disk.gc_inodes();
        Ok(Box::new(FaultyFile {
            disk: self.disk.clone(),
            inode: id,
        }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn BackendFile>> {
        let mut disk = self.disk.lock();
        disk.check_alive()?;
        let inode = disk.inode(path)?;
        Ok(Box::new(FaultyFile {
            disk: self.disk.clone(),
            inode,
        }))
    }

    fn read(&self, path: &Path, max: Option<u64>) -> io::Result<Vec<u8>> {
        let mut disk = self.disk.lock();
        disk.check_alive()?;
        let id = disk.inode(path)?;
        let data = &disk.inodes[&id].data;
        let n = max.map_or(data.len(), |m| data.len().min(m as usize));
        Ok(data[..n].to_vec())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.step()?;
        let id = disk.inode(from)?;
        disk.names.remove(from);
        disk.names.insert(to.to_path_buf(), id);
        disk.gc_inodes();
        Ok(())
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.step()?;
        disk.inode(path)?;
        disk.names.remove(path);
        disk.gc_inodes();
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.step()?;
        if disk.fail_syncs {
            return Err(err(io::ErrorKind::Other, "directory fsync failed"));
        }
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        disk.durable_names.retain(|p, _| !in_dir(p));
        let now: Vec<_> = disk
            .names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, id)| (p.clone(), *id))
            .collect();
        disk.durable_names.extend(now);
        disk.gc_inodes();
        Ok(())
    }
}

impl BackendFile for FaultyFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.step()?;
        let room = disk
            .capacity
            .map_or(u64::MAX, |c| c.saturating_sub(disk.used()));
        let fail_writes = disk.fail_writes;
        let inode = disk
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| err(io::ErrorKind::NotFound, "file removed"))?;
        if fail_writes {
            inode.data.extend_from_slice(&data[..data.len() / 2]);
            return Err(err(io::ErrorKind::Other, "write failed"));
        }
        if (data.len() as u64) > room {
            inode.data.extend_from_slice(&data[..room as usize]);
            return Err(err(io::ErrorKind::StorageFull, "no space left on device"));
        }
        inode.data.extend_from_slice(data);
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let delay = {
            let mut disk = self.disk.lock();
            disk.step()?;
            let fail = disk.fail_syncs;
            let inode = disk
                .inodes
                .get_mut(&self.inode)
                .ok_or_else(|| err(io::ErrorKind::NotFound, "file removed"))?;
            if fail {
                let range = (inode.synced, inode.data.len());
                inode.poisoned.push(range);
                inode.synced = inode.data.len();
                return Err(err(io::ErrorKind::Other, "fsync failed"));
            }
            inode.synced = inode.data.len();
            disk.syncs += 1;
            disk.sync_delay
        };
        if !delay.is_zero() {
            std::thread::sleep(delay);
        }
        Ok(())
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        let mut disk = self.disk.lock();
        disk.step()?;
        let inode = disk
            .inodes
            .get_mut(&self.inode)
            .ok_or_else(|| err(io::ErrorKind::NotFound, "file removed"))?;
        let len = len as usize;
        inode.data.truncate(len);
        inode.synced = inode.synced.min(len);
        Ok(())
    }

    fn len(&self) -> u64 {
        let disk = self.disk.lock();
        disk.inodes
            .get(&self.inode)
            .map_or(0, |i| i.data.len() as u64)
    }
}

/// xorshift64*: enough randomness for torn writes, no dependency.
#[derive(Debug, Clone)]
pub(crate) struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: u64) -> u64 {
        if n == 0 {
            0
        } else {
            self.next() % n
        }
    }
}
