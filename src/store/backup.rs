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

use super::atomic::{is_temp_name, replace_all, Replacement};
use super::error::StoreError;
use super::fsio::FileKind;
use super::{ObjectName, TokenStore, MK_SO, MK_USER, NVTOK_DAT, TOK_OBJ};

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
pub struct RestorePlan {
    /// Object files whose backup content differs from the store's, to be put back.
    pub objects: Vec<ObjectName>,
}

/// The `what` of the [`StoreError::Invalid`] [`restore_plan`] refuses with.
pub const CHANGED_SINCE_BACKUP: &str = "differs from the backup's: the token changed in other \
     ways since the backup, so its objects cannot be put back";

/// The `what` of the [`StoreError::Invalid`] [`restore_plan`] refuses an object with
/// that was created after the backup.
pub const CREATED_SINCE_BACKUP: &str = "was created after the backup: the token changed in \
     other ways since the backup, so its objects cannot be put back";

/// Compares the store `store` with its backup `backup` (opened as a store, so every
/// file is read as the store's files are: no symbolic link, FIFO or oversized file):
/// the object files that differ, in name order. Refuses when the two do not hold the
/// same token (`NVTOK.DAT`, `MK_SO`, `MK_USER` or the object list `OBJ.IDX` differ, or
/// the store holds an object created after the backup: the store changed in other
/// ways since the backup, and putting objects back would lose that), or when the
/// backup lacks an object it lists.
pub fn restore_plan(store: &TokenStore, backup: &TokenStore) -> Result<RestorePlan, StoreError> {
    for (name, kind) in [
        (NVTOK_DAT, FileKind::TokenData),
        (MK_SO, FileKind::MasterKey),
        (MK_USER, FileKind::MasterKey),
    ] {
        same_or_absent_in_both(
            &store.dir().join(name),
            present(store.root.read_file(name, kind))?,
            present(backup.root.read_file(name, kind))?,
        )?;
    }
    let index = present(backup.read_index_bytes())?;
    same_or_absent_in_both(
        &store.index_path(),
        present(store.read_index_bytes())?,
        index.clone(),
    )?;
    let names = super::index::parse(&index.unwrap_or_default())
        .map_err(|super::index::BadLine(line)| StoreError::BadName {
            file: backup.index_path(),
            line,
        })?
        .names;
    let mut plan = RestorePlan::default();
    for name in names {
        let ours = present(store.read_object_bytes(name))?;
        let theirs = match backup.read_object_bytes(name) {
            // openCryptoki appends a new object's name to OBJ.IDX in place
            // (`usr/lib/common/loadsave.c: save_token_object()`), so the backup's
            // linked index lists an object created after it, which it lacks.
            Err(StoreError::Missing { .. }) if ours.is_some() => {
                return Err(StoreError::Invalid {
                    file: store.object_path(name),
                    what: CREATED_SINCE_BACKUP,
                })
            }
            r => r?,
        };
        if ours.as_deref() != Some(theirs.as_slice()) {
            plan.objects.push(name);
        }
    }
    plan.objects.sort();
    Ok(plan)
}

/// Puts the object files of `plan` back from `backup` into `store` in one atomic batch,
/// with the commit protocol of a migration ([`super::atomic`]: each file keeps the
/// owner, group and mode of the store's file it replaces). Returns how many files were
/// written. The caller holds the token lock, removed stale temp files first, and
/// removes the token's shared memory segment after.
pub fn put_back(
    store: &TokenStore,
    backup: &TokenStore,
    plan: &RestorePlan,
) -> Result<usize, StoreError> {
    let mut batch = Vec::with_capacity(plan.objects.len());
    for name in &plan.objects {
        batch.push(Replacement {
            name: name.as_str().to_string(),
            bytes: backup.read_object_bytes(*name)?,
            // An object the index lists but whose file is gone is put back as
            // openCryptoki creates files.
            may_be_new: true,
            expect: None,
        });
    }
    if !batch.is_empty() {
        replace_all(store.tok()?, &batch)?;
    }
    Ok(batch.len())
}

/// The bytes of a read, `None` when the file is absent.
fn present(read: Result<Vec<u8>, StoreError>) -> Result<Option<Vec<u8>>, StoreError> {
    match read {
        Ok(b) => Ok(Some(b)),
        Err(StoreError::Missing { .. } | StoreError::MissingIndex { .. }) => Ok(None),
        Err(e) => Err(e),
    }
}

fn same_or_absent_in_both(
    store_file: &Path,
    ours: Option<Vec<u8>>,
    theirs: Option<Vec<u8>>,
) -> Result<(), StoreError> {
    if ours == theirs {
        Ok(())
    } else {
        Err(StoreError::Invalid {
            file: store_file.into(),
            what: CHANGED_SINCE_BACKUP,
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
