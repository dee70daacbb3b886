//! openCryptoki token data store, read and rewritten offline.
//!
//! A data store directory holds `NVTOK.DAT`, `MK_SO`, `MK_USER` and
//! `TOK_OBJ/` with `OBJ.IDX` and one file per token object (written by
//! `usr/lib/common/loadsave.c`). [`TokenStore`] reads both formats
//! (old, and new = tokversion ≥ 3.12), checks PINs exactly as openCryptoki
//! does, decrypts and decodes every object into a [`Template`] that keeps
//! every record as stored, and writes changed objects back atomically so
//! that openCryptoki cannot tell the difference.
//!
//! Typical use (the migration layer), all while holding the token lock and
//! with no openCryptoki process attached (see `crate::host`):
//!
//! ```no_run
//! use pkcscca::config::{locate_token, SystemPaths};
//! use pkcscca::pkcs11::AttrType;
//! use pkcscca::store::TokenStore;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! let paths = SystemPaths::from_env();
//! let loc = locate_token(&paths, 2)?;
//! let _lock = pkcscca::host::lock_token(&loc)?;
//! let store = TokenStore::open_with(&loc.dir, loc.open_options())?;
//! store.login_so(b"76543210")?;
//! let mk = store.login_user(b"11223344")?;
//! let mut objects = store.load_objects(&mk)?;
//! for obj in &mut objects {
//!     if let Some(blob) = obj.template.get(AttrType::IBM_OPAQUE) {
//!         let reenciphered = blob.to_vec(); // ask the CCA library here
//!         obj.template.set(AttrType::IBM_OPAQUE, reenciphered);
//!     }
//! }
//! let changed: Vec<_> = objects.iter().collect();
//! store.commit(&mk, &changed)?;
//! # Ok(())
//! # }
//! ```

pub mod atomic;
mod attrs;
pub mod backup;
mod bytes;
#[cfg(feature = "testkit")]
mod create;
mod crypt;
mod error;
mod fsio;
mod index;
pub mod lock;
mod nvtok;
mod object_file;

use std::fmt;
use std::path::{Path, PathBuf};
use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock};

use zeroize::Zeroizing;

#[cfg(feature = "testkit")]
pub use atomic::{remove_stale_temps, TEMP_SUFFIX};
#[cfg(feature = "testkit")]
pub use attrs::Attribute;
pub use attrs::Template;
pub use bytes::ByteOrder;
#[cfg(feature = "testkit")]
pub use create::CreateOptions;
#[cfg(feature = "testkit")]
pub use crypt::DEFAULT_USER_PIN;
pub use crypt::{MasterKey, DEFAULT_SO_PIN};
pub use error::{DecryptFailure, StoreError};
pub use fsio::probe_store;

use attrs::FlatObject;
use bytes::ct_eq;
use fsio::{FileKind, StoreDir};
use nvtok::{flags, TokenData, USER_PIN_SENTINEL};
use object_file::{DecodeError, Envelope};

/// `what` of the [`StoreError::Invalid`] when the encipher function of
/// `TokenStore::encode_object_enciphered` (test kit) failed.
#[cfg(feature = "testkit")]
const ENCIPHER_FAILED: &str = "the card could not encipher the object";

/// A caller's decipher function for [`TokenStore::decode_object_deciphered`]:
/// ciphertext in, padded plaintext of the same length out, `None` on failure.
pub type PayloadDecipher<'a> = &'a mut dyn FnMut(&[u8]) -> Option<Zeroizing<Vec<u8>>>;

/// Name of the token data file.
pub const NVTOK_DAT: &str = "NVTOK.DAT";
/// Master key file under the SO PIN.
pub const MK_SO: &str = "MK_SO";
/// Master key file under the USER PIN.
pub const MK_USER: &str = "MK_USER";
/// Object directory.
pub const TOK_OBJ: &str = "TOK_OBJ";
/// Object index inside [`TOK_OBJ`].
pub const OBJ_IDX: &str = "OBJ.IDX";

/// Which on-disk format a store uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Format {
    /// tokversion absent or below 3.12 (every 3.8.1 store).
    Old,
    /// tokversion 3.12 or later ("FIPS compliant" store).
    New,
}

impl Format {
    /// The format selected by a slot's `tokversion` (`major << 16 | minor`).
    pub fn from_tokversion(v: u32) -> Format {
        if v >= object_file::TOKVERSION_3_12 {
            Format::New
        } else {
            Format::Old
        }
    }
}

/// An 8-byte object name, as used for file names in `TOK_OBJ/`.
///
/// Only names of 8 printable ASCII characters other than `/` are accepted,
/// so a name can never leave `TOK_OBJ/`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectName([u8; 8]);

impl ObjectName {
    /// Checks and wraps 8 bytes.
    pub fn from_bytes(b: [u8; 8]) -> Option<ObjectName> {
        b.iter()
            .all(|c| c.is_ascii_graphic() && *c != b'/' && *c != b'\\')
            .then_some(ObjectName(b))
    }

    /// Parses a string of exactly 8 valid characters.
    #[cfg(feature = "testkit")]
    pub fn parse(s: &str) -> Option<ObjectName> {
        let b: [u8; 8] = s.as_bytes().try_into().ok()?;
        ObjectName::from_bytes(b)
    }

    /// The raw bytes.
    pub fn as_bytes(&self) -> &[u8; 8] {
        &self.0
    }

    /// The name as text (always ASCII).
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.0).unwrap_or("????????")
    }
}

impl fmt::Display for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for ObjectName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ObjectName({})", self.as_str())
    }
}

/// Options for [`TokenStore::open_with`].
#[derive(Clone, Copy, Debug, Default)]
pub struct OpenOptions {
    /// The format the slot's configuration selects; `None` = decide by the
    /// size of NVTOK.DAT (232 old, 592 new), as upstream tools do.
    pub format: Option<Format>,
    /// The byte order of host-order fields and object bodies; `None` =
    /// detect from NVTOK.DAT (old) or the object files, else native.
    pub byte_order: Option<ByteOrder>,
}

/// How the byte order was decided.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ByteOrderSource {
    /// Given by the caller.
    Explicit,
    /// Detected from this file.
    Detected(PathBuf),
    /// Nothing decisive found; the machine's order was assumed.
    Default,
}

/// One token object as loaded from `TOK_OBJ/<name>`.
#[derive(Clone)]
pub struct StoredObject {
    /// File name and internal name.
    pub name: ObjectName,
    /// Whether the object is stored encrypted.
    pub private: bool,
    /// Every attribute record, in disk order.
    pub template: Template,
    class_word: u32,
    trailer: Zeroizing<Vec<u8>>,
    envelope: Envelope,
    /// What the file was when loaded, to detect a concurrent change at commit
    /// (`None`: decoded from bytes read by the caller; then `original` is compared).
    identity: Option<fsio::FileIdentity>,
    /// The file's bytes when loaded, when there is no identity.
    original: Vec<u8>,
}

/// Name, visibility and attribute types/lengths; never values.
impl fmt::Debug for StoredObject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoredObject")
            .field("name", &self.name)
            .field("private", &self.private)
            .field("template", &self.template)
            .finish_non_exhaustive()
    }
}

impl StoredObject {
    /// A text dump (name, visibility, attributes); secrets shown as lengths
    /// unless `show_secrets`. Stable, for golden tests (feature `testkit`).
    #[cfg(feature = "testkit")]
    pub fn dump(&self, show_secrets: bool) -> String {
        let mut out = format!(
            "object {} {}\n{}",
            self.name,
            if self.private { "private" } else { "public" },
            self.template.dump(show_secrets)
        );
        if !self.trailer.is_empty() {
            out.push_str(&format!(
                "  ({} bytes after the last record)\n",
                self.trailer.len()
            ));
        }
        out
    }

    /// The flattened object as openCryptoki would write it (clear bytes).
    #[cfg(feature = "testkit")]
    pub fn flattened(&self) -> Zeroizing<Vec<u8>> {
        attrs::encode_flat(&self.flat())
    }

    fn flat(&self) -> FlatObject {
        FlatObject {
            class_word: self.class_word,
            name: self.name,
            template: self.template.clone(),
            trailer: self.trailer.clone(),
        }
    }
}

/// The two PKCS#11 roles with a PIN.
#[derive(Clone, Copy)]
enum Role {
    So,
    User,
}

/// The object names of OBJ.IDX ([`TokenStore::index`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ObjectIndex {
    /// Object names in index order, each once.
    pub names: Vec<ObjectName>,
    /// 1-based numbers of the lines that repeated an earlier name (skipped).
    pub duplicate_lines: Vec<u64>,
}

/// What [`TokenStore::commit`] did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CommitReport {
    /// Objects whose files were replaced, in commit order.
    pub written: Vec<ObjectName>,
}

/// An opened token data store.
///
/// The store directory is opened once, by [`TokenStore::open`], and `TOK_OBJ` once,
/// when first needed; every file is then reached relative to those descriptors
/// (`fsio.rs`), so the store cannot be swapped for another directory during a run.
pub struct TokenStore {
    dir: PathBuf,
    root: StoreDir,
    tok_obj: OnceLock<StoreDir>,
    format: Format,
    order: ByteOrder,
    // Read by the tests (`byte_order_source`), which check how the order was decided.
    #[cfg_attr(not(feature = "testkit"), allow(dead_code))]
    order_source: ByteOrderSource,
    nvtok: TokenData,
}

impl TokenStore {
    /// Opens the store in `dir`, detecting format and byte order.
    pub fn open(dir: impl AsRef<Path>) -> Result<TokenStore, StoreError> {
        Self::open_with(dir, OpenOptions::default())
    }

    /// Opens the store in `dir` with explicit choices.
    ///
    /// Mirrors `loadsave.c: load_token_data()` / `load_token_data_old()`.
    pub fn open_with(dir: impl AsRef<Path>, opts: OpenOptions) -> Result<TokenStore, StoreError> {
        let dir = dir.as_ref().to_path_buf();
        let root = StoreDir::open_root(&dir)?;
        let nv_path = dir.join(NVTOK_DAT);
        let raw = root.read_file(NVTOK_DAT, FileKind::TokenData)?;
        let size = raw.len();
        let format = match (opts.format, TokenData::format_for_size(size)) {
            (Some(f), Some(g)) if f != g => {
                return Err(StoreError::BadSize {
                    file: nv_path,
                    size: size as u64,
                    what: "size does not match the configured data store format",
                })
            }
            (Some(f), _) => f,
            (None, Some(g)) => g,
            (None, None) => {
                return Err(StoreError::BadSize {
                    file: nv_path,
                    size: size as u64,
                    what: "not an NVTOK.DAT (expected 232 or 592 bytes)",
                })
            }
        };
        let tok_obj = OnceLock::new();
        let (order, order_source) = match opts.byte_order {
            Some(o) => (o, ByteOrderSource::Explicit),
            None => detect_order(&root, &tok_obj, format, &raw),
        };
        let nvtok = TokenData::from_raw(raw, format, order).ok_or(StoreError::BadSize {
            file: nv_path,
            size: size as u64,
            what: "too short for the configured data store format",
        })?;
        Ok(TokenStore {
            dir,
            root,
            tok_obj,
            format,
            order,
            order_source,
            nvtok,
        })
    }

    /// The store directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The data store format.
    pub fn format(&self) -> Format {
        self.format
    }

    /// The byte order of host-order fields and object bodies.
    #[cfg(feature = "testkit")]
    pub fn byte_order(&self) -> ByteOrder {
        self.order
    }

    /// How [`byte_order`](Self::byte_order) was decided.
    #[cfg(feature = "testkit")]
    pub fn byte_order_source(&self) -> &ByteOrderSource {
        &self.order_source
    }

    /// The token label from NVTOK.DAT, trailing blanks removed.
    #[cfg(feature = "testkit")]
    pub fn label(&self) -> String {
        self.nvtok.label()
    }

    /// The token model from NVTOK.DAT (`CCA`, `Soft`, ...), trailing blanks removed.
    pub fn model(&self) -> String {
        self.nvtok.model()
    }

    /// Whether NVTOK.DAT says a CCA token's STDLL initialised this store (its model
    /// names CCA, as both 3.8.1's `IBM CCA Token` and 3.27's `CCA` do).
    pub fn is_cca_token(&self) -> bool {
        self.nvtok.model().contains("CCA")
    }

    /// The token flags word from NVTOK.DAT.
    #[cfg(feature = "testkit")]
    pub fn token_flags(&self) -> u32 {
        self.nvtok.flags()
    }

    /// Whether C_InitPIN has set a USER PIN (CKF_USER_PIN_INITIALIZED).
    pub fn user_pin_initialized(&self) -> bool {
        self.nvtok.flags() & flags::USER_PIN_INITIALIZED != 0
    }

    /// `TOK_OBJ/`.
    pub fn tok_obj_dir(&self) -> PathBuf {
        self.dir.join(TOK_OBJ)
    }

    /// `TOK_OBJ/OBJ.IDX`.
    pub fn index_path(&self) -> PathBuf {
        self.tok_obj_dir().join(OBJ_IDX)
    }

    fn nv_path(&self) -> PathBuf {
        self.dir.join(NVTOK_DAT)
    }

    /// `TOK_OBJ`, opened once (never through a symbolic link).
    fn tok(&self) -> Result<&StoreDir, StoreError> {
        tok_obj_of(&self.root, &self.tok_obj)
    }

    /// The bytes of `TOK_OBJ/OBJ.IDX`, read as every store file is (no symbolic link,
    /// FIFO, device or oversized file; see [`StoreError::WrongType`]).
    pub fn read_index_bytes(&self) -> Result<Vec<u8>, StoreError> {
        self.tok()?.read_file(OBJ_IDX, FileKind::Index)
    }

    /// The bytes of the object file `TOK_OBJ/<name>`, read as every store file is.
    pub fn read_object_bytes(&self, name: ObjectName) -> Result<Vec<u8>, StoreError> {
        self.tok()?.read_file(name.as_str(), FileKind::Object)
    }

    /// Removes the temp files an interrupted commit left in `TOK_OBJ` (see
    /// `remove_stale_temps`); returns their paths.
    pub fn remove_stale_temps(&self) -> Result<Vec<PathBuf>, StoreError> {
        atomic::remove_stale_temps_in(self.tok()?)
    }

    /// Checks the SO PIN against NVTOK.DAT and opens MK_SO with it.
    pub fn login_so(&self, pin: &[u8]) -> Result<(), StoreError> {
        self.so_master_key(pin).map(drop)
    }

    /// Checks the SO PIN and returns the master key from MK_SO.
    ///
    /// Old format: SHA-1 verifier, then MK_SO under `MD5(PIN)`; if that
    /// fails, MK_SO is retried under the default SO PIN (3.8.1's C_InitToken
    /// wrote it so, `new_host.c: SC_InitToken()`). New format: PBKDF2 verifier,
    /// then MK_SO unwrapped with the SO wrap key. Unlike upstream's
    /// `pkcs_utils.c: verify_pins()`, iteration counts are decoded as BE and a
    /// wrong PIN is always rejected.
    pub fn so_master_key(&self, pin: &[u8]) -> Result<MasterKey, StoreError> {
        let r = self.so_master_key_unscrubbed(pin);
        crypt::scrub_stack();
        r
    }

    fn so_master_key_unscrubbed(&self, pin: &[u8]) -> Result<MasterKey, StoreError> {
        let nv = self.nv_path();
        let mk_path = self.dir.join(MK_SO);
        match self.format {
            Format::Old => {
                if !ct_eq(&crypt::sha1(pin), self.nvtok.so_pin_sha()) {
                    return Err(StoreError::WrongSoPin { file: nv });
                }
                let file = self.root.read_file(MK_SO, FileKind::MasterKey)?;
                check_old_mk_size(&mk_path, &file)?;
                crypt::old_mk_open(&file, pin)
                    .or_else(|| crypt::old_mk_open(&file, DEFAULT_SO_PIN))
                    .ok_or(StoreError::WrongSoPin { file: mk_path })
            }
            Format::New => self.new_format_login(pin, Role::So),
        }
    }

    /// Checks the USER PIN and returns the master key from MK_USER.
    ///
    /// Refuses a token whose USER PIN was never initialised even if the stored
    /// verifier matches the default PIN. Mirrors
    /// `new_host.c: SC_Login()` with `load_masterkey_user[_old]()`.
    pub fn login_user(&self, pin: &[u8]) -> Result<MasterKey, StoreError> {
        let r = self.login_user_unscrubbed(pin);
        crypt::scrub_stack();
        r
    }

    fn login_user_unscrubbed(&self, pin: &[u8]) -> Result<MasterKey, StoreError> {
        let nv = self.nv_path();
        let mk_path = self.dir.join(MK_USER);
        if !self.user_pin_initialized() {
            return Err(StoreError::UserPinNotInitialized { file: nv });
        }
        match self.format {
            Format::Old => {
                if self.nvtok.user_pin_sha() == USER_PIN_SENTINEL {
                    return Err(StoreError::UserPinNotInitialized { file: nv });
                }
                if !ct_eq(&crypt::sha1(pin), self.nvtok.user_pin_sha()) {
                    return Err(StoreError::WrongUserPin { file: nv });
                }
                let file = self.read_mk_user()?;
                check_old_mk_size(&mk_path, &file)?;
                crypt::old_mk_open(&file, pin).ok_or(StoreError::WrongUserPin { file: mk_path })
            }
            Format::New => self.new_format_login(pin, Role::User),
        }
    }

    /// New-format login: PBKDF2 verifier, then unwrap the role's MK file
    /// with the role's wrap key (`loadsave.c: load_masterkey_so()`, `_user()`).
    /// The MK file's size is checked before the slow derivations.
    fn new_format_login(&self, pin: &[u8], role: Role) -> Result<MasterKey, StoreError> {
        let nv = self.nv_path();
        let (mk_path, login, key, wrap) = match role {
            Role::So => (
                self.dir.join(MK_SO),
                self.nvtok.so_login(),
                self.nvtok.so_login_key(),
                self.nvtok.so_wrap(),
            ),
            Role::User => (
                self.dir.join(MK_USER),
                self.nvtok.user_login(),
                self.nvtok.user_login_key(),
                self.nvtok.user_wrap(),
            ),
        };
        let wrong = |file: PathBuf| match role {
            Role::So => StoreError::WrongSoPin { file },
            Role::User => StoreError::WrongUserPin { file },
        };
        let file = match role {
            Role::So => self.root.read_file(MK_SO, FileKind::MasterKey)?,
            Role::User => self.read_mk_user()?,
        };
        check_new_mk_size(&mk_path, &file)?;
        if !ct_eq(&self.pbkdf2(pin, &login)?[..], key) {
            return Err(wrong(nv));
        }
        let wrap = self.pbkdf2(pin, &wrap)?;
        crypt::aes_unwrap(&wrap, &file)
            .map(|k| MasterKey::from_vec(Zeroizing::new(k.to_vec())))
            .ok_or_else(|| wrong(mk_path))
    }

    fn pbkdf2(&self, pin: &[u8], kdf: &nvtok::Kdf<'_>) -> Result<Zeroizing<[u8; 32]>, StoreError> {
        crypt::pbkdf2_sha512(pin, kdf.salt, kdf.iterations).ok_or(StoreError::Malformed {
            file: self.nv_path(),
            offset: 0,
            what: "PBKDF2 iteration count is zero or implausibly large",
        })
    }

    /// Reads OBJ.IDX: object names in index order, repeated names skipped.
    ///
    /// Errors: [`StoreError::MissingIndex`], [`StoreError::EmptyIndex`],
    /// [`StoreError::BadName`], [`StoreError::Symlink`].
    pub fn read_index(&self) -> Result<Vec<ObjectName>, StoreError> {
        self.index().map(|i| i.names)
    }

    /// Reads OBJ.IDX like [`read_index`](Self::read_index), also telling which lines
    /// repeated a name (for the caller to report).
    pub fn index(&self) -> Result<ObjectIndex, StoreError> {
        let path = self.index_path();
        let data = match self.read_index_bytes() {
            Err(StoreError::Missing { file }) => return Err(StoreError::MissingIndex { file }),
            r => r?,
        };
        if data.is_empty() {
            return Err(StoreError::EmptyIndex { file: path });
        }
        let idx = index::parse(&data).map_err(|index::BadLine(line)| StoreError::BadName {
            file: path.clone(),
            line,
        })?;
        Ok(ObjectIndex {
            names: idx.names,
            duplicate_lines: idx.duplicate_lines,
        })
    }

    /// Loads every object listed in OBJ.IDX (public and private), in index order.
    ///
    /// Any object that cannot be read, decrypted or parsed fails the whole
    /// load (a store we cannot fully parse is never rewritten).
    /// Mirrors `loadsave.c: load_public_token_objects()` and
    /// `load_private_token_objects()`.
    #[cfg(feature = "testkit")]
    pub fn load_objects(&self, mk: &MasterKey) -> Result<Vec<StoredObject>, StoreError> {
        let names = self.read_index()?;
        let mut out = Vec::new();
        for name in names {
            out.push(self.load_object(name, Some(mk))?);
        }
        Ok(out)
    }

    /// Loads one object; `mk` is needed for private objects.
    pub fn load_object(
        &self,
        name: ObjectName,
        mk: Option<&MasterKey>,
    ) -> Result<StoredObject, StoreError> {
        let path = self.object_path(name);
        let (file, identity) = self
            .tok()?
            .read_file_identified(name.as_str(), FileKind::Object)?;
        let mut obj = self.decode_object(name, &path, file, mk)?;
        // The file's identity is enough to notice a change at commit: its bytes need
        // not be kept.
        obj.identity = Some(identity);
        obj.original = Vec::new();
        Ok(obj)
    }

    /// Decodes the bytes of an object file named `name`.
    pub fn decode_object_bytes(
        &self,
        name: ObjectName,
        file: Vec<u8>,
        mk: Option<&MasterKey>,
    ) -> Result<StoredObject, StoreError> {
        let path = self.object_path(name);
        self.decode_object(name, &path, file, mk)
    }

    /// Decodes the bytes of an old-format object file named `name` whose private
    /// payload is turned back into its padded plaintext by `decipher` (same
    /// length out as in; `None` = it failed) instead of software DES3 under the
    /// master key: openCryptoki 2.x CCA stores had the card encipher private
    /// objects (CSNBENC with the 64-byte DES key token held as master key).
    /// The object re-encodes ([`encode_object`](Self::encode_object),
    /// [`commit`](Self::commit)) in the 3.x form.
    ///
    /// A `decipher` failure is [`StoreError::Decrypt`] with
    /// [`DecryptFailure::Deciphering`]; failed checks of the plaintext carry
    /// [`DecryptFailure::PlainLength`], [`DecryptFailure::PlainPadding`] or
    /// [`DecryptFailure::PlainSha1`].
    pub fn decode_object_deciphered(
        &self,
        name: ObjectName,
        file: Vec<u8>,
        decipher: PayloadDecipher<'_>,
    ) -> Result<StoredObject, StoreError> {
        let path = self.object_path(name);
        if self.format != Format::Old {
            return Err(StoreError::Invalid {
                file: path,
                what: "card-enciphered objects exist only in old-format stores",
            });
        }
        let d = object_file::decode_old_with(&file, self.order, &mut |payload| {
            decipher(payload).ok_or(DecodeError::Crypto(DecryptFailure::Deciphering))
        });
        self.finish_decode(name, &path, file, d)
    }

    /// Encodes an old-format private object as openCryptoki 2.x CCA stores held
    /// it: the padded plaintext enciphered by `encipher` (same length
    /// out as in; `None` = it failed). Builds such stores for tests.
    #[cfg(feature = "testkit")]
    pub fn encode_object_enciphered(
        &self,
        obj: &StoredObject,
        encipher: &mut dyn FnMut(&[u8]) -> Option<Vec<u8>>,
    ) -> Result<Vec<u8>, StoreError> {
        let file = self.object_path(obj.name);
        if self.format != Format::Old || !obj.private || obj.envelope != Envelope::Old {
            return Err(StoreError::Invalid {
                file,
                what: "only old-format private objects can be card-enciphered",
            });
        }
        if obj.template.byte_order() != self.order {
            return Err(StoreError::Invalid {
                file,
                what: "template byte order differs from the store's",
            });
        }
        object_file::encode_old_private_with(&obj.flat(), &mut |plain| {
            encipher(plain).ok_or(ENCIPHER_FAILED)
        })
        .map_err(|what| StoreError::Invalid { file, what })
    }

    fn decode_object(
        &self,
        name: ObjectName,
        path: &Path,
        file: Vec<u8>,
        mk: Option<&MasterKey>,
    ) -> Result<StoredObject, StoreError> {
        let d = object_file::decode(&file, self.format, self.order, mk);
        self.finish_decode(name, path, file, d)
    }

    fn finish_decode(
        &self,
        name: ObjectName,
        path: &Path,
        file: Vec<u8>,
        decoded: Result<object_file::Decoded, DecodeError>,
    ) -> Result<StoredObject, StoreError> {
        let d = decoded.map_err(|e| match e {
            DecodeError::Parse(p) => p.at(path),
            DecodeError::Crypto(what) => StoreError::Decrypt {
                file: path.to_path_buf(),
                what,
            },
        })?;
        if d.flat.name != name {
            return Err(StoreError::BadName {
                file: path.to_path_buf(),
                line: 0,
            });
        }
        Ok(StoredObject {
            name,
            private: d.private,
            template: d.flat.template,
            class_word: d.flat.class_word,
            trailer: d.flat.trailer,
            envelope: d.envelope,
            identity: None,
            original: file,
        })
    }

    /// Whether the bytes of an object file say it is private, from its header alone (no
    /// key needed); `None` when the header says neither.
    pub fn object_is_private(file: &[u8]) -> Option<bool> {
        object_file::peek_private(file)
    }

    /// `TOK_OBJ/<name>`.
    pub fn object_path(&self, name: ObjectName) -> PathBuf {
        self.tok_obj_dir().join(name.as_str())
    }

    /// Encodes `obj` as its file would be written (new-format private
    /// objects get a fresh per-object key, so bytes differ on every call).
    pub fn encode_object(&self, mk: &MasterKey, obj: &StoredObject) -> Result<Vec<u8>, StoreError> {
        if obj.template.byte_order() != self.order {
            return Err(StoreError::Invalid {
                file: self.object_path(obj.name),
                what: "template byte order differs from the store's",
            });
        }
        object_file::encode(&obj.flat(), obj.private, &obj.envelope, Some(mk)).map_err(|what| {
            StoreError::Invalid {
                file: self.object_path(obj.name),
                what,
            }
        })
    }

    /// Rewrites the files of `objects` atomically (see [`atomic`]).
    ///
    /// Each file must still be what it was when loaded. The caller
    /// should hold the token lock ([`lock::TokenLock`]) from load to commit.
    pub fn commit(
        &self,
        mk: &MasterKey,
        objects: &[&StoredObject],
    ) -> Result<CommitReport, StoreError> {
        let staging = self.staging(mk)?;
        for obj in objects {
            staging.stage(obj)?;
        }
        staging.finish()
    }

    /// A commit whose new files are written one by one while the run goes on, from any
    /// thread ([`Staging::stage`]); nothing replaces an object before
    /// [`Staging::finish`], and dropping it unfinished removes what it wrote.
    pub fn staging<'s>(&'s self, mk: &'s MasterKey) -> Result<Staging<'s>, StoreError> {
        let dir = self.tok()?;
        Ok(Staging {
            store: self,
            mk,
            dir,
            dir_st: dir.own_stat()?,
            staged: Mutex::new(BTreeMap::new()),
        })
    }
}

/// A commit being prepared: the temp files of the objects staged so far (see
/// [`TokenStore::staging`] and the protocol of [`atomic`]).
pub struct Staging<'s> {
    store: &'s TokenStore,
    mk: &'s MasterKey,
    dir: &'s StoreDir,
    dir_st: rustix::fs::Stat,
    /// The objects staged, in name order, with their temp file names.
    staged: Mutex<BTreeMap<ObjectName, String>>,
}

impl Staging<'_> {
    /// Writes the new file of `obj` next to its object file (not over it). The object
    /// file must still be what it was when loaded; an object staged twice is an error.
    pub fn stage(&self, obj: &StoredObject) -> Result<(), StoreError> {
        let store = self.store;
        // Unchanged since loaded: by its identity (checked when its target is looked
        // at), or else by its bytes.
        if obj.identity.is_none() && store.read_object_bytes(obj.name)? != obj.original {
            return Err(StoreError::ChangedOnDisk {
                file: store.object_path(obj.name),
            });
        }
        if self.lock().contains_key(&obj.name) {
            return Err(StoreError::Invalid {
                file: store.object_path(obj.name),
                what: "file listed twice in one commit",
            });
        }
        let replacement = atomic::Replacement {
            bytes: store.encode_object(self.mk, obj)?,
            name: obj.name.as_str().to_string(),
            may_be_new: false,
            expect: obj.identity,
        };
        let tmp = atomic::stage(self.dir, &replacement, &self.dir_st)?;
        self.lock().insert(obj.name, tmp);
        Ok(())
    }

    /// How many objects are staged.
    pub(crate) fn len(&self) -> usize {
        self.lock().len()
    }

    /// Makes every staged file durable, renames each over its object (in object name
    /// order), and makes the renames durable.
    pub fn finish(self) -> Result<CommitReport, StoreError> {
        let staged = std::mem::take(&mut *self.lock());
        let names: Vec<(String, String)> = staged
            .iter()
            .map(|(n, tmp)| (tmp.clone(), n.as_str().to_string()))
            .collect();
        if !names.is_empty() {
            atomic::finish_staged(self.dir, &names)?;
        }
        Ok(CommitReport {
            written: staged.into_keys().collect(),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<ObjectName, String>> {
        self.staged.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What is staged and not finished is removed.
impl Drop for Staging<'_> {
    fn drop(&mut self) {
        for tmp in std::mem::take(&mut *self.lock()).into_values() {
            let _ = self.dir.unlink(&tmp);
        }
    }
}

/// `TOK_OBJ` of `root`, opened into `cell` on first use.
fn tok_obj_of<'a>(
    root: &StoreDir,
    cell: &'a OnceLock<StoreDir>,
) -> Result<&'a StoreDir, StoreError> {
    if let Some(d) = cell.get() {
        return Ok(d);
    }
    let d = root.open_subdir(TOK_OBJ)?;
    Ok(cell.get_or_init(|| d))
}

/// Decides the byte order: old NVTOK.DAT's PIN-length fields, else the
/// first decisive object file, else native. Files that cannot be
/// read are passed over here; reading them later reports why.
fn detect_order(
    root: &StoreDir,
    tok_obj: &OnceLock<StoreDir>,
    format: Format,
    nvtok_raw: &[u8],
) -> (ByteOrder, ByteOrderSource) {
    if format == Format::Old {
        if let Some(o) = TokenData::probe_order(nvtok_raw) {
            return (o, ByteOrderSource::Detected(root.join(NVTOK_DAT)));
        }
    }
    let Ok(tok) = tok_obj_of(root, tok_obj) else {
        return (ByteOrder::native(), ByteOrderSource::Default);
    };
    let names = tok
        .read_file(OBJ_IDX, FileKind::Index)
        .ok()
        .and_then(|d| index::parse(&d).ok())
        .map(|i| i.names)
        .unwrap_or_default();
    for name in names.iter().take(64) {
        let path = tok.join(name.as_str());
        let Ok(file) = tok.read_file(name.as_str(), FileKind::Object) else {
            continue;
        };
        let guess = match format {
            Format::Old => object_file::probe_old_order(&file),
            Format::New => None,
        }
        .or_else(|| {
            let body = object_file::public_body(&file, format)?;
            match (
                attrs::plausible_in(body, ByteOrder::Little),
                attrs::plausible_in(body, ByteOrder::Big),
            ) {
                (true, false) => Some(ByteOrder::Little),
                (false, true) => Some(ByteOrder::Big),
                _ => None,
            }
        });
        if let Some(o) = guess {
            return (o, ByteOrderSource::Detected(path));
        }
    }
    (ByteOrder::native(), ByteOrderSource::Default)
}

impl TokenStore {
    fn read_mk_user(&self) -> Result<Vec<u8>, StoreError> {
        match self.root.read_file(MK_USER, FileKind::MasterKey) {
            Err(StoreError::Missing { file }) => Err(StoreError::MissingMkUser { file }),
            r => r,
        }
    }
}

fn check_old_mk_size(path: &Path, file: &[u8]) -> Result<(), StoreError> {
    if file.len() == 48 || file.len() == 88 {
        Ok(())
    } else {
        Err(StoreError::BadSize {
            file: path.into(),
            size: file.len() as u64,
            what: "old-format master key file must be 48 or 88 bytes",
        })
    }
}

fn check_new_mk_size(path: &Path, file: &[u8]) -> Result<(), StoreError> {
    if file.len() == 40 {
        Ok(())
    } else {
        Err(StoreError::BadSize {
            file: path.into(),
            size: file.len() as u64,
            what: "new-format master key file must be 40 bytes",
        })
    }
}

/// Fuzz-style entry point: parse arbitrary bytes as each kind of store file.
/// Never panics; used by the bad-input tests.
#[doc(hidden)]
#[cfg(feature = "testkit")]
pub fn fuzz_parse(kind: FuzzKind, data: &[u8], order: ByteOrder) -> bool {
    match kind {
        FuzzKind::Index => index::parse(data).is_ok(),
        FuzzKind::Flat => attrs::decode_flat(data, order).is_ok(),
        FuzzKind::ObjectOld => object_file::decode(data, Format::Old, order, None).is_ok(),
        FuzzKind::ObjectNew => object_file::decode(data, Format::New, order, None).is_ok(),
        FuzzKind::MasterKeyOld => crypt::old_mk_open(data, DEFAULT_SO_PIN).is_some(),
        FuzzKind::NvtokProbe => TokenData::probe_order(data).is_some(),
        FuzzKind::TokenDataOld | FuzzKind::TokenDataNew => {
            let format = match kind {
                FuzzKind::TokenDataOld => Format::Old,
                _ => Format::New,
            };
            let Some(t) = TokenData::from_raw(data.to_vec(), format, order) else {
                return false;
            };
            // Every field a login reads.
            let _ = (t.label(), t.model(), t.flags());
            let _ = (t.so_pin_sha(), t.user_pin_sha());
            if format == Format::New {
                for kdf in [t.so_login(), t.user_login(), t.so_wrap(), t.user_wrap()] {
                    let _ = (kdf.iterations, kdf.salt.len());
                }
                let _ = (t.so_login_key(), t.user_login_key());
            }
            true
        }
    }
}

/// What [`fuzz_parse`] should parse.
#[doc(hidden)]
#[derive(Clone, Copy, Debug)]
#[cfg(feature = "testkit")]
pub enum FuzzKind {
    /// OBJ.IDX.
    Index,
    /// A flattened object.
    Flat,
    /// An old-format object file.
    ObjectOld,
    /// A new-format object file.
    ObjectNew,
    /// An old-format MK file.
    MasterKeyOld,
    /// NVTOK.DAT byte-order probe.
    NvtokProbe,
    /// An old-format NVTOK.DAT, every field a login reads.
    TokenDataOld,
    /// A new-format NVTOK.DAT, every field a login reads.
    TokenDataNew,
}
