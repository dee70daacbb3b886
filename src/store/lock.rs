//! The per-token process lock and detection of running openCryptoki users.
//!
//! openCryptoki serialises access to a data store with `flock(LOCK_EX)` on
//! `<lock root>/<N>/LCK..<N>` (N = tokname or the STDLL's default subdir),
//! creating the directory (0770) and file (0440) with the token group if
//! missing (spec §9.1; mirrors `usr/lib/common/utility.c: CreateXProcLock()`).
//! `std::fs::File::lock` is `flock(2)` on Linux, so it interacts with
//! openCryptoki's lock. The lock is released when [`TokenLock`] is dropped.
//!
//! Offline changes are only safe with no openCryptoki process attached
//! (spec §9.6): [`pkcsslotd_running`] and [`processes_using_opencryptoki`]
//! let the caller refuse to run.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::StoreError;
use crate::config::{SystemPaths, TokenLocation};

/// Mode of the lock directory (spec §9.1).
const LOCK_DIR_MODE: u32 = 0o770;
/// Mode of the lock file (spec §9.1).
const LOCK_FILE_MODE: u32 = 0o440;

/// An exclusive hold on a token's lock file.
#[derive(Debug)]
pub struct TokenLock {
    file: File,
    path: PathBuf,
}

impl TokenLock {
    /// Takes the exclusive lock at `path`, creating the directory and file
    /// with openCryptoki's modes (and group `gid`, if given) when missing.
    /// Blocks until the lock is free.
    pub fn acquire(path: &Path, gid: Option<u32>) -> Result<TokenLock, StoreError> {
        let file = open_lock_file(path, gid)?;
        file.lock()
            .map_err(|e| StoreError::io(path, "cannot lock", e))?;
        Ok(TokenLock {
            file,
            path: path.to_path_buf(),
        })
    }

    /// Like [`acquire`](Self::acquire) but fails at once if another process holds it.
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

/// The default token group of openCryptoki (`--with-pkcs-group`).
pub const DEFAULT_TOKEN_GROUP: &str = "pkcs11";

/// Takes the lock of a configured token: its lock file, created if missing
/// in the slot's `usergroup` (else `pkcs11`), when that group exists.
pub fn lock_token(loc: &TokenLocation, paths: &SystemPaths) -> Result<TokenLock, StoreError> {
    let group = loc.usergroup.as_deref().unwrap_or(DEFAULT_TOKEN_GROUP);
    TokenLock::acquire(&loc.lock_file, group_gid(&paths.group_file, group))
}

/// The gid of group `name` from an `/etc/group`-format file, if listed.
pub fn group_gid(group_file: &Path, name: &str) -> Option<u32> {
    let text = fs::read_to_string(group_file).ok()?;
    text.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == name).then_some(())?;
        f.next()?;
        f.next()?.parse().ok()
    })
}

/// The pid of a running pkcsslotd, if any of the pid files names a live one.
///
/// Mirrors upstream tools: a pid file exists and the first word of
/// `/proc/<pid>/cmdline` contains `pkcsslotd` (spec §9.2).
pub fn pkcsslotd_running(paths: &SystemPaths) -> Option<u32> {
    paths.pkcsslotd_pid_files.iter().find_map(|pf| {
        let text = fs::read_to_string(pf).ok()?;
        let pid: u32 = text.split_whitespace().next()?.parse().ok()?;
        let cmdline = fs::read(paths.proc_root.join(pid.to_string()).join("cmdline")).ok()?;
        let first = cmdline.split(|b| *b == 0).next()?;
        let first = String::from_utf8_lossy(first);
        first
            .split_whitespace()
            .next()
            .is_some_and(|w| w.contains("pkcsslotd"))
            .then_some(pid)
    })
}

/// Library names whose presence in a process's memory map means it uses openCryptoki.
pub const OPENCRYPTOKI_MAP_MARKERS: &[&str] = &[
    "libopencryptoki",
    "PKCS11_API",
    "libpkcs11_cca",
    "libpkcs11_ep11",
    "libpkcs11_ica",
    "libpkcs11_sw",
    "libpkcs11_tpm",
    "libpkcs11_icsf",
];

/// A process that has openCryptoki libraries mapped.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessInfo {
    /// Process id.
    pub pid: u32,
    /// Its `comm` name.
    pub name: String,
}

/// Other processes with an openCryptoki library mapped (`<proc>/*/maps`).
/// Processes we cannot inspect are skipped; our own process is excluded.
pub fn processes_using_opencryptoki(paths: &SystemPaths) -> Vec<ProcessInfo> {
    let me = std::process::id();
    let Ok(rd) = fs::read_dir(&paths.proc_root) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for ent in rd.flatten() {
        let Some(pid) = ent.file_name().to_str().and_then(|s| s.parse::<u32>().ok()) else {
            continue;
        };
        if pid == me {
            continue;
        }
        let Ok(maps) = fs::read(ent.path().join("maps")) else {
            continue;
        };
        let maps = String::from_utf8_lossy(&maps);
        if OPENCRYPTOKI_MAP_MARKERS.iter().any(|m| maps.contains(m)) {
            let name = fs::read_to_string(ent.path().join("comm"))
                .map(|s| s.trim_end().to_string())
                .unwrap_or_default();
            out.push(ProcessInfo { pid, name });
        }
    }
    out.sort_by_key(|p| p.pid);
    out
}

/// Owner and group of a path (for callers that want to check or copy them).
pub fn owner_of(path: &Path) -> Result<(u32, u32), StoreError> {
    let md = fs::symlink_metadata(path).map_err(|e| StoreError::io(path, "cannot stat", e))?;
    Ok((md.uid(), md.gid()))
}
