//! The backup a writing run makes before it renames anything, and the way back.
//!
//! A backup is a sibling directory of the store, `<store>.pkcscca-backup.<UTC time>`,
//! laid out like the store (`NVTOK.DAT`, `MK_SO`, `MK_USER`, `TOK_OBJ/...`). Each file
//! is a hard link to the store's file: nothing is copied, and the files the run then
//! replaces (by renaming a new file over them) keep their old content in the backup.
//! The files the run does not replace stay shared with the store: where openCryptoki
//! later rewrites one of them in place (it writes object files and `NVTOK.DAT` that
//! way, `usr/lib/common/loadsave.c`), the backup follows. So a backup puts back exactly
//! what the run changed, which is what [`restore_plan`] compares; an archive
//! independent of the store is `tar` or `cp -a`. Where a hard link is impossible
//! (the backup directory on another filesystem), the file is copied with its owner,
//! group and mode. The directories get the store's owner and group and its mode
//! without any access for others. Everything is flushed to disk before the call
//! returns, so a crash during the commit that follows leaves the backup complete.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use super::atomic::is_temp_name;
use super::error::StoreError;
use super::{ObjectName, TOK_OBJ};

/// The marker in a backup directory's name, between the store's name and the time.
pub const BACKUP_MARKER: &str = ".pkcscca-backup.";

/// A backup made by [`snapshot`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Backup {
    /// The backup directory.
    pub dir: PathBuf,
    /// Files hard-linked.
    pub linked: usize,
    /// Files copied (a hard link was impossible).
    pub copied: usize,
}

/// `YYYYMMDDTHHMMSSZ` for `t` (UTC).
pub fn utc_stamp(t: SystemTime) -> String {
    let secs = t.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
    let days = i64::try_from(secs / 86_400).unwrap_or(0);
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (the proleptic Gregorian calendar).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}{month:02}{day:02}T{:02}{:02}{:02}Z",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

/// Where the backup of `store` made at `t` goes: a sibling of the store's real
/// directory (symlinks resolved, so the hard links can be made), with `.N` added when
/// that name is taken.
pub fn backup_dir_for(store: &Path, t: SystemTime) -> Result<PathBuf, StoreError> {
    let real = fs::canonicalize(store).map_err(|e| StoreError::io(store, "cannot resolve", e))?;
    let name = real
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_else(|| "store".into());
    let parent = real.parent().unwrap_or(Path::new("/"));
    let base = format!("{name}{BACKUP_MARKER}{}", utc_stamp(t));
    let mut candidate = parent.join(&base);
    let mut n = 1u32;
    while fs::symlink_metadata(&candidate).is_ok() {
        n = n.saturating_add(1);
        candidate = parent.join(format!("{base}.{n}"));
    }
    Ok(candidate)
}

/// Backs up the store in `store` into `backup` (a path from [`backup_dir_for`]).
pub fn snapshot(store: &Path, backup: &Path) -> Result<Backup, StoreError> {
    let store_md = dir_metadata(store)?;
    let tok = store.join(TOK_OBJ);
    let tok_md = dir_metadata(&tok)?;
    let mut made = Backup {
        dir: backup.to_path_buf(),
        linked: 0,
        copied: 0,
    };
    let r = (|| {
        make_private_dir(backup)?;
        let backup_tok = backup.join(TOK_OBJ);
        make_private_dir(&backup_tok)?;
        for (from_dir, to_dir) in [(store, backup), (tok.as_path(), backup_tok.as_path())] {
            for name in regular_files(from_dir)? {
                let (from, to) = (from_dir.join(&name), to_dir.join(&name));
                if link_or_copy(&from, &to)? {
                    made.linked += 1;
                } else {
                    made.copied += 1;
                }
            }
        }
        finish_dir(&backup_tok, &tok_md)?;
        finish_dir(backup, &store_md)?;
        sync_dir(&backup_tok)?;
        sync_dir(backup)?;
        sync_dir(backup.parent().unwrap_or(Path::new("/")))
    })();
    if r.is_err() {
        // Nothing half-made stays behind.
        let _ = fs::remove_dir_all(backup);
    }
    r.map(|()| made)
}

fn dir_metadata(dir: &Path) -> Result<fs::Metadata, StoreError> {
    let md = fs::metadata(dir).map_err(|e| StoreError::io(dir, "cannot stat", e))?;
    if md.is_dir() {
        Ok(md)
    } else {
        Err(StoreError::Invalid {
            file: dir.into(),
            what: "not a directory",
        })
    }
}

fn make_private_dir(dir: &Path) -> Result<(), StoreError> {
    fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| StoreError::io(dir, "cannot create backup directory", e))
}

/// The owner, group and mode (without access for others) of `like`.
fn finish_dir(dir: &Path, like: &fs::Metadata) -> Result<(), StoreError> {
    std::os::unix::fs::chown(dir, Some(like.uid()), Some(like.gid()))
        .or_else(|e| {
            // Not root: keep our own owner, as long as the group can be set.
            std::os::unix::fs::chown(dir, None, Some(like.gid())).map_err(|_| e)
        })
        .or_else(|e| match e.kind() {
            io::ErrorKind::PermissionDenied => Ok(()),
            _ => Err(e),
        })
        .map_err(|e| StoreError::io(dir, "cannot set owner of backup directory", e))?;
    let mode = like.mode() & 0o7770;
    fs::set_permissions(dir, Permissions::from_mode(mode))
        .map_err(|e| StoreError::io(dir, "cannot set mode of backup directory", e))
}

/// Names of the regular files in `dir` (not our temp files), sorted.
fn regular_files(dir: &Path) -> Result<Vec<String>, StoreError> {
    let mut names = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| StoreError::io(dir, "cannot list directory", e))?;
    for entry in rd {
        let entry = entry.map_err(|e| StoreError::io(dir, "cannot list directory", e))?;
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let md = entry
            .metadata()
            .map_err(|e| StoreError::io(entry.path(), "cannot stat", e))?;
        if md.file_type().is_file() && !is_temp_name(&name) {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Hard-links `from` at `to`; copies it (owner, group, mode kept) where a link is
/// impossible. Returns whether it linked.
fn link_or_copy(from: &Path, to: &Path) -> Result<bool, StoreError> {
    match fs::hard_link(from, to) {
        Ok(()) => return Ok(true),
        Err(e)
            if e.kind() == io::ErrorKind::CrossesDevices
                || e.raw_os_error() == Some(rustix::io::Errno::PERM.raw_os_error()) => {}
        Err(e) => return Err(StoreError::io(from, "cannot link into the backup", e)),
    }
    let md = fs::symlink_metadata(from).map_err(|e| StoreError::io(from, "cannot stat", e))?;
    let bytes = fs::read(from).map_err(|e| StoreError::io(from, "cannot read", e))?;
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)
        .map_err(|e| StoreError::io(to, "cannot create backup file", e))?;
    let io = |what| move |e| StoreError::io(to, what, e);
    std::io::Write::write_all(&mut f, &bytes).map_err(io("cannot write backup file"))?;
    let _ = std::os::unix::fs::fchown(&f, Some(md.uid()), Some(md.gid()));
    f.set_permissions(Permissions::from_mode(md.mode() & 0o7777))
        .map_err(io("cannot set mode of backup file"))?;
    f.sync_all().map_err(io("cannot fsync backup file"))?;
    Ok(false)
}

fn sync_dir(dir: &Path) -> Result<(), StoreError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, "cannot fsync directory", e))
}

/// What putting `backup` back into `store` would do.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[cfg_attr(not(feature = "testkit"), allow(dead_code))] // until `-m restore` uses it
pub struct RestorePlan {
    /// Object files whose backup content differs from the store's, to be put back.
    pub objects: Vec<ObjectName>,
}

/// Compares `backup` with `store`: the object files that differ, in name order.
/// Refuses when the two do not hold the same token (`NVTOK.DAT`, `MK_SO`, `MK_USER` or
/// the object list `OBJ.IDX` differ: the store changed in other ways since the
/// backup, and putting objects back would lose that), or when the backup lacks an
/// object the store lists.
#[cfg_attr(not(feature = "testkit"), allow(dead_code))] // until `-m restore` uses it
pub fn restore_plan(store: &Path, backup: &Path) -> Result<RestorePlan, StoreError> {
    for name in [super::NVTOK_DAT, super::MK_SO, super::MK_USER] {
        same_or_absent_in_both(&store.join(name), &backup.join(name))?;
    }
    let idx = Path::new(TOK_OBJ).join(super::OBJ_IDX);
    same_or_absent_in_both(&store.join(&idx), &backup.join(&idx))?;
    let index_bytes = match fs::read(backup.join(&idx)) {
        Ok(b) => b,
        Err(e) if e.kind() == io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(StoreError::io(backup.join(&idx), "cannot read", e)),
    };
    let names = super::index::parse(&index_bytes)
        .map_err(|super::index::BadLine(line)| StoreError::BadName {
            file: backup.join(&idx),
            line,
        })?
        .names;
    let mut plan = RestorePlan::default();
    for name in names {
        let rel = Path::new(TOK_OBJ).join(name.as_str());
        let theirs = read_file(&backup.join(&rel))?;
        let ours = match fs::read(store.join(&rel)) {
            Ok(b) => Some(b),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(StoreError::io(store.join(&rel), "cannot read", e)),
        };
        if ours.as_deref() != Some(theirs.as_slice()) {
            plan.objects.push(name);
        }
    }
    plan.objects.sort();
    Ok(plan)
}

#[cfg_attr(not(feature = "testkit"), allow(dead_code))] // until `-m restore` uses it
fn read_file(path: &Path) -> Result<Vec<u8>, StoreError> {
    let md = fs::symlink_metadata(path).map_err(|e| StoreError::io(path, "cannot stat", e))?;
    if !md.is_file() {
        return Err(StoreError::Invalid {
            file: path.into(),
            what: "not a regular file",
        });
    }
    fs::read(path).map_err(|e| StoreError::io(path, "cannot read", e))
}

#[cfg_attr(not(feature = "testkit"), allow(dead_code))] // until `-m restore` uses it
fn same_or_absent_in_both(store_file: &Path, backup_file: &Path) -> Result<(), StoreError> {
    let a = fs::read(store_file).ok();
    let b = fs::read(backup_file).ok();
    if a == b {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            file: store_file.into(),
            what: "differs from the backup's: the token changed in other ways since the \
                   backup, so its objects cannot be put back",
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_stamps_are_civil_time() {
        assert_eq!(utc_stamp(UNIX_EPOCH), "19700101T000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(951_782_400); // 2000-02-29
        assert_eq!(utc_stamp(t), "20000229T000000Z");
        let t = UNIX_EPOCH + Duration::from_secs(1_796_601_599); // 2026-12-06 23:59:59
        assert_eq!(utc_stamp(t), "20261206T235959Z");
    }
}
