//! Opening store files without following links, blocking or reading without bound.
//!
//! A data store directory is writable by the token group (openCryptoki creates it
//! 0770), so anything may sit where a store file is expected: a FIFO (opening it for
//! reading would block until a writer comes), a device, a socket, a directory, a
//! symbolic link (to `/dev/zero`, to a FIFO, to a file elsewhere), or a huge sparse
//! file. Every file of the store is therefore reached through a [`StoreDir`], a
//! descriptor of its directory opened once:
//!
//! * the store path is resolved once, when the store is opened (a symbolic link
//!   there is followed, as openCryptoki follows it, and the directory it leads to
//!   is then pinned by its descriptor); `TOK_OBJ` is opened once, relative to it,
//!   with `O_DIRECTORY | O_NOFOLLOW`;
//! * a file is looked at (`fstatat` without following) before it is opened, so a
//!   device or FIFO is never even opened; then opened relative to the directory
//!   descriptor with `O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC | O_NOCTTY`, and checked
//!   again on the descriptor (`fstat`): a regular file, no larger than the limit of
//!   its kind ([`FileKind`]);
//! * the read is bounded by that limit even if the file grows meanwhile;
//! * renames, creations and removals ([`super::atomic`]) use the same descriptor.
//!
//! Anything else is one [`StoreError`] naming the file and what was found there
//! ([`StoreError::WrongType`], [`StoreError::Symlink`]), or
//! [`StoreError::PermissionDenied`] when the system refused access.

use std::fs::File;
use std::io::Read;
use std::os::fd::OwnedFd;
#[cfg(test)]
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;

use super::error::StoreError;

/// Largest NVTOK.DAT we read: the new format's is 592 bytes, the old one's 232.
pub(crate) const TOKEN_DATA_LIMIT: u64 = 4096;
/// Largest MK_SO / MK_USER we read: 40, 48 or 88 bytes in practice.
pub(crate) const MASTER_KEY_LIMIT: u64 = 4096;
/// Largest OBJ.IDX we read: 9 bytes per object, so room for over 100000 names
/// (openCryptoki's shared memory holds at most 2048 public and 2048 private objects).
pub(crate) const INDEX_LIMIT: u64 = 1 << 20;
/// Largest object file we read. openCryptoki's own bound is 2 GiB; a CCA key
/// object is a few KiB (a PKA key token is at most 8000 bytes), a certificate or
/// data object rarely more than some hundreds of KiB.
pub(crate) const OBJECT_LIMIT: u64 = 16 << 20;

/// What a store file is, which decides how large it may be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FileKind {
    /// NVTOK.DAT.
    TokenData,
    /// MK_SO or MK_USER.
    MasterKey,
    /// TOK_OBJ/OBJ.IDX.
    Index,
    /// One object file in TOK_OBJ.
    Object,
}

impl FileKind {
    /// The largest file of this kind we read.
    pub(crate) const fn limit(self) -> u64 {
        match self {
            FileKind::TokenData => TOKEN_DATA_LIMIT,
            FileKind::MasterKey => MASTER_KEY_LIMIT,
            FileKind::Index => INDEX_LIMIT,
            FileKind::Object => OBJECT_LIMIT,
        }
    }

    /// The error text for a file over [`limit`](Self::limit).
    const fn too_large(self) -> &'static str {
        match self {
            FileKind::TokenData => "too large for a token data file (limit 4096 bytes)",
            FileKind::MasterKey => "too large for a master key file (limit 4096 bytes)",
            FileKind::Index => "too large for an object index (limit 1 MiB)",
            FileKind::Object => "too large for an object file (limit 16 MiB)",
        }
    }
}

/// "a FIFO", "a directory", ... for messages.
pub(crate) fn type_name(ft: FileType) -> &'static str {
    match ft {
        FileType::RegularFile => "a regular file",
        FileType::Directory => "a directory",
        FileType::Symlink => "a symbolic link",
        FileType::Fifo => "a FIFO",
        FileType::Socket => "a socket",
        FileType::CharacterDevice => "a character device",
        FileType::BlockDevice => "a block device",
        FileType::Unknown => "a file of unknown type",
    }
}

fn file_type(st: &Stat) -> FileType {
    FileType::from_raw_mode(st.st_mode)
}

/// `Ok` for a regular file; otherwise the error for what is there.
fn expect_regular(file: &Path, st: &Stat) -> Result<(), StoreError> {
    match file_type(st) {
        FileType::RegularFile => Ok(()),
        FileType::Symlink => Err(StoreError::Symlink { file: file.into() }),
        other => Err(StoreError::WrongType {
            file: file.into(),
            found: type_name(other),
            expected: "a regular file",
        }),
    }
}

/// `Ok` for a directory; otherwise the error for what is there.
fn expect_directory(file: &Path, st: &Stat) -> Result<(), StoreError> {
    match file_type(st) {
        FileType::Directory => Ok(()),
        FileType::Symlink => Err(StoreError::Symlink { file: file.into() }),
        other => Err(StoreError::WrongType {
            file: file.into(),
            found: type_name(other),
            expected: "a directory",
        }),
    }
}

fn size_of(st: &Stat) -> u64 {
    u64::try_from(st.st_size).unwrap_or(0)
}

/// The error for a failed system call on `file`.
pub(crate) fn errno_error(file: &Path, what: &'static str, e: Errno) -> StoreError {
    StoreError::io(file, what, std::io::Error::from(e))
}

/// What a file was when it was read: an in-place rewrite changes its size or mtime, a
/// replacement its inode. (Not the ctime: a hard link into a backup changes that.)
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FileIdentity {
    dev: u64,
    ino: u64,
    size: u64,
    mtime: (i64, u64),
}

impl FileIdentity {
    /// The identity `st` describes.
    pub(crate) fn of(st: &Stat) -> FileIdentity {
        FileIdentity {
            dev: st.st_dev,
            ino: st.st_ino,
            size: size_of(st),
            #[allow(clippy::useless_conversion, reason = "the field types vary by target")]
            mtime: (i64::from(st.st_mtime), u64::from(st.st_mtime_nsec)),
        }
    }
}

/// An open directory of the store, and the path it was opened by (for messages).
#[derive(Debug)]
pub(crate) struct StoreDir {
    fd: OwnedFd,
    path: PathBuf,
}

const DIR_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::DIRECTORY)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY);

const READ_FLAGS: OFlags = OFlags::RDONLY
    .union(OFlags::NOFOLLOW)
    .union(OFlags::CLOEXEC)
    .union(OFlags::NONBLOCK)
    .union(OFlags::NOCTTY);

impl StoreDir {
    /// Opens the store directory at `path`, following symbolic links in it once.
    pub(crate) fn open_root(path: &Path) -> Result<StoreDir, StoreError> {
        match rfs::open(path, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => {
                let st = rfs::fstat(&fd).map_err(|e| errno_error(path, "cannot stat", e))?;
                expect_directory(path, &st)?;
                Ok(StoreDir {
                    fd,
                    path: path.to_path_buf(),
                })
            }
            Err(Errno::NOTDIR) => match rfs::stat(path) {
                // The path itself leads to something else.
                Ok(st) => {
                    expect_directory(path, &st)?;
                    Err(errno_error(path, "cannot open directory", Errno::NOTDIR))
                }
                // A component before the last is not a directory.
                Err(e) => Err(errno_error(path, "cannot open directory", e)),
            },
            Err(e) => Err(errno_error(path, "cannot open directory", e)),
        }
    }

    /// Opens the subdirectory `name` (never through a symbolic link).
    pub(crate) fn open_subdir(&self, name: &str) -> Result<StoreDir, StoreError> {
        let path = self.path.join(name);
        match rfs::openat(&self.fd, name, DIR_FLAGS | OFlags::NOFOLLOW, Mode::empty()) {
            Ok(fd) => {
                let st = rfs::fstat(&fd).map_err(|e| errno_error(&path, "cannot stat", e))?;
                expect_directory(&path, &st)?;
                Ok(StoreDir { fd, path })
            }
            Err(e @ (Errno::NOTDIR | Errno::LOOP)) => {
                let st = self.stat(name)?;
                expect_directory(&path, &st)?;
                Err(errno_error(&path, "cannot open directory", e))
            }
            Err(e) => Err(errno_error(&path, "cannot open directory", e)),
        }
    }

    /// The path of the entry `name`, for messages.
    pub(crate) fn join(&self, name: &str) -> PathBuf {
        self.path.join(name)
    }

    /// The directory's descriptor.
    #[cfg(test)]
    pub(crate) fn fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }

    /// The directory's own status.
    pub(crate) fn own_stat(&self) -> Result<Stat, StoreError> {
        rfs::fstat(&self.fd).map_err(|e| errno_error(&self.path, "cannot stat", e))
    }

    /// The status of the entry `name`, without following a symbolic link.
    pub(crate) fn stat(&self, name: &str) -> Result<Stat, StoreError> {
        rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(|e| errno_error(&self.join(name), "cannot stat", e))
    }

    /// The status of the entry `name`, `None` if there is none.
    pub(crate) fn stat_if_present(&self, name: &str) -> Result<Option<Stat>, StoreError> {
        match rfs::statat(&self.fd, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(st)),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(errno_error(&self.join(name), "cannot stat", e)),
        }
    }

    /// Reads the regular file `name`, at most `kind.limit()` bytes, as described in
    /// the module documentation.
    pub(crate) fn read_file(&self, name: &str, kind: FileKind) -> Result<Vec<u8>, StoreError> {
        self.read_file_identified(name, kind).map(|(data, _)| data)
    }

    /// [`StoreDir::read_file`], also returning what the file was when read.
    pub(crate) fn read_file_identified(
        &self,
        name: &str,
        kind: FileKind,
    ) -> Result<(Vec<u8>, FileIdentity), StoreError> {
        let path = self.join(name);
        let limit = kind.limit();
        // Look first, so that a device or a FIFO is never opened.
        let st = self.stat(name)?;
        expect_regular(&path, &st)?;
        check_size(&path, size_of(&st), kind)?;
        let fd = match rfs::openat(&self.fd, name, READ_FLAGS, Mode::empty()) {
            Ok(fd) => fd,
            // Replaced by something else since we looked.
            Err(e @ (Errno::LOOP | Errno::NXIO | Errno::NOTDIR)) => {
                let st = self.stat(name)?;
                expect_regular(&path, &st)?;
                return Err(errno_error(&path, "cannot open", e));
            }
            Err(e) => return Err(errno_error(&path, "cannot open", e)),
        };
        // The descriptor is what we read: check it, not the name.
        let st = rfs::fstat(&fd).map_err(|e| errno_error(&path, "cannot stat", e))?;
        expect_regular(&path, &st)?;
        let size = size_of(&st);
        check_size(&path, size, kind)?;
        let mut data = Vec::new();
        data.try_reserve_exact(usize::try_from(size).unwrap_or(0))
            .map_err(|_| StoreError::BadSize {
                file: path.clone(),
                size,
                what: "no memory to read it",
            })?;
        File::from(fd)
            .take(limit.saturating_add(1))
            .read_to_end(&mut data)
            .map_err(|e| StoreError::io(&path, "cannot read", e))?;
        // It grew past the limit while we read.
        check_size(&path, data.len() as u64, kind)?;
        Ok((data, FileIdentity::of(&st)))
    }

    /// Creates the regular file `name` with `mode`, failing if anything exists there
    /// (a symbolic link is neither followed nor replaced).
    pub(crate) fn create_new(&self, name: &str, mode: u32) -> Result<File, rustix::io::Errno> {
        let flags = OFlags::WRONLY
            | OFlags::CREATE
            | OFlags::EXCL
            | OFlags::NOFOLLOW
            | OFlags::CLOEXEC
            | OFlags::NOCTTY;
        rfs::openat(&self.fd, name, flags, Mode::from_raw_mode(mode)).map(File::from)
    }

    /// Renames `from` to `to`, both in this directory.
    pub(crate) fn rename(&self, from: &str, to: &str) -> Result<(), StoreError> {
        rfs::renameat(&self.fd, from, &self.fd, to)
            .map_err(|e| errno_error(&self.join(to), "cannot rename temp file over original", e))
    }

    /// Removes the entry `name` (never a directory; a link itself, not its target).
    pub(crate) fn unlink(&self, name: &str) -> Result<(), StoreError> {
        rfs::unlinkat(&self.fd, name, AtFlags::empty())
            .map_err(|e| errno_error(&self.join(name), "cannot remove", e))
    }

    /// Flushes the directory itself (its entries) to stable storage.
    pub(crate) fn sync(&self) -> Result<(), StoreError> {
        rfs::fsync(&self.fd).map_err(|e| errno_error(&self.path, "cannot fsync directory", e))
    }

    /// Flushes the whole filesystem holding this directory (`syncfs`).
    pub(crate) fn sync_filesystem(&self) -> Result<(), StoreError> {
        rfs::syncfs(&self.fd).map_err(|e| errno_error(&self.path, "cannot syncfs", e))
    }

    /// The names in this directory (`.` and `..` excluded; names that are not UTF-8
    /// are skipped: no store file has one).
    pub(crate) fn names(&self) -> Result<Vec<String>, StoreError> {
        let list_err = |e| errno_error(&self.path, "cannot list directory", e);
        let dir = rfs::Dir::read_from(&self.fd).map_err(list_err)?;
        let mut out = Vec::new();
        for ent in dir {
            let ent = ent.map_err(list_err)?;
            let Ok(name) = ent.file_name().to_str() else {
                continue;
            };
            if name != "." && name != ".." {
                out.push(name.to_string());
            }
        }
        Ok(out)
    }
}

fn check_size(path: &Path, size: u64, kind: FileKind) -> Result<(), StoreError> {
    if size > kind.limit() {
        Err(StoreError::BadSize {
            file: path.into(),
            size,
            what: kind.too_large(),
        })
    } else {
        Ok(())
    }
}

/// What sits at `path`, for a caller that must say why a store cannot be used before
/// opening it: `Ok` when `path` is a directory holding a readable regular
/// NVTOK.DAT of plausible size; otherwise the error that says what is wrong
/// ([`StoreError::Missing`] when the directory or NVTOK.DAT does not exist,
/// [`StoreError::PermissionDenied`], [`StoreError::WrongType`],
/// [`StoreError::Symlink`], [`StoreError::BadSize`]).
pub fn probe_store(path: &Path) -> Result<(), StoreError> {
    let dir = StoreDir::open_root(path)?;
    dir.read_file(super::NVTOK_DAT, FileKind::TokenData)
        .map(drop)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fifo_symlink_directory_and_big_file_are_refused_without_blocking() {
        let t = tempfile::tempdir().unwrap();
        let d = StoreDir::open_root(t.path()).unwrap();
        std::fs::write(t.path().join("ok"), b"hello").unwrap();
        assert_eq!(d.read_file("ok", FileKind::Index).unwrap(), b"hello");
        std::os::unix::fs::symlink(t.path().join("ok"), t.path().join("link")).unwrap();
        let e = d.read_file("link", FileKind::Index).unwrap_err();
        assert!(matches!(e, StoreError::Symlink { .. }), "{e}");
        rustix::fs::mkfifoat(d.fd(), "fifo", Mode::from_raw_mode(0o600)).unwrap();
        let e = d.read_file("fifo", FileKind::Index).unwrap_err();
        assert!(
            e.to_string()
                .ends_with("fifo: is a FIFO, not a regular file"),
            "{e}"
        );
        std::fs::create_dir(t.path().join("sub")).unwrap();
        let e = d.read_file("sub", FileKind::Object).unwrap_err();
        assert!(e
            .to_string()
            .ends_with("sub: is a directory, not a regular file"));
        assert!(d.open_subdir("sub").is_ok());
        let e = d.open_subdir("fifo").unwrap_err();
        assert!(
            e.to_string().ends_with("fifo: is a FIFO, not a directory"),
            "{e}"
        );
        std::os::unix::fs::symlink(t.path().join("sub"), t.path().join("sublink")).unwrap();
        let e = d.open_subdir("sublink").unwrap_err();
        assert!(matches!(e, StoreError::Symlink { .. }), "{e}");
        let f = File::create(t.path().join("big")).unwrap();
        f.set_len(OBJECT_LIMIT + 1).unwrap();
        let e = d.read_file("big", FileKind::Object).unwrap_err();
        assert!(matches!(e, StoreError::BadSize { .. }), "{e}");
        let e = d.read_file("missing", FileKind::Object).unwrap_err();
        assert!(matches!(e, StoreError::Missing { .. }), "{e}");
        // A symbolic link to the store directory itself is followed once.
        let top = tempfile::tempdir().unwrap();
        std::os::unix::fs::symlink(t.path(), top.path().join("store")).unwrap();
        let d2 = StoreDir::open_root(&top.path().join("store")).unwrap();
        assert_eq!(d2.read_file("ok", FileKind::Index).unwrap(), b"hello");
        let e = StoreDir::open_root(&t.path().join("fifo")).unwrap_err();
        assert!(
            e.to_string().ends_with("fifo: is a FIFO, not a directory"),
            "{e}"
        );
    }
}
