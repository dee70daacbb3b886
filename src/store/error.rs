//! Errors of the store layer.
//!
//! Every error names the file it concerns, the byte offset where that helps,
//! and the problem in one line. No variant carries PINs, keys or decrypted
//! bytes: the only payloads are paths, offsets, names and static text.

use std::io;
use std::path::PathBuf;

/// Why a private object's payload could not be opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecryptFailure {
    /// An old-format object, and no old-format master key.
    #[error("an old-format master key is needed")]
    OldKeyNeeded,
    /// A new-format object, and no new-format master key.
    #[error("a new-format master key is needed")]
    NewKeyNeeded,
    /// DES3 refused the payload.
    #[error("DES3 decryption failed")]
    Des3,
    /// The caller's decipher function (the card, for openCryptoki 2.x stores) failed.
    #[error("the card could not (de)cipher the object")]
    Deciphering,
    /// The caller's decipher function returned a payload of another length.
    #[error("deciphered payload has the wrong length")]
    DecipheredLength,
    /// The decrypted length field does not fit the payload.
    #[error("decrypted length field out of range (wrong master key?)")]
    PlainLength,
    /// The padding is not openCryptoki's.
    #[error("bad padding (wrong master key?)")]
    PlainPadding,
    /// The SHA-1 of the flattened object does not match.
    #[error("SHA-1 mismatch (wrong master key?)")]
    PlainSha1,
    /// The object key does not unwrap with the master key.
    #[error("object key does not unwrap (wrong master key?)")]
    KeyUnwrap,
    /// The AES-GCM tag does not match.
    #[error("GCM tag mismatch (wrong master key or damaged file)")]
    GcmTag,
}

/// An error reading, verifying or rewriting a token data store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An I/O operation failed.
    #[error("{}: {what}: {source}", file.display())]
    Io {
        /// The file concerned.
        file: PathBuf,
        /// What we were doing.
        what: &'static str,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// A required file does not exist.
    #[error("{}: file not found", file.display())]
    Missing {
        /// The missing file.
        file: PathBuf,
    },
    /// The file has a size this format does not allow.
    #[error("{}: {what} (size {size})", file.display())]
    BadSize {
        /// The file concerned.
        file: PathBuf,
        /// The size found.
        size: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// The content does not parse.
    #[error("{}: offset {offset}: {what}", file.display())]
    Malformed {
        /// The file concerned.
        file: PathBuf,
        /// Byte offset of the problem (in the decrypted body for private objects).
        offset: u64,
        /// What is wrong.
        what: &'static str,
    },
    /// The file ends before a field it must contain.
    #[error("{}: offset {offset}: truncated: {what}", file.display())]
    Truncated {
        /// The file concerned.
        file: PathBuf,
        /// Where the missing bytes start.
        offset: u64,
        /// Which field is cut short.
        what: &'static str,
    },
    /// An object declares a length beyond what openCryptoki accepts.
    #[error("{}: offset {offset}: {what} too large ({len})", file.display())]
    Oversized {
        /// The file concerned.
        file: PathBuf,
        /// Offset of the length field.
        offset: u64,
        /// The declared length.
        len: u64,
        /// Which length.
        what: &'static str,
    },
    /// The SO PIN does not match the stored verifier (or does not open MK_SO).
    #[error("{}: SO PIN is incorrect", file.display())]
    WrongSoPin {
        /// NVTOK.DAT or MK_SO.
        file: PathBuf,
    },
    /// The USER PIN does not match the stored verifier (or does not open MK_USER).
    #[error("{}: USER PIN is incorrect", file.display())]
    WrongUserPin {
        /// NVTOK.DAT or MK_USER.
        file: PathBuf,
    },
    /// The token's USER PIN was never set (CKF_USER_PIN_INITIALIZED clear).
    #[error("{}: USER PIN is not initialized", file.display())]
    UserPinNotInitialized {
        /// NVTOK.DAT.
        file: PathBuf,
    },
    /// The token has a USER PIN but no MK_USER file.
    #[error("{}: master key file for the USER is missing", file.display())]
    MissingMkUser {
        /// The expected MK_USER path.
        file: PathBuf,
    },
    /// TOK_OBJ/OBJ.IDX does not exist: the token holds no objects.
    #[error("{}: object index not found", file.display())]
    MissingIndex {
        /// The expected OBJ.IDX path.
        file: PathBuf,
    },
    /// TOK_OBJ/OBJ.IDX is empty: the token holds no objects.
    #[error("{}: object index is empty", file.display())]
    EmptyIndex {
        /// The OBJ.IDX path.
        file: PathBuf,
    },
    /// An object name is not 8 safe characters.
    #[error("{}: line {line}: invalid object name", file.display())]
    BadName {
        /// OBJ.IDX (or the object file whose internal name is wrong).
        file: PathBuf,
        /// 1-based line in OBJ.IDX (0 when not from the index).
        line: u64,
    },
    /// A path we would read or replace is a symbolic link.
    #[error("{}: is a symbolic link; refusing to follow it", file.display())]
    Symlink {
        /// The link.
        file: PathBuf,
    },
    /// A store path holds another kind of file than the store needs there (a FIFO,
    /// a device, a socket, a directory where a file belongs, ...).
    #[error("{}: is {found}, not {expected}", file.display())]
    WrongType {
        /// The path.
        file: PathBuf,
        /// What is there ("a FIFO").
        found: &'static str,
        /// What must be there ("a regular file", "a directory").
        expected: &'static str,
    },
    /// The system refused access (`EACCES`, `EPERM`).
    #[error("{}: {what}: permission denied", file.display())]
    PermissionDenied {
        /// The path.
        file: PathBuf,
        /// What we were doing.
        what: &'static str,
    },
    /// A private object failed its integrity check (wrong master key or damage).
    #[error("{}: cannot decrypt object: {what}", file.display())]
    Decrypt {
        /// The object file.
        file: PathBuf,
        /// Which check failed.
        what: DecryptFailure,
    },
    /// The file changed on disk since it was loaded.
    #[error("{}: changed on disk since it was read; not rewriting", file.display())]
    ChangedOnDisk {
        /// The object file.
        file: PathBuf,
    },
    /// The caller asked for something the store cannot do.
    #[error("{}: {what}", file.display())]
    Invalid {
        /// The file or directory concerned.
        file: PathBuf,
        /// What is wrong.
        what: &'static str,
    },
    /// The commit renamed some files but not all: each file is either old or new.
    #[error(
        "{}: commit interrupted after {renamed} of {total} objects were replaced: {source}",
        file.display()
    )]
    PartialCommit {
        /// The file whose rename failed.
        file: PathBuf,
        /// How many renames completed.
        renamed: usize,
        /// How many were planned.
        total: usize,
        /// The failure.
        #[source]
        source: Box<StoreError>,
    },
}

impl StoreError {
    /// Shorthand for an I/O error; maps `NotFound` to [`StoreError::Missing`] and
    /// `PermissionDenied` (`EACCES`, `EPERM`) to [`StoreError::PermissionDenied`].
    pub(crate) fn io(file: impl Into<PathBuf>, what: &'static str, source: io::Error) -> Self {
        let file = file.into();
        match source.kind() {
            io::ErrorKind::NotFound => StoreError::Missing { file },
            io::ErrorKind::PermissionDenied => StoreError::PermissionDenied { file, what },
            _ => StoreError::Io { file, what, source },
        }
    }

    /// Whether the error is about the kind of file found at a store path (a symbolic
    /// link, FIFO, device, socket or directory where a regular file belongs, or the
    /// reverse): not damage a run can step around, but a store someone tampered with.
    pub fn is_wrong_file_type(&self) -> bool {
        matches!(
            self,
            StoreError::Symlink { .. } | StoreError::WrongType { .. }
        )
    }

    /// The file this error concerns.
    #[cfg(feature = "testkit")]
    pub fn file(&self) -> &std::path::Path {
        match self {
            StoreError::Io { file, .. }
            | StoreError::Missing { file }
            | StoreError::BadSize { file, .. }
            | StoreError::Malformed { file, .. }
            | StoreError::Truncated { file, .. }
            | StoreError::Oversized { file, .. }
            | StoreError::WrongSoPin { file }
            | StoreError::WrongUserPin { file }
            | StoreError::UserPinNotInitialized { file }
            | StoreError::MissingMkUser { file }
            | StoreError::MissingIndex { file }
            | StoreError::EmptyIndex { file }
            | StoreError::BadName { file, .. }
            | StoreError::Symlink { file }
            | StoreError::WrongType { file, .. }
            | StoreError::PermissionDenied { file, .. }
            | StoreError::Decrypt { file, .. }
            | StoreError::ChangedOnDisk { file }
            | StoreError::Invalid { file, .. }
            | StoreError::PartialCommit { file, .. } => file,
        }
    }
}
