//! The per-token process lock.
//!
//! openCryptoki serialises access to a data store with `flock(LOCK_EX)` on
//! `<lock root>/<N>/LCK..<N>` (N = tokname or the STDLL's default subdir),
//! creating the directory (0770) and file (0440) with the token group if
//! missing (mirrors `usr/lib/common/utility.c: CreateXProcLock()`).
//! `std::fs::File::lock` is `flock(2)` on Linux, so it interacts with
//! openCryptoki's lock. The lock is released when [`TokenLock`] is dropped.
//!
//! Offline changes are only safe with no openCryptoki process attached: see
//! `crate::host` for the checks of the machine.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::StoreError;

/// Mode of the lock directory (`CreateXProcLock()`).
const LOCK_DIR_MODE: u32 = 0o770;
/// Mode of the lock file (`MODE_BITS` in `usr/include/slotmgr.h`).
const LOCK_FILE_MODE: u32 = 0o440;

/// An exclusive hold on a token's lock file.
#[derive(Debug)]
pub struct TokenLock {
    file: File,
    // Read by the tests (`path`), which check where the lock was taken.
    #[cfg_attr(not(feature = "testkit"), allow(dead_code))]
    path: PathBuf,
}

impl TokenLock {
    /// Takes the exclusive lock at `path`, creating the directory and file
    /// with openCryptoki's modes (and group `gid`, if given) when missing.
    /// Blocks until the lock is free.
    #[cfg(feature = "testkit")]
    pub fn acquire(path: &Path, gid: Option<u32>) -> Result<TokenLock, StoreError> {
        let file = open_lock_file(path, gid)?;
        file.lock()
            .map_err(|e| StoreError::io(path, "cannot lock", e))?;
        Ok(TokenLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Like `acquire` (test kit) but fails at once if another process holds it.
    pub fn try_acquire(path: &Path, gid: Option<u32>) -> Result<Option<TokenLock>, StoreError> {
        let file = open_lock_file(path, gid)?;
        match file.try_lock() {
            Ok(()) => Ok(Some(TokenLock {
                file,
                path: path.to_path_buf(),
            })),
            Err(std::fs::TryLockError::WouldBlock) => Ok(None),
            Err(std::fs::TryLockError::Error(e)) => Err(StoreError::io(path, "cannot lock", e)),
        }
    }

    /// The lock file.
    #[cfg(feature = "testkit")]
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for TokenLock {
    fn drop(&mut self) {
        let _ = self.file.unlock();
    }
}

fn open_lock_file(path: &Path, gid: Option<u32>) -> Result<File, StoreError> {
    if let Some(dir) = path.parent() {
        if fs::symlink_metadata(dir).is_err() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(LOCK_DIR_MODE)
                .create(dir)
                .map_err(|e| StoreError::io(dir, "cannot create lock directory", e))?;
            // The umask must not narrow openCryptoki's mode.
            fs::set_permissions(dir, fs::Permissions::from_mode(LOCK_DIR_MODE))
                .map_err(|e| StoreError::io(dir, "cannot set mode of lock directory", e))?;
            if let Some(g) = gid {
                std::os::unix::fs::chown(dir, None, Some(g))
                    .map_err(|e| StoreError::io(dir, "cannot set group of lock directory", e))?;
            }
        }
    }
    if fs::symlink_metadata(path).is_err() {
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(LOCK_FILE_MODE)
            .open(path)
        {
            Ok(f) => {
                f.set_permissions(fs::Permissions::from_mode(LOCK_FILE_MODE))
                    .map_err(|e| StoreError::io(path, "cannot set mode of lock file", e))?;
                if let Some(g) = gid {
                    std::os::unix::fs::fchown(&f, None, Some(g))
                        .map_err(|e| StoreError::io(path, "cannot set group of lock file", e))?;
                }
            }
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(StoreError::io(path, "cannot create lock file", e)),
        }
    }
    File::open(path).map_err(|e| StoreError::io(path, "cannot open lock file", e))
}
