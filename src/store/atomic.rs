//! All-or-nothing replacement of a batch of files in one directory.
//!
//! Every name is taken relative to the directory's descriptor (`StoreDir`, `fsio.rs`), so a
//! symbolic link swapped in for the directory or its path after it was opened
//! changes nothing. The commit protocol:
//!
//! 1. for each file, create `.<NAME>.pkcscca.tmp` next to it exclusively
//!    (`O_CREAT | O_EXCL | O_NOFOLLOW`: an existing path or symbolic link there is
//!    never followed nor replaced), give it the original's owner, group and mode,
//!    and write it;
//! 2. one barrier, once every temp file is written: `syncfs(2)` on the store's
//!    filesystem, so that every temp file's data and inode
//!    (size, owner, mode) are on stable storage before any of them takes a
//!    target's name;
//! 3. rename every temp file over its original (`renameat` on the directory
//!    descriptor);
//! 4. one `fsync` of the directory, so the renames themselves are durable.
//!
//! A run does step 1 file by file as each object's new content is known (`stage`,
//! through `TokenStore::staging`: the keys mode writes a key's new object file from
//! the thread that got the card's answer, while the card works on other keys), and
//! steps 2 to 4 once, at the end (`finish_staged`, renames in object name order).
//! `replace_all` is the same protocol for a batch known at once (`-m restore`).
//!
//! A failure before the renames removes our temp files and leaves every original
//! untouched; a failure during the renames leaves each file either old or new
//! (never torn) and is reported as such ([`StoreError::PartialCommit`]). A crash at
//! any point leaves each target old or new as well: a rename only ever installs a
//! file that the barrier made durable, and a rename is atomic. Temp files a crash
//! leaves behind are removed by the next run (`remove_stale_temps`). Nothing is
//! ever truncated in place. openCryptoki only reads names listed in OBJ.IDX, so it
//! never sees our temp files.
//!
//! Why `syncfs` and not one `fsync` per file: `cargo bench --bench commit_barrier`
//! times a whole commit of 2000 files of 1 KiB with each barrier. On this project's
//! build machine (2 cores shared with other builds, ext4 on a virtual disk; three
//! runs of 5 to 9 rounds) the medians were 1.56 to 1.71 s with one `syncfs` (best
//! round 0.27 s), 1.64 to 1.68 s with an `fdatasync` of every temp file issued from
//! 8 threads at once so the filesystem can batch them into shared journal commits
//! (best 0.56 s), and 1.95 to 2.07 s with one `fdatasync` after another (best
//! 1.34 s). One `syncfs` and the parallel `fdatasync` are within the noise of each
//! other (the best rounds were `syncfs`'s), the serial one is clearly slower; `syncfs`
//! is chosen because unlike `fdatasync` it also makes the owner and mode we set
//! durable. Its cost is that it flushes other dirty data of the
//! same filesystem too; on a store filesystem shared with a busy writer, parallel
//! `fdatasync` would be the alternative with the same durability for the data.

use std::fs::{File, Permissions};
use std::io::Write;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rustix::fs::{FileType, Stat};
use rustix::io::Errno;

use super::error::StoreError;
use super::fsio::{errno_error, type_name, FileIdentity, StoreDir};

/// Suffix of our temporary files.
pub const TEMP_SUFFIX: &str = ".pkcscca.tmp";

/// Mode of files openCryptoki creates (`loadsave.c: set_perm()`).
pub(crate) const FILE_MODE: u32 = 0o660;

/// One file to write.
pub(crate) struct Replacement {
    /// The file's name in the batch directory (no `/`).
    pub(crate) name: String,
    /// New content.
    pub(crate) bytes: Vec<u8>,
    /// Whether the target may be absent (then: mode 0660, group of the directory).
    pub(crate) may_be_new: bool,
    /// What the target must still be (as loaded); otherwise the commit is refused
    /// with [`StoreError::ChangedOnDisk`] before anything is written.
    pub(crate) expect: Option<FileIdentity>,
}

/// How the temp files are made durable before the renames (see the module docs).
#[doc(hidden)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
// Batch commits with a choice of barrier: the test kit's store creation and
// benches/commit_barrier.rs, which compares them; runs stage and finish instead.
#[cfg(feature = "testkit")]
pub enum Barrier {
    /// One `syncfs(2)` of the directory's filesystem (the default).
    SyncFs,
    /// `fdatasync(2)` of every temp file, issued from several threads at once.
    FdatasyncParallel,
    /// `fdatasync(2)` of every temp file, one after another (for comparison).
    FdatasyncSerial,
}

#[cfg(feature = "testkit")]
impl Barrier {
    /// The barrier [`TokenStore::commit`](super::TokenStore::commit) uses.
    pub const DEFAULT: Barrier = Barrier::SyncFs;
}

/// The temp path for `target`: `<dir>/.<file name>.pkcscca.tmp`.
#[cfg(feature = "testkit")]
pub fn temp_path(target: &Path) -> PathBuf {
    let name = target
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    target.with_file_name(temp_name(&name))
}

/// The temp file name for the file `name`.
pub fn temp_name(name: &str) -> String {
    format!(".{name}{TEMP_SUFFIX}")
}

/// Whether `name` is one of our temp file names.
pub fn is_temp_name(name: &str) -> bool {
    name.len() > 1 + TEMP_SUFFIX.len() && name.starts_with('.') && name.ends_with(TEMP_SUFFIX)
}

/// Removes temp files of ours left in the directory `dir` by an interrupted run;
/// returns the removed paths. Symbolic links and other non-directories with our
/// names are removed too (never followed).
///
/// The directory is opened here (its last component never through a symbolic link);
/// [`TokenStore::remove_stale_temps`](super::TokenStore::remove_stale_temps) uses the
/// store's own descriptor of `TOK_OBJ`.
#[cfg(feature = "testkit")]
pub fn remove_stale_temps(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    let name = dir.file_name().and_then(|n| n.to_str());
    let d = match (parent, name) {
        (Some(p), Some(n)) => StoreDir::open_root(p)?.open_subdir(n)?,
        _ => StoreDir::open_root(dir)?,
    };
    remove_stale_temps_in(&d)
}

/// `remove_stale_temps` in an opened directory.
pub(crate) fn remove_stale_temps_in(dir: &StoreDir) -> Result<Vec<PathBuf>, StoreError> {
    let mut removed = Vec::new();
    for name in dir.names()? {
        if !is_temp_name(&name) {
            continue;
        }
        match dir.stat_if_present(&name)? {
            Some(st) if FileType::from_raw_mode(st.st_mode) == FileType::Directory => continue,
            None => continue,
            Some(_) => {}
        }
        dir.unlink(&name).map_err(|e| match e {
            StoreError::Io { file, source, .. } => {
                StoreError::io(file, "cannot remove stale temp file", source)
            }
            e => e,
        })?;
        removed.push(dir.join(&name));
    }
    Ok(removed)
}

/// Ownership and permissions a new file should get.
struct Owner {
    uid: Option<u32>,
    gid: u32,
    mode: u32,
}

fn target_owner(dir: &StoreDir, r: &Replacement, dir_st: &Stat) -> Result<Owner, StoreError> {
    let path = dir.join(&r.name);
    match dir.stat_if_present(&r.name)? {
        Some(st) => match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile if r.expect.is_some_and(|e| e != FileIdentity::of(&st)) => {
                Err(StoreError::ChangedOnDisk { file: path })
            }
            FileType::RegularFile => Ok(Owner {
                uid: Some(st.st_uid),
                gid: st.st_gid,
                mode: st.st_mode & 0o7777,
            }),
            FileType::Symlink => Err(StoreError::Symlink { file: path }),
            other => Err(StoreError::WrongType {
                file: path,
                found: type_name(other),
                expected: "a regular file",
            }),
        },
        None if r.may_be_new => Ok(Owner {
            uid: None,
            gid: dir_st.st_gid,
            mode: FILE_MODE,
        }),
        None => Err(StoreError::Missing { file: path }),
    }
}

/// Creates the temp file `tmp`; an existing entry there is an error saying what it is.
fn create_temp(dir: &StoreDir, tmp: &str) -> Result<File, StoreError> {
    let path = dir.join(tmp);
    dir.create_new(tmp, 0o600).map_err(|e| match e {
        Errno::EXIST | Errno::LOOP => match dir.stat_if_present(tmp) {
            Ok(Some(st)) if FileType::from_raw_mode(st.st_mode) == FileType::Symlink => {
                StoreError::Symlink { file: path }
            }
            _ => StoreError::Invalid {
                file: path,
                what: "a temp file of an earlier run exists; remove it first",
            },
        },
        e => errno_error(&path, "cannot create temp file", e),
    })
}

fn fill_temp(f: &mut File, tmp: &Path, r: &Replacement, owner: &Owner) -> Result<(), StoreError> {
    let io = |what| move |e| StoreError::io(tmp, what, e);
    let st = rustix::fs::fstat(&*f).map_err(|e| errno_error(tmp, "cannot stat temp file", e))?;
    let uid = owner.uid.filter(|u| *u != st.st_uid);
    let gid = (owner.gid != st.st_gid).then_some(owner.gid);
    if uid.is_some() || gid.is_some() {
        std::os::unix::fs::fchown(&*f, uid, gid)
            .map_err(io("cannot set owner/group of temp file"))?;
    }
    f.set_permissions(Permissions::from_mode(owner.mode))
        .map_err(io("cannot set mode of temp file"))?;
    f.write_all(&r.bytes)
        .map_err(io("cannot write temp file"))?;
    Ok(())
}

/// Whether `name` is a plain file name (no directory part).
fn plain_name(name: &str) -> bool {
    !name.is_empty() && name != "." && name != ".." && !name.contains('/') && !name.contains('\0')
}

/// Step 1 for one file, on its own: writes the temp file of `r` with its target's
/// owner, group and mode (the target must still be what `r.expect` says); returns the
/// temp file's name. A failure leaves no temp file of `r` behind.
pub(crate) fn stage(dir: &StoreDir, r: &Replacement, dir_st: &Stat) -> Result<String, StoreError> {
    if !plain_name(&r.name) {
        return Err(StoreError::Invalid {
            file: dir.join(&r.name),
            what: "not inside the directory being committed",
        });
    }
    let tmp = temp_name(&r.name);
    let owner = target_owner(dir, r, dir_st)?;
    let mut f = create_temp(dir, &tmp)?;
    if let Err(e) = fill_temp(&mut f, &dir.join(&tmp), r, &owner) {
        drop(f);
        let _ = dir.unlink(&tmp);
        return Err(e);
    }
    Ok(tmp)
}

/// Steps 2 to 4 for temp files written by [`stage`], as `(temp, target)` names: one
/// `syncfs`, the renames in order, one `fsync` of the directory. On a failure the temp
/// files not yet renamed are removed; a failure after the first rename is
/// [`StoreError::PartialCommit`].
pub(crate) fn finish_staged(dir: &StoreDir, staged: &[(String, String)]) -> Result<(), StoreError> {
    if let Err(e) = dir.sync_filesystem() {
        for (tmp, _) in staged {
            let _ = dir.unlink(tmp);
        }
        return Err(e);
    }
    for (i, (tmp, name)) in staged.iter().enumerate() {
        if let Err(err) = dir.rename(tmp, name) {
            for (t, _) in staged.iter().skip(i) {
                let _ = dir.unlink(t);
            }
            return Err(if i == 0 {
                err
            } else {
                StoreError::PartialCommit {
                    file: dir.join(name),
                    renamed: i,
                    total: staged.len(),
                    source: Box::new(err),
                }
            });
        }
    }
    dir.sync()
}

/// Replaces every file of `batch` in `dir` as described in the module docs: every temp
/// file written ([`stage`]), then [`finish_staged`]. Nothing is renamed unless every
/// temp file was written.
pub(crate) fn replace_all(dir: &StoreDir, batch: &[Replacement]) -> Result<(), StoreError> {
    let dir_st = dir.own_stat()?;
    let mut seen = std::collections::HashSet::with_capacity(batch.len());
    let mut staged: Vec<(String, String)> = Vec::with_capacity(batch.len());
    for r in batch {
        let written = if seen.insert(r.name.as_str()) {
            stage(dir, r, &dir_st)
        } else {
            Err(StoreError::Invalid {
                file: dir.join(&r.name),
                what: "file listed twice in one commit",
            })
        };
        match written {
            Ok(tmp) => staged.push((tmp, r.name.clone())),
            Err(e) => {
                for (tmp, _) in &staged {
                    let _ = dir.unlink(tmp);
                }
                return Err(e);
            }
        }
    }
    finish_staged(dir, &staged)
}

#[cfg(feature = "testkit")]
/// [`replace_all`] with the given barrier (the commit bench compares them).
pub(crate) fn replace_all_with(
    dir: &StoreDir,
    batch: &[Replacement],
    barrier: Barrier,
) -> Result<(), StoreError> {
    let dir_st = dir.own_stat()?;
    let mut plans: Vec<(String, Owner)> = Vec::with_capacity(batch.len());
    let mut seen = std::collections::HashSet::with_capacity(batch.len());
    for r in batch {
        if !plain_name(&r.name) {
            return Err(StoreError::Invalid {
                file: dir.join(&r.name),
                what: "not inside the directory being committed",
            });
        }
        let tmp = temp_name(&r.name);
        if !seen.insert(tmp.clone()) {
            return Err(StoreError::Invalid {
                file: dir.join(&r.name),
                what: "file listed twice in one commit",
            });
        }
        plans.push((tmp, target_owner(dir, r, &dir_st)?));
    }

    // 1. Every temp file, written; kept open only if the barrier needs them.
    let mut created: Vec<&str> = Vec::with_capacity(plans.len());
    let mut open: Vec<File> = Vec::new();
    let undo = |created: &[&str]| {
        for t in created {
            let _ = dir.unlink(t);
        }
    };
    for (r, (tmp, owner)) in batch.iter().zip(&plans) {
        let mut f = match create_temp(dir, tmp) {
            Ok(f) => f,
            Err(e) => {
                undo(&created);
                return Err(e);
            }
        };
        created.push(tmp);
        if let Err(e) = fill_temp(&mut f, &dir.join(tmp), r, owner) {
            drop(f);
            undo(&created);
            return Err(e);
        }
        if barrier != Barrier::SyncFs {
            open.push(f);
        }
    }

    // 2. One barrier for all of them.
    if let Err(e) = make_durable(dir, &plans, open, barrier) {
        undo(&created);
        return Err(e);
    }

    // 3. The renames.
    for (i, (r, (tmp, _))) in batch.iter().zip(&plans).enumerate() {
        if let Err(err) = dir.rename(tmp, &r.name) {
            for (t, _) in plans.iter().skip(i) {
                let _ = dir.unlink(t);
            }
            return Err(if i == 0 {
                err
            } else {
                StoreError::PartialCommit {
                    file: dir.join(&r.name),
                    renamed: i,
                    total: batch.len(),
                    source: Box::new(err),
                }
            });
        }
    }

    // 4. The renames themselves, durable.
    dir.sync()
}

#[cfg(feature = "testkit")]
/// Threads that issue `fdatasync` at once for [`Barrier::FdatasyncParallel`].
const SYNC_THREADS: usize = 8;

#[cfg(feature = "testkit")]
fn make_durable(
    dir: &StoreDir,
    plans: &[(String, Owner)],
    open: Vec<File>,
    barrier: Barrier,
) -> Result<(), StoreError> {
    let fail = |i: usize, e: std::io::Error| {
        let name = plans.get(i).map(|(t, _)| t.as_str()).unwrap_or_default();
        StoreError::io(dir.join(name), "cannot fdatasync temp file", e)
    };
    match barrier {
        Barrier::SyncFs => dir.sync_filesystem(),
        Barrier::FdatasyncSerial => {
            for (i, f) in open.iter().enumerate() {
                f.sync_data().map_err(|e| fail(i, e))?;
            }
            Ok(())
        }
        Barrier::FdatasyncParallel => {
            let per = open.len().div_ceil(SYNC_THREADS).max(1);
            let results: Vec<Result<(), (usize, std::io::Error)>> = std::thread::scope(|s| {
                let handles: Vec<_> = open
                    .chunks(per)
                    .enumerate()
                    .map(|(c, chunk)| {
                        s.spawn(move || {
                            for (j, f) in chunk.iter().enumerate() {
                                f.sync_data().map_err(|e| (c * per + j, e))?;
                            }
                            Ok(())
                        })
                    })
                    .collect();
                handles
                    .into_iter()
                    .map(|h| {
                        h.join().unwrap_or_else(|_| {
                            Err((0, std::io::Error::other("fdatasync thread panicked")))
                        })
                    })
                    .collect()
            });
            results
                .into_iter()
                .collect::<Result<Vec<()>, _>>()
                .map(drop)
                .map_err(|(i, e)| fail(i, e))
        }
    }
}

/// Writes `count` files of `size` bytes named `OB000000`, `OB000001`, ... into the
/// existing directory `dir` as one batch with `barrier` (replacing them if present),
/// for the barrier benchmark.
#[doc(hidden)]
#[cfg(feature = "testkit")]
pub fn bench_batch(
    dir: &Path,
    count: usize,
    size: usize,
    barrier: Barrier,
) -> Result<(), StoreError> {
    let d = StoreDir::open_root(dir)?;
    let batch: Vec<Replacement> = (0..count)
        .map(|i| Replacement {
            name: format!("OB{i:06}"),
            bytes: vec![(i % 251) as u8; size],
            may_be_new: true,
            expect: None,
        })
        .collect();
    replace_all_with(&d, &batch, barrier)
}
