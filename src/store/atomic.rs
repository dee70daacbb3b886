//! All-or-nothing replacement of a batch of files in one directory.
//!
//! For each file: create `.<NAME>.pkcscca.tmp` next to it exclusively
//! (`create_new`, so an existing path or symlink there is never followed),
//! give it the original's owner, group and mode, write and fsync it. Only when
//! every temp file is complete are they renamed over their originals, then the
//! directory is fsynced once. A failure before the renames removes our temp
//! files and leaves every original untouched; a failure during the renames
//! leaves each file either old or new (never torn) and is reported as such.
//! Nothing is ever truncated in place. Symlinked targets or directories are
//! refused. openCryptoki only reads names listed in OBJ.IDX, so it never sees
//! our temp files.

use std::fs::{self, File, OpenOptions, Permissions};
use std::io::Write;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::error::StoreError;

/// Suffix of our temporary files.
pub const TEMP_SUFFIX: &str = ".pkcscca.tmp";

/// Mode of files openCryptoki creates (spec §9.7).
pub(crate) const FILE_MODE: u32 = 0o660;

/// One file to write.
pub(crate) struct Replacement {
    /// Final path (inside the batch directory).
    pub(crate) target: PathBuf,
    /// New content.
    pub(crate) bytes: Vec<u8>,
    /// Whether the target may be absent (then: mode 0660, group of the directory).
    pub(crate) may_be_new: bool,
}

/// The temp path for `target`: `<dir>/.<file name>.pkcscca.tmp`.
pub fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(format!(".{name}{TEMP_SUFFIX}"))
}

/// Whether `name` is one of our temp file names.
pub fn is_temp_name(name: &str) -> bool {
    name.len() > 1 + TEMP_SUFFIX.len() && name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// Removes temp files of ours left in `dir` by an interrupted run; returns
/// the removed paths. Symlinks with our names are removed too (never followed).
pub fn remove_stale_temps(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut removed = Vec::new();
    let rd = fs::read_dir(dir).map_err(|e| StoreError::io(dir, "cannot list directory", e))?;
    for ent in rd {
        let ent = ent.map_err(|e| StoreError::io(dir, "cannot list directory", e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if !is_temp_name(name) {
            continue;
        }
        let p = ent.path();
        let md = fs::symlink_metadata(&p).map_err(|e| StoreError::io(&p, "cannot stat", e))?;
        if md.is_dir() {
            continue;
        }
        fs::remove_file(&p).map_err(|e| StoreError::io(&p, "cannot remove stale temp file", e))?;
        removed.push(p);
    }
    Ok(removed)
}

/// Refuses a symlink or non-directory at `dir`.
pub(crate) fn check_dir(dir: &Path) -> Result<fs::Metadata, StoreError> {
    let md = fs::symlink_metadata(dir).map_err(|e| StoreError::io(dir, "cannot stat", e))?;
    if md.file_type().is_symlink() {
        return Err(StoreError::Symlink { file: dir.into() });
    }
    if !md.is_dir() {
        return Err(StoreError::Invalid {
            file: dir.into(),
            what: "not a directory",
        });
    }
    Ok(md)
}

/// Ownership and permissions a new file should get.
struct Owner {
    uid: u32,
    gid: u32,
    mode: u32,
}

fn target_owner(r: &Replacement, dir_md: &fs::Metadata) -> Result<Owner, StoreError> {
    match fs::symlink_metadata(&r.target) {
        Ok(md) if md.file_type().is_symlink() => Err(StoreError::Symlink {
            file: r.target.clone(),
        }),
        Ok(md) if !md.is_file() => Err(StoreError::Invalid {
            file: r.target.clone(),
            what: "not a regular file",
        }),
        Ok(md) => Ok(Owner {
            uid: md.uid(),
            gid: md.gid(),
            mode: md.mode() & 0o7777,
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound && r.may_be_new => Ok(Owner {
            uid: u32::MAX,
            gid: dir_md.gid(),
            mode: FILE_MODE,
        }),
        Err(e) => Err(StoreError::io(&r.target, "cannot stat", e)),
    }
}

fn write_temp(tmp: &Path, r: &Replacement, owner: &Owner) -> Result<(), StoreError> {
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(tmp)
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                match fs::symlink_metadata(tmp) {
                    Ok(md) if md.file_type().is_symlink() => {
                        StoreError::Symlink { file: tmp.into() }
                    }
                    _ => StoreError::Invalid {
                        file: tmp.into(),
                        what: "a temp file of an earlier run exists; remove it first",
                    },
                }
            } else {
                StoreError::io(tmp, "cannot create temp file", e)
            }
        })?;
    let res = fill_temp(&mut f, tmp, r, owner);
    if res.is_err() {
        drop(f);
        let _ = fs::remove_file(tmp);
    }
    res
}

fn fill_temp(f: &mut File, tmp: &Path, r: &Replacement, owner: &Owner) -> Result<(), StoreError> {
    let io = |what| move |e| StoreError::io(tmp, what, e);
    let md = f.metadata().map_err(io("cannot stat temp file"))?;
    let uid = (owner.uid != u32::MAX && owner.uid != md.uid()).then_some(owner.uid);
    let gid = (owner.gid != md.gid()).then_some(owner.gid);
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::fchown(&*f, uid, gid)
            .map_err(io("cannot set owner/group of temp file"))?;
    }
    f.set_permissions(Permissions::from_mode(owner.mode))
        .map_err(io("cannot set mode of temp file"))?;
    f.write_all(&r.bytes)
        .map_err(io("cannot write temp file"))?;
    f.sync_all().map_err(io("cannot fsync temp file"))?;
    Ok(())
}

/// Replaces every file of `batch` (all in `dir`) as described in the module docs.
pub(crate) fn replace_all(dir: &Path, batch: &[Replacement]) -> Result<(), StoreError> {
    let dir_md = check_dir(dir)?;
    let mut plans = Vec::with_capacity(batch.len());
    for r in batch {
        if r.target.parent() != Some(dir) {
            return Err(StoreError::Invalid {
                file: r.target.clone(),
                what: "not inside the directory being committed",
            });
        }
        if plans
            .iter()
            .any(|(p, _): &(PathBuf, Owner)| temp_path(&r.target) == *p)
        {
            return Err(StoreError::Invalid {
                file: r.target.clone(),
                what: "file listed twice in one commit",
            });
        }
        plans.push((temp_path(&r.target), target_owner(r, &dir_md)?));
    }
    let mut created: Vec<&Path> = Vec::new();
    for (r, (tmp, owner)) in batch.iter().zip(&plans) {
        // write_temp removes its own file on failure; undo the earlier ones.
        if let Err(e) = write_temp(tmp, r, owner) {
            for t in &created {
                let _ = fs::remove_file(t);
            }
            return Err(e);
        }
        created.push(tmp);
    }
    for (i, (r, (tmp, _))) in batch.iter().zip(&plans).enumerate() {
        if let Err(e) = fs::rename(tmp, &r.target) {
            for (t, _) in plans.iter().skip(i) {
                let _ = fs::remove_file(t);
            }
            let err = StoreError::io(&r.target, "cannot rename temp file over original", e);
            return Err(if i == 0 {
                err
            } else {
                StoreError::PartialCommit {
                    file: r.target.clone(),
                    renamed: i,
                    total: batch.len(),
                    source: Box::new(err),
                }
            });
        }
    }
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| StoreError::io(dir, "cannot fsync directory", e))?;
    Ok(())
}
