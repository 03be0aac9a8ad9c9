//! One process per data directory: two writing one log would corrupt it.

use std::fs::File;
use std::path::Path;

use crate::StoreError;

/// The name of the lock file in a locked directory.
pub const LOCK_FILE: &str = "LOCK";

/// An exclusive lock (flock) on a data directory's `LOCK` file. It is released when dropped, and by
/// the OS when the process ends, also on `kill -9`, so a crash never leaves a directory locked.
#[derive(Debug)]
pub struct DirLock {
    file: File,
}

impl DirLock {
    /// The open `LOCK` file, for a holder that keeps it as a plain file: the lock lasts as long as it.
    pub fn into_file(self) -> File {
        self.file
    }
}

/// Creates `dir` if needed and locks it for this process. [`StoreError::Locked`] when another
/// process (or another handle in this one) holds it; [`StoreError::Io`], naming the path, when the
/// directory or its lock file cannot be created or locked.
pub fn lock_dir(dir: &Path) -> Result<DirLock, StoreError> {
    let io = |what: &str, path: &Path, e: std::io::Error| {
        StoreError::Io(format!("{what} {}: {e}", path.display()))
    };
    std::fs::create_dir_all(dir).map_err(|e| io("cannot create", dir, e))?;
    let path = dir.join(LOCK_FILE);
    let file = File::create(&path).map_err(|e| io("cannot create", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock { file }),
        Err(std::fs::TryLockError::WouldBlock) => Err(StoreError::Locked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(io("cannot lock", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_locked_directory_is_refused_until_released() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("data");
        let first = lock_dir(&sub).unwrap();
        let err = lock_dir(&sub).unwrap_err();
        assert_eq!(err, StoreError::Locked(sub.clone()));
        let msg = err.to_string();
        assert!(
            msg.contains(&sub.display().to_string()) && msg.contains("in use"),
            "{msg}"
        );
        drop(first);
        lock_dir(&sub).unwrap();
    }

    #[test]
    fn an_unusable_directory_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("not-a-dir");
        std::fs::write(&file, b"x").unwrap();
        let msg = lock_dir(&file).unwrap_err().to_string();
        assert!(msg.contains(&file.display().to_string()), "{msg}");
    }
}
