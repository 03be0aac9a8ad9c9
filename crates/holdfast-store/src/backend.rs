//! The file operations the log needs, behind a trait so tests can inject faults
//! ([`FaultyBackend`](crate::FaultyBackend)).

use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::Path;

/// A directory of files, as the log uses it.
pub trait Backend: Send + Sync + Debug {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the regular files in `dir`.
    fn list(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// Creates `path` empty (truncating it if it exists), open for appending.
    fn create(&self, path: &Path) -> io::Result<Box<dyn BackendFile>>;
    /// Opens an existing file for appending at its end.
    fn open(&self, path: &Path) -> io::Result<Box<dyn BackendFile>>;
    /// Up to `max` bytes from the start of the file (all of it if `None`).
    fn read(&self, path: &Path, max: Option<u64>) -> io::Result<Vec<u8>>;
    /// All of the file, into `buf` (replacing what it held): recovery reuses one buffer for every
    /// segment rather than touching fresh memory for each.
    fn read_into(&self, path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
        *buf = self.read(path, None)?;
        Ok(())
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Makes creations, renames and removals in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An open file that is only ever appended to (or cut back).
pub trait BackendFile: Send + Debug {
    /// Writes all of `data` at the end. On error, part of it may have been written.
    fn append(&mut self, data: &[u8]) -> io::Result<()>;
    /// fdatasync: everything appended so far survives power loss.
    fn sync(&mut self) -> io::Result<()>;
    fn truncate(&mut self, len: u64) -> io::Result<()>;
    /// The length the file is known to have (after a failed append: as far as it can tell).
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The real file system.
#[derive(Debug, Clone, Copy, Default)]
pub struct FsBackend;

#[derive(Debug)]
struct FsFile {
    file: File,
    len: u64,
}

impl Backend for FsBackend {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file() {
                if let Ok(name) = entry.file_name().into_string() {
                    names.push(name);
                }
            }
        }
        Ok(names)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn BackendFile>> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(FsFile { file, len: 0 }))
    }

    fn open(&self, path: &Path) -> io::Result<Box<dyn BackendFile>> {
        let file = OpenOptions::new().read(true).write(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(Box::new(FsFile { file, len }))
    }

    fn read(&self, path: &Path, max: Option<u64>) -> io::Result<Vec<u8>> {
        let mut file = File::open(path)?;
        let mut buf = Vec::new();
        match max {
            None => {
                let len = file.metadata()?.len();
                buf.reserve_exact(len as usize);
                file.read_to_end(&mut buf)?;
            }
            Some(max) => {
                file.seek(SeekFrom::Start(0))?;
                file.take(max).read_to_end(&mut buf)?;
            }
        }
        Ok(buf)
    }

    fn read_into(&self, path: &Path, buf: &mut Vec<u8>) -> io::Result<()> {
        let mut file = File::open(path)?;
        let len = file.metadata()?.len();
        buf.clear();
        buf.reserve(len as usize);
        file.read_to_end(buf)?;
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl BackendFile for FsFile {
    fn append(&mut self, data: &[u8]) -> io::Result<()> {
        match self.file.write_all_at(data, self.len) {
            Ok(()) => {
                self.len += data.len() as u64;
                Ok(())
            }
            Err(e) => {
                if let Ok(meta) = self.file.metadata() {
                    self.len = meta.len();
                }
                Err(e)
            }
        }
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn truncate(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        self.len = len;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}
